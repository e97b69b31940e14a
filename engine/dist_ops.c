// Differentiable collectives (engine/dist_ops.h).
#include "engine/dist_ops.h"

#include "engine/autograd.h"
#include "engine/dist.h"
#include "engine/ops.h"

static Tensor *all_reduced_copy(Tensor *x, const char *what) {
    if (x->dtype != DTYPE_F32 && x->dtype != DTYPE_F64)
        tensor_fatal("dist_all_reduce_sum", "%s: f32 or f64 tensors only", what);
    bool was = autograd_set_enabled(false);
    Tensor *out = op_clone(x);  // contiguous, owned
    autograd_set_enabled(was);
    int64_t count = shape_numel(tensor_shape(out));
    DistType type = x->dtype == DTYPE_F32 ? DIST_F32 : DIST_F64;
    if (tensor_is_cuda(out)) dist_device_all_reduce(tensor_data(out), count, type, DIST_SUM, what);
    else dist_all_reduce(tensor_data(out), count, type, DIST_SUM, what);
    return out;
}

static void all_reduce_backward(AutogradNode *node, Tensor *grad_output) {
    autograd_pass_grad(node, 0, all_reduced_copy(grad_output, "gradient of a synchronized sum"));
}

Tensor *op_dist_all_reduce_sum(Tensor *x, const char *what) {
    if (dist_world_size() == 1) return x;
    Tensor *out = all_reduced_copy(x, what);
    if (autograd_needed(1, &x)) autograd_record(out, "dist_all_reduce_sum", all_reduce_backward, 1, &x);
    return out;
}
