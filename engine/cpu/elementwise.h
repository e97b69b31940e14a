// CPU kernels for elementwise ops on contiguous buffers, in f32 and f64.
// Unary ops have a forward y = f(x; p0, p1) and a backward gx = g * f'(x, y; p0, p1).
#pragma once
#include <stdint.h>

// The unary ops, as (name, forward expression in x, derivative in x and y). Expressions use
// <tgmath.h> names so that one expression serves float and double. p0, p1 are op parameters.
#define UNARY_OP_LIST(X)                                                                        \
    X(exp, exp(x), y)                                                                           \
    X(log, log(x), 1 / x)                                                                       \
    X(sqrt, sqrt(x), (real)0.5 / y)                                                             \
    X(rsqrt, 1 / sqrt(x), (real)-0.5 * y * y * y)                                               \
    X(abs, fabs(x), (real)((x > 0) - (x < 0)))                                                  \
    X(neg, -x, (real)-1)                                                                        \
    X(add_scalar, x + p0, (real)1)                                                              \
    X(mul_scalar, x * p0, p0)                                                                   \
    X(rsub_scalar, p0 - x, (real)-1)                                                            \
    X(pow_scalar, pow(x, p0), p0 == 0 ? (real)0 : p0 * pow(x, p0 - 1))                                              \
    X(clamp, x < p0 ? p0 : (x > p1 ? p1 : x), (real)(x >= p0 && x <= p1))                       \
    X(sigmoid, 1 / (1 + exp(-x)), y * (1 - y))                                                  \
    X(tanh, tanh(x), 1 - y * y)                                                                 \
    X(relu, x < 0 ? 0 : x, (real)(x > 0))  /* NaN passes through, as PyTorch */                                                       \
    X(leaky_relu, x < 0 ? p0 * x : x, x > 0 ? (real)1 : p0)                                     \
    /* gelu: x Phi(x) with Phi(x) = erfc(-x / sqrt 2) / 2, free of the cancellation in 1 + erf(x / sqrt 2) */ \
    X(gelu, (real)0.5 * x * erfc(-x * (real)M_SQRT1_2),                                         \
      (real)0.5 * erfc(-x * (real)M_SQRT1_2) + x * exp((real)-0.5 * x * x) * (real)(0.5 * M_2_SQRTPI * M_SQRT1_2)) \
    X(gelu_tanh, (real)0.5 * x * (1 + tanh((real)0.7978845608028654 * (x + (real)0.044715 * x * x * x))), \
      gelu_tanh_derivative(x))                                                                  \
    X(quick_gelu, x / (1 + exp((real)-1.702 * x)),                                              \
      quick_gelu_derivative(x))                                                                 \
    X(silu, x / (1 + exp(-x)), silu_derivative(x))                                              \
    X(grad_reverse, x, -p0)

typedef enum {
#define UNARY_ENUM(name, forward, derivative) UNARY_##name,
    UNARY_OP_LIST(UNARY_ENUM)
#undef UNARY_ENUM
    UNARY_COUNT
} UnaryOp;

const char *unary_op_name(UnaryOp op);
void cpu_unary_forward_f32(UnaryOp op, const float *x, float *y, int64_t n, double p0, double p1);
void cpu_unary_forward_f64(UnaryOp op, const double *x, double *y, int64_t n, double p0, double p1);
void cpu_unary_backward_f32(UnaryOp op, const float *x, const float *y, const float *grad_y, float *grad_x,
                            int64_t n, double p0, double p1);
// GELU in f32 (engine/cpu/gelu.c): vectorised, the forward within ~0.5 ulp of the exact value; the
// unary functions above call these for UNARY_gelu. The backward is cheaper given the forward's
// output y (within ~1 ulp of the derivative's terms), and works from x alone when y is NULL.
void cpu_gelu_forward_f32(const float *x, float *y, int64_t n);
void cpu_gelu_backward_f32(const float *x, const float *y, const float *grad_y, float *grad_x, int64_t n);
void cpu_unary_backward_f64(UnaryOp op, const double *x, const double *y, const double *grad_y, double *grad_x,
                            int64_t n, double p0, double p1);

// Binary ops over broadcast operands: out[i] = a[ia] (op) b[ib], walking `shape` with element
// strides (0 on broadcast dims). ndim >= 1 (scalars are passed as shape [1]).
typedef enum { BINARY_ADD, BINARY_SUB, BINARY_MUL, BINARY_DIV } BinaryOp;
void cpu_binary_f32(BinaryOp op, int ndim, const int64_t *shape, const float *a, const int64_t *stride_a,
                    const float *b, const int64_t *stride_b, float *out);
void cpu_binary_f64(BinaryOp op, int ndim, const int64_t *shape, const double *a, const int64_t *stride_a,
                    const double *b, const int64_t *stride_b, double *out);
