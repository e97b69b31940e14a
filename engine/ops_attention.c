// Scaled dot-product attention, softmax(q k^T * scale + mask) v, composed from matmul and softmax
// so that its gradient comes from theirs. Scores take O(Tq * Tk) memory per head; the CUDA path
// replaces this with a tiled flash-attention kernel.
#include "engine/ops_internal.h"

Tensor *op_scaled_dot_product_attention(Tensor *q, Tensor *k, Tensor *v, Tensor *mask, bool causal, double scale) {
    check_float_input("attention", q);
    check_float_input("attention", k);
    check_float_input("attention", v);
    if (q->ndim < 2 || k->ndim != q->ndim || v->ndim != q->ndim)
        tensor_fatal("attention", "q, k, v must have the same number (>= 2) of dims: [..., T, D]");
    int64_t d = q->shape[q->ndim - 1], tq = q->shape[q->ndim - 2], tk = k->shape[k->ndim - 2];
    if (k->shape[k->ndim - 1] != d) tensor_fatal("attention", "q has feature size %lld but k has %lld", (long long)d, (long long)k->shape[k->ndim - 1]);
    if (v->shape[v->ndim - 2] != tk) tensor_fatal("attention", "k has %lld tokens but v has %lld", (long long)tk, (long long)v->shape[v->ndim - 2]);
    if (scale <= 0) scale = 1.0 / sqrt((double)d);
    Tensor *scores = op_mul_scalar(op_matmul(q, op_transpose(k, -2, -1)), scale);
    Tensor *neg_inf = tensor_full(q->dtype, SHAPE(), -INFINITY);
    if (causal) {
        // Query i attends to keys j <= i (top-left aligned, as torch's is_causal).
        Tensor *allowed = tensor_empty(DTYPE_U8, SHAPE(tq, tk));
        for (int64_t i = 0; i < tq; i++)
            for (int64_t j = 0; j < tk; j++) ((uint8_t *)tensor_data(allowed))[i * tk + j] = j <= i;
        scores = op_where(allowed, scores, neg_inf);
    }
    if (mask) {
        if (mask->dtype == DTYPE_U8) scores = op_where(mask, scores, neg_inf);
        else scores = op_add(scores, op_to_dtype(mask, q->dtype));
    }
    return op_matmul(op_softmax(scores, -1), v);
}
