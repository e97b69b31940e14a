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
//         that called dist_init communicates (the loader's threads never do).
// The NCCL backend (GPU buffers, communicator id sent over MPI or a TCP rendezvous, one GPU per
// local rank, a communication stream) is to come behind the same calls: the collectives take
// plain pointers, and dist_average_gradients is the hook where buckets will be launched on that
// stream as backward produces them. Today device buffers are staged through the host.
//
// Failure behaviour: every collective is non-blocking underneath and polled against a deadline
// (DistOptions.timeout_seconds, default 300). A rank that died or hangs makes the others stop
// with one line "error: dist: rank R: <collective> '<what>' (#N) timed out after T s; no answer
// from rank(s) ..." and MPI_Abort, exit status 3. Errors of the collectives never return.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/params.h"

typedef enum { DIST_SUM, DIST_AVG } DistOp;
typedef enum { DIST_F32, DIST_F64 } DistType;

typedef struct {
    // Explicit placement; -1 takes it from the launcher's environment (or 0 of 1 without one).
    int rank, world_size, local_rank;
    double timeout_seconds;  // <= 0: 300
} DistOptions;

DistOptions dist_default_options(void);  // everything from the environment, timeout 300 s

// Finds rank / world size / local rank (explicit values first, then OpenMPI's environment, then
// Slurm's) without initialising anything. 0, or -1 with one line in error (inconsistent values).
int dist_detect(const DistOptions *options, int *rank, int *world_size, int *local_rank, const char **launcher,
                char *error, size_t error_size);
// Detects, and when world_size > 1 initialises the backend (MPI_Init_thread). 0, or -1 with one
// line in error: e.g. world size 2 in a build without MPI (naming the packages to install).
// At exit a successful dist_init is finalised (status 0) or aborted (any other status, so the
// other ranks do not wait for this one).
int dist_init(const DistOptions *options, char *error, size_t error_size);
void dist_finalize(void);  // idempotent; called at exit anyway

int dist_rank(void);
int dist_world_size(void);
int dist_local_rank(void);
static inline bool dist_is_main(void) { return dist_rank() == 0; }
const char *dist_launcher(void);  // "none", "explicit", "openmpi", "slurm"
const char *dist_backend(void);   // "none" or "mpi"
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

// Start-up check that every rank runs the same configuration: `text` (e.g. the run's settings JSON)
// and `number` (e.g. the parameter count) must be equal on all ranks. 0 when they are; otherwise -1
// on every rank, with the lowest differing rank having put one line in error naming what differs
// (the first JSON member that differs, or the number), and the other ranks an empty error.
int dist_check_same_config(const char *what, const char *text, int64_t number, char *error, size_t error_size);

// Data parallel: copies rank 0's parameters (and buffers: BatchNorm statistics) to every rank.
void dist_broadcast_params(ParamStore *params);
// Averages the flat gradient buffer over the ranks, in buckets of bucket_bytes (0: 25 MB). Device
// gradients are staged through the host for now (the NCCL path will reduce them in place, on a
// communication stream, overlapped with backward).
void dist_average_gradients(ParamStore *params, size_t bucket_bytes);

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
