// CPU kernels for 2-D convolution (NCHW, weight [Cout, Cin/groups, KH, KW]), in f32 and f64.
//
// Method: im2col + GEMM (engine/cpu/gemm.h). Images are processed in chunks of `nb` images; the
// chunk's im2col matrix col[Kg, nb*P] (Kg = Cin/groups*KH*KW rows, P = OH*OW output pixels per
// image, image i in columns [i*P, (i+1)*P)) goes into a per-thread scratch buffer, then
//   forward       y_g[Cout_g, nb*P]  = w_g[Cout_g, Kg] @ col_g
//   weight grad   dw_g[Cout_g, Kg]  += dy_g[Cout_g, nb*P] @ col_g^T
//   input grad    dcol_g[Kg, nb*P]   = w_g^T @ dy_g, then col2im (scatter-add) into dx
// nb = 1 when P is large (the GEMM writes straight into y / reads dy in place); for small feature
// maps (late ResNet stages, P = 16..64) several images are folded into the GEMM's N so that the
// packed weights are reused over >= ~512 columns instead of being re-packed per image.
// A 1x1, stride-1, unpadded conv with nb = 1 skips im2col: x itself is the col matrix.
// Chunks run in parallel (one thread each, single-threaded GEMMs, per-thread weight-gradient
// partials summed at the end) when there are at least as many chunks as threads; otherwise chunks
// run one after another with multi-threaded GEMMs.
#pragma once
#include <stddef.h>
#include <stdint.h>

typedef struct {
    int64_t batch, c_in, h, w;       // input  [B, Cin, H, W]
    int64_t c_out, kh, kw;           // weight [Cout, Cin/groups, KH, KW]
    int64_t out_h, out_w;            // output [B, Cout, OH, OW]
    int64_t stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, groups;
} ConvGeometry;

// Fills out_h/out_w from the rest: OH = (H + 2 pad - dilation (KH - 1) - 1) / stride + 1.
void conv_geometry_finish(ConvGeometry *g);

#define DECLARE_CONV_KERNELS(real, suffix)                                                                  \
    /* y [B, Cout, OH, OW] = conv(x, w) + bias (bias may be NULL) */                                        \
    void cpu_conv2d_forward_##suffix(const ConvGeometry *g, const real *x, const real *w, const real *bias, \
                                     real *y);                                                              \
    /* Any of dx [B, Cin, H, W], dw [Cout, Cin/groups, KH, KW], dbias [Cout] may be NULL (not wanted);      \
       the wanted ones are overwritten. */                                                                  \
    void cpu_conv2d_backward_##suffix(const ConvGeometry *g, const real *x, const real *w, const real *dy,  \
                                      real *dx, real *dw, real *dbias);
DECLARE_CONV_KERNELS(float, f32)
DECLARE_CONV_KERNELS(double, f64)

// ---- Internal: shared by conv.c and conv_implicit.c, not for other callers. ----

// Per-thread scratch buffer of at least `bytes` (64-byte aligned), kept for the next call.
void *conv_scratch_acquire(size_t bytes);
void conv_scratch_release(void *p);

// Implicit-GEMM convolution (engine/cpu/conv_implicit.c): f32, groups 1, AVX-512 CPUs (the input
// gradient: stride 1 and Cin >= 16).
// conv2d_implicit_applies tells whether g qualifies; the others return 0 (nothing done) when not.
int conv2d_implicit_applies(const ConvGeometry *g);
int conv2d_implicit_forward_f32(const ConvGeometry *g, const float *x, const float *w, const float *bias, float *y);
// dx only (overwritten), as a forward convolution of dy with the flipped, transposed weights.
int conv2d_implicit_backward_data_f32(const ConvGeometry *g, const float *w, const float *dy, float *dx);
// dw only (overwritten), with the pixels as the GEMM's reduction.
int conv2d_implicit_backward_filter_f32(const ConvGeometry *g, const float *x, const float *dy, float *dw);
