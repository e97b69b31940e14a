// JSON Lines logs: one JSON object per line, flushed as written, so a crashed or running job's
// log is readable (tail -f, pandas.read_json(lines=True)).
#pragma once
#include <stdio.h>

typedef struct JsonlLog JsonlLog;

// Opens (appends to) the log; NULL with one line in error on failure.
JsonlLog *jsonl_open(const char *path, char *error, size_t error_size);
// Writes one record. `fields_format` is the inside of an object, printf-style, e.g.
// jsonl_write(log, "\"event\":\"step\",\"step\":%d,\"loss\":%.6g", step, loss);
// a "time" field (seconds since the log was opened) is prepended.
void jsonl_write(JsonlLog *log, const char *fields_format, ...) __attribute__((format(printf, 2, 3)));
void jsonl_close(JsonlLog *log);
