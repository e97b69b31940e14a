// Captions of datasets (data/captions.h).
#include "data/captions.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/string_map.h"
#include "engine/tensor.h"

void captions_free(char **captions, int64_t count) {
    for (int64_t i = 0; captions && i < count; i++) free(captions[i]);
    free(captions);
}

static char **new_list(int64_t count) {
    char **list = calloc((size_t)(count > 0 ? count : 1), sizeof *list);
    if (!list) tensor_fatal("captions", "out of memory");
    return list;
}

char **captions_from_tsv(const Dataset *dataset, const char *tsv_path, char *error, size_t error_size) {
    FILE *f = fopen(tsv_path, "rb");
    if (!f) return snprintf(error, error_size, "%s: cannot open: %s", tsv_path, strerror(errno)), NULL;
    StringMap by_path = {0};
    for (int64_t i = 0; i < dataset->count; i++)
        if (dataset->samples[i].path) string_map_put(&by_path, dataset->samples[i].path, strlen(dataset->samples[i].path), i);
    char folder[4096];
    snprintf(folder, sizeof folder, "%s", tsv_path);
    char *slash = strrchr(folder, '/');
    if (slash) slash[1] = 0;
    else folder[0] = 0;
    char **captions = new_list(dataset->count);
    char *line = NULL;
    size_t capacity = 0;
    ssize_t length;
    int64_t line_number = 0, found = 0;
    int status = 0;
    while (status == 0 && (length = getline(&line, &capacity, f)) >= 0) {
        line_number++;
        while (length > 0 && (line[length - 1] == '\n' || line[length - 1] == '\r')) line[--length] = 0;
        if (length == 0) continue;
        char *tab1 = strchr(line, '\t'), *tab2 = tab1 ? strchr(tab1 + 1, '\t') : NULL;
        if (!tab2 || strchr(tab2 + 1, '\t') || !tab2[1]) {
            snprintf(error, error_size, "%s:%lld: expected \"<path>\\t<category>\\t<caption>\"", tsv_path, (long long)line_number);
            status = -1;
            break;
        }
        *tab1 = 0;
        char path[8192];
        snprintf(path, sizeof path, "%s%s", line[0] == '/' ? "" : folder, line);
        int64_t *index = string_map_find(&by_path, path, strlen(path));
        if (!index) continue;  // a caption of an image outside this dataset (a subset, say)
        if (captions[*index]) {
            snprintf(error, error_size, "%s:%lld: %s is captioned twice", tsv_path, (long long)line_number, line);
            status = -1;
            break;
        }
        captions[*index] = strdup(tab2 + 1);
        if (!captions[*index]) tensor_fatal("captions", "out of memory");
        found++;
    }
    if (status == 0 && ferror(f)) status = -1, snprintf(error, error_size, "%s: read error", tsv_path);
    free(line);
    fclose(f);
    string_map_free(&by_path);
    for (int64_t i = 0; status == 0 && i < dataset->count; i++)
        if (!captions[i]) {
            snprintf(error, error_size, "%s: no caption for %s (%lld of the dataset's %lld images have one)", tsv_path,
                     dataset->samples[i].path ? dataset->samples[i].path : "an IDX image", (long long)found,
                     (long long)dataset->count);
            status = -1;
        }
    if (status != 0) {
        captions_free(captions, dataset->count);
        return NULL;
    }
    return captions;
}

char **captions_from_template(const Dataset *dataset, const char *template_text) {
    char **captions = new_list(dataset->count);
    for (int64_t i = 0; i < dataset->count; i++) {
        char name[512];
        int64_t label = dataset->samples[i].label;
        if (dataset->class_names) snprintf(name, sizeof name, "%s", dataset->class_names[label]);
        else snprintf(name, sizeof name, "%lld", (long long)label);
        for (char *c = name; *c; c++)
            if (*c == '-' || *c == '_') *c = ' ';
        size_t size = strlen(template_text) + 16 * strlen(name) + 1;
        char *out = malloc(size), *at = out;
        if (!out) tensor_fatal("captions", "out of memory");
        for (const char *t = template_text; *t;) {
            if (!strncmp(t, "{class}", 7) && (size_t)(at - out) + strlen(name) < size) {
                at += sprintf(at, "%s", name);
                t += 7;
            } else if ((size_t)(at - out) + 1 < size) {
                *at++ = *t++;
            } else {
                break;
            }
        }
        *at = 0;
        captions[i] = out;
    }
    return captions;
}
