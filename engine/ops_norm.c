// Batch, group and layer normalisation with fused forward and analytic backward kernels
// (engine/cpu/norm.c). Semantics follow torch.nn.functional.batch_norm / group_norm / layer_norm.
//
// batch_norm with training == false and no running statistics normalises with the batch statistics
// (as torch's BatchNorm with track_running_stats=False does in eval mode).
#include <stdlib.h>

#include "engine/cpu/norm.h"
#include "engine/ops_internal.h"
#include "kernels/norm.h"

// Checks an optional per-channel tensor (weight, bias, running statistics): [C], x's dtype.
static void check_per_channel(const char *op, const char *what, Tensor *t, const Tensor *x, int64_t C) {
    if (!t) return;
    check_float_input_any_device(op, t);
    check_same_device(op, t, x);
    if (t->dtype != x->dtype)
        tensor_fatal(op, "%s is %s but the input is %s", what, dtype_name(t->dtype), dtype_name(x->dtype));
    if (t->ndim != 1 || t->shape[0] != C) {
        char st[96], sx[96];
        tensor_fatal(op, "%s %s must be [%lld] for input %s", what, tensor_shape_string(t, st, sizeof st),
                     (long long)C, tensor_shape_string(x, sx, sizeof sx));
    }
}

static void *data_or_null(Tensor *t) { return t ? tensor_data(t) : NULL; }

// Saved by all three: saved[0] = contiguous x, saved[1] = mean, saved[2] = rstd;
// inputs = {x, weight, bias} (weight/bias may be NULL).
typedef struct {
    Tensor *dx, *dweight, *dbias;
} NormGrads;

static NormGrads norm_grads(AutogradNode *node) {
    Tensor *x = node->saved[0];
    NormGrads grads = {0};
    if (autograd_input_needs_grad(node, 0)) grads.dx = tensor_empty_like(x);
    if (autograd_input_needs_grad(node, 1)) grads.dweight = tensor_empty_like(node->inputs[1]);
    if (autograd_input_needs_grad(node, 2)) grads.dbias = tensor_empty_like(node->inputs[2]);
    return grads;
}

static void norm_pass_grads(AutogradNode *node, NormGrads grads) {
    autograd_pass_grad(node, 0, grads.dx);
    autograd_pass_grad(node, 1, grads.dweight);
    autograd_pass_grad(node, 2, grads.dbias);
}

// [B, C, S...] -> B, C, S.
static void channel_layout(const Tensor *x, int64_t *B, int64_t *C, int64_t *S) {
    *B = x->shape[0];
    *C = x->shape[1];
    *S = 1;
    for (int d = 2; d < x->ndim; d++) *S *= x->shape[d];
}

// ---------------------------------------------------------------- batch norm

static void batch_norm_backward(AutogradNode *node, Tensor *grad_y) {
    Tensor *x = node->saved[0], *gc = contiguous(grad_y);
    Tensor *weight = node->inputs[1] ? contiguous(node->inputs[1]) : NULL;
    int64_t B, C, S;
    channel_layout(x, &B, &C, &S);
    NormGrads grads = norm_grads(node);
    if (tensor_is_cuda(x)) {
        size_t bytes = batch_norm_backward_workspace_bytes(B, C, S);
        void *workspace = bytes ? gpu_alloc(bytes) : NULL;
        batch_norm_backward_launch(tensor_data(x), tensor_data(gc), tensor_data(node->saved[1]), tensor_data(node->saved[2]),
                                   data_or_null(weight), data_or_null(grads.dx), data_or_null(grads.dweight),
                                   data_or_null(grads.dbias), workspace, B, C, S, (int)node->ints[0], device_stream());
        GPU_CHECK_LAUNCH();
        if (workspace) gpu_free(workspace);  // reuse is ordered on the same stream
    } else if (node->saved[3]) {
        // batch_norm_relu (CPU only): saved[3], saved[4] = the per-channel scale and shift the
        // forward applied, from which the kernel recomputes the ReLU mask (y is not kept for it).
        DISPATCH_FLOAT(x, cpu_batch_norm_relu_backward, tensor_data(x), tensor_data(gc), tensor_data(node->saved[1]),
                       tensor_data(node->saved[2]), data_or_null(weight), tensor_data(node->saved[3]),
                       tensor_data(node->saved[4]), data_or_null(grads.dx), data_or_null(grads.dweight),
                       data_or_null(grads.dbias), B, C, S, (int)node->ints[0]);
    } else {
        DISPATCH_FLOAT(x, cpu_batch_norm_backward, tensor_data(x), tensor_data(gc), tensor_data(node->saved[1]),
                       tensor_data(node->saved[2]), data_or_null(weight), data_or_null(grads.dx),
                       data_or_null(grads.dweight), data_or_null(grads.dbias), B, C, S, (int)node->ints[0]);
    }
    norm_pass_grads(node, grads);
}

static void batch_norm_forward_cpu(Tensor *xc, Tensor *w, Tensor *b, Tensor *y, Tensor *mean, Tensor *rstd,
                                   Tensor *scale, Tensor *shift, Tensor *running_mean, Tensor *running_var,
                                   bool training, double momentum, double eps);

// op_batch_norm, and op_batch_norm_relu when `relu`: on the CPU one fused kernel and one autograd
// node; on the CUDA device the batch-norm op followed by op_relu (same values, two nodes).
static Tensor *batch_norm_op(const char *op, Tensor *x, Tensor *weight, Tensor *bias, Tensor *running_mean,
                             Tensor *running_var, bool training, double momentum, double eps, bool relu) {
    check_float_input_any_device(op, x);
    char sx[96];
    tensor_shape_string(x, sx, sizeof sx);
    if (x->ndim < 2) tensor_fatal(op, "input %s must be [B, C] or [B, C, ...]", sx);
    int64_t B, C, S;
    channel_layout(x, &B, &C, &S);
    check_per_channel(op, "weight", weight, x, C);
    check_per_channel(op, "bias", bias, x, C);
    check_per_channel(op, "running_mean", running_mean, x, C);
    check_per_channel(op, "running_var", running_var, x, C);
    if (!running_mean != !running_var) tensor_fatal(op, "give both running_mean and running_var, or neither");
    if (training && B * S <= 1)
        tensor_fatal(op, "expected more than 1 value per channel when training, got input %s", sx);
    bool batch_stats = training || !running_mean;
    Tensor *xc = contiguous(x);
    Tensor *y = tensor_empty_like(x);
    Tensor *mean = tensor_empty_on(x->dtype, SHAPE(C), x->storage->device);
    Tensor *rstd = tensor_empty_on(x->dtype, SHAPE(C), x->storage->device);
    Tensor *w = weight ? contiguous(weight) : NULL, *b = bias ? contiguous(bias) : NULL;
    if (tensor_is_cuda(x)) {
        // The running statistics are updated in place by the kernel: they must be contiguous.
        if (running_mean && (!tensor_is_contiguous(running_mean) || !tensor_is_contiguous(running_var)))
            tensor_fatal(op, "running statistics must be contiguous on the CUDA device");
        if (batch_stats) {
            size_t bytes = batch_norm_forward_workspace_bytes(B, C, S);
            void *workspace = bytes ? gpu_alloc(bytes) : NULL;
            bool update = training && running_mean;
            batch_norm_forward_training_launch(tensor_data(xc), data_or_null(w), data_or_null(b), tensor_data(y), tensor_data(mean),
                                               tensor_data(rstd), update ? tensor_data(running_mean) : NULL,
                                               update ? tensor_data(running_var) : NULL, workspace, B, C, S, momentum, eps,
                                               device_stream());
            if (workspace) gpu_free(workspace);
        } else {
            batch_norm_forward_eval_launch(tensor_data(xc), data_or_null(w), data_or_null(b), tensor_data(y), tensor_data(mean),
                                           tensor_data(rstd), tensor_data(running_mean), tensor_data(running_var), B, C, S, eps,
                                           device_stream());
        }
        GPU_CHECK_LAUNCH();
        Tensor *inputs[3] = {x, weight, bias};
        if (autograd_needed(3, inputs)) {
            AutogradNode *node = autograd_record(y, "batch_norm", batch_norm_backward, 3, inputs);
            autograd_save(node, 0, xc);
            autograd_save(node, 1, mean);
            autograd_save(node, 2, rstd);
            node->ints[0] = batch_stats;
        }
        return relu ? op_relu(y) : y;
    }
    Tensor *scale = relu ? tensor_empty_on(x->dtype, SHAPE(C), x->storage->device) : NULL;
    Tensor *shift = relu ? tensor_empty_on(x->dtype, SHAPE(C), x->storage->device) : NULL;
    batch_norm_forward_cpu(xc, w, b, y, mean, rstd, scale, shift, running_mean, running_var, training, momentum, eps);
    Tensor *inputs[3] = {x, weight, bias};
    if (autograd_needed(3, inputs)) {
        AutogradNode *node = autograd_record(y, op, batch_norm_backward, 3, inputs);
        autograd_save(node, 0, xc);
        autograd_save(node, 1, mean);
        autograd_save(node, 2, rstd);
        if (relu) {
            autograd_save(node, 3, scale);
            autograd_save(node, 4, shift);
        }
        node->ints[0] = batch_stats;
    }
    return y;
}

Tensor *op_batch_norm(Tensor *x, Tensor *weight, Tensor *bias, Tensor *running_mean, Tensor *running_var,
                      bool training, double momentum, double eps) {
    return batch_norm_op("batch_norm", x, weight, bias, running_mean, running_var, training, momentum, eps, false);
}

Tensor *op_batch_norm_relu(Tensor *x, Tensor *weight, Tensor *bias, Tensor *running_mean, Tensor *running_var,
                           bool training, double momentum, double eps) {
    return batch_norm_op("batch_norm_relu", x, weight, bias, running_mean, running_var, training, momentum, eps, true);
}

// The CPU forward: statistics by the fused kernel, then the running-statistics update.
static void batch_norm_forward_cpu(Tensor *xc, Tensor *w, Tensor *b, Tensor *y, Tensor *mean, Tensor *rstd,
                                   Tensor *scale, Tensor *shift, Tensor *running_mean, Tensor *running_var,
                                   bool training, double momentum, double eps) {
    const char *op = scale ? "batch_norm_relu" : "batch_norm";
    int64_t B, C, S;
    channel_layout(xc, &B, &C, &S);
    bool batch_stats = training || !running_mean;
    Tensor *x = xc;
    Tensor *given_mean = batch_stats ? NULL : contiguous(running_mean);
    Tensor *given_var = batch_stats ? NULL : contiguous(running_var);
    bool update = training && running_mean;
    double *batch_var = update ? malloc((size_t)(C ? C : 1) * sizeof(double)) : NULL;
    if (update && !batch_var) tensor_fatal(op, "out of memory");
    if (scale)
        DISPATCH_FLOAT(x, cpu_batch_norm_relu_forward, tensor_data(xc), data_or_null(w), data_or_null(b), tensor_data(y),
                       tensor_data(mean), tensor_data(rstd), tensor_data(scale), tensor_data(shift), batch_var,
                       data_or_null(given_mean), data_or_null(given_var), B, C, S, eps);
    else
        DISPATCH_FLOAT(x, cpu_batch_norm_forward, tensor_data(xc), data_or_null(w), data_or_null(b), tensor_data(y),
                       tensor_data(mean), tensor_data(rstd), batch_var, data_or_null(given_mean), data_or_null(given_var),
                       B, C, S, eps);
    if (update) {
        // torch: running = (1 - momentum) running + momentum batch, with the unbiased batch variance.
        double n = (double)(B * S);
        for (int64_t c = 0; c < C; c++) {
            tensor_set(running_mean, c, (1 - momentum) * tensor_get(running_mean, c) + momentum * tensor_get(mean, c));
            tensor_set(running_var, c, (1 - momentum) * tensor_get(running_var, c) + momentum * batch_var[c] * n / (n - 1));
        }
        free(batch_var);
    }
}

// ---------------------------------------------------------------- group norm

static void group_norm_backward(AutogradNode *node, Tensor *grad_y) {
    Tensor *x = node->saved[0], *gc = contiguous(grad_y);
    Tensor *weight = node->inputs[1] ? contiguous(node->inputs[1]) : NULL;
    int64_t B, C, S;
    channel_layout(x, &B, &C, &S);
    NormGrads grads = norm_grads(node);
    if (tensor_is_cuda(x)) {
        size_t bytes = group_norm_backward_workspace_bytes(B, C, S, node->ints[0]);
        void *workspace = bytes ? gpu_alloc(bytes) : NULL;
        group_norm_backward_launch(tensor_data(x), tensor_data(gc), tensor_data(node->saved[1]), tensor_data(node->saved[2]),
                                   data_or_null(weight), data_or_null(grads.dx), data_or_null(grads.dweight),
                                   data_or_null(grads.dbias), workspace, B, C, S, node->ints[0], device_stream());
        GPU_CHECK_LAUNCH();
        if (workspace) gpu_free(workspace);  // reuse is ordered on the same stream
    } else {
        DISPATCH_FLOAT(x, cpu_group_norm_backward, tensor_data(x), tensor_data(gc), tensor_data(node->saved[1]),
                       tensor_data(node->saved[2]), data_or_null(weight), data_or_null(grads.dx),
                       data_or_null(grads.dweight), data_or_null(grads.dbias), B, C, S, node->ints[0]);
    }
    norm_pass_grads(node, grads);
}

Tensor *op_group_norm(Tensor *x, int groups, Tensor *weight, Tensor *bias, double eps) {
    const char *op = "group_norm";
    check_float_input_any_device(op, x);
    char sx[96];
    tensor_shape_string(x, sx, sizeof sx);
    if (x->ndim < 2) tensor_fatal(op, "input %s must be [B, C, ...]", sx);
    int64_t B, C, S;
    channel_layout(x, &B, &C, &S);
    if (groups < 1 || C % groups)
        tensor_fatal(op, "%d groups must divide the %lld channels of input %s", groups, (long long)C, sx);
    check_per_channel(op, "weight", weight, x, C);
    check_per_channel(op, "bias", bias, x, C);
    Tensor *xc = contiguous(x);
    Tensor *y = tensor_empty_like(x);
    Tensor *mean = tensor_empty_on(x->dtype, SHAPE(B, groups), x->storage->device);
    Tensor *rstd = tensor_empty_on(x->dtype, SHAPE(B, groups), x->storage->device);
    Tensor *w = weight ? contiguous(weight) : NULL, *b = bias ? contiguous(bias) : NULL;
    if (tensor_is_cuda(x)) {
        size_t bytes = group_norm_forward_workspace_bytes(B, C, S, groups);
        void *workspace = bytes ? gpu_alloc(bytes) : NULL;
        group_norm_forward_launch(tensor_data(xc), data_or_null(w), data_or_null(b), tensor_data(y), tensor_data(mean),
                                  tensor_data(rstd), workspace, B, C, S, groups, eps, device_stream());
        GPU_CHECK_LAUNCH();
        if (workspace) gpu_free(workspace);
    } else {
        DISPATCH_FLOAT(x, cpu_group_norm_forward, tensor_data(xc), data_or_null(w), data_or_null(b), tensor_data(y),
                       tensor_data(mean), tensor_data(rstd), B, C, S, groups, eps);
    }
    Tensor *inputs[3] = {x, weight, bias};
    if (autograd_needed(3, inputs)) {
        AutogradNode *node = autograd_record(y, op, group_norm_backward, 3, inputs);
        autograd_save(node, 0, xc);
        autograd_save(node, 1, mean);
        autograd_save(node, 2, rstd);
        node->ints[0] = groups;
    }
    return y;
}

// ---------------------------------------------------------------- layer norm

static void layer_norm_backward(AutogradNode *node, Tensor *grad_y) {
    Tensor *x = node->saved[0], *gc = contiguous(grad_y);
    Tensor *weight = node->inputs[1] ? contiguous(node->inputs[1]) : NULL;
    int64_t D = x->shape[x->ndim - 1], N = tensor_numel(node->saved[1]);
    NormGrads grads = norm_grads(node);
    if (tensor_is_cuda(x)) {
        size_t bytes = layer_norm_backward_workspace_bytes(N, D);
        void *workspace = bytes ? gpu_alloc(bytes) : NULL;
        layer_norm_backward_launch(tensor_data(x), tensor_data(gc), tensor_data(node->saved[1]), tensor_data(node->saved[2]),
                                   data_or_null(weight), data_or_null(grads.dx), data_or_null(grads.dweight),
                                   data_or_null(grads.dbias), workspace, N, D, device_stream());
        GPU_CHECK_LAUNCH();
        if (workspace) gpu_free(workspace);  // reuse is ordered on the same stream
    } else {
        DISPATCH_FLOAT(x, cpu_layer_norm_backward, tensor_data(x), tensor_data(gc), tensor_data(node->saved[1]),
                       tensor_data(node->saved[2]), data_or_null(weight), data_or_null(grads.dx),
                       data_or_null(grads.dweight), data_or_null(grads.dbias), N, D);
    }
    norm_pass_grads(node, grads);
}

Tensor *op_layer_norm(Tensor *x, Tensor *weight, Tensor *bias, double eps) {
    const char *op = "layer_norm";
    check_float_input_any_device(op, x);
    if (x->ndim < 1) tensor_fatal(op, "input must have at least one dimension (normalised over the last)");
    int64_t D = x->shape[x->ndim - 1], N = 1;
    for (int d = 0; d < x->ndim - 1; d++) N *= x->shape[d];
    check_per_channel(op, "weight", weight, x, D);
    check_per_channel(op, "bias", bias, x, D);
    Tensor *xc = contiguous(x);
    Tensor *y = tensor_empty_like(x);
    Tensor *mean = tensor_empty_on(x->dtype, SHAPE(N), x->storage->device);
    Tensor *rstd = tensor_empty_on(x->dtype, SHAPE(N), x->storage->device);
    Tensor *w = weight ? contiguous(weight) : NULL, *b = bias ? contiguous(bias) : NULL;
    if (tensor_is_cuda(x)) {
        layer_norm_forward_launch(tensor_data(xc), data_or_null(w), data_or_null(b), tensor_data(y), tensor_data(mean),
                                  tensor_data(rstd), N, D, eps, device_stream());
        GPU_CHECK_LAUNCH();
    } else {
        DISPATCH_FLOAT(x, cpu_layer_norm_forward, tensor_data(xc), data_or_null(w), data_or_null(b), tensor_data(y),
                       tensor_data(mean), tensor_data(rstd), N, D, eps);
    }
    Tensor *inputs[3] = {x, weight, bias};
    if (autograd_needed(3, inputs)) {
        AutogradNode *node = autograd_record(y, op, layer_norm_backward, 3, inputs);
        autograd_save(node, 0, xc);
        autograd_save(node, 1, mean);
        autograd_save(node, 2, rstd);
    }
    return y;
}
