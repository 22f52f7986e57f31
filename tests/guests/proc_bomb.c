/* Fork bombs with a bound: a binary tree of processes (every one waits for
 * its children), and forking until RLIMIT_NPROC says EAGAIN (as uid 1000:
 * root is exempt). Prints "ok N" with the number of processes created. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "FAIL %s:%d: %s (errno %d)\n", \
    __FILE__, __LINE__, #c, errno); exit(1); } } while (0)

/* Returns the number of processes in the subtree (exit codes carry it up). */
static int tree(int depth) {
    if (depth == 0) return 1;
    pid_t kids[2];
    for (int i = 0; i < 2; i++) {
        kids[i] = fork();
        CHECK(kids[i] >= 0);
        if (kids[i] == 0) _exit(tree(depth - 1));
    }
    int total = 1;
    for (int i = 0; i < 2; i++) {
        int st;
        CHECK(waitpid(kids[i], &st, 0) == kids[i] && WIFEXITED(st));
        total += WEXITSTATUS(st);
    }
    return total;
}

static int until_eagain(int limit) {
    struct rlimit rl = {limit, limit};
    CHECK(setrlimit(RLIMIT_NPROC, &rl) == 0);
    int fds[2];
    CHECK(pipe(fds) == 0);
    int n = 0;
    for (;;) {
        pid_t p = fork();
        if (p == 0) {
            char c;
            close(fds[1]);
            (void)!read(fds[0], &c, 1);  /* live until the parent closes the pipe */
            _exit(0);
        }
        if (p < 0) {
            CHECK(errno == EAGAIN);
            break;
        }
        n++;
        CHECK(n <= limit);
    }
    close(fds[1]);
    for (int i = 0; i < n; i++) CHECK(wait(NULL) > 0);
    CHECK(wait(NULL) == -1 && errno == ECHILD);
    return n;
}

int main(int argc, char **argv) {
    if (argc > 2 && argv[1][0] == 't') {
        int depth = atoi(argv[2]);  /* 2^(depth+1) - 1 processes */
        int n = tree(depth);
        CHECK(n == (1 << (depth + 1)) - 1);
        printf("ok %d\n", n);
        return 0;
    }
    if (argc > 2 && argv[1][0] == 'l') {
        if (getuid() == 0) CHECK(setgid(1000) == 0 && setuid(1000) == 0);  /* root is exempt */
        int limit = atoi(argv[2]);
        int n = until_eagain(limit);
        CHECK(n == limit - 1);  /* the caller counts against its user's limit too */
        printf("ok %d\n", n);
        return 0;
    }
    return 2;
}
