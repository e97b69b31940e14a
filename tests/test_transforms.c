// Tests data/transforms.h: every functional transform and every FixMatch RandAugment op against
// goldens from torchvision 0.14 / Pillow 9.4 (tests/golden/transforms.safetensors, written by
// tests/ref/gen_transform_goldens.py, whose docstring names each case), the random transforms'
// determinism, ranges and frequencies, and the pipeline parser's round trip and error messages.
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/transforms.h"
#include "engine/safetensors.h"
#include "tests/check.h"

TEST_MAIN_COUNTERS;

static void golden_path(char *out, size_t size, const char *name) {
    const char *root = getenv("TAILOR_ROOT");
    snprintf(out, size, "%s%stests/golden/%s", root && *root ? root : "", root && *root ? "/" : "",
             name);
}

static SafetensorsFile *open_goldens(void) {
    char path[512], error[512];
    golden_path(path, sizeof path, "transforms.safetensors");
    SafetensorsFile *file = NULL;
    CHECK_MSG(safetensors_open(path, &file, error, sizeof error) == 0, "%s", error);
    return file;
}

// An Image view of a golden u8 HWC tensor (pixels copied, so the image owns them).
static Image image_from_entry(const SafetensorsEntry *entry) {
    Image im = {(int)entry->shape[1], (int)entry->shape[0], (int)entry->shape[2], malloc(entry->nbytes)};
    memcpy(im.pixels, entry->data, entry->nbytes);
    return im;
}

static bool load_input(SafetensorsFile *file, const char *name, Image *out) {
    char key[64];
    snprintf(key, sizeof key, "input/%s", name);
    const SafetensorsEntry *entry = safetensors_find(file, key);
    CHECK_MSG(entry && entry->dtype == DTYPE_U8 && entry->ndim == 3, "missing input %s", key);
    if (!entry) return false;
    *out = image_from_entry(entry);
    return true;
}

static uint32_t lcg_state = 777;
static uint8_t rand8(void) {
    lcg_state = lcg_state * 1664525u + 1013904223u;
    return (uint8_t)(lcg_state >> 24);
}

static Image random_image(int w, int h, int c) {
    Image im = {w, h, c, malloc((size_t)w * h * c)};
    for (size_t i = 0; i < (size_t)w * h * c; i++) im.pixels[i] = rand8();
    return im;
}

static bool same_image(const Image *a, const Image *b) {
    return a->width == b->width && a->height == b->height && a->channels == b->channels &&
           memcmp(a->pixels, b->pixels, (size_t)a->width * a->height * a->channels) == 0;
}

// Largest |a - b| over the pixels, or 256 when the shapes differ.
static int max_abs_diff(const Image *got, const SafetensorsEntry *want) {
    if (want->ndim != 3 || got->height != want->shape[0] || got->width != want->shape[1] ||
        got->channels != want->shape[2])
        return 256;
    const uint8_t *w = want->data;
    int worst = 0;
    for (size_t i = 0; i < want->nbytes; i++) {
        int d = abs((int)got->pixels[i] - (int)w[i]);
        if (d > worst) worst = d;
    }
    return worst;
}

// Splits "<p0>,<p1>,..." (Python repr numbers) into p; returns the count.
static int parse_params(const char *text, double *p, int max) {
    int n = 0;
    while (*text && n < max) {
        char *end;
        p[n++] = strtod(text, &end);
        text = *end == ',' ? end + 1 : end;
    }
    return n;
}

static void fill4(const double *p, uint8_t fill[4]) {
    for (int i = 0; i < 4; i++) fill[i] = (uint8_t)p[i];
}

// Runs golden case `op` with parameters p on `in`. Returns the call's rc; -2 for an unknown op.
static int run_case(const char *op, const Image *in, const double *p, Image *out, char *error,
                    size_t size) {
    uint8_t fill[4];
    if (!strcmp(op, "resize_shorter"))
        return transform_resize_shorter(in, (int)p[0], (ResizeFilter)(int)p[1], out, error, size);
    if (!strcmp(op, "resize"))
        return transform_resize(in, (int)p[0], (int)p[1], (ResizeFilter)(int)p[2], out, error, size);
    if (!strcmp(op, "crop")) return transform_crop(in, (int)p[0], (int)p[1], (int)p[2], (int)p[3], out, error, size);
    if (!strcmp(op, "center_crop")) return transform_center_crop(in, (int)p[0], (int)p[1], out, error, size);
    if (!strcmp(op, "hflip")) return transform_hflip(in, out, error, size);
    if (!strcmp(op, "pad")) {
        fill4(p + 5, fill);
        return transform_pad(in, (int)p[0], (int)p[1], (int)p[2], (int)p[3],
                             p[4] ? PAD_REFLECT : PAD_CONSTANT, fill, out, error, size);
    }
    if (!strcmp(op, "to_grey")) return transform_to_grey(in, out, error, size);
    if (!strcmp(op, "to_rgb")) return transform_to_rgb(in, out, error, size);
    if (!strcmp(op, "brightness")) return transform_adjust_brightness(in, p[0], out, error, size);
    if (!strcmp(op, "contrast")) return transform_adjust_contrast(in, p[0], out, error, size);
    if (!strcmp(op, "saturation")) return transform_adjust_saturation(in, p[0], out, error, size);
    if (!strcmp(op, "hue")) return transform_adjust_hue(in, p[0], out, error, size);
    if (!strcmp(op, "sharpness")) return transform_adjust_sharpness(in, p[0], out, error, size);
    if (!strcmp(op, "autocontrast")) return transform_autocontrast(in, out, error, size);
    if (!strcmp(op, "equalize")) return transform_equalize(in, out, error, size);
    if (!strcmp(op, "posterize")) return transform_posterize(in, (int)p[0], out, error, size);
    if (!strcmp(op, "solarize")) return transform_solarize(in, p[0], out, error, size);
    if (!strcmp(op, "rotate")) {
        fill4(p + 1, fill);
        return transform_rotate(in, p[0], fill, out, error, size);
    }
    if (!strcmp(op, "affine")) {
        fill4(p + 6, fill);
        return transform_affine(in, p, fill, out, error, size);
    }
    if (!strcmp(op, "shear_x") || !strcmp(op, "shear_y") || !strcmp(op, "translate_x") ||
        !strcmp(op, "translate_y")) {
        fill4(p + 1, fill);
        if (!strcmp(op, "shear_x")) return transform_shear_x(in, p[0], fill, out, error, size);
        if (!strcmp(op, "shear_y")) return transform_shear_y(in, p[0], fill, out, error, size);
        if (!strcmp(op, "translate_x")) return transform_translate_x(in, (int)p[0], fill, out, error, size);
        return transform_translate_y(in, (int)p[0], fill, out, error, size);
    }
    if (!strcmp(op, "cutout")) {
        fill4(p + 3, fill);
        return transform_cutout(in, p[0], p[1], (int)p[2], fill, out, error, size);
    }
    return -2;
}

// Every functional transform against torchvision/PIL. Tolerance 0 for all of them: each follows
// PIL's integer and float arithmetic step for step (ImagingBlend's float blend, Filter3x3's float
// kernel sum, Convert.c's float/double HSV, Geometry.c's 16.16 fixed-point affine, ImageOps'
// tables), and the only libm calls (cos, sin, fmod, floor, round) are glibc's, as in Python.
TEST(functional_transforms_match_torchvision) {
    SafetensorsFile *file = open_goldens();
    if (!file) return;
    static const char *const ops[] = {
        "resize_shorter", "resize", "crop", "center_crop", "hflip", "pad", "to_grey", "to_rgb",
        "brightness", "contrast", "saturation", "hue", "sharpness", "autocontrast", "equalize",
        "posterize", "solarize", "rotate", "affine", "shear_x", "shear_y", "translate_x",
        "translate_y", "cutout"};
    enum { OP_COUNT = sizeof ops / sizeof ops[0] };
    int cases[OP_COUNT] = {0}, worst[OP_COUNT] = {0}, total = 0;
    for (int i = 0; i < safetensors_count(file); i++) {
        const SafetensorsEntry *want = safetensors_entry(file, i);
        char key[256];
        snprintf(key, sizeof key, "%s", want->name);
        char *input_name = strchr(key, '/');
        if (!input_name || !strncmp(key, "input/", 6) || !strncmp(key, "ra/", 3) ||
            !strncmp(key, "to_float/", 9))
            continue;
        *input_name++ = '\0';
        char *params_text = strchr(input_name, '/');
        CHECK_MSG(params_text != NULL, "bad golden name %s", want->name);
        if (!params_text) continue;
        *params_text++ = '\0';
        int op = 0;
        while (op < OP_COUNT && strcmp(ops[op], key)) op++;
        CHECK_MSG(op < OP_COUNT, "golden %s: op %s not tested", want->name, key);
        Image in;
        if (op == OP_COUNT || !load_input(file, input_name, &in)) continue;
        double p[16] = {0};
        parse_params(params_text, p, 16);
        Image out;
        char error[512] = "";
        int rc = run_case(key, &in, p, &out, error, sizeof error);
        CHECK_MSG(rc == 0, "%s: %s", want->name, error);
        if (rc == 0) {
            int diff = max_abs_diff(&out, want);
            CHECK_MSG(diff == 0, "%s: max abs diff %d (%dx%dx%d, want %lldx%lldx%lld)", want->name, diff,
                      out.width, out.height, out.channels, (long long)want->shape[1],
                      (long long)want->shape[0], (long long)want->shape[2]);
            if (diff > worst[op]) worst[op] = diff;
        }
        cases[op]++;
        total++;
        image_free(&out);
        image_free(&in);
    }
    for (int op = 0; op < OP_COUNT; op++) {
        CHECK_MSG(cases[op] > 0, "no golden case for %s", ops[op]);
        if (getenv("TEST_VERBOSE"))
            printf("     %-15s %2d cases vs torchvision/PIL: max abs diff %d\n", ops[op], cases[op], worst[op]);
    }
    CHECK(total >= 100);  // the generator's FUNCTIONAL_CASES
    safetensors_close(file);
}

// Each fixmatch_augment_pool op at magnitudes 1, 5, 9 (both signs for the signed ops, fill 128
// and the kekmodel code's black) against the op applied through PIL; exact for the same reasons.
TEST(randaugment_ops_match_fixmatch) {
    SafetensorsFile *file = open_goldens();
    if (!file) return;
    int cases[RANDAUGMENT_OP_COUNT] = {0}, total = 0;
    for (int i = 0; i < safetensors_count(file); i++) {
        const SafetensorsEntry *want = safetensors_entry(file, i);
        if (strncmp(want->name, "ra/", 3)) continue;
        char key[256];
        snprintf(key, sizeof key, "%s", want->name + 3);
        char *input_name = strchr(key, '/');
        char *params_text = input_name ? strchr(input_name + 1, '/') : NULL;
        CHECK_MSG(params_text != NULL, "bad golden name %s", want->name);
        if (!params_text) continue;
        *input_name++ = '\0';
        *params_text++ = '\0';
        int op = 0;
        while (op < RANDAUGMENT_OP_COUNT && strcmp(randaugment_op_name((RandAugmentOp)op), key)) op++;
        CHECK_MSG(op < RANDAUGMENT_OP_COUNT, "unknown op in %s", want->name);
        Image in;
        if (op == RANDAUGMENT_OP_COUNT || !load_input(file, input_name, &in)) continue;
        double p[3];
        CHECK(parse_params(params_text, p, 3) == 3);
        uint8_t fill[3] = {0, 0, 0};
        if (p[2] >= 0) fill[0] = fill[1] = fill[2] = (uint8_t)p[2];
        Image out;
        char error[512] = "";
        int rc = transform_randaugment_op(&in, (RandAugmentOp)op, (int)p[0], p[1] != 0, fill, &out, error,
                                          sizeof error);
        CHECK_MSG(rc == 0, "%s: %s", want->name, error);
        if (rc == 0) {
            int diff = max_abs_diff(&out, want);
            CHECK_MSG(diff == 0, "%s: max abs diff %d", want->name, diff);
        }
        cases[op]++;
        total++;
        image_free(&out);
        image_free(&in);
    }
    for (int op = 0; op < RANDAUGMENT_OP_COUNT; op++)
        CHECK_MSG(cases[op] > 0, "no golden case for %s", randaugment_op_name((RandAugmentOp)op));
    if (getenv("TEST_VERBOSE")) printf("     %d RandAugment op cases vs FixMatch's PIL calls: exact\n", total);
    CHECK(total >= 50);
    CHECK(randaugment_op_name(RANDAUGMENT_OP_COUNT) == NULL && randaugment_op_name((RandAugmentOp)-1) == NULL);
    safetensors_close(file);
}

// F.normalize(F.to_tensor(img)) in float32: x / 255.0f then (x - mean) / std, the operations
// torch performs, so bit-identical (tolerance 0).
TEST(to_float_matches_torchvision) {
    SafetensorsFile *file = open_goldens();
    if (!file) return;
    int compared = 0;
    for (int i = 0; i < safetensors_count(file); i++) {
        const SafetensorsEntry *want = safetensors_entry(file, i);
        if (strncmp(want->name, "to_float/", 9)) continue;
        char key[128];
        snprintf(key, sizeof key, "%s", want->name + 9);
        char *preset = strchr(key, '/');
        if (!preset) continue;
        *preset++ = '\0';
        Image in;
        if (!load_input(file, key, &in)) continue;
        NormalizeParams params;
        CHECK_MSG(transform_normalize_preset(preset, &params) == 0, "%s", preset);
        size_t n = (size_t)in.width * in.height * in.channels;
        CHECK(want->dtype == DTYPE_F32 && want->nbytes == n * sizeof(float));
        float *got = malloc(n * sizeof(float)), *expected = malloc(want->nbytes);
        memcpy(expected, want->data, want->nbytes);
        transform_to_float(&in, &params, got);
        float worst = 0;
        for (size_t k = 0; k < n && want->nbytes == n * sizeof(float); k++)
            worst = fmaxf(worst, fabsf(got[k] - expected[k]));
        CHECK_MSG(worst == 0, "%s: max abs diff %g", want->name, worst);
        // the pipeline's to_float is the same with its normalize step
        char spec[64];
        snprintf(spec, sizeof spec, "normalize=%s", preset);
        char error[256];
        TransformPipeline *pipeline = transform_pipeline_parse(spec, error, sizeof error);
        CHECK_MSG(pipeline != NULL, "%s", error);
        if (pipeline) {
            float *via = malloc(n * sizeof(float));
            transform_pipeline_to_float(pipeline, &in, via);
            CHECK(memcmp(via, got, n * sizeof(float)) == 0);
            free(via);
        }
        transform_pipeline_free(pipeline);
        free(got), free(expected);
        image_free(&in);
        compared++;
    }
    CHECK(compared == 5);
    safetensors_close(file);
}

TEST(normalize_presets_have_the_published_values) {
    NormalizeParams p;
    CHECK(transform_normalize_preset("imagenet", &p) == 0);
    const float imagenet[6] = {0.485f, 0.456f, 0.406f, 0.229f, 0.224f, 0.225f};
    for (int i = 0; i < 3; i++) CHECK(p.mean[i] == imagenet[i] && p.std[i] == imagenet[3 + i]);
    CHECK(transform_normalize_preset("clip", &p) == 0);
    const float clip[6] = {0.48145466f, 0.4578275f, 0.40821073f, 0.26862954f, 0.26130258f, 0.27577711f};
    for (int i = 0; i < 3; i++) CHECK(p.mean[i] == clip[i] && p.std[i] == clip[3 + i]);
    CHECK(transform_normalize_preset("half", &p) == 0);
    for (int i = 0; i < 3; i++) CHECK(p.mean[i] == 0.5f && p.std[i] == 0.5f);
    CHECK(transform_normalize_preset("none", &p) == 0);
    for (int i = 0; i < 3; i++) CHECK(p.mean[i] == 0.0f && p.std[i] == 1.0f);
    CHECK(transform_normalize_preset("imagenet21k", &p) == -1 && transform_normalize_preset(NULL, &p) == -1);
    // worked values: white and black through "half" are +1 and -1; imagenet red 255 -> 2.2489083
    Image im = {2, 1, 3, (uint8_t[]){255, 255, 255, 0, 0, 0}};
    float out[6];
    transform_normalize_preset("half", &p);
    transform_to_float(&im, &p, out);
    CHECK(out[0] == 1.0f && out[1] == -1.0f && out[2] == 1.0f && out[5] == -1.0f);  // CHW
    transform_normalize_preset("imagenet", &p);
    transform_to_float(&im, &p, out);
    CHECK_CLOSE(out[0], (1.0 - 0.485) / 0.229, 1e-6, 0);
    CHECK_CLOSE(out[5], -0.406 / 0.225, 1e-6, 0);
    // no params: x / 255; grey uses mean[0]; alpha is never normalised
    transform_to_float(&im, NULL, out);
    CHECK(out[0] == 1.0f && out[1] == 0.0f);
    Image grey = {1, 1, 1, (uint8_t[]){255}};
    transform_to_float(&grey, &p, out);
    CHECK(out[0] == (1.0f - 0.485f) / 0.229f);
    Image rgba = {1, 1, 4, (uint8_t[]){0, 0, 0, 51}};
    transform_to_float(&rgba, &p, out);
    CHECK(out[3] == 51.0f / 255.0f);
    transform_pipeline_to_float(NULL, &im, out);  // NULL pipeline: x / 255
    CHECK(out[0] == 1.0f && out[1] == 0.0f);
}

// An RGB image whose pixels encode their own coordinates (R = x + 1, G = y + 1, B = 200), so a
// crop's offset can be read off it; padding shows up as 0 (constant mode).
static Image coordinate_image(int w, int h) {
    Image im = {w, h, 3, malloc((size_t)w * h * 3)};
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *p = im.pixels + ((size_t)y * w + x) * 3;
            p[0] = (uint8_t)(x + 1), p[1] = (uint8_t)(y + 1), p[2] = 200;
        }
    return im;
}

TEST(random_crop_is_deterministic_and_stays_inside_the_padded_image) {
    char error[256];
    const int w = 20, h = 14, size = 12, pad = 4;
    Image im = coordinate_image(w, h);
    int min_left = 99, max_left = -99, min_top = 99, max_top = -99;
    for (int draw = 0; draw < 600; draw++) {
        Rng rng = rng_make(11, (uint64_t)draw), again = rng_make(11, (uint64_t)draw);
        Image a, b;
        CHECK(transform_random_crop(&im, size, size, pad, PAD_CONSTANT, &rng, &a, error, sizeof error) == 0);
        CHECK(transform_random_crop(&im, size, size, pad, PAD_CONSTANT, &again, &b, error, sizeof error) == 0);
        CHECK(same_image(&a, &b) && a.width == size && a.height == size);
        // every pixel is padding (0) or the source pixel at one common offset
        int left = 99, top = 99;
        bool consistent = true;
        for (int y = 0; y < size && a.pixels; y++)
            for (int x = 0; x < size; x++) {
                const uint8_t *p = a.pixels + ((size_t)y * size + x) * 3;
                if (p[2] == 0) continue;
                int l = p[0] - 1 - x + pad, t = p[1] - 1 - y + pad;  // offset in the padded image
                if (left == 99) left = l, top = t;
                consistent &= l == left && t == top;
            }
        CHECK(consistent && left >= 0 && left <= w + 2 * pad - size && top >= 0 && top <= h + 2 * pad - size);
        if (left < min_left) min_left = left;
        if (left > max_left) max_left = left;
        if (top < min_top) min_top = top;
        if (top > max_top) max_top = top;
        image_free(&a), image_free(&b);
    }
    // 600 draws over 17 x 11 offsets: each extreme is missed with probability < 600 * (1 - 1/17)^600
    CHECK(min_left == 0 && max_left == w + 2 * pad - size && min_top == 0 && max_top == h + 2 * pad - size);
    // reflect mode: the output is a window of F.pad(img, 4, padding_mode='reflect')
    Image padded;
    CHECK(transform_pad(&im, pad, pad, pad, pad, PAD_REFLECT, NULL, &padded, error, sizeof error) == 0);
    for (int draw = 0; draw < 20; draw++) {
        Rng rng = rng_make(12, (uint64_t)draw);
        Image a;
        CHECK(transform_random_crop(&im, size, size, pad, PAD_REFLECT, &rng, &a, error, sizeof error) == 0);
        bool found = false;
        for (int t = 0; t <= padded.height - size && !found; t++)
            for (int l = 0; l <= padded.width - size && !found; l++) {
                Image window;
                transform_crop(&padded, t, l, size, size, &window, error, sizeof error);
                found = same_image(&window, &a);
                image_free(&window);
            }
        CHECK(found);
        image_free(&a);
    }
    image_free(&padded);
    // different streams give different crops; a crop larger than the image fails with one line
    Rng r1 = rng_make(5, 1), r2 = rng_make(5, 2);
    Image a, b;
    transform_random_crop(&im, 8, 8, 0, PAD_CONSTANT, &r1, &a, error, sizeof error);
    transform_random_crop(&im, 8, 8, 0, PAD_CONSTANT, &r2, &b, error, sizeof error);
    CHECK(!same_image(&a, &b));
    image_free(&a), image_free(&b);
    CHECK(transform_random_crop(&im, 15, 15, 0, PAD_CONSTANT, &r1, &a, error, sizeof error) == -1);
    CHECK(a.pixels == NULL && strstr(error, "larger than") && !strchr(error, '\n'));
    // the same size draws nothing and copies
    Rng r3 = rng_make(5, 3);
    CHECK(transform_random_crop(&im, h, w, 0, PAD_CONSTANT, &r3, &a, error, sizeof error) == 0);
    CHECK(same_image(&a, &im) && r3.offset == 0);
    image_free(&a);
    image_free(&im);
}

TEST(random_resized_crop_respects_scale_ratio_and_bounds) {
    const int H = 48, W = 64;
    const double smin = 0.08, smax = 1.0, rmin = 3.0 / 4.0, rmax = 4.0 / 3.0;
    int fallbacks_or_bad = 0;
    double smallest = 2, largest = 0;
    for (int draw = 0; draw < 3000; draw++) {
        Rng rng = rng_make(21, (uint64_t)draw);
        int top, left, h, w;
        transform_random_resized_crop_params(H, W, smin, smax, rmin, rmax, &rng, &top, &left, &h, &w);
        CHECK(h >= 1 && w >= 1 && top >= 0 && left >= 0 && top + h <= H && left + w <= W);
        // w = round(sqrt(A r)), h = round(sqrt(A / r)): each off by <= 0.5 from the exact sides,
        // so the area is within 0.5 (w + h) + 0.25 of the drawn target, and w/h of the ratio range
        // within the same rounding
        double area = (double)h * w, slack = 0.5 * (h + w) + 0.25;
        bool in_scale = area >= smin * H * W - slack && area <= smax * H * W + slack;
        bool in_ratio = (w + 0.5) / (h - 0.5 > 0 ? h - 0.5 : 1e-9) >= rmin && (w - 0.5) / (h + 0.5) <= rmax;
        if (!in_scale || !in_ratio) fallbacks_or_bad++;
        smallest = fmin(smallest, area / (H * W));
        largest = fmax(largest, area / (H * W));
    }
    CHECK_MSG(fallbacks_or_bad == 0, "%d crops outside the scale/ratio range", fallbacks_or_bad);
    CHECK(smallest < 0.12 && largest > 0.9);  // the whole range is used
    // the fallback: scale (1, 1) on a 100x20 image can never fit the ratio range, so the central
    // crop clamped to ratio 4/3: h = 20, w = round(20 * 4 / 3) = 27, top 0, left (100 - 27) // 2
    Rng rng = rng_make(1, 1);
    int top, left, h, w;
    transform_random_resized_crop_params(20, 100, 1.0, 1.0, rmin, rmax, &rng, &top, &left, &h, &w);
    CHECK(h == 20 && w == 27 && top == 0 && left == 36);
    transform_random_resized_crop_params(100, 20, 1.0, 1.0, rmin, rmax, &rng, &top, &left, &h, &w);
    CHECK(w == 20 && h == 27 && left == 0 && top == 36);
    // the full transform: deterministic, right size; bad scales refused
    Image im = random_image(40, 30, 3), a, b;
    char error[256];
    Rng r1 = rng_make(3, 4), r2 = rng_make(3, 4), r3 = rng_make(3, 5);
    CHECK(transform_random_resized_crop(&im, 16, 16, 0.08, 1, rmin, rmax, &r1, &a, error, sizeof error) == 0);
    CHECK(transform_random_resized_crop(&im, 16, 16, 0.08, 1, rmin, rmax, &r2, &b, error, sizeof error) == 0);
    CHECK(same_image(&a, &b) && a.width == 16 && a.height == 16);
    image_free(&b);
    CHECK(transform_random_resized_crop(&im, 16, 16, 0.08, 1, rmin, rmax, &r3, &b, error, sizeof error) == 0);
    CHECK(!same_image(&a, &b));
    image_free(&a), image_free(&b);
    CHECK(transform_random_resized_crop(&im, 16, 16, 0.5, 0.2, rmin, rmax, &r1, &a, error, sizeof error) == -1);
    CHECK(transform_random_resized_crop(&im, 16, 16, 0.0, 1, rmin, rmax, &r1, &a, error, sizeof error) == -1);
    image_free(&im);
}

TEST(random_hflip_frequency_is_p) {
    Image im = {2, 1, 1, (uint8_t[]){10, 20}};
    char error[256];
    const double ps[] = {0.0, 0.3, 0.5, 1.0};
    for (int k = 0; k < 4; k++) {
        int flips = 0, n = 10000;
        Rng rng = rng_make(99, (uint64_t)k);
        for (int i = 0; i < n; i++) {
            Image out;
            CHECK(transform_random_hflip(&im, ps[k], &rng, &out, error, sizeof error) == 0);
            flips += out.pixels && out.pixels[0] == 20;
            image_free(&out);
        }
        // binomial(10000, p): standard deviation <= 50; allow 5 of them (p = 0 and 1 are exact)
        double expected = ps[k] * n;
        CHECK_MSG(fabs(flips - expected) <= 250, "p %g: %d flips of %d", ps[k], flips, n);
        if (ps[k] == 0 || ps[k] == 1) CHECK(flips == (int)expected);
    }
    Image out;
    Rng rng = rng_make(1, 1);
    CHECK(transform_random_hflip(&im, 1.5, &rng, &out, error, sizeof error) == -1 && out.pixels == NULL);
}

// Replays ColorJitter's documented draws (permutation of 4, then the enabled factors in order
// b, c, s, h) with the functional forms and checks the transform did exactly that.
TEST(color_jitter_draws_and_order_as_torchvision) {
    Image im = random_image(12, 10, 3);
    char error[256];
    for (int trial = 0; trial < 20; trial++) {
        double b = 0.4, c = trial % 3 ? 0.4 : 0.0, s = 0.4, h = 0.1;
        Rng rng = rng_make(7, (uint64_t)trial), replay = rng;
        Image got;
        CHECK(transform_color_jitter(&im, b, c, s, h, &rng, &got, error, sizeof error) == 0);
        int64_t order[4];
        rng_permutation(&replay, order, 4);
        const double amounts[4] = {b, c, s, h};
        double factors[4] = {0};
        for (int k = 0; k < 4; k++) {
            if (!amounts[k]) continue;
            float f;
            double low = k == 3 ? -h : fmax(0, 1 - amounts[k]), high = k == 3 ? h : 1 + amounts[k];
            rng_fill_uniform_f32(&replay, &f, 1, (float)low, (float)high);
            factors[k] = f;
            CHECK(f >= low && f <= high);
        }
        Image cur, next;
        transform_crop(&im, 0, 0, im.height, im.width, &cur, error, sizeof error);  // a copy
        for (int i = 0; i < 4; i++) {
            int k = (int)order[i];
            if (!amounts[k]) continue;
            if (k == 0) transform_adjust_brightness(&cur, factors[k], &next, error, sizeof error);
            if (k == 1) transform_adjust_contrast(&cur, factors[k], &next, error, sizeof error);
            if (k == 2) transform_adjust_saturation(&cur, factors[k], &next, error, sizeof error);
            if (k == 3) transform_adjust_hue(&cur, factors[k], &next, error, sizeof error);
            image_free(&cur);
            cur = next;
        }
        CHECK(same_image(&cur, &got) && rng.offset == replay.offset);
        image_free(&cur), image_free(&got);
    }
    // all zero: identity; out-of-range values refused
    Rng rng = rng_make(1, 2);
    Image out;
    CHECK(transform_color_jitter(&im, 0, 0, 0, 0, &rng, &out, error, sizeof error) == 0 && same_image(&out, &im));
    image_free(&out);
    CHECK(transform_color_jitter(&im, 0, 0, 0, 0.6, &rng, &out, error, sizeof error) == -1);
    CHECK(transform_color_jitter(&im, -1, 0, 0, 0, &rng, &out, error, sizeof error) == -1);
    image_free(&im);
}

// Replays RandAugmentMC's documented draws with transform_randaugment_op and the cutout.
TEST(randaugment_draws_as_fixmatch) {
    Image im = random_image(32, 32, 3);
    const uint8_t fill[3] = {128, 128, 128};
    char error[256];
    int applied_total = 0;
    for (int trial = 0; trial < 40; trial++) {
        const int n = 2, m = 10;
        Rng rng = rng_make(8, (uint64_t)trial), replay = rng, again = rng;
        Image got, got_again;
        CHECK(transform_randaugment(&im, n, m, fill, &rng, &got, error, sizeof error) == 0);
        CHECK(transform_randaugment(&im, n, m, fill, &again, &got_again, error, sizeof error) == 0);
        CHECK(same_image(&got, &got_again));
        int ops[2];
        for (int i = 0; i < n; i++) ops[i] = (int)rng_int(&replay, RANDAUGMENT_OP_COUNT);
        Image cur, next;
        transform_crop(&im, 0, 0, 32, 32, &cur, error, sizeof error);
        for (int i = 0; i < n; i++) {
            int v = 1 + (int)rng_int(&replay, m - 1);
            CHECK(v >= 1 && v <= m - 1);
            if (!(rng_uniform(&replay) < 0.5f)) continue;
            bool negate = randaugment_op_is_signed((RandAugmentOp)ops[i]) && rng_uniform(&replay) < 0.5f;
            CHECK(transform_randaugment_op(&cur, (RandAugmentOp)ops[i], v, negate, fill, &next, error,
                                           sizeof error) == 0);
            image_free(&cur);
            cur = next;
            applied_total++;
        }
        double cx, cy;
        rng_fill_uniform_f64(&replay, &cx, 1, 0, 32);
        rng_fill_uniform_f64(&replay, &cy, 1, 0, 32);
        const uint8_t grey[4] = {127, 127, 127, 255};
        CHECK(transform_cutout(&cur, cx, cy, 16, grey, &next, error, sizeof error) == 0);
        CHECK(same_image(&next, &got) && rng.offset == replay.offset);
        image_free(&cur), image_free(&next), image_free(&got), image_free(&got_again);
    }
    CHECK(applied_total > 20 && applied_total < 60);  // about half of 80 ops applied
    Rng r1 = rng_make(8, 100), r2 = rng_make(8, 101);
    Image a, b;
    transform_randaugment(&im, 2, 10, fill, &r1, &a, error, sizeof error);
    transform_randaugment(&im, 2, 10, fill, &r2, &b, error, sizeof error);
    CHECK(!same_image(&a, &b));
    image_free(&a), image_free(&b);
    CHECK(transform_randaugment(&im, 2, 1, fill, &r1, &a, error, sizeof error) == -1 && strstr(error, "m"));
    CHECK(transform_randaugment(&im, 0, 10, fill, &r1, &a, error, sizeof error) == -1);
    image_free(&im);
}

// Every functional form refuses bad input with one line that names it and an empty output.
TEST(functional_errors_are_one_line) {
    Image im = random_image(5, 4, 3), out = {1, 1, 1, NULL};
    Image two = {5, 4, 2, im.pixels}, empty = {0};
    char error[256];
#define EXPECT_FAIL(call, name)                                                                     \
    do {                                                                                            \
        error[0] = '\0';                                                                            \
        CHECK_MSG((call) == -1, "%s accepted", #call);                                              \
        CHECK_MSG(out.pixels == NULL && strncmp(error, name ": ", strlen(name) + 2) == 0 &&        \
                      !strchr(error, '\n'),                                                         \
                  "%s: error '%s'", #call, error);                                                  \
    } while (0)
    EXPECT_FAIL(transform_crop(&im, 0, 0, 0, 3, &out, error, sizeof error), "transform_crop");
    EXPECT_FAIL(transform_crop(&two, 0, 0, 2, 3, &out, error, sizeof error), "transform_crop");
    EXPECT_FAIL(transform_crop(&im, 0, -2147483647 - 1, 2, 3, &out, error, sizeof error), "transform_crop");
    EXPECT_FAIL(transform_resize_shorter(&im, 65536, RESIZE_NEAREST, &out, error, sizeof error), "transform_resize_shorter");
    EXPECT_FAIL(transform_hflip(&empty, &out, error, sizeof error), "transform_hflip");
    EXPECT_FAIL(transform_center_crop(&im, -1, 3, &out, error, sizeof error), "transform_center_crop");
    EXPECT_FAIL(transform_pad(&im, -1, 0, 0, 0, PAD_CONSTANT, NULL, &out, error, sizeof error), "transform_pad");
    EXPECT_FAIL(transform_resize_shorter(&im, 0, RESIZE_BILINEAR, &out, error, sizeof error),
                "transform_resize_shorter");
    EXPECT_FAIL(transform_adjust_brightness(&im, -0.5, &out, error, sizeof error), "transform_adjust_brightness");
    EXPECT_FAIL(transform_adjust_contrast(&im, NAN, &out, error, sizeof error), "transform_adjust_contrast");
    EXPECT_FAIL(transform_adjust_hue(&im, 0.6, &out, error, sizeof error), "transform_adjust_hue");
    EXPECT_FAIL(transform_posterize(&im, 9, &out, error, sizeof error), "transform_posterize");
    EXPECT_FAIL(transform_rotate(&im, INFINITY, NULL, &out, error, sizeof error), "transform_rotate");
    EXPECT_FAIL(transform_affine(&im, (double[]){1, 0, NAN, 0, 1, 0}, NULL, &out, error, sizeof error),
                "transform_affine");
    EXPECT_FAIL(transform_cutout(&im, 1, 1, -2, NULL, &out, error, sizeof error), "transform_cutout");
    EXPECT_FAIL(transform_randaugment_op(&im, RANDAUGMENT_OP_COUNT, 3, false, NULL, &out, error, sizeof error),
                "transform_randaugment_op");
    CHECK(transform_hflip(&im, &im, error, sizeof error) == -1 && im.pixels != NULL);  // in == out
#undef EXPECT_FAIL
    image_free(&im);
}

// Canonical specs: every parameter written out, and parsing the canonical text gives it back.
TEST(pipeline_spec_round_trips) {
    const char *cases[][2] = {
        {"random_crop=32:4:reflect,hflip,randaugment=2:10,normalize=half",
         "random_crop=32:4:reflect,hflip=0.5,randaugment=2:10:0,normalize=half"},
        {" resize=256 , center_crop=224,normalize=imagenet",
         "resize=256,center_crop=224,normalize=imagenet"},
        {"resize=20:30,center_crop=7:9,random_crop=5", "resize=20:30,center_crop=7:9,random_crop=5:0:constant"},
        {"random_resized_crop=224,hflip=0.25,color_jitter=0.4:0.4:0.4:0.1,grey,rgb",
         "random_resized_crop=224:0.08:1,hflip=0.25,color_jitter=0.4:0.4:0.4:0.1,grey,rgb"},
        {"random_resized_crop=96:0.2:1,pad=3,pad=2:reflect,cutout=8,cutout=4:0.5,randaugment=1:2:0",
         "random_resized_crop=96:0.2:1,pad=3:constant,pad=2:reflect,cutout=8:1,cutout=4:0.5,randaugment=1:2:0"},
        {"normalize=0.48145466:0.4578275:0.40821073:0.26862954:0.26130258:0.27577711", "normalize=clip"},
        {"normalize=0.1:0.2:0.3:1:2:0.7", "normalize=0.1:0.2:0.3:1:2:0.7"},
        {"", ""},
        {"hflip=1", "hflip=1"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char error[512] = "";
        TransformPipeline *p = transform_pipeline_parse(cases[i][0], error, sizeof error);
        CHECK_MSG(p != NULL, "'%s': %s", cases[i][0], error);
        if (!p) continue;
        CHECK_MSG(!strcmp(transform_pipeline_spec(p), cases[i][1]), "'%s' -> '%s', want '%s'", cases[i][0],
                  transform_pipeline_spec(p), cases[i][1]);
        TransformPipeline *again = transform_pipeline_parse(transform_pipeline_spec(p), error, sizeof error);
        CHECK(again && !strcmp(transform_pipeline_spec(again), transform_pipeline_spec(p)));
        transform_pipeline_free(again);
        transform_pipeline_free(p);
    }
    transform_pipeline_free(NULL);
    CHECK(!strcmp(transform_pipeline_spec(NULL), ""));
}

// Every malformed spec: NULL and one line naming the step as written and the expected form.
TEST(pipeline_parse_errors_name_the_step) {
    const char *cases[][2] = {  // spec, text the message must contain
        {"flip", "\"flip\": unknown step"},
        {"resize", "\"resize\""},
        {"resize=0", "\"resize=0\""},
        {"resize=-3", "\"resize=-3\""},
        {"resize=1:2:3", "\"resize=1:2:3\""},
        {"resize=abc", "expected resize=N"},
        {"resize=100000", "\"resize=100000\""},
        {"center_crop=2.5", "\"center_crop=2.5\""},
        {"random_crop=32:-4", "\"random_crop=32:-4\""},
        {"random_crop=32:4:mirror", "reflect or constant"},
        {"random_crop=", "\"random_crop=\""},
        {"random_resized_crop=224:0.5", "\"random_resized_crop=224:0.5\""},
        {"random_resized_crop=224:0.6:0.5", "bad scale range"},
        {"random_resized_crop=224:0:1", "\"random_resized_crop=224:0:1\""},
        {"random_resized_crop=224:0.1:1.5", "\"random_resized_crop=224:0.1:1.5\""},
        {"hflip=1.5", "p must be a number in [0, 1]"},
        {"hflip=-0.1", "\"hflip=-0.1\""},
        {"hflip=nan", "\"hflip=nan\""},
        {"hflip=", "\"hflip=\""},
        {"pad=-1", "\"pad=-1\""},
        {"pad=2:edge", "\"pad=2:edge\""},
        {"color_jitter=0.4:0.4:0.4", "needs 4 values"},
        {"color_jitter=0.4:0.4:0.4:0.6", "hue must be in [0, 0.5]"},
        {"color_jitter=-0.1:0:0:0", "\"color_jitter=-0.1:0:0:0\""},
        {"grey=1", "takes no value"},
        {"rgb=", "\"rgb=\""},
        {"randaugment=2", "\"randaugment=2\""},
        {"randaugment=0:10", "n must be"},
        {"randaugment=2:1", "m must be an integer in 2..10"},
        {"randaugment=2:11", "\"randaugment=2:11\""},
        {"randaugment=2:10:300", "fill must be"},
        {"cutout=0", "\"cutout=0\""},
        {"cutout=16:2", "\"cutout=16:2\""},
        {"normalize=imagenet,hflip", "normalize must be the last step"},
        {"normalize=sunset", "\"normalize=sunset\""},
        {"normalize=0.5:0.5:0.5:0.5:0.5:0", "bad std"},
        {"normalize=1:2:3", "\"normalize=1:2:3\""},
        {"hflip,,grey", "step 2 is empty"},
        {"hflip,", "step 2 is empty"},
        {"resize=32,resize=1x2", "step 2 \"resize=1x2\""},
        {"resize=1:2:3:4:5:6:7:8", "\"resize=1:2:3:4:5:6:7:8\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char error[512] = "";
        TransformPipeline *p = transform_pipeline_parse(cases[i][0], error, sizeof error);
        CHECK_MSG(p == NULL, "'%s' accepted as '%s'", cases[i][0], transform_pipeline_spec(p));
        transform_pipeline_free(p);
        CHECK_MSG(strstr(error, cases[i][1]) != NULL && !strchr(error, '\n'), "'%s': error '%s' lacks '%s'",
                  cases[i][0], error, cases[i][1]);
        CHECK_MSG(strstr(error, "expected") || strstr(error, "empty"), "'%s': no expected form in '%s'",
                  cases[i][0], error);
    }
    char error[64];
    CHECK(transform_pipeline_parse(NULL, error, sizeof error) == NULL);
    // a short error buffer truncates, never overflows
    char tiny[8];
    CHECK(transform_pipeline_parse("nope", tiny, sizeof tiny) == NULL && strlen(tiny) == 7);
}

TEST(pipeline_apply_runs_the_steps) {
    char error[512];
    // FixMatch's CIFAR views: weak = flip + reflect-padded crop, strong = weak + RandAugment
    TransformPipeline *weak = transform_pipeline_parse("hflip,random_crop=32:4:reflect,normalize=half", error,
                                                       sizeof error);
    TransformPipeline *strong = transform_pipeline_parse(
        "hflip,random_crop=32:4:reflect,randaugment=2:10,normalize=half", error, sizeof error);
    CHECK(weak && strong);
    Image source = random_image(32, 32, 3);
    Image a = {0}, b = {0};
    for (int view = 0; view < 2 && weak && strong; view++) {
        const TransformPipeline *p = view ? strong : weak;
        transform_crop(&source, 0, 0, 32, 32, &a, error, sizeof error);
        transform_crop(&source, 0, 0, 32, 32, &b, error, sizeof error);
        Rng r1 = rng_make(4, 9), r2 = rng_make(4, 9);
        CHECK_MSG(transform_pipeline_apply(p, &a, &r1, error, sizeof error) == 0, "%s", error);
        CHECK(transform_pipeline_apply(p, &b, &r2, error, sizeof error) == 0);
        CHECK(same_image(&a, &b) && a.width == 32 && a.height == 32 && a.channels == 3);
        float *x = malloc(sizeof(float) * 3 * 32 * 32);
        transform_pipeline_to_float(p, &a, x);
        bool in_range = true;
        for (int i = 0; i < 3 * 32 * 32; i++) in_range &= x[i] >= -1.0f && x[i] <= 1.0f;
        CHECK(in_range);
        free(x);
        image_free(&a), image_free(&b);
    }
    // an ImageNet-style eval pipeline and the channel steps
    TransformPipeline *eval = transform_pipeline_parse("resize=20,center_crop=16,grey,rgb", error, sizeof error);
    Image wide = random_image(50, 30, 4);
    Rng rng = rng_make(1, 1);
    CHECK(eval && transform_pipeline_apply(eval, &wide, &rng, error, sizeof error) == 0);
    CHECK(wide.width == 16 && wide.height == 16 && wide.channels == 3 && rng.offset == 0);
    image_free(&wide);
    transform_pipeline_free(eval);
    // NULL and normalize-only pipelines leave the image alone
    Image kept = random_image(3, 2, 3), original;
    transform_crop(&kept, 0, 0, 2, 3, &original, error, sizeof error);
    TransformPipeline *only_normalize = transform_pipeline_parse("normalize=clip", error, sizeof error);
    CHECK(transform_pipeline_apply(NULL, &kept, &rng, error, sizeof error) == 0 && same_image(&kept, &original));
    CHECK(transform_pipeline_apply(only_normalize, &kept, NULL, error, sizeof error) == 0 &&
          same_image(&kept, &original));
    transform_pipeline_free(only_normalize);
    image_free(&kept), image_free(&original);
    // a crop larger than the image: -1, one line naming the step, and the image still valid
    TransformPipeline *big = transform_pipeline_parse("hflip=0,random_crop=40", error, sizeof error);
    Image small = random_image(32, 32, 3);
    CHECK(big && transform_pipeline_apply(big, &small, &rng, error, sizeof error) == -1);
    CHECK_MSG(strstr(error, "random_crop=40:0:constant") && strstr(error, "larger than") && !strchr(error, '\n'),
              "%s", error);
    CHECK(small.pixels && small.width == 32);
    image_free(&small);
    transform_pipeline_free(big);
    // thread safety: the same pipeline on 8 images at once gives what it gives sequentially
    enum { N = 8 };
    Image parallel[N], sequential[N];
    for (int i = 0; i < N; i++) {
        transform_crop(&source, 0, 0, 32, 32, &parallel[i], error, sizeof error);
        transform_crop(&source, 0, 0, 32, 32, &sequential[i], error, sizeof error);
        Rng r = rng_make(6, (uint64_t)i);
        transform_pipeline_apply(strong, &sequential[i], &r, error, sizeof error);
    }
    int failures = 0;
#pragma omp parallel for num_threads(2) reduction(+ : failures)
    for (int i = 0; i < N; i++) {
        char thread_error[256];
        Rng r = rng_make(6, (uint64_t)i);
        failures += transform_pipeline_apply(strong, &parallel[i], &r, thread_error, sizeof thread_error) != 0;
    }
    CHECK(failures == 0);
    for (int i = 0; i < N; i++) {
        CHECK(same_image(&parallel[i], &sequential[i]));
        image_free(&parallel[i]), image_free(&sequential[i]);
    }
    image_free(&source);
    transform_pipeline_free(weak);
    transform_pipeline_free(strong);
}

int main(void) {
    RUN_TEST(functional_transforms_match_torchvision);
    RUN_TEST(randaugment_ops_match_fixmatch);
    RUN_TEST(to_float_matches_torchvision);
    RUN_TEST(normalize_presets_have_the_published_values);
    RUN_TEST(random_crop_is_deterministic_and_stays_inside_the_padded_image);
    RUN_TEST(random_resized_crop_respects_scale_ratio_and_bounds);
    RUN_TEST(random_hflip_frequency_is_p);
    RUN_TEST(color_jitter_draws_and_order_as_torchvision);
    RUN_TEST(randaugment_draws_as_fixmatch);
    RUN_TEST(functional_errors_are_one_line);
    RUN_TEST(pipeline_spec_round_trips);
    RUN_TEST(pipeline_parse_errors_name_the_step);
    RUN_TEST(pipeline_apply_runs_the_steps);
    return test_summary();
}
