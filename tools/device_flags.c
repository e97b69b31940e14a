#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/dist.h"
#include "engine/gpu/gpu.h"
#include "tools/commands.h"

Device apply_device_and_threads(const char *command, const char *device, int64_t threads) {
    if (threads < 0) {
        fprintf(stderr, "error: tailor %s: --threads must be >= 0 (0 = all cores)\n", command);
        exit(2);
    }
    if (threads > 0) omp_set_num_threads((int)threads);
    if (strcmp(device, "cpu") == 0) return device_cpu();
    int count = gpu_device_count();
    if (strcmp(device, "auto") == 0) {
        if (count > 0) {
            // Data parallel: one GPU per local rank (ranks beyond the GPUs of a node share them).
            int index = dist_world_size() > 1 ? dist_local_rank() % count : 0;
            char error[256];
            if (gpu_select(index, error, sizeof error) != 0) {
                fprintf(stderr, "error: tailor %s: --device auto: %s\n", command, error);
                exit(2);
            }
            fprintf(stderr, "tailor %s: running on %s (%s backend)\n", command, gpu_device_name(), gpu_backend_name());
            return (Device){DEVICE_CUDA, index};
        }
        if (dist_is_main())  // under mpirun, rank 0 speaks for all
            fprintf(stderr, "tailor %s: %s; running on the cpu (%d threads)\n", command,
                strcmp(gpu_backend_name(), "none") == 0 ? "this build has no CUDA support" : "no CUDA device found",
                omp_get_max_threads());
        return device_cpu();
    }
    if (strncmp(device, "cuda", 4) == 0) {
        int index = dist_world_size() > 1 ? dist_local_rank() : 0;  // data parallel: the local rank's GPU
        char *end = NULL;
        if (device[4] == ':') index = (int)strtol(device + 5, &end, 10);
        if ((device[4] != 0 && device[4] != ':') || (device[4] == ':' && (end == device + 5 || *end))) {
            fprintf(stderr, "error: tailor %s: --device expects auto, cpu or cuda[:N], got '%s'\n", command, device);
            exit(2);
        }
        if (strcmp(gpu_backend_name(), "none") == 0) {
            fprintf(stderr, "error: tailor %s: --device %s: this build has no CUDA support (use build/tailor-cuda); use --device cpu or auto\n",
                    command, device);
            exit(2);
        }
        char error[256];
        if (gpu_select(index, error, sizeof error) != 0) {
            fprintf(stderr, "error: tailor %s: --device %s: %s\n", command, device, error);
            exit(2);
        }
        return (Device){DEVICE_CUDA, index};
    }
    fprintf(stderr, "error: tailor %s: --device expects auto, cpu or cuda[:N], got '%s'\n", command, device);
    exit(2);
}
