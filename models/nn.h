// Shared building blocks: layers that register their weights in a ParamStore under
// PyTorch-style names ("<prefix>.weight", "<prefix>.bias", "<prefix>.running_mean", ...) and
// apply the engine's ops. Initialisation follows PyTorch's defaults for each layer.
#pragma once
#include "engine/ops.h"
#include "engine/params.h"
#include "engine/rng.h"

// Optimizer groups used by the layers: weights decay, biases and norm parameters do not.
enum { PARAM_GROUP_DECAY = 0, PARAM_GROUP_NO_DECAY = 1 };

typedef struct {
    Tensor *weight, *bias;  // [out, in], [out] (bias may be NULL)
} Linear;

typedef struct {
    Tensor *weight, *bias;  // [out, in / groups, k, k], [out] or NULL
    Conv2dParams params;
} Conv2d;

typedef struct {
    Tensor *weight, *bias, *running_mean, *running_var, *num_batches_tracked;
    double momentum, eps;
} BatchNorm;

typedef struct {
    Tensor *weight, *bias;
    double eps;
} LayerNorm;

// nn.Linear: weight and bias ~ U(-1/sqrt(in), 1/sqrt(in)) (kaiming_uniform with a = sqrt(5)).
Linear linear_create(ParamStore *store, const char *prefix, int64_t in, int64_t out, bool bias, Rng *rng);
Tensor *linear_forward(const Linear *layer, Tensor *x);

// nn.Conv2d: weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = in/groups * k * k.
Conv2d conv2d_create(ParamStore *store, const char *prefix, int64_t in, int64_t out, int kernel, Conv2dParams params,
                     bool bias, Rng *rng);
Tensor *conv2d_forward(const Conv2d *layer, Tensor *x);

// nn.BatchNorm1d/2d: weight 1, bias 0, running mean 0 / var 1, momentum 0.1, eps 1e-5.
BatchNorm batchnorm_create(ParamStore *store, const char *prefix, int64_t channels);
Tensor *batchnorm_forward(BatchNorm *layer, Tensor *x, bool training);

LayerNorm layernorm_create(ParamStore *store, const char *prefix, int64_t features, double eps);
Tensor *layernorm_forward(const LayerNorm *layer, Tensor *x);

// Fills a tensor in place from U(low, high) or N(mean, std).
void init_uniform(Tensor *t, Rng *rng, double low, double high);
void init_normal(Tensor *t, Rng *rng, double mean, double std);
