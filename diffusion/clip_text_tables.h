// Tables for the CLIP text cleaner (diffusion/clip_text_cleaning.c), generated from Python's own Unicode
// data, the regex module and ftfy by tests/ref/gen_clip_text_tables.py (its docstring says what
// each table holds and how to regenerate diffusion/clip_text_tables.c).
#pragma once
#include <stddef.h>
#include <stdint.h>

enum {
    CLIP_CHAR_LETTER = 1,           // [\p{L}] under IGNORECASE
    CLIP_CHAR_NUMBER = 2,           // [\p{N}]
    CLIP_CHAR_OTHER = 4,            // [^\s\p{L}\p{N}]
    CLIP_CHAR_SPACE = 8,            // str.isspace()
    CLIP_CHAR_DIGIT = 16,           // re's \d (category Nd)
    CLIP_CHAR_CASED = 32,           // final sigma rule of str.lower()
    CLIP_CHAR_CASE_IGNORABLE = 64,  // skipped by that rule
};

typedef struct {
    uint32_t start;  // the flags hold from start up to the next range's start
    uint8_t flags;
} ClipCharRange;

typedef struct {
    uint32_t code, mapped;
} ClipCodeMap;

typedef struct {
    uint32_t code;
    const char *utf8;  // replacement, may be ""
} ClipStringMap;

typedef struct {
    const char *name;   // without the '&', with the ';' when the entity has one
    const char *utf8;
    uint8_t flags;      // 1: html.entities.html5 (html.unescape), 2: ftfy's HTML_ENTITIES
} ClipHtmlEntity;

extern const ClipCharRange clip_char_ranges[];
extern const int clip_char_range_count;
extern const ClipCodeMap clip_lowercase[];
extern const int clip_lowercase_count;
extern const ClipStringMap clip_fix_map_a[];
extern const int clip_fix_map_a_count;
extern const ClipStringMap clip_fix_map_b[];
extern const int clip_fix_map_b_count;
extern const ClipHtmlEntity clip_html_entities[];
extern const int clip_html_entity_count;
extern const ClipStringMap clip_html_invalid_charrefs[];
extern const int clip_html_invalid_charref_count;
int clip_html_invalid_codepoint(uint32_t code);
