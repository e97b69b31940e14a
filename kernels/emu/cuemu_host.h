// cuemu_host.h — the host-side API of the CUDA emulator (kernels/emu): launching, launch errors,
// thread order, fiber stacks and backends, counters. Kernel sources get it through cuemu.h; host code
// (the emulated runtime, tests) includes this header alone, without the kernel-side macros.
#pragma once
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
#error "kernels/emu is C11 only (kernel sources are compiled as C under the emulator)"
#endif

// CUDA has dim3 (constructible from integers) and uint3 as distinct types; C gets one struct for both.
typedef struct dim3 {
    unsigned int x, y, z;
} dim3;
typedef dim3 uint3;

// ------------------------------------------------------------------------------------------------
// Launching and settings.
// ------------------------------------------------------------------------------------------------

// Error codes of launch-configuration problems; the numbers are cudaError_t's, so the emulated
// runtime can return them as they are.
typedef enum cuemu_error {
    CUEMU_SUCCESS = 0,
    CUEMU_ERROR_INVALID_VALUE = 1,           // cudaErrorInvalidValue: dynamic shared memory too large
    CUEMU_ERROR_INVALID_CONFIGURATION = 9,   // cudaErrorInvalidConfiguration: grid/block dimensions
} cuemu_error;

typedef void (*cuemu_thunk)(void *args);

// Runs kernel `thunk(args)` on every thread of the grid; used through CU_LAUNCH. `kernel`, the kernel
// function's address, identifies it for cuemu_func_set_max_dynamic_shared_size (a `const void *`, as
// in CUDA's runtime API). Returns CUEMU_SUCCESS or the error also
// recorded as the last error.
cuemu_error cuemu_launch(const char *kernel_name, const void *kernel, cuemu_thunk thunk, void *args,
                         dim3 grid, dim3 block, size_t dynamic_shared_bytes, const char *file, int line);

// The calling OS thread's last launch error: get returns and clears it (cudaGetLastError), peek
// leaves it (cudaPeekAtLastError). The message names the launch site, kernel and the bad value.
cuemu_error cuemu_get_last_error(void);
cuemu_error cuemu_peek_at_last_error(void);
const char *cuemu_last_error_message(void);

// Dynamic shared memory above 48 KiB needs an opt-in per kernel, as with
// cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes); the emulator
// accepts up to 227 KiB (sm_90's limit). Returns CUEMU_ERROR_INVALID_VALUE above that.
cuemu_error cuemu_func_set_max_dynamic_shared_size(const void *kernel, size_t bytes);

// Order in which the threads of a block run (and in which blocks run): forward by linear index,
// reverse, or a seeded random permutation redrawn at every barrier. A missing __syncthreads often
// gives the right answer in one order and a wrong one in another, so tests run several. The initial
// setting comes from CUEMU_THREAD_ORDER=forward|reverse|random:SEED (default forward).
typedef enum cuemu_thread_order {
    CUEMU_ORDER_FORWARD,
    CUEMU_ORDER_REVERSE,
    CUEMU_ORDER_RANDOM,
} cuemu_thread_order;
void cuemu_set_thread_order(cuemu_thread_order order, uint64_t seed);
cuemu_thread_order cuemu_get_thread_order(uint64_t *seed);
// Parses "forward", "reverse" or "random:SEED" and applies it; returns 0, or -1 if malformed.
int cuemu_set_thread_order_string(const char *text);
// "forward", "reverse" or "random:SEED" for the current setting, in a thread-local buffer.
const char *cuemu_thread_order_string(void);

// Fiber stack size in bytes (rounded up to whole pages; at least 16 KiB). Default 64 KiB (256 KiB under
// AddressSanitizer, whose frames are larger), or CUEMU_STACK_SIZE (bytes, or with a k/m suffix).
void cuemu_set_stack_size(size_t bytes);
size_t cuemu_get_stack_size(void);

// Context-switch implementation: hand-written assembly (x86-64, aarch64) or ucontext. Default asm
// where available, or CUEMU_FIBER=asm|ucontext. Building with -DCUEMU_UCONTEXT_ONLY leaves the
// assembly out. Returns -1 if the requested one is not compiled in.
typedef enum cuemu_fiber_backend { CUEMU_FIBER_ASM, CUEMU_FIBER_UCONTEXT } cuemu_fiber_backend;
int cuemu_set_fiber_backend(cuemu_fiber_backend backend);
cuemu_fiber_backend cuemu_get_fiber_backend(void);
const char *cuemu_fiber_backend_name(cuemu_fiber_backend backend);

// Counters since the start of the process, for measurements.
typedef struct cuemu_stats {
    uint64_t launches, blocks, threads, switches;
} cuemu_stats;
cuemu_stats cuemu_get_stats(void);

// Average cost in nanoseconds of one fiber switch with the current backend, measured by bouncing
// between two fibers `round_trips` times (two switches each).
double cuemu_measure_switch_ns(long round_trips);

