// The built-in multi-domain benchmark: real data from Debian packages, written as PNG ImageFolders
// plus tllib image lists, 32x32 RGB, fixed seeded train/test splits (docs/DATA.md describes every
// domain, its source package, how it is made and its counts).
//
// Domains (classes in label order):
//   hand           the 5000 handwritten 20x20 digits of OpenCV's samples/data/digits.png (opencv-doc)
//   print          digits rendered with stb_truetype from the print-style fonts under the font dirs
//   lowres         the 1797 8x8 optdigits of scikit-learn's digits.csv.gz (python3-sklearn's .deb)
//   photo          hand digits blended onto crops of OpenCV's sample photographs (MNIST-M's recipe)
//   fashion        Fashion-MNIST (dataset-fashion-mnist), 28x28 padded to 32x32
//   fashion-photo  the fashion images blended onto photo crops
//   world          a captioned corpus (digits and letters from every font family, handwriting-style
//                  ones included, and Fashion-MNIST train images) for a small text-to-image model;
//                  never holds a hand image or a Fashion-MNIST test image
//
// Layout under OUT: <domain>/{train,test}/<class folder>/<NNNNN>.png, <domain>/train.txt and
// test.txt ("<path relative to OUT/<domain>> <label>"), <domain>/grid.png; world/images/<category
// folder>/<NNNNN>.png, world/images.txt (an image list) and world/captions.tsv ("<path>\t<category>\t
// <caption>"); OUT/manifest.json. The build writes OUT.partial and renames it to OUT at the end.
//
// Determinism: every random draw comes from Philox (engine/rng.h) keyed by the seed and a stream
// fixed per domain, split and sample, so the files are a pure function of (seed, sources, fonts),
// whatever the number of threads and whichever other domains are built.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum {
    BENCHMARK_HAND,
    BENCHMARK_PRINT,
    BENCHMARK_LOWRES,
    BENCHMARK_PHOTO,
    BENCHMARK_FASHION,
    BENCHMARK_FASHION_PHOTO,
    BENCHMARK_WORLD,
    BENCHMARK_DOMAIN_COUNT
};

#define BENCHMARK_IMAGE_SIZE 32
#define BENCHMARK_MAX_CLASSES 72
// The world corpus's categories: digits 0-9, capital letters A-Z, lowercase letters a-z, the ten
// Fashion-MNIST classes.
#define BENCHMARK_WORLD_CATEGORIES 72

typedef struct {
    const char *name;             // "hand", "print", ...
    int class_count;
    bool has_test;                // false for world (one captioned set)
    const char *summary;          // one line: source and construction
} BenchmarkDomainInfo;

const BenchmarkDomainInfo *benchmark_domain_info(int domain);
// -1 when unknown.
int benchmark_domain_from_name(const char *name);
// Images per class a build writes for (domain, split 0 = train / world's images, 1 = test, class):
// full build: hand and photo 400 / 100, print 500 / 100, lowres the rest of the class / 50 (-1
// here: the train count depends on the source), fashion and fashion-photo 1000 / 1000, world 1000
// per digit, 250 per letter, 1000 per clothing class; --reduced: 20 / 10 everywhere, world 10.
int64_t benchmark_planned_count(int domain, bool reduced, int split, int c);
// Folder name of class c (sorted order = label order): "0".."9" for digits, "0-tshirt" .. for
// fashion, "00-digit-0" .. "71-fashion-ankle-boot" for world.
const char *benchmark_class_folder(int domain, int c);
// World category c as captions name it: "digit seven", "capital letter A", "lowercase letter a",
// "sneaker", ... (every caption of the category contains this text).
const char *benchmark_world_category(int c);

typedef struct {
    const char *out_dir;          // default "data/benchmark"
    uint64_t seed;                // default 0
    const char *domains;          // comma list; NULL or "" = all
    bool reduced;                 // the small CI version (docs/DATA.md)
    bool force;                   // replace an existing benchmark at out_dir
    const char *sources_dir;      // digits.csv.gz cache; NULL: $TAILOR_DATA_SOURCES or ~/.cache/tailor/sources
    const char *opencv_data_dir;  // default /usr/share/doc/opencv-doc/examples/data
    const char *fashion_dir;      // default /usr/share/datasets/fashion-mnist
    const char *fonts_dirs;       // ':'-separated; default /usr/share/fonts:/usr/share/texmf/fonts/opentype
    // Progress of each domain, called on the calling thread: done = 0 at the start, then now and
    // then, and done = total at the end. NULL: none.
    void (*progress)(void *user, int domain, int64_t done, int64_t total);
    void *progress_user;
    FILE *summary;                // one summary line per domain (and one for fonts); NULL: none
} BenchmarkOptions;

void benchmark_options_default(BenchmarkOptions *options);

typedef struct {
    bool built[BENCHMARK_DOMAIN_COUNT];
    // Images written per domain, split (0 train / world's images, 1 test) and class.
    int64_t counts[BENCHMARK_DOMAIN_COUNT][2][BENCHMARK_MAX_CLASSES];
    int64_t totals[BENCHMARK_DOMAIN_COUNT][2];
    double seconds[BENCHMARK_DOMAIN_COUNT];
    // Fonts: usable print-style and handwriting-style faces, and the files skipped.
    int fonts_print, fonts_handwriting, font_families;
    int fonts_unreadable, fonts_missing_glyphs, fonts_unknown_family, fonts_excluded, fonts_duplicate;
} BenchmarkReport;

// Builds the benchmark. 0 on success; -1 with one line in `error` (no "error: " prefix) for every
// user error (a missing source names the file, its Debian package and scripts/get_data_sources.sh;
// an existing out_dir without force; an unknown domain) and for IO failures. On failure nothing
// is left at out_dir that looks complete: only out_dir.partial may remain.
int benchmark_build(const BenchmarkOptions *options, BenchmarkReport *report, char *error, size_t error_size);

// Checks that the sources the given domains need are present (same messages as benchmark_build).
int benchmark_check_sources(const BenchmarkOptions *options, char *error, size_t error_size);
