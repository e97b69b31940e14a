// engine/gpu/gpu_comm.h without NCCL (the CPU program and the emulated device): nothing is
// available, and engine/dist stages device buffers through host memory and MPI.
#include "engine/gpu/gpu_comm.h"

#include <stdio.h>

#include "engine/gpu/gpu.h"

bool gpu_comm_available(void) { return false; }

int gpu_comm_unique_id(uint8_t id[GPU_COMM_UNIQUE_ID_BYTES], char *error, size_t error_size) {
    (void)id;
    snprintf(error, error_size, "this program has no NCCL (device collectives go through the host)");
    return -1;
}

int gpu_comm_init(const uint8_t id[GPU_COMM_UNIQUE_ID_BYTES], int rank, int world_size, char *error,
                  size_t error_size) {
    (void)id;
    (void)rank;
    (void)world_size;
    snprintf(error, error_size, "this program has no NCCL (device collectives go through the host)");
    return -1;
}

bool gpu_comm_ready(void) { return false; }

void gpu_comm_all_reduce_avg_f32(float *device_buffer, int64_t count, double timeout_seconds, const char *what) {
    (void)device_buffer;
    (void)count;
    (void)timeout_seconds;
    gpu_fatal("gpu_comm_all_reduce_avg_f32", "%s: this program has no NCCL", what);
}

void gpu_comm_finalize(void) {}
