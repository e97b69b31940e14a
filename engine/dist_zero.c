// ZeRO stage 1 over engine/dist (engine/dist_zero.h).
#include "engine/dist_zero.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/dist.h"
#include "engine/gpu/gpu.h"

// Buffers of n floats where the optimizer state lives: host memory, or the current device's.
static float *floats(bool on_device, int64_t n) {
    if (on_device) {
        float *device = gpu_alloc((n > 0 ? (size_t)n : 1) * sizeof(float));
        gpu_memset_async(device, 0, (n > 0 ? (size_t)n : 1) * sizeof(float), NULL);
        return device;
    }
    return calloc(n > 0 ? (size_t)n : 1, sizeof(float));
}

static void release(bool on_device, float *buffer) {
    if (!on_device) free(buffer);
    else if (buffer) gpu_free(buffer);
}

static void copy(bool on_device, float *destination, const float *source, int64_t n) {
    if (n <= 0 || destination == source) return;
    if (on_device) gpu_copy_device_to_device(destination, source, (size_t)n * sizeof(float));
    else memmove(destination, source, (size_t)n * sizeof(float));
}

static void clear(bool on_device, float *buffer, int64_t n) {
    if (n <= 0) return;
    if (on_device) gpu_memset_async(buffer, 0, (size_t)n * sizeof(float), NULL);  // ordered: default stream
    else memset(buffer, 0, (size_t)n * sizeof(float));
}

ZeroOptimizer *zero_create(Optimizer *full, char *error, size_t error_size) {
    int world = dist_world_size(), rank = dist_rank();
    ZeroOptimizer *zero = calloc(1, sizeof *zero);
    if (!zero) {
        snprintf(error, error_size, "--zero1: out of memory");
        return NULL;
    }
    zero->on_device = full->on_device != 0;
    zero->n = full->n_params;
    zero->slice = (zero->n + world - 1) / world;
    zero->start = zero->slice * rank < zero->n ? zero->slice * rank : zero->n;
    zero->count = zero->n - zero->start < zero->slice ? zero->n - zero->start : zero->slice;
    zero->shard = full->kind == OPTIM_SGD
                      ? optimizer_new_sgd(zero->count, full->lr, full->momentum, full->dampening, full->nesterov,
                                          full->weight_decay)
                      : optimizer_new_adam(zero->count, full->lr, full->beta1, full->beta2, full->eps,
                                           full->weight_decay, full->kind == OPTIM_ADAMW);
    zero->padded = floats(zero->on_device, zero->slice * world);
    zero->mine = floats(zero->on_device, zero->slice);
    if (!zero->shard || !zero->padded || !zero->mine) {
        snprintf(error, error_size, "--zero1: out of memory for the optimizer shard");
        zero_free(zero);
        return NULL;
    }
    // The groups that overlap this rank's range, shifted to it.
    for (int g = 0; g < full->n_groups; g++) {
        const ParamGroup *group = &full->groups[g];
        int64_t low = group->start > zero->start ? group->start : zero->start;
        int64_t high = group->start + group->count < zero->start + zero->count ? group->start + group->count
                                                                               : zero->start + zero->count;
        if (high > low)
            optimizer_add_group(zero->shard, low - zero->start, high - low, group->lr_multiplier, group->weight_decay);
    }
    // The shard's state where the run's is (its steps then run the device kernels), then this
    // rank's slice of the run's state.
    if (zero->on_device) optimizer_move_to_device(zero->shard);
    zero->shard->step = full->step;
    if (zero->shard->state1 && full->state1) copy(zero->on_device, zero->shard->state1, full->state1 + zero->start, zero->count);
    if (zero->shard->state2 && full->state2) copy(zero->on_device, zero->shard->state2, full->state2 + zero->start, zero->count);
    zero_release_full_state(full);
    return zero;
}

void zero_free(ZeroOptimizer *zero) {
    if (!zero) return;
    optimizer_free(zero->shard);
    release(zero->on_device, zero->padded);
    release(zero->on_device, zero->mine);
    free(zero);
}

// Every rank's `slice` values of a [n] buffer, padded with zeros, gathered into full[n] (in place
// allowed when source == full + start).
static void gather_slices(ZeroOptimizer *zero, const float *mine, float *full, const char *what) {
    clear(zero->on_device, zero->mine, zero->slice);
    copy(zero->on_device, zero->mine, mine, zero->count);
    size_t bytes = (size_t)zero->slice * sizeof(float);
    if (zero->on_device) dist_device_all_gather(zero->mine, zero->padded, bytes, what);
    else dist_all_gather(zero->mine, zero->padded, bytes, what);
    copy(zero->on_device, full, zero->padded, zero->n);
}

void zero_step(ZeroOptimizer *zero, Optimizer *full, float *params, const float *grads) {
    int world = dist_world_size();
    copy(zero->on_device, zero->padded, grads, zero->n);
    clear(zero->on_device, zero->padded + zero->n, zero->slice * world - zero->n);
    const char *what = "gradients (ZeRO-1 reduce-scatter)";
    if (zero->on_device) dist_device_reduce_scatter(zero->padded, zero->mine, zero->slice, DIST_F32, DIST_AVG, what);
    else dist_reduce_scatter(zero->padded, zero->mine, zero->slice, DIST_F32, DIST_AVG, what);
    zero->shard->lr = full->lr;
    optimizer_step(zero->shard, params + zero->start, zero->mine);
    full->step = zero->shard->step;
    gather_slices(zero, params + zero->start, params, "parameters (ZeRO-1 all-gather)");
}

void zero_gather_state(ZeroOptimizer *zero, Optimizer *full) {
    float *shard_state[2] = {zero->shard->state1, zero->shard->state2};
    float **full_state[2] = {&full->state1, &full->state2};
    for (int b = 0; b < 2; b++) {
        if (!shard_state[b]) continue;
        if (!*full_state[b]) *full_state[b] = floats(zero->on_device, zero->n);
        if (!*full_state[b]) {
            fprintf(stderr, "error: --zero1: out of memory gathering the optimizer state for a checkpoint\n");
            exit(1);
        }
        gather_slices(zero, shard_state[b], *full_state[b], "optimizer state (ZeRO-1 checkpoint)");
    }
    full->step = zero->shard->step;
}

void zero_release_full_state(Optimizer *full) {
    release(full->on_device, full->state1);
    release(full->on_device, full->state2);
    full->state1 = full->state2 = NULL;
}
