// The classifier models (models/classifier.h) against PyTorch: tiny ResNet (BasicBlock, ImageNet
// stem; Bottleneck, CIFAR stem, tllib bottleneck head), WideResNet (FixMatch-pytorch and TorchSSL)
// and ViT / distilled DeiT (timm) from tests/golden/models.safetensors, written by
// tests/ref/gen_model_goldens.py (its docstring has the layout and the venv setup). For each case,
// on the CPU and on the emulated CUDA device: eval-mode logits, pooled features and per-stage
// features (running statistics used); train-mode logits, loss, every parameter gradient and every
// buffer after the step (running statistics and counters updated as PyTorch does); the loss over
// 5 SGD steps (momentum 0.9, weight decay 5e-4; on the device for the three cheapest cases). Then: model names and parameter counts, the
// initialisation statistics, optimizer groups, saving and loading (new heads, missing counters,
// refused files).
//
// Environment: TAILOR_ROOT (repository root; default the current directory), TAILOR_GOLDEN_ERRORS=1
// (print each comparison's largest error and the share of its tolerance used),
// TAILOR_MODELS_EXPORT=DIR (also save full-size models with an input and our logits into DIR for
// `gen_model_goldens.py --check-export DIR`, which loads them into PyTorch with strict=True).
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/json.h"
#include "engine/optim.h"
#include "engine/safetensors.h"
#include "models/classifier.h"
#include "tests/check.h"
#include "tests/golden_compare.h"

TEST_MAIN_COUNTERS;

static const Device CUDA0 = {DEVICE_CUDA, 0};
static SafetensorsFile *golden;

// ---------------------------------------------------------------- tolerances (tests/golden_compare.h)

// Forward values (logits, pooled features, feature maps, the loss): f32 through up to ~20 layers
// whose dot products (K up to ~300) PyTorch's oneDNN/MKL sums in another order than our GEMM, and
// train-mode batch norm over few values per channel (6 at ResNet's layer4), which amplifies the
// rounding of the batch variance. Measured max 2.9e-6 of the scale on the CPU, 3.9e-6 on the
// emulated device (7.6e-6 absolute, resnet_basic train logits): allow 2e-5.
static const Tolerance FORWARD = {2e-5, 1e-5};
// Gradients: the same reordering through the backward pass, plus batch-norm backward (a
// difference of two sums over the batch): small gradients come out of near-cancelling sums, so
// the error is taken relative to the tensor's largest gradient. Measured max 8.8e-6 of the scale
// on the CPU, 9.4e-6 on the device (resnet_basic layer2): allow 1e-4.
static const Tolerance GRADIENT = {1e-4, 1e-4};
// Some gradients are mathematically zero: the bias of a convolution or Linear followed by batch
// norm (TorchSSL's conv biases, tllib's bottleneck.0.bias), since batch norm removes any constant
// shift. Both sides then hold rounding noise (measured up to 1.2e-7 of the case's largest
// gradient), which no per-tensor scale can match: every gradient may also differ by 1e-5 times
// the largest gradient of the whole case.
static const double GRADIENT_FLOOR = 1e-5;
// Running statistics after one train-mode forward (a mean and an unbiased variance per channel,
// blended with the momentum): measured max 2.9e-7 of the scale on the CPU, 4.0e-7 on the
// device: allow 5e-6.
static const Tolerance BUFFER = {5e-6, 1e-5};
// The loss over 5 SGD steps (lr 0.05, momentum 0.9): the differences above feed back through the
// updates; measured max |diff| 1.0e-6 on the CPU, 2.4e-7 on the device, on losses of 0.5 to 1.7:
// allow 2e-5 absolute. (The cases are chosen well-conditioned: with a batch of 4 through the
// BatchNorm1d bottleneck, PyTorch's own f32 and f64 runs differ by 4e-4 after 5 steps.)
static const double SGD_LOSS_ATOL = 2e-5;

// ---------------------------------------------------------------- building a case's model
static int64_t config_int(const JsonValue *config, const char *key) {
    int64_t v = 0;
    if (json_int64(json_get(config, key), &v) != 0) {
        printf("  golden config: '%s' missing or not an integer\n", key);
        test_checks_failed_in_current++;
    }
    return v;
}

static bool config_bool(const JsonValue *config, const char *key) {
    int v = 0;
    if (json_bool(json_get(config, key), &v) != 0) {
        printf("  golden config: '%s' missing or not a boolean\n", key);
        test_checks_failed_in_current++;
    }
    return v != 0;
}

static Classifier *model_for(const char *name, const JsonValue *config) {
    ClassifierBackbone backbone = {0};
    ClassifierOptions options = classifier_default_options(config_int(config, "classes"));
    options.bottleneck_dim = config_int(config, "bottleneck");
    const char *arch = json_string(json_get(config, "arch"));
    if (arch && !strcmp(arch, "resnet")) {
        backbone.arch = CLASSIFIER_RESNET;
        const char *block = json_string(json_get(config, "block"));
        backbone.resnet.block = block && !strcmp(block, "bottleneck") ? RESNET_BOTTLENECK : RESNET_BASIC;
        for (int s = 0; s < 4; s++) {
            int64_t v = 0;
            json_int64(json_at(json_get(config, "layers"), (size_t)s), &v);
            backbone.resnet.layers[s] = (int)v;
        }
        backbone.resnet.base_width = config_int(config, "width");
        backbone.resnet.cifar_stem = config_bool(config, "cifar_stem");
        backbone.resnet.in_channels = 3;
    } else if (arch && !strcmp(arch, "wrn")) {
        backbone.arch = CLASSIFIER_WIDERESNET;
        wideresnet_config((int)config_int(config, "depth"), (int)config_int(config, "widen"), config_bool(config, "torchssl"),
                          &backbone.wideresnet);
        backbone.wideresnet.base_channels = config_int(config, "base");
    } else if (arch && !strcmp(arch, "vit")) {
        backbone.arch = CLASSIFIER_VIT;
        backbone.vit = (VitConfig){.embed_dim = config_int(config, "embed"), .depth = (int)config_int(config, "depth"),
                                   .heads = (int)config_int(config, "heads"), .mlp_ratio = 4.0,
                                   .patch_size = config_int(config, "patch"), .image_size = config_int(config, "image"),
                                   .in_channels = 3, .distilled = config_bool(config, "distilled")};
    } else {
        CHECK_MSG(false, "%s: unknown arch in the golden config", name);
        return NULL;
    }
    if (test_checks_failed_in_current) return NULL;
    char error[256];
    Classifier *model = classifier_create_custom(name, &backbone, &options, error, sizeof error);
    CHECK_MSG(model, "%s: %s", name, error);
    return model;
}

// Copies "<case>/init/<name>" into every parameter and buffer (the model is on the CPU or the device).
static void load_init(GoldenCase *c, Classifier *model) {
    TensorScope scope = tensor_scope_begin();
    for (int i = 0; i < model->params->count; i++) {
        const Param *p = &model->params->items[i];
        const SafetensorsEntry *e = golden_get(c, "init/%s", p->name);
        CHECK_MSG(e && shape_equal(golden_entry_shape(e), tensor_shape(p->value)), "%s: init/%s missing or of another shape", c->name, p->name);
        if (!e || !shape_equal(golden_entry_shape(e), tensor_shape(p->value))) continue;
        tensor_copy_raw(p->value, op_to_dtype(golden_entry_tensor(e), DTYPE_F32));
    }
    tensor_scope_end(scope);
}

static Tensor *on(GoldenCase *c, Tensor *t) { return c->device ? tensor_to_device_raw(t, CUDA0) : t; }

// 5 SGD steps (lr 0.05, momentum 0.9, weight decay 5e-4 on the weights) from the golden init, in
// train mode on the same batch: the loss before each step and after the last against `losses`.
static void sgd_steps(GoldenCase *c, Classifier *model, Tensor *x, Tensor *y, const SafetensorsEntry *losses) {
    load_init(c, model);
    Optimizer *sgd = optimizer_new_sgd(model->params->numel, 0.05, 0.9, 0, 0, 5e-4);
    CHECK(classifier_add_optimizer_groups(model, sgd, 1.0, 1.0, 5e-4) == 0);
    if (c->device) optimizer_move_to_device(sgd);
    double max_diff = 0;
    for (int step = 0; step <= 5; step++) {
        TensorScope scope = tensor_scope_begin();
        params_zero_grad(model->params);
        Tensor *loss = op_cross_entropy(classifier_forward(model, x, true), on(c, y), cross_entropy_defaults());
        double value = tensor_item(loss), expected = golden_entry_get(losses, step);
        if (step < 5) {
            tensor_backward(loss, NULL);
            optimizer_step(sgd, params_values(model->params), params_grads(model->params));
        }
        max_diff = fmax(max_diff, fabs(value - expected));
        CHECK_MSG(fabs(value - expected) <= SGD_LOSS_ATOL, "%s%s: loss at SGD step %d: %.9g, expected %.9g", c->name,
                  c->device ? " (device)" : "", step, value, expected);
        tensor_scope_end(scope);
    }
    if (golden_print_errors)
        printf("  error %-18s %-6s %-48s max |diff| %.3g\n", c->name, c->device ? "device" : "cpu", "sgd losses", max_diff);
    optimizer_free(sgd);
}

// One case on one device: eval, train, and (unless skip_sgd) 5 SGD steps.
static void run_case(const char *name, const JsonValue *config, bool device, bool skip_sgd) {
    GoldenCase *c = calloc(1, sizeof *c);
    c->file = golden;
    c->name = name;
    c->device = device;
    Classifier *model = model_for(name, config);
    if (!model) {
        free(c);
        return;
    }
    load_init(c, model);
    if (device) params_to_device(model->params, CUDA0);
    TensorScope outer = tensor_scope_begin();
    Tensor *x = on(c, golden_entry_tensor(golden_get(c, "x"))), *y = golden_entry_tensor(golden_get(c, "y"));
    char what[256];
    TensorScope scope = tensor_scope_begin();

    // Eval mode: running statistics, no updates.
    bool previous = autograd_set_enabled(false);
    ClassifierOutput out = classifier_run(model, x, false, CLASSIFIER_WANT_STAGES);
    autograd_set_enabled(previous);
    golden_compare(c, "eval logits", out.logits, golden_get(c, "eval/logits"), FORWARD);
    golden_compare(c, "eval pooled features", out.pooled, golden_get(c, "eval/pooled"), FORWARD);
    for (int i = 0; i < out.n_stages; i++) {
        const SafetensorsEntry *e = golden_get(c, "eval/stage%d", i);
        snprintf(what, sizeof what, "eval stage %d", i);
        if (e) golden_compare(c, what, out.stages[i], e, FORWARD);
    }

    // Train mode: batch statistics, running-statistic updates, gradients.
    params_zero_grad(model->params);
    Tensor *logits = classifier_forward(model, x, true);
    Tensor *loss = op_cross_entropy(logits, on(c, y), cross_entropy_defaults());
    tensor_backward(loss, NULL);
    golden_compare(c, "train logits", logits, golden_get(c, "train/logits"), FORWARD);
    golden_compare(c, "train loss", loss, golden_get(c, "train/loss"), FORWARD);
    double largest_gradient = 0;
    for (int i = 0; i < model->params->count; i++) {
        const Param *p = &model->params->items[i];
        snprintf(what, sizeof what, "%s/train/grad/%s", name, p->name);
        const SafetensorsEntry *e = p->group >= 0 ? safetensors_find(golden, what) : NULL;
        for (int64_t j = 0; e && j < tensor_numel(p->value); j++) largest_gradient = fmax(largest_gradient, fabs(golden_entry_get(e, j)));
    }
    for (int i = 0; i < model->params->count; i++) {
        const Param *p = &model->params->items[i];
        if (p->group >= 0) {
            snprintf(what, sizeof what, "grad %s", p->name);
            golden_compare_floor(c, what, p->value->grad, golden_get(c, "train/grad/%s", p->name), GRADIENT,
                          GRADIENT_FLOOR * largest_gradient);
        } else {
            snprintf(what, sizeof what, "after %s", p->name);
            golden_compare(c, what, p->value, golden_get(c, "train/after/%s", p->name), BUFFER);
        }
    }
    tensor_scope_end(scope);

    // 5 SGD steps from init (weight decay on the weights only, as the script's groups).
    const SafetensorsEntry *losses = golden_get(c, "sgd/losses");
    CHECK_MSG(losses && losses->ndim == 1 && losses->shape[0] == 6, "%s: sgd/losses missing or not [6]", name);
    if (!skip_sgd && losses && losses->ndim == 1 && losses->shape[0] == 6) sgd_steps(c, model, x, y, losses);
    tensor_scope_end(outer);

    // Drift guard (CPU pass): every tensor of the case was read.
    if (!device) {
        size_t prefix = strlen(name);
        for (int i = 0; i < safetensors_count(golden); i++) {
            const SafetensorsEntry *e = safetensors_entry(golden, i);
            if (strncmp(e->name, name, prefix) || e->name[prefix] != '/') continue;
            bool seen = false;
            for (int j = 0; j < c->n_used && !seen; j++) seen = c->used[j] == e;
            CHECK_MSG(seen, "%s: golden tensor %s was not checked", name, e->name);
        }
    }
    classifier_free(model);
    free(c);
}

static void golden_case(const char *name, bool device, bool skip_sgd) {
    if (!golden) {
        CHECK_MSG(golden, "no golden file");
        return;
    }
    JsonValue *config = golden_case_config(golden, name);
    if (config) run_case(name, config, device, skip_sgd);
    json_free(config);
}

TEST(resnet_basic_matches_torchvision) { golden_case("resnet_basic", false, false); }
TEST(resnet_bottleneck_cifar_with_bottleneck_head_matches_torchvision) { golden_case("resnet_bottleneck", false, false); }
TEST(wideresnet_matches_fixmatch) { golden_case("wrn", false, false); }
TEST(wideresnet_torchssl_matches) { golden_case("wrn_torchssl", false, false); }
TEST(vit_matches_timm) { golden_case("vit", false, false); }
TEST(deit_distilled_matches_timm) { golden_case("deit_distilled", false, false); }
// The emulated device runs every CUDA thread as a fiber (slow, and ~10x slower under the
// sanitizers): eval and train everywhere, the 5 SGD steps on the three cheapest cases (conv + BN
// with running statistics, attention, the distilled head).
TEST(resnet_basic_on_device) { golden_case("resnet_basic", true, true); }
TEST(resnet_bottleneck_on_device) { golden_case("resnet_bottleneck", true, true); }
TEST(wideresnet_on_device) { golden_case("wrn", true, true); }
TEST(wideresnet_torchssl_on_device) { golden_case("wrn_torchssl", true, false); }
TEST(vit_on_device) { golden_case("vit", true, false); }
TEST(deit_distilled_on_device) { golden_case("deit_distilled", true, false); }

TEST(golden_file_has_no_stray_tensors) {
    if (!golden) return;
    for (int i = 0; i < safetensors_count(golden); i++) {
        const char *name = safetensors_entry(golden, i)->name;
        const char *slash = strchr(name, '/');
        char case_name[256];
        snprintf(case_name, sizeof case_name, "%.*s", slash ? (int)(slash - name) : (int)strlen(name), name);
        CHECK_MSG(slash && safetensors_metadata(golden, case_name), "tensor %s belongs to no case", name);
    }
    CHECK(safetensors_metadata_count(golden) == 6);
}

// ---------------------------------------------------------------- names, counts, initialisation
static Classifier *create(const char *name, int64_t classes, int64_t bottleneck, uint64_t seed) {
    ClassifierOptions options = classifier_default_options(classes);
    options.bottleneck_dim = bottleneck;
    options.seed = seed;
    char error[256];
    Classifier *model = classifier_create(name, &options, error, sizeof error);
    CHECK_MSG(model, "%s: %s", name, error);
    return model;
}

TEST(names_and_parameter_counts) {
    // Trainable element counts of the reference models (torchvision / timm / FixMatch-pytorch,
    // e.g. sum(p.numel() for p in torchvision.models.resnet18().parameters())). A few only: every
    // model is initialised when created (slow under the sanitizers); `gen_model_goldens.py
    // --check-export` loads every architecture into its PyTorch reference with strict=True.
    static const struct {
        const char *name;
        int64_t classes, count;
    } table[] = {
        {"resnet18-cifar", 10, 11173962}, {"wrn-28-2", 10, 1467610}, {"vit-tiny", 1000, 5717416},
        {"deit-tiny-distilled", 1000, 5910800},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        Classifier *m = create(table[i].name, table[i].classes, 0, 1);
        if (!m) continue;
        CHECK_MSG(m->params->numel == table[i].count, "%s: %lld parameters, expected %lld", table[i].name,
                  (long long)m->params->numel, (long long)table[i].count);
        classifier_free(m);
    }
    // Every listed name parses (creating them all would take gigabytes: only the configuration).
    for (const char *const *n = classifier_names(); *n; n++) {
        ClassifierBackbone backbone;
        ClassifierOptions options = classifier_default_options(10);
        char error[256];
        CHECK_MSG(classifier_backbone_for(*n, &options, &backbone, error, sizeof error) == 0, "%s: %s", *n, error);
    }
    ClassifierBackbone b;
    ClassifierOptions options = classifier_default_options(10);
    char error[256];
    CHECK(classifier_backbone_for("resnet101-cifar", &options, &b, error, sizeof error) == 0 && b.resnet.layers[2] == 23 &&
          b.resnet.cifar_stem);
    CHECK(classifier_backbone_for("wrn-28-8", &options, &b, error, sizeof error) == 0 && b.wideresnet.widen == 8 &&
          b.wideresnet.bn_momentum == 0.001 && b.wideresnet.bn_eps == 1e-5 && !b.wideresnet.conv_bias);
    CHECK(classifier_backbone_for("wrn-28-2-torchssl", &options, &b, error, sizeof error) == 0 && b.wideresnet.bn_eps == 1e-3 &&
          b.wideresnet.conv_bias);
    CHECK(classifier_backbone_for("deit-small-distilled", &options, &b, error, sizeof error) == 0 && b.vit.embed_dim == 384 &&
          b.vit.heads == 6 && b.vit.depth == 12 && b.vit.distilled);
    options.patch_size = 4;
    options.image_size = 32;
    CHECK(classifier_backbone_for("vit-base", &options, &b, error, sizeof error) == 0 && b.vit.embed_dim == 768 &&
          b.vit.patch_size == 4 && b.vit.image_size == 32);
    // Bad names and options: one line naming them.
    options.image_size = 30;
    CHECK(classifier_backbone_for("vit-tiny", &options, &b, error, sizeof error) != 0);
    CHECK_MSG(strstr(error, "30") && strstr(error, "patch size 4"), "%s", error);
    options = classifier_default_options(10);
    const char *bad[] = {"resnet19", "resnet18-imagenet", "wrn-27-2", "wrn-28", "wrn-28-0", "vit-huge", "deit-tiny-x", "vgg16", "vit-tiny-distilled"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_MSG(classifier_backbone_for(bad[i], &options, &b, error, sizeof error) != 0, "%s accepted", bad[i]);
        CHECK_MSG(strstr(error, bad[i]), "%s: %s", bad[i], error);
    }
    options.num_classes = 0;
    CHECK(classifier_create("resnet18", &options, error, sizeof error) == NULL && strstr(error, "classes"));
}

// Mean and standard deviation of a CPU tensor.
static void moments(Tensor *t, double *mean, double *std) {
    int64_t n = tensor_numel(t);
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < n; i++) {
        double v = tensor_get(t, i);
        s += v;
        s2 += v * v;
    }
    *mean = s / (double)n;
    *std = sqrt(fmax(s2 / (double)n - *mean * *mean, 0));
}

static double max_abs(Tensor *t) {
    double m = 0;
    for (int64_t i = 0; i < tensor_numel(t); i++) m = fmax(m, fabs(tensor_get(t, i)));
    return m;
}

// std within 5% (the tensors have >= 9000 elements: the sampling error of a std is ~1%).
#define CHECK_INIT(model, name, expected_std)                                                                        \
    do {                                                                                                           \
        Tensor *t_ = params_find((model)->params, name);                                                           \
        CHECK_MSG(t_, "%s missing", name);                                                                         \
        if (t_) {                                                                                                  \
            double mean_, std_;                                                                                    \
            moments(t_, &mean_, &std_);                                                                            \
            CHECK_MSG(fabs(std_ - (expected_std)) <= 0.05 * (expected_std) && fabs(mean_) <= 0.1 * (expected_std), \
                      "%s: mean %g std %g, expected std %g", name, mean_, std_, (double)(expected_std));           \
        }                                                                                                          \
    } while (0)

TEST(initialisation_follows_the_references) {
    Classifier *r = create("resnet50", 1000, 0, 3);
    if (r) {
        CHECK_INIT(r, "conv1.weight", sqrt(2.0 / (64 * 49)));                // kaiming_normal fan_out
        CHECK_INIT(r, "layer3.2.conv2.weight", sqrt(2.0 / (256 * 9)));
        CHECK_INIT(r, "layer4.0.downsample.0.weight", sqrt(2.0 / 2048));
        CHECK_INIT(r, "fc.weight", 1.0 / sqrt(2048) / sqrt(3.0));            // U(-1/sqrt(in), 1/sqrt(in))
        CHECK(max_abs(params_find(r->params, "fc.weight")) <= 1.0 / sqrt(2048));
        CHECK(tensor_get(params_find(r->params, "layer1.0.bn3.weight"), 5) == 1.0);  // zero_init_residual off
        CHECK(tensor_get(params_find(r->params, "layer1.0.bn3.running_var"), 5) == 1.0);
        CHECK(params_find(r->params, "layer1.0.downsample.1.num_batches_tracked") != NULL);
        CHECK(params_find(r->params, "layer1.0.conv1.bias") == NULL);
        // Bottleneck stride on the 3x3 conv (v1.5): layer2.0.conv1 is 1x1 stride 1, conv2 stride 2.
        CHECK(r->resnet.blocks[1][0].conv1.params.stride_h == 1 && r->resnet.blocks[1][0].conv2.params.stride_h == 2);
        classifier_free(r);
    }
    Classifier *w = create("wrn-28-2", 10, 0, 3);
    if (w) {
        CHECK_INIT(w, "block2.layer.1.conv1.weight", sqrt(2.0 / (64 * 9)));
        CHECK_INIT(w, "fc.weight", sqrt(2.0 / (128 + 10)));                  // xavier_normal
        CHECK(max_abs(params_find(w->params, "fc.bias")) == 0);
        CHECK(w->wideresnet.blocks[0][0].bn1.momentum == 0.001);
        CHECK(params_find(w->params, "block1.layer.0.convShortcut.weight") && !params_find(w->params, "block1.layer.1.convShortcut.weight"));
        classifier_free(w);
    }
    Classifier *v = create("deit-tiny-distilled", 1000, 0, 3);
    if (v) {
        CHECK_INIT(v, "pos_embed", 0.02);
        CHECK_INIT(v, "blocks.3.attn.qkv.weight", 0.02);
        CHECK_INIT(v, "head.weight", 0.02);
        CHECK_INIT(v, "head_dist.weight", 0.02);
        CHECK_INIT(v, "patch_embed.proj.weight", 1.0 / sqrt(3 * 256) / sqrt(3.0));  // nn.Conv2d default
        double mean, std;
        moments(params_find(v->params, "cls_token"), &mean, &std);
        CHECK_MSG(std > 0.5e-6 && std < 2e-6, "cls_token std %g, timm draws N(0, 1e-6)", std);
        moments(params_find(v->params, "dist_token"), &mean, &std);
        CHECK_MSG(std > 0.01 && std < 0.03, "dist_token std %g", std);
        CHECK(max_abs(params_find(v->params, "blocks.3.mlp.fc1.bias")) == 0);
        CHECK(tensor_get(params_find(v->params, "norm.weight"), 0) == 1.0);
        CHECK(v->vit.blocks[0].norm1.eps == 1e-6);
        classifier_free(v);
    }
}

TEST(optimizer_groups_separate_head_and_no_decay) {
    Classifier *m = create("wrn-28-2", 31, 256, 1);
    if (!m) return;
    const ParamStore *p = m->params;
    // Head: bottleneck.0.weight [256, 128] and head.weight [31, 256] decay; their biases and the BN1d don't.
    CHECK(p->group_count[CLASSIFIER_GROUP_HEAD_DECAY] == 256 * 128 + 31 * 256);
    CHECK(p->group_count[CLASSIFIER_GROUP_HEAD_NO_DECAY] == 256 + 256 * 2 + 31);
    CHECK(p->group_count[PARAM_GROUP_DECAY] + p->group_count[PARAM_GROUP_NO_DECAY] == 1467610 - 128 * 10 - 10);
    CHECK(m->feature_dim == 128 && m->output_feature_dim == 256);
    Optimizer *sgd = optimizer_new_sgd(p->numel, 0.01, 0.9, 0, 1, 1e-3);
    CHECK(classifier_add_optimizer_groups(m, sgd, 0.1, 1.0, 1e-3) == 0);
    CHECK(sgd->n_groups == 4);
    for (int i = 0; i < sgd->n_groups; i++) {
        const ParamGroup *g = &sgd->groups[i];
        bool head = g->start >= p->group_start[CLASSIFIER_GROUP_HEAD_DECAY];
        bool decays = g->start == p->group_start[PARAM_GROUP_DECAY] || g->start == p->group_start[CLASSIFIER_GROUP_HEAD_DECAY];
        CHECK(g->lr_multiplier == (head ? 1.0 : 0.1) && g->weight_decay == (decays ? 1e-3 : 0.0));
    }
    optimizer_free(sgd);
    classifier_free(m);
}

// ---------------------------------------------------------------- features API
TEST(features_and_stages_have_the_documented_shapes) {
    TensorScope scope = tensor_scope_begin();
    Classifier *r = create("resnet18", 7, 64, 2);
    Classifier *w = create("wrn-10-1", 7, 0, 2);
    ClassifierOptions vo = classifier_default_options(7);
    vo.image_size = 32;
    vo.patch_size = 8;
    char error[256];
    Classifier *v = classifier_create("deit-tiny-distilled", &vo, error, sizeof error);
    CHECK_MSG(v, "%s", error);
    if (r && w && v) {
        Rng rng = rng_make(5, 0);
        Tensor *x = tensor_empty(DTYPE_F32, SHAPE(2, 3, 32, 32));
        rng_fill_normal_f32(&rng, tensor_f32(x), tensor_numel(x), 0, 1);
        bool previous = autograd_set_enabled(false);
        ClassifierOutput o = classifier_run(r, x, false, CLASSIFIER_WANT_STAGES);
        CHECK(o.n_stages == 4);
        CHECK(shape_equal(tensor_shape(o.stages[0]), SHAPE(2, 64, 8, 8)) && shape_equal(tensor_shape(o.stages[3]), SHAPE(2, 512, 1, 1)));
        CHECK(shape_equal(tensor_shape(o.pooled), SHAPE(2, 512)) && shape_equal(tensor_shape(o.features), SHAPE(2, 64)) &&
              shape_equal(tensor_shape(o.logits), SHAPE(2, 7)));
        // The head alone on the pooled features gives the same logits.
        Tensor *f;
        Tensor *again = classifier_head_forward(r, o.pooled, false, &f);
        for (int i = 0; i < 14; i++) CHECK(tensor_get(again, i) == tensor_get(o.logits, i));
        o = classifier_run(w, x, false, CLASSIFIER_WANT_STAGES);
        CHECK(o.n_stages == 3 && shape_equal(tensor_shape(o.stages[2]), SHAPE(2, 64, 8, 8)) &&
              shape_equal(tensor_shape(o.pooled), SHAPE(2, 64)) && o.features == o.pooled);
        o = classifier_run(v, x, false, 0);
        CHECK(o.n_stages == 0 && shape_equal(tensor_shape(o.pooled), SHAPE(2, 192)) && shape_equal(tensor_shape(o.logits), SHAPE(2, 7)));
        o = classifier_run(v, x, false, CLASSIFIER_WANT_STAGES);
        CHECK(o.n_stages == 12 && shape_equal(tensor_shape(o.stages[11]), SHAPE(2, 2 + 16, 192)));
        autograd_set_enabled(previous);
    }
    classifier_free(r);
    classifier_free(w);
    classifier_free(v);
    tensor_scope_end(scope);
}

// ---------------------------------------------------------------- saving and loading
static char tmpdir[64];

static const char *tmp_path(const char *leaf) {
    static char path[4][256];
    static int next;
    char *p = path[next++ % 4];
    snprintf(p, 256, "%s/%s", tmpdir, leaf);
    return p;
}

static bool same_tensor(Tensor *a, Tensor *b) {
    if (!tensor_same_shape(a, b)) return false;
    for (int64_t i = 0; i < tensor_numel(a); i++)
        if (tensor_get(a, i) != tensor_get(b, i)) return false;
    return true;
}

// Writes a copy of `source` without tensor `drop` (NULL: none) and with `replace` given new data.
static void rewrite(const char *source, const char *destination, const char *drop, const char *replace, DType dtype,
                    const void *data) {
    SafetensorsFile *in;
    char error[512];
    CHECK_MSG(safetensors_open(source, &in, error, sizeof error) == 0, "%s", error);
    SafetensorsWriter *writer = safetensors_writer_new();
    for (int i = 0; i < safetensors_count(in); i++) {
        const SafetensorsEntry *e = safetensors_entry(in, i);
        if (drop && !strcmp(e->name, drop)) continue;
        bool r = replace && !strcmp(e->name, replace);
        safetensors_writer_add(writer, e->name, r ? dtype : e->dtype, e->ndim, e->shape, r ? data : e->data);
    }
    CHECK_MSG(safetensors_writer_write(writer, destination, error, sizeof error) == 0, "%s", error);
    safetensors_writer_free(writer);
    safetensors_close(in);
}

TEST(save_and_load_round_trip) {
    char error[512], report[1024];
    Classifier *a = create("wrn-10-1", 10, 0, 1), *b = create("wrn-10-1", 10, 0, 2);
    if (!a || !b) return;
    const char *path = tmp_path("wrn.safetensors");
    CHECK_MSG(classifier_save(a, path, error, sizeof error) == 0, "%s", error);
    CHECK_MSG(classifier_load(b, path, CLASSIFIER_LOAD_STRICT, report, sizeof report, error, sizeof error) == 0, "%s", error);
    CHECK_MSG(report[0] == 0, "%s", report);
    for (int i = 0; i < a->params->count; i++)
        CHECK_MSG(same_tensor(a->params->items[i].value, b->params->items[i].value), "%s differs", a->params->items[i].name);
    SafetensorsFile *f;
    CHECK(safetensors_open(path, &f, error, sizeof error) == 0);
    CHECK(f && !strcmp(safetensors_metadata(f, "tailor.model"), "wrn-10-1") && !strcmp(safetensors_metadata(f, "tailor.num_classes"), "10"));
    safetensors_close(f);

    // Loading onto a model on the device.
    Classifier *d = create("wrn-10-1", 10, 0, 3);
    params_to_device(d->params, CUDA0);
    CHECK_MSG(classifier_load(d, path, CLASSIFIER_LOAD_STRICT, NULL, 0, error, sizeof error) == 0, "%s", error);
    CHECK(same_tensor(params_find(d->params, "block2.layer.0.convShortcut.weight"), params_find(a->params, "block2.layer.0.convShortcut.weight")));
    CHECK(same_tensor(params_find(d->params, "bn1.running_var"), params_find(a->params, "bn1.running_var")));
    classifier_free(d);

    // torchvision's i64 counter loads; a missing one is 0 (old torchvision checkpoints), reported.
    int64_t tracked = 77;
    const char *edited = tmp_path("edited.safetensors");
    rewrite(path, edited, NULL, "bn1.num_batches_tracked", DTYPE_I64, &tracked);
    CHECK_MSG(classifier_load(b, edited, CLASSIFIER_LOAD_STRICT, report, sizeof report, error, sizeof error) == 0, "%s", error);
    CHECK(tensor_get(params_find(b->params, "bn1.num_batches_tracked"), 0) == 77);
    rewrite(path, edited, "block1.layer.0.bn2.num_batches_tracked", NULL, DTYPE_F32, NULL);
    tensor_fill_raw(params_find(b->params, "block1.layer.0.bn2.num_batches_tracked"), 5);
    CHECK_MSG(classifier_load(b, edited, CLASSIFIER_LOAD_STRICT, report, sizeof report, error, sizeof error) == 0, "%s", error);
    CHECK_MSG(!strcmp(report, "missing from the file, set to 0: block1.layer.0.bn2.num_batches_tracked"), "%s", report);
    CHECK(tensor_get(params_find(b->params, "block1.layer.0.bn2.num_batches_tracked"), 0) == 0);

    // A missing backbone tensor, a tensor the model lacks, a NaN: refused, and nothing changes.
    Classifier *c = create("wrn-10-1", 10, 0, 4);
    float before = (float)tensor_get(params_find(c->params, "conv1.weight"), 0);
    rewrite(path, edited, "block3.layer.0.conv2.weight", NULL, DTYPE_F32, NULL);
    CHECK(classifier_load(c, edited, CLASSIFIER_LOAD_NEW_HEAD, report, sizeof report, error, sizeof error) != 0);
    CHECK_MSG(strstr(error, "block3.layer.0.conv2.weight") && strstr(error, "missing"), "%s", error);
    Classifier *deeper = create("wrn-16-1", 10, 0, 4);
    CHECK(classifier_load(deeper, path, CLASSIFIER_LOAD_NEW_HEAD, report, sizeof report, error, sizeof error) != 0);
    CHECK_MSG(strstr(error, "block1.layer.1.") && strstr(error, "missing"), "%s", error);
    classifier_free(deeper);
    Classifier *shallow = create("wrn-10-1", 10, 0, 4);
    const char *deep_path = tmp_path("deep.safetensors");
    deeper = create("wrn-16-1", 10, 0, 4);
    CHECK(classifier_save(deeper, deep_path, error, sizeof error) == 0);
    CHECK(classifier_load(shallow, deep_path, CLASSIFIER_LOAD_STRICT, report, sizeof report, error, sizeof error) != 0);
    CHECK_MSG(strstr(error, "is not part of model wrn-10-1"), "%s", error);
    classifier_free(deeper);
    classifier_free(shallow);
    unlink(deep_path);
    int64_t n = tensor_numel(params_find(a->params, "block2.layer.0.conv1.weight"));
    float *poisoned = calloc((size_t)n, sizeof(float));
    poisoned[9] = NAN;
    rewrite(path, edited, NULL, "block2.layer.0.conv1.weight", DTYPE_F32, poisoned);
    free(poisoned);
    CHECK(classifier_load(c, edited, CLASSIFIER_LOAD_STRICT, report, sizeof report, error, sizeof error) != 0);
    CHECK_MSG(strstr(error, "non-finite") && strstr(error, "element 9"), "%s", error);
    CHECK(tensor_get(params_find(c->params, "conv1.weight"), 0) == before);
    CHECK(classifier_load(c, "/nonexistent/x.safetensors", 0, report, sizeof report, error, sizeof error) != 0 &&
          strstr(error, "/nonexistent/x.safetensors"));
    classifier_free(c);
    unlink(edited);
    unlink(path);
    classifier_free(a);
    classifier_free(b);
}

TEST(a_new_head_needs_the_flag) {
    char error[512], report[1024];
    Classifier *source = create("wrn-10-1", 10, 0, 1);
    const char *path = tmp_path("source.safetensors");
    CHECK(classifier_save(source, path, error, sizeof error) == 0);

    // Other number of classes: strict refuses naming the head; the flag keeps a fresh head.
    Classifier *seven = create("wrn-10-1", 7, 0, 2);
    Tensor *fresh = tensor_keep(op_clone(params_find(seven->params, "fc.weight")));
    CHECK(classifier_load(seven, path, CLASSIFIER_LOAD_STRICT, report, sizeof report, error, sizeof error) != 0);
    CHECK_MSG(strstr(error, "fc.weight") && strstr(error, "[10, 64]") && strstr(error, "[7, 64]") && strstr(error, "new-head"), "%s", error);
    CHECK_MSG(classifier_load(seven, path, CLASSIFIER_LOAD_NEW_HEAD, report, sizeof report, error, sizeof error) == 0, "%s", error);
    CHECK_MSG(!strcmp(report, "new head, freshly initialised: fc.weight ([10, 64] in the file, [7, 64] here), fc.bias ([10] in the file, [7] here)"), "%s", report);
    CHECK(same_tensor(params_find(seven->params, "fc.weight"), fresh));
    CHECK(same_tensor(params_find(seven->params, "block3.layer.0.conv1.weight"), params_find(source->params, "block3.layer.0.conv1.weight")));
    tensor_release(fresh);
    classifier_free(seven);

    // A bottleneck model from a plain checkpoint: fc ignored, bottleneck and head fresh.
    Classifier *bottleneck = create("wrn-10-1", 10, 32, 2);
    CHECK(classifier_load(bottleneck, path, CLASSIFIER_LOAD_STRICT, report, sizeof report, error, sizeof error) != 0);
    CHECK_MSG(classifier_load(bottleneck, path, CLASSIFIER_LOAD_NEW_HEAD, report, sizeof report, error, sizeof error) == 0, "%s", error);
    CHECK_MSG(strstr(report, "new head, freshly initialised: bottleneck.0.weight, bottleneck.0.bias, bottleneck.1.weight, "
                             "bottleneck.1.bias, bottleneck.1.running_mean, bottleneck.1.running_var, "
                             "bottleneck.1.num_batches_tracked, head.weight, head.bias; head tensors of the file ignored: ") &&
                  strstr(report, "fc.weight") && strstr(report, "fc.bias"), "%s", report);
    CHECK(same_tensor(params_find(bottleneck->params, "bn1.weight"), params_find(source->params, "bn1.weight")));
    classifier_free(bottleneck);
    unlink(path);
    classifier_free(source);

    // DeiT distilled checkpoint into a plain DeiT: head_dist is a head tensor the model lacks.
    ClassifierOptions o = classifier_default_options(5);
    o.image_size = 32;
    o.patch_size = 16;
    Classifier *distilled = classifier_create("deit-tiny-distilled", &o, error, sizeof error);
    Classifier *plain = classifier_create("deit-tiny", &o, error, sizeof error);
    CHECK(distilled && plain);
    if (distilled && plain) {
        path = tmp_path("deit.safetensors");
        CHECK(classifier_save(plain, path, error, sizeof error) == 0);
        // The plain model has no dist_token: not a head tensor, so even the flag refuses.
        CHECK(classifier_load(distilled, path, CLASSIFIER_LOAD_NEW_HEAD, report, sizeof report, error, sizeof error) != 0);
        CHECK_MSG(strstr(error, "pos_embed") && strstr(error, "[1, 5, 192]"), "%s", error);
        CHECK(classifier_save(distilled, path, error, sizeof error) == 0);
        CHECK(classifier_load(plain, path, CLASSIFIER_LOAD_NEW_HEAD, report, sizeof report, error, sizeof error) != 0);
        CHECK_MSG(strstr(error, "dist_token") || strstr(error, "pos_embed"), "%s", error);
        unlink(path);
    }
    classifier_free(distilled);
    classifier_free(plain);
}

// ---------------------------------------------------------------- export for the PyTorch check
// TAILOR_MODELS_EXPORT=DIR: full-size models, freshly initialised, with an input and our eval-mode
// logits, for `gen_model_goldens.py --check-export DIR`.
static void export_model(const char *dir, const char *name, int64_t classes, int64_t image) {
    ClassifierOptions o = classifier_default_options(classes);
    o.seed = 11;
    o.image_size = image;
    char error[512], path[512], file[160];
    Classifier *m = classifier_create(name, &o, error, sizeof error);
    CHECK_MSG(m, "%s", error);
    if (!m) return;
    snprintf(path, sizeof path, "%s/%s.safetensors", dir, name);
    CHECK_MSG(classifier_save(m, path, error, sizeof error) == 0, "%s", error);
    TensorScope scope = tensor_scope_begin();
    Rng rng = rng_make(12, 0);
    Tensor *x = tensor_empty(DTYPE_F32, SHAPE(2, 3, image, image));
    rng_fill_normal_f32(&rng, tensor_f32(x), tensor_numel(x), 0, 1);
    bool previous = autograd_set_enabled(false);
    Tensor *logits = op_contiguous(classifier_forward(m, x, false));
    autograd_set_enabled(previous);
    SafetensorsWriter *w = safetensors_writer_new();
    safetensors_writer_add(w, "x", DTYPE_F32, 4, x->shape, tensor_data(x));
    safetensors_writer_add(w, "logits", DTYPE_F32, 2, logits->shape, tensor_data(logits));
    char size[32];
    snprintf(size, sizeof size, "%lld", (long long)image);
    safetensors_writer_set_metadata(w, "image_size", size);
    snprintf(file, sizeof file, "%s.io.safetensors", name);
    snprintf(path, sizeof path, "%s/%s", dir, file);
    CHECK_MSG(safetensors_writer_write(w, path, error, sizeof error) == 0, "%s", error);
    safetensors_writer_free(w);
    tensor_scope_end(scope);
    classifier_free(m);
}

static void export_models(const char *dir) {
    static const struct {
        const char *name;
        int64_t classes, image;
    } list[] = {
        {"resnet18", 1000, 64},    {"resnet34", 10, 64},          {"resnet50", 1000, 64},         {"resnet101", 12, 64},
        {"resnet18-cifar", 10, 32}, {"resnet50-cifar", 100, 32},  {"wrn-28-2", 10, 32},           {"wrn-28-8", 100, 32},
        {"wrn-28-2-torchssl", 10, 32}, {"vit-tiny", 1000, 64},    {"vit-small", 10, 64},          {"vit-base", 10, 32},
        {"deit-tiny", 10, 64},     {"deit-small-distilled", 1000, 64}, {"deit-base-distilled", 10, 32},
    };
    for (size_t i = 0; i < sizeof list / sizeof list[0]; i++) export_model(dir, list[i].name, list[i].classes, list[i].image);
}

TEST(export_for_pytorch) {
    const char *dir = getenv("TAILOR_MODELS_EXPORT");
    if (!dir || !*dir) return;
    mkdir(dir, 0755);
    export_models(dir);
}

int main(void) {
    golden_print_errors = getenv("TAILOR_GOLDEN_ERRORS") != NULL;
    char path[4096], error[512];
    const char *root = getenv("TAILOR_ROOT");
    snprintf(path, sizeof path, "%s%stests/golden/models.safetensors", root && *root ? root : "", root && *root ? "/" : "");
    if (safetensors_open(path, &golden, error, sizeof error) != 0)
        printf("  cannot read the golden file: %s (run from the repository root or set TAILOR_ROOT)\n", error);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/tailor_models_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        printf("cannot create a temporary directory\n");
        return 1;
    }
    RUN_TEST(resnet_basic_matches_torchvision);
    RUN_TEST(resnet_bottleneck_cifar_with_bottleneck_head_matches_torchvision);
    RUN_TEST(wideresnet_matches_fixmatch);
    RUN_TEST(wideresnet_torchssl_matches);
    RUN_TEST(vit_matches_timm);
    RUN_TEST(deit_distilled_matches_timm);
    RUN_TEST(golden_file_has_no_stray_tensors);
    RUN_TEST(resnet_basic_on_device);
    RUN_TEST(resnet_bottleneck_on_device);
    RUN_TEST(wideresnet_on_device);
    RUN_TEST(wideresnet_torchssl_on_device);
    RUN_TEST(vit_on_device);
    RUN_TEST(deit_distilled_on_device);
    RUN_TEST(names_and_parameter_counts);
    RUN_TEST(initialisation_follows_the_references);
    RUN_TEST(optimizer_groups_separate_head_and_no_decay);
    RUN_TEST(features_and_stages_have_the_documented_shapes);
    RUN_TEST(save_and_load_round_trip);
    RUN_TEST(a_new_head_needs_the_flag);
    RUN_TEST(export_for_pytorch);
    rmdir(tmpdir);
    safetensors_close(golden);
    return test_summary();
}
