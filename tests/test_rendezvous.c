// The rendezvous without MPI (engine/dist_rendezvous.h): forked processes play the ranks of a run
// and exchange rank 0's 128-byte id and their configuration strings over TCP on a free local port
// and over a file in a temporary directory. Checked: every rank receives rank 0's exact bytes, also
// when rank 0 starts last; a rank with another configuration is named on every rank; a rank that
// never starts makes the others stop within the timeout with one line naming the missing rank and
// the step; a file left by an earlier run (another run id) is not taken for this run's; a rank of
// another run is turned away over TCP; malformed addresses are refused before any I/O.
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "engine/dist_rendezvous.h"
#include "tests/check.h"

TEST_MAIN_COUNTERS;

#define MAX_RANKS 6
#define ID_BYTES 128

static char work_dir[256];

typedef struct {
    int status;  // rendezvous_exchange's result; 99 when the rank was not started
    double seconds;
    char error[512];
    uint8_t blob[ID_BYTES];
} Outcome;

typedef struct {
    const char *run_id[MAX_RANKS];  // NULL: "test-run"
    const char *config[MAX_RANKS];  // NULL: "train nccl"
    int start_after_ms[MAX_RANKS];  // a late rank
    bool absent[MAX_RANKS];         // never started
    double timeout;                 // 0: 20 s
} Scenario;

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

// The bytes rank 0 sends: distinct per call, so a stale blob cannot pass for a fresh one.
static void make_id(uint8_t *id, unsigned seed) {
    for (int i = 0; i < ID_BYTES; i++) id[i] = (uint8_t)(seed * 131u + (unsigned)i * 7u + (unsigned)(i >> 3));
}

// Runs `world` ranks as child processes (outcomes in shared memory) and waits for all of them.
static void run_ranks(int world, const char *address, const Scenario *s, unsigned seed, Outcome *out) {
    Outcome *shared = mmap(NULL, sizeof(Outcome) * MAX_RANKS, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED) {
        printf("  mmap failed\n");
        exit(1);
    }
    pid_t pids[MAX_RANKS] = {0};
    fflush(stdout);
    for (int r = 0; r < world; r++) {
        shared[r].status = 99;
        if (s->absent[r]) continue;
        pids[r] = fork();
        if (pids[r] == 0) {
            if (s->start_after_ms[r]) {
                struct timespec pause = {s->start_after_ms[r] / 1000, (long)(s->start_after_ms[r] % 1000) * 1000000L};
                nanosleep(&pause, NULL);
            }
            RendezvousOptions options = {.address = address, .rank = r, .world_size = world,
                                         .run_id = s->run_id[r] ? s->run_id[r] : "test-run",
                                         .timeout_seconds = s->timeout > 0 ? s->timeout : 20};
            uint8_t blob[ID_BYTES] = {0};
            if (r == 0) make_id(blob, seed);
            double start = now_seconds();
            shared[r].status = rendezvous_exchange(&options, blob, sizeof blob, s->config[r] ? s->config[r] : "train nccl",
                                                   shared[r].error, sizeof shared[r].error);
            shared[r].seconds = now_seconds() - start;
            memcpy(shared[r].blob, blob, sizeof blob);
            _exit(0);
        }
    }
    for (int r = 0; r < world; r++)
        if (pids[r] > 0) waitpid(pids[r], NULL, 0);
    memcpy(out, shared, sizeof(Outcome) * MAX_RANKS);
    munmap(shared, sizeof(Outcome) * MAX_RANKS);
}

// A TCP port nobody listens on now: bound to port 0 (the kernel picks), then released.
static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t length = sizeof address;
    if (fd < 0 || bind(fd, (struct sockaddr *)&address, sizeof address) != 0 ||
        getsockname(fd, (struct sockaddr *)&address, &length) != 0) {
        printf("  cannot find a free port\n");
        exit(1);
    }
    close(fd);
    return ntohs(address.sin_port);
}

static void tcp_address(char *out, size_t size) { snprintf(out, size, "tcp://127.0.0.1:%d", free_port()); }

static void file_address(char *out, size_t size, const char *name) { snprintf(out, size, "file://%s/%s", work_dir, name); }

static void check_everyone_has_the_id(int world, const Outcome *out, unsigned seed, const char *address) {
    uint8_t expected[ID_BYTES];
    make_id(expected, seed);
    for (int r = 0; r < world; r++) {
        CHECK_MSG(out[r].status == 0, "%s: rank %d: %s", address, r, out[r].error);
        CHECK_MSG(memcmp(out[r].blob, expected, ID_BYTES) == 0, "%s: rank %d received other bytes", address, r);
    }
}

TEST(tcp_every_rank_receives_rank_0s_id) {
    char address[64];
    Outcome out[MAX_RANKS];
    Scenario s = {0};
    tcp_address(address, sizeof address);
    run_ranks(4, address, &s, 1, out);
    check_everyone_has_the_id(4, out, 1, address);
    // Rank 0 last: the others retry their connection until it listens.
    Scenario late = {.start_after_ms = {700, 0, 0}};
    tcp_address(address, sizeof address);
    run_ranks(3, address, &late, 2, out);
    check_everyone_has_the_id(3, out, 2, address);
    // One rank alone needs no peer.
    run_ranks(1, address, &s, 3, out);
    check_everyone_has_the_id(1, out, 3, address);
}

TEST(file_every_rank_receives_rank_0s_id) {
    char address[512];
    Outcome out[MAX_RANKS];
    Scenario s = {0};
    file_address(address, sizeof address, "rdzv_plain");
    run_ranks(5, address, &s, 4, out);
    check_everyone_has_the_id(5, out, 4, address);
    Scenario late = {.start_after_ms = {500, 0, 200}};
    file_address(address, sizeof address, "rdzv_late");
    run_ranks(3, address, &late, 5, out);
    check_everyone_has_the_id(3, out, 5, address);
    // Rank 0 removed the ranks' files once read; its answer stays (guarded by the run id).
    char path[600];
    snprintf(path, sizeof path, "%s.rank1", address + 7);
    CHECK_MSG(access(path, F_OK) != 0, "%s was left behind", path);
    CHECK(access(address + 7, F_OK) == 0);
}

TEST(a_different_configuration_is_named_on_every_rank) {
    char address[512];
    Outcome out[MAX_RANKS];
    Scenario s = {.config = {"train nccl lr=0.05", "train nccl lr=0.05", "train nccl lr=0.1"}};
    for (int way = 0; way < 2; way++) {
        if (way == 0) tcp_address(address, sizeof address);
        else file_address(address, sizeof address, "rdzv_config");
        run_ranks(3, address, &s, 6, out);
        for (int r = 0; r < 3; r++) {
            CHECK_MSG(out[r].status == -1, "%s: rank %d accepted a differing configuration", address, r);
            CHECK_MSG(strcmp(out[r].error, "rank 2's configuration differs from rank 0's: 'train nccl lr=0.1' (rank 0: "
                                           "'train nccl lr=0.05')") == 0,
                      "%s: rank %d: %s", address, r, out[r].error);
        }
    }
}

// A rank that never comes: the others stop at the timeout (not before, not much after) with one
// line naming the rank they wait for, where, and the step; rank 0, which knows which rank is
// missing, tells the ranks that did come.
TEST(a_missing_rank_times_out_with_one_line) {
    char address[512], expected[1200];
    Outcome out[MAX_RANKS];
    const double timeout = 1.5;
    // TCP, rank 2 missing: rank 0 waits for its connection and gives up at the timeout; rank 1,
    // waiting for rank 0's answer, hears why from rank 0.
    Scenario no_rank2 = {.absent = {false, false, true}, .timeout = timeout};
    tcp_address(address, sizeof address);
    run_ranks(3, address, &no_rank2, 7, out);
    snprintf(expected, sizeof expected, "rank 0: no connection from rank 2 at %s: timed out after 1.5 s", address);
    CHECK_MSG(out[0].status == -1 && strcmp(out[0].error, expected) == 0, "%s", out[0].error);
    snprintf(expected, sizeof expected,
             "rank 1: rank 0 stopped the rendezvous: no connection from rank 2 at %s: timed out after 1.5 s", address);
    CHECK_MSG(out[1].status == -1 && strcmp(out[1].error, expected) == 0, "%s", out[1].error);
    for (int r = 0; r < 2; r++)
        CHECK_MSG(out[r].seconds >= timeout - 0.05 && out[r].seconds < timeout + 1.5, "rank %d stopped after %.2f s", r,
                  out[r].seconds);
    // TCP, rank 0 missing: nobody listens.
    Scenario no_rank0 = {.absent = {true}, .timeout = timeout};
    tcp_address(address, sizeof address);
    run_ranks(2, address, &no_rank0, 8, out);
    snprintf(expected, sizeof expected, "rank 1: no connection to rank 0 at %s: timed out after 1.5 s (", address);
    CHECK_MSG(out[1].status == -1 && strncmp(out[1].error, expected, strlen(expected)) == 0, "%s", out[1].error);
    CHECK_MSG(out[1].seconds >= timeout - 0.05 && out[1].seconds < timeout + 1.5, "%.2f s", out[1].seconds);
    // File, rank 2 missing (rank 0's reason reaches rank 1 through the file), then rank 0 missing
    // (rank 1 waits 2 s longer than the timeout for a reason from rank 0 that does not come).
    file_address(address, sizeof address, "rdzv_missing");
    run_ranks(3, address, &no_rank2, 9, out);
    snprintf(expected, sizeof expected, "rank 0: no hello from rank 2 at %s (%s.rank2): timed out after 1.5 s", address,
             address + 7);
    CHECK_MSG(out[0].status == -1 && strcmp(out[0].error, expected) == 0, "%s", out[0].error);
    char from_rank0[1300];
    snprintf(from_rank0, sizeof from_rank0, "rank 1: rank 0 stopped the rendezvous: %s", expected + 8);
    CHECK_MSG(out[1].status == -1 && strcmp(out[1].error, from_rank0) == 0, "%s", out[1].error);
    CHECK_MSG(out[1].seconds >= timeout - 0.05 && out[1].seconds < timeout + 1.5, "%.2f s", out[1].seconds);
    file_address(address, sizeof address, "rdzv_no_rank0");
    run_ranks(2, address, &no_rank0, 10, out);
    snprintf(expected, sizeof expected, "rank 1: no answer from rank 0 at %s: timed out after 1.5 s", address);
    CHECK_MSG(out[1].status == -1 && strcmp(out[1].error, expected) == 0, "%s", out[1].error);
    CHECK_MSG(out[1].seconds >= timeout + 2 - 0.05 && out[1].seconds < timeout + 2 + 1.5, "%.2f s", out[1].seconds);
}

// Yesterday's run left its answer (and a rank's hello) at the same path: today's ranks, whose rank 0
// starts late, must wait for today's answer rather than take yesterday's id.
TEST(a_stale_file_is_ignored) {
    char address[512];
    Outcome out[MAX_RANKS];
    file_address(address, sizeof address, "rdzv_stale");
    Scenario yesterday = {.run_id = {"job-41", "job-41"}};
    run_ranks(2, address, &yesterday, 11, out);
    check_everyone_has_the_id(2, out, 11, address);
    // ... and a rank 2 of a 3-rank run of job 41 whose rank 0 never came: PATH.rank2 stays.
    Scenario abandoned = {.run_id = {"job-41", "job-41", "job-41"}, .absent = {true, true, false}, .timeout = 0.3};
    run_ranks(3, address, &abandoned, 12, out);
    CHECK(out[2].status == -1);
    Scenario today = {.run_id = {"job-42", "job-42", "job-42"}, .start_after_ms = {600, 0, 0}};
    run_ranks(3, address, &today, 13, out);
    check_everyone_has_the_id(3, out, 13, address);
    // Without a run id a file cannot be told from an earlier run's: refused with one line.
    unsetenv("SLURM_JOB_ID");
    Scenario anonymous = {.run_id = {"", ""}, .timeout = 1};
    run_ranks(2, address, &anonymous, 14, out);
    for (int r = 0; r < 2; r++)
        CHECK_MSG(out[r].status == -1 && strstr(out[r].error, "a file rendezvous needs a run id") &&
                      strstr(out[r].error, "--dist-run-id"),
                  "rank %d: %s", r, out[r].error);
    // Slurm's job and step ids serve as the run id.
    setenv("SLURM_JOB_ID", "777", 1);
    setenv("SLURM_STEP_ID", "3", 1);
    char id[RENDEZVOUS_RUN_ID_BYTES], error[256];
    RendezvousOptions options = {.address = address, .run_id = NULL};
    CHECK(rendezvous_run_id(&options, id, sizeof id, error, sizeof error) == 0 && strcmp(id, "slurm-777.3") == 0);
    run_ranks(2, address, &anonymous, 15, out);
    check_everyone_has_the_id(2, out, 15, address);
    unsetenv("SLURM_JOB_ID");
    unsetenv("SLURM_STEP_ID");
}

// Over TCP a rank of another run (another run id) is told so; a world size that differs stops both.
TEST(tcp_turns_away_another_runs_rank) {
    char address[64];
    Outcome out[MAX_RANKS];
    Scenario s = {.run_id = {"job-1", "job-1", "job-2"}, .timeout = 2};
    tcp_address(address, sizeof address);
    run_ranks(3, address, &s, 16, out);
    char expected[700];
    snprintf(expected, sizeof expected, "rank 2: rank 0 at %s belongs to another run (run id 'job-1'; yours 'job-2')", address);
    CHECK_MSG(out[2].status == -1 && strcmp(out[2].error, expected) == 0, "%s", out[2].error);
    CHECK_MSG(out[0].status == -1 && strstr(out[0].error, "no connection from rank 2"), "%s", out[0].error);
    // Rank 1 believes in 3 ranks, rank 0 in 2: both stop at once, rank 1 hearing rank 0's reason.
    int port = free_port();
    snprintf(address, sizeof address, "tcp://localhost:%d", port);
    pid_t child = fork();
    if (child == 0) {
        RendezvousOptions options = {.address = address, .rank = 1, .world_size = 3, .run_id = "x", .timeout_seconds = 5};
        uint8_t blob[ID_BYTES];
        char error[512];
        int status = rendezvous_exchange(&options, blob, sizeof blob, "c", error, sizeof error);
        _exit(status == -1 && strstr(error, "rank 0 stopped the rendezvous: rank 1 says the run has 3 ranks, rank 0 says 2") ? 0 : 1);
    }
    RendezvousOptions options = {.address = address, .rank = 0, .world_size = 2, .run_id = "x", .timeout_seconds = 5};
    uint8_t blob[ID_BYTES] = {0};
    char error[512];
    double start = now_seconds();
    CHECK(rendezvous_exchange(&options, blob, sizeof blob, "c", error, sizeof error) == -1);
    CHECK_MSG(strstr(error, "rank 0: rank 1 says the run has 3 ranks, rank 0 says 2"), "%s", error);
    CHECK_MSG(now_seconds() - start < 4, "rank 0 waited %.1f s", now_seconds() - start);
    int child_status = 1;
    waitpid(child, &child_status, 0);
    CHECK_MSG(WIFEXITED(child_status) && WEXITSTATUS(child_status) == 0, "rank 1 did not report rank 0's reason");
}

TEST(malformed_addresses_are_refused) {
    const char *bad[] = {"", "tcp://host", "tcp://host:0", "tcp://host:70000", "tcp://:29500", "tcp://host:29x",
                         "file://relative/path", "file://", "http://host:1", "node1:29500"};
    char error[256];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_MSG(rendezvous_check_address(bad[i], error, sizeof error) == -1, "accepted '%s'", bad[i]);
        CHECK_MSG(strchr(error, '\n') == NULL && strlen(error) > 10, "'%s': %s", bad[i], error);
    }
    const char *good[] = {"tcp://node1:29500", "tcp://[::1]:29500", "tcp://10.0.0.1:1", "file:///shared/rdzv"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        CHECK_MSG(rendezvous_check_address(good[i], error, sizeof error) == 0, "'%s': %s", good[i], error);
}

int main(void) {
    snprintf(work_dir, sizeof work_dir, "%s/tailor_rendezvous_XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(work_dir)) {
        printf("cannot create a temporary directory\n");
        return 1;
    }
    unsetenv("SLURM_JOB_ID");
    RUN_TEST(tcp_every_rank_receives_rank_0s_id);
    RUN_TEST(file_every_rank_receives_rank_0s_id);
    RUN_TEST(a_different_configuration_is_named_on_every_rank);
    RUN_TEST(a_missing_rank_times_out_with_one_line);
    RUN_TEST(a_stale_file_is_ignored);
    RUN_TEST(tcp_turns_away_another_runs_rank);
    RUN_TEST(malformed_addresses_are_refused);
    char command[600];
    snprintf(command, sizeof command, "rm -rf '%s'", work_dir);
    if (system(command) != 0) printf("could not remove %s\n", work_dir);
    return test_summary();
}
