// Diffusion training and likelihood losses (see loss.h).
#include "diffusion/loss.h"

#include <math.h>
#include <stdlib.h>

#include "engine/ops.h"

static double *alloc_doubles(int64_t n, const char *where) {
    double *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(double));
    if (!p) tensor_fatal(where, "out of memory");
    return p;
}

// sqrt(a_t) and sqrt(1 - a_t) per sample, as [B, 1, ...] tensors like x.
static void noise_coefficients(const NoiseSchedule *schedule, const Tensor *x, const int64_t *timesteps,
                               const char *where, Tensor **signal, Tensor **noise) {
    int64_t n = x->shape[0];
    double *sa = alloc_doubles(n, where), *sb = alloc_doubles(n, where);
    for (int64_t i = 0; i < n; i++) {
        double a = noise_schedule_alpha_bar(schedule, timesteps[i], where);
        sa[i] = sqrt(a);
        sb[i] = sqrt(1 - a);
    }
    *signal = diffusion_per_sample(x, sa);
    *noise = diffusion_per_sample(x, sb);
    free(sa);
    free(sb);
}

static void check_same_shape(const Tensor *a, const Tensor *b, const char *what, const char *where) {
    char sa[128], sb[128];
    if (!tensor_same_shape(a, b))
        tensor_fatal(where, "%s %s does not match the sample %s", what, tensor_shape_string(a, sa, sizeof sa),
                     tensor_shape_string(b, sb, sizeof sb));
}

Tensor *diffusion_add_noise(const NoiseSchedule *schedule, Tensor *x0, Tensor *noise, const int64_t *timesteps) {
    check_same_shape(noise, x0, "noise", "diffusion_add_noise");
    Tensor *signal_scale, *noise_scale;
    noise_coefficients(schedule, x0, timesteps, "diffusion_add_noise", &signal_scale, &noise_scale);
    return op_add(op_mul(x0, signal_scale), op_mul(noise, noise_scale));
}

Tensor *diffusion_target(const NoiseSchedule *schedule, PredictionType type, Tensor *x0, Tensor *noise,
                         const int64_t *timesteps) {
    check_same_shape(noise, x0, "noise", "diffusion_target");
    if (type == PREDICTION_EPSILON) return noise;
    if (type == PREDICTION_SAMPLE) return x0;
    Tensor *signal_scale, *noise_scale;
    noise_coefficients(schedule, x0, timesteps, "diffusion_target", &signal_scale, &noise_scale);
    return op_sub(op_mul(noise, signal_scale), op_mul(x0, noise_scale));
}

Tensor *diffusion_drop_to_null_condition(Tensor *condition, Tensor *drop, void *null_condition) {
    Shape mask_shape = {.ndim = condition->ndim};
    for (int d = 0; d < condition->ndim; d++) mask_shape.dims[d] = d == 0 ? condition->shape[0] : 1;
    Tensor *mask = op_reshape(drop, mask_shape);
    if (tensor_is_cuda(condition)) mask = tensor_to_device_raw(mask, condition->storage->device);
    return op_where(mask, (Tensor *)null_condition, condition);
}

static Tensor *timesteps_as_values(const Tensor *like, const int64_t *timesteps, int64_t n, const char *where) {
    double *values = alloc_doubles(n, where);
    for (int64_t i = 0; i < n; i++) values[i] = (double)timesteps[i];
    Tensor *t = diffusion_values_tensor(like, values, n);
    free(values);
    return t;
}

Tensor *diffusion_training_loss(const NoiseSchedule *schedule, DiffusionModelFn model, void *model_context,
                                Tensor *x0, Tensor *condition, DiffusionTrainingOptions options, Rng *rng) {
    const char *where = "diffusion_training_loss";
    double p = options.condition_dropout;
    if (!(p >= 0 && p <= 1)) tensor_fatal(where, "condition_dropout %g outside [0, 1]", p);
    if (p > 0 && !options.drop_condition) tensor_fatal(where, "condition_dropout %g needs a drop_condition function", p);
    if (p > 0 && !condition) tensor_fatal(where, "condition_dropout %g without a condition", p);
    int64_t batch = x0->shape[0];
    int64_t *timesteps = malloc((size_t)batch * sizeof(int64_t));
    if (!timesteps) tensor_fatal(where, "out of memory");
    diffusion_draw_timesteps(rng, timesteps, batch, schedule->num_train_timesteps);
    Tensor *noise = diffusion_randn(rng, x0->dtype, tensor_shape(x0), x0->storage->device);
    if (p > 0) {
        Tensor *drop = tensor_empty_on(DTYPE_U8, SHAPE(batch), device_cpu());
        rng_fill_bernoulli_u8(rng, (uint8_t *)tensor_data(drop), batch, (float)p);
        condition = options.drop_condition(condition, drop, options.drop_context);
    }
    Tensor *x_t = diffusion_add_noise(schedule, x0, noise, timesteps);
    Tensor *output = model(x_t, timesteps_as_values(x0, timesteps, batch, where), condition, model_context);
    diffusion_check_model_output(output, x0, where);
    Tensor *target = diffusion_target(schedule, options.prediction_type, x0, noise, timesteps);
    if (!(options.snr_gamma > 0)) {
        free(timesteps);
        return op_mse_loss(output, target, REDUCTION_MEAN);
    }
    // Min-SNR-gamma: per-sample mean squared error times its weight, then the batch mean.
    double *weights = malloc((size_t)batch * sizeof(double));
    if (!weights) tensor_fatal(where, "out of memory");
    for (int64_t i = 0; i < batch; i++) {
        double a = noise_schedule_alpha_bar(schedule, timesteps[i], where), snr = a / (1.0 - a);
        double clipped = snr < options.snr_gamma ? snr : options.snr_gamma;
        weights[i] = options.prediction_type == PREDICTION_EPSILON ? clipped / snr
                   : options.prediction_type == PREDICTION_V      ? clipped / (snr + 1.0)
                                                                  : clipped;
    }
    Tensor *per_element = op_mse_loss(output, target, REDUCTION_NONE);
    Tensor *per_sample = op_reshape(per_element, SHAPE(batch, tensor_numel(per_element) / batch));
    const int inner[1] = {1};
    Tensor *loss = op_mean_all(op_mul(op_mean(per_sample, inner, 1, false), diffusion_values_tensor(per_element, weights, batch)));
    free(weights);
    free(timesteps);
    return loss;
}

// [B, ...] -> [K * B, ...]: K copies, pair-major (differentiable).
static Tensor *repeat_batch(Tensor *x, int n_pairs) {
    Shape expanded = {.ndim = x->ndim + 1}, flat = tensor_shape(x);
    expanded.dims[0] = n_pairs;
    for (int d = 0; d < x->ndim; d++) expanded.dims[d + 1] = x->shape[d];
    flat.dims[0] *= n_pairs;
    return op_reshape(op_expand(op_unsqueeze(x, 0), expanded), flat);
}

Tensor *diffusion_likelihood_loss(const NoiseSchedule *schedule, PredictionType prediction_type,
                                  DiffusionModelFn model, void *model_context, Tensor *x0, Tensor *condition,
                                  const int64_t *timesteps, Tensor *noise, int n_pairs) {
    const char *where = "diffusion_likelihood_loss";
    if (n_pairs < 1) tensor_fatal(where, "needs at least one (t, noise) pair, got %d", n_pairs);
    char a[128], b[128];
    bool noise_ok = noise->ndim == x0->ndim + 1 && noise->shape[0] == n_pairs;
    for (int d = 0; noise_ok && d < x0->ndim; d++) noise_ok = noise->shape[d + 1] == x0->shape[d];
    if (!noise_ok)
        tensor_fatal(where, "noise %s must be [%d (pairs), %s]", tensor_shape_string(noise, a, sizeof a), n_pairs,
                     tensor_shape_string(x0, b, sizeof b) + 1);
    int64_t batch = x0->shape[0], n = (int64_t)n_pairs * batch;
    if (condition && (condition->ndim < 1 || condition->shape[0] != batch))
        tensor_fatal(where, "condition %s must have the sample's batch size %lld first",
                     tensor_shape_string(condition, a, sizeof a), (long long)batch);
    int64_t *pair_timesteps = malloc((size_t)n * sizeof(int64_t));
    if (!pair_timesteps) tensor_fatal(where, "out of memory");
    for (int64_t i = 0; i < n; i++) pair_timesteps[i] = timesteps[i / batch];
    Tensor *x_rep = repeat_batch(x0, n_pairs);
    Tensor *eps = op_reshape(noise, tensor_shape(x_rep));
    Tensor *signal_scale, *noise_scale;
    noise_coefficients(schedule, x_rep, pair_timesteps, where, &signal_scale, &noise_scale);
    Tensor *x_t = op_add(op_mul(x_rep, signal_scale), op_mul(eps, noise_scale));
    Tensor *c_rep = condition ? repeat_batch(condition, n_pairs) : NULL;
    Tensor *output = model(x_t, timesteps_as_values(x0, pair_timesteps, n, where), c_rep, model_context);
    free(pair_timesteps);
    diffusion_check_model_output(output, x_t, where);
    Tensor *eps_hat = output;
    if (prediction_type == PREDICTION_V)  // eps = sqrt(a) v + sqrt(1 - a) x_t
        eps_hat = op_add(op_mul(output, signal_scale), op_mul(x_t, noise_scale));
    else if (prediction_type == PREDICTION_SAMPLE)  // eps = (x_t - sqrt(a) x0_hat) / sqrt(1 - a)
        eps_hat = op_div(op_sub(x_t, op_mul(output, signal_scale)), noise_scale);
    return op_mse_loss(eps_hat, eps, REDUCTION_MEAN);
}
