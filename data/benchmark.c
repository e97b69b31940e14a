// `tailor data build`: the multi-domain benchmark (data/benchmark.h, docs/DATA.md). Selection of
// each domain's samples and splits, rendering them in parallel (one Philox stream per sample),
// writing PNGs, image lists, captions, grids and the manifest into OUT.partial, then the rename.
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/benchmark.h"
#include "engine/fs.h"
#include "data/benchmark_internal.h"
#include <time.h>

// stb_image_write's in-memory PNG encoder, compiled in data/stb_impl.c (its header declares it only
// with the implementation). Deterministic, and independent of the zlib version.
extern unsigned char *stbi_write_png_to_mem(const unsigned char *pixels, int stride_bytes, int x, int y, int n, int *out_len);

static const BenchmarkDomainInfo domain_infos[BENCHMARK_DOMAIN_COUNT] = {
    {"hand", 10, true, "OpenCV's 5000 handwritten 20x20 digits (opencv-doc), bicubic to 32x32"},
    {"print", 10, true, "digits rendered with stb_truetype from the print-style fonts"},
    {"lowres", 10, true, "scikit-learn's 1797 8x8 optdigits (python3-sklearn), bicubic to 24x24, padded to 32x32"},
    {"photo", 10, true, "hand digits blended onto crops of OpenCV's sample photos (MNIST-M)"},
    {"fashion", 10, true, "Fashion-MNIST (dataset-fashion-mnist), 28x28 padded to 32x32"},
    {"fashion-photo", 10, true, "fashion images blended onto crops of OpenCV's sample photos (MNIST-M)"},
    {"world", BENCHMARK_WORLD_CATEGORIES, false, "captioned digits, letters (every font family) and Fashion-MNIST train images"},
};

static const char *const digit_folders[10] = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};
static const char *const fashion_folders[10] = {"0-tshirt", "1-trouser", "2-pullover", "3-dress", "4-coat",
                                                "5-sandal", "6-shirt",   "7-sneaker",  "8-bag",   "9-ankle-boot"};

// Rows of world/grid.png: two digits, four letters, six kinds of clothing.
static const int world_grid_rows[] = {2, 7, 10, 27, 36, 42, 62, 63, 65, 69, 70, 71};
#define WORLD_GRID_ROWS ((int)(sizeof world_grid_rows / sizeof world_grid_rows[0]))
#define GRID_COLUMNS 8

const BenchmarkDomainInfo *benchmark_domain_info(int domain) {
    return domain >= 0 && domain < BENCHMARK_DOMAIN_COUNT ? &domain_infos[domain] : NULL;
}

int benchmark_domain_from_name(const char *name) {
    for (int d = 0; d < BENCHMARK_DOMAIN_COUNT; d++)
        if (strcmp(name, domain_infos[d].name) == 0) return d;
    return -1;
}

const char *benchmark_class_folder(int domain, int c) {
    if (domain < 0 || domain >= BENCHMARK_DOMAIN_COUNT || c < 0 || c >= domain_infos[domain].class_count) return NULL;
    if (domain == BENCHMARK_WORLD) return bench_world_folder(c);
    if (domain == BENCHMARK_FASHION || domain == BENCHMARK_FASHION_PHOTO) return fashion_folders[c];
    return digit_folders[c];
}

int64_t benchmark_planned_count(int domain, bool reduced, int split, int c) {
    if (domain < 0 || domain >= BENCHMARK_DOMAIN_COUNT || c < 0 || c >= domain_infos[domain].class_count || split < 0 || split > 1) return 0;
    if (domain == BENCHMARK_WORLD) {
        if (split == 1) return 0;
        if (reduced) return 10;
        return c >= 10 && c < 62 ? 250 : 1000;
    }
    if (reduced) return split == 0 ? 20 : 10;
    switch (domain) {
    case BENCHMARK_HAND:
    case BENCHMARK_PHOTO: return split == 0 ? 400 : 100;
    case BENCHMARK_PRINT: return split == 0 ? 500 : 100;
    case BENCHMARK_LOWRES: return split == 0 ? -1 : 50;
    default: return 1000;  // fashion, fashion-photo
    }
}

void benchmark_options_default(BenchmarkOptions *options) {
    memset(options, 0, sizeof *options);
    options->out_dir = "data/benchmark";
}

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

// ---- files ------------------------------------------------------------------------------------

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static int remove_tree(const char *path) { return nftw(path, remove_entry, 32, FTW_DEPTH | FTW_PHYS); }

static bool exists(const char *path) {
    struct stat st;
    return lstat(path, &st) == 0;
}

static bool is_empty_directory(const char *path) {
    DIR *dir = opendir(path);
    if (!dir) return false;
    int entries = 0;
    struct dirent *entry;
    while ((entry = readdir(dir)))
        if (strcmp(entry->d_name, ".") != 0 && strcmp(entry->d_name, "..") != 0) entries++;
    closedir(dir);
    return entries == 0;
}

static int write_png(const char *path, const uint8_t *rgb, int width, int height, char *error, size_t error_size) {
    int length = 0;
    unsigned char *png = stbi_write_png_to_mem(rgb, width * 3, width, height, 3, &length);
    if (!png) {
        snprintf(error, error_size, "%s: PNG encoding failed", path);
        return -1;
    }
    FILE *file = fopen(path, "wb");
    int status = 0;
    if (!file || fwrite(png, 1, (size_t)length, file) != (size_t)length) status = -1;
    if (file && fclose(file) != 0) status = -1;
    if (status != 0) snprintf(error, error_size, "%s: cannot write: %s", path, strerror(errno));
    free(png);
    return status;
}

// JSON string body (quotes not included).
static void json_escaped(FILE *out, const char *s) {
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(out, "\\%c", c);
        else if (c < 0x20) fprintf(out, "\\u%04x", c);
        else fputc(c, out);
    }
}

static int64_t file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (int64_t)st.st_size : -1;
}

// ---- selection --------------------------------------------------------------------------------

typedef struct {
    int *items;
    int count;
} IntList;

static int compare_ints(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

// One class's samples (`members`, in source order) permuted with Philox (seed, stream): the first
// n_a go to *a, the next n_b (n_b < 0: all the rest) to *b; both sorted back into source order.
static void split_members(const int *members, int n, uint64_t seed, uint64_t stream, int n_a, int n_b, IntList *a, IntList *b) {
    int64_t *order = malloc((size_t)(n > 0 ? n : 1) * sizeof(int64_t));
    Rng rng = rng_make(seed, stream);
    rng_permutation(&rng, order, n);
    if (n_a > n) n_a = n;
    if (n_b < 0 || n_b > n - n_a) n_b = n - n_a;
    a->items = malloc((size_t)(n_a + 1) * sizeof(int));
    b->items = malloc((size_t)(n_b + 1) * sizeof(int));
    a->count = n_a;
    b->count = n_b;
    for (int i = 0; i < n_a; i++) a->items[i] = members[order[i]];
    for (int i = 0; i < n_b; i++) b->items[i] = members[order[n_a + i]];
    qsort(a->items, (size_t)n_a, sizeof(int), compare_ints);
    qsort(b->items, (size_t)n_b, sizeof(int), compare_ints);
    free(order);
}

// Indices i < n with labels[i] == c, in order.
static int class_members(const uint8_t *labels, int n, int c, int *out) {
    int count = 0;
    for (int i = 0; i < n; i++)
        if (labels[i] == c) out[count++] = i;
    return count;
}

typedef struct {
    BenchJob *items;
    int64_t count, capacity;
} JobList;

static void add_job(JobList *jobs, int split, int label, int index, int source) {
    if (jobs->count == jobs->capacity) {
        jobs->capacity = jobs->capacity ? 2 * jobs->capacity : 1024;
        jobs->items = realloc(jobs->items, (size_t)jobs->capacity * sizeof(BenchJob));
    }
    jobs->items[jobs->count++] = (BenchJob){.split = (uint8_t)split, .label = (uint8_t)label, .index = index, .source = source, .grid = -1};
}

// The images of a domain, in list order: split, then class, then index.
static void plan_jobs(int domain, const BenchSources *sources, uint64_t seed, bool reduced, JobList *jobs) {
    IntList lists[2][BENCHMARK_MAX_CLASSES];
    memset(lists, 0, sizeof lists);
    int classes = domain_infos[domain].class_count;
    bool synthetic = false;
    int capacity = 500;
    if (sources->lowres_count > capacity) capacity = sources->lowres_count;
    if (sources->fashion_train_count > capacity) capacity = sources->fashion_train_count;
    if (sources->fashion_test_count > capacity) capacity = sources->fashion_test_count;
    int *members = malloc((size_t)capacity * sizeof(int));
    for (int c = 0; c < classes; c++) {
        int n;
        switch (domain) {
        case BENCHMARK_HAND:
        case BENCHMARK_PHOTO:  // the photo domain uses hand's split: the same digits
            for (int i = 0; i < 500; i++) members[i] = 500 * c + i;
            split_members(members, 500, seed, bench_split_stream(BENCHMARK_HAND, c), reduced ? 10 : 100, reduced ? 20 : -1,
                          &lists[1][c], &lists[0][c]);
            break;
        case BENCHMARK_LOWRES:
            n = class_members(sources->lowres_labels, sources->lowres_count, c, members);
            split_members(members, n, seed, bench_split_stream(BENCHMARK_LOWRES, c), reduced ? 10 : 50, reduced ? 20 : -1,
                          &lists[1][c], &lists[0][c]);
            break;
        case BENCHMARK_FASHION:
        case BENCHMARK_FASHION_PHOTO: {  // the same images as fashion
            IntList unused;
            n = class_members(sources->fashion_train_labels, sources->fashion_train_count, c, members);
            split_members(members, n, seed, bench_split_stream(BENCHMARK_FASHION, c), reduced ? 20 : 1000, 0, &lists[0][c], &unused);
            free(unused.items);
            n = class_members(sources->fashion_test_labels, sources->fashion_test_count, c, members);
            split_members(members, n, seed, bench_split_stream(BENCHMARK_FASHION, 10 + c), reduced ? 10 : n, 0, &lists[1][c], &unused);
            free(unused.items);
            break;
        }
        case BENCHMARK_WORLD:
            if (c >= 62) {  // Fashion-MNIST train images only
                IntList unused;
                n = class_members(sources->fashion_train_labels, sources->fashion_train_count, c - 62, members);
                split_members(members, n, seed, bench_split_stream(BENCHMARK_WORLD, c), (int)benchmark_planned_count(domain, reduced, 0, c), 0,
                              &lists[0][c], &unused);
                free(unused.items);
            } else {
                synthetic = true;
            }
            break;
        default: synthetic = true; break;
        }
    }
    free(members);
    for (int split = 0; split < (domain_infos[domain].has_test ? 2 : 1); split++)
        for (int c = 0; c < classes; c++) {
            if (synthetic && !lists[split][c].items) {
                int64_t n = benchmark_planned_count(domain, reduced, split, c);
                for (int i = 0; i < n; i++) add_job(jobs, split, c, i, -1);
            } else {
                for (int i = 0; i < lists[split][c].count; i++) add_job(jobs, split, c, i, lists[split][c].items[i]);
            }
            free(lists[split][c].items);
        }
}

// ---- rendering --------------------------------------------------------------------------------

static void grey_to_rgb(const uint8_t *grey, uint8_t *rgb) {
    for (int i = 0; i < BENCH_S * BENCH_S; i++) rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = grey[i];
}

// Resizes a w x h grey image to size x size (PIL bicubic) and centres it in 32x32 (zero padding).
static void resize_into(const uint8_t *pixels, int w, int h, int size, uint8_t *grey) {
    Image in = {w, h, 1, (uint8_t *)pixels}, out = {0};
    char error[256];
    memset(grey, 0, BENCH_S * BENCH_S);
    if (image_resize(&in, size, size, RESIZE_BICUBIC, &out, error, sizeof error) != 0) return;
    int pad = (BENCH_S - size) / 2;
    for (int y = 0; y < size; y++) memcpy(grey + (y + pad) * BENCH_S + pad, out.pixels + y * size, (size_t)size);
    image_free(&out);
}

static void render_job(int domain, const BenchSources *sources, const BenchJob *job, uint64_t seed, uint8_t *rgb, char *caption,
                       size_t caption_size) {
    Rng rng = rng_make(seed, bench_sample_stream(domain, job->split, job->label, job->index));
    uint8_t grey[BENCH_S * BENCH_S];
    switch (domain) {
    case BENCHMARK_HAND:
    case BENCHMARK_PHOTO:  // the 20x20 cell is a scaled MNIST frame: to 32x32 keeps MNIST's proportions
        resize_into(sources->hand + (size_t)job->source * 400, 20, 20, BENCH_S, grey);
        if (domain == BENCHMARK_HAND) grey_to_rgb(grey, rgb);
        else bench_blend_photo(sources, grey, &rng, rgb);
        break;
    case BENCHMARK_PRINT: bench_render_print(sources, job->label, &rng, rgb); break;
    case BENCHMARK_LOWRES: {
        uint8_t levels[64];
        for (int i = 0; i < 64; i++) levels[i] = (uint8_t)((sources->lowres[(size_t)job->source * 64 + i] * 255 + 8) / 16);
        resize_into(levels, 8, 8, 24, grey);
        grey_to_rgb(grey, rgb);
        break;
    }
    case BENCHMARK_FASHION:
    case BENCHMARK_FASHION_PHOTO: {
        const uint8_t *image = (job->split == 0 ? sources->fashion_train : sources->fashion_test) + (size_t)job->source * 784;
        memset(grey, 0, sizeof grey);
        for (int y = 0; y < 28; y++) memcpy(grey + (y + 2) * BENCH_S + 2, image + y * 28, 28);
        if (domain == BENCHMARK_FASHION) grey_to_rgb(grey, rgb);
        else bench_blend_photo(sources, grey, &rng, rgb);
        break;
    }
    default: bench_render_world(sources, job, &rng, rgb, caption, caption_size); break;
    }
}

// ---- one domain -------------------------------------------------------------------------------

#define GRID_CELL (BENCH_S + 2)

static const char *split_folder(int domain, int split) {
    return domain == BENCHMARK_WORLD ? "images" : split == 0 ? "train" : "test";
}

static int write_lists(int domain, const char *dir, const JobList *jobs, char *error, size_t error_size) {
    char path[3400];
    for (int split = 0; split < (domain_infos[domain].has_test ? 2 : 1); split++) {
        const char *name = domain == BENCHMARK_WORLD ? "images.txt" : split == 0 ? "train.txt" : "test.txt";
        snprintf(path, sizeof path, "%s/%s", dir, name);
        FILE *list = fopen(path, "w");
        FILE *captions = NULL;
        if (list && domain == BENCHMARK_WORLD) {
            snprintf(path, sizeof path, "%s/captions.tsv", dir);
            captions = fopen(path, "w");
        }
        if (!list || (domain == BENCHMARK_WORLD && !captions)) {
            snprintf(error, error_size, "%s: cannot create: %s", path, strerror(errno));
            if (list) fclose(list);
            return -1;
        }
        for (int64_t i = 0; i < jobs->count; i++) {
            const BenchJob *job = &jobs->items[i];
            if (job->split != split) continue;
            const char *folder = benchmark_class_folder(domain, job->label);
            fprintf(list, "%s/%s/%05d.png %d\n", split_folder(domain, split), folder, job->index, job->label);
            if (captions)
                fprintf(captions, "%s/%s/%05d.png\t%s\t%s\n", split_folder(domain, split), folder, job->index,
                        benchmark_world_category(job->label), job->caption ? job->caption : "");
        }
        int failed = ferror(list) || fclose(list) != 0;
        if (captions) failed |= ferror(captions) || fclose(captions) != 0;
        if (failed) {
            snprintf(error, error_size, "%s/%s: cannot write: %s", dir, name, strerror(errno));
            return -1;
        }
    }
    return 0;
}

static int build_domain(int domain, const BenchSources *sources, const BenchmarkOptions *options, const char *root,
                        BenchmarkReport *report, char *error, size_t error_size) {
    const BenchmarkDomainInfo *info = &domain_infos[domain];
    double start = now_seconds();
    JobList jobs = {0};
    plan_jobs(domain, sources, options->seed, options->reduced, &jobs);
    char dir[3200], path[3400];
    snprintf(dir, sizeof dir, "%s/%s", root, info->name);
    for (int split = 0; split < (info->has_test ? 2 : 1); split++)
        for (int c = 0; c < info->class_count; c++) {
            snprintf(path, sizeof path, "%s/%s/%s", dir, split_folder(domain, split), benchmark_class_folder(domain, c));
            if (fs_make_directories(path) != 0) {
                snprintf(error, error_size, "%s: cannot create: %s", path, strerror(errno));
                free(jobs.items);
                return -1;
            }
        }
    // grid.png: classes (world: a selection of categories) in rows, the first train images in columns.
    int grid_rows = domain == BENCHMARK_WORLD ? WORLD_GRID_ROWS : info->class_count;
    int grid_w = GRID_COLUMNS * GRID_CELL + 2, grid_h = grid_rows * GRID_CELL + 2;
    uint8_t *grid = malloc((size_t)grid_w * grid_h * 3);
    memset(grid, 128, (size_t)grid_w * grid_h * 3);
    for (int64_t i = 0; i < jobs.count; i++) {
        BenchJob *job = &jobs.items[i];
        if (job->split != 0 || job->index >= GRID_COLUMNS) continue;
        int row = domain == BENCHMARK_WORLD ? -1 : job->label;
        for (int r = 0; domain == BENCHMARK_WORLD && r < WORLD_GRID_ROWS; r++)
            if (world_grid_rows[r] == job->label) row = r;
        if (row >= 0) job->grid = row * GRID_COLUMNS + job->index;
    }

    if (options->progress) options->progress(options->progress_user, domain, 0, jobs.count);
    int failed = 0;
    int64_t done = 0;
    char first_error[3600] = "";
#pragma omp parallel for schedule(dynamic, 16)
    for (int64_t i = 0; i < jobs.count; i++) {
        int stop;
#pragma omp atomic read
        stop = failed;
        if (stop) continue;
        BenchJob *job = &jobs.items[i];
        uint8_t rgb[BENCH_S * BENCH_S * 3];
        char caption[256] = "", file[3400], message[3600];
        render_job(domain, sources, job, options->seed, rgb, caption, sizeof caption);
        if (domain == BENCHMARK_WORLD) job->caption = strdup(caption);
        snprintf(file, sizeof file, "%s/%s/%s/%05d.png", dir, split_folder(domain, job->split), benchmark_class_folder(domain, job->label),
                 job->index);
        if (write_png(file, rgb, BENCH_S, BENCH_S, message, sizeof message) != 0) {
#pragma omp critical(benchmark_error)
            if (!first_error[0]) snprintf(first_error, sizeof first_error, "%s", message);
#pragma omp atomic write
            failed = 1;
        }
        if (job->grid >= 0) {
            int gx = 2 + (job->grid % GRID_COLUMNS) * GRID_CELL, gy = 2 + (job->grid / GRID_COLUMNS) * GRID_CELL;
            for (int y = 0; y < BENCH_S; y++) memcpy(grid + ((size_t)(gy + y) * grid_w + gx) * 3, rgb + y * BENCH_S * 3, BENCH_S * 3);
        }
        int64_t now;
#pragma omp atomic capture
        now = ++done;
        if (options->progress && omp_get_thread_num() == 0 && now < jobs.count)
            options->progress(options->progress_user, domain, now, jobs.count);
    }
    int status = 0;
    if (failed) {
        snprintf(error, error_size, "%s", first_error);
        status = -1;
    }
    if (status == 0) status = write_lists(domain, dir, &jobs, error, error_size);
    if (status == 0) {
        snprintf(path, sizeof path, "%s/grid.png", dir);
        status = bench_write_grid_png(path, grid, grid_w, grid_h, error, error_size);
    }
    if (options->progress && status == 0) options->progress(options->progress_user, domain, jobs.count, jobs.count);
    for (int64_t i = 0; i < jobs.count; i++) {
        const BenchJob *job = &jobs.items[i];
        report->counts[domain][job->split][job->label]++;
        report->totals[domain][job->split]++;
        free(job->caption);
    }
    free(jobs.items);
    free(grid);
    report->built[domain] = status == 0;
    report->seconds[domain] = now_seconds() - start;
    return status;
}

// ---- the whole build --------------------------------------------------------------------------

static int parse_domains(const char *text, bool *selected, char *error, size_t error_size) {
    memset(selected, 0, BENCHMARK_DOMAIN_COUNT * sizeof(bool));
    if (!text || !*text || strcmp(text, "all") == 0) {
        for (int d = 0; d < BENCHMARK_DOMAIN_COUNT; d++) selected[d] = true;
        return 0;
    }
    char *copy = strdup(text);
    int status = 0, count = 0;
    char *at = copy;
    while (status == 0) {
        char *comma = strchr(at, ',');
        if (comma) *comma = 0;
        while (*at == ' ') at++;
        for (char *end = at + strlen(at); end > at && end[-1] == ' '; end--) end[-1] = 0;
        int d = strcmp(at, "all") == 0 ? -2 : benchmark_domain_from_name(at);
        if (d == -1) {
            snprintf(error, error_size, "--domains: unknown domain '%s' (expected a comma list of hand, print, lowres, photo, fashion, "
                                        "fashion-photo, world, or all)", at);
            status = -1;
        } else if (d == -2) {
            for (int k = 0; k < BENCHMARK_DOMAIN_COUNT; k++) selected[k] = true;
            count++;
        } else {
            selected[d] = true;
            count++;
        }
        if (!comma) break;
        at = comma + 1;
    }
    free(copy);
    return status;
}

int benchmark_check_sources(const BenchmarkOptions *options, char *error, size_t error_size) {
    bool selected[BENCHMARK_DOMAIN_COUNT];
    if (parse_domains(options->domains, selected, error, error_size) != 0) return -1;
    BenchSourcePaths paths;
    bench_source_paths_resolve(options, &paths);
    return bench_check_sources(&paths, selected, error, error_size);
}

static const char *font_class_name(FontClass c) {
    switch (c) {
    case FONT_SERIF: return "serif";
    case FONT_SANS: return "sans";
    case FONT_MONO: return "mono";
    default: return "handwriting";
    }
}

static void manifest_source(FILE *out, bool *first, const char *path, const char *package) {
    fprintf(out, "%s\n    {\"path\": \"", *first ? "" : ",");
    json_escaped(out, path);
    fprintf(out, "\", \"package\": \"%s\", \"bytes\": %lld}", package, (long long)file_size(path));
    *first = false;
}

static int write_manifest(const char *root, const BenchmarkOptions *options, const bool *selected, const BenchSourcePaths *paths,
                          const BenchSources *sources, const BenchmarkReport *report, char *error, size_t error_size) {
    char path[3400];
    snprintf(path, sizeof path, "%s/manifest.json", root);
    FILE *out = fopen(path, "w");
    if (!out) {
        snprintf(error, error_size, "%s: cannot create: %s", path, strerror(errno));
        return -1;
    }
    fprintf(out, "{\n  \"format\": \"tailor-benchmark-1\",\n  \"seed\": %llu,\n  \"reduced\": %s,\n  \"image_size\": %d,\n  \"channels\": 3,\n",
            (unsigned long long)options->seed, options->reduced ? "true" : "false", BENCH_S);
    fprintf(out, "  \"domains\": {");
    bool first_domain = true;
    for (int d = 0; d < BENCHMARK_DOMAIN_COUNT; d++) {
        if (!selected[d]) continue;
        const BenchmarkDomainInfo *info = &domain_infos[d];
        fprintf(out, "%s\n    \"%s\": {\n      \"description\": \"", first_domain ? "" : ",", info->name);
        json_escaped(out, info->summary);
        fprintf(out, "\",\n      \"classes\": [");
        for (int c = 0; c < info->class_count; c++) fprintf(out, "%s\"%s\"", c ? ", " : "", benchmark_class_folder(d, c));
        fprintf(out, "],\n");
        if (d == BENCHMARK_WORLD) {
            fprintf(out, "      \"categories\": [");
            for (int c = 0; c < info->class_count; c++) fprintf(out, "%s\"%s\"", c ? ", " : "", benchmark_world_category(c));
            fprintf(out, "],\n      \"list\": \"images.txt\",\n      \"captions\": \"captions.tsv\",\n");
        }
        fprintf(out, "      \"splits\": {");
        for (int split = 0; split < (info->has_test ? 2 : 1); split++) {
            fprintf(out, "%s\n        \"%s\": {\"total\": %lld, \"per_class\": [", split ? "," : "", split_folder(d, split),
                    (long long)report->totals[d][split]);
            for (int c = 0; c < info->class_count; c++) fprintf(out, "%s%lld", c ? ", " : "", (long long)report->counts[d][split][c]);
            fprintf(out, "]}");
        }
        fprintf(out, "\n      }\n    }");
        first_domain = false;
    }
    fprintf(out, "\n  },\n  \"sources\": [");
    bool first = true;
    if (selected[BENCHMARK_HAND] || selected[BENCHMARK_PHOTO]) manifest_source(out, &first, paths->digits_png, "opencv-doc");
    if (selected[BENCHMARK_LOWRES]) manifest_source(out, &first, paths->digits_csv, "python3-sklearn");
    if (selected[BENCHMARK_FASHION] || selected[BENCHMARK_FASHION_PHOTO] || selected[BENCHMARK_WORLD])
        for (int i = 0; i < 4; i++) {
            snprintf(path, sizeof path, "%s/%s", paths->fashion_dir, bench_fashion_files[i]);
            manifest_source(out, &first, path, "dataset-fashion-mnist");
        }
    if (selected[BENCHMARK_PHOTO] || selected[BENCHMARK_FASHION_PHOTO] || selected[BENCHMARK_WORLD])
        for (int i = 0; i < BENCH_PHOTO_COUNT; i++) {
            snprintf(path, sizeof path, "%s/%s", paths->opencv_dir, bench_photo_files[i]);
            manifest_source(out, &first, path, "opencv-doc");
        }
    fprintf(out, "\n  ]");
    if (sources->fonts_loaded) {
        const FontSet *fonts = &sources->fonts;
        fprintf(out, ",\n  \"fonts\": {\n    \"dirs\": \"");
        json_escaped(out, paths->fonts);
        fprintf(out, "\",\n    \"skipped\": {\"not_in_family_table\": %d, \"excluded\": %d, \"unreadable\": %d, \"missing_glyphs\": %d, "
                     "\"duplicate\": %d},\n    \"faces\": [",
                fonts->unknown_family, fonts->excluded, fonts->unreadable, fonts->missing_glyphs, fonts->duplicate);
        for (int i = 0; i < fonts->count; i++) {
            const BenchFont *font = &fonts->fonts[i];
            fprintf(out, "%s\n      {\"path\": \"", i ? "," : "");
            json_escaped(out, font->path);
            fprintf(out, "\", \"family\": \"");
            json_escaped(out, font->family);
            fprintf(out, "\", \"name\": \"");
            json_escaped(out, font->full_name);
            fprintf(out, "\", \"style\": \"%s\", \"bold\": %s, \"italic\": %s, \"bytes\": %lld}", font_class_name(font->font_class),
                    font->bold ? "true" : "false", font->italic ? "true" : "false", (long long)font->bytes);
        }
        fprintf(out, "\n    ]\n  }");
    }
    fprintf(out, "\n}\n");
    if (ferror(out) | (fclose(out) != 0)) {
        snprintf(error, error_size, "%s: cannot write: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

#define PARTIAL_MARKER ".tailor-partial"

int benchmark_build(const BenchmarkOptions *options_in, BenchmarkReport *report, char *error, size_t error_size) {
    BenchmarkOptions options = *options_in;
    BenchmarkReport local_report;
    if (!report) report = &local_report;
    memset(report, 0, sizeof *report);
    if (!options.out_dir) options.out_dir = "data/benchmark";
    bool selected[BENCHMARK_DOMAIN_COUNT];
    if (parse_domains(options.domains, selected, error, error_size) != 0) return -1;
    char out[3072], partial[3100], marker[3200], old[3200];
    snprintf(out, sizeof out, "%s", options.out_dir);
    for (size_t n = strlen(out); n > 1 && out[n - 1] == '/'; n--) out[n - 1] = 0;
    if (strlen(options.out_dir) >= 3000) {
        snprintf(error, error_size, "--out: path too long");
        return -1;
    }
    if (!out[0] || strcmp(out, "/") == 0 || strcmp(out, ".") == 0 || strcmp(out, "..") == 0) {
        snprintf(error, error_size, "--out '%s': give a directory to create", options.out_dir);
        return -1;
    }
    snprintf(partial, sizeof partial, "%s.partial", out);
    snprintf(marker, sizeof marker, "%s/" PARTIAL_MARKER, partial);

    BenchSourcePaths paths;
    bench_source_paths_resolve(&options, &paths);
    if (bench_check_sources(&paths, selected, error, error_size) != 0) return -1;
    if (exists(out)) {
        char manifest[4200];
        snprintf(manifest, sizeof manifest, "%s/manifest.json", out);
        if (!options.force) {
            snprintf(error, error_size, "%s already exists; pass --force to replace it", out);
            return -1;
        }
        if (!exists(manifest) && !is_empty_directory(out)) {
            snprintf(error, error_size, "%s exists and is not a benchmark (no manifest.json); not replacing it", out);
            return -1;
        }
    }
    if (exists(partial) && !exists(marker) && !is_empty_directory(partial)) {
        snprintf(error, error_size, "%s exists and was not made by tailor data build; remove it", partial);
        return -1;
    }

    // Sources are loaded (and checked) before anything is written.
    BenchSources sources;
    int status = bench_load_sources(&paths, selected, &sources, error, error_size);
    if (status == 0 && sources.fonts_loaded) {
        const FontSet *fonts = &sources.fonts;
        for (int i = 0; i < fonts->count; i++) {
            if (fonts->fonts[i].font_class == FONT_HANDWRITING) report->fonts_handwriting++;
            else report->fonts_print++;
        }
        report->font_families = fonts->family_count;
        report->fonts_unreadable = fonts->unreadable;
        report->fonts_missing_glyphs = fonts->missing_glyphs;
        report->fonts_unknown_family = fonts->unknown_family;
        report->fonts_excluded = fonts->excluded;
        report->fonts_duplicate = fonts->duplicate;
        if (options.summary)
            fprintf(options.summary,
                    "fonts: %d faces in %d families (%d print-style, %d handwriting-style); skipped %d not in the family table, "
                    "%d excluded (symbols, math, small caps), %d unreadable, %d without outlines for 0-9/A-Z/a-z, %d duplicates\n",
                    fonts->count, fonts->family_count, report->fonts_print, report->fonts_handwriting, fonts->unknown_family,
                    fonts->excluded, fonts->unreadable, fonts->missing_glyphs, fonts->duplicate);
    }
    // An interrupted build (it carries the marker) is removed; then OUT.partial with the marker.
    if (status == 0 && exists(partial) && remove_tree(partial) != 0) {
        snprintf(error, error_size, "%s: cannot remove the interrupted build: %s", partial, strerror(errno));
        status = -1;
    }
    if (status == 0 && fs_make_directories(partial) != 0) {
        snprintf(error, error_size, "%s: cannot create: %s", partial, strerror(errno));
        status = -1;
    }
    if (status == 0) {
        FILE *flag = fopen(marker, "w");
        if (!flag || fclose(flag) != 0) {
            snprintf(error, error_size, "%s: cannot create: %s", marker, strerror(errno));
            status = -1;
        }
    }
    for (int d = 0; status == 0 && d < BENCHMARK_DOMAIN_COUNT; d++) {
        if (!selected[d]) continue;
        status = build_domain(d, &sources, &options, partial, report, error, error_size);
        if (status == 0 && options.summary) {
            const BenchmarkDomainInfo *info = &domain_infos[d];
            if (info->has_test)
                fprintf(options.summary, "%s: %lld train + %lld test images, %d classes, %.1f s (%s/%s)\n", info->name,
                        (long long)report->totals[d][0], (long long)report->totals[d][1], info->class_count, report->seconds[d], out, info->name);
            else
                fprintf(options.summary, "%s: %lld captioned images, %d categories, %.1f s (%s/%s)\n", info->name,
                        (long long)report->totals[d][0], info->class_count, report->seconds[d], out, info->name);
        }
    }
    if (status == 0) status = write_manifest(partial, &options, selected, &paths, &sources, report, error, error_size);
    bench_free_sources(&sources);
    if (status != 0) return -1;

    // Complete: flush, drop the marker, and move into place.
    int fd = open(partial, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        syncfs(fd);
        close(fd);
    }
    remove(marker);
    if (exists(out)) {
        snprintf(old, sizeof old, "%s.old.%ld", out, (long)getpid());
        if (rename(out, old) != 0) {
            snprintf(error, error_size, "%s: cannot move aside: %s", out, strerror(errno));
            return -1;
        }
        if (rename(partial, out) != 0) {
            snprintf(error, error_size, "%s: cannot rename to %s: %s", partial, out, strerror(errno));
            rename(old, out);
            return -1;
        }
        remove_tree(old);
    } else if (rename(partial, out) != 0) {
        snprintf(error, error_size, "%s: cannot rename to %s: %s", partial, out, strerror(errno));
        return -1;
    }
    return 0;
}
