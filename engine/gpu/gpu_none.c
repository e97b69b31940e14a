// engine/gpu/gpu.h for the CPU-only program: there is no device. gpu_device_count() is 0, gpu_select
// explains why it fails, and every entry point that would need a device stops with one line. This
// is the honest CPU build (--device auto picks the CPU, --device cuda says it cannot), not a stub
// that pretends to work.
#include "engine/gpu/gpu.h"

#include <stdio.h>

// Most parameters go unused here by design.
#pragma GCC diagnostic ignored "-Wunused-parameter"

#define NO_DEVICE_MESSAGE "this build has no CUDA device support; use --device cpu"

static _Noreturn void no_device(const char *call) { gpu_fatal(call, NO_DEVICE_MESSAGE); }

int gpu_device_count(void) { return 0; }

int gpu_select(int index, char *error, size_t error_size) {
    snprintf(error, error_size, "no CUDA device %d: " NO_DEVICE_MESSAGE, index);
    return -1;
}

int gpu_current_device(void) { return -1; }
const char *gpu_device_name(void) { return "none (CPU-only build)"; }
const char *gpu_backend_name(void) { return "none"; }
int gpu_use_vendor_libraries(void) { return 0; }

// Nothing can have been allocated, so the bookkeeping calls are true as they are.
void *gpu_alloc_at(size_t bytes, const char *file, int line) {
    if (bytes) no_device("gpu_alloc");
    return NULL;
}
void gpu_free(void *device_pointer) {
    if (device_pointer) no_device("gpu_free");
}
void gpu_cache_release_all(void) {}
GpuMemoryStats gpu_memory_stats(void) { return (GpuMemoryStats){0}; }
void gpu_memory_reset_peak(void) {}
void gpu_set_memory_limit(size_t bytes) {}

void gpu_memset_async(void *p, int byte, size_t bytes, GpuStream *s) { no_device("gpu_memset_async"); }
void gpu_copy_to_device(void *d, const void *s, size_t n) { no_device("gpu_copy_to_device"); }
void gpu_copy_to_host(void *d, const void *s, size_t n) { no_device("gpu_copy_to_host"); }
void gpu_copy_device_to_device(void *d, const void *s, size_t n) { no_device("gpu_copy_device_to_device"); }
void gpu_copy_to_device_async(void *d, const void *s, size_t n, GpuStream *stream) {
    no_device("gpu_copy_to_device_async");
}
void gpu_copy_to_host_async(void *d, const void *s, size_t n, GpuStream *stream) {
    no_device("gpu_copy_to_host_async");
}
void gpu_copy_device_to_device_async(void *d, const void *s, size_t n, GpuStream *stream) {
    no_device("gpu_copy_device_to_device_async");
}
void *gpu_host_alloc(size_t bytes) { no_device("gpu_host_alloc"); }
void gpu_host_free(void *host_pointer) {
    if (host_pointer) no_device("gpu_host_free");
}

GpuStream *gpu_stream_default(void) { no_device("gpu_stream_default"); }
GpuStream *gpu_stream_create(void) { no_device("gpu_stream_create"); }
void gpu_stream_destroy(GpuStream *s) { no_device("gpu_stream_destroy"); }
void gpu_stream_synchronize(GpuStream *s) { no_device("gpu_stream_synchronize"); }
void gpu_stream_wait_event(GpuStream *s, GpuEvent *e) { no_device("gpu_stream_wait_event"); }
struct CUstream_st *gpu_stream_handle(GpuStream *s) {
    no_device("gpu_stream_handle");
}
GpuEvent *gpu_event_create(void) { no_device("gpu_event_create"); }
void gpu_event_destroy(GpuEvent *e) { no_device("gpu_event_destroy"); }
void gpu_event_record(GpuEvent *e, GpuStream *s) { no_device("gpu_event_record"); }
void gpu_event_synchronize(GpuEvent *e) { no_device("gpu_event_synchronize"); }
float gpu_event_elapsed_ms(GpuEvent *a, GpuEvent *b) { no_device("gpu_event_elapsed_ms"); }
void gpu_synchronize(void) { no_device("gpu_synchronize"); }

void gpu_check_status(int cuda_status, const char *call, const char *file, int line) {
    if (cuda_status != 0)
        gpu_fatal("CUDA call failed", "%s:%d: %s: code %d (%s)", file, line, call, cuda_status, NO_DEVICE_MESSAGE);
}
void gpu_check_last_launch(const char *file, int line) {}  // nothing can have launched

void gpu_sgemm(GpuStream *s, int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
               const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    no_device("gpu_sgemm");
}
void gpu_sgemm_strided_batched(GpuStream *s, int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                               const float *A, int64_t lda, int64_t sa, const float *B, int64_t ldb, int64_t sb,
                               float beta, float *C, int64_t ldc, int64_t sc, int64_t batch) {
    no_device("gpu_sgemm_strided_batched");
}
void gpu_conv2d_forward(GpuStream *s, const ConvGeometry *g, const float *x, const float *w, const float *bias,
                        float *y) {
    no_device("gpu_conv2d_forward");
}
void gpu_conv2d_backward_data(GpuStream *s, const ConvGeometry *g, const float *w, const float *dy, float *dx) {
    no_device("gpu_conv2d_backward_data");
}
void gpu_conv2d_backward_filter(GpuStream *s, const ConvGeometry *g, const float *x, const float *dy, float *dw) {
    no_device("gpu_conv2d_backward_filter");
}
void gpu_conv2d_backward_bias(GpuStream *s, const ConvGeometry *g, const float *dy, float *dbias) {
    no_device("gpu_conv2d_backward_bias");
}
