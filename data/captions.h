// Captions of a dataset's images for text-conditional generators: a TSV file of
// "<path>\t<category>\t<caption>" lines (the built-in world corpus's captions.tsv), paths relative
// to the file's folder, or a template filled with each image's class name.
#pragma once
#include <stddef.h>

#include "data/dataset.h"

// One caption per sample of dataset (index = sample index), malloc'd strings in a malloc'd array.
// Every sample must have a caption: a missing one, a malformed line or a path captioned twice is
// an error. NULL with one line in error ("<file>:<line>: ...").
char **captions_from_tsv(const Dataset *dataset, const char *tsv_path, char *error, size_t error_size);
// "{class}" in template replaced by the sample's class name (ImageFolder names, with '-' and '_'
// read as spaces), or by its label number when the dataset has no names.
char **captions_from_template(const Dataset *dataset, const char *template_text);
void captions_free(char **captions, int64_t count);
