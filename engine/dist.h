// Distributed (data-parallel) runs: which process this is, and collectives across processes.
//
// A run is `world_size` processes (ranks) started by a launcher — `mpirun -np N` (OpenMPI sets
// OMPI_COMM_WORLD_RANK / _SIZE / _LOCAL_RANK), `srun` (SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID)
// — or told their place explicitly (DistOptions). Without a launcher the process is rank 0 of 1:
// every collective is a no-op (a copy at most), nothing is initialised and MPI is not needed.
//
// Backends, behind this one interface:
//   none  world size 1: no communication;
//   mpi   CPU buffers over MPI (engine/dist_mpi.c; OpenMPI found by the Makefile through mpicc).
//         MPI is initialised only when world_size > 1, with MPI_THREAD_FUNNELED: only the thread
//         that called dist_init communicates (the loader's threads never do). In the CUDA
//         program the gradients on the GPU go through NCCL, its unique id sent over MPI;
//   nccl  ranks that met without MPI (DistOptions.init_address: a TCP or shared-file rendezvous,
//         engine/dist_rendezvous.h) in the CUDA program: every collective over NCCL, host
//         buffers staged through the GPU (engine/dist_nccl.c). Without a GPU (the CPU program)
//         such a run stops at dist_init with one line: CPU collectives need MPI.
// dist_average_gradients reduces the flat gradient buffer in buckets; armed with
// dist_gradients_overlap_begin, buckets are launched during backward as they become complete
// (autograd's gradient-ready hook; engine/dist_gradients.c).
//
// Failure behaviour: every collective is non-blocking underneath and polled against a deadline
// (DistOptions.timeout_seconds, default 300). A rank that died or hangs makes the others stop
// with one line "error: dist: rank R: <collective> '<what>' (#N) timed out after T s; no answer
// from rank(s) ..." and MPI_Abort, exit status 3. Errors of the collectives never return. Under the
// nccl backend the rendezvous and every collective have the same deadline; a rank that stops makes
// the others stop at their next deadline with one line naming the collective (NCCL cannot tell
// which rank is missing).
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/params.h"

typedef enum { DIST_SUM, DIST_AVG } DistOp;
typedef enum { DIST_F32, DIST_F64 } DistType;
static inline size_t dist_type_size(DistType type) { return type == DIST_F64 ? sizeof(double) : sizeof(float); }

typedef struct {
    // Explicit placement; -1 takes it from the launcher's environment (or 0 of 1 without one).
    int rank, world_size, local_rank;
    double timeout_seconds;    // <= 0: 300
    const char *init_address;  // NULL: MPI; "tcp://HOST:PORT" or "file:///PATH": the rendezvous
    const char *run_id;        // the rendezvous's run id (NULL: SLURM_JOB_ID.SLURM_STEP_ID)
    const char *config;        // a short string every rank must give alike (checked at the rendezvous)
} DistOptions;

DistOptions dist_default_options(void);  // everything from the environment, timeout 300 s

// Finds rank / world size / local rank (explicit values first, then OpenMPI's environment, then
// Slurm's) without initialising anything. 0, or -1 with one line in error (inconsistent values).
int dist_detect(const DistOptions *options, int *rank, int *world_size, int *local_rank, const char **launcher,
                char *error, size_t error_size);
// Detects, and when world_size > 1 initialises the backend: MPI_Init_thread, or with init_address
// the rendezvous (engine/dist_rendezvous.h) for NCCL. 0, or -1 with one line in error: e.g. world
// size 2 in a build without MPI (naming the packages to install), --dist-init in a program
// without a GPU, a rank that did not come to the rendezvous in time.
// At exit a successful dist_init is finalised (status 0) or aborted (any other status, so the
// other ranks do not wait for this one).
int dist_init(const DistOptions *options, char *error, size_t error_size);
void dist_finalize(void);  // idempotent; called at exit anyway

int dist_rank(void);
int dist_world_size(void);
int dist_local_rank(void);
static inline bool dist_is_main(void) { return dist_rank() == 0; }
const char *dist_launcher(void);  // "none", "explicit", "openmpi", "slurm"
const char *dist_backend(void);   // "none", "mpi" or "nccl"
bool dist_build_has_mpi(void);
double dist_timeout(void);

// Collectives on host buffers; every rank calls them in the same order with the same sizes. `what`
// names the data in messages ("gradients", "batch statistics"). In place where it makes sense.
void dist_all_reduce(void *buffer, int64_t count, DistType type, DistOp op, const char *what);
void dist_broadcast(void *buffer, size_t bytes, int root, const char *what);
// recv[world_size * bytes] gets every rank's `bytes` bytes of send, in rank order.
void dist_all_gather(const void *send, void *recv, size_t bytes, const char *what);
// send[world_size * count] is reduced elementwise; rank r keeps block r in recv[count].
void dist_reduce_scatter(const void *send, void *recv, int64_t count, DistType type, DistOp op, const char *what);
void dist_barrier(const char *what);

// The same collectives on device buffers (the memory of CUDA tensors; engine/dist_device.c), with
// the same ordering rules, `what`, deadlines and one-line failures. In a program with NCCL (the
// CUDA program, under either backend) they run in place on the device, ordered after the compute
// stream's work so far; otherwise (the emulated device, whose memory is host memory but only
// reachable through gpu copies) they stage through a host buffer and run the host collectives
// above, so their results are those bits. Every call returns when its result is on the device.
// With one rank: no communication (the gather and scatter copy send to recv).
void dist_device_all_reduce(void *device_buffer, int64_t count, DistType type, DistOp op, const char *what);
void dist_device_broadcast(void *device_buffer, size_t bytes, int root, const char *what);
// device_recv[world_size * bytes] gets every rank's `bytes` bytes of device_send, in rank order.
void dist_device_all_gather(const void *device_send, void *device_recv, size_t bytes, const char *what);
// device_send[world_size * count] is reduced elementwise; rank r keeps block r in device_recv[count].
void dist_device_reduce_scatter(const void *device_send, void *device_recv, int64_t count, DistType type, DistOp op,
                                const char *what);

// Start-up check that every rank runs the same configuration: `text` (e.g. the run's settings JSON)
// and `number` (e.g. the parameter count) must be equal on all ranks. 0 when they are; otherwise -1
// on every rank, with the lowest differing rank having put one line in error naming what differs
// (the first JSON member that differs, or the number), and the other ranks an empty error.
int dist_check_same_config(const char *what, const char *text, int64_t number, char *error, size_t error_size);

// Data parallel: copies rank 0's parameters (and buffers: BatchNorm statistics) to every rank.
void dist_broadcast_params(ParamStore *params);
// Overlap: arms autograd's gradient-ready hook for the step's next backward pass (call it just
// before the last backward of the step; a second pass before dist_average_gradients stops with one
// line). During backward each bucket of the flat gradient buffer is all-reduced as soon as all its
// parameters' gradients are final, in a launch order fixed by the layout (engine/dist_buckets.h):
// MPI_Iallreduce on host buffers, NCCL on the communication stream for GPU buffers. Host
// buffers under the nccl backend and GPU buffers without NCCL (the emulated device) are not
// overlapped: they are reduced in dist_average_gradients. No-op with one rank.
void dist_gradients_overlap_begin(ParamStore *params, size_t bucket_bytes);
// Averages the flat gradient buffer over the ranks, in buckets of bucket_bytes (0: 25 MB; the same
// as given to dist_gradients_overlap_begin). Armed: launches the buckets backward did not
// complete, waits for every bucket (against the deadline) and divides by the world size — the same
// bits as without overlap. Not armed: reduces bucket after bucket (blocking). Returns when the
// gradients are averaged.
void dist_average_gradients(ParamStore *params, size_t bucket_bytes);
// Buckets of the last dist_average_gradients, and how many of them started while backward still had
// gradients to compute (before the pass's last parameter gradient was final): the overlapped ones.
void dist_gradients_last_counts(int64_t *buckets, int64_t *started_early);

// Test hook: TAILOR_DIST_TEST_EXIT_AT_STEP=RANK:STEP makes rank RANK _exit(1) when a loop calls
// this with STEP; TAILOR_DIST_TEST_HANG_AT_STEP=RANK:STEP makes it sleep forever instead.
void dist_test_fault_point(int64_t step);

// ---- backend interface (engine/dist_mpi.c); not for callers.
bool dist_mpi_available(void);
int dist_mpi_init(int expected_rank, int expected_size, char *error, size_t error_size);
void dist_mpi_finalize(void);
void dist_mpi_abort(int status);
void dist_mpi_all_reduce(void *buffer, int64_t count, DistType type, DistOp op, const char *what);
void dist_mpi_broadcast(void *buffer, size_t bytes, int root, const char *what);
void dist_mpi_all_gather(const void *send, void *recv, size_t bytes, const char *what);
void dist_mpi_reduce_scatter(const void *send, void *recv, int64_t count, DistType type, DistOp op, const char *what);
void dist_mpi_barrier(const char *what);
// Non-blocking all-reduce (sum) of a host buffer: started now, completed by dist_mpi_wait_all.
void dist_mpi_all_reduce_start(void *buffer, int64_t count, DistType type, const char *what);
void dist_mpi_progress(void);  // tests the started ones, so that MPI moves them along
void dist_mpi_wait_all(void);  // waits for every started one, each against the deadline
// ---- NCCL backend (engine/dist_nccl.c); not for callers.
void dist_nccl_set_unique_id(const uint8_t *id);  // GPU_COMM_UNIQUE_ID_BYTES from the rendezvous
void dist_nccl_ensure_communicator(void);          // collective: every rank calls it first together
void dist_nccl_all_reduce(void *buffer, int64_t count, DistType type, DistOp op, const char *what);
void dist_nccl_broadcast(void *buffer, size_t bytes, int root, const char *what);
void dist_nccl_all_gather(const void *send, void *recv, size_t bytes, const char *what);
void dist_nccl_reduce_scatter(const void *send, void *recv, int64_t count, DistType type, DistOp op, const char *what);
void dist_nccl_barrier(const char *what);
void dist_nccl_finalize(void);
