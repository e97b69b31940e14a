// The data loader (data/loader.h). A ring of `depth` slots, each holding one batch's buffers.
// Batches are numbered 0, 1, 2, ... in the order the training loop takes them. A worker claims the
// next number when that number's slot (number % depth) is free, plans it under the lock (which
// epoch, which positions, which samples: the only shared state), fills it without the lock, and
// marks it ready; loader_next waits for its number to be ready. Since the plan of batch k and the
// augmentation of each sample depend only on (seed, epoch, position), the output is the same for
// any number of workers and any timing.
#include "data/loader.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/gpu/gpu.h"
#include "engine/rng.h"

typedef enum { SLOT_FREE, SLOT_FILLING, SLOT_READY, SLOT_FAILED, SLOT_IN_USE } SlotState;

typedef struct {
    SlotState state;
    int64_t number;          // which batch of the sequence the slot holds
    LoaderBatch batch;
    int64_t *planned;        // [batch_size] dataset indices before bad-sample substitution
    char error[512];
} Slot;

struct Loader {
    LoaderOptions options;
    char name[256];
    int64_t sample_count;
    int64_t batches_per_epoch;
    int n_views;
    int shape[LOADER_MAX_VIEWS][3];  // channels, height, width
    size_t view_floats[LOADER_MAX_VIEWS];

    Slot *slots;
    int depth;
    pthread_mutex_t mutex;
    pthread_cond_t slot_changed;     // a slot became ready/failed, or free
    pthread_t *threads;
    int thread_count;
    bool stopping;

    // Planning state (under the mutex).
    int64_t next_number_to_plan;
    int64_t cursor_epoch, cursor_position;
    int64_t *order;                  // the permutation of order_epoch
    int64_t order_epoch;

    // Consumer state.
    int64_t next_number_to_take;
    Slot *in_use;
    bool failed;
    char failure[512];

    unsigned char *known_bad;        // per sample, set (atomically) once its file failed to decode
};

static void set_error(char *error, size_t error_size, const char *format, ...) {
    if (!error || error_size == 0) return;
    va_list args;
    va_start(args, format);
    vsnprintf(error, error_size, format, args);
    va_end(args);
}

// ---------------------------------------------------------------- planning

// Moves the cursor past an exhausted epoch: an epoch ends at its last sample, or with drop_last
// when fewer than batch_size samples remain.
static void normalise_cursor(const Loader *loader, int64_t *epoch, int64_t *position) {
    int64_t remaining = loader->sample_count - *position;
    if (remaining <= 0 || (loader->options.drop_last && remaining < loader->options.batch_size)) {
        *epoch += 1;
        *position = 0;
    }
}

static void compute_order(Loader *loader, int64_t epoch) {
    if (loader->order_epoch == epoch) return;
    if (loader->options.shuffle) {
        Rng rng = rng_make(loader->options.seed, (uint64_t)epoch);
        rng_permutation(&rng, loader->order, loader->sample_count);
    } else {
        for (int64_t i = 0; i < loader->sample_count; i++) loader->order[i] = i;
    }
    loader->order_epoch = epoch;
}

// Under the mutex: assigns the next batch of the sequence to `slot`.
static void plan_batch(Loader *loader, Slot *slot) {
    int64_t epoch = loader->cursor_epoch, position = loader->cursor_position;
    compute_order(loader, epoch);
    int64_t count = loader->sample_count - position;
    if (count > loader->options.batch_size) count = loader->options.batch_size;
    int shards = loader->options.shard_count > 1 ? loader->options.shard_count : 1, rank = shards > 1 ? loader->options.shard_rank : 0;
    int64_t shard_start = count * rank / shards, shard_end = count * (rank + 1) / shards;
    for (int64_t i = shard_start; i < shard_end; i++) slot->planned[i - shard_start] = loader->order[position + i];
    slot->number = loader->next_number_to_plan++;
    slot->batch.count = shard_end - shard_start;
    slot->batch.global_count = count;
    slot->batch.shard_start = shard_start;
    slot->batch.epoch = epoch;
    slot->batch.position = position;
    int64_t next_epoch = epoch, next_position = position + count;
    normalise_cursor(loader, &next_epoch, &next_position);
    slot->batch.next_epoch = loader->cursor_epoch = next_epoch;
    slot->batch.next_position = loader->cursor_position = next_position;
    slot->error[0] = '\0';
}

// ---------------------------------------------------------------- decoding one sample

// Row `row` of the IDX image array as an Image with `channels` channels.
static int idx_row_image(const Loader *loader, int64_t row, Image *out, char *error, size_t error_size) {
    const IdxArray *images = loader->options.idx_images;
    int height = (int)images->dims[1], width = (int)images->dims[2];
    int source_channels = images->ndim == 4 ? (int)images->dims[3] : 1;
    int channels = loader->options.channels;
    size_t pixels = (size_t)height * (size_t)width;
    const uint8_t *source = (const uint8_t *)images->data + (size_t)row * pixels * (size_t)source_channels;
    uint8_t *data = malloc(pixels * (size_t)channels);
    if (!data) {
        set_error(error, error_size, "%s: out of memory for row %lld", loader->name, (long long)row);
        return -1;
    }
    for (size_t p = 0; p < pixels; p++) {
        const uint8_t *in = source + p * (size_t)source_channels;
        uint8_t *o = data + p * (size_t)channels;
        if (channels == source_channels || (channels == 3 && source_channels == 4)) {
            memcpy(o, in, (size_t)channels);
        } else if (source_channels == 1) {
            for (int c = 0; c < channels; c++) o[c] = in[0];
        } else {  // colour to grey: PIL's "L", as image_load converts
            o[0] = (uint8_t)((in[0] * 19595u + in[1] * 38470u + in[2] * 7471u + 0x8000u) >> 16);
        }
    }
    *out = (Image){.width = width, .height = height, .channels = channels, .pixels = data};
    return 0;
}

static int decode_sample(const Loader *loader, int64_t index, Image *out, char *error, size_t error_size) {
    const DatasetSample *sample = &loader->options.dataset->samples[index];
    if (sample->path) return image_load(sample->path, loader->options.channels, out, error, error_size);
    return idx_row_image(loader, sample->index, out, error, error_size);
}

// Decodes dataset sample `index`, or with the skip policy the first good sample after it.
static int decode_with_policy(Loader *loader, int64_t index, Image *out, int64_t *used_index, char *error,
                              size_t error_size) {
    for (int64_t tries = 0; tries < loader->sample_count; tries++) {
        int64_t candidate = (index + tries) % loader->sample_count;
        if (__atomic_load_n(&loader->known_bad[candidate], __ATOMIC_RELAXED)) continue;
        char why[512];
        if (decode_sample(loader, candidate, out, why, sizeof why) == 0) {
            *used_index = candidate;
            return 0;
        }
        if (loader->options.bad_samples == LOADER_BAD_SAMPLE_FATAL) {
            set_error(error, error_size, "%s", why);
            return -1;
        }
        if (!__atomic_exchange_n(&loader->known_bad[candidate], 1, __ATOMIC_RELAXED))
            fprintf(stderr, "warning: %s; skipped (a later sample takes its place)\n", why);
    }
    set_error(error, error_size, "%s: no sample could be decoded", loader->name);
    return -1;
}

static void to_float_plain(const Image *image, float *out) {
    size_t pixels = (size_t)image->width * (size_t)image->height;
    for (int c = 0; c < image->channels; c++)
        for (size_t p = 0; p < pixels; p++)
            out[(size_t)c * pixels + p] = (float)image->pixels[p * (size_t)image->channels + (size_t)c] / 255.0f;
}

static int copy_image(const Image *in, Image *out) {
    size_t bytes = (size_t)in->width * (size_t)in->height * (size_t)in->channels;
    *out = *in;
    out->pixels = malloc(bytes ? bytes : 1);
    if (!out->pixels) return -1;
    memcpy(out->pixels, in->pixels, bytes);
    return 0;
}

// Runs view `view` of the sample at (epoch, position) on `image` (consumed) and returns its shape.
static int transform_view(const Loader *loader, int view, int64_t epoch, int64_t position, Image *image,
                          char *error, size_t error_size) {
    const TransformPipeline *pipeline = loader->options.views[view];
    if (!pipeline) return 0;
    Rng rng = rng_make(loader->options.seed, LOADER_AUGMENT_STREAM(epoch, position, view));
    char why[400];
    if (transform_pipeline_apply(pipeline, image, &rng, why, sizeof why) != 0) {
        set_error(error, error_size, "%s, view %d (%s): %s", loader->name, view,
                  transform_pipeline_spec(pipeline), why);
        return -1;
    }
    return 0;
}

static const char *sample_name(const Loader *loader, int64_t index, char *buffer, size_t size) {
    const DatasetSample *sample = &loader->options.dataset->samples[index];
    if (sample->path) return sample->path;
    snprintf(buffer, size, "%s row %lld", loader->name, (long long)sample->index);
    return buffer;
}

// Fills sample i of the slot's batch: decode once, then every view.
static int fill_sample(Loader *loader, Slot *slot, int64_t i, char *error, size_t error_size) {
    LoaderBatch *batch = &slot->batch;
    Image decoded = {0};
    int64_t index;
    if (decode_with_policy(loader, slot->planned[i], &decoded, &index, error, error_size) != 0) return -1;
    batch->indices[i] = index;
    batch->labels[i] = loader->options.dataset->samples[index].label;
    int64_t position = batch->position + batch->shard_start + i;  // global: the same augmentation in any shard
    int status = 0;
    for (int v = 0; v < loader->n_views && status == 0; v++) {
        Image view_image;
        if (v + 1 < loader->n_views) {
            if (copy_image(&decoded, &view_image) != 0) {
                set_error(error, error_size, "%s: out of memory", loader->name);
                status = -1;
                break;
            }
        } else {
            view_image = decoded;
            decoded = (Image){0};
        }
        status = transform_view(loader, v, batch->epoch, position, &view_image, error, error_size);
        if (status == 0 && (view_image.channels != loader->shape[v][0] || view_image.height != loader->shape[v][1] ||
                            view_image.width != loader->shape[v][2])) {
            char buffer[300];
            set_error(error, error_size,
                      "%s: view %d gives %dx%dx%d (channels x height x width) but the first sample gave %dx%dx%d; "
                      "end the pipeline with a fixed-size step (resize=H:W, center_crop, random_crop, ...)",
                      sample_name(loader, index, buffer, sizeof buffer), v, view_image.channels, view_image.height,
                      view_image.width, loader->shape[v][0], loader->shape[v][1], loader->shape[v][2]);
            status = -1;
        }
        if (status == 0) {
            float *out = batch->images[v] + (size_t)i * loader->view_floats[v];
            if (loader->options.views[v])
                transform_pipeline_to_float(loader->options.views[v], &view_image, out);
            else
                to_float_plain(&view_image, out);
        }
        image_free(&view_image);
    }
    image_free(&decoded);
    return status;
}

static int fill_slot(Loader *loader, Slot *slot) {
    for (int64_t i = 0; i < slot->batch.count; i++)
        if (fill_sample(loader, slot, i, slot->error, sizeof slot->error) != 0) return -1;
    return 0;
}

// ---------------------------------------------------------------- workers

// Called and returns with the mutex held: plans the next batch into the free `slot` and fills it
// with the mutex released.
static void produce_batch(Loader *loader, Slot *slot) {
    slot->state = SLOT_FILLING;
    plan_batch(loader, slot);
    pthread_mutex_unlock(&loader->mutex);
    int status = fill_slot(loader, slot);
    pthread_mutex_lock(&loader->mutex);
    slot->state = status == 0 ? SLOT_READY : SLOT_FAILED;
}

static void *worker_main(void *argument) {
    Loader *loader = argument;
    pthread_mutex_lock(&loader->mutex);
    while (!loader->stopping) {
        Slot *slot = &loader->slots[loader->next_number_to_plan % loader->depth];
        if (slot->state != SLOT_FREE) {
            pthread_cond_wait(&loader->slot_changed, &loader->mutex);
            continue;
        }
        produce_batch(loader, slot);
        pthread_cond_broadcast(&loader->slot_changed);
    }
    pthread_mutex_unlock(&loader->mutex);
    return NULL;
}

int loader_next(Loader *loader, const LoaderBatch **batch, char *error, size_t error_size) {
    *batch = NULL;
    if (loader->failed) {
        set_error(error, error_size, "%s", loader->failure);
        return -1;
    }
    pthread_mutex_lock(&loader->mutex);
    if (loader->in_use) {
        loader->in_use->state = SLOT_FREE;
        loader->in_use = NULL;
        pthread_cond_broadcast(&loader->slot_changed);
    }
    Slot *slot = &loader->slots[loader->next_number_to_take % loader->depth];
    if (loader->thread_count == 0) {
        produce_batch(loader, slot);
    }
    while (!(slot->number == loader->next_number_to_take && (slot->state == SLOT_READY || slot->state == SLOT_FAILED)))
        pthread_cond_wait(&loader->slot_changed, &loader->mutex);
    loader->next_number_to_take++;
    if (slot->state == SLOT_FAILED) {
        loader->failed = true;
        snprintf(loader->failure, sizeof loader->failure, "%s", slot->error);
        pthread_mutex_unlock(&loader->mutex);
        set_error(error, error_size, "%s", loader->failure);
        return -1;
    }
    slot->state = SLOT_IN_USE;
    loader->in_use = slot;
    pthread_mutex_unlock(&loader->mutex);
    *batch = &slot->batch;
    return 0;
}

// ---------------------------------------------------------------- creation

static void *buffer_alloc(const Loader *loader, size_t bytes) {
    if (bytes == 0) bytes = 1;
    if (loader->options.pinned) return gpu_host_alloc(bytes);
    size_t rounded = (bytes + 63) & ~(size_t)63;
    return aligned_alloc(64, rounded);
}

static void buffer_free(const Loader *loader, void *pointer) {
    if (!pointer) return;
    if (loader->options.pinned)
        gpu_host_free(pointer);
    else
        free(pointer);
}

static void free_slots(Loader *loader) {
    if (!loader->slots) return;
    for (int s = 0; s < loader->depth; s++) {
        Slot *slot = &loader->slots[s];
        for (int v = 0; v < LOADER_MAX_VIEWS; v++) buffer_free(loader, slot->batch.images[v]);
        free(slot->batch.labels);
        free(slot->batch.indices);
        free(slot->planned);
    }
    free(loader->slots);
    loader->slots = NULL;
}

static int check_options(const LoaderOptions *options, const char *name, char *error, size_t error_size) {
    if (!options->dataset) {
        set_error(error, error_size, "loader: no dataset given");
        return -1;
    }
    const Dataset *dataset = options->dataset;
    if (dataset->count <= 0) {
        set_error(error, error_size, "%s: the dataset is empty", name);
        return -1;
    }
    if (options->batch_size <= 0) {
        set_error(error, error_size, "%s: batch size must be positive, got %lld", name, (long long)options->batch_size);
        return -1;
    }
    if (options->drop_last && dataset->count < options->batch_size) {
        set_error(error, error_size, "%s: %lld samples cannot fill one batch of %lld with drop_last", name,
                  (long long)dataset->count, (long long)options->batch_size);
        return -1;
    }
    if (options->shard_count < 0 || options->shard_rank < 0 ||
        options->shard_rank >= (options->shard_count > 1 ? options->shard_count : 1)) {
        set_error(error, error_size, "%s: shard %d of %d does not exist", name, options->shard_rank, options->shard_count);
        return -1;
    }
    if (options->drop_last && options->shard_count > 1 && options->batch_size % options->shard_count != 0) {
        set_error(error, error_size, "%s: the global batch of %lld does not divide into %d equal shards (one per rank)",
                  name, (long long)options->batch_size, options->shard_count);
        return -1;
    }
    if (options->channels != 0 && options->channels != 1 && options->channels != 3) {
        set_error(error, error_size, "%s: channels must be 1 or 3, got %d", name, options->channels);
        return -1;
    }
    if (options->n_views < 0 || options->n_views > LOADER_MAX_VIEWS) {
        set_error(error, error_size, "%s: %d views asked, at most %d", name, options->n_views, LOADER_MAX_VIEWS);
        return -1;
    }
    if (options->workers < 0 || options->workers > 256 || options->prefetch_batches < 0 ||
        options->prefetch_batches > 1024) {
        set_error(error, error_size, "%s: workers must be 0..256 and prefetch 0..1024 (got %d and %d)", name,
                  options->workers, options->prefetch_batches);
        return -1;
    }
    if (options->start_epoch < 0 || options->start_position < 0 || options->start_position > dataset->count) {
        set_error(error, error_size, "%s: resume point epoch %lld position %lld is outside the dataset of %lld samples",
                  name, (long long)options->start_epoch, (long long)options->start_position,
                  (long long)dataset->count);
        return -1;
    }
    bool needs_idx = false;
    for (int64_t i = 0; i < dataset->count; i++)
        if (!dataset->samples[i].path) needs_idx = true;
    if (needs_idx) {
        const IdxArray *images = options->idx_images;
        if (!images) {
            set_error(error, error_size, "%s: the dataset has IDX samples but no IDX image array was given", name);
            return -1;
        }
        bool channels_ok = images->ndim == 3 || (images->ndim == 4 && (images->dims[3] == 1 || images->dims[3] == 3 ||
                                                                         images->dims[3] == 4));
        if (images->type != IDX_U8 || !channels_ok || images->dims[1] <= 0 || images->dims[2] <= 0) {
            set_error(error, error_size, "%s: IDX images must be u8 [N, H, W] or [N, H, W, 1|3|4], got %s with %d dims",
                      name, idx_type_name(images->type), images->ndim);
            return -1;
        }
        for (int64_t i = 0; i < dataset->count; i++) {
            int64_t row = dataset->samples[i].index;
            if (!dataset->samples[i].path && (row < 0 || row >= images->dims[0])) {
                set_error(error, error_size, "%s: sample %lld refers to IDX row %lld but the array has %lld rows", name,
                          (long long)i, (long long)row, (long long)images->dims[0]);
                return -1;
            }
        }
    }
    return 0;
}

// Learns each view's output shape from the dataset's first decodable sample.
static int probe_shapes(Loader *loader, char *error, size_t error_size) {
    Image decoded = {0};
    int64_t index;
    if (decode_with_policy(loader, 0, &decoded, &index, error, error_size) != 0) return -1;
    for (int v = 0; v < loader->n_views; v++) {
        Image view_image;
        if (copy_image(&decoded, &view_image) != 0) {
            image_free(&decoded);
            set_error(error, error_size, "%s: out of memory", loader->name);
            return -1;
        }
        int status = transform_view(loader, v, 0, 0, &view_image, error, error_size);
        loader->shape[v][0] = view_image.channels;
        loader->shape[v][1] = view_image.height;
        loader->shape[v][2] = view_image.width;
        loader->view_floats[v] = (size_t)view_image.channels * (size_t)view_image.height * (size_t)view_image.width;
        image_free(&view_image);
        if (status != 0) {
            image_free(&decoded);
            return -1;
        }
    }
    image_free(&decoded);
    return 0;
}

Loader *loader_create(const LoaderOptions *options, char *error, size_t error_size) {
    const char *name = options->name ? options->name : options->dataset ? options->dataset->source : "loader";
    if (!name) name = "loader";
    if (check_options(options, name, error, error_size) != 0) return NULL;
    Loader *loader = calloc(1, sizeof *loader);
    if (!loader) {
        set_error(error, error_size, "%s: out of memory", name);
        return NULL;
    }
    loader->options = *options;
    if (loader->options.channels == 0) loader->options.channels = 3;
    snprintf(loader->name, sizeof loader->name, "%s", name);
    loader->options.name = loader->name;
    loader->n_views = options->n_views == 0 ? 1 : options->n_views;
    if (options->n_views == 0) loader->options.views[0] = NULL;
    loader->sample_count = options->dataset->count;
    int64_t batch_size = options->batch_size;
    loader->batches_per_epoch = options->drop_last ? loader->sample_count / batch_size
                                                   : (loader->sample_count + batch_size - 1) / batch_size;
    loader->known_bad = calloc((size_t)loader->sample_count, 1);
    loader->order = malloc((size_t)loader->sample_count * sizeof *loader->order);
    loader->order_epoch = -1;
    loader->thread_count = 0;  // set when the workers start: loader_free joins thread_count threads
    loader->depth = options->prefetch_batches ? options->prefetch_batches : 2 * options->workers + 1;
    if (loader->depth < 2) loader->depth = 2;
    pthread_mutex_init(&loader->mutex, NULL);
    pthread_cond_init(&loader->slot_changed, NULL);
    if (!loader->known_bad || !loader->order) {
        set_error(error, error_size, "%s: out of memory", name);
        loader_free(loader);
        return NULL;
    }
    if (probe_shapes(loader, error, error_size) != 0) {
        loader_free(loader);
        return NULL;
    }
    loader->slots = calloc((size_t)loader->depth, sizeof *loader->slots);
    bool allocated = loader->slots != NULL;
    for (int s = 0; allocated && s < loader->depth; s++) {
        Slot *slot = &loader->slots[s];
        slot->number = -1;
        slot->batch.n_views = loader->n_views;
        for (int v = 0; v < loader->n_views; v++) {
            slot->batch.channels[v] = loader->shape[v][0];
            slot->batch.height[v] = loader->shape[v][1];
            slot->batch.width[v] = loader->shape[v][2];
            slot->batch.images[v] = buffer_alloc(loader, (size_t)batch_size * loader->view_floats[v] * sizeof(float));
            allocated = allocated && slot->batch.images[v];
        }
        slot->batch.labels = malloc((size_t)batch_size * sizeof(int64_t));
        slot->batch.indices = malloc((size_t)batch_size * sizeof(int64_t));
        slot->planned = malloc((size_t)batch_size * sizeof(int64_t));
        allocated = allocated && slot->batch.labels && slot->batch.indices && slot->planned;
    }
    if (!allocated) {
        set_error(error, error_size, "%s: out of memory for %d batches of %lld samples", name, loader->depth,
                  (long long)batch_size);
        loader_free(loader);
        return NULL;
    }
    loader->cursor_epoch = options->start_epoch;
    loader->cursor_position = options->start_position;
    normalise_cursor(loader, &loader->cursor_epoch, &loader->cursor_position);
    if (options->workers > 0) {
        loader->threads = calloc((size_t)options->workers, sizeof *loader->threads);
        int started = 0;
        while (loader->threads && started < options->workers &&
               pthread_create(&loader->threads[started], NULL, worker_main, loader) == 0)
            started++;
        loader->thread_count = started;
        if (started < options->workers) {
            set_error(error, error_size, "%s: could not start %d loader threads", name, options->workers);
            loader_free(loader);
            return NULL;
        }
    }
    return loader;
}

void loader_free(Loader *loader) {
    if (!loader) return;
    pthread_mutex_lock(&loader->mutex);
    loader->stopping = true;
    pthread_cond_broadcast(&loader->slot_changed);
    pthread_mutex_unlock(&loader->mutex);
    for (int t = 0; t < loader->thread_count; t++) pthread_join(loader->threads[t], NULL);
    free(loader->threads);
    free_slots(loader);
    pthread_cond_destroy(&loader->slot_changed);
    pthread_mutex_destroy(&loader->mutex);
    free(loader->known_bad);
    free(loader->order);
    free(loader);
}

int64_t loader_batches_per_epoch(const Loader *loader) { return loader->batches_per_epoch; }

void loader_view_shape(const Loader *loader, int view, int *channels, int *height, int *width) {
    *channels = loader->shape[view][0];
    *height = loader->shape[view][1];
    *width = loader->shape[view][2];
}

Tensor *loader_batch_images(const LoaderBatch *batch, int view, Device device) {
    Shape shape = SHAPE(batch->count, batch->channels[view], batch->height[view], batch->width[view]);
    size_t bytes = (size_t)batch->count * (size_t)batch->channels[view] * (size_t)batch->height[view] *
                   (size_t)batch->width[view] * sizeof(float);
    Tensor *images = tensor_empty_on(DTYPE_F32, shape, device);
    if (device.kind == DEVICE_CPU)
        memcpy(tensor_data(images), batch->images[view], bytes);
    else
        gpu_copy_to_device(tensor_data(images), batch->images[view], bytes);
    return images;
}

Tensor *loader_batch_labels(const LoaderBatch *batch, Device device) {
    Shape shape = SHAPE(batch->count);
    Tensor *labels = tensor_empty_on(DTYPE_I64, shape, device);
    if (device.kind == DEVICE_CPU)
        memcpy(tensor_data(labels), batch->labels, (size_t)batch->count * sizeof(int64_t));
    else
        gpu_copy_to_device(tensor_data(labels), batch->labels, (size_t)batch->count * sizeof(int64_t));
    return labels;
}
