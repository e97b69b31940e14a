#include "tools/progress.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

double progress_now(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + 1e-9 * (double)now.tv_nsec;
}

void progress_begin(Progress *progress, const char *label, int64_t total) {
    progress->label = label;
    progress->total = total;
    progress->start = progress_now();
    progress->last_print = 0;
    progress->interactive = isatty(fileno(stderr));
}

static void format_duration(double seconds, char *out, size_t size) {
    int total = (int)(seconds + 0.5);
    if (total >= 3600) snprintf(out, size, "%dh%02dm", total / 3600, (total / 60) % 60);
    else snprintf(out, size, "%d:%02d", total / 60, total % 60);
}

static void draw(Progress *progress, int64_t done, const char *status, int final) {
    double elapsed = progress_now() - progress->start;
    double rate = elapsed > 0 ? (double)done / elapsed : 0;
    char eta[32] = "?", spent[32];
    if (rate > 0 && progress->total > 0) format_duration((double)(progress->total - done) / rate, eta, sizeof eta);
    format_duration(elapsed, spent, sizeof spent);
    if (progress->interactive) {
        const int width = 24;
        int filled = progress->total > 0 ? (int)((double)width * (double)done / (double)progress->total) : 0;
        char bar[32];
        for (int i = 0; i < width; i++) bar[i] = i < filled ? '#' : '.';
        bar[width] = 0;
        fprintf(stderr, "\r%s [%s] %lld/%lld %s | %.1f/s | %s elapsed, eta %s\033[K", progress->label, bar, (long long)done,
                (long long)progress->total, status ? status : "", rate, spent, eta);
        if (final) fprintf(stderr, "\n");
    } else {
        fprintf(stderr, "%s %lld/%lld %s | %.1f/s | %s elapsed, eta %s\n", progress->label, (long long)done,
                (long long)progress->total, status ? status : "", rate, spent, final ? "0:00" : eta);
    }
    fflush(stderr);
}

void progress_update(Progress *progress, int64_t done, const char *status) {
    double now = progress_now();
    double interval = progress->interactive ? 0.1 : 5.0;
    if (now - progress->last_print < interval) return;
    progress->last_print = now;
    draw(progress, done, status, 0);
}

void progress_end(Progress *progress, const char *status) { draw(progress, progress->total, status, 1); }
