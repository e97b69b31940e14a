// Kernel tests on the emulated CUDA device for the dense and indexing kernel families: the tiled GEMM
// (kernels/gemm.cu), implicit-GEMM convolution (kernels/conv.cu), pooling and nearest upsampling
// (kernels/pool.cu), embedding / index_select, gather and the concat / split copy (kernels/index.cu).
//
// Every kernel runs on the emulated device (engine/gpu/gpu_emulated.c + kernels/emu) and is compared
// with the CPU op it stands in for (engine/ops.h forward, and autograd for the backward), or with the
// CPU routine (engine/cpu/gemm.h sgemm_batched, engine/cpu/pool.h for max-pool indices). Shapes
// include 1, primes and sizes that are not multiples of the tiles (64, 128), the K slice (8) or the
// blocks (256); every device output starts as NaN (gpu_alloc poisons its blocks), so an element a
// kernel forgets to write fails; padding around GEMM operands is NaN (must not be read) and padding
// around C is a sentinel (must not be written). Each check runs under three thread orders of the
// emulator (forward, reverse, one seeded random permutation): a missing __syncthreads usually
// gives a wrong answer in at least one of them. The kernels are deterministic (no float atomics), so
// the three orders must also give the same bits.
//
// Tolerances are next to each comparison. The sums (GEMM, convolutions, average pooling) are f32 in
// a different order than the CPU's: each of the two results is within about n * 2^-24 * sum |terms|
// of the exact sum (n terms), so the checks allow 2 (n + 2) 2^-24 times the element's own sum of
// |terms|, computed by running the same op on |inputs|. Where the kernel performs the CPU's exact
// operations in the CPU's order (max pooling, the gather-form backward kernels of pooling and
// indexing, copies), the check is bitwise.
#include <stdint.h>

#include "engine/autograd.h"
#include "engine/cpu/conv.h"
#include "engine/cpu/gemm.h"
#include "engine/cpu/pool.h"
#include "engine/gpu/gpu.h"
#include "engine/ops.h"
#include "engine/tensor.h"
#include "kernels/conv.h"
#include "kernels/emu/cuemu_host.h"
#include "kernels/gemm.h"
#include "kernels/index.h"
#include "kernels/pool.h"
#include "tests/check.h"
#include "tests/kernel_test_support.h"

TEST_MAIN_COUNTERS;

#define UNIT_ROUNDOFF 0x1p-24  // f32 unit roundoff

// ------------------------------------------------------------------------------------------------
// Thread orders, the list of kernels checked, random numbers, buffers.
// ------------------------------------------------------------------------------------------------

static float *copy_floats(const float *src, int64_t n) {
    float *p = host_floats(n);
    if (n > 0) memcpy(p, src, (size_t)n * sizeof(float));
    return p;
}
static float *abs_floats(const float *src, int64_t n) {
    float *p = host_floats(n);
    for (int64_t i = 0; i < n; i++) p[i] = fabsf(src[i]);
    return p;
}
static float *zero_floats(int64_t n) {
    float *p = host_floats(n);
    for (int64_t i = 0; i < n; i++) p[i] = 0.0f;
    return p;
}
// Every launch goes to one created stream, as the engine's launches do (gpu_stream_handle gives the
// launchers' cudaStream_t; on the emulated device launches complete before they return, and the
// synchronous copies below wait for the device anyway).
static GpuStream *test_stream;
static cudaStream_t stream(void) { return gpu_stream_handle(test_stream); }

// Device buffers: fresh gpu_alloc blocks are NaN-poisoned (0xFF bytes) by the emulated runtime.
static void *device_bytes(size_t bytes) { return bytes ? gpu_alloc(bytes) : NULL; }
static float *device_floats(int64_t n) { return device_bytes((size_t)(n > 0 ? n : 0) * sizeof(float)); }
static void *to_device_bytes(const void *host, size_t bytes) {
    if (!host || !bytes) return NULL;
    void *d = gpu_alloc(bytes);
    gpu_copy_to_device(d, host, bytes);
    return d;
}
static float *to_device(const float *host, int64_t n) {
    return to_device_bytes(host, (size_t)(n > 0 ? n : 0) * sizeof(float));
}
static float *to_host(const float *device, int64_t n) {
    float *h = host_floats(n);
    if (device && n > 0) gpu_copy_to_host(h, device, (size_t)n * sizeof(float));
    return h;
}

static uint32_t float_bits(float value) {
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    return bits;
}

// Compares got with want element by element: with tolerances tol[i] (|got - want| <= tol[i]) or,
// when tol is NULL, bit for bit. NaN must meet NaN (any payload), infinities must be equal. Prints
// the first few mismatches and, with KERNEL_TEST_MARGINS=1, the share of the tolerance used.
static int check_elements(const char *what, const char *order, const float *got, const float *want, const float *tol,
                          int64_t n) {
    int bad = 0;
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        bool ok;
        if (isnan(want[i]))
            ok = isnan(got[i]);
        else if (!tol || isinf(want[i]) || tol[i] == 0)
            ok = float_bits(got[i]) == float_bits(want[i]) || (!tol ? false : got[i] == want[i]);
        else {
            double err = fabs((double)got[i] - want[i]);
            ok = err <= tol[i];
            if (isfinite(err) && err / tol[i] > worst) worst = err / tol[i];
        }
        if (!ok) {
            if (bad < 5)
                printf("  %s [%s]: element %lld = %.9g, expected %.9g (tolerance %.3g)\n", what, order, (long long)i,
                       got[i], want[i], tol ? tol[i] : 0.0);
            bad++;
        }
    }
    CHECK_MSG(bad == 0, "%s [%s]: %d of %lld elements differ", what, order, bad, (long long)n);
    if (getenv("KERNEL_TEST_MARGINS") && tol) printf("margin %-60s %6.3f\n", what, worst);
    return bad;
}

static int check_ints(const char *what, const char *order, const int32_t *got, const int32_t *want, int64_t n) {
    int bad = 0;
    for (int64_t i = 0; i < n; i++)
        if (got[i] != want[i]) {
            if (bad < 5)
                printf("  %s [%s]: element %lld = %d, expected %d\n", what, order, (long long)i, got[i], want[i]);
            bad++;
        }
    CHECK_MSG(bad == 0, "%s [%s]: %d of %lld elements differ", what, order, bad, (long long)n);
    return bad;
}

// The results of order 0 are kept; later orders must give the same bits (determinism).
typedef struct {
    float *values[8];
} FirstResults;
static void keep_or_compare(FirstResults *first, int slot, const char *what, int order, const float *values, int64_t n) {
    if (order == 0) {
        free(first->values[slot]);
        first->values[slot] = copy_floats(values, n);
        return;
    }
    const void *a = values, *b = first->values[slot];
    int same = n <= 0 || memcmp(a, b, (size_t)n * sizeof(float)) == 0;
    CHECK_MSG(same, "%s [%s]: not the same bits as in order %s", what, KERNEL_TEST_ORDERS[order], KERNEL_TEST_ORDERS[0]);
}
static void first_results_free(FirstResults *first) {
    for (int i = 0; i < 8; i++) {
        free(first->values[i]);
        first->values[i] = NULL;
    }
}

static Tensor *tensor_of(const float *data, Shape shape, bool requires_grad) {
    Tensor *t = tensor_from_data(DTYPE_F32, shape, data);
    if (requires_grad) tensor_requires_grad(t);
    return t;
}
static float *grad_copy(const Tensor *t, int64_t n) {
    if (!t || !t->grad) return NULL;
    return copy_floats(tensor_f32(t->grad), n);
}
// tol[i] = 2 (terms + 2) 2^-24 magnitude[i]: both f32 sums of `terms` terms are within
// (terms + 1) 2^-24 of the exact sum of terms whose absolute values sum to magnitude[i].
static float *sum_tolerances(const float *magnitude, int64_t n, int64_t terms) {
    float *tol = host_floats(n);
    for (int64_t i = 0; i < n; i++) tol[i] = (float)(2.0 * (double)(terms + 2) * UNIT_ROUNDOFF * magnitude[i]);
    return tol;
}

// ------------------------------------------------------------------------------------------------
// GEMM: sgemm_launch / sgemm_strided_batched_launch vs sgemm_batched (engine/cpu/gemm.h).
// ------------------------------------------------------------------------------------------------

typedef struct {
    int trans_a, trans_b, tile, batched;
    int64_t M, N, K, batch, lda, ldb, ldc, stride_a, stride_b, stride_c, a_len, b_len, c_len;
    float alpha, beta;
    float *A, *B, *C0, *want, *tol;
    char name[160];
    FirstResults first;
} GemmCase;

static void gemm_run(void *context, int order) {
    GemmCase *c = context;
    float *A = to_device(c->A, c->a_len), *B = to_device(c->B, c->b_len), *C = to_device(c->C0, c->c_len);
    sgemm_set_tile_override(c->tile);
    if (c->batched)
        sgemm_strided_batched_launch(c->trans_a, c->trans_b, c->M, c->N, c->K, c->alpha, A, c->lda, c->stride_a, B,
                                     c->ldb, c->stride_b, c->beta, C, c->ldc, c->stride_c, c->batch, stream());
    else
        sgemm_launch(c->trans_a, c->trans_b, c->M, c->N, c->K, c->alpha, A, c->lda, B, c->ldb, c->beta, C, c->ldc,
                     stream());
    sgemm_set_tile_override(0);
    float *got = to_host(C, c->c_len);
    // Interior: sum_tolerances over K products (+ beta * C); padding and gaps: bitwise (sentinel).
    check_elements(c->name, KERNEL_TEST_ORDERS[order], got, c->want, c->tol, c->c_len);
    keep_or_compare(&c->first, 0, c->name, order, got, c->c_len);
    free(got);
    gpu_free(A), gpu_free(B), gpu_free(C);
}

// broadcast: 0 none, 1 A (stride_a = 0), 2 B (stride_b = 0). pad: extra columns in every leading
// dimension (NaN in A and B, the sentinel 7.5 in C). alpha == 0: A and B are all NaN (never read).
static void gemm_case(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, int64_t batch, float alpha, float beta,
                      int pad, int broadcast, int tile) {
    GemmCase c;
    memset(&c, 0, sizeof c);
    c.trans_a = trans_a, c.trans_b = trans_b, c.tile = tile, c.M = M, c.N = N, c.K = K, c.batch = batch;
    c.alpha = alpha, c.beta = beta;
    c.batched = batch != 1 || broadcast != 0;
    const int64_t a_rows = trans_a ? K : M, a_cols = trans_a ? M : K;
    const int64_t b_rows = trans_b ? N : K, b_cols = trans_b ? K : N;
    c.lda = a_cols + pad > 0 ? a_cols + pad : 1;
    c.ldb = b_cols + pad > 0 ? b_cols + pad : 1;
    c.ldc = N + pad;
    const int64_t a_matrix = a_rows * c.lda, b_matrix = b_rows * c.ldb, c_matrix = M * c.ldc;
    c.stride_a = broadcast == 1 ? 0 : a_matrix + 3;
    c.stride_b = broadcast == 2 ? 0 : b_matrix + 2;
    c.stride_c = c_matrix + 5;
    if (!c.batched) c.stride_a = c.stride_b = c.stride_c = 0;
    c.a_len = c.stride_a * (batch - 1) + a_matrix;
    c.b_len = c.stride_b * (batch - 1) + b_matrix;
    c.c_len = c.stride_c * (batch - 1) + c_matrix;
    c.A = host_floats(c.a_len);
    c.B = host_floats(c.b_len);
    c.C0 = host_floats(c.c_len);
    for (int64_t z = 0; z < batch; z++) {
        if (alpha != 0) {
            for (int64_t r = 0; r < a_rows; r++)
                for (int64_t k = 0; k < a_cols; k++) c.A[z * c.stride_a + r * c.lda + k] = random_uniform(-1, 1);
            for (int64_t r = 0; r < b_rows; r++)
                for (int64_t k = 0; k < b_cols; k++) c.B[z * c.stride_b + r * c.ldb + k] = random_uniform(-1, 1);
        }
    }
    for (int64_t i = 0; i < c.c_len; i++) c.C0[i] = 7.5f;
    for (int64_t z = 0; z < batch; z++)
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++)
                c.C0[z * c.stride_c + i * c.ldc + j] = beta != 0 ? random_uniform(-1, 1) : NAN;
    c.want = copy_floats(c.C0, c.c_len);
    sgemm_batched(trans_a, trans_b, M, N, K, alpha, c.A, c.lda, c.stride_a, c.B, c.ldb, c.stride_b, beta, c.want, c.ldc,
                  c.stride_c, batch);
    c.tol = zero_floats(c.c_len);
    for (int64_t z = 0; z < batch; z++)
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) {
                double magnitude = 0;
                if (alpha != 0)
                    for (int64_t k = 0; k < K; k++) {
                        const float a = trans_a ? c.A[z * c.stride_a + k * c.lda + i] : c.A[z * c.stride_a + i * c.lda + k];
                        const float b = trans_b ? c.B[z * c.stride_b + j * c.ldb + k] : c.B[z * c.stride_b + k * c.ldb + j];
                        magnitude += fabs((double)a * b);
                    }
                const int64_t at = z * c.stride_c + i * c.ldc + j;
                double total = fabs(alpha) * magnitude + (beta != 0 ? fabs((double)beta * c.C0[at]) : 0);
                // sum_tolerances' bound; at least one ulp-scale term so exact zeros (K == 0) pass.
                c.tol[at] = (float)(2.0 * (K + 2) * UNIT_ROUNDOFF * total + 1e-30);
            }
    snprintf(c.name, sizeof c.name, "sgemm%s %s%s M=%lld N=%lld K=%lld batch=%lld%s alpha=%g beta=%g tile=%d",
             c.batched ? "_strided_batched" : "", trans_a ? "T" : "N", trans_b ? "T" : "N", (long long)M, (long long)N,
             (long long)K, (long long)batch, broadcast == 1 ? " (A broadcast)" : broadcast == 2 ? " (B broadcast)" : "",
             alpha, beta, tile);
    in_every_order(gemm_run, &c);
    first_results_free(&c.first);
    free(c.A), free(c.B), free(c.C0), free(c.want), free(c.tol);
}

TEST(gemm_matches_cpu) {
    // trans_a, trans_b, M, N, K, batch, alpha, beta, pad, broadcast, tile (0 = automatic)
    gemm_case(0, 0, 1, 1, 1, 1, 1.0f, 0.0f, 0, 0, 0);
    gemm_case(0, 0, 64, 64, 16, 1, 1.0f, 0.0f, 0, 0, 64);      // exact tiles
    gemm_case(1, 0, 37, 53, 29, 1, 1.0f, 0.0f, 3, 0, 64);      // primes, padded leading dims
    gemm_case(0, 1, 130, 67, 33, 1, 0.5f, 0.0f, 1, 0, 128);    // two 128-row tiles, partial N tile
    gemm_case(1, 1, 17, 131, 70, 1, -1.25f, 0.75f, 2, 0, 128); // beta != 0 reads C
    gemm_case(1, 1, 67, 29, 41, 1, 1.0f, 2.0f, 0, 0, 64);
    gemm_case(0, 0, 129, 1, 257, 1, 1.0f, 0.0f, 0, 0, 0);      // GEMV-like, long K
    gemm_case(0, 1, 1, 200, 9, 1, 1.0f, 0.0f, 5, 0, 0);
    gemm_case(0, 0, 23, 19, 0, 1, 1.0f, 0.5f, 0, 0, 64);       // K == 0: C = beta * C
    gemm_case(0, 0, 23, 19, 0, 1, 1.0f, 0.0f, 0, 0, 64);       // ... = 0
    gemm_case(1, 0, 31, 17, 13, 1, 0.0f, -0.5f, 1, 0, 64);     // alpha == 0: A, B (NaN) not read
    gemm_case(0, 0, 33, 65, 27, 3, 1.0f, 0.0f, 2, 0, 64);      // batched
    gemm_case(1, 0, 21, 70, 35, 3, 1.0f, 0.25f, 0, 1, 128);    // A broadcast
    gemm_case(0, 1, 45, 14, 18, 2, 1.0f, 0.0f, 1, 2, 0);       // B broadcast
    gemm_case(0, 0, 257, 300, 61, 1, 1.0f, 0.0f, 0, 0, 128);   // 3 x 3 blocks of 128 x 128, partial edges
    gemm_case(1, 1, 131, 129, 24, 2, 1.0f, 1.0f, 1, 0, 64);    // 3 x 3 blocks of 64 x 64, batched
    for (int r = 0; r < 3; r++)
        gemm_case((int)random_int(0, 1), (int)random_int(0, 1), random_int(1, 150), random_int(1, 150),
                  random_int(1, 90), random_int(1, 2), 1.0f, r == 1 ? 0.5f : 0.0f, (int)random_int(0, 3), 0,
                  r == 2 ? 128 : 0);
    kernel_checked("sgemm");
    kernel_checked("sgemm_strided_batched");
}

// ------------------------------------------------------------------------------------------------
// Convolution: conv2d_* launchers vs op_conv2d and its autograd backward.
// ------------------------------------------------------------------------------------------------

typedef struct {
    ConvGeometry g;
    int has_bias, tile, splits;
    int64_t nx, nw, ny;
    float *x, *w, *b, *dy;                               // inputs
    float *y, *dx, *dw, *db;                             // references (op_conv2d + autograd)
    float *tol_y, *tol_dx, *tol_dw, *tol_db;
    char name[200];
    FirstResults first;
} ConvCase;

static void conv_run(void *context, int order) {
    ConvCase *c = context;
    const ConvGeometry *g = &c->g;
    const char *o = KERNEL_TEST_ORDERS[order];
    conv2d_set_tile_override(c->tile);
    conv2d_set_split_override(c->splits);
    float *x = to_device(c->x, c->nx), *w = to_device(c->w, c->nw), *b = c->has_bias ? to_device(c->b, g->c_out) : NULL;
    float *dy = to_device(c->dy, c->ny);
    float *y = device_floats(c->ny), *dx = device_floats(c->nx), *dw = device_floats(c->nw), *db = device_floats(g->c_out);
    size_t filter_bytes = conv2d_backward_filter_workspace_bytes(g), bias_bytes = conv2d_backward_bias_workspace_bytes(g);
    void *workspace = device_bytes(filter_bytes > bias_bytes ? filter_bytes : bias_bytes);
    conv2d_forward_launch(g, x, w, b, y, stream());
    conv2d_backward_data_launch(g, w, dy, dx, stream());
    conv2d_backward_filter_launch(g, x, dy, dw, workspace, stream());
    conv2d_backward_bias_launch(g, dy, db, workspace, stream());
    conv2d_set_tile_override(0);
    conv2d_set_split_override(0);
    float *hy = to_host(y, c->ny), *hdx = to_host(dx, c->nx), *hdw = to_host(dw, c->nw), *hdb = to_host(db, g->c_out);
    char what[256];
    // Each: sum_tolerances over the pass's K terms (set in conv_case).
    snprintf(what, sizeof what, "conv2d_forward %s", c->name);
    check_elements(what, o, hy, c->y, c->tol_y, c->ny);
    keep_or_compare(&c->first, 0, what, order, hy, c->ny);
    snprintf(what, sizeof what, "conv2d_backward_data %s", c->name);
    check_elements(what, o, hdx, c->dx, c->tol_dx, c->nx);
    keep_or_compare(&c->first, 1, what, order, hdx, c->nx);
    snprintf(what, sizeof what, "conv2d_backward_filter %s", c->name);
    check_elements(what, o, hdw, c->dw, c->tol_dw, c->nw);
    keep_or_compare(&c->first, 2, what, order, hdw, c->nw);
    snprintf(what, sizeof what, "conv2d_backward_bias %s", c->name);
    check_elements(what, o, hdb, c->db, c->tol_db, g->c_out);
    keep_or_compare(&c->first, 3, what, order, hdb, g->c_out);
    free(hy), free(hdx), free(hdw), free(hdb);
    gpu_free(x), gpu_free(w), gpu_free(b), gpu_free(dy), gpu_free(y), gpu_free(dx), gpu_free(dw), gpu_free(db);
    gpu_free(workspace);
}

static void conv_case(int64_t B, int64_t Cin, int64_t H, int64_t W, int64_t Cout, int64_t KH, int64_t KW, int sh, int sw,
                      int ph, int pw, int dh, int dw, int groups, int has_bias, int tile, int splits) {
    ConvCase c;
    memset(&c, 0, sizeof c);
    c.has_bias = has_bias, c.tile = tile, c.splits = splits;
    ConvGeometry g = {.batch = B, .c_in = Cin, .h = H, .w = W, .c_out = Cout, .kh = KH, .kw = KW, .stride_h = sh,
                      .stride_w = sw, .pad_h = ph, .pad_w = pw, .dilation_h = dh, .dilation_w = dw, .groups = groups};
    conv_geometry_finish(&g);
    c.g = g;
    c.nx = B * Cin * H * W;
    c.nw = Cout * (Cin / groups) * KH * KW;
    c.ny = B * Cout * g.out_h * g.out_w;
    c.x = random_floats(c.nx, -1, 1);
    c.w = random_floats(c.nw, -1, 1);
    c.b = random_floats(Cout, -1, 1);
    c.dy = random_floats(c.ny, -1, 1);
    Conv2dParams p = {.stride_h = sh, .stride_w = sw, .pad_h = ph, .pad_w = pw, .dilation_h = dh, .dilation_w = dw,
                      .groups = groups};
    TensorScope scope = tensor_scope_begin();
    // References: the CPU op and its autograd backward.
    Tensor *x = tensor_of(c.x, SHAPE(B, Cin, H, W), true), *w = tensor_of(c.w, SHAPE(Cout, Cin / groups, KH, KW), true);
    Tensor *b = tensor_of(c.b, SHAPE(Cout), true);
    Tensor *y = op_conv2d(x, w, has_bias ? b : NULL, p);
    tensor_backward(y, tensor_of(c.dy, SHAPE(B, Cout, g.out_h, g.out_w), false));
    c.y = copy_floats(tensor_f32(y), c.ny);
    c.dx = grad_copy(x, c.nx);
    c.dw = grad_copy(w, c.nw);
    c.db = grad_copy(b, Cout);
    if (!c.db) c.db = zero_floats(Cout);  // no bias in the op: still compare the launcher's sum of dy
    if (!has_bias) {
        for (int64_t co = 0; co < Cout; co++) {
            double total = 0;
            for (int64_t i = 0; i < B; i++)
                for (int64_t q = 0; q < g.out_h * g.out_w; q++) total += c.dy[(i * Cout + co) * g.out_h * g.out_w + q];
            c.db[co] = (float)total;
        }
    }
    // Magnitudes: the same op on |x|, |w|, |b|, |dy| gives each output's sum of |terms|.
    float *ax = abs_floats(c.x, c.nx), *aw = abs_floats(c.w, c.nw), *ab = abs_floats(c.b, Cout);
    float *ady = abs_floats(c.dy, c.ny);
    Tensor *mx = tensor_of(ax, SHAPE(B, Cin, H, W), true), *mw = tensor_of(aw, SHAPE(Cout, Cin / groups, KH, KW), true);
    Tensor *mb = tensor_of(ab, SHAPE(Cout), true);
    Tensor *my = op_conv2d(mx, mw, mb, p);
    tensor_backward(my, tensor_of(ady, SHAPE(B, Cout, g.out_h, g.out_w), false));
    const int64_t P = g.out_h * g.out_w;
    c.tol_y = sum_tolerances(tensor_f32(my), c.ny, (Cin / groups) * KH * KW + 1);
    c.tol_dx = sum_tolerances(tensor_f32(mx->grad), c.nx, (Cout / groups) * KH * KW);
    c.tol_dw = sum_tolerances(tensor_f32(mw->grad), c.nw, B * P);
    c.tol_db = sum_tolerances(tensor_f32(mb->grad), Cout, B * P);
    tensor_scope_end(scope);
    free(ax), free(aw), free(ab), free(ady);
    snprintf(c.name, sizeof c.name,
             "x[%lld,%lld,%lld,%lld] w[%lld,%lld,%lld,%lld] stride %d,%d pad %d,%d dilation %d,%d groups %d%s tile %d "
             "splits %d",
             (long long)B, (long long)Cin, (long long)H, (long long)W, (long long)Cout, (long long)(Cin / groups),
             (long long)KH, (long long)KW, sh, sw, ph, pw, dh, dw, groups, has_bias ? " bias" : "", tile, splits);
    in_every_order(conv_run, &c);
    first_results_free(&c.first);
    free(c.x), free(c.w), free(c.b), free(c.dy), free(c.y), free(c.dx), free(c.dw), free(c.db);
    free(c.tol_y), free(c.tol_dx), free(c.tol_dw), free(c.tol_db);
}

TEST(conv2d_matches_cpu) {
    // B, Cin, H, W, Cout, KH, KW, stride h/w, pad h/w, dilation h/w, groups, bias, tile, splits
    conv_case(1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 0);
    conv_case(2, 3, 7, 5, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0);
    conv_case(2, 5, 11, 13, 7, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 128, 3);   // stride 2, 128-tiles
    conv_case(1, 4, 9, 9, 6, 3, 3, 1, 1, 2, 2, 2, 2, 1, 0, 64, 1);      // dilation 2
    conv_case(2, 6, 6, 6, 4, 3, 3, 1, 1, 1, 1, 1, 1, 2, 1, 0, 2);       // groups 2
    conv_case(2, 5, 8, 8, 5, 3, 3, 1, 1, 1, 1, 1, 1, 5, 1, 0, 0);       // depthwise
    conv_case(1, 3, 11, 11, 6, 5, 5, 2, 2, 2, 2, 1, 1, 3, 0, 128, 0);   // depthwise, multiplier 2, 5x5
    conv_case(3, 17, 5, 5, 130, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 128, 0);  // 1x1, Cout > 128
    conv_case(2, 3, 9, 7, 5, 3, 1, 2, 1, 1, 0, 1, 2, 1, 1, 64, 3);      // asymmetric kernel/stride/pad/dilation
    conv_case(2, 70, 6, 6, 67, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0, 128, 2);   // long K (630), Cin/Cout > 64
    conv_case(1, 2, 10, 10, 3, 2, 2, 3, 3, 0, 0, 1, 1, 1, 1, 64, 0);    // stride 3 > kernel: unused inputs
    conv_case(2, 3, 1, 1, 2, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0);       // 1x1 image, only the centre tap
    conv_case(4, 2, 16, 16, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0);     // automatic split-K (K = 1024)
    conv_case(3, 4, 5, 6, 8, 2, 3, 1, 2, 1, 1, 3, 1, 2, 1, 64, 5);      // groups + dilation + asymmetric
    conv_case(2, 36, 10, 11, 140, 3, 3, 1, 1, 1, 1, 1, 1, 2, 1, 128, 2); // 128-tiles: 2 x 2 per group
    for (int r = 0; r < 3; r++) {
        const int64_t groups = random_int(1, 3), k = random_int(1, 4), d = random_int(1, 2), pad = random_int(0, 2);
        const int64_t H = random_int(d * (k - 1) + 1, 12), W = random_int(d * (k - 1) + 1, 12);
        conv_case(random_int(1, 3), groups * random_int(1, 5), H, W, groups * random_int(1, 9), k, k,
                  (int)random_int(1, 3), (int)random_int(1, 3), (int)pad, (int)pad, (int)d, (int)d, (int)groups,
                  (int)random_int(0, 1), r == 0 ? 128 : 0, (int)random_int(0, 4));
    }
    kernel_checked("conv2d_forward");
    kernel_checked("conv2d_backward_data");
    kernel_checked("conv2d_backward_filter");
    kernel_checked("conv2d_backward_bias");
}

// No images: the weight and bias gradients are empty sums (zeros); forward / backward data do nothing.
TEST(conv2d_empty_batch_gives_zero_gradients) {
    ConvGeometry g = {.batch = 0, .c_in = 4, .h = 5, .w = 5, .c_out = 3, .kh = 3, .kw = 3, .stride_h = 1, .stride_w = 1,
                      .pad_h = 1, .pad_w = 1, .dilation_h = 1, .dilation_w = 1, .groups = 1};
    conv_geometry_finish(&g);
    const int64_t nw = 3 * 4 * 9;
    float *dw = device_floats(nw), *db = device_floats(3);
    size_t bytes = conv2d_backward_filter_workspace_bytes(&g) + conv2d_backward_bias_workspace_bytes(&g);
    void *workspace = device_bytes(bytes);
    conv2d_backward_filter_launch(&g, NULL, NULL, dw, workspace, stream());
    conv2d_backward_bias_launch(&g, NULL, db, workspace, stream());
    float *hdw = to_host(dw, nw), *hdb = to_host(db, 3), *zeros = zero_floats(nw);
    check_elements("conv2d_backward_filter (batch 0)", "forward", hdw, zeros, NULL, nw);
    check_elements("conv2d_backward_bias (batch 0)", "forward", hdb, zeros, NULL, 3);
    free(hdw), free(hdb), free(zeros);
    gpu_free(dw), gpu_free(db), gpu_free(workspace);
}

// ------------------------------------------------------------------------------------------------
// Pooling and nearest upsampling: pool launchers vs op_max_pool2d, op_avg_pool2d,
// op_adaptive_avg_pool2d, op_upsample_nearest2d and their autograd backward.
// ------------------------------------------------------------------------------------------------

typedef enum { POOL_CASE_MAX, POOL_CASE_AVG, POOL_CASE_ADAPTIVE, POOL_CASE_NEAREST } PoolCaseKind;

typedef struct {
    PoolCaseKind kind;
    bool include_pad;
    PoolGeometry g;  // as the launchers get it (stride may be <= 0)
    int64_t nx, ny;
    float *x, *dy, *y, *dx, *tol_y;
    int32_t *index;  // max: the CPU kernel's indices
    char name[160];
    FirstResults first;
} PoolCase;

static void pool_run(void *context, int order) {
    PoolCase *c = context;
    const char *o = KERNEL_TEST_ORDERS[order];
    float *x = to_device(c->x, c->nx), *dy = to_device(c->dy, c->ny), *y = device_floats(c->ny);
    float *dx = device_floats(c->nx);
    int32_t *index = NULL;
    char what[224];
    switch (c->kind) {
    case POOL_CASE_MAX: {
        index = device_bytes((size_t)c->ny * sizeof(int32_t));  // poisoned: -1
        max_pool2d_forward_launch(&c->g, x, y, index, stream());
        int32_t *hindex = malloc((size_t)(c->ny > 0 ? c->ny : 1) * sizeof(int32_t));
        gpu_copy_to_host(hindex, index, (size_t)c->ny * sizeof(int32_t));
        snprintf(what, sizeof what, "max_pool2d_forward index %s", c->name);
        check_ints(what, o, hindex, c->index, c->ny);  // exact: the same window walk and comparison
        free(hindex);
        float *y2 = device_floats(c->ny);  // the same without saving indices (evaluation)
        max_pool2d_forward_launch(&c->g, x, y2, NULL, stream());
        float *hy2 = to_host(y2, c->ny);
        snprintf(what, sizeof what, "max_pool2d_forward (no index) %s", c->name);
        check_elements(what, o, hy2, c->y, NULL, c->ny);
        free(hy2);
        gpu_free(y2);
        max_pool2d_backward_launch(&c->g, dy, index, dx, stream());
        break;
    }
    case POOL_CASE_AVG:
        avg_pool2d_forward_launch(&c->g, x, y, c->include_pad, stream());
        avg_pool2d_backward_launch(&c->g, dy, dx, c->include_pad, stream());
        break;
    case POOL_CASE_ADAPTIVE:
        adaptive_avg_pool2d_forward_launch(&c->g, x, y, stream());
        adaptive_avg_pool2d_backward_launch(&c->g, dy, dx, stream());
        break;
    case POOL_CASE_NEAREST:
        upsample_nearest2d_forward_launch(&c->g, x, y, stream());
        upsample_nearest2d_backward_launch(&c->g, dy, dx, stream());
        break;
    }
    float *hy = to_host(y, c->ny), *hdx = to_host(dx, c->nx);
    // Forward: max and nearest pick elements (bitwise); averages are sums in another order than the
    // CPU's vectorised loop (tol_y). Backward: the CPU's operations in the CPU's order (bitwise).
    snprintf(what, sizeof what, "%s forward", c->name);
    check_elements(what, o, hy, c->y, c->tol_y, c->ny);
    keep_or_compare(&c->first, 0, what, order, hy, c->ny);
    snprintf(what, sizeof what, "%s backward", c->name);
    check_elements(what, o, hdx, c->dx, NULL, c->nx);
    keep_or_compare(&c->first, 1, what, order, hdx, c->nx);
    free(hy), free(hdx);
    gpu_free(x), gpu_free(dy), gpu_free(y), gpu_free(dx), gpu_free(index);
}

// special: 0 random values; 1 values in {0, 1, 2} (ties); 2 ties plus NaN and -inf, and one plane
// all -inf.
static void pool_case(PoolCaseKind kind, int64_t B, int64_t C, int64_t H, int64_t W, int64_t kernel_or_out_h,
                      int64_t stride_or_out_w, int64_t pad, bool include_pad, int special) {
    PoolCase c;
    memset(&c, 0, sizeof c);
    c.kind = kind;
    c.include_pad = include_pad;
    c.nx = B * C * H * W;
    c.x = random_floats(c.nx, -1, 1);
    if (special)
        for (int64_t i = 0; i < c.nx; i++) c.x[i] = (float)random_int(0, 2);
    if (special == 2) {
        for (int64_t i = 0; i < c.nx; i += 7) c.x[i] = -INFINITY;
        for (int64_t i = 3; i < c.nx; i += 11) c.x[i] = NAN;
        for (int64_t i = 0; i < H * W; i++) c.x[i] = -INFINITY;
    }
    TensorScope scope = tensor_scope_begin();
    Tensor *x = tensor_of(c.x, SHAPE(B, C, H, W), true);
    float *ax = abs_floats(c.x, c.nx);
    Tensor *mx = tensor_of(ax, SHAPE(B, C, H, W), false);
    Tensor *y = NULL, *my = NULL;
    int64_t window = 1;  // most terms in one average
    const char *kind_name = "";
    switch (kind) {
    case POOL_CASE_MAX:
        y = op_max_pool2d(x, (int)kernel_or_out_h, (int)stride_or_out_w, (int)pad);
        kind_name = "max_pool2d";
        break;
    case POOL_CASE_AVG:
        y = op_avg_pool2d(x, (int)kernel_or_out_h, (int)stride_or_out_w, (int)pad, include_pad);
        my = op_avg_pool2d(mx, (int)kernel_or_out_h, (int)stride_or_out_w, (int)pad, include_pad);
        window = kernel_or_out_h * kernel_or_out_h;
        kind_name = include_pad ? "avg_pool2d (count_include_pad)" : "avg_pool2d";
        break;
    case POOL_CASE_ADAPTIVE:
        y = op_adaptive_avg_pool2d(x, (int)kernel_or_out_h, (int)stride_or_out_w);
        my = op_adaptive_avg_pool2d(mx, (int)kernel_or_out_h, (int)stride_or_out_w);
        window = (H / kernel_or_out_h + 2) * (W / stride_or_out_w + 2);
        kind_name = "adaptive_avg_pool2d";
        break;
    case POOL_CASE_NEAREST:
        y = op_upsample_nearest2d(x, (int)kernel_or_out_h, (int)stride_or_out_w);
        kind_name = "upsample_nearest2d";
        break;
    }
    c.g.planes = B * C;
    c.g.h = H;
    c.g.w = W;
    c.g.out_h = y->shape[2];
    c.g.out_w = y->shape[3];
    if (kind == POOL_CASE_MAX || kind == POOL_CASE_AVG) {
        c.g.kernel = kernel_or_out_h;
        c.g.stride = stride_or_out_w;  // <= 0: the kernel size, as the op (and the launcher) read it
        c.g.pad = pad;
    }
    c.ny = B * C * c.g.out_h * c.g.out_w;
    c.dy = random_floats(c.ny, -1, 1);
    tensor_backward(y, tensor_of(c.dy, SHAPE(B, C, c.g.out_h, c.g.out_w), false));
    c.y = copy_floats(tensor_f32(y), c.ny);
    c.dx = grad_copy(x, c.nx);
    // Averages: an f32 sum of up to `window` terms, then a division (one more rounding).
    c.tol_y = my ? sum_tolerances(tensor_f32(my), c.ny, window + 1) : NULL;
    if (kind == POOL_CASE_MAX) {
        PoolGeometry cpu = c.g;
        if (cpu.stride <= 0) cpu.stride = cpu.kernel;
        float *scratch = host_floats(c.ny);
        c.index = malloc((size_t)(c.ny > 0 ? c.ny : 1) * sizeof(int32_t));
        cpu_max_pool2d_forward_f32(&cpu, c.x, scratch, c.index);
        free(scratch);
    }
    tensor_scope_end(scope);
    free(ax);
    if (kind == POOL_CASE_MAX || kind == POOL_CASE_AVG)
        snprintf(c.name, sizeof c.name, "%s x[%lld,%lld,%lld,%lld] kernel %lld stride %lld pad %lld%s", kind_name,
                 (long long)B, (long long)C, (long long)H, (long long)W, (long long)kernel_or_out_h,
                 (long long)stride_or_out_w, (long long)pad, special == 2 ? " (NaN, -inf, ties)" : special ? " (ties)" : "");
    else
        snprintf(c.name, sizeof c.name, "%s x[%lld,%lld,%lld,%lld] -> %lldx%lld", kind_name, (long long)B, (long long)C,
                 (long long)H, (long long)W, (long long)kernel_or_out_h, (long long)stride_or_out_w);
    in_every_order(pool_run, &c);
    first_results_free(&c.first);
    free(c.x), free(c.dy), free(c.y), free(c.dx), free(c.tol_y), free(c.index);
}

TEST(pooling_matches_cpu) {
    // kind, B, C, H, W, kernel (or out_h), stride (or out_w; <= 0: kernel), pad, count_include_pad, special
    pool_case(POOL_CASE_MAX, 1, 1, 1, 1, 1, 0, 0, false, 0);
    pool_case(POOL_CASE_MAX, 2, 3, 7, 7, 3, 2, 1, false, 0);
    pool_case(POOL_CASE_MAX, 2, 2, 9, 11, 2, 0, 0, false, 1);   // 2x2, stride = kernel, ties
    pool_case(POOL_CASE_MAX, 1, 3, 13, 5, 3, 1, 1, false, 1);   // overlapping windows, ties
    pool_case(POOL_CASE_MAX, 2, 2, 8, 9, 3, 2, 1, false, 2);    // NaN, -inf, an all -inf plane
    pool_case(POOL_CASE_MAX, 3, 37, 6, 5, 5, 3, 2, false, 0);   // > 256 threads' worth, pad = kernel / 2
    pool_case(POOL_CASE_AVG, 2, 3, 7, 7, 3, 2, 1, true, 0);
    pool_case(POOL_CASE_AVG, 2, 3, 7, 7, 3, 2, 1, false, 0);
    pool_case(POOL_CASE_AVG, 1, 2, 5, 8, 2, 1, 1, true, 0);
    pool_case(POOL_CASE_AVG, 1, 2, 5, 8, 2, 1, 1, false, 0);
    pool_case(POOL_CASE_AVG, 1, 1, 1, 1, 1, 0, 0, true, 0);
    pool_case(POOL_CASE_AVG, 3, 29, 11, 6, 4, 0, 2, false, 0);  // stride = kernel, pad = kernel / 2
    pool_case(POOL_CASE_ADAPTIVE, 2, 3, 7, 5, 3, 2, 0, false, 0);
    pool_case(POOL_CASE_ADAPTIVE, 1, 2, 10, 10, 4, 4, 0, false, 0);
    pool_case(POOL_CASE_ADAPTIVE, 1, 1, 5, 3, 7, 6, 0, false, 0);  // out > in: overlapping windows
    pool_case(POOL_CASE_ADAPTIVE, 2, 2, 6, 6, 1, 1, 0, false, 0);  // global average
    pool_case(POOL_CASE_NEAREST, 2, 3, 4, 5, 8, 10, 0, false, 0);  // 2x: PyTorch's shortcut
    pool_case(POOL_CASE_NEAREST, 1, 2, 3, 3, 7, 5, 0, false, 0);   // non-integer scale
    pool_case(POOL_CASE_NEAREST, 1, 1, 5, 7, 5, 7, 0, false, 0);   // identity
    pool_case(POOL_CASE_NEAREST, 1, 2, 6, 9, 4, 4, 0, false, 0);   // downsampling
    pool_case(POOL_CASE_NEAREST, 1, 1, 1, 1, 3, 2, 0, false, 0);
    pool_case(POOL_CASE_NEAREST, 2, 5, 7, 3, 13, 17, 0, false, 0);
    for (int r = 0; r < 2; r++) {
        const int64_t k = random_int(1, 4), H = random_int(k, 14), W = random_int(k, 14);
        pool_case(POOL_CASE_MAX, random_int(1, 3), random_int(1, 5), H, W, k, random_int(0, 3), random_int(0, k / 2),
                  false, (int)random_int(0, 1));
        pool_case(POOL_CASE_AVG, random_int(1, 3), random_int(1, 5), H, W, k, random_int(0, 3), random_int(0, k / 2),
                  r == 0, 0);
        pool_case(POOL_CASE_ADAPTIVE, random_int(1, 3), random_int(1, 5), H, W, random_int(1, 9), random_int(1, 9), 0,
                  false, 0);
        pool_case(POOL_CASE_NEAREST, random_int(1, 3), random_int(1, 5), H, W, random_int(1, 20), random_int(1, 20), 0,
                  false, 0);
    }
    kernel_checked("max_pool2d_forward");
    kernel_checked("max_pool2d_backward");
    kernel_checked("avg_pool2d_forward");
    kernel_checked("avg_pool2d_backward");
    kernel_checked("adaptive_avg_pool2d_forward");
    kernel_checked("adaptive_avg_pool2d_backward");
    kernel_checked("upsample_nearest2d_forward");
    kernel_checked("upsample_nearest2d_backward");
}

// ------------------------------------------------------------------------------------------------
// Indexing: embedding / index_select, gather, concat / split vs op_embedding, op_index_select,
// op_gather, op_concat and their autograd backward. All bitwise: copies, and sums in the CPU's order.
// ------------------------------------------------------------------------------------------------

// Index values as i64 (for the ops) and in the kernels' dtype (i64 or i32).
static Tensor *index_tensor(const int64_t *values, Shape shape, int as_i64) {
    const int64_t n = shape_numel(shape);
    if (as_i64) return tensor_from_data(DTYPE_I64, shape, values);
    int32_t *narrow = malloc((size_t)(n > 0 ? n : 1) * sizeof(int32_t));
    for (int64_t i = 0; i < n; i++) narrow[i] = (int32_t)values[i];
    Tensor *t = tensor_from_data(DTYPE_I32, shape, narrow);
    free(narrow);
    return t;
}
static void *index_to_device(const int64_t *values, int64_t n, int as_i64) {
    if (as_i64) return to_device_bytes(values, (size_t)n * sizeof(int64_t));
    int32_t *narrow = malloc((size_t)(n > 0 ? n : 1) * sizeof(int32_t));
    for (int64_t i = 0; i < n; i++) narrow[i] = (int32_t)values[i];
    void *d = to_device_bytes(narrow, (size_t)n * sizeof(int32_t));
    free(narrow);
    return d;
}

typedef struct {
    int embedding, as_i64;
    int64_t outer, size, inner, count;  // x [outer, size, inner], index [count]
    int64_t *index;
    float *x, *dy, *y, *dx;  // dy [outer, count, inner]; references y and dx
    char name[160];
    FirstResults first;
} IndexSelectCase;

static void index_select_run(void *context, int order) {
    IndexSelectCase *c = context;
    const int64_t nx = c->outer * c->size * c->inner, ny = c->outer * c->count * c->inner;
    float *x = to_device(c->x, nx), *dy = to_device(c->dy, ny), *y = device_floats(ny), *dx = device_floats(nx);
    void *index = index_to_device(c->index, c->count, c->as_i64);
    if (c->embedding) {
        embedding_forward_launch(x, index, c->as_i64, y, c->size, c->inner, c->count, stream());
        embedding_backward_launch(dy, index, c->as_i64, dx, c->size, c->inner, c->count, stream());
    } else {
        index_select_forward_launch(x, index, c->as_i64, y, c->outer, c->size, c->inner, c->count, stream());
        index_select_backward_launch(dy, index, c->as_i64, dx, c->outer, c->size, c->inner, c->count, stream());
    }
    float *hy = to_host(y, ny), *hdx = to_host(dx, nx);
    char what[224];
    snprintf(what, sizeof what, "%s forward", c->name);
    check_elements(what, KERNEL_TEST_ORDERS[order], hy, c->y, NULL, ny);  // a copy
    keep_or_compare(&c->first, 0, what, order, hy, ny);
    snprintf(what, sizeof what, "%s backward", c->name);
    check_elements(what, KERNEL_TEST_ORDERS[order], hdx, c->dx, NULL, nx);  // rows added in index order, as the CPU
    keep_or_compare(&c->first, 1, what, order, hdx, nx);
    free(hy), free(hdx);
    gpu_free(x), gpu_free(dy), gpu_free(y), gpu_free(dx), gpu_free(index);
}

// dim: the selected dimension of x [outer, size, inner] (as a 3-D tensor, dim 1) — embedding uses
// weight [size, inner] and indices of shape [count] (outer must be 1). negative: some indices are
// written as index - size. repeats: indices drawn from a few rows only.
static void index_select_case(int embedding, int as_i64, int64_t outer, int64_t size, int64_t inner, int64_t count,
                              int negative, int repeats) {
    IndexSelectCase c;
    memset(&c, 0, sizeof c);
    c.embedding = embedding, c.as_i64 = as_i64, c.outer = outer, c.size = size, c.inner = inner, c.count = count;
    const int64_t nx = outer * size * inner, ny = outer * count * inner;
    c.index = malloc((size_t)(count > 0 ? count : 1) * sizeof(int64_t));
    for (int64_t j = 0; j < count; j++) {
        int64_t v = random_int(0, repeats ? (size < 3 ? size - 1 : 2) : size - 1);
        if (negative && random_int(0, 2) == 0) v -= size;
        c.index[j] = v;
    }
    c.x = random_floats(nx, -1, 1);
    c.dy = random_floats(ny, -1, 1);
    TensorScope scope = tensor_scope_begin();
    Tensor *index = index_tensor(c.index, SHAPE(count), as_i64), *y;
    Tensor *x = tensor_of(c.x, embedding ? SHAPE(size, inner) : SHAPE(outer, size, inner), true);
    y = embedding ? op_embedding(x, index) : op_index_select(x, 1, index);
    tensor_backward(y, tensor_of(c.dy, embedding ? SHAPE(count, inner) : SHAPE(outer, count, inner), false));
    c.y = copy_floats(tensor_f32(y), ny);
    c.dx = grad_copy(x, nx);
    if (!c.dx) c.dx = zero_floats(nx);  // nothing selected: no gradient reached x
    tensor_scope_end(scope);
    snprintf(c.name, sizeof c.name, "%s [%lld,%lld,%lld] count %lld %s%s%s",
             embedding ? "embedding" : "index_select", (long long)outer, (long long)size, (long long)inner,
             (long long)count, as_i64 ? "i64" : "i32", negative ? " negative" : "", repeats ? " repeats" : "");
    in_every_order(index_select_run, &c);
    first_results_free(&c.first);
    free(c.index), free(c.x), free(c.dy), free(c.y), free(c.dx);
}

TEST(embedding_and_index_select_match_cpu) {
    // embedding, i64, outer, size, inner, count, negative indices, repeats
    index_select_case(1, 1, 1, 11, 7, 15, 1, 0);
    index_select_case(1, 0, 1, 300, 33, 500, 0, 0);   // 3 row blocks (C = 64, R = 128), 2 index chunks
    index_select_case(1, 1, 1, 1, 1, 4, 0, 0);
    index_select_case(1, 1, 1, 40, 300, 261, 0, 1);   // 2 column tiles, a few rows hit many times
    index_select_case(0, 1, 2, 9, 5, 7, 1, 0);
    index_select_case(0, 0, 3, 70, 300, 45, 0, 0);    // outer 3, R = 32: 3 row blocks
    index_select_case(0, 1, 3, 10, 1, 13, 1, 1);      // inner 1 (the last dim): C = 1, R = 8192
    index_select_case(0, 1, 2, 5, 3, 0, 0, 0);        // no indices: the gradient is zero
    index_select_case(0, 0, random_int(1, 4), random_int(1, 60), random_int(1, 70), random_int(1, 300), 1, 0);
    kernel_checked("embedding_forward");
    kernel_checked("embedding_backward");
    kernel_checked("index_select_forward");
    kernel_checked("index_select_backward");
}

// Out-of-range indices (which the ops reject before any kernel runs) are made visible by the kernels:
// NaN rows / elements forward, no contribution backward (kernels/index.h).
TEST(out_of_range_indices_give_nan_and_no_gradient) {
    const int64_t rows = 4, dim = 3, count = 4;
    const int64_t index[4] = {1, 4, -5, -4};  // valid, too large, too small, valid (row 0)
    float weight[12], dy[12], want_y[12], want_dw[12];
    for (int i = 0; i < 12; i++) weight[i] = (float)i, dy[i] = (float)(i + 1) / 8;
    for (int j = 0; j < 4; j++)
        for (int i = 0; i < 3; i++) {
            const int64_t r = index[j] < 0 ? index[j] + rows : index[j];
            want_y[j * 3 + i] = r >= 0 && r < rows ? weight[r * 3 + i] : NAN;
        }
    for (int i = 0; i < 12; i++) want_dw[i] = 0.0f;
    for (int i = 0; i < 3; i++) want_dw[1 * 3 + i] = dy[0 * 3 + i], want_dw[0 * 3 + i] = dy[3 * 3 + i];
    for (int order = 0; order < ORDER_COUNT; order++) {
        CHECK(cuemu_set_thread_order_string(KERNEL_TEST_ORDERS[order]) == 0);
        float *w = to_device(weight, 12), *g = to_device(dy, 12), *y = device_floats(12), *dw = device_floats(12);
        void *idx = index_to_device(index, count, 1);
        embedding_forward_launch(w, idx, 1, y, rows, dim, count, stream());
        embedding_backward_launch(g, idx, 1, dw, rows, dim, count, stream());
        float *hy = to_host(y, 12), *hdw = to_host(dw, 12);
        check_elements("embedding_forward (out-of-range indices)", KERNEL_TEST_ORDERS[order], hy, want_y, NULL, 12);
        check_elements("embedding_backward (out-of-range indices)", KERNEL_TEST_ORDERS[order], hdw, want_dw, NULL, 12);
        // gather along dim 1 of [4, 3] with one index per row: 2, 3 (too large), -4 (too small), -1
        const int64_t x_shape[2] = {4, 3}, index_shape[2] = {4, 1}, gather_index[4] = {2, 3, -4, -1};
        const float want_gather[4] = {2.0f, NAN, NAN, 11.0f};
        const float want_gx[12] = {0, 0, dy[0], 0, 0, 0, 0, 0, 0, 0, 0, dy[3]};
        float *gy = device_floats(4), *gx = device_floats(12);
        void *gidx = index_to_device(gather_index, 4, 1);
        gather_forward_launch(w, x_shape, 2, 1, gidx, 1, index_shape, gy, stream());
        gather_backward_launch(g, x_shape, 2, 1, gidx, 1, index_shape, gx, stream());
        float *hgy = to_host(gy, 4), *hgx = to_host(gx, 12);
        check_elements("gather_forward (out-of-range indices)", KERNEL_TEST_ORDERS[order], hgy, want_gather, NULL, 4);
        check_elements("gather_backward (out-of-range indices)", KERNEL_TEST_ORDERS[order], hgx, want_gx, NULL, 12);
        free(hy), free(hdw), free(hgy), free(hgx);
        gpu_free(w), gpu_free(g), gpu_free(y), gpu_free(dw), gpu_free(idx), gpu_free(gy), gpu_free(gx), gpu_free(gidx);
    }
    cuemu_set_thread_order(CUEMU_ORDER_FORWARD, 0);
}

typedef struct {
    int ndim, dim, as_i64;
    int64_t x_shape[8], index_shape[8], nx, ni;
    int64_t *index;
    float *x, *dy, *y, *dx;
    char name[160];
    FirstResults first;
} GatherCase;

static void gather_run(void *context, int order) {
    GatherCase *c = context;
    float *x = to_device(c->x, c->nx), *dy = to_device(c->dy, c->ni), *y = device_floats(c->ni);
    float *dx = device_floats(c->nx);
    void *index = index_to_device(c->index, c->ni, c->as_i64);
    gather_forward_launch(x, c->x_shape, c->ndim, c->dim, index, c->as_i64, c->index_shape, y, stream());
    gather_backward_launch(dy, c->x_shape, c->ndim, c->dim, index, c->as_i64, c->index_shape, dx, stream());
    float *hy = to_host(y, c->ni), *hdx = to_host(dx, c->nx);
    char what[224];
    snprintf(what, sizeof what, "gather_forward %s", c->name);
    check_elements(what, KERNEL_TEST_ORDERS[order], hy, c->y, NULL, c->ni);  // a copy
    keep_or_compare(&c->first, 0, what, order, hy, c->ni);
    snprintf(what, sizeof what, "gather_backward %s", c->name);
    check_elements(what, KERNEL_TEST_ORDERS[order], hdx, c->dx, NULL, c->nx);  // scatter-add in index order, as the CPU
    keep_or_compare(&c->first, 1, what, order, hdx, c->nx);
    free(hy), free(hdx);
    gpu_free(x), gpu_free(dy), gpu_free(y), gpu_free(dx), gpu_free(index);
}

static void gather_case(int ndim, const int64_t *x_shape, const int64_t *index_shape, int dim, int as_i64) {
    GatherCase c;
    memset(&c, 0, sizeof c);
    c.ndim = ndim, c.dim = dim, c.as_i64 = as_i64;
    Shape xs = {.ndim = ndim}, is = {.ndim = ndim};
    c.nx = c.ni = 1;
    for (int d = 0; d < ndim; d++) {
        c.x_shape[d] = xs.dims[d] = x_shape[d];
        c.index_shape[d] = is.dims[d] = index_shape[d];
        c.nx *= x_shape[d];
        c.ni *= index_shape[d];
    }
    c.index = malloc((size_t)(c.ni > 0 ? c.ni : 1) * sizeof(int64_t));
    for (int64_t i = 0; i < c.ni; i++) {
        int64_t v = random_int(0, x_shape[dim] - 1);
        if (random_int(0, 3) == 0) v -= x_shape[dim];  // negative form
        c.index[i] = v;
    }
    c.x = random_floats(c.nx, -1, 1);
    c.dy = random_floats(c.ni, -1, 1);
    TensorScope scope = tensor_scope_begin();
    Tensor *x = tensor_of(c.x, xs, true);
    Tensor *y = op_gather(x, dim, index_tensor(c.index, is, as_i64));
    tensor_backward(y, tensor_of(c.dy, is, false));
    c.y = copy_floats(tensor_f32(y), c.ni);
    c.dx = grad_copy(x, c.nx);
    tensor_scope_end(scope);
    char xs_text[96], is_text[96];
    snprintf(c.name, sizeof c.name, "x%s dim %d index%s %s", shape_string(xs, xs_text, sizeof xs_text), dim,
             shape_string(is, is_text, sizeof is_text), as_i64 ? "i64" : "i32");
    in_every_order(gather_run, &c);
    first_results_free(&c.first);
    free(c.index), free(c.x), free(c.dy), free(c.y), free(c.dx);
}

TEST(gather_matches_cpu) {
    gather_case(2, (int64_t[]){4, 6}, (int64_t[]){4, 3}, 1, 1);
    gather_case(3, (int64_t[]){3, 5, 4}, (int64_t[]){2, 3, 4}, 0, 0);   // index smaller in dim 1
    gather_case(3, (int64_t[]){3, 5, 4}, (int64_t[]){3, 5, 6}, 2, 1);   // longer than the dim: repeats
    gather_case(1, (int64_t[]){7}, (int64_t[]){10}, 0, 0);
    gather_case(1, (int64_t[]){1}, (int64_t[]){1}, 0, 1);
    gather_case(4, (int64_t[]){2, 3, 17, 5}, (int64_t[]){2, 2, 9, 5}, 2, 1);  // > 256 elements
    gather_case(2, (int64_t[]){300, 3}, (int64_t[]){300, 1}, 1, 0);   // pick one class per row
    kernel_checked("gather_forward");
    kernel_checked("gather_backward");
}

typedef struct {
    int n, dim, ndim;
    int64_t shapes[4][4];
    float *pieces[4];
    float *want, *dy, *grads[4];  // references: op_concat and its autograd backward (narrow of dy)
    int64_t outer, inner, total, counts[4];
    char name[160];
    FirstResults first;
} ConcatCase;

static void concat_run(void *context, int order) {
    ConcatCase *c = context;
    const int64_t n_out = c->outer * c->total * c->inner;
    float *out = device_floats(n_out), *dy = to_device(c->dy, n_out);
    int64_t offset = 0;
    char what[224];
    for (int i = 0; i < c->n; i++) {
        const int64_t piece = c->shapes[i][c->dim], n_piece = c->counts[i];
        float *p = to_device(c->pieces[i], n_piece), *g = device_floats(n_piece);
        concat_copy_launch(out, p, c->outer, piece, c->inner, c->total, offset, sizeof(float), stream());
        split_copy_launch(g, dy, c->outer, piece, c->inner, c->total, offset, sizeof(float), stream());
        float *hg = to_host(g, n_piece);
        snprintf(what, sizeof what, "split_copy (concat backward) %s piece %d", c->name, i);
        check_elements(what, KERNEL_TEST_ORDERS[order], hg, c->grads[i], NULL, n_piece);  // a copy
        keep_or_compare(&c->first, 1 + i, what, order, hg, n_piece);
        free(hg);
        gpu_free(p), gpu_free(g);
        offset += piece;
    }
    float *hout = to_host(out, n_out);
    snprintf(what, sizeof what, "concat_copy %s", c->name);
    check_elements(what, KERNEL_TEST_ORDERS[order], hout, c->want, NULL, n_out);  // a copy
    keep_or_compare(&c->first, 0, what, order, hout, n_out);
    free(hout);
    gpu_free(out), gpu_free(dy);
}

// n tensors of shape `base` except along dim, where they have sizes[i].
static void concat_case(int ndim, const int64_t *base, int dim, int n, const int64_t *sizes) {
    ConcatCase c;
    memset(&c, 0, sizeof c);
    c.n = n, c.dim = dim, c.ndim = ndim;
    c.outer = c.inner = 1;
    for (int d = 0; d < dim; d++) c.outer *= base[d];
    for (int d = dim + 1; d < ndim; d++) c.inner *= base[d];
    TensorScope scope = tensor_scope_begin();
    Tensor *xs[4];
    for (int i = 0; i < n; i++) {
        Shape s = {.ndim = ndim};
        for (int d = 0; d < ndim; d++) s.dims[d] = c.shapes[i][d] = d == dim ? sizes[i] : base[d];
        c.counts[i] = shape_numel(s);
        c.pieces[i] = random_floats(c.counts[i], -1, 1);
        xs[i] = tensor_of(c.pieces[i], s, true);
        c.total += sizes[i];
    }
    Tensor *y = op_concat(xs, n, dim);
    const int64_t n_out = tensor_numel(y);
    c.dy = random_floats(n_out, -1, 1);
    tensor_backward(y, tensor_of(c.dy, tensor_shape(y), false));
    c.want = copy_floats(tensor_f32(y), n_out);
    for (int i = 0; i < n; i++) c.grads[i] = grad_copy(xs[i], c.counts[i]);
    char text[96];
    snprintf(c.name, sizeof c.name, "%d pieces into %s along dim %d", n, shape_string(tensor_shape(y), text, sizeof text),
             dim);
    tensor_scope_end(scope);
    in_every_order(concat_run, &c);
    first_results_free(&c.first);
    for (int i = 0; i < n; i++) free(c.pieces[i]), free(c.grads[i]);
    free(c.want), free(c.dy);
}

TEST(concat_and_split_match_cpu) {
    concat_case(3, (int64_t[]){2, 0, 5}, 1, 3, (int64_t[]){3, 1, 4});
    concat_case(2, (int64_t[]){0, 7}, 0, 2, (int64_t[]){5, 2});           // dim 0: outer 1
    concat_case(3, (int64_t[]){3, 4, 0}, 2, 3, (int64_t[]){1, 2, 5});     // last dim: inner 1, 4-byte words
    concat_case(2, (int64_t[]){67, 0}, 1, 2, (int64_t[]){4, 8});          // 16-byte rows: float4 words
    concat_case(4, (int64_t[]){2, 3, 0, 6}, 2, 4, (int64_t[]){1, 7, 2, 4});
    kernel_checked("concat_copy");
    kernel_checked("split_copy");
}

// Other element sizes: u8 and i64 pieces (1- and 8-byte words; 2-byte words when sizes are even),
// one piece copied into a poisoned buffer: the rest of the buffer must keep its poison bytes.
TEST(concat_copy_other_element_sizes) {
    static const size_t element_sizes[] = {1, 2, 8};
    for (size_t e = 0; e < sizeof element_sizes / sizeof element_sizes[0]; e++) {
        const size_t bytes = element_sizes[e];
        const int64_t outer = 5, total = 9, inner = 3, piece = 4, offset = 3;
        const size_t n_buffer = (size_t)(outer * total * inner) * bytes, n_piece = (size_t)(outer * piece * inner) * bytes;
        unsigned char *src = malloc(n_piece), *want = malloc(n_buffer), *got = malloc(n_buffer);
        for (size_t i = 0; i < n_piece; i++) src[i] = (unsigned char)random_int(0, 254);
        memset(want, 0xFF, n_buffer);
        for (int64_t o = 0; o < outer; o++)
            memcpy(want + (size_t)((o * total + offset) * inner) * bytes, src + (size_t)(o * piece * inner) * bytes,
                   (size_t)(piece * inner) * bytes);
        void *d_src = to_device_bytes(src, n_piece), *d_buffer = device_bytes(n_buffer), *d_back = device_bytes(n_piece);
        concat_copy_launch(d_buffer, d_src, outer, piece, inner, total, offset, bytes, stream());
        split_copy_launch(d_back, d_buffer, outer, piece, inner, total, offset, bytes, stream());
        gpu_copy_to_host(got, d_buffer, n_buffer);
        CHECK_MSG(memcmp(got, want, n_buffer) == 0, "concat_copy of %zu-byte elements: buffer differs", bytes);
        gpu_copy_to_host(got, d_back, n_piece);
        CHECK_MSG(memcmp(got, src, n_piece) == 0, "split_copy of %zu-byte elements: piece differs", bytes);
        gpu_free(d_src), gpu_free(d_buffer), gpu_free(d_back);
        free(src), free(want), free(got);
    }
}

int main(void) {
    kernel_test_seed(0x243F6A8885A308D3ull);
    test_stream = gpu_stream_create();
    RUN_TEST(gemm_matches_cpu);
    RUN_TEST(conv2d_matches_cpu);
    RUN_TEST(conv2d_empty_batch_gives_zero_gradients);
    RUN_TEST(pooling_matches_cpu);
    RUN_TEST(embedding_and_index_select_match_cpu);
    RUN_TEST(gather_matches_cpu);
    RUN_TEST(out_of_range_indices_give_nan_and_no_gradient);
    RUN_TEST(concat_and_split_match_cpu);
    RUN_TEST(concat_copy_other_element_sizes);
    gpu_stream_destroy(test_stream);
    print_kernels_checked();
    return test_summary();
}
