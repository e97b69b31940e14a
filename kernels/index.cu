// Embedding / index_select, gather along a dimension, and the concat / split copy, forward and
// backward (launchers and semantics in kernels/index.h; the CPU twins are in engine/ops_index.c).
//
// Forward kernels are plain copies, one thread per output element (flat, grid-stride, 32-bit index
// arithmetic when the sizes allow), so consecutive threads read and write consecutive columns.
//
// index_select / embedding backward (a scatter-add of rows: grad_x[index[j]] += grad_out[j]) without
// atomics. Two deterministic designs were possible: sort the (index, j) pairs and sum segments, or
// let each block own a range of destination rows and scan the whole index list. A GPU sort needs a
// multi-pass radix sort with its own workspace (and a stable one to keep j order); the scan needs
// nothing but one kernel, and its cost, blocks x count index reads, is small for the sizes the
// engine has (count = tokens or samples per batch, a few thousand; the reads come from L2 and are
// shared by a whole block). So: a block owns R destination rows x a tile of C columns (C a power of
// two <= 256, R = 8192 / C), accumulated in 32 KB of shared memory. It walks the index list in
// chunks of 256: every thread tests one index, a warp ballot + prefix count compacts the matching
// positions into a shared list in index order, and then each accumulator element's owner thread
// (column c, rows r = g, g + G, ... with G = 256 / C) adds the matching gradient rows into it in
// list order. Each accumulator element has one owner and receives its rows in increasing j, which
// is the CPU's order (zero, then += in j order): bitwise equal results. The gradient rows are read
// coalesced (C consecutive columns per row).
//
// gather backward: one thread per grad_x element scans the index_shape[dim] entries of its line and
// adds the matching gradients in order (again the CPU's order). Cost numel(x) * index_shape[dim]:
// right for the usual small gathers (a few entries per line, e.g. picking classes); a large
// permutation along a long dimension would want the row-ownership scheme above instead.
//
// concat / split: a strided row copy in the widest word (16, 8, 4, 2 or 1 bytes) that the row
// length, strides and addresses allow.
#include "kernels/cuda_compat.h"
#include "kernels/index.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INDEX_THREADS 256
#define INDEX_ACC 8192                 // floats of shared accumulator per backward block (32 KB)
#define INDEX_MAX_BLOCKS (1 << 20)     // grid-stride loops cover the rest
#define INDEX_MAX_GRID_YZ 65535
#define INDEX_MAX_DIMS 8
#define INDEX_FULL_MASK 0xffffffffu

// ------------------------------------------------------------------------------------------------
// Device helpers.
// ------------------------------------------------------------------------------------------------

static __device__ __forceinline__ int64_t index_load(const void *index, int index_is_i64, int64_t j) {
    return index_is_i64 ? ((const int64_t *)index)[j] : (int64_t)((const int32_t *)index)[j];
}

// flat = q * divisor + r (returns r); 32-bit division when the whole range fits in int.
static __device__ __forceinline__ int64_t index_divmod(int64_t flat, int64_t divisor, int small, int64_t *q) {
    if (small) {
        const unsigned int f = (unsigned int)flat, d = (unsigned int)divisor, qq = f / d;
        *q = qq;
        return f - qq * d;
    }
    const int64_t qq = flat / divisor;
    *q = qq;
    return flat - qq * divisor;
}

static __device__ __forceinline__ float index_nan(void) { return __int_as_float(0x7fc00000); }

// ------------------------------------------------------------------------------------------------
// index_select / embedding.
// ------------------------------------------------------------------------------------------------

// out[o, j, i] = x[o, index[j], i]; `small`: outer * count * inner < 2^31.
__global__ void index_select_forward_kernel(const float *__restrict__ x, const void *__restrict__ index,
                                            int index_is_i64, float *__restrict__ out, int64_t size, int64_t inner,
                                            int64_t count, int64_t total, int small) {
    for (int64_t flat = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; flat < total;
         flat += (int64_t)gridDim.x * blockDim.x) {
        int64_t row, o;
        const int64_t i = index_divmod(flat, inner, small, &row);
        const int64_t j = index_divmod(row, count, small, &o);
        int64_t source = index_load(index, index_is_i64, j);
        if (source < 0) source += size;
        out[flat] = source >= 0 && source < size ? x[(o * size + source) * inner + i] : index_nan();
    }
}
CU_KERNEL_ARGS(index_select_forward_kernel, const float *, const void *, int, float *, int64_t, int64_t, int64_t,
               int64_t, int);

// Block (blockIdx.x, blockIdx.y, blockIdx.z) owns destination rows [blockIdx.x * R, + R), columns
// [blockIdx.y * C, + C) of outer slice blockIdx.z (and + gridDim.z ...); blockDim.x == INDEX_THREADS.
__global__ void __launch_bounds__(INDEX_THREADS) index_select_backward_kernel(
    const float *__restrict__ grad_out, const void *__restrict__ index, int index_is_i64, float *__restrict__ grad_x,
    int64_t outer, int64_t size, int64_t inner, int64_t count, int tile_cols) {
    __shared__ float acc[INDEX_ACC];
    __shared__ int64_t match_position[INDEX_THREADS];
    __shared__ int match_slot[INDEX_THREADS];
    __shared__ int warp_matches[INDEX_THREADS / 32];
    const int t = (int)threadIdx.x, lane = t % 32, warp = t / 32;
    const int C = tile_cols, G = INDEX_THREADS / C, R = INDEX_ACC / C;
    const int c = t % C, owner = t / C;  // this thread owns acc[s * C + c] for s = owner, owner + G, ...
    const int64_t r0 = (int64_t)blockIdx.x * R;
    const int64_t column = (int64_t)blockIdx.y * C + c;
    const int column_ok = column < inner;
    for (int64_t o = blockIdx.z; o < outer; o += gridDim.z) {
        for (int s = owner; s < R; s += G) acc[s * C + c] = 0.0f;
        const float *g = grad_out + o * count * inner + column;
        for (int64_t base = 0; base < count; base += INDEX_THREADS) {
            // 1. Test one index each; compact the matches into the shared list, in index order.
            const int64_t j = base + t;
            int slot = -1;
            if (j < count) {
                int64_t row = index_load(index, index_is_i64, j);
                if (row < 0) row += size;
                if (row >= r0 && row < r0 + R && row < size) slot = (int)(row - r0);
            }
            const unsigned int ballot = __ballot_sync(INDEX_FULL_MASK, slot >= 0);
            if (lane == 0) warp_matches[warp] = __popc(ballot);
            __syncthreads();  // every warp's count is in
            int before = 0, matches = 0;
            for (int w = 0; w < INDEX_THREADS / 32; w++) {
                const int n = warp_matches[w];
                if (w < warp) before += n;
                matches += n;
            }
            if (slot >= 0) {
                const int at = before + __popc(ballot & ((1u << lane) - 1u));
                match_position[at] = j;
                match_slot[at] = slot;
            }
            __syncthreads();  // the list is complete
            // 2. Owners add the matching rows, in list (= index) order. No barrier after this: the
            // next chunk writes warp_matches (read only before the barrier above) before its first
            // barrier, and the match list only after it, when every thread has finished here.
            if (column_ok)
                for (int e = 0; e < matches; e++) {
                    const int s = match_slot[e];
                    if (s % G == owner) acc[s * C + c] += g[match_position[e] * inner];
                }
        }
        for (int s = owner; s < R; s += G)
            if (r0 + s < size && column_ok) grad_x[(o * size + r0 + s) * inner + column] = acc[s * C + c];
    }
}
CU_KERNEL_ARGS(index_select_backward_kernel, const float *, const void *, int, float *, int64_t, int64_t, int64_t,
               int64_t, int);

// ------------------------------------------------------------------------------------------------
// gather along a dimension.
// ------------------------------------------------------------------------------------------------

typedef struct GatherArgs {
    int64_t x_shape[INDEX_MAX_DIMS], x_stride[INDEX_MAX_DIMS];
    int64_t index_shape[INDEX_MAX_DIMS], index_stride[INDEX_MAX_DIMS];
    int64_t x_total, index_total;
    int ndim, dim;
} GatherArgs;

__global__ void gather_forward_kernel(const float *__restrict__ x, const void *__restrict__ index, int index_is_i64,
                                      float *__restrict__ out, GatherArgs a) {
    for (int64_t flat = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; flat < a.index_total;
         flat += (int64_t)gridDim.x * blockDim.x) {
        int64_t rest = flat, at = 0;
        int ok = 1;
        for (int d = a.ndim - 1; d >= 0; d--) {
            int64_t q;
            int64_t coordinate = index_divmod(rest, a.index_shape[d], 0, &q);
            rest = q;
            if (d == a.dim) {
                coordinate = index_load(index, index_is_i64, flat);
                if (coordinate < 0) coordinate += a.x_shape[d];
                if (coordinate < 0 || coordinate >= a.x_shape[d]) ok = 0;
            }
            at += coordinate * a.x_stride[d];
        }
        out[flat] = ok ? x[at] : index_nan();
    }
}
CU_KERNEL_ARGS(gather_forward_kernel, const float *, const void *, int, float *, GatherArgs);

__global__ void gather_backward_kernel(const float *__restrict__ grad_out, const void *__restrict__ index,
                                       int index_is_i64, float *__restrict__ grad_x, GatherArgs a) {
    for (int64_t flat = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; flat < a.x_total;
         flat += (int64_t)gridDim.x * blockDim.x) {
        // This element's coordinates; the index line through it (all but dim fixed) starts at line.
        int64_t rest = flat, line = 0, target = 0;
        int inside = 1;
        for (int d = a.ndim - 1; d >= 0; d--) {
            int64_t q;
            const int64_t coordinate = index_divmod(rest, a.x_shape[d], 0, &q);
            rest = q;
            if (d == a.dim)
                target = coordinate;
            else if (coordinate >= a.index_shape[d])
                inside = 0;
            else
                line += coordinate * a.index_stride[d];
        }
        float sum = 0.0f;
        if (inside) {
            const int64_t length = a.index_shape[a.dim], step = a.index_stride[a.dim];
            for (int64_t j = 0; j < length; j++) {
                int64_t v = index_load(index, index_is_i64, line + j * step);
                if (v < 0) v += a.x_shape[a.dim];
                if (v == target) sum += grad_out[line + j * step];
            }
        }
        grad_x[flat] = sum;
    }
}
CU_KERNEL_ARGS(gather_backward_kernel, const float *, const void *, int, float *, GatherArgs);

// ------------------------------------------------------------------------------------------------
// concat / split: rows of row_words words, strides in words.
// ------------------------------------------------------------------------------------------------

__global__ void strided_rows_copy_kernel(void *__restrict__ dst, const void *__restrict__ src, int64_t rows,
                                         int64_t row_words, int64_t dst_stride, int64_t src_stride, int word_bytes,
                                         int small) {
    const int64_t total = rows * row_words;
    for (int64_t flat = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; flat < total;
         flat += (int64_t)gridDim.x * blockDim.x) {
        int64_t r;
        const int64_t i = index_divmod(flat, row_words, small, &r);
        const int64_t d = r * dst_stride + i, s = r * src_stride + i;
        switch (word_bytes) {
        case 16: ((uint4 *)dst)[d] = ((const uint4 *)src)[s]; break;
        case 8: ((uint2 *)dst)[d] = ((const uint2 *)src)[s]; break;
        case 4: ((unsigned int *)dst)[d] = ((const unsigned int *)src)[s]; break;
        case 2: ((unsigned short *)dst)[d] = ((const unsigned short *)src)[s]; break;
        default: ((unsigned char *)dst)[d] = ((const unsigned char *)src)[s]; break;
        }
    }
}
CU_KERNEL_ARGS(strided_rows_copy_kernel, void *, const void *, int64_t, int64_t, int64_t, int64_t, int, int);

// ------------------------------------------------------------------------------------------------
// Launchers.
// ------------------------------------------------------------------------------------------------

// Aborts with one line: shapes the launchers cannot take are the caller's bug.
static void index_fatal(const char *what, long long value) {
    fprintf(stderr, "error: kernels/index.cu: %s (%lld)\n", what, value);
    exit(1);
}

static unsigned int index_blocks(int64_t n) {
    const int64_t blocks = (n + INDEX_THREADS - 1) / INDEX_THREADS;
    return (unsigned int)(blocks < 1 ? 1 : blocks > INDEX_MAX_BLOCKS ? INDEX_MAX_BLOCKS : blocks);
}

CU_EXTERN_C void index_select_forward_launch(const float *x, const void *index, int index_is_i64, float *out,
                                             int64_t outer, int64_t size, int64_t inner, int64_t count,
                                             cudaStream_t stream) {
    if (outer < 0 || size < 0 || inner < 0 || count < 0) index_fatal("negative size", (long long)outer);
    const int64_t total = outer * count * inner;
    if (total == 0) return;
    CU_LAUNCH(index_select_forward_kernel, index_blocks(total), INDEX_THREADS, 0, stream, x, index, index_is_i64 != 0,
              out, size, inner, count, total, total <= 0x7fffffff ? 1 : 0);
}

CU_EXTERN_C void index_select_backward_launch(const float *grad_out, const void *index, int index_is_i64,
                                              float *grad_x, int64_t outer, int64_t size, int64_t inner, int64_t count,
                                              cudaStream_t stream) {
    if (outer < 0 || size < 0 || inner < 0 || count < 0) index_fatal("negative size", (long long)outer);
    if (outer == 0 || size == 0 || inner == 0) return;
    int tile_cols = 1;
    while (tile_cols < inner && tile_cols < INDEX_THREADS) tile_cols *= 2;
    const int64_t rows_per_block = INDEX_ACC / tile_cols;
    const int64_t gx = (size + rows_per_block - 1) / rows_per_block, gy = (inner + tile_cols - 1) / tile_cols;
    if (gy > INDEX_MAX_GRID_YZ) index_fatal("index_select backward: inner too large for the grid", (long long)inner);
    const int64_t gz = outer < INDEX_MAX_GRID_YZ ? outer : INDEX_MAX_GRID_YZ;
    CU_LAUNCH(index_select_backward_kernel, DIM3(gx, gy, gz), INDEX_THREADS, 0, stream, grad_out, index,
              index_is_i64 != 0, grad_x, outer, size, inner, count, tile_cols);
}

CU_EXTERN_C void embedding_forward_launch(const float *weight, const void *indices, int index_is_i64, float *out,
                                          int64_t num_embeddings, int64_t dim, int64_t count, cudaStream_t stream) {
    index_select_forward_launch(weight, indices, index_is_i64, out, 1, num_embeddings, dim, count, stream);
}

CU_EXTERN_C void embedding_backward_launch(const float *grad_out, const void *indices, int index_is_i64,
                                           float *grad_weight, int64_t num_embeddings, int64_t dim, int64_t count,
                                           cudaStream_t stream) {
    index_select_backward_launch(grad_out, indices, index_is_i64, grad_weight, 1, num_embeddings, dim, count, stream);
}

static GatherArgs gather_args(const int64_t *x_shape, int ndim, int dim, const int64_t *index_shape) {
    GatherArgs a;
    memset(&a, 0, sizeof a);
    if (ndim < 1 || ndim > INDEX_MAX_DIMS) index_fatal("gather: ndim must be 1..8", ndim);
    if (dim < 0 || dim >= ndim) index_fatal("gather: dim out of range", dim);
    a.ndim = ndim;
    a.dim = dim;
    a.x_total = a.index_total = 1;
    for (int d = ndim - 1; d >= 0; d--) {
        if (x_shape[d] < 0 || index_shape[d] < 0) index_fatal("gather: negative size", (long long)d);
        if (d != dim && index_shape[d] > x_shape[d])
            index_fatal("gather: index dimension exceeds the input's", (long long)d);
        a.x_shape[d] = x_shape[d];
        a.index_shape[d] = index_shape[d];
        a.x_stride[d] = a.x_total;
        a.index_stride[d] = a.index_total;
        a.x_total *= x_shape[d];
        a.index_total *= index_shape[d];
    }
    return a;
}

CU_EXTERN_C void gather_forward_launch(const float *x, const int64_t *x_shape, int ndim, int dim, const void *index,
                                       int index_is_i64, const int64_t *index_shape, float *out, cudaStream_t stream) {
    GatherArgs a = gather_args(x_shape, ndim, dim, index_shape);
    if (a.index_total == 0) return;
    CU_LAUNCH(gather_forward_kernel, index_blocks(a.index_total), INDEX_THREADS, 0, stream, x, index,
              index_is_i64 != 0, out, a);
}

CU_EXTERN_C void gather_backward_launch(const float *grad_out, const int64_t *x_shape, int ndim, int dim,
                                        const void *index, int index_is_i64, const int64_t *index_shape,
                                        float *grad_x, cudaStream_t stream) {
    GatherArgs a = gather_args(x_shape, ndim, dim, index_shape);
    if (a.x_total == 0) return;
    CU_LAUNCH(gather_backward_kernel, index_blocks(a.x_total), INDEX_THREADS, 0, stream, grad_out, index,
              index_is_i64 != 0, grad_x, a);
}

// Copies `rows` rows of row_bytes from src (src_stride bytes apart) to dst (dst_stride bytes apart).
static void strided_rows_copy(void *dst, const void *src, int64_t rows, int64_t row_bytes, int64_t dst_stride,
                              int64_t src_stride, cudaStream_t stream) {
    if (rows <= 0 || row_bytes <= 0) return;
    int64_t word = 16;
    while (word > 1 && (row_bytes % word || dst_stride % word || src_stride % word || (uintptr_t)dst % word ||
                        (uintptr_t)src % word))
        word /= 2;
    const int64_t row_words = row_bytes / word, total = rows * row_words;
    CU_LAUNCH(strided_rows_copy_kernel, index_blocks(total), INDEX_THREADS, 0, stream, dst, src, rows, row_words,
              dst_stride / word, src_stride / word, (int)word, total <= 0x7fffffff ? 1 : 0);
}

static void concat_check(int64_t outer, int64_t piece, int64_t inner, int64_t total, int64_t offset,
                         size_t element_bytes) {
    if (outer < 0 || piece < 0 || inner < 0 || offset < 0 || offset + piece > total || element_bytes == 0)
        index_fatal("concat/split: the piece must lie inside the buffer", (long long)offset);
}

CU_EXTERN_C void concat_copy_launch(void *dst_buffer, const void *src_piece, int64_t outer, int64_t piece,
                                    int64_t inner, int64_t total, int64_t offset, size_t element_bytes,
                                    cudaStream_t stream) {
    concat_check(outer, piece, inner, total, offset, element_bytes);
    const int64_t e = (int64_t)element_bytes;
    strided_rows_copy((char *)dst_buffer + offset * inner * e, src_piece, outer, piece * inner * e, total * inner * e,
                      piece * inner * e, stream);
}

CU_EXTERN_C void split_copy_launch(void *dst_piece, const void *src_buffer, int64_t outer, int64_t piece,
                                   int64_t inner, int64_t total, int64_t offset, size_t element_bytes,
                                   cudaStream_t stream) {
    concat_check(outer, piece, inner, total, offset, element_bytes);
    const int64_t e = (int64_t)element_bytes;
    strided_rows_copy(dst_piece, (const char *)src_buffer + offset * inner * e, outer, piece * inner * e,
                      piece * inner * e, total * inner * e, stream);
}
