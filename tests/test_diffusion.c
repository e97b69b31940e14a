// Diffusion losses, classifier-free guidance, the sampling loop's use of the RNG, the device path and
// the user errors. The schedules and sampler steps against diffusers are in test_diffusion_schedules.c.
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "diffusion/loss.h"
#include "diffusion/sampler.h"
#include "engine/ops.h"
#include "tests/check.h"
#include "tests/expect_fatal.h"
#include "tests/gradcheck.h"

TEST_MAIN_COUNTERS;

// ---------------------------------------------------------------- a small differentiable model
// eps_hat = tanh(x_t W^T + c U^T + (t / 1000) e) for x_t [N, D], c [N, K], t [N]; W [D, D], U [D, K],
// e [1, D]. Records the calls and the last condition it saw.
typedef struct {
    Tensor *w, *u, *e;
    int calls;
    int64_t last_batch;
    Tensor *last_condition;
} ToyModel;

static Tensor *toy_forward(Tensor *x, Tensor *timesteps, Tensor *condition, void *context) {
    ToyModel *m = context;
    m->calls++;
    m->last_batch = x->shape[0];
    m->last_condition = condition;
    Tensor *t = op_reshape(op_mul_scalar(timesteps, 1e-3), SHAPE(-1, 1));
    Tensor *h = op_add(op_matmul(x, op_transpose(m->w, 0, 1)), op_mul(t, m->e));
    if (condition) h = op_add(h, op_matmul(condition, op_transpose(m->u, 0, 1)));
    return op_tanh(h);
}

enum { D = 5, K = 3, B = 2, PAIRS = 3 };

// Standard normal CPU tensor from rng.
static Tensor *randn(Rng *rng, DType dtype, Shape shape) { return diffusion_randn(rng, dtype, shape, device_cpu()); }

static ToyModel toy_model_make(DType dtype, Rng *rng) {
    ToyModel m = {0};
    m.w = op_mul_scalar(diffusion_randn(rng, dtype, SHAPE(D, D), device_cpu()), 0.5);
    m.u = op_mul_scalar(diffusion_randn(rng, dtype, SHAPE(D, K), device_cpu()), 0.5);
    m.e = diffusion_randn(rng, dtype, SHAPE(1, D), device_cpu());
    return m;
}

// ---------------------------------------------------------------- likelihood loss gradients
typedef struct {
    NoiseSchedule schedule;
    PredictionType prediction_type;
    ToyModel model;
    int64_t timesteps[PAIRS];
    Tensor *noise;  // [PAIRS, B, D]
} LikelihoodCase;

// inputs: x [B, D], c [B, K], W [D, D]
static Tensor *likelihood_fn(Tensor **in, void *context) {
    LikelihoodCase *lc = context;
    lc->model.w = in[2];
    return diffusion_likelihood_loss(&lc->schedule, lc->prediction_type, toy_forward, &lc->model, in[0], in[1],
                                     lc->timesteps, lc->noise, PAIRS);
}

static LikelihoodCase likelihood_case(PredictionType type, Rng *rng) {
    LikelihoodCase lc = {.prediction_type = type};
    lc.schedule = noise_schedule_make(BETA_SCALED_LINEAR, 1000, 0.00085, 0.012, "test");
    lc.model = toy_model_make(DTYPE_F64, rng);
    lc.timesteps[0] = 10, lc.timesteps[1] = 500, lc.timesteps[2] = 990;
    lc.noise = randn(rng, DTYPE_F64, SHAPE(PAIRS, B, D));
    return lc;
}

// The gradient reaches c, x and W (all requiring grad here) and matches central differences (f64;
// gradcheck's tolerances). Both the epsilon path and the v -> eps conversion.
TEST(likelihood_loss_gradients_match_finite_differences) {
    PredictionType types[2] = {PREDICTION_EPSILON, PREDICTION_V};
    for (int k = 0; k < 2; k++) {
        TensorScope scope = tensor_scope_begin();
        Rng rng = rng_make(11, (uint64_t)k);
        LikelihoodCase lc = likelihood_case(types[k], &rng);
        Tensor *in[3] = {gradcheck_input(SHAPE(B, D), 1, 0), gradcheck_input(SHAPE(B, K), 1, 0),
                         tensor_requires_grad(op_clone(lc.model.w))};
        CHECK_MSG(gradcheck(types[k] == PREDICTION_V ? "likelihood_loss(v)" : "likelihood_loss(eps)",
                            likelihood_fn, &lc, 3, in), "prediction type %d", k);
        noise_schedule_free(&lc.schedule);
        tensor_scope_end(scope);
    }
}

// The loss is the mean over the pairs of each pair's mean squared error (the pair-major batching of
// one model call is right), the model ran once on K * B samples, and with frozen weights only the
// condition receives a gradient, whose value matches a directional finite difference.
TEST(likelihood_loss_value_and_frozen_weights) {
    TensorScope scope = tensor_scope_begin();
    Rng rng = rng_make(12, 0);
    LikelihoodCase lc = likelihood_case(PREDICTION_EPSILON, &rng);
    Tensor *x = randn(&rng, DTYPE_F64, SHAPE(B, D));
    Tensor *c = tensor_requires_grad(randn(&rng, DTYPE_F64, SHAPE(B, K)));
    Tensor *loss = diffusion_likelihood_loss(&lc.schedule, PREDICTION_EPSILON, toy_forward, &lc.model, x, c,
                                             lc.timesteps, lc.noise, PAIRS);
    CHECK(lc.model.calls == 1 && lc.model.last_batch == PAIRS * B);
    double expected = 0;
    for (int k = 0; k < PAIRS; k++) {
        int64_t t[B] = {lc.timesteps[k], lc.timesteps[k]};
        Tensor *eps = op_select(lc.noise, 0, k);
        Tensor *x_t = diffusion_add_noise(&lc.schedule, x, eps, t);
        Tensor *out = toy_forward(x_t, tensor_full(DTYPE_F64, SHAPE(B), (double)t[0]), c, &lc.model);
        expected += tensor_item(op_mse_loss(out, eps, REDUCTION_MEAN)) / PAIRS;
    }
    CHECK_CLOSE(tensor_item(loss), expected, 0, 1e-13);
    tensor_backward(loss, NULL);
    CHECK(c->grad != NULL);
    CHECK(lc.model.w->grad == NULL && !lc.model.w->requires_grad);  // weights frozen: no gradient
    // d loss along a random direction v of c: (L(c + h v) - L(c - h v)) / 2h vs <grad, v>.
    Tensor *v = randn(&rng, DTYPE_F64, SHAPE(B, K));
    double h = 1e-6, along = tensor_item(op_sum_all(op_mul(c->grad, v)));
    bool was = autograd_set_enabled(false);
    double up = tensor_item(diffusion_likelihood_loss(&lc.schedule, PREDICTION_EPSILON, toy_forward, &lc.model, x,
                                                      op_add(c, op_mul_scalar(v, h)), lc.timesteps, lc.noise, PAIRS));
    double down = tensor_item(diffusion_likelihood_loss(&lc.schedule, PREDICTION_EPSILON, toy_forward, &lc.model, x,
                                                        op_sub(c, op_mul_scalar(v, h)), lc.timesteps, lc.noise, PAIRS));
    autograd_set_enabled(was);
    // Central difference error ~ h^2 * third derivative + rounding 1e-16 / h: ~1e-10 here.
    CHECK_CLOSE(along, (up - down) / (2 * h), 1e-8, 1e-6);
    noise_schedule_free(&lc.schedule);
    tensor_scope_end(scope);
}

// A perfect model of each prediction type (it knows x0 and computes the true eps, v or x0 from x_t
// and t) has zero likelihood loss: checks the v -> eps and x0 -> eps conversions' values, which the
// gradient check (consistent with any formula) cannot.
typedef struct {
    const NoiseSchedule *schedule;
    PredictionType type;
    Tensor *x0_repeated;  // [K * B, D]
} OracleModel;

static Tensor *oracle_forward(Tensor *x_t, Tensor *timesteps, Tensor *condition, void *context) {
    OracleModel *m = context;
    int64_t n = x_t->shape[0];
    double sa[PAIRS * B], sb[PAIRS * B];
    for (int64_t i = 0; i < n; i++) {
        double a = m->schedule->alphas_cumprod[(int64_t)tensor_get(timesteps, i)];
        sa[i] = sqrt(a), sb[i] = sqrt(1 - a);
    }
    Tensor *signal = diffusion_per_sample(x_t, sa), *noise_scale = diffusion_per_sample(x_t, sb);
    Tensor *eps = op_div(op_sub(x_t, op_mul(m->x0_repeated, signal)), noise_scale);
    if (m->type == PREDICTION_EPSILON) return eps;
    if (m->type == PREDICTION_SAMPLE) return m->x0_repeated;
    return op_sub(op_mul(eps, signal), op_mul(m->x0_repeated, noise_scale));
}

TEST(likelihood_loss_is_zero_for_a_perfect_model) {
    PredictionType types[3] = {PREDICTION_EPSILON, PREDICTION_V, PREDICTION_SAMPLE};
    for (int k = 0; k < 3; k++) {
        TensorScope scope = tensor_scope_begin();
        Rng rng = rng_make(13, (uint64_t)k);
        LikelihoodCase lc = likelihood_case(types[k], &rng);
        Tensor *x = randn(&rng, DTYPE_F64, SHAPE(B, D));
        Tensor *xs[PAIRS] = {x, x, x};
        OracleModel oracle = {&lc.schedule, types[k], op_concat(xs, PAIRS, 0)};
        double loss = tensor_item(diffusion_likelihood_loss(&lc.schedule, types[k], oracle_forward, &oracle, x, NULL,
                                                            lc.timesteps, lc.noise, PAIRS));
        // Rounding only: eps recovered through 1 / sqrt(1 - a) (<= 1 / sqrt(0.0085) at t = 10).
        CHECK_MSG(loss < 1e-24, "%s: loss %g", prediction_type_name(types[k]), loss);
        // A slightly wrong model is not zero (the check can fail).
        oracle.x0_repeated = op_add_scalar(oracle.x0_repeated, 0.01);
        loss = tensor_item(diffusion_likelihood_loss(&lc.schedule, types[k], oracle_forward, &oracle, x, NULL,
                                                     lc.timesteps, lc.noise, PAIRS));
        CHECK(loss > 1e-6);
        noise_schedule_free(&lc.schedule);
        tensor_scope_end(scope);
    }
}

// ---------------------------------------------------------------- training loss
static Tensor *recording_drop(Tensor *condition, Tensor *drop, void *context) {
    Tensor **seen = context;
    *seen = drop;
    return diffusion_drop_to_null_condition(condition, drop, seen[1]);
}

// The loss equals the same computation from draws made in the documented order (timesteps, noise,
// drop flags) from an identically seeded RNG, for epsilon and v targets, with dropped conditions
// replaced by the null condition and kept ones unchanged.
TEST(training_loss_reproduces_its_draws) {
    PredictionType types[2] = {PREDICTION_EPSILON, PREDICTION_V};
    for (int k = 0; k < 2; k++) {
        TensorScope scope = tensor_scope_begin();
        Rng setup = rng_make(21, (uint64_t)k);
        ToyModel model = toy_model_make(DTYPE_F64, &setup);
        enum { N = 64 };
        Tensor *x0 = randn(&setup, DTYPE_F64, SHAPE(N, D));
        Tensor *c = randn(&setup, DTYPE_F64, SHAPE(N, K));
        Tensor *null_c = tensor_full(DTYPE_F64, SHAPE(1, K), 7.0);
        NoiseSchedule schedule = noise_schedule_make(BETA_LINEAR, 1000, 1e-4, 0.02, "test");
        Tensor *seen[2] = {NULL, null_c};
        DiffusionTrainingOptions options = {.prediction_type = types[k], .condition_dropout = 0.5,
                                            .drop_condition = recording_drop, .drop_context = seen};
        Rng rng = rng_make(5, 1);
        Tensor *loss = diffusion_training_loss(&schedule, toy_forward, &model, x0, c, options, &rng);
        Tensor *used_condition = model.last_condition;

        Rng replay = rng_make(5, 1);
        int64_t t[N];
        diffusion_draw_timesteps(&replay, t, N, 1000);
        Tensor *noise = randn(&replay, DTYPE_F64, SHAPE(N, D));
        uint8_t drop[N];
        rng_fill_bernoulli_u8(&replay, drop, N, 0.5f);
        CHECK(replay.offset == rng.offset);
        int dropped = 0;
        bool conditions_ok = seen[0] != NULL;
        for (int i = 0; i < N && conditions_ok; i++) {
            conditions_ok = ((uint8_t *)tensor_data(seen[0]))[i] == drop[i];
            dropped += drop[i];
            for (int j = 0; j < K; j++)
                conditions_ok &= tensor_get(used_condition, i * K + j) == (drop[i] ? 7.0 : tensor_get(c, i * K + j));
        }
        CHECK(conditions_ok);
        CHECK(dropped > 0 && dropped < N);  // both branches exercised
        double t_values[N];
        for (int i = 0; i < N; i++) t_values[i] = (double)t[i];
        Tensor *out = toy_forward(diffusion_add_noise(&schedule, x0, noise, t),
                                  tensor_from_data(DTYPE_F64, SHAPE(N), t_values), used_condition, &model);
        Tensor *target = types[k] == PREDICTION_EPSILON ? noise : diffusion_target(&schedule, PREDICTION_V, x0, noise, t);
        CHECK_CLOSE(tensor_item(loss), tensor_item(op_mse_loss(out, target, REDUCTION_MEAN)), 0, 1e-14);
        if (types[k] == PREDICTION_V) {  // v = sqrt(a) eps - sqrt(1 - a) x0 at sample 0
            double a = schedule.alphas_cumprod[t[0]];
            CHECK_CLOSE(tensor_get(target, 0), sqrt(a) * tensor_get(noise, 0) - sqrt(1 - a) * tensor_get(x0, 0), 1e-15, 1e-13);
        }
        // Min-SNR-5 weighting of the same draws, computed here element by element.
        options.snr_gamma = 5.0;
        Rng weighted_rng = rng_make(5, 1);
        Tensor *weighted = diffusion_training_loss(&schedule, toy_forward, &model, x0, c, options, &weighted_rng);
        double expected = 0;
        for (int i = 0; i < N; i++) {
            double a = schedule.alphas_cumprod[t[i]], snr = a / (1 - a), w = fmin(snr, 5.0) / (types[k] == PREDICTION_V ? snr + 1 : snr);
            double mse = 0;
            for (int j = 0; j < D; j++) {
                double d = tensor_get(out, i * D + j) - tensor_get(target, i * D + j);
                mse += d * d / D;
            }
            expected += w * mse / N;
        }
        CHECK_CLOSE(tensor_item(weighted), expected, 0, 1e-12);
        CHECK(fabs(tensor_item(weighted) - tensor_item(loss)) > 1e-6 * fabs(tensor_item(loss)));  // the weights matter
        noise_schedule_free(&schedule);
        tensor_scope_end(scope);
    }
}

// Drop frequency over many samples is p (binomial: 4000 draws at p = 0.2, sd 0.0063; 5 sd), p = 0
// draws no flags, and timesteps cover [0, T).
TEST(training_loss_dropout_rate_and_timesteps) {
    TensorScope scope = tensor_scope_begin();
    Rng setup = rng_make(31, 0);
    ToyModel model = toy_model_make(DTYPE_F32, &setup);
    enum { N = 4000 };
    Tensor *x0 = randn(&setup, DTYPE_F32, SHAPE(N, D));
    Tensor *c = randn(&setup, DTYPE_F32, SHAPE(N, K));
    Tensor *seen[2] = {NULL, tensor_zeros(DTYPE_F32, SHAPE(1, K))};
    NoiseSchedule schedule = noise_schedule_make(BETA_LINEAR, 1000, 1e-4, 0.02, "test");
    DiffusionTrainingOptions options = {.condition_dropout = 0.2, .drop_condition = recording_drop, .drop_context = seen};
    Rng rng = rng_make(6, 0);
    diffusion_training_loss(&schedule, toy_forward, &model, x0, c, options, &rng);
    int dropped = 0;
    for (int i = 0; i < N; i++) dropped += ((uint8_t *)tensor_data(seen[0]))[i];
    CHECK_CLOSE(dropped / (double)N, 0.2, 5 * 0.0063, 0);
    // Without dropout: only timesteps (2 words each) and noise (1 word each) are drawn.
    options.condition_dropout = 0;
    Rng plain = rng_make(6, 0);
    diffusion_training_loss(&schedule, toy_forward, &model, x0, c, options, &plain);
    CHECK(plain.offset == (2 * N + 3) / 4 + (N * D + 3) / 4);
    int64_t t[N];
    Rng timesteps_rng = rng_make(7, 0);
    diffusion_draw_timesteps(&timesteps_rng, t, N, 1000);
    int64_t low = 1000, high = -1;
    for (int i = 0; i < N; i++) low = t[i] < low ? t[i] : low, high = t[i] > high ? t[i] : high;
    CHECK(low >= 0 && low < 5 && high <= 999 && high > 994);
    noise_schedule_free(&schedule);
    tensor_scope_end(scope);
}

// ---------------------------------------------------------------- guidance and the loop
// One model call on [2B]: null conditions first; the result is uncond + s (cond - uncond) of separate
// calls; a [1, K] null condition is expanded.
TEST(classifier_free_guidance_combines_one_batched_call) {
    TensorScope scope = tensor_scope_begin();
    Rng rng = rng_make(41, 0);
    ToyModel model = toy_model_make(DTYPE_F64, &rng);
    Tensor *x = randn(&rng, DTYPE_F64, SHAPE(B, D));
    Tensor *c = randn(&rng, DTYPE_F64, SHAPE(B, K));
    Tensor *null_c = randn(&rng, DTYPE_F64, SHAPE(1, K));
    GuidedModel guided = guided_model(toy_forward, &model, c);
    guided.null_condition = null_c;
    guided.guidance_scale = 7.5;
    Tensor *out = guided_model_output(&guided, x, 321);
    CHECK(model.calls == 1 && model.last_batch == 2 * B);
    CHECK(tensor_get(model.last_condition, 0) == tensor_get(null_c, 0));                  // uncond first
    CHECK(tensor_get(model.last_condition, B * K) == tensor_get(c, 0));                   // then cond
    Tensor *t = tensor_full(DTYPE_F64, SHAPE(B), 321);
    Tensor *cond = toy_forward(x, t, c, &model);
    Tensor *uncond = toy_forward(x, t, op_expand(null_c, SHAPE(B, K)), &model);
    Tensor *expected = op_add(uncond, op_mul_scalar(op_sub(cond, uncond), 7.5));
    double worst = tensor_item(op_max(op_flatten(op_abs(op_sub(out, expected)), 0, -1), 0, false));
    CHECK_CLOSE(worst, 0, 1e-14, 0);
    guided.guidance_scale = 1;  // no guidance: a single conditional call on [B]
    model.calls = 0;
    guided_model_output(&guided, x, 321);
    CHECK(model.calls == 1 && model.last_batch == B && model.last_condition == c);
    tensor_scope_end(scope);
}

// sampler_sample draws the step noise from the RNG in step order: a hand-written loop with the same
// draws gives the same result; another seed gives another one (Euler-ancestral and DDPM).
TEST(sampling_loop_uses_the_rng_in_order) {
    SamplerKind kinds[3] = {SAMPLER_EULER_ANCESTRAL, SAMPLER_DDPM, SAMPLER_DDIM};
    for (int k = 0; k < 3; k++) {
        TensorScope scope = tensor_scope_begin();
        Rng setup = rng_make(51, 0);
        ToyModel model = toy_model_make(DTYPE_F32, &setup);
        Tensor *c = randn(&setup, DTYPE_F32, SHAPE(B, K));
        Tensor *x_T = randn(&setup, DTYPE_F32, SHAPE(B, D));
        SamplerConfig config = sampler_config_defaults(kinds[k]);
        if (kinds[k] == SAMPLER_DDIM) sampler_config_set(&config, "eta", "0.7", "test");
        Sampler s = sampler_make(config, 8, "test");
        GuidedModel guided = guided_model(toy_forward, &model, c);
        guided.null_condition = tensor_zeros(DTYPE_F32, SHAPE(1, K));
        guided.guidance_scale = 3;
        Rng rng = rng_make(9, 2);
        Tensor *result = sampler_sample(&s, &guided, x_T, &rng);

        Rng replay = rng_make(9, 2);
        Tensor *x = op_mul_scalar(x_T, s.init_noise_sigma);
        for (int i = 0; i < s.num_inference_steps; i++) {
            Tensor *out = guided_model_output(&guided, sampler_scale_model_input(&s, i, x), s.timesteps[i]);
            Tensor *noise = sampler_step_needs_noise(&s, i) ? randn(&replay, DTYPE_F32, SHAPE(B, D)) : NULL;
            x = sampler_step(&s, i, out, x, noise, NULL);
        }
        CHECK(replay.offset == rng.offset && rng.offset > 0);
        bool same = true;
        for (int64_t i = 0; i < B * D; i++) same &= tensor_get(result, i) == tensor_get(x, i);
        CHECK_MSG(same, "%s", sampler_kind_name(kinds[k]));
        Rng other = rng_make(10, 2);
        Tensor *different = sampler_sample(&s, &guided, x_T, &other);
        CHECK_MSG(tensor_item(op_sum_all(op_abs(op_sub(different, result)))) > 1e-3, "%s: the seed changed nothing",
                  sampler_kind_name(kinds[k]));
        sampler_free(&s);
        tensor_scope_end(scope);
    }
}

// The steps are engine ops: on the emulated CUDA device they give the CPU's values (f32, same
// operations on both; 1e-6 for the device's own elementwise rounding).
TEST(steps_run_on_the_device) {
    const Device cuda = {DEVICE_CUDA, 0};
    SamplerKind kinds[4] = {SAMPLER_DDPM, SAMPLER_DDIM, SAMPLER_EULER, SAMPLER_EULER_ANCESTRAL};
    for (int k = 0; k < 4; k++) {
        TensorScope scope = tensor_scope_begin();
        Rng rng = rng_make(61, (uint64_t)k);
        Tensor *x = randn(&rng, DTYPE_F32, SHAPE(2, 3, 5));
        Tensor *out = randn(&rng, DTYPE_F32, SHAPE(2, 3, 5));
        Tensor *noise = randn(&rng, DTYPE_F32, SHAPE(2, 3, 5));
        SamplerConfig config = sampler_config_defaults(kinds[k]);
        config.prediction_type = PREDICTION_V;
        if (kinds[k] == SAMPLER_DDIM) config.eta = 1;
        Sampler s = sampler_make(config, 10, "test");
        Tensor *cpu = sampler_step(&s, 4, out, sampler_scale_model_input(&s, 4, x), noise, NULL);
        Tensor *dev = sampler_step(&s, 4, tensor_to_device_raw(out, cuda),
                                   sampler_scale_model_input(&s, 4, tensor_to_device_raw(x, cuda)),
                                   tensor_to_device_raw(noise, cuda), NULL);
        CHECK(tensor_is_cuda(dev));
        Tensor *back = tensor_to_device_raw(dev, device_cpu());
        for (int64_t i = 0; i < tensor_numel(cpu); i++) CHECK_CLOSE(tensor_get(back, i), tensor_get(cpu, i), 1e-6, 1e-6);
        int64_t t[2] = {3, 900};
        Tensor *noisy = diffusion_add_noise(&s.schedule, tensor_to_device_raw(x, cuda), tensor_to_device_raw(noise, cuda), t);
        CHECK(tensor_is_cuda(noisy));
        sampler_free(&s);
        tensor_scope_end(scope);
    }
}

// ---------------------------------------------------------------- user errors
typedef struct {
    const char *key, *value;
    SamplerKind kind;
    int steps;
} BadOption;

static void make_with_option(void *context) {
    const BadOption *o = context;
    SamplerConfig config = sampler_config_defaults(o->kind);
    if (o->key) sampler_config_set(&config, o->key, o->value, "scheduler_config.json");
    sampler_make(config, o->steps, "scheduler_config.json");
}

static void model_with_wrong_output(void *context) {
    Tensor *x = tensor_zeros(DTYPE_F32, SHAPE(2, 4));
    Sampler s = sampler_make(sampler_config_defaults(SAMPLER_DDIM), 10, "test");
    sampler_step(&s, 0, tensor_zeros(DTYPE_F32, SHAPE(2, 3)), x, NULL, NULL);
}

TEST(user_errors_are_one_line) {
    struct {
        BadOption option;
        const char *expected;
    } cases[] = {
        {{"beta_schedule", "cosine", SAMPLER_DDIM, 10}, "scheduler_config.json: unknown beta_schedule 'cosine'"},
        {{"prediction_type", "eps", SAMPLER_EULER, 10}, "unknown prediction_type 'eps'"},
        {{"timestep_spacing", "uniform", SAMPLER_DDPM, 10}, "timestep_spacing 'uniform': expected leading, trailing or linspace"},
        {{"clip_sample", "yes", SAMPLER_DDIM, 10}, "clip_sample 'yes': expected true or false"},
        {{"eta", "0.5", SAMPLER_EULER, 10}, "option eta does not apply to the euler sampler"},
        {{"steps_offset", "-1", SAMPLER_DDIM, 10}, "steps_offset '-1': expected an integer >= 0"},
        {{"variance_type", "learned", SAMPLER_DDPM, 10}, "variance_type 'learned'"},
        {{"thresholding", "true", SAMPLER_DDPM, 10}, "thresholding true is not implemented"},
        {{"num_inference_steps", "10", SAMPLER_DDIM, 10}, "unknown sampler option 'num_inference_steps'"},
        {{"beta_end", "1.5", SAMPLER_DDIM, 10}, "beta_end 1.5 must lie in (0, 1)"},
        {{NULL, NULL, SAMPLER_DDIM, 1001}, "num_inference_steps 1001 must lie in [1, 1000]"},
        {{NULL, NULL, SAMPLER_EULER, 0}, "num_inference_steps 0 must lie in [1, 1000]"},
        {{"steps_offset", "1", SAMPLER_DDIM, 1000}, "timestep 1000 of 1000 steps (spacing leading, steps_offset 1) falls outside [0, 999]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        CHECK_MSG(expect_fatal(make_with_option, &cases[i].option, cases[i].expected), "case %zu", i);
    CHECK(expect_fatal(model_with_wrong_output, NULL, "diffusion model output [2, 3] does not match the sample [2, 4]"));
}

int main(void) {
    // First, while the process has no OpenMP worker threads: LeakSanitizer in a forked child of a
    // multi-threaded parent cannot suspend the parent's (absent) threads and adds a warning line.
    RUN_TEST(user_errors_are_one_line);
    RUN_TEST(likelihood_loss_gradients_match_finite_differences);
    RUN_TEST(likelihood_loss_value_and_frozen_weights);
    RUN_TEST(likelihood_loss_is_zero_for_a_perfect_model);
    RUN_TEST(training_loss_reproduces_its_draws);
    RUN_TEST(training_loss_dropout_rate_and_timesteps);
    RUN_TEST(classifier_free_guidance_combines_one_batched_call);
    RUN_TEST(sampling_loop_uses_the_rng_in_order);
    RUN_TEST(steps_run_on_the_device);
    return test_summary();
}
