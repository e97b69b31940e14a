// Collectives on device buffers for data parallel (engine/dist): NCCL in the CUDA program
// (gpu_comm_nccl.c), absent in the CPU program and on the emulated device (gpu_comm_none.c), where
// engine/dist stages device buffers through host memory and MPI instead.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// ncclUniqueId is 128 bytes; rank 0 makes one and every rank receives it (over MPI) before init.
#define GPU_COMM_UNIQUE_ID_BYTES 128

// True when this program has NCCL and a CUDA device to use it with.
bool gpu_comm_available(void);
// Rank 0: a fresh unique id. 0, or -1 with one line in error.
int gpu_comm_unique_id(uint8_t id[GPU_COMM_UNIQUE_ID_BYTES], char *error, size_t error_size);
// Every rank, on its selected device: joins the communicator. 0, or -1 with one line in error.
int gpu_comm_init(const uint8_t id[GPU_COMM_UNIQUE_ID_BYTES], int rank, int world_size, char *error,
                  size_t error_size);
bool gpu_comm_ready(void);
// In-place average of count floats over the ranks, on the communicator's own stream, ordered after
// the work already queued on the default stream; returns when it has completed. A rank that does
// not take part within timeout_seconds (or an NCCL error) aborts the communicator and stops the
// program with one line naming the rank and `what`.
void gpu_comm_all_reduce_avg_f32(float *device_buffer, int64_t count, double timeout_seconds, const char *what);
void gpu_comm_finalize(void);

#ifdef __cplusplus
}
#endif
