// Test support: running the programs (tests/run_command.h).
#include "tests/run_command.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

static void read_into(const char *work_dir, const char *name, char *out, size_t size) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", work_dir, name);
    FILE *file = fopen(path, "r");
    size_t used = file ? fread(out, 1, size - 1, file) : 0;
    out[used] = 0;
    if (file) fclose(file);
}

int run_command(const char *work_dir, const char *command, char *captured_stderr, size_t size) {
    char line[8192];
    snprintf(line, sizeof line, "%s 2>%s/stderr.txt >%s/stdout.txt", command, work_dir, work_dir);
    int status = system(line);
    read_into(work_dir, "stderr.txt", captured_stderr, size);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

void read_command_stdout(const char *work_dir, char *out, size_t size) { read_into(work_dir, "stdout.txt", out, size); }

bool files_identical(const char *path_a, const char *path_b) {
    FILE *a = fopen(path_a, "rb"), *b = fopen(path_b, "rb");
    bool same = a && b;
    while (same) {
        int ca = fgetc(a), cb = fgetc(b);
        same = ca == cb;
        if (ca == EOF) break;
    }
    if (a) fclose(a);
    if (b) fclose(b);
    return same;
}
