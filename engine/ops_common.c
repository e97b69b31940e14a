#include <string.h>

#include "engine/ops_internal.h"

void check_float_input(const char *op, const Tensor *x) {
    if (!x) tensor_fatal(op, "missing input tensor");
    if (x->dtype != DTYPE_F32 && x->dtype != DTYPE_F64)
        tensor_fatal(op, "expected an f32 or f64 tensor%s%s, got %s (convert f16/bf16 with op_to_dtype)",
                     x->name[0] ? " for " : "", x->name, dtype_name(x->dtype));
    check_cpu(op, x);
}

void check_float_input_any_device(const char *op, const Tensor *x) {
    if (!x) tensor_fatal(op, "missing input tensor");
    if (!tensor_is_cuda(x)) {
        check_float_input(op, x);
        return;
    }
    if (x->dtype != DTYPE_F32)
        tensor_fatal(op, "CUDA ops compute in f32; got a %s tensor%s%s on the device", dtype_name(x->dtype),
                     x->name[0] ? " for " : "", x->name);
}

void check_same_device(const char *op, const Tensor *a, const Tensor *b) {
    Device da = a->storage->device, db = b->storage->device;
    if (da.kind != db.kind || da.index != db.index)
        tensor_fatal(op, "operands are on different devices (%s and %s); move one with op_to_device",
                     da.kind == DEVICE_CUDA ? "cuda" : "cpu", db.kind == DEVICE_CUDA ? "cuda" : "cpu");
}

void check_same_dtype(const char *op, const Tensor *a, const Tensor *b) {
    if (a->dtype != b->dtype) tensor_fatal(op, "dtypes differ: %s and %s", dtype_name(a->dtype), dtype_name(b->dtype));
}

void check_cpu(const char *op, const Tensor *x) {
    if (x->storage->device.kind != DEVICE_CPU)
        tensor_fatal(op, "no CUDA implementation of this op yet; move the tensor with op_to_device(x, device_cpu())");
}

Shape broadcast_shapes(const char *op, Shape a, Shape b) {
    Shape out = {.ndim = a.ndim > b.ndim ? a.ndim : b.ndim};
    for (int i = 0; i < out.ndim; i++) {
        int da = a.ndim - out.ndim + i, db = b.ndim - out.ndim + i;
        int64_t sa = da >= 0 ? a.dims[da] : 1, sb = db >= 0 ? b.dims[db] : 1;
        if (sa != sb && sa != 1 && sb != 1) {
            char ta[96], tb[96];
            tensor_fatal(op, "shapes %s and %s cannot be broadcast together", shape_string(a, ta, sizeof ta),
                         shape_string(b, tb, sizeof tb));
        }
        out.dims[i] = sa == 1 ? sb : sa;
    }
    return out;
}

void broadcast_strides(const Tensor *x, Shape to, int64_t *strides) {
    for (int i = 0; i < to.ndim; i++) {
        int d = x->ndim - to.ndim + i;
        strides[i] = (d >= 0 && x->shape[d] != 1) ? x->stride[d] : 0;
    }
}

void dims_to_mask(const Tensor *x, const int *dims, int n_dims, bool *mask) {
    memset(mask, 0, TENSOR_MAX_DIMS * sizeof(bool));
    if (n_dims == 0) {
        for (int d = 0; d < x->ndim; d++) mask[d] = true;
        return;
    }
    for (int i = 0; i < n_dims; i++) {
        int d = tensor_normalize_dim(x, dims[i]);
        if (mask[d]) tensor_fatal("reduce", "dimension %d listed twice", dims[i]);
        mask[d] = true;
    }
}
