// Image IO through stb (see data/stb_impl.c) and PIL-compatible resizing; see data/image.h.
#include "data/image.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_ONLY_BMP
#define STBI_ONLY_GIF
#define STBI_ONLY_PNM
#include <stb/stb_image.h>
#include <stb/stb_image_write.h>

static int fail(char *error, size_t error_size, const char *format, ...) {
    if (error && error_size) {
        va_list args;
        va_start(args, format);
        vsnprintf(error, error_size, format, args);
        va_end(args);
        for (char *c = error; *c; c++)  // keep it one line whatever the message contains
            if (*c == '\n' || *c == '\r') *c = ' ';
    }
    return -1;
}

void image_free(Image *image) {
    if (!image) return;
    free(image->pixels);
    memset(image, 0, sizeof *image);
}

static int valid_channels(int c) { return c == 1 || c == 3 || c == 4; }

// PIL's "L" conversion (Convert.c, L24): ITU-R 601-2 luma in 16-bit fixed point.
static uint8_t luma(int r, int g, int b) {
    return (uint8_t)((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16);
}

// Converts n pixels of src (sc channels: 1, 2, 3 or 4) to dst (dc channels: 1, 3 or 4).
static void convert_pixels(const uint8_t *src, int sc, uint8_t *dst, int dc, size_t n) {
    for (size_t i = 0; i < n; i++, src += sc, dst += dc) {
        int r, g, b, a;
        if (sc <= 2) {
            r = g = b = src[0];
            a = sc == 2 ? src[1] : 255;
        } else {
            r = src[0], g = src[1], b = src[2];
            a = sc == 4 ? src[3] : 255;
        }
        if (dc == 1) {
            dst[0] = sc <= 2 ? (uint8_t)r : luma(r, g, b);
        } else {
            dst[0] = (uint8_t)r, dst[1] = (uint8_t)g, dst[2] = (uint8_t)b;
            if (dc == 4) dst[3] = (uint8_t)a;
        }
    }
}

static int decode(const char *name, const uint8_t *bytes, size_t size, int channels, Image *out,
                  char *error, size_t error_size) {
    if (size == 0) return fail(error, error_size, "%s: empty file", name);
    if (size > (size_t)INT_MAX) return fail(error, error_size, "%s: too large (%zu bytes)", name, size);
    int w = 0, h = 0, c = 0;
    if (!stbi_info_from_memory(bytes, (int)size, &w, &h, &c)) {
        // stbi_info tries every format and keeps the last one's complaint; decoding picks the
        // format by its signature and says what is wrong with it (it fails at the header too).
        uint8_t *probe = stbi_load_from_memory(bytes, (int)size, &w, &h, &c, 0);
        if (probe) stbi_image_free(probe);
        const char *why = stbi_failure_reason();
        return fail(error, error_size, "%s: %s (supported: PNG, JPEG, BMP, GIF, binary PGM/PPM)", name,
                    probe ? "header not understood" : why ? why : "not a supported image");
    }
    if (w <= 0 || h <= 0 || (int64_t)w * h > IMAGE_MAX_PIXELS)
        return fail(error, error_size, "%s: image too large or empty (%dx%d, limit %lld pixels)", name,
                    w, h, (long long)IMAGE_MAX_PIXELS);
    int fw = 0, fh = 0, fc = 0;
    uint8_t *data = stbi_load_from_memory(bytes, (int)size, &fw, &fh, &fc, 0);
    if (!data) {
        const char *why = stbi_failure_reason();
        return fail(error, error_size, "%s: corrupt or truncated image: %s", name, why ? why : "unknown");
    }
    if (fw != w || fh != h || fc < 1 || fc > 4) {
        stbi_image_free(data);
        return fail(error, error_size, "%s: decoder returned an inconsistent image", name);
    }
    int dc = channels ? channels : (fc == 2 ? 4 : fc);
    size_t n = (size_t)fw * (size_t)fh;
    uint8_t *pixels = malloc(n * (size_t)dc);
    if (!pixels) {
        stbi_image_free(data);
        return fail(error, error_size, "%s: out of memory for a %dx%d image", name, fw, fh);
    }
    if (dc == fc) memcpy(pixels, data, n * (size_t)dc);
    else convert_pixels(data, fc, pixels, dc, n);
    stbi_image_free(data);
    out->width = fw, out->height = fh, out->channels = dc, out->pixels = pixels;
    return 0;
}

int image_decode_memory(const uint8_t *bytes, size_t size, int channels, Image *out, char *error,
                        size_t error_size) {
    memset(out, 0, sizeof *out);
    if (channels != 0 && !valid_channels(channels))
        return fail(error, error_size, "<memory>: channels must be 0, 1, 3 or 4 (got %d)", channels);
    if (!bytes && size) return fail(error, error_size, "<memory>: NULL buffer");
    return decode("<memory>", bytes, size, channels, out, error, error_size);
}

int image_load(const char *path, int channels, Image *out, char *error, size_t error_size) {
    memset(out, 0, sizeof *out);
    if (channels != 0 && !valid_channels(channels))
        return fail(error, error_size, "%s: channels must be 0, 1, 3 or 4 (got %d)", path, channels);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return fail(error, error_size, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return fail(error, error_size, "%s: %s", path, strerror(e));
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return fail(error, error_size, "%s: is a directory, not an image file", path);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return fail(error, error_size, "%s: not a regular file", path);
    }
    if ((int64_t)st.st_size > IMAGE_MAX_FILE_BYTES) {
        close(fd);
        return fail(error, error_size, "%s: file too large (%lld bytes, limit %lld)", path,
                    (long long)st.st_size, (long long)IMAGE_MAX_FILE_BYTES);
    }
    size_t size = (size_t)st.st_size;
    uint8_t *bytes = malloc(size ? size : 1);
    if (!bytes) {
        close(fd);
        return fail(error, error_size, "%s: out of memory reading %zu bytes", path, size);
    }
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, bytes + got, size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            free(bytes);
            close(fd);
            return fail(error, error_size, "%s: read error: %s", path, strerror(e));
        }
        if (r == 0) break;  // shrank while reading: decode what is there (it will say truncated)
        got += (size_t)r;
    }
    close(fd);
    int rc = decode(path, bytes, got, channels, out, error, error_size);
    free(bytes);
    return rc;
}

typedef struct {
    FILE *file;
    int failed;
} PngSink;

static void png_sink_write(void *context, void *data, int size) {
    PngSink *sink = context;
    if (!sink->failed && size > 0 && fwrite(data, 1, (size_t)size, sink->file) != (size_t)size)
        sink->failed = 1;
}

int image_save_png(const char *path, const Image *image, char *error, size_t error_size) {
    if (!image || !image->pixels || image->width <= 0 || image->height <= 0 ||
        !valid_channels(image->channels))
        return fail(error, error_size, "%s: invalid image to save (need pixels, size > 0, channels 1/3/4)",
                    path);
    if ((int64_t)image->width * image->channels > INT_MAX / 2)
        return fail(error, error_size, "%s: image too wide to encode", path);
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return fail(error, error_size, "%s: path too long", path);
    FILE *file = fopen(tmp, "wb");
    if (!file) return fail(error, error_size, "%s: cannot create %s: %s", path, tmp, strerror(errno));
    PngSink sink = {file, 0};
    int ok = stbi_write_png_to_func(png_sink_write, &sink, image->width, image->height,
                                    image->channels, image->pixels, image->width * image->channels);
    int e = 0;
    if (ok && !sink.failed && fflush(file) != 0) e = errno, sink.failed = 1;
    if (ok && !sink.failed && fsync(fileno(file)) != 0) e = errno, sink.failed = 1;
    if (fclose(file) != 0 && !sink.failed) e = errno, sink.failed = 1;
    if (!ok || sink.failed) {
        unlink(tmp);
        if (!ok) return fail(error, error_size, "%s: PNG encoder failed (out of memory?)", path);
        return fail(error, error_size, "%s: write error: %s", path, e ? strerror(e) : "short write");
    }
    if (rename(tmp, path) != 0) {
        e = errno;
        unlink(tmp);
        return fail(error, error_size, "%s: cannot rename %s into place: %s", path, tmp, strerror(e));
    }
    return 0;
}

// ---- resizing, after Pillow's src/libImaging/Resample.c and Geometry.c ----

#define PRECISION_BITS (32 - 8 - 2)

static double bilinear_filter(double x) {
    if (x < 0.0) x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

static double bicubic_filter(double x) {  // Keys cubic with a = -0.5
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

typedef struct {
    int ksize;
    int *bounds;      // per output index: first input index, count
    int32_t *coeffs;  // per output index: ksize fixed-point coefficients
} Coeffs;

// As PIL's precompute_coeffs + normalize_coeffs_8bpc: double-precision weights of the filter
// stretched by the downscale factor, normalised to sum 1, rounded half away from zero to 2^-22.
static int precompute_coeffs(int in_size, int out_size, double (*filter)(double), double support0,
                             Coeffs *c) {
    double scale = (double)((float)in_size - 0.0f) / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = support0 * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    c->ksize = ksize;
    c->bounds = malloc((size_t)out_size * 2 * sizeof(int));
    c->coeffs = malloc((size_t)out_size * (size_t)ksize * sizeof(int32_t));
    double *k = malloc((size_t)ksize * sizeof(double));
    if (!c->bounds || !c->coeffs || !k) {
        free(c->bounds), free(c->coeffs), free(k);
        c->bounds = NULL, c->coeffs = NULL;
        return -1;
    }
    for (int xx = 0; xx < out_size; xx++) {
        double center = 0.0 + (xx + 0.5) * scale;
        double ww = 0.0, ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        if (xmax > ksize) xmax = ksize;  // cannot happen; keeps the buffer safe regardless
        int x = 0;
        for (; x < xmax; x++) {
            double w = filter((x + xmin - center + 0.5) * ss);
            k[x] = w;
            ww += w;
        }
        for (x = 0; x < xmax; x++)
            if (ww != 0.0) k[x] /= ww;
        for (; x < ksize; x++) k[x] = 0;
        int32_t *kk = c->coeffs + (size_t)xx * ksize;
        for (x = 0; x < ksize; x++)
            kk[x] = k[x] < 0 ? (int32_t)(-0.5 + k[x] * (1 << PRECISION_BITS))
                             : (int32_t)(0.5 + k[x] * (1 << PRECISION_BITS));
        c->bounds[xx * 2] = xmin;
        c->bounds[xx * 2 + 1] = xmax;
    }
    free(k);
    return 0;
}

static inline uint8_t clip8(int32_t v) {
    v >>= PRECISION_BITS;  // arithmetic shift as in PIL (floor)
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

// One separable pass over `lines` lines of `n_in` pixels each into `n_out` pixels each; pixel i of
// line l is at base + l * line_stride + i * pixel_stride (in bytes, same layout for in and out
// except the sizes).
static void resample_pass(const uint8_t *in, size_t in_line, size_t in_pixel, uint8_t *out,
                          size_t out_line, size_t out_pixel, int lines, int n_out, int channels,
                          const Coeffs *c) {
    if (channels == 3) {  // the common case: three sums per tap, one pass over the taps
        for (int l = 0; l < lines; l++)
            for (int o = 0; o < n_out; o++) {
                int xmin = c->bounds[o * 2], xmax = c->bounds[o * 2 + 1];
                const int32_t *k = c->coeffs + (size_t)o * c->ksize;
                const uint8_t *p = in + (size_t)l * in_line + (size_t)xmin * in_pixel;
                int32_t s0 = 1 << (PRECISION_BITS - 1), s1 = s0, s2 = s0;
                for (int x = 0; x < xmax; x++, p += in_pixel) {
                    s0 += (int32_t)p[0] * k[x];
                    s1 += (int32_t)p[1] * k[x];
                    s2 += (int32_t)p[2] * k[x];
                }
                uint8_t *q = out + (size_t)l * out_line + (size_t)o * out_pixel;
                q[0] = clip8(s0);
                q[1] = clip8(s1);
                q[2] = clip8(s2);
            }
        return;
    }
    for (int l = 0; l < lines; l++) {
        for (int o = 0; o < n_out; o++) {
            int xmin = c->bounds[o * 2], xmax = c->bounds[o * 2 + 1];
            const int32_t *k = c->coeffs + (size_t)o * c->ksize;
            for (int ch = 0; ch < channels; ch++) {
                int32_t ss = 1 << (PRECISION_BITS - 1);
                const uint8_t *p = in + (size_t)l * in_line + (size_t)xmin * in_pixel + ch;
                for (int x = 0; x < xmax; x++) ss += (int32_t)p[(size_t)x * in_pixel] * k[x];
                out[(size_t)l * out_line + (size_t)o * out_pixel + ch] = clip8(ss);
            }
        }
    }
}

// PIL's RGBA -> RGBa (premultiply, MULDIV255) and RGBa -> RGBA (integer divide, clipped).
static void premultiply(uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++, p += 4)
        for (int ch = 0; ch < 3; ch++) {
            unsigned t = (unsigned)p[ch] * p[3] + 128;
            p[ch] = (uint8_t)(((t >> 8) + t) >> 8);
        }
}

static void unpremultiply(uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++, p += 4) {
        unsigned a = p[3];
        if (a == 0 || a == 255) continue;
        for (int ch = 0; ch < 3; ch++) {
            unsigned v = 255u * p[ch] / a;
            p[ch] = (uint8_t)(v > 255 ? 255 : v);
        }
    }
}

static void resize_nearest(const Image *in, Image *out) {
    // Geometry.c ImagingScaleAffine: positions accumulate in double from half a step.
    int c = in->channels;
    double ax = (double)in->width / out->width, ay = (double)in->height / out->height;
    double yo = ay * 0.5;
    for (int y = 0; y < out->height; y++, yo += ay) {
        int yin = yo < 0.0 ? -1 : (int)yo;
        uint8_t *dst = out->pixels + (size_t)y * out->width * c;
        if (yin < 0 || yin >= in->height) {
            memset(dst, 0, (size_t)out->width * c);
            continue;
        }
        const uint8_t *src = in->pixels + (size_t)yin * in->width * c;
        double xo = ax * 0.5;
        for (int x = 0; x < out->width; x++, xo += ax) {
            int xin = xo < 0.0 ? -1 : (int)xo;
            if (xin < 0 || xin >= in->width) memset(dst + (size_t)x * c, 0, (size_t)c);
            else memcpy(dst + (size_t)x * c, src + (size_t)xin * c, (size_t)c);
        }
    }
}

int image_resize(const Image *in, int width, int height, ResizeFilter filter, Image *out,
                 char *error, size_t error_size) {
    memset(out, 0, sizeof *out);
    if (!in || !in->pixels || in->width <= 0 || in->height <= 0 || !valid_channels(in->channels))
        return fail(error, error_size, "image_resize: invalid input image");
    if (width <= 0 || height <= 0 || (int64_t)width * height > IMAGE_MAX_PIXELS)
        return fail(error, error_size, "image_resize: invalid output size %dx%d", width, height);
    if (filter != RESIZE_NEAREST && filter != RESIZE_BILINEAR && filter != RESIZE_BICUBIC)
        return fail(error, error_size, "image_resize: unknown filter %d", (int)filter);
    int c = in->channels;
    size_t out_bytes = (size_t)width * height * c;
    out->pixels = malloc(out_bytes);
    if (!out->pixels) return fail(error, error_size, "image_resize: out of memory");
    out->width = width, out->height = height, out->channels = c;
    if (width == in->width && height == in->height) {
        memcpy(out->pixels, in->pixels, out_bytes);
        return 0;
    }
    if (filter == RESIZE_NEAREST) {
        resize_nearest(in, out);
        return 0;
    }
    double (*fn)(double) = filter == RESIZE_BICUBIC ? bicubic_filter : bilinear_filter;
    double support = filter == RESIZE_BICUBIC ? 2.0 : 1.0;

    const uint8_t *src = in->pixels;
    uint8_t *premul = NULL, *tmp = NULL;
    Coeffs ch = {0}, cv = {0};
    int rc = -1;
    if (c == 4) {  // PIL resizes RGBA as premultiplied RGBa
        premul = malloc((size_t)in->width * in->height * 4);
        if (!premul) goto oom;
        memcpy(premul, in->pixels, (size_t)in->width * in->height * 4);
        premultiply(premul, (size_t)in->width * in->height);
        src = premul;
    }
    int cur_w = in->width;
    if (width != in->width) {  // horizontal pass first, as PIL
        if (precompute_coeffs(in->width, width, fn, support, &ch) != 0) goto oom;
        uint8_t *dst = height == in->height ? out->pixels : (tmp = malloc((size_t)width * in->height * c));
        if (!dst) goto oom;
        resample_pass(src, (size_t)in->width * c, (size_t)c, dst, (size_t)width * c, (size_t)c,
                      in->height, width, c, &ch);
        src = dst;
        cur_w = width;
    }
    if (height != in->height) {  // vertical pass: lines are columns
        if (precompute_coeffs(in->height, height, fn, support, &cv) != 0) goto oom;
        resample_pass(src, (size_t)c, (size_t)cur_w * c, out->pixels, (size_t)c, (size_t)width * c,
                      width, height, c, &cv);
    }
    if (c == 4) unpremultiply(out->pixels, (size_t)width * height);
    rc = 0;
    goto done;
oom:
    image_free(out);
    fail(error, error_size, "image_resize: out of memory");
done:
    free(premul), free(tmp);
    free(ch.bounds), free(ch.coeffs), free(cv.bounds), free(cv.coeffs);
    return rc;
}
