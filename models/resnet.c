#include "models/resnet.h"

#include <stdio.h>
#include <stdlib.h>

int resnet_config(int depth, bool cifar_stem, ResNetConfig *config) {
    ResNetConfig c = {.base_width = 64, .cifar_stem = cifar_stem, .in_channels = 3};
    static const struct {
        int depth;
        ResNetBlockKind block;
        int layers[4];
    } table[] = {
        {18, RESNET_BASIC, {2, 2, 2, 2}},        {34, RESNET_BASIC, {3, 4, 6, 3}},
        {50, RESNET_BOTTLENECK, {3, 4, 6, 3}},   {101, RESNET_BOTTLENECK, {3, 4, 23, 3}},
        {152, RESNET_BOTTLENECK, {3, 8, 36, 3}},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (table[i].depth == depth) {
            c.block = table[i].block;
            for (int s = 0; s < 4; s++) c.layers[s] = table[i].layers[s];
            *config = c;
            return 0;
        }
    return -1;
}

// A bias-free convolution initialised as torchvision does (kaiming_normal, fan_out, relu).
static Conv2d conv(ParamStore *store, const char *name, int64_t in, int64_t out, int kernel, int stride, int padding,
                   Rng *rng) {
    Conv2d layer = conv2d_create(store, name, in, out, kernel, conv2d_params(stride, padding, 1, 1), false, NULL);
    init_kaiming_normal_fan_out(layer.weight, rng);
    return layer;
}

void resnet_create(ResNet *net, ParamStore *store, const char *prefix, ResNetConfig config, Rng *rng) {
    if (config.base_width <= 0 || config.in_channels <= 0) tensor_fatal("resnet", "bad configuration");
    *net = (ResNet){.config = config};
    char name[160];
    snprintf(name, sizeof name, "%sconv1", prefix);
    net->conv1 = config.cifar_stem ? conv(store, name, config.in_channels, config.base_width, 3, 1, 1, rng)
                                   : conv(store, name, config.in_channels, config.base_width, 7, 2, 3, rng);
    snprintf(name, sizeof name, "%sbn1", prefix);
    net->bn1 = batchnorm_create(store, name, config.base_width);
    int expansion = config.block == RESNET_BOTTLENECK ? 4 : 1;
    int64_t inplanes = config.base_width;
    for (int s = 0; s < 4; s++) {
        int64_t planes = config.base_width << s;
        int stride = s == 0 ? 1 : 2;
        if (config.layers[s] < 1) tensor_fatal("resnet", "stage %d needs at least one block", s + 1);
        net->blocks[s] = calloc((size_t)config.layers[s], sizeof(ResNetBlock));
        for (int i = 0; i < config.layers[s]; i++) {
            ResNetBlock *b = &net->blocks[s][i];
            int block_stride = i == 0 ? stride : 1;
            char base[128];
            snprintf(base, sizeof base, "%slayer%d.%d", prefix, s + 1, i);
#define NAME(leaf) (snprintf(name, sizeof name, "%s.%s", base, leaf), name)
            if (config.block == RESNET_BASIC) {
                b->conv1 = conv(store, NAME("conv1"), inplanes, planes, 3, block_stride, 1, rng);
                b->bn1 = batchnorm_create(store, NAME("bn1"), planes);
                b->conv2 = conv(store, NAME("conv2"), planes, planes, 3, 1, 1, rng);
                b->bn2 = batchnorm_create(store, NAME("bn2"), planes);
            } else {
                b->conv1 = conv(store, NAME("conv1"), inplanes, planes, 1, 1, 0, rng);
                b->bn1 = batchnorm_create(store, NAME("bn1"), planes);
                b->conv2 = conv(store, NAME("conv2"), planes, planes, 3, block_stride, 1, rng);
                b->bn2 = batchnorm_create(store, NAME("bn2"), planes);
                b->conv3 = conv(store, NAME("conv3"), planes, planes * expansion, 1, 1, 0, rng);
                b->bn3 = batchnorm_create(store, NAME("bn3"), planes * expansion);
            }
            if (i == 0 && (block_stride != 1 || inplanes != planes * expansion)) {
                b->has_downsample = true;
                b->downsample_conv = conv(store, NAME("downsample.0"), inplanes, planes * expansion, 1, block_stride, 0, rng);
                b->downsample_bn = batchnorm_create(store, NAME("downsample.1"), planes * expansion);
            }
#undef NAME
            inplanes = planes * expansion;
        }
        net->stage_channels[s] = inplanes;
    }
    net->out_features = inplanes;
}

void resnet_free(ResNet *net) {
    for (int s = 0; s < 4; s++) {
        free(net->blocks[s]);
        net->blocks[s] = NULL;
    }
}

static Tensor *block_forward(const ResNetConfig *config, ResNetBlock *b, Tensor *x, bool training) {
    Tensor *out = batchnorm_relu_forward(&b->bn1, conv2d_forward(&b->conv1, x), training);
    if (config->block == RESNET_BASIC) {
        out = batchnorm_forward(&b->bn2, conv2d_forward(&b->conv2, out), training);
    } else {
        out = batchnorm_relu_forward(&b->bn2, conv2d_forward(&b->conv2, out), training);
        out = batchnorm_forward(&b->bn3, conv2d_forward(&b->conv3, out), training);
    }
    Tensor *identity = b->has_downsample ? batchnorm_forward(&b->downsample_bn, conv2d_forward(&b->downsample_conv, x), training) : x;
    return op_relu(op_add(out, identity));
}

Tensor *resnet_forward(ResNet *net, Tensor *x, bool training, Tensor *stages[4]) {
    x = batchnorm_relu_forward(&net->bn1, conv2d_forward(&net->conv1, x), training);
    if (!net->config.cifar_stem) x = op_max_pool2d(x, 3, 2, 1);
    for (int s = 0; s < 4; s++) {
        for (int i = 0; i < net->config.layers[s]; i++) x = block_forward(&net->config, &net->blocks[s][i], x, training);
        if (stages) stages[s] = x;
    }
    return op_flatten(op_adaptive_avg_pool2d(x, 1, 1), 1, -1);
}
