// Noise schedules (see noise_schedule.h for the formulas and the precision choice).
#include "diffusion/noise_schedule.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/ops.h"

static const char *const BETA_SCHEDULE_NAMES[] = {"linear", "scaled_linear", "squaredcos_cap_v2"};
static const char *const PREDICTION_TYPE_NAMES[] = {"epsilon", "v_prediction", "sample"};

BetaSchedule beta_schedule_from_name(const char *name, const char *where) {
    for (int i = 0; i < 3; i++)
        if (strcmp(name, BETA_SCHEDULE_NAMES[i]) == 0) return (BetaSchedule)i;
    tensor_fatal(where, "unknown beta_schedule '%s' (expected linear, scaled_linear or squaredcos_cap_v2)", name);
}

const char *beta_schedule_name(BetaSchedule beta_schedule) { return BETA_SCHEDULE_NAMES[beta_schedule]; }

PredictionType prediction_type_from_name(const char *name, const char *where) {
    for (int i = 0; i < 3; i++)
        if (strcmp(name, PREDICTION_TYPE_NAMES[i]) == 0) return (PredictionType)i;
    tensor_fatal(where, "unknown prediction_type '%s' (expected epsilon, v_prediction or sample)", name);
}

const char *prediction_type_name(PredictionType prediction_type) { return PREDICTION_TYPE_NAMES[prediction_type]; }

// Nichol & Dhariwal's alpha_bar(u) for u in [0, 1].
static double cosine_alpha_bar(double u) {
    double c = cos((u + 0.008) / 1.008 * M_PI / 2);
    return c * c;
}

// torch.linspace(start, end, steps, dtype=torch.float32)[i]: float32 arithmetic, the first half counted
// from start and the second half back from end.
static double linspace_f32(double start, double end, int steps, int i) {
    float start_f = (float)start, end_f = (float)end;
    if (steps == 1) return start_f;
    float step = (end_f - start_f) / (float)(steps - 1);
    return i < steps / 2 ? start_f + step * (float)i : end_f - step * (float)(steps - i - 1);
}

NoiseSchedule noise_schedule_make(BetaSchedule beta_schedule, int num_train_timesteps, double beta_start,
                                  double beta_end, const char *where) {
    if (num_train_timesteps < 1) tensor_fatal(where, "num_train_timesteps %d must be at least 1", num_train_timesteps);
    if (beta_schedule != BETA_SQUAREDCOS_CAP_V2) {
        if (!(beta_start > 0 && beta_start < 1)) tensor_fatal(where, "beta_start %g must lie in (0, 1)", beta_start);
        if (!(beta_end > 0 && beta_end < 1)) tensor_fatal(where, "beta_end %g must lie in (0, 1)", beta_end);
    }
    int n = num_train_timesteps;
    NoiseSchedule s = {.beta_schedule = beta_schedule, .num_train_timesteps = n, .beta_start = beta_start,
                       .beta_end = beta_end};
    s.betas = malloc((size_t)n * sizeof(double));
    s.alphas_cumprod = malloc((size_t)n * sizeof(double));
    if (!s.betas || !s.alphas_cumprod) tensor_fatal(where, "out of memory for %d timesteps", n);
    for (int i = 0; i < n; i++) {
        switch (beta_schedule) {
        case BETA_LINEAR: s.betas[i] = linspace_f32(beta_start, beta_end, n, i); break;
        case BETA_SCALED_LINEAR: {
            float r = (float)linspace_f32(sqrt(beta_start), sqrt(beta_end), n, i);
            s.betas[i] = (float)(r * r);
            break;
        }
        case BETA_SQUAREDCOS_CAP_V2:
            s.betas[i] = (float)fmin(1 - cosine_alpha_bar((double)(i + 1) / n) / cosine_alpha_bar((double)i / n), 0.999);
            break;
        }
    }
    // alpha = 1 - beta rounded to float32 (a float32 subtraction), the product accumulated in double
    // (torch.cumprod on the CPU accumulates float in double).
    double product = 1;
    for (int i = 0; i < n; i++) {
        product *= (float)(1 - s.betas[i]);
        s.alphas_cumprod[i] = product;
    }
    return s;
}

void noise_schedule_free(NoiseSchedule *schedule) {
    free(schedule->betas);
    free(schedule->alphas_cumprod);
    schedule->betas = schedule->alphas_cumprod = NULL;
}

double noise_schedule_alpha_bar(const NoiseSchedule *schedule, int64_t timestep, const char *where) {
    if (timestep < 0 || timestep >= schedule->num_train_timesteps)
        tensor_fatal(where, "timestep %lld outside [0, %d) (num_train_timesteps)", (long long)timestep,
                     schedule->num_train_timesteps);
    return schedule->alphas_cumprod[timestep];
}

double noise_schedule_sigma(const NoiseSchedule *schedule, int64_t timestep) {
    double a = noise_schedule_alpha_bar(schedule, timestep, "noise_schedule_sigma");
    return sqrt((1 - a) / a);
}

double noise_schedule_sigma_interpolated(const NoiseSchedule *schedule, double timestep) {
    int last = schedule->num_train_timesteps - 1;
    if (!(timestep >= 0 && timestep <= last))
        tensor_fatal("noise_schedule_sigma_interpolated", "timestep %g outside [0, %d]", timestep, last);
    int64_t low = (int64_t)floor(timestep);
    if (low == last) return noise_schedule_sigma(schedule, last);
    double w = timestep - (double)low;
    return (1 - w) * noise_schedule_sigma(schedule, low) + w * noise_schedule_sigma(schedule, low + 1);
}

Tensor *diffusion_values_tensor(const Tensor *like, const double *values, int64_t n) {
    Tensor *t = tensor_empty_on(like->dtype, SHAPE(n), device_cpu());
    for (int64_t i = 0; i < n; i++) tensor_set(t, i, values[i]);
    return tensor_is_cuda(like) ? tensor_to_device_raw(t, like->storage->device) : t;
}

Tensor *diffusion_per_sample(const Tensor *like, const double *values) {
    Shape shape = {.ndim = like->ndim};
    for (int d = 0; d < like->ndim; d++) shape.dims[d] = d == 0 ? like->shape[0] : 1;
    return op_reshape(diffusion_values_tensor(like, values, like->shape[0]), shape);
}

Tensor *diffusion_randn(Rng *rng, DType dtype, Shape shape, Device device) {
    Tensor *t = tensor_empty_on(dtype, shape, device_cpu());
    if (dtype == DTYPE_F32) rng_fill_normal_f32(rng, tensor_f32(t), tensor_numel(t), 0, 1);
    else if (dtype == DTYPE_F64) rng_fill_normal_f64(rng, tensor_f64(t), tensor_numel(t), 0, 1);
    else tensor_fatal("diffusion_randn", "noise must be f32 or f64, got %s", dtype_name(dtype));
    return device.kind == DEVICE_CUDA ? tensor_to_device_raw(t, device) : t;
}

void diffusion_draw_timesteps(Rng *rng, int64_t *out, int64_t n, int num_train_timesteps) {
    rng_fill_int64(rng, out, n, 0, num_train_timesteps);
}

Tensor *diffusion_axpby(double a, Tensor *x, double b, Tensor *y) {
    return op_add(op_mul_scalar(x, a), op_mul_scalar(y, b));
}
