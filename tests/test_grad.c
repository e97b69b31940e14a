// Gradient checks of every differentiable op against central finite differences in f64.
#include "tests/check.h"
#include "tests/gradcheck.h"

TEST_MAIN_COUNTERS;

// A u8 condition (no gradient) with a random half of the entries set.
static Tensor *random_mask(Shape shape) {
    Tensor *values = gradcheck_input(shape, 1.0, 0.0);
    Tensor *mask = tensor_empty(DTYPE_U8, shape);
    for (int64_t i = 0; i < tensor_numel(mask); i++) tensor_set(mask, i, tensor_get(values, i) > 0);
    return mask;
}

// ---- elementwise
GRAD_CASE(grad_add_broadcast, "add", op_add(in[0], in[1]), X(SHAPE(2, 3, 4)), X(SHAPE(3, 1)))
GRAD_CASE(grad_sub_broadcast, "sub", op_sub(in[0], in[1]), X(SHAPE(4)), X(SHAPE(2, 3, 4)))
GRAD_CASE(grad_mul_broadcast, "mul", op_mul(in[0], in[1]), X(SHAPE(2, 1, 4)), X(SHAPE(3, 1)))
GRAD_CASE(grad_div_broadcast, "div", op_div(in[0], in[1]), X(SHAPE(2, 3)), POSITIVE(SHAPE(3)))
GRAD_CASE(grad_scalar_ops, "add_scalar/mul_scalar/rsub_scalar/neg",
          op_neg(op_rsub_scalar(op_mul_scalar(op_add_scalar(in[0], 0.5), 3.0), 2.0)), X(SHAPE(5)))
GRAD_CASE(grad_pow_scalar, "pow_scalar", op_pow_scalar(in[0], 2.5), POSITIVE(SHAPE(7)))
GRAD_CASE(grad_exp, "exp", op_exp(in[0]), X(SHAPE(6)))
GRAD_CASE(grad_log, "log", op_log(in[0]), POSITIVE(SHAPE(6)))
GRAD_CASE(grad_sqrt, "sqrt", op_sqrt(in[0]), POSITIVE(SHAPE(6)))
GRAD_CASE(grad_rsqrt, "rsqrt", op_rsqrt(in[0]), POSITIVE(SHAPE(6)))
GRAD_CASE(grad_abs, "abs", op_abs(in[0]), X(SHAPE(9)))
GRAD_CASE(grad_clamp, "clamp", op_clamp(in[0], -0.5, 0.7), X(SHAPE(11)))
GRAD_CASE(grad_sigmoid, "sigmoid", op_sigmoid(in[0]), X(SHAPE(8)))
GRAD_CASE(grad_tanh, "tanh", op_tanh(in[0]), X(SHAPE(8)))
GRAD_CASE(grad_relu, "relu", op_relu(in[0]), X(SHAPE(9)))
GRAD_CASE(grad_leaky_relu, "leaky_relu", op_leaky_relu(in[0], 0.1), X(SHAPE(9)))
GRAD_CASE(grad_gelu, "gelu", op_gelu(in[0]), X(SHAPE(9)))
GRAD_CASE(grad_gelu_tanh, "gelu_tanh", op_gelu_tanh(in[0]), X(SHAPE(9)))
GRAD_CASE(grad_quick_gelu, "quick_gelu", op_quick_gelu(in[0]), X(SHAPE(9)))
GRAD_CASE(grad_silu, "silu", op_silu(in[0]), X(SHAPE(9)))
GRAD_CASE(grad_where, "where", op_where(in[0], in[1], in[2]), random_mask(SHAPE(3, 4)), X(SHAPE(3, 4)), X(SHAPE(4)))

// ---- views
static const int PERM_021[] = {0, 2, 1};
GRAD_CASE(grad_permute, "permute", op_mul(op_permute(in[0], PERM_021), in[1]), X(SHAPE(2, 3, 4)), X(SHAPE(2, 4, 3)))
GRAD_CASE(grad_reshape_noncontiguous, "reshape", op_reshape(op_transpose(in[0], 0, 1), SHAPE(-1)), X(SHAPE(3, 4)))
GRAD_CASE(grad_narrow, "narrow", op_narrow(in[0], 1, 1, 2), X(SHAPE(2, 4, 3)))
GRAD_CASE(grad_expand, "expand", op_expand(in[0], SHAPE(2, 3, 4)), X(SHAPE(3, 1)))
GRAD_CASE(grad_squeeze_unsqueeze, "squeeze/unsqueeze/flatten/select",
          op_flatten(op_unsqueeze(op_squeeze(op_select(in[0], 0, 1), 0), 1), 0, -1), X(SHAPE(2, 1, 3)))

// ---- reductions and softmax
static const int DIMS_0_2[] = {0, 2};
static const int DIM_1[] = {1};
GRAD_CASE(grad_sum_dims, "sum", op_sum(in[0], DIMS_0_2, 2, false), X(SHAPE(2, 3, 4)))
GRAD_CASE(grad_sum_keepdim, "sum", op_sum(in[0], DIM_1, 1, true), X(SHAPE(2, 3, 4)))
GRAD_CASE(grad_mean, "mean", op_mean(in[0], DIMS_0_2, 2, true), X(SHAPE(2, 3, 4)))
GRAD_CASE(grad_var, "var", op_var(in[0], DIM_1, 1, 1, false), X(SHAPE(2, 5, 3)))
GRAD_CASE(grad_max, "max", op_max(in[0], 1, false), X(SHAPE(3, 5, 2)))
GRAD_CASE(grad_logsumexp, "logsumexp", op_logsumexp(in[0], -1, false), X(SHAPE(3, 5)))
GRAD_CASE(grad_softmax_last, "softmax", op_softmax(in[0], -1), X(SHAPE(3, 5)))
GRAD_CASE(grad_softmax_middle, "softmax", op_softmax(in[0], 1), X(SHAPE(2, 4, 3)))
GRAD_CASE(grad_log_softmax, "log_softmax", op_log_softmax(in[0], 1), X(SHAPE(2, 4, 3)))

// ---- linear algebra
GRAD_CASE(grad_matmul_2d, "matmul", op_matmul(in[0], in[1]), X(SHAPE(3, 4)), X(SHAPE(4, 5)))
GRAD_CASE(grad_matmul_batched_broadcast, "matmul", op_matmul(in[0], in[1]), X(SHAPE(2, 1, 3, 4)), X(SHAPE(3, 4, 2)))
GRAD_CASE(grad_matmul_vector, "matmul", op_matmul(in[0], in[1]), X(SHAPE(4)), X(SHAPE(2, 4, 3)))
GRAD_CASE(grad_matmul_fold, "matmul", op_matmul(in[0], in[1]), X(SHAPE(2, 3, 4)), X(SHAPE(4, 2)))
GRAD_CASE(grad_linear, "linear", op_linear(in[0], in[1], in[2]), X(SHAPE(2, 3, 4)), X(SHAPE(5, 4)), X(SHAPE(5)))

// ---- joining and indexing
static Tensor *index_tensor(Shape shape, const int64_t *values) { return tensor_from_data(DTYPE_I64, shape, values); }
static Tensor *concat3(Tensor **in) { return op_concat(in, 3, 1); }
static Tensor *stack2(Tensor **in) { return op_stack(in, 2, 1); }
static Tensor *split_product(Tensor **in) {
    Tensor *parts[3];
    const int64_t sizes[3] = {1, 3, 1};
    op_split(in[0], sizes, 3, 1, parts);
    return op_add(op_mul(parts[0], parts[2]), op_sum(parts[1], (int[]){1}, 1, true));
}
static const int64_t GATHER_INDEX[] = {2, 0, 1, 2, 2, 1};
static const int64_t SELECT_INDEX[] = {3, 0, 3, 1};
static const int64_t TOKEN_INDEX[] = {1, 4, 1, 0, 2, 4};
GRAD_CASE(grad_concat, "concat", concat3(in), X(SHAPE(2, 1, 3)), X(SHAPE(2, 4, 3)), X(SHAPE(2, 2, 3)))
GRAD_CASE(grad_stack, "stack", stack2(in), X(SHAPE(2, 3)), X(SHAPE(2, 3)))
GRAD_CASE(grad_split, "split", split_product(in), X(SHAPE(2, 5)))
GRAD_CASE(grad_gather, "gather", op_gather(in[0], 1, index_tensor(SHAPE(2, 3), GATHER_INDEX)), X(SHAPE(2, 4)))
GRAD_CASE(grad_index_select, "index_select", op_index_select(in[0], 1, index_tensor(SHAPE(4), SELECT_INDEX)), X(SHAPE(2, 5, 3)))
GRAD_CASE(grad_embedding, "embedding", op_embedding(in[0], index_tensor(SHAPE(2, 3), TOKEN_INDEX)), X(SHAPE(5, 4)))
GRAD_CASE(grad_masked_fill, "masked_fill", op_masked_fill(in[1], in[0], -3.0), random_mask(SHAPE(3, 1)), X(SHAPE(3, 4)))

// ---- losses
static const int64_t TARGETS[] = {2, 0, 4, 1};
static const int64_t TARGETS_IGNORED[] = {2, -100, 4, 1};
static const int64_t TARGETS_SPATIAL[] = {0, 2, 1, 1, 2, 0, 0, 1, 2, 2, 1, 0};
static Tensor *ce_with(Tensor **in, double smoothing, bool class_weights, bool ignore, bool sample_weights, Reduction reduction) {
    CrossEntropyOptions options = cross_entropy_defaults();
    options.label_smoothing = smoothing;
    options.reduction = reduction;
    if (class_weights) options.class_weight = tensor_from_data(DTYPE_F64, SHAPE(5), (double[]){0.5, 1.0, 2.0, 1.5, 0.25});
    if (sample_weights) options.sample_weight = tensor_from_data(DTYPE_F64, SHAPE(4), (double[]){1.0, 0.5, 2.0, 0.0});
    if (ignore) options.ignore_index = -100;
    return op_cross_entropy(in[0], index_tensor(SHAPE(4), ignore ? TARGETS_IGNORED : TARGETS), options);
}
static Tensor *ce_spatial(Tensor **in) {
    return op_cross_entropy(in[0], index_tensor(SHAPE(2, 2, 3), TARGETS_SPATIAL), cross_entropy_defaults());
}
GRAD_CASE(grad_cross_entropy, "cross_entropy", ce_with(in, 0, false, false, false, REDUCTION_MEAN), X(SHAPE(4, 5)))
GRAD_CASE(grad_cross_entropy_all_options, "cross_entropy", ce_with(in, 0.1, true, true, true, REDUCTION_MEAN), X(SHAPE(4, 5)))
GRAD_CASE(grad_cross_entropy_none, "cross_entropy", ce_with(in, 0.2, true, false, false, REDUCTION_NONE), X(SHAPE(4, 5)))
GRAD_CASE(grad_cross_entropy_spatial, "cross_entropy", ce_spatial(in), X(SHAPE(2, 3, 2, 3)))
GRAD_CASE(grad_cross_entropy_soft, "cross_entropy_soft", op_cross_entropy_soft(in[0], op_softmax(in[1], 1), REDUCTION_MEAN), X(SHAPE(3, 4)), X(SHAPE(3, 4)))
GRAD_CASE(grad_bce_with_logits, "bce_with_logits", op_bce_with_logits(in[0], op_sigmoid(in[1]), in[2], REDUCTION_MEAN), X(SHAPE(3, 4)), X(SHAPE(3, 4)), POSITIVE(SHAPE(4)))
GRAD_CASE(grad_mse_loss, "mse_loss", op_mse_loss(in[0], in[1], REDUCTION_MEAN), X(SHAPE(3, 4)), X(SHAPE(3, 4)))
GRAD_CASE(grad_l1_loss, "l1_loss", op_l1_loss(in[0], in[1], REDUCTION_SUM), X(SHAPE(3, 4)), X(SHAPE(3, 4)))
GRAD_CASE(grad_kl_div, "kl_div", op_kl_div(op_log_softmax(in[0], 1), op_softmax(in[1], 1), REDUCTION_BATCHMEAN, false), X(SHAPE(3, 4)), X(SHAPE(3, 4)))
GRAD_CASE(grad_kl_div_log_target, "kl_div", op_kl_div(op_log_softmax(in[0], 1), op_log_softmax(in[1], 1), REDUCTION_BATCHMEAN, true), X(SHAPE(3, 4)), X(SHAPE(3, 4)))
GRAD_CASE(grad_entropy, "entropy", op_entropy(in[0], REDUCTION_MEAN), X(SHAPE(3, 5)))
// Gradient reversal is deliberately not the derivative: forward is the identity, backward -lambda * g.
TEST(grad_grad_reverse) {
    TensorScope scope = tensor_scope_begin();
    Tensor *x = X(SHAPE(4));
    Tensor *w = tensor_from_data(DTYPE_F64, SHAPE(4), (double[]){1.0, -2.0, 0.5, 3.0});
    Tensor *y = op_grad_reverse(x, 0.7);
    for (int i = 0; i < 4; i++) CHECK(tensor_get(y, i) == tensor_get(x, i));
    tensor_backward(op_sum_all(op_mul(y, w)), NULL);
    for (int i = 0; i < 4; i++) CHECK_CLOSE(tensor_get(x->grad, i), -0.7 * tensor_get(w, i), 1e-15, 0);
    if (!test_checks_failed_in_current) gradcheck_record_checked("grad_reverse");
    tensor_scope_end(scope);
}

// Dropout with the mask fixed: every evaluation draws from the same (seed, stream, offset).
static Tensor *dropout_fixed_mask(Tensor *x) {
    Rng rng = rng_make(21, 3);
    return op_dropout(x, 0.4, true, &rng);
}
GRAD_CASE(grad_dropout, "dropout", dropout_fixed_mask(in[0]), X(SHAPE(4, 5)))

// Conversion between float types passes the gradient through, converted back to the input's type.
TEST(grad_to_dtype) {
    TensorScope scope = tensor_scope_begin();
    Tensor *x = tensor_requires_grad(tensor_from_data(DTYPE_F32, SHAPE(3), (float[]){1.5f, -2.0f, 0.25f}));
    Tensor *y = op_to_dtype(x, DTYPE_F64);
    CHECK(y->dtype == DTYPE_F64 && tensor_get(y, 2) == 0.25);
    tensor_backward(y, tensor_from_data(DTYPE_F64, SHAPE(3), (double[]){0.5, 3.0, -1.0}));
    CHECK(x->grad && x->grad->dtype == DTYPE_F32);
    CHECK(tensor_get(x->grad, 0) == 0.5 && tensor_get(x->grad, 1) == 3.0 && tensor_get(x->grad, 2) == -1.0);
    if (!test_checks_failed_in_current) gradcheck_record_checked("to_dtype");
    tensor_scope_end(scope);
}

// ---- attention
static Tensor *attention_masked(Tensor **in) {
    Tensor *mask = tensor_empty(DTYPE_U8, SHAPE(3, 4));
    for (int64_t i = 0; i < 12; i++) ((uint8_t *)tensor_data(mask))[i] = (i % 3) != 1;
    return op_scaled_dot_product_attention(in[0], in[1], in[2], mask, false, 0);
}
GRAD_CASE(grad_attention, "attention", op_scaled_dot_product_attention(in[0], in[1], in[2], NULL, false, 0), X(SHAPE(2, 3, 4)), X(SHAPE(2, 5, 4)), X(SHAPE(2, 5, 2)))
GRAD_CASE(grad_attention_causal, "attention", op_scaled_dot_product_attention(in[0], in[1], in[2], NULL, true, 0.3), X(SHAPE(2, 1, 4, 3)), X(SHAPE(2, 1, 4, 3)), X(SHAPE(2, 1, 4, 3)))
GRAD_CASE(grad_attention_bool_mask, "attention", attention_masked(in), X(SHAPE(2, 3, 4)), X(SHAPE(2, 4, 4)), X(SHAPE(2, 4, 3)))
GRAD_CASE(grad_attention_additive_mask, "attention", op_scaled_dot_product_attention(in[0], in[1], in[2], in[3], false, 0), X(SHAPE(1, 3, 2)), X(SHAPE(1, 4, 2)), X(SHAPE(1, 4, 2)), X(SHAPE(3, 4)))
GRAD_CASE(grad_self_attention, "self_attention", op_self_attention(in[0], 2, false, 0), X(SHAPE(2, 5, 12)))
GRAD_CASE(grad_self_attention_causal, "self_attention", op_self_attention(in[0], 3, true, 0.4), X(SHAPE(1, 4, 9)))

// The fused CPU kernel in f32 against the composed op (per-head views + scaled_dot_product_attention),
// forward and the qkv gradient, causal or not, with T and head sizes that are not multiples of the
// GEMM tiles. Both sum the same products in different orders in f32: the bound is a few ulps of the
// magnitudes involved (values here are O(1), sums of <= 2 * 23 terms), 2e-5 absolute.
static Tensor *composed_self_attention(Tensor *qkv, int heads, bool causal) {
    int64_t B = qkv->shape[0], T = qkv->shape[1], D = qkv->shape[2] / 3;
    Tensor *split = op_reshape(qkv, SHAPE(B, T, 3, heads, D / heads));
    static const int to_heads[4] = {0, 2, 1, 3};
    Tensor *q = op_permute(op_select(split, 2, 0), to_heads), *k = op_permute(op_select(split, 2, 1), to_heads);
    Tensor *v = op_permute(op_select(split, 2, 2), to_heads);
    return op_reshape(op_transpose(op_scaled_dot_product_attention(q, k, v, NULL, causal, 0), 1, 2), SHAPE(B, T, D));
}

TEST(self_attention_f32_matches_composed) {
    static const int64_t shapes[][4] = {{3, 23, 2, 5}, {2, 65, 3, 16}, {1, 1, 1, 4}};  // B, T, H, Dh
    for (int s = 0; s < 3; s++)
        for (int causal = 0; causal < 2; causal++) {
            TensorScope scope = tensor_scope_begin();
            int64_t B = shapes[s][0], T = shapes[s][1], H = shapes[s][2], D = H * shapes[s][3];
            Tensor *qkv = gradcheck_input(SHAPE(B, T, 3 * D), 1.0, 0.0);
            Tensor *weights = gradcheck_input(SHAPE(B, T, D), 1.0, 0.0);
            bool previous = autograd_set_enabled(false);  // a and b: f32 leaves of their own
            Tensor *a = op_to_dtype(qkv, DTYPE_F32), *b = op_to_dtype(qkv, DTYPE_F32);
            autograd_set_enabled(previous);
            tensor_requires_grad(a);
            tensor_requires_grad(b);
            Tensor *w = op_to_dtype(weights, DTYPE_F32);
            Tensor *fused = op_self_attention(a, (int)H, causal, 0), *composed = composed_self_attention(b, (int)H, causal);
            tensor_backward(op_sum_all(op_mul(fused, w)), NULL);
            tensor_backward(op_sum_all(op_mul(composed, w)), NULL);
            for (int64_t i = 0; i < tensor_numel(fused); i++) CHECK_CLOSE(tensor_get(fused, i), tensor_get(composed, i), 2e-5, 0);
            for (int64_t i = 0; i < tensor_numel(a); i++) CHECK_CLOSE(tensor_get(a->grad, i), tensor_get(b->grad, i), 2e-5, 0);
            tensor_scope_end(scope);
        }
}

int main(void) {
    RUN_TEST(grad_add_broadcast);
    RUN_TEST(grad_sub_broadcast);
    RUN_TEST(grad_mul_broadcast);
    RUN_TEST(grad_div_broadcast);
    RUN_TEST(grad_scalar_ops);
    RUN_TEST(grad_pow_scalar);
    RUN_TEST(grad_exp);
    RUN_TEST(grad_log);
    RUN_TEST(grad_sqrt);
    RUN_TEST(grad_rsqrt);
    RUN_TEST(grad_abs);
    RUN_TEST(grad_clamp);
    RUN_TEST(grad_sigmoid);
    RUN_TEST(grad_tanh);
    RUN_TEST(grad_relu);
    RUN_TEST(grad_leaky_relu);
    RUN_TEST(grad_gelu);
    RUN_TEST(grad_gelu_tanh);
    RUN_TEST(grad_quick_gelu);
    RUN_TEST(grad_silu);
    RUN_TEST(grad_where);
    RUN_TEST(grad_permute);
    RUN_TEST(grad_reshape_noncontiguous);
    RUN_TEST(grad_narrow);
    RUN_TEST(grad_expand);
    RUN_TEST(grad_squeeze_unsqueeze);
    RUN_TEST(grad_sum_dims);
    RUN_TEST(grad_sum_keepdim);
    RUN_TEST(grad_mean);
    RUN_TEST(grad_var);
    RUN_TEST(grad_max);
    RUN_TEST(grad_logsumexp);
    RUN_TEST(grad_softmax_last);
    RUN_TEST(grad_softmax_middle);
    RUN_TEST(grad_log_softmax);
    RUN_TEST(grad_matmul_2d);
    RUN_TEST(grad_matmul_batched_broadcast);
    RUN_TEST(grad_matmul_vector);
    RUN_TEST(grad_matmul_fold);
    RUN_TEST(grad_linear);
    RUN_TEST(grad_concat);
    RUN_TEST(grad_stack);
    RUN_TEST(grad_split);
    RUN_TEST(grad_gather);
    RUN_TEST(grad_index_select);
    RUN_TEST(grad_embedding);
    RUN_TEST(grad_masked_fill);
    RUN_TEST(grad_cross_entropy);
    RUN_TEST(grad_cross_entropy_all_options);
    RUN_TEST(grad_cross_entropy_none);
    RUN_TEST(grad_cross_entropy_spatial);
    RUN_TEST(grad_cross_entropy_soft);
    RUN_TEST(grad_bce_with_logits);
    RUN_TEST(grad_mse_loss);
    RUN_TEST(grad_l1_loss);
    RUN_TEST(grad_kl_div);
    RUN_TEST(grad_kl_div_log_target);
    RUN_TEST(grad_entropy);
    RUN_TEST(grad_grad_reverse);
    RUN_TEST(grad_dropout);
    RUN_TEST(grad_to_dtype);
    RUN_TEST(grad_attention);
    RUN_TEST(grad_attention_causal);
    RUN_TEST(grad_attention_bool_mask);
    RUN_TEST(grad_attention_additive_mask);
    RUN_TEST(grad_self_attention);
    RUN_TEST(grad_self_attention_causal);
    RUN_TEST(self_attention_f32_matches_composed);
    printf("report: gradient-checked ops: %s\n", gradcheck_checked_ops());
    return test_summary();
}
