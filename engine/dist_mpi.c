// The MPI backend of engine/dist.h: collectives on host buffers. Compiled with MPI's flags and
// TAILOR_HAVE_MPI when the Makefile finds MPI (mpicc --showme / pkg-config ompi); otherwise only
// the stubs at the end, and dist_init refuses world sizes above 1 with one line.
//
// Every collective is the non-blocking MPI call (MPI_Iallreduce, ...) on a private duplicate of
// MPI_COMM_WORLD, polled with MPI_Test until a deadline: a rank that died or hangs cannot make the
// others wait forever. On timeout a rank asks every other rank, over a second private
// communicator, whether it is alive (each timed-out rank answers the others' question), waits a
// short grace period, prints one line naming the collective and the ranks that did not answer, and
// calls MPI_Abort, which ends the whole job.
#include "engine/dist.h"

#include <stdio.h>
#include <stdlib.h>

#ifdef TAILOR_HAVE_MPI
#include <mpi.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static MPI_Comm data_comm = MPI_COMM_NULL, control_comm = MPI_COMM_NULL;
static int mpi_rank, mpi_size;
static pthread_t owner_thread;
static int64_t collective_number;  // collectives started so far on this rank
// What this rank is doing, for the SIGTERM handler: mpirun terminates the job when a rank exits
// with an error (its message names that rank), and this rank then says where it was.
// Both lines are written before they can be needed (the handler only calls write).
static char line_in_collective[512], line_between[256];
static volatile sig_atomic_t in_collective;

// All-reduces started and not yet waited for (gradient buckets during backward), in start order.
typedef struct {
    MPI_Request request;
    int64_t number;
    char what[80];
} Pending;
static Pending *pending;
static int pending_count, pending_capacity;

bool dist_mpi_available(void) { return true; }

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void mpi_fail(const char *kind, const char *what, int code) {
    char text[MPI_MAX_ERROR_STRING] = "";
    int length = 0;
    MPI_Error_string(code, text, &length);
    fprintf(stderr, "error: dist: rank %d: %s '%s' (collective #%lld) failed: %s\n", mpi_rank, kind, what,
            (long long)collective_number, text);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 3);
    exit(3);
}

// After a timeout: which other ranks are alive? Each rank that reaches this sends its collective
// number to every other rank and listens for theirs for a grace period.
static void report_timeout(const char *kind, const char *what, int64_t number) {
    double grace = dist_timeout() / 4;
    if (grace < 0.5) grace = 0.5;
    if (grace > 3) grace = 3;
    int n = mpi_size;
    long long mine = (long long)number;
    long long *theirs = calloc((size_t)n, sizeof *theirs);
    MPI_Request *requests = calloc((size_t)(2 * n), sizeof *requests);
    int *answered = calloc((size_t)n, sizeof *answered);
    if (!theirs || !requests || !answered) {
        fprintf(stderr, "error: dist: rank %d: %s '%s' (collective #%lld) timed out after %g s\n", mpi_rank, kind, what,
                mine, dist_timeout());
        MPI_Abort(MPI_COMM_WORLD, 3);
        exit(3);
    }
    for (int r = 0; r < n; r++) {
        requests[r] = requests[n + r] = MPI_REQUEST_NULL;
        if (r == mpi_rank) continue;
        MPI_Irecv(&theirs[r], 1, MPI_LONG_LONG, r, 77, control_comm, &requests[r]);
        MPI_Isend(&mine, 1, MPI_LONG_LONG, r, 77, control_comm, &requests[n + r]);
    }
    answered[mpi_rank] = 1;
    double deadline = now_seconds() + grace;
    while (now_seconds() < deadline) {
        int all = 1;
        for (int r = 0; r < n; r++) {
            if (!answered[r] && requests[r] != MPI_REQUEST_NULL) {
                int done = 0;
                if (MPI_Test(&requests[r], &done, MPI_STATUS_IGNORE) == MPI_SUCCESS && done) answered[r] = 1;
            }
            all = all && answered[r];
        }
        if (all) break;
        struct timespec pause = {0, 1000000};
        nanosleep(&pause, NULL);
    }
    char missing[1024] = "";
    int missing_count = 0;
    for (int r = 0; r < n; r++) {
        if (answered[r]) continue;
        size_t used = strlen(missing);
        if (used + 16 < sizeof missing) snprintf(missing + used, sizeof missing - used, "%s%d", missing_count ? ", " : "", r);
        missing_count++;
    }
    if (missing_count)
        fprintf(stderr, "error: dist: rank %d: %s '%s' (collective #%lld) timed out after %g s; no answer from rank%s %s (died or hangs)\n",
                mpi_rank, kind, what, mine, dist_timeout(), missing_count > 1 ? "s" : "", missing);
    else
        fprintf(stderr, "error: dist: rank %d: %s '%s' (collective #%lld) timed out after %g s; every rank answered (a rank is in another collective?)\n",
                mpi_rank, kind, what, mine, dist_timeout());
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 3);
    exit(3);
}

static void check_thread(const char *kind, const char *what) {
    if (!pthread_equal(pthread_self(), owner_thread)) {
        fprintf(stderr, "error: dist: %s '%s' called from a thread other than the one that called dist_init\n", kind, what);
        exit(3);
    }
}

// Polls a started collective (#number) until it completes or the deadline passes.
static void wait_for(MPI_Request *request, const char *kind, const char *what, int64_t number) {
    double start = now_seconds(), deadline = start + dist_timeout();
    long polls = 0;
    for (;;) {
        int done = 0, status = MPI_Test(request, &done, MPI_STATUS_IGNORE);
        if (status != MPI_SUCCESS) mpi_fail(kind, what, status);
        if (done) {
            in_collective = 0;
            return;
        }
        polls++;
        if (polls < 1000) {
            sched_yield();
        } else {
            if ((polls & 63) == 0 && now_seconds() > deadline) report_timeout(kind, what, number);
            struct timespec pause = {0, 50000};
            nanosleep(&pause, NULL);
        }
    }
}

static void begin(const char *kind, const char *what) {
    check_thread(kind, what);
    collective_number++;
    in_collective = 0;
    snprintf(line_in_collective, sizeof line_in_collective,
             "error: dist: rank %d: terminated by the launcher in %s '%s' (collective #%lld); another rank failed "
             "(the launcher's message names it)\n",
             mpi_rank, kind, what, (long long)collective_number);
    in_collective = 1;
}

static void on_terminate(int signal_number) {
    const char *line = in_collective ? line_in_collective : line_between;
    (void)!write(2, line, strlen(line));
    signal(signal_number, SIG_DFL);
    raise(signal_number);
}

int dist_mpi_init(int expected_rank, int expected_size, char *error, size_t error_size) {
    int initialized = 0, provided = 0;
    MPI_Initialized(&initialized);
    if (!initialized && MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        snprintf(error, error_size, "dist: MPI_Init_thread failed");
        return -1;
    }
    if (initialized) MPI_Query_thread(&provided);
    if (provided < MPI_THREAD_FUNNELED) {
        snprintf(error, error_size, "dist: the MPI library gives thread level %d, below MPI_THREAD_FUNNELED", provided);
        return -1;
    }
    MPI_Comm_dup(MPI_COMM_WORLD, &data_comm);
    MPI_Comm_dup(MPI_COMM_WORLD, &control_comm);
    MPI_Comm_set_errhandler(data_comm, MPI_ERRORS_RETURN);
    MPI_Comm_set_errhandler(control_comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(data_comm, &mpi_rank);
    MPI_Comm_size(data_comm, &mpi_size);
    owner_thread = pthread_self();
    snprintf(line_between, sizeof line_between,
             "error: dist: rank %d: terminated by the launcher between collectives; another rank failed (the launcher's "
             "message names it)\n", mpi_rank);
    signal(SIGTERM, on_terminate);
    if (mpi_rank != expected_rank || mpi_size != expected_size) {
        snprintf(error, error_size, "dist: MPI says rank %d of %d but the launcher's environment says %d of %d", mpi_rank,
                 mpi_size, expected_rank, expected_size);
        return -1;
    }
    return 0;
}

void dist_mpi_finalize(void) {
    free(pending);
    pending = NULL;
    pending_count = pending_capacity = 0;
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized) return;
    if (data_comm != MPI_COMM_NULL) MPI_Comm_free(&data_comm);
    if (control_comm != MPI_COMM_NULL) MPI_Comm_free(&control_comm);
    MPI_Finalize();
}

void dist_mpi_abort(int status) { MPI_Abort(MPI_COMM_WORLD, status); }

static MPI_Datatype mpi_type(DistType type) { return type == DIST_F64 ? MPI_DOUBLE : MPI_FLOAT; }

static void scale(void *buffer, int64_t count, DistType type) {
    if (type == DIST_F64) {
        double s = 1.0 / mpi_size, *d = buffer;
        for (int64_t i = 0; i < count; i++) d[i] *= s;
    } else {
        float s = (float)(1.0 / mpi_size), *f = buffer;
        for (int64_t i = 0; i < count; i++) f[i] *= s;
    }
}

#define MAX_CHUNK ((int64_t)1 << 30)

void dist_mpi_all_reduce(void *buffer, int64_t count, DistType type, DistOp op, const char *what) {
    size_t element = type == DIST_F64 ? 8 : 4;
    for (int64_t start = 0; start < count; start += MAX_CHUNK) {
        int n = (int)(count - start < MAX_CHUNK ? count - start : MAX_CHUNK);
        begin("all-reduce", what);
        MPI_Request request;
        int status = MPI_Iallreduce(MPI_IN_PLACE, (char *)buffer + (size_t)start * element, n, mpi_type(type), MPI_SUM,
                                    data_comm, &request);
        if (status != MPI_SUCCESS) mpi_fail("all-reduce", what, status);
        wait_for(&request, "all-reduce", what, collective_number);
    }
    if (op == DIST_AVG) scale(buffer, count, type);
}

void dist_mpi_all_reduce_start(void *buffer, int64_t count, DistType type, const char *what) {
    size_t element = type == DIST_F64 ? 8 : 4;
    for (int64_t start = 0; start < count; start += MAX_CHUNK) {
        int n = (int)(count - start < MAX_CHUNK ? count - start : MAX_CHUNK);
        check_thread("all-reduce", what);
        collective_number++;
        if (pending_count == pending_capacity) {
            pending_capacity = pending_capacity ? 2 * pending_capacity : 64;
            pending = realloc(pending, (size_t)pending_capacity * sizeof *pending);
            if (!pending) {
                fprintf(stderr, "error: dist: out of memory queueing all-reduce '%s'\n", what);
                exit(3);
            }
        }
        Pending *p = &pending[pending_count++];
        p->number = collective_number;
        snprintf(p->what, sizeof p->what, "%s", what);
        int status = MPI_Iallreduce(MPI_IN_PLACE, (char *)buffer + (size_t)start * element, n, mpi_type(type), MPI_SUM,
                                    data_comm, &p->request);
        if (status != MPI_SUCCESS) mpi_fail("all-reduce", what, status);
    }
}

void dist_mpi_progress(void) {
    for (int i = 0; i < pending_count; i++) {
        int done = 0, status = MPI_Test(&pending[i].request, &done, MPI_STATUS_IGNORE);
        if (status != MPI_SUCCESS) mpi_fail("all-reduce", pending[i].what, status);
    }
}

void dist_mpi_wait_all(void) {
    for (int i = 0; i < pending_count; i++) {
        Pending *p = &pending[i];
        // What the SIGTERM handler says while this rank waits here.
        in_collective = 0;
        snprintf(line_in_collective, sizeof line_in_collective,
                 "error: dist: rank %d: terminated by the launcher in all-reduce '%s' (collective #%lld); another rank "
                 "failed (the launcher's message names it)\n",
                 mpi_rank, p->what, (long long)p->number);
        in_collective = 1;
        wait_for(&p->request, "all-reduce", p->what, p->number);
    }
    pending_count = 0;
}

void dist_mpi_broadcast(void *buffer, size_t bytes, int root, const char *what) {
    for (size_t start = 0; start < bytes; start += (size_t)MAX_CHUNK) {
        int n = (int)(bytes - start < (size_t)MAX_CHUNK ? bytes - start : (size_t)MAX_CHUNK);
        begin("broadcast", what);
        MPI_Request request;
        int status = MPI_Ibcast((char *)buffer + start, n, MPI_BYTE, root, data_comm, &request);
        if (status != MPI_SUCCESS) mpi_fail("broadcast", what, status);
        wait_for(&request, "broadcast", what, collective_number);
    }
}

void dist_mpi_all_gather(const void *send, void *recv, size_t bytes, const char *what) {
    begin("all-gather", what);
    if (bytes > (size_t)MAX_CHUNK) {
        fprintf(stderr, "error: dist: all-gather '%s' of %zu bytes per rank: at most 2^30\n", what, bytes);
        exit(3);
    }
    MPI_Request request;
    int status = MPI_Iallgather(send == recv ? MPI_IN_PLACE : send, (int)bytes, MPI_BYTE, recv, (int)bytes, MPI_BYTE,
                                data_comm, &request);
    if (status != MPI_SUCCESS) mpi_fail("all-gather", what, status);
    wait_for(&request, "all-gather", what, collective_number);
}

void dist_mpi_reduce_scatter(const void *send, void *recv, int64_t count, DistType type, DistOp op, const char *what) {
    begin("reduce-scatter", what);
    if (count > MAX_CHUNK) {
        fprintf(stderr, "error: dist: reduce-scatter '%s' of %lld elements per rank: at most 2^30\n", what, (long long)count);
        exit(3);
    }
    MPI_Request request;
    int status = MPI_Ireduce_scatter_block(send, recv, (int)count, mpi_type(type), MPI_SUM, data_comm, &request);
    if (status != MPI_SUCCESS) mpi_fail("reduce-scatter", what, status);
    wait_for(&request, "reduce-scatter", what, collective_number);
    if (op == DIST_AVG) scale(recv, count, type);
}

void dist_mpi_barrier(const char *what) {
    begin("barrier", what);
    MPI_Request request;
    int status = MPI_Ibarrier(data_comm, &request);
    if (status != MPI_SUCCESS) mpi_fail("barrier", what, status);
    wait_for(&request, "barrier", what, collective_number);
}

#else  // no MPI in this build: dist_init never gets here with world size > 1.

static _Noreturn void no_mpi(void) {
    fprintf(stderr, "error: dist: this build has no MPI (install openmpi-bin libopenmpi-dev and rebuild)\n");
    exit(3);
}

bool dist_mpi_available(void) { return false; }
int dist_mpi_init(int expected_rank, int expected_size, char *error, size_t error_size) {
    (void)expected_rank, (void)expected_size;
    snprintf(error, error_size, "dist: this build has no MPI (install openmpi-bin libopenmpi-dev and rebuild)");
    return -1;
}
void dist_mpi_finalize(void) {}
void dist_mpi_abort(int status) { exit(status); }
void dist_mpi_all_reduce(void *buffer, int64_t count, DistType type, DistOp op, const char *what) { no_mpi(); }
void dist_mpi_broadcast(void *buffer, size_t bytes, int root, const char *what) { no_mpi(); }
void dist_mpi_all_gather(const void *send, void *recv, size_t bytes, const char *what) { no_mpi(); }
void dist_mpi_reduce_scatter(const void *send, void *recv, int64_t count, DistType type, DistOp op, const char *what) {
    no_mpi();
}
void dist_mpi_barrier(const char *what) { no_mpi(); }
void dist_mpi_all_reduce_start(void *buffer, int64_t count, DistType type, const char *what) { no_mpi(); }
void dist_mpi_progress(void) {}
void dist_mpi_wait_all(void) {}

#endif
