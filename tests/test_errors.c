// Misuse of the op API ends in one line naming the op, the shapes and what was expected, and a
// non-zero exit status — never a crash or a silent wrong answer.
#include <string.h>

#include "engine/ops.h"
#include "tests/check.h"
#include "tests/expect_fatal.h"

TEST_MAIN_COUNTERS;

static void cross_entropy_swapped_spatial_dims(void *context) {
    (void)context;
    Tensor *logits = tensor_zeros(DTYPE_F32, SHAPE(2, 3, 4, 5));
    Tensor *target = tensor_zeros(DTYPE_I64, SHAPE(2, 5, 4));
    op_cross_entropy(logits, target, cross_entropy_defaults());
}

static void cross_entropy_bad_class(void *context) {
    (void)context;
    Tensor *logits = tensor_zeros(DTYPE_F32, SHAPE(2, 3));
    Tensor *target = tensor_from_data(DTYPE_I64, SHAPE(2), (int64_t[]){1, 3});
    op_cross_entropy(logits, target, cross_entropy_defaults());
}

static void matmul_inner_mismatch(void *context) {
    (void)context;
    op_matmul(tensor_zeros(DTYPE_F32, SHAPE(2, 3)), tensor_zeros(DTYPE_F32, SHAPE(4, 5)));
}

static void conv_channel_mismatch(void *context) {
    (void)context;
    op_conv2d(tensor_zeros(DTYPE_F32, SHAPE(1, 3, 8, 8)), tensor_zeros(DTYPE_F32, SHAPE(4, 2, 3, 3)), NULL, conv2d_params(1, 1, 1, 1));
}

static void broadcast_mismatch(void *context) {
    (void)context;
    op_add(tensor_zeros(DTYPE_F32, SHAPE(2, 3)), tensor_zeros(DTYPE_F32, SHAPE(4)));
}

static void view_needs_copy(void *context) {
    (void)context;
    op_view(op_transpose(tensor_zeros(DTYPE_F32, SHAPE(3, 4)), 0, 1), SHAPE(12));
}

static void expand_new_dim_minus_one(void *context) {
    (void)context;
    op_expand(tensor_zeros(DTYPE_F32, SHAPE(3)), SHAPE(-1, 3));
}

static void concat_scalars(void *context) {
    (void)context;
    Tensor *xs[2] = {tensor_scalar(DTYPE_F32, 1), tensor_scalar(DTYPE_F32, 2)};
    op_concat(xs, 2, 0);
}

static void integer_input_to_float_op(void *context) {
    (void)context;
    op_exp(tensor_zeros(DTYPE_I64, SHAPE(3)));
}

static void embedding_index_out_of_range(void *context) {
    (void)context;
    op_embedding(tensor_zeros(DTYPE_F32, SHAPE(5, 2)), tensor_from_data(DTYPE_I64, SHAPE(2), (int64_t[]){0, 5}));
}

static void reshape_wrong_count(void *context) {
    (void)context;
    op_reshape(tensor_zeros(DTYPE_F32, SHAPE(3, 4)), SHAPE(5, -1));
}

static void backward_of_non_scalar(void *context) {
    (void)context;
    Tensor *w = tensor_requires_grad(tensor_zeros(DTYPE_F32, SHAPE(3)));
    tensor_backward(op_mul(w, w), NULL);
}

TEST(errors_name_the_problem) {
    CHECK(expect_fatal(cross_entropy_swapped_spatial_dims, NULL, "target shape [2, 5, 4] does not match logits [2, 3, 4, 5] (expected target [2, 4, 5])"));
    CHECK(expect_fatal(cross_entropy_bad_class, NULL, "target 3 at position 1 is not a class index in [0, 3)"));
    CHECK(expect_fatal(matmul_inner_mismatch, NULL, "inner dimensions differ: [2, 3] @ [4, 5]"));
    CHECK(expect_fatal(conv_channel_mismatch, NULL, "conv2d"));
    CHECK(expect_fatal(broadcast_mismatch, NULL, "shapes [2, 3] and [4] cannot be broadcast together"));
    CHECK(expect_fatal(view_needs_copy, NULL, "use op_reshape"));
    CHECK(expect_fatal(expand_new_dim_minus_one, NULL, "-1 is only allowed for existing dimensions"));
    CHECK(expect_fatal(concat_scalars, NULL, "0-dimensional tensors cannot be concatenated"));
    CHECK(expect_fatal(integer_input_to_float_op, NULL, "expected an f32 or f64 tensor"));
    CHECK(expect_fatal(embedding_index_out_of_range, NULL, "index 5 is out of range for a dimension of size 5"));
    CHECK(expect_fatal(reshape_wrong_count, NULL, "cannot infer the -1 dimension for 12 elements"));
    CHECK(expect_fatal(backward_of_non_scalar, NULL, "give an output gradient for a non-scalar"));
}

int main(void) {
    RUN_TEST(errors_name_the_problem);
    return test_summary();
}
