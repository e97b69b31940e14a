// Where a command's images come from, from one flag value (`--data`, `--val`, `--source`, ...):
//   bench:DOMAIN[/SPLIT]   a domain of the built-in benchmark (`tailor data build`), the ImageFolder
//                          <benchmark root>/DOMAIN/SPLIT (SPLIT is the command's default split
//                          unless given: train for training, test for evaluation)
//   DIR                    an ImageFolder: DIR/<class>/<image>
//   FILE.txt               an image list, "<path> <label>" per line (tllib/CDTrans layout); relative
//                          paths are under --image-root, or the list's own directory without it
//   idx:IMAGES:LABELS      an IDX pair (MNIST / Fashion-MNIST files, plain or .gz)
// Errors are one line naming the flag and what is wrong.
#pragma once
#include <stddef.h>

#include "data/dataset.h"
#include "data/idx.h"

typedef struct {
    Dataset *dataset;
    IdxArray images;      // the IDX images for idx: sources (empty otherwise)
    char description[4400];  // e.g. "bench:print/train (data/benchmark/print/train)"
} DataSource;

// benchmark_root: the built-in benchmark's directory (--benchmark-root, default data/benchmark).
// default_split: "train" or "test". image_root may be NULL. 0, or -1 with one line in error.
int data_source_open(const char *flag, const char *spec, const char *default_split, const char *benchmark_root,
                     const char *image_root, DataSource *out, char *error, size_t error_size);
void data_source_close(DataSource *source);
// The IDX images to give the loader (NULL for file datasets).
static inline const IdxArray *data_source_idx(const DataSource *source) {
    return source->images.data ? &source->images : NULL;
}
