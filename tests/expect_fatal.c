#include "tests/expect_fatal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

bool expect_fatal(FatalBody body, void *context, const char *expected) {
    int pipe_fds[2];
    if (pipe(pipe_fds) != 0) return false;
    fflush(stdout);
    fflush(stderr);
    pid_t child = fork();
    if (child < 0) return false;
    if (child == 0) {
        close(pipe_fds[0]);
        dup2(pipe_fds[1], 2);
        body(context);
        _exit(0);  // reaching here means no error was raised
    }
    close(pipe_fds[1]);
    char message[4096];
    size_t used = 0;
    ssize_t got;
    while (used < sizeof message - 1 && (got = read(pipe_fds[0], message + used, sizeof message - 1 - used)) > 0) used += (size_t)got;
    message[used] = 0;
    close(pipe_fds[0]);
    int status;
    waitpid(child, &status, 0);
    int lines = 0;
    for (size_t i = 0; i < used; i++) lines += message[i] == '\n';
    bool ok = WIFEXITED(status) && WEXITSTATUS(status) != 0 && lines == 1 && strstr(message, expected) != NULL;
    if (!ok)
        printf("  expected one error line containing \"%s\"; child %s %d, stderr: %s\n", expected,
               WIFEXITED(status) ? "exited" : "killed by signal", WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status),
               used ? message : "(nothing)\n");
    return ok;
}
