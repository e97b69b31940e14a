// Diffusion training losses.
//
// Training (Ho et al. 2020, Algorithm 1; v-prediction from Salimans & Ho 2022): per sample, draw
// t ~ U{0, ..., T-1} and eps ~ N(0, I), form x_t = sqrt(a_t) x_0 + sqrt(1 - a_t) eps, and regress the
// model output on eps ("epsilon") or v = sqrt(a_t) eps - sqrt(1 - a_t) x_0 ("v_prediction") or x_0
// ("sample"); mean squared error over all elements (diffusers' train_text_to_image). With condition
// dropout p, each sample's condition is replaced by the null condition with probability p, which
// trains the unconditional model that classifier-free guidance needs (Ho & Salimans 2022, Alg. 1).
//
// Likelihood loss (Diffusion-TTA, Prabhudesai et al. 2023, eq. 3): for K given (t_k, eps_k) pairs,
//   L(x, c) = 1/K sum_k mean ||eps_hat(x_{t_k}, t_k, c) - eps_k||^2,
// where eps_hat is the model's noise estimate (a v- or x_0-prediction model's output converted to eps).
// It is an ordinary autograd expression through the model callback: the gradient reaches the
// condition c whenever c requires grad (Diffusion-TTA's c is the classifier's output mapped to a
// class embedding), x when x requires grad, and the model's weights exactly when they require grad
// (leave them frozen to adapt only the classifier). x is whatever the model denoises: pixels, or the
// VAE latents of a latent diffusion model (scaled by the VAE's scaling factor, done by the caller).
#pragma once
#include "diffusion/guidance.h"
#include "diffusion/noise_schedule.h"
#include "engine/rng.h"

// x_t = sqrt(a_t) x0 + sqrt(1 - a_t) noise, x0/noise [B, ...], timesteps[B] integers in [0, T).
Tensor *diffusion_add_noise(const NoiseSchedule *schedule, Tensor *x0, Tensor *noise, const int64_t *timesteps);
// The regression target for the prediction type: eps, v = sqrt(a_t) eps - sqrt(1 - a_t) x0, or x0.
Tensor *diffusion_target(const NoiseSchedule *schedule, PredictionType type, Tensor *x0, Tensor *noise,
                         const int64_t *timesteps);

// Replaces the condition of samples with drop[b] != 0 (drop: u8 [B] on the CPU) by a null
// condition; returns the condition to use. The caller decides how (a learned null embedding, the
// empty prompt's text embedding, a "no class" index, ...).
typedef Tensor *(*ConditionDropFn)(Tensor *condition, Tensor *drop, void *context);
// A ConditionDropFn for a fixed null condition tensor (context: Tensor *, shape [1, ...] or the
// condition's): op_where per sample, so kept samples pass their gradient to the condition.
Tensor *diffusion_drop_to_null_condition(Tensor *condition, Tensor *drop, void *null_condition);

typedef struct {
    PredictionType prediction_type;
    double condition_dropout;      // p in [0, 1]
    ConditionDropFn drop_condition;  // required when condition_dropout > 0
    void *drop_context;
    // Min-SNR-gamma weighting (Hang et al. 2023, as diffusers' train_text_to_image --snr_gamma):
    // sample i's mean squared error weighted by min(SNR_t, gamma) / SNR_t for epsilon,
    // min(SNR_t, gamma) / (SNR_t + 1) for v, min(SNR_t, gamma) for sample prediction, with
    // SNR_t = a_t / (1 - a_t); then the mean over the batch. 0: off (plain MSE).
    double snr_gamma;
} DiffusionTrainingOptions;

// The training loss on a batch x0 [B, ...] with condition [B, ...] (or NULL). Draws from rng, in
// this order: B timesteps (diffusion_draw_timesteps), the noise (diffusion_randn, x0's shape), and,
// when condition_dropout > 0, B Bernoulli(p) drop flags (rng_fill_bernoulli_u8). Scalar result.
Tensor *diffusion_training_loss(const NoiseSchedule *schedule, DiffusionModelFn model, void *model_context,
                                Tensor *x0, Tensor *condition, DiffusionTrainingOptions options, Rng *rng);

// The likelihood loss above for x0 [B, ...], condition [B, ...] (or NULL), n_pairs pairs:
// timesteps[K] and noise [K, B, ...] (pair k applies to every sample). One model call on the
// K * B batch, ordered pair-major. Scalar result.
Tensor *diffusion_likelihood_loss(const NoiseSchedule *schedule, PredictionType prediction_type,
                                  DiffusionModelFn model, void *model_context, Tensor *x0, Tensor *condition,
                                  const int64_t *timesteps, Tensor *noise, int n_pairs);
