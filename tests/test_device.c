// Tensors on the (emulated) CUDA device: creation, element access, copies in every direction
// with strides and dtype changes, moving tensors between devices with gradients flowing back,
// device memory returned on release, and a clear error for ops without a CUDA implementation yet.
#include <string.h>

#include "engine/gpu/gpu.h"
#include "engine/ops.h"
#include "tests/check.h"
#include "tests/expect_fatal.h"

TEST_MAIN_COUNTERS;

static const Device CUDA0 = {DEVICE_CUDA, 0};

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
    op_exp(op_to_device(tensor_zeros(DTYPE_F32, SHAPE(3)), CUDA0));
}

TEST(ops_without_cuda_kernels_say_so) {
    CHECK(expect_fatal(op_on_device, NULL, "exp: no CUDA implementation of this op yet"));
}

int main(void) {
    RUN_TEST(device_tensors_hold_values);
    RUN_TEST(default_device_creation);
    RUN_TEST(gradients_cross_devices);
    RUN_TEST(ops_without_cuda_kernels_say_so);
    return test_summary();
}
