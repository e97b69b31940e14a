// The caching allocator behind gpu_alloc/gpu_free, shared by the cudart and the emulated device
// (internal to engine/gpu). It only does bookkeeping: the device's own allocate/free are the two
// function pointers, so the same code serves cudaMalloc and the host heap.
//
// Size classes: 512 B, then for 2^k < n <= 2^(k+1) the four classes 2^k + j 2^(k-2), j = 1..4, so a
// block is at most 25% larger than its request. One LIFO free list per class (the block freed last is
// reused first, still warm in L2). Blocks are never split or merged: simple, and training loops ask
// for the same sizes every step, so the cache settles after the first one.
#pragma once
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/gpu/gpu.h"

enum { GPU_SIZE_CLASSES = 4 * 64 };

typedef struct GpuBlock GpuBlock;

typedef struct {
    // Returns NULL when the device has no memory left (other failures stop inside it).
    void *(*device_alloc)(size_t bytes);
    void (*device_free)(void *pointer);
    const char *device_name;  // for the out-of-memory message
    pthread_mutex_t lock;
    GpuBlock *free_lists[GPU_SIZE_CLASSES];
    GpuBlock **buckets;  // every block (in use or cached), chained hash on its address
    size_t bucket_count, block_count;
    GpuMemoryStats stats;
} GpuCachingAllocator;

#define GPU_CACHING_ALLOCATOR_INIT(alloc_fn, free_fn, name) \
    {.device_alloc = (alloc_fn), .device_free = (free_fn), .device_name = (name), .lock = PTHREAD_MUTEX_INITIALIZER}

// Rounds a request up to its block size (0 for requests too large to represent).
size_t gpu_block_size(size_t bytes);
// A block of at least `bytes` (its size in *block_bytes if not NULL); bytes == 0 gives NULL.
// Stops with one line naming file:line on out-of-memory.
void *gpu_caching_alloc(GpuCachingAllocator *allocator, size_t bytes, size_t *block_bytes, const char *file,
                        int line);
// Returns 1 if the pointer was a block of this allocator (now cached), 0 if it is not one of its
// blocks; stops with one line if it was already free.
int gpu_caching_free(GpuCachingAllocator *allocator, void *pointer);
void gpu_caching_release_all(GpuCachingAllocator *allocator);
GpuMemoryStats gpu_caching_stats(GpuCachingAllocator *allocator);
void gpu_caching_reset_peak(GpuCachingAllocator *allocator);
void gpu_caching_set_limit(GpuCachingAllocator *allocator, size_t bytes);

// "1.50 MiB" into buffer (returned).
const char *gpu_format_bytes(size_t bytes, char *buffer, size_t size);
