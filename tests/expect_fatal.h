// Runs code that should stop the program with one clear error line (tensor_fatal and the like)
// in a child process, and checks its exit status and message.
#pragma once
#include <stdbool.h>

typedef void (*FatalBody)(void *context);

// True when body exits non-zero (without crashing on a signal), printing exactly one line on
// stderr that contains `expected`. On a mismatch prints what happened.
bool expect_fatal(FatalBody body, void *context, const char *expected);
