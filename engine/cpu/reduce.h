// CPU kernels for reductions and softmax over the middle axis of a contiguous [outer, R, inner]
// array (any reduced block of dims can be brought to that form), in f32 and f64.
#pragma once
#include <stdint.h>

#define DECLARE_REDUCE_KERNELS(real, suffix)                                                                 \
    void cpu_sum_##suffix(const real *x, real *out, int64_t outer, int64_t r, int64_t inner);               \
    /* out = max over R, index = first position of the maximum (NaN counts as the maximum) */             \
    void cpu_max_##suffix(const real *x, real *out, int64_t *index, int64_t outer, int64_t r, int64_t inner); \
    void cpu_logsumexp_##suffix(const real *x, real *out, int64_t outer, int64_t r, int64_t inner);         \
    void cpu_softmax_##suffix(const real *x, real *y, int64_t outer, int64_t r, int64_t inner, int log);    \
    /* softmax: gx = y * (g - sum(g * y)); log_softmax: gx = g - exp(y) * sum(g) */                         \
    void cpu_softmax_backward_##suffix(const real *y, const real *g, real *gx, int64_t outer, int64_t r,     \
                                       int64_t inner, int log);
DECLARE_REDUCE_KERNELS(float, f32)
DECLARE_REDUCE_KERNELS(double, f64)
