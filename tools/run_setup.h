// What the training commands share around a run: the settings saved in a checkpoint's user JSON
// that a resume must repeat.
#pragma once
#include <stddef.h>

#include "data/dataset.h"

// saved and current are the JSON objects of settings written by `command` (with a "command"
// member). Every member of current must be in saved with the same value; otherwise one line
// "error: tailor <command>: --resume <dir>: ... --<flag> ..." on stderr and -1.
int check_resume_settings(const char *command, const char *saved_text, const char *current_text,
                          const char *resume_dir);

// Appends ,"key":"value" (JSON-escaped) to a settings object being built in out (size bytes).
void settings_add_string(char *out, size_t size, const char *key, const char *value);

// <out_dir>/settings.json: the run's settings (the checkpoint's user JSON) plus, for datasets with
// named classes, "class-names" in label order, so that `tailor eval --run` can rebuild the model
// and refuse data whose classes differ. 0, or -1 with one line in error.
int run_settings_write(const char *out_dir, const char *json, const Dataset *dataset, char *error, size_t error_size);
