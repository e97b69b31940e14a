// Shared helpers for op implementations (not part of the public API).
#pragma once
#include <math.h>

#include "engine/autograd.h"
#include "engine/gpu/gpu.h"
#include "engine/ops.h"

// Aborts with one line if x is not a floating-point tensor on the CPU (f32/f64 compute types).
void check_float_input(const char *op, const Tensor *x);
// For ops with a CUDA path: f32/f64 on the CPU, or f32 on the CUDA device.
void check_float_input_any_device(const char *op, const Tensor *x);
// Aborts unless a and b are on the same device.
void check_same_device(const char *op, const Tensor *a, const Tensor *b);
// The stream device ops are ordered on (the default stream for now).
static inline struct CUstream_st *device_stream(void) { return gpu_stream_handle(gpu_stream_default()); }
// Aborts with one line unless a and b have the same dtype.
void check_same_dtype(const char *op, const Tensor *a, const Tensor *b);
// Aborts unless the tensor lives on a device this op can run on. The CUDA device plugs in here.
void check_cpu(const char *op, const Tensor *x);
// A contiguous version of x without recording autograd (x itself if already contiguous).
static inline Tensor *contiguous(Tensor *x) { return tensor_contiguous_raw(x); }
// Shape broadcasting as numpy; aborts naming both shapes when incompatible.
Shape broadcast_shapes(const char *op, Shape a, Shape b);
// Strides of x viewed with the broadcast shape `to` (0 on broadcast dims; x right-aligned).
void broadcast_strides(const Tensor *x, Shape to, int64_t *strides);
// Normalises and validates a list of dims into a mask; n_dims == 0 means all dims.
void dims_to_mask(const Tensor *x, const int *dims, int n_dims, bool *mask);

// Calls name_f32(...) or name_f64(...) by the dtype of `t`.
#define DISPATCH_FLOAT(t, name, ...)                          \
    do {                                                      \
        if ((t)->dtype == DTYPE_F32)                          \
            name##_f32(__VA_ARGS__);                          \
        else                                                  \
            name##_f64(__VA_ARGS__);                          \
    } while (0)

#define DATA(t, real) ((real *)tensor_data(t))
