// Launchers of the reduction CUDA kernels (kernels/reduce.cu): sum, max with the first index of the
// maximum, and logsumexp over the middle axis of a contiguous [outer, R, inner] f32 array, the
// layout of engine/cpu/reduce.h (x[o][k][i] at (o * R + k) * inner + i; out[o][i] at o * inner + i).
// Plain C, includable from engine code and from nvcc-compiled sources.
//
// Results match cpu_sum_f32 / cpu_max_f32 / cpu_logsumexp_f32: max counts NaN as the maximum and
// reports the first position of the maximum (of the first NaN); logsumexp of an all -inf row is
// -inf, of a row holding +inf is +inf. Sums differ from the CPU's only by the summation order, which
// is fixed by the shape (deterministic run to run; no atomics).
//
// How (reduce.cu has the details): inner == 1 with R <= 1024: one warp per row (R <= 16: a group of
// the next power of two lanes); larger R: one block per row; inner > 1: a column kernel (32 columns x 8 slices of R per block). When those give too few
// blocks to fill a GPU (few long rows, few columns) and a workspace is passed, R is split into chunks
// reduced by separate blocks into partial states, then a second launch combines the partials in a
// fixed order.
#pragma once
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// As the CUDA runtime spells it (an identical typedef may be repeated in C11 and C++).
typedef struct CUstream_st *cudaStream_t;

typedef enum { REDUCE_SUM, REDUCE_MAX, REDUCE_LOGSUMEXP } ReduceKind;

// Bytes of device workspace that let reduce_f32_launch split R for this shape (0: it would not
// split). A deterministic function of the arguments.
size_t reduce_workspace_bytes(ReduceKind kind, int64_t outer, int64_t r, int64_t inner);

// out[outer * inner] = the reduction of x over R; for REDUCE_MAX, index[outer * inner] (i64, may be
// NULL) gets the first position of the maximum (R >= 1 required). R == 0 gives 0 (sum) and -inf
// (logsumexp). workspace: device memory of workspace_bytes (from the caching allocator), or NULL;
// with fewer bytes than reduce_workspace_bytes() the launch does not split (correct, less parallel
// for few long rows). Both launches are ordered on `stream`.
void reduce_f32_launch(ReduceKind kind, const float *x, float *out, int64_t *index, int64_t outer, int64_t r,
                       int64_t inner, void *workspace, size_t workspace_bytes, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
