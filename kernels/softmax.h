// Launchers of the softmax CUDA kernels (kernels/softmax.cu): fused online softmax and log-softmax,
// forward and backward, over the middle axis of a contiguous [outer, R, inner] f32 array (the layout
// of engine/cpu/reduce.h). Plain C, includable from engine code and from nvcc-compiled sources.
//
// Same results as cpu_softmax_f32 / cpu_softmax_backward_f32 up to the summation order (fixed by the
// shape: deterministic): a row whose scores are all -inf gives NaN (as PyTorch). Work: inner == 1
// with R <= 1024: one warp per row (R <= 16: a group of the next power of two lanes); longer rows: one
// block per row; inner > 1: 32 columns x 8 slices of R per block.
#pragma once
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// As the CUDA runtime spells it (an identical typedef may be repeated in C11 and C++).
typedef struct CUstream_st *cudaStream_t;

// y = softmax(x) (log_form 0) or log_softmax(x) (log_form 1) along R. One read of x computes the
// running maximum and normaliser together (online softmax), a second read writes y. y may equal x.
void softmax_forward_f32_launch(const float *x, float *y, int64_t outer, int64_t r, int64_t inner, int log_form,
                                cudaStream_t stream);

// From the forward output y and the gradient g of y: softmax: gx = y * (g - sum_R(g * y));
// log_softmax: gx = g - exp(y) * sum_R(g). gx may equal g.
void softmax_backward_f32_launch(const float *y, const float *grad_y, float *grad_x, int64_t outer, int64_t r,
                                 int64_t inner, int log_form, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
