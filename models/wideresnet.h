// WideResNet-D-K as the semi-supervised benchmarks use it: kekmodel/FixMatch-pytorch
// models/wideresnet.py (commit 040be3b) and, as a variant, TorchSSL models/nets/wrn.py. Same
// layers, state-dict names and initialisation.
//
//   conv1 (3x3, 16 channels)
//   block1, block2, block3: "blockG.layer.I" pre-activation blocks, n = (D - 4) / 6 per group,
//     widths 16K, 32K, 64K, strides first_stride (1), 2, 2 on the first block of a group:
//       bn1 - LeakyReLU(0.1) - conv1 (3x3, stride) - bn2 - LeakyReLU(0.1) - conv2 (3x3)
//       + the input, or "convShortcut" (1x1 conv with the stride) when the width changes.
//     When the width changes the block's residual path and shortcut both start from x itself;
//     with activate_before_residual (the first block of block1 only) x is bn1-LeakyReLU'd first.
//     Without it, bn1 of such a block is computed and thrown away — the reference code does so,
//     so its running statistics still move in training and its weight and bias never get a
//     gradient. We reproduce that (the statistics matter for loading and saving checkpoints).
//   bn1 - LeakyReLU(0.1) - adaptive average pool -> pooled features [B, 64K].
// The classifier ("fc") belongs to models/classifier.h; it is xavier_normal with bias 0 here.
//
// BatchNorm momentum 0.001 everywhere. Initialisation: convolutions kaiming_normal (fan_out,
// leaky_relu with a = 0, i.e. gain sqrt(2)), BatchNorm weight 1 / bias 0; TorchSSL's conv biases
// keep nn.Conv2d's default U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
// Variants: kekmodel — BN eps 1e-5, bias-free convs; TorchSSL — BN eps 1e-3, convs with biases.
#pragma once
#include "models/nn.h"

typedef struct {
    int depth;             // 28 for wrn-28-K; (depth - 4) % 6 == 0
    int widen;             // K
    int64_t base_channels; // 16 in the reference code (the stem width; groups are base K, 2 base K, 4 base K)
    int first_stride;      // 1 (TorchSSL allows 2 for larger images)
    double bn_momentum;    // 0.001
    double bn_eps;         // 1e-5 (kekmodel) or 1e-3 (TorchSSL)
    bool conv_bias;        // false (kekmodel) or true (TorchSSL)
    double leaky_slope;    // 0.1
    int64_t in_channels;   // 3
} WideResNetConfig;

typedef struct {
    BatchNorm bn1, bn2;
    Conv2d conv1, conv2, shortcut;
    bool equal_in_out, activate_before_residual;
} WideResNetBlock;

typedef struct {
    WideResNetConfig config;
    Conv2d conv1;
    int blocks_per_group;
    WideResNetBlock *blocks[3];
    BatchNorm bn1;
    int64_t group_channels[3];
    int64_t out_features;  // 64 K for base 16
} WideResNet;

// The kekmodel (FixMatch-pytorch) configuration of WRN-depth-widen; torchssl selects TorchSSL's
// eps and conv biases. 0 on success, -1 when (depth - 4) is not a multiple of 6 or widen < 1.
int wideresnet_config(int depth, int widen, bool torchssl, WideResNetConfig *config);
void wideresnet_create(WideResNet *net, ParamStore *store, const char *prefix, WideResNetConfig config, Rng *rng);
void wideresnet_free(WideResNet *net);
// x [B, in_channels, H, W] -> pooled features [B, out_features]; stages (may be NULL) receives
// the outputs of block1, block2, block3 (before the final bn1-LeakyReLU).
Tensor *wideresnet_forward(WideResNet *net, Tensor *x, bool training, Tensor *stages[3]);
