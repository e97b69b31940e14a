// What every implementation of engine/gpu/gpu.h shares: gpu_fatal, and the caching allocator
// (engine/gpu/gpu_allocator.h has its design). Linked into all three programs.
#include "engine/gpu/gpu_allocator.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

void gpu_fatal(const char *what, const char *format, ...) {
    va_list args;
    va_start(args, format);
    fflush(stdout);
    fprintf(stderr, "error: %s: ", what);
    vfprintf(stderr, format, args);
    fprintf(stderr, "\n");
    va_end(args);
    exit(1);
}

struct GpuBlock {
    void *pointer;
    size_t size;
    int size_class;
    int in_use;
    GpuBlock *next_in_bucket;  // chain of the address hash
    GpuBlock *next_free;       // free list of its size class, while cached
};

enum { MIN_BLOCK_SHIFT = 9 };  // 512 B

// Block size and class of a request: class 0 is 512 B; 2^k < n <= 2^(k+1) (k >= 9) rounds up to
// 2^k + steps * 2^(k-2), steps = 1..4, class 4 (k - 9) + steps.
static size_t block_size_and_class(size_t bytes, int *size_class) {
    if (bytes <= ((size_t)1 << MIN_BLOCK_SHIFT)) {
        *size_class = 0;
        return (size_t)1 << MIN_BLOCK_SHIFT;
    }
    if (bytes > (SIZE_MAX >> 2)) return 0;  // 2^(k+1) would not fit: nobody has that much memory
    int k = 63 - __builtin_clzll((unsigned long long)(bytes - 1));
    size_t base = (size_t)1 << k, quarter = base >> 2;
    size_t steps = (bytes - base + quarter - 1) / quarter;
    *size_class = 4 * (k - MIN_BLOCK_SHIFT) + (int)steps;
    return base + steps * quarter;
}

size_t gpu_block_size(size_t bytes) {
    int size_class;
    return block_size_and_class(bytes, &size_class);
}

const char *gpu_format_bytes(size_t bytes, char *buffer, size_t size) {
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double value = (double)bytes;
    int unit = 0;
    while (value >= 1024 && unit < 4) value /= 1024, unit++;
    if (unit == 0)
        snprintf(buffer, size, "%zu B", bytes);
    else
        snprintf(buffer, size, "%.2f %s", value, units[unit]);
    return buffer;
}

static size_t hash_pointer(const void *pointer, size_t bucket_count) {
    uint64_t h = (uint64_t)(uintptr_t)pointer * 0x9E3779B97F4A7C15ull;  // Fibonacci hashing
    return (size_t)(h >> 32) & (bucket_count - 1);
}

static void grow_buckets(GpuCachingAllocator *a) {
    size_t new_count = a->bucket_count ? 2 * a->bucket_count : 1024;
    GpuBlock **buckets = calloc(new_count, sizeof *buckets);
    if (!buckets) gpu_fatal("gpu_alloc", "out of host memory for the allocator's block table");
    for (size_t i = 0; i < a->bucket_count; i++) {
        for (GpuBlock *b = a->buckets[i], *next; b; b = next) {
            next = b->next_in_bucket;
            size_t h = hash_pointer(b->pointer, new_count);
            b->next_in_bucket = buckets[h];
            buckets[h] = b;
        }
    }
    free(a->buckets);
    a->buckets = buckets;
    a->bucket_count = new_count;
}

static GpuBlock *find_block(GpuCachingAllocator *a, const void *pointer) {
    if (!a->bucket_count) return NULL;
    for (GpuBlock *b = a->buckets[hash_pointer(pointer, a->bucket_count)]; b; b = b->next_in_bucket)
        if (b->pointer == pointer) return b;
    return NULL;
}

// Gives every cached block back to the device (caller holds the lock).
static void release_cached_locked(GpuCachingAllocator *a) {
    for (int c = 0; c < GPU_SIZE_CLASSES; c++) a->free_lists[c] = NULL;
    for (size_t i = 0; i < a->bucket_count; i++) {
        GpuBlock **link = &a->buckets[i];
        while (*link) {
            GpuBlock *b = *link;
            if (b->in_use) {
                link = &b->next_in_bucket;
                continue;
            }
            *link = b->next_in_bucket;
            a->device_free(b->pointer);
            a->stats.bytes_cached -= b->size;
            a->stats.device_frees++;
            a->block_count--;
            free(b);
        }
    }
}

static void *device_alloc_within_limit(GpuCachingAllocator *a, size_t size) {
    size_t reserved = a->stats.bytes_in_use + a->stats.bytes_cached;
    if (a->stats.memory_limit && (size > a->stats.memory_limit || reserved > a->stats.memory_limit - size)) return NULL;
    return a->device_alloc(size);
}

void *gpu_caching_alloc(GpuCachingAllocator *a, size_t bytes, size_t *block_bytes, const char *file, int line) {
    if (bytes == 0) {
        if (block_bytes) *block_bytes = 0;
        return NULL;
    }
    int size_class = 0;
    size_t size = block_size_and_class(bytes, &size_class);
    pthread_mutex_lock(&a->lock);
    a->stats.alloc_calls++;
    GpuBlock *block = size ? a->free_lists[size_class] : NULL;
    if (block) {
        a->free_lists[size_class] = block->next_free;
        a->stats.bytes_cached -= size;
        a->stats.cache_hits++;
    } else {
        void *pointer = size ? device_alloc_within_limit(a, size) : NULL;
        size_t cached_before_release = a->stats.bytes_cached;
        if (!pointer && size && a->stats.bytes_cached) {  // the cache holds memory of other sizes
            release_cached_locked(a);
            pointer = device_alloc_within_limit(a, size);
        }
        if (!pointer) {
            char requested[32], rounded[32], in_use[32], cached[32], limit[48] = "";
            gpu_format_bytes(bytes, requested, sizeof requested);
            gpu_format_bytes(size, rounded, sizeof rounded);
            gpu_format_bytes(a->stats.bytes_in_use, in_use, sizeof in_use);
            gpu_format_bytes(cached_before_release, cached, sizeof cached);
            if (a->stats.memory_limit) {
                char value[32];
                snprintf(limit, sizeof limit, ", limit %s",
                         gpu_format_bytes(a->stats.memory_limit, value, sizeof value));
            }
            gpu_fatal("gpu_alloc",
                      "out of device memory at %s:%d: requested %s (block %s) on %s with %s in use and %s cached "
                      "(released and retried)%s",
                      file, line, requested, size ? rounded : "too large", a->device_name, in_use, cached, limit);
        }
        block = calloc(1, sizeof *block);
        if (!block) gpu_fatal("gpu_alloc", "out of host memory for the allocator's block table");
        block->pointer = pointer;
        block->size = size;
        block->size_class = size_class;
        if (a->block_count + 1 > 2 * a->bucket_count) grow_buckets(a);
        size_t h = hash_pointer(pointer, a->bucket_count);
        block->next_in_bucket = a->buckets[h];
        a->buckets[h] = block;
        a->block_count++;
        a->stats.device_allocs++;
    }
    block->in_use = 1;
    block->next_free = NULL;
    a->stats.bytes_in_use += size;
    if (a->stats.bytes_in_use > a->stats.peak_bytes_in_use) a->stats.peak_bytes_in_use = a->stats.bytes_in_use;
    void *pointer = block->pointer;
    pthread_mutex_unlock(&a->lock);
    if (block_bytes) *block_bytes = size;
    return pointer;
}

int gpu_caching_free(GpuCachingAllocator *a, void *pointer) {
    pthread_mutex_lock(&a->lock);
    GpuBlock *block = find_block(a, pointer);
    if (!block) {
        pthread_mutex_unlock(&a->lock);
        return 0;
    }
    if (!block->in_use) gpu_fatal("gpu_free", "device pointer %p freed twice", pointer);
    block->in_use = 0;
    block->next_free = a->free_lists[block->size_class];
    a->free_lists[block->size_class] = block;
    a->stats.bytes_in_use -= block->size;
    a->stats.bytes_cached += block->size;
    pthread_mutex_unlock(&a->lock);
    return 1;
}

void gpu_caching_release_all(GpuCachingAllocator *a) {
    pthread_mutex_lock(&a->lock);
    release_cached_locked(a);
    pthread_mutex_unlock(&a->lock);
}

GpuMemoryStats gpu_caching_stats(GpuCachingAllocator *a) {
    pthread_mutex_lock(&a->lock);
    GpuMemoryStats stats = a->stats;
    pthread_mutex_unlock(&a->lock);
    return stats;
}

void gpu_caching_reset_peak(GpuCachingAllocator *a) {
    pthread_mutex_lock(&a->lock);
    a->stats.peak_bytes_in_use = a->stats.bytes_in_use;
    pthread_mutex_unlock(&a->lock);
}

void gpu_caching_set_limit(GpuCachingAllocator *a, size_t bytes) {
    pthread_mutex_lock(&a->lock);
    a->stats.memory_limit = bytes;
    pthread_mutex_unlock(&a->lock);
}
