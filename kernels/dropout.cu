// Dropout drawing from Philox 4x32-10 with engine/rng.c's numbers, and gradient reversal (launchers
// and semantics in kernels/dropout.h; the generator and the word -> number mapping are specified in
// docs/RNG.md).
//
// Thread t of the grid (grid-stride over Philox blocks) computes block first_block + b for
// b = t, t + stride, ... and uses its four words for elements 4b .. 4b + 3, as the CPU fill reads
// word e from block offset + e / 4, lane e % 4. Philox is integer-only and the keep test
// (w >> 8) * 2^-24 < keep_prob is exact in f32, so the decisions are bit-identical to the CPU's.
// Each thread touches four consecutive elements: one 16-byte load and store (float4) when the
// buffers are 16-byte aligned, scalar accesses otherwise and for the last partial block.
#include "kernels/cuda_compat.h"
#include "kernels/dropout.h"

#define DROPOUT_THREADS 256
#define DROPOUT_MAX_BLOCKS 4096

// Random123 philox.h constants: round multipliers and the Weyl sequence added to the key per round.
#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

// The Philox 4x32 bijection with 10 rounds, exactly as Random123's philox4x32_R(10, ctr, key) and
// engine/rng.c's philox4x32_10:
//   round(c, k): (hi0, lo0) = M0 * c[0], (hi1, lo1) = M1 * c[2] (64-bit products),
//                c = (hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0);
//   the key is bumped by (W0, W1) before rounds 2..10.
static __device__ __forceinline__ void philox4x32_10(const uint32_t counter[4], const uint32_t key[2], uint32_t out[4]) {
    uint32_t c0 = counter[0], c1 = counter[1], c2 = counter[2], c3 = counter[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < 10; round++) {
        if (round > 0) {
            k0 += PHILOX_W0;
            k1 += PHILOX_W1;
        }
        const uint32_t hi0 = __umulhi(PHILOX_M0, c0), lo0 = PHILOX_M0 * c0;
        const uint32_t hi1 = __umulhi(PHILOX_M1, c2), lo1 = PHILOX_M1 * c2;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

// The four words of block `block` of stream (seed, rng_stream), per docs/RNG.md:
// key = (seed lo, seed hi), counter = (block lo, block hi, stream lo, stream hi).
static __device__ __forceinline__ void philox_block(uint64_t seed, uint64_t rng_stream, uint64_t block, uint32_t w[4]) {
    uint32_t counter[4], key[2];
    counter[0] = (uint32_t)block;
    counter[1] = (uint32_t)(block >> 32);
    counter[2] = (uint32_t)rng_stream;
    counter[3] = (uint32_t)(rng_stream >> 32);
    key[0] = (uint32_t)seed;
    key[1] = (uint32_t)(seed >> 32);
    philox4x32_10(counter, key, w);
}

// Bernoulli(keep_prob) from one word: rng_u32_to_unit_f32(w) < keep_prob (24 bits, exact in f32).
static __device__ __forceinline__ bool dropout_keep(uint32_t w, float keep_prob) {
    return (float)(w >> 8) * 0x1p-24f < keep_prob;
}

// For element e: mask_e = keep ? scale : 0; out[e] = in[e] * mask_e (in == NULL: out[e] = mask_e);
// keep_mask[e] = keep when keep_mask != NULL. `vectorized`: in, out are 16-byte and keep_mask 4-byte
// aligned, so whole blocks of four use one float4 load/store and one 32-bit mask store.
__global__ void dropout_kernel(const float *__restrict__ in, float *__restrict__ out, uint8_t *__restrict__ keep_mask,
                               int64_t n, float keep_prob, float scale, uint64_t seed, uint64_t rng_stream,
                               uint64_t first_block, int vectorized) {
    const int64_t blocks = (n + 3) / 4;
    for (int64_t b = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; b < blocks; b += (int64_t)gridDim.x * blockDim.x) {
        uint32_t w[4];
        philox_block(seed, rng_stream, first_block + (uint64_t)b, w);
        bool keep[4];
        float mask[4];
        for (int lane = 0; lane < 4; lane++) {
            keep[lane] = dropout_keep(w[lane], keep_prob);
            mask[lane] = keep[lane] ? scale : 0.0f;
        }
        const int64_t e0 = 4 * b;
        if (vectorized && e0 + 4 <= n) {
            float4 value;
            if (in) {
                value = ((const float4 *)in)[b];
                value.x = __fmul_rn(value.x, mask[0]);
                value.y = __fmul_rn(value.y, mask[1]);
                value.z = __fmul_rn(value.z, mask[2]);
                value.w = __fmul_rn(value.w, mask[3]);
            } else {
                value = make_float4(mask[0], mask[1], mask[2], mask[3]);
            }
            ((float4 *)out)[b] = value;
            if (keep_mask)
                ((uint32_t *)keep_mask)[b] = (uint32_t)keep[0] | (uint32_t)keep[1] << 8 | (uint32_t)keep[2] << 16 |
                                             (uint32_t)keep[3] << 24;
        } else {
            for (int lane = 0; lane < 4 && e0 + lane < n; lane++) {
                out[e0 + lane] = in ? __fmul_rn(in[e0 + lane], mask[lane]) : mask[lane];
                if (keep_mask) keep_mask[e0 + lane] = (uint8_t)keep[lane];
            }
        }
    }
}
CU_KERNEL_ARGS(dropout_kernel, const float *, float *, uint8_t *, int64_t, float, float, uint64_t, uint64_t, uint64_t,
               int);

// dx = dy * (-lambda) (engine/cpu/elementwise.h: grad_reverse's derivative is -p0, p0 = (float)lambda).
__global__ void grad_reverse_backward_kernel(const float *__restrict__ dy, float *__restrict__ dx, int64_t n,
                                             float neg_lambda) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        dx[i] = __fmul_rn(dy[i], neg_lambda);
}
CU_KERNEL_ARGS(grad_reverse_backward_kernel, const float *, float *, int64_t, float);

static unsigned int grid_for(int64_t items) {
    int64_t blocks = (items + DROPOUT_THREADS - 1) / DROPOUT_THREADS;
    return (unsigned int)(blocks > DROPOUT_MAX_BLOCKS ? DROPOUT_MAX_BLOCKS : blocks < 1 ? 1 : blocks);
}

static int aligned_to(const void *pointer, unsigned int bytes) { return ((uintptr_t)pointer & (bytes - 1)) == 0; }

// op_dropout's constants: keep with probability (float)(1 - p), kept elements times (float)(1 / (1 - p)).
static void dropout_launch(const float *in, float *out, uint8_t *keep_mask, int64_t n, double p, uint64_t seed,
                           uint64_t rng_stream, uint64_t first_block, cudaStream_t stream) {
    if (n <= 0) return;
    const float keep_prob = (float)(1 - p), scale = p < 1 ? (float)(1 / (1 - p)) : 0.0f;
    const int vectorized = aligned_to(in, 16) && aligned_to(out, 16) && aligned_to(keep_mask, 4);
    CU_LAUNCH(dropout_kernel, grid_for((n + 3) / 4), DROPOUT_THREADS, 0, stream, in, out, keep_mask, n, keep_prob, scale,
              seed, rng_stream, first_block, vectorized);
}

CU_EXTERN_C void dropout_forward_launch(const float *x, float *y, uint8_t *keep_mask, int64_t n, double p, uint64_t seed,
                                        uint64_t rng_stream, uint64_t first_block, cudaStream_t stream) {
    dropout_launch(x, y, keep_mask, n, p, seed, rng_stream, first_block, stream);
}

CU_EXTERN_C void dropout_backward_launch(const float *dy, float *dx, int64_t n, double p, uint64_t seed,
                                         uint64_t rng_stream, uint64_t first_block, cudaStream_t stream) {
    dropout_launch(dy, dx, (uint8_t *)NULL, n, p, seed, rng_stream, first_block, stream);
}

CU_EXTERN_C void dropout_mask_launch(float *mask, int64_t n, double p, uint64_t seed, uint64_t rng_stream,
                                     uint64_t first_block, cudaStream_t stream) {
    dropout_launch((const float *)NULL, mask, (uint8_t *)NULL, n, p, seed, rng_stream, first_block, stream);
}

CU_EXTERN_C void grad_reverse_backward_launch(const float *dy, float *dx, int64_t n, double lambda,
                                              cudaStream_t stream) {
    if (n <= 0) return;
    CU_LAUNCH(grad_reverse_backward_kernel, grid_for(n), DROPOUT_THREADS, 0, stream, dy, dx, n, -(float)lambda);
}
