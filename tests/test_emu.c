// Tests of the CUDA emulator (kernels/emu) through the kernels in kernels/emu/tests/emu_test_kernels.cu:
// a block reduction in every thread order and on both fiber backends, indices of 2-D/3-D launches,
// shuffles, votes, atomics, dynamic shared memory, math and fp16/bf16, launch-configuration errors,
// and the seeded bugs the emulator must expose: a missing __syncthreads (wrong result in some order),
// divergent barriers and deadlocks (reported with their sites, in a child process), uninitialised
// shared memory (reads the 0xFF poison), out-of-bounds writes (caught by AddressSanitizer).
// `test_emu --bench` measures the fiber switch and a 1M-float reduction instead.
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "engine/dtype.h"
#include "kernels/emu/cuemu_host.h"
#include "kernels/emu/tests/emu_test_kernels.h"
#include "tests/check.h"

TEST_MAIN_COUNTERS;

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

static const char *const orders[] = {"forward", "reverse", "random:1", "random:20240601"};
enum { ORDER_COUNT = sizeof orders / sizeof orders[0] };

static uint32_t float_bits(float value) {
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    return bits;
}

static float *filled_floats(int n, uint64_t seed) {
    float *x = malloc((size_t)n * sizeof *x);
    for (int i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((seed >> 40) % 2001) / 1000.0f - 1.0f;  // in [-1, 1], exact in float
    }
    return x;
}

// ------------------------------------------------------------------------------------------------
// Child processes, for errors that end the program.
// ------------------------------------------------------------------------------------------------

typedef struct child_result {
    int exited, exit_status, signalled;
    char output[8192];
} child_result;

// Runs body(argument) in a forked child with stdout and stderr captured; the child exits 0 if the
// body returns.
static child_result run_in_child(void (*body)(void *), void *argument) {
    child_result result;
    memset(&result, 0, sizeof result);
    int fds[2];
    if (pipe(fds) != 0) {
        snprintf(result.output, sizeof result.output, "pipe failed");
        return result;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], 1);
        dup2(fds[1], 2);
        body(argument);
        fflush(NULL);
        _exit(0);
    }
    close(fds[1]);
    size_t used = 0;
    for (;;) {
        ssize_t got = read(fds[0], result.output + used, sizeof result.output - 1 - used);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) break;
        used += (size_t)got;
        if (used == sizeof result.output - 1) {  // keep draining so the child never blocks
            char sink[4096];
            while (read(fds[0], sink, sizeof sink) > 0) {}
            break;
        }
    }
    result.output[used] = '\0';
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    result.exited = WIFEXITED(status);
    result.exit_status = result.exited ? WEXITSTATUS(status) : -1;
    result.signalled = WIFSIGNALED(status);
    return result;
}

// The child must have failed and printed every one of the given fragments.
#define CHECK_CHILD_FAILED_WITH(result, ...)                                                              \
    do {                                                                                                  \
        const char *fragments_[] = {__VA_ARGS__};                                                         \
        CHECK_MSG(((result).exited && (result).exit_status != 0) || (result).signalled,                   \
                  "child exited with status %d; output: %s", (result).exit_status, (result).output);       \
        for (size_t f_ = 0; f_ < sizeof fragments_ / sizeof fragments_[0]; f_++)                           \
            CHECK_MSG(strstr((result).output, fragments_[f_]) != NULL, "\"%s\" missing from: %s",           \
                      fragments_[f_], (result).output);                                                   \
    } while (0)

// ------------------------------------------------------------------------------------------------
// Block reduction.
// ------------------------------------------------------------------------------------------------

// Sum of x through two launches of the block-sum kernel (blocks partials, then one block of them).
static float emulated_sum(const float *x, int n, int blocks, int threads, int missing_sync) {
    float *partials = malloc((size_t)blocks * sizeof *partials), total = NAN;
    for (int b = 0; b < blocks; b++) partials[b] = NAN;
    if (missing_sync) {
        emu_block_sum_missing_sync(x, partials, n, blocks, threads, NULL);
        emu_block_sum_missing_sync(partials, &total, blocks, 1, threads, NULL);
    } else {
        emu_block_sum(x, partials, n, blocks, threads, NULL);
        emu_block_sum(partials, &total, blocks, 1, threads, NULL);
    }
    free(partials);
    return total;
}

static double reference_sum(const float *x, int n, double *sum_abs) {
    double sum = 0, magnitude = 0;
    for (int i = 0; i < n; i++) {
        sum += x[i];
        magnitude += fabs(x[i]);
    }
    *sum_abs = magnitude;
    return sum;
}

TEST(block_reduction_in_every_order) {
    static const int shapes[][3] = {{100003, 7, 256}, {1, 1, 64}, {4099, 3, 1024}, {65536, 16, 128}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int n = shapes[s][0], blocks = shapes[s][1], threads = shapes[s][2];
        float *x = filled_floats(n, 1000 + s);
        double magnitude, expected = reference_sum(x, n, &magnitude);
        for (int o = 0; o < ORDER_COUNT; o++) {
            CHECK(cuemu_set_thread_order_string(orders[o]) == 0);
            float got = emulated_sum(x, n, blocks, threads, 0);
            // f32 accumulation in a different order than the f64 reference: relative to sum |x|.
            CHECK_MSG(fabs(got - expected) <= 1e-6 * magnitude + 1e-6, "n=%d blocks=%d threads=%d order %s: %.9g vs %.9g",
                      n, blocks, threads, orders[o], got, expected);
        }
        free(x);
    }
    cuemu_set_thread_order(CUEMU_ORDER_FORWARD, 0);
}

TEST(block_reduction_on_ucontext_fibers) {
    CHECK(cuemu_set_fiber_backend(CUEMU_FIBER_UCONTEXT) == 0);
    CHECK(cuemu_get_fiber_backend() == CUEMU_FIBER_UCONTEXT);
    int n = 20011;
    float *x = filled_floats(n, 77);
    double magnitude, expected = reference_sum(x, n, &magnitude);
    for (int o = 0; o < 3; o++) {
        CHECK(cuemu_set_thread_order_string(orders[o]) == 0);
        float got = emulated_sum(x, n, 5, 256, 0);
        CHECK_MSG(fabs(got - expected) <= 1e-6 * magnitude + 1e-6, "order %s: %.9g vs %.9g", orders[o], got, expected);
    }
    free(x);
    cuemu_set_thread_order(CUEMU_ORDER_FORWARD, 0);
    // Back to the default (assembly where the build has it).
    if (cuemu_set_fiber_backend(CUEMU_FIBER_ASM) != 0) CHECK(cuemu_get_fiber_backend() == CUEMU_FIBER_UCONTEXT);
}

TEST(small_stacks_suffice_for_kernels) {
    size_t saved = cuemu_get_stack_size();
    cuemu_set_stack_size(1000);  // rounded up to the 16 KiB minimum
    CHECK(cuemu_get_stack_size() == 16 * 1024);
    int n = 5000;
    float *x = filled_floats(n, 5);
    double magnitude, expected = reference_sum(x, n, &magnitude);
    float got = emulated_sum(x, n, 3, 256, 0);
    CHECK(fabs(got - expected) <= 1e-6 * magnitude + 1e-6);
    cuemu_set_stack_size(saved);
    CHECK(cuemu_get_stack_size() == saved);
    free(x);
}

typedef struct reduction_job {
    const float *x;
    int n, repeats, wrong;
    double expected, magnitude;
} reduction_job;

static void *run_reductions(void *argument) {
    reduction_job *job = argument;
    for (int r = 0; r < job->repeats; r++) {
        float got = emulated_sum(job->x, job->n, 3, 128, 0);
        job->wrong += !(fabs(got - job->expected) <= 1e-6 * job->magnitude + 1e-6);
    }
    return NULL;
}

// Launches from several OS threads take turns (static shared memory is one per process); each runs
// its blocks on its own stack.
TEST(launches_from_two_threads) {
    int n = 3001;
    float *x = filled_floats(n, 8);
    reduction_job jobs[2];
    pthread_t threads[2];
    for (int j = 0; j < 2; j++) {
        jobs[j].x = x;
        jobs[j].n = n;
        jobs[j].repeats = 20;
        jobs[j].wrong = 0;
        jobs[j].expected = reference_sum(x, n, &jobs[j].magnitude);
        CHECK(pthread_create(&threads[j], NULL, run_reductions, &jobs[j]) == 0);
    }
    for (int j = 0; j < 2; j++) {
        pthread_join(threads[j], NULL);
        CHECK_MSG(jobs[j].wrong == 0, "thread %d: %d wrong sums", j, jobs[j].wrong);
    }
    free(x);
}

// Seeded bug (a): without the barrier in the tree loop the answer depends on the thread order.
TEST(missing_syncthreads_gives_a_wrong_sum_in_some_order) {
    int n = 8192;
    float *x = filled_floats(n, 99);
    for (int i = 0; i < n; i++) x[i] = fabsf(x[i]) + 0.25f;  // no cancellation can hide a lost term
    double magnitude, expected = reference_sum(x, n, &magnitude);
    char wrong_in[64] = "";
    for (int o = 0; o < 2; o++) {
        CHECK(cuemu_set_thread_order_string(orders[o]) == 0);
        float got = emulated_sum(x, n, 4, 256, 1);
        if (!(fabs(got - expected) <= 1e-6 * magnitude)) {
            strcat(wrong_in, wrong_in[0] ? " and " : "");
            strcat(wrong_in, orders[o]);
        }
    }
    // A seeded random order reproduces: the same seed gives the same (wrong) bits.
    float first = 0, second = 0;
    cuemu_set_thread_order(CUEMU_ORDER_RANDOM, 3);
    first = emulated_sum(x, n, 4, 256, 1);
    cuemu_set_thread_order(CUEMU_ORDER_RANDOM, 3);
    second = emulated_sum(x, n, 4, 256, 1);
    CHECK(float_bits(first) == float_bits(second));
    cuemu_set_thread_order(CUEMU_ORDER_FORWARD, 0);
    CHECK_MSG(wrong_in[0] != '\0', "the missing barrier went unnoticed in forward and reverse order");
    printf("report: missing __syncthreads in the tree reduction gives a wrong sum in %s order\n", wrong_in);
    free(x);
}

// ------------------------------------------------------------------------------------------------
// Errors reported by the emulator (in child processes).
// ------------------------------------------------------------------------------------------------

static void run_divergent_barrier(void *unused) {
    (void)unused;
    static float out[64];
    emu_divergent_barrier(out, 64, NULL);
}

static void run_early_return_barrier(void *unused) {
    (void)unused;
    static float out[64];
    emu_early_return_barrier(out, 40, 64, NULL);
}

static void run_warp_deadlock(void *unused) {
    (void)unused;
    static float out[32];
    emu_warp_deadlock(out, NULL);
}

static void run_partial_warp_shuffle(void *unused) {
    (void)unused;
    static float out[48];
    emu_inactive_lane_shuffle(out, 48, -1, NULL);
}

static void run_exited_lane_shuffle(void *order) {
    static float out[32];
    cuemu_set_thread_order_string((const char *)order);
    emu_inactive_lane_shuffle(out, 32, 3, NULL);
}

// Seeded bug (b): a divergent barrier is reported with both call sites, in any thread order.
TEST(divergent_barrier_is_reported_with_both_sites) {
    char site_a[96], site_b[96];
    snprintf(site_a, sizeof site_a, "emu_test_kernels.cu:%d", emu_barrier_site_a_line);
    snprintf(site_b, sizeof site_b, "emu_test_kernels.cu:%d", emu_barrier_site_b_line);
    child_result result = run_in_child(run_divergent_barrier, NULL);
    CHECK_CHILD_FAILED_WITH(result, "cuemu: error: ", "divergent barrier", "emu_divergent_barrier_kernel", site_a,
                            site_b, "block (0,0,0)");
    if (getenv("TEST_VERBOSE")) printf("  %s", result.output);

    result = run_in_child(run_early_return_barrier, NULL);
    CHECK_CHILD_FAILED_WITH(result, "divergent barrier", site_a, "has returned from the kernel");
}

TEST(deadlock_between_barrier_and_shuffle_is_reported) {
    char site_a[96];
    snprintf(site_a, sizeof site_a, "emu_test_kernels.cu:%d", emu_barrier_site_a_line);
    child_result result = run_in_child(run_warp_deadlock, NULL);
    CHECK_CHILD_FAILED_WITH(result, "deadlock in kernel emu_warp_deadlock_kernel", "__shfl_xor_sync", site_a,
                            "lane 0");
}

TEST(shuffle_with_inactive_lanes_is_reported) {
    child_result result = run_in_child(run_partial_warp_shuffle, NULL);
    CHECK_CHILD_FAILED_WITH(result, "__shfl_xor_sync with inactive lanes", "reads lane 16 of warp 1, which does not exist",
                            "the block has 48 threads", "emu_test_kernels.cu:");
    for (int o = 0; o < 2; o++) {  // lane 3 returns before or after the others wait for it
        result = run_in_child(run_exited_lane_shuffle, (void *)orders[o]);
        CHECK_CHILD_FAILED_WITH(result, "__shfl_xor_sync with inactive lanes", "lane 19 (thread (19,0,0)) reads lane 3",
                                "has returned from the kernel");
    }
}

static void run_bad_warp_op(void *mode) {
    static unsigned int out[32];
    emu_bad_warp_op(out, (int)(intptr_t)mode, NULL);
}

TEST(invalid_warp_operations_are_reported) {
    child_result result = run_in_child(run_bad_warp_op, (void *)(intptr_t)0);
    CHECK_CHILD_FAILED_WITH(result, "mismatched warp operations in kernel emu_bad_warp_op_kernel", "__ballot_sync",
                            "__shfl_xor_sync", "mask 0xffffffff");
    result = run_in_child(run_bad_warp_op, (void *)(intptr_t)1);
    CHECK_CHILD_FAILED_WITH(result, "__ballot_sync in kernel emu_bad_warp_op_kernel",
                            "the mask 0xfffffffe leaves out the calling lane 0");
    result = run_in_child(run_bad_warp_op, (void *)(intptr_t)2);
    CHECK_CHILD_FAILED_WITH(result, "__shfl_down_sync", "width 12 is not a power of two");
}

// The legal side of the same situation: warp operations wait only for lanes that are still running.
TEST(warp_votes_skip_lanes_that_are_gone) {
    unsigned int out[48];
    for (int o = 0; o < 2; o++) {
        CHECK(cuemu_set_thread_order_string(orders[o]) == 0);
        for (int exit_lane = -1; exit_lane < 48; exit_lane += 20) {  // none, 19, 39
            memset(out, 0, sizeof out);
            emu_partial_warp_vote(out, 48, exit_lane, NULL);
            for (int t = 0; t < 48; t++) {
                unsigned int expected = t < 32 ? 0xffffffffu : 0x0000ffffu;
                if (exit_lane >= 0 && exit_lane / 32 == t / 32) expected &= ~(1u << (exit_lane % 32));
                if (t == exit_lane) expected = 0;
                CHECK_MSG(out[t] == expected, "order %s, lane %d returned: thread %d got %08x, expected %08x", orders[o],
                          exit_lane, t, out[t], expected);
            }
        }
    }
    cuemu_set_thread_order(CUEMU_ORDER_FORWARD, 0);
}

static void run_with_bad_order_variable(void *unused) {
    (void)unused;
    setenv("CUEMU_THREAD_ORDER", "sideways", 1);
    static float partials[1];
    static const float x[1] = {1.0f};
    emu_block_sum(x, partials, 1, 1, 64, NULL);
}

// Forked at the start of main, before this process reads the emulator's settings.
static child_result bad_order_child;

TEST(bad_thread_order_variable_is_reported) {
    CHECK_MSG(bad_order_child.exited && bad_order_child.exit_status == 2, "status %d", bad_order_child.exit_status);
    CHECK_MSG(strstr(bad_order_child.output, "cuemu: error: CUEMU_THREAD_ORDER='sideways': expected forward, "
                                             "reverse or random:SEED") != NULL,
              "output: %s", bad_order_child.output);
}

TEST(thread_order_setting) {
    uint64_t seed = 0;
    CHECK(cuemu_set_thread_order_string("random:7") == 0);
    CHECK(cuemu_get_thread_order(&seed) == CUEMU_ORDER_RANDOM && seed == 7);
    CHECK(strcmp(cuemu_thread_order_string(), "random:7") == 0);
    CHECK(cuemu_set_thread_order_string("reverse") == 0);
    CHECK(strcmp(cuemu_thread_order_string(), "reverse") == 0);
    CHECK(cuemu_set_thread_order_string("random:") == -1);
    CHECK(cuemu_set_thread_order_string("random:12x") == -1);
    CHECK(cuemu_set_thread_order_string("backwards") == -1);
    CHECK(cuemu_get_thread_order(NULL) == CUEMU_ORDER_REVERSE);  // unchanged by the bad strings
    cuemu_set_thread_order(CUEMU_ORDER_FORWARD, 0);
    CHECK(strcmp(cuemu_thread_order_string(), "forward") == 0);
}

// ------------------------------------------------------------------------------------------------
// Shared memory.
// ------------------------------------------------------------------------------------------------

// Seeded bug (c): unwritten shared memory reads as the 0xFF poison (a NaN), even where a previous
// block of the same launch wrote it.
TEST(uninitialized_shared_memory_reads_the_poison) {
    enum { BLOCKS = 3, THREADS = 128, VALID = 100 };
    float out[BLOCKS * THREADS];
    for (int o = 0; o < ORDER_COUNT; o++) {
        CHECK(cuemu_set_thread_order_string(orders[o]) == 0);
        for (int i = 0; i < BLOCKS * THREADS; i++) out[i] = 0.0f;
        emu_uninitialized_shared(out, VALID, BLOCKS, THREADS, NULL);
        int poisoned = 0, wrong = 0;
        for (int b = 0; b < BLOCKS; b++) {
            for (int t = 0; t < THREADS; t++) {
                float v = out[b * THREADS + t];
                if (b == 0 || t < VALID)
                    wrong += v != 1.0f + (float)b;
                else
                    poisoned += float_bits(v) == 0xffffffffu && isnan(v);
            }
        }
        CHECK_MSG(wrong == 0, "order %s: %d written elements wrong", orders[o], wrong);
        CHECK_MSG(poisoned == (BLOCKS - 1) * (THREADS - VALID), "order %s: %d of %d unwritten elements read the poison",
                  orders[o], poisoned, (BLOCKS - 1) * (THREADS - VALID));
    }
    cuemu_set_thread_order(CUEMU_ORDER_FORWARD, 0);
}

TEST(dynamic_shared_memory) {
    enum { BLOCKS = 3, THREADS = 96, N = BLOCKS * THREADS };
    float x[N], y[N];
    for (int i = 0; i < N; i++) x[i] = (float)i;
    for (int o = 0; o < 2; o++) {
        CHECK(cuemu_set_thread_order_string(orders[o]) == 0);
        emu_dynamic_shared_reverse(x, y, 0, BLOCKS, THREADS, THREADS * sizeof(float), NULL);
        CHECK(cuemu_get_last_error() == CUEMU_SUCCESS);
        int wrong = 0;
        for (int b = 0; b < BLOCKS; b++)
            for (int t = 0; t < THREADS; t++) wrong += y[b * THREADS + t] != x[b * THREADS + THREADS - 1 - t];
        CHECK_MSG(wrong == 0, "order %s: %d elements wrong", orders[o], wrong);
        // Slots 0..2 left unwritten: their readers (the last three threads) see the poison.
        emu_dynamic_shared_reverse(x, y, 3, BLOCKS, THREADS, THREADS * sizeof(float), NULL);
        int poisoned = 0;
        for (int b = 0; b < BLOCKS; b++)
            for (int t = THREADS - 3; t < THREADS; t++) poisoned += float_bits(y[b * THREADS + t]) == 0xffffffffu;
        CHECK(poisoned == 3 * BLOCKS);
        CHECK(y[0] == x[THREADS - 1]);
    }
    cuemu_set_thread_order(CUEMU_ORDER_FORWARD, 0);

    // Above 48 KiB a kernel must opt in; the opt-in stops at 227 KiB.
    size_t big = 64 * 1024;
    emu_dynamic_shared_reverse(x, y, 0, 1, THREADS, big, NULL);
    CHECK(cuemu_peek_at_last_error() == CUEMU_ERROR_INVALID_VALUE);
    CHECK(cuemu_get_last_error() == CUEMU_ERROR_INVALID_VALUE);
    CHECK(strstr(cuemu_last_error_message(), "emu_dynamic_shared_reverse_kernel") != NULL);
    CHECK(strstr(cuemu_last_error_message(), "65536 bytes of dynamic shared memory") != NULL);
    CHECK(emu_dynamic_shared_reverse_allow((int)big) == CUEMU_SUCCESS);
    for (int i = 0; i < THREADS; i++) y[i] = -1.0f;
    emu_dynamic_shared_reverse(x, y, 0, 1, THREADS, big, NULL);
    CHECK(cuemu_get_last_error() == CUEMU_SUCCESS);
    CHECK(y[0] == x[THREADS - 1] && y[THREADS - 1] == x[0]);
    CHECK(emu_dynamic_shared_reverse_allow(300 * 1024) == CUEMU_ERROR_INVALID_VALUE);
}

static void run_out_of_bounds_write(void *unused) {
    (void)unused;
    int n = 100;
    float *out = malloc((size_t)n * sizeof *out);
    emu_out_of_bounds_write(out, n, NULL);
    free(out);
}

#if defined(__GNUC__) && !defined(__clang__)  // gcc's -fsanitize-sections gives __shared__ arrays redzones
static void run_shared_overflow(void *unused) {
    (void)unused;
    static float out[65];
    emu_shared_overflow(out, 65, NULL);
}
#endif

// Seeded bug (d): a write one past the end of a buffer, caught by AddressSanitizer inside a kernel
// fiber (and, with gcc's -fsanitize-sections, one past the end of a __shared__ array).
TEST(out_of_bounds_write_is_caught_under_asan) {
    if (!UNDER_ASAN) {
        printf("report: out-of-bounds write check skipped: needs the AddressSanitizer build (make test SANITIZE=1)\n");
        return;
    }
    child_result result = run_in_child(run_out_of_bounds_write, NULL);
    CHECK_CHILD_FAILED_WITH(result, "AddressSanitizer", "heap-buffer-overflow", "emu_out_of_bounds_write_kernel");
#if defined(__GNUC__) && !defined(__clang__)
    result = run_in_child(run_shared_overflow, NULL);
    CHECK_CHILD_FAILED_WITH(result, "AddressSanitizer", "global-buffer-overflow", "emu_shared_overflow_kernel");
#endif
}

static void run_deep_recursion(void *unused) {
    (void)unused;
    static float out[4];
    cuemu_set_stack_size(32 * 1024);
    emu_deep_recursion(out, 10, 4, NULL);  // about 10 KiB deep: fits
    emu_deep_recursion(out, 200, 4, NULL);  // about 200 KiB deep: overflows
}

TEST(stack_overflow_is_reported) {
    child_result result = run_in_child(run_deep_recursion, NULL);
    if (UNDER_ASAN)  // AddressSanitizer's handler reports the fault itself
        CHECK_CHILD_FAILED_WITH(result, "AddressSanitizer");
    else
        CHECK_CHILD_FAILED_WITH(result, "cuemu: error: stack overflow in kernel emu_deep_recursion_kernel",
                                "raise CUEMU_STACK_SIZE");
}

// ------------------------------------------------------------------------------------------------
// Indices, launch configuration.
// ------------------------------------------------------------------------------------------------

TEST(indices_of_2d_and_3d_launches) {
    static const int shapes[][6] = {
        {3, 2, 4, 5, 3, 2}, {1, 1, 1, 1, 1, 1}, {7, 1, 1, 33, 1, 1}, {2, 3, 1, 7, 11, 3}, {1, 5, 2, 1, 1, 64}, {2, 1, 1, 1024, 1, 1},
    };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int *d = shapes[s];
        int blocks = d[0] * d[1] * d[2], threads = d[3] * d[4] * d[5], total = blocks * threads;
        int *out = malloc((size_t)total * 6 * sizeof *out);
        for (int o = 0; o < ORDER_COUNT; o++) {
            CHECK(cuemu_set_thread_order_string(orders[o]) == 0);
            for (int i = 0; i < total * 6; i++) out[i] = -1;
            emu_index(out, d[0], d[1], d[2], d[3], d[4], d[5], NULL);
            CHECK(cuemu_get_last_error() == CUEMU_SUCCESS);
            int wrong = 0;
            for (int bz = 0; bz < d[2]; bz++)
                for (int by = 0; by < d[1]; by++)
                    for (int bx = 0; bx < d[0]; bx++)
                        for (int tz = 0; tz < d[5]; tz++)
                            for (int ty = 0; ty < d[4]; ty++)
                                for (int tx = 0; tx < d[3]; tx++) {
                                    int block = bx + d[0] * (by + d[1] * bz), thread = tx + d[3] * (ty + d[4] * tz);
                                    const int *r = out + 6 * (block * threads + thread);
                                    wrong += r[0] != bx || r[1] != by || r[2] != bz || r[3] != tx || r[4] != ty || r[5] != tz;
                                }
            CHECK_MSG(wrong == 0, "grid (%d,%d,%d) block (%d,%d,%d) order %s: %d threads wrong", d[0], d[1], d[2], d[3],
                      d[4], d[5], orders[o], wrong);
        }
        free(out);
    }
    cuemu_set_thread_order(CUEMU_ORDER_FORWARD, 0);
}

TEST(invalid_launch_configurations_are_errors) {
    int out[6 * 32] = {0};  // the one valid launch below: 32 threads, 6 ints each
    static const int bad[][5] = {
        {1, 1, 1025, 1, 1}, {1, 1, 32, 32, 2}, {1, 1, 1, 1, 65}, {1, 1, 0, 1, 1}, {0, 1, 32, 1, 1}, {1, 65536, 32, 1, 1},
    };
    cuemu_stats before = cuemu_get_stats();
    for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
        emu_launch_config(out, bad[b][0], bad[b][1], bad[b][2], bad[b][3], bad[b][4], 0, NULL);
        CHECK_MSG(cuemu_get_last_error() == CUEMU_ERROR_INVALID_CONFIGURATION, "config %zu", b);
        CHECK(strstr(cuemu_last_error_message(), "emu_test_kernels.cu:") != NULL);
        CHECK(strstr(cuemu_last_error_message(), "launch of emu_index_kernel") != NULL);
    }
    CHECK(cuemu_get_last_error() == CUEMU_SUCCESS);  // reading cleared it
    CHECK(cuemu_get_stats().launches == before.launches);  // nothing ran
    // Negative sizes from int arithmetic saturate instead of wrapping to something valid.
    emu_launch_config(out, -1, 1, 32, 1, 1, 0, NULL);
    CHECK(cuemu_get_last_error() == CUEMU_ERROR_INVALID_CONFIGURATION);
    emu_launch_config(out, 1, 1, 32, 1, 1, 0, NULL);
    CHECK(cuemu_get_last_error() == CUEMU_SUCCESS);
}

// ------------------------------------------------------------------------------------------------
// Warp operations.
// ------------------------------------------------------------------------------------------------

// The lane CUDA reads for shuffle k of emu_shuffle_kernel (see there), by the definitions in the CUDA
// programming guide: idx wraps modulo width; up/down outside the width segment return the caller's value.
static int expected_shuffle_source(int k, int lane) {
    int width = k < 4 ? 32 : 8, start = lane / width * width, position = lane % width;
    switch (k % 4) {
    case 0: return start + (3 * lane + 1) % width;
    case 1: return position < 3 ? lane : lane - 3;
    case 2: return position + 5 >= width ? lane : lane + 5;
    default: return lane ^ 6;
    }
}

TEST(shuffles_of_every_kind_and_width) {
    float out_float[8 * 32];
    int out_int[8 * 32];
    double out_double[8 * 32];
    for (int o = 0; o < ORDER_COUNT; o++) {
        CHECK(cuemu_set_thread_order_string(orders[o]) == 0);
        emu_shuffle(out_float, out_int, out_double, NULL);
        int wrong = 0;
        for (int k = 0; k < 8; k++)
            for (int lane = 0; lane < 32; lane++) {
                int source = expected_shuffle_source(k, lane);
                wrong += out_float[k * 32 + lane] != (float)source + 0.5f;
                wrong += out_int[k * 32 + lane] != -source;
                wrong += out_double[k * 32 + lane] != 1000.0 + source;
            }
        CHECK_MSG(wrong == 0, "order %s: %d shuffle results wrong", orders[o], wrong);
    }
    cuemu_set_thread_order(CUEMU_ORDER_FORWARD, 0);
    // Spot checks written out: lane 30, width 32: idx reads lane 91 % 32 = 27; down 5 keeps its own.
    CHECK(out_int[0 * 32 + 30] == -27 && out_int[2 * 32 + 30] == -30 && out_int[1 * 32 + 2] == -2);
    // Width 8: lane 13 (position 5): idx 40 % 8 = 0 -> lane 8; up 3 -> 10; down 5 -> own; xor 6 -> 11.
    CHECK(out_int[4 * 32 + 13] == -8 && out_int[5 * 32 + 13] == -10 && out_int[6 * 32 + 13] == -13 &&
          out_int[7 * 32 + 13] == -11);
}

TEST(shuffle_reading_outside_its_mask_gets_garbage) {
    float out[16];
    emu_partial_mask_shuffle(out, NULL);
    for (int lane = 0; lane < 15; lane++) CHECK(out[lane] == (float)lane + 1.0f);
    CHECK(float_bits(out[15]) == 0xffffffffu);  // lane 16 is not in the mask: undefined in CUDA
}

TEST(votes_and_warp_reductions) {
    enum { BLOCKS = 2, THREADS = 96, N = BLOCKS * THREADS, WARPS = N / 32 };
    int flags[N], warp_records[10 * WARPS], block_records[3 * BLOCKS];
    // Warp 0: no flag; 1: all; 2: even lanes; 3: lane 7 only; 4: all but lane 31; 5: lanes >= 16.
    for (int i = 0; i < N; i++) {
        int warp = i / 32, lane = i % 32;
        flags[i] = warp == 1 || (warp == 2 && lane % 2 == 0) || (warp == 3 && lane == 7) || (warp == 4 && lane != 31) ||
                   (warp == 5 && lane >= 16);
    }
    for (int o = 0; o < ORDER_COUNT; o++) {
        CHECK(cuemu_set_thread_order_string(orders[o]) == 0);
        memset(warp_records, 0x55, sizeof warp_records);
        emu_vote(flags, warp_records, block_records, BLOCKS, THREADS, NULL);
        for (int w = 0; w < WARPS; w++) {
            unsigned int ballot = 0, and_bits = 0xffffffffu, or_bits = 0, xor_bits = 0;
            int sum = 0, smallest = 1 << 30, largest = -(1 << 30);
            for (int lane = 0; lane < 32; lane++) {
                int i = w * 32 + lane, t = i % THREADS, value = flags[i] ? t : -t;
                unsigned int bits = 1u << lane | (unsigned int)flags[i] << 31;
                ballot |= (unsigned int)flags[i] << lane;
                sum += value;
                smallest = value < smallest ? value : smallest;
                largest = value > largest ? value : largest;
                and_bits &= bits;
                or_bits |= bits;
                xor_bits ^= bits;
            }
            const int *r = warp_records + 10 * w;
            CHECK_MSG((unsigned int)r[0] == ballot && r[1] == (ballot != 0) && r[2] == (ballot == 0xffffffffu),
                      "order %s warp %d: ballot %08x any %d all %d", orders[o], w, (unsigned int)r[0], r[1], r[2]);
            CHECK((unsigned int)r[3] == 0xffffffffu);
            CHECK_MSG(r[4] == sum && r[5] == smallest && r[6] == largest, "warp %d: sum %d min %d max %d", w, r[4], r[5],
                      r[6]);
            CHECK((unsigned int)r[7] == and_bits && (unsigned int)r[8] == or_bits && (unsigned int)r[9] == xor_bits);
        }
        for (int b = 0; b < BLOCKS; b++) {
            int count = 0;
            for (int t = 0; t < THREADS; t++) count += flags[b * THREADS + t];
            CHECK(block_records[3 * b] == count);
            CHECK(block_records[3 * b + 1] == (count == THREADS));
            CHECK(block_records[3 * b + 2] == (count > 0));
        }
    }
    cuemu_set_thread_order(CUEMU_ORDER_FORWARD, 0);
}

// ------------------------------------------------------------------------------------------------
// Atomics, math, fp16/bf16, argument plumbing, architecture fallbacks.
// ------------------------------------------------------------------------------------------------

TEST(atomics_from_many_blocks) {
    enum { N = 5000 };
    float *x = filled_floats(N, 31);
    emu_atomic_totals expected;
    memset(&expected, 0, sizeof expected);
    double sum = 0;
    expected.max_i32 = INT32_MIN;
    expected.min_i32 = INT32_MAX;
    expected.max_i64 = INT64_MIN;
    expected.min_u64 = UINT64_MAX;
    expected.max_f32 = -INFINITY;
    expected.and_bits = 0xffffffffu;
    expected.min_u32 = UINT32_MAX;
    for (int g = 0; g < N; g++) {
        int scrambled = (g * 7919) % 10007 - 5000;
        sum += x[g];
        expected.sum_i32 += g % 7 - 3;
        expected.count_u32++;
        expected.sum_u64 += (unsigned long long)g << 20;
        if (scrambled > expected.max_i32) expected.max_i32 = scrambled;
        if (scrambled < expected.min_i32) expected.min_i32 = scrambled;
        if (scrambled + (1ll << 40) > expected.max_i64) expected.max_i64 = scrambled + (1ll << 40);
        unsigned long long u = (unsigned long long)(scrambled + 5000) + (1ull << 40);
        if (u < expected.min_u64) expected.min_u64 = u;
        if (x[g] > expected.max_f32) expected.max_f32 = x[g];
        expected.wrapped = expected.wrapped >= 999u ? 0u : expected.wrapped + 1u;
        expected.or_bits |= 1u << (g % 32);
        expected.and_bits &= ~(1u << (g % 32));
        expected.xor_bits ^= 1u << (g % 32);
        expected.sub_i32 -= 2;
        if ((unsigned int)(scrambled + 5000) < expected.min_u32) expected.min_u32 = (unsigned int)(scrambled + 5000);
        if ((unsigned int)(scrambled + 5000) > expected.max_u32) expected.max_u32 = (unsigned int)(scrambled + 5000);
    }
    for (int o = 0; o < ORDER_COUNT; o++) {
        CHECK(cuemu_set_thread_order_string(orders[o]) == 0);
        emu_atomic_totals got = expected;  // the fields that start at an identity keep it
        got.sum_f32 = 0;
        got.sum_i32 = 0;
        got.count_u32 = 0;
        got.sum_u64 = 0;
        got.max_i32 = INT32_MIN;
        got.min_i32 = INT32_MAX;
        got.max_i64 = INT64_MIN;
        got.min_u64 = UINT64_MAX;
        got.max_f32 = -INFINITY;
        got.exchanged = -1;
        got.wrapped = 0;
        got.or_bits = 0;
        got.and_bits = 0xffffffffu;
        got.xor_bits = 0;
        got.sum_f64 = 0;
        got.sub_i32 = 0;
        got.min_u32 = UINT32_MAX;
        got.max_u32 = 0;
        emu_atomics(x, &got, N, 128, NULL);
        CHECK_MSG(fabs(got.sum_f32 - sum) <= 1e-6 * N, "order %s: %.9g vs %.9g", orders[o], got.sum_f32, sum);
        CHECK(fabs(got.sum_f64 - sum) <= 1e-9 * N);
        CHECK(got.sum_i32 == expected.sum_i32 && got.count_u32 == expected.count_u32 && got.sum_u64 == expected.sum_u64);
        CHECK(got.max_i32 == expected.max_i32 && got.min_i32 == expected.min_i32);
        CHECK(got.max_i64 == expected.max_i64 && got.min_u64 == expected.min_u64);
        CHECK(got.max_f32 == expected.max_f32);
        CHECK(got.exchanged >= 0 && got.exchanged < N);
        CHECK_MSG(got.wrapped == expected.wrapped, "atomicInc: %u vs %u", got.wrapped, expected.wrapped);
        CHECK(got.or_bits == expected.or_bits && got.and_bits == expected.and_bits && got.xor_bits == expected.xor_bits);
        CHECK(got.sub_i32 == expected.sub_i32 && got.min_u32 == expected.min_u32 && got.max_u32 == expected.max_u32);
    }
    cuemu_set_thread_order(CUEMU_ORDER_FORWARD, 0);
    free(x);
}

TEST(math_intrinsics_match_libm) {
    enum { N = 70, R = 16 };
    float x[N], out[N * R];
    for (int i = 0; i < N; i++) x[i] = 0.05f + 0.11f * (float)i;
    emu_math(x, out, N, NULL);
    for (int i = 0; i < N; i++) {
        float v = x[i];
        const float *o = out + R * i;
        // Exact libm here; on a GPU the __ intrinsics are approximations, so kernel tests compare with
        // tolerances. These tolerances only allow for float rounding.
        CHECK_CLOSE(o[0], expf(v), 0, 1e-6);
        CHECK_CLOSE(o[1], logf(v), 1e-7, 1e-6);
        CHECK_CLOSE(o[2], 1.0f / sqrtf(v), 0, 1e-6);
        CHECK_CLOSE(o[3], 1.0f / v, 0, 1e-6);
        CHECK(o[4] == fmaf(v, 2.0f, 1.0f));
        CHECK_CLOSE(o[5], 1.0f / v, 0, 1e-6);
        CHECK(o[6] == (v - 1.0f < 0 ? 0.0f : v - 1.0f > 1 ? 1.0f : v - 1.0f));
        CHECK(o[7] == nearbyintf(v * 3.0f));
        CHECK_CLOSE(o[8], erff(v - 1.0f), 1e-7, 1e-6);
        CHECK_CLOSE(o[9], tanhf(v - 1.0f), 1e-7, 1e-6);
        CHECK_CLOSE(o[10], powf(v, 1.5f), 0, 1e-6);
        CHECK_CLOSE(o[11], sinf(v) + cosf(v), 1e-6, 1e-6);
        float m = fminf(v, 1.0f) + (float)((int)v > 2 ? (int)v : 2) + (float)((unsigned int)v < 3u ? (unsigned int)v : 3u);
        CHECK(o[12] == m);
        CHECK(o[13] == v);
        CHECK(o[14] == (float)__builtin_popcount(float_bits(v)) + (float)((int)v ? __builtin_clz((unsigned int)(int)v) : 32));
        CHECK_CLOSE(o[15], log2f(v) + powf(10.0f, v - 1.0f), 1e-6, 1e-6);
    }
}

TEST(half_and_bfloat16_conversions) {
    // Every half value (as its exact float) must survive float -> half -> float unchanged.
    enum { HALVES = 65536, RANDOM = 200000 };
    float *x = malloc(sizeof(float) * (HALVES + RANDOM)), *back = malloc(2 * sizeof(float) * (HALVES + RANDOM));
    uint16_t *h = malloc(sizeof(uint16_t) * (HALVES + RANDOM)), *b = malloc(sizeof(uint16_t) * (HALVES + RANDOM));
    for (int i = 0; i < HALVES; i++) x[i] = f16_to_f32((uint16_t)i);
    // Then random bit patterns and values near the rounding boundaries, against the engine's conversions.
    uint64_t state = 12345;
    for (int i = 0; i < RANDOM; i++) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        uint32_t bits = (uint32_t)(state >> 32);
        if (i % 3 == 1) bits = (bits & 0x807fffffu) | ((uint32_t)(100 + (state >> 20) % 60) << 23);  // half's range
        if (i % 3 == 2) bits = (float_bits(f16_to_f32((uint16_t)(state >> 16))) & ~0x1fffu) | 0x1000u | (bits & 1u);
        memcpy(&x[HALVES + i], &bits, sizeof bits);
    }
    int n = HALVES + RANDOM;
    emu_half(x, (struct cu_half *)h, (struct cu_bfloat16 *)b, back, n, NULL);
    int wrong_half = 0, wrong_bf16 = 0;
    for (int i = 0; i < n; i++) {
        if (isnan(x[i])) {
            wrong_half += !isnan(back[2 * i]);
            wrong_bf16 += !isnan(back[2 * i + 1]);
            continue;
        }
        uint16_t want = f32_to_f16(x[i]);
        wrong_half += h[i] != want || float_bits(back[2 * i]) != float_bits(f16_to_f32(want));
        if (i < HALVES) wrong_half += h[i] != (uint16_t)i;
        uint16_t want_b = f32_to_bf16(x[i]);
        wrong_bf16 += b[i] != want_b || float_bits(back[2 * i + 1]) != float_bits(bf16_to_f32(want_b));
    }
    CHECK_MSG(wrong_half == 0, "%d of %d half conversions differ from the engine's", wrong_half, n);
    CHECK_MSG(wrong_bf16 == 0, "%d of %d bfloat16 conversions differ from the engine's", wrong_bf16, n);
    free(x);
    free(back);
    free(h);
    free(b);
}

TEST(sixteen_kernel_arguments) {
    double out = 0;
    int k = 12;
    emu_sixteen_args(&out, &k, NULL);
    double expected = 1 + 2.0 * 2 + 3.0 * 3 + 4.0 * 4 + 5.0 * 5 + 6.0 * 6 + 7.0 * 7 + 8.0 * 8 + 9.0 * 9 + 10.0 * 10 +
                      11.0 * 0.5 + 12.0 * 12 + 13.0 * 13 + 14.0 * 14 + 15.0 * -15 + 16.0 * 16;
    CHECK_CLOSE(out, expected, 0, 1e-15);
}

TEST(architecture_fallback_runs) {
    int out[70];
    emu_lane_id(out, 70, NULL);
    for (int t = 0; t < 70; t++) CHECK(out[t] == t % 32);
}

// ------------------------------------------------------------------------------------------------
// Measurements (test_emu --bench).
// ------------------------------------------------------------------------------------------------

static double seconds_now(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
}

static int run_benchmarks(void) {
    int n = 1 << 20;
    float *x = filled_floats(n, 7);
    double magnitude, expected = reference_sum(x, n, &magnitude);
    static const cuemu_fiber_backend backends[] = {CUEMU_FIBER_ASM, CUEMU_FIBER_UCONTEXT};
    for (int k = 0; k < 2; k++) {
        if (cuemu_set_fiber_backend(backends[k]) != 0) continue;
        const char *name = cuemu_fiber_backend_name(backends[k]);
        double best = 1e30;
        for (int repeat = 0; repeat < 5; repeat++) {
            double ns = cuemu_measure_switch_ns(backends[k] == CUEMU_FIBER_ASM ? 2000000 : 200000);
            best = ns < best ? ns : best;
        }
        printf("switch %-8s %.1f ns per switch (best of 5)\n", name, best);
        static const int configurations[][2] = {{256, 1}, {256, 4}, {1024, 4}};  // threads, elements each
        for (int c = 0; c < 3; c++) {
            int threads = configurations[c][0], blocks = n / (threads * configurations[c][1]);
            cuemu_stats before = cuemu_get_stats();
            double start = seconds_now();
            float got = emulated_sum(x, n, blocks, threads, 0);
            double elapsed = seconds_now() - start;
            cuemu_stats after = cuemu_get_stats();
            printf("reduce   %-8s 1M floats, %d blocks x %d threads: %.1f ms, %.2f M switches, error %.2g\n", name,
                   blocks, threads, elapsed * 1e3, (double)(after.switches - before.switches) * 1e-6,
                   fabs(got - expected) / magnitude);
        }
    }
    free(x);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--bench") == 0) return run_benchmarks();

    bad_order_child = run_in_child(run_with_bad_order_variable, NULL);

    RUN_TEST(block_reduction_in_every_order);
    RUN_TEST(block_reduction_on_ucontext_fibers);
    RUN_TEST(small_stacks_suffice_for_kernels);
    RUN_TEST(launches_from_two_threads);
    RUN_TEST(missing_syncthreads_gives_a_wrong_sum_in_some_order);
    RUN_TEST(divergent_barrier_is_reported_with_both_sites);
    RUN_TEST(deadlock_between_barrier_and_shuffle_is_reported);
    RUN_TEST(shuffle_with_inactive_lanes_is_reported);
    RUN_TEST(warp_votes_skip_lanes_that_are_gone);
    RUN_TEST(invalid_warp_operations_are_reported);
    RUN_TEST(thread_order_setting);
    RUN_TEST(bad_thread_order_variable_is_reported);
    RUN_TEST(uninitialized_shared_memory_reads_the_poison);
    RUN_TEST(dynamic_shared_memory);
    RUN_TEST(out_of_bounds_write_is_caught_under_asan);
    RUN_TEST(stack_overflow_is_reported);
    RUN_TEST(indices_of_2d_and_3d_launches);
    RUN_TEST(invalid_launch_configurations_are_errors);
    RUN_TEST(shuffles_of_every_kind_and_width);
    RUN_TEST(shuffle_reading_outside_its_mask_gets_garbage);
    RUN_TEST(votes_and_warp_reductions);
    RUN_TEST(atomics_from_many_blocks);
    RUN_TEST(math_intrinsics_match_libm);
    RUN_TEST(half_and_bfloat16_conversions);
    RUN_TEST(sixteen_kernel_arguments);
    RUN_TEST(architecture_fallback_runs);

    return test_summary();
}
