#include "models/classifier.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/safetensors.h"

static const char *const NAMES[] = {
    "resnet18",          "resnet34",          "resnet50",         "resnet101",          "resnet18-cifar",
    "resnet34-cifar",    "resnet50-cifar",    "resnet101-cifar",  "wrn-28-2",           "wrn-28-8",
    "wrn-28-2-torchssl", "wrn-28-8-torchssl", "vit-tiny",         "vit-small",          "vit-base",
    "deit-tiny",         "deit-small",        "deit-base",        "deit-tiny-distilled", "deit-small-distilled",
    "deit-base-distilled", NULL,
};

const char *const *classifier_names(void) { return NAMES; }

ClassifierOptions classifier_default_options(int64_t num_classes) {
    return (ClassifierOptions){.num_classes = num_classes, .image_size = 0, .patch_size = 0, .bottleneck_dim = 0,
                               .in_channels = 3, .seed = 0};
}

static void set_error(char *error, size_t error_size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_error(char *error, size_t error_size, const char *fmt, ...) {
    if (!error || !error_size) return;
    va_list args;
    va_start(args, fmt);
    vsnprintf(error, error_size, fmt, args);
    va_end(args);
}

// A decimal number at *s (advanced past it); -1 when there is none.
static int parse_int(const char **s) {
    if (!isdigit((unsigned char)**s)) return -1;
    long v = 0;
    while (isdigit((unsigned char)**s) && v < 100000) v = v * 10 + (*(*s)++ - '0');
    return (int)v;
}

int classifier_backbone_for(const char *name, const ClassifierOptions *options, ClassifierBackbone *backbone, char *error,
                            size_t error_size) {
    memset(backbone, 0, sizeof *backbone);
    int64_t in_channels = options->in_channels > 0 ? options->in_channels : 3;
    if (!strncmp(name, "resnet", 6)) {
        const char *s = name + 6;
        int depth = parse_int(&s);
        bool cifar = !strcmp(s, "-cifar");
        if (depth < 0 || (*s && !cifar) || (depth != 18 && depth != 34 && depth != 50 && depth != 101) ||
            resnet_config(depth, cifar, &backbone->resnet) != 0) {
            set_error(error, error_size, "unknown model '%s' (ResNets: resnet18, resnet34, resnet50, resnet101, with -cifar for the CIFAR stem)", name);
            return -1;
        }
        backbone->arch = CLASSIFIER_RESNET;
        backbone->resnet.in_channels = in_channels;
        return 0;
    }
    if (!strncmp(name, "wrn-", 4)) {
        const char *s = name + 4;
        int depth = parse_int(&s), widen = -1;
        if (*s == '-') s++, widen = parse_int(&s);
        bool torchssl = !strcmp(s, "-torchssl");
        if (depth < 0 || widen < 0 || (*s && !torchssl) || wideresnet_config(depth, widen, torchssl, &backbone->wideresnet) != 0) {
            set_error(error, error_size, "unknown model '%s' (WideResNets: wrn-D-K with (D - 4) %% 6 == 0 and K >= 1, e.g. wrn-28-2, optionally -torchssl)", name);
            return -1;
        }
        backbone->arch = CLASSIFIER_WIDERESNET;
        backbone->wideresnet.in_channels = in_channels;
        return 0;
    }
    bool vit = !strncmp(name, "vit-", 4), deit = !strncmp(name, "deit-", 5);
    if (vit || deit) {
        char size[16] = "";
        const char *s = name + (vit ? 4 : 5);
        size_t n = strcspn(s, "-");
        if (n < sizeof size) memcpy(size, s, n), size[n] = 0;
        bool distilled = deit && !strcmp(s + n, "-distilled");
        int64_t patch = options->patch_size > 0 ? options->patch_size : 16;
        int64_t image = options->image_size > 0 ? options->image_size : 224;
        if ((s[n] && !distilled) || (strcmp(size, "tiny") && strcmp(size, "small") && strcmp(size, "base"))) {
            set_error(error, error_size, "unknown model '%s' (vit-tiny, vit-small, vit-base, deit-tiny, deit-small, deit-base, deit-*-distilled)", name);
            return -1;
        }
        if (vit_config(size, patch, image, distilled, &backbone->vit) != 0) {
            set_error(error, error_size, "%s: the image size %lld must be a positive multiple of the patch size %lld", name,
                      (long long)image, (long long)patch);
            return -1;
        }
        backbone->arch = CLASSIFIER_VIT;
        backbone->vit.in_channels = in_channels;
        return 0;
    }
    set_error(error, error_size, "unknown model '%s' (known: resnet18/34/50/101[-cifar], wrn-D-K[-torchssl], vit-/deit-tiny/small/base, deit-*-distilled)", name);
    return -1;
}

Classifier *classifier_create(const char *name, const ClassifierOptions *options, char *error, size_t error_size) {
    ClassifierBackbone backbone;
    if (classifier_backbone_for(name, options, &backbone, error, error_size) != 0) return NULL;
    return classifier_create_custom(name, &backbone, options, error, error_size);
}

// Moves the parameters added since `first` into the head's optimizer groups (2 / 3).
static void mark_head(ParamStore *store, int first) {
    for (int i = first; i < store->count; i++)
        if (store->items[i].group == PARAM_GROUP_DECAY) store->items[i].group = CLASSIFIER_GROUP_HEAD_DECAY;
        else if (store->items[i].group == PARAM_GROUP_NO_DECAY) store->items[i].group = CLASSIFIER_GROUP_HEAD_NO_DECAY;
}

Classifier *classifier_create_custom(const char *name, const ClassifierBackbone *backbone, const ClassifierOptions *options,
                                     char *error, size_t error_size) {
    if (options->num_classes < 1) {
        set_error(error, error_size, "%s: the number of classes must be at least 1 (got %lld)", name, (long long)options->num_classes);
        return NULL;
    }
    if (options->bottleneck_dim < 0) {
        set_error(error, error_size, "%s: the bottleneck width must be 0 (none) or positive (got %lld)", name,
                  (long long)options->bottleneck_dim);
        return NULL;
    }
    Classifier *model = calloc(1, sizeof *model);
    if (!model) tensor_fatal("classifier", "out of memory");
    snprintf(model->name, sizeof model->name, "%s", name);
    model->options = *options;
    model->backbone = *backbone;
    model->params = params_new();
    Rng rng = rng_make(options->seed, 0);
    switch (backbone->arch) {
    case CLASSIFIER_RESNET:
        resnet_create(&model->resnet, model->params, "", backbone->resnet, &rng);
        model->feature_dim = model->resnet.out_features;
        model->n_stages = 4;
        break;
    case CLASSIFIER_WIDERESNET:
        wideresnet_create(&model->wideresnet, model->params, "", backbone->wideresnet, &rng);
        model->feature_dim = model->wideresnet.out_features;
        model->n_stages = 3;
        break;
    case CLASSIFIER_VIT:
        if (backbone->vit.depth > CLASSIFIER_MAX_STAGES) tensor_fatal("classifier", "at most %d ViT blocks", CLASSIFIER_MAX_STAGES);
        vit_create(&model->vit, model->params, "", backbone->vit, &rng);
        model->feature_dim = backbone->vit.embed_dim;
        model->n_stages = backbone->vit.depth;
        break;
    }
    int head_first = model->params->count;
    int64_t classes = options->num_classes;
    if (options->bottleneck_dim > 0) {
        // tllib's ImageClassifier: nn.Linear / nn.BatchNorm1d / nn.Linear, PyTorch's default init.
        model->has_bottleneck = true;
        model->bottleneck_fc = linear_create(model->params, "bottleneck.0", model->feature_dim, options->bottleneck_dim, true, &rng);
        model->bottleneck_bn = batchnorm_create(model->params, "bottleneck.1", options->bottleneck_dim);
        model->head = linear_create(model->params, "head", options->bottleneck_dim, classes, true, &rng);
        model->output_feature_dim = options->bottleneck_dim;
    } else {
        model->output_feature_dim = model->feature_dim;
        if (backbone->arch == CLASSIFIER_VIT) {
            model->head = linear_create(model->params, "head", model->feature_dim, classes, true, NULL);
            init_trunc_normal(model->head.weight, &rng, 0.0, 0.02, -2.0, 2.0);
            if (backbone->vit.distilled) {
                model->has_head_dist = true;
                model->head_dist = linear_create(model->params, "head_dist", model->feature_dim, classes, true, NULL);
                init_trunc_normal(model->head_dist.weight, &rng, 0.0, 0.02, -2.0, 2.0);
            }
        } else if (backbone->arch == CLASSIFIER_WIDERESNET) {
            model->head = linear_create(model->params, "fc", model->feature_dim, classes, true, NULL);
            init_xavier_normal(model->head.weight, &rng);
        } else {
            model->head = linear_create(model->params, "fc", model->feature_dim, classes, true, &rng);
        }
    }
    mark_head(model->params, head_first);
    params_finalize(model->params);
    return model;
}

void classifier_free(Classifier *model) {
    if (!model) return;
    switch (model->backbone.arch) {
    case CLASSIFIER_RESNET: resnet_free(&model->resnet); break;
    case CLASSIFIER_WIDERESNET: wideresnet_free(&model->wideresnet); break;
    case CLASSIFIER_VIT: vit_free(&model->vit); break;
    }
    params_free(model->params);
    free(model);
}

static Tensor *bottleneck_forward(Classifier *model, Tensor *pooled, bool training) {
    if (!model->has_bottleneck) return pooled;
    return op_relu(batchnorm_forward(&model->bottleneck_bn, linear_forward(&model->bottleneck_fc, pooled), training));
}

Tensor *classifier_head_forward(Classifier *model, Tensor *pooled, bool training, Tensor **features_out) {
    if (model->has_head_dist)
        tensor_fatal("classifier", "%s: the distilled head needs both tokens; use classifier_run", model->name);
    Tensor *features = bottleneck_forward(model, pooled, training);
    if (features_out) *features_out = features;
    return linear_forward(&model->head, features);
}

ClassifierOutput classifier_run(Classifier *model, Tensor *x, bool training, int flags) {
    ClassifierOutput out = {0};
    Tensor **stages = (flags & CLASSIFIER_WANT_STAGES) ? out.stages : NULL;
    if (x->ndim != 4) {
        char got[96];
        tensor_fatal("classifier", "%s: input %s, expected [B, C, H, W]", model->name, tensor_shape_string(x, got, sizeof got));
    }
    switch (model->backbone.arch) {
    case CLASSIFIER_RESNET: out.pooled = resnet_forward(&model->resnet, x, training, stages); break;
    case CLASSIFIER_WIDERESNET: out.pooled = wideresnet_forward(&model->wideresnet, x, training, stages); break;
    case CLASSIFIER_VIT: {
        Tensor *tokens = vit_forward_tokens(&model->vit, x, stages);
        out.pooled = vit_pool(&model->vit, tokens);
        if (model->has_head_dist) {
            // timm's VisionTransformerDistilled.forward_head: (head(x[:, 0]) + head_dist(x[:, 1])) / 2
            // (in training too, unless distilled training is switched on, which we do not offer).
            out.features = out.pooled;
            Tensor *a = linear_forward(&model->head, op_select(tokens, 1, 0));
            Tensor *b = linear_forward(&model->head_dist, op_select(tokens, 1, 1));
            out.logits = op_mul_scalar(op_add(a, b), 0.5);
        }
        break;
    }
    }
    if (stages) out.n_stages = model->n_stages;
    if (!out.logits) out.logits = classifier_head_forward(model, out.pooled, training, &out.features);
    return out;
}

Tensor *classifier_forward(Classifier *model, Tensor *x, bool training) { return classifier_run(model, x, training, 0).logits; }

// Calls visit on every BatchNorm of the model: backbone and bottleneck.
static void for_each_batchnorm(Classifier *model, void (*visit)(BatchNorm *, const void *), const void *context) {
    if (model->has_bottleneck) visit(&model->bottleneck_bn, context);
    if (model->backbone.arch == CLASSIFIER_RESNET) {
        ResNet *net = &model->resnet;
        visit(&net->bn1, context);
        for (int s = 0; s < 4; s++)
            for (int i = 0; i < net->config.layers[s]; i++) {
                ResNetBlock *b = &net->blocks[s][i];
                visit(&b->bn1, context);
                visit(&b->bn2, context);
                if (b->bn3.weight) visit(&b->bn3, context);
                if (b->has_downsample) visit(&b->downsample_bn, context);
            }
    } else if (model->backbone.arch == CLASSIFIER_WIDERESNET) {
        WideResNet *net = &model->wideresnet;
        visit(&net->bn1, context);
        for (int g = 0; g < 3; g++)
            for (int i = 0; i < net->blocks_per_group; i++) {
                visit(&net->blocks[g][i].bn1, context);
                visit(&net->blocks[g][i].bn2, context);
            }
    }
}

static void set_momentum(BatchNorm *layer, const void *context) { layer->momentum = *(const double *)context; }
static void set_synchronized(BatchNorm *layer, const void *context) { layer->synchronized = *(const bool *)context; }

void classifier_set_bn_momentum(Classifier *model, double momentum) {
    for_each_batchnorm(model, set_momentum, &momentum);
    if (model->backbone.arch == CLASSIFIER_WIDERESNET) model->wideresnet.config.bn_momentum = momentum;
}

void classifier_set_sync_batchnorm(Classifier *model, bool synchronized) {
    for_each_batchnorm(model, set_synchronized, &synchronized);
}

int classifier_add_optimizer_groups(const Classifier *model, Optimizer *optimizer, double backbone_lr_multiplier,
                                    double head_lr_multiplier, double weight_decay) {
    const ParamStore *p = model->params;
    static const int groups[4] = {PARAM_GROUP_DECAY, PARAM_GROUP_NO_DECAY, CLASSIFIER_GROUP_HEAD_DECAY, CLASSIFIER_GROUP_HEAD_NO_DECAY};
    for (int i = 0; i < 4; i++) {
        int g = groups[i];
        if (p->group_count[g] == 0) continue;
        double lr = g >= CLASSIFIER_GROUP_HEAD_DECAY ? head_lr_multiplier : backbone_lr_multiplier;
        double wd = (g == PARAM_GROUP_DECAY || g == CLASSIFIER_GROUP_HEAD_DECAY) ? weight_decay : 0.0;
        if (optimizer_add_group(optimizer, p->group_start[g], p->group_count[g], lr, wd) != 0) return -1;
    }
    return 0;
}

bool classifier_is_head_name(const char *name) {
    static const char *const prefixes[] = {"fc.", "head.", "head_dist.", "bottleneck."};
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
        if (!strncmp(name, prefixes[i], strlen(prefixes[i]))) return true;
    return false;
}

// ---------------------------------------------------------------- loading and saving

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

// A growing list "a, b, c" for one kind of report entry.
typedef struct {
    char text[2048];
    size_t used;
    int count;
} NameList;

static void list_add(NameList *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void list_add(NameList *l, const char *fmt, ...) {
    l->count++;
    if (l->used + 1 >= sizeof l->text) return;
    if (l->used) l->used += (size_t)snprintf(l->text + l->used, sizeof l->text - l->used, ", ");
    if (l->used + 1 >= sizeof l->text) return;
    va_list args;
    va_start(args, fmt);
    int n = vsnprintf(l->text + l->used, sizeof l->text - l->used, fmt, args);
    va_end(args);
    l->used = n < 0 ? l->used : l->used + (size_t)n;
    if (l->used >= sizeof l->text) l->used = sizeof l->text - 1;
}

// "<title>: <list>" appended to the report, "; "-separated.
static void report_list(char *report, size_t size, const char *title, const NameList *l) {
    if (!report || !size || !l->count) return;
    size_t used = strlen(report);
    if (used + 1 >= size) return;
    snprintf(report + used, size - used, "%s%s: %s", used ? "; " : "", title, l->text);
}

static Shape entry_shape(const SafetensorsEntry *e) {
    Shape s = {.ndim = e->ndim};
    for (int d = 0; d < e->ndim; d++) s.dims[d] = e->shape[d];
    return s;
}

int classifier_load(Classifier *model, const char *path, int flags, char *report_text, size_t report_size, char *error,
                    size_t error_size) {
    ParamStore *store = model->params;
    bool new_head = (flags & CLASSIFIER_LOAD_NEW_HEAD) != 0;
    if (report_text && report_size) report_text[0] = 0;
    SafetensorsFile *file;
    if (safetensors_open(path, &file, error, error_size) != 0) return -1;
    NameList *fresh = calloc(3, sizeof(NameList)), *ignored = fresh + 1, *zeroed = fresh + 2;
    int status = 0;
    // What to do with each tensor of the model: 1 load, 2 set to zero (a missing counter), 0 keep (fresh head).
    char *load = calloc((size_t)(store->count ? store->count : 1), 1);
    Tensor **staged = calloc((size_t)(store->count ? store->count : 1), sizeof(Tensor *));
    if (!fresh || !load || !staged) tensor_fatal("classifier_load", "out of memory");
    for (int i = 0; i < store->count && status == 0; i++) {
        const Param *p = &store->items[i];
        const SafetensorsEntry *e = safetensors_find(file, p->name);
        bool head = classifier_is_head_name(p->name);
        char a[96], b[96];
        if (!e) {
            if (head && new_head) {
                list_add(fresh, "%s", p->name);
            } else if (ends_with(p->name, ".num_batches_tracked")) {
                list_add(zeroed, "%s", p->name);
                load[i] = 2;
            } else {
                set_error(error, error_size, "%s: tensor '%s' is missing from the file%s", path, p->name,
                          head ? " (a new classification head needs the new-head option)" : "");
                status = -1;
            }
            continue;
        }
        Shape found = entry_shape(e), expected = tensor_shape(p->value);
        if (!shape_equal(found, expected)) {
            if (head && new_head) {
                list_add(fresh, "%s (%s in the file, %s here)", p->name, shape_string(found, a, sizeof a),
                         shape_string(expected, b, sizeof b));
                continue;
            }
            set_error(error, error_size, "%s: tensor '%s' has shape %s, the model expects %s%s", path, p->name,
                      shape_string(found, a, sizeof a), shape_string(expected, b, sizeof b),
                      head ? " (a new classification head needs the new-head option)" : "");
            status = -1;
            continue;
        }
        if (!dtype_is_float(e->dtype) && p->group >= 0) {
            set_error(error, error_size, "%s: tensor '%s' has dtype %s; a trainable parameter must be floating point", path,
                      p->name, dtype_name(e->dtype));
            status = -1;
            continue;
        }
        load[i] = 1;
    }
    for (int i = 0; i < safetensors_count(file) && status == 0; i++) {
        const SafetensorsEntry *e = safetensors_entry(file, i);
        if (params_find(store, e->name)) continue;
        if (new_head && classifier_is_head_name(e->name)) {
            list_add(ignored, "%s", e->name);
            continue;
        }
        set_error(error, error_size, "%s: tensor '%s' is not part of model %s", path, e->name, model->name);
        status = -1;
    }
    // Stage every value on the host and check it is finite before anything changes.
    TensorScope scope = tensor_scope_begin();
    for (int i = 0; i < store->count && status == 0; i++) {
        if (!load[i]) continue;
        const Param *p = &store->items[i];
        if (load[i] == 2) {
            staged[i] = tensor_empty_on(DTYPE_F32, tensor_shape(p->value), device_cpu());
            tensor_fill_raw(staged[i], 0.0);
            continue;
        }
        const SafetensorsEntry *e = safetensors_find(file, p->name);
        staged[i] = tensor_empty_on(DTYPE_F32, tensor_shape(p->value), device_cpu());
        float *out = tensor_f32(staged[i]);
        int64_t n = tensor_numel(staged[i]);
        if (e->dtype == DTYPE_F32) memcpy(out, e->data, (size_t)n * sizeof(float));
        else
            for (int64_t j = 0; j < n; j++) out[j] = (float)dtype_load(e->data, e->dtype, j);
        for (int64_t j = 0; j < n; j++)
            if (!isfinite(out[j])) {
                set_error(error, error_size, "%s: tensor '%s' holds a non-finite value (%g at element %lld)", path, p->name,
                          (double)out[j], (long long)j);
                status = -1;
                break;
            }
    }
    for (int i = 0; i < store->count && status == 0; i++)
        if (staged[i]) tensor_copy_raw(store->items[i].value, staged[i]);
    if (status == 0) {
        report_list(report_text, report_size, "new head, freshly initialised", fresh);
        report_list(report_text, report_size, "head tensors of the file ignored", ignored);
        report_list(report_text, report_size, "missing from the file, set to 0", zeroed);
    }
    free(fresh);
    free(staged);
    free(load);
    tensor_scope_end(scope);
    safetensors_close(file);
    return status;
}

int classifier_save(const Classifier *model, const char *path, char *error, size_t error_size) {
    char classes[32];
    snprintf(classes, sizeof classes, "%lld", (long long)model->options.num_classes);
    const char *metadata[] = {"tailor.model", model->name, "tailor.num_classes", classes, NULL};
    return params_save(model->params, path, metadata, error, error_size);
}
