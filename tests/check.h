// Minimal test harness: each tests/test_*.c is one program made of TEST functions; main() runs them
// with RUN_TEST and ends with test_summary(), which prints "N passed, M failed" and sets the exit code.
// A test counts as failed if any CHECK inside it failed; every failing CHECK prints file:line.
#pragma once
#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

extern int test_checks_failed_in_current;  // CHECK failures inside the running test
extern int tests_passed, tests_failed;

#define TEST(name) static void name(void)

#define RUN_TEST(name)                                                        \
    do {                                                                      \
        test_checks_failed_in_current = 0;                                    \
        name();                                                               \
        if (test_checks_failed_in_current) {                                  \
            tests_failed++;                                                   \
            printf("FAIL %s\n", #name);                                       \
        } else {                                                              \
            tests_passed++;                                                   \
            if (getenv("TEST_VERBOSE")) printf("ok   %s\n", #name);           \
        }                                                                     \
        fflush(stdout);                                                       \
    } while (0)

#define CHECK(cond)                                                                \
    do {                                                                           \
        if (!(cond)) {                                                             \
            printf("  %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);      \
            test_checks_failed_in_current++;                                       \
        }                                                                          \
    } while (0)

#define CHECK_MSG(cond, ...)                                                       \
    do {                                                                           \
        if (!(cond)) {                                                             \
            printf("  %s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);      \
            printf(__VA_ARGS__);                                                   \
            printf("\n");                                                          \
            test_checks_failed_in_current++;                                       \
        }                                                                          \
    } while (0)

// |a - b| <= atol + rtol * |b|, as numpy.allclose; NaN never passes.
#define CHECK_CLOSE(a, b, atol, rtol)                                                          \
    do {                                                                                       \
        double check_a_ = (double)(a), check_b_ = (double)(b);                                 \
        if (!(fabs(check_a_ - check_b_) <= (atol) + (rtol) * fabs(check_b_))) {                \
            printf("  %s:%d: %s = %.9g, expected %s = %.9g\n", __FILE__, __LINE__, #a, check_a_, \
                   #b, check_b_);                                                              \
            test_checks_failed_in_current++;                                                   \
        }                                                                                      \
    } while (0)

// Defines the counters; put once in each test program, before main.
#define TEST_MAIN_COUNTERS                 \
    int test_checks_failed_in_current = 0; \
    int tests_passed = 0, tests_failed = 0

static inline int test_summary(void) {
    printf("%d passed, %d failed\n", tests_passed, tests_failed);
    return tests_failed ? 1 : 0;
}
