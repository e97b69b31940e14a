// Datasets as lists of samples (an image file and its label, or a row of an IDX array and its
// label). Nothing here decodes an image: a Dataset says which files, in which order, with which
// labels; decoding and transforms come later, in the loader.
//
// Sources:
//   - ImageFolder, as torchvision.datasets.ImageFolder: root/<class>/.../<file>; see
//     dataset_image_folder for the order and the filters.
//   - image lists, as tllib (Transfer-Learning-Library) and CDTrans ship for Office-31, Office-Home,
//     VisDA-2017 and DomainNet: one "<path> <label>" per line.
//   - the label file of an IDX pair (MNIST, Fashion-MNIST); the images stay in their IdxArray.
// Derived: fixed seeded per-class subsets (n labelled per class for SSL, and the rest), and a
// paired-domain view for adaptation.
//
// Ownership: every function that returns a Dataset * allocates it (samples, paths and names
// included) and the caller releases it with dataset_free. Subsets copy their samples, so they
// outlive the dataset they came from. A DomainPair only borrows its three datasets.
//
// Errors: functions return NULL / -1 and write one line to `error`: "<file>: <problem>" or
// "<file>:<line>: <problem>".
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "data/idx.h"

typedef struct {
    char *path;     // image file (root or image_root joined in); NULL for IDX samples
    int64_t index;  // row of the IDX array for IDX samples; position in the source otherwise
    int64_t label;  // 0 .. class_count - 1
} DatasetSample;

typedef struct {
    DatasetSample *samples;
    int64_t count;
    int64_t class_count;
    // Class names, class_count of them, for ImageFolder (the folder names); NULL for lists and IDX
    // labels, whose classes are only numbers.
    char **class_names;
    // ImageFolder: classes whose folder held no image file. Allowed (torchvision raises instead,
    // unless allow_empty) because a domain of a benchmark can miss a class; callers should warn.
    int64_t empty_class_count;
    char *source;  // the root, list or label file it came from, for messages
} Dataset;

// ImageFolder. Classes are the subdirectories of root, sorted by strcmp (torchvision sorts the
// Python strings: the same order for UTF-8 names). Within a class, as torchvision's os.walk walk:
// directories in strcmp order of their path, files sorted by name within each directory, nested
// directories included (symbolic links followed, depth at most 32). Only files whose name ends,
// case-insensitively, in .png .jpg .jpeg .bmp .gif .pgm .ppm are kept. Names starting with '.'
// (hidden files and directories, ".", "..") are skipped at every level -- unlike torchvision, which
// keeps hidden class folders and files. Top-level entries that are not directories are skipped.
// Errors: root missing or not a directory; no class folder.
Dataset *dataset_image_folder(const char *root, char *error, size_t error_size);

// "<path> <label>" per line. The label is the last whitespace-separated field and the path is the
// rest of the line with surrounding whitespace trimmed (tllib joins the other fields the same way,
// so paths may contain spaces). Relative paths are joined to image_root (NULL or "" keeps them as
// written); absolute paths are kept. Blank lines and lines whose first non-blank character is '#'
// are skipped. Labels are decimal non-negative integers. class_count 0 means max label + 1;
// a positive class_count is checked (labels must be below it) and kept, for a split that misses
// the last classes. Errors: missing file, malformed line, bad label (each "<list>:<line>: ..."),
// no samples.
Dataset *dataset_image_list(const char *list_path, const char *image_root, int64_t class_count,
                            char *error, size_t error_size);

// Samples 0..N-1 of a 1-D integer IDX label array (u8, i8, i16, i32), index i = row i of the image
// array; class_count = max label + 1. `name` is only for messages (the label file's path).
Dataset *dataset_from_idx_labels(const IdxArray *labels, const char *name, char *error,
                                 size_t error_size);

void dataset_free(Dataset *dataset);  // NULL is fine

// Per-class counts: counts[c] for c < class_count (caller's array of class_count entries).
void dataset_class_counts(const Dataset *dataset, int64_t *counts);

// A fixed, seeded subset with exactly n_per_class samples of each class (*selected), and the other
// samples (*rest), as SSL benchmarks split a training set into labelled and unlabelled parts.
// Draw: Rng = rng_make(seed, 0); for each class c = 0, 1, ... in order, the class's samples in
// dataset order are permuted with rng_permutation and the first n_per_class are taken. Both
// subsets keep dataset order, so the result depends only on (dataset, n_per_class, seed).
// (FixMatch uses the whole training set as unlabelled data; pass the dataset itself for that.)
// Error if a class has fewer than n_per_class samples. rest may be NULL if not wanted.
int dataset_subset_per_class(const Dataset *dataset, int64_t n_per_class, uint64_t seed,
                             Dataset **selected, Dataset **rest, char *error, size_t error_size);

// The three datasets of an adaptation run: labelled source, unlabelled target (its labels are
// never used for training) and labelled target test data (may be the same Dataset as
// target_unlabelled, as the UDA benchmarks evaluate on the adaptation set). Borrowed, not owned.
typedef struct {
    Dataset *source_labelled;
    Dataset *target_unlabelled;
    Dataset *target_test;
} DomainPair;

// Checks that the three agree on the class count, and on the class names where both have names;
// 0 on success, -1 with one line naming the two sources that differ.
int domain_pair_make(Dataset *source_labelled, Dataset *target_unlabelled, Dataset *target_test,
                     DomainPair *out, char *error, size_t error_size);
