// Implicit-GEMM convolution in f32 with the AVX-512 sgemm micro-kernel, for groups == 1:
//   forward    y[Cout, P] = w[Cout, Kg] @ col[Kg, P]                 (Kg = Cin * KH * KW)
//   input grad (stride 1) dx = the same forward convolution of dy with the weights transposed and
//              flipped, w'[ci][co][i][j] = w[co][ci][KH-1-i][KW-1-j], padding dilation * (K - 1) - pad
//   weight grad dw = dy @ col^T (further below).
// Other strides read every stride-th input column with gathers (ResNet's stride-2 convolutions).
// The im2col matrix col is never built: the GEMM's packed B panels (kc rows x 32 columns, what the
// micro-kernel reads) are filled straight from the NCHW input. A 32-column panel is one output
// row at 32x32, two at 16x16, and so on; each run of output pixels of one output row inside a
// panel (a "segment") is, for one kernel tap, a contiguous run of one input row, copied with two
// masked vector moves. Against im2col + GEMM this removes, per convolution, writing and re-reading
// the column matrix (in L2-sized row blocks), the copy into packed panels, and for dx the
// col2im scatter-add (and the zeroing of dx) -- and the forward GEMM keeps whole 256-deep K blocks
// instead of the im2col row blocks' 126.
//
// Forward and input-gradient work units are (chunk of images, block of columns); each is computed
// by one thread with no reduction across units, so results do not depend on the thread count or
// the schedule. The weight gradient sums per-thread partials over a static schedule: the same
// bits for the same thread count.
#include "engine/cpu/conv.h"

#if defined(__x86_64__)
#include <immintrin.h>
#include <omp.h>
#include <string.h>

#include "engine/cpu/gemm.h"
#include "engine/cpu/transpose_avx512.h"

#define MR SGEMM_AVX512_MR
#define NR SGEMM_AVX512_NR
// K block: the 14 x 256 A micro-panel stays in L1 (as in gemm.c).
#define KC 256
// At most this many columns per unit: the packed B panel, 256 x 1024 floats = 1 MiB, stays in L2.
#define NC_MAX 1024
// Fold images into one unit until it has about this many columns (late ResNet stages: 8x8 and 4x4
// maps), so each packed A micro-panel is used over several B panels.
#define TARGET_COLUMNS 512

// A run of output pixels of one output row inside a panel: columns [dst, dst + len) of the panel
// are pixels (oh, ow .. ow + len - 1) of image `image` (relative to the unit's first image).
typedef struct {
    int32_t dst, image, oh, ow, len;
} Segment;

typedef struct {
    const ConvGeometry *g;
    const float *x, *bias;
    float *y;
    const float *packed_a;  // all of A, packed: K block pc, row panel mp at pc * m_padded + mp * kc * MR
    int64_t m_padded;       // Cout rounded up to MR
    int64_t Kg, P;          // reduction length, output pixels per image
    int64_t nb, blocks;     // images per chunk; column blocks per chunk
} ImplicitConv;

static inline __mmask16 lanes(int64_t count) {  // the first min(count, 16) lanes, none if <= 0
    return count >= 16 ? (__mmask16)0xFFFF : count <= 0 ? (__mmask16)0 : (__mmask16)((1u << count) - 1);
}

// Segments of every panel (`width` columns) of the columns [j0, j0 + nc) (column q = image q / P,
// pixel q % P); starts[p] .. starts[p + 1] are panel p's. Returns the number of segments.
static int64_t build_segments(const ConvGeometry *g, int64_t P, int64_t j0, int64_t nc, int64_t width,
                              Segment *segments, int64_t *starts) {
    const int64_t OW = g->out_w, panels = (nc + width - 1) / width;
    int64_t count = 0;
    for (int64_t p = 0; p < panels; p++) {
        starts[p] = count;
        int64_t end = j0 + (p + 1) * width < j0 + nc ? j0 + (p + 1) * width : j0 + nc;
        for (int64_t q = j0 + p * width; q < end;) {
            int64_t image = q / P, pixel = q % P, oh = pixel / OW, ow = pixel % OW;
            int64_t len = OW - ow < end - q ? OW - ow : end - q;
            segments[count++] = (Segment){.dst = (int32_t)(q - j0 - p * width), .image = (int32_t)image,
                                          .oh = (int32_t)oh, .ow = (int32_t)ow, .len = (int32_t)len};
            q += len;
        }
    }
    starts[panels] = count;
    return count;
}

// Where row r = (c * KH + i) * KW + j of the implicit im2col matrix reads: the offset of input
// channel c's plane, and the tap's row and column offsets (i * dilation - pad, j * dilation - pad).
typedef struct {
    int64_t plane;
    int64_t h_off, w_off;
} Tap;

// taps[k] for the rows [r0, r0 + count) of the implicit im2col matrix.
static void fill_taps(const ConvGeometry *g, int64_t r0, int64_t count, Tap *taps) {
    const int64_t KH = g->kh, KW = g->kw;
    for (int64_t k = 0; k < count; k++) {
        const int64_t r = r0 + k, c = r / (KH * KW), i = (r / KW) % KH, j = r % KW;
        taps[k] = (Tap){.plane = c * g->h * g->w, .h_off = i * g->dilation_h - g->pad_h,
                        .w_off = j * g->dilation_w - g->pad_w};
    }
}

// Output pixels [*lo, *hi) of a run of `len` whose input columns iw + stride * t lie in [0, W).
static inline void valid_pixels(int64_t iw, int64_t stride, int64_t W, int64_t len, int64_t *lo, int64_t *hi) {
    *lo = iw < 0 ? (-iw + stride - 1) / stride : 0;
    *hi = iw < W ? (W - 1 - iw) / stride + 1 : 0;
    if (*hi > len) *hi = len;
}

// Packs rows [pc, pc + kc) of the implicit im2col matrix, columns of the unit's panels, into
// dst[p * kc * NR + k * NR + t] (zero where the tap falls into the padding or past the columns).
// Panel by panel, so the stores are sequential: row k of all panels at once would be 32 stores
// 32 KiB apart, all in the same L1 set (measured: the packing took 28% of a layer1 forward).
__attribute__((target("avx512f")))
static void pack_b_implicit(const ConvGeometry *g, const float *x_chunk, const Segment *segments,
                            const int64_t *starts, int64_t panels, int64_t pc, int64_t kc, Tap *taps, float *dst) {
    const int64_t H = g->h, W = g->w, image_size = g->c_in * H * W, sh = g->stride_h, sw = g->stride_w;
    fill_taps(g, pc, kc, taps);
    const __m512 zero = _mm512_setzero_ps();
    const __m512i stride_index = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                                    _mm512_set1_epi32((int)sw));
    for (int64_t p = 0; p < panels; p++) {
        float *panel = dst + p * kc * NR;
        const Segment *first = &segments[starts[p]];
        if (starts[p + 1] - starts[p] == 1 && first->len == NR && g->stride_w == 1) {
            // The panel is one run of 32 pixels of one output row (maps 32 wide, or wider): per
            // tap, row[t] = input row ih at column iw + t, zero outside [0, W). Columns left of
            // 0 are skipped with an expanding load (lanes lo.. get consecutive input values).
            const float *image = x_chunk + first->image * image_size;
            for (int64_t k = 0; k < kc; k++) {
                float *row = panel + k * NR;
                const int64_t ih = first->oh * g->stride_h + taps[k].h_off, iw = first->ow + taps[k].w_off;
                if (ih < 0 || ih >= H) {
                    _mm512_store_ps(row, zero);
                    _mm512_store_ps(row + 16, zero);
                    continue;
                }
                const int64_t lo = iw < 0 ? -iw : 0, hi = W - iw < NR ? W - iw : NR;
                const float *src = image + taps[k].plane + ih * W + iw;  // valid from lane lo on
                __m512 v0, v1;
                if (lo == 0) {
                    v0 = _mm512_maskz_loadu_ps(lanes(hi), src);
                } else {
                    __mmask16 m = (__mmask16)(lanes(hi) & ~lanes(lo));
                    v0 = _mm512_maskz_expandloadu_ps(m, src + lo);
                }
                if (lo <= 16) {
                    v1 = _mm512_maskz_loadu_ps(lanes(hi - 16), src + 16);
                } else {  // only with padding wider than 16 columns
                    __mmask16 m = (__mmask16)(lanes(hi - 16) & ~lanes(lo - 16));
                    v1 = _mm512_maskz_expandloadu_ps(m, src + lo);
                }
                _mm512_store_ps(row, v0);
                _mm512_store_ps(row + 16, v1);
            }
            continue;
        }
        if (starts[p + 1] - starts[p] == 2 && first->len == 16 && first[1].len == 16 && sw == 1) {
            // Two runs of 16 pixels (maps 16 wide): each half of the row is one masked load
            // positioned at its input columns, then full stores -- no zero fill, no masked stores
            // (masked stores over the zero-filled row were the hot spot of this packing).
            for (int64_t k = 0; k < kc; k++) {
                float *row = panel + k * NR;
                for (int half = 0; half < 2; half++) {
                    const Segment *seg = first + half;
                    const int64_t ih = seg->oh * sh + taps[k].h_off, iw = seg->ow + taps[k].w_off;
                    const int64_t lo = iw < 0 ? -iw : 0, hi = W - iw < 16 ? W - iw : 16;
                    __m512 v = zero;
                    if (ih >= 0 && ih < H && hi > lo) {
                        // Lane t reads column iw + t; masked lanes (padding) are never accessed.
                        // Formed as an integer: for the first row of the first plane the address
                        // of lane 0 lies before x.
                        const float *src = (const float *)((uintptr_t)(x_chunk + seg->image * image_size + taps[k].plane + ih * W) +
                                                           (uintptr_t)(iw * (int64_t)sizeof(float)));
                        v = _mm512_maskz_loadu_ps((__mmask16)(lanes(hi) & ~lanes(lo)), src);
                    }
                    _mm512_store_ps(row + 16 * half, v);
                }
            }
            continue;
        }
        for (int64_t k = 0; k < kc; k++) {
            float *row = panel + k * NR;
            _mm512_store_ps(row, zero);
            _mm512_store_ps(row + 16, zero);
            for (int64_t s = starts[p]; s < starts[p + 1]; s++) {
                const Segment *seg = &segments[s];
                int64_t ih = seg->oh * sh + taps[k].h_off;
                if (ih < 0 || ih >= H) continue;
                int64_t iw = seg->ow * sw + taps[k].w_off;  // input column of the segment's first pixel
                int64_t lo, hi;
                valid_pixels(iw, sw, W, seg->len, &lo, &hi);
                if (hi <= lo) continue;
                const float *src = x_chunk + seg->image * image_size + taps[k].plane + ih * W + iw + lo * sw;
                float *d = row + seg->dst + lo;
                __mmask16 m0 = lanes(hi - lo), m1 = lanes(hi - lo - 16);
                if (sw == 1) {
                    _mm512_mask_storeu_ps(d, m0, _mm512_maskz_loadu_ps(m0, src));
                    if (m1) _mm512_mask_storeu_ps(d + 16, m1, _mm512_maskz_loadu_ps(m1, src + 16));
                } else {  // every sw-th input column: gathers
                    _mm512_mask_storeu_ps(d, m0, _mm512_mask_i32gather_ps(zero, m0, stride_index, src, 4));
                    if (m1)
                        _mm512_mask_storeu_ps(d + 16, m1, _mm512_mask_i32gather_ps(zero, m1, stride_index, src + 16 * sw, 4));
                }
            }
        }
    }
}

// One unit: columns [j0, j0 + nc) of chunk `chunk`, all output channels. scratch: the packed B
// panel, the segments, and (folded chunks) the [Cout, nc] result before it is spread over images.
static void implicit_unit(const ImplicitConv *conv, int64_t chunk, int64_t j0, int64_t nc, float *scratch) {
    const ConvGeometry *g = conv->g;
    const int64_t P = conv->P, Kg = conv->Kg, M = g->c_out, panels = (nc + NR - 1) / NR;
    const int64_t b0 = chunk * conv->nb, n = g->batch - b0 < conv->nb ? g->batch - b0 : conv->nb;
    float *packed_b = scratch;
    Segment *segments = (Segment *)(packed_b + KC * panels * NR);
    int64_t *starts = (int64_t *)(segments + panels * NR);
    Tap *taps = (Tap *)(starts + panels + 8);
    float *folded = (float *)(taps + KC);
    folded = (float *)(((uintptr_t)folded + 63) & ~(uintptr_t)63);
    build_segments(g, P, j0, nc, NR, segments, starts);
    const float *x_chunk = conv->x + b0 * g->c_in * g->h * g->w;
    // One image: write y in place ([Cout, P] with row stride P); several: [Cout, nc] then spread.
    float *C = n == 1 ? conv->y + b0 * M * P + j0 : folded;
    const int64_t ldc = n == 1 ? P : nc;
    for (int64_t pc = 0; pc < Kg; pc += KC) {
        const int64_t kc = Kg - pc < KC ? Kg - pc : KC;
        pack_b_implicit(g, x_chunk, segments, starts, panels, pc, kc, taps, packed_b);
        const float beta = pc == 0 ? 0.0f : 1.0f;
        for (int64_t ir = 0; ir < M; ir += MR) {
            const int m = (int)(M - ir < MR ? M - ir : MR);
            const float *a_panel = conv->packed_a + pc * conv->m_padded + ir * kc;
            for (int64_t p = 0; p < panels; p++) {
                const int cols = (int)(nc - p * NR < NR ? nc - p * NR : NR);
                sgemm_micro_avx512(kc, a_panel, packed_b + p * kc * NR, C + ir * ldc + p * NR, ldc, m, cols, 1.0f, beta);
            }
        }
    }
    if (n == 1) {
        if (conv->bias)
            for (int64_t co = 0; co < M; co++) {
                float b = conv->bias[co], *row = C + co * ldc;
                for (int64_t q = 0; q < nc; q++) row[q] += b;
            }
        return;
    }
    // [Cout, nc] -> y: column q is image b0 + (j0 + q) / P, pixel (j0 + q) % P.
    for (int64_t co = 0; co < M; co++) {
        const float b = conv->bias ? conv->bias[co] : 0.0f;
        for (int64_t q = 0; q < nc;) {
            int64_t image = (j0 + q) / P, pixel = (j0 + q) % P, run = P - pixel < nc - q ? P - pixel : nc - q;
            float *out = conv->y + ((b0 + image) * M + co) * P + pixel;
            const float *src = folded + co * nc + q;
            for (int64_t t = 0; t < run; t++) out[t] = src[t] + b;
            q += run;
        }
    }
}

// The input-gradient convolution's A = w'[ci][(co * KH + i) * KW + j] = w[co][ci][KH-1-i][KW-1-j],
// packed straight from the forward weights w: rows [ci0, ci0 + rows) (one micro-panel, zero past
// rows), K range [pc, pc + kc) -> dst[k * MR + r]. For one k the panel's rows are w[co][ci0 + r]
// at one tap: 14 floats `taps` apart, one gather. (Building w' first and packing it cost two more
// passes over the weights, 9.4 MB at layer4: 24% of its input gradient at batch 16.) Here g is the
// input-gradient geometry: g->c_out = the forward's Cin, g->c_in = the forward's Cout.
__attribute__((target("avx512f")))
static void pack_a_flipped(const ConvGeometry *g, const float *w, int64_t ci0, int rows, int64_t pc, int64_t kc,
                           float *dst) {
    const int64_t taps = g->kh * g->kw, cin_forward = g->c_out;
    const __m512i index = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                             _mm512_set1_epi32((int)taps));
    const __mmask16 valid = lanes(rows), panel_row = lanes(MR);
    for (int64_t k = 0; k < kc; k++) {
        const int64_t co = (pc + k) / taps, t = (pc + k) % taps;
        const float *base = w + (co * cin_forward + ci0) * taps + (taps - 1 - t);
        __m512 v = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), valid, index, base, 4);
        _mm512_mask_storeu_ps(dst + k * MR, panel_row, v);
    }
}

int conv2d_implicit_applies(const ConvGeometry *g) {
    // Strided 1x1 convolutions (ResNet's downsample) measured 25% slower forward with gathers
    // than im2col's strided copy; strided 3x3 ones 5-15% faster.
    const int strided = g->stride_h != 1 || g->stride_w != 1;
    return g->groups == 1 && !(strided && g->kh * g->kw == 1) && g->batch > 0 && g->c_out > 0 && g->c_in > 0 &&
           g->out_h > 0 && g->out_w > 0 && strcmp(sgemm_kernel_name(), "avx512") == 0;
}

// The forward convolution of x with weights w_rows ([Cout, Kg] row-major), see the file comment.
// transposed_from (may be NULL; then w_rows is not used): the input-gradient case, A is the
// flipped transpose of these forward weights (see pack_a_flipped; g is the input-gradient geometry).
static void implicit_forward(const ConvGeometry *g, const float *x, const float *w_rows, const float *transposed_from,
                             const float *bias, float *y) {
    const int64_t P = g->out_h * g->out_w, Kg = g->c_in * g->kh * g->kw, M = g->c_out;
    const int64_t m_padded = (M + MR - 1) / MR * MR;
    int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
    // Units: chunks of nb images (folded until ~TARGET_COLUMNS columns), each cut into column
    // blocks of at most NC_MAX; more blocks when there are too few units to keep the threads busy.
    int64_t nb = (TARGET_COLUMNS + P - 1) / P;
    if (nb > g->batch) nb = g->batch;
    const int64_t chunks = (g->batch + nb - 1) / nb, N_chunk = nb * P;
    int64_t blocks = (N_chunk + NC_MAX - 1) / NC_MAX;
    while (chunks * blocks < 2 * threads && blocks * NR < N_chunk) blocks++;
    const int64_t nc_max = ((N_chunk + blocks - 1) / blocks + NR - 1) / NR * NR;
    const int64_t panels_max = nc_max / NR;
    // Per-thread scratch, in floats: B panel, segments, panel starts, tap table, folded result.
    const int64_t per_thread = (KC * nc_max + panels_max * NR * (int64_t)(sizeof(Segment) / sizeof(float)) +
                                (panels_max + 8) * 2 + KC * (int64_t)(sizeof(Tap) / sizeof(float)) + 16 +
                                (nb > 1 ? M * nc_max : 0) + 15) /
                               16 * 16;
    const int64_t packed_size = (m_padded * Kg + 15) / 16 * 16;
    float *scratch = conv_scratch_acquire((size_t)(packed_size + per_thread * threads) * sizeof(float));
    float *packed_a = scratch;
    // Pack A once for all units: K block pc, row panel mp -> packed_a + pc * m_padded + mp * kc * MR.
    const int64_t k_blocks = (Kg + KC - 1) / KC, m_panels = m_padded / MR;
#pragma omp parallel for schedule(static) num_threads(threads) if (M * Kg >= (1 << 16))
    for (int64_t piece = 0; piece < k_blocks * m_panels; piece++) {
        const int64_t pc = piece / m_panels * KC, mp = piece % m_panels;
        const int64_t kc = Kg - pc < KC ? Kg - pc : KC, rows = M - mp * MR < MR ? M - mp * MR : MR;
        float *dst = packed_a + pc * m_padded + mp * kc * MR;
        if (transposed_from)
            pack_a_flipped(g, transposed_from, mp * MR, (int)rows, pc, kc, dst);
        else
            sgemm_pack_rows_avx512(w_rows + mp * MR * Kg + pc, Kg, (int)rows, kc, MR, dst);
    }
    ImplicitConv conv = {.g = g, .x = x, .bias = bias, .y = y, .packed_a = packed_a, .m_padded = m_padded,
                         .Kg = Kg, .P = P, .nb = nb, .blocks = blocks};
    float *thread_scratch = packed_a + packed_size;
    const int64_t units = chunks * blocks;
#pragma omp parallel for schedule(dynamic) num_threads(threads) if (threads > 1 && units > 1)
    for (int64_t unit = 0; unit < units; unit++) {
        const int64_t chunk = unit / blocks, block = unit % blocks;
        const int64_t b0 = chunk * nb, n = g->batch - b0 < nb ? g->batch - b0 : nb, N = n * P;
        // Blocks of this chunk: nc_max columns each, the last one what is left (none if past N).
        const int64_t j0 = block * nc_max, nc = N - j0 < nc_max ? N - j0 : nc_max;
        if (nc > 0) implicit_unit(&conv, chunk, j0, nc, thread_scratch + per_thread * omp_get_thread_num());
    }
    conv_scratch_release(scratch);
}

int conv2d_implicit_forward_f32(const ConvGeometry *g, const float *x, const float *w, const float *bias, float *y) {
    if (!conv2d_implicit_applies(g)) return 0;
    implicit_forward(g, x, w, NULL, bias, y);
    return 1;
}

int conv2d_implicit_backward_data_f32(const ConvGeometry *g, const float *w, const float *dy, float *dx) {
    // Below 16 input channels (the stem's 3) most of each 14-row tile of dx would be padding; the
    // im2col path's GEMM then has the better shape (stem: 2.2 ms here vs 1.2 ms at batch 16).
    // Other strides stay on im2col + col2im (their dx is not a stride-1 convolution of dy).
    if (!conv2d_implicit_applies(g) || g->c_in < 16 || g->stride_h != 1 || g->stride_w != 1) return 0;
    // dx[b][ci][ih][iw] = sum over co, i, j of dy[b][co][ih + pad - i*dil][iw + pad - j*dil] w[co][ci][i][j]:
    // a stride-1 convolution of dy (Cout channels, OH x OW) with the flipped taps and padding
    // dil * (K - 1) - pad on each side, whose output is H x W.
    ConvGeometry t = {.batch = g->batch, .c_in = g->c_out, .h = g->out_h, .w = g->out_w, .c_out = g->c_in,
                      .kh = g->kh, .kw = g->kw, .stride_h = 1, .stride_w = 1,
                      .pad_h = g->dilation_h * (g->kh - 1) - g->pad_h, .pad_w = g->dilation_w * (g->kw - 1) - g->pad_w,
                      .dilation_h = g->dilation_h, .dilation_w = g->dilation_w, .groups = 1};
    t.out_h = g->h;
    t.out_w = g->w;
    implicit_forward(&t, dy, NULL, w, NULL, dx);
    return 1;
}

// ---- Weight gradient: dw[Cout, Kg] = sum over images of dy[Cout, P] @ col[Kg, P]^T ----
// Here the GEMM's K is the pixels and its N the im2col rows, so a packed B panel (kc pixels x 32
// im2col rows) is the transpose of what the forward packs: 16 rows x 16 pixels are gathered into
// registers (expanding loads place each run of pixels at its lanes) and transposed in registers.
// Against im2col (in row blocks) + a transposing pack per block, this skips writing and
// re-reading the column matrix, and dy is packed once per K block instead of once per row block.

// Pixels per K block: the A micro-panel (14 x 512 floats, 28 KiB) stays in L1 and a chunk of small
// maps (4x4: 32 images) is one K block, so its dw partial is read and written once.
#define DW_KC 512

// dst[k * NR + t] = col[kg0 + t][pixel k] for k < kc, t < cols, zero for t >= cols; the pixels'
// 16-wide groups have the segments starts[q] .. starts[q + 1]; taps[t] is im2col row kg0 + t.
__attribute__((target("avx512f")))
static void pack_b_filter(const ConvGeometry *g, const float *x_chunk, const Segment *segments, const int64_t *starts,
                          int64_t kc, int cols, const Tap *taps, float *dst) {
    const int64_t H = g->h, W = g->w, image_size = g->c_in * H * W, groups = (kc + 15) / 16;
    const int64_t sh = g->stride_h, sw = g->stride_w;
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (int half = 0; half < 2; half++) {  // im2col rows [16 half, 16 half + 16) of the panel
        for (int64_t q = 0; q < groups; q++) {
            __m512 in[16], out[16];
            const Segment *first = &segments[starts[q]];
            const int single = starts[q + 1] - starts[q] == 1 && first->len == 16 && sw == 1;
            for (int r = 0; r < 16; r++) {
                const int t = half * 16 + r;
                __m512 v = _mm512_setzero_ps();
                if (t < cols && single) {
                    // 16 pixels of one output row (maps at least 16 wide): one load of the valid
                    // input columns, moved up by the lo padding columns with a permute. (A merging
                    // expand-load here, chained through memory, made this packing 35% of layer1's dw.)
                    const int64_t ih = first->oh * sh + taps[t].h_off, iw = first->ow + taps[t].w_off;
                    const int64_t lo = iw < 0 ? -iw : 0, hi = W - iw < 16 ? W - iw : 16;
                    if (ih >= 0 && ih < H && hi > lo) {
                        v = _mm512_maskz_loadu_ps(lanes(hi - lo),
                                                  x_chunk + first->image * image_size + taps[t].plane + ih * W + iw + lo);
                        if (lo)
                            v = _mm512_maskz_permutexvar_ps((__mmask16)(lanes(hi) & ~lanes(lo)),
                                                            _mm512_sub_epi32(iota, _mm512_set1_epi32((int)lo)), v);
                    }
                } else if (t < cols) {
                    for (int64_t s = starts[q]; s < starts[q + 1]; s++) {
                        const Segment *seg = &segments[s];
                        const int64_t ih = seg->oh * sh + taps[t].h_off;
                        if (ih < 0 || ih >= H) continue;
                        const int64_t iw = seg->ow * sw + taps[t].w_off;
                        int64_t lo, hi;
                        valid_pixels(iw, sw, W, seg->len, &lo, &hi);
                        if (hi <= lo) continue;
                        const __mmask16 m = (__mmask16)(lanes(seg->dst + hi) & ~lanes(seg->dst + lo));
                        const float *src = x_chunk + seg->image * image_size + taps[t].plane + ih * W + iw + lo * sw;
                        if (sw == 1) {
                            v = _mm512_mask_expandloadu_ps(v, m, src);
                        } else {  // lane l reads src[(l - dst - lo) * sw]
                            const __m512i index = _mm512_mullo_epi32(
                                _mm512_sub_epi32(iota, _mm512_set1_epi32((int)(seg->dst + lo))), _mm512_set1_epi32((int)sw));
                            v = _mm512_mask_i32gather_ps(v, m, index, src, 4);
                        }
                    }
                }
                in[r] = v;
            }
            transpose16(in, out);
            const int64_t count = kc - q * 16 < 16 ? kc - q * 16 : 16;
            for (int64_t p = 0; p < count; p++) _mm512_store_ps(dst + (q * 16 + p) * NR + half * 16, out[p]);
        }
    }
}

int conv2d_implicit_backward_filter_f32(const ConvGeometry *g, const float *x, const float *dy, float *dw) {
    if (!conv2d_implicit_applies(g)) return 0;
    const int64_t P = g->out_h * g->out_w, Kg = g->c_in * g->kh * g->kw, M = g->c_out;
    const int64_t m_padded = (M + MR - 1) / MR * MR, kg_panels = (Kg + NR - 1) / NR;
    int64_t nb = (DW_KC + P - 1) / P;
    if (nb > g->batch) nb = g->batch;
    const int64_t chunks = (g->batch + nb - 1) / nb;
    int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
    if (threads > chunks) threads = (int)chunks;
    // Per thread: dw partial (threads > 1), packed A (m_padded x DW_KC), one packed B panel, the
    // segments of DW_KC pixels (at most one per pixel) and their group starts, the tap table.
    const int64_t partial = threads > 1 ? (M * Kg + 15) / 16 * 16 : 0;
    const int64_t per_thread = partial + m_padded * DW_KC + DW_KC * NR +
                               (DW_KC * (int64_t)sizeof(Segment) + (DW_KC / 16 + 8) * (int64_t)sizeof(int64_t) +
                                NR * (int64_t)sizeof(Tap) + 63) / 64 * 16;
    float *scratch = conv_scratch_acquire((size_t)(per_thread * threads) * sizeof(float));
    if (threads == 1) memset(dw, 0, (size_t)(M * Kg) * sizeof(float));
    // Static schedule: which chunks a thread sums into its partial must not depend on timing, or
    // the summation order (and the last bits of dw) would change from run to run.
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        float *mine = scratch + per_thread * omp_get_thread_num();
        float *acc = threads > 1 ? mine : dw, *packed_a = mine + partial, *packed_b = packed_a + m_padded * DW_KC;
        Segment *segments = (Segment *)(packed_b + DW_KC * NR);
        int64_t *starts = (int64_t *)(segments + DW_KC);
        Tap *taps = (Tap *)(starts + DW_KC / 16 + 8);
        if (threads > 1) memset(acc, 0, (size_t)(M * Kg) * sizeof(float));
#pragma omp for schedule(static)
        for (int64_t chunk = 0; chunk < chunks; chunk++) {
            const int64_t b0 = chunk * nb, n = g->batch - b0 < nb ? g->batch - b0 : nb, K = n * P;
            const float *x_chunk = x + b0 * g->c_in * g->h * g->w;
            const int64_t k_blocks = (K + DW_KC - 1) / DW_KC;
            const int64_t k_step = ((K + k_blocks - 1) / k_blocks + 15) / 16 * 16;  // balanced, whole groups of 16
            for (int64_t pc = 0; pc < K; pc += k_step) {
                const int64_t kc = K - pc < k_step ? K - pc : k_step;
                // A = dy[:, pixels pc .. pc + kc) of the chunk, one image's run at a time.
                for (int64_t mp = 0; mp < m_padded / MR; mp++) {
                    const int rows = (int)(M - mp * MR < MR ? M - mp * MR : MR);
                    for (int64_t q = pc; q < pc + kc;) {
                        const int64_t image = q / P, pixel = q % P, run = P - pixel < pc + kc - q ? P - pixel : pc + kc - q;
                        sgemm_pack_rows_avx512(dy + ((b0 + image) * M + mp * MR) * P + pixel, P, rows, run, MR,
                                               packed_a + mp * kc * MR + (q - pc) * MR);
                        q += run;
                    }
                }
                build_segments(g, P, pc, kc, 16, segments, starts);
                for (int64_t kp = 0; kp < kg_panels; kp++) {
                    const int cols = (int)(Kg - kp * NR < NR ? Kg - kp * NR : NR);
                    fill_taps(g, kp * NR, cols, taps);
                    pack_b_filter(g, x_chunk, segments, starts, kc, cols, taps, packed_b);
                    for (int64_t mp = 0; mp < m_padded / MR; mp++) {
                        const int rows = (int)(M - mp * MR < MR ? M - mp * MR : MR);
                        sgemm_micro_avx512(kc, packed_a + mp * kc * MR, packed_b, acc + mp * MR * Kg + kp * NR, Kg, rows,
                                           cols, 1.0f, 1.0f);
                    }
                }
            }
        }
    }
    if (threads > 1) {
#pragma omp parallel for schedule(static) num_threads(threads) if (M * Kg >= (1 << 14))
        for (int64_t k = 0; k < M * Kg; k++) {
            float total = 0;
            for (int t = 0; t < threads; t++) total += scratch[t * per_thread + k];
            dw[k] = total;
        }
    }
    conv_scratch_release(scratch);
    return 1;
}

#else
int conv2d_implicit_applies(const ConvGeometry *g) { return 0; }
int conv2d_implicit_forward_f32(const ConvGeometry *g, const float *x, const float *w, const float *bias, float *y) {
    return 0;
}
int conv2d_implicit_backward_data_f32(const ConvGeometry *g, const float *w, const float *dy, float *dx) { return 0; }
int conv2d_implicit_backward_filter_f32(const ConvGeometry *g, const float *x, const float *dy, float *dw) { return 0; }
#endif
