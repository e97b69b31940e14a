// Classifier evaluation (tools/evaluate.h).
#include "tools/evaluate.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "data/image.h"
#include "engine/autograd.h"
#include "engine/ops.h"
#include "tools/progress.h"

void eval_result_free(EvalResult *result) {
    free(result->per_class);
    free(result->class_count);
    free(result->confusion);
    free(result->predictions);
    free(result->confidence);
    *result = (EvalResult){0};
}

int evaluate_classifier(Classifier *model, Loader *loader, const Dataset *dataset, Device device, const char *label,
                        EvalResult *out, char *error, size_t error_size) {
    int64_t classes = model->options.num_classes, n = dataset->count;
    *out = (EvalResult){.classes = classes, .count = n};
    out->per_class = calloc((size_t)classes, sizeof(double));
    out->class_count = calloc((size_t)classes, sizeof(int64_t));
    out->confusion = calloc((size_t)(classes * classes), sizeof(int64_t));
    out->predictions = malloc((size_t)n * sizeof(int64_t));
    out->confidence = malloc((size_t)n * sizeof(float));
    if (!out->per_class || !out->class_count || !out->confusion || !out->predictions || !out->confidence) {
        snprintf(error, error_size, "%s: out of memory for the evaluation of %lld samples", label, (long long)n);
        eval_result_free(out);
        return -1;
    }
    // Under the skip policy the loader replaces an unreadable image by the next one, which would
    // then be counted twice: each dataset sample counts once, unreadable ones not at all.
    bool *counted = calloc((size_t)n, sizeof(bool));
    if (!counted) {
        snprintf(error, error_size, "%s: out of memory for the evaluation of %lld samples", label, (long long)n);
        eval_result_free(out);
        return -1;
    }
    for (int64_t i = 0; i < n; i++) {
        out->predictions[i] = -1;
        out->confidence[i] = NAN;
    }
    bool was_enabled = autograd_set_enabled(false);
    Progress progress;
    progress_begin(&progress, label, n);
    int64_t seen = 0;
    double loss_sum = 0;
    int status = 0;
    for (int64_t b = 0; b < loader_batches_per_epoch(loader) && status == 0; b++) {
        const LoaderBatch *batch;
        if (loader_next(loader, &batch, error, error_size) != 0) {
            status = -1;
            break;
        }
        for (int64_t i = 0; i < batch->count; i++)
            if (batch->labels[i] < 0 || batch->labels[i] >= classes) {
                snprintf(error, error_size, "%s: sample %lld has label %lld but the model has %lld classes", label,
                         (long long)batch->indices[i], (long long)batch->labels[i], (long long)classes);
                status = -1;
            }
        if (status != 0) break;
        TensorScope scope = tensor_scope_begin();
        Tensor *x = loader_batch_images(batch, 0, device);
        Tensor *logits = classifier_forward(model, x, false);
        Tensor *log_probs = op_to_device(op_log_softmax(logits, 1), device_cpu());
        const float *values = tensor_f32(log_probs);
        for (int64_t i = 0; i < batch->count; i++) {
            const float *row = values + i * classes;
            int64_t best = 0;
            for (int64_t c = 1; c < classes; c++)
                if (row[c] > row[best]) best = c;
            int64_t truth = batch->labels[i], index = batch->indices[i];
            if (counted[index]) continue;
            counted[index] = true;
            seen++;
            out->predictions[index] = best;
            out->confidence[index] = expf(row[best]);
            out->confusion[truth * classes + best]++;
            out->class_count[truth]++;
            out->correct += best == truth;
            loss_sum -= row[truth];
        }
        tensor_scope_end(scope);
        progress_update(&progress, seen, "");
    }
    progress_end(&progress, "");
    autograd_set_enabled(was_enabled);
    free(counted);
    if (status != 0) {
        eval_result_free(out);
        return -1;
    }
    double class_sum = 0;
    int64_t classes_present = 0;
    for (int64_t c = 0; c < classes; c++) {
        if (out->class_count[c] == 0) {
            out->per_class[c] = NAN;
            continue;
        }
        out->per_class[c] = (double)out->confusion[c * classes + c] / (double)out->class_count[c];
        class_sum += out->per_class[c];
        classes_present++;
    }
    out->count = seen;
    out->top1 = seen ? (double)out->correct / (double)seen : 0;
    out->mean_class = classes_present ? class_sum / (double)classes_present : 0;
    out->loss = seen ? loss_sum / (double)seen : 0;
    return 0;
}

static const char *class_name(const Dataset *dataset, int64_t c, char *buffer, size_t size) {
    if (dataset && dataset->class_names && c < dataset->class_count) return dataset->class_names[c];
    snprintf(buffer, size, "%lld", (long long)c);
    return buffer;
}

void eval_print(const EvalResult *result, const Dataset *dataset, FILE *out) {
    fprintf(out, "top-1 accuracy %.2f%% (%lld / %lld), mean-class accuracy %.2f%%, loss %.4f\n", 100 * result->top1,
            (long long)result->correct, (long long)result->count, 100 * result->mean_class, result->loss);
    fprintf(out, "%-20s %8s %9s\n", "class", "samples", "accuracy");
    char buffer[32];
    for (int64_t c = 0; c < result->classes; c++) {
        if (result->class_count[c] == 0)
            fprintf(out, "%-20s %8d %9s\n", class_name(dataset, c, buffer, sizeof buffer), 0, "-");
        else
            fprintf(out, "%-20s %8lld %8.2f%%\n", class_name(dataset, c, buffer, sizeof buffer),
                    (long long)result->class_count[c], 100 * result->per_class[c]);
    }
    if (result->classes > 40) return;
    fprintf(out, "confusion matrix (rows: true class, columns: predicted class, in class order)\n");
    for (int64_t t = 0; t < result->classes; t++) {
        for (int64_t p = 0; p < result->classes; p++)
            fprintf(out, "%6lld", (long long)result->confusion[t * result->classes + p]);
        fprintf(out, "   %s\n", class_name(dataset, t, buffer, sizeof buffer));
    }
}

// Quotes a CSV field when it needs it (commas, quotes, newlines in a path).
static void write_csv_field(FILE *file, const char *text) {
    if (!strpbrk(text, ",\"\n\r")) {
        fputs(text, file);
        return;
    }
    fputc('"', file);
    for (const char *c = text; *c; c++) {
        if (*c == '"') fputc('"', file);
        fputc(*c, file);
    }
    fputc('"', file);
}

int eval_write_predictions_csv(const EvalResult *result, const Dataset *dataset, const char *path, char *error,
                               size_t error_size) {
    FILE *file = fopen(path, "w");
    if (!file) {
        snprintf(error, error_size, "%s: cannot write the predictions", path);
        return -1;
    }
    fprintf(file, "index,path,label,prediction,confidence\n");
    for (int64_t i = 0; i < dataset->count; i++) {
        fprintf(file, "%lld,", (long long)i);
        write_csv_field(file, dataset->samples[i].path ? dataset->samples[i].path : "");
        fprintf(file, ",%lld,%lld,%.6f\n", (long long)dataset->samples[i].label, (long long)result->predictions[i],
                (double)result->confidence[i]);
    }
    if (fclose(file) != 0) {
        snprintf(error, error_size, "%s: write failed (disk full?)", path);
        return -1;
    }
    return 0;
}

int eval_write_confusion_png(const EvalResult *result, const char *path, char *error, size_t error_size) {
    int64_t classes = result->classes;
    int cell = classes <= 20 ? 24 : classes <= 100 ? 8 : 2;
    if (classes * cell > 4096) {
        snprintf(error, error_size, "%s: %lld classes are too many for a confusion image", path, (long long)classes);
        return -1;
    }
    int side = (int)(classes * cell) + 1;
    Image image = {.width = side, .height = side, .channels = 3, .pixels = malloc((size_t)side * side * 3)};
    if (!image.pixels) {
        snprintf(error, error_size, "%s: out of memory", path);
        return -1;
    }
    memset(image.pixels, 160, (size_t)side * side * 3);  // grid lines stay grey
    for (int64_t t = 0; t < classes; t++)
        for (int64_t p = 0; p < classes; p++) {
            double share = result->class_count[t] ? (double)result->confusion[t * classes + p] / (double)result->class_count[t] : 0;
            // white (255, 255, 255) to dark blue (8, 48, 107), linearly
            uint8_t rgb[3] = {(uint8_t)lround(255 - share * (255 - 8)), (uint8_t)lround(255 - share * (255 - 48)),
                              (uint8_t)lround(255 - share * (255 - 107))};
            for (int y = 1; y < cell; y++)
                for (int x = 1; x < cell; x++) {
                    size_t at = ((size_t)(t * cell + y) * side + (size_t)(p * cell + x)) * 3;
                    memcpy(image.pixels + at, rgb, 3);
                }
        }
    int status = image_save_png(path, &image, error, error_size);
    image_free(&image);
    return status;
}
