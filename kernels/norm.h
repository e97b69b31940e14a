// Launchers of the normalisation kernels (kernels/norm.cu): layer norm, group norm and batch norm,
// forward and backward, f32. Plain C, includable from engine code and from nvcc-compiled sources.
//
// Semantics are those of the CPU kernels (engine/cpu/norm.h) and ops (engine/ops_norm.c):
//   layer norm  x [N, D], statistics per row, mean/rstd [N], weight/bias [D];
//   group norm  x [B, C, S], statistics per (b, group) over C/G * S elements, mean/rstd [B, G],
//               weight/bias [C];
//   batch norm  x [B, C, S], statistics per channel over B * S elements, mean/rstd [C],
//               weight/bias [C].
// rstd = 1 / sqrt(var + eps) with the biased variance; weight and bias may be NULL (identity
// affine). Backward of y = xhat * w + b (xhat = (x - mean) * rstd):
//   dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), dxhat = dy * w   (batch statistics)
//   dx = rstd * w * dy                                                               (fixed statistics)
//   dweight = sum dy * xhat, dbias = sum dy over everything sharing the weight.
// dx, dweight, dbias may each be NULL (not computed).
//
// Numerics: element sums are accumulated in f32 per thread, combined by fixed shuffle and shared
// memory trees, and (group/batch norm) per-block partials are combined in f64 by a second kernel in
// a fixed order: no atomics, so every result is the same bits on every run and thread order. The
// CPU accumulates in f64, so results agree to f32 rounding (about 1e-6 relative), not bitwise.
//
// All pointers are device pointers. Kernels that need scratch take a `workspace` of at least the
// bytes the matching *_workspace_bytes() returns, 16-byte aligned (gpu_alloc's blocks are); its
// contents are not needed after the call. Work is ordered on `stream`.
#pragma once
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// As the CUDA runtime spells it (an identical typedef may be repeated in C11 and C++).
typedef struct CUstream_st *cudaStream_t;

// ---------------------------------------------------------------- layer norm: x [N, D]

// y [N, D]; mean, rstd [N] (either may be NULL when not needed, e.g. evaluation).
void layer_norm_forward_launch(const float *x, const float *weight, const float *bias, float *y, float *mean,
                               float *rstd, int64_t N, int64_t D, double eps, cudaStream_t stream);
size_t layer_norm_backward_workspace_bytes(int64_t N, int64_t D);
// mean, rstd as saved by the forward.
void layer_norm_backward_launch(const float *x, const float *dy, const float *mean, const float *rstd,
                                const float *weight, float *dx, float *dweight, float *dbias, void *workspace,
                                int64_t N, int64_t D, cudaStream_t stream);

// ---------------------------------------------------------------- group norm: x [B, C, S], G | C

size_t group_norm_forward_workspace_bytes(int64_t B, int64_t C, int64_t S, int64_t G);
// y [B, C, S]; mean, rstd [B, G] (required: the forward normalises with them).
void group_norm_forward_launch(const float *x, const float *weight, const float *bias, float *y, float *mean,
                               float *rstd, void *workspace, int64_t B, int64_t C, int64_t S, int64_t G,
                               double eps, cudaStream_t stream);
size_t group_norm_backward_workspace_bytes(int64_t B, int64_t C, int64_t S, int64_t G);
void group_norm_backward_launch(const float *x, const float *dy, const float *mean, const float *rstd,
                                const float *weight, float *dx, float *dweight, float *dbias, void *workspace,
                                int64_t B, int64_t C, int64_t S, int64_t G, cudaStream_t stream);

// ---------------------------------------------------------------- batch norm: x [B, C, S]

size_t batch_norm_forward_workspace_bytes(int64_t B, int64_t C, int64_t S);
// Training (batch statistics): mean, rstd [C] receive the batch mean and 1 / sqrt(biased var + eps);
// if running_mean/running_var are given (both or neither) they are updated in place as PyTorch:
//   running_mean = (1 - momentum) running_mean + momentum * mean
//   running_var  = (1 - momentum) running_var  + momentum * var * n / (n - 1)   (unbiased, n = B*S)
// (in f64 from the f32 running values, as ops_norm.c). The caller refuses n <= 1 as op_batch_norm does.
void batch_norm_forward_training_launch(const float *x, const float *weight, const float *bias, float *y,
                                        float *mean, float *rstd, float *running_mean, float *running_var,
                                        void *workspace, int64_t B, int64_t C, int64_t S, double momentum,
                                        double eps, cudaStream_t stream);
// Evaluation: normalises with the running statistics; mean, rstd [C] receive running_mean and
// 1 / sqrt(running_var + eps) (what the backward with batch_statistics = 0 needs). No workspace.
void batch_norm_forward_eval_launch(const float *x, const float *weight, const float *bias, float *y,
                                    float *mean, float *rstd, const float *running_mean,
                                    const float *running_var, int64_t B, int64_t C, int64_t S, double eps,
                                    cudaStream_t stream);
size_t batch_norm_backward_workspace_bytes(int64_t B, int64_t C, int64_t S);
// batch_statistics: 1 when the forward used batch statistics (training), 0 for running ones.
void batch_norm_backward_launch(const float *x, const float *dy, const float *mean, const float *rstd,
                                const float *weight, float *dx, float *dweight, float *dbias, void *workspace,
                                int64_t B, int64_t C, int64_t S, int batch_statistics, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
