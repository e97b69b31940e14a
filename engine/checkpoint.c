#include "engine/checkpoint.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/fs.h"
#include "engine/safetensors.h"

void train_state_track_rng(TrainState *state, const char *name, Rng *rng) {
    if (state->n_rngs >= CHECKPOINT_MAX_RNGS) tensor_fatal("checkpoint", "too many RNG streams to track");
    snprintf(state->rng_names[state->n_rngs], sizeof state->rng_names[0], "%s", name);
    state->rngs[state->n_rngs++] = rng;
}

void train_state_add_part(TrainState *state, const char *name, ParamStore *params, Optimizer *optimizer) {
    if (state->n_parts >= CHECKPOINT_MAX_PARTS) tensor_fatal("checkpoint", "too many checkpoint parts");
    snprintf(state->parts[state->n_parts].name, sizeof state->parts[0].name, "%s", name);
    state->parts[state->n_parts].params = params;
    state->parts[state->n_parts++].optimizer = optimizer;
}

static void path_join(char *out, size_t size, const char *directory, const char *file) {
    int length = snprintf(out, size, "%s/%s", directory, file);
    if (length < 0 || (size_t)length >= size) tensor_fatal("checkpoint", "path too long: %s/%s", directory, file);
}

static const char *const OPTIMIZER_KIND_NAMES[] = {"sgd", "adam", "adamw"};

// Removes a staging or previous checkpoint directory (ours: its files and part subdirectories).
static void remove_checkpoint_directory(const char *directory) { fs_remove_tree(directory); }

static int write_checkpoint_files(const char *directory, const ParamStore *params, const Optimizer *optimizer,
                                  const TrainState *state, char *error, size_t error_size) {
    char path[4096], step[32];
    snprintf(step, sizeof step, "%" PRId64, state->step);
    SafetensorsWriter *writer = safetensors_writer_new();
    float *host_state[2] = {NULL, NULL};
    char values[CHECKPOINT_MAX_RNGS + 8][128];
    int n_values = 0;
    safetensors_writer_set_metadata(writer, "tailor.format", "train_state-1");
    safetensors_writer_set_metadata(writer, "tailor.step", step);
    snprintf(values[n_values], sizeof values[0], "%" PRId64 ",%" PRId64, state->epoch, state->epoch_position);
    safetensors_writer_set_metadata(writer, "tailor.data_position", values[n_values++]);
    for (int i = 0; i < state->n_rngs; i++) {
        char key[64];
        snprintf(key, sizeof key, "tailor.rng.%s", state->rng_names[i]);
        snprintf(values[n_values], sizeof values[0], "%" PRIu64 ",%" PRIu64 ",%" PRIu64, state->rngs[i]->seed,
                 state->rngs[i]->stream, state->rngs[i]->offset);
        safetensors_writer_set_metadata(writer, key, values[n_values++]);
    }
    if (state->user_json[0]) safetensors_writer_set_metadata(writer, "tailor.user", state->user_json);
    if (optimizer) {
        safetensors_writer_set_metadata(writer, "tailor.optimizer.kind", OPTIMIZER_KIND_NAMES[optimizer->kind]);
        snprintf(values[n_values], sizeof values[0], "%" PRId64, optimizer->step);
        safetensors_writer_set_metadata(writer, "tailor.optimizer.step", values[n_values++]);
        int64_t shape[1] = {optimizer->n_params};
        // Host copies: the state may live on the CUDA device.
        for (int b = 0; b < 2; b++) {
            if (!(b == 0 ? optimizer->state1 : optimizer->state2)) continue;
            host_state[b] = malloc((size_t)(optimizer->n_params ? optimizer->n_params : 1) * sizeof(float));
            if (!host_state[b]) tensor_fatal("checkpoint", "out of memory copying the optimizer state");
            optimizer_state_to_host(optimizer, b + 1, host_state[b]);
            safetensors_writer_add(writer, b == 0 ? "optimizer.state1" : "optimizer.state2", DTYPE_F32, 1, shape, host_state[b]);
        }
    }
    path_join(path, sizeof path, directory, "train_state.safetensors");
    int status = safetensors_writer_write(writer, path, error, error_size);
    safetensors_writer_free(writer);
    free(host_state[0]);
    free(host_state[1]);
    if (status != 0) return status;
    const char *metadata[] = {"tailor.step", step, NULL};
    path_join(path, sizeof path, directory, "model.safetensors");
    if (params_save(params, path, metadata, error, error_size) != 0) return -1;
    for (int i = 0; i < state->n_parts; i++) {
        path_join(path, sizeof path, directory, state->parts[i].name);
        if (mkdir(path, 0777) != 0) {
            snprintf(error, error_size, "%s: cannot create: %s", path, strerror(errno));
            return -1;
        }
        TrainState part = {.step = state->step, .epoch = state->epoch, .epoch_position = state->epoch_position};
        if (write_checkpoint_files(path, state->parts[i].params, state->parts[i].optimizer, &part, error, error_size) != 0)
            return -1;
    }
    return 0;
}

// Both files go into a fresh staging directory; only when both are complete does it replace the
// previous checkpoint (old -> .prev, staging -> final, .prev removed). A crash at any point
// leaves either the old checkpoint, or the new one, or the old one under .prev, which
// checkpoint_load falls back to.
int checkpoint_save(const char *directory, const ParamStore *params, const Optimizer *optimizer, const TrainState *state,
                    char *error, size_t error_size) {
    char staging[4096], previous[4096];
    snprintf(staging, sizeof staging, "%s.tmp.%ld", directory, (long)getpid());
    snprintf(previous, sizeof previous, "%s.prev", directory);
    remove_checkpoint_directory(staging);
    if (mkdir(staging, 0777) != 0) {
        snprintf(error, error_size, "%s: cannot create the checkpoint directory: %s", staging, strerror(errno));
        return -1;
    }
    if (write_checkpoint_files(staging, params, optimizer, state, error, error_size) != 0) {
        remove_checkpoint_directory(staging);
        return -1;
    }
    struct stat info;
    bool had_previous = stat(directory, &info) == 0;
    if (had_previous) {
        remove_checkpoint_directory(previous);
        if (rename(directory, previous) != 0) {
            snprintf(error, error_size, "%s: cannot move the previous checkpoint aside: %s", directory, strerror(errno));
            remove_checkpoint_directory(staging);
            return -1;
        }
    }
    if (rename(staging, directory) != 0) {
        snprintf(error, error_size, "%s: cannot move the new checkpoint into place: %s", directory, strerror(errno));
        if (had_previous) rename(previous, directory);
        return -1;
    }
    if (had_previous) remove_checkpoint_directory(previous);
    return 0;
}

static int parse_u64_list(const char *text, uint64_t *out, int n) {
    const char *at = text;
    for (int i = 0; i < n; i++) {
        char *end;
        errno = 0;
        out[i] = strtoull(at, &end, 10);
        if (end == at || errno) return -1;
        at = end;
        if (i + 1 < n) {
            if (*at != ',') return -1;
            at++;
        }
    }
    return *at == 0 ? 0 : -1;
}

// The directory to read: `directory`, or its .prev when a save was interrupted between renames.
static const char *readable_directory(const char *directory, char *previous, size_t size) {
    snprintf(previous, size, "%s.prev", directory);
    struct stat info;
    return stat(directory, &info) != 0 && stat(previous, &info) == 0 ? previous : directory;
}

int checkpoint_read_user_json(const char *directory, char *out, size_t out_size, char *error, size_t error_size) {
    char path[4096], previous[4096];
    path_join(path, sizeof path, readable_directory(directory, previous, sizeof previous), "train_state.safetensors");
    SafetensorsFile *file;
    if (safetensors_open(path, &file, error, error_size) != 0) return -1;
    const char *user = safetensors_metadata(file, "tailor.user");
    snprintf(out, out_size, "%s", user ? user : "");
    safetensors_close(file);
    return 0;
}

int checkpoint_load(const char *directory, ParamStore *params, Optimizer *optimizer, TrainState *state, char *error,
                    size_t error_size) {
    char path[4096], previous[4096];
    directory = readable_directory(directory, previous, sizeof previous);
    path_join(path, sizeof path, directory, "train_state.safetensors");
    SafetensorsFile *file;
    if (safetensors_open(path, &file, error, error_size) != 0) return -1;
    // Read and check everything into locals first; the run's state changes only once all of it,
    // and the weights, have loaded.
    TrainState loaded = *state;
    Rng rngs[CHECKPOINT_MAX_RNGS];
    const SafetensorsEntry *buffers[2] = {NULL, NULL};
    int64_t optimizer_step = 0;
    int status = -1;
    uint64_t numbers[3];
    const char *format = safetensors_metadata(file, "tailor.format");
    const char *step = safetensors_metadata(file, "tailor.step");
    const char *position = safetensors_metadata(file, "tailor.data_position");
    if (!format || strcmp(format, "train_state-1") != 0 || !step || !position) {
        snprintf(error, error_size, "%s: not a Tailor training state (missing tailor.format/step metadata)", path);
        goto done;
    }
    if (parse_u64_list(step, numbers, 1) != 0) {
        snprintf(error, error_size, "%s: bad tailor.step '%s'", path, step);
        goto done;
    }
    loaded.step = (int64_t)numbers[0];
    if (parse_u64_list(position, numbers, 2) != 0) {
        snprintf(error, error_size, "%s: bad tailor.data_position '%s'", path, position);
        goto done;
    }
    loaded.epoch = (int64_t)numbers[0];
    loaded.epoch_position = (int64_t)numbers[1];
    for (int i = 0; i < state->n_rngs; i++) {
        char key[64];
        snprintf(key, sizeof key, "tailor.rng.%s", state->rng_names[i]);
        const char *value = safetensors_metadata(file, key);
        if (!value || parse_u64_list(value, numbers, 3) != 0) {
            snprintf(error, error_size, "%s: RNG stream '%s' is missing or malformed", path, state->rng_names[i]);
            goto done;
        }
        rngs[i] = (Rng){.seed = numbers[0], .stream = numbers[1], .offset = numbers[2]};
    }
    const char *user = safetensors_metadata(file, "tailor.user");
    snprintf(loaded.user_json, sizeof loaded.user_json, "%s", user ? user : "");
    if (optimizer) {
        const char *kind = safetensors_metadata(file, "tailor.optimizer.kind");
        const char *saved_step = safetensors_metadata(file, "tailor.optimizer.step");
        if (!kind || strcmp(kind, OPTIMIZER_KIND_NAMES[optimizer->kind]) != 0) {
            snprintf(error, error_size, "%s: saved optimizer is '%s', this run uses '%s'", path, kind ? kind : "none",
                     OPTIMIZER_KIND_NAMES[optimizer->kind]);
            goto done;
        }
        if (!saved_step || parse_u64_list(saved_step, numbers, 1) != 0) {
            snprintf(error, error_size, "%s: bad tailor.optimizer.step", path);
            goto done;
        }
        optimizer_step = (int64_t)numbers[0];
        float *targets[2] = {optimizer->state1, optimizer->state2};
        const char *names[2] = {"optimizer.state1", "optimizer.state2"};
        for (int b = 0; b < 2; b++) {
            const SafetensorsEntry *entry = safetensors_find(file, names[b]);
            if (!targets[b] && entry) {
                snprintf(error, error_size, "%s: tensor '%s' is saved but this run's optimizer has no such state "
                         "(different momentum or optimizer?)", path, names[b]);
                goto done;
            }
            if (targets[b] && !entry) {
                snprintf(error, error_size, "%s: tensor '%s' is missing; this run's optimizer needs it (different momentum or optimizer?)",
                         path, names[b]);
                goto done;
            }
            if (entry && (entry->dtype != DTYPE_F32 || entry->ndim != 1 || entry->shape[0] != optimizer->n_params)) {
                snprintf(error, error_size, "%s: tensor '%s' holds %" PRId64 " values, this model has %" PRId64
                         " parameters (a different model?)", path, names[b], entry->ndim == 1 ? entry->shape[0] : -1, optimizer->n_params);
                goto done;
            }
            buffers[b] = entry;
        }
    }

    char model_path[4096];
    path_join(model_path, sizeof model_path, directory, "model.safetensors");
    SafetensorsFile *model;
    if (safetensors_open(model_path, &model, error, error_size) != 0) goto done;
    const char *stored_step = safetensors_metadata(model, "tailor.step");
    char model_step[32];
    snprintf(model_step, sizeof model_step, "%s", stored_step ? stored_step : "?");  // outlives the mapping
    bool consistent = stored_step && parse_u64_list(stored_step, numbers, 1) == 0 && (int64_t)numbers[0] == loaded.step;
    safetensors_close(model);
    if (!consistent) {
        snprintf(error, error_size, "%s: weights are from step %s but the training state is from step %" PRId64
                 " (interrupted save?)", model_path, model_step, loaded.step);
        goto done;
    }
    if (params_load(params, model_path, false, false, NULL, 0, error, error_size) != 0) goto done;
    for (int i = 0; i < state->n_parts; i++) {
        path_join(model_path, sizeof model_path, directory, state->parts[i].name);
        TrainState part = {0};
        if (checkpoint_load(model_path, state->parts[i].params, state->parts[i].optimizer, &part, error, error_size) != 0) goto done;
        if (part.step != loaded.step) {
            snprintf(error, error_size, "%s: from step %" PRId64 ", the training state from step %" PRId64, model_path, part.step,
                     loaded.step);
            goto done;
        }
    }
    // Everything checked and the weights are in: apply the rest.
    if (optimizer) {
        optimizer->step = optimizer_step;
        for (int b = 0; b < 2; b++)
            if (buffers[b]) {
                // The mapping may be unaligned for f32 (other writers); stage through an aligned copy.
                float *host = malloc(buffers[b]->nbytes ? buffers[b]->nbytes : 1);
                if (!host) tensor_fatal("checkpoint", "out of memory loading the optimizer state");
                memcpy(host, buffers[b]->data, buffers[b]->nbytes);
                optimizer_state_from_host(optimizer, b + 1, host);
                free(host);
            }
    }
    for (int i = 0; i < state->n_rngs; i++) *state->rngs[i] = rngs[i];
    *state = loaded;  // (loaded began as a copy of *state: the RNG and part registrations stay)
    status = 0;
done:
    safetensors_close(file);
    return status;
}
