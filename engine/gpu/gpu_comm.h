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

// ncclUniqueId is 128 bytes; rank 0 makes one and every rank receives it (over MPI, or through the
// rendezvous of engine/dist_rendezvous.h) before init.
#define GPU_COMM_UNIQUE_ID_BYTES 128

typedef enum { GPU_COMM_F32, GPU_COMM_F64 } GpuCommType;

// True when this program has NCCL and a CUDA device to use it with.
bool gpu_comm_available(void);
// Rank 0: a fresh unique id. 0, or -1 with one line in error.
int gpu_comm_unique_id(uint8_t id[GPU_COMM_UNIQUE_ID_BYTES], char *error, size_t error_size);
// Every rank, on its selected device: joins the communicator. 0, or -1 with one line in error.
int gpu_comm_init(const uint8_t id[GPU_COMM_UNIQUE_ID_BYTES], int rank, int world_size, char *error,
                  size_t error_size);
bool gpu_comm_ready(void);

// Collectives on device buffers. Each is queued on the communicator's own stream, ordered after
// the work already queued on the default (compute) stream. The blocking ones return when the
// operation has completed. A rank that does not take part within timeout_seconds (or an NCCL
// error) aborts the communicator and stops the program with one line naming this rank and `what`.
void gpu_comm_all_reduce(void *device_buffer, int64_t count, GpuCommType type, bool average, double timeout_seconds,
                         const char *what);
void gpu_comm_broadcast(void *device_buffer, size_t bytes, int root, double timeout_seconds, const char *what);
// device_recv[world_size * bytes]: every rank's bytes, in rank order.
void gpu_comm_all_gather(const void *device_send, void *device_recv, size_t bytes, double timeout_seconds,
                         const char *what);
// device_send[world_size * count] reduced; rank r keeps block r in device_recv[count].
void gpu_comm_reduce_scatter(const void *device_send, void *device_recv, int64_t count, GpuCommType type, bool average,
                             double timeout_seconds, const char *what);

// Overlap with backward: queues an in-place f32 average, ordered after the compute stream's work
// so far (an event recorded on it), and returns at once; the compute stream goes on with backward
// while NCCL runs on the communication stream. gpu_comm_wait then waits (against the deadline)
// for everything queued, before the optimizer reads the buffers.
void gpu_comm_all_reduce_avg_f32_start(float *device_buffer, int64_t count, const char *what);
void gpu_comm_wait(double timeout_seconds);
void gpu_comm_finalize(void);

#ifdef __cplusplus
}
#endif
