/* fork, wait4/waitpid/waitid, exit statuses, copy-on-write, zombies, orphans,
 * process groups and sessions, as a Linux program sees them.
 * Every check is an assertion inside the guest; prints "ok" and exits 0. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "FAIL %s:%d: %s (errno %d)\n", \
    __FILE__, __LINE__, #c, errno); exit(1); } } while (0)

static void test_exit_codes(void) {
    pid_t kids[8];
    for (int i = 0; i < 8; i++) {
        kids[i] = fork();
        CHECK(kids[i] >= 0);
        if (kids[i] == 0) _exit(i * 30);
    }
    for (int i = 7; i >= 0; i--) {
        int st = -1;
        CHECK(waitpid(kids[i], &st, 0) == kids[i]);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == (i * 30) % 256);
    }
    CHECK(wait(NULL) == -1 && errno == ECHILD);
}

static void test_signals_status(void) {
    pid_t p = fork();
    if (p == 0) { for (;;) pause(); }
    CHECK(kill(p, SIGTERM) == 0);
    int st;
    CHECK(waitpid(p, &st, 0) == p);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM && !WCOREDUMP(st));
    p = fork();
    if (p == 0) { *(volatile int *)8 = 1; _exit(0); }
    CHECK(waitpid(p, &st, 0) == p);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV);
    CHECK(!WCOREDUMP(st));  /* RLIMIT_CORE is 0: no core, no core bit (as Linux) */
    p = fork();
    if (p == 0) {
        struct rlimit rl = {RLIM_INFINITY, RLIM_INFINITY};
        setrlimit(RLIMIT_CORE, &rl);
        abort();
    }
    CHECK(waitpid(p, &st, 0) == p);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT && WCOREDUMP(st));
    p = fork();
    if (p == 0) { raise(SIGKILL); _exit(0); }
    siginfo_t si;
    memset(&si, 0, sizeof si);
    CHECK(waitid(P_PID, p, &si, WEXITED) == 0);
    CHECK(si.si_signo == SIGCHLD && si.si_code == CLD_KILLED && si.si_pid == p);
    CHECK(si.si_status == SIGKILL);
}

static void test_cow(void) {
    size_t len = 64 << 20;
    char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(m != MAP_FAILED);
    for (size_t i = 0; i < len; i += 4096) m[i] = 'p';
    static int global = 1;
    pid_t p = fork();
    if (p == 0) {
        if (m[0] != 'p' || m[len - 4096] != 'p' || global != 1) _exit(2);
        m[0] = 'c';
        global = 2;
        _exit(m[4096] == 'p' ? 0 : 3);
    }
    int st;
    CHECK(waitpid(p, &st, 0) == p && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK(m[0] == 'p' && global == 1);
    munmap(m, len);
}

static void test_wnohang_and_rusage(void) {
    int fds[2];
    CHECK(pipe(fds) == 0);
    pid_t p = fork();
    if (p == 0) {
        char c;
        close(fds[1]);
        (void)!read(fds[0], &c, 1);  /* wait for the parent's go */
        volatile unsigned long x = 0;
        for (unsigned long i = 0; i < 20000000; i++) x += i;
        _exit(7);
    }
    close(fds[0]);
    int st;
    CHECK(waitpid(p, &st, WNOHANG) == 0);
    CHECK(write(fds[1], "g", 1) == 1);
    struct rusage ru;
    CHECK(wait4(p, &st, 0, &ru) == p && WEXITSTATUS(st) == 7);
    CHECK(ru.ru_utime.tv_sec > 0 || ru.ru_utime.tv_usec > 0);
    close(fds[1]);
}

static void test_stop_continue(void) {
    pid_t p = fork();
    if (p == 0) { for (;;) pause(); }
    int st;
    CHECK(kill(p, SIGSTOP) == 0);
    CHECK(waitpid(p, &st, WUNTRACED) == p && WIFSTOPPED(st) && WSTOPSIG(st) == SIGSTOP);
    CHECK(kill(p, SIGCONT) == 0);
    CHECK(waitpid(p, &st, WCONTINUED) == p && WIFCONTINUED(st));
    CHECK(kill(p, SIGKILL) == 0);
    CHECK(waitpid(p, &st, 0) == p && WIFSIGNALED(st));
}

static void test_zombies(int n) {
    for (int i = 0; i < n; i++) {
        pid_t p = fork();
        CHECK(p >= 0);
        if (p == 0) _exit(i & 0x7f);
    }
    int reaped = 0, st;
    pid_t p;
    while ((p = wait(&st)) > 0) {
        CHECK(WIFEXITED(st));
        reaped++;
    }
    CHECK(errno == ECHILD && reaped == n);
}

static void test_ignored_sigchld_autoreaps(void) {
    signal(SIGCHLD, SIG_IGN);
    for (int i = 0; i < 5; i++) if (fork() == 0) _exit(0);
    /* POSIX: wait blocks until all children are gone, then ECHILD. */
    CHECK(wait(NULL) == -1 && errno == ECHILD);
    signal(SIGCHLD, SIG_DFL);
}

static void test_orphan(void) {
    int fds[2];
    CHECK(pipe(fds) == 0);
    pid_t mid = fork();
    if (mid == 0) {
        pid_t gc = fork();
        if (gc == 0) {
            char c;
            (void)!read(fds[0], &c, 1);  /* until the middle process is gone */
            pid_t pp = getppid();
            _exit(pp == 1 ? 0 : 9);
        }
        _exit(0);
    }
    int st;
    CHECK(waitpid(mid, &st, 0) == mid);
    /* We are init (pid 1) here: the grandchild is ours now. */
    CHECK(write(fds[1], "x", 1) == 1);
    pid_t got = wait(&st);
    CHECK(got > 0 && got != mid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    close(fds[0]);
    close(fds[1]);
}

static void test_pgrp_session(void) {
    CHECK(setsid() == -1 && errno == EPERM);  /* init leads its group */
    int fds[2];
    CHECK(pipe(fds) == 0);
    pid_t p = fork();
    if (p == 0) {
        char c;
        (void)!read(fds[0], &c, 1);
        if (getpgrp() != getpid()) _exit(1);
        /* A group leader cannot start a session; a child of it can. */
        if (setsid() != -1 || errno != EPERM) _exit(2);
        pid_t gc = fork();
        if (gc == 0) {
            if (setsid() != getpid() || getsid(0) != getpid()) _exit(1);
            if (setpgid(0, 0) != -1 || errno != EPERM) _exit(1);  /* session leader */
            _exit(0);
        }
        int gst;
        if (waitpid(gc, &gst, 0) != gc || gst != 0) _exit(3);
        if (getsid(gc) != -1 || errno != ESRCH) _exit(4);  /* reaped */
        _exit(0);
    }
    CHECK(setpgid(p, p) == 0 && getpgid(p) == p);
    CHECK(setpgid(p, 4242) == -1 && errno == EPERM);
    CHECK(setpgid(99999, 0) == -1 && errno == ESRCH);
    CHECK(write(fds[1], "x", 1) == 1);
    int st;
    CHECK(waitpid(-p, &st, 0) == p && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    close(fds[0]);
    close(fds[1]);
}

int main(int argc, char **argv) {
    int zombies = argc > 1 ? atoi(argv[1]) : 1000;
    CHECK(getpid() == 1);
    test_exit_codes();
    test_signals_status();
    test_cow();
    test_wnohang_and_rusage();
    test_stop_continue();
    test_zombies(zombies);
    test_ignored_sigchld_autoreaps();
    test_orphan();
    test_pgrp_session();
    printf("ok\n");
    return 0;
}
