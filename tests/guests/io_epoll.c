/* epoll and timerfd as a Linux program sees them: error paths, level- and
 * edge-triggered and one-shot readiness, nesting, an event loop over a
 * pipe, an eventfd, a timerfd and a signalfd fed by another thread, and
 * blocking calls that block only their own thread.
 * Every check is an assertion inside the guest; prints "ok" and exits 0.
 * The same binary passes natively on Linux. */
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
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "FAIL %s:%d: %s (errno %d)\n", \
    __FILE__, __LINE__, #c, errno); exit(1); } } while (0)

static const char *self_path;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void sleep_ms(int ms) {
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {}
}

static int ctl(int ep, int op, int fd, uint32_t events, uint64_t data) {
    struct epoll_event ev = { .events = events, .data.u64 = data };
    return epoll_ctl(ep, op, fd, &ev);
}

/* --- error paths --------------------------------------------------------- */
static void test_errors(void) {
    struct epoll_event ev[4];
    CHECK(sizeof(struct epoll_event) == 12);  /* packed on x86-64 */
    CHECK(epoll_create(0) == -1 && errno == EINVAL);
    CHECK(epoll_create(-1) == -1 && errno == EINVAL);
    CHECK(epoll_create1(O_NONBLOCK) == -1 && errno == EINVAL);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    CHECK(ep >= 0 && fcntl(ep, F_GETFD) == FD_CLOEXEC);
    CHECK(fcntl(ep, F_GETFL) == O_RDWR);
    char buf[16];
    CHECK(read(ep, buf, sizeof buf) == -1 && errno == EINVAL);
    int p[2];
    CHECK(pipe(p) == 0);
    CHECK(ctl(ep, EPOLL_CTL_ADD, 999, EPOLLIN, 0) == -1 && errno == EBADF);
    CHECK(ctl(999, EPOLL_CTL_ADD, p[0], EPOLLIN, 0) == -1 && errno == EBADF);
    CHECK(ctl(p[0], EPOLL_CTL_ADD, p[1], EPOLLIN, 0) == -1 && errno == EINVAL);
    CHECK(ctl(ep, EPOLL_CTL_ADD, ep, EPOLLIN, 0) == -1 && errno == EINVAL);
    CHECK(ctl(ep, 77, p[0], EPOLLIN, 0) == -1 && errno == EINVAL);
    CHECK(ctl(ep, EPOLL_CTL_MOD, p[0], EPOLLIN, 0) == -1 && errno == ENOENT);
    CHECK(epoll_ctl(ep, EPOLL_CTL_DEL, p[0], NULL) == -1 && errno == ENOENT);
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, p[0], (void *)8) == -1 && errno == EFAULT);
    CHECK(ctl(ep, EPOLL_CTL_ADD, p[0], EPOLLIN, 0) == 0);
    CHECK(ctl(ep, EPOLL_CTL_ADD, p[0], EPOLLIN, 0) == -1 && errno == EEXIST);
    CHECK(ctl(ep, EPOLL_CTL_MOD, p[0], EPOLLIN | EPOLLEXCLUSIVE, 0) == -1 && errno == EINVAL);
    CHECK(epoll_ctl(ep, EPOLL_CTL_DEL, p[0], NULL) == 0);
    CHECK(ctl(ep, EPOLL_CTL_ADD, p[0], EPOLLIN | EPOLLEXCLUSIVE | EPOLLONESHOT, 0) == -1
          && errno == EINVAL);
    /* Regular files and directories cannot be watched. */
    int reg = open(self_path, O_RDONLY);
    int dir = open("/", O_RDONLY | O_DIRECTORY);
    CHECK(reg >= 0 && dir >= 0);
    CHECK(ctl(ep, EPOLL_CTL_ADD, reg, EPOLLIN, 0) == -1 && errno == EPERM);
    CHECK(ctl(ep, EPOLL_CTL_ADD, dir, EPOLLIN, 0) == -1 && errno == EPERM);
    /* Loops. */
    int a = epoll_create1(0), b = epoll_create1(0);
    CHECK(ctl(a, EPOLL_CTL_ADD, b, EPOLLIN, 0) == 0);
    CHECK(ctl(b, EPOLL_CTL_ADD, a, EPOLLIN, 0) == -1 && errno == ELOOP);
    /* Waits. */
    CHECK(epoll_wait(ep, ev, 0, 0) == -1 && errno == EINVAL);
    volatile int negative = -1;  /* hidden from the compiler's size checks */
    CHECK(epoll_wait(ep, ev, negative, 0) == -1 && errno == EINVAL);
    CHECK(epoll_wait(p[0], ev, 4, 0) == -1 && errno == EINVAL);
    CHECK(epoll_wait(999, ev, 4, 0) == -1 && errno == EBADF);
    CHECK(epoll_wait(ep, (void *)0xffff800000000000ul, 1, 0) == -1 && errno == EFAULT);
    CHECK(epoll_wait(ep, ev, 4, 0) == 0);
    sigset_t none;
    sigemptyset(&none);
    CHECK(syscall(SYS_epoll_pwait, ep, ev, 4, 0, &none, 4) == -1 && errno == EINVAL);
    CHECK(syscall(SYS_epoll_pwait, ep, ev, 4, 0, (void *)8, 8) == -1 && errno == EFAULT);
    struct timespec bad = { 0, 1000000000 };
    CHECK(syscall(SYS_epoll_pwait2, ep, ev, 4, &bad, NULL, 8) == -1 && errno == EINVAL);
    CHECK(syscall(SYS_epoll_pwait2, ep, ev, 4, (void *)8, NULL, 8) == -1 && errno == EFAULT);
    close(reg); close(dir); close(a); close(b);
    close(p[0]); close(p[1]); close(ep);
}

/* --- level, edge, one-shot ------------------------------------------------ */
static void test_triggers(void) {
    struct epoll_event ev[8];
    int ep = epoll_create1(0);
    int lt[2], et[2];
    CHECK(pipe2(lt, O_NONBLOCK) == 0 && pipe2(et, O_NONBLOCK) == 0);
    CHECK(ctl(ep, EPOLL_CTL_ADD, lt[0], EPOLLIN, 1) == 0);
    CHECK(ctl(ep, EPOLL_CTL_ADD, et[0], EPOLLIN | EPOLLET, 2) == 0);
    CHECK(epoll_wait(ep, ev, 8, 0) == 0);
    CHECK(write(lt[1], "a", 1) == 1 && write(et[1], "b", 1) == 1);
    CHECK(epoll_wait(ep, ev, 8, 0) == 2);
    /* Level-triggered stays ready; edge-triggered reported once. */
    CHECK(epoll_wait(ep, ev, 8, 0) == 1 && ev[0].data.u64 == 1 && ev[0].events == EPOLLIN);
    CHECK(epoll_wait(ep, ev, 8, 0) == 1 && ev[0].data.u64 == 1);
    /* A new write is a new edge. */
    CHECK(write(et[1], "c", 1) == 1);
    CHECK(epoll_wait(ep, ev, 8, 0) == 2);
    CHECK(epoll_wait(ep, ev, 8, 0) == 1 && ev[0].data.u64 == 1);
    /* Drained to EAGAIN, then written again without a wait in between: an edge. */
    char buf[16];
    CHECK(read(et[0], buf, sizeof buf) == 2);
    CHECK(read(et[0], buf, sizeof buf) == -1 && errno == EAGAIN);
    CHECK(write(et[1], "d", 1) == 1);
    int n = epoll_wait(ep, ev, 8, 0);
    CHECK(n == 2);
    CHECK(read(lt[0], buf, sizeof buf) == 1 && read(et[0], buf, sizeof buf) == 1);
    CHECK(epoll_wait(ep, ev, 8, 0) == 0);
    /* HUP is reported without being asked for. */
    close(lt[1]);
    CHECK(epoll_wait(ep, ev, 8, 0) == 1 && ev[0].events == EPOLLHUP && ev[0].data.u64 == 1);

    /* One-shot: one report, then nothing (not even HUP) until EPOLL_CTL_MOD. */
    int os[2];
    CHECK(pipe2(os, O_NONBLOCK) == 0);
    int ep2 = epoll_create1(0);
    CHECK(ctl(ep2, EPOLL_CTL_ADD, os[0], EPOLLIN | EPOLLONESHOT, 7) == 0);
    CHECK(write(os[1], "x", 1) == 1);
    CHECK(epoll_wait(ep2, ev, 8, 0) == 1 && ev[0].data.u64 == 7);
    CHECK(epoll_wait(ep2, ev, 8, 0) == 0);
    close(os[1]);
    CHECK(epoll_wait(ep2, ev, 8, 0) == 0);
    CHECK(ctl(ep2, EPOLL_CTL_ADD, os[0], EPOLLIN, 0) == -1 && errno == EEXIST);
    CHECK(ctl(ep2, EPOLL_CTL_MOD, os[0], EPOLLIN | EPOLLONESHOT, 8) == 0);
    CHECK(epoll_wait(ep2, ev, 8, 0) == 1 && ev[0].data.u64 == 8
          && ev[0].events == (EPOLLIN | EPOLLHUP));
    CHECK(epoll_wait(ep2, ev, 8, 0) == 0);

    /* maxevents smaller than the ready set: the rest come next time. */
    int e[3];
    int ep3 = epoll_create1(0);
    for (int i = 0; i < 3; i++) {
        e[i] = eventfd(1, 0);
        CHECK(ctl(ep3, EPOLL_CTL_ADD, e[i], EPOLLIN | EPOLLONESHOT, 100 + i) == 0);
    }
    uint64_t seen = 0;
    CHECK(epoll_wait(ep3, ev, 2, 0) == 2);
    seen |= 1ull << (ev[0].data.u64 - 100) | 1ull << (ev[1].data.u64 - 100);
    CHECK(epoll_wait(ep3, ev, 2, 0) == 1);
    seen |= 1ull << (ev[0].data.u64 - 100);
    CHECK(seen == 7);
    /* The last fd of a description closing takes it out of the set. */
    CHECK(ctl(ep3, EPOLL_CTL_MOD, e[0], EPOLLIN, 100) == 0);
    int dup0 = dup(e[0]);
    close(e[0]);
    CHECK(epoll_wait(ep3, ev, 4, 0) == 1 && ev[0].data.u64 == 100);  /* still open */
    close(dup0);
    CHECK(epoll_wait(ep3, ev, 4, 0) == 0);
    for (int i = 1; i < 3; i++) close(e[i]);
    close(ep3);
    close(os[0]); close(ep2);
    close(lt[0]); close(et[0]); close(et[1]); close(ep);
}

/* --- nesting ----------------------------------------------------------------- */
static void test_nesting(void) {
    struct epoll_event ev[4];
    int outer = epoll_create1(0), inner = epoll_create1(0);
    int efd = eventfd(0, EFD_NONBLOCK);
    CHECK(ctl(inner, EPOLL_CTL_ADD, efd, EPOLLIN, 1) == 0);
    CHECK(ctl(outer, EPOLL_CTL_ADD, inner, EPOLLIN, 2) == 0);
    CHECK(epoll_wait(outer, ev, 4, 0) == 0);
    struct pollfd pfd = { .fd = outer, .events = POLLIN | POLLOUT };
    CHECK(poll(&pfd, 1, 0) == 0);
    uint64_t one = 1;
    CHECK(write(efd, &one, 8) == 8);
    CHECK(epoll_wait(outer, ev, 4, 0) == 1 && ev[0].data.u64 == 2 && ev[0].events == EPOLLIN);
    CHECK(poll(&pfd, 1, 0) == 1 && pfd.revents == POLLIN);
    CHECK(epoll_wait(inner, ev, 4, 0) == 1 && ev[0].data.u64 == 1);
    close(efd); close(inner); close(outer);
}

/* --- timerfd ------------------------------------------------------------------ */
static void test_timerfd(void) {
    CHECK(timerfd_create(CLOCK_PROCESS_CPUTIME_ID, 0) == -1 && errno == EINVAL);
    CHECK(timerfd_create(CLOCK_MONOTONIC, 1) == -1 && errno == EINVAL);
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    CHECK(tfd >= 0 && fcntl(tfd, F_GETFD) == FD_CLOEXEC);
    CHECK(fcntl(tfd, F_GETFL) == (O_RDWR | O_NONBLOCK));
    uint64_t ticks;
    char small[4];
    CHECK(read(tfd, small, 4) == -1 && errno == EINVAL);
    CHECK(read(tfd, &ticks, 8) == -1 && errno == EAGAIN);
    struct itimerspec its = {0}, old;
    CHECK(timerfd_gettime(tfd, &old) == 0 && old.it_value.tv_sec == 0
          && old.it_value.tv_nsec == 0);
    CHECK(timerfd_settime(tfd, 4, &its, NULL) == -1 && errno == EINVAL);
    its.it_value.tv_nsec = 1000000000;
    CHECK(timerfd_settime(tfd, 0, &its, NULL) == -1 && errno == EINVAL);
    CHECK(timerfd_settime(tfd, 0, NULL, NULL) == -1 && errno == EFAULT);
    CHECK(timerfd_settime(0, 0, &its, NULL) == -1 && errno == EINVAL);
    int efd = eventfd(0, 0);
    its.it_value.tv_nsec = 1000;
    CHECK(timerfd_settime(efd, 0, &its, NULL) == -1 && errno == EINVAL);
    CHECK(timerfd_gettime(efd, &old) == -1 && errno == EINVAL);
    CHECK(timerfd_gettime(999, &old) == -1 && errno == EBADF);
    close(efd);
    /* One-shot, then periodic: expirations count while nobody reads. */
    its.it_value.tv_sec = 0;
    its.it_value.tv_nsec = 20000000;
    CHECK(timerfd_settime(tfd, 0, &its, NULL) == 0);
    CHECK(timerfd_gettime(tfd, &old) == 0 && old.it_value.tv_nsec > 0
          && old.it_value.tv_nsec <= 20000000);
    sleep_ms(40);
    CHECK(read(tfd, &ticks, 8) == 8 && ticks == 1);
    CHECK(read(tfd, &ticks, 8) == -1 && errno == EAGAIN);
    its.it_interval.tv_nsec = 10000000;
    its.it_value.tv_nsec = 10000000;
    double start = now();
    CHECK(timerfd_settime(tfd, 0, &its, NULL) == 0);
    sleep_ms(55);
    CHECK(read(tfd, &ticks, 8) == 8);
    double elapsed = now() - start;
    CHECK(ticks >= 5 && ticks <= (uint64_t)(elapsed / 0.01) + 1);
    /* settime returns the old setting and discards unread expirations. */
    sleep_ms(25);
    struct itimerspec off = {0};
    CHECK(timerfd_settime(tfd, 0, &off, &old) == 0);
    CHECK(old.it_interval.tv_sec == 0 && old.it_interval.tv_nsec == 10000000);
    CHECK(old.it_value.tv_nsec > 0 && old.it_value.tv_nsec <= 10000000);
    CHECK(read(tfd, &ticks, 8) == -1 && errno == EAGAIN);
    /* Absolute, on the realtime clock, already past: expires at once. */
    int rt = timerfd_create(CLOCK_REALTIME, 0);
    struct itimerspec abs = {0};
    clock_gettime(CLOCK_REALTIME, &abs.it_value);
    abs.it_value.tv_sec -= 1;
    CHECK(timerfd_settime(rt, TFD_TIMER_ABSTIME, &abs, NULL) == 0);
    CHECK(read(rt, &ticks, 8) == 8 && ticks == 1);
    /* Absolute on the monotonic clock: a blocking read sleeps until then. */
    clock_gettime(CLOCK_MONOTONIC, &abs.it_value);
    abs.it_value.tv_nsec += 30000000;
    if (abs.it_value.tv_nsec >= 1000000000) {
        abs.it_value.tv_nsec -= 1000000000;
        abs.it_value.tv_sec++;
    }
    int mono = timerfd_create(CLOCK_MONOTONIC, 0);
    start = now();
    CHECK(timerfd_settime(mono, TFD_TIMER_ABSTIME, &abs, NULL) == 0);
    CHECK(read(mono, &ticks, 8) == 8 && ticks == 1);
    CHECK(now() - start >= 0.025);
    close(mono); close(rt); close(tfd);
}

/* --- the event loop -------------------------------------------------------------- */
struct feed { int pipe_w, efd; pid_t pid; };

static void *feeder(void *arg) {
    struct feed *f = arg;
    for (int i = 0; i < 5; i++) {
        sleep_ms(5);
        char msg[8];
        int n = snprintf(msg, sizeof msg, "m%d;", i);
        CHECK(write(f->pipe_w, msg, n) == n);
        uint64_t v = 2;
        CHECK(write(f->efd, &v, 8) == 8);
    }
    CHECK(kill(f->pid, SIGUSR1) == 0);
    return NULL;
}

static void test_event_loop(void) {
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGUSR1);
    CHECK(pthread_sigmask(SIG_BLOCK, &mask, NULL) == 0);  /* inherited by the feeder */
    int sfd = signalfd(-1, &mask, SFD_NONBLOCK);
    int p[2];
    CHECK(pipe2(p, O_NONBLOCK) == 0);
    int efd = eventfd(0, EFD_NONBLOCK);
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    struct itimerspec its = { { 0, 7000000 }, { 0, 7000000 } };
    CHECK(timerfd_settime(tfd, 0, &its, NULL) == 0);
    int ep = epoll_create1(0);
    CHECK(ctl(ep, EPOLL_CTL_ADD, p[0], EPOLLIN | EPOLLET, 'p') == 0);
    CHECK(ctl(ep, EPOLL_CTL_ADD, efd, EPOLLIN, 'e') == 0);
    CHECK(ctl(ep, EPOLL_CTL_ADD, tfd, EPOLLIN | EPOLLONESHOT, 't') == 0);
    CHECK(ctl(ep, EPOLL_CTL_ADD, sfd, EPOLLIN, 's') == 0);
    struct feed f = { p[1], efd, getpid() };
    pthread_t th;
    CHECK(pthread_create(&th, NULL, feeder, &f) == 0);
    char text[128] = "";
    size_t text_len = 0;
    uint64_t counter = 0, timer_ticks = 0;
    int got_signal = 0, loops = 0;
    double start = now();
    while (!(got_signal && counter == 10 && timer_ticks >= 3 && text_len == 15)) {
        CHECK(now() - start < 20);
        struct epoll_event ev[8];
        int n = epoll_wait(ep, ev, 8, 1000);
        CHECK(n >= 0);
        loops++;
        for (int i = 0; i < n; i++) {
            switch (ev[i].data.u64) {
            case 'p':  /* edge-triggered: drain to EAGAIN */
                for (;;) {
                    ssize_t r = read(p[0], text + text_len, sizeof text - 1 - text_len);
                    if (r < 0) { CHECK(errno == EAGAIN); break; }
                    CHECK(r > 0);
                    text_len += r;
                }
                break;
            case 'e': {
                uint64_t v;
                CHECK(read(efd, &v, 8) == 8);
                counter += v;
                break;
            }
            case 't': {  /* one-shot: re-enable after each expiry */
                uint64_t v;
                CHECK(read(tfd, &v, 8) == 8 && v >= 1);
                timer_ticks += v;
                CHECK(ctl(ep, EPOLL_CTL_MOD, tfd, EPOLLIN | EPOLLONESHOT, 't') == 0);
                break;
            }
            case 's': {
                struct signalfd_siginfo si;
                CHECK(read(sfd, &si, sizeof si) == sizeof si);
                CHECK(si.ssi_signo == SIGUSR1 && si.ssi_pid == (uint32_t)getpid());
                got_signal = 1;
                break;
            }
            default:
                CHECK(!"unexpected event");
            }
        }
    }
    text[text_len] = 0;
    CHECK(strcmp(text, "m0;m1;m2;m3;m4;") == 0);
    CHECK(loops >= 3);
    CHECK(pthread_join(th, NULL) == 0);
    CHECK(pthread_sigmask(SIG_UNBLOCK, &mask, NULL) == 0);
    close(ep); close(tfd); close(efd); close(p[0]); close(p[1]); close(sfd);
}

/* --- blocking only the caller ------------------------------------------------------ */
static volatile int worker_ran;

static void *late_writer(void *arg) {
    int fd = *(int *)arg;
    sleep_ms(50);
    worker_ran = 1;
    CHECK(write(fd, "late", 4) == 4);
    return NULL;
}

struct reg { int ep, fd; };

static void *late_register(void *arg) {
    struct reg *r = arg;
    sleep_ms(30);
    CHECK(ctl(r->ep, EPOLL_CTL_ADD, r->fd, EPOLLIN, 9) == 0);
    return NULL;
}

static void test_two_threads(void) {
    int p[2];
    CHECK(pipe(p) == 0);
    int ep = epoll_create1(0);
    CHECK(ctl(ep, EPOLL_CTL_ADD, p[0], EPOLLIN, 5) == 0);
    pthread_t th;
    double start = now();
    CHECK(pthread_create(&th, NULL, late_writer, &p[1]) == 0);
    struct epoll_event ev[2];
    CHECK(epoll_wait(ep, ev, 2, -1) == 1);  /* forever: only the writer can end it */
    CHECK(worker_ran && ev[0].data.u64 == 5 && ev[0].events == EPOLLIN);
    CHECK(now() - start >= 0.04);
    char buf[8];
    CHECK(read(p[0], buf, sizeof buf) == 4);
    CHECK(pthread_join(th, NULL) == 0);
    /* A registration made by another thread wakes a sleeping epoll_wait. */
    int q[2];
    CHECK(pipe(q) == 0);
    CHECK(write(q[1], "x", 1) == 1);
    struct reg args = { epoll_create1(0), q[0] };
    CHECK(pthread_create(&th, NULL, late_register, &args) == 0);
    CHECK(epoll_wait(args.ep, ev, 2, -1) == 1 && ev[0].data.u64 == 9);
    CHECK(pthread_join(th, NULL) == 0);
    close(q[0]); close(q[1]); close(args.ep);
    /* A blocking timerfd read on one thread while another keeps running. */
    int tfd = timerfd_create(CLOCK_MONOTONIC, 0);
    struct itimerspec its = { { 0, 0 }, { 0, 60000000 } };
    worker_ran = 0;
    start = now();
    CHECK(timerfd_settime(tfd, 0, &its, NULL) == 0);
    CHECK(pthread_create(&th, NULL, late_writer, &p[1]) == 0);
    uint64_t ticks;
    CHECK(read(tfd, &ticks, 8) == 8 && ticks == 1);
    CHECK(now() - start >= 0.05);
    CHECK(worker_ran);  /* it ran (and wrote) while we slept */
    CHECK(pthread_join(th, NULL) == 0);
    CHECK(read(p[0], buf, sizeof buf) == 4);
    close(tfd); close(ep); close(p[0]); close(p[1]);
}

/* --- epoll_pwait's mask and epoll_pwait2's timeout -------------------------------- */
static volatile sig_atomic_t usr2_seen;
static void on_usr2(int s) { (void)s; usr2_seen++; }

static void *send_usr2(void *arg) {
    sleep_ms(30);
    CHECK(kill(*(pid_t *)arg, SIGUSR2) == 0);
    return NULL;
}

static void test_pwait(void) {
    struct sigaction sa = {0};
    sa.sa_handler = on_usr2;
    sa.sa_flags = SA_RESTART;  /* epoll_wait is EINTR regardless */
    CHECK(sigaction(SIGUSR2, &sa, NULL) == 0);
    sigset_t usr2, old, during;
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    CHECK(sigprocmask(SIG_BLOCK, &usr2, &old) == 0);
    int p[2];
    CHECK(pipe(p) == 0);
    int ep = epoll_create1(0);
    CHECK(ctl(ep, EPOLL_CTL_ADD, p[0], EPOLLIN, 1) == 0);
    pid_t pid = getpid();
    pthread_t th;
    /* The feeder thread blocks SIGUSR2 too (inherited), so only the waiter,
     * whose pwait mask unblocks it, can take the process-directed signal. */
    CHECK(pthread_create(&th, NULL, send_usr2, &pid) == 0);
    struct epoll_event ev[2];
    sigemptyset(&during);
    CHECK(epoll_pwait(ep, ev, 2, 5000, &during) == -1 && errno == EINTR);
    CHECK(usr2_seen == 1);
    sigset_t cur;
    CHECK(sigprocmask(SIG_BLOCK, NULL, &cur) == 0 && sigismember(&cur, SIGUSR2));
    CHECK(pthread_join(th, NULL) == 0);
    /* pwait2: a timespec timeout. */
    struct timespec ts = { 0, 30000000 };
    double start = now();
    CHECK(syscall(SYS_epoll_pwait2, ep, ev, 2, &ts, NULL, 8) == 0);
    CHECK(now() - start >= 0.025);
    ts.tv_nsec = 0;
    CHECK(syscall(SYS_epoll_pwait2, ep, ev, 2, &ts, NULL, 8) == 0);
    CHECK(write(p[1], "x", 1) == 1);
    CHECK(syscall(SYS_epoll_pwait2, ep, ev, 2, NULL, &during, 8) == 1);
    CHECK(sigprocmask(SIG_SETMASK, &old, NULL) == 0);
    close(ep); close(p[0]); close(p[1]);
}

int main(int argc, char **argv) {
    (void)argc;
    self_path = argv[0];
    test_errors();
    test_triggers();
    test_nesting();
    test_timerfd();
    test_event_loop();
    test_two_threads();
    test_pwait();
    printf("ok\n");
    return 0;
}
