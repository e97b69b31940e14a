// DDPM, DDIM, Euler and Euler-ancestral steps and the sampling loop (see sampler.h).
#include "diffusion/sampler.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/ops.h"

static const char *const SAMPLER_KIND_NAMES[] = {"ddpm", "ddim", "euler", "euler_ancestral"};

SamplerKind sampler_kind_from_name(const char *name, const char *where) {
    for (int i = 0; i < 4; i++)
        if (strcmp(name, SAMPLER_KIND_NAMES[i]) == 0) return (SamplerKind)i;
    tensor_fatal(where, "unknown sampler '%s' (expected ddpm, ddim, euler or euler_ancestral)", name);
}

const char *sampler_kind_name(SamplerKind kind) { return SAMPLER_KIND_NAMES[kind]; }

static bool is_euler(SamplerKind kind) { return kind == SAMPLER_EULER || kind == SAMPLER_EULER_ANCESTRAL; }

SamplerConfig sampler_config_defaults(SamplerKind kind) {
    return (SamplerConfig){
        .kind = kind,
        .num_train_timesteps = 1000,
        .beta_start = 0.0001,
        .beta_end = 0.02,
        .beta_schedule = BETA_LINEAR,
        .prediction_type = PREDICTION_EPSILON,
        .timestep_spacing = is_euler(kind) ? SPACING_LINSPACE : SPACING_LEADING,
        .steps_offset = 0,
        .clip_sample = !is_euler(kind),
        .clip_sample_range = 1.0,
        .set_alpha_to_one = true,
        .variance_type = VARIANCE_FIXED_SMALL,
        .eta = 0,
    };
}

// ---------------------------------------------------------------- options from text

static _Noreturn void bad_value(const char *where, const char *key, const char *value, const char *expected) {
    tensor_fatal(where, "%s '%s': expected %s", key, value, expected);
}

static double parse_double(const char *where, const char *key, const char *value) {
    char *end;
    errno = 0;
    double x = strtod(value, &end);
    if (end == value || *end || errno || !isfinite(x)) bad_value(where, key, value, "a finite number");
    return x;
}

static int parse_int(const char *where, const char *key, const char *value) {
    char *end;
    errno = 0;
    long x = strtol(value, &end, 10);
    if (end == value || *end || errno || x < 0 || x > 1000000000) bad_value(where, key, value, "an integer >= 0");
    return (int)x;
}

static bool parse_bool(const char *where, const char *key, const char *value) {
    if (strcmp(value, "true") == 0) return true;
    if (strcmp(value, "false") == 0) return false;
    bad_value(where, key, value, "true or false");
}

// Options a kind does not have: DDPM/DDIM-only and DDIM-only keys.
static void require_kind(const SamplerConfig *config, const char *key, bool allowed, const char *where) {
    if (!allowed) tensor_fatal(where, "option %s does not apply to the %s sampler", key, sampler_kind_name(config->kind));
}

void sampler_config_set(SamplerConfig *c, const char *key, const char *value, const char *where) {
    bool ddpm_or_ddim = c->kind == SAMPLER_DDPM || c->kind == SAMPLER_DDIM;
    if (strcmp(key, "num_train_timesteps") == 0) c->num_train_timesteps = parse_int(where, key, value);
    else if (strcmp(key, "beta_start") == 0) c->beta_start = parse_double(where, key, value);
    else if (strcmp(key, "beta_end") == 0) c->beta_end = parse_double(where, key, value);
    else if (strcmp(key, "beta_schedule") == 0) c->beta_schedule = beta_schedule_from_name(value, where);
    else if (strcmp(key, "prediction_type") == 0) c->prediction_type = prediction_type_from_name(value, where);
    else if (strcmp(key, "steps_offset") == 0) c->steps_offset = parse_int(where, key, value);
    else if (strcmp(key, "timestep_spacing") == 0) {
        if (strcmp(value, "leading") == 0) c->timestep_spacing = SPACING_LEADING;
        else if (strcmp(value, "trailing") == 0) c->timestep_spacing = SPACING_TRAILING;
        else if (strcmp(value, "linspace") == 0) c->timestep_spacing = SPACING_LINSPACE;
        else bad_value(where, key, value, "leading, trailing or linspace");
    } else if (strcmp(key, "clip_sample") == 0) {
        require_kind(c, key, ddpm_or_ddim, where);
        c->clip_sample = parse_bool(where, key, value);
    } else if (strcmp(key, "clip_sample_range") == 0) {
        require_kind(c, key, ddpm_or_ddim, where);
        c->clip_sample_range = parse_double(where, key, value);
        if (!(c->clip_sample_range > 0)) bad_value(where, key, value, "a number > 0");
    } else if (strcmp(key, "set_alpha_to_one") == 0) {
        require_kind(c, key, c->kind == SAMPLER_DDIM, where);
        c->set_alpha_to_one = parse_bool(where, key, value);
    } else if (strcmp(key, "eta") == 0) {
        require_kind(c, key, c->kind == SAMPLER_DDIM, where);
        c->eta = parse_double(where, key, value);
        if (!(c->eta >= 0)) bad_value(where, key, value, "a number >= 0");
    } else if (strcmp(key, "variance_type") == 0) {
        require_kind(c, key, c->kind == SAMPLER_DDPM, where);
        if (strcmp(value, "fixed_small") == 0) c->variance_type = VARIANCE_FIXED_SMALL;
        else if (strcmp(value, "fixed_large") == 0) c->variance_type = VARIANCE_FIXED_LARGE;
        else bad_value(where, key, value, "fixed_small or fixed_large (the learned and log variants are not implemented)");
    } else if (strcmp(key, "thresholding") == 0 || strcmp(key, "rescale_betas_zero_snr") == 0 ||
               strcmp(key, "use_karras_sigmas") == 0) {
        // Options of diffusers' configs that are accepted only at their default (off).
        if (parse_bool(where, key, value)) tensor_fatal(where, "%s true is not implemented", key);
    } else if (strcmp(key, "interpolation_type") == 0) {
        if (strcmp(value, "linear") != 0) bad_value(where, key, value, "linear (log_linear is not implemented)");
    } else {
        tensor_fatal(where, "unknown sampler option '%s'", key);
    }
}

// ---------------------------------------------------------------- timesteps

// Fills timesteps[0..n) (noisiest first) as diffusers 0.27's set_timesteps for the spacing, in double;
// DDPM/DDIM round to integers, the Euler kinds keep float32 values (fractional with "linspace").
static void compute_timesteps(const SamplerConfig *c, int n, double *timesteps) {
    int T = c->num_train_timesteps;
    bool euler = is_euler(c->kind);
    switch (c->timestep_spacing) {
    case SPACING_LINSPACE: {
        // numpy.linspace(0, T - 1, n): k * step, the last point exactly T - 1.
        double step = n > 1 ? (double)(T - 1) / (n - 1) : 0;
        for (int k = 0; k < n; k++) {
            double v = k == n - 1 && n > 1 ? T - 1 : k * step;
            timesteps[n - 1 - k] = euler ? (double)(float)v : nearbyint(v);
        }
        break;
    }
    case SPACING_LEADING: {
        int ratio = T / n;
        for (int k = 0; k < n; k++) timesteps[n - 1 - k] = (double)k * ratio + c->steps_offset;
        break;
    }
    case SPACING_TRAILING: {
        // numpy.arange(T, 0, -T / n): T + k * delta with delta = (T - ratio) - T as numpy forms it,
        // rounded half to even, minus 1.
        double ratio = (double)T / n;
        double delta = ((double)T - ratio) - (double)T;
        for (int k = 0; k < n; k++) timesteps[k] = nearbyint((double)T + k * delta) - 1;
        break;
    }
    }
}

Sampler sampler_make(SamplerConfig config, int num_inference_steps, const char *where) {
    int T = config.num_train_timesteps;
    Sampler s = {.config = config, .num_inference_steps = num_inference_steps, .init_noise_sigma = 1};
    s.schedule = noise_schedule_make(config.beta_schedule, T, config.beta_start, config.beta_end, where);
    if (num_inference_steps < 1 || num_inference_steps > T)
        tensor_fatal(where, "num_inference_steps %d must lie in [1, %d] (num_train_timesteps)", num_inference_steps, T);
    if (config.eta != 0 && config.kind != SAMPLER_DDIM) tensor_fatal(where, "eta applies to the ddim sampler only");
    if (config.prediction_type == PREDICTION_SAMPLE && config.kind == SAMPLER_EULER_ANCESTRAL)
        tensor_fatal(where, "prediction_type sample is not supported by euler_ancestral (as in diffusers)");
    int n = num_inference_steps;
    s.timesteps = malloc((size_t)n * sizeof(double));
    if (!s.timesteps) tensor_fatal(where, "out of memory");
    compute_timesteps(&config, n, s.timesteps);
    for (int i = 0; i < n; i++)
        if (!(s.timesteps[i] >= 0 && s.timesteps[i] <= T - 1))
            tensor_fatal(where, "timestep %g of %d steps (spacing %s, steps_offset %d) falls outside [0, %d]",
                         s.timesteps[i], n,
                         config.timestep_spacing == SPACING_LEADING ? "leading"
                         : config.timestep_spacing == SPACING_TRAILING ? "trailing" : "linspace",
                         config.steps_offset, T - 1);
    if (is_euler(config.kind)) {
        s.sigmas = malloc((size_t)(n + 1) * sizeof(double));
        if (!s.sigmas) tensor_fatal(where, "out of memory");
        double max_sigma = 0;
        for (int i = 0; i < n; i++) {
            s.sigmas[i] = noise_schedule_sigma_interpolated(&s.schedule, s.timesteps[i]);
            max_sigma = fmax(max_sigma, s.sigmas[i]);
        }
        s.sigmas[n] = 0;
        s.init_noise_sigma =
            config.timestep_spacing == SPACING_LEADING ? sqrt(max_sigma * max_sigma + 1) : max_sigma;
    }
    return s;
}

void sampler_free(Sampler *sampler) {
    noise_schedule_free(&sampler->schedule);
    free(sampler->timesteps);
    free(sampler->sigmas);
    sampler->timesteps = sampler->sigmas = NULL;
}

// ---------------------------------------------------------------- steps

static void check_step_index(const Sampler *s, int step_index, const char *op) {
    if (step_index < 0 || step_index >= s->num_inference_steps)
        tensor_fatal(op, "step index %d outside [0, %d)", step_index, s->num_inference_steps);
}

Tensor *sampler_scale_model_input(const Sampler *s, int step_index, Tensor *x) {
    check_step_index(s, step_index, "sampler_scale_model_input");
    if (!is_euler(s->config.kind)) return x;
    double sigma = s->sigmas[step_index];
    return op_mul_scalar(x, 1 / sqrt(sigma * sigma + 1));
}

// DDPM/DDIM: the integer timestep of step i and the one it steps to (t - T/n, may be negative).
static void step_timesteps(const Sampler *s, int step_index, int64_t *t, int64_t *prev_t) {
    *t = (int64_t)s->timesteps[step_index];
    *prev_t = *t - s->config.num_train_timesteps / s->num_inference_steps;
}

bool sampler_step_needs_noise(const Sampler *s, int step_index) {
    check_step_index(s, step_index, "sampler_step_needs_noise");
    int64_t t, prev_t;
    switch (s->config.kind) {
    case SAMPLER_DDPM: step_timesteps(s, step_index, &t, &prev_t); return t > 0;
    case SAMPLER_DDIM: return s->config.eta > 0;
    case SAMPLER_EULER: return false;
    case SAMPLER_EULER_ANCESTRAL: return true;
    }
    return false;
}

// The predicted x_0 and eps from the model output at alpha_bar a (x_t = sqrt(a) x_0 + sqrt(1-a) eps).
// Either output pointer may be NULL.
static void predict_x0_eps(PredictionType type, Tensor *out, Tensor *x, double a, Tensor **x0, Tensor **eps) {
    double sa = sqrt(a), sb = sqrt(1 - a);
    Tensor *pred_x0 = NULL, *pred_eps = NULL;
    switch (type) {
    case PREDICTION_EPSILON:
        pred_x0 = op_mul_scalar(op_sub(x, op_mul_scalar(out, sb)), 1 / sa);
        pred_eps = out;
        break;
    case PREDICTION_SAMPLE:
        pred_x0 = out;
        if (eps) pred_eps = op_mul_scalar(op_sub(x, op_mul_scalar(out, sa)), 1 / sb);
        break;
    case PREDICTION_V:
        pred_x0 = diffusion_axpby(sa, x, -sb, out);
        if (eps) pred_eps = diffusion_axpby(sa, out, sb, x);
        break;
    }
    if (x0) *x0 = pred_x0;
    if (eps) *eps = pred_eps;
}

static Tensor *clip_x0(const SamplerConfig *c, Tensor *x0) {
    return c->clip_sample ? op_clamp(x0, -c->clip_sample_range, c->clip_sample_range) : x0;
}

// DDPM posterior mean and variance, Ho et al. eq. 7, between t and prev_t (strided: beta of the
// jump is 1 - alpha_bar_t / alpha_bar_prev).
static Tensor *ddpm_step(const Sampler *s, int step_index, Tensor *out, Tensor *x, Tensor *noise, Tensor **x0_out) {
    int64_t t, prev_t;
    step_timesteps(s, step_index, &t, &prev_t);
    double a_t = noise_schedule_alpha_bar(&s->schedule, t, "sampler_step");
    double a_prev = prev_t >= 0 ? s->schedule.alphas_cumprod[prev_t] : 1;
    double alpha = a_t / a_prev, beta = 1 - alpha;
    Tensor *x0;
    predict_x0_eps(s->config.prediction_type, out, x, a_t, &x0, NULL);
    x0 = clip_x0(&s->config, x0);
    if (x0_out) *x0_out = x0;
    Tensor *mean = diffusion_axpby(sqrt(a_prev) * beta / (1 - a_t), x0, sqrt(alpha) * (1 - a_prev) / (1 - a_t), x);
    if (t <= 0) return mean;
    double variance = s->config.variance_type == VARIANCE_FIXED_LARGE
                          ? beta
                          : fmax((1 - a_prev) / (1 - a_t) * beta, 1e-20);  // diffusers' clamp
    return op_add(mean, op_mul_scalar(noise, sqrt(variance)));
}

// DDIM, Song et al. eq. 12 with sigma_t = eta sqrt((1 - a_prev) / (1 - a_t) (1 - a_t / a_prev)).
static Tensor *ddim_step(const Sampler *s, int step_index, Tensor *out, Tensor *x, Tensor *noise, Tensor **x0_out) {
    int64_t t, prev_t;
    step_timesteps(s, step_index, &t, &prev_t);
    double a_t = noise_schedule_alpha_bar(&s->schedule, t, "sampler_step");
    double a_prev = prev_t >= 0 ? s->schedule.alphas_cumprod[prev_t]
                    : s->config.set_alpha_to_one ? 1 : s->schedule.alphas_cumprod[0];
    Tensor *x0, *eps;
    predict_x0_eps(s->config.prediction_type, out, x, a_t, &x0, &eps);
    x0 = clip_x0(&s->config, x0);
    if (x0_out) *x0_out = x0;
    double variance = (1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev);
    double std = s->config.eta * sqrt(variance);
    Tensor *prev = diffusion_axpby(sqrt(a_prev), x0, sqrt(1 - a_prev - std * std), eps);
    if (s->config.eta > 0) prev = op_add(prev, op_mul_scalar(noise, std));
    return prev;
}

// The predicted x_0 of the Euler kinds at noise level sigma (x = x_0 + sigma eps scale; the model saw
// x / sqrt(sigma^2 + 1), which is the DDPM x_t of that noise level).
static Tensor *euler_x0(PredictionType type, Tensor *out, Tensor *x, double sigma) {
    switch (type) {
    case PREDICTION_EPSILON: return op_sub(x, op_mul_scalar(out, sigma));
    case PREDICTION_V: return diffusion_axpby(-sigma / sqrt(sigma * sigma + 1), out, 1 / (sigma * sigma + 1), x);
    case PREDICTION_SAMPLE: return out;
    }
    return NULL;
}

// Euler (Karras et al. Algorithm 1 without churn): x + (x - x_0) / sigma * (sigma_next - sigma).
// Ancestral: steps to sigma_down and adds sigma_up noise, sigma_up^2 + sigma_down^2 = sigma_next^2,
// sigma_up = sigma_next sqrt(1 - sigma_next^2 / sigma^2) (k-diffusion's get_ancestral_step, eta 1).
static Tensor *euler_step(const Sampler *s, int step_index, Tensor *out, Tensor *x, Tensor *noise, Tensor **x0_out) {
    double sigma = s->sigmas[step_index], next = s->sigmas[step_index + 1];
    Tensor *x0 = euler_x0(s->config.prediction_type, out, x, sigma);
    if (x0_out) *x0_out = x0;
    Tensor *derivative = op_sub(x, x0);
    if (s->config.kind == SAMPLER_EULER) return op_add(x, op_mul_scalar(derivative, (next - sigma) / sigma));
    double up = sqrt(next * next * (sigma * sigma - next * next) / (sigma * sigma));
    double down = sqrt(next * next - up * up);
    Tensor *prev = op_add(x, op_mul_scalar(derivative, (down - sigma) / sigma));
    return op_add(prev, op_mul_scalar(noise, up));
}

Tensor *sampler_step(const Sampler *s, int step_index, Tensor *model_output, Tensor *x, Tensor *noise,
                     Tensor **pred_original_sample) {
    check_step_index(s, step_index, "sampler_step");
    diffusion_check_model_output(model_output, x, "sampler_step");
    if (sampler_step_needs_noise(s, step_index)) {
        if (!noise) tensor_fatal("sampler_step", "step %d of the %s sampler needs noise", step_index,
                                 sampler_kind_name(s->config.kind));
        if (!tensor_same_shape(noise, x)) tensor_fatal("sampler_step", "the noise must have the sample's shape");
    }
    switch (s->config.kind) {
    case SAMPLER_DDPM: return ddpm_step(s, step_index, model_output, x, noise, pred_original_sample);
    case SAMPLER_DDIM: return ddim_step(s, step_index, model_output, x, noise, pred_original_sample);
    case SAMPLER_EULER:
    case SAMPLER_EULER_ANCESTRAL: return euler_step(s, step_index, model_output, x, noise, pred_original_sample);
    }
    return NULL;
}

// ---------------------------------------------------------------- the loop

Tensor *sampler_sample(const Sampler *s, const GuidedModel *model, Tensor *initial_noise, Rng *rng) {
    bool grad_was_enabled = autograd_set_enabled(false);
    Tensor *x = tensor_keep(op_mul_scalar(initial_noise, s->init_noise_sigma));
    for (int i = 0; i < s->num_inference_steps; i++) {
        TensorScope scope = tensor_scope_begin();
        Tensor *out = guided_model_output(model, sampler_scale_model_input(s, i, x), s->timesteps[i]);
        Tensor *noise = sampler_step_needs_noise(s, i)
                            ? diffusion_randn(rng, x->dtype, tensor_shape(x), x->storage->device) : NULL;
        Tensor *next = tensor_keep(sampler_step(s, i, out, x, noise, NULL));
        tensor_scope_end(scope);
        tensor_release(x);
        x = next;
    }
    autograd_set_enabled(grad_was_enabled);
    // Hand the result to the caller's scope: a view that shares the storage.
    Tensor *result = tensor_view_raw(x, x->ndim, x->shape, x->stride, x->offset);
    tensor_release(x);
    return result;
}
