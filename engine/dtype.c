#include "dtype.h"

#include <math.h>
#include <string.h>

static const char *const DTYPE_NAMES[DTYPE_COUNT] = {"F32", "F64", "F16", "BF16", "I32", "I64", "U8"};
static const size_t DTYPE_SIZES[DTYPE_COUNT] = {4, 8, 2, 2, 4, 8, 1};

size_t dtype_size(DType dtype) { return DTYPE_SIZES[dtype]; }
const char *dtype_name(DType dtype) { return DTYPE_NAMES[dtype]; }

int dtype_from_name(const char *name) {
    for (int i = 0; i < DTYPE_COUNT; i++)
        if (strcmp(name, DTYPE_NAMES[i]) == 0) return i;
    return -1;
}

int dtype_is_float(DType dtype) {
    return dtype == DTYPE_F32 || dtype == DTYPE_F64 || dtype == DTYPE_F16 || dtype == DTYPE_BF16;
}

static uint32_t float_bits(float value) {
    uint32_t bits;
    memcpy(&bits, &value, 4);
    return bits;
}

static float bits_float(uint32_t bits) {
    float value;
    memcpy(&value, &bits, 4);
    return value;
}

uint16_t f32_to_f16(float value) {
    uint32_t x = float_bits(value);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t magnitude = x & 0x7fffffffu;
    if (magnitude >= 0x7f800000u)  // Inf or NaN; keep a quiet NaN payload bit
        return sign | 0x7c00u | (magnitude > 0x7f800000u ? 0x0200u : 0);
    if (magnitude >= 0x477ff000u) return sign | 0x7c00u;  // rounds to >= 65520: overflow to Inf
    if (magnitude < 0x38800000u) {
        // Result is subnormal (or zero): scale so that the f16 subnormal unit 2^-24 becomes 1,
        // and let the f32 adder round to nearest even for us.
        float scaled = bits_float(magnitude) * 16777216.0f;  // * 2^24
        return sign | (uint16_t)lrintf(scaled);
    }
    // Normal: rebias exponent (127 -> 15) and round the 13 dropped mantissa bits to nearest even.
    uint32_t rounded = magnitude - 0x38000000u;
    uint32_t lsb = (rounded >> 13) & 1u;
    rounded += 0x0fffu + lsb;
    return sign | (uint16_t)(rounded >> 13);
}

float f16_to_f32(uint16_t bits) {
    uint32_t sign = (uint32_t)(bits & 0x8000u) << 16;
    uint32_t exponent = (bits >> 10) & 0x1fu;
    uint32_t mantissa = bits & 0x3ffu;
    if (exponent == 0) {  // zero or subnormal: value = mantissa * 2^-24
        float value = (float)mantissa * (1.0f / 16777216.0f);
        return sign ? -value : value;
    }
    if (exponent == 31) return bits_float(sign | 0x7f800000u | (mantissa << 13));
    return bits_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

uint16_t f32_to_bf16(float value) {
    uint32_t x = float_bits(value);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x0040u);  // quiet NaN
    uint32_t lsb = (x >> 16) & 1u;
    x += 0x7fffu + lsb;
    return (uint16_t)(x >> 16);
}

float bf16_to_f32(uint16_t bits) { return bits_float((uint32_t)bits << 16); }

static double saturate(double value, double low, double high) {
    if (value != value) return 0;
    return value < low ? low : (value > high ? high : value);
}

static int64_t saturate_i64(double value) {
    if (value != value) return 0;
    if (value >= 9223372036854775807.0) return INT64_MAX;  // 2^63 is the first double past the range
    if (value <= -9223372036854775808.0) return INT64_MIN;
    return (int64_t)value;
}

double dtype_load(const void *data, DType dtype, int64_t index) {
    switch (dtype) {
    case DTYPE_F32: return ((const float *)data)[index];
    case DTYPE_F64: return ((const double *)data)[index];
    case DTYPE_F16: return f16_to_f32(((const uint16_t *)data)[index]);
    case DTYPE_BF16: return bf16_to_f32(((const uint16_t *)data)[index]);
    case DTYPE_I32: return ((const int32_t *)data)[index];
    case DTYPE_I64: return (double)((const int64_t *)data)[index];
    case DTYPE_U8: return ((const uint8_t *)data)[index];
    default: return NAN;
    }
}

void dtype_store(void *data, DType dtype, int64_t index, double value) {
    switch (dtype) {
    case DTYPE_F32: ((float *)data)[index] = (float)value; break;
    case DTYPE_F64: ((double *)data)[index] = value; break;
    case DTYPE_F16: ((uint16_t *)data)[index] = f32_to_f16((float)value); break;
    case DTYPE_BF16: ((uint16_t *)data)[index] = f32_to_bf16((float)value); break;
    // Integer stores truncate toward zero and saturate at the type's range; NaN stores 0
    // (a plain C cast of an out-of-range double is undefined behaviour).
    case DTYPE_I32: ((int32_t *)data)[index] = (int32_t)saturate(value, INT32_MIN, INT32_MAX); break;
    case DTYPE_I64: ((int64_t *)data)[index] = saturate_i64(value); break;
    case DTYPE_U8: ((uint8_t *)data)[index] = (uint8_t)saturate(value, 0, 255); break;
    default: break;
    }
}
