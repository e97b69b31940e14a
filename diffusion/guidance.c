// Classifier-free guidance around a model callback (see guidance.h).
#include "diffusion/guidance.h"

#include <stdlib.h>

#include "diffusion/noise_schedule.h"
#include "engine/ops.h"

GuidedModel guided_model(DiffusionModelFn forward, void *context, Tensor *condition) {
    return (GuidedModel){.forward = forward, .context = context, .condition = condition, .guidance_scale = 1};
}

bool guided_model_uses_guidance(const GuidedModel *model) {
    return model->null_condition && model->condition && model->guidance_scale != 1;
}

void diffusion_check_model_output(const Tensor *output, const Tensor *x, const char *where) {
    char a[128], b[128];
    if (!output) tensor_fatal(where, "the diffusion model returned no tensor");
    if (!tensor_same_shape(output, x))
        tensor_fatal(where, "diffusion model output %s does not match the sample %s",
                     tensor_shape_string(output, a, sizeof a), tensor_shape_string(x, b, sizeof b));
}

// [n] filled with the timestep, in x's dtype on x's device.
static Tensor *timestep_tensor(const Tensor *x, int64_t n, double timestep) {
    double *values = malloc((size_t)n * sizeof(double));
    if (!values) tensor_fatal("guided_model_output", "out of memory");
    for (int64_t i = 0; i < n; i++) values[i] = timestep;
    Tensor *t = diffusion_values_tensor(x, values, n);
    free(values);
    return t;
}

static void check_condition_batch(const Tensor *condition, int64_t batch, const char *what) {
    char s[128];
    if (condition->ndim < 1 || condition->shape[0] != batch)
        tensor_fatal("guided_model_output", "%s %s must have the sample's batch size %lld first", what,
                     tensor_shape_string(condition, s, sizeof s), (long long)batch);
}

Tensor *guided_model_output(const GuidedModel *model, Tensor *x, double timestep) {
    int64_t batch = x->shape[0];
    if (model->condition) check_condition_batch(model->condition, batch, "condition");
    if (!guided_model_uses_guidance(model)) {
        Tensor *out = model->forward(x, timestep_tensor(x, batch, timestep), model->condition, model->context);
        diffusion_check_model_output(out, x, "guided_model_output");
        return out;
    }
    Tensor *null_condition = model->null_condition;
    if (null_condition->ndim >= 1 && null_condition->shape[0] == 1 && batch > 1) {
        Shape shape = tensor_shape(model->condition);
        null_condition = op_expand(null_condition, shape);
    }
    check_condition_batch(null_condition, batch, "null_condition");
    Tensor *both_x[2] = {x, x};
    Tensor *both_conditions[2] = {null_condition, model->condition};
    Tensor *x2 = op_concat(both_x, 2, 0);
    Tensor *out = model->forward(x2, timestep_tensor(x, 2 * batch, timestep), op_concat(both_conditions, 2, 0), model->context);
    diffusion_check_model_output(out, x2, "guided_model_output");
    Tensor *uncond = op_narrow(out, 0, 0, batch), *cond = op_narrow(out, 0, batch, batch);
    return op_add(uncond, op_mul_scalar(op_sub(cond, uncond), model->guidance_scale));
}
