// Small generated classification tasks for smoke tests and the engine demo: they need no files,
// are seeded, and are hard enough that a broken gradient or optimizer visibly fails to learn.
#pragma once
#include "engine/rng.h"
#include "engine/tensor.h"

typedef struct {
    Tensor *inputs;  // f32: [N, 2] points or [N, 1, S, S] images (kept: release with toy_task_free)
    Tensor *labels;  // i64 [N]
    int64_t classes;
} ToyTask;

// `classes` interleaved spiral arms in the plane, 1.5 turns each, Gaussian noise `noise`.
ToyTask toy_spirals(int64_t samples, int64_t classes, double noise, Rng *rng);
// size x size grey images of four shapes — filled square, ring, plus sign, diagonal cross — at a
// random position and scale, with random contrast and additive noise. 4 classes.
ToyTask toy_shapes(int64_t samples, int size, Rng *rng);
void toy_task_free(ToyTask *task);
// A batch of rows [start, start + count) by index array (e.g. a shuffled epoch order).
void toy_task_batch(const ToyTask *task, const int64_t *order, int64_t start, int64_t count, Tensor **inputs, Tensor **labels);
