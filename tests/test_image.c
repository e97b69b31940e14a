// Tests data/image.h: PNG round trips, channel conversion, decoding of PGM/PPM/BMP (written here
// by hand) and JPEG/GIF (tiny files written once by PIL, stored as byte tensors in
// tests/golden/image_formats.safetensors), corrupt/truncated/missing inputs, and resizing against
// torchvision goldens (tests/golden/image_resize.safetensors from tests/ref/gen_image_goldens.py).
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/image.h"
#include "engine/safetensors.h"
#include "tests/check.h"

TEST_MAIN_COUNTERS;

static char tmp_dir[256];

static void tmp_path(char *out, size_t size, const char *name) {
    snprintf(out, size, "%s/%s", tmp_dir, name);
}

static void golden_path(char *out, size_t size, const char *name) {
    const char *root = getenv("TAILOR_ROOT");
    snprintf(out, size, "%s%stests/golden/%s", root && *root ? root : "", root && *root ? "/" : "",
             name);
}

static int write_file(const char *path, const void *data, size_t size) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t n = size ? fwrite(data, 1, size, f) : 0;
    return fclose(f) == 0 && n == size ? 0 : -1;
}

static uint8_t *read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *data = malloc(n > 0 ? (size_t)n : 1);
    *size = fread(data, 1, (size_t)n, f);
    fclose(f);
    return data;
}

static uint32_t rng_state = 12345;
static uint8_t rand8(void) {
    rng_state = rng_state * 1664525u + 1013904223u;
    return (uint8_t)(rng_state >> 24);
}

static Image random_image(int w, int h, int c) {
    Image im = {w, h, c, malloc((size_t)w * h * c)};
    for (size_t i = 0; i < (size_t)w * h * c; i++) im.pixels[i] = rand8();
    return im;
}

// A failure must be -1, an empty image, and one line that starts with "<name>: ".
static void check_error(int rc, const Image *im, const char *error, const char *name) {
    CHECK_MSG(rc == -1, "%s: rc %d", name, rc);
    CHECK(im->pixels == NULL && im->width == 0);
    CHECK_MSG(strncmp(error, name, strlen(name)) == 0 && strncmp(error + strlen(name), ": ", 2) == 0,
              "error does not name %s: %s", name, error);
    CHECK_MSG(strchr(error, '\n') == NULL && strlen(error) > strlen(name) + 2, "bad error: %s", error);
}

TEST(png_round_trip_is_bit_exact) {
    const int sizes[][2] = {{1, 1}, {7, 5}, {13, 2}, {2, 17}, {64, 33}};
    for (int c = 1; c <= 4; c++) {
        if (c == 2) continue;
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            Image im = random_image(sizes[s][0], sizes[s][1], c);
            char path[512], error[512] = "";
            tmp_path(path, sizeof path, "round.png");
            CHECK_MSG(image_save_png(path, &im, error, sizeof error) == 0, "%s", error);
            Image back;
            CHECK_MSG(image_load(path, 0, &back, error, sizeof error) == 0, "%s", error);
            CHECK(back.width == im.width && back.height == im.height && back.channels == c);
            if (back.pixels)
                CHECK_MSG(memcmp(back.pixels, im.pixels, (size_t)im.width * im.height * c) == 0,
                          "%dx%dx%d differs", im.width, im.height, c);
            image_free(&back);
            image_free(&im);
            CHECK(im.pixels == NULL);
        }
    }
    // no temporary file left behind; an invalid image and an unwritable path fail cleanly
    DIR *dir = opendir(tmp_dir);
    struct dirent *entry;
    while (dir && (entry = readdir(dir)))
        CHECK_MSG(strstr(entry->d_name, ".tmp.") == NULL, "leftover %s", entry->d_name);
    if (dir) closedir(dir);
    char error[512];
    Image bad = {3, 3, 2, (uint8_t *)"abcdefghijklmnopqr"};
    CHECK(image_save_png("/tmp/x.png", &bad, error, sizeof error) == -1);
    Image ok = random_image(2, 2, 3);
    int rc = image_save_png("/nonexistent-dir/x.png", &ok, error, sizeof error);
    CHECK(rc == -1 && strncmp(error, "/nonexistent-dir/x.png: ", 24) == 0);
    image_free(&ok);
    image_free(NULL);
}

TEST(channel_conversion_as_pil) {
    char path[512], error[512];
    tmp_path(path, sizeof path, "rgba.png");
    Image rgba = random_image(5, 3, 4);
    CHECK(image_save_png(path, &rgba, error, sizeof error) == 0);
    Image grey, rgb, four;
    CHECK(image_load(path, 1, &grey, error, sizeof error) == 0);
    CHECK(image_load(path, 3, &rgb, error, sizeof error) == 0);
    CHECK(image_load(path, 4, &four, error, sizeof error) == 0);
    CHECK(grey.channels == 1 && rgb.channels == 3 && four.channels == 4);
    for (int i = 0; i < 15 && grey.pixels && rgb.pixels; i++) {
        const uint8_t *p = rgba.pixels + i * 4;
        // PIL convert('L'): (R*19595 + G*38470 + B*7471 + 0x8000) >> 16, alpha ignored
        CHECK(grey.pixels[i] == ((p[0] * 19595 + p[1] * 38470 + p[2] * 7471 + 0x8000) >> 16));
        CHECK(memcmp(rgb.pixels + i * 3, p, 3) == 0);  // convert('RGB') drops alpha
    }
    if (four.pixels) CHECK(memcmp(four.pixels, rgba.pixels, 60) == 0);
    // grey file -> RGB replicates, -> RGBA adds alpha 255
    Image g1 = random_image(4, 4, 1), g3, g4;
    tmp_path(path, sizeof path, "grey.png");
    CHECK(image_save_png(path, &g1, error, sizeof error) == 0);
    CHECK(image_load(path, 3, &g3, error, sizeof error) == 0);
    CHECK(image_load(path, 4, &g4, error, sizeof error) == 0);
    for (int i = 0; i < 16 && g3.pixels && g4.pixels; i++) {
        uint8_t v = g1.pixels[i];
        CHECK(g3.pixels[i * 3] == v && g3.pixels[i * 3 + 1] == v && g3.pixels[i * 3 + 2] == v);
        CHECK(g4.pixels[i * 4] == v && g4.pixels[i * 4 + 2] == v && g4.pixels[i * 4 + 3] == 255);
    }
    Image none;
    CHECK(image_load(path, 2, &none, error, sizeof error) == -1 && none.pixels == NULL);
    image_free(&rgba), image_free(&grey), image_free(&rgb), image_free(&four);
    image_free(&g1), image_free(&g3), image_free(&g4);
}

TEST(decodes_pgm_ppm_bmp_written_by_hand) {
    char error[512];
    // PGM P5 3x2 and PPM P6 2x2
    const uint8_t pgm[] = "P5\n3 2\n255\n\x00\x10\x20\x80\xc0\xff";
    Image im;
    CHECK_MSG(image_decode_memory(pgm, sizeof pgm - 1, 0, &im, error, sizeof error) == 0, "%s", error);
    CHECK(im.width == 3 && im.height == 2 && im.channels == 1);
    if (im.pixels) CHECK(memcmp(im.pixels, "\x00\x10\x20\x80\xc0\xff", 6) == 0);
    image_free(&im);
    const uint8_t ppm[] = "P6\n# comment\n2 2\n255\n\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c";
    CHECK_MSG(image_decode_memory(ppm, sizeof ppm - 1, 0, &im, error, sizeof error) == 0, "%s", error);
    CHECK(im.width == 2 && im.height == 2 && im.channels == 3);
    if (im.pixels) CHECK(memcmp(im.pixels, "\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c", 12) == 0);
    image_free(&im);
    // 24-bit BMP 3x2, bottom-up rows of BGR padded to 4 bytes, through a file
    uint8_t bmp[54 + 2 * 12] = {0};
    const uint8_t rgb[2][3][3] = {{{255, 0, 0}, {0, 255, 0}, {0, 0, 255}},
                                  {{10, 20, 30}, {40, 50, 60}, {70, 80, 90}}};
    uint32_t file_size = sizeof bmp;
    bmp[0] = 'B', bmp[1] = 'M';
    memcpy(bmp + 2, &file_size, 4);
    bmp[10] = 54;               // pixel data offset
    bmp[14] = 40;               // BITMAPINFOHEADER
    bmp[18] = 3, bmp[22] = 2;   // width, height (positive: bottom-up)
    bmp[26] = 1, bmp[28] = 24;  // planes, bits per pixel
    for (int y = 0; y < 2; y++)
        for (int x = 0; x < 3; x++)
            for (int k = 0; k < 3; k++) bmp[54 + (1 - y) * 12 + x * 3 + k] = rgb[y][x][2 - k];
    char path[512];
    tmp_path(path, sizeof path, "hand.bmp");
    CHECK(write_file(path, bmp, sizeof bmp) == 0);
    CHECK_MSG(image_load(path, 0, &im, error, sizeof error) == 0, "%s", error);
    CHECK(im.width == 3 && im.height == 2 && im.channels == 3);
    if (im.pixels) CHECK(memcmp(im.pixels, rgb, 18) == 0);
    image_free(&im);
    // ASCII PNM is not supported by stb: a clean error
    const uint8_t p2[] = "P2\n2 1\n255\n1 2\n";
    check_error(image_decode_memory(p2, sizeof p2 - 1, 0, &im, error, sizeof error), &im, error,
                "<memory>");
}

// JPEG: stb's IDCT and PIL's libjpeg (islow) differ slightly, so up to 2 levels per channel;
// 4:4:4 so no chroma upsampling difference. GIF is palette data: exact.
TEST(decodes_jpeg_and_gif_as_pil) {
    char path[512], error[512];
    golden_path(path, sizeof path, "image_formats.safetensors");
    SafetensorsFile *file = NULL;
    CHECK_MSG(safetensors_open(path, &file, error, sizeof error) == 0, "%s", error);
    if (!file) return;
    const char *kinds[] = {"jpeg", "gif"};
    const int tolerance[] = {2, 0};
    for (int k = 0; k < 2; k++) {
        char name[64];
        snprintf(name, sizeof name, "%s/bytes", kinds[k]);
        const SafetensorsEntry *bytes = safetensors_find(file, name);
        snprintf(name, sizeof name, "%s/pixels", kinds[k]);
        const SafetensorsEntry *pixels = safetensors_find(file, name);
        CHECK(bytes && pixels && pixels->ndim == 3);
        if (!bytes || !pixels) continue;
        Image im;
        CHECK_MSG(image_decode_memory(bytes->data, bytes->nbytes, 3, &im, error, sizeof error) == 0,
                  "%s: %s", kinds[k], error);
        CHECK(im.height == pixels->shape[0] && im.width == pixels->shape[1] && im.channels == 3);
        if (!im.pixels || im.height != pixels->shape[0] || im.width != pixels->shape[1]) continue;
        const uint8_t *want = pixels->data;
        int max_diff = 0;
        for (size_t i = 0; i < pixels->nbytes; i++) {
            int d = abs((int)im.pixels[i] - (int)want[i]);
            if (d > max_diff) max_diff = d;
        }
        CHECK_MSG(max_diff <= tolerance[k], "%s: max diff %d > %d", kinds[k], max_diff, tolerance[k]);
        if (getenv("TEST_VERBOSE")) printf("     %s decode vs PIL: max abs diff %d\n", kinds[k], max_diff);
        image_free(&im);
    }
    safetensors_close(file);
}

TEST(corrupt_truncated_missing_files_fail_cleanly) {
    char path[512], error[512];
    Image im = random_image(9, 7, 3), out;
    tmp_path(path, sizeof path, "valid.png");
    CHECK(image_save_png(path, &im, error, sizeof error) == 0);
    image_free(&im);
    size_t size = 0;
    uint8_t *png = read_file(path, &size);
    CHECK(png && size > 60);
    // (a cut inside the final 12-byte IEND chunk is not detected: stb stops after the image data)
    if (!png) return;
    const size_t cuts[] = {1, 7, 8, 16, 30, 33, 40, size / 2, size - 13, size - 20};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        char cut[512];
        tmp_path(cut, sizeof cut, "cut.png");
        CHECK(write_file(cut, png, cuts[i]) == 0);
        int rc = image_load(cut, 0, &out, error, sizeof error);
        CHECK_MSG(rc == -1, "truncated at %zu of %zu accepted", cuts[i], size);
        check_error(rc, &out, error, cut);
        image_free(&out);
    }
    // a flipped byte inside the compressed data
    png[size / 2] ^= 0x5a;
    int rc = image_decode_memory(png, size, 0, &out, error, sizeof error);
    if (rc == 0) image_free(&out);  // zlib may or may not notice one flipped byte; must not crash
    free(png);
    // random bytes, with and without a PNG signature in front
    uint8_t junk[300];
    for (int round = 0; round < 20; round++) {
        for (size_t i = 0; i < sizeof junk; i++) junk[i] = rand8();
        if (round % 2) memcpy(junk, "\x89PNG\r\n\x1a\n", 8);
        tmp_path(path, sizeof path, "junk.png");
        CHECK(write_file(path, junk, sizeof junk) == 0);
        check_error(image_load(path, 0, &out, error, sizeof error), &out, error, path);
    }
    tmp_path(path, sizeof path, "empty.png");
    CHECK(write_file(path, "", 0) == 0);
    check_error(image_load(path, 0, &out, error, sizeof error), &out, error, path);
    tmp_path(path, sizeof path, "missing.png");
    check_error(image_load(path, 0, &out, error, sizeof error), &out, error, path);
    check_error(image_load(tmp_dir, 0, &out, error, sizeof error), &out, error, tmp_dir);
    // a PNG header that claims 100000 x 100000 pixels: refused as too large before decoding
    const uint8_t huge[] = "\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR\x00\x01\x86\xa0\x00\x01\x86\xa0"
                           "\x08\x02\x00\x00\x00\x00\x00\x00\x00";
    tmp_path(path, sizeof path, "huge.png");
    CHECK(write_file(path, huge, sizeof huge - 1) == 0);
    check_error(image_load(path, 0, &out, error, sizeof error), &out, error, path);
    CHECK_MSG(strstr(error, "too large") || strstr(error, "too big"), "%s", error);
    check_error(image_decode_memory(NULL, 0, 0, &out, error, sizeof error), &out, error, "<memory>");
}

// Resize vs torchvision.transforms.functional.resize on PIL images (Pillow 9.4). We follow PIL's
// Resample.c integer arithmetic (same double coefficients, same 22-bit fixed point, same rounding,
// horizontal pass then vertical with uint8 in between), so the tolerance is 0 levels; the only
// source of a 1-level difference would be a different libm/FPU rounding of the double-precision
// coefficients, which the same x86-64/aarch64 IEEE arithmetic does not produce.
TEST(resize_matches_torchvision) {
    char path[512], error[512];
    golden_path(path, sizeof path, "image_resize.safetensors");
    SafetensorsFile *file = NULL;
    CHECK_MSG(safetensors_open(path, &file, error, sizeof error) == 0, "%s", error);
    if (!file) return;
    const char *inputs[] = {"rgb", "grey", "rgba"};
    const char *filters[] = {"nearest", "bilinear", "bicubic"};
    const int sizes[][2] = {{5, 4}, {20, 17}, {6, 9}};
    int compared = 0;
    for (int f = 0; f < 3; f++) {
        int max_diff = 0;
        for (int i = 0; i < 3; i++) {
            const SafetensorsEntry *in_entry = safetensors_find(file, inputs[i]);
            CHECK(in_entry && in_entry->ndim == 3);
            if (!in_entry) continue;
            Image in = {(int)in_entry->shape[1], (int)in_entry->shape[0], (int)in_entry->shape[2],
                        malloc(in_entry->nbytes)};
            memcpy(in.pixels, in_entry->data, in_entry->nbytes);
            for (int s = 0; s < 3; s++) {
                char name[64];
                snprintf(name, sizeof name, "%s/%s/%dx%d", inputs[i], filters[f], sizes[s][0],
                         sizes[s][1]);
                const SafetensorsEntry *want = safetensors_find(file, name);
                CHECK_MSG(want != NULL, "missing %s", name);
                if (!want) continue;
                Image out;
                CHECK_MSG(image_resize(&in, sizes[s][0], sizes[s][1], (ResizeFilter)f, &out, error,
                                       sizeof error) == 0, "%s", error);
                if (!out.pixels) continue;
                CHECK(out.width == sizes[s][0] && out.height == sizes[s][1] &&
                      out.channels == in.channels && want->nbytes == (size_t)out.width * out.height * out.channels);
                const uint8_t *w = want->data;
                int case_diff = 0;
                for (size_t k = 0; k < want->nbytes; k++) {
                    int d = abs((int)out.pixels[k] - (int)w[k]);
                    if (d > case_diff) case_diff = d;
                }
                CHECK_MSG(case_diff == 0, "%s: max abs diff %d", name, case_diff);
                if (case_diff > max_diff) max_diff = case_diff;
                compared++;
                image_free(&out);
            }
            image_free(&in);
        }
        if (getenv("TEST_VERBOSE")) printf("     resize %s vs torchvision: max abs diff %d\n", filters[f], max_diff);
    }
    CHECK(compared == 27);
    safetensors_close(file);
    // same size is a copy; bad arguments fail with one line
    Image in = random_image(4, 3, 3), out;
    CHECK(image_resize(&in, 4, 3, RESIZE_BICUBIC, &out, error, sizeof error) == 0);
    if (out.pixels) CHECK(memcmp(out.pixels, in.pixels, 36) == 0);
    image_free(&out);
    CHECK(image_resize(&in, 0, 3, RESIZE_BILINEAR, &out, error, sizeof error) == -1 && !out.pixels);
    CHECK(image_resize(&in, 3, 3, (ResizeFilter)7, &out, error, sizeof error) == -1);
    image_free(&in);
}

static void remove_tmp_dir(void) {
    DIR *dir = opendir(tmp_dir);
    struct dirent *entry;
    char path[512];
    while (dir && (entry = readdir(dir))) {
        if (!strcmp(entry->d_name, ".") || !strcmp(entry->d_name, "..")) continue;
        tmp_path(path, sizeof path, entry->d_name);
        unlink(path);
    }
    if (dir) closedir(dir);
    rmdir(tmp_dir);
}

int main(void) {
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/tailor_test_image_XXXXXX");
    if (!mkdtemp(tmp_dir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN_TEST(png_round_trip_is_bit_exact);
    RUN_TEST(channel_conversion_as_pil);
    RUN_TEST(decodes_pgm_ppm_bmp_written_by_hand);
    RUN_TEST(decodes_jpeg_and_gif_as_pil);
    RUN_TEST(corrupt_truncated_missing_files_fail_cleanly);
    RUN_TEST(resize_matches_torchvision);
    remove_tmp_dir();
    return test_summary();
}
