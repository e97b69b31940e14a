// AVX2 + FMA sgemm micro-kernel: a 6 x 16 tile of C in 12 ymm accumulators; per k step two loads
// of packed B (16 floats), 6 broadcasts of packed A, 12 FMAs. 12 accumulators + 2 B + 1 broadcast
// = 15 of the 16 ymm registers (the classic Haswell shape: 12 chains >= 2 ports x 5 cycles latency).
#include "engine/cpu/gemm.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define MR SGEMM_AVX2_MR
#define NR SGEMM_AVX2_NR

__attribute__((target("avx2,fma")))
static void micro_avx2_full(int64_t kc, const float *a, const float *b, float *c, int64_t ldc,
                            float alpha, float beta) {
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
    __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
    __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
    __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
    __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
    __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
    for (int64_t k = 0; k < kc; k++) {
        __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
        _mm_prefetch((const char *)(b + 8 * NR), _MM_HINT_T0);
        __m256 ai;
        ai = _mm256_broadcast_ss(a + 0);
        c00 = _mm256_fmadd_ps(ai, b0, c00); c01 = _mm256_fmadd_ps(ai, b1, c01);
        ai = _mm256_broadcast_ss(a + 1);
        c10 = _mm256_fmadd_ps(ai, b0, c10); c11 = _mm256_fmadd_ps(ai, b1, c11);
        ai = _mm256_broadcast_ss(a + 2);
        c20 = _mm256_fmadd_ps(ai, b0, c20); c21 = _mm256_fmadd_ps(ai, b1, c21);
        ai = _mm256_broadcast_ss(a + 3);
        c30 = _mm256_fmadd_ps(ai, b0, c30); c31 = _mm256_fmadd_ps(ai, b1, c31);
        ai = _mm256_broadcast_ss(a + 4);
        c40 = _mm256_fmadd_ps(ai, b0, c40); c41 = _mm256_fmadd_ps(ai, b1, c41);
        ai = _mm256_broadcast_ss(a + 5);
        c50 = _mm256_fmadd_ps(ai, b0, c50); c51 = _mm256_fmadd_ps(ai, b1, c51);
        a += MR;
        b += NR;
    }
    __m256 acc[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
    __m256 valpha = _mm256_set1_ps(alpha);
    if (beta == 0.0f) {
        for (int i = 0; i < MR; i++) {
            _mm256_storeu_ps(c + i * ldc, _mm256_mul_ps(valpha, acc[i][0]));
            _mm256_storeu_ps(c + i * ldc + 8, _mm256_mul_ps(valpha, acc[i][1]));
        }
    } else {
        __m256 vbeta = _mm256_set1_ps(beta);
        for (int i = 0; i < MR; i++) {
            __m256 c0 = _mm256_mul_ps(vbeta, _mm256_loadu_ps(c + i * ldc));
            __m256 c1 = _mm256_mul_ps(vbeta, _mm256_loadu_ps(c + i * ldc + 8));
            _mm256_storeu_ps(c + i * ldc, _mm256_fmadd_ps(valpha, acc[i][0], c0));
            _mm256_storeu_ps(c + i * ldc + 8, _mm256_fmadd_ps(valpha, acc[i][1], c1));
        }
    }
}

void sgemm_micro_avx2(int64_t kc, const float *a_panel, const float *b_panel, float *c, int64_t ldc,
                      int m, int n, float alpha, float beta) {
    if (m == MR && n == NR) {
        micro_avx2_full(kc, a_panel, b_panel, c, ldc, alpha, beta);
        return;
    }
    // Edge tile: compute the whole padded tile into a local buffer, then merge the valid part.
    _Alignas(32) float tile[MR * NR];
    micro_avx2_full(kc, a_panel, b_panel, tile, NR, 1.0f, 0.0f);
    for (int i = 0; i < m; i++) {
        float *c_row = c + i * ldc;
        const float *t_row = tile + i * NR;
        if (beta == 0.0f)
            for (int j = 0; j < n; j++) c_row[j] = alpha * t_row[j];
        else
            for (int j = 0; j < n; j++) c_row[j] = alpha * t_row[j] + beta * c_row[j];
    }
}

#else
typedef int sgemm_avx2_unused;  // ISO C wants at least one declaration in a translation unit
#endif
