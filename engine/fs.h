// Small file-system helpers shared by the library and the tools.
#pragma once
#include <stdbool.h>
#include <stddef.h>

// mkdir -p: creates path and its missing parents (mode 0777 before the umask). 0, or -1 with
// errno set by the mkdir that failed. An existing directory is fine.
int fs_make_directories(const char *path);
// Copies a regular file (to "<to>.tmp", then renamed). 0, or -1 with errno set.
int fs_copy_file(const char *from, const char *to);
// Writes text to path (to "<path>.tmp", flushed, renamed). 0, or -1 with errno set.
int fs_write_text(const char *path, const char *text);
// rm -r: removes path and everything under it (symbolic links are removed, not followed). A path
// that does not exist is fine. 0, or -1 with errno set.
int fs_remove_tree(const char *path);
// The whole file as a malloc'd NUL-terminated string, or NULL with one line in error
// ("<path>: cannot open: <reason>" / "<path>: read error").
char *fs_read_text(const char *path, char *error, size_t error_size);
bool fs_is_directory(const char *path);  // follows symbolic links
bool fs_is_file(const char *path);       // a regular file (following symbolic links)
