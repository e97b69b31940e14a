#include "models/wideresnet.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

int wideresnet_config(int depth, int widen, bool torchssl, WideResNetConfig *config) {
    if (depth < 10 || (depth - 4) % 6 != 0 || widen < 1) return -1;
    *config = (WideResNetConfig){.depth = depth,
                                 .widen = widen,
                                 .base_channels = 16,
                                 .first_stride = 1,
                                 .bn_momentum = 0.001,
                                 .bn_eps = torchssl ? 1e-3 : 1e-5,
                                 .conv_bias = torchssl,
                                 .leaky_slope = 0.1,
                                 .in_channels = 3};
    return 0;
}

// kaiming_normal (fan_out) weight. TorchSSL's init loop touches only the weights of its
// convolutions, so their biases keep nn.Conv2d's default U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
static Conv2d conv(ParamStore *store, const char *name, const WideResNetConfig *c, int64_t in, int64_t out, int kernel,
                   int stride, Rng *rng) {
    Conv2d layer = conv2d_create(store, name, in, out, kernel, conv2d_params(stride, kernel / 2, 1, 1), c->conv_bias, NULL);
    init_kaiming_normal_fan_out(layer.weight, rng);
    if (layer.bias) {
        double bound = 1.0 / sqrt((double)(in * kernel * kernel));
        init_uniform(layer.bias, rng, -bound, bound);
    }
    return layer;
}

void wideresnet_create(WideResNet *net, ParamStore *store, const char *prefix, WideResNetConfig c, Rng *rng) {
    if (c.depth < 10 || (c.depth - 4) % 6 != 0 || c.widen < 1 || c.base_channels < 1)
        tensor_fatal("wideresnet", "bad configuration (depth %d, widen %d)", c.depth, c.widen);
    *net = (WideResNet){.config = c, .blocks_per_group = (c.depth - 4) / 6};
    char name[160];
    snprintf(name, sizeof name, "%sconv1", prefix);
    net->conv1 = conv(store, name, &c, c.in_channels, c.base_channels, 3, 1, rng);
    int64_t in = c.base_channels;
    for (int g = 0; g < 3; g++) {
        int64_t out = (c.base_channels * c.widen) << g;
        int stride = g == 0 ? c.first_stride : 2;
        net->blocks[g] = calloc((size_t)net->blocks_per_group, sizeof(WideResNetBlock));
        for (int i = 0; i < net->blocks_per_group; i++) {
            WideResNetBlock *b = &net->blocks[g][i];
            int64_t block_in = i == 0 ? in : out;
            char base[128];
            snprintf(base, sizeof base, "%sblock%d.layer.%d", prefix, g + 1, i);
#define NAME(leaf) (snprintf(name, sizeof name, "%s.%s", base, leaf), name)
            b->equal_in_out = block_in == out;
            b->activate_before_residual = g == 0;  // the flag is given to every block of block1
            b->bn1 = batchnorm_create_with(store, NAME("bn1"), block_in, c.bn_momentum, c.bn_eps);
            b->conv1 = conv(store, NAME("conv1"), &c, block_in, out, 3, i == 0 ? stride : 1, rng);
            b->bn2 = batchnorm_create_with(store, NAME("bn2"), out, c.bn_momentum, c.bn_eps);
            b->conv2 = conv(store, NAME("conv2"), &c, out, out, 3, 1, rng);
            if (!b->equal_in_out) b->shortcut = conv(store, NAME("convShortcut"), &c, block_in, out, 1, i == 0 ? stride : 1, rng);
#undef NAME
        }
        net->group_channels[g] = out;
        in = out;
    }
    snprintf(name, sizeof name, "%sbn1", prefix);
    net->bn1 = batchnorm_create_with(store, name, in, c.bn_momentum, c.bn_eps);
    net->out_features = in;
}

void wideresnet_free(WideResNet *net) {
    for (int g = 0; g < 3; g++) {
        free(net->blocks[g]);
        net->blocks[g] = NULL;
    }
}

static Tensor *block_forward(const WideResNetConfig *c, WideResNetBlock *b, Tensor *x, bool training) {
    double slope = c->leaky_slope;
    Tensor *residual_input;
    if (b->equal_in_out) {
        residual_input = op_leaky_relu(batchnorm_forward(&b->bn1, x, training), slope);
    } else if (b->activate_before_residual) {
        x = op_leaky_relu(batchnorm_forward(&b->bn1, x, training), slope);
        residual_input = x;
    } else {
        // The reference computes bn1 here and never uses it: only its running statistics change.
        if (training) {
            bool previous = autograd_set_enabled(false);
            batchnorm_forward(&b->bn1, x, true);
            autograd_set_enabled(previous);
        }
        residual_input = x;
    }
    Tensor *out = op_leaky_relu(batchnorm_forward(&b->bn2, conv2d_forward(&b->conv1, residual_input), training), slope);
    out = conv2d_forward(&b->conv2, out);
    return op_add(b->equal_in_out ? x : conv2d_forward(&b->shortcut, x), out);
}

Tensor *wideresnet_forward(WideResNet *net, Tensor *x, bool training, Tensor *stages[3]) {
    x = conv2d_forward(&net->conv1, x);
    for (int g = 0; g < 3; g++) {
        for (int i = 0; i < net->blocks_per_group; i++) x = block_forward(&net->config, &net->blocks[g][i], x, training);
        if (stages) stages[g] = x;
    }
    x = op_leaky_relu(batchnorm_forward(&net->bn1, x, training), net->config.leaky_slope);
    return op_flatten(op_adaptive_avg_pool2d(x, 1, 1), 1, -1);
}
