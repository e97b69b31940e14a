// Datasets: building sample lists from folders, list files and IDX labels; seeded subsets; the
// paired-domain view. See dataset.h for the rules each source follows.
#include "data/dataset.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "engine/rng.h"

#define IMAGE_FOLDER_MAX_DEPTH 32  // guards against symbolic-link cycles

__attribute__((format(printf, 3, 4))) static void report(char *error, size_t error_size,
                                                         const char *format, ...) {
    if (!error || error_size == 0) return;
    va_list args;
    va_start(args, format);
    vsnprintf(error, error_size, format, args);
    va_end(args);
}

static char *copy_string(const char *s) {
    size_t n = strlen(s) + 1;
    char *copy = malloc(n);
    if (copy) memcpy(copy, s, n);
    return copy;
}

static char *join_path(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    int slash = a > 0 && dir[a - 1] != '/';
    char *path = malloc(a + (size_t)slash + b + 1);
    if (!path) return NULL;
    memcpy(path, dir, a);
    if (slash) path[a] = '/';
    memcpy(path + a + slash, name, b + 1);
    return path;
}

void dataset_free(Dataset *dataset) {
    if (!dataset) return;
    for (int64_t i = 0; i < dataset->count; i++) free(dataset->samples[i].path);
    free(dataset->samples);
    if (dataset->class_names)
        for (int64_t c = 0; c < dataset->class_count; c++) free(dataset->class_names[c]);
    free(dataset->class_names);
    free(dataset->source);
    free(dataset);
}

static Dataset *dataset_new(const char *source) {
    Dataset *dataset = calloc(1, sizeof(*dataset));
    if (!dataset) return NULL;
    dataset->source = copy_string(source ? source : "");
    if (!dataset->source) { free(dataset); return NULL; }
    return dataset;
}

// Appends a sample, taking ownership of path (freed on failure). 0 on success.
static int dataset_push(Dataset *dataset, int64_t *capacity, char *path, int64_t index,
                        int64_t label) {
    if (dataset->count == *capacity) {
        int64_t grown_capacity = *capacity ? *capacity * 2 : 64;
        DatasetSample *grown = realloc(dataset->samples, (size_t)grown_capacity * sizeof(*grown));
        if (!grown) { free(path); return -1; }
        dataset->samples = grown;
        *capacity = grown_capacity;
    }
    dataset->samples[dataset->count++] = (DatasetSample){path, index, label};
    return 0;
}

void dataset_class_counts(const Dataset *dataset, int64_t *counts) {
    for (int64_t c = 0; c < dataset->class_count; c++) counts[c] = 0;
    for (int64_t i = 0; i < dataset->count; i++) counts[dataset->samples[i].label]++;
}

// ---- ImageFolder ----

// The subset of torchvision's IMG_EXTENSIONS that our decoder (stb_image) reads.
static int has_image_extension(const char *name) {
    static const char *const extensions[] = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".pgm", ".ppm"};
    size_t n = strlen(name);
    for (size_t e = 0; e < sizeof(extensions) / sizeof(extensions[0]); e++) {
        size_t k = strlen(extensions[e]);
        if (n > k && strcasecmp(name + n - k, extensions[e]) == 0) return 1;
    }
    return 0;
}

typedef struct {
    char **items;
    size_t count, capacity;
} StringList;

static int string_list_push(StringList *list, char *s) {
    if (!s) return -1;
    if (list->count == list->capacity) {
        size_t capacity = list->capacity ? list->capacity * 2 : 16;
        char **grown = realloc(list->items, capacity * sizeof(*grown));
        if (!grown) { free(s); return -1; }
        list->items = grown;
        list->capacity = capacity;
    }
    list->items[list->count++] = s;
    return 0;
}

static void string_list_free(StringList *list) {
    for (size_t i = 0; i < list->count; i++) free(list->items[i]);
    free(list->items);
    memset(list, 0, sizeof(*list));
}

static int compare_strings(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

// Non-hidden entries of dir, split into subdirectories and image files (names only), each sorted.
// stat follows symbolic links, as os.walk(followlinks=True) does. -1 if dir cannot be read.
static int list_directory(const char *dir, StringList *subdirs, StringList *files) {
    DIR *handle = opendir(dir);
    if (!handle) return -1;
    int status = 0;
    struct dirent *entry;
    while (status == 0 && (entry = readdir(handle)) != NULL) {
        if (entry->d_name[0] == '.') continue;
        char *full = join_path(dir, entry->d_name);
        if (!full) { status = -1; break; }
        struct stat info;
        if (stat(full, &info) == 0) {
            if (S_ISDIR(info.st_mode)) {
                if (subdirs) status = string_list_push(subdirs, copy_string(entry->d_name));
            } else if (files && S_ISREG(info.st_mode) && has_image_extension(entry->d_name)) {
                status = string_list_push(files, copy_string(entry->d_name));
            }
        }
        free(full);
    }
    closedir(handle);
    // (qsort's pointer must not be NULL, even for 0 items.)
    if (subdirs && subdirs->count) qsort(subdirs->items, subdirs->count, sizeof(char *), compare_strings);
    if (files && files->count) qsort(files->items, files->count, sizeof(char *), compare_strings);
    return status;
}

typedef struct {
    char *dir;   // directory path
    char *name;  // file name
} FoundFile;

static int compare_found_files(const void *a, const void *b) {
    const FoundFile *x = a, *y = b;
    int by_dir = strcmp(x->dir, y->dir);
    return by_dir ? by_dir : strcmp(x->name, y->name);
}

typedef struct {
    FoundFile *items;
    size_t count, capacity;
} FoundFileList;

// Collects the image files under dir, recursively. -1 on allocation failure.
static int walk_class_directory(const char *dir, int depth, FoundFileList *found) {
    StringList subdirs = {0}, files = {0};
    int status = list_directory(dir, depth < IMAGE_FOLDER_MAX_DEPTH ? &subdirs : NULL, &files);
    if (status != 0 && errno == ENOMEM) goto done;
    status = 0;  // an unreadable nested directory is skipped, as os.walk does
    for (size_t i = 0; i < files.count && status == 0; i++) {
        if (found->count == found->capacity) {
            size_t capacity = found->capacity ? found->capacity * 2 : 64;
            FoundFile *grown = realloc(found->items, capacity * sizeof(*grown));
            if (!grown) { status = -1; break; }
            found->items = grown;
            found->capacity = capacity;
        }
        char *dir_copy = copy_string(dir);
        if (!dir_copy) { status = -1; break; }
        found->items[found->count++] = (FoundFile){dir_copy, files.items[i]};
        files.items[i] = NULL;
    }
    for (size_t i = 0; i < subdirs.count && status == 0; i++) {
        char *sub = join_path(dir, subdirs.items[i]);
        if (!sub) { status = -1; break; }
        status = walk_class_directory(sub, depth + 1, found);
        free(sub);
    }
done:
    string_list_free(&subdirs);
    string_list_free(&files);
    return status;
}

Dataset *dataset_image_folder(const char *root, char *error, size_t error_size) {
    struct stat info;
    if (stat(root, &info) != 0) {
        report(error, error_size, "%s: image folder root: %s", root, strerror(errno));
        return NULL;
    }
    if (!S_ISDIR(info.st_mode)) {
        report(error, error_size, "%s: image folder root is not a directory", root);
        return NULL;
    }
    StringList classes = {0};
    if (list_directory(root, &classes, NULL) != 0) {
        report(error, error_size, "%s: cannot read the image folder root: %s", root,
               strerror(errno));
        string_list_free(&classes);
        return NULL;
    }
    if (classes.count == 0) {
        report(error, error_size,
               "%s: no class folders (expected root/<class>/<image files>)", root);
        string_list_free(&classes);
        return NULL;
    }
    Dataset *dataset = dataset_new(root);
    if (!dataset) goto out_of_memory;
    dataset->class_count = (int64_t)classes.count;
    dataset->class_names = calloc(classes.count, sizeof(char *));
    if (!dataset->class_names) goto out_of_memory;
    int64_t capacity = 0;
    for (size_t c = 0; c < classes.count; c++) {
        dataset->class_names[c] = classes.items[c];
        classes.items[c] = NULL;
        char *class_dir = join_path(root, dataset->class_names[c]);
        if (!class_dir) goto out_of_memory;
        FoundFileList found = {0};
        int status = walk_class_directory(class_dir, 1, &found);
        free(class_dir);
        if (found.count) qsort(found.items, found.count, sizeof(FoundFile), compare_found_files);
        if (found.count == 0) dataset->empty_class_count++;
        for (size_t i = 0; i < found.count; i++) {
            char *path = status == 0 ? join_path(found.items[i].dir, found.items[i].name) : NULL;
            if (status == 0 && (!path || dataset_push(dataset, &capacity, path, dataset->count,
                                                      (int64_t)c) != 0))
                status = -1;
            free(found.items[i].dir);
            free(found.items[i].name);
        }
        free(found.items);
        if (status != 0) goto out_of_memory;
    }
    string_list_free(&classes);
    return dataset;
out_of_memory:
    report(error, error_size, "%s: out of memory listing the image folder", root);
    string_list_free(&classes);
    dataset_free(dataset);
    return NULL;
}

// ---- image lists ----

// Parses a decimal non-negative integer that fills [begin, end). -1 if it is not one.
static int parse_label(const char *begin, const char *end, int64_t *out) {
    if (begin == end) return -1;
    int64_t value = 0;
    for (const char *p = begin; p < end; p++) {
        if (*p < '0' || *p > '9') return -1;
        if (value > (INT64_MAX - 9) / 10) return -1;
        value = value * 10 + (*p - '0');
    }
    *out = value;
    return 0;
}

Dataset *dataset_image_list(const char *list_path, const char *image_root, int64_t class_count,
                            char *error, size_t error_size) {
    FILE *file = fopen(list_path, "r");
    if (!file) {
        report(error, error_size, "%s: cannot open image list: %s", list_path, strerror(errno));
        return NULL;
    }
    Dataset *dataset = dataset_new(list_path);
    char *line = NULL;
    size_t line_capacity = 0;
    int64_t capacity = 0, line_number = 0, max_label = -1;
    if (!dataset) goto out_of_memory;
    ssize_t length;
    while ((length = getline(&line, &line_capacity, file)) != -1) {
        line_number++;
        char *begin = line, *end = line + length;
        while (begin < end && isspace((unsigned char)*begin)) begin++;
        while (end > begin && isspace((unsigned char)end[-1])) end--;
        if (begin == end || *begin == '#') continue;
        // The label is the last field; the path is what precedes it, trimmed.
        char *label_begin = end;
        while (label_begin > begin && !isspace((unsigned char)label_begin[-1])) label_begin--;
        char *path_end = label_begin;
        while (path_end > begin && isspace((unsigned char)path_end[-1])) path_end--;
        if (path_end == begin) {
            report(error, error_size, "%s:%lld: expected '<path> <label>', got '%.*s'", list_path,
                   (long long)line_number, (int)(end - begin), begin);
            goto fail;
        }
        int64_t label;
        if (parse_label(label_begin, end, &label) != 0) {
            report(error, error_size,
                   "%s:%lld: label '%.*s' is not a non-negative integer (expected '<path> <label>')",
                   list_path, (long long)line_number, (int)(end - label_begin), label_begin);
            goto fail;
        }
        if (class_count > 0 && label >= class_count) {
            report(error, error_size, "%s:%lld: label %lld out of range for %lld classes",
                   list_path, (long long)line_number, (long long)label, (long long)class_count);
            goto fail;
        }
        *path_end = 0;
        char *path = (image_root && image_root[0] && begin[0] != '/') ? join_path(image_root, begin)
                                                                       : copy_string(begin);
        if (!path || dataset_push(dataset, &capacity, path, dataset->count, label) != 0)
            goto out_of_memory;
        if (label > max_label) max_label = label;
    }
    if (ferror(file)) {
        report(error, error_size, "%s: read error", list_path);
        goto fail;
    }
    if (dataset->count == 0) {
        report(error, error_size, "%s: image list has no samples", list_path);
        goto fail;
    }
    dataset->class_count = class_count > 0 ? class_count : max_label + 1;
    free(line);
    fclose(file);
    return dataset;
out_of_memory:
    report(error, error_size, "%s: out of memory reading the image list", list_path);
fail:
    free(line);
    fclose(file);
    dataset_free(dataset);
    return NULL;
}

// ---- IDX labels ----

Dataset *dataset_from_idx_labels(const IdxArray *labels, const char *name, char *error,
                                 size_t error_size) {
    if (labels->ndim != 1) {
        report(error, error_size, "%s: labels must be 1-D, the IDX array has %d dims", name,
               labels->ndim);
        return NULL;
    }
    if (labels->type == IDX_F32 || labels->type == IDX_F64) {
        report(error, error_size, "%s: labels must be integers, the IDX array is %s", name,
               idx_type_name(labels->type));
        return NULL;
    }
    Dataset *dataset = dataset_new(name);
    if (!dataset) goto out_of_memory;
    int64_t n = labels->dims[0];
    dataset->samples = calloc(n ? (size_t)n : 1, sizeof(DatasetSample));
    if (!dataset->samples) goto out_of_memory;
    int64_t max_label = -1;
    for (int64_t i = 0; i < n; i++) {
        int64_t label = idx_get_int64(labels, i);
        if (label < 0) {
            report(error, error_size, "%s: label %lld at row %lld is negative", name,
                   (long long)label, (long long)i);
            dataset_free(dataset);
            return NULL;
        }
        dataset->samples[i] = (DatasetSample){NULL, i, label};
        dataset->count = i + 1;
        if (label > max_label) max_label = label;
    }
    dataset->class_count = max_label + 1;
    return dataset;
out_of_memory:
    report(error, error_size, "%s: out of memory", name);
    dataset_free(dataset);
    return NULL;
}

// ---- subsets ----

// A new dataset with the same classes and the samples whose flag equals `want`, copied.
static Dataset *dataset_copy_flagged(const Dataset *dataset, const uint8_t *flags, uint8_t want) {
    Dataset *copy = dataset_new(dataset->source);
    if (!copy) return NULL;
    copy->class_count = dataset->class_count;
    copy->empty_class_count = dataset->empty_class_count;
    if (dataset->class_names) {
        copy->class_names = calloc((size_t)dataset->class_count, sizeof(char *));
        if (!copy->class_names) goto fail;
        for (int64_t c = 0; c < dataset->class_count; c++)
            if (!(copy->class_names[c] = copy_string(dataset->class_names[c]))) goto fail;
    }
    int64_t capacity = 0;
    for (int64_t i = 0; i < dataset->count; i++) {
        if (flags[i] != want) continue;
        const DatasetSample *s = &dataset->samples[i];
        char *path = NULL;
        if (s->path && !(path = copy_string(s->path))) goto fail;
        if (dataset_push(copy, &capacity, path, s->index, s->label) != 0) goto fail;
    }
    return copy;
fail:
    dataset_free(copy);
    return NULL;
}

int dataset_subset_per_class(const Dataset *dataset, int64_t n_per_class, uint64_t seed,
                             Dataset **selected, Dataset **rest, char *error, size_t error_size) {
    *selected = NULL;
    if (rest) *rest = NULL;
    if (n_per_class < 0) {
        report(error, error_size, "%s: subset size per class must be >= 0, got %lld",
               dataset->source, (long long)n_per_class);
        return -1;
    }
    int64_t classes = dataset->class_count;
    int64_t *counts = calloc(classes ? (size_t)classes : 1, sizeof(int64_t));
    int64_t *members = malloc((dataset->count ? (size_t)dataset->count : 1) * sizeof(int64_t));
    int64_t *order = malloc((dataset->count ? (size_t)dataset->count : 1) * sizeof(int64_t));
    uint8_t *flags = calloc(dataset->count ? (size_t)dataset->count : 1, 1);
    int status = -1;
    if (!counts || !members || !order || !flags) {
        report(error, error_size, "%s: out of memory", dataset->source);
        goto done;
    }
    dataset_class_counts(dataset, counts);
    for (int64_t c = 0; c < classes; c++) {
        if (counts[c] < n_per_class) {
            const char *name = dataset->class_names ? dataset->class_names[c] : NULL;
            report(error, error_size,
                   "%s: class %lld%s%s%s has %lld samples, fewer than the %lld per class asked for",
                   dataset->source, (long long)c, name ? " ('" : "", name ? name : "",
                   name ? "')" : "", (long long)counts[c], (long long)n_per_class);
            goto done;
        }
    }
    Rng rng = rng_make(seed, 0);
    for (int64_t c = 0; c < classes; c++) {
        int64_t m = 0;
        for (int64_t i = 0; i < dataset->count; i++)
            if (dataset->samples[i].label == c) members[m++] = i;
        if (m == 0) continue;
        rng_permutation(&rng, order, m);
        for (int64_t k = 0; k < n_per_class; k++) flags[members[order[k]]] = 1;
    }
    *selected = dataset_copy_flagged(dataset, flags, 1);
    if (rest) *rest = dataset_copy_flagged(dataset, flags, 0);
    if (!*selected || (rest && !*rest)) {
        dataset_free(*selected);
        *selected = NULL;
        if (rest) { dataset_free(*rest); *rest = NULL; }
        report(error, error_size, "%s: out of memory", dataset->source);
        goto done;
    }
    status = 0;
done:
    free(counts);
    free(members);
    free(order);
    free(flags);
    return status;
}

// ---- paired domains ----

static int check_same_classes(const Dataset *a, const char *a_role, const Dataset *b,
                              const char *b_role, char *error, size_t error_size) {
    if (a->class_count != b->class_count) {
        report(error, error_size,
               "domain pair: class counts differ: %s '%s' has %lld classes, %s '%s' has %lld",
               a_role, a->source, (long long)a->class_count, b_role, b->source,
               (long long)b->class_count);
        return -1;
    }
    if (a->class_names && b->class_names)
        for (int64_t c = 0; c < a->class_count; c++)
            if (strcmp(a->class_names[c], b->class_names[c]) != 0) {
                report(error, error_size,
                       "domain pair: class %lld is '%s' in %s '%s' but '%s' in %s '%s'",
                       (long long)c, a->class_names[c], a_role, a->source, b->class_names[c],
                       b_role, b->source);
                return -1;
            }
    return 0;
}

int domain_pair_make(Dataset *source_labelled, Dataset *target_unlabelled, Dataset *target_test,
                     DomainPair *out, char *error, size_t error_size) {
    memset(out, 0, sizeof(*out));
    if (!source_labelled || !target_unlabelled || !target_test) {
        report(error, error_size, "domain pair: %s dataset missing",
               !source_labelled ? "source labelled" : !target_unlabelled ? "target unlabelled"
                                                                         : "target test");
        return -1;
    }
    if (check_same_classes(source_labelled, "source", target_unlabelled, "target", error,
                           error_size) != 0 ||
        check_same_classes(source_labelled, "source", target_test, "target test", error,
                           error_size) != 0)
        return -1;
    *out = (DomainPair){source_labelled, target_unlabelled, target_test};
    return 0;
}
