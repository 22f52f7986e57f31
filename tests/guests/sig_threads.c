/* Threads as glibc makes them (clone + futexes): mutexes, condition
 * variables, barriers, join, timed waits, thread-directed and process-directed
 * signals, and thread exit vs exit_group. Exits with the number of failures. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int failures;
#define CHECK(c) do { if (!(c)) { fprintf(stderr, "FAIL %s:%d: %s (errno %d)\n", \
    __FILE__, __LINE__, #c, errno); failures++; } } while (0)

#define NTHREADS 4
#define ROUNDS 2000

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static long counter;
static int turn;

static void *adder(void *arg) {
    (void)arg;
    for (int i = 0; i < ROUNDS; i++) {
        pthread_mutex_lock(&lock);
        long v = counter;
        if (i % 97 == 0) sched_yield();  /* invite a switch inside the critical section */
        counter = v + 1;
        pthread_mutex_unlock(&lock);
    }
    return (void *)(long)syscall(SYS_gettid);
}

/* ping-pong over a condition variable */
static void *ponger(void *arg) {
    int me = (int)(long)arg;
    for (int i = 0; i < 50; i++) {
        pthread_mutex_lock(&lock);
        while (turn != me) pthread_cond_wait(&cond, &lock);
        turn = 1 - me;
        pthread_cond_broadcast(&cond);
        pthread_mutex_unlock(&lock);
    }
    return NULL;
}

static pthread_barrier_t barrier;
static void *barrier_worker(void *arg) {
    (void)arg;
    int r = pthread_barrier_wait(&barrier);
    return (void *)(long)(r == PTHREAD_BARRIER_SERIAL_THREAD);
}

static volatile pid_t handled_by;
static void on_usr1(int sig) { (void)sig; handled_by = (pid_t)syscall(SYS_gettid); }

static volatile int go;
static void *sleeper(void *arg) {
    (void)arg;
    while (!handled_by) usleep(1000);
    return NULL;
}

static void *blocker_of_usr2(void *arg) {
    (void)arg;
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR2);
    int sig = 0;
    sigwait(&s, &sig);  /* the process-directed SIGUSR2 must come here */
    return (void *)(long)sig;
}

static pthread_mutex_t robust;
static void *dies_holding_the_lock(void *arg) {
    (void)arg;
    pthread_mutex_lock(&robust);
    return NULL;  /* exits without unlocking */
}

static volatile int *ticks;
static void *ticker(void *arg) {
    (void)arg;
    for (;;) {
        usleep(5000);
        __atomic_add_fetch(ticks, 1, __ATOMIC_SEQ_CST);
    }
    return NULL;
}

static void *exits_alone(void *arg) {
    (void)arg;
    pthread_exit((void *)7);
}

int main(void) {
    pthread_t th[NTHREADS];
    pid_t tids[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) CHECK(pthread_create(&th[i], NULL, adder, NULL) == 0);
    for (int i = 0; i < NTHREADS; i++) {
        void *ret;
        CHECK(pthread_join(th[i], &ret) == 0);
        tids[i] = (pid_t)(long)ret;
        CHECK(tids[i] != getpid() && tids[i] > 0);
    }
    CHECK(counter == NTHREADS * ROUNDS);
    CHECK(tids[0] != tids[1]);

    pthread_t a, b;
    turn = 0;
    pthread_create(&a, NULL, ponger, (void *)0L);
    pthread_create(&b, NULL, ponger, (void *)1L);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    CHECK(turn == 0);

    CHECK(pthread_barrier_init(&barrier, NULL, 3) == 0);
    pthread_t w[2];
    pthread_create(&w[0], NULL, barrier_worker, NULL);
    pthread_create(&w[1], NULL, barrier_worker, NULL);
    int serial = pthread_barrier_wait(&barrier) == PTHREAD_BARRIER_SERIAL_THREAD;
    for (int i = 0; i < 2; i++) {
        void *r;
        pthread_join(w[i], &r);
        serial += (int)(long)r;
    }
    CHECK(serial == 1);

    /* a timed wait on a condition nobody signals times out */
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += 30000000;
    if (until.tv_nsec >= 1000000000) { until.tv_sec++; until.tv_nsec -= 1000000000; }
    pthread_mutex_lock(&lock);
    CHECK(pthread_cond_timedwait(&cond, &lock, &until) == ETIMEDOUT);
    pthread_mutex_unlock(&lock);
    pthread_mutex_lock(&lock);
    CHECK(pthread_mutex_trylock(&lock) == EBUSY);
    pthread_mutex_unlock(&lock);

    /* pthread_kill: the handler runs on the target thread */
    signal(SIGUSR1, on_usr1);
    pthread_t s;
    pthread_create(&s, NULL, sleeper, NULL);
    CHECK(pthread_kill(s, SIGUSR1) == 0);
    pthread_join(s, NULL);
    CHECK(handled_by != 0 && handled_by != getpid());

    /* a process-directed signal goes to the thread that does not block it */
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &set, &old);  /* inherited by the new thread */
    pthread_t bl;
    pthread_create(&bl, NULL, blocker_of_usr2, NULL);
    usleep(20000);
    kill(getpid(), SIGUSR2);
    void *sig;
    pthread_join(bl, &sig);
    CHECK((long)sig == SIGUSR2);
    pthread_sigmask(SIG_SETMASK, &old, NULL);

    /* a thread's own exit leaves the process running */
    pthread_t ex;
    pthread_create(&ex, NULL, exits_alone, NULL);
    void *code;
    CHECK(pthread_join(ex, &code) == 0 && code == (void *)7);

    /* a robust mutex whose owner died: EOWNERDEAD, then consistent again */
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST);
    CHECK(pthread_mutex_init(&robust, &ma) == 0);
    pthread_t dier;
    pthread_create(&dier, NULL, dies_holding_the_lock, NULL);
    pthread_join(dier, NULL);
    CHECK(pthread_mutex_lock(&robust) == EOWNERDEAD);
    CHECK(pthread_mutex_consistent(&robust) == 0);
    CHECK(pthread_mutex_unlock(&robust) == 0);
    CHECK(pthread_mutex_lock(&robust) == 0);
    pthread_mutex_unlock(&robust);

    /* detached threads and many short-lived ones */
    for (int i = 0; i < 20; i++) {
        pthread_t d;
        CHECK(pthread_create(&d, NULL, exits_alone, NULL) == 0);
        if (i % 2) pthread_detach(d); else pthread_join(d, NULL);
    }

    /* SIGSTOP stops every thread of a process, SIGCONT resumes them all */
    ticks = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    pid_t child = fork();
    if (child == 0) {
        pthread_t tk;
        pthread_create(&tk, NULL, ticker, NULL);
        for (;;) pause();
    }
    usleep(50000);
    CHECK(kill(child, SIGSTOP) == 0);
    int st;
    CHECK(waitpid(child, &st, WUNTRACED) == child && WIFSTOPPED(st));
    int before = *ticks;
    usleep(100000);
    CHECK(*ticks == before);  /* the ticker thread is stopped too */
    CHECK(kill(child, SIGCONT) == 0);
    usleep(50000);
    CHECK(*ticks > before);
    kill(child, SIGKILL);
    CHECK(waitpid(child, &st, 0) == child && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);

    if (failures == 0) printf("ok\n");
    return failures;
}
