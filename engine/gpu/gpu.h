// The device runtime: what the engine asks of a CUDA device — selection, memory (through a caching
// allocator), copies, streams, events, error checks, and the cuBLAS / cuDNN calls it uses. One
// interface, three implementations, one linked into each program (engine/gpu/gpu.mk):
//   gpu_cudart.c    the real device: cudart + cuBLAS + cuDNN (the CUDA program);
//   gpu_emulated.c  the emulated device: device memory is host memory, streams are synchronous, the
//                   library calls are computed by engine/cpu (the tests, with kernels/emu);
//   gpu_none.c      the CPU-only program: no devices; anything needing one stops with one line.
// Plain C (no CUDA headers), and includable from nvcc-compiled kernel launchers (C++).
//
// Errors: every failing call stops the program with one line on stderr naming file:line, the call
// and the CUDA error string, exit status 1 (like llm.c's cudaCheck). Nothing returns an error code
// except gpu_select, whose caller (--device) decides what to say.
//
// Streams and memory reuse: gpu_free hands a block back to the cache at once, without waiting for
// the device. That is safe when the next user of the block is ordered after the last one: work on
// the default stream (the legacy stream, which waits for all other streams of this runtime) or on
// the same stream. A block used on a stream s and then reused on a different non-default stream
// needs gpu_stream_synchronize(s) (or an event) before the gpu_free.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "engine/cpu/conv.h"  // ConvGeometry: the conv wrappers take the CPU conv's geometry

#ifdef __cplusplus
extern "C" {
#endif

typedef struct GpuStream GpuStream;
typedef struct GpuEvent GpuEvent;
// cudaStream_t is `struct CUstream_st *` in cudart and in kernels/emu/cuemu.h, so kernel launchers
// (`..._launch(..., cudaStream_t stream)`) take gpu_stream_handle(stream) in both builds.
struct CUstream_st;

// ---------------------------------------------------------------- devices

int gpu_device_count(void);
// Makes device `index` current (creating its library handles lazily on first use). Returns 0, or -1
// with one line in `error` (no such device, driver problem); never exits. Without a call, the first
// use of the runtime selects device 0.
int gpu_select(int index, char *error, size_t error_size);
int gpu_current_device(void);
const char *gpu_device_name(void);   // e.g. "NVIDIA A100-SXM4-80GB", "emulated CUDA device (CPU)"
const char *gpu_backend_name(void);  // "cuda", "emulated" or "none"
// Whether ops should call cuBLAS / cuDNN (the gpu_sgemm / gpu_conv2d_* wrappers) rather than the
// handwritten kernels: true on a real GPU unless TAILOR_GPU_LIBRARIES=0 asks for the fallback;
// false on the emulated device, whose path is the handwritten kernels (the wrappers' emulated
// twins compute on the CPU and are tested on their own).
int gpu_use_vendor_libraries(void);

// ---------------------------------------------------------------- memory
// Device memory comes from a caching allocator (one per device): requests are rounded up to a size
// class (512 B, then four classes per power of two, so at most 25% waste), freed blocks go to the
// free list of their class and are reused by later requests of that class; the device is asked for
// memory only when that list is empty. When the device (or the limit below) refuses, the cache is
// released to the device and the request retried once; if it still fails the program stops with
// one line naming the caller's file:line, the requested size, and what is in use and cached.
// gpu_alloc(0) returns NULL; gpu_free(NULL) does nothing. Blocks are at least 64-byte aligned
// (256 on a real device).

#define gpu_alloc(bytes) gpu_alloc_at((bytes), __FILE__, __LINE__)
void *gpu_alloc_at(size_t bytes, const char *file, int line);
void gpu_free(void *device_pointer);
// Returns every cached (free) block to the device; blocks in use are untouched.
void gpu_cache_release_all(void);

typedef struct {
    size_t bytes_in_use;       // blocks handed out and not yet freed (rounded sizes)
    size_t bytes_cached;       // freed blocks kept for reuse
    size_t peak_bytes_in_use;  // high-water mark of bytes_in_use since start / the last reset
    size_t memory_limit;       // gpu_set_memory_limit's value, 0 = none
    uint64_t alloc_calls;      // gpu_alloc calls with bytes > 0
    uint64_t cache_hits;       // ... served from the cache
    uint64_t device_allocs;    // blocks obtained from the device (cudaMalloc / the host heap)
    uint64_t device_frees;     // blocks given back to it
} GpuMemoryStats;
GpuMemoryStats gpu_memory_stats(void);  // of the current device
void gpu_memory_reset_peak(void);
// Caps bytes_in_use + bytes_cached of the current device (0 = no cap): for memory budgets and for
// testing the out-of-memory path on a machine with plenty of memory.
void gpu_set_memory_limit(size_t bytes);

// Sets `bytes` bytes to `byte`, ordered on `stream` (NULL = the default stream).
void gpu_memset_async(void *device_pointer, int byte, size_t bytes, GpuStream *stream);

// Copies. The synchronous ones return when the data has arrived (and wait for earlier work on the
// default stream); the _async ones are ordered on `stream` (NULL = default) and the host buffer must
// stay valid until the stream reaches them: pinned memory (gpu_host_alloc) for real overlap.
void gpu_copy_to_device(void *device_destination, const void *host_source, size_t bytes);
void gpu_copy_to_host(void *host_destination, const void *device_source, size_t bytes);
void gpu_copy_device_to_device(void *device_destination, const void *device_source, size_t bytes);
void gpu_copy_to_device_async(void *device_destination, const void *host_source, size_t bytes, GpuStream *stream);
void gpu_copy_to_host_async(void *host_destination, const void *device_source, size_t bytes, GpuStream *stream);
void gpu_copy_device_to_device_async(void *device_destination, const void *device_source, size_t bytes,
                                     GpuStream *stream);

// Page-locked host memory (cudaMallocHost) for the data loader's staging buffers: async copies from
// it overlap with compute. Not cached; stops with one line when it cannot be had.
void *gpu_host_alloc(size_t bytes);
void gpu_host_free(void *host_pointer);

// ---------------------------------------------------------------- streams and events
// Emulated device: every operation completes before its call returns, so streams only order
// trivially, and event times come from the host clock — they measure the CPU emulation, not a GPU.

GpuStream *gpu_stream_default(void);  // the legacy default stream; never destroyed
GpuStream *gpu_stream_create(void);
void gpu_stream_destroy(GpuStream *stream);  // waits for its work first
void gpu_stream_synchronize(GpuStream *stream);
// Work queued on `stream` after this call waits until `event` (recorded elsewhere) has completed.
// As in CUDA, waiting for an event that was never recorded returns at once.
void gpu_stream_wait_event(GpuStream *stream, GpuEvent *event);
struct CUstream_st *gpu_stream_handle(GpuStream *stream);  // NULL = default stream; NULL in emulation

GpuEvent *gpu_event_create(void);  // with timing
void gpu_event_destroy(GpuEvent *event);
void gpu_event_record(GpuEvent *event, GpuStream *stream);
void gpu_event_synchronize(GpuEvent *event);
// Milliseconds between two recorded, completed events (resolution ~0.5 us on a GPU).
float gpu_event_elapsed_ms(GpuEvent *start, GpuEvent *end);

void gpu_synchronize(void);  // waits for all work on the current device

// ---------------------------------------------------------------- errors

// GPU_CHECK(cudaFuncSetAttribute(...)): stops with "error: CUDA call failed: file:line: <call>:
// <CUDA error string> (<error name>)" when the call returns anything but success (0). Takes the
// numeric cudaError_t, so host code compiled without CUDA headers (the emulator's functions return
// cudaError_t numbers too) can use it.
#define GPU_CHECK(call) gpu_check_status((int)(call), #call, __FILE__, __LINE__)
void gpu_check_status(int cuda_status, const char *call, const char *file, int line);

// After a kernel launch: reads and clears the launch error (cudaGetLastError) and stops with one
// line naming the launch site if there is one. Kernel faults are asynchronous and show at the next
// synchronising call; run with CUDA_LAUNCH_BLOCKING=1 to pin them to their launch. GPU_CHECK_LAUNCH()
// is compiled in unless NDEBUG (it costs no synchronisation, but it is a call per launch).
void gpu_check_last_launch(const char *file, int line);
#ifdef NDEBUG
#define GPU_CHECK_LAUNCH() ((void)0)
#else
#define GPU_CHECK_LAUNCH() gpu_check_last_launch(__FILE__, __LINE__)
#endif

// One line "error: <what>: <message>" on stderr, exit status 1. For the runtime and its callers.
#if defined(__GNUC__)
__attribute__((noreturn, format(printf, 2, 3)))
#endif
void gpu_fatal(const char *what, const char *format, ...);

// ---------------------------------------------------------------- library calls
// Same signatures in every implementation; on the emulated device they are computed by the CPU
// kernels (engine/cpu/gemm.h, engine/cpu/conv.h), so results agree with the CPU ops up to f32
// rounding order. All pointers are device pointers; the calls are ordered on `stream` (NULL =
// default). f32 throughout: cuBLAS/cuDNN are set to plain FP32 math (no TF32), as on the CPU.

// C[M,N] = alpha * op(A) @ op(B) + beta * C, row-major, exactly as engine/cpu/gemm.h's sgemm:
// op(A) is M x K (A is K x M when trans_a), op(B) is K x N (B is N x K when trans_b); beta == 0 means
// C is write-only. M, N, K, lda, ldb, ldc must fit in int (cuBLAS's 32-bit API).
void gpu_sgemm(GpuStream *stream, int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
               const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
// `batch` independent GEMMs, matrix i at A + i * stride_a (likewise B, C); stride 0 broadcasts.
void gpu_sgemm_strided_batched(GpuStream *stream, int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                               float alpha, const float *A, int64_t lda, int64_t stride_a, const float *B,
                               int64_t ldb, int64_t stride_b, float beta, float *C, int64_t ldc, int64_t stride_c,
                               int64_t batch);

// 2-D convolution, NCHW, contiguous: x [B, Cin, H, W], w [Cout, Cin/groups, KH, KW],
// y [B, Cout, OH, OW]; the geometry is op_conv2d's (filled by conv_geometry_finish). Workspace comes
// from the caching allocator (kept per stream); the algorithm is chosen once per shape and cached.
// y = conv(x, w) + bias (bias [Cout] or NULL).
void gpu_conv2d_forward(GpuStream *stream, const ConvGeometry *g, const float *x, const float *w,
                        const float *bias, float *y);
// dx = gradient of the input (overwritten).
void gpu_conv2d_backward_data(GpuStream *stream, const ConvGeometry *g, const float *w, const float *dy,
                              float *dx);
// dw = gradient of the weight (overwritten).
void gpu_conv2d_backward_filter(GpuStream *stream, const ConvGeometry *g, const float *x, const float *dy,
                                float *dw);
// dbias[Cout] = sum of dy over B, OH, OW (overwritten).
void gpu_conv2d_backward_bias(GpuStream *stream, const ConvGeometry *g, const float *dy, float *dbias);

#ifdef __cplusplus
}
#endif
