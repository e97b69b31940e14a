// Image decode/encode (stb_image / stb_image_write from Debian's libstb-dev) and resizing that
// matches PIL (what torchvision.transforms.functional.resize does on a PIL image).
//
// Pixels are 8-bit, HWC, row-major, no padding; channels is 1 (grey), 3 (RGB) or 4 (RGBA).
// Every failure is -1 with one line in `error` ("<path>: <what is wrong>", "<memory>: ..." for
// image_decode_memory) and leaves *out empty ({0}); nothing here aborts on bad input.
#pragma once
#include <stddef.h>
#include <stdint.h>

typedef struct {
    int width, height, channels;
    uint8_t *pixels;  // width * height * channels bytes, malloc'd; image_free releases it
} Image;

// Images larger than this many pixels are refused ("too large") before decoding.
#define IMAGE_MAX_PIXELS ((int64_t)1 << 27)
// Files larger than this are refused before reading (stb takes an int length).
#define IMAGE_MAX_FILE_BYTES ((int64_t)1 << 30)

// Decodes PNG (8/16-bit; 16-bit is reduced to 8 by taking the high byte), JPEG (baseline and
// progressive), BMP, GIF (first frame), binary PGM/PPM (P5/P6). Other formats, ASCII PNM (P2/P3),
// and files stb rejects give -1.
// channels: 0 keeps the file's (a grey+alpha file becomes RGBA), or 1/3/4 converts as PIL's
// convert() does: grey->RGB(A) replicates (alpha 255), RGB(A)->grey is PIL's "L" (ITU-R 601-2:
// (R*19595 + G*38470 + B*7471 + 0x8000) >> 16), RGBA->RGB drops alpha, RGB->RGBA adds alpha 255.
int image_load(const char *path, int channels, Image *out, char *error, size_t error_size);
int image_decode_memory(const uint8_t *bytes, size_t size, int channels, Image *out, char *error,
                        size_t error_size);
// Writes a PNG (1, 3 or 4 channels) to "<path>.tmp.<pid>", flushes, fsyncs, renames over path.
int image_save_png(const char *path, const Image *image, char *error, size_t error_size);
void image_free(Image *image);  // NULL and empty images are fine; leaves *image = {0}

typedef enum { RESIZE_NEAREST, RESIZE_BILINEAR, RESIZE_BICUBIC } ResizeFilter;

// Resizes to width x height as PIL's Image.resize (Pillow 9.x, reducing_gap=None), which is what
// torchvision.transforms.functional.resize does on a PIL image (antialias is always on for PIL):
// - BILINEAR (triangle) and BICUBIC (Keys, a = -0.5): separable, horizontal pass then vertical,
//   each rounded to uint8; filter support scaled by the downscale factor (antialiased); 22-bit
//   fixed-point coefficients rounded as PIL does. RGBA is premultiplied by alpha before and
//   un-premultiplied after, as PIL does (RGBA -> RGBa -> RGBA).
// - NEAREST: source pixel floor((x + 0.5) * in_w / out_w), accumulated in double as PIL does.
// The same size returns a copy. *out gets a new image with in->channels channels.
int image_resize(const Image *in, int width, int height, ResizeFilter filter, Image *out,
                 char *error, size_t error_size);
