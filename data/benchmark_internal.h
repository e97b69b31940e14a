// Internals of the benchmark builder (data/benchmark.h), shared by data/benchmark*.c and
// data/font_render.c. Not a public API.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "data/benchmark.h"
#include "data/image.h"
#include "engine/rng.h"

#define BENCH_S BENCHMARK_IMAGE_SIZE

// ---- fonts (data/font_render.c) -------------------------------------------------------------

typedef enum { FONT_SERIF, FONT_SANS, FONT_MONO, FONT_HANDWRITING } FontClass;

typedef struct {
    char *path;
    char *family;       // the family-table entry it matched ("DejaVu Serif", "Kristi", ...)
    char *full_name;    // family + subfamily from the font's name table
    int64_t bytes;      // file size
    FontClass font_class;
    bool bold, italic;  // from the font: OS/2 weight class >= 600 / fsSelection or head.macStyle
    int family_index;   // index into FontSet.families
    float cap_height;   // height of 'H' in font units
    void *impl;         // file bytes and the stb_truetype state
} BenchFont;

typedef struct {
    char *name;
    FontClass font_class;
    int *faces;  // indices into FontSet.fonts
    int face_count;
} FontFamily;

typedef struct {
    BenchFont *fonts;
    int count;
    FontFamily *families;
    int family_count;
    int unreadable, missing_glyphs, unknown_family, excluded, duplicate;
} FontSet;

// Scans the ':'-separated directories (recursively, sorted, .ttf/.otf) and keeps the faces whose
// family is in the built-in family table (which says serif / sans / mono / handwriting-style or
// excluded: symbol, math, small-caps and initials fonts), that stb_truetype loads and that have
// outlines for 0-9, A-Z and a-z; a face whose family+subfamily was already seen is a duplicate.
// Fails only when no directory can be read.
int font_set_load(const char *dirs, FontSet *set, char *error, size_t error_size);
void font_set_free(FontSet *set);

typedef struct {
    float size;       // fit: max(width, height) of the glyph's box; cap: height of 'H'; pixels
    bool cap_fit;     // scale by the font's cap height (keeps lowercase smaller than capitals)
    float angle;      // rotation in degrees, counter-clockwise
    float dx, dy;     // offset of the glyph box centre from the image centre, pixels
    float thicken;    // stroke dilation radius in pixels (0..1.5)
} GlyphPlacement;

// Renders a codepoint as 32x32 coverage (0 = none, 255 = ink), antialiased (4x4 supersampling).
// The glyph is kept inside the image with a 1-pixel margin (shifted, or shrunk if too big).
// -1 if the font has no outline for it.
int font_render_glyph(const BenchFont *font, int codepoint, const GlyphPlacement *placement, uint8_t *coverage);

// ---- sources (data/benchmark_sources.c) -------------------------------------------------------

typedef struct {
    char opencv_dir[1024], fashion_dir[1024], fonts[2048], sources_dir[1024];
    char digits_png[1100], digits_csv[1100];
} BenchSourcePaths;

typedef struct {
    uint8_t *hand;          // 5000 x 20 x 20; digit r * 100 + c is the cell at row r, column c; class = r / 5
    uint8_t *lowres;        // lowres_count x 8 x 8, levels 0..16
    uint8_t *lowres_labels;
    int lowres_count;
    uint8_t *fashion_train, *fashion_train_labels;  // 60000 x 28 x 28
    uint8_t *fashion_test, *fashion_test_labels;    // 10000 x 28 x 28
    int fashion_train_count, fashion_test_count;
    Image *photos;          // RGB
    int photo_count;
    FontSet fonts;
    bool fonts_loaded;
} BenchSources;

#define BENCH_HAND_COUNT 5000
#define BENCH_PHOTO_COUNT 18
extern const char *const bench_photo_files[BENCH_PHOTO_COUNT];
extern const char *const bench_fashion_files[4];

// Paths from the options and their defaults ($TAILOR_DATA_SOURCES, ~/.cache/tailor/sources).
void bench_source_paths_resolve(const BenchmarkOptions *options, BenchSourcePaths *paths);
// For the selected domains (domains[d]): every file present, else one line naming the missing
// file, its Debian package and scripts/get_data_sources.sh.
int bench_check_sources(const BenchSourcePaths *paths, const bool *domains, char *error, size_t error_size);
int bench_load_sources(const BenchSourcePaths *paths, const bool *domains, BenchSources *sources, char *error, size_t error_size);
void bench_free_sources(BenchSources *sources);

// A random crop of a photo, resized to 32x32 RGB (out: 32*32*3). Four draws of rng.
void bench_photo_crop(const BenchSources *sources, Rng *rng, uint8_t *out);

// ---- jobs (data/benchmark.c) and the world corpus (data/benchmark_world.c) ----------------------

// One image to write: OUT/<domain>/<split>/<class folder>/<index>.png (world: images/...).
typedef struct {
    uint8_t split;     // 0 train (world: its one set), 1 test
    uint8_t label;
    int32_t index;     // within (split, label): the file name
    int32_t source;    // row of the source (hand cell, lowres row, Fashion-MNIST row), or -1
    int32_t grid;      // slot in grid.png, or -1
    char *caption;     // world: set by the renderer (malloc'd)
} BenchJob;

// The Philox stream of one sample: fixed by (domain, split, label, index).
static inline uint64_t bench_sample_stream(int domain, int split, int label, int index) {
    return ((uint64_t)(domain + 1) << 56) | ((uint64_t)split << 52) | ((uint64_t)label << 32) | (uint32_t)index;
}
// The stream of a domain's split draws for one class (or another per-class purpose).
static inline uint64_t bench_split_stream(int domain, int purpose) {
    return ((uint64_t)(domain + 1) << 56) | ((uint64_t)0xF << 52) | ((uint64_t)(uint32_t)purpose << 32);
}

const char *bench_world_folder(int c);
// World category c (glyph categories 0..61 or clothing 62..71) into rgb, with its caption.
// Fashion categories use job->source, a Fashion-MNIST train row.
void bench_render_world(const BenchSources *sources, const BenchJob *job, Rng *rng, uint8_t *rgb, char *caption, size_t caption_size);
// Print-domain digit: a print-style face, white on black.
void bench_render_print(const BenchSources *sources, int digit, Rng *rng, uint8_t *rgb);
// MNIST-M: out = |crop - grey| per channel, grey 0..255 (32x32).
void bench_blend_photo(const BenchSources *sources, const uint8_t *grey, Rng *rng, uint8_t *rgb);

// grid.png as an indexed PNG (data/benchmark_png.c): exact with <= 256 colours, else median cut.
int bench_write_grid_png(const char *path, const uint8_t *rgb, int width, int height, char *error, size_t error_size);

// ---- small helpers ----------------------------------------------------------------------------

// Uniform float in [lo, hi) and integer in [0, n), each one draw of rng.
static inline float bench_uniform(Rng *rng, float lo, float hi) { return lo + (hi - lo) * rng_uniform(rng); }
static inline int bench_int(Rng *rng, int n) { return (int)rng_int(rng, n); }
