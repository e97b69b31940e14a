// The rendered parts of the benchmark: print-domain digits, the MNIST-M blend, and the captioned
// world corpus (glyphs from every font family in ink colours on plain or photo backgrounds, and
// Fashion-MNIST train images plain, tinted or on photos).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/benchmark.h"
#include "data/benchmark_internal.h"

static const char *const world_folders[BENCHMARK_WORLD_CATEGORIES] = {
    "00-digit-0", "01-digit-1", "02-digit-2", "03-digit-3", "04-digit-4", "05-digit-5", "06-digit-6",
    "07-digit-7", "08-digit-8", "09-digit-9", "10-upper-A", "11-upper-B", "12-upper-C", "13-upper-D",
    "14-upper-E", "15-upper-F", "16-upper-G", "17-upper-H", "18-upper-I", "19-upper-J", "20-upper-K",
    "21-upper-L", "22-upper-M", "23-upper-N", "24-upper-O", "25-upper-P", "26-upper-Q", "27-upper-R",
    "28-upper-S", "29-upper-T", "30-upper-U", "31-upper-V", "32-upper-W", "33-upper-X", "34-upper-Y",
    "35-upper-Z", "36-lower-a", "37-lower-b", "38-lower-c", "39-lower-d", "40-lower-e", "41-lower-f",
    "42-lower-g", "43-lower-h", "44-lower-i", "45-lower-j", "46-lower-k", "47-lower-l", "48-lower-m",
    "49-lower-n", "50-lower-o", "51-lower-p", "52-lower-q", "53-lower-r", "54-lower-s", "55-lower-t",
    "56-lower-u", "57-lower-v", "58-lower-w", "59-lower-x", "60-lower-y", "61-lower-z", "62-fashion-tshirt",
    "63-fashion-trouser", "64-fashion-pullover", "65-fashion-dress", "66-fashion-coat", "67-fashion-sandal",
    "68-fashion-shirt", "69-fashion-sneaker", "70-fashion-bag", "71-fashion-ankle-boot",
};

static const char *const world_categories[BENCHMARK_WORLD_CATEGORIES] = {
    "digit zero", "digit one", "digit two", "digit three", "digit four", "digit five", "digit six",
    "digit seven", "digit eight", "digit nine", "capital letter A", "capital letter B", "capital letter C",
    "capital letter D", "capital letter E", "capital letter F", "capital letter G", "capital letter H",
    "capital letter I", "capital letter J", "capital letter K", "capital letter L", "capital letter M",
    "capital letter N", "capital letter O", "capital letter P", "capital letter Q", "capital letter R",
    "capital letter S", "capital letter T", "capital letter U", "capital letter V", "capital letter W",
    "capital letter X", "capital letter Y", "capital letter Z", "lowercase letter a", "lowercase letter b",
    "lowercase letter c", "lowercase letter d", "lowercase letter e", "lowercase letter f",
    "lowercase letter g", "lowercase letter h", "lowercase letter i", "lowercase letter j",
    "lowercase letter k", "lowercase letter l", "lowercase letter m", "lowercase letter n",
    "lowercase letter o", "lowercase letter p", "lowercase letter q", "lowercase letter r",
    "lowercase letter s", "lowercase letter t", "lowercase letter u", "lowercase letter v",
    "lowercase letter w", "lowercase letter x", "lowercase letter y", "lowercase letter z", "t-shirt",
    "trousers", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot",
};

const char *bench_world_folder(int c) { return c >= 0 && c < BENCHMARK_WORLD_CATEGORIES ? world_folders[c] : NULL; }
const char *benchmark_world_category(int c) { return c >= 0 && c < BENCHMARK_WORLD_CATEGORIES ? world_categories[c] : NULL; }

typedef struct {
    const char *name;
    uint8_t rgb[3];
} NamedColour;

static const NamedColour inks[] = {
    {"black", {15, 15, 15}},    {"white", {250, 250, 250}}, {"red", {210, 30, 35}},     {"blue", {35, 70, 200}},
    {"green", {30, 140, 60}},   {"orange", {245, 140, 20}}, {"purple", {125, 50, 165}}, {"brown", {125, 75, 35}},
    {"yellow", {245, 215, 40}}, {"pink", {240, 120, 175}},  {"grey", {128, 128, 128}},  {"dark blue", {20, 30, 100}},
};
#define INK_COUNT ((int)(sizeof inks / sizeof inks[0]))

static const NamedColour backgrounds[] = {
    {"white", {255, 255, 255}},      {"black", {0, 0, 0}},          {"light grey", {205, 205, 205}},
    {"cream", {245, 235, 205}},      {"light blue", {190, 215, 240}}, {"pale yellow", {250, 240, 170}},
    {"dark green", {30, 70, 40}},    {"navy blue", {20, 25, 70}},
};
#define BACKGROUND_COUNT ((int)(sizeof backgrounds / sizeof backgrounds[0]))

// Clothing colours for tinted Fashion-MNIST images (multiplied into the grey image).
static const NamedColour tints[] = {
    {"red", {230, 40, 40}},     {"blue", {60, 100, 235}}, {"green", {50, 180, 80}}, {"yellow", {250, 220, 50}},
    {"orange", {250, 150, 30}}, {"purple", {150, 70, 200}}, {"pink", {250, 140, 190}}, {"brown", {170, 110, 60}},
};
#define TINT_COUNT ((int)(sizeof tints / sizeof tints[0]))

static const char *article(const char *word) { return strchr("aeiou", word[0]) ? "an" : "a"; }

static float luminance(const uint8_t *rgb) { return 0.299f * rgb[0] + 0.587f * rgb[1] + 0.114f * rgb[2]; }

void bench_blend_photo(const BenchSources *sources, const uint8_t *grey, Rng *rng, uint8_t *rgb) {
    bench_photo_crop(sources, rng, rgb);
    for (int i = 0; i < BENCH_S * BENCH_S; i++)
        for (int k = 0; k < 3; k++) rgb[3 * i + k] = (uint8_t)abs((int)rgb[3 * i + k] - (int)grey[i]);
}

// A face: uniformly one of the families allowed by `classes` (bit mask of FontClass), then one of
// its faces. Two draws.
static const BenchFont *pick_font(const FontSet *fonts, unsigned classes, Rng *rng) {
    int candidates[256], n = 0;
    for (int f = 0; f < fonts->family_count && n < 256; f++)
        if (classes & (1u << fonts->families[f].font_class)) candidates[n++] = f;
    const FontFamily *family = &fonts->families[candidates[bench_int(rng, n)]];
    return &fonts->fonts[family->faces[bench_int(rng, family->face_count)]];
}

void bench_render_print(const BenchSources *sources, int digit, Rng *rng, uint8_t *rgb) {
    const BenchFont *font = pick_font(&sources->fonts, 1u << FONT_SERIF | 1u << FONT_SANS | 1u << FONT_MONO, rng);
    GlyphPlacement placement = {
        .size = bench_uniform(rng, 17.0f, 26.0f),
        .angle = bench_uniform(rng, -15.0f, 15.0f),
        .dx = bench_uniform(rng, -2.5f, 2.5f),
        .dy = bench_uniform(rng, -2.5f, 2.5f),
    };
    float thick = rng_uniform(rng);
    placement.thicken = thick < 0.5f ? 0.0f : bench_uniform(rng, 0.25f, 1.25f);
    uint8_t coverage[BENCH_S * BENCH_S];
    if (font_render_glyph(font, '0' + digit, &placement, coverage) != 0) memset(coverage, 0, sizeof coverage);
    for (int i = 0; i < BENCH_S * BENCH_S; i++) rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = coverage[i];
}

static const char *class_word(FontClass c) {
    switch (c) {
    case FONT_SERIF: return "serif";
    case FONT_SANS: return "sans-serif";
    case FONT_MONO: return "monospace";
    default: return "handwritten-style";
    }
}

static void render_world_glyph(const BenchSources *sources, int category, Rng *rng, uint8_t *rgb, char *caption, size_t size) {
    int codepoint = category < 10 ? '0' + category : category < 36 ? 'A' + category - 10 : 'a' + category - 36;
    // A style class uniformly (serif, sans-serif, monospace, handwriting), then a family, then a face.
    unsigned present = 0;
    for (int f = 0; f < sources->fonts.family_count; f++) present |= 1u << sources->fonts.families[f].font_class;
    int classes[4], n = 0;
    for (int c = 0; c < 4; c++)
        if (present & (1u << c)) classes[n++] = c;
    const BenchFont *font = pick_font(&sources->fonts, 1u << classes[bench_int(rng, n)], rng);
    GlyphPlacement placement = {
        .size = category < 10 ? bench_uniform(rng, 18.0f, 26.0f) : bench_uniform(rng, 14.0f, 20.0f),
        .cap_fit = category >= 10,
        .angle = bench_uniform(rng, -8.0f, 8.0f),
        .dx = bench_uniform(rng, -2.0f, 2.0f),
        .dy = bench_uniform(rng, -2.0f, 2.0f),
    };
    float thick = rng_uniform(rng);
    placement.thicken = thick < 0.7f ? 0.0f : bench_uniform(rng, 0.25f, 0.75f);
    uint8_t coverage[BENCH_S * BENCH_S];
    if (font_render_glyph(font, codepoint, &placement, coverage) != 0) memset(coverage, 0, sizeof coverage);

    // Background: a plain colour (70%) or a photo crop (30%); ink: a colour that stands out from it.
    bool photo = rng_uniform(rng) < 0.3f;
    const NamedColour *background = NULL;
    float background_luminance;
    if (photo) {
        bench_photo_crop(sources, rng, rgb);
        double sum = 0;
        for (int i = 0; i < BENCH_S * BENCH_S; i++) sum += luminance(rgb + 3 * i);
        background_luminance = (float)(sum / (BENCH_S * BENCH_S));
    } else {
        background = &backgrounds[bench_int(rng, BACKGROUND_COUNT)];
        for (int i = 0; i < BENCH_S * BENCH_S; i++) memcpy(rgb + 3 * i, background->rgb, 3);
        background_luminance = luminance(background->rgb);
    }
    int allowed[INK_COUNT], allowed_count = 0;
    for (int k = 0; k < INK_COUNT; k++)
        if (fabsf(luminance(inks[k].rgb) - background_luminance) >= 100.0f) allowed[allowed_count++] = k;
    int ink_index = bench_int(rng, allowed_count ? allowed_count : 2);
    const NamedColour *ink = allowed_count ? &inks[allowed[ink_index]] : &inks[background_luminance > 128 ? 0 : 1];
    for (int i = 0; i < BENCH_S * BENCH_S; i++) {
        int a = coverage[i];
        for (int k = 0; k < 3; k++) rgb[3 * i + k] = (uint8_t)((rgb[3 * i + k] * (255 - a) + ink->rgb[k] * a + 127) / 255);
    }

    char style[64];
    bool handwriting = font->font_class == FONT_HANDWRITING;
    snprintf(style, sizeof style, "%s%s%s", font->bold ? "bold " : "", font->italic && !handwriting ? "italic " : "",
             class_word(font->font_class));
    char on[64];
    if (photo) snprintf(on, sizeof on, "a photo background");
    else snprintf(on, sizeof on, "a %s background", background->name);
    const char *name = world_categories[category];
    switch (bench_int(rng, 3)) {
    case 0: snprintf(caption, size, "%s %s %s in %s ink on %s", article(style), style, name, ink->name, on); break;
    case 1: snprintf(caption, size, "a %s written in %s %s font, %s on %s", name, article(style), style, ink->name, on); break;
    default: snprintf(caption, size, "the %s in %s %s lettering on %s", name, ink->name, style, on); break;
    }
}

// "a sneaker", "an orange bag", "a pair of red trousers".
static void clothing_phrase(int c, const char *adjective, char *out, size_t size) {
    const char *noun = world_categories[62 + c];
    const char *first = adjective ? adjective : noun;
    if (c == 1) snprintf(out, size, "a pair of %s%s%s", adjective ? adjective : "", adjective ? " " : "", noun);
    else snprintf(out, size, "%s %s%s%s", article(first), adjective ? adjective : "", adjective ? " " : "", noun);
}

static void render_world_fashion(const BenchSources *sources, const BenchJob *job, Rng *rng, uint8_t *rgb, char *caption, size_t size) {
    int c = job->label - 62;
    uint8_t grey[BENCH_S * BENCH_S] = {0};
    const uint8_t *image = sources->fashion_train + (size_t)job->source * 784;
    for (int y = 0; y < 28; y++) memcpy(grey + (y + 2) * BENCH_S + 2, image + y * 28, 28);
    float variant = rng_uniform(rng);
    char phrase[96];
    int template = bench_int(rng, 3);
    if (variant < 0.5f) {  // as it is: white-ish clothing on black
        for (int i = 0; i < BENCH_S * BENCH_S; i++) rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = grey[i];
        clothing_phrase(c, NULL, phrase, sizeof phrase);
        if (template == 0) snprintf(caption, size, "a photo of %s", phrase);
        else if (template == 1) snprintf(caption, size, "a black-and-white photo of %s", phrase);
        else snprintf(caption, size, "%s on a black background", phrase);
    } else if (variant < 0.75f) {  // tinted
        const NamedColour *tint = &tints[bench_int(rng, TINT_COUNT)];
        for (int i = 0; i < BENCH_S * BENCH_S; i++)
            for (int k = 0; k < 3; k++) rgb[3 * i + k] = (uint8_t)((grey[i] * tint->rgb[k] + 127) / 255);
        clothing_phrase(c, tint->name, phrase, sizeof phrase);
        if (template != 2) snprintf(caption, size, "a photo of %s", phrase);
        else snprintf(caption, size, "%s on a black background", phrase);
    } else {  // MNIST-M blend onto a photo crop
        bench_blend_photo(sources, grey, rng, rgb);
        clothing_phrase(c, NULL, phrase, sizeof phrase);
        if (template != 2) snprintf(caption, size, "%s on a photo background", phrase);
        else snprintf(caption, size, "a photo of %s blended into a photo background", phrase);
    }
}

void bench_render_world(const BenchSources *sources, const BenchJob *job, Rng *rng, uint8_t *rgb, char *caption, size_t caption_size) {
    if (job->label < 62) render_world_glyph(sources, job->label, rng, rgb, caption, caption_size);
    else render_world_fashion(sources, job, rng, rgb, caption, caption_size);
}
