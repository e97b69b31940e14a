// Distributed runs (engine/dist.h): placement from the launcher's environment, the choice of
// backend, the single-process backend, the configuration check and the parameter broadcast. The
// MPI backend is engine/dist_mpi.c (compiled with MPI when the Makefile finds it, as stubs
// otherwise), the NCCL one engine/dist_nccl.c; gradient averaging is engine/dist_gradients.c.
#include "engine/dist.h"

#include "engine/dist_rendezvous.h"
#include "engine/gpu/gpu_comm.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/gpu/gpu.h"
#include "engine/tensor.h"

static struct {
    int rank, world_size, local_rank;
    const char *launcher;
    bool mpi;          // the MPI backend is initialised (world_size > 1)
    bool nccl;         // the NCCL backend: the ranks met at a rendezvous, without MPI
    bool finalized;
    bool exit_hook;
    double timeout;
} dist = {0, 1, 0, "none", false, false, false, false, 300};

static void set_error(char *error, size_t error_size, const char *format, ...) {
    if (!error || !error_size) return;
    va_list args;
    va_start(args, format);
    vsnprintf(error, error_size, format, args);
    va_end(args);
}

DistOptions dist_default_options(void) { return (DistOptions){.rank = -1, .world_size = -1, .local_rank = -1}; }

// An environment variable as a non-negative int; -1 when unset, -2 when malformed.
static int env_int(const char *name) {
    const char *text = getenv(name);
    if (!text || !*text) return -1;
    char *end;
    long value = strtol(text, &end, 10);
    if (*end || value < 0 || value > 1 << 24) return -2;
    return (int)value;
}

int dist_detect(const DistOptions *options, int *rank, int *world_size, int *local_rank, const char **launcher,
                char *error, size_t error_size) {
    DistOptions defaults = dist_default_options();
    if (!options) options = &defaults;
    static const char *const names[2][3] = {
        {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"},
        {"SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"},
    };
    static const char *const launchers[2] = {"openmpi", "slurm"};
    int r = 0, w = 1, l = 0;
    const char *from = "none";
    for (int k = 0; k < 2; k++) {
        int er = env_int(names[k][0]), ew = env_int(names[k][1]), el = env_int(names[k][2]);
        if (er == -1 && ew == -1) continue;
        if (er < 0 || ew < 1 || el == -2) {
            set_error(error, error_size, "dist: the launcher's environment is inconsistent: %s=%s %s=%s", names[k][0],
                      getenv(names[k][0]) ? getenv(names[k][0]) : "(unset)", names[k][1],
                      getenv(names[k][1]) ? getenv(names[k][1]) : "(unset)");
            return -1;
        }
        r = er, w = ew, l = el >= 0 ? el : 0;
        from = launchers[k];
        break;
    }
    if (options->world_size >= 0 || options->rank >= 0) {
        if (options->world_size < 1 || options->rank < 0) {
            set_error(error, error_size, "dist: an explicit placement needs both rank and world size (got %d of %d)",
                      options->rank, options->world_size);
            return -1;
        }
        r = options->rank, w = options->world_size, l = options->local_rank >= 0 ? options->local_rank : 0;
        from = "explicit";
    } else if (options->local_rank >= 0) {
        l = options->local_rank;
    }
    if (r >= w) {
        set_error(error, error_size, "dist: rank %d is outside world size %d (%s)", r, w, from);
        return -1;
    }
    *rank = r, *world_size = w, *local_rank = l, *launcher = from;
    return 0;
}

static void exit_hook(int status, void *unused) {
    (void)unused;
    if (!dist.mpi || dist.finalized) return;
    if (status != 0) {
        fflush(stdout);
        fflush(stderr);
        dist_mpi_abort(status);  // the others would otherwise wait for this rank until their timeout
    }
    dist_finalize();
}

// Ranks without MPI: rank 0's NCCL unique id and everyone's configuration through the rendezvous.
// Only NCCL can carry the collectives then, so a program without a GPU stops here, before any
// rank waits for another.
static int init_with_rendezvous(const DistOptions *options, int rank, int world_size, char *error, size_t error_size) {
    if (!gpu_comm_available()) {
        set_error(error, error_size,
                  "dist: --dist-init %s: %d ranks without MPI need NCCL for their collectives, and this program has no "
                  "GPU to run it on (%s); on CPUs the collectives need MPI: start the ranks with mpirun instead",
                  options->init_address, world_size,
                  strcmp(gpu_backend_name(), "cuda") == 0 ? "no CUDA device found" : "use build/tailor-cuda on GPUs");
        return -1;
    }
    uint8_t id[GPU_COMM_UNIQUE_ID_BYTES] = {0};
    char reason[512];
    if (rank == 0 && gpu_comm_unique_id(id, reason, sizeof reason) != 0) {
        set_error(error, error_size, "dist: rank 0: NCCL: %s", reason);
        return -1;
    }
    // The backend and the program's device runtime belong to the configuration: a CPU build cannot
    // get here, but two CUDA builds of other versions could.
    char config[RENDEZVOUS_CONFIG_BYTES];
    snprintf(config, sizeof config, "%.200s backend=nccl runtime=%s", options->config ? options->config : "",
             gpu_backend_name());
    RendezvousOptions rendezvous = {.address = options->init_address, .rank = rank, .world_size = world_size,
                                    .run_id = options->run_id, .timeout_seconds = dist.timeout};
    if (rendezvous_exchange(&rendezvous, id, sizeof id, config, reason, sizeof reason) != 0) {
        set_error(error, error_size, "dist: %s", reason);
        return -1;
    }
    dist_nccl_set_unique_id(id);
    return 0;
}

int dist_init(const DistOptions *options, char *error, size_t error_size) {
    DistOptions defaults = dist_default_options();
    if (!options) options = &defaults;
    int rank, world_size, local_rank;
    const char *launcher;
    if (dist_detect(options, &rank, &world_size, &local_rank, &launcher, error, error_size) != 0) return -1;
    dist.timeout = options->timeout_seconds > 0 ? options->timeout_seconds : 300;
    char reason[512];
    if (options->init_address && rendezvous_check_address(options->init_address, reason, sizeof reason) != 0) {
        set_error(error, error_size, "dist: --dist-init %s", reason);
        return -1;
    }
    if (world_size > 1 && options->init_address) {
        if (init_with_rendezvous(options, rank, world_size, error, error_size) != 0) return -1;
        dist.nccl = true;
        dist.finalized = false;
    } else if (world_size > 1) {
        if (!dist_mpi_available()) {
            set_error(error, error_size,
                      "dist: %s started %d ranks but this build has no MPI; install the Debian packages openmpi-bin "
                      "libopenmpi-dev and rebuild (make), or run one process",
                      launcher, world_size);
            return -1;
        }
        if (dist_mpi_init(rank, world_size, error, error_size) != 0) return -1;
        dist.mpi = true;
        dist.finalized = false;
        if (!dist.exit_hook) on_exit(exit_hook, NULL);
        dist.exit_hook = true;
    }
    dist.rank = rank, dist.world_size = world_size, dist.local_rank = local_rank, dist.launcher = launcher;
    return 0;
}

void dist_finalize(void) {
    if (dist.mpi && !dist.finalized) {
        dist.finalized = true;
        dist_mpi_finalize();
    }
    if (dist.nccl && !dist.finalized) {
        dist.finalized = true;
        dist_nccl_finalize();
    }
}

int dist_rank(void) { return dist.rank; }
int dist_world_size(void) { return dist.world_size; }
int dist_local_rank(void) { return dist.local_rank; }
const char *dist_launcher(void) { return dist.launcher; }
const char *dist_backend(void) { return dist.mpi ? "mpi" : dist.nccl ? "nccl" : "none"; }
bool dist_build_has_mpi(void) { return dist_mpi_available(); }
double dist_timeout(void) { return dist.timeout; }

// ---------------------------------------------------------------- collectives

static bool communicating(void) {
    if (dist.world_size > 1 && (!(dist.mpi || dist.nccl) || dist.finalized)) {
        fprintf(stderr, "error: dist: a collective was called with world size %d but %s\n", dist.world_size,
                dist.finalized ? "dist_finalize has run" : "the backend is not initialised");
        exit(3);
    }
    return dist.world_size > 1;
}

void dist_all_reduce(void *buffer, int64_t count, DistType type, DistOp op, const char *what) {
    if (!communicating() || count <= 0) return;
    if (dist.nccl) dist_nccl_all_reduce(buffer, count, type, op, what);
    else dist_mpi_all_reduce(buffer, count, type, op, what);
}

void dist_broadcast(void *buffer, size_t bytes, int root, const char *what) {
    if (!communicating() || bytes == 0) return;
    if (dist.nccl) dist_nccl_broadcast(buffer, bytes, root, what);
    else dist_mpi_broadcast(buffer, bytes, root, what);
}

void dist_all_gather(const void *send, void *recv, size_t bytes, const char *what) {
    if (communicating() && dist.nccl)
        dist_nccl_all_gather(send, recv, bytes, what);
    else if (communicating())
        dist_mpi_all_gather(send, recv, bytes, what);
    else if (bytes && send != recv)
        memmove(recv, send, bytes);
}

void dist_reduce_scatter(const void *send, void *recv, int64_t count, DistType type, DistOp op, const char *what) {
    if (communicating() && dist.nccl)
        dist_nccl_reduce_scatter(send, recv, count, type, op, what);
    else if (communicating())
        dist_mpi_reduce_scatter(send, recv, count, type, op, what);
    else if (count > 0 && send != recv)
        memmove(recv, send, (size_t)count * dist_type_size(type));
}

void dist_barrier(const char *what) {
    if (!communicating()) return;
    if (dist.nccl) dist_nccl_barrier(what);
    else dist_mpi_barrier(what);
}

// ---------------------------------------------------------------- configuration check

static uint64_t fnv1a(const void *data, size_t bytes, uint64_t hash) {
    const unsigned char *p = data;
    for (size_t i = 0; i < bytes; i++) hash = (hash ^ p[i]) * 1099511628211ull;
    return hash;
}

// The JSON member around byte `at` of a flat settings object: its key and its value's extent.
static void member_at(const char *text, size_t at, char *key, size_t key_size, const char **value, int *value_length) {
    size_t colon = at;
    while (colon > 0 && !(text[colon] == ':' && text[colon - 1] == '"')) colon--;
    *key = '\0';
    *value = text + (colon ? colon + 1 : at);
    if (colon > 0) {
        size_t end = colon - 1, start = end;
        while (start > 0 && text[start - 1] != '"') start--;
        snprintf(key, key_size, "%.*s", (int)(end - start), text + start);
    }
    const char *v = *value;
    int n = 0, in_string = 0;
    while (v[n] && (in_string || (v[n] != ',' && v[n] != '}'))) {
        if (v[n] == '"' && (n == 0 || v[n - 1] != '\\')) in_string = !in_string;
        n++;
    }
    *value_length = n > 60 ? 60 : n;
}

int dist_check_same_config(const char *what, const char *text, int64_t number, char *error, size_t error_size) {
    if (error && error_size) error[0] = '\0';
    if (dist.world_size == 1) return 0;
    size_t length = strlen(text);
    uint64_t mine[2] = {fnv1a(text, length, 1469598103934665603ull), (uint64_t)number};
    uint64_t *all = malloc(sizeof mine * (size_t)dist.world_size);
    if (!all) tensor_fatal("dist", "out of memory");
    dist_all_gather(mine, all, sizeof mine, "configuration check");
    int first_bad = -1;
    for (int r = 1; r < dist.world_size && first_bad < 0; r++)
        if (all[2 * r] != all[0] || all[2 * r + 1] != all[1]) first_bad = r;
    int64_t number0 = (int64_t)all[1];
    bool text_differs = first_bad >= 0 && all[2 * first_bad] != all[0];
    free(all);
    if (first_bad < 0) return 0;
    // Rank 0's text, so the first differing rank can name the member.
    uint64_t length0 = length;
    dist_broadcast(&length0, sizeof length0, 0, "configuration check");
    char *text0 = calloc(length0 + 1, 1);
    if (!text0) tensor_fatal("dist", "out of memory");
    if (dist.rank == 0) memcpy(text0, text, length);
    dist_broadcast(text0, length0, 0, "configuration check");
    if (dist.rank == first_bad) {
        if (text_differs) {
            size_t at = 0;
            while (text[at] && text[at] == text0[at]) at++;
            char key[128];
            const char *mine_value, *theirs_value;
            int mine_length, theirs_length;
            member_at(text, at, key, sizeof key, &mine_value, &mine_length);
            member_at(text0, at, key, sizeof key, &theirs_value, &theirs_length);
            set_error(error, error_size, "dist: rank %d's %s differ from rank 0's at \"%s\": %.*s (rank 0: %.*s)", dist.rank,
                      what, key, mine_length, mine_value, theirs_length, theirs_value);
        } else {
            set_error(error, error_size, "dist: rank %d has %lld parameters, rank 0 has %lld (%s)", dist.rank,
                      (long long)number, (long long)number0, what);
        }
    }
    free(text0);
    return -1;
}

// ---------------------------------------------------------------- data parallel

void dist_broadcast_params(ParamStore *params) {
    if (dist.world_size == 1) return;
    for (int i = 0; i < params->count; i++) {  // buffers (and parameters before finalize): contiguous f32
        Tensor *t = params->items[i].value;
        if (params->finalized && params->items[i].group >= 0) continue;  // in the flat buffer, below
        size_t bytes = (size_t)tensor_numel(t) * sizeof(float);
        if (tensor_is_cuda(t)) dist_device_broadcast(tensor_data(t), bytes, 0, params->items[i].name);
        else dist_broadcast(tensor_data(t), bytes, 0, params->items[i].name);
    }
    if (!params->finalized || params->numel == 0) return;
    size_t bytes = (size_t)params->numel * sizeof(float);
    if (params->values->device.kind == DEVICE_CPU) dist_broadcast(params_values(params), bytes, 0, "parameters");
    else dist_device_broadcast(params_values(params), bytes, 0, "parameters");
}

// ---------------------------------------------------------------- test hook

static bool fault_matches(const char *name, int64_t step) {
    const char *text = getenv(name);
    if (!text || !*text) return false;
    int rank = -1;
    long long at = -1;
    if (sscanf(text, "%d:%lld", &rank, &at) != 2) return false;
    return rank == dist.rank && at == step;
}

void dist_test_fault_point(int64_t step) {
    if (fault_matches("TAILOR_DIST_TEST_EXIT_AT_STEP", step)) {
        fprintf(stderr, "rank %d: TAILOR_DIST_TEST_EXIT_AT_STEP: exiting at step %lld\n", dist.rank, (long long)step);
        _exit(1);
    }
    if (fault_matches("TAILOR_DIST_TEST_HANG_AT_STEP", step)) {
        fprintf(stderr, "rank %d: TAILOR_DIST_TEST_HANG_AT_STEP: hanging at step %lld\n", dist.rank, (long long)step);
        for (;;) sleep(60);
    }
}
