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
    // Synchronized BatchNorm (torch.nn.SyncBatchNorm): in training under several ranks
    // (engine/dist), the batch statistics are those of the global batch, all-reduced across ranks,
    // so the result is the single process's; one rank ignores it. CPU tensors.
    bool synchronized;
} BatchNorm;

typedef struct {
    Tensor *weight, *bias;
    double eps;
} LayerNorm;

typedef struct {
    Tensor *weight, *bias;
    int groups;
    double eps;
} GroupNorm;

// nn.Linear: weight and bias ~ U(-1/sqrt(in), 1/sqrt(in)) (kaiming_uniform with a = sqrt(5)).
// With rng NULL (linear and conv) the tensors stay zero, for a model that initialises them itself.
Linear linear_create(ParamStore *store, const char *prefix, int64_t in, int64_t out, bool bias, Rng *rng);
Tensor *linear_forward(const Linear *layer, Tensor *x);
// n Linears with the same input width applied as one: their weights (and biases: all or none) stacked
// along the output dim, one GEMM, outputs concatenated on the last dim. Used for attention's
// separate q/k/v projections feeding op_self_attention's packed [.., 3D] input.
Tensor *linear_stacked_forward(const Linear *layers, int n, Tensor *x);

// nn.Conv2d: weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = in/groups * k * k.
Conv2d conv2d_create(ParamStore *store, const char *prefix, int64_t in, int64_t out, int kernel, Conv2dParams params,
                     bool bias, Rng *rng);
Tensor *conv2d_forward(const Conv2d *layer, Tensor *x);

// nn.BatchNorm1d/2d: weight 1, bias 0, running mean 0 / var 1, momentum 0.1, eps 1e-5.
BatchNorm batchnorm_create(ParamStore *store, const char *prefix, int64_t channels);
// The same with another momentum and eps (e.g. 0.001 and 1e-5 in the FixMatch WideResNet).
BatchNorm batchnorm_create_with(ParamStore *store, const char *prefix, int64_t channels, double momentum, double eps);
Tensor *batchnorm_forward(BatchNorm *layer, Tensor *x, bool training);
// relu(batchnorm_forward(layer, x, training)), through the fused op_batch_norm_relu when the statistics are local.
Tensor *batchnorm_relu_forward(BatchNorm *layer, Tensor *x, bool training);

LayerNorm layernorm_create(ParamStore *store, const char *prefix, int64_t features, double eps);
Tensor *layernorm_forward(const LayerNorm *layer, Tensor *x);

// nn.GroupNorm(groups, channels, eps, affine=True): weight 1, bias 0.
GroupNorm groupnorm_create(ParamStore *store, const char *prefix, int groups, int64_t channels, double eps);
Tensor *groupnorm_forward(const GroupNorm *layer, Tensor *x);

// printf into buffer, for composing parameter names ("%sresnets.%d.conv1"); returns buffer.
const char *param_name(char *buffer, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

// Fills a tensor in place from U(low, high) or N(mean, std).
void init_uniform(Tensor *t, Rng *rng, double low, double high);
void init_normal(Tensor *t, Rng *rng, double mean, double std);
// N(mean, std) truncated to [low, high] (absolute bounds, as torch.nn.init.trunc_normal_ and
// timm's trunc_normal_): values outside are drawn again. Needs low < mean + 4 std and high > mean - 4 std.
void init_trunc_normal(Tensor *t, Rng *rng, double mean, double std, double low, double high);
// torch.nn.init.kaiming_normal_(mode="fan_out", nonlinearity="relu"): N(0, sqrt(2 / fan_out)),
// fan_out = dim 0 * the product of dims 2.. (a conv's out_channels * kernel area). With
// nonlinearity="leaky_relu" and the default a = 0 the gain is the same sqrt(2).
void init_kaiming_normal_fan_out(Tensor *t, Rng *rng);
// torch.nn.init.xavier_normal_: N(0, sqrt(2 / (fan_in + fan_out))) for a [out, in, ...] weight.
void init_xavier_normal(Tensor *t, Rng *rng);
