// The CLIP BPE tokenizer: see clip_tokenizer.h and docs/TOKENIZERS.md.
#include "diffusion/clip_tokenizer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "engine/string_map.h"
#include "engine/json.h"
#include "engine/tensor.h"

#define CACHE_MAX_PIECES 65536  // the piece cache starts over when it holds this many

struct ClipTokenizer {
    StringMap vocab;              // token string -> id
    char **tokens;                // id -> token string (NULL for an id no token has)
    char **token_bytes;           // id -> the bytes it stands for (byte alphabet decoded)
    size_t *token_byte_lengths;
    int32_t vocab_size;
    int32_t byte_id[256], byte_end_id[256];  // a byte's symbol inside and at the end of a word
    // Merges: (left id, right id) -> rank and merged id; open addressing, EMPTY_PAIR when free.
    uint64_t *pair_keys;
    int32_t *pair_ranks, *pair_merged;
    size_t pair_capacity;
    int32_t bos, eos;
    StringMap cache;              // piece bytes -> offset in cache_ids of [count, ids...]
    int32_t *cache_ids;
    size_t cache_used, cache_capacity;
};

#define EMPTY_PAIR UINT64_MAX

// ---------------------------------------------------------------- byte alphabet
// GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the other 68 bytes for
// U+0100 + n in byte order. byte_alphabet_order lists bytes in the dict's order (the printable
// ones first), which is the order of the first 256 ids of OpenAI's vocabulary.
static uint32_t byte_char[256];
static int16_t char_byte[0x144];  // code point -> byte, -1 for none
static uint8_t byte_alphabet_order[256];

static void init_byte_alphabet(void) {
    static int done;
    if (done) return;
    int n = 0, extra = 0;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        if (printable) byte_char[b] = (uint32_t)b, byte_alphabet_order[n++] = (uint8_t)b;
    }
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        if (!printable) byte_char[b] = 0x100u + (uint32_t)extra++, byte_alphabet_order[n++] = (uint8_t)b;
    }
    for (int c = 0; c < 0x144; c++) char_byte[c] = -1;
    for (int b = 0; b < 256; b++) char_byte[byte_char[b]] = (int16_t)b;
    done = 1;
}

// The byte-alphabet string of byte b, optionally followed by "</w>", into out (>= 8 bytes).
static size_t byte_symbol(int b, bool word_end, char *out) {
    size_t length = (size_t)clip_utf8_encode(byte_char[b], out);
    if (word_end) memcpy(out + length, "</w>", 4), length += 4;
    out[length] = 0;
    return length;
}

// ---------------------------------------------------------------- file reading
// The whole file (inflated when it is gzip; zlib reads plain files as they are), NUL-terminated.
static char *read_whole_file(const char *path, size_t *size, char *error, size_t error_size) {
    gzFile file = gzopen(path, "rb");
    if (!file) {
        clip_report_error(error, error_size, "%s: cannot open: %s", path, errno ? strerror(errno) : "out of memory");
        return NULL;
    }
    size_t capacity = 1 << 20, used = 0;
    char *buffer = malloc(capacity + 1);
    for (;;) {
        if (!buffer) tensor_fatal("clip_tokenizer", "out of memory reading %s", path);
        if (used == capacity) {
            capacity *= 2;
            buffer = realloc(buffer, capacity + 1);
            continue;
        }
        unsigned chunk = capacity - used > (1u << 30) ? (1u << 30) : (unsigned)(capacity - used);
        int got = gzread(file, buffer + used, chunk);
        if (got < 0) {
            int code;
            const char *message = gzerror(file, &code);
            clip_report_error(error, error_size, "%s: corrupt or truncated gzip data: %s", path,
                   code == Z_ERRNO ? strerror(errno) : message);
            free(buffer);
            gzclose(file);
            return NULL;
        }
        if (got == 0) break;
        used += (size_t)got;
    }
    int close_status = gzclose(file);
    if (close_status != Z_OK) {
        // Z_BUF_ERROR: the gzip stream ended early (a truncated .gz).
        clip_report_error(error, error_size, "%s: %s", path,
               close_status == Z_BUF_ERROR ? "truncated gzip data (unexpected end of file)" : "read error");
        free(buffer);
        return NULL;
    }
    buffer[used] = 0;
    *size = used;
    return buffer;
}

// 1-based line of byte offset `at`.
static size_t line_of(const char *text, size_t at) {
    size_t line = 1;
    for (size_t i = 0; i < at; i++) line += text[i] == '\n';
    return line;
}

static bool check_utf8(const char *path, const char *text, size_t size, char *error, size_t error_size) {
    if (json_utf8_valid(text, size)) return true;
    // Find the first bad line for the message.
    size_t begin = 0;
    for (size_t i = 0; i <= size; i++) {
        if (i == size || text[i] == '\n') {
            if (!json_utf8_valid(text + begin, i - begin)) {
                clip_report_error(error, error_size, "%s:%zu: not valid UTF-8", path, line_of(text, begin));
                return false;
            }
            begin = i + 1;
        }
    }
    clip_report_error(error, error_size, "%s: not valid UTF-8", path);
    return false;
}

// A merges file must be UTF-8 (Python decodes it) without NUL bytes (lines are C strings here).
static bool check_text(const char *path, const char *text, size_t size, char *error, size_t error_size) {
    if (!check_utf8(path, text, size, error, error_size)) return false;
    if (strlen(text) == size) return true;
    clip_report_error(error, error_size, "%s:%zu: NUL byte in a text file", path, line_of(text, strlen(text)));
    return false;
}

// ---------------------------------------------------------------- merges
typedef struct {
    char *left, *right;  // point into the file text (NUL-terminated in place)
    size_t line;
} Merge;

// Splits a merge line in place into its two symbols (Python's merge.split() must give two).
static bool split_merge_line(char *line, Merge *merge) {
    char *parts[3] = {0};
    int count = 0;
    char *p = line;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\v' || *p == '\f') *p++ = 0;
        if (!*p) break;
        if (count == 3) break;
        parts[count++] = p;
        while (*p && *p != ' ' && *p != '\t' && *p != '\r' && *p != '\v' && *p != '\f') p++;
    }
    if (count != 2) return false;
    merge->left = parts[0];
    merge->right = parts[1];
    return true;
}

static void quote_line(const char *line, char *out, size_t out_size) {
    size_t n = strcspn(line, "\n");
    if (n > 40) snprintf(out, out_size, "%.40s...", line);
    else snprintf(out, out_size, "%.*s", (int)n, line);
}

// Parses merge lines [first_line, first_line + max_count) of text (all of them when max_count is
// 0). Lines are 1-based; line 1 is the header both formats have. Returns the count, or -1.
static long parse_merges(const char *path, char *text, size_t first_line, size_t max_count,
                         bool allow_trailing_blank, Merge **out, char *error, size_t error_size) {
    size_t capacity = 65536, count = 0, line = 1;
    Merge *merges = malloc(capacity * sizeof *merges);
    char *p = text;
    while (p && *p != 0 && !(max_count && count == max_count)) {
        char *end = strchr(p, '\n');
        if (end) *end = 0;
        if (line >= first_line) {
            char shown[64];
            quote_line(p, shown, sizeof shown);
            if (allow_trailing_blank && p[strspn(p, " \t\r\v\f")] == 0) {
                // Blank lines are allowed only at the end (HF reads merges.txt with strip()).
                char *rest = end ? end + 1 : NULL;
                if (!rest || rest[strspn(rest, " \t\r\v\f\n")] == 0) break;
            }
            if (count == capacity) merges = realloc(merges, (capacity *= 2) * sizeof *merges);
            if (!merges) tensor_fatal("clip_tokenizer", "out of memory");
            if (!split_merge_line(p, &merges[count])) {
                clip_report_error(error, error_size, "%s:%zu: expected a merge: two symbols separated by a space, got '%s'",
                       path, line, shown);
                free(merges);
                return -1;
            }
            merges[count++].line = line;
        }
        p = end ? end + 1 : NULL;
        line++;
    }
    *out = merges;
    return (long)count;
}

// ---------------------------------------------------------------- building
static uint64_t pair_key(int32_t left, int32_t right) { return ((uint64_t)(uint32_t)left << 32) | (uint32_t)right; }

static size_t pair_slot(const ClipTokenizer *t, uint64_t key) {
    uint64_t hash = key * 0x9E3779B97F4A7C15ull;
    size_t mask = t->pair_capacity - 1, slot = (size_t)(hash >> 20) & mask;
    while (t->pair_keys[slot] != EMPTY_PAIR && t->pair_keys[slot] != key) slot = (slot + 1) & mask;
    return slot;
}

static int32_t find_token(const ClipTokenizer *t, const char *token, size_t length) {
    int64_t *id = string_map_find(&t->vocab, token, length);
    return id ? (int32_t)*id : -1;
}

// Sets tokens[] from the vocabulary map and checks it; fills the byte alphabet ids, specials and
// the merge table. vocab_path names the vocabulary in messages (the merges file for OpenAI's).
static bool finish(ClipTokenizer *t, const char *vocab_path, const char *merges_path, const Merge *merges,
                   size_t merge_count, char *error, size_t error_size) {
    t->tokens = calloc((size_t)t->vocab_size, sizeof *t->tokens);
    t->token_bytes = calloc((size_t)t->vocab_size, sizeof *t->token_bytes);
    t->token_byte_lengths = calloc((size_t)t->vocab_size, sizeof *t->token_byte_lengths);
    if (!t->tokens || !t->token_bytes || !t->token_byte_lengths) tensor_fatal("clip_tokenizer", "out of memory");
    for (size_t i = 0; i < t->vocab.capacity; i++) {
        const char *token = t->vocab.keys[i];
        if (!token) continue;
        int32_t id = (int32_t)t->vocab.values[i];
        if (t->tokens[id]) {
            clip_report_error(error, error_size, "%s: tokens '%s' and '%s' have the same id %d", vocab_path, t->tokens[id], token, id);
            return false;
        }
        t->tokens[id] = t->vocab.keys[i];
        ClipCodes codes = {0};
        clip_utf8_decode_append(&codes, token, t->vocab.key_lengths[i]);
        char *bytes = malloc(codes.length + 1);
        if (!bytes) tensor_fatal("clip_tokenizer", "out of memory");
        for (size_t k = 0; k < codes.length; k++) {
            uint32_t c = codes.data[k];
            if (c >= 0x144 || char_byte[c] < 0) {
                clip_report_error(error, error_size, "%s: token '%s' (id %d) has a character (U+%04X) outside the byte alphabet",
                       vocab_path, token, id, c);
                clip_codes_free(&codes);
                free(bytes);
                return false;
            }
            bytes[k] = (char)char_byte[c];
        }
        t->token_bytes[id] = bytes;
        t->token_byte_lengths[id] = codes.length;
        clip_codes_free(&codes);
    }
    char symbol[16];
    for (int b = 0; b < 256; b++) {
        for (int end = 0; end < 2; end++) {
            size_t length = byte_symbol(b, end, symbol);
            int32_t id = find_token(t, symbol, length);
            if (id < 0) {
                clip_report_error(error, error_size, "%s: no token '%s' for byte 0x%02X", vocab_path, symbol, b);
                return false;
            }
            (end ? t->byte_end_id : t->byte_id)[b] = id;
        }
    }
    t->bos = find_token(t, "<|startoftext|>", 15);
    t->eos = find_token(t, "<|endoftext|>", 13);
    if (t->bos < 0 || t->eos < 0) {
        clip_report_error(error, error_size, "%s: no token '%s'", vocab_path, t->bos < 0 ? "<|startoftext|>" : "<|endoftext|>");
        return false;
    }
    t->pair_capacity = 1;
    while (t->pair_capacity < merge_count * 2 + 2) t->pair_capacity *= 2;
    t->pair_keys = malloc(t->pair_capacity * sizeof *t->pair_keys);
    t->pair_ranks = malloc(t->pair_capacity * sizeof *t->pair_ranks);
    t->pair_merged = malloc(t->pair_capacity * sizeof *t->pair_merged);
    if (!t->pair_keys || !t->pair_ranks || !t->pair_merged) tensor_fatal("clip_tokenizer", "out of memory");
    for (size_t i = 0; i < t->pair_capacity; i++) t->pair_keys[i] = EMPTY_PAIR;
    char *joined = NULL;
    size_t joined_capacity = 0;
    for (size_t r = 0; r < merge_count; r++) {
        const Merge *m = &merges[r];
        size_t left_length = strlen(m->left), right_length = strlen(m->right);
        int32_t left = find_token(t, m->left, left_length), right = find_token(t, m->right, right_length);
        if (left < 0 || right < 0) {
            clip_report_error(error, error_size, "%s:%zu: symbol '%s' of the merge is not in the vocabulary %s", merges_path,
                   m->line, left < 0 ? m->left : m->right, vocab_path);
            free(joined);
            return false;
        }
        if (left_length + right_length + 1 > joined_capacity) {
            joined_capacity = (left_length + right_length + 1) * 2;
            joined = realloc(joined, joined_capacity);
            if (!joined) tensor_fatal("clip_tokenizer", "out of memory");
        }
        memcpy(joined, m->left, left_length);
        memcpy(joined + left_length, m->right, right_length + 1);
        int32_t merged = find_token(t, joined, left_length + right_length);
        if (merged < 0) {
            clip_report_error(error, error_size, "%s: no token '%s' made by the merge '%s %s' at %s:%zu", vocab_path, joined,
                   m->left, m->right, merges_path, m->line);
            free(joined);
            return false;
        }
        // A repeated pair takes its last rank, as dict(zip(merges, range(len(merges)))) does.
        size_t slot = pair_slot(t, pair_key(left, right));
        t->pair_keys[slot] = pair_key(left, right);
        t->pair_ranks[slot] = (int32_t)r;
        t->pair_merged[slot] = merged;
    }
    free(joined);
    return true;
}

// finish(), then frees merges and the file text they point into; on failure also the tokenizer.
static ClipTokenizer *finish_or_free(ClipTokenizer *t, const char *vocab_path, const char *merges_path, Merge *merges,
                                     size_t merge_count, char *merges_text, char *error, size_t error_size) {
    bool ok = finish(t, vocab_path, merges_path, merges, merge_count, error, error_size);
    free(merges);
    free(merges_text);
    if (ok) return t;
    clip_tokenizer_free(t);
    return NULL;
}

static ClipTokenizer *new_tokenizer(void) {
    init_byte_alphabet();
    ClipTokenizer *t = calloc(1, sizeof *t);
    if (!t) tensor_fatal("clip_tokenizer", "out of memory");
    return t;
}

ClipTokenizer *clip_tokenizer_load_openai(const char *path, char *error, size_t error_size) {
    size_t size = 0;
    char *text = read_whole_file(path, &size, error, error_size);
    if (!text) return NULL;
    if (!check_text(path, text, size, error, error_size)) {
        free(text);
        return NULL;
    }
    // SimpleTokenizer: merges = text.split('\n')[1:49152-256-2+1], each tuple(line.split()).
    Merge *merges = NULL;
    long count = parse_merges(path, text, 2, CLIP_OPENAI_MERGE_COUNT, false, &merges, error, error_size);
    if (count < 0) {
        free(text);
        return NULL;
    }
    if (count < CLIP_OPENAI_MERGE_COUNT) {
        clip_report_error(error, error_size, "%s:%ld: file ends after %ld merges, expected %d (truncated file?)", path,
               count + 1, count, CLIP_OPENAI_MERGE_COUNT);
        free(merges);
        free(text);
        return NULL;
    }
    ClipTokenizer *t = new_tokenizer();
    // The vocabulary: the byte alphabet, the same with "</w>", each merge's result, the specials;
    // a string that occurs twice keeps its last id (dict(zip(vocab, range(len(vocab))))).
    char symbol[16];
    int32_t id = 0;
    for (int end = 0; end < 2; end++)
        for (int i = 0; i < 256; i++) {
            size_t length = byte_symbol(byte_alphabet_order[i], end, symbol);
            string_map_put(&t->vocab, symbol, length, id++);
        }
    for (long r = 0; r < count; r++) {
        char joined[512];
        int length = snprintf(joined, sizeof joined, "%s%s", merges[r].left, merges[r].right);
        if (length < 0 || (size_t)length >= sizeof joined) {
            clip_report_error(error, error_size, "%s:%zu: merge longer than %zu bytes", path, merges[r].line, sizeof joined - 1);
            free(merges);
            free(text);
            clip_tokenizer_free(t);
            return NULL;
        }
        string_map_put(&t->vocab, joined, (size_t)length, id++);
    }
    string_map_put(&t->vocab, "<|startoftext|>", 15, id++);
    string_map_put(&t->vocab, "<|endoftext|>", 13, id++);
    t->vocab_size = id;
    return finish_or_free(t, path, path, merges, (size_t)count, text, error, error_size);
}

ClipTokenizer *clip_tokenizer_load_hf(const char *vocab_path, const char *merges_path, char *error,
                                      size_t error_size) {
    size_t size = 0;
    char *text = read_whole_file(vocab_path, &size, error, error_size);
    if (!text) return NULL;
    char message[256];
    JsonValue *root = json_parse(text, size, message, sizeof message);
    if (!root) {
        clip_report_error(error, error_size, "%s: %s", vocab_path, message);
        free(text);
        return NULL;
    }
    if (json_type(root) != JSON_OBJECT) {
        clip_report_error(error, error_size, "%s: expected a JSON object of token -> id, got %s", vocab_path,
               json_type_name(json_type(root)));
        free(text);
        json_free(root);
        return NULL;
    }
    ClipTokenizer *t = new_tokenizer();
    int64_t largest = -1;
    for (size_t i = 0; i < root->count; i++) {
        int64_t id;
        if (json_int64(root->items[i], &id) != 0 || id < 0 || id >= INT32_MAX) {
            clip_report_error(error, error_size, "%s:%zu: token '%s': expected a non-negative integer id", vocab_path,
                   line_of(text, root->items[i]->offset), root->keys[i]);
            free(text);
            json_free(root);
            clip_tokenizer_free(t);
            return NULL;
        }
        if (id > largest) largest = id;
        string_map_put(&t->vocab, root->keys[i], root->key_lengths[i], id);
    }
    json_free(root);
    free(text);
    t->vocab_size = (int32_t)(largest + 1);

    char *merges_text = read_whole_file(merges_path, &size, error, error_size);
    if (!merges_text || !check_text(merges_path, merges_text, size, error, error_size)) {
        free(merges_text);
        clip_tokenizer_free(t);
        return NULL;
    }
    if (merges_text[0] != '#') {
        clip_report_error(error, error_size, "%s:1: expected the '#version: ...' header line of a merges file", merges_path);
        free(merges_text);
        clip_tokenizer_free(t);
        return NULL;
    }
    Merge *merges = NULL;
    long count = parse_merges(merges_path, merges_text, 2, 0, true, &merges, error, error_size);
    if (count < 0) {
        free(merges_text);
        clip_tokenizer_free(t);
        return NULL;
    }
    return finish_or_free(t, vocab_path, merges_path, merges, (size_t)count, merges_text, error, error_size);
}

ClipTokenizer *clip_tokenizer_load(const char *path, char *error, size_t error_size) {
    struct stat info;
    if (stat(path, &info) == 0 && S_ISDIR(info.st_mode)) {
        size_t length = strlen(path) + 16;
        char *vocab = malloc(length), *merges = malloc(length);
        if (!vocab || !merges) tensor_fatal("clip_tokenizer", "out of memory");
        snprintf(vocab, length, "%s/vocab.json", path);
        snprintf(merges, length, "%s/merges.txt", path);
        ClipTokenizer *t = clip_tokenizer_load_hf(vocab, merges, error, error_size);
        free(vocab);
        free(merges);
        return t;
    }
    return clip_tokenizer_load_openai(path, error, error_size);
}

ClipTokenizer *clip_tokenizer_open(const char *path) {
    char error[512];
    ClipTokenizer *t = clip_tokenizer_load(path, error, sizeof error);
    if (!t) tensor_fatal("clip_tokenizer", "%s", error);
    return t;
}

void clip_tokenizer_free(ClipTokenizer *t) {
    if (!t) return;
    if (t->token_bytes)
        for (int32_t i = 0; i < t->vocab_size; i++) free(t->token_bytes[i]);
    free(t->token_bytes);
    free(t->token_byte_lengths);
    free(t->tokens);  // the strings belong to the vocabulary map
    string_map_free(&t->vocab);
    free(t->pair_keys);
    free(t->pair_ranks);
    free(t->pair_merged);
    string_map_free(&t->cache);
    free(t->cache_ids);
    free(t);
}

int32_t clip_tokenizer_bos(const ClipTokenizer *t) { return t->bos; }
int32_t clip_tokenizer_eos(const ClipTokenizer *t) { return t->eos; }
int32_t clip_tokenizer_vocab_size(const ClipTokenizer *t) { return t->vocab_size; }

const char *clip_tokenizer_token(const ClipTokenizer *t, int32_t id) {
    return id >= 0 && id < t->vocab_size ? t->tokens[id] : NULL;
}

ClipEncodeOptions clip_options_hf(void) {
    return (ClipEncodeOptions){.clean = {.ftfy = true, .html_unescape_passes = 0},
                               .context_length = CLIP_CONTEXT_LENGTH,
                               .pad_id = CLIP_PAD_WITH_EOS};
}

ClipEncodeOptions clip_options_open_clip(void) {
    return (ClipEncodeOptions){.clean = {.ftfy = true, .html_unescape_passes = 2},
                               .context_length = CLIP_CONTEXT_LENGTH,
                               .pad_id = 0};
}

// ---------------------------------------------------------------- encoding
typedef struct {
    int32_t *data;
    size_t length, capacity;
} IdList;

static void ids_push(IdList *list, int32_t id) {
    if (list->length == list->capacity) {
        list->capacity = list->capacity ? list->capacity * 2 : 64;
        list->data = realloc(list->data, list->capacity * sizeof *list->data);
        if (!list->data) tensor_fatal("clip_tokenizer", "out of memory");
    }
    list->data[list->length++] = id;
}

// SimpleTokenizer.bpe on one piece's bytes: symbols start as the byte alphabet (the last one with
// </w>); the adjacent pair of lowest rank is merged everywhere, left to right, until none is a
// merge. Appends the ids to out.
static void bpe_piece(ClipTokenizer *t, const unsigned char *bytes, size_t length, IdList *word, IdList *out) {
    word->length = 0;
    for (size_t i = 0; i < length; i++) ids_push(word, i + 1 < length ? t->byte_id[bytes[i]] : t->byte_end_id[bytes[i]]);
    while (word->length > 1) {
        int32_t best_rank = INT32_MAX, best_merged = -1, left = -1, right = -1;
        for (size_t i = 0; i + 1 < word->length; i++) {
            size_t slot = pair_slot(t, pair_key(word->data[i], word->data[i + 1]));
            if (t->pair_keys[slot] != EMPTY_PAIR && t->pair_ranks[slot] < best_rank) {
                best_rank = t->pair_ranks[slot];
                best_merged = t->pair_merged[slot];
                left = word->data[i];
                right = word->data[i + 1];
            }
        }
        if (best_merged < 0) break;
        size_t kept = 0;
        for (size_t i = 0; i < word->length;) {
            if (i + 1 < word->length && word->data[i] == left && word->data[i + 1] == right) {
                word->data[kept++] = best_merged;
                i += 2;
            } else {
                word->data[kept++] = word->data[i++];
            }
        }
        word->length = kept;
    }
    for (size_t i = 0; i < word->length; i++) ids_push(out, word->data[i]);
}

static void encode_piece(ClipTokenizer *t, const char *bytes, size_t length, IdList *word, IdList *out) {
    int64_t *cached = string_map_find(&t->cache, bytes, length);
    if (cached) {
        const int32_t *entry = t->cache_ids + *cached;
        for (int32_t i = 0; i < entry[0]; i++) ids_push(out, entry[1 + i]);
        return;
    }
    size_t before = out->length;
    bpe_piece(t, (const unsigned char *)bytes, length, word, out);
    size_t count = out->length - before;
    if (t->cache.count >= CACHE_MAX_PIECES) {
        string_map_clear(&t->cache);
        t->cache_used = 0;
    }
    if (t->cache_used + count + 1 > t->cache_capacity) {
        t->cache_capacity = (t->cache_used + count + 1) * 2;
        t->cache_ids = realloc(t->cache_ids, t->cache_capacity * sizeof *t->cache_ids);
        if (!t->cache_ids) tensor_fatal("clip_tokenizer", "out of memory");
    }
    string_map_put(&t->cache, bytes, length, (int64_t)t->cache_used);
    t->cache_ids[t->cache_used++] = (int32_t)count;
    memcpy(t->cache_ids + t->cache_used, out->data + before, count * sizeof *out->data);
    t->cache_used += count;
}

// The contraction 's 't 're 've 'm 'll 'd at codes[i] == '\'' (the pattern is IGNORECASE, so
// U+017F LATIN SMALL LETTER LONG S matches 's too); its length, or 0.
static size_t contraction_at(const uint32_t *codes, size_t length, size_t i) {
    if (i + 1 >= length) return 0;
    uint32_t a = codes[i + 1], b = i + 2 < length ? codes[i + 2] : 0;
    if (a == 's' || a == 0x17F || a == 't' || a == 'm' || a == 'd') return 2;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
}

size_t clip_tokenizer_encode_ids(ClipTokenizer *t, const char *text, ClipCleanOptions clean, int32_t **ids) {
    ClipCodes codes = {0};
    clip_text_clean(text, strlen(text), clean, &codes);
    IdList out = {0}, word = {0};
    char *piece = malloc(codes.length * 4 + 1);
    if (!piece) tensor_fatal("clip_tokenizer", "out of memory");
    // re.findall of 's|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+: the first
    // alternative that matches at a position wins; positions where none does are skipped.
    for (size_t i = 0; i < codes.length;) {
        size_t end = i;
        int flags = clip_char_flags(codes.data[i]);
        size_t contraction = codes.data[i] == '\'' ? contraction_at(codes.data, codes.length, i) : 0;
        if (contraction) end = i + contraction;
        else if (flags & CLIP_CHAR_LETTER)
            while (end < codes.length && (clip_char_flags(codes.data[end]) & CLIP_CHAR_LETTER)) end++;
        else if (flags & CLIP_CHAR_NUMBER) end = i + 1;
        else if (flags & CLIP_CHAR_OTHER)
            while (end < codes.length && (clip_char_flags(codes.data[end]) & CLIP_CHAR_OTHER)) end++;
        if (end == i) {
            i++;
            continue;
        }
        size_t bytes = 0;
        for (size_t k = i; k < end; k++) bytes += (size_t)clip_utf8_encode(codes.data[k], piece + bytes);
        encode_piece(t, piece, bytes, &word, &out);
        i = end;
    }
    free(piece);
    free(word.data);
    clip_codes_free(&codes);
    *ids = out.length ? out.data : NULL;
    if (!out.length) free(out.data);
    return out.length;
}

int clip_tokenizer_encode(ClipTokenizer *t, const char *text, const ClipEncodeOptions *options, int32_t *out) {
    int context = options->context_length;
    if (context < 2) tensor_fatal("clip_tokenizer_encode", "context length %d, expected at least 2 (BOS and EOS)", context);
    int32_t pad = options->pad_id == CLIP_PAD_WITH_EOS ? t->eos : options->pad_id;
    int32_t *ids = NULL;
    size_t count = clip_tokenizer_encode_ids(t, text, options->clean, &ids);
    // [BOS] ids [EOS] cut to the context length with EOS put back last, as both references do.
    size_t kept = count < (size_t)context - 2 ? count : (size_t)context - 2;
    out[0] = t->bos;
    if (kept) memcpy(out + 1, ids, kept * sizeof *ids);
    out[kept + 1] = t->eos;
    for (int i = (int)kept + 2; i < context; i++) out[i] = pad;
    free(ids);
    return (int)kept + 2;
}

char *clip_tokenizer_decode(const ClipTokenizer *t, const int32_t *ids, size_t count, bool skip_special) {
    size_t total = 0;
    for (size_t i = 0; i < count; i++) {
        if (ids[i] < 0 || ids[i] >= t->vocab_size || !t->tokens[ids[i]])
            tensor_fatal("clip_tokenizer_decode", "id %d at position %zu is not in the vocabulary (size %d)", ids[i],
                         i, t->vocab_size);
        total += t->token_byte_lengths[ids[i]];
    }
    char *bytes = malloc(total + 1);
    if (!bytes) tensor_fatal("clip_tokenizer_decode", "out of memory");
    size_t used = 0;
    for (size_t i = 0; i < count; i++) {
        if (skip_special && (ids[i] == t->bos || ids[i] == t->eos)) continue;
        memcpy(bytes + used, t->token_bytes[ids[i]], t->token_byte_lengths[ids[i]]);
        used += t->token_byte_lengths[ids[i]];
    }
    // bytes.decode("utf-8", errors="replace").replace("</w>", " ")
    ClipCodes codes = {0};
    clip_utf8_decode_append(&codes, bytes, used);
    free(bytes);
    char *text = malloc(codes.length * 4 + 1);
    if (!text) tensor_fatal("clip_tokenizer_decode", "out of memory");
    size_t length = 0;
    for (size_t i = 0; i < codes.length; i++) {
        if (codes.data[i] == '<' && i + 3 < codes.length && codes.data[i + 1] == '/' && codes.data[i + 2] == 'w' &&
            codes.data[i + 3] == '>') {
            text[length++] = ' ';
            i += 3;
            continue;
        }
        length += (size_t)clip_utf8_encode(codes.data[i], text + length);
    }
    text[length] = 0;
    clip_codes_free(&codes);
    return text;
}
