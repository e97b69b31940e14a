// engine/gpu/gpu_comm.h over NCCL (the CUDA program). Compiled and linked in CI; never run here
// (no GPU): the calls follow the NCCL 2.x documentation ("Creating a communicator with options",
// "Fault tolerance": ncclCommGetAsyncError / ncclCommAbort). GPU-unverified.
//
// Every operation goes on one communication stream, after an event recorded on the default
// (compute) stream: so gradient buckets queued during backward run while the compute stream goes
// on with the rest of backward, and NCCL's operations stay in the order they were queued, the
// same on every rank.
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

// What is queued on the communication stream since the last wait, for the timeout's message.
static char first_queued[96], last_queued[96];
static int queued_count;

// Makes the communication stream wait for the compute stream's work so far (the buffer's producer).
static void begin_operation(const char *kind, const char *what) {
    if (comm_rank < 0) gpu_fatal("gpu_comm", "%s '%s': the communicator is not initialised", kind, what);
    make_device_current();
    cudaEventRecord(ready_event, 0);
    cudaStreamWaitEvent(comm_stream, ready_event, 0);
    if (queued_count++ == 0) snprintf(first_queued, sizeof first_queued, "%s '%s'", kind, what);
    snprintf(last_queued, sizeof last_queued, "%s '%s'", kind, what);
}

static void check_queued(ncclResult_t status) {
    if (status != ncclSuccess && status != ncclInProgress) {
        ncclCommAbort(comm);
        gpu_fatal("dist", "rank %d: %s failed in NCCL: %s", comm_rank, last_queued, ncclGetErrorString(status));
    }
}

void gpu_comm_wait(double timeout_seconds) {
    if (comm_rank < 0 || queued_count == 0) return;
    double deadline = now_seconds() + timeout_seconds;
    for (;;) {
        ncclResult_t state = ncclSuccess;
        ncclCommGetAsyncError(comm, &state);
        if (state != ncclSuccess && state != ncclInProgress) {
            ncclCommAbort(comm);
            gpu_fatal("dist", "rank %d: %s failed in NCCL: %s", comm_rank, first_queued, ncclGetErrorString(state));
        }
        if (state == ncclSuccess && cudaStreamQuery(comm_stream) == cudaSuccess) break;
        if (now_seconds() > deadline) {
            ncclCommAbort(comm);
            if (queued_count > 1)
                gpu_fatal("dist", "rank %d: %d queued NCCL operations, %s to %s, timed out after %g s (another rank died or hangs)",
                          comm_rank, queued_count, first_queued, last_queued, timeout_seconds);
            gpu_fatal("dist", "rank %d: %s timed out after %g s (another rank died or hangs)", comm_rank, first_queued,
                      timeout_seconds);
        }
        struct timespec pause = {0, 200000};
        nanosleep(&pause, NULL);
    }
    queued_count = 0;
}

void gpu_comm_all_reduce_avg_f32_start(float *device_buffer, int64_t count, const char *what) {
    begin_operation("all-reduce", what);
    check_queued(ncclAllReduce(device_buffer, device_buffer, (size_t)count, ncclFloat32, ncclAvg, comm, comm_stream));
}

static ncclDataType_t nccl_type(GpuCommType type) { return type == GPU_COMM_F64 ? ncclFloat64 : ncclFloat32; }

void gpu_comm_all_reduce(void *device_buffer, int64_t count, GpuCommType type, bool average, double timeout_seconds,
                         const char *what) {
    begin_operation("all-reduce", what);
    check_queued(ncclAllReduce(device_buffer, device_buffer, (size_t)count, nccl_type(type), average ? ncclAvg : ncclSum,
                               comm, comm_stream));
    gpu_comm_wait(timeout_seconds);
}

void gpu_comm_broadcast(void *device_buffer, size_t bytes, int root, double timeout_seconds, const char *what) {
    begin_operation("broadcast", what);
    check_queued(ncclBroadcast(device_buffer, device_buffer, bytes, ncclUint8, root, comm, comm_stream));
    gpu_comm_wait(timeout_seconds);
}

void gpu_comm_all_gather(const void *device_send, void *device_recv, size_t bytes, double timeout_seconds,
                         const char *what) {
    begin_operation("all-gather", what);
    check_queued(ncclAllGather(device_send, device_recv, bytes, ncclUint8, comm, comm_stream));
    gpu_comm_wait(timeout_seconds);
}

void gpu_comm_reduce_scatter(const void *device_send, void *device_recv, int64_t count, GpuCommType type, bool average,
                             double timeout_seconds, const char *what) {
    begin_operation("reduce-scatter", what);
    check_queued(ncclReduceScatter(device_send, device_recv, (size_t)count, nccl_type(type), average ? ncclAvg : ncclSum,
                                   comm, comm_stream));
    gpu_comm_wait(timeout_seconds);
}

void gpu_comm_finalize(void) {
    if (comm_rank < 0) return;
    ncclCommDestroy(comm);
    cudaStreamDestroy(comm_stream);
    cudaEventDestroy(ready_event);
    comm_rank = -1;
}
