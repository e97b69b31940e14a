// The data loader: order (every epoch a permutation, epochs differ, no shuffle = dataset order),
// determinism (the same batches for 0, 1, 2 and 3 workers, for any ring depth, and across a resume
// from a checkpoint's epoch/position), per-position augmentation independent of the batch size,
// epoch ends with and without drop_last, weak/strong views, bad files (fatal and skipped), shape
// errors, option errors, and batches as tensors on the CPU and on the emulated CUDA device from
// pinned buffers. Datasets are built here: IDX arrays in memory and PNG folders in mkdtemp.
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/dataset.h"
#include "data/image.h"
#include "data/loader.h"
#include "data/transforms.h"
#include "engine/checkpoint.h"
#include "engine/params.h"
#include "engine/tensor.h"
#include "tests/check.h"

TEST_MAIN_COUNTERS;

static char temp_root[256];

// N grey images of HxW whose pixels encode the sample (value (i * 37 + p * 11) % 256), labels i % 5.
typedef struct {
    IdxArray images;
    Dataset *dataset;
} IdxFixture;

static IdxFixture idx_fixture(int64_t n, int height, int width) {
    IdxFixture fixture = {0};
    fixture.images.type = IDX_U8;
    fixture.images.ndim = 3;
    fixture.images.dims[0] = n;
    fixture.images.dims[1] = height;
    fixture.images.dims[2] = width;
    fixture.images.bytes = (size_t)(n * height * width);
    uint8_t *pixels = malloc(fixture.images.bytes);
    for (int64_t i = 0; i < n; i++)
        for (int p = 0; p < height * width; p++) pixels[i * height * width + p] = (uint8_t)((i * 37 + p * 11) % 256);
    fixture.images.data = pixels;
    IdxArray labels = {.type = IDX_U8, .ndim = 1, .dims = {n}, .bytes = (size_t)n};
    uint8_t *label_values = malloc((size_t)(uint32_t)n);
    for (int64_t i = 0; i < n; i++) label_values[i] = (uint8_t)(i % 5);
    labels.data = label_values;
    char error[256];
    fixture.dataset = dataset_from_idx_labels(&labels, "fixture-labels", error, sizeof error);
    idx_free(&labels);
    return fixture;
}

static void idx_fixture_free(IdxFixture *fixture) {
    dataset_free(fixture->dataset);
    idx_free(&fixture->images);
}

static LoaderOptions idx_options(const IdxFixture *fixture, int64_t batch_size) {
    LoaderOptions options = {0};
    options.dataset = fixture->dataset;
    options.idx_images = &fixture->images;
    options.channels = 1;
    options.batch_size = batch_size;
    options.seed = 1234;
    return options;
}

// Everything a batch says, flattened, to compare two runs.
typedef struct {
    int64_t count, epoch, position, next_epoch, next_position;
    int64_t indices[64], labels[64];
    float *images[LOADER_MAX_VIEWS];
    size_t floats[LOADER_MAX_VIEWS];
} BatchRecord;

static void record_batch(const LoaderBatch *batch, BatchRecord *record) {
    *record = (BatchRecord){.count = batch->count, .epoch = batch->epoch, .position = batch->position,
                            .next_epoch = batch->next_epoch, .next_position = batch->next_position};
    memcpy(record->indices, batch->indices, (size_t)batch->count * sizeof(int64_t));
    memcpy(record->labels, batch->labels, (size_t)batch->count * sizeof(int64_t));
    for (int v = 0; v < batch->n_views; v++) {
        record->floats[v] = (size_t)batch->count * batch->channels[v] * batch->height[v] * batch->width[v];
        record->images[v] = malloc(record->floats[v] * sizeof(float));
        memcpy(record->images[v], batch->images[v], record->floats[v] * sizeof(float));
    }
}

static void record_free(BatchRecord *records, int n) {
    for (int i = 0; i < n; i++)
        for (int v = 0; v < LOADER_MAX_VIEWS; v++) free(records[i].images[v]);
}

static bool records_equal(const BatchRecord *a, const BatchRecord *b) {
    if (a->count != b->count || a->epoch != b->epoch || a->position != b->position ||
        a->next_epoch != b->next_epoch || a->next_position != b->next_position)
        return false;
    if (memcmp(a->indices, b->indices, (size_t)a->count * sizeof(int64_t)) ||
        memcmp(a->labels, b->labels, (size_t)a->count * sizeof(int64_t)))
        return false;
    for (int v = 0; v < LOADER_MAX_VIEWS; v++) {
        if (a->floats[v] != b->floats[v]) return false;
        if (a->floats[v] && memcmp(a->images[v], b->images[v], a->floats[v] * sizeof(float))) return false;
    }
    return true;
}

// Takes n batches from a loader made with `options`; 0 on success.
static int take_batches(const LoaderOptions *options, BatchRecord *records, int n) {
    char error[512];
    Loader *loader = loader_create(options, error, sizeof error);
    if (!loader) {
        printf("  loader_create: %s\n", error);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        const LoaderBatch *batch;
        if (loader_next(loader, &batch, error, sizeof error) != 0) {
            printf("  loader_next: %s\n", error);
            loader_free(loader);
            return -1;
        }
        record_batch(batch, &records[i]);
    }
    loader_free(loader);
    return 0;
}

TEST(dataset_order_without_shuffle_and_epoch_ends) {
    IdxFixture fixture = idx_fixture(10, 3, 4);
    LoaderOptions options = idx_options(&fixture, 4);
    BatchRecord records[6];
    CHECK(take_batches(&options, records, 6) == 0);
    // 10 samples in batches of 4: 4, 4, 2 per epoch, then again.
    int64_t expected_counts[6] = {4, 4, 2, 4, 4, 2};
    for (int b = 0; b < 6; b++) {
        CHECK(records[b].count == expected_counts[b]);
        CHECK(records[b].epoch == b / 3);
        CHECK(records[b].position == (b % 3) * 4);
        for (int64_t i = 0; i < records[b].count; i++) {
            int64_t sample = records[b].position + i;
            CHECK(records[b].indices[i] == sample);
            CHECK(records[b].labels[i] == sample % 5);
            // no pipeline: pixel / 255, CHW with one channel
            for (int p = 0; p < 12; p++)
                CHECK(records[b].images[0][i * 12 + p] == (float)((sample * 37 + p * 11) % 256) / 255.0f);
        }
    }
    // the resume point after an epoch's last batch is the next epoch's start
    CHECK(records[2].next_epoch == 1 && records[2].next_position == 0);
    CHECK(records[1].next_epoch == 0 && records[1].next_position == 8);
    record_free(records, 6);

    options.drop_last = true;
    CHECK(take_batches(&options, records, 4) == 0);
    for (int b = 0; b < 4; b++) {
        CHECK(records[b].count == 4);
        CHECK(records[b].epoch == b / 2);
        CHECK(records[b].position == (b % 2) * 4);
    }
    CHECK(records[1].next_epoch == 1 && records[1].next_position == 0);
    record_free(records, 4);
    idx_fixture_free(&fixture);
}

TEST(shuffle_gives_a_permutation_per_epoch) {
    IdxFixture fixture = idx_fixture(23, 2, 2);
    LoaderOptions options = idx_options(&fixture, 5);
    options.shuffle = true;
    options.workers = 2;
    Loader *loader = loader_create(&options, NULL, 0);
    CHECK(loader != NULL);
    CHECK(loader_batches_per_epoch(loader) == 5);
    int64_t order[3][23];
    for (int epoch = 0; epoch < 3; epoch++) {
        int64_t seen = 0;
        for (int b = 0; b < 5; b++) {
            const LoaderBatch *batch;
            CHECK(loader_next(loader, &batch, NULL, 0) == 0);
            CHECK(batch->epoch == epoch);
            for (int64_t i = 0; i < batch->count; i++) order[epoch][seen++] = batch->indices[i];
        }
        CHECK(seen == 23);
        int hits[23] = {0};
        for (int i = 0; i < 23; i++) hits[order[epoch][i]]++;
        bool permutation = true;
        for (int i = 0; i < 23; i++) permutation = permutation && hits[i] == 1;
        CHECK_MSG(permutation, "epoch %d is not a permutation of the samples", epoch);
    }
    loader_free(loader);
    // Epochs differ (the chance that two seeded permutations of 23 coincide is 1/23!).
    CHECK(memcmp(order[0], order[1], sizeof order[0]) != 0);
    CHECK(memcmp(order[1], order[2], sizeof order[0]) != 0);
    // The order is the documented one: rng_permutation of stream `epoch`.
    int64_t expected[23];
    Rng rng = rng_make(1234, 1);
    rng_permutation(&rng, expected, 23);
    CHECK(memcmp(order[1], expected, sizeof expected) == 0);
    idx_fixture_free(&fixture);
}

// The same batches for any number of workers and ring depth, with random augmentation in two views.
TEST(same_batches_for_any_worker_count) {
    IdxFixture fixture = idx_fixture(37, 8, 8);
    char error[256];
    TransformPipeline *weak = transform_pipeline_parse("random_crop=6:2:reflect,hflip", error, sizeof error);
    TransformPipeline *strong = transform_pipeline_parse("rgb,random_crop=8:1,randaugment=2:10", error, sizeof error);
    CHECK_MSG(weak && strong, "%s", error);
    if (!weak || !strong) return;
    LoaderOptions options = idx_options(&fixture, 6);
    options.shuffle = true;
    options.views[0] = weak;
    options.views[1] = strong;
    options.n_views = 2;
    enum { BATCHES = 15 };  // two and a half epochs
    BatchRecord reference[BATCHES];
    CHECK(take_batches(&options, reference, BATCHES) == 0);
    CHECK(reference[0].floats[0] == 6 * 1 * 6 * 6);
    CHECK(reference[0].floats[1] == 6 * 3 * 8 * 8);
    int worker_counts[] = {1, 2, 3, 2};
    int depths[] = {0, 0, 5, 2};
    for (int w = 0; w < 4; w++) {
        options.workers = worker_counts[w];
        options.prefetch_batches = depths[w];
        BatchRecord records[BATCHES];
        CHECK(take_batches(&options, records, BATCHES) == 0);
        for (int b = 0; b < BATCHES; b++)
            CHECK_MSG(records_equal(&reference[b], &records[b]), "%d workers, depth %d: batch %d differs",
                      worker_counts[w], depths[w], b);
        record_free(records, BATCHES);
    }
    // A different seed gives different batches.
    options.seed = 99;
    BatchRecord other[1];
    CHECK(take_batches(&options, other, 1) == 0);
    CHECK(!records_equal(&reference[0], &other[0]));
    record_free(other, 1);
    record_free(reference, BATCHES);
    transform_pipeline_free(weak);
    transform_pipeline_free(strong);
    idx_fixture_free(&fixture);
}

// A sample's augmentation depends on (seed, epoch, position, view) only: batch size 4 and 7 give the
// same per-sample outputs.
TEST(augmentation_follows_the_position_not_the_batch) {
    IdxFixture fixture = idx_fixture(21, 8, 8);
    TransformPipeline *pipeline = transform_pipeline_parse("random_crop=5,hflip", NULL, 0);
    CHECK(pipeline != NULL);
    if (!pipeline) return;
    float outputs[2][21][25];
    int64_t batch_sizes[2] = {4, 7};
    for (int run = 0; run < 2; run++) {
        LoaderOptions options = idx_options(&fixture, batch_sizes[run]);
        options.shuffle = true;
        options.views[0] = pipeline;
        options.n_views = 1;
        options.workers = 2;
        Loader *loader = loader_create(&options, NULL, 0);
        CHECK(loader != NULL);
        if (!loader) return;
        for (int64_t seen = 0; seen < 21;) {
            const LoaderBatch *batch;
            CHECK(loader_next(loader, &batch, NULL, 0) == 0);
            for (int64_t i = 0; i < batch->count; i++, seen++) memcpy(outputs[run][seen], batch->images[0] + i * 25, sizeof outputs[run][seen]);
        }
        loader_free(loader);
    }
    CHECK(memcmp(outputs[0], outputs[1], sizeof outputs[0]) == 0);
    transform_pipeline_free(pipeline);
    idx_fixture_free(&fixture);
}

// Resume: N batches, a checkpoint holding the loader's resume point (and nothing else of interest),
// then a new loader started from the checkpoint gives the batches the uninterrupted run gave.
TEST(resume_from_a_checkpoint_continues_the_same_order) {
    IdxFixture fixture = idx_fixture(19, 6, 6);
    TransformPipeline *pipeline = transform_pipeline_parse("random_crop=4:1:reflect,hflip", NULL, 0);
    CHECK(pipeline != NULL);
    if (!pipeline) return;
    LoaderOptions options = idx_options(&fixture, 5);
    options.shuffle = true;
    options.views[0] = pipeline;
    options.n_views = 1;
    options.workers = 2;
    enum { TOTAL = 13, FIRST = 6 };
    BatchRecord uninterrupted[TOTAL];
    CHECK(take_batches(&options, uninterrupted, TOTAL) == 0);

    ParamStore *params = params_new();
    params_add(params, "w", SHAPE(2), 0);
    params_finalize(params);
    TrainState state = {0};
    state.step = FIRST;
    state.epoch = uninterrupted[FIRST - 1].next_epoch;
    state.epoch_position = uninterrupted[FIRST - 1].next_position;
    char directory[512], error[512];
    snprintf(directory, sizeof directory, "%s/checkpoint", temp_root);
    CHECK_MSG(checkpoint_save(directory, params, NULL, &state, error, sizeof error) == 0, "%s", error);
    TrainState restored = {0};
    CHECK_MSG(checkpoint_load(directory, params, NULL, &restored, error, sizeof error) == 0, "%s", error);
    CHECK(restored.epoch == state.epoch && restored.epoch_position == state.epoch_position);
    params_free(params);

    options.start_epoch = restored.epoch;
    options.start_position = restored.epoch_position;
    options.workers = 3;
    BatchRecord resumed[TOTAL - FIRST];
    CHECK(take_batches(&options, resumed, TOTAL - FIRST) == 0);
    for (int b = 0; b < TOTAL - FIRST; b++)
        CHECK_MSG(records_equal(&uninterrupted[FIRST + b], &resumed[b]), "resumed batch %d differs", b);
    // Resuming mid-batch (a different batch size before the interruption) still follows the order.
    options.start_epoch = 1;
    options.start_position = 3;
    BatchRecord shifted[1];
    CHECK(take_batches(&options, shifted, 1) == 0);
    int64_t expected[19];
    Rng rng = rng_make(1234, 1);
    rng_permutation(&rng, expected, 19);
    CHECK(shifted[0].epoch == 1 && shifted[0].position == 3 && shifted[0].count == 5);
    CHECK(memcmp(shifted[0].indices, expected + 3, 5 * sizeof(int64_t)) == 0);
    record_free(shifted, 1);
    record_free(resumed, TOTAL - FIRST);
    record_free(uninterrupted, TOTAL);
    transform_pipeline_free(pipeline);
    idx_fixture_free(&fixture);
}

// ---------------------------------------------------------------- image files

static void write_png(const char *relative, int width, int height, int channels, uint8_t value) {
    char path[512], error[256];
    snprintf(path, sizeof path, "%s/%s", temp_root, relative);
    Image image = {.width = width, .height = height, .channels = channels, .pixels = malloc((size_t)(width * height * channels))};
    memset(image.pixels, value, (size_t)(width * height * channels));
    if (image_save_png(path, &image, error, sizeof error) != 0) printf("  %s\n", error);
    image_free(&image);
}

static void write_text(const char *relative, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", temp_root, relative);
    FILE *file = fopen(path, "wb");
    fputs(text, file);
    fclose(file);
}

static void make_dir(const char *relative) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", temp_root, relative);
    mkdir(path, 0755);
}

static Dataset *folder(const char *relative) {
    char path[512], error[512];
    snprintf(path, sizeof path, "%s/%s", temp_root, relative);
    Dataset *dataset = dataset_image_folder(path, error, sizeof error);
    if (!dataset) printf("  %s\n", error);
    return dataset;
}

TEST(image_folder_batches_and_bad_files) {
    make_dir("good");
    make_dir("good/a");
    make_dir("good/b");
    // 6 images, value = 10 * position in the folder order; sample 3 (b/0.png) is corrupt.
    write_png("good/a/0.png", 5, 4, 3, 0);
    write_png("good/a/1.png", 5, 4, 1, 10);  // grey: decoded to RGB
    write_png("good/a/2.png", 5, 4, 4, 20);  // RGBA: alpha dropped
    write_text("good/b/0.png", "\x89PNG\r\n\x1a\nthis is not a png");
    write_png("good/b/1.png", 5, 4, 3, 40);
    write_png("good/b/2.png", 5, 4, 3, 50);
    Dataset *dataset = folder("good");
    CHECK(dataset && dataset->count == 6);
    if (!dataset) return;
    LoaderOptions options = {.dataset = dataset, .batch_size = 3, .seed = 5, .workers = 2};
    char error[512];
    Loader *loader = loader_create(&options, error, sizeof error);
    CHECK_MSG(loader != NULL, "%s", error);
    const LoaderBatch *batch;
    CHECK(loader_next(loader, &batch, error, sizeof error) == 0);
    CHECK(batch->channels[0] == 3 && batch->height[0] == 4 && batch->width[0] == 5);
    for (int i = 0; i < 3; i++) CHECK(batch->images[0][i * 60 + 59] == (float)(10 * i) / 255.0f);
    // fatal policy: the second batch holds the corrupt file and fails with its name
    CHECK(loader_next(loader, &batch, error, sizeof error) == -1);
    CHECK_MSG(strstr(error, "b/0.png") != NULL, "error was: %s", error);
    CHECK(loader_next(loader, &batch, error, sizeof error) == -1);  // stays failed
    loader_free(loader);

    // skip policy: the corrupt sample is replaced by the next one, batches keep their size
    options.bad_samples = LOADER_BAD_SAMPLE_SKIP;
    loader = loader_create(&options, error, sizeof error);
    CHECK(loader != NULL);
    for (int b = 0; b < 4; b++) {
        CHECK(loader_next(loader, &batch, error, sizeof error) == 0);
        CHECK(batch->count == 3);
        for (int i = 0; i < 3; i++) CHECK(batch->indices[i] != 3);
        if (b % 2 == 1) {
            CHECK(batch->indices[0] == 4);  // took 3's place
            CHECK(batch->images[0][59] == 40.0f / 255.0f);
            CHECK(batch->labels[0] == 1);
        }
    }
    loader_free(loader);

    // images of different sizes with no fixed-size step: one line naming the file and the fix
    make_dir("mixed");
    make_dir("mixed/a");
    write_png("mixed/a/0.png", 5, 4, 3, 0);
    write_png("mixed/a/1.png", 6, 4, 3, 0);
    Dataset *mixed = folder("mixed");
    options = (LoaderOptions){.dataset = mixed, .batch_size = 2};
    loader = loader_create(&options, error, sizeof error);
    CHECK(loader != NULL);
    CHECK(loader_next(loader, &batch, error, sizeof error) == -1);
    CHECK_MSG(strstr(error, "mixed/a/1.png") && strstr(error, "fixed-size"), "error was: %s", error);
    loader_free(loader);
    // ... which a resize fixes
    TransformPipeline *resize = transform_pipeline_parse("resize=3:3", NULL, 0);
    options.views[0] = resize;
    options.n_views = 1;
    loader = loader_create(&options, error, sizeof error);
    CHECK(loader && loader_next(loader, &batch, error, sizeof error) == 0);
    CHECK(batch && batch->height[0] == 3 && batch->width[0] == 3);
    loader_free(loader);
    // a pipeline that cannot run on these images fails at creation, naming the view
    TransformPipeline *too_big = transform_pipeline_parse("center_crop=8,random_crop=9", NULL, 0);
    options.views[0] = too_big;
    for (int workers = 0; workers <= 2; workers += 2) {  // also with workers: no thread was started yet
        options.workers = workers;
        loader = loader_create(&options, error, sizeof error);
        CHECK(loader == NULL);
        CHECK_MSG(strstr(error, "view 0") != NULL, "error was: %s", error);
    }
    transform_pipeline_free(too_big);
    transform_pipeline_free(resize);
    dataset_free(mixed);
    dataset_free(dataset);
}

TEST(option_errors_are_one_line) {
    IdxFixture fixture = idx_fixture(5, 2, 2);
    char error[512];
    LoaderOptions options = idx_options(&fixture, 0);
    CHECK(loader_create(&options, error, sizeof error) == NULL && strstr(error, "batch size"));
    options = idx_options(&fixture, 8);
    options.drop_last = true;
    CHECK(loader_create(&options, error, sizeof error) == NULL && strstr(error, "drop_last"));
    options = idx_options(&fixture, 2);
    options.start_position = 6;
    CHECK(loader_create(&options, error, sizeof error) == NULL && strstr(error, "resume point"));
    options = idx_options(&fixture, 2);
    options.idx_images = NULL;
    CHECK(loader_create(&options, error, sizeof error) == NULL && strstr(error, "IDX"));
    options = idx_options(&fixture, 2);
    options.channels = 2;
    CHECK(loader_create(&options, error, sizeof error) == NULL && strstr(error, "channels"));
    fixture.dataset->samples[4].index = 9;
    options = idx_options(&fixture, 2);
    CHECK(loader_create(&options, error, sizeof error) == NULL && strstr(error, "row 9"));
    idx_fixture_free(&fixture);
}

TEST(batches_as_tensors_on_cpu_and_emulated_cuda) {
    IdxFixture fixture = idx_fixture(6, 3, 3);
    LoaderOptions options = idx_options(&fixture, 4);
    options.channels = 3;  // grey rows replicated
    for (int pinned = 0; pinned < 2; pinned++) {
        options.pinned = pinned;
        options.workers = pinned ? 1 : 0;
        Loader *loader = loader_create(&options, NULL, 0);
        CHECK(loader != NULL);
        const LoaderBatch *batch;
        CHECK(loader_next(loader, &batch, NULL, 0) == 0);
        Device device = pinned ? (Device){DEVICE_CUDA, 0} : device_cpu();
        Tensor *images = loader_batch_images(batch, 0, device);
        Tensor *labels = loader_batch_labels(batch, device);
        CHECK(tensor_shape(images).ndim == 4 && tensor_shape(images).dims[0] == 4 && tensor_shape(images).dims[1] == 3);
        Tensor *host_images = tensor_to_device_raw(images, device_cpu());
        Tensor *host_labels = tensor_to_device_raw(labels, device_cpu());
        const float *values = tensor_f32(host_images);
        bool same = true;
        for (int i = 0; i < 4; i++)
            for (int c = 0; c < 3; c++)
                for (int p = 0; p < 9; p++)
                    same = same && values[(i * 3 + c) * 9 + p] == (float)((i * 37 + p * 11) % 256) / 255.0f;
        CHECK(same);
        for (int i = 0; i < 4; i++) CHECK(tensor_i64(host_labels)[i] == i % 5);
        tensor_release(host_images);
        tensor_release(host_labels);
        tensor_release(images);
        tensor_release(labels);
        loader_free(loader);
    }
    idx_fixture_free(&fixture);
}

int main(void) {
    snprintf(temp_root, sizeof temp_root, "%s/tailor_loader_XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(temp_root)) {
        printf("cannot create a temporary directory under %s\n", temp_root);
        return 1;
    }
    RUN_TEST(dataset_order_without_shuffle_and_epoch_ends);
    RUN_TEST(shuffle_gives_a_permutation_per_epoch);
    RUN_TEST(same_batches_for_any_worker_count);
    RUN_TEST(augmentation_follows_the_position_not_the_batch);
    RUN_TEST(resume_from_a_checkpoint_continues_the_same_order);
    RUN_TEST(image_folder_batches_and_bad_files);
    RUN_TEST(option_errors_are_one_line);
    RUN_TEST(batches_as_tensors_on_cpu_and_emulated_cuda);
    char command[600];
    snprintf(command, sizeof command, "rm -rf '%s'", temp_root);
    if (system(command) != 0) printf("could not remove %s\n", temp_root);
    return test_summary();
}
