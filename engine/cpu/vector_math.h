// Vectorisable double-precision building blocks for f32 loops that need transcendental functions
// (GELU, softmax). glibc has no accurate vector erfc and its scalar expf/erff stop a loop's
// vectorisation; evaluating in double with short polynomials and rounding to float once gives
// results within ~0.5 ulp at a fraction of the cost of the scalar libm calls.
//
// Use: include this from a .c file whose element loops are wrapped in functions marked
// VECTOR_CLONES (one copy per instruction set, chosen at load time), with `#pragma omp simd` on the
// loops. The pragma below applies to the including file from here on.
#pragma once
#include <math.h>
#include <stdint.h>
#include <string.h>

// Floating-point exceptions are not used by the engine; without this, gcc keeps the branches of the
// clamps and selects (their operands could trap) and does not vectorise the loops.
#pragma GCC optimize("no-trapping-math")

// One copy of a function per instruction set: avx512f brings FMA with it; "arch=haswell" is the
// AVX2 + FMA generation; "default" is the baseline (where fma() is a libm call, exact but slow).
#define VECTOR_CLONES __attribute__((target_clones("default", "arch=haswell", "avx512f")))

// The helpers must be inlined into each vector clone, where fma() is an instruction; left as calls
// they are compiled for the baseline target, with fma() a libm call per element.
#define ALWAYS_INLINE __attribute__((always_inline))

static inline uint64_t double_bits(double x) {
    uint64_t bits;
    memcpy(&bits, &x, sizeof bits);
    return bits;
}

static inline double bits_double(uint64_t bits) {
    double x;
    memcpy(&x, &bits, sizeof x);
    return x;
}

// Polynomials are evaluated by Estrin's scheme with fused multiply-adds: the terms pair up in a tree
// four levels deep instead of a Horner chain of twelve, which is what limited the vector loop
// (latency, not arithmetic). fma() is exact, so every clone (and a machine without FMA, where it is
// a libm call) gives the same bits.

// e^y for y <= 0 (NaN stays NaN): y = n ln2 + r with |r| <= ln2 / 2, e^r by its Taylor series to
// r^10 (truncation < 3e-13), 2^n put into the exponent bits. Arguments at or below -700 give 0:
// e^-700 is far below the smallest float either way.
ALWAYS_INLINE static inline double exp_nonpositive(double y) {
    const double log2e = 1.4426950408889634, ln2_hi = 0.693147180369123816490, ln2_lo = 1.90821492927058770002e-10;
    const double round_magic = 6755399441055744.0;  // 1.5 * 2^52: adding it rounds to an integer
    double clamped = y < -700.0 ? -700.0 : y;
    double shifted = fma(clamped, log2e, round_magic);
    double n = shifted - round_magic;
    double r = fma(-n, ln2_lo, fma(-n, ln2_hi, clamped));
    double r2 = r * r, r4 = r2 * r2, r8 = r4 * r4;
    double q0 = r + 1.0, q1 = fma(r, 1.0 / 6.0, 0.5), q2 = fma(r, 1.0 / 120.0, 1.0 / 24.0);
    double q3 = fma(r, 1.0 / 5040.0, 1.0 / 720.0), q4 = fma(r, 1.0 / 362880.0, 1.0 / 40320.0);
    double q5 = 1.0 / 3628800.0;
    double p = fma(fma(q5, r2, q4), r8, fma(fma(q3, r2, q2), r4, fma(q1, r2, q0)));
    // The low bits of `shifted` hold n in two's complement; n + 1023 is in [14, 1023] here.
    uint64_t scale = (double_bits(shifted) + 1023u) << 52;
    return y <= -700.0 ? 0.0 : p * bits_double(scale);  // exactly 0 for -inf, so that inf * 0 is NaN as in libm's formula
}

