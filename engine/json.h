// A small strict JSON parser (RFC 8259) with a read-only DOM, and helpers to write JSON strings.
//
// Strict means: exactly one value, surrounded only by JSON whitespace (space, tab, LF, CR); no
// comments, trailing commas, single quotes, NaN/Infinity, leading '+' or zeros ("007"), no byte
// order mark; strings must be valid UTF-8 without raw control characters (< 0x20); \u escapes
// must pair surrogates correctly; numbers must fit a double (1e400 is an error, 1e-400 is 0);
// nesting is limited to JSON_MAX_DEPTH; duplicate object keys are an error unless the caller
// asks to keep them (JSON_ALLOW_DUPLICATE_KEYS) and checks with json_object_duplicate().
//
// Errors are one line: what went wrong and where, e.g.
//   "expected ',' or '}' after object member at byte 57 (line 3, column 12)".
//
// Every accessor accepts NULL and then answers "absent" (NULL, 0, or -1), so lookups chain:
//   int64_t width;
//   if (json_int64(json_get(json_get(config, "vision"), "width"), &width) != 0) { ...error... }
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define JSON_MAX_DEPTH 64  // arrays/objects nested deeper than this are rejected (stack safety)

typedef enum { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT } JsonType;

typedef struct JsonValue JsonValue;

// Layout is public so that loops can read fields directly; treat it as read-only.
struct JsonValue {
    JsonType type;
    size_t offset;        // byte offset of the value's first character in the parsed text
    int boolean;          // JSON_BOOL: 0 or 1
    double number;        // JSON_NUMBER: the value, correctly rounded (strtod)
    int is_integer;       // JSON_NUMBER: literal has no fraction/exponent and fits int64...
    int64_t integer;      // ...and then this is its exact value ("-0" gives 0)
    char *string;         // JSON_STRING: UTF-8, NUL-terminated (may also contain \u0000)
    size_t string_length; // JSON_STRING: bytes, without the terminating NUL
    size_t count;         // JSON_ARRAY: elements; JSON_OBJECT: members
    JsonValue **items;    // JSON_ARRAY: elements; JSON_OBJECT: member values, in document order
    char **keys;          // JSON_OBJECT: member keys (NUL-terminated UTF-8), in document order
    size_t *key_lengths;  // JSON_OBJECT: key lengths in bytes (keys may contain \u0000)
    size_t *sorted;       // JSON_OBJECT: member indices sorted by key (binary search in json_get)
};

enum {
    JSON_ALLOW_DUPLICATE_KEYS = 1,  // keep repeated keys instead of failing; see json_object_duplicate
};

// Parses text[0, length) (need not be NUL-terminated). Returns the root value, or NULL and writes
// a one-line message into error (if error_size > 0). Free the result with json_free.
JsonValue *json_parse(const char *text, size_t length, char *error, size_t error_size);
// As json_parse, with JSON_* flags.
JsonValue *json_parse_flags(const char *text, size_t length, int flags, char *error,
                            size_t error_size);
void json_free(JsonValue *value);

JsonType json_type(const JsonValue *value);  // JSON_NULL for a NULL pointer
// "null", "boolean", "number", "string", "array", "object": for messages like "expected a string,
// got an array".
const char *json_type_name(JsonType type);

// Scalars. Each returns 0 on success, -1 if value is NULL or of another type.
int json_bool(const JsonValue *value, int *out);
int json_double(const JsonValue *value, double *out);
// Exact integer: fails (-1) unless value is a number written as an integer literal (no '.', no
// exponent) that fits int64. So 3 and -0 succeed; 3.0, 1e3 and 9223372036854775808 fail.
int json_int64(const JsonValue *value, int64_t *out);
// The number, or NAN when value is not a number.
double json_number(const JsonValue *value);
// The string (NUL-terminated UTF-8), or NULL when value is not a string.
const char *json_string(const JsonValue *value);
size_t json_string_length(const JsonValue *value);  // 0 when not a string

// Arrays and objects.
size_t json_length(const JsonValue *value);  // elements / members; 0 for anything else
const JsonValue *json_at(const JsonValue *array, size_t index);  // NULL if not array / out of range
const char *json_key(const JsonValue *object, size_t index);      // NULL if not object / out of range
const JsonValue *json_value_at(const JsonValue *object, size_t index);  // member value by index
// Member by key; NULL if absent or object is not an object. O(log n). With duplicate keys (only
// possible under JSON_ALLOW_DUPLICATE_KEYS) returns the first in document order.
const JsonValue *json_get(const JsonValue *object, const char *key);
const JsonValue *json_get_n(const JsonValue *object, const char *key, size_t key_length);
// Index of the first member whose key repeats an earlier member's key (the second occurrence),
// or -1 when all keys are distinct or object is not an object.
long json_object_duplicate(const JsonValue *object);

// UTF-8 validity of bytes[0, length): rejects overlong forms, surrogates, > U+10FFFF, truncation.
int json_utf8_valid(const char *bytes, size_t length);

// Writing. Strings are written quoted, with '"', '\\' and control characters escaped; other bytes
// are copied, except that invalid UTF-8 sequences become \ufffd so the output is always valid JSON.
void json_write_string(FILE *file, const char *string);

// A growable byte buffer for building JSON text in memory. Zero-initialise it ({0}); on allocation
// failure `failed` is set and later appends do nothing. data is NUL-terminated when non-NULL.
typedef struct {
    char *data;
    size_t length, capacity;
    int failed;
} JsonBuffer;
void json_buffer_append(JsonBuffer *buffer, const char *bytes, size_t length);
void json_buffer_printf(JsonBuffer *buffer, const char *format, ...)
    __attribute__((format(printf, 2, 3)));
void json_buffer_append_string(JsonBuffer *buffer, const char *string);  // quoted and escaped
void json_buffer_free(JsonBuffer *buffer);
