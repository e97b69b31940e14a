// Scaled dot-product attention, softmax(q k^T * scale + mask) v, composed from matmul and softmax
// so that its gradient comes from theirs. Scores take O(Tq * Tk) memory per head; the CUDA path
// replaces this with a tiled flash-attention kernel.
#include "engine/cpu/attention.h"
#include "engine/ops_internal.h"
#include "kernels/attention.h"

// ---------------------------------------------------------------- CUDA: flash attention
// saved: 0 q, 1 k, 2 v (contiguous [BH, T, D]), 3 out, 4 lse, 5 bool mask, 6 float mask;
// ints: BH, Tq, Tk, D, Dv, causal, bool stride, float stride; reals: scale.

static void attention_device_backward(AutogradNode *node, Tensor *grad_out) {
    const int64_t *n = node->ints;
    Tensor *dout = contiguous(grad_out);
    Tensor *q = node->saved[0], *k = node->saved[1], *v = node->saved[2];
    Tensor *dq = autograd_input_needs_grad(node, 0) ? tensor_empty_like(node->inputs[0]) : NULL;
    Tensor *dk = autograd_input_needs_grad(node, 1) ? tensor_empty_like(node->inputs[1]) : NULL;
    Tensor *dv = autograd_input_needs_grad(node, 2) ? tensor_empty_like(node->inputs[2]) : NULL;
    size_t bytes = attention_backward_workspace_bytes(n[0], n[1]);
    void *workspace = bytes ? gpu_alloc(bytes) : NULL;
    Tensor *bool_mask = node->saved[5], *float_mask = node->saved[6];
    attention_backward_launch(tensor_data(q), tensor_data(k), tensor_data(v), tensor_data(node->saved[3]), tensor_data(dout),
                              tensor_data(node->saved[4]), bool_mask ? tensor_data(bool_mask) : NULL, n[6],
                              float_mask ? tensor_data(float_mask) : NULL, n[7], dq ? tensor_data(dq) : NULL,
                              dk ? tensor_data(dk) : NULL, dv ? tensor_data(dv) : NULL, workspace, n[0], n[1], n[2], n[3], n[4],
                              (int)n[5], (float)node->reals[0], device_stream());
    GPU_CHECK_LAUNCH();
    if (workspace) gpu_free(workspace);  // reuse is ordered on the same stream
    autograd_pass_grad(node, 0, dq);
    autograd_pass_grad(node, 1, dk);
    autograd_pass_grad(node, 2, dv);
}

// A mask as the kernels address it: one [Tq, Tk] plane for every batch-head (stride 0) or a full
// [BH, Tq, Tk] (stride Tq * Tk); other broadcasts are expanded to the full form.
static Tensor *device_mask(Tensor *mask, Shape scores_shape, int64_t Tq, int64_t Tk, int64_t *stride) {
    if (mask->ndim >= 2 && tensor_numel(mask) == Tq * Tk && mask->shape[mask->ndim - 1] == Tk) {
        *stride = 0;
        return contiguous(mask);
    }
    *stride = Tq * Tk;
    bool previous = autograd_set_enabled(false);
    Tensor *full = contiguous(op_expand(mask, scores_shape));
    autograd_set_enabled(previous);
    return full;
}

static Tensor *attention_device(Tensor *q, Tensor *k, Tensor *v, Tensor *mask, bool causal, double scale) {
    const char *op = "attention";
    check_same_device(op, q, k);
    check_same_device(op, q, v);
    int nd = q->ndim;
    int64_t Tq = q->shape[nd - 2], Tk = k->shape[nd - 2], D = q->shape[nd - 1], Dv = v->shape[nd - 1];
    for (int d = 0; d < nd - 2; d++)
        if (k->shape[d] != q->shape[d] || v->shape[d] != q->shape[d])
            tensor_fatal(op, "on the CUDA device q, k and v need the same batch dimensions (no broadcasting)");
    if (D > ATTENTION_MAX_HEAD_DIM || Dv > ATTENTION_MAX_HEAD_DIM)
        tensor_fatal(op, "head dimensions %lld, %lld exceed the CUDA kernel's %d", (long long)D, (long long)Dv, ATTENTION_MAX_HEAD_DIM);
    if (mask && mask->requires_grad) tensor_fatal(op, "on the CUDA device an additive mask cannot require gradients");
    int64_t BH = 1;
    for (int d = 0; d < nd - 2; d++) BH *= q->shape[d];
    Shape scores_shape = tensor_shape(q);
    scores_shape.dims[nd - 1] = Tk;
    Tensor *bool_mask = NULL, *float_mask = NULL;
    int64_t bool_stride = 0, float_stride = 0;
    if (mask && mask->dtype == DTYPE_U8) bool_mask = device_mask(op_to_device(mask, q->storage->device), scores_shape, Tq, Tk, &bool_stride);
    else if (mask) float_mask = device_mask(op_to_device(op_to_dtype(mask, DTYPE_F32), q->storage->device), scores_shape, Tq, Tk, &float_stride);
    Tensor *qc = contiguous(q), *kc = contiguous(k), *vc = contiguous(v);
    Shape out_shape = tensor_shape(q);
    out_shape.dims[nd - 1] = Dv;
    Tensor *out = tensor_empty_on(DTYPE_F32, out_shape, q->storage->device);
    Tensor *lse = tensor_empty_on(DTYPE_F32, SHAPE(BH, Tq), q->storage->device);
    attention_forward_launch(tensor_data(qc), tensor_data(kc), tensor_data(vc), bool_mask ? tensor_data(bool_mask) : NULL, bool_stride,
                             float_mask ? tensor_data(float_mask) : NULL, float_stride, tensor_data(out), tensor_data(lse), BH, Tq,
                             Tk, D, Dv, causal, (float)scale, device_stream());
    GPU_CHECK_LAUNCH();
    Tensor *inputs[3] = {q, k, v};
    if (autograd_needed(3, inputs)) {
        AutogradNode *node = autograd_record(out, op, attention_device_backward, 3, inputs);
        Tensor *saved[7] = {qc, kc, vc, out, lse, bool_mask, float_mask};
        for (int i = 0; i < 7; i++) autograd_save(node, i, saved[i]);
        const int64_t ints[8] = {BH, Tq, Tk, D, Dv, causal, bool_stride, float_stride};
        for (int i = 0; i < 8; i++) node->ints[i] = ints[i];
        node->reals[0] = scale;
    }
    return out;
}

// ---------------------------------------------------------------- the op

Tensor *op_scaled_dot_product_attention(Tensor *q, Tensor *k, Tensor *v, Tensor *mask, bool causal, double scale) {
    check_float_input_any_device("attention", q);
    check_float_input_any_device("attention", k);
    check_float_input_any_device("attention", v);
    if (q->ndim < 2 || k->ndim != q->ndim || v->ndim != q->ndim)
        tensor_fatal("attention", "q, k, v must have the same number (>= 2) of dims: [..., T, D]");
    int64_t d = q->shape[q->ndim - 1], tq = q->shape[q->ndim - 2], tk = k->shape[k->ndim - 2];
    if (k->shape[k->ndim - 1] != d) tensor_fatal("attention", "q has feature size %lld but k has %lld", (long long)d, (long long)k->shape[k->ndim - 1]);
    if (v->shape[v->ndim - 2] != tk) tensor_fatal("attention", "k has %lld tokens but v has %lld", (long long)tk, (long long)v->shape[v->ndim - 2]);
    if (scale <= 0) scale = 1.0 / sqrt((double)d);
    if (tensor_is_cuda(q)) return attention_device(q, k, v, mask, causal, scale);
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

// ---------------------------------------------------------------- self-attention from packed qkv
// saved: 0 contiguous qkv, 1 probabilities [B, H, T, T]; ints: B, T, H, Dh; reals: scale.

static void self_attention_backward(AutogradNode *node, Tensor *grad_out) {
    const int64_t *n = node->ints;
    Tensor *qkv = node->saved[0], *dout = contiguous(grad_out);
    Tensor *dqkv = tensor_empty_like(qkv);
    DISPATCH_FLOAT(qkv, cpu_self_attention_backward, tensor_data(qkv), tensor_data(node->saved[1]), tensor_data(dout),
                   tensor_data(dqkv), n[0], n[1], n[2], n[3], node->reals[0]);
    autograd_pass_grad(node, 0, dqkv);
}

Tensor *op_self_attention(Tensor *qkv, int heads, bool causal, double scale) {
    const char *op = "self_attention";
    check_float_input_any_device(op, qkv);
    char shape[96];
    if (qkv->ndim != 3 || heads < 1 || qkv->shape[2] % (3 * (int64_t)heads))
        tensor_fatal(op, "qkv %s must be [B, T, 3 * D] with D a multiple of the %d heads",
                     tensor_shape_string(qkv, shape, sizeof shape), heads);
    int64_t B = qkv->shape[0], T = qkv->shape[1], D = qkv->shape[2] / 3, H = heads, Dh = D / H;
    if (scale <= 0) scale = 1.0 / sqrt((double)Dh);
    if (tensor_is_cuda(qkv) || B * T == 0) {
        // The CUDA device composes the per-head views with its flash-attention kernel.
        Tensor *split = op_reshape(qkv, SHAPE(B, T, 3, H, Dh));
        static const int to_heads[4] = {0, 2, 1, 3};
        Tensor *q = op_permute(op_select(split, 2, 0), to_heads);
        Tensor *k = op_permute(op_select(split, 2, 1), to_heads);
        Tensor *v = op_permute(op_select(split, 2, 2), to_heads);
        Tensor *attended = op_scaled_dot_product_attention(q, k, v, NULL, causal, scale);
        return op_reshape(op_transpose(attended, 1, 2), SHAPE(B, T, D));
    }
    Tensor *qc = contiguous(qkv);
    Tensor *out = tensor_empty(qkv->dtype, SHAPE(B, T, D));
    Tensor *probs = tensor_empty(qkv->dtype, SHAPE(B, H, T, T));
    DISPATCH_FLOAT(qkv, cpu_self_attention_forward, tensor_data(qc), tensor_data(out), tensor_data(probs), B, T, H, Dh,
                   causal, scale);
    if (autograd_needed(1, &qkv)) {
        AutogradNode *node = autograd_record(out, op, self_attention_backward, 1, &qkv);
        autograd_save(node, 0, qc);
        autograd_save(node, 1, probs);
        const int64_t ints[4] = {B, T, H, Dh};
        for (int i = 0; i < 4; i++) node->ints[i] = ints[i];
        node->reals[0] = scale;
    }
    return out;
}
