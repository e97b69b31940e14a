// The CPU's f32 GELU (engine/cpu/gelu.c: its own vectorised erfc and exp in double precision)
// against GELU evaluated in double with glibc's erfc/exp, on every 97th float in [-20, 20] (about
// 11 million inputs, both signs, the tail where erfc underflows, subnormal results) and the
// special values.
//
// Tolerances. Forward: x Phi(x) has no cancellation, and gelu.c is accurate to ~1e-10 relative
// before its one rounding to float, so the result must be the reference correctly rounded: within
// 0.5 ulp plus 1e-9 relative (a reference that close to a rounding midpoint may round either way).
// Backward: Phi(x) + x phi(x) cancels near its root (x = -0.7518), so the bound is 0.5 ulp of the
// result plus 1e-9 of the terms' magnitudes; from the forward's output (Phi = y / x, y rounded to
// float) plus 2^-24 of the terms' magnitudes (and y's absolute rounding where it is subnormal). The reference uses the same float-rounded arguments as
// the formula (-x / sqrt 2 and x * x rounded to float), so that only the evaluation is compared.
#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/cpu/elementwise.h"
#include "tests/check.h"

TEST_MAIN_COUNTERS;

static float float_from_bits(uint32_t bits) {
    float x;
    memcpy(&x, &bits, sizeof x);
    return x;
}

// The spacing of floats around |v| (at least the smallest subnormal).
static double ulp_at(double v) {
    float f = (float)fabs(v);
    if (!isfinite(f)) return INFINITY;
    double spacing = (double)nextafterf(f, INFINITY) - (double)f;
    return spacing > 0 ? spacing : ldexp(1.0, -149);
}

// Every 97th float pattern in [0, 20] and the same negated; then the specials.
static int64_t make_inputs(float **out) {
    const uint32_t last = 0x41a00000u;  // 20.0f
    int64_t count = 2 * (int64_t)(last / 97 + 1) + 8, n = 0;
    float *x = malloc((size_t)count * sizeof(float));
    for (uint32_t bits = 0; bits <= last; bits += 97) {
        x[n++] = float_from_bits(bits);
        x[n++] = -float_from_bits(bits);
    }
    static const float specials[] = {NAN, INFINITY, -INFINITY, 0.0f, -0.0f, FLT_MIN, -0.7518f, 10.5f};
    for (int i = 0; i < 8; i++) x[n++] = specials[i];
    *out = x;
    return n;
}

static double twice_cdf(float x) {
    float z = -x * (float)M_SQRT1_2;
    return erfc((double)z);
}

// The value GELU (derivative = false) or its derivative should have at x, and the rounding slack
// beyond half an ulp of it (see the top of the file).
static double reference(float x, bool derivative, bool from_output, double *slack) {
    double cdf = 0.5 * twice_cdf(x);
    if (!derivative) {
        double value = (double)x * cdf;
        *slack = 1e-9 * fabs(value);
        return value;
    }
    float square = x * x;
    double density_term = (double)x * exp(-0.5 * (double)square) * 0.3989422804014327;
    // From the output: y's rounding, relative 2^-24 or, where y is subnormal (x < -13.1, so |x| > 1),
    // absolute 2^-150, which y / x carries into Phi.
    *slack = from_output ? 0x1p-24 * (fabs(cdf) + fabs(density_term)) + 0x1p-150 : 1e-9 * (fabs(cdf) + fabs(density_term));
    return cdf + density_term;
}

// Counts (and shows the first few) results farther from the reference than half an ulp + slack.
static int mismatches(const float *x, const float *got, int64_t n, bool derivative, bool from_output) {
    int count = 0;
    for (int64_t i = 0; i < n; i++) {
        double slack, want = reference(x[i], derivative, from_output, &slack);
        bool ok = isnan(want) ? isnan(got[i])
                  : isinf(want) ? got[i] == want
                  : fabs((double)got[i] - want) <= 0.5 * ulp_at(want) + slack;
        if (!ok && count++ < 5) printf("  gelu%s(%.9g) = %.9g, reference %.17g\n", derivative ? "'" : "", x[i], got[i], want);
    }
    return count;
}

TEST(forward_is_correctly_rounded) {
    float *x;
    int64_t n = make_inputs(&x);
    float *y = malloc((size_t)n * sizeof(float));
    cpu_gelu_forward_f32(x, y, n);
    CHECK(mismatches(x, y, n, false, false) == 0);
    free(x);
    free(y);
}

TEST(backward_within_half_ulp_of_terms) {
    float *x;
    int64_t n = make_inputs(&x);
    float *y = malloc((size_t)n * sizeof(float)), *g = malloc((size_t)n * sizeof(float));
    float *gx = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) g[i] = 1.0f;
    cpu_gelu_forward_f32(x, y, n);
    cpu_gelu_backward_f32(x, NULL, g, gx, n);
    CHECK(mismatches(x, gx, n, true, false) == 0);
    cpu_gelu_backward_f32(x, y, g, gx, n);
    CHECK(mismatches(x, gx, n, true, true) == 0);
    free(x);
    free(y);
    free(g);
    free(gx);
}

// The unary-op entry point takes the same path (not the libm formula) and multiplies by g; threads
// split the array into spans, which must not change any bit.
TEST(unary_entry_points_and_threads_agree) {
    float *x;
    int64_t n = make_inputs(&x);
    float *y1 = malloc((size_t)n * sizeof(float)), *y2 = malloc((size_t)n * sizeof(float));
    float *g = malloc((size_t)n * sizeof(float)), *gx1 = malloc((size_t)n * sizeof(float)), *gx2 = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) g[i] = (float)((i % 7) - 3) * 0.37f;
    int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    cpu_gelu_forward_f32(x, y1, n);
    cpu_gelu_backward_f32(x, y1, g, gx1, n);
    omp_set_num_threads(2);
    cpu_unary_forward_f32(UNARY_gelu, x, y2, n, 0, 0);
    cpu_unary_backward_f32(UNARY_gelu, x, y2, g, gx2, n, 0, 0);
    omp_set_num_threads(threads);
    CHECK(memcmp(y1, y2, (size_t)n * sizeof(float)) == 0);
    CHECK(memcmp(gx1, gx2, (size_t)n * sizeof(float)) == 0);
    free(x);
    free(y1);
    free(y2);
    free(g);
    free(gx1);
    free(gx2);
}

int main(void) {
    RUN_TEST(forward_is_correctly_rounded);
    RUN_TEST(backward_within_half_ulp_of_terms);
    RUN_TEST(unary_entry_points_and_threads_agree);
    return test_summary();
}
