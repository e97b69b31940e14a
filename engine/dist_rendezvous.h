// Rendezvous without MPI: how the ranks of a run find each other when the launcher gives them no
// MPI (srun on a cluster without PMI, ranks started by hand or by a scheduler's own tool), so that
// rank 0's NCCL unique id reaches every rank and the ranks can check they run the same thing.
//
// Two ways, chosen by the address (`--dist-init`):
//   tcp://HOST:PORT   rank 0 listens on PORT (every interface); the others connect to HOST:PORT,
//                     retrying until the deadline (rank 0 may start last), send their hello and
//                     read rank 0's answer on the same connection.
//   file:///PATH      a file system every rank sees: rank r > 0 writes PATH.rank<r>, rank 0 waits
//                     for all of them and writes PATH; files appear whole (written to a temporary
//                     name, then renamed), and every reader polls until the deadline.
//
// What is exchanged: rank 0's blob (the NCCL unique id) to every rank, and every rank's short
// configuration string to every rank (an all-gather), so a rank started with other settings is
// named at start instead of corrupting the first collective.
//
// Timeouts: one deadline for the whole exchange. Rank 0, which knows which ranks are missing,
// tells the ranks that did come (over their connection, or in PATH); they wait 2 s beyond the
// deadline for that line before reporting only that rank 0 did not answer.
//
// The run id: every message carries it, and a message or file with another run id is ignored as a
// leftover of an earlier run (a file from yesterday's job in the same directory, a stray rank still
// retrying). It comes from the caller (`--dist-run-id`), else Slurm's SLURM_JOB_ID.SLURM_STEP_ID;
// the file method requires one (without it an old PATH cannot be told from this run's), TCP does
// not (a listening socket is not left behind by a finished run).
#pragma once
#include <stddef.h>
#include <stdint.h>

#define RENDEZVOUS_MAX_BLOB 1024
#define RENDEZVOUS_CONFIG_BYTES 256  // per rank, with its terminating NUL
#define RENDEZVOUS_RUN_ID_BYTES 64   // with its terminating NUL

typedef struct {
    const char *address;  // "tcp://HOST:PORT" or "file:///PATH"
    int rank, world_size;
    const char *run_id;   // NULL or "": from SLURM_JOB_ID(.SLURM_STEP_ID) when set
    double timeout_seconds;
} RendezvousOptions;

// Checks the form of an address (scheme, port range, absolute path) without any I/O. 0, or -1
// with one line in error.
int rendezvous_check_address(const char *address, char *error, size_t error_size);

// The run id the options resolve to (options->run_id, else Slurm's job and step ids, else "").
// 0, or -1 with one line in error (too long).
int rendezvous_run_id(const RendezvousOptions *options, char *run_id, size_t run_id_size, char *error,
                      size_t error_size);

// Every rank calls it once. Rank 0 passes blob[blob_bytes] (at most RENDEZVOUS_MAX_BLOB); the
// other ranks receive it into blob (the same blob_bytes on every rank). `config` is this rank's
// configuration string (shorter than RENDEZVOUS_CONFIG_BYTES). Returns 0 when every rank arrived
// and all configurations equal rank 0's; otherwise -1 with one line in error, e.g.
//   "rank 1: no connection to rank 0 at tcp://node1:29500: timed out after 60 s"
//   "rank 0: no hello from rank 2 at file:///shared/rdzv.rank2: timed out after 60 s"
//   "rank 1's configuration differs from rank 0's: 'train nccl lr=0.1' (rank 0: 'train nccl lr=0.05')"
int rendezvous_exchange(const RendezvousOptions *options, uint8_t *blob, size_t blob_bytes, const char *config,
                        char *error, size_t error_size);
