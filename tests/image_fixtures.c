// Generated image datasets for tests (tests/image_fixtures.h).
#include "tests/image_fixtures.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "data/image.h"
#include "engine/rng.h"

void write_stripes(const char *root, int per_class, uint64_t seed) {
    char path[1024], error[256];
    mkdir(root, 0755);
    static const char *const names[2] = {"horizontal", "vertical"};
    Rng rng = rng_make(seed, 0);
    for (int c = 0; c < 2; c++) {
        snprintf(path, sizeof path, "%s/%s", root, names[c]);
        mkdir(path, 0755);
        for (int i = 0; i < per_class; i++) {
            float draw[8];
            rng_fill_uniform_f32(&rng, draw, 8, 0, 1);
            Image image = {.width = 16, .height = 16, .channels = 3, .pixels = malloc(16 * 16 * 3)};
            double period = 3 + 4 * draw[0], phase = 6.3 * draw[1];
            for (int y = 0; y < 16; y++)
                for (int x = 0; x < 16; x++) {
                    double t = c == 0 ? y : x;
                    double wave = 0.5 + 0.5 * sin(6.2832 * t / period + phase);
                    for (int ch = 0; ch < 3; ch++) {
                        double base = 255 * draw[2 + ch], ink = 255 * draw[5 + ch];
                        image.pixels[(y * 16 + x) * 3 + ch] = (uint8_t)(base + (ink - base) * wave);
                    }
                }
            snprintf(path, sizeof path, "%s/%s/%03d.png", root, names[c], i);
            if (image_save_png(path, &image, error, sizeof error) != 0) printf("  %s\n", error);
            image_free(&image);
        }
    }
}
