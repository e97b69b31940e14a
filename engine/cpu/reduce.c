#include "engine/cpu/reduce.h"

#include <tgmath.h>

#define real float
#define FN(name) name##_f32
#include "engine/cpu/reduce_impl.inc"
#undef real
#undef FN

#define real double
#define FN(name) name##_f64
#include "engine/cpu/reduce_impl.inc"
#undef real
#undef FN
