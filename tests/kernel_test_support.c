#include "tests/kernel_test_support.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/emu/cuemu_host.h"
#include "tests/check.h"

const char *const KERNEL_TEST_ORDERS[3] = {"forward", "reverse", "random:20240607"};

void in_every_order(OrderedRun run, void *context) {
    for (int o = 0; o < ORDER_COUNT; o++) {
        CHECK(cuemu_set_thread_order_string(KERNEL_TEST_ORDERS[o]) == 0);
        run(context, o);
    }
    cuemu_set_thread_order(CUEMU_ORDER_FORWARD, 0);
}

static const char *checked_kernels[96];
static int checked_count;

void kernel_checked(const char *name) {
    for (int i = 0; i < checked_count; i++)
        if (strcmp(checked_kernels[i], name) == 0) return;
    if (checked_count < 96) checked_kernels[checked_count++] = name;
}

void print_kernels_checked(void) {
    printf("report: %d kernels checked: ", checked_count);
    for (int i = 0; i < checked_count; i++) printf("%s%s", i ? ", " : "", checked_kernels[i]);
    printf(" (orders: forward, reverse, random)\n");
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

void kernel_test_seed(uint64_t seed) { rng_state = seed ? seed : 0x9E3779B97F4A7C15ull; }

uint64_t next_random(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

float random_uniform(float low, float high) {
    return low + (high - low) * (float)((next_random() >> 40) * (1.0 / (1ull << 24)));
}

int64_t random_int(int64_t low, int64_t high) { return low + (int64_t)(next_random() % (uint64_t)(high - low + 1)); }

float *host_floats(int64_t n) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    for (int64_t i = 0; i < n; i++) p[i] = NAN;
    return p;
}

float *random_floats(int64_t n, float low, float high) {
    float *p = host_floats(n);
    for (int64_t i = 0; i < n; i++) p[i] = random_uniform(low, high);
    return p;
}
