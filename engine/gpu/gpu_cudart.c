// engine/gpu/gpu.h on a real GPU: cudart for devices, memory, streams and events; cuBLAS for GEMM;
// cuDNN for convolutions. Host code only (compiled by the C compiler with the CUDA include dir;
// the kernels live in kernels/*.cu), linked into the CUDA program with -lcudart -lcublas -lcudnn.
//
// No machine of this project has a GPU: this file is compiled and linked in CI (make
// gpu-link-check, which also runs it: without a driver it must report 0 devices), but everything
// past gpu_device_count() has only been checked against the CUDA documentation, not run. The same
// calls are exercised through the emulated twins (gpu_emulated.c) in tests/test_gpu_runtime.c.
// Comments marked "GPU-unverified" name behaviour that only a GPU run can confirm.
//
// Host threads: cudaSetDevice is per host thread, so every entry point first makes the selected
// device current on the calling thread (the data loader calls gpu_host_alloc from its own thread).
// The library calls (cuBLAS/cuDNN handles, the conv plan cache) are for one host thread at a time.
#include "engine/gpu/gpu.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/gpu/gpu_allocator.h"

#define CUBLAS_CHECK(call) cublas_check((call), #call, __FILE__, __LINE__)
#define CUDNN_CHECK(call) cudnn_check((call), #call, __FILE__, __LINE__)

enum { MAX_DEVICES = 16 };

struct GpuStream {
    cudaStream_t handle;  // 0 = the legacy default stream
    void *workspace;      // cuDNN workspace for work on this stream (from gpu_alloc)
    size_t workspace_bytes;
};

struct GpuEvent {
    cudaEvent_t handle;
};

typedef struct {
    int initialised;
    char name[320];  // "<product name> (device N, sm_XY)"
    GpuCachingAllocator allocator;
    GpuStream default_stream;
    cublasHandle_t cublas;  // created on first use
    cudnnHandle_t cudnn;    // created on first use
} DeviceState;

static DeviceState devices[MAX_DEVICES];
static int selected_device = -1;                      // gpu_select's choice, for the whole process
static _Thread_local int thread_current_device = -1;  // what this host thread last told cudaSetDevice

// ---------------------------------------------------------------- errors

void gpu_check_status(int cuda_status, const char *call, const char *file, int line) {
    if (cuda_status == cudaSuccess) return;
    cudaError_t status = (cudaError_t)cuda_status;
    gpu_fatal("CUDA call failed", "%s:%d: %s: %s (%s)", file, line, call, cudaGetErrorString(status),
              cudaGetErrorName(status));
}

void gpu_check_last_launch(const char *file, int line) {
    cudaError_t status = cudaGetLastError();
    if (status != cudaSuccess)
        gpu_fatal("CUDA kernel launch failed", "checked at %s:%d: %s (%s)", file, line, cudaGetErrorString(status),
                  cudaGetErrorName(status));
}

static void cublas_check(cublasStatus_t status, const char *call, const char *file, int line) {
    if (status != CUBLAS_STATUS_SUCCESS)
        gpu_fatal("cuBLAS call failed", "%s:%d: %s: %s (%s)", file, line, call, cublasGetStatusString(status),
                  cublasGetStatusName(status));
}

static void cudnn_check(cudnnStatus_t status, const char *call, const char *file, int line) {
    if (status != CUDNN_STATUS_SUCCESS)
        gpu_fatal("cuDNN call failed", "%s:%d: %s: %s (status %d)", file, line, call, cudnnGetErrorString(status),
                  (int)status);
}

// cuBLAS and cuDNN take int sizes.
static int to_int(int64_t value, const char *what, const char *call) {
    if (value < 0 || value > INT_MAX)
        gpu_fatal(call, "%s = %lld is outside the 32-bit range the CUDA library takes", what, (long long)value);
    return (int)value;
}

// ---------------------------------------------------------------- devices

// The device memory behind the caching allocator. Out of memory returns NULL (the allocator then
// releases its cache and retries, or reports); anything else stops here.
static void *cuda_device_alloc(size_t bytes) {
    void *pointer = NULL;
    cudaError_t status = cudaMalloc(&pointer, bytes);
    if (status == cudaErrorMemoryAllocation) {  // GPU-unverified: the retry after releasing the cache
        (void)cudaGetLastError();                // clear it, so the next launch check does not report it
        return NULL;
    }
    gpu_check_status(status, "cudaMalloc(&pointer, bytes)", __FILE__, __LINE__);
    return pointer;
}

// Cached blocks were freed in stream order, so kernels queued earlier may still use them: wait for
// the device before giving one back (the first call waits; the rest find it idle).
static void cuda_device_free(void *pointer) {
    GPU_CHECK(cudaDeviceSynchronize());
    GPU_CHECK(cudaFree(pointer));
}

int gpu_device_count(void) {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess) {  // no driver or no device: the CPU is what there is
        (void)cudaGetLastError();
        return 0;
    }
    return count;
}

int gpu_select(int index, char *error, size_t error_size) {
    int count = 0;
    cudaError_t status = cudaGetDeviceCount(&count);
    if (status != cudaSuccess) {
        (void)cudaGetLastError();
        snprintf(error, error_size, "no CUDA device %d: %s (%s)", index, cudaGetErrorString(status),
                 cudaGetErrorName(status));
        return -1;
    }
    if (index < 0 || index >= count || index >= MAX_DEVICES) {
        snprintf(error, error_size, "no CUDA device %d: this machine has %d (numbered from 0)%s", index, count,
                 index >= MAX_DEVICES ? ", and this runtime handles at most 16" : "");
        return -1;
    }
    status = cudaSetDevice(index);
    if (status != cudaSuccess) {
        (void)cudaGetLastError();
        snprintf(error, error_size, "cannot use CUDA device %d: %s (%s)", index, cudaGetErrorString(status),
                 cudaGetErrorName(status));
        return -1;
    }
    DeviceState *d = &devices[index];
    if (!d->initialised) {
        struct cudaDeviceProp properties;
        GPU_CHECK(cudaGetDeviceProperties(&properties, index));
        snprintf(d->name, sizeof d->name, "%s (device %d, sm_%d%d)", properties.name, index, properties.major,
                 properties.minor);
        d->allocator.device_alloc = cuda_device_alloc;
        d->allocator.device_free = cuda_device_free;
        d->allocator.device_name = d->name;
        pthread_mutex_init(&d->allocator.lock, NULL);
        d->default_stream.handle = 0;
        d->initialised = 1;
    }
    selected_device = index;
    thread_current_device = index;
    return 0;
}

// The selected device, made current on this host thread; selects device 0 on first use.
static DeviceState *device(void) {
    if (selected_device < 0) {
        char error[320];
        if (gpu_select(0, error, sizeof error) != 0) gpu_fatal("CUDA", "%s", error);
    }
    if (thread_current_device != selected_device) {
        GPU_CHECK(cudaSetDevice(selected_device));
        thread_current_device = selected_device;
    }
    return &devices[selected_device];
}

int gpu_current_device(void) { return selected_device; }

const char *gpu_device_name(void) {
    if (selected_device < 0 && gpu_device_count() == 0) return "no CUDA device";
    return device()->name;
}

const char *gpu_backend_name(void) { return "cuda"; }

int gpu_use_vendor_libraries(void) {
    const char *setting = getenv("TAILOR_GPU_LIBRARIES");
    return !(setting && strcmp(setting, "0") == 0);
}

static cublasHandle_t cublas_handle(DeviceState *d) {
    if (!d->cublas) {
        CUBLAS_CHECK(cublasCreate(&d->cublas));
        // Plain FP32 (no TF32 tensor cores), so results match the CPU's within f32 rounding.
        CUBLAS_CHECK(cublasSetMathMode(d->cublas, CUBLAS_DEFAULT_MATH));
    }
    return d->cublas;
}

static cudnnHandle_t cudnn_handle(DeviceState *d) {
    if (!d->cudnn) CUDNN_CHECK(cudnnCreate(&d->cudnn));
    return d->cudnn;
}

// ---------------------------------------------------------------- memory

void *gpu_alloc_at(size_t bytes, const char *file, int line) {
    return gpu_caching_alloc(&device()->allocator, bytes, NULL, file, line);
}

void gpu_free(void *device_pointer) {
    if (!device_pointer) return;
    if (gpu_caching_free(&device()->allocator, device_pointer)) return;
    for (int i = 0; i < MAX_DEVICES; i++)  // a block of another device (gpu_select switched since)
        if (devices[i].initialised && gpu_caching_free(&devices[i].allocator, device_pointer)) return;
    gpu_fatal("gpu_free", "%p is not a block from gpu_alloc", device_pointer);
}

void gpu_cache_release_all(void) { gpu_caching_release_all(&device()->allocator); }
GpuMemoryStats gpu_memory_stats(void) { return gpu_caching_stats(&device()->allocator); }
void gpu_memory_reset_peak(void) { gpu_caching_reset_peak(&device()->allocator); }
void gpu_set_memory_limit(size_t bytes) { gpu_caching_set_limit(&device()->allocator, bytes); }

static cudaStream_t native(GpuStream *stream) { return stream ? stream->handle : 0; }

void gpu_memset_async(void *device_pointer, int byte, size_t bytes, GpuStream *stream) {
    device();
    GPU_CHECK(cudaMemsetAsync(device_pointer, byte, bytes, native(stream)));
}

void gpu_copy_to_device(void *dst, const void *src, size_t bytes) {
    device();
    GPU_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}

void gpu_copy_to_host(void *dst, const void *src, size_t bytes) {
    device();
    GPU_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}

// cudaMemcpy device-to-device returns before the copy is done; the contract says it has arrived.
void gpu_copy_device_to_device(void *dst, const void *src, size_t bytes) {
    device();
    GPU_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice));
    GPU_CHECK(cudaStreamSynchronize(0));
}

void gpu_copy_to_device_async(void *dst, const void *src, size_t bytes, GpuStream *stream) {
    device();
    GPU_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, native(stream)));
}

void gpu_copy_to_host_async(void *dst, const void *src, size_t bytes, GpuStream *stream) {
    device();
    GPU_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, native(stream)));
}

void gpu_copy_device_to_device_async(void *dst, const void *src, size_t bytes, GpuStream *stream) {
    device();
    GPU_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, native(stream)));
}

void *gpu_host_alloc(size_t bytes) {
    if (!bytes) return NULL;
    device();
    void *pointer = NULL;
    cudaError_t status = cudaMallocHost(&pointer, bytes);
    if (status != cudaSuccess) {
        char size[32];
        gpu_fatal("gpu_host_alloc", "cudaMallocHost of %s of pinned host memory failed: %s (%s)",
                  gpu_format_bytes(bytes, size, sizeof size), cudaGetErrorString(status), cudaGetErrorName(status));
    }
    return pointer;
}

void gpu_host_free(void *host_pointer) {
    if (host_pointer) GPU_CHECK(cudaFreeHost(host_pointer));
}

// ---------------------------------------------------------------- streams and events

GpuStream *gpu_stream_default(void) { return &device()->default_stream; }

GpuStream *gpu_stream_create(void) {
    device();
    GpuStream *stream = calloc(1, sizeof *stream);
    if (!stream) gpu_fatal("gpu_stream_create", "out of host memory");
    // A blocking stream (not cudaStreamNonBlocking): it waits for, and is waited for by, the legacy
    // default stream, which the reuse rule of gpu_free relies on (engine/gpu/gpu.h).
    GPU_CHECK(cudaStreamCreate(&stream->handle));
    return stream;
}

void gpu_stream_destroy(GpuStream *stream) {
    if (!stream->handle) gpu_fatal("gpu_stream_destroy", "the default stream cannot be destroyed");
    device();
    GPU_CHECK(cudaStreamSynchronize(stream->handle));
    gpu_free(stream->workspace);
    GPU_CHECK(cudaStreamDestroy(stream->handle));
    free(stream);
}

void gpu_stream_synchronize(GpuStream *stream) {
    device();
    GPU_CHECK(cudaStreamSynchronize(native(stream)));
}

void gpu_stream_wait_event(GpuStream *stream, GpuEvent *event) {
    device();
    GPU_CHECK(cudaStreamWaitEvent(native(stream), event->handle, 0));
}

struct CUstream_st *gpu_stream_handle(GpuStream *stream) {
    return native(stream);
}

GpuEvent *gpu_event_create(void) {
    device();
    GpuEvent *event = calloc(1, sizeof *event);
    if (!event) gpu_fatal("gpu_event_create", "out of host memory");
    GPU_CHECK(cudaEventCreate(&event->handle));
    return event;
}

void gpu_event_destroy(GpuEvent *event) {
    if (!event) return;
    GPU_CHECK(cudaEventDestroy(event->handle));
    free(event);
}

void gpu_event_record(GpuEvent *event, GpuStream *stream) {
    device();
    GPU_CHECK(cudaEventRecord(event->handle, native(stream)));
}

void gpu_event_synchronize(GpuEvent *event) { GPU_CHECK(cudaEventSynchronize(event->handle)); }

float gpu_event_elapsed_ms(GpuEvent *start, GpuEvent *end) {
    float milliseconds = 0;
    GPU_CHECK(cudaEventElapsedTime(&milliseconds, start->handle, end->handle));
    return milliseconds;
}

void gpu_synchronize(void) {
    device();
    GPU_CHECK(cudaDeviceSynchronize());
}

// ---------------------------------------------------------------- cuBLAS

// cuBLAS wants ld >= max(1, rows); a caller with K = 0 may pass 0.
static int leading_dimension(int64_t ld, const char *call) {
    return ld < 1 ? 1 : to_int(ld, "leading dimension", call);
}

// Row-major C = op(A) op(B) is, read as column-major, C^T = op(B)^T op(A)^T. A row-major buffer read
// column-major is its transpose, so: swap the operands and M with N, keep each operand's op flag.
// GPU-unverified beyond gpu-link-check's one 2x3 @ 3x2 product (run when a GPU is present); the
// transposes and leading dimensions follow the same rule as the emulated twin the tests check.
void gpu_sgemm(GpuStream *stream, int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
               const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    const char *call = "gpu_sgemm";
    if (M == 0 || N == 0) return;
    cublasHandle_t handle = cublas_handle(device());
    CUBLAS_CHECK(cublasSetStream(handle, native(stream)));
    CUBLAS_CHECK(cublasSgemm(handle, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                             to_int(N, "N", call), to_int(M, "M", call), to_int(K, "K", call), &alpha, B,
                             leading_dimension(ldb, call), A, leading_dimension(lda, call), &beta, C,
                             leading_dimension(ldc, call)));
}

void gpu_sgemm_strided_batched(GpuStream *stream, int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                               float alpha, const float *A, int64_t lda, int64_t stride_a, const float *B, int64_t ldb,
                               int64_t stride_b, float beta, float *C, int64_t ldc, int64_t stride_c, int64_t batch) {
    const char *call = "gpu_sgemm_strided_batched";
    if (M == 0 || N == 0 || batch == 0) return;
    cublasHandle_t handle = cublas_handle(device());
    CUBLAS_CHECK(cublasSetStream(handle, native(stream)));
    CUBLAS_CHECK(
        cublasSgemmStridedBatched(handle, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                                  to_int(N, "N", call), to_int(M, "M", call), to_int(K, "K", call), &alpha, B,
                                  leading_dimension(ldb, call), stride_b, A, leading_dimension(lda, call), stride_a,
                                  &beta, C, leading_dimension(ldc, call), stride_c, to_int(batch, "batch", call)));
}

// ---------------------------------------------------------------- cuDNN
// One plan per (device, geometry): the descriptors, and per direction the algorithm and its
// workspace size, found on first use with cudnnFind* (which times the candidates on the device).
// The legacy convolution API is deprecated in cuDNN 9 but still shipped and supported.
// GPU-unverified: everything below ran only as its emulated twin; the descriptor layout (NCHW,
// cross-correlation, groups, pad/stride/dilation) mirrors engine/cpu/conv.h, and a shape mismatch
// with the geometry stops at plan creation rather than computing garbage.

typedef struct ConvPlan {
    int device;
    ConvGeometry geometry;  // sixteen int64 fields, no padding: compared with memcmp
    cudnnTensorDescriptor_t x_desc, y_desc, bias_desc;
    cudnnFilterDescriptor_t w_desc;
    cudnnConvolutionDescriptor_t conv_desc;
    int have_forward, have_backward_data, have_backward_filter;
    cudnnConvolutionFwdAlgo_t forward_algo;
    cudnnConvolutionBwdDataAlgo_t backward_data_algo;
    cudnnConvolutionBwdFilterAlgo_t backward_filter_algo;
    size_t forward_workspace, backward_data_workspace, backward_filter_workspace;
    struct ConvPlan *next;
} ConvPlan;

static ConvPlan *conv_plans;

static ConvPlan *conv_plan(int device_index, const ConvGeometry *g) {
    for (ConvPlan *p = conv_plans; p; p = p->next)
        if (p->device == device_index && memcmp(&p->geometry, g, sizeof *g) == 0) return p;
    const char *call = "gpu_conv2d";
    ConvPlan *p = calloc(1, sizeof *p);
    if (!p) gpu_fatal(call, "out of host memory");
    p->device = device_index;
    p->geometry = *g;
    int batch = to_int(g->batch, "batch", call), c_in = to_int(g->c_in, "Cin", call);
    int c_out = to_int(g->c_out, "Cout", call), groups = to_int(g->groups, "groups", call);
    int out_h = to_int(g->out_h, "OH", call), out_w = to_int(g->out_w, "OW", call);
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&p->x_desc));
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(p->x_desc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, batch, c_in,
                                           to_int(g->h, "H", call), to_int(g->w, "W", call)));
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&p->y_desc));
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(p->y_desc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, batch, c_out, out_h, out_w));
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&p->bias_desc));
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(p->bias_desc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, c_out, 1, 1));
    CUDNN_CHECK(cudnnCreateFilterDescriptor(&p->w_desc));
    CUDNN_CHECK(cudnnSetFilter4dDescriptor(p->w_desc, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, c_out, c_in / groups,
                                           to_int(g->kh, "KH", call), to_int(g->kw, "KW", call)));
    CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&p->conv_desc));
    CUDNN_CHECK(cudnnSetConvolution2dDescriptor(
        p->conv_desc, to_int(g->pad_h, "pad_h", call), to_int(g->pad_w, "pad_w", call),
        to_int(g->stride_h, "stride_h", call), to_int(g->stride_w, "stride_w", call),
        to_int(g->dilation_h, "dilation_h", call), to_int(g->dilation_w, "dilation_w", call), CUDNN_CROSS_CORRELATION,
        CUDNN_DATA_FLOAT));  // what deep learning calls convolution
    CUDNN_CHECK(cudnnSetConvolutionGroupCount(p->conv_desc, groups));
    // FMA math: plain FP32, no TF32 tensor cores, so results match the CPU's within f32 rounding.
    CUDNN_CHECK(cudnnSetConvolutionMathType(p->conv_desc, CUDNN_FMA_MATH));
    int n, c, h, w;  // the geometry must be conv_geometry_finish'ed: cuDNN's output shape agrees
    CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(p->conv_desc, p->x_desc, p->w_desc, &n, &c, &h, &w));
    if (n != batch || c != c_out || h != out_h || w != out_w)
        gpu_fatal(
            call,
            "output [%d, %d, %d, %d] in the geometry, but cuDNN computes [%d, %d, %d, %d] (call conv_geometry_finish)",
            batch, c_out, out_h, out_w, n, c, h, w);
    p->next = conv_plans;
    conv_plans = p;
    return p;
}

// cudnnFind* allocates its trial buffers with cudaMalloc: hand the cache back first, or cached
// blocks could starve it. Once per shape, so the cache refills within a step.
// GPU-unverified: that Find picks sensible algorithms within memory here.
#define FIND_BEST_ALGORITHM(find_function, max_count_function, perf_type, handle, out_algo, out_bytes, ...) \
    do {                                                                                                    \
        perf_type results[32];                                                                              \
        int max_count = 0, returned = 0;                                                                    \
        CUDNN_CHECK(max_count_function(handle, &max_count));                                                \
        if (max_count > 32) max_count = 32;                                                                 \
        gpu_cache_release_all();                                                                            \
        CUDNN_CHECK(find_function(handle, __VA_ARGS__, max_count, &returned, results));                     \
        int found = 0;                                                                                      \
        for (int i = 0; i < returned && !found; i++) /* sorted fastest first */                             \
            if (results[i].status == CUDNN_STATUS_SUCCESS) {                                                \
                out_algo = results[i].algo;                                                                 \
                out_bytes = results[i].memory;                                                              \
                found = 1;                                                                                  \
            }                                                                                               \
        if (!found) gpu_fatal(#find_function, "no convolution algorithm works for this shape");             \
    } while (0)

// The cuDNN workspace of a stream, grown on demand. The old one may still be in use by work queued
// on this stream, so wait for the stream before giving it back.
static void *stream_workspace(GpuStream *stream, size_t bytes) {
    if (bytes <= stream->workspace_bytes) return stream->workspace;
    if (stream->workspace) {
        GPU_CHECK(cudaStreamSynchronize(stream->handle));
        gpu_free(stream->workspace);
    }
    stream->workspace = gpu_alloc(bytes);
    stream->workspace_bytes = bytes;
    return stream->workspace;
}

// Handle on the stream, plan for the shape; NULL stream = default.
typedef struct {
    cudnnHandle_t handle;
    GpuStream *stream;
    ConvPlan *plan;
} ConvCall;

static ConvCall conv_call(GpuStream *stream, const ConvGeometry *g) {
    DeviceState *d = device();
    ConvCall call = {.handle = cudnn_handle(d), .stream = stream ? stream : &d->default_stream};
    call.plan = conv_plan(selected_device, g);
    CUDNN_CHECK(cudnnSetStream(call.handle, call.stream->handle));
    return call;
}

static const float ONE = 1.0f, ZERO = 0.0f;

void gpu_conv2d_forward(GpuStream *stream, const ConvGeometry *g, const float *x, const float *w, const float *bias,
                        float *y) {
    if (g->batch == 0) return;
    ConvCall c = conv_call(stream, g);
    ConvPlan *p = c.plan;
    if (!p->have_forward) {
        FIND_BEST_ALGORITHM(cudnnFindConvolutionForwardAlgorithm, cudnnGetConvolutionForwardAlgorithmMaxCount,
                            cudnnConvolutionFwdAlgoPerf_t, c.handle, p->forward_algo, p->forward_workspace, p->x_desc,
                            p->w_desc, p->conv_desc, p->y_desc);
        p->have_forward = 1;
    }
    void *workspace = stream_workspace(c.stream, p->forward_workspace);
    CUDNN_CHECK(cudnnConvolutionForward(c.handle, &ONE, p->x_desc, x, p->w_desc, w, p->conv_desc, p->forward_algo,
                                        workspace, p->forward_workspace, &ZERO, p->y_desc, y));
    // y += bias, the [1, Cout, 1, 1] descriptor broadcasting it over B, OH, OW.
    if (bias) CUDNN_CHECK(cudnnAddTensor(c.handle, &ONE, p->bias_desc, bias, &ONE, p->y_desc, y));
}

void gpu_conv2d_backward_data(GpuStream *stream, const ConvGeometry *g, const float *w, const float *dy, float *dx) {
    if (g->batch == 0) return;
    ConvCall c = conv_call(stream, g);
    ConvPlan *p = c.plan;
    if (!p->have_backward_data) {
        FIND_BEST_ALGORITHM(cudnnFindConvolutionBackwardDataAlgorithm, cudnnGetConvolutionBackwardDataAlgorithmMaxCount,
                            cudnnConvolutionBwdDataAlgoPerf_t, c.handle, p->backward_data_algo,
                            p->backward_data_workspace, p->w_desc, p->y_desc, p->conv_desc, p->x_desc);
        p->have_backward_data = 1;
    }
    void *workspace = stream_workspace(c.stream, p->backward_data_workspace);
    CUDNN_CHECK(cudnnConvolutionBackwardData(c.handle, &ONE, p->w_desc, w, p->y_desc, dy, p->conv_desc,
                                             p->backward_data_algo, workspace, p->backward_data_workspace, &ZERO,
                                             p->x_desc, dx));
}

void gpu_conv2d_backward_filter(GpuStream *stream, const ConvGeometry *g, const float *x, const float *dy, float *dw) {
    if (g->batch == 0) {  // no images: the gradient is zero
        size_t count = (size_t)(g->c_out * (g->c_in / g->groups) * g->kh * g->kw);
        gpu_memset_async(dw, 0, count * sizeof(float), stream);
        return;
    }
    ConvCall c = conv_call(stream, g);
    ConvPlan *p = c.plan;
    if (!p->have_backward_filter) {
        FIND_BEST_ALGORITHM(cudnnFindConvolutionBackwardFilterAlgorithm,
                            cudnnGetConvolutionBackwardFilterAlgorithmMaxCount, cudnnConvolutionBwdFilterAlgoPerf_t,
                            c.handle, p->backward_filter_algo, p->backward_filter_workspace, p->x_desc, p->y_desc,
                            p->conv_desc, p->w_desc);
        p->have_backward_filter = 1;
    }
    void *workspace = stream_workspace(c.stream, p->backward_filter_workspace);
    CUDNN_CHECK(cudnnConvolutionBackwardFilter(c.handle, &ONE, p->x_desc, x, p->y_desc, dy, p->conv_desc,
                                               p->backward_filter_algo, workspace, p->backward_filter_workspace, &ZERO,
                                               p->w_desc, dw));
}

void gpu_conv2d_backward_bias(GpuStream *stream, const ConvGeometry *g, const float *dy, float *dbias) {
    if (g->batch == 0) {
        gpu_memset_async(dbias, 0, (size_t)g->c_out * sizeof(float), stream);
        return;
    }
    ConvCall c = conv_call(stream, g);
    CUDNN_CHECK(cudnnConvolutionBackwardBias(c.handle, &ONE, c.plan->y_desc, dy, &ZERO, c.plan->bias_desc, dbias));
}
