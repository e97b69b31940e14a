// Sample sheets (data/image_grid.h).
#include "data/image_grid.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/image.h"
#include "engine/ops.h"

#define GRID_GAP 2

int image_grid_save(const char *path, Tensor *images, int columns, char *error, size_t error_size) {
    char shape[96];
    if (images->ndim != 4 || (images->shape[1] != 3 && images->shape[1] != 1) || images->dtype != DTYPE_F32 ||
        images->storage->device.kind != DEVICE_CPU || columns < 1) {
        snprintf(error, error_size, "%s: cannot make a grid of %s images (expected f32 [n, 3 or 1, H, W] on the CPU)", path,
                 tensor_shape_string(images, shape, sizeof shape));
        return -1;
    }
    Tensor *x = op_contiguous(images);
    int64_t n = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    int64_t cols = n < columns ? n : columns, rows = (n + columns - 1) / columns;
    Image grid = {.width = (int)(cols * W + (cols - 1) * GRID_GAP), .height = (int)(rows * H + (rows - 1) * GRID_GAP),
                  .channels = 3};
    if (n == 0) grid.width = grid.height = 1;
    grid.pixels = malloc((size_t)grid.width * (size_t)grid.height * 3);
    if (!grid.pixels) tensor_fatal("image_grid", "out of memory");
    memset(grid.pixels, 255, (size_t)grid.width * (size_t)grid.height * 3);
    const float *data = tensor_f32(x);
    for (int64_t i = 0; i < n; i++) {
        int64_t top = (i / columns) * (H + GRID_GAP), left = (i % columns) * (W + GRID_GAP);
        for (int64_t y = 0; y < H; y++)
            for (int64_t xx = 0; xx < W; xx++)
                for (int c = 0; c < 3; c++) {
                    float v = data[((i * C + (C == 1 ? 0 : c)) * H + y) * W + xx];
                    v = v != v ? 0.0f : v < 0 ? 0.0f : v > 1 ? 1.0f : v;  // NaN shows black
                    grid.pixels[((size_t)(top + y) * (size_t)grid.width + (size_t)(left + xx)) * 3 + (size_t)c] =
                        (uint8_t)lrintf(v * 255.0f);
                }
    }
    int status = image_save_png(path, &grid, error, error_size);
    image_free(&grid);
    return status;
}
