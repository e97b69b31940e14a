// Layer, group and batch normalisation, forward and backward, f32 (launchers in kernels/norm.h, which
// states the semantics; the CPU twins are engine/cpu/norm_impl.inc).
//
// Layer norm (x [N, D]): one warp per row (llm.c's layernorm kernels), 4 rows per 128-thread block.
// The warp reads its row with coalesced 128-byte loads, twice for the statistics (mean, then the sum
// of squared deviations: no cancellation when |mean| >> std) and once more to write y; the sums
// are xor-shuffle butterflies, so every lane holds the same total and no barrier is needed. The
// backward's dx uses the same layout; dweight/dbias are column sums over N rows: 32-column x 8-row
// thread tiles sum a chunk of rows each (coalesced along the row), a shared-memory step folds the 8
// row lanes, and a second kernel adds the chunk partials in chunk order (no float atomics).
//
// Group and batch norm share one structure, because both compute statistics over "rows" made of
// equal contiguous segments: group norm row (b, g) is one segment of C/G*S elements, batch norm row c
// is B segments of S elements, C*S apart. A row is split over up to NORM_MAX_SPLITS blocks (so a
// few channels with millions of elements still fill the GPU); each block computes the mean and the
// sum of squared deviations of its slice (two passes; the second reads from L1/L2), and a finalize
// kernel merges the slices in f64 in split order (Chan et al.'s pairwise update:
// M2 = sum M2_k + n_k (mean_k - mean)^2), writes mean/rstd and updates running statistics. The apply
// kernel gives each block one (b, c) plane of S contiguous elements, so the per-plane scale and
// shift (y = x * scale + shift, as the CPU kernel) are computed once per block, without a division
// per element. The backward is the same pipeline: partial sums of dy and dy * (x - mean), a
// finalize that forms dweight, dbias and the dx coefficients (dx = dy * a + x * bx + c0, as the CPU),
// and the apply kernel.
#include "kernels/cuda_compat.h"
#include "kernels/norm.h"

#include <stdio.h>
#include <stdlib.h>

#define NORM_THREADS 256             // blocks of the group/batch norm statistics kernels
#define NORM_SPLIT_ELEMENTS 4096     // a statistics row is split into slices of at least this many
#define NORM_MAX_SPLITS 32           // ... and at most this many slices
#define NORM_APPLY_THREADS 256       // largest block of the apply kernels
#define LN_ROWS_PER_BLOCK 4          // layer norm: one warp per row
#define LN_COLUMNS 32                // layer norm dweight/dbias: a block covers 32 columns ...
#define LN_ROW_LANES 8               // ... with 8 threads down the rows
#define LN_MIN_ROWS_PER_CHUNK 32     // ... over a chunk of at least this many rows
#define LN_MAX_CHUNKS 128            // ... and at most this many chunks
#define FULL_MASK 0xffffffffu

// ------------------------------------------------------------------------------------------------
// Helpers.
// ------------------------------------------------------------------------------------------------

// Sum over the warp by an xor butterfly: every lane ends with the same bits (a + b == b + a).
static __device__ __forceinline__ float warp_sum(float v) {
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(FULL_MASK, v, offset);
    return v;
}

// Sum over the block (blockDim.x a multiple of 32); every thread gets the total. `warp_totals` is a
// __shared__ float[32] that this call alone uses: a second reduction takes its own array, so no
// barrier is needed after the read.
static __device__ float block_sum(float v, float *warp_totals) {
    const unsigned int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    v = warp_sum(v);
    if (lane == 0) warp_totals[warp] = v;
    __syncthreads();
    return warp_sum(lane < warps ? warp_totals[lane] : 0.0f);
}

// Slice `split` of `splits` of [0, count): [*begin, *end), sizes differ by at most one block's worth.
static __host__ __device__ __forceinline__ void split_range(int64_t count, int splits, int split, int64_t *begin,
                                                             int64_t *end) {
    const int64_t per = (count + splits - 1) / splits;
    int64_t b = (int64_t)split * per;
    if (b > count) b = count;
    *begin = b;
    *end = b + per < count ? b + per : count;
}

// Walks element k, k + step, ... of a statistics row made of segments of `seg_len` contiguous
// elements, `seg_stride` apart, without a division per element.
typedef struct NormWalk {
    int64_t seg, off, step_seg, step_off, seg_len, seg_stride;
} NormWalk;

static __device__ __forceinline__ NormWalk norm_walk_start(int64_t k, int64_t step, int64_t seg_len,
                                                           int64_t seg_stride) {
    NormWalk w;
    w.seg = k / seg_len;
    w.off = k - w.seg * seg_len;
    w.step_seg = step / seg_len;
    w.step_off = step - w.step_seg * seg_len;
    w.seg_len = seg_len;
    w.seg_stride = seg_stride;
    return w;
}
static __device__ __forceinline__ int64_t norm_walk_offset(const NormWalk *w) { return w->seg * w->seg_stride + w->off; }
static __device__ __forceinline__ void norm_walk_next(NormWalk *w) {
    w->off += w->step_off;
    w->seg += w->step_seg;
    if (w->off >= w->seg_len) {
        w->off -= w->seg_len;
        w->seg++;
    }
}

// This thread's share (k = begin + threadIdx.x, step blockDim.x) of sum (x_k - center), or of
// sum (x_k - center)^2 when `square`, over elements [begin, end) of a row.
static __device__ float row_slice_sum(const float *row, int64_t begin, int64_t end, int64_t seg_len, int64_t seg_stride,
                                      float center, int square) {
    float sum = 0.0f;
    int64_t k = begin + threadIdx.x;
    if (k >= end) return sum;
    NormWalk w = norm_walk_start(k, blockDim.x, seg_len, seg_stride);
    for (; k < end; k += blockDim.x) {
        float v = row[norm_walk_offset(&w)] - center;
        sum += square ? v * v : v;
        norm_walk_next(&w);
    }
    return sum;
}

static int norm_split_count(int64_t count) {
    int64_t splits = (count + NORM_SPLIT_ELEMENTS - 1) / NORM_SPLIT_ELEMENTS;
    return splits < 1 ? 1 : splits > NORM_MAX_SPLITS ? NORM_MAX_SPLITS : (int)splits;
}

// Floats rounded up to a multiple of 4 (16 bytes), for carving workspaces.
static size_t floats_aligned(int64_t n) { return (size_t)((n + 3) / 4 * 4); }

// Aborts with one line: shapes the launchers cannot take are the caller's bug.
static void norm_fatal(const char *what, long long value) {
    fprintf(stderr, "error: kernels/norm.cu: %s (%lld)\n", what, value);
    exit(1);
}

// ------------------------------------------------------------------------------------------------
// Layer norm: x [N, D], one warp per row.
// ------------------------------------------------------------------------------------------------

// y = (x - mean) * rstd * w + b (the CPU's order of operations).
__global__ void layer_norm_forward_kernel(const float *__restrict__ x, const float *__restrict__ weight,
                                          const float *__restrict__ bias, float *__restrict__ y,
                                          float *__restrict__ mean_out, float *__restrict__ rstd_out, int64_t N,
                                          int64_t D, double eps) {
    const int lane = (int)(threadIdx.x % 32);
    const int64_t row = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (row >= N) return;  // the whole warp leaves together; this kernel has no block barrier
    const float *xr = x + row * D;
    float sum = 0.0f;
    for (int64_t d = lane; d < D; d += 32) sum += xr[d];
    sum = warp_sum(sum);
    const float m = D ? sum / (float)D : 0.0f;
    float squares = 0.0f;
    for (int64_t d = lane; d < D; d += 32) {
        float diff = xr[d] - m;
        squares += diff * diff;
    }
    squares = warp_sum(squares);
    const float r = (float)(1.0 / sqrt((D ? (double)squares / (double)D : 0.0) + eps));
    if (lane == 0) {
        if (mean_out) mean_out[row] = m;
        if (rstd_out) rstd_out[row] = r;
    }
    float *yr = y + row * D;
    for (int64_t d = lane; d < D; d += 32) {
        float v = (xr[d] - m) * r;
        if (weight) v *= weight[d];
        if (bias) v += bias[d];
        yr[d] = v;
    }
}
CU_KERNEL_ARGS(layer_norm_forward_kernel, const float *, const float *, const float *, float *, float *, float *,
               int64_t, int64_t, double);

// dx = r * (g - mean(g) - xhat * mean(g * xhat)), g = dy * w.
__global__ void layer_norm_backward_dx_kernel(const float *__restrict__ x, const float *__restrict__ dy,
                                              const float *__restrict__ mean, const float *__restrict__ rstd,
                                              const float *__restrict__ weight, float *__restrict__ dx, int64_t N,
                                              int64_t D) {
    const int lane = (int)(threadIdx.x % 32);
    const int64_t row = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (row >= N) return;
    const float *xr = x + row * D, *gr = dy + row * D;
    const float m = mean[row], r = rstd[row];
    float sum_g = 0.0f, sum_g_xhat = 0.0f;
    for (int64_t d = lane; d < D; d += 32) {
        float g = weight ? gr[d] * weight[d] : gr[d];
        sum_g += g;
        sum_g_xhat += g * ((xr[d] - m) * r);
    }
    sum_g = warp_sum(sum_g);
    sum_g_xhat = warp_sum(sum_g_xhat);
    const float mean1 = D ? sum_g / (float)D : 0.0f, mean2 = D ? sum_g_xhat / (float)D : 0.0f;
    float *out = dx + row * D;
    for (int64_t d = lane; d < D; d += 32) {
        float g = weight ? gr[d] * weight[d] : gr[d];
        out[d] = r * (g - mean1 - (xr[d] - m) * r * mean2);
    }
}
CU_KERNEL_ARGS(layer_norm_backward_dx_kernel, const float *, const float *, const float *, const float *,
               const float *, float *, int64_t, int64_t);

// Pass 1 of dweight/dbias: block (column tile blockIdx.x, row chunk blockIdx.y) sums dy * xhat and dy
// over its rows: thread (tx, ty) walks rows ty, ty + 8, ... of the chunk in column tile*32 + tx
// (each warp reads 32 consecutive floats of a row), then thread (tx, 0) adds the 8 row lanes in
// order. partial [chunks][2][D]: dweight partials, then dbias partials.
__global__ void layer_norm_param_grad_partial_kernel(const float *__restrict__ x, const float *__restrict__ dy,
                                                     const float *__restrict__ mean, const float *__restrict__ rstd,
                                                     int64_t N, int64_t D, int64_t rows_per_chunk,
                                                     float *__restrict__ partial) {
    __shared__ float weight_sums[LN_ROW_LANES][LN_COLUMNS];
    __shared__ float bias_sums[LN_ROW_LANES][LN_COLUMNS];
    const int tx = (int)threadIdx.x, ty = (int)threadIdx.y;
    const int64_t col = (int64_t)blockIdx.x * LN_COLUMNS + tx, chunk = blockIdx.y;
    const int64_t row_begin = chunk * rows_per_chunk;
    const int64_t row_end = row_begin + rows_per_chunk < N ? row_begin + rows_per_chunk : N;
    float sum_w = 0.0f, sum_b = 0.0f;
    if (col < D)
        for (int64_t row = row_begin + ty; row < row_end; row += LN_ROW_LANES) {
            float g = dy[row * D + col];
            sum_w += g * ((x[row * D + col] - mean[row]) * rstd[row]);
            sum_b += g;
        }
    weight_sums[ty][tx] = sum_w;
    bias_sums[ty][tx] = sum_b;
    __syncthreads();
    if (ty == 0 && col < D) {
        float total_w = 0.0f, total_b = 0.0f;
        for (int lane = 0; lane < LN_ROW_LANES; lane++) {
            total_w += weight_sums[lane][tx];
            total_b += bias_sums[lane][tx];
        }
        partial[(2 * chunk) * D + col] = total_w;
        partial[(2 * chunk + 1) * D + col] = total_b;
    }
}
CU_KERNEL_ARGS(layer_norm_param_grad_partial_kernel, const float *, const float *, const float *, const float *,
               int64_t, int64_t, int64_t, float *);

// Pass 2: one thread per column adds the chunk partials in chunk order.
__global__ void layer_norm_param_grad_final_kernel(const float *__restrict__ partial, int64_t chunks, int64_t D,
                                                   float *__restrict__ dweight, float *__restrict__ dbias) {
    const int64_t col = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (col >= D) return;
    float total_w = 0.0f, total_b = 0.0f;
    for (int64_t chunk = 0; chunk < chunks; chunk++) {
        total_w += partial[(2 * chunk) * D + col];
        total_b += partial[(2 * chunk + 1) * D + col];
    }
    if (dweight) dweight[col] = total_w;
    if (dbias) dbias[col] = total_b;
}
CU_KERNEL_ARGS(layer_norm_param_grad_final_kernel, const float *, int64_t, int64_t, float *, float *);

static void layer_norm_chunks(int64_t N, int64_t *chunks, int64_t *rows_per_chunk) {
    int64_t rows = (N + LN_MAX_CHUNKS - 1) / LN_MAX_CHUNKS;
    if (rows < LN_MIN_ROWS_PER_CHUNK) rows = LN_MIN_ROWS_PER_CHUNK;
    *rows_per_chunk = rows;
    *chunks = (N + rows - 1) / rows;
}

static unsigned int blocks_for(int64_t n, int64_t per_block) {
    int64_t blocks = (n + per_block - 1) / per_block;
    if (blocks > 0x7fffffff) norm_fatal("grid too large", (long long)blocks);
    return (unsigned int)blocks;
}

CU_EXTERN_C void layer_norm_forward_launch(const float *x, const float *weight, const float *bias, float *y,
                                           float *mean, float *rstd, int64_t N, int64_t D, double eps,
                                           cudaStream_t stream) {
    if (N <= 0) return;
    CU_LAUNCH(layer_norm_forward_kernel, blocks_for(N, LN_ROWS_PER_BLOCK), 32 * LN_ROWS_PER_BLOCK, 0, stream, x,
              weight, bias, y, mean, rstd, N, D, eps);
}

CU_EXTERN_C size_t layer_norm_backward_workspace_bytes(int64_t N, int64_t D) {
    int64_t chunks, rows_per_chunk;
    layer_norm_chunks(N, &chunks, &rows_per_chunk);
    return floats_aligned(2 * chunks * D) * sizeof(float);
}

CU_EXTERN_C void layer_norm_backward_launch(const float *x, const float *dy, const float *mean, const float *rstd,
                                            const float *weight, float *dx, float *dweight, float *dbias,
                                            void *workspace, int64_t N, int64_t D, cudaStream_t stream) {
    if (N <= 0 || D <= 0) {
        // No rows: the parameter gradients are empty sums.
        if (D > 0 && (dweight || dbias)) {
            int64_t chunks = 0;
            CU_LAUNCH(layer_norm_param_grad_final_kernel, blocks_for(D, 256), 256, 0, stream, (const float *)workspace,
                      chunks, D, dweight, dbias);
        }
        return;
    }
    if (dx)
        CU_LAUNCH(layer_norm_backward_dx_kernel, blocks_for(N, LN_ROWS_PER_BLOCK), 32 * LN_ROWS_PER_BLOCK, 0, stream, x,
                  dy, mean, rstd, weight, dx, N, D);
    if (dweight || dbias) {
        int64_t chunks, rows_per_chunk;
        layer_norm_chunks(N, &chunks, &rows_per_chunk);
        float *partial = (float *)workspace;
        CU_LAUNCH(layer_norm_param_grad_partial_kernel, DIM3(blocks_for(D, LN_COLUMNS), chunks, 1),
                  DIM3(LN_COLUMNS, LN_ROW_LANES, 1), 0, stream, x, dy, mean, rstd, N, D, rows_per_chunk, partial);
        CU_LAUNCH(layer_norm_param_grad_final_kernel, blocks_for(D, 256), 256, 0, stream, (const float *)partial, chunks,
                  D, dweight, dbias);
    }
}

// ------------------------------------------------------------------------------------------------
// Group and batch norm: statistics rows of segments, split over blocks, merged in f64.
// ------------------------------------------------------------------------------------------------

// Row blockIdx.x (elements k of the row at x + row * row_stride + (k / seg_len) * seg_stride +
// k % seg_len), slice blockIdx.y of `splits`: partial[row][split] = {mean, sum of squared deviations}
// of the slice.
__global__ void norm_moments_partial_kernel(const float *__restrict__ x, int64_t row_stride, int64_t seg_len,
                                            int64_t seg_count, int64_t seg_stride, int splits,
                                            float *__restrict__ partial) {
    __shared__ float sum_warps[32];
    __shared__ float squares_warps[32];
    const int64_t row = blockIdx.x;
    const int split = (int)blockIdx.y;
    int64_t begin, end;
    split_range(seg_len * seg_count, splits, split, &begin, &end);
    const float *xr = x + row * row_stride;
    const float total = block_sum(row_slice_sum(xr, begin, end, seg_len, seg_stride, 0.0f, 0), sum_warps);
    const float slice_mean = end > begin ? total / (float)(end - begin) : 0.0f;
    const float squares =
        block_sum(row_slice_sum(xr, begin, end, seg_len, seg_stride, slice_mean, 1), squares_warps);
    if (threadIdx.x == 0) {
        partial[2 * (row * splits + split)] = slice_mean;
        partial[2 * (row * splits + split) + 1] = squares;
    }
}
CU_KERNEL_ARGS(norm_moments_partial_kernel, const float *, int64_t, int64_t, int64_t, int64_t, int, float *);

// One thread per statistics row: merges the slices in order (Chan et al.), writes mean and rstd and,
// if given, updates the running statistics (PyTorch's momentum rule, unbiased variance).
__global__ void norm_moments_finalize_kernel(const float *__restrict__ partial, int64_t rows, int splits,
                                             int64_t count, double eps, float *__restrict__ mean,
                                             float *__restrict__ rstd, float *__restrict__ running_mean,
                                             float *__restrict__ running_var, double momentum) {
    const int64_t row = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (row >= rows) return;
    const float *p = partial + 2 * row * splits;
    const double n = (double)count;
    double total = 0.0;
    for (int s = 0; s < splits; s++) {
        int64_t begin, end;
        split_range(count, splits, s, &begin, &end);
        total += (double)(end - begin) * (double)p[2 * s];
    }
    const double m = count ? total / n : 0.0;
    double m2 = 0.0;
    for (int s = 0; s < splits; s++) {
        int64_t begin, end;
        split_range(count, splits, s, &begin, &end);
        double d = (double)p[2 * s] - m;
        m2 += (double)p[2 * s + 1] + (double)(end - begin) * d * d;
    }
    const double var = count ? m2 / n : 0.0;
    const float mean_f = (float)m;
    mean[row] = mean_f;
    rstd[row] = (float)(1.0 / sqrt(var + eps));
    if (running_mean) {
        running_mean[row] = (float)((1 - momentum) * (double)running_mean[row] + momentum * (double)mean_f);
        running_var[row] = (float)((1 - momentum) * (double)running_var[row] + momentum * var * n / (n - 1));
    }
}
CU_KERNEL_ARGS(norm_moments_finalize_kernel, const float *, int64_t, int, int64_t, double, float *, float *, float *,
               float *, double);

// Batch norm evaluation: the statistics are the running ones.
__global__ void batch_norm_eval_statistics_kernel(const float *__restrict__ running_mean,
                                                  const float *__restrict__ running_var, int64_t C, double eps,
                                                  float *__restrict__ mean, float *__restrict__ rstd) {
    const int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    mean[c] = running_mean[c];
    rstd[c] = (float)(1.0 / sqrt((double)running_var[c] + eps));
}
CU_KERNEL_ARGS(batch_norm_eval_statistics_kernel, const float *, const float *, int64_t, double, float *, float *);

// Plane p = blockIdx.x: S contiguous elements of channel p % C, statistics row (p / stat_divisor) %
// stat_modulus (batch norm: the channel; group norm: the (b, group) row). y = x * scale + shift with
// scale = w * rstd, shift = b - mean * scale formed in f64 once per block, as the CPU does per channel.
__global__ void norm_apply_forward_kernel(const float *__restrict__ x, const float *__restrict__ weight,
                                          const float *__restrict__ bias, const float *__restrict__ mean,
                                          const float *__restrict__ rstd, float *__restrict__ y, int64_t S,
                                          int64_t C, int64_t stat_divisor, int64_t stat_modulus) {
    const int64_t plane = blockIdx.x, channel = plane % C, stat = (plane / stat_divisor) % stat_modulus;
    const double r = rstd[stat];
    const double scale_d = weight ? (double)weight[channel] * r : r;
    const float scale = (float)scale_d;
    const float shift = (float)((bias ? (double)bias[channel] : 0.0) - (double)mean[stat] * scale_d);
    const float *xp = x + plane * S;
    float *yp = y + plane * S;
    for (int64_t s = (int64_t)blockIdx.y * blockDim.x + threadIdx.x; s < S; s += (int64_t)gridDim.y * blockDim.x)
        yp[s] = xp[s] * scale + shift;
}
CU_KERNEL_ARGS(norm_apply_forward_kernel, const float *, const float *, const float *, const float *, const float *,
               float *, int64_t, int64_t, int64_t, int64_t);

// Backward partial sums over slices of statistics rows (same addressing as the moments): partial[row]
// [split] = {sum dy, sum dy * (x - mean[row / mean_divisor])}.
__global__ void norm_grad_sums_partial_kernel(const float *__restrict__ x, const float *__restrict__ dy,
                                              const float *__restrict__ mean, int64_t mean_divisor,
                                              int64_t row_stride, int64_t seg_len, int64_t seg_count,
                                              int64_t seg_stride, int splits, float *__restrict__ partial) {
    __shared__ float dy_warps[32];
    __shared__ float centered_warps[32];
    const int64_t row = blockIdx.x;
    const int split = (int)blockIdx.y;
    int64_t begin, end;
    split_range(seg_len * seg_count, splits, split, &begin, &end);
    const float m = mean[row / mean_divisor];
    const float *xr = x + row * row_stride, *gr = dy + row * row_stride;
    float sum_dy = 0.0f, sum_centered = 0.0f;
    int64_t k = begin + threadIdx.x;
    if (k < end) {
        NormWalk w = norm_walk_start(k, blockDim.x, seg_len, seg_stride);
        for (; k < end; k += blockDim.x) {
            int64_t at = norm_walk_offset(&w);
            float g = gr[at];
            sum_dy += g;
            sum_centered += g * (xr[at] - m);
            norm_walk_next(&w);
        }
    }
    sum_dy = block_sum(sum_dy, dy_warps);
    sum_centered = block_sum(sum_centered, centered_warps);
    if (threadIdx.x == 0) {
        partial[2 * (row * splits + split)] = sum_dy;
        partial[2 * (row * splits + split) + 1] = sum_centered;
    }
}
CU_KERNEL_ARGS(norm_grad_sums_partial_kernel, const float *, const float *, const float *, int64_t, int64_t, int64_t,
               int64_t, int64_t, int, float *);

// Sum over the slices of row `row` of component `which` (0: dy, 1: dy * (x - mean)), in split order.
static __device__ __forceinline__ double merged_sum(const float *partial, int64_t row, int splits, int which) {
    double total = 0.0;
    for (int s = 0; s < splits; s++) total += (double)partial[2 * (row * splits + s) + which];
    return total;
}

// Batch norm backward, one thread per channel: dweight, dbias and the dx coefficients
// coefficients[c] = {bx, c0} of dx = dy * a + x * bx + c0 (engine/cpu/norm_impl.inc, in f64).
__global__ void batch_norm_backward_finalize_kernel(const float *__restrict__ partial, int64_t C, int splits,
                                                    int64_t count, const float *__restrict__ mean,
                                                    const float *__restrict__ rstd, const float *__restrict__ weight,
                                                    float *__restrict__ dweight, float *__restrict__ dbias,
                                                    float *__restrict__ coefficients, int batch_statistics) {
    const int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    const double n = (double)count, r = rstd[c];
    const double sum_dy = merged_sum(partial, c, splits, 0), sum_centered = merged_sum(partial, c, splits, 1);
    if (dweight) dweight[c] = (float)(sum_centered * r);
    if (dbias) dbias[c] = (float)sum_dy;
    if (!coefficients) return;
    const double k = (weight ? (double)weight[c] : 1.0) * r;  // d y / d x with fixed statistics
    float bx = 0.0f, c0 = 0.0f;
    if (batch_statistics && n > 0) {
        // dx = k * (dy - sum_dy / n - (x - m) * r^2 * sum_centered / n)
        const double k2 = r * r * sum_centered / n;
        bx = (float)(-k * k2);
        c0 = (float)(-k * sum_dy / n + k * k2 * (double)mean[c]);
    }
    coefficients[2 * c] = bx;
    coefficients[2 * c + 1] = c0;
}
CU_KERNEL_ARGS(batch_norm_backward_finalize_kernel, const float *, int64_t, int, int64_t, const float *, const float *,
               const float *, float *, float *, float *, int);

// Group norm backward. Threads i < B*G: row (b, g) folds its channels' plane sums (partial rows are
// the (b, c) planes) into the dx coefficients {bx, c0} of the row. Threads i < C: channel c adds
// rstd * sum dy (x - mean) and sum dy over the batch into dweight, dbias. Orders are fixed.
__global__ void group_norm_backward_finalize_kernel(const float *__restrict__ partial, int splits, int64_t B,
                                                    int64_t C, int64_t S, int64_t G, const float *__restrict__ mean,
                                                    const float *__restrict__ rstd, const float *__restrict__ weight,
                                                    float *__restrict__ dweight, float *__restrict__ dbias,
                                                    float *__restrict__ coefficients) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int64_t Cg = C / G, m_count = Cg * S;
    if (coefficients && i < B * G) {
        const int64_t b = i / G, group = i % G;
        double sum_dxhat = 0.0, sum_dxhat_centered = 0.0;
        for (int64_t c = 0; c < Cg; c++) {
            const int64_t ch = group * Cg + c;
            const double w = weight ? (double)weight[ch] : 1.0;
            sum_dxhat += w * merged_sum(partial, b * C + ch, splits, 0);
            sum_dxhat_centered += w * merged_sum(partial, b * C + ch, splits, 1);
        }
        // dx = r * (w dy - mean(dxhat) - (x - m) r * mean(dxhat * xhat)), mean(dxhat * xhat) = r * sum / M
        const double r = rstd[i], m = mean[i];
        const double mean1 = m_count ? sum_dxhat / (double)m_count : 0.0;
        const double mean2 = m_count ? r * sum_dxhat_centered / (double)m_count : 0.0;
        coefficients[2 * i] = (float)(-r * r * mean2);
        coefficients[2 * i + 1] = (float)(-r * mean1 + r * r * mean2 * m);
    }
    if ((dweight || dbias) && i < C) {
        double w_total = 0.0, b_total = 0.0;
        for (int64_t b = 0; b < B; b++) {
            w_total += (double)rstd[b * G + i / Cg] * merged_sum(partial, b * C + i, splits, 1);
            b_total += merged_sum(partial, b * C + i, splits, 0);
        }
        if (dweight) dweight[i] = (float)w_total;
        if (dbias) dbias[i] = (float)b_total;
    }
}
CU_KERNEL_ARGS(group_norm_backward_finalize_kernel, const float *, int, int64_t, int64_t, int64_t, int64_t,
               const float *, const float *, const float *, float *, float *, float *);

// dx = dy * a + x * bx + c0 over plane blockIdx.x (addressing as norm_apply_forward_kernel), with
// a = w * rstd of the plane's channel and statistics row, {bx, c0} = coefficients[stat row].
__global__ void norm_apply_backward_kernel(const float *__restrict__ x, const float *__restrict__ dy,
                                           const float *__restrict__ rstd, const float *__restrict__ weight,
                                           const float *__restrict__ coefficients, float *__restrict__ dx, int64_t S,
                                           int64_t C, int64_t stat_divisor, int64_t stat_modulus) {
    const int64_t plane = blockIdx.x, channel = plane % C, stat = (plane / stat_divisor) % stat_modulus;
    const float a = (float)((weight ? (double)weight[channel] : 1.0) * (double)rstd[stat]);
    const float bx = coefficients[2 * stat], c0 = coefficients[2 * stat + 1];
    const float *xp = x + plane * S, *gp = dy + plane * S;
    float *out = dx + plane * S;
    for (int64_t s = (int64_t)blockIdx.y * blockDim.x + threadIdx.x; s < S; s += (int64_t)gridDim.y * blockDim.x)
        out[s] = gp[s] * a + xp[s] * bx + c0;
}
CU_KERNEL_ARGS(norm_apply_backward_kernel, const float *, const float *, const float *, const float *, const float *,
               float *, int64_t, int64_t, int64_t, int64_t);

// Grid and block of the apply kernels: one block row per plane, about 4 elements per thread.
static void apply_config(int64_t planes, int64_t S, dim3 *grid, dim3 *block) {
    int64_t threads = S >= NORM_APPLY_THREADS ? NORM_APPLY_THREADS : (S + 31) / 32 * 32;
    int64_t chunks = (S + 4 * threads - 1) / (4 * threads);
    if (chunks > 65535) chunks = 65535;
    if (planes > 0x7fffffff) norm_fatal("too many (batch, channel) planes", (long long)planes);
    *grid = DIM3(planes, chunks, 1);
    *block = DIM3(threads, 1, 1);
}

static void check_rows(int64_t rows, int splits) {
    if (rows > 0x7fffffff) norm_fatal("too many statistics rows", (long long)rows);
    (void)splits;
}

// ---------------------------------------------------------------- group norm

CU_EXTERN_C size_t group_norm_forward_workspace_bytes(int64_t B, int64_t C, int64_t S, int64_t G) {
    const int splits = norm_split_count(C / G * S);
    return floats_aligned(2 * B * G * splits) * sizeof(float);
}

CU_EXTERN_C void group_norm_forward_launch(const float *x, const float *weight, const float *bias, float *y,
                                           float *mean, float *rstd, void *workspace, int64_t B, int64_t C,
                                           int64_t S, int64_t G, double eps, cudaStream_t stream) {
    if (G <= 0 || C % G) norm_fatal("group_norm: the group count must divide the channels", (long long)G);
    if (B <= 0 || C <= 0) return;
    const int64_t rows = B * G, m_count = C / G * S;
    const int splits = norm_split_count(m_count);
    float *partial = (float *)workspace;
    check_rows(rows, splits);
    CU_LAUNCH(norm_moments_partial_kernel, DIM3(rows, splits, 1), NORM_THREADS, 0, stream, x, m_count, m_count,
              (int64_t)1, m_count, splits, partial);
    CU_LAUNCH(norm_moments_finalize_kernel, blocks_for(rows, 128), 128, 0, stream, (const float *)partial, rows, splits,
              m_count, eps, mean, rstd, (float *)NULL, (float *)NULL, 0.0);
    if (S <= 0) return;
    dim3 grid, block;
    apply_config(B * C, S, &grid, &block);
    CU_LAUNCH(norm_apply_forward_kernel, grid, block, 0, stream, x, weight, bias, (const float *)mean,
              (const float *)rstd, y, S, C, C / G, rows);
}

CU_EXTERN_C size_t group_norm_backward_workspace_bytes(int64_t B, int64_t C, int64_t S, int64_t G) {
    const int splits = norm_split_count(S);
    return (floats_aligned(2 * B * C * splits) + floats_aligned(2 * B * G)) * sizeof(float);
}

CU_EXTERN_C void group_norm_backward_launch(const float *x, const float *dy, const float *mean, const float *rstd,
                                            const float *weight, float *dx, float *dweight, float *dbias,
                                            void *workspace, int64_t B, int64_t C, int64_t S, int64_t G,
                                            cudaStream_t stream) {
    if (G <= 0 || C % G) norm_fatal("group_norm: the group count must divide the channels", (long long)G);
    if (C <= 0 || (!dx && !dweight && !dbias)) return;
    const int64_t planes = B * C, Cg = C / G;
    const int splits = norm_split_count(S);
    float *partial = (float *)workspace;
    float *coefficients = dx ? partial + floats_aligned(2 * planes * splits) : (float *)NULL;
    if (planes > 0) {
        check_rows(planes, splits);
        // Per (b, c) plane: sum dy and sum dy * (x - mean of its (b, group) row).
        CU_LAUNCH(norm_grad_sums_partial_kernel, DIM3(planes, splits, 1), NORM_THREADS, 0, stream, x, dy, mean, Cg, S,
                  S, (int64_t)1, S, splits, partial);
    }
    const int64_t finalize_threads = B * G > C ? B * G : C;
    CU_LAUNCH(group_norm_backward_finalize_kernel, blocks_for(finalize_threads, 128), 128, 0, stream,
              (const float *)partial, splits, B, C, S, G, mean, rstd, weight, dweight, dbias, coefficients);
    if (!dx || planes <= 0 || S <= 0) return;
    dim3 grid, block;
    apply_config(planes, S, &grid, &block);
    CU_LAUNCH(norm_apply_backward_kernel, grid, block, 0, stream, x, dy, rstd, weight, (const float *)coefficients, dx,
              S, C, Cg, B * G);
}

// ---------------------------------------------------------------- batch norm

CU_EXTERN_C size_t batch_norm_forward_workspace_bytes(int64_t B, int64_t C, int64_t S) {
    const int splits = norm_split_count(B * S);
    return floats_aligned(2 * C * splits) * sizeof(float);
}

CU_EXTERN_C void batch_norm_forward_training_launch(const float *x, const float *weight, const float *bias, float *y,
                                                    float *mean, float *rstd, float *running_mean,
                                                    float *running_var, void *workspace, int64_t B, int64_t C,
                                                    int64_t S, double momentum, double eps, cudaStream_t stream) {
    if (C <= 0) return;
    const int splits = norm_split_count(B * S);
    float *partial = (float *)workspace;
    check_rows(C, splits);
    // Channel c: B segments of S elements at x + b * C * S + c * S.
    CU_LAUNCH(norm_moments_partial_kernel, DIM3(C, splits, 1), NORM_THREADS, 0, stream, x, S, S, B, C * S, splits,
              partial);
    CU_LAUNCH(norm_moments_finalize_kernel, blocks_for(C, 128), 128, 0, stream, (const float *)partial, C, splits,
              B * S, eps, mean, rstd, running_mean, running_var, momentum);
    if (B <= 0 || S <= 0) return;
    dim3 grid, block;
    apply_config(B * C, S, &grid, &block);
    CU_LAUNCH(norm_apply_forward_kernel, grid, block, 0, stream, x, weight, bias, (const float *)mean,
              (const float *)rstd, y, S, C, (int64_t)1, C);
}

CU_EXTERN_C void batch_norm_forward_eval_launch(const float *x, const float *weight, const float *bias, float *y,
                                                float *mean, float *rstd, const float *running_mean,
                                                const float *running_var, int64_t B, int64_t C, int64_t S, double eps,
                                                cudaStream_t stream) {
    if (C <= 0) return;
    CU_LAUNCH(batch_norm_eval_statistics_kernel, blocks_for(C, 128), 128, 0, stream, running_mean, running_var, C, eps,
              mean, rstd);
    if (B <= 0 || S <= 0) return;
    dim3 grid, block;
    apply_config(B * C, S, &grid, &block);
    CU_LAUNCH(norm_apply_forward_kernel, grid, block, 0, stream, x, weight, bias, (const float *)mean,
              (const float *)rstd, y, S, C, (int64_t)1, C);
}

CU_EXTERN_C size_t batch_norm_backward_workspace_bytes(int64_t B, int64_t C, int64_t S) {
    const int splits = norm_split_count(B * S);
    return (floats_aligned(2 * C * splits) + floats_aligned(2 * C)) * sizeof(float);
}

CU_EXTERN_C void batch_norm_backward_launch(const float *x, const float *dy, const float *mean, const float *rstd,
                                            const float *weight, float *dx, float *dweight, float *dbias,
                                            void *workspace, int64_t B, int64_t C, int64_t S, int batch_statistics,
                                            cudaStream_t stream) {
    if (C <= 0 || (!dx && !dweight && !dbias)) return;
    const int splits = norm_split_count(B * S);
    float *partial = (float *)workspace;
    float *coefficients = dx ? partial + floats_aligned(2 * C * splits) : (float *)NULL;
    check_rows(C, splits);
    CU_LAUNCH(norm_grad_sums_partial_kernel, DIM3(C, splits, 1), NORM_THREADS, 0, stream, x, dy, mean, (int64_t)1, S,
              S, B, C * S, splits, partial);
    CU_LAUNCH(batch_norm_backward_finalize_kernel, blocks_for(C, 128), 128, 0, stream, (const float *)partial, C,
              splits, B * S, mean, rstd, weight, dweight, dbias, coefficients, batch_statistics);
    if (!dx || B <= 0 || S <= 0) return;
    dim3 grid, block;
    apply_config(B * C, S, &grid, &block);
    CU_LAUNCH(norm_apply_backward_kernel, grid, block, 0, stream, x, dy, rstd, weight, (const float *)coefficients, dx,
              S, C, (int64_t)1, C);
}
