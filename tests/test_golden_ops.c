// Golden tests of every op against PyTorch: forward outputs and input gradients from
// tests/golden/ops.safetensors, written by tests/ref/gen_op_goldens.py (see its docstring for the
// layout; regenerate with `/usr/bin/python3 tests/ref/gen_op_goldens.py`, needs python3-torch).
//
// Data-driven: every case in the file (a metadata key "<case>" -> {"op": ..., params}) is one test.
// For each case the test builds the inputs "<case>/inK", runs the op named by "op" from the table
// below, compares the output with "<case>/out", then backpropagates "<case>/gout" and compares
// each input's .grad with "<case>/ginK" (an input requires gradients exactly when ginK exists).
// Drift guards: an unknown op fails its case, a tensor of a case that the test did not read fails
// it, a tensor belonging to no case fails, and an op of the table with no case fails.
//
// Each case runs twice: with contiguous inputs, and with every input and upstream gradient as a
// strided (non-contiguous) view whose gaps are poisoned (NaN for floats, an out-of-range index for
// i64, 0xAA for u8), so that an op reading its inputs with the wrong strides shows.
// Each case runs in a child process, so an op that aborts (tensor_fatal, a crash) fails only its
// own case. Environment: TAILOR_ROOT (repository root; default: the current directory, which is
// where the Makefile runs tests), TAILOR_GOLDEN_CASE=substring (run only matching cases),
// TAILOR_GOLDEN_NOFORK=1 (run in-process, for a debugger), TEST_VERBOSE=1 (list passing cases),
// TAILOR_GOLDEN_ERRORS=1 (print every comparison's largest difference and how much of its
// tolerance it uses).
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/json.h"
#include "engine/ops.h"
#include "engine/safetensors.h"
#include "tests/check.h"

TEST_MAIN_COUNTERS;

#define MAX_INPUTS 8
#define MAX_OUTPUTS 8

// ---------------------------------------------------------------- tolerances
// An element passes when |actual - expected| <= atol + rtol * |expected| (numpy.allclose).
typedef struct {
    double atol, rtol;
} Tolerance;

// Pure data movement (copies, selections, sign flips, max/min picks): the same f32 bits as torch.
static const Tolerance EXACT = {0, 0};
// One arithmetic expression per element (libm / our polynomial vs torch's vectorised Sleef or
// std:: kernels, a*(1/b) vs a/b, double vs float scalar products): a few ulp. rtol 1e-5 is ~80 ulp
// of f32, atol 1e-6 covers results that cancel to ~0; also for gradients that sum a handful of
// routed values (repeated gather/embedding indices, broadcast reductions, nearest upsampling).
static const Tolerance ELEMENTWISE = {1e-6, 1e-5};
// Short reductions (up to ~100 terms: sums, softmax, norms, pooling, losses, small attention):
// torch sums in a different order (vectorised lanes, pairwise blocks); the rounding error grows
// like sqrt(n) * eps * sum|terms|, e.g. 1e-6 for n = 100 terms of size 1.
static const Tolerance REDUCTION = {1e-5, 1e-4};
// Long dot products (matmul/linear/conv with K in the hundreds, layer_norm over D = 384): the
// same argument with K = 300 terms of size ~1, sums of size ~17, plus blocked GEMM orders on both
// sides (torch's MKL/OpenBLAS/oneDNN vs our kernels): 5e-5 absolute, 1e-4 relative.
static const Tolerance LONG_REDUCTION = {5e-5, 1e-4};

// ---------------------------------------------------------------- one case
typedef struct {
    const char *name;
    const char *op;
    bool strided;  // the pass with strided, poisoned inputs
    const JsonValue *params;
    Tensor *in[MAX_INPUTS];  // NULL where the golden file has no "<case>/inK"
    int n_in;                // highest present index + 1
    Tensor *out[MAX_OUTPUTS];
    int n_out;
    bool bad;  // a parameter or input was missing or malformed (already reported)
} Case;

static const SafetensorsFile *golden;
// Golden tensors read by the running case (so that unread ones can be reported).
static const SafetensorsEntry *used[64];
static int n_used;

static const SafetensorsEntry *golden_find(const char *case_name, const char *suffix) {
    char name[512];
    snprintf(name, sizeof name, "%s/%s", case_name, suffix);
    const SafetensorsEntry *e = safetensors_find(golden, name);
    if (e && n_used < (int)(sizeof used / sizeof used[0])) used[n_used++] = e;
    return e;
}

static void case_fail(Case *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void case_fail(Case *c, const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    printf("  %s (%s%s): ", c->name, c->op, c->strided ? ", strided inputs" : "");
    vprintf(fmt, args);
    printf("\n");
    va_end(args);
    test_checks_failed_in_current++;
    c->bad = true;
}

static Shape entry_shape(const SafetensorsEntry *e) {
    Shape s = {.ndim = e->ndim};
    for (int d = 0; d < e->ndim; d++) s.dims[d] = e->shape[d];
    return s;
}

static Tensor *entry_tensor(const SafetensorsEntry *e) {
    return tensor_from_data(e->dtype, entry_shape(e), e->data);  // memcpy: alignment does not matter
}

// The same values as x in a view with every element 2 apart: the gaps hold a poison value.
static Tensor *strided_copy(Tensor *x) {
    if (x->ndim == 0) return x;
    int64_t n = tensor_numel(x);
    Tensor *buffer = tensor_empty(x->dtype, SHAPE(2 * n));
    tensor_fill_raw(buffer, dtype_is_float(x->dtype) ? NAN : x->dtype == DTYPE_U8 ? 0xAA : 1e15);
    int64_t stride[TENSOR_MAX_DIMS];
    for (int d = x->ndim - 1, s = 2; d >= 0; d--) {
        stride[d] = s;
        s *= (int)x->shape[d];
    }
    Tensor *view = tensor_view_raw(buffer, x->ndim, x->shape, stride, 0);
    tensor_copy_raw(view, x);
    return view;
}

static Tensor *input_tensor(const Case *c, const SafetensorsEntry *e) {
    return c->strided ? strided_copy(entry_tensor(e)) : entry_tensor(e);
}

static double entry_get(const SafetensorsEntry *e, int64_t i) {
    // dtype_load reads through the element type; copy first in case the data is unaligned.
    unsigned char bytes[8];
    size_t size = dtype_size(e->dtype);
    memcpy(bytes, (const unsigned char *)e->data + (size_t)i * size, size);
    return dtype_load(bytes, e->dtype, 0);
}

static void multi_index_string(Shape shape, int64_t flat, char *buf, size_t size) {
    int64_t idx[TENSOR_MAX_DIMS];
    for (int d = shape.ndim - 1; d >= 0; d--) {
        idx[d] = shape.dims[d] ? flat % shape.dims[d] : 0;
        flat = shape.dims[d] ? flat / shape.dims[d] : 0;
    }
    size_t n = (size_t)snprintf(buf, size, "[");
    for (int d = 0; d < shape.ndim && n < size; d++)
        n += (size_t)snprintf(buf + n, size - n, d ? ", %lld" : "%lld", (long long)idx[d]);
    if (n < size) snprintf(buf + n, size - n, "]");
}

// Compares a computed tensor with a golden one; on failure prints the worst element.
static void compare(Case *c, const char *what, const Tensor *actual, const SafetensorsEntry *expected,
                    Tolerance tol) {
    char a_shape[96], e_shape[96];
    if (!actual) {
        case_fail(c, "%s: no tensor (expected %s)", what, shape_string(entry_shape(expected), e_shape, sizeof e_shape));
        return;
    }
    if (!shape_equal(tensor_shape(actual), entry_shape(expected))) {
        case_fail(c, "%s: shape %s, expected %s", what, tensor_shape_string(actual, a_shape, sizeof a_shape),
                  shape_string(entry_shape(expected), e_shape, sizeof e_shape));
        return;
    }
    bool integer = !dtype_is_float(expected->dtype);
    if (integer != !dtype_is_float(actual->dtype)) {
        case_fail(c, "%s: dtype %s, expected %s", what, dtype_name(actual->dtype), dtype_name(expected->dtype));
        return;
    }
    int64_t n = tensor_numel(actual), bad = 0, worst = -1;
    double worst_excess = 0, max_diff = 0, max_ratio = 0;
    for (int64_t i = 0; i < n; i++) {
        double a = tensor_get(actual, i), e = entry_get(expected, i);
        double allowed = integer ? 0 : tol.atol + tol.rtol * fabs(e);
        double diff = fabs(a - e);
        if (diff > max_diff) max_diff = diff;
        if (diff > 0 && diff / (allowed > 0 ? allowed : 1e-300) > max_ratio) max_ratio = diff / (allowed > 0 ? allowed : 1e-300);
        if (diff <= allowed) continue;  // NaN fails here
        bad++;
        double excess = isnan(diff) ? INFINITY : diff - allowed;
        if (worst < 0 || excess > worst_excess) {
            worst = i;
            worst_excess = excess;
        }
    }
    if (getenv("TAILOR_GOLDEN_ERRORS"))  // how much of each tolerance the comparisons use
        printf("  error %-40s %-6s max |diff| %.3g, %.3g of the allowed\n", c->name, what, max_diff, max_ratio);
    if (bad) {
        char where[128];
        multi_index_string(tensor_shape(actual), worst, where, sizeof where);
        double a = tensor_get(actual, worst), e = entry_get(expected, worst);
        case_fail(c, "%s: %lld of %lld elements differ; worst at %s: %.9g, expected %.9g (|diff| %.3g, allowed %.3g)",
                  what, (long long)bad, (long long)n, where, a, e, fabs(a - e),
                  integer ? 0.0 : tol.atol + tol.rtol * fabs(e));
    }
}

// ---------------------------------------------------------------- parameters
static const JsonValue *param(Case *c, const char *key) {
    const JsonValue *v = json_get(c->params, key);
    if (!v) case_fail(c, "parameter '%s' is missing", key);
    return v;
}

static int64_t param_int(Case *c, const char *key) {
    int64_t value = 0;
    const JsonValue *v = param(c, key);
    if (v && json_int64(v, &value) != 0) case_fail(c, "parameter '%s' must be an integer", key);
    return value;
}

static double param_double(Case *c, const char *key) {
    double value = 0;
    const JsonValue *v = param(c, key);
    if (v && json_double(v, &value) != 0) case_fail(c, "parameter '%s' must be a number", key);
    return value;
}

// A number, or `if_null` for JSON null (no bound, default scale).
static double param_double_or(Case *c, const char *key, double if_null) {
    const JsonValue *v = param(c, key);
    if (v && json_type(v) == JSON_NULL) return if_null;
    return param_double(c, key);
}

static bool param_bool(Case *c, const char *key) {
    int value = 0;
    const JsonValue *v = param(c, key);
    if (v && json_bool(v, &value) != 0) case_fail(c, "parameter '%s' must be true or false", key);
    return value != 0;
}

// An integer (both sides) or [h, w].
static void param_pair(Case *c, const char *key, int *h, int *w) {
    const JsonValue *v = param(c, key);
    int64_t a = 0, b = 0;
    if (!v) return;
    if (json_type(v) == JSON_ARRAY && json_length(v) == 2 && json_int64(json_at(v, 0), &a) == 0 &&
        json_int64(json_at(v, 1), &b) == 0) {
        *h = (int)a, *w = (int)b;
    } else if (json_int64(v, &a) == 0) {
        *h = *w = (int)a;
    } else {
        case_fail(c, "parameter '%s' must be an integer or [h, w]", key);
    }
}

// A list of integers; returns the count.
static int param_int_list(Case *c, const char *key, int64_t *out, int capacity) {
    const JsonValue *v = param(c, key);
    if (!v) return 0;
    if (json_type(v) != JSON_ARRAY || (int)json_length(v) > capacity) {
        case_fail(c, "parameter '%s' must be a list of at most %d integers", key, capacity);
        return 0;
    }
    for (size_t i = 0; i < json_length(v); i++)
        if (json_int64(json_at(v, i), &out[i]) != 0) {
            case_fail(c, "parameter '%s' must be a list of integers", key);
            return 0;
        }
    return (int)json_length(v);
}

static int param_dims(Case *c, const char *key, int *dims) {
    int64_t values[TENSOR_MAX_DIMS];
    int n = param_int_list(c, key, values, TENSOR_MAX_DIMS);
    for (int i = 0; i < n; i++) dims[i] = (int)values[i];
    return n;
}

static Reduction param_reduction(Case *c) {
    const JsonValue *v = param(c, "reduction");
    const char *s = json_string(v);
    if (s && !strcmp(s, "mean")) return REDUCTION_MEAN;
    if (s && !strcmp(s, "sum")) return REDUCTION_SUM;
    if (s && !strcmp(s, "none")) return REDUCTION_NONE;
    if (s && !strcmp(s, "batchmean")) return REDUCTION_BATCHMEAN;
    if (v) case_fail(c, "parameter 'reduction' must be \"mean\", \"sum\", \"none\" or \"batchmean\"");
    return REDUCTION_MEAN;
}

// ---------------------------------------------------------------- the ops
#define IN(i) (c->in[i])
#define OUT(expr) (c->out[0] = (expr))

static void run_add(Case *c) { OUT(op_add(IN(0), IN(1))); }
static void run_sub(Case *c) { OUT(op_sub(IN(0), IN(1))); }
static void run_mul(Case *c) { OUT(op_mul(IN(0), IN(1))); }
static void run_div(Case *c) { OUT(op_div(IN(0), IN(1))); }
static void run_add_scalar(Case *c) { OUT(op_add_scalar(IN(0), param_double(c, "scalar"))); }
static void run_mul_scalar(Case *c) { OUT(op_mul_scalar(IN(0), param_double(c, "scalar"))); }
static void run_rsub_scalar(Case *c) { OUT(op_rsub_scalar(IN(0), param_double(c, "scalar"))); }
static void run_neg(Case *c) { OUT(op_neg(IN(0))); }
static void run_pow_scalar(Case *c) { OUT(op_pow_scalar(IN(0), param_double(c, "exponent"))); }
static void run_exp(Case *c) { OUT(op_exp(IN(0))); }
static void run_log(Case *c) { OUT(op_log(IN(0))); }
static void run_sqrt(Case *c) { OUT(op_sqrt(IN(0))); }
static void run_rsqrt(Case *c) { OUT(op_rsqrt(IN(0))); }
static void run_abs(Case *c) { OUT(op_abs(IN(0))); }
static void run_clamp(Case *c) {
    double low = param_double_or(c, "low", -INFINITY), high = param_double_or(c, "high", INFINITY);
    if (!c->bad) OUT(op_clamp(IN(0), low, high));
}
static void run_sigmoid(Case *c) { OUT(op_sigmoid(IN(0))); }
static void run_tanh(Case *c) { OUT(op_tanh(IN(0))); }
static void run_relu(Case *c) { OUT(op_relu(IN(0))); }
static void run_leaky_relu(Case *c) { OUT(op_leaky_relu(IN(0), param_double(c, "negative_slope"))); }
static void run_gelu(Case *c) { OUT(op_gelu(IN(0))); }
static void run_gelu_tanh(Case *c) { OUT(op_gelu_tanh(IN(0))); }
static void run_quick_gelu(Case *c) { OUT(op_quick_gelu(IN(0))); }
static void run_silu(Case *c) { OUT(op_silu(IN(0))); }
static void run_grad_reverse(Case *c) { OUT(op_grad_reverse(IN(0), param_double(c, "lambda"))); }
static void run_where(Case *c) { OUT(op_where(IN(0), IN(1), IN(2))); }
static void run_masked_fill(Case *c) { OUT(op_masked_fill(IN(0), IN(1), param_double(c, "value"))); }

static void run_sum(Case *c) {
    int dims[TENSOR_MAX_DIMS], n = param_dims(c, "dims", dims);
    bool keepdim = param_bool(c, "keepdim");
    if (!c->bad) OUT(op_sum(IN(0), dims, n, keepdim));
}
static void run_mean(Case *c) {
    int dims[TENSOR_MAX_DIMS], n = param_dims(c, "dims", dims);
    bool keepdim = param_bool(c, "keepdim");
    if (!c->bad) OUT(op_mean(IN(0), dims, n, keepdim));
}
static void run_var(Case *c) {
    int dims[TENSOR_MAX_DIMS], n = param_dims(c, "dims", dims);
    int correction = (int)param_int(c, "correction");
    bool keepdim = param_bool(c, "keepdim");
    if (!c->bad) OUT(op_var(IN(0), dims, n, correction, keepdim));
}
static void run_max(Case *c) {
    int dim = (int)param_int(c, "dim");
    bool keepdim = param_bool(c, "keepdim");
    if (!c->bad) OUT(op_max(IN(0), dim, keepdim));
}
static void run_argmax(Case *c) {
    int dim = (int)param_int(c, "dim");
    bool keepdim = param_bool(c, "keepdim");
    if (!c->bad) OUT(op_argmax(IN(0), dim, keepdim));
}
static void run_logsumexp(Case *c) {
    int dim = (int)param_int(c, "dim");
    bool keepdim = param_bool(c, "keepdim");
    if (!c->bad) OUT(op_logsumexp(IN(0), dim, keepdim));
}
static void run_softmax(Case *c) {
    int dim = (int)param_int(c, "dim");
    if (!c->bad) OUT(op_softmax(IN(0), dim));
}
static void run_log_softmax(Case *c) {
    int dim = (int)param_int(c, "dim");
    if (!c->bad) OUT(op_log_softmax(IN(0), dim));
}

static void run_matmul(Case *c) { OUT(op_matmul(IN(0), IN(1))); }
static void run_linear(Case *c) { OUT(op_linear(IN(0), IN(1), IN(2))); }

static void run_conv2d(Case *c) {
    Conv2dParams p = conv2d_params(1, 0, 1, 1);
    param_pair(c, "stride", &p.stride_h, &p.stride_w);
    param_pair(c, "padding", &p.pad_h, &p.pad_w);
    param_pair(c, "dilation", &p.dilation_h, &p.dilation_w);
    p.groups = (int)param_int(c, "groups");
    if (!c->bad) OUT(op_conv2d(IN(0), IN(1), IN(2), p));
}
static void run_max_pool2d(Case *c) {
    int kernel = (int)param_int(c, "kernel"), stride = (int)param_int(c, "stride");
    int padding = (int)param_int(c, "padding");
    if (!c->bad) OUT(op_max_pool2d(IN(0), kernel, stride, padding));
}
static void run_avg_pool2d(Case *c) {
    int kernel = (int)param_int(c, "kernel"), stride = (int)param_int(c, "stride");
    int padding = (int)param_int(c, "padding");
    bool include = param_bool(c, "count_include_pad");
    if (!c->bad) OUT(op_avg_pool2d(IN(0), kernel, stride, padding, include));
}
static void run_adaptive_avg_pool2d(Case *c) {
    int h = (int)param_int(c, "out_h"), w = (int)param_int(c, "out_w");
    if (!c->bad) OUT(op_adaptive_avg_pool2d(IN(0), h, w));
}
static void run_upsample_nearest2d(Case *c) {
    int h = (int)param_int(c, "out_h"), w = (int)param_int(c, "out_w");
    if (!c->bad) OUT(op_upsample_nearest2d(IN(0), h, w));
}

static void run_batch_norm(Case *c) {
    bool training = param_bool(c, "training");
    double momentum = param_double(c, "momentum"), eps = param_double(c, "eps");
    if (!c->bad) OUT(op_batch_norm(IN(0), IN(1), IN(2), IN(3), IN(4), training, momentum, eps));
}
static void run_group_norm(Case *c) {
    int groups = (int)param_int(c, "groups");
    double eps = param_double(c, "eps");
    if (!c->bad) OUT(op_group_norm(IN(0), groups, IN(1), IN(2), eps));
}
static void run_layer_norm(Case *c) {
    double eps = param_double(c, "eps");
    if (!c->bad) OUT(op_layer_norm(IN(0), IN(1), IN(2), eps));
}

static void run_concat(Case *c) {
    int dim = (int)param_int(c, "dim");
    if (!c->bad) OUT(op_concat(c->in, c->n_in, dim));
}
static void run_stack(Case *c) {
    int dim = (int)param_int(c, "dim");
    if (!c->bad) OUT(op_stack(c->in, c->n_in, dim));
}
static void run_split(Case *c) {
    int64_t sizes[MAX_OUTPUTS];
    int n = param_int_list(c, "sizes", sizes, MAX_OUTPUTS);
    int dim = (int)param_int(c, "dim");
    if (c->bad) return;
    op_split(IN(0), sizes, n, dim, c->out);
    c->n_out = n;
}
static void run_gather(Case *c) {
    int dim = (int)param_int(c, "dim");
    if (!c->bad) OUT(op_gather(IN(0), dim, IN(1)));
}
static void run_index_select(Case *c) {
    int dim = (int)param_int(c, "dim");
    if (!c->bad) OUT(op_index_select(IN(0), dim, IN(1)));
}
static void run_embedding(Case *c) { OUT(op_embedding(IN(0), IN(1))); }

static void run_cross_entropy(Case *c) {
    CrossEntropyOptions o = cross_entropy_defaults();
    o.reduction = param_reduction(c);
    o.label_smoothing = param_double(c, "label_smoothing");
    const JsonValue *ignore = param(c, "ignore_index");
    if (ignore && json_type(ignore) != JSON_NULL) o.ignore_index = param_int(c, "ignore_index");
    else o.ignore_index = INT64_MIN;
    o.class_weight = IN(2);
    o.sample_weight = IN(3);
    if (!c->bad) OUT(op_cross_entropy(IN(0), IN(1), o));
}
static void run_cross_entropy_soft(Case *c) {
    Reduction r = param_reduction(c);
    if (!c->bad) OUT(op_cross_entropy_soft(IN(0), IN(1), r));
}
static void run_bce_with_logits(Case *c) {
    Reduction r = param_reduction(c);
    if (!c->bad) OUT(op_bce_with_logits(IN(0), IN(1), IN(2), r));
}
static void run_mse_loss(Case *c) {
    Reduction r = param_reduction(c);
    if (!c->bad) OUT(op_mse_loss(IN(0), IN(1), r));
}
static void run_l1_loss(Case *c) {
    Reduction r = param_reduction(c);
    if (!c->bad) OUT(op_l1_loss(IN(0), IN(1), r));
}
static void run_kl_div(Case *c) {
    Reduction r = param_reduction(c);
    bool log_target = param_bool(c, "log_target");
    if (!c->bad) OUT(op_kl_div(IN(0), IN(1), r, log_target));
}
static void run_entropy(Case *c) {
    Reduction r = param_reduction(c);
    if (!c->bad) OUT(op_entropy(IN(0), r));
}
static void run_sdpa(Case *c) {
    bool causal = param_bool(c, "causal");
    double scale = param_double_or(c, "scale", 0.0);  // null: the default 1/sqrt(D)
    if (!c->bad) OUT(op_scaled_dot_product_attention(IN(0), IN(1), IN(2), IN(3), causal, scale));
}

// required / optional: bit K set = argument K must / may be present. VARIADIC: in0..in(n-1), n >= 1.
#define VARIADIC 0xff
typedef struct {
    const char *op;
    void (*run)(Case *c);
    unsigned required, optional;
    Tolerance forward, backward;  // see the definitions above for the reasons
    int cases_seen;
} OpEntry;

static OpEntry OPS[] = {
    // Elementwise arithmetic and activations: one expression per element. Gradients of broadcast
    // operands sum over the broadcast dims (a handful of terms).
    {"add", run_add, 0x3, 0, ELEMENTWISE, ELEMENTWISE, 0},
    {"sub", run_sub, 0x3, 0, ELEMENTWISE, ELEMENTWISE, 0},
    {"mul", run_mul, 0x3, 0, ELEMENTWISE, ELEMENTWISE, 0},
    {"div", run_div, 0x3, 0, ELEMENTWISE, ELEMENTWISE, 0},
    {"add_scalar", run_add_scalar, 0x1, 0, ELEMENTWISE, EXACT, 0},
    {"mul_scalar", run_mul_scalar, 0x1, 0, ELEMENTWISE, ELEMENTWISE, 0},
    {"rsub_scalar", run_rsub_scalar, 0x1, 0, ELEMENTWISE, EXACT, 0},
    {"neg", run_neg, 0x1, 0, EXACT, EXACT, 0},
    {"pow_scalar", run_pow_scalar, 0x1, 0, ELEMENTWISE, ELEMENTWISE, 0},
    {"exp", run_exp, 0x1, 0, ELEMENTWISE, ELEMENTWISE, 0},
    {"log", run_log, 0x1, 0, ELEMENTWISE, ELEMENTWISE, 0},
    {"sqrt", run_sqrt, 0x1, 0, ELEMENTWISE, ELEMENTWISE, 0},
    {"rsqrt", run_rsqrt, 0x1, 0, ELEMENTWISE, ELEMENTWISE, 0},
    {"abs", run_abs, 0x1, 0, EXACT, EXACT, 0},
    {"clamp", run_clamp, 0x1, 0, EXACT, EXACT, 0},
    {"sigmoid", run_sigmoid, 0x1, 0, ELEMENTWISE, ELEMENTWISE, 0},
    {"tanh", run_tanh, 0x1, 0, ELEMENTWISE, ELEMENTWISE, 0},
    {"relu", run_relu, 0x1, 0, EXACT, EXACT, 0},
    {"leaky_relu", run_leaky_relu, 0x1, 0, ELEMENTWISE, ELEMENTWISE, 0},
    {"gelu", run_gelu, 0x1, 0, ELEMENTWISE, ELEMENTWISE, 0},
    {"gelu_tanh", run_gelu_tanh, 0x1, 0, ELEMENTWISE, ELEMENTWISE, 0},
    {"quick_gelu", run_quick_gelu, 0x1, 0, ELEMENTWISE, ELEMENTWISE, 0},
    {"silu", run_silu, 0x1, 0, ELEMENTWISE, ELEMENTWISE, 0},
    {"grad_reverse", run_grad_reverse, 0x1, 0, EXACT, ELEMENTWISE, 0},
    {"where", run_where, 0x7, 0, EXACT, ELEMENTWISE, 0},
    {"masked_fill", run_masked_fill, 0x3, 0, EXACT, EXACT, 0},
    // Reductions: sums of up to ~100 terms; max/argmax pick an element (exact), max's gradient is
    // routed to the first maximum (exact).
    {"sum", run_sum, 0x1, 0, REDUCTION, EXACT, 0},
    {"mean", run_mean, 0x1, 0, REDUCTION, ELEMENTWISE, 0},
    {"var", run_var, 0x1, 0, REDUCTION, REDUCTION, 0},
    {"max", run_max, 0x1, 0, EXACT, EXACT, 0},
    {"argmax", run_argmax, 0x1, 0, EXACT, EXACT, 0},
    {"logsumexp", run_logsumexp, 0x1, 0, REDUCTION, REDUCTION, 0},
    {"softmax", run_softmax, 0x1, 0, REDUCTION, REDUCTION, 0},
    {"log_softmax", run_log_softmax, 0x1, 0, REDUCTION, REDUCTION, 0},
    // Dot products with K up to 300 (matmul_long_k, linear_long_k, conv2d_long_k: K = 288).
    {"matmul", run_matmul, 0x3, 0, LONG_REDUCTION, LONG_REDUCTION, 0},
    {"linear", run_linear, 0x3, 0x4, LONG_REDUCTION, LONG_REDUCTION, 0},
    {"conv2d", run_conv2d, 0x3, 0x4, LONG_REDUCTION, LONG_REDUCTION, 0},
    // Pooling: max picks (exact forward; overlapping windows add a few routed gradients), averages
    // of up to 35 terms (10x9 -> 4x4 adaptive windows).
    {"max_pool2d", run_max_pool2d, 0x1, 0, EXACT, ELEMENTWISE, 0},
    {"avg_pool2d", run_avg_pool2d, 0x1, 0, REDUCTION, REDUCTION, 0},
    {"adaptive_avg_pool2d", run_adaptive_avg_pool2d, 0x1, 0, REDUCTION, REDUCTION, 0},
    {"upsample_nearest2d", run_upsample_nearest2d, 0x1, 0, EXACT, ELEMENTWISE, 0},
    // Normalisation: mean/variance over up to 40 elements per channel/group (384 for
    // layer_norm_long_d, see LONG_REDUCTION), then a rsqrt; backward adds two more reductions.
    {"batch_norm", run_batch_norm, 0x1, 0x1e, REDUCTION, REDUCTION, 0},
    {"group_norm", run_group_norm, 0x1, 0x6, REDUCTION, REDUCTION, 0},
    {"layer_norm", run_layer_norm, 0x1, 0x6, LONG_REDUCTION, LONG_REDUCTION, 0},
    // Indexing and joining: copies (exact); backward of repeated indices adds a few values.
    {"concat", run_concat, VARIADIC, 0, EXACT, EXACT, 0},
    {"stack", run_stack, VARIADIC, 0, EXACT, EXACT, 0},
    {"split", run_split, 0x1, 0, EXACT, EXACT, 0},
    {"gather", run_gather, 0x3, 0, EXACT, ELEMENTWISE, 0},
    {"index_select", run_index_select, 0x3, 0, EXACT, ELEMENTWISE, 0},
    {"embedding", run_embedding, 0x3, 0, EXACT, ELEMENTWISE, 0},
    // Losses: log-softmax / log1p(exp) per element and a mean or sum over up to 42 elements.
    {"cross_entropy", run_cross_entropy, 0x3, 0xc, REDUCTION, REDUCTION, 0},
    {"cross_entropy_soft", run_cross_entropy_soft, 0x3, 0, REDUCTION, REDUCTION, 0},
    {"bce_with_logits", run_bce_with_logits, 0x3, 0x4, REDUCTION, REDUCTION, 0},
    {"mse_loss", run_mse_loss, 0x3, 0, REDUCTION, REDUCTION, 0},
    {"l1_loss", run_l1_loss, 0x3, 0, REDUCTION, REDUCTION, 0},
    {"kl_div", run_kl_div, 0x3, 0, REDUCTION, REDUCTION, 0},
    {"entropy", run_entropy, 0x1, 0, REDUCTION, REDUCTION, 0},
    // Attention: two small matmuls (D <= 8, Tk <= 7) around a softmax.
    {"scaled_dot_product_attention", run_sdpa, 0x7, 0x8, REDUCTION, REDUCTION, 0},
};
#define N_OPS ((int)(sizeof OPS / sizeof OPS[0]))

static OpEntry *find_op(const char *name) {
    for (int i = 0; name && i < N_OPS; i++)
        if (!strcmp(OPS[i].op, name)) return &OPS[i];
    return NULL;
}

// Tensors of a case besides inK / out / gout / ginK, compared after the forward pass with the
// input they alias (batch_norm updates its running statistics in place).
static const struct {
    const char *suffix;
    int input;
} AFTER_CALL[] = {{"running_mean_after", 3}, {"running_var_after", 4}};

// ---------------------------------------------------------------- running a case
static void run_case(const char *name, const char *json_text, bool strided) {
    TensorScope scope = tensor_scope_begin();
    Case c = {.name = name, .op = "?", .strided = strided};
    const SafetensorsEntry *expected_out[MAX_OUTPUTS] = {0}, *gout[MAX_OUTPUTS] = {0};
    bool multi = false;
    char suffix[32];
    n_used = 0;
    char error[256];
    JsonValue *params = json_parse(json_text, strlen(json_text), error, sizeof error);
    if (!params || json_type(params) != JSON_OBJECT) {
        case_fail(&c, "metadata is not a JSON object: %s", params ? "wrong type" : error);
        json_free(params);
        tensor_scope_end(scope);
        return;
    }
    c.params = params;
    c.op = json_string(json_get(params, "op")) ? json_string(json_get(params, "op")) : "?";
    OpEntry *op = find_op(c.op);
    if (!op) {
        case_fail(&c, "unknown op \"%s\": add it to OPS[] in tests/test_golden_ops.c", c.op);
        goto done;
    }

    // Inputs: present ones must be allowed, required ones present. ginK marks requires_grad.
    for (int k = 0; k < MAX_INPUTS; k++) {
        snprintf(suffix, sizeof suffix, "in%d", k);
        const SafetensorsEntry *e = golden_find(name, suffix);
        if (!e) continue;
        c.in[k] = input_tensor(&c, e);
        c.n_in = k + 1;
        char gin_name[512];
        snprintf(gin_name, sizeof gin_name, "%s/gin%d", name, k);
        if (safetensors_find(golden, gin_name)) {
            if (!dtype_is_float(e->dtype)) case_fail(&c, "gin%d given for a non-float input", k);
            else tensor_requires_grad(c.in[k]);
        }
    }
    for (int k = 0; k < MAX_INPUTS; k++) {
        bool present = c.in[k] != NULL;
        bool required = op->required == VARIADIC ? k < c.n_in || k == 0 : (op->required >> k) & 1;
        bool allowed = op->required == VARIADIC ? true : ((op->required | op->optional) >> k) & 1;
        if (required && !present) case_fail(&c, "input in%d is missing", k);
        if (present && !allowed) case_fail(&c, "input in%d is not an argument of %s", k, op->op);
    }
    if (c.bad) goto done;

    op->run(&c);
    if (c.bad) goto done;
    if (c.n_out == 0 && c.out[0]) c.n_out = 1;
    for (int k = 0; k < c.n_out || k == 0; k++)
        if (!c.out[k]) {
            case_fail(&c, "the op returned no tensor for output %d", k);
            goto done;
        }

    // Forward outputs: "out" for one, "out0".. for several.
    multi = c.n_out > 1 || golden_find(name, "out0");
    if (!multi) {
        expected_out[0] = golden_find(name, "out");
        gout[0] = golden_find(name, "gout");
    } else {
        for (int k = 0; k < MAX_OUTPUTS; k++) {
            snprintf(suffix, sizeof suffix, "out%d", k);
            expected_out[k] = golden_find(name, suffix);
            snprintf(suffix, sizeof suffix, "gout%d", k);
            gout[k] = golden_find(name, suffix);
            if ((expected_out[k] != NULL) != (k < c.n_out))
                case_fail(&c, "op gave %d outputs, the golden file has %s", c.n_out,
                          expected_out[k] ? "more" : "fewer");
        }
    }
    if (c.bad) goto done;
    if (!expected_out[0]) {
        case_fail(&c, "the golden file has no \"%s/out\"", name);
        goto done;
    }
    for (int k = 0; k < c.n_out; k++) {
        if (multi) snprintf(suffix, sizeof suffix, "out%d", k);
        else snprintf(suffix, sizeof suffix, "out");
        compare(&c, suffix, c.out[k], expected_out[k], op->forward);
    }
    for (size_t a = 0; a < sizeof AFTER_CALL / sizeof AFTER_CALL[0]; a++) {
        const SafetensorsEntry *e = golden_find(name, AFTER_CALL[a].suffix);
        if (e) compare(&c, AFTER_CALL[a].suffix, c.in[AFTER_CALL[a].input], e, REDUCTION);
    }
    if (c.bad) goto done;

    // Backward: d(sum_k out_k * gout_k) / d(inK).
    bool any_gin = false;
    for (int k = 0; k < c.n_in; k++) any_gin = any_gin || (c.in[k] && c.in[k]->requires_grad);
    if (gout[0] && !any_gin) {
        case_fail(&c, "the golden file has an upstream gradient but no input gradient (ginK)");
        goto done;
    }
    if (gout[0]) {
        for (int k = 0; k < c.n_out; k++)
            if (!c.out[k]->requires_grad) {
                case_fail(&c, "output %d does not require gradients (no autograd node recorded)", k);
                goto done;
            }
        if (!multi) {
            tensor_backward(c.out[0], input_tensor(&c, gout[0]));
        } else {
            Tensor *root = NULL;
            for (int k = 0; k < c.n_out; k++) {
                Tensor *term = op_sum_all(op_mul(c.out[k], input_tensor(&c, gout[k])));
                root = root ? op_add(root, term) : term;
            }
            tensor_backward(root, NULL);
        }
        for (int k = 0; k < c.n_in; k++) {
            snprintf(suffix, sizeof suffix, "gin%d", k);
            const SafetensorsEntry *e = golden_find(name, suffix);
            if (!e) continue;
            if (!c.in[k]->grad) case_fail(&c, "%s: input %d received no gradient", suffix, k);
            else compare(&c, suffix, c.in[k]->grad, e, op->backward);
        }
    }

done:
    // Every tensor of this case must have been read: otherwise the generator wrote something the
    // test does not check (drift between the two).
    if (!c.bad) {
        size_t len = strlen(name);
        for (int i = 0; i < safetensors_count(golden); i++) {
            const SafetensorsEntry *e = safetensors_entry(golden, i);
            if (strncmp(e->name, name, len) || e->name[len] != '/') continue;
            bool seen = false;
            for (int u = 0; u < n_used && !seen; u++) seen = used[u] == e;
            if (!seen) case_fail(&c, "tensor \"%s\" is not checked by this test", e->name);
        }
    }
    json_free(params);
    tensor_scope_end(scope);
}

// Both passes; the strided one only when the contiguous one passed (one report per problem).
static void run_case_both(const char *name, const char *json_text) {
    run_case(name, json_text, false);
    if (!test_checks_failed_in_current) run_case(name, json_text, true);
}

// Runs one case as one test, in a child process unless TAILOR_GOLDEN_NOFORK is set.
static void run_case_test(const char *name, const char *json_text, bool fork_cases) {
    test_checks_failed_in_current = 0;
    if (fork_cases) {
        fflush(stdout);
        fflush(stderr);
        pid_t pid = fork();
        if (pid == 0) {
            run_case_both(name, json_text);
            fflush(stdout);
            fflush(stderr);
            _exit(test_checks_failed_in_current ? 1 : 0);
        }
        int status = 0;
        if (pid < 0 || waitpid(pid, &status, 0) != pid) {
            printf("  %s: fork/wait failed: %s\n", name, strerror(errno));
            test_checks_failed_in_current++;
        } else if (WIFEXITED(status) && WEXITSTATUS(status) == 1) {
            test_checks_failed_in_current++;  // the child printed its failures
        } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            printf("  %s: the case died (%s %d)\n", name, WIFSIGNALED(status) ? "signal" : "exit status",
                   WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
            test_checks_failed_in_current++;
        }
    } else {
        run_case_both(name, json_text);
    }
    if (test_checks_failed_in_current) {
        tests_failed++;
        printf("FAIL %s\n", name);
    } else {
        tests_passed++;
        if (getenv("TEST_VERBOSE")) printf("ok   %s\n", name);
    }
    fflush(stdout);
}

// ---------------------------------------------------------------- main
static bool case_selected(const char *name) {
    const char *filter = getenv("TAILOR_GOLDEN_CASE");
    return !filter || !*filter || strstr(name, filter);
}

int main(void) {
    char path[4096];
    const char *root = getenv("TAILOR_ROOT");
    snprintf(path, sizeof path, "%s%stests/golden/ops.safetensors", root && *root ? root : "",
             root && *root ? "/" : "");
    SafetensorsFile *file = NULL;
    char error[512];
    test_checks_failed_in_current = 0;
    if (safetensors_open(path, &file, error, sizeof error) != 0) {
        printf("  cannot read the golden file: %s (run from the repository root or set TAILOR_ROOT)\n", error);
        tests_failed++;
        printf("FAIL golden_file_opens\n");
        return test_summary();
    }
    golden = file;
    bool fork_cases = !getenv("TAILOR_GOLDEN_NOFORK");

    // The case list is the metadata; record which ops have cases.
    int n_cases = safetensors_metadata_count(file);
    for (int i = 0; i < n_cases; i++) {
        const char *json_text = safetensors_metadata_value(file, i);
        JsonValue *params = json_parse(json_text, strlen(json_text), error, sizeof error);
        OpEntry *op = find_op(json_string(json_get(params, "op")));
        if (op) op->cases_seen++;
        json_free(params);
    }
    for (int i = 0; i < n_cases; i++) {
        const char *name = safetensors_metadata_key(file, i);
        if (case_selected(name)) run_case_test(name, safetensors_metadata_value(file, i), fork_cases);
    }

    // Drift guards over the whole file.
    test_checks_failed_in_current = 0;
    CHECK_MSG(n_cases > 0, "%s has no cases", path);
    for (int i = 0; i < safetensors_count(file); i++) {
        const char *name = safetensors_entry(file, i)->name;
        const char *slash = strchr(name, '/');
        char case_name[512];
        snprintf(case_name, sizeof case_name, "%.*s", slash ? (int)(slash - name) : (int)strlen(name), name);
        CHECK_MSG(slash && safetensors_metadata(file, case_name), "tensor \"%s\" belongs to no case", name);
    }
    for (int i = 0; i < N_OPS; i++)
        CHECK_MSG(OPS[i].cases_seen > 0, "op \"%s\" has no case in %s", OPS[i].op, path);
    if (test_checks_failed_in_current) {
        tests_failed++;
        printf("FAIL golden_file_consistent\n");
    } else {
        tests_passed++;
    }
    safetensors_close(file);
    return test_summary();
}
