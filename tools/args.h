// Command-line flags for the tailor subcommands: a table of flags, parsed strictly. An unknown
// flag, a missing or malformed value ends the program with one line naming the flag and what was
// expected; --help prints the table.
#pragma once
#include <stdbool.h>
#include <stdint.h>

typedef enum { FLAG_INT, FLAG_DOUBLE, FLAG_STRING, FLAG_BOOL } FlagType;

typedef struct {
    const char *name;  // without the leading "--"
    FlagType type;
    void *value;       // int64_t*, double*, const char**, bool*
    const char *help;  // one line; the default is printed from *value
    const char *const *choices;  // NULL-terminated allowed strings, or NULL for any
} Flag;

// Parses argv[first..argc); exits(0) after printing help for --help, exits(2) on errors.
void args_parse(const char *command, const char *summary, Flag *flags, int n_flags, int argc, char **argv, int first);
