// Fibers for the CUDA emulator: stacks, context switches (hand-written assembly for x86-64 and
// aarch64, ucontext elsewhere or on request) and the AddressSanitizer annotations that tell ASan
// which stack is live. Internal to kernels/emu; not thread-safe by itself (the scheduler serialises).
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <ucontext.h>

#include "kernels/emu/cuemu_host.h"

#if defined(__SANITIZE_ADDRESS__)
#define CUEMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CUEMU_ASAN 1
#endif
#endif
#ifndef CUEMU_ASAN
#define CUEMU_ASAN 0
#endif

#if !defined(CUEMU_UCONTEXT_ONLY) && (defined(__x86_64__) || defined(__aarch64__))
#define CUEMU_HAVE_ASM_SWITCH 1
#else
#define CUEMU_HAVE_ASM_SWITCH 0
#endif

typedef struct cuemu_fiber {
    void *saved_sp;              // asm backend: stack pointer with the callee-saved registers on top
    // ucontext backend: allocated at first use and kept (a ucontext_t is about 1 KB; keeping it out of
    // line keeps the scheduler's per-thread records small and cache-friendly).
    ucontext_t *context;
    char *stack;                 // lowest usable byte; NULL for an OS thread's own stack
    size_t stack_size;
    // The stack as announced to ASan at switches; for an OS thread's own stack, learned from ASan at
    // its first switch-out (zero until then).
    const void *asan_stack_bottom;
    size_t asan_stack_size;
    void *asan_fake_stack;       // ASan's use-after-return frames of this fiber while it is switched out
    void (*entry)(void *);       // what a new fiber runs first; it must never return
    void *entry_argument;
} cuemu_fiber;

// Makes `fiber` start `entry(argument)` on [stack, stack + stack_size) at its next switch-in, with
// the given backend. The stack must come from cuemu_stack_allocate (a guard page sits below it).
void cuemu_fiber_prepare(cuemu_fiber *fiber, cuemu_fiber_backend backend, char *stack, size_t stack_size,
                         void (*entry)(void *), void *argument);

// Forgets the stack bounds learned for a fiber that stands for an OS thread's own stack (a launch may
// come from another OS thread than the previous one). Keeps its ucontext storage.
void cuemu_fiber_reset_os_thread(cuemu_fiber *fiber);

// Saves the running context into `from` and resumes `to`. `from_is_finished` says `from` will never be
// resumed (ASan then frees its fake stack). Both fibers must use `backend`.
void cuemu_fiber_switch(cuemu_fiber *from, cuemu_fiber *to, cuemu_fiber_backend backend, int from_is_finished);

// Stack memory with an inaccessible guard page below it (so an overflow faults instead of corrupting
// the neighbouring stack). size is a multiple of the page size. Returns NULL if mmap fails.
char *cuemu_stack_allocate(size_t size);
void cuemu_stack_free(char *stack, size_t size);
// Under ASan, clears poison left on a reused stack by frames that never returned (a finished fiber's
// outermost frames, or a fiber abandoned suspended).
void cuemu_stack_unpoison(char *stack, size_t size);
// The page size, which is also the size of the guard page below each stack.
size_t cuemu_page_size(void);
