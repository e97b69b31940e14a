// Data loader throughput: images per second through data/loader.c for the pipelines the methods
// use, with 1 and 2 worker threads (the training loop here only takes batches, so this is the rate
// the loader can feed). Writes its own PNG folders to a temporary directory first: 32x32 RGB
// images (the built-in benchmark's size; the FixMatch weak and strong views) and 160x120 JPEG-like
// photos stored as PNG (ImageNet-style random-resized-crop to 224). Each case runs 2 s after a
// warm-up epoch and reports images/s (one image = one sample through all its views).
//
//   make build/bench/bench_loader && build/bench/bench_loader [--keep DIR]
// --keep DIR writes the images to DIR and leaves them there (for tests/ref/bench_torch_loader.py).
// Results: docs/PERFORMANCE.md ("Data loader"); tests/ref/bench_torch_loader.py runs the same
// cases through torchvision's DataLoader for the side-by-side ratio.
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

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

// A smooth, textured picture (sums of sinusoids) so PNG decoding does realistic work.
static void write_images(const char *root, int count, int width, int height) {
    char path[600], error[300];
    mkdir(root, 0755);
    for (int c = 0; c < 10; c++) {
        snprintf(path, sizeof path, "%s/%d", root, c);
        mkdir(path, 0755);
    }
    Image image = {.width = width, .height = height, .channels = 3, .pixels = malloc((size_t)width * height * 3)};
    for (int i = 0; i < count; i++) {
        double fx = 0.05 + 0.01 * (i % 7), fy = 0.07 + 0.013 * (i % 5);
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
                for (int ch = 0; ch < 3; ch++) {
                    double v = 128 + 60 * sin(fx * x * (ch + 1) + i) + 50 * cos(fy * y + 0.3 * ch * i) +
                               15 * sin(0.9 * x * y + i);
                    image.pixels[((size_t)y * width + x) * 3 + ch] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
                }
        snprintf(path, sizeof path, "%s/%d/%05d.png", root, i % 10, i);
        if (image_save_png(path, &image, error, sizeof error) != 0) {
            fprintf(stderr, "error: %s\n", error);
            exit(1);
        }
    }
    image_free(&image);
}

static void run_case(const char *label, const Dataset *dataset, const char *view0, const char *view1, int workers,
                     int64_t batch_size) {
    char error[512];
    TransformPipeline *pipelines[2] = {NULL, NULL};
    const char *specs[2] = {view0, view1};
    int n_views = 0;
    for (int v = 0; v < 2; v++) {
        if (!specs[v]) continue;
        pipelines[v] = transform_pipeline_parse(specs[v], error, sizeof error);
        if (!pipelines[v]) {
            fprintf(stderr, "error: %s\n", error);
            exit(1);
        }
        n_views = v + 1;
    }
    LoaderOptions options = {.dataset = dataset, .channels = 3, .n_views = n_views, .batch_size = batch_size,
                             .shuffle = true, .drop_last = true, .seed = 1, .workers = workers};
    for (int v = 0; v < n_views; v++) options.views[v] = pipelines[v];
    Loader *loader = loader_create(&options, error, sizeof error);
    if (!loader) {
        fprintf(stderr, "error: %s\n", error);
        exit(1);
    }
    const LoaderBatch *batch;
    int64_t warmup = loader_batches_per_epoch(loader);
    if (warmup > 8) warmup = 8;
    for (int64_t b = 0; b < warmup; b++)
        if (loader_next(loader, &batch, error, sizeof error) != 0) {
            fprintf(stderr, "error: %s\n", error);
            exit(1);
        }
    int64_t images = 0;
    double start = now_seconds(), elapsed = 0;
    while (elapsed < 2.0) {
        if (loader_next(loader, &batch, error, sizeof error) != 0) {
            fprintf(stderr, "error: %s\n", error);
            exit(1);
        }
        images += batch->count;
        elapsed = now_seconds() - start;
    }
    printf("%-34s workers %d  %8.0f images/s\n", label, workers, (double)images / elapsed);
    loader_free(loader);
    for (int v = 0; v < 2; v++) transform_pipeline_free(pipelines[v]);
}

int main(int argc, char **argv) {
    char root[256], small[300], large[300], error[512];
    bool keep = argc == 3 && strcmp(argv[1], "--keep") == 0;
    if (argc != 1 && !keep) {
        fprintf(stderr, "usage: bench_loader [--keep DIR]\n");
        return 2;
    }
    if (keep) {
        snprintf(root, sizeof root, "%s", argv[2]);
        mkdir(root, 0755);
    } else {
        snprintf(root, sizeof root, "%s/tailor_bench_loader_XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
        if (!mkdtemp(root)) {
            fprintf(stderr, "error: cannot create a temporary directory\n");
            return 1;
        }
    }
    snprintf(small, sizeof small, "%s/small", root);
    snprintf(large, sizeof large, "%s/large", root);
    write_images(small, 2000, 32, 32);
    write_images(large, 400, 160, 120);
    Dataset *small_set = dataset_image_folder(small, error, sizeof error);
    Dataset *large_set = dataset_image_folder(large, error, sizeof error);
    if (!small_set || !large_set) {
        fprintf(stderr, "error: %s\n", error);
        return 1;
    }
    const char *weak = "random_crop=32:4:reflect,hflip,normalize=half";
    const char *strong = "random_crop=32:4:reflect,hflip,randaugment=2:10,normalize=half";
    const char *imagenet = "random_resized_crop=224,hflip,normalize=imagenet";
    for (int workers = 1; workers <= 2; workers++) {
        run_case("32x32 decode only", small_set, NULL, NULL, workers, 64);
        run_case("32x32 weak (crop+flip)", small_set, weak, NULL, workers, 64);
        run_case("32x32 weak+strong (RandAugment)", small_set, weak, strong, workers, 64);
        run_case("160x120 random-resized-crop 224", large_set, imagenet, NULL, workers, 32);
    }
    dataset_free(small_set);
    dataset_free(large_set);
    if (keep) return 0;
    char command[600];
    snprintf(command, sizeof command, "rm -rf '%s'", root);
    return system(command) == 0 ? 0 : 1;
}
