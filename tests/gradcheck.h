// Gradient checking: autograd's gradients of a scalar probe of an op against central finite
// differences, all in f64.
#pragma once
#include <stdbool.h>

#include "engine/ops.h"

// Builds the op's output from its inputs.
typedef Tensor *(*GradcheckFn)(Tensor **inputs, void *context);

// Checks d/dinput of L = sum(fn(inputs) * W), W a fixed random tensor, for every input with
// requires_grad. Central differences with step eps; an element passes when
// |analytic - numeric| <= atol + rtol * |numeric|. Prints the worst element on failure.
bool gradcheck(const char *name, GradcheckFn fn, void *context, int n_inputs, Tensor **inputs);

// A random f64 tensor (normal(0,1) * scale + shift) that requires gradients.
Tensor *gradcheck_input(Shape shape, double scale, double shift);
// Adds an op checked by a dedicated test (one whose gradient is not a derivative, like
// gradient reversal) to the report.
void gradcheck_record_checked(const char *name);
// Ops checked so far, comma separated, for the runner's report.
const char *gradcheck_checked_ops(void);

// Defines a test named test_name that gradient-checks `body` (an expression over in[0], in[1], ...)
// with the listed inputs; needs tests/check.h.
#define GRAD_CASE(test_name, op_label, body, ...)                                              \
    static Tensor *test_name##_fn(Tensor **in, void *context) {                                \
        (void)context;                                                                         \
        return body;                                                                           \
    }                                                                                          \
    TEST(test_name) {                                                                          \
        TensorScope scope = tensor_scope_begin();                                              \
        Tensor *in[] = {__VA_ARGS__};                                                          \
        CHECK(gradcheck(op_label, test_name##_fn, NULL, (int)(sizeof in / sizeof in[0]), in)); \
        tensor_scope_end(scope);                                                               \
    }

// Inputs: normal(0, 1), and positive values (for log, sqrt, division).
#define X(shape) gradcheck_input(shape, 1.0, 0.0)
#define POSITIVE(shape) gradcheck_input(shape, 0.2, 1.5)
