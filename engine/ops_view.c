// Shape and layout ops. Most are views sharing the input's storage; their backward maps the
// gradient back to the input's layout (reshape back, inverse permutation, pad, sum over expands).
#include <string.h>

#include "engine/ops_internal.h"

static void reshape_backward(AutogradNode *node, Tensor *g) {
    autograd_pass_grad(node, 0, op_reshape(g, tensor_shape(node->inputs[0])));
}

static Tensor *record_reshape_like(Tensor *out, Tensor *x, const char *op) {
    if (autograd_needed(1, &x)) autograd_record(out, op, reshape_backward, 1, &x);
    return out;
}

static Shape resolve_shape(const char *op, const Tensor *x, Shape shape) {
    int64_t known = 1;
    int infer = -1;
    for (int d = 0; d < shape.ndim; d++) {
        if (shape.dims[d] == -1) {
            if (infer >= 0) tensor_fatal(op, "only one dimension can be -1");
            infer = d;
        } else {
            known *= shape.dims[d];
        }
    }
    int64_t n = tensor_numel(x);
    if (infer >= 0) {
        if (known == 0 || n % known) tensor_fatal(op, "cannot infer the -1 dimension for %lld elements", (long long)n);
        shape.dims[infer] = n / known;
    }
    if (shape_numel(shape) != n) {
        char a[96], b[96];
        tensor_fatal(op, "shape %s has %lld elements but the tensor %s has %lld", shape_string(shape, a, sizeof a),
                     (long long)shape_numel(shape), tensor_shape_string(x, b, sizeof b), (long long)n);
    }
    return shape;
}

// Strides that let `shape` view x's elements in row-major order without copying, if any: x's
// dims are grouped into runs that are contiguous with each other, and each run must be covered
// exactly by consecutive dims of the new shape (the rule torch.Tensor.view follows).
static bool view_strides(const Tensor *x, Shape shape, int64_t *stride) {
    int64_t numel = tensor_numel(x);
    if (numel == 0 || x->ndim == 0) {  // no elements, or a scalar: any row-major strides do
        int64_t s = 1;
        for (int d = shape.ndim - 1; d >= 0; d--) {
            stride[d] = s;
            s *= shape.dims[d] > 0 ? shape.dims[d] : 1;
        }
        return true;
    }
    int view_d = shape.ndim - 1;
    int64_t chunk_base_stride = x->stride[x->ndim - 1], tensor_numel = 1, view_numel = 1;
    for (int d = x->ndim - 1; d >= 0; d--) {
        tensor_numel *= x->shape[d];
        bool run_ends = d == 0 || (x->shape[d - 1] != 1 && x->stride[d - 1] != tensor_numel * chunk_base_stride);
        if (!run_ends) continue;
        while (view_d >= 0 && (view_numel < tensor_numel || shape.dims[view_d] == 1)) {
            stride[view_d] = view_numel * chunk_base_stride;
            view_numel *= shape.dims[view_d];
            view_d--;
        }
        if (view_numel != tensor_numel) return false;
        if (d > 0) {
            chunk_base_stride = x->stride[d - 1];
            tensor_numel = 1;
            view_numel = 1;
        }
    }
    return view_d == -1;
}

Tensor *op_reshape(Tensor *x, Shape shape) {
    shape = resolve_shape("reshape", x, shape);
    int64_t stride[TENSOR_MAX_DIMS];
    Tensor *source = x;
    if (!view_strides(x, shape, stride)) {
        source = contiguous(x);
        view_strides(source, shape, stride);
    }
    return record_reshape_like(tensor_view_raw(source, shape.ndim, shape.dims, stride, source->offset), x, "reshape");
}

Tensor *op_view(Tensor *x, Shape shape) {
    shape = resolve_shape("view", x, shape);
    int64_t stride[TENSOR_MAX_DIMS];
    if (!view_strides(x, shape, stride)) {
        char a[96], b[96];
        tensor_fatal("view", "a tensor of shape %s with these strides cannot be viewed as %s without a copy; use op_reshape",
                     tensor_shape_string(x, a, sizeof a), shape_string(shape, b, sizeof b));
    }
    return record_reshape_like(tensor_view_raw(x, shape.ndim, shape.dims, stride, x->offset), x, "view");
}

static void permute_backward(AutogradNode *node, Tensor *g) {
    int inverse[TENSOR_MAX_DIMS];
    for (int d = 0; d < g->ndim; d++) inverse[node->ints[d]] = d;
    autograd_pass_grad(node, 0, op_permute(g, inverse));
}

Tensor *op_permute(Tensor *x, const int *dims) {
    int64_t shape[TENSOR_MAX_DIMS], stride[TENSOR_MAX_DIMS];
    bool seen[TENSOR_MAX_DIMS] = {0};
    int normalized[TENSOR_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) {
        int source = tensor_normalize_dim(x, dims[d]);
        if (seen[source]) tensor_fatal("permute", "dimension %d appears twice", dims[d]);
        seen[source] = true;
        normalized[d] = source;
        shape[d] = x->shape[source];
        stride[d] = x->stride[source];
    }
    Tensor *out = tensor_view_raw(x, x->ndim, shape, stride, x->offset);
    if (autograd_needed(1, &x)) {
        AutogradNode *node = autograd_record(out, "permute", permute_backward, 1, &x);
        for (int d = 0; d < x->ndim; d++) node->ints[d] = normalized[d];
    }
    return out;
}

Tensor *op_transpose(Tensor *x, int dim0, int dim1) {
    int dims[TENSOR_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) dims[d] = d;
    dim0 = tensor_normalize_dim(x, dim0);
    dim1 = tensor_normalize_dim(x, dim1);
    dims[dim0] = dim1;
    dims[dim1] = dim0;
    return op_permute(x, dims);
}

static void narrow_backward(AutogradNode *node, Tensor *g) {
    Tensor *x = node->inputs[0];
    Tensor *grad_x = tensor_empty_on(g->dtype, tensor_shape(x), g->storage->device);
    tensor_fill_raw(grad_x, 0.0);
    int dim = (int)node->ints[0];
    int64_t shape[TENSOR_MAX_DIMS];
    memcpy(shape, grad_x->shape, sizeof shape);
    shape[dim] = node->ints[2];
    Tensor *window = tensor_view_raw(grad_x, grad_x->ndim, shape, grad_x->stride, node->ints[1] * grad_x->stride[dim]);
    tensor_copy_raw(window, g);
    autograd_pass_grad(node, 0, grad_x);
}

Tensor *op_narrow(Tensor *x, int dim, int64_t start, int64_t length) {
    dim = tensor_normalize_dim(x, dim);
    if (start < 0) start += x->shape[dim];
    if (start < 0 || length < 0 || start + length > x->shape[dim])
        tensor_fatal("narrow", "range [%lld, %lld) outside dimension %d of size %lld", (long long)start,
                     (long long)(start + length), dim, (long long)x->shape[dim]);
    int64_t shape[TENSOR_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[dim] = length;
    Tensor *out = tensor_view_raw(x, x->ndim, shape, x->stride, x->offset + start * x->stride[dim]);
    if (autograd_needed(1, &x)) {
        AutogradNode *node = autograd_record(out, "narrow", narrow_backward, 1, &x);
        node->ints[0] = dim;
        node->ints[1] = start;
        node->ints[2] = length;
    }
    return out;
}

Tensor *op_select(Tensor *x, int dim, int64_t index) {
    dim = tensor_normalize_dim(x, dim);
    return op_squeeze(op_narrow(x, dim, index, 1), dim);
}

static void expand_backward(AutogradNode *node, Tensor *g) {
    autograd_pass_grad(node, 0, op_sum_to_shape(g, tensor_shape(node->inputs[0])));
}

Tensor *op_expand(Tensor *x, Shape shape) {
    if (shape.ndim < x->ndim) tensor_fatal("expand", "target has fewer dimensions than the tensor");
    int64_t stride[TENSOR_MAX_DIMS];
    for (int i = 0; i < shape.ndim; i++) {
        int d = x->ndim - shape.ndim + i;
        if (d < 0) {
            if (shape.dims[i] < 0) tensor_fatal("expand", "-1 is only allowed for existing dimensions, not new leading ones");
            stride[i] = 0;
            continue;
        }
        if (shape.dims[i] == -1) shape.dims[i] = x->shape[d];
        if (x->shape[d] == shape.dims[i]) {
            stride[i] = x->stride[d];
        } else if (x->shape[d] == 1) {
            stride[i] = 0;
        } else {
            char a[96], b[96];
            tensor_fatal("expand", "cannot expand %s to %s", tensor_shape_string(x, a, sizeof a), shape_string(shape, b, sizeof b));
        }
    }
    Tensor *out = tensor_view_raw(x, shape.ndim, shape.dims, stride, x->offset);
    if (autograd_needed(1, &x)) autograd_record(out, "expand", expand_backward, 1, &x);
    return out;
}

Tensor *op_squeeze(Tensor *x, int dim) {
    dim = tensor_normalize_dim(x, dim);
    if (x->shape[dim] != 1) tensor_fatal("squeeze", "dimension %d has size %lld, not 1", dim, (long long)x->shape[dim]);
    int64_t shape[TENSOR_MAX_DIMS], stride[TENSOR_MAX_DIMS];
    int n = 0;
    for (int d = 0; d < x->ndim; d++) {
        if (d == dim) continue;
        shape[n] = x->shape[d];
        stride[n++] = x->stride[d];
    }
    return record_reshape_like(tensor_view_raw(x, n, shape, stride, x->offset), x, "squeeze");
}

Tensor *op_unsqueeze(Tensor *x, int dim) {
    if (dim < 0) dim += x->ndim + 1;
    if (dim < 0 || dim > x->ndim || x->ndim >= TENSOR_MAX_DIMS)
        tensor_fatal("unsqueeze", "dimension %d out of range for a %d-dimensional tensor", dim, x->ndim);
    int64_t shape[TENSOR_MAX_DIMS], stride[TENSOR_MAX_DIMS];
    int n = 0;
    for (int d = 0; d <= x->ndim; d++) {
        if (d == dim) {
            shape[n] = 1;
            stride[n++] = d < x->ndim ? x->stride[d] * x->shape[d] : 1;
        }
        if (d < x->ndim) {
            shape[n] = x->shape[d];
            stride[n++] = x->stride[d];
        }
    }
    return record_reshape_like(tensor_view_raw(x, n, shape, stride, x->offset), x, "unsqueeze");
}

Tensor *op_flatten(Tensor *x, int start_dim, int end_dim) {
    if (x->ndim == 0) return op_reshape(x, SHAPE(1));
    start_dim = tensor_normalize_dim(x, start_dim);
    end_dim = tensor_normalize_dim(x, end_dim);
    Shape shape = {0};
    for (int d = 0; d < x->ndim; d++) {
        if (d > start_dim && d <= end_dim)
            shape.dims[shape.ndim - 1] *= x->shape[d];
        else
            shape.dims[shape.ndim++] = x->shape[d];
    }
    return op_reshape(x, shape);
}

static void identity_backward(AutogradNode *node, Tensor *g) { autograd_pass_grad(node, 0, g); }

Tensor *op_contiguous(Tensor *x) {
    if (tensor_is_contiguous(x)) return x;
    return op_clone(x);
}

Tensor *op_clone(Tensor *x) {
    Tensor *out = tensor_empty_like(x);
    tensor_copy_raw(out, x);
    if (autograd_needed(1, &x)) autograd_record(out, "clone", identity_backward, 1, &x);
    return out;
}

static void to_device_backward(AutogradNode *node, Tensor *g) {
    autograd_pass_grad(node, 0, op_to_device(g, node->inputs[0]->storage->device));
}

Tensor *op_to_device(Tensor *x, Device device) {
    Device from = x->storage->device;
    if (from.kind == device.kind && from.index == device.index) return x;
    Tensor *out = tensor_to_device_raw(x, device);
    if (autograd_needed(1, &x)) autograd_record(out, "to_device", to_device_backward, 1, &x);
    return out;
}

static void to_dtype_backward(AutogradNode *node, Tensor *g) {
    autograd_pass_grad(node, 0, op_to_dtype(g, node->inputs[0]->dtype));
}

Tensor *op_to_dtype(Tensor *x, DType dtype) {
    if (x->dtype == dtype) return x;
    Tensor *out = tensor_empty_on(dtype, tensor_shape(x), x->storage->device);
    tensor_copy_raw(out, x);
    if (dtype_is_float(dtype) && autograd_needed(1, &x)) autograd_record(out, "to_dtype", to_dtype_backward, 1, &x);
    return out;
}
