// The emulated CUDA device: engine/gpu/gpu.h on the CPU, linked with kernels/emu into the tests, so
// the whole CUDA backend path — allocation, copies, streams, events, kernel launches (run by the
// emulator), cuBLAS/cuDNN calls — runs without a GPU.
//
// - Device memory is host memory (64-byte aligned) from the same caching allocator as on a GPU.
//   Every gpu_alloc fills its block with 0xFF bytes, a NaN in f32/f64/f16/bf16 and -1 in integers,
//   so a kernel that reads memory nobody wrote shows NaN instead of a plausible stale value.
// - Copies are memcpy; streams and events are synchronous (every call has finished when it
//   returns); event times are host-clock times of the emulation and say nothing about a GPU.
// - The library calls are "emulated twins" computed by the CPU kernels: gpu_sgemm by sgemm
//   (engine/cpu/gemm.h), the conv wrappers by cpu_conv2d_* (engine/cpu/conv.h).
// - Launch errors come from the emulator (cuemu_get_last_error), as cudaGetLastError on a GPU.
#include "engine/gpu/gpu.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/cpu/conv.h"
#include "engine/cpu/gemm.h"
#include "engine/gpu/gpu_allocator.h"
// Last: it defines kernel-side macros (min, max, rsqrtf, ...) that no code here uses.
#include "kernels/emu/cuemu.h"

struct GpuStream {
    int is_default;
};

struct GpuEvent {
    int recorded;
    double time_ms;  // host clock at the record
};

static const char DEVICE_NAME[] = "emulated CUDA device (CPU)";
enum { POISON_BYTE = 0xFF };

// Block sizes are multiples of 128, as aligned_alloc wants (a multiple of the alignment).
static void *host_heap_alloc(size_t bytes) { return aligned_alloc(64, bytes); }

static GpuCachingAllocator allocator = GPU_CACHING_ALLOCATOR_INIT(host_heap_alloc, free, DEVICE_NAME);
static GpuStream default_stream = {.is_default = 1};

// ---------------------------------------------------------------- devices

int gpu_device_count(void) { return 1; }

int gpu_select(int index, char *error, size_t error_size) {
    if (index == 0) return 0;
    snprintf(error, error_size, "no CUDA device %d: the emulated runtime has one device, 0 (%s)", index, DEVICE_NAME);
    return -1;
}

int gpu_current_device(void) { return 0; }
const char *gpu_device_name(void) { return DEVICE_NAME; }
const char *gpu_backend_name(void) { return "emulated"; }
int gpu_use_vendor_libraries(void) { return 0; }

// ---------------------------------------------------------------- memory

void *gpu_alloc_at(size_t bytes, const char *file, int line) {
    size_t block_bytes;
    void *pointer = gpu_caching_alloc(&allocator, bytes, &block_bytes, file, line);
    if (pointer) memset(pointer, POISON_BYTE, block_bytes);
    return pointer;
}

void gpu_free(void *device_pointer) {
    if (device_pointer && !gpu_caching_free(&allocator, device_pointer))
        gpu_fatal("gpu_free", "%p is not a block from gpu_alloc on %s", device_pointer, DEVICE_NAME);
}

void gpu_cache_release_all(void) { gpu_caching_release_all(&allocator); }
GpuMemoryStats gpu_memory_stats(void) { return gpu_caching_stats(&allocator); }
void gpu_memory_reset_peak(void) { gpu_caching_reset_peak(&allocator); }
void gpu_set_memory_limit(size_t bytes) { gpu_caching_set_limit(&allocator, bytes); }

void gpu_memset_async(void *device_pointer, int byte, size_t bytes, GpuStream *stream) {
    (void)stream;
    if (bytes) memset(device_pointer, byte, bytes);
}

// memcpy with NULL and 0 bytes is undefined; a zero-byte copy is a valid CUDA call.
static void copy_bytes(void *destination, const void *source, size_t bytes) {
    if (bytes) memcpy(destination, source, bytes);
}

void gpu_copy_to_device(void *dst, const void *src, size_t bytes) { copy_bytes(dst, src, bytes); }
void gpu_copy_to_host(void *dst, const void *src, size_t bytes) { copy_bytes(dst, src, bytes); }
void gpu_copy_device_to_device(void *dst, const void *src, size_t bytes) { copy_bytes(dst, src, bytes); }
void gpu_copy_to_device_async(void *dst, const void *src, size_t bytes, GpuStream *stream) {
    (void)stream;
    copy_bytes(dst, src, bytes);
}
void gpu_copy_to_host_async(void *dst, const void *src, size_t bytes, GpuStream *stream) {
    (void)stream;
    copy_bytes(dst, src, bytes);
}
void gpu_copy_device_to_device_async(void *dst, const void *src, size_t bytes, GpuStream *stream) {
    (void)stream;
    copy_bytes(dst, src, bytes);
}

void *gpu_host_alloc(size_t bytes) {
    if (!bytes) return NULL;
    void *pointer = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!pointer) {
        char size[32];
        gpu_fatal("gpu_host_alloc", "out of host memory allocating %s of pinned memory",
                  gpu_format_bytes(bytes, size, sizeof size));
    }
    return pointer;
}

void gpu_host_free(void *host_pointer) { free(host_pointer); }

// ---------------------------------------------------------------- streams and events

GpuStream *gpu_stream_default(void) { return &default_stream; }

GpuStream *gpu_stream_create(void) {
    GpuStream *stream = calloc(1, sizeof *stream);
    if (!stream) gpu_fatal("gpu_stream_create", "out of host memory");
    return stream;
}

void gpu_stream_destroy(GpuStream *stream) {
    if (stream == &default_stream) gpu_fatal("gpu_stream_destroy", "the default stream cannot be destroyed");
    free(stream);
}

void gpu_stream_synchronize(GpuStream *stream) { (void)stream; }
// Waiting for (or on) an event that was never recorded returns at once, as in CUDA.
void gpu_stream_wait_event(GpuStream *stream, GpuEvent *event) { (void)stream, (void)event; }
struct CUstream_st *gpu_stream_handle(GpuStream *stream) {
    (void)stream;
    return NULL;  // the emulator runs every launch synchronously and ignores the stream
}

GpuEvent *gpu_event_create(void) {
    GpuEvent *event = calloc(1, sizeof *event);
    if (!event) gpu_fatal("gpu_event_create", "out of host memory");
    return event;
}

void gpu_event_destroy(GpuEvent *event) { free(event); }

void gpu_event_record(GpuEvent *event, GpuStream *stream) {
    (void)stream;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    event->time_ms = (double)now.tv_sec * 1e3 + (double)now.tv_nsec * 1e-6;
    event->recorded = 1;
}

void gpu_event_synchronize(GpuEvent *event) { (void)event; }

float gpu_event_elapsed_ms(GpuEvent *start, GpuEvent *end) {
    if (!start->recorded || !end->recorded)
        gpu_fatal("gpu_event_elapsed_ms", "both events must be recorded (as cudaEventElapsedTime requires)");
    return (float)(end->time_ms - start->time_ms);
}

void gpu_synchronize(void) {}

// ---------------------------------------------------------------- errors

// The cudaError_t numbers the emulator can produce, named as cudaGetErrorName/String would.
static const char *cuda_error_description(int status) {
    switch (status) {
        case CUEMU_ERROR_INVALID_VALUE:
            return "invalid argument (cudaErrorInvalidValue)";
        case CUEMU_ERROR_INVALID_CONFIGURATION:
            return "invalid configuration argument (cudaErrorInvalidConfiguration)";
        default:
            return "unknown CUDA error";
    }
}

void gpu_check_status(int cuda_status, const char *call, const char *file, int line) {
    if (cuda_status != 0)
        gpu_fatal("CUDA call failed", "%s:%d: %s: %s, code %d", file, line, call, cuda_error_description(cuda_status),
                  cuda_status);
}

void gpu_check_last_launch(const char *file, int line) {
    int status = (int)cuemu_get_last_error();
    if (status != 0)
        gpu_fatal("CUDA kernel launch failed", "%s (checked at %s:%d): %s", cuemu_last_error_message(), file, line,
                  cuda_error_description(status));
}

// ---------------------------------------------------------------- library calls (emulated twins)

void gpu_sgemm(GpuStream *stream, int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
               const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    (void)stream;
    sgemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void gpu_sgemm_strided_batched(GpuStream *stream, int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                               float alpha, const float *A, int64_t lda, int64_t stride_a, const float *B, int64_t ldb,
                               int64_t stride_b, float beta, float *C, int64_t ldc, int64_t stride_c, int64_t batch) {
    (void)stream;
    sgemm_batched(trans_a, trans_b, M, N, K, alpha, A, lda, stride_a, B, ldb, stride_b, beta, C, ldc, stride_c, batch);
}

void gpu_conv2d_forward(GpuStream *stream, const ConvGeometry *g, const float *x, const float *w, const float *bias,
                        float *y) {
    (void)stream;
    cpu_conv2d_forward_f32(g, x, w, bias, y);
}

void gpu_conv2d_backward_data(GpuStream *stream, const ConvGeometry *g, const float *w, const float *dy, float *dx) {
    (void)stream;
    cpu_conv2d_backward_f32(g, NULL, w, dy, dx, NULL, NULL);  // x is only read for dw
}

void gpu_conv2d_backward_filter(GpuStream *stream, const ConvGeometry *g, const float *x, const float *dy, float *dw) {
    (void)stream;
    // w is only read for dx; dw stands in for it because the CPU code offsets w per group before it
    // looks at dx, and offsetting NULL is undefined behaviour (clang's -fsanitize=pointer-overflow).
    cpu_conv2d_backward_f32(g, x, dw, dy, NULL, dw, NULL);
}

void gpu_conv2d_backward_bias(GpuStream *stream, const ConvGeometry *g, const float *dy, float *dbias) {
    (void)stream;
    // Only dbias is wanted, so neither x nor w is read (nor offset: the early return comes first).
    cpu_conv2d_backward_f32(g, NULL, NULL, dy, NULL, NULL, dbias);
}
