// The benchmark's sources: OpenCV's digits.png and sample photographs (opencv-doc), scikit-learn's
// digits.csv.gz (from the python3-sklearn .deb, unpacked by scripts/get_data_sources.sh),
// Fashion-MNIST (dataset-fashion-mnist) and the fonts. Loading, checking, and photo crops.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "data/benchmark_internal.h"
#include "data/idx.h"

// Natural photographs of OpenCV's samples/data (logos, charts, text, chessboards, renders, paintings
// and greyscale pictures left out), for MNIST-M style backgrounds.
const char *const bench_photo_files[BENCH_PHOTO_COUNT] = {
    "aero1.jpg",  "aero3.jpg",  "aloeL.jpg",    "apple.jpg",    "baboon.jpg",  "board.jpg",
    "building.jpg", "butterfly.jpg", "chicky_512.png", "fruits.jpg", "graf1.png", "home.jpg",
    "leuvenA.jpg", "messi5.jpg", "orange.jpg",  "rubberwhale1.png", "squirrel_cls.jpg", "stuff.jpg",
};

const char *const bench_fashion_files[4] = {
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
};

static const char *const fix = "run: sh scripts/get_data_sources.sh";

static bool is_file(const char *path, int64_t *size) {
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return false;
    if (size) *size = st.st_size;
    return true;
}

void bench_source_paths_resolve(const BenchmarkOptions *options, BenchSourcePaths *paths) {
    memset(paths, 0, sizeof *paths);
    snprintf(paths->opencv_dir, sizeof paths->opencv_dir, "%s",
             options->opencv_data_dir ? options->opencv_data_dir : "/usr/share/doc/opencv-doc/examples/data");
    snprintf(paths->fashion_dir, sizeof paths->fashion_dir, "%s",
             options->fashion_dir ? options->fashion_dir : "/usr/share/datasets/fashion-mnist");
    snprintf(paths->fonts, sizeof paths->fonts, "%s",
             options->fonts_dirs ? options->fonts_dirs : "/usr/share/fonts:/usr/share/texmf/fonts/opentype");
    if (options->sources_dir) snprintf(paths->sources_dir, sizeof paths->sources_dir, "%s", options->sources_dir);
    else if (getenv("TAILOR_DATA_SOURCES") && *getenv("TAILOR_DATA_SOURCES"))
        snprintf(paths->sources_dir, sizeof paths->sources_dir, "%s", getenv("TAILOR_DATA_SOURCES"));
    else snprintf(paths->sources_dir, sizeof paths->sources_dir, "%s/.cache/tailor/sources", getenv("HOME") ? getenv("HOME") : ".");
    snprintf(paths->digits_png, sizeof paths->digits_png, "%s/digits.png", paths->opencv_dir);
    snprintf(paths->digits_csv, sizeof paths->digits_csv, "%s/digits.csv.gz", paths->sources_dir);
    // An installed python3-sklearn has the same file; used when the cache has none and no
    // --sources was given.
    const char *installed = "/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz";
    if (!options->sources_dir && !is_file(paths->digits_csv, NULL) && is_file(installed, NULL))
        snprintf(paths->digits_csv, sizeof paths->digits_csv, "%s", installed);
}

static int missing(const char *path, const char *package, const char *note, char *error, size_t error_size) {
    snprintf(error, error_size, "missing %s (Debian package %s%s); %s", path, package, note, fix);
    return -1;
}

int bench_check_sources(const BenchSourcePaths *paths, const bool *domains, char *error, size_t error_size) {
    bool need_digits = domains[BENCHMARK_HAND] || domains[BENCHMARK_PHOTO];
    bool need_photos = domains[BENCHMARK_PHOTO] || domains[BENCHMARK_FASHION_PHOTO] || domains[BENCHMARK_WORLD];
    bool need_fashion = domains[BENCHMARK_FASHION] || domains[BENCHMARK_FASHION_PHOTO] || domains[BENCHMARK_WORLD];
    if (need_digits && !is_file(paths->digits_png, NULL)) return missing(paths->digits_png, "opencv-doc", "", error, error_size);
    for (int i = 0; need_photos && i < BENCH_PHOTO_COUNT; i++) {
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", paths->opencv_dir, bench_photo_files[i]);
        if (!is_file(path, NULL)) return missing(path, "opencv-doc", "", error, error_size);
    }
    if (domains[BENCHMARK_LOWRES] && !is_file(paths->digits_csv, NULL))
        return missing(paths->digits_csv, "python3-sklearn", ", unpacked into the cache without installing it", error, error_size);
    for (int i = 0; need_fashion && i < 4; i++) {
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", paths->fashion_dir, bench_fashion_files[i]);
        if (!is_file(path, NULL)) return missing(path, "dataset-fashion-mnist", "", error, error_size);
    }
    return 0;
}

static int missing_fonts(const char *dirs, const char *kind, const char *packages, char *error, size_t error_size) {
    snprintf(error, error_size, "missing %s fonts: none under %s (Debian packages %s); %s", kind, dirs, packages, fix);
    return -1;
}

// ---- loading ----------------------------------------------------------------------------------

static int load_hand(const char *path, BenchSources *sources, char *error, size_t error_size) {
    Image image;
    if (image_load(path, 1, &image, error, error_size) != 0) return -1;
    if (image.width != 2000 || image.height != 1000) {
        snprintf(error, error_size, "%s: expected 2000x1000 pixels (50 rows x 100 columns of 20x20 digits), got %dx%d", path,
                 image.width, image.height);
        image_free(&image);
        return -1;
    }
    // Cell (row r, column c) = digit r * 100 + c; rows 5k .. 5k+4 hold class k.
    sources->hand = malloc((size_t)BENCH_HAND_COUNT * 400);
    for (int r = 0; r < 50; r++)
        for (int c = 0; c < 100; c++)
            for (int y = 0; y < 20; y++)
                memcpy(sources->hand + (size_t)(r * 100 + c) * 400 + y * 20, image.pixels + (size_t)(r * 20 + y) * 2000 + c * 20, 20);
    image_free(&image);
    return 0;
}

// scikit-learn's digits.csv.gz: 1797 lines of 64 pixel levels 0..16 and the label, comma-separated.
static int load_lowres(const char *path, BenchSources *sources, char *error, size_t error_size) {
    gzFile file = gzopen(path, "rb");
    if (!file) {
        snprintf(error, error_size, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    int capacity = 2048;
    sources->lowres = malloc((size_t)capacity * 64);
    sources->lowres_labels = malloc((size_t)capacity);
    char line[1024];
    int count = 0, line_number = 0, status = 0;
    while (gzgets(file, line, sizeof line)) {
        line_number++;
        char *at = line;
        while (*at == ' ' || *at == '\t') at++;
        if (*at == '\n' || *at == '\r' || *at == 0) continue;
        if (count == capacity) {
            snprintf(error, error_size, "%s:%d: more than %d rows", path, line_number, capacity);
            status = -1;
            break;
        }
        int values[65], n = 0;
        while (n < 65) {
            char *end;
            double v = strtod(at, &end);
            if (end == at || v != (int)v || v < 0 || (n < 64 && v > 16) || (n == 64 && v > 9)) break;
            values[n++] = (int)v;
            at = end;
            while (*at == ' ') at++;
            if (*at == ',') at++;
            else break;
        }
        while (*at == ' ' || *at == '\r' || *at == '\n') at++;
        if (n != 65 || *at) {
            snprintf(error, error_size, "%s:%d: expected 64 pixel levels 0..16 and a label 0..9, comma-separated", path, line_number);
            status = -1;
            break;
        }
        for (int i = 0; i < 64; i++) sources->lowres[(size_t)count * 64 + i] = (uint8_t)values[i];
        sources->lowres_labels[count++] = (uint8_t)values[64];
    }
    int gz_error = 0;
    const char *message = gzerror(file, &gz_error);
    if (status == 0 && gz_error != Z_OK && gz_error != Z_STREAM_END) {
        snprintf(error, error_size, "%s: %s", path, message);
        status = -1;
    }
    gzclose(file);
    if (status == 0 && count < 100) {
        snprintf(error, error_size, "%s: only %d rows (expected 1797)", path, count);
        status = -1;
    }
    sources->lowres_count = count;
    return status;
}

static int load_fashion_pair(const char *dir, const char *images_name, const char *labels_name, uint8_t **images, uint8_t **labels,
                             int *count, char *error, size_t error_size) {
    char path[2048];
    IdxArray x = {0}, y = {0};
    snprintf(path, sizeof path, "%s/%s", dir, images_name);
    if (idx_load(path, &x, error, error_size) != 0) return -1;
    if (x.type != IDX_U8 || x.ndim != 3 || x.dims[1] != 28 || x.dims[2] != 28) {
        snprintf(error, error_size, "%s: expected u8 images N x 28 x 28", path);
        idx_free(&x);
        return -1;
    }
    snprintf(path, sizeof path, "%s/%s", dir, labels_name);
    if (idx_load(path, &y, error, error_size) != 0) {
        idx_free(&x);
        return -1;
    }
    if (y.type != IDX_U8 || y.ndim != 1 || y.dims[0] != x.dims[0]) {
        snprintf(error, error_size, "%s: expected %lld u8 labels", path, (long long)x.dims[0]);
        idx_free(&x);
        idx_free(&y);
        return -1;
    }
    for (int64_t i = 0; i < y.dims[0]; i++)
        if (((uint8_t *)y.data)[i] > 9) {
            snprintf(error, error_size, "%s: label %d of sample %lld is not 0..9", path, ((uint8_t *)y.data)[i], (long long)i);
            idx_free(&x);
            idx_free(&y);
            return -1;
        }
    *count = (int)x.dims[0];
    *images = x.data;
    *labels = y.data;
    return 0;
}

int bench_load_sources(const BenchSourcePaths *paths, const bool *domains, BenchSources *sources, char *error, size_t error_size) {
    memset(sources, 0, sizeof *sources);
    bool need_photos = domains[BENCHMARK_PHOTO] || domains[BENCHMARK_FASHION_PHOTO] || domains[BENCHMARK_WORLD];
    bool need_fashion = domains[BENCHMARK_FASHION] || domains[BENCHMARK_FASHION_PHOTO] || domains[BENCHMARK_WORLD];
    if ((domains[BENCHMARK_HAND] || domains[BENCHMARK_PHOTO]) && load_hand(paths->digits_png, sources, error, error_size) != 0) return -1;
    if (domains[BENCHMARK_LOWRES] && load_lowres(paths->digits_csv, sources, error, error_size) != 0) return -1;
    if (need_fashion) {
        if (load_fashion_pair(paths->fashion_dir, bench_fashion_files[0], bench_fashion_files[1], &sources->fashion_train,
                              &sources->fashion_train_labels, &sources->fashion_train_count, error, error_size) != 0)
            return -1;
        if (load_fashion_pair(paths->fashion_dir, bench_fashion_files[2], bench_fashion_files[3], &sources->fashion_test,
                              &sources->fashion_test_labels, &sources->fashion_test_count, error, error_size) != 0)
            return -1;
    }
    if (need_photos) {
        sources->photos = calloc(BENCH_PHOTO_COUNT, sizeof(Image));
        for (int i = 0; i < BENCH_PHOTO_COUNT; i++) {
            char path[2048];
            snprintf(path, sizeof path, "%s/%s", paths->opencv_dir, bench_photo_files[i]);
            if (image_load(path, 3, &sources->photos[i], error, error_size) != 0) return -1;
            sources->photo_count++;
            if (sources->photos[i].width < 128 || sources->photos[i].height < 128) {
                snprintf(error, error_size, "%s: smaller than 128x128 pixels", path);
                return -1;
            }
        }
    }
    if (domains[BENCHMARK_PRINT] || domains[BENCHMARK_WORLD]) {
        if (font_set_load(paths->fonts, &sources->fonts, error, error_size) != 0) {
            snprintf(error, error_size, "no font directory in --fonts %s (Debian packages fonts-dejavu-core and the other "
                     "fonts of scripts/get_data_sources.sh); %s", paths->fonts, fix);
            return -1;
        }
        sources->fonts_loaded = true;
        int print = 0, hand = 0;
        for (int f = 0; f < sources->fonts.family_count; f++) {
            if (sources->fonts.families[f].font_class == FONT_HANDWRITING) hand++;
            else print++;
        }
        if (print == 0)
            return missing_fonts(paths->fonts, "print-style", "fonts-dejavu-core, fonts-liberation2, ...", error, error_size);
        if (domains[BENCHMARK_WORLD] && hand == 0)
            return missing_fonts(paths->fonts, "handwriting-style", "fonts-kristi, fonts-dkg-handwriting, ...", error, error_size);
    }
    return 0;
}

void bench_free_sources(BenchSources *sources) {
    free(sources->hand);
    free(sources->lowres);
    free(sources->lowres_labels);
    free(sources->fashion_train);
    free(sources->fashion_train_labels);
    free(sources->fashion_test);
    free(sources->fashion_test_labels);
    for (int i = 0; i < sources->photo_count; i++) image_free(&sources->photos[i]);
    free(sources->photos);
    if (sources->fonts_loaded) font_set_free(&sources->fonts);
    memset(sources, 0, sizeof *sources);
}

// A square crop of side 32..96 pixels at a random place of a random photo, resized to 32x32 with
// PIL's antialiased bilinear filter. Four draws.
void bench_photo_crop(const BenchSources *sources, Rng *rng, uint8_t *out) {
    const Image *photo = &sources->photos[bench_int(rng, sources->photo_count)];
    int side = 32 + bench_int(rng, 65);
    int x0 = bench_int(rng, photo->width - side + 1), y0 = bench_int(rng, photo->height - side + 1);
    Image crop = {side, side, 3, malloc((size_t)side * side * 3)}, small = {0};
    for (int y = 0; y < side; y++) memcpy(crop.pixels + (size_t)y * side * 3, photo->pixels + ((size_t)(y0 + y) * photo->width + x0) * 3, (size_t)side * 3);
    char error[256];
    if (image_resize(&crop, BENCH_S, BENCH_S, RESIZE_BILINEAR, &small, error, sizeof error) == 0) {
        memcpy(out, small.pixels, BENCH_S * BENCH_S * 3);
        image_free(&small);
    } else {
        memset(out, 0, BENCH_S * BENCH_S * 3);
    }
    free(crop.pixels);
}
