// Max / average / adaptive-average pooling and nearest upsampling, forward and backward, f32
// (launchers and semantics in kernels/pool.h; the CPU twins are engine/cpu/pool_impl.inc).
//
// Forward kernels: one thread per output element (flat over planes * OH * OW, grid-stride), reading
// its window in row-major order exactly as the CPU loop does (same comparison for max, same
// divisor for the averages). Consecutive threads take consecutive output columns, so a warp's reads
// of each window row are coalesced up to the stride.
//
// Backward kernels are gathers, one thread per input element: it finds the output windows that
// contain it (an O(1) range per axis: for max/avg pooling oh in [ceil((ih + pad - k + 1) / s),
// floor((ih + pad) / s)], for adaptive pooling [floor(ih * OH / H), ceil((ih + 1) * OH / H) - 1],
// for nearest upsampling the run of outputs whose source row is ih), and adds their gradients in
// output order (oh, then ow). The CPU's scatter loops add into each input element in that same
// order starting from 0, so the results are bitwise equal to the CPU's, with no atomics and no
// zeroing pass; each dx element is written once (coalesced).
#include "kernels/cuda_compat.h"
#include "kernels/pool.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define POOL_THREADS 256
#define POOL_MAX_BLOCKS (1 << 20)  // grid-stride loops cover the rest

enum { POOL_MAX = 0, POOL_AVG = 1, POOL_ADAPTIVE = 2, POOL_NEAREST = 3 };

typedef struct PoolArgs {
    int64_t planes;
    int64_t in_total, out_total;  // planes * H * W, planes * OH * OW
    int h, w, out_h, out_w;
    int kernel, stride, pad;
    int count_include_pad;
    float scale_h, scale_w;  // nearest: (float)H / OH, (float)W / OW, as nearest_source_index
} PoolArgs;

// ------------------------------------------------------------------------------------------------
// Device helpers.
// ------------------------------------------------------------------------------------------------

// flat = plane * inner + rem; 32-bit division when the whole range fits in int.
static __device__ __forceinline__ int pool_split(int64_t flat, int64_t total, int inner, int64_t *plane) {
    if (total <= 0x7fffffff) {
        const int f = (int)flat, p = f / inner;
        *plane = p;
        return f - p * inner;
    }
    const int64_t p = flat / inner;
    *plane = p;
    return (int)(flat - p * inner);
}

// Window [*lo, *hi) along one axis for max/avg pooling; returns the padded extent (avg divisor).
static __device__ __forceinline__ int pool_window(int o, int stride, int pad, int kernel, int size, int *lo, int *hi) {
    const int start = o * stride - pad;
    const int end = start + kernel < size + pad ? start + kernel : size + pad;
    *lo = start > 0 ? start : 0;
    *hi = end < size ? end : size;
    return end - start;
}

// Outputs o whose max/avg window contains input position i: [*first, *last] (empty if first > last).
static __device__ __forceinline__ void pool_windows_containing(int i, int stride, int pad, int kernel, int out,
                                                               int *first, int *last) {
    const int reach = i + pad - kernel + 1;  // o * stride >= reach
    *first = reach <= 0 ? 0 : (reach + stride - 1) / stride;
    const int l = (i + pad) / stride;  // o * stride <= i + pad
    *last = l < out - 1 ? l : out - 1;
}

// Adaptive window [floor(o * in / out), ceil((o + 1) * in / out)).
static __device__ __forceinline__ void pool_adaptive_window(int o, int in, int out, int *lo, int *hi) {
    *lo = (int)((int64_t)o * in / out);
    *hi = (int)(((int64_t)(o + 1) * in + out - 1) / out);
}

// nearest_source_index (engine/cpu/pool.c): the scale is a float, the product a float.
static __device__ __forceinline__ int pool_nearest_source(int o, int in, int out, float scale) {
    if (out == in) return o;
    if (out == 2 * in) return o >> 1;
    const int s = (int)floorf((float)o * scale);
    return s < in - 1 ? s : in - 1;
}

// The outputs whose nearest source is i: [*first, *end) (sources are non-decreasing in o).
static __device__ __forceinline__ void pool_nearest_range(int i, int in, int out, float scale, int *first, int *end) {
    int o = (int)((int64_t)i * out / in);
    if (o > out) o = out;
    while (o > 0 && pool_nearest_source(o - 1, in, out, scale) >= i) o--;
    while (o < out && pool_nearest_source(o, in, out, scale) < i) o++;
    int e = o;
    while (e < out && pool_nearest_source(e, in, out, scale) == i) e++;
    *first = o;
    *end = e;
}

// ------------------------------------------------------------------------------------------------
// Forward kernels: one thread per output element.
// ------------------------------------------------------------------------------------------------

__global__ void max_pool2d_forward_kernel(const float *__restrict__ x, float *__restrict__ y,
                                          int32_t *__restrict__ index, PoolArgs a) {
    const int out_hw = a.out_h * a.out_w;
    for (int64_t flat = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; flat < a.out_total;
         flat += (int64_t)gridDim.x * blockDim.x) {
        int64_t plane;
        const int rem = pool_split(flat, a.out_total, out_hw, &plane);
        const int oh = rem / a.out_w, ow = rem - oh * a.out_w;
        int h0, h1, w0, w1;
        pool_window(oh, a.stride, a.pad, a.kernel, a.h, &h0, &h1);
        pool_window(ow, a.stride, a.pad, a.kernel, a.w, &w0, &w1);
        const float *xp = x + plane * a.h * a.w;
        int best_at = h0 * a.w + w0;
        float best = -INFINITY;
        for (int ih = h0; ih < h1; ih++)
            for (int iw = w0; iw < w1; iw++) {
                const float v = xp[ih * a.w + iw];
                if (v > best || v != v) {
                    best = v;
                    best_at = ih * a.w + iw;
                }
            }
        y[flat] = best;
        if (index) index[flat] = best_at;
    }
}
CU_KERNEL_ARGS(max_pool2d_forward_kernel, const float *, float *, int32_t *, PoolArgs);

__global__ void avg_pool2d_forward_kernel(const float *__restrict__ x, float *__restrict__ y, PoolArgs a) {
    const int out_hw = a.out_h * a.out_w;
    for (int64_t flat = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; flat < a.out_total;
         flat += (int64_t)gridDim.x * blockDim.x) {
        int64_t plane;
        const int rem = pool_split(flat, a.out_total, out_hw, &plane);
        const int oh = rem / a.out_w, ow = rem - oh * a.out_w;
        int h0, h1, w0, w1;
        const int padded_h = pool_window(oh, a.stride, a.pad, a.kernel, a.h, &h0, &h1);
        const int padded_w = pool_window(ow, a.stride, a.pad, a.kernel, a.w, &w0, &w1);
        const float *xp = x + plane * a.h * a.w;
        float total = 0.0f;
        for (int ih = h0; ih < h1; ih++)
            for (int iw = w0; iw < w1; iw++) total += xp[ih * a.w + iw];
        const int divisor = a.count_include_pad ? padded_h * padded_w : (h1 - h0) * (w1 - w0);
        y[flat] = total / (float)divisor;
    }
}
CU_KERNEL_ARGS(avg_pool2d_forward_kernel, const float *, float *, PoolArgs);

__global__ void adaptive_avg_pool2d_forward_kernel(const float *__restrict__ x, float *__restrict__ y, PoolArgs a) {
    const int out_hw = a.out_h * a.out_w;
    for (int64_t flat = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; flat < a.out_total;
         flat += (int64_t)gridDim.x * blockDim.x) {
        int64_t plane;
        const int rem = pool_split(flat, a.out_total, out_hw, &plane);
        const int oh = rem / a.out_w, ow = rem - oh * a.out_w;
        int h0, h1, w0, w1;
        pool_adaptive_window(oh, a.h, a.out_h, &h0, &h1);
        pool_adaptive_window(ow, a.w, a.out_w, &w0, &w1);
        const float *xp = x + plane * a.h * a.w;
        float total = 0.0f;
        for (int ih = h0; ih < h1; ih++)
            for (int iw = w0; iw < w1; iw++) total += xp[ih * a.w + iw];
        y[flat] = total / (float)((h1 - h0) * (w1 - w0));
    }
}
CU_KERNEL_ARGS(adaptive_avg_pool2d_forward_kernel, const float *, float *, PoolArgs);

__global__ void upsample_nearest2d_forward_kernel(const float *__restrict__ x, float *__restrict__ y, PoolArgs a) {
    const int out_hw = a.out_h * a.out_w;
    for (int64_t flat = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; flat < a.out_total;
         flat += (int64_t)gridDim.x * blockDim.x) {
        int64_t plane;
        const int rem = pool_split(flat, a.out_total, out_hw, &plane);
        const int oh = rem / a.out_w, ow = rem - oh * a.out_w;
        const int ih = pool_nearest_source(oh, a.h, a.out_h, a.scale_h);
        const int iw = pool_nearest_source(ow, a.w, a.out_w, a.scale_w);
        y[flat] = x[plane * a.h * a.w + ih * a.w + iw];
    }
}
CU_KERNEL_ARGS(upsample_nearest2d_forward_kernel, const float *, float *, PoolArgs);

// ------------------------------------------------------------------------------------------------
// Backward kernels: one thread per input element, gathering the outputs that used it.
// ------------------------------------------------------------------------------------------------

__global__ void max_pool2d_backward_kernel(const float *__restrict__ dy, const int32_t *__restrict__ index,
                                           float *__restrict__ dx, PoolArgs a) {
    const int in_hw = a.h * a.w, out_hw = a.out_h * a.out_w;
    for (int64_t flat = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; flat < a.in_total;
         flat += (int64_t)gridDim.x * blockDim.x) {
        int64_t plane;
        const int rem = pool_split(flat, a.in_total, in_hw, &plane);
        const int ih = rem / a.w, iw = rem - ih * a.w;
        int oh0, oh1, ow0, ow1;
        pool_windows_containing(ih, a.stride, a.pad, a.kernel, a.out_h, &oh0, &oh1);
        pool_windows_containing(iw, a.stride, a.pad, a.kernel, a.out_w, &ow0, &ow1);
        const float *dyp = dy + plane * out_hw;
        const int32_t *ip = index + plane * out_hw;
        float sum = 0.0f;
        for (int oh = oh0; oh <= oh1; oh++)
            for (int ow = ow0; ow <= ow1; ow++)
                if (ip[oh * a.out_w + ow] == rem) sum += dyp[oh * a.out_w + ow];
        dx[flat] = sum;
    }
}
CU_KERNEL_ARGS(max_pool2d_backward_kernel, const float *, const int32_t *, float *, PoolArgs);

__global__ void avg_pool2d_backward_kernel(const float *__restrict__ dy, float *__restrict__ dx, PoolArgs a) {
    const int in_hw = a.h * a.w, out_hw = a.out_h * a.out_w;
    for (int64_t flat = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; flat < a.in_total;
         flat += (int64_t)gridDim.x * blockDim.x) {
        int64_t plane;
        const int rem = pool_split(flat, a.in_total, in_hw, &plane);
        const int ih = rem / a.w, iw = rem - ih * a.w;
        int oh0, oh1, ow0, ow1;
        pool_windows_containing(ih, a.stride, a.pad, a.kernel, a.out_h, &oh0, &oh1);
        pool_windows_containing(iw, a.stride, a.pad, a.kernel, a.out_w, &ow0, &ow1);
        const float *dyp = dy + plane * out_hw;
        float sum = 0.0f;
        for (int oh = oh0; oh <= oh1; oh++) {
            int h0, h1;
            const int padded_h = pool_window(oh, a.stride, a.pad, a.kernel, a.h, &h0, &h1);
            for (int ow = ow0; ow <= ow1; ow++) {
                int w0, w1;
                const int padded_w = pool_window(ow, a.stride, a.pad, a.kernel, a.w, &w0, &w1);
                const int divisor = a.count_include_pad ? padded_h * padded_w : (h1 - h0) * (w1 - w0);
                sum += dyp[oh * a.out_w + ow] / (float)divisor;  // the CPU's share, added in o order
            }
        }
        dx[flat] = sum;
    }
}
CU_KERNEL_ARGS(avg_pool2d_backward_kernel, const float *, float *, PoolArgs);

__global__ void adaptive_avg_pool2d_backward_kernel(const float *__restrict__ dy, float *__restrict__ dx, PoolArgs a) {
    const int in_hw = a.h * a.w, out_hw = a.out_h * a.out_w;
    for (int64_t flat = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; flat < a.in_total;
         flat += (int64_t)gridDim.x * blockDim.x) {
        int64_t plane;
        const int rem = pool_split(flat, a.in_total, in_hw, &plane);
        const int ih = rem / a.w, iw = rem - ih * a.w;
        // hi(o) > i  <=>  o >= floor(i * out / in);  lo(o) <= i  <=>  o <= ((i + 1) * out - 1) / in
        const int oh0 = (int)((int64_t)ih * a.out_h / a.h), ow0 = (int)((int64_t)iw * a.out_w / a.w);
        int oh1 = (int)(((int64_t)(ih + 1) * a.out_h - 1) / a.h), ow1 = (int)(((int64_t)(iw + 1) * a.out_w - 1) / a.w);
        if (oh1 > a.out_h - 1) oh1 = a.out_h - 1;
        if (ow1 > a.out_w - 1) ow1 = a.out_w - 1;
        const float *dyp = dy + plane * out_hw;
        float sum = 0.0f;
        for (int oh = oh0; oh <= oh1; oh++) {
            int h0, h1;
            pool_adaptive_window(oh, a.h, a.out_h, &h0, &h1);
            if (ih < h0 || ih >= h1) continue;
            for (int ow = ow0; ow <= ow1; ow++) {
                int w0, w1;
                pool_adaptive_window(ow, a.w, a.out_w, &w0, &w1);
                if (iw < w0 || iw >= w1) continue;
                sum += dyp[oh * a.out_w + ow] / (float)((h1 - h0) * (w1 - w0));
            }
        }
        dx[flat] = sum;
    }
}
CU_KERNEL_ARGS(adaptive_avg_pool2d_backward_kernel, const float *, float *, PoolArgs);

__global__ void upsample_nearest2d_backward_kernel(const float *__restrict__ dy, float *__restrict__ dx, PoolArgs a) {
    const int in_hw = a.h * a.w, out_hw = a.out_h * a.out_w;
    for (int64_t flat = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; flat < a.in_total;
         flat += (int64_t)gridDim.x * blockDim.x) {
        int64_t plane;
        const int rem = pool_split(flat, a.in_total, in_hw, &plane);
        const int ih = rem / a.w, iw = rem - ih * a.w;
        int oh0, oh1, ow0, ow1;
        pool_nearest_range(ih, a.h, a.out_h, a.scale_h, &oh0, &oh1);
        pool_nearest_range(iw, a.w, a.out_w, a.scale_w, &ow0, &ow1);
        const float *dyp = dy + plane * out_hw;
        float sum = 0.0f;
        for (int oh = oh0; oh < oh1; oh++)
            for (int ow = ow0; ow < ow1; ow++) sum += dyp[oh * a.out_w + ow];
        dx[flat] = sum;
    }
}
CU_KERNEL_ARGS(upsample_nearest2d_backward_kernel, const float *, float *, PoolArgs);

// ------------------------------------------------------------------------------------------------
// Launchers.
// ------------------------------------------------------------------------------------------------

// Aborts with one line: geometries the launchers cannot take are the caller's bug.
static void pool_fatal(const char *what, long long value) {
    fprintf(stderr, "error: kernels/pool.cu: %s (%lld)\n", what, value);
    exit(1);
}

// Validates the geometry; `windowed` (max/avg) also checks kernel/stride/pad and the output size.
static PoolArgs pool_args(const PoolGeometry *g, int windowed) {
    PoolArgs a;
    if (g->planes < 0 || g->h < 1 || g->w < 1 || g->out_h < 1 || g->out_w < 1)
        pool_fatal("planes >= 0 and non-empty planes required", (long long)g->planes);
    if (g->h * g->w > 0x7fffffff || g->out_h * g->out_w > 0x7fffffff || g->out_h > 0x3fffffff || g->out_w > 0x3fffffff)
        pool_fatal("a plane must have fewer than 2^31 elements", (long long)(g->h * g->w));
    a.planes = g->planes;
    a.in_total = g->planes * g->h * g->w;
    a.out_total = g->planes * g->out_h * g->out_w;
    a.h = (int)g->h;
    a.w = (int)g->w;
    a.out_h = (int)g->out_h;
    a.out_w = (int)g->out_w;
    a.kernel = a.stride = 1;
    a.pad = 0;
    a.count_include_pad = 0;
    a.scale_h = (float)g->h / (float)g->out_h;
    a.scale_w = (float)g->w / (float)g->out_w;
    if (windowed) {
        const int64_t stride = g->stride > 0 ? g->stride : g->kernel;
        if (g->kernel < 1 || g->pad < 0 || 2 * g->pad > g->kernel || g->kernel > g->h + 2 * g->pad ||
            g->kernel > g->w + 2 * g->pad || g->kernel > 0x7fff || stride > 0x7fffffff)
            pool_fatal("kernel >= 1, 0 <= padding <= kernel / 2, kernel within the padded input", (long long)g->kernel);
        if (g->out_h != (g->h + 2 * g->pad - g->kernel) / stride + 1 ||
            g->out_w != (g->w + 2 * g->pad - g->kernel) / stride + 1)
            pool_fatal("out_h/out_w must be (size + 2 pad - kernel) / stride + 1", (long long)g->out_h);
        a.kernel = (int)g->kernel;
        a.stride = (int)stride;
        a.pad = (int)g->pad;
    }
    return a;
}

static unsigned int pool_blocks(int64_t n) {
    const int64_t blocks = (n + POOL_THREADS - 1) / POOL_THREADS;
    return (unsigned int)(blocks < 1 ? 1 : blocks > POOL_MAX_BLOCKS ? POOL_MAX_BLOCKS : blocks);
}

CU_EXTERN_C void max_pool2d_forward_launch(const PoolGeometry *g, const float *x, float *y, int32_t *index,
                                           cudaStream_t stream) {
    PoolArgs a = pool_args(g, 1);
    if (a.out_total == 0) return;
    CU_LAUNCH(max_pool2d_forward_kernel, pool_blocks(a.out_total), POOL_THREADS, 0, stream, x, y, index, a);
}

CU_EXTERN_C void max_pool2d_backward_launch(const PoolGeometry *g, const float *dy, const int32_t *index, float *dx,
                                            cudaStream_t stream) {
    PoolArgs a = pool_args(g, 1);
    if (a.in_total == 0) return;
    CU_LAUNCH(max_pool2d_backward_kernel, pool_blocks(a.in_total), POOL_THREADS, 0, stream, dy, index, dx, a);
}

CU_EXTERN_C void avg_pool2d_forward_launch(const PoolGeometry *g, const float *x, float *y, bool count_include_pad,
                                           cudaStream_t stream) {
    PoolArgs a = pool_args(g, 1);
    a.count_include_pad = count_include_pad ? 1 : 0;
    if (a.out_total == 0) return;
    CU_LAUNCH(avg_pool2d_forward_kernel, pool_blocks(a.out_total), POOL_THREADS, 0, stream, x, y, a);
}

CU_EXTERN_C void avg_pool2d_backward_launch(const PoolGeometry *g, const float *dy, float *dx, bool count_include_pad,
                                            cudaStream_t stream) {
    PoolArgs a = pool_args(g, 1);
    a.count_include_pad = count_include_pad ? 1 : 0;
    if (a.in_total == 0) return;
    CU_LAUNCH(avg_pool2d_backward_kernel, pool_blocks(a.in_total), POOL_THREADS, 0, stream, dy, dx, a);
}

CU_EXTERN_C void adaptive_avg_pool2d_forward_launch(const PoolGeometry *g, const float *x, float *y,
                                                    cudaStream_t stream) {
    PoolArgs a = pool_args(g, 0);
    if (a.out_total == 0) return;
    CU_LAUNCH(adaptive_avg_pool2d_forward_kernel, pool_blocks(a.out_total), POOL_THREADS, 0, stream, x, y, a);
}

CU_EXTERN_C void adaptive_avg_pool2d_backward_launch(const PoolGeometry *g, const float *dy, float *dx,
                                                     cudaStream_t stream) {
    PoolArgs a = pool_args(g, 0);
    if (a.in_total == 0) return;
    CU_LAUNCH(adaptive_avg_pool2d_backward_kernel, pool_blocks(a.in_total), POOL_THREADS, 0, stream, dy, dx, a);
}

CU_EXTERN_C void upsample_nearest2d_forward_launch(const PoolGeometry *g, const float *x, float *y,
                                                   cudaStream_t stream) {
    PoolArgs a = pool_args(g, 0);
    if (a.out_total == 0) return;
    CU_LAUNCH(upsample_nearest2d_forward_kernel, pool_blocks(a.out_total), POOL_THREADS, 0, stream, x, y, a);
}

CU_EXTERN_C void upsample_nearest2d_backward_launch(const PoolGeometry *g, const float *dy, float *dx,
                                                    cudaStream_t stream) {
    PoolArgs a = pool_args(g, 0);
    if (a.in_total == 0) return;
    CU_LAUNCH(upsample_nearest2d_backward_kernel, pool_blocks(a.in_total), POOL_THREADS, 0, stream, dy, dx, a);
}
