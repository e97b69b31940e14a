#include "tools/args.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void print_help(const char *command, const char *summary, const Flag *flags, int n_flags) {
    printf("usage: tailor %s [flags]\n%s\n\nflags:\n", command, summary);
    for (int i = 0; i < n_flags; i++) {
        const Flag *f = &flags[i];
        char value[160] = "";
        switch (f->type) {
        case FLAG_INT: snprintf(value, sizeof value, "%" PRId64, *(int64_t *)f->value); break;
        case FLAG_DOUBLE: snprintf(value, sizeof value, "%g", *(double *)f->value); break;
        case FLAG_STRING: snprintf(value, sizeof value, "%s", *(const char **)f->value ? *(const char **)f->value : ""); break;
        case FLAG_BOOL: snprintf(value, sizeof value, "%s", *(bool *)f->value ? "on" : "off"); break;
        }
        char choices[256] = "";
        if (f->choices) {
            size_t used = (size_t)snprintf(choices, sizeof choices, " (");
            for (int c = 0; f->choices[c] && used < sizeof choices; c++)
                used += (size_t)snprintf(choices + used, sizeof choices - used, "%s%s", c ? "|" : "", f->choices[c]);
            if (used < sizeof choices) snprintf(choices + used, sizeof choices - used, ")");
        }
        printf("  --%-22s %s%s [default: %s]\n", f->name, f->help, choices, value[0] ? value : "none");
    }
}

static _Noreturn void flag_error(const char *command, const char *fmt, const char *a, const char *b) {
    fprintf(stderr, "error: tailor %s: ", command);
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, " (see tailor %s --help)\n", command);
    exit(2);
}

void args_parse(const char *command, const char *summary, Flag *flags, int n_flags, int argc, char **argv, int first) {
    for (int i = first; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            print_help(command, summary, flags, n_flags);
            exit(0);
        }
        if (strncmp(arg, "--", 2) != 0) flag_error(command, "unexpected argument '%s'%s", arg, "");
        const char *name = arg + 2;
        const char *inline_value = strchr(name, '=');
        size_t name_length = inline_value ? (size_t)(inline_value - name) : strlen(name);
        Flag *flag = NULL;
        for (int f = 0; f < n_flags; f++)
            if (strlen(flags[f].name) == name_length && strncmp(flags[f].name, name, name_length) == 0) flag = &flags[f];
        bool negated = false;
        if (!flag && name_length > 3 && strncmp(name, "no-", 3) == 0)
            for (int f = 0; f < n_flags; f++)
                if (flags[f].type == FLAG_BOOL && strlen(flags[f].name) == name_length - 3 && strncmp(flags[f].name, name + 3, name_length - 3) == 0) {
                    flag = &flags[f];
                    negated = true;
                }
        if (!flag) flag_error(command, "unknown flag '%s'%s", arg, "");
        if (flag->type == FLAG_BOOL && !inline_value) {
            *(bool *)flag->value = !negated;
            continue;
        }
        const char *value = inline_value ? inline_value + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!value) flag_error(command, "flag --%s needs a value%s", flag->name, "");
        char *end = NULL;
        errno = 0;
        switch (flag->type) {
        case FLAG_INT: {
            long long parsed = strtoll(value, &end, 10);
            if (end == value || *end || errno) flag_error(command, "--%s expects an integer, got '%s'", flag->name, value);
            *(int64_t *)flag->value = parsed;
            break;
        }
        case FLAG_DOUBLE: {
            double parsed = strtod(value, &end);
            if (end == value || *end || errno || !isfinite(parsed)) flag_error(command, "--%s expects a number, got '%s'", flag->name, value);
            *(double *)flag->value = parsed;
            break;
        }
        case FLAG_STRING:
            if (flag->choices) {
                bool allowed = false;
                for (int c = 0; flag->choices[c]; c++) allowed |= strcmp(flag->choices[c], value) == 0;
                if (!allowed) flag_error(command, "--%s does not accept '%s'", flag->name, value);
            }
            *(const char **)flag->value = value;
            break;
        case FLAG_BOOL:
            if (strcmp(value, "true") == 0 || strcmp(value, "1") == 0 || strcmp(value, "on") == 0) *(bool *)flag->value = true;
            else if (strcmp(value, "false") == 0 || strcmp(value, "0") == 0 || strcmp(value, "off") == 0) *(bool *)flag->value = false;
            else flag_error(command, "--%s expects true or false, got '%s'", flag->name, value);
            break;
        }
    }
}
