// GELU (the erf form) in f32, vectorised. glibc's scalar erff was a fifth of a ViT training step;
// libm has no vector erfc that is accurate in the tail, so the function is evaluated here: in
// double precision, where a short polynomial and a plain exp are accurate to ~1e-10 relative, and
// the result is rounded to float once. Errors are therefore within ~0.5 ulp of the exact value
// (tests/test_gelu.c checks correct rounding over 11 million inputs), and every machine gives the
// same bits.
//
// The forward is x * Phi(x) = 0.5 x erfc(-x / sqrt 2), the backward Phi(x) + x phi(x): written with
// erfc so that Phi(x) for negative x carries no cancellation (1 + erf(x) loses the digits the tail
// has). The same formulas are UNARY_OP_LIST's (elementwise.h), which the f64 path and the CUDA
// kernels use.
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "engine/cpu/elementwise.h"
#include "engine/cpu/vector_math.h"

#define PARALLEL_MIN_ELEMENTS 32768

// erfc(a) for a >= 0 (NaN stays NaN), relative error < 1e-10 for a <= 10.5 and 0 beyond, where
// erfc(a) < 1e-49 is below the smallest float. With t = (a - 3) / (a + 3), which maps [0, 10.5]
// into [-1, 0.556], (1 + 2a) e^(a^2) erfc(a) is a smooth function of t (from 1 to ~2 / sqrt(pi));
// the polynomial is its least-squares fit with weight 1/f on 600 Chebyshev points, degree 12
// (max relative error 4.8e-11 over [0, 10.5], checked with mpmath at 40 digits).
// *gaussian = e^(-a^2) (0 for a > 10.5), which the backward reuses.
ALWAYS_INLINE static inline double erfc_nonnegative(double a, double *gaussian) {
    double clamped = a > 10.5 ? 10.5 : a;
    // Both divisions, by a + 3 and by 1 + 2a, from one reciprocal of their product: a float
    // division (8 lanes per instruction, twice the double rate; a double division per element was
    // the loop's bottleneck) refined by one Newton step to ~1e-15 relative.
    double product = (clamped + 3.0) * (1.0 + 2.0 * clamped);
    double reciprocal = (double)(1.0f / (float)product);
    reciprocal = fma(reciprocal, fma(-product, reciprocal, 1.0), reciprocal);
    double t = (clamped - 3.0) * (reciprocal * (1.0 + 2.0 * clamped));
    double t2 = t * t, t4 = t2 * t2, t8 = t4 * t4;
    double q0 = fma(t, -0.13562110701756394, 1.2530080582565686);
    double q1 = fma(t, 0.12964520636113785, -0.047562292729345923);
    double q2 = fma(t, 0.068307298320669771, -0.11927367302321852);
    double q3 = fma(t, 0.0025339031976476657, -0.023770958916227325);
    double q4 = fma(t, -0.00079072248163720288, 0.0018942215452985964);
    double q5 = fma(t, 0.00012701365038723697, -0.00012706835015060571);
    double q6 = 3.330522823580493e-05;
    double p = fma(fma(q6, t4, fma(q5, t2, q4)), t8, fma(fma(q3, t2, q2), t4, fma(q1, t2, q0)));
    double e = exp_nonpositive(-clamped * clamped);
    *gaussian = a > 10.5 ? 0.0 : e;
    return a > 10.5 ? 0.0 : p * (reciprocal * (clamped + 3.0)) * e;
}

// Phi(x) * 2 = erfc(-x / sqrt 2), with the argument rounded to float as the scalar formula does;
// *square = a^2 and *gaussian = e^(-a^2) for a = |x / sqrt 2| so rounded.
ALWAYS_INLINE static inline double twice_normal_cdf(float x, double *square, double *gaussian) {
    float z = -x * (float)0.70710678118654752440;
    double a = z < 0 ? -(double)z : (double)z;
    double tail = erfc_nonnegative(a, gaussian);
    *square = a * a;  // exact: a has 24 significant bits
    return z < 0 ? 2.0 - tail : tail;
}

VECTOR_CLONES static void gelu_forward_span(const float *x, float *y, int64_t n) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        double square, gaussian;
        y[i] = (float)(0.5 * (double)x[i] * twice_normal_cdf(x[i], &square, &gaussian));
    }
}

VECTOR_CLONES static void gelu_backward_span(const float *x, const float *grad_y, float *grad_x, int64_t n) {
    const double inverse_sqrt_2pi = 0.39894228040143267794;
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        float xi = x[i];
        double square, gaussian;
        double cdf = 0.5 * twice_normal_cdf(xi, &square, &gaussian);
        // The formula's exp(-x^2 / 2) takes x^2 rounded to float; it differs from the erfc's
        // e^(-a^2) by the exactly known d = a^2 - x^2 / 2 (|d| < 1e-5 where the result is not 0),
        // so e^d = 1 + d + d^2 / 2 corrects it to 1e-16 instead of a second exp.
        double d = square - 0.5 * (double)(xi * xi);
        double density = gaussian * fma(d, fma(d, 0.5, 1.0), 1.0) * inverse_sqrt_2pi;
        double derivative = cdf + (double)xi * density;
        grad_x[i] = grad_y[i] * (float)derivative;
    }
}

// With the forward's output y = x Phi(x) at hand, Phi(x) = y / x (to y's half ulp) needs no erfc:
// the derivative costs one exp. Near 0, where y may be subnormal or 0, Phi(x) = 1/2 + x / sqrt(2 pi)
// instead (the next term, x^3 / (6 sqrt(2 pi)), is below 1e-10 relative for |x| < 1e-3).
VECTOR_CLONES static void gelu_backward_from_output_span(const float *x, const float *y, const float *grad_y,
                                                         float *grad_x, int64_t n) {
    const double inverse_sqrt_2pi = 0.39894228040143267794;
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        float xi = x[i];
        double xd = (double)xi;
        double near_zero = fma(xd, inverse_sqrt_2pi, 0.5);
        // 1 / x as a float division refined by a Newton step (a double division halves the speed);
        // lanes with |x| < 1e-3 take near_zero, so 1/x overflowing there does not matter.
        double reciprocal = (double)(1.0f / xi);
        reciprocal = fma(reciprocal, fma(-xd, reciprocal, 1.0), reciprocal);
        double cdf = fabs(xd) < 1e-3 ? near_zero : (double)y[i] * reciprocal;
        // exp(-x^2 / 2) from x^2 rounded to float, as the formula computes it in float.
        double density = exp_nonpositive(-0.5 * (double)(xi * xi)) * inverse_sqrt_2pi;
        grad_x[i] = grad_y[i] * (float)(cdf + xd * density);
    }
}

// Spans of 4096 elements (16 KB per array) across threads; small inputs stay on the caller's.
#define SPAN 4096

void cpu_gelu_forward_f32(const float *x, float *y, int64_t n) {
    int64_t spans = (n + SPAN - 1) / SPAN;
#pragma omp parallel for if (n >= PARALLEL_MIN_ELEMENTS)
    for (int64_t s = 0; s < spans; s++) {
        int64_t start = s * SPAN, count = n - start < SPAN ? n - start : SPAN;
        gelu_forward_span(x + start, y + start, count);
    }
}

void cpu_gelu_backward_f32(const float *x, const float *y, const float *grad_y, float *grad_x, int64_t n) {
    int64_t spans = (n + SPAN - 1) / SPAN;
#pragma omp parallel for if (n >= PARALLEL_MIN_ELEMENTS)
    for (int64_t s = 0; s < spans; s++) {
        int64_t start = s * SPAN, count = n - start < SPAN ? n - start : SPAN;
        if (y) gelu_backward_from_output_span(x + start, y + start, grad_y + start, grad_x + start, count);
        else gelu_backward_span(x + start, grad_y + start, grad_x + start, count);
    }
}
