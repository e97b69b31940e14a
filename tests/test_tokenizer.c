// Text tokenizers: the CLIP BPE tokenizer against the two reference implementations on the
// strings of tests/golden/clip_tokenizer.json (written by tests/ref/gen_tokenizer_goldens.py from
// open_clip's SimpleTokenizer and transformers' CLIPTokenizer), loaded from OpenAI's merges file
// tests/golden/clip_vocab/bpe_simple_vocab_16e6.txt.gz and from Hugging Face vocab.json +
// merges.txt that this test writes from it; file errors; the word tokenizer.
// Environment: TAILOR_ROOT (repository root; default: the current directory).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "diffusion/clip_tokenizer.h"
#include "diffusion/word_tokenizer.h"
#include "engine/json.h"
#include "tests/check.h"
#include "tests/expect_fatal.h"

TEST_MAIN_COUNTERS;

static char root[1024] = ".";
static char temp_dir[256];
static char gz_path[1200], golden_path[1200];
static JsonValue *golden;
static ClipTokenizer *openai_tokenizer, *hf_tokenizer;

static char *temp_path(const char *name) {
    static char paths[256][512];  // a ring: a path stays valid for the next 255 calls
    static int next;
    char *path = paths[next++ % 256];
    snprintf(path, sizeof paths[0], "%s/%s", temp_dir, name);
    return path;
}

static char *read_text(const char *path, size_t *size) {
    FILE *file = fopen(path, "rb");
    if (!file) return NULL;
    fseek(file, 0, SEEK_END);
    long length = ftell(file);
    fseek(file, 0, SEEK_SET);
    char *text = malloc((size_t)length + 1);
    size_t got = fread(text, 1, (size_t)length, file);
    fclose(file);
    text[got] = 0;
    if (size) *size = got;
    return text;
}

static void write_bytes(const char *path, const void *bytes, size_t size) {
    FILE *file = fopen(path, "wb");
    if (!file) {
        printf("  cannot write %s\n", path);
        exit(1);
    }
    fwrite(bytes, 1, size, file);
    fclose(file);
}

// The merges file inflated (zlib's gz reader), NUL-terminated.
static char *inflate_merges(size_t *size) {
    gzFile file = gzopen(gz_path, "rb");
    size_t capacity = 8 << 20, used = 0;
    char *text = malloc(capacity);
    int got;
    while ((got = gzread(file, text + used, (unsigned)(capacity - used - 1))) > 0) {
        used += (size_t)got;
        if (capacity - used < 2) text = realloc(text, capacity *= 2);
    }
    gzclose(file);
    text[used] = 0;
    *size = used;
    return text;
}

// vocab.json and merges.txt as an SD 1.x tokenizer/ folder holds them, rebuilt from the OpenAI
// file: the vocabulary from the tokenizer loaded from it, the merges from its lines 2..48895.
static void write_hf_files(void) {
    FILE *vocab = fopen(temp_path("vocab.json"), "wb");
    fputc('{', vocab);
    for (int32_t id = 0; id < clip_tokenizer_vocab_size(openai_tokenizer); id++) {
        if (id) fputc(',', vocab);
        json_write_string(vocab, clip_tokenizer_token(openai_tokenizer, id));
        fprintf(vocab, ":%d", id);
    }
    fputs("}\n", vocab);
    fclose(vocab);
    size_t size;
    char *text = inflate_merges(&size);
    char *first = strchr(text, '\n') + 1, *end = first;
    for (int i = 0; i < CLIP_OPENAI_MERGE_COUNT; i++) end = strchr(end, '\n') + 1;
    FILE *merges = fopen(temp_path("merges.txt"), "wb");
    fputs("#version: 0.2\n", merges);
    fwrite(first, 1, (size_t)(end - first), merges);
    fclose(merges);
    free(text);
}

// ---------------------------------------------------------------- goldens
static bool ids_equal_json(const int32_t *ids, size_t count, const JsonValue *expected) {
    if (json_length(expected) != count) return false;
    for (size_t i = 0; i < count; i++) {
        int64_t value;
        if (json_int64(json_at(expected, i), &value) != 0 || value != ids[i]) return false;
    }
    return true;
}

static void print_mismatch(const char *what, const char *text, const int32_t *ids, size_t count, const JsonValue *expected) {
    printf("  %s differs for ", what);
    json_write_string(stdout, text);
    printf("\n    ours:");
    for (size_t i = 0; i < count && i < 24; i++) printf(" %d", ids[i]);
    printf("\n    ref: ");
    for (size_t i = 0; i < json_length(expected) && i < 24; i++) printf(" %.0f", json_number(json_at(expected, i)));
    printf("\n");
}

// Every golden case through one tokenizer: padded ids under both references' conventions, the
// unpadded ids and the decoded text.
static void check_goldens(ClipTokenizer *tokenizer, const char *label) {
    const JsonValue *cases = json_get(golden, "cases");
    CHECK(json_length(cases) >= 200);
    int64_t context;
    CHECK(json_int64(json_get(golden, "context_length"), &context) == 0 && context == CLIP_CONTEXT_LENGTH);
    int failures = 0, long_cases = 0, differing = 0;
    for (size_t c = 0; c < json_length(cases); c++) {
        const JsonValue *item = json_at(cases, c);
        const char *text = json_string(json_get(item, "text"));
        int32_t out[CLIP_CONTEXT_LENGTH];
        ClipEncodeOptions open_clip = clip_options_open_clip(), hf = clip_options_hf();
        clip_tokenizer_encode(tokenizer, text, &open_clip, out);
        bool ok = ids_equal_json(out, CLIP_CONTEXT_LENGTH, json_get(item, "open_clip"));
        if (!ok && failures++ < 5) print_mismatch("open_clip ids", text, out, CLIP_CONTEXT_LENGTH, json_get(item, "open_clip"));
        int32_t hf_out[CLIP_CONTEXT_LENGTH];
        clip_tokenizer_encode(tokenizer, text, &hf, hf_out);
        bool hf_ok = ids_equal_json(hf_out, CLIP_CONTEXT_LENGTH, json_get(item, "hf"));
        if (!hf_ok && failures++ < 5) print_mismatch("hf ids", text, hf_out, CLIP_CONTEXT_LENGTH, json_get(item, "hf"));
        int32_t *ids = NULL;
        size_t count = clip_tokenizer_encode_ids(tokenizer, text, open_clip.clean, &ids);
        bool ids_ok = ids_equal_json(ids, count, json_get(item, "ids"));
        if (!ids_ok && failures++ < 5) print_mismatch("unpadded ids", text, ids, count, json_get(item, "ids"));
        char *decoded = clip_tokenizer_decode(tokenizer, ids, count, false);
        bool decode_ok = strcmp(decoded, json_string(json_get(item, "decode"))) == 0;
        if (!decode_ok && failures++ < 5) printf("  decode of \"%s\": \"%s\", expected \"%s\"\n", text, decoded, json_string(json_get(item, "decode")));
        long_cases += count + 2 > CLIP_CONTEXT_LENGTH;
        differing += memcmp(out, hf_out, sizeof out) != 0 && out[0] == hf_out[0];
        free(decoded);
        free(ids);
    }
    CHECK_MSG(failures == 0, "%s: %d mismatches over %zu cases", label, failures, json_length(cases));
    CHECK(long_cases >= 10);  // truncation is exercised
    CHECK(differing > 0);
}

TEST(clip_openai_file_matches_references) { check_goldens(openai_tokenizer, "bpe_simple_vocab_16e6.txt.gz"); }

TEST(clip_hf_files_match_references) {
    CHECK(clip_tokenizer_vocab_size(hf_tokenizer) == clip_tokenizer_vocab_size(openai_tokenizer));
    int token_differences = 0;
    for (int32_t id = 0; id < clip_tokenizer_vocab_size(hf_tokenizer); id++)
        token_differences += strcmp(clip_tokenizer_token(hf_tokenizer, id), clip_tokenizer_token(openai_tokenizer, id)) != 0;
    CHECK(token_differences == 0);
    check_goldens(hf_tokenizer, "vocab.json + merges.txt");
}

TEST(clip_specials_truncation_padding) {
    ClipTokenizer *t = openai_tokenizer;
    CHECK(clip_tokenizer_bos(t) == 49406);
    CHECK(clip_tokenizer_eos(t) == 49407);
    CHECK(clip_tokenizer_vocab_size(t) == 49408);
    CHECK(strcmp(clip_tokenizer_token(t, 49406), "<|startoftext|>") == 0);
    CHECK(strcmp(clip_tokenizer_token(t, 0), "!") == 0);
    CHECK(strcmp(clip_tokenizer_token(t, 256), "!</w>") == 0);
    CHECK(clip_tokenizer_token(t, 49408) == NULL && clip_tokenizer_token(t, -1) == NULL);
    // "a photo of a cat": 320 1125 539 320 2368 in both references.
    ClipEncodeOptions options = clip_options_hf();
    options.context_length = 5;
    options.pad_id = 7;
    int32_t out[8];
    int length = clip_tokenizer_encode(t, "a photo of a cat", &options, out);
    CHECK(length == 5);
    int32_t expected_short[5] = {49406, 320, 1125, 539, 49407};
    CHECK(memcmp(out, expected_short, sizeof expected_short) == 0);
    options.context_length = 8;
    length = clip_tokenizer_encode(t, "a photo of a cat", &options, out);
    int32_t expected_long[8] = {49406, 320, 1125, 539, 320, 2368, 49407, 7};
    CHECK(length == 7);
    CHECK(memcmp(out, expected_long, sizeof expected_long) == 0);
    options.context_length = 2;
    CHECK(clip_tokenizer_encode(t, "a photo", &options, out) == 2 && out[0] == 49406 && out[1] == 49407);
    // The cache gives the same ids the second time.
    int32_t *first = NULL, *second = NULL;
    size_t n1 = clip_tokenizer_encode_ids(t, "photographs photographs", clip_options_hf().clean, &first);
    size_t n2 = clip_tokenizer_encode_ids(t, "photographs", clip_options_hf().clean, &second);
    CHECK(n1 == 2 * n2 && n2 > 0 && memcmp(first, second, n2 * sizeof *first) == 0 &&
          memcmp(first + n2, second, n2 * sizeof *first) == 0);
    char *with_specials = clip_tokenizer_decode(t, expected_long, 7, false);
    char *without = clip_tokenizer_decode(t, expected_long, 7, true);
    CHECK(strcmp(with_specials, "<|startoftext|>a photo of a cat <|endoftext|>") == 0);
    CHECK(strcmp(without, "a photo of a cat ") == 0);
    free(with_specials);
    free(without);
    free(first);
    free(second);
    // Invalid UTF-8 input is read as U+FFFD (one per maximal invalid subpart), like the text of
    // bytes.decode(errors="replace"): the same ids as the explicit character.
    int32_t *bad = NULL, *replacement = NULL;
    size_t nb = clip_tokenizer_encode_ids(t, "a\xff\xe2\x82 b", clip_options_hf().clean, &bad);
    size_t nr = clip_tokenizer_encode_ids(t, "a\xef\xbf\xbd\xef\xbf\xbd b", clip_options_hf().clean, &replacement);
    CHECK(nb == nr && nb > 0 && memcmp(bad, replacement, nb * sizeof *bad) == 0);
    free(bad);
    free(replacement);
}

// ---------------------------------------------------------------- file errors
static void expect_load_error(const char *path, const char *merges, const char *expected) {
    char error[512] = "";
    ClipTokenizer *t = merges ? clip_tokenizer_load_hf(path, merges, error, sizeof error)
                              : clip_tokenizer_load(path, error, sizeof error);
    CHECK_MSG(t == NULL && strstr(error, expected) != NULL && strchr(error, '\n') == NULL,
              "expected an error containing \"%s\", got \"%s\"", expected, error);
    clip_tokenizer_free(t);
}

// Replaces line `line` (1-based) of text with `replacement` (NULL: delete it) into path.
static void write_with_line(const char *path, const char *text, int line, const char *replacement) {
    const char *begin = text;
    for (int i = 1; i < line; i++) begin = strchr(begin, '\n') + 1;
    const char *end = strchr(begin, '\n') + 1;
    FILE *file = fopen(path, "wb");
    fwrite(text, 1, (size_t)(begin - text), file);
    if (replacement) fputs(replacement, file);
    fputs(end, file);
    fclose(file);
}

static void open_missing(void *context) { clip_tokenizer_open((const char *)context); }
static void open_word_missing(void *context) { word_tokenizer_open((const char *)context); }

TEST(clip_file_errors) {
    char *missing = temp_path("missing.txt.gz");
    expect_load_error(missing, NULL, "missing.txt.gz: cannot open");
    CHECK(expect_fatal(open_missing, missing, "error: clip_tokenizer: "));
    CHECK(expect_fatal(open_missing, missing, "missing.txt.gz: cannot open: No such file or directory"));

    size_t gz_size;
    char *gz = read_text(gz_path, &gz_size);
    write_bytes(temp_path("truncated.gz"), gz, gz_size / 2);
    expect_load_error(temp_path("truncated.gz"), NULL, "truncated.gz: truncated gzip data");
    char *corrupt = malloc(gz_size);
    memcpy(corrupt, gz, gz_size);
    for (size_t i = gz_size / 3; i < gz_size / 3 + 64; i++) corrupt[i] ^= 0x5A;
    write_bytes(temp_path("corrupt.gz"), corrupt, gz_size);
    expect_load_error(temp_path("corrupt.gz"), NULL, "corrupt.gz: corrupt or truncated gzip data");
    free(corrupt);
    free(gz);

    // OpenAI format as plain text (the loader inflates only gzip): a bad line, too few merges.
    size_t size;
    char *merges = inflate_merges(&size);
    write_bytes(temp_path("plain.txt"), merges, size);
    char error[512];
    ClipTokenizer *plain = clip_tokenizer_load(temp_path("plain.txt"), error, sizeof error);
    CHECK_MSG(plain != NULL, "%s", error);
    clip_tokenizer_free(plain);
    write_with_line(temp_path("bad_line.txt"), merges, 100, "abc\n");
    expect_load_error(temp_path("bad_line.txt"), NULL, "bad_line.txt:100: expected a merge: two symbols separated by a space, got 'abc'");
    write_with_line(temp_path("three.txt"), merges, 7, "a b c\n");
    expect_load_error(temp_path("three.txt"), NULL, "three.txt:7: expected a merge");
    write_bytes(temp_path("short.txt"), merges, (size_t)(strstr(merges, "\nha ") - merges));  // about 2k lines
    expect_load_error(temp_path("short.txt"), NULL, "expected 48894 (truncated file?)");
    write_with_line(temp_path("not_utf8.txt"), merges, 12, "a \xff\n");
    expect_load_error(temp_path("not_utf8.txt"), NULL, "not_utf8.txt:12: not valid UTF-8");

    // Hugging Face format.
    char *vocab_path = temp_path("vocab.json"), *merges_path = temp_path("merges.txt");
    char *vocab = read_text(vocab_path, &size);
    char *hf_merges = read_text(merges_path, NULL);
    // vocab.json missing the token of the merge on line 3 of merges.txt ("t h" -> "th").
    const char *th = strstr(vocab, ",\"th\":");
    CHECK(th != NULL);
    if (th) {
        const char *after = strchr(th + 1, ',');
        FILE *file = fopen(temp_path("vocab_missing.json"), "wb");
        fwrite(vocab, 1, (size_t)(th - vocab), file);
        fputs(after, file);
        fclose(file);
        char *line3 = strchr(strchr(hf_merges, '\n') + 1, '\n') + 1;
        CHECK(strncmp(line3, "t h\n", 4) == 0);
        expect_load_error(temp_path("vocab_missing.json"), merges_path,
                          "vocab_missing.json: no token 'th' made by the merge 't h' at ");
        expect_load_error(temp_path("vocab_missing.json"), merges_path, "merges.txt:3");
    }
    write_bytes(temp_path("vocab_truncated.json"), vocab, size / 2);
    expect_load_error(temp_path("vocab_truncated.json"), merges_path, "vocab_truncated.json: ");
    write_bytes(temp_path("vocab_array.json"), "[1, 2]", 6);
    expect_load_error(temp_path("vocab_array.json"), merges_path, "vocab_array.json: expected a JSON object");
    const char *bad_id = "{\"a\": 0,\n\"b\": \"x\"}";
    write_bytes(temp_path("vocab_bad_id.json"), bad_id, strlen(bad_id));
    expect_load_error(temp_path("vocab_bad_id.json"), merges_path, "vocab_bad_id.json:2: token 'b': expected a non-negative integer id");
    const char *same_id = "{\"a\": 0, \"b\": 0}";
    write_bytes(temp_path("vocab_same_id.json"), same_id, strlen(same_id));
    expect_load_error(temp_path("vocab_same_id.json"), merges_path, "have the same id 0");
    write_with_line(temp_path("merges_bad.txt"), hf_merges, 40, "onlyone\n");
    expect_load_error(vocab_path, temp_path("merges_bad.txt"), "merges_bad.txt:40: expected a merge");
    write_with_line(temp_path("merges_blank.txt"), hf_merges, 40, "\n");
    expect_load_error(vocab_path, temp_path("merges_blank.txt"), "merges_blank.txt:40: expected a merge");
    write_with_line(temp_path("merges_unknown.txt"), hf_merges, 41, "q\xc4\x8a zz\n");
    expect_load_error(vocab_path, temp_path("merges_unknown.txt"), "merges_unknown.txt:41: symbol 'q\xc4\x8a' of the merge is not in the vocabulary");
    char *nul_path = temp_path("merges_nul.txt");
    write_with_line(nul_path, hf_merges, 9, "a b\n");
    {
        // Line 9 becomes "a\0b": a NUL byte.
        size_t nul_size;
        char *with_nul = read_text(nul_path, &nul_size);
        char *line9 = with_nul;
        for (int i = 1; i < 9; i++) line9 = strchr(line9, '\n') + 1;
        line9[1] = 0;
        write_bytes(nul_path, with_nul, nul_size);
        free(with_nul);
    }
    expect_load_error(vocab_path, nul_path, "merges_nul.txt:9: NUL byte in a text file");
    write_with_line(temp_path("merges_noheader.txt"), hf_merges, 1, NULL);
    expect_load_error(vocab_path, temp_path("merges_noheader.txt"), "merges_noheader.txt:1: expected the '#version");
    expect_load_error(vocab_path, temp_path("missing_merges.txt"), "missing_merges.txt: cannot open");
    // A trailing blank line is fine (HF reads merges.txt with strip()); the directory form works.
    FILE *file = fopen(merges_path, "ab");
    fputs("\n\n", file);
    fclose(file);
    ClipTokenizer *from_dir = clip_tokenizer_load(temp_dir, error, sizeof error);
    CHECK_MSG(from_dir != NULL, "%s", error);
    if (from_dir) CHECK(clip_tokenizer_vocab_size(from_dir) == 49408);
    clip_tokenizer_free(from_dir);
    free(vocab);
    free(hf_merges);
    free(merges);
}

// ---------------------------------------------------------------- word tokenizer
static const char *const CORPUS[] = {
    "A dog on the grass.",
    "a DOG and a cat",
    "the cat's toy, on the  grass!",
    "Zebra 42",
};

TEST(word_vocabulary_is_deterministic) {
    WordTokenizer *t = word_tokenizer_build(CORPUS, 4, word_vocab_defaults());
    // Counts: a 3; the 3; cat 2, dog 2, grass 2, on 2; then once each, bytewise:
    // ! ' , . 42 and s toy zebra.
    const char *expected[] = {"<pad>", "<bos>", "<eos>", "<unk>", "a", "the", "cat", "dog", "grass", "on",
                              "!", "'", ",", ".", "42", "and", "s", "toy", "zebra"};
    int n = (int)(sizeof expected / sizeof expected[0]);
    CHECK(word_tokenizer_vocab_size(t) == n);
    for (int i = 0; i < n && i < word_tokenizer_vocab_size(t); i++)
        CHECK_MSG(strcmp(word_tokenizer_token(t, i), expected[i]) == 0, "id %d: %s, expected %s", i, word_tokenizer_token(t, i), expected[i]);
    // The same corpus in another order gives the same ids (and the same file).
    const char *const shuffled[] = {CORPUS[3], CORPUS[1], CORPUS[2], CORPUS[0]};
    WordTokenizer *u = word_tokenizer_build(shuffled, 4, word_vocab_defaults());
    char error[512];
    CHECK(word_tokenizer_save(t, temp_path("words1.txt"), error, sizeof error) == 0);
    CHECK(word_tokenizer_save(u, temp_path("words2.txt"), error, sizeof error) == 0);
    char *a = read_text(temp_path("words1.txt"), NULL), *b = read_text(temp_path("words2.txt"), NULL);
    CHECK(a && b && strcmp(a, b) == 0);
    CHECK(a && strncmp(a, "tailor-word-vocab 1\n<pad>\n<bos>\n<eos>\n<unk>\na\nthe\n", 48) == 0);
    free(a);
    free(b);
    // Frequency cutoff and size limit.
    WordTokenizer *frequent = word_tokenizer_build(CORPUS, 4, (WordVocabOptions){.min_count = 2});
    CHECK(word_tokenizer_vocab_size(frequent) == 4 + 6);
    CHECK(word_tokenizer_id(frequent, "toy") == WORD_UNK_ID && word_tokenizer_id(frequent, "grass") == 8);
    WordTokenizer *top = word_tokenizer_build(CORPUS, 4, (WordVocabOptions){.min_count = 1, .max_words = 3});
    CHECK(word_tokenizer_vocab_size(top) == 7 && strcmp(word_tokenizer_token(top, 6), "cat") == 0);
    word_tokenizer_free(frequent);
    word_tokenizer_free(top);
    word_tokenizer_free(u);
    word_tokenizer_free(t);
}

TEST(word_encode_decode_round_trip) {
    WordTokenizer *built = word_tokenizer_build(CORPUS, 4, word_vocab_defaults());
    char error[512];
    CHECK(word_tokenizer_save(built, temp_path("words.txt"), error, sizeof error) == 0);
    WordTokenizer *t = word_tokenizer_load(temp_path("words.txt"), error, sizeof error);
    CHECK_MSG(t != NULL, "%s", error);
    if (!t) return;
    CHECK(word_tokenizer_vocab_size(t) == word_tokenizer_vocab_size(built));
    int32_t out[16];
    int length = word_tokenizer_encode(t, "  The DOG's toy, on GRASS! ", 16, out);
    int32_t expected[] = {1, 5, 7, 11, 16, 17, 12, 9, 8, 10, 2, 0, 0, 0, 0, 0};
    CHECK(length == 11);
    CHECK(memcmp(out, expected, sizeof expected) == 0);
    char *text = word_tokenizer_decode(t, out, 16);
    CHECK(strcmp(text, "the dog ' s toy , on grass !") == 0);
    // Decoding the decoded text encodes to the same ids.
    int32_t again[16];
    word_tokenizer_encode(t, text, 16, again);
    CHECK(memcmp(again, out, sizeof out) == 0);
    free(text);
    // Unknown words, and a unicode word the corpus did not have.
    length = word_tokenizer_encode(t, "a giraffe on Ωmega", 16, out);
    int32_t unknown[] = {1, 4, 3, 9, 3, 2, 0};
    CHECK(length == 6 && memcmp(out, unknown, sizeof unknown) == 0);
    text = word_tokenizer_decode(t, out, (size_t)length);
    CHECK(strcmp(text, "a <unk> on <unk>") == 0);
    free(text);
    // Truncation keeps EOS last; the empty text is [BOS, EOS].
    length = word_tokenizer_encode(t, "a dog a dog a dog", 5, out);
    int32_t truncated[] = {1, 4, 7, 4, 2};
    CHECK(length == 5 && memcmp(out, truncated, sizeof truncated) == 0);
    length = word_tokenizer_encode(t, "", 4, out);
    int32_t empty[] = {1, 2, 0, 0};
    CHECK(length == 2 && memcmp(out, empty, sizeof empty) == 0);
    // Text spelling a special token is words, not the special.
    length = word_tokenizer_encode(t, "<eos>", 8, out);
    CHECK(length == 5 && out[1] == WORD_UNK_ID && out[2] == WORD_UNK_ID && out[4] == WORD_EOS_ID);
    word_tokenizer_free(t);
    word_tokenizer_free(built);
}

static void expect_word_error(const char *name, const char *content, const char *expected) {
    char *path = temp_path(name);
    if (content) write_bytes(path, content, strlen(content));
    char error[512] = "";
    WordTokenizer *t = word_tokenizer_load(path, error, sizeof error);
    CHECK_MSG(t == NULL && strstr(error, expected) != NULL && strstr(error, name) != NULL,
              "expected an error containing \"%s\", got \"%s\"", expected, error);
    word_tokenizer_free(t);
}

TEST(word_file_errors) {
    expect_word_error("no_such_vocab.txt", NULL, "cannot open");
    CHECK(expect_fatal(open_word_missing, temp_path("no_such_vocab.txt"), "error: word_tokenizer: "));
    expect_word_error("header.txt", "tailor-word-vocab 2\n<pad>\n<bos>\n<eos>\n<unk>\n", ":1: expected the header line");
    expect_word_error("specials.txt", "tailor-word-vocab 1\n<pad>\n<eos>\n<bos>\n<unk>\n", ":3: expected the special token '<bos>'");
    expect_word_error("few.txt", "tailor-word-vocab 1\n<pad>\n<bos>\n", ":4: the file ends before the 4 special tokens");
    expect_word_error("duplicate.txt", "tailor-word-vocab 1\n<pad>\n<bos>\n<eos>\n<unk>\ncat\ndog\ncat\n", ":8: 'cat' repeats the token of id 4");
    expect_word_error("blank.txt", "tailor-word-vocab 1\n<pad>\n<bos>\n<eos>\n<unk>\ncat\n\ndog\n", ":7: empty line");
    expect_word_error("space.txt", "tailor-word-vocab 1\n<pad>\n<bos>\n<eos>\n<unk>\nhot dog\n", ":6: a word with whitespace");
    expect_word_error("utf8.txt", "tailor-word-vocab 1\n<pad>\n<bos>\n<eos>\n<unk>\nca\xfft\n", ":6: not valid UTF-8");
    expect_word_error("truncated.txt", "tailor-word-vocab 1\n<pad>\n<bos>\n<eos>\n<unk>\nca", ":6: the last line has no newline");
    char error[512] = "";
    WordTokenizer *t = word_tokenizer_build(CORPUS, 1, word_vocab_defaults());
    CHECK(word_tokenizer_save(t, "/nonexistent-dir/words.txt", error, sizeof error) == -1);
    CHECK(strstr(error, "/nonexistent-dir/words.txt") != NULL);
    word_tokenizer_free(t);
}

int main(void) {
    const char *env_root = getenv("TAILOR_ROOT");
    if (env_root) snprintf(root, sizeof root, "%s", env_root);
    snprintf(gz_path, sizeof gz_path, "%s/tests/golden/clip_vocab/bpe_simple_vocab_16e6.txt.gz", root);
    snprintf(golden_path, sizeof golden_path, "%s/tests/golden/clip_tokenizer.json", root);
    snprintf(temp_dir, sizeof temp_dir, "/tmp/tailor_tokenizer_XXXXXX");
    if (!mkdtemp(temp_dir)) {
        printf("cannot create a temporary directory\n");
        return 1;
    }
    size_t size;
    char *text = read_text(golden_path, &size);
    char error[512];
    golden = text ? json_parse(text, size, error, sizeof error) : NULL;
    free(text);
    openai_tokenizer = clip_tokenizer_load_openai(gz_path, error, sizeof error);
    if (!golden || !openai_tokenizer) {
        printf("cannot read %s or %s: %s\n", golden_path, gz_path, error);
        return 1;
    }
    write_hf_files();
    hf_tokenizer = clip_tokenizer_load_hf(temp_path("vocab.json"), temp_path("merges.txt"), error, sizeof error);
    if (!hf_tokenizer) {
        printf("cannot load the Hugging Face files: %s\n", error);
        return 1;
    }
    RUN_TEST(clip_openai_file_matches_references);
    RUN_TEST(clip_hf_files_match_references);
    RUN_TEST(clip_specials_truncation_padding);
    RUN_TEST(clip_file_errors);
    RUN_TEST(word_vocabulary_is_deterministic);
    RUN_TEST(word_encode_decode_round_trip);
    RUN_TEST(word_file_errors);
    clip_tokenizer_free(openai_tokenizer);
    clip_tokenizer_free(hf_tokenizer);
    json_free(golden);
    char command[400];
    snprintf(command, sizeof command, "rm -rf '%s'", temp_dir);
    if (system(command) != 0) printf("could not remove %s\n", temp_dir);
    return test_summary();
}
