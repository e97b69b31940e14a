#include "engine/jsonl.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct JsonlLog {
    FILE *file;
    struct timespec start;
};

JsonlLog *jsonl_open(const char *path, char *error, size_t error_size) {
    FILE *file = fopen(path, "a");
    if (!file) {
        snprintf(error, error_size, "%s: cannot open the log for writing: %s", path, strerror(errno));
        return NULL;
    }
    JsonlLog *log = calloc(1, sizeof(JsonlLog));
    log->file = file;
    clock_gettime(CLOCK_MONOTONIC, &log->start);
    return log;
}

void jsonl_write(JsonlLog *log, const char *fields_format, ...) {
    if (!log) return;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double elapsed = (double)(now.tv_sec - log->start.tv_sec) + 1e-9 * (double)(now.tv_nsec - log->start.tv_nsec);
    fprintf(log->file, "{\"time\":%.3f,", elapsed);
    va_list args;
    va_start(args, fields_format);
    vfprintf(log->file, fields_format, args);
    va_end(args);
    fputs("}\n", log->file);
    fflush(log->file);
}

void jsonl_close(JsonlLog *log) {
    if (!log) return;
    fclose(log->file);
    free(log);
}
