// Noise schedules of discrete-time diffusion (DDPM, Ho et al. 2020, eq. 4):
//   x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps,  alpha_bar_t = prod_{s <= t} (1 - beta_s),
// for integer t in [0, T), T = num_train_timesteps, with the betas as diffusers builds them
// (config key beta_schedule): "linear", "scaled_linear" (linear in sqrt(beta), Stable Diffusion) and
// "squaredcos_cap_v2" (Nichol & Dhariwal 2021, eq. 17: alpha_bar(u) = cos^2((u + 0.008) / 1.008 * pi/2),
// beta_i = min(1 - alpha_bar((i+1)/T) / alpha_bar(i/T), 0.999)).
//
// The betas and the alphas 1 - beta are float32 values as diffusers makes them (torch.linspace in
// float32, the cosine formula in double rounded to float32), so that the samplers follow diffusers'
// tables: with linear betas from 1e-4, float32 rounds alpha_0 = 0.9999 so that 1 - alpha_0 moves by
// 1.7e-4 relatively, which moves the fourth decimal of diffusers' DDIM test value 172.0067. The
// cumulative product and everything after it are in double (diffusers accumulates the product in
// double, stores it in float32 and steps in float32). The Karras-style noise level of step t (Euler samplers)
// is sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t), so that x_t / sqrt(alpha_bar_t) = x_0 + sigma_t eps.
//
// Model outputs come in three parameterisations (config key prediction_type):
//   "epsilon"       the noise eps;
//   "v_prediction"  v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x_0 (Salimans & Ho 2022, sec. 4);
//   "sample"        x_0 itself.
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "engine/rng.h"
#include "engine/tensor.h"

typedef enum { BETA_LINEAR, BETA_SCALED_LINEAR, BETA_SQUAREDCOS_CAP_V2 } BetaSchedule;
typedef enum { PREDICTION_EPSILON, PREDICTION_V, PREDICTION_SAMPLE } PredictionType;

typedef struct {
    BetaSchedule beta_schedule;
    int num_train_timesteps;  // T
    double beta_start, beta_end;  // unused by squaredcos_cap_v2
    double *betas;           // [T]
    double *alphas_cumprod;  // [T], alpha_bar_t
} NoiseSchedule;

// Builds the schedule; a bad argument (T < 1, betas outside (0, 1), beta_start > beta_end) stops the
// program with one line naming `where` (e.g. the config file) and the value.
NoiseSchedule noise_schedule_make(BetaSchedule beta_schedule, int num_train_timesteps, double beta_start,
                                  double beta_end, const char *where);
void noise_schedule_free(NoiseSchedule *schedule);

// Names as in diffusers' configs. Unknown names stop the program with one line naming `where`,
// the option and the accepted values.
BetaSchedule beta_schedule_from_name(const char *name, const char *where);
const char *beta_schedule_name(BetaSchedule beta_schedule);
PredictionType prediction_type_from_name(const char *name, const char *where);
const char *prediction_type_name(PredictionType prediction_type);

// alpha_bar at an integer timestep; a timestep outside [0, T) stops the program naming `where`.
double noise_schedule_alpha_bar(const NoiseSchedule *schedule, int64_t timestep, const char *where);
// sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t) at an integer timestep.
double noise_schedule_sigma(const NoiseSchedule *schedule, int64_t timestep);
// sigma at a fractional timestep in [0, T - 1]: linear interpolation between the neighbouring
// integer timesteps' sigmas (numpy.interp, as diffusers' Euler schedulers do).
double noise_schedule_sigma_interpolated(const NoiseSchedule *schedule, double timestep);

// ---- Tensor helpers shared by the samplers and losses ----
// values[0..n) as a [n] tensor in like's dtype on like's device (timesteps for the model).
Tensor *diffusion_values_tensor(const Tensor *like, const double *values, int64_t n);
// A [N, 1, ..., 1] tensor (like's ndim, N = like->shape[0]) holding values[n] in like's dtype on
// like's device: per-sample coefficients that broadcast over a batch.
Tensor *diffusion_per_sample(const Tensor *like, const double *values);
// Standard normal noise from the project's Philox RNG (rng_fill_normal_f32/f64), of the given
// float dtype and shape, on `device` (drawn on the CPU and copied, so CPU and device runs match).
Tensor *diffusion_randn(Rng *rng, DType dtype, Shape shape, Device device);
// n timesteps uniform in [0, T) (rng_fill_int64).
void diffusion_draw_timesteps(Rng *rng, int64_t *out, int64_t n, int num_train_timesteps);
// a * x + b * y (no broadcasting beyond what op_add does).
Tensor *diffusion_axpby(double a, Tensor *x, double b, Tensor *y);
