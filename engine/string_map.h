// A hash map from byte strings (any bytes, with a length) to int64 values, for the tokenizers'
// vocabularies and caches. Open addressing with linear probing; keys are copied.
#pragma once
#include <stddef.h>
#include <stdint.h>

typedef struct {
    char **keys;          // NULL in empty slots
    size_t *key_lengths;
    int64_t *values;
    size_t capacity;      // a power of two (0 before the first put)
    size_t count;
} StringMap;

// The value stored for key, or NULL. The pointer stays valid until the next put.
int64_t *string_map_find(const StringMap *map, const char *key, size_t key_length);
// Sets key to value (replacing an existing value, as a Python dict does).
void string_map_put(StringMap *map, const char *key, size_t key_length, int64_t value);
void string_map_clear(StringMap *map);  // removes every key, keeps the capacity
void string_map_free(StringMap *map);   // a zeroed map is fine
