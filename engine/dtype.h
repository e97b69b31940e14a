// Element types a tensor can hold, their sizes and names, and the f16/bf16 conversions.
// f16/bf16 are storage types: ops compute in f32 (or f64 for gradient checks).
#pragma once
#include <stddef.h>
#include <stdint.h>

typedef enum {
    DTYPE_F32,
    DTYPE_F64,
    DTYPE_F16,
    DTYPE_BF16,
    DTYPE_I32,
    DTYPE_I64,
    DTYPE_U8,
    DTYPE_COUNT
} DType;

size_t dtype_size(DType dtype);
// Names as safetensors spells them: "F32", "F64", "F16", "BF16", "I32", "I64", "U8".
const char *dtype_name(DType dtype);
// Returns -1 for an unknown name.
int dtype_from_name(const char *name);
int dtype_is_float(DType dtype);  // f32, f64, f16, bf16

// IEEE binary16 <-> binary32, round to nearest even; NaN/Inf preserved.
uint16_t f32_to_f16(float value);
float f16_to_f32(uint16_t bits);
// bfloat16 is the top half of a binary32, round to nearest even; NaN stays NaN.
uint16_t f32_to_bf16(float value);
float bf16_to_f32(uint16_t bits);

// Reads element i of a buffer of the given dtype as double, and writes it back (with rounding).
double dtype_load(const void *data, DType dtype, int64_t index);
void dtype_store(void *data, DType dtype, int64_t index, double value);
