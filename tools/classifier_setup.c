// Transform presets and run settings for the classifier commands (tools/classifier_setup.h).
#include "tools/classifier_setup.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/json.h"

int classifier_train_transform(const char *augment, int64_t size, const char *normalize, char *out, size_t out_size,
                               char *error, size_t error_size) {
    long long s = (long long)size, pad = (long long)(size / 8);
    if (strcmp(augment, "none") == 0)
        snprintf(out, out_size, "resize=%lld:%lld,normalize=%s", s, s, normalize);
    else if (strcmp(augment, "crop-flip") == 0)
        snprintf(out, out_size, "resize=%lld:%lld,random_crop=%lld:%lld:reflect,hflip,normalize=%s", s, s, s, pad,
                 normalize);
    else if (strcmp(augment, "randaugment") == 0)
        snprintf(out, out_size, "resize=%lld:%lld,random_crop=%lld:%lld:reflect,hflip,randaugment=2:10,normalize=%s", s,
                 s, s, pad, normalize);
    else if (strcmp(augment, "imagenet") == 0)
        snprintf(out, out_size, "random_resized_crop=%lld,hflip,normalize=%s", s, normalize);
    else {
        snprintf(error, error_size, "--augment %s: expected none, crop-flip, randaugment or imagenet", augment);
        return -1;
    }
    return 0;
}

void classifier_eval_transform(const char *augment, int64_t size, const char *normalize, char *out, size_t out_size) {
    if (strcmp(augment, "imagenet") == 0)
        snprintf(out, out_size, "resize=%lld,center_crop=%lld,normalize=%s", (long long)(size * 256 / 224),
                 (long long)size, normalize);
    else
        snprintf(out, out_size, "resize=%lld:%lld,normalize=%s", (long long)size, (long long)size, normalize);
}

static int read_int(const JsonValue *root, const char *key, int64_t *out, const char *path, char *error,
                    size_t error_size) {
    if (json_int64(json_get(root, key), out) != 0) {
        snprintf(error, error_size, "%s: no integer \"%s\"", path, key);
        return -1;
    }
    return 0;
}

int classifier_read_run_settings(const char *run_dir, ClassifierRunSettings *out, char *error, size_t error_size) {
    char path[4096];
    snprintf(path, sizeof path, "%s/settings.json", run_dir);
    FILE *file = fopen(path, "rb");
    if (!file) {
        snprintf(error, error_size, "%s: missing (is %s a directory written by tailor train?)", path, run_dir);
        return -1;
    }
    fseek(file, 0, SEEK_END);
    long size = ftell(file);
    fseek(file, 0, SEEK_SET);
    if (size < 0 || size > (64 << 20)) {
        fclose(file);
        snprintf(error, error_size, "%s: unreadable or larger than 64 MiB", path);
        return -1;
    }
    char *text = malloc((size_t)size + 1);
    size_t length = text ? fread(text, 1, (size_t)size, file) : 0;
    fclose(file);
    if (!text) {
        snprintf(error, error_size, "%s: out of memory", path);
        return -1;
    }
    text[length] = '\0';
    char why[256];
    JsonValue *root = json_parse(text, length, why, sizeof why);
    free(text);
    if (!root) {
        snprintf(error, error_size, "%s: %s", path, why);
        return -1;
    }
    *out = (ClassifierRunSettings){0};
    const char *model = json_string(json_get(root, "model"));
    const char *eval_transform = json_string(json_get(root, "eval-transform"));
    int status = 0;
    if (!model || !eval_transform) {
        snprintf(error, error_size, "%s: no \"model\" or \"eval-transform\" string", path);
        status = -1;
    }
    if (status == 0) {
        snprintf(out->model, sizeof out->model, "%s", model);
        snprintf(out->eval_transform, sizeof out->eval_transform, "%s", eval_transform);
        status = read_int(root, "classes", &out->classes, path, error, error_size) ||
                         read_int(root, "image-size", &out->image_size, path, error, error_size) ||
                         read_int(root, "patch-size", &out->patch_size, path, error, error_size) ||
                         read_int(root, "bottleneck", &out->bottleneck, path, error, error_size)
                     ? -1
                     : 0;
    }
    const JsonValue *names = json_get(root, "class-names");
    if (status == 0 && names) {
        size_t n = json_length(names);
        out->class_names = calloc(n ? n : 1, sizeof(char *));
        for (size_t i = 0; out->class_names && i < n; i++) {
            const char *name = json_string(json_at(names, i));
            out->class_names[i] = strdup(name ? name : "");
        }
        out->n_class_names = out->class_names ? (int64_t)n : 0;
    }
    json_free(root);
    return status;
}

void classifier_run_settings_free(ClassifierRunSettings *settings) {
    for (int64_t i = 0; i < settings->n_class_names; i++) free(settings->class_names[i]);
    free(settings->class_names);
    settings->class_names = NULL;
    settings->n_class_names = 0;
}
