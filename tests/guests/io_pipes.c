/* Pipes, FIFOs, poll/select, eventfd as a Linux program sees them.
 * Every check is an assertion inside the guest; prints "ok" and exits 0. */
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
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "FAIL %s:%d: %s (errno %d)\n", \
    __FILE__, __LINE__, #c, errno); exit(1); } } while (0)

static volatile sig_atomic_t sigpipes;
static void on_sigpipe(int s) { (void)s; sigpipes++; }

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *late_writer(void *arg) {
    int fd = *(int *)arg;
    usleep(50000);
    CHECK(write(fd, "late", 4) == 4);
    return NULL;
}

static void test_basic(void) {
    int p[2];
    char buf[128];
    CHECK(pipe2(p, O_NONBLOCK | O_CLOEXEC) == 0);
    CHECK(fcntl(p[0], F_GETFD) == FD_CLOEXEC);
    CHECK(read(p[0], buf, sizeof buf) == -1 && errno == EAGAIN);
    CHECK(write(p[1], "hello", 5) == 5);
    int n = -1;
    CHECK(ioctl(p[0], FIONREAD, &n) == 0 && n == 5);
    CHECK(read(p[0], buf, sizeof buf) == 5 && memcmp(buf, "hello", 5) == 0);
    CHECK(fcntl(p[0], F_GETPIPE_SZ) == 65536);
    static char big[70000];
    CHECK(write(p[1], big, sizeof big) == 65536);
    CHECK(write(p[1], "x", 1) == -1 && errno == EAGAIN);
    struct stat st;
    CHECK(fstat(p[0], &st) == 0 && S_ISFIFO(st.st_mode));
    CHECK(isatty(p[0]) == 0 && errno == ENOTTY);
    close(p[1]);
    while (read(p[0], big, sizeof big) > 0) {}
    CHECK(read(p[0], buf, 1) == 0);  /* EOF */
    close(p[0]);
}

static void test_epipe(void) {
    int p[2];
    struct sigaction sa = {0};
    sa.sa_handler = on_sigpipe;
    CHECK(sigaction(SIGPIPE, &sa, NULL) == 0);
    CHECK(pipe(p) == 0);
    close(p[0]);
    CHECK(write(p[1], "x", 1) == -1 && errno == EPIPE);
    CHECK(sigpipes == 1);
    signal(SIGPIPE, SIG_IGN);
    CHECK(write(p[1], "x", 1) == -1 && errno == EPIPE);
    CHECK(sigpipes == 1);
    close(p[1]);
}

static void test_blocking_and_poll(void) {
    int p[2];
    char buf[16];
    pthread_t th;
    CHECK(pipe(p) == 0);
    CHECK(pthread_create(&th, NULL, late_writer, &p[1]) == 0);
    double t0 = now();
    CHECK(read(p[0], buf, sizeof buf) == 4 && memcmp(buf, "late", 4) == 0);
    CHECK(now() - t0 > 0.03);
    pthread_join(th, NULL);

    struct pollfd pf = {.fd = p[0], .events = POLLIN};
    t0 = now();
    CHECK(poll(&pf, 1, 60) == 0 && pf.revents == 0);
    CHECK(now() - t0 >= 0.05);
    CHECK(pthread_create(&th, NULL, late_writer, &p[1]) == 0);
    CHECK(poll(&pf, 1, 5000) == 1 && pf.revents == POLLIN);
    pthread_join(th, NULL);
    CHECK(read(p[0], buf, sizeof buf) == 4);

    fd_set rs;
    FD_ZERO(&rs);
    FD_SET(p[0], &rs);
    struct timeval tv = {0, 30000};
    CHECK(select(p[0] + 1, &rs, NULL, NULL, &tv) == 0 && !FD_ISSET(p[0], &rs));
    CHECK(tv.tv_sec == 0 && tv.tv_usec == 0);
    CHECK(write(p[1], "y", 1) == 1);
    FD_SET(p[0], &rs);
    tv.tv_sec = 5;
    CHECK(select(p[0] + 1, &rs, NULL, NULL, &tv) == 1 && FD_ISSET(p[0], &rs));
    CHECK(tv.tv_sec >= 4);

    close(p[1]);
    pf.events = POLLIN;
    CHECK(poll(&pf, 1, 0) == 1 && (pf.revents & POLLHUP));
    close(p[0]);
}

static void test_eventfd(void) {
    int fd = eventfd(2, EFD_SEMAPHORE | EFD_NONBLOCK);
    uint64_t v;
    CHECK(fd >= 0);
    CHECK(read(fd, &v, 8) == 8 && v == 1);
    CHECK(read(fd, &v, 8) == 8 && v == 1);
    CHECK(read(fd, &v, 8) == -1 && errno == EAGAIN);
    CHECK(read(fd, &v, 4) == -1 && errno == EINVAL);
    v = 7;
    CHECK(write(fd, &v, 8) == 8);
    struct pollfd pf = {.fd = fd, .events = POLLIN | POLLOUT};
    CHECK(poll(&pf, 1, 0) == 1 && pf.revents == (POLLIN | POLLOUT));
    close(fd);
}

static void test_fifo(void) {
    char buf[8];
    unlink("/tmp/cove-fifo");
    CHECK(mkfifo("/tmp/cove-fifo", 0600) == 0);
    CHECK(open("/tmp/cove-fifo", O_WRONLY | O_NONBLOCK) == -1 && errno == ENXIO);
    int r = open("/tmp/cove-fifo", O_RDONLY | O_NONBLOCK);
    CHECK(r >= 0);
    int w = open("/tmp/cove-fifo", O_WRONLY);
    CHECK(w >= 0);
    CHECK(write(w, "fifo", 4) == 4);
    CHECK(read(r, buf, sizeof buf) == 4 && memcmp(buf, "fifo", 4) == 0);
    struct stat st;
    CHECK(fstat(r, &st) == 0 && S_ISFIFO(st.st_mode));
    close(w);
    close(r);
    unlink("/tmp/cove-fifo");
}

static void test_stdio(void) {
    struct stat st;
    /* The test harness gives /dev/null as stdin and pipes as stdout/stderr. */
    CHECK(fstat(1, &st) == 0 && S_ISFIFO(st.st_mode));
    CHECK(!isatty(1));
    CHECK(fstat(0, &st) == 0 && S_ISCHR(st.st_mode));
    CHECK(open("/dev/tty", O_RDWR) == -1 && errno == ENXIO);
}

int main(void) {
    test_basic();
    test_epipe();
    test_blocking_and_poll();
    test_eventfd();
    test_fifo();
    test_stdio();
    printf("ok\n");
    return 0;
}
