/* A sibling thread keeps writing while another thread forks and another
 * unmaps: with guest threads running at once, the child's copy must stop
 * changing once fork returned, and a page unmapped by one thread must fault
 * in its running sibling right after munmap returned. Prints "ok". */
#define _GNU_SOURCE
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile unsigned long counter;
static atomic_int stop;

static void *writer(void *arg) {
    (void)arg;
    while (!atomic_load(&stop)) counter++;
    return NULL;
}

static void nap(long ns) {
    struct timespec ts = {0, ns};
    nanosleep(&ts, NULL);
}

static volatile char *page;
static atomic_int reader_state;  /* 0 reading, 1 faulted */
static sigjmp_buf env;

static void on_segv(int sig) {
    (void)sig;
    siglongjmp(env, 1);
}

static void *reader(void *arg) {
    (void)arg;
    signal(SIGSEGV, on_segv);
    if (sigsetjmp(env, 1)) {
        atomic_store(&reader_state, 1);
        return NULL;
    }
    for (;;) (void)page[0];
}

int main(void) {
    pthread_t w;
    pthread_create(&w, NULL, writer, NULL);
    nap(2000000);
    for (int round = 0; round < 20; round++) {
        pid_t pid = fork();
        if (pid == 0) {
            unsigned long a = counter;
            nap(3000000);
            unsigned long b = counter;
            _exit(a == b ? 0 : 1);  /* the child's memory is its own */
        }
        int st;
        if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            printf("FAIL child saw the parent's writes after fork (round %d)\n", round);
            return 1;
        }
    }
    /* The same with the forking thread suspended until the child exits
     * (clone with CLONE_VFORK but not CLONE_VM: a copy, and a parent that is
     * not resumed, so nothing of its own makes the supervisor catch up). */
    for (int round = 0; round < 20; round++) {
        long pid = syscall(SYS_clone, CLONE_VFORK | SIGCHLD, 0, 0, 0, 0);
        if (pid == 0) {
            unsigned long a = counter;
            nap(3000000);
            unsigned long b = counter;
            syscall(SYS_exit, a == b ? 0 : 1);
        }
        int st;
        if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            printf("FAIL child saw the parent's writes after a vfork-like clone (round %d)\n",
                   round);
            return 1;
        }
    }
    atomic_store(&stop, 1);
    pthread_join(w, NULL);

    page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED) return 2;
    page[0] = 1;
    pthread_t r;
    pthread_create(&r, NULL, reader, NULL);
    nap(2000000);
    munmap((void *)page, 4096);
    /* The reader must fault soon (Linux: at once); 2 s is generous. */
    for (int i = 0; i < 200 && !atomic_load(&reader_state); i++) nap(10000000);
    if (!atomic_load(&reader_state)) {
        printf("FAIL a running thread still reads a page unmapped by its sibling\n");
        return 1;
    }
    pthread_join(r, NULL);
    printf("ok\n");
    return 0;
}
