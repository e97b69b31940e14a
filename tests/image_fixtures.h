// Generated image datasets for the end-to-end tests of the training programs.
#pragma once
#include <stdint.h>

// An ImageFolder at root with classes "horizontal" and "vertical": per_class 16x16 RGB PNGs each,
// stripes of random period, phase and colours (seeded), so the task is learnable but not trivial.
void write_stripes(const char *root, int per_class, uint64_t seed);
