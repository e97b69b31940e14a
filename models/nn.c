#include "models/nn.h"

#include <stdarg.h>

#include "engine/autograd.h"
#include "engine/dist.h"
#include "engine/dist_ops.h"

#include <math.h>
#include <stdio.h>

void init_uniform(Tensor *t, Rng *rng, double low, double high) {
    rng_fill_uniform_f32(rng, tensor_f32(t), tensor_numel(t), (float)low, (float)high);
}

void init_normal(Tensor *t, Rng *rng, double mean, double std) {
    rng_fill_normal_f32(rng, tensor_f32(t), tensor_numel(t), (float)mean, (float)std);
}

void init_trunc_normal(Tensor *t, Rng *rng, double mean, double std, double low, double high) {
    if (!(low < mean + 4 * std && high > mean - 4 * std)) tensor_fatal("init_trunc_normal", "bounds [%g, %g] too far from N(%g, %g)", low, high, mean, std);
    int64_t n = tensor_numel(t);
    float *data = tensor_f32(t);
    rng_fill_normal_f32(rng, data, n, (float)mean, (float)std);
    // Redraw the (rare) values outside the bounds, in index order, from the same stream.
    for (int64_t i = 0; i < n; i++)
        while (!(data[i] >= low && data[i] <= high)) data[i] = (float)mean + (float)std * rng_normal(rng);
}

static void fans(const Tensor *t, double *fan_in, double *fan_out) {
    if (t->ndim < 2) tensor_fatal("init", "fan in/out needs a weight with at least 2 dims");
    double receptive = 1;
    for (int d = 2; d < t->ndim; d++) receptive *= (double)t->shape[d];
    *fan_in = (double)t->shape[1] * receptive;
    *fan_out = (double)t->shape[0] * receptive;
}

void init_kaiming_normal_fan_out(Tensor *t, Rng *rng) {
    double fan_in, fan_out;
    fans(t, &fan_in, &fan_out);
    init_normal(t, rng, 0.0, sqrt(2.0) / sqrt(fan_out));
}

void init_xavier_normal(Tensor *t, Rng *rng) {
    double fan_in, fan_out;
    fans(t, &fan_in, &fan_out);
    init_normal(t, rng, 0.0, sqrt(2.0 / (fan_in + fan_out)));
}

static const char *joined(char *buf, size_t size, const char *prefix, const char *leaf) {
    snprintf(buf, size, "%s%s%s", prefix, prefix[0] ? "." : "", leaf);
    return buf;
}

Linear linear_create(ParamStore *store, const char *prefix, int64_t in, int64_t out, bool bias, Rng *rng) {
    char name[128];
    Linear layer = {0};
    double bound = 1.0 / sqrt((double)in);
    layer.weight = params_add(store, joined(name, sizeof name, prefix, "weight"), SHAPE(out, in), PARAM_GROUP_DECAY);
    if (rng) init_uniform(layer.weight, rng, -bound, bound);
    if (bias) {
        layer.bias = params_add(store, joined(name, sizeof name, prefix, "bias"), SHAPE(out), PARAM_GROUP_NO_DECAY);
        if (rng) init_uniform(layer.bias, rng, -bound, bound);
    }
    return layer;
}

Tensor *linear_forward(const Linear *layer, Tensor *x) { return op_linear(x, layer->weight, layer->bias); }

Tensor *linear_stacked_forward(const Linear *layers, int n, Tensor *x) {
    Tensor *weights[8], *biases[8];
    if (n < 1 || n > 8) tensor_fatal("linear_stacked", "%d layers, 1-8 supported", n);
    for (int i = 0; i < n; i++) {
        if ((layers[i].bias != NULL) != (layers[0].bias != NULL))
            tensor_fatal("linear_stacked", "the stacked layers must all have a bias or none");
        weights[i] = layers[i].weight;
        biases[i] = layers[i].bias;
    }
    return op_linear(x, op_concat(weights, n, 0), layers[0].bias ? op_concat(biases, n, 0) : NULL);
}

Conv2d conv2d_create(ParamStore *store, const char *prefix, int64_t in, int64_t out, int kernel, Conv2dParams params,
                     bool bias, Rng *rng) {
    char name[128];
    Conv2d layer = {.params = params};
    int64_t fan_in = in / params.groups * kernel * kernel;
    double bound = 1.0 / sqrt((double)fan_in);
    layer.weight = params_add(store, joined(name, sizeof name, prefix, "weight"), SHAPE(out, in / params.groups, kernel, kernel),
                              PARAM_GROUP_DECAY);
    if (rng) init_uniform(layer.weight, rng, -bound, bound);
    if (bias) {
        layer.bias = params_add(store, joined(name, sizeof name, prefix, "bias"), SHAPE(out), PARAM_GROUP_NO_DECAY);
        if (rng) init_uniform(layer.bias, rng, -bound, bound);
    }
    return layer;
}

Tensor *conv2d_forward(const Conv2d *layer, Tensor *x) { return op_conv2d(x, layer->weight, layer->bias, layer->params); }

BatchNorm batchnorm_create(ParamStore *store, const char *prefix, int64_t channels) {
    return batchnorm_create_with(store, prefix, channels, 0.1, 1e-5);
}

BatchNorm batchnorm_create_with(ParamStore *store, const char *prefix, int64_t channels, double momentum, double eps) {
    char name[128];
    BatchNorm layer = {.momentum = momentum, .eps = eps};
    layer.weight = params_add(store, joined(name, sizeof name, prefix, "weight"), SHAPE(channels), PARAM_GROUP_NO_DECAY);
    tensor_fill_raw(layer.weight, 1.0);
    layer.bias = params_add(store, joined(name, sizeof name, prefix, "bias"), SHAPE(channels), PARAM_GROUP_NO_DECAY);
    layer.running_mean = params_add_buffer(store, joined(name, sizeof name, prefix, "running_mean"), SHAPE(channels));
    layer.running_var = params_add_buffer(store, joined(name, sizeof name, prefix, "running_var"), SHAPE(channels));
    tensor_fill_raw(layer.running_var, 1.0);
    // torchvision checkpoints carry this counter (i64 in PyTorch); we keep it as f32 and count.
    layer.num_batches_tracked = params_add_buffer(store, joined(name, sizeof name, prefix, "num_batches_tracked"), SHAPE());
    return layer;
}

// Training-mode BatchNorm over the global batch of all ranks, composed from ops with two
// differentiable all-reduces (the mean, then the centred sum of squares: the two-pass form, as
// precise as the single-process op). Ranks hold equal shards (the loader's), so the element count
// is the local one times the world size.
static Tensor *synchronized_batchnorm(BatchNorm *layer, Tensor *x) {
    int ndim = tensor_shape(x).ndim;
    int dims[3] = {0, 2, 3};
    int n_dims = ndim == 4 ? 3 : 1;
    int64_t channels = tensor_shape(x).dims[1];
    double count = (double)(shape_numel(tensor_shape(x)) / channels) * dist_world_size();
    Shape per_channel = ndim == 4 ? SHAPE(1, channels, 1, 1) : SHAPE(1, channels);
    Tensor *mean = op_mul_scalar(op_dist_all_reduce_sum(op_sum(x, dims, n_dims, false), "batch-norm sums"), 1.0 / count);
    Tensor *centred = op_sub(x, op_reshape(mean, per_channel));
    Tensor *var = op_mul_scalar(
        op_dist_all_reduce_sum(op_sum(op_mul(centred, centred), dims, n_dims, false), "batch-norm squares"), 1.0 / count);
    Tensor *scale = op_mul(layer->weight, op_rsqrt(op_add_scalar(var, layer->eps)));
    Tensor *y = op_add(op_mul(centred, op_reshape(scale, per_channel)), op_reshape(layer->bias, per_channel));
    // Running statistics as torch.nn.SyncBatchNorm / batch_norm: the unbiased variance. Updated on
    // host copies (one copy each way on a device, not one per channel), in f64 as on the CPU.
    bool was = autograd_set_enabled(false);
    Tensor *m = tensor_to_device_raw(tensor_detach(mean), device_cpu());
    Tensor *v = tensor_to_device_raw(tensor_detach(var), device_cpu());
    Tensor *running_mean = tensor_to_device_raw(layer->running_mean, device_cpu());
    Tensor *running_var = tensor_to_device_raw(layer->running_var, device_cpu());
    for (int64_t c = 0; c < channels; c++) {
        double rm = tensor_get(running_mean, c), rv = tensor_get(running_var, c);
        tensor_set(running_mean, c, (1 - layer->momentum) * rm + layer->momentum * tensor_get(m, c));
        tensor_set(running_var, c,
                   (1 - layer->momentum) * rv + layer->momentum * tensor_get(v, c) * count / (count > 1 ? count - 1 : 1));
    }
    tensor_copy_raw(layer->running_mean, running_mean);
    tensor_copy_raw(layer->running_var, running_var);
    autograd_set_enabled(was);
    return y;
}

Tensor *batchnorm_forward(BatchNorm *layer, Tensor *x, bool training) {
    if (training) tensor_set(layer->num_batches_tracked, 0, tensor_get(layer->num_batches_tracked, 0) + 1);
    if (training && layer->synchronized && dist_world_size() > 1) return synchronized_batchnorm(layer, x);
    return op_batch_norm(x, layer->weight, layer->bias, layer->running_mean, layer->running_var, training, layer->momentum,
                         layer->eps);
}

Tensor *batchnorm_relu_forward(BatchNorm *layer, Tensor *x, bool training) {
    if (training && layer->synchronized && dist_world_size() > 1) return op_relu(batchnorm_forward(layer, x, training));
    if (training) tensor_set(layer->num_batches_tracked, 0, tensor_get(layer->num_batches_tracked, 0) + 1);
    return op_batch_norm_relu(x, layer->weight, layer->bias, layer->running_mean, layer->running_var, training,
                              layer->momentum, layer->eps);
}

LayerNorm layernorm_create(ParamStore *store, const char *prefix, int64_t features, double eps) {
    char name[128];
    LayerNorm layer = {.eps = eps};
    layer.weight = params_add(store, joined(name, sizeof name, prefix, "weight"), SHAPE(features), PARAM_GROUP_NO_DECAY);
    tensor_fill_raw(layer.weight, 1.0);
    layer.bias = params_add(store, joined(name, sizeof name, prefix, "bias"), SHAPE(features), PARAM_GROUP_NO_DECAY);
    return layer;
}

Tensor *layernorm_forward(const LayerNorm *layer, Tensor *x) { return op_layer_norm(x, layer->weight, layer->bias, layer->eps); }

GroupNorm groupnorm_create(ParamStore *store, const char *prefix, int groups, int64_t channels, double eps) {
    char name[128];
    GroupNorm layer = {.groups = groups, .eps = eps};
    layer.weight = params_add(store, joined(name, sizeof name, prefix, "weight"), SHAPE(channels), PARAM_GROUP_NO_DECAY);
    tensor_fill_raw(layer.weight, 1.0);
    layer.bias = params_add(store, joined(name, sizeof name, prefix, "bias"), SHAPE(channels), PARAM_GROUP_NO_DECAY);
    return layer;
}

Tensor *groupnorm_forward(const GroupNorm *layer, Tensor *x) {
    return op_group_norm(x, layer->groups, layer->weight, layer->bias, layer->eps);
}

const char *param_name(char *buffer, size_t size, const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    vsnprintf(buffer, size, fmt, args);
    va_end(args);
    return buffer;
}
