// The NCCL backend of engine/dist.h: the communicator's set-up, and the host-buffer collectives
// of a run whose ranks met without MPI (--dist-init tcp://... or file://...), where NCCL is the
// only way the ranks can talk. Host buffers are staged through a device buffer: these collectives
// carry a few numbers a step (loss, accuracy, the configuration check) and the parameters once at
// start, so the copies cost nothing that matters; the gradients, already on the device, go
// through NCCL in place (engine/dist_gradients.c).
//
// The unique id: rank 0 makes it; it reaches the others through the rendezvous at dist_init, or,
// under mpirun, over MPI when the communicator is first needed. The communicator itself is made at
// the first collective, after the program has selected its GPU (one per local rank).
#include "engine/dist.h"

#include <stdio.h>
#include <string.h>

#include "engine/gpu/gpu.h"
#include "engine/gpu/gpu_comm.h"
#include "engine/tensor.h"

static uint8_t unique_id[GPU_COMM_UNIQUE_ID_BYTES];
static bool have_unique_id;
static void *staging;
static size_t staging_bytes;

void dist_nccl_set_unique_id(const uint8_t *id) {
    memcpy(unique_id, id, sizeof unique_id);
    have_unique_id = true;
}

void dist_nccl_ensure_communicator(void) {
    if (gpu_comm_ready()) return;
    char error[512] = "";
    // A program that never chose a GPU (e.g. --device cpu in the CUDA program): the local rank's.
    if (gpu_current_device() < 0 && gpu_device_count() > 0 &&
        gpu_select(dist_local_rank() % gpu_device_count(), error, sizeof error) != 0)
        tensor_fatal("dist", "rank %d: NCCL: %s", dist_rank(), error);
    if (!have_unique_id) {  // under mpirun: rank 0's id over MPI, with a flag saying it made one
        uint8_t message[GPU_COMM_UNIQUE_ID_BYTES + 1] = {0};
        if (dist_rank() == 0) message[GPU_COMM_UNIQUE_ID_BYTES] = gpu_comm_unique_id(message, error, sizeof error) == 0;
        dist_mpi_broadcast(message, sizeof message, 0, "NCCL unique id");
        if (!message[GPU_COMM_UNIQUE_ID_BYTES])
            tensor_fatal("dist", "NCCL: %s", *error ? error : "rank 0 could not create the unique id");
        dist_nccl_set_unique_id(message);
    }
    if (gpu_comm_init(unique_id, dist_rank(), dist_world_size(), error, sizeof error) != 0)
        tensor_fatal("dist", "NCCL: %s", error);
}

static void *device_staging(size_t bytes) {
    if (bytes > staging_bytes) {
        if (staging) gpu_free(staging);
        staging = gpu_alloc(bytes);
        staging_bytes = bytes;
    }
    return staging;
}

static GpuCommType comm_type(DistType type) { return type == DIST_F64 ? GPU_COMM_F64 : GPU_COMM_F32; }

void dist_nccl_all_reduce(void *buffer, int64_t count, DistType type, DistOp op, const char *what) {
    dist_nccl_ensure_communicator();
    size_t bytes = (size_t)count * dist_type_size(type);
    void *device = device_staging(bytes);
    gpu_copy_to_device(device, buffer, bytes);
    gpu_comm_all_reduce(device, count, comm_type(type), op == DIST_AVG, dist_timeout(), what);
    gpu_copy_to_host(buffer, device, bytes);
}

void dist_nccl_broadcast(void *buffer, size_t bytes, int root, const char *what) {
    dist_nccl_ensure_communicator();
    void *device = device_staging(bytes);
    gpu_copy_to_device(device, buffer, bytes);
    gpu_comm_broadcast(device, bytes, root, dist_timeout(), what);
    gpu_copy_to_host(buffer, device, bytes);
}

void dist_nccl_all_gather(const void *send, void *recv, size_t bytes, const char *what) {
    dist_nccl_ensure_communicator();
    size_t world = (size_t)dist_world_size();
    uint8_t *device = device_staging((world + 1) * bytes);  // [world * bytes] received, then [bytes] sent
    gpu_copy_to_device(device + world * bytes, send, bytes);
    gpu_comm_all_gather(device + world * bytes, device, bytes, dist_timeout(), what);
    gpu_copy_to_host(recv, device, world * bytes);
}

void dist_nccl_reduce_scatter(const void *send, void *recv, int64_t count, DistType type, DistOp op, const char *what) {
    dist_nccl_ensure_communicator();
    size_t world = (size_t)dist_world_size(), bytes = (size_t)count * dist_type_size(type);
    uint8_t *device = device_staging((world + 1) * bytes);  // [world * bytes] sent, then [bytes] received
    gpu_copy_to_device(device, send, world * bytes);
    gpu_comm_reduce_scatter(device, device + world * bytes, count, comm_type(type), op == DIST_AVG, dist_timeout(), what);
    gpu_copy_to_host(recv, device + world * bytes, bytes);
}

void dist_nccl_barrier(const char *what) {
    float token = 0;  // NCCL has no barrier: a one-element all-reduce every rank must join
    dist_nccl_all_reduce(&token, 1, DIST_F32, DIST_SUM, what);
}

void dist_nccl_finalize(void) {
    if (staging) gpu_free(staging);
    staging = NULL;
    staging_bytes = 0;
    gpu_comm_finalize();
}
