// In-register transpose of a 16 x 16 float block with AVX-512 shuffles, shared by the GEMM's
// transposing pack (engine/cpu/gemm_avx512.c) and the implicit-GEMM weight gradient
// (engine/cpu/conv_implicit.c). Include only on x86-64, after <immintrin.h>.
#pragma once
#include <immintrin.h>

// Transposes 16 rows of 16 floats: out[c] lane r = in[r] lane c.
__attribute__((target("avx512f")))
static inline void transpose16(const __m512 in[16], __m512 out[16]) {
    __m512 t[16], u[16], v[16];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(in[2 * i], in[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(in[2 * i], in[2 * i + 1]);
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {  // u[4i + c]: rows 4i..4i+3, column 4L + c in 128-bit lane L
        u[4 * i + 0] = _mm512_shuffle_ps(t[4 * i + 0], t[4 * i + 2], 0x44);
        u[4 * i + 1] = _mm512_shuffle_ps(t[4 * i + 0], t[4 * i + 2], 0xEE);
        u[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
        u[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) {
        v[c] = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x88);
        v[4 + c] = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xDD);
        v[8 + c] = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x88);
        v[12 + c] = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xDD);
    }
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) {
        out[c] = _mm512_shuffle_f32x4(v[c], v[8 + c], 0x88);
        out[4 + c] = _mm512_shuffle_f32x4(v[4 + c], v[12 + c], 0x88);
        out[8 + c] = _mm512_shuffle_f32x4(v[c], v[8 + c], 0xDD);
        out[12 + c] = _mm512_shuffle_f32x4(v[4 + c], v[12 + c], 0xDD);
    }
}

