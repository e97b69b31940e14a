// The select kernel (kernels/where.cu) on the emulated device against the CPU op_where, with
// broadcast operands, infinities in the unselected operand, NaN-poisoned outputs, in every thread
// order; and op_where / op_masked_fill on the device with their gradients.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/gpu/gpu.h"
#include "engine/ops.h"
#include "kernels/where.h"
#include "tests/check.h"
#include "tests/kernel_test_support.h"

TEST_MAIN_COUNTERS;

static const Device CUDA0 = {DEVICE_CUDA, 0};

typedef struct {
    Tensor *condition, *a, *b, *expected;
} WhereCase;

static void run_where(void *context, int order) {
    WhereCase *c = context;
    TensorScope scope = tensor_scope_begin();
    Tensor *out = op_where(op_to_device(c->condition, CUDA0), op_to_device(c->a, CUDA0), op_to_device(c->b, CUDA0));
    Tensor *back = tensor_to_device_raw(out, device_cpu());
    int64_t n = tensor_numel(c->expected);
    int mismatches = 0;
    for (int64_t i = 0; i < n; i++) {
        float e = tensor_f32(c->expected)[i], g = tensor_f32(back)[i];
        if (memcmp(&e, &g, sizeof e) != 0) mismatches++;  // a select is exact
    }
    CHECK_MSG(mismatches == 0, "order %s: %d of %lld elements differ", KERNEL_TEST_ORDERS[order], mismatches, (long long)n);
    tensor_scope_end(scope);
}

TEST(where_matches_cpu_in_every_order) {
    Shape shapes[][3] = {{SHAPE(1), SHAPE(1), SHAPE(1)},
                         {SHAPE(3, 1, 5), SHAPE(1, 7, 5), SHAPE(5)},
                         {SHAPE(257), SHAPE(257), SHAPE()},
                         {SHAPE(2, 3, 1, 4), SHAPE(2, 1, 13, 4), SHAPE(3, 13, 1)}};
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        TensorScope scope = tensor_scope_begin();
        WhereCase c;
        c.condition = tensor_empty(DTYPE_U8, shapes[k][0]);
        for (int64_t i = 0; i < tensor_numel(c.condition); i++) ((uint8_t *)tensor_data(c.condition))[i] = (uint8_t)(next_random() % 3 == 0 ? 0 : 1 + next_random() % 200);
        c.a = tensor_empty(DTYPE_F32, shapes[k][1]);
        c.b = tensor_empty(DTYPE_F32, shapes[k][2]);
        for (int64_t i = 0; i < tensor_numel(c.a); i++) tensor_f32(c.a)[i] = i % 5 == 0 ? -INFINITY : random_uniform(-2, 2);
        for (int64_t i = 0; i < tensor_numel(c.b); i++) tensor_f32(c.b)[i] = i % 7 == 0 ? NAN : random_uniform(-2, 2);
        c.expected = op_where(c.condition, c.a, c.b);
        in_every_order(run_where, &c);
        tensor_scope_end(scope);
    }
    kernel_checked("where_f32");
}

TEST(masked_fill_gradients_on_device) {
    TensorScope scope = tensor_scope_begin();
    Tensor *mask = tensor_from_data(DTYPE_U8, SHAPE(3, 1), (uint8_t[]){1, 0, 1});
    Tensor *x_cpu = tensor_requires_grad(tensor_from_data(DTYPE_F32, SHAPE(3, 2), (float[]){1, 2, 3, 4, 5, 6}));
    Tensor *x_dev = tensor_requires_grad(tensor_to_device_raw(x_cpu, CUDA0));
    Tensor *w = tensor_from_data(DTYPE_F32, SHAPE(3, 2), (float[]){0.5f, -1, 2, 3, -4, 1});
    Tensor *y_dev = op_masked_fill(x_dev, mask, -INFINITY);
    CHECK(tensor_is_cuda(y_dev) && isinf(tensor_get(y_dev, 0)) && tensor_get(y_dev, 2) == 3.0);
    tensor_backward(op_sum_all(op_mul(op_masked_fill(x_cpu, mask, 7.0), w)), NULL);
    tensor_backward(op_sum_all(op_mul(op_masked_fill(x_dev, mask, 7.0), op_to_device(w, CUDA0))), NULL);
    Tensor *g = tensor_to_device_raw(x_dev->grad, device_cpu());
    for (int i = 0; i < 6; i++) CHECK(tensor_f32(g)[i] == tensor_f32(x_cpu->grad)[i]);
    tensor_scope_end(scope);
}

int main(void) {
    kernel_test_seed(0x51ED270B27A9F3C5ull);
    RUN_TEST(where_matches_cpu_in_every_order);
    RUN_TEST(masked_fill_gradients_on_device);
    print_kernels_checked();
    return test_summary();
}
