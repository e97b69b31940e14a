// ZeRO stage 1 (Rajbhandari et al., "ZeRO: Memory Optimizations Toward Training Trillion Parameter
// Models", SC20): each of the N ranks keeps the optimizer state (SGD momentum, Adam moments) of one
// contiguous 1/N of the flat parameter buffer only. A step reduce-scatters the gradients (each
// rank receives the average of its slice), updates its slice of the parameters with its slice of
// the state, and all-gathers the updated parameters. Elementwise optimizers make this the same
// update as the all-reduce path, up to the order MPI sums the ranks' gradients in.
//
// The full-size Optimizer the run created stays the owner of the hyperparameters (the training
// loop sets its lr from the schedule) and is where checkpoints read and write state: its state
// buffers are released once the shards hold the state, and zero_gather_state refills them (a
// collective) just before a checkpoint is written; zero_release_full_state frees them again.
// The buffers live where full's state does: host memory, or (full->on_device) the current CUDA
// device, where the shard's steps run the device kernels and the collectives are engine/dist's
// device ones (NCCL in place, or staged through the host on the emulated device).
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/optim.h"

typedef struct {
    Optimizer *shard;     // the optimizer over [start, start + count)
    int64_t n;            // parameters in all
    int64_t slice;        // ceil(n / world): every rank's block in the padded collectives
    int64_t start, count; // this rank's parameters (count may be < slice on the last ranks)
    bool on_device;       // state, padded and mine are device buffers
    float *padded;        // [slice * world] staging for the collectives
    float *mine;          // [slice]
} ZeroOptimizer;

// Shards `full` (its kind, hyperparameters, groups, step and current state — zero for a fresh run,
// the loaded state after a resume) across the ranks of engine/dist, then frees full's state buffers.
// NULL with one line in error when memory runs out.
ZeroOptimizer *zero_create(Optimizer *full, char *error, size_t error_size);
void zero_free(ZeroOptimizer *zero);

// One step: grads[n] (this rank's, not yet averaged) -> params[n] updated everywhere. Takes lr
// from full. Device pointers when the state is on the device.
void zero_step(ZeroOptimizer *zero, Optimizer *full, float *params, const float *grads);

// Collective: every rank calls it; afterwards full holds the whole state (and step) on every rank.
void zero_gather_state(ZeroOptimizer *zero, Optimizer *full);
void zero_release_full_state(Optimizer *full);
