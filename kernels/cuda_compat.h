// cuda_compat.h — the first include of every kernels/*.cu. One kernel source is compiled two ways:
//   1. nvcc (defines __CUDACC__) for real GPUs:   nvcc -I. -c kernels/norm.cu
//   2. the C compiler, into the CPU emulator:     cc -std=c11 -I. -x c -include kernels/emu/cuemu.h -c kernels/norm.cu
// Under nvcc this header defines the portability macros below over the CUDA headers; under the
// emulator the same names come from kernels/emu/cuemu.h (included here too, should a build forget -include).
//
// Kernel-source rules (so both compilers take the file):
// - Write the C ∩ C++ subset: no templates, overloads, references, default arguments, namespaces,
//   classes, lambdas, `auto`, designated initialisers or compound literals. Cast `void *` explicitly;
//   file-scope constants are `static const`; helpers are `static __device__` (optionally
//   `__forceinline__`); `bool` comes from <stdbool.h> in C (cuemu.h includes it).
// - Use CUDA's own names for built-ins, shuffles, votes, atomics and math: the emulator provides the
//   overloaded ones (__shfl_*_sync, __reduce_*_sync, atomicAdd..., min/max) as _Generic macros and the
//   ones with default arguments (width, mask) as macros that fill in the default; only the overloads
//   CUDA has for sm_80/sm_90 are accepted (kernels/emu/cuemu.h lists them).
// - Launchers are `CU_EXTERN_C void name_launch(..., cudaStream_t stream)`, so host C code can call
//   them in both builds.
// - After each kernel, one line `CU_KERNEL_ARGS(kernel, T1, ..., Tn);` with its parameter types
//   (up to 16; a type with a comma, an array or a function-pointer type needs a typedef).
// - Launch only with `CU_LAUNCH(kernel, grid, block, smem_bytes, stream, args...);`, build dim3 values
//   with `DIM3(x, y, z)`, declare dynamic shared memory inside the kernel with
//   `CU_DYNAMIC_SHARED(type, name);`. Static shared memory is `__shared__ T name[N];` (never
//   `static __shared__`: under the emulator __shared__ already means static).
// - fp16/bf16 are storage types (cu_half, cu_bfloat16) converted with cu_half_to_float,
//   cu_float_to_half, cu_bfloat16_to_float and cu_float_to_bfloat16; compute in float.
// - Inline PTX, wmma/mma, cp.async/TMA and other architecture-only code go behind
//   `#ifdef __CUDA_ARCH__` (never defined in the emulator) with a plain CUDA fallback in the #else;
//   the fallback is what the emulator runs and what the tests check, and the code says so there.
// - Emulated launches are synchronous and ignore the stream; grid-wide sync and blocks that wait for
//   other blocks cannot run under the emulator (blocks run one after another).
#pragma once

#ifdef __CUDACC__

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#define CU_EXTERN_C extern "C"

// The emulator's argument struct and thunk are not needed with <<<>>>; the forward declaration keeps
// the trailing semicolon of `CU_KERNEL_ARGS(...);` valid C++.
#define CU_KERNEL_ARGS(kernel, ...) struct kernel##_cu_kernel_args_tag

#define CU_LAUNCH(kernel, grid, block, smem_bytes, stream, ...) \
    kernel<<<(grid), (block), (smem_bytes), (stream)>>>(__VA_ARGS__)

#define DIM3(x, y, z) dim3((unsigned int)(x), (unsigned int)(y), (unsigned int)(z))

#define CU_DYNAMIC_SHARED(type, name) extern __shared__ __align__(16) type name[]

// Storage types with the emulator's layout (one 16-bit word); the conversions use the CUDA
// intrinsics, round to nearest even.
typedef struct cu_half {
    unsigned short bits;
} cu_half;
typedef struct cu_bfloat16 {
    unsigned short bits;
} cu_bfloat16;

static __host__ __device__ __forceinline__ float cu_half_to_float(cu_half value) {
    return __half2float(__ushort_as_half(value.bits));
}
static __host__ __device__ __forceinline__ cu_half cu_float_to_half(float value) {
    cu_half result;
    result.bits = __half_as_ushort(__float2half_rn(value));
    return result;
}
static __host__ __device__ __forceinline__ float cu_bfloat16_to_float(cu_bfloat16 value) {
    return __bfloat162float(__ushort_as_bfloat16(value.bits));
}
static __host__ __device__ __forceinline__ cu_bfloat16 cu_float_to_bfloat16(float value) {
    cu_bfloat16 result;
    result.bits = __bfloat16_as_ushort(__float2bfloat16_rn(value));
    return result;
}

#else  // the CPU emulator

#include "kernels/emu/cuemu.h"

#endif
