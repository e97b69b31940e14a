// Training checkpoints: a directory holding
//   model.safetensors        the weights and buffers by state-dict name (loadable on their own, and
//                            by PyTorch's safetensors.torch.load_file),
//   train_state.safetensors  optimizer moments, and as metadata the step, optimizer step, named
//                            RNG streams (seed, stream, offset), data-order position and a user
//                            JSON string.
// Each file is written to a temporary name, flushed and renamed, and both carry the step, so a
// crash between the two renames is detected on resume instead of mixing two steps.
// Resuming restores everything a run depends on, so N steps + resume + M steps equals N + M steps
// bit for bit.
#pragma once
#include "engine/optim.h"
#include "engine/params.h"
#include "engine/rng.h"

#define CHECKPOINT_MAX_RNGS 8
#define CHECKPOINT_MAX_PARTS 4

typedef struct {
    int64_t step;            // training steps completed
    int64_t epoch;           // data order: epoch ...
    int64_t epoch_position;  // ... and samples consumed within it
    int n_rngs;
    char rng_names[CHECKPOINT_MAX_RNGS][32];
    Rng *rngs[CHECKPOINT_MAX_RNGS];  // streams to save / restore in place
    char user_json[4096];            // free-form metadata (flags of the run, best accuracy, ...)
    // More weights of the run, each with its optimizer or none (a domain discriminator and its
    // SGD, an EMA copy): saved in the subdirectory <name>/ as a checkpoint of their own at the same
    // step, restored in place by checkpoint_load. train_state_add_part registers them.
    int n_parts;
    struct {
        char name[32];
        ParamStore *params;
        Optimizer *optimizer;  // may be NULL
    } parts[CHECKPOINT_MAX_PARTS];
} TrainState;

// Registers an RNG stream to be saved and restored under `name`.
void train_state_track_rng(TrainState *state, const char *name, Rng *rng);

// Registers more weights (and their optimizer, or NULL) saved and restored with the checkpoint as
// <directory>/<name>/.
void train_state_add_part(TrainState *state, const char *name, ParamStore *params, Optimizer *optimizer);
// 0 on success; -1 with one line in error. optimizer may be NULL (weights and state only).
int checkpoint_save(const char *directory, const ParamStore *params, const Optimizer *optimizer, const TrainState *state,
                    char *error, size_t error_size);
// Reads only the user JSON string saved with a checkpoint (to compare a run's settings before
// loading it); "" when none. 0 on success; -1 with one line in error.
int checkpoint_read_user_json(const char *directory, char *out, size_t out_size, char *error, size_t error_size);
// Restores weights, optimizer state and the tracked RNGs / counters of `state` in place. The
// optimizer must have been created with the same kind and size.
int checkpoint_load(const char *directory, ParamStore *params, Optimizer *optimizer, TrainState *state, char *error,
                    size_t error_size);
