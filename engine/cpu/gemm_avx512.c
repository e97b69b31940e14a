// AVX-512 sgemm micro-kernel: a 14 x 32 tile of C held in 28 zmm accumulators (zmm0..zmm27).
// Per k step: two aligned loads of the packed B row (32 floats, zmm28/29), 14 broadcasts of the
// packed A column (zmm30/31), 28 FMAs. 28 independent FMA chains cover the 4-cycle FMA latency on
// two FMA ports (needs >= 8); 16 loads per 14 FMA cycles stay under the two 512-bit load ports.
// (Folding the broadcasts into the FMAs as {1to16} operands would need 28 loads per 14 cycles.)
//
// Written as inline assembly because gcc 12, given the same loop in intrinsics, spills accumulators
// to the stack and does not keep the 28-register tile (checked with -S).
#include "engine/cpu/gemm.h"

#if defined(__x86_64__)
#include <immintrin.h>
#include <stdint.h>

#include "engine/cpu/transpose_avx512.h"

#define MR SGEMM_AVX512_MR
#define NR SGEMM_AVX512_NR

static inline __mmask16 lanes(int64_t count) {  // the first min(count, 16) lanes, none if <= 0
    return count >= 16 ? (__mmask16)0xFFFF : count <= 0 ? (__mmask16)0 : (__mmask16)((1u << count) - 1);
}

// How far ahead the packed panels are prefetched, in bytes. A (56 B a step) and B (128 B a step)
// are read once per micro-kernel call, from L2; prefetching ~8 steps ahead hides L2 latency.
#define A_PREFETCH "448"
#define B_PREFETCH "1024"

// One k step at step offset K (0..3 inside the unrolled loop): load the B row, then ROWS(K) does
// one broadcast of A and two FMAs per row of the tile.
#define KROW(I, R0, R1, K)                                                \
    "vbroadcastss " #K "*56+" #I "*4(%[a]), %%zmm30\n\t"                  \
    "vfmadd231ps %%zmm30, %%zmm28, %%zmm" #R0 "\n\t"                      \
    "vfmadd231ps %%zmm30, %%zmm29, %%zmm" #R1 "\n\t"
#define KLOAD(K)                                                          \
    "vmovaps " #K "*128(%[b]), %%zmm28\n\t"                               \
    "vmovaps " #K "*128+64(%[b]), %%zmm29\n\t"                            \
    "prefetcht0 " #K "*56+" A_PREFETCH "(%[a])\n\t"                       \
    "prefetcht0 " #K "*128+" B_PREFETCH "(%[b])\n\t"                      \
    "prefetcht0 " #K "*128+64+" B_PREFETCH "(%[b])\n\t"
#define ROWS4(K) KROW(0, 0, 1, K) KROW(1, 2, 3, K) KROW(2, 4, 5, K) KROW(3, 6, 7, K)
#define ROWS8(K) ROWS4(K) KROW(4, 8, 9, K) KROW(5, 10, 11, K) KROW(6, 12, 13, K) KROW(7, 14, 15, K)
#define ROWS14(K) ROWS8(K) KROW(8, 16, 17, K) KROW(9, 18, 19, K) KROW(10, 20, 21, K) \
    KROW(11, 22, 23, K) KROW(12, 24, 25, K) KROW(13, 26, 27, K)

#define ZERO2(R0, R1) "vpxord %%zmm" #R0 ", %%zmm" #R0 ", %%zmm" #R0 "\n\t" \
                      "vpxord %%zmm" #R1 ", %%zmm" #R1 ", %%zmm" #R1 "\n\t"
#define ZERO4 ZERO2(0, 1) ZERO2(2, 3) ZERO2(4, 5) ZERO2(6, 7)
#define ZERO8 ZERO4 ZERO2(8, 9) ZERO2(10, 11) ZERO2(12, 13) ZERO2(14, 15)
#define ZERO14 ZERO8 ZERO2(16, 17) ZERO2(18, 19) ZERO2(20, 21) ZERO2(22, 23) ZERO2(24, 25) ZERO2(26, 27)

// Row store, beta == 0: C = alpha * acc.
#define STORE0(R0, R1)                                                    \
    "vmulps %%zmm" #R0 ", %%zmm30, %%zmm" #R0 "\n\t"                      \
    "vmulps %%zmm" #R1 ", %%zmm30, %%zmm" #R1 "\n\t"                      \
    "vmovups %%zmm" #R0 ", (%[c])\n\t"                                    \
    "vmovups %%zmm" #R1 ", 64(%[c])\n\t"                                  \
    "add %[ldc_bytes], %[c]\n\t"
// Row store, beta != 0: C = alpha * acc + beta * C.
#define STORE1(R0, R1)                                                    \
    "vmulps (%[c]), %%zmm31, %%zmm28\n\t"                                 \
    "vmulps 64(%[c]), %%zmm31, %%zmm29\n\t"                               \
    "vfmadd231ps %%zmm" #R0 ", %%zmm30, %%zmm28\n\t"                      \
    "vfmadd231ps %%zmm" #R1 ", %%zmm30, %%zmm29\n\t"                      \
    "vmovups %%zmm28, (%[c])\n\t"                                         \
    "vmovups %%zmm29, 64(%[c])\n\t"                                       \
    "add %[ldc_bytes], %[c]\n\t"
#define STORES4(S) S(0, 1) S(2, 3) S(4, 5) S(6, 7)
#define STORES8(S) STORES4(S) S(8, 9) S(10, 11) S(12, 13) S(14, 15)
#define STORES14(S) STORES8(S) S(16, 17) S(18, 19) S(20, 21) S(22, 23) S(24, 25) S(26, 27)

// A tile of ROWS x 32: C[0:ROWS, 0:32] = alpha * A @ B + beta * C (beta == 0: C not read), reading
// the first ROWS of each 14-float step of the packed A panel. ROWS = 14 is the kernel; 8 and 4 serve
// the last row panel of M = 64, 128, 256, 512 (M mod 14 = 8, 2, 4, 8), which the 14-row tile would
// compute in full (at M = 64, 6 of the 70 rows computed were padding: 9% of the FMAs).
#define DEFINE_MICRO_TILE(name, ZERO, ROWS, STORES)                                                    \
    __attribute__((target("avx512f"))) static void name(int64_t kc, const float *a, const float *b,  \
                                                         float *c, int64_t ldc, float alpha,         \
                                                         float beta) {                                \
        int64_t k_blocks = kc / 4, k_rest = kc % 4;                                                   \
        int64_t ldc_bytes = ldc * (int64_t)sizeof(float);                                             \
        int64_t beta_nonzero = beta != 0.0f;                                                          \
        __asm__ volatile(                                                                             \
            ZERO                                                                                      \
            "test %[k_blocks], %[k_blocks]\n\t"                                                       \
            "jz 2f\n\t"                                                                               \
            ".p2align 5\n"                                                                            \
            "1:\n\t"                                                                                  \
            KLOAD(0) ROWS(0) KLOAD(1) ROWS(1) KLOAD(2) ROWS(2) KLOAD(3) ROWS(3)                       \
            "add $224, %[a]\n\t"                                                                      \
            "add $512, %[b]\n\t"                                                                      \
            "dec %[k_blocks]\n\t"                                                                     \
            "jnz 1b\n"                                                                                \
            "2:\n\t"                                                                                  \
            "test %[k_rest], %[k_rest]\n\t"                                                           \
            "jz 4f\n"                                                                                 \
            "3:\n\t"                                                                                  \
            KLOAD(0) ROWS(0)                                                                          \
            "add $56, %[a]\n\t"                                                                       \
            "add $128, %[b]\n\t"                                                                      \
            "dec %[k_rest]\n\t"                                                                       \
            "jnz 3b\n"                                                                                \
            "4:\n\t"                                                                                  \
            "vbroadcastss %[alpha], %%zmm30\n\t"                                                      \
            "test %[beta_nonzero], %[beta_nonzero]\n\t"                                               \
            "jnz 5f\n\t"                                                                              \
            STORES(STORE0)                                                                            \
            "jmp 6f\n"                                                                                \
            "5:\n\t"                                                                                  \
            "vbroadcastss %[beta], %%zmm31\n\t"                                                       \
            STORES(STORE1)                                                                            \
            "6:\n\t"                                                                                  \
            : [a] "+r"(a), [b] "+r"(b), [c] "+r"(c), [k_blocks] "+r"(k_blocks), [k_rest] "+r"(k_rest) \
            : [ldc_bytes] "r"(ldc_bytes), [alpha] "m"(alpha), [beta] "m"(beta),                       \
              [beta_nonzero] "r"(beta_nonzero)                                                        \
            : "cc", "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8",  \
              "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17",          \
              "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23", "xmm24", "xmm25", "xmm26",         \
              "xmm27", "xmm28", "xmm29", "xmm30", "xmm31");                                           \
    }

DEFINE_MICRO_TILE(micro_avx512_full, ZERO14, ROWS14, STORES14)
DEFINE_MICRO_TILE(micro_avx512_rows8, ZERO8, ROWS8, STORES8)
DEFINE_MICRO_TILE(micro_avx512_rows4, ZERO4, ROWS4, STORES4)

__attribute__((target("avx512f")))
void sgemm_micro_avx512(int64_t kc, const float *a_panel, const float *b_panel, float *c, int64_t ldc,
                        int m, int n, float alpha, float beta) {
    // Bring the C tile in while the k loop runs: without this the epilogue waits on 28 cache misses
    // (C rows are a whole matrix row apart, so the hardware prefetcher does not help).
    for (int i = 0; i < m; i++) {
        __builtin_prefetch(c + i * ldc, 1, 3);
        __builtin_prefetch(c + i * ldc + NR - 1, 1, 3);
    }
    // The smallest tile that covers m rows.
    void (*tile_kernel)(int64_t, const float *, const float *, float *, int64_t, float, float) =
        m <= 4 ? micro_avx512_rows4 : m <= 8 ? micro_avx512_rows8 : micro_avx512_full;
    const int tile_rows = m <= 4 ? 4 : m <= 8 ? 8 : MR;
    if (m == tile_rows && n == NR) {
        tile_kernel(kc, a_panel, b_panel, c, ldc, alpha, beta);
        return;
    }
    // Edge tile: compute the padded tile into a local buffer, then merge the valid part with
    // masked row stores.
    _Alignas(64) float tile[MR * NR];
    tile_kernel(kc, a_panel, b_panel, tile, NR, 1.0f, 0.0f);
    __mmask16 mask0 = lanes(n), mask1 = lanes(n - 16);
    __m512 valpha = _mm512_set1_ps(alpha), vbeta = _mm512_set1_ps(beta);
    for (int i = 0; i < m; i++) {
        float *c_row = c + i * ldc;
        __m512 t0 = _mm512_mul_ps(valpha, _mm512_load_ps(tile + i * NR));
        __m512 t1 = _mm512_mul_ps(valpha, _mm512_load_ps(tile + i * NR + 16));
        if (beta != 0.0f) {
            t0 = _mm512_fmadd_ps(vbeta, _mm512_maskz_loadu_ps(mask0, c_row), t0);
            t1 = _mm512_fmadd_ps(vbeta, _mm512_maskz_loadu_ps(mask1, c_row + 16), t1);
        }
        _mm512_mask_storeu_ps(c_row, mask0, t0);
        _mm512_mask_storeu_ps(c_row + 16, mask1, t1);
    }
}


// ---- Packing with AVX-512 (same layouts as the plain C packing in gemm.c) ----


__attribute__((target("avx512f")))
void sgemm_pack_runs_avx512(const float *src, int64_t stride, int64_t length, int64_t kc, int width,
                            float *dst) {
    int64_t full = length / width, rest = length - full * width;
    __mmask16 w0 = lanes(width), w1 = lanes(width - 16);
    __mmask16 r0 = lanes(rest), r1 = lanes(rest - 16);
    int64_t panel = kc * width;
    for (int64_t k = 0; k < kc; k++) {
        const float *s = src + k * stride;
        _mm_prefetch((const char *)(s + 4 * stride), _MM_HINT_T0);
        _mm_prefetch((const char *)(s + 4 * stride + length - 1), _MM_HINT_T0);
        float *d = dst + k * width;
        if (width == 32) {
            for (int64_t p = 0; p < full; p++) {
                _mm512_storeu_ps(d + p * panel, _mm512_loadu_ps(s + p * 32));
                _mm512_storeu_ps(d + p * panel + 16, _mm512_loadu_ps(s + p * 32 + 16));
            }
        } else {
            for (int64_t p = 0; p < full; p++) {
                _mm512_mask_storeu_ps(d + p * panel, w0, _mm512_maskz_loadu_ps(w0, s + p * width));
                if (w1) _mm512_mask_storeu_ps(d + p * panel + 16, w1, _mm512_maskz_loadu_ps(w1, s + p * width + 16));
            }
        }
        if (rest) {  // the partial last piece, zero-padded to the full width
            float *dp = d + full * panel;
            const float *sp = s + full * width;
            _mm512_mask_storeu_ps(dp, w0, _mm512_maskz_loadu_ps(r0, sp));
            if (w1) _mm512_mask_storeu_ps(dp + 16, w1, _mm512_maskz_loadu_ps(r1, sp + 16));
        }
    }
}

__attribute__((target("avx512f")))
void sgemm_pack_rows_avx512(const float *src, int64_t stride, int count, int64_t kc, int width,
                            float *dst) {
    // Groups of 16 rows, 16 k at a time: load 16 row pieces, transpose, store 16 k-slices.
    for (int g = 0; g * 16 < width; g++) {
        __mmask16 store_mask = lanes(width - g * 16);
        int rows = count - g * 16;
        if (rows > 16) rows = 16;
        for (int64_t k0 = 0; k0 < kc; k0 += 16) {
            int64_t steps = kc - k0 < 16 ? kc - k0 : 16;
            __mmask16 k_mask = lanes(steps);
            __m512 in[16], out[16];
#pragma GCC unroll 16
            for (int r = 0; r < 16; r++)
                in[r] = r < rows ? _mm512_maskz_loadu_ps(k_mask, src + (g * 16 + r) * stride + k0)
                                 : _mm512_setzero_ps();
            transpose16(in, out);
            float *d = dst + k0 * width + g * 16;
            for (int64_t kk = 0; kk < steps; kk++) _mm512_mask_storeu_ps(d + kk * width, store_mask, out[kk]);
        }
    }
}

// ---- Small GEMMs straight from A and B, no packing ----

// op(B) = B (any op(A)): blocks of 4 rows x 32 columns of C in 8 accumulators (enough independent
// FMA chains for two ports), one masked row of B and 4 broadcasts of op(A) per k.
__attribute__((target("avx512f")))
static void small_b_rows(int trans_a, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                         int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    __m512 valpha = _mm512_set1_ps(alpha), vbeta = _mm512_set1_ps(beta);
    int64_t a_k_step = trans_a ? lda : 1;
    for (int64_t i0 = 0; i0 < M; i0 += 4) {
        int rows = M - i0 < 4 ? (int)(M - i0) : 4;
        const float *a_row[4];
        for (int r = 0; r < 4; r++) {  // rows past M repeat the last one and are not stored
            int64_t i = i0 + (r < rows ? r : rows - 1);
            a_row[r] = trans_a ? A + i : A + i * lda;
        }
        for (int64_t j0 = 0; j0 < N; j0 += 32) {
            __mmask16 mask0 = lanes(N - j0), mask1 = lanes(N - j0 - 16);
            __m512 acc[4][2];
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
            for (int64_t k = 0; k < K; k++) {
                __m512 b0 = _mm512_maskz_loadu_ps(mask0, B + k * ldb + j0);
                __m512 b1 = _mm512_maskz_loadu_ps(mask1, B + k * ldb + j0 + 16);
#pragma GCC unroll 4
                for (int r = 0; r < 4; r++) {
                    __m512 a = _mm512_set1_ps(a_row[r][k * a_k_step]);
                    acc[r][0] = _mm512_fmadd_ps(a, b0, acc[r][0]);
                    acc[r][1] = _mm512_fmadd_ps(a, b1, acc[r][1]);
                }
            }
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++) {
                if (r >= rows) break;
                float *c = C + (i0 + r) * ldc + j0;
                __m512 c0 = _mm512_mul_ps(valpha, acc[r][0]), c1 = _mm512_mul_ps(valpha, acc[r][1]);
                if (beta != 0.0f) {
                    c0 = _mm512_fmadd_ps(vbeta, _mm512_maskz_loadu_ps(mask0, c), c0);
                    c1 = _mm512_fmadd_ps(vbeta, _mm512_maskz_loadu_ps(mask1, c + 16), c1);
                }
                _mm512_mask_storeu_ps(c, mask0, c0);
                _mm512_mask_storeu_ps(c + 16, mask1, c1);
            }
        }
    }
}

// op(A) = A, op(B) = B^T: C[i][j] is a dot product of two contiguous rows; 4 of them at a time.
__attribute__((target("avx512f")))
static void small_dots(int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                       const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    for (int64_t i = 0; i < M; i++) {
        const float *a_row = A + i * lda;
        for (int64_t j0 = 0; j0 < N; j0 += 4) {
            int cols = N - j0 < 4 ? (int)(N - j0) : 4;
            const float *b_row[4];
            for (int q = 0; q < 4; q++) b_row[q] = B + (j0 + (q < cols ? q : cols - 1)) * ldb;
            __m512 acc[4];
#pragma GCC unroll 4
            for (int q = 0; q < 4; q++) acc[q] = _mm512_setzero_ps();
            for (int64_t k0 = 0; k0 < K; k0 += 16) {
                __mmask16 mask = lanes(K - k0);
                __m512 a = _mm512_maskz_loadu_ps(mask, a_row + k0);
#pragma GCC unroll 4
                for (int q = 0; q < 4; q++)
                    acc[q] = _mm512_fmadd_ps(a, _mm512_maskz_loadu_ps(mask, b_row[q] + k0), acc[q]);
            }
            float *c = C + i * ldc + j0;
            for (int q = 0; q < cols; q++) {
                float dot = alpha * _mm512_reduce_add_ps(acc[q]);
                c[q] = beta == 0.0f ? dot : dot + beta * c[q];
            }
        }
    }
}

int sgemm_small_avx512(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                       const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                       int64_t ldc, float *scratch) {
    if (!trans_b) {
        small_b_rows(trans_a, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return 1;
    }
    if (!trans_a && (M < 4 || !scratch)) {  // few rows: dot products beat transposing B
        small_dots(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return 1;
    }
    if (!scratch) return 0;
    for (int64_t j = 0; j < N; j++)  // scratch = op(B) = B^T, K x N
        for (int64_t k = 0; k < K; k++) scratch[k * N + j] = B[j * ldb + k];
    small_b_rows(trans_a, M, N, K, alpha, A, lda, scratch, N, beta, C, ldc);
    return 1;
}

#else
typedef int sgemm_avx512_unused;  // ISO C wants at least one declaration in a translation unit
#endif
