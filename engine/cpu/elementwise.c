#include "engine/cpu/elementwise.h"

#include <tgmath.h>

// Large arrays are split across threads; small ones are not worth the fork/join (~2 us).
#define PARALLEL_MIN_ELEMENTS 32768

const char *unary_op_name(UnaryOp op) {
    static const char *const names[] = {
#define UNARY_NAME(name, forward, derivative) #name,
        UNARY_OP_LIST(UNARY_NAME)
#undef UNARY_NAME
    };
    return names[op];
}

// Derivatives too long for the table, written once per type.
#define DEFINE_DERIVATIVES(real, suffix)                                                      \
    static inline real gelu_tanh_derivative_##suffix(real x) {                               \
        const real k = (real)0.7978845608028654, c = (real)0.044715;                          \
        real t = tanh(k * (x + c * x * x * x));                                               \
        return (real)0.5 * (1 + t) + (real)0.5 * x * (1 - t * t) * k * (1 + 3 * c * x * x);   \
    }                                                                                         \
    static inline real quick_gelu_derivative_##suffix(real x) {                              \
        real s = 1 / (1 + exp((real)-1.702 * x));                                             \
        return s + (real)1.702 * x * s * (1 - s);                                             \
    }                                                                                         \
    static inline real silu_derivative_##suffix(real x) {                                    \
        real s = 1 / (1 + exp(-x));                                                           \
        return s * (1 + x * (1 - s));                                                         \
    }
DEFINE_DERIVATIVES(float, f32)
DEFINE_DERIVATIVES(double, f64)

// f32 GELU has its own vectorised loops (gelu.c); f64 uses the formula (gradient checks, references).
#define VECTOR_GELU_f32 1
#define VECTOR_GELU_f64 0

// One forward and one backward function per (op, type); the switch picks the loop once per call,
// so each inner loop is a plain vectorisable expression.
#define DEFINE_UNARY_KERNELS(real, suffix)                                                                   \
    void cpu_unary_forward_##suffix(UnaryOp op, const real *x_in, real *y_out, int64_t n, double p0_in,     \
                                    double p1_in) {                                                         \
        const real p0 = (real)p0_in, p1 = (real)p1_in;                                                      \
        (void)p1;                                                                                           \
        if (VECTOR_GELU_##suffix && op == UNARY_gelu) {                                                     \
            cpu_gelu_forward_f32((const float *)x_in, (float *)y_out, n);                                   \
            return;                                                                                         \
        }                                                                                                   \
        switch (op) {                                                                                       \
            UNARY_OP_LIST(UNARY_FORWARD_CASE)                                                               \
        default: break;                                                                                     \
        }                                                                                                   \
    }                                                                                                       \
    void cpu_unary_backward_##suffix(UnaryOp op, const real *x_in, const real *y_in, const real *g_in,      \
                                     real *gx_out, int64_t n, double p0_in, double p1_in) {                 \
        const real p0 = (real)p0_in, p1 = (real)p1_in;                                                      \
        (void)p1;                                                                                           \
        if (VECTOR_GELU_##suffix && op == UNARY_gelu) {                                                     \
            cpu_gelu_backward_f32((const float *)x_in, (const float *)y_in, (const float *)g_in, (float *)gx_out, n); \
            return;                                                                                         \
        }                                                                                                   \
        switch (op) {                                                                                       \
            UNARY_OP_LIST(UNARY_BACKWARD_CASE)                                                              \
        default: break;                                                                                     \
        }                                                                                                   \
    }

#define UNARY_FORWARD_CASE(name, forward, derivative)                             \
    case UNARY_##name: {                                                          \
        _Pragma("omp parallel for simd if (n >= PARALLEL_MIN_ELEMENTS)")          \
        for (int64_t i = 0; i < n; i++) {                                         \
            real x = x_in[i];                                                     \
            y_out[i] = (real)(forward);                                           \
        }                                                                         \
        break;                                                                    \
    }

// y_in may be NULL (then y = 0). The two cases are separate loops: a conditional load of y inside
// the loop is control flow, and gcc then vectorises none of the backward loops (the ReLU backward
// was scalar, ~6% of a ResNet-18 step). The derivative goes through a variable for the same
// reason: in `g * (real)(x > 0)` gcc 12 turns the product into a branch (x > 0 ? g : g * 0) that
// it may not if-convert (the multiply could trap), and the loop stays scalar.
#define UNARY_BACKWARD_CASE(name, forward, derivative)                                \
    case UNARY_##name: {                                                              \
        if (y_in) {                                                                   \
            _Pragma("omp parallel for simd if (n >= PARALLEL_MIN_ELEMENTS)")          \
            for (int64_t i = 0; i < n; i++) {                                         \
                real x = x_in[i], y = y_in[i];                                        \
                (void)x;                                                              \
                (void)y;                                                              \
                real d = (real)(derivative);                                          \
                gx_out[i] = g_in[i] * d;                                              \
            }                                                                         \
        } else {                                                                      \
            _Pragma("omp parallel for simd if (n >= PARALLEL_MIN_ELEMENTS)")          \
            for (int64_t i = 0; i < n; i++) {                                         \
                real x = x_in[i], y = 0;                                              \
                (void)x;                                                              \
                (void)y;                                                              \
                real d = (real)(derivative);                                          \
                gx_out[i] = g_in[i] * d;                                              \
            }                                                                         \
        }                                                                             \
        break;                                                                        \
    }

#define real float
#define gelu_tanh_derivative gelu_tanh_derivative_f32
#define quick_gelu_derivative quick_gelu_derivative_f32
#define silu_derivative silu_derivative_f32
DEFINE_UNARY_KERNELS(float, f32)
#undef real
#undef gelu_tanh_derivative
#undef quick_gelu_derivative
#undef silu_derivative
#define real double
#define gelu_tanh_derivative gelu_tanh_derivative_f64
#define quick_gelu_derivative quick_gelu_derivative_f64
#define silu_derivative silu_derivative_f64
DEFINE_UNARY_KERNELS(double, f64)
#undef real

// Broadcast binary op: odometer over all dims but the last, a strided inner loop over the last.
#define BINARY_INNER(EXPR)                                                                  \
    if (sa == 1 && sb == 1) {                                                               \
        _Pragma("omp simd") for (int64_t i = 0; i < inner; i++) {                           \
            real x = pa[i], y = pb[i];                                                      \
            po[i] = EXPR;                                                                   \
        }                                                                                   \
    } else {                                                                                \
        for (int64_t i = 0; i < inner; i++) {                                               \
            real x = pa[i * sa], y = pb[i * sb];                                            \
            po[i] = EXPR;                                                                   \
        }                                                                                   \
    }

#define DEFINE_BINARY_KERNEL(real, suffix)                                                                    \
    void cpu_binary_##suffix(BinaryOp op, int ndim, const int64_t *shape, const real *a, const int64_t *stride_a, \
                             const real *b, const int64_t *stride_b, real *out) {                             \
        int64_t inner = shape[ndim - 1], outer = 1;                                                          \
        for (int d = 0; d < ndim - 1; d++) outer *= shape[d];                                                \
        const int64_t sa = stride_a[ndim - 1], sb = stride_b[ndim - 1];                                      \
        _Pragma("omp parallel for if (outer * inner >= PARALLEL_MIN_ELEMENTS)")                              \
        for (int64_t row = 0; row < outer; row++) {                                                          \
            int64_t offset_a = 0, offset_b = 0, rest = row;                                                  \
            for (int d = ndim - 2; d >= 0; d--) {                                                            \
                int64_t coordinate = rest % shape[d];                                                        \
                rest /= shape[d];                                                                            \
                offset_a += coordinate * stride_a[d];                                                        \
                offset_b += coordinate * stride_b[d];                                                        \
            }                                                                                                \
            const real *pa = a + offset_a, *pb = b + offset_b;                                               \
            real *po = out + row * inner;                                                                    \
            switch (op) {                                                                                    \
            case BINARY_ADD: BINARY_INNER(x + y) break;                                                      \
            case BINARY_SUB: BINARY_INNER(x - y) break;                                                      \
            case BINARY_MUL: BINARY_INNER(x * y) break;                                                      \
            case BINARY_DIV: BINARY_INNER(x / y) break;                                                      \
            }                                                                                                \
        }                                                                                                    \
    }

#define real float
DEFINE_BINARY_KERNEL(float, f32)
#undef real
#define real double
DEFINE_BINARY_KERNEL(double, f64)
#undef real
