// grid.png of the benchmark: an indexed (palette) PNG, exact when the grid has at most 256 colours
// (the grey domains), otherwise quantised to 256 colours by median cut, so that a preview of photo
// crops stays near 60 KB instead of 230 KB. The images of the benchmark themselves are lossless RGB.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "data/benchmark_internal.h"

typedef struct {
    uint32_t colour;  // 0xRRGGBB
    uint32_t count;
} ColourCount;

static int compare_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static int compare_channel(const void *a, const void *b, void *context) {
    const ColourCount *x = a, *y = b;
    int channel = *(const int *)context;
    uint32_t cx = (x->colour >> (16 - 8 * channel)) & 255, cy = (y->colour >> (16 - 8 * channel)) & 255;
    if (cx != cy) return cx < cy ? -1 : 1;
    return (x->colour > y->colour) - (x->colour < y->colour);
}

typedef struct {
    int begin, end;  // range of the colour table
} Box;

// Median cut over the distinct colours (weighted by count): the box with the largest channel range
// (ties: the first) is split at its weighted median along that channel, until `want` boxes.
static int median_cut(ColourCount *colours, int n, int want, uint8_t palette[256][3]) {
    Box boxes[256];
    int box_count = 1;
    boxes[0] = (Box){0, n};
    while (box_count < want) {
        int best = -1, best_range = 0, best_channel = 0;
        for (int b = 0; b < box_count; b++) {
            if (boxes[b].end - boxes[b].begin < 2) continue;
            for (int ch = 0; ch < 3; ch++) {
                int lo = 255, hi = 0;
                for (int i = boxes[b].begin; i < boxes[b].end; i++) {
                    int v = (int)((colours[i].colour >> (16 - 8 * ch)) & 255);
                    if (v < lo) lo = v;
                    if (v > hi) hi = v;
                }
                if (hi - lo > best_range) best = b, best_range = hi - lo, best_channel = ch;
            }
        }
        if (best < 0) break;
        Box *box = &boxes[best];
        qsort_r(colours + box->begin, (size_t)(box->end - box->begin), sizeof(ColourCount), compare_channel, &best_channel);
        uint64_t total = 0, running = 0;
        for (int i = box->begin; i < box->end; i++) total += colours[i].count;
        int split = box->begin + 1;
        for (int i = box->begin; i < box->end - 1; i++) {
            running += colours[i].count;
            split = i + 1;
            if (2 * running >= total) break;
        }
        boxes[box_count++] = (Box){split, box->end};
        box->end = split;
    }
    for (int b = 0; b < box_count; b++) {
        uint64_t sum[3] = {0, 0, 0}, total = 0;
        for (int i = boxes[b].begin; i < boxes[b].end; i++) {
            for (int ch = 0; ch < 3; ch++) sum[ch] += (uint64_t)((colours[i].colour >> (16 - 8 * ch)) & 255) * colours[i].count;
            total += colours[i].count;
        }
        for (int ch = 0; ch < 3; ch++) palette[b][ch] = (uint8_t)((sum[ch] + total / 2) / (total ? total : 1));
    }
    return box_count;
}

static void put_u32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

static int write_chunk(FILE *file, const char *type, const uint8_t *data, uint32_t length) {
    uint8_t header[8];
    put_u32(header, length);
    memcpy(header + 4, type, 4);
    uLong crc = crc32(0, (const Bytef *)type, 4);
    if (length) crc = crc32(crc, data, length);
    uint8_t tail[4];
    put_u32(tail, (uint32_t)crc);
    return fwrite(header, 1, 8, file) == 8 && (!length || fwrite(data, 1, length, file) == length) && fwrite(tail, 1, 4, file) == 4 ? 0 : -1;
}

int bench_write_grid_png(const char *path, const uint8_t *rgb, int width, int height, char *error, size_t error_size) {
    size_t pixels = (size_t)width * height;
    uint32_t *sorted = malloc(pixels * sizeof(uint32_t));
    for (size_t i = 0; i < pixels; i++) sorted[i] = (uint32_t)rgb[3 * i] << 16 | (uint32_t)rgb[3 * i + 1] << 8 | rgb[3 * i + 2];
    qsort(sorted, pixels, sizeof(uint32_t), compare_u32);
    ColourCount *colours = malloc(pixels * sizeof(ColourCount));
    int n = 0;
    for (size_t i = 0; i < pixels; i++) {
        if (n && colours[n - 1].colour == sorted[i]) colours[n - 1].count++;
        else colours[n++] = (ColourCount){sorted[i], 1};
    }
    free(sorted);
    uint8_t palette[256][3];
    int palette_size;
    if (n <= 256) {
        for (int i = 0; i < n; i++)
            for (int ch = 0; ch < 3; ch++) palette[i][ch] = (uint8_t)((colours[i].colour >> (16 - 8 * ch)) & 255);
        palette_size = n;
    } else {
        palette_size = median_cut(colours, n, 256, palette);
    }
    free(colours);
    // Rows with filter byte 0, each pixel its nearest palette entry (the first on ties).
    size_t raw_size = (size_t)height * (width + 1);
    uint8_t *raw = malloc(raw_size);
    for (int y = 0; y < height; y++) {
        raw[(size_t)y * (width + 1)] = 0;
        for (int x = 0; x < width; x++) {
            const uint8_t *p = rgb + ((size_t)y * width + x) * 3;
            int best = 0, best_distance = 1 << 30;
            for (int k = 0; k < palette_size && best_distance; k++) {
                int dr = p[0] - palette[k][0], dg = p[1] - palette[k][1], db = p[2] - palette[k][2];
                int distance = dr * dr + dg * dg + db * db;
                if (distance < best_distance) best = k, best_distance = distance;
            }
            raw[(size_t)y * (width + 1) + 1 + x] = (uint8_t)best;
        }
    }
    uLongf packed_size = compressBound((uLong)raw_size);
    uint8_t *packed = malloc(packed_size);
    int z = compress2(packed, &packed_size, raw, (uLong)raw_size, 9);
    free(raw);
    if (z != Z_OK) {
        free(packed);
        snprintf(error, error_size, "%s: compression failed", path);
        return -1;
    }
    FILE *file = fopen(path, "wb");
    if (!file) {
        free(packed);
        snprintf(error, error_size, "%s: cannot create: %s", path, strerror(errno));
        return -1;
    }
    static const uint8_t signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    uint8_t ihdr[13];
    put_u32(ihdr, (uint32_t)width);
    put_u32(ihdr + 4, (uint32_t)height);
    ihdr[8] = 8, ihdr[9] = 3, ihdr[10] = 0, ihdr[11] = 0, ihdr[12] = 0;  // 8-bit indexed, no interlace
    int status = fwrite(signature, 1, 8, file) == 8 ? 0 : -1;
    if (status == 0) status = write_chunk(file, "IHDR", ihdr, 13);
    if (status == 0) status = write_chunk(file, "PLTE", &palette[0][0], (uint32_t)palette_size * 3);
    if (status == 0) status = write_chunk(file, "IDAT", packed, (uint32_t)packed_size);
    if (status == 0) status = write_chunk(file, "IEND", NULL, 0);
    if (fclose(file) != 0) status = -1;
    free(packed);
    if (status != 0) snprintf(error, error_size, "%s: cannot write: %s", path, strerror(errno));
    return status;
}
