// Deterministic warp and block reductions shared by kernels/reduce.cu, softmax.cu and
// cross_entropy.cu (device code; include after kernels/cuda_compat.h).
//
// One state type serves the three reductions: a sum, a maximum with the first index of the maximum,
// and the online softmax normaliser (running maximum m and sum s of exp(x - m), Milakov &
// Gimelshein 2018, "Online normalizer calculation for softmax"). Callers pass the reduction kind as a
// compile-time constant into these __forceinline__ helpers, so each kernel keeps only its own code.
//
// Determinism: no atomics. Each thread folds its elements in a fixed order; warps combine with an
// xor butterfly of shuffles; a block writes one state per warp to shared memory and, after the only
// barrier, every warp reduces those states with the same butterfly. `rs_combine` is commutative
// bit for bit (fmaxf, IEEE additions and products are), so the butterfly leaves the same bits in
// every lane, and every warp of the block gets the same bits too: all threads hold the result
// without a second barrier, and the result depends only on the data and the launch shape.
#pragma once

#define RS_FULL_MASK 0xffffffffu

enum { RS_SUM, RS_MAX, RS_LSE };

// RS_SUM: value is the sum. RS_MAX: value is the maximum (NaN counts as the largest), index its first
// position (INT64_MAX while empty). RS_LSE: value is the running maximum m (never NaN; -inf while
// empty), scale the sum of exp(x - m) (NaN once a NaN was pushed).
typedef struct ReduceState {
    float value;
    float scale;
    int64_t index;
} ReduceState;

static __device__ __forceinline__ ReduceState rs_empty(int kind) {
    ReduceState st;
    st.value = kind == RS_SUM ? 0.0f : -INFINITY;
    st.scale = 0.0f;
    st.index = INT64_MAX;
    return st;
}

// Adds element x at position k. For RS_MAX each thread must push its elements in increasing k
// (every loop here does), so a later equal value or a later NaN does not replace the earlier one;
// an equal value with a smaller index only replaces the empty state (-inf, INT64_MAX), which makes a
// row of -inf report position 0, as on the CPU.
static __device__ __forceinline__ ReduceState rs_push(int kind, ReduceState st, float x, int64_t k) {
    if (kind == RS_SUM) {
        st.value += x;
    } else if (kind == RS_MAX) {
        if (x > st.value || (x != x && st.value == st.value) || (x == st.value && k < st.index)) {
            st.value = x;
            st.index = k;
        }
    } else {
        if (x > st.value) {  // new maximum: rescale the sum (0 * exp(-inf) = 0 when it was empty)
            st.scale = st.scale * expf(st.value - x) + 1.0f;
            st.value = x;
        } else if (x != -INFINITY) {  // -inf adds exp(-inf) = 0; skipping it avoids -inf - -inf; NaN propagates
            st.scale += expf(x - st.value);
        }
    }
    return st;
}

static __device__ __forceinline__ ReduceState rs_combine(int kind, ReduceState a, ReduceState b) {
    if (kind == RS_SUM) {
        a.value += b.value;
        return a;
    }
    if (kind == RS_MAX) {
        const bool a_nan = a.value != a.value, b_nan = b.value != b.value;
        if (a_nan != b_nan) return a_nan ? a : b;
        if (!a_nan && a.value != b.value) return a.value > b.value ? a : b;
        return a.index <= b.index ? a : b;  // equal values or both NaN: the first position
    }
    // RS_LSE. A side whose maximum is the joint one keeps its sum unscaled (also when both are -inf
    // or +inf, where exp(m - m) would be NaN); an empty side (-inf, 0) contributes 0 * 0.
    const float m = fmaxf(a.value, b.value);
    const float fa = a.value == m ? 1.0f : expf(a.value - m), fb = b.value == m ? 1.0f : expf(b.value - m);
    ReduceState r;
    r.value = m;
    r.scale = a.scale * fa + b.scale * fb;
    r.index = 0;
    return r;
}

// The state of each aligned group of `width` lanes (a power of two, 1 to 32), in every lane of the
// group: xor offsets below the width stay inside the group. All 32 lanes of the warp must call (full
// mask), with the same width.
static __device__ __forceinline__ ReduceState rs_group_reduce(int kind, ReduceState st, int width) {
    for (int offset = width / 2; offset > 0; offset >>= 1) {
        ReduceState other;
        other.value = __shfl_xor_sync(RS_FULL_MASK, st.value, offset);
        other.scale = kind == RS_LSE ? __shfl_xor_sync(RS_FULL_MASK, st.scale, offset) : 0.0f;
        other.index = kind == RS_MAX ? __shfl_xor_sync(RS_FULL_MASK, st.index, offset) : (int64_t)0;
        st = rs_combine(kind, st, other);
    }
    return st;
}

// The state of the whole warp, in every lane. All 32 lanes must call (full mask).
static __device__ __forceinline__ ReduceState rs_warp_reduce(int kind, ReduceState st) {
    return rs_group_reduce(kind, st, 32);
}

// The state of the whole block (1-D, blockDim.x a multiple of 32, at most 1024), in every thread.
// `shared` holds 32 states; it must not be read or written by the block between this call's barrier
// and the end of the call (use a separate array for a second reduction in the same kernel).
static __device__ __forceinline__ ReduceState rs_block_reduce(int kind, ReduceState st, ReduceState *shared) {
    const unsigned int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    st = rs_warp_reduce(kind, st);
    if (lane == 0) shared[warp] = st;
    __syncthreads();
    return rs_warp_reduce(kind, lane < warps ? shared[lane] : rs_empty(kind));
}

// Finishes RS_LSE: log(sum exp x) = m + log(s); an infinite maximum is the answer itself (all -inf,
// or a +inf present), as engine/cpu/reduce_impl.inc.
static __device__ __forceinline__ float rs_logsumexp(ReduceState st) {
    return st.value == -INFINITY || st.value == INFINITY ? st.value : st.value + logf(st.scale);
}

// Lanes per row for the warp-per-row kernels: 32, or for rows of at most 16 elements the next power
// of two (a row of 3 takes 4 lanes, 8 rows per warp), so short rows do not leave most lanes idle
// (host helper).
static inline int rs_row_group_width(int64_t length) {
    int width = 1;
    while (width < 32 && width < length) width *= 2;
    return width;
}

// Threads of a block for one long row of `length` elements: about 8 elements per thread, a power of
// two in [128, 1024] (host helper).
static inline unsigned int rs_row_block_threads(int64_t length) {
    unsigned int threads = 128;
    while (threads < 1024 && (int64_t)threads * 8 < length) threads *= 2;
    return threads;
}
