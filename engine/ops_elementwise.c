// Elementwise ops: unary (activation functions, scalar arithmetic), broadcasting binary
// arithmetic, where / masked_fill, and the raw in-place accumulation used by autograd.
#include <string.h>

#include "engine/cpu/elementwise.h"
#include "engine/ops_internal.h"
#include "kernels/elementwise.h"
#include "kernels/where.h"

// ---------------------------------------------------------------- unary

static void unary_backward(AutogradNode *node, Tensor *grad_y) {
    Tensor *x = node->saved[0], *y = node->saved[1];
    Tensor *g = contiguous(grad_y);
    Tensor *grad_x = tensor_empty_like(x);
    if (tensor_is_cuda(x)) {
        unary_backward_f32_launch((UnaryOp)node->ints[0], tensor_data(x), tensor_data(y), tensor_data(g), tensor_data(grad_x),
                                  tensor_numel(x), node->reals[0], node->reals[1], device_stream());
        GPU_CHECK_LAUNCH();
    } else {
        DISPATCH_FLOAT(x, cpu_unary_backward, (UnaryOp)node->ints[0], tensor_data(x), tensor_data(y), tensor_data(g),
                       tensor_data(grad_x), tensor_numel(x), node->reals[0], node->reals[1]);
    }
    autograd_pass_grad(node, 0, grad_x);
}

static Tensor *unary(UnaryOp op, Tensor *x, double p0, double p1) {
    const char *name = unary_op_name(op);
    check_float_input_any_device(name, x);
    Tensor *xc = contiguous(x);
    Tensor *y = tensor_empty_like(x);
    if (tensor_is_cuda(x)) {
        unary_forward_f32_launch(op, tensor_data(xc), tensor_data(y), tensor_numel(x), p0, p1, device_stream());
        GPU_CHECK_LAUNCH();
    } else {
        DISPATCH_FLOAT(x, cpu_unary_forward, op, tensor_data(xc), tensor_data(y), tensor_numel(x), p0, p1);
    }
    if (autograd_needed(1, &x)) {
        AutogradNode *node = autograd_record(y, name, unary_backward, 1, &x);
        node->ints[0] = op;
        node->reals[0] = p0;
        node->reals[1] = p1;
        // ReLU's derivative (x > 0) equals (y > 0) for every x (y = x where x > 0, else 0, NaN stays
        // NaN): keep y only, so the input (typically a batch-norm output) is freed after the forward
        // instead of living until the backward -- one activation tensor less per ReLU.
        autograd_save(node, 0, op == UNARY_relu ? y : xc);
        autograd_save(node, 1, y);
    }
    return y;
}

Tensor *op_exp(Tensor *x) { return unary(UNARY_exp, x, 0, 0); }
Tensor *op_log(Tensor *x) { return unary(UNARY_log, x, 0, 0); }
Tensor *op_sqrt(Tensor *x) { return unary(UNARY_sqrt, x, 0, 0); }
Tensor *op_rsqrt(Tensor *x) { return unary(UNARY_rsqrt, x, 0, 0); }
Tensor *op_abs(Tensor *x) { return unary(UNARY_abs, x, 0, 0); }
Tensor *op_neg(Tensor *x) { return unary(UNARY_neg, x, 0, 0); }
Tensor *op_add_scalar(Tensor *x, double s) { return unary(UNARY_add_scalar, x, s, 0); }
Tensor *op_mul_scalar(Tensor *x, double s) { return unary(UNARY_mul_scalar, x, s, 0); }
Tensor *op_rsub_scalar(Tensor *x, double s) { return unary(UNARY_rsub_scalar, x, s, 0); }
Tensor *op_pow_scalar(Tensor *x, double exponent) { return unary(UNARY_pow_scalar, x, exponent, 0); }
Tensor *op_clamp(Tensor *x, double low, double high) { return unary(UNARY_clamp, x, low, high); }
Tensor *op_sigmoid(Tensor *x) { return unary(UNARY_sigmoid, x, 0, 0); }
Tensor *op_tanh(Tensor *x) { return unary(UNARY_tanh, x, 0, 0); }
Tensor *op_relu(Tensor *x) { return unary(UNARY_relu, x, 0, 0); }
Tensor *op_leaky_relu(Tensor *x, double slope) { return unary(UNARY_leaky_relu, x, slope, 0); }
Tensor *op_gelu(Tensor *x) { return unary(UNARY_gelu, x, 0, 0); }
Tensor *op_gelu_tanh(Tensor *x) { return unary(UNARY_gelu_tanh, x, 0, 0); }
Tensor *op_quick_gelu(Tensor *x) { return unary(UNARY_quick_gelu, x, 0, 0); }
Tensor *op_silu(Tensor *x) { return unary(UNARY_silu, x, 0, 0); }
Tensor *op_grad_reverse(Tensor *x, double lambda) { return unary(UNARY_grad_reverse, x, lambda, 0); }

// ---------------------------------------------------------------- binary, broadcasting

// Merges adjacent dims that are contiguous in every operand, so that e.g. [B, C, H, W] + [B, C, H, W]
// runs as one flat loop and a per-channel bias walks H*W at a time. Returns the new ndim.
static int coalesce_dims(int ndim, int64_t *shape, int64_t *stride_a, int64_t *stride_b, int64_t *stride_out) {
    if (ndim == 0) {
        shape[0] = 1;
        stride_a[0] = stride_b[0] = stride_out[0] = 0;
        return 1;
    }
    int out = 0;
    for (int d = 1; d < ndim; d++) {
        bool mergeable = stride_a[out] == stride_a[d] * shape[d] && stride_b[out] == stride_b[d] * shape[d] &&
                         stride_out[out] == stride_out[d] * shape[d];
        if (mergeable) {
            shape[out] *= shape[d];
            stride_a[out] = stride_a[d];
            stride_b[out] = stride_b[d];
            stride_out[out] = stride_out[d];
        } else {
            out++;
            shape[out] = shape[d];
            stride_a[out] = stride_a[d];
            stride_b[out] = stride_b[d];
            stride_out[out] = stride_out[d];
        }
    }
    return out + 1;
}

static void binary_backward(AutogradNode *node, Tensor *g) {
    Tensor *a = node->inputs[0], *b = node->inputs[1];
    Shape shape_a = tensor_shape(a), shape_b = tensor_shape(b);
    switch ((BinaryOp)node->ints[0]) {
    case BINARY_ADD:
        if (autograd_input_needs_grad(node, 0)) autograd_pass_grad(node, 0, op_sum_to_shape(g, shape_a));
        if (autograd_input_needs_grad(node, 1)) autograd_pass_grad(node, 1, op_sum_to_shape(g, shape_b));
        break;
    case BINARY_SUB:
        if (autograd_input_needs_grad(node, 0)) autograd_pass_grad(node, 0, op_sum_to_shape(g, shape_a));
        if (autograd_input_needs_grad(node, 1)) autograd_pass_grad(node, 1, op_neg(op_sum_to_shape(g, shape_b)));
        break;
    case BINARY_MUL:
        if (autograd_input_needs_grad(node, 0)) autograd_pass_grad(node, 0, op_sum_to_shape(op_mul(g, b), shape_a));
        if (autograd_input_needs_grad(node, 1)) autograd_pass_grad(node, 1, op_sum_to_shape(op_mul(g, a), shape_b));
        break;
    case BINARY_DIV:
        if (autograd_input_needs_grad(node, 0)) autograd_pass_grad(node, 0, op_sum_to_shape(op_div(g, b), shape_a));
        if (autograd_input_needs_grad(node, 1)) {
            // d(a/b)/db = -a / b^2 = -out / b
            Tensor *out = node->saved[0];
            autograd_pass_grad(node, 1, op_sum_to_shape(op_neg(op_div(op_mul(g, out), b)), shape_b));
        }
        break;
    }
}

static Tensor *binary(BinaryOp op, const char *name, Tensor *a, Tensor *b) {
    check_float_input_any_device(name, a);
    check_float_input_any_device(name, b);
    check_same_dtype(name, a, b);
    check_same_device(name, a, b);
    Shape shape = broadcast_shapes(name, tensor_shape(a), tensor_shape(b));
    Tensor *out = tensor_empty_on(a->dtype, shape, a->storage->device);
    int64_t dims[TENSOR_MAX_DIMS], stride_a[TENSOR_MAX_DIMS], stride_b[TENSOR_MAX_DIMS], stride_out[TENSOR_MAX_DIMS];
    memcpy(dims, shape.dims, sizeof dims);
    broadcast_strides(a, shape, stride_a);
    broadcast_strides(b, shape, stride_b);
    memcpy(stride_out, out->stride, sizeof stride_out);
    int ndim = coalesce_dims(shape.ndim, dims, stride_a, stride_b, stride_out);
    if (tensor_numel(out) > 0 && tensor_is_cuda(a)) {
        KernelBroadcast layout = {.ndim = ndim};
        for (int d = 0; d < ndim; d++) {
            layout.shape[d] = dims[d];
            layout.stride_a[d] = stride_a[d];
            layout.stride_b[d] = stride_b[d];
        }
        binary_f32_launch(op, tensor_data(a), tensor_data(b), tensor_data(out), layout, device_stream());
        GPU_CHECK_LAUNCH();
    } else if (tensor_numel(out) > 0) {
        DISPATCH_FLOAT(a, cpu_binary, op, ndim, dims, tensor_data(a), stride_a, tensor_data(b), stride_b, tensor_data(out));
    }
    Tensor *inputs[2] = {a, b};
    if (autograd_needed(2, inputs)) {
        AutogradNode *node = autograd_record(out, name, binary_backward, 2, inputs);
        node->ints[0] = op;
        if (op == BINARY_DIV) autograd_save(node, 0, out);
    }
    return out;
}

Tensor *op_add(Tensor *a, Tensor *b) { return binary(BINARY_ADD, "add", a, b); }
Tensor *op_sub(Tensor *a, Tensor *b) { return binary(BINARY_SUB, "sub", a, b); }
Tensor *op_mul(Tensor *a, Tensor *b) { return binary(BINARY_MUL, "mul", a, b); }
Tensor *op_div(Tensor *a, Tensor *b) { return binary(BINARY_DIV, "div", a, b); }

// ---------------------------------------------------------------- where, masked_fill

static void where_backward(AutogradNode *node, Tensor *g) {
    Tensor *condition = node->inputs[0];
    Tensor *zero = tensor_empty_on(g->dtype, SHAPE(), g->storage->device);
    tensor_fill_raw(zero, 0.0);
    if (autograd_input_needs_grad(node, 1))
        autograd_pass_grad(node, 1, op_sum_to_shape(op_where(condition, g, zero), tensor_shape(node->inputs[1])));
    if (autograd_input_needs_grad(node, 2))
        autograd_pass_grad(node, 2, op_sum_to_shape(op_where(condition, zero, g), tensor_shape(node->inputs[2])));
}

Tensor *op_where(Tensor *condition, Tensor *a, Tensor *b) {
    check_float_input_any_device("where", a);
    check_float_input_any_device("where", b);
    check_same_dtype("where", a, b);
    check_same_device("where", a, b);
    Shape shape = broadcast_shapes("where", broadcast_shapes("where", tensor_shape(condition), tensor_shape(a)), tensor_shape(b));
    if (tensor_is_cuda(a)) {
        if (condition->dtype != DTYPE_U8) tensor_fatal("where", "on the CUDA device the condition must be a u8 mask, got %s", dtype_name(condition->dtype));
        Tensor *c = op_to_device(condition, a->storage->device);
        Tensor *out = tensor_empty_on(a->dtype, shape, a->storage->device);
        KernelWhereLayout layout = {.ndim = shape.ndim ? shape.ndim : 1, .shape = {1}};
        for (int d = 0; d < shape.ndim; d++) layout.shape[d] = shape.dims[d];
        Shape layout_shape = {.ndim = layout.ndim};
        for (int d = 0; d < layout.ndim; d++) layout_shape.dims[d] = layout.shape[d];
        broadcast_strides(c, layout_shape, layout.stride_condition);
        broadcast_strides(a, layout_shape, layout.stride_a);
        broadcast_strides(b, layout_shape, layout.stride_b);
        where_f32_launch(tensor_data(c), tensor_data(a), tensor_data(b), tensor_data(out), layout, device_stream());
        GPU_CHECK_LAUNCH();
        Tensor *inputs[3] = {condition, a, b};
        if (autograd_needed(3, inputs)) autograd_record(out, "where", where_backward, 3, inputs);
        return out;
    }
    // Materialise the broadcast operands (where is not a hot op) and select elementwise.
    bool previous = autograd_set_enabled(false);
    Tensor *c = contiguous(op_expand(condition, shape));
    Tensor *ac = contiguous(op_expand(a, shape));
    Tensor *bc = contiguous(op_expand(b, shape));
    autograd_set_enabled(previous);
    Tensor *out = tensor_empty(a->dtype, shape);
    int64_t n = tensor_numel(out);
    size_t size = dtype_size(a->dtype);
    const char *pa = tensor_data(ac), *pb = tensor_data(bc);
    char *po = tensor_data(out);
    for (int64_t i = 0; i < n; i++) {
        bool take_a = c->dtype == DTYPE_U8 ? ((const uint8_t *)tensor_data(c))[i] != 0 : tensor_get(c, i) != 0;
        memcpy(po + i * (int64_t)size, (take_a ? pa : pb) + i * (int64_t)size, size);
    }
    Tensor *inputs[3] = {condition, a, b};
    if (autograd_needed(3, inputs)) autograd_record(out, "where", where_backward, 3, inputs);
    return out;
}

Tensor *op_masked_fill(Tensor *x, Tensor *mask, double value) {
    Tensor *fill = tensor_empty_on(x->dtype, SHAPE(), x->storage->device);
    tensor_fill_raw(fill, value);
    return op_where(mask, fill, x);
}

// ---------------------------------------------------------------- raw accumulation

void op_axpy_inplace_raw(Tensor *dst, double alpha, Tensor *src) {
    if (tensor_numel(dst) != tensor_numel(src)) tensor_fatal("accumulate", "element counts differ");
    if (tensor_is_cuda(dst) || tensor_is_cuda(src)) {
        // Staged through the host until the device has an axpy kernel: correct, not fast.
        Tensor *host_dst = tensor_to_device_raw(dst, device_cpu()), *host_src = tensor_to_device_raw(src, device_cpu());
        op_axpy_inplace_raw(host_dst, alpha, host_src);
        tensor_copy_raw(dst, host_dst);
        return;
    }
    Tensor *s = contiguous(src);
    int64_t n = tensor_numel(dst);
    if (tensor_is_contiguous(dst) && dst->dtype == DTYPE_F32 && s->dtype == DTYPE_F32) {
        float *d = tensor_f32(dst);
        const float *p = tensor_f32(s);
        float a = (float)alpha;
#pragma omp parallel for simd if (n >= 32768)
        for (int64_t i = 0; i < n; i++) d[i] += a * p[i];
    } else if (tensor_is_contiguous(dst) && dst->dtype == DTYPE_F64 && s->dtype == DTYPE_F64) {
        double *d = tensor_f64(dst);
        const double *p = tensor_f64(s);
        for (int64_t i = 0; i < n; i++) d[i] += alpha * p[i];
    } else {
        for (int64_t i = 0; i < n; i++) tensor_set(dst, i, tensor_get(dst, i) + alpha * tensor_get(s, i));
    }
}

void op_add_inplace_raw(Tensor *dst, Tensor *src) { op_axpy_inplace_raw(dst, 1.0, src); }
