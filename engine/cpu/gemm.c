// CPU GEMM driver: GotoBLAS/BLIS blocking around a register-tile micro-kernel.
//
//   for jc in N step NC:                    B panel KC x NC, packed once per (jc, pc) block
//     for pc in K step KC:
//       pack op(B)[pc:+KC, jc:+NC] into NR-wide micro-panels      (threads share the work)
//       for each work unit (ic, chunk):     MC rows x a chunk of the panel's micro-panels
//         pack op(A)[ic:+MC, pc:+KC] into MR-tall micro-panels     (thread-private)
//         for ir in MC step MR:             the A micro-panel (MR x KC) stays in L1 ...
//           for jr in chunk step NR:        ... while B micro-panels stream from L2
//             micro-kernel: C[ir:+MR, jr:+NR] (+)= A micro-panel @ B micro-panel
//
// Edges are handled by zero padding in the packed panels and an edge store in the micro-kernel.
// Threads take B pieces and work units from shared counters (no barriers; see packed_gemm_thread);
// GEMMs with few rows and many columns instead give each thread whole column chunks of C.
// Problems below ~32^3 multiply-adds skip packing altogether (sgemm_small).
#include "engine/cpu/gemm.h"

#include <omp.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------------------------
// Micro-kernels

#define GENERIC_MR 4
#define GENERIC_NR 16

// Plain C micro-kernel (any CPU); the compiler vectorises the j loops.
static void sgemm_micro_generic(int64_t kc, const float *a_panel, const float *b_panel, float *c,
                                int64_t ldc, int m, int n, float alpha, float beta) {
    float acc[GENERIC_MR][GENERIC_NR];
    memset(acc, 0, sizeof(acc));
    for (int64_t k = 0; k < kc; k++) {
        const float *a = a_panel + k * GENERIC_MR, *b = b_panel + k * GENERIC_NR;
        for (int i = 0; i < GENERIC_MR; i++)
            for (int j = 0; j < GENERIC_NR; j++) acc[i][j] += a[i] * b[j];
    }
    for (int i = 0; i < m; i++) {
        float *c_row = c + i * ldc;
        if (beta == 0.0f)
            for (int j = 0; j < n; j++) c_row[j] = alpha * acc[i][j];
        else
            for (int j = 0; j < n; j++) c_row[j] = alpha * acc[i][j] + beta * c_row[j];
    }
}

typedef struct {
    const char *name;
    int mr, nr;       // register tile
    int64_t mc, kc, nc;  // cache blocking (mc multiple of mr, nc multiple of nr)
    SgemmMicroKernel kernel;
    // Optional vector packing (NULL: the plain C loops below).
    void (*pack_runs)(const float *src, int64_t stride, int64_t length, int64_t kc, int width, float *dst);
    void (*pack_rows)(const float *src, int64_t stride, int count, int64_t kc, int width, float *dst);
    // Optional unpacked path for small GEMMs (scratch: K x N floats or NULL); returns 0 for shapes
    // it does not take.
    int (*small)(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                 int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc,
                 float *scratch);
} SgemmKernelInfo;

// Blocking for the AVX-512 kernel, for this machine's caches (Sapphire Rapids: L1d 48 KiB,
// L2 2 MiB per core):
//   KC = 256: the A micro-panel 14 x 256 x 4 B = 14 KiB stays in L1 while B micro-panels
//             (32 x 256 x 4 B = 32 KiB each, read once per A micro-panel) stream from L2; long
//             enough that the C tile load/store is ~1% of the FMA work.
//   NC = 1536: the packed B panel 256 x 1536 x 4 B = 1.5 MiB stays in the 2 MiB L2 (every thread
//             reads all of it); NC = 1024 and 2048 measured the same within noise (1024^3, 2048^3).
//   MC = 126 (9 micro-panels): A is streamed through L1 once per B panel, so MC matters little; with
//             several threads the work units use smaller row blocks (down to 28) for balance.
//   KC = 384 or 512 measured 20% slower at 1024^3 (the A micro-panel crowds L1).
static const SgemmKernelInfo KERNELS[] = {
#if defined(__x86_64__)
    {"avx512", SGEMM_AVX512_MR, SGEMM_AVX512_NR, 14 * 9, 256, 1536, sgemm_micro_avx512,
     sgemm_pack_runs_avx512, sgemm_pack_rows_avx512, sgemm_small_avx512},
    {"avx2", SGEMM_AVX2_MR, SGEMM_AVX2_NR, 6 * 24, 256, 1024, sgemm_micro_avx2, NULL, NULL, NULL},
#endif
    {"generic", GENERIC_MR, GENERIC_NR, 4 * 32, 256, 1024, sgemm_micro_generic, NULL, NULL, NULL},
};
#define KERNEL_COUNT ((int)(sizeof(KERNELS) / sizeof(KERNELS[0])))

static int kernel_available(const SgemmKernelInfo *info) {
#if defined(__x86_64__)
    if (strcmp(info->name, "avx512") == 0) return __builtin_cpu_supports("avx512f");
    if (strcmp(info->name, "avx2") == 0)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    return 1;
}

static const SgemmKernelInfo *forced_kernel;  // set by sgemm_force_kernel, NULL = automatic

static const SgemmKernelInfo *automatic_kernel;  // the best one this CPU has, found on first use

static const SgemmKernelInfo *active_kernel(void) {
    const SgemmKernelInfo *forced = __atomic_load_n(&forced_kernel, __ATOMIC_ACQUIRE);
    if (forced) return forced;
    const SgemmKernelInfo *automatic = __atomic_load_n(&automatic_kernel, __ATOMIC_ACQUIRE);
    if (!automatic) {
        automatic = &KERNELS[KERNEL_COUNT - 1];
        for (int i = 0; i < KERNEL_COUNT; i++)
            if (kernel_available(&KERNELS[i])) {
                automatic = &KERNELS[i];
                break;
            }
        __atomic_store_n(&automatic_kernel, automatic, __ATOMIC_RELEASE);  // same value from any thread
    }
    return automatic;
}

const char *sgemm_kernel_name(void) { return active_kernel()->name; }

int sgemm_force_kernel(const char *name) {
    if (!name) {
        __atomic_store_n(&forced_kernel, NULL, __ATOMIC_RELEASE);
        return 1;
    }
    for (int i = 0; i < KERNEL_COUNT; i++)
        if (strcmp(KERNELS[i].name, name) == 0) {
            if (!kernel_available(&KERNELS[i])) return 0;
            __atomic_store_n(&forced_kernel, &KERNELS[i], __ATOMIC_RELEASE);
            return 1;
        }
    return 0;
}

// ---------------------------------------------------------------------------------------------
// Per-thread packing buffers, grown as needed and kept for the next call. Every cache is also on a
// global list, so the buffers stay reachable (LeakSanitizer sees no leak) without freeing at exit.

typedef struct PackCache {
    void *a, *b, *epochs, *d;  // sgemm A blocks, B panels, work-unit epochs; dgemm B blocks
    size_t a_bytes, b_bytes, epochs_bytes, d_bytes;
    struct PackCache *next;
} PackCache;

static PackCache *all_pack_caches;
static pthread_mutex_t pack_caches_lock = PTHREAD_MUTEX_INITIALIZER;
static _Thread_local PackCache *thread_pack_cache;

static PackCache *my_pack_cache(void) {
    if (!thread_pack_cache) {
        PackCache *cache = calloc(1, sizeof(PackCache));
        if (!cache) abort();
        pthread_mutex_lock(&pack_caches_lock);
        cache->next = all_pack_caches;
        all_pack_caches = cache;
        pthread_mutex_unlock(&pack_caches_lock);
        thread_pack_cache = cache;
    }
    return thread_pack_cache;
}

static void *grow_buffer(void **buffer, size_t *capacity, size_t bytes) {
    if (bytes > *capacity) {
        free(*buffer);
        size_t rounded = (bytes + 4095) & ~(size_t)4095;  // a multiple of the alignment, as C11 wants
        *buffer = aligned_alloc(64, rounded);
        if (!*buffer) {
            fprintf(stderr, "gemm: out of memory for a %zu-byte packing buffer\n", rounded);
            abort();
        }
        *capacity = rounded;
    }
    return *buffer;
}

// ---------------------------------------------------------------------------------------------
// Packing. The packed layouts are what the micro-kernels read:
//   A block op(A)[ic:+mc, pc:+kc] -> micro-panels of mr rows; panel p holds, for each k, mr
//     consecutive values op(A)[ic + p*mr + i][pc + k]; rows past mc are zero.
//   B panel op(B)[pc:+kc, jc:+nc] -> micro-panels of nr columns; panel p holds, for each k, nr
//     consecutive values op(B)[pc + k][jc + p*nr + j]; columns past nc are zero.
// Packing reads the source matrices from memory (this VM: ~10 GB/s), so every loop reads long
// contiguous runs or a few streams in lock step.

// dst[k*width + w] = rows[w][k] for w < count (a few source rows read in lock step), zero-padded to
// width. Inlined with each constant width (see interleave), so the compiler can unroll the w loop.
static inline __attribute__((always_inline)) void interleave_rows(const float *src, int64_t stride,
                                                                  int count, int64_t kc, int width,
                                                                  float *restrict dst) {
    if (count == width) {
        for (int64_t k = 0; k < kc; k++)
            for (int w = 0; w < width; w++) dst[k * width + w] = src[w * stride + k];
    } else {
        memset(dst, 0, (size_t)(kc * width) * sizeof(float));  // one call, not one per k
        for (int64_t k = 0; k < kc; k++)
            for (int w = 0; w < count; w++) dst[k * width + w] = src[w * stride + k];
    }
}

// Lock-step interleave of `count` source rows (stride apart, each kc long) into panels `width` wide.
static void interleave(const float *src, int64_t stride, int count, int64_t kc, int width, float *dst) {
    switch (width) {  // constant widths for the kernels' tiles
    case 4: interleave_rows(src, stride, count, kc, 4, dst); break;
    case 6: interleave_rows(src, stride, count, kc, 6, dst); break;
    case 14: interleave_rows(src, stride, count, kc, 14, dst); break;
    case 16: interleave_rows(src, stride, count, kc, 16, dst); break;
    case 32: interleave_rows(src, stride, count, kc, 32, dst); break;
    default: interleave_rows(src, stride, count, kc, width, dst); break;
    }
}

// Copies kc contiguous runs (run k starts at src + k*stride, `length` floats) into panels of
// `width` floats: run k, piece p -> dst[p*kc*width + k*width]; the last piece is zero-padded.
// Inlined with each constant width (see split_runs). Kernels with a vector packer (AVX-512) use
// that instead: gcc turns these copies into memmove calls.
static inline __attribute__((always_inline)) void split_runs_width(const float *src, int64_t stride,
                                                                   int64_t length, int64_t kc,
                                                                   int width, float *restrict dst) {
    int64_t full = length / width, rest = length - full * width;
    for (int64_t k = 0; k < kc; k++) {
        const float *s = src + k * stride;
        __builtin_prefetch(s + 4 * stride);
        __builtin_prefetch(s + 4 * stride + length - 1);
        float *d = dst + k * width;
        for (int64_t p = 0; p < full; p++)
            for (int j = 0; j < width; j++) d[p * kc * width + j] = s[p * width + j];
        if (rest) {
            float *dp = d + full * kc * width;
            for (int64_t j = 0; j < rest; j++) dp[j] = s[full * width + j];
            for (int64_t j = rest; j < width; j++) dp[j] = 0.0f;
        }
    }
}

static void split_runs(const float *src, int64_t stride, int64_t length, int64_t kc, int width,
                       float *dst) {
    switch (width) {  // constant widths for the kernels' tiles
    case 4: split_runs_width(src, stride, length, kc, 4, dst); break;
    case 6: split_runs_width(src, stride, length, kc, 6, dst); break;
    case 14: split_runs_width(src, stride, length, kc, 14, dst); break;
    case 16: split_runs_width(src, stride, length, kc, 16, dst); break;
    case 32: split_runs_width(src, stride, length, kc, 32, dst); break;
    default: split_runs_width(src, stride, length, kc, width, dst); break;
    }
}

static void pack_a(const SgemmKernelInfo *kern, int trans_a, const float *A, int64_t lda, int64_t ic,
                   int64_t pc, int64_t mc, int64_t kc, float *dst) {
    const int mr = kern->mr;
    if (trans_a) {
        // op(A)(i, k) = A[k*lda + i]: row k of A holds a contiguous run of op(A)'s rows.
        (kern->pack_runs ? kern->pack_runs : split_runs)(A + pc * lda + ic, lda, mc, kc, mr, dst);
        return;
    }
    // op(A)(i, k) = A[i*lda + k]: read mr rows of A in lock step.
    for (int64_t i0 = 0; i0 < mc; i0 += mr) {
        int rows = (int)(mc - i0 < mr ? mc - i0 : mr);
        const float *src = A + (ic + i0) * lda + pc;
        (kern->pack_rows ? kern->pack_rows : interleave)(src, lda, rows, kc, mr, dst + i0 * kc);
    }
}

// Micro-panels [p_begin, p_end) of the B panel op(B)[pc:+kc, jc:+nc].
static void pack_b(const SgemmKernelInfo *kern, int trans_b, const float *B, int64_t ldb, int64_t pc,
                   int64_t jc, int64_t nc, int64_t kc, int64_t p_begin, int64_t p_end, float *packed) {
    const int nr = kern->nr;
    if (p_end <= p_begin) return;
    int64_t j_begin = p_begin * nr;
    int64_t j_end = p_end * nr < nc ? p_end * nr : nc;
    float *dst = packed + p_begin * nr * kc;
    if (!trans_b) {
        // op(B)(k, j) = B[k*ldb + j]: row k of B is a contiguous run of op(B)'s columns.
        (kern->pack_runs ? kern->pack_runs : split_runs)(B + pc * ldb + jc + j_begin, ldb, j_end - j_begin,
                                                         kc, nr, dst);
        return;
    }
    // op(B)(k, j) = B[j*ldb + k]: read nr rows of B in lock step.
    for (int64_t j0 = j_begin; j0 < j_end; j0 += nr) {
        int cols = (int)(j_end - j0 < nr ? j_end - j0 : nr);
        const float *src = B + (jc + j0) * ldb + pc;
        (kern->pack_rows ? kern->pack_rows : interleave)(src, ldb, cols, kc, nr, dst + (j0 - j_begin) * kc);
    }
}

// ---------------------------------------------------------------------------------------------
// Packed GEMM

typedef struct {
    const SgemmKernelInfo *kernel;
    int trans_a, trans_b;
    int64_t M, N, K;
    float alpha, beta;
    const float *A, *B;
    int64_t lda, ldb, ldc;
    float *C;
    float *packed_b[2];   // B panels of consecutive (jc, pc) blocks alternate between these two
    int64_t mc;           // rows of C per work unit (a multiple of mr, <= kernel->mc)
    int64_t n_chunks;     // pieces each NC block is cut into along N (work units per A block)
    int64_t b_pieces;     // pieces the packing of one B panel is cut into
    int64_t *unit_epoch;  // per work unit: the last block in which it was finished (threads > 1)
    // Shared, atomic: claim counters holding (block + 1) << 32 | next index, for B pieces and work
    // units; B pieces packed so far; work units finished so far that read B buffer 0 / 1.
    uint64_t b_claims, unit_claims;
    int64_t b_packed, finished_reading[2];
} PackedGemm;

static inline void spin_pause(void) {
#if defined(__x86_64__)
    __builtin_ia32_pause();
#endif
}

// Waits until *value >= target (another thread's progress); yields the CPU if that takes long,
// since on a busy machine the thread being waited for may need this core.
static void wait_until_at_least(const int64_t *value, int64_t target) {
    for (int spins = 0; __atomic_load_n(value, __ATOMIC_ACQUIRE) < target; spins++) {
        if (spins < 4000)
            spin_pause();
        else
            sched_yield();
    }
}

// Takes the next index below `limit` in block `block` from a claim counter; -1 when they are all
// taken. The counter holds (block + 1) << 32 | next, so a thread still working on an older block
// can never take an index of a newer one (a plain counter with per-block offsets would need every
// thread to finish block b before any starts block b + 1, i.e. a barrier).
static int64_t claim(uint64_t *counter, int64_t block, int64_t limit) {
    uint64_t seen = __atomic_load_n(counter, __ATOMIC_RELAXED);
    for (;;) {
        int64_t seen_block = (int64_t)(seen >> 32) - 1, next = (int64_t)(seen & 0xFFFFFFFFu);
        if (seen_block > block) return -1;
        if (seen_block < block) next = 0;  // first claim of this block (the older one is exhausted)
        if (next >= limit) return -1;
        uint64_t wanted = (uint64_t)(block + 1) << 32 | (uint64_t)(next + 1);
        if (__atomic_compare_exchange_n(counter, &seen, wanted, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
            return next;
    }
}

// *value = max(*value, target), atomically (the unit of the first K block of the next NC block may
// finish before the same unit of the last K block of this one).
static void raise_to(int64_t *value, int64_t target) {
    int64_t seen = __atomic_load_n(value, __ATOMIC_RELAXED);
    while (seen < target &&
           !__atomic_compare_exchange_n(value, &seen, target, 1, __ATOMIC_RELEASE, __ATOMIC_RELAXED)) {
    }
}

// One thread's part. For each (jc, pc) block: the threads pack the B panel together (pieces taken
// from a counter), wait until it is complete, then take work units (an MC block of rows x a chunk
// of B micro-panels) from another counter. There are no barriers: a thread that is descheduled (the
// machine is shared) delays the others only while it holds a piece or a unit; the others take the
// rest. What a barrier would guarantee is checked directly instead:
//   - B panels alternate between two buffers; a buffer is re-packed only after every unit that
//     read it (blocks b-2, b-4, ...) has finished (count of finished units per buffer);
//   - a unit of a later K block of the same C region waits until that region's previous K block
//     is finished (unit_epoch), since both update the same C entries;
//   - pieces of block b+1 are packed only by threads that saw block b's panel complete, so one
//     running count of packed pieces tells when a panel is complete.
static void packed_gemm_thread(PackedGemm *g, int threads) {
    const SgemmKernelInfo *kern = g->kernel;
    const int mr = kern->mr, nr = kern->nr;
    const int64_t MC = g->mc, KC = kern->kc, NC = kern->nc;
    const int64_t ic_blocks = (g->M + MC - 1) / MC;
    float *packed_a = NULL;
    // Every thread walks the same blocks and keeps the same running totals.
    int64_t block = 0, packed_target = 0, units_through[2] = {0, 0};

    for (int64_t jc = 0; jc < g->N; jc += NC) {
        int64_t nc = g->N - jc < NC ? g->N - jc : NC;
        int64_t n_panels = (nc + nr - 1) / nr;
        int64_t n_chunks = g->n_chunks < n_panels ? g->n_chunks : n_panels;
        int64_t b_pieces = g->b_pieces < n_panels ? g->b_pieces : n_panels;
        int64_t units = ic_blocks * n_chunks;
        for (int64_t pc = 0; pc < g->K; pc += KC, block++) {
            int64_t kc = g->K - pc < KC ? g->K - pc : KC;
            int buffer = threads > 1 ? (int)(block & 1) : 0;
            float *packed_b = g->packed_b[buffer];
            // units_through[buffer] = units of the earlier blocks that used this buffer.
            wait_until_at_least(&g->finished_reading[buffer], units_through[buffer]);
            for (int64_t piece; (piece = claim(&g->b_claims, block, b_pieces)) >= 0;) {
                pack_b(kern, g->trans_b, g->B, g->ldb, pc, jc, nc, kc, n_panels * piece / b_pieces,
                       n_panels * (piece + 1) / b_pieces, packed_b);
                __atomic_fetch_add(&g->b_packed, 1, __ATOMIC_RELEASE);
            }
            packed_target += b_pieces;
            wait_until_at_least(&g->b_packed, packed_target);

            float beta = pc == 0 ? g->beta : 1.0f;  // later K blocks accumulate into C
            int64_t packed_ic = -1;                 // A block now in packed_a
            for (int64_t unit; (unit = claim(&g->unit_claims, block, units)) >= 0;) {
                if (threads > 1 && pc > 0) wait_until_at_least(&g->unit_epoch[unit], block - 1);
                int64_t ic_block = unit / n_chunks, chunk = unit % n_chunks;
                int64_t ic = ic_block * MC;
                int64_t mc = g->M - ic < MC ? g->M - ic : MC;
                if (ic_block != packed_ic) {
                    if (!packed_a) {
                        PackCache *cache = my_pack_cache();
                        packed_a = grow_buffer(&cache->a, &cache->a_bytes,
                                               (size_t)kern->mc * KC * sizeof(float));
                    }
                    pack_a(kern, g->trans_a, g->A, g->lda, ic, pc, mc, kc, packed_a);
                    packed_ic = ic_block;
                }
                int64_t p_begin = n_panels * chunk / n_chunks, p_end = n_panels * (chunk + 1) / n_chunks;
                for (int64_t ir = 0; ir < mc; ir += mr) {
                    int m = (int)(mc - ir < mr ? mc - ir : mr);
                    const float *a_panel = packed_a + ir * kc;
                    float *c_row = g->C + (ic + ir) * g->ldc + jc;
                    for (int64_t p = p_begin; p < p_end; p++) {
                        int64_t jr = p * nr;
                        int n = (int)(nc - jr < nr ? nc - jr : nr);
                        kern->kernel(kc, a_panel, packed_b + p * nr * kc, c_row + jr, g->ldc, m, n,
                                     g->alpha, beta);
                    }
                }
                if (threads > 1) raise_to(&g->unit_epoch[unit], block);
                __atomic_fetch_add(&g->finished_reading[buffer], 1, __ATOMIC_RELEASE);
            }
            units_through[buffer] += units;
        }
    }
}

// Bytes of one packed B panel for this problem.
static size_t b_panel_bytes(const SgemmKernelInfo *kern, int64_t N, int64_t K) {
    int64_t nc = N < kern->nc ? N : kern->nc;
    int64_t kc = K < kern->kc ? K : kern->kc;
    return (size_t)((nc + kern->nr - 1) / kern->nr * kern->nr * kc) * sizeof(float);
}

// One thread's packed GEMM on C[:, n_begin:n_end], with its own B buffer.
static void packed_gemm_columns(const PackedGemm *whole, int64_t n_begin, int64_t n_end) {
    PackedGemm g = *whole;
    const SgemmKernelInfo *kern = g.kernel;
    g.N = n_end - n_begin;
    g.B += g.trans_b ? n_begin * g.ldb : n_begin;
    g.C += n_begin;
    g.mc = kern->mc;
    g.n_chunks = g.b_pieces = 1;
    g.b_claims = g.unit_claims = 0;
    g.b_packed = g.finished_reading[0] = g.finished_reading[1] = 0;
    PackCache *cache = my_pack_cache();
    g.packed_b[0] = grow_buffer(&cache->b, &cache->b_bytes, b_panel_bytes(kern, g.N, g.K));
    packed_gemm_thread(&g, 1);
}

static void sgemm_packed(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                         const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                         int64_t ldc, int threads) {
    const SgemmKernelInfo *kern = active_kernel();
    const int mr = kern->mr, nr = kern->nr;
    PackedGemm g = {.kernel = kern, .trans_a = trans_a, .trans_b = trans_b, .M = M, .N = N, .K = K,
                    .alpha = alpha, .beta = beta, .A = A, .B = B, .lda = lda, .ldb = ldb, .ldc = ldc,
                    .C = C, .mc = kern->mc, .n_chunks = 1, .b_pieces = 1};
    if (threads <= 1) {
        packed_gemm_columns(&g, 0, N);
        return;
    }
    int64_t m_tiles = (M + mr - 1) / mr;
    int64_t want = 6 * (int64_t)threads;  // work units: >= 6 per thread evens out uneven thread speeds
    if (M <= 256 && N >= 8 * M) {
        // Few rows, many columns (convolutions as im2col GEMMs): each B element is used only M
        // times, so packing B costs about as much as computing with it. Threads take column chunks
        // of C independently (own B panel), so one thread's packing overlaps the other's
        // arithmetic; each chunk re-packs A, which is cheap while M is small. Measured on this
        // machine against the shared-panel scheme below: 1.8x faster for the ResNet stem (M = 64,
        // K = 27), 1.3x for M = 64..128, 1.07x for M = 256; 10% slower for M = 512, N = 2048.
        int64_t width = (N + want - 1) / want;
        width = (width + nr - 1) / nr * nr;
        if (width > kern->nc) width = kern->nc;
        int64_t chunks = (N + width - 1) / width;
        int64_t next_chunk = 0;
#pragma omp parallel num_threads(threads)
        for (;;) {
            int64_t chunk = __atomic_fetch_add(&next_chunk, 1, __ATOMIC_RELAXED);
            if (chunk >= chunks) break;
            int64_t n_end = (chunk + 1) * width < N ? (chunk + 1) * width : N;
            packed_gemm_columns(&g, chunk * width, n_end);
        }
        return;
    }
    // Otherwise all threads share each packed B panel and take row blocks (down to 2 micro-panels)
    // from a counter; if rows run out, N is cut into chunks too (each re-packs its A block).
    int64_t tiles_per_block = m_tiles / want;
    if (tiles_per_block < 2) tiles_per_block = 2;
    if (tiles_per_block * mr > kern->mc) tiles_per_block = kern->mc / mr;
    g.mc = tiles_per_block * mr;
    int64_t ic_blocks = (M + g.mc - 1) / g.mc;
    if (ic_blocks < want) g.n_chunks = (want + ic_blocks - 1) / ic_blocks;
    g.b_pieces = 4 * (int64_t)threads;
    PackCache *cache = my_pack_cache();
    size_t panel_bytes = b_panel_bytes(kern, N, K);
    char *b_buffers = grow_buffer(&cache->b, &cache->b_bytes, 2 * panel_bytes);
    g.packed_b[0] = (float *)b_buffers;
    g.packed_b[1] = (float *)(b_buffers + panel_bytes);  // panel_bytes is a multiple of 64
    int64_t units = ic_blocks * g.n_chunks;
    g.unit_epoch = grow_buffer(&cache->epochs, &cache->epochs_bytes, (size_t)units * sizeof(int64_t));
    for (int64_t u = 0; u < units; u++) g.unit_epoch[u] = -1;
#pragma omp parallel num_threads(threads)
    {
        // The runtime may give fewer threads than asked: use the team it gave.
        packed_gemm_thread(&g, omp_get_num_threads());
    }
}

// ---------------------------------------------------------------------------------------------
// Small problems in plain C (kernels without their own small path, and GEMV-like shapes): no
// packing, one row of C at a time with a block of column accumulators.

#define SMALL_COLUMNS 64

static void sgemm_small(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                        const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                        int64_t ldc) {
    int64_t a_row_step = trans_a ? 1 : lda, a_k_step = trans_a ? lda : 1;
    int64_t b_k_step = trans_b ? 1 : ldb, b_col_step = trans_b ? ldb : 1;
    for (int64_t i = 0; i < M; i++) {
        const float *a_row = A + i * a_row_step;
        for (int64_t j0 = 0; j0 < N; j0 += SMALL_COLUMNS) {
            int64_t cols = N - j0 < SMALL_COLUMNS ? N - j0 : SMALL_COLUMNS;
            float acc[SMALL_COLUMNS] = {0};
            if (!trans_b) {
                for (int64_t k = 0; k < K; k++) {
                    float a = a_row[k * a_k_step];
                    const float *b = B + k * b_k_step + j0;
#pragma omp simd
                    for (int64_t j = 0; j < cols; j++) acc[j] += a * b[j];
                }
            } else {
                for (int64_t j = 0; j < cols; j++) {
                    const float *b = B + (j0 + j) * b_col_step;
                    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
                    for (int64_t k = 0; k < K; k++) sum += a_row[k * a_k_step] * b[k];
                    acc[j] = sum;
                }
            }
            float *c = C + i * ldc + j0;
            if (beta == 0.0f)
                for (int64_t j = 0; j < cols; j++) c[j] = alpha * acc[j];
            else
                for (int64_t j = 0; j < cols; j++) c[j] = alpha * acc[j] + beta * c[j];
        }
    }
}

// C = beta * C (beta == 0: zeros, C not read).
static void scale_matrix(int64_t M, int64_t N, float beta, float *C, int64_t ldc) {
    for (int64_t i = 0; i < M; i++) {
        float *c = C + i * ldc;
        if (beta == 0.0f)
            memset(c, 0, (size_t)N * sizeof(float));
        else if (beta != 1.0f)
            for (int64_t j = 0; j < N; j++) c[j] *= beta;
    }
}

// Below this many multiply-adds the packing and threading overheads dominate: measured here, the
// AVX-512 unpacked path is 1.5-4x faster than the packed one up to 24^3 whatever the transposes,
// and as fast or faster up to 64^3 when op(B) = B (it reads rows of B directly).
#define SMALL_GEMM_VOLUME (32 * 32 * 32)
#define SMALL_GEMM_VOLUME_B_ROWS (64 * 64 * 64)
// Each thread should get at least this many multiply-adds (~a few microseconds of work) to pay for
// starting a parallel region and its barriers.
#define VOLUME_PER_THREAD (96 * 96 * 96)

static int available_threads(void) { return omp_in_parallel() ? 1 : omp_get_max_threads(); }

static void sgemm_with_threads(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                               const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                               float *C, int64_t ldc, int threads) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || alpha == 0.0f) {
        scale_matrix(M, N, beta, C, ldc);
        return;
    }
    double volume = (double)M * (double)N * (double)K;
    // Small problems, and GEMV-like shapes (M or N == 1, which would pad a register tile 14-32x and
    // are memory-bound anyway), skip packing: the kernel's own unpacked path if it has one, else
    // plain loops. (The only case the AVX-512 small path declines, A^T B^T with K x N too big to
    // transpose, goes to plain loops if GEMV-like, else to the packed path.)
    const SgemmKernelInfo *kern = active_kernel();
    if (volume < SMALL_GEMM_VOLUME || M == 1 || N == 1 ||
        (kern->small && !trans_b && volume <= SMALL_GEMM_VOLUME_B_ROWS)) {
        float *scratch = NULL;
        if (kern->small && trans_b && K * N <= SMALL_GEMM_VOLUME) {
            PackCache *cache = my_pack_cache();
            scratch = grow_buffer(&cache->b, &cache->b_bytes, (size_t)(K * N) * sizeof(float));
        }
        if (kern->small &&
            kern->small(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, scratch))
            return;
        if (!kern->small || M == 1 || N == 1) {
            sgemm_small(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
            return;
        }
    }
    double useful = volume / VOLUME_PER_THREAD;
    if (useful < threads) threads = useful < 1 ? 1 : (int)useful;
    sgemm_packed(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, threads);
}

void sgemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
           int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    sgemm_with_threads(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc,
                       available_threads());
}

// Parallel over the batch when every thread gets the same number of GEMMs, or many of them, or
// when each GEMM is too small to split; otherwise one GEMM at a time with all threads.
static int batch_in_parallel(int64_t M, int64_t N, int64_t K, int64_t batch, int threads) {
    if (threads <= 1 || batch < threads) return 0;
    double volume = (double)M * (double)N * (double)K;
    return batch % threads == 0 || batch >= 4 * (int64_t)threads || volume < 4.0 * VOLUME_PER_THREAD;
}

void sgemm_batched(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                   const float *A, int64_t lda, int64_t stride_a, const float *B, int64_t ldb,
                   int64_t stride_b, float beta, float *C, int64_t ldc, int64_t stride_c, int64_t batch) {
    if (batch <= 0) return;
    int threads = available_threads();
    if (batch_in_parallel(M, N, K, batch, threads)) {
#pragma omp parallel for num_threads(threads) schedule(dynamic)
        for (int64_t b = 0; b < batch; b++)
            sgemm_with_threads(trans_a, trans_b, M, N, K, alpha, A + b * stride_a, lda, B + b * stride_b,
                               ldb, beta, C + b * stride_c, ldc, 1);
    } else {
        for (int64_t b = 0; b < batch; b++)
            sgemm_with_threads(trans_a, trans_b, M, N, K, alpha, A + b * stride_a, lda, B + b * stride_b,
                               ldb, beta, C + b * stride_c, ldc, threads);
    }
}

// ---------------------------------------------------------------------------------------------
// Double precision: tiles of C (DGEMM_TILE_M x DGEMM_TILE_N) in parallel; for each K block the
// tile's slice of op(B) is copied into a contiguous buffer so the inner j loop is unit-stride and
// vectorises, whatever trans_b is.

#define DGEMM_TILE_M 32
#define DGEMM_TILE_N 128
#define DGEMM_TILE_K 128

static void dgemm_with_threads(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, double alpha,
                               const double *A, int64_t lda, const double *B, int64_t ldb, double beta,
                               double *C, int64_t ldc, int threads) {
    if (M <= 0 || N <= 0) return;
    for (int64_t i = 0; i < M; i++) {
        double *c = C + i * ldc;
        if (beta == 0.0)
            for (int64_t j = 0; j < N; j++) c[j] = 0.0;
        else if (beta != 1.0)
            for (int64_t j = 0; j < N; j++) c[j] *= beta;
    }
    if (K <= 0 || alpha == 0.0) return;
    int64_t tiles_m = (M + DGEMM_TILE_M - 1) / DGEMM_TILE_M;
    int64_t tiles_n = (N + DGEMM_TILE_N - 1) / DGEMM_TILE_N;
    int64_t tiles = tiles_m * tiles_n;
    if (tiles < threads) threads = (int)tiles;
    if ((double)M * N * K < VOLUME_PER_THREAD) threads = 1;
#pragma omp parallel for num_threads(threads) schedule(dynamic) if (threads > 1)
    for (int64_t t = 0; t < tiles; t++) {
        PackCache *cache = my_pack_cache();
        double *b_block =
            grow_buffer(&cache->d, &cache->d_bytes, DGEMM_TILE_K * DGEMM_TILE_N * sizeof(double));
        int64_t i0 = t / tiles_n * DGEMM_TILE_M, j0 = t % tiles_n * DGEMM_TILE_N;
        int64_t rows = M - i0 < DGEMM_TILE_M ? M - i0 : DGEMM_TILE_M;
        int64_t cols = N - j0 < DGEMM_TILE_N ? N - j0 : DGEMM_TILE_N;
        for (int64_t p0 = 0; p0 < K; p0 += DGEMM_TILE_K) {
            int64_t depth = K - p0 < DGEMM_TILE_K ? K - p0 : DGEMM_TILE_K;
            for (int64_t k = 0; k < depth; k++)
                for (int64_t j = 0; j < cols; j++)
                    b_block[k * DGEMM_TILE_N + j] =
                        trans_b ? B[(j0 + j) * ldb + p0 + k] : B[(p0 + k) * ldb + j0 + j];
            for (int64_t i = 0; i < rows; i++) {
                double *c = C + (i0 + i) * ldc + j0;
                for (int64_t k = 0; k < depth; k++) {
                    double a = alpha * (trans_a ? A[(p0 + k) * lda + i0 + i] : A[(i0 + i) * lda + p0 + k]);
                    const double *b = b_block + k * DGEMM_TILE_N;
                    for (int64_t j = 0; j < cols; j++) c[j] += a * b[j];
                }
            }
        }
    }
}

void dgemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, double alpha, const double *A,
           int64_t lda, const double *B, int64_t ldb, double beta, double *C, int64_t ldc) {
    dgemm_with_threads(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc,
                       available_threads());
}

void dgemm_batched(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, double alpha,
                   const double *A, int64_t lda, int64_t stride_a, const double *B, int64_t ldb,
                   int64_t stride_b, double beta, double *C, int64_t ldc, int64_t stride_c, int64_t batch) {
    if (batch <= 0) return;
    int threads = available_threads();
    if (batch_in_parallel(M, N, K, batch, threads)) {
#pragma omp parallel for num_threads(threads) schedule(dynamic)
        for (int64_t b = 0; b < batch; b++)
            dgemm_with_threads(trans_a, trans_b, M, N, K, alpha, A + b * stride_a, lda, B + b * stride_b,
                               ldb, beta, C + b * stride_c, ldc, 1);
    } else {
        for (int64_t b = 0; b < batch; b++)
            dgemm_with_threads(trans_a, trans_b, M, N, K, alpha, A + b * stride_a, lda, B + b * stride_b,
                               ldb, beta, C + b * stride_c, ldc, threads);
    }
}
