// The built-in benchmark (data/benchmark.h): a reduced build into a temporary directory, read back
// with the dataset readers; counts and class balance, 32x32 RGB PNGs, determinism (same seed: the
// same bytes, whatever the thread count and whether built by the library or by `tailor data build`;
// another seed: other images), the world corpus never holding a hand image or a Fashion-MNIST test
// image, captions, the manifest, and one-line errors for missing sources and bad flags.
//
// It needs the Debian sources (opencv-doc, dataset-fashion-mnist, the fonts and the cached
// digits.csv.gz): when one is missing the first test fails naming scripts/get_data_sources.sh.
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "data/benchmark.h"
#include "data/benchmark_internal.h"
#include "data/dataset.h"
#include "data/idx.h"
#include "data/image.h"
#include "engine/json.h"
#include "tests/check.h"
#include "tests/run_command.h"

TEST_MAIN_COUNTERS;

static char build_dir[256] = "build";
static char work_dir[128];
static char bench_a[256], bench_b[256], bench_c[256];
static bool built_a;

static void options_for(BenchmarkOptions *options, const char *out, uint64_t seed) {
    benchmark_options_default(options);
    options->out_dir = out;
    options->seed = seed;
    options->reduced = true;
}

static int run(const char *command, char *captured, size_t size) {
    return run_command(work_dir, command, captured, size);
}

static bool one_line(const char *text) {
    const char *newline = strchr(text, '\n');
    return newline && newline[1] == 0;
}

static uint64_t fnv1a(const void *data, size_t size, uint64_t hash) {
    const uint8_t *p = data;
    for (size_t i = 0; i < size; i++) hash = (hash ^ p[i]) * 0x100000001b3ULL;
    return hash;
}
#define FNV_START 0xcbf29ce484222325ULL

static uint8_t *read_all(const char *path, size_t *size) {
    FILE *file = fopen(path, "rb");
    if (!file) return NULL;
    fseek(file, 0, SEEK_END);
    long n = ftell(file);
    fseek(file, 0, SEEK_SET);
    uint8_t *data = malloc((size_t)n + 1);
    *size = fread(data, 1, (size_t)n, file);
    data[*size] = 0;
    fclose(file);
    return data;
}

// Hash of every file of a tree: relative paths (sorted) and contents.
static uint64_t hash_tree(const char *root, const char *relative, uint64_t hash, int *files) {
    char path[1024];
    snprintf(path, sizeof path, "%s%s%s", root, relative[0] ? "/" : "", relative);
    struct dirent **entries = NULL;
    int n = scandir(path, &entries, NULL, alphasort);
    for (int i = 0; i < n; i++) {
        const char *name = entries[i]->d_name;
        if (strcmp(name, ".") != 0 && strcmp(name, "..") != 0) {
            char child[1024], full[1200];
            snprintf(child, sizeof child, "%s%s%s", relative, relative[0] ? "/" : "", name);
            snprintf(full, sizeof full, "%s/%s", root, child);
            struct stat st;
            hash = fnv1a(child, strlen(child) + 1, hash);
            if (stat(full, &st) == 0 && S_ISDIR(st.st_mode)) {
                hash = hash_tree(root, child, hash, files);
            } else {
                size_t size = 0;
                uint8_t *data = read_all(full, &size);
                hash = fnv1a(data, size, hash);
                free(data);
                (*files)++;
            }
        }
        free(entries[i]);
    }
    free(entries);
    return hash;
}

static uint64_t pixel_hash(const uint8_t *rgb) { return fnv1a(rgb, 32 * 32 * 3, FNV_START); }

static int compare_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static bool contains(const uint64_t *sorted, size_t n, uint64_t key) {
    return bsearch(&key, sorted, n, sizeof key, compare_u64) != NULL;
}

// ---------------------------------------------------------------------------------------------

TEST(sources_present) {
    BenchmarkOptions options;
    options_for(&options, "unused", 0);
    char error[2048];
    int status = benchmark_check_sources(&options, error, sizeof error);
    CHECK_MSG(status == 0, "%s (this test needs the benchmark's Debian sources)", error);
}

TEST(reduced_build_reports_planned_counts) {
    BenchmarkOptions options;
    options_for(&options, bench_a, 0);
    BenchmarkReport report;
    char error[2048];
    int status = benchmark_build(&options, &report, error, sizeof error);
    CHECK_MSG(status == 0, "%s", error);
    built_a = status == 0;
    if (!built_a) return;
    for (int d = 0; d < BENCHMARK_DOMAIN_COUNT; d++) {
        const BenchmarkDomainInfo *info = benchmark_domain_info(d);
        CHECK_MSG(report.built[d], "%s", info->name);
        for (int split = 0; split < (info->has_test ? 2 : 1); split++)
            for (int c = 0; c < info->class_count; c++)
                CHECK_MSG(report.counts[d][split][c] == benchmark_planned_count(d, true, split, c), "%s split %d class %d: %lld", info->name,
                          split, c, (long long)report.counts[d][split][c]);
    }
    CHECK(report.totals[BENCHMARK_HAND][0] == 200 && report.totals[BENCHMARK_HAND][1] == 100);
    CHECK(report.totals[BENCHMARK_WORLD][0] == 720 && report.totals[BENCHMARK_WORLD][1] == 0);
    CHECK(report.fonts_print > 0 && report.fonts_handwriting > 0);
    char path[512];
    snprintf(path, sizeof path, "%s.partial", bench_a);
    CHECK_MSG(access(path, F_OK) != 0, "%s left behind", path);
}

// Folders and lists agree with each other and with the documented reduced counts; every image is
// a 32x32 RGB PNG.
TEST(folders_and_lists_read_back) {
    if (!built_a) return;
    char error[1024], root[1024], list[1024], domain_dir[512];
    for (int d = 0; d < BENCHMARK_DOMAIN_COUNT; d++) {
        const BenchmarkDomainInfo *info = benchmark_domain_info(d);
        snprintf(domain_dir, sizeof domain_dir, "%s/%s", bench_a, info->name);
        for (int split = 0; split < (info->has_test ? 2 : 1); split++) {
            const char *folder = d == BENCHMARK_WORLD ? "images" : split == 0 ? "train" : "test";
            const char *list_name = d == BENCHMARK_WORLD ? "images.txt" : split == 0 ? "train.txt" : "test.txt";
            snprintf(root, sizeof root, "%s/%s", domain_dir, folder);
            snprintf(list, sizeof list, "%s/%s", domain_dir, list_name);
            Dataset *tree = dataset_image_folder(root, error, sizeof error);
            Dataset *lines = dataset_image_list(list, domain_dir, info->class_count, error, sizeof error);
            CHECK_MSG(tree && lines, "%s: %s", info->name, error);
            if (!tree || !lines) {
                dataset_free(tree);
                dataset_free(lines);
                continue;
            }
            CHECK_MSG(tree->class_count == info->class_count && tree->empty_class_count == 0, "%s", info->name);
            for (int c = 0; c < tree->class_count && c < info->class_count; c++)
                CHECK_MSG(strcmp(tree->class_names[c], benchmark_class_folder(d, c)) == 0, "%s class %d: %s", info->name, c,
                          tree->class_names[c]);
            int64_t counts[BENCHMARK_MAX_CLASSES] = {0}, list_counts[BENCHMARK_MAX_CLASSES] = {0};
            dataset_class_counts(tree, counts);
            dataset_class_counts(lines, list_counts);
            for (int c = 0; c < info->class_count; c++) {
                CHECK_MSG(counts[c] == benchmark_planned_count(d, true, split, c), "%s %s class %d: %lld images", info->name, folder, c,
                          (long long)counts[c]);
                CHECK_MSG(list_counts[c] == counts[c], "%s %s class %d", info->name, list_name, c);
            }
            // Same samples in the same order (ImageFolder's sorted order is the list order).
            CHECK_MSG(tree->count == lines->count, "%s", info->name);
            for (int64_t i = 0; i < tree->count && i < lines->count; i++) {
                if (strcmp(tree->samples[i].path, lines->samples[i].path) != 0 || tree->samples[i].label != lines->samples[i].label) {
                    CHECK_MSG(0, "%s sample %lld: %s vs %s", info->name, (long long)i, tree->samples[i].path, lines->samples[i].path);
                    break;
                }
            }
            for (int64_t i = 0; i < tree->count; i++) {
                size_t size = 0;
                uint8_t *bytes = read_all(tree->samples[i].path, &size);
                Image image;
                bool png = bytes && size > 8 && memcmp(bytes, "\x89PNG\r\n\x1a\n", 8) == 0;
                int loaded = image_load(tree->samples[i].path, 0, &image, error, sizeof error);
                bool ok = png && loaded == 0 && image.width == 32 && image.height == 32 && image.channels == 3;
                if (loaded == 0) image_free(&image);
                free(bytes);
                if (!ok) {
                    CHECK_MSG(0, "%s is not a 32x32 RGB PNG (%s)", tree->samples[i].path, loaded ? error : "");
                    break;
                }
            }
            dataset_free(tree);
            dataset_free(lines);
        }
        snprintf(root, sizeof root, "%s/grid.png", domain_dir);
        Image grid;
        CHECK_MSG(image_load(root, 3, &grid, error, sizeof error) == 0, "%s", error);
        if (grid.pixels) image_free(&grid);
    }
}

TEST(manifest_describes_the_build) {
    if (!built_a) return;
    char path[512], error[512];
    snprintf(path, sizeof path, "%s/manifest.json", bench_a);
    size_t size = 0;
    char *text = (char *)read_all(path, &size);
    CHECK_MSG(text != NULL, "%s missing", path);
    if (!text) return;
    JsonValue *manifest = json_parse(text, size, error, sizeof error);
    CHECK_MSG(manifest != NULL, "%s: %s", path, error);
    int64_t seed = -1, total = -1;
    CHECK(json_int64(json_get(manifest, "seed"), &seed) == 0 && seed == 0);
    for (int d = 0; d < BENCHMARK_DOMAIN_COUNT; d++) {
        const BenchmarkDomainInfo *info = benchmark_domain_info(d);
        const JsonValue *domain = json_get(json_get(manifest, "domains"), info->name);
        CHECK_MSG(domain != NULL, "%s", info->name);
        const JsonValue *split = json_get(json_get(domain, "splits"), d == BENCHMARK_WORLD ? "images" : "train");
        CHECK_MSG(json_int64(json_get(split, "total"), &total) == 0 && total > 0, "%s", info->name);
        CHECK(json_length(json_get(split, "per_class")) == (size_t)info->class_count);
        CHECK(json_length(json_get(domain, "classes")) == (size_t)info->class_count);
    }
    const JsonValue *sources = json_get(manifest, "sources");
    CHECK(json_length(sources) >= 2 + 4 + 18);
    for (size_t i = 0; i < json_length(sources); i++) {
        int64_t bytes = 0;
        CHECK(json_int64(json_get(json_at(sources, i), "bytes"), &bytes) == 0 && bytes > 0);
        CHECK(json_string(json_get(json_at(sources, i), "package")) != NULL);
    }
    CHECK(json_length(json_get(json_get(manifest, "fonts"), "faces")) > 10);
    json_free(manifest);
    free(text);
}

// The same seed through the program (one thread) gives the same bytes as the library (all cores);
// another seed gives other images and another split.
TEST(deterministic_given_the_seed) {
    if (!built_a) return;
    char command[1024], output[4096];
    snprintf(command, sizeof command, "%s/tailor data build --reduced --threads 1 --seed 0 --out %s", build_dir, bench_b);
    CHECK_MSG(run(command, output, sizeof output) == 0, "%s", output);
    int files_a = 0, files_b = 0;
    uint64_t a = hash_tree(bench_a, "", FNV_START, &files_a), b = hash_tree(bench_b, "", FNV_START, &files_b);
    CHECK_MSG(files_a == files_b && files_a > 2500, "%d vs %d files", files_a, files_b);
    CHECK_MSG(a == b, "the same seed gave different files");

    BenchmarkOptions options;
    options_for(&options, bench_c, 1);
    options.domains = "hand,print";
    char error[2048];
    CHECK_MSG(benchmark_build(&options, NULL, error, sizeof error) == 0, "%s", error);
    char path_a[512], path_c[512];
    int n = 0;
    snprintf(path_a, sizeof path_a, "%s/print/train", bench_a);
    snprintf(path_c, sizeof path_c, "%s/print/train", bench_c);
    CHECK_MSG(hash_tree(path_a, "", FNV_START, &n) != hash_tree(path_c, "", FNV_START, &n), "seed 1 rendered the same print digits");
    snprintf(path_a, sizeof path_a, "%s/hand/train", bench_a);
    snprintf(path_c, sizeof path_c, "%s/hand/train", bench_c);
    CHECK_MSG(hash_tree(path_a, "", FNV_START, &n) != hash_tree(path_c, "", FNV_START, &n), "seed 1 chose the same hand digits");
}

// World images are compared by pixels with every hand digit (made the way the hand domain makes
// them: the 20x20 cell, bicubic to 32x32, grey as RGB) and every Fashion-MNIST test image (padded
// by 2, grey as RGB). Positive controls: the hand domain's images are all in the first set, and
// the world's plain clothing images are Fashion-MNIST train images.
TEST(world_holds_no_hand_or_fashion_test_image) {
    if (!built_a) return;
    char error[1024];
    Image sheet;
    CHECK_MSG(image_load("/usr/share/doc/opencv-doc/examples/data/digits.png", 1, &sheet, error, sizeof error) == 0, "%s", error);
    if (!sheet.pixels) return;
    uint64_t *hand = malloc(5000 * sizeof(uint64_t));
    uint8_t rgb[32 * 32 * 3];
    for (int k = 0; k < 5000; k++) {
        uint8_t cell[400];
        for (int y = 0; y < 20; y++) memcpy(cell + y * 20, sheet.pixels + ((k / 100) * 20 + y) * 2000 + (k % 100) * 20, 20);
        Image in = {20, 20, 1, cell}, out = {0};
        image_resize(&in, 32, 32, RESIZE_BICUBIC, &out, error, sizeof error);
        for (int i = 0; i < 1024; i++) rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = out.pixels[i];
        image_free(&out);
        hand[k] = pixel_hash(rgb);
    }
    image_free(&sheet);
    qsort(hand, 5000, sizeof(uint64_t), compare_u64);

    uint64_t *fashion_test = NULL, *fashion_train = NULL;
    size_t test_count = 0, train_count = 0;
    const char *files[2] = {"/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz",
                            "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"};
    for (int f = 0; f < 2; f++) {
        IdxArray images = {0};
        CHECK_MSG(idx_load(files[f], &images, error, sizeof error) == 0, "%s", error);
        size_t n = images.ndim == 3 ? (size_t)images.dims[0] : 0;
        uint64_t *hashes = malloc((n + 1) * sizeof(uint64_t));
        for (size_t k = 0; k < n; k++) {
            memset(rgb, 0, sizeof rgb);
            const uint8_t *image = (const uint8_t *)images.data + k * 784;
            for (int y = 0; y < 28; y++)
                for (int x = 0; x < 28; x++) memset(rgb + ((y + 2) * 32 + x + 2) * 3, image[y * 28 + x], 3);
            hashes[k] = pixel_hash(rgb);
        }
        qsort(hashes, n, sizeof(uint64_t), compare_u64);
        idx_free(&images);
        if (f == 0) fashion_test = hashes, test_count = n;
        else fashion_train = hashes, train_count = n;
    }

    // Positive control: every hand-domain image is in the hand set.
    char path[512];
    snprintf(path, sizeof path, "%s/hand/train.txt", bench_a);
    char root[512];
    snprintf(root, sizeof root, "%s/hand", bench_a);
    Dataset *hand_domain = dataset_image_list(path, root, 0, error, sizeof error);
    CHECK_MSG(hand_domain != NULL, "%s", error);
    for (int64_t i = 0; hand_domain && i < hand_domain->count; i++) {
        Image image;
        if (image_load(hand_domain->samples[i].path, 3, &image, error, sizeof error) != 0) continue;
        bool found = contains(hand, 5000, pixel_hash(image.pixels));
        image_free(&image);
        if (!found) {
            CHECK_MSG(0, "%s is not one of the hand digits as the test makes them", hand_domain->samples[i].path);
            break;
        }
    }
    dataset_free(hand_domain);

    snprintf(path, sizeof path, "%s/world/images.txt", bench_a);
    snprintf(root, sizeof root, "%s/world", bench_a);
    Dataset *world = dataset_image_list(path, root, 0, error, sizeof error);
    CHECK_MSG(world != NULL, "%s", error);
    int plain_clothing = 0;
    for (int64_t i = 0; world && i < world->count; i++) {
        Image image;
        if (image_load(world->samples[i].path, 3, &image, error, sizeof error) != 0) {
            CHECK_MSG(0, "%s", error);
            continue;
        }
        uint64_t h = pixel_hash(image.pixels);
        image_free(&image);
        CHECK_MSG(!contains(hand, 5000, h), "%s is a hand digit", world->samples[i].path);
        CHECK_MSG(!contains(fashion_test, test_count, h), "%s is a Fashion-MNIST test image", world->samples[i].path);
        if (world->samples[i].label >= 62 && contains(fashion_train, train_count, h)) plain_clothing++;
    }
    CHECK_MSG(plain_clothing >= 20, "only %d world clothing images are plain Fashion-MNIST train images", plain_clothing);
    dataset_free(world);
    free(hand);
    free(fashion_test);
    free(fashion_train);
}

TEST(every_world_image_has_a_caption_naming_its_category) {
    if (!built_a) return;
    char path[512], error[512];
    snprintf(path, sizeof path, "%s/world/images.txt", bench_a);
    Dataset *world = dataset_image_list(path, NULL, 0, error, sizeof error);
    CHECK_MSG(world != NULL, "%s", error);
    if (!world) return;
    snprintf(path, sizeof path, "%s/world/captions.tsv", bench_a);
    size_t size = 0;
    char *text = (char *)read_all(path, &size);
    CHECK_MSG(text != NULL, "%s missing", path);
    int64_t line_number = 0;
    for (char *save = NULL, *line = text ? strtok_r(text, "\n", &save) : NULL; line; line = strtok_r(NULL, "\n", &save), line_number++) {
        char *tab1 = strchr(line, '\t'), *tab2 = tab1 ? strchr(tab1 + 1, '\t') : NULL;
        if (!tab1 || !tab2 || strchr(tab2 + 1, '\t') || line_number >= world->count) {
            CHECK_MSG(0, "captions.tsv:%lld: '%s'", (long long)line_number + 1, line);
            break;
        }
        *tab1 = *tab2 = 0;
        const char *file = line, *category = tab1 + 1, *caption = tab2 + 1;
        const DatasetSample *sample = &world->samples[line_number];
        CHECK_MSG(strcmp(file, sample->path) == 0, "captions.tsv:%lld: %s, images.txt has %s", (long long)line_number + 1, file, sample->path);
        CHECK_MSG(strcmp(category, benchmark_world_category((int)sample->label)) == 0, "captions.tsv:%lld: category %s",
                  (long long)line_number + 1, category);
        CHECK_MSG(strlen(caption) > 10 && strstr(caption, category), "captions.tsv:%lld: '%s' does not name '%s'", (long long)line_number + 1,
                  caption, category);
    }
    CHECK_MSG(line_number == world->count, "%lld captions for %lld images", (long long)line_number, (long long)world->count);
    free(text);
    dataset_free(world);
}

// A missing source is one line naming the file, its package and scripts/get_data_sources.sh.
TEST(missing_source_names_the_package) {
    BenchmarkOptions options;
    char out[512], empty[512], error[2048];
    snprintf(out, sizeof out, "%s/never", work_dir);
    snprintf(empty, sizeof empty, "%s/empty", work_dir);
    mkdir(empty, 0755);
    options_for(&options, out, 0);
    options.opencv_data_dir = empty;
    options.domains = "hand";
    CHECK(benchmark_build(&options, NULL, error, sizeof error) != 0);
    CHECK_MSG(strstr(error, "digits.png") && strstr(error, "opencv-doc") && strstr(error, "sh scripts/get_data_sources.sh") &&
                  !strchr(error, '\n'),
              "%s", error);
    CHECK_MSG(access(out, F_OK) != 0, "%s was created", out);

    char command[2048], output[4096];
    snprintf(command, sizeof command, "%s/tailor data build --reduced --domains lowres --sources %s --out %s", build_dir, empty, out);
    CHECK(run(command, output, sizeof output) != 0);
    CHECK_MSG(strncmp(output, "error: ", 7) == 0 && one_line(output) && strstr(output, "digits.csv.gz") && strstr(output, "python3-sklearn") &&
                  strstr(output, "sh scripts/get_data_sources.sh"),
              "%s", output);
    snprintf(command, sizeof command, "%s/tailor data build --reduced --domains fashion --fashion-dir %s --out %s", build_dir, empty, out);
    CHECK(run(command, output, sizeof output) != 0);
    CHECK_MSG(strncmp(output, "error: ", 7) == 0 && one_line(output) && strstr(output, "dataset-fashion-mnist") &&
                  strstr(output, "sh scripts/get_data_sources.sh"),
              "%s", output);
    snprintf(command, sizeof command, "%s/tailor data build --reduced --domains print --fonts %s --out %s", build_dir, empty, out);
    CHECK(run(command, output, sizeof output) != 0);
    CHECK_MSG(strncmp(output, "error: ", 7) == 0 && one_line(output) && strstr(output, "fonts") &&
                  strstr(output, "sh scripts/get_data_sources.sh"),
              "%s", output);
    CHECK_MSG(access(out, F_OK) != 0, "%s was created", out);
}

// An existing benchmark is kept unless --force; a leftover OUT.partial of an interrupted build is
// cleaned up, one not made by the builder is refused.
TEST(existing_output_and_partial_builds) {
    BenchmarkOptions options;
    char out[512], path[600], error[2048];
    snprintf(out, sizeof out, "%s/small", work_dir);
    options_for(&options, out, 3);
    options.domains = "lowres";
    CHECK_MSG(benchmark_build(&options, NULL, error, sizeof error) == 0, "%s", error);
    CHECK(benchmark_build(&options, NULL, error, sizeof error) != 0);
    CHECK_MSG(strstr(error, "already exists") && strstr(error, "--force"), "%s", error);
    options.force = true;
    CHECK_MSG(benchmark_build(&options, NULL, error, sizeof error) == 0, "%s", error);
    options.force = false;

    // An interrupted build (its marker present) is replaced.
    char other[512];
    snprintf(other, sizeof other, "%s/other", work_dir);
    options.out_dir = other;
    snprintf(path, sizeof path, "%s.partial", other);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s.partial/.tailor-partial", other);
    fclose(fopen(path, "w"));
    snprintf(path, sizeof path, "%s.partial/junk.png", other);
    fclose(fopen(path, "w"));
    CHECK_MSG(benchmark_build(&options, NULL, error, sizeof error) == 0, "%s", error);
    snprintf(path, sizeof path, "%s/junk.png", other);
    CHECK(access(path, F_OK) != 0);
    // Someone else's directory is neither replaced nor used.
    snprintf(path, sizeof path, "%s/mine", work_dir);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/mine/keep.txt", work_dir);
    fclose(fopen(path, "w"));
    snprintf(path, sizeof path, "%s/mine", work_dir);
    options.out_dir = path;
    options.force = true;
    CHECK(benchmark_build(&options, NULL, error, sizeof error) != 0);
    CHECK_MSG(strstr(error, "not a benchmark"), "%s", error);
    snprintf(path, sizeof path, "%s/mine/keep.txt", work_dir);
    CHECK(access(path, F_OK) == 0);
    snprintf(path, sizeof path, "%s/x.partial", work_dir);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/x.partial/keep.txt", work_dir);
    fclose(fopen(path, "w"));
    snprintf(path, sizeof path, "%s/x", work_dir);
    options.out_dir = path;
    CHECK(benchmark_build(&options, NULL, error, sizeof error) != 0);
    CHECK_MSG(strstr(error, "not made by tailor data build"), "%s", error);
}

// Font directories: unreadable files, excluded families and duplicates are counted and skipped; a
// world build without handwriting-style fonts names the packages.
TEST(font_scan_skips_and_counts) {
    char dir[512], path[700], error[2048];
    snprintf(dir, sizeof dir, "%s/fonts", work_dir);
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/a.ttf", dir);
    CHECK(symlink("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", path) == 0);
    snprintf(path, sizeof path, "%s/b.ttf", dir);  // the same face again
    CHECK(symlink("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", path) == 0);
    snprintf(path, sizeof path, "%s/c.otf", dir);
    CHECK(symlink("/usr/share/fonts/opentype/urw-base35/StandardSymbolsPS.otf", path) == 0);
    snprintf(path, sizeof path, "%s/sub", dir);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/sub/garbage.TTF", dir);
    FILE *garbage = fopen(path, "wb");
    for (int i = 0; i < 4096; i++) fputc((i * 7919) & 255, garbage);
    fclose(garbage);
    snprintf(path, sizeof path, "%s/readme.txt", dir);
    fclose(fopen(path, "w"));
    FontSet fonts;
    CHECK_MSG(font_set_load(dir, &fonts, error, sizeof error) == 0, "%s", error);
    CHECK_MSG(fonts.count == 1 && fonts.family_count == 1 && fonts.duplicate == 1 && fonts.excluded == 1 && fonts.unreadable == 1,
              "%d faces, %d duplicate, %d excluded, %d unreadable", fonts.count, fonts.duplicate, fonts.excluded, fonts.unreadable);
    if (fonts.count == 1) {
        CHECK(fonts.fonts[0].font_class == FONT_SANS && !fonts.fonts[0].bold && !fonts.fonts[0].italic);
        uint8_t coverage[32 * 32];
        GlyphPlacement placement = {.size = 40, .angle = 30, .dx = 20, .dy = -20, .thicken = 1};  // too big, too far: kept inside
        CHECK(font_render_glyph(&fonts.fonts[0], '8', &placement, coverage) == 0);
        int ink = 0, border = 0;
        for (int y = 0; y < 32; y++)
            for (int x = 0; x < 32; x++) {
                ink += coverage[y * 32 + x] > 128;
                if (x == 0 || y == 0 || x == 31 || y == 31) border += coverage[y * 32 + x];
            }
        CHECK_MSG(ink > 50 && border == 0, "ink %d, border %d", ink, border);
        CHECK(font_render_glyph(&fonts.fonts[0], 0x4E00, &placement, coverage) != 0);  // no CJK in DejaVu Sans
    }
    font_set_free(&fonts);
    CHECK(font_set_load("/nonexistent:/also-not", &fonts, error, sizeof error) != 0);

    BenchmarkOptions options;
    char out[512];
    snprintf(out, sizeof out, "%s/fontless", work_dir);
    options_for(&options, out, 0);
    options.fonts_dirs = dir;
    options.domains = "world";
    CHECK(benchmark_build(&options, NULL, error, sizeof error) != 0);
    CHECK_MSG(strstr(error, "handwriting-style") && strstr(error, "fonts-kristi") && strstr(error, "sh scripts/get_data_sources.sh"), "%s",
              error);
    snprintf(path, sizeof path, "%s.partial", out);
    CHECK_MSG(access(path, F_OK) != 0 && access(out, F_OK) != 0, "a failed source check left %s", path);
}

TEST(command_line_errors_are_one_line) {
    char command[1024], output[4096];
    const char *cases[][2] = {
        {"data build --domains hand,nope --out %s/y", "unknown domain 'nope'"},
        {"data build --seed x --out %s/y", "--seed expects an integer"},
        {"data build --threads -1 --out %s/y", "--threads"},
        {"data frobnicate %s", "unknown subcommand 'frobnicate'"},
        {"data", "missing subcommand"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char arguments[512];
        snprintf(arguments, sizeof arguments, cases[i][0], work_dir);
        snprintf(command, sizeof command, "%s/tailor %s", build_dir, arguments);
        int status = run(command, output, sizeof output);
        CHECK_MSG(status != 0 && status != -1, "%s: exit %d", arguments, status);
        CHECK_MSG(strncmp(output, "error: ", 7) == 0 && one_line(output) && strstr(output, cases[i][1]), "%s: %s", arguments, output);
    }
}

int main(void) {
    const char *build = getenv("BUILD");
    if (build && *build) snprintf(build_dir, sizeof build_dir, "%s", build);
    snprintf(work_dir, sizeof work_dir, "%s/tailor_benchmark_XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(work_dir)) {
        printf("cannot create a temporary directory\n");
        return 1;
    }
    snprintf(bench_a, sizeof bench_a, "%s/a", work_dir);
    snprintf(bench_b, sizeof bench_b, "%s/b", work_dir);
    snprintf(bench_c, sizeof bench_c, "%s/c", work_dir);
    RUN_TEST(sources_present);
    if (tests_failed == 0) {
        RUN_TEST(reduced_build_reports_planned_counts);
        RUN_TEST(folders_and_lists_read_back);
        RUN_TEST(manifest_describes_the_build);
        RUN_TEST(deterministic_given_the_seed);
        RUN_TEST(world_holds_no_hand_or_fashion_test_image);
        RUN_TEST(every_world_image_has_a_caption_naming_its_category);
        RUN_TEST(existing_output_and_partial_builds);
    }
    RUN_TEST(missing_source_names_the_package);
    RUN_TEST(font_scan_skips_and_counts);
    RUN_TEST(command_line_errors_are_one_line);
    char cleanup[300];
    snprintf(cleanup, sizeof cleanup, "rm -rf '%s'", work_dir);
    if (system(cleanup) != 0) printf("could not remove %s\n", work_dir);
    return test_summary();
}
