// Fibers for the CUDA emulator (see fiber.h). The assembly switch saves only what the C calling
// convention says a callee must preserve, on the old stack, and swaps stack pointers: about ten
// instructions, against swapcontext's save of every register plus a sigprocmask system call.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE  // mmap's MAP_ANONYMOUS / MAP_STACK, sigaltstack, ucontext under -std=c11
#endif
#include "kernels/emu/fiber.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#if CUEMU_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

size_t cuemu_page_size(void) {
    static size_t page;
    if (!page) {
        long queried = sysconf(_SC_PAGESIZE);
        page = queried > 0 ? (size_t)queried : 4096;
    }
    return page;
}

char *cuemu_stack_allocate(size_t size) {
    size_t page = cuemu_page_size();
    // MAP_NORESERVE: a kernel thread touches only the top few pages of its stack.
    char *base = mmap(NULL, size + page, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (base == MAP_FAILED) return NULL;
    if (mprotect(base, page, PROT_NONE) != 0) {
        munmap(base, size + page);
        return NULL;
    }
    return base + page;
}

void cuemu_stack_unpoison(char *stack, size_t size) {
#if CUEMU_ASAN
    __asan_unpoison_memory_region(stack, size);
#else
    (void)stack;
    (void)size;
#endif
}

void cuemu_stack_free(char *stack, size_t size) {
    if (!stack) return;
    cuemu_stack_unpoison(stack, size);
    munmap(stack - cuemu_page_size(), size + cuemu_page_size());
}

// ------------------------------------------------------------------------------------------------
// The assembly context switch.
//   void cuemu_switch_asm(void **save_sp, void *restore_sp);
// pushes the callee-saved registers on the current stack, stores the stack pointer in *save_sp,
// loads restore_sp and pops the registers saved there, returning into the other context. A new
// fiber's stack is laid out as if it had been switched out: its "return address" is the trampoline,
// which calls fiber_start(fiber) with the two values placed in callee-saved registers.
// ------------------------------------------------------------------------------------------------

#if CUEMU_HAVE_ASM_SWITCH
void cuemu_switch_asm(void **save_sp, void *restore_sp);
void cuemu_fiber_trampoline_asm(void);

#if defined(__x86_64__)
// System V AMD64: rbx, rbp, r12-r15 are callee-saved (the MXCSR / x87 control words too, but kernels
// never change them, so they are left alone). Arguments: rdi = save_sp, rsi = restore_sp.
__asm__(
    ".pushsection .text\n"
    ".globl cuemu_switch_asm\n"
    ".hidden cuemu_switch_asm\n"
    ".type cuemu_switch_asm, @function\n"
    ".p2align 4\n"
    "cuemu_switch_asm:\n"
    "    pushq %rbp\n"
    "    pushq %rbx\n"
    "    pushq %r12\n"
    "    pushq %r13\n"
    "    pushq %r14\n"
    "    pushq %r15\n"
    "    movq %rsp, (%rdi)\n"
    "    movq %rsi, %rsp\n"
    "    popq %r15\n"
    "    popq %r14\n"
    "    popq %r13\n"
    "    popq %r12\n"
    "    popq %rbx\n"
    "    popq %rbp\n"
    "    ret\n"
    ".size cuemu_switch_asm, .-cuemu_switch_asm\n"
    // Entered by the `ret` above on a new fiber's stack: r12 = fiber, r13 = fiber_start. rsp is
    // 16-byte aligned here, so the call leaves it as the ABI expects at function entry. rbp is 0, which
    // ends frame-pointer stack walks (ASan's unwinder, gdb).
    ".globl cuemu_fiber_trampoline_asm\n"
    ".hidden cuemu_fiber_trampoline_asm\n"
    ".type cuemu_fiber_trampoline_asm, @function\n"
    ".p2align 4\n"
    "cuemu_fiber_trampoline_asm:\n"
    "    movq %r12, %rdi\n"
    "    callq *%r13\n"
    "    ud2\n"
    ".size cuemu_fiber_trampoline_asm, .-cuemu_fiber_trampoline_asm\n"
    ".popsection\n");
enum { ASM_FRAME_WORDS = 7 };  // r15 r14 r13 r12 rbx rbp, return address

#elif defined(__aarch64__)
// AAPCS64: x19-x28, x29 (frame pointer), x30 (link register), sp and the low halves of v8-v15
// (d8-d15) are callee-saved. Arguments: x0 = save_sp, x1 = restore_sp. The frame is 160 bytes,
// keeping sp 16-byte aligned as the architecture requires.
__asm__(
    ".pushsection .text\n"
    ".globl cuemu_switch_asm\n"
    ".hidden cuemu_switch_asm\n"
    ".type cuemu_switch_asm, %function\n"
    ".p2align 4\n"
    "cuemu_switch_asm:\n"
    "    sub sp, sp, #160\n"
    "    stp x19, x20, [sp, #0]\n"
    "    stp x21, x22, [sp, #16]\n"
    "    stp x23, x24, [sp, #32]\n"
    "    stp x25, x26, [sp, #48]\n"
    "    stp x27, x28, [sp, #64]\n"
    "    stp x29, x30, [sp, #80]\n"
    "    stp d8, d9, [sp, #96]\n"
    "    stp d10, d11, [sp, #112]\n"
    "    stp d12, d13, [sp, #128]\n"
    "    stp d14, d15, [sp, #144]\n"
    "    mov x9, sp\n"
    "    str x9, [x0]\n"
    "    mov sp, x1\n"
    "    ldp x19, x20, [sp, #0]\n"
    "    ldp x21, x22, [sp, #16]\n"
    "    ldp x23, x24, [sp, #32]\n"
    "    ldp x25, x26, [sp, #48]\n"
    "    ldp x27, x28, [sp, #64]\n"
    "    ldp x29, x30, [sp, #80]\n"
    "    ldp d8, d9, [sp, #96]\n"
    "    ldp d10, d11, [sp, #112]\n"
    "    ldp d12, d13, [sp, #128]\n"
    "    ldp d14, d15, [sp, #144]\n"
    "    add sp, sp, #160\n"
    "    ret\n"
    ".size cuemu_switch_asm, .-cuemu_switch_asm\n"
    // Entered by the `ret` above on a new fiber's stack: x19 = fiber, x20 = fiber_start, x29 = 0.
    ".globl cuemu_fiber_trampoline_asm\n"
    ".hidden cuemu_fiber_trampoline_asm\n"
    ".type cuemu_fiber_trampoline_asm, %function\n"
    ".p2align 4\n"
    "cuemu_fiber_trampoline_asm:\n"
    "    mov x0, x19\n"
    "    blr x20\n"
    "    brk #0\n"
    ".size cuemu_fiber_trampoline_asm, .-cuemu_fiber_trampoline_asm\n"
    ".popsection\n");
enum { ASM_FRAME_WORDS = 20 };  // x19-x30 (12), d8-d15 (8)
#endif
#endif  // CUEMU_HAVE_ASM_SWITCH

// ------------------------------------------------------------------------------------------------
// Switching, with the AddressSanitizer protocol: __sanitizer_start_switch_fiber before leaving a
// stack (naming the destination stack), __sanitizer_finish_switch_fiber first thing after arriving.
// Without it ASan would take the fiber stack for a stack overflow of the OS thread, report false
// errors, and lose its use-after-return frames.
// ------------------------------------------------------------------------------------------------

// The fiber being switched away from, so that the destination can learn the bounds of an OS thread's
// stack (which ASan reports at the finish of the switch). Fibers never change OS thread, and one OS
// thread switches at a time, so one variable per OS thread is enough.
#if CUEMU_ASAN
static _Thread_local cuemu_fiber *switching_from;
#endif

static void fiber_finish_switch(cuemu_fiber *self) {
#if CUEMU_ASAN
    const void *from_bottom = NULL;
    size_t from_size = 0;
    __sanitizer_finish_switch_fiber(self->asan_fake_stack, &from_bottom, &from_size);
    cuemu_fiber *from = switching_from;
    if (from && from->asan_stack_size == 0) {
        from->asan_stack_bottom = from_bottom;
        from->asan_stack_size = from_size;
    }
#else
    (void)self;
#endif
}

static ucontext_t *ucontext_storage(cuemu_fiber *fiber) {
    if (!fiber->context) {
        fiber->context = calloc(1, sizeof *fiber->context);
        if (!fiber->context) {
            fprintf(stderr, "cuemu: error: out of memory for a ucontext\n");
            exit(1);
        }
    }
    return fiber->context;
}

// First code of every fiber, on its own stack.
static void fiber_start(cuemu_fiber *self) {
    fiber_finish_switch(self);
    self->entry(self->entry_argument);
    fprintf(stderr, "cuemu: internal error: a fiber's entry function returned\n");
    abort();
}

// makecontext passes only int arguments: the fiber pointer travels as two 32-bit halves.
static void fiber_start_ucontext(int high, int low) {
    uint64_t bits = ((uint64_t)(unsigned int)high << 32) | (uint64_t)(unsigned int)low;
    fiber_start((cuemu_fiber *)(uintptr_t)bits);
}

void cuemu_fiber_prepare(cuemu_fiber *fiber, cuemu_fiber_backend backend, char *stack, size_t stack_size,
                         void (*entry)(void *), void *argument) {
    fiber->stack = stack;
    fiber->stack_size = stack_size;
    fiber->asan_stack_bottom = stack;
    fiber->asan_stack_size = stack_size;
    fiber->asan_fake_stack = NULL;
    fiber->entry = entry;
    fiber->entry_argument = argument;
#if CUEMU_ASAN
    // A reused stack keeps ASan's poison from frames that never returned. Only the previous fiber's
    // outermost frames are such (everything deeper returned normally and unpoisoned itself), and
    // they sit at the top of the stack.
    size_t dirty = stack_size < 32 * 1024 ? stack_size : 32 * 1024;
    cuemu_stack_unpoison(stack + stack_size - dirty, dirty);
#endif
#if CUEMU_HAVE_ASM_SWITCH
    if (backend == CUEMU_FIBER_ASM) {
        uintptr_t top = ((uintptr_t)stack + stack_size) & ~(uintptr_t)15;
        uintptr_t *frame;
#if defined(__x86_64__)
        // After the 6 pops and the ret, rsp = frame + 56 must be 16-byte aligned: frame = top - 72.
        frame = (uintptr_t *)(top - 72);
        memset(frame, 0, ASM_FRAME_WORDS * sizeof *frame);
        frame[2] = (uintptr_t)fiber_start;                 // r13
        frame[3] = (uintptr_t)fiber;                       // r12
        frame[6] = (uintptr_t)cuemu_fiber_trampoline_asm;  // return address
#else
        frame = (uintptr_t *)(top - 160);
        memset(frame, 0, ASM_FRAME_WORDS * sizeof *frame);
        frame[0] = (uintptr_t)fiber;                       // x19
        frame[1] = (uintptr_t)fiber_start;                 // x20
        frame[11] = (uintptr_t)cuemu_fiber_trampoline_asm; // x30 (x29 = frame[10] = 0)
#endif
        fiber->saved_sp = frame;
        return;
    }
#endif
    (void)backend;
    ucontext_t *context = ucontext_storage(fiber);
    if (getcontext(context) != 0) {
        perror("cuemu: getcontext");
        abort();
    }
    context->uc_stack.ss_sp = stack;
    context->uc_stack.ss_size = stack_size;
    context->uc_link = NULL;
    uint64_t bits = (uint64_t)(uintptr_t)fiber;
    makecontext(context, (void (*)(void))fiber_start_ucontext, 2, (int)(unsigned int)(bits >> 32),
                (int)(unsigned int)(bits & 0xffffffffu));
}

void cuemu_fiber_reset_os_thread(cuemu_fiber *fiber) {
    ucontext_t *context = fiber->context;
    memset(fiber, 0, sizeof *fiber);
    fiber->context = context;
}


void cuemu_fiber_switch(cuemu_fiber *from, cuemu_fiber *to, cuemu_fiber_backend backend, int from_is_finished) {
#if CUEMU_ASAN
    switching_from = from;
    __sanitizer_start_switch_fiber(from_is_finished ? NULL : &from->asan_fake_stack, to->asan_stack_bottom,
                                   to->asan_stack_size);
#else
    (void)from_is_finished;
#endif
#if CUEMU_HAVE_ASM_SWITCH
    if (backend == CUEMU_FIBER_ASM) {
        cuemu_switch_asm(&from->saved_sp, to->saved_sp);
        fiber_finish_switch(from);  // running as `from` again, resumed by some other fiber's switch
        return;
    }
#endif
    (void)backend;
    if (swapcontext(ucontext_storage(from), to->context) != 0) {
        perror("cuemu: swapcontext");
        abort();
    }
    fiber_finish_switch(from);
}
