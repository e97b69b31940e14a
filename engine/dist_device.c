// Collectives on device buffers (engine/dist.h: dist_device_*): NCCL in place when the program has
// it, else staged through host memory over the host collectives of engine/dist.c.
//
// Staging keeps one host buffer, grown to the largest call, for the life of the program: the calls
// carry batch-norm sums every layer and step, the ZeRO-1 gradients and parameters every step, so a
// fresh allocation each time would only churn. Only the thread that communicates uses it (MPI's
// FUNNELED rule, engine/dist.h).
#include <stdlib.h>
#include <string.h>

#include "engine/dist.h"
#include "engine/gpu/gpu.h"
#include "engine/gpu/gpu_comm.h"
#include "engine/tensor.h"

static void *host_staging;
static size_t host_staging_bytes;

static void *staging(size_t bytes) {
    if (bytes > host_staging_bytes) {
        free(host_staging);
        host_staging = malloc(bytes);
        if (!host_staging) tensor_fatal("dist", "out of memory for a %zu-byte staging buffer of a device collective", bytes);
        host_staging_bytes = bytes;
    }
    return host_staging;
}

static GpuCommType comm_type(DistType type) { return type == DIST_F64 ? GPU_COMM_F64 : GPU_COMM_F32; }

// NCCL carries device buffers when this program has it and a device to run it on; the
// communicator is made (a collective) at the first such call.
static bool over_nccl(void) {
    if (!gpu_comm_available()) return false;
    dist_nccl_ensure_communicator();
    return true;
}

void dist_device_all_reduce(void *device_buffer, int64_t count, DistType type, DistOp op, const char *what) {
    if (dist_world_size() == 1 || count <= 0) return;
    if (over_nccl()) {
        gpu_comm_all_reduce(device_buffer, count, comm_type(type), op == DIST_AVG, dist_timeout(), what);
        return;
    }
    size_t bytes = (size_t)count * dist_type_size(type);
    void *host = staging(bytes);
    gpu_copy_to_host(host, device_buffer, bytes);
    dist_all_reduce(host, count, type, op, what);
    gpu_copy_to_device(device_buffer, host, bytes);
}

void dist_device_broadcast(void *device_buffer, size_t bytes, int root, const char *what) {
    if (dist_world_size() == 1 || bytes == 0) return;
    if (over_nccl()) {
        gpu_comm_broadcast(device_buffer, bytes, root, dist_timeout(), what);
        return;
    }
    void *host = staging(bytes);
    gpu_copy_to_host(host, device_buffer, bytes);
    dist_broadcast(host, bytes, root, what);
    gpu_copy_to_device(device_buffer, host, bytes);
}

void dist_device_all_gather(const void *device_send, void *device_recv, size_t bytes, const char *what) {
    if (bytes == 0) return;
    if (dist_world_size() == 1) {
        if (device_send != device_recv) gpu_copy_device_to_device(device_recv, device_send, bytes);
        return;
    }
    if (over_nccl()) {
        gpu_comm_all_gather(device_send, device_recv, bytes, dist_timeout(), what);
        return;
    }
    size_t world = (size_t)dist_world_size();
    uint8_t *host = staging((world + 1) * bytes);  // [world * bytes] received, then [bytes] sent
    gpu_copy_to_host(host + world * bytes, device_send, bytes);
    dist_all_gather(host + world * bytes, host, bytes, what);
    gpu_copy_to_device(device_recv, host, world * bytes);
}

void dist_device_reduce_scatter(const void *device_send, void *device_recv, int64_t count, DistType type, DistOp op,
                                const char *what) {
    if (count <= 0) return;
    size_t bytes = (size_t)count * dist_type_size(type);
    if (dist_world_size() == 1) {
        if (device_send != device_recv) gpu_copy_device_to_device(device_recv, device_send, bytes);
        return;
    }
    if (over_nccl()) {
        gpu_comm_reduce_scatter(device_send, device_recv, count, comm_type(type), op == DIST_AVG, dist_timeout(), what);
        return;
    }
    size_t world = (size_t)dist_world_size();
    uint8_t *host = staging((world + 1) * bytes);  // [world * bytes] sent, then [bytes] received
    gpu_copy_to_host(host, device_send, world * bytes);
    dist_reduce_scatter(host, host + world * bytes, count, type, op, what);
    gpu_copy_to_device(device_recv, host + world * bytes, bytes);
}
