#include "engine/string_map.h"

#include <stdlib.h>
#include <string.h>

#include "engine/tensor.h"

static uint64_t hash_bytes(const char *key, size_t length) {
    uint64_t hash = 1469598103934665603ull;  // FNV-1a
    for (size_t i = 0; i < length; i++) hash = (hash ^ (unsigned char)key[i]) * 1099511628211ull;
    return hash ^ (hash >> 29);
}

static size_t slot_of(const StringMap *map, const char *key, size_t key_length) {
    size_t mask = map->capacity - 1, slot = (size_t)hash_bytes(key, key_length) & mask;
    while (map->keys[slot] &&
           (map->key_lengths[slot] != key_length || memcmp(map->keys[slot], key, key_length) != 0))
        slot = (slot + 1) & mask;
    return slot;
}

int64_t *string_map_find(const StringMap *map, const char *key, size_t key_length) {
    if (map->capacity == 0) return NULL;
    size_t slot = slot_of(map, key, key_length);
    return map->keys[slot] ? &map->values[slot] : NULL;
}

static void grow(StringMap *map) {
    StringMap bigger = {0};
    bigger.capacity = map->capacity ? map->capacity * 2 : 64;
    bigger.keys = calloc(bigger.capacity, sizeof *bigger.keys);
    bigger.key_lengths = calloc(bigger.capacity, sizeof *bigger.key_lengths);
    bigger.values = calloc(bigger.capacity, sizeof *bigger.values);
    if (!bigger.keys || !bigger.key_lengths || !bigger.values) tensor_fatal("string_map", "out of memory");
    for (size_t i = 0; i < map->capacity; i++) {
        if (!map->keys[i]) continue;
        size_t slot = slot_of(&bigger, map->keys[i], map->key_lengths[i]);
        bigger.keys[slot] = map->keys[i];
        bigger.key_lengths[slot] = map->key_lengths[i];
        bigger.values[slot] = map->values[i];
    }
    bigger.count = map->count;
    free(map->keys);
    free(map->key_lengths);
    free(map->values);
    *map = bigger;
}

void string_map_put(StringMap *map, const char *key, size_t key_length, int64_t value) {
    if ((map->count + 1) * 4 > map->capacity * 3) grow(map);  // load factor <= 3/4
    size_t slot = slot_of(map, key, key_length);
    if (!map->keys[slot]) {
        char *copy = malloc(key_length + 1);
        if (!copy) tensor_fatal("string_map", "out of memory");
        if (key_length) memcpy(copy, key, key_length);
        copy[key_length] = 0;
        map->keys[slot] = copy;
        map->key_lengths[slot] = key_length;
        map->count++;
    }
    map->values[slot] = value;
}

void string_map_clear(StringMap *map) {
    for (size_t i = 0; i < map->capacity; i++) {
        free(map->keys[i]);
        map->keys[i] = NULL;
    }
    map->count = 0;
}

void string_map_free(StringMap *map) {
    string_map_clear(map);
    free(map->keys);
    free(map->key_lengths);
    free(map->values);
    memset(map, 0, sizeof *map);
}
