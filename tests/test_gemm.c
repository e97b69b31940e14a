// Tests for engine/cpu/gemm: sgemm / sgemm_batched with every micro-kernel this CPU has, all four
// transpose combinations, awkward shapes (1, primes, non-multiples of every register tile), alpha and
// beta, padded leading dimensions, K = 0, broadcast batches; dgemm against a naive double loop.
//
// Every result is compared with a naive double-accumulated reference, entry by entry:
//   |C - (alpha * sum_k a_ik b_kj + beta * C0)| <= 1e-5 * (|alpha| sum_k |a_ik||b_kj| + |beta C0|) + 1e-30
// because sgemm accumulates in f32 in an order of its own (register tiles, K blocks of 256): each
// product and partial sum rounds with relative error 2^-24, so the error is bounded by a small
// multiple of eps times sum |a||b| (about sqrt(K) * eps for random data, K * eps worst case; with
// K up to 1000 here, ~2e-6 typical). An entry left unwritten (NaN poison), written twice, or taken
// from the wrong row/column misses by O(|a||b|) and fails.
// The gaps between rows of C (ldc > N) hold a sentinel that must survive: stores past the edge fail.
// The threaded schedules are also checked bitwise against the single-threaded result.
#include "engine/cpu/gemm.h"
#include "tests/check.h"

#include <omp.h>
#include <stdint.h>

TEST_MAIN_COUNTERS;

static const float SENTINEL = -12345.0f;

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static float random_float(void) {  // uniform in [-1, 1)
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) * (1.0 / (1ull << 23)) - 1.0);
}

static float *random_floats(int64_t count) {
    float *m = malloc((size_t)(count + 1) * sizeof(float));
    for (int64_t i = 0; i < count + 1; i++) m[i] = random_float();
    return m;
}

// Element (i, k) of op(X) where X has leading dimension ld.
static double op_at(const float *X, int64_t ld, int trans, int64_t i, int64_t k) {
    return trans ? X[k * ld + i] : X[i * ld + k];
}

// Checks C (M x N, ldc) against alpha * op(A) op(B) + beta * C0, and that the padding between rows
// still holds the sentinel. Returns the number of bad entries (and reports the first few).
static int check_result(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                        const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                        const float *C0, const float *C, int64_t ldc, const char *what) {
    int bad = 0;
    for (int64_t i = 0; i < M; i++) {
        for (int64_t j = 0; j < N; j++) {
            double sum = 0.0, magnitude = 0.0;
            for (int64_t k = 0; k < K; k++) {
                double product = op_at(A, lda, trans_a, i, k) * op_at(B, ldb, trans_b, k, j);
                sum += product;
                magnitude += fabs(product);
            }
            double c0 = beta == 0.0f ? 0.0 : C0[i * ldc + j];
            double expected = alpha * sum + beta * c0;
            double tolerance = 1e-5 * (fabs(alpha) * magnitude + fabs(beta * c0)) + 1e-30;
            double got = C[i * ldc + j];
            if (!(fabs(got - expected) <= tolerance)) {
                if (bad < 3)
                    printf("  %s ta=%d tb=%d M=%lld N=%lld K=%lld: C[%lld][%lld] = %.9g, expected %.9g\n",
                           what, trans_a, trans_b, (long long)M, (long long)N, (long long)K,
                           (long long)i, (long long)j, got, expected);
                bad++;
            }
        }
        for (int64_t j = N; j < ldc; j++)
            if (C[i * ldc + j] != SENTINEL) {
                if (bad < 3)
                    printf("  %s M=%lld N=%lld K=%lld: padding C[%lld][%lld] overwritten\n", what,
                           (long long)M, (long long)N, (long long)K, (long long)i, (long long)j);
                bad++;
            }
    }
    return bad;
}

// Runs one sgemm with random A, B (padded leading dimensions when pad != 0) and a C that is random
// (beta != 0) or NaN-poisoned (beta == 0), and checks it.
static int run_sgemm_case(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                          float beta, int pad) {
    int64_t a_rows = trans_a ? K : M, a_cols = trans_a ? M : K;
    int64_t b_rows = trans_b ? N : K, b_cols = trans_b ? K : N;
    int64_t lda = a_cols + (pad ? 3 : 0), ldb = b_cols + (pad ? 5 : 0), ldc = N + (pad ? 7 : 0);
    if (lda < 1) lda = 1;
    if (ldb < 1) ldb = 1;
    if (ldc < 1) ldc = 1;
    float *A = random_floats(a_rows * lda);
    float *B = random_floats(b_rows * ldb);
    float *C = malloc((size_t)(M * ldc + 1) * sizeof(float));
    float *C0 = malloc((size_t)(M * ldc + 1) * sizeof(float));
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < ldc; j++)
            C[i * ldc + j] = j < N ? (beta == 0.0f ? NAN : random_float()) : SENTINEL;
    memcpy(C0, C, (size_t)(M * ldc + 1) * sizeof(float));
    sgemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    int bad = check_result(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C0, C, ldc,
                           sgemm_kernel_name());
    free(A);
    free(B);
    free(C);
    free(C0);
    return bad;
}

static const char *const KERNEL_NAMES[] = {"avx512", "avx2", "generic"};
#define KERNEL_NAME_COUNT 3

// Shapes that mix awkward sizes. The first rows are small (< 64^3 multiply-adds: the unpacked
// small path, and GEMV-like M or N = 1); the rest are large enough for the packed path with its
// edge tiles (14x32 / 6x16 / 4x16 register tiles, zero-padded panels, K blocks of 256). The last
// rows cover the AVX-512 kernel's 8- and 4-row tiles, exact (M mod 14 = 8 or 4, with full and
// partial 32-column panels) and padded (M mod 14 = 1..3, 5..7).
static const int64_t SHAPES[][3] = {
    {1, 1, 1},      {2, 3, 7},      {1, 257, 65},   {129, 1, 33},   {17, 13, 31},   {33, 33, 33},
    {129, 17, 33},  {257, 33, 7},   {31, 129, 17},  {127, 65, 13},  {7, 127, 129},  {3, 257, 257},
    {257, 2, 129},  {14, 32, 64},   {15, 33, 65},   {6, 16, 600},   {65, 127, 2},   {63, 65, 63},
    {65, 63, 127},  {63, 31, 257},  {13, 257, 129}, {129, 17, 129}, {257, 33, 65},  {31, 129, 70},
    {127, 65, 40},  {7, 127, 300},  {3, 257, 400},  {257, 2, 600},  {15, 33, 600},  {28, 64, 256},
    {29, 95, 257},  {42, 48, 513},  {65, 65, 64},   {17, 1000, 31},
    {64, 160, 260}, {22, 96, 40},   {18, 70, 300},  {128, 64, 33},  {256, 96, 70},  {512, 64, 20},
    {8, 64, 100},   {4, 96, 300},   {20, 45, 90},   {16, 33, 270},
};
#define SHAPE_COUNT ((int)(sizeof(SHAPES) / sizeof(SHAPES[0])))

static void sweep_shapes_current_kernel(void) {
    for (int s = 0; s < SHAPE_COUNT; s++)
        for (int t = 0; t < 4; t++) {
            int trans_a = t & 1, trans_b = t >> 1;
            // Alternate the alpha/beta/padding variants across shapes to keep the test quick.
            float alpha = (s % 3 == 0) ? 1.0f : (s % 3 == 1 ? -0.75f : 2.5f);
            float beta = (s + t) % 3 == 0 ? 0.0f : ((s + t) % 3 == 1 ? 1.0f : -0.5f);
            int pad = (s + t) % 2;
            int bad = run_sgemm_case(trans_a, trans_b, SHAPES[s][0], SHAPES[s][1], SHAPES[s][2], alpha,
                                     beta, pad);
            CHECK_MSG(bad == 0, "%s: %d bad entries", sgemm_kernel_name(), bad);
        }
}

TEST(kernel_forcing) {
    CHECK(sgemm_force_kernel("generic") == 1);
    CHECK(strcmp(sgemm_kernel_name(), "generic") == 0);
    CHECK(sgemm_force_kernel("no-such-kernel") == 0);
    CHECK(strcmp(sgemm_kernel_name(), "generic") == 0);  // unchanged by a failed force
    CHECK(sgemm_force_kernel(NULL) == 1);
    const char *automatic = sgemm_kernel_name();
    CHECK(strcmp(automatic, "avx512") == 0 || strcmp(automatic, "avx2") == 0 ||
          strcmp(automatic, "generic") == 0);
}

TEST(all_kernels_all_transposes_awkward_shapes) {
    for (int k = 0; k < KERNEL_NAME_COUNT; k++) {
        if (!sgemm_force_kernel(KERNEL_NAMES[k])) {
            printf("  (kernel %s not available on this CPU: skipped)\n", KERNEL_NAMES[k]);
            continue;
        }
        CHECK(strcmp(sgemm_kernel_name(), KERNEL_NAMES[k]) == 0);
        sweep_shapes_current_kernel();
    }
    sgemm_force_kernel(NULL);
}

// Larger than one K block (256) and one cache block in M, with all variants of alpha/beta.
TEST(large_all_kernels) {
    for (int k = 0; k < KERNEL_NAME_COUNT; k++) {
        if (!sgemm_force_kernel(KERNEL_NAMES[k])) continue;
        for (int t = 0; t < 4; t++) {
            float beta = t == 0 ? 0.0f : (t == 1 ? 1.0f : 0.3f);
            int bad = run_sgemm_case(t & 1, t >> 1, 300, 517, 211 + 100 * (t == 3), 1.25f, beta, t & 1);
            CHECK_MSG(bad == 0, "%s: %d bad entries", KERNEL_NAMES[k], bad);
        }
    }
    sgemm_force_kernel(NULL);
}

// Exercises the thread-count logic, N > NC (several B panels) and many work units.
TEST(wide_and_tall) {
    int bad = run_sgemm_case(0, 0, 20, 1700, 40, 1.0f, 0.0f, 1);
    CHECK(bad == 0);
    bad = run_sgemm_case(1, 1, 700, 24, 40, 1.0f, 1.0f, 0);
    CHECK(bad == 0);
    bad = run_sgemm_case(0, 1, 45, 3100, 9, 0.5f, 0.0f, 0);
    CHECK(bad == 0);
}

// The threaded schedules (shared B panels with double buffering and per-unit ordering, or column
// chunks) must give exactly the single-threaded result: every C tile is computed by the same
// micro-kernel calls over the same K blocks in the same order, whichever thread runs them. Several
// NC and K blocks, more threads than cores (so threads get descheduled mid-GEMM), repeated.
TEST(threaded_matches_single_thread_bitwise) {
    static const int64_t shapes[][5] = {
        // M, N, K, trans_a, trans_b
        {300, 3100, 600, 0, 1}, {700, 1600, 300, 0, 0}, {64, 5000, 520, 1, 0}, {29, 700, 900, 1, 1},
    };
    int saved_threads = omp_get_max_threads();
    for (int s = 0; s < 4; s++) {
        int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        int trans_a = (int)shapes[s][3], trans_b = (int)shapes[s][4];
        int64_t lda = trans_a ? M : K, ldb = trans_b ? K : N;
        float *A = random_floats(M * K), *B = random_floats(K * N);
        float *single = malloc(sizeof(float) * M * N), *threaded = malloc(sizeof(float) * M * N);
        for (int64_t i = 0; i < M * N; i++) single[i] = random_float();
        memcpy(threaded, single, sizeof(float) * M * N);
        float *initial = malloc(sizeof(float) * M * N);
        memcpy(initial, single, sizeof(float) * M * N);
        omp_set_num_threads(1);
        sgemm(trans_a, trans_b, M, N, K, 0.5f, A, lda, B, ldb, 0.25f, single, N);
        for (int threads = 2; threads <= 4; threads++)
            for (int repeat = 0; repeat < 2; repeat++) {
                omp_set_num_threads(threads);
                memcpy(threaded, initial, sizeof(float) * M * N);
                sgemm(trans_a, trans_b, M, N, K, 0.5f, A, lda, B, ldb, 0.25f, threaded, N);
                int64_t differ = 0;
                for (int64_t i = 0; i < M * N; i++) differ += threaded[i] != single[i];
                CHECK_MSG(differ == 0, "M=%lld N=%lld K=%lld on %d threads: %lld entries differ",
                          (long long)M, (long long)N, (long long)K, threads, (long long)differ);
            }
        free(A);
        free(B);
        free(single);
        free(threaded);
        free(initial);
    }
    omp_set_num_threads(saved_threads);
    // And one of these schedules against the double-precision reference.
    CHECK(run_sgemm_case(0, 0, 280, 1700, 300, 1.0f, 1.0f, 1) == 0);
}

TEST(k_zero_scales_c) {
    float C[3 * 5];
    for (int i = 0; i < 15; i++) C[i] = NAN;
    float A[1] = {NAN}, B[1] = {NAN};
    sgemm(0, 0, 3, 5, 0, 1.0f, A, 1, B, 5, 0.0f, C, 5);  // beta = 0: C becomes zero, not read
    for (int i = 0; i < 15; i++) CHECK(C[i] == 0.0f);
    for (int i = 0; i < 15; i++) C[i] = (float)i;
    sgemm(1, 1, 3, 5, 0, 1.0f, A, 1, B, 1, 2.0f, C, 5);
    for (int i = 0; i < 15; i++) CHECK(C[i] == 2.0f * i);
    // alpha = 0: A and B are not read either (BLAS convention).
    sgemm(0, 0, 3, 5, 4, 0.0f, NULL, 4, NULL, 5, 1.0f, C, 5);
    for (int i = 0; i < 15; i++) CHECK(C[i] == 2.0f * i);
}

TEST(empty_shapes_write_nothing) {
    float C[4] = {SENTINEL, SENTINEL, SENTINEL, SENTINEL};
    float A[4] = {1, 2, 3, 4}, B[4] = {1, 2, 3, 4};
    sgemm(0, 0, 0, 2, 2, 1.0f, A, 2, B, 2, 0.0f, C, 2);
    sgemm(0, 0, 2, 0, 2, 1.0f, A, 2, B, 2, 0.0f, C, 2);
    sgemm_batched(0, 0, 2, 2, 2, 1.0f, A, 2, 4, B, 2, 4, 0.0f, C, 2, 4, 0);
    for (int i = 0; i < 4; i++) CHECK(C[i] == SENTINEL);
}

// From inside a parallel region each call runs single-threaded on its own thread.
TEST(called_inside_parallel_region) {
    enum { M = 70, N = 90, K = 50, T = 4 };
    float *A = random_floats(M * K), *B = random_floats(K * N);
    float *C = malloc(sizeof(float) * T * M * N), *C0 = calloc(M * N, sizeof(float));
    int bad_total = 0;
#pragma omp parallel num_threads(T)
    {
        int t = omp_get_thread_num();
        float *c = C + (int64_t)t * M * N;
        for (int i = 0; i < M * N; i++) c[i] = NAN;
        sgemm(0, 0, M, N, K, 1.0f, A, K, B, N, 0.0f, c, N);
    }
    for (int t = 0; t < T; t++)
        bad_total += check_result(0, 0, M, N, K, 1.0f, A, K, B, N, 0.0f, C0, C + (int64_t)t * M * N, N,
                                  "parallel region");
    CHECK(bad_total == 0);
    free(A);
    free(B);
    free(C);
    free(C0);
}

// Batches: plain strides, broadcast A or B (stride 0), small batch (threads inside each GEMM) and
// large batch (threads over the batch).
static int run_batched_case(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, int64_t batch,
                            int broadcast_a, int broadcast_b, float beta) {
    int64_t lda = trans_a ? M : K, ldb = trans_b ? K : N, ldc = N + 2;
    int64_t size_a = M * K, size_b = K * N, size_c = M * ldc;
    int64_t stride_a = broadcast_a ? 0 : size_a + 3, stride_b = broadcast_b ? 0 : size_b + 1;
    int64_t stride_c = size_c + 4;
    float *A = random_floats(stride_a * (batch - 1) + size_a);
    float *B = random_floats(stride_b * (batch - 1) + size_b);
    int64_t c_len = stride_c * batch;
    float *C = malloc(sizeof(float) * c_len), *C0 = malloc(sizeof(float) * c_len);
    for (int64_t b = 0; b < batch; b++)
        for (int64_t x = 0; x < stride_c; x++) {
            int64_t j = x % ldc;
            C[b * stride_c + x] = x < size_c && j < N ? (beta == 0.0f ? NAN : random_float()) : SENTINEL;
        }
    memcpy(C0, C, sizeof(float) * c_len);
    sgemm_batched(trans_a, trans_b, M, N, K, 0.5f, A, lda, stride_a, B, ldb, stride_b, beta, C, ldc,
                  stride_c, batch);
    int bad = 0;
    for (int64_t b = 0; b < batch; b++) {
        bad += check_result(trans_a, trans_b, M, N, K, 0.5f, A + b * stride_a, lda, B + b * stride_b, ldb,
                            beta, C0 + b * stride_c, C + b * stride_c, ldc, "batched");
        for (int64_t x = size_c; x < stride_c; x++) bad += C[b * stride_c + x] != SENTINEL;
    }
    free(A);
    free(B);
    free(C);
    free(C0);
    return bad;
}

TEST(batched) {
    CHECK(run_batched_case(0, 0, 33, 47, 29, 3, 0, 0, 0.0f) == 0);
    CHECK(run_batched_case(1, 0, 65, 65, 64, 8, 1, 0, 1.0f) == 0);   // shared A (e.g. a weight)
    CHECK(run_batched_case(0, 1, 65, 65, 64, 9, 0, 1, 0.0f) == 0);   // shared B
    CHECK(run_batched_case(1, 1, 130, 70, 90, 2, 0, 0, -1.0f) == 0); // big GEMMs, few of them
    CHECK(run_batched_case(0, 1, 7, 5, 3, 37, 0, 0, 0.0f) == 0);     // many tiny GEMMs
    CHECK(run_batched_case(0, 0, 1, 1, 1, 1, 1, 1, 1.0f) == 0);
}

// ---- double precision ----

static double random_double(void) { return (double)random_float() + 1e-8 * random_float(); }

static int run_dgemm_case(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, double alpha,
                          double beta, int64_t batch) {
    int64_t lda = (trans_a ? M : K) + 1, ldb = (trans_b ? K : N) + 2, ldc = N + 3;
    int64_t size_a = (trans_a ? K : M) * lda, size_b = (trans_b ? N : K) * ldb, size_c = M * ldc;
    double *A = malloc(sizeof(double) * (size_a * batch + 1));
    double *B = malloc(sizeof(double) * (size_b * batch + 1));
    double *C = malloc(sizeof(double) * (size_c * batch + 1));
    double *C0 = malloc(sizeof(double) * (size_c * batch + 1));
    for (int64_t i = 0; i < size_a * batch + 1; i++) A[i] = random_double();
    for (int64_t i = 0; i < size_b * batch + 1; i++) B[i] = random_double();
    for (int64_t i = 0; i < size_c * batch + 1; i++) C[i] = beta == 0.0 ? NAN : random_double();
    memcpy(C0, C, sizeof(double) * (size_c * batch + 1));
    if (batch == 1)
        dgemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    else
        dgemm_batched(trans_a, trans_b, M, N, K, alpha, A, lda, size_a, B, ldb, size_b, beta, C, ldc,
                      size_c, batch);
    int bad = 0;
    for (int64_t b = 0; b < batch; b++) {
        const double *a = A + b * size_a, *bm = B + b * size_b, *c0 = C0 + b * size_c, *c = C + b * size_c;
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) {
                double sum = 0.0, magnitude = 0.0;
                for (int64_t k = 0; k < K; k++) {
                    double p = (trans_a ? a[k * lda + i] : a[i * lda + k]) *
                               (trans_b ? bm[j * ldb + k] : bm[k * ldb + j]);
                    sum += p;
                    magnitude += fabs(p);
                }
                double scaled_c0 = beta == 0.0 ? 0.0 : beta * c0[i * ldc + j];
                double expected = alpha * sum + scaled_c0;
                // f64 accumulation in a different order: a few ulps of the magnitude.
                double tolerance = 1e-13 * (fabs(alpha) * magnitude + fabs(scaled_c0)) + 1e-300;
                if (!(fabs(c[i * ldc + j] - expected) <= tolerance)) {
                    if (bad < 3)
                        printf("  dgemm ta=%d tb=%d M=%lld N=%lld K=%lld: C[%lld][%lld] = %.17g, expected %.17g\n",
                               trans_a, trans_b, (long long)M, (long long)N, (long long)K, (long long)i,
                               (long long)j, c[i * ldc + j], expected);
                    bad++;
                }
            }
    }
    free(A);
    free(B);
    free(C);
    free(C0);
    return bad;
}

TEST(dgemm_against_naive) {
    static const int64_t shapes[][3] = {{1, 1, 1}, {3, 7, 2}, {33, 129, 17}, {65, 31, 140},
                                        {130, 257, 45}, {5, 300, 1}, {40, 1, 300}};
    for (int s = 0; s < 7; s++)
        for (int t = 0; t < 4; t++) {
            double beta = t == 0 ? 0.0 : (t == 1 ? 1.0 : -0.25);
            int bad = run_dgemm_case(t & 1, t >> 1, shapes[s][0], shapes[s][1], shapes[s][2], 1.5, beta, 1);
            CHECK_MSG(bad == 0, "%d bad entries", bad);
        }
    CHECK(run_dgemm_case(0, 1, 20, 30, 40, 1.0, 0.0, 5) == 0);
    CHECK(run_dgemm_case(1, 0, 70, 80, 90, -1.0, 1.0, 2) == 0);
    double C[6];
    for (int i = 0; i < 6; i++) C[i] = NAN;
    dgemm(0, 0, 2, 3, 0, 1.0, NULL, 1, NULL, 3, 0.0, C, 3);  // K = 0, beta = 0: zeros
    for (int i = 0; i < 6; i++) CHECK(C[i] == 0.0);
}

int main(void) {
    RUN_TEST(kernel_forcing);
    RUN_TEST(all_kernels_all_transposes_awkward_shapes);
    RUN_TEST(large_all_kernels);
    RUN_TEST(wide_and_tall);
    RUN_TEST(threaded_matches_single_thread_bitwise);
    RUN_TEST(k_zero_scales_c);
    RUN_TEST(empty_shapes_write_nothing);
    RUN_TEST(called_inside_parallel_region);
    RUN_TEST(batched);
    RUN_TEST(dgemm_against_naive);
    return test_summary();
}
