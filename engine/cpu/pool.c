#include "engine/cpu/pool.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int64_t nearest_source_index(int64_t out_index, int64_t in_size, int64_t out_size) {
    // aten/src/ATen/native/UpSample.h nearest_idx: the scale is a float, the product a float.
    if (out_size == in_size) return out_index;
    if (out_size == 2 * in_size) return out_index >> 1;
    float scale = (float)in_size / (float)out_size;
    int64_t source = (int64_t)floorf((float)out_index * scale);
    return source < in_size - 1 ? source : in_size - 1;
}

// Parallelise when there is at least this much work (elements touched).
#define POOL_PARALLEL_WORK 32768

#define real float
#define FN(name) name##_f32
#include "engine/cpu/pool_impl.inc"
#undef real
#undef FN

#define real double
#define FN(name) name##_f64
#include "engine/cpu/pool_impl.inc"
#undef real
#undef FN
