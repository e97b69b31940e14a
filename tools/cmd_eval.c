// `tailor eval`: evaluates a classifier on a dataset: top-1, per-class and mean-class accuracy,
// the confusion matrix (printed, and as a PNG with --confusion), and per-sample predictions
// (--predictions CSV). The model comes from a `tailor train` run directory (--run) or is described
// by flags (--model, --weights, ...).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/loader.h"
#include "data/transforms.h"
#include "models/classifier.h"
#include "tools/args.h"
#include "tools/classifier_setup.h"
#include "tools/commands.h"
#include "tools/data_source.h"
#include "tools/evaluate.h"

// Exits rather than returns: the run's allocations stay reachable from this frame, so the exit is
// clean under LeakSanitizer without freeing everything on every error path.
#define FAIL(status, ...)                                    \
    do {                                                     \
        fprintf(stderr, "error: tailor eval: " __VA_ARGS__); \
        fputc('\n', stderr);                                 \
        exit(status);                                        \
    } while (0)

static bool file_exists(const char *path) {
    struct stat info;
    return stat(path, &info) == 0 && S_ISREG(info.st_mode);
}

int command_eval(int argc, char **argv) {
    const char *run_dir = NULL, *data = NULL, *image_root = NULL, *benchmark_root = "data/benchmark";
    const char *model_name = NULL, *weights = NULL, *transform = NULL, *predictions = NULL, *confusion = NULL;
    const char *device = "auto";
    int64_t classes = 0, image_size = 32, patch_size = 0, bottleneck = 0, batch_size = 128, workers = 2, threads = 0;
    bool skip_bad_images = false;
    Flag flags[] = {
        {"run", FLAG_STRING, &run_dir, "a tailor train --out directory: model settings and best (else last) weights", NULL},
        {"data", FLAG_STRING, &data, "data to evaluate: bench:DOMAIN[/SPLIT] (default split test), DIR, FILE.txt, idx:IMAGES:LABELS", NULL},
        {"image-root", FLAG_STRING, &image_root, "directory of the relative paths of image lists", NULL},
        {"benchmark-root", FLAG_STRING, &benchmark_root, "where `tailor data build` wrote the built-in benchmark", NULL},
        {"weights", FLAG_STRING, &weights, "safetensors weights (overrides the run's)", NULL},
        {"model", FLAG_STRING, &model_name, "model name, without --run (see tailor train --help)", NULL},
        {"classes", FLAG_INT, &classes, "number of classes, without --run (0: the data's)", NULL},
        {"image-size", FLAG_INT, &image_size, "input side, without --run", NULL},
        {"patch-size", FLAG_INT, &patch_size, "ViT/DeiT patch size, without --run (0: 16)", NULL},
        {"bottleneck", FLAG_INT, &bottleneck, "bottleneck width, without --run", NULL},
        {"transform", FLAG_STRING, &transform, "evaluation transform spec (default: the run's, or resize to --image-size with ImageNet normalisation)", NULL},
        {"predictions", FLAG_STRING, &predictions, "write per-sample predictions to this CSV", NULL},
        {"confusion", FLAG_STRING, &confusion, "write the confusion matrix as a PNG heat map", NULL},
        {"batch-size", FLAG_INT, &batch_size, "images per forward pass", NULL},
        {"workers", FLAG_INT, &workers, "loader threads", NULL},
        {"skip-bad-images", FLAG_BOOL, &skip_bad_images, "warn and skip unreadable images instead of stopping", NULL},
        {"device", FLAG_STRING, &device, "auto | cpu | cuda[:N]", NULL},
        {"threads", FLAG_INT, &threads, "CPU threads (0: all cores)", NULL},
    };
    args_parse("eval", "Evaluate a classifier: accuracy, per-class and mean-class accuracy, confusion matrix.", flags,
               (int)(sizeof flags / sizeof flags[0]), argc, argv, 2);
    if (!data) FAIL(2, "--data is required (e.g. --data bench:hand)");
    if (!run_dir && (!model_name || !weights)) FAIL(2, "give --run DIR, or --model and --weights");
    if (batch_size <= 0 || batch_size > 65536 || workers < 0 || workers > 64 || classes < 0 || image_size < 8 ||
        patch_size < 0 || bottleneck < 0)
        FAIL(2, "--batch-size must be in 1..65536, --workers in 0..64, --image-size >= 8; sizes not negative");
    Device run_device = apply_device_and_threads("eval", device, threads);
    char error[8192];

    ClassifierRunSettings settings = {0};
    char weights_path[4096], eval_spec[1024];
    if (run_dir) {
        if (classifier_read_run_settings(run_dir, &settings, error, sizeof error) != 0) FAIL(2, "--run: %s", error);
        if (model_name && strcmp(model_name, settings.model) != 0)
            FAIL(2, "--model %s differs from the run's model %s", model_name, settings.model);
        if (!weights) {
            snprintf(weights_path, sizeof weights_path, "%s/best.safetensors", run_dir);
            if (!file_exists(weights_path)) snprintf(weights_path, sizeof weights_path, "%s/checkpoint/model.safetensors", run_dir);
            weights = weights_path;
        }
        snprintf(eval_spec, sizeof eval_spec, "%s", transform ? transform : settings.eval_transform);
    } else {
        snprintf(settings.model, sizeof settings.model, "%s", model_name);
        settings.classes = classes;
        settings.image_size = image_size;
        settings.patch_size = patch_size;
        settings.bottleneck = bottleneck;
        if (transform) snprintf(eval_spec, sizeof eval_spec, "%s", transform);
        else classifier_eval_transform("none", image_size, "imagenet", eval_spec, sizeof eval_spec);
    }

    DataSource source;
    if (data_source_open("data", data, "test", benchmark_root, image_root, &source, error, sizeof error) != 0)
        FAIL(2, "%s", error);
    if (settings.classes == 0) settings.classes = source.dataset->class_count;
    if (source.dataset->class_count > settings.classes)
        FAIL(2, "--data has labels up to %lld but the model has %lld classes", (long long)source.dataset->class_count - 1,
             (long long)settings.classes);
    // A model trained on named classes evaluated on an ImageFolder: the names must agree label by
    // label, or every accuracy would be computed against the wrong classes.
    const Dataset *dataset = source.dataset;
    if (settings.n_class_names && dataset->class_names) {
        if (dataset->class_count != settings.n_class_names)
            FAIL(2, "--data has %lld classes but the run was trained on %lld (%s ...)", (long long)dataset->class_count,
                 (long long)settings.n_class_names, settings.class_names[0]);
        for (int64_t c = 0; c < dataset->class_count; c++)
            if (strcmp(dataset->class_names[c], settings.class_names[c]) != 0)
                FAIL(2, "--data's class %lld is '%s' but the run's class %lld is '%s'", (long long)c,
                     dataset->class_names[c], (long long)c, settings.class_names[c]);
    }
    TransformPipeline *pipeline = transform_pipeline_parse(eval_spec, error, sizeof error);
    if (!pipeline) FAIL(2, "--transform: %s", error);

    ClassifierOptions options = classifier_default_options(settings.classes);
    options.image_size = settings.image_size;
    options.patch_size = settings.patch_size;
    options.bottleneck_dim = settings.bottleneck;
    Classifier *model = classifier_create(settings.model, &options, error, sizeof error);
    if (!model) FAIL(2, "--model: %s", error);
    char report[4096] = "";
    if (classifier_load(model, weights, CLASSIFIER_LOAD_STRICT, report, sizeof report, error, sizeof error) != 0)
        FAIL(1, "--weights: %s", error);
    if (run_device.kind == DEVICE_CUDA) params_to_device(model->params, run_device);

    LoaderOptions loader_options = {.dataset = source.dataset, .idx_images = data_source_idx(&source), .channels = 3,
                                    .views = {pipeline}, .n_views = 1, .batch_size = batch_size,
                                    .workers = (int)workers, .pinned = run_device.kind == DEVICE_CUDA,
                                    .bad_samples = skip_bad_images ? LOADER_BAD_SAMPLE_SKIP : LOADER_BAD_SAMPLE_FATAL,
                                    .name = "--data"};
    Loader *loader = loader_create(&loader_options, error, sizeof error);
    if (!loader) FAIL(1, "%s", error);
    printf("tailor eval: %s (%s) on %s, %lld images, transform %s\n", settings.model, weights, source.description,
           (long long)source.dataset->count, transform_pipeline_spec(pipeline));
    EvalResult result;
    int status = 0;
    if (evaluate_classifier(model, loader, source.dataset, run_device, "eval", &result, error, sizeof error) != 0) {
        fprintf(stderr, "error: tailor eval: %s\n", error);
        status = 1;
    } else {
        eval_print(&result, source.dataset, stdout);
        if (predictions && eval_write_predictions_csv(&result, source.dataset, predictions, error, sizeof error) != 0) {
            fprintf(stderr, "error: tailor eval: --predictions: %s\n", error);
            status = 1;
        }
        if (confusion && eval_write_confusion_png(&result, confusion, error, sizeof error) != 0) {
            fprintf(stderr, "error: tailor eval: --confusion: %s\n", error);
            status = 1;
        }
        eval_result_free(&result);
    }
    loader_free(loader);
    transform_pipeline_free(pipeline);
    classifier_free(model);
    data_source_close(&source);
    classifier_run_settings_free(&settings);
    return status;
}
