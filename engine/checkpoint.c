#include "engine/checkpoint.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine/safetensors.h"

void train_state_track_rng(TrainState *state, const char *name, Rng *rng) {
    if (state->n_rngs >= CHECKPOINT_MAX_RNGS) tensor_fatal("checkpoint", "too many RNG streams to track");
    snprintf(state->rng_names[state->n_rngs], sizeof state->rng_names[0], "%s", name);
    state->rngs[state->n_rngs++] = rng;
}

static void path_join(char *out, size_t size, const char *directory, const char *file) {
    snprintf(out, size, "%s/%s", directory, file);
}

static const char *const OPTIMIZER_KIND_NAMES[] = {"sgd", "adam", "adamw"};

int checkpoint_save(const char *directory, const ParamStore *params, const Optimizer *optimizer, const TrainState *state,
                    char *error, size_t error_size) {
    if (mkdir(directory, 0777) != 0 && errno != EEXIST) {
        snprintf(error, error_size, "%s: cannot create the checkpoint directory: %s", directory, strerror(errno));
        return -1;
    }
    char path[4096], step[32];
    snprintf(step, sizeof step, "%" PRId64, state->step);

    // Training state first: if we crash before the model is renamed, the steps disagree on resume.
    SafetensorsWriter *writer = safetensors_writer_new();
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
        if (optimizer->state1) safetensors_writer_add(writer, "optimizer.state1", DTYPE_F32, 1, shape, optimizer->state1);
        if (optimizer->state2) safetensors_writer_add(writer, "optimizer.state2", DTYPE_F32, 1, shape, optimizer->state2);
    }
    path_join(path, sizeof path, directory, "train_state.safetensors");
    int status = safetensors_writer_write(writer, path, error, error_size);
    safetensors_writer_free(writer);
    if (status != 0) return status;

    const char *metadata[] = {"tailor.step", step, NULL};
    path_join(path, sizeof path, directory, "model.safetensors");
    return params_save(params, path, metadata, error, error_size);
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

int checkpoint_load(const char *directory, ParamStore *params, Optimizer *optimizer, TrainState *state, char *error,
                    size_t error_size) {
    char path[4096];
    path_join(path, sizeof path, directory, "train_state.safetensors");
    SafetensorsFile *file;
    if (safetensors_open(path, &file, error, error_size) != 0) return -1;
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
    state->step = (int64_t)numbers[0];
    if (parse_u64_list(position, numbers, 2) != 0) {
        snprintf(error, error_size, "%s: bad tailor.data_position '%s'", path, position);
        goto done;
    }
    state->epoch = (int64_t)numbers[0];
    state->epoch_position = (int64_t)numbers[1];
    for (int i = 0; i < state->n_rngs; i++) {
        char key[64];
        snprintf(key, sizeof key, "tailor.rng.%s", state->rng_names[i]);
        const char *value = safetensors_metadata(file, key);
        if (!value || parse_u64_list(value, numbers, 3) != 0) {
            snprintf(error, error_size, "%s: RNG stream '%s' is missing or malformed", path, state->rng_names[i]);
            goto done;
        }
        state->rngs[i]->seed = numbers[0];
        state->rngs[i]->stream = numbers[1];
        state->rngs[i]->offset = numbers[2];
    }
    const char *user = safetensors_metadata(file, "tailor.user");
    snprintf(state->user_json, sizeof state->user_json, "%s", user ? user : "");
    if (optimizer) {
        const char *kind = safetensors_metadata(file, "tailor.optimizer.kind");
        const char *optimizer_step = safetensors_metadata(file, "tailor.optimizer.step");
        if (!kind || strcmp(kind, OPTIMIZER_KIND_NAMES[optimizer->kind]) != 0) {
            snprintf(error, error_size, "%s: saved optimizer is '%s', this run uses '%s'", path, kind ? kind : "none",
                     OPTIMIZER_KIND_NAMES[optimizer->kind]);
            goto done;
        }
        if (!optimizer_step || parse_u64_list(optimizer_step, numbers, 1) != 0) {
            snprintf(error, error_size, "%s: bad tailor.optimizer.step", path);
            goto done;
        }
        optimizer->step = (int64_t)numbers[0];
        float *buffers[2] = {optimizer->state1, optimizer->state2};
        const char *names[2] = {"optimizer.state1", "optimizer.state2"};
        for (int b = 0; b < 2; b++) {
            const SafetensorsEntry *entry = safetensors_find(file, names[b]);
            if (!buffers[b] && !entry) continue;
            if (!buffers[b] || !entry || entry->dtype != DTYPE_F32 || entry->ndim != 1 || entry->shape[0] != optimizer->n_params) {
                snprintf(error, error_size, "%s: tensor '%s' missing or not f32 [%" PRId64 "] as this optimizer needs", path, names[b],
                         optimizer->n_params);
                goto done;
            }
            memcpy(buffers[b], entry->data, entry->nbytes);
        }
    }
    status = 0;
done:
    safetensors_close(file);
    if (status != 0) return status;

    path_join(path, sizeof path, directory, "model.safetensors");
    SafetensorsFile *model;
    if (safetensors_open(path, &model, error, error_size) != 0) return -1;
    const char *stored_step = safetensors_metadata(model, "tailor.step");
    char model_step[32];
    snprintf(model_step, sizeof model_step, "%s", stored_step ? stored_step : "?");  // outlives the mapping
    bool consistent = stored_step && parse_u64_list(stored_step, numbers, 1) == 0 && (int64_t)numbers[0] == state->step;
    safetensors_close(model);
    if (!consistent) {
        snprintf(error, error_size, "%s: weights are from step %s but the training state is from step %" PRId64
                 " (interrupted save?)", path, model_step, state->step);
        return -1;
    }
    return params_load(params, path, false, false, NULL, 0, error, error_size);
}
