// Rendezvous over TCP or a shared file (engine/dist_rendezvous.h).
//
// Both ways exchange the same two messages, in a fixed little-endian layout so that ranks on
// different machines (or built by different compilers) read each other:
//   hello  (rank r -> rank 0): header {kind, rank, world size, status, run id, configuration}
//   answer (rank 0 -> every rank): header {status, run id, message on error} + blob + every
//          rank's configuration, in rank order.
// Every wait has the one deadline of the call; what was being waited for is named when it passes.
#include "engine/dist_rendezvous.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { KIND_HELLO = 1, KIND_ANSWER = 2 };
enum { STATUS_OK = 0, STATUS_OTHER_RUN = 1, STATUS_FAILED = 2 };
#define VERSION 1
#define TEXT_BYTES RENDEZVOUS_CONFIG_BYTES
#define HEADER_BYTES (4 + 5 * 4 + RENDEZVOUS_RUN_ID_BYTES + TEXT_BYTES)
#define POLL_MS 50
// Ranks other than 0 wait this much longer than the deadline for rank 0's answer: rank 0 gives up
// at about the same time (give or take the ranks' start-up skew) and then says which rank is
// missing, a better line than "no answer from rank 0".
#define ANSWER_GRACE_SECONDS 2.0
// A world this large would make the answer (a configuration per rank) megabytes; a rendezvous for
// it wants a tree, not one rank 0.
#define MAX_WORLD 65536

typedef struct {
    uint32_t kind, rank, world, status, blob_bytes;
    char run_id[RENDEZVOUS_RUN_ID_BYTES];
    char text[TEXT_BYTES];  // hello: the configuration; answer: the message when status != OK
} Header;

static void set_error(char *error, size_t error_size, const char *format, ...) {
    va_list args;
    va_start(args, format);
    vsnprintf(error, error_size, format, args);
    va_end(args);
}

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int remaining_ms(double deadline) {
    double left = deadline - now_seconds();
    return left <= 0 ? 0 : left > 1e6 ? 1000000000 : (int)(left * 1000) + 1;
}

static void pause_ms(int ms) {
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

// ---------------------------------------------------------------- messages

static void put_u32(uint8_t *at, uint32_t v) {
    for (int i = 0; i < 4; i++) at[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *at) {
    return (uint32_t)at[0] | (uint32_t)at[1] << 8 | (uint32_t)at[2] << 16 | (uint32_t)at[3] << 24;
}

static void encode_header(uint8_t *out, const Header *h) {
    memcpy(out, "TLRV", 4);
    put_u32(out + 4, VERSION);
    put_u32(out + 8, h->kind);
    put_u32(out + 12, h->rank);
    put_u32(out + 16, h->world);
    put_u32(out + 20, h->status);
    memcpy(out + 24, h->run_id, RENDEZVOUS_RUN_ID_BYTES);
    memcpy(out + 24 + RENDEZVOUS_RUN_ID_BYTES, h->text, TEXT_BYTES);
}

// 0, or -1 when the bytes are not a message of this version (another program on the port).
static int decode_header(const uint8_t *in, Header *h) {
    if (memcmp(in, "TLRV", 4) != 0 || get_u32(in + 4) != VERSION) return -1;
    h->kind = get_u32(in + 8);
    h->rank = get_u32(in + 12);
    h->world = get_u32(in + 16);
    h->status = get_u32(in + 20);
    memcpy(h->run_id, in + 24, RENDEZVOUS_RUN_ID_BYTES);
    memcpy(h->text, in + 24 + RENDEZVOUS_RUN_ID_BYTES, TEXT_BYTES);
    h->run_id[RENDEZVOUS_RUN_ID_BYTES - 1] = h->text[TEXT_BYTES - 1] = '\0';
    return 0;
}

// The answer's bytes after its header: u32 blob size, the blob, world configurations.
static size_t answer_body_bytes(size_t blob_bytes, int world) { return 4 + blob_bytes + (size_t)world * TEXT_BYTES; }

// ---------------------------------------------------------------- what every rank checks

int rendezvous_check_address(const char *address, char *error, size_t error_size) {
    if (!address || !*address) {
        set_error(error, error_size, "the rendezvous address is empty (expected tcp://HOST:PORT or file:///PATH)");
        return -1;
    }
    if (strncmp(address, "tcp://", 6) == 0) {
        const char *colon = strrchr(address + 6, ':');
        char *end = NULL;
        long port = colon ? strtol(colon + 1, &end, 10) : -1;
        if (!colon || colon == address + 6 || end == colon + 1 || *end || port < 1 || port > 65535) {
            set_error(error, error_size, "%s: expected tcp://HOST:PORT with a port in 1..65535", address);
            return -1;
        }
        return 0;
    }
    if (strncmp(address, "file://", 7) == 0) {
        if (address[7] != '/' || address[8] == '\0') {
            set_error(error, error_size, "%s: expected file:///ABSOLUTE/PATH (three slashes)", address);
            return -1;
        }
        if (strlen(address + 7) > 3900) {
            set_error(error, error_size, "%.60s...: the path is too long", address);
            return -1;
        }
        return 0;
    }
    set_error(error, error_size, "%s: expected tcp://HOST:PORT or file:///PATH", address);
    return -1;
}

int rendezvous_run_id(const RendezvousOptions *options, char *run_id, size_t run_id_size, char *error,
                      size_t error_size) {
    const char *job = getenv("SLURM_JOB_ID"), *step = getenv("SLURM_STEP_ID");
    if (options->run_id && *options->run_id)
        snprintf(run_id, run_id_size, "%s", options->run_id);
    else if (job && *job)
        snprintf(run_id, run_id_size, "slurm-%s.%s", job, step && *step ? step : "0");
    else
        snprintf(run_id, run_id_size, "%s", "");
    if (strlen(run_id) >= RENDEZVOUS_RUN_ID_BYTES - 1 || strlen(run_id) >= run_id_size - 1) {
        set_error(error, error_size, "the run id '%.40s...' is longer than %d characters", run_id,
                  RENDEZVOUS_RUN_ID_BYTES - 2);
        return -1;
    }
    return 0;
}

// The first rank whose configuration differs from rank 0's, named the same way on every rank.
static int compare_configs(const char *configs, int world, char *error, size_t error_size) {
    for (int r = 1; r < world; r++) {
        const char *mine = configs + (size_t)r * TEXT_BYTES;
        if (strcmp(mine, configs) != 0) {
            set_error(error, error_size, "rank %d's configuration differs from rank 0's: '%.100s' (rank 0: '%.100s')", r,
                      mine, configs);
            return -1;
        }
    }
    return 0;
}

// ---------------------------------------------------------------- TCP

// Reads or writes exactly `bytes` before the deadline. 0, 1 at the deadline, -1 on a closed or
// broken connection.
static int transfer(int fd, void *data, size_t bytes, bool writing, double deadline) {
    uint8_t *p = data;
    while (bytes > 0) {
        struct pollfd ready = {fd, writing ? POLLOUT : POLLIN, 0};
        int n = poll(&ready, 1, remaining_ms(deadline));
        if (n < 0 && errno == EINTR) continue;
        if (n == 0) return 1;
        if (n < 0) return -1;
        // Never blocking: a peer that stops reading must not hold this rank past the deadline.
        ssize_t done = writing ? send(fd, p, bytes, MSG_NOSIGNAL | MSG_DONTWAIT) : recv(fd, p, bytes, MSG_DONTWAIT);
        if (done < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
        if (done <= 0) return -1;
        p += done;
        bytes -= (size_t)done;
    }
    return 0;
}

// "tcp://HOST:PORT" -> host (brackets of an IPv6 literal removed) and port text.
static void split_tcp(const char *address, char *host, size_t host_size, char *port, size_t port_size) {
    const char *start = address + 6, *colon = strrchr(start, ':');
    int length = (int)(colon - start);
    if (length >= 2 && start[0] == '[' && start[length - 1] == ']') start++, length -= 2;
    snprintf(host, host_size, "%.*s", length, start);
    snprintf(port, port_size, "%s", colon + 1);
}

// Rank 0's listening socket on every interface (IPv6 taking IPv4 too where the system allows).
static int listen_on(const char *port, char *why, size_t why_size) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *list;
    int status = getaddrinfo(NULL, port, &hints, &list);
    if (status != 0) {
        snprintf(why, why_size, "%s", gai_strerror(status));
        return -1;
    }
    int fd = -1;
    snprintf(why, why_size, "no usable address");
    // IPv6 first: one dual-stack socket accepts both families.
    for (int pass = 0; pass < 2 && fd < 0; pass++) {
        for (struct addrinfo *a = list; a && fd < 0; a = a->ai_next) {
            if ((a->ai_family == AF_INET6) != (pass == 0)) continue;
            fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
            if (fd < 0) continue;
            int on = 1, off = 0;
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);  // a restarted run reuses the port at once
            if (a->ai_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
            if (bind(fd, a->ai_addr, a->ai_addrlen) != 0 || listen(fd, 128) != 0) {
                snprintf(why, why_size, "%s", strerror(errno));
                close(fd);
                fd = -1;
            }
        }
    }
    freeaddrinfo(list);
    return fd;
}

// One connection attempt to host:port, given up at the deadline. The socket, or -1 with the
// reason in why.
static int connect_once(const char *host, const char *port, double deadline, char *why, size_t why_size) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *list;
    int status = getaddrinfo(host, port, &hints, &list);
    if (status != 0) {
        snprintf(why, why_size, "%.100s: %s", host, gai_strerror(status));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *a = list; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
        if (fd < 0) continue;
        // Non-blocking, so an unreachable host costs at most the time left, not the kernel's
        // two-minute SYN retry.
        if (connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
            int err = errno;
            if (err == EINPROGRESS) {
                struct pollfd ready = {fd, POLLOUT, 0};
                socklen_t length = sizeof err;
                if (poll(&ready, 1, remaining_ms(deadline)) == 1 &&
                    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &length) == 0 && err == 0)
                    break;
                if (err == EINPROGRESS) err = ETIMEDOUT;
            }
            snprintf(why, why_size, "%s", strerror(err));
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(list);
    return fd;
}

static int tcp_rank0(const RendezvousOptions *o, const char *run_id, uint8_t *answer, size_t answer_bytes,
                     char *configs, double deadline, char *error, size_t error_size) {
    char host[256], port[16], why[256];
    split_tcp(o->address, host, sizeof host, port, sizeof port);
    int listener = listen_on(port, why, sizeof why);
    if (listener < 0) {
        set_error(error, error_size, "rank 0: cannot listen on port %s for %s: %s", port, o->address, why);
        return -1;
    }
    int world = o->world_size, arrived = 1, result = 0;
    int *fds = malloc((size_t)world * sizeof *fds);
    if (!fds) {
        close(listener);
        set_error(error, error_size, "rank 0: out of memory");
        return -1;
    }
    for (int r = 0; r < world; r++) fds[r] = -1;
    uint8_t bytes[HEADER_BYTES];
    Header reply = {.kind = KIND_ANSWER, .world = (uint32_t)world};
    snprintf(reply.run_id, sizeof reply.run_id, "%s", run_id);
    while (arrived < world && result == 0) {
        struct pollfd ready = {listener, POLLIN, 0};
        int n = poll(&ready, 1, remaining_ms(deadline));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            char missing[200] = "";
            int count = 0;
            for (int r = 1; r < world; r++)
                if (fds[r] < 0 && count++ < 8)
                    snprintf(missing + strlen(missing), sizeof missing - strlen(missing), "%s%d", count > 1 ? ", " : "", r);
            set_error(error, error_size, "rank 0: no connection from rank%s %s%s at %s: timed out after %g s",
                      count > 1 ? "s" : "", missing, count > 8 ? ", ..." : "", o->address, o->timeout_seconds);
            result = -1;
            break;
        }
        int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) continue;
        Header hello;
        // A connection that sends no hello of ours (a port scanner, another program) is dropped.
        if (transfer(fd, bytes, HEADER_BYTES, false, deadline) != 0 || decode_header(bytes, &hello) != 0 ||
            hello.kind != KIND_HELLO) {
            close(fd);
            continue;
        }
        reply.status = STATUS_OK;
        if (strcmp(hello.run_id, run_id) != 0) {
            // A rank of another run (an earlier job's rank still retrying): tell it, keep waiting.
            reply.status = STATUS_OTHER_RUN;
            snprintf(reply.text, sizeof reply.text, "rank %u: rank 0 at %s belongs to another run (run id '%s'; yours '%s')",
                     hello.rank, o->address, run_id, hello.run_id);
        } else if (hello.world != (uint32_t)world || hello.rank == 0 || hello.rank >= (uint32_t)world ||
                   fds[hello.rank] >= 0) {
            reply.status = STATUS_FAILED;
            if (hello.world != (uint32_t)world)
                snprintf(reply.text, sizeof reply.text, "rank %u says the run has %u ranks, rank 0 says %d (at %s)",
                         hello.rank, hello.world, world, o->address);
            else
                snprintf(reply.text, sizeof reply.text, "two processes say they are rank %u (at %s)", hello.rank,
                         o->address);
            set_error(error, error_size, "rank 0: %s", reply.text);
            result = -1;
        }
        if (reply.status != STATUS_OK) {
            encode_header(bytes, &reply);
            transfer(fd, bytes, HEADER_BYTES, true, now_seconds() + 1);
            close(fd);
            continue;
        }
        memcpy(configs + (size_t)hello.rank * TEXT_BYTES, hello.text, TEXT_BYTES);
        fds[hello.rank] = fd;
        arrived++;
    }
    close(listener);
    uint8_t *message = answer;
    size_t message_bytes = answer_bytes;
    uint8_t failed[HEADER_BYTES];
    if (result == 0) {  // the answer's tail: every rank's configuration, now known
        memcpy(message + answer_bytes - (size_t)world * TEXT_BYTES, configs, (size_t)world * TEXT_BYTES);
    } else {  // the ranks that did arrive learn why rank 0 stops, rather than waiting out their timeout
        reply.status = STATUS_FAILED;
        snprintf(reply.text, sizeof reply.text, "%s", strncmp(error, "rank 0: ", 8) == 0 ? error + 8 : error);
        encode_header(failed, &reply);
        message = failed;
        message_bytes = HEADER_BYTES;
    }
    for (int r = 1; r < world; r++) {
        if (fds[r] < 0) continue;
        if (transfer(fds[r], message, message_bytes, true, deadline) != 0 && result == 0) {
            set_error(error, error_size, "rank 0: could not send the answer to rank %d at %s: %s", r, o->address,
                      remaining_ms(deadline) ? "connection lost" : "timed out");
            result = -1;
        }
        close(fds[r]);
    }
    free(fds);
    return result;
}

static int tcp_other_rank(const RendezvousOptions *o, const uint8_t *hello, uint8_t *answer, size_t answer_bytes,
                          double deadline, char *error, size_t error_size) {
    char host[256], port[16], why[256] = "no attempt";
    split_tcp(o->address, host, sizeof host, port, sizeof port);
    int fd = -1;
    while (fd < 0) {
        fd = connect_once(host, port, deadline, why, sizeof why);
        if (fd >= 0) break;
        if (!remaining_ms(deadline)) {
            set_error(error, error_size, "rank %d: no connection to rank 0 at %s: timed out after %g s (%s)", o->rank,
                      o->address, o->timeout_seconds, why);
            return -1;
        }
        pause_ms(POLL_MS * 2);  // rank 0 may not listen yet
    }
    int status = transfer(fd, (void *)hello, HEADER_BYTES, true, deadline);
    double answer_deadline = deadline + ANSWER_GRACE_SECONDS;
    if (status == 0) status = transfer(fd, answer, HEADER_BYTES, false, answer_deadline);
    Header header;
    if (status == 0 && decode_header(answer, &header) != 0) status = -1;
    if (status == 0 && header.status == STATUS_OK)
        status = transfer(fd, answer + HEADER_BYTES, answer_bytes - HEADER_BYTES, false, answer_deadline);
    close(fd);
    if (status == 1) {
        set_error(error, error_size, "rank %d: no answer from rank 0 at %s: timed out after %g s (rank 0 answers once every rank has connected)",
                  o->rank, o->address, o->timeout_seconds);
        return -1;
    }
    if (status != 0) {
        set_error(error, error_size, "rank %d: the connection to rank 0 at %s broke during the rendezvous", o->rank, o->address);
        return -1;
    }
    return 0;
}

// ---------------------------------------------------------------- shared file

// Writes bytes to path through a temporary name and a rename, so readers see all of it or nothing.
static int write_whole(const char *path, const uint8_t *bytes, size_t size, char *why, size_t why_size) {
    char temporary[4200];
    snprintf(temporary, sizeof temporary, "%s.tmp.%ld", path, (long)getpid());
    FILE *file = fopen(temporary, "wb");
    bool ok = file && fwrite(bytes, 1, size, file) == size;
    if (file && fflush(file) != 0) ok = false;
    if (file && fsync(fileno(file)) != 0) ok = false;
    if (file && fclose(file) != 0) ok = false;
    if (ok && rename(temporary, path) == 0) return 0;
    snprintf(why, why_size, "%s", strerror(errno));
    if (file) unlink(temporary);
    return -1;
}

// The whole file if it exists and is exactly `size` bytes or at least a header (an answer that
// reports a failure is a header alone). 0 when read, -1 when absent or shorter.
static int read_whole(const char *path, uint8_t *bytes, size_t size, size_t *got) {
    FILE *file = fopen(path, "rb");
    if (!file) return -1;
    *got = fread(bytes, 1, size, file);
    fclose(file);
    return *got >= HEADER_BYTES ? 0 : -1;
}

static void rank_file(char *out, size_t size, const char *path, int rank) { snprintf(out, size, "%s.rank%d", path, rank); }

static int file_rank0(const RendezvousOptions *o, const char *run_id, uint8_t *answer, size_t answer_bytes,
                      char *configs, double deadline, char *error, size_t error_size) {
    const char *path = o->address + 7;
    int world = o->world_size, arrived = 1;
    bool *seen = calloc((size_t)world, 1);
    if (!seen) {
        set_error(error, error_size, "rank 0: out of memory");
        return -1;
    }
    char name[4200], why[256];
    uint8_t bytes[HEADER_BYTES + 1];
    while (arrived < world) {
        for (int r = 1; r < world; r++) {
            if (seen[r]) continue;
            rank_file(name, sizeof name, path, r);
            size_t got;
            Header hello;
            if (read_whole(name, bytes, sizeof bytes, &got) != 0 || decode_header(bytes, &hello) != 0 ||
                hello.kind != KIND_HELLO || strcmp(hello.run_id, run_id) != 0)
                continue;  // absent, or left by another run: this run's rank r replaces it
            if (hello.world != (uint32_t)world || hello.rank != (uint32_t)r) {
                set_error(error, error_size, "rank 0: %s says rank %u of %u ranks, rank 0 expects rank %d of %d", name,
                          hello.rank, hello.world, r, world);
                free(seen);
                return -1;
            }
            memcpy(configs + (size_t)r * TEXT_BYTES, hello.text, TEXT_BYTES);
            seen[r] = true;
            arrived++;
        }
        if (arrived == world) break;
        if (!remaining_ms(deadline)) {
            int first = 1;
            while (seen[first]) first++;
            rank_file(name, sizeof name, path, first);
            set_error(error, error_size, "rank 0: no hello from rank %d at %s (%s): timed out after %g s%s", first,
                      o->address, name, o->timeout_seconds, world - arrived > 1 ? " (and other ranks)" : "");
            // The ranks that did come learn why, rather than only that rank 0 did not answer.
            Header failed = {.kind = KIND_ANSWER, .world = (uint32_t)world, .status = STATUS_FAILED};
            snprintf(failed.run_id, sizeof failed.run_id, "%s", run_id);
            snprintf(failed.text, sizeof failed.text, "%s", error + 8);
            uint8_t failed_bytes[HEADER_BYTES];
            encode_header(failed_bytes, &failed);
            write_whole(path, failed_bytes, HEADER_BYTES, why, sizeof why);
            free(seen);
            return -1;
        }
        pause_ms(POLL_MS);
    }
    free(seen);
    memcpy(answer + answer_bytes - (size_t)world * TEXT_BYTES, configs, (size_t)world * TEXT_BYTES);
    if (write_whole(path, answer, answer_bytes, why, sizeof why) != 0) {
        set_error(error, error_size, "rank 0: cannot write the rendezvous file %s: %s", path, why);
        return -1;
    }
    for (int r = 1; r < world; r++) {  // read: not needed again, and not to be mistaken for a later run's
        rank_file(name, sizeof name, path, r);
        unlink(name);
    }
    return 0;
}

static int file_other_rank(const RendezvousOptions *o, const char *run_id, const uint8_t *hello, uint8_t *answer,
                           size_t answer_bytes, double deadline, char *error, size_t error_size) {
    const char *path = o->address + 7;
    char name[4200], why[256];
    rank_file(name, sizeof name, path, o->rank);
    if (write_whole(name, hello, HEADER_BYTES, why, sizeof why) != 0) {
        set_error(error, error_size, "rank %d: cannot write the rendezvous file %s: %s", o->rank, name, why);
        return -1;
    }
    for (;;) {
        size_t got;
        Header header;
        if (read_whole(path, answer, answer_bytes, &got) == 0 && decode_header(answer, &header) == 0 &&
            header.kind == KIND_ANSWER && strcmp(header.run_id, run_id) == 0) {
            if (header.status != STATUS_OK || got == answer_bytes) return 0;
            set_error(error, error_size, "rank %d: %s holds %zu bytes, expected %zu (another blob size or world size)",
                      o->rank, path, got, answer_bytes);
            return -1;
        }
        if (!remaining_ms(deadline + ANSWER_GRACE_SECONDS)) {
            set_error(error, error_size, "rank %d: no answer from rank 0 at %s: timed out after %g s%s", o->rank,
                      o->address, o->timeout_seconds,
                      access(path, F_OK) == 0 ? " (the file there is from another run)" : "");
            return -1;
        }
        pause_ms(POLL_MS);
    }
}

// ---------------------------------------------------------------- the exchange

int rendezvous_exchange(const RendezvousOptions *o, uint8_t *blob, size_t blob_bytes, const char *config, char *error,
                        size_t error_size) {
    double deadline = now_seconds() + o->timeout_seconds;
    if (rendezvous_check_address(o->address, error, error_size) != 0) return -1;
    if (o->world_size < 1 || o->world_size > MAX_WORLD || o->rank < 0 || o->rank >= o->world_size) {
        set_error(error, error_size, "rendezvous at %s: rank %d of %d ranks (at most %d)", o->address, o->rank,
                  o->world_size, MAX_WORLD);
        return -1;
    }
    if (blob_bytes > RENDEZVOUS_MAX_BLOB || strlen(config) >= TEXT_BYTES) {
        set_error(error, error_size, "rendezvous: a blob of %zu bytes (at most %d) or a configuration of %zu characters (at most %d)",
                  blob_bytes, RENDEZVOUS_MAX_BLOB, strlen(config), TEXT_BYTES - 1);
        return -1;
    }
    char run_id[RENDEZVOUS_RUN_ID_BYTES];
    if (rendezvous_run_id(o, run_id, sizeof run_id, error, error_size) != 0) return -1;
    bool file = strncmp(o->address, "file://", 7) == 0;
    if (file && !*run_id) {
        set_error(error, error_size,
                  "%s: a file rendezvous needs a run id, to tell this run's files from an earlier run's: give "
                  "--dist-run-id (the same on every rank) or run under Slurm (SLURM_JOB_ID)",
                  o->address);
        return -1;
    }
    int world = o->world_size;
    size_t answer_bytes = HEADER_BYTES + answer_body_bytes(blob_bytes, world);
    uint8_t *answer = calloc(answer_bytes, 1);
    char *configs = calloc((size_t)world, TEXT_BYTES);
    if (!answer || !configs) {
        free(answer);
        free(configs);
        set_error(error, error_size, "rank %d: out of memory for the rendezvous of %d ranks", o->rank, world);
        return -1;
    }
    Header header = {.rank = (uint32_t)o->rank, .world = (uint32_t)world};
    snprintf(header.run_id, sizeof header.run_id, "%s", run_id);
    int result;
    if (o->rank == 0) {
        snprintf(configs, TEXT_BYTES, "%s", config);
        header.kind = KIND_ANSWER;
        encode_header(answer, &header);
        put_u32(answer + HEADER_BYTES, (uint32_t)blob_bytes);
        memcpy(answer + HEADER_BYTES + 4, blob, blob_bytes);
        result = world == 1 ? 0
                 : file     ? file_rank0(o, run_id, answer, answer_bytes, configs, deadline, error, error_size)
                            : tcp_rank0(o, run_id, answer, answer_bytes, configs, deadline, error, error_size);
    } else {
        uint8_t hello[HEADER_BYTES];
        header.kind = KIND_HELLO;
        snprintf(header.text, sizeof header.text, "%s", config);
        encode_header(hello, &header);
        result = file ? file_other_rank(o, run_id, hello, answer, answer_bytes, deadline, error, error_size)
                      : tcp_other_rank(o, hello, answer, answer_bytes, deadline, error, error_size);
        Header reply;
        if (result == 0 && (decode_header(answer, &reply) != 0 || reply.kind != KIND_ANSWER)) {
            set_error(error, error_size, "rank %d: the answer at %s is not a rendezvous message of this version", o->rank,
                      o->address);
            result = -1;
        }
        if (result == 0 && reply.status != STATUS_OK) {
            // Rank 0's reason (another run, a duplicate rank, a world size that differs).
            if (reply.status == STATUS_FAILED)
                set_error(error, error_size, "rank %d: rank 0 stopped the rendezvous: %s", o->rank, reply.text);
            else
                set_error(error, error_size, "%s", reply.text);
            result = -1;
        }
        if (result == 0 && get_u32(answer + HEADER_BYTES) != (uint32_t)blob_bytes) {
            set_error(error, error_size, "rank %d: rank 0 sent %u bytes of id, this rank expects %zu (another program?)",
                      o->rank, get_u32(answer + HEADER_BYTES), blob_bytes);
            result = -1;
        }
        if (result == 0) {
            memcpy(blob, answer + HEADER_BYTES + 4, blob_bytes);
            memcpy(configs, answer + answer_bytes - (size_t)world * TEXT_BYTES, (size_t)world * TEXT_BYTES);
            for (int r = 0; r < world; r++) configs[(size_t)r * TEXT_BYTES + TEXT_BYTES - 1] = '\0';
        }
    }
    if (result == 0) result = compare_configs(configs, world, error, error_size);
    free(answer);
    free(configs);
    return result;
}
