// cuemu: an emulator of the CUDA thread model, so that kernels/*.cu run on the CPU in tests.
//
// A kernel source is compiled as C with this header forced in front of it:
//     cc -std=c11 -x c -include kernels/emu/cuemu.h -c kernels/norm.cu
// and the same file is compiled by nvcc for real GPUs (kernels/cuda_compat.h is the bridge; the
// kernel-source rules are written at its top). Everything a kernel can name — threadIdx, __shared__,
// __syncthreads(), __shfl_down_sync(), atomicAdd(), __expf() ... — is defined here with CUDA's own
// spelling, so kernel code reads exactly as CUDA. C has no overloading, so the CUDA functions that are
// overloaded on the value type (shuffles, warp reductions, atomics, min/max) are macros that pick the
// implementation with _Generic; the CUDA functions with default arguments (the `width` of shuffles,
// the mask of __syncwarp) are macros that supply the default.
//
// How it runs (kernels/emu/README.md has the full story): a launch runs its blocks one after another
// on the calling OS thread; each CUDA thread of a block is a fiber with its own stack. A fiber runs
// until it blocks (__syncthreads, a warp-level operation) or returns, then the next fiber in the
// thread order (CUEMU_THREAD_ORDER = forward | reverse | random:SEED) runs. __syncthreads() is a real
// barrier across the block's fibers; warp operations are barriers across the lanes named in their
// mask. Static __shared__ variables live in one linker section that is filled with 0xFF before every
// block, as is the dynamic shared buffer, so reads of shared memory nobody wrote show up as NaN / -1.
// Mistakes the emulator can see (divergent barriers, deadlocks, shuffles that read lanes which have
// exited, mismatched warp operations) end the program with one line naming the file:line of the
// sites involved; launch-configuration errors are returned like cudaGetLastError's.
#pragma once

#ifdef __CUDACC__
#error "kernels/emu/cuemu.h is the CPU emulator's header; nvcc builds use the CUDA headers"
#endif

#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "kernels/emu/cuemu_host.h"

// Kernel code can test for the emulator with #ifdef CUEMU (it should rarely need to: the portable
// test is #ifdef __CUDA_ARCH__, which is never defined here, so the plain fallbacks are compiled).
#define CUEMU 1

// ------------------------------------------------------------------------------------------------
// Index types and the built-in variables.
// ------------------------------------------------------------------------------------------------

// The emulator's globals, rewritten on every fiber switch (threadIdx) and every block (blockIdx).
// They are plain globals, not per-fiber storage: the scheduler stores the next fiber's index before
// switching to it, and every switch happens inside a call to an emulator function, so compiled kernel
// code reloads them after any call that can switch.
extern uint3 threadIdx;
extern uint3 blockIdx;
extern dim3 blockDim;
extern dim3 gridDim;
enum { warpSize = 32 };

// Same spelling as the CUDA runtime's opaque stream handle, so launcher signatures match both builds.
// The emulator runs every launch synchronously; the stream argument of CU_LAUNCH is evaluated and
// otherwise ignored.
typedef struct CUstream_st *cudaStream_t;

// ------------------------------------------------------------------------------------------------
// Declaration specifiers.
// ------------------------------------------------------------------------------------------------

#define __global__
#define __device__
#define __host__
#define __constant__
#define __noinline__ __attribute__((noinline))
// C99 inline semantics: write `static __device__ __forceinline__` for helpers (a non-static inline
// function has no out-of-line definition in C, so taking its address would not link).
#define __forceinline__ __attribute__((always_inline)) inline
#define __restrict__ restrict
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)
// Static shared memory: a static variable in the dedicated section "cuemu_shared", which the emulator
// fills with 0xFF before every block (through the linker's __start_/__stop_cuemu_shared symbols).
// Not `static _Thread_local`: thread-local storage gets no AddressSanitizer redzones, while gcc's
// -fsanitize-sections=cuemu_shared gives these variables redzones, so overflows of shared arrays are
// caught under SANITIZE=1. `used` keeps the compiler from proving that the emulator's calls (where
// other threads run) cannot touch a static whose address never escapes, and so from caching its value
// in a register across __syncthreads(). Consequence: write `__shared__ float tile[256];`, never
// `static __shared__`.
#define __shared__ static __attribute__((section("cuemu_shared"), used))

// The dynamic shared buffer of the running block (smem_bytes of the launch, 0xFF-poisoned).
extern void *cuemu_dynamic_shared_memory;

// ------------------------------------------------------------------------------------------------
// Portability macros (kernels/cuda_compat.h defines the nvcc side of each).
// ------------------------------------------------------------------------------------------------

#define CU_EXTERN_C

// dim3 with all three components set (C's `dim3 d = {4};` would leave y and z at 0).
#define DIM3(x, y, z) ((dim3){(unsigned int)(x), (unsigned int)(y), (unsigned int)(z)})

// Inside a kernel body: `CU_DYNAMIC_SHARED(float, smem);` gives `smem`, the dynamic shared buffer.
#define CU_DYNAMIC_SHARED(type, name) type *const name = (type *)cuemu_dynamic_shared_memory

// CU_KERNEL_ARGS(kernel, T1, ..., Tn); — one line after each kernel definition, listing the parameter
// types (up to 16; a type containing a comma, an array or a function-pointer type needs a typedef).
// Defines `kernel_args` (a struct with one field per parameter), `kernel_args kernel_pack(T1, ..., Tn)`
// and `void kernel_thunk(void *)`, which unpacks the struct and calls the kernel.
#define CU_KERNEL_ARGS(...) CUEMU_CAT(CUEMU_KERNEL_ARGS_, CUEMU_ONE_OR_MORE(__VA_ARGS__))(__VA_ARGS__)

// CU_LAUNCH(kernel, grid, block, smem_bytes, stream, args...); — grid and block are dim3 values or
// integers. The arguments go through kernel_pack(), so their number and types are checked like a
// call. Runs the whole grid before returning. Launch-configuration errors (bad dimensions, more than
// 1024 threads, too much dynamic shared memory) do not run the kernel: they are recorded as the
// calling OS thread's last error, read with cuemu_get_last_error() as cudaGetLastError() would.
#define CU_LAUNCH(kernel, grid, block, smem_bytes, stream, ...)                                     \
    do {                                                                                           \
        kernel##_args cuemu_launch_args_ = kernel##_pack(__VA_ARGS__);                             \
        (void)(stream);                                                                            \
        cuemu_launch(#kernel, (const void *)(kernel), kernel##_thunk, &cuemu_launch_args_,          \
                     CUEMU_TO_DIM3(grid), CUEMU_TO_DIM3(block), (size_t)(smem_bytes), __FILE__,     \
                     __LINE__);                                                                    \
    } while (0)

// ------------------------------------------------------------------------------------------------
// fp16 / bf16 storage types (kernels/cuda_compat.h has the nvcc twins, same layout and rounding).
// ------------------------------------------------------------------------------------------------

// Distinct structs so that a half buffer cannot be passed where a bfloat16 one is expected.
typedef struct cu_half {
    unsigned short bits;
} cu_half;
typedef struct cu_bfloat16 {
    unsigned short bits;
} cu_bfloat16;

static inline uint32_t cuemu_float_bits(float value) {
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    return bits;
}
static inline float cuemu_bits_float(uint32_t bits) {
    float value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

// IEEE binary16, round to nearest even, overflow to infinity, NaN -> sign | 0x7fff (as cuda_fp16's
// host __float2half_rn).
static inline cu_half cu_float_to_half(float value) {
    uint32_t x = cuemu_float_bits(value);
    uint32_t sign = (x >> 16) & 0x8000u, a = x & 0x7fffffffu, h;
    if (a > 0x7f800000u) {
        h = 0x7fffu;
    } else if (a >= 0x477ff000u) {  // >= 65520 rounds past the largest half (65504)
        h = 0x7c00u;
    } else if (a >= 0x38800000u) {  // normal half: rebias the exponent (127 -> 15), round 13 bits
        uint32_t rebiased = a - 0x38000000u, rem = rebiased & 0x1fffu;
        h = rebiased >> 13;
        if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;
    } else if (a < 0x33000000u) {  // below 2^-25: rounds to zero
        h = 0;
    } else {  // subnormal half: count units of 2^-24, value = m * 2^(e - 150)
        uint32_t e = a >> 23, m = (a & 0x7fffffu) | 0x800000u, shift = 126 - e;
        uint32_t rem = m & ((1u << shift) - 1u), halfway = 1u << (shift - 1u);
        h = m >> shift;
        if (rem > halfway || (rem == halfway && (h & 1u))) h++;
    }
    cu_half result = {(unsigned short)(sign | h)};
    return result;
}

static inline float cu_half_to_float(cu_half value) {
    uint32_t h = value.bits, sign = (h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu, x;
    if (e == 0x1fu) {
        x = sign | 0x7f800000u | (m << 13);
    } else if (e != 0) {
        x = sign | ((e + 112u) << 23) | (m << 13);
    } else if (m == 0) {
        x = sign;
    } else {  // subnormal: normalise
        e = 113;
        while (!(m & 0x400u)) {
            m <<= 1;
            e--;
        }
        x = sign | (e << 23) | ((m & 0x3ffu) << 13);
    }
    return cuemu_bits_float(x);
}

// bfloat16 is the top half of a binary32; round to nearest even; NaN stays a (quiet) NaN.
static inline cu_bfloat16 cu_float_to_bfloat16(float value) {
    uint32_t x = cuemu_float_bits(value);
    cu_bfloat16 result;
    if ((x & 0x7fffffffu) > 0x7f800000u)
        result.bits = (unsigned short)((x >> 16) | 0x40u);
    else
        result.bits = (unsigned short)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
    return result;
}

static inline float cu_bfloat16_to_float(cu_bfloat16 value) {
    return cuemu_bits_float((uint32_t)value.bits << 16);
}

// ------------------------------------------------------------------------------------------------
// Vector types (CUDA's built-ins, with their alignment) and their make_ functions.
// ------------------------------------------------------------------------------------------------

typedef struct __attribute__((aligned(8))) float2 { float x, y; } float2;
typedef struct __attribute__((aligned(16))) float4 { float x, y, z, w; } float4;
typedef struct __attribute__((aligned(8))) int2 { int x, y; } int2;
typedef struct __attribute__((aligned(16))) int4 { int x, y, z, w; } int4;
typedef struct __attribute__((aligned(8))) uint2 { unsigned int x, y; } uint2;
typedef struct __attribute__((aligned(16))) uint4 { unsigned int x, y, z, w; } uint4;
typedef struct __attribute__((aligned(16))) double2 { double x, y; } double2;

static inline float2 make_float2(float x, float y) { float2 v = {x, y}; return v; }
static inline float4 make_float4(float x, float y, float z, float w) { float4 v = {x, y, z, w}; return v; }
static inline int2 make_int2(int x, int y) { int2 v = {x, y}; return v; }
static inline int4 make_int4(int x, int y, int z, int w) { int4 v = {x, y, z, w}; return v; }
static inline uint2 make_uint2(unsigned int x, unsigned int y) { uint2 v = {x, y}; return v; }
static inline uint4 make_uint4(unsigned int x, unsigned int y, unsigned int z, unsigned int w) {
    uint4 v = {x, y, z, w};
    return v;
}
static inline double2 make_double2(double x, double y) { double2 v = {x, y}; return v; }
static inline dim3 cuemu_make_dim3(unsigned int x, unsigned int y, unsigned int z) {
    dim3 v = {x, y, z};
    return v;
}

// ------------------------------------------------------------------------------------------------
// Barriers, warp-level operations and votes (implemented in kernels/emu/scheduler.c).
// ------------------------------------------------------------------------------------------------

// Kinds of block barrier; all threads of a block must meet at the same kind and call site.
enum { CUEMU_BARRIER_SYNC, CUEMU_BARRIER_COUNT, CUEMU_BARRIER_AND, CUEMU_BARRIER_OR };
int cuemu_block_barrier(int kind, int predicate, const char *file, int line);

#define __syncthreads() ((void)cuemu_block_barrier(CUEMU_BARRIER_SYNC, 0, __FILE__, __LINE__))
#define __syncthreads_count(predicate) \
    cuemu_block_barrier(CUEMU_BARRIER_COUNT, (predicate) ? 1 : 0, __FILE__, __LINE__)
#define __syncthreads_and(predicate) \
    cuemu_block_barrier(CUEMU_BARRIER_AND, (predicate) ? 1 : 0, __FILE__, __LINE__)
#define __syncthreads_or(predicate) \
    cuemu_block_barrier(CUEMU_BARRIER_OR, (predicate) ? 1 : 0, __FILE__, __LINE__)

// Kinds of warp operation. All lanes named in a mask must call the same kind with the same mask.
typedef enum cuemu_warp_kind {
    CUEMU_WARP_SYNC,
    CUEMU_WARP_SHFL_IDX,
    CUEMU_WARP_SHFL_UP,
    CUEMU_WARP_SHFL_DOWN,
    CUEMU_WARP_SHFL_XOR,
    CUEMU_WARP_BALLOT,
    CUEMU_WARP_ANY,
    CUEMU_WARP_ALL,
    CUEMU_WARP_REDUCE_ADD,  // __reduce_*_sync (sm_80+): add/min/max on int or unsigned
    CUEMU_WARP_REDUCE_MIN,
    CUEMU_WARP_REDUCE_MAX,
    CUEMU_WARP_REDUCE_AND,
    CUEMU_WARP_REDUCE_OR,
    CUEMU_WARP_REDUCE_XOR,
    CUEMU_WARP_KIND_COUNT
} cuemu_warp_kind;

// Value classes for warp reductions and shuffles (how `value` bits are interpreted).
enum { CUEMU_VALUE_U32, CUEMU_VALUE_I32, CUEMU_VALUE_U64, CUEMU_VALUE_I64, CUEMU_VALUE_F32, CUEMU_VALUE_F64 };

// The one entry point of every warp operation: `value` holds the caller's bits (32-bit values in the
// low half), `argument` the source lane / delta / lane mask of a shuffle, `width` the shuffle width.
// Returns the result bits (a shuffled value, a ballot, an any/all flag, a reduction).
uint64_t cuemu_warp_op(cuemu_warp_kind kind, unsigned int mask, int value_class, uint64_t value,
                       int argument, int width, const char *file, int line);
unsigned int cuemu_activemask(const char *file, int line);

#define __syncwarp(...) \
    ((void)cuemu_warp_op(CUEMU_WARP_SYNC, CUEMU_MASK_OR_FULL(__VA_ARGS__), 0, 0, 0, 32, __FILE__, __LINE__))
// `__syncwarp()` or `__syncwarp(mask)`: the last element of {0xffffffff, mask} (ISO C, no __VA_OPT__).
#define CUEMU_MASK_OR_FULL(...)                                                                   \
    ((unsigned int[]){0xffffffffu, __VA_ARGS__}[sizeof((unsigned int[]){0xffffffffu, __VA_ARGS__}) / \
                                                    sizeof(unsigned int) -                         \
                                                1])

#define __activemask() cuemu_activemask(__FILE__, __LINE__)
#define __ballot_sync(mask, predicate) \
    ((unsigned int)cuemu_warp_op(CUEMU_WARP_BALLOT, (mask), 0, (predicate) ? 1u : 0u, 0, 32, __FILE__, __LINE__))
#define __any_sync(mask, predicate) \
    ((int)cuemu_warp_op(CUEMU_WARP_ANY, (mask), 0, (predicate) ? 1u : 0u, 0, 32, __FILE__, __LINE__))
#define __all_sync(mask, predicate) \
    ((int)cuemu_warp_op(CUEMU_WARP_ALL, (mask), 0, (predicate) ? 1u : 0u, 0, 32, __FILE__, __LINE__))

// Shuffles: __shfl_sync(mask, var, srcLane[, width]), __shfl_up_sync(mask, var, delta[, width]),
// __shfl_down_sync(mask, var, delta[, width]), __shfl_xor_sync(mask, var, laneMask[, width]) for
// int, unsigned, long, unsigned long, long long, unsigned long long, float and double (narrower
// integers are promoted to int, as C++ overload resolution does). Reading a lane that is not in the
// mask gives all-ones bits (NaN / -1), since CUDA leaves that value undefined.
#define __shfl_sync(...) CUEMU_SHFL_PICK(CUEMU_WARP_SHFL_IDX, __VA_ARGS__, warpSize, 0)
#define __shfl_up_sync(...) CUEMU_SHFL_PICK(CUEMU_WARP_SHFL_UP, __VA_ARGS__, warpSize, 0)
#define __shfl_down_sync(...) CUEMU_SHFL_PICK(CUEMU_WARP_SHFL_DOWN, __VA_ARGS__, warpSize, 0)
#define __shfl_xor_sync(...) CUEMU_SHFL_PICK(CUEMU_WARP_SHFL_XOR, __VA_ARGS__, warpSize, 0)
#define CUEMU_SHFL_PICK(kind, mask, var, lane, width, ...)                                        \
    _Generic((var),                                                                               \
        _Bool: cuemu_shfl_i32, char: cuemu_shfl_i32, signed char: cuemu_shfl_i32,                 \
        unsigned char: cuemu_shfl_i32, short: cuemu_shfl_i32, unsigned short: cuemu_shfl_i32,     \
        int: cuemu_shfl_i32, unsigned int: cuemu_shfl_u32, long: cuemu_shfl_l,                    \
        unsigned long: cuemu_shfl_ul, long long: cuemu_shfl_ll, unsigned long long: cuemu_shfl_ull, \
        float: cuemu_shfl_f32, double: cuemu_shfl_f64,                                            \
        default: cuemu_shfl_value_type_not_supported)((kind), (mask), (var), (lane), (width), __FILE__, __LINE__)
void cuemu_shfl_value_type_not_supported(void);

#define CUEMU_DEFINE_SHFL(suffix, type, bits_type, value_class)                                  \
    static inline type cuemu_shfl_##suffix(cuemu_warp_kind kind, unsigned int mask, type value,    \
                                           int lane, int width, const char *file, int line) {      \
        bits_type bits;                                                                           \
        memcpy(&bits, &value, sizeof bits);                                                       \
        bits = (bits_type)cuemu_warp_op(kind, mask, value_class, (uint64_t)bits, lane, width, file, line); \
        memcpy(&value, &bits, sizeof value);                                                      \
        return value;                                                                             \
    }
CUEMU_DEFINE_SHFL(i32, int, uint32_t, CUEMU_VALUE_I32)
CUEMU_DEFINE_SHFL(u32, unsigned int, uint32_t, CUEMU_VALUE_U32)
CUEMU_DEFINE_SHFL(l, long, uint64_t, CUEMU_VALUE_I64)
CUEMU_DEFINE_SHFL(ul, unsigned long, uint64_t, CUEMU_VALUE_U64)
CUEMU_DEFINE_SHFL(ll, long long, uint64_t, CUEMU_VALUE_I64)
CUEMU_DEFINE_SHFL(ull, unsigned long long, uint64_t, CUEMU_VALUE_U64)
CUEMU_DEFINE_SHFL(f32, float, uint32_t, CUEMU_VALUE_F32)
CUEMU_DEFINE_SHFL(f64, double, uint64_t, CUEMU_VALUE_F64)

// Warp reductions (sm_80+): __reduce_add_sync / __reduce_min_sync / __reduce_max_sync on int or
// unsigned; __reduce_and_sync / __reduce_or_sync / __reduce_xor_sync on unsigned.
#define CUEMU_REDUCE_INT(kind, mask, value)                                                       \
    _Generic((value), int: cuemu_reduce_i32, unsigned int: cuemu_reduce_u32,                      \
             default: cuemu_reduce_value_type_not_supported)((kind), (mask), (value), __FILE__, __LINE__)
void cuemu_reduce_value_type_not_supported(void);
static inline int cuemu_reduce_i32(cuemu_warp_kind kind, unsigned int mask, int value, const char *file, int line) {
    return (int)(uint32_t)cuemu_warp_op(kind, mask, CUEMU_VALUE_I32, (uint32_t)value, 0, 32, file, line);
}
static inline unsigned int cuemu_reduce_u32(cuemu_warp_kind kind, unsigned int mask, unsigned int value,
                                            const char *file, int line) {
    return (unsigned int)cuemu_warp_op(kind, mask, CUEMU_VALUE_U32, value, 0, 32, file, line);
}
#define __reduce_add_sync(mask, value) CUEMU_REDUCE_INT(CUEMU_WARP_REDUCE_ADD, mask, value)
#define __reduce_min_sync(mask, value) CUEMU_REDUCE_INT(CUEMU_WARP_REDUCE_MIN, mask, value)
#define __reduce_max_sync(mask, value) CUEMU_REDUCE_INT(CUEMU_WARP_REDUCE_MAX, mask, value)
#define __reduce_and_sync(mask, value) cuemu_reduce_u32(CUEMU_WARP_REDUCE_AND, (mask), (value), __FILE__, __LINE__)
#define __reduce_or_sync(mask, value) cuemu_reduce_u32(CUEMU_WARP_REDUCE_OR, (mask), (value), __FILE__, __LINE__)
#define __reduce_xor_sync(mask, value) cuemu_reduce_u32(CUEMU_WARP_REDUCE_XOR, (mask), (value), __FILE__, __LINE__)

// Memory fences order nothing here: fibers switch only inside emulator calls.
#define __threadfence() ((void)0)
#define __threadfence_block() ((void)0)
#define __threadfence_system() ((void)0)
#define __ldg(pointer) (*(pointer))
#define __nanosleep(ns) ((void)(ns))

// __trap(): ends the program with one line naming the site (a device-side abort).
_Noreturn void cuemu_trap(const char *file, int line);
#define __trap() cuemu_trap(__FILE__, __LINE__)

// ------------------------------------------------------------------------------------------------
// Atomics. Fibers of one launch share one OS thread and switch only inside emulator calls, and
// launches are serialised, so a plain read-modify-write is atomic; under AddressSanitizer it is
// also bounds-checked. Only the overloads CUDA has (for sm_80/sm_90) are accepted, so code that
// compiles here also compiles under nvcc:
//   atomicAdd: int, unsigned, unsigned long long, float, double      atomicSub: int, unsigned
//   atomicMax / atomicMin: int, unsigned, long long, unsigned long long
//   atomicExch: int, unsigned, unsigned long long, float             atomicCAS: int, unsigned, unsigned long long
//   atomicAnd / atomicOr / atomicXor: int, unsigned, unsigned long long
//   atomicInc / atomicDec: unsigned (wrapping at the given limit, as CUDA defines them)
// All return the old value.
// ------------------------------------------------------------------------------------------------

#define CUEMU_DEFINE_ATOMIC(name, suffix, type, expression)              \
    static inline type cuemu_##name##_##suffix(type *address, type value) { \
        type old = *address;                                             \
        *address = (expression);                                         \
        return old;                                                      \
    }
CUEMU_DEFINE_ATOMIC(add, i32, int, (int)((unsigned int)old + (unsigned int)value))  // wraps, as hardware
CUEMU_DEFINE_ATOMIC(add, u32, unsigned int, old + value)
CUEMU_DEFINE_ATOMIC(add, u64, unsigned long long, old + value)
CUEMU_DEFINE_ATOMIC(add, f32, float, old + value)
CUEMU_DEFINE_ATOMIC(add, f64, double, old + value)
CUEMU_DEFINE_ATOMIC(sub, i32, int, (int)((unsigned int)old - (unsigned int)value))
CUEMU_DEFINE_ATOMIC(sub, u32, unsigned int, old - value)
CUEMU_DEFINE_ATOMIC(max, i32, int, old > value ? old : value)
CUEMU_DEFINE_ATOMIC(max, u32, unsigned int, old > value ? old : value)
CUEMU_DEFINE_ATOMIC(max, i64, long long, old > value ? old : value)
CUEMU_DEFINE_ATOMIC(max, u64, unsigned long long, old > value ? old : value)
CUEMU_DEFINE_ATOMIC(min, i32, int, old < value ? old : value)
CUEMU_DEFINE_ATOMIC(min, u32, unsigned int, old < value ? old : value)
CUEMU_DEFINE_ATOMIC(min, i64, long long, old < value ? old : value)
CUEMU_DEFINE_ATOMIC(min, u64, unsigned long long, old < value ? old : value)
CUEMU_DEFINE_ATOMIC(exch, i32, int, value)
CUEMU_DEFINE_ATOMIC(exch, u32, unsigned int, value)
CUEMU_DEFINE_ATOMIC(exch, u64, unsigned long long, value)
CUEMU_DEFINE_ATOMIC(exch, f32, float, value)
CUEMU_DEFINE_ATOMIC(band, i32, int, old & value)
CUEMU_DEFINE_ATOMIC(band, u32, unsigned int, old & value)
CUEMU_DEFINE_ATOMIC(band, u64, unsigned long long, old & value)
CUEMU_DEFINE_ATOMIC(bor, i32, int, old | value)
CUEMU_DEFINE_ATOMIC(bor, u32, unsigned int, old | value)
CUEMU_DEFINE_ATOMIC(bor, u64, unsigned long long, old | value)
CUEMU_DEFINE_ATOMIC(bxor, i32, int, old ^ value)
CUEMU_DEFINE_ATOMIC(bxor, u32, unsigned int, old ^ value)
CUEMU_DEFINE_ATOMIC(bxor, u64, unsigned long long, old ^ value)
CUEMU_DEFINE_ATOMIC(inc, u32, unsigned int, old >= value ? 0u : old + 1u)
CUEMU_DEFINE_ATOMIC(dec, u32, unsigned int, (old == 0u || old > value) ? value : old - 1u)

#define CUEMU_DEFINE_CAS(suffix, type)                                                    \
    static inline type cuemu_cas_##suffix(type *address, type compare, type value) {      \
        type old = *address;                                                              \
        if (old == compare) *address = value;                                             \
        return old;                                                                       \
    }
CUEMU_DEFINE_CAS(i32, int)
CUEMU_DEFINE_CAS(u32, unsigned int)
CUEMU_DEFINE_CAS(u64, unsigned long long)

void cuemu_atomic_type_not_supported(void);
#define atomicAdd(address, value)                                                               \
    _Generic((address), int *: cuemu_add_i32, unsigned int *: cuemu_add_u32,                     \
             unsigned long long *: cuemu_add_u64, float *: cuemu_add_f32, double *: cuemu_add_f64, \
             default: cuemu_atomic_type_not_supported)((address), (value))
#define atomicSub(address, value)                                         \
    _Generic((address), int *: cuemu_sub_i32, unsigned int *: cuemu_sub_u32, \
             default: cuemu_atomic_type_not_supported)((address), (value))
#define atomicMax(address, value)                                                              \
    _Generic((address), int *: cuemu_max_i32, unsigned int *: cuemu_max_u32,                    \
             long long *: cuemu_max_i64, unsigned long long *: cuemu_max_u64,                   \
             default: cuemu_atomic_type_not_supported)((address), (value))
#define atomicMin(address, value)                                                              \
    _Generic((address), int *: cuemu_min_i32, unsigned int *: cuemu_min_u32,                    \
             long long *: cuemu_min_i64, unsigned long long *: cuemu_min_u64,                   \
             default: cuemu_atomic_type_not_supported)((address), (value))
#define atomicExch(address, value)                                                              \
    _Generic((address), int *: cuemu_exch_i32, unsigned int *: cuemu_exch_u32,                   \
             unsigned long long *: cuemu_exch_u64, float *: cuemu_exch_f32,                       \
             default: cuemu_atomic_type_not_supported)((address), (value))
#define atomicAnd(address, value)                                                               \
    _Generic((address), int *: cuemu_band_i32, unsigned int *: cuemu_band_u32,                     \
             unsigned long long *: cuemu_band_u64, default: cuemu_atomic_type_not_supported)((address), (value))
#define atomicOr(address, value)                                                                \
    _Generic((address), int *: cuemu_bor_i32, unsigned int *: cuemu_bor_u32,                       \
             unsigned long long *: cuemu_bor_u64, default: cuemu_atomic_type_not_supported)((address), (value))
#define atomicXor(address, value)                                                               \
    _Generic((address), int *: cuemu_bxor_i32, unsigned int *: cuemu_bxor_u32,                     \
             unsigned long long *: cuemu_bxor_u64, default: cuemu_atomic_type_not_supported)((address), (value))
#define atomicInc(address, value) cuemu_inc_u32((address), (value))
#define atomicDec(address, value) cuemu_dec_u32((address), (value))
#define atomicCAS(address, compare, value)                                                      \
    _Generic((address), int *: cuemu_cas_i32, unsigned int *: cuemu_cas_u32,                     \
             unsigned long long *: cuemu_cas_u64,                                               \
             default: cuemu_atomic_type_not_supported)((address), (compare), (value))

// ------------------------------------------------------------------------------------------------
// Math intrinsics. nvcc's fast-math intrinsics (__expf, __fdividef ...) are approximations on the GPU;
// here they are the exact libm functions, so compare GPU and emulator results with tolerances.
// Macros rather than functions because glibc's math.h already declares names like __expf.
// ------------------------------------------------------------------------------------------------

#define __expf(x) expf(x)
#define __exp10f(x) powf(10.0f, (x))
#define __logf(x) logf(x)
#define __log2f(x) log2f(x)
#define __log10f(x) log10f(x)
#define __sinf(x) sinf(x)
#define __cosf(x) cosf(x)
#define __tanf(x) tanf(x)
#define __powf(x, y) powf((x), (y))
#define __sincosf(x, sine, cosine) cuemu_sincosf((x), (sine), (cosine))
#define sincosf(x, sine, cosine) cuemu_sincosf((x), (sine), (cosine))
#define __fdividef(x, y) cuemu_fdiv((x), (y))
#define __fdiv_rn(x, y) cuemu_fdiv((x), (y))
#define __frcp_rn(x) cuemu_fdiv(1.0f, (x))
#define __fsqrt_rn(x) sqrtf(x)
#define __frsqrt_rn(x) cuemu_rsqrtf(x)
#define rsqrtf(x) cuemu_rsqrtf(x)
#define rsqrt(x) cuemu_rsqrt(x)
#define rcbrtf(x) cuemu_fdiv(1.0f, cbrtf(x))
#define __fadd_rn(x, y) cuemu_fadd((x), (y))
#define __fsub_rn(x, y) cuemu_fadd((x), -(y))
#define __fmul_rn(x, y) cuemu_fmul((x), (y))
#define __fmaf_rn(x, y, z) fmaf((x), (y), (z))
#define __dadd_rn(x, y) ((double)(x) + (double)(y))
#define __dmul_rn(x, y) ((double)(x) * (double)(y))
#define __fma_rn(x, y, z) fma((x), (y), (z))
#define __saturatef(x) cuemu_saturatef(x)
#define __float2int_rn(x) cuemu_float_to_int((x), 0)
#define __float2int_rz(x) cuemu_float_to_int((x), 1)
#define __float2int_rd(x) cuemu_float_to_int((x), 2)
#define __float2int_ru(x) cuemu_float_to_int((x), 3)
#define __float2uint_rn(x) cuemu_float_to_uint((x), 0)
#define __float2uint_rz(x) cuemu_float_to_uint((x), 1)
#define __float2ll_rn(x) cuemu_float_to_ll(x)
#define __int2float_rn(x) ((float)(int)(x))
#define __uint2float_rn(x) ((float)(unsigned int)(x))
#define __float_as_int(x) ((int)cuemu_float_bits(x))
#define __float_as_uint(x) cuemu_float_bits(x)
#define __int_as_float(x) cuemu_bits_float((uint32_t)(x))
#define __uint_as_float(x) cuemu_bits_float((uint32_t)(x))
#define __double_as_longlong(x) cuemu_double_as_longlong(x)
#define __longlong_as_double(x) cuemu_longlong_as_double(x)
#define __popc(x) __builtin_popcount((unsigned int)(x))
#define __popcll(x) __builtin_popcountll((unsigned long long)(x))
#define __clz(x) cuemu_clz32((unsigned int)(x))
#define __clzll(x) cuemu_clz64((unsigned long long)(x))
#define __ffs(x) __builtin_ffs((int)(x))
#define __ffsll(x) __builtin_ffsll((long long)(x))
#define __brev(x) cuemu_brev32((unsigned int)(x))
#define __mul24(x, y) ((int)(x) * (int)(y))
#define __umul24(x, y) ((unsigned int)(x) * (unsigned int)(y))
#define __mulhi(x, y) ((int)(((long long)(int)(x) * (long long)(int)(y)) >> 32))
#define __umulhi(x, y) ((unsigned int)(((unsigned long long)(unsigned int)(x) * (unsigned int)(y)) >> 32))

static inline float cuemu_fdiv(float x, float y) { return x / y; }
static inline float cuemu_fadd(float x, float y) { return x + y; }
static inline float cuemu_fmul(float x, float y) { return x * y; }
static inline float cuemu_rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline double cuemu_rsqrt(double x) { return 1.0 / sqrt(x); }
static inline void cuemu_sincosf(float x, float *sine, float *cosine) {
    *sine = sinf(x);
    *cosine = cosf(x);
}
static inline float cuemu_saturatef(float x) { return x > 0.0f ? (x < 1.0f ? x : 1.0f) : 0.0f; }  // NaN -> 0
// Float-to-integer conversions saturate and map NaN to 0, as the GPU's cvt instructions do (a C cast
// of an out-of-range float would be undefined behaviour). mode: 0 nearest even, 1 zero, 2 down, 3 up.
static inline double cuemu_round_mode(float x, int mode) {
    switch (mode) {
    case 1: return trunc(x);
    case 2: return floor(x);
    case 3: return ceil(x);
    default: return nearbyint(x);
    }
}
static inline int cuemu_float_to_int(float x, int mode) {
    if (isnan(x)) return 0;
    double r = cuemu_round_mode(x, mode);
    return r >= 2147483647.0 ? INT_MAX : r <= -2147483648.0 ? INT_MIN : (int)r;
}
static inline unsigned int cuemu_float_to_uint(float x, int mode) {
    if (isnan(x)) return 0;
    double r = cuemu_round_mode(x, mode);
    return r >= 4294967295.0 ? UINT_MAX : r <= 0.0 ? 0u : (unsigned int)r;
}
static inline long long cuemu_float_to_ll(float x) {
    if (isnan(x)) return 0;
    double r = nearbyint(x);
    return r >= 9223372036854775807.0 ? LLONG_MAX : r <= -9223372036854775808.0 ? LLONG_MIN : (long long)r;
}
static inline long long cuemu_double_as_longlong(double x) {
    long long bits;
    memcpy(&bits, &x, sizeof bits);
    return bits;
}
static inline double cuemu_longlong_as_double(long long bits) {
    double x;
    memcpy(&x, &bits, sizeof x);
    return x;
}
static inline int cuemu_clz32(unsigned int x) { return x ? __builtin_clz(x) : 32; }
static inline int cuemu_clz64(unsigned long long x) { return x ? __builtin_clzll(x) : 64; }
static inline unsigned int cuemu_brev32(unsigned int x) {
    x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
    x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
    x = ((x >> 4) & 0x0f0f0f0fu) | ((x & 0x0f0f0f0fu) << 4);
    x = ((x >> 8) & 0x00ff00ffu) | ((x & 0x00ff00ffu) << 8);
    return (x >> 16) | (x << 16);
}

// CUDA's min/max are overloaded device functions; here _Generic on the type of a + b picks the
// version C++'s usual arithmetic conversions would (float/double go through fminf/fmin semantics).
#define CUEMU_MINMAX(op, a, b)                                                                     \
    _Generic((a) + (b), int: cuemu_##op##_int, unsigned int: cuemu_##op##_uint,                     \
             long: cuemu_##op##_long, unsigned long: cuemu_##op##_ulong,                           \
             long long: cuemu_##op##_llong, unsigned long long: cuemu_##op##_ullong,               \
             float: f##op##f, double: f##op)((a), (b))
#define min(a, b) CUEMU_MINMAX(min, a, b)
#define max(a, b) CUEMU_MINMAX(max, a, b)
#define CUEMU_DEFINE_MINMAX(suffix, type)                                                    \
    static inline type cuemu_min_##suffix(type a, type b) { return a < b ? a : b; }          \
    static inline type cuemu_max_##suffix(type a, type b) { return a > b ? a : b; }
CUEMU_DEFINE_MINMAX(int, int)
CUEMU_DEFINE_MINMAX(uint, unsigned int)
CUEMU_DEFINE_MINMAX(long, long)
CUEMU_DEFINE_MINMAX(ulong, unsigned long)
CUEMU_DEFINE_MINMAX(llong, long long)
CUEMU_DEFINE_MINMAX(ullong, unsigned long long)

// ------------------------------------------------------------------------------------------------
// Macro plumbing (not for kernel authors).
// ------------------------------------------------------------------------------------------------

#define CUEMU_CAT(a, b) CUEMU_CAT_(a, b)
#define CUEMU_CAT_(a, b) a##b

// grid/block arguments: a dim3 passes through; an integer n becomes (n, 1, 1). Integers that do not
// fit 32 bits saturate, so the launch check rejects them instead of silently truncating.
#define CUEMU_TO_DIM3(v) _Generic((v), dim3: cuemu_dim3_identity, default: cuemu_dim3_from_integer)(v)
static inline dim3 cuemu_dim3_identity(dim3 v) { return v; }
static inline dim3 cuemu_dim3_from_integer(long long n) {
    return cuemu_make_dim3(n < 0 || n > (long long)UINT_MAX ? UINT_MAX : (unsigned int)n, 1u, 1u);
}

// CUEMU_ONE_OR_MORE(name) -> ONE, CUEMU_ONE_OR_MORE(name, T1, ...) -> MORE (up to 16 types).
#define CUEMU_ONE_OR_MORE(...)                                                                      \
    CUEMU_ARG_18(__VA_ARGS__, MORE, MORE, MORE, MORE, MORE, MORE, MORE, MORE, MORE, MORE, MORE, MORE, \
                 MORE, MORE, MORE, MORE, ONE, CUEMU_TOO_MANY_KERNEL_ARGUMENTS)
#define CUEMU_COUNT(...) \
    CUEMU_ARG_18(__VA_ARGS__, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0)
#define CUEMU_ARG_18(_1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11, _12, _13, _14, _15, _16, _17, n, ...) n

#define CUEMU_KERNEL_ARGS_ONE(name)                                                              \
    typedef struct name##_args {                                                                 \
        char unused;                                                                             \
    } name##_args;                                                                               \
    static inline name##_args name##_pack(void) {                                                \
        name##_args packed = {0};                                                                \
        return packed;                                                                           \
    }                                                                                            \
    __attribute__((unused)) static void name##_thunk(void *cuemu_args) {                         \
        (void)cuemu_args;                                                                        \
        name();                                                                                  \
    }                                                                                            \
    struct name##_cu_kernel_args_tag

#define CUEMU_KERNEL_ARGS_MORE(name, ...)                                                        \
    typedef struct name##_args {                                                                 \
        CUEMU_FOR_EACH(CUEMU_KA_FIELD, __VA_ARGS__)                                              \
    } name##_args;                                                                               \
    static inline name##_args name##_pack(CUEMU_FOR_EACH_COMMA(CUEMU_KA_PARAM, __VA_ARGS__)) {  \
        name##_args packed;                                                                      \
        CUEMU_FOR_EACH(CUEMU_KA_ASSIGN, __VA_ARGS__)                                             \
        return packed;                                                                           \
    }                                                                                            \
    __attribute__((unused)) static void name##_thunk(void *cuemu_args) {                         \
        const name##_args *cuemu_unpacked = (const name##_args *)cuemu_args;                     \
        name(CUEMU_FOR_EACH_COMMA(CUEMU_KA_ARG, __VA_ARGS__));                                   \
    }                                                                                            \
    struct name##_cu_kernel_args_tag

#define CUEMU_KA_FIELD(i, T) T a##i;
#define CUEMU_KA_PARAM(i, T) T a##i
#define CUEMU_KA_ASSIGN(i, T) packed.a##i = a##i;
#define CUEMU_KA_ARG(i, T) cuemu_unpacked->a##i

// CUEMU_FOR_EACH(M, x1, ..., xn) -> M(n, x1) M(n-1, x2) ... M(1, xn); the _COMMA form separates the
// expansions with commas. The index only has to be distinct and the same in every expansion.
#define CUEMU_FOR_EACH(M, ...) CUEMU_CAT(CUEMU_FE_, CUEMU_COUNT(__VA_ARGS__))(M, __VA_ARGS__)
#define CUEMU_FOR_EACH_COMMA(M, ...) CUEMU_CAT(CUEMU_FEC_, CUEMU_COUNT(__VA_ARGS__))(M, __VA_ARGS__)
#define CUEMU_FE_1(M, x) M(1, x)
#define CUEMU_FE_2(M, x, ...) M(2, x) CUEMU_FE_1(M, __VA_ARGS__)
#define CUEMU_FE_3(M, x, ...) M(3, x) CUEMU_FE_2(M, __VA_ARGS__)
#define CUEMU_FE_4(M, x, ...) M(4, x) CUEMU_FE_3(M, __VA_ARGS__)
#define CUEMU_FE_5(M, x, ...) M(5, x) CUEMU_FE_4(M, __VA_ARGS__)
#define CUEMU_FE_6(M, x, ...) M(6, x) CUEMU_FE_5(M, __VA_ARGS__)
#define CUEMU_FE_7(M, x, ...) M(7, x) CUEMU_FE_6(M, __VA_ARGS__)
#define CUEMU_FE_8(M, x, ...) M(8, x) CUEMU_FE_7(M, __VA_ARGS__)
#define CUEMU_FE_9(M, x, ...) M(9, x) CUEMU_FE_8(M, __VA_ARGS__)
#define CUEMU_FE_10(M, x, ...) M(10, x) CUEMU_FE_9(M, __VA_ARGS__)
#define CUEMU_FE_11(M, x, ...) M(11, x) CUEMU_FE_10(M, __VA_ARGS__)
#define CUEMU_FE_12(M, x, ...) M(12, x) CUEMU_FE_11(M, __VA_ARGS__)
#define CUEMU_FE_13(M, x, ...) M(13, x) CUEMU_FE_12(M, __VA_ARGS__)
#define CUEMU_FE_14(M, x, ...) M(14, x) CUEMU_FE_13(M, __VA_ARGS__)
#define CUEMU_FE_15(M, x, ...) M(15, x) CUEMU_FE_14(M, __VA_ARGS__)
#define CUEMU_FE_16(M, x, ...) M(16, x) CUEMU_FE_15(M, __VA_ARGS__)
#define CUEMU_FEC_1(M, x) M(1, x)
#define CUEMU_FEC_2(M, x, ...) M(2, x), CUEMU_FEC_1(M, __VA_ARGS__)
#define CUEMU_FEC_3(M, x, ...) M(3, x), CUEMU_FEC_2(M, __VA_ARGS__)
#define CUEMU_FEC_4(M, x, ...) M(4, x), CUEMU_FEC_3(M, __VA_ARGS__)
#define CUEMU_FEC_5(M, x, ...) M(5, x), CUEMU_FEC_4(M, __VA_ARGS__)
#define CUEMU_FEC_6(M, x, ...) M(6, x), CUEMU_FEC_5(M, __VA_ARGS__)
#define CUEMU_FEC_7(M, x, ...) M(7, x), CUEMU_FEC_6(M, __VA_ARGS__)
#define CUEMU_FEC_8(M, x, ...) M(8, x), CUEMU_FEC_7(M, __VA_ARGS__)
#define CUEMU_FEC_9(M, x, ...) M(9, x), CUEMU_FEC_8(M, __VA_ARGS__)
#define CUEMU_FEC_10(M, x, ...) M(10, x), CUEMU_FEC_9(M, __VA_ARGS__)
#define CUEMU_FEC_11(M, x, ...) M(11, x), CUEMU_FEC_10(M, __VA_ARGS__)
#define CUEMU_FEC_12(M, x, ...) M(12, x), CUEMU_FEC_11(M, __VA_ARGS__)
#define CUEMU_FEC_13(M, x, ...) M(13, x), CUEMU_FEC_12(M, __VA_ARGS__)
#define CUEMU_FEC_14(M, x, ...) M(14, x), CUEMU_FEC_13(M, __VA_ARGS__)
#define CUEMU_FEC_15(M, x, ...) M(15, x), CUEMU_FEC_14(M, __VA_ARGS__)
#define CUEMU_FEC_16(M, x, ...) M(16, x), CUEMU_FEC_15(M, __VA_ARGS__)
