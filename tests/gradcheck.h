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
// Ops checked so far, comma separated, for the runner's report.
const char *gradcheck_checked_ops(void);
