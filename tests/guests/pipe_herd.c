/* Several processes reading, or writing, one pipe at once (tests/integration/
 * test_pipe_herd.py). Under cove's concurrent loop each of their calls may run
 * natively in the host while the North goes on: a blocking read or write must
 * still never fail with EAGAIN, be short, or lose a byte. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <x86intrin.h>

/* Readers race: NR readers (separate processes) do blocking 1-byte reads of one pipe;
   the parent writes bytes one by one. A blocking read must never fail with EAGAIN. */
static int readers(int rounds, int nr) {
    int p[2]; if (pipe(p)) return 2;
    for (int i = 0; i < nr; i++) {
        if (fork() == 0) {
            close(p[1]);
            char c; int bad = 0;
            for (;;) {
                ssize_t n = read(p[0], &c, 1);
                if (n == 0) break;
                if (n < 0) { if (errno == EINTR) continue; bad++; if (bad < 3) fprintf(stderr, "reader %d: read: %s\n", i, strerror(errno)); if (bad > 1000) break; }
            }
            _exit(bad ? 1 : 0);
        }
    }
    close(p[0]);
    for (int k = 0; k < rounds; k++) {
        if (write(p[1], "x", 1) != 1) { perror("write"); }
        if (k % 4 == 0) usleep(50);
    }
    close(p[1]);
    int fails = 0, st;
    while (wait(&st) > 0) if (!WIFEXITED(st) || WEXITSTATUS(st)) fails++;
    return fails;
}

/* Writers race: NW writers (separate processes) do blocking 4096-byte writes; one reader
   drains slowly. A blocking write must never be short or fail with EAGAIN. */
static int writers(int rounds, int nw, size_t sz) {
    int p[2]; if (pipe(p)) return 2;
    for (int i = 0; i < nw; i++) {
        if (fork() == 0) {
            close(p[0]);
            char *buf = malloc(sz); memset(buf, 'a' + i, sz); int bad = 0;
            for (int k = 0; k < rounds; k++) {
                ssize_t n = write(p[1], buf, sz);
                if (n != (ssize_t)sz) { bad++; if (bad < 3) fprintf(stderr, "writer %d: write %zd: %s\n", i, n, n < 0 ? strerror(errno) : "short"); }
            }
            _exit(bad ? 1 : 0);
        }
    }
    close(p[1]);
    char *buf = malloc(1 << 16); size_t total = 0; ssize_t n;
    while ((n = read(p[0], buf, 1 << 16)) != 0) { if (n < 0) { if (errno == EINTR) continue; perror("read"); break; } total += n; }
    int fails = 0, st;
    while (wait(&st) > 0) if (!WIFEXITED(st) || WEXITSTATUS(st)) fails++;
    if (total != (size_t)rounds * nw * sz) { fprintf(stderr, "total %zu\n", total); fails++; }
    return fails;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* One reader takes a byte and then computes for seconds without a syscall;
   another reader of the same pipe must get the next byte at once, not when
   the first one next calls the kernel. Prints the second read's latency. */
static double spinner(void) {
    int p[2]; if (pipe(p)) return -1;
    if (write(p[1], "ab", 2) != 2) return -1;
    pid_t a = fork();
    if (a == 0) {
        char c;
        if (read(p[0], &c, 1) != 1) _exit(1);
        unsigned long long end = __rdtsc() + 6000000000ULL;  /* ~2-3 s, no syscall */
        while (__rdtsc() < end) {
        }
        _exit(0);
    }
    usleep(200000);  /* the child has read and spins */
    char c;
    double t = now();
    ssize_t n = read(p[0], &c, 1);
    double dt = now() - t;
    waitpid(a, NULL, 0);
    return n == 1 ? dt : -1;
}

/* A reader takes a byte and spins until it is killed: the next reader must
   still get the next byte (a held native read is released with its thread). */
static int killed_holder(void) {
    int p[2]; if (pipe(p)) return 2;
    if (write(p[1], "ab", 2) != 2) return 2;
    pid_t a = fork();
    if (a == 0) {
        char c;
        if (read(p[0], &c, 1) != 1) _exit(1);
        for (;;) (void)__rdtsc();
    }
    usleep(200000);
    kill(a, SIGKILL);
    waitpid(a, NULL, 0);
    alarm(10);
    char c;
    ssize_t n = read(p[0], &c, 1);
    alarm(0);
    return n == 1 && c == 'b' ? 0 : 1;
}

/* Three readers drain, a byte at a time, a pipe its writer filled and closed:
   none may see EOF while bytes are left (rounds where one did). */
static int early_eofs(int rounds) {
    int early = 0;
    for (int round = 0; round < rounds; round++) {
        int p[2], q[2]; if (pipe(p) || pipe(q)) return -1;
        char buf[4000]; memset(buf, 'x', sizeof buf);
        if (write(p[1], buf, sizeof buf) != (ssize_t)sizeof buf) return -1;
        close(p[1]);
        for (int k = 0; k < 3; k++) if (fork() == 0) {
            close(q[0]); int n = 0, left = 0; char c;
            while (read(p[0], &c, 1) == 1) n++;
            ioctl(p[0], FIONREAD, &left);
            if (left > 0) n += 1000000;
            if (write(q[1], &n, sizeof n) != sizeof n) _exit(1);
            _exit(0);
        }
        close(q[1]); close(p[0]);
        int total = 0, n;
        while (read(q[0], &n, sizeof n) == sizeof n) total += n;
        close(q[0]);
        while (wait(NULL) > 0) {
        }
        if (total != 4000) early++;
    }
    return early;
}

int main(int argc, char **argv) {
    double s = spinner();
    printf("spinner: %s\n", s >= 0 && s < 1.0 ? "fast" : "slow");
    int kh = killed_holder();
    printf("killed holder: %d failed\n", kh);
    int e = early_eofs(30);
    printf("early EOF: %d rounds\n", e);
    int r = readers(20000, 3);
    printf("readers: %d failed\n", r);
    int w = writers(3000, 3, 4096);
    printf("writers4k: %d failed\n", w);
    int w2 = writers(500, 2, 65536);
    printf("writers64k: %d failed\n", w2);
    fflush(stdout);
    return (r || w || w2 || kh || e || !(s >= 0 && s < 1.0)) ? 1 : 0;
}
