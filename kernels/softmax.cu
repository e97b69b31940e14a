// Fused online softmax / log-softmax, forward and backward, over the middle axis of a contiguous
// [outer, R, inner] f32 array. Launchers: kernels/softmax.h; reduction building blocks and their
// determinism: kernels/reduce_common.cuh.
//
// Forward (Milakov & Gimelshein 2018): one read of the row folds each element into a running
// maximum m and sum s of exp(x - m) (rescaling s when m grows), warps and blocks combine (m, s)
// pairs, and a second read writes exp(x - m) / s or x - m - log s: two reads and one write instead
// of the classic three reads. Backward: one reduction (sum g*y, or sum g) and one elementwise pass.
//
// Kernels:
//   rows_warp   inner == 1, R <= 1024: one warp per row (rows of at most 16: a group of the next
//               power of two lanes, several rows per warp), 256-thread blocks, lanes on consecutive
//               elements (coalesced), xor-shuffle butterfly, no shared memory or barrier.
//   rows_block  inner == 1, R > 1024: one block per row (128-1024 threads, ~8 elements each), float4
//               loads/stores when the row start is 16-byte aligned (a block-uniform test), warp
//               butterflies, one state per warp in shared memory, one __syncthreads, every warp
//               then reduces the per-warp states itself (no second barrier to broadcast).
//   cols        inner > 1: the outer * inner columns flattened, 32 per block (threadIdx.x; a warp
//               reads 32 neighbouring columns of one k), 8 slices of R (threadIdx.y); 8 x 32 states
//               in shared memory, one __syncthreads, then every thread combines its column's 8 states
//               in the same order (identical bits in all 8 slices) and writes its slice.
// expf/logf (accurate, not __expf): softmax is memory bound, and the results then agree with the
// CPU's to a few ulps plus the summation order.
#include "kernels/cuda_compat.h"
#include "kernels/reduce_common.cuh"
#include "kernels/softmax.h"

#define SOFTMAX_WARP_ROW_MAX 1024
#define SOFTMAX_GROUP_THREADS 256  // threads per block of rows_warp
#define SOFTMAX_COL_WIDTH 32
#define SOFTMAX_COL_SLICES 8

// The forward output of one element from the row's (m, s): a +inf maximum makes every output NaN,
// as the CPU's exp(inf - inf) does; an all -inf row gives NaN through -inf - -inf.
static __device__ __forceinline__ float softmax_value(float x, float m, float inv_s, float log_s, int log_form) {
    return log_form ? x - m - log_s : expf(x - m) * inv_s;
}

static __device__ __forceinline__ void softmax_constants(ReduceState st, float *m, float *inv_s, float *log_s) {
    const float s = st.value == INFINITY ? NAN : st.scale;
    *m = st.value;
    *inv_s = 1.0f / s;
    *log_s = logf(s);
}

// ------------------------------------------------------------------------------------------------
// Forward.
// ------------------------------------------------------------------------------------------------

// The row of this thread's group of `width` lanes (rs_row_group_width), its lane, and whether the row
// exists. Returns false when the whole warp is past the last row (it may leave); a warp with any row
// keeps every lane for the shuffles.
static __device__ __forceinline__ bool softmax_group(int64_t rows, int width, int64_t *row, int *lane, bool *valid) {
    const int64_t thread = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    *row = thread / width;
    *lane = (int)(threadIdx.x % (unsigned int)width);
    *valid = *row < rows;
    return (thread - threadIdx.x % 32) / width < rows;
}

__global__ void softmax_forward_rows_warp_kernel(const float *x, float *y, int64_t rows, int64_t r, int width,
                                                 int log_form) {
    int64_t row;
    int lane;
    bool valid;
    if (!softmax_group(rows, width, &row, &lane, &valid)) return;
    const float *p = x + row * r;
    float *q = y + row * r;
    ReduceState st = rs_empty(RS_LSE);
    if (valid)
        for (int64_t k = lane; k < r; k += width) st = rs_push(RS_LSE, st, p[k], k);
    st = rs_group_reduce(RS_LSE, st, width);
    if (!valid) return;
    float m, inv_s, log_s;
    softmax_constants(st, &m, &inv_s, &log_s);
    for (int64_t k = lane; k < r; k += width) q[k] = softmax_value(p[k], m, inv_s, log_s, log_form);
}
CU_KERNEL_ARGS(softmax_forward_rows_warp_kernel, const float *, float *, int64_t, int64_t, int, int);

__global__ void softmax_forward_rows_block_kernel(const float *x, float *y, int64_t r, int log_form) {
    __shared__ ReduceState shared[32];
    const float *p = x + (int64_t)blockIdx.x * r;
    float *q = y + (int64_t)blockIdx.x * r;
    const int64_t threads = blockDim.x;
    const int vec = ((uintptr_t)p & 15) == 0 && ((uintptr_t)q & 15) == 0;  // the same for the whole block
    const int64_t n4 = vec ? r / 4 : 0;
    ReduceState st = rs_empty(RS_LSE);
    for (int64_t j = threadIdx.x; j < n4; j += threads) {
        float4 v = ((const float4 *)p)[j];
        st = rs_push(RS_LSE, st, v.x, 0);
        st = rs_push(RS_LSE, st, v.y, 0);
        st = rs_push(RS_LSE, st, v.z, 0);
        st = rs_push(RS_LSE, st, v.w, 0);
    }
    for (int64_t k = 4 * n4 + threadIdx.x; k < r; k += threads) st = rs_push(RS_LSE, st, p[k], k);
    st = rs_block_reduce(RS_LSE, st, shared);
    float m, inv_s, log_s;
    softmax_constants(st, &m, &inv_s, &log_s);
    for (int64_t j = threadIdx.x; j < n4; j += threads) {
        float4 v = ((const float4 *)p)[j];
        v.x = softmax_value(v.x, m, inv_s, log_s, log_form);
        v.y = softmax_value(v.y, m, inv_s, log_s, log_form);
        v.z = softmax_value(v.z, m, inv_s, log_s, log_form);
        v.w = softmax_value(v.w, m, inv_s, log_s, log_form);
        ((float4 *)q)[j] = v;
    }
    for (int64_t k = 4 * n4 + threadIdx.x; k < r; k += threads) q[k] = softmax_value(p[k], m, inv_s, log_s, log_form);
}
CU_KERNEL_ARGS(softmax_forward_rows_block_kernel, const float *, float *, int64_t, int);

__global__ void softmax_forward_cols_kernel(const float *x, float *y, int64_t outer, int64_t r, int64_t inner,
                                            int log_form) {
    __shared__ ReduceState shared[SOFTMAX_COL_SLICES * SOFTMAX_COL_WIDTH];
    const int64_t column = (int64_t)blockIdx.x * SOFTMAX_COL_WIDTH + threadIdx.x;
    const int valid = column < outer * inner;
    const int64_t base = valid ? column / inner * r * inner + column % inner : 0;
    ReduceState st = rs_empty(RS_LSE);
    if (valid)
        for (int64_t k = threadIdx.y; k < r; k += SOFTMAX_COL_SLICES) st = rs_push(RS_LSE, st, x[base + k * inner], k);
    shared[threadIdx.y * SOFTMAX_COL_WIDTH + threadIdx.x] = st;
    __syncthreads();
    if (!valid) return;
    ReduceState total = shared[threadIdx.x];
    for (int j = 1; j < SOFTMAX_COL_SLICES; j++)
        total = rs_combine(RS_LSE, total, shared[j * SOFTMAX_COL_WIDTH + threadIdx.x]);
    float m, inv_s, log_s;
    softmax_constants(total, &m, &inv_s, &log_s);
    for (int64_t k = threadIdx.y; k < r; k += SOFTMAX_COL_SLICES)
        y[base + k * inner] = softmax_value(x[base + k * inner], m, inv_s, log_s, log_form);
}
CU_KERNEL_ARGS(softmax_forward_cols_kernel, const float *, float *, int64_t, int64_t, int64_t, int);

// ------------------------------------------------------------------------------------------------
// Backward: dot = sum g*y (softmax) or sum g (log_softmax), then the elementwise formula.
// ------------------------------------------------------------------------------------------------

static __device__ __forceinline__ float softmax_dot_term(float y, float g, int log_form) { return log_form ? g : g * y; }

static __device__ __forceinline__ float softmax_grad(float y, float g, float dot, int log_form) {
    return log_form ? g - expf(y) * dot : y * (g - dot);
}

__global__ void softmax_backward_rows_warp_kernel(const float *y, const float *g, float *gx, int64_t rows, int64_t r,
                                                  int width, int log_form) {
    int64_t row;
    int lane;
    bool valid;
    if (!softmax_group(rows, width, &row, &lane, &valid)) return;
    const int64_t at = row * r;
    ReduceState st = rs_empty(RS_SUM);
    if (valid)
        for (int64_t k = lane; k < r; k += width)
            st = rs_push(RS_SUM, st, softmax_dot_term(y[at + k], g[at + k], log_form), k);
    const float dot = rs_group_reduce(RS_SUM, st, width).value;
    if (!valid) return;
    for (int64_t k = lane; k < r; k += width) gx[at + k] = softmax_grad(y[at + k], g[at + k], dot, log_form);
}
CU_KERNEL_ARGS(softmax_backward_rows_warp_kernel, const float *, const float *, float *, int64_t, int64_t, int, int);

__global__ void softmax_backward_rows_block_kernel(const float *y, const float *g, float *gx, int64_t r, int log_form) {
    __shared__ ReduceState shared[32];
    const int64_t at = (int64_t)blockIdx.x * r, threads = blockDim.x;
    const float *py = y + at, *pg = g + at;
    float *pgx = gx + at;
    const int vec = (((uintptr_t)py | (uintptr_t)pg | (uintptr_t)pgx) & 15) == 0;  // the same for the whole block
    const int64_t n4 = vec ? r / 4 : 0;
    ReduceState st = rs_empty(RS_SUM);
    for (int64_t j = threadIdx.x; j < n4; j += threads) {
        float4 vy = ((const float4 *)py)[j], vg = ((const float4 *)pg)[j];
        st = rs_push(RS_SUM, st, softmax_dot_term(vy.x, vg.x, log_form), 0);
        st = rs_push(RS_SUM, st, softmax_dot_term(vy.y, vg.y, log_form), 0);
        st = rs_push(RS_SUM, st, softmax_dot_term(vy.z, vg.z, log_form), 0);
        st = rs_push(RS_SUM, st, softmax_dot_term(vy.w, vg.w, log_form), 0);
    }
    for (int64_t k = 4 * n4 + threadIdx.x; k < r; k += threads)
        st = rs_push(RS_SUM, st, softmax_dot_term(py[k], pg[k], log_form), k);
    const float dot = rs_block_reduce(RS_SUM, st, shared).value;
    for (int64_t j = threadIdx.x; j < n4; j += threads) {
        float4 vy = ((const float4 *)py)[j], vg = ((const float4 *)pg)[j];
        ((float4 *)pgx)[j] = make_float4(softmax_grad(vy.x, vg.x, dot, log_form), softmax_grad(vy.y, vg.y, dot, log_form),
                                         softmax_grad(vy.z, vg.z, dot, log_form), softmax_grad(vy.w, vg.w, dot, log_form));
    }
    for (int64_t k = 4 * n4 + threadIdx.x; k < r; k += threads) pgx[k] = softmax_grad(py[k], pg[k], dot, log_form);
}
CU_KERNEL_ARGS(softmax_backward_rows_block_kernel, const float *, const float *, float *, int64_t, int);

__global__ void softmax_backward_cols_kernel(const float *y, const float *g, float *gx, int64_t outer, int64_t r,
                                             int64_t inner, int log_form) {
    __shared__ float shared[SOFTMAX_COL_SLICES * SOFTMAX_COL_WIDTH];
    const int64_t column = (int64_t)blockIdx.x * SOFTMAX_COL_WIDTH + threadIdx.x;
    const int valid = column < outer * inner;
    const int64_t base = valid ? column / inner * r * inner + column % inner : 0;
    float partial = 0.0f;
    if (valid)
        for (int64_t k = threadIdx.y; k < r; k += SOFTMAX_COL_SLICES)
            partial += softmax_dot_term(y[base + k * inner], g[base + k * inner], log_form);
    shared[threadIdx.y * SOFTMAX_COL_WIDTH + threadIdx.x] = partial;
    __syncthreads();
    if (!valid) return;
    float dot = shared[threadIdx.x];
    for (int j = 1; j < SOFTMAX_COL_SLICES; j++) dot += shared[j * SOFTMAX_COL_WIDTH + threadIdx.x];
    for (int64_t k = threadIdx.y; k < r; k += SOFTMAX_COL_SLICES)
        gx[base + k * inner] = softmax_grad(y[base + k * inner], g[base + k * inner], dot, log_form);
}
CU_KERNEL_ARGS(softmax_backward_cols_kernel, const float *, const float *, float *, int64_t, int64_t, int64_t, int);

// ------------------------------------------------------------------------------------------------
// Launchers.
// ------------------------------------------------------------------------------------------------

CU_EXTERN_C void softmax_forward_f32_launch(const float *x, float *y, int64_t outer, int64_t r, int64_t inner,
                                            int log_form, cudaStream_t stream) {
    if (outer <= 0 || r <= 0 || inner <= 0) return;
    if (inner > 1) {
        const unsigned int blocks = (unsigned int)((outer * inner + SOFTMAX_COL_WIDTH - 1) / SOFTMAX_COL_WIDTH);
        CU_LAUNCH(softmax_forward_cols_kernel, blocks, DIM3(SOFTMAX_COL_WIDTH, SOFTMAX_COL_SLICES, 1), 0, stream, x, y,
                  outer, r, inner, log_form);
    } else if (r <= SOFTMAX_WARP_ROW_MAX) {
        const int width = rs_row_group_width(r);
        const unsigned int blocks = (unsigned int)((outer * width + SOFTMAX_GROUP_THREADS - 1) / SOFTMAX_GROUP_THREADS);
        CU_LAUNCH(softmax_forward_rows_warp_kernel, blocks, SOFTMAX_GROUP_THREADS, 0, stream, x, y, outer, r, width,
                  log_form);
    } else {
        CU_LAUNCH(softmax_forward_rows_block_kernel, (unsigned int)outer, rs_row_block_threads(r), 0, stream, x, y, r,
                  log_form);
    }
}

CU_EXTERN_C void softmax_backward_f32_launch(const float *y, const float *grad_y, float *grad_x, int64_t outer,
                                             int64_t r, int64_t inner, int log_form, cudaStream_t stream) {
    if (outer <= 0 || r <= 0 || inner <= 0) return;
    if (inner > 1) {
        const unsigned int blocks = (unsigned int)((outer * inner + SOFTMAX_COL_WIDTH - 1) / SOFTMAX_COL_WIDTH);
        CU_LAUNCH(softmax_backward_cols_kernel, blocks, DIM3(SOFTMAX_COL_WIDTH, SOFTMAX_COL_SLICES, 1), 0, stream, y,
                  grad_y, grad_x, outer, r, inner, log_form);
    } else if (r <= SOFTMAX_WARP_ROW_MAX) {
        const int width = rs_row_group_width(r);
        const unsigned int blocks = (unsigned int)((outer * width + SOFTMAX_GROUP_THREADS - 1) / SOFTMAX_GROUP_THREADS);
        CU_LAUNCH(softmax_backward_rows_warp_kernel, blocks, SOFTMAX_GROUP_THREADS, 0, stream, y, grad_y, grad_x,
                  outer, r, width, log_form);
    } else {
        CU_LAUNCH(softmax_backward_rows_block_kernel, (unsigned int)outer, rs_row_block_threads(r), 0, stream, y,
                  grad_y, grad_x, r, log_form);
    }
}
