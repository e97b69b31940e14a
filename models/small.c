#include "models/small.h"

#include <stdio.h>

Mlp mlp_create(int64_t in, int64_t hidden, int n_hidden_layers, int64_t classes, uint64_t seed) {
    Mlp model = {.params = params_new(), .n_layers = n_hidden_layers + 1};
    if (model.n_layers > 8) tensor_fatal("mlp", "at most 7 hidden layers");
    Rng rng = rng_make(seed, 0);
    for (int i = 0; i < model.n_layers; i++) {
        char name[32];
        snprintf(name, sizeof name, "layers.%d", i);
        int64_t fan_in = i == 0 ? in : hidden, fan_out = i == model.n_layers - 1 ? classes : hidden;
        model.layers[i] = linear_create(model.params, name, fan_in, fan_out, true, &rng);
    }
    params_finalize(model.params);
    return model;
}

Tensor *mlp_forward(const Mlp *model, Tensor *x) {
    for (int i = 0; i < model->n_layers; i++) {
        x = linear_forward(&model->layers[i], x);
        if (i < model->n_layers - 1) x = op_relu(x);
    }
    return x;
}

void mlp_free(Mlp *model) { params_free(model->params); }

SmallCnn small_cnn_create(int64_t in_channels, int64_t width, int64_t classes, uint64_t seed) {
    SmallCnn model = {.params = params_new()};
    Rng rng = rng_make(seed, 0);
    Conv2dParams same = conv2d_params(1, 1, 1, 1);
    model.conv1 = conv2d_create(model.params, "conv1", in_channels, width, 3, same, false, &rng);
    model.bn1 = batchnorm_create(model.params, "bn1", width);
    model.conv2 = conv2d_create(model.params, "conv2", width, 2 * width, 3, same, false, &rng);
    model.bn2 = batchnorm_create(model.params, "bn2", 2 * width);
    model.fc = linear_create(model.params, "fc", 2 * width, classes, true, &rng);
    params_finalize(model.params);
    return model;
}

Tensor *small_cnn_forward(SmallCnn *model, Tensor *x, bool training) {
    x = op_max_pool2d(batchnorm_relu_forward(&model->bn1, conv2d_forward(&model->conv1, x), training), 2, 2, 0);
    x = batchnorm_relu_forward(&model->bn2, conv2d_forward(&model->conv2, x), training);
    x = op_flatten(op_adaptive_avg_pool2d(x, 1, 1), 1, -1);
    return linear_forward(&model->fc, x);
}

void small_cnn_free(SmallCnn *model) { params_free(model->params); }
