// A model's parameters and buffers, by state-dict name.
//
// Parameters are created one by one while a model is built; params_finalize() then moves every
// trainable parameter into one flat f32 buffer (and gives each a gradient view into one flat
// gradient buffer), ordered by optimizer group so that each group is one contiguous range — what
// the optimizers, gradient clipping and the data-parallel all-reduce work on (as llm.c does).
// The Tensor pointers handed out before finalize stay valid: only their storage moves.
// Buffers (batch-norm running statistics) are saved and loaded by name but get no gradient.
#pragma once
#include <stdbool.h>

#include "engine/tensor.h"

#define PARAMS_MAX_GROUPS 8

typedef struct {
    char name[128];
    Tensor *value;   // kept by the store
    int group;       // optimizer group; -1 for buffers
    int64_t offset;  // element offset in the flat buffer after finalize (parameters only)
} Param;

typedef struct ParamStore {
    Param *items;
    int count, capacity;
    bool finalized;
    Storage *values, *grads;  // flat buffers after finalize
    int64_t numel;            // trainable elements
    int64_t group_start[PARAMS_MAX_GROUPS], group_count[PARAMS_MAX_GROUPS];
} ParamStore;

ParamStore *params_new(void);
void params_free(ParamStore *store);
// A zero-filled f32 parameter (group: index of an optimizer group, e.g. 0 decay, 1 no decay).
Tensor *params_add(ParamStore *store, const char *name, Shape shape, int group);
// A zero-filled f32 buffer saved with the state dict but not trained.
Tensor *params_add_buffer(ParamStore *store, const char *name, Shape shape);
void params_finalize(ParamStore *store);
void params_zero_grad(ParamStore *store);
// Moves the flat parameter and gradient buffers, and every buffer, to `device` (after finalize);
// the Tensor pointers stay valid. params_values/params_grads are then device pointers.
void params_to_device(ParamStore *store, Device device);
// ema = decay * ema + (1 - decay) * model over the trainable parameters (two stores of the same
// model, on the same device), as ema_update / the EMA kernel; e.g. the teacher of Mean Teacher.
void params_ema_update(ParamStore *ema, const ParamStore *model, double decay);
static inline float *params_values(const ParamStore *store) { return (float *)store->values->data; }
static inline float *params_grads(const ParamStore *store) { return (float *)store->grads->data; }
Tensor *params_find(const ParamStore *store, const char *name);  // NULL if absent
int64_t params_count_elements(const ParamStore *store);           // trainable elements

// Writes every parameter and buffer under its name (f32), with metadata key/value pairs
// (NULL-terminated list, may be NULL). 0 on success; else -1 and one line in error.
int params_save(const ParamStore *store, const char *path, const char *const *metadata, char *error, size_t error_size);
// params_save for the tensors whose names start with prefix, saved without it ("unet." of a store
// holding several models -> the UNet's own state dict).
int params_save_prefixed(const ParamStore *store, const char *prefix, const char *path, const char *const *metadata,
                         char *error, size_t error_size);
// Loads tensors by name, converting F16/BF16/F64 to f32. Every tensor of the store must be found
// with the same shape; with allow_missing, missing names (e.g. a new classifier head) are listed
// in `report` and skipped. Names in the file that the store lacks are errors unless
// allow_unexpected. 0 on success; else -1 and one line in error naming the file and tensor.
int params_load(ParamStore *store, const char *path, bool allow_missing, bool allow_unexpected, char *report,
                size_t report_size, char *error, size_t error_size);
