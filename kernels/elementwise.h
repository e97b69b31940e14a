// Launchers of the elementwise CUDA kernels (kernels/elementwise.cu): every unary op of
// engine/cpu/elementwise.h's UNARY_OP_LIST forward and backward (the same formulas: the .cu expands
// that very list), broadcast binary add/sub/mul/div, fill, strided copy with f32/f16/bf16
// conversion. Plain C, includable from engine code and from nvcc-compiled sources.
//
// All pointers are device pointers; every launch is ordered on `stream` (gpu_stream_handle(s), NULL
// = the default stream) and returns without waiting. Launch errors are left for the caller's
// GPU_CHECK_LAUNCH() (engine/gpu/gpu.h). Element counts are int64_t; n == 0 launches nothing.
// Kernels run grid-stride loops with 256-thread blocks; contiguous data whose pointers are all
// 16-byte aligned (8 bytes for 16-bit types) goes through float4 (4-element) loads and stores, the
// rest through the scalar loop.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "engine/cpu/elementwise.h"  // UnaryOp, BinaryOp (the CPU kernels' enums)
#include "engine/dtype.h"            // DType

#ifdef __cplusplus
extern "C" {
#endif

// As the CUDA runtime spells it (an identical typedef may be repeated in C11 and C++).
typedef struct CUstream_st *cudaStream_t;

#define KERNEL_MAX_DIMS 8

// y[i] = f(x[i]; p0, p1) for i < n, f from UNARY_OP_LIST, computed in float as cpu_unary_forward_f32
// (p0, p1 rounded to float as there). x and y contiguous; y may equal x.
void unary_forward_f32_launch(UnaryOp op, const float *x, float *y, int64_t n, double p0, double p1,
                              cudaStream_t stream);
// grad_x[i] = grad_y[i] * f'(x[i], y[i]; p0, p1), as cpu_unary_backward_f32; y may be NULL for the
// ops whose derivative does not use it (it then reads as 0, as on the CPU). grad_x may equal grad_y.
void unary_backward_f32_launch(UnaryOp op, const float *x, const float *y, const float *grad_y, float *grad_x,
                               int64_t n, double p0, double p1, cudaStream_t stream);

// out (contiguous, shape `shape`) = a (op) b, with a and b read through element strides (0 on
// broadcast dims), as cpu_binary_f32. 1 <= ndim <= KERNEL_MAX_DIMS; unused entries are ignored.
// Passed by value to the kernel. The launcher drops size-1 dims and merges dims that are contiguous
// in both operands, so [N, D] + [D] runs as 2 dims and same-shape contiguous operands as 1 (then the
// float4 path).
typedef struct KernelBroadcast {
    int32_t ndim;
    int64_t shape[KERNEL_MAX_DIMS];
    int64_t stride_a[KERNEL_MAX_DIMS];
    int64_t stride_b[KERNEL_MAX_DIMS];
} KernelBroadcast;
void binary_f32_launch(BinaryOp op, const float *a, const float *b, float *out, KernelBroadcast layout,
                       cudaStream_t stream);

// dst[i] = value (rounded to the dtype, round to nearest even) for i < n. dtype F32, F16 or BF16;
// returns 0, or -1 (nothing launched) for another dtype.
int fill_launch(void *dst, DType dtype, int64_t n, double value, cudaStream_t stream);

// dst[dst offsets] = convert(src[src offsets]) over `shape`: any element strides (negative too) on
// either side, 1 <= ndim <= KERNEL_MAX_DIMS; dtypes F32, F16, BF16 in any pair. Same dtype copies the
// bits; conversions round to nearest even (cu_float_to_half / cu_float_to_bfloat16, which agree with
// engine/dtype.c on every non-NaN value; a NaN stays a NaN, its payload may differ). The launcher
// drops size-1 dims and merges dims contiguous on both sides; when that leaves one dim with unit
// strides and aligned pointers, 4 elements move per thread through vector loads. Returns 0, or -1
// (nothing launched) for another dtype or a bad ndim. The regions must not overlap.
typedef struct KernelCopyLayout {
    int32_t ndim;
    int64_t shape[KERNEL_MAX_DIMS];
    int64_t dst_stride[KERNEL_MAX_DIMS];
    int64_t src_stride[KERNEL_MAX_DIMS];
} KernelCopyLayout;
int copy_strided_launch(void *dst, DType dst_dtype, const void *src, DType src_dtype, KernelCopyLayout layout,
                        cudaStream_t stream);
// Contiguous n-element conversion (or copy): copy_strided_launch over one unit-stride dim.
int convert_launch(void *dst, DType dst_dtype, const void *src, DType src_dtype, int64_t n, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
