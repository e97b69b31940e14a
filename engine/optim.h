// Optimizers over one flat parameter buffer and one flat gradient buffer (llm.c style), with
// parameter groups as contiguous ranges that carry their own learning-rate multiplier and weight
// decay. The update rules are PyTorch 1.13's torch.optim.SGD / Adam / AdamW (single-tensor path),
// operation by operation and in the same precision: element math in f32, scalar coefficients
// (bias corrections, step size, 1 - beta, ...) computed in f64 as Python does, then rounded to f32.
// tests/test_optim.c checks them against tests/golden/optim.safetensors (tests/ref/gen_optim_goldens.py).
#pragma once
#include <stdint.h>

typedef enum { OPTIM_SGD, OPTIM_ADAM, OPTIM_ADAMW } OptimizerKind;

// Parameters [start, start + count) of the flat buffer. Their learning rate is
// optimizer->lr * lr_multiplier; weight_decay replaces the optimizer's default (0 for biases and
// norm weights).
typedef struct {
    int64_t start, count;
    double lr_multiplier;
    double weight_decay;
} ParamGroup;

// Hyperparameters are f64 like PyTorch's Python floats; they may be changed between steps (the
// training loop sets `lr` from a schedule before each step).
//
// State, for checkpoints (save and restore all of it, and `step`):
//   SGD:        state1 = momentum_buffer[n_params] (NULL when momentum == 0); state2 = NULL.
//               Before the first step (step == 0) the buffer is unused: the first step sets it to
//               the gradient, as PyTorch does when state['momentum_buffer'] is None.
//   Adam/AdamW: state1 = exp_avg[n_params], state2 = exp_avg_sq[n_params], zero at creation.
//   step:       steps taken so far (PyTorch's state['step']); optimizer_step increments it first.
typedef struct Optimizer {
    OptimizerKind kind;
    double lr;
    double momentum, dampening;  // SGD
    int nesterov;                // SGD
    double beta1, beta2, eps;    // Adam / AdamW
    double weight_decay;         // for parameters outside every group
    int64_t step;
    int64_t n_params;
    float *state1, *state2;
    int n_groups;
    ParamGroup *groups;  // sorted by start, not overlapping
    int on_device;       // state1/state2 are CUDA device buffers and steps run the kernels/optim.cu updates
} Optimizer;

// Both return NULL on an argument PyTorch refuses (negative lr, momentum, eps or weight decay; beta
// outside [0, 1); nesterov without momentum or with dampening), on n_params < 0, or out of memory.
Optimizer *optimizer_new_sgd(int64_t n_params, double lr, double momentum, double dampening,
                             int nesterov, double weight_decay);
// decoupled = 0: Adam with L2 weight decay added to the gradient; decoupled = 1: AdamW
// (p *= 1 - lr * weight_decay before the Adam update).
Optimizer *optimizer_new_adam(int64_t n_params, double lr, double beta1, double beta2, double eps,
                              double weight_decay, int decoupled);
// Returns 0, or -1 when the range is outside [0, n_params) or overlaps an existing group.
// Parameters in no group use lr_multiplier 1 and the optimizer's weight_decay.
int optimizer_add_group(Optimizer *opt, int64_t start, int64_t count, double lr_multiplier,
                        double weight_decay);
// One update of params[n_params] from grads[n_params].
void optimizer_step(Optimizer *opt, float *params, const float *grads);
void optimizer_free(Optimizer *opt);
// Moves the state buffers to the current CUDA device; optimizer_step then takes device pointers
// and updates with the CUDA kernels, bit for bit the CPU arithmetic.
void optimizer_move_to_device(Optimizer *opt);
// Copies state buffer 1 or 2 (wherever it lives) to or from n_params host floats; for checkpoints.
void optimizer_state_to_host(const Optimizer *opt, int which, float *host);
void optimizer_state_from_host(Optimizer *opt, int which, const float *host);

// Exponential moving average of weights: ema = decay * ema + (1 - decay) * params, in f32 with the
// coefficients decay and 1 - decay computed in f64 and rounded (as timm's ModelEmaV2 in PyTorch).
void ema_update(float *ema, const float *params, int64_t n, double decay);

// Gradient clipping by the global L2 norm, torch.nn.utils.clip_grad_norm_ semantics: returns the
// norm before clipping (accumulated in f64 in fixed-size chunks, so it does not depend on the thread
// count) and multiplies grads by max_norm / (norm + 1e-6) when that is below 1 (computed in f32 as
// PyTorch does). A non-finite norm is returned and grads are left alone: skip that step.
double clip_grad_norm(float *grads, int64_t n, double max_norm);
