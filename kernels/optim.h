// Launchers of the optimizer kernels (kernels/optim.cu): SGD, Adam/AdamW and EMA updates over flat
// f32 buffers, and gradient clipping by the global L2 norm. Plain C, includable from engine code and
// from nvcc-compiled sources.
//
// The arithmetic is engine/optim.c's, bit for bit: the scalar coefficients are computed on the host
// in f64 and rounded to f32 exactly as optim.c does (the *_scalars functions below), and every
// element is updated with the same f32 operations in the same order. The kernels spell each
// operation with __fmul_rn / __fadd_rn / __fdiv_rn / __fsqrt_rn, which nvcc never contracts into
// FMA (it would for a * b + c) and which round to nearest like the CPU's SSE arithmetic, so a GPU
// update gives the same bits as the CPU one (build without --use_fast_math, whose flush-to-zero
// would differ on denormals).
//
// Parameter groups are contiguous ranges [start, start + count) of the flat buffers, as ParamGroup
// in engine/optim.h: the caller walks the groups (and the gaps between them) like
// optimizer_step and launches one update per range with that range's coefficients.
// All pointers are device pointers; work is ordered on `stream`.
#pragma once
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// As the CUDA runtime spells it (an identical typedef may be repeated in C11 and C++).
typedef struct CUstream_st *cudaStream_t;

// ---------------------------------------------------------------- SGD (torch.optim.SGD)

typedef struct SgdUpdateScalars {
    float weight_decay, momentum, one_minus_dampening, neg_lr;
    int has_weight_decay;  // weight_decay != 0 (tested in f64, as optim.c)
    int mode;              // 0: no momentum; 1: first step (buffer = d_p); 2: later steps
    int nesterov;
} SgdUpdateScalars;
// lr and weight_decay of the range; step = the optimizer's step count after incrementing it (1 on
// the first update).
SgdUpdateScalars sgd_update_scalars(double lr, double weight_decay, double momentum, double dampening, int nesterov,
                                    int64_t step);
// momentum_buffer may be NULL when scalars.mode == 0.
void sgd_update_launch(float *params, const float *grads, float *momentum_buffer, int64_t start, int64_t count,
                       SgdUpdateScalars scalars, cudaStream_t stream);

// ---------------------------------------------------------------- Adam / AdamW

typedef struct AdamUpdateScalars {
    float weight_decay, decay_factor, beta1, one_minus_beta1, beta2, one_minus_beta2;
    float bias_correction2_sqrt, eps, neg_step_size;
    int decoupled;         // 1: AdamW (param *= 1 - lr * weight_decay); 0: Adam (L2 added to the gradient)
    int has_weight_decay;  // weight_decay != 0
} AdamUpdateScalars;
AdamUpdateScalars adam_update_scalars(double lr, double weight_decay, double beta1, double beta2, double eps,
                                      int decoupled, int64_t step);
void adam_update_launch(float *params, const float *grads, float *exp_avg, float *exp_avg_sq, int64_t start,
                        int64_t count, AdamUpdateScalars scalars, cudaStream_t stream);

// ---------------------------------------------------------------- EMA of weights

// ema = decay * ema + (1 - decay) * params (engine/optim.c's ema_update).
void ema_update_launch(float *ema, const float *params, int64_t n, double decay, cudaStream_t stream);

// ---------------------------------------------------------------- gradient clipping

// clip_grad_norm in two steps, with no host synchronisation in between:
//   grad_norm_launch:       *norm (one device double) = sqrt(sum of grads^2), the squares summed in
//                           f64: blocks of 16384 elements (optim.c's chunks) reduce by a fixed tree,
//                           then one block adds the block sums in a fixed tree. Deterministic; equal
//                           to the CPU's (sequential f64) up to f64 rounding, so the clip coefficient,
//                           an f32, is the same in practice.
//   grad_clip_scale_launch: grads *= max_norm / (norm + 1e-6) when that is below 1 and the norm is
//                           finite, the coefficient computed in f32 as optim.c does.
// The caller reads *norm back when it wants it (e.g. to skip a step on a non-finite norm).
size_t grad_norm_workspace_bytes(int64_t n);
void grad_norm_launch(const float *grads, int64_t n, void *workspace, double *norm, cudaStream_t stream);
void grad_clip_scale_launch(float *grads, int64_t n, const double *norm, double max_norm, cudaStream_t stream);
// x *= factor (e.g. a clip coefficient computed on the host).
void scale_f32_launch(float *x, int64_t n, float factor, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
