// The emulator's scheduler: launches, blocks, __syncthreads, warp operations, configuration and the
// errors it reports. One launch at a time per process (static __shared__ variables live in one
// process-wide section); the launching OS thread runs every block, one after another, each CUDA
// thread of a block as a fiber.
//
// Scheduling: a block runs in rounds. A round walks the thread order once and runs every runnable
// thread until it blocks (at __syncthreads or a warp operation) or returns; a blocked thread switches
// straight to the next runnable thread of the round, and the last one back to the scheduler. The lane
// that completes a warp operation keeps running; the lanes it releases run in the next round. When a
// round ends with nothing runnable, either every live thread waits at one __syncthreads (released:
// next round), or the block is stuck: a divergent barrier or a deadlock, reported with the sites.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE  // mmap's MAP_ANONYMOUS / MAP_STACK, sigaltstack, ucontext under -std=c11
#endif
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kernels/emu/cuemu.h"
#include "kernels/emu/fiber.h"

uint3 threadIdx;
uint3 blockIdx;
dim3 blockDim;
dim3 gridDim;
void *cuemu_dynamic_shared_memory;

enum {
    MAX_BLOCK_THREADS = 1024,
    MAX_WARPS = MAX_BLOCK_THREADS / 32,
    MAX_SHARED_LIMITS = 256,
};
static const size_t default_dynamic_shared_limit = 48 * 1024;  // without a per-kernel opt-in, as CUDA
static const size_t max_dynamic_shared_limit = 227 * 1024;     // sm_90's opt-in maximum

// Exit status of the program when a kernel makes a mistake the emulator catches.
enum { KERNEL_ERROR_EXIT_STATUS = 1, CONFIGURATION_ERROR_EXIT_STATUS = 2 };

typedef enum { THREAD_RUNNABLE, THREAD_AT_BARRIER, THREAD_AT_WARP_OP, THREAD_DONE } thread_state;

typedef struct emu_thread {
    cuemu_fiber fiber;
    uint3 index;            // threadIdx
    unsigned int linear;    // x + y * blockDim.x + z * blockDim.x * blockDim.y; lane = linear % 32
    thread_state state;
    const char *site_file;  // where it waits (barrier or warp operation)
    int site_line;
    int barrier_kind, barrier_predicate;
    cuemu_warp_kind warp_kind;
    unsigned int warp_mask;
    int value_class;
    int warp_argument, warp_width;
    uint64_t warp_value, warp_result;
} emu_thread;

static const char *const warp_kind_names[CUEMU_WARP_KIND_COUNT] = {
    "__syncwarp",      "__shfl_sync",       "__shfl_up_sync",    "__shfl_down_sync",  "__shfl_xor_sync",
    "__ballot_sync",   "__any_sync",        "__all_sync",        "__reduce_add_sync", "__reduce_min_sync",
    "__reduce_max_sync", "__reduce_and_sync", "__reduce_or_sync", "__reduce_xor_sync",
};
static const char *const barrier_kind_names[] = {"__syncthreads", "__syncthreads_count", "__syncthreads_and",
                                                 "__syncthreads_or"};

// ------------------------------------------------------------------------------------------------
// Configuration (environment, setters) and counters, under config_lock.
// ------------------------------------------------------------------------------------------------

static pthread_mutex_t config_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    int environment_read;
    cuemu_thread_order order;
    uint64_t seed;
    uint64_t order_rng;  // random-order state, carried from launch to launch so runs reproduce
    uint64_t order_generation;  // bumped by every setting of the order (a launch then drops its state)
    size_t stack_size;
    cuemu_fiber_backend backend;
    struct {
        const void *kernel;
        size_t bytes;
    } shared_limits[MAX_SHARED_LIMITS];
    int shared_limit_count;
    cuemu_stats stats;
} config;

static _Noreturn void configuration_error(const char *format, ...) {
    va_list arguments;
    va_start(arguments, format);
    fprintf(stderr, "cuemu: error: ");
    vfprintf(stderr, format, arguments);
    fprintf(stderr, "\n");
    va_end(arguments);
    fflush(NULL);
    exit(CONFIGURATION_ERROR_EXIT_STATUS);
}

static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// Uniform in [0, bound) (bound <= 2^32), by the multiply-shift method.
static uint32_t random_below(uint64_t *state, uint64_t bound) {
    return (uint32_t)(((splitmix64(state) >> 32) * bound) >> 32);
}

static int parse_thread_order(const char *text, cuemu_thread_order *order, uint64_t *seed) {
    if (strcmp(text, "forward") == 0) {
        *order = CUEMU_ORDER_FORWARD;
        *seed = 0;
        return 0;
    }
    if (strcmp(text, "reverse") == 0) {
        *order = CUEMU_ORDER_REVERSE;
        *seed = 0;
        return 0;
    }
    if (strncmp(text, "random:", 7) == 0 && text[7] >= '0' && text[7] <= '9') {
        char *end;
        unsigned long long value = strtoull(text + 7, &end, 10);
        if (*end != '\0') return -1;
        *order = CUEMU_ORDER_RANDOM;
        *seed = value;
        return 0;
    }
    return -1;
}

static size_t round_stack_size(size_t bytes) {
    size_t page = cuemu_page_size(), minimum = 16 * 1024;
    if (bytes < minimum) bytes = minimum;
    return (bytes + page - 1) / page * page;
}

// Reads CUEMU_THREAD_ORDER, CUEMU_STACK_SIZE and CUEMU_FIBER once; setters called later override them.
static void read_environment_locked(void) {
    if (config.environment_read) return;
    config.environment_read = 1;
    config.order = CUEMU_ORDER_FORWARD;
    config.stack_size = round_stack_size(CUEMU_ASAN ? 256 * 1024 : 64 * 1024);
    config.backend = CUEMU_HAVE_ASM_SWITCH ? CUEMU_FIBER_ASM : CUEMU_FIBER_UCONTEXT;
    const char *text = getenv("CUEMU_THREAD_ORDER");
    if (text && *text) {
        if (parse_thread_order(text, &config.order, &config.seed) != 0)
            configuration_error("CUEMU_THREAD_ORDER='%s': expected forward, reverse or random:SEED", text);
    }
    uint64_t seed_state = config.seed;
    config.order_rng = splitmix64(&seed_state);
    text = getenv("CUEMU_STACK_SIZE");
    if (text && *text) {
        char *end;
        unsigned long long value = strtoull(text, &end, 10);
        unsigned long long scale = (*end == 'k' || *end == 'K') ? 1024ull : (*end == 'm' || *end == 'M') ? 1048576ull : 1ull;
        if (scale != 1) end++;
        if (end == text || *end != '\0' || value == 0 || value > (1ull << 30) / scale)
            configuration_error("CUEMU_STACK_SIZE='%s': expected a byte count such as 65536, 64k or 1m", text);
        config.stack_size = round_stack_size((size_t)(value * scale));
    }
    text = getenv("CUEMU_FIBER");
    if (text && *text) {
        if (strcmp(text, "ucontext") == 0) {
            config.backend = CUEMU_FIBER_UCONTEXT;
        } else if (strcmp(text, "asm") == 0) {
            if (!CUEMU_HAVE_ASM_SWITCH)
                configuration_error("CUEMU_FIBER=asm: this build has no assembly context switch (ucontext only)");
            config.backend = CUEMU_FIBER_ASM;
        } else {
            configuration_error("CUEMU_FIBER='%s': expected asm or ucontext", text);
        }
    }
}

void cuemu_set_thread_order(cuemu_thread_order order, uint64_t seed) {
    pthread_mutex_lock(&config_lock);
    read_environment_locked();
    config.order = order;
    config.seed = order == CUEMU_ORDER_RANDOM ? seed : 0;
    uint64_t seed_state = config.seed;
    config.order_rng = splitmix64(&seed_state);
    config.order_generation++;
    pthread_mutex_unlock(&config_lock);
}

cuemu_thread_order cuemu_get_thread_order(uint64_t *seed) {
    pthread_mutex_lock(&config_lock);
    read_environment_locked();
    cuemu_thread_order order = config.order;
    if (seed) *seed = config.seed;
    pthread_mutex_unlock(&config_lock);
    return order;
}

int cuemu_set_thread_order_string(const char *text) {
    cuemu_thread_order order;
    uint64_t seed;
    if (!text || parse_thread_order(text, &order, &seed) != 0) return -1;
    cuemu_set_thread_order(order, seed);
    return 0;
}

const char *cuemu_thread_order_string(void) {
    static _Thread_local char text[40];
    uint64_t seed;
    cuemu_thread_order order = cuemu_get_thread_order(&seed);
    if (order == CUEMU_ORDER_RANDOM)
        snprintf(text, sizeof text, "random:%" PRIu64, seed);
    else
        snprintf(text, sizeof text, "%s", order == CUEMU_ORDER_REVERSE ? "reverse" : "forward");
    return text;
}

void cuemu_set_stack_size(size_t bytes) {
    pthread_mutex_lock(&config_lock);
    read_environment_locked();
    config.stack_size = round_stack_size(bytes);
    pthread_mutex_unlock(&config_lock);
}

size_t cuemu_get_stack_size(void) {
    pthread_mutex_lock(&config_lock);
    read_environment_locked();
    size_t size = config.stack_size;
    pthread_mutex_unlock(&config_lock);
    return size;
}

int cuemu_set_fiber_backend(cuemu_fiber_backend backend) {
    if (backend != CUEMU_FIBER_UCONTEXT && !(backend == CUEMU_FIBER_ASM && CUEMU_HAVE_ASM_SWITCH)) return -1;
    pthread_mutex_lock(&config_lock);
    read_environment_locked();
    config.backend = backend;
    pthread_mutex_unlock(&config_lock);
    return 0;
}

cuemu_fiber_backend cuemu_get_fiber_backend(void) {
    pthread_mutex_lock(&config_lock);
    read_environment_locked();
    cuemu_fiber_backend backend = config.backend;
    pthread_mutex_unlock(&config_lock);
    return backend;
}

const char *cuemu_fiber_backend_name(cuemu_fiber_backend backend) {
    return backend == CUEMU_FIBER_ASM ? "asm" : "ucontext";
}

cuemu_error cuemu_func_set_max_dynamic_shared_size(const void *kernel, size_t bytes) {
    if (bytes > max_dynamic_shared_limit) return CUEMU_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&config_lock);
    int i = 0;
    while (i < config.shared_limit_count && config.shared_limits[i].kernel != kernel) i++;
    cuemu_error status = CUEMU_SUCCESS;
    if (i == MAX_SHARED_LIMITS) {
        status = CUEMU_ERROR_INVALID_VALUE;
    } else {
        if (i == config.shared_limit_count) config.shared_limit_count++;
        config.shared_limits[i].kernel = kernel;
        config.shared_limits[i].bytes = bytes;
    }
    pthread_mutex_unlock(&config_lock);
    return status;
}

static size_t dynamic_shared_limit(const void *kernel) {
    size_t limit = default_dynamic_shared_limit;
    pthread_mutex_lock(&config_lock);
    for (int i = 0; i < config.shared_limit_count; i++)
        if (config.shared_limits[i].kernel == kernel && config.shared_limits[i].bytes > limit)
            limit = config.shared_limits[i].bytes;
    pthread_mutex_unlock(&config_lock);
    return limit;
}

cuemu_stats cuemu_get_stats(void) {
    pthread_mutex_lock(&config_lock);
    cuemu_stats stats = config.stats;
    pthread_mutex_unlock(&config_lock);
    return stats;
}

// ------------------------------------------------------------------------------------------------
// Last launch error, per OS thread (as CUDA's is per host thread).
// ------------------------------------------------------------------------------------------------

static _Thread_local cuemu_error last_error;
static _Thread_local char last_error_message[512];

static cuemu_error record_launch_error(cuemu_error code, const char *format, ...) {
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(last_error_message, sizeof last_error_message, format, arguments);
    va_end(arguments);
    last_error = code;
    return code;
}

cuemu_error cuemu_get_last_error(void) {
    cuemu_error code = last_error;
    last_error = CUEMU_SUCCESS;
    return code;
}

cuemu_error cuemu_peek_at_last_error(void) { return last_error; }

const char *cuemu_last_error_message(void) { return last_error_message; }

// ------------------------------------------------------------------------------------------------
// The running launch (under launch_lock).
// ------------------------------------------------------------------------------------------------

static pthread_mutex_t launch_lock = PTHREAD_MUTEX_INITIALIZER;
static _Thread_local int in_launch;  // this OS thread is running a launch (fibers included)

static struct {
    // Settings taken from config at the start of the launch.
    cuemu_thread_order order;
    uint64_t order_rng, order_generation;
    cuemu_fiber_backend backend;
    size_t stack_size;

    // Stacks, reused by every block and launch; stack i serves the thread of linear index i.
    char *stacks[MAX_BLOCK_THREADS];
    size_t stacks_size;  // size of the stacks in the pool (all equal)
    emu_thread *threads;  // MAX_BLOCK_THREADS entries
    unsigned int order_of_threads[MAX_BLOCK_THREADS];

    const char *kernel_name, *launch_file;
    int launch_line;
    cuemu_thunk thunk;
    void *args;
    unsigned int thread_count;
    unsigned int cursor;  // position of the current round in order_of_threads
    unsigned int warp_exists[MAX_WARPS], warp_done[MAX_WARPS], warp_waiting[MAX_WARPS];
    unsigned int runnable, at_barrier, at_warp_op, done;
    int barrier_result;
    emu_thread *current;  // the fiber running now; NULL on the scheduler
    cuemu_fiber scheduler;
    uint64_t switches;
    int fatal;
    char fatal_message[1024];
} emu;

// "(x,y,z)" in one of a few rotating buffers, for messages that name several indices.
static const char *format_index(uint3 index) {
    static char buffers[4][48];
    static int next;
    char *buffer = buffers[next++ & 3];
    snprintf(buffer, sizeof buffers[0], "(%u,%u,%u)", index.x, index.y, index.z);
    return buffer;
}

static _Noreturn void print_fatal_and_exit(const char *message) {
    fflush(stdout);
    fprintf(stderr, "cuemu: error: %s\n", message);
    fflush(NULL);
    exit(KERNEL_ERROR_EXIT_STATUS);
}

// A mistake of the running kernel: from a fiber, go back to the scheduler's stack (so exit handlers
// and sanitizers run on the OS thread's own stack) and report there; from the scheduler, report now.
static _Noreturn void kernel_error(const char *format, ...) {
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(emu.fatal_message, sizeof emu.fatal_message, format, arguments);
    va_end(arguments);
    emu_thread *self = emu.current;
    if (!self || !in_launch) print_fatal_and_exit(emu.fatal_message);
    emu.fatal = 1;
    emu.current = NULL;
    cuemu_fiber_switch(&self->fiber, &emu.scheduler, emu.backend, 1);
    abort();  // never resumed
}

_Noreturn void cuemu_trap(const char *file, int line) {
    if (!emu.current || !in_launch) kernel_error("%s:%d: __trap() called outside a kernel", file, line);
    kernel_error("%s:%d: __trap() in kernel %s (launched at %s:%d), block %s, thread %s", file, line,
                 emu.kernel_name, emu.launch_file, emu.launch_line, format_index(blockIdx),
                 format_index(emu.current->index));
}

static emu_thread *current_thread(const char *what, const char *file, int line) {
    if (!emu.current || !in_launch) kernel_error("%s:%d: %s called outside a kernel", file, line, what);
    return emu.current;
}

static emu_thread *next_in_round(void) {
    while (emu.cursor < emu.thread_count) {
        emu_thread *thread = &emu.threads[emu.order_of_threads[emu.cursor++]];
        if (thread->state == THREAD_RUNNABLE) return thread;
    }
    return NULL;
}

// The running thread blocked or finished: run the next runnable thread of this round, or return to
// the scheduler at the end of the round. Returns when someone resumes this thread.
static void switch_away(emu_thread *self, int finished) {
    emu_thread *next = next_in_round();
    emu.switches++;
    if (next) {
        threadIdx = next->index;
        emu.current = next;
        cuemu_fiber_switch(&self->fiber, &next->fiber, emu.backend, finished);
    } else {
        emu.current = NULL;
        cuemu_fiber_switch(&self->fiber, &emu.scheduler, emu.backend, finished);
    }
}

// ------------------------------------------------------------------------------------------------
// __syncthreads and friends.
// ------------------------------------------------------------------------------------------------

int cuemu_block_barrier(int kind, int predicate, const char *file, int line) {
    emu_thread *self = current_thread(barrier_kind_names[kind], file, line);
    self->state = THREAD_AT_BARRIER;
    self->site_file = file;
    self->site_line = line;
    self->barrier_kind = kind;
    self->barrier_predicate = predicate;
    emu.runnable--;
    emu.at_barrier++;
    switch_away(self, 0);
    return emu.barrier_result;
}

static int same_site(const emu_thread *a, const emu_thread *b) {
    return a->site_line == b->site_line && (a->site_file == b->site_file || strcmp(a->site_file, b->site_file) == 0);
}

// Every live thread waits at a barrier: release them if it is one and the same barrier and no thread
// has returned (a thread that returned would never arrive on a GPU: undefined, usually a hang).
static void release_barrier(void) {
    const emu_thread *first_waiter = NULL, *finished = NULL;
    int count = 0;
    for (unsigned int i = 0; i < emu.thread_count; i++) {
        const emu_thread *thread = &emu.threads[i];
        if (thread->state == THREAD_DONE) {
            if (!finished) finished = thread;
            continue;
        }
        if (!first_waiter) {
            first_waiter = thread;
        } else if (!same_site(first_waiter, thread) || first_waiter->barrier_kind != thread->barrier_kind) {
            kernel_error("%s:%d: divergent barrier in kernel %s (launched at %s:%d), block %s: thread %s waits at "
                         "%s here while thread %s waits at %s at %s:%d",
                         first_waiter->site_file, first_waiter->site_line, emu.kernel_name, emu.launch_file,
                         emu.launch_line, format_index(blockIdx), format_index(first_waiter->index),
                         barrier_kind_names[first_waiter->barrier_kind], format_index(thread->index),
                         barrier_kind_names[thread->barrier_kind], thread->site_file, thread->site_line);
        }
        count += thread->barrier_predicate;
    }
    if (finished)
        kernel_error("%s:%d: divergent barrier in kernel %s (launched at %s:%d), block %s: thread %s waits at %s "
                     "here but thread %s has returned from the kernel and will never arrive",
                     first_waiter->site_file, first_waiter->site_line, emu.kernel_name, emu.launch_file,
                     emu.launch_line, format_index(blockIdx), format_index(first_waiter->index),
                     barrier_kind_names[first_waiter->barrier_kind], format_index(finished->index));
    switch (first_waiter->barrier_kind) {
    case CUEMU_BARRIER_COUNT: emu.barrier_result = count; break;
    case CUEMU_BARRIER_AND: emu.barrier_result = count == (int)emu.thread_count; break;
    case CUEMU_BARRIER_OR: emu.barrier_result = count > 0; break;
    default: emu.barrier_result = 0; break;
    }
    for (unsigned int i = 0; i < emu.thread_count; i++) emu.threads[i].state = THREAD_RUNNABLE;
    emu.runnable = emu.thread_count;
    emu.at_barrier = 0;
}

// ------------------------------------------------------------------------------------------------
// Warp operations: a barrier across the lanes named in the mask, plus the exchange of values.
// ------------------------------------------------------------------------------------------------

static int is_shuffle(cuemu_warp_kind kind) {
    return kind == CUEMU_WARP_SHFL_IDX || kind == CUEMU_WARP_SHFL_UP || kind == CUEMU_WARP_SHFL_DOWN ||
           kind == CUEMU_WARP_SHFL_XOR;
}

static int value_is_64_bit(int value_class) {
    return value_class == CUEMU_VALUE_U64 || value_class == CUEMU_VALUE_I64 || value_class == CUEMU_VALUE_F64;
}

// The lane a shuffle reads, as PTX's shfl.sync defines it for CUDA's width argument: lanes form
// segments of `width`; idx wraps within the segment; up/down/xor that leave it (xor may reach lower
// segments) read the caller's own value.
static unsigned int shuffle_source(cuemu_warp_kind kind, unsigned int lane, int argument, int width) {
    unsigned int segment_start = lane & ~(unsigned int)(width - 1), segment_last = segment_start + (unsigned int)width - 1;
    unsigned int value = (unsigned int)argument;
    switch (kind) {
    case CUEMU_WARP_SHFL_IDX: return segment_start | (value & (unsigned int)(width - 1));
    case CUEMU_WARP_SHFL_UP: return value <= lane - segment_start ? lane - value : lane;
    case CUEMU_WARP_SHFL_DOWN: return value <= segment_last - lane ? lane + value : lane;
    default: {
        unsigned int source = lane ^ value;
        return source <= segment_last ? source : lane;
    }
    }
}

static uint64_t reduce_values(cuemu_warp_kind kind, int value_class, uint64_t a, uint64_t b) {
    uint32_t x = (uint32_t)a, y = (uint32_t)b;
    int is_signed = value_class == CUEMU_VALUE_I32;
    switch (kind) {
    case CUEMU_WARP_REDUCE_ADD: return (uint32_t)(x + y);
    case CUEMU_WARP_REDUCE_MIN: return is_signed ? ((int32_t)x < (int32_t)y ? x : y) : (x < y ? x : y);
    case CUEMU_WARP_REDUCE_MAX: return is_signed ? ((int32_t)x > (int32_t)y ? x : y) : (x > y ? x : y);
    case CUEMU_WARP_REDUCE_AND: return x & y;
    case CUEMU_WARP_REDUCE_OR: return x | y;
    default: return x ^ y;
    }
}

static _Noreturn void mismatched_warp_ops(const emu_thread *a, const emu_thread *b) {
    kernel_error("%s:%d: mismatched warp operations in kernel %s (launched at %s:%d), block %s, warp %u: lane %u "
                 "calls %s (mask 0x%08x%s) here while lane %u calls %s (mask 0x%08x%s) at %s:%d; all lanes named in "
                 "a mask must make the same call with the same mask",
                 a->site_file, a->site_line, emu.kernel_name, emu.launch_file, emu.launch_line,
                 format_index(blockIdx), a->linear / 32, a->linear % 32, warp_kind_names[a->warp_kind],
                 a->warp_mask, value_is_64_bit(a->value_class) ? ", 64-bit value" : "", b->linear % 32,
                 warp_kind_names[b->warp_kind], b->warp_mask, value_is_64_bit(b->value_class) ? ", 64-bit value" : "",
                 b->site_file, b->site_line);
}

// Lanes of `warp` that exist (the last warp of a block may be partial) and have not returned.
static unsigned int live_lanes(unsigned int warp) { return emu.warp_exists[warp] & ~emu.warp_done[warp]; }

static void describe_lane(char *text, size_t size, unsigned int warp, unsigned int lane) {
    if (emu.warp_exists[warp] >> lane & 1u)
        snprintf(text, size, "lane %u (thread %s), which has returned from the kernel", lane,
                 format_index(emu.threads[warp * 32 + lane].index));
    else
        snprintf(text, size, "lane %u of warp %u, which does not exist (the block has %u threads)", lane, warp,
                 emu.thread_count);
}

// Every live lane of `mask` waits at a warp operation: check they agree, compute the results and
// release them. `last` is the lane that arrived last and keeps running (NULL when the operation
// completes because the last missing lane returned from the kernel). As on the GPU, lanes of the mask
// that have returned (or do not exist) are not waited for; a shuffle that reads one of them gets
// reported, and one that reads a live lane outside the mask gets all-ones bits (NaN, -1), since
// CUDA leaves both values undefined and the first is nearly always a bug.
static void complete_warp_op(unsigned int warp, unsigned int mask, emu_thread *last) {
    emu_thread *lanes = &emu.threads[warp * 32];
    unsigned int participants = mask & live_lanes(warp);
    const emu_thread *reference = last ? last : &lanes[__builtin_ctz(participants)];
    cuemu_warp_kind kind = reference->warp_kind;
    for (unsigned int rest = participants; rest; rest &= rest - 1) {
        const emu_thread *lane = &lanes[__builtin_ctz(rest)];
        if (lane->warp_kind != kind || lane->warp_mask != mask ||
            value_is_64_bit(lane->value_class) != value_is_64_bit(reference->value_class))
            mismatched_warp_ops(lane, reference);
    }
    if (is_shuffle(kind)) {
        uint64_t undefined_value = value_is_64_bit(reference->value_class) ? ~0ull : 0xffffffffull;
        for (unsigned int rest = participants; rest; rest &= rest - 1) {
            unsigned int l = (unsigned int)__builtin_ctz(rest);
            unsigned int source = shuffle_source(kind, l, lanes[l].warp_argument, lanes[l].warp_width);
            if (source < 32 && (participants >> source & 1u)) {
                lanes[l].warp_result = lanes[source].warp_value;
            } else if (source < 32 && (mask >> source & 1u)) {
                char what[160];
                describe_lane(what, sizeof what, warp, source);
                kernel_error("%s:%d: %s with inactive lanes in kernel %s (launched at %s:%d), block %s: lane %u "
                             "(thread %s) reads %s",
                             lanes[l].site_file, lanes[l].site_line, warp_kind_names[kind], emu.kernel_name,
                             emu.launch_file, emu.launch_line, format_index(blockIdx), l,
                             format_index(lanes[l].index), what);
            } else {
                lanes[l].warp_result = undefined_value;
            }
        }
    } else if (kind != CUEMU_WARP_SYNC) {
        uint64_t result = 0;
        if (kind == CUEMU_WARP_BALLOT || kind == CUEMU_WARP_ANY || kind == CUEMU_WARP_ALL) {
            unsigned int ballot = 0;
            for (unsigned int rest = participants; rest; rest &= rest - 1) {
                unsigned int l = (unsigned int)__builtin_ctz(rest);
                if (lanes[l].warp_value) ballot |= 1u << l;
            }
            result = kind == CUEMU_WARP_BALLOT ? ballot : kind == CUEMU_WARP_ANY ? ballot != 0 : ballot == participants;
        } else {
            result = reference->warp_value;
            for (unsigned int rest = participants; rest; rest &= rest - 1) {
                const emu_thread *lane = &lanes[__builtin_ctz(rest)];
                if (lane != reference) result = reduce_values(kind, reference->value_class, result, lane->warp_value);
            }
        }
        for (unsigned int rest = participants; rest; rest &= rest - 1) lanes[__builtin_ctz(rest)].warp_result = result;
    }
    for (unsigned int rest = participants; rest; rest &= rest - 1) {
        emu_thread *lane = &lanes[__builtin_ctz(rest)];
        if (lane != last) {
            lane->state = THREAD_RUNNABLE;
            emu.runnable++;
            emu.at_warp_op--;
        }
    }
    emu.warp_waiting[warp] &= ~participants;
}

uint64_t cuemu_warp_op(cuemu_warp_kind kind, unsigned int mask, int value_class, uint64_t value, int argument,
                       int width, const char *file, int line) {
    emu_thread *self = current_thread(warp_kind_names[kind], file, line);
    unsigned int warp = self->linear / 32, lane = self->linear % 32, bit = 1u << lane;
    if (!(mask & bit))
        kernel_error("%s:%d: %s in kernel %s (launched at %s:%d), block %s, thread %s: the mask 0x%08x leaves out "
                     "the calling lane %u",
                     file, line, warp_kind_names[kind], emu.kernel_name, emu.launch_file, emu.launch_line,
                     format_index(blockIdx), format_index(self->index), mask, lane);
    if (is_shuffle(kind) && (width < 1 || width > 32 || (width & (width - 1)) != 0))
        kernel_error("%s:%d: %s in kernel %s (launched at %s:%d), block %s, thread %s: width %d is not a power of "
                     "two from 1 to 32",
                     file, line, warp_kind_names[kind], emu.kernel_name, emu.launch_file, emu.launch_line,
                     format_index(blockIdx), format_index(self->index), width);
    self->warp_kind = kind;
    self->warp_mask = mask;
    self->value_class = value_class;
    self->warp_value = value;
    self->warp_argument = argument;
    self->warp_width = width;
    self->site_file = file;
    self->site_line = line;
    emu.warp_waiting[warp] |= bit;
    unsigned int needed = mask & live_lanes(warp);
    if ((emu.warp_waiting[warp] & needed) == needed) {
        complete_warp_op(warp, mask, self);
        return self->warp_result;
    }
    self->state = THREAD_AT_WARP_OP;
    emu.runnable--;
    emu.at_warp_op++;
    switch_away(self, 0);
    return self->warp_result;
}

unsigned int cuemu_activemask(const char *file, int line) {
    emu_thread *self = current_thread("__activemask", file, line);
    unsigned int warp = self->linear / 32;
    return emu.warp_exists[warp] & ~emu.warp_done[warp];
}

// ------------------------------------------------------------------------------------------------
// Threads and blocks.
// ------------------------------------------------------------------------------------------------

static _Noreturn void finish_thread(emu_thread *self) {
    unsigned int warp = self->linear / 32, lane = self->linear % 32, bit = 1u << lane;
    self->state = THREAD_DONE;
    emu.runnable--;
    emu.done++;
    emu.warp_done[warp] |= bit;
    // Lanes waiting at a warp operation whose mask names this lane stop waiting for it: the operation
    // completes if everyone else it names has arrived.
    for (int completed = 1; completed;) {
        completed = 0;
        for (unsigned int rest = emu.warp_waiting[warp]; rest && !completed; rest &= rest - 1) {
            const emu_thread *waiter = &emu.threads[warp * 32 + (unsigned int)__builtin_ctz(rest)];
            unsigned int needed = waiter->warp_mask & live_lanes(warp);
            if ((waiter->warp_mask & bit) && (emu.warp_waiting[warp] & needed) == needed) {
                complete_warp_op(warp, waiter->warp_mask, NULL);
                completed = 1;  // the waiting set changed: look again
            }
        }
    }
    switch_away(self, 1);
    abort();  // a finished fiber is never resumed
}

static void thread_main(void *argument) {
    emu_thread *self = argument;
    emu.thunk(emu.args);
    finish_thread(self);
}

static void report_deadlock(void) {
    for (unsigned int i = 0; i < emu.thread_count; i++) {
        const emu_thread *waiter = &emu.threads[i];
        if (waiter->state != THREAD_AT_WARP_OP) continue;
        unsigned int warp = i / 32, missing = waiter->warp_mask & live_lanes(warp) & ~emu.warp_waiting[warp];
        if (!missing) {
            // Everyone it names has arrived, yet the operation did not complete: some disagree on the mask.
            for (unsigned int rest = waiter->warp_mask; rest; rest &= rest - 1) {
                const emu_thread *other = &emu.threads[warp * 32 + (unsigned int)__builtin_ctz(rest)];
                if (other->warp_mask != waiter->warp_mask) mismatched_warp_ops(waiter, other);
            }
            continue;
        }
        const emu_thread *other = &emu.threads[warp * 32 + (unsigned int)__builtin_ctz(missing)];
        char what[160];
        if (other->state == THREAD_AT_BARRIER)
            snprintf(what, sizeof what, "which waits at %s at %s:%d", barrier_kind_names[other->barrier_kind],
                     other->site_file, other->site_line);
        else
            snprintf(what, sizeof what, "which cannot run");
        kernel_error("%s:%d: deadlock in kernel %s (launched at %s:%d), block %s: thread %s waits at %s here for lane "
                     "%u (thread %s), %s",
                     waiter->site_file, waiter->site_line, emu.kernel_name, emu.launch_file, emu.launch_line,
                     format_index(blockIdx), format_index(waiter->index), warp_kind_names[waiter->warp_kind],
                     other->linear % 32, format_index(other->index), what);
    }
    kernel_error("deadlock in kernel %s (launched at %s:%d), block %s: no thread can run", emu.kernel_name,
                 emu.launch_file, emu.launch_line, format_index(blockIdx));
}

// Static __shared__ variables: the section "cuemu_shared" of the program, bounded by the symbols
// the linker defines for sections named like C identifiers. Weak, for programs without kernels.
extern char __start_cuemu_shared[] __attribute__((weak));
extern char __stop_cuemu_shared[] __attribute__((weak));

// Under ASan the section also holds the redzones of its variables, which must not be touched through
// instrumented code or the memset interceptor: this loop is not instrumented, and its stores are
// volatile so that the compiler does not turn it back into a memset call.
#if CUEMU_ASAN
__attribute__((no_sanitize_address))
#endif
static void fill_unchecked(char *begin, char *end, unsigned char byte) {
#if CUEMU_ASAN
    volatile unsigned char *bytes = (volatile unsigned char *)begin;
    while ((uintptr_t)bytes < (uintptr_t)end && ((uintptr_t)bytes & 7u)) *bytes++ = byte;
    volatile uint64_t *words = (volatile uint64_t *)bytes;
    uint64_t pattern = 0x0101010101010101ull * byte;
    while ((uintptr_t)(words + 1) <= (uintptr_t)end) *words++ = pattern;
    bytes = (volatile unsigned char *)words;
    while ((uintptr_t)bytes < (uintptr_t)end) *bytes++ = byte;
#else
    if (end > begin) memset(begin, byte, (size_t)(end - begin));
#endif
}

static void prepare_order(void) {
    unsigned int n = emu.thread_count;
    for (unsigned int i = 0; i < n; i++)
        emu.order_of_threads[i] = emu.order == CUEMU_ORDER_REVERSE ? n - 1 - i : i;
}

static void shuffle_order(void) {
    for (unsigned int i = emu.thread_count - 1; i > 0; i--) {
        unsigned int j = random_below(&emu.order_rng, i + 1);
        unsigned int swap = emu.order_of_threads[i];
        emu.order_of_threads[i] = emu.order_of_threads[j];
        emu.order_of_threads[j] = swap;
    }
}

static void run_block(size_t dynamic_shared_bytes) {
    unsigned int n = emu.thread_count;
    for (unsigned int i = 0; i < n; i++) {
        emu_thread *thread = &emu.threads[i];
        thread->state = THREAD_RUNNABLE;
        // Stagger the stack tops by cache lines (by up to an eighth of the stack): equally aligned tops
        // all fall into the same cache sets, and a 1024-thread block then thrashed the cache (the 1M
        // reduction with 1024-thread blocks took 145 ms instead of 60).
        size_t stagger = (i % 128) * 64 % (emu.stacks_size / 8);
        cuemu_fiber_prepare(&thread->fiber, emu.backend, emu.stacks[i], emu.stacks_size - stagger, thread_main,
                            thread);
    }
    memset(emu.warp_done, 0, sizeof emu.warp_done);
    memset(emu.warp_waiting, 0, sizeof emu.warp_waiting);
    emu.runnable = n;
    emu.at_barrier = emu.at_warp_op = emu.done = 0;
    // Shared memory starts as garbage on a GPU: 0xFF bytes read as NaN floats and -1 integers.
    fill_unchecked(__start_cuemu_shared, __stop_cuemu_shared, 0xff);
    if (dynamic_shared_bytes) memset(cuemu_dynamic_shared_memory, 0xff, dynamic_shared_bytes);

    for (;;) {
        if (emu.order == CUEMU_ORDER_RANDOM) shuffle_order();
        emu.cursor = 0;
        emu_thread *first = next_in_round();
        if (first) {
            threadIdx = first->index;
            emu.current = first;
            emu.switches++;
            cuemu_fiber_switch(&emu.scheduler, &first->fiber, emu.backend, 0);
            emu.current = NULL;
            if (emu.fatal) print_fatal_and_exit(emu.fatal_message);
        }
        if (emu.done == n) return;
        if (emu.runnable) continue;  // lanes released by a warp operation after the round passed them
        if (emu.at_warp_op == 0) {
            release_barrier();
            continue;
        }
        report_deadlock();
    }
}

// A kernel thread that overflows its fiber stack faults in the guard page below it: report that in
// one line naming the kernel and thread (not a bare "Segmentation fault"). Under AddressSanitizer its
// own handler reports the fault instead. The handler runs on an alternate signal stack, since the
// faulting stack has no room left; it is installed at the first launch and hands faults that are not
// guard-page hits back to the previous handler.
#if !CUEMU_ASAN
static struct sigaction previous_segv_action;
static int segv_handler_installed;
static _Thread_local char *alternate_signal_stack;

static void on_segv(int signal_number, siginfo_t *info, void *context) {
    (void)signal_number;
    (void)context;
    uintptr_t address = (uintptr_t)info->si_addr, page = cuemu_page_size();
    for (unsigned int i = 0; in_launch && i < emu.thread_count; i++) {
        uintptr_t stack = (uintptr_t)emu.stacks[i];
        if (stack && address >= stack - page && address < stack) {
            // Not async-signal-safe in theory (snprintf); the process ends right after.
            char message[512];
            int length = snprintf(message, sizeof message,
                                  "cuemu: error: stack overflow in kernel %s (launched at %s:%d), block %s, thread "
                                  "%s: its fiber stack has %zu bytes; raise CUEMU_STACK_SIZE or shrink its locals\n",
                                  emu.kernel_name, emu.launch_file, emu.launch_line, format_index(blockIdx),
                                  format_index(emu.threads[i].index), emu.stacks_size);
            if (length > 0) {
                ssize_t written = write(2, message, (size_t)length);
                (void)written;  // nothing to do if stderr is gone
            }
            _exit(KERNEL_ERROR_EXIT_STATUS);
        }
    }
    // Not ours: restore the previous disposition; the faulting instruction runs again and gets it.
    sigaction(SIGSEGV, &previous_segv_action, NULL);
}

static void install_stack_overflow_handler(void) {
    stack_t current;
    if (!alternate_signal_stack && sigaltstack(NULL, &current) == 0 && (current.ss_flags & SS_DISABLE)) {
        size_t size = 64 * 1024;
        alternate_signal_stack = malloc(size);
        if (alternate_signal_stack) {
            stack_t alternate = {.ss_sp = alternate_signal_stack, .ss_size = size, .ss_flags = 0};
            sigaltstack(&alternate, NULL);
        }
    }
    if (segv_handler_installed) return;
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = on_segv;
    action.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&action.sa_mask);
    if (sigaction(SIGSEGV, &action, &previous_segv_action) == 0) segv_handler_installed = 1;
}
#else
static void install_stack_overflow_handler(void) {}
#endif

static cuemu_error check_launch(const char *kernel_name, const void *kernel, dim3 grid, dim3 block,
                                size_t dynamic_shared_bytes, const char *file, int line) {
    unsigned long long threads = (unsigned long long)block.x * block.y * block.z;
    if (block.x == 0 || block.y == 0 || block.z == 0 || block.x > 1024 || block.y > 1024 || block.z > 64 ||
        threads > MAX_BLOCK_THREADS)
        return record_launch_error(CUEMU_ERROR_INVALID_CONFIGURATION,
                                   "%s:%d: launch of %s: invalid block (%u,%u,%u): each dimension must be at least 1, "
                                   "x and y at most 1024, z at most 64, and x*y*z at most 1024 threads",
                                   file, line, kernel_name, block.x, block.y, block.z);
    if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 2147483647u || grid.y > 65535 || grid.z > 65535)
        return record_launch_error(CUEMU_ERROR_INVALID_CONFIGURATION,
                                   "%s:%d: launch of %s: invalid grid (%u,%u,%u): each dimension must be at least 1, x "
                                   "at most 2^31-1, y and z at most 65535",
                                   file, line, kernel_name, grid.x, grid.y, grid.z);
    size_t limit = dynamic_shared_limit(kernel);
    if (dynamic_shared_bytes > limit)
        return record_launch_error(CUEMU_ERROR_INVALID_VALUE,
                                   "%s:%d: launch of %s: %zu bytes of dynamic shared memory, more than the %zu allowed "
                                   "(above 48 KiB needs cudaFuncAttributeMaxDynamicSharedMemorySize, at most 227 KiB)",
                                   file, line, kernel_name, dynamic_shared_bytes, limit);
    return CUEMU_SUCCESS;
}

// Makes the stack pool hold `count` stacks of the configured size and the thread table exist.
static void prepare_threads(unsigned int count) {
    if (emu.stacks_size != emu.stack_size) {
        for (unsigned int i = 0; i < MAX_BLOCK_THREADS; i++) {
            cuemu_stack_free(emu.stacks[i], emu.stacks_size);
            emu.stacks[i] = NULL;
        }
        emu.stacks_size = emu.stack_size;
    }
    for (unsigned int i = 0; i < count; i++) {
        if (emu.stacks[i]) continue;
        emu.stacks[i] = cuemu_stack_allocate(emu.stacks_size);
        if (!emu.stacks[i])
            configuration_error("out of memory for %u fiber stacks of %zu bytes (CUEMU_STACK_SIZE)", count,
                                emu.stacks_size);
    }
    if (!emu.threads) {
        emu.threads = calloc(MAX_BLOCK_THREADS, sizeof *emu.threads);
        if (!emu.threads) configuration_error("out of memory for the thread table");
    }
}

cuemu_error cuemu_launch(const char *kernel_name, const void *kernel, cuemu_thunk thunk, void *args, dim3 grid,
                         dim3 block, size_t dynamic_shared_bytes, const char *file, int line) {
    if (in_launch) {
        if (emu.current)
            kernel_error("%s:%d: kernel %s launches kernel %s from device code: dynamic parallelism is not emulated",
                         file, line, emu.kernel_name, kernel_name);
        kernel_error("%s:%d: launch of %s while this thread runs kernel %s", file, line, kernel_name, emu.kernel_name);
    }
    cuemu_error status = check_launch(kernel_name, kernel, grid, block, dynamic_shared_bytes, file, line);
    if (status != CUEMU_SUCCESS) return status;

    pthread_mutex_lock(&launch_lock);
    pthread_mutex_lock(&config_lock);
    read_environment_locked();
    emu.order = config.order;
    emu.order_rng = config.order_rng;
    emu.order_generation = config.order_generation;
    emu.backend = config.backend;
    emu.stack_size = config.stack_size;
    pthread_mutex_unlock(&config_lock);
    in_launch = 1;
    install_stack_overflow_handler();

    unsigned int count = block.x * block.y * block.z;
    prepare_threads(count);
    for (unsigned int i = 0; i < count; i++) {
        emu_thread *thread = &emu.threads[i];
        thread->linear = i;
        thread->index.x = i % block.x;
        thread->index.y = i / block.x % block.y;
        thread->index.z = i / (block.x * block.y);
    }
    for (unsigned int warp = 0; warp < MAX_WARPS; warp++) {
        unsigned int first = warp * 32;
        emu.warp_exists[warp] = first >= count ? 0u : count - first >= 32 ? 0xffffffffu : (1u << (count - first)) - 1u;
    }
    emu.thread_count = count;
    emu.kernel_name = kernel_name;
    emu.launch_file = file;
    emu.launch_line = line;
    emu.thunk = thunk;
    emu.args = args;
    emu.fatal = 0;
    emu.switches = 0;
    cuemu_fiber_reset_os_thread(&emu.scheduler);  // its stack bounds are learned per launch
    prepare_order();

    void *dynamic_shared = NULL;
    // Exactly the requested size, so that AddressSanitizer flags the first byte past the end.
    if (posix_memalign(&dynamic_shared, 64, dynamic_shared_bytes ? dynamic_shared_bytes : 1) != 0)
        configuration_error("out of memory for %zu bytes of dynamic shared memory", dynamic_shared_bytes);
    cuemu_dynamic_shared_memory = dynamic_shared;
    gridDim = grid;
    blockDim = block;

    // Blocks run in the thread order too: forward, reverse, or a seeded affine permutation
    // k -> (a k + c) mod n with gcd(a, n) = 1, which visits every block once.
    uint64_t block_count = (uint64_t)grid.x * grid.y * grid.z, multiplier = 1, offset = 0;
    if (emu.order == CUEMU_ORDER_RANDOM && block_count > 1 && block_count <= UINT32_MAX) {
        multiplier = 1 + random_below(&emu.order_rng, block_count - 1);
        for (;;) {
            uint64_t a = multiplier, b = block_count;
            while (b) {
                uint64_t t = a % b;
                a = b;
                b = t;
            }
            if (a == 1) break;
            multiplier = multiplier + 1 < block_count ? multiplier + 1 : 1;
        }
        offset = random_below(&emu.order_rng, block_count);
    }
    for (uint64_t k = 0; k < block_count; k++) {
        uint64_t b = k;
        if (emu.order == CUEMU_ORDER_REVERSE) b = block_count - 1 - k;
        else if (multiplier != 1 || offset != 0) b = (multiplier * k + offset) % block_count;
        blockIdx.x = (unsigned int)(b % grid.x);
        blockIdx.y = (unsigned int)(b / grid.x % grid.y);
        blockIdx.z = (unsigned int)(b / ((uint64_t)grid.x * grid.y));
        run_block(dynamic_shared_bytes);
    }

    free(dynamic_shared);
    cuemu_dynamic_shared_memory = NULL;
    memset(&threadIdx, 0, sizeof threadIdx);
    memset(&blockIdx, 0, sizeof blockIdx);
    in_launch = 0;

    pthread_mutex_lock(&config_lock);
    if (config.order_generation == emu.order_generation) config.order_rng = emu.order_rng;
    config.stats.launches++;
    config.stats.blocks += block_count;
    config.stats.threads += block_count * count;
    config.stats.switches += emu.switches;
    pthread_mutex_unlock(&config_lock);
    pthread_mutex_unlock(&launch_lock);
    return CUEMU_SUCCESS;
}

// ------------------------------------------------------------------------------------------------
// Measuring the switch.
// ------------------------------------------------------------------------------------------------

static cuemu_fiber bench_caller, bench_partner;
static cuemu_fiber_backend bench_backend;

static void bench_partner_main(void *argument) {
    (void)argument;
    for (;;) cuemu_fiber_switch(&bench_partner, &bench_caller, bench_backend, 0);
}

double cuemu_measure_switch_ns(long round_trips) {
    if (round_trips < 1) round_trips = 1;
    pthread_mutex_lock(&launch_lock);
    pthread_mutex_lock(&config_lock);
    read_environment_locked();
    bench_backend = config.backend;
    size_t size = config.stack_size;
    pthread_mutex_unlock(&config_lock);
    char *stack = cuemu_stack_allocate(size);
    if (!stack) configuration_error("out of memory for a fiber stack of %zu bytes", size);
    cuemu_fiber_reset_os_thread(&bench_caller);
    cuemu_fiber_prepare(&bench_partner, bench_backend, stack, size, bench_partner_main, NULL);
    cuemu_fiber_switch(&bench_caller, &bench_partner, bench_backend, 0);  // starts the partner
    struct timespec start, end;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (long i = 0; i < round_trips; i++) cuemu_fiber_switch(&bench_caller, &bench_partner, bench_backend, 0);
    clock_gettime(CLOCK_MONOTONIC, &end);
    cuemu_stack_free(stack, size);  // the partner is abandoned, suspended
    pthread_mutex_unlock(&launch_lock);
    double seconds = (double)(end.tv_sec - start.tv_sec) + (double)(end.tv_nsec - start.tv_nsec) * 1e-9;
    return seconds * 1e9 / (2.0 * (double)round_trips);
}
