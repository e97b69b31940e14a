// Running the programs from tests: a shell command with its stdout and stderr captured in files of
// a work directory.
#pragma once
#include <stdbool.h>
#include <stddef.h>

// Runs `command` with stdout to <work_dir>/stdout.txt and stderr to <work_dir>/stderr.txt, copies
// stderr (up to size - 1 bytes, NUL-terminated) into captured_stderr, and returns the exit status
// (-1 if the program was killed by a signal).
int run_command(const char *work_dir, const char *command, char *captured_stderr, size_t size);
// The stdout of the last run_command in work_dir (up to size - 1 bytes, NUL-terminated).
void read_command_stdout(const char *work_dir, char *out, size_t size);
// True when both files exist and hold the same bytes (a run's outputs compared bit for bit).
bool files_identical(const char *path_a, const char *path_b);
