#include "engine/cpu/norm.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Parallelise when there is at least this much work (elements touched).
#define NORM_PARALLEL_WORK 32768

static void *norm_scratch(size_t bytes) {
    void *p = calloc(bytes ? bytes : 1, 1);
    if (!p) {
        fprintf(stderr, "normalisation: out of memory for a %zu-byte scratch buffer\n", bytes);
        abort();
    }
    return p;
}

#if defined(__x86_64__)
static int norm_cpu_has_avx512(void) { return __builtin_cpu_supports("avx512f"); }

#pragma GCC push_options
#pragma GCC target("avx512f")
#define real float
#define FN(name) name##_f32_avx512
#include "engine/cpu/batch_norm_passes.inc"
#undef real
#undef FN
#pragma GCC pop_options
#define BATCH_NORM_AVX512_SUFFIX
#endif

#define real float
#define FN(name) name##_f32
#include "engine/cpu/norm_impl.inc"
#undef BATCH_NORM_AVX512_SUFFIX
#undef real
#undef FN

#define real double
#define FN(name) name##_f64
#include "engine/cpu/norm_impl.inc"
#undef real
#undef FN
