// Noise schedules and samplers against diffusers 0.27.2: tests/golden/schedulers.safetensors, written
// by tests/ref/gen_scheduler_goldens.py (its docstring describes the cases), plus diffusers' own DDIM
// full-loop test numbers, which need no golden file.
//
// Data-driven: every case of the file is checked; its "config" (diffusers' keys) is applied with
// sampler_config_set, so the option mapping is under test too. Drift guards: an unknown kind fails,
// and every tensor of the file must have been compared. TAILOR_GOLDEN_ERRORS=1 prints each
// comparison's largest error.
//
// Precision: Tailor computes betas, alphas_cumprod, sigmas and step coefficients in double;
// diffusers in float32 (torch.linspace, torch.cumprod and its step arithmetic in float32, the sigma
// interpolation in float64 from float32 alphas_cumprod). The tolerances below come from that.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "diffusion/loss.h"
#include "diffusion/sampler.h"
#include "engine/json.h"
#include "engine/ops.h"
#include "engine/safetensors.h"
#include "tests/check.h"

TEST_MAIN_COUNTERS;

typedef struct {
    double atol, rtol;
    const char *why;
} Tolerance;

// Betas: the same float32 values up to a few ulp (2^-23 relative each): torch's vectorised linspace
// forms chunk_base + k * step with two roundings, ours start + i * step with one (272 of SD's 1000
// differ by an ulp), and scaled_linear squares that value (2 ulp) and rounds again.
static const Tolerance BETAS = {0, 4e-7, "float32 ulps of torch's vectorised linspace (squared)"};
// alphas_cumprod: diffusers rounds the (double-accumulated) product to float32 (6e-8 relative), and
// the one-ulp beta differences (~1e-9 relative in alpha each) accumulate over up to 1000 factors.
static const Tolerance CUMPROD = {0, 1e-6, "f32 storage + 1000 x the beta ulp differences"};
// Euler sigmas sqrt((1 - a) / a): diffusers stores a in float32 (6e-8 relative) and forms 1 - a,
// amplifying that by a / (1 - a) (600 at t = 1 with SD's betas; t = 0 is exact on both sides, a
// single float32 factor), halved by the square root: 600 * 6e-8 / 2 = 1.8e-5.
static const Tolerance SIGMAS = {0, 2e-5, "f32 alpha_bar and the 1 - alpha_bar cancellation near t = 0"};
// One step: float32 elementwise arithmetic on O(1) values (a few roundings of 6e-8 each) with float32
// coefficients in diffusers (each off by up to the SIGMAS error above) vs double coefficients here; the
// predicted x_0 divides by sqrt(alpha_bar) (up to 1/sqrt(0.0047) = 15 at t = 999), amplifying both.
static const Tolerance STEP = {5e-6, 2e-5, "f32 step arithmetic, coefficient rounding x 1/sqrt(alpha_bar)"};
// Ten steps: the step error, compounded over the loop.
static const Tolerance LOOP = {2e-5, 5e-5, "ten f32 steps"};

static SafetensorsFile *golden;
static int tensors_compared;
static bool print_errors;

static const SafetensorsEntry *golden_entry(const char *case_name, const char *suffix) {
    char name[256];
    snprintf(name, sizeof name, "%s/%s", case_name, suffix);
    const SafetensorsEntry *e = safetensors_find(golden, name);
    if (!e) {
        printf("  %s: golden tensor %s missing\n", case_name, name);
        test_checks_failed_in_current++;
        return NULL;
    }
    tensors_compared++;
    return e;
}

static Tensor *golden_tensor(const char *case_name, const char *suffix) {
    const SafetensorsEntry *e = golden_entry(case_name, suffix);
    if (!e) return tensor_zeros(DTYPE_F32, SHAPE(1));
    Shape shape = {.ndim = e->ndim};
    for (int d = 0; d < e->ndim; d++) shape.dims[d] = e->shape[d];
    return tensor_from_data(e->dtype, shape, e->data);
}

// Compares n values (actual[i] from a function of i) with a golden tensor; reports the worst element.
static void compare_values(const char *case_name, const char *suffix, const double *actual, int64_t n,
                           Tolerance tol) {
    Tensor *expected = golden_tensor(case_name, suffix);
    if (tensor_numel(expected) != n) {
        printf("  %s/%s: %lld values, golden has %lld\n", case_name, suffix, (long long)n,
               (long long)tensor_numel(expected));
        test_checks_failed_in_current++;
        return;
    }
    double worst_excess = -1, worst_error = 0;
    int64_t worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = tensor_get(expected, i), error = fabs(actual[i] - e);
        double excess = isnan(error) ? INFINITY : error / (tol.atol + tol.rtol * fabs(e) + 1e-300);
        if (excess > worst_excess) worst_excess = excess, worst = i, worst_error = error;
    }
    if (print_errors)
        printf("  %-45s %-20s max error %.3g (%.2f of the tolerance: %s)\n", case_name, suffix, worst_error,
               worst_excess, tol.why);
    if (worst_excess > 1) {
        printf("  %s/%s: element %lld = %.9g, expected %.9g (atol %g, rtol %g: %s)\n", case_name, suffix,
               (long long)worst, actual[worst], tensor_get(expected, worst), tol.atol, tol.rtol, tol.why);
        test_checks_failed_in_current++;
    }
}

static void compare_tensor(const char *case_name, const char *suffix, Tensor *actual, Tolerance tol) {
    int64_t n = tensor_numel(actual);
    double *values = malloc((size_t)n * sizeof(double));
    for (int64_t i = 0; i < n; i++) values[i] = tensor_get(actual, i);
    compare_values(case_name, suffix, values, n, tol);
    free(values);
}

// The case's sampler configuration: defaults of its kind, then its diffusers keys one by one.
static SamplerConfig case_config(const char *case_name, const JsonValue *meta) {
    SamplerConfig config = sampler_config_defaults(sampler_kind_from_name(json_string(json_get(meta, "sampler")), case_name));
    const JsonValue *options = json_get(meta, "config");
    for (size_t i = 0; i < json_length(options); i++) {
        const JsonValue *v = json_value_at(options, i);
        char text[64];
        if (json_type(v) == JSON_STRING) snprintf(text, sizeof text, "%s", json_string(v));
        else if (json_type(v) == JSON_BOOL) snprintf(text, sizeof text, "%s", v->boolean ? "true" : "false");
        else snprintf(text, sizeof text, "%.17g", json_number(v));
        sampler_config_set(&config, json_key(options, i), text, case_name);
    }
    return config;
}

static int json_int(const JsonValue *meta, const char *key) {
    int64_t v = -1;
    json_int64(json_get(meta, key), &v);
    return (int)v;
}

static void check_schedule_case(const char *name, const JsonValue *meta) {
    SamplerConfig c = case_config(name, meta);
    NoiseSchedule s = noise_schedule_make(c.beta_schedule, c.num_train_timesteps, c.beta_start, c.beta_end, name);
    compare_values(name, "betas", s.betas, s.num_train_timesteps, BETAS);
    compare_values(name, "alphas_cumprod", s.alphas_cumprod, s.num_train_timesteps, CUMPROD);
    noise_schedule_free(&s);
}

static void check_timesteps_case(const char *name, const JsonValue *meta) {
    Sampler s = sampler_make(case_config(name, meta), json_int(meta, "steps"), name);
    int n = s.num_inference_steps;
    compare_values(name, "timesteps", s.timesteps, n, (Tolerance){0, 0, "exact"});
    if (s.sigmas) {
        compare_values(name, "sigmas", s.sigmas, n + 1, SIGMAS);
        compare_values(name, "init_noise_sigma", &s.init_noise_sigma, 1, SIGMAS);
    }
    sampler_free(&s);
}

static void check_step_case(const char *name, const JsonValue *meta) {
    Sampler s = sampler_make(case_config(name, meta), json_int(meta, "steps"), name);
    int i = json_int(meta, "step_index");
    Tensor *x = golden_tensor(name, "sample"), *out = golden_tensor(name, "model_output");
    Tensor *noise = golden_tensor(name, "noise");
    if (s.sigmas) compare_tensor(name, "scaled_input", sampler_scale_model_input(&s, i, x), STEP);
    Tensor *x0 = NULL;
    Tensor *prev = sampler_step(&s, i, out, x, noise, &x0);
    compare_tensor(name, "prev_sample", prev, STEP);
    compare_tensor(name, "pred_original_sample", x0, STEP);
    sampler_free(&s);
}

// out = tanh(x_in) * t / 1000 + 0.1 x_in, t [B] broadcast per sample (the script's toy_model).
static Tensor *toy_model(Tensor *x, Tensor *timesteps, Tensor *condition, void *context) {
    Tensor *t = op_reshape(op_mul_scalar(timesteps, 1e-3), SHAPE(x->shape[0], 1, 1, 1));
    return op_add(op_mul(op_tanh(x), t), op_mul_scalar(x, 0.1));
}

static void check_loop_case(const char *name, const JsonValue *meta) {
    Sampler s = sampler_make(case_config(name, meta), json_int(meta, "steps"), name);
    // The golden initial sample already carries init_noise_sigma; sampler_sample multiplies by it.
    Tensor *initial = op_mul_scalar(golden_tensor(name, "initial"), 1 / s.init_noise_sigma);
    GuidedModel model = guided_model(toy_model, NULL, NULL);
    Rng rng = rng_make(1, 0);
    compare_tensor(name, "final", sampler_sample(&s, &model, initial, &rng), LOOP);
    CHECK_MSG(rng.offset == 0, "%s: a deterministic loop drew noise", name);
    sampler_free(&s);
}

static void check_add_noise_case(const char *name, const JsonValue *meta) {
    SamplerConfig c = case_config(name, meta);
    NoiseSchedule s = noise_schedule_make(c.beta_schedule, c.num_train_timesteps, c.beta_start, c.beta_end, name);
    Tensor *x0 = golden_tensor(name, "x0"), *noise = golden_tensor(name, "noise");
    Tensor *t = golden_tensor(name, "timesteps");
    int64_t timesteps[4];
    for (int i = 0; i < 4; i++) timesteps[i] = (int64_t)tensor_get(t, i);
    compare_tensor(name, "noisy", diffusion_add_noise(&s, x0, noise, timesteps), STEP);
    compare_tensor(name, "velocity", diffusion_target(&s, PREDICTION_V, x0, noise, timesteps), STEP);
    noise_schedule_free(&s);
}

static const struct {
    const char *kind;
    void (*check)(const char *name, const JsonValue *meta);
    int minimum_cases;  // guards against a regenerated file that lost a family
} KINDS[] = {
    {"schedule", check_schedule_case, 3},   {"timesteps", check_timesteps_case, 48},
    {"step", check_step_case, 50},          {"loop", check_loop_case, 4},
    {"add_noise", check_add_noise_case, 2},
};

TEST(golden_cases) {
    int counts[5] = {0};
    for (int m = 0; m < safetensors_metadata_count(golden); m++) {
        const char *name = safetensors_metadata_key(golden, m);
        const char *text = safetensors_metadata_value(golden, m);
        char error[256];
        JsonValue *meta = json_parse(text, strlen(text), error, sizeof error);
        CHECK_MSG(meta, "%s: %s", name, error);
        if (!meta) continue;
        const char *kind = json_string(json_get(meta, "kind"));
        int k = 0;
        while (k < 5 && !(kind && strcmp(kind, KINDS[k].kind) == 0)) k++;
        CHECK_MSG(k < 5, "%s: unknown kind %s", name, kind ? kind : "(none)");
        if (k < 5) {
            int failed_before = test_checks_failed_in_current;
            TensorScope scope = tensor_scope_begin();
            KINDS[k].check(name, meta);
            tensor_scope_end(scope);
            counts[k]++;
            if (test_checks_failed_in_current > failed_before) printf("  case %s failed\n", name);
        }
        json_free(meta);
    }
    for (int k = 0; k < 5; k++)
        CHECK_MSG(counts[k] >= KINDS[k].minimum_cases, "%d %s cases, expected at least %d", counts[k], KINDS[k].kind,
                  KINDS[k].minimum_cases);
    CHECK_MSG(tensors_compared == safetensors_count(golden), "compared %d of the file's %d tensors", tensors_compared,
              safetensors_count(golden));
}

// diffusers' tests/schedulers/test_scheduler_ddim.py, test_full_loop_no_noise: linear betas
// 1e-4 .. 0.02, clip_sample on, 10 steps, eta 0, model = sample * t / (t + 1), on the deterministic
// sample arange(4 * 3 * 8 * 8) / 768 laid out as [3, 8, 8, 4] and permuted to [4, 3, 8, 8]. diffusers
// asserts sum |x| = 172.0067 and mean |x| = 0.223967 (within 1e-2 / 1e-3); here to the digits given:
// half a unit in the last place (diffusers' own f32 result is 172.0067139, 0.223967075).
static Tensor *ddim_test_model(Tensor *x, Tensor *timesteps, Tensor *condition, void *context) {
    Tensor *t = op_reshape(timesteps, SHAPE(x->shape[0], 1, 1, 1));
    return op_mul(x, op_div(t, op_add_scalar(t, 1)));
}

TEST(ddim_full_loop_matches_diffusers_test) {
    SamplerConfig config = sampler_config_defaults(SAMPLER_DDIM);  // linear 1e-4..0.02, clip on, leading
    Sampler s = sampler_make(config, 10, "test");
    Tensor *arange = op_mul_scalar(tensor_arange(DTYPE_F32, 768), 1.0 / 768);
    int dims[4] = {3, 0, 1, 2};
    Tensor *sample = op_contiguous(op_permute(op_reshape(arange, SHAPE(3, 8, 8, 4)), dims));
    GuidedModel model = guided_model(ddim_test_model, NULL, NULL);
    Rng rng = rng_make(0, 0);
    Tensor *x = sampler_sample(&s, &model, sample, &rng);
    double sum = tensor_item(op_sum_all(op_abs(x))), mean = tensor_item(op_mean_all(op_abs(x)));
    printf("  DDIM full loop: sum |x| = %.7f, mean |x| = %.9f\n", sum, mean);
    CHECK_CLOSE(sum, 172.0067, 5e-5, 0);
    CHECK_CLOSE(mean, 0.223967, 5e-7, 0);
    CHECK(s.timesteps[0] == 900 && s.timesteps[9] == 0);
    sampler_free(&s);
}

int main(void) {
    const char *root = getenv("TAILOR_ROOT");
    char path[1024], error[512];
    snprintf(path, sizeof path, "%s/tests/golden/schedulers.safetensors", root ? root : ".");
    if (safetensors_open(path, &golden, error, sizeof error) != 0) {
        printf("%s\n", error);
        return 1;
    }
    print_errors = getenv("TAILOR_GOLDEN_ERRORS") != NULL;
    RUN_TEST(golden_cases);
    RUN_TEST(ddim_full_loop_matches_diffusers_test);
    safetensors_close(golden);
    return test_summary();
}
