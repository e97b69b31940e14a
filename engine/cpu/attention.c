#include "engine/cpu/attention.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine/cpu/gemm.h"
#include "engine/cpu/vector_math.h"

static void *attention_scratch(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "self_attention: out of memory for a %zu-byte scratch buffer\n", bytes);
        abort();
    }
    return p;
}

// Softmax of one row in place, entries past `valid` (causal masking) set to 0. f32: the exponentials
// by vector_math.h's exp in double (libm's expf would keep the loop scalar); f64: libm's exp.
VECTOR_CLONES static void softmax_row_f32(float *row, int64_t n, int64_t valid) {
    float top = -INFINITY;
    for (int64_t j = 0; j < valid; j++) top = row[j] > top ? row[j] : top;  // NaN rows stay NaN below
    double total = 0;
#pragma omp simd reduction(+ : total)
    for (int64_t j = 0; j < valid; j++) {
        double e = exp_nonpositive((double)row[j] - (double)top);
        row[j] = (float)e;
        total += e;
    }
    float inverse = (float)(1.0 / total);
#pragma omp simd
    for (int64_t j = 0; j < valid; j++) row[j] *= inverse;
    for (int64_t j = valid; j < n; j++) row[j] = 0;
}

static void softmax_row_f64(double *row, int64_t n, int64_t valid) {
    double top = -INFINITY;
    for (int64_t j = 0; j < valid; j++) top = row[j] > top ? row[j] : top;
    double total = 0;
    for (int64_t j = 0; j < valid; j++) total += row[j] = exp(row[j] - top);
    for (int64_t j = 0; j < valid; j++) row[j] /= total;
    for (int64_t j = valid; j < n; j++) row[j] = 0;
}

#define real float
#define FN(name) name##_f32
#define GEMM sgemm
#include "engine/cpu/attention_impl.inc"
#undef real
#undef FN
#undef GEMM

#define real double
#define FN(name) name##_f64
#define GEMM dgemm
#include "engine/cpu/attention_impl.inc"
#undef real
#undef FN
#undef GEMM
