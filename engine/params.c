#include "engine/params.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/autograd.h"
#include "engine/gpu/gpu.h"
#include "engine/optim.h"
#include "kernels/optim.h"
#include "engine/safetensors.h"

ParamStore *params_new(void) {
    ParamStore *store = calloc(1, sizeof(ParamStore));
    if (!store) tensor_fatal("params", "out of memory");
    return store;
}

void params_free(ParamStore *store) {
    if (!store) return;
    for (int i = 0; i < store->count; i++) tensor_release(store->items[i].value);
    storage_release(store->values);
    storage_release(store->grads);
    free(store->items);
    free(store);
}

static Tensor *add_item(ParamStore *store, const char *name, Shape shape, int group) {
    if (store->finalized) tensor_fatal("params", "cannot add '%s' after params_finalize", name);
    if (params_find(store, name)) tensor_fatal("params", "two tensors named '%s'", name);
    if (strlen(name) >= sizeof store->items[0].name) tensor_fatal("params", "name too long: '%s'", name);
    if (store->count == store->capacity) {
        store->capacity = store->capacity ? store->capacity * 2 : 64;
        store->items = realloc(store->items, (size_t)store->capacity * sizeof(Param));
        if (!store->items) tensor_fatal("params", "out of memory");
    }
    // Parameters live outside any scope: keep one reference for the store.
    Tensor *t = tensor_keep(tensor_zeros(DTYPE_F32, shape));
    tensor_set_name(t, name);
    Param *p = &store->items[store->count++];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->value = t;
    p->group = group;
    return t;
}

Tensor *params_add(ParamStore *store, const char *name, Shape shape, int group) {
    if (group < 0 || group >= PARAMS_MAX_GROUPS) tensor_fatal("params", "group %d out of range for '%s'", group, name);
    return tensor_requires_grad(add_item(store, name, shape, group));
}

Tensor *params_add_buffer(ParamStore *store, const char *name, Shape shape) { return add_item(store, name, shape, -1); }

void params_finalize(ParamStore *store) {
    if (store->finalized) return;
    int64_t total = 0;
    for (int g = 0; g < PARAMS_MAX_GROUPS; g++) {
        store->group_start[g] = total;
        for (int i = 0; i < store->count; i++)
            if (store->items[i].group == g) {
                store->items[i].offset = total;
                total += tensor_numel(store->items[i].value);
            }
        store->group_count[g] = total - store->group_start[g];
    }
    store->numel = total;
    store->values = storage_new((size_t)total * sizeof(float), device_cpu());
    store->grads = storage_new((size_t)total * sizeof(float), device_cpu());
    memset(store->grads->data, 0, store->grads->nbytes);
    TensorScope scope = tensor_scope_begin();
    for (int i = 0; i < store->count; i++) {
        Param *p = &store->items[i];
        if (p->group < 0) continue;
        Tensor *t = p->value;
        int64_t n = tensor_numel(t);
        memcpy((float *)store->values->data + p->offset, tensor_data(t), (size_t)n * sizeof(float));
        // Re-point the tensor at the flat buffer; its header (and every pointer to it) stays.
        storage_release(t->storage);
        t->storage = store->values;
        store->values->refcount++;
        t->offset = p->offset;
        Tensor *grad = tensor_over_storage(store->grads, DTYPE_F32, tensor_shape(t), p->offset);
        tensor_release(t->grad);
        t->grad = tensor_keep(grad);
    }
    tensor_scope_end(scope);
    store->finalized = true;
}

void params_zero_grad(ParamStore *store) {
    if (!store->grads) return;
    if (store->grads->device.kind == DEVICE_CUDA) gpu_memset_async(store->grads->data, 0, store->grads->nbytes, gpu_stream_default());
    else memset(store->grads->data, 0, store->grads->nbytes);
}

// A copy of a whole storage on `device`.
static Storage *storage_copy_to(Storage *source, Device device) {
    Storage *copy = storage_new(source->nbytes, device);
    TensorScope scope = tensor_scope_begin();
    int64_t n = (int64_t)(source->nbytes / sizeof(float));
    Tensor *from = tensor_empty_on(DTYPE_F32, SHAPE(0), device_cpu());  // a header to view `source`
    Tensor *to = tensor_empty_on(DTYPE_F32, SHAPE(0), device_cpu());
    storage_release(from->storage);
    storage_release(to->storage);
    from->storage = source;
    source->refcount++;
    to->storage = copy;
    copy->refcount++;
    from->shape[0] = to->shape[0] = n;
    tensor_copy_raw(to, from);
    tensor_scope_end(scope);
    return copy;
}

// Points a tensor header at another storage (same offset and layout).
static void repoint(Tensor *t, Storage *storage) {
    storage->refcount++;
    storage_release(t->storage);
    t->storage = storage;
}

void params_ema_update(ParamStore *ema, const ParamStore *model, double decay) {
    if (ema->numel != model->numel || ema->values->device.kind != model->values->device.kind)
        tensor_fatal("params_ema_update", "the two stores differ (%lld and %lld parameters, or devices)", (long long)ema->numel,
                     (long long)model->numel);
    if (ema->values->device.kind == DEVICE_CUDA) {
        ema_update_launch(params_values(ema), params_values(model), ema->numel, decay, gpu_stream_handle(gpu_stream_default()));
        GPU_CHECK_LAUNCH();
    } else {
        ema_update(params_values(ema), params_values(model), ema->numel, decay);
    }
}

void params_to_device(ParamStore *store, Device device) {
    if (!store->finalized) tensor_fatal("params", "params_to_device needs params_finalize first");
    Storage *values = storage_copy_to(store->values, device), *grads = storage_copy_to(store->grads, device);
    for (int i = 0; i < store->count; i++) {
        Tensor *t = store->items[i].value;
        if (store->items[i].group >= 0) {
            repoint(t, values);
            repoint(t->grad, grads);
        } else {  // a buffer with its own storage
            Storage *moved = storage_copy_to(t->storage, device);
            repoint(t, moved);
            storage_release(moved);
        }
    }
    storage_release(store->values);
    storage_release(store->grads);
    store->values = values;
    store->grads = grads;
}

Tensor *params_find(const ParamStore *store, const char *name) {
    for (int i = 0; i < store->count; i++)
        if (strcmp(store->items[i].name, name) == 0) return store->items[i].value;
    return NULL;
}

int64_t params_count_elements(const ParamStore *store) {
    int64_t n = 0;
    for (int i = 0; i < store->count; i++)
        if (store->items[i].group >= 0) n += tensor_numel(store->items[i].value);
    return n;
}

int params_save(const ParamStore *store, const char *path, const char *const *metadata, char *error, size_t error_size) {
    return params_save_prefixed(store, "", path, metadata, error, error_size);
}

int params_save_prefixed(const ParamStore *store, const char *prefix, const char *path, const char *const *metadata,
                         char *error, size_t error_size) {
    SafetensorsWriter *writer = safetensors_writer_new();
    TensorScope scope = tensor_scope_begin();
    int status = 0;
    size_t prefix_length = strlen(prefix);
    for (int i = 0; i < store->count && status == 0; i++) {
        if (strncmp(store->items[i].name, prefix, prefix_length) != 0) continue;
        Tensor *t = tensor_to_device_raw(store->items[i].value, device_cpu());  // host copy, contiguous
        if (safetensors_writer_add(writer, store->items[i].name + prefix_length, DTYPE_F32, t->ndim, t->shape,
                                   tensor_data(t)) != 0) {
            snprintf(error, error_size, "%s: tensor '%s': %s", path, store->items[i].name, safetensors_writer_error(writer));
            status = -1;
        }
    }
    for (int i = 0; metadata && metadata[i] && metadata[i + 1]; i += 2)
        safetensors_writer_set_metadata(writer, metadata[i], metadata[i + 1]);
    if (status == 0) status = safetensors_writer_write(writer, path, error, error_size);
    tensor_scope_end(scope);
    safetensors_writer_free(writer);
    return status;
}

// Copies a stored tensor into an f32 parameter or buffer (contiguous); integer buffers such as
// torchvision's i64 num_batches_tracked convert too. Returns the index of the first non-finite
// value, or -1.
static int64_t load_entry(Tensor *dst, const SafetensorsEntry *entry) {
    int64_t n = tensor_numel(dst), first_bad = -1;
    float *out = tensor_f32(dst);
    if (entry->dtype == DTYPE_F32) memcpy(out, entry->data, (size_t)n * sizeof(float));
    else
        for (int64_t i = 0; i < n; i++) out[i] = (float)dtype_load(entry->data, entry->dtype, i);
    for (int64_t i = 0; i < n && first_bad < 0; i++)
        if (!isfinite(out[i])) first_bad = i;
    return first_bad;
}

// Checks one tensor of the store against the file: present (or allowed missing), same shape, a
// numeric dtype. 0 ok, 1 missing and allowed, -1 error.
static int check_entry(const Param *p, const SafetensorsEntry *entry, const char *path, bool allow_missing, char *error,
                       size_t error_size) {
    if (!entry) {
        if (allow_missing) return 1;
        snprintf(error, error_size, "%s: tensor '%s' is missing from the file", path, p->name);
        return -1;
    }
    Shape expected = tensor_shape(p->value);
    Shape found = {.ndim = entry->ndim};
    for (int d = 0; d < entry->ndim; d++) found.dims[d] = entry->shape[d];
    if (!shape_equal(expected, found)) {
        char a[96], b[96];
        snprintf(error, error_size, "%s: tensor '%s' has shape %s, the model expects %s", path, p->name,
                 shape_string(found, a, sizeof a), shape_string(expected, b, sizeof b));
        return -1;
    }
    if (!dtype_is_float(entry->dtype) && p->group >= 0) {
        snprintf(error, error_size, "%s: tensor '%s' has dtype %s; a trainable parameter must be floating point", path,
                 p->name, dtype_name(entry->dtype));
        return -1;
    }
    return 0;
}

int params_load(ParamStore *store, const char *path, bool allow_missing, bool allow_unexpected, char *report,
                size_t report_size, char *error, size_t error_size) {
    SafetensorsFile *file;
    if (safetensors_open(path, &file, error, error_size) != 0) return -1;
    if (report && report_size) report[0] = 0;
    int status = 0;
    // Validate everything before changing anything, so a failed load leaves the model as it was.
    for (int i = 0; i < store->count && status == 0; i++)
        if (check_entry(&store->items[i], safetensors_find(file, store->items[i].name), path, allow_missing, error, error_size) < 0)
            status = -1;
    for (int i = 0; i < safetensors_count(file) && status == 0 && !allow_unexpected; i++) {
        const SafetensorsEntry *entry = safetensors_entry(file, i);
        if (!params_find(store, entry->name)) {
            snprintf(error, error_size, "%s: tensor '%s' is not part of the model", path, entry->name);
            status = -1;
        }
    }
    // Copy into a staging buffer per tensor first: a non-finite value (a corrupt or diverged
    // checkpoint) is refused before any parameter changes.
    TensorScope scope = tensor_scope_begin();
    Tensor **staged = calloc((size_t)(store->count ? store->count : 1), sizeof(Tensor *));
    size_t report_used = 0;
    for (int i = 0; i < store->count && status == 0; i++) {
        Param *p = &store->items[i];
        const SafetensorsEntry *entry = safetensors_find(file, p->name);
        if (!entry) {
            if (report && report_used < report_size)
                report_used += (size_t)snprintf(report + report_used, report_size - report_used, "%smissing %s",
                                                report_used ? ", " : "", p->name);
            continue;
        }
        staged[i] = tensor_empty_on(DTYPE_F32, tensor_shape(p->value), device_cpu());
        int64_t bad = load_entry(staged[i], entry);
        if (bad >= 0) {
            snprintf(error, error_size, "%s: tensor '%s' holds a non-finite value (%g at element %lld)", path, p->name,
                     (double)tensor_f32(staged[i])[bad], (long long)bad);
            status = -1;
        }
    }
    for (int i = 0; i < store->count && status == 0; i++)
        if (staged[i]) tensor_copy_raw(store->items[i].value, staged[i]);
    free(staged);
    tensor_scope_end(scope);
    safetensors_close(file);
    return status;
}
