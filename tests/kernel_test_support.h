// Shared by the kernel tests (tests/test_kernels_*.c): running a check under every emulator thread
// order, the list of kernels checked for the runner's report, a small seeded random source and
// NaN-poisoned host buffers.
#pragma once
#include <stdint.h>

// The orders every kernel check runs in: forward, reverse and one seeded random order.
extern const char *const KERNEL_TEST_ORDERS[3];
enum { ORDER_COUNT = 3 };

// Runs run(context, order) once under each order (CHECKs that the order could be set), then
// restores the default forward order.
typedef void (*OrderedRun)(void *context, int order);
void in_every_order(OrderedRun run, void *context);

// Records a kernel (launcher) whose results were checked; print_kernels_checked() prints the
// "report: kernels checked: ... (orders: ...)" line the test runner shows.
void kernel_checked(const char *name);
void print_kernels_checked(void);

// xorshift64* from a fixed seed: shapes and values are the same on every run.
void kernel_test_seed(uint64_t seed);
uint64_t next_random(void);
float random_uniform(float low, float high);      // in [low, high)
int64_t random_int(int64_t low, int64_t high);    // in [low, high]
// malloc'd host floats: NaN-filled (so unwritten elements show), or uniform random.
float *host_floats(int64_t n);
float *random_floats(int64_t n, float low, float high);
