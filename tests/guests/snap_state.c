/* Builds up state a snapshot must carry, says "ready", blocks reading stdin
 * (where the test snapshots it), then checks every piece of that state:
 * open files and their offsets, a pipe with unread bytes, a forked child
 * blocked in a read, threads asleep in futex waits (a condvar), a thread in
 * nanosleep, heap memory, a MAP_SHARED page shared with the child, signal
 * dispositions, an epoll set and an eventfd. Prints "ok" or the first "FAIL: ...". */
#include <errno.h>
#include <stdint.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHECK(c, ...) do { if (!(c)) { printf("FAIL: " __VA_ARGS__); printf("\n"); exit(1); } } while (0)

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int waiting, released, woke;
static volatile int slept;
static volatile sig_atomic_t got_usr1;

static void *waiter(void *arg) {
    (void)arg;
    pthread_mutex_lock(&mu);
    waiting++;
    while (!released) pthread_cond_wait(&cv, &mu);
    woke++;
    pthread_mutex_unlock(&mu);
    return NULL;
}

static void *sleeper(void *arg) {
    (void)arg;
    struct timespec ts = {0, 400 * 1000 * 1000};
    nanosleep(&ts, NULL);
    slept = 1;
    return NULL;
}

static void on_usr1(int s) { (void)s; got_usr1 = 1; }

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    /* files: one in the overlay's upper layer, one from the host (read-only) */
    int fa = open("/tmp/snap_a.txt", O_RDWR | O_CREAT | O_TRUNC, 0644);
    CHECK(fa >= 0, "open a");
    CHECK(write(fa, "hello world", 11) == 11, "write a");
    CHECK(lseek(fa, 6, SEEK_SET) == 6, "lseek a");
    int fh = open("/etc/passwd", O_RDONLY);
    CHECK(fh >= 0, "open passwd");
    char head[4] = {0};
    CHECK(read(fh, head, 4) == 4, "read passwd");
    /* a pipe with bytes nobody read yet */
    int p1[2];
    CHECK(pipe(p1) == 0, "pipe");
    CHECK(write(p1[1], "buffered-data", 13) == 13, "write pipe");
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 7};
    CHECK(ep >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, p1[0], &ev) == 0, "epoll");
    int efd = eventfd(5, 0);
    CHECK(efd >= 0, "eventfd");
    /* a child asleep in a read, sharing a MAP_SHARED page */
    int p2[2], p3[2];
    CHECK(pipe(p2) == 0 && pipe(p3) == 0, "pipes");
    volatile int *shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(shared != MAP_FAILED, "mmap shared");
    shared[0] = 1;
    pid_t child = fork();
    CHECK(child >= 0, "fork");
    if (child == 0) {
        char buf[16] = {0};
        ssize_t n = read(p2[0], buf, sizeof buf - 1);
        if (n <= 0) _exit(1);
        buf[n] = '!';
        if (write(p3[1], buf, n + 1) != n + 1) _exit(2);
        shared[0] = 42;
        _exit(7);
    }
    /* threads in futex waits, and one in nanosleep */
    pthread_t th[3], sl;
    for (int i = 0; i < 3; i++) CHECK(pthread_create(&th[i], NULL, waiter, NULL) == 0, "thread");
    CHECK(pthread_create(&sl, NULL, sleeper, NULL) == 0, "sleeper");
    for (;;) {
        pthread_mutex_lock(&mu);
        int n = waiting;
        pthread_mutex_unlock(&mu);
        if (n == 3) break;
        usleep(1000);
    }
    usleep(20000); /* let them reach the futex wait */
    /* heap and signal state */
    char *heap = malloc(100000);
    memset(heap, 0x5a, 100000);
    struct sigaction sa = {0};
    sa.sa_handler = on_usr1;
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0, "sigaction");
    unsigned char before[16];
    CHECK(getrandom(before, sizeof before, 0) == sizeof before, "getrandom");
    struct timespec t0;
    clock_gettime(CLOCK_REALTIME, &t0);

    printf("ready\n");
    char line[64] = {0};
    ssize_t got = read(0, line, sizeof line - 1);  /* the snapshot is taken while we wait here */
    CHECK(got > 0, "read stdin: %zd errno %d", got, errno);

    struct timespec t1;
    clock_gettime(CLOCK_REALTIME, &t1);
    CHECK(t1.tv_sec >= t0.tv_sec, "realtime went backwards");
    char buf[32] = {0};
    CHECK(read(fa, buf, sizeof buf) == 5 && memcmp(buf, "world", 5) == 0, "offset of a: %s", buf);
    char more[4] = {0}, again[8] = {0};
    CHECK(read(fh, more, 4) == 4, "read passwd again");
    CHECK(pread(fh, again, 8, 0) == 8 && memcmp(again, head, 4) == 0 && memcmp(again + 4, more, 4) == 0,
          "passwd offset");
    struct epoll_event out = {0};
    CHECK(epoll_wait(ep, &out, 1, 1000) == 1 && out.data.u64 == 7, "epoll_wait");
    uint64_t count = 0;
    CHECK(read(efd, &count, 8) == 8 && count == 5, "eventfd %lu", (unsigned long)count);
    memset(buf, 0, sizeof buf);
    CHECK(read(p1[0], buf, sizeof buf) == 13 && memcmp(buf, "buffered-data", 13) == 0, "pipe data: %s", buf);
    CHECK(write(p2[1], "ping", 4) == 4, "write child");
    memset(buf, 0, sizeof buf);
    CHECK(read(p3[0], buf, sizeof buf) == 5 && memcmp(buf, "ping!", 5) == 0, "child reply: %s", buf);
    int status;
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 7,
          "child status %#x", status);
    CHECK(shared[0] == 42, "shared page %d", shared[0]);
    pthread_mutex_lock(&mu);
    released = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    for (int i = 0; i < 3; i++) pthread_join(th[i], NULL);
    CHECK(woke == 3, "woke %d", woke);
    pthread_join(sl, NULL);
    CHECK(slept, "sleeper");
    for (int i = 0; i < 100000; i++) CHECK(heap[i] == 0x5a, "heap byte %d", i);
    CHECK(kill(getpid(), SIGUSR1) == 0 && got_usr1, "SIGUSR1 handler");
    unsigned char after[16];
    CHECK(getrandom(after, sizeof after, 0) == sizeof after, "getrandom");
    printf("ok %.*s", (int)got, line);
    for (int i = 0; i < 16; i++) printf("%02x", after[i]);
    printf("\n");
    return 0;
}
