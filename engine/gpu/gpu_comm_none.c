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

static _Noreturn void no_nccl(const char *what) { gpu_fatal("gpu_comm", "%s: this program has no NCCL", what); }

void gpu_comm_all_reduce(void *device_buffer, int64_t count, GpuCommType type, bool average, double timeout_seconds,
                         const char *what) {
    no_nccl(what);
}
void gpu_comm_broadcast(void *device_buffer, size_t bytes, int root, double timeout_seconds, const char *what) {
    no_nccl(what);
}
void gpu_comm_all_gather(const void *device_send, void *device_recv, size_t bytes, double timeout_seconds,
                         const char *what) {
    no_nccl(what);
}
void gpu_comm_reduce_scatter(const void *device_send, void *device_recv, int64_t count, GpuCommType type, bool average,
                             double timeout_seconds, const char *what) {
    no_nccl(what);
}
void gpu_comm_all_reduce_avg_f32_start(float *device_buffer, int64_t count, const char *what) { no_nccl(what); }
void gpu_comm_wait(double timeout_seconds) {}  // nothing can have been queued

void gpu_comm_finalize(void) {}
