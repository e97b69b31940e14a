// A grid of images as one PNG: sample sheets of generators and training runs.
#pragma once
#include <stddef.h>

#include "engine/tensor.h"

// images [n, 3, H, W] (or [n, 1, H, W]) f32 in [0, 1] (clamped) on the CPU, in rows of `columns`,
// 2 white pixels between images. 0, or -1 with one line in error.
int image_grid_save(const char *path, Tensor *images, int columns, char *error, size_t error_size);
