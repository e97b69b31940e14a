#include "engine/cpu/conv.h"

#include <omp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/cpu/gemm.h"

void conv_geometry_finish(ConvGeometry *g) {
    g->out_h = (g->h + 2 * g->pad_h - g->dilation_h * (g->kh - 1) - 1) / g->stride_h + 1;
    g->out_w = (g->w + 2 * g->pad_w - g->dilation_w * (g->kw - 1) - 1) / g->stride_w + 1;
}

// Fold images into one GEMM until it has about this many columns: the packed weight panel is then
// reused over >= 512 columns (packing ~M*K values per GEMM vs M*K*N multiply-adds), and N is a
// multiple of the 32-wide AVX-512 register tile more often.
#define CONV_TARGET_COLUMNS 512
// ... but keep a chunk's im2col matrix under this size, counted at 8 bytes per element so that f32
// and f64 (which the gradient checks use) cut the work the same way.
#define CONV_COL_BYTES ((int64_t)8 << 20)
// A GEMM below this many multiply-adds does not split well over threads (gemm.c gives a thread at
// least 96^3), so small per-item GEMMs run one per thread instead.
#define CONV_SPLIT_GEMM_VOLUME (4.0 * 96 * 96 * 96)
// A chunk's im2col matrix is built and consumed in row blocks of about this many elements (whole
// input channels, at least one), so that the block stays in the core's L2 (2 MiB here) from im2col
// to the GEMM's packing, next to the packed panel, instead of being written out to memory and read
// back (ResNet-18 layer1: 576 x 1024 floats = 2.3 MB per image). The same buffer then holds the
// block's rows of the column gradient on their way to col2im.
#ifndef CONV_BLOCK_ELEMENTS
#define CONV_BLOCK_ELEMENTS ((int64_t)1 << 17)
#endif

// How a convolution is cut into work items: item = (chunk of nb images, group).
typedef struct {
    int64_t P;               // output pixels per image
    int64_t cin_g, cout_g;   // channels per group
    int64_t Kg;              // GEMM reduction length: cin_g * KH * KW
    int64_t nb, chunks;      // images per chunk, number of chunks
    int64_t items;           // chunks * groups
    int threads;             // > 1: items run in parallel, one thread each, single-threaded GEMMs
    int pointwise;           // 1x1, stride 1, no padding: x is its own im2col matrix
    int64_t block_rows;      // im2col rows built and multiplied at a time (whole input channels)
} ConvPlan;

static ConvPlan conv_plan(const ConvGeometry *g) {
    ConvPlan plan = {0};
    plan.P = g->out_h * g->out_w;
    plan.cin_g = g->c_in / g->groups;
    plan.cout_g = g->c_out / g->groups;
    plan.Kg = plan.cin_g * g->kh * g->kw;
    plan.pointwise = g->kh == 1 && g->kw == 1 && g->stride_h == 1 && g->stride_w == 1 && g->pad_h == 0 &&
                     g->pad_w == 0;
    int64_t B = g->batch > 0 ? g->batch : 1;
    int64_t P = plan.P > 0 ? plan.P : 1;
    int64_t nb = (CONV_TARGET_COLUMNS + P - 1) / P;
    int64_t col_row_bytes = plan.Kg * P * (int64_t)sizeof(double);
    if (nb > 1 && nb * col_row_bytes > CONV_COL_BYTES) nb = CONV_COL_BYTES / (col_row_bytes > 0 ? col_row_bytes : 1);
    if (nb < 1) nb = 1;
    if (nb > B) nb = B;
    int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
    int64_t chunks = (B + nb - 1) / nb;
    // With several threads, prefer a chunk count that divides evenly among them.
    if (threads > 1 && nb > 1 && chunks >= threads && chunks % threads) {
        int64_t want = (chunks + threads - 1) / threads * threads;
        nb = (B + want - 1) / want;
        chunks = (B + nb - 1) / nb;
    }
    plan.nb = nb;
    plan.chunks = g->batch > 0 ? chunks : 0;
    plan.items = plan.chunks * g->groups;
    double item_volume = (double)plan.cout_g * (double)plan.Kg * (double)(nb * plan.P);
    int parallel_items = threads > 1 && plan.items >= threads &&
                         (plan.items % threads == 0 || plan.items >= 4 * threads ||
                          item_volume < CONV_SPLIT_GEMM_VOLUME);
    plan.threads = parallel_items ? threads : 1;
    int64_t taps = g->kh * g->kw > 0 ? g->kh * g->kw : 1;
    int64_t channels = CONV_BLOCK_ELEMENTS / (taps * nb * P);
    if (channels < 1) channels = 1;
    if (channels > plan.cin_g) channels = plan.cin_g;
    plan.block_rows = channels * taps;
    return plan;
}

// Scratch memory, kept per calling thread and grown as needed: a fresh multi-megabyte allocation
// per call would be returned to the OS and page-faulted in again every time (measurable next to
// the GEMMs). Each cache is also on a global list so the buffers stay reachable (no leak reports).
typedef struct ConvScratch {
    void *data;
    size_t bytes;
    bool busy;  // a convolution on this thread is using it (guards against re-entry)
    struct ConvScratch *next;
} ConvScratch;

static ConvScratch *all_conv_scratch;
static pthread_mutex_t conv_scratch_lock = PTHREAD_MUTEX_INITIALIZER;
static _Thread_local ConvScratch *thread_conv_scratch;

void *conv_scratch_acquire(size_t bytes) {
    size_t rounded = (bytes + 4095) & ~(size_t)4095;  // a multiple of the alignment, as C11 wants
    if (rounded == 0) rounded = 4096;
    ConvScratch *cache = thread_conv_scratch;
    if (!cache) {
        cache = calloc(1, sizeof(ConvScratch));
        if (!cache) abort();
        pthread_mutex_lock(&conv_scratch_lock);
        cache->next = all_conv_scratch;
        all_conv_scratch = cache;
        pthread_mutex_unlock(&conv_scratch_lock);
        thread_conv_scratch = cache;
    }
    void *p;
    if (cache->busy) {
        p = aligned_alloc(64, rounded);  // nested use (not expected): a private buffer
    } else {
        if (rounded > cache->bytes) {
            free(cache->data);
            cache->data = aligned_alloc(64, rounded);
            cache->bytes = cache->data ? rounded : 0;
        }
        cache->busy = cache->data != NULL;
        p = cache->data;
    }
    if (!p) {
        fprintf(stderr, "conv2d: out of memory for a %zu-byte scratch buffer\n", rounded);
        abort();
    }
    return p;
}

void conv_scratch_release(void *p) {
    ConvScratch *cache = thread_conv_scratch;
    if (cache && cache->busy && p == cache->data) cache->busy = false;
    else free(p);
}

// Scratch layout of one thread, in elements (each part 64-byte aligned).
typedef struct {
    int64_t col;     // the im2col matrix [Kg, nb * P] (also the column gradient in backward)
    int64_t folded;  // GEMM result / gathered dy [cout_g, nb * P] of a folded chunk
    int64_t dw;      // private weight-gradient partial (backward with parallel items)
    int64_t total;
} ConvScratchLayout;

// Scratch elements rounded up to 64 bytes so every per-thread slice stays aligned.
static int64_t aligned_count(int64_t n) { return (n + 15) & ~(int64_t)15; }

// The implicit-GEMM paths exist for f32 only; f64 (gradient checks) always uses im2col.
static int try_implicit_forward_f32(const ConvGeometry *g, const float *x, const float *w, const float *bias, float *y) {
    return conv2d_implicit_forward_f32(g, x, w, bias, y);
}
static int try_implicit_backward_data_f32(const ConvGeometry *g, const float *w, const float *dy, float *dx) {
    return conv2d_implicit_backward_data_f32(g, w, dy, dx);
}
static int try_implicit_backward_filter_f32(const ConvGeometry *g, const float *x, const float *dy, float *dw) {
    return conv2d_implicit_backward_filter_f32(g, x, dy, dw);
}
static int try_implicit_backward_filter_f64(const ConvGeometry *g, const double *x, const double *dy, double *dw) {
    return 0;
}
static int try_implicit_forward_f64(const ConvGeometry *g, const double *x, const double *w, const double *bias,
                                    double *y) {
    return 0;
}
static int try_implicit_backward_data_f64(const ConvGeometry *g, const double *w, const double *dy, double *dx) {
    return 0;
}

#define real float
#define FN(name) name##_f32
#define GEMM sgemm
#include "engine/cpu/conv_impl.inc"
#undef real
#undef FN
#undef GEMM

#define real double
#define FN(name) name##_f64
#define GEMM dgemm
#include "engine/cpu/conv_impl.inc"
#undef real
#undef FN
#undef GEMM
