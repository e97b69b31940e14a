// Losses. Most are compositions of differentiable ops, so their gradients come from autograd;
// binary cross-entropy with logits has its own numerically stable kernel.
#include <float.h>
#include <string.h>

#include "engine/ops_internal.h"
#include "kernels/cross_entropy.h"

CrossEntropyOptions cross_entropy_defaults(void) {
    return (CrossEntropyOptions){.reduction = REDUCTION_MEAN, .label_smoothing = 0, .ignore_index = -100};
}

// Reduces per-element losses: mean over all elements, sum, none, or sum / batch size.
static Tensor *reduce_loss(Tensor *loss, Reduction reduction, int64_t batch) {
    switch (reduction) {
    case REDUCTION_MEAN: return op_mean_all(loss);
    case REDUCTION_SUM: return op_sum_all(loss);
    case REDUCTION_BATCHMEAN: return op_mul_scalar(op_sum_all(loss), 1.0 / (double)(batch > 0 ? batch : 1));
    case REDUCTION_NONE:
    default: return loss;
    }
}

// Moves the class dim (1) last and flattens: [B, N, d1, ...] -> [B*d1*..., N].
static Tensor *classes_last(Tensor *logits) {
    if (logits->ndim == 2) return logits;
    int order[TENSOR_MAX_DIMS], n = 0;
    order[n++] = 0;
    for (int d = 2; d < logits->ndim; d++) order[n++] = d;
    order[n++] = 1;
    return op_reshape(op_permute(logits, order), SHAPE(-1, logits->shape[1]));
}

// The gradient of the reduced loss was computed with the loss by the fused kernel; backward
// scales it by the upstream gradient (a scalar).
static void cross_entropy_device_backward(AutogradNode *node, Tensor *g) {
    autograd_pass_grad(node, 0, op_mul(node->saved[0], g));
}

// Cross-entropy on the CUDA device: one fused kernel computes softmax, the loss and its gradient.
static Tensor *cross_entropy_device(Tensor *scores, Tensor *target, CrossEntropyOptions options) {
    if (options.reduction == REDUCTION_NONE || options.reduction == REDUCTION_BATCHMEAN)
        tensor_fatal("cross_entropy", "on the CUDA device only the mean and sum reductions are implemented yet");
    Device device = scores->storage->device;
    int64_t rows = scores->shape[0], classes = scores->shape[1];
    Tensor *x = contiguous(scores);
    Tensor *targets = tensor_to_device_raw(op_to_dtype(op_reshape(target, SHAPE(-1)), DTYPE_I64), device);
    Tensor *class_weight = options.class_weight ? tensor_to_device_raw(op_to_dtype(options.class_weight, DTYPE_F32), device) : NULL;
    Tensor *sample_weight = options.sample_weight ? tensor_to_device_raw(op_to_dtype(options.sample_weight, DTYPE_F32), device) : NULL;
    Tensor *loss = tensor_empty_on(DTYPE_F32, SHAPE(), device);
    bool needs_grad = autograd_needed(1, &scores);
    Tensor *grad = needs_grad ? tensor_empty_on(DTYPE_F32, SHAPE(rows, classes), device) : NULL;
    size_t bytes = cross_entropy_workspace_bytes(rows);
    float *workspace = gpu_alloc(bytes);
    CrossEntropyArgs args = {
        .logits = tensor_data(x),
        .targets = tensor_data(targets),
        .class_weight = class_weight ? tensor_data(class_weight) : NULL,
        .sample_weight = sample_weight ? tensor_data(sample_weight) : NULL,
        .rows = rows,
        .classes = classes,
        .ignore_index = options.ignore_index,
        .label_smoothing = (float)options.label_smoothing,
        .reduction_sum = options.reduction == REDUCTION_SUM,
        .loss = tensor_data(loss),
        .grad_logits = grad ? tensor_data(grad) : NULL,
        .workspace = workspace,
    };
    cross_entropy_f32_launch(args, device_stream());
    GPU_CHECK_LAUNCH();
    gpu_free(workspace);  // reuse is ordered on the same stream
    if (needs_grad) {
        AutogradNode *node = autograd_record(loss, "cross_entropy", cross_entropy_device_backward, 1, &scores);
        autograd_save(node, 0, grad);
    }
    return loss;
}

Tensor *op_cross_entropy(Tensor *logits, Tensor *target, CrossEntropyOptions options) {
    check_float_input_any_device("cross_entropy", logits);
    if (logits->ndim < 2) tensor_fatal("cross_entropy", "logits must be [B, N, ...], got %d dims", logits->ndim);
    if (target->dtype != DTYPE_I64 && target->dtype != DTYPE_I32)
        tensor_fatal("cross_entropy", "targets must be integer class indices (i64), got %s; use op_cross_entropy_soft for probabilities",
                     dtype_name(target->dtype));
    int64_t classes = logits->shape[1];
    Tensor *scores = classes_last(logits);
    int64_t rows = scores->shape[0];
    // The target's shape is the logits' without the class dim: [B] for [B, N], [B, H, W] for [B, N, H, W].
    Shape expected = {.ndim = logits->ndim - 1};
    expected.dims[0] = logits->shape[0];
    for (int d = 2; d < logits->ndim; d++) expected.dims[d - 1] = logits->shape[d];
    if (!shape_equal(tensor_shape(target), expected)) {
        char a[96], b[96], c[96];
        tensor_fatal("cross_entropy", "target shape %s does not match logits %s (expected target %s)",
                     tensor_shape_string(target, a, sizeof a), tensor_shape_string(logits, b, sizeof b),
                     shape_string(expected, c, sizeof c));
    }
    if (options.class_weight && tensor_numel(options.class_weight) != classes)
        tensor_fatal("cross_entropy", "class weights have %lld entries for %lld classes", (long long)tensor_numel(options.class_weight), (long long)classes);
    if (options.sample_weight && tensor_numel(options.sample_weight) != rows)
        tensor_fatal("cross_entropy", "sample weights have %lld entries for %lld samples", (long long)tensor_numel(options.sample_weight), (long long)rows);
    if (tensor_is_cuda(logits)) {
        // Targets still on the host (as a data loader gives them) are checked here, where a bad
        // label can stop the run with a clear message; on the device a bad one makes the loss NaN.
        if (!tensor_is_cuda(target))
            for (int64_t i = 0; i < rows; i++) {
                int64_t t = (int64_t)tensor_get(target, i);
                if (t != options.ignore_index && (t < 0 || t >= classes))
                    tensor_fatal("cross_entropy", "target %lld at position %lld is not a class index in [0, %lld)", (long long)t,
                                 (long long)i, (long long)classes);
            }
        return cross_entropy_device(scores, target, options);
    }

    // Per-row constants: the class index to pick (0 where ignored) and the row's weight
    // c_i = class_weight[t_i] * sample_weight_i (0 where ignored); the mean divides by sum c_i,
    // which is PyTorch's normalisation (sum of class weights of the counted targets).
    Tensor *targets = contiguous(op_reshape(target, SHAPE(-1)));
    Tensor *picked_index = tensor_empty(DTYPE_I64, SHAPE(rows, 1));
    Tensor *row_weight = tensor_empty(logits->dtype, SHAPE(rows));
    double weight_sum = 0;
    for (int64_t i = 0; i < rows; i++) {
        int64_t t = (int64_t)tensor_get(targets, i);
        bool ignored = t == options.ignore_index;
        if (!ignored && (t < 0 || t >= classes))
            tensor_fatal("cross_entropy", "target %lld at position %lld is not a class index in [0, %lld)", (long long)t, (long long)i, (long long)classes);
        double w = ignored ? 0.0 : 1.0;
        if (!ignored && options.class_weight) w *= tensor_get(options.class_weight, t);
        if (options.sample_weight) w *= tensor_get(options.sample_weight, i);
        tensor_i64(picked_index)[i] = ignored ? 0 : t;
        tensor_set(row_weight, i, w);
        weight_sum += w;
    }
    Tensor *log_probs = op_log_softmax(scores, 1);
    Tensor *nll = op_neg(op_reshape(op_gather(log_probs, 1, picked_index), SHAPE(rows)));  // -log p[t_i]
    Tensor *loss = op_mul(nll, row_weight);
    if (options.label_smoothing > 0) {
        // Smoothing spreads eps over all classes: (1 - eps) * nll + eps/N * sum_c -w_c log p_c.
        Tensor *class_scaled = options.class_weight ? op_mul(log_probs, op_to_dtype(op_reshape(options.class_weight, SHAPE(1, classes)), logits->dtype)) : log_probs;
        int class_dim = 1;
        Tensor *smooth = op_neg(op_sum(class_scaled, &class_dim, 1, false));
        // Ignored rows contribute nothing; a row's smoothing term carries its sample weight only
        // (the class weights are inside the sum).
        Tensor *smooth_weight = tensor_empty(logits->dtype, SHAPE(rows));
        for (int64_t i = 0; i < rows; i++) {
            int64_t t = (int64_t)tensor_get(targets, i);
            double w = t == options.ignore_index ? 0.0 : 1.0;
            if (options.sample_weight) w *= tensor_get(options.sample_weight, i);
            tensor_set(smooth_weight, i, w);
        }
        loss = op_add(op_mul_scalar(loss, 1 - options.label_smoothing),
                      op_mul_scalar(op_mul(smooth, smooth_weight), options.label_smoothing / (double)classes));
    }
    switch (options.reduction) {
    case REDUCTION_SUM: return op_sum_all(loss);
    case REDUCTION_NONE: {
        Shape shape = tensor_shape(target);
        return op_reshape(loss, shape);
    }
    case REDUCTION_MEAN:
    default:
        // All targets ignored (or zero class weights): 0/0 = NaN, as PyTorch. With per-sample
        // weights that are all zero (FixMatch before any pseudo-label passes its threshold) the
        // loss is 0 with zero gradients, as FixMatch's (loss * mask).mean() gives.
        if (weight_sum == 0 && options.sample_weight) return op_mul_scalar(op_sum_all(loss), 0.0);
        return op_mul_scalar(op_sum_all(loss), 1.0 / weight_sum);
    }
}

Tensor *op_cross_entropy_soft(Tensor *logits, Tensor *target_probs, Reduction reduction) {
    check_float_input_any_device("cross_entropy_soft", logits);
    check_float_input_any_device("cross_entropy_soft", target_probs);
    check_same_device("cross_entropy_soft", logits, target_probs);
    if (!tensor_same_shape(logits, target_probs)) {
        char a[96], b[96];
        tensor_fatal("cross_entropy_soft", "target probabilities %s must have the logits' shape %s",
                     tensor_shape_string(target_probs, a, sizeof a), tensor_shape_string(logits, b, sizeof b));
    }
    int class_dim = 1;
    Tensor *loss = op_neg(op_sum(op_mul(target_probs, op_log_softmax(logits, 1)), &class_dim, 1, false));
    return reduce_loss(loss, reduction, logits->shape[0]);
}

// ---------------------------------------------------------------- BCE with logits

// loss = max(x, 0) - x t + log(1 + exp(-|x|)), the stable form of -[t log s(x) + (1-t) log(1-s(x))].
static void bce_backward(AutogradNode *node, Tensor *g) {
    Tensor *x = node->inputs[0], *t = node->inputs[1], *w = node->n_inputs > 2 ? node->inputs[2] : NULL;
    Tensor *scale = w ? op_mul(g, w) : g;
    if (autograd_input_needs_grad(node, 0)) autograd_pass_grad(node, 0, op_sum_to_shape(op_mul(scale, op_sub(op_sigmoid(x), t)), tensor_shape(x)));
    if (autograd_input_needs_grad(node, 1)) autograd_pass_grad(node, 1, op_sum_to_shape(op_neg(op_mul(scale, x)), tensor_shape(t)));
    if (w && autograd_input_needs_grad(node, 2)) autograd_pass_grad(node, 2, op_sum_to_shape(op_mul(g, node->saved[0]), tensor_shape(w)));
}

// On the device: the same stable formula from device ops (log(1 + e) in place of log1p(e) differs
// by less than 1e-7 absolute where e is tiny), with grad mode off; the node's backward is bce_backward.
static Tensor *bce_with_logits_device(Tensor *logits, Tensor *target, Tensor *weight, Reduction reduction) {
    bool previous = autograd_set_enabled(false);
    Tensor *softplus_negative_abs = op_log(op_add_scalar(op_exp(op_neg(op_abs(logits))), 1.0));
    Tensor *unweighted = op_add(op_sub(op_relu(logits), op_mul(logits, target)), softplus_negative_abs);
    Tensor *loss = weight ? op_mul(unweighted, weight) : op_clone(unweighted);
    autograd_set_enabled(previous);
    if (!tensor_same_shape(loss, logits)) tensor_fatal("bce_with_logits", "weight must broadcast to the logits' shape");
    Tensor *inputs[3] = {logits, target, weight};
    int n_inputs = weight ? 3 : 2;
    if (autograd_needed(n_inputs, inputs)) {
        AutogradNode *node = autograd_record(loss, "bce_with_logits", bce_backward, n_inputs, inputs);
        if (weight && weight->requires_grad) autograd_save(node, 0, unweighted);
    }
    return reduce_loss(loss, reduction, logits->ndim ? logits->shape[0] : 1);
}

Tensor *op_bce_with_logits(Tensor *logits, Tensor *target, Tensor *weight, Reduction reduction) {
    check_float_input_any_device("bce_with_logits", logits);
    check_float_input_any_device("bce_with_logits", target);
    check_same_device("bce_with_logits", logits, target);
    if (!tensor_same_shape(logits, target)) tensor_fatal("bce_with_logits", "target and logits shapes differ");
    if (tensor_is_cuda(logits)) {
        if (weight) check_same_device("bce_with_logits", logits, weight);
        return bce_with_logits_device(logits, target, weight, reduction);
    }
    Tensor *x = contiguous(logits), *t = contiguous(target), *w = NULL;
    if (weight) {  // materialise the broadcast weight once
        check_float_input("bce_with_logits", weight);
        bool previous = autograd_set_enabled(false);
        w = contiguous(op_expand(weight, tensor_shape(logits)));
        autograd_set_enabled(previous);
    }
    Tensor *loss = tensor_empty_like(logits);
    Tensor *unweighted = weight && weight->requires_grad ? tensor_empty_like(logits) : NULL;
    int64_t n = tensor_numel(loss);
    for (int64_t i = 0; i < n; i++) {
        double xi = tensor_get(x, i), ti = tensor_get(t, i);
        double value = (xi > 0 ? xi : 0) - xi * ti + log1p(exp(-fabs(xi)));
        if (unweighted) tensor_set(unweighted, i, value);
        tensor_set(loss, i, w ? value * tensor_get(w, i) : value);
    }
    Tensor *inputs[3] = {logits, target, weight};
    int n_inputs = weight ? 3 : 2;
    if (autograd_needed(n_inputs, inputs)) {
        AutogradNode *node = autograd_record(loss, "bce_with_logits", bce_backward, n_inputs, inputs);
        if (unweighted) autograd_save(node, 0, unweighted);
    }
    return reduce_loss(loss, reduction, logits->ndim ? logits->shape[0] : 1);
}

// ---------------------------------------------------------------- regression and divergence

// The regression and divergence losses are compositions of ops that run on either device.
static void check_pair(const char *op, Tensor *a, Tensor *b) {
    check_float_input_any_device(op, a);
    check_float_input_any_device(op, b);
    check_same_device(op, a, b);
    if (!tensor_same_shape(a, b)) {
        char sa[96], sb[96];
        tensor_fatal(op, "input %s and target %s shapes differ", tensor_shape_string(a, sa, sizeof sa), tensor_shape_string(b, sb, sizeof sb));
    }
}

Tensor *op_mse_loss(Tensor *input, Tensor *target, Reduction reduction) {
    check_pair("mse_loss", input, target);
    Tensor *d = op_sub(input, target);
    return reduce_loss(op_mul(d, d), reduction, input->ndim ? input->shape[0] : 1);
}

Tensor *op_l1_loss(Tensor *input, Tensor *target, Reduction reduction) {
    check_pair("l1_loss", input, target);
    return reduce_loss(op_abs(op_sub(input, target)), reduction, input->ndim ? input->shape[0] : 1);
}

Tensor *op_kl_div(Tensor *input, Tensor *target, Reduction reduction, bool log_target) {
    check_pair("kl_div", input, target);
    Tensor *pointwise;
    if (log_target) {
        pointwise = op_mul(op_exp(target), op_sub(target, input));
    } else {
        // target * (log target - input), with 0 log 0 = 0 (xlogy): clamping inside the log only
        // changes entries whose target is 0, where the product is 0 either way.
        double tiny = target->dtype == DTYPE_F32 ? FLT_MIN : DBL_MIN;
        pointwise = op_mul(target, op_sub(op_log(op_clamp(target, tiny, INFINITY)), input));
    }
    return reduce_loss(pointwise, reduction, input->ndim ? input->shape[0] : 1);
}

Tensor *op_entropy(Tensor *logits, Reduction reduction) {
    check_float_input_any_device("entropy", logits);
    if (logits->ndim < 2) tensor_fatal("entropy", "logits must be [B, N, ...]");
    int class_dim = 1;
    Tensor *h = op_neg(op_sum(op_mul(op_softmax(logits, 1), op_log_softmax(logits, 1)), &class_dim, 1, false));
    return reduce_loss(h, reduction, logits->shape[0]);
}
