// Tensors on the (emulated) CUDA device: creation, element access, copies in every direction
// with strides and dtype changes, moving tensors between devices with gradients flowing back,
// device memory returned on release, and a clear error for ops without a CUDA implementation yet.
#include <stdlib.h>
#include <string.h>

#include "engine/gpu/gpu.h"
#include "engine/ops.h"
#include "engine/optim.h"
#include "models/small.h"
#include "tests/check.h"
#include "tests/expect_fatal.h"

TEST_MAIN_COUNTERS;

static const Device CUDA0 = {DEVICE_CUDA, 0};

// Every element of a device result within atol + rtol * |expected| of the CPU's: one failure line
// with the count and the worst element, instead of a line per element.
static void expect_close(Tensor *device_result, Tensor *cpu_result, double atol, double rtol, const char *what, int index) {
    CHECK_MSG(device_result && cpu_result, "%s %d: missing tensor", what, index);
    if (!device_result || !cpu_result) return;
    TensorScope scope = tensor_scope_begin();
    Tensor *got = tensor_to_device_raw(device_result, device_cpu()), *expected = op_contiguous(cpu_result);
    int64_t bad = 0, worst = -1;
    double worst_excess = 0;
    for (int64_t j = 0; j < tensor_numel(got); j++) {
        double e = tensor_f32(expected)[j], g = tensor_f32(got)[j], excess = fabs(g - e) - (atol + rtol * fabs(e));
        if (!(excess <= 0)) bad++;
        if (!(excess <= worst_excess)) {
            worst_excess = excess;
            worst = j;
        }
    }
    CHECK_MSG(bad == 0, "%s %d: %lld elements off, worst %lld: device %.9g, cpu %.9g", what, index, (long long)bad,
              (long long)worst, worst >= 0 ? tensor_f32(got)[worst] : 0.0, worst >= 0 ? tensor_f32(expected)[worst] : 0.0);
    tensor_scope_end(scope);
}

TEST(device_tensors_hold_values) {
    TensorScope scope = tensor_scope_begin();
    size_t in_use_before = gpu_memory_stats().bytes_in_use;
    Tensor *x = tensor_from_data(DTYPE_F32, SHAPE(2, 3), (float[]){1, 2, 3, 4, 5, 6});
    Tensor *d = op_to_device(x, CUDA0);
    CHECK(tensor_is_cuda(d) && !tensor_is_cuda(x));
    CHECK(gpu_memory_stats().bytes_in_use > in_use_before);
    CHECK(tensor_get(d, 4) == 5.0);
    tensor_set(d, 0, -7.5);
    CHECK(tensor_get(d, 0) == -7.5 && tensor_get(x, 0) == 1.0);
    // Strided device -> host copy (a transposed view of a device tensor).
    Tensor *back = op_to_device(op_contiguous(op_transpose(d, 0, 1)), device_cpu());
    float expected[6] = {-7.5f, 4, 2, 5, 3, 6};
    CHECK(memcmp(tensor_data(back), expected, sizeof expected) == 0);
    // Host -> strided device view, with a dtype change on the way.
    Tensor *target = tensor_zeros_like(d);
    Tensor *column = op_narrow(target, 1, 1, 1);
    Tensor *source = tensor_from_data(DTYPE_F64, SHAPE(2, 1), (double[]){0.25, -0.5});
    tensor_copy_raw(column, source);
    CHECK(tensor_get(target, 1) == 0.25 && tensor_get(target, 4) == -0.5 && tensor_get(target, 0) == 0.0 && tensor_get(target, 5) == 0.0);
    // Device -> device.
    Tensor *copy = tensor_to_device_raw(d, CUDA0);
    CHECK(copy->storage != d->storage && tensor_get(copy, 5) == 6.0);
    tensor_scope_end(scope);
    CHECK(gpu_memory_stats().bytes_in_use == in_use_before);  // every device block went back
}

TEST(default_device_creation) {
    TensorScope scope = tensor_scope_begin();
    tensor_set_default_device(CUDA0);
    Tensor *z = tensor_zeros(DTYPE_F32, SHAPE(5));
    Tensor *f = tensor_full(DTYPE_I64, SHAPE(3), 9);
    Tensor *a = tensor_arange(DTYPE_F32, 4);
    tensor_set_default_device(device_cpu());
    CHECK(tensor_is_cuda(z) && tensor_is_cuda(f) && tensor_is_cuda(a));
    CHECK(tensor_get(z, 4) == 0.0 && tensor_get(f, 2) == 9.0 && tensor_get(a, 3) == 3.0);
    tensor_scope_end(scope);
}

TEST(gradients_cross_devices) {
    TensorScope scope = tensor_scope_begin();
    Tensor *x = tensor_requires_grad(tensor_from_data(DTYPE_F32, SHAPE(3), (float[]){1, 2, 3}));
    Tensor *on_device = op_to_device(x, CUDA0);
    Tensor *back = op_to_device(on_device, device_cpu());
    Tensor *w = tensor_from_data(DTYPE_F32, SHAPE(3), (float[]){0.5f, -1, 2});
    tensor_backward(op_sum_all(op_mul(back, w)), NULL);
    CHECK(x->grad && !tensor_is_cuda(x->grad));
    CHECK(tensor_get(x->grad, 0) == 0.5 && tensor_get(x->grad, 1) == -1.0 && tensor_get(x->grad, 2) == 2.0);
    // A leaf on the device accumulates its gradient on the device.
    Tensor *leaf = tensor_requires_grad(op_to_device(tensor_from_data(DTYPE_F32, SHAPE(2), (float[]){3, 4}), CUDA0));
    Tensor *w2 = tensor_from_data(DTYPE_F32, SHAPE(2), (float[]){0.5f, -1});
    for (int pass = 0; pass < 2; pass++) tensor_backward(op_sum_all(op_mul(op_to_device(leaf, device_cpu()), w2)), NULL);
    CHECK(leaf->grad && tensor_is_cuda(leaf->grad) && tensor_get(leaf->grad, 1) == -2.0);
    tensor_scope_end(scope);
}

static void op_on_device(void *context) {
    (void)context;
    Tensor *x = op_to_device(tensor_zeros(DTYPE_F32, SHAPE(3)), CUDA0);
    op_bce_with_logits(x, tensor_zeros(DTYPE_F32, SHAPE(3)), NULL, REDUCTION_MEAN);
}

TEST(mixed_devices_are_refused) {
    CHECK(expect_fatal(op_on_device, NULL, "bce_with_logits: operands are on different devices (cuda and cpu)"));
}

TEST(bce_with_logits_on_device_matches_cpu) {
    TensorScope scope = tensor_scope_begin();
    float logits[6] = {-30, -2, -0.5f, 0, 1.5f, 40}, targets[6] = {0, 1, 0.25f, 1, 0, 1}, weights[3] = {1, 0.5f, 2};
    Tensor *x_cpu = tensor_requires_grad(tensor_from_data(DTYPE_F32, SHAPE(2, 3), logits));
    Tensor *w_cpu = tensor_requires_grad(tensor_from_data(DTYPE_F32, SHAPE(3), weights));
    Tensor *t = tensor_from_data(DTYPE_F32, SHAPE(2, 3), targets);
    Tensor *x_dev = tensor_requires_grad(tensor_to_device_raw(x_cpu, CUDA0));
    Tensor *w_dev = tensor_requires_grad(tensor_to_device_raw(w_cpu, CUDA0));
    Tensor *loss_cpu = op_bce_with_logits(x_cpu, t, w_cpu, REDUCTION_MEAN);
    Tensor *loss_dev = op_bce_with_logits(x_dev, op_to_device(t, CUDA0), w_dev, REDUCTION_MEAN);
    CHECK_CLOSE(tensor_item(loss_dev), tensor_item(loss_cpu), 1e-6, 1e-5);  // log(1+e) vs log1p(e)
    tensor_backward(loss_cpu, NULL);
    tensor_backward(loss_dev, NULL);
    for (int i = 0; i < 6; i++) CHECK_CLOSE(tensor_get(x_dev->grad, i), tensor_get(x_cpu->grad, i), 1e-6, 1e-5);
    for (int i = 0; i < 3; i++) CHECK_CLOSE(tensor_get(w_dev->grad, i), tensor_get(w_cpu->grad, i), 1e-6, 1e-5);
    tensor_scope_end(scope);
}

// The same small network on the CPU and on the emulated device: forward values and every
// parameter gradient agree. Exercises the device paths of linear (GEMM), broadcast add, relu,
// tanh, layer norm, softmax, log_softmax, reductions (sum, mean, max, logsumexp), views and the copies
// autograd makes.
static Tensor *network_loss(Tensor *x, Tensor *w1, Tensor *b1, Tensor *w2, Tensor *target, Tensor *ln_weight) {
    Tensor *h = op_layer_norm(op_relu(op_linear(x, w1, b1)), ln_weight, b1, 1e-5);  // [B, H]
    Tensor *logits = op_linear(op_tanh(h), w2, NULL);           // [B, N]
    Tensor *p = op_softmax(logits, 1);
    Tensor *lse = op_logsumexp(op_transpose(logits, 0, 1), 0, false);
    Tensor *peak = op_max(op_log_softmax(logits, -1), 1, false);
    Tensor *mse = op_mean_all(op_mul(op_sub(p, target), op_sub(p, target)));
    int dims[1] = {0};
    return op_add(op_add(mse, op_mean_all(lse)), op_mul_scalar(op_sum(peak, dims, 1, false), 0.1));
}

TEST(network_on_device_matches_cpu) {
    TensorScope scope = tensor_scope_begin();
    Rng rng = rng_make(5, 0);
    const int64_t B = 7, D = 13, H = 33, N = 5;
    Tensor *cpu[6];
    Shape shapes[6] = {SHAPE(B, D), SHAPE(H, D), SHAPE(H), SHAPE(N, H), SHAPE(B, N), SHAPE(H)};
    for (int i = 0; i < 6; i++) {
        cpu[i] = tensor_empty(DTYPE_F32, shapes[i]);
        rng_fill_normal_f32(&rng, tensor_f32(cpu[i]), tensor_numel(cpu[i]), 0.0f, 0.5f);
    }
    Tensor *dev[6];
    for (int i = 0; i < 6; i++) dev[i] = tensor_to_device_raw(cpu[i], CUDA0);
    int trained[4] = {1, 2, 3, 5};
    for (int k = 0; k < 4; k++) {
        int i = trained[k];
        tensor_requires_grad(cpu[i]);
        tensor_requires_grad(dev[i]);
    }
    Tensor *loss_cpu = network_loss(cpu[0], cpu[1], cpu[2], cpu[3], cpu[4], cpu[5]);
    Tensor *loss_dev = network_loss(dev[0], dev[1], dev[2], dev[3], dev[4], dev[5]);
    CHECK(tensor_is_cuda(loss_dev));
    // f32 on both sides; sums in another order (kernels vs CPU loops): a few ulp of the values.
    CHECK_CLOSE(tensor_item(loss_dev), tensor_item(loss_cpu), 1e-5, 1e-5);
    tensor_backward(loss_cpu, NULL);
    tensor_backward(loss_dev, NULL);
    for (int k = 0; k < 4; k++) {
        int i = trained[k];
        CHECK(dev[i]->grad && tensor_is_cuda(dev[i]->grad));
        expect_close(dev[i]->grad, cpu[i]->grad, 1e-5, 1e-4, "gradient of input", i);
    }
    tensor_scope_end(scope);
}

// The fused cross-entropy kernel behind op_cross_entropy on the device: loss and gradient against
// the CPU op, with smoothing, class weights, an ignored target and 4-d logits.
TEST(cross_entropy_on_device_matches_cpu) {
    TensorScope scope = tensor_scope_begin();
    Rng rng = rng_make(8, 0);
    Tensor *logits = tensor_empty(DTYPE_F32, SHAPE(3, 5, 2, 2));
    rng_fill_normal_f32(&rng, tensor_f32(logits), tensor_numel(logits), 0.0f, 2.0f);
    int64_t labels[12] = {0, 4, 2, -100, 1, 1, 3, 0, 2, 4, 4, 0};
    Tensor *target = tensor_from_data(DTYPE_I64, SHAPE(3, 2, 2), labels);
    CrossEntropyOptions options = cross_entropy_defaults();
    options.label_smoothing = 0.1;
    options.class_weight = tensor_from_data(DTYPE_F32, SHAPE(5), (float[]){1, 2, 0.5f, 1, 3});
    for (int reduction = 0; reduction < 2; reduction++) {
        options.reduction = reduction == 0 ? REDUCTION_MEAN : REDUCTION_SUM;
        Tensor *cpu = tensor_requires_grad(tensor_to_device_raw(logits, device_cpu()));
        Tensor *dev = tensor_requires_grad(tensor_to_device_raw(logits, CUDA0));
        Tensor *loss_cpu = op_cross_entropy(cpu, target, options), *loss_dev = op_cross_entropy(dev, target, options);
        CHECK(tensor_is_cuda(loss_dev));
        CHECK_CLOSE(tensor_item(loss_dev), tensor_item(loss_cpu), 1e-5, 1e-5);  // f32, another summation order
        tensor_backward(op_mul_scalar(loss_cpu, 0.5), NULL);
        tensor_backward(op_mul_scalar(loss_dev, 0.5), NULL);
        expect_close(dev->grad, cpu->grad, 1e-6, 1e-4, "logits gradient, reduction", reduction);
    }
    tensor_scope_end(scope);
}

// A small CNN step (conv, batch norm with running statistics, relu, max pool, global average pool,
// linear, cross-entropy) on the CPU and on the emulated device: loss, every gradient and the
// updated running statistics agree.
enum { CNN_TENSORS = 10 };
static Tensor *cnn_loss(Tensor **t, Tensor *labels) {
    // t: x, conv1.w, bn1.w, bn1.b, conv2.w, conv2.b, fc.w, fc.b, bn1.running_mean, bn1.running_var
    Tensor *h = op_conv2d(t[0], t[1], NULL, conv2d_params(1, 1, 1, 1));
    h = op_batch_norm_relu(h, t[2], t[3], t[8], t[9], true, 0.1, 1e-5);  // device: batch_norm then relu
    h = op_max_pool2d(h, 2, 2, 0);
    h = op_relu(op_conv2d(h, t[4], t[5], conv2d_params(2, 1, 1, 2)));
    h = op_flatten(op_adaptive_avg_pool2d(h, 1, 1), 1, -1);
    return op_cross_entropy(op_linear(h, t[6], t[7]), labels, cross_entropy_defaults());
}

TEST(cnn_step_on_device_matches_cpu) {
    TensorScope scope = tensor_scope_begin();
    Rng rng = rng_make(11, 0);
    Shape shapes[CNN_TENSORS] = {SHAPE(3, 2, 9, 7), SHAPE(6, 2, 3, 3), SHAPE(6), SHAPE(6), SHAPE(8, 3, 3, 3),
                                 SHAPE(8), SHAPE(4, 8), SHAPE(4), SHAPE(6), SHAPE(6)};
    Tensor *cpu[CNN_TENSORS], *dev[CNN_TENSORS];
    for (int i = 0; i < CNN_TENSORS; i++) {
        cpu[i] = tensor_empty(DTYPE_F32, shapes[i]);
        rng_fill_normal_f32(&rng, tensor_f32(cpu[i]), tensor_numel(cpu[i]), i == 9 ? 2.0f : 0.0f, i == 9 ? 0.1f : 0.5f);
        dev[i] = tensor_to_device_raw(cpu[i], CUDA0);
        if (i >= 1 && i <= 7) {
            tensor_requires_grad(cpu[i]);
            tensor_requires_grad(dev[i]);
        }
    }
    Tensor *labels = tensor_from_data(DTYPE_I64, SHAPE(3), (int64_t[]){3, 0, 2});
    Tensor *loss_cpu = cnn_loss(cpu, labels), *loss_dev = cnn_loss(dev, labels);
    CHECK_CLOSE(tensor_item(loss_dev), tensor_item(loss_cpu), 1e-5, 1e-5);
    tensor_backward(loss_cpu, NULL);
    tensor_backward(loss_dev, NULL);
    for (int i = 1; i < CNN_TENSORS; i++) {
        // Gradients of the parameters (1..7) and the running statistics updated in place (8, 9):
        // f32 sums in other orders, through two convolutions.
        expect_close(i <= 7 ? dev[i]->grad : dev[i], i <= 7 ? cpu[i]->grad : cpu[i], 2e-5, 2e-4, "tensor", i);
    }
    tensor_scope_end(scope);
}

// Flash attention behind op_scaled_dot_product_attention on the device, against the composed CPU
// op: no mask, causal, a broadcast boolean mask, a full additive mask; outputs and q/k/v gradients.
TEST(attention_on_device_matches_cpu) {
    TensorScope scope = tensor_scope_begin();
    Rng rng = rng_make(13, 0);
    const int64_t B = 2, H = 3, Tq = 7, Tk = 9, D = 5, Dv = 6;
    Shape shapes[3] = {SHAPE(B, H, Tq, D), SHAPE(B, H, Tk, D), SHAPE(B, H, Tk, Dv)};
    Tensor *bool_mask = tensor_empty(DTYPE_U8, SHAPE(Tq, Tk));
    for (int64_t i = 0; i < Tq * Tk; i++) ((uint8_t *)tensor_data(bool_mask))[i] = (i * 7) % 5 != 0;
    Tensor *float_mask = tensor_empty(DTYPE_F32, SHAPE(B, H, Tq, Tk));
    rng_fill_normal_f32(&rng, tensor_f32(float_mask), tensor_numel(float_mask), 0.0f, 1.0f);
    for (int variant = 0; variant < 4; variant++) {
        Tensor *cpu[3], *dev[3];
        for (int i = 0; i < 3; i++) {
            cpu[i] = tensor_empty(DTYPE_F32, shapes[i]);
            rng_fill_normal_f32(&rng, tensor_f32(cpu[i]), tensor_numel(cpu[i]), 0.0f, 1.0f);
            dev[i] = tensor_requires_grad(tensor_to_device_raw(cpu[i], CUDA0));
            tensor_requires_grad(cpu[i]);
        }
        Tensor *mask = variant == 2 ? bool_mask : variant == 3 ? float_mask : NULL;
        bool causal = variant == 1;
        Tensor *out_cpu = op_scaled_dot_product_attention(cpu[0], cpu[1], cpu[2], mask, causal, 0);
        Tensor *out_dev = op_scaled_dot_product_attention(dev[0], dev[1], dev[2], mask, causal, 0);
        Tensor *weights = tensor_empty(DTYPE_F32, tensor_shape(out_cpu));
        rng_fill_normal_f32(&rng, tensor_f32(weights), tensor_numel(weights), 0.0f, 1.0f);
        tensor_backward(op_sum_all(op_mul(out_cpu, weights)), NULL);
        tensor_backward(op_sum_all(op_mul(out_dev, tensor_to_device_raw(weights, CUDA0))), NULL);
        // Online softmax over key tiles vs a two-pass softmax: f32 rounding in another order.
        expect_close(out_dev, out_cpu, 1e-5, 1e-4, "output, variant", variant);
        for (int i = 0; i < 3; i++) expect_close(dev[i]->grad, cpu[i]->grad, 1e-4, 1e-3, "q/k/v gradient", i);
    }
    tensor_scope_end(scope);
}

// Joining and indexing on the device: concat, embedding (index_select), gather; values and
// gradients against the CPU (copies and index-ordered sums: exact).
static Tensor *indexing_loss(Tensor **t, Tensor *tokens, Tensor *picks) {
    Tensor *joined = op_concat((Tensor *[]){t[0], t[1]}, 2, 1);                  // [4, 7]
    Tensor *embedded = op_embedding(t[2], tokens);                              // [2, 3, 7]
    Tensor *mixed = op_add(embedded, op_narrow(joined, 0, 1, 3));  // [2, 3, 7] + [3, 7]
    Tensor *picked = op_gather(joined, 1, picks);                               // [4, 2]
    return op_add(op_sum_all(op_mul(mixed, mixed)), op_sum_all(op_exp(picked)));
}

TEST(indexing_on_device_matches_cpu) {
    TensorScope scope = tensor_scope_begin();
    Rng rng = rng_make(17, 0);
    Shape shapes[3] = {SHAPE(4, 3), SHAPE(4, 4), SHAPE(6, 7)};
    Tensor *cpu[3], *dev[3];
    for (int i = 0; i < 3; i++) {
        cpu[i] = tensor_empty(DTYPE_F32, shapes[i]);
        rng_fill_normal_f32(&rng, tensor_f32(cpu[i]), tensor_numel(cpu[i]), 0.0f, 1.0f);
        dev[i] = tensor_requires_grad(tensor_to_device_raw(cpu[i], CUDA0));
        tensor_requires_grad(cpu[i]);
    }
    Tensor *tokens = tensor_from_data(DTYPE_I64, SHAPE(2, 3), (int64_t[]){5, 0, 5, 2, 2, 1});
    Tensor *picks = tensor_from_data(DTYPE_I64, SHAPE(4, 2), (int64_t[]){6, 0, 3, 3, 1, 5, 2, 4});
    Tensor *loss_cpu = indexing_loss(cpu, tokens, picks), *loss_dev = indexing_loss(dev, tokens, picks);
    CHECK_CLOSE(tensor_item(loss_dev), tensor_item(loss_cpu), 1e-5, 1e-6);
    tensor_backward(loss_cpu, NULL);
    tensor_backward(loss_dev, NULL);
    for (int i = 0; i < 3; i++) expect_close(dev[i]->grad, cpu[i]->grad, 1e-5, 1e-6, "gradient of input", i);
    tensor_scope_end(scope);
}

// Training on the device: the same small CNN (SGD with Nesterov momentum and weight decay) and a
// transformer block (layer norm, causal attention, GELU MLP; SGD with momentum) trained for a few steps on the CPU and
// on the emulated device end with the same weights, within f32 reordering tolerances.
static void expect_same_weights(ParamStore *cpu, ParamStore *dev, double atol, double rtol, const char *what) {
    float *moved = malloc((size_t)dev->numel * sizeof(float));
    gpu_copy_to_host(moved, params_values(dev), (size_t)dev->numel * sizeof(float));
    int64_t worst = -1;
    double worst_excess = 0;
    for (int64_t i = 0; i < cpu->numel; i++) {
        double expected = params_values(cpu)[i], excess = fabs(moved[i] - expected) - (atol + rtol * fabs(expected));
        if (!(excess <= worst_excess)) {
            worst_excess = excess;
            worst = i;
        }
    }
    CHECK_MSG(worst < 0, "%s: parameter %lld differs: device %.9g, cpu %.9g", what, (long long)worst,
              worst >= 0 ? moved[worst] : 0.0, worst >= 0 ? params_values(cpu)[worst] : 0.0);
    free(moved);
}

TEST(cnn_trains_on_device_like_cpu) {
    TensorScope scope = tensor_scope_begin();
    SmallCnn cpu = small_cnn_create(1, 4, 3, 21), dev = small_cnn_create(1, 4, 3, 21);
    params_to_device(dev.params, CUDA0);
    Optimizer *opt_cpu = optimizer_new_sgd(cpu.params->numel, 0.05, 0.9, 0, 1, 1e-3);
    Optimizer *opt_dev = optimizer_new_sgd(dev.params->numel, 0.05, 0.9, 0, 1, 1e-3);
    optimizer_move_to_device(opt_dev);
    Rng rng = rng_make(3, 0);
    for (int step = 0; step < 4; step++) {
        TensorScope inner = tensor_scope_begin();
        Tensor *x = tensor_empty(DTYPE_F32, SHAPE(6, 1, 10, 10));
        rng_fill_normal_f32(&rng, tensor_f32(x), tensor_numel(x), 0.0f, 1.0f);
        Tensor *y = tensor_from_data(DTYPE_I64, SHAPE(6), (int64_t[]){0, 1, 2, 2, 1, 0});
        params_zero_grad(cpu.params);
        params_zero_grad(dev.params);
        tensor_backward(op_cross_entropy(small_cnn_forward(&cpu, x, true), y, cross_entropy_defaults()), NULL);
        tensor_backward(op_cross_entropy(small_cnn_forward(&dev, op_to_device(x, CUDA0), true), y, cross_entropy_defaults()), NULL);
        optimizer_step(opt_cpu, params_values(cpu.params), params_grads(cpu.params));
        optimizer_step(opt_dev, params_values(dev.params), params_grads(dev.params));
        tensor_scope_end(inner);
    }
    // 4 steps of f32 reordering through two convolutions and batch norm.
    expect_same_weights(cpu.params, dev.params, 1e-5, 1e-4, "cnn");
    CHECK_CLOSE(tensor_get(dev.bn1.running_var, 2), tensor_get(cpu.bn1.running_var, 2), 1e-5, 1e-4);
    optimizer_free(opt_cpu);
    optimizer_free(opt_dev);
    small_cnn_free(&cpu);
    small_cnn_free(&dev);
    tensor_scope_end(scope);
}

typedef struct {
    ParamStore *params;
    LayerNorm ln1, ln2;
    Linear qkv, proj, fc1, fc2, head;
} Block;

static Block block_create(uint64_t seed) {
    Block b = {.params = params_new()};
    Rng rng = rng_make(seed, 0);
    const int64_t D = 16;
    b.ln1 = layernorm_create(b.params, "ln1", D, 1e-5);
    b.qkv = linear_create(b.params, "qkv", D, 3 * D, true, &rng);
    b.proj = linear_create(b.params, "proj", D, D, true, &rng);
    b.ln2 = layernorm_create(b.params, "ln2", D, 1e-5);
    b.fc1 = linear_create(b.params, "fc1", D, 4 * D, true, &rng);
    b.fc2 = linear_create(b.params, "fc2", 4 * D, D, true, &rng);
    b.head = linear_create(b.params, "head", D, 5, true, &rng);
    params_finalize(b.params);
    return b;
}

// x [B, T, D] -> logits [B, 5]: pre-norm causal attention (2 heads) and MLP, mean over tokens.
static Tensor *block_forward(Block *b, Tensor *x) {
    // op_self_attention: the fused kernel on the CPU, per-head views + flash attention on the device.
    Tensor *attended = op_self_attention(linear_forward(&b->qkv, layernorm_forward(&b->ln1, x)), 2, true, 0);
    x = op_add(x, linear_forward(&b->proj, attended));
    x = op_add(x, linear_forward(&b->fc2, op_gelu(linear_forward(&b->fc1, layernorm_forward(&b->ln2, x)))));
    int token_dim = 1;
    return linear_forward(&b->head, op_mean(x, &token_dim, 1, false));
}

TEST(transformer_block_trains_on_device_like_cpu) {
    TensorScope scope = tensor_scope_begin();
    Block cpu = block_create(31), dev = block_create(31);
    params_to_device(dev.params, CUDA0);
    // SGD, not Adam: the key bias gets an exactly-zero gradient (softmax ignores a score shift that
    // is the same for every key), so both devices see only rounding noise there, and Adam's
    // m / sqrt(v) turns noise of either sign into a full +-lr step. The Adam kernels themselves are
    // checked bit for bit against the CPU in tests/test_kernels_nn.c.
    Optimizer *opt_cpu = optimizer_new_sgd(cpu.params->numel, 0.1, 0.9, 0, 0, 0.01);
    Optimizer *opt_dev = optimizer_new_sgd(dev.params->numel, 0.1, 0.9, 0, 0, 0.01);
    optimizer_move_to_device(opt_dev);
    Rng rng = rng_make(4, 0);
    for (int step = 0; step < 4; step++) {
        TensorScope inner = tensor_scope_begin();
        Tensor *x = tensor_empty(DTYPE_F32, SHAPE(3, 7, 16));
        rng_fill_normal_f32(&rng, tensor_f32(x), tensor_numel(x), 0.0f, 1.0f);
        Tensor *y = tensor_from_data(DTYPE_I64, SHAPE(3), (int64_t[]){4, 0, 2});
        params_zero_grad(cpu.params);
        params_zero_grad(dev.params);
        tensor_backward(op_cross_entropy(block_forward(&cpu, x), y, cross_entropy_defaults()), NULL);
        tensor_backward(op_cross_entropy(block_forward(&dev, op_to_device(x, CUDA0)), y, cross_entropy_defaults()), NULL);
        optimizer_step(opt_cpu, params_values(cpu.params), params_grads(cpu.params));
        optimizer_step(opt_dev, params_values(dev.params), params_grads(dev.params));
        tensor_scope_end(inner);
    }
    // 4 steps of f32 reordering (flash attention's online softmax, GEMM order).
    expect_same_weights(cpu.params, dev.params, 1e-5, 1e-4, "transformer block");
    optimizer_free(opt_cpu);
    optimizer_free(opt_dev);
    params_free(cpu.params);
    params_free(dev.params);
    tensor_scope_end(scope);
}

// Group norm, dropout (the same Philox mask as the CPU for the same stream) and the composed
// losses (MSE, L1, KL, entropy, soft cross-entropy) on the device against the CPU.
static Tensor *misc_loss(Tensor **t, Rng *rng) {
    Tensor *h = op_group_norm(t[0], 3, t[1], t[2], 1e-5);           // [2, 6, 5]
    h = op_dropout(h, 0.3, true, rng);
    Tensor *logits = op_reshape(h, SHAPE(4, 15));
    Tensor *targets = op_softmax(op_mul_scalar(logits, 0.5), 1);
    Tensor *parts[5] = {op_mse_loss(logits, op_mul_scalar(targets, 2.0), REDUCTION_MEAN),
                        op_l1_loss(logits, targets, REDUCTION_SUM),
                        op_kl_div(op_log_softmax(logits, 1), targets, REDUCTION_BATCHMEAN, false),
                        op_entropy(logits, REDUCTION_MEAN), op_cross_entropy_soft(logits, targets, REDUCTION_MEAN)};
    Tensor *total = parts[0];
    for (int i = 1; i < 5; i++) total = op_add(total, parts[i]);
    return total;
}

TEST(norms_dropout_losses_on_device_match_cpu) {
    TensorScope scope = tensor_scope_begin();
    Rng rng = rng_make(19, 0);
    Shape shapes[3] = {SHAPE(2, 6, 5), SHAPE(6), SHAPE(6)};
    Tensor *cpu[3], *dev[3];
    for (int i = 0; i < 3; i++) {
        cpu[i] = tensor_requires_grad(tensor_empty(DTYPE_F32, shapes[i]));
        rng_fill_normal_f32(&rng, tensor_f32(cpu[i]), tensor_numel(cpu[i]), 0.0f, 1.0f);
        dev[i] = tensor_requires_grad(tensor_to_device_raw(cpu[i], CUDA0));
    }
    Rng drop_cpu = rng_make(5, 6), drop_dev = rng_make(5, 6);
    Tensor *loss_cpu = misc_loss(cpu, &drop_cpu), *loss_dev = misc_loss(dev, &drop_dev);
    CHECK(drop_cpu.offset == drop_dev.offset);
    CHECK_CLOSE(tensor_item(loss_dev), tensor_item(loss_cpu), 1e-5, 1e-5);
    tensor_backward(loss_cpu, NULL);
    tensor_backward(loss_dev, NULL);
    for (int i = 0; i < 3; i++) expect_close(dev[i]->grad, cpu[i]->grad, 1e-5, 1e-4, "gradient of input", i);
    tensor_scope_end(scope);
}

TEST(ema_on_device_matches_cpu_bitwise) {
    TensorScope scope = tensor_scope_begin();
    Mlp model = mlp_create(3, 8, 1, 2, 1), teacher = mlp_create(3, 8, 1, 2, 2);
    Mlp model_dev = mlp_create(3, 8, 1, 2, 1), teacher_dev = mlp_create(3, 8, 1, 2, 2);
    params_to_device(model_dev.params, CUDA0);
    params_to_device(teacher_dev.params, CUDA0);
    for (int i = 0; i < 3; i++) {
        params_ema_update(teacher.params, model.params, 0.99);
        params_ema_update(teacher_dev.params, model_dev.params, 0.99);
    }
    float *moved = malloc((size_t)teacher.params->numel * sizeof(float));
    gpu_copy_to_host(moved, params_values(teacher_dev.params), (size_t)teacher.params->numel * sizeof(float));
    CHECK(memcmp(moved, params_values(teacher.params), (size_t)teacher.params->numel * sizeof(float)) == 0);
    free(moved);
    mlp_free(&model);
    mlp_free(&teacher);
    mlp_free(&model_dev);
    mlp_free(&teacher_dev);
    tensor_scope_end(scope);
}

int main(void) {
    RUN_TEST(device_tensors_hold_values);
    RUN_TEST(default_device_creation);
    RUN_TEST(gradients_cross_devices);
    RUN_TEST(mixed_devices_are_refused);
    RUN_TEST(bce_with_logits_on_device_matches_cpu);
    RUN_TEST(network_on_device_matches_cpu);
    RUN_TEST(cross_entropy_on_device_matches_cpu);
    RUN_TEST(cnn_step_on_device_matches_cpu);
    RUN_TEST(attention_on_device_matches_cpu);
    RUN_TEST(indexing_on_device_matches_cpu);
    RUN_TEST(norms_dropout_losses_on_device_match_cpu);
    RUN_TEST(ema_on_device_matches_cpu_bitwise);
    RUN_TEST(cnn_trains_on_device_like_cpu);
    RUN_TEST(transformer_block_trains_on_device_like_cpu);
    return test_summary();
}
