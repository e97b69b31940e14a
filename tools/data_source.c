// Opening a command's data from one flag value (tools/data_source.h).
#include "tools/data_source.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static bool is_directory(const char *path) {
    struct stat info;
    return stat(path, &info) == 0 && S_ISDIR(info.st_mode);
}

static bool ends_with(const char *text, const char *suffix) {
    size_t n = strlen(text), m = strlen(suffix);
    return n >= m && strcmp(text + n - m, suffix) == 0;
}

static int open_benchmark(const char *flag, const char *spec, const char *default_split, const char *benchmark_root,
                          DataSource *out, char *error, size_t error_size) {
    char domain[256], split[64];
    const char *name = spec + strlen("bench:");
    const char *slash = strchr(name, '/');
    size_t domain_length = slash ? (size_t)(slash - name) : strlen(name);
    if (domain_length == 0 || domain_length >= sizeof domain || (slash && strlen(slash + 1) >= sizeof split)) {
        snprintf(error, error_size, "--%s %s: expected bench:DOMAIN or bench:DOMAIN/SPLIT", flag, spec);
        return -1;
    }
    memcpy(domain, name, domain_length);
    domain[domain_length] = '\0';
    snprintf(split, sizeof split, "%s", slash ? slash + 1 : default_split);
    if (strcmp(split, "train") != 0 && strcmp(split, "test") != 0) {
        snprintf(error, error_size, "--%s %s: the split must be train or test", flag, spec);
        return -1;
    }
    char root[2048];
    if (snprintf(root, sizeof root, "%s/%s/%s", benchmark_root, domain, split) >= (int)sizeof root) {
        snprintf(error, error_size, "--benchmark-root: the path is longer than %zu characters", sizeof root - 300);
        return -1;
    }
    if (!is_directory(benchmark_root)) {
        snprintf(error, error_size,
                 "--%s %s: no built-in benchmark at %s; build it with `sh scripts/get_data_sources.sh && "
                 "build/tailor data build` (or give --benchmark-root)",
                 flag, spec, benchmark_root);
        return -1;
    }
    if (!is_directory(root)) {
        snprintf(error, error_size, "--%s %s: %s is not a directory (is %s a domain of the benchmark at %s?)", flag, spec,
                 root, domain, benchmark_root);
        return -1;
    }
    char why[1024];
    out->dataset = dataset_image_folder(root, why, sizeof why);
    if (!out->dataset) {
        snprintf(error, error_size, "--%s %s: %s", flag, spec, why);
        return -1;
    }
    snprintf(out->description, sizeof out->description, "bench:%s/%s (%s)", domain, split, root);
    return 0;
}

static int open_idx(const char *flag, const char *spec, DataSource *out, char *error, size_t error_size) {
    char images_path[2048];
    const char *images = spec + strlen("idx:");
    const char *colon = strchr(images, ':');
    if (!colon || colon == images || !colon[1] || (size_t)(colon - images) >= sizeof images_path) {
        snprintf(error, error_size, "--%s %s: expected idx:IMAGES:LABELS", flag, spec);
        return -1;
    }
    memcpy(images_path, images, (size_t)(colon - images));
    images_path[colon - images] = '\0';
    const char *labels_path = colon + 1;
    char why[1024];
    IdxArray labels = {0};
    if (idx_load(images_path, &out->images, why, sizeof why) != 0 || idx_load(labels_path, &labels, why, sizeof why) != 0) {
        snprintf(error, error_size, "--%s: %s", flag, why);
        idx_free(&out->images);
        return -1;
    }
    if (out->images.ndim < 3 || out->images.dims[0] != labels.dims[0]) {
        snprintf(error, error_size, "--%s: %s holds %lld images of %d dims but %s holds %lld labels", flag, images_path,
                 (long long)out->images.dims[0], out->images.ndim, labels_path, (long long)labels.dims[0]);
        idx_free(&labels);
        idx_free(&out->images);
        return -1;
    }
    out->dataset = dataset_from_idx_labels(&labels, labels_path, why, sizeof why);
    idx_free(&labels);
    if (!out->dataset) {
        snprintf(error, error_size, "--%s: %s", flag, why);
        idx_free(&out->images);
        return -1;
    }
    snprintf(out->description, sizeof out->description, "%s", spec);
    return 0;
}

int data_source_open(const char *flag, const char *spec, const char *default_split, const char *benchmark_root,
                     const char *image_root, DataSource *out, char *error, size_t error_size) {
    *out = (DataSource){0};
    if (!spec || !*spec) {
        snprintf(error, error_size, "--%s: no data given", flag);
        return -1;
    }
    if (strncmp(spec, "bench:", 6) == 0)
        return open_benchmark(flag, spec, default_split, benchmark_root, out, error, error_size);
    if (strncmp(spec, "idx:", 4) == 0) return open_idx(flag, spec, out, error, error_size);
    char why[1024];
    if (is_directory(spec)) {
        out->dataset = dataset_image_folder(spec, why, sizeof why);
        snprintf(out->description, sizeof out->description, "%s (ImageFolder)", spec);
    } else if (ends_with(spec, ".txt") || ends_with(spec, ".list") || ends_with(spec, ".lst")) {
        char list_directory[2048];
        if (!image_root || !*image_root) {
            if (strlen(spec) >= sizeof list_directory) {
                snprintf(error, error_size, "--%s: the path is longer than %zu characters", flag, sizeof list_directory - 1);
                return -1;
            }
            snprintf(list_directory, sizeof list_directory, "%s", spec);
            char *slash = strrchr(list_directory, '/');
            if (slash == list_directory) slash[1] = '\0';  // a list in / keeps "/" as its directory
            else if (slash) *slash = '\0';
            else snprintf(list_directory, sizeof list_directory, ".");
            image_root = list_directory;
        }
        out->dataset = dataset_image_list(spec, image_root, 0, why, sizeof why);
        snprintf(out->description, sizeof out->description, "%s (image list, images under %s)", spec, image_root);
    } else {
        snprintf(error, error_size,
                 "--%s %s: not a directory, an image list (.txt), bench:DOMAIN or idx:IMAGES:LABELS", flag, spec);
        return -1;
    }
    if (!out->dataset) {
        snprintf(error, error_size, "--%s: %s", flag, why);
        return -1;
    }
    return 0;
}

void data_source_close(DataSource *source) {
    dataset_free(source->dataset);
    idx_free(&source->images);
    *source = (DataSource){0};
}
