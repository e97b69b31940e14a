// Samplers of discrete-time diffusion models: DDPM (Ho et al. 2020, eq. 6-7), DDIM (Song et al. 2021,
// eq. 12), Euler and Euler-ancestral (Karras et al. 2022, Algorithm 1 / k-diffusion), computed as
// diffusers 0.27's DDPMScheduler, DDIMScheduler, EulerDiscreteScheduler and
// EulerAncestralDiscreteScheduler compute them (docs/DIFFUSION.md maps every option).
//
// Conventions. A sampler runs num_inference_steps steps, step index i = 0 .. n-1, from the noisiest
// timestep timesteps[0] down. DDPM/DDIM timesteps are integers; the step from t goes to
// prev_t = t - T / n (integer division, as diffusers, whatever the spacing), alpha_bar of a negative
// prev_t is 1 (DDPM; DDIM with set_alpha_to_one) or alpha_bar_0. Euler timesteps may be fractional
// (float32 values, as diffusers stores them); sigmas[i] = sigma at timesteps[i] (interpolated),
// sigmas[n] = 0; the sample lives at scale x = x_0 + sigma eps, the model sees
// x / sqrt(sigma^2 + 1) (scale_model_input) and the starting noise is multiplied by
// init_noise_sigma.
//
// The steps are written with engine ops (elementwise, clamp), so they run on f32/f64 tensors on the
// CPU or the device; coefficients are computed in double on the host.
#pragma once
#include <stdbool.h>

#include "diffusion/guidance.h"
#include "diffusion/noise_schedule.h"
#include "engine/rng.h"

typedef enum { SAMPLER_DDPM, SAMPLER_DDIM, SAMPLER_EULER, SAMPLER_EULER_ANCESTRAL } SamplerKind;
typedef enum { SPACING_LEADING, SPACING_TRAILING, SPACING_LINSPACE } TimestepSpacing;
typedef enum { VARIANCE_FIXED_SMALL, VARIANCE_FIXED_LARGE } VarianceType;

// Field names follow diffusers' scheduler config keys.
typedef struct {
    SamplerKind kind;
    int num_train_timesteps;          // 1000
    double beta_start, beta_end;      // 0.0001, 0.02
    BetaSchedule beta_schedule;       // linear
    PredictionType prediction_type;   // epsilon
    TimestepSpacing timestep_spacing; // leading (DDPM, DDIM), linspace (Euler, Euler-a)
    int steps_offset;                 // 0; added to "leading" timesteps
    bool clip_sample;                 // DDPM, DDIM: clamp the predicted x_0 (default true)
    double clip_sample_range;         // 1.0
    bool set_alpha_to_one;            // DDIM: alpha_bar before t = 0 is 1 (else alpha_bar_0); true
    VarianceType variance_type;       // DDPM: fixed_small
    double eta;                       // DDIM: 0 (deterministic) .. 1 (DDPM-like); a step argument in diffusers
} SamplerConfig;

// diffusers' defaults for the kind.
SamplerConfig sampler_config_defaults(SamplerKind kind);
SamplerKind sampler_kind_from_name(const char *name, const char *where);  // ddpm, ddim, euler, euler_ancestral
const char *sampler_kind_name(SamplerKind kind);
// Sets one option by its diffusers config key from text ("beta_schedule" "scaled_linear",
// "clip_sample" "true", "eta" "0.5", ...). An unknown key, a value that does not parse, or an option
// the kind does not have stops the program with one line naming `where`, the key and the value.
void sampler_config_set(SamplerConfig *config, const char *key, const char *value, const char *where);

typedef struct {
    SamplerConfig config;
    NoiseSchedule schedule;
    int num_inference_steps;
    double *timesteps;       // [n]
    double *sigmas;          // Euler kinds: [n + 1]; NULL otherwise
    double init_noise_sigma; // 1 for DDPM/DDIM; Euler: max sigma, or sqrt(max^2 + 1) with "leading"
} Sampler;

// Builds the schedule and the timesteps (diffusers' __init__ + set_timesteps). Errors (steps
// outside [1, T], a timestep pushed past T - 1 by steps_offset, bad betas) stop with one line naming
// `where`.
Sampler sampler_make(SamplerConfig config, int num_inference_steps, const char *where);
void sampler_free(Sampler *sampler);

// The model input at step i: x itself (DDPM/DDIM) or x / sqrt(sigma_i^2 + 1) (Euler kinds).
Tensor *sampler_scale_model_input(const Sampler *sampler, int step_index, Tensor *x);
// Whether step i adds noise (DDPM at t > 0, DDIM with eta > 0, Euler-ancestral).
bool sampler_step_needs_noise(const Sampler *sampler, int step_index);
// One step from x (at timesteps[i]) given the model output: the sample at the next timestep.
// noise [shape of x], standard normal, is required exactly when sampler_step_needs_noise (else
// ignored; may be NULL). If pred_original_sample is not NULL it receives the predicted x_0.
Tensor *sampler_step(const Sampler *sampler, int step_index, Tensor *model_output, Tensor *x, Tensor *noise,
                     Tensor **pred_original_sample);
// The whole loop, as diffusers' pipelines run it: x = initial_noise * init_noise_sigma, then for each
// step the (guided) model output on the scaled input and sampler_step, with step noise drawn from
// rng (diffusion_randn). Runs with grad mode off. Returns the final sample (shape of initial_noise).
Tensor *sampler_sample(const Sampler *sampler, const GuidedModel *model, Tensor *initial_noise, Rng *rng);
