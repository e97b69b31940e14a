// Handwritten single-precision GEMM (launchers and semantics in kernels/gemm.h): the fallback to
// cuBLAS on a GPU and the GEMM of the emulated device.
//
// Structure (the classic shared-memory SGEMM, as in CUTLASS's SIMT path and llm.c's matmul ladder):
// a block computes a BM x BN tile of C, walking K in slices of GEMM_BK = 8. Each slice of op(A)
// (BM x 8) and op(B) (8 x BN) is loaded from global memory into registers, then stored into shared
// memory transposed to k-major order (As[k][m], Bs[k][n]); every thread then computes an 8 x 8
// register micro-tile of C from float4 reads of those rows. Two tile shapes share one body:
//   128 x 128, 256 threads (16 x 16), for large problems;
//   64 x 64, 64 threads (8 x 8), when 128-tiles would leave a large GPU with too few blocks.
// A thread's micro-tile is split in four 4 x 4 quadrants, rows {4 ty .. 4 ty + 3} and
// {BM/2 + 4 ty ..}, columns likewise, so a warp's float4 reads of Bs are 8 consecutive float4 per
// quarter-warp phase (conflict-free) and its reads of As are broadcasts.
//
// Global loads: whichever of m/n or k is contiguous in memory is spread over consecutive threads, so
// a warp reads whole 32-byte sectors (k-contiguous: 8 threads per row of 8 floats; m/n-contiguous:
// 32 consecutive floats). The shared rows are padded to TILE + 4 floats: the transposed stores of a
// k-contiguous operand (8 k values x 4 rows per warp) then hit 8 * 4 distinct banks, and the float4
// reads stay 16-byte aligned.
//
// Pipelining: two shared buffers. While the block multiplies slice t out of buffer t & 1, each thread
// already holds slice t + 1 in registers (issued before the multiply, so the loads' latency hides
// behind the arithmetic) and stores it into the other buffer; one __syncthreads per slice then both
// publishes slice t + 1 and retires slice t (nobody reads buffer t & 1 again until it is rewritten
// after the next barrier).
//
// Edges: loads outside M, N or K read as 0, stores outside M x N are skipped, so any M, N, K work.
// Grid: x over the M or N tiles, whichever are more (x allows 2^31 - 1 blocks, y 65535), y over the
// others, z over the batch (a grid-stride loop past 65535 matrices).
//
// Tensor cores: none. The engine's contract is plain FP32 (cuBLAS is set up without TF32, gpu.h), and
// a wmma/mma TF32 path would round the inputs to 10-bit mantissas (about 1e-3 relative), which the
// CPU ops and gradient checks would not match. A 3xTF32 split (CUTLASS) would keep FP32 accuracy; it
// would go behind `#ifdef __CUDA_ARCH__`, with this plain path as the fallback the emulator runs.
#include "kernels/cuda_compat.h"
#include "kernels/gemm.h"

#include <stdio.h>
#include <stdlib.h>

#define GEMM_BK 8                   // K slice per step
#define GEMM_PAD 4                  // shared row padding (floats)
#define GEMM_MAX_SLOTS 8            // loads per thread and operand per slice: TILE * BK / THREADS <= 8
#define GEMM_BIG_TILE_MIN_BLOCKS 192  // use 128 x 128 tiles only if that still gives this many blocks
#define GEMM_MAX_GRID_Y 65535

#ifdef __CUDACC__
#define GEMM_UNROLL _Pragma("unroll")
#else
#define GEMM_UNROLL
#endif

// All of a launch's parameters (more than the 16 kernel arguments the emulator takes, and one
// struct is one constant-bank copy on the GPU).
typedef struct GemmArgs {
    const float *A;
    const float *B;
    float *C;
    int64_t lda, ldb, ldc, stride_a, stride_b, stride_c, batch;
    int trans_a, trans_b, M, N, K;
    int n_tiles_in_x;  // grid x runs over N tiles, y over M tiles (else the other way round)
    float alpha, beta;
} GemmArgs;

// ------------------------------------------------------------------------------------------------
// Device helpers.
// ------------------------------------------------------------------------------------------------

// Loads the 8 x TILE slice [k0, k0 + 8) x [r0, r0 + TILE) of an operand into this thread's registers.
// The operand is X (leading dimension ld) with element (r, k) at X[r * ld + k] when k_contiguous,
// else at X[k * ld + r]; r indexes m for op(A) and n for op(B). Outside rows x K it reads 0.
static __device__ __forceinline__ void gemm_fetch(const int TILE, const int THREADS, const float *__restrict__ X,
                                                  int64_t ld, int k_contiguous, int r0, int rows, int k0, int K,
                                                  float *stage) {
    const int t = (int)threadIdx.x;
    GEMM_UNROLL
    for (int i = 0; i < TILE * GEMM_BK / THREADS; i++) {
        int r, k;
        if (k_contiguous) {
            k = t % GEMM_BK;
            r = t / GEMM_BK + (THREADS / GEMM_BK) * i;
        } else {
            r = t % TILE;
            k = t / TILE + (THREADS / TILE) * i;
        }
        r += r0;
        k += k0;
        float v = 0.0f;
        if (r < rows && k < K) v = k_contiguous ? X[(int64_t)r * ld + k] : X[(int64_t)k * ld + r];
        stage[i] = v;
    }
}

// Stores what gemm_fetch loaded into the shared slice S[k][r] (row stride TILE + GEMM_PAD).
static __device__ __forceinline__ void gemm_stash(const int TILE, const int THREADS, int k_contiguous,
                                                  const float *stage, float *S) {
    const int t = (int)threadIdx.x;
    GEMM_UNROLL
    for (int i = 0; i < TILE * GEMM_BK / THREADS; i++) {
        int r, k;
        if (k_contiguous) {
            k = t % GEMM_BK;
            r = t / GEMM_BK + (THREADS / GEMM_BK) * i;
        } else {
            r = t % TILE;
            k = t / TILE + (THREADS / TILE) * i;
        }
        S[k * (TILE + GEMM_PAD) + r] = stage[i];
    }
}

// acc[i][j] += sum over the slice of a[m_i][k] * b[k][n_j] for this thread's 8 x 8 micro-tile
// (rows 4 ty + {0..3} and BM/2 + 4 ty + {0..3}; columns likewise with tx and BN).
static __device__ __forceinline__ void gemm_multiply_slice(const int BM, const int BN, const float *As,
                                                           const float *Bs, int tx, int ty, float acc[8][8]) {
    GEMM_UNROLL
    for (int kk = 0; kk < GEMM_BK; kk++) {
        const float4 a_lo = *(const float4 *)(As + kk * (BM + GEMM_PAD) + 4 * ty);
        const float4 a_hi = *(const float4 *)(As + kk * (BM + GEMM_PAD) + BM / 2 + 4 * ty);
        const float4 b_lo = *(const float4 *)(Bs + kk * (BN + GEMM_PAD) + 4 * tx);
        const float4 b_hi = *(const float4 *)(Bs + kk * (BN + GEMM_PAD) + BN / 2 + 4 * tx);
        const float a[8] = {a_lo.x, a_lo.y, a_lo.z, a_lo.w, a_hi.x, a_hi.y, a_hi.z, a_hi.w};
        const float b[8] = {b_lo.x, b_lo.y, b_lo.z, b_lo.w, b_hi.x, b_hi.y, b_hi.z, b_hi.w};
        GEMM_UNROLL
        for (int i = 0; i < 8; i++) {
            GEMM_UNROLL
            for (int j = 0; j < 8; j++) acc[i][j] += a[i] * b[j];
        }
    }
}

// The whole block: one BM x BN tile of C for every matrix of the batch this block visits.
static __device__ __forceinline__ void gemm_block(const int BM, const int BN, float *As, float *Bs, GemmArgs p) {
    const int THREADS = (BM / 8) * (BN / 8);
    const int a_slice = GEMM_BK * (BM + GEMM_PAD), b_slice = GEMM_BK * (BN + GEMM_PAD);
    const int tx = (int)threadIdx.x % (BN / 8), ty = (int)threadIdx.x / (BN / 8);
    const int m0 = (int)(p.n_tiles_in_x ? blockIdx.y : blockIdx.x) * BM;
    const int n0 = (int)(p.n_tiles_in_x ? blockIdx.x : blockIdx.y) * BN;
    const int a_k_contiguous = !p.trans_a, b_k_contiguous = p.trans_b;
    // alpha == 0 (or K == 0): C = beta * C without reading A and B, as the CPU GEMM.
    const int k_slices = p.alpha == 0.0f ? 0 : (p.K + GEMM_BK - 1) / GEMM_BK;
    const int vector_store = (p.ldc % 4) == 0;
    for (int64_t z = blockIdx.z; z < p.batch; z += gridDim.z) {
        const float *A = p.A + z * p.stride_a, *B = p.B + z * p.stride_b;
        float *C = p.C + z * p.stride_c;
        float acc[8][8];
        GEMM_UNROLL
        for (int i = 0; i < 8; i++) {
            GEMM_UNROLL
            for (int j = 0; j < 8; j++) acc[i][j] = 0.0f;
        }
        float a_stage[GEMM_MAX_SLOTS], b_stage[GEMM_MAX_SLOTS];
        if (k_slices > 0) {
            gemm_fetch(BM, THREADS, A, p.lda, a_k_contiguous, m0, p.M, 0, p.K, a_stage);
            gemm_fetch(BN, THREADS, B, p.ldb, b_k_contiguous, n0, p.N, 0, p.K, b_stage);
            gemm_stash(BM, THREADS, a_k_contiguous, a_stage, As);
            gemm_stash(BN, THREADS, b_k_contiguous, b_stage, Bs);
        }
        __syncthreads();  // slice 0 is in buffer 0
        for (int s = 0; s < k_slices; s++) {
            const int cur = s & 1, more = s + 1 < k_slices;
            if (more) {  // issue the next slice's loads before the arithmetic
                gemm_fetch(BM, THREADS, A, p.lda, a_k_contiguous, m0, p.M, (s + 1) * GEMM_BK, p.K, a_stage);
                gemm_fetch(BN, THREADS, B, p.ldb, b_k_contiguous, n0, p.N, (s + 1) * GEMM_BK, p.K, b_stage);
            }
            gemm_multiply_slice(BM, BN, As + cur * a_slice, Bs + cur * b_slice, tx, ty, acc);
            if (more) {
                gemm_stash(BM, THREADS, a_k_contiguous, a_stage, As + (cur ^ 1) * a_slice);
                gemm_stash(BN, THREADS, b_k_contiguous, b_stage, Bs + (cur ^ 1) * b_slice);
            }
            __syncthreads();  // slice s + 1 published, slice s retired
        }
        // C = alpha * acc + beta * C (beta == 0: C not read), float4 stores where aligned.
        const int vector_ok = vector_store && ((uintptr_t)C % 16) == 0;
        GEMM_UNROLL
        for (int i = 0; i < 8; i++) {
            const int m = m0 + (i < 4 ? 4 * ty + i : BM / 2 + 4 * ty + i - 4);
            if (m >= p.M) continue;
            float *c_row = C + (int64_t)m * p.ldc;
            GEMM_UNROLL
            for (int h = 0; h < 2; h++) {
                const int n = n0 + h * (BN / 2) + 4 * tx;
                const float *r = &acc[i][4 * h];
                if (vector_ok && n + 3 < p.N) {
                    float4 v = make_float4(p.alpha * r[0], p.alpha * r[1], p.alpha * r[2], p.alpha * r[3]);
                    if (p.beta != 0.0f) {
                        const float4 old = *(const float4 *)(c_row + n);
                        v.x += p.beta * old.x;
                        v.y += p.beta * old.y;
                        v.z += p.beta * old.z;
                        v.w += p.beta * old.w;
                    }
                    *(float4 *)(c_row + n) = v;
                } else {
                    GEMM_UNROLL
                    for (int j = 0; j < 4; j++) {
                        if (n + j >= p.N) break;
                        float v = p.alpha * r[j];
                        if (p.beta != 0.0f) v += p.beta * c_row[n + j];
                        c_row[n + j] = v;
                    }
                }
            }
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Kernels: one per tile shape (blockIdx.x: the M or N tiles, whichever are more; blockIdx.y: the
// others; blockIdx.z: batch).
// ------------------------------------------------------------------------------------------------

__global__ void __launch_bounds__(256, 2) sgemm_tile128_kernel(GemmArgs p) {
    __shared__ __align__(16) float As[2 * GEMM_BK * (128 + GEMM_PAD)];
    __shared__ __align__(16) float Bs[2 * GEMM_BK * (128 + GEMM_PAD)];
    gemm_block(128, 128, As, Bs, p);
}
CU_KERNEL_ARGS(sgemm_tile128_kernel, GemmArgs);

__global__ void __launch_bounds__(64) sgemm_tile64_kernel(GemmArgs p) {
    __shared__ __align__(16) float As[2 * GEMM_BK * (64 + GEMM_PAD)];
    __shared__ __align__(16) float Bs[2 * GEMM_BK * (64 + GEMM_PAD)];
    gemm_block(64, 64, As, Bs, p);
}
CU_KERNEL_ARGS(sgemm_tile64_kernel, GemmArgs);

// ------------------------------------------------------------------------------------------------
// Launchers.
// ------------------------------------------------------------------------------------------------

static int gemm_tile_override;

// Aborts with one line: shapes the launchers cannot take are the caller's bug.
static void gemm_fatal(const char *what, long long value) {
    fprintf(stderr, "error: kernels/gemm.cu: %s (%lld)\n", what, value);
    exit(1);
}

CU_EXTERN_C void sgemm_set_tile_override(int tile) {
    if (tile != 0 && tile != 64 && tile != 128) gemm_fatal("tile override must be 0, 64 or 128", tile);
    gemm_tile_override = tile;
}

CU_EXTERN_C void sgemm_strided_batched_launch(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                                              const float *A, int64_t lda, int64_t stride_a, const float *B,
                                              int64_t ldb, int64_t stride_b, float beta, float *C, int64_t ldc,
                                              int64_t stride_c, int64_t batch, cudaStream_t stream) {
    if (M <= 0 || N <= 0 || batch <= 0) return;
    if (M > 0x7fffffff || N > 0x7fffffff || K > 0x7fffffff)
        gemm_fatal("M, N and K must fit in int", (long long)(M > N ? (M > K ? M : K) : (N > K ? N : K)));
    if (K < 0) K = 0;
    GemmArgs p;
    p.A = A;
    p.B = B;
    p.C = C;
    p.lda = lda;
    p.ldb = ldb;
    p.ldc = ldc;
    p.stride_a = stride_a;
    p.stride_b = stride_b;
    p.stride_c = stride_c;
    p.batch = batch;
    p.trans_a = trans_a != 0;
    p.trans_b = trans_b != 0;
    p.M = (int)M;
    p.N = (int)N;
    p.K = (int)K;
    p.alpha = alpha;
    p.beta = beta;
    const int64_t z = batch < GEMM_MAX_GRID_Y ? batch : GEMM_MAX_GRID_Y;
    int tile = gemm_tile_override;
    if (tile == 0) {
        const int64_t big_blocks = ((M + 127) / 128) * ((N + 127) / 128) * batch;
        tile = big_blocks >= GEMM_BIG_TILE_MIN_BLOCKS ? 128 : 64;
    }
    int64_t grid_x = (M + tile - 1) / tile, grid_y = (N + tile - 1) / tile;
    // The axis with more tiles goes to grid x (up to 2^31 - 1 blocks; y takes only 65535).
    p.n_tiles_in_x = grid_y > grid_x;
    if (p.n_tiles_in_x) {
        const int64_t m_tiles = grid_x;
        grid_x = grid_y;
        grid_y = m_tiles;
    }
    if (grid_y > GEMM_MAX_GRID_Y) gemm_fatal("M and N both too large for the grid", (long long)(M < N ? M : N));
    if (tile == 128)
        CU_LAUNCH(sgemm_tile128_kernel, DIM3(grid_x, grid_y, z), 256, 0, stream, p);
    else
        CU_LAUNCH(sgemm_tile64_kernel, DIM3(grid_x, grid_y, z), 64, 0, stream, p);
}

CU_EXTERN_C void sgemm_launch(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                              int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc,
                              cudaStream_t stream) {
    sgemm_strided_batched_launch(trans_a, trans_b, M, N, K, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1, stream);
}
