// The denoising model as the samplers and losses see it, and classifier-free guidance
// (Ho & Salimans 2022, eq. 6 written as diffusers does: out = uncond + scale * (cond - uncond)).
#pragma once
#include "engine/tensor.h"

// x_t [B, ...] (the sample, already scaled by the sampler's scale_model_input), timesteps [B] in
// x_t's dtype and device (integer values for DDPM/DDIM, fractional for Euler), condition [B, ...]
// or NULL for an unconditional model; returns the model output, shape of x_t. Called with grad mode
// as the caller set it: the losses differentiate through it.
typedef Tensor *(*DiffusionModelFn)(Tensor *x_t, Tensor *timesteps, Tensor *condition, void *context);

typedef struct {
    DiffusionModelFn forward;
    void *context;
    Tensor *condition;       // [B, ...] or NULL
    // Classifier-free guidance, active when null_condition is set and guidance_scale != 1:
    // null_condition [B, ...] or [1, ...] (expanded), the "empty prompt" / null-class condition.
    Tensor *null_condition;
    double guidance_scale;
} GuidedModel;

// A model without guidance.
GuidedModel guided_model(DiffusionModelFn forward, void *context, Tensor *condition);

// The (guided) output at one timestep for the whole batch x [B, ...]. With guidance the model runs
// once on [2B, ...]: x twice, conditions [null_condition; condition] (diffusers' order), and
// the halves are combined. Shape errors (condition batch, output shape) stop with one line.
Tensor *guided_model_output(const GuidedModel *model, Tensor *x, double timestep);
// True when guided_model_output combines a conditional and an unconditional pass.
bool guided_model_uses_guidance(const GuidedModel *model);
// Checks that a model output has the sample's shape; one line naming `where` otherwise.
void diffusion_check_model_output(const Tensor *output, const Tensor *x, const char *where);
