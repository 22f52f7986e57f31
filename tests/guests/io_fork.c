/* Pipes and FIFOs between processes: EOF, blocking, SIGPIPE's default action,
 * FIFO opens that wait for a partner. Prints "ok" and exits 0. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "FAIL %s:%d: %s (errno %d)\n", \
    __FILE__, __LINE__, #c, errno); exit(1); } } while (0)

static int wait_status(pid_t pid) {
    int st;
    CHECK(waitpid(pid, &st, 0) == pid);
    return st;
}

static void test_stream_to_eof(void) {
    int p[2];
    CHECK(pipe(p) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        static char buf[200000];
        close(p[0]);
        memset(buf, 'z', sizeof buf);
        size_t done = 0;
        while (done < sizeof buf) {
            ssize_t n = write(p[1], buf + done, sizeof buf - done);
            if (n <= 0) _exit(2);
            done += n;
        }
        _exit(0);
    }
    close(p[1]);
    char buf[4096];
    size_t total = 0;
    ssize_t n;
    while ((n = read(p[0], buf, sizeof buf)) > 0) {
        for (ssize_t i = 0; i < n; i++) CHECK(buf[i] == 'z');
        total += n;
    }
    CHECK(n == 0 && total == 200000);
    int st = wait_status(pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    close(p[0]);
}

static void test_child_blocks_until_parent_writes(void) {
    int p[2];
    CHECK(pipe(p) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        char c;
        close(p[1]);
        struct pollfd pf = {.fd = p[0], .events = POLLIN};
        if (poll(&pf, 1, 5000) != 1) _exit(3);
        _exit(read(p[0], &c, 1) == 1 && c == '!' ? 0 : 4);
    }
    close(p[0]);
    usleep(30000);
    CHECK(write(p[1], "!", 1) == 1);
    int st = wait_status(pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    close(p[1]);
}

static void test_sigpipe_kills_by_default(void) {
    int p[2];
    CHECK(pipe(p) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGPIPE, SIG_DFL);
        close(p[0]);
        write(p[1], "x", 1);
        _exit(5);  /* not reached */
    }
    close(p[0]);
    close(p[1]);
    int st = wait_status(pid);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGPIPE);
}

static void test_fifo_rendezvous(void) {
    const char *path = "/tmp/cove-fifo2";
    unlink(path);
    CHECK(mkfifo(path, 0600) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        char buf[8];
        int r = open(path, O_RDONLY);  /* waits for the writer */
        if (r < 0) _exit(6);
        if (read(r, buf, sizeof buf) != 2 || memcmp(buf, "hi", 2)) _exit(7);
        _exit(read(r, buf, sizeof buf) == 0 ? 0 : 8);  /* writer gone: EOF */
    }
    usleep(30000);
    int w = open(path, O_WRONLY);  /* the reader is waiting: no wait here */
    CHECK(w >= 0);
    CHECK(write(w, "hi", 2) == 2);
    close(w);
    int st = wait_status(pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);

    /* And the other way round: a writer waits for a reader. */
    pid = fork();
    if (pid == 0) {
        int w2 = open(path, O_WRONLY);
        if (w2 < 0) _exit(9);
        _exit(write(w2, "yo", 2) == 2 ? 0 : 10);
    }
    usleep(30000);
    int r = open(path, O_RDONLY);
    CHECK(r >= 0);
    char buf[4];
    CHECK(read(r, buf, 2) == 2 && memcmp(buf, "yo", 2) == 0);
    st = wait_status(pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    close(r);
    unlink(path);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    test_stream_to_eof();
    test_child_blocks_until_parent_writes();
    test_sigpipe_kills_by_default();
    test_fifo_rendezvous();
    printf("ok\n");
    return 0;
}
