// Image transforms matching torchvision 0.14 on PIL images (Pillow 9.4) and FixMatch's
// RandAugmentMC; see transforms.h. The arithmetic of each PIL routine is reproduced with the same
// C types (float where PIL uses float, double where it uses double, the same truncations), so the
// results are the same bytes; the comments name the PIL source each part follows.
#include "data/transforms.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---- Errors and image helpers ------------------------------------------------------------------

static int fail(char *error, size_t error_size, const char *format, ...) {
    if (error && error_size) {
        va_list args;
        va_start(args, format);
        vsnprintf(error, error_size, format, args);
        va_end(args);
        for (char *c = error; *c; c++)  // one line whatever the message contains
            if (*c == '\n' || *c == '\r') *c = ' ';
    }
    return -1;
}

static size_t image_bytes(const Image *image) {
    return (size_t)image->width * (size_t)image->height * (size_t)image->channels;
}

// Resets *out and checks `in`: every functional form starts with this.
static int check_input(const char *name, const Image *in, Image *out, char *error,
                       size_t error_size) {
    if (!out) return fail(error, error_size, "%s: NULL output image", name);
    if (in == out) return fail(error, error_size, "%s: input and output are the same Image", name);
    *out = (Image){0};
    if (!in || !in->pixels || in->width <= 0 || in->height <= 0)
        return fail(error, error_size, "%s: empty input image", name);
    if (in->channels != 1 && in->channels != 3 && in->channels != 4)
        return fail(error, error_size, "%s: channels must be 1, 3 or 4 (got %d)", name, in->channels);
    return 0;
}

static int new_image(const char *name, int width, int height, int channels, Image *out,
                     char *error, size_t error_size) {
    *out = (Image){0};
    if (width <= 0 || height <= 0 || (int64_t)width * height > IMAGE_MAX_PIXELS)
        return fail(error, error_size, "%s: output size %dx%d is empty or too large", name, width,
                    height);
    uint8_t *pixels = malloc((size_t)width * height * channels);
    if (!pixels)
        return fail(error, error_size, "%s: out of memory for a %dx%d image", name, width, height);
    *out = (Image){width, height, channels, pixels};
    return 0;
}

static int copy_image(const char *name, const Image *in, Image *out, char *error,
                      size_t error_size) {
    if (new_image(name, in->width, in->height, in->channels, out, error, error_size)) return -1;
    memcpy(out->pixels, in->pixels, image_bytes(in));
    return 0;
}

// Fills every pixel with fill[c] (NULL: 0).
static void fill_image(Image *image, const uint8_t fill[4]) {
    if (!fill) {
        memset(image->pixels, 0, image_bytes(image));
        return;
    }
    size_t n = (size_t)image->width * image->height;
    int c = image->channels;
    for (size_t i = 0; i < n; i++) memcpy(image->pixels + i * c, fill, (size_t)c);
}

// A 3-channel fill (FixMatch's colours) for an image of `channels`: grey takes fill[0], RGBA gets
// alpha 255 (PIL's colour for an RGB tuple on an RGBA image).
static void fill_for_channels(const uint8_t rgb[3], int channels, uint8_t out[4]) {
    out[0] = rgb[0];
    out[1] = channels == 1 ? rgb[0] : rgb[1];
    out[2] = rgb[2];
    out[3] = 255;
}

// ITU-R 601-2 luma as PIL's "L" conversion (Convert.c L24).
static inline uint8_t luma(const uint8_t *p) {
    return (uint8_t)((p[0] * 19595 + p[1] * 38470 + p[2] * 7471 + 0x8000) >> 16);
}

// Python's float modulo: the result has the sign of the divisor.
static double python_fmod(double x, double y) {
    double m = fmod(x, y);
    if (m != 0.0) {
        if ((y < 0) != (m < 0)) m += y;
    } else {
        m = copysign(0.0, y);
    }
    return m;
}

// Python's round(x, 15): correctly rounded decimal (glibc's printf rounds exactly, as dtoa does).
static double round_15_decimals(double x) {
    char text[64];
    snprintf(text, sizeof text, "%.15f", x);
    return strtod(text, NULL);
}

// ---- Geometry -----------------------------------------------------------------------------------

int transform_resize(const Image *in, int height, int width, ResizeFilter filter, Image *out,
                     char *error, size_t error_size) {
    if (check_input("transform_resize", in, out, error, error_size)) return -1;
    if (height <= 0 || width <= 0 || (int64_t)height * width > IMAGE_MAX_PIXELS)
        return fail(error, error_size, "transform_resize: size %dx%d is empty or too large", width,
                    height);
    return image_resize(in, width, height, filter, out, error, error_size);
}

int transform_resize_shorter(const Image *in, int shorter, ResizeFilter filter, Image *out,
                             char *error, size_t error_size) {
    if (check_input("transform_resize_shorter", in, out, error, error_size)) return -1;
    if (shorter <= 0)
        return fail(error, error_size, "transform_resize_shorter: size %d must be positive", shorter);
    int w = in->width, h = in->height;
    int short_side = w <= h ? w : h, long_side = w <= h ? h : w;
    // torchvision: int(requested_new_short * long / short), a true division of exact integers
    double new_long = (double)((int64_t)shorter * long_side) / (double)short_side;
    if (new_long * shorter > (double)IMAGE_MAX_PIXELS)
        return fail(error, error_size, "transform_resize_shorter: output too large (%dx%d to %d)", w,
                    h, shorter);
    int new_w = w <= h ? shorter : (int)new_long;
    int new_h = w <= h ? (int)new_long : shorter;
    if (new_w == w && new_h == h) return copy_image("transform_resize_shorter", in, out, error, error_size);
    return image_resize(in, new_w, new_h, filter, out, error, error_size);
}

// PIL crop: the box may extend past the image; those pixels are 0.
static int crop_unchecked(const char *name, const Image *in, int top, int left, int height,
                          int width, Image *out, char *error, size_t error_size) {
    if (new_image(name, width, height, in->channels, out, error, error_size)) return -1;
    int c = in->channels;
    memset(out->pixels, 0, image_bytes(out));
    int x_begin = left < 0 ? -left : 0;
    int x_end = left + width > in->width ? in->width - left : width;  // exclusive, in out coords
    if (x_end <= x_begin) return 0;
    for (int y = 0; y < height; y++) {
        int sy = top + y;
        if (sy < 0 || sy >= in->height) continue;
        memcpy(out->pixels + ((size_t)y * width + x_begin) * c,
               in->pixels + ((size_t)sy * in->width + left + x_begin) * c, (size_t)(x_end - x_begin) * c);
    }
    return 0;
}

int transform_crop(const Image *in, int top, int left, int height, int width, Image *out,
                   char *error, size_t error_size) {
    if (check_input("transform_crop", in, out, error, error_size)) return -1;
    if (height <= 0 || width <= 0)
        return fail(error, error_size, "transform_crop: size %dx%d must be positive", width, height);
    const int64_t limit = (int64_t)1 << 30;  // keeps every coordinate sum inside int
    if (top <= -limit || left <= -limit || top >= limit || left >= limit || height >= limit ||
        width >= limit)
        return fail(error, error_size, "transform_crop: box (%d, %d, %dx%d) out of range", top, left,
                    width, height);
    return crop_unchecked("transform_crop", in, top, left, height, width, out, error, error_size);
}

// numpy.pad(mode='reflect') source index for position i (may be outside [0, n)): the mirror
// sequence 0, 1, ..., n-1, n-2, ..., 1, 0, 1, ... is periodic with period 2 (n - 1).
static int reflect_index(int64_t i, int n) {
    if (n == 1) return 0;
    int64_t period = 2 * (int64_t)(n - 1);
    int64_t m = i % period;
    if (m < 0) m += period;
    return (int)(m < n ? m : period - m);
}

static int pad_unchecked(const char *name, const Image *in, int left, int top, int right,
                         int bottom, PadMode mode, const uint8_t fill[4], Image *out, char *error,
                         size_t error_size) {
    int64_t w = (int64_t)in->width + left + right, h = (int64_t)in->height + top + bottom;
    if (w > INT_MAX || h > INT_MAX || w * h > IMAGE_MAX_PIXELS)
        return fail(error, error_size, "%s: padded image too large", name);
    if (new_image(name, (int)w, (int)h, in->channels, out, error, error_size)) return -1;
    int c = in->channels;
    if (mode == PAD_CONSTANT) {
        fill_image(out, fill);
        for (int y = 0; y < in->height; y++)
            memcpy(out->pixels + ((size_t)(y + top) * out->width + left) * c,
                   in->pixels + (size_t)y * in->width * c, (size_t)in->width * c);
        return 0;
    }
    for (int y = 0; y < out->height; y++) {
        int sy = reflect_index((int64_t)y - top, in->height);
        const uint8_t *row = in->pixels + (size_t)sy * in->width * c;
        uint8_t *dst = out->pixels + (size_t)y * out->width * c;
        for (int x = 0; x < out->width; x++) {
            int sx = reflect_index((int64_t)x - left, in->width);
            memcpy(dst + (size_t)x * c, row + (size_t)sx * c, (size_t)c);
        }
    }
    return 0;
}

int transform_pad(const Image *in, int left, int top, int right, int bottom, PadMode mode,
                  const uint8_t fill[4], Image *out, char *error, size_t error_size) {
    if (check_input("transform_pad", in, out, error, error_size)) return -1;
    if (left < 0 || top < 0 || right < 0 || bottom < 0)
        return fail(error, error_size, "transform_pad: padding must be >= 0 (got %d, %d, %d, %d)",
                    left, top, right, bottom);
    if (mode != PAD_CONSTANT && mode != PAD_REFLECT)
        return fail(error, error_size, "transform_pad: unknown padding mode %d", (int)mode);
    return pad_unchecked("transform_pad", in, left, top, right, bottom, mode, fill, out, error,
                         error_size);
}

int transform_center_crop(const Image *in, int height, int width, Image *out, char *error,
                          size_t error_size) {
    static const char *const name = "transform_center_crop";
    if (check_input(name, in, out, error, error_size)) return -1;
    if (height <= 0 || width <= 0)
        return fail(error, error_size, "%s: size %dx%d must be positive", name, width, height);
    Image padded = {0};
    const Image *source = in;
    if (width > in->width || height > in->height) {
        // torchvision pads with 0 first: left/top get the floor of half the excess
        int left = width > in->width ? (width - in->width) / 2 : 0;
        int top = height > in->height ? (height - in->height) / 2 : 0;
        int right = width > in->width ? (width - in->width + 1) / 2 : 0;
        int bottom = height > in->height ? (height - in->height + 1) / 2 : 0;
        if (pad_unchecked(name, in, left, top, right, bottom, PAD_CONSTANT, NULL, &padded, error,
                          error_size))
            return -1;
        if (padded.width == width && padded.height == height) {
            *out = padded;
            return 0;
        }
        source = &padded;
    }
    // int(round((H - h) / 2.0)) with Python's round: half to even, which rint does by default
    int top = (int)rint((source->height - height) / 2.0);
    int left = (int)rint((source->width - width) / 2.0);
    int rc = crop_unchecked(name, source, top, left, height, width, out, error, error_size);
    image_free(&padded);
    return rc;
}

int transform_hflip(const Image *in, Image *out, char *error, size_t error_size) {
    if (check_input("transform_hflip", in, out, error, error_size)) return -1;
    if (new_image("transform_hflip", in->width, in->height, in->channels, out, error, error_size))
        return -1;
    int c = in->channels, w = in->width;
    for (int y = 0; y < in->height; y++) {
        const uint8_t *src = in->pixels + (size_t)y * w * c;
        uint8_t *dst = out->pixels + (size_t)y * w * c;
        for (int x = 0; x < w; x++) memcpy(dst + (size_t)x * c, src + (size_t)(w - 1 - x) * c, (size_t)c);
    }
    return 0;
}

// PIL's transform coordinate helpers (Geometry.c): COORD truncates toward zero but maps every
// negative value to -1; FLOOR rounds down. Values beyond int range count as outside the image.
static inline int coord(double v) {
    if (v < 0.0) return -1;
    return v >= (double)INT_MAX ? INT_MAX : (int)v;
}
static inline int64_t fixed_16_16(double v) {  // FIX(v) = FLOOR(v * 65536 + 0.5)
    return (int64_t)floor(v * 65536.0 + 0.5);
}
static inline int64_t floor_shift_16(int64_t v) {  // v >> 16 as an arithmetic shift (floor)
    return v >= 0 ? v >> 16 : ~((~v) >> 16);
}
// check_fixed: both coordinates of the corner map inside +-32768, so 16.16 fixed point holds them.
static bool fits_fixed(const double a[6], int x, int y) {
    return fabs(x * a[0] + y * a[1] + a[2]) < 32768.0 && fabs(x * a[3] + y * a[4] + a[5]) < 32768.0;
}

// ImagingTransformAffine with NEAREST into `out` (already filled with the fill colour): the output
// has the input's size; pixels that map outside the input keep the fill.
static int affine_nearest(const Image *in, const double a[6], Image *out) {
    int w = out->width, h = out->height, c = in->channels;
    int in_w = in->width, in_h = in->height;
#define COPY_PIXEL(dst_x, dst_y, src_x, src_y)                                          \
    memcpy(out->pixels + ((size_t)(dst_y) * w + (dst_x)) * c,                             \
           in->pixels + ((size_t)(src_y) * in_w + (src_x)) * c, (size_t)c)
    if (a[1] == 0 && a[3] == 0) {
        // ImagingScaleAffine: column sources tabulated once in double, rows stepped in double
        int *source_x = calloc((size_t)w, sizeof *source_x);
        if (!source_x) return -1;
        double xo = a[2] + a[0] * 0.5, yo = a[5] + a[4] * 0.5;
        int x_min = w, x_max = 0;
        for (int x = 0; x < w; x++) {
            int xin = coord(xo);
            if (xin >= 0 && xin < in_w) {
                x_max = x + 1;
                if (x < x_min) x_min = x;
                source_x[x] = xin;
            }
            xo += a[0];
        }
        for (int y = 0; y < h; y++) {
            int yin = coord(yo);
            if (yin >= 0 && yin < in_h)
                for (int x = x_min; x < x_max; x++) COPY_PIXEL(x, y, source_x[x], yin);
            yo += a[4];
        }
        free(source_x);
        return 0;
    }
    // PIL's fixed-point path applies when the four corners fit; the extra bound on the
    // coefficients keeps the 16.16 values in int range (PIL would overflow there).
    bool small_coefficients = true;
    for (int i = 0; i < 6; i++) small_coefficients &= fabs(a[i]) < 32768.0;
    if (small_coefficients && fits_fixed(a, 0, 0) && fits_fixed(a, w, h) && fits_fixed(a, 0, h) &&
        fits_fixed(a, w, 0)) {
        int64_t a0 = fixed_16_16(a[0]), a1 = fixed_16_16(a[1]), a3 = fixed_16_16(a[3]),
                a4 = fixed_16_16(a[4]);
        int64_t a2 = fixed_16_16(a[2] + a[0] * 0.5 + a[1] * 0.5);
        int64_t a5 = fixed_16_16(a[5] + a[3] * 0.5 + a[4] * 0.5);
        for (int y = 0; y < h; y++) {
            int64_t xx = a2, yy = a5;
            for (int x = 0; x < w; x++) {
                int64_t xin = floor_shift_16(xx);
                if (xin >= 0 && xin < in_w) {
                    int64_t yin = floor_shift_16(yy);
                    if (yin >= 0 && yin < in_h) COPY_PIXEL(x, y, xin, yin);
                }
                xx += a0;
                yy += a3;
            }
            a2 += a1;
            a5 += a4;
        }
        return 0;
    }
    double xo = a[2] + a[1] * 0.5 + a[0] * 0.5, yo = a[5] + a[4] * 0.5 + a[3] * 0.5;
    for (int y = 0; y < h; y++) {
        double xx = xo, yy = yo;
        for (int x = 0; x < w; x++) {
            int xin = coord(xx);
            if (xin >= 0 && xin < in_w) {
                int yin = coord(yy);
                if (yin >= 0 && yin < in_h) COPY_PIXEL(x, y, xin, yin);
            }
            xx += a[0];
            yy += a[3];
        }
        xo += a[1];
        yo += a[4];
    }
#undef COPY_PIXEL
    return 0;
}

int transform_affine(const Image *in, const double matrix[6], const uint8_t fill[4], Image *out,
                     char *error, size_t error_size) {
    static const char *const name = "transform_affine";
    if (check_input(name, in, out, error, error_size)) return -1;
    if (!matrix) return fail(error, error_size, "%s: NULL matrix", name);
    for (int i = 0; i < 6; i++)
        if (!isfinite(matrix[i]))
            return fail(error, error_size, "%s: matrix entry %d is not finite", name, i);
    if (new_image(name, in->width, in->height, in->channels, out, error, error_size)) return -1;
    fill_image(out, fill);
    if (affine_nearest(in, matrix, out)) {
        image_free(out);
        return fail(error, error_size, "%s: out of memory", name);
    }
    return 0;
}

// PIL's Transpose.ROTATE_180 and, for square images, ROTATE_90 / ROTATE_270.
static void rotate_exact(const Image *in, int quarter_turns, Image *out) {
    int w = in->width, h = in->height, c = in->channels;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int sx, sy;
            if (quarter_turns == 1) sx = w - 1 - y, sy = x;        // counter-clockwise
            else if (quarter_turns == 2) sx = w - 1 - x, sy = h - 1 - y;
            else sx = y, sy = h - 1 - x;                            // clockwise
            memcpy(out->pixels + ((size_t)y * w + x) * c, in->pixels + ((size_t)sy * w + sx) * c, (size_t)c);
        }
}

int transform_rotate(const Image *in, double angle_degrees, const uint8_t fill[4], Image *out,
                     char *error, size_t error_size) {
    static const char *const name = "transform_rotate";
    if (check_input(name, in, out, error, error_size)) return -1;
    if (!isfinite(angle_degrees)) return fail(error, error_size, "%s: angle is not finite", name);
    double angle = python_fmod(angle_degrees, 360.0);
    if (angle == 0) return copy_image(name, in, out, error, error_size);
    if (angle == 180 || ((angle == 90 || angle == 270) && in->width == in->height)) {
        if (new_image(name, in->width, in->height, in->channels, out, error, error_size)) return -1;
        rotate_exact(in, angle == 90 ? 1 : angle == 180 ? 2 : 3, out);
        return 0;
    }
    // Image.rotate's inverse matrix about (w / 2, h / 2), entries as Python computes them
    double center_x = in->width / 2.0, center_y = in->height / 2.0;
    double radians = -(angle * (M_PI / 180.0));  // -math.radians(angle)
    double m[6] = {round_15_decimals(cos(radians)), round_15_decimals(sin(radians)), 0.0,
                   round_15_decimals(-sin(radians)), round_15_decimals(cos(radians)), 0.0};
    double x = -center_x, y = -center_y;
    double c = m[0] * x + m[1] * y + m[2], f = m[3] * x + m[4] * y + m[5];
    m[2] = c + center_x;
    m[5] = f + center_y;
    return transform_affine(in, m, fill, out, error, error_size);
}

int transform_shear_x(const Image *in, double v, const uint8_t fill[4], Image *out, char *error,
                      size_t error_size) {
    const double m[6] = {1, v, 0, 0, 1, 0};
    return transform_affine(in, m, fill, out, error, error_size);
}

int transform_shear_y(const Image *in, double v, const uint8_t fill[4], Image *out, char *error,
                      size_t error_size) {
    const double m[6] = {1, 0, 0, v, 1, 0};
    return transform_affine(in, m, fill, out, error, error_size);
}

int transform_translate_x(const Image *in, int pixels, const uint8_t fill[4], Image *out,
                          char *error, size_t error_size) {
    const double m[6] = {1, 0, pixels, 0, 1, 0};
    return transform_affine(in, m, fill, out, error, error_size);
}

int transform_translate_y(const Image *in, int pixels, const uint8_t fill[4], Image *out,
                          char *error, size_t error_size) {
    const double m[6] = {1, 0, 0, 0, 1, pixels};
    return transform_affine(in, m, fill, out, error, error_size);
}

int transform_cutout(const Image *in, double center_x, double center_y, int size,
                     const uint8_t fill[4], Image *out, char *error, size_t error_size) {
    static const char *const name = "transform_cutout";
    if (check_input(name, in, out, error, error_size)) return -1;
    if (size < 0 || !isfinite(center_x) || !isfinite(center_y))
        return fail(error, error_size, "%s: size must be >= 0 and the centre finite", name);
    if (copy_image(name, in, out, error, error_size)) return -1;
    int w = in->width, h = in->height, c = in->channels;
    // CutoutAbs: x0 = int(max(0, x0 - v / 2.)), x1 = int(min(w, x0 + v)); likewise y
    double left = fmax(0.0, center_x - size / 2.0), top = fmax(0.0, center_y - size / 2.0);
    if (left >= w || top >= h) return 0;  // a centre outside the image draws nothing
    int x0 = (int)left, y0 = (int)top;
    int x1 = (int)fmin((double)w, (double)x0 + size), y1 = (int)fmin((double)h, (double)y0 + size);
    // ImageDraw.rectangle includes (x1, y1); clip to the image
    if (x1 > w - 1) x1 = w - 1;
    if (y1 > h - 1) y1 = h - 1;
    uint8_t colour[4] = {0, 0, 0, 0};
    if (fill) memcpy(colour, fill, 4);
    for (int y = y0; y <= y1; y++)
        for (int x = x0; x <= x1; x++) memcpy(out->pixels + ((size_t)y * w + x) * c, colour, (size_t)c);
    return 0;
}

// ---- Channels -----------------------------------------------------------------------------------

int transform_to_grey(const Image *in, Image *out, char *error, size_t error_size) {
    static const char *const name = "transform_to_grey";
    if (check_input(name, in, out, error, error_size)) return -1;
    if (in->channels == 1) return copy_image(name, in, out, error, error_size);
    if (new_image(name, in->width, in->height, 1, out, error, error_size)) return -1;
    size_t n = (size_t)in->width * in->height;
    for (size_t i = 0; i < n; i++) out->pixels[i] = luma(in->pixels + i * in->channels);
    return 0;
}

int transform_to_rgb(const Image *in, Image *out, char *error, size_t error_size) {
    static const char *const name = "transform_to_rgb";
    if (check_input(name, in, out, error, error_size)) return -1;
    if (in->channels == 3) return copy_image(name, in, out, error, error_size);
    if (new_image(name, in->width, in->height, 3, out, error, error_size)) return -1;
    size_t n = (size_t)in->width * in->height;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = in->pixels + i * in->channels;
        uint8_t *q = out->pixels + i * 3;
        if (in->channels == 1) q[0] = q[1] = q[2] = p[0];
        else memcpy(q, p, 3);
    }
    return 0;
}

// ---- Colour -------------------------------------------------------------------------------------

// ImagingBlend(degenerate, image, (float)factor) over every byte (Blend.c). The degenerate images
// carry the input's alpha, so alpha comes out unchanged (d + f * 0).
static void blend(const uint8_t *degenerate, const uint8_t *image, size_t n, double factor,
                  uint8_t *out) {
    float alpha = (float)factor;
    if (alpha == 0.0f) {
        memcpy(out, degenerate, n);
    } else if (alpha == 1.0f) {
        memcpy(out, image, n);
    } else if (alpha >= 0 && alpha <= 1.0) {
        for (size_t i = 0; i < n; i++)
            out[i] = (uint8_t)((int)degenerate[i] + alpha * ((int)image[i] - (int)degenerate[i]));
    } else {
        for (size_t i = 0; i < n; i++) {
            float value = (float)((int)degenerate[i] + alpha * ((int)image[i] - (int)degenerate[i]));
            out[i] = value <= 0.0 ? 0 : value >= 255.0 ? 255 : (uint8_t)value;
        }
    }
}

static int check_factor(const char *name, double factor, char *error, size_t error_size) {
    if (!isfinite(factor) || factor < 0)
        return fail(error, error_size, "%s: factor must be finite and >= 0 (got %g)", name, factor);
    return 0;
}

// Builds the degenerate image with `make_degenerate` and blends the input toward it.
static int enhance(const char *name, const Image *in, double factor,
                   void (*make_degenerate)(const Image *in, uint8_t *degenerate), Image *out,
                   char *error, size_t error_size) {
    if (check_input(name, in, out, error, error_size)) return -1;
    if (check_factor(name, factor, error, error_size)) return -1;
    if (new_image(name, in->width, in->height, in->channels, out, error, error_size)) return -1;
    uint8_t *degenerate = malloc(image_bytes(in));
    if (!degenerate) {
        image_free(out);
        return fail(error, error_size, "%s: out of memory", name);
    }
    make_degenerate(in, degenerate);
    blend(degenerate, in->pixels, image_bytes(in), factor, out->pixels);
    free(degenerate);
    return 0;
}

// Colour channels set to `value(pixel)`, alpha copied.
static void degenerate_black(const Image *in, uint8_t *d) {
    size_t n = (size_t)in->width * in->height;
    int c = in->channels;
    memset(d, 0, n * c);
    if (c == 4)
        for (size_t i = 0; i < n; i++) d[i * 4 + 3] = in->pixels[i * 4 + 3];
}

// ImageStat.Stat(image.convert("L")).mean, rounded as ImageEnhance.Contrast: int(mean + 0.5).
static int grey_mean(const Image *in) {
    int64_t histogram[256] = {0};
    size_t n = (size_t)in->width * in->height;
    int c = in->channels;
    for (size_t i = 0; i < n; i++) histogram[c == 1 ? in->pixels[i] : luma(in->pixels + i * c)]++;
    double sum = 0.0;  // Python accumulates j * h[j] into a float
    int64_t count = 0;
    for (int j = 0; j < 256; j++) {
        sum += (double)(j * histogram[j]);
        count += histogram[j];
    }
    return (int)(sum / (double)count + 0.5);
}

static void degenerate_mean(const Image *in, uint8_t *d) {
    uint8_t mean = (uint8_t)grey_mean(in);
    size_t n = (size_t)in->width * in->height;
    int c = in->channels;
    for (size_t i = 0; i < n; i++) {
        for (int k = 0; k < (c == 4 ? 3 : c); k++) d[i * c + k] = mean;
        if (c == 4) d[i * 4 + 3] = in->pixels[i * 4 + 3];
    }
}

static void degenerate_grey(const Image *in, uint8_t *d) {
    size_t n = (size_t)in->width * in->height;
    int c = in->channels;
    if (c == 1) {
        memcpy(d, in->pixels, n);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        uint8_t l = luma(in->pixels + i * c);
        d[i * c] = d[i * c + 1] = d[i * c + 2] = l;
        if (c == 4) d[i * 4 + 3] = in->pixels[i * 4 + 3];
    }
}

// ImageFilter.SMOOTH through ImagingFilter3x3 (Filter.c): kernel entries (float)k / 13.0f, sum
// started at offset 0.5, rows added bottom (y + 1), middle, top, each row left to right in float,
// then truncated and clipped. Border rows and columns are copied; smaller than 3x3: a copy.
static void degenerate_smooth(const Image *in, uint8_t *d) {
    int w = in->width, h = in->height, c = in->channels;
    memcpy(d, in->pixels, image_bytes(in));
    if (w < 3 || h < 3) return;
    const float edge = 1.0f / 13.0f, centre = 5.0f / 13.0f;
    const float k_bottom[3] = {edge, edge, edge}, k_middle[3] = {edge, centre, edge},
                k_top[3] = {edge, edge, edge};
    size_t stride = (size_t)w * c;
    for (int y = 1; y < h - 1; y++) {
        const uint8_t *above = in->pixels + (size_t)(y - 1) * stride;
        const uint8_t *row = in->pixels + (size_t)y * stride;
        const uint8_t *below = in->pixels + (size_t)(y + 1) * stride;
        uint8_t *dst = d + (size_t)y * stride;
        for (int x = 1; x < w - 1; x++)
            for (int k = 0; k < c; k++) {
                size_t i = (size_t)x * c + k;
                float sum = 0.5f;
                sum += (float)below[i - c] * k_bottom[0] + (float)below[i] * k_bottom[1] +
                       (float)below[i + c] * k_bottom[2];
                sum += (float)row[i - c] * k_middle[0] + (float)row[i] * k_middle[1] +
                       (float)row[i + c] * k_middle[2];
                sum += (float)above[i - c] * k_top[0] + (float)above[i] * k_top[1] +
                       (float)above[i + c] * k_top[2];
                dst[i] = sum <= 0.0 ? 0 : sum >= 255.0 ? 255 : (uint8_t)sum;
            }
    }
    if (c == 4)  // Sharpness puts the original alpha back
        for (size_t i = 0; i < (size_t)w * h; i++) d[i * 4 + 3] = in->pixels[i * 4 + 3];
}

int transform_adjust_brightness(const Image *in, double factor, Image *out, char *error,
                                size_t error_size) {
    return enhance("transform_adjust_brightness", in, factor, degenerate_black, out, error, error_size);
}

int transform_adjust_contrast(const Image *in, double factor, Image *out, char *error,
                              size_t error_size) {
    return enhance("transform_adjust_contrast", in, factor, degenerate_mean, out, error, error_size);
}

int transform_adjust_saturation(const Image *in, double factor, Image *out, char *error,
                                size_t error_size) {
    return enhance("transform_adjust_saturation", in, factor, degenerate_grey, out, error, error_size);
}

int transform_adjust_sharpness(const Image *in, double factor, Image *out, char *error,
                               size_t error_size) {
    return enhance("transform_adjust_sharpness", in, factor, degenerate_smooth, out, error, error_size);
}

static inline uint8_t clip8(int v) { return v <= 0 ? 0 : v < 256 ? (uint8_t)v : 255; }

// rgb2hsv_row (Convert.c, "following colorsys.py"), with its float/double mix.
static void rgb_to_hsv(const uint8_t *rgb, uint8_t hsv[3]) {
    uint8_t r = rgb[0], g = rgb[1], b = rgb[2];
    uint8_t maxc = r > g ? (r > b ? r : b) : (g > b ? g : b);
    uint8_t minc = r < g ? (r < b ? r : b) : (g < b ? g : b);
    hsv[2] = maxc;
    if (minc == maxc) {
        hsv[0] = hsv[1] = 0;
        return;
    }
    float h, s, rc, gc, bc, cr;
    cr = (float)(maxc - minc);
    s = cr / (float)maxc;
    rc = ((float)(maxc - r)) / cr;
    gc = ((float)(maxc - g)) / cr;
    bc = ((float)(maxc - b)) / cr;
    if (r == maxc) h = bc - gc;
    else if (g == maxc) h = 2.0 + rc - bc;
    else h = 4.0 + gc - rc;
    h = fmod((h / 6.0 + 1.0), 1.0);
    hsv[0] = clip8((int)(h * 255.0));
    hsv[1] = clip8((int)(s * 255.0));
}

// hsv2rgb (Convert.c), same arithmetic.
static void hsv_to_rgb(const uint8_t hsv[3], uint8_t *rgb) {
    uint8_t h = hsv[0], s = hsv[1], v = hsv[2];
    if (s == 0) {
        rgb[0] = rgb[1] = rgb[2] = v;
        return;
    }
    int i = (int)floor((float)h * 6.0 / 255.0);
    float f = (float)h * 6.0 / 255.0 - (float)i;
    float fs = ((float)s) / 255.0;
    uint8_t p = clip8((int)round((float)v * (1.0 - fs)));
    uint8_t q = clip8((int)round((float)v * (1.0 - fs * f)));
    uint8_t t = clip8((int)round((float)v * (1.0 - fs * (1.0 - f))));
    switch (i % 6) {
        case 0: rgb[0] = v, rgb[1] = t, rgb[2] = p; break;
        case 1: rgb[0] = q, rgb[1] = v, rgb[2] = p; break;
        case 2: rgb[0] = p, rgb[1] = v, rgb[2] = t; break;
        case 3: rgb[0] = p, rgb[1] = q, rgb[2] = v; break;
        case 4: rgb[0] = t, rgb[1] = p, rgb[2] = v; break;
        default: rgb[0] = v, rgb[1] = p, rgb[2] = q; break;
    }
}

int transform_adjust_hue(const Image *in, double hue_factor, Image *out, char *error,
                         size_t error_size) {
    static const char *const name = "transform_adjust_hue";
    if (check_input(name, in, out, error, error_size)) return -1;
    if (!(hue_factor >= -0.5 && hue_factor <= 0.5))
        return fail(error, error_size, "%s: hue_factor %g is not in [-0.5, 0.5]", name, hue_factor);
    if (copy_image(name, in, out, error, error_size)) return -1;
    if (in->channels == 1) return 0;
    // np.uint8(hue_factor * 255): truncated toward zero, negative values wrap mod 256
    uint8_t shift = (uint8_t)(int)(hue_factor * 255);
    size_t n = (size_t)in->width * in->height;
    int c = in->channels;
    for (size_t i = 0; i < n; i++) {
        uint8_t hsv[3];
        rgb_to_hsv(in->pixels + i * c, hsv);
        hsv[0] = (uint8_t)(hsv[0] + shift);
        hsv_to_rgb(hsv, out->pixels + i * c);
    }
    return 0;
}

// Applies one 256-entry table per colour channel (alpha untouched), as Image.point does.
static int apply_tables(const char *name, const Image *in, uint8_t tables[3][256], Image *out,
                        char *error, size_t error_size) {
    if (copy_image(name, in, out, error, error_size)) return -1;
    size_t n = (size_t)in->width * in->height;
    int c = in->channels, colours = c == 4 ? 3 : c;
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < colours; k++) out->pixels[i * c + k] = tables[k][in->pixels[i * c + k]];
    return 0;
}

static void channel_histograms(const Image *in, int64_t histograms[3][256]) {
    memset(histograms, 0, sizeof(int64_t) * 3 * 256);
    size_t n = (size_t)in->width * in->height;
    int c = in->channels, colours = c == 4 ? 3 : c;
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < colours; k++) histograms[k][in->pixels[i * c + k]]++;
}

int transform_autocontrast(const Image *in, Image *out, char *error, size_t error_size) {
    static const char *const name = "transform_autocontrast";
    if (check_input(name, in, out, error, error_size)) return -1;
    int64_t histograms[3][256];
    uint8_t tables[3][256];
    channel_histograms(in, histograms);
    for (int k = 0; k < 3; k++) {
        const int64_t *h = histograms[k];
        int lo = 0, hi = 255;
        while (lo < 255 && !h[lo]) lo++;
        while (hi > 0 && !h[hi]) hi--;
        if (hi <= lo) {
            for (int i = 0; i < 256; i++) tables[k][i] = (uint8_t)i;
            continue;
        }
        double scale = 255.0 / (hi - lo);
        double offset = -lo * scale;
        for (int i = 0; i < 256; i++) {
            int v = (int)(i * scale + offset);  // Python int(): toward zero, then clipped
            tables[k][i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    }
    return apply_tables(name, in, tables, out, error, error_size);
}

int transform_equalize(const Image *in, Image *out, char *error, size_t error_size) {
    static const char *const name = "transform_equalize";
    if (check_input(name, in, out, error, error_size)) return -1;
    int64_t histograms[3][256];
    uint8_t tables[3][256];
    channel_histograms(in, histograms);
    for (int k = 0; k < 3; k++) {
        const int64_t *h = histograms[k];
        int64_t total = 0, last = 0;
        int used = 0;
        for (int i = 0; i < 256; i++)
            if (h[i]) total += h[i], last = h[i], used++;
        int64_t step = used <= 1 ? 0 : (total - last) / 255;
        if (!step) {
            for (int i = 0; i < 256; i++) tables[k][i] = (uint8_t)i;
            continue;
        }
        int64_t acc = step / 2;
        for (int i = 0; i < 256; i++) {
            int64_t v = acc / step;  // Image.point clips table entries to 255 (CLIP8)
            tables[k][i] = (uint8_t)(v > 255 ? 255 : v);
            acc += h[i];
        }
    }
    return apply_tables(name, in, tables, out, error, error_size);
}

int transform_posterize(const Image *in, int bits, Image *out, char *error, size_t error_size) {
    static const char *const name = "transform_posterize";
    if (check_input(name, in, out, error, error_size)) return -1;
    if (bits < 0 || bits > 8) return fail(error, error_size, "%s: bits must be in 0..8 (got %d)", name, bits);
    uint8_t tables[3][256];
    int mask = ~((1 << (8 - bits)) - 1);
    for (int i = 0; i < 256; i++) tables[0][i] = tables[1][i] = tables[2][i] = (uint8_t)(i & mask);
    return apply_tables(name, in, tables, out, error, error_size);
}

int transform_solarize(const Image *in, double threshold, Image *out, char *error,
                       size_t error_size) {
    static const char *const name = "transform_solarize";
    if (check_input(name, in, out, error, error_size)) return -1;
    if (isnan(threshold)) return fail(error, error_size, "%s: threshold is NaN", name);
    uint8_t tables[3][256];
    for (int i = 0; i < 256; i++)
        tables[0][i] = tables[1][i] = tables[2][i] = (uint8_t)(i < threshold ? i : 255 - i);
    return apply_tables(name, in, tables, out, error, error_size);
}

// ---- To float -----------------------------------------------------------------------------------

int transform_normalize_preset(const char *name, NormalizeParams *out) {
    static const struct {
        const char *name;
        NormalizeParams params;
    } presets[] = {
        {"imagenet", {{0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f}}},
        {"clip", {{0.48145466f, 0.4578275f, 0.40821073f}, {0.26862954f, 0.26130258f, 0.27577711f}}},
        {"half", {{0.5f, 0.5f, 0.5f}, {0.5f, 0.5f, 0.5f}}},
        {"none", {{0.0f, 0.0f, 0.0f}, {1.0f, 1.0f, 1.0f}}},
    };
    for (size_t i = 0; name && i < sizeof presets / sizeof presets[0]; i++)
        if (!strcmp(name, presets[i].name)) {
            if (out) *out = presets[i].params;
            return 0;
        }
    return -1;
}

void transform_to_float(const Image *image, const NormalizeParams *params, float *out) {
    size_t plane = (size_t)image->width * image->height;
    int c = image->channels;
    for (int k = 0; k < c; k++) {
        bool normalized = params && k < 3;
        float mean = normalized ? params->mean[k] : 0.0f, std = normalized ? params->std[k] : 1.0f;
        // A table of the 256 results, each computed exactly as torchvision does, keeps the output
        // bit-identical while the loop becomes a gather (the division was most of its time).
        float table[256];
        for (int v = 0; v < 256; v++) {
            float x = (float)v / 255.0f;                         // F.to_tensor: div(255)
            table[v] = normalized ? (x - mean) / std : x;        // F.normalize: sub_(mean).div_(std)
        }
        float *dst = out + (size_t)k * plane;
        const uint8_t *src = image->pixels + k;
        for (size_t i = 0; i < plane; i++) dst[i] = table[src[i * c]];
    }
}

// ---- Random forms -------------------------------------------------------------------------------

static double uniform_f64(Rng *rng, double low, double high) {
    double v;
    rng_fill_uniform_f64(rng, &v, 1, low, high);
    return v;
}

static float uniform_f32(Rng *rng, float low, float high) {
    float v;
    rng_fill_uniform_f32(rng, &v, 1, low, high);
    return v;
}

int transform_random_crop(const Image *in, int height, int width, int padding, PadMode mode,
                          Rng *rng, Image *out, char *error, size_t error_size) {
    static const char *const name = "transform_random_crop";
    if (check_input(name, in, out, error, error_size)) return -1;
    if (height <= 0 || width <= 0 || padding < 0 || (mode != PAD_CONSTANT && mode != PAD_REFLECT))
        return fail(error, error_size, "%s: bad size %dx%d, padding %d or mode", name, width, height,
                    padding);
    Image padded = {0};
    const Image *source = in;
    if (padding > 0) {
        if (pad_unchecked(name, in, padding, padding, padding, padding, mode, NULL, &padded, error,
                          error_size))
            return -1;
        source = &padded;
    }
    int rc;
    if (height > source->height || width > source->width) {
        rc = fail(error, error_size, "%s: crop %dx%d is larger than the %simage %dx%d", name, width,
                  height, padding ? "padded " : "", source->width, source->height);
    } else {
        int top = 0, left = 0;
        if (height != source->height || width != source->width) {  // get_params draws only then
            top = (int)rng_int(rng, (int64_t)source->height - height + 1);
            left = (int)rng_int(rng, (int64_t)source->width - width + 1);
        }
        rc = crop_unchecked(name, source, top, left, height, width, out, error, error_size);
    }
    image_free(&padded);
    return rc;
}

void transform_random_resized_crop_params(int image_height, int image_width, double scale_min,
                                          double scale_max, double ratio_min, double ratio_max,
                                          Rng *rng, int *top, int *left, int *height, int *width) {
    double area = (double)image_height * image_width;
    // torch.log(torch.tensor(ratio)) and the uniform draws are float32, as in torchvision
    float log_ratio_min = logf((float)ratio_min), log_ratio_max = logf((float)ratio_max);
    for (int attempt = 0; attempt < 10; attempt++) {
        double target_area = area * (double)uniform_f32(rng, (float)scale_min, (float)scale_max);
        double aspect_ratio = (double)expf(uniform_f32(rng, log_ratio_min, log_ratio_max));
        double w = rint(sqrt(target_area * aspect_ratio)), h = rint(sqrt(target_area / aspect_ratio));
        if (0 < w && w <= image_width && 0 < h && h <= image_height) {
            *height = (int)h;
            *width = (int)w;
            *top = (int)rng_int(rng, image_height - *height + 1);
            *left = (int)rng_int(rng, image_width - *width + 1);
            return;
        }
    }
    // the central fallback crop, clamped to the ratio range
    double in_ratio = (double)image_width / (double)image_height;
    int w = image_width, h = image_height;
    if (in_ratio < ratio_min) h = (int)rint(w / ratio_min);
    else if (in_ratio > ratio_max) w = (int)rint(h * ratio_max);
    if (h < 1) h = 1;
    if (w < 1) w = 1;
    *height = h;
    *width = w;
    *top = (image_height - h) / 2;
    *left = (image_width - w) / 2;
}

int transform_random_resized_crop(const Image *in, int height, int width, double scale_min,
                                  double scale_max, double ratio_min, double ratio_max, Rng *rng,
                                  Image *out, char *error, size_t error_size) {
    static const char *const name = "transform_random_resized_crop";
    if (check_input(name, in, out, error, error_size)) return -1;
    if (height <= 0 || width <= 0)
        return fail(error, error_size, "%s: size %dx%d must be positive", name, width, height);
    if (!(scale_min > 0 && scale_min <= scale_max && scale_max <= 1) ||
        !(ratio_min > 0 && ratio_min <= ratio_max && isfinite(ratio_max)))
        return fail(error, error_size, "%s: need 0 < scale_min <= scale_max <= 1 and 0 < ratio_min <= "
                    "ratio_max (got scale %g..%g, ratio %g..%g)", name, scale_min, scale_max,
                    ratio_min, ratio_max);
    int top, left, crop_h, crop_w;
    transform_random_resized_crop_params(in->height, in->width, scale_min, scale_max, ratio_min,
                                         ratio_max, rng, &top, &left, &crop_h, &crop_w);
    Image cropped;
    if (crop_unchecked(name, in, top, left, crop_h, crop_w, &cropped, error, error_size)) return -1;
    int rc = 0;
    if (cropped.width == width && cropped.height == height) *out = cropped;
    else {
        rc = image_resize(&cropped, width, height, RESIZE_BILINEAR, out, error, error_size);
        image_free(&cropped);
    }
    return rc;
}

int transform_random_hflip(const Image *in, double p, Rng *rng, Image *out, char *error,
                           size_t error_size) {
    static const char *const name = "transform_random_hflip";
    if (check_input(name, in, out, error, error_size)) return -1;
    if (!(p >= 0 && p <= 1)) return fail(error, error_size, "%s: p %g is not in [0, 1]", name, p);
    if (rng_uniform(rng) < p) return transform_hflip(in, out, error, error_size);
    return copy_image(name, in, out, error, error_size);
}

// Replaces *image by the result of `rc`'s transform when it succeeded (frees the old pixels).
static int replace(Image *image, Image *result, int rc) {
    if (rc) return -1;
    image_free(image);
    *image = *result;
    return 0;
}

int transform_color_jitter(const Image *in, double brightness, double contrast, double saturation,
                           double hue, Rng *rng, Image *out, char *error, size_t error_size) {
    static const char *const name = "transform_color_jitter";
    if (check_input(name, in, out, error, error_size)) return -1;
    if (!(brightness >= 0 && contrast >= 0 && saturation >= 0 && isfinite(brightness) &&
          isfinite(contrast) && isfinite(saturation) && hue >= 0 && hue <= 0.5))
        return fail(error, error_size, "%s: need brightness, contrast, saturation >= 0 and hue in "
                    "[0, 0.5] (got %g, %g, %g, %g)", name, brightness, contrast, saturation, hue);
    // ColorJitter.get_params: a permutation of the four, then the factors of the enabled ones
    int64_t order[4];
    rng_permutation(rng, order, 4);
    const double amounts[4] = {brightness, contrast, saturation, hue};
    double factors[4] = {0};
    for (int k = 0; k < 4; k++) {
        if (amounts[k] == 0) continue;
        double low = k == 3 ? -hue : fmax(0.0, 1.0 - amounts[k]);
        double high = k == 3 ? hue : 1.0 + amounts[k];
        factors[k] = (double)uniform_f32(rng, (float)low, (float)high);
    }
    if (copy_image(name, in, out, error, error_size)) return -1;
    for (int i = 0; i < 4; i++) {
        int k = (int)order[i];
        if (amounts[k] == 0) continue;
        Image next;
        int rc = k == 0   ? transform_adjust_brightness(out, factors[k], &next, error, error_size)
                 : k == 1 ? transform_adjust_contrast(out, factors[k], &next, error, error_size)
                 : k == 2 ? transform_adjust_saturation(out, factors[k], &next, error, error_size)
                          : transform_adjust_hue(out, factors[k], &next, error, error_size);
        if (replace(out, &next, rc)) {
            image_free(out);
            return -1;
        }
    }
    return 0;
}

static const uint8_t CUTOUT_FILL[4] = {127, 127, 127, 255};

int transform_random_cutout(const Image *in, int size, const uint8_t fill[4], Rng *rng, Image *out,
                            char *error, size_t error_size) {
    if (check_input("transform_random_cutout", in, out, error, error_size)) return -1;
    double center_x = uniform_f64(rng, 0.0, in->width);
    double center_y = uniform_f64(rng, 0.0, in->height);
    return transform_cutout(in, center_x, center_y, size, fill, out, error, error_size);
}

// ---- RandAugment --------------------------------------------------------------------------------

static const char *const RANDAUGMENT_NAMES[RANDAUGMENT_OP_COUNT] = {
    "AutoContrast", "Brightness", "Color",  "Contrast", "Equalize",  "Identity",   "Posterize",
    "Rotate",       "Sharpness",  "ShearX", "ShearY",   "Solarize", "TranslateX", "TranslateY"};

const char *randaugment_op_name(RandAugmentOp op) {
    return (int)op >= 0 && op < RANDAUGMENT_OP_COUNT ? RANDAUGMENT_NAMES[op] : NULL;
}

bool randaugment_op_is_signed(RandAugmentOp op) {
    return op == RANDAUGMENT_ROTATE || op == RANDAUGMENT_SHEAR_X || op == RANDAUGMENT_SHEAR_Y ||
           op == RANDAUGMENT_TRANSLATE_X || op == RANDAUGMENT_TRANSLATE_Y;
}

// _float_parameter(v, max_v) + bias = float(v) * max_v / 10 + bias; _int_parameter = int(v * max_v / 10)
static double float_parameter(int v, double max_v, double bias) { return (double)v * max_v / 10 + bias; }
static int int_parameter(int v, int max_v) { return (int)((double)((int64_t)v * max_v) / 10); }

int transform_randaugment_op(const Image *in, RandAugmentOp op, int v, bool negate,
                             const uint8_t fill[3], Image *out, char *error, size_t error_size) {
    static const char *const name = "transform_randaugment_op";
    if (check_input(name, in, out, error, error_size)) return -1;
    if (!randaugment_op_name(op)) return fail(error, error_size, "%s: unknown op %d", name, (int)op);
    if (v < 0 || v > 1000) return fail(error, error_size, "%s: magnitude %d out of range 0..1000", name, v);
    static const uint8_t black[3] = {0, 0, 0};
    uint8_t colour[4];
    fill_for_channels(fill ? fill : black, in->channels, colour);
    double sign = negate ? -1.0 : 1.0;
    switch (op) {
        case RANDAUGMENT_AUTOCONTRAST: return transform_autocontrast(in, out, error, error_size);
        case RANDAUGMENT_BRIGHTNESS:
            return transform_adjust_brightness(in, float_parameter(v, 0.9, 0.05), out, error, error_size);
        case RANDAUGMENT_COLOR:
            return transform_adjust_saturation(in, float_parameter(v, 0.9, 0.05), out, error, error_size);
        case RANDAUGMENT_CONTRAST:
            return transform_adjust_contrast(in, float_parameter(v, 0.9, 0.05), out, error, error_size);
        case RANDAUGMENT_EQUALIZE: return transform_equalize(in, out, error, error_size);
        case RANDAUGMENT_IDENTITY: return copy_image(name, in, out, error, error_size);
        case RANDAUGMENT_POSTERIZE: {
            int bits = int_parameter(v, 4) + 4;
            return transform_posterize(in, bits > 8 ? 8 : bits, out, error, error_size);
        }
        case RANDAUGMENT_ROTATE:
            return transform_rotate(in, sign * int_parameter(v, 30), colour, out, error, error_size);
        case RANDAUGMENT_SHARPNESS:
            return transform_adjust_sharpness(in, float_parameter(v, 0.9, 0.05), out, error, error_size);
        case RANDAUGMENT_SHEAR_X:
            return transform_shear_x(in, sign * float_parameter(v, 0.3, 0), colour, out, error, error_size);
        case RANDAUGMENT_SHEAR_Y:
            return transform_shear_y(in, sign * float_parameter(v, 0.3, 0), colour, out, error, error_size);
        case RANDAUGMENT_SOLARIZE:
            return transform_solarize(in, 256 - int_parameter(v, 256), out, error, error_size);
        case RANDAUGMENT_TRANSLATE_X:
            return transform_translate_x(in, (int)(sign * float_parameter(v, 0.3, 0) * in->width),
                                         colour, out, error, error_size);
        case RANDAUGMENT_TRANSLATE_Y:
            return transform_translate_y(in, (int)(sign * float_parameter(v, 0.3, 0) * in->height),
                                         colour, out, error, error_size);
        default: return fail(error, error_size, "%s: unknown op %d", name, (int)op);
    }
}

#define RANDAUGMENT_MAX_OPS 64

int transform_randaugment(const Image *in, int num_ops, int magnitude, const uint8_t geometric_fill[3],
                          Rng *rng, Image *out, char *error, size_t error_size) {
    static const char *const name = "transform_randaugment";
    if (check_input(name, in, out, error, error_size)) return -1;
    if (num_ops < 1 || num_ops > RANDAUGMENT_MAX_OPS || magnitude < 2 || magnitude > 10)
        return fail(error, error_size, "%s: need 1 <= n <= %d and 2 <= m <= 10 (got n %d, m %d)", name,
                    RANDAUGMENT_MAX_OPS, num_ops, magnitude);
    // random.choices(pool, k=n) first, then per op: v = randint(1, m), apply with p 0.5
    int ops[RANDAUGMENT_MAX_OPS];
    for (int i = 0; i < num_ops; i++) ops[i] = (int)rng_int(rng, RANDAUGMENT_OP_COUNT);
    if (copy_image(name, in, out, error, error_size)) return -1;
    for (int i = 0; i < num_ops; i++) {
        int v = 1 + (int)rng_int(rng, magnitude - 1);
        if (!(rng_uniform(rng) < 0.5f)) continue;
        bool negate = randaugment_op_is_signed((RandAugmentOp)ops[i]) && rng_uniform(rng) < 0.5f;
        Image next;
        int rc = transform_randaugment_op(out, (RandAugmentOp)ops[i], v, negate, geometric_fill, &next,
                                          error, error_size);
        if (replace(out, &next, rc)) {
            image_free(out);
            return -1;
        }
    }
    int side = out->width < out->height ? out->width : out->height;
    uint8_t cutout_fill[4];
    fill_for_channels(CUTOUT_FILL, out->channels, cutout_fill);
    Image next;
    int rc = transform_random_cutout(out, (int)(side * 0.5), cutout_fill, rng, &next, error, error_size);
    if (replace(out, &next, rc)) {
        image_free(out);
        return -1;
    }
    return 0;
}

// ---- Pipeline -----------------------------------------------------------------------------------

typedef enum {
    STEP_RESIZE,
    STEP_CENTER_CROP,
    STEP_RANDOM_CROP,
    STEP_RANDOM_RESIZED_CROP,
    STEP_HFLIP,
    STEP_PAD,
    STEP_COLOR_JITTER,
    STEP_GREY,
    STEP_RGB,
    STEP_RANDAUGMENT,
    STEP_CUTOUT,
} StepKind;

typedef struct {
    StepKind kind;
    int height, width;    // resize (width 0: shorter side = height), crops, cutout size (height)
    int amount;           // padding; randaugment n
    int magnitude, fill;  // randaugment m and geometric fill grey level
    PadMode pad_mode;
    double p;             // hflip, cutout probability
    double values[4];     // color_jitter b, c, s, h; random_resized_crop scale min, max
} Step;

struct TransformPipeline {
    Step *steps;
    int count;
    bool normalize;
    NormalizeParams normalize_params;
    char *spec;  // canonical
};

// Usage lines for the error messages, one per step name.
static const struct {
    const char *name;
    StepKind kind;
    const char *usage;
} STEP_TYPES[] = {
    {"resize", STEP_RESIZE, "resize=N (shorter side) or resize=H:W"},
    {"center_crop", STEP_CENTER_CROP, "center_crop=N or center_crop=H:W"},
    {"random_crop", STEP_RANDOM_CROP, "random_crop=N[:pad[:reflect|constant]]"},
    {"random_resized_crop", STEP_RANDOM_RESIZED_CROP,
     "random_resized_crop=N[:scale_min:scale_max] with 0 < scale_min <= scale_max <= 1"},
    {"hflip", STEP_HFLIP, "hflip or hflip=p with p in [0, 1]"},
    {"pad", STEP_PAD, "pad=N[:reflect|constant]"},
    {"color_jitter", STEP_COLOR_JITTER, "color_jitter=b:c:s:h with b, c, s >= 0 and h in [0, 0.5]"},
    {"grey", STEP_GREY, "grey (no value)"},
    {"rgb", STEP_RGB, "rgb (no value)"},
    {"randaugment", STEP_RANDAUGMENT,
     "randaugment=n:m[:fill] with 1 <= n <= 64, 2 <= m <= 10, fill 0..255"},
    {"cutout", STEP_CUTOUT, "cutout=size[:p] with size >= 1 and p in [0, 1]"},
};
#define STEP_TYPE_COUNT (int)(sizeof STEP_TYPES / sizeof STEP_TYPES[0])
#define NORMALIZE_USAGE "normalize=imagenet|clip|half|none|m0:m1:m2:s0:s1:s2 with every s > 0"
#define MAX_STEP_VALUES 6

static bool parse_int(const char *text, int low, int high, int *out) {
    if (!*text || isspace((unsigned char)*text)) return false;
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (*end || errno || v < low || v > high) return false;
    *out = (int)v;
    return true;
}

static bool parse_double(const char *text, double *out) {
    if (!*text || isspace((unsigned char)*text)) return false;
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (*end || errno == ERANGE || !isfinite(v)) return false;
    *out = v;
    return true;
}

static bool parse_pad_mode(const char *text, PadMode *out) {
    if (!strcmp(text, "reflect")) *out = PAD_REFLECT;
    else if (!strcmp(text, "constant")) *out = PAD_CONSTANT;
    else return false;
    return true;
}

// The shortest "%.*g" text that reads back as the same double, so canonical specs stay readable
// (0.5, not 0.50000000000000000) and still round-trip exactly.
static void format_double(char *out, size_t size, double v) {
    for (int precision = 1; precision <= 17; precision++) {
        snprintf(out, size, "%.*g", precision, v);
        if (strtod(out, NULL) == v) return;
    }
}

// The same for a float (normalisation constants are float32, as torchvision's tensors).
static void format_float(char *out, size_t size, float v) {
    for (int precision = 1; precision <= 9; precision++) {
        snprintf(out, size, "%.*g", precision, (double)v);
        if (strtof(out, NULL) == v) return;
    }
}

// Appends to a growing string; false when out of memory.
typedef struct {
    char *text;
    size_t length, capacity;
} Text;

static bool text_append(Text *t, const char *format, ...) {
    for (;;) {
        va_list args;
        va_start(args, format);
        size_t room = t->capacity - t->length;
        int n = vsnprintf(t->text ? t->text + t->length : NULL, t->text ? room : 0, format, args);
        va_end(args);
        if (n < 0) return false;
        if ((size_t)n < room && t->text) {
            t->length += (size_t)n;
            return true;
        }
        size_t capacity = t->capacity * 2 + (size_t)n + 64;
        char *grown = realloc(t->text, capacity);
        if (!grown) return false;
        t->text = grown;
        t->capacity = capacity;
    }
}

static bool append_step(Text *t, const Step *s) {
    char a[4][40];
    switch (s->kind) {
        case STEP_RESIZE:
            return s->width ? text_append(t, "resize=%d:%d", s->height, s->width)
                            : text_append(t, "resize=%d", s->height);
        case STEP_CENTER_CROP:
            return s->width == s->height ? text_append(t, "center_crop=%d", s->height)
                                         : text_append(t, "center_crop=%d:%d", s->height, s->width);
        case STEP_RANDOM_CROP:
            return text_append(t, "random_crop=%d:%d:%s", s->height, s->amount,
                               s->pad_mode == PAD_REFLECT ? "reflect" : "constant");
        case STEP_RANDOM_RESIZED_CROP:
            format_double(a[0], sizeof a[0], s->values[0]);
            format_double(a[1], sizeof a[1], s->values[1]);
            return text_append(t, "random_resized_crop=%d:%s:%s", s->height, a[0], a[1]);
        case STEP_HFLIP:
            format_double(a[0], sizeof a[0], s->p);
            return text_append(t, "hflip=%s", a[0]);
        case STEP_PAD:
            return text_append(t, "pad=%d:%s", s->amount, s->pad_mode == PAD_REFLECT ? "reflect" : "constant");
        case STEP_COLOR_JITTER:
            for (int i = 0; i < 4; i++) format_double(a[i], sizeof a[i], s->values[i]);
            return text_append(t, "color_jitter=%s:%s:%s:%s", a[0], a[1], a[2], a[3]);
        case STEP_GREY: return text_append(t, "grey");
        case STEP_RGB: return text_append(t, "rgb");
        case STEP_RANDAUGMENT:
            return text_append(t, "randaugment=%d:%d:%d", s->amount, s->magnitude, s->fill);
        case STEP_CUTOUT:
            format_double(a[0], sizeof a[0], s->p);
            return text_append(t, "cutout=%d:%s", s->height, a[0]);
    }
    return false;
}

static bool append_normalize(Text *t, const NormalizeParams *params) {
    static const char *const presets[] = {"imagenet", "clip", "half", "none"};
    for (int i = 0; i < 4; i++) {
        NormalizeParams preset;
        transform_normalize_preset(presets[i], &preset);
        if (!memcmp(&preset, params, sizeof preset)) return text_append(t, "normalize=%s", presets[i]);
    }
    if (!text_append(t, "normalize=")) return false;
    for (int i = 0; i < 6; i++) {
        char number[40];
        format_float(number, sizeof number, i < 3 ? params->mean[i] : params->std[i - 3]);
        if (!text_append(t, "%s%s", i ? ":" : "", number)) return false;
    }
    return true;
}

// Parses one step ("name" or "name=values") into *step or the pipeline's normalisation.
// `label` is the step as written, for the messages. 0 or -1 with one line in error.
static int parse_step(char *token, const char *label, int index, bool is_last, Step *step,
                      TransformPipeline *pipeline, char *error, size_t error_size) {
    char *values_text = strchr(token, '=');
    if (values_text) *values_text++ = '\0';
    const char *name = token;
    char *values[MAX_STEP_VALUES + 1];
    int n = 0;
    if (values_text) {
        for (char *cursor = values_text;;) {
            if (n == MAX_STEP_VALUES + 1) break;
            values[n++] = cursor;
            char *colon = strchr(cursor, ':');
            if (!colon) break;
            *colon = '\0';
            cursor = colon + 1;
        }
    }
#define STEP_FAIL(problem, usage)                                                                   \
    fail(error, error_size, "transform spec: step %d \"%s\": %s; expected %s", index, label, problem, \
         usage)
    if (!strcmp(name, "normalize")) {
        if (!is_last) return STEP_FAIL("normalize must be the last step", NORMALIZE_USAGE);
        if (n == 1 && !transform_normalize_preset(values[0], &pipeline->normalize_params)) {
            pipeline->normalize = true;
            return 0;
        }
        if (n != 6) return STEP_FAIL("unknown preset or wrong number of values", NORMALIZE_USAGE);
        for (int i = 0; i < 6; i++) {
            double v;
            if (!parse_double(values[i], &v) || (i >= 3 && !(v > 0)) || fabs(v) > 1e30)
                return STEP_FAIL(i < 3 ? "bad mean" : "bad std (must be a number > 0)", NORMALIZE_USAGE);
            if (i < 3) pipeline->normalize_params.mean[i] = (float)v;
            else pipeline->normalize_params.std[i - 3] = (float)v;
        }
        pipeline->normalize = true;
        return 0;
    }
    int type = 0;
    while (type < STEP_TYPE_COUNT && strcmp(STEP_TYPES[type].name, name)) type++;
    if (type == STEP_TYPE_COUNT)
        return STEP_FAIL("unknown step", "one of resize, center_crop, random_crop, random_resized_crop, "
                         "hflip, pad, color_jitter, grey, rgb, randaugment, cutout, normalize");
    const char *usage = STEP_TYPES[type].usage;
    *step = (Step){.kind = STEP_TYPES[type].kind, .pad_mode = PAD_CONSTANT, .p = 1.0};
    const int max_size = TRANSFORM_MAX_SIZE;
    switch (step->kind) {
        case STEP_RESIZE:
        case STEP_CENTER_CROP:
            if (n != 1 && n != 2) return STEP_FAIL("needs 1 or 2 values", usage);
            if (!parse_int(values[0], 1, max_size, &step->height) ||
                (n == 2 && !parse_int(values[1], 1, max_size, &step->width)))
                return STEP_FAIL("sizes must be integers in 1..65536", usage);
            if (n == 1 && step->kind == STEP_CENTER_CROP) step->width = step->height;
            return 0;
        case STEP_RANDOM_CROP:
            if (n < 1 || n > 3) return STEP_FAIL("needs 1 to 3 values", usage);
            if (!parse_int(values[0], 1, max_size, &step->height))
                return STEP_FAIL("N must be an integer in 1..65536", usage);
            step->width = step->height;
            if (n >= 2 && !parse_int(values[1], 0, max_size, &step->amount))
                return STEP_FAIL("pad must be an integer in 0..65536", usage);
            if (n == 3 && !parse_pad_mode(values[2], &step->pad_mode))
                return STEP_FAIL("padding mode must be reflect or constant", usage);
            return 0;
        case STEP_RANDOM_RESIZED_CROP:
            if (n != 1 && n != 3) return STEP_FAIL("needs 1 or 3 values", usage);
            if (!parse_int(values[0], 1, max_size, &step->height))
                return STEP_FAIL("N must be an integer in 1..65536", usage);
            step->width = step->height;
            step->values[0] = 0.08, step->values[1] = 1.0;
            if (n == 3 && (!parse_double(values[1], &step->values[0]) ||
                           !parse_double(values[2], &step->values[1]) || !(step->values[0] > 0) ||
                           step->values[0] > step->values[1] || step->values[1] > 1))
                return STEP_FAIL("bad scale range", usage);
            return 0;
        case STEP_HFLIP:
            step->p = 0.5;
            if (n > 1) return STEP_FAIL("takes at most one value", usage);
            if (n == 1 && (!parse_double(values[0], &step->p) || step->p < 0 || step->p > 1))
                return STEP_FAIL("p must be a number in [0, 1]", usage);
            return 0;
        case STEP_PAD:
            if (n < 1 || n > 2) return STEP_FAIL("needs 1 or 2 values", usage);
            if (!parse_int(values[0], 0, max_size, &step->amount))
                return STEP_FAIL("N must be an integer in 0..65536", usage);
            if (n == 2 && !parse_pad_mode(values[1], &step->pad_mode))
                return STEP_FAIL("padding mode must be reflect or constant", usage);
            return 0;
        case STEP_COLOR_JITTER:
            if (n != 4) return STEP_FAIL("needs 4 values", usage);
            for (int i = 0; i < 4; i++)
                if (!parse_double(values[i], &step->values[i]) || step->values[i] < 0 ||
                    step->values[i] > (i == 3 ? 0.5 : 1e6))
                    return STEP_FAIL(i == 3 ? "hue must be in [0, 0.5]" : "factors must be numbers >= 0", usage);
            return 0;
        case STEP_GREY:
        case STEP_RGB:
            if (values_text) return STEP_FAIL("takes no value", usage);
            return 0;
        case STEP_RANDAUGMENT:
            step->fill = RANDAUGMENT_DEFAULT_FILL;
            if (n != 2 && n != 3) return STEP_FAIL("needs 2 or 3 values", usage);
            if (!parse_int(values[0], 1, RANDAUGMENT_MAX_OPS, &step->amount))
                return STEP_FAIL("n must be an integer in 1..64", usage);
            if (!parse_int(values[1], 2, 10, &step->magnitude))
                return STEP_FAIL("m must be an integer in 2..10 (FixMatch draws v = randint(1, m))", usage);
            if (n == 3 && !parse_int(values[2], 0, 255, &step->fill))
                return STEP_FAIL("fill must be an integer in 0..255", usage);
            return 0;
        case STEP_CUTOUT:
            if (n < 1 || n > 2) return STEP_FAIL("needs 1 or 2 values", usage);
            if (!parse_int(values[0], 1, max_size, &step->height))
                return STEP_FAIL("size must be an integer in 1..65536", usage);
            if (n == 2 && (!parse_double(values[1], &step->p) || step->p < 0 || step->p > 1))
                return STEP_FAIL("p must be a number in [0, 1]", usage);
            return 0;
    }
#undef STEP_FAIL
    return fail(error, error_size, "transform spec: step %d \"%s\": internal error", index, label);
}

void transform_pipeline_free(TransformPipeline *pipeline) {
    if (!pipeline) return;
    free(pipeline->steps);
    free(pipeline->spec);
    free(pipeline);
}

TransformPipeline *transform_pipeline_parse(const char *spec, char *error, size_t error_size) {
    if (!spec) {
        fail(error, error_size, "transform spec: NULL");
        return NULL;
    }
    TransformPipeline *pipeline = calloc(1, sizeof *pipeline);
    char *copy = strdup(spec);
    size_t max_steps = 1;
    for (const char *c = spec; *c; c++) max_steps += *c == ',';
    if (pipeline) pipeline->steps = calloc(max_steps, sizeof *pipeline->steps);
    if (!pipeline || !copy || !pipeline->steps) {
        fail(error, error_size, "transform spec: out of memory");
        free(copy);
        transform_pipeline_free(pipeline);
        return NULL;
    }
    // An empty (or all-blank) spec is the identity pipeline.
    bool blank = true;
    for (const char *c = spec; *c; c++) blank &= isspace((unsigned char)*c) != 0;
    int index = 0;
    for (char *cursor = copy; !blank;) {
        char *comma = strchr(cursor, ',');
        if (comma) *comma = '\0';
        index++;
        // trim blanks around the step
        while (isspace((unsigned char)*cursor)) cursor++;
        char *end = cursor + strlen(cursor);
        while (end > cursor && isspace((unsigned char)end[-1])) *--end = '\0';
        char label[128];
        snprintf(label, sizeof label, "%s", cursor);
        if (!*cursor) {
            fail(error, error_size, "transform spec: step %d is empty (steps are separated by single "
                 "commas)", index);
            goto failed;
        }
        Step step;
        bool was_normalize = pipeline->normalize;
        if (parse_step(cursor, label, index, comma == NULL, &step, pipeline, error, error_size))
            goto failed;
        if (pipeline->normalize == was_normalize) pipeline->steps[pipeline->count++] = step;
        if (!comma) break;
        cursor = comma + 1;
    }
    free(copy);
    copy = NULL;
    Text text = {0};
    bool ok = text_append(&text, "%s", "");
    for (int i = 0; ok && i < pipeline->count; i++)
        ok = (i == 0 || text_append(&text, ",")) && append_step(&text, &pipeline->steps[i]);
    if (ok && pipeline->normalize)
        ok = (pipeline->count == 0 || text_append(&text, ",")) &&
             append_normalize(&text, &pipeline->normalize_params);
    if (!ok) {
        free(text.text);
        fail(error, error_size, "transform spec: out of memory");
        goto failed;
    }
    pipeline->spec = text.text;
    return pipeline;
failed:
    free(copy);
    transform_pipeline_free(pipeline);
    return NULL;
}

const char *transform_pipeline_spec(const TransformPipeline *pipeline) {
    return pipeline ? pipeline->spec : "";
}

// One step on `in` into *out; errors are prefixed by the step's canonical text.
static int apply_step(const Step *s, const Image *in, Rng *rng, Image *out, char *error,
                      size_t error_size) {
    const uint8_t zero[4] = {0, 0, 0, 0};
    switch (s->kind) {
        case STEP_RESIZE:
            return s->width ? transform_resize(in, s->height, s->width, RESIZE_BILINEAR, out, error, error_size)
                            : transform_resize_shorter(in, s->height, RESIZE_BILINEAR, out, error, error_size);
        case STEP_CENTER_CROP: return transform_center_crop(in, s->height, s->width, out, error, error_size);
        case STEP_RANDOM_CROP:
            return transform_random_crop(in, s->height, s->width, s->amount, s->pad_mode, rng, out, error,
                                         error_size);
        case STEP_RANDOM_RESIZED_CROP:
            return transform_random_resized_crop(in, s->height, s->width, s->values[0], s->values[1],
                                                 3.0 / 4.0, 4.0 / 3.0, rng, out, error, error_size);
        case STEP_HFLIP: return transform_random_hflip(in, s->p, rng, out, error, error_size);
        case STEP_PAD:
            return transform_pad(in, s->amount, s->amount, s->amount, s->amount, s->pad_mode, zero, out,
                                 error, error_size);
        case STEP_COLOR_JITTER:
            return transform_color_jitter(in, s->values[0], s->values[1], s->values[2], s->values[3], rng,
                                          out, error, error_size);
        case STEP_GREY: return transform_to_grey(in, out, error, error_size);
        case STEP_RGB: return transform_to_rgb(in, out, error, error_size);
        case STEP_RANDAUGMENT: {
            const uint8_t fill[3] = {(uint8_t)s->fill, (uint8_t)s->fill, (uint8_t)s->fill};
            return transform_randaugment(in, s->amount, s->magnitude, fill, rng, out, error, error_size);
        }
        case STEP_CUTOUT: {
            // the draw happens whatever p is, so the stream position does not depend on the image
            bool apply = rng_uniform(rng) < s->p;
            if (!apply) return copy_image("cutout", in, out, error, error_size);
            uint8_t fill[4];
            fill_for_channels(CUTOUT_FILL, in->channels, fill);
            return transform_random_cutout(in, s->height, fill, rng, out, error, error_size);
        }
    }
    return fail(error, error_size, "unknown step kind %d", (int)s->kind);
}

int transform_pipeline_apply(const TransformPipeline *pipeline, Image *image, Rng *rng, char *error,
                             size_t error_size) {
    if (!pipeline || pipeline->count == 0) return 0;  // NULL or normalize-only: no image step
    if (!image || !image->pixels || !rng)
        return fail(error, error_size, "transform_pipeline_apply: NULL image or rng");
    for (int i = 0; i < pipeline->count; i++) {
        Image next;
        char why[256] = "";
        if (apply_step(&pipeline->steps[i], image, rng, &next, why, sizeof why)) {
            Text label = {0};
            bool ok = append_step(&label, &pipeline->steps[i]);
            fail(error, error_size, "transform step %d \"%s\": %s", i + 1, ok ? label.text : "?", why);
            free(label.text);
            return -1;
        }
        image_free(image);
        *image = next;
    }
    return 0;
}

void transform_pipeline_to_float(const TransformPipeline *pipeline, const Image *image, float *out) {
    transform_to_float(image, pipeline && pipeline->normalize ? &pipeline->normalize_params : NULL, out);
}
