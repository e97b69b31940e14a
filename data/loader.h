// The data loader: worker threads decode images and run the transform pipelines ahead of the
// training loop, into a bounded ring of batches; the loop takes batches in order.
//
// Order and randomness are functions of the seed and the position alone, never of the number of
// workers or of timing:
//   - epoch e visits the samples in the order rng_permutation(rng_make(seed, e)) (or in dataset
//     order without shuffling);
//   - the sample at position p of epoch e, view v, is augmented with
//     rng_make(seed, LOADER_AUGMENT_STREAM(e, p, v)), so it gets the same augmentation whatever the
//     batch size, the worker count, or where a run was resumed;
//   - a batch covers positions [position, position + global_count) of its epoch (a shard, a part of
//     them: shard_rank / shard_count below); batches never span two
//     epochs. With drop_last an epoch ends when fewer than batch_size samples remain, otherwise its
//     last batch is smaller.
// (epoch, position) after a batch is the resume point: save it in the checkpoint (TrainState's
// epoch / epoch_position) and pass it back as start_epoch / start_position, and the resumed run
// sees exactly the batches the uninterrupted run would have seen.
//
// Bad samples (a missing, corrupt or truncated image): LOADER_BAD_SAMPLE_FATAL makes loader_next
// fail with the decoder's line ("<file>: <problem>"); LOADER_BAD_SAMPLE_SKIP prints one warning
// line per bad file and uses the next dataset sample (index + 1, + 2, ... wrapping) in its place,
// so batches keep their size and the run stays deterministic. A transform that fails (a crop
// larger than the image, say) or an output shape that differs from the first sample's is always
// fatal: it is a configuration error, not a bad file.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "data/dataset.h"
#include "data/idx.h"
#include "data/transforms.h"
#include "engine/tensor.h"

#define LOADER_MAX_VIEWS 4
// Positions below 2^32, epochs below 2^27 and views below 16 give distinct streams; bit 63 keeps
// them apart from the shuffling streams (the epoch number).
#define LOADER_AUGMENT_STREAM(epoch, position, view)                                                  \
    ((1ull << 63) | ((uint64_t)(epoch) << 36) | ((uint64_t)(position) << 4) | (uint64_t)(view))

typedef enum { LOADER_BAD_SAMPLE_FATAL, LOADER_BAD_SAMPLE_SKIP } LoaderBadSamplePolicy;

typedef struct {
    const Dataset *dataset;       // required; borrowed for the loader's life
    // The images of an IDX dataset (dataset_from_idx_labels): u8 [N, H, W] (grey) or [N, H, W, C]
    // with C 1, 3 or 4. NULL for datasets of image files. Borrowed.
    const IdxArray *idx_images;
    int channels;                 // decode to 1 (grey) or 3 (RGB, the default when 0)
    // One output per view: the same decoded image through each pipeline (FixMatch's weak and
    // strong views, say). A NULL pipeline only converts to float in [0, 1]. n_views 0 means one
    // NULL view. Borrowed.
    const TransformPipeline *views[LOADER_MAX_VIEWS];
    int n_views;
    int64_t batch_size;           // > 0
    bool shuffle;
    bool drop_last;
    uint64_t seed;
    // Worker threads; 0 decodes in the caller's thread inside loader_next (no threads at all).
    int workers;
    int prefetch_batches;         // ring depth; 0 means 2 * workers + 1 (at least 2)
    bool pinned;                  // batch buffers from gpu_host_alloc (only when a GPU is used)
    LoaderBadSamplePolicy bad_samples;
    int64_t start_epoch, start_position;  // resume point (0, 0 for a fresh run)
    // Data parallel (engine/dist.h): this process takes shard `shard_rank` of `shard_count` of every
    // batch — the contiguous positions [position + count * r / W, position + count * (r + 1) / W)
    // of the global batch of `count` samples — and decodes only those, each with the augmentation
    // stream of its global position, so the W shards together are exactly the batch one process
    // gets. batch_size stays the global batch (and epochs, positions and resume points are global);
    // with drop_last it must divide by shard_count. 0 and 0 (or 0 and 1): the whole batch.
    int shard_rank, shard_count;
    const char *name;             // for messages ("source", "target"); NULL = the dataset's source
} LoaderOptions;

typedef struct {
    int64_t count;                // samples in this batch (this shard's; batch_size / shard_count when sharded)
    int64_t global_count;         // samples in the global batch (batch_size except at an epoch's end)
    int64_t shard_start;          // where this shard starts in the global batch
    int n_views;
    int channels[LOADER_MAX_VIEWS], height[LOADER_MAX_VIEWS], width[LOADER_MAX_VIEWS];
    float *images[LOADER_MAX_VIEWS];  // [count, channels, height, width] for each view
    int64_t *labels;              // [count]
    int64_t *indices;             // [count] dataset sample index (after any bad-sample substitution)
    int64_t epoch, position;      // where this batch starts
    int64_t next_epoch, next_position;  // the resume point once this batch has been used
} LoaderBatch;

typedef struct Loader Loader;

// Checks the options, decodes the first sample of the dataset through every view to learn the
// output shapes (so an unreadable dataset or a pipeline that gives no fixed size fails here), and
// starts the workers. NULL with one line in error.
Loader *loader_create(const LoaderOptions *options, char *error, size_t error_size);
// Waits for the next batch in order. The batch stays valid until the next loader_next or
// loader_free. 0, or -1 with one line in error (after which the loader only fails).
int loader_next(Loader *loader, const LoaderBatch **batch, char *error, size_t error_size);
// Batches in one epoch from position 0 (the loop length of an epoch-based run).
int64_t loader_batches_per_epoch(const Loader *loader);
// The output shape of a view: channels, height, width.
void loader_view_shape(const Loader *loader, int view, int *channels, int *height, int *width);
// Stops the workers and frees everything (NULL is fine).
void loader_free(Loader *loader);

// The images of one view as a [count, C, H, W] f32 tensor on `device` (a new tensor; a CUDA copy
// goes straight from the batch buffer), and the labels as a [count] i64 tensor.
Tensor *loader_batch_images(const LoaderBatch *batch, int view, Device device);
Tensor *loader_batch_labels(const LoaderBatch *batch, Device device);
