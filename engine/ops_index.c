// Joining, splitting and indexing: concat, stack, split, gather, index_select, embedding; and dropout.
#include <stdlib.h>
#include <string.h>

#include "engine/ops_internal.h"
#include "kernels/dropout.h"
#include "kernels/index.h"

// ---------------------------------------------------------------- concat, stack, split

static void concat_backward(AutogradNode *node, Tensor *g) {
    int dim = (int)node->ints[0];
    int64_t offset = 0;
    for (int i = 0; i < node->n_inputs; i++) {
        int64_t size = node->inputs[i]->shape[dim];
        if (autograd_input_needs_grad(node, i)) autograd_pass_grad(node, i, op_narrow(g, dim, offset, size));
        offset += size;
    }
}

Tensor *op_concat(Tensor *const *xs, int n, int dim) {
    if (n <= 0) tensor_fatal("concat", "no tensors to concatenate");
    Tensor *first = xs[0];
    if (first->ndim == 0) tensor_fatal("concat", "0-dimensional tensors cannot be concatenated; use op_stack");
    dim = tensor_normalize_dim(first, dim);
    Shape shape = tensor_shape(first);
    shape.dims[dim] = 0;
    for (int i = 0; i < n; i++) {
        Tensor *x = xs[i];
        if (x->ndim != first->ndim || x->dtype != first->dtype)
            tensor_fatal("concat", "tensor %d has %d dims of %s, tensor 0 has %d of %s", i, x->ndim, dtype_name(x->dtype),
                         first->ndim, dtype_name(first->dtype));
        for (int d = 0; d < x->ndim; d++)
            if (d != dim && x->shape[d] != first->shape[d]) {
                char a[96], b[96];
                tensor_fatal("concat", "tensor %d has shape %s, tensor 0 has %s; only dimension %d may differ", i,
                             tensor_shape_string(x, a, sizeof a), tensor_shape_string(first, b, sizeof b), dim);
            }
        shape.dims[dim] += x->shape[dim];
    }
    Tensor *out = tensor_empty_on(first->dtype, shape, first->storage->device);
    int64_t outer = 1, inner = 1;
    for (int d = 0; d < dim; d++) outer *= shape.dims[d];
    for (int d = dim + 1; d < shape.ndim; d++) inner *= shape.dims[d];
    size_t element = dtype_size(first->dtype);
    int64_t out_row = shape.dims[dim] * inner, offset = 0;
    for (int i = 0; i < n; i++) {
        check_same_device("concat", xs[i], first);
        Tensor *x = contiguous(xs[i]);
        if (tensor_is_cuda(x)) {
            concat_copy_launch(tensor_data(out), tensor_data(x), outer, xs[i]->shape[dim], inner, shape.dims[dim], offset, element,
                               device_stream());
            GPU_CHECK_LAUNCH();
            offset += xs[i]->shape[dim];
            continue;
        }
        int64_t row = xs[i]->shape[dim] * inner;
        const char *src = tensor_data(x);
        char *dst = (char *)tensor_data(out) + offset * inner * (int64_t)element;
        for (int64_t o = 0; o < outer; o++)
            memcpy(dst + o * out_row * (int64_t)element, src + o * row * (int64_t)element, (size_t)row * element);
        offset += xs[i]->shape[dim];
    }
    if (autograd_needed(n, xs)) {
        AutogradNode *node = autograd_record(out, "concat", concat_backward, n, xs);
        node->ints[0] = dim;
    }
    return out;
}

Tensor *op_stack(Tensor *const *xs, int n, int dim) {
    if (n <= 0) tensor_fatal("stack", "no tensors to stack");
    if (dim < 0) dim += xs[0]->ndim + 1;
    Tensor **expanded = malloc((size_t)n * sizeof(Tensor *));
    for (int i = 0; i < n; i++) {
        if (!tensor_same_shape(xs[i], xs[0])) tensor_fatal("stack", "tensor %d differs in shape from tensor 0", i);
        expanded[i] = op_unsqueeze(xs[i], dim);
    }
    Tensor *out = op_concat(expanded, n, dim);
    free(expanded);
    return out;
}

void op_split(Tensor *x, const int64_t *sizes, int n, int dim, Tensor **out) {
    dim = tensor_normalize_dim(x, dim);
    int64_t total = 0;
    for (int i = 0; i < n; i++) total += sizes[i];
    if (total != x->shape[dim])
        tensor_fatal("split", "sizes add up to %lld but dimension %d has %lld", (long long)total, dim, (long long)x->shape[dim]);
    int64_t offset = 0;
    for (int i = 0; i < n; i++) {
        out[i] = op_narrow(x, dim, offset, sizes[i]);
        offset += sizes[i];
    }
}

// ---------------------------------------------------------------- gather, index_select

static int64_t checked_index(const char *op, int64_t index, int64_t size) {
    if (index < -size || index >= size)
        tensor_fatal(op, "index %lld is out of range for a dimension of size %lld", (long long)index, (long long)size);
    return index < 0 ? index + size : index;
}

static void check_index_tensor(const char *op, const Tensor *index) {
    if (index->dtype != DTYPE_I64 && index->dtype != DTYPE_I32)
        tensor_fatal(op, "indices must be i64 or i32, got %s", dtype_name(index->dtype));
}

// Element `flat` of the i64/i32 tensor (contiguous).
static inline int64_t index_at(const Tensor *index, int64_t flat) {
    return index->dtype == DTYPE_I64 ? ((const int64_t *)tensor_data(index))[flat] : ((const int32_t *)tensor_data(index))[flat];
}

// out[..., j, ...] = x[..., index[..., j, ...], ...] along dim (index has x's ndim); with
// `scatter`, the reverse accumulation grad_x[..., index, ...] += g[..., j, ...].
static void gather_scatter(Tensor *x, int dim, Tensor *index, Tensor *values, bool scatter) {
    int64_t n = tensor_numel(index);
    int64_t size = x->shape[dim];
    for (int64_t flat = 0; flat < n; flat++) {
        // x's storage index: index's coordinates with dim replaced by the looked-up position
        int64_t rest = flat, at = x->offset;
        for (int d = index->ndim - 1; d >= 0; d--) {
            int64_t coordinate = rest % index->shape[d];
            rest /= index->shape[d];
            if (d == dim) coordinate = checked_index(scatter ? "gather (backward)" : "gather", index_at(index, flat), size);
            at += coordinate * x->stride[d];
        }
        if (x->dtype == DTYPE_F32) {
            float *px = (float *)x->storage->data + at, *pv = tensor_f32(values) + flat;
            if (scatter) *px += *pv;
            else *pv = *px;
        } else {
            double *px = (double *)x->storage->data + at, *pv = tensor_f64(values) + flat;
            if (scatter) *px += *pv;
            else *pv = *px;
        }
    }
}

// Indices for a device kernel: contiguous on the device. Indices still on the host are checked
// here, where a bad one stops the run with a clear message (the kernels cannot: they write NaN).
static Tensor *device_indices(const char *op, Tensor *index, int64_t size, Device device) {
    if (!tensor_is_cuda(index)) {
        Tensor *host = contiguous(index);
        for (int64_t j = 0; j < tensor_numel(host); j++) checked_index(op, index_at(host, j), size);
    }
    return contiguous(op_to_device(index, device));
}

static void gather_backward(AutogradNode *node, Tensor *g) {
    Tensor *x = node->inputs[0], *index = node->saved[0];
    if (tensor_is_cuda(x)) {
        Tensor *grad = tensor_empty_like(x);
        gather_backward_launch(tensor_data(contiguous(g)), x->shape, x->ndim, (int)node->ints[0], tensor_data(index),
                               index->dtype == DTYPE_I64, index->shape, tensor_data(grad), device_stream());
        GPU_CHECK_LAUNCH();
        autograd_pass_grad(node, 0, grad);
        return;
    }
    Tensor *grad = tensor_zeros(x->dtype, tensor_shape(x));
    gather_scatter(grad, (int)node->ints[0], index, contiguous(g), true);
    autograd_pass_grad(node, 0, grad);
}

Tensor *op_gather(Tensor *x, int dim, Tensor *index) {
    check_float_input_any_device("gather", x);
    check_index_tensor("gather", index);
    dim = tensor_normalize_dim(x, dim);
    if (index->ndim != x->ndim) tensor_fatal("gather", "index has %d dims, input has %d", index->ndim, x->ndim);
    for (int d = 0; d < x->ndim; d++)
        if (d != dim && index->shape[d] > x->shape[d])
            tensor_fatal("gather", "index dimension %d (%lld) exceeds the input's (%lld)", d, (long long)index->shape[d], (long long)x->shape[d]);
    Tensor *ic, *out = tensor_empty_on(x->dtype, tensor_shape(index), x->storage->device);
    if (tensor_is_cuda(x)) {
        ic = device_indices("gather", index, x->shape[dim], x->storage->device);
        gather_forward_launch(tensor_data(contiguous(x)), x->shape, x->ndim, dim, tensor_data(ic), ic->dtype == DTYPE_I64,
                              ic->shape, tensor_data(out), device_stream());
        GPU_CHECK_LAUNCH();
    } else {
        check_cpu("gather", index);
        ic = contiguous(index);
        gather_scatter(x, dim, ic, out, false);
    }
    if (autograd_needed(1, &x)) {
        AutogradNode *node = autograd_record(out, "gather", gather_backward, 1, &x);
        node->ints[0] = dim;
        autograd_save(node, 0, ic);
    }
    return out;
}

// x viewed as [outer, size, inner]; out as [outer, count, inner]. Rows of `inner` elements move.
static void index_rows(const char *op, Tensor *x, int dim, Tensor *index, Tensor *out, bool accumulate) {
    int64_t outer = 1, inner = 1, size = x->shape[dim], count = tensor_numel(index);
    for (int d = 0; d < dim; d++) outer *= x->shape[d];
    for (int d = dim + 1; d < x->ndim; d++) inner *= x->shape[d];
    size_t element = dtype_size(x->dtype);
    char *px = tensor_data(x), *po = tensor_data(out);
    for (int64_t j = 0; j < count; j++) {
        int64_t source = checked_index(op, index_at(index, j), size);
        for (int64_t o = 0; o < outer; o++) {
            char *row_x = px + ((o * size + source) * inner) * (int64_t)element;
            char *row_o = po + ((o * count + j) * inner) * (int64_t)element;
            if (!accumulate) {
                memcpy(row_o, row_x, (size_t)inner * element);
            } else if (x->dtype == DTYPE_F32) {
                for (int64_t i = 0; i < inner; i++) ((float *)row_x)[i] += ((float *)row_o)[i];
            } else {
                for (int64_t i = 0; i < inner; i++) ((double *)row_x)[i] += ((double *)row_o)[i];
            }
        }
    }
}

static void index_select_backward(AutogradNode *node, Tensor *g) {
    Tensor *x = node->inputs[0];
    if (tensor_is_cuda(x)) {
        int dim = (int)node->ints[0];
        int64_t outer = 1, inner = 1;
        for (int d = 0; d < dim; d++) outer *= x->shape[d];
        for (int d = dim + 1; d < x->ndim; d++) inner *= x->shape[d];
        Tensor *grad = tensor_empty_like(x), *index = node->saved[0];
        index_select_backward_launch(tensor_data(contiguous(g)), tensor_data(index), index->dtype == DTYPE_I64, tensor_data(grad),
                                     outer, x->shape[dim], inner, tensor_numel(index), device_stream());
        GPU_CHECK_LAUNCH();
        autograd_pass_grad(node, 0, grad);
        return;
    }
    Tensor *grad = tensor_zeros(x->dtype, tensor_shape(x));
    index_rows("index_select (backward)", grad, (int)node->ints[0], node->saved[0], contiguous(g), true);
    autograd_pass_grad(node, 0, grad);
}

Tensor *op_index_select(Tensor *x, int dim, Tensor *index) {
    check_index_tensor("index_select", index);
    if (index->ndim > 1) tensor_fatal("index_select", "index must be 1-D, got %d dims", index->ndim);
    dim = tensor_normalize_dim(x, dim);
    Tensor *xc = contiguous(x), *ic;
    Shape shape = tensor_shape(x);
    shape.dims[dim] = tensor_numel(index);
    Tensor *out = tensor_empty_on(x->dtype, shape, x->storage->device);
    if (tensor_is_cuda(x)) {
        check_float_input_any_device("index_select", x);
        ic = device_indices("index_select", index, x->shape[dim], x->storage->device);
        int64_t outer = 1, inner = 1;
        for (int d = 0; d < dim; d++) outer *= x->shape[d];
        for (int d = dim + 1; d < x->ndim; d++) inner *= x->shape[d];
        index_select_forward_launch(tensor_data(xc), tensor_data(ic), ic->dtype == DTYPE_I64, tensor_data(out), outer, x->shape[dim],
                                    inner, tensor_numel(ic), device_stream());
        GPU_CHECK_LAUNCH();
    } else {
        check_cpu("index_select", x);
        check_cpu("index_select", index);
        ic = contiguous(index);
        index_rows("index_select", xc, dim, ic, out, false);
    }
    if (autograd_needed(1, &x)) {
        AutogradNode *node = autograd_record(out, "index_select", index_select_backward, 1, &x);
        node->ints[0] = dim;
        autograd_save(node, 0, ic);
    }
    return out;
}

Tensor *op_embedding(Tensor *weight, Tensor *indices) {
    if (weight->ndim != 2) tensor_fatal("embedding", "weight must be [num_embeddings, dim]");
    check_index_tensor("embedding", indices);
    Shape shape = tensor_shape(indices);
    shape.dims[shape.ndim++] = weight->shape[1];
    Tensor *flat = op_reshape(indices, SHAPE(-1));
    return op_reshape(op_index_select(weight, 0, flat), shape);
}

// ---------------------------------------------------------------- dropout

Tensor *op_dropout(Tensor *x, double p, bool training, Rng *rng) {
    if (p < 0 || p > 1) tensor_fatal("dropout", "probability %g outside [0, 1]", p);
    if (!training || p == 0) return x;
    check_float_input_any_device("dropout", x);
    if (tensor_is_cuda(x)) {
        // The same numbers as the CPU fill below: the kernel draws Philox block first + t in thread t.
        Tensor *mask = tensor_empty_on(DTYPE_F32, tensor_shape(x), x->storage->device);
        int64_t n = tensor_numel(mask);
        uint64_t first = rng_reserve(rng, (uint64_t)n);
        dropout_mask_launch(tensor_data(mask), n, p, rng->seed, rng->stream, first, device_stream());
        GPU_CHECK_LAUNCH();
        return op_mul(x, mask);
    }
    // mask_i = keep_i / (1 - p) with keep_i ~ Bernoulli(1 - p); p == 1 drops everything.
    Tensor *mask = tensor_empty(DTYPE_F32, tensor_shape(x));
    int64_t n = tensor_numel(mask);
    rng_fill_bernoulli_f32(rng, tensor_f32(mask), n, (float)(1 - p));
    float scale = p < 1 ? (float)(1 / (1 - p)) : 0.0f;
    for (int64_t i = 0; i < n; i++) tensor_f32(mask)[i] *= scale;
    return op_mul(x, op_to_dtype(mask, x->dtype));
}
