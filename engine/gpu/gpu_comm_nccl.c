// engine/gpu/gpu_comm.h over NCCL (the CUDA program). Compiled and linked in CI; never run here
// (no GPU): the calls follow the NCCL 2.x documentation ("Creating a communicator with options",
// "Fault tolerance": ncclCommGetAsyncError / ncclCommAbort). GPU-unverified.
#include "engine/gpu/gpu_comm.h"

#include <cuda_runtime_api.h>
#include <nccl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "engine/gpu/gpu.h"

_Static_assert(sizeof(ncclUniqueId) == GPU_COMM_UNIQUE_ID_BYTES, "ncclUniqueId is 128 bytes");

static ncclComm_t comm;
static cudaStream_t comm_stream;
static cudaEvent_t ready_event;
static int comm_rank = -1;

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void make_device_current(void) {
    int device = gpu_current_device();
    cudaSetDevice(device < 0 ? 0 : device);
}

bool gpu_comm_available(void) { return gpu_device_count() > 0; }

int gpu_comm_unique_id(uint8_t id[GPU_COMM_UNIQUE_ID_BYTES], char *error, size_t error_size) {
    ncclUniqueId unique;
    ncclResult_t status = ncclGetUniqueId(&unique);
    if (status != ncclSuccess) {
        snprintf(error, error_size, "ncclGetUniqueId: %s", ncclGetErrorString(status));
        return -1;
    }
    memcpy(id, &unique, sizeof unique);
    return 0;
}

int gpu_comm_init(const uint8_t id[GPU_COMM_UNIQUE_ID_BYTES], int rank, int world_size, char *error,
                  size_t error_size) {
    make_device_current();
    ncclUniqueId unique;
    memcpy(&unique, id, sizeof unique);
    // Non-blocking communicator, so that a rank that never arrives can be given up on (abort).
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    ncclResult_t status = ncclCommInitRankConfig(&comm, world_size, unique, rank, &config);
    while (status == ncclInProgress || status == ncclSuccess) {
        ncclResult_t state;
        if (ncclCommGetAsyncError(comm, &state) != ncclSuccess) break;
        status = state;
        if (state != ncclInProgress) break;
    }
    if (status != ncclSuccess) {
        snprintf(error, error_size, "rank %d: ncclCommInitRankConfig: %s", rank, ncclGetErrorString(status));
        return -1;
    }
    if (cudaStreamCreateWithFlags(&comm_stream, cudaStreamNonBlocking) != cudaSuccess ||
        cudaEventCreateWithFlags(&ready_event, cudaEventDisableTiming) != cudaSuccess) {
        snprintf(error, error_size, "rank %d: cannot create the communication stream", rank);
        return -1;
    }
    comm_rank = rank;
    return 0;
}

bool gpu_comm_ready(void) { return comm_rank >= 0; }

void gpu_comm_all_reduce_avg_f32(float *device_buffer, int64_t count, double timeout_seconds, const char *what) {
    if (comm_rank < 0) gpu_fatal("gpu_comm_all_reduce_avg_f32", "%s: the communicator is not initialised", what);
    make_device_current();
    // After the gradients the default stream is still computing.
    cudaEventRecord(ready_event, 0);
    cudaStreamWaitEvent(comm_stream, ready_event, 0);
    ncclResult_t status = ncclAllReduce(device_buffer, device_buffer, (size_t)count, ncclFloat32, ncclAvg, comm,
                                        comm_stream);
    double deadline = now_seconds() + timeout_seconds;
    for (;;) {
        ncclResult_t state = ncclSuccess;
        if (status != ncclSuccess && status != ncclInProgress) state = status;
        else ncclCommGetAsyncError(comm, &state);
        if (state != ncclSuccess && state != ncclInProgress) {
            ncclCommAbort(comm);
            gpu_fatal("dist", "rank %d: all-reduce '%s' failed in NCCL: %s", comm_rank, what, ncclGetErrorString(state));
        }
        if (state == ncclSuccess && cudaStreamQuery(comm_stream) == cudaSuccess) break;
        if (now_seconds() > deadline) {
            ncclCommAbort(comm);
            gpu_fatal("dist", "rank %d: all-reduce '%s' timed out after %g s (another rank died or hangs)", comm_rank,
                      what, timeout_seconds);
        }
        struct timespec pause = {0, 200000};
        nanosleep(&pause, NULL);
        status = ncclSuccess;
    }
}

void gpu_comm_finalize(void) {
    if (comm_rank < 0) return;
    ncclCommDestroy(comm);
    cudaStreamDestroy(comm_stream);
    cudaEventDestroy(ready_event);
    comm_rank = -1;
}
