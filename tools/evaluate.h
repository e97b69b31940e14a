// Evaluating a classifier over a whole dataset: top-1, per-class and mean-class accuracy (the
// VisDA-2017 metric), the confusion matrix, and per-sample predictions, shared by `tailor train`
// (validation after each epoch) and `tailor eval`.
#pragma once
#include <stdint.h>
#include <stdio.h>

#include "data/dataset.h"
#include "data/loader.h"
#include "models/classifier.h"

typedef struct {
    int64_t classes, count, correct;  // count: samples evaluated (unreadable ones skipped are not)
    double top1;          // correct / count
    double mean_class;    // mean of per_class over the classes that have samples
    double *per_class;    // [classes]; NAN for a class without samples
    int64_t *class_count; // [classes] samples per true class
    int64_t *confusion;   // [classes * classes], row = true class, column = prediction
    // Per sample, in dataset order (index = dataset sample index):
    int64_t *predictions; // [dataset count]; -1 for a sample that could not be read
    float *confidence;    // [dataset count] softmax probability of the prediction; NAN if unread
    double loss;          // mean cross-entropy
} EvalResult;

// Runs the model in eval mode over one epoch of `loader` (which must not shuffle or drop samples:
// every dataset sample exactly once) and fills *out. `label` names the run in the progress line.
// 0, or -1 with one line in error (a loader failure, labels outside the model's classes).
int evaluate_classifier(Classifier *model, Loader *loader, const Dataset *dataset, Device device, const char *label,
                        EvalResult *out, char *error, size_t error_size);
void eval_result_free(EvalResult *result);

// Prints top-1, mean-class accuracy, the per-class table and (for up to 40 classes) the confusion
// matrix, with class names when the dataset has them.
void eval_print(const EvalResult *result, const Dataset *dataset, FILE *out);
// "index,path,label,prediction,confidence" per sample. 0 or -1 with one line in error.
int eval_write_predictions_csv(const EvalResult *result, const Dataset *dataset, const char *path, char *error,
                               size_t error_size);
// The confusion matrix as a PNG heat map: one cell per (true row, predicted column), each row
// normalised by its class count (white 0 to dark blue 1), a grid line between cells.
int eval_write_confusion_png(const EvalResult *result, const char *path, char *error, size_t error_size);
