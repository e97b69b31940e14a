// Scaled dot-product attention as tiled flash-attention kernels, f32 (launchers and semantics in
// kernels/attention.h).
//
// Forward (Dao et al., "FlashAttention", 2022; the loop order of FlashAttention-2): one block per
// (query tile, batch-head). The block keeps its query tile in shared memory and walks the key/value
// tiles: S = Q K^T * scale + masks for the tile, an online softmax per row (running max m and sum l;
// when the max grows, the row's accumulator and l are rescaled by exp(m_old - m_new)), and
// O += P V. The [Tq, Tk] score matrix never exists in global memory; the forward writes O / l and
// lse = m + log l per row. With `causal`, key tiles entirely to the right of the query tile are not
// visited.
//
// Backward (FlashAttention-2, Algorithm 2, made deterministic): delta_i = sum_d dO_id O_id per row
// (one warp per row), then two kernels that recompute P = exp(S - lse) from the saved lse instead of
// storing it:
//   dk/dv: one block per (key tile, batch-head) keeps K, V and its dK, dV accumulators, and loops
//          over the query tiles: dV += P^T dO, dP = dO V^T, dS = P (dP - delta), dK += dS^T Q scale;
//   dq:    one block per (query tile, batch-head) loops over the key tiles: dQ += dS K scale.
// FlashAttention-2 adds dQ with float atomics from the dk/dv blocks; recomputing S in a second kernel
// costs about a third more arithmetic but every gradient element is written once by one thread, in a
// fixed order: the same bits on every run.
//
// Thread layout (128 threads, SIMT). Tiles are 32 rows when D, Dv <= 64 and 16 rows up to 128 (so the
// backward's shared memory stays below the 48 KiB that needs no opt-in). A tile row is owned by
// 128 / tile = 4 (or 8) consecutive lanes of one warp ("row group"): lane `sub` of the group handles
// the keys (or queries) sub, sub + 4, ... of the other tile and the output columns sub, sub + 4, ...
// So the reductions over a row (max and sum of the softmax) are xor shuffles inside the group, and
// the probabilities a row needs are written to shared memory by its own group (__syncwarp, not a
// block barrier). Shared tiles are padded to D + 1 columns: the lanes of a group read rows
// sub + 4e of a tile at the same column, which the odd stride puts in different banks, while the row
// groups read the same addresses (broadcast). Each inner product loads one operand into a register
// and reuses it for all 8 (or 2) keys of the thread, about one shared load per FMA.
//
// Tensor cores (mma.sync with tf32/bf16 operands, ldmatrix, cp.async double buffering) are the next
// step on A100/H100; they would go behind #ifdef __CUDA_ARCH__ with this code as the fallback. This
// file has no architecture-specific code: what the emulator runs is what the GPU runs.
#include "kernels/cuda_compat.h"
#include "kernels/attention.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define ATTN_THREADS 128
#define ATTN_MAX_COLUMNS 16  // output columns per thread: 64 / 4 or 128 / 8
#define ATTN_MAX_ROWS 8      // keys (or queries) per thread and tile: 32 / 4 or 16 / 8
#define ATTN_MAX_BLOCKS_Y 65535
#define FULL_MASK 0xffffffffu

// Loops over the register arrays above have constant trip counts and guard the runtime bound inside,
// so that nvcc unrolls them and keeps the arrays in registers (the emulator does not need it).
#ifdef __CUDACC__
#define ATTN_UNROLL _Pragma("unroll")
#else
#define ATTN_UNROLL
#endif

// What every kernel needs besides the tensors (one struct: a kernel takes at most 16 arguments).
typedef struct AttentionParams {
    const uint8_t *bool_mask;
    const float *float_mask;
    int64_t bool_mask_stride, float_mask_stride;
    int64_t bh_base;  // batch-head of blockIdx.y == 0 (grids over more than 65535 heads are split)
    int Tq, Tk, D, Dv;
    int tile;    // rows of every tile: 32 or 16
    int causal;
    float scale;
} AttentionParams;

// Position (i, j) of batch-head bh is removed by the causal rule or the boolean mask. Such positions
// are -inf scores and, as torch.where in the CPU op, pass no gradient (dS = 0).
static __device__ __forceinline__ bool attention_removed(const AttentionParams *p, int64_t bh, int i, int j) {
    if (p->causal && j > i) return true;
    return p->bool_mask && !p->bool_mask[bh * p->bool_mask_stride + (int64_t)i * p->Tk + j];
}

static __device__ __forceinline__ float attention_float_mask(const AttentionParams *p, int64_t bh, int i, int j) {
    return p->float_mask ? p->float_mask[bh * p->float_mask_stride + (int64_t)i * p->Tk + j] : 0.0f;
}

// Copies rows [first, first + tile) of a [rows, width] matrix into a shared tile with leading
// dimension width + 1; rows past the end are zeros (their scores are masked, and 0 * 0 stays 0).
// Consecutive threads read consecutive floats of global memory.
static __device__ __forceinline__ void load_tile(float *tile_smem, const float *matrix, int first, int rows, int width,
                                                 int tile) {
    const int ld = width + 1;
    for (int idx = (int)threadIdx.x; idx < tile * width; idx += ATTN_THREADS) {
        const int r = idx / width, d = idx - r * width;
        tile_smem[r * ld + d] = first + r < rows ? matrix[(int64_t)(first + r) * width + d] : 0.0f;
    }
}

// Max and sum over the `group` lanes of a row group (xor butterflies: every lane gets the same bits).
static __device__ __forceinline__ float group_max(float v, int group) {
    for (int offset = 1; offset < group; offset *= 2) v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, offset));
    return v;
}
static __device__ __forceinline__ float group_sum(float v, int group) {
    for (int offset = 1; offset < group; offset *= 2) v += __shfl_xor_sync(FULL_MASK, v, offset);
    return v;
}

// ------------------------------------------------------------------------------------------------
// Forward.
// ------------------------------------------------------------------------------------------------

// Block (query tile blockIdx.x, batch-head bh_base + blockIdx.y). Shared: Q [tile][D+1],
// K [tile][D+1], V [tile][Dv+1], P [tile][tile+1]. Thread: query row t / group of the tile, keys
// sub + group * e of each key tile, output columns sub + group * c.
__global__ void attention_forward_kernel(const float *__restrict__ q, const float *__restrict__ k,
                                         const float *__restrict__ v, float *__restrict__ out,
                                         float *__restrict__ lse, AttentionParams p) {
    CU_DYNAMIC_SHARED(float, smem);
    const int tile = p.tile, group = ATTN_THREADS / tile, D = p.D, Dv = p.Dv, Tq = p.Tq, Tk = p.Tk;
    const int ldq = D + 1, ldv = Dv + 1, ldp = tile + 1, keys_per_thread = tile / group;
    float *q_tile = smem, *k_tile = q_tile + tile * ldq, *v_tile = k_tile + tile * ldq, *p_tile = v_tile + tile * ldv;
    const int row = (int)threadIdx.x / group, sub = (int)threadIdx.x % group;
    const int64_t bh = p.bh_base + blockIdx.y;
    const int q0 = (int)blockIdx.x * tile, i = q0 + row;
    const float *kh = k + bh * Tk * D, *vh = v + bh * Tk * Dv;

    load_tile(q_tile, q + bh * Tq * D, q0, Tq, D, tile);
    float m_run = -INFINITY, l_run = 0.0f, acc[ATTN_MAX_COLUMNS];
    ATTN_UNROLL
    for (int c = 0; c < ATTN_MAX_COLUMNS; c++) acc[c] = 0.0f;
    // Causal: no query of this tile sees a key at or past q0 + tile.
    const int kv_end = p.causal && q0 + tile < Tk ? q0 + tile : Tk;
    for (int k0 = 0; k0 < kv_end; k0 += tile) {
        load_tile(k_tile, kh, k0, Tk, D, tile);
        load_tile(v_tile, vh, k0, Tk, Dv, tile);
        __syncthreads();  // K, V (and, the first time, Q) are in shared memory

        // S = Q K^T for this thread's keys.
        float s[ATTN_MAX_ROWS];
        ATTN_UNROLL
        for (int e = 0; e < ATTN_MAX_ROWS; e++) s[e] = 0.0f;
        for (int d = 0; d < D; d++) {
            const float qd = q_tile[row * ldq + d];
            ATTN_UNROLL
            for (int e = 0; e < ATTN_MAX_ROWS; e++)
                if (e < keys_per_thread) s[e] += qd * k_tile[(sub + group * e) * ldq + d];
        }
        // Scale, masks, and the tile's row maximum.
        float tile_max = -INFINITY;
        ATTN_UNROLL
        for (int e = 0; e < ATTN_MAX_ROWS; e++) {
            if (e >= keys_per_thread) continue;
            const int j = k0 + sub + group * e;
            float score = -INFINITY;
            if (i < Tq && j < Tk && !attention_removed(&p, bh, i, j))
                score = s[e] * p.scale + attention_float_mask(&p, bh, i, j);
            s[e] = score;
            tile_max = fmaxf(tile_max, score);
        }
        tile_max = group_max(tile_max, group);
        // Online softmax. While a row has seen no allowed key its max is -inf; exponents are then
        // taken against 0, so they are exp(-inf) = 0 instead of exp(-inf + inf) = NaN.
        const float m_new = fmaxf(m_run, tile_max);
        const float m_ref = m_new == -INFINITY ? 0.0f : m_new;
        const float alpha = expf(m_run - m_ref);
        float p_sum = 0.0f;
        ATTN_UNROLL
        for (int e = 0; e < ATTN_MAX_ROWS; e++) {
            if (e >= keys_per_thread) continue;
            const float pe = expf(s[e] - m_ref);
            p_tile[row * ldp + sub + group * e] = pe;
            p_sum += pe;
        }
        p_sum = group_sum(p_sum, group);
        l_run = l_run * alpha + p_sum;
        m_run = m_new;
        __syncwarp();  // the row's probabilities, written by its group (one warp), are visible to it

        // O = alpha O + P V.
        ATTN_UNROLL
        for (int c = 0; c < ATTN_MAX_COLUMNS; c++) acc[c] *= alpha;
        for (int key = 0; key < tile; key++) {
            const float pk = p_tile[row * ldp + key];
            ATTN_UNROLL
            for (int c = 0; c < ATTN_MAX_COLUMNS; c++) {
                const int d = sub + group * c;
                if (d < Dv) acc[c] += pk * v_tile[key * ldv + d];
            }
        }
        __syncthreads();  // every row is done with K, V and P before the next tile overwrites them
    }
    if (i < Tq) {
        // A row with no allowed key has l = 0: O = 0 / 0 = NaN and lse = -inf, as the CPU op.
        float *out_row = out + (bh * Tq + i) * Dv;
        ATTN_UNROLL
        for (int c = 0; c < ATTN_MAX_COLUMNS; c++) {
            const int d = sub + group * c;
            if (d < Dv) out_row[d] = acc[c] / l_run;
        }
        if (sub == 0) lse[bh * Tq + i] = m_run + logf(l_run);
    }
}
CU_KERNEL_ARGS(attention_forward_kernel, const float *, const float *, const float *, float *, float *,
               AttentionParams);

// ------------------------------------------------------------------------------------------------
// Backward.
// ------------------------------------------------------------------------------------------------

// delta[r] = sum_d dout[r][d] * out[r][d] for rows r < rows, one warp per row (= sum_j P_ij dP_ij,
// the softmax backward's dot product).
__global__ void attention_backward_delta_kernel(const float *__restrict__ out, const float *__restrict__ dout,
                                                float *__restrict__ delta, int64_t rows, int Dv) {
    const int lane = (int)(threadIdx.x % 32);
    const int64_t r = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (r >= rows) return;  // whole warps leave together; no block barrier in this kernel
    float sum = 0.0f;
    for (int d = lane; d < Dv; d += 32) sum += dout[r * Dv + d] * out[r * Dv + d];
    for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_xor_sync(FULL_MASK, sum, offset);
    if (lane == 0) delta[r] = sum;
}
CU_KERNEL_ARGS(attention_backward_delta_kernel, const float *, const float *, float *, int64_t, int);

// Block (key tile blockIdx.x, batch-head). Shared: K [tile][D+1], V [tile][Dv+1], Q [tile][D+1],
// dO [tile][Dv+1], P^T and dS^T [tile][tile+1] (rows are keys), lse and delta [tile]. Thread: key row
// t / group, queries sub + group * e of each query tile, columns sub + group * c of dK and dV.
__global__ void attention_backward_dkdv_kernel(const float *__restrict__ q, const float *__restrict__ k,
                                               const float *__restrict__ v, const float *__restrict__ dout,
                                               const float *__restrict__ lse, const float *__restrict__ delta,
                                               float *__restrict__ dk, float *__restrict__ dv, AttentionParams p) {
    CU_DYNAMIC_SHARED(float, smem);
    const int tile = p.tile, group = ATTN_THREADS / tile, D = p.D, Dv = p.Dv, Tq = p.Tq, Tk = p.Tk;
    const int ldq = D + 1, ldv = Dv + 1, ldp = tile + 1, queries_per_thread = tile / group;
    float *k_tile = smem, *v_tile = k_tile + tile * ldq, *q_tile = v_tile + tile * ldv, *do_tile = q_tile + tile * ldq;
    float *pt_tile = do_tile + tile * ldv, *dst_tile = pt_tile + tile * ldp, *lse_tile = dst_tile + tile * ldp;
    float *delta_tile = lse_tile + tile;
    const int key_row = (int)threadIdx.x / group, sub = (int)threadIdx.x % group;
    const int64_t bh = p.bh_base + blockIdx.y;
    const int k0 = (int)blockIdx.x * tile, j = k0 + key_row;
    const float *qh = q + bh * Tq * D, *doh = dout + bh * Tq * Dv, *lseh = lse + bh * Tq, *deltah = delta + bh * Tq;

    load_tile(k_tile, k + bh * Tk * D, k0, Tk, D, tile);
    load_tile(v_tile, v + bh * Tk * Dv, k0, Tk, Dv, tile);
    float dk_acc[ATTN_MAX_COLUMNS], dv_acc[ATTN_MAX_COLUMNS];
    ATTN_UNROLL
    for (int c = 0; c < ATTN_MAX_COLUMNS; c++) dk_acc[c] = dv_acc[c] = 0.0f;

    // Causal: queries before k0 see none of this tile's keys, so their tiles are skipped. Their
    // probabilities here are exp(-inf - lse) = 0, except for a row with no allowed key at all
    // (lse = -inf, or NaN), whose NaN the CPU op spreads to dv of every key: keep that.
    const int q_begin = p.causal ? (k0 < Tq ? k0 : Tq) : 0;
    int skipped_nan = 0;
    for (int r = (int)threadIdx.x; r < q_begin; r += ATTN_THREADS) skipped_nan |= !(lseh[r] > -INFINITY);
    skipped_nan = __syncthreads_or(skipped_nan);

    for (int q0 = q_begin; q0 < Tq; q0 += tile) {
        load_tile(q_tile, qh, q0, Tq, D, tile);
        load_tile(do_tile, doh, q0, Tq, Dv, tile);
        for (int r = (int)threadIdx.x; r < tile; r += ATTN_THREADS) {
            lse_tile[r] = q0 + r < Tq ? lseh[q0 + r] : 0.0f;
            delta_tile[r] = q0 + r < Tq ? deltah[q0 + r] : 0.0f;
        }
        __syncthreads();  // Q, dO, lse, delta (and, the first time, K and V) are in shared memory

        // S = Q K^T and dP = dO V^T for this thread's queries and key.
        float s[ATTN_MAX_ROWS], dp[ATTN_MAX_ROWS];
        ATTN_UNROLL
        for (int e = 0; e < ATTN_MAX_ROWS; e++) s[e] = dp[e] = 0.0f;
        for (int d = 0; d < D; d++) {
            const float kd = k_tile[key_row * ldq + d];
            ATTN_UNROLL
            for (int e = 0; e < ATTN_MAX_ROWS; e++)
                if (e < queries_per_thread) s[e] += q_tile[(sub + group * e) * ldq + d] * kd;
        }
        for (int d = 0; d < Dv; d++) {
            const float vd = v_tile[key_row * ldv + d];
            ATTN_UNROLL
            for (int e = 0; e < ATTN_MAX_ROWS; e++)
                if (e < queries_per_thread) dp[e] += do_tile[(sub + group * e) * ldv + d] * vd;
        }
        // P = exp(S - lse) and dS = P (dP - delta); removed positions have P = 0 (NaN in a row
        // without any allowed key) and dS = 0.
        ATTN_UNROLL
        for (int e = 0; e < ATTN_MAX_ROWS; e++) {
            if (e >= queries_per_thread) continue;
            const int r = sub + group * e, i = q0 + r;
            float pe = 0.0f, dse = 0.0f;
            if (i < Tq && j < Tk) {
                const bool removed = attention_removed(&p, bh, i, j);
                const float score = removed ? -INFINITY : s[e] * p.scale + attention_float_mask(&p, bh, i, j);
                pe = expf(score - lse_tile[r]);
                dse = removed ? 0.0f : pe * (dp[e] - delta_tile[r]);
            }
            pt_tile[key_row * ldp + r] = pe;
            dst_tile[key_row * ldp + r] = dse;
        }
        __syncwarp();  // the key row's P and dS, written by its group (one warp), are visible to it

        // dV += P^T dO, dK += dS^T Q.
        for (int r = 0; r < tile; r++) {
            const float pr = pt_tile[key_row * ldp + r], dsr = dst_tile[key_row * ldp + r];
            ATTN_UNROLL
            for (int c = 0; c < ATTN_MAX_COLUMNS; c++) {
                const int d = sub + group * c;
                if (d < Dv) dv_acc[c] += pr * do_tile[r * ldv + d];
                if (d < D) dk_acc[c] += dsr * q_tile[r * ldq + d];
            }
        }
        __syncthreads();  // every key row is done with Q, dO, lse, delta before the next tile
    }
    if (j < Tk) {
        ATTN_UNROLL
        for (int c = 0; c < ATTN_MAX_COLUMNS; c++) {
            const int d = sub + group * c;
            if (dk && d < D) dk[(bh * Tk + j) * D + d] = dk_acc[c] * p.scale;
            if (dv && d < Dv) dv[(bh * Tk + j) * Dv + d] = skipped_nan ? NAN : dv_acc[c];
        }
    }
}
CU_KERNEL_ARGS(attention_backward_dkdv_kernel, const float *, const float *, const float *, const float *,
               const float *, const float *, float *, float *, AttentionParams);

// Block (query tile blockIdx.x, batch-head). Shared: Q [tile][D+1], dO [tile][Dv+1], K [tile][D+1],
// V [tile][Dv+1], dS [tile][tile+1]. Thread: query row t / group, keys sub + group * e of each key
// tile, columns sub + group * c of dQ.
__global__ void attention_backward_dq_kernel(const float *__restrict__ q, const float *__restrict__ k,
                                             const float *__restrict__ v, const float *__restrict__ dout,
                                             const float *__restrict__ lse, const float *__restrict__ delta,
                                             float *__restrict__ dq, AttentionParams p) {
    CU_DYNAMIC_SHARED(float, smem);
    const int tile = p.tile, group = ATTN_THREADS / tile, D = p.D, Dv = p.Dv, Tq = p.Tq, Tk = p.Tk;
    const int ldq = D + 1, ldv = Dv + 1, ldp = tile + 1, keys_per_thread = tile / group;
    float *q_tile = smem, *do_tile = q_tile + tile * ldq, *k_tile = do_tile + tile * ldv, *v_tile = k_tile + tile * ldq;
    float *ds_tile = v_tile + tile * ldv;
    const int row = (int)threadIdx.x / group, sub = (int)threadIdx.x % group;
    const int64_t bh = p.bh_base + blockIdx.y;
    const int q0 = (int)blockIdx.x * tile, i = q0 + row;
    const float *kh = k + bh * Tk * D, *vh = v + bh * Tk * Dv;

    load_tile(q_tile, q + bh * Tq * D, q0, Tq, D, tile);
    load_tile(do_tile, dout + bh * Tq * Dv, q0, Tq, Dv, tile);
    const float lse_i = i < Tq ? lse[bh * Tq + i] : 0.0f, delta_i = i < Tq ? delta[bh * Tq + i] : 0.0f;
    float dq_acc[ATTN_MAX_COLUMNS];
    ATTN_UNROLL
    for (int c = 0; c < ATTN_MAX_COLUMNS; c++) dq_acc[c] = 0.0f;
    const int kv_end = p.causal && q0 + tile < Tk ? q0 + tile : Tk;
    for (int k0 = 0; k0 < kv_end; k0 += tile) {
        load_tile(k_tile, kh, k0, Tk, D, tile);
        load_tile(v_tile, vh, k0, Tk, Dv, tile);
        __syncthreads();  // K, V (and, the first time, Q and dO) are in shared memory

        float s[ATTN_MAX_ROWS], dp[ATTN_MAX_ROWS];
        ATTN_UNROLL
        for (int e = 0; e < ATTN_MAX_ROWS; e++) s[e] = dp[e] = 0.0f;
        for (int d = 0; d < D; d++) {
            const float qd = q_tile[row * ldq + d];
            ATTN_UNROLL
            for (int e = 0; e < ATTN_MAX_ROWS; e++)
                if (e < keys_per_thread) s[e] += qd * k_tile[(sub + group * e) * ldq + d];
        }
        for (int d = 0; d < Dv; d++) {
            const float dod = do_tile[row * ldv + d];
            ATTN_UNROLL
            for (int e = 0; e < ATTN_MAX_ROWS; e++)
                if (e < keys_per_thread) dp[e] += dod * v_tile[(sub + group * e) * ldv + d];
        }
        ATTN_UNROLL
        for (int e = 0; e < ATTN_MAX_ROWS; e++) {
            if (e >= keys_per_thread) continue;
            const int c = sub + group * e, j = k0 + c;
            float dse = 0.0f;
            if (i < Tq && j < Tk && !attention_removed(&p, bh, i, j)) {
                const float pe = expf(s[e] * p.scale + attention_float_mask(&p, bh, i, j) - lse_i);
                dse = pe * (dp[e] - delta_i);
            }
            ds_tile[row * ldp + c] = dse;
        }
        __syncwarp();  // the row's dS, written by its group (one warp), is visible to it

        // dQ += dS K.
        for (int key = 0; key < tile; key++) {
            const float dsk = ds_tile[row * ldp + key];
            ATTN_UNROLL
            for (int c = 0; c < ATTN_MAX_COLUMNS; c++) {
                const int d = sub + group * c;
                if (d < D) dq_acc[c] += dsk * k_tile[key * ldq + d];
            }
        }
        __syncthreads();  // every row is done with K, V and dS before the next tile
    }
    if (i < Tq) {
        float *dq_row = dq + (bh * Tq + i) * D;
        ATTN_UNROLL
        for (int c = 0; c < ATTN_MAX_COLUMNS; c++) {
            const int d = sub + group * c;
            if (d < D) dq_row[d] = dq_acc[c] * p.scale;
        }
    }
}
CU_KERNEL_ARGS(attention_backward_dq_kernel, const float *, const float *, const float *, const float *,
               const float *, const float *, float *, AttentionParams);

// ------------------------------------------------------------------------------------------------
// Launchers.
// ------------------------------------------------------------------------------------------------

static void attention_fatal(const char *what, long long value) {
    fprintf(stderr, "error: kernels/attention.cu: %s (%lld)\n", what, value);
    exit(1);
}

// Checks the shape and fills the parameters; returns 0 when there is nothing to compute.
static int attention_params(AttentionParams *p, const uint8_t *bool_mask, int64_t bool_mask_stride,
                            const float *float_mask, int64_t float_mask_stride, int64_t BH, int64_t Tq, int64_t Tk,
                            int64_t D, int64_t Dv, int causal, float scale) {
    if (D < 1 || D > ATTENTION_MAX_HEAD_DIM) attention_fatal("head dimension D must be in 1..128", (long long)D);
    if (Dv < 1 || Dv > ATTENTION_MAX_HEAD_DIM) attention_fatal("value dimension Dv must be in 1..128", (long long)Dv);
    if (Tq < 0 || Tq > 0x7fffffff || Tk < 0 || Tk > 0x7fffffff)
        attention_fatal("sequence lengths must be in 0..2^31-1", (long long)(Tq < 0 || Tq > 0x7fffffff ? Tq : Tk));
    if (BH <= 0 || Tq == 0) return 0;
    if (Tk == 0) attention_fatal("attention over zero keys", 0);
    p->bool_mask = bool_mask;
    p->float_mask = float_mask;
    p->bool_mask_stride = bool_mask_stride;
    p->float_mask_stride = float_mask_stride;
    p->bh_base = 0;
    p->Tq = (int)Tq;
    p->Tk = (int)Tk;
    p->D = (int)D;
    p->Dv = (int)Dv;
    p->tile = D <= 64 && Dv <= 64 ? 32 : 16;
    p->causal = causal != 0;
    p->scale = scale > 0 ? scale : (float)(1.0 / sqrt((double)D));
    return 1;
}

CU_EXTERN_C void attention_forward_launch(const float *q, const float *k, const float *v, const uint8_t *bool_mask,
                                          int64_t bool_mask_stride, const float *float_mask,
                                          int64_t float_mask_stride, float *out, float *lse, int64_t BH, int64_t Tq,
                                          int64_t Tk, int64_t D, int64_t Dv, int causal, float scale,
                                          cudaStream_t stream) {
    AttentionParams p;
    if (!attention_params(&p, bool_mask, bool_mask_stride, float_mask, float_mask_stride, BH, Tq, Tk, D, Dv, causal,
                          scale))
        return;
    const int tile = p.tile;
    const size_t smem = (size_t)(2 * tile * (p.D + 1) + tile * (p.Dv + 1) + tile * (tile + 1)) * sizeof(float);
    const unsigned int q_tiles = (unsigned int)((Tq + tile - 1) / tile);
    for (int64_t base = 0; base < BH; base += ATTN_MAX_BLOCKS_Y) {
        p.bh_base = base;
        const int64_t heads = BH - base < ATTN_MAX_BLOCKS_Y ? BH - base : ATTN_MAX_BLOCKS_Y;
        CU_LAUNCH(attention_forward_kernel, DIM3(q_tiles, heads, 1), ATTN_THREADS, smem, stream, q, k, v, out, lse, p);
    }
}

CU_EXTERN_C size_t attention_backward_workspace_bytes(int64_t BH, int64_t Tq) {
    return (size_t)((BH * Tq + 3) / 4 * 4) * sizeof(float);
}

CU_EXTERN_C void attention_backward_launch(const float *q, const float *k, const float *v, const float *out,
                                           const float *dout, const float *lse, const uint8_t *bool_mask,
                                           int64_t bool_mask_stride, const float *float_mask,
                                           int64_t float_mask_stride, float *dq, float *dk, float *dv,
                                           void *workspace, int64_t BH, int64_t Tq, int64_t Tk, int64_t D, int64_t Dv,
                                           int causal, float scale, cudaStream_t stream) {
    AttentionParams p;
    if (!attention_params(&p, bool_mask, bool_mask_stride, float_mask, float_mask_stride, BH, Tq, Tk, D, Dv, causal,
                          scale)) {
        // No queries: dk and dv are empty sums (dq is empty).
        if (BH > 0 && Tk > 0) {
            if (dk) {
                size_t bytes = (size_t)(BH * Tk * D) * sizeof(float);
#ifdef __CUDACC__
                cudaMemsetAsync(dk, 0, bytes, stream);
#else
                memset(dk, 0, bytes);
#endif
            }
            if (dv) {
                size_t bytes = (size_t)(BH * Tk * Dv) * sizeof(float);
#ifdef __CUDACC__
                cudaMemsetAsync(dv, 0, bytes, stream);
#else
                memset(dv, 0, bytes);
#endif
            }
        }
        return;
    }
    const int tile = p.tile;
    float *delta = (float *)workspace;
    const int64_t rows = BH * Tq;
    CU_LAUNCH(attention_backward_delta_kernel, (unsigned int)((rows + 3) / 4), 128, 0, stream, out, dout, delta, rows,
              p.Dv);
    const size_t smem_dkdv =
        (size_t)(2 * tile * (p.D + 1) + 2 * tile * (p.Dv + 1) + 2 * tile * (tile + 1) + 2 * tile) * sizeof(float);
    const size_t smem_dq = (size_t)(2 * tile * (p.D + 1) + 2 * tile * (p.Dv + 1) + tile * (tile + 1)) * sizeof(float);
    const unsigned int q_tiles = (unsigned int)((Tq + tile - 1) / tile), k_tiles = (unsigned int)((Tk + tile - 1) / tile);
    for (int64_t base = 0; base < BH; base += ATTN_MAX_BLOCKS_Y) {
        p.bh_base = base;
        const int64_t heads = BH - base < ATTN_MAX_BLOCKS_Y ? BH - base : ATTN_MAX_BLOCKS_Y;
        if (dk || dv)
            CU_LAUNCH(attention_backward_dkdv_kernel, DIM3(k_tiles, heads, 1), ATTN_THREADS, smem_dkdv, stream, q, k, v,
                      dout, lse, (const float *)delta, dk, dv, p);
        if (dq)
            CU_LAUNCH(attention_backward_dq_kernel, DIM3(q_tiles, heads, 1), ATTN_THREADS, smem_dq, stream, q, k, v,
                      dout, lse, (const float *)delta, dq, p);
    }
}
