#include "data/toy_tasks.h"

#include <math.h>
#include <string.h>

ToyTask toy_spirals(int64_t samples, int64_t classes, double noise, Rng *rng) {
    ToyTask task = {.classes = classes};
    task.inputs = tensor_keep(tensor_empty(DTYPE_F32, SHAPE(samples, 2)));
    task.labels = tensor_keep(tensor_empty(DTYPE_I64, SHAPE(samples)));
    float *xy = tensor_f32(task.inputs);
    for (int64_t i = 0; i < samples; i++) {
        int64_t label = i % classes;
        double t = rng_uniform(rng);             // position along the arm
        double radius = 0.1 + 0.9 * t;
        double angle = 3.0 * M_PI * t + 2.0 * M_PI * (double)label / (double)classes;
        xy[2 * i] = (float)(radius * cos(angle) + noise * rng_normal(rng));
        xy[2 * i + 1] = (float)(radius * sin(angle) + noise * rng_normal(rng));
        tensor_i64(task.labels)[i] = label;
    }
    return task;
}

ToyTask toy_shapes(int64_t samples, int size, Rng *rng) {
    ToyTask task = {.classes = 4};
    task.inputs = tensor_keep(tensor_empty(DTYPE_F32, SHAPE(samples, 1, size, size)));
    task.labels = tensor_keep(tensor_empty(DTYPE_I64, SHAPE(samples)));
    for (int64_t i = 0; i < samples; i++) {
        int64_t label = i % 4;
        float *image = tensor_f32(task.inputs) + i * size * size;
        double half = size * (0.2 + 0.15 * rng_uniform(rng));  // half-extent of the shape
        double cx = half + (size - 2 * half) * rng_uniform(rng), cy = half + (size - 2 * half) * rng_uniform(rng);
        double contrast = 0.6 + 0.8 * rng_uniform(rng), thickness = 0.8 + 0.6 * rng_uniform(rng);
        for (int y = 0; y < size; y++)
            for (int x = 0; x < size; x++) {
                double dx = x + 0.5 - cx, dy = y + 0.5 - cy;
                bool inside_box = fabs(dx) <= half && fabs(dy) <= half;
                bool on;
                switch (label) {
                case 0: on = inside_box; break;                                                        // square
                case 1: on = fabs(sqrt(dx * dx + dy * dy) - half * 0.8) <= thickness; break;         // ring
                case 2: on = inside_box && (fabs(dx) <= thickness || fabs(dy) <= thickness); break;  // plus
                default: on = inside_box && (fabs(dx - dy) <= thickness * 1.2 || fabs(dx + dy) <= thickness * 1.2); break;  // x
                }
                image[y * size + x] = (float)((on ? contrast : 0.0) + 0.25 * rng_normal(rng));
            }
        tensor_i64(task.labels)[i] = label;
    }
    return task;
}

void toy_task_free(ToyTask *task) {
    tensor_release(task->inputs);
    tensor_release(task->labels);
    memset(task, 0, sizeof *task);
}

void toy_task_batch(const ToyTask *task, const int64_t *order, int64_t start, int64_t count, Tensor **inputs, Tensor **labels) {
    Shape shape = tensor_shape(task->inputs);
    if (start < 0 || count < 0 || start + count > shape.dims[0])
        tensor_fatal("toy_task_batch", "rows [%lld, %lld) outside the %lld samples", (long long)start,
                     (long long)(start + count), (long long)shape.dims[0]);
    int64_t row = tensor_numel(task->inputs) / shape.dims[0];
    shape.dims[0] = count;
    *inputs = tensor_empty(DTYPE_F32, shape);
    *labels = tensor_empty(DTYPE_I64, SHAPE(count));
    for (int64_t i = 0; i < count; i++) {
        int64_t source = order[start + i];
        memcpy(tensor_f32(*inputs) + i * row, tensor_f32(task->inputs) + source * row, (size_t)row * sizeof(float));
        tensor_i64(*labels)[i] = tensor_i64(task->labels)[source];
    }
}
