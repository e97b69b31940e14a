// Fonts for the benchmark: scanning font directories, classifying each face by a built-in family
// table, and rendering glyphs with stb_truetype (Debian's libstb-dev) -- rotated, scaled, placed and
// thickened, antialiased by 4x4 supersampling. The one translation unit that compiles stb_truetype.
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "data/benchmark.h"
#include "data/benchmark_internal.h"

#define STB_TRUETYPE_IMPLEMENTATION
// stb_truetype 1.26 reads one vertex past its allocation when a TrueType contour starts with a
// lone off-curve point (stbtt__GetGlyphShapeTT, `vertices[off+i+1]`); some of Debian's fonts have
// such contours. Zeroed slack makes that read defined and the result deterministic.
#define STBTT_malloc(size, user) ((void)(user), calloc(1, (size_t)(size) + 64))
#define STBTT_free(pointer, user) ((void)(user), free(pointer))
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wtype-limits"
#pragma GCC diagnostic ignored "-Wshadow"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wold-style-declaration"
#include <stb/stb_truetype.h>
#pragma GCC diagnostic pop

// ---- the family table -------------------------------------------------------------------------
// Matched against the font's typographic family (name ID 16) and then its family (name ID 1), both
// lower-cased without spaces; the first entry that is a prefix wins, so specific entries come first.

#define FONT_EXCLUDED (-1)

typedef struct {
    const char *prefix;  // normalised
    const char *name;    // family name used for grouping and the manifest
    int font_class;      // FontClass or FONT_EXCLUDED
} FamilyRule;

static const FamilyRule family_rules[] = {
    // No letters and digits of their own, or not the shapes they are named by.
    {"d050000l", "D050000L (dingbats)", FONT_EXCLUDED},
    {"standardsymbols", "Standard Symbols PS", FONT_EXCLUDED},
    {"linuxbiolinumkeyboard", "Linux Biolinum Keyboard", FONT_EXCLUDED},
    {"linuxlibertineinitials", "Linux Libertine Initials", FONT_EXCLUDED},
    {"dejavumath", "DejaVu Math TeX Gyre", FONT_EXCLUDED},
    {"latinmodernmath", "Latin Modern Math", FONT_EXCLUDED},
    {"latinmodernmonocaps", "Latin Modern Mono Caps", FONT_EXCLUDED},  // small caps: no lowercase shapes
    {"latinmodernromancaps", "Latin Modern Roman Caps", FONT_EXCLUDED},
    {"lmmonocaps", "Latin Modern Mono Caps", FONT_EXCLUDED},
    {"lmromancaps", "Latin Modern Roman Caps", FONT_EXCLUDED},
    {"gosmallcaps", "Go Smallcaps", FONT_EXCLUDED},
    // Handwriting-style (and calligraphic script) faces: only in the world corpus.
    {"dkghandwriting", "DkgHandwriting", FONT_HANDWRITING},
    {"breip", "Breip", FONT_HANDWRITING},
    {"becausewe", "Because We Handwriting", FONT_HANDWRITING},
    {"femkeklaver", "Femke Klaver", FONT_HANDWRITING},
    {"kleeone", "Klee One", FONT_HANDWRITING},
    {"kristi", "Kristi", FONT_HANDWRITING},
    {"humorsans", "Humor Sans", FONT_HANDWRITING},
    {"comicneue", "Comic Neue", FONT_HANDWRITING},
    {"dancingscript", "Dancing Script", FONT_HANDWRITING},
    {"texgyrechorus", "TeX Gyre Chorus", FONT_HANDWRITING},
    {"z003", "Z003", FONT_HANDWRITING},
    // Monospaced.
    {"dejavusansmono", "DejaVu Sans Mono", FONT_MONO},
    {"gomono", "Go Mono", FONT_MONO},
    {"linuxlibertinemono", "Linux Libertine Mono", FONT_MONO},
    {"nimbusmono", "Nimbus Mono PS", FONT_MONO},
    {"cousine", "Cousine", FONT_MONO},
    {"firacode", "Fira Code", FONT_MONO},
    {"freemono", "FreeMono", FONT_MONO},
    {"hack", "Hack", FONT_MONO},
    {"inconsolata", "Inconsolata", FONT_MONO},
    {"liberationmono", "Liberation Mono", FONT_MONO},
    {"notomono", "Noto Mono", FONT_MONO},
    {"notosansmono", "Noto Sans Mono", FONT_MONO},
    {"latinmodernmono", "Latin Modern Mono", FONT_MONO},
    {"lmmono", "Latin Modern Mono", FONT_MONO},
    {"texgyrecursor", "TeX Gyre Cursor", FONT_MONO},
    // Serif.
    {"dejavuserif", "DejaVu Serif", FONT_SERIF},
    {"ebgaramond", "EB Garamond", FONT_SERIF},
    {"linuxlibertine", "Linux Libertine", FONT_SERIF},
    {"c059", "C059", FONT_SERIF},
    {"nimbusroman", "Nimbus Roman", FONT_SERIF},
    {"p052", "P052", FONT_SERIF},
    {"urwbookman", "URW Bookman", FONT_SERIF},
    {"tinos", "Tinos", FONT_SERIF},
    {"caladea", "Caladea", FONT_SERIF},
    {"oldstandard", "Old Standard", FONT_SERIF},
    {"freeserif", "FreeSerif", FONT_SERIF},
    {"liberationserif", "Liberation Serif", FONT_SERIF},
    {"latinmodernroman", "Latin Modern Roman", FONT_SERIF},
    {"lmroman", "Latin Modern Roman", FONT_SERIF},
    {"texgyrebonum", "TeX Gyre Bonum", FONT_SERIF},
    {"texgyrepagella", "TeX Gyre Pagella", FONT_SERIF},
    {"texgyreschola", "TeX Gyre Schola", FONT_SERIF},
    {"texgyretermes", "TeX Gyre Termes", FONT_SERIF},
    // Sans-serif.
    {"dejavusans", "DejaVu Sans", FONT_SANS},
    {"go", "Go", FONT_SANS},
    {"cantarell", "Cantarell", FONT_SANS},
    {"linuxbiolinum", "Linux Biolinum", FONT_SANS},
    {"nimbussans", "Nimbus Sans", FONT_SANS},
    {"urwgothic", "URW Gothic", FONT_SANS},
    {"arimo", "Arimo", FONT_SANS},
    {"carlito", "Carlito", FONT_SANS},
    {"freesans", "FreeSans", FONT_SANS},
    {"lato", "Lato", FONT_SANS},
    {"liberationsans", "Liberation Sans", FONT_SANS},
    {"opensans", "Open Sans", FONT_SANS},
    {"roboto", "Roboto", FONT_SANS},
    {"latinmodernsans", "Latin Modern Sans", FONT_SANS},
    {"lmsans", "Latin Modern Sans", FONT_SANS},
    {"texgyreadventor", "TeX Gyre Adventor", FONT_SANS},
    {"texgyreheros", "TeX Gyre Heros", FONT_SANS},
};
#define FAMILY_RULE_COUNT ((int)(sizeof family_rules / sizeof family_rules[0]))

typedef struct {
    unsigned char *data;
    stbtt_fontinfo info;
} FontImpl;

// ---- directory scan ---------------------------------------------------------------------------

typedef struct {
    char **items;
    int count, capacity;
} PathList;

static void path_list_add(PathList *list, const char *path) {
    if (list->count == list->capacity) {
        list->capacity = list->capacity ? 2 * list->capacity : 256;
        list->items = realloc(list->items, (size_t)list->capacity * sizeof(char *));
    }
    list->items[list->count++] = strdup(path);
}

static bool has_font_extension(const char *name) {
    size_t n = strlen(name);
    return n > 4 && (strcasecmp(name + n - 4, ".ttf") == 0 || strcasecmp(name + n - 4, ".otf") == 0);
}

static int compare_strings(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void scan_directory(const char *dir, int depth, PathList *out) {
    if (depth > 16) return;
    DIR *handle = opendir(dir);
    if (!handle) return;
    PathList local = {0};
    struct dirent *entry;
    while ((entry = readdir(handle))) {
        if (entry->d_name[0] == '.') continue;
        char path[4096];
        if (snprintf(path, sizeof path, "%s/%s", dir, entry->d_name) >= (int)sizeof path) continue;
        path_list_add(&local, path);
    }
    closedir(handle);
    if (local.count > 1) qsort(local.items, (size_t)local.count, sizeof(char *), compare_strings);
    for (int i = 0; i < local.count; i++) {
        struct stat st;
        if (stat(local.items[i], &st) == 0) {
            if (S_ISDIR(st.st_mode)) scan_directory(local.items[i], depth + 1, out);
            else if (S_ISREG(st.st_mode) && has_font_extension(local.items[i])) path_list_add(out, local.items[i]);
        }
        free(local.items[i]);
    }
    free(local.items);
}

// ---- reading a face ---------------------------------------------------------------------------

// A name-table string as ASCII (Windows Unicode English first, then Mac Roman); "" if absent.
static void font_name(const stbtt_fontinfo *info, int name_id, char *out, size_t size) {
    int length = 0;
    const char *s = stbtt_GetFontNameString(info, &length, STBTT_PLATFORM_ID_MICROSOFT, STBTT_MS_EID_UNICODE_BMP,
                                            STBTT_MS_LANG_ENGLISH, name_id);
    size_t used = 0;
    if (s) {
        for (int i = 1; i < length && used + 1 < size; i += 2) out[used++] = s[i - 1] == 0 && (unsigned char)s[i] < 128 ? s[i] : '?';
    } else if ((s = stbtt_GetFontNameString(info, &length, STBTT_PLATFORM_ID_MAC, STBTT_MAC_EID_ROMAN, STBTT_MAC_LANG_ENGLISH,
                                            name_id))) {
        for (int i = 0; i < length && used + 1 < size; i++) out[used++] = (unsigned char)s[i] < 128 ? s[i] : '?';
    }
    out[used] = 0;
}

static void normalise(const char *in, char *out, size_t size) {
    size_t used = 0;
    for (; *in && used + 1 < size; in++)
        if (*in != ' ' && *in != '-' && *in != '_') out[used++] = (char)(*in >= 'A' && *in <= 'Z' ? *in - 'A' + 'a' : *in);
    out[used] = 0;
}

static int match_family(const char *name) {
    char normal[256];
    normalise(name, normal, sizeof normal);
    if (!normal[0]) return -1;
    for (int i = 0; i < FAMILY_RULE_COUNT; i++)
        if (strncmp(normal, family_rules[i].prefix, strlen(family_rules[i].prefix)) == 0) return i;
    return -1;
}

static unsigned char *read_file(const char *path, int64_t *size) {
    FILE *file = fopen(path, "rb");
    if (!file) return NULL;
    unsigned char *data = NULL;
    if (fseek(file, 0, SEEK_END) == 0) {
        long n = ftell(file);
        if (n > 0 && n < (64L << 20) && fseek(file, 0, SEEK_SET) == 0) {
            data = malloc((size_t)n);
            if (data && fread(data, 1, (size_t)n, file) != (size_t)n) {
                free(data);
                data = NULL;
            }
            *size = n;
        }
    }
    fclose(file);
    return data;
}

// Outline present and non-degenerate.
static bool has_outline(const stbtt_fontinfo *info, int codepoint) {
    int glyph = stbtt_FindGlyphIndex(info, codepoint);
    if (glyph == 0) return false;
    stbtt_vertex *vertices = NULL;
    int n = stbtt_GetGlyphShape(info, glyph, &vertices);
    stbtt_FreeShape(info, vertices);
    int x0, y0, x1, y1;
    return n > 0 && stbtt_GetGlyphBox(info, glyph, &x0, &y0, &x1, &y1) && x1 > x0 && y1 > y0;
}

int font_set_load(const char *dirs, FontSet *set, char *error, size_t error_size) {
    memset(set, 0, sizeof *set);
    PathList paths = {0};
    int readable_dirs = 0;
    char *copy = strdup(dirs);
    for (char *save = NULL, *dir = strtok_r(copy, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
        struct stat st;
        if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) continue;
        readable_dirs++;
        scan_directory(dir, 0, &paths);
    }
    free(copy);
    if (!readable_dirs) {
        snprintf(error, error_size, "--fonts %s: no such directory", dirs);
        return -1;
    }
    char **seen = calloc((size_t)paths.count + 1, sizeof(char *));
    int seen_count = 0;
    set->fonts = calloc((size_t)paths.count + 1, sizeof(BenchFont));
    for (int p = 0; p < paths.count; p++) {
        const char *path = paths.items[p];
        int64_t bytes = 0;
        unsigned char *data = read_file(path, &bytes);
        FontImpl *impl = calloc(1, sizeof *impl);
        int offset = data ? stbtt_GetFontOffsetForIndex(data, 0) : -1;
        if (!data || offset < 0 || !stbtt_InitFont(&impl->info, data, offset)) {
            set->unreadable++;
            free(data);
            free(impl);
            continue;
        }
        impl->data = data;
        char family[256], typographic[256], subfamily[256];
        font_name(&impl->info, 1, family, sizeof family);
        font_name(&impl->info, 16, typographic, sizeof typographic);
        font_name(&impl->info, 2, subfamily, sizeof subfamily);
        int rule = match_family(typographic);
        if (rule < 0) rule = match_family(family);
        const char *reject = NULL;
        if (rule < 0) set->unknown_family++, reject = "unknown";
        else if (family_rules[rule].font_class == FONT_EXCLUDED) set->excluded++, reject = "excluded";
        bool glyphs_ok = true;
        for (int c = '0'; !reject && c <= 'z' && glyphs_ok; c++)
            if ((c <= '9' || (c >= 'A' && c <= 'Z') || c >= 'a') && !has_outline(&impl->info, c)) glyphs_ok = false;
        if (!reject && !glyphs_ok) set->missing_glyphs++, reject = "glyphs";
        char full[512];
        snprintf(full, sizeof full, "%s %s", family, subfamily);
        char full_normal[512];
        normalise(full, full_normal, sizeof full_normal);
        for (int i = 0; !reject && i < seen_count; i++)
            if (strcmp(seen[i], full_normal) == 0) set->duplicate++, reject = "duplicate";
        if (reject) {
            free(data);
            free(impl);
            continue;
        }
        seen[seen_count++] = strdup(full_normal);
        BenchFont *font = &set->fonts[set->count++];
        font->path = strdup(path);
        font->family = strdup(family_rules[rule].name);
        font->full_name = strdup(full);
        font->bytes = bytes;
        font->font_class = (FontClass)family_rules[rule].font_class;
        font->impl = impl;
        unsigned char *d = data;
        uint32_t os2 = stbtt__find_table(data, (uint32_t)impl->info.fontstart, "OS/2");
        uint32_t head = stbtt__find_table(data, (uint32_t)impl->info.fontstart, "head");
        int weight = os2 ? ttUSHORT(d + os2 + 4) : 400;
        int selection = os2 ? ttUSHORT(d + os2 + 62) : 0;
        int mac_style = head ? ttUSHORT(d + head + 44) : 0;
        font->bold = weight >= 600 || (!os2 && (mac_style & 1));
        font->italic = (selection & 1) || (selection & 0x200) || (mac_style & 2);
        int glyph = stbtt_FindGlyphIndex(&impl->info, 'H'), x0, y0, x1, y1;
        stbtt_GetGlyphBox(&impl->info, glyph, &x0, &y0, &x1, &y1);
        font->cap_height = (float)(y1 - y0);
    }
    for (int i = 0; i < seen_count; i++) free(seen[i]);
    free(seen);
    for (int i = 0; i < paths.count; i++) free(paths.items[i]);
    free(paths.items);
    // Families, in order of first appearance (the sorted path order).
    set->families = calloc((size_t)set->count + 1, sizeof(FontFamily));
    for (int i = 0; i < set->count; i++) {
        int f = 0;
        while (f < set->family_count && strcmp(set->families[f].name, set->fonts[i].family) != 0) f++;
        if (f == set->family_count) {
            set->families[f].name = set->fonts[i].family;
            set->families[f].font_class = set->fonts[i].font_class;
            set->families[f].faces = malloc((size_t)set->count * sizeof(int));
            set->family_count++;
        }
        set->families[f].faces[set->families[f].face_count++] = i;
        set->fonts[i].family_index = f;
    }
    return 0;
}

void font_set_free(FontSet *set) {
    for (int i = 0; i < set->count; i++) {
        FontImpl *impl = set->fonts[i].impl;
        free(impl->data);
        free(impl);
        free(set->fonts[i].path);
        free(set->fonts[i].family);
        free(set->fonts[i].full_name);
    }
    for (int f = 0; f < set->family_count; f++) free(set->families[f].faces);
    free(set->families);
    free(set->fonts);
    memset(set, 0, sizeof *set);
}

// ---- rendering --------------------------------------------------------------------------------

#define SUPER 4
#define CANVAS (BENCH_S * SUPER)

// Separable square max filter of radius r over a CANVAS x CANVAS coverage map.
static void dilate(uint8_t *pixels, int r) {
    if (r <= 0) return;
    uint8_t *tmp = malloc(CANVAS * CANVAS);
    for (int y = 0; y < CANVAS; y++)
        for (int x = 0; x < CANVAS; x++) {
            int m = 0;
            for (int k = x - r < 0 ? 0 : x - r; k <= x + r && k < CANVAS; k++)
                if (pixels[y * CANVAS + k] > m) m = pixels[y * CANVAS + k];
            tmp[y * CANVAS + x] = (uint8_t)m;
        }
    for (int y = 0; y < CANVAS; y++)
        for (int x = 0; x < CANVAS; x++) {
            int m = 0;
            for (int k = y - r < 0 ? 0 : y - r; k <= y + r && k < CANVAS; k++)
                if (tmp[k * CANVAS + x] > m) m = tmp[k * CANVAS + x];
            pixels[y * CANVAS + x] = (uint8_t)m;
        }
    free(tmp);
}

int font_render_glyph(const BenchFont *font, int codepoint, const GlyphPlacement *placement, uint8_t *coverage) {
    const FontImpl *impl = font->impl;
    const stbtt_fontinfo *info = &impl->info;
    int glyph = stbtt_FindGlyphIndex(info, codepoint);
    int x0, y0, x1, y1;
    if (glyph == 0 || !stbtt_GetGlyphBox(info, glyph, &x0, &y0, &x1, &y1) || x1 <= x0 || y1 <= y0) return -1;
    float width = (float)(x1 - x0), height = (float)(y1 - y0);
    float scale = placement->cap_fit ? placement->size / font->cap_height
                                     : placement->size / (width > height ? width : height);
    stbtt_vertex *vertices = NULL;
    int vertex_count = stbtt_GetGlyphShape(info, glyph, &vertices);
    if (vertex_count <= 0) return -1;
    int *lengths = NULL, contours = 0;
    stbtt__point *points = stbtt_FlattenCurves(vertices, vertex_count, 0.35f / (scale * SUPER), &lengths, &contours, NULL);
    stbtt_FreeShape(info, vertices);
    if (!points) return -1;
    int total = 0;
    for (int i = 0; i < contours; i++) total += lengths[i];
    // Rotate about the box centre, in pixels with y down: counter-clockwise on the screen is
    // (u, v) -> (u c + v s, -u s + v c). The extents come from the outline itself (a font's stored
    // box can be off), so everything lands inside the image.
    double angle = placement->angle * M_PI / 180.0;
    float c = (float)cos(angle), s = (float)sin(angle);
    float mx = 0.5f * (float)(x0 + x1), my = 0.5f * (float)(y0 + y1);
    float lo_x = 1e30f, hi_x = -1e30f, lo_y = 1e30f, hi_y = -1e30f;
    for (int i = 0; i < total; i++) {
        float u = (points[i].x - mx) * scale, v = -(points[i].y - my) * scale;
        points[i].x = u * c + v * s;
        points[i].y = -u * s + v * c;
        lo_x = fminf(lo_x, points[i].x), hi_x = fmaxf(hi_x, points[i].x);
        lo_y = fminf(lo_y, points[i].y), hi_y = fmaxf(hi_y, points[i].y);
    }
    if (!(hi_x > lo_x) || !(hi_y > lo_y) || !isfinite(hi_x - lo_x) || !isfinite(hi_y - lo_y)) {
        free(points);
        free(lengths);
        return -1;
    }
    // Shrink to fit within the margin, centre the outline's box at the image centre + offset, and
    // shift it back inside if the offset pushed it out.
    float margin = 1.0f + placement->thicken;
    float limit = BENCH_S - 2.0f * margin;
    float shrink = fminf(1.0f, fminf(limit / (hi_x - lo_x), limit / (hi_y - lo_y)));
    float half_w = 0.5f * shrink * (hi_x - lo_x), half_h = 0.5f * shrink * (hi_y - lo_y);
    float box_cx = 0.5f * (lo_x + hi_x), box_cy = 0.5f * (lo_y + hi_y);
    float cx = 0.5f * BENCH_S + placement->dx, cy = 0.5f * BENCH_S + placement->dy;
    cx = fmaxf(cx, margin + half_w), cx = fminf(cx, BENCH_S - margin - half_w);
    cy = fmaxf(cy, margin + half_h), cy = fminf(cy, BENCH_S - margin - half_h);
    for (int i = 0; i < total; i++) {
        points[i].x = (cx + (points[i].x - box_cx) * shrink) * SUPER;
        points[i].y = (cy + (points[i].y - box_cy) * shrink) * SUPER;
    }
    uint8_t *canvas = calloc(CANVAS * CANVAS, 1);
    stbtt__bitmap bitmap = {CANVAS, CANVAS, CANVAS, canvas};
    stbtt__rasterize(&bitmap, points, lengths, contours, 1.0f, 1.0f, 0.0f, 0.0f, 0, 0, 0, NULL);
    free(points);
    free(lengths);
    dilate(canvas, (int)lroundf(placement->thicken * SUPER));
    for (int y = 0; y < BENCH_S; y++)
        for (int x = 0; x < BENCH_S; x++) {
            int sum = 0;
            for (int j = 0; j < SUPER; j++)
                for (int i = 0; i < SUPER; i++) sum += canvas[(y * SUPER + j) * CANVAS + x * SUPER + i];
            coverage[y * BENCH_S + x] = (uint8_t)((sum + SUPER * SUPER / 2) / (SUPER * SUPER));
        }
    free(canvas);
    return 0;
}
