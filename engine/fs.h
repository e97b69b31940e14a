// Small file-system helpers shared by the library and the tools.
#pragma once

// mkdir -p: creates path and its missing parents (mode 0777 before the umask). 0, or -1 with
// errno set by the mkdir that failed. An existing directory is fine.
int fs_make_directories(const char *path);
