// Launcher of the select kernel (kernels/where.cu): out = condition ? a : b elementwise over
// broadcast operands (op_where, op_masked_fill on the device). Plain C, includable from engine code
// and from nvcc-compiled sources. All pointers are device pointers; work is ordered on `stream`.
#pragma once
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// As the CUDA runtime spells it (an identical typedef may be repeated in C11 and C++).
typedef struct CUstream_st *cudaStream_t;

#define WHERE_MAX_DIMS 8

// out (contiguous, `shape`) from the u8 condition and the f32 operands read through element
// strides (0 on broadcast dims). 1 <= ndim <= WHERE_MAX_DIMS.
typedef struct KernelWhereLayout {
    int32_t ndim;
    int64_t shape[WHERE_MAX_DIMS];
    int64_t stride_condition[WHERE_MAX_DIMS];
    int64_t stride_a[WHERE_MAX_DIMS];
    int64_t stride_b[WHERE_MAX_DIMS];
} KernelWhereLayout;

void where_f32_launch(const uint8_t *condition, const float *a, const float *b, float *out, KernelWhereLayout layout,
                      cudaStream_t stream);

#ifdef __cplusplus
}
#endif
