// Elementwise kernels: the unary ops of engine/cpu/elementwise.h forward and backward, broadcast
// binary ops, fill, strided copy with f32/f16/bf16 conversion. Launchers: kernels/elementwise.h.
//
// The unary formulas are not copied: this file expands engine/cpu/elementwise.h's UNARY_OP_LIST
// itself, one forward and one backward kernel per op. Its expressions use <tgmath.h> names (exp,
// log, sqrt, pow, fabs, tanh, erf): in C (the emulator) <tgmath.h> turns them into the float
// functions, as in cpu_unary_*_f32; in CUDA C++ the same names are the float overloads of the CUDA
// math library (no double arithmetic: the PTX has no f64 instruction). So a new op in the list gets
// its kernels, and a formula change reaches both devices. Only the three long derivatives that
// engine/cpu/elementwise.c writes as helpers are mirrored here (gelu_tanh, quick_gelu, silu); the
// tests compare every op's backward with the CPU, which covers them.
//
// Memory access: grid-stride loops over 256-thread blocks (at most 8192 blocks, 32 waves of 256
// threads on a 132-SM H100 — enough in flight to saturate memory; larger arrays loop). Contiguous
// data with aligned pointers moves as float4 (16 B per thread per access, fully coalesced 512 B per
// warp); the scalar loop takes the tail and misaligned data. Broadcast and strided kernels walk the
// output (copy: the destination) in order, so the writes are coalesced; the launchers first merge
// dims so that few divisions are needed per element, and use 32-bit divisions when the element
// count fits.
#include "kernels/cuda_compat.h"
#include "kernels/elementwise.h"

#include <string.h>

#ifndef __CUDACC__
#include <tgmath.h>  // the C build: type-generic exp/log/... pick the float functions, as on the CPU
#endif

#define EW_THREADS 256
#define EW_MAX_BLOCKS 8192

#ifdef __CUDACC__
#define EW_UNROLL _Pragma("unroll")
#else
#define EW_UNROLL
#endif

// The element type of the formulas (engine/cpu/elementwise.c defines `real` as float for the f32
// kernels; here everything is f32).
typedef float real;

// engine/cpu/elementwise.c's DEFINE_DERIVATIVES for float, mirrored.
static __device__ __forceinline__ float gelu_tanh_derivative(float x) {
    const real k = (real)0.7978845608028654, c = (real)0.044715;
    real t = tanh(k * (x + c * x * x * x));
    return (real)0.5 * (1 + t) + (real)0.5 * x * (1 - t * t) * k * (1 + 3 * c * x * x);
}
static __device__ __forceinline__ float quick_gelu_derivative(float x) {
    real s = 1 / (1 + exp((real)-1.702 * x));
    return s + (real)1.702 * x * s * (1 - s);
}
static __device__ __forceinline__ float silu_derivative(float x) {
    real s = 1 / (1 + exp(-x));
    return s * (1 + x * (1 - s));
}

static __device__ __forceinline__ int64_t ew_first_index(void) {
    return (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
}
static __device__ __forceinline__ int64_t ew_grid_step(void) { return (int64_t)gridDim.x * blockDim.x; }

// ------------------------------------------------------------------------------------------------
// Unary ops: per op, y = f(x) and gx = g * f'(x, y). `vec` (all pointers 16-byte aligned): the first
// n / 4 * 4 elements go as float4, the rest (and everything when !vec) through the scalar loop.
// ------------------------------------------------------------------------------------------------

#define UNARY_KERNELS(name, forward, derivative)                                                          \
    static __device__ __forceinline__ float unary_f_##name(float x, float p0, float p1) {                 \
        (void)p0;                                                                                         \
        (void)p1;                                                                                         \
        return (float)(forward);                                                                          \
    }                                                                                                     \
    static __device__ __forceinline__ float unary_df_##name(float x, float y, float p0, float p1) {       \
        (void)x;                                                                                          \
        (void)y;                                                                                          \
        (void)p0;                                                                                         \
        (void)p1;                                                                                         \
        return (float)(derivative);                                                                       \
    }                                                                                                     \
    __global__ void unary_forward_##name##_kernel(const float *x, float *y, int64_t n, float p0, float p1, \
                                                  int vec) {                                              \
        const int64_t first = ew_first_index(), step = ew_grid_step(), n4 = vec ? n / 4 : 0;              \
        for (int64_t i = first; i < n4; i += step) {                                                      \
            float4 v = ((const float4 *)x)[i];                                                            \
            v.x = unary_f_##name(v.x, p0, p1);                                                            \
            v.y = unary_f_##name(v.y, p0, p1);                                                            \
            v.z = unary_f_##name(v.z, p0, p1);                                                            \
            v.w = unary_f_##name(v.w, p0, p1);                                                            \
            ((float4 *)y)[i] = v;                                                                         \
        }                                                                                                 \
        for (int64_t i = n4 * 4 + first; i < n; i += step) y[i] = unary_f_##name(x[i], p0, p1);           \
    }                                                                                                     \
    CU_KERNEL_ARGS(unary_forward_##name##_kernel, const float *, float *, int64_t, float, float, int);     \
    __global__ void unary_backward_##name##_kernel(const float *x, const float *y, const float *g, float *gx, \
                                                   int64_t n, float p0, float p1, int vec) {              \
        const int64_t first = ew_first_index(), step = ew_grid_step(), n4 = vec ? n / 4 : 0;              \
        for (int64_t i = first; i < n4; i += step) {                                                      \
            float4 xv = ((const float4 *)x)[i], gv = ((const float4 *)g)[i];                              \
            float4 yv = y ? ((const float4 *)y)[i] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);                 \
            gv.x *= unary_df_##name(xv.x, yv.x, p0, p1);                                                  \
            gv.y *= unary_df_##name(xv.y, yv.y, p0, p1);                                                  \
            gv.z *= unary_df_##name(xv.z, yv.z, p0, p1);                                                  \
            gv.w *= unary_df_##name(xv.w, yv.w, p0, p1);                                                  \
            ((float4 *)gx)[i] = gv;                                                                       \
        }                                                                                                 \
        for (int64_t i = n4 * 4 + first; i < n; i += step)                                               \
            gx[i] = g[i] * unary_df_##name(x[i], y ? y[i] : 0.0f, p0, p1);                                \
    }                                                                                                     \
    CU_KERNEL_ARGS(unary_backward_##name##_kernel, const float *, const float *, const float *, float *,   \
                   int64_t, float, float, int);

UNARY_OP_LIST(UNARY_KERNELS)

static int ew_aligned(const void *pointer, unsigned int bytes) {
    return ((uintptr_t)pointer & (uintptr_t)(bytes - 1)) == 0;
}

static unsigned int ew_blocks(int64_t work_items) {
    int64_t blocks = (work_items + EW_THREADS - 1) / EW_THREADS;
    return (unsigned int)(blocks < 1 ? 1 : blocks > EW_MAX_BLOCKS ? EW_MAX_BLOCKS : blocks);
}

CU_EXTERN_C void unary_forward_f32_launch(UnaryOp op, const float *x, float *y, int64_t n, double p0, double p1,
                                          cudaStream_t stream) {
    if (n <= 0) return;
    const int vec = ew_aligned(x, 16) && ew_aligned(y, 16);
    const unsigned int blocks = ew_blocks(vec ? (n + 3) / 4 : n);
    const float f0 = (float)p0, f1 = (float)p1;
    switch (op) {
#define UNARY_FORWARD_CASE(name, forward, derivative)                                               \
    case UNARY_##name:                                                                              \
        CU_LAUNCH(unary_forward_##name##_kernel, blocks, EW_THREADS, 0, stream, x, y, n, f0, f1, vec); \
        break;
        UNARY_OP_LIST(UNARY_FORWARD_CASE)
#undef UNARY_FORWARD_CASE
    default: break;
    }
}

CU_EXTERN_C void unary_backward_f32_launch(UnaryOp op, const float *x, const float *y, const float *grad_y,
                                           float *grad_x, int64_t n, double p0, double p1, cudaStream_t stream) {
    if (n <= 0) return;
    const int vec = ew_aligned(x, 16) && ew_aligned(y, 16) && ew_aligned(grad_y, 16) && ew_aligned(grad_x, 16);
    const unsigned int blocks = ew_blocks(vec ? (n + 3) / 4 : n);
    const float f0 = (float)p0, f1 = (float)p1;
    switch (op) {
#define UNARY_BACKWARD_CASE(name, forward, derivative)                                                 \
    case UNARY_##name:                                                                                 \
        CU_LAUNCH(unary_backward_##name##_kernel, blocks, EW_THREADS, 0, stream, x, y, grad_y, grad_x, n, \
                  f0, f1, vec);                                                                        \
        break;
        UNARY_OP_LIST(UNARY_BACKWARD_CASE)
#undef UNARY_BACKWARD_CASE
    default: break;
    }
}

// ------------------------------------------------------------------------------------------------
// Binary ops over broadcast operands.
// ------------------------------------------------------------------------------------------------

// Offsets of output element i in a and b: the coordinates of i in `layout.shape` (row-major) dotted
// with the strides. `narrow` (the element count fits 31 bits): 32-bit divisions, several times
// cheaper than 64-bit ones on the GPU. The loop is unrolled over the fixed maximum so the strides
// stay in the parameter space instead of a local-memory copy.
static __device__ __forceinline__ void ew_broadcast_offsets(const KernelBroadcast layout, int64_t i, int narrow,
                                                            int64_t *offset_a, int64_t *offset_b) {
    int64_t oa = 0, ob = 0;
    if (narrow) {
        unsigned int rest = (unsigned int)i;
        EW_UNROLL
        for (int d = KERNEL_MAX_DIMS - 1; d >= 0; d--) {
            if (d < layout.ndim) {
                unsigned int extent = (unsigned int)layout.shape[d], coordinate = rest % extent;
                rest /= extent;
                oa += (int64_t)coordinate * layout.stride_a[d];
                ob += (int64_t)coordinate * layout.stride_b[d];
            }
        }
    } else {
        int64_t rest = i;
        EW_UNROLL
        for (int d = KERNEL_MAX_DIMS - 1; d >= 0; d--) {
            if (d < layout.ndim) {
                int64_t coordinate = rest % layout.shape[d];
                rest /= layout.shape[d];
                oa += coordinate * layout.stride_a[d];
                ob += coordinate * layout.stride_b[d];
            }
        }
    }
    *offset_a = oa;
    *offset_b = ob;
}

// Per op: a kernel for one merged dim whose strides are 0 (a broadcast scalar) or 1, with the float4
// path when `vec`; and the general kernel.
#define BINARY_KERNELS(name, EXPR)                                                                       \
    static __device__ __forceinline__ float binary_##name(float x, float y) { return EXPR; }             \
    __global__ void binary_##name##_flat_kernel(const float *a, const float *b, float *out, int64_t n,     \
                                                int stride_a, int stride_b, int vec) {                   \
        const int64_t first = ew_first_index(), step = ew_grid_step(), n4 = vec ? n / 4 : 0;             \
        for (int64_t i = first; i < n4; i += step) {                                                     \
            float4 va = stride_a ? ((const float4 *)a)[i] : make_float4(a[0], a[0], a[0], a[0]);          \
            float4 vb = stride_b ? ((const float4 *)b)[i] : make_float4(b[0], b[0], b[0], b[0]);          \
            float4 r = make_float4(binary_##name(va.x, vb.x), binary_##name(va.y, vb.y),                   \
                                   binary_##name(va.z, vb.z), binary_##name(va.w, vb.w));                  \
            ((float4 *)out)[i] = r;                                                                      \
        }                                                                                                \
        for (int64_t i = n4 * 4 + first; i < n; i += step)                                              \
            out[i] = binary_##name(a[i * stride_a], b[i * stride_b]);                                    \
    }                                                                                                    \
    CU_KERNEL_ARGS(binary_##name##_flat_kernel, const float *, const float *, float *, int64_t, int, int, int); \
    __global__ void binary_##name##_strided_kernel(const float *a, const float *b, float *out, int64_t n,  \
                                                   KernelBroadcast layout, int narrow) {                 \
        const int64_t first = ew_first_index(), step = ew_grid_step();                                   \
        for (int64_t i = first; i < n; i += step) {                                                      \
            int64_t oa, ob;                                                                              \
            ew_broadcast_offsets(layout, i, narrow, &oa, &ob);                                           \
            out[i] = binary_##name(a[oa], b[ob]);                                                        \
        }                                                                                                \
    }                                                                                                    \
    CU_KERNEL_ARGS(binary_##name##_strided_kernel, const float *, const float *, float *, int64_t,        \
                   KernelBroadcast, int);

BINARY_KERNELS(add, x + y)
BINARY_KERNELS(sub, x - y)
BINARY_KERNELS(mul, x * y)
BINARY_KERNELS(div, x / y)

// Drops size-1 dims and merges neighbours that are contiguous in both stride sets (the implicit
// output / destination order is row-major over `shape`, so merging keeps the element order).
// Returns the new ndim (at least 1: a single element becomes shape [1] with zero strides).
static int ew_merge_dims(int ndim, int64_t *shape, int64_t *s1, int64_t *s2) {
    int kept = 0;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] == 1) continue;
        if (kept > 0 && s1[kept - 1] == s1[d] * shape[d] && s2[kept - 1] == s2[d] * shape[d]) {
            shape[kept - 1] *= shape[d];
            s1[kept - 1] = s1[d];
            s2[kept - 1] = s2[d];
            continue;
        }
        shape[kept] = shape[d];
        s1[kept] = s1[d];
        s2[kept] = s2[d];
        kept++;
    }
    if (kept == 0) {
        shape[0] = 1;
        s1[0] = s2[0] = 0;
        kept = 1;
    }
    for (int d = kept; d < KERNEL_MAX_DIMS; d++) {
        shape[d] = 1;
        s1[d] = s2[d] = 0;
    }
    return kept;
}

CU_EXTERN_C void binary_f32_launch(BinaryOp op, const float *a, const float *b, float *out, KernelBroadcast layout,
                                   cudaStream_t stream) {
    if (layout.ndim < 1 || layout.ndim > KERNEL_MAX_DIMS) return;
    int64_t n = 1;
    for (int d = 0; d < layout.ndim; d++) n *= layout.shape[d];
    if (n <= 0) return;
    layout.ndim = ew_merge_dims(layout.ndim, layout.shape, layout.stride_a, layout.stride_b);
    const int64_t sa = layout.stride_a[0], sb = layout.stride_b[0];
    if (layout.ndim == 1 && (sa == 0 || sa == 1) && (sb == 0 || sb == 1)) {
        const int vec = ew_aligned(out, 16) && (sa == 0 || ew_aligned(a, 16)) && (sb == 0 || ew_aligned(b, 16));
        const unsigned int blocks = ew_blocks(vec ? (n + 3) / 4 : n);
        const int ia = (int)sa, ib = (int)sb;
        switch (op) {
        case BINARY_ADD: CU_LAUNCH(binary_add_flat_kernel, blocks, EW_THREADS, 0, stream, a, b, out, n, ia, ib, vec); break;
        case BINARY_SUB: CU_LAUNCH(binary_sub_flat_kernel, blocks, EW_THREADS, 0, stream, a, b, out, n, ia, ib, vec); break;
        case BINARY_MUL: CU_LAUNCH(binary_mul_flat_kernel, blocks, EW_THREADS, 0, stream, a, b, out, n, ia, ib, vec); break;
        case BINARY_DIV: CU_LAUNCH(binary_div_flat_kernel, blocks, EW_THREADS, 0, stream, a, b, out, n, ia, ib, vec); break;
        }
        return;
    }
    const unsigned int blocks = ew_blocks(n);
    const int narrow = n <= INT32_MAX;
    switch (op) {
    case BINARY_ADD: CU_LAUNCH(binary_add_strided_kernel, blocks, EW_THREADS, 0, stream, a, b, out, n, layout, narrow); break;
    case BINARY_SUB: CU_LAUNCH(binary_sub_strided_kernel, blocks, EW_THREADS, 0, stream, a, b, out, n, layout, narrow); break;
    case BINARY_MUL: CU_LAUNCH(binary_mul_strided_kernel, blocks, EW_THREADS, 0, stream, a, b, out, n, layout, narrow); break;
    case BINARY_DIV: CU_LAUNCH(binary_div_strided_kernel, blocks, EW_THREADS, 0, stream, a, b, out, n, layout, narrow); break;
    }
}

// ------------------------------------------------------------------------------------------------
// Fill: the value's bit pattern (4 or 2 bytes) stored n times; 16-byte (uint4) stores when aligned.
// ------------------------------------------------------------------------------------------------

__global__ void fill_u32_kernel(unsigned int *dst, int64_t n, unsigned int pattern, int vec) {
    const int64_t first = ew_first_index(), step = ew_grid_step(), n4 = vec ? n / 4 : 0;
    for (int64_t i = first; i < n4; i += step) ((uint4 *)dst)[i] = make_uint4(pattern, pattern, pattern, pattern);
    for (int64_t i = n4 * 4 + first; i < n; i += step) dst[i] = pattern;
}
CU_KERNEL_ARGS(fill_u32_kernel, unsigned int *, int64_t, unsigned int, int);

__global__ void fill_u16_kernel(unsigned short *dst, int64_t n, unsigned short pattern, int vec) {
    const int64_t first = ew_first_index(), step = ew_grid_step(), n8 = vec ? n / 8 : 0;
    const unsigned int pair = (unsigned int)pattern | ((unsigned int)pattern << 16);
    for (int64_t i = first; i < n8; i += step) ((uint4 *)dst)[i] = make_uint4(pair, pair, pair, pair);
    for (int64_t i = n8 * 8 + first; i < n; i += step) dst[i] = pattern;
}
CU_KERNEL_ARGS(fill_u16_kernel, unsigned short *, int64_t, unsigned short, int);

CU_EXTERN_C int fill_launch(void *dst, DType dtype, int64_t n, double value, cudaStream_t stream) {
    if (dtype != DTYPE_F32 && dtype != DTYPE_F16 && dtype != DTYPE_BF16) return -1;
    if (n <= 0) return 0;
    const int vec = ew_aligned(dst, 16);
    if (dtype == DTYPE_F32) {
        float f = (float)value;
        unsigned int pattern;
        memcpy(&pattern, &f, sizeof pattern);
        CU_LAUNCH(fill_u32_kernel, ew_blocks(vec ? (n + 3) / 4 : n), EW_THREADS, 0, stream, (unsigned int *)dst, n,
                  pattern, vec);
    } else {
        unsigned short pattern =
            dtype == DTYPE_F16 ? cu_float_to_half((float)value).bits : cu_float_to_bfloat16((float)value).bits;
        CU_LAUNCH(fill_u16_kernel, ew_blocks(vec ? (n + 7) / 8 : n), EW_THREADS, 0, stream, (unsigned short *)dst,
                  n, pattern, vec);
    }
    return 0;
}

// ------------------------------------------------------------------------------------------------
// Strided copy and conversion. Element kinds: 0 f32, 1 f16, 2 bf16 (a kernel argument, the same for
// every thread, so the branches on it do not diverge).
// ------------------------------------------------------------------------------------------------

enum { EW_KIND_F32, EW_KIND_F16, EW_KIND_BF16 };

static __device__ __forceinline__ float ew_load_as_float(const void *base, int kind, int64_t offset) {
    if (kind == EW_KIND_F32) return ((const float *)base)[offset];
    if (kind == EW_KIND_F16) return cu_half_to_float(((const cu_half *)base)[offset]);
    return cu_bfloat16_to_float(((const cu_bfloat16 *)base)[offset]);
}

static __device__ __forceinline__ void ew_store_float(void *base, int kind, int64_t offset, float value) {
    if (kind == EW_KIND_F32)
        ((float *)base)[offset] = value;
    else if (kind == EW_KIND_F16)
        ((cu_half *)base)[offset] = cu_float_to_half(value);
    else
        ((cu_bfloat16 *)base)[offset] = cu_float_to_bfloat16(value);
}

// Moves one element: the bits when the kinds agree, else through float.
static __device__ __forceinline__ void ew_move(void *dst, int dst_kind, int64_t dst_offset, const void *src,
                                               int src_kind, int64_t src_offset) {
    if (dst_kind == src_kind) {
        if (dst_kind == EW_KIND_F32)
            ((unsigned int *)dst)[dst_offset] = ((const unsigned int *)src)[src_offset];
        else
            ((unsigned short *)dst)[dst_offset] = ((const unsigned short *)src)[src_offset];
    } else {
        ew_store_float(dst, dst_kind, dst_offset, ew_load_as_float(src, src_kind, src_offset));
    }
}

__global__ void copy_strided_kernel(void *dst, int dst_kind, const void *src, int src_kind, int64_t n,
                                    KernelCopyLayout layout, int narrow) {
    const int64_t first = ew_first_index(), step = ew_grid_step();
    for (int64_t i = first; i < n; i += step) {
        int64_t od = 0, os = 0;
        if (narrow) {
            unsigned int rest = (unsigned int)i;
            EW_UNROLL
            for (int d = KERNEL_MAX_DIMS - 1; d >= 0; d--) {
                if (d < layout.ndim) {
                    unsigned int extent = (unsigned int)layout.shape[d], coordinate = rest % extent;
                    rest /= extent;
                    od += (int64_t)coordinate * layout.dst_stride[d];
                    os += (int64_t)coordinate * layout.src_stride[d];
                }
            }
        } else {
            int64_t rest = i;
            EW_UNROLL
            for (int d = KERNEL_MAX_DIMS - 1; d >= 0; d--) {
                if (d < layout.ndim) {
                    int64_t coordinate = rest % layout.shape[d];
                    rest /= layout.shape[d];
                    od += coordinate * layout.dst_stride[d];
                    os += coordinate * layout.src_stride[d];
                }
            }
        }
        ew_move(dst, dst_kind, od, src, src_kind, os);
    }
}
CU_KERNEL_ARGS(copy_strided_kernel, void *, int, const void *, int, int64_t, KernelCopyLayout, int);

// Four contiguous elements per thread: one 16-byte (f32) or 8-byte (f16/bf16) access on each side.
// Requires the pointers aligned to those sizes; the n % 4 tail goes through ew_move.
static __device__ __forceinline__ float4 ew_load4(const void *src, int kind, int64_t i) {
    if (kind == EW_KIND_F32) return ((const float4 *)src)[i];
    uint2 bits = ((const uint2 *)src)[i];
    unsigned short h[4] = {(unsigned short)(bits.x & 0xffffu), (unsigned short)(bits.x >> 16),
                           (unsigned short)(bits.y & 0xffffu), (unsigned short)(bits.y >> 16)};
    float f[4];
    for (int k = 0; k < 4; k++) {
        if (kind == EW_KIND_F16) {
            cu_half v;
            v.bits = h[k];
            f[k] = cu_half_to_float(v);
        } else {
            cu_bfloat16 v;
            v.bits = h[k];
            f[k] = cu_bfloat16_to_float(v);
        }
    }
    return make_float4(f[0], f[1], f[2], f[3]);
}

static __device__ __forceinline__ void ew_store4(void *dst, int kind, int64_t i, float4 v) {
    if (kind == EW_KIND_F32) {
        ((float4 *)dst)[i] = v;
        return;
    }
    float f[4] = {v.x, v.y, v.z, v.w};
    unsigned int h[4];
    for (int k = 0; k < 4; k++)
        h[k] = kind == EW_KIND_F16 ? cu_float_to_half(f[k]).bits : cu_float_to_bfloat16(f[k]).bits;
    ((uint2 *)dst)[i] = make_uint2(h[0] | (h[1] << 16), h[2] | (h[3] << 16));
}

__global__ void copy_contiguous4_kernel(void *dst, int dst_kind, const void *src, int src_kind, int64_t n) {
    const int64_t first = ew_first_index(), step = ew_grid_step(), n4 = n / 4;
    for (int64_t i = first; i < n4; i += step) {
        if (dst_kind == src_kind) {
            if (dst_kind == EW_KIND_F32)
                ((uint4 *)dst)[i] = ((const uint4 *)src)[i];
            else
                ((uint2 *)dst)[i] = ((const uint2 *)src)[i];
        } else {
            ew_store4(dst, dst_kind, i, ew_load4(src, src_kind, i));
        }
    }
    for (int64_t i = n4 * 4 + first; i < n; i += step) ew_move(dst, dst_kind, i, src, src_kind, i);
}
CU_KERNEL_ARGS(copy_contiguous4_kernel, void *, int, const void *, int, int64_t);

static int ew_kind(DType dtype) {
    return dtype == DTYPE_F32 ? EW_KIND_F32 : dtype == DTYPE_F16 ? EW_KIND_F16 : dtype == DTYPE_BF16 ? EW_KIND_BF16 : -1;
}

CU_EXTERN_C int copy_strided_launch(void *dst, DType dst_dtype, const void *src, DType src_dtype,
                                    KernelCopyLayout layout, cudaStream_t stream) {
    const int dst_kind = ew_kind(dst_dtype), src_kind = ew_kind(src_dtype);
    if (dst_kind < 0 || src_kind < 0 || layout.ndim < 1 || layout.ndim > KERNEL_MAX_DIMS) return -1;
    int64_t n = 1;
    for (int d = 0; d < layout.ndim; d++) n *= layout.shape[d];
    if (n <= 0) return 0;
    layout.ndim = ew_merge_dims(layout.ndim, layout.shape, layout.dst_stride, layout.src_stride);
    if (layout.ndim == 1 && layout.dst_stride[0] == 1 && layout.src_stride[0] == 1 &&
        ew_aligned(dst, dst_kind == EW_KIND_F32 ? 16 : 8) && ew_aligned(src, src_kind == EW_KIND_F32 ? 16 : 8)) {
        CU_LAUNCH(copy_contiguous4_kernel, ew_blocks((n + 3) / 4), EW_THREADS, 0, stream, dst, dst_kind, src,
                  src_kind, n);
        return 0;
    }
    const int narrow = n <= INT32_MAX;
    CU_LAUNCH(copy_strided_kernel, ew_blocks(n), EW_THREADS, 0, stream, dst, dst_kind, src, src_kind, n, layout,
              narrow);
    return 0;
}

CU_EXTERN_C int convert_launch(void *dst, DType dst_dtype, const void *src, DType src_dtype, int64_t n,
                               cudaStream_t stream) {
    KernelCopyLayout layout;
    memset(&layout, 0, sizeof layout);
    layout.ndim = 1;
    layout.shape[0] = n;
    layout.dst_stride[0] = layout.src_stride[0] = 1;
    return copy_strided_launch(dst, dst_dtype, src, src_dtype, layout, stream);
}
