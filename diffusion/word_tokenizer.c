// Word-level tokenizer: see word_tokenizer.h.
#include "diffusion/word_tokenizer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "diffusion/clip_text_cleaning.h"
#include "engine/string_map.h"
#include "engine/json.h"
#include "engine/tensor.h"

static const char *const SPECIAL_TOKENS[WORD_SPECIAL_COUNT] = {"<pad>", "<bos>", "<eos>", "<unk>"};

struct WordTokenizer {
    StringMap ids;   // word -> id (specials included)
    char **tokens;   // id -> word
    int32_t count, capacity;
};

WordVocabOptions word_vocab_defaults(void) { return (WordVocabOptions){.min_count = 1, .max_words = 0}; }

// Calls visit(word bytes, length, context) for each word of text (see word_tokenizer.h).
typedef void (*WordVisitor)(const char *word, size_t length, void *context);

static void split_words(const char *text, WordVisitor visit, void *context) {
    ClipCodes codes = {0};
    clip_text_clean(text, strlen(text), (ClipCleanOptions){.ftfy = false, .html_unescape_passes = 0}, &codes);
    char *word = malloc(codes.length * 4 + 1);
    if (!word) tensor_fatal("word_tokenizer", "out of memory");
    for (size_t i = 0; i < codes.length;) {
        int flags = clip_char_flags(codes.data[i]);
        if (flags & CLIP_CHAR_SPACE) {
            i++;
            continue;
        }
        size_t end = i + 1;
        if (flags & (CLIP_CHAR_LETTER | CLIP_CHAR_NUMBER))
            while (end < codes.length && (clip_char_flags(codes.data[end]) & (CLIP_CHAR_LETTER | CLIP_CHAR_NUMBER))) end++;
        size_t length = 0;
        for (size_t k = i; k < end; k++) length += (size_t)clip_utf8_encode(codes.data[k], word + length);
        visit(word, length, context);
        i = end;
    }
    free(word);
    clip_codes_free(&codes);
}

static WordTokenizer *new_tokenizer(void) {
    WordTokenizer *t = calloc(1, sizeof *t);
    if (!t) tensor_fatal("word_tokenizer", "out of memory");
    return t;
}

// Appends a token (copied); the caller has checked that it is new.
static void add_token(WordTokenizer *t, const char *token, size_t length) {
    if (t->count == t->capacity) {
        t->capacity = t->capacity ? t->capacity * 2 : 16;
        t->tokens = realloc(t->tokens, (size_t)t->capacity * sizeof *t->tokens);
        if (!t->tokens) tensor_fatal("word_tokenizer", "out of memory");
    }
    char *copy = malloc(length + 1);
    if (!copy) tensor_fatal("word_tokenizer", "out of memory");
    memcpy(copy, token, length);
    copy[length] = 0;
    t->tokens[t->count] = copy;
    string_map_put(&t->ids, token, length, t->count);
    t->count++;
}

static void count_word(const char *word, size_t length, void *context) {
    StringMap *counts = context;
    int64_t *count = string_map_find(counts, word, length);
    if (count) (*count)++;
    else string_map_put(counts, word, length, 1);
}

typedef struct {
    const char *word;
    size_t length;
    int64_t count;
} WordCount;

static int by_count_then_bytes(const void *a, const void *b) {
    const WordCount *x = a, *y = b;
    if (x->count != y->count) return x->count > y->count ? -1 : 1;
    size_t n = x->length < y->length ? x->length : y->length;
    int order = memcmp(x->word, y->word, n);
    if (order) return order;
    return x->length < y->length ? -1 : x->length > y->length;
}

WordTokenizer *word_tokenizer_build(const char *const *captions, size_t count, WordVocabOptions options) {
    if (options.min_count < 1) tensor_fatal("word_tokenizer_build", "min_count %d, expected at least 1", options.min_count);
    if (options.max_words < 0) tensor_fatal("word_tokenizer_build", "max_words %d, expected 0 (no limit) or more", options.max_words);
    StringMap counts = {0};
    for (size_t i = 0; i < count; i++) split_words(captions[i], count_word, &counts);
    WordCount *words = malloc((counts.count + 1) * sizeof *words);
    if (!words) tensor_fatal("word_tokenizer_build", "out of memory");
    size_t n = 0;
    for (size_t i = 0; i < counts.capacity; i++)
        if (counts.keys[i] && counts.values[i] >= options.min_count)
            words[n++] = (WordCount){counts.keys[i], counts.key_lengths[i], counts.values[i]};
    qsort(words, n, sizeof *words, by_count_then_bytes);
    if (options.max_words && n > (size_t)options.max_words) n = (size_t)options.max_words;
    WordTokenizer *t = new_tokenizer();
    for (int i = 0; i < WORD_SPECIAL_COUNT; i++) add_token(t, SPECIAL_TOKENS[i], strlen(SPECIAL_TOKENS[i]));
    for (size_t i = 0; i < n; i++) {
        // A word can never equal a special token: '<' is a word of its own.
        add_token(t, words[i].word, words[i].length);
    }
    free(words);
    string_map_free(&counts);
    return t;
}

int word_tokenizer_save(const WordTokenizer *t, const char *path, char *error, size_t error_size) {
    size_t length = strlen(path) + 32;
    char *temporary = malloc(length);
    if (!temporary) tensor_fatal("word_tokenizer_save", "out of memory");
    snprintf(temporary, length, "%s.tmp.%ld", path, (long)getpid());
    FILE *file = fopen(temporary, "wb");
    if (!file) {
        clip_report_error(error, error_size, "%s: cannot create: %s", temporary, strerror(errno));
        free(temporary);
        return -1;
    }
    fprintf(file, "%s\n", WORD_VOCAB_HEADER);
    for (int32_t i = 0; i < t->count; i++) fprintf(file, "%s\n", t->tokens[i]);
    bool failed = fflush(file) != 0 || fsync(fileno(file)) != 0;
    failed |= fclose(file) != 0;
    if (failed || rename(temporary, path) != 0) {
        clip_report_error(error, error_size, "%s: cannot write: %s", path, strerror(errno));
        unlink(temporary);
        free(temporary);
        return -1;
    }
    free(temporary);
    return 0;
}

WordTokenizer *word_tokenizer_load(const char *path, char *error, size_t error_size) {
    FILE *file = fopen(path, "rb");
    if (!file) {
        clip_report_error(error, error_size, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    WordTokenizer *t = new_tokenizer();
    char *line = NULL;
    size_t capacity = 0, line_number = 0;
    ssize_t got;
    bool ok = true;
    while (ok && (got = getline(&line, &capacity, file)) >= 0) {
        line_number++;
        size_t length = (size_t)got;
        if (length && line[length - 1] == '\n') line[--length] = 0;
        else {
            clip_report_error(error, error_size, "%s:%zu: the last line has no newline (truncated file?)", path, line_number);
            ok = false;
            break;
        }
        if (line_number == 1) {
            if (strcmp(line, WORD_VOCAB_HEADER) != 0) {
                clip_report_error(error, error_size, "%s:1: expected the header line '%s'", path, WORD_VOCAB_HEADER);
                ok = false;
            }
            continue;
        }
        int32_t id = (int32_t)line_number - 2;
        ClipCodes codes = {0};
        clip_utf8_decode_append(&codes, line, length);
        bool has_space = false;
        for (size_t i = 0; i < codes.length; i++) has_space |= (clip_char_flags(codes.data[i]) & CLIP_CHAR_SPACE) != 0;
        clip_codes_free(&codes);
        if (id < WORD_SPECIAL_COUNT && strcmp(line, SPECIAL_TOKENS[id]) != 0) {
            clip_report_error(error, error_size, "%s:%zu: expected the special token '%s' (id %d)", path, line_number,
                   SPECIAL_TOKENS[id], id);
            ok = false;
        } else if (length == 0 || has_space) {
            clip_report_error(error, error_size, "%s:%zu: %s", path, line_number, length ? "a word with whitespace" : "empty line");
            ok = false;
        } else if (strlen(line) != length || !json_utf8_valid(line, length)) {
            clip_report_error(error, error_size, "%s:%zu: not valid UTF-8", path, line_number);
            ok = false;
        } else if (string_map_find(&t->ids, line, length)) {
            clip_report_error(error, error_size, "%s:%zu: '%s' repeats the token of id %d", path, line_number, line,
                   (int)*string_map_find(&t->ids, line, length));
            ok = false;
        } else {
            add_token(t, line, length);
        }
    }
    bool read_error = ferror(file);
    fclose(file);
    free(line);
    if (ok && read_error) {
        clip_report_error(error, error_size, "%s: read error", path);
        ok = false;
    }
    if (ok && t->count < WORD_SPECIAL_COUNT) {
        clip_report_error(error, error_size, "%s:%zu: the file ends before the %d special tokens", path, line_number + 1,
               WORD_SPECIAL_COUNT);
        ok = false;
    }
    if (!ok) {
        word_tokenizer_free(t);
        return NULL;
    }
    return t;
}

WordTokenizer *word_tokenizer_open(const char *path) {
    char error[512];
    WordTokenizer *t = word_tokenizer_load(path, error, sizeof error);
    if (!t) tensor_fatal("word_tokenizer", "%s", error);
    return t;
}

void word_tokenizer_free(WordTokenizer *t) {
    if (!t) return;
    for (int32_t i = 0; i < t->count; i++) free(t->tokens[i]);
    free(t->tokens);
    string_map_free(&t->ids);
    free(t);
}

int32_t word_tokenizer_vocab_size(const WordTokenizer *t) { return t->count; }

const char *word_tokenizer_token(const WordTokenizer *t, int32_t id) {
    return id >= 0 && id < t->count ? t->tokens[id] : NULL;
}

int32_t word_tokenizer_id(const WordTokenizer *t, const char *word) {
    int64_t *id = string_map_find(&t->ids, word, strlen(word));
    return id ? (int32_t)*id : WORD_UNK_ID;
}

typedef struct {
    const WordTokenizer *tokenizer;
    int32_t *out;
    int capacity;  // ids that fit between BOS and EOS
    int used;
} EncodeState;

static void encode_word(const char *word, size_t length, void *context) {
    EncodeState *state = context;
    if (state->used == state->capacity) return;
    int64_t *id = string_map_find(&state->tokenizer->ids, word, length);
    // A word spelled like a special token ("<unk>" cannot come out of split_words) is unknown.
    state->out[1 + state->used++] = id && *id >= WORD_SPECIAL_COUNT ? (int32_t)*id : WORD_UNK_ID;
}

int word_tokenizer_encode(const WordTokenizer *t, const char *text, int context_length, int32_t *out) {
    if (context_length < 2)
        tensor_fatal("word_tokenizer_encode", "context length %d, expected at least 2 (BOS and EOS)", context_length);
    EncodeState state = {t, out, context_length - 2, 0};
    out[0] = WORD_BOS_ID;
    split_words(text, encode_word, &state);
    out[state.used + 1] = WORD_EOS_ID;
    for (int i = state.used + 2; i < context_length; i++) out[i] = WORD_PAD_ID;
    return state.used + 2;
}

char *word_tokenizer_decode(const WordTokenizer *t, const int32_t *ids, size_t count) {
    size_t total = 1;
    for (size_t i = 0; i < count; i++) {
        if (ids[i] < 0 || ids[i] >= t->count)
            tensor_fatal("word_tokenizer_decode", "id %d at position %zu is not in the vocabulary (size %d)", ids[i], i,
                         t->count);
        total += strlen(t->tokens[ids[i]]) + 1;
    }
    char *text = malloc(total);
    if (!text) tensor_fatal("word_tokenizer_decode", "out of memory");
    size_t length = 0;
    for (size_t i = 0; i < count; i++) {
        if (ids[i] == WORD_PAD_ID || ids[i] == WORD_BOS_ID || ids[i] == WORD_EOS_ID) continue;
        if (length) text[length++] = ' ';
        size_t n = strlen(t->tokens[ids[i]]);
        memcpy(text + length, t->tokens[ids[i]], n);
        length += n;
    }
    text[length] = 0;
    return text;
}
