// Launchers of the handwritten single-precision GEMM (kernels/gemm.cu): the fallback to cuBLAS on a
// GPU and the GEMM of the emulated device. Plain C, includable from engine code and from
// nvcc-compiled sources.
//
// Semantics and argument order are exactly those of engine/cpu/gemm.h's sgemm / sgemm_batched
// (row-major, like C arrays):
//   C[M,N] = alpha * op(A) @ op(B) + beta * C
// op(A) is M x K: A is M x K with row stride lda when trans_a == 0, or K x M (op(A) = A^T) when
// trans_a != 0; likewise op(B) is K x N (B is N x K when trans_b != 0). beta == 0 means C is
// write-only: it is never read (it may hold NaN). K == 0 or alpha == 0 gives C = beta * C without
// reading A or B (as the CPU). M, N, K must fit in int (as cuBLAS); leading dimensions and batch
// strides are 64-bit element counts. The batched form runs `batch` independent GEMMs, matrix i at
// A + i * stride_a (likewise B, C); stride 0 broadcasts one A or B to every matrix.
//
// Numerics: every C element is one f32 dot product accumulated in k order (one multiply-add per k)
// by one thread: deterministic, independent of the launch configuration and thread order. The CPU
// GEMM blocks K differently, so results agree to f32 rounding (about K * 2^-24 relative to the
// sum of |a * b|), not bitwise. nvcc contracts the multiply-add into an FMA; the emulator does not.
//
// All pointers are device pointers; work is ordered on `stream`.
#pragma once
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// As the CUDA runtime spells it (an identical typedef may be repeated in C11 and C++).
typedef struct CUstream_st *cudaStream_t;

void sgemm_launch(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                  int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc, cudaStream_t stream);

void sgemm_strided_batched_launch(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                                  const float *A, int64_t lda, int64_t stride_a, const float *B, int64_t ldb,
                                  int64_t stride_b, float beta, float *C, int64_t ldc, int64_t stride_c,
                                  int64_t batch, cudaStream_t stream);

// For tests and benchmarks: forces the block tile (64: 64x64 tiles, 64 threads; 128: 128x128 tiles,
// 256 threads); 0 returns to the automatic choice (128 when it still gives enough blocks to fill a
// large GPU, else 64). Process-wide; not thread-safe against concurrent launches.
void sgemm_set_tile_override(int tile);

#ifdef __cplusplus
}
#endif
