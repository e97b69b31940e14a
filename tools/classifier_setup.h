// What `tailor train` and `tailor eval` (and later the adaptation commands) share: the default
// transform specs for an input size and augmentation choice, and the run settings file that lets
// `tailor eval --run DIR` rebuild the model a training run saved.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "models/classifier.h"

// Augmentation presets of --augment, as transform specs for an input side `size` (docs/DATA.md):
//   none         resize=S:S
//   crop-flip    resize=S:S,random_crop=S:S/8:reflect,hflip        (the CIFAR/FixMatch weak view)
//   randaugment  crop-flip + randaugment=2:10                        (FixMatch's strong view)
//   imagenet     random_resized_crop=S,hflip                         (large photos)
// each followed by normalize=<normalize>. The evaluation spec is resize=S:S (imagenet: resize to
// S*256/224 on the shorter side, then center_crop=S), with the same normalize.
// 0, or -1 with one line in error for an unknown preset.
int classifier_train_transform(const char *augment, int64_t size, const char *normalize, char *out, size_t out_size,
                               char *error, size_t error_size);
void classifier_eval_transform(const char *augment, int64_t size, const char *normalize, char *out, size_t out_size);

// The model part of a run's settings (written by tailor train as <out>/settings.json).
typedef struct {
    char model[64];
    int64_t classes, image_size, patch_size, bottleneck;
    char eval_transform[512];
    int64_t n_class_names;  // 0 when the training data had no class names (image lists, IDX)
    char **class_names;     // [n_class_names], label order; free with classifier_run_settings_free
} ClassifierRunSettings;

// Reads <run_dir>/settings.json. 0, or -1 with one line in error.
int classifier_read_run_settings(const char *run_dir, ClassifierRunSettings *out, char *error, size_t error_size);
void classifier_run_settings_free(ClassifierRunSettings *settings);
