// 2-D convolution as implicit GEMM, forward, backward-data, backward-filter and bias gradient, f32
// (launchers and semantics in kernels/conv.h; the CPU twin is engine/cpu/conv_impl.inc).
//
// Each pass is a GEMM per group whose operands are gathered from the tensors while they are loaded
// into shared memory, so no im2col matrix is ever built:
//   forward         y[co, (b,oh,ow)]   = sum over (ci,kh,kw) of w[co, (ci,kh,kw)] * x[b, ci, oh*sh-ph+kh*dh, ow*sw-pw+kw*dw]
//                   M = Cout/G, N = B*OH*OW, K = Cin/G*KH*KW
//   backward data   dx[ci, (b,ih,iw)]  = sum over (co,kh,kw) of w[co, ci, kh, kw] * dy[b, co, oh, ow]
//                   where ih = oh*sh - ph + kh*dh (oh integral and in range), likewise iw;
//                   M = Cin/G, N = B*H*W, K = Cout/G*KH*KW
//   backward filter dw[co, (ci,kh,kw)] = sum over (b,oh,ow) of dy[b, co, oh, ow] * x[b, ci, oh*sh-ph+kh*dh, ...]
//                   M = Cout/G, N = Cin/G*KH*KW, K = B*OH*OW, split into chunks of K (split-K):
//                   each split writes its partial dw to the workspace, and a second kernel adds the
//                   splits in order (deterministic: no float atomics across blocks)
//   bias            dbias[co] = sum over (b,oh,ow) of dy: block tree sums over ranges of images,
//                   then the ranges in order.
// Out-of-range taps (padding; and for backward data, the (kh, kw) whose output position is not on
// the stride grid) read as 0.
//
// The GEMM machinery is kernels/gemm.cu's (see its comment): BM x BN block tiles with an 8 x 8
// register micro-tile per thread, K slices of 8 staged through registers into double-buffered,
// padded, k-major shared tiles with one __syncthreads per slice; 128 x 128 tiles (256 threads)
// when there are enough of them, else 64 x 64 (64 threads). Loads are coalesced along the memory-
// contiguous direction: weights along k (8 threads read 32 contiguous bytes), activations along the
// pixel dimension (consecutive threads take consecutive output / input pixels), and in the filter
// gradient both operands along (b, oh, ow). Every thread keeps its gather state (its pixel's image
// and window origin, or its filter tap) in registers, and the index arithmetic uses precomputed
// multiply-shift divisions (ConvFastDiv, as CUTLASS's FastDivmod) instead of integer division.
//
// Deliberately simple, known costs: backward data with stride s > 1 multiplies through the
// (s^2 - 1) / s^2 of taps that are off the stride grid (cuDNN decomposes by stride phase instead);
// depthwise and other few-channels-per-group convolutions fill 1 / 64 of a tile's rows (a direct
// depthwise kernel would be the fix); the epilogue stores are 4-wide strided rather than staged
// through shared memory. Correctness and determinism first: this is the fallback to cuDNN.
// Tensor cores: none, as kernels/gemm.cu explains (the engine's contract is plain FP32).
#include "kernels/cuda_compat.h"
#include "kernels/conv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONV_BK 8                      // K slice per step
#define CONV_PAD 4                     // shared row padding (floats)
#define CONV_MAX_SLOTS 8               // loads per thread and operand per slice (TILE * BK / THREADS)
#define CONV_BIG_TILE_MIN_BLOCKS 192   // 128 x 128 tiles only if that still gives this many blocks
#define CONV_TARGET_BLOCKS 256         // split the filter / bias sums until about this many blocks ...
#define CONV_MIN_SPLIT_K 256           // ... each filter split summing at least this many (b, oh, ow)
#define CONV_MAX_SPLITS 64
#define CONV_BIAS_THREADS 256
#define CONV_REDUCE_THREADS 256
#define CONV_MAX_GRID_YZ 65535
#define CONV_FULL_MASK 0xffffffffu

#ifdef __CUDACC__
#define CONV_UNROLL _Pragma("unroll")
#else
#define CONV_UNROLL
#endif

enum { CONV_FORWARD = 0, CONV_BACKWARD_DATA = 1, CONV_BACKWARD_FILTER = 2 };

// n / divisor for 0 <= n < 2^31 as a multiply-high and a shift (CUTLASS's FastDivmod):
// multiplier = ceil(2^p / divisor), p = 31 + ceil(log2(divisor)); divisor 1 is passed through.
typedef struct ConvFastDiv {
    unsigned int divisor, multiplier, shift;
} ConvFastDiv;

// Everything a pass needs, computed once on the host from the ConvGeometry.
typedef struct ConvArgs {
    const float *x;
    const float *w;
    const float *dy;
    const float *bias;
    float *out;                 // y, dx, dw, or the filter gradient's split partials
    int64_t x_image, y_image;   // Cin*H*W, Cout*OH*OW
    int batch, c_in, in_h, in_w, c_out, k_h, k_w, out_h, out_w;
    int stride_h, stride_w, pad_h, pad_w, dil_h, dil_w;
    int groups, cin_g, cout_g, khkw, kg, in_hw, out_hw;
    int M, N, K;                // this pass's GEMM (per group)
    int k_per_split;            // backward filter: K positions per split (a multiple of CONV_BK)
    ConvFastDiv div_khkw, div_kw, div_out_hw, div_out_w, div_in_hw, div_in_w, div_stride_h, div_stride_w;
} ConvArgs;

// ------------------------------------------------------------------------------------------------
// Device helpers.
// ------------------------------------------------------------------------------------------------

static __device__ __forceinline__ int conv_div(int n, ConvFastDiv d) {
    return d.divisor == 1 ? n : (int)(__umulhi((unsigned int)n, d.multiplier) >> d.shift);
}

// Per-thread gather state, fixed for the whole K loop.
typedef struct ConvLoader {
    const float *src;  // forward: x at (image, first channel of the group); backward data: dy likewise
    int n_ok;          // this thread's pixel column is inside N
    int base_h, base_w;  // forward: oh*sh - ph, ow*sw - pw; backward data: ih + ph, iw + pw
    // backward filter: per load slot, the filter tap (column n): channel offset (-1 past N), and
    // kh*dh - ph, kw*dw - pw
    int chan[CONV_MAX_SLOTS], off_h[CONV_MAX_SLOTS], off_w[CONV_MAX_SLOTS];
} ConvLoader;

static __device__ __forceinline__ void conv_loader_init(const int MODE, const int BN, const int THREADS,
                                                        const ConvArgs *a, int group, int n0, ConvLoader *L) {
    const int t = (int)threadIdx.x;
    if (MODE == CONV_FORWARD) {
        const int n = n0 + t % BN;  // output pixel (b, oh, ow)
        L->n_ok = n < a->N;
        const int nn = L->n_ok ? n : 0;
        const int b = conv_div(nn, a->div_out_hw), p = nn - b * a->out_hw;
        const int oh = conv_div(p, a->div_out_w), ow = p - oh * a->out_w;
        L->src = a->x + (int64_t)b * a->x_image + (int64_t)group * a->cin_g * a->in_hw;
        L->base_h = oh * a->stride_h - a->pad_h;
        L->base_w = ow * a->stride_w - a->pad_w;
    } else if (MODE == CONV_BACKWARD_DATA) {
        const int n = n0 + t % BN;  // input pixel (b, ih, iw)
        L->n_ok = n < a->N;
        const int nn = L->n_ok ? n : 0;
        const int b = conv_div(nn, a->div_in_hw), p = nn - b * a->in_hw;
        const int ih = conv_div(p, a->div_in_w), iw = p - ih * a->in_w;
        L->src = a->dy + (int64_t)b * a->y_image + (int64_t)group * a->cout_g * a->out_hw;
        L->base_h = ih + a->pad_h;
        L->base_w = iw + a->pad_w;
    } else {
        CONV_UNROLL
        for (int i = 0; i < BN * CONV_BK / THREADS; i++) {
            const int n = n0 + t / CONV_BK + (THREADS / CONV_BK) * i;  // filter tap (ci, kh, kw)
            if (n < a->N) {
                const int ci = conv_div(n, a->div_khkw), r = n - ci * a->khkw;
                const int kh = conv_div(r, a->div_kw), kw = r - kh * a->k_w;
                L->chan[i] = (group * a->cin_g + ci) * a->in_hw;
                L->off_h[i] = kh * a->dil_h - a->pad_h;
                L->off_w[i] = kw * a->dil_w - a->pad_w;
            } else {
                L->chan[i] = -1;
                L->off_h[i] = 0;
                L->off_w[i] = 0;
            }
        }
    }
}

// Loads slice [k0, k0 + 8) of both operands into registers (0 outside the GEMM or the image).
// A (BM x 8) is always read k-contiguously: slot i is row m0 + t/8 + (THREADS/8) i, column k0 + t%8.
// B (8 x BN): forward / backward data: column n0 + t%BN (the loader's pixel), rows k0 + t/BN +
// (THREADS/BN) i; backward filter: column n0 + t/8 + (THREADS/8) i, row k0 + t%8.
static __device__ __forceinline__ void conv_fetch(const int MODE, const int BM, const int BN, const int THREADS,
                                                  const ConvArgs *a, const ConvLoader *L, int group, int m0,
                                                  int k0, int k_end, float *a_stage, float *b_stage) {
    const int t = (int)threadIdx.x;
    const int H = a->in_h, W = a->in_w;
    if (MODE == CONV_FORWARD) {
        const int k = k0 + t % CONV_BK;
        const float *w_k = a->w + (int64_t)group * a->cout_g * a->kg + k;
        CONV_UNROLL
        for (int i = 0; i < BM * CONV_BK / THREADS; i++) {
            const int co = m0 + t / CONV_BK + (THREADS / CONV_BK) * i;
            a_stage[i] = co < a->cout_g && k < k_end ? w_k[(int64_t)co * a->kg] : 0.0f;
        }
        CONV_UNROLL
        for (int i = 0; i < BN * CONV_BK / THREADS; i++) {
            const int kk = k0 + t / BN + (THREADS / BN) * i;
            float v = 0.0f;
            if (L->n_ok && kk < k_end) {
                const int ci = conv_div(kk, a->div_khkw), r = kk - ci * a->khkw;
                const int kh = conv_div(r, a->div_kw), kw = r - kh * a->k_w;
                const int ih = L->base_h + kh * a->dil_h, iw = L->base_w + kw * a->dil_w;
                if ((unsigned int)ih < (unsigned int)H && (unsigned int)iw < (unsigned int)W)
                    v = L->src[ci * a->in_hw + ih * W + iw];
            }
            b_stage[i] = v;
        }
    } else if (MODE == CONV_BACKWARD_DATA) {
        const int k = k0 + t % CONV_BK;  // (co, kh, kw)
        const int co = conv_div(k, a->div_khkw), r = k - co * a->khkw;
        const float *w_k = a->w + ((int64_t)(group * a->cout_g + co) * a->cin_g) * a->khkw + r;
        CONV_UNROLL
        for (int i = 0; i < BM * CONV_BK / THREADS; i++) {
            const int ci = m0 + t / CONV_BK + (THREADS / CONV_BK) * i;
            a_stage[i] = ci < a->cin_g && k < k_end ? w_k[ci * a->khkw] : 0.0f;
        }
        CONV_UNROLL
        for (int i = 0; i < BN * CONV_BK / THREADS; i++) {
            const int kk = k0 + t / BN + (THREADS / BN) * i;
            float v = 0.0f;
            if (L->n_ok && kk < k_end) {
                const int c = conv_div(kk, a->div_khkw), rr = kk - c * a->khkw;
                const int kh = conv_div(rr, a->div_kw), kw = rr - kh * a->k_w;
                const int th = L->base_h - kh * a->dil_h, tw = L->base_w - kw * a->dil_w;
                if (th >= 0 && tw >= 0) {
                    const int oh = conv_div(th, a->div_stride_h), ow = conv_div(tw, a->div_stride_w);
                    if (oh * a->stride_h == th && ow * a->stride_w == tw && oh < a->out_h && ow < a->out_w)
                        v = L->src[c * a->out_hw + oh * a->out_w + ow];
                }
            }
            b_stage[i] = v;
        }
    } else {
        const int k = k0 + t % CONV_BK;  // (b, oh, ow), shared by this thread's A and B slots
        const int ok = k < k_end;
        const int kk = ok ? k : 0;
        const int b = conv_div(kk, a->div_out_hw), p = kk - b * a->out_hw;
        const int oh = conv_div(p, a->div_out_w), ow = p - oh * a->out_w;
        const float *dy_k = a->dy + (int64_t)b * a->y_image + (int64_t)group * a->cout_g * a->out_hw + p;
        CONV_UNROLL
        for (int i = 0; i < BM * CONV_BK / THREADS; i++) {
            const int co = m0 + t / CONV_BK + (THREADS / CONV_BK) * i;
            a_stage[i] = ok && co < a->cout_g ? dy_k[(int64_t)co * a->out_hw] : 0.0f;
        }
        const float *x_b = a->x + (int64_t)b * a->x_image;
        const int ih0 = oh * a->stride_h, iw0 = ow * a->stride_w;
        CONV_UNROLL
        for (int i = 0; i < BN * CONV_BK / THREADS; i++) {
            float v = 0.0f;
            if (ok && L->chan[i] >= 0) {
                const int ih = ih0 + L->off_h[i], iw = iw0 + L->off_w[i];
                if ((unsigned int)ih < (unsigned int)H && (unsigned int)iw < (unsigned int)W)
                    v = x_b[L->chan[i] + ih * W + iw];
            }
            b_stage[i] = v;
        }
    }
}

// Stores a fetched slice into the shared tile S[k][r] (row stride TILE + CONV_PAD), with the same
// slot mapping as conv_fetch: k-contiguous (slot i: r = t/8 + (THREADS/8) i, k = t%8) or
// r-contiguous (r = t%TILE, k = t/TILE + (THREADS/TILE) i).
static __device__ __forceinline__ void conv_stash(const int TILE, const int THREADS, int k_contiguous,
                                                  const float *stage, float *S) {
    const int t = (int)threadIdx.x;
    CONV_UNROLL
    for (int i = 0; i < TILE * CONV_BK / THREADS; i++) {
        int r, k;
        if (k_contiguous) {
            k = t % CONV_BK;
            r = t / CONV_BK + (THREADS / CONV_BK) * i;
        } else {
            r = t % TILE;
            k = t / TILE + (THREADS / TILE) * i;
        }
        S[k * (TILE + CONV_PAD) + r] = stage[i];
    }
}

// acc += this slice's products for the thread's 8 x 8 micro-tile (as gemm_multiply_slice).
static __device__ __forceinline__ void conv_multiply_slice(const int BM, const int BN, const float *As,
                                                           const float *Bs, int tx, int ty, float acc[8][8]) {
    CONV_UNROLL
    for (int kk = 0; kk < CONV_BK; kk++) {
        const float4 a_lo = *(const float4 *)(As + kk * (BM + CONV_PAD) + 4 * ty);
        const float4 a_hi = *(const float4 *)(As + kk * (BM + CONV_PAD) + BM / 2 + 4 * ty);
        const float4 b_lo = *(const float4 *)(Bs + kk * (BN + CONV_PAD) + 4 * tx);
        const float4 b_hi = *(const float4 *)(Bs + kk * (BN + CONV_PAD) + BN / 2 + 4 * tx);
        const float av[8] = {a_lo.x, a_lo.y, a_lo.z, a_lo.w, a_hi.x, a_hi.y, a_hi.z, a_hi.w};
        const float bv[8] = {b_lo.x, b_lo.y, b_lo.z, b_lo.w, b_hi.x, b_hi.y, b_hi.z, b_hi.w};
        CONV_UNROLL
        for (int i = 0; i < 8; i++) {
            CONV_UNROLL
            for (int j = 0; j < 8; j++) acc[i][j] += av[i] * bv[j];
        }
    }
}

// One block: a BM x BN tile of one group's GEMM (blockIdx.x: N tiles, blockIdx.y: M tiles,
// blockIdx.z: group, and for the filter gradient group + groups * split).
static __device__ __forceinline__ void conv_block(const int MODE, const int BM, const int BN, float *As, float *Bs,
                                                  ConvArgs a) {
    const int THREADS = (BM / 8) * (BN / 8);
    const int a_slice = CONV_BK * (BM + CONV_PAD), b_slice = CONV_BK * (BN + CONV_PAD);
    const int tx = (int)threadIdx.x % (BN / 8), ty = (int)threadIdx.x / (BN / 8);
    const int n0 = (int)blockIdx.x * BN, m0 = (int)blockIdx.y * BM;
    const int group = MODE == CONV_BACKWARD_FILTER ? (int)blockIdx.z % a.groups : (int)blockIdx.z;
    const int split = MODE == CONV_BACKWARD_FILTER ? (int)blockIdx.z / a.groups : 0;
    int k_begin = 0, k_end = a.K;
    if (MODE == CONV_BACKWARD_FILTER) {
        k_begin = split * a.k_per_split;
        if (k_end - k_begin > a.k_per_split) k_end = k_begin + a.k_per_split;
    }
    const int b_k_contiguous = MODE == CONV_BACKWARD_FILTER;
    ConvLoader L;
    conv_loader_init(MODE, BN, THREADS, &a, group, n0, &L);

    float acc[8][8];
    CONV_UNROLL
    for (int i = 0; i < 8; i++) {
        CONV_UNROLL
        for (int j = 0; j < 8; j++) acc[i][j] = 0.0f;
    }
    float a_stage[CONV_MAX_SLOTS], b_stage[CONV_MAX_SLOTS];
    const int slices = k_end > k_begin ? (k_end - k_begin + CONV_BK - 1) / CONV_BK : 0;
    if (slices > 0) {
        conv_fetch(MODE, BM, BN, THREADS, &a, &L, group, m0, k_begin, k_end, a_stage, b_stage);
        conv_stash(BM, THREADS, 1, a_stage, As);
        conv_stash(BN, THREADS, b_k_contiguous, b_stage, Bs);
    }
    __syncthreads();  // slice 0 is in buffer 0
    for (int s = 0; s < slices; s++) {
        const int cur = s & 1, more = s + 1 < slices;
        if (more)  // the next slice's loads are in flight during the arithmetic
            conv_fetch(MODE, BM, BN, THREADS, &a, &L, group, m0, k_begin + (s + 1) * CONV_BK, k_end, a_stage,
                       b_stage);
        conv_multiply_slice(BM, BN, As + cur * a_slice, Bs + cur * b_slice, tx, ty, acc);
        if (more) {
            conv_stash(BM, THREADS, 1, a_stage, As + (cur ^ 1) * a_slice);
            conv_stash(BN, THREADS, b_k_contiguous, b_stage, Bs + (cur ^ 1) * b_slice);
        }
        __syncthreads();  // slice s + 1 published, slice s retired
    }

    // Epilogue: the output offset of each of the thread's 8 columns (-1 outside N), then the rows.
    int64_t column[8];
    CONV_UNROLL
    for (int j = 0; j < 8; j++) {
        const int n = n0 + (j < 4 ? 4 * tx + j : BN / 2 + 4 * tx + j - 4);
        if (n >= a.N) {
            column[j] = -1;
        } else if (MODE == CONV_FORWARD) {
            const int b = conv_div(n, a.div_out_hw);
            column[j] = (int64_t)b * a.y_image + (n - b * a.out_hw);
        } else if (MODE == CONV_BACKWARD_DATA) {
            const int b = conv_div(n, a.div_in_hw);
            column[j] = (int64_t)b * a.x_image + (n - b * a.in_hw);
        } else {
            column[j] = n;
        }
    }
    CONV_UNROLL
    for (int i = 0; i < 8; i++) {
        const int m = m0 + (i < 4 ? 4 * ty + i : BM / 2 + 4 * ty + i - 4);
        if (m >= a.M) continue;
        int64_t row;
        float add = 0.0f;
        if (MODE == CONV_FORWARD) {
            const int co = group * a.cout_g + m;
            row = (int64_t)co * a.out_hw;
            if (a.bias) add = a.bias[co];
        } else if (MODE == CONV_BACKWARD_DATA) {
            row = (int64_t)(group * a.cin_g + m) * a.in_hw;
        } else {
            row = ((int64_t)split * a.c_out + group * a.cout_g + m) * a.kg;
        }
        CONV_UNROLL
        for (int j = 0; j < 8; j++) {
            if (column[j] < 0) continue;
            float v = acc[i][j];
            if (MODE == CONV_FORWARD && a.bias) v += add;
            a.out[row + column[j]] = v;
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Kernels: each pass with 128 x 128 tiles (256 threads) and 64 x 64 tiles (64 threads).
// ------------------------------------------------------------------------------------------------

__global__ void __launch_bounds__(256, 2) conv2d_forward_tile128_kernel(ConvArgs a) {
    __shared__ __align__(16) float As[2 * CONV_BK * (128 + CONV_PAD)];
    __shared__ __align__(16) float Bs[2 * CONV_BK * (128 + CONV_PAD)];
    conv_block(CONV_FORWARD, 128, 128, As, Bs, a);
}
CU_KERNEL_ARGS(conv2d_forward_tile128_kernel, ConvArgs);

__global__ void __launch_bounds__(64) conv2d_forward_tile64_kernel(ConvArgs a) {
    __shared__ __align__(16) float As[2 * CONV_BK * (64 + CONV_PAD)];
    __shared__ __align__(16) float Bs[2 * CONV_BK * (64 + CONV_PAD)];
    conv_block(CONV_FORWARD, 64, 64, As, Bs, a);
}
CU_KERNEL_ARGS(conv2d_forward_tile64_kernel, ConvArgs);

__global__ void __launch_bounds__(256, 2) conv2d_backward_data_tile128_kernel(ConvArgs a) {
    __shared__ __align__(16) float As[2 * CONV_BK * (128 + CONV_PAD)];
    __shared__ __align__(16) float Bs[2 * CONV_BK * (128 + CONV_PAD)];
    conv_block(CONV_BACKWARD_DATA, 128, 128, As, Bs, a);
}
CU_KERNEL_ARGS(conv2d_backward_data_tile128_kernel, ConvArgs);

__global__ void __launch_bounds__(64) conv2d_backward_data_tile64_kernel(ConvArgs a) {
    __shared__ __align__(16) float As[2 * CONV_BK * (64 + CONV_PAD)];
    __shared__ __align__(16) float Bs[2 * CONV_BK * (64 + CONV_PAD)];
    conv_block(CONV_BACKWARD_DATA, 64, 64, As, Bs, a);
}
CU_KERNEL_ARGS(conv2d_backward_data_tile64_kernel, ConvArgs);

__global__ void __launch_bounds__(256, 2) conv2d_backward_filter_tile128_kernel(ConvArgs a) {
    __shared__ __align__(16) float As[2 * CONV_BK * (128 + CONV_PAD)];
    __shared__ __align__(16) float Bs[2 * CONV_BK * (128 + CONV_PAD)];
    conv_block(CONV_BACKWARD_FILTER, 128, 128, As, Bs, a);
}
CU_KERNEL_ARGS(conv2d_backward_filter_tile128_kernel, ConvArgs);

__global__ void __launch_bounds__(64) conv2d_backward_filter_tile64_kernel(ConvArgs a) {
    __shared__ __align__(16) float As[2 * CONV_BK * (64 + CONV_PAD)];
    __shared__ __align__(16) float Bs[2 * CONV_BK * (64 + CONV_PAD)];
    conv_block(CONV_BACKWARD_FILTER, 64, 64, As, Bs, a);
}
CU_KERNEL_ARGS(conv2d_backward_filter_tile64_kernel, ConvArgs);

// out[i] = sum over s < splits of partial[s * n + i], in split order (0 when splits == 0).
__global__ void conv2d_sum_splits_kernel(const float *__restrict__ partial, float *__restrict__ out, int64_t n,
                                         int splits) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float sum = 0.0f;
        for (int s = 0; s < splits; s++) sum += partial[s * n + i];
        out[i] = sum;
    }
}
CU_KERNEL_ARGS(conv2d_sum_splits_kernel, const float *, float *, int64_t, int);

// Bias gradient, first pass: block (co, split) sums dy[b, co, :, :] over images
// [split * images_per_split, ...) into out[split * Cout + co]: a per-thread sum in a fixed stride,
// then a warp-shuffle and shared-memory tree (blockDim.x == CONV_BIAS_THREADS).
__global__ void __launch_bounds__(CONV_BIAS_THREADS) conv2d_bias_partial_kernel(const float *__restrict__ dy,
                                                                                float *__restrict__ out,
                                                                                ConvArgs a, int images_per_split) {
    __shared__ float warp_sums[CONV_BIAS_THREADS / 32];
    const int co = (int)blockIdx.x, split = (int)blockIdx.y;
    const int lane = (int)threadIdx.x % 32, warp = (int)threadIdx.x / 32;
    const int b0 = split * images_per_split;
    const int b1 = b0 + images_per_split < a.batch ? b0 + images_per_split : a.batch;
    const int count = (b1 - b0) * a.out_hw;  // < 2^31: B * OH * OW fits in int (checked)
    const float *base = dy + (int64_t)b0 * a.y_image + (int64_t)co * a.out_hw;
    float sum = 0.0f;
    for (int e = (int)threadIdx.x; e < count; e += CONV_BIAS_THREADS) {
        const int b = conv_div(e, a.div_out_hw);
        sum += base[(int64_t)b * a.y_image + (e - b * a.out_hw)];
    }
    for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_down_sync(CONV_FULL_MASK, sum, offset);
    if (lane == 0) warp_sums[warp] = sum;
    __syncthreads();
    if (warp == 0) {
        float v = lane < CONV_BIAS_THREADS / 32 ? warp_sums[lane] : 0.0f;
        for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(CONV_FULL_MASK, v, offset);
        if (lane == 0) out[(int64_t)split * a.c_out + co] = v;
    }
}
CU_KERNEL_ARGS(conv2d_bias_partial_kernel, const float *, float *, ConvArgs, int);

// ------------------------------------------------------------------------------------------------
// Host side: geometry, plans, launchers.
// ------------------------------------------------------------------------------------------------

static int conv_tile_override, conv_split_override;

// Aborts with one line: geometries the launchers cannot take are the caller's bug.
static void conv_fatal(const char *what, long long value) {
    fprintf(stderr, "error: kernels/conv.cu: %s (%lld)\n", what, value);
    exit(1);
}

CU_EXTERN_C void conv2d_set_tile_override(int tile) {
    if (tile != 0 && tile != 64 && tile != 128) conv_fatal("tile override must be 0, 64 or 128", tile);
    conv_tile_override = tile;
}

CU_EXTERN_C void conv2d_set_split_override(int splits) {
    if (splits < 0) conv_fatal("split override must be >= 0", splits);
    conv_split_override = splits;
}

static ConvFastDiv conv_fast_div(int64_t divisor) {
    ConvFastDiv d;
    d.divisor = (unsigned int)divisor;
    d.multiplier = 0;
    d.shift = 0;
    if (divisor > 1) {
        unsigned int log2_ceil = 0;
        while (((int64_t)1 << log2_ceil) < divisor) log2_ceil++;
        const unsigned int p = 31 + log2_ceil;
        d.multiplier = (unsigned int)((((uint64_t)1 << p) + (uint64_t)divisor - 1) / (uint64_t)divisor);
        d.shift = p - 32;
    }
    return d;
}

static void conv_check_int(const char *what, int64_t value) {
    if (value < 0 || value > 0x7fffffff) conv_fatal(what, (long long)value);
}

// Validates the geometry (as op_conv2d does; out_h/out_w as conv_geometry_finish) and fills the
// sizes and divisors shared by every pass. Index arithmetic inside an image is 32-bit.
static ConvArgs conv_args(const ConvGeometry *g) {
    ConvArgs a;
    memset(&a, 0, sizeof a);
    if (g->batch < 0 || g->c_in < 1 || g->c_out < 1 || g->kh < 1 || g->kw < 1 || g->h < 1 || g->w < 1)
        conv_fatal("batch >= 0 and positive channels, kernel and input sizes required", (long long)g->batch);
    if (g->stride_h < 1 || g->stride_w < 1 || g->dilation_h < 1 || g->dilation_w < 1 || g->pad_h < 0 || g->pad_w < 0)
        conv_fatal("stride and dilation must be >= 1, padding >= 0", (long long)g->stride_h);
    if (g->groups < 1 || g->c_in % g->groups || g->c_out % g->groups)
        conv_fatal("groups must divide both channel counts", (long long)g->groups);
    const int64_t out_h = (g->h + 2 * g->pad_h - g->dilation_h * (g->kh - 1) - 1) / g->stride_h + 1;
    const int64_t out_w = (g->w + 2 * g->pad_w - g->dilation_w * (g->kw - 1) - 1) / g->stride_w + 1;
    if (g->out_h != out_h || g->out_w != out_w || out_h < 1 || out_w < 1)
        conv_fatal("out_h/out_w must be conv_geometry_finish's (and positive)", (long long)g->out_h);
    conv_check_int("Cin * H * W must fit in int", g->c_in * g->h * g->w);
    conv_check_int("Cout * OH * OW must fit in int", g->c_out * out_h * out_w);
    conv_check_int("B * H * W must fit in int", g->batch * g->h * g->w);
    conv_check_int("B * OH * OW must fit in int", g->batch * out_h * out_w);
    conv_check_int("Cout * KH * KW must fit in int", g->c_out * g->kh * g->kw);
    conv_check_int("Cin/groups * KH * KW must fit in int", g->c_in / g->groups * g->kh * g->kw);
    conv_check_int("padded input size must fit in int", (g->h + 2 * g->pad_h) + (g->w + 2 * g->pad_w) +
                                                             g->dilation_h * g->kh + g->dilation_w * g->kw);
    a.batch = (int)g->batch;
    a.c_in = (int)g->c_in;
    a.in_h = (int)g->h;
    a.in_w = (int)g->w;
    a.c_out = (int)g->c_out;
    a.k_h = (int)g->kh;
    a.k_w = (int)g->kw;
    a.out_h = (int)out_h;
    a.out_w = (int)out_w;
    a.stride_h = (int)g->stride_h;
    a.stride_w = (int)g->stride_w;
    a.pad_h = (int)g->pad_h;
    a.pad_w = (int)g->pad_w;
    a.dil_h = (int)g->dilation_h;
    a.dil_w = (int)g->dilation_w;
    a.groups = (int)g->groups;
    a.cin_g = a.c_in / a.groups;
    a.cout_g = a.c_out / a.groups;
    a.khkw = a.k_h * a.k_w;
    a.kg = a.cin_g * a.khkw;
    a.in_hw = a.in_h * a.in_w;
    a.out_hw = a.out_h * a.out_w;
    a.x_image = (int64_t)a.c_in * a.in_hw;
    a.y_image = (int64_t)a.c_out * a.out_hw;
    a.div_khkw = conv_fast_div(a.khkw);
    a.div_kw = conv_fast_div(a.k_w);
    a.div_out_hw = conv_fast_div(a.out_hw);
    a.div_out_w = conv_fast_div(a.out_w);
    a.div_in_hw = conv_fast_div(a.in_hw);
    a.div_in_w = conv_fast_div(a.in_w);
    a.div_stride_h = conv_fast_div(a.stride_h);
    a.div_stride_w = conv_fast_div(a.stride_w);
    return a;
}

// 128 x 128 tiles when M uses more than half of one and they still give enough blocks; else 64.
static int conv_pick_tile(int64_t M, int64_t N, int64_t z) {
    if (conv_tile_override) return conv_tile_override;
    const int64_t big_blocks = ((M + 127) / 128) * ((N + 127) / 128) * z;
    return M > 64 && big_blocks >= CONV_BIG_TILE_MIN_BLOCKS ? 128 : 64;
}

// The filter gradient's GEMM: tile, splits of K = B*OH*OW (a multiple of CONV_BK each).
typedef struct {
    int tile, splits, k_per_split;
} ConvFilterPlan;

static ConvFilterPlan conv_filter_plan(const ConvArgs *a) {
    ConvFilterPlan plan;
    const int64_t K = (int64_t)a->batch * a->out_hw;
    plan.tile = conv_pick_tile(a->cout_g, a->kg, a->groups);
    const int64_t tiles =
        ((a->cout_g + plan.tile - 1) / plan.tile) * (((int64_t)a->kg + plan.tile - 1) / plan.tile) * a->groups;
    int64_t splits;
    if (conv_split_override) {
        splits = conv_split_override;
    } else {
        splits = (CONV_TARGET_BLOCKS + tiles - 1) / tiles;
        if (splits > K / CONV_MIN_SPLIT_K) splits = K / CONV_MIN_SPLIT_K;
        if (splits > CONV_MAX_SPLITS) splits = CONV_MAX_SPLITS;
    }
    if (splits > CONV_MAX_GRID_YZ / a->groups) splits = CONV_MAX_GRID_YZ / a->groups;
    if (splits < 1) splits = 1;
    int64_t per = (K + splits - 1) / splits;
    per = (per + CONV_BK - 1) / CONV_BK * CONV_BK;
    if (per < CONV_BK) per = CONV_BK;
    plan.k_per_split = (int)per;
    plan.splits = K > 0 ? (int)((K + per - 1) / per) : 1;
    return plan;
}

// The bias gradient: images per split and splits.
static void conv_bias_plan(const ConvArgs *a, int *images_per_split, int *splits) {
    int64_t s = conv_split_override ? conv_split_override : (CONV_TARGET_BLOCKS + a->c_out - 1) / a->c_out;
    if (s > a->batch) s = a->batch;
    if (s > CONV_MAX_GRID_YZ) s = CONV_MAX_GRID_YZ;
    if (s < 1) s = 1;
    const int per = a->batch > 0 ? (int)((a->batch + s - 1) / s) : 1;
    *images_per_split = per;
    *splits = a->batch > 0 ? (a->batch + per - 1) / per : 0;
}

static void conv_check_grid(const char *what, int64_t y, int64_t z) {
    if (y > CONV_MAX_GRID_YZ) conv_fatal(what, (long long)y);
    if (z > CONV_MAX_GRID_YZ) conv_fatal("groups (times splits) exceed the grid", (long long)z);
}

static unsigned int conv_blocks(int64_t n, int threads) {
    int64_t blocks = (n + threads - 1) / threads;
    if (blocks > 65535 * 8) blocks = 65535 * 8;  // grid-stride loops cover the rest
    return (unsigned int)(blocks > 0 ? blocks : 1);
}

CU_EXTERN_C void conv2d_forward_launch(const ConvGeometry *g, const float *x, const float *w, const float *bias,
                                       float *y, cudaStream_t stream) {
    ConvArgs a = conv_args(g);
    if (a.batch == 0) return;
    a.x = x;
    a.w = w;
    a.bias = bias;
    a.out = y;
    a.M = a.cout_g;
    a.N = a.batch * a.out_hw;
    a.K = a.kg;
    const int tile = conv_pick_tile(a.M, a.N, a.groups);
    const int64_t gx = (a.N + tile - 1) / tile, gy = (a.M + tile - 1) / tile;
    conv_check_grid("Cout/groups too large for the grid", gy, a.groups);
    if (tile == 128)
        CU_LAUNCH(conv2d_forward_tile128_kernel, DIM3(gx, gy, a.groups), 256, 0, stream, a);
    else
        CU_LAUNCH(conv2d_forward_tile64_kernel, DIM3(gx, gy, a.groups), 64, 0, stream, a);
}

CU_EXTERN_C void conv2d_backward_data_launch(const ConvGeometry *g, const float *w, const float *dy, float *dx,
                                             cudaStream_t stream) {
    ConvArgs a = conv_args(g);
    if (a.batch == 0) return;
    a.w = w;
    a.dy = dy;
    a.out = dx;
    a.M = a.cin_g;
    a.N = a.batch * a.in_hw;
    a.K = a.cout_g * a.khkw;
    const int tile = conv_pick_tile(a.M, a.N, a.groups);
    const int64_t gx = (a.N + tile - 1) / tile, gy = (a.M + tile - 1) / tile;
    conv_check_grid("Cin/groups too large for the grid", gy, a.groups);
    if (tile == 128)
        CU_LAUNCH(conv2d_backward_data_tile128_kernel, DIM3(gx, gy, a.groups), 256, 0, stream, a);
    else
        CU_LAUNCH(conv2d_backward_data_tile64_kernel, DIM3(gx, gy, a.groups), 64, 0, stream, a);
}

CU_EXTERN_C size_t conv2d_backward_filter_workspace_bytes(const ConvGeometry *g) {
    ConvArgs a = conv_args(g);
    ConvFilterPlan plan = conv_filter_plan(&a);
    return plan.splits > 1 ? (size_t)plan.splits * (size_t)a.c_out * (size_t)a.kg * sizeof(float) : 0;
}

CU_EXTERN_C void conv2d_backward_filter_launch(const ConvGeometry *g, const float *x, const float *dy, float *dw,
                                               void *workspace, cudaStream_t stream) {
    ConvArgs a = conv_args(g);
    ConvFilterPlan plan = conv_filter_plan(&a);
    a.x = x;
    a.dy = dy;
    a.out = plan.splits > 1 ? (float *)workspace : dw;
    if (plan.splits > 1 && !workspace) conv_fatal("backward filter needs its workspace", plan.splits);
    a.M = a.cout_g;
    a.N = a.kg;
    a.K = a.batch * a.out_hw;
    a.k_per_split = plan.k_per_split;
    const int64_t gx = (a.N + plan.tile - 1) / plan.tile, gy = (a.M + plan.tile - 1) / plan.tile;
    const int64_t gz = (int64_t)a.groups * plan.splits;
    conv_check_grid("Cout/groups too large for the grid", gy, gz);
    if (plan.tile == 128)
        CU_LAUNCH(conv2d_backward_filter_tile128_kernel, DIM3(gx, gy, gz), 256, 0, stream, a);
    else
        CU_LAUNCH(conv2d_backward_filter_tile64_kernel, DIM3(gx, gy, gz), 64, 0, stream, a);
    if (plan.splits > 1) {
        const int64_t n = (int64_t)a.c_out * a.kg;
        CU_LAUNCH(conv2d_sum_splits_kernel, conv_blocks(n, CONV_REDUCE_THREADS), CONV_REDUCE_THREADS, 0, stream,
                  (const float *)workspace, dw, n, plan.splits);
    }
}

CU_EXTERN_C size_t conv2d_backward_bias_workspace_bytes(const ConvGeometry *g) {
    ConvArgs a = conv_args(g);
    int per, splits;
    conv_bias_plan(&a, &per, &splits);
    return splits > 1 ? (size_t)splits * (size_t)a.c_out * sizeof(float) : 0;
}

CU_EXTERN_C void conv2d_backward_bias_launch(const ConvGeometry *g, const float *dy, float *dbias, void *workspace,
                                             cudaStream_t stream) {
    ConvArgs a = conv_args(g);
    int per, splits;
    conv_bias_plan(&a, &per, &splits);
    if (splits == 0) {  // no images: an empty sum
        CU_LAUNCH(conv2d_sum_splits_kernel, conv_blocks(a.c_out, CONV_REDUCE_THREADS), CONV_REDUCE_THREADS, 0, stream,
                  (const float *)NULL, dbias, (int64_t)a.c_out, 0);
        return;
    }
    if (splits > 1 && !workspace) conv_fatal("backward bias needs its workspace", splits);
    float *partial = splits > 1 ? (float *)workspace : dbias;
    CU_LAUNCH(conv2d_bias_partial_kernel, DIM3(a.c_out, splits, 1), CONV_BIAS_THREADS, 0, stream, dy, partial, a, per);
    if (splits > 1)
        CU_LAUNCH(conv2d_sum_splits_kernel, conv_blocks(a.c_out, CONV_REDUCE_THREADS), CONV_REDUCE_THREADS, 0, stream,
                  (const float *)workspace, dbias, (int64_t)a.c_out, splits);
}
