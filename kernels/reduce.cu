// Reductions over the middle axis of a contiguous [outer, R, inner] f32 array: sum, max + first
// index, logsumexp (online: one pass). Launchers: kernels/reduce.h; the warp/block building blocks
// and the determinism argument: kernels/reduce_common.cuh.
//
// Kernels (each a thin __global__ per reduction kind over a __forceinline__ body, so the kind is a
// constant and each kernel keeps only its own arithmetic):
//   rows_warp   inner == 1, R <= 1024: one warp per row (rows of at most 16 elements: a group of
//               the next power of two lanes per row, several rows per warp), 256-thread blocks; lanes
//               read consecutive elements (128-byte coalesced loads), an xor-shuffle butterfly
//               combines. Also the second pass of a split row reduction (it then reads partial states).
//   rows_block  inner == 1, R > 1024: one block per row (or per chunk of a row when split), 128-1024
//               threads; float4 loads when the row (chunk) start is 16-byte aligned; warp butterflies,
//               one state per warp in shared memory, one __syncthreads, every warp finishes.
//   cols        inner > 1: the outer * inner output columns flattened, 32 per block (threadIdx.x),
//               8 slices of R per block (threadIdx.y, k = y, y + 8, ...); a warp reads 32 neighbouring
//               columns of one k (coalesced along inner); 8 x 32 states in shared memory (16-byte
//               states, a warp touches consecutive ones: no bank conflicts beyond the 4 wavefronts
//               of 512 bytes), one __syncthreads, threadIdx.y == 0 combines the 8 slices in order.
//               Blocks of gridDim.y split R into chunks when the columns alone give too few blocks.
// Split reductions (reduce_plan): with fewer than REDUCE_TARGET_BLOCKS / 2 natural blocks and R long
// enough, R is cut into chunks (a multiple of 4 long for rows, so float4 alignment is kept); partial
// states go to the workspace as [outer, chunks, inner] arrays, and a second launch reduces those with
// rows_warp (inner == 1) or cols. Fixed chunking: deterministic.
#include "kernels/cuda_compat.h"
#include "kernels/reduce.h"
#include "kernels/reduce_common.cuh"

#define REDUCE_WARP_ROW_MAX 1024   // longest row for the warp-per-row kernel
#define REDUCE_GROUP_THREADS 256   // threads per block of rows_warp
#define REDUCE_COL_WIDTH 32        // columns per block of cols
#define REDUCE_COL_SLICES 8        // slices of R per block of cols
#define REDUCE_TARGET_BLOCKS 256   // about 2 blocks per SM on A100 (108) / H100 (132)
#define REDUCE_MIN_ROW_CHUNK 4096  // shortest chunk of a row worth its own block
#define REDUCE_MIN_COL_CHUNK 64    // shortest chunk of R for a cols block (8 elements per thread)
#define REDUCE_MAX_CHUNKS 1024

// Partial states in the workspace, [outer, chunks, inner] each (structure of arrays: coalesced).
typedef struct ReducePartials {
    float *value;
    float *scale;
    int64_t *index;
} ReducePartials;

static __device__ __forceinline__ ReduceState reduce_load_partial(int kind, ReducePartials parts, int64_t at) {
    ReduceState st;
    st.value = parts.value[at];
    st.scale = kind == RS_LSE ? parts.scale[at] : 0.0f;
    st.index = kind == RS_MAX ? parts.index[at] : 0;
    return st;
}

static __device__ __forceinline__ void reduce_store_partial(int kind, ReducePartials parts, int64_t at,
                                                            ReduceState st) {
    parts.value[at] = st.value;
    if (kind == RS_LSE) parts.scale[at] = st.scale;
    if (kind == RS_MAX) parts.index[at] = st.index;
}

static __device__ __forceinline__ void reduce_store_result(int kind, float *out, int64_t *index, int64_t at,
                                                           ReduceState st) {
    if (kind == RS_LSE) {
        out[at] = rs_logsumexp(st);
    } else {
        out[at] = st.value;
        if (kind == RS_MAX && index) index[at] = st.index;
    }
}

// One group of `width` lanes (rs_row_group_width) per row. from_partials: the row is `r` partial
// states (a split reduction's second pass).
static __device__ __forceinline__ void reduce_rows_warp_body(int kind, const float *x, ReducePartials parts,
                                                             float *out, int64_t *index, int64_t rows, int64_t r,
                                                             int width, int from_partials) {
    const int64_t thread = (int64_t)blockIdx.x * blockDim.x + threadIdx.x, row = thread / width;
    const int lane = (int)(threadIdx.x % (unsigned int)width);
    // A warp leaves as a whole when all its rows are past the end; otherwise every lane stays for
    // the shuffles and only the valid rows load and store.
    if ((thread - threadIdx.x % 32) / width >= rows) return;
    const bool valid = row < rows;
    ReduceState st = rs_empty(kind);
    if (valid && from_partials) {
        for (int64_t k = lane; k < r; k += width) st = rs_combine(kind, st, reduce_load_partial(kind, parts, row * r + k));
    } else if (valid) {
        const float *p = x + row * r;
        for (int64_t k = lane; k < r; k += width) st = rs_push(kind, st, p[k], k);
    }
    st = rs_group_reduce(kind, st, width);
    if (valid && lane == 0) reduce_store_result(kind, out, index, row, st);
}

// One block per (row, chunk): elements [chunk * chunk_len, min(r, (chunk + 1) * chunk_len)) of the row.
// chunks == 1: the result; else the partial state at [row, chunk].
static __device__ __forceinline__ void reduce_rows_block_body(int kind, const float *x, ReducePartials parts,
                                                              float *out, int64_t *index, int64_t r, int64_t chunks,
                                                              int64_t chunk_len, ReduceState *shared) {
    const int64_t row = (int64_t)blockIdx.x / chunks, chunk = (int64_t)blockIdx.x % chunks;
    const int64_t begin = chunk * chunk_len, end = begin + chunk_len < r ? begin + chunk_len : r;
    const float *p = x + row * r;
    const int64_t threads = blockDim.x;
    ReduceState st = rs_empty(kind);
    int64_t k = begin + threadIdx.x;
    if (((uintptr_t)(p + begin) & 15) == 0) {  // the same for the whole block
        const float4 *p4 = (const float4 *)(p + begin);
        const int64_t n4 = (end - begin) / 4;
        for (int64_t j = threadIdx.x; j < n4; j += threads) {
            float4 v = p4[j];
            const int64_t at = begin + 4 * j;
            st = rs_push(kind, st, v.x, at);
            st = rs_push(kind, st, v.y, at + 1);
            st = rs_push(kind, st, v.z, at + 2);
            st = rs_push(kind, st, v.w, at + 3);
        }
        k = begin + 4 * n4 + threadIdx.x;
    }
    for (; k < end; k += threads) st = rs_push(kind, st, p[k], k);
    st = rs_block_reduce(kind, st, shared);
    if (threadIdx.x == 0) {
        if (chunks == 1)
            reduce_store_result(kind, out, index, row, st);
        else
            reduce_store_partial(kind, parts, row * chunks + chunk, st);
    }
}

// 32 columns x 8 slices of R per block; blockIdx.y is the chunk of R. from_partials: x is replaced by
// the partial states [outer, r, inner] (then chunks == 1). to_partials: write the states of the
// chunks ([outer, chunks, inner]) instead of results.
static __device__ __forceinline__ void reduce_cols_body(int kind, const float *x, ReducePartials in_parts,
                                                        ReducePartials out_parts, float *out, int64_t *index,
                                                        int64_t outer, int64_t r, int64_t inner, int64_t chunk_len,
                                                        int from_partials, int to_partials, ReduceState *shared) {
    const int64_t column = (int64_t)blockIdx.x * REDUCE_COL_WIDTH + threadIdx.x;
    const int64_t chunk = blockIdx.y, chunks = gridDim.y;
    const int valid = column < outer * inner;
    const int64_t o = valid ? column / inner : 0, i = valid ? column % inner : 0;
    const int64_t begin = chunk * chunk_len, end = begin + chunk_len < r ? begin + chunk_len : r;
    ReduceState st = rs_empty(kind);
    if (valid) {
        const int64_t base = o * r * inner + i;
        if (from_partials) {
            for (int64_t k = begin + threadIdx.y; k < end; k += REDUCE_COL_SLICES)
                st = rs_combine(kind, st, reduce_load_partial(kind, in_parts, base + k * inner));
        } else {
            for (int64_t k = begin + threadIdx.y; k < end; k += REDUCE_COL_SLICES) st = rs_push(kind, st, x[base + k * inner], k);
        }
    }
    shared[threadIdx.y * REDUCE_COL_WIDTH + threadIdx.x] = st;
    __syncthreads();
    if (threadIdx.y == 0 && valid) {
        // Slice j holds positions k = j (mod 8): combining slices in order keeps RS_MAX's first
        // index (rs_combine breaks ties by index anyway).
        ReduceState total = shared[threadIdx.x];
        for (int j = 1; j < REDUCE_COL_SLICES; j++) total = rs_combine(kind, total, shared[j * REDUCE_COL_WIDTH + threadIdx.x]);
        if (to_partials)
            reduce_store_partial(kind, out_parts, (o * chunks + chunk) * inner + i, total);
        else
            reduce_store_result(kind, out, index, column, total);
    }
}

#define REDUCE_KERNELS(name, KIND)                                                                          \
    __global__ void reduce_##name##_rows_warp_kernel(const float *x, ReducePartials parts, float *out,      \
                                                     int64_t *index, int64_t rows, int64_t r, int width,    \
                                                     int from_partials) {                                   \
        reduce_rows_warp_body(KIND, x, parts, out, index, rows, r, width, from_partials);                   \
    }                                                                                                       \
    CU_KERNEL_ARGS(reduce_##name##_rows_warp_kernel, const float *, ReducePartials, float *, int64_t *, int64_t, \
                   int64_t, int, int);                                                                         \
    __global__ void reduce_##name##_rows_block_kernel(const float *x, ReducePartials parts, float *out,     \
                                                      int64_t *index, int64_t r, int64_t chunks, int64_t chunk_len) { \
        __shared__ ReduceState shared[32];                                                                  \
        reduce_rows_block_body(KIND, x, parts, out, index, r, chunks, chunk_len, shared);                   \
    }                                                                                                       \
    CU_KERNEL_ARGS(reduce_##name##_rows_block_kernel, const float *, ReducePartials, float *, int64_t *, int64_t, \
                   int64_t, int64_t);                                                                       \
    __global__ void reduce_##name##_cols_kernel(const float *x, ReducePartials in_parts, ReducePartials out_parts, \
                                                float *out, int64_t *index, int64_t outer, int64_t r, int64_t inner, \
                                                int64_t chunk_len, int from_partials, int to_partials) {    \
        __shared__ ReduceState shared[REDUCE_COL_SLICES * REDUCE_COL_WIDTH];                                \
        reduce_cols_body(KIND, x, in_parts, out_parts, out, index, outer, r, inner, chunk_len, from_partials, \
                         to_partials, shared);                                                              \
    }                                                                                                       \
    CU_KERNEL_ARGS(reduce_##name##_cols_kernel, const float *, ReducePartials, ReducePartials, float *, int64_t *, \
                   int64_t, int64_t, int64_t, int64_t, int, int);

REDUCE_KERNELS(sum, RS_SUM)
REDUCE_KERNELS(max, RS_MAX)
REDUCE_KERNELS(logsumexp, RS_LSE)

// ------------------------------------------------------------------------------------------------
// Host side.
// ------------------------------------------------------------------------------------------------

// How R is cut: *chunks pieces of *chunk_len (the last may be shorter); 1 piece = no split.
static void reduce_plan(int64_t outer, int64_t r, int64_t inner, int64_t *chunks, int64_t *chunk_len) {
    *chunks = 1;
    *chunk_len = r;
    if (outer <= 0 || inner <= 0 || r <= 0) return;
    const int row_mode = inner == 1;
    const int64_t natural = !row_mode ? (outer * inner + REDUCE_COL_WIDTH - 1) / REDUCE_COL_WIDTH
                            : r > REDUCE_WARP_ROW_MAX ? outer
                                                      : (outer * rs_row_group_width(r) + REDUCE_GROUP_THREADS - 1) / REDUCE_GROUP_THREADS;
    if (natural >= REDUCE_TARGET_BLOCKS / 2) return;
    int64_t want = (REDUCE_TARGET_BLOCKS + natural - 1) / natural;
    const int64_t most = r / (row_mode ? REDUCE_MIN_ROW_CHUNK : REDUCE_MIN_COL_CHUNK);
    if (want > most) want = most;
    if (want > REDUCE_MAX_CHUNKS) want = REDUCE_MAX_CHUNKS;
    if (want < 2) return;
    int64_t len = (r + want - 1) / want;
    if (row_mode) len = (len + 3) / 4 * 4;
    *chunk_len = len;
    *chunks = (r + len - 1) / len;
}

static size_t reduce_partials_bytes(int64_t count) {
    return (size_t)count * (2 * sizeof(float) + sizeof(int64_t));
}

// Value and scale arrays first (4-byte), then the 8-byte indices (8-byte aligned: 8 * count bytes in).
static ReducePartials reduce_partials_in(void *workspace, int64_t count) {
    ReducePartials parts;
    parts.value = (float *)workspace;
    parts.scale = parts.value + count;
    parts.index = (int64_t *)(void *)(parts.scale + count);
    return parts;
}

CU_EXTERN_C size_t reduce_workspace_bytes(ReduceKind kind, int64_t outer, int64_t r, int64_t inner) {
    (void)kind;
    int64_t chunks, chunk_len;
    reduce_plan(outer, r, inner, &chunks, &chunk_len);
    return chunks > 1 ? reduce_partials_bytes(outer * chunks * inner) : 0;
}

#define REDUCE_DISPATCH(kind, launch_macro) \
    switch (kind) {                          \
    case REDUCE_SUM: launch_macro(sum); break; \
    case REDUCE_MAX: launch_macro(max); break; \
    case REDUCE_LOGSUMEXP: launch_macro(logsumexp); break; \
    }

CU_EXTERN_C void reduce_f32_launch(ReduceKind kind, const float *x, float *out, int64_t *index, int64_t outer,
                                   int64_t r, int64_t inner, void *workspace, size_t workspace_bytes,
                                   cudaStream_t stream) {
    if (outer <= 0 || inner <= 0) return;
    if (r < 0) r = 0;
    int64_t chunks, chunk_len;
    reduce_plan(outer, r, inner, &chunks, &chunk_len);
    if (chunks > 1 && (!workspace || workspace_bytes < reduce_partials_bytes(outer * chunks * inner))) {
        chunks = 1;
        chunk_len = r;
    }
    ReducePartials none;
    none.value = none.scale = NULL;
    none.index = NULL;
    ReducePartials parts = chunks > 1 ? reduce_partials_in(workspace, outer * chunks * inner) : none;
    const float *no_x = NULL;

    if (inner == 1) {
        if (chunks == 1 && r <= REDUCE_WARP_ROW_MAX) {
            const int width = rs_row_group_width(r);
            const unsigned int blocks = (unsigned int)((outer * width + REDUCE_GROUP_THREADS - 1) / REDUCE_GROUP_THREADS);
#define ROWS_WARP(name)                                                                                      \
    CU_LAUNCH(reduce_##name##_rows_warp_kernel, blocks, REDUCE_GROUP_THREADS, 0, stream, x, none, out, index, outer, \
              r, width, 0)
            REDUCE_DISPATCH(kind, ROWS_WARP)
#undef ROWS_WARP
            return;
        }
        const unsigned int threads = rs_row_block_threads(chunk_len);
        const unsigned int blocks = (unsigned int)(outer * chunks);
#define ROWS_BLOCK(name)                                                                                     \
    CU_LAUNCH(reduce_##name##_rows_block_kernel, blocks, threads, 0, stream, x, parts, out, index, r, chunks, chunk_len)
        REDUCE_DISPATCH(kind, ROWS_BLOCK)
#undef ROWS_BLOCK
        if (chunks > 1) {
            const int width = rs_row_group_width(chunks);
            const unsigned int partial_blocks =
                (unsigned int)((outer * width + REDUCE_GROUP_THREADS - 1) / REDUCE_GROUP_THREADS);
#define ROWS_PARTIALS(name)                                                                                  \
    CU_LAUNCH(reduce_##name##_rows_warp_kernel, partial_blocks, REDUCE_GROUP_THREADS, 0, stream, no_x, parts, out, \
              index, outer, chunks, width, 1)
            REDUCE_DISPATCH(kind, ROWS_PARTIALS)
#undef ROWS_PARTIALS
        }
        return;
    }

    const int64_t columns = outer * inner;
    const unsigned int column_blocks = (unsigned int)((columns + REDUCE_COL_WIDTH - 1) / REDUCE_COL_WIDTH);
    const dim3 block = DIM3(REDUCE_COL_WIDTH, REDUCE_COL_SLICES, 1);
    const int split = chunks > 1;
#define COLS(name)                                                                                           \
    CU_LAUNCH(reduce_##name##_cols_kernel, DIM3(column_blocks, chunks, 1), block, 0, stream, x, none, parts, out, \
              index, outer, r, inner, chunk_len, 0, split)
    REDUCE_DISPATCH(kind, COLS)
#undef COLS
    if (split) {
#define COLS_PARTIALS(name)                                                                                  \
    CU_LAUNCH(reduce_##name##_cols_kernel, DIM3(column_blocks, 1, 1), block, 0, stream, no_x, parts, none, out, \
              index, outer, chunks, inner, chunks, 1, 0)
        REDUCE_DISPATCH(kind, COLS_PARTIALS)
#undef COLS_PARTIALS
    }
}
