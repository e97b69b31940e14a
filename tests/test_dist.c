// Data-parallel training (engine/dist.h): the single-process collectives and placement detection
// in this process; the gradient buckets' launch order; `--dist-init` refused by the CPU program;
// the loader's shards against the whole batch; then `tailor train` under `mpirun -np 2`: the same
// weights as one process with the same global batch, buckets overlapped with backward giving the
// bits of the averaging after backward, a 2-rank checkpoint resumed by 1 process, a killed or
// hanging rank stopping the run within the timeout with a line naming the rank and the collective,
// and the start-up checks (batch divisibility, settings that differ between ranks); the device
// collectives on the emulated device against the host ones, and --sync-bn / --zero1 on it (build/
// tailor-emu --device cuda:0) against one process and the CPU. The mpirun tests need Debian's
// openmpi-bin (and libopenmpi-dev for the build to have MPI); without them they fail with one line
// saying so.
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "data/dataset.h"
#include "data/image.h"
#include "data/loader.h"
#include "data/transforms.h"
#include "engine/dist.h"
#include "engine/dist_buckets.h"
#include "engine/gpu/gpu.h"
#include "engine/rng.h"
#include "engine/safetensors.h"
#include "tests/check.h"
#include "tests/image_fixtures.h"
#include "tests/run_command.h"

TEST_MAIN_COUNTERS;

static char build_dir[256] = "build";
static char work_dir[256];
static char mpirun[1024];  // "mpirun -np 2 ..." prefix, or "" when there is no mpirun
static char self[1024];    // this program, whose ranks test the device collectives

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int run(const char *command, char *captured, size_t size) { return run_command(work_dir, command, captured, size); }

// A BatchNorm-free model, so the shards' batch statistics cannot differ from the whole batch's
// (there is no synchronized BatchNorm yet): vit-tiny (12 blocks, 5.5M parameters) on 16x16 inputs
// in 4x4 patches, with random crops and flips so the shards' augmentation streams are exercised.
// --threads 1: the GEMMs' summation order then does not depend on the thread count.
static const char TRAIN_FLAGS[] =
    "train --model vit-tiny --image-size 16 --patch-size 4 --batch-size 8 --lr 0.05 --optimizer sgd --momentum 0.9 "
    "--lr-schedule constant --augment crop-flip --workers 1 --threads 1 --device cpu --steps 4";

// ---------------------------------------------------------------- in this process

// A run's settings.json as text ("" when it cannot be read; the checks on it then fail).
static void read_settings(const char *path, char *out, size_t size) {
    out[0] = 0;
    FILE *f = fopen(path, "r");
    if (!f) return;
    size_t n = fread(out, 1, size - 1, f);
    out[n] = 0;
    fclose(f);
}

TEST(single_process_collectives) {
    char error[512];
    DistOptions options = dist_default_options();
    options.timeout_seconds = 5;
    CHECK_MSG(dist_init(&options, error, sizeof error) == 0, "%s", error);
    CHECK(dist_rank() == 0 && dist_world_size() == 1 && dist_local_rank() == 0 && dist_is_main());
    CHECK(strcmp(dist_backend(), "none") == 0);
    float f[3] = {1.5f, -2, 3};
    double d[2] = {0.25, 7};
    dist_all_reduce(f, 3, DIST_F32, DIST_SUM, "f32 sum");
    dist_all_reduce(f, 3, DIST_F32, DIST_AVG, "f32 avg");
    dist_all_reduce(d, 2, DIST_F64, DIST_AVG, "f64 avg");
    CHECK(f[0] == 1.5f && f[1] == -2 && f[2] == 3 && d[0] == 0.25 && d[1] == 7);
    dist_broadcast(f, sizeof f, 0, "broadcast");
    CHECK(f[0] == 1.5f);
    float gathered[3] = {0};
    dist_all_gather(f, gathered, sizeof f, "all-gather");
    CHECK(memcmp(gathered, f, sizeof f) == 0);
    double scattered[2] = {0};
    dist_reduce_scatter(d, scattered, 2, DIST_F64, DIST_SUM, "reduce-scatter");
    CHECK(scattered[0] == 0.25 && scattered[1] == 7);
    dist_barrier("barrier");
    CHECK(dist_check_same_config("settings", "{\"a\":1}", 42, error, sizeof error) == 0);
    dist_test_fault_point(3);  // no TAILOR_DIST_TEST_* variable: nothing happens
}

TEST(placement_from_the_environment) {
    char error[512];
    int rank, size, local;
    const char *launcher;
    DistOptions options = dist_default_options();
    setenv("OMPI_COMM_WORLD_RANK", "3", 1);
    setenv("OMPI_COMM_WORLD_SIZE", "4", 1);
    setenv("OMPI_COMM_WORLD_LOCAL_RANK", "1", 1);
    CHECK_MSG(dist_detect(&options, &rank, &size, &local, &launcher, error, sizeof error) == 0, "%s", error);
    CHECK(rank == 3 && size == 4 && local == 1 && strcmp(launcher, "openmpi") == 0);
    setenv("OMPI_COMM_WORLD_RANK", "4", 1);  // outside the world
    CHECK(dist_detect(&options, &rank, &size, &local, &launcher, error, sizeof error) == -1);
    CHECK_MSG(strstr(error, "rank 4 is outside world size 4"), "%s", error);
    unsetenv("OMPI_COMM_WORLD_RANK");
    unsetenv("OMPI_COMM_WORLD_SIZE");
    unsetenv("OMPI_COMM_WORLD_LOCAL_RANK");
    setenv("SLURM_PROCID", "5", 1);
    setenv("SLURM_NTASKS", "8", 1);
    setenv("SLURM_LOCALID", "1", 1);
    CHECK(dist_detect(&options, &rank, &size, &local, &launcher, error, sizeof error) == 0);
    CHECK(rank == 5 && size == 8 && local == 1 && strcmp(launcher, "slurm") == 0);
    options.rank = 1, options.world_size = 2, options.local_rank = 0;  // explicit values win
    CHECK(dist_detect(&options, &rank, &size, &local, &launcher, error, sizeof error) == 0);
    CHECK(rank == 1 && size == 2 && local == 0 && strcmp(launcher, "explicit") == 0);
    unsetenv("SLURM_PROCID");
    unsetenv("SLURM_NTASKS");
    unsetenv("SLURM_LOCALID");
    options = dist_default_options();
    CHECK(dist_detect(&options, &rank, &size, &local, &launcher, error, sizeof error) == 0);
    CHECK(rank == 0 && size == 1 && strcmp(launcher, "none") == 0);
}

// Buckets of 8 floats over 34 elements: [0,8) [8,16) [16,24) [24,32) [32,34). Parameters in creation
// order r0 [0,12), r1 [30,34) (an early layer's bias, at the end of the buffer with the other
// no-decay parameters), r2 [12,20), r3 [20,30). Launch order from the layout: by the latest
// earliest-created parameter: bucket 2 (r2), then 4 and 3 (r1), then 1 and 0 (r0).
TEST(gradient_buckets_launch_complete_buckets_in_a_fixed_order) {
    GradientBuckets b;
    const int64_t start[4] = {0, 30, 12, 20}, size[4] = {12, 4, 8, 10};
    CHECK(gradient_buckets_init(&b, 34, 8 * sizeof(float), 4, start, size) == 0);
    CHECK(b.count == 5 && b.bucket == 8);
    int64_t first, count;
    gradient_buckets_range(&b, 4, &first, &count);
    CHECK(first == 32 && count == 2);
    for (int step = 0; step < 2; step++) {  // the same after a reset
        CHECK(gradient_buckets_pop(&b, false) == -1);
        CHECK(gradient_buckets_mark_ready(&b, 20, 10) == 0);  // r3: bucket 2 still lacks [16,20)
        CHECK(gradient_buckets_pop(&b, false) == -1);
        CHECK(gradient_buckets_mark_ready(&b, 12, 8) == 0);   // r2: bucket 2 complete
        CHECK(gradient_buckets_pop(&b, false) == 2);
        CHECK(gradient_buckets_pop(&b, false) == -1);         // bucket 4 waits for r1
        CHECK(gradient_buckets_mark_ready(&b, 30, 4) == 0);   // r1: buckets 4 and 3 complete
        CHECK(gradient_buckets_pop(&b, false) == 4);
        CHECK(gradient_buckets_pop(&b, false) == 3);
        CHECK(gradient_buckets_pop(&b, false) == -1);
        CHECK(gradient_buckets_mark_ready(&b, 12, 8) == 2);   // twice
        CHECK(gradient_buckets_mark_ready(&b, 13, 7) == 1);   // not a parameter
        CHECK(gradient_buckets_mark_ready(&b, 0, 12) == 0);
        CHECK(gradient_buckets_pop(&b, false) == 1);
        CHECK(gradient_buckets_pop(&b, false) == 0);
        CHECK(gradient_buckets_pop(&b, false) == -1 && gradient_buckets_pop(&b, true) == -1);
        gradient_buckets_reset(&b);
    }
    // Forced (parameters backward never reached): the same order regardless of readiness.
    const int64_t order[5] = {2, 4, 3, 1, 0};
    CHECK(gradient_buckets_mark_ready(&b, 30, 4) == 0);
    for (int i = 0; i < 5; i++) CHECK(gradient_buckets_pop(&b, true) == order[i]);
    gradient_buckets_free(&b);
    CHECK(gradient_buckets_init(&b, 100, 0, 0, NULL, NULL) == 0 && b.count == 1 && b.bucket == (25 << 20) / 4);
    gradient_buckets_free(&b);
    const int64_t outside[1] = {90}, outside_size[1] = {20};
    CHECK(gradient_buckets_init(&b, 100, 64, 1, outside, outside_size) == -1);
}

// The CPU program has no NCCL: ranks that would meet through --dist-init (no MPI) could not
// communicate, so every rank stops at start with one line, before any networking.
TEST(rendezvous_without_a_gpu_stops_at_start) {
    char command[8192], output[16384];
    snprintf(command, sizeof command,
             "%s/tailor %s --data %s/train --out %s/rdzv --dist-init tcp://127.0.0.1:29500 --dist-rank 1 "
             "--dist-world-size 2 --dist-timeout 60",
             build_dir, TRAIN_FLAGS, work_dir, work_dir);
    double start = now_seconds();
    int status = run(command, output, sizeof output);
    CHECK_MSG(status == 2, "exit status %d: %s", status, output);
    CHECK_MSG(now_seconds() - start < 20, "took %.1f s", now_seconds() - start);
    CHECK_MSG(strstr(output, "error: tailor train: dist: --dist-init tcp://127.0.0.1:29500: 2 ranks without MPI need "
                             "NCCL for their collectives, and this program has no GPU") &&
                  strstr(output, "start the ranks with mpirun instead") && !strchr(strchr(output, '\n') + 1, '\n'),
              "%s", output);
    snprintf(command, sizeof command, "%s/tailor %s --data %s/train --out %s/rdzv --dist-init tcp://nohost", build_dir,
             TRAIN_FLAGS, work_dir, work_dir);
    status = run(command, output, sizeof output);
    CHECK_MSG(status == 2 && strstr(output, "error: tailor train: dist: --dist-init tcp://nohost: expected tcp://HOST:PORT"), "%s",
              output);
}

// Two shards of every batch are, side by side, the whole batch: same samples, same augmentation.
TEST(loader_shards_make_the_whole_batch) {
    char path[512], error[512];
    snprintf(path, sizeof path, "%s/train", work_dir);
    Dataset *dataset = dataset_image_folder(path, error, sizeof error);
    CHECK_MSG(dataset, "%s", error);
    if (!dataset) return;
    TransformPipeline *pipeline = transform_pipeline_parse("random_crop=16:2:reflect,hflip", error, sizeof error);
    CHECK_MSG(pipeline, "%s", error);
    LoaderOptions options = {.dataset = dataset, .channels = 3, .views = {pipeline}, .n_views = 1, .batch_size = 12,
                             .shuffle = true, .drop_last = true, .seed = 7, .workers = 2, .start_epoch = 1, .start_position = 24};
    Loader *whole = loader_create(&options, error, sizeof error);
    Loader *shard[2];
    for (int r = 0; r < 2; r++) {
        LoaderOptions o = options;
        o.shard_rank = r, o.shard_count = 2, o.workers = r;  // worker counts must not matter
        shard[r] = loader_create(&o, error, sizeof error);
        CHECK_MSG(shard[r], "%s", error);
    }
    for (int b = 0; whole && shard[0] && shard[1] && b < 12; b++) {  // across an epoch's end (160 / 12)
        const LoaderBatch *w, *s[2];
        CHECK(loader_next(whole, &w, error, sizeof error) == 0);
        CHECK(loader_next(shard[0], &s[0], error, sizeof error) == 0);
        CHECK(loader_next(shard[1], &s[1], error, sizeof error) == 0);
        size_t floats = (size_t)w->channels[0] * w->height[0] * w->width[0];
        for (int r = 0; r < 2; r++) {
            CHECK(s[r]->count == 6 && s[r]->global_count == 12 && s[r]->shard_start == 6 * r);
            CHECK(s[r]->epoch == w->epoch && s[r]->position == w->position && s[r]->next_position == w->next_position);
            CHECK(memcmp(s[r]->labels, w->labels + 6 * r, 6 * sizeof(int64_t)) == 0);
            CHECK(memcmp(s[r]->indices, w->indices + 6 * r, 6 * sizeof(int64_t)) == 0);
            CHECK(memcmp(s[r]->images[0], w->images[0] + 6 * r * floats, 6 * floats * sizeof(float)) == 0);
        }
    }
    loader_free(whole);
    loader_free(shard[0]);
    loader_free(shard[1]);
    LoaderOptions odd = options;
    odd.batch_size = 9, odd.shard_rank = 1, odd.shard_count = 2;
    CHECK(loader_create(&odd, error, sizeof error) == NULL);
    CHECK_MSG(strstr(error, "does not divide into 2 equal shards"), "%s", error);
    transform_pipeline_free(pipeline);
    dataset_free(dataset);
}

// ---------------------------------------------------------------- under mpirun

static bool have_mpirun(void) {
    if (*mpirun) return true;
    printf("  mpirun not found: install the Debian packages openmpi-bin libopenmpi-dev (sh scripts/ensure_deps.sh "
           "does as root) and rebuild\n");
    return false;
}

// ---------------------------------------------------------------- device collectives

// Deterministic, rank-dependent values whose sums round (a sum in another order would show).
static double sample_value(int64_t i, int rank) { return sin(0.37 * (double)i + 1.3 * rank) * (1 + i % 5) / 3.0; }

typedef enum { ALL_REDUCE, BROADCAST, ALL_GATHER, REDUCE_SCATTER } CollectiveKind;

// One device collective and the host one on the same values: true when the results are the same
// bits. On the emulated device the device collective stages through the host collective itself,
// so nothing may differ; a device collective that did nothing, or wrote the wrong block, differs
// from the host result (the ranks' values differ). Separate device outputs are poisoned (0xFF
// bytes: NaN floats) first, so an element never written shows.
static bool device_matches_host(CollectiveKind kind, int64_t count, DistType type, DistOp op, const char *what) {
    int rank = dist_rank(), world = dist_world_size();
    size_t element = dist_type_size(type);
    int64_t in_count = kind == REDUCE_SCATTER ? count * world : count;
    int64_t out_count = kind == ALL_GATHER ? count * world : count;
    size_t in_bytes = (size_t)in_count * element, out_bytes = (size_t)out_count * element;
    uint8_t *host_in = malloc(in_bytes), *host_out = malloc(out_bytes), *from_device = malloc(out_bytes);
    for (int64_t i = 0; i < in_count; i++) {
        if (type == DIST_F64) ((double *)host_in)[i] = sample_value(i, rank);
        else ((float *)host_in)[i] = (float)sample_value(i, rank);
    }
    bool in_place = kind == ALL_REDUCE || kind == BROADCAST;
    void *device_in = gpu_alloc(in_bytes), *device_out = in_place ? device_in : gpu_alloc(out_bytes);
    gpu_copy_to_device(device_in, host_in, in_bytes);
    if (!in_place) gpu_memset_async(device_out, 0xFF, out_bytes, NULL);
    switch (kind) {
    case ALL_REDUCE:
        dist_device_all_reduce(device_in, count, type, op, what);
        dist_all_reduce(host_in, count, type, op, what);
        memcpy(host_out, host_in, out_bytes);
        break;
    case BROADCAST:  // from the last rank, so rank 0's values are replaced
        dist_device_broadcast(device_in, in_bytes, world - 1, what);
        dist_broadcast(host_in, in_bytes, world - 1, what);
        memcpy(host_out, host_in, out_bytes);
        break;
    case ALL_GATHER:
        dist_device_all_gather(device_in, device_out, in_bytes, what);
        dist_all_gather(host_in, host_out, in_bytes, what);
        break;
    case REDUCE_SCATTER:
        dist_device_reduce_scatter(device_in, device_out, count, type, op, what);
        dist_reduce_scatter(host_in, host_out, count, type, op, what);
        break;
    }
    gpu_copy_to_host(from_device, device_out, out_bytes);
    bool same = memcmp(from_device, host_out, out_bytes) == 0;
    if (!same) printf("  rank %d: %s: the device result differs from the host collective's\n", rank, what);
    gpu_free(device_in);
    if (!in_place) gpu_free(device_out);
    free(host_in);
    free(host_out);
    free(from_device);
    return same;
}

// Every device collective, types and ops, awkward sizes (1, a prime, more than a page), against
// the host ones; 0 when all match. Runs in this process (one rank: copies and no-ops) and, from
// `--device-collectives-rank`, in each rank under mpirun.
static int device_collectives_mismatches(void) {
    char error[256];
    if (gpu_select(0, error, sizeof error) != 0) {
        printf("  emulated device: %s\n", error);
        return 1;
    }
    static const int64_t counts[3] = {1, 13, 5003};
    int mismatches = 0;
    for (int k = 0; k < 3; k++) {
        int64_t n = counts[k];
        mismatches += !device_matches_host(ALL_REDUCE, n, DIST_F32, DIST_SUM, "device all-reduce f32 sum");
        mismatches += !device_matches_host(ALL_REDUCE, n, DIST_F64, DIST_AVG, "device all-reduce f64 average");
        mismatches += !device_matches_host(BROADCAST, n, DIST_F32, DIST_SUM, "device broadcast");
        mismatches += !device_matches_host(ALL_GATHER, n, DIST_F32, DIST_SUM, "device all-gather");
        mismatches += !device_matches_host(REDUCE_SCATTER, n, DIST_F32, DIST_AVG, "device reduce-scatter f32 average");
        mismatches += !device_matches_host(REDUCE_SCATTER, n, DIST_F64, DIST_SUM, "device reduce-scatter f64 sum");
    }
    return mismatches;
}

// A rank of the mpirun tests below: the comparison, or (hang) rank 1 sleeping past the deadline
// so that rank 0's staged device all-reduce must stop with the host collective's one line.
static int device_collectives_rank(bool hang) {
    char error[512];
    DistOptions options = dist_default_options();
    options.timeout_seconds = hang ? 2 : 60;
    if (dist_init(&options, error, sizeof error) != 0) {
        printf("%s\n", error);
        return 1;
    }
    if (hang) {
        if (gpu_select(0, error, sizeof error) != 0) return 1;
        if (dist_rank() == 1) sleep(30);
        float *device = gpu_alloc(4 * sizeof(float));
        gpu_memset_async(device, 0, 4 * sizeof(float), NULL);
        dist_device_all_reduce(device, 4, DIST_F32, DIST_SUM, "device all-reduce of the hang test");
        return 0;  // not reached on rank 0: the deadline stops it
    }
    int mismatches = device_collectives_mismatches();
    printf("rank %d: device collectives: %d mismatches\n", dist_rank(), mismatches);
    return mismatches != 0;
}

TEST(device_collectives_match_the_host_ones) {
    // One rank, in this process: the reduce-scatter and gather copy, the rest leave the data.
    CHECK(device_collectives_mismatches() == 0);
    if (!*mpirun) return;  // reported above
    char command[8192], output[16384];
    snprintf(command, sizeof command, "%s %s --device-collectives-rank", mpirun, self);
    CHECK_MSG(run(command, output, sizeof output) == 0, "%s", output);
    char text[16384];
    read_command_stdout(work_dir, text, sizeof text);
    CHECK_MSG(strstr(text, "rank 0: device collectives: 0 mismatches") && strstr(text, "rank 1: device collectives: 0 mismatches"),
              "%s", text);
    // The deadline and the one line of the host collective carry over to the staged device one.
    snprintf(command, sizeof command, "%s %s --device-collectives-hang", mpirun, self);
    double start = now_seconds();
    int status = run(command, output, sizeof output);
    double seconds = now_seconds() - start;
    CHECK_MSG(status != 0 && seconds < 25, "exit status %d after %.1f s:\n%s", status, seconds, output);
    CHECK_MSG(strstr(output, "error: dist: rank 0: all-reduce 'device all-reduce of the hang test' (collective #") &&
                  strstr(output, "timed out after 2 s; no answer from rank 1"),
              "%s", output);
}

// Largest |a - b| over every tensor of two safetensors files of the same model; -1 if they differ in
// names or shapes, or one cannot be read.
static double max_weight_difference(const char *path_a, const char *path_b) {
    char error[512];
    SafetensorsFile *a = NULL, *b = NULL;
    double worst = 0;
    if (safetensors_open(path_a, &a, error, sizeof error) != 0 || safetensors_open(path_b, &b, error, sizeof error) != 0) {
        printf("  %s\n", error);
        worst = -1;
    }
    for (int i = 0; worst >= 0 && i < safetensors_count(a); i++) {
        const SafetensorsEntry *ea = safetensors_entry(a, i), *eb = safetensors_find(b, ea->name);
        if (!eb || eb->nbytes != ea->nbytes) {
            worst = -1;
            break;
        }
        const float *x = ea->data, *y = eb->data;
        for (size_t k = 0; k < ea->nbytes / sizeof(float); k++) {
            double d = fabs((double)x[k] - (double)y[k]);
            if (!(d <= worst)) worst = d;  // NaN propagates as a large difference
        }
    }
    if (worst >= 0 && safetensors_count(a) != safetensors_count(b)) worst = -1;
    safetensors_close(a);
    safetensors_close(b);
    return worst;
}


TEST(two_ranks_train_the_weights_of_one) {
    if (!have_mpirun()) {
        CHECK(!"mpirun is missing (Debian packages openmpi-bin libopenmpi-dev)");
        return;
    }
    char command[8192], output[16384];
    snprintf(command, sizeof command, "%s/tailor %s --data %s/train --out %s/one", build_dir, TRAIN_FLAGS, work_dir, work_dir);
    CHECK_MSG(run(command, output, sizeof output) == 0, "%s", output);
    snprintf(command, sizeof command, "%s %s/tailor %s --data %s/train --out %s/two --dist-timeout 60", mpirun, build_dir,
             TRAIN_FLAGS, work_dir, work_dir);
    CHECK_MSG(run(command, output, sizeof output) == 0, "%s", output);
    char text[16384];
    read_command_stdout(work_dir, text, sizeof text);
    CHECK_MSG(strstr(text, "2 ranks (openmpi), 4 images per rank per step"), "%s", text);
    int summaries = 0;
    for (const char *at = text; (at = strstr(at, "step 4: train loss")); at++) summaries++;
    CHECK_MSG(summaries == 1, "%d summaries (only rank 0 prints):\n%s", summaries, text);
    char a[512], b[512];
    snprintf(a, sizeof a, "%s/one/checkpoint/model.safetensors", work_dir);
    snprintf(b, sizeof b, "%s/two/checkpoint/model.safetensors", work_dir);
    double difference = max_weight_difference(a, b);
    // Why not bitwise: one process sums each weight gradient over the 8 samples inside one GEMM; two
    // ranks sum 4 and 4 and MPI adds the two halves (then halves them: exact). So each gradient
    // element differs by a few f32 roundings, |dg| <~ 8 * 2^-24 * sum_i |g_i| (the per-sample terms).
    // SGD turns that linearly into weights: after N steps with momentum m, |dw| <~ lr * N / (1 - m)
    // * max |dg|, about 0.05 * 4 * 10 * 5e-7 * |g|_1-per-element ~ 1e-6 with |g| <~ 1 here, plus the
    // weights' own rounding (1 ulp = 1.2e-7 at |w| ~ 1, which is what we measure). The bound 1e-5 is
    // far below what a real error gives (a wrong shard, a sum instead of an average, an
    // un-broadcast initialisation: differences of lr * |g| ~ 1e-3 or more).
    printf("report: max |w(1 rank) - w(2 ranks)| after 4 SGD steps of vit-tiny/4: %.3g\n", difference);
    CHECK_MSG(difference >= 0 && difference <= 1e-5, "max weight difference %g", difference);
    snprintf(a, sizeof a, "%s/two/settings.json", work_dir);
    char settings[4096];
    read_settings(a, settings, sizeof settings);
    CHECK_MSG(strstr(settings, "\"world-size\":2"), "%s", settings);
}

// Gradient buckets all-reduced during backward (the default) give the bits of the averaging after
// backward (--no-dist-overlap: one blocking all-reduce per bucket, in index order): each bucket is
// the same range, summed by the same MPI call and scaled by the same multiply; only when it starts
// changes. 1 MiB buckets make vit-tiny's 5.5M gradients 21 buckets, most of them complete (and
// started) while backward still has layers to go.
TEST(overlapped_buckets_give_the_bits_of_post_backward_averaging) {
    if (!*mpirun) return;  // reported above
    char command[8192], output[16384], text[16384];
    const char *runs[2] = {"overlap", "after"};
    const char *extra[2] = {"", "--no-dist-overlap"};
    long long buckets[2] = {-1, -1}, started[2] = {-1, -1};
    for (int r = 0; r < 2; r++) {
        snprintf(command, sizeof command, "%s %s/tailor %s --dist-bucket-mb 1 %s --data %s/train --out %s/%s --dist-timeout 60",
                 mpirun, build_dir, TRAIN_FLAGS, extra[r], work_dir, work_dir, runs[r]);
        CHECK_MSG(run(command, output, sizeof output) == 0, "%s: %s", runs[r], output);
        read_command_stdout(work_dir, text, sizeof text);
        const char *line = strstr(text, "data parallel (mpi): ");
        CHECK_MSG(line && sscanf(line, "data parallel (mpi): %lld gradient buckets of 1 MiB per step, %lld started before",
                                 &buckets[r], &started[r]) == 2,
                  "%s", text);
    }
    printf("report: vit-tiny, 2 ranks, 1 MiB buckets: %lld of %lld buckets started before backward's last gradient\n",
           started[0], buckets[0]);
    CHECK_MSG(buckets[0] == 21 && buckets[1] == 21, "%lld and %lld buckets", buckets[0], buckets[1]);
    // Most buckets start while backward still has layers to go; the ones holding the first layers
    // (and the no-decay parameters of every layer) only with its last gradient.
    CHECK_MSG(started[0] >= buckets[0] / 2 && started[0] < buckets[0], "%lld started before the end", started[0]);
    CHECK_MSG(started[1] == 0, "--no-dist-overlap started %lld during backward", started[1]);
    char a[512], b[512];
    snprintf(a, sizeof a, "%s/overlap/checkpoint/model.safetensors", work_dir);
    snprintf(b, sizeof b, "%s/after/checkpoint/model.safetensors", work_dir);
    double difference = max_weight_difference(a, b);
    CHECK_MSG(difference == 0, "max weight difference %g (expected the same bits)", difference);
    snprintf(b, sizeof b, "%s/one/checkpoint/model.safetensors", work_dir);
    difference = max_weight_difference(a, b);
    CHECK_MSG(difference >= 0 && difference <= 1e-5, "against one process: %g", difference);  // bound: as above
}

// A 2-rank run stopped after 2 steps, resumed by one process to step 4: the weights of 4 steps.
TEST(one_rank_resumes_a_two_rank_checkpoint) {
    if (!*mpirun) return;  // reported by the test above
    char command[8192], output[16384];
    snprintf(command, sizeof command, "%s %s/tailor %s --data %s/train --stop-at-step 2 --out %s/part --dist-timeout 60",
             mpirun, build_dir, TRAIN_FLAGS, work_dir, work_dir);
    CHECK_MSG(run(command, output, sizeof output) == 0, "%s", output);
    snprintf(command, sizeof command, "%s/tailor %s --data %s/train --resume %s/part/checkpoint --out %s/part", build_dir,
             TRAIN_FLAGS, work_dir, work_dir, work_dir);
    CHECK_MSG(run(command, output, sizeof output) == 0, "%s", output);
    char a[512], b[512];
    snprintf(a, sizeof a, "%s/one/checkpoint/model.safetensors", work_dir);
    snprintf(b, sizeof b, "%s/part/checkpoint/model.safetensors", work_dir);
    double difference = max_weight_difference(a, b);
    printf("report: max |w(4 steps, 1 rank) - w(2 steps on 2 ranks + 2 resumed on 1)|: %.3g\n", difference);
    snprintf(a, sizeof a, "%s/part/settings.json", work_dir);  // the world size of this run, once
    char settings[4096];
    read_settings(a, settings, sizeof settings);
    const char *first = strstr(settings, "\"world-size\":1");
    CHECK_MSG(first && !strstr(first + 1, "\"world-size\"") && !strstr(settings, "\"world-size\":2"), "%s", settings);
    CHECK_MSG(difference >= 0 && difference <= 1e-5, "max weight difference %g", difference);  // bound: as above
}

// ZeRO-1: two ranks, each holding half of the momentum buffers, train the weights of one process;
// a ZeRO-1 checkpoint (stopped at step 2) holds the whole optimizer state, so one process without
// ZeRO resumes it to the same weights.
TEST(zero1_trains_and_checkpoints_the_weights_of_one) {
    if (!*mpirun) return;  // reported by the test above
    char command[8192], output[16384];
    snprintf(command, sizeof command, "%s %s/tailor %s --zero1 --data %s/train --out %s/zero --dist-timeout 60", mpirun,
             build_dir, TRAIN_FLAGS, work_dir, work_dir);
    CHECK_MSG(run(command, output, sizeof output) == 0, "%s", output);
    snprintf(command, sizeof command,
             "%s %s/tailor %s --zero1 --data %s/train --stop-at-step 2 --out %s/zero_part --dist-timeout 60", mpirun,
             build_dir, TRAIN_FLAGS, work_dir, work_dir);
    CHECK_MSG(run(command, output, sizeof output) == 0, "%s", output);
    snprintf(command, sizeof command, "%s/tailor %s --data %s/train --resume %s/zero_part/checkpoint --out %s/zero_part",
             build_dir, TRAIN_FLAGS, work_dir, work_dir, work_dir);
    CHECK_MSG(run(command, output, sizeof output) == 0, "%s", output);
    char a[512], b[512];
    snprintf(a, sizeof a, "%s/one/checkpoint/model.safetensors", work_dir);
    const char *runs[2] = {"zero", "zero_part"};
    for (int r = 0; r < 2; r++) {
        snprintf(b, sizeof b, "%s/%s/checkpoint/model.safetensors", work_dir, runs[r]);
        double difference = max_weight_difference(a, b);
        // The same bound as the all-reduce path: reduce-scatter sums the two ranks' gradients, in
        // whichever order MPI picks, then each rank applies the elementwise SGD update to its half.
        printf("report: max |w(1 rank) - w(2 ranks, ZeRO-1%s)|: %.3g\n", r ? ", resumed on 1 rank" : "", difference);
        CHECK_MSG(difference >= 0 && difference <= 1e-5, "%s: max weight difference %g", runs[r], difference);
    }
}

// Synchronized BatchNorm: a WideResNet (BatchNorm everywhere, running statistics saved) on two
// ranks with --sync-bn trains the weights and running statistics of one process; without it each
// rank normalises its own 4 images and the weights drift apart measurably.
TEST(sync_batchnorm_matches_one_process) {
    if (!*mpirun) return;  // reported above
    static const char BN_FLAGS[] =
        "train --model wrn-10-1 --bn-momentum 0.1 --image-size 16 --batch-size 8 --lr 0.05 --optimizer sgd "
        "--momentum 0.9 --lr-schedule constant --augment crop-flip --workers 1 --threads 1 --device cpu --steps 4";
    char command[8192], output[16384];
    const char *runs[3] = {"bn_one", "bn_sync", "bn_local"};
    const char *launch[3] = {"", mpirun, mpirun};
    const char *extra[3] = {"", "--sync-bn", ""};
    for (int r = 0; r < 3; r++) {
        snprintf(command, sizeof command, "%s %s/tailor %s %s --data %s/train --out %s/%s --dist-timeout 60", launch[r],
                 build_dir, BN_FLAGS, extra[r], work_dir, work_dir, runs[r]);
        CHECK_MSG(run(command, output, sizeof output) == 0, "%s: %s", runs[r], output);
    }
    char a[512], b[512], c[512];
    snprintf(a, sizeof a, "%s/bn_one/checkpoint/model.safetensors", work_dir);
    snprintf(b, sizeof b, "%s/bn_sync/checkpoint/model.safetensors", work_dir);
    snprintf(c, sizeof c, "%s/bn_local/checkpoint/model.safetensors", work_dir);
    double synchronized = max_weight_difference(a, b), local = max_weight_difference(a, c);
    printf("report: max |w(1 rank) - w(2 ranks)| of wrn-10-1 after 4 steps: %.3g with --sync-bn, %.3g without\n",
           synchronized, local);
    // The synchronized statistics are composed from ops (two all-reduced sums) while one process
    // uses the fused batch-norm kernel: the same two-pass formulas, summed in another order, so each
    // statistic differs by a few f32 roundings (relative ~1e-6) and the weights, through 4 SGD
    // steps with momentum, by about the same relative amount; the running statistics (saved too)
    // likewise. 1e-4 is far below the per-rank statistics' effect (measured 0.66 here, mostly in the
    // running statistics; 4.8e-7 with --sync-bn).
    CHECK_MSG(synchronized >= 0 && synchronized <= 1e-4, "with --sync-bn: max weight difference %g", synchronized);
    CHECK_MSG(local > 10 * synchronized, "without --sync-bn the difference (%g) should be far larger", local);
}

// The same on the emulated CUDA device (build/tailor-emu --device cuda:0, each rank its own
// emulated device): synchronized BatchNorm's all-reduces and ZeRO-1 (shard optimizer on the
// device, reduce-scatter of device gradients, the device SGD step, all-gather of device
// parameters) on device buffers, staged through the host collectives. ZeRO-1 runs with --sync-bn,
// since a BatchNorm model only matches one process with synchronized statistics; a ZeRO-1 run
// stopped at step 2 and resumed by one process checks the state its checkpoint gathered from the
// device shards. About 2-3 s per emulated run.
TEST(device_sync_batchnorm_and_zero1_match_one_process) {
    if (!*mpirun) return;  // reported above
    static const char BN_FLAGS[] =
        "train --model wrn-10-1 --bn-momentum 0.1 --image-size 16 --batch-size 8 --lr 0.05 --optimizer sgd "
        "--momentum 0.9 --lr-schedule constant --augment crop-flip --workers 1 --threads 1 --steps 4 --dist-timeout 60";
    struct {
        const char *launch, *program, *flags, *out;
    } runs[7] = {
        {"", "tailor-emu", "--device cuda:0", "dev_one"},
        {mpirun, "tailor-emu", "--device cuda:0 --sync-bn", "dev_sync"},
        {mpirun, "tailor-emu", "--device cuda:0 --sync-bn --zero1", "dev_zero"},
        {mpirun, "tailor", "--device cpu --sync-bn", "cpu_sync"},
        {mpirun, "tailor", "--device cpu --sync-bn --zero1", "cpu_zero"},
        {mpirun, "tailor-emu", "--device cuda:0 --sync-bn --zero1 --stop-at-step 2", "dev_zero_part"},
        {"", "tailor-emu", "--device cuda:0 --resume", "dev_zero_part"},  // + the checkpoint of the run before
    };
    char command[8192], output[16384];
    for (int r = 0; r < 7; r++) {
        char resume[600] = "";
        if (r == 6) snprintf(resume, sizeof resume, " %s/dev_zero_part/checkpoint", work_dir);
        snprintf(command, sizeof command, "%s %s/%s %s %s%s --data %s/train --out %s/%s", runs[r].launch, build_dir,
                 runs[r].program, BN_FLAGS, runs[r].flags, resume, work_dir, work_dir, runs[r].out);
        CHECK_MSG(run(command, output, sizeof output) == 0, "%s: %s", runs[r].out, output);
    }
    // Against one process on the device, and against the same 2-rank run on the CPU.
    static const char *const pairs[5][2] = {{"dev_one", "dev_sync"},  {"dev_one", "dev_zero"}, {"dev_one", "dev_zero_part"},
                                            {"cpu_sync", "dev_sync"}, {"cpu_zero", "dev_zero"}};
    for (int k = 0; k < 5; k++) {
        char a[512], b[512];
        snprintf(a, sizeof a, "%s/%s/checkpoint/model.safetensors", work_dir, pairs[k][0]);
        snprintf(b, sizeof b, "%s/%s/checkpoint/model.safetensors", work_dir, pairs[k][1]);
        double difference = max_weight_difference(a, b);
        printf("report: max |w(%s) - w(%s)| of wrn-10-1 after 4 steps: %.3g\n", pairs[k][0], pairs[k][1], difference);
        // The bound of the CPU test above, for the same reason: the composed synchronized
        // statistics against the fused batch-norm kernel, and here also the device kernels'
        // reductions (conv and batch-norm backward, blocks of threads) against the CPU's, each a
        // few f32 roundings per statistic and gradient (measured 4.8e-7 device vs CPU for one
        // process, 7.2e-7 for 2 ranks). Without the synchronized all-reduces the device run is
        // 0.66 away; a ZeRO-1 shard updated with the wrong slice, a missing all-gather or a lost
        // momentum buffer across the checkpoint, lr * |g| ~ 1e-3 or more.
        CHECK_MSG(difference >= 0 && difference <= 1e-4, "%s vs %s: max weight difference %g", pairs[k][0], pairs[k][1],
                  difference);
    }
}

// A rank that exits in the middle of the run, or hangs: the other stops, non-zero, within the
// timeout (3 s here, plus start-up), with a line naming the rank and the collective.
//  - exit, plain mpirun: mpirun itself ends the job at once, naming the process that failed
//    ("Process name: [[job,1],1]"); rank 0 says which collective it was in;
//  - exit, with mpirun told not to abort on a failed rank (as when a launcher does not notice a lost
//    node), and hang: rank 0's collective times out, it asks the others, names rank 1 and aborts.
TEST(a_dead_or_hanging_rank_stops_the_run) {
    if (!*mpirun) return;
    struct {
        const char *launcher_flags, *expect_1, *expect_2;
    } cases[3] = {
        {"-x TAILOR_DIST_TEST_EXIT_AT_STEP=1:2", "error: dist: rank 0: terminated by the launcher in ", "Process name: [["},
        {"--mca orte_abort_on_non_zero_status 0 -x TAILOR_DIST_TEST_EXIT_AT_STEP=1:2",
         "error: dist: rank 0: all-reduce 'loss and accuracy' (collective #", "timed out after 3 s; no answer from rank 1"},
        {"-x TAILOR_DIST_TEST_HANG_AT_STEP=1:2", "error: dist: rank 0: all-reduce 'loss and accuracy' (collective #",
         "timed out after 3 s; no answer from rank 1"},
    };
    for (int k = 0; k < 3; k++) {
        char command[8192], output[16384];
        snprintf(command, sizeof command, "%s %s %s/tailor %s --data %s/train --out %s/fault%d --dist-timeout 3", mpirun,
                 cases[k].launcher_flags, build_dir, TRAIN_FLAGS, work_dir, work_dir, k);
        double start = now_seconds();
        int status = run(command, output, sizeof output);
        double seconds = now_seconds() - start;
        CHECK_MSG(status != 0, "%s: exit status 0", cases[k].launcher_flags);
        CHECK_MSG(seconds < 30, "%s: %.1f s to stop", cases[k].launcher_flags, seconds);
        const char *line = strstr(output, cases[k].expect_1);
        CHECK_MSG(line && strstr(line, cases[k].expect_2), "%s: expected '%s...%s' in:\n%s", cases[k].launcher_flags,
                  cases[k].expect_1, cases[k].expect_2, output);
    }
}

TEST(start_up_checks_are_one_line) {
    if (!*mpirun) return;
    char command[8192], output[16384];
    // a global batch the ranks cannot share equally
    snprintf(command, sizeof command, "%s %s/tailor %s --data %s/train --out %s/odd --batch-size 7", mpirun, build_dir,
             TRAIN_FLAGS, work_dir, work_dir);
    CHECK(run(command, output, sizeof output) != 0);
    CHECK_MSG(strstr(output, "--batch-size 7 is the global batch and must divide by the 2 ranks"), "%s", output);
    // ranks started with different settings (MPMD launch): the first differing member is named
    snprintf(command, sizeof command, "%s -np 1 %s/tailor %s --data %s/train --out %s/mismatch : -np 1 %s/tailor %s --data %s/train --out %s/mismatch --seed 5",
             mpirun, build_dir, TRAIN_FLAGS, work_dir, work_dir, build_dir, TRAIN_FLAGS, work_dir, work_dir);
    // (mpirun's own -np 2 is replaced by the two -np 1 groups)
    char *np = strstr(command, "-np 2 ");
    if (np) memset(np, ' ', 6);
    int status = run(command, output, sizeof output);
    CHECK_MSG(status == 2, "exit status %d:\n%s", status, output);
    CHECK_MSG(strstr(output, "error: tailor train: dist: rank 1's run settings differ from rank 0's at \"seed\": 5 (rank 0: 0)"),
              "%s", output);
}

// Tests run in order; `test_dist NAME...` runs only the tests whose names contain one of the
// NAMEs (the mpirun tests after two_ranks_train_the_weights_of_one compare with its run "one").
static int selected_count;
static char **selected;
static bool is_selected(const char *name) {
    for (int k = 0; k < selected_count; k++)
        if (strstr(name, selected[k])) return true;
    return selected_count == 0;
}
#define RUN_SELECTED(name)                      \
    do {                                        \
        if (is_selected(#name)) RUN_TEST(name); \
    } while (0)

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "--device-collectives-rank") == 0) return device_collectives_rank(false);
    if (argc == 2 && strcmp(argv[1], "--device-collectives-hang") == 0) return device_collectives_rank(true);
    selected_count = argc - 1, selected = argv + 1;
    char *self_path = realpath(argv[0], NULL);
    snprintf(self, sizeof self, "%s", self_path ? self_path : argv[0]);
    free(self_path);
    const char *build = getenv("BUILD");
    if (build && *build) snprintf(build_dir, sizeof build_dir, "%s", build);
    snprintf(work_dir, sizeof work_dir, "%s/tailor_dist_XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(work_dir)) {
        printf("cannot create a temporary directory\n");
        return 1;
    }
    // OpenMPI: 2 ranks on any machine (--oversubscribe), as root when the tests run as root, no
    // core binding (each rank runs its own threads), and shared-memory copies without ptrace's
    // cross-memory attach, which containers often forbid.
    // Under AddressSanitizer, the ranks' LeakSanitizer ignores what OpenMPI keeps until exit
    // (tests/lsan_mpi.supp says how); harmless in the optimised build.
    // (Set in this process's environment, which mpirun's local ranks inherit: `-x` reaches only the
    // first program of an MPMD launch.)
    char *supp = realpath("tests/lsan_mpi.supp", NULL);
    if (supp) {
        char options[1200];
        const char *old = getenv("LSAN_OPTIONS");
        snprintf(options, sizeof options, "%.300s%ssuppressions=%.700s:fast_unwind_on_malloc=0", old ? old : "",
                 old && *old ? ":" : "", supp);
        setenv("LSAN_OPTIONS", options, 1);
    }
    free(supp);
    if (system("command -v mpirun >/dev/null 2>&1") == 0)
        snprintf(mpirun, sizeof mpirun, "mpirun -np 2 --oversubscribe --bind-to none%s",
                 geteuid() == 0 ? " --allow-run-as-root" : "");
    setenv("OMPI_MCA_rmaps_base_oversubscribe", "1", 1);
    setenv("OMPI_MCA_btl_vader_single_copy_mechanism", "none", 1);
    setenv("OMPI_MCA_mca_base_component_disable_dlclose", "1", 1);
    char path[512];
    snprintf(path, sizeof path, "%s/train", work_dir);
    write_stripes(path, 80, 1);
    RUN_SELECTED(single_process_collectives);
    RUN_SELECTED(placement_from_the_environment);
    RUN_SELECTED(gradient_buckets_launch_complete_buckets_in_a_fixed_order);
    RUN_SELECTED(rendezvous_without_a_gpu_stops_at_start);
    RUN_SELECTED(loader_shards_make_the_whole_batch);
    RUN_SELECTED(two_ranks_train_the_weights_of_one);
    RUN_SELECTED(overlapped_buckets_give_the_bits_of_post_backward_averaging);
    RUN_SELECTED(one_rank_resumes_a_two_rank_checkpoint);
    RUN_SELECTED(zero1_trains_and_checkpoints_the_weights_of_one);
    RUN_SELECTED(sync_batchnorm_matches_one_process);
    RUN_SELECTED(device_collectives_match_the_host_ones);
    RUN_SELECTED(device_sync_batchnorm_and_zero1_match_one_process);
    RUN_SELECTED(a_dead_or_hanging_rank_stops_the_run);
    RUN_SELECTED(start_up_checks_are_one_line);
    char command[600];
    snprintf(command, sizeof command, "rm -rf '%s'", work_dir);
    if (system(command) != 0) printf("could not remove %s\n", work_dir);
    return test_summary();
}
