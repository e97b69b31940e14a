#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/gpu/gpu.h"
#include "tools/commands.h"

void apply_device_and_threads(const char *command, const char *device, int64_t threads) {
    if (threads < 0) {
        fprintf(stderr, "error: tailor %s: --threads must be >= 0 (0 = all cores)\n", command);
        exit(2);
    }
    if (threads > 0) omp_set_num_threads((int)threads);
    if (strcmp(device, "cpu") == 0) return;
    // The ops do not dispatch to the CUDA device yet (engine/gpu and kernels/ are being built up),
    // so even a CUDA build trains on the CPU for now — and says so.
    const char *why = strcmp(gpu_backend_name(), "none") == 0 ? "this build has no CUDA support"
                                                                : "the ops do not run on CUDA devices yet";
    if (strcmp(device, "auto") == 0) {
        fprintf(stderr, "tailor %s: %s; running on the cpu (%d threads)\n", command, why, omp_get_max_threads());
        return;
    }
    if (strncmp(device, "cuda", 4) == 0) {
        fprintf(stderr, "error: tailor %s: --device %s: %s; use --device cpu or auto\n", command, device, why);
        exit(2);
    }
    fprintf(stderr, "error: tailor %s: --device expects auto, cpu or cuda[:N], got '%s'\n", command, device);
    exit(2);
}
