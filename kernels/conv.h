// Launchers of the handwritten 2-D convolution kernels (kernels/conv.cu): implicit GEMM (no im2col
// buffer), forward, backward-data, backward-filter and bias gradient, f32. The fallback to cuDNN on
// a GPU and the convolution of the emulated device. Plain C, includable from engine code and from
// nvcc-compiled sources.
//
// Same geometry and layouts as engine/cpu/conv.h and the cuDNN wrappers of engine/gpu/gpu.h, so the
// engine can call either with one ConvGeometry (out_h/out_w filled by conv_geometry_finish):
//   x [B, Cin, H, W], w [Cout, Cin/groups, KH, KW], y [B, Cout, OH, OW], bias [Cout], all contiguous;
//   stride, padding (zeros), dilation per axis; groups divide Cin and Cout (groups == Cin: depthwise).
// Every output is overwritten (never read: it may hold NaN). B == 0 gives zero gradients for w and
// bias.
//
// Numerics: each output element is one f32 sum in a fixed order (the GEMM's K order; the weight and
// bias gradients add split partial sums in split order in a second kernel): no atomics, the same
// bits on every run, thread order and GPU. The CPU sums in another order (im2col + blocked GEMM),
// so results agree to f32 rounding, not bitwise.
//
// All pointers are device pointers; `workspace` (when the matching *_workspace_bytes is > 0) is a
// device buffer of at least that many bytes, 16-byte aligned (gpu_alloc's blocks are), whose
// contents are not needed after the call. Work is ordered on `stream`.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "engine/cpu/conv.h"  // ConvGeometry

#ifdef __cplusplus
extern "C" {
#endif

// As the CUDA runtime spells it (an identical typedef may be repeated in C11 and C++).
typedef struct CUstream_st *cudaStream_t;

// y = conv(x, w) + bias (bias may be NULL).
void conv2d_forward_launch(const ConvGeometry *g, const float *x, const float *w, const float *bias, float *y,
                           cudaStream_t stream);
// dx = gradient of the input for the output gradient dy.
void conv2d_backward_data_launch(const ConvGeometry *g, const float *w, const float *dy, float *dx,
                                 cudaStream_t stream);
// dw = gradient of the weight: split over B * OH * OW into partial sums in `workspace` (when the
// problem has too few output tiles to fill a GPU), added in split order by a second kernel.
size_t conv2d_backward_filter_workspace_bytes(const ConvGeometry *g);
void conv2d_backward_filter_launch(const ConvGeometry *g, const float *x, const float *dy, float *dw,
                                   void *workspace, cudaStream_t stream);
// dbias[Cout] = sum of dy over B, OH, OW: split over images into partial sums in `workspace`.
size_t conv2d_backward_bias_workspace_bytes(const ConvGeometry *g);
void conv2d_backward_bias_launch(const ConvGeometry *g, const float *dy, float *dbias, void *workspace,
                                 cudaStream_t stream);

// For tests and benchmarks (process-wide, 0 = automatic): the block tile of the implicit GEMMs
// (64 or 128, as kernels/gemm.h), and the number of splits of the weight and bias gradients' sums
// (clamped to what the problem allows). The workspace sizes follow the overrides in force.
void conv2d_set_tile_override(int tile);
void conv2d_set_split_override(int splits);

#ifdef __cplusplus
}
#endif
