// Launchers of the pooling and nearest-upsampling kernels (kernels/pool.cu), forward and backward,
// f32. Plain C, includable from engine code and from nvcc-compiled sources.
//
// Same geometry and rules as the CPU kernels (engine/cpu/pool.h, whose comment block states the
// PyTorch window rules; engine/ops_conv.c fills the geometry): x [planes, H, W] -> y [planes, OH, OW]
// with planes = B * C of an NCHW tensor, contiguous. Max and average pooling use g->kernel,
// g->stride (<= 0 means the kernel size, PyTorch's default) and g->pad, and require
// OH = (H + 2 pad - kernel) / stride + 1 (likewise OW; no ceil_mode); adaptive pooling and
// upsampling use only the sizes.
//   max:      padding acts as -inf; y is the first maximum in row-major window order (a NaN counts
//             as the maximum, as the CPU's `v > best || v != v`); index[plane][o] = ih * W + iw of
//             the chosen element (position inside the plane), or index == NULL to save nothing.
//   avg:      divisor = padded window size (count_include_pad) or the number of summed elements.
//   adaptive: window [floor(o * in / out), ceil((o + 1) * in / out)).
//   nearest:  source = min(floor(o * (float)(in / out)), in - 1), with PyTorch's shortcuts for
//             out == in and out == 2 * in (nearest_source_index).
// Backward kernels overwrite dx and are gathers: each input element adds, in output order, the
// gradients of the outputs that used it (max: whose saved index is this element), so there are no
// atomics, and the result is the same bits as the CPU's scatter loops, on every run.
//
// All pointers are device pointers; work is ordered on `stream`.
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "engine/cpu/pool.h"  // PoolGeometry

#ifdef __cplusplus
extern "C" {
#endif

// As the CUDA runtime spells it (an identical typedef may be repeated in C11 and C++).
typedef struct CUstream_st *cudaStream_t;

void max_pool2d_forward_launch(const PoolGeometry *g, const float *x, float *y, int32_t *index, cudaStream_t stream);
// index: as saved by the forward.
void max_pool2d_backward_launch(const PoolGeometry *g, const float *dy, const int32_t *index, float *dx,
                                cudaStream_t stream);

void avg_pool2d_forward_launch(const PoolGeometry *g, const float *x, float *y, bool count_include_pad,
                               cudaStream_t stream);
void avg_pool2d_backward_launch(const PoolGeometry *g, const float *dy, float *dx, bool count_include_pad,
                                cudaStream_t stream);

void adaptive_avg_pool2d_forward_launch(const PoolGeometry *g, const float *x, float *y, cudaStream_t stream);
void adaptive_avg_pool2d_backward_launch(const PoolGeometry *g, const float *dy, float *dx, cudaStream_t stream);

void upsample_nearest2d_forward_launch(const PoolGeometry *g, const float *x, float *y, cudaStream_t stream);
void upsample_nearest2d_backward_launch(const PoolGeometry *g, const float *dy, float *dx, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
