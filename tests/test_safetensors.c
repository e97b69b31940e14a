// Tests for engine/json.c (strict JSON parser) and engine/safetensors.c (mmap reader, writer).
//
// Every malformed safetensors file is built here, in a mkdtemp directory, and has its own TEST, so
// that removing any one validation makes exactly one test fail. Messages are checked with strstr
// for the tensor name and a key phrase, and for the "<path>: ..." one-line shape.
//
// The golden tests/golden/safetensors_python.safetensors was written once by the Python writer
// tests/ref/safetensors_min.py (numpy 1.24.2; python3 = /usr/bin/python3), run from the repo root:
//
//   /usr/bin/python3 -c "
//   import sys; sys.path.insert(0, 'tests/ref'); import numpy as np, safetensors_min as s
//   s.save('tests/golden/safetensors_python.safetensors', {
//     'a.u8': np.array([1, 2, 255], dtype=np.uint8),
//     'b.f32': np.arange(6, dtype=np.float32).reshape(2, 3) / 4,
//     'c.f64': np.array(3.5),
//     'd.i64': np.array([-1, 2**40], dtype=np.int64),
//     'e.f16': np.array([1.5, -2], dtype=np.float16),
//     'f.i32': np.array([[-7], [8]], dtype=np.int32),
//     'g.empty': np.zeros((0, 4), dtype=np.float32),
//     'h.\u00e9t\u00e9': np.array([42], dtype=np.int32)},
//     {'format': 'pt', 'note': 'caf\u00e9 \u2603 \"q\"\n'})
//   "
//
// (np.ascontiguousarray turns the 0-d 'c.f64' into shape [1]; the Python writer sorts by name and
// does not align, so 'b.f32' starts at data offset 3: a real unaligned file.)
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/json.h"
#include "engine/safetensors.h"
#include "tests/check.h"

TEST_MAIN_COUNTERS;

static char temp_dir[256];

// ---------------------------------------------------------------------------------------------
// helpers

static const char *temp_path(const char *name) {
    static char paths[4][512];
    static int next;
    char *path = paths[next++ % 4];
    snprintf(path, sizeof paths[0], "%s/%s", temp_dir, name);
    return path;
}

static void write_bytes(const char *path, const void *bytes, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        printf("cannot write %s: %s\n", path, strerror(errno));
        exit(2);
    }
    if (n) fwrite(bytes, 1, n, f);
    fclose(f);
}

static unsigned char *read_bytes(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *bytes = malloc(size > 0 ? (size_t)size : 1);
    *n = fread(bytes, 1, (size_t)size, f);
    fclose(f);
    return bytes;
}

// Writes a safetensors file: 8-byte length of header, header as given (no padding), then
// data_size bytes 0, 1, 2, ...
static const char *write_safetensors(const char *name, const char *header, size_t data_size) {
    const char *path = temp_path(name);
    size_t header_length = strlen(header);
    size_t total = 8 + header_length + data_size;
    unsigned char *bytes = malloc(total);
    for (int i = 0; i < 8; i++) bytes[i] = (unsigned char)((uint64_t)header_length >> (8 * i));
    memcpy(bytes + 8, header, header_length);
    for (size_t i = 0; i < data_size; i++) bytes[8 + header_length + i] = (unsigned char)i;
    write_bytes(path, bytes, total);
    free(bytes);
    return path;
}

// open() must fail with one line "<path>: ..." containing every word (NULL-terminated list).
static void expect_rejected_at(const char *path, int line, ...) {
    SafetensorsFile *file = (SafetensorsFile *)1;
    char error[512];
    int status = safetensors_open(path, &file, error, sizeof error);
    if (status != -1 || file != NULL) {
        printf("  test line %d: %s was accepted\n", line, path);
        test_checks_failed_in_current++;
        if (status == 0) safetensors_close(file);
        return;
    }
    if (getenv("TEST_VERBOSE")) printf("       %s\n", error);
    size_t path_length = strlen(path);
    if (strncmp(error, path, path_length) != 0 || strncmp(error + path_length, ": ", 2) != 0) {
        printf("  test line %d: message does not start with the path: %s\n", line, error);
        test_checks_failed_in_current++;
    }
    if (strchr(error, '\n')) {
        printf("  test line %d: message is not one line: %s\n", line, error);
        test_checks_failed_in_current++;
    }
    va_list words;
    va_start(words, line);
    for (const char *word; (word = va_arg(words, const char *)) != NULL;) {
        if (!strstr(error, word)) {
            printf("  test line %d: message lacks \"%s\": %s\n", line, word, error);
            test_checks_failed_in_current++;
        }
    }
    va_end(words);
}
#define EXPECT_REJECTED(path, ...) expect_rejected_at(path, __LINE__, __VA_ARGS__, (const char *)NULL)

// A tensor header entry as JSON text.
#define ENTRY(name, dtype, shape, begin, end) \
    "\"" name "\":{\"dtype\":\"" dtype "\",\"shape\":" shape ",\"data_offsets\":[" #begin "," #end "]}"

static void fill_pattern(unsigned char *bytes, size_t n, uint32_t seed) {
    uint32_t state = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        bytes[i] = (unsigned char)state;
    }
}

// Number of directory entries in temp_dir whose name starts with prefix.
static int count_files_with_prefix(const char *prefix) {
    DIR *dir = opendir(temp_dir);
    int count = 0;
    for (struct dirent *e; dir && (e = readdir(dir));)
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0) count++;
    if (dir) closedir(dir);
    return count;
}

static void remove_temp_dir(void) {
    DIR *dir = opendir(temp_dir);
    for (struct dirent *e; dir && (e = readdir(dir));) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        char path[600];
        snprintf(path, sizeof path, "%s/%s", temp_dir, e->d_name);
        if (rmdir(path) != 0) unlink(path);
    }
    if (dir) closedir(dir);
    rmdir(temp_dir);
}

static JsonValue *parse(const char *text) { return json_parse(text, strlen(text), NULL, 0); }

// The document must be rejected with a message containing phrase.
static void expect_json_error_at(const char *text, size_t length, const char *phrase, int line) {
    char error[256];
    JsonValue *value = json_parse(text, length, error, sizeof error);
    if (value) {
        printf("  test line %d: accepted invalid JSON: %.60s\n", line, text);
        test_checks_failed_in_current++;
        json_free(value);
        return;
    }
    if (!strstr(error, phrase) || !strstr(error, "at byte")) {
        printf("  test line %d: error for %.60s lacks \"%s\": %s\n", line, text, phrase, error);
        test_checks_failed_in_current++;
    }
}
#define EXPECT_JSON_ERROR(text, phrase) expect_json_error_at(text, strlen(text), phrase, __LINE__)

// ---------------------------------------------------------------------------------------------
// JSON

TEST(json_parses_values_and_accessors) {
    const char *text = " {\"name\": \"vit\", \"layers\": 12, \"eps\": 1e-6, \"bias\": true,\n"
                       "  \"drop\": false, \"extra\": null, \"dims\": [768, -3, 0.5], \"nested\": {\"a\": {}}} ";
    char error[256];
    JsonValue *root = json_parse(text, strlen(text), error, sizeof error);
    CHECK_MSG(root != NULL, "%s", error);
    if (!root) return;
    CHECK(json_type(root) == JSON_OBJECT);
    CHECK(json_length(root) == 8);
    CHECK(strcmp(json_string(json_get(root, "name")), "vit") == 0);
    int64_t layers = 0;
    CHECK(json_int64(json_get(root, "layers"), &layers) == 0 && layers == 12);
    CHECK(json_number(json_get(root, "eps")) == 1e-6);
    CHECK(json_int64(json_get(root, "eps"), &layers) == -1);  // not an integer literal
    int flag = -1;
    CHECK(json_bool(json_get(root, "bias"), &flag) == 0 && flag == 1);
    CHECK(json_bool(json_get(root, "drop"), &flag) == 0 && flag == 0);
    CHECK(json_type(json_get(root, "extra")) == JSON_NULL && json_get(root, "extra") != NULL);
    CHECK(json_get(root, "missing") == NULL);
    const JsonValue *dims = json_get(root, "dims");
    CHECK(json_type(dims) == JSON_ARRAY && json_length(dims) == 3);
    CHECK(json_int64(json_at(dims, 1), &layers) == 0 && layers == -3);
    CHECK(json_number(json_at(dims, 2)) == 0.5);
    CHECK(json_at(dims, 3) == NULL);
    CHECK(json_type(json_get(json_get(json_get(root, "nested"), "a"), "b")) == JSON_NULL);
    CHECK(json_length(json_get(json_get(root, "nested"), "a")) == 0);
    // Document order is kept for iteration.
    CHECK(strcmp(json_key(root, 0), "name") == 0 && strcmp(json_key(root, 7), "nested") == 0);
    CHECK(json_value_at(root, 1) == json_get(root, "layers"));
    CHECK(json_key(root, 8) == NULL);
    CHECK(json_get(root, "name")->offset == 10);  // offset of the value's opening quote
    // Wrong-type accessors answer "absent".
    CHECK(json_string(json_get(root, "layers")) == NULL);
    CHECK(isnan(json_number(json_get(root, "name"))));
    CHECK(json_bool(json_get(root, "layers"), &flag) == -1);
    CHECK(json_at(root, 0) == NULL);
    json_free(root);

    // Top-level scalars are valid JSON texts (RFC 8259).
    const char *scalars[] = {"0", "-1.5e+3", "\"s\"", "true", "false", "null", " [ ] ", "{}"};
    for (size_t i = 0; i < sizeof scalars / sizeof *scalars; i++) {
        JsonValue *value = parse(scalars[i]);
        CHECK_MSG(value != NULL, "%s", scalars[i]);
        json_free(value);
    }
    // NULL-safety of every accessor.
    double d;
    CHECK(json_type(NULL) == JSON_NULL && json_length(NULL) == 0 && json_get(NULL, "a") == NULL);
    CHECK(json_string(NULL) == NULL && json_string_length(NULL) == 0 && json_key(NULL, 0) == NULL);
    CHECK(json_int64(NULL, &layers) == -1 && json_double(NULL, &d) == -1 && json_at(NULL, 0) == NULL);
    CHECK(json_object_duplicate(NULL) == -1 && json_value_at(NULL, 0) == NULL);
    json_free(NULL);
}

TEST(json_string_escapes_and_utf8) {
    const char *text = "[\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t\", \"\\u0041\\u00e9\\u20AC\", \"\\ud83d\\ude00\","
                       " \"a\\u0000b\", \"caf\xc3\xa9 \xe2\x98\x83 \xf0\x9f\x98\x80\", \"\x7f\"]";
    char error[256];
    JsonValue *root = json_parse(text, strlen(text), error, sizeof error);
    CHECK_MSG(root != NULL, "%s", error);
    if (!root) return;
    CHECK(strcmp(json_string(json_at(root, 0)), "\" \\ / \b \f \n \r \t") == 0);
    CHECK(strcmp(json_string(json_at(root, 1)), "A\xc3\xa9\xe2\x82\xac") == 0);
    CHECK(strcmp(json_string(json_at(root, 2)), "\xf0\x9f\x98\x80") == 0);  // U+1F600 from a pair
    CHECK(json_string_length(json_at(root, 3)) == 3 && memcmp(json_string(json_at(root, 3)), "a\0b", 4) == 0);
    CHECK(strcmp(json_string(json_at(root, 4)), "caf\xc3\xa9 \xe2\x98\x83 \xf0\x9f\x98\x80") == 0);
    CHECK(strcmp(json_string(json_at(root, 5)), "\x7f") == 0);  // DEL is not a control character in JSON
    json_free(root);
    // Extremes of the code space.
    JsonValue *edge = parse("\"\\udbff\\udfff\\u07ff\\u0800\\uffff\"");
    CHECK(edge && strcmp(json_string(edge), "\xf4\x8f\xbf\xbf\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf") == 0);
    json_free(edge);
}

TEST(json_rejects_bad_strings) {
    EXPECT_JSON_ERROR("\"\\ud83d\"", "high surrogate");
    EXPECT_JSON_ERROR("\"\\ud83dx\"", "high surrogate");
    EXPECT_JSON_ERROR("\"\\ud83d\\u0041\"", "high surrogate");
    EXPECT_JSON_ERROR("\"\\ud83d\\ud83d\"", "high surrogate");
    EXPECT_JSON_ERROR("\"\\ude00\"", "lone low surrogate");
    EXPECT_JSON_ERROR("\"\\u12\"", "4 hex digits");
    EXPECT_JSON_ERROR("\"\\u12G4\"", "4 hex digits");
    EXPECT_JSON_ERROR("\"\\x41\"", "invalid escape");
    EXPECT_JSON_ERROR("\"\\'\"", "invalid escape");
    EXPECT_JSON_ERROR("\"a\tb\"", "control character");
    EXPECT_JSON_ERROR("\"a\nb\"", "control character");
    EXPECT_JSON_ERROR("\"abc", "unterminated string");
    EXPECT_JSON_ERROR("\"abc\\\"", "unterminated string");
    EXPECT_JSON_ERROR("\"\\", "unterminated string");
    EXPECT_JSON_ERROR("\"\xc0\x80\"", "invalid UTF-8");           // overlong NUL
    EXPECT_JSON_ERROR("\"\xe0\x80\xaf\"", "invalid UTF-8");       // overlong '/'
    EXPECT_JSON_ERROR("\"\xed\xa0\x80\"", "invalid UTF-8");       // UTF-8-encoded surrogate
    EXPECT_JSON_ERROR("\"\xf4\x90\x80\x80\"", "invalid UTF-8");   // > U+10FFFF
    EXPECT_JSON_ERROR("\"\xf5\x80\x80\x80\"", "invalid UTF-8");
    EXPECT_JSON_ERROR("\"\xe2\x82\"", "invalid UTF-8");           // truncated sequence
    EXPECT_JSON_ERROR("\"\x80\"", "invalid UTF-8");               // stray continuation byte
    EXPECT_JSON_ERROR("'single'", "unexpected");
    // A NUL byte inside a string is a raw control character; the length, not NUL, ends the text.
    expect_json_error_at("\"a\0b\"", 5, "control character", __LINE__);
    CHECK(json_utf8_valid("caf\xc3\xa9", 5) && !json_utf8_valid("\xc3", 1) && json_utf8_valid("", 0));
}

TEST(json_numbers) {
    JsonValue *v = parse("-0");
    int64_t i = 99;
    CHECK(v && v->number == 0 && signbit(v->number) && json_int64(v, &i) == 0 && i == 0);
    json_free(v);
    v = parse("-0.0");
    CHECK(v && signbit(v->number) && json_int64(v, &i) == -1);
    json_free(v);
    v = parse("9223372036854775807");
    CHECK(v && json_int64(v, &i) == 0 && i == INT64_MAX);
    json_free(v);
    v = parse("-9223372036854775808");
    CHECK(v && json_int64(v, &i) == 0 && i == INT64_MIN);
    json_free(v);
    v = parse("9223372036854775808");  // a valid number, but not an int64
    CHECK(v && json_int64(v, &i) == -1 && v->number == 9223372036854775808.0);
    json_free(v);
    v = parse("-9223372036854775809");
    CHECK(v && json_int64(v, &i) == -1);
    json_free(v);
    v = parse("[3.0, 1e3, 1E+2, 0.1, 1e-400, 2.5e-3, 123456789012345678901234567890]");
    CHECK(v && json_length(v) == 7);
    CHECK(json_int64(json_at(v, 0), &i) == -1 && json_number(json_at(v, 0)) == 3.0);
    CHECK(json_int64(json_at(v, 1), &i) == -1 && json_number(json_at(v, 1)) == 1000.0);
    CHECK(json_number(json_at(v, 2)) == 100.0);
    CHECK(json_number(json_at(v, 3)) == 0.1);           // correctly rounded
    CHECK(json_number(json_at(v, 4)) == 0.0);           // underflow to zero is fine
    CHECK(json_number(json_at(v, 5)) == 2.5e-3);
    CHECK(json_number(json_at(v, 6)) == 1.2345678901234568e29);
    json_free(v);
    // Out of double range: the JSON grammar allows it, but it would become Inf, which JSON cannot
    // represent; serde_json (used by the safetensors reference) rejects it too.
    EXPECT_JSON_ERROR("1e400", "out of range");
    EXPECT_JSON_ERROR("[-1e400]", "out of range");
    EXPECT_JSON_ERROR("007", "leading zeros");
    EXPECT_JSON_ERROR("-01", "leading zeros");
    EXPECT_JSON_ERROR("00", "leading zeros");
    EXPECT_JSON_ERROR("+1", "unexpected '+'");
    EXPECT_JSON_ERROR(".5", "unexpected '.'");
    EXPECT_JSON_ERROR("1.", "digit after '.'");
    EXPECT_JSON_ERROR("1.e3", "digit after '.'");
    EXPECT_JSON_ERROR("-", "digit after '-'");
    EXPECT_JSON_ERROR("-a", "digit after '-'");
    EXPECT_JSON_ERROR("1e", "exponent");
    EXPECT_JSON_ERROR("1e+", "exponent");
    EXPECT_JSON_ERROR("0x10", "unexpected 'x'");
    EXPECT_JSON_ERROR("NaN", "unexpected 'N'");
    EXPECT_JSON_ERROR("Infinity", "unexpected 'I'");
    EXPECT_JSON_ERROR("-Infinity", "digit after '-'");
    EXPECT_JSON_ERROR("1 2", "after the JSON value");
}

TEST(json_rejects_bad_structure) {
    EXPECT_JSON_ERROR("", "unexpected end of input");
    EXPECT_JSON_ERROR("  \n ", "unexpected end of input");
    EXPECT_JSON_ERROR("{} x", "unexpected 'x' after the JSON value");
    EXPECT_JSON_ERROR("{}}", "after the JSON value");
    EXPECT_JSON_ERROR("[1,]", "unexpected ']'");
    EXPECT_JSON_ERROR("[,1]", "unexpected ','");
    EXPECT_JSON_ERROR("[1 2]", "expected ',' or ']'");
    EXPECT_JSON_ERROR("[1", "expected ',' or ']'");
    EXPECT_JSON_ERROR("{,}", "expected a string key");
    EXPECT_JSON_ERROR("{\"a\":1,}", "expected a string key");
    EXPECT_JSON_ERROR("{\"a\" 1}", "expected ':'");
    EXPECT_JSON_ERROR("{\"a\":}", "unexpected '}'");
    EXPECT_JSON_ERROR("{a:1}", "expected a string key");
    EXPECT_JSON_ERROR("{\"a\":1", "expected ',' or '}'");
    EXPECT_JSON_ERROR("{\"a\":1 \"b\":2}", "expected ',' or '}'");
    EXPECT_JSON_ERROR("[1] // comment", "after the JSON value");
    EXPECT_JSON_ERROR("/* c */ 1", "unexpected '/'");
    EXPECT_JSON_ERROR("\xef\xbb\xbf{}", "byte 0xef");  // byte order mark
    EXPECT_JSON_ERROR("tru", "invalid literal");
    EXPECT_JSON_ERROR("nul", "invalid literal");
    EXPECT_JSON_ERROR("True", "unexpected 'T'");
    EXPECT_JSON_ERROR("[true false]", "expected ',' or ']'");
    EXPECT_JSON_ERROR("\f1", "byte 0x0c");  // form feed is not JSON whitespace
    expect_json_error_at("[1]\0", 4, "byte 0x00 after the JSON value", __LINE__);
    // The length bounds the text: "[1]" followed by bytes outside the given length is fine.
    JsonValue *v = json_parse("[1] garbage", 3, NULL, 0);
    CHECK(v != NULL);
    json_free(v);
    v = json_parse("[12345", 3, NULL, 0);  // "[12" only
    CHECK(v == NULL);
    // Error location: byte offset and line/column.
    char error[256];
    const char *text = "{\n  \"a\": 1,\n  \"b\": ?\n}";
    CHECK(json_parse(text, strlen(text), error, sizeof error) == NULL);
    CHECK_MSG(strstr(error, "at byte 19 (line 3, column 8)") != NULL, "%s", error);
    // A tiny error buffer is truncated, not overflowed.
    char tiny[8];
    CHECK(json_parse("[", 1, tiny, sizeof tiny) == NULL && strlen(tiny) == 7);
}

TEST(json_nesting_limit) {
    char text[2 * (JSON_MAX_DEPTH + 1) + 1];
    // JSON_MAX_DEPTH nested arrays are fine...
    for (int i = 0; i < JSON_MAX_DEPTH; i++) text[i] = '[';
    for (int i = 0; i < JSON_MAX_DEPTH; i++) text[JSON_MAX_DEPTH + i] = ']';
    JsonValue *v = json_parse(text, 2 * JSON_MAX_DEPTH, NULL, 0);
    CHECK(v != NULL);
    json_free(v);
    // ...one more is not.
    for (int i = 0; i <= JSON_MAX_DEPTH; i++) text[i] = '[';
    for (int i = 0; i <= JSON_MAX_DEPTH; i++) text[JSON_MAX_DEPTH + 1 + i] = ']';
    expect_json_error_at(text, 2 * (JSON_MAX_DEPTH + 1), "nesting deeper than 64", __LINE__);
    // Objects count too, and a huge depth fails fast instead of overflowing the stack.
    size_t deep = 1000000;
    char *objects = malloc(deep * 6);
    for (size_t i = 0; i < deep; i++) memcpy(objects + 6 * i, "{\"a\": ", 6);
    expect_json_error_at(objects, deep * 6, "nesting deeper", __LINE__);
    memset(objects, '[', deep);
    expect_json_error_at(objects, deep, "nesting deeper", __LINE__);
    free(objects);
}

TEST(json_duplicate_keys) {
    const char *text = "{\"a\": 1, \"b\": 2, \"a\": 3}";
    char error[256];
    CHECK(json_parse(text, strlen(text), error, sizeof error) == NULL);
    CHECK_MSG(strstr(error, "duplicate key \"a\"") && strstr(error, "at byte 17"), "%s", error);
    // Nested objects are checked too.
    EXPECT_JSON_ERROR("[{\"x\": {\"k\": 1, \"k\": 1}}]", "duplicate key \"k\"");
    // Keys differing only after an embedded NUL are distinct.
    JsonValue *v = parse("{\"a\\u0000b\": 1, \"a\\u0000c\": 2, \"a\": 3}");
    CHECK(v != NULL);
    CHECK(json_number(json_get_n(v, "a\0c", 3)) == 2 && json_number(json_get(v, "a")) == 3);
    json_free(v);
    // With the flag the document parses; the query finds the second occurrence, json_get the first.
    v = json_parse_flags(text, strlen(text), JSON_ALLOW_DUPLICATE_KEYS, error, sizeof error);
    CHECK(v != NULL);
    CHECK(json_object_duplicate(v) == 2);
    CHECK(json_number(json_get(v, "a")) == 1);
    json_free(v);
    v = json_parse_flags("{\"x\": 1, \"y\": 2}", 16, JSON_ALLOW_DUPLICATE_KEYS, NULL, 0);
    CHECK(v && json_object_duplicate(v) == -1);
    json_free(v);
}

TEST(json_lookup_in_large_object) {
    JsonBuffer text = {0};
    json_buffer_append(&text, "{", 1);
    for (int i = 0; i < 5000; i++)
        json_buffer_printf(&text, "%s\"key%d\": %d", i ? "," : "", (i * 7919) % 5000, i);
    json_buffer_append(&text, "}", 1);
    CHECK(!text.failed);
    JsonValue *v = json_parse(text.data, text.length, NULL, 0);
    CHECK(v && json_length(v) == 5000);
    for (int i = 0; i < 5000 && v; i++) {
        char key[32];
        snprintf(key, sizeof key, "key%d", (i * 7919) % 5000);
        int64_t value = -1;
        CHECK(json_int64(json_get(v, key), &value) == 0 && value == i);
    }
    CHECK(json_get(v, "key5000") == NULL && json_get(v, "") == NULL && json_get(v, "ke") == NULL);
    json_free(v);
    json_buffer_free(&text);
}

TEST(json_write_strings_round_trip) {
    const char *strings[] = {"plain", "", "quote\" backslash\\ slash/", "\n\t\r\b\f\x01\x1f",
                             "caf\xc3\xa9 \xf0\x9f\x98\x80", "\x7f"};
    for (size_t i = 0; i < sizeof strings / sizeof *strings; i++) {
        JsonBuffer buffer = {0};
        json_buffer_append_string(&buffer, strings[i]);
        JsonValue *v = json_parse(buffer.data, buffer.length, NULL, 0);
        CHECK_MSG(v && strcmp(json_string(v), strings[i]) == 0, "%s", buffer.data);
        json_free(v);
        json_buffer_free(&buffer);
    }
    JsonBuffer buffer = {0};
    json_buffer_append_string(&buffer, "\x01\n");
    CHECK(strcmp(buffer.data, "\"\\u0001\\n\"") == 0);
    json_buffer_free(&buffer);
    // Invalid UTF-8 becomes U+FFFD, so the output always parses.
    json_buffer_append_string(&buffer, "a\xff" "b\xe2\x82");
    CHECK_MSG(strcmp(buffer.data, "\"a\\ufffdb\\ufffd\\ufffd\"") == 0, "%s", buffer.data);
    json_buffer_free(&buffer);
    // The FILE* writer produces the same bytes.
    const char *path = temp_path("json_string.txt");
    FILE *f = fopen(path, "wb");
    json_write_string(f, "tab\there \"q\" \xc3\xa9");
    fclose(f);
    size_t n = 0;
    unsigned char *bytes = read_bytes(path, &n);
    CHECK(bytes && n == 20 && memcmp(bytes, "\"tab\\there \\\"q\\\" \xc3\xa9\"", 20) == 0);
    free(bytes);
}

// ---------------------------------------------------------------------------------------------
// safetensors: writer -> reader

typedef struct {
    const char *name;
    DType dtype;
    int ndim;
    int64_t shape[8];
} Spec;

TEST(round_trip_every_dtype_with_metadata) {
    const Spec specs[] = {
        {"u8.odd", DTYPE_U8, 1, {5}},  // odd byte count, added first: the layout must still align
        {"f32.matrix", DTYPE_F32, 2, {3, 5}},
        {"f64.scalar", DTYPE_F64, 0, {0}},
        {"f16.vector", DTYPE_F16, 1, {7}},
        {"bf16.tensor", DTYPE_BF16, 3, {2, 3, 1}},
        {"i32.vector", DTYPE_I32, 1, {3}},
        {"i64.vector", DTYPE_I64, 1, {3}},
        {"u8.scalar", DTYPE_U8, 0, {0}},
        {"empty.f32", DTYPE_F32, 1, {0}},
        {"empty.i64", DTYPE_I64, 2, {3, 0}},
        {"eight.dims", DTYPE_F32, 8, {1, 2, 1, 2, 1, 2, 1, 3}},
        {"layer.\xc3\xa9 \"quoted\"\n\\", DTYPE_BF16, 1, {2}},  // needs escaping in the header
    };
    enum { N = sizeof specs / sizeof *specs };
    unsigned char *data[N];
    size_t sizes[N];
    SafetensorsWriter *writer = safetensors_writer_new();
    for (int i = 0; i < N; i++) {
        size_t n = dtype_size(specs[i].dtype);
        for (int d = 0; d < specs[i].ndim; d++) n *= (size_t)specs[i].shape[d];
        sizes[i] = n;
        data[i] = malloc(n ? n : 1);
        fill_pattern(data[i], n, (uint32_t)i + 1);  // random bits, NaN patterns included
        CHECK(safetensors_writer_add(writer, specs[i].name, specs[i].dtype, specs[i].ndim,
                                     specs[i].shape, n ? data[i] : NULL) == 0);
    }
    safetensors_writer_set_metadata(writer, "format", "tf");
    safetensors_writer_set_metadata(writer, "unicode", "na\xc3\xafve \xe2\x98\x83 \xf0\x9f\x98\x80");
    safetensors_writer_set_metadata(writer, "escapes", "a\"b\\c\n\t\x01/");
    safetensors_writer_set_metadata(writer, "empty", "");
    safetensors_writer_set_metadata(writer, "format", "pt");  // replaces, keeps its position
    CHECK(strcmp(safetensors_writer_error(writer), "") == 0);
    const char *path = temp_path("round_trip.safetensors");
    char error[512];
    CHECK_MSG(safetensors_writer_write(writer, path, error, sizeof error) == 0, "%s", error);
    safetensors_writer_free(writer);

    SafetensorsFile *file = NULL;
    CHECK_MSG(safetensors_open(path, &file, error, sizeof error) == 0, "%s", error);
    if (!file) return;
    CHECK(strcmp(safetensors_path(file), path) == 0);
    CHECK(safetensors_count(file) == N);
    for (int i = 0; i < N; i++) {
        const SafetensorsEntry *e = safetensors_find(file, specs[i].name);
        CHECK_MSG(e != NULL, "%s", specs[i].name);
        if (!e) continue;
        CHECK(strcmp(e->name, specs[i].name) == 0);
        CHECK(e->dtype == specs[i].dtype);
        CHECK(e->ndim == specs[i].ndim);
        for (int d = 0; d < 8; d++) CHECK(e->shape[d] == (d < e->ndim ? specs[i].shape[d] : 0));
        CHECK(e->nbytes == sizes[i]);
        CHECK_MSG(sizes[i] == 0 || memcmp(e->data, data[i], sizes[i]) == 0, "%s", specs[i].name);
        // Our writer's layout keeps every tensor aligned to its element size.
        CHECK_MSG((uintptr_t)e->data % dtype_size(e->dtype) == 0, "%s", e->name);
    }
    // Entries come in data-offset order; the writer lays out larger elements first.
    for (int i = 1; i < N; i++) {
        const SafetensorsEntry *a = safetensors_entry(file, i - 1), *b = safetensors_entry(file, i);
        CHECK(a->offset + a->nbytes == b->offset);
        CHECK(dtype_size(a->dtype) >= dtype_size(b->dtype));
    }
    // 8-byte elements come first, in add order: "f64.scalar" was added before the I64 tensors.
    CHECK(strcmp(safetensors_entry(file, 0)->name, "f64.scalar") == 0);
    CHECK(safetensors_entry(file, -1) == NULL && safetensors_entry(file, N) == NULL);
    CHECK(safetensors_find(file, "missing") == NULL && safetensors_find(file, "u8") == NULL);
    // Metadata, in the order first set.
    CHECK(safetensors_metadata_count(file) == 4);
    CHECK(strcmp(safetensors_metadata(file, "format"), "pt") == 0);
    CHECK(strcmp(safetensors_metadata(file, "unicode"), "na\xc3\xafve \xe2\x98\x83 \xf0\x9f\x98\x80") == 0);
    CHECK(strcmp(safetensors_metadata(file, "escapes"), "a\"b\\c\n\t\x01/") == 0);
    CHECK(strcmp(safetensors_metadata(file, "empty"), "") == 0);
    CHECK(safetensors_metadata(file, "missing") == NULL);
    CHECK(strcmp(safetensors_metadata_key(file, 0), "format") == 0);
    CHECK(strcmp(safetensors_metadata_value(file, 0), "pt") == 0);
    CHECK(strcmp(safetensors_metadata_key(file, 3), "empty") == 0);
    CHECK(safetensors_metadata_key(file, 4) == NULL && safetensors_metadata_value(file, -1) == NULL);
    safetensors_close(file);
    for (int i = 0; i < N; i++) free(data[i]);
}

TEST(writer_layout_is_largest_element_first_then_add_order) {
    uint8_t bytes[3] = {1, 2, 3};
    float f[2] = {1, 2};
    double g = 3;
    int64_t three = 3, two = 2;
    SafetensorsWriter *writer = safetensors_writer_new();
    safetensors_writer_add(writer, "z.u8", DTYPE_U8, 1, &three, bytes);
    safetensors_writer_add(writer, "y.f32", DTYPE_F32, 1, &two, f);
    safetensors_writer_add(writer, "x.f64", DTYPE_F64, 0, NULL, &g);
    safetensors_writer_add(writer, "w.f32", DTYPE_F32, 1, &two, f);
    const char *path = temp_path("layout.safetensors");
    char error[512];
    CHECK_MSG(safetensors_writer_write(writer, path, error, sizeof error) == 0, "%s", error);
    safetensors_writer_free(writer);
    SafetensorsFile *file = NULL;
    CHECK_MSG(safetensors_open(path, &file, error, sizeof error) == 0, "%s", error);
    if (!file) return;
    const char *expected[] = {"x.f64", "y.f32", "w.f32", "z.u8"};
    for (int i = 0; i < 4; i++) CHECK(strcmp(safetensors_entry(file, i)->name, expected[i]) == 0);
    safetensors_close(file);
    // Header text, exactly: metadata-free, compact, padded with spaces to a multiple of 8.
    size_t n = 0;
    unsigned char *raw = read_bytes(path, &n);
    const char *header = "{\"x.f64\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[0,8]},"
                         "\"y.f32\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]},"
                         "\"w.f32\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]},"
                         "\"z.u8\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[24,27]}}";
    size_t header_length = (strlen(header) + 7) / 8 * 8;
    CHECK(raw && n == 8 + header_length + 27);
    CHECK(raw && raw[0] == header_length && raw[1] == 0 && raw[7] == 0);
    CHECK(raw && memcmp(raw + 8, header, strlen(header)) == 0);
    for (size_t i = strlen(header); raw && i < header_length; i++) CHECK(raw[8 + i] == ' ');
    free(raw);
}

// Byte-exact against the test vectors of the reference implementation
// (huggingface/safetensors safetensors/src/tensor.rs: test_serialization, test_empty).
TEST(writer_matches_reference_bytes) {
    static const unsigned char attn[] = {
        64, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 46, 48, 34, 58, 123, 34, 100,
        116, 121, 112, 101, 34, 58, 34, 70, 51, 50, 34, 44, 34, 115, 104, 97, 112, 101, 34,
        58, 91, 49, 44, 50, 44, 51, 93, 44, 34, 100, 97, 116, 97, 95, 111, 102, 102, 115,
        101, 116, 115, 34, 58, 91, 48, 44, 50, 52, 93, 125, 125, 0, 0, 0, 0, 0, 0, 128, 63,
        0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64};
    static const unsigned char empty[] = {8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32};
    static const unsigned char framework[] = {
        40, 0, 0, 0, 0, 0, 0, 0, 123, 34, 95, 95, 109, 101, 116, 97, 100, 97, 116, 97, 95,
        95, 34, 58, 123, 34, 102, 114, 97, 109, 101, 119, 111, 114, 107, 34, 58, 34, 112,
        116, 34, 125, 125, 32, 32, 32, 32, 32};
    char error[512];
    size_t n;
    unsigned char *raw;

    float values[6] = {0, 1, 2, 3, 4, 5};
    int64_t shape[3] = {1, 2, 3};
    SafetensorsWriter *writer = safetensors_writer_new();
    CHECK(safetensors_writer_add(writer, "attn.0", DTYPE_F32, 3, shape, values) == 0);
    const char *path = temp_path("reference_attn.safetensors");
    CHECK_MSG(safetensors_writer_write(writer, path, error, sizeof error) == 0, "%s", error);
    safetensors_writer_free(writer);
    raw = read_bytes(path, &n);
    CHECK(raw && n == sizeof attn && memcmp(raw, attn, n) == 0);
    free(raw);

    writer = safetensors_writer_new();
    path = temp_path("reference_empty.safetensors");
    CHECK_MSG(safetensors_writer_write(writer, path, error, sizeof error) == 0, "%s", error);
    raw = read_bytes(path, &n);
    CHECK(raw && n == sizeof empty && memcmp(raw, empty, n) == 0);
    free(raw);
    SafetensorsFile *file = NULL;
    CHECK_MSG(safetensors_open(path, &file, error, sizeof error) == 0, "%s", error);
    CHECK(safetensors_count(file) == 0 && safetensors_metadata_count(file) == 0);
    safetensors_close(file);

    safetensors_writer_set_metadata(writer, "framework", "pt");
    path = temp_path("reference_framework.safetensors");
    CHECK_MSG(safetensors_writer_write(writer, path, error, sizeof error) == 0, "%s", error);
    safetensors_writer_free(writer);
    raw = read_bytes(path, &n);
    CHECK(raw && n == sizeof framework && memcmp(raw, framework, n) == 0);
    free(raw);
}

TEST(writer_uses_temporary_file_and_rename) {
    float values[4] = {1, 2, 3, 4};
    int64_t shape = 4;
    char error[512];
    SafetensorsWriter *writer = safetensors_writer_new();
    safetensors_writer_add(writer, "w", DTYPE_F32, 1, &shape, values);
    const char *path = temp_path("atomic.safetensors");
    // Overwriting an existing file replaces it whole.
    write_bytes(path, "old contents", 12);
    CHECK_MSG(safetensors_writer_write(writer, path, error, sizeof error) == 0, "%s", error);
    CHECK(count_files_with_prefix("atomic.safetensors") == 1);  // no "<path>.tmp.<pid>" left
    SafetensorsFile *file = NULL;
    CHECK_MSG(safetensors_open(path, &file, error, sizeof error) == 0, "%s", error);
    // The mapping stays valid when the file is replaced again underneath it (rename, not rewrite).
    values[0] = 9;
    CHECK_MSG(safetensors_writer_write(writer, path, error, sizeof error) == 0, "%s", error);
    if (file) CHECK(((const float *)safetensors_find(file, "w")->data)[0] == 1);
    safetensors_close(file);
    CHECK(count_files_with_prefix("atomic.safetensors") == 1);

    // A directory that does not exist: one-line error, nothing created.
    const char *bad = temp_path("no/such/dir/x.safetensors");
    CHECK(safetensors_writer_write(writer, bad, error, sizeof error) == -1);
    CHECK_MSG(strstr(error, bad) == error && strstr(error, "cannot create temporary file") &&
                  strstr(error, "No such file or directory") && !strchr(error, '\n'),
              "%s", error);
    // The target path is a directory: rename fails, and the temporary file is removed.
    const char *directory = temp_path("a_directory");
    mkdir(directory, 0700);
    CHECK(safetensors_writer_write(writer, directory, error, sizeof error) == -1);
    CHECK_MSG(strstr(error, "cannot rename"), "%s", error);
    CHECK(count_files_with_prefix("a_directory") == 1);
    rmdir(directory);
    safetensors_writer_free(writer);
}

TEST(writer_rejects_bad_entries) {
    float values[4] = {0};
    int64_t shape[9] = {2, 2, 1, 1, 1, 1, 1, 1, 1};
    int64_t negative[2] = {2, -1};
    int64_t huge[3] = {INT64_C(1) << 40, INT64_C(1) << 40, 0};
    char error[512];
    SafetensorsWriter *w;
    // Each case: a writer holding one good tensor, then a bad add, which must fail with text in
    // both safetensors_writer_error and the (sticky) failure of the later write.
#define TRY(call, text)                                                                            \
    do {                                                                                           \
        w = safetensors_writer_new();                                                              \
        CHECK(safetensors_writer_add(w, "ok", DTYPE_F32, 2, shape, values) == 0);                  \
        CHECK_MSG((call) == -1, "%s", text);                                                       \
        CHECK_MSG(strstr(safetensors_writer_error(w), text), "%s", safetensors_writer_error(w));   \
        CHECK(safetensors_writer_write(w, temp_path("rejected.safetensors"), error, sizeof error) == -1); \
        CHECK_MSG(strstr(error, text), "%s", error);                                               \
        safetensors_writer_free(w);                                                                \
    } while (0)
    TRY(safetensors_writer_add(w, "ok", DTYPE_F32, 2, shape, values), "tensor 'ok': added twice");
    TRY(safetensors_writer_add(w, "t", (DType)DTYPE_COUNT, 2, shape, values), "unknown dtype");
    TRY(safetensors_writer_add(w, "t", (DType)-1, 2, shape, values), "unknown dtype");
    TRY(safetensors_writer_add(w, "t", DTYPE_F32, 9, shape, values), "ndim 9 is outside [0, 8]");
    TRY(safetensors_writer_add(w, "t", DTYPE_F32, -1, shape, values), "ndim -1");
    TRY(safetensors_writer_add(w, "t", DTYPE_F32, 2, negative, values), "shape[1] is -1");
    TRY(safetensors_writer_add(w, "t", DTYPE_F32, 3, huge, values), "overflows");
    TRY(safetensors_writer_add(w, "__metadata__", DTYPE_F32, 2, shape, values), "reserved");
    TRY(safetensors_writer_add(w, "bad\xff", DTYPE_F32, 2, shape, values), "not valid UTF-8");
    TRY(safetensors_writer_add(w, "t", DTYPE_F32, 2, shape, NULL), "data is NULL");
#undef TRY
    CHECK(count_files_with_prefix("rejected") == 0);
    // Zero-sized tensors may have NULL data; metadata with bad UTF-8 fails the write.
    w = safetensors_writer_new();
    int64_t zero = 0;
    CHECK(safetensors_writer_add(w, "empty", DTYPE_F32, 1, &zero, NULL) == 0);
    safetensors_writer_set_metadata(w, "k", "\xc3");
    CHECK(safetensors_writer_write(w, temp_path("rejected.safetensors"), error, sizeof error) == -1);
    CHECK_MSG(strstr(error, "__metadata__") && strstr(error, "UTF-8"), "%s", error);
    safetensors_writer_free(w);
    safetensors_writer_free(NULL);
}

TEST(reads_python_golden_file) {
    const char *path = "tests/golden/safetensors_python.safetensors";
    SafetensorsFile *file = NULL;
    char error[512];
    CHECK_MSG(safetensors_open(path, &file, error, sizeof error) == 0, "%s", error);
    if (!file) return;
    CHECK(safetensors_count(file) == 8);
    // Python's writer puts tensors in name order, which is also data order here.
    const char *names[] = {"a.u8", "b.f32", "c.f64", "d.i64", "e.f16", "f.i32", "g.empty",
                           "h.\xc3\xa9t\xc3\xa9"};
    for (int i = 0; i < 8; i++) CHECK(strcmp(safetensors_entry(file, i)->name, names[i]) == 0);

    const SafetensorsEntry *e = safetensors_find(file, "a.u8");
    CHECK(e && e->dtype == DTYPE_U8 && e->ndim == 1 && e->shape[0] == 3 && e->nbytes == 3);
    CHECK(e && memcmp(e->data, "\x01\x02\xff", 3) == 0);

    e = safetensors_find(file, "b.f32");  // starts at data offset 3: read through memcpy
    CHECK(e && e->dtype == DTYPE_F32 && e->ndim == 2 && e->shape[0] == 2 && e->shape[1] == 3);
    if (e) {
        CHECK(e->offset == 3);
        float values[6];
        memcpy(values, e->data, sizeof values);
        for (int i = 0; i < 6; i++) CHECK(values[i] == (float)i / 4);
    }
    e = safetensors_find(file, "c.f64");
    CHECK(e && e->dtype == DTYPE_F64 && e->ndim == 1 && e->shape[0] == 1);
    if (e) {
        double value;
        memcpy(&value, e->data, 8);
        CHECK(value == 3.5);
    }
    e = safetensors_find(file, "d.i64");
    if (e) {
        int64_t values[2];
        memcpy(values, e->data, sizeof values);
        CHECK(values[0] == -1 && values[1] == INT64_C(1) << 40);
    }
    CHECK(e != NULL);
    e = safetensors_find(file, "e.f16");
    if (e) {
        uint16_t bits[2];
        memcpy(bits, e->data, sizeof bits);
        CHECK(f16_to_f32(bits[0]) == 1.5f && f16_to_f32(bits[1]) == -2.0f);
    }
    CHECK(e && e->dtype == DTYPE_F16);
    e = safetensors_find(file, "f.i32");
    CHECK(e && e->ndim == 2 && e->shape[0] == 2 && e->shape[1] == 1);
    if (e) {
        int32_t values[2];
        memcpy(values, e->data, sizeof values);
        CHECK(values[0] == -7 && values[1] == 8);
    }
    e = safetensors_find(file, "g.empty");
    CHECK(e && e->nbytes == 0 && e->ndim == 2 && e->shape[0] == 0 && e->shape[1] == 4);
    e = safetensors_find(file, "h.\xc3\xa9t\xc3\xa9");  // name was written as \u00e9 escapes
    if (e) {
        int32_t value;
        memcpy(&value, e->data, 4);
        CHECK(value == 42);
    }
    CHECK(e != NULL);
    CHECK(safetensors_metadata_count(file) == 2);
    CHECK(strcmp(safetensors_metadata(file, "format"), "pt") == 0);
    CHECK(strcmp(safetensors_metadata(file, "note"), "caf\xc3\xa9 \xe2\x98\x83 \"q\"\n") == 0);
    safetensors_close(file);
}

// Valid files from other writers: not padded (unaligned data), whitespace, header order unlike
// data order, zero-sized tensors sharing an offset, null metadata.
TEST(reader_accepts_valid_variants) {
    char error[512];
    SafetensorsFile *file = NULL;
    const char *path = write_safetensors(
        "variants.safetensors",
        "{ \"__metadata__\" : null ,\n\t" ENTRY("b", "I32", "[ 2 ]", 4, 12) " , "
        ENTRY("z2", "F64", "[0, 5]", 12, 12) "," ENTRY("a", "U8", "[4]", 0, 4) ","
        ENTRY("z1", "BF16", "[3, 0]", 4, 4) "," ENTRY("s", "F16", "[]", 12, 14) "}\r\n",
        14);
    CHECK_MSG(safetensors_open(path, &file, error, sizeof error) == 0, "%s", error);
    if (!file) return;
    CHECK(safetensors_count(file) == 5 && safetensors_metadata_count(file) == 0);
    const char *order[] = {"a", "z1", "b", "z2", "s"};  // by offset, ties in header order
    for (int i = 0; i < 5; i++) CHECK(strcmp(safetensors_entry(file, i)->name, order[i]) == 0);
    const SafetensorsEntry *s = safetensors_find(file, "s");
    CHECK(s && s->ndim == 0 && s->nbytes == 2 && memcmp(s->data, "\x0c\x0d", 2) == 0);
    const SafetensorsEntry *b = safetensors_find(file, "b");
    CHECK(b && memcmp(b->data, "\x04\x05\x06\x07\x08\x09\x0a\x0b", 8) == 0);
    safetensors_close(file);

    // Empty header, no data; error buffer may be NULL.
    path = write_safetensors("empty_header.safetensors", "{}", 0);
    CHECK(safetensors_open(path, &file, NULL, 0) == 0 && safetensors_count(file) == 0);
    CHECK(safetensors_find(file, "x") == NULL && safetensors_metadata(file, "x") == NULL);
    safetensors_close(file);
    safetensors_close(NULL);
}

TEST(open_missing_file_and_directory) {
    const char *path = temp_path("does_not_exist.safetensors");
    EXPECT_REJECTED(path, "cannot open", "No such file or directory");
    EXPECT_REJECTED(temp_dir, "not a regular file");
    // A tiny error buffer is truncated, never overflowed; no error buffer at all is fine too.
    char tiny[6];
    SafetensorsFile *file = NULL;
    CHECK(safetensors_open(path, &file, tiny, sizeof tiny) == -1 && strlen(tiny) == 5);
    CHECK(safetensors_open(path, &file, NULL, 0) == -1 && file == NULL);
}

// ---------------------------------------------------------------------------------------------
// safetensors: one test per malformation

TEST(malformed_empty_file) {
    const char *path = temp_path("empty.safetensors");
    write_bytes(path, "", 0);
    EXPECT_REJECTED(path, "file is 0 bytes", "shorter than the 8-byte header length");
}

TEST(malformed_file_shorter_than_8_bytes) {
    const char *path = temp_path("short.safetensors");
    write_bytes(path, "\x02\x00\x00\x00\x00", 5);
    EXPECT_REJECTED(path, "file is 5 bytes", "shorter than the 8-byte");
}

TEST(malformed_header_length_beyond_file) {
    const char *path = temp_path("header_beyond.safetensors");
    write_bytes(path, "\x10\x00\x00\x00\x00\x00\x00\x00{}", 10);
    EXPECT_REJECTED(path, "header length 16", "beyond the end of the file (10 bytes");
}

TEST(malformed_header_length_over_limit) {
    const char *path = temp_path("header_huge.safetensors");
    // 100000001 = 0x05F5E101: just over the reference's 100 MB limit (file itself is small).
    write_bytes(path, "\x01\xe1\xf5\x05\x00\x00\x00\x00{}", 10);
    EXPECT_REJECTED(path, "header length 100000001", "exceeds the limit of 100000000 bytes");
}

TEST(malformed_header_length_near_2_to_64) {
    const char *path = temp_path("header_u64max.safetensors");
    // 8 + N would wrap around in 64 bits; must not be mistaken for a small length.
    write_bytes(path, "\xf9\xff\xff\xff\xff\xff\xff\xff{}", 10);
    EXPECT_REJECTED(path, "header length 18446744073709551609", "exceeds the limit");
}

TEST(malformed_header_not_json) {
    EXPECT_REJECTED(write_safetensors("not_json.safetensors", "{\"w\": {\"dtype\": ", 0),
                    "header is not valid JSON", "unexpected end of input", "at byte 16");
}

TEST(malformed_header_trailing_garbage) {
    // Zero bytes after the object (a writer that padded with NUL instead of spaces).
    const char *path = temp_path("trailing_nul.safetensors");
    write_bytes(path, "\x04\x00\x00\x00\x00\x00\x00\x00{}\x00\x00", 12);
    EXPECT_REJECTED(path, "header is not valid JSON", "byte 0x00 after the JSON value");
}

TEST(malformed_header_not_an_object) {
    EXPECT_REJECTED(write_safetensors("array_header.safetensors", "[1, 2]", 0),
                    "header is an array, expected a JSON object");
}

TEST(malformed_header_invalid_utf8) {
    EXPECT_REJECTED(write_safetensors("bad_utf8.safetensors",
                                      "{" ENTRY("w\xc3\x28", "U8", "[1]", 0, 1) "}", 1),
                    "header is not valid JSON", "invalid UTF-8 byte 0xc3");
}

TEST(malformed_header_too_deep) {
    char header[300] = "{\"__metadata__\":";
    for (int i = 0; i < 70; i++) strcat(header, "[");
    for (int i = 0; i < 70; i++) strcat(header, "]");
    strcat(header, "}");
    EXPECT_REJECTED(write_safetensors("deep.safetensors", header, 0), "nesting deeper than 64");
}

TEST(malformed_entry_not_an_object) {
    EXPECT_REJECTED(write_safetensors("entry_array.safetensors", "{\"w\": [0, 4]}", 4),
                    "tensor 'w'", "expected an object with dtype, shape and data_offsets, got an array");
}

TEST(malformed_missing_dtype) {
    EXPECT_REJECTED(write_safetensors("no_dtype.safetensors",
                                      "{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4),
                    "tensor 'w'", "missing field 'dtype'");
}

TEST(malformed_missing_shape) {
    EXPECT_REJECTED(write_safetensors("no_shape.safetensors",
                                      "{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4),
                    "tensor 'w'", "missing field 'shape'");
}

TEST(malformed_missing_data_offsets) {
    EXPECT_REJECTED(write_safetensors("no_offsets.safetensors",
                                      "{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4),
                    "tensor 'w'", "missing field 'data_offsets'");
}

TEST(malformed_extra_field) {
    EXPECT_REJECTED(
        write_safetensors("extra_field.safetensors",
                          "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"offsets\":[0,4]}}", 4),
        "tensor 'w'", "unexpected field 'offsets'");
}

TEST(malformed_duplicate_field) {
    EXPECT_REJECTED(
        write_safetensors("duplicate_field.safetensors",
                          "{\"w\":{\"dtype\":\"F32\",\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4),
        "tensor 'w'", "field 'dtype' appears twice");
}

TEST(malformed_dtype_not_a_string) {
    EXPECT_REJECTED(write_safetensors("dtype_number.safetensors",
                                      "{\"w\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4),
                    "tensor 'w'", "dtype must be a string, got a number");
}

TEST(malformed_unknown_dtype) {
    EXPECT_REJECTED(write_safetensors("dtype_unknown.safetensors", "{" ENTRY("w", "float32", "[1]", 0, 4) "}", 4),
                    "tensor 'w'", "unsupported dtype 'float32'", "supported: F32");
}

TEST(malformed_unsupported_safetensors_dtype) {
    // BOOL is a real safetensors dtype, but not one of ours: named, not silently mapped to U8.
    EXPECT_REJECTED(write_safetensors("dtype_bool.safetensors",
                                      "{" ENTRY("ok", "U8", "[2]", 0, 2) "," ENTRY("mask", "BOOL", "[2]", 2, 4) "}", 4),
                    "tensor 'mask'", "unsupported dtype 'BOOL'");
}

TEST(malformed_shape_not_an_array) {
    EXPECT_REJECTED(write_safetensors("shape_number.safetensors", "{" ENTRY("w", "F32", "4", 0, 16) "}", 16),
                    "tensor 'w'", "shape must be an array of integers, got a number");
}

TEST(malformed_shape_negative_dimension) {
    EXPECT_REJECTED(write_safetensors("shape_negative.safetensors", "{" ENTRY("w", "F32", "[2, -2]", 0, 16) "}", 16),
                    "tensor 'w'", "shape[1] is -2, expected a non-negative integer");
}

TEST(malformed_shape_fractional_dimension) {
    EXPECT_REJECTED(write_safetensors("shape_fraction.safetensors", "{" ENTRY("w", "F32", "[2.5]", 0, 10) "}", 10),
                    "tensor 'w'", "shape[0] = 2.5 is not an integer");
}

TEST(malformed_shape_integral_float_dimension) {
    // 2.0 and 2e0 equal 2, but serde (the reference) does not read them as usize either.
    EXPECT_REJECTED(write_safetensors("shape_float.safetensors", "{" ENTRY("w", "F32", "[2e0]", 0, 8) "}", 8),
                    "tensor 'w'", "shape[0] = 2 is not an integer");
}

TEST(malformed_shape_non_number_dimension) {
    EXPECT_REJECTED(write_safetensors("shape_string.safetensors", "{" ENTRY("w", "F32", "[\"2\"]", 0, 8) "}", 8),
                    "tensor 'w'", "shape[0] is a string");
}

TEST(malformed_shape_too_many_dimensions) {
    EXPECT_REJECTED(write_safetensors("shape_9d.safetensors",
                                      "{" ENTRY("w", "F32", "[1,1,1,1,1,1,1,1,1]", 0, 4) "}", 4),
                    "tensor 'w'", "shape has 9 dimensions, at most 8");
}

TEST(malformed_shape_product_overflow) {
    // 2^32 * 2^32 = 2^64 elements: the element count wraps to 0, which would match [0, 0].
    EXPECT_REJECTED(write_safetensors("shape_overflow.safetensors",
                                      "{" ENTRY("w", "U8", "[4294967296, 4294967296]", 0, 0) "}", 0),
                    "tensor 'w'", "overflows");
}

TEST(malformed_byte_size_overflow) {
    // 2^62 elements fit, but 2^62 * 4 bytes wraps to 0.
    EXPECT_REJECTED(write_safetensors("bytes_overflow.safetensors",
                                      "{" ENTRY("w", "F32", "[4611686018427387904]", 0, 0) "}", 0),
                    "tensor 'w'", "overflows");
}

TEST(malformed_offsets_not_two_integers) {
    EXPECT_REJECTED(write_safetensors("offsets_one.safetensors",
                                      "{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4]}}", 4),
                    "tensor 'w'", "data_offsets must be an array of two integers");
}

TEST(malformed_offsets_three_values) {
    EXPECT_REJECTED(write_safetensors("offsets_three.safetensors",
                                      "{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4,4]}}", 4),
                    "tensor 'w'", "data_offsets must be an array of two integers");
}

TEST(malformed_offsets_not_integers) {
    EXPECT_REJECTED(write_safetensors("offsets_float.safetensors", "{" ENTRY("w", "U8", "[4]", 0, 4.0) "}", 4),
                    "tensor 'w'", "data_offsets must be an array of two integers");
}

TEST(malformed_offsets_negative) {
    EXPECT_REJECTED(write_safetensors("offsets_negative.safetensors", "{" ENTRY("w", "U8", "[4]", -4, 0) "}", 4),
                    "tensor 'w'", "data_offsets [-4, 0] are negative");
}

TEST(malformed_offsets_begin_after_end) {
    EXPECT_REJECTED(write_safetensors("offsets_reversed.safetensors", "{" ENTRY("w", "U8", "[4]", 8, 4) "}", 8),
                    "tensor 'w'", "data_offsets [8, 4] have begin after end");
}

TEST(malformed_offsets_beyond_buffer) {
    EXPECT_REJECTED(write_safetensors("offsets_beyond.safetensors", "{" ENTRY("w", "F32", "[4]", 0, 16) "}", 8),
                    "tensor 'w'", "data_offsets [0, 16] go beyond the end of the data buffer (8 bytes)");
}

TEST(malformed_offsets_huge) {
    // Offsets near 2^63: no pointer arithmetic may happen before the bounds check.
    EXPECT_REJECTED(write_safetensors("offsets_huge.safetensors",
                                      "{" ENTRY("w", "U8", "[9223372036854775806]", 1, 9223372036854775807) "}", 8),
                    "tensor 'w'", "go beyond the end of the data buffer");
}

TEST(malformed_byte_size_mismatch) {
    EXPECT_REJECTED(write_safetensors("size_mismatch.safetensors", "{" ENTRY("w", "F32", "[2, 3]", 0, 20) "}", 20),
                    "tensor 'w'", "shape [2, 3] of F32 needs 24 bytes", "data_offsets [0, 20] hold 20");
}

TEST(malformed_zero_sized_shape_with_bytes) {
    EXPECT_REJECTED(write_safetensors("zero_mismatch.safetensors", "{" ENTRY("w", "F32", "[0, 3]", 0, 4) "}", 4),
                    "tensor 'w'", "needs 0 bytes");
}

TEST(malformed_overlapping_tensors) {
    EXPECT_REJECTED(write_safetensors("overlap.safetensors",
                                      "{" ENTRY("b", "F32", "[4]", 8, 24) "," ENTRY("a", "F32", "[4]", 0, 16) "}", 24),
                    "tensor 'b'", "data [8, 24) overlaps tensor 'a' at [0, 16)");
}

TEST(malformed_same_offsets_twice) {
    // Two tensors aliasing the same bytes.
    EXPECT_REJECTED(write_safetensors("alias.safetensors",
                                      "{" ENTRY("a", "F32", "[2]", 0, 8) "," ENTRY("b", "I32", "[2]", 0, 8) "}", 8),
                    "tensor 'b'", "overlaps tensor 'a'");
}

TEST(malformed_hole_between_tensors) {
    EXPECT_REJECTED(write_safetensors("hole.safetensors",
                                      "{" ENTRY("a", "F32", "[2]", 0, 8) "," ENTRY("b", "F32", "[2]", 16, 24) "}", 24),
                    "tensor 'b'", "data starts at byte 16", "bytes [8, 16) belong to no tensor");
}

TEST(malformed_hole_at_start) {
    EXPECT_REJECTED(write_safetensors("hole_start.safetensors", "{" ENTRY("a", "F32", "[2]", 8, 16) "}", 16),
                    "tensor 'a'", "data starts at byte 8", "bytes [0, 8) belong to no tensor");
}

TEST(malformed_trailing_bytes_after_tensors) {
    EXPECT_REJECTED(write_safetensors("trailing_data.safetensors", "{" ENTRY("a", "F32", "[2]", 0, 8) "}", 12),
                    "data buffer is 12 bytes but the tensors cover only 8", "bytes [8, 12) at the end");
}

TEST(malformed_data_without_tensors) {
    EXPECT_REJECTED(write_safetensors("data_no_tensors.safetensors", "{}", 3),
                    "data buffer is 3 bytes but the tensors cover only 0");
}

TEST(malformed_duplicate_tensor_name) {
    EXPECT_REJECTED(write_safetensors("duplicate_name.safetensors",
                                      "{" ENTRY("w", "F32", "[1]", 0, 4) "," ENTRY("w", "F32", "[1]", 4, 8) "}", 8),
                    "tensor 'w'", "name appears twice in the header");
}

TEST(malformed_tensor_name_with_nul) {
    EXPECT_REJECTED(write_safetensors("name_nul.safetensors", "{" ENTRY("w\\u0000x", "F32", "[1]", 0, 4) "}", 4),
                    "tensor 'w\\x00x'", "name contains a NUL character");
}

TEST(malformed_metadata_not_an_object) {
    EXPECT_REJECTED(write_safetensors("metadata_array.safetensors", "{\"__metadata__\": [\"a\"]}", 0),
                    "__metadata__ must be an object of string values, got an array");
}

TEST(malformed_metadata_value_not_a_string) {
    EXPECT_REJECTED(write_safetensors("metadata_number.safetensors",
                                      "{\"__metadata__\": {\"ok\": \"1\", \"epoch\": 3}}", 0),
                    "__metadata__ value of 'epoch' must be a string, got a number");
}

TEST(malformed_metadata_nested_object) {
    EXPECT_REJECTED(write_safetensors("metadata_nested.safetensors",
                                      "{\"__metadata__\": {\"cfg\": {\"a\": \"b\"}}}", 0),
                    "__metadata__ value of 'cfg' must be a string, got an object");
}

TEST(malformed_metadata_duplicate_key) {
    EXPECT_REJECTED(write_safetensors("metadata_duplicate.safetensors",
                                      "{\"__metadata__\": {\"k\": \"1\", \"k\": \"2\"}}", 0),
                    "__metadata__ key 'k' appears twice");
}

TEST(malformed_metadata_twice) {
    EXPECT_REJECTED(write_safetensors("metadata_twice.safetensors",
                                      "{\"__metadata__\": {}, \"__metadata__\": {}}", 0),
                    "__metadata__ appears twice");
}

TEST(malformed_message_escapes_control_characters_in_names) {
    // A name with a newline must not break the one-line message.
    EXPECT_REJECTED(write_safetensors("name_newline.safetensors", "{" ENTRY("a\\nb", "BOOL", "[1]", 0, 1) "}", 1),
                    "tensor 'a\\x0ab'", "unsupported dtype 'BOOL'");
}

// ---------------------------------------------------------------------------------------------
// robustness: every truncation and many byte flips of a valid file open cleanly or fail cleanly

static long checksum_file(const SafetensorsFile *file) {
    long sum = 0;
    for (int i = 0; i < safetensors_count(file); i++) {
        const SafetensorsEntry *e = safetensors_entry(file, i);
        for (size_t b = 0; b < e->nbytes; b++) sum += ((const unsigned char *)e->data)[b];
        sum += (long)strlen(e->name);
    }
    for (int i = 0; i < safetensors_metadata_count(file); i++)
        sum += (long)strlen(safetensors_metadata_key(file, i)) +
               (long)strlen(safetensors_metadata_value(file, i));
    return sum;
}

TEST(fuzz_truncations_and_byte_flips) {
    // A valid file with several dtypes, a scalar, a zero-sized tensor and metadata.
    float f[6] = {1, 2, 3, 4, 5, 6};
    uint16_t h[3] = {1, 2, 3};
    uint8_t u[3] = {7, 8, 9};
    double d = 0.5;
    int64_t s6 = 6, s3 = 3, s0 = 0;
    SafetensorsWriter *writer = safetensors_writer_new();
    safetensors_writer_add(writer, "f", DTYPE_F32, 1, &s6, f);
    safetensors_writer_add(writer, "h", DTYPE_BF16, 1, &s3, h);
    safetensors_writer_add(writer, "u", DTYPE_U8, 1, &s3, u);
    safetensors_writer_add(writer, "d", DTYPE_F64, 0, NULL, &d);
    safetensors_writer_add(writer, "e", DTYPE_I64, 1, &s0, NULL);
    safetensors_writer_set_metadata(writer, "k", "v\xc3\xa9");
    const char *original = temp_path("fuzz_original.safetensors");
    char error[512];
    CHECK_MSG(safetensors_writer_write(writer, original, error, sizeof error) == 0, "%s", error);
    safetensors_writer_free(writer);
    size_t n = 0;
    unsigned char *bytes = read_bytes(original, &n);
    if (!bytes) return;
    unsigned char *mutated = malloc(n);
    const char *path = temp_path("fuzz.safetensors");
    int accepted = 0, rejected = 0, malformed_messages = 0;

    // Every strict prefix fails: the tensors must cover the buffer exactly.
    for (size_t length = 0; length < n; length++) {
        write_bytes(path, bytes, length);
        SafetensorsFile *file = NULL;
        if (safetensors_open(path, &file, error, sizeof error) == 0) {
            printf("  truncation to %zu bytes was accepted\n", length);
            test_checks_failed_in_current++;
            safetensors_close(file);
        }
    }
    // Byte mutations at every position: success (then touch all data) or a one-line message.
    static const int masks[] = {0x01, 0x20, 0x80, 0xff};
    static const unsigned char replacements[] = {'"', '\\', '{', '0', '9', '-', ' ', 0};
    for (size_t position = 0; position < n; position++) {
        for (size_t m = 0; m < 4 + sizeof replacements; m++) {
            memcpy(mutated, bytes, n);
            if (m < 4)
                mutated[position] ^= (unsigned char)masks[m];
            else
                mutated[position] = replacements[m - 4];
            write_bytes(path, mutated, n);
            SafetensorsFile *file = NULL;
            if (safetensors_open(path, &file, error, sizeof error) == 0) {
                accepted++;
                CHECK(checksum_file(file) >= 0);
                safetensors_close(file);
            } else {
                rejected++;
                if (file != NULL || strncmp(error, path, strlen(path)) != 0 || strchr(error, '\n'))
                    malformed_messages++;
            }
        }
    }
    CHECK_MSG(malformed_messages == 0, "%d bad messages", malformed_messages);
    CHECK(accepted > 0 && rejected > 0);  // flips in tensor data are harmless; most others are not
    // One byte too many fails as well.
    unsigned char *longer = malloc(n + 1);
    memcpy(longer, bytes, n);
    longer[n] = 0;
    write_bytes(path, longer, n + 1);
    EXPECT_REJECTED(path, "at the end belong to no tensor");
    free(longer);
    free(mutated);
    free(bytes);
}

int main(void) {
    snprintf(temp_dir, sizeof temp_dir, "%s/tailor_safetensors_XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(temp_dir)) {
        printf("mkdtemp failed: %s\n", strerror(errno));
        return 2;
    }
    RUN_TEST(json_parses_values_and_accessors);
    RUN_TEST(json_string_escapes_and_utf8);
    RUN_TEST(json_rejects_bad_strings);
    RUN_TEST(json_numbers);
    RUN_TEST(json_rejects_bad_structure);
    RUN_TEST(json_nesting_limit);
    RUN_TEST(json_duplicate_keys);
    RUN_TEST(json_lookup_in_large_object);
    RUN_TEST(json_write_strings_round_trip);

    RUN_TEST(round_trip_every_dtype_with_metadata);
    RUN_TEST(writer_layout_is_largest_element_first_then_add_order);
    RUN_TEST(writer_matches_reference_bytes);
    RUN_TEST(writer_uses_temporary_file_and_rename);
    RUN_TEST(writer_rejects_bad_entries);
    RUN_TEST(reads_python_golden_file);
    RUN_TEST(reader_accepts_valid_variants);
    RUN_TEST(open_missing_file_and_directory);

    RUN_TEST(malformed_empty_file);
    RUN_TEST(malformed_file_shorter_than_8_bytes);
    RUN_TEST(malformed_header_length_beyond_file);
    RUN_TEST(malformed_header_length_over_limit);
    RUN_TEST(malformed_header_length_near_2_to_64);
    RUN_TEST(malformed_header_not_json);
    RUN_TEST(malformed_header_trailing_garbage);
    RUN_TEST(malformed_header_not_an_object);
    RUN_TEST(malformed_header_invalid_utf8);
    RUN_TEST(malformed_header_too_deep);
    RUN_TEST(malformed_entry_not_an_object);
    RUN_TEST(malformed_missing_dtype);
    RUN_TEST(malformed_missing_shape);
    RUN_TEST(malformed_missing_data_offsets);
    RUN_TEST(malformed_extra_field);
    RUN_TEST(malformed_duplicate_field);
    RUN_TEST(malformed_dtype_not_a_string);
    RUN_TEST(malformed_unknown_dtype);
    RUN_TEST(malformed_unsupported_safetensors_dtype);
    RUN_TEST(malformed_shape_not_an_array);
    RUN_TEST(malformed_shape_negative_dimension);
    RUN_TEST(malformed_shape_fractional_dimension);
    RUN_TEST(malformed_shape_integral_float_dimension);
    RUN_TEST(malformed_shape_non_number_dimension);
    RUN_TEST(malformed_shape_too_many_dimensions);
    RUN_TEST(malformed_shape_product_overflow);
    RUN_TEST(malformed_byte_size_overflow);
    RUN_TEST(malformed_offsets_not_two_integers);
    RUN_TEST(malformed_offsets_three_values);
    RUN_TEST(malformed_offsets_not_integers);
    RUN_TEST(malformed_offsets_negative);
    RUN_TEST(malformed_offsets_begin_after_end);
    RUN_TEST(malformed_offsets_beyond_buffer);
    RUN_TEST(malformed_offsets_huge);
    RUN_TEST(malformed_byte_size_mismatch);
    RUN_TEST(malformed_zero_sized_shape_with_bytes);
    RUN_TEST(malformed_overlapping_tensors);
    RUN_TEST(malformed_same_offsets_twice);
    RUN_TEST(malformed_hole_between_tensors);
    RUN_TEST(malformed_hole_at_start);
    RUN_TEST(malformed_trailing_bytes_after_tensors);
    RUN_TEST(malformed_data_without_tensors);
    RUN_TEST(malformed_duplicate_tensor_name);
    RUN_TEST(malformed_tensor_name_with_nul);
    RUN_TEST(malformed_metadata_not_an_object);
    RUN_TEST(malformed_metadata_value_not_a_string);
    RUN_TEST(malformed_metadata_nested_object);
    RUN_TEST(malformed_metadata_duplicate_key);
    RUN_TEST(malformed_metadata_twice);
    RUN_TEST(malformed_message_escapes_control_characters_in_names);

    RUN_TEST(fuzz_truncations_and_byte_flips);
    remove_temp_dir();
    return test_summary();
}
