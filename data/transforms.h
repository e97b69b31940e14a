// Image transforms of the data layer: torchvision's transforms on PIL images (torchvision 0.14,
// Pillow 9.4), FixMatch's RandAugment (kekmodel/FixMatch-pytorch RandAugmentMC), and a pipeline
// parsed from a spec string for command-line flags.
//
// Images are data/image.h's: uint8 HWC, 1 (grey, PIL "L"), 3 (RGB) or 4 (RGBA) channels.
// Each functional form reads `in` (never modified) and writes a new image into *out, which the
// caller frees with image_free; `in` and `out` may not be the same object. Every failure is -1
// with one line in `error` ("transform_<name>: <what is wrong>") and leaves *out = {0}.
// Randomness comes only from the engine's Philox streams (engine/rng.h): the same (seed, stream,
// offset) gives the same image, and nothing here keeps global state, so distinct images with
// distinct Rng objects can be transformed on several threads at once.
//
// Where the torchvision/PIL computation is integer or float arithmetic we replicate it operation
// for operation (same float/double types, same truncations), so the tests against torchvision
// goldens are exact (tests/test_transforms.c). Known differences are stated at each function.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "data/image.h"
#include "engine/rng.h"

// ---- Geometry -------------------------------------------------------------------------------

// F.resize(img, shorter) with an int size: the shorter side becomes `shorter`, the longer side
// int(shorter * long / short) (truncated, as torchvision 0.14's _compute_resized_output_size);
// an image already that size is copied. Filter as image_resize (torchvision's default: bilinear).
int transform_resize_shorter(const Image *in, int shorter, ResizeFilter filter, Image *out,
                             char *error, size_t error_size);
// F.resize(img, [height, width]).
int transform_resize(const Image *in, int height, int width, ResizeFilter filter, Image *out,
                     char *error, size_t error_size);
// F.crop(img, top, left, height, width): PIL's img.crop, so the parts of the box outside the image
// are 0 (alpha 0 too).
int transform_crop(const Image *in, int top, int left, int height, int width, Image *out,
                   char *error, size_t error_size);
// F.center_crop(img, [height, width]): a crop larger than the image is first padded with 0 (left
// and top get the floor of half the excess), then top = int(round((H - height) / 2.0)) with
// Python's round (half to even), likewise left.
int transform_center_crop(const Image *in, int height, int width, Image *out, char *error,
                          size_t error_size);
// F.hflip(img): PIL's FLIP_LEFT_RIGHT.
int transform_hflip(const Image *in, Image *out, char *error, size_t error_size);

typedef enum { PAD_CONSTANT, PAD_REFLECT } PadMode;
// F.pad(img, [left, top, right, bottom], fill, padding_mode): PAD_CONSTANT is ImageOps.expand with
// fill[c] for channel c (torchvision's fill=0 is {0, 0, 0, 0}; NULL means 0); PAD_REFLECT is
// numpy.pad(mode='reflect') (mirror without repeating the edge; pads wider than the image keep
// reflecting, as numpy does). Negative amounts are refused (torchvision would crop).
int transform_pad(const Image *in, int left, int top, int right, int bottom, PadMode mode,
                  const uint8_t fill[4], Image *out, char *error, size_t error_size);

// PIL img.rotate(angle_degrees, NEAREST, expand=False, fillcolor=fill) = F.rotate with NEAREST:
// counter-clockwise about the centre (w/2, h/2); angle taken modulo 360 as Python does; 0 copies,
// 180 (and 90/270 on a square image) are exact transposes; otherwise the inverse affine matrix with
// cos/sin rounded to 15 decimals, as PIL builds it, sampled by transform_affine. fill has one
// value per channel (alpha included); NULL means 0.
int transform_rotate(const Image *in, double angle_degrees, const uint8_t fill[4], Image *out,
                     char *error, size_t error_size);
// PIL img.transform(img.size, Image.AFFINE, matrix, NEAREST, fillcolor=fill): output pixel (x, y)
// takes input pixel (floor(a*(x+.5) + b*(y+.5) + c), floor(d*(x+.5) + e*(y+.5) + f)) where
// matrix = (a, b, c, d, e, f) maps OUTPUT to INPUT coordinates; pixels mapping outside get fill.
// Follows PIL's three code paths: pure scale/translation (b = d = 0) in double, otherwise 16.16
// fixed point (when the corners fit in +-32768), else double.
int transform_affine(const Image *in, const double matrix[6], const uint8_t fill[4], Image *out,
                     char *error, size_t error_size);
// FixMatch's geometric ops, as they call PIL: ShearX = AFFINE (1, v, 0, 0, 1, 0), ShearY = (1, 0, 0,
// v, 1, 0), TranslateX = (1, 0, pixels, 0, 1, 0) (content moves left by `pixels`), TranslateY =
// (1, 0, 0, 0, 1, pixels).
int transform_shear_x(const Image *in, double v, const uint8_t fill[4], Image *out, char *error,
                      size_t error_size);
int transform_shear_y(const Image *in, double v, const uint8_t fill[4], Image *out, char *error,
                      size_t error_size);
int transform_translate_x(const Image *in, int pixels, const uint8_t fill[4], Image *out,
                          char *error, size_t error_size);
int transform_translate_y(const Image *in, int pixels, const uint8_t fill[4], Image *out,
                          char *error, size_t error_size);

// FixMatch's CutoutAbs(img, size) with its random centre given: x0 = int(max(0, center_x - size/2)),
// y0 likewise, x1 = int(min(w, x0 + size)), y1 likewise, and ImageDraw.rectangle((x0, y0, x1, y1),
// fill) -- PIL's rectangle includes x1 and y1, so the square is size + 1 pixels wide unless clipped
// at the border. fill[c] per channel (FixMatch: 127 grey; grey images take fill[0], where PIL
// would refuse the 3-tuple; RGBA gets alpha fill[3]); NULL means 0.
int transform_cutout(const Image *in, double center_x, double center_y, int size,
                     const uint8_t fill[4], Image *out, char *error, size_t error_size);

// ---- Channels -------------------------------------------------------------------------------

// F.rgb_to_grayscale(img, 1) = PIL convert("L"): (R*19595 + G*38470 + B*7471 + 0x8000) >> 16,
// alpha ignored; a grey image is copied.
int transform_to_grey(const Image *in, Image *out, char *error, size_t error_size);
// convert("RGB"): grey replicated, RGBA drops alpha, RGB copied.
int transform_to_rgb(const Image *in, Image *out, char *error, size_t error_size);

// ---- Colour (torchvision's PIL path) --------------------------------------------------------
// The four ImageEnhance ops are Image.blend(degenerate, img, factor): with alpha = (float)factor,
// out = (uint8)(d + alpha * (s - d)) in float for alpha in [0, 1], clipped to [0, 255] outside.
// Alpha channels are kept. Factors must be finite and >= 0.

// ImageEnhance.Brightness: degenerate = black.
int transform_adjust_brightness(const Image *in, double factor, Image *out, char *error,
                                size_t error_size);
// ImageEnhance.Contrast: degenerate = the mean of the grey ("L") image, int(mean + 0.5).
int transform_adjust_contrast(const Image *in, double factor, Image *out, char *error,
                              size_t error_size);
// ImageEnhance.Color (= F.adjust_saturation): degenerate = the grey image; identity on grey.
int transform_adjust_saturation(const Image *in, double factor, Image *out, char *error,
                                size_t error_size);
// ImageEnhance.Sharpness (= F.adjust_sharpness): degenerate = ImageFilter.SMOOTH, the 3x3 kernel
// [[1,1,1],[1,5,1],[1,1,1]]/13 in float with the border rows and columns left unchanged (images
// smaller than 3x3 are unchanged).
int transform_adjust_sharpness(const Image *in, double factor, Image *out, char *error,
                               size_t error_size);
// F.adjust_hue (PIL path): convert("HSV") with PIL's float arithmetic, H += uint8(hue_factor * 255)
// (truncated toward zero, wrapping mod 256, as numpy does), convert back. hue_factor in
// [-0.5, 0.5]; identity on grey. Difference: torchvision's RGBA result has alpha 255 (its HSV
// round trip loses alpha); we keep the input's alpha.
int transform_adjust_hue(const Image *in, double hue_factor, Image *out, char *error,
                         size_t error_size);

// ImageOps on each colour channel, via a 256-entry table as PIL does (F.autocontrast, F.equalize,
// F.posterize, F.solarize). PIL refuses RGBA for these; we transform R, G, B and keep alpha.
// autocontrast: the darkest value present -> 0, the lightest -> 255, int(v * scale + offset).
int transform_autocontrast(const Image *in, Image *out, char *error, size_t error_size);
// equalize: PIL's histogram equalisation (step = (count - count of the last used level) // 255).
int transform_equalize(const Image *in, Image *out, char *error, size_t error_size);
// posterize: keeps the top `bits` bits (0..8).
int transform_posterize(const Image *in, int bits, Image *out, char *error, size_t error_size);
// solarize: v < threshold stays, otherwise 255 - v (threshold 256 changes nothing).
int transform_solarize(const Image *in, double threshold, Image *out, char *error,
                       size_t error_size);

// ---- To float -------------------------------------------------------------------------------

typedef struct {
    float mean[3], std[3];
} NormalizeParams;
// The presets: "imagenet" (0.485, 0.456, 0.406) / (0.229, 0.224, 0.225); "clip" (0.48145466,
// 0.4578275, 0.40821073) / (0.26862954, 0.26130258, 0.27577711); "half" 0.5 / 0.5; "none" 0 / 1.
// 0, or -1 for another name.
int transform_normalize_preset(const char *name, NormalizeParams *out);
// F.normalize(F.to_tensor(img), mean, std) in float32: x = (float)v / 255.0f, then (x - mean) / std,
// written CHW (channels * height * width floats). Channel c uses mean[c]/std[c]; a grey image uses
// mean[0]/std[0] (torchvision would refuse 3 means for 1 channel); an alpha channel is x only.
// params NULL means no normalisation (x/255 only).
void transform_to_float(const Image *image, const NormalizeParams *params, float *out);

// ---- Random forms (draws only from rng) ------------------------------------------------------

// transforms.RandomCrop((height, width), padding, padding_mode=mode) with fill 0: pad every side by
// `padding` first, then top ~ U{0..H-height}, left ~ U{0..W-width}. A crop larger than the padded
// image is -1 (torchvision raises too).
int transform_random_crop(const Image *in, int height, int width, int padding, PadMode mode,
                          Rng *rng, Image *out, char *error, size_t error_size);
// RandomResizedCrop.get_params for an image of image_height x image_width: up to 10 attempts of
// area fraction ~ U[scale_min, scale_max) and log(aspect) ~ U[log ratio_min, log ratio_max), w =
// int(round(sqrt(area * aspect))), h = int(round(sqrt(area / aspect))), kept when both fit, then a
// uniform position; else the central fallback crop clamped to the ratio range.
void transform_random_resized_crop_params(int image_height, int image_width, double scale_min,
                                          double scale_max, double ratio_min, double ratio_max,
                                          Rng *rng, int *top, int *left, int *height, int *width);
// transforms.RandomResizedCrop((height, width), scale, ratio) with bilinear: the crop above, then
// resized to height x width.
int transform_random_resized_crop(const Image *in, int height, int width, double scale_min,
                                  double scale_max, double ratio_min, double ratio_max, Rng *rng,
                                  Image *out, char *error, size_t error_size);
// transforms.RandomHorizontalFlip(p): flips when a uniform draw in [0, 1) is < p. *out is always a
// new image (a copy when not flipped).
int transform_random_hflip(const Image *in, double p, Rng *rng, Image *out, char *error,
                           size_t error_size);
// transforms.ColorJitter(brightness, contrast, saturation, hue) with single numbers: factors drawn
// from [max(0, 1 - b), 1 + b] (likewise contrast, saturation) and [-hue, hue]; a zero value turns
// that adjustment off; the four are applied in a random permutation order as torchvision does.
// b, c, s >= 0, hue in [0, 0.5].
int transform_color_jitter(const Image *in, double brightness, double contrast, double saturation,
                           double hue, Rng *rng, Image *out, char *error, size_t error_size);
// CutoutAbs(img, size) with centre ~ U[0, w) x U[0, h) (FixMatch's np.random.uniform).
int transform_random_cutout(const Image *in, int size, const uint8_t fill[4], Rng *rng, Image *out,
                            char *error, size_t error_size);

// ---- FixMatch RandAugment (kekmodel/FixMatch-pytorch, dataset/randaugment.py) ----------------

// fixmatch_augment_pool(), in its order, with (max_v, bias):
typedef enum {
    RANDAUGMENT_AUTOCONTRAST,  // ImageOps.autocontrast
    RANDAUGMENT_BRIGHTNESS,    // (0.9, 0.05): factor = v * 0.9 / 10 + 0.05
    RANDAUGMENT_COLOR,         // (0.9, 0.05)
    RANDAUGMENT_CONTRAST,      // (0.9, 0.05)
    RANDAUGMENT_EQUALIZE,      // ImageOps.equalize
    RANDAUGMENT_IDENTITY,
    RANDAUGMENT_POSTERIZE,     // (4, 4): bits = int(v * 4 / 10) + 4
    RANDAUGMENT_ROTATE,        // (30, 0): degrees = int(v * 30 / 10), random sign
    RANDAUGMENT_SHARPNESS,     // (0.9, 0.05)
    RANDAUGMENT_SHEAR_X,       // (0.3, 0): shear = v * 0.3 / 10, random sign
    RANDAUGMENT_SHEAR_Y,       // (0.3, 0)
    RANDAUGMENT_SOLARIZE,      // (256, 0): threshold = 256 - int(v * 256 / 10)
    RANDAUGMENT_TRANSLATE_X,   // (0.3, 0): pixels = int(+-(v * 0.3 / 10) * width)
    RANDAUGMENT_TRANSLATE_Y,   // (0.3, 0): pixels = int(+-(v * 0.3 / 10) * height)
    RANDAUGMENT_OP_COUNT
} RandAugmentOp;

const char *randaugment_op_name(RandAugmentOp op);  // "AutoContrast", ..., NULL if out of range
// True for the ops that draw a random sign (Rotate, ShearX/Y, TranslateX/Y).
bool randaugment_op_is_signed(RandAugmentOp op);
// One op at integer magnitude v (1..10 in FixMatch; any v >= 0 accepted) with the sign chosen by
// `negate` (ignored by unsigned ops); geometric ops fill uncovered pixels with fill (RGB; grey uses
// fill[0], RGBA alpha 255). The magnitude formulas are _float_parameter / _int_parameter exactly.
int transform_randaugment_op(const Image *in, RandAugmentOp op, int v, bool negate,
                             const uint8_t fill[3], Image *out, char *error, size_t error_size);

#define RANDAUGMENT_DEFAULT_FILL 0
// RandAugmentMC(n, m).__call__: n ops chosen with replacement; for each, v ~ U{1..m-1}
// (np.random.randint(1, m) excludes m), applied with probability 0.5, signed ops flip the sign with
// probability 0.5; then CutoutAbs of size int(0.5 * min(w, h)) (FixMatch: int(32 * 0.5) on 32x32
// CIFAR) filled with (127, 127, 127). m in [2, 10] (m = 1 makes numpy's randint raise), n >= 1.
// geometric_fill: the kekmodel code passes no fillcolor, i.e. black {0, 0, 0}, which the pipeline's
// default follows (RANDAUGMENT_DEFAULT_FILL) to reproduce it; some derivatives use (128, 128, 128).
int transform_randaugment(const Image *in, int num_ops, int magnitude, const uint8_t geometric_fill[3],
                          Rng *rng, Image *out, char *error, size_t error_size);

// ---- Pipeline from a spec string -------------------------------------------------------------
// Comma-separated steps, each `name` or `name=a:b:...`:
//   resize=N | resize=H:W           shorter side to N (aspect kept), or exactly H x W; bilinear
//   center_crop=N | center_crop=H:W
//   random_crop=N[:pad[:reflect|constant]]      RandomCrop(N, padding=pad, padding_mode); pad 0
//   random_resized_crop=N[:scale_min:scale_max] RandomResizedCrop(N, scale) (default 0.08:1)
//   hflip[=p]                       RandomHorizontalFlip(p), default 0.5
//   pad=N[:reflect|constant]        constant pads with 0
//   color_jitter=b:c:s:h            ColorJitter(b, c, s, h)
//   grey                            to 1 channel (PIL "L")
//   rgb                             to 3 channels (grey replicated, alpha dropped)
//   randaugment=n:m[:fill]          FixMatch RandAugmentMC(n, m) + CutoutAbs; geometric fill grey
//                                   level (default 0, the kekmodel code's black; 128 grey)
//   cutout=size[:p]                 CutoutAbs(size) with probability p (default 1), fill 127
//   normalize=imagenet|clip|half|none|m0:m1:m2:s0:s1:s2   the last step; used by _to_float
// Sizes are at most TRANSFORM_MAX_SIZE. An empty spec is the identity pipeline.
#define TRANSFORM_MAX_SIZE 65536

typedef struct TransformPipeline TransformPipeline;
// NULL with one line in error naming the step and what was expected.
TransformPipeline *transform_pipeline_parse(const char *spec, char *error, size_t error_size);
void transform_pipeline_free(TransformPipeline *pipeline);  // NULL fine
// The canonical spec (every parameter written out, e.g. "random_crop=32:4:reflect,hflip=0.5"),
// which parses back to the same pipeline; for logs.
const char *transform_pipeline_spec(const TransformPipeline *pipeline);
// Applies every image step in order to *image (replaced in place; the old pixels freed), drawing
// all randomness from rng. 0, or -1 with one line in error naming the step (e.g. a crop larger
// than the image when no padding); on -1 *image is still a valid image (the input of the failing
// step) for the caller to free. Thread-safe for distinct images/rngs: the pipeline is read-only.
// A NULL pipeline (or one with only normalize) leaves the image as it is.
int transform_pipeline_apply(const TransformPipeline *pipeline, Image *image, Rng *rng, char *error,
                             size_t error_size);
// The final step: uint8 HWC -> float CHW (x/255, then the pipeline's normalize, identity if none);
// out holds image->channels*height*width floats. See transform_to_float for grey and alpha.
void transform_pipeline_to_float(const TransformPipeline *pipeline, const Image *image, float *out);
