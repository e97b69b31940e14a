// Launchers of the indexing and joining kernels (kernels/index.cu): embedding / index_select,
// gather along a dimension, and the concat / split copy, forward and backward. Plain C, includable
// from engine code and from nvcc-compiled sources.
//
// Semantics are those of engine/ops_index.c (op_index_select, op_embedding, op_gather, op_concat,
// op_split). Index tensors are contiguous i64 (index_is_i64 != 0) or i32 (index_is_i64 == 0); a
// negative index counts from the end (-size <= index < size), as the ops accept. The ops reject
// out-of-range indices with an error; the kernels cannot, so they make them visible instead: the
// forward writes NaN for such an element or row, the backward ignores it.
// Backward kernels overwrite their gradient outputs (no zeroing needed, never read) and are
// deterministic: every gradient element adds its contributions in index order, the order of the
// CPU's scatter loops, so results are the same bits as the CPU's on every run. No atomics.
//
// All pointers are device pointers; work is ordered on `stream`.
#pragma once
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// As the CUDA runtime spells it (an identical typedef may be repeated in C11 and C++).
typedef struct CUstream_st *cudaStream_t;

// ---------------------------------------------------------------- index_select / embedding
// x [outer, size, inner] (the selected dim in the middle), index [count], out [outer, count, inner]:
//   out[o, j, i] = x[o, index[j], i]
void index_select_forward_launch(const float *x, const void *index, int index_is_i64, float *out, int64_t outer,
                                 int64_t size, int64_t inner, int64_t count, cudaStream_t stream);
// grad_x[o, r, i] = sum over j with index[j] == r (in j order) of grad_out[o, j, i]. Each block owns
// a range of destination rows x a tile of columns, scans the index list in chunks through shared
// memory, and accumulates the matching rows in shared memory (see kernels/index.cu).
void index_select_backward_launch(const float *grad_out, const void *index, int index_is_i64, float *grad_x,
                                  int64_t outer, int64_t size, int64_t inner, int64_t count, cudaStream_t stream);
// Embedding: weight [num_embeddings, dim], indices [count] -> out [count, dim] (index_select with
// outer = 1); the backward gives the weight gradient [num_embeddings, dim].
void embedding_forward_launch(const float *weight, const void *indices, int index_is_i64, float *out,
                              int64_t num_embeddings, int64_t dim, int64_t count, cudaStream_t stream);
void embedding_backward_launch(const float *grad_out, const void *indices, int index_is_i64, float *grad_weight,
                               int64_t num_embeddings, int64_t dim, int64_t count, cudaStream_t stream);

// ---------------------------------------------------------------- gather along a dim
// x contiguous with shape x_shape[ndim] (ndim 1..8), index contiguous with shape index_shape[ndim]
// (index_shape[d] <= x_shape[d] for d != dim), out contiguous with index's shape:
//   out[c] = x[c with c[dim] replaced by index[c]]
void gather_forward_launch(const float *x, const int64_t *x_shape, int ndim, int dim, const void *index,
                           int index_is_i64, const int64_t *index_shape, float *out, cudaStream_t stream);
// grad_x (x's shape) = the scatter-add of grad_out (index's shape) along dim: each grad_x element
// scans the index_shape[dim] entries of its line (cost numel(x) * index_shape[dim]).
void gather_backward_launch(const float *grad_out, const int64_t *x_shape, int ndim, int dim, const void *index,
                            int index_is_i64, const int64_t *index_shape, float *grad_x, cudaStream_t stream);

// ---------------------------------------------------------------- concat / split
// A buffer [outer, total, inner] and a piece [outer, piece, inner] at `offset` along the middle
// dimension, elements of element_bytes bytes (any dtype; copied in the widest of 16/8/4/2/1-byte
// words that the sizes and addresses allow):
//   concat: dst buffer[o, offset + p, i] = src piece[o, p, i]   (op_concat, one call per input)
//   split:  dst piece[o, p, i] = src buffer[o, offset + p, i]   (op_split made contiguous; the
//           concat backward)
void concat_copy_launch(void *dst_buffer, const void *src_piece, int64_t outer, int64_t piece, int64_t inner,
                        int64_t total, int64_t offset, size_t element_bytes, cudaStream_t stream);
void split_copy_launch(void *dst_piece, const void *src_buffer, int64_t outer, int64_t piece, int64_t inner,
                       int64_t total, int64_t offset, size_t element_bytes, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
