// Progress of long work: a redrawn bar with rate and ETA on a terminal, plain lines otherwise
// (logs, CI), at most one every few seconds.
#pragma once
#include <stdint.h>

typedef struct {
    const char *label;
    int64_t total;
    double start, last_print;
    int interactive;
} Progress;

void progress_begin(Progress *progress, const char *label, int64_t total);
// `status` is a short text such as "loss 0.123 acc 0.91"; `done` counts finished units.
void progress_update(Progress *progress, int64_t done, const char *status);
void progress_end(Progress *progress, const char *status);
double progress_now(void);  // monotonic seconds
