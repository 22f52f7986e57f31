/* Attacks on the userland platform's native I/O path and its stub (run by
 * tests/integration/test_userland_native_escape.py). Each section counts
 * breaches; prints "ok" when there are none, else "BREACH <what> <value>".
 *  1. readv whose iovec array another thread of the process rewrites, in a
 *     spin, between a good buffer and the stub's writable altstack (0x4000).
 *  2. the same with the array in a MAP_SHARED page another process rewrites.
 *  3. a thread spinning forged replies into the stub's reply page (0x3000)
 *     while another maps and unmaps memory: an unmapped page must fault.
 *  4. 64 KiB native pipe writes/reads under preemption (a spinning thread):
 *     never short.
 *  5. fds next to the stub's memfd (1023, 1024, 1025) and close_range over
 *     it: data still right, memory calls still work.
 *  6. a pipe end used natively at fd 50 by a child that exits: the next
 *     child (likely on the reused stub) cannot reach it at 50.
 *  7. tasks sharing one address space (one stub) with their own fd tables
 *     (vfork; clone(CLONE_VM) without CLONE_FILES running alongside), each
 *     writing natively to its own pipe at the same fd number: no byte lands
 *     in the other's pipe.
 *  8. after native calls on a pipe and /dev/zero, /proc/self/fd and
 *     /proc/self/maps name nothing of the stub (its memfd, its pages).
 *  9. a signal while a read waits on an empty pipe (parked by the native
 *     path): with SA_RESTART the read restarts and gets the data; without,
 *     EINTR and no byte lost; the handler (which does native I/O on
 *     /dev/null and /dev/zero itself) runs once each time. The same for a
 *     write waiting on a full pipe.
 * 10. a fault with the stack pointer inside the stub's altstack (the host
 *     kernel then pushes the fault frame below it, over the reply page):
 *     the guest process dies of SIGSEGV, as on Linux, and nothing else: the
 *     next process (on the reused stub) still takes page faults, and a
 *     process that catches the SIGSEGV on its own altstack goes on taking
 *     them (the host kernel once reset the stub's own SIGSEGV handler). */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ALT 0x4000UL
#define REPLY 0x3000UL
static int breaches;
static void breach(const char *what, long v) {
    printf("BREACH %s %ld\n", what, v);
    fflush(stdout);
    breaches++;
}

static volatile int stop;
static sigjmp_buf jb;
static void on_segv(int s) { (void)s; siglongjmp(jb, 1); }

/* Whether the marker byte pattern shows at [a, a+n) (read directly: the
 * guest may read the stub's pages). */
static int has_marker(uintptr_t a, size_t n) {
    volatile int found = 0;
    if (sigsetjmp(jb, 1) == 0)
        for (size_t i = 0; i + 8 <= n; i++)
            if (memcmp((void *)(a + i), "MARKER!!", 8) == 0) { found = 1; break; }
    return found;
}

static char good[4096];
static struct iovec *shared_iov;

/* Long stretches at each value, so that a preemption leaves either one. */
static void stretch(void) {
    for (volatile int k = 0; k < 20000; k++) {
    }
}

static void *flipper(void *arg) {
    void *volatile *base = &((struct iovec *)arg)->iov_base;
    while (!stop) {
        *base = (void *)ALT;
        stretch();
        *base = good;
        stretch();
    }
    return NULL;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Until both values were seen a few times (or 5 s): an EFAULT is a check
 * that saw 0x4000, a success one that saw the good buffer. */
static void race_readv(struct iovec *iov, const char *what) {
    int p[2];
    if (pipe(p)) { breach("pipe", errno); return; }
    int faults = 0, oks = 0;
    double end = now() + 5;
    while ((faults < 5 || oks < 5) && now() < end) {
        if (write(p[1], "MARKER!!", 8) != 8) { breach("write", errno); break; }
        long r = readv(p[0], iov, 1);
        if (r == -1 && errno == EFAULT) {  /* the North saw 0x4000: drain */
            char t[8];
            faults++;
            if (read(p[0], t, 8) != 8) breach("drain", errno);
        } else if (r == 8) {
            oks++;
        } else {
            breach(what, r);
            break;
        }
        if (has_marker(ALT, 0x2000)) { breach(what, -1); break; }
    }
    if (faults == 0 || oks == 0) printf("%s: race not hit (%d %d)\n", what, faults, oks);
    close(p[0]);
    close(p[1]);
}

static void section_thread_race(void) {
    struct iovec *iov = malloc(sizeof *iov);
    iov->iov_base = good;
    iov->iov_len = 8;
    pthread_t t;
    stop = 0;
    pthread_create(&t, NULL, flipper, iov);
    race_readv(iov, "readv-thread-race");
    stop = 1;
    pthread_join(t, NULL);
}

static void section_process_race(void) {
    shared_iov = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    volatile int *quit = (volatile int *)(shared_iov + 8);
    shared_iov->iov_base = good;
    shared_iov->iov_len = 8;
    pid_t c = fork();
    if (c == 0) {
        void *volatile *base = &shared_iov->iov_base;
        while (!*quit) {
            *base = (void *)ALT;
            stretch();
            *base = good;
            stretch();
        }
        _exit(0);
    }
    race_readv(shared_iov, "readv-process-race");
    *quit = 1;
    waitpid(c, NULL, 0);
}

static void *forger(void *arg) {
    (void)arg;
    volatile uint64_t *rp = (volatile uint64_t *)REPLY;
    uint32_t s = 0;
    while (!stop) {  /* every plausible request number, "all done, result 0" */
        rp[1] = 64;
        rp[2] = 0;
        *(volatile uint32_t *)rp = ++s;
    }
    return NULL;
}

static void section_forged_reply(void) {
    volatile int writable = 0;
    if (sigsetjmp(jb, 1) == 0) { *(volatile uint32_t *)REPLY = 0; writable = 1; }
    if (!writable) { printf("reply page not guest-writable\n"); return; }
    pthread_t t;
    stop = 0;
    pthread_create(&t, NULL, forger, NULL);
    /* Each call lets the spinning forger run a whole timeslice: keep it short. */
    for (int i = 0; i < 40; i++) {
        volatile char *m = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) { breach("mmap", errno); break; }
        if (m[0] != 0 || m[4096] != 0) breach("mmap-not-zero", i);
        m[0] = 1;
        m[4096] = 2;
        munmap((void *)m, 8192);
        volatile int faulted = 0;
        if (sigsetjmp(jb, 1) == 0) { (void)m[4096]; } else faulted = 1;
        if (!faulted) { breach("unmapped-page-still-there", i); break; }
    }
    stop = 1;
    pthread_join(t, NULL);
}

static void *spinner(void *arg) {
    (void)arg;
    volatile unsigned long x = 0;
    while (!stop) x++;
    return NULL;
}

static void section_preempted_native(void) {
    static char buf[65536], in[65536];
    int p[2];
    if (pipe(p)) { breach("pipe", errno); return; }
    memset(buf, 'z', sizeof buf);
    pthread_t t;
    stop = 0;
    pthread_create(&t, NULL, spinner, NULL);
    struct iovec iv[16];
    for (int k = 0; k < 16; k++) { iv[k].iov_base = buf + k * 4096; iv[k].iov_len = 4096; }
    for (int i = 0; i < 400; i++) {
        long w = (i & 1) ? writev(p[1], iv, 16) : write(p[1], buf, sizeof buf);
        if (w != (long)sizeof buf) { breach("short-native-write", w); break; }
        long r = read(p[0], in, sizeof in);
        if (r != (long)sizeof in) { breach("short-native-read", r); break; }
    }
    stop = 1;
    pthread_join(t, NULL);
    close(p[0]);
    close(p[1]);
}

static void section_high_fds(void) {
    int p[2];
    char b[16];
    if (pipe(p)) { breach("pipe", errno); return; }
    const int nums[] = {1023, 1024, 1025};
    for (int k = 0; k < 3; k++) {
        int w = nums[k];
        if (dup2(p[1], w) != w) { printf("dup2 %d: %d\n", w, errno); continue; }
        for (int i = 0; i < 3; i++) {
            if (write(w, "abcdefgh", 8) != 8) breach("hi-write", w);
            if (read(p[0], b, 16) != 8 || memcmp(b, "abcdefgh", 8)) breach("hi-read", w);
        }
        close(w);
    }
    /* Read end at 1024 too. */
    if (dup2(p[0], 1024) == 1024) {
        write(p[1], "12345678", 8);
        if (read(1024, b, 16) != 8 || memcmp(b, "12345678", 8)) breach("read-1024", 0);
        close(1024);
    }
    close(p[0]);
    close(p[1]);
    syscall(SYS_close_range, 3, ~0U, 0);
    char *m = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) { breach("mmap-after-close-range", errno); return; }
    memset(m, 7, 1 << 20);
    if (m[12345] != 7) breach("memory-after-close-range", 0);
    munmap(m, 1 << 20);
}

static void section_reused_stub(void) {
    for (int round = 0; round < 5; round++) {
        pid_t a = fork();
        if (a == 0) {
            int p[2];
            if (pipe(p) || dup2(p[1], 50) != 50 || dup2(p[0], 51) != 51) _exit(2);
            for (int i = 0; i < 4; i++) {
                if (write(50, "MARKER!!", 8) != 8) _exit(3);
                char t[8];
                if (read(51, t, 8) != 8) _exit(4);
            }
            write(50, "MARKER!!", 8);  /* left in the pipe at exit */
            _exit(0);
        }
        int st;
        waitpid(a, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st)) breach("child-a", st);
        pid_t b = fork();
        if (b == 0) {
            char t[8];
            int bad = 0;
            if (read(51, t, 8) != -1 || errno != EBADF) bad |= 1;
            if (write(50, t, 8) != -1 || errno != EBADF) bad |= 2;
            struct iovec v = {t, 8};
            if (readv(51, &v, 1) != -1 || errno != EBADF) bad |= 4;
            _exit(bad);
        }
        waitpid(b, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st)) breach("child-b-reached-pipe", st);
    }
}

#define SAME 40  /* the fd number both fd tables use */
static int vfork_q[2];
static int vm_child(void *arg) {
    (void)arg;
    /* Own fd table (no CLONE_FILES): fd SAME is the other pipe here. */
    if (dup2(vfork_q[1], SAME) != SAME) return 2;
    for (int i = 0; i < 3000; i++)
        if (write(SAME, "C", 1) != 1) return 3;
    return 0;
}

static int only(int fd, char c, int want) {
    char b[4096];
    int n = 0;
    for (;;) {
        long r = read(fd, b, sizeof b);
        if (r <= 0) break;
        for (long i = 0; i < r; i++)
            if (b[i] != c) return -1;
        n += r;
    }
    return n == want ? 0 : n;
}

static void section_shared_stub_fd_tables(void) {
    int p[2];
    if (pipe2(p, O_NONBLOCK) || pipe2(vfork_q, O_NONBLOCK)) { breach("pipe", errno); return; }
    if (dup2(p[1], SAME) != SAME) { breach("dup2", errno); return; }
    if (write(SAME, "P", 1) != 1) breach("w5", errno);  /* installs p at SAME in the stub */
    pid_t c = vfork();
    if (c == 0) {
        if (dup2(vfork_q[1], SAME) != SAME) _exit(2);
        _exit(write(SAME, "C", 1) == 1 ? 0 : 3);
    }
    int st;
    waitpid(c, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st)) breach("vfork-child", st);
    if (write(SAME, "P", 1) != 1) breach("w5-after-vfork", errno);
    int r1 = only(p[0], 'P', 2), r2 = only(vfork_q[0], 'C', 1);
    if (r1) breach("vfork-parent-pipe", r1);
    if (r2) breach("vfork-child-pipe", r2);

    static char stack[65536];
    stop = 0;
    pid_t v = clone(vm_child, stack + sizeof stack, CLONE_VM | SIGCHLD, NULL);
    if (v < 0) { breach("clone-vm", errno); return; }
    int n = 0;
    for (int i = 0; i < 3000; i++) {
        if (write(SAME, "P", 1) != 1) { breach("clone-vm-parent-write", errno); break; }
        n++;
        if (i % 256 == 0) sched_yield();
    }
    waitpid(v, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st)) breach("clone-vm-child", st);
    r1 = only(p[0], 'P', n);
    r2 = only(vfork_q[0], 'C', 3000);
    if (r1) breach("clone-vm-parent-pipe", r1);
    if (r2) breach("clone-vm-child-pipe", r2);
    close(SAME);
    close(p[0]);
    close(p[1]);
    close(vfork_q[0]);
    close(vfork_q[1]);
}

static void section_proc_self(void) {
    int p[2];
    char b[4096];
    int z = open("/dev/zero", O_RDONLY);
    if (pipe(p) || z < 0) { breach("proc-setup", errno); return; }
    if (write(p[1], "x", 1) != 1 || read(p[0], b, 1) != 1 || read(z, b, 64) != 64)
        breach("proc-native", errno);
    DIR *d = opendir("/proc/self/fd");
    if (!d) { breach("opendir", errno); return; }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (atoi(e->d_name) >= 1024) breach("proc-fd-high", atoi(e->d_name));
        char path[300], link[256];
        snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
        long n = readlink(path, link, sizeof link - 1);
        if (n < 0) continue;
        link[n] = 0;
        if (strstr(link, "memfd") || strstr(link, "cove")) {
            printf("link %s -> %s\n", path, link);
            breach("proc-fd-link", atoi(e->d_name));
        }
    }
    closedir(d);
    int m = open("/proc/self/maps", O_RDONLY);
    long n = m < 0 ? -1 : read(m, b, sizeof b - 1);
    if (n > 0) {
        b[n] = 0;
        if (strstr(b, "memfd") || strstr(b, "cove") || strncmp(b, "00001000", 8) == 0 ||
            strstr(b, "\n00001000") || strstr(b, "\n00003000") || strstr(b, "\n00004000"))
            breach("proc-maps", 0);
    }
    if (m >= 0) close(m);
    close(z);
    close(p[0]);
    close(p[1]);
}

static volatile int usr1;
static int devnull = -1, devzero = -1;
static void on_usr1(int s) {
    (void)s;
    char z[256];
    memset(z, 1, sizeof z);
    if (write(devnull, z, sizeof z) == sizeof z && read(devzero, z, sizeof z) == sizeof z &&
        z[0] == 0 && z[255] == 0)
        usr1++;
    else
        usr1 += 100;
}

/* on_usr1 for SIGUSR1 (SA_RESTART or not), its count reset. */
static void arm_usr1(int restart) {
    struct sigaction sa = {0};
    sa.sa_handler = on_usr1;
    sa.sa_flags = restart ? SA_RESTART : 0;
    sigaction(SIGUSR1, &sa, NULL);
    usr1 = 0;
}

static void parked_write_signal(int restart) {
    int p[2];
    static char fill[65536], b[65536];
    if (pipe(p)) { breach("pipe", errno); return; }
    arm_usr1(restart);
    if (write(p[1], fill, sizeof fill) != sizeof fill) { breach("fill", errno); return; }
    pid_t parent = getpid(), c = fork();
    if (c == 0) {
        close(p[1]);
        usleep(50000);
        kill(parent, SIGUSR1);
        usleep(50000);
        long total = 0, r;
        while ((r = read(p[0], b, sizeof b)) > 0) total += r;
        _exit(total == (long)sizeof fill + (restart ? 100 : 0) ? 0 : 1);
    }
    long r = write(p[1], "0123456789012345678901234567890123456789012345678901234567890123456789"
                         "012345678901234567890123456789", 100);
    int e = errno;
    if (restart ? r != 100 : (r != -1 || e != EINTR))
        breach(restart ? "parked-write-restart" : "parked-write-eintr", r);
    close(p[1]);
    int st;
    waitpid(c, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st)) breach("parked-write-drained", st);
    if (usr1 != 1) breach("parked-write-handler-count", usr1);
    close(p[0]);
}

static void parked_signal(int restart) {
    int p[2];
    char b[16];
    if (pipe(p)) { breach("pipe", errno); return; }
    arm_usr1(restart);
    pid_t parent = getpid(), c = fork();
    if (c == 0) {
        usleep(50000);
        kill(parent, SIGUSR1);
        usleep(50000);
        _exit(write(p[1], "late", 4) == 4 ? 0 : 1);
    }
    long r = read(p[0], b, sizeof b);
    int e = errno;
    if (restart ? (r != 4 || memcmp(b, "late", 4)) : (r != -1 || e != EINTR))
        breach(restart ? "parked-restart" : "parked-eintr", r);
    if (!restart && (read(p[0], b, sizeof b) != 4 || memcmp(b, "late", 4)))
        breach("parked-eintr-lost", 0);
    if (usr1 != 1) breach("parked-handler-count", usr1);
    waitpid(c, NULL, 0);
    close(p[0]);
    close(p[1]);
}

static void section_parked_signal(void) {
    devnull = open("/dev/null", O_WRONLY);
    devzero = open("/dev/zero", O_RDONLY);
    parked_signal(1);
    parked_signal(0);
    parked_write_signal(1);
    parked_write_signal(0);
    /* The signal and the data back to back: woken by both at once. */
    int p[2];
    char b[16];
    if (pipe(p)) { breach("pipe", errno); return; }
    arm_usr1(1);
    pid_t parent = getpid(), c = fork();
    if (c == 0) {
        for (int i = 0; i < 200; i++) {
            kill(parent, SIGUSR1);
            if (write(p[1], "D", 1) != 1) _exit(1);
            if (i % 7 == 0) sched_yield();
        }
        _exit(0);
    }
    int got = 0;
    while (got < 200) {
        long r = read(p[0], b, 1);
        if (r != 1 || b[0] != 'D') { breach("woken-and-signalled", r); break; }
        got++;
    }
    waitpid(c, NULL, 0);
    if (usr1 < 1 || usr1 > 200) breach("woken-and-signalled-handlers", usr1);
    close(p[0]);
    close(p[1]);
    close(devnull);
    close(devzero);
}

static void fault_on_altstack(long sp, long addr) {
    __asm__ volatile("mov %0, %%rsp\n mov (%1), %%rax\n ud2" : : "r"(sp), "r"(addr) : "rax", "memory");
}

static void section_altstack_rsp(void) {
    const long sps[] = {0x4100, 0x4008, 0x5ff0, 0x3ff8, 0x6000};
    const long addrs[] = {0x7000, 0x123456789000L, 0x4000};  /* unmapped; non-canonical-ish; stub */
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 3; j++) {
            pid_t c = fork();
            if (c == 0) {
                signal(SIGSEGV, SIG_DFL);
                fault_on_altstack(sps[i], addrs[j]);
                _exit(7);
            }
            int st;
            waitpid(c, &st, 0);
            /* 0x4000 is readable: the load works and ud2 raises SIGILL. */
            int want = addrs[j] == 0x4000 ? SIGILL : SIGSEGV;
            if (!WIFSIGNALED(st) || (WTERMSIG(st) != want && WTERMSIG(st) != SIGSEGV))
                breach("altstack-rsp", (long)i * 10 + j);
        }
    /* The next process, on the stub the last one left, takes page faults. */
    pid_t c = fork();
    if (c == 0) {
        volatile char *m = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        for (int i = 0; i < (1 << 20); i += 4096) m[i] = 1;
        _exit(0);
    }
    int st;
    waitpid(c, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st)) breach("fault-after-altstack-rsp", st);
    /* A process that catches it on its own altstack goes on. */
    static char alt[65536];
    stack_t ss = {.ss_sp = alt, .ss_size = sizeof alt};
    sigaltstack(&ss, NULL);
    struct sigaction sa = {0};
    sa.sa_handler = on_segv;
    sa.sa_flags = SA_NODEFER | SA_ONSTACK;
    sigaction(SIGSEGV, &sa, NULL);
    for (int k = 0; k < 3; k++) {
        if (sigsetjmp(jb, 1) == 0) fault_on_altstack(0x4100, 0x7000);
        volatile char *m = mmap(NULL, 1 << 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        for (int i = 0; i < (1 << 16); i += 4096) m[i] = 1;
        munmap((void *)m, 1 << 16);
    }
    ss.ss_flags = SS_DISABLE;
    sigaltstack(&ss, NULL);
    sa.sa_flags = SA_NODEFER;
    sigaction(SIGSEGV, &sa, NULL);
    /* The platform still works for this process. */
    char *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) { breach("mmap-after-altstack-rsp", errno); return; }
    m[0] = 1;
    munmap(m, 4096);
}

#ifdef TIMING
#define T(f) do { struct timespec a, b; clock_gettime(CLOCK_MONOTONIC, &a); f(); \
    clock_gettime(CLOCK_MONOTONIC, &b); fprintf(stderr, "%s %.2f s\n", #f, \
    (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9); } while (0)
#else
#define T(f) f()
#endif

int main(void) {
    struct rlimit rl = {4096, 4096};
    if (setrlimit(RLIMIT_NOFILE, &rl)) printf("setrlimit: %d\n", errno);
    setvbuf(stdout, NULL, _IONBF, 0);
    struct sigaction sa = {0};
    sa.sa_handler = on_segv;
    sa.sa_flags = SA_NODEFER;
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
    T(section_thread_race);
    T(section_process_race);
    T(section_forged_reply);
    T(section_preempted_native);
    T(section_reused_stub);
    T(section_shared_stub_fd_tables);
    T(section_proc_self);
    T(section_altstack_rsp);
    T(section_parked_signal);
    T(section_high_fds);
    if (!breaches) printf("ok\n");
    return breaches ? 1 : 0;
}
