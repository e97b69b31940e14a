// Run setup shared by the training commands (tools/run_setup.h).
#include "tools/run_setup.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "engine/json.h"

static bool same_value(const JsonValue *then, const JsonValue *now) {
    if (!then || json_type(then) != json_type(now)) return false;
    if (json_type(now) == JSON_STRING) return strcmp(json_string(then), json_string(now)) == 0;
    if (json_type(now) == JSON_NUMBER) return json_number(then) == json_number(now);
    if (json_type(now) == JSON_BOOL) {
        int a = 0, b = 0;
        json_bool(then, &a);
        json_bool(now, &b);
        return a == b;
    }
    return true;
}

int check_resume_settings(const char *command, const char *saved_text, const char *current_text,
                          const char *resume_dir) {
    char error[256];
    JsonValue *saved = json_parse(saved_text, strlen(saved_text), error, sizeof error);
    JsonValue *current = json_parse(current_text, strlen(current_text), error, sizeof error);
    int status = 0;
    if (!saved || !current || json_type(json_get(saved, "command")) != JSON_STRING ||
        strcmp(json_string(json_get(saved, "command")), command) != 0) {
        fprintf(stderr, "error: tailor %s: --resume %s: the checkpoint was not written by tailor %s\n", command,
                resume_dir, command);
        status = -1;
    }
    for (size_t i = 0; status == 0 && i < json_length(current); i++) {
        const char *key = json_key(current, i);
        if (!same_value(json_get(saved, key), json_value_at(current, i))) {
            fprintf(stderr,
                    "error: tailor %s: --resume %s: the checkpoint was made with a different --%s; resume with the "
                    "same value\n",
                    command, resume_dir, key);
            status = -1;
        }
    }
    json_free(saved);
    json_free(current);
    return status;
}

void settings_add_string(char *out, size_t size, const char *key, const char *value) {
    size_t used = strlen(out);
    used += (size_t)snprintf(out + used, used < size ? size - used : 0, ",\"%s\":\"", key);
    for (const char *c = value; *c && used + 8 < size; c++) {
        unsigned char ch = (unsigned char)*c;
        if (ch == '"' || ch == '\\') used += (size_t)snprintf(out + used, size - used, "\\%c", ch);
        else if (ch < 0x20) used += (size_t)snprintf(out + used, size - used, "\\u%04x", ch);
        else out[used++] = (char)ch, out[used] = '\0';
    }
    if (used + 1 < size) out[used++] = '"', out[used] = '\0';
}

// settings.json: the run's settings (the checkpoint's user JSON) plus, for datasets with named
// classes, "class-names" in label order, so that `tailor eval --run` can refuse data whose
// classes differ.
int run_settings_write(const char *out_dir, const char *json, const Dataset *dataset, char *error, size_t error_size) {
    char path[4096];
    snprintf(path, sizeof path, "%s/settings.json", out_dir);
    FILE *file = fopen(path, "w");
    bool ok = file != NULL;
    size_t length = strlen(json);
    if (ok && dataset->class_names && length > 0 && json[length - 1] == '}') {
        ok = fwrite(json, 1, length - 1, file) == length - 1 && fputs(",\"class-names\":[", file) >= 0;
        for (int64_t c = 0; ok && c < dataset->class_count; c++) {
            if (c) fputc(',', file);
            json_write_string(file, dataset->class_names[c]);
        }
        ok = ok && fputs("]}\n", file) >= 0;
    } else if (ok) {
        ok = fprintf(file, "%s\n", json) >= 0;
    }
    if (file && fclose(file) != 0) ok = false;
    if (!ok) {
        snprintf(error, error_size, "%s: cannot write", path);
        return -1;
    }
    return 0;
}
