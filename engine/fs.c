// File-system helpers (engine/fs.h).
#include "engine/fs.h"

#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>

int fs_make_directories(const char *path) {
    char partial[4096];
    if (snprintf(partial, sizeof partial, "%s", path) >= (int)sizeof partial) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *at = partial + 1; *at; at++) {
        if (*at != '/') continue;
        *at = 0;
        if (mkdir(partial, 0777) != 0 && errno != EEXIST) return -1;
        *at = '/';
    }
    return mkdir(partial, 0777) != 0 && errno != EEXIST ? -1 : 0;
}
