// CPU sgemm benchmark. First measures the machine's fp32 FMA peak (independent zmm FMAs, 1 thread
// and all threads), then times sgemm on square sizes and on the GEMM shapes of a CIFAR ResNet-18
// (convolutions as im2col GEMMs) and a ViT-tiny, on 1 thread and on omp_get_max_threads() threads.
// Every shape is validated (sampled entries vs a double-precision dot product) before timing; the
// time is the median of several repetitions after a warm-up call. "% peak" is relative to the FMA
// peak measured here for the same number of threads. Takes ~10-15 s on 2 cores.
//
//   make build/bench/bench_gemm && build/bench/bench_gemm
// Results and the machine they came from: docs/PERFORMANCE.md.
#include "engine/cpu/gemm.h"

#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---- FMA peak ----

#if defined(__x86_64__)
#define FMA(r) "vfmadd231ps %%zmm30, %%zmm31, %%zmm" #r "\n\t"
// 16 independent FMA chains (> 2 ports x 4 cycles latency), 512 flops per iteration.
__attribute__((target("avx512f"))) static double fma_loop_avx512(int64_t iterations) {
    double start = omp_get_wtime();
    __asm__ volatile(
        "vxorps %%xmm30, %%xmm30, %%xmm30\n\t"
        "vxorps %%xmm31, %%xmm31, %%xmm31\n\t"
        "1:\n\t" FMA(0) FMA(1) FMA(2) FMA(3) FMA(4) FMA(5) FMA(6) FMA(7) FMA(8) FMA(9) FMA(10)
        FMA(11) FMA(12) FMA(13) FMA(14) FMA(15)
        "dec %[n]\n\t"
        "jnz 1b\n\t"
        : [n] "+r"(iterations)
        :
        : "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",
          "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm30", "xmm31");
    return omp_get_wtime() - start;
}
#define YFMA(r) "vfmadd231ps %%ymm14, %%ymm15, %%ymm" #r "\n\t"
// AVX2 machines: 14 ymm chains, 224 flops per iteration.
__attribute__((target("avx2,fma"))) static double fma_loop_avx2(int64_t iterations) {
    double start = omp_get_wtime();
    __asm__ volatile(
        "vxorps %%xmm14, %%xmm14, %%xmm14\n\t"
        "vxorps %%xmm15, %%xmm15, %%xmm15\n\t"
        "1:\n\t" YFMA(0) YFMA(1) YFMA(2) YFMA(3) YFMA(4) YFMA(5) YFMA(6) YFMA(7) YFMA(8) YFMA(9)
        YFMA(10) YFMA(11) YFMA(12) YFMA(13)
        "dec %[n]\n\t"
        "jnz 1b\n\t"
        : [n] "+r"(iterations)
        :
        : "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",
          "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
    return omp_get_wtime() - start;
}
#endif

// GFLOP/s of the FMA loop on one thread, or summed over `threads` threads running it at once.
// Returns 0 where there is no FMA loop for this CPU. Best of 3 trials of ~0.1 s each.
static double fma_peak(int threads) {
#if defined(__x86_64__)
    int avx512 = __builtin_cpu_supports("avx512f");
    if (!avx512 && !(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))) return 0.0;
    double flops_per_iteration = avx512 ? 16 * 32 : 14 * 16;
    int64_t iterations = avx512 ? 20 * 1000 * 1000 : 40 * 1000 * 1000;
    double best = 0.0;
    for (int trial = 0; trial < 3; trial++) {
        double total = 0.0;
#pragma omp parallel num_threads(threads) reduction(+ : total)
        {
#pragma omp barrier
            double seconds = avx512 ? fma_loop_avx512(iterations) : fma_loop_avx2(iterations);
            total += flops_per_iteration * iterations / seconds / 1e9;
        }
        if (total > best) best = total;
    }
    return best;
#else
    (void)threads;
    return 0.0;
#endif
}

// ---- GEMM shapes ----

typedef struct {
    const char *name;
    int trans_a, trans_b;
    int64_t M, N, K, batch;
} Shape;

// ResNet-18 on CIFAR (32x32 input, 3x3 stem, no max-pool), batch B = 128: each conv is
// out[Cout, B*H*W] = weight[Cout, Cin*9] @ im2col[Cin*9, B*H*W].
// ViT-tiny (dim 192, 3 heads of 64, MLP 768, 64 patches + class token = 65 tokens), batch 128:
// linear layers are x[B*T, in] @ W[out, in]^T; attention is per (batch, head).
static const Shape SHAPES[] = {
    {"square 256", 0, 0, 256, 256, 256, 1},
    {"square 512", 0, 0, 512, 512, 512, 1},
    {"square 1024", 0, 0, 1024, 1024, 1024, 1},
    {"square 1536", 0, 0, 1536, 1536, 1536, 1},
    {"square 2048", 0, 0, 2048, 2048, 2048, 1},
    {"resnet18 stem 3->64 @32", 0, 0, 64, 128 * 32 * 32, 3 * 9, 1},
    {"resnet18 layer1 64 @32", 0, 0, 64, 128 * 32 * 32, 64 * 9, 1},
    {"resnet18 layer2 128 @16", 0, 0, 128, 128 * 16 * 16, 128 * 9, 1},
    {"resnet18 layer3 256 @8", 0, 0, 256, 128 * 8 * 8, 256 * 9, 1},
    {"resnet18 layer4 512 @4", 0, 0, 512, 128 * 4 * 4, 512 * 9, 1},
    {"vit-tiny qkv", 0, 1, 128 * 65, 3 * 192, 192, 1},
    {"vit-tiny proj", 0, 1, 128 * 65, 192, 192, 1},
    {"vit-tiny fc1", 0, 1, 128 * 65, 768, 192, 1},
    {"vit-tiny fc2", 0, 1, 128 * 65, 192, 768, 1},
    {"vit-tiny attn QK^T x384", 0, 1, 65, 65, 64, 128 * 3},
    {"vit-tiny attn AV x384", 0, 0, 65, 64, 65, 128 * 3},
};
#define SHAPE_COUNT ((int)(sizeof(SHAPES) / sizeof(SHAPES[0])))

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;
static void fill_random(float *x, int64_t n) {  // uniform in [-1, 1)
    for (int64_t i = 0; i < n; i++) {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        x[i] = (float)((rng_state >> 40) * (1.0 / (1ull << 23)) - 1.0);
    }
}

typedef struct {
    const Shape *shape;
    float *A, *B, *C;
    int64_t lda, ldb, ldc, stride_a, stride_b, stride_c;
} Problem;

static void run(const Problem *p) {
    const Shape *s = p->shape;
    if (s->batch == 1)
        sgemm(s->trans_a, s->trans_b, s->M, s->N, s->K, 1.0f, p->A, p->lda, p->B, p->ldb, 0.0f, p->C,
              p->ldc);
    else
        sgemm_batched(s->trans_a, s->trans_b, s->M, s->N, s->K, 1.0f, p->A, p->lda, p->stride_a, p->B,
                      p->ldb, p->stride_b, 0.0f, p->C, p->ldc, p->stride_c, s->batch);
}

// Compares 64 sampled entries of C with double-precision dot products. f32 accumulation over K
// terms stays well within 1e-4 * sum |a||b| (about sqrt(K) * 6e-8 for random data).
static int validate(const Problem *p) {
    const Shape *s = p->shape;
    for (int sample = 0; sample < 64; sample++) {
        int64_t b = (sample * 7919) % s->batch;
        int64_t i = (sample * 104729 + 13) % s->M, j = (sample * 1299709 + 7) % s->N;
        const float *A = p->A + b * p->stride_a, *B = p->B + b * p->stride_b;
        double sum = 0.0, magnitude = 0.0;
        for (int64_t k = 0; k < s->K; k++) {
            double a = s->trans_a ? A[k * p->lda + i] : A[i * p->lda + k];
            double bv = s->trans_b ? B[j * p->ldb + k] : B[k * p->ldb + j];
            sum += a * bv;
            magnitude += fabs(a * bv);
        }
        double got = p->C[b * p->stride_c + i * p->ldc + j];
        if (!(fabs(got - sum) <= 1e-4 * magnitude + 1e-30)) {
            printf("VALIDATION FAILED: %s C[%lld][%lld][%lld] = %.9g, expected %.9g\n", s->name,
                   (long long)b, (long long)i, (long long)j, got, sum);
            return 0;
        }
    }
    return 1;
}

static int compare_doubles(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

// Median seconds per call: warm-up, then repetitions until ~0.3 s (3 to 25 of them).
static double time_median(const Problem *p) {
    run(p);
    double times[25];
    int reps = 0;
    double spent = 0.0;
    while (reps < 25 && (reps < 3 || spent < 0.3)) {
        double start = omp_get_wtime();
        run(p);
        times[reps] = omp_get_wtime() - start;
        spent += times[reps++];
    }
    qsort(times, (size_t)reps, sizeof(double), compare_doubles);
    return reps % 2 ? times[reps / 2] : 0.5 * (times[reps / 2 - 1] + times[reps / 2]);
}

int main(void) {
    int max_threads = omp_get_max_threads();
    int thread_counts[2] = {1, max_threads};
    int runs = max_threads > 1 ? 2 : 1;
    // The peak is measured before and after the GEMMs and the higher value kept, so that a burst of
    // other work on a shared machine during one measurement does not inflate the "% peak" column.
    double peak[2] = {0, 0};
    for (int r = 0; r < runs; r++) peak[r] = fma_peak(thread_counts[r]);
    printf("sgemm kernel: %s\n", sgemm_kernel_name());
    fflush(stdout);

    double gflops[SHAPE_COUNT][2];  // < 0: failed validation
    int failures = 0;
    for (int s = 0; s < SHAPE_COUNT; s++) {
        const Shape *shape = &SHAPES[s];
        Problem p = {shape, NULL, NULL, NULL, 0, 0, 0, 0, 0, 0};
        p.lda = shape->trans_a ? shape->M : shape->K;
        p.ldb = shape->trans_b ? shape->K : shape->N;
        p.ldc = shape->N;
        p.stride_a = shape->M * shape->K;
        p.stride_b = shape->K * shape->N;
        p.stride_c = shape->M * shape->N;
        p.A = malloc(sizeof(float) * p.stride_a * shape->batch);
        p.B = malloc(sizeof(float) * p.stride_b * shape->batch);
        p.C = malloc(sizeof(float) * p.stride_c * shape->batch);
        if (!p.A || !p.B || !p.C) {
            printf("out of memory for %s\n", shape->name);
            return 1;
        }
        fill_random(p.A, p.stride_a * shape->batch);
        fill_random(p.B, p.stride_b * shape->batch);
        double flops = 2.0 * shape->M * shape->N * shape->K * shape->batch;
        for (int r = 0; r < runs; r++) {
            omp_set_num_threads(thread_counts[r]);
            memset(p.C, 0xFF, sizeof(float) * p.stride_c * shape->batch);  // NaN: beta = 0 must overwrite
            run(&p);
            if (!validate(&p)) {
                failures++;
                gflops[s][r] = -1.0;
                continue;
            }
            gflops[s][r] = flops / time_median(&p) / 1e9;
        }
        omp_set_num_threads(max_threads);
        free(p.A);
        free(p.B);
        free(p.C);
    }
    for (int r = 0; r < runs; r++) {
        double again = fma_peak(thread_counts[r]);
        if (again > peak[r]) peak[r] = again;
    }

    for (int r = 0; r < runs; r++) {
        printf("FMA peak, %d thread%s: ", thread_counts[r], thread_counts[r] > 1 ? "s" : "");
        if (peak[r] > 0)
            printf("%.1f GFLOP/s\n", peak[r]);
        else
            printf("not measured (no FMA loop for this CPU)\n");
    }
    if (runs > 1 && peak[1] < 0.9 * max_threads * peak[0])
        printf("warning: the %d-thread peak is well below %d x the 1-thread peak: other work is running "
               "on this machine, multi-thread figures will be low\n", max_threads, max_threads);
    printf("\n| shape | M x N x K (x batch) | op |");
    for (int r = 0; r < runs; r++) printf(" %d thr GFLOP/s | %% peak |", thread_counts[r]);
    printf("\n|---|---|---|");
    for (int r = 0; r < runs; r++) printf("---:|---:|");
    printf("\n");
    for (int s = 0; s < SHAPE_COUNT; s++) {
        const Shape *shape = &SHAPES[s];
        char dims[64];
        snprintf(dims, sizeof(dims), "%lld x %lld x %lld", (long long)shape->M, (long long)shape->N,
                 (long long)shape->K);
        if (shape->batch > 1)
            snprintf(dims + strlen(dims), sizeof(dims) - strlen(dims), " x %lld", (long long)shape->batch);
        printf("| %s | %s | %s%s |", shape->name, dims, shape->trans_a ? "T" : "N", shape->trans_b ? "T" : "N");
        for (int r = 0; r < runs; r++) {
            if (gflops[s][r] < 0)
                printf(" FAIL | - |");
            else if (peak[r] > 0)
                printf(" %.1f | %.0f%% |", gflops[s][r], 100.0 * gflops[s][r] / peak[r]);
            else
                printf(" %.1f | - |", gflops[s][r]);
        }
        printf("\n");
    }
    if (failures) printf("%d result(s) failed validation (see above)\n", failures);
    return failures ? 1 : 0;
}
