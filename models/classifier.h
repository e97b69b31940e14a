// Image classifiers by name: a backbone (models/resnet.h, models/wideresnet.h, models/vit.h) and a
// classification head, with the state-dict names of the reference implementations so that
// torchvision / timm / FixMatch checkpoints load by name and our files load back into PyTorch.
//
// Names (classifier_names() lists them):
//   resnet18 resnet34 resnet50 resnet101          torchvision, ImageNet stem
//   resnet18-cifar ... resnet101-cifar            the same with the CIFAR stem (3x3 conv stride 1, no max-pool)
//   wrn-D-K (wrn-28-2, wrn-28-8, ...)             FixMatch-pytorch's WideResNet (kekmodel)
//   wrn-D-K-torchssl                              TorchSSL's (BN eps 1e-3, conv biases)
//   vit-tiny vit-small vit-base                   timm VisionTransformer (patch/image size from options)
//   deit-tiny deit-small deit-base                timm DeiT (the same architecture as vit-*)
//   deit-tiny-distilled ... deit-base-distilled   timm VisionTransformerDistilled (dist_token, head_dist)
//
// Head. Without a bottleneck (bottleneck_dim 0) the head is the reference model's own: "fc"
// (ResNet, WideResNet; WideResNet's is xavier_normal with zero bias as FixMatch-pytorch, ResNet's
// nn.Linear's default) or "head" (+ "head_dist") for ViT/DeiT (trunc_normal .02, zero bias). With
// bottleneck_dim > 0 it is tllib's ImageClassifier head: "bottleneck.0" Linear(features,
// bottleneck_dim) - "bottleneck.1" BatchNorm1d - ReLU ("bottleneck.2", no parameters), then
// "head" Linear(bottleneck_dim, classes), all with PyTorch's default init; a distilled DeiT then
// feeds its pooled feature (the mean of the class and distillation tokens) through that one head.
// tllib checkpoints hold the backbone under "backbone.": strip that prefix when converting
// (tools/convert_pth.py --strip-prefix backbone.) — tllib's unused "backbone.fc" then loads as an
// ignored head tensor with CLASSIFIER_LOAD_NEW_HEAD.
//
// Optimizer groups (ParamStore groups): 0 backbone weights (decay), 1 backbone biases, norm
// parameters, ViT tokens and position embedding (no decay) — models/nn.h's PARAM_GROUP_DECAY /
// NO_DECAY — and 2 / 3 the same for the head (bottleneck and classifier layers), so that methods
// can give the head its own learning rate (tllib: backbone 0.1 x lr, head 1 x lr).
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/optim.h"
#include "models/resnet.h"
#include "models/vit.h"
#include "models/wideresnet.h"

enum { CLASSIFIER_GROUP_HEAD_DECAY = 2, CLASSIFIER_GROUP_HEAD_NO_DECAY = 3 };
#define CLASSIFIER_MAX_STAGES 64
#define CLASSIFIER_BOTTLENECK_DEFAULT 256  // tllib's ImageClassifier bottleneck width

typedef enum { CLASSIFIER_RESNET, CLASSIFIER_WIDERESNET, CLASSIFIER_VIT } ClassifierArch;

typedef struct {
    int64_t num_classes;     // > 0
    int64_t image_size;      // ViT/DeiT: input side (0: 224); ignored by the convolutional networks
    int64_t patch_size;      // ViT/DeiT: 0 means 16
    int64_t bottleneck_dim;  // 0: the reference model's own head; > 0: tllib's bottleneck head of that width
    int64_t in_channels;     // 0 means 3
    uint64_t seed;           // initialisation (Philox stream 0 of this seed)
} ClassifierOptions;

ClassifierOptions classifier_default_options(int64_t num_classes);

// A backbone configuration: one of the three, chosen by arch.
typedef struct {
    ClassifierArch arch;
    ResNetConfig resnet;
    WideResNetConfig wideresnet;
    VitConfig vit;
} ClassifierBackbone;

typedef struct Classifier {
    char name[64];
    ClassifierOptions options;
    ClassifierBackbone backbone;
    ParamStore *params;          // finalized; params_to_device(model->params, ...) moves the model
    ResNet resnet;               // the network in use, by backbone.arch
    WideResNet wideresnet;
    Vit vit;
    int64_t feature_dim;         // pooled backbone features
    int64_t output_feature_dim;  // features after the bottleneck (== feature_dim without one)
    int n_stages;                // feature maps / token sets classifier_run can return
    bool has_bottleneck, has_head_dist;
    Linear bottleneck_fc;        // "bottleneck.0"
    BatchNorm bottleneck_bn;     // "bottleneck.1"
    Linear head;                 // "fc" or "head"
    Linear head_dist;            // distilled DeiT without bottleneck: "head_dist"
} Classifier;

// NULL-terminated list of the model names (wrn-D-K stands for every valid depth and width).
const char *const *classifier_names(void);
// The backbone configuration a name stands for (with options' image/patch size and channels).
// 0 on success; -1 and one line in error for an unknown name or a bad option.
int classifier_backbone_for(const char *name, const ClassifierOptions *options, ClassifierBackbone *backbone, char *error,
                            size_t error_size);
// Creates a model by name; NULL and one line in error on an unknown name or bad option.
Classifier *classifier_create(const char *name, const ClassifierOptions *options, char *error, size_t error_size);
// Creates a model from an explicit backbone configuration (custom widths and depths, e.g. the tiny
// models of the tests); name is only recorded.
Classifier *classifier_create_custom(const char *name, const ClassifierBackbone *backbone, const ClassifierOptions *options,
                                     char *error, size_t error_size);
void classifier_free(Classifier *model);

// Everything one forward pass can return. Tensors belong to the current scope.
typedef struct {
    Tensor *pooled;    // [B, feature_dim]: the backbone's pooled features (ResNet/WRN: global average
                       // pool; ViT: class token after the final norm, distilled: mean of the two tokens)
    Tensor *features;  // [B, output_feature_dim]: after the bottleneck (tllib's "f"); == pooled without one
    Tensor *logits;    // [B, num_classes]
    int n_stages;      // 0 unless CLASSIFIER_WANT_STAGES
    Tensor *stages[CLASSIFIER_MAX_STAGES];  // ResNet: layer1..layer4 [B, C, H, W]; WideResNet: block1..3;
                                            // ViT: the tokens after each block [B, prefix + N, D]
} ClassifierOutput;

enum { CLASSIFIER_WANT_STAGES = 1 };

// training: BatchNorm uses batch statistics and updates its running statistics (and counter).
ClassifierOutput classifier_run(Classifier *model, Tensor *x, bool training, int flags);
// Logits only.
Tensor *classifier_forward(Classifier *model, Tensor *x, bool training);
// The head alone, from pooled features [B, feature_dim]: bottleneck (when present) and classifier.
// features_out (may be NULL) receives the bottleneck output. For a distilled DeiT without a
// bottleneck this needs the tokens and is refused: use classifier_run.
Tensor *classifier_head_forward(Classifier *model, Tensor *pooled, bool training, Tensor **features_out);

// Sets the running-statistics momentum of every BatchNorm of the model (backbone and bottleneck),
// as PyTorch users do by assigning module.momentum; momentum in (0, 1]. The architectures' defaults
// are 0.1 (ResNet, bottleneck) and 0.001 (WideResNet, as FixMatch), which suits long runs with an
// EMA model but leaves the running statistics near their initial values in a short fine-tuning.
void classifier_set_bn_momentum(Classifier *model, double momentum);
// Synchronized BatchNorm (models/nn.h) in every BatchNorm of the model: under several ranks the
// training-mode statistics are the global batch's (torch.nn.SyncBatchNorm.convert_sync_batchnorm).
void classifier_set_sync_batchnorm(Classifier *model, bool synchronized);

// Adds the optimizer groups of the model: backbone weights at backbone_lr_multiplier with
// weight_decay, backbone no-decay parameters at backbone_lr_multiplier with 0, and the head's two
// groups at head_lr_multiplier likewise. 0 on success, -1 if the optimizer refused a group.
int classifier_add_optimizer_groups(const Classifier *model, Optimizer *optimizer, double backbone_lr_multiplier,
                                    double head_lr_multiplier, double weight_decay);

// True for a name that belongs to a classification head of some architecture ("fc.*", "head.*",
// "head_dist.*", "bottleneck.*").
bool classifier_is_head_name(const char *name);

enum {
    CLASSIFIER_LOAD_STRICT = 0,
    // The file's head may differ: head tensors of the model that are missing from the file or have
    // another shape keep their fresh initialisation, and head tensors of the file that the model
    // lacks (an ImageNet "fc" under a bottleneck model, "head_dist") are ignored. Each is listed in
    // the report. Every other tensor must match by name and shape.
    CLASSIFIER_LOAD_NEW_HEAD = 1,
};
// Loads weights and buffers by name from a safetensors file (F32/F16/BF16/F64 values, integer
// buffers converted). Checks everything before changing anything. A missing
// "*.num_batches_tracked" is accepted as 0 (as PyTorch does for old torchvision checkpoints) and
// reported. report (may be NULL) lists what was kept fresh, ignored or defaulted, "" when nothing.
// 0 on success; else -1 and one line in error naming the file and tensor.
int classifier_load(Classifier *model, const char *path, int flags, char *report, size_t report_size, char *error,
                    size_t error_size);
// Writes every parameter and buffer under its name (f32; num_batches_tracked too, which
// PyTorch's load_state_dict copies into its i64 buffer), with metadata tailor.model = name and
// tailor.num_classes. Loads into the reference PyTorch model with strict=True.
int classifier_save(const Classifier *model, const char *path, char *error, size_t error_size);
