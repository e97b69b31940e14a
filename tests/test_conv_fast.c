// The CPU convolution kernels (engine/cpu/conv.c) against a naive direct convolution in double
// precision, forward and all three gradients, in f32 and f64, on geometries that exercise the
// paths added for speed: the im2col matrix built and consumed in row blocks of whole input
// channels (more channels than one block holds, so several blocks, the last one partial), the
// block-copy im2col for stride 1 with OW == W (with dilation, wider padding, 1-wide maps), the
// general im2col (strides, OW != W), folded chunks of several images (small maps), pointwise
// convs, groups, the implicit-GEMM path for stride 1 (forward and input gradient: one-row
// panels, runs across rows and images, wide padding, tile edges), and thread counts 1 and 2
// (results must not depend on timing: bitwise equal across repeated runs).
//
// Tolerance: each result is a sum of n products; f32 sums in a different order than the reference
// are within about n * 2^-24 * sum |terms| of the exact sum, so the check allows
// 2 (n + 2) 2^-24 times the element's sum of |terms| (computed by the reference on |inputs|);
// f64 gets the same bound with 2^-53.
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/cpu/conv.h"
#include "tests/check.h"

TEST_MAIN_COUNTERS;

static double rand_unit(uint64_t *state) {
    *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(*state >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

// Naive reference: y, dx, dw (bias-free) and, with abs_mode, the same sums over |terms|.
static void reference(const ConvGeometry *g, const double *x, const double *w, const double *dy, double *y, double *dx,
                      double *dw) {
    const int64_t cin_g = g->c_in / g->groups, cout_g = g->c_out / g->groups;
    memset(y, 0, sizeof(double) * (size_t)(g->batch * g->c_out * g->out_h * g->out_w));
    memset(dx, 0, sizeof(double) * (size_t)(g->batch * g->c_in * g->h * g->w));
    memset(dw, 0, sizeof(double) * (size_t)(g->c_out * cin_g * g->kh * g->kw));
    for (int64_t b = 0; b < g->batch; b++)
        for (int64_t co = 0; co < g->c_out; co++) {
            int64_t grp = co / cout_g;
            for (int64_t oh = 0; oh < g->out_h; oh++)
                for (int64_t ow = 0; ow < g->out_w; ow++) {
                    int64_t yi = ((b * g->c_out + co) * g->out_h + oh) * g->out_w + ow;
                    double acc = 0;
                    for (int64_t c = 0; c < cin_g; c++)
                        for (int64_t i = 0; i < g->kh; i++)
                            for (int64_t j = 0; j < g->kw; j++) {
                                int64_t ih = oh * g->stride_h + i * g->dilation_h - g->pad_h;
                                int64_t iw = ow * g->stride_w + j * g->dilation_w - g->pad_w;
                                if (ih < 0 || ih >= g->h || iw < 0 || iw >= g->w) continue;
                                int64_t xi = ((b * g->c_in + grp * cin_g + c) * g->h + ih) * g->w + iw;
                                int64_t wi = ((co * cin_g + c) * g->kh + i) * g->kw + j;
                                acc += x[xi] * w[wi];
                                dx[xi] += w[wi] * dy[yi];
                                dw[wi] += x[xi] * dy[yi];
                            }
                    y[yi] = acc;
                }
        }
}

typedef struct {
    int64_t batch, c_in, h, w, c_out, kh, kw, stride, pad, dilation, groups;
} Case;

static int close_enough(double got, double want, double abs_sum, int64_t n, double eps) {
    return fabs(got - want) <= 2.0 * (double)(n + 2) * eps * abs_sum + 1e-300;
}

static void run_case(const Case *c, int threads) {
    ConvGeometry g = {.batch = c->batch, .c_in = c->c_in, .h = c->h, .w = c->w, .c_out = c->c_out, .kh = c->kh,
                      .kw = c->kw, .stride_h = c->stride, .stride_w = c->stride, .pad_h = c->pad, .pad_w = c->pad,
                      .dilation_h = c->dilation, .dilation_w = c->dilation, .groups = c->groups};
    conv_geometry_finish(&g);
    const int64_t nx = g.batch * g.c_in * g.h * g.w, nw = g.c_out * (g.c_in / g.groups) * g.kh * g.kw,
                  ny = g.batch * g.c_out * g.out_h * g.out_w;
    double *x = malloc(sizeof(double) * (size_t)nx), *w = malloc(sizeof(double) * (size_t)nw),
           *dy = malloc(sizeof(double) * (size_t)ny);
    double *ax = malloc(sizeof(double) * (size_t)nx), *aw = malloc(sizeof(double) * (size_t)nw),
           *ady = malloc(sizeof(double) * (size_t)ny);
    double *y = malloc(sizeof(double) * (size_t)ny), *dx = malloc(sizeof(double) * (size_t)nx),
           *dw = malloc(sizeof(double) * (size_t)nw);
    double *sy = malloc(sizeof(double) * (size_t)ny), *sdx = malloc(sizeof(double) * (size_t)nx),
           *sdw = malloc(sizeof(double) * (size_t)nw);
    uint64_t state = 12345u + (uint64_t)(c->c_in * 31 + c->h);
    // Inputs exactly representable in f32, so both precisions see the same problem.
    for (int64_t i = 0; i < nx; i++) x[i] = (double)(float)rand_unit(&state), ax[i] = fabs(x[i]);
    for (int64_t i = 0; i < nw; i++) w[i] = (double)(float)rand_unit(&state), aw[i] = fabs(w[i]);
    for (int64_t i = 0; i < ny; i++) dy[i] = (double)(float)rand_unit(&state), ady[i] = fabs(dy[i]);
    reference(&g, x, w, dy, y, dx, dw);
    reference(&g, ax, aw, ady, sy, sdx, sdw);
    // Terms per element: y and dx sum over at most cin_g*KH*KW / cout_g*KH*KW products, dw over B*OH*OW.
    int64_t n_y = (g.c_in / g.groups) * g.kh * g.kw, n_dx = (g.c_out / g.groups) * g.kh * g.kw,
            n_dw = g.batch * g.out_h * g.out_w;

    int saved_threads = omp_get_max_threads();
    omp_set_num_threads(threads);
    // f32
    float *fx = malloc(sizeof(float) * (size_t)nx), *fw = malloc(sizeof(float) * (size_t)nw),
          *fdy = malloc(sizeof(float) * (size_t)ny), *fy = malloc(sizeof(float) * (size_t)ny),
          *fdx = malloc(sizeof(float) * (size_t)nx), *fdw = malloc(sizeof(float) * (size_t)nw);
    float *fy2 = malloc(sizeof(float) * (size_t)ny), *fdx2 = malloc(sizeof(float) * (size_t)nx),
          *fdw2 = malloc(sizeof(float) * (size_t)nw);
    for (int64_t i = 0; i < nx; i++) fx[i] = (float)x[i];
    for (int64_t i = 0; i < nw; i++) fw[i] = (float)w[i];
    for (int64_t i = 0; i < ny; i++) fdy[i] = (float)dy[i];
    for (int64_t i = 0; i < ny; i++) fy[i] = NAN;
    for (int64_t i = 0; i < nx; i++) fdx[i] = NAN;
    cpu_conv2d_forward_f32(&g, fx, fw, NULL, fy);
    cpu_conv2d_backward_f32(&g, fx, fw, fdy, fdx, fdw, NULL);
    cpu_conv2d_forward_f32(&g, fx, fw, NULL, fy2);
    cpu_conv2d_backward_f32(&g, fx, fw, fdy, fdx2, fdw2, NULL);
    int bad = 0;
    for (int64_t i = 0; i < ny && bad < 3; i++)
        if (!close_enough(fy[i], y[i], sy[i], n_y, 0x1p-24)) {
            CHECK_MSG(0, "f32 y[%lld] = %.9g, want %.9g (case cin %lld h %lld k %lld s %lld p %lld d %lld g %lld, %d threads)",
                      (long long)i, fy[i], y[i], (long long)c->c_in, (long long)c->h, (long long)c->kh,
                      (long long)c->stride, (long long)c->pad, (long long)c->dilation, (long long)c->groups, threads);
            bad++;
        }
    for (int64_t i = 0; i < nx && bad < 3; i++)
        if (!close_enough(fdx[i], dx[i], sdx[i], n_dx, 0x1p-24)) {
            CHECK_MSG(0, "f32 dx[%lld] = %.9g, want %.9g (case cin %lld h %lld, %d threads)", (long long)i, fdx[i], dx[i],
                      (long long)c->c_in, (long long)c->h, threads);
            bad++;
        }
    for (int64_t i = 0; i < nw && bad < 3; i++)
        if (!close_enough(fdw[i], dw[i], sdw[i], n_dw, 0x1p-24)) {
            CHECK_MSG(0, "f32 dw[%lld] = %.9g, want %.9g (case cin %lld h %lld, %d threads)", (long long)i, fdw[i], dw[i],
                      (long long)c->c_in, (long long)c->h, threads);
            bad++;
        }
    // Same thread count, same bits.
    CHECK(memcmp(fy, fy2, sizeof(float) * (size_t)ny) == 0);
    CHECK(memcmp(fdx, fdx2, sizeof(float) * (size_t)nx) == 0);
    CHECK(memcmp(fdw, fdw2, sizeof(float) * (size_t)nw) == 0);
    // f64
    double *dy64 = malloc(sizeof(double) * (size_t)ny), *dx64 = malloc(sizeof(double) * (size_t)nx),
           *dw64 = malloc(sizeof(double) * (size_t)nw);
    cpu_conv2d_forward_f64(&g, x, w, NULL, dy64);
    cpu_conv2d_backward_f64(&g, x, w, dy, dx64, dw64, NULL);
    for (int64_t i = 0; i < ny && bad < 3; i++)
        if (!close_enough(dy64[i], y[i], sy[i], n_y, 0x1p-53)) {
            CHECK_MSG(0, "f64 y[%lld] = %.17g, want %.17g", (long long)i, dy64[i], y[i]);
            bad++;
        }
    for (int64_t i = 0; i < nx && bad < 3; i++)
        if (!close_enough(dx64[i], dx[i], sdx[i], n_dx, 0x1p-53)) {
            CHECK_MSG(0, "f64 dx[%lld] = %.17g, want %.17g", (long long)i, dx64[i], dx[i]);
            bad++;
        }
    for (int64_t i = 0; i < nw && bad < 3; i++)
        if (!close_enough(dw64[i], dw[i], sdw[i], n_dw, 0x1p-53)) {
            CHECK_MSG(0, "f64 dw[%lld] = %.17g, want %.17g", (long long)i, dw64[i], dw[i]);
            bad++;
        }
    omp_set_num_threads(saved_threads);
    free(x), free(w), free(dy), free(ax), free(aw), free(ady), free(y), free(dx), free(dw), free(sy), free(sdx), free(sdw);
    free(fx), free(fw), free(fdy), free(fy), free(fdx), free(fdw), free(fy2), free(fdx2), free(fdw2);
    free(dy64), free(dx64), free(dw64);
}

static const Case CASES[] = {
    // batch, cin, h, w, cout, kh, kw, stride, pad, dilation, groups
    {3, 40, 32, 32, 8, 3, 3, 1, 1, 1, 1},   // P = 1024: 14-channel row blocks, last one partial
    {5, 70, 16, 16, 12, 3, 3, 1, 1, 1, 1},  // P = 256: 2 images folded, several blocks
    {9, 33, 4, 4, 20, 3, 3, 1, 1, 1, 1},    // P = 16: many images folded per chunk
    {4, 20, 9, 9, 6, 3, 3, 1, 2, 2, 1},     // dilation 2, padding 2: OW == W, |w_off| = 2
    {2, 6, 11, 7, 5, 5, 5, 1, 2, 1, 1},     // 5x5, non-square
    {3, 5, 1, 1, 4, 3, 3, 1, 1, 1, 1},      // 1x1 maps: every tap but the centre is padding
    {3, 8, 3, 3, 4, 3, 3, 1, 3, 1, 1},      // padding larger than the kernel reach
    {3, 24, 15, 15, 10, 3, 3, 2, 1, 1, 1},  // stride 2 (general im2col)
    {2, 12, 10, 10, 9, 3, 3, 1, 0, 1, 1},   // no padding: OW != W (general im2col)
    {3, 16, 8, 8, 8, 1, 1, 1, 0, 1, 1},     // pointwise
    {2, 12, 8, 8, 12, 3, 3, 1, 1, 1, 4},    // groups
    {2, 64, 32, 32, 16, 3, 3, 1, 1, 1, 1},  // a ResNet layer1-like shape
    // Stride 1, groups 1 in f32 take the implicit-GEMM path (engine/cpu/conv_implicit.c); the input
    // gradient too when Cin >= 16 (as a convolution of dy with flipped weights, padding K-1-pad).
    {1, 17, 32, 32, 64, 3, 3, 1, 1, 1, 1},  // batch 1 (units split by columns), Cout 64 = 4x14 + 8
    {2, 20, 33, 33, 22, 3, 3, 1, 1, 1, 1},  // 33 wide: a 32-pixel panel, then runs across rows
    {3, 19, 7, 5, 9, 3, 3, 1, 1, 1, 1},     // odd, non-square, Cin not a multiple of 16
    {2, 16, 40, 40, 6, 5, 5, 1, 2, 1, 1},   // 5x5: taps 2 columns left of the row (expanding loads)
    {1, 2, 5, 8, 3, 3, 3, 1, 20, 1, 1},     // padding 20: more than 16 padding columns in a panel
    {2, 16, 16, 16, 130, 3, 3, 1, 1, 1, 1}, // Cout 130 = 9x14 + 4; dx: Cin 16, M = 16 = 14 + 2
    {2, 16, 3, 3, 5, 3, 3, 1, 3, 1, 1},     // dx padding 2 - 3 = -1 (padding beyond the reach)
    {33, 32, 4, 4, 40, 3, 3, 1, 1, 1, 1},   // 4x4 maps: 32 images folded, last chunk partial
    // Strided forward and weight gradient on the implicit path (gathers; dx through col2im).
    {2, 16, 65, 65, 20, 3, 3, 2, 1, 1, 1},  // stride 2, 33 wide output: 32-pixel runs gathered
    {2, 5, 17, 13, 7, 3, 3, 3, 1, 1, 1},    // stride 3, odd sizes
    {3, 16, 8, 8, 18, 1, 3, 2, 0, 1, 1},    // 1x3 stride 2
    {4, 24, 16, 16, 32, 3, 3, 2, 1, 2, 1},  // stride 2 with dilation 2
};

TEST(conv_against_naive_1_thread) {
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) run_case(&CASES[i], 1);
}

TEST(conv_against_naive_2_threads) {
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) run_case(&CASES[i], 2);
}

int main(void) {
    RUN_TEST(conv_against_naive_1_thread);
    RUN_TEST(conv_against_naive_2_threads);
    return test_summary();
}
