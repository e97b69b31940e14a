// Strict RFC 8259 JSON parser: recursive descent over a length-delimited buffer, building a DOM.
// See json.h for what "strict" covers. Every value is its own allocation; objects also get an
// index of members sorted by key, which serves both O(log n) lookup and duplicate detection.
#include "json.h"

#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *text;
    size_t length;
    size_t pos;
    int flags;
    int depth;
    char *error;
    size_t error_size;
    int failed;
} Parser;

// Records the first error only: later failures are consequences of it.
__attribute__((format(printf, 3, 4))) static void parse_error(Parser *p, size_t offset,
                                                              const char *format, ...) {
    if (p->failed) return;
    p->failed = 1;
    if (!p->error || p->error_size == 0) return;
    size_t line = 1, column = 1;
    for (size_t i = 0; i < offset && i < p->length; i++) {
        if (p->text[i] == '\n') {
            line++;
            column = 1;
        } else {
            column++;
        }
    }
    va_list args;
    va_start(args, format);
    int written = vsnprintf(p->error, p->error_size, format, args);
    va_end(args);
    if (written < 0) written = 0;
    if ((size_t)written < p->error_size)
        snprintf(p->error + written, p->error_size - (size_t)written,
                 " at byte %zu (line %zu, column %zu)", offset, line, column);
}

// Describes the byte at pos for messages: 'x' for printable ASCII, byte 0xNN otherwise.
static const char *describe_byte(const Parser *p, size_t pos, char *buffer, size_t size) {
    if (pos >= p->length) return "end of input";
    unsigned char c = (unsigned char)p->text[pos];
    if (c >= 0x20 && c < 0x7f)
        snprintf(buffer, size, "'%c'", c);
    else
        snprintf(buffer, size, "byte 0x%02x", c);
    return buffer;
}

static void skip_whitespace(Parser *p) {
    while (p->pos < p->length) {
        char c = p->text[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->pos++;
    }
}

static JsonValue *new_value(JsonType type, size_t offset) {
    JsonValue *value = calloc(1, sizeof *value);
    if (value) {
        value->type = type;
        value->offset = offset;
    }
    return value;
}

void json_free(JsonValue *value) {
    if (!value) return;
    if (value->type == JSON_ARRAY || value->type == JSON_OBJECT) {
        for (size_t i = 0; i < value->count; i++) {
            json_free(value->items[i]);
            if (value->keys) free(value->keys[i]);
        }
    }
    free(value->items);
    free(value->keys);
    free(value->key_lengths);
    free(value->sorted);
    free(value->string);
    free(value);
}

// ---- UTF-8 ----

// Length of the well-formed UTF-8 sequence starting at s (1..4), or 0 if it is not well-formed
// (Unicode table 3-7: no overlong forms, no UTF-16 surrogates, nothing above U+10FFFF).
static size_t utf8_sequence_length(const unsigned char *s, size_t available) {
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    size_t length;
    unsigned char low = 0x80, high = 0xbf;  // allowed range of the second byte
    if (c >= 0xc2 && c <= 0xdf) {
        length = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        length = 3;
        if (c == 0xe0) low = 0xa0;   // below is overlong
        if (c == 0xed) high = 0x9f;  // above are surrogates D800..DFFF
    } else if (c >= 0xf0 && c <= 0xf4) {
        length = 4;
        if (c == 0xf0) low = 0x90;   // below is overlong
        if (c == 0xf4) high = 0x8f;  // above is > U+10FFFF
    } else {
        return 0;  // continuation byte, C0/C1 (overlong), or F5..FF
    }
    if (available < length) return 0;
    if (s[1] < low || s[1] > high) return 0;
    for (size_t i = 2; i < length; i++)
        if (s[i] < 0x80 || s[i] > 0xbf) return 0;
    return length;
}

int json_utf8_valid(const char *bytes, size_t length) {
    const unsigned char *s = (const unsigned char *)bytes;
    size_t i = 0;
    while (i < length) {
        size_t n = utf8_sequence_length(s + i, length - i);
        if (n == 0) return 0;
        i += n;
    }
    return 1;
}

// Copies text into buffer for a one-line message: printable ASCII and well-formed UTF-8 as they
// are, other bytes (control characters, broken UTF-8) as \xNN, long text cut with "...".
static const char *printable(const char *text, size_t length, char *buffer, size_t size) {
    size_t out = 0;
    for (size_t i = 0; i < length;) {
        unsigned char c = (unsigned char)text[i];
        size_t n = c >= 0x80 ? utf8_sequence_length((const unsigned char *)text + i, length - i) : 0;
        if (out + 8 >= size) {  // room for the longest piece (4) plus "..." and the NUL
            memcpy(buffer + out, "...", 3);
            out += 3;
            break;
        }
        if (c >= 0x20 && c < 0x7f) {
            buffer[out++] = (char)c;
            i++;
        } else if (n > 0) {
            memcpy(buffer + out, text + i, n);
            out += n;
            i += n;
        } else {
            snprintf(buffer + out, size - out, "\\x%02x", c);
            out += 4;
            i++;
        }
    }
    buffer[out] = '\0';
    return buffer;
}

static size_t utf8_encode(uint32_t code_point, char *out) {
    if (code_point < 0x80) {
        out[0] = (char)code_point;
        return 1;
    }
    if (code_point < 0x800) {
        out[0] = (char)(0xc0 | (code_point >> 6));
        out[1] = (char)(0x80 | (code_point & 0x3f));
        return 2;
    }
    if (code_point < 0x10000) {
        out[0] = (char)(0xe0 | (code_point >> 12));
        out[1] = (char)(0x80 | ((code_point >> 6) & 0x3f));
        out[2] = (char)(0x80 | (code_point & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (code_point >> 18));
    out[1] = (char)(0x80 | ((code_point >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((code_point >> 6) & 0x3f));
    out[3] = (char)(0x80 | (code_point & 0x3f));
    return 4;
}

// ---- strings ----

// Value of the 4 hex digits at pos (just after "\u"); -1 if they are not all hex digits.
static long read_hex4(Parser *p, size_t pos) {
    if (pos + 4 > p->length) return -1;
    long value = 0;
    for (size_t i = 0; i < 4; i++) {
        char c = p->text[pos + i];
        int digit;
        if (c >= '0' && c <= '9')
            digit = c - '0';
        else if (c >= 'a' && c <= 'f')
            digit = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            digit = c - 'A' + 10;
        else
            return -1;
        value = value * 16 + digit;
    }
    return value;
}

// Parses the string starting at the opening quote at p->pos; on success stores a malloc'd,
// NUL-terminated UTF-8 copy and its length. Decoding never grows the text (the longest escape
// output, 4 bytes, comes from a 12-byte surrogate pair), so the raw span bounds the allocation.
static int parse_string(Parser *p, char **out, size_t *out_length) {
    size_t start = p->pos;  // the opening quote
    size_t end = start + 1;
    while (end < p->length && p->text[end] != '"') end += (p->text[end] == '\\') ? 2 : 1;
    if (end >= p->length) {
        parse_error(p, start, "unterminated string");
        return -1;
    }
    char *result = malloc(end - start);
    if (!result) {
        parse_error(p, start, "out of memory");
        return -1;
    }
    size_t length = 0;
    size_t pos = start + 1;
    while (pos < end) {
        unsigned char c = (unsigned char)p->text[pos];
        if (c < 0x20) {
            parse_error(p, pos, "control character 0x%02x in string (escape it)", c);
            goto fail;
        }
        if (c == '\\') {
            char e = p->text[pos + 1];  // pos + 1 < end: the scan above skipped escapes in pairs
            pos += 2;
            switch (e) {
            case '"': result[length++] = '"'; break;
            case '\\': result[length++] = '\\'; break;
            case '/': result[length++] = '/'; break;
            case 'b': result[length++] = '\b'; break;
            case 'f': result[length++] = '\f'; break;
            case 'n': result[length++] = '\n'; break;
            case 'r': result[length++] = '\r'; break;
            case 't': result[length++] = '\t'; break;
            case 'u': {
                long unit = read_hex4(p, pos);
                if (unit < 0 || pos + 4 > end) {
                    parse_error(p, pos - 2, "\\u must be followed by 4 hex digits");
                    goto fail;
                }
                uint32_t code_point = (uint32_t)unit;
                if (unit >= 0xdc00 && unit <= 0xdfff) {
                    parse_error(p, pos - 2, "lone low surrogate \\u%04lx in string", unit);
                    goto fail;
                }
                if (unit >= 0xd800 && unit <= 0xdbff) {
                    // A high surrogate must be followed by an escaped low surrogate (UTF-16 pair).
                    long low = (pos + 6 <= end && p->text[pos + 4] == '\\' && p->text[pos + 5] == 'u')
                                   ? read_hex4(p, pos + 6)
                                   : -1;
                    if (low < 0xdc00 || low > 0xdfff || pos + 10 > end) {
                        parse_error(p, pos - 2,
                                    "high surrogate \\u%04lx not followed by a low surrogate", unit);
                        goto fail;
                    }
                    code_point = 0x10000 + (((uint32_t)unit - 0xd800) << 10) + ((uint32_t)low - 0xdc00);
                    pos += 6;
                }
                pos += 4;
                length += utf8_encode(code_point, result + length);
                break;
            }
            default:
                if (e > 0x20 && e < 0x7f)
                    parse_error(p, pos - 2, "invalid escape \\%c in string", e);
                else
                    parse_error(p, pos - 2, "invalid escape: byte 0x%02x after '\\' in string",
                                (unsigned char)e);
                goto fail;
            }
            continue;
        }
        size_t n = utf8_sequence_length((const unsigned char *)p->text + pos, end - pos);
        if (n == 0) {
            parse_error(p, pos, "invalid UTF-8 byte 0x%02x in string", c);
            goto fail;
        }
        memcpy(result + length, p->text + pos, n);
        length += n;
        pos += n;
    }
    result[length] = '\0';
    p->pos = end + 1;
    *out = result;
    *out_length = length;
    return 0;
fail:
    free(result);
    return -1;
}

// ---- numbers ----

// Grammar: -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
static JsonValue *parse_number(Parser *p) {
    size_t start = p->pos, pos = p->pos;
    const char *t = p->text;
    int negative = 0, integer_syntax = 1;
    if (pos < p->length && t[pos] == '-') {
        negative = 1;
        pos++;
    }
    if (pos >= p->length || t[pos] < '0' || t[pos] > '9') {
        parse_error(p, start, "invalid number: expected a digit after '-'");
        return NULL;
    }
    if (t[pos] == '0') {
        pos++;
        if (pos < p->length && t[pos] >= '0' && t[pos] <= '9') {
            parse_error(p, start, "invalid number: leading zeros are not allowed");
            return NULL;
        }
    } else {
        while (pos < p->length && t[pos] >= '0' && t[pos] <= '9') pos++;
    }
    size_t integer_end = pos;
    if (pos < p->length && t[pos] == '.') {
        integer_syntax = 0;
        pos++;
        if (pos >= p->length || t[pos] < '0' || t[pos] > '9') {
            parse_error(p, start, "invalid number: expected a digit after '.'");
            return NULL;
        }
        while (pos < p->length && t[pos] >= '0' && t[pos] <= '9') pos++;
    }
    if (pos < p->length && (t[pos] == 'e' || t[pos] == 'E')) {
        integer_syntax = 0;
        pos++;
        if (pos < p->length && (t[pos] == '+' || t[pos] == '-')) pos++;
        if (pos >= p->length || t[pos] < '0' || t[pos] > '9') {
            parse_error(p, start, "invalid number: expected a digit in the exponent");
            return NULL;
        }
        while (pos < p->length && t[pos] >= '0' && t[pos] <= '9') pos++;
    }

    JsonValue *value = new_value(JSON_NUMBER, start);
    if (!value) {
        parse_error(p, start, "out of memory");
        return NULL;
    }
    // strtod needs a NUL-terminated copy, with '.' replaced by the locale's decimal point in case
    // a caller switched LC_NUMERIC away from "C".
    size_t literal_length = pos - start;
    char small[64];
    char *literal = literal_length < sizeof small ? small : malloc(literal_length + 1);
    if (!literal) {
        free(value);
        parse_error(p, start, "out of memory");
        return NULL;
    }
    memcpy(literal, t + start, literal_length);
    literal[literal_length] = '\0';
    const char *decimal_point = localeconv()->decimal_point;
    if (decimal_point && decimal_point[0] && decimal_point[0] != '.' && !decimal_point[1]) {
        char *dot = strchr(literal, '.');
        if (dot) *dot = decimal_point[0];
    }
    value->number = strtod(literal, NULL);
    if (literal != small) free(literal);
    if (isinf(value->number)) {
        free(value);
        parse_error(p, start, "number out of range of a double");
        return NULL;
    }
    if (integer_syntax) {
        // Exact int64 from the digits; accumulate negatively so INT64_MIN fits.
        int64_t accumulated = 0;
        int overflow = 0;
        for (size_t i = start + (size_t)negative; i < integer_end; i++) {
            int digit = t[i] - '0';
            if (accumulated < (INT64_MIN + digit) / 10) {
                overflow = 1;
                break;
            }
            accumulated = accumulated * 10 - digit;
        }
        if (!overflow && !negative && accumulated == INT64_MIN) overflow = 1;
        if (!overflow) {
            value->is_integer = 1;
            value->integer = negative ? accumulated : -accumulated;
        }
    }
    p->pos = pos;
    return value;
}

// ---- arrays and objects ----

static int grow(void **array, size_t element_size, size_t *capacity, size_t needed) {
    if (needed <= *capacity) return 0;
    size_t new_capacity = *capacity ? *capacity * 2 : 4;
    while (new_capacity < needed) new_capacity *= 2;
    void *grown = realloc(*array, new_capacity * element_size);
    if (!grown) return -1;
    *array = grown;
    *capacity = new_capacity;
    return 0;
}

static int compare_keys(const JsonValue *object, size_t a, size_t b) {
    size_t la = object->key_lengths[a], lb = object->key_lengths[b];
    int c = memcmp(object->keys[a], object->keys[b], la < lb ? la : lb);
    if (c) return c;
    return (la > lb) - (la < lb);
}

// Stable bottom-up merge sort of member indices by key: equal keys keep document order, so the
// first of a run of equal keys is the earliest occurrence.
static int build_sorted_index(JsonValue *object) {
    size_t n = object->count;
    object->sorted = malloc((n ? n : 1) * sizeof *object->sorted);
    size_t *scratch = malloc((n ? n : 1) * sizeof *scratch);
    if (!object->sorted || !scratch) {
        free(scratch);
        return -1;
    }
    for (size_t i = 0; i < n; i++) object->sorted[i] = i;
    size_t *from = object->sorted, *to = scratch;
    for (size_t width = 1; width < n; width *= 2) {
        for (size_t left = 0; left < n; left += 2 * width) {
            size_t middle = left + width < n ? left + width : n;
            size_t right = left + 2 * width < n ? left + 2 * width : n;
            size_t i = left, j = middle, k = left;
            while (i < middle && j < right)
                to[k++] = compare_keys(object, from[j], from[i]) < 0 ? from[j++] : from[i++];
            while (i < middle) to[k++] = from[i++];
            while (j < right) to[k++] = from[j++];
        }
        size_t *swap = from;
        from = to;
        to = swap;
    }
    if (from != object->sorted) memcpy(object->sorted, from, n * sizeof *from);
    free(scratch);
    return 0;
}

long json_object_duplicate(const JsonValue *object) {
    if (!object || object->type != JSON_OBJECT) return -1;
    long first = -1;
    for (size_t i = 1; i < object->count; i++) {
        size_t a = object->sorted[i - 1], b = object->sorted[i];
        if (compare_keys(object, a, b) == 0 && (first < 0 || (long)b < first)) first = (long)b;
    }
    return first;
}

static JsonValue *parse_value(Parser *p);

static JsonValue *parse_array(Parser *p) {
    JsonValue *array = new_value(JSON_ARRAY, p->pos);
    if (!array) {
        parse_error(p, p->pos, "out of memory");
        return NULL;
    }
    size_t capacity = 0;
    p->pos++;  // '['
    skip_whitespace(p);
    if (p->pos < p->length && p->text[p->pos] == ']') {
        p->pos++;
        return array;
    }
    for (;;) {
        JsonValue *item = parse_value(p);
        if (!item) goto fail;
        if (grow((void **)&array->items, sizeof *array->items, &capacity, array->count + 1)) {
            json_free(item);
            parse_error(p, p->pos, "out of memory");
            goto fail;
        }
        array->items[array->count++] = item;
        skip_whitespace(p);
        if (p->pos < p->length && p->text[p->pos] == ',') {
            p->pos++;
            continue;
        }
        if (p->pos < p->length && p->text[p->pos] == ']') {
            p->pos++;
            return array;
        }
        char what[16];
        parse_error(p, p->pos, "expected ',' or ']' in array, got %s",
                    describe_byte(p, p->pos, what, sizeof what));
        goto fail;
    }
fail:
    json_free(array);
    return NULL;
}

static JsonValue *parse_object(Parser *p) {
    JsonValue *object = new_value(JSON_OBJECT, p->pos);
    size_t *key_offsets = NULL;  // where each key starts, for the duplicate-key message
    if (!object) {
        parse_error(p, p->pos, "out of memory");
        return NULL;
    }
    size_t capacity = 0, items_capacity = 0, lengths_capacity = 0, offsets_capacity = 0;
    p->pos++;  // '{'
    skip_whitespace(p);
    if (p->pos < p->length && p->text[p->pos] == '}') {
        p->pos++;
    } else {
        for (;;) {
            char what[16];
            skip_whitespace(p);
            if (p->pos >= p->length || p->text[p->pos] != '"') {
                parse_error(p, p->pos, "expected a string key in object, got %s",
                            describe_byte(p, p->pos, what, sizeof what));
                goto fail;
            }
            size_t key_offset = p->pos;
            char *key;
            size_t key_length;
            if (parse_string(p, &key, &key_length)) goto fail;
            if (grow((void **)&object->keys, sizeof *object->keys, &capacity, object->count + 1) ||
                grow((void **)&object->items, sizeof *object->items, &items_capacity, object->count + 1) ||
                grow((void **)&object->key_lengths, sizeof *object->key_lengths, &lengths_capacity,
                     object->count + 1) ||
                grow((void **)&key_offsets, sizeof *key_offsets, &offsets_capacity, object->count + 1)) {
                free(key);
                parse_error(p, p->pos, "out of memory");
                goto fail;
            }
            skip_whitespace(p);
            if (p->pos >= p->length || p->text[p->pos] != ':') {
                free(key);
                parse_error(p, p->pos, "expected ':' after object key, got %s",
                            describe_byte(p, p->pos, what, sizeof what));
                goto fail;
            }
            p->pos++;
            JsonValue *member = parse_value(p);
            if (!member) {
                free(key);
                goto fail;
            }
            object->keys[object->count] = key;
            object->key_lengths[object->count] = key_length;
            object->items[object->count] = member;
            key_offsets[object->count] = key_offset;
            object->count++;
            skip_whitespace(p);
            if (p->pos < p->length && p->text[p->pos] == ',') {
                p->pos++;
                continue;
            }
            if (p->pos < p->length && p->text[p->pos] == '}') {
                p->pos++;
                break;
            }
            parse_error(p, p->pos, "expected ',' or '}' after object member, got %s",
                        describe_byte(p, p->pos, what, sizeof what));
            goto fail;
        }
    }
    if (build_sorted_index(object)) {
        parse_error(p, object->offset, "out of memory");
        goto fail;
    }
    if (!(p->flags & JSON_ALLOW_DUPLICATE_KEYS)) {
        long duplicate = json_object_duplicate(object);
        if (duplicate >= 0) {
            char shown[128];
            parse_error(p, key_offsets[duplicate], "duplicate key \"%s\" in object",
                        printable(object->keys[duplicate], object->key_lengths[duplicate], shown,
                                  sizeof shown));
            goto fail;
        }
    }
    free(key_offsets);
    return object;
fail:
    free(key_offsets);
    json_free(object);
    return NULL;
}

static int match_literal(Parser *p, const char *word) {
    size_t n = strlen(word);
    if (p->length - p->pos < n || memcmp(p->text + p->pos, word, n) != 0) return 0;
    p->pos += n;
    return 1;
}

static JsonValue *parse_value(Parser *p) {
    skip_whitespace(p);
    char what[16];
    if (p->pos >= p->length) {
        parse_error(p, p->pos, "unexpected end of input, expected a value");
        return NULL;
    }
    size_t start = p->pos;
    char c = p->text[p->pos];
    JsonValue *value = NULL;
    switch (c) {
    case '{':
    case '[':
        if (p->depth >= JSON_MAX_DEPTH) {
            parse_error(p, start, "nesting deeper than %d levels", JSON_MAX_DEPTH);
            return NULL;
        }
        p->depth++;
        value = c == '{' ? parse_object(p) : parse_array(p);
        p->depth--;
        return value;
    case '"': {
        char *string;
        size_t length;
        if (parse_string(p, &string, &length)) return NULL;
        value = new_value(JSON_STRING, start);
        if (!value) {
            free(string);
            parse_error(p, start, "out of memory");
            return NULL;
        }
        value->string = string;
        value->string_length = length;
        return value;
    }
    case 't':
    case 'f':
    case 'n':
        if (match_literal(p, "true") || match_literal(p, "false")) {
            value = new_value(JSON_BOOL, start);
            if (value) value->boolean = c == 't';
        } else if (match_literal(p, "null")) {
            value = new_value(JSON_NULL, start);
        } else {
            parse_error(p, start, "invalid literal (expected true, false or null)");
            return NULL;
        }
        if (!value) parse_error(p, start, "out of memory");
        return value;
    default:
        if (c == '-' || (c >= '0' && c <= '9')) return parse_number(p);
        parse_error(p, start, "unexpected %s, expected a value",
                    describe_byte(p, start, what, sizeof what));
        return NULL;
    }
}

JsonValue *json_parse_flags(const char *text, size_t length, int flags, char *error,
                            size_t error_size) {
    Parser parser = {.text = text, .length = text ? length : 0, .flags = flags,
                     .error = error, .error_size = error_size};
    if (error && error_size) error[0] = '\0';
    JsonValue *root = parse_value(&parser);
    if (!root) return NULL;
    skip_whitespace(&parser);
    if (parser.pos != parser.length) {
        char what[16];
        parse_error(&parser, parser.pos, "unexpected %s after the JSON value",
                    describe_byte(&parser, parser.pos, what, sizeof what));
        json_free(root);
        return NULL;
    }
    return root;
}

JsonValue *json_parse(const char *text, size_t length, char *error, size_t error_size) {
    return json_parse_flags(text, length, 0, error, error_size);
}

// ---- accessors ----

JsonType json_type(const JsonValue *value) { return value ? value->type : JSON_NULL; }

const char *json_type_name(JsonType type) {
    switch (type) {
    case JSON_NULL: return "null";
    case JSON_BOOL: return "boolean";
    case JSON_NUMBER: return "number";
    case JSON_STRING: return "string";
    case JSON_ARRAY: return "array";
    case JSON_OBJECT: return "object";
    }
    return "unknown";
}

int json_bool(const JsonValue *value, int *out) {
    if (!value || value->type != JSON_BOOL) return -1;
    *out = value->boolean;
    return 0;
}

int json_double(const JsonValue *value, double *out) {
    if (!value || value->type != JSON_NUMBER) return -1;
    *out = value->number;
    return 0;
}

int json_int64(const JsonValue *value, int64_t *out) {
    if (!value || value->type != JSON_NUMBER || !value->is_integer) return -1;
    *out = value->integer;
    return 0;
}

double json_number(const JsonValue *value) {
    return value && value->type == JSON_NUMBER ? value->number : NAN;
}

const char *json_string(const JsonValue *value) {
    return value && value->type == JSON_STRING ? value->string : NULL;
}

size_t json_string_length(const JsonValue *value) {
    return value && value->type == JSON_STRING ? value->string_length : 0;
}

size_t json_length(const JsonValue *value) {
    return value && (value->type == JSON_ARRAY || value->type == JSON_OBJECT) ? value->count : 0;
}

const JsonValue *json_at(const JsonValue *array, size_t index) {
    if (!array || array->type != JSON_ARRAY || index >= array->count) return NULL;
    return array->items[index];
}

const char *json_key(const JsonValue *object, size_t index) {
    if (!object || object->type != JSON_OBJECT || index >= object->count) return NULL;
    return object->keys[index];
}

const JsonValue *json_value_at(const JsonValue *object, size_t index) {
    if (!object || object->type != JSON_OBJECT || index >= object->count) return NULL;
    return object->items[index];
}

const JsonValue *json_get_n(const JsonValue *object, const char *key, size_t key_length) {
    if (!object || object->type != JSON_OBJECT || !key) return NULL;
    // Lower-bound binary search, so that among duplicate keys the first (earliest) is found.
    size_t low = 0, high = object->count;
    while (low < high) {
        size_t middle = low + (high - low) / 2;
        size_t index = object->sorted[middle];
        size_t length = object->key_lengths[index];
        int c = memcmp(object->keys[index], key, length < key_length ? length : key_length);
        if (c == 0) c = (length > key_length) - (length < key_length);
        if (c < 0)
            low = middle + 1;
        else
            high = middle;
    }
    if (low < object->count) {
        size_t index = object->sorted[low];
        if (object->key_lengths[index] == key_length &&
            memcmp(object->keys[index], key, key_length) == 0)
            return object->items[index];
    }
    return NULL;
}

const JsonValue *json_get(const JsonValue *object, const char *key) {
    return key ? json_get_n(object, key, strlen(key)) : NULL;
}

// ---- writing ----

// Calls emit(context, bytes, n) with the quoted, escaped form of string.
static void escape_string(const char *string, void (*emit)(void *, const char *, size_t),
                          void *context) {
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)(string ? string : "");
    size_t length = strlen((const char *)s);
    emit(context, "\"", 1);
    size_t i = 0, run = 0;  // [run, i) is a span of bytes copied as they are
    while (i < length) {
        unsigned char c = s[i];
        char escape[8];
        size_t escape_length = 0;
        size_t consumed = 1;
        if (c == '"' || c == '\\') {
            escape[0] = '\\';
            escape[1] = (char)c;
            escape_length = 2;
        } else if (c < 0x20) {
            const char *short_form = c == '\n' ? "\\n" : c == '\t' ? "\\t" : c == '\r' ? "\\r"
                                   : c == '\b' ? "\\b" : c == '\f' ? "\\f" : NULL;
            if (short_form) {
                memcpy(escape, short_form, 2);
                escape_length = 2;
            } else {
                memcpy(escape, "\\u00", 4);
                escape[4] = hex[c >> 4];
                escape[5] = hex[c & 15];
                escape_length = 6;
            }
        } else if (c >= 0x80) {
            consumed = utf8_sequence_length(s + i, length - i);
            if (consumed == 0) {  // invalid UTF-8: substitute U+FFFD so the output stays valid
                memcpy(escape, "\\ufffd", 6);
                escape_length = 6;
                consumed = 1;
            }
        }
        if (escape_length) {
            if (i > run) emit(context, (const char *)s + run, i - run);
            emit(context, escape, escape_length);
            i += consumed;
            run = i;
        } else {
            i += consumed;
        }
    }
    if (i > run) emit(context, (const char *)s + run, i - run);
    emit(context, "\"", 1);
}

static void emit_to_file(void *context, const char *bytes, size_t n) {
    fwrite(bytes, 1, n, (FILE *)context);
}

void json_write_string(FILE *file, const char *string) { escape_string(string, emit_to_file, file); }

void json_buffer_append(JsonBuffer *buffer, const char *bytes, size_t length) {
    if (buffer->failed) return;
    if (buffer->length + length + 1 > buffer->capacity) {
        size_t capacity = buffer->capacity ? buffer->capacity : 256;
        while (capacity < buffer->length + length + 1) capacity *= 2;
        char *grown = realloc(buffer->data, capacity);
        if (!grown) {
            buffer->failed = 1;
            return;
        }
        buffer->data = grown;
        buffer->capacity = capacity;
    }
    memcpy(buffer->data + buffer->length, bytes, length);
    buffer->length += length;
    buffer->data[buffer->length] = '\0';
}

void json_buffer_printf(JsonBuffer *buffer, const char *format, ...) {
    char small[256];
    va_list args;
    va_start(args, format);
    int n = vsnprintf(small, sizeof small, format, args);
    va_end(args);
    if (n < 0) {
        buffer->failed = 1;
        return;
    }
    if ((size_t)n < sizeof small) {
        json_buffer_append(buffer, small, (size_t)n);
        return;
    }
    char *large = malloc((size_t)n + 1);
    if (!large) {
        buffer->failed = 1;
        return;
    }
    va_start(args, format);
    vsnprintf(large, (size_t)n + 1, format, args);
    va_end(args);
    json_buffer_append(buffer, large, (size_t)n);
    free(large);
}

static void emit_to_buffer(void *context, const char *bytes, size_t n) {
    json_buffer_append((JsonBuffer *)context, bytes, n);
}

void json_buffer_append_string(JsonBuffer *buffer, const char *string) {
    escape_string(string, emit_to_buffer, buffer);
}

void json_buffer_free(JsonBuffer *buffer) {
    free(buffer->data);
    buffer->data = NULL;
    buffer->length = buffer->capacity = 0;
    buffer->failed = 0;
}
