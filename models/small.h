// Small networks for the engine demo and training tests.
#pragma once
#include "models/nn.h"

// Multi-layer perceptron: Linear -> ReLU repeated, then a Linear classifier.
typedef struct {
    ParamStore *params;
    int n_layers;
    Linear layers[8];
} Mlp;

Mlp mlp_create(int64_t in, int64_t hidden, int n_hidden_layers, int64_t classes, uint64_t seed);
Tensor *mlp_forward(const Mlp *model, Tensor *x);
void mlp_free(Mlp *model);

// Two conv-BN-ReLU stages with max pooling, global average pooling and a linear classifier.
typedef struct {
    ParamStore *params;
    Conv2d conv1, conv2;
    BatchNorm bn1, bn2;
    Linear fc;
} SmallCnn;

SmallCnn small_cnn_create(int64_t in_channels, int64_t width, int64_t classes, uint64_t seed);
Tensor *small_cnn_forward(SmallCnn *model, Tensor *x, bool training);
void small_cnn_free(SmallCnn *model);
