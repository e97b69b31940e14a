// kbench: kernel microbenchmarks. For each kernel: first validate against the CPU op on the same
// random inputs, then (on a GPU) time it with CUDA events — warm-up, L2 flushed between runs,
// median of N — and print GB/s or TFLOP/s beside the device's roofline. On the emulated device it
// validates and says that its timings mean nothing.
//
//   kbench --list            names every kernel
//   kbench [--runs N] [--errors] [name ...]   runs all kernels, or the named ones; --errors prints
//                            every check's measured error beside its tolerance
//
// Work per run: memory-bound kernels count the bytes of every input read once and every output
// written once (what an ideal kernel moves; re-reads and scratch traffic are the kernel's cost);
// GEMM-like kernels (GEMM, convolution, attention) count the flops of the algorithm, 2 per
// multiply-add, without the recomputation a kernel may choose to do.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/cpu/conv.h"
#include "engine/cpu/elementwise.h"
#include "engine/cpu/norm.h"
#include "engine/cpu/pool.h"
#include "engine/gpu/gpu.h"
#include "engine/ops.h"
#include "engine/optim.h"
#include "kernels/attention.h"
#include "kernels/conv.h"
#include "kernels/cross_entropy.h"
#include "kernels/dropout.h"
#include "kernels/elementwise.h"
#include "kernels/gemm.h"
#include "kernels/index.h"
#include "kernels/norm.h"
#include "kernels/optim.h"
#include "kernels/pool.h"
#include "kernels/reduce.h"
#include "kernels/softmax.h"
#include "kernels/where.h"

typedef enum { MEASURE_BYTES, MEASURE_FLOPS } MeasureKind;

// One benchmark: builds its inputs (host reference + device copies), checks the kernel's output,
// and runs the kernel once per call of `run`.
typedef struct KernelBench KernelBench;
struct KernelBench {
    const char *name;
    const char *description;
    MeasureKind measure;
    // Prepares state (a struct that starts with a BenchState), validates; returns the bytes moved or
    // flops done by one run, or -1 if the validation failed (message already printed).
    double (*prepare)(void **state);
    void (*run)(void *state);
};

static Rng bench_rng = {.seed = 2024, .stream = 9, .offset = 0};
static const Device DEVICE = {DEVICE_CUDA, 0};

// The device memory a benchmark holds until it ends: every benchmark's state struct starts with
// one, and main releases it after the timed runs.
typedef struct {
    Tensor *kept[16];
    int n_kept;
    void *scratch[4];  // gpu_alloc'd workspaces
    int n_scratch;
} BenchState;

static void *bench_state_new(size_t bytes) {
    void *state = calloc(1, bytes);
    if (!state) {
        fprintf(stderr, "error: kbench: out of memory\n");
        exit(1);
    }
    return state;
}

static void bench_state_release(BenchState *s) {
    for (int i = 0; i < s->n_kept; i++) tensor_release(s->kept[i]);
    for (int i = 0; i < s->n_scratch; i++) gpu_free(s->scratch[i]);
    s->n_kept = s->n_scratch = 0;
}

// A device tensor kept (past the prepare's scope) until the benchmark ends.
static Tensor *keep(BenchState *s, Tensor *device_tensor) {
    if (s->n_kept == (int)(sizeof s->kept / sizeof s->kept[0])) {
        fprintf(stderr, "error: kbench: too many tensors kept by one benchmark\n");
        exit(1);
    }
    s->kept[s->n_kept++] = tensor_keep(device_tensor);
    return device_tensor;
}
static Tensor *device_copy(BenchState *s, Tensor *host) { return keep(s, tensor_to_device_raw(host, DEVICE)); }
static Tensor *device_empty(BenchState *s, DType dtype, Shape shape) {
    return keep(s, tensor_empty_on(dtype, shape, DEVICE));
}
// A workspace of `bytes` device bytes (NULL for 0), freed when the benchmark ends.
static void *device_scratch(BenchState *s, size_t bytes) {
    if (bytes == 0) return NULL;
    if (s->n_scratch == (int)(sizeof s->scratch / sizeof s->scratch[0])) {
        fprintf(stderr, "error: kbench: too many workspaces in one benchmark\n");
        exit(1);
    }
    return s->scratch[s->n_scratch++] = gpu_alloc(bytes);
}

static Tensor *random_tensor(Shape shape) {
    Tensor *t = tensor_empty_on(DTYPE_F32, shape, device_cpu());
    rng_fill_normal_f32(&bench_rng, tensor_f32(t), tensor_numel(t), 0.0f, 1.0f);
    return t;
}
static Tensor *host_empty(DType dtype, Shape shape) { return tensor_empty_on(dtype, shape, device_cpu()); }

// Largest |device - host| over the elements, relative to max(1, |host|).
static double max_relative_error(Tensor *device_result, Tensor *host_result) {
    Tensor *back = tensor_to_device_raw(device_result, device_cpu());
    double worst = 0;
    for (int64_t i = 0; i < tensor_numel(host_result); i++) {
        double expected = tensor_f32(host_result)[i], got = tensor_f32(back)[i];
        double error = fabs(got - expected) / fmax(1.0, fabs(expected));
        if (!(error <= worst)) worst = error;  // NaN sticks
    }
    return worst;
}

// Largest |device - host| relative to the largest |host|: for results whose natural size is far from
// 1 (gradients of a mean, long sums), where the error of each element scales with the magnitudes
// summed rather than with the element.
static double max_scaled_error(Tensor *device_result, Tensor *host_result) {
    Tensor *back = tensor_to_device_raw(device_result, device_cpu());
    double worst = 0, largest = 0;
    for (int64_t i = 0; i < tensor_numel(host_result); i++) largest = fmax(largest, fabs(tensor_f32(host_result)[i]));
    for (int64_t i = 0; i < tensor_numel(host_result); i++) {
        double error = fabs((double)tensor_f32(back)[i] - tensor_f32(host_result)[i]);
        if (!(error <= worst)) worst = error;  // NaN sticks
    }
    return largest > 0 ? worst / largest : worst;
}

// How many elements differ in their bits (any dtype): for kernels that must reproduce the CPU exactly.
static int64_t elements_differing(Tensor *device_result, Tensor *host_result) {
    Tensor *back = tensor_to_device_raw(device_result, device_cpu());
    size_t size = dtype_size(host_result->dtype);
    const char *got = tensor_data(back), *expected = tensor_data(host_result);
    int64_t differing = 0;
    for (int64_t i = 0; i < tensor_numel(host_result); i++) differing += memcmp(got + i * size, expected + i * size, size) != 0;
    return differing;
}

static bool show_errors = false;  // --errors

static bool validated(const char *what, double error, double tolerance) {
    if (show_errors) printf("  %-32s error %.3g (tolerance %.1g)\n", what, error, tolerance);
    if (error <= tolerance) return true;
    printf("%-24s FAILED validation: error %.3g > %.1g\n", what, error, tolerance);
    return false;
}

static bool identical(const char *what, Tensor *device_result, Tensor *host_result) {
    int64_t differing = elements_differing(device_result, host_result);
    if (show_errors) printf("  %-32s %lld elements differ (bitwise)\n", what, (long long)differing);
    if (differing == 0) return true;
    printf("%-24s FAILED validation: %lld of %lld elements differ from the CPU's bits\n", what, (long long)differing,
           (long long)tensor_numel(host_result));
    return false;
}

// ---------------------------------------------------------------- benchmarks
// Shapes are sized for a GPU (tens of MB); the emulator runs them too, slowly, so the emulated
// build divides the batch (or row) dimension by `scale`; the other dimensions stay as on the GPU so
// that the kernels run the same per-row / per-image work. Rows never drop below 1, batch dimensions
// (images, batch-heads) never below 2, so that the addressing across images is still checked.
static int64_t scale = 1;

static int64_t scaled(int64_t n) { return n / scale > 1 ? n / scale : 1; }
static int64_t scaled_batch(int64_t n) { return n < 2 ? n : n / scale > 2 ? n / scale : 2; }

// ---- elementwise, reductions, softmax

typedef struct {
    BenchState base;
    float *x, *y, *a, *b, *out;
    int64_t n, rows, cols;
} RowsState;

static double gelu_prepare(void **state) {
    RowsState *s = bench_state_new(sizeof *s);
    *state = s;
    s->n = (1 << 24) / scale;
    Tensor *x = random_tensor(SHAPE(s->n));
    s->x = tensor_f32(device_copy(&s->base, x));
    Tensor *y = device_empty(&s->base, DTYPE_F32, SHAPE(s->n));
    s->y = tensor_f32(y);
    unary_forward_f32_launch(UNARY_gelu, s->x, s->y, s->n, 0, 0, NULL);
    GPU_CHECK_LAUNCH();
    // erff on the device vs libm: a few ulp.
    if (!validated("gelu_forward", max_relative_error(y, op_gelu(x)), 1e-5)) return -1;
    return 2.0 * (double)s->n * sizeof(float);
}
static void gelu_run(void *state) {
    RowsState *s = state;
    unary_forward_f32_launch(UNARY_gelu, s->x, s->y, s->n, 0, 0, NULL);
}

static double bias_add_prepare(void **state) {
    RowsState *s = bench_state_new(sizeof *s);
    *state = s;
    s->rows = 8192 / scale;
    s->cols = 1024;
    Tensor *a = random_tensor(SHAPE(s->rows, s->cols)), *b = random_tensor(SHAPE(s->cols));
    Tensor *da = device_copy(&s->base, a), *db = device_copy(&s->base, b);
    Tensor *out = keep(&s->base, op_add(da, db));
    s->a = tensor_f32(da), s->b = tensor_f32(db), s->out = tensor_f32(out);
    if (!validated("add_broadcast", max_relative_error(out, op_add(a, b)), 1e-6)) return -1;
    return (2.0 * (double)(s->rows * s->cols) + (double)s->cols) * sizeof(float);
}
static void bias_add_run(void *state) {
    RowsState *s = state;
    KernelBroadcast layout = {.ndim = 2, .shape = {s->rows, s->cols}, .stride_a = {s->cols, 1}, .stride_b = {0, 1}};
    binary_f32_launch(BINARY_ADD, s->a, s->b, s->out, layout, NULL);
}

static double row_sum_prepare(void **state) {
    RowsState *s = bench_state_new(sizeof *s);
    *state = s;
    s->rows = 16384 / scale;
    s->cols = 1000;
    Tensor *x = random_tensor(SHAPE(s->rows, s->cols));
    s->x = tensor_f32(device_copy(&s->base, x));
    Tensor *y = device_empty(&s->base, DTYPE_F32, SHAPE(s->rows));
    s->y = tensor_f32(y);
    reduce_f32_launch(REDUCE_SUM, s->x, s->y, NULL, s->rows, s->cols, 1, NULL, 0, NULL);
    GPU_CHECK_LAUNCH();
    int dim = 1;
    // 1000-term sums in another order: ~sqrt(1000) ulp of the magnitudes summed.
    if (!validated("reduce_sum_rows", max_relative_error(y, op_sum(x, &dim, 1, false)), 1e-4)) return -1;
    return (double)(s->rows * s->cols) * sizeof(float);
}
static void row_sum_run(void *state) {
    RowsState *s = state;
    reduce_f32_launch(REDUCE_SUM, s->x, s->y, NULL, s->rows, s->cols, 1, NULL, 0, NULL);
}

static double softmax_prepare(void **state) {
    RowsState *s = bench_state_new(sizeof *s);
    *state = s;
    s->rows = 16384 / scale;
    s->cols = 1000;
    Tensor *x = random_tensor(SHAPE(s->rows, s->cols));
    s->x = tensor_f32(device_copy(&s->base, x));
    Tensor *y = device_empty(&s->base, DTYPE_F32, SHAPE(s->rows, s->cols));
    s->y = tensor_f32(y);
    softmax_forward_f32_launch(s->x, s->y, s->rows, s->cols, 1, 0, NULL);
    GPU_CHECK_LAUNCH();
    if (!validated("softmax_forward", max_relative_error(y, op_softmax(x, 1)), 1e-5)) return -1;
    return 2.0 * (double)(s->rows * s->cols) * sizeof(float);
}
static void softmax_run(void *state) {
    RowsState *s = state;
    softmax_forward_f32_launch(s->x, s->y, s->rows, s->cols, 1, 0, NULL);
}

// ---- cross-entropy: the fused loss + gradient kernel, as op_cross_entropy runs it on the device

typedef struct {
    BenchState base;
    CrossEntropyArgs args;
} CrossEntropyState;

static double cross_entropy_prepare(void **state) {
    CrossEntropyState *s = bench_state_new(sizeof *s);
    *state = s;
    const int64_t rows = scaled(4096), classes = 1000;
    Tensor *logits = random_tensor(SHAPE(rows, classes));
    Tensor *targets = host_empty(DTYPE_I64, SHAPE(rows));
    rng_fill_int64(&bench_rng, tensor_i64(targets), rows, 0, classes);
    // Every 8th row is padding (ignore_index): the mean's divisor and the zero gradient rows are
    // part of what is checked.
    for (int64_t i = 3; i < rows; i += 8) tensor_i64(targets)[i] = -100;
    Tensor *loss = device_empty(&s->base, DTYPE_F32, SHAPE());
    Tensor *grad = device_empty(&s->base, DTYPE_F32, SHAPE(rows, classes));
    s->args = (CrossEntropyArgs){
        .logits = tensor_f32(device_copy(&s->base, logits)),
        .targets = tensor_i64(device_copy(&s->base, targets)),
        .rows = rows,
        .classes = classes,
        .ignore_index = -100,
        .loss = tensor_f32(loss),
        .grad_logits = tensor_f32(grad),
        .workspace = device_scratch(&s->base, cross_entropy_workspace_bytes(rows)),
    };
    cross_entropy_f32_launch(s->args, NULL);
    GPU_CHECK_LAUNCH();
    // The CPU op and its autograd gradient (mean reduction).
    tensor_requires_grad(logits);
    Tensor *want_loss = op_cross_entropy(logits, targets, cross_entropy_defaults());
    tensor_backward(want_loss, NULL);
    // The loss: a mean of ~rows log-sum-exps summed in another order (f32 trees vs the CPU's f64).
    bool ok = validated("cross_entropy loss", max_relative_error(loss, want_loss), 1e-5);
    // The gradient (p - onehot) / W is ~1 / rows per element: measured against its largest element,
    // f32 exponentials and normalisers of 1000 terms differ by a few ulp.
    ok &= validated("cross_entropy grad", max_scaled_error(grad, logits->grad), 1e-5);
    if (!ok) return -1;
    // Logits read and gradient written once, targets read, the loss written.
    return 2.0 * (double)(rows * classes) * sizeof(float) + (double)rows * sizeof(int64_t) + sizeof(float);
}
static void cross_entropy_run(void *state) {
    CrossEntropyState *s = state;
    cross_entropy_f32_launch(s->args, NULL);
}

// ---- normalisation

typedef struct {
    BenchState base;
    float *x, *dy, *weight, *bias, *y, *mean, *rstd, *dx, *dweight, *dbias, *running_mean, *running_var;
    void *workspace;
    int64_t B, C, S, G, N, D;
} NormState;

static const double NORM_EPS = 1e-5;

static double layer_norm_forward_prepare(void **state) {
    NormState *s = bench_state_new(sizeof *s);
    *state = s;
    const int64_t N = s->N = scaled(8192), D = s->D = 768;
    Tensor *x = random_tensor(SHAPE(N, D)), *w = random_tensor(SHAPE(D)), *b = random_tensor(SHAPE(D));
    s->x = tensor_f32(device_copy(&s->base, x));
    s->weight = tensor_f32(device_copy(&s->base, w));
    s->bias = tensor_f32(device_copy(&s->base, b));
    Tensor *y = device_empty(&s->base, DTYPE_F32, SHAPE(N, D));
    Tensor *mean = device_empty(&s->base, DTYPE_F32, SHAPE(N)), *rstd = device_empty(&s->base, DTYPE_F32, SHAPE(N));
    s->y = tensor_f32(y), s->mean = tensor_f32(mean), s->rstd = tensor_f32(rstd);
    layer_norm_forward_launch(s->x, s->weight, s->bias, s->y, s->mean, s->rstd, N, D, NORM_EPS, NULL);
    GPU_CHECK_LAUNCH();
    Tensor *want_y = host_empty(DTYPE_F32, SHAPE(N, D));
    Tensor *want_mean = host_empty(DTYPE_F32, SHAPE(N)), *want_rstd = host_empty(DTYPE_F32, SHAPE(N));
    cpu_layer_norm_forward_f32(tensor_f32(x), tensor_f32(w), tensor_f32(b), tensor_f32(want_y), tensor_f32(want_mean),
                               tensor_f32(want_rstd), N, D, NORM_EPS);
    // f32 row sums of 768 elements (the kernel) vs f64 (the CPU): f32 rounding of the statistics,
    // ~1e-6 relative (kernels/norm.h), times |y| up to ~10.
    bool ok = validated("layer_norm_forward y", max_relative_error(y, want_y), 1e-5);
    ok &= validated("layer_norm_forward mean", max_relative_error(mean, want_mean), 1e-5);
    ok &= validated("layer_norm_forward rstd", max_relative_error(rstd, want_rstd), 1e-5);
    if (!ok) return -1;
    // x read, y written; weight and bias read, mean and rstd written.
    return (2.0 * (double)(N * D) + 2.0 * (double)D + 2.0 * (double)N) * sizeof(float);
}
static void layer_norm_forward_run(void *state) {
    NormState *s = state;
    layer_norm_forward_launch(s->x, s->weight, s->bias, s->y, s->mean, s->rstd, s->N, s->D, NORM_EPS, NULL);
}

static double layer_norm_backward_prepare(void **state) {
    NormState *s = bench_state_new(sizeof *s);
    *state = s;
    const int64_t N = s->N = scaled(8192), D = s->D = 768;
    Tensor *x = random_tensor(SHAPE(N, D)), *w = random_tensor(SHAPE(D)), *dy = random_tensor(SHAPE(N, D));
    // The statistics saved by the forward, from the CPU forward.
    Tensor *y = host_empty(DTYPE_F32, SHAPE(N, D));
    Tensor *mean = host_empty(DTYPE_F32, SHAPE(N)), *rstd = host_empty(DTYPE_F32, SHAPE(N));
    cpu_layer_norm_forward_f32(tensor_f32(x), tensor_f32(w), NULL, tensor_f32(y), tensor_f32(mean), tensor_f32(rstd), N, D,
                               NORM_EPS);
    s->x = tensor_f32(device_copy(&s->base, x));
    s->dy = tensor_f32(device_copy(&s->base, dy));
    s->weight = tensor_f32(device_copy(&s->base, w));
    s->mean = tensor_f32(device_copy(&s->base, mean));
    s->rstd = tensor_f32(device_copy(&s->base, rstd));
    Tensor *dx = device_empty(&s->base, DTYPE_F32, SHAPE(N, D));
    Tensor *dw = device_empty(&s->base, DTYPE_F32, SHAPE(D)), *db = device_empty(&s->base, DTYPE_F32, SHAPE(D));
    s->dx = tensor_f32(dx), s->dweight = tensor_f32(dw), s->dbias = tensor_f32(db);
    s->workspace = device_scratch(&s->base, layer_norm_backward_workspace_bytes(N, D));
    layer_norm_backward_launch(s->x, s->dy, s->mean, s->rstd, s->weight, s->dx, s->dweight, s->dbias, s->workspace, N, D,
                               NULL);
    GPU_CHECK_LAUNCH();
    Tensor *want_dx = host_empty(DTYPE_F32, SHAPE(N, D));
    Tensor *want_dw = host_empty(DTYPE_F32, SHAPE(D)), *want_db = host_empty(DTYPE_F32, SHAPE(D));
    cpu_layer_norm_backward_f32(tensor_f32(x), tensor_f32(dy), tensor_f32(mean), tensor_f32(rstd), tensor_f32(w),
                                tensor_f32(want_dx), tensor_f32(want_dw), tensor_f32(want_db), N, D);
    // dx: two f32 row means of 768 products (vs f64) subtracted from dxhat, which cancels; measured
    // against the largest |dx|. dweight, dbias: column sums over N rows in f32 trees vs f64, against
    // the largest sum (a column's sum can be near 0).
    bool ok = validated("layer_norm_backward dx", max_scaled_error(dx, want_dx), 1e-5);
    ok &= validated("layer_norm_backward dweight", max_scaled_error(dw, want_dw), 1e-5);
    ok &= validated("layer_norm_backward dbias", max_scaled_error(db, want_db), 1e-5);
    if (!ok) return -1;
    // x and dy read, dx written; mean, rstd, weight read, dweight and dbias written.
    return (3.0 * (double)(N * D) + 2.0 * (double)N + 3.0 * (double)D) * sizeof(float);
}
static void layer_norm_backward_run(void *state) {
    NormState *s = state;
    layer_norm_backward_launch(s->x, s->dy, s->mean, s->rstd, s->weight, s->dx, s->dweight, s->dbias, s->workspace, s->N,
                               s->D, NULL);
}

static double group_norm_forward_prepare(void **state) {
    NormState *s = bench_state_new(sizeof *s);
    *state = s;
    const int64_t B = s->B = scaled_batch(32), C = s->C = 256, S = s->S = 32 * 32, G = s->G = 32;
    Tensor *x = random_tensor(SHAPE(B, C, S)), *w = random_tensor(SHAPE(C)), *b = random_tensor(SHAPE(C));
    s->x = tensor_f32(device_copy(&s->base, x));
    s->weight = tensor_f32(device_copy(&s->base, w));
    s->bias = tensor_f32(device_copy(&s->base, b));
    Tensor *y = device_empty(&s->base, DTYPE_F32, SHAPE(B, C, S));
    Tensor *mean = device_empty(&s->base, DTYPE_F32, SHAPE(B, G)), *rstd = device_empty(&s->base, DTYPE_F32, SHAPE(B, G));
    s->y = tensor_f32(y), s->mean = tensor_f32(mean), s->rstd = tensor_f32(rstd);
    s->workspace = device_scratch(&s->base, group_norm_forward_workspace_bytes(B, C, S, G));
    group_norm_forward_launch(s->x, s->weight, s->bias, s->y, s->mean, s->rstd, s->workspace, B, C, S, G, NORM_EPS, NULL);
    GPU_CHECK_LAUNCH();
    Tensor *want_y = host_empty(DTYPE_F32, SHAPE(B, C, S));
    Tensor *want_mean = host_empty(DTYPE_F32, SHAPE(B, G)), *want_rstd = host_empty(DTYPE_F32, SHAPE(B, G));
    cpu_group_norm_forward_f32(tensor_f32(x), tensor_f32(w), tensor_f32(b), tensor_f32(want_y), tensor_f32(want_mean),
                               tensor_f32(want_rstd), B, C, S, G, NORM_EPS);
    // Statistics over 8192 elements per group: f32 partials combined in f64 (the kernel) vs f64 (the
    // CPU); f32 rounding of the statistics, ~1e-6 relative, times |y| up to ~10.
    bool ok = validated("group_norm_forward y", max_relative_error(y, want_y), 1e-5);
    ok &= validated("group_norm_forward mean", max_relative_error(mean, want_mean), 1e-5);
    ok &= validated("group_norm_forward rstd", max_relative_error(rstd, want_rstd), 1e-5);
    if (!ok) return -1;
    // x read, y written; weight and bias read, mean and rstd written.
    return (2.0 * (double)(B * C * S) + 2.0 * (double)C + 2.0 * (double)(B * G)) * sizeof(float);
}
static void group_norm_forward_run(void *state) {
    NormState *s = state;
    group_norm_forward_launch(s->x, s->weight, s->bias, s->y, s->mean, s->rstd, s->workspace, s->B, s->C, s->S, s->G,
                              NORM_EPS, NULL);
}

static const double BATCH_NORM_MOMENTUM = 0.1;

static double batch_norm_forward_prepare(void **state) {
    NormState *s = bench_state_new(sizeof *s);
    *state = s;
    const int64_t B = s->B = scaled_batch(64), C = s->C = 256, S = s->S = 28 * 28;
    Tensor *x = random_tensor(SHAPE(B, C, 28, 28)), *w = random_tensor(SHAPE(C)), *b = random_tensor(SHAPE(C));
    // Running statistics as a model has them after some steps (PyTorch starts them at 0 and 1).
    Tensor *running_mean = host_empty(DTYPE_F32, SHAPE(C)), *running_var = host_empty(DTYPE_F32, SHAPE(C));
    rng_fill_uniform_f32(&bench_rng, tensor_f32(running_mean), C, -0.5f, 0.5f);
    rng_fill_uniform_f32(&bench_rng, tensor_f32(running_var), C, 0.5f, 2.0f);
    s->x = tensor_f32(device_copy(&s->base, x));
    s->weight = tensor_f32(device_copy(&s->base, w));
    s->bias = tensor_f32(device_copy(&s->base, b));
    Tensor *d_running_mean = device_copy(&s->base, running_mean), *d_running_var = device_copy(&s->base, running_var);
    s->running_mean = tensor_f32(d_running_mean), s->running_var = tensor_f32(d_running_var);
    Tensor *y = device_empty(&s->base, DTYPE_F32, SHAPE(B, C, 28, 28));
    Tensor *mean = device_empty(&s->base, DTYPE_F32, SHAPE(C)), *rstd = device_empty(&s->base, DTYPE_F32, SHAPE(C));
    s->y = tensor_f32(y), s->mean = tensor_f32(mean), s->rstd = tensor_f32(rstd);
    s->workspace = device_scratch(&s->base, batch_norm_forward_workspace_bytes(B, C, S));
    batch_norm_forward_training_launch(s->x, s->weight, s->bias, s->y, s->mean, s->rstd, s->running_mean, s->running_var,
                                       s->workspace, B, C, S, BATCH_NORM_MOMENTUM, NORM_EPS, NULL);
    GPU_CHECK_LAUNCH();
    // The CPU op (which updates its running statistics in place), and the CPU kernel for the saved
    // mean and rstd the op keeps to itself.
    Tensor *want_y = op_batch_norm(x, w, b, running_mean, running_var, true, BATCH_NORM_MOMENTUM, NORM_EPS);
    Tensor *want_mean = host_empty(DTYPE_F32, SHAPE(C)), *want_rstd = host_empty(DTYPE_F32, SHAPE(C));
    Tensor *scratch_y = host_empty(DTYPE_F32, SHAPE(B, C, S));
    cpu_batch_norm_forward_f32(tensor_f32(x), tensor_f32(w), tensor_f32(b), tensor_f32(scratch_y), tensor_f32(want_mean),
                               tensor_f32(want_rstd), NULL, NULL, NULL, B, C, S, NORM_EPS);
    // Statistics over B * 784 elements per channel, f32 partials combined in f64 vs f64: f32
    // rounding, ~1e-6 relative, times |y| up to ~10; the running statistics likewise.
    bool ok = validated("batch_norm_forward y", max_relative_error(y, want_y), 1e-5);
    ok &= validated("batch_norm_forward mean", max_relative_error(mean, want_mean), 1e-5);
    ok &= validated("batch_norm_forward rstd", max_relative_error(rstd, want_rstd), 1e-5);
    ok &= validated("batch_norm_forward running_mean", max_relative_error(d_running_mean, running_mean), 1e-5);
    ok &= validated("batch_norm_forward running_var", max_relative_error(d_running_var, running_var), 1e-5);
    if (!ok) return -1;
    // x read, y written; per channel: weight, bias read, mean, rstd written, running mean and
    // variance read and written.
    return (2.0 * (double)(B * C * S) + 8.0 * (double)C) * sizeof(float);
}
static void batch_norm_forward_run(void *state) {
    NormState *s = state;
    batch_norm_forward_training_launch(s->x, s->weight, s->bias, s->y, s->mean, s->rstd, s->running_mean, s->running_var,
                                       s->workspace, s->B, s->C, s->S, BATCH_NORM_MOMENTUM, NORM_EPS, NULL);
}

// ---- attention (flash), no mask, scale 1 / sqrt(D)

typedef struct {
    BenchState base;
    float *q, *k, *v, *out, *lse, *dout, *dq, *dk, *dv;
    void *workspace;
    int64_t BH, T, D;
} AttentionState;

// The log-sum-exp of every score row, in f64 from the inputs (the CPU op does not expose it).
static Tensor *attention_lse(Tensor *q, Tensor *k, int64_t BH, int64_t T, int64_t D) {
    Tensor *lse = host_empty(DTYPE_F32, SHAPE(BH, T));
    double *scores = malloc((size_t)T * sizeof(double));
    const float *qd = tensor_f32(q), *kd = tensor_f32(k);
    for (int64_t bh = 0; bh < BH; bh++)
        for (int64_t i = 0; i < T; i++) {
            double top = -INFINITY, total = 0;
            for (int64_t j = 0; j < T; j++) {
                double dot = 0;
                for (int64_t d = 0; d < D; d++) dot += (double)qd[(bh * T + i) * D + d] * kd[(bh * T + j) * D + d];
                scores[j] = dot / sqrt((double)D);
                top = fmax(top, scores[j]);
            }
            for (int64_t j = 0; j < T; j++) total += exp(scores[j] - top);
            tensor_f32(lse)[bh * T + i] = (float)(top + log(total));
        }
    free(scores);
    return lse;
}

static AttentionState *attention_state(Tensor **q, Tensor **k, Tensor **v) {
    AttentionState *s = bench_state_new(sizeof *s);
    s->BH = scaled_batch(48), s->T = 256, s->D = 64;
    *q = random_tensor(SHAPE(s->BH, s->T, s->D));
    *k = random_tensor(SHAPE(s->BH, s->T, s->D));
    *v = random_tensor(SHAPE(s->BH, s->T, s->D));
    s->q = tensor_f32(device_copy(&s->base, *q));
    s->k = tensor_f32(device_copy(&s->base, *k));
    s->v = tensor_f32(device_copy(&s->base, *v));
    return s;
}

static double attention_forward_prepare(void **state) {
    Tensor *q, *k, *v;
    AttentionState *s = attention_state(&q, &k, &v);
    *state = s;
    const int64_t BH = s->BH, T = s->T, D = s->D;
    Tensor *out = device_empty(&s->base, DTYPE_F32, SHAPE(BH, T, D)), *lse = device_empty(&s->base, DTYPE_F32, SHAPE(BH, T));
    s->out = tensor_f32(out), s->lse = tensor_f32(lse);
    attention_forward_launch(s->q, s->k, s->v, NULL, 0, NULL, 0, s->out, s->lse, BH, T, T, D, D, 0, 0.0f, NULL);
    GPU_CHECK_LAUNCH();
    // out: softmax-weighted means of 256 values with f32 exponentials and sums in another order than
    // the CPU op's (scores from the GEMM, a separate softmax): a few ulp of the |v| ~ 1 averaged.
    bool ok = validated("attention_forward out", max_relative_error(out, op_scaled_dot_product_attention(q, k, v, NULL, false, 0)),
                        1e-5);
    // lse: the kernel's f32 running max and sum vs f64.
    ok &= validated("attention_forward lse", max_relative_error(lse, attention_lse(q, k, BH, T, D)), 1e-5);
    if (!ok) return -1;
    // Two GEMMs per batch-head: scores q k^T and out = p v, 2 * T * T * D flops each.
    return 4.0 * (double)BH * (double)T * (double)T * (double)D;
}
static void attention_forward_run(void *state) {
    AttentionState *s = state;
    attention_forward_launch(s->q, s->k, s->v, NULL, 0, NULL, 0, s->out, s->lse, s->BH, s->T, s->T, s->D, s->D, 0, 0.0f, NULL);
}

static void attention_backward_run(void *state) {
    AttentionState *s = state;
    attention_backward_launch(s->q, s->k, s->v, s->out, s->dout, s->lse, NULL, 0, NULL, 0, s->dq, s->dk, s->dv, s->workspace,
                              s->BH, s->T, s->T, s->D, s->D, 0, 0.0f, NULL);
}
static double attention_backward_prepare(void **state) {
    Tensor *q, *k, *v;
    AttentionState *s = attention_state(&q, &k, &v);
    *state = s;
    const int64_t BH = s->BH, T = s->T, D = s->D;
    // The CPU op's output and autograd gradients; out and lse (the forward's saved values) come
    // from the CPU, so this check does not depend on the forward kernel.
    tensor_requires_grad(q), tensor_requires_grad(k), tensor_requires_grad(v);
    Tensor *out = op_scaled_dot_product_attention(q, k, v, NULL, false, 0);
    Tensor *dout = random_tensor(SHAPE(BH, T, D));
    tensor_backward(out, dout);
    s->out = tensor_f32(device_copy(&s->base, out));
    s->lse = tensor_f32(device_copy(&s->base, attention_lse(q, k, BH, T, D)));
    s->dout = tensor_f32(device_copy(&s->base, dout));
    Tensor *dq = device_empty(&s->base, DTYPE_F32, SHAPE(BH, T, D));
    Tensor *dk = device_empty(&s->base, DTYPE_F32, SHAPE(BH, T, D)), *dv = device_empty(&s->base, DTYPE_F32, SHAPE(BH, T, D));
    s->dq = tensor_f32(dq), s->dk = tensor_f32(dk), s->dv = tensor_f32(dv);
    s->workspace = device_scratch(&s->base, attention_backward_workspace_bytes(BH, T));
    attention_backward_run(s);
    GPU_CHECK_LAUNCH();
    // Sums over 256 keys or queries of recomputed probabilities (exp(s - lse) vs the CPU's stored
    // softmax) times O(1) values, in other orders: measured against the largest |gradient|.
    bool ok = validated("attention_backward dq", max_scaled_error(dq, q->grad), 1e-5);
    ok &= validated("attention_backward dk", max_scaled_error(dk, k->grad), 1e-5);
    ok &= validated("attention_backward dv", max_scaled_error(dv, v->grad), 1e-5);
    if (!ok) return -1;
    // Five GEMMs per batch-head (2 * T * T * D flops each): scores q k^T, dv = p^T dout,
    // dp = dout v^T, dq = ds k, dk = ds^T q (2.5x the forward; the kernel's recomputation not counted).
    return 10.0 * (double)BH * (double)T * (double)T * (double)D;
}

// ---- GEMM and convolution (implicit GEMM)

typedef struct {
    BenchState base;
    float *a, *b, *c;
    int64_t n;
} GemmState;

static GemmState *gemm_state(Tensor **a, Tensor **b, Tensor **c) {
    GemmState *s = bench_state_new(sizeof *s);
    s->n = 2048 / (scale > 1 ? 8 : 1);
    *a = random_tensor(SHAPE(s->n, s->n)), *b = random_tensor(SHAPE(s->n, s->n));
    s->a = tensor_f32(device_copy(&s->base, *a));
    s->b = tensor_f32(device_copy(&s->base, *b));
    *c = device_empty(&s->base, DTYPE_F32, SHAPE(s->n, s->n));
    s->c = tensor_f32(*c);
    return s;
}

static double sgemm_prepare(void **state) {
    Tensor *a, *b, *c;
    GemmState *s = gemm_state(&a, &b, &c);
    *state = s;
    // On the emulated device the wrapper is computed by the CPU GEMM; on a GPU it is cuBLAS.
    gpu_sgemm(gpu_stream_default(), 0, 0, s->n, s->n, s->n, 1.0f, s->a, s->n, s->b, s->n, 0.0f, s->c, s->n);
    // K-term dot products in another blocking order: f32 rounding of partial sums that grow to
    // ~sqrt(K); measured against the largest |c| (~4.5 sqrt(K)), as an element near 0 carries the
    // same absolute error as the others.
    if (!validated("sgemm", max_scaled_error(c, op_matmul(a, b)), 2e-5)) return -1;
    return 2.0 * (double)s->n * (double)s->n * (double)s->n;
}
static void sgemm_run(void *state) {
    GemmState *s = state;
    gpu_sgemm(gpu_stream_default(), 0, 0, s->n, s->n, s->n, 1.0f, s->a, s->n, s->b, s->n, 0.0f, s->c, s->n);
}

static void sgemm_kernel_run(void *state) {
    GemmState *s = state;
    sgemm_launch(0, 0, s->n, s->n, s->n, 1.0f, s->a, s->n, s->b, s->n, 0.0f, s->c, s->n, NULL);
}
static double sgemm_kernel_prepare(void **state) {
    Tensor *a, *b, *c;
    GemmState *s = gemm_state(&a, &b, &c);
    *state = s;
    sgemm_kernel_run(s);
    GPU_CHECK_LAUNCH();
    // K-term dot products accumulated in k order vs the CPU's blocked order: at most about K * 2^-24
    // relative to the sum of |a * b| (kernels/gemm.h), a random walk of ~sqrt(K) roundings of the
    // running sum in practice; measured against the largest |c| (~4.5 sqrt(K)), as an element near
    // 0 carries the same absolute error as the others.
    if (!validated("sgemm_kernel", max_scaled_error(c, op_matmul(a, b)), 2e-5)) return -1;
    return 2.0 * (double)s->n * (double)s->n * (double)s->n;
}

typedef struct {
    BenchState base;
    ConvGeometry g;
    float *x, *w, *y, *dy, *dx, *dw;
    void *workspace;
} ConvState;

// A ResNet stage-1 3x3 convolution: x [32, 64, 56, 56], w [64, 64, 3, 3], stride 1, padding 1.
static ConvState *conv_state(Tensor **x, Tensor **w) {
    ConvState *s = bench_state_new(sizeof *s);
    s->g = (ConvGeometry){.batch = scaled_batch(32), .c_in = 64, .h = 56, .w = 56, .c_out = 64, .kh = 3, .kw = 3,
                          .stride_h = 1, .stride_w = 1, .pad_h = 1, .pad_w = 1, .dilation_h = 1, .dilation_w = 1, .groups = 1};
    conv_geometry_finish(&s->g);
    const ConvGeometry *g = &s->g;
    *x = random_tensor(SHAPE(g->batch, g->c_in, g->h, g->w));
    *w = random_tensor(SHAPE(g->c_out, g->c_in / g->groups, g->kh, g->kw));
    s->x = tensor_f32(device_copy(&s->base, *x));
    s->w = tensor_f32(device_copy(&s->base, *w));
    return s;
}
// 2 flops per multiply-add of the GEMM each pass is: B*OH*OW x Cout x Cin/groups*KH*KW.
static double conv_flops(const ConvGeometry *g) {
    return 2.0 * (double)(g->batch * g->out_h * g->out_w) * (double)g->c_out * (double)(g->c_in / g->groups * g->kh * g->kw);
}

static void conv_forward_run(void *state) {
    ConvState *s = state;
    conv2d_forward_launch(&s->g, s->x, s->w, NULL, s->y, NULL);
}
static double conv_forward_prepare(void **state) {
    Tensor *x, *w;
    ConvState *s = conv_state(&x, &w);
    *state = s;
    const ConvGeometry *g = &s->g;
    Tensor *y = device_empty(&s->base, DTYPE_F32, SHAPE(g->batch, g->c_out, g->out_h, g->out_w));
    s->y = tensor_f32(y);
    conv_forward_run(s);
    GPU_CHECK_LAUNCH();
    Tensor *want = host_empty(DTYPE_F32, SHAPE(g->batch, g->c_out, g->out_h, g->out_w));
    cpu_conv2d_forward_f32(g, tensor_f32(x), tensor_f32(w), NULL, tensor_f32(want));
    // 576-term dot products in another order (implicit GEMM's k order vs im2col + blocked GEMM):
    // ~sqrt(576) ulp of the ~24-sized sums; measured against the largest |y|.
    if (!validated("conv2d_forward", max_scaled_error(y, want), 1e-5)) return -1;
    return conv_flops(g);
}

static void conv_backward_data_run(void *state) {
    ConvState *s = state;
    conv2d_backward_data_launch(&s->g, s->w, s->dy, s->dx, NULL);
}
static double conv_backward_data_prepare(void **state) {
    Tensor *x, *w;
    ConvState *s = conv_state(&x, &w);
    *state = s;
    const ConvGeometry *g = &s->g;
    Tensor *dy = random_tensor(SHAPE(g->batch, g->c_out, g->out_h, g->out_w));
    s->dy = tensor_f32(device_copy(&s->base, dy));
    Tensor *dx = device_empty(&s->base, DTYPE_F32, SHAPE(g->batch, g->c_in, g->h, g->w));
    s->dx = tensor_f32(dx);
    conv_backward_data_run(s);
    GPU_CHECK_LAUNCH();
    Tensor *want = host_empty(DTYPE_F32, SHAPE(g->batch, g->c_in, g->h, g->w));
    cpu_conv2d_backward_f32(g, tensor_f32(x), tensor_f32(w), tensor_f32(dy), tensor_f32(want), NULL, NULL);
    // 576-term sums (Cout * KH * KW) in another order (the CPU's col2im scatter-adds the taps):
    // against the largest |dx|.
    if (!validated("conv2d_backward_data", max_scaled_error(dx, want), 1e-5)) return -1;
    return conv_flops(g);
}

static void conv_backward_filter_run(void *state) {
    ConvState *s = state;
    conv2d_backward_filter_launch(&s->g, s->x, s->dy, s->dw, s->workspace, NULL);
}
static double conv_backward_filter_prepare(void **state) {
    Tensor *x, *w;
    ConvState *s = conv_state(&x, &w);
    *state = s;
    const ConvGeometry *g = &s->g;
    Tensor *dy = random_tensor(SHAPE(g->batch, g->c_out, g->out_h, g->out_w));
    s->dy = tensor_f32(device_copy(&s->base, dy));
    Tensor *dw = device_empty(&s->base, DTYPE_F32, SHAPE(g->c_out, g->c_in / g->groups, g->kh, g->kw));
    s->dw = tensor_f32(dw);
    s->workspace = device_scratch(&s->base, conv2d_backward_filter_workspace_bytes(g));
    conv_backward_filter_run(s);
    GPU_CHECK_LAUNCH();
    Tensor *want = host_empty(DTYPE_F32, SHAPE(g->c_out, g->c_in / g->groups, g->kh, g->kw));
    cpu_conv2d_backward_f32(g, tensor_f32(x), tensor_f32(w), tensor_f32(dy), NULL, tensor_f32(want), NULL);
    // Sums over B * 56 * 56 (b, oh, ow) products, split-K partials added in split order vs the
    // CPU's blocked GEMM: ~sqrt(K) ulp of sums whose size is ~sqrt(K); against the largest |dw|.
    if (!validated("conv2d_backward_filter", max_scaled_error(dw, want), 1e-5)) return -1;
    return conv_flops(g);
}

// ---- pooling and indexing

typedef struct {
    BenchState base;
    PoolGeometry g;
    float *x, *y;
    int32_t *index;
} PoolState;

static void max_pool_forward_run(void *state) {
    PoolState *s = state;
    max_pool2d_forward_launch(&s->g, s->x, s->y, s->index, NULL);
}
// ResNet's stem pooling: x [32, 64, 112, 112], 3x3 windows, stride 2, padding 1 -> [32, 64, 56, 56],
// saving the argmax indices for the backward (training).
static double max_pool_forward_prepare(void **state) {
    PoolState *s = bench_state_new(sizeof *s);
    *state = s;
    const int64_t B = scaled_batch(32), C = 64;
    s->g = (PoolGeometry){.planes = B * C, .h = 112, .w = 112, .out_h = 56, .out_w = 56, .kernel = 3, .stride = 2, .pad = 1};
    const PoolGeometry *g = &s->g;
    Tensor *x = random_tensor(SHAPE(g->planes, g->h, g->w));
    s->x = tensor_f32(device_copy(&s->base, x));
    Tensor *y = device_empty(&s->base, DTYPE_F32, SHAPE(g->planes, g->out_h, g->out_w));
    Tensor *index = device_empty(&s->base, DTYPE_I32, SHAPE(g->planes, g->out_h, g->out_w));
    s->y = tensor_f32(y), s->index = tensor_data(index);
    max_pool_forward_run(s);
    GPU_CHECK_LAUNCH();
    Tensor *want_y = host_empty(DTYPE_F32, SHAPE(g->planes, g->out_h, g->out_w));
    Tensor *want_index = host_empty(DTYPE_I32, SHAPE(g->planes, g->out_h, g->out_w));
    cpu_max_pool2d_forward_f32(g, tensor_f32(x), tensor_f32(want_y), tensor_data(want_index));
    // A maximum is one of its inputs and the first one in window order is chosen: exact.
    bool ok = identical("max_pool2d_forward y", y, want_y);
    ok &= identical("max_pool2d_forward index", index, want_index);
    if (!ok) return -1;
    // x read; y and the i32 indices written.
    const double outputs = (double)(g->planes * g->out_h * g->out_w);
    return (double)(g->planes * g->h * g->w) * sizeof(float) + outputs * (sizeof(float) + sizeof(int32_t));
}

typedef struct {
    BenchState base;
    float *weight, *out, *grad_out, *grad_weight;
    int64_t *indices;
    int64_t rows, dim, count;
} EmbeddingState;

// A 50000 x 512 token embedding looked up by 8192 tokens (i64), as op_embedding runs it.
static EmbeddingState *embedding_state(Tensor **weight, Tensor **indices) {
    EmbeddingState *s = bench_state_new(sizeof *s);
    s->rows = scaled(50000), s->dim = 512, s->count = scaled(8192);
    *weight = random_tensor(SHAPE(s->rows, s->dim));
    *indices = host_empty(DTYPE_I64, SHAPE(s->count));
    rng_fill_int64(&bench_rng, tensor_i64(*indices), s->count, 0, s->rows);
    // One frequent token (as padding or "the" in text) at every 8th position: the backward then sums
    // many rows into one, in index order.
    for (int64_t j = 5; j < s->count; j += 8) tensor_i64(*indices)[j] = 1;
    s->weight = tensor_f32(device_copy(&s->base, *weight));
    s->indices = tensor_i64(device_copy(&s->base, *indices));
    return s;
}

static void embedding_forward_run(void *state) {
    EmbeddingState *s = state;
    embedding_forward_launch(s->weight, s->indices, 1, s->out, s->rows, s->dim, s->count, NULL);
}
static double embedding_forward_prepare(void **state) {
    Tensor *weight, *indices;
    EmbeddingState *s = embedding_state(&weight, &indices);
    *state = s;
    Tensor *out = device_empty(&s->base, DTYPE_F32, SHAPE(s->count, s->dim));
    s->out = tensor_f32(out);
    embedding_forward_run(s);
    GPU_CHECK_LAUNCH();
    // Copies of rows: exact.
    if (!identical("embedding_forward", out, op_embedding(weight, indices))) return -1;
    // Indices read, the selected rows read once, the output written.
    return (double)s->count * sizeof(int64_t) + 2.0 * (double)(s->count * s->dim) * sizeof(float);
}

static void embedding_backward_run(void *state) {
    EmbeddingState *s = state;
    embedding_backward_launch(s->grad_out, s->indices, 1, s->grad_weight, s->rows, s->dim, s->count, NULL);
}
static double embedding_backward_prepare(void **state) {
    Tensor *weight, *indices;
    EmbeddingState *s = embedding_state(&weight, &indices);
    *state = s;
    Tensor *grad_out = random_tensor(SHAPE(s->count, s->dim));
    s->grad_out = tensor_f32(device_copy(&s->base, grad_out));
    Tensor *grad_weight = device_empty(&s->base, DTYPE_F32, SHAPE(s->rows, s->dim));
    s->grad_weight = tensor_f32(grad_weight);
    embedding_backward_run(s);
    GPU_CHECK_LAUNCH();
    tensor_requires_grad(weight);
    tensor_backward(op_embedding(weight, indices), grad_out);
    // Every row adds its contributions in index order, as the CPU's scatter loop: the same bits.
    if (!identical("embedding_backward", grad_weight, weight->grad)) return -1;
    // Indices and the output gradient read, the whole weight gradient written (it is overwritten).
    return (double)s->count * sizeof(int64_t) + (double)(s->count * s->dim + s->rows * s->dim) * sizeof(float);
}

// ---- optimizer, dropout, select, copies

typedef struct {
    BenchState base;
    float *params, *grads, *exp_avg, *exp_avg_sq;
    AdamUpdateScalars scalars;
    int64_t n;
} AdamState;

static void adam_run(void *state) {
    AdamState *s = state;
    adam_update_launch(s->params, s->grads, s->exp_avg, s->exp_avg_sq, 0, s->n, s->scalars, NULL);
}
// AdamW over 16M parameters: the second step of engine/optim.c's optimizer (non-zero moments).
static double adam_prepare(void **state) {
    AdamState *s = bench_state_new(sizeof *s);
    *state = s;
    const int64_t n = s->n = (1 << 24) / scale;
    Optimizer *opt = optimizer_new_adam(n, 1e-3, 0.9, 0.999, 1e-8, 0.01, 1);
    if (!opt) {
        fprintf(stderr, "error: kbench: cannot create the optimizer\n");
        exit(1);
    }
    Tensor *params = random_tensor(SHAPE(n)), *grads = random_tensor(SHAPE(n));
    optimizer_step(opt, tensor_f32(params), tensor_f32(grads));
    Tensor *exp_avg = tensor_from_data(DTYPE_F32, SHAPE(n), opt->state1);
    Tensor *exp_avg_sq = tensor_from_data(DTYPE_F32, SHAPE(n), opt->state2);
    Tensor *d_params = device_copy(&s->base, params), *d_exp_avg = device_copy(&s->base, exp_avg);
    Tensor *d_exp_avg_sq = device_copy(&s->base, exp_avg_sq);
    s->params = tensor_f32(d_params), s->exp_avg = tensor_f32(d_exp_avg), s->exp_avg_sq = tensor_f32(d_exp_avg_sq);
    grads = random_tensor(SHAPE(n));
    s->grads = tensor_f32(device_copy(&s->base, grads));
    optimizer_step(opt, tensor_f32(params), tensor_f32(grads));
    s->scalars = adam_update_scalars(opt->lr, opt->weight_decay, opt->beta1, opt->beta2, opt->eps, 1, opt->step);
    adam_run(s);
    GPU_CHECK_LAUNCH();
    // The kernel does optim.c's f32 operations in the same order, unfused (kernels/optim.h): the
    // same bits.
    bool ok = identical("adam_update params", d_params, params);
    ok &= identical("adam_update exp_avg", d_exp_avg, tensor_from_data(DTYPE_F32, SHAPE(n), opt->state1));
    ok &= identical("adam_update exp_avg_sq", d_exp_avg_sq, tensor_from_data(DTYPE_F32, SHAPE(n), opt->state2));
    optimizer_free(opt);
    if (!ok) return -1;
    // Parameters, gradients and both moments read; parameters and moments written.
    return 7.0 * (double)n * sizeof(float);
}

typedef struct {
    BenchState base;
    float *x, *y;
    Rng rng;
    uint64_t first_block;
    int64_t n;
} DropoutState;

static const double DROPOUT_P = 0.1;

static void dropout_run(void *state) {
    DropoutState *s = state;
    dropout_forward_launch(s->x, s->y, NULL, s->n, DROPOUT_P, s->rng.seed, s->rng.stream, s->first_block, NULL);
}
// p = 0.1 over 16M floats; the mask is not stored (the backward recomputes it from the seed).
static double dropout_prepare(void **state) {
    DropoutState *s = bench_state_new(sizeof *s);
    *state = s;
    const int64_t n = s->n = (1 << 24) / scale;
    Tensor *x = random_tensor(SHAPE(n));
    s->x = tensor_f32(device_copy(&s->base, x));
    Tensor *y = device_empty(&s->base, DTYPE_F32, SHAPE(n));
    s->y = tensor_f32(y);
    s->rng = rng_make(77, 3);
    Rng reserve = s->rng, cpu = s->rng;
    s->first_block = rng_reserve(&reserve, (uint64_t)n);  // as an engine op reserves the blocks
    dropout_run(s);
    GPU_CHECK_LAUNCH();
    // The same Philox words, an exact comparison and the same f32 product as op_dropout: the same bits.
    if (!identical("dropout_forward", y, op_dropout(x, DROPOUT_P, true, &cpu))) return -1;
    return 2.0 * (double)n * sizeof(float);
}

typedef struct {
    BenchState base;
    uint8_t *condition;
    float *a, *b, *out;
    KernelWhereLayout layout;
} WhereState;

static void where_run(void *state) {
    WhereState *s = state;
    where_f32_launch(s->condition, s->a, s->b, s->out, s->layout, NULL);
}
// out = condition ? a : b over 16M same-shape elements (u8 condition).
static double where_prepare(void **state) {
    WhereState *s = bench_state_new(sizeof *s);
    *state = s;
    const int64_t n = (1 << 24) / scale;
    Tensor *condition = host_empty(DTYPE_U8, SHAPE(n));
    rng_fill_bernoulli_u8(&bench_rng, tensor_data(condition), n, 0.5f);
    Tensor *a = random_tensor(SHAPE(n)), *b = random_tensor(SHAPE(n));
    s->condition = tensor_data(device_copy(&s->base, condition));
    s->a = tensor_f32(device_copy(&s->base, a));
    s->b = tensor_f32(device_copy(&s->base, b));
    Tensor *out = device_empty(&s->base, DTYPE_F32, SHAPE(n));
    s->out = tensor_f32(out);
    s->layout = (KernelWhereLayout){.ndim = 1, .shape = {n}, .stride_condition = {1}, .stride_a = {1}, .stride_b = {1}};
    where_run(s);
    GPU_CHECK_LAUNCH();
    // A selection: exact.
    if (!identical("where", out, op_where(condition, a, b))) return -1;
    // Condition, a and b read, out written.
    return (double)n * (sizeof(uint8_t) + 3.0 * sizeof(float));
}

typedef struct {
    BenchState base;
    void *dst;
    const void *src;
    DType dst_dtype, src_dtype;
    KernelCopyLayout layout;
} CopyState;

static void copy_run(void *state) {
    CopyState *s = state;
    if (copy_strided_launch(s->dst, s->dst_dtype, s->src, s->src_dtype, s->layout, NULL) != 0) {
        fprintf(stderr, "error: kbench: copy_strided_launch refused its dtypes or layout\n");
        exit(1);
    }
}
static void convert_run(void *state) {
    CopyState *s = state;
    if (convert_launch(s->dst, s->dst_dtype, s->src, s->src_dtype, s->layout.shape[0], NULL) != 0) {
        fprintf(stderr, "error: kbench: convert_launch refused its dtypes\n");
        exit(1);
    }
}
// A 4096 x 4096 f32 transpose made contiguous (op_contiguous of a transposed view): reads along
// rows, writes along columns.
static double transpose_prepare(void **state) {
    CopyState *s = bench_state_new(sizeof *s);
    *state = s;
    const int64_t rows = scaled(4096), cols = 4096;
    Tensor *x = random_tensor(SHAPE(rows, cols));
    Tensor *out = device_empty(&s->base, DTYPE_F32, SHAPE(cols, rows));
    s->src = tensor_data(device_copy(&s->base, x)), s->dst = tensor_data(out);
    s->src_dtype = s->dst_dtype = DTYPE_F32;
    s->layout = (KernelCopyLayout){.ndim = 2, .shape = {cols, rows}, .dst_stride = {rows, 1}, .src_stride = {1, cols}};
    copy_run(s);
    GPU_CHECK_LAUNCH();
    // Same dtype: the bits are copied.
    if (!identical("copy_transpose", out, op_contiguous(op_transpose(x, 0, 1)))) return -1;
    return 2.0 * (double)(rows * cols) * sizeof(float);
}

// 16M f32 -> bf16 (round to nearest even), contiguous: convert_launch's vector path.
static double convert_prepare(void **state) {
    CopyState *s = bench_state_new(sizeof *s);
    *state = s;
    const int64_t n = (1 << 24) / scale;
    Tensor *x = random_tensor(SHAPE(n));
    Tensor *out = device_empty(&s->base, DTYPE_BF16, SHAPE(n));
    s->src = tensor_data(device_copy(&s->base, x)), s->dst = tensor_data(out);
    s->src_dtype = DTYPE_F32, s->dst_dtype = DTYPE_BF16;
    s->layout = (KernelCopyLayout){.ndim = 1, .shape = {n}, .dst_stride = {1}, .src_stride = {1}};
    convert_run(s);
    GPU_CHECK_LAUNCH();
    // cu_float_to_bfloat16 agrees with engine/dtype.c on every non-NaN value (no NaN here): the same bits.
    if (!identical("convert_f32_bf16", out, op_to_dtype(x, DTYPE_BF16))) return -1;
    return (double)n * (sizeof(float) + sizeof(uint16_t));
}

static const KernelBench BENCHES[] = {
    {"gelu_forward", "elementwise unary (erf GELU), 16M floats; bytes", MEASURE_BYTES, gelu_prepare, gelu_run},
    {"add_broadcast", "broadcast add of a bias row, 8192x1024; bytes", MEASURE_BYTES, bias_add_prepare, bias_add_run},
    {"reduce_sum_rows", "row sums, 16384x1000; bytes", MEASURE_BYTES, row_sum_prepare, row_sum_run},
    {"softmax_forward", "fused online softmax, 16384x1000; bytes", MEASURE_BYTES, softmax_prepare, softmax_run},
    {"cross_entropy", "fused softmax + loss + gradient, 4096x1000, mean; bytes", MEASURE_BYTES, cross_entropy_prepare,
     cross_entropy_run},
    {"layer_norm_forward", "layer norm, 8192x768, affine, saves mean/rstd; bytes", MEASURE_BYTES,
     layer_norm_forward_prepare, layer_norm_forward_run},
    {"layer_norm_backward", "layer norm dx, dweight, dbias, 8192x768; bytes", MEASURE_BYTES, layer_norm_backward_prepare,
     layer_norm_backward_run},
    {"group_norm_forward", "group norm, 32x256x32x32, 32 groups; bytes", MEASURE_BYTES, group_norm_forward_prepare,
     group_norm_forward_run},
    {"batch_norm_forward", "batch norm training (batch stats, running update), 64x256x28x28; bytes", MEASURE_BYTES,
     batch_norm_forward_prepare, batch_norm_forward_run},
    {"attention_forward", "flash attention, BH=48 T=256 D=64, no mask; flops 4*BH*T*T*D", MEASURE_FLOPS,
     attention_forward_prepare, attention_forward_run},
    {"attention_backward", "flash attention dq, dk, dv, BH=48 T=256 D=64; flops 10*BH*T*T*D", MEASURE_FLOPS,
     attention_backward_prepare, attention_backward_run},
    {"sgemm", "2048^3 GEMM, gpu_sgemm (cuBLAS on a GPU); flops", MEASURE_FLOPS, sgemm_prepare, sgemm_run},
    {"sgemm_kernel", "2048^3 GEMM, the handwritten kernel (sgemm_launch); flops", MEASURE_FLOPS, sgemm_kernel_prepare,
     sgemm_kernel_run},
    {"conv2d_forward", "implicit-GEMM conv, x[32,64,56,56] w[64,64,3,3] pad 1; flops", MEASURE_FLOPS, conv_forward_prepare,
     conv_forward_run},
    {"conv2d_backward_data", "implicit-GEMM conv dx, same shapes; flops", MEASURE_FLOPS, conv_backward_data_prepare,
     conv_backward_data_run},
    {"conv2d_backward_filter", "implicit-GEMM conv dw (split-K), same shapes; flops", MEASURE_FLOPS,
     conv_backward_filter_prepare, conv_backward_filter_run},
    {"max_pool2d_forward", "max pool 3x3 s2 p1 + indices, x[32,64,112,112]; bytes", MEASURE_BYTES,
     max_pool_forward_prepare, max_pool_forward_run},
    {"embedding_forward", "embedding lookup, 50000x512 table, 8192 i64 tokens; bytes", MEASURE_BYTES,
     embedding_forward_prepare, embedding_forward_run},
    {"embedding_backward", "embedding weight gradient (gather, no atomics), same shapes; bytes", MEASURE_BYTES,
     embedding_backward_prepare, embedding_backward_run},
    {"adam_update", "AdamW step, 16M params; bytes", MEASURE_BYTES, adam_prepare, adam_run},
    {"dropout_forward", "dropout p=0.1 (Philox), 16M floats; bytes", MEASURE_BYTES, dropout_prepare, dropout_run},
    {"where", "select out = c ? a : b, 16M elements, u8 condition; bytes", MEASURE_BYTES, where_prepare, where_run},
    {"copy_transpose", "strided copy, 4096x4096 f32 transpose; bytes", MEASURE_BYTES, transpose_prepare, copy_run},
    {"convert_f32_bf16", "contiguous f32 -> bf16 conversion, 16M elements; bytes", MEASURE_BYTES, convert_prepare,
     convert_run},
};
enum { BENCH_COUNT = sizeof BENCHES / sizeof BENCHES[0] };

// Published peaks (fp32 non-tensor-core TFLOP/s, HBM GB/s) for the rooflines we know.
static bool roofline(const char *device, double *tflops, double *bandwidth) {
    static const struct { const char *match; double tflops, bandwidth; } known[] = {
        {"H100", 67.0, 3350.0}, {"A100-SXM4-80GB", 19.5, 2039.0}, {"A100", 19.5, 1555.0}, {"L4", 30.3, 300.0}, {"A10", 31.2, 600.0},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strstr(device, known[i].match)) {
            *tflops = known[i].tflops;
            *bandwidth = known[i].bandwidth;
            return true;
        }
    return false;
}

static int compare_floats(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    int runs = 20;
    const char *selected[64];
    int n_selected = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--list") == 0) {
            for (int b = 0; b < BENCH_COUNT; b++) printf("%-24s %s\n", BENCHES[b].name, BENCHES[b].description);
            return 0;
        } else if (strcmp(argv[i], "--errors") == 0) {
            show_errors = true;
        } else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
            runs = atoi(argv[++i]);
            if (runs < 1 || runs > 10000) {
                fprintf(stderr, "error: kbench: --runs expects 1..10000\n");
                return 2;
            }
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "error: kbench: unknown flag '%s' (kbench --list | [--runs N] [--errors] [kernel ...])\n", argv[i]);
            return 2;
        } else if (n_selected < 64) {
            bool known = false;
            for (int b = 0; b < BENCH_COUNT; b++) known |= strcmp(BENCHES[b].name, argv[i]) == 0;
            if (!known) {
                fprintf(stderr, "error: kbench: no kernel named '%s' (see kbench --list)\n", argv[i]);
                return 2;
            }
            selected[n_selected++] = argv[i];
        }
    }
    if (gpu_device_count() == 0) {
        fprintf(stderr, "error: kbench: no CUDA device (backend %s)\n", gpu_backend_name());
        return 1;
    }
    bool emulated = strcmp(gpu_backend_name(), "emulated") == 0;
    if (emulated) scale = 64;
    double peak_tflops = 0, peak_bandwidth = 0;
    bool have_roofline = roofline(gpu_device_name(), &peak_tflops, &peak_bandwidth);
    printf("device: %s (%s)\n", gpu_device_name(), gpu_backend_name());
    if (emulated)
        printf("emulated device: kernels are validated against the CPU ops; the timings below measure the emulator, not a GPU,\n"
               "and mean nothing for performance (shapes divided by %lld)\n", (long long)scale);
    // An L2-sized buffer rewritten between runs so each run starts with a cold cache (50 MB > any L2 today).
    size_t flush_bytes = emulated ? 0 : (size_t)64 << 20;
    void *flush = flush_bytes ? gpu_alloc(flush_bytes) : NULL;
    int failures = 0;
    GpuEvent *start = gpu_event_create(), *stop = gpu_event_create();
    for (int b = 0; b < BENCH_COUNT; b++) {
        const KernelBench *bench = &BENCHES[b];
        bool wanted = n_selected == 0;
        for (int i = 0; i < n_selected; i++) wanted |= strcmp(selected[i], bench->name) == 0;
        if (!wanted) continue;
        TensorScope scope = tensor_scope_begin();
        void *state = NULL;
        double work = bench->prepare(&state);
        if (work < 0) {
            failures++;
            if (state) bench_state_release(state);
            tensor_scope_end(scope);
            free(state);
            continue;
        }
        int repetitions = emulated ? 1 : runs;
        float *times = malloc((size_t)repetitions * sizeof(float));
        for (int warm = 0; warm < (emulated ? 0 : 3); warm++) bench->run(state);
        for (int r = 0; r < repetitions; r++) {
            if (flush) gpu_memset_async(flush, r & 0xff, flush_bytes, gpu_stream_default());
            gpu_event_record(start, gpu_stream_default());
            bench->run(state);
            gpu_event_record(stop, gpu_stream_default());
            gpu_event_synchronize(stop);
            times[r] = gpu_event_elapsed_ms(start, stop);
        }
        GPU_CHECK_LAUNCH();
        qsort(times, (size_t)repetitions, sizeof(float), compare_floats);
        double ms = times[repetitions / 2];
        double rate = ms > 0 ? work / (ms * 1e-3) : 0;
        if (bench->measure == MEASURE_BYTES)
            printf("%-24s ok   median %9.3f ms  %9.1f GB/s", bench->name, ms, rate / 1e9);
        else
            printf("%-24s ok   median %9.3f ms  %9.2f TFLOP/s", bench->name, ms, rate / 1e12);
        if (have_roofline && !emulated) {
            double fraction = bench->measure == MEASURE_BYTES ? rate / 1e9 / peak_bandwidth : rate / 1e12 / peak_tflops;
            printf("  (%.0f%% of %s roofline)", 100 * fraction, bench->measure == MEASURE_BYTES ? "bandwidth" : "fp32");
        }
        printf("\n");
        free(times);
        bench_state_release(state);
        free(state);
        tensor_scope_end(scope);
    }
    gpu_event_destroy(start);
    gpu_event_destroy(stop);
    if (flush) gpu_free(flush);
    printf("%d kernel(s) failed validation\n", failures);
    return failures ? 1 : 0;
}
