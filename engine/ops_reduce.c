// Reductions (sum, mean, var, max, argmax, logsumexp) and softmax / log-softmax.
// Every reduction is brought to a contiguous [outer, R, inner] array: directly when the reduced
// dims form one block, otherwise after moving them to the end.
#include <string.h>

#include "engine/cpu/elementwise.h"
#include "engine/cpu/reduce.h"
#include "engine/ops_internal.h"
#include "kernels/elementwise.h"
#include "kernels/index.h"
#include "kernels/reduce.h"
#include "kernels/softmax.h"

// Runs a reduction kernel on the device, with the workspace it asks for to split long rows.
static void device_reduce(ReduceKind kind, const Tensor *x, Tensor *out, Tensor *index, int64_t outer, int64_t r, int64_t inner) {
    size_t bytes = reduce_workspace_bytes(kind, outer, r, inner);
    void *workspace = bytes ? gpu_alloc(bytes) : NULL;
    reduce_f32_launch(kind, tensor_data(x), tensor_data(out), index ? (int64_t *)tensor_data(index) : NULL, outer, r, inner,
                      workspace, bytes, device_stream());
    GPU_CHECK_LAUNCH();
    if (workspace) gpu_free(workspace);  // stream-ordered reuse on the default stream is safe
}

typedef struct {
    Tensor *x;  // contiguous source in [outer, R, inner] order
    int64_t outer, r, inner;
    Shape keep_shape;  // output shape with reduced dims kept as 1
    Shape out_shape;   // output shape as requested (keepdim or not)
} ReduceLayout;

static ReduceLayout reduce_layout(Tensor *x, const bool *mask, bool keepdim) {
    ReduceLayout layout = {.outer = 1, .r = 1, .inner = 1};
    int first = -1, last = -1;
    for (int d = 0; d < x->ndim; d++) {
        if (mask[d]) {
            if (first < 0) first = d;
            last = d;
        }
        layout.keep_shape.dims[d] = mask[d] ? 1 : x->shape[d];
        if (!mask[d] || keepdim) layout.out_shape.dims[layout.out_shape.ndim++] = mask[d] ? 1 : x->shape[d];
    }
    layout.keep_shape.ndim = x->ndim;
    bool block = first >= 0;
    for (int d = first; block && d <= last; d++) block = mask[d];
    if (first < 0) {  // 0-dim tensor, or nothing to reduce
        layout.x = contiguous(x);
        layout.inner = tensor_numel(x);
        return layout;
    }
    if (block) {
        layout.x = contiguous(x);
        for (int d = 0; d < x->ndim; d++) {
            if (d < first) layout.outer *= x->shape[d];
            else if (d <= last) layout.r *= x->shape[d];
            else layout.inner *= x->shape[d];
        }
        return layout;
    }
    // Scattered dims: permute kept dims first, reduced dims last, and copy.
    int order[TENSOR_MAX_DIMS], n = 0;
    for (int d = 0; d < x->ndim; d++)
        if (!mask[d]) {
            order[n++] = d;
            layout.outer *= x->shape[d];
        }
    for (int d = 0; d < x->ndim; d++)
        if (mask[d]) {
            order[n++] = d;
            layout.r *= x->shape[d];
        }
    bool previous = autograd_set_enabled(false);
    layout.x = contiguous(op_permute(x, order));
    autograd_set_enabled(previous);
    return layout;
}

// ---------------------------------------------------------------- sum, mean

static void sum_backward(AutogradNode *node, Tensor *g) {
    Tensor *x = node->inputs[0];
    Shape keep = tensor_shape(x);
    for (int d = 0; d < x->ndim; d++)
        if (node->ints[d]) keep.dims[d] = 1;
    Tensor *grad = op_expand(op_reshape(g, keep), tensor_shape(x));
    if (node->reals[0] != 1.0) grad = op_mul_scalar(grad, node->reals[0]);
    autograd_pass_grad(node, 0, grad);
}

static Tensor *sum_scaled(const char *name, Tensor *x, const int *dims, int n_dims, bool keepdim, bool mean) {
    check_float_input_any_device(name, x);
    bool mask[TENSOR_MAX_DIMS];
    dims_to_mask(x, dims, n_dims, mask);
    ReduceLayout layout = reduce_layout(x, mask, keepdim);
    Tensor *out = tensor_empty_on(x->dtype, layout.out_shape, x->storage->device);
    double scale = mean ? 1.0 / (double)layout.r : 1.0;
    if (tensor_is_cuda(x)) {
        device_reduce(REDUCE_SUM, layout.x, out, NULL, layout.outer, layout.r, layout.inner);
        if (mean) {
            unary_forward_f32_launch(UNARY_mul_scalar, tensor_data(out), tensor_data(out), tensor_numel(out), scale, 0, device_stream());
            GPU_CHECK_LAUNCH();
        }
    } else {
        DISPATCH_FLOAT(x, cpu_sum, tensor_data(layout.x), tensor_data(out), layout.outer, layout.r, layout.inner);
    }
    if (mean && !tensor_is_cuda(x)) {
        int64_t n = tensor_numel(out);
        if (x->dtype == DTYPE_F32)
            for (int64_t i = 0; i < n; i++) tensor_f32(out)[i] *= (float)scale;
        else
            for (int64_t i = 0; i < n; i++) tensor_f64(out)[i] *= scale;
    }
    if (autograd_needed(1, &x)) {
        AutogradNode *node = autograd_record(out, name, sum_backward, 1, &x);
        for (int d = 0; d < x->ndim; d++) node->ints[d] = mask[d];
        node->reals[0] = scale;
    }
    return out;
}

Tensor *op_sum(Tensor *x, const int *dims, int n_dims, bool keepdim) { return sum_scaled("sum", x, dims, n_dims, keepdim, false); }
Tensor *op_mean(Tensor *x, const int *dims, int n_dims, bool keepdim) { return sum_scaled("mean", x, dims, n_dims, keepdim, true); }
Tensor *op_sum_all(Tensor *x) { return op_sum(x, NULL, 0, false); }
Tensor *op_mean_all(Tensor *x) { return op_mean(x, NULL, 0, false); }

Tensor *op_var(Tensor *x, const int *dims, int n_dims, int correction, bool keepdim) {
    bool mask[TENSOR_MAX_DIMS];
    dims_to_mask(x, dims, n_dims, mask);
    int64_t count = 1;
    for (int d = 0; d < x->ndim; d++)
        if (mask[d]) count *= x->shape[d];
    Tensor *centered = op_sub(x, op_mean(x, dims, n_dims, true));
    Tensor *squares = op_sum(op_mul(centered, centered), dims, n_dims, keepdim);
    double divisor = (double)(count - correction);
    return op_mul_scalar(squares, divisor > 0 ? 1.0 / divisor : NAN);
}

Tensor *op_sum_to_shape(Tensor *x, Shape shape) {
    if (shape_equal(tensor_shape(x), shape)) return x;
    int dims[TENSOR_MAX_DIMS], n = 0;
    int lead = x->ndim - shape.ndim;
    if (lead < 0) tensor_fatal("sum_to_shape", "target has more dimensions than the tensor");
    for (int d = 0; d < x->ndim; d++) {
        int t = d - lead;
        if (t < 0 || (shape.dims[t] == 1 && x->shape[d] != 1)) dims[n++] = d;
        else if (shape.dims[t] != x->shape[d]) tensor_fatal("sum_to_shape", "dimension %d: %lld cannot sum to %lld", d, (long long)x->shape[d], (long long)shape.dims[t]);
    }
    if (n == 0) return op_reshape(x, shape);
    return op_reshape(op_sum(x, dims, n, true), shape);
}

// ---------------------------------------------------------------- max, argmax, logsumexp

static void max_backward(AutogradNode *node, Tensor *g) {
    Tensor *x = node->inputs[0], *index = node->saved[0];
    if (tensor_is_cuda(x)) {
        // The gradient goes to the position of each maximum: the scatter of gather's backward, with
        // the saved index viewed with the reduced dim kept (size 1).
        if (x->ndim == 0) {  // the maximum of a scalar is the scalar
            autograd_pass_grad(node, 0, g);
            return;
        }
        int dim = (int)node->ints[0];
        Shape keep = tensor_shape(x);
        keep.dims[dim] = 1;
        Tensor *index_keep = op_reshape(index, keep), *g_keep = contiguous(op_reshape(g, keep));
        Tensor *grad = tensor_empty_like(x);
        gather_backward_launch(tensor_data(g_keep), x->shape, x->ndim, dim, tensor_data(index_keep), 1, index_keep->shape,
                               tensor_data(grad), device_stream());
        GPU_CHECK_LAUNCH();
        autograd_pass_grad(node, 0, grad);
        return;
    }
    int dim = (int)node->ints[0];
    int64_t outer = 1, r = x->shape[dim], inner = 1;
    for (int d = 0; d < dim; d++) outer *= x->shape[d];
    for (int d = dim + 1; d < x->ndim; d++) inner *= x->shape[d];
    Tensor *gc = contiguous(g);
    Tensor *grad = tensor_zeros(x->dtype, tensor_shape(x));
    const int64_t *idx = tensor_i64(index);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            int64_t at = (o * r + idx[o * inner + i]) * inner + i;
            if (x->dtype == DTYPE_F32) tensor_f32(grad)[at] = tensor_f32(gc)[o * inner + i];
            else tensor_f64(grad)[at] = tensor_f64(gc)[o * inner + i];
        }
    autograd_pass_grad(node, 0, grad);
}

static Tensor *max_with_index(const char *name, Tensor *x, int dim, bool keepdim, Tensor **index_out) {
    check_float_input_any_device(name, x);
    dim = tensor_normalize_dim(x, dim);
    bool mask[TENSOR_MAX_DIMS] = {0};
    if (x->ndim) mask[dim] = true;
    ReduceLayout layout = reduce_layout(x, mask, keepdim);
    if (layout.r == 0) tensor_fatal(name, "reduction over an empty dimension");
    Tensor *out = tensor_empty_on(x->dtype, layout.out_shape, x->storage->device);
    Tensor *index = tensor_empty_on(DTYPE_I64, layout.out_shape, x->storage->device);
    if (tensor_is_cuda(x))
        device_reduce(REDUCE_MAX, layout.x, out, index, layout.outer, layout.r, layout.inner);
    else
        DISPATCH_FLOAT(x, cpu_max, tensor_data(layout.x), tensor_data(out), tensor_i64(index), layout.outer, layout.r, layout.inner);
    *index_out = index;
    return out;
}

Tensor *op_max(Tensor *x, int dim, bool keepdim) {
    Tensor *index;
    Tensor *out = max_with_index("max", x, dim, keepdim, &index);
    if (autograd_needed(1, &x)) {
        AutogradNode *node = autograd_record(out, "max", max_backward, 1, &x);
        node->ints[0] = x->ndim ? tensor_normalize_dim(x, dim) : 0;
        autograd_save(node, 0, index);
    }
    return out;
}

Tensor *op_argmax(Tensor *x, int dim, bool keepdim) {
    Tensor *index;
    bool previous = autograd_set_enabled(false);
    max_with_index("argmax", x, dim, keepdim, &index);
    autograd_set_enabled(previous);
    return index;
}

static void logsumexp_backward(AutogradNode *node, Tensor *g) {
    Tensor *x = node->inputs[0];
    int dim = (int)node->ints[0];
    Tensor *keep_g = node->ints[1] || x->ndim == 0 ? g : op_unsqueeze(g, dim);
    autograd_pass_grad(node, 0, op_mul(op_softmax(x, dim), keep_g));
}

Tensor *op_logsumexp(Tensor *x, int dim, bool keepdim) {
    check_float_input_any_device("logsumexp", x);
    dim = tensor_normalize_dim(x, dim);
    bool mask[TENSOR_MAX_DIMS] = {0};
    mask[dim] = true;
    ReduceLayout layout = reduce_layout(x, mask, keepdim);
    Tensor *out = tensor_empty_on(x->dtype, layout.out_shape, x->storage->device);
    if (tensor_is_cuda(x))
        device_reduce(REDUCE_LOGSUMEXP, layout.x, out, NULL, layout.outer, layout.r, layout.inner);
    else
        DISPATCH_FLOAT(x, cpu_logsumexp, tensor_data(layout.x), tensor_data(out), layout.outer, layout.r, layout.inner);
    if (autograd_needed(1, &x)) {
        AutogradNode *node = autograd_record(out, "logsumexp", logsumexp_backward, 1, &x);
        node->ints[0] = dim;
        node->ints[1] = keepdim;
    }
    return out;
}

// ---------------------------------------------------------------- softmax, log_softmax

static void softmax_backward(AutogradNode *node, Tensor *g) {
    Tensor *y = node->saved[0];
    int dim = (int)node->ints[0];
    int64_t outer = 1, r = y->shape[dim], inner = 1;
    for (int d = 0; d < dim; d++) outer *= y->shape[d];
    for (int d = dim + 1; d < y->ndim; d++) inner *= y->shape[d];
    Tensor *gc = contiguous(g);
    Tensor *grad = tensor_empty_like(y);
    if (tensor_is_cuda(y)) {
        softmax_backward_f32_launch(tensor_data(y), tensor_data(gc), tensor_data(grad), outer, r, inner, (int)node->ints[1], device_stream());
        GPU_CHECK_LAUNCH();
    } else {
        DISPATCH_FLOAT(y, cpu_softmax_backward, tensor_data(y), tensor_data(gc), tensor_data(grad), outer, r, inner, (int)node->ints[1]);
    }
    autograd_pass_grad(node, 0, grad);
}

static Tensor *softmax_any(const char *name, Tensor *x, int dim, int log_form) {
    check_float_input_any_device(name, x);
    dim = tensor_normalize_dim(x, dim);
    Tensor *xc = contiguous(x);
    int64_t outer = 1, r = x->ndim ? x->shape[dim] : 1, inner = 1;
    for (int d = 0; d < dim; d++) outer *= x->shape[d];
    for (int d = dim + 1; d < x->ndim; d++) inner *= x->shape[d];
    Tensor *y = tensor_empty_like(x);
    if (tensor_is_cuda(x)) {
        softmax_forward_f32_launch(tensor_data(xc), tensor_data(y), outer, r, inner, log_form, device_stream());
        GPU_CHECK_LAUNCH();
    } else {
        DISPATCH_FLOAT(x, cpu_softmax, tensor_data(xc), tensor_data(y), outer, r, inner, log_form);
    }
    if (autograd_needed(1, &x)) {
        AutogradNode *node = autograd_record(y, name, softmax_backward, 1, &x);
        node->ints[0] = dim;
        node->ints[1] = log_form;
        autograd_save(node, 0, y);
    }
    return y;
}

Tensor *op_softmax(Tensor *x, int dim) { return softmax_any("softmax", x, dim, 0); }
Tensor *op_log_softmax(Tensor *x, int dim) { return softmax_any("log_softmax", x, dim, 1); }
