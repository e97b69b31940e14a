// CPU kernels for 2-D pooling and nearest upsampling over `planes` contiguous H x W planes
// (planes = B * C of an NCHW tensor), in f32 and f64. Every kernel is parallel over planes.
// Window rules follow PyTorch (aten/src/ATen/native/cpu):
//   max:       padding acts as -inf; the index of the first maximum in row-major window order is
//              kept (a NaN counts as the maximum); an all--inf window picks its first valid element.
//   avg:       window [o*s - p, o*s - p + k) clipped to [0, size + p) for the padded count, then to
//              [0, size) for the summed elements; the divisor is the padded count when
//              count_include_pad, else the number of summed elements.
//   adaptive:  window [floor(o * in / out), ceil((o + 1) * in / out)).
//   nearest:   source = min(floor(o * (float)in / out), in - 1) ('nearest', not 'nearest-exact'),
//              with PyTorch's shortcuts for out == in and out == 2 * in.
#pragma once
#include <stdbool.h>
#include <stdint.h>

// The geometry shared by every pooling kernel: x [planes, H, W] -> y [planes, OH, OW].
typedef struct {
    int64_t planes, h, w, out_h, out_w;
    int64_t kernel, stride, pad;  // square windows (max / avg pooling only)
} PoolGeometry;

// Source row/column of each output row/column for nearest upsampling, as PyTorch computes it.
int64_t nearest_source_index(int64_t out_index, int64_t in_size, int64_t out_size);

#define DECLARE_POOL_KERNELS(real, suffix)                                                                     \
    /* index[plane][o] = ih * W + iw of the chosen maximum (position inside the plane) */                     \
    void cpu_max_pool2d_forward_##suffix(const PoolGeometry *g, const real *x, real *y, int32_t *index);      \
    void cpu_max_pool2d_backward_##suffix(const PoolGeometry *g, const real *dy, const int32_t *index, real *dx); \
    void cpu_avg_pool2d_forward_##suffix(const PoolGeometry *g, const real *x, real *y, bool count_include_pad); \
    void cpu_avg_pool2d_backward_##suffix(const PoolGeometry *g, const real *dy, real *dx, bool count_include_pad); \
    void cpu_adaptive_avg_pool2d_forward_##suffix(const PoolGeometry *g, const real *x, real *y);             \
    void cpu_adaptive_avg_pool2d_backward_##suffix(const PoolGeometry *g, const real *dy, real *dx);          \
    void cpu_upsample_nearest2d_forward_##suffix(const PoolGeometry *g, const real *x, real *y);              \
    void cpu_upsample_nearest2d_backward_##suffix(const PoolGeometry *g, const real *dy, real *dx);
DECLARE_POOL_KERNELS(float, f32)
DECLARE_POOL_KERNELS(double, f64)
