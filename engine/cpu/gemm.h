// CPU matrix multiply: a cache-blocked, packed single-precision GEMM (GotoBLAS/BLIS structure with
// hand-written AVX-512 / AVX2 micro-kernels chosen at run time, plain C elsewhere), and a simpler
// blocked double-precision GEMM for f64 gradient checks. Row-major, like C arrays.
// Threads: OpenMP with omp_get_max_threads(); single-threaded when called inside an active
// parallel region.
#pragma once
#include <stdint.h>

// C[M,N] = alpha * op(A) @ op(B) + beta * C, row-major. op(A) is M x K: A is M x K with row stride lda
// when trans_a == 0, or K x M (so op(A) = A^T) when trans_a != 0; likewise op(B) is K x N.
// beta == 0 means C is write-only (it may hold NaN/garbage and must not be read).
void sgemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
           const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);

// Same for a batch of independent GEMMs at fixed element strides between consecutive matrices
// (stride 0 allowed for A or B = broadcast). Parallel over the batch when it is large, inside each
// GEMM otherwise.
void sgemm_batched(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                   const float *A, int64_t lda, int64_t stride_a, const float *B, int64_t ldb,
                   int64_t stride_b, float beta, float *C, int64_t ldc, int64_t stride_c, int64_t batch);

// Double precision, for f64 gradient checks: simple blocking + OpenMP, no intrinsics.
void dgemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, double alpha,
           const double *A, int64_t lda, const double *B, int64_t ldb, double beta, double *C, int64_t ldc);
void dgemm_batched(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, double alpha,
                   const double *A, int64_t lda, int64_t stride_a, const double *B, int64_t ldb,
                   int64_t stride_b, double beta, double *C, int64_t ldc, int64_t stride_c, int64_t batch);

// Which micro-kernel sgemm uses: "avx512", "avx2" or "generic".
const char *sgemm_kernel_name(void);
// Forces one micro-kernel (for tests and benchmarks); returns 0 if it is unknown or this CPU lacks
// it (the choice is then unchanged). NULL goes back to the automatic choice and returns 1.
int sgemm_force_kernel(const char *name);

// ---- Internal: shared between gemm.c and the micro-kernel files, not for other callers. ----

// Micro-kernel: C[0:m, 0:n] = alpha * Apanel @ Bpanel + beta * C (beta == 0: C is not read), where
// Apanel is kc x MR packed (MR consecutive floats per k, rows past m are zero) and Bpanel is kc x NR
// packed (NR consecutive floats per k, columns past n are zero); m <= MR, n <= NR. Both panels are
// 64-byte aligned.
typedef void (*SgemmMicroKernel)(int64_t kc, const float *a_panel, const float *b_panel, float *c,
                                 int64_t ldc, int m, int n, float alpha, float beta);

#if defined(__x86_64__)
#define SGEMM_AVX512_MR 14
#define SGEMM_AVX512_NR 32
void sgemm_micro_avx512(int64_t kc, const float *a_panel, const float *b_panel, float *c, int64_t ldc,
                        int m, int n, float alpha, float beta);
// Packing helpers (layouts as in gemm.c; width <= 32): kc contiguous runs of `length` floats
// (stride apart) cut into zero-padded pieces of `width` -> dst[piece*kc*width + k*width + j];
// and `count` rows (stride apart, kc long) interleaved -> dst[k*width + row], zero-padded.
void sgemm_pack_runs_avx512(const float *src, int64_t stride, int64_t length, int64_t kc, int width,
                            float *dst);
void sgemm_pack_rows_avx512(const float *src, int64_t stride, int count, int64_t kc, int width,
                            float *dst);
// Small GEMM without packing (K >= 1, alpha != 0). op(B) = B^T is first transposed into scratch
// (K x N floats), or computed as dot products when op(A) = A and M < 4 or scratch is NULL; returns
// 0 (nothing done) for A^T B^T without scratch.
int sgemm_small_avx512(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                       const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                       int64_t ldc, float *scratch);
#define SGEMM_AVX2_MR 6
#define SGEMM_AVX2_NR 16
void sgemm_micro_avx2(int64_t kc, const float *a_panel, const float *b_panel, float *c, int64_t ldc,
                      int m, int n, float alpha, float beta);
#endif
