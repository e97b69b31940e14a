// Convolution, pooling, upsampling and normalisation ops: f64 gradient checks of every op (tiny,
// awkward shapes), forward and backward against naive double-precision reference loops (conv: many
// configurations, f32 and f64, with all threads and with one), PyTorch semantics pinned by
// hand-computed values (padding as -inf, count_include_pad, adaptive windows, 'nearest' indices,
// gradient to the first maximum, running-statistics update), and f32 against f64 for the rest.
#include <omp.h>

#include "engine/ops.h"
#include "tests/check.h"
#include "tests/gradcheck.h"

TEST_MAIN_COUNTERS;

// A tensor without gradient (running statistics).
static Tensor *constant(Shape shape, double scale, double shift) {
    Tensor *t = gradcheck_input(shape, scale, shift);
    t->requires_grad = false;
    return t;
}

static Conv2dParams conv_params_hw(int stride_h, int stride_w, int pad_h, int pad_w, int dilation_h, int dilation_w,
                                   int groups) {
    return (Conv2dParams){.stride_h = stride_h, .stride_w = stride_w, .pad_h = pad_h, .pad_w = pad_w,
                          .dilation_h = dilation_h, .dilation_w = dilation_w, .groups = groups};
}

// ---- convolution
GRAD_CASE(grad_conv2d_basic, "conv2d", op_conv2d(in[0], in[1], in[2], conv2d_params(1, 1, 1, 1)),
          X(SHAPE(2, 3, 5, 4)), X(SHAPE(4, 3, 3, 3)), X(SHAPE(4)))
GRAD_CASE(grad_conv2d_stride2_pad, "conv2d", op_conv2d(in[0], in[1], NULL, conv2d_params(2, 1, 1, 1)),
          X(SHAPE(2, 3, 5, 4)), X(SHAPE(2, 3, 3, 3)))
GRAD_CASE(grad_conv2d_dilation2, "conv2d", op_conv2d(in[0], in[1], in[2], conv2d_params(1, 2, 2, 1)),
          X(SHAPE(2, 2, 6, 5)), X(SHAPE(3, 2, 3, 3)), X(SHAPE(3)))
GRAD_CASE(grad_conv2d_asymmetric, "conv2d", op_conv2d(in[0], in[1], in[2], conv_params_hw(2, 1, 1, 0, 1, 2, 1)),
          X(SHAPE(2, 3, 6, 5)), X(SHAPE(2, 3, 3, 2)), X(SHAPE(2)))
GRAD_CASE(grad_conv2d_groups2, "conv2d", op_conv2d(in[0], in[1], in[2], conv2d_params(1, 1, 1, 2)),
          X(SHAPE(2, 4, 5, 4)), X(SHAPE(6, 2, 3, 3)), X(SHAPE(6)))
GRAD_CASE(grad_conv2d_depthwise, "conv2d", op_conv2d(in[0], in[1], in[2], conv2d_params(2, 1, 1, 3)),
          X(SHAPE(2, 3, 5, 4)), X(SHAPE(6, 1, 3, 3)), X(SHAPE(6)))
GRAD_CASE(grad_conv2d_1x1, "conv2d", op_conv2d(in[0], in[1], in[2], conv2d_params(1, 0, 1, 1)),
          X(SHAPE(1, 3, 4, 5)), X(SHAPE(5, 3, 1, 1)), X(SHAPE(5)))
GRAD_CASE(grad_conv2d_1x1_batch, "conv2d", op_conv2d(in[0], in[1], NULL, conv2d_params(1, 0, 1, 1)),
          X(SHAPE(3, 3, 4, 3)), X(SHAPE(2, 3, 1, 1)))
GRAD_CASE(grad_conv2d_1x1_stride2, "conv2d", op_conv2d(in[0], in[1], NULL, conv2d_params(2, 0, 1, 1)),
          X(SHAPE(2, 3, 5, 4)), X(SHAPE(4, 3, 1, 1)))

// ---- pooling and upsampling
GRAD_CASE(grad_max_pool_k3s2p1, "max_pool2d", op_max_pool2d(in[0], 3, 2, 1), X(SHAPE(2, 3, 5, 4)))
GRAD_CASE(grad_max_pool_overlap, "max_pool2d", op_max_pool2d(in[0], 2, 1, 0), X(SHAPE(2, 2, 4, 5)))
GRAD_CASE(grad_avg_pool_include_pad, "avg_pool2d", op_avg_pool2d(in[0], 3, 2, 1, true), X(SHAPE(2, 3, 5, 4)))
GRAD_CASE(grad_avg_pool_exclude_pad, "avg_pool2d", op_avg_pool2d(in[0], 3, 2, 1, false), X(SHAPE(2, 3, 5, 4)))
GRAD_CASE(grad_avg_pool_overlap_3d, "avg_pool2d", op_avg_pool2d(in[0], 2, 1, 1, false), X(SHAPE(3, 4, 3)))
GRAD_CASE(grad_adaptive_avg_pool, "adaptive_avg_pool2d", op_adaptive_avg_pool2d(in[0], 3, 4), X(SHAPE(2, 3, 5, 7)))
GRAD_CASE(grad_adaptive_avg_pool_global, "adaptive_avg_pool2d", op_adaptive_avg_pool2d(in[0], 1, 1), X(SHAPE(2, 3, 5, 4)))
GRAD_CASE(grad_upsample_nearest, "upsample_nearest2d", op_upsample_nearest2d(in[0], 7, 5), X(SHAPE(2, 2, 3, 4)))
GRAD_CASE(grad_upsample_nearest_2x, "upsample_nearest2d", op_upsample_nearest2d(in[0], 6, 8), X(SHAPE(2, 2, 3, 4)))

// ---- normalisation
GRAD_CASE(grad_batch_norm_train, "batch_norm",
          op_batch_norm(in[0], in[1], in[2], NULL, NULL, true, 0.1, 1e-5), X(SHAPE(4, 3, 2, 3)), X(SHAPE(3)),
          X(SHAPE(3)))
GRAD_CASE(grad_batch_norm_train_running, "batch_norm",
          op_batch_norm(in[0], in[1], in[2], in[3], in[4], true, 0.1, 1e-5), X(SHAPE(3, 2, 5)), X(SHAPE(2)),
          X(SHAPE(2)), constant(SHAPE(2), 1, 0), constant(SHAPE(2), 0.1, 1))
GRAD_CASE(grad_batch_norm_train_2d, "batch_norm", op_batch_norm(in[0], in[1], NULL, NULL, NULL, true, 0.1, 1e-5),
          X(SHAPE(5, 3)), X(SHAPE(3)))
GRAD_CASE(grad_batch_norm_no_affine, "batch_norm", op_batch_norm(in[0], NULL, NULL, NULL, NULL, true, 0.1, 1e-5),
          X(SHAPE(2, 3, 4)))
GRAD_CASE(grad_batch_norm_eval, "batch_norm",
          op_batch_norm(in[0], in[1], in[2], in[3], in[4], false, 0.1, 1e-5), X(SHAPE(3, 2, 2, 3)), X(SHAPE(2)),
          X(SHAPE(2)), constant(SHAPE(2), 1, 0), constant(SHAPE(2), 0.1, 1))
GRAD_CASE(grad_batch_norm_relu_train, "batch_norm_relu",
          op_batch_norm_relu(in[0], in[1], in[2], NULL, NULL, true, 0.1, 1e-5), X(SHAPE(4, 3, 2, 3)), X(SHAPE(3)),
          X(SHAPE(3)))
GRAD_CASE(grad_batch_norm_relu_train_running, "batch_norm_relu",
          op_batch_norm_relu(in[0], in[1], in[2], in[3], in[4], true, 0.1, 1e-5), X(SHAPE(3, 2, 5)), X(SHAPE(2)),
          X(SHAPE(2)), constant(SHAPE(2), 1, 0), constant(SHAPE(2), 0.1, 1))
GRAD_CASE(grad_batch_norm_relu_no_affine, "batch_norm_relu",
          op_batch_norm_relu(in[0], NULL, NULL, NULL, NULL, true, 0.1, 1e-5), X(SHAPE(2, 3, 4)))
GRAD_CASE(grad_batch_norm_relu_eval, "batch_norm_relu",
          op_batch_norm_relu(in[0], in[1], in[2], in[3], in[4], false, 0.1, 1e-5), X(SHAPE(3, 2, 2, 3)), X(SHAPE(2)),
          X(SHAPE(2)), constant(SHAPE(2), 1, 0), constant(SHAPE(2), 0.1, 1))
GRAD_CASE(grad_group_norm, "group_norm", op_group_norm(in[0], 3, in[1], in[2], 1e-5), X(SHAPE(2, 6, 3, 2)),
          X(SHAPE(6)), X(SHAPE(6)))
GRAD_CASE(grad_group_norm_one_group, "group_norm", op_group_norm(in[0], 1, in[1], NULL, 1e-5), X(SHAPE(2, 4, 5)),
          X(SHAPE(4)))
GRAD_CASE(grad_group_norm_per_channel, "group_norm", op_group_norm(in[0], 4, NULL, in[1], 1e-5),
          X(SHAPE(3, 4, 2, 2)), X(SHAPE(4)))
GRAD_CASE(grad_layer_norm, "layer_norm", op_layer_norm(in[0], in[1], in[2], 1e-5), X(SHAPE(3, 4, 5)), X(SHAPE(5)),
          X(SHAPE(5)))
GRAD_CASE(grad_layer_norm_no_affine, "layer_norm", op_layer_norm(in[0], NULL, NULL, 1e-5), X(SHAPE(4, 7)))

// ---------------------------------------------------------------- helpers

static Rng test_rng = {.seed = 99, .stream = 5, .offset = 0};

static double *random_doubles(int64_t n, double scale) {
    double *v = malloc((size_t)(n ? n : 1) * sizeof(double));
    rng_fill_normal_f64(&test_rng, v, n, 0.0, scale);
    return v;
}

// A leaf tensor of the given dtype holding `values`, requiring gradients.
static Tensor *leaf(DType dtype, Shape shape, const double *values) {
    Tensor *t = tensor_empty(dtype, shape);
    for (int64_t i = 0; i < tensor_numel(t); i++) tensor_set(t, i, values[i]);
    return tensor_requires_grad(t);
}

// max |t - ref| / max(1, max |ref|): an error relative to the size of the values.
static double relative_error(const Tensor *t, const double *ref, int64_t n) {
    if (tensor_numel(t) != n) return INFINITY;
    double worst = 0, scale = 1;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs(tensor_get(t, i) - ref[i]);
        if (!(e <= worst)) worst = e;  // NaN propagates
        if (fabs(ref[i]) > scale) scale = fabs(ref[i]);
    }
    return worst / scale;
}

// f32 results accumulate ~K roundings of 6e-8 relative to the largest term; f64 ~1e-16.
static double tolerance(DType dtype) { return dtype == DTYPE_F32 ? 3e-5 : 1e-12; }

// ---------------------------------------------------------------- conv against naive loops

typedef struct {
    int64_t B, C_in, H, W, C_out, KH, KW;
    Conv2dParams p;
    bool bias;
} ConvCase;

static int64_t conv_out(int64_t size, int pad, int dilation, int64_t k, int stride) {
    return (size + 2 * pad - dilation * (k - 1) - 1) / stride + 1;
}

// y, and the gradients of sum(y * dy), by direct summation in double.
static void conv_reference(const ConvCase *c, const double *x, const double *w, const double *b, const double *dy,
                           double *y, double *dx, double *dw, double *db) {
    const Conv2dParams p = c->p;
    int64_t OH = conv_out(c->H, p.pad_h, p.dilation_h, c->KH, p.stride_h);
    int64_t OW = conv_out(c->W, p.pad_w, p.dilation_w, c->KW, p.stride_w);
    int64_t cin_g = c->C_in / p.groups, cout_g = c->C_out / p.groups;
    memset(dx, 0, (size_t)(c->B * c->C_in * c->H * c->W) * sizeof(double));
    memset(dw, 0, (size_t)(c->C_out * cin_g * c->KH * c->KW) * sizeof(double));
    memset(db, 0, (size_t)c->C_out * sizeof(double));
    for (int64_t n = 0; n < c->B; n++)
        for (int64_t co = 0; co < c->C_out; co++)
            for (int64_t oh = 0; oh < OH; oh++)
                for (int64_t ow = 0; ow < OW; ow++) {
                    int64_t at = ((n * c->C_out + co) * OH + oh) * OW + ow;
                    double total = b ? b[co] : 0, g = dy[at];
                    db[co] += g;
                    int64_t group = co / cout_g;
                    for (int64_t ci = 0; ci < cin_g; ci++)
                        for (int64_t i = 0; i < c->KH; i++)
                            for (int64_t j = 0; j < c->KW; j++) {
                                int64_t ih = oh * p.stride_h - p.pad_h + i * p.dilation_h;
                                int64_t iw = ow * p.stride_w - p.pad_w + j * p.dilation_w;
                                if (ih < 0 || ih >= c->H || iw < 0 || iw >= c->W) continue;
                                int64_t xi = ((n * c->C_in + group * cin_g + ci) * c->H + ih) * c->W + iw;
                                int64_t wi = ((co * cin_g + ci) * c->KH + i) * c->KW + j;
                                total += x[xi] * w[wi];
                                dx[xi] += w[wi] * g;
                                dw[wi] += x[xi] * g;
                            }
                    y[at] = total;
                }
}

// input_grad false: x does not require gradients (a network's first layer), so backward computes
// only the weight and bias gradients.
static bool check_conv_case(const ConvCase *c, DType dtype, bool input_grad) {
    TensorScope scope = tensor_scope_begin();
    const Conv2dParams p = c->p;
    int64_t OH = conv_out(c->H, p.pad_h, p.dilation_h, c->KH, p.stride_h);
    int64_t OW = conv_out(c->W, p.pad_w, p.dilation_w, c->KW, p.stride_w);
    Shape xs = SHAPE(c->B, c->C_in, c->H, c->W), ws = SHAPE(c->C_out, c->C_in / p.groups, c->KH, c->KW);
    Shape ys = SHAPE(c->B, c->C_out, OH, OW);
    int64_t nx = shape_numel(xs), nw = shape_numel(ws), ny = shape_numel(ys);
    double *x = random_doubles(nx, 1), *w = random_doubles(nw, 1), *b = random_doubles(c->C_out, 1);
    double *dy = random_doubles(ny, 1);
    double *y_ref = malloc((size_t)ny * sizeof(double)), *dx_ref = malloc((size_t)nx * sizeof(double));
    double *dw_ref = malloc((size_t)nw * sizeof(double)), *db_ref = malloc((size_t)c->C_out * sizeof(double));
    conv_reference(c, x, w, c->bias ? b : NULL, dy, y_ref, dx_ref, dw_ref, db_ref);

    Tensor *xt = leaf(dtype, xs, x), *wt = leaf(dtype, ws, w), *bt = c->bias ? leaf(dtype, SHAPE(c->C_out), b) : NULL;
    if (!input_grad) xt->requires_grad = false;
    Tensor *y = op_conv2d(xt, wt, bt, p);
    Tensor *dyt = tensor_empty(dtype, ys);
    for (int64_t i = 0; i < ny; i++) tensor_set(dyt, i, dy[i]);
    tensor_backward(y, dyt);
    double tol = tolerance(dtype);
    double e_y = relative_error(y, y_ref, ny);
    double e_dx = input_grad ? relative_error(xt->grad, dx_ref, nx) : (xt->grad ? INFINITY : 0);
    double e_dw = relative_error(wt->grad, dw_ref, nw), e_db = bt ? relative_error(bt->grad, db_ref, c->C_out) : 0;
    bool ok = e_y <= tol && e_dx <= tol && e_dw <= tol && e_db <= tol;
    if (!ok)
        printf("  conv x[%lld,%lld,%lld,%lld] w[%lld,%lld,%lld,%lld] stride %d,%d pad %d,%d dil %d,%d groups %d %s "
               "threads %d: errors y %.3g dx %.3g dw %.3g db %.3g (tolerance %.3g)\n",
               (long long)c->B, (long long)c->C_in, (long long)c->H, (long long)c->W, (long long)c->C_out,
               (long long)(c->C_in / p.groups), (long long)c->KH, (long long)c->KW, p.stride_h, p.stride_w, p.pad_h,
               p.pad_w, p.dilation_h, p.dilation_w, p.groups, dtype_name(dtype), omp_get_max_threads(), e_y, e_dx,
               e_dw, e_db, tol);
    free(x), free(w), free(b), free(dy), free(y_ref), free(dx_ref), free(dw_ref), free(db_ref);
    tensor_scope_end(scope);
    return ok;
}

// The configurations cover every path of the im2col/GEMM driver: one image per GEMM (P >= 512),
// folded chunks (small P, several chunks, a partial last chunk), pointwise convs read in place,
// groups, depthwise, asymmetric stride/padding/dilation, a kernel as large as the padded input.
static const ConvCase CONV_CASES[] = {
    {2, 3, 7, 6, 4, 3, 3, {1, 1, 1, 1, 1, 1, 1}, true},
    {3, 3, 24, 23, 5, 3, 3, {1, 1, 1, 1, 1, 1, 1}, true},
    {20, 4, 8, 8, 6, 3, 3, {1, 1, 1, 1, 1, 1, 1}, true},
    {7, 4, 8, 8, 6, 3, 3, {1, 1, 1, 1, 1, 1, 1}, false},
    {5, 6, 9, 11, 4, 3, 2, {2, 1, 1, 0, 1, 2, 2}, true},
    {2, 8, 24, 24, 6, 1, 1, {1, 1, 0, 0, 1, 1, 1}, true},
    {6, 8, 5, 5, 6, 1, 1, {1, 1, 0, 0, 1, 1, 1}, false},
    {4, 8, 9, 9, 16, 1, 1, {2, 2, 0, 0, 1, 1, 1}, false},
    {3, 6, 10, 9, 6, 3, 3, {2, 2, 1, 1, 1, 1, 6}, true},
    {3, 4, 26, 25, 8, 3, 3, {1, 1, 1, 1, 1, 1, 4}, false},
    {2, 3, 11, 10, 4, 3, 3, {1, 1, 2, 2, 2, 2, 1}, true},
    {2, 3, 20, 18, 8, 7, 7, {2, 2, 3, 3, 1, 1, 1}, true},
    {8, 32, 4, 4, 48, 3, 3, {1, 1, 1, 1, 1, 1, 1}, true},
    {1, 2, 3, 4, 3, 5, 6, {1, 1, 1, 1, 1, 1, 1}, true},
    {1, 16, 30, 30, 24, 3, 3, {1, 1, 1, 1, 1, 1, 1}, false},
};

TEST(conv2d_matches_naive_loops) {
    int n_cases = (int)(sizeof CONV_CASES / sizeof CONV_CASES[0]);
    int saved_threads = omp_get_max_threads();
    int thread_counts[2] = {saved_threads, 1};
    for (int t = 0; t < (saved_threads > 1 ? 2 : 1); t++) {
        omp_set_num_threads(thread_counts[t]);
        for (int i = 0; i < n_cases; i++) {
            CHECK(check_conv_case(&CONV_CASES[i], DTYPE_F64, true));
            CHECK(check_conv_case(&CONV_CASES[i], DTYPE_F32, true));
            CHECK(check_conv_case(&CONV_CASES[i], DTYPE_F32, false));
        }
    }
    omp_set_num_threads(saved_threads);
}

// ---------------------------------------------------------------- PyTorch semantics by hand

static Tensor *f64_from(Shape shape, const double *values) {
    return tensor_from_data(DTYPE_F64, shape, values);
}

TEST(max_pool_padding_is_minus_infinity_and_first_max_gets_gradient) {
    TensorScope scope = tensor_scope_begin();
    // All -5: padded positions must not win (zero padding would give 0).
    double minus5[6] = {-5, -5, -5, -5, -5, -5};
    Tensor *y = op_max_pool2d(f64_from(SHAPE(1, 1, 2, 3), minus5), 3, 1, 1);
    for (int64_t i = 0; i < tensor_numel(y); i++) CHECK(tensor_get(y, i) == -5);
    // Ties: the whole gradient goes to the first maximum in row-major window order.
    double ones[4] = {1, 1, 1, 1};
    Tensor *x = tensor_requires_grad(f64_from(SHAPE(1, 1, 2, 2), ones));
    tensor_backward(op_sum_all(op_max_pool2d(x, 2, 2, 0)), NULL);
    double expected[4] = {1, 0, 0, 0};
    CHECK(relative_error(x->grad, expected, 4) == 0);
    // Overlapping windows with one shared maximum accumulate.
    double values[9] = {0, 1, 0, 2, 9, 3, 0, 4, 0};
    Tensor *z = tensor_requires_grad(f64_from(SHAPE(1, 1, 3, 3), values));
    tensor_backward(op_sum_all(op_max_pool2d(z, 2, 1, 0)), NULL);
    CHECK(tensor_get(z->grad, 4) == 4);
    tensor_scope_end(scope);
}

TEST(avg_pool_count_include_pad) {
    TensorScope scope = tensor_scope_begin();
    double ones[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    Tensor *x = f64_from(SHAPE(1, 1, 3, 3), ones);
    Tensor *with_pad = op_avg_pool2d(x, 3, 1, 1, true), *without = op_avg_pool2d(x, 3, 1, 1, false);
    CHECK_CLOSE(tensor_get(with_pad, 0), 4.0 / 9, 1e-15, 0);  // corner: 4 real of 9 padded
    CHECK_CLOSE(tensor_get(with_pad, 1), 6.0 / 9, 1e-15, 0);  // edge
    CHECK_CLOSE(tensor_get(with_pad, 4), 1.0, 1e-15, 0);
    for (int i = 0; i < 9; i++) CHECK_CLOSE(tensor_get(without, i), 1.0, 1e-15, 0);
    // Stride 2 on a 4x4 input with padding 1: windows [-1, 2) and [1, 4) in each direction.
    double v[16];
    for (int i = 0; i < 16; i++) v[i] = i;
    Tensor *y = op_avg_pool2d(f64_from(SHAPE(1, 1, 4, 4), v), 3, 2, 1, true);
    CHECK(tensor_numel(y) == 4);
    // output (1, 1): rows 1..3, cols 1..3, all real: the mean of 9.
    CHECK_CLOSE(tensor_get(y, 3), (5 + 6 + 7 + 9 + 10 + 11 + 13 + 14 + 15) / 9.0, 1e-12, 0);
    // output (0, 0): window [-1, 2) x [-1, 2): 9 padded, 4 real = 0 + 1 + 4 + 5.
    CHECK_CLOSE(tensor_get(y, 0), 10 / 9.0, 1e-12, 0);
    tensor_scope_end(scope);
}

TEST(adaptive_avg_pool_windows) {
    TensorScope scope = tensor_scope_begin();
    double v[5] = {0, 1, 2, 3, 4};
    // H = 5 -> 3: windows [0, 2), [1, 4), [3, 5).
    Tensor *y = op_adaptive_avg_pool2d(f64_from(SHAPE(1, 1, 5, 1), v), 3, 1);
    double expected[3] = {0.5, 2, 3.5};
    CHECK(relative_error(y, expected, 3) < 1e-15);
    // 2 -> 3 (output larger than input): windows [0, 1), [0, 2), [1, 2).
    Tensor *z = op_adaptive_avg_pool2d(f64_from(SHAPE(1, 1, 2), v), 1, 3);
    double expected_z[3] = {0, 0.5, 1};
    CHECK(relative_error(z, expected_z, 3) < 1e-15);
    tensor_scope_end(scope);
}

TEST(upsample_nearest_indices) {
    TensorScope scope = tensor_scope_begin();
    double v[5] = {0, 1, 2, 3, 4};
    // 3 -> 7: floor(o * 3/7) = 0 0 0 1 1 2 2 ('nearest', not 'nearest-exact').
    Tensor *up = op_upsample_nearest2d(f64_from(SHAPE(1, 1, 1, 3), v), 1, 7);
    double expected_up[7] = {0, 0, 0, 1, 1, 2, 2};
    CHECK(relative_error(up, expected_up, 7) == 0);
    // 5 -> 3: scale 5/3 in float: 0, 1, 3.
    Tensor *down = op_upsample_nearest2d(f64_from(SHAPE(1, 1, 5, 1), v), 3, 1);
    double expected_down[3] = {0, 1, 3};
    CHECK(relative_error(down, expected_down, 3) == 0);
    // 2x: each pixel repeated.
    Tensor *twice = op_upsample_nearest2d(f64_from(SHAPE(1, 1, 2), v), 2, 4);
    double expected_twice[8] = {0, 0, 1, 1, 0, 0, 1, 1};
    CHECK(relative_error(twice, expected_twice, 8) == 0);
    tensor_scope_end(scope);
}

// x [3, 2, 2] (B = 3, C = 2, S = 2) in f32 and f64: output with biased batch variance, running
// statistics updated with momentum and the unbiased variance (torch.nn.functional.batch_norm), and
// eval mode normalising with the running statistics.
static void check_batch_norm_running(DType dtype) {
    TensorScope scope = tensor_scope_begin();
    const double values[12] = {1, 2, 5, -1, 3, 0, 4, 2, -2, 7, 1, 1};
    const double momentum = 0.1, eps = 1e-5;
    Tensor *x = tensor_empty(dtype, SHAPE(3, 2, 2));
    for (int i = 0; i < 12; i++) tensor_set(x, i, values[i]);
    Tensor *running_mean = tensor_empty(dtype, SHAPE(2)), *running_var = tensor_empty(dtype, SHAPE(2));
    tensor_set(running_mean, 0, 0.5), tensor_set(running_mean, 1, -1);
    tensor_set(running_var, 0, 2), tensor_set(running_var, 1, 0.5);
    Tensor *weight = tensor_full(dtype, SHAPE(2), 2), *bias = tensor_full(dtype, SHAPE(2), 0.5);
    Tensor *y = op_batch_norm(x, weight, bias, running_mean, running_var, true, momentum, eps);
    double tol = dtype == DTYPE_F32 ? 1e-5 : 1e-12;
    double mean[2], var_biased[2], var_unbiased[2];
    for (int c = 0; c < 2; c++) {
        double total = 0, squares = 0;
        for (int b = 0; b < 3; b++)
            for (int s = 0; s < 2; s++) total += values[(b * 2 + c) * 2 + s];
        mean[c] = total / 6;
        for (int b = 0; b < 3; b++)
            for (int s = 0; s < 2; s++) squares += pow(values[(b * 2 + c) * 2 + s] - mean[c], 2);
        var_biased[c] = squares / 6;
        var_unbiased[c] = squares / 5;
    }
    // channel 0: 1 2 3 0 -2 7 -> mean 11/6; channel 1: 5 -1 4 2 1 1 -> mean 2.
    CHECK_CLOSE(mean[0], 11.0 / 6, 1e-15, 0);
    CHECK_CLOSE(mean[1], 2.0, 1e-15, 0);
    for (int i = 0; i < 12; i++) {
        int c = (i / 2) % 2;
        double expected = (values[i] - mean[c]) / sqrt(var_biased[c] + eps) * 2 + 0.5;
        CHECK_CLOSE(tensor_get(y, i), expected, tol, tol);
    }
    double rm[2] = {0.9 * 0.5 + 0.1 * mean[0], 0.9 * -1 + 0.1 * mean[1]};
    double rv[2] = {0.9 * 2 + 0.1 * var_unbiased[0], 0.9 * 0.5 + 0.1 * var_unbiased[1]};
    for (int c = 0; c < 2; c++) {
        CHECK_CLOSE(tensor_get(running_mean, c), rm[c], tol, tol);
        CHECK_CLOSE(tensor_get(running_var, c), rv[c], tol, tol);
    }
    // Eval: the running statistics normalise and stay unchanged.
    Tensor *e = op_batch_norm(x, weight, bias, running_mean, running_var, false, momentum, eps);
    for (int i = 0; i < 12; i++) {
        int c = (i / 2) % 2;
        double expected = (values[i] - rm[c]) / sqrt(rv[c] + eps) * 2 + 0.5;
        CHECK_CLOSE(tensor_get(e, i), expected, tol, tol);
    }
    CHECK_CLOSE(tensor_get(running_mean, 0), rm[0], tol, tol);
    CHECK_CLOSE(tensor_get(running_var, 1), rv[1], tol, tol);
    tensor_scope_end(scope);
}

// op_batch_norm_relu is relu(op_batch_norm) computed in one pass: the same output, running statistics
// and gradients to the bit in f32 and f64 (the fused kernels do the same arithmetic in the same
// order; the ReLU mask is recomputed from x with the scale and shift the forward used), in
// training (batch statistics, with and without running statistics and affine) and eval mode.
// S = 63 per channel row, so the vector loops and their scalar tails both run.
static Tensor *copy_of(Tensor *t) {
    Tensor *c = tensor_empty_like(t);
    tensor_copy_raw(c, t);
    return c;
}

static void check_batch_norm_relu_matches_composition(DType dtype, bool training, bool affine, bool running) {
    TensorScope scope = tensor_scope_begin();
    Rng rng = rng_make(21, 0);
    const int64_t B = 3, C = 5, H = 7, W = 9;
    Tensor *x = tensor_empty(dtype, SHAPE(B, C, H, W)), *g = tensor_empty(dtype, SHAPE(B, C, H, W));
    Tensor *w = tensor_empty(dtype, SHAPE(C)), *b = tensor_empty(dtype, SHAPE(C));
    for (int64_t i = 0; i < tensor_numel(x); i++) tensor_set(x, i, 2 * rng_normal(&rng) + 0.5);
    for (int64_t i = 0; i < tensor_numel(g); i++) tensor_set(g, i, rng_normal(&rng));
    for (int64_t c = 0; c < C; c++) tensor_set(w, c, 1 + 0.3 * rng_normal(&rng)), tensor_set(b, c, 0.2 * rng_normal(&rng));
    Tensor *results[2][6];  // y, dx, dw, db, running mean, running var
    for (int fused = 0; fused < 2; fused++) {
        Tensor *xi = tensor_requires_grad(copy_of(x));
        Tensor *wi = affine ? tensor_requires_grad(copy_of(w)) : NULL, *bi = affine ? tensor_requires_grad(copy_of(b)) : NULL;
        Tensor *rm = running ? tensor_zeros(dtype, SHAPE(C)) : NULL, *rv = running ? tensor_full(dtype, SHAPE(C), 1) : NULL;
        Tensor *y = fused ? op_batch_norm_relu(xi, wi, bi, rm, rv, training, 0.1, 1e-5)
                          : op_relu(op_batch_norm(xi, wi, bi, rm, rv, training, 0.1, 1e-5));
        tensor_backward(y, g);
        Tensor *r[6] = {y, xi->grad, wi ? wi->grad : NULL, bi ? bi->grad : NULL, rm, rv};
        for (int k = 0; k < 6; k++) results[fused][k] = r[k];
    }
    for (int k = 0; k < 6; k++) {
        if (!results[0][k]) continue;
        int64_t n = tensor_numel(results[0][k]), mismatches = 0;
        for (int64_t i = 0; i < n; i++) mismatches += tensor_get(results[0][k], i) != tensor_get(results[1][k], i);
        CHECK_MSG(mismatches == 0, "%s training=%d affine=%d running=%d: result %d differs in %lld of %lld entries",
                  dtype_name(dtype), training, affine, running, k, (long long)mismatches, (long long)n);
    }
    tensor_scope_end(scope);
}

TEST(batch_norm_relu_matches_composition) {
    for (int d = 0; d < 2; d++) {
        DType dtype = d ? DTYPE_F64 : DTYPE_F32;
        check_batch_norm_relu_matches_composition(dtype, true, true, true);
        check_batch_norm_relu_matches_composition(dtype, true, false, false);
        check_batch_norm_relu_matches_composition(dtype, false, true, true);
    }
}

TEST(batch_norm_running_statistics) {
    check_batch_norm_running(DTYPE_F64);
    check_batch_norm_running(DTYPE_F32);
}

// ---------------------------------------------------------------- norms against naive loops

// Which elements share statistics: batch norm per channel, group norm per (image, group), layer
// norm per row of the last dimension; the affine parameters are per channel (per column for layer).
typedef enum { NORM_BATCH, NORM_GROUP, NORM_LAYER } NormKind;

static void norm_reference(NormKind kind, const Tensor *x, int groups, const double *w, const double *b, double eps,
                           double *y) {
    int64_t n = tensor_numel(x);
    int64_t B = x->shape[0], C = x->ndim > 1 ? x->shape[1] : 1, S = 1;
    for (int d = 2; d < x->ndim; d++) S *= x->shape[d];
    int64_t D = x->shape[x->ndim - 1];
    // set(i): which statistics set element i belongs to; param(i): which weight/bias index.
    int64_t sets = kind == NORM_BATCH ? C : kind == NORM_GROUP ? B * groups : n / D;
    double *sum = calloc((size_t)sets, sizeof(double)), *sq = calloc((size_t)sets, sizeof(double));
    double *count = calloc((size_t)sets, sizeof(double));
    for (int pass = 0; pass < 2; pass++)
        for (int64_t i = 0; i < n; i++) {
            int64_t c = (i / S) % C;
            int64_t set = kind == NORM_BATCH ? c : kind == NORM_GROUP ? (i / S / C) * groups + c / (C / groups) : i / D;
            double v = tensor_get(x, i);
            if (pass == 0) {
                sum[set] += v;
                count[set] += 1;
            } else {
                double m = sum[set] / count[set];
                sq[set] += (v - m) * (v - m);
            }
        }
    for (int64_t i = 0; i < n; i++) {
        int64_t c = (i / S) % C;
        int64_t set = kind == NORM_BATCH ? c : kind == NORM_GROUP ? (i / S / C) * groups + c / (C / groups) : i / D;
        int64_t param = kind == NORM_LAYER ? i % D : c;
        double m = sum[set] / count[set], var = sq[set] / count[set];
        double v = (tensor_get(x, i) - m) / sqrt(var + eps);
        y[i] = v * (w ? w[param] : 1) + (b ? b[param] : 0);
    }
    free(sum), free(sq), free(count);
}

static Tensor *run_norm(NormKind kind, Tensor *x, int groups, Tensor *w, Tensor *b) {
    switch (kind) {
    case NORM_BATCH: return op_batch_norm(x, w, b, NULL, NULL, true, 0.1, 1e-5);
    case NORM_GROUP: return op_group_norm(x, groups, w, b, 1e-5);
    default: return op_layer_norm(x, w, b, 1e-5);
    }
}

// Forward against the reference in f64 and f32, and f32 gradients against f64 ones (which the
// gradient checks validate), at sizes that take the kernels' parallel paths.
static bool check_norm(NormKind kind, Shape shape, int groups, double shift) {
    TensorScope scope = tensor_scope_begin();
    int64_t n = shape_numel(shape);
    int64_t P = kind == NORM_LAYER ? shape.dims[shape.ndim - 1] : shape.dims[1];
    double *xv = random_doubles(n, 1.5), *wv = random_doubles(P, 1), *bv = random_doubles(P, 1);
    double *dyv = random_doubles(n, 1), *y_ref = malloc((size_t)n * sizeof(double));
    for (int64_t i = 0; i < n; i++) xv[i] += shift;
    bool ok = true;
    Tensor *grads[2][3] = {{0}};
    for (int t = 0; t < 2; t++) {
        DType dtype = t == 0 ? DTYPE_F64 : DTYPE_F32;
        Tensor *x = leaf(dtype, shape, xv), *w = leaf(dtype, SHAPE(P), wv), *b = leaf(dtype, SHAPE(P), bv);
        norm_reference(kind, x, groups, wv, bv, 1e-5, y_ref);
        Tensor *y = run_norm(kind, x, groups, w, b);
        double err = relative_error(y, y_ref, n);
        // f32: x - mean loses |mean| / std * 6e-8 relative; shift 3 with std 1.5 keeps it ~1e-7.
        if (!(err <= (t == 0 ? 1e-12 : 2e-5))) {
            printf("  norm %d %s forward error %.3g\n", (int)kind, dtype_name(dtype), err);
            ok = false;
        }
        Tensor *dy = tensor_empty(dtype, shape);
        for (int64_t i = 0; i < n; i++) tensor_set(dy, i, dyv[i]);
        tensor_backward(y, dy);
        grads[t][0] = x->grad, grads[t][1] = w->grad, grads[t][2] = b->grad;
    }
    for (int k = 0; k < 3; k++) {
        int64_t m = tensor_numel(grads[0][k]);
        double *ref = malloc((size_t)m * sizeof(double));
        for (int64_t i = 0; i < m; i++) ref[i] = tensor_get(grads[0][k], i);
        double err = relative_error(grads[1][k], ref, m);
        if (!(err <= 1e-4)) {
            printf("  norm %d gradient %d: f32 vs f64 error %.3g\n", (int)kind, k, err);
            ok = false;
        }
        free(ref);
    }
    free(xv), free(wv), free(bv), free(dyv), free(y_ref);
    tensor_scope_end(scope);
    return ok;
}

TEST(norms_match_naive_loops) {
    CHECK(check_norm(NORM_BATCH, SHAPE(8, 16, 16, 16), 0, 3.0));
    CHECK(check_norm(NORM_BATCH, SHAPE(3, 5, 7), 0, 0.0));
    CHECK(check_norm(NORM_BATCH, SHAPE(64, 600), 0, 1.0));
    CHECK(check_norm(NORM_GROUP, SHAPE(4, 32, 16, 16), 8, 3.0));
    CHECK(check_norm(NORM_GROUP, SHAPE(2, 6, 5), 2, 0.0));
    CHECK(check_norm(NORM_LAYER, SHAPE(256, 200), 0, 3.0));
    CHECK(check_norm(NORM_LAYER, SHAPE(3, 2, 9), 0, 0.0));
}

// ---------------------------------------------------------------- pooling: f32 against f64

typedef Tensor *(*UnaryNn)(Tensor *x);
static Tensor *pool_max(Tensor *x) { return op_max_pool2d(x, 3, 2, 1); }
static Tensor *pool_avg(Tensor *x) { return op_avg_pool2d(x, 3, 2, 1, false); }
static Tensor *pool_avg_pad(Tensor *x) { return op_avg_pool2d(x, 2, 2, 1, true); }
static Tensor *pool_adaptive(Tensor *x) { return op_adaptive_avg_pool2d(x, 7, 5); }
static Tensor *pool_global(Tensor *x) { return op_adaptive_avg_pool2d(x, 1, 1); }
static Tensor *upsample_odd(Tensor *x) { return op_upsample_nearest2d(x, 45, 50); }
static Tensor *upsample_2x(Tensor *x) { return op_upsample_nearest2d(x, 64, 58); }

// Large enough for the parallel paths; f32 and f64 must agree (max pool exactly).
static bool check_pool_f32(UnaryNn fn, const char *name) {
    TensorScope scope = tensor_scope_begin();
    Shape shape = SHAPE(4, 16, 32, 29);
    int64_t n = shape_numel(shape);
    double *xv = random_doubles(n, 1);
    Tensor *x64 = leaf(DTYPE_F64, shape, xv), *x32 = leaf(DTYPE_F32, shape, xv);
    Tensor *y64 = fn(x64), *y32 = fn(x32);
    int64_t m = tensor_numel(y64);
    double *yv = malloc((size_t)m * sizeof(double)), *dyv = random_doubles(m, 1);
    for (int64_t i = 0; i < m; i++) yv[i] = tensor_get(y64, i);
    bool ok = relative_error(y32, yv, m) <= 1e-6;
    Tensor *dy64 = leaf(DTYPE_F64, tensor_shape(y64), dyv), *dy32 = leaf(DTYPE_F32, tensor_shape(y64), dyv);
    tensor_backward(y64, dy64);
    tensor_backward(y32, dy32);
    double *gv = malloc((size_t)n * sizeof(double));
    for (int64_t i = 0; i < n; i++) gv[i] = tensor_get(x64->grad, i);
    ok = ok && relative_error(x32->grad, gv, n) <= 1e-6;
    if (!ok) printf("  %s: f32 and f64 differ\n", name);
    free(xv), free(yv), free(dyv), free(gv);
    tensor_scope_end(scope);
    return ok;
}

TEST(pooling_f32_matches_f64) {
    CHECK(check_pool_f32(pool_max, "max_pool2d"));
    CHECK(check_pool_f32(pool_avg, "avg_pool2d"));
    CHECK(check_pool_f32(pool_avg_pad, "avg_pool2d"));
    CHECK(check_pool_f32(pool_adaptive, "adaptive_avg_pool2d"));
    CHECK(check_pool_f32(pool_global, "adaptive_avg_pool2d"));
    CHECK(check_pool_f32(upsample_odd, "upsample_nearest2d"));
    CHECK(check_pool_f32(upsample_2x, "upsample_nearest2d"));
}

int main(void) {
    RUN_TEST(grad_conv2d_basic);
    RUN_TEST(grad_conv2d_stride2_pad);
    RUN_TEST(grad_conv2d_dilation2);
    RUN_TEST(grad_conv2d_asymmetric);
    RUN_TEST(grad_conv2d_groups2);
    RUN_TEST(grad_conv2d_depthwise);
    RUN_TEST(grad_conv2d_1x1);
    RUN_TEST(grad_conv2d_1x1_batch);
    RUN_TEST(grad_conv2d_1x1_stride2);
    RUN_TEST(grad_max_pool_k3s2p1);
    RUN_TEST(grad_max_pool_overlap);
    RUN_TEST(grad_avg_pool_include_pad);
    RUN_TEST(grad_avg_pool_exclude_pad);
    RUN_TEST(grad_avg_pool_overlap_3d);
    RUN_TEST(grad_adaptive_avg_pool);
    RUN_TEST(grad_adaptive_avg_pool_global);
    RUN_TEST(grad_upsample_nearest);
    RUN_TEST(grad_upsample_nearest_2x);
    RUN_TEST(grad_batch_norm_train);
    RUN_TEST(grad_batch_norm_train_running);
    RUN_TEST(grad_batch_norm_train_2d);
    RUN_TEST(grad_batch_norm_no_affine);
    RUN_TEST(grad_batch_norm_eval);
    RUN_TEST(grad_batch_norm_relu_train);
    RUN_TEST(grad_batch_norm_relu_train_running);
    RUN_TEST(grad_batch_norm_relu_no_affine);
    RUN_TEST(grad_batch_norm_relu_eval);
    RUN_TEST(grad_group_norm);
    RUN_TEST(grad_group_norm_one_group);
    RUN_TEST(grad_group_norm_per_channel);
    RUN_TEST(grad_layer_norm);
    RUN_TEST(grad_layer_norm_no_affine);
    RUN_TEST(conv2d_matches_naive_loops);
    RUN_TEST(max_pool_padding_is_minus_infinity_and_first_max_gets_gradient);
    RUN_TEST(avg_pool_count_include_pad);
    RUN_TEST(adaptive_avg_pool_windows);
    RUN_TEST(upsample_nearest_indices);
    RUN_TEST(batch_norm_running_statistics);
    RUN_TEST(batch_norm_relu_matches_composition);
    RUN_TEST(norms_match_naive_loops);
    RUN_TEST(pooling_f32_matches_f64);
    printf("report: gradient-checked ops: %s\n", gradcheck_checked_ops());
    return test_summary();
}
