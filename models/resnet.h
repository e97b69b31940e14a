// ResNet-18/34/50/101 as torchvision 0.14's torchvision.models.resnet.ResNet: the same layers,
// state-dict names and initialisation, so torchvision checkpoints load by name and our files load
// into torchvision with strict=True.
//
//   conv1 (7x7 stride 2, pad 3) - bn1 - relu - maxpool (3x3 stride 2, pad 1)
//   layer1..layer4: blocks "layerS.I" with conv1/bn1, conv2/bn2 (+ conv3/bn3 for Bottleneck) and,
//   on the first block of a stage when the shape changes, "layerS.0.downsample.0" (1x1 conv with
//   the stride) and "layerS.0.downsample.1" (BatchNorm); the stride of a stage sits on the 3x3 conv
//   (BasicBlock.conv1, Bottleneck.conv2: "ResNet v1.5"). Stage widths base, 2 base, 4 base, 8 base
//   (base 64), Bottleneck expansion 4.
//   adaptive average pool to 1x1 -> pooled features [B, 8 base * expansion].
// The classifier head (torchvision's "fc") belongs to models/classifier.h, not to this backbone.
//
// CIFAR stem (cifar_stem): conv1 is 3x3 stride 1 pad 1 and there is no max-pool — the usual
// ResNet variant for 32x32 inputs; every name stays the same.
//
// Initialisation as torchvision with zero_init_residual=False: convolutions kaiming_normal
// (fan_out, relu), BatchNorm weight 1 and bias 0; all convolutions are bias-free.
#pragma once
#include "models/nn.h"

typedef enum { RESNET_BASIC, RESNET_BOTTLENECK } ResNetBlockKind;

typedef struct {
    ResNetBlockKind block;
    int layers[4];         // blocks per stage: resnet18 {2,2,2,2}, 34 {3,4,6,3}, 50 {3,4,6,3}, 101 {3,4,23,3}
    int64_t base_width;    // channels of stage 1 before expansion (64 in torchvision)
    bool cifar_stem;
    int64_t in_channels;   // 3
} ResNetConfig;

typedef struct {
    Conv2d conv1, conv2, conv3;  // conv3 only for Bottleneck
    BatchNorm bn1, bn2, bn3;
    bool has_downsample;
    Conv2d downsample_conv;      // "downsample.0"
    BatchNorm downsample_bn;     // "downsample.1"
} ResNetBlock;

typedef struct {
    ResNetConfig config;
    Conv2d conv1;
    BatchNorm bn1;
    ResNetBlock *blocks[4];
    int64_t stage_channels[4];  // output channels of each stage
    int64_t out_features;       // pooled feature width: 8 base * expansion (512 or 2048 for base 64)
} ResNet;

// The standard configurations: depth 18, 34, 50 or 101 (also 152); 0 on success, -1 for another depth.
int resnet_config(int depth, bool cifar_stem, ResNetConfig *config);

// Adds every parameter and buffer under "<prefix>conv1.weight", ... (prefix "" for torchvision's
// names) and initialises them from rng. Does not finalize the store.
void resnet_create(ResNet *net, ParamStore *store, const char *prefix, ResNetConfig config, Rng *rng);
void resnet_free(ResNet *net);

// x [B, in_channels, H, W] -> pooled features [B, out_features]. training: batch statistics and
// running-statistic updates in every BatchNorm. stages (may be NULL): receives the output of
// layer1..layer4 ([B, C, H/4, W/4] ... for the ImageNet stem).
Tensor *resnet_forward(ResNet *net, Tensor *x, bool training, Tensor *stages[4]);
