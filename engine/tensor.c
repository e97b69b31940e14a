#include "engine/tensor.h"

#include <omp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/autograd.h"
#include "engine/gpu/gpu.h"
#include "kernels/elementwise.h"

static struct CUstream_st *device_copy_stream(void) { return gpu_stream_handle(gpu_stream_default()); }

// ---------------------------------------------------------------- errors

_Noreturn void tensor_fatal(const char *op, const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    fprintf(stderr, "error: %s: ", op);
    vfprintf(stderr, fmt, args);
    fprintf(stderr, "\n");
    va_end(args);
    exit(2);
}

// ---------------------------------------------------------------- scopes
// The open scopes share one stack of owned tensors; a scope is the stack height at its begin.
// Thread-local so that worker threads (data loading) cannot drain each other's tensors.

static _Thread_local Tensor **scope_stack;
static _Thread_local int64_t scope_size, scope_capacity;

static void scope_push(Tensor *t) {
    if (scope_size == scope_capacity) {
        scope_capacity = scope_capacity ? scope_capacity * 2 : 1024;
        scope_stack = realloc(scope_stack, (size_t)scope_capacity * sizeof(Tensor *));
        if (!scope_stack) tensor_fatal("tensor", "out of memory growing the scope stack");
    }
    scope_stack[scope_size++] = t;
}

TensorScope tensor_scope_begin(void) { return scope_size; }

void tensor_scope_end(TensorScope scope) {
    // Release newest first: an output is released before the inputs its graph node holds.
    while (scope_size > scope) tensor_release(scope_stack[--scope_size]);
}

Tensor *tensor_keep(Tensor *t) {
    if (t) t->refcount++;
    return t;
}

// Freeing a tensor frees its graph node, which releases the node's inputs, and so on down the
// graph: done with a work list rather than recursion, so a graph a million ops deep does not
// overflow the C stack.
static _Thread_local Tensor **release_pending;
static _Thread_local int64_t release_count, release_capacity;
static _Thread_local bool release_running;

void tensor_release(Tensor *t) {
    if (!t) return;
    if (--t->refcount > 0) return;
    if (release_count == release_capacity) {
        release_capacity = release_capacity ? release_capacity * 2 : 256;
        release_pending = realloc(release_pending, (size_t)release_capacity * sizeof(Tensor *));
        if (!release_pending) tensor_fatal("tensor", "out of memory releasing tensors");
    }
    release_pending[release_count++] = t;
    if (release_running) return;  // the loop below, further up the stack, frees it
    release_running = true;
    while (release_count > 0) {
        Tensor *dead = release_pending[--release_count];
        if (dead->node) autograd_node_release(dead->node, dead);
        tensor_release(dead->grad);
        storage_release(dead->storage);
        free(dead);
    }
    release_running = false;
}

// ---------------------------------------------------------------- storage

static _Thread_local Device default_device = {DEVICE_CPU, 0};

Device device_cpu(void) { return (Device){DEVICE_CPU, 0}; }
Device tensor_default_device(void) { return default_device; }
void tensor_set_default_device(Device device) { default_device = device; }

// CPU storage goes through a small cache of freed blocks. A training step allocates and frees the
// same activation sizes every step; without the cache, every large block comes fresh from mmap and
// is zero-filled by the kernel on first touch (measured: a batch-norm op spent 6 of its 7.5 ms in
// page faults). A block is reused for a request of between 3/4 and all of its size, and the cache
// holds at most STORAGE_CACHE_LIMIT bytes (oldest blocks are released first).
#define STORAGE_CACHE_SLOTS 512
#define STORAGE_CACHE_LIMIT ((size_t)4 << 30)
#define STORAGE_CACHE_MIN_BYTES 4096  // smaller blocks are cheap for malloc itself
// Under AddressSanitizer, cached blocks are poisoned, so that a use after free is still reported
// (as a use-after-poison) while the cache itself is tested too.
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define CACHE_POISON(data, bytes) ASAN_POISON_MEMORY_REGION(data, bytes)
#define CACHE_UNPOISON(data, bytes) ASAN_UNPOISON_MEMORY_REGION(data, bytes)
#else
#define CACHE_POISON(data, bytes) ((void)(data), (void)(bytes))
#define CACHE_UNPOISON(data, bytes) ((void)(data), (void)(bytes))
#endif

typedef struct {
    void *data;
    size_t bytes;
} CachedBlock;

static struct {
    pthread_mutex_t lock;
    CachedBlock blocks[STORAGE_CACHE_SLOTS];  // oldest first
    int count;
    size_t bytes;
} storage_cache = {.lock = PTHREAD_MUTEX_INITIALIZER};

static size_t rounded_size(size_t nbytes) {
    size_t rounded = (nbytes + 63) & ~(size_t)63;
    return rounded ? rounded : 64;
}

// A cached block for `bytes`, with its real size in *block_bytes; NULL when none fits.
static void *cache_take(size_t bytes, size_t *block_bytes) {
    if (bytes < STORAGE_CACHE_MIN_BYTES) return NULL;
    void *data = NULL;
    pthread_mutex_lock(&storage_cache.lock);
    int best = -1;
    for (int i = 0; i < storage_cache.count; i++) {
        size_t have = storage_cache.blocks[i].bytes;
        if (have >= bytes && have - have / 4 <= bytes && (best < 0 || have < storage_cache.blocks[best].bytes)) best = i;
    }
    if (best >= 0) {
        data = storage_cache.blocks[best].data;
        *block_bytes = storage_cache.blocks[best].bytes;
        storage_cache.bytes -= storage_cache.blocks[best].bytes;
        memmove(&storage_cache.blocks[best], &storage_cache.blocks[best + 1],
                (size_t)(storage_cache.count - best - 1) * sizeof(CachedBlock));
        storage_cache.count--;
    }
    pthread_mutex_unlock(&storage_cache.lock);
    if (data) CACHE_UNPOISON(data, *block_bytes);
    return data;
}

// Keeps a freed block for reuse; returns false when it should be freed instead.
static bool cache_put(void *data, size_t bytes) {
    if (bytes < STORAGE_CACHE_MIN_BYTES || bytes > STORAGE_CACHE_LIMIT / 4) return false;
    CachedBlock evicted[STORAGE_CACHE_SLOTS];
    int n_evicted = 0;
    pthread_mutex_lock(&storage_cache.lock);
    CACHE_POISON(data, bytes);
    while (storage_cache.count > 0 &&
           (storage_cache.count == STORAGE_CACHE_SLOTS || storage_cache.bytes + bytes > STORAGE_CACHE_LIMIT)) {
        evicted[n_evicted++] = storage_cache.blocks[0];
        storage_cache.bytes -= storage_cache.blocks[0].bytes;
        memmove(&storage_cache.blocks[0], &storage_cache.blocks[1], (size_t)(storage_cache.count - 1) * sizeof(CachedBlock));
        storage_cache.count--;
    }
    storage_cache.blocks[storage_cache.count++] = (CachedBlock){data, bytes};
    storage_cache.bytes += bytes;
    pthread_mutex_unlock(&storage_cache.lock);
    for (int i = 0; i < n_evicted; i++) {
        CACHE_UNPOISON(evicted[i].data, evicted[i].bytes);
        free(evicted[i].data);
    }
    return true;
}

void storage_cache_release_all(void) {
    pthread_mutex_lock(&storage_cache.lock);
    for (int i = 0; i < storage_cache.count; i++) {
        CACHE_UNPOISON(storage_cache.blocks[i].data, storage_cache.blocks[i].bytes);
        free(storage_cache.blocks[i].data);
    }
    storage_cache.count = 0;
    storage_cache.bytes = 0;
    pthread_mutex_unlock(&storage_cache.lock);
}

Storage *storage_new(size_t nbytes, Device device) {
    Storage *s = calloc(1, sizeof(Storage));
    if (!s) tensor_fatal("storage_new", "out of memory");
    if (device.kind == DEVICE_CUDA) {  // device memory, from the runtime's caching allocator
        s->data = gpu_alloc(nbytes ? nbytes : 1);
        s->nbytes = s->capacity = nbytes;
        s->refcount = 1;
        s->device = device;
        s->owns_data = true;
        return s;
    }
    s->capacity = rounded_size(nbytes);
    s->data = cache_take(s->capacity, &s->capacity);  // a reused block keeps its real size
    if (!s->data) s->data = aligned_alloc(64, s->capacity);
    if (!s->data) tensor_fatal("storage_new", "out of memory allocating %zu bytes", nbytes);
    s->nbytes = nbytes;
    s->refcount = 1;
    s->device = device;
    s->owns_data = true;
    return s;
}

void storage_release(Storage *s) {
    if (!s || --s->refcount > 0) return;
    if (s->owns_data && s->device.kind == DEVICE_CUDA) gpu_free(s->data);
    else if (s->owns_data && !cache_put(s->data, s->capacity)) free(s->data);
    free(s);
}

// ---------------------------------------------------------------- creation

static void set_contiguous_strides(Tensor *t) {
    int64_t stride = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        t->stride[d] = stride;
        stride *= t->shape[d];
    }
}

static Tensor *tensor_alloc_header(DType dtype, Shape shape) {
    if (shape.ndim < 0 || shape.ndim > TENSOR_MAX_DIMS)
        tensor_fatal("tensor", "%d dimensions (at most %d)", shape.ndim, TENSOR_MAX_DIMS);
    Tensor *t = calloc(1, sizeof(Tensor));
    if (!t) tensor_fatal("tensor", "out of memory");
    t->dtype = dtype;
    t->ndim = shape.ndim;
    for (int d = 0; d < shape.ndim; d++) {
        if (shape.dims[d] < 0) tensor_fatal("tensor", "negative dimension %lld", (long long)shape.dims[d]);
        t->shape[d] = shape.dims[d];
    }
    set_contiguous_strides(t);
    t->refcount = 1;
    scope_push(t);
    return t;
}

Tensor *tensor_empty_on(DType dtype, Shape shape, Device device) {
    Tensor *t = tensor_alloc_header(dtype, shape);
    t->storage = storage_new((size_t)shape_numel(shape) * dtype_size(dtype), device);
    return t;
}

Tensor *tensor_empty(DType dtype, Shape shape) { return tensor_empty_on(dtype, shape, default_device); }

Tensor *tensor_zeros(DType dtype, Shape shape) {
    Tensor *t = tensor_empty(dtype, shape);
    if (tensor_is_cuda(t)) gpu_memset_async(t->storage->data, 0, t->storage->nbytes, gpu_stream_default());
    else memset(t->storage->data, 0, t->storage->nbytes);
    return t;
}

Tensor *tensor_full(DType dtype, Shape shape, double value) {
    Tensor *t = tensor_empty(dtype, shape);
    tensor_fill_raw(t, value);
    return t;
}

Tensor *tensor_from_data(DType dtype, Shape shape, const void *data) {
    Tensor *t = tensor_empty(dtype, shape);
    if (tensor_is_cuda(t)) gpu_copy_to_device(t->storage->data, data, t->storage->nbytes);
    else memcpy(t->storage->data, data, t->storage->nbytes);
    return t;
}

Tensor *tensor_scalar(DType dtype, double value) { return tensor_full(dtype, SHAPE(), value); }

Tensor *tensor_arange(DType dtype, int64_t n) {
    Tensor *host = tensor_empty_on(dtype, SHAPE(n), device_cpu());
    for (int64_t i = 0; i < n; i++) dtype_store(host->storage->data, dtype, i, (double)i);
    if (default_device.kind == DEVICE_CPU) return host;
    Tensor *t = tensor_empty(dtype, SHAPE(n));
    tensor_copy_raw(t, host);
    return t;
}

Tensor *tensor_empty_like(const Tensor *t) { return tensor_empty_on(t->dtype, tensor_shape(t), t->storage->device); }
Tensor *tensor_zeros_like(const Tensor *t) {
    Tensor *z = tensor_empty_like(t);
    tensor_fill_raw(z, 0.0);
    return z;
}

Tensor *tensor_wrap(DType dtype, Shape shape, void *data) {
    Tensor *t = tensor_alloc_header(dtype, shape);
    Storage *s = calloc(1, sizeof(Storage));
    s->data = data;
    s->nbytes = (size_t)shape_numel(shape) * dtype_size(dtype);
    s->refcount = 1;
    s->device = device_cpu();
    s->owns_data = false;
    t->storage = s;
    return t;
}

Tensor *tensor_over_storage(Storage *storage, DType dtype, Shape shape, int64_t offset) {
    if ((size_t)(offset + shape_numel(shape)) * dtype_size(dtype) > storage->nbytes)
        tensor_fatal("tensor_over_storage", "range ends beyond the storage");
    Tensor *t = tensor_alloc_header(dtype, shape);
    storage->refcount++;
    t->storage = storage;
    t->offset = offset;
    return t;
}

// ---------------------------------------------------------------- queries

int64_t shape_numel(Shape shape) {
    int64_t n = 1;
    for (int d = 0; d < shape.ndim; d++) n *= shape.dims[d];
    return n;
}

int64_t tensor_numel(const Tensor *t) {
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
    return n;
}

Shape tensor_shape(const Tensor *t) {
    Shape s = {.ndim = t->ndim};
    for (int d = 0; d < t->ndim; d++) s.dims[d] = t->shape[d];
    return s;
}

bool shape_equal(Shape a, Shape b) {
    if (a.ndim != b.ndim) return false;
    for (int d = 0; d < a.ndim; d++)
        if (a.dims[d] != b.dims[d]) return false;
    return true;
}

bool tensor_same_shape(const Tensor *a, const Tensor *b) { return shape_equal(tensor_shape(a), tensor_shape(b)); }

bool tensor_is_contiguous(const Tensor *t) {
    int64_t stride = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        if (t->shape[d] != 1 && t->stride[d] != stride) return false;
        stride *= t->shape[d];
    }
    return true;
}

void *tensor_data(const Tensor *t) { return (char *)t->storage->data + t->offset * (int64_t)dtype_size(t->dtype); }

int tensor_normalize_dim(const Tensor *t, int dim) {
    int ndim = t->ndim;
    int normalized = dim < 0 ? dim + ndim : dim;
    if (normalized < 0 || normalized >= (ndim ? ndim : 1))
        tensor_fatal("dim", "dimension %d out of range for a %d-dimensional tensor", dim, ndim);
    return normalized;
}

char *shape_string(Shape shape, char *buf, size_t size) {
    size_t used = (size_t)snprintf(buf, size, "[");
    for (int d = 0; d < shape.ndim && used < size; d++)
        used += (size_t)snprintf(buf + used, size - used, d ? ", %lld" : "%lld", (long long)shape.dims[d]);
    if (used < size) snprintf(buf + used, size - used, "]");
    return buf;
}

char *tensor_shape_string(const Tensor *t, char *buf, size_t size) { return shape_string(tensor_shape(t), buf, size); }

void tensor_set_name(Tensor *t, const char *name) { snprintf(t->name, sizeof t->name, "%s", name); }

// Storage index of the element at a row-major flat index of the logical shape.
static int64_t storage_index(const Tensor *t, int64_t flat) {
    int64_t index = t->offset;
    for (int d = t->ndim - 1; d >= 0; d--) {
        int64_t coordinate = flat % t->shape[d];
        flat /= t->shape[d];
        index += coordinate * t->stride[d];
    }
    return index;
}

double tensor_get(const Tensor *t, int64_t flat) {
    int64_t at = storage_index(t, flat);
    if (!tensor_is_cuda(t)) return dtype_load(t->storage->data, t->dtype, at);
    uint64_t element = 0;  // one element, fetched from the device
    size_t size = dtype_size(t->dtype);
    gpu_copy_to_host(&element, (const char *)t->storage->data + at * (int64_t)size, size);
    return dtype_load(&element, t->dtype, 0);
}

void tensor_set(Tensor *t, int64_t flat, double value) {
    int64_t at = storage_index(t, flat);
    if (!tensor_is_cuda(t)) {
        dtype_store(t->storage->data, t->dtype, at, value);
        return;
    }
    uint64_t element = 0;
    size_t size = dtype_size(t->dtype);
    dtype_store(&element, t->dtype, 0, value);
    gpu_copy_to_device((char *)t->storage->data + at * (int64_t)size, &element, size);
}

double tensor_item(const Tensor *t) {
    if (tensor_numel(t) != 1) tensor_fatal("item", "tensor has %lld elements, expected 1", (long long)tensor_numel(t));
    return tensor_get(t, 0);
}

// ---------------------------------------------------------------- raw layout helpers

Tensor *tensor_view_raw(Tensor *t, int ndim, const int64_t *shape, const int64_t *stride, int64_t offset) {
    Tensor *v = calloc(1, sizeof(Tensor));
    if (!v) tensor_fatal("view", "out of memory");
    v->dtype = t->dtype;
    v->ndim = ndim;
    memcpy(v->shape, shape, (size_t)ndim * sizeof(int64_t));
    memcpy(v->stride, stride, (size_t)ndim * sizeof(int64_t));
    v->offset = offset;
    v->storage = t->storage;
    t->storage->refcount++;
    v->refcount = 1;
    scope_push(v);
    return v;
}

// A host tensor with t's layout over a host copy of t's whole storage (t on the device).
static Tensor *host_mirror(const Tensor *t) {
    Tensor *mirror = tensor_alloc_header(t->dtype, tensor_shape(t));
    mirror->storage = storage_new(t->storage->nbytes, device_cpu());
    gpu_copy_to_host(mirror->storage->data, t->storage->data, t->storage->nbytes);
    memcpy(mirror->stride, t->stride, sizeof mirror->stride);
    mirror->offset = t->offset;
    return mirror;
}

static void host_copy(Tensor *dst, const Tensor *src);

// A strided (and possibly converting) copy between two device tensors by the copy kernel, for the
// dtypes it handles (f32, f16, bf16); false when it does not apply.
static bool copy_on_device(Tensor *dst, const Tensor *src) {
    if (!tensor_same_shape(dst, src) || dst->ndim > KERNEL_MAX_DIMS) return false;
    KernelCopyLayout layout = {.ndim = dst->ndim ? dst->ndim : 1};
    layout.shape[0] = 1;
    layout.dst_stride[0] = layout.src_stride[0] = 0;
    for (int d = 0; d < dst->ndim; d++) {
        layout.shape[d] = dst->shape[d];
        layout.dst_stride[d] = dst->stride[d];
        layout.src_stride[d] = src->stride[d];
    }
    if (copy_strided_launch(tensor_data(dst), dst->dtype, tensor_data(src), src->dtype, layout, device_copy_stream()) != 0) return false;
    GPU_CHECK_LAUNCH();
    return true;
}

// Copies between devices: whole contiguous runs go straight through the runtime; anything strided
// is staged through host mirrors of the storages (correct, not fast: a strided-copy kernel is the
// fast path once ops run on the device).
static void copy_across_devices(Tensor *dst, const Tensor *src, int64_t n) {
    size_t bytes = (size_t)n * dtype_size(dst->dtype);
    if (dst->dtype == src->dtype && tensor_is_contiguous(dst) && tensor_is_contiguous(src)) {
        if (tensor_is_cuda(dst) && tensor_is_cuda(src)) gpu_copy_device_to_device(tensor_data(dst), tensor_data(src), bytes);
        else if (tensor_is_cuda(dst)) gpu_copy_to_device(tensor_data(dst), tensor_data(src), bytes);
        else gpu_copy_to_host(tensor_data(dst), tensor_data(src), bytes);
        return;
    }
    if (tensor_is_cuda(dst) && tensor_is_cuda(src) && copy_on_device(dst, src)) return;
    TensorScope scope = tensor_scope_begin();
    const Tensor *source = tensor_is_cuda(src) ? host_mirror(src) : src;
    Tensor *target = tensor_is_cuda(dst) ? host_mirror(dst) : dst;
    host_copy(target, source);
    if (target != dst) gpu_copy_to_device(dst->storage->data, target->storage->data, dst->storage->nbytes);
    tensor_scope_end(scope);
}

void tensor_copy_raw(Tensor *dst, const Tensor *src) {
    int64_t n = tensor_numel(dst);
    if (n != tensor_numel(src)) tensor_fatal("copy", "element counts differ (%lld vs %lld)", (long long)n, (long long)tensor_numel(src));
    if (n == 0) return;
    if (tensor_is_cuda(dst) || tensor_is_cuda(src)) {
        copy_across_devices(dst, src, n);
        return;
    }
    host_copy(dst, src);
}

// Copies above this many bytes are split over the OpenMP threads (a training step copies tens of
// megabytes at a time: head splits and merges in attention, transposes for matmul).
#define PARALLEL_COPY_BYTES ((int64_t)1 << 20)

// Same-dtype copy between two tensors of the same shape, walked as coalesced dims: the innermost
// dim as a typed strided loop, the outer ones as an odometer; parallel over rows of the outer dims
// when large. False (nothing done) for element sizes other than 1, 2, 4, 8 or too many dims.
static bool host_copy_strided(Tensor *dst, const Tensor *src, int64_t n) {
    size_t element = dtype_size(src->dtype);
    if (element != 1 && element != 2 && element != 4 && element != 8) return false;
    int64_t shape[TENSOR_MAX_DIMS], ss[TENSOR_MAX_DIMS], ds[TENSOR_MAX_DIMS];
    int nd = 0;
    for (int d = 0; d < src->ndim; d++) {
        if (src->shape[d] == 1) continue;
        if (dst->stride[d] == 0) return false;  // a broadcast destination: keep the serial order of writes
        if (nd > 0 && ss[nd - 1] == src->stride[d] * src->shape[d] && ds[nd - 1] == dst->stride[d] * src->shape[d]) {
            shape[nd - 1] *= src->shape[d];  // merge into the previous dim
            ss[nd - 1] = src->stride[d];
            ds[nd - 1] = dst->stride[d];
            continue;
        }
        shape[nd] = src->shape[d];
        ss[nd] = src->stride[d];
        ds[nd] = dst->stride[d];
        nd++;
    }
    if (nd == 0) {
        shape[0] = 1;
        ss[0] = ds[0] = 1;
        nd = 1;
    }
    const int64_t inner = shape[nd - 1], s_in = ss[nd - 1], d_in = ds[nd - 1], rows = n / inner;
    char *const dbase = (char *)dst->storage->data + dst->offset * (int64_t)element;
    const char *const sbase = (const char *)src->storage->data + src->offset * (int64_t)element;
    int64_t pieces = (int64_t)element * n >= PARALLEL_COPY_BYTES && !omp_in_parallel() ? 8 * (int64_t)omp_get_max_threads() : 1;
    if (pieces > rows) pieces = rows;
#pragma omp parallel for schedule(static) if (pieces > 1)
    for (int64_t piece = 0; piece < pieces; piece++) {
        int64_t r0 = rows * piece / pieces, r1 = rows * (piece + 1) / pieces;
        int64_t index[TENSOR_MAX_DIMS] = {0}, s_at = 0, d_at = 0, rest = r0;
        for (int d = nd - 2; d >= 0; d--) {  // odometer position of row r0
            index[d] = rest % shape[d];
            rest /= shape[d];
            s_at += index[d] * ss[d];
            d_at += index[d] * ds[d];
        }
        for (int64_t r = r0; r < r1; r++) {
#define COPY_ROW(T)                                                                            \
    {                                                                                          \
        T *restrict dp = (T *)dbase + d_at;                                                    \
        const T *restrict sp = (const T *)sbase + s_at;                                        \
        if (s_in == 1 && d_in == 1) memcpy(dp, sp, (size_t)inner * sizeof(T));                 \
        else                                                                                   \
            for (int64_t i = 0; i < inner; i++) dp[i * d_in] = sp[i * s_in];                   \
    }
            switch (element) {
            case 1: COPY_ROW(uint8_t) break;
            case 2: COPY_ROW(uint16_t) break;
            case 4: COPY_ROW(uint32_t) break;
            default: COPY_ROW(uint64_t) break;
            }
#undef COPY_ROW
            for (int d = nd - 2; d >= 0; d--) {
                if (++index[d] < shape[d]) {
                    s_at += ss[d];
                    d_at += ds[d];
                    break;
                }
                s_at -= (shape[d] - 1) * ss[d];
                d_at -= (shape[d] - 1) * ds[d];
                index[d] = 0;
            }
        }
    }
    return true;
}

static void host_copy(Tensor *dst, const Tensor *src) {
    int64_t n = tensor_numel(dst);
    if (dst->dtype == src->dtype && tensor_is_contiguous(dst) && tensor_is_contiguous(src)) {
        size_t bytes = (size_t)n * dtype_size(dst->dtype);
        char *d = tensor_data(dst);
        const char *s = tensor_data(src);
        // Split over threads only when the two ranges do not overlap (memmove semantics otherwise).
        if ((int64_t)bytes >= PARALLEL_COPY_BYTES && (d + bytes <= s || s + bytes <= d) && !omp_in_parallel()) {
            int64_t pieces = omp_get_max_threads();
#pragma omp parallel for schedule(static)
            for (int64_t p = 0; p < pieces; p++) {
                size_t lo = bytes * (size_t)p / (size_t)pieces, hi = bytes * (size_t)(p + 1) / (size_t)pieces;
                memcpy(d + lo, s + lo, hi - lo);
            }
        } else {
            memmove(d, s, bytes);
        }
        return;
    }
    // Same dtype and shape, storages that do not alias: the typed strided path.
    if (dst->dtype == src->dtype && tensor_same_shape(dst, src) && dst->storage != src->storage &&
        host_copy_strided(dst, src, n))
        return;
    // Generic path: odometer over the logical shape of src, both tensors walked by their strides.
    int64_t index[TENSOR_MAX_DIMS] = {0};
    int64_t src_at = src->offset, dst_at = dst->offset;
    size_t element = dtype_size(src->dtype);
    bool same_shape = tensor_same_shape(dst, src);
    for (int64_t i = 0; i < n; i++) {
        int64_t d_index = same_shape ? dst_at : storage_index(dst, i);
        if (dst->dtype == src->dtype)  // same type: move the bytes (exact for i64 beyond 2^53)
            memcpy((char *)dst->storage->data + d_index * (int64_t)element, (const char *)src->storage->data + src_at * (int64_t)element,
                   element);
        else
            dtype_store(dst->storage->data, dst->dtype, d_index, dtype_load(src->storage->data, src->dtype, src_at));
        for (int d = src->ndim - 1; d >= 0; d--) {
            if (++index[d] < src->shape[d]) {
                src_at += src->stride[d];
                if (same_shape) dst_at += dst->stride[d];
                break;
            }
            src_at -= (src->shape[d] - 1) * src->stride[d];
            if (same_shape) dst_at -= (dst->shape[d] - 1) * dst->stride[d];
            index[d] = 0;
        }
    }
}

Tensor *tensor_contiguous_raw(Tensor *t) {
    if (tensor_is_contiguous(t)) {
        Tensor *v = tensor_view_raw(t, t->ndim, t->shape, t->stride, t->offset);
        int64_t stride = 1;  // normalise strides of size-1 dims
        for (int d = v->ndim - 1; d >= 0; d--) {
            v->stride[d] = stride;
            stride *= v->shape[d];
        }
        return v;
    }
    Tensor *c = tensor_empty_like(t);
    tensor_copy_raw(c, t);
    return c;
}

Tensor *tensor_to_device_raw(Tensor *t, Device device) {
    Tensor *out = tensor_empty_on(t->dtype, tensor_shape(t), device);
    tensor_copy_raw(out, t);
    return out;
}

void tensor_fill_raw(Tensor *t, double value) {
    int64_t n = tensor_numel(t);
    if (tensor_is_cuda(t) && tensor_is_contiguous(t) && fill_launch(tensor_data(t), t->dtype, n, value, device_copy_stream()) == 0) {
        GPU_CHECK_LAUNCH();
        return;
    }
    if (tensor_is_cuda(t)) {  // other dtypes and layouts: fill on the host, then copy over
        TensorScope scope = tensor_scope_begin();
        Tensor *host = tensor_empty_on(t->dtype, tensor_shape(t), device_cpu());
        tensor_fill_raw(host, value);
        tensor_copy_raw(t, host);
        tensor_scope_end(scope);
        return;
    }
    if (tensor_is_contiguous(t) && t->dtype == DTYPE_F32) {
        float *p = tensor_f32(t), v = (float)value;
        // Large fills (gradient buffers, tens of megabytes in a training step) on all threads.
#pragma omp parallel for simd schedule(static) if (n * (int64_t)sizeof(float) >= PARALLEL_COPY_BYTES && !omp_in_parallel())
        for (int64_t i = 0; i < n; i++) p[i] = v;
    } else {
        for (int64_t i = 0; i < n; i++) tensor_set(t, i, value);
    }
}

void tensor_print(const Tensor *t, int max_elements) {
    char buf[128];
    printf("%s%s%s [%s]", t->name, t->name[0] ? " " : "", dtype_name(t->dtype), tensor_shape_string(t, buf, sizeof buf) + 0);
    int64_t n = tensor_numel(t);
    printf(" = {");
    for (int64_t i = 0; i < n && i < max_elements; i++) printf(i ? ", %.6g" : "%.6g", tensor_get(t, i));
    printf(n > max_elements ? ", ...}\n" : "}\n");
}
