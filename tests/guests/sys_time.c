/* Clocks and sleeps as a real program sees them. argv[1] = the host's wall
 * clock (seconds) when the test started. Exits with the number of failures. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/times.h>
#include <time.h>
#include <unistd.h>

static int failures;
#define CHECK(c) do { if (!(c)) { fprintf(stderr, "FAIL %s:%d: %s (errno %d)\n", \
    __FILE__, __LINE__, #c, errno); failures++; } } while (0)

static long long ns(clockid_t id) {
    struct timespec ts;
    if (syscall(SYS_clock_gettime, id, &ts) != 0) return -1;  /* no vDSO shortcut */
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static volatile int alarms;
static void on_alarm(int sig) { (void)sig; alarms++; }

int main(int argc, char **argv) {
    long long host_start = argc > 1 ? atoll(argv[1]) : 0;

    /* the wall clock is the host's; the monotonic one starts at the sandbox's boot */
    long long real = ns(CLOCK_REALTIME);
    CHECK(real / 1000000000LL >= host_start - 5 && real / 1000000000LL <= host_start + 120);
    long long mono = ns(CLOCK_MONOTONIC);
    CHECK(mono > 0 && mono < 120 * 1000000000LL);
    CHECK(ns(CLOCK_BOOTTIME) >= mono);
    CHECK(ns(CLOCK_MONOTONIC_RAW) > 0 && ns(CLOCK_MONOTONIC_COARSE) > 0);
    CHECK(ns(CLOCK_REALTIME_ALARM) == -1 && errno == EINVAL);
    struct timeval tv;
    CHECK(gettimeofday(&tv, NULL) == 0);
    CHECK(llabs(tv.tv_sec - real / 1000000000LL) <= 1);
    CHECK(llabs(time(NULL) - tv.tv_sec) <= 1);
    struct timespec res;
    CHECK(clock_getres(CLOCK_MONOTONIC, &res) == 0 && res.tv_sec == 0 && res.tv_nsec == 1);
    struct timespec set = {1, 0};
    CHECK(clock_settime(CLOCK_REALTIME, &set) == -1 && errno == EPERM);

    /* sleeping */
    long long t0 = ns(CLOCK_MONOTONIC);
    struct timespec req = {0, 50000000}, rem;
    CHECK(nanosleep(&req, NULL) == 0);
    CHECK(ns(CLOCK_MONOTONIC) - t0 >= 50000000);
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_nsec += 30000000;
    if (until.tv_nsec >= 1000000000) { until.tv_sec++; until.tv_nsec -= 1000000000; }
    CHECK(clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL) == 0);
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    CHECK(now.tv_sec > until.tv_sec || (now.tv_sec == until.tv_sec && now.tv_nsec >= until.tv_nsec));
    req.tv_nsec = 1000000000;
    CHECK(nanosleep(&req, NULL) == -1 && errno == EINVAL);

    /* a signal ends a sleep early with EINTR and the time left */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_RESTART;  /* nanosleep is never restarted anyway */
    sigaction(SIGALRM, &sa, NULL);
    alarm(1);
    req.tv_sec = 3; req.tv_nsec = 0;
    t0 = ns(CLOCK_MONOTONIC);
    CHECK(nanosleep(&req, &rem) == -1 && errno == EINTR);
    CHECK(alarms == 1);
    long long slept = ns(CLOCK_MONOTONIC) - t0;
    long long left = rem.tv_sec * 1000000000LL + rem.tv_nsec;
    CHECK(slept >= 900000000LL && slept < 1800000000LL);
    CHECK(left > 1200000000LL && left <= 2100000000LL);
    CHECK(left + slept >= 2900000000LL && left + slept < 3100000000LL);

    /* times() counts 100 Hz ticks */
    struct tms tm;
    clock_t ticks = times(&tm);
    CHECK(ticks > 0 && ticks < 12000);
    CHECK(sysconf(_SC_CLK_TCK) == 100);

    if (failures) fprintf(stderr, "%d failures\n", failures);
    return failures;
}
