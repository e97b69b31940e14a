// Kernel tests on the emulated CUDA device for the network-layer kernel families: normalisation
// (kernels/norm.cu), attention (kernels/attention.cu), optimizers and gradient clipping
// (kernels/optim.cu), dropout and gradient reversal (kernels/dropout.cu).
//
// Every kernel runs on the emulated device (engine/gpu/gpu_emulated.c + kernels/emu) and is compared
// with the CPU op (engine/ops.h, forward and autograd backward) or the CPU routine it must match
// (engine/optim.c, engine/rng.c). Shapes include 1, primes and sizes that are not multiples of
// the block or tile sizes; every device output starts as NaN (gpu_alloc poisons), so an element a
// kernel forgets to write fails. Each check runs under three thread orders of the emulator
// (forward, reverse, and one seeded random permutation): a missing __syncthreads usually gives a
// wrong answer in at least one of them. The kernels are deterministic (no float atomics), so the
// results of the three orders must also be the same bits.
//
// Tolerances are written next to each comparison with the reason. Norm and attention: the kernels
// accumulate in f32 in a tree order, the CPU in f64 or in f32 in another order, so sums of n terms
// differ by a few n * 2^-24 relative to the sum of |terms|; the checks scale the tolerance by the
// largest magnitude of the reference (check_close_scaled), plus the cancellation terms of
// norm_y_tolerance / norm_dx_tolerance. Optimizers, EMA, clipping, dropout and gradient reversal are
// compared bit for bit: they do the CPU's f32 operations in the CPU's order (the one f64 norm of
// the clipping is compared to n * 2^-53). KERNEL_TEST_MARGINS=1 prints how much of each tolerance
// the worst element used.
#include <stdint.h>

#include "engine/autograd.h"
#include "engine/cpu/norm.h"
#include "engine/gpu/gpu.h"
#include "engine/ops.h"
#include "engine/optim.h"
#include "engine/rng.h"
#include "engine/tensor.h"
#include "kernels/attention.h"
#include "kernels/dropout.h"
#include "kernels/emu/cuemu_host.h"
#include "kernels/norm.h"
#include "kernels/optim.h"
#include "tests/check.h"
#include "tests/kernel_test_support.h"

TEST_MAIN_COUNTERS;

// ------------------------------------------------------------------------------------------------
// Thread orders, the list of kernels checked, device buffers.
// ------------------------------------------------------------------------------------------------

static float *copy_floats(const float *src, int64_t n) {
    float *p = host_floats(n);
    if (n > 0) memcpy(p, src, (size_t)n * sizeof(float));
    return p;
}
// Device buffers: fresh gpu_alloc blocks are NaN-poisoned by the emulated runtime.
static float *device_floats(int64_t n) { return n > 0 ? gpu_alloc((size_t)n * sizeof(float)) : NULL; }
static float *to_device(const float *host, int64_t n) {
    if (!host || n <= 0) return NULL;
    float *d = device_floats(n);
    gpu_copy_to_device(d, host, (size_t)n * sizeof(float));
    return d;
}
static float *to_host(const float *device, int64_t n) {
    float *h = host_floats(n);
    if (device && n > 0) gpu_copy_to_host(h, device, (size_t)n * sizeof(float));
    return h;
}
static void *device_workspace(size_t bytes) { return bytes ? gpu_alloc(bytes) : NULL; }

static double max_abs(const float *x, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++)
        if (isfinite(x[i]) && fabs(x[i]) > m) m = fabs(x[i]);
    return m;
}

// gpu_alloc fills device memory with 0xFF bytes: this float pattern is an unwritten element.
#define POISON_BITS 0xFFFFFFFFu

// |got - want| <= atol for every element; NaN must meet NaN (the CPU ops produce NaN for fully
// masked attention rows) and infinities must be equal. Prints the first few mismatches.
static int check_close(const char *what, const char *order, const float *got, const float *want, int64_t n,
                       double atol) {
    int bad = 0;
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        if (isfinite(want[i]) && isfinite(got[i]) && fabs((double)got[i] - want[i]) > worst)
            worst = fabs((double)got[i] - want[i]);
        uint32_t bits;
        memcpy(&bits, &got[i], sizeof bits);
        // The exact poison pattern means unwritten (or computed from unwritten memory), even where
        // NaN is expected.
        bool ok = bits != POISON_BITS &&
                  (isnan(want[i]) ? isnan(got[i])
                                  : (isinf(want[i]) ? got[i] == want[i] : fabs((double)got[i] - want[i]) <= atol));
        if (!ok) {
            if (bad < 5)
                printf("  %s [%s]: element %lld = %.9g, expected %.9g (tolerance %.3g)\n", what, order, (long long)i,
                       got[i], want[i], atol);
            bad++;
        }
    }
    CHECK_MSG(bad == 0, "%s [%s]: %d of %lld elements differ", what, order, bad, (long long)n);
    // KERNEL_TEST_MARGINS=1 shows how much of each tolerance was used (to keep them honest).
    if (getenv("KERNEL_TEST_MARGINS") && atol > 0) printf("margin %-40s %6.3f\n", what, worst / atol);
    return bad;
}

// |got - want| <= tolerance * max(1, max |want|): an error relative to the array's magnitude.
static int check_close_scaled(const char *what, const char *order, const float *got, const float *want, int64_t n,
                              double tolerance) {
    double scale = max_abs(want, n);
    return check_close(what, order, got, want, n, tolerance * (scale < 1 ? 1 : scale));
}

// Tolerances of normalised outputs. Both the kernels and the CPU form y = x * scale + shift (or
// (x - mean) * rstd * w + b) in f32 and dx = dy * a + x * bx + c0: each rounds terms as large as
// |x| * rstd * |w| (and |w| * rstd * |dy| * (2 + |xhat|) for dx), which cancel when a row has a
// small variance (rstd up to 1 / sqrt(eps) = 316 for a constant row) or a large mean. On top, the
// kernels' statistics are f32 tree sums against the CPU's f64 ones: a few 2^-24 relative.
typedef struct {
    double max_x, max_w, max_dy, max_rstd, max_xhat;
} NormMagnitudes;
static NormMagnitudes norm_magnitudes(const float *x, const float *dy, int64_t n, const float *w, int64_t n_w,
                                      const float *mean, const float *rstd, int64_t (*stat_of)(const void *, int64_t),
                                      const void *shape) {
    NormMagnitudes m = {max_abs(x, n), n_w ? max_abs(w, n_w) : 1.0, max_abs(dy, n), 0, 0};
    if (m.max_w < 1) m.max_w = 1;
    for (int64_t i = 0; i < n; i++) {
        int64_t s = stat_of(shape, i);
        double xhat = fabs(((double)x[i] - mean[s]) * rstd[s]);
        if (rstd[s] > m.max_rstd) m.max_rstd = rstd[s];
        if (xhat > m.max_xhat) m.max_xhat = xhat;
    }
    return m;
}
static double norm_y_tolerance(NormMagnitudes m, const float *y, int64_t n) {
    double scale = max_abs(y, n);
    return 1e-5 * (scale < 1 ? 1 : scale) + 16 * 0x1p-24 * m.max_x * m.max_rstd * m.max_w;
}
static double norm_dx_tolerance(NormMagnitudes m, const float *dx, int64_t n) {
    double scale = max_abs(dx, n);
    return 3e-5 * (scale < 1 ? 1 : scale) + 16 * 0x1p-24 * m.max_w * m.max_rstd * m.max_dy * (2 + m.max_xhat);
}

// Bit-for-bit equality (NaN payloads included).
static int check_bits(const char *what, const char *order, const void *got, const void *want, size_t bytes) {
    int same = bytes == 0 || memcmp(got, want, bytes) == 0;
    if (!same) {
        const unsigned char *a = got, *b = want;
        size_t i = 0;
        while (a[i] == b[i]) i++;
        printf("  %s [%s]: first differing byte %zu (of %zu)\n", what, order, i, bytes);
    }
    CHECK_MSG(same, "%s [%s]: not bit-identical", what, order);
    return !same;
}

// The results of order 0 are kept; later orders must give the same bits (determinism).
typedef struct {
    float *values[8];
    int64_t counts[8];
} FirstResults;
static void keep_or_compare(FirstResults *first, int slot, const char *what, int order, const float *values,
                            int64_t n) {
    if (order == 0) {
        free(first->values[slot]);
        first->values[slot] = copy_floats(values, n);
        first->counts[slot] = n;
    } else {
        char label[96];
        snprintf(label, sizeof label, "%s (same bits as order %s)", what, KERNEL_TEST_ORDERS[0]);
        check_bits(label, KERNEL_TEST_ORDERS[order], values, first->values[slot], (size_t)n * sizeof(float));
    }
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

// ------------------------------------------------------------------------------------------------
// Layer norm.
// ------------------------------------------------------------------------------------------------

typedef struct {
    int64_t N, D;
    int has_weight, has_bias;
    double eps;
    float *x, *w, *b, *dy;                 // inputs
    float *y, *mean, *rstd, *dx, *dw, *db; // references
    double tolerance_y, tolerance_dx;  // absolute (norm_y_tolerance, norm_dx_tolerance)
    FirstResults first;
} LayerNormCase;

static int64_t layer_norm_stat_of(const void *shape, int64_t i) { return i / ((const int64_t *)shape)[1]; }

static void layer_norm_run(void *context, int order) {
    LayerNormCase *c = context;
    const char *o = KERNEL_TEST_ORDERS[order];
    int64_t N = c->N, D = c->D, n = N * D;
    float *x = to_device(c->x, n), *dy = to_device(c->dy, n);
    float *w = c->has_weight ? to_device(c->w, D) : NULL, *b = c->has_bias ? to_device(c->b, D) : NULL;
    float *y = device_floats(n), *mean = device_floats(N), *rstd = device_floats(N);
    float *dx = device_floats(n), *dw = c->has_weight ? device_floats(D) : NULL, *db = c->has_bias ? device_floats(D) : NULL;
    void *workspace = device_workspace(layer_norm_backward_workspace_bytes(N, D));
    layer_norm_forward_launch(x, w, b, y, mean, rstd, N, D, c->eps, NULL);
    layer_norm_backward_launch(x, dy, mean, rstd, w, dx, dw, db, workspace, N, D, NULL);
    float *y_eval = device_floats(n);  // the evaluation form: no mean/rstd outputs
    layer_norm_forward_launch(x, w, b, y_eval, NULL, NULL, N, D, c->eps, NULL);
    float *hy = to_host(y, n), *hmean = to_host(mean, N), *hrstd = to_host(rstd, N), *hdx = to_host(dx, n);
    float *hdw = to_host(dw, D), *hdb = to_host(db, D), *hy_eval = to_host(y_eval, n);
    check_bits("layer_norm y without mean/rstd", o, hy_eval, hy, (size_t)n * sizeof(float));
    // y, dx: see norm_y_tolerance / norm_dx_tolerance.
    check_close("layer_norm y", o, hy, c->y, n, c->tolerance_y);
    // mean: an f32 tree sum of D terms vs f64 (relative to the largest |mean|, at least 1);
    // rstd: 1 / sqrt of an f32 sum of squared deviations, a few 2^-24 relative.
    check_close_scaled("layer_norm mean", o, hmean, c->mean, N, 2e-6);
    check_close_scaled("layer_norm rstd", o, hrstd, c->rstd, N, 1e-5);
    check_close("layer_norm dx", o, hdx, c->dx, n, c->tolerance_dx);
    // dweight/dbias: column sums over N rows (chunks of >= 32 rows, then chunks in order) vs f64.
    if (dw) check_close_scaled("layer_norm dweight", o, hdw, c->dw, D, 2e-5);
    if (db) check_close_scaled("layer_norm dbias", o, hdb, c->db, D, 2e-5);
    keep_or_compare(&c->first, 0, "layer_norm y", order, hy, n);
    keep_or_compare(&c->first, 1, "layer_norm dx", order, hdx, n);
    if (dw) keep_or_compare(&c->first, 2, "layer_norm dweight", order, hdw, D);
    if (db) keep_or_compare(&c->first, 3, "layer_norm dbias", order, hdb, D);
    free(hy), free(hmean), free(hrstd), free(hdx), free(hdw), free(hdb), free(hy_eval);
    gpu_free(x), gpu_free(dy), gpu_free(w), gpu_free(b), gpu_free(y), gpu_free(mean), gpu_free(rstd);
    gpu_free(dx), gpu_free(dw), gpu_free(db), gpu_free(workspace), gpu_free(y_eval);
}

static void layer_norm_case(int64_t N, int64_t D, int has_weight, int has_bias, float offset) {
    LayerNormCase c = {.N = N, .D = D, .has_weight = has_weight, .has_bias = has_bias, .eps = 1e-5};
    int64_t n = N * D;
    c.x = random_floats(n, offset - 2.0f, offset + 2.0f);
    c.w = random_floats(D, -1.5f, 1.5f);
    c.b = random_floats(D, -1.0f, 1.0f);
    c.dy = random_floats(n, -1.0f, 1.0f);
    TensorScope scope = tensor_scope_begin();
    Tensor *x = tensor_of(c.x, SHAPE(N, D), true);
    Tensor *w = has_weight ? tensor_of(c.w, SHAPE(D), true) : NULL, *b = has_bias ? tensor_of(c.b, SHAPE(D), true) : NULL;
    Tensor *y = op_layer_norm(x, w, b, c.eps);
    tensor_backward(y, tensor_from_data(DTYPE_F32, SHAPE(N, D), c.dy));
    c.y = copy_floats(tensor_f32(y), n);
    c.dx = grad_copy(x, n);
    c.dw = grad_copy(w, D);
    c.db = grad_copy(b, D);
    tensor_scope_end(scope);
    c.mean = host_floats(N);
    c.rstd = host_floats(N);
    float *scratch = host_floats(n);
    cpu_layer_norm_forward_f32(c.x, NULL, NULL, scratch, c.mean, c.rstd, N, D, c.eps);
    free(scratch);
    int64_t shape[2] = {N, D};
    NormMagnitudes m = norm_magnitudes(c.x, c.dy, n, has_weight ? c.w : NULL, has_weight ? D : 0, c.mean, c.rstd,
                                       layer_norm_stat_of, shape);
    c.tolerance_y = norm_y_tolerance(m, c.y, n);
    c.tolerance_dx = norm_dx_tolerance(m, c.dx, n);
    in_every_order(layer_norm_run, &c);
    first_results_free(&c.first);
    free(c.x), free(c.w), free(c.b), free(c.dy), free(c.y), free(c.mean), free(c.rstd), free(c.dx), free(c.dw), free(c.db);
}

TEST(layer_norm_matches_cpu) {
    static const int64_t shapes[][2] = {{1, 1}, {1, 7}, {3, 31}, {5, 32}, {7, 33}, {2, 129}, {37, 64}, {131, 3}, {67, 100}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        layer_norm_case(shapes[s][0], shapes[s][1], 1, 1, 0.0f);
    layer_norm_case(13, 24, 0, 0, 0.0f);  // no affine
    layer_norm_case(11, 40, 1, 0, 0.0f);  // weight only
    layer_norm_case(9, 17, 0, 1, 0.0f);   // bias only
    layer_norm_case(23, 96, 1, 1, 50.0f); // |mean| >> std: the two-pass variance keeps it accurate
    for (int r = 0; r < 3; r++) layer_norm_case(random_int(1, 300), random_int(1, 160), 1, 1, 0.0f);
    kernel_checked("layer_norm_forward");
    kernel_checked("layer_norm_backward");
}

// ------------------------------------------------------------------------------------------------
// Group norm and batch norm.
// ------------------------------------------------------------------------------------------------

typedef enum { NORM_GROUP, NORM_BATCH_TRAIN, NORM_BATCH_TRAIN_RUNNING, NORM_BATCH_EVAL } ChannelNormKind;

typedef struct {
    ChannelNormKind kind;
    int64_t B, C, S, G;
    int has_weight, has_bias;
    double eps, momentum;
    float *x, *w, *b, *dy, *running_mean0, *running_var0;          // inputs
    float *y, *mean, *rstd, *dx, *dw, *db, *running_mean, *running_var; // references
    double tolerance_y, tolerance_dx;  // absolute (norm_y_tolerance, norm_dx_tolerance)
    FirstResults first;
} ChannelNormCase;

static int64_t channel_norm_stat_of(const void *context, int64_t i) {
    const ChannelNormCase *c = context;
    return c->kind == NORM_GROUP ? i / (c->C / c->G * c->S) : (i / c->S) % c->C;
}

static const char *channel_norm_name(ChannelNormKind kind) {
    return kind == NORM_GROUP ? "group_norm" : kind == NORM_BATCH_EVAL ? "batch_norm (eval)" : "batch_norm (training)";
}

static void channel_norm_run(void *context, int order) {
    ChannelNormCase *c = context;
    const char *o = KERNEL_TEST_ORDERS[order];
    int64_t B = c->B, C = c->C, S = c->S, G = c->G, n = B * C * S;
    int64_t stats = c->kind == NORM_GROUP ? B * G : C;
    float *x = to_device(c->x, n), *dy = to_device(c->dy, n);
    float *w = c->has_weight ? to_device(c->w, C) : NULL, *b = c->has_bias ? to_device(c->b, C) : NULL;
    float *y = device_floats(n), *mean = device_floats(stats), *rstd = device_floats(stats);
    float *dx = device_floats(n), *dw = c->has_weight ? device_floats(C) : NULL, *db = c->has_bias ? device_floats(C) : NULL;
    float *rm = NULL, *rv = NULL;
    if (c->kind == NORM_BATCH_TRAIN_RUNNING || c->kind == NORM_BATCH_EVAL) {
        rm = to_device(c->running_mean0, C);
        rv = to_device(c->running_var0, C);
    }
    void *workspace;
    if (c->kind == NORM_GROUP) {
        size_t bytes = group_norm_forward_workspace_bytes(B, C, S, G);
        size_t backward = group_norm_backward_workspace_bytes(B, C, S, G);
        workspace = device_workspace(bytes > backward ? bytes : backward);
        group_norm_forward_launch(x, w, b, y, mean, rstd, workspace, B, C, S, G, c->eps, NULL);
        group_norm_backward_launch(x, dy, mean, rstd, w, dx, dw, db, workspace, B, C, S, G, NULL);
    } else {
        size_t bytes = batch_norm_forward_workspace_bytes(B, C, S), backward = batch_norm_backward_workspace_bytes(B, C, S);
        workspace = device_workspace(bytes > backward ? bytes : backward);
        if (c->kind == NORM_BATCH_EVAL)
            batch_norm_forward_eval_launch(x, w, b, y, mean, rstd, rm, rv, B, C, S, c->eps, NULL);
        else
            batch_norm_forward_training_launch(x, w, b, y, mean, rstd, rm, rv, workspace, B, C, S, c->momentum, c->eps,
                                               NULL);
        batch_norm_backward_launch(x, dy, mean, rstd, w, dx, dw, db, workspace, B, C, S, c->kind != NORM_BATCH_EVAL,
                                   NULL);
    }
    const char *name = channel_norm_name(c->kind);
    char what[96];
    float *hy = to_host(y, n), *hmean = to_host(mean, stats), *hrstd = to_host(rstd, stats), *hdx = to_host(dx, n);
    float *hdw = to_host(dw, C), *hdb = to_host(db, C);
    // Statistics: f32 slice sums (tree order) merged in f64, vs f64 sums on the CPU.
    snprintf(what, sizeof what, "%s y", name);
    check_close(what, o, hy, c->y, n, c->tolerance_y);
    snprintf(what, sizeof what, "%s mean", name);
    check_close_scaled(what, o, hmean, c->mean, stats, 2e-6);
    snprintf(what, sizeof what, "%s rstd", name);
    check_close_scaled(what, o, hrstd, c->rstd, stats, 1e-5);
    // dx = dy * a + x * bx + c0 with coefficients from f32 partial sums merged in f64.
    snprintf(what, sizeof what, "%s dx", name);
    check_close(what, o, hdx, c->dx, n, c->tolerance_dx);
    // dweight/dbias: sums over B * S (or B * C/G * S) terms, f32 within a block.
    snprintf(what, sizeof what, "%s dweight", name);
    if (dw) check_close_scaled(what, o, hdw, c->dw, C, 2e-5);
    snprintf(what, sizeof what, "%s dbias", name);
    if (db) check_close_scaled(what, o, hdb, c->db, C, 2e-5);
    if (c->kind == NORM_BATCH_TRAIN_RUNNING) {
        float *hrm = to_host(rm, C), *hrv = to_host(rv, C);
        // The update itself is the CPU's f64 formula; only the batch statistics differ (f32 sums).
        check_close_scaled("batch_norm running_mean", o, hrm, c->running_mean, C, 2e-6);
        check_close_scaled("batch_norm running_var", o, hrv, c->running_var, C, 1e-5);
        keep_or_compare(&c->first, 4, "batch_norm running_var", order, hrv, C);
        free(hrm), free(hrv);
    }
    keep_or_compare(&c->first, 0, "norm y", order, hy, n);
    keep_or_compare(&c->first, 1, "norm dx", order, hdx, n);
    if (dw) keep_or_compare(&c->first, 2, "norm dweight", order, hdw, C);
    if (db) keep_or_compare(&c->first, 3, "norm dbias", order, hdb, C);
    keep_or_compare(&c->first, 5, "norm rstd", order, hrstd, stats);
    free(hy), free(hmean), free(hrstd), free(hdx), free(hdw), free(hdb);
    gpu_free(x), gpu_free(dy), gpu_free(w), gpu_free(b), gpu_free(y), gpu_free(mean), gpu_free(rstd), gpu_free(dx);
    gpu_free(dw), gpu_free(db), gpu_free(rm), gpu_free(rv), gpu_free(workspace);
}

static void channel_norm_case(ChannelNormKind kind, int64_t B, int64_t C, int64_t S, int64_t G, int has_weight,
                              int has_bias, float offset) {
    ChannelNormCase c = {.kind = kind, .B = B, .C = C, .S = S, .G = G, .has_weight = has_weight,
                         .has_bias = has_bias, .eps = 1e-5, .momentum = 0.1};
    int64_t n = B * C * S, stats = kind == NORM_GROUP ? B * G : C;
    c.x = random_floats(n, offset - 2.0f, offset + 2.0f);
    c.w = random_floats(C, -1.5f, 1.5f);
    c.b = random_floats(C, -1.0f, 1.0f);
    c.dy = random_floats(n, -1.0f, 1.0f);
    c.running_mean0 = random_floats(C, -0.5f, 0.5f);
    c.running_var0 = random_floats(C, 0.5f, 2.0f);
    TensorScope scope = tensor_scope_begin();
    Tensor *x = tensor_of(c.x, SHAPE(B, C, S), true);
    Tensor *w = has_weight ? tensor_of(c.w, SHAPE(C), true) : NULL, *b = has_bias ? tensor_of(c.b, SHAPE(C), true) : NULL;
    Tensor *rm = NULL, *rv = NULL, *y;
    if (kind == NORM_BATCH_TRAIN_RUNNING || kind == NORM_BATCH_EVAL) {
        rm = tensor_of(c.running_mean0, SHAPE(C), false);
        rv = tensor_of(c.running_var0, SHAPE(C), false);
    }
    if (kind == NORM_GROUP)
        y = op_group_norm(x, (int)G, w, b, c.eps);
    else
        y = op_batch_norm(x, w, b, rm, rv, kind != NORM_BATCH_EVAL, c.momentum, c.eps);
    tensor_backward(y, tensor_from_data(DTYPE_F32, SHAPE(B, C, S), c.dy));
    c.y = copy_floats(tensor_f32(y), n);
    c.dx = grad_copy(x, n);
    c.dw = grad_copy(w, C);
    c.db = grad_copy(b, C);
    if (kind == NORM_BATCH_TRAIN_RUNNING) {
        c.running_mean = copy_floats(tensor_f32(rm), C);
        c.running_var = copy_floats(tensor_f32(rv), C);
    }
    tensor_scope_end(scope);
    c.mean = host_floats(stats);
    c.rstd = host_floats(stats);
    float *scratch = host_floats(n);
    if (kind == NORM_GROUP)
        cpu_group_norm_forward_f32(c.x, NULL, NULL, scratch, c.mean, c.rstd, B, C, S, G, c.eps);
    else if (kind == NORM_BATCH_EVAL)
        cpu_batch_norm_forward_f32(c.x, NULL, NULL, scratch, c.mean, c.rstd, NULL, c.running_mean0, c.running_var0, B, C,
                                   S, c.eps);
    else
        cpu_batch_norm_forward_f32(c.x, NULL, NULL, scratch, c.mean, c.rstd, NULL, NULL, NULL, B, C, S, c.eps);
    free(scratch);
    NormMagnitudes m = norm_magnitudes(c.x, c.dy, n, has_weight ? c.w : NULL, has_weight ? C : 0, c.mean, c.rstd,
                                       channel_norm_stat_of, &c);
    c.tolerance_y = norm_y_tolerance(m, c.y, n);
    c.tolerance_dx = norm_dx_tolerance(m, c.dx, n);
    in_every_order(channel_norm_run, &c);
    first_results_free(&c.first);
    free(c.x), free(c.w), free(c.b), free(c.dy), free(c.running_mean0), free(c.running_var0);
    free(c.y), free(c.mean), free(c.rstd), free(c.dx), free(c.dw), free(c.db), free(c.running_mean), free(c.running_var);
}

TEST(group_norm_matches_cpu) {
    channel_norm_case(NORM_GROUP, 1, 1, 1, 1, 1, 1, 0.0f);
    channel_norm_case(NORM_GROUP, 2, 6, 5, 3, 1, 1, 0.0f);
    channel_norm_case(NORM_GROUP, 3, 4, 1, 4, 1, 1, 0.0f);     // S = 1, one channel per group
    channel_norm_case(NORM_GROUP, 2, 8, 37, 1, 1, 0, 0.0f);    // one group
    channel_norm_case(NORM_GROUP, 1, 5, 19, 5, 0, 1, 0.0f);
    channel_norm_case(NORM_GROUP, 2, 6, 13, 2, 0, 0, 0.0f);
    channel_norm_case(NORM_GROUP, 1, 4, 2503, 2, 1, 1, 0.0f);  // rows of 5006 elements: 2 slices per row
    channel_norm_case(NORM_GROUP, 2, 3, 4099, 3, 1, 1, 0.0f);  // planes of 4099 elements: 2 slices per plane
    channel_norm_case(NORM_GROUP, 3, 6, 29, 3, 1, 1, 40.0f);
    for (int r = 0; r < 2; r++) {
        int64_t G = random_int(1, 4), C = G * random_int(1, 5);
        channel_norm_case(NORM_GROUP, random_int(1, 4), C, random_int(1, 90), G, 1, 1, 0.0f);
    }
    kernel_checked("group_norm_forward");
    kernel_checked("group_norm_backward");
}

TEST(batch_norm_matches_cpu) {
    static const ChannelNormKind kinds[] = {NORM_BATCH_TRAIN, NORM_BATCH_TRAIN_RUNNING, NORM_BATCH_EVAL};
    for (int k = 0; k < 3; k++) {
        ChannelNormKind kind = kinds[k];
        channel_norm_case(kind, 2, 1, 1, 1, 1, 1, 0.0f);
        channel_norm_case(kind, 5, 3, 1, 1, 1, 1, 0.0f);      // [B, C]: segments of one element
        channel_norm_case(kind, 3, 2, 7, 1, 1, 1, 0.0f);
        channel_norm_case(kind, 2, 5, 33, 1, 0, 0, 0.0f);
        channel_norm_case(kind, 4, 3, 41, 1, 1, 0, 0.0f);
        channel_norm_case(kind, 3, 2, 1601, 1, 1, 1, 0.0f);   // 4803 per channel: 2 slices
        channel_norm_case(kind, 1031, 2, 5, 1, 0, 1, 0.0f);   // 5155 per channel, 5-element segments
        channel_norm_case(kind, 3, 4, 23, 1, 1, 1, 30.0f);
        channel_norm_case(kind, random_int(2, 9), random_int(1, 6), random_int(1, 70), 1, 1, 1, 0.0f);
    }
    kernel_checked("batch_norm_forward_training");
    kernel_checked("batch_norm_forward_eval");
    kernel_checked("batch_norm_backward");
}

// ------------------------------------------------------------------------------------------------
// Attention.
// ------------------------------------------------------------------------------------------------

typedef enum { MASK_NONE, MASK_BROADCAST, MASK_FULL } MaskKind;

typedef struct {
    int64_t BH, Tq, Tk, D, Dv;
    int causal;
    float scale;  // as passed: <= 0 means 1 / sqrt(D)
    MaskKind bool_kind, float_kind;
    float *q, *k, *v, *dout, *float_mask;  // inputs
    uint8_t *bool_mask;
    float *out, *lse, *dq, *dk, *dv;       // references
    FirstResults first;
} AttentionCase;

static int64_t mask_elements(MaskKind kind, const AttentionCase *c) {
    return kind == MASK_NONE ? 0 : kind == MASK_BROADCAST ? c->Tq * c->Tk : c->BH * c->Tq * c->Tk;
}
static Shape mask_shape(MaskKind kind, const AttentionCase *c) {
    return kind == MASK_BROADCAST ? SHAPE(c->Tq, c->Tk) : SHAPE(c->BH, c->Tq, c->Tk);
}

static void attention_run(void *context, int order) {
    AttentionCase *c = context;
    const char *o = KERNEL_TEST_ORDERS[order];
    int64_t BH = c->BH, Tq = c->Tq, Tk = c->Tk, D = c->D, Dv = c->Dv;
    int64_t nq = BH * Tq * D, nk = BH * Tk * D, nv = BH * Tk * Dv, no = BH * Tq * Dv;
    float *q = to_device(c->q, nq), *k = to_device(c->k, nk), *v = to_device(c->v, nv), *dout = to_device(c->dout, no);
    int64_t n_bool = mask_elements(c->bool_kind, c), n_float = mask_elements(c->float_kind, c);
    uint8_t *bool_mask = NULL;
    if (n_bool) {
        bool_mask = gpu_alloc((size_t)n_bool);
        gpu_copy_to_device(bool_mask, c->bool_mask, (size_t)n_bool);
    }
    float *float_mask = to_device(c->float_mask, n_float);
    int64_t bool_stride = c->bool_kind == MASK_FULL ? Tq * Tk : 0, float_stride = c->float_kind == MASK_FULL ? Tq * Tk : 0;
    float *out = device_floats(no), *lse = device_floats(BH * Tq);
    float *dq = device_floats(nq), *dk = device_floats(nk), *dv = device_floats(nv);
    void *workspace = device_workspace(attention_backward_workspace_bytes(BH, Tq));
    attention_forward_launch(q, k, v, bool_mask, bool_stride, float_mask, float_stride, out, lse, BH, Tq, Tk, D, Dv,
                             c->causal, c->scale, NULL);
    attention_backward_launch(q, k, v, out, dout, lse, bool_mask, bool_stride, float_mask, float_stride, dq, dk, dv,
                              workspace, BH, Tq, Tk, D, Dv, c->causal, c->scale, NULL);
    float *hout = to_host(out, no), *hlse = to_host(lse, BH * Tq);
    float *hdq = to_host(dq, nq), *hdk = to_host(dk, nk), *hdv = to_host(dv, nv);
    // out: softmax-weighted means of |v| <= 1 with f32 exponentials and sums in another order than
    // the CPU's (scores from sgemm, a separate softmax): a few 2^-24 relative per term.
    check_close_scaled("attention out", o, hout, c->out, no, 2e-6);
    // lse: f32 running max and sum vs the test's f64 evaluation.
    check_close_scaled("attention lse", o, hlse, c->lse, BH * Tq, 2e-6);
    // Gradients: sums over Tq or Tk products of recomputed probabilities (exp(s - lse) vs the CPU's
    // stored softmax) and O(1) values, relative to the largest |gradient|.
    check_close_scaled("attention dq", o, hdq, c->dq, nq, 1e-5);
    check_close_scaled("attention dk", o, hdk, c->dk, nk, 1e-5);
    check_close_scaled("attention dv", o, hdv, c->dv, nv, 1e-5);
    keep_or_compare(&c->first, 0, "attention out", order, hout, no);
    keep_or_compare(&c->first, 1, "attention lse", order, hlse, BH * Tq);
    keep_or_compare(&c->first, 2, "attention dq", order, hdq, nq);
    keep_or_compare(&c->first, 3, "attention dk", order, hdk, nk);
    keep_or_compare(&c->first, 4, "attention dv", order, hdv, nv);
    free(hout), free(hlse), free(hdq), free(hdk), free(hdv);
    gpu_free(q), gpu_free(k), gpu_free(v), gpu_free(dout), gpu_free(bool_mask), gpu_free(float_mask);
    gpu_free(out), gpu_free(lse), gpu_free(dq), gpu_free(dk), gpu_free(dv), gpu_free(workspace);
}

// lse of every score row in f64, from the inputs (the CPU op does not expose it).
static void attention_reference_lse(AttentionCase *c) {
    double scale = c->scale > 0 ? c->scale : 1.0 / sqrt((double)c->D);
    c->lse = host_floats(c->BH * c->Tq);
    double *scores = malloc((size_t)c->Tk * sizeof(double));
    for (int64_t bh = 0; bh < c->BH; bh++)
        for (int64_t i = 0; i < c->Tq; i++) {
            double top = -INFINITY;
            for (int64_t j = 0; j < c->Tk; j++) {
                double s = -INFINITY;
                int64_t at_bool = (c->bool_kind == MASK_FULL ? bh * c->Tq * c->Tk : 0) + i * c->Tk + j;
                int64_t at_float = (c->float_kind == MASK_FULL ? bh * c->Tq * c->Tk : 0) + i * c->Tk + j;
                if (!(c->causal && j > i) && !(c->bool_kind != MASK_NONE && !c->bool_mask[at_bool])) {
                    double dot = 0;
                    for (int64_t d = 0; d < c->D; d++)
                        dot += (double)c->q[(bh * c->Tq + i) * c->D + d] * c->k[(bh * c->Tk + j) * c->D + d];
                    s = dot * scale + (c->float_kind != MASK_NONE ? c->float_mask[at_float] : 0.0);
                }
                scores[j] = s;
                if (s > top) top = s;
            }
            double total = 0;
            for (int64_t j = 0; j < c->Tk; j++) total += top == -INFINITY ? 0 : exp(scores[j] - top);
            c->lse[bh * c->Tq + i] = (float)(top == -INFINITY ? -INFINITY : top + log(total));
        }
    free(scores);
}

// fully_masked_row >= 0 removes every key of that query row (of every batch-head for a broadcast
// mask, of batch-head 1 for a full one): the CPU op's NaN row, matched by the kernels.
static void attention_case(int64_t BH, int64_t Tq, int64_t Tk, int64_t D, int64_t Dv, int causal, float scale,
                           MaskKind bool_kind, MaskKind float_kind, int64_t fully_masked_row) {
    AttentionCase c = {.BH = BH, .Tq = Tq, .Tk = Tk, .D = D, .Dv = Dv, .causal = causal, .scale = scale,
                       .bool_kind = bool_kind, .float_kind = float_kind};
    int64_t nq = BH * Tq * D, nk = BH * Tk * D, nv = BH * Tk * Dv, no = BH * Tq * Dv;
    c.q = random_floats(nq, -2.0f, 2.0f);
    c.k = random_floats(nk, -2.0f, 2.0f);
    c.v = random_floats(nv, -1.0f, 1.0f);
    c.dout = random_floats(no, -1.0f, 1.0f);
    int64_t n_bool = mask_elements(bool_kind, &c), n_float = mask_elements(float_kind, &c);
    if (n_bool) {
        c.bool_mask = malloc((size_t)n_bool);
        for (int64_t e = 0; e < n_bool; e++) c.bool_mask[e] = random_uniform(0, 1) < 0.7f;
    }
    if (n_float) {
        c.float_mask = random_floats(n_float, -3.0f, 1.0f);
        for (int64_t e = 0; e < n_float; e++)
            if (random_uniform(0, 1) < 0.05f) c.float_mask[e] = -INFINITY;
    }
    if (fully_masked_row >= 0) {
        int64_t base = (bool_kind == MASK_FULL || (bool_kind == MASK_NONE && float_kind == MASK_FULL)) ? Tq * Tk : 0;
        for (int64_t j = 0; j < Tk; j++) {
            if (bool_kind != MASK_NONE) c.bool_mask[base + fully_masked_row * Tk + j] = 0;
            else c.float_mask[base + fully_masked_row * Tk + j] = -INFINITY;
        }
    }
    TensorScope scope = tensor_scope_begin();
    Tensor *q = tensor_of(c.q, SHAPE(BH, Tq, D), true), *k = tensor_of(c.k, SHAPE(BH, Tk, D), true);
    Tensor *v = tensor_of(c.v, SHAPE(BH, Tk, Dv), true);
    Tensor *bool_mask = n_bool ? tensor_from_data(DTYPE_U8, mask_shape(bool_kind, &c), c.bool_mask) : NULL;
    Tensor *float_mask = n_float ? tensor_from_data(DTYPE_F32, mask_shape(float_kind, &c), c.float_mask) : NULL;
    Tensor *out;
    if (bool_mask && float_mask) {
        // The CPU op takes one mask; both are applied in its order: where(bool, scores, -inf) + float.
        double s = scale > 0 ? scale : 1.0 / sqrt((double)D);
        Tensor *scores = op_mul_scalar(op_matmul(q, op_transpose(k, -2, -1)), s);
        Tensor *neg_inf = tensor_full(DTYPE_F32, SHAPE(), -INFINITY);
        if (causal) {
            Tensor *allowed = tensor_empty(DTYPE_U8, SHAPE(Tq, Tk));
            for (int64_t i = 0; i < Tq; i++)
                for (int64_t j = 0; j < Tk; j++) ((uint8_t *)tensor_data(allowed))[i * Tk + j] = j <= i;
            scores = op_where(allowed, scores, neg_inf);
        }
        scores = op_add(op_where(bool_mask, scores, neg_inf), float_mask);
        out = op_matmul(op_softmax(scores, -1), v);
    } else {
        out = op_scaled_dot_product_attention(q, k, v, bool_mask ? bool_mask : float_mask, causal, scale);
    }
    tensor_backward(out, tensor_from_data(DTYPE_F32, SHAPE(BH, Tq, Dv), c.dout));
    c.out = copy_floats(tensor_f32(out), no);
    c.dq = grad_copy(q, nq);
    c.dk = grad_copy(k, nk);
    c.dv = grad_copy(v, nv);
    tensor_scope_end(scope);
    attention_reference_lse(&c);
    in_every_order(attention_run, &c);
    first_results_free(&c.first);
    free(c.q), free(c.k), free(c.v), free(c.dout), free(c.bool_mask), free(c.float_mask);
    free(c.out), free(c.lse), free(c.dq), free(c.dk), free(c.dv);
}

TEST(attention_matches_cpu) {
    // Tiles are 32 rows for D, Dv <= 64 and 16 rows above: lengths around and between the tile sizes.
    attention_case(1, 1, 1, 1, 1, 0, 0, MASK_NONE, MASK_NONE, -1);
    attention_case(3, 70, 70, 16, 16, 1, 0, MASK_NONE, MASK_NONE, -1);             // causal, 3 tiles
    attention_case(3, 33, 65, 24, 24, 0, 0, MASK_BROADCAST, MASK_NONE, -1);        // bool [Tq, Tk]
    attention_case(2, 37, 29, 16, 20, 0, 0.3f, MASK_FULL, MASK_NONE, 5);           // bool [BH, Tq, Tk], a NaN row
    attention_case(3, 47, 53, 24, 24, 0, 0, MASK_NONE, MASK_BROADCAST, -1);        // additive [Tq, Tk]
    attention_case(2, 31, 41, 8, 5, 0, 0, MASK_NONE, MASK_FULL, 7);                // additive, an all -inf row
    // causal + bool with a NaN row in query tile 0, which the dk/dv block of key tile 1 skips
    attention_case(2, 45, 45, 24, 24, 1, 0, MASK_BROADCAST, MASK_NONE, 5);
    attention_case(3, 29, 34, 16, 16, 1, 0, MASK_FULL, MASK_BROADCAST, -1);        // causal + both masks
    attention_case(2, 50, 20, 32, 16, 1, 0, MASK_NONE, MASK_NONE, -1);             // causal, Tq > Tk
    attention_case(2, 19, 23, 100, 128, 0, 0, MASK_NONE, MASK_NONE, -1);           // 16-row tiles
    attention_case(1, 17, 40, 128, 72, 1, 0, MASK_BROADCAST, MASK_NONE, -1);       // 16-row tiles, causal
    attention_case(2, 3, 5, 65, 7, 0, 0.125f, MASK_NONE, MASK_FULL, -1);
    // The largest shared-memory footprints of the two tile sizes (backward dk/dv: 41 KiB, 35 KiB).
    attention_case(2, 40, 37, 64, 64, 1, 0, MASK_NONE, MASK_NONE, -1);
    attention_case(1, 20, 18, 128, 128, 0, 0, MASK_FULL, MASK_NONE, -1);
    for (int r = 0; r < 2; r++)
        attention_case(random_int(1, 3), random_int(1, 70), random_int(1, 70), random_int(1, 40), random_int(1, 40),
                       (int)random_int(0, 1), 0, MASK_BROADCAST, MASK_NONE, -1);
    kernel_checked("attention_forward");
    kernel_checked("attention_backward");
}

// ------------------------------------------------------------------------------------------------
// Optimizers, EMA and gradient clipping: bit-for-bit against engine/optim.c.
// ------------------------------------------------------------------------------------------------

typedef struct {
    OptimizerKind kind;
    int64_t n;
    double momentum, dampening, weight_decay;
    int nesterov;
} OptimizerCase;

static Optimizer *optimizer_for(const OptimizerCase *c) {
    Optimizer *opt = c->kind == OPTIM_SGD
                         ? optimizer_new_sgd(c->n, 0.1, c->momentum, c->dampening, c->nesterov, c->weight_decay)
                         : optimizer_new_adam(c->n, 1e-3, 0.9, 0.999, 1e-8, c->weight_decay, c->kind == OPTIM_ADAMW);
    // Groups with a gap before, between and after them (when n allows): no decay at half the
    // learning rate, then a stronger decay at twice it.
    if (c->n >= 8) {
        CHECK(optimizer_add_group(opt, 3, c->n / 3, 0.5, 0.0) == 0);
        CHECK(optimizer_add_group(opt, c->n / 2, c->n / 4, 2.0, 0.02) == 0);
    }
    return opt;
}

// One range of optimizer_step on the device, with the coefficients computed as optim.c does.
static void device_segment(const Optimizer *opt, int64_t start, int64_t count, double lr, double weight_decay,
                           float *params, const float *grads, float *state1, float *state2) {
    if (count <= 0) return;
    if (opt->kind == OPTIM_SGD) {
        SgdUpdateScalars k = sgd_update_scalars(lr, weight_decay, opt->momentum, opt->dampening, opt->nesterov, opt->step);
        sgd_update_launch(params, grads, state1, start, count, k, NULL);
    } else {
        AdamUpdateScalars k = adam_update_scalars(lr, weight_decay, opt->beta1, opt->beta2, opt->eps,
                                                  opt->kind == OPTIM_ADAMW, opt->step);
        adam_update_launch(params, grads, state1, state2, start, count, k, NULL);
    }
}

// optimizer_step's walk over groups and gaps (engine/optim.c), launching one update per range. `opt`
// is the CPU optimizer that has just taken the same step (its step count is the one to use).
static void device_optimizer_step(const Optimizer *opt, float *params, const float *grads, float *state1,
                                  float *state2) {
    int64_t position = 0;
    for (int g = 0; g < opt->n_groups; g++) {
        const ParamGroup *group = &opt->groups[g];
        if (group->start > position)
            device_segment(opt, position, group->start - position, opt->lr, opt->weight_decay, params, grads, state1,
                           state2);
        device_segment(opt, group->start, group->count, opt->lr * group->lr_multiplier, group->weight_decay, params,
                       grads, state1, state2);
        if (group->start + group->count > position) position = group->start + group->count;
    }
    device_segment(opt, position, opt->n_params - position, opt->lr, opt->weight_decay, params, grads, state1, state2);
}

static void optimizer_run(void *context, int order) {
    const OptimizerCase *c = context;
    const char *o = KERNEL_TEST_ORDERS[order];
    const int64_t n = c->n;
    Optimizer *opt = optimizer_for(c);
    float *params = random_floats(n, -1.0f, 1.0f);
    float *d_params = to_device(params, n), *d_grads = device_floats(n);
    // SGD's momentum buffer starts as poison: the first step must write it without reading it.
    float *d_state1 = opt->state1 ? device_floats(n) : NULL, *d_state2 = opt->state2 ? to_device(opt->state2, n) : NULL;
    if (opt->kind != OPTIM_SGD) gpu_copy_to_device(d_state1, opt->state1, (size_t)n * sizeof(float));
    for (int step = 0; step < 3; step++) {
        float *grads = random_floats(n, -2.0f, 2.0f);
        if (n > 2) grads[n / 2] = 0.0f;
        gpu_copy_to_device(d_grads, grads, (size_t)n * sizeof(float));
        opt->lr *= 0.9;  // a schedule changes lr between steps
        optimizer_step(opt, params, grads);
        device_optimizer_step(opt, d_params, d_grads, d_state1, d_state2);
        float *h_params = to_host(d_params, n);
        char what[96];
        snprintf(what, sizeof what, "%s params after step %d", c->kind == OPTIM_SGD ? "sgd" : "adam", step + 1);
        // Bitwise: the same f32 operations in the same order (kernels/optim.h).
        check_bits(what, o, h_params, params, (size_t)n * sizeof(float));
        if (d_state1) {
            float *h = to_host(d_state1, n);
            check_bits("optimizer state1", o, h, opt->state1, (size_t)n * sizeof(float));
            free(h);
        }
        if (d_state2) {
            float *h = to_host(d_state2, n);
            check_bits("optimizer state2", o, h, opt->state2, (size_t)n * sizeof(float));
            free(h);
        }
        free(h_params);
        free(grads);
    }
    optimizer_free(opt);
    free(params);
    gpu_free(d_params), gpu_free(d_grads), gpu_free(d_state1), gpu_free(d_state2);
}

TEST(optimizers_match_cpu_bitwise) {
    static const int64_t sizes[] = {1, 5, 257, 10007};
    static const OptimizerCase kinds[] = {
        {OPTIM_SGD, 0, 0.0, 0.0, 0.01, 0},    // plain SGD with weight decay
        {OPTIM_SGD, 0, 0.9, 0.1, 1e-4, 0},    // momentum with dampening
        {OPTIM_SGD, 0, 0.9, 0.0, 5e-4, 1},    // Nesterov
        {OPTIM_SGD, 0, 0.8, 0.0, 0.0, 0},     // momentum, no decay
        {OPTIM_ADAM, 0, 0, 0, 0.01, 0},       // Adam, L2 decay in the gradient
        {OPTIM_ADAM, 0, 0, 0, 0.0, 0},
        {OPTIM_ADAMW, 0, 0, 0, 0.05, 0},      // AdamW, decoupled decay
    };
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            OptimizerCase c = kinds[k];
            c.n = sizes[s];
            in_every_order(optimizer_run, &c);
        }
    kernel_checked("sgd_update");
    kernel_checked("adam_update");
}

typedef struct {
    int64_t n;
    double decay;
} EmaCase;

static void ema_run(void *context, int order) {
    const EmaCase *c = context;
    float *ema = random_floats(c->n, -1.0f, 1.0f), *params = random_floats(c->n, -1.0f, 1.0f);
    float *d_ema = to_device(ema, c->n), *d_params = to_device(params, c->n);
    ema_update(ema, params, c->n, c->decay);
    ema_update_launch(d_ema, d_params, c->n, c->decay, NULL);
    float *h = to_host(d_ema, c->n);
    check_bits("ema", KERNEL_TEST_ORDERS[order], h, ema, (size_t)c->n * sizeof(float));  // same f32 operations
    free(h), free(ema), free(params);
    gpu_free(d_ema), gpu_free(d_params);
}

TEST(ema_matches_cpu_bitwise) {
    // 1048576 + 1001 elements: more than the 4096 blocks x 256 threads of one pass (grid-stride loop).
    static const EmaCase cases[] = {{1, 0.999}, {3, 0.5}, {1000, 0.9999}, {4099, 0.99}, {1048576 + 1001, 0.999}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) in_every_order(ema_run, (void *)&cases[i]);
    kernel_checked("ema_update");
}

typedef struct {
    int64_t n;
    double max_norm;
    int with_inf;
} ClipCase;

static void clip_run(void *context, int order) {
    const ClipCase *c = context;
    const char *o = KERNEL_TEST_ORDERS[order];
    float *grads = random_floats(c->n, -1.0f, 1.0f);
    if (c->with_inf) grads[c->n / 2] = INFINITY;
    float *d_grads = to_device(grads, c->n);
    double *d_norm = gpu_alloc(sizeof(double));
    void *workspace = device_workspace(grad_norm_workspace_bytes(c->n));
    double cpu_norm = clip_grad_norm(grads, c->n, c->max_norm);
    grad_norm_launch(d_grads, c->n, workspace, d_norm, NULL);
    grad_clip_scale_launch(d_grads, c->n, d_norm, c->max_norm, NULL);
    double norm;
    gpu_copy_to_host(&norm, d_norm, sizeof norm);
    // f64 sums of n squares in two different orders (sequential per 16384-chunk on the CPU, trees
    // here): each relative error is below n * 2^-53.
    if (isfinite(cpu_norm))
        CHECK_MSG(fabs(norm - cpu_norm) <= 1e-15 * (double)c->n * cpu_norm, "[%s] norm %.17g vs %.17g", o, norm, cpu_norm);
    else
        CHECK_MSG(norm == cpu_norm, "[%s] norm %g vs %g", o, norm, cpu_norm);
    float *h = to_host(d_grads, c->n);
    // Bitwise: the coefficient is an f32 computed from (float)norm as on the CPU; the two f64 norms
    // round to the same float unless they straddle a rounding boundary (checked separately above).
    CHECK((float)norm == (float)cpu_norm || !isfinite(cpu_norm));
    check_bits("clipped gradients", o, h, grads, (size_t)c->n * sizeof(float));
    free(h), free(grads);
    gpu_free(d_grads), gpu_free(d_norm), gpu_free(workspace);
}

TEST(grad_clipping_matches_cpu) {
    static const ClipCase cases[] = {
        {1, 0.1, 0}, {7, 100.0, 0},                // clipped / left alone (coefficient >= 1)
        {16384, 1.0, 0}, {40009, 5.0, 0},          // one chunk exactly; three chunks, the last partial
        {5003, 1.0, 1},                            // an infinite gradient: norm inf, gradients untouched
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) in_every_order(clip_run, (void *)&cases[i]);
    // scale_f32_launch, the host-coefficient variant.
    float *x = random_floats(1001, -1.0f, 1.0f), *d = to_device(x, 1001);
    scale_f32_launch(d, 1001, 0.37f, NULL);
    float *h = to_host(d, 1001);
    for (int i = 0; i < 1001; i++) x[i] *= 0.37f;
    check_bits("scale_f32", "forward", h, x, 1001 * sizeof(float));
    free(x), free(h);
    gpu_free(d);
    kernel_checked("grad_norm");
    kernel_checked("grad_clip_scale");
    kernel_checked("scale_f32");
}

// ------------------------------------------------------------------------------------------------
// Dropout and gradient reversal: bit-for-bit against engine/rng.c and the CPU ops.
// ------------------------------------------------------------------------------------------------

typedef struct {
    int64_t n;
    double p;
    Rng rng;  // the stream state before the draw
    int misaligned;  // run on buffers offset by one element: the kernel's scalar path
} DropoutCase;

static void dropout_run(void *context, int order) {
    const DropoutCase *c = context;
    const char *o = KERNEL_TEST_ORDERS[order];
    const int64_t n = c->n, shift = c->misaligned ? 1 : 0;
    float *x = random_floats(n, -2.0f, 2.0f), *dy = random_floats(n, -1.0f, 1.0f);
    // CPU: the Bernoulli fill the op draws, the op's forward and its autograd backward.
    Rng cpu_rng = c->rng, fill_rng = c->rng;
    float *bernoulli = host_floats(n);
    rng_fill_bernoulli_f32(&fill_rng, bernoulli, n, (float)(1 - c->p));
    TensorScope scope = tensor_scope_begin();
    Tensor *tx = tensor_of(x, SHAPE(n), true);
    Tensor *ty = op_dropout(tx, c->p, true, &cpu_rng);
    tensor_backward(ty, tensor_from_data(DTYPE_F32, SHAPE(n), dy));
    float *want_y = copy_floats(tensor_f32(ty), n), *want_dx = grad_copy(tx, n);
    tensor_scope_end(scope);
    // Device: reserve the blocks as an engine op would.
    Rng device_rng = c->rng;
    const uint64_t first_block = rng_reserve(&device_rng, (uint64_t)n);
    CHECK(device_rng.offset == cpu_rng.offset && device_rng.offset == fill_rng.offset);
    float *d_x = device_floats(n + shift), *d_dy = device_floats(n + shift);
    gpu_copy_to_device(d_x + shift, x, (size_t)n * sizeof(float));
    gpu_copy_to_device(d_dy + shift, dy, (size_t)n * sizeof(float));
    float *d_y = device_floats(n + shift), *d_dx = device_floats(n + shift), *d_mask = device_floats(n + shift);
    uint8_t *d_keep = gpu_alloc((size_t)(n + shift));
    dropout_forward_launch(d_x + shift, d_y + shift, d_keep + shift, n, c->p, c->rng.seed, c->rng.stream, first_block, NULL);
    dropout_backward_launch(d_dy + shift, d_dx + shift, n, c->p, c->rng.seed, c->rng.stream, first_block, NULL);
    dropout_mask_launch(d_mask + shift, n, c->p, c->rng.seed, c->rng.stream, first_block, NULL);
    float *y = host_floats(n), *dx = host_floats(n), *mask = host_floats(n);
    uint8_t *keep = malloc((size_t)n), *want_keep = malloc((size_t)n);
    gpu_copy_to_host(y, d_y + shift, (size_t)n * sizeof(float));
    gpu_copy_to_host(dx, d_dx + shift, (size_t)n * sizeof(float));
    gpu_copy_to_host(mask, d_mask + shift, (size_t)n * sizeof(float));
    gpu_copy_to_host(keep, d_keep + shift, (size_t)n);
    const float scale = c->p < 1 ? (float)(1 / (1 - c->p)) : 0.0f;
    for (int64_t i = 0; i < n; i++) {
        want_keep[i] = bernoulli[i] == 1.0f;
        bernoulli[i] *= scale;  // op_dropout's mask
    }
    // All bitwise: integer Philox, an exact comparison, and the same f32 products as the CPU op.
    check_bits("dropout keep mask vs rng_fill_bernoulli_f32", o, keep, want_keep, (size_t)n);
    check_bits("dropout mask", o, mask, bernoulli, (size_t)n * sizeof(float));
    check_bits("dropout forward", o, y, want_y, (size_t)n * sizeof(float));
    check_bits("dropout backward", o, dx, want_dx, (size_t)n * sizeof(float));
    free(x), free(dy), free(bernoulli), free(want_y), free(want_dx), free(y), free(dx), free(mask), free(keep);
    free(want_keep);
    gpu_free(d_x), gpu_free(d_dy), gpu_free(d_y), gpu_free(d_dx), gpu_free(d_mask), gpu_free(d_keep);
}

TEST(dropout_matches_cpu_bitwise) {
    static const int64_t sizes[] = {1, 3, 4, 5, 1023, 4099};
    static const double probabilities[] = {0.1, 0.5, 0.9, 1.0};
    // Offsets 2^32 - 2 and up cross into the high word of the block counter within the fill.
    static const Rng streams[] = {{42, 0, 0}, {0x123456789ABCDEF0ull, 7, 5}, {99, (1ull << 40) + 3, 0xFFFFFFFEull}};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
        for (size_t p = 0; p < sizeof probabilities / sizeof probabilities[0]; p++) {
            DropoutCase c = {sizes[s], probabilities[p], streams[(s + p) % 3], (int)((s + p) % 2)};
            in_every_order(dropout_run, &c);
        }
    kernel_checked("dropout_forward");
    kernel_checked("dropout_backward");
    kernel_checked("dropout_mask");
}

typedef struct {
    int64_t n;
    double lambda;
} GradReverseCase;

static void grad_reverse_run(void *context, int order) {
    const GradReverseCase *c = context;
    float *x = random_floats(c->n, -1.0f, 1.0f), *dy = random_floats(c->n, -1.0f, 1.0f);
    TensorScope scope = tensor_scope_begin();
    Tensor *tx = tensor_of(x, SHAPE(c->n), true);
    tensor_backward(op_grad_reverse(tx, c->lambda), tensor_from_data(DTYPE_F32, SHAPE(c->n), dy));
    float *want = grad_copy(tx, c->n);
    tensor_scope_end(scope);
    float *d_dy = to_device(dy, c->n), *d_dx = device_floats(c->n);
    grad_reverse_backward_launch(d_dy, d_dx, c->n, c->lambda, NULL);
    float *got = to_host(d_dx, c->n);
    check_bits("grad_reverse backward", KERNEL_TEST_ORDERS[order], got, want, (size_t)c->n * sizeof(float));  // one f32 product
    free(x), free(dy), free(want), free(got);
    gpu_free(d_dy), gpu_free(d_dx);
}

TEST(grad_reverse_matches_cpu_bitwise) {
    static const GradReverseCase cases[] = {{1, 0.3}, {257, 1.0}, {1000, 0.0}, {4099, 0.123456789}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) in_every_order(grad_reverse_run, (void *)&cases[i]);
    kernel_checked("grad_reverse_backward");
}

// ------------------------------------------------------------------------------------------------

int main(void) {
    kernel_test_seed(0x9E3779B97F4A7C15ull);
    RUN_TEST(layer_norm_matches_cpu);
    RUN_TEST(group_norm_matches_cpu);
    RUN_TEST(batch_norm_matches_cpu);
    RUN_TEST(attention_matches_cpu);
    RUN_TEST(optimizers_match_cpu_bitwise);
    RUN_TEST(ema_matches_cpu_bitwise);
    RUN_TEST(grad_clipping_matches_cpu);
    RUN_TEST(dropout_matches_cpu_bitwise);
    RUN_TEST(grad_reverse_matches_cpu_bitwise);
    print_kernels_checked();
    return test_summary();
}
