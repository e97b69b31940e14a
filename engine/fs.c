// File-system helpers (engine/fs.h).
#include "engine/fs.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

// Closes f, keeping the first error's errno; -1 if writing or closing failed.
static int finish_file(FILE *f, int status) {
    int saved = errno;
    if (fflush(f) != 0 || fsync(fileno(f)) != 0) status = -1, saved = errno;
    if (fclose(f) != 0 && status == 0) status = -1, saved = errno;
    errno = saved;
    return status;
}

int fs_copy_file(const char *from, const char *to) {
    char temporary[4200];
    if (snprintf(temporary, sizeof temporary, "%s.tmp", to) >= (int)sizeof temporary) return errno = ENAMETOOLONG, -1;
    FILE *in = fopen(from, "rb");
    if (!in) return -1;
    FILE *out = fopen(temporary, "wb");
    if (!out) {
        int saved = errno;
        fclose(in);
        return errno = saved, -1;
    }
    char buffer[1 << 16];
    size_t n;
    int status = 0;
    while (status == 0 && (n = fread(buffer, 1, sizeof buffer, in)) > 0)
        if (fwrite(buffer, 1, n, out) != n) status = -1;
    if (ferror(in)) status = -1, errno = EIO;
    fclose(in);
    status = finish_file(out, status);
    if (status == 0 && rename(temporary, to) != 0) status = -1;
    if (status != 0) remove(temporary);
    return status;
}

int fs_write_text(const char *path, const char *text) {
    char temporary[4200];
    if (snprintf(temporary, sizeof temporary, "%s.tmp", path) >= (int)sizeof temporary) return errno = ENAMETOOLONG, -1;
    FILE *out = fopen(temporary, "wb");
    if (!out) return -1;
    size_t length = strlen(text);
    int status = fwrite(text, 1, length, out) == length ? 0 : -1;
    status = finish_file(out, status);
    if (status == 0 && rename(temporary, path) != 0) status = -1;
    if (status != 0) remove(temporary);
    return status;
}

int fs_remove_tree(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return errno == ENOENT ? 0 : -1;
    if (!S_ISDIR(st.st_mode)) return unlink(path);
    DIR *dir = opendir(path);
    if (!dir) return -1;
    int status = 0;
    struct dirent *entry;
    while (status == 0 && (entry = readdir(dir))) {
        if (!strcmp(entry->d_name, ".") || !strcmp(entry->d_name, "..")) continue;
        char child[4096];
        if (snprintf(child, sizeof child, "%s/%s", path, entry->d_name) >= (int)sizeof child) {
            errno = ENAMETOOLONG;
            status = -1;
        } else {
            status = fs_remove_tree(child);
        }
    }
    closedir(dir);
    return status == 0 ? rmdir(path) : -1;
}

bool fs_is_directory(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

bool fs_is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

char *fs_read_text(const char *path, char *error, size_t error_size) {
    FILE *f = fopen(path, "rb");
    if (!f) return snprintf(error, error_size, "%s: cannot open: %s", path, strerror(errno)), NULL;
    char *text = NULL;
    size_t used = 0, capacity = 0, n;
    do {
        if (used + 4096 + 1 > capacity) {
            capacity = 2 * capacity + 8192;
            char *grown = realloc(text, capacity);
            if (!grown) {
                free(text);
                fclose(f);
                return snprintf(error, error_size, "%s: out of memory", path), NULL;
            }
            text = grown;
        }
        n = fread(text + used, 1, 4096, f);
        used += n;
    } while (n == 4096);
    bool bad = ferror(f);
    fclose(f);
    if (bad) {
        free(text);
        return snprintf(error, error_size, "%s: read error", path), NULL;
    }
    text[used] = 0;
    return text;
}
