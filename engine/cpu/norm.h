// CPU kernels for batch, group and layer normalisation, forward and analytic backward, in f32 and
// f64. Statistics are accumulated in double (two passes: mean, then the sum of squared deviations,
// which stays accurate when |mean| >> std); mean and rstd = 1 / sqrt(var + eps) are returned for
// backward. weight / bias may be NULL (identity affine).
//
// Backward of y = xhat * w + b, xhat = (x - mean) * rstd, statistics over a set of m elements:
//   dxhat = dy * w
//   dx    = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))      (batch statistics)
//   dx    = rstd * dxhat                                                   (fixed statistics)
//   dw    = sum dy * xhat,  db = sum dy   (over everything sharing the weight)
#pragma once
#include <stdint.h>

#define DECLARE_NORM_KERNELS(real, suffix)                                                                      \
    /* x [B, C, S]: statistics per channel over B*S. With given_mean/given_var (eval) those are used;         \
       otherwise batch statistics, and batch_var (if not NULL) receives the biased batch variance. */          \
    void cpu_batch_norm_forward_##suffix(const real *x, const real *weight, const real *bias, real *y,         \
                                         real *mean, real *rstd, double *batch_var, const real *given_mean,    \
                                         const real *given_var, int64_t B, int64_t C, int64_t S, double eps);  \
    /* batch_stats: 1 when forward used batch statistics (their gradient flows through mean and var). */     \
    void cpu_batch_norm_backward_##suffix(const real *x, const real *dy, const real *mean, const real *rstd,   \
                                          const real *weight, real *dx, real *dweight, real *dbias, int64_t B, \
                                          int64_t C, int64_t S, int batch_stats);                              \
    /* relu(batch_norm(x)) in one pass over y; scale, shift [C] receive the per-channel affine map the     \
       forward applied (y = max(x * scale + shift, 0)), which the backward needs to recompute the mask. */  \
    void cpu_batch_norm_relu_forward_##suffix(const real *x, const real *weight, const real *bias, real *y,    \
                                              real *mean, real *rstd, real *scale, real *shift,                \
                                              double *batch_var, const real *given_mean,                       \
                                              const real *given_var, int64_t B, int64_t C, int64_t S,          \
                                              double eps);                                                     \
    void cpu_batch_norm_relu_backward_##suffix(const real *x, const real *dy, const real *mean,                \
                                               const real *rstd, const real *weight, const real *scale,        \
                                               const real *shift, real *dx, real *dweight, real *dbias,        \
                                               int64_t B, int64_t C, int64_t S, int batch_stats);              \
    /* x [B, C, S], statistics per (b, group) over C/G*S; mean, rstd [B, G]; affine per channel. */          \
    void cpu_group_norm_forward_##suffix(const real *x, const real *weight, const real *bias, real *y,         \
                                         real *mean, real *rstd, int64_t B, int64_t C, int64_t S, int64_t G,    \
                                         double eps);                                                          \
    void cpu_group_norm_backward_##suffix(const real *x, const real *dy, const real *mean, const real *rstd,   \
                                          const real *weight, real *dx, real *dweight, real *dbias, int64_t B, \
                                          int64_t C, int64_t S, int64_t G);                                    \
    /* x [N, D], statistics per row; mean, rstd [N]; affine per column. */                                   \
    void cpu_layer_norm_forward_##suffix(const real *x, const real *weight, const real *bias, real *y,         \
                                         real *mean, real *rstd, int64_t N, int64_t D, double eps);            \
    void cpu_layer_norm_backward_##suffix(const real *x, const real *dy, const real *mean, const real *rstd,   \
                                          const real *weight, real *dx, real *dweight, real *dbias, int64_t N, \
                                          int64_t D);
DECLARE_NORM_KERNELS(float, f32)
DECLARE_NORM_KERNELS(double, f64)
