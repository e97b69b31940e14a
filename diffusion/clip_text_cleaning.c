// CLIP text cleaning: see clip_text_cleaning.h. Each step names the Python function it reproduces.
#include "diffusion/clip_text_cleaning.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/tensor.h"

void clip_codes_push(ClipCodes *codes, uint32_t code) {
    if (codes->length == codes->capacity) {
        size_t capacity = codes->capacity ? codes->capacity * 2 : 64;
        uint32_t *grown = realloc(codes->data, capacity * sizeof *grown);
        if (!grown) tensor_fatal("clip_text", "out of memory");
        codes->data = grown;
        codes->capacity = capacity;
    }
    codes->data[codes->length++] = code;
}

void clip_codes_free(ClipCodes *codes) {
    free(codes->data);
    memset(codes, 0, sizeof *codes);
}

void clip_report_error(char *error, size_t error_size, const char *format, ...) {
    if (!error || error_size == 0) return;
    va_list args;
    va_start(args, format);
    vsnprintf(error, error_size, format, args);
    va_end(args);
}

static void codes_swap(ClipCodes *a, ClipCodes *b) {
    ClipCodes t = *a;
    *a = *b;
    *b = t;
}

static bool codes_equal(const ClipCodes *a, const ClipCodes *b) {
    return a->length == b->length &&
           (a->length == 0 || memcmp(a->data, b->data, a->length * sizeof *a->data) == 0);
}

// ---------------------------------------------------------------- UTF-8
void clip_utf8_decode_append(ClipCodes *codes, const char *utf8, size_t length) {
    const unsigned char *s = (const unsigned char *)utf8;
    size_t i = 0;
    while (i < length) {
        unsigned char b = s[i];
        if (b < 0x80) {
            clip_codes_push(codes, b);
            i++;
            continue;
        }
        int need;
        uint32_t code;
        unsigned char low = 0x80, high = 0xBF;  // allowed range of the second byte
        if (b >= 0xC2 && b <= 0xDF) need = 1, code = b & 0x1F;
        else if (b >= 0xE0 && b <= 0xEF) {
            need = 2, code = b & 0x0F;
            if (b == 0xE0) low = 0xA0;       // no overlong forms
            if (b == 0xED) high = 0x9F;      // no surrogates
        } else if (b >= 0xF0 && b <= 0xF4) {
            need = 3, code = b & 0x07;
            if (b == 0xF0) low = 0x90;
            if (b == 0xF4) high = 0x8F;      // <= U+10FFFF
        } else {
            clip_codes_push(codes, 0xFFFD);  // a byte that never starts a sequence
            i++;
            continue;
        }
        size_t j = i + 1;
        int got = 0;
        for (; got < need && j < length; got++, j++) {
            unsigned char c = s[j];
            if (c < (got == 0 ? low : 0x80) || c > (got == 0 ? high : 0xBF)) break;
            code = (code << 6) | (c & 0x3F);
        }
        if (got < need) {
            clip_codes_push(codes, 0xFFFD);  // the maximal valid prefix is replaced as one
            i = j;
            continue;
        }
        clip_codes_push(codes, code);
        i = j;
    }
}

int clip_utf8_encode(uint32_t code, char *out) {
    if (code < 0x80) {
        out[0] = (char)code;
        return 1;
    }
    if (code < 0x800) {
        out[0] = (char)(0xC0 | (code >> 6));
        out[1] = (char)(0x80 | (code & 0x3F));
        return 2;
    }
    if (code < 0x10000) {
        out[0] = (char)(0xE0 | (code >> 12));
        out[1] = (char)(0x80 | ((code >> 6) & 0x3F));
        out[2] = (char)(0x80 | (code & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (code >> 18));
    out[1] = (char)(0x80 | ((code >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((code >> 6) & 0x3F));
    out[3] = (char)(0x80 | (code & 0x3F));
    return 4;
}

static void push_utf8(ClipCodes *codes, const char *utf8) {
    clip_utf8_decode_append(codes, utf8, strlen(utf8));
}

// ---------------------------------------------------------------- tables
int clip_char_flags(uint32_t code) {
    int low = 0, high = clip_char_range_count - 1;  // last range starting at or before code
    while (low < high) {
        int mid = (low + high + 1) / 2;
        if (clip_char_ranges[mid].start <= code) low = mid;
        else high = mid - 1;
    }
    return clip_char_ranges[low].flags;
}

static const ClipStringMap *find_string_map(const ClipStringMap *map, int count, uint32_t code) {
    int low = 0, high = count - 1;
    while (low <= high) {
        int mid = (low + high) / 2;
        if (map[mid].code == code) return &map[mid];
        if (map[mid].code < code) low = mid + 1;
        else high = mid - 1;
    }
    return NULL;
}

static uint32_t lowercase_of(uint32_t code) {
    int low = 0, high = clip_lowercase_count - 1;
    while (low <= high) {
        int mid = (low + high) / 2;
        if (clip_lowercase[mid].code == code) return clip_lowercase[mid].mapped;
        if (clip_lowercase[mid].code < code) low = mid + 1;
        else high = mid - 1;
    }
    return code;
}

// Entity by name (ASCII, without '&') carrying `flag`; NULL if none.
static const char *find_entity(const char *name, int flag) {
    int low = 0, high = clip_html_entity_count - 1;
    while (low <= high) {
        int mid = (low + high) / 2;
        int order = strcmp(clip_html_entities[mid].name, name);
        if (order == 0) return (clip_html_entities[mid].flags & flag) ? clip_html_entities[mid].utf8 : NULL;
        if (order < 0) low = mid + 1;
        else high = mid - 1;
    }
    return NULL;
}

// codes[begin, end) as an ASCII string in name (capacity 64); false if not ASCII or too long.
static bool ascii_name(const uint32_t *codes, size_t begin, size_t end, char *name) {
    if (end - begin >= 64) return false;
    for (size_t i = begin; i < end; i++) {
        if (codes[i] >= 0x80) return false;
        name[i - begin] = (char)codes[i];
    }
    name[end - begin] = 0;
    return true;
}

static void append_range(ClipCodes *out, const uint32_t *codes, size_t begin, size_t end) {
    for (size_t i = begin; i < end; i++) clip_codes_push(out, codes[i]);
}

static bool is_ascii_digit(uint32_t c) { return c >= '0' && c <= '9'; }
static bool is_ascii_hex(uint32_t c) { return is_ascii_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
static bool is_ascii_alnum(uint32_t c) { return is_ascii_digit(c) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z'); }

// ---------------------------------------------------------------- html.unescape
// Python's html._replace_charref for a numeric reference with value `number` (saturated).
static void append_numeric_reference(ClipCodes *out, uint64_t number) {
    const ClipStringMap *invalid = number <= 0xFFFFFFFFu
        ? find_string_map(clip_html_invalid_charrefs, clip_html_invalid_charref_count, (uint32_t)number)
        : NULL;
    if (invalid) push_utf8(out, invalid->utf8);
    else if ((number >= 0xD800 && number <= 0xDFFF) || number > 0x10FFFF) clip_codes_push(out, 0xFFFD);
    else if (clip_html_invalid_codepoint((uint32_t)number)) return;
    else clip_codes_push(out, (uint32_t)number);
}

// Tries html.unescape's pattern at codes[i] == '&':
//   &(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)
// On a match appends the replacement and returns the index after it; otherwise returns i.
static size_t html_reference_at(const uint32_t *codes, size_t length, size_t i, ClipCodes *out) {
    size_t j = i + 1;
    if (j < length && codes[j] == '#') {
        bool hex = j + 1 < length && (codes[j + 1] == 'x' || codes[j + 1] == 'X');
        size_t k = j + 1 + (hex ? 1 : 0), start = k;
        uint64_t number = 0;
        while (k < length && (hex ? is_ascii_hex(codes[k]) : is_ascii_digit(codes[k]))) {
            uint32_t c = codes[k] | 0x20;
            uint64_t digit = is_ascii_digit(codes[k]) ? codes[k] - '0' : c - 'a' + 10;
            if (number <= 0x10FFFFFF) number = number * (hex ? 16 : 10) + digit;  // saturates above 0x10FFFF
            k++;
        }
        // "&#" or "&#x" without digits matches nothing ('#' cannot start a name).
        if (k == start) return i;
        if (k < length && codes[k] == ';') k++;
        append_numeric_reference(out, number);
        return k;
    }
    size_t k = j;
    while (k < length && k - j < 32) {
        uint32_t c = codes[k];
        if (c == '\t' || c == '\n' || c == '\f' || c == ' ' || c == '<' || c == '&' || c == '#' || c == ';') break;
        k++;
    }
    if (k == j) return i;
    if (k < length && codes[k] == ';') k++;
    char name[64];
    const char *value;
    if (ascii_name(codes, j, k, name) && (value = find_entity(name, 1))) {
        push_utf8(out, value);
        return k;
    }
    // The longest known prefix of at least two characters (html5 has names without ';').
    for (size_t x = k - j - 1; x >= 2; x--) {
        if (ascii_name(codes, j, j + x, name) && (value = find_entity(name, 1))) {
            push_utf8(out, value);
            append_range(out, codes, j + x, k);
            return k;
        }
    }
    append_range(out, codes, i, k);
    return k;
}

void clip_html_unescape(const ClipCodes *in, ClipCodes *out) {
    out->length = 0;
    for (size_t i = 0; i < in->length;) {
        if (in->data[i] == '&') {
            size_t next = html_reference_at(in->data, in->length, i, out);
            if (next != i) {
                i = next;
                continue;
            }
        }
        clip_codes_push(out, in->data[i++]);
    }
}

// ---------------------------------------------------------------- ftfy subset
// ftfy.fixes.unescape_html: &#?[0-9A-Za-z]{1,24}; replaced when it is in ftfy's HTML_ENTITIES, or
// when it is a numeric reference that html.unescape decodes whole.
static void ftfy_unescape_html(const ClipCodes *in, ClipCodes *out) {
    out->length = 0;
    ClipCodes one = {0}, decoded = {0};
    for (size_t i = 0; i < in->length;) {
        const uint32_t *c = in->data;
        if (c[i] == '&') {
            size_t j = i + 1 + (i + 1 < in->length && c[i + 1] == '#');
            size_t k = j;
            while (k < in->length && is_ascii_alnum(c[k])) k++;
            if (k > j && k - j <= 24 && k < in->length && c[k] == ';') {
                size_t end = k + 1;
                char name[64];
                const char *value = ascii_name(c, i + 1, end, name) ? find_entity(name, 2) : NULL;
                if (value) {
                    push_utf8(out, value);
                    i = end;
                    continue;
                }
                if (c[i + 1] == '#') {
                    one.length = 0;
                    append_range(&one, c, i, end);
                    clip_html_unescape(&one, &decoded);
                    bool has_semicolon = false;
                    for (size_t m = 0; m < decoded.length; m++) has_semicolon |= decoded.data[m] == ';';
                    append_range(out, has_semicolon ? one.data : decoded.data, 0,
                                 has_semicolon ? one.length : decoded.length);
                    i = end;
                    continue;
                }
                append_range(out, c, i, end);
                i = end;
                continue;
            }
        }
        clip_codes_push(out, c[i++]);
    }
    clip_codes_free(&one);
    clip_codes_free(&decoded);
}

static void apply_char_map(const ClipStringMap *map, int count, const ClipCodes *in, ClipCodes *out) {
    out->length = 0;
    for (size_t i = 0; i < in->length; i++) {
        const ClipStringMap *entry = find_string_map(map, count, in->data[i]);
        if (entry) push_utf8(out, entry->utf8);
        else clip_codes_push(out, in->data[i]);
    }
}

// ftfy.fixes.remove_terminal_escapes: \033\[((?:\d|;)*)([a-zA-Z]) removed.
static void remove_terminal_escapes(const ClipCodes *in, ClipCodes *out) {
    out->length = 0;
    for (size_t i = 0; i < in->length;) {
        if (in->data[i] == 0x1B && i + 1 < in->length && in->data[i + 1] == '[') {
            size_t k = i + 2;
            while (k < in->length && (in->data[k] == ';' || (clip_char_flags(in->data[k]) & CLIP_CHAR_DIGIT))) k++;
            if (k < in->length && in->data[k] < 0x80 && ((in->data[k] | 0x20) >= 'a' && (in->data[k] | 0x20) <= 'z')) {
                i = k + 1;
                continue;
            }
        }
        clip_codes_push(out, in->data[i++]);
    }
}

// ftfy.fix_and_explain on one segment, without fix_encoding: the fixers in ftfy's order until the
// text stops changing.
static void ftfy_fix_segment(ClipCodes *text, bool unescape, ClipCodes *scratch) {
    ClipCodes before = {0};
    for (;;) {
        before.length = 0;
        append_range(&before, text->data, 0, text->length);
        if (unescape) {
            ftfy_unescape_html(text, scratch);
            codes_swap(text, scratch);
        }
        apply_char_map(clip_fix_map_a, clip_fix_map_a_count, text, scratch);
        codes_swap(text, scratch);
        remove_terminal_escapes(text, scratch);
        codes_swap(text, scratch);
        apply_char_map(clip_fix_map_b, clip_fix_map_b_count, text, scratch);
        codes_swap(text, scratch);
        if (codes_equal(text, &before)) break;
    }
    clip_codes_free(&before);
}

// ftfy.fix_text: segments end after each '\n'; HTML unescaping ("auto") stops for good at the first
// segment that contains '<'.
static void ftfy_fix_text(const ClipCodes *in, ClipCodes *out) {
    out->length = 0;
    ClipCodes segment = {0}, scratch = {0};
    bool unescape = true;
    for (size_t begin = 0; begin < in->length;) {
        size_t end = begin;
        while (end < in->length && in->data[end] != '\n') end++;
        if (end < in->length) end++;
        segment.length = 0;
        append_range(&segment, in->data, begin, end);
        for (size_t i = begin; i < end; i++)
            if (in->data[i] == '<') unescape = false;
        ftfy_fix_segment(&segment, unescape, &scratch);
        append_range(out, segment.data, 0, segment.length);
        begin = end;
    }
    clip_codes_free(&segment);
    clip_codes_free(&scratch);
}

// ---------------------------------------------------------------- whitespace and case
// " ".join(text.split()): runs of str.isspace() characters become one space, none at the ends.
static void collapse_whitespace(const ClipCodes *in, ClipCodes *out) {
    out->length = 0;
    bool pending_space = false;
    for (size_t i = 0; i < in->length; i++) {
        if (clip_char_flags(in->data[i]) & CLIP_CHAR_SPACE) {
            pending_space = out->length > 0;
            continue;
        }
        if (pending_space) clip_codes_push(out, ' ');
        pending_space = false;
        clip_codes_push(out, in->data[i]);
    }
}

// str.lower(): the one-to-one mappings, U+0130 -> "i\u0307", and capital sigma as final sigma
// when a cased letter precedes it and none follows (case-ignorable characters skipped), as
// CPython's handle_capital_sigma.
static void lowercase(const ClipCodes *in, ClipCodes *out) {
    out->length = 0;
    for (size_t i = 0; i < in->length; i++) {
        uint32_t c = in->data[i];
        if (c == 0x130) {
            clip_codes_push(out, 'i');
            clip_codes_push(out, 0x307);
        } else if (c == 0x3A3) {
            size_t j = i;
            int flags = 0;
            while (j > 0 && ((flags = clip_char_flags(in->data[j - 1])) & CLIP_CHAR_CASE_IGNORABLE)) j--;
            bool final_sigma = j > 0 && (flags & CLIP_CHAR_CASED);
            if (final_sigma) {
                size_t k = i + 1;
                while (k < in->length && ((flags = clip_char_flags(in->data[k])) & CLIP_CHAR_CASE_IGNORABLE)) k++;
                final_sigma = k == in->length || !(flags & CLIP_CHAR_CASED);
            }
            clip_codes_push(out, final_sigma ? 0x3C2 : 0x3C3);
        } else {
            clip_codes_push(out, lowercase_of(c));
        }
    }
}

void clip_text_clean(const char *text, size_t length, ClipCleanOptions options, ClipCodes *out) {
    ClipCodes a = {0}, b = {0};
    clip_utf8_decode_append(&a, text, length);
    if (options.ftfy) {
        ftfy_fix_text(&a, &b);
        codes_swap(&a, &b);
    }
    for (int pass = 0; pass < options.html_unescape_passes; pass++) {
        clip_html_unescape(&a, &b);
        codes_swap(&a, &b);
    }
    collapse_whitespace(&a, &b);  // also strips, as basic_clean's str.strip() and whitespace_clean
    lowercase(&b, out);
    clip_codes_free(&a);
    clip_codes_free(&b);
}
