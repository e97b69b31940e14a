// Text cleaning shared by the CLIP BPE tokenizer and the word tokenizer: UTF-8 <-> code points,
// the references' cleaning steps (a subset of ftfy.fix_text, Python's html.unescape, whitespace
// collapsing, str.lower() with its final sigma rule) and the character classes of their
// pre-tokenizer pattern. Tables come from tests/ref/gen_clip_text_tables.py (Python's Unicode data,
// regex, ftfy), so no Unicode library is needed. docs/TOKENIZERS.md says what is and is not
// reproduced.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "diffusion/clip_text_tables.h"

// A growable array of Unicode code points. Zero-initialise; free with clip_codes_free. Allocation
// failure ends the program with one line (tensor_fatal).
typedef struct {
    uint32_t *data;
    size_t length, capacity;
} ClipCodes;

void clip_codes_push(ClipCodes *codes, uint32_t code);
void clip_codes_free(ClipCodes *codes);

// Decodes UTF-8 into code points, appending. Invalid sequences become U+FFFD, one per maximal
// invalid subpart (as Python's bytes.decode(errors="replace")).
void clip_utf8_decode_append(ClipCodes *codes, const char *utf8, size_t length);
// Writes the UTF-8 form of code (<= 4 bytes) to out; returns the byte count.
int clip_utf8_encode(uint32_t code, char *out);

// CLIP_CHAR_* flags of a code point (clip_text_tables.h).
int clip_char_flags(uint32_t code);

typedef struct {
    // ftfy.fix_text's subset (docs/TOKENIZERS.md): its HTML unescaping (off for a line containing
    // '<' and every line after it), C1 controls, Latin ligatures, full-width characters, curly
    // quotes, line breaks, ANSI escapes, control characters, single-character NFC; repeated until
    // nothing changes, as ftfy does. Mojibake repair and the composition of combining sequences
    // are not done.
    bool ftfy;
    // Python html.unescape passes after ftfy: 2 in OpenAI CLIP / open_clip (basic_clean), 0 in
    // Hugging Face CLIPTokenizer.
    int html_unescape_passes;
} ClipCleanOptions;

// The references' cleaning: fixes, html.unescape passes, whitespace collapsed to single spaces and
// stripped, then str.lower(). text is UTF-8 of `length` bytes; out is replaced.
void clip_text_clean(const char *text, size_t length, ClipCleanOptions options, ClipCodes *out);

// Writes one formatted error line into error (nothing when error is NULL or error_size is 0); the
// tokenizers' loaders report through it.
void clip_report_error(char *error, size_t error_size, const char *format, ...) __attribute__((format(printf, 3, 4)));

// Python's html.unescape on code points (exposed for the tests).
void clip_html_unescape(const ClipCodes *in, ClipCodes *out);
