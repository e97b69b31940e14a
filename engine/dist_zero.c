// ZeRO stage 1 over engine/dist (engine/dist_zero.h).
#include "engine/dist_zero.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/dist.h"

static float *floats(int64_t n) { return calloc(n > 0 ? (size_t)n : 1, sizeof(float)); }

ZeroOptimizer *zero_create(Optimizer *full, char *error, size_t error_size) {
    if (full->on_device) {
        snprintf(error, error_size, "--zero1: the optimizer state is on a GPU; ZeRO-1 works on host buffers only for now");
        return NULL;
    }
    int world = dist_world_size(), rank = dist_rank();
    ZeroOptimizer *zero = calloc(1, sizeof *zero);
    if (!zero) {
        snprintf(error, error_size, "--zero1: out of memory");
        return NULL;
    }
    zero->n = full->n_params;
    zero->slice = (zero->n + world - 1) / world;
    zero->start = zero->slice * rank < zero->n ? zero->slice * rank : zero->n;
    zero->count = zero->n - zero->start < zero->slice ? zero->n - zero->start : zero->slice;
    zero->shard = full->kind == OPTIM_SGD
                      ? optimizer_new_sgd(zero->count, full->lr, full->momentum, full->dampening, full->nesterov,
                                          full->weight_decay)
                      : optimizer_new_adam(zero->count, full->lr, full->beta1, full->beta2, full->eps,
                                           full->weight_decay, full->kind == OPTIM_ADAMW);
    zero->padded = floats(zero->slice * world);
    zero->mine = floats(zero->slice);
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
    zero->shard->step = full->step;
    if (zero->shard->state1 && full->state1)
        memcpy(zero->shard->state1, full->state1 + zero->start, (size_t)zero->count * sizeof(float));
    if (zero->shard->state2 && full->state2)
        memcpy(zero->shard->state2, full->state2 + zero->start, (size_t)zero->count * sizeof(float));
    zero_release_full_state(full);
    return zero;
}

void zero_free(ZeroOptimizer *zero) {
    if (!zero) return;
    optimizer_free(zero->shard);
    free(zero->padded);
    free(zero->mine);
    free(zero);
}

// Every rank's `slice` values of a [n] buffer, padded with zeros, gathered into full[n] (in place
// allowed when source == full + start).
static void gather_slices(ZeroOptimizer *zero, const float *mine, float *full, const char *what) {
    memset(zero->mine, 0, (size_t)zero->slice * sizeof(float));
    memcpy(zero->mine, mine, (size_t)zero->count * sizeof(float));
    dist_all_gather(zero->mine, zero->padded, (size_t)zero->slice * sizeof(float), what);
    memcpy(full, zero->padded, (size_t)zero->n * sizeof(float));
}

void zero_step(ZeroOptimizer *zero, Optimizer *full, float *params, const float *grads) {
    int world = dist_world_size();
    memcpy(zero->padded, grads, (size_t)zero->n * sizeof(float));
    memset(zero->padded + zero->n, 0, (size_t)(zero->slice * world - zero->n) * sizeof(float));
    dist_reduce_scatter(zero->padded, zero->mine, zero->slice, DIST_F32, DIST_AVG, "gradients (ZeRO-1 reduce-scatter)");
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
        if (!*full_state[b]) *full_state[b] = floats(zero->n);
        if (!*full_state[b]) {
            fprintf(stderr, "error: --zero1: out of memory gathering the optimizer state for a checkpoint\n");
            exit(1);
        }
        gather_slices(zero, shard_state[b], *full_state[b], "optimizer state (ZeRO-1 checkpoint)");
    }
    full->step = zero->shard->step;
}

void zero_release_full_state(Optimizer *full) {
    free(full->state1);
    free(full->state2);
    full->state1 = full->state2 = NULL;
}
