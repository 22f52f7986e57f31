/* Anonymous pipes as Linux has them, in the situations the userland
 * platform's native pipe path (fastpath.py, cove.kernel.hostpipe) must get
 * right: partial reads, EOF, EPIPE/SIGPIPE, O_NONBLOCK, readiness, fds that
 * change meaning (dup2, close and reuse, fork), many fds, threads and a big
 * checksummed transfer. Every check is an assertion here; prints "ok". */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "FAIL %s:%d: %s (errno %d)\n", \
    __FILE__, __LINE__, #c, errno); exit(1); } } while (0)

static volatile sig_atomic_t sigpipes;
static void on_sigpipe(int s) { (void)s; sigpipes++; }

static int nread(int fd) {
    int n = -1;
    CHECK(ioctl(fd, FIONREAD, &n) == 0);
    return n;
}

static void partial_reads(void) {
    int p[2];
    char buf[100];
    CHECK(pipe(p) == 0);
    CHECK(write(p[1], "0123456789", 10) == 10);
    CHECK(nread(p[0]) == 10);
    CHECK(read(p[0], buf, 4) == 4 && memcmp(buf, "0123", 4) == 0);
    CHECK(nread(p[0]) == 6);
    CHECK(read(p[0], buf, sizeof buf) == 6 && memcmp(buf, "456789", 6) == 0);
    CHECK(fcntl(p[0], F_SETFL, O_NONBLOCK) == 0);
    CHECK(read(p[0], buf, sizeof buf) == -1 && errno == EAGAIN);
    CHECK(read(p[0], buf, 0) == 0);
    /* Vectored, both ways. */
    struct iovec w[3] = {{"ab", 2}, {"", 0}, {"cdefg", 5}};
    CHECK(writev(p[1], w, 3) == 7);
    char x[3], y[10];
    struct iovec r[2] = {{x, 3}, {y, sizeof y}};
    CHECK(readv(p[0], r, 2) == 7 && memcmp(x, "abc", 3) == 0 && memcmp(y, "defg", 4) == 0);
    close(p[0]);
    close(p[1]);
}

static void eof_after_last_writer(void) {
    int p[2];
    char buf[16];
    CHECK(pipe(p) == 0);
    int w2 = dup(p[1]);
    CHECK(write(p[1], "abc", 3) == 3);
    close(p[1]);
    CHECK(read(p[0], buf, sizeof buf) == 3);
    CHECK(fcntl(p[0], F_SETFL, O_NONBLOCK) == 0);
    CHECK(read(p[0], buf, sizeof buf) == -1 && errno == EAGAIN); /* a writer is left */
    CHECK(write(w2, "d", 1) == 1);
    close(w2);
    CHECK(read(p[0], buf, sizeof buf) == 1 && buf[0] == 'd'); /* data first, then EOF */
    CHECK(read(p[0], buf, sizeof buf) == 0);
    CHECK(fcntl(p[0], F_SETFL, 0) == 0);
    CHECK(read(p[0], buf, sizeof buf) == 0); /* a blocking read does not block either */
    close(p[0]);

    /* The last writer is a child that exits while the parent sleeps in read. */
    CHECK(pipe(p) == 0);
    pid_t c = fork();
    if (c == 0) {
        close(p[0]);
        usleep(30000);
        _exit(write(p[1], "late", 4) == 4 ? 0 : 1);
    }
    close(p[1]);
    CHECK(read(p[0], buf, sizeof buf) == 4 && memcmp(buf, "late", 4) == 0);
    CHECK(read(p[0], buf, sizeof buf) == 0);
    int st;
    CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    close(p[0]);
}

static void epipe_sigpipe(void) {
    int p[2];
    static char big[65536];
    struct sigaction sa = {0};
    sa.sa_handler = on_sigpipe;
    CHECK(sigaction(SIGPIPE, &sa, NULL) == 0);
    CHECK(pipe(p) == 0);
    CHECK(write(p[1], "x", 1) == 1);
    close(p[0]);
    sigpipes = 0;
    CHECK(write(p[1], "x", 1) == -1 && errno == EPIPE);
    CHECK(sigpipes == 1);
    CHECK(write(p[1], big, sizeof big) == -1 && errno == EPIPE);
    CHECK(sigpipes == 2);
    struct iovec v = {big, 10};
    CHECK(writev(p[1], &v, 1) == -1 && errno == EPIPE);
    CHECK(sigpipes == 3);
    signal(SIGPIPE, SIG_IGN);
    CHECK(write(p[1], "x", 1) == -1 && errno == EPIPE);
    CHECK(sigpipes == 3);
    signal(SIGPIPE, SIG_DFL);
    close(p[1]);
}

static void nonblock_eagain(void) {
    int p[2];
    static char buf[65536];
    CHECK(pipe2(p, O_NONBLOCK) == 0);
    CHECK(fcntl(p[0], F_GETPIPE_SZ) == 65536);
    for (int i = 0; i < 16; i++) CHECK(write(p[1], buf, 4096) == 4096);
    CHECK(nread(p[0]) == 65536);
    CHECK(write(p[1], "x", 1) == -1 && errno == EAGAIN);
    CHECK(write(p[1], buf, 4096) == -1 && errno == EAGAIN);
    CHECK(read(p[0], buf, 4096) == 4096);
    CHECK(write(p[1], buf, 4096) == 4096);
    CHECK(read(p[0], buf, sizeof buf) == 65536);
    CHECK(read(p[0], buf, 1) == -1 && errno == EAGAIN);
    /* A smaller pipe, and one too full to shrink. */
    CHECK(fcntl(p[1], F_SETPIPE_SZ, 4096) == 4096 && fcntl(p[0], F_GETPIPE_SZ) == 4096);
    CHECK(write(p[1], buf, 4096) == 4096);
    CHECK(write(p[1], "x", 1) == -1 && errno == EAGAIN);
    CHECK(read(p[0], buf, 4096) == 4096);
    CHECK(fcntl(p[1], F_SETPIPE_SZ, 65536) == 65536);
    CHECK(write(p[1], buf, 8192) == 8192);
    CHECK(fcntl(p[1], F_SETPIPE_SZ, 4096) == -1 && errno == EBUSY);
    close(p[0]);
    close(p[1]);
}

static void readiness(void) {
    int p[2];
    char buf[8];
    CHECK(pipe(p) == 0);
    struct pollfd pf[2] = {{.fd = p[0], .events = POLLIN}, {.fd = p[1], .events = POLLOUT}};
    CHECK(poll(pf, 2, 0) == 1 && pf[0].revents == 0 && pf[1].revents == POLLOUT);
    CHECK(write(p[1], "r", 1) == 1);
    CHECK(poll(pf, 2, 0) == 2 && pf[0].revents == POLLIN && pf[1].revents == POLLOUT);
    CHECK(read(p[0], buf, 8) == 1);
    CHECK(poll(pf, 1, 0) == 0);

    /* Edge-triggered: each write is a new edge, a re-wait without one is not. */
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.fd = p[0]}, out;
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev) == 0);
    CHECK(epoll_wait(ep, &out, 1, 0) == 0);
    CHECK(write(p[1], "a", 1) == 1);
    CHECK(epoll_wait(ep, &out, 1, 0) == 1 && out.data.fd == p[0]);
    CHECK(epoll_wait(ep, &out, 1, 0) == 0);
    CHECK(write(p[1], "b", 1) == 1);
    CHECK(epoll_wait(ep, &out, 1, 0) == 1);
    CHECK(read(p[0], buf, 8) == 2);
    close(ep);

    close(p[1]);
    CHECK(poll(pf, 1, 0) == 1 && (pf[0].revents & POLLHUP));
    CHECK(pipe(p) == 0);
    close(p[0]);
    pf[1].fd = p[1];
    CHECK(poll(&pf[1], 1, 0) == 1 && (pf[1].revents & POLLERR));
    close(p[1]);
}

static void dup2_over_a_pipe(void) {
    int a[2], b[2];
    char buf[8];
    CHECK(pipe(a) == 0 && pipe(b) == 0);
    CHECK(write(a[1], "aaaa", 4) == 4 && write(b[1], "bbbb", 4) == 4);
    CHECK(read(a[0], buf, 2) == 2 && memcmp(buf, "aa", 2) == 0);
    CHECK(dup2(b[0], a[0]) == a[0]); /* the number now names b's read end */
    CHECK(read(a[0], buf, 2) == 2 && memcmp(buf, "bb", 2) == 0);
    CHECK(read(b[0], buf, 8) == 2 && memcmp(buf, "bb", 2) == 0);
    /* The write side too: a[1]'s number becomes b's write end. */
    CHECK(dup2(b[1], a[1]) == a[1]);
    CHECK(write(a[1], "cc", 2) == 2);
    CHECK(read(b[0], buf, 8) == 2 && memcmp(buf, "cc", 2) == 0);
    close(a[0]);
    close(a[1]);
    close(b[0]);
    close(b[1]);
}

static void fork_uses_both_ends(void) {
    int p[2];
    char buf[8];
    CHECK(pipe(p) == 0);
    CHECK(write(p[1], "pa", 2) == 2);
    CHECK(read(p[0], buf, 2) == 2); /* used in the parent first */
    pid_t c = fork();
    if (c == 0) {
        if (write(p[1], "ping", 4) != 4) _exit(2);
        if (read(p[0], buf, 4) != 4 || memcmp(buf, "ping", 4)) _exit(3);
        if (write(p[1], "pong", 4) != 4) _exit(4);
        _exit(0);
    }
    int st;
    CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK(read(p[0], buf, 8) == 4 && memcmp(buf, "pong", 4) == 0);
    close(p[0]);
    close(p[1]);
}

static void number_reused_for_a_file(void) {
    int p[2];
    char buf[16];
    int f = open("/tmp/cove-pipe-native", O_RDWR | O_CREAT | O_TRUNC, 0600);
    CHECK(f >= 0 && write(f, "file-data", 9) == 9);
    close(f);
    CHECK(pipe(p) == 0);
    CHECK(write(p[1], "pipe-data", 9) == 9);
    CHECK(read(p[0], buf, 4) == 4 && memcmp(buf, "pipe", 4) == 0);
    int num = p[0];
    close(p[0]);
    f = open("/tmp/cove-pipe-native", O_RDONLY);
    CHECK(f == num); /* the lowest free number: the pipe's */
    CHECK(read(f, buf, sizeof buf) == 9 && memcmp(buf, "file-data", 9) == 0);
    CHECK(read(f, buf, sizeof buf) == 0);
    /* ... and the write end's number as a file opened for writing. */
    num = p[1];
    close(p[1]);
    int g = open("/tmp/cove-pipe-native", O_WRONLY | O_TRUNC);
    CHECK(g == num);
    CHECK(write(g, "over", 4) == 4);
    close(g);
    close(f);
    f = open("/tmp/cove-pipe-native", O_RDONLY);
    CHECK(read(f, buf, sizeof buf) == 4 && memcmp(buf, "over", 4) == 0);
    close(f);
    unlink("/tmp/cove-pipe-native");
    /* A number that was a file becomes a pipe. */
    f = open("/dev/zero", O_RDONLY);
    CHECK(read(f, buf, 4) == 4);
    num = f;
    close(f);
    CHECK(pipe(p) == 0 && p[0] == num);
    CHECK(write(p[1], "now", 3) == 3 && read(p[0], buf, 8) == 3 && memcmp(buf, "now", 3) == 0);
    close(p[0]);
    close(p[1]);
}

static void many_fds(void) {
    struct rlimit rl = {2048, 2048};
    CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
    int p[2];
    char buf[16];
    CHECK(pipe(p) == 0);
    /* Numbers around the userland stub's own fd (1024): all the guest's. */
    int nums[] = {1023, 1024, 1025, 1500, 2047};
    for (unsigned i = 0; i < sizeof nums / sizeof nums[0]; i++) {
        int w = nums[i];
        CHECK(dup2(p[1], w) == w);
        CHECK(write(w, "m", 1) == 1);
    }
    CHECK(dup2(p[0], 1024) == 1024 && dup2(p[0], 1025) == 1025);
    CHECK(read(1024, buf, 2) == 2 && read(1025, buf + 2, 14) == 3);
    CHECK(memcmp(buf, "mmmmm", 5) == 0);
    for (unsigned i = 0; i < sizeof nums / sizeof nums[0]; i++) close(nums[i]);
    close(p[0]);
    close(p[1]);
    /* Guest memory still works (the stub's memfd was never touched). */
    char *m = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(m != MAP_FAILED);
    for (int i = 0; i < 1 << 20; i += 4096) m[i] = (char)i;
    for (int i = 0; i < 1 << 20; i += 4096) CHECK(m[i] == (char)i);
    munmap(m, 1 << 20);
}

struct pp { int in, out, rounds; };

static void *ponger(void *arg) {
    struct pp *a = arg;
    char c;
    for (int i = 0; i < a->rounds; i++) {
        if (read(a->in, &c, 1) != 1) return (void *)1;
        c++;
        if (write(a->out, &c, 1) != 1) return (void *)2;
    }
    return NULL;
}

static void threads_ping_pong(void) {
    int to[2], from[2];
    CHECK(pipe(to) == 0 && pipe(from) == 0);
    struct pp a = {to[0], from[1], 500};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, ponger, &a) == 0);
    char c = 0;
    for (int i = 0; i < 500; i++) {
        char sent = (char)i;
        CHECK(write(to[1], &sent, 1) == 1);
        CHECK(read(from[0], &c, 1) == 1 && c == (char)(sent + 1));
    }
    void *ret;
    CHECK(pthread_join(th, &ret) == 0 && ret == NULL);
    close(to[0]);
    close(to[1]);
    close(from[0]);
    close(from[1]);
}

static uint64_t mix(uint64_t h, const unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}

static void big_transfer(void) {
    /* 8 MB in uneven pieces (native when they fit, the North when not), checked. */
    static unsigned char out[70001], in[70001];
    const size_t sizes[] = {1, 100, 4096, 5000, 65536, 70001, 4095, 8192};
    const long total = 8L << 20;
    int p[2];
    CHECK(pipe(p) == 0);
    pid_t c = fork();
    if (c == 0) {
        close(p[0]);
        uint64_t h = 0xcbf29ce484222325ULL;
        long done = 0;
        for (int k = 0; done < total; k++) {
            size_t n = sizes[k % 8];
            if ((long)n > total - done) n = total - done;
            for (size_t i = 0; i < n; i++) out[i] = (unsigned char)(done + i * 7);
            size_t off = 0;
            while (off < n) {
                ssize_t w = write(p[1], out + off, n - off);
                if (w <= 0) _exit(2);
                off += w;
            }
            h = mix(h, out, n);
            done += n;
        }
        close(p[1]);
        _exit(0);
    }
    close(p[1]);
    uint64_t h = 0xcbf29ce484222325ULL, want = 0xcbf29ce484222325ULL;
    long got = 0;
    ssize_t n;
    for (int k = 0; (n = read(p[0], in, sizes[(k + 3) % 8])) > 0; k++) {
        h = mix(h, in, n);
        got += n;
    }
    CHECK(n == 0 && got == total);
    /* What the writer hashed, recomputed in the same pieces. */
    long done = 0;
    for (int k = 0; done < total; k++) {
        size_t m = sizes[k % 8];
        if ((long)m > total - done) m = total - done;
        for (size_t i = 0; i < m; i++) out[i] = (unsigned char)(done + i * 7);
        want = mix(want, out, m);
        done += m;
    }
    CHECK(h == want);
    int st;
    CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    close(p[0]);
}

static void packets(void) {
    int p[2];
    char buf[100];
    if (pipe2(p, O_DIRECT | O_NONBLOCK) != 0) return; /* no packet mode: nothing to check */
    CHECK(write(p[1], "abc", 3) == 3);
    CHECK(write(p[1], "defg", 4) == 4);
    CHECK(read(p[0], buf, sizeof buf) == 3 && memcmp(buf, "abc", 3) == 0);
    CHECK(read(p[0], buf, 2) == 2 && memcmp(buf, "de", 2) == 0); /* the rest is dropped */
    CHECK(read(p[0], buf, sizeof buf) == -1 && errno == EAGAIN);
    /* Back to a byte stream. */
    CHECK(fcntl(p[1], F_SETFL, O_NONBLOCK) == 0);
    CHECK(write(p[1], "hi", 2) == 2 && write(p[1], "jk", 2) == 2);
    CHECK(read(p[0], buf, sizeof buf) == 4 && memcmp(buf, "hijk", 4) == 0);
    close(p[0]);
    close(p[1]);
}

int main(void) {
    partial_reads();
    eof_after_last_writer();
    epipe_sigpipe();
    nonblock_eagain();
    readiness();
    dup2_over_a_pipe();
    fork_uses_both_ends();
    number_reused_for_a_file();
    many_fds();
    threads_ping_pong();
    big_transfer();
    packets();
    printf("ok\n");
    return 0;
}
