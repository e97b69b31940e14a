// Tensors, views, dtype conversions, scopes and the autograd engine's behaviour.
#include "engine/ops.h"
#include "tests/check.h"

TEST_MAIN_COUNTERS;

TEST(shape_macro_and_creation) {
    TensorScope scope = tensor_scope_begin();
    Shape s = SHAPE(2, 3, 4);
    CHECK(s.ndim == 3 && s.dims[2] == 4);
    CHECK(SHAPE().ndim == 0);
    Tensor *t = tensor_full(DTYPE_F32, SHAPE(2, 3), 1.5);
    CHECK(tensor_numel(t) == 6 && tensor_is_contiguous(t));
    CHECK(t->stride[0] == 3 && t->stride[1] == 1);
    CHECK(tensor_get(t, 5) == 1.5);
    Tensor *a = tensor_arange(DTYPE_I64, 5);
    CHECK(tensor_i64(a)[4] == 4);
    CHECK(((uintptr_t)tensor_data(t) & 63) == 0);  // 64-byte aligned storage for vector loads
    tensor_scope_end(scope);
}

TEST(views_share_storage) {
    TensorScope scope = tensor_scope_begin();
    Tensor *x = tensor_arange(DTYPE_F32, 24);
    Tensor *r = op_reshape(x, SHAPE(2, 3, 4));
    CHECK(r->storage == x->storage);
    Tensor *p = op_permute(r, (int[]){2, 0, 1});  // [4, 2, 3]
    CHECK(p->shape[0] == 4 && p->shape[1] == 2 && p->shape[2] == 3);
    CHECK(!tensor_is_contiguous(p));
    // p[i][j][k] = r[j][k][i] = 12 j + 4 k + i
    CHECK(tensor_get(p, 1 * 6 + 1 * 3 + 2) == 12 * 1 + 4 * 2 + 1);
    Tensor *c = op_contiguous(p);
    CHECK(tensor_is_contiguous(c) && c->storage != x->storage);
    CHECK(tensor_f32(c)[1 * 6 + 1 * 3 + 2] == 21);
    Tensor *n = op_narrow(r, 2, 1, 2);  // [2, 3, 2]
    CHECK(tensor_get(n, 0) == 1 && tensor_get(n, 1) == 2 && tensor_get(n, 2) == 5);
    Tensor *e = op_expand(tensor_arange(DTYPE_F32, 3), SHAPE(4, 3));
    CHECK(e->stride[0] == 0 && tensor_get(e, 10) == 1);
    Tensor *u = op_unsqueeze(tensor_arange(DTYPE_F32, 3), -1);
    CHECK(u->ndim == 2 && u->shape[1] == 1);
    Tensor *f = op_flatten(r, 1, 2);
    CHECK(f->ndim == 2 && f->shape[1] == 12);
    Tensor *s = op_select(r, 1, 2);  // [2, 4]: r[:, 2, :]
    CHECK(s->ndim == 2 && tensor_get(s, 5) == 12 + 8 + 1);
    Tensor *pieces[2];
    op_split(x, (int64_t[]){10, 14}, 2, 0, pieces);
    CHECK(tensor_numel(pieces[1]) == 14 && tensor_get(pieces[1], 0) == 10);
    Tensor *reshaped_noncontiguous = op_reshape(op_transpose(op_reshape(x, SHAPE(4, 6)), 0, 1), SHAPE(24));
    CHECK(tensor_get(reshaped_noncontiguous, 1) == 6);  // transposed order
    tensor_scope_end(scope);
}

TEST(view_of_strided_tensors) {
    TensorScope scope = tensor_scope_begin();
    Tensor *x = op_reshape(tensor_arange(DTYPE_F32, 24), SHAPE(4, 6));
    Tensor *t = op_transpose(x, 0, 1);       // [6, 4], strides [1, 6]
    Tensor *v = op_view(t, SHAPE(6, 2, 2));  // splits the strided dim: no copy
    CHECK(v->storage == x->storage && v->stride[1] == 12 && v->stride[2] == 6);
    CHECK(tensor_get(v, 1 * 4 + 1 * 2 + 1) == tensor_get(t, 1 * 4 + 3));
    Tensor *n = op_narrow(x, 1, 1, 3);       // [4, 3], strides [6, 1]
    Tensor *w = op_view(n, SHAPE(2, 2, 3));
    CHECK(w->storage == x->storage && tensor_get(w, 3) == 7);
    Tensor *r = op_reshape(n, SHAPE(12));    // not viewable: reshape copies
    CHECK(r->storage != x->storage && tensor_get(r, 3) == 7 && tensor_get(r, 11) == 21);
    Tensor *one = op_view(op_select(x, 0, 2), SHAPE(1, 6, 1));
    CHECK(tensor_get(one, 5) == 17);
    tensor_scope_end(scope);
}

TEST(dtype_conversions) {
    // f16: exact small integers, rounding to nearest even, overflow, subnormals, NaN
    CHECK(f16_to_f32(f32_to_f16(1.0f)) == 1.0f);
    CHECK(f32_to_f16(65504.0f) == 0x7bff);
    CHECK(f32_to_f16(65520.0f) == 0x7c00);               // rounds up to infinity
    CHECK(f32_to_f16(1.0f + 1.0f / 2048) == 0x3c00);     // halfway: ties to even (down)
    CHECK(f32_to_f16(1.0f + 3.0f / 2048) == 0x3c02);     // halfway: ties to even (up)
    CHECK(f16_to_f32(0x0001) == 5.9604644775390625e-08f);  // smallest subnormal
    CHECK(f32_to_f16(5.9604644775390625e-08f) == 0x0001);
    CHECK(isnan(f16_to_f32(f32_to_f16(NAN))));
    CHECK(f32_to_f16(-0.0f) == 0x8000);
    // bf16: truncation with round to nearest even
    CHECK(f32_to_bf16(1.0f) == 0x3f80);
    CHECK(bf16_to_f32(f32_to_bf16(3.140625f)) == 3.140625f);
    CHECK(f32_to_bf16(1.00390625f) == 0x3f80);  // halfway between 0x3f80 and 0x3f81: even
    CHECK(isnan(bf16_to_f32(f32_to_bf16(NAN))));
    // Every f16 value converts to f32 and back unchanged.
    int mismatches = 0;
    for (uint32_t bits = 0; bits < 65536; bits++) {
        float value = f16_to_f32((uint16_t)bits);
        if (!isnan(value) && f32_to_f16(value) != bits) mismatches++;
    }
    CHECK(mismatches == 0);
    TensorScope scope = tensor_scope_begin();
    Tensor *x = tensor_from_data(DTYPE_F32, SHAPE(3), (float[]){0.5f, -2.25f, 1000.0f});
    Tensor *h = op_to_dtype(x, DTYPE_F16), *b = op_to_dtype(x, DTYPE_BF16), *i = op_to_dtype(x, DTYPE_I32);
    CHECK(tensor_get(h, 1) == -2.25 && tensor_get(b, 2) == 1000.0 && tensor_get(i, 1) == -2);
    tensor_scope_end(scope);
}

TEST(scopes_release_and_keep) {
    TensorScope outer = tensor_scope_begin();
    Tensor *kept;
    {
        TensorScope inner = tensor_scope_begin();
        Tensor *a = tensor_full(DTYPE_F32, SHAPE(4), 2.0);
        kept = tensor_keep(op_mul(a, a));
        tensor_scope_end(inner);
    }
    CHECK(kept->refcount == 1 && tensor_get(kept, 3) == 4.0);
    tensor_release(kept);
    tensor_scope_end(outer);
}

TEST(autograd_accumulates_and_zeroes) {
    TensorScope scope = tensor_scope_begin();
    Tensor *w = tensor_requires_grad(tensor_full(DTYPE_F64, SHAPE(3), 2.0));
    for (int pass = 0; pass < 2; pass++) tensor_backward(op_sum_all(op_mul(w, w)), NULL);  // d/dw = 2w each pass
    CHECK(tensor_get(w->grad, 0) == 8.0);
    tensor_zero_grad(w);
    CHECK(tensor_get(w->grad, 2) == 0.0);
    tensor_scope_end(scope);
}

TEST(autograd_shared_trunk_two_heads) {
    // MCD: one trunk, two heads, two backward passes in one step over the same graph.
    TensorScope scope = tensor_scope_begin();
    Tensor *x = tensor_from_data(DTYPE_F64, SHAPE(2), (double[]){1.0, 3.0});
    Tensor *trunk = tensor_requires_grad(tensor_full(DTYPE_F64, SHAPE(2), 0.5));
    Tensor *head1 = tensor_requires_grad(tensor_full(DTYPE_F64, SHAPE(2), 2.0));
    Tensor *head2 = tensor_requires_grad(tensor_full(DTYPE_F64, SHAPE(2), -1.0));
    Tensor *features = op_mul(x, trunk);
    Tensor *loss1 = op_sum_all(op_mul(features, head1));
    Tensor *loss2 = op_sum_all(op_mul(features, head2));
    tensor_backward(loss1, NULL);
    CHECK(tensor_get(trunk->grad, 1) == 3.0 * 2.0);
    tensor_backward(loss2, NULL);  // the graph is still alive: accumulate
    CHECK(tensor_get(trunk->grad, 1) == 3.0 * 2.0 + 3.0 * -1.0);
    CHECK(tensor_get(head1->grad, 0) == 0.5 && tensor_get(head2->grad, 1) == 1.5);
    tensor_scope_end(scope);
}

TEST(autograd_no_grad_and_detach) {
    TensorScope scope = tensor_scope_begin();
    Tensor *w = tensor_requires_grad(tensor_full(DTYPE_F64, SHAPE(2), 3.0));
    bool previous = autograd_set_enabled(false);
    Tensor *y = op_mul(w, w);
    autograd_set_enabled(previous);
    CHECK(!y->requires_grad && y->node == NULL);
    Tensor *d = tensor_detach(op_mul(w, w));
    CHECK(!d->requires_grad);
    // Gradient flows only through the attached factor: d/dw [w * detach(w)] = detach(w) = 3
    tensor_backward(op_sum_all(op_mul(w, tensor_detach(w))), NULL);
    CHECK(tensor_get(w->grad, 0) == 3.0);
    tensor_scope_end(scope);
}

TEST(autograd_input_gradient_and_retain) {
    // Gradient with respect to a non-parameter input (test-time adaptation through a frozen net).
    TensorScope scope = tensor_scope_begin();
    Tensor *image = tensor_requires_grad(tensor_from_data(DTYPE_F64, SHAPE(3), (double[]){1, 2, 3}));
    Tensor *frozen = tensor_from_data(DTYPE_F64, SHAPE(3), (double[]){4, 5, 6});
    Tensor *hidden = op_mul(image, frozen);
    tensor_retain_grad(hidden);
    Tensor *loss = op_sum_all(op_mul(hidden, hidden));
    tensor_backward(loss, NULL);
    CHECK(tensor_get(image->grad, 1) == 2 * (2 * 5) * 5);  // d/di (i f)^2 = 2 i f^2
    CHECK(hidden->grad && tensor_get(hidden->grad, 2) == 2 * 18);
    CHECK(frozen->grad == NULL);
    // Backward with an explicit output gradient on a non-scalar.
    Tensor *v = tensor_requires_grad(tensor_full(DTYPE_F64, SHAPE(2, 2), 1.0));
    Tensor *out = op_mul_scalar(v, 3.0);
    tensor_backward(out, tensor_from_data(DTYPE_F64, SHAPE(2, 2), (double[]){1, 2, 3, 4}));
    CHECK(tensor_get(v->grad, 3) == 12.0);
    tensor_scope_end(scope);
}

TEST(autograd_deep_chain) {
    // 20000 nodes deep: the topological sort must not recurse on the C stack.
    TensorScope scope = tensor_scope_begin();
    Tensor *x = tensor_requires_grad(tensor_full(DTYPE_F64, SHAPE(1), 1.0));
    Tensor *y = x;
    for (int i = 0; i < 20000; i++) y = op_add_scalar(y, 1e-4);
    tensor_backward(op_sum_all(y), NULL);
    CHECK(tensor_get(x->grad, 0) == 1.0);
    tensor_scope_end(scope);
}

TEST(dropout_scales_and_is_seeded) {
    TensorScope scope = tensor_scope_begin();
    Tensor *x = tensor_full(DTYPE_F32, SHAPE(10000), 1.0);
    Rng a = rng_make(7, 1), b = rng_make(7, 1);
    Tensor *ya = op_dropout(x, 0.25, true, &a), *yb = op_dropout(x, 0.25, true, &b);
    int64_t kept = 0;
    for (int64_t i = 0; i < 10000; i++) {
        double v = tensor_get(ya, i);
        CHECK(v == 0.0 || fabs(v - 1.0 / 0.75) < 1e-6);
        kept += v != 0.0;
        if (tensor_get(yb, i) != v) CHECK(0 && "same seed, different mask");
    }
    CHECK(kept > 7300 && kept < 7700);  // 7500 expected, sd ~43: 4.6 sd either way
    CHECK(op_dropout(x, 0.25, false, &a) == x);
    tensor_scope_end(scope);
}

TEST(storage_cache_reuses_freed_blocks) {
    storage_cache_release_all();
    TensorScope scope = tensor_scope_begin();
    Tensor *a = tensor_empty(DTYPE_F32, SHAPE(1 << 18));  // 1 MiB
    void *first = a->storage->data;
    tensor_scope_end(scope);
    scope = tensor_scope_begin();
    Tensor *smaller = tensor_empty(DTYPE_F32, SHAPE(200000));  // 0.76 of the block: reused
    Tensor *other = tensor_empty(DTYPE_F32, SHAPE(1 << 18));   // nothing cached left: fresh
    CHECK(smaller->storage->data == first);
    CHECK(smaller->storage->capacity == (size_t)1 << 20);  // keeps the block's real size
    CHECK(other->storage->data != smaller->storage->data);
    tensor_fill_raw(smaller, 3.0);
    CHECK(tensor_get(smaller, 199999) == 3.0);
    tensor_scope_end(scope);
    scope = tensor_scope_begin();
    Tensor *tiny = tensor_empty(DTYPE_F32, SHAPE(1000));  // far smaller than any cached block: fresh
    CHECK(tiny->storage->capacity < 8192);
    tensor_scope_end(scope);
    storage_cache_release_all();
}

TEST(nan_propagates_through_ops) {
    // A NaN must survive every op (as in PyTorch), or a diverged run would look healthy.
    TensorScope scope = tensor_scope_begin();
    Tensor *x = tensor_from_data(DTYPE_F32, SHAPE(3), (float[]){NAN, -1.0f, 2.0f});
    Tensor *(*unary[])(Tensor *) = {op_relu, op_sigmoid, op_tanh, op_gelu, op_gelu_tanh, op_quick_gelu, op_silu, op_abs, op_exp};
    for (size_t i = 0; i < sizeof unary / sizeof unary[0]; i++) CHECK_MSG(isnan(tensor_get(unary[i](x), 0)), "unary op %zu", i);
    CHECK(isnan(tensor_get(op_leaky_relu(x, 0.1), 0)));
    CHECK(isnan(tensor_get(op_clamp(x, -0.5, 0.5), 0)));
    CHECK(tensor_get(op_relu(x), 1) == 0.0 && tensor_get(op_relu(x), 2) == 2.0);
    CHECK(isnan(tensor_get(op_max(x, 0, false), 0)));
    CHECK(tensor_i64(op_argmax(x, 0, false))[0] == 0);
    CHECK(isnan(tensor_get(op_sum_all(x), 0)));
    CHECK(isnan(tensor_get(op_softmax(x, 0), 2)));
    tensor_scope_end(scope);
}

TEST(edge_case_gradients) {
    TensorScope scope = tensor_scope_begin();
    // pow(x, 0) has derivative 0 everywhere, also at 0 (PyTorch), not 0 * inf.
    Tensor *x = tensor_requires_grad(tensor_from_data(DTYPE_F64, SHAPE(2), (double[]){0.0, 2.0}));
    tensor_backward(op_sum_all(op_pow_scalar(x, 0.0)), NULL);
    CHECK(tensor_get(x->grad, 0) == 0.0 && tensor_get(x->grad, 1) == 0.0);
    // logsumexp of a 0-dim tensor is itself, with gradient 1.
    Tensor *s = tensor_requires_grad(tensor_scalar(DTYPE_F64, 0.5));
    tensor_backward(op_logsumexp(s, 0, false), NULL);
    CHECK(tensor_get(s->grad, 0) == 1.0);
    // Cross-entropy with per-sample weights that are all zero (FixMatch, no confident pseudo-label
    // yet) is 0 with zero gradients, not NaN.
    Tensor *logits = tensor_requires_grad(tensor_from_data(DTYPE_F64, SHAPE(2, 3), (double[]){1, 2, 3, 4, 5, 6}));
    CrossEntropyOptions options = cross_entropy_defaults();
    options.sample_weight = tensor_zeros(DTYPE_F64, SHAPE(2));
    Tensor *loss = op_cross_entropy(logits, tensor_from_data(DTYPE_I64, SHAPE(2), (int64_t[]){0, 2}), options);
    tensor_backward(loss, NULL);
    CHECK(tensor_item(loss) == 0.0);
    for (int i = 0; i < 6; i++) CHECK(tensor_get(logits->grad, i) == 0.0);
    // PyTorch's default ignore_index is -100.
    Tensor *ignored = op_cross_entropy(tensor_detach(logits), tensor_from_data(DTYPE_I64, SHAPE(2), (int64_t[]){-100, 1}),
                                       cross_entropy_defaults());
    CHECK_CLOSE(tensor_item(ignored), 6.0 - 5.0 + log(exp(-2.0) + exp(-1.0) + 1.0), 1e-12, 0);
    tensor_scope_end(scope);
}

TEST(integer_copies_are_exact_and_stores_saturate) {
    TensorScope scope = tensor_scope_begin();
    int64_t big[4] = {((int64_t)1 << 60) + 1, -3, 7, INT64_MAX};
    Tensor *t = op_transpose(tensor_from_data(DTYPE_I64, SHAPE(2, 2), big), 0, 1);
    Tensor *c = op_contiguous(t);  // a strided same-dtype copy
    CHECK(tensor_i64(c)[0] == big[0] && tensor_i64(c)[3] == INT64_MAX && tensor_i64(c)[1] == 7);
    uint8_t u8[3];
    dtype_store(u8, DTYPE_U8, 0, -1.0);
    dtype_store(u8, DTYPE_U8, 1, 300.0);
    dtype_store(u8, DTYPE_U8, 2, NAN);
    CHECK(u8[0] == 0 && u8[1] == 255 && u8[2] == 0);
    int32_t i32[2];
    dtype_store(i32, DTYPE_I32, 0, 1e20);
    dtype_store(i32, DTYPE_I32, 1, -1e20);
    CHECK(i32[0] == INT32_MAX && i32[1] == INT32_MIN);
    tensor_scope_end(scope);
}

TEST(very_deep_graph_releases_without_recursion) {
    TensorScope scope = tensor_scope_begin();
    Tensor *x = tensor_requires_grad(tensor_full(DTYPE_F32, SHAPE(1), 1.0));
    Tensor *y = x;
    // 300000 levels of recursion would need far more than the 8 MiB C stack: a regression
    // crashes this program, which the runner counts as a failure.
    for (int i = 0; i < 300000; i++) y = op_add_scalar(y, 0.0);
    Tensor *kept = tensor_keep(y);
    tensor_scope_end(scope);
    CHECK(kept->refcount == 1 && kept->node != NULL);
    tensor_release(kept);  // frees the chain node after node
}

int main(void) {
    RUN_TEST(shape_macro_and_creation);
    RUN_TEST(views_share_storage);
    RUN_TEST(view_of_strided_tensors);
    RUN_TEST(dtype_conversions);
    RUN_TEST(scopes_release_and_keep);
    RUN_TEST(autograd_accumulates_and_zeroes);
    RUN_TEST(autograd_shared_trunk_two_heads);
    RUN_TEST(autograd_no_grad_and_detach);
    RUN_TEST(autograd_input_gradient_and_retain);
    RUN_TEST(autograd_deep_chain);
    RUN_TEST(dropout_scales_and_is_seeded);
    RUN_TEST(storage_cache_reuses_freed_blocks);
    RUN_TEST(nan_propagates_through_ops);
    RUN_TEST(edge_case_gradients);
    RUN_TEST(integer_copies_are_exact_and_stores_saturate);
    RUN_TEST(very_deep_graph_releases_without_recursion);
    return test_summary();
}
