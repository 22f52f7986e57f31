/* Signal handlers as a real program uses them: faults with si_addr, SIGFPE,
 * SIGILL, alarm, sigaltstack, sigsuspend, masks, SA_RESTART vs EINTR, a
 * handler changing the interrupted context, signalfd and POSIX timers.
 * Exits with the number of failures. */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

static int failures;
#define CHECK(c) do { if (!(c)) { fprintf(stderr, "FAIL %s:%d: %s (errno %d)\n", \
    __FILE__, __LINE__, #c, errno); failures++; } } while (0)

static sigjmp_buf env;
static volatile int got_sig, got_code;
static void *volatile got_addr;
static volatile uint64_t got_trapno, got_cr2;

static void on_fault(int sig, siginfo_t *si, void *ucv) {
    ucontext_t *uc = ucv;
    got_sig = sig;
    got_code = si->si_code;
    got_addr = si->si_addr;
    got_trapno = uc->uc_mcontext.gregs[REG_TRAPNO];
    got_cr2 = uc->uc_mcontext.gregs[REG_CR2];
    siglongjmp(env, 1);
}

static void install(int sig, void (*fn)(int, siginfo_t *, void *), int flags) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = fn;
    sa.sa_flags = SA_SIGINFO | flags;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(sig, &sa, NULL) == 0);
}

static volatile int zero;
static volatile int counted;
static void count(int sig) { (void)sig; counted++; }

/* A handler that skips the faulting 2-byte instruction (ud2) by editing rip. */
static void skip_ud2(int sig, siginfo_t *si, void *ucv) {
    (void)sig; (void)si;
    ucontext_t *uc = ucv;
    uc->uc_mcontext.gregs[REG_RIP] += 2;
    uc->uc_mcontext.gregs[REG_RAX] = 0x5151;
    counted++;
}

/* The handler gets a clean FPU and clobbers SSE/AVX state; sigreturn must
 * bring the interrupted code's registers (and MXCSR) back. */
static volatile unsigned handler_mxcsr;
static void clobber_fpu(int sig) {
    (void)sig;
    unsigned m;
    __asm__ volatile("stmxcsr %0" : "=m"(m));
    handler_mxcsr = m;
    m = 0x7f80 | 0x6000;  /* round toward zero */
    __asm__ volatile("ldmxcsr %0\n\tpxor %%xmm0, %%xmm0" :: "m"(m) : "xmm0");
    if (__builtin_cpu_supports("avx"))
        __asm__ volatile("vpxor %%ymm1, %%ymm1, %%ymm1" ::: "xmm1");
}

static void fpu_across_a_signal(void) {
    signal(SIGUSR1, clobber_fpu);
    unsigned mx = 0x1f80 | 0x2000, mx_after;  /* round down */
    double in = 2.5, out;
    double wide_in[4] = {1, 2, 3, 4}, wide_out[4] = {0};
    int avx = __builtin_cpu_supports("avx");
    if (avx) __asm__ volatile("vmovupd %0, %%ymm1" :: "m"(wide_in) : "xmm1");
    __asm__ volatile(
        "ldmxcsr %[mx]\n\t"
        "movsd %[in], %%xmm0\n\t"
        "mov $62, %%eax\n\t"      /* kill(getpid(), SIGUSR1): delivered on the way out */
        "mov %[pid], %%edi\n\t"
        "mov $10, %%esi\n\t"
        "syscall\n\t"
        "movsd %%xmm0, %[out]\n\t"
        "stmxcsr %[mx_after]\n\t"
        : [out] "=m"(out), [mx_after] "=m"(mx_after)
        : [in] "m"(in), [mx] "m"(mx), [pid] "r"(getpid())
        : "rax", "rdi", "rsi", "rcx", "r11", "xmm0", "memory");
    if (avx) __asm__ volatile("vmovupd %%ymm1, %0" : "=m"(wide_out) :: "memory");
    CHECK(handler_mxcsr == 0x1f80);  /* the handler starts from the default */
    CHECK(out == 2.5 && mx_after == mx);
    if (avx) CHECK(memcmp(wide_in, wide_out, sizeof wide_in) == 0);
    unsigned dflt = 0x1f80;
    __asm__ volatile("ldmxcsr %0" :: "m"(dflt));
}

static volatile uintptr_t handler_sp;
static void on_alt(int sig) { int here; (void)sig; handler_sp = (uintptr_t)&here; }

static volatile int nested_depth, nested_max;
static void nested(int sig) {
    nested_depth++;
    if (nested_depth > nested_max) nested_max = nested_depth;
    if (sig == SIGUSR1) raise(SIGUSR2);  /* SIGUSR2 not blocked: runs inside */
    nested_depth--;
}

int main(void) {
    /* SIGSEGV at an unmapped address, with si_addr and the #PF in uc_mcontext */
    install(SIGSEGV, on_fault, 0);
    if (sigsetjmp(env, 1) == 0) {
        *(volatile int *)0x10 = 1;
        CHECK(!"no SIGSEGV");
    }
    CHECK(got_sig == SIGSEGV && got_code == SEGV_MAPERR && got_addr == (void *)0x10);
    CHECK(got_trapno == 14 && got_cr2 == 0x10);

    /* SIGSEGV for a write to a read-only page: SEGV_ACCERR */
    char *ro = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(ro != MAP_FAILED);
    if (sigsetjmp(env, 1) == 0) {
        ro[5] = 1;
        CHECK(!"no SIGSEGV on a read-only page");
    }
    CHECK(got_sig == SIGSEGV && got_code == SEGV_ACCERR && got_addr == ro + 5);

    /* SIGFPE: integer divide by zero, si_addr = the instruction */
    install(SIGFPE, on_fault, 0);
    if (sigsetjmp(env, 1) == 0) {
        int q, b = zero;
        __asm__ volatile("cltd\n\tidivl %1" : "=a"(q) : "r"(b), "a"(1) : "edx");
        (void)q;
        CHECK(!"no SIGFPE");
    }
    CHECK(got_sig == SIGFPE && got_code == FPE_INTDIV && got_addr != NULL);

    /* SIGILL: ud2 */
    install(SIGILL, on_fault, 0);
    if (sigsetjmp(env, 1) == 0) {
        __asm__ volatile("ud2");
        CHECK(!"no SIGILL");
    }
    CHECK(got_sig == SIGILL && got_code == ILL_ILLOPN && got_addr != NULL);

    /* a handler that edits the context: execution resumes after ud2, rax changed */
    install(SIGILL, skip_ud2, 0);
    counted = 0;
    long rax;
    __asm__ volatile("xor %%eax, %%eax\n\tud2\n\t" : "=a"(rax) :: "memory");
    CHECK(counted == 1 && rax == 0x5151);

    fpu_across_a_signal();

    /* raise / kill / masks / pending */
    signal(SIGUSR1, count);
    counted = 0;
    CHECK(raise(SIGUSR1) == 0 && counted == 1);
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    CHECK(sigprocmask(SIG_BLOCK, &set, &old) == 0);
    kill(getpid(), SIGUSR1);
    kill(getpid(), SIGUSR1);  /* standard signals do not queue */
    CHECK(counted == 1);
    sigset_t pend;
    CHECK(sigpending(&pend) == 0 && sigismember(&pend, SIGUSR1));
    CHECK(sigprocmask(SIG_SETMASK, &old, NULL) == 0);
    CHECK(counted == 2);

    /* real-time signals queue, with their values, in order */
    sigemptyset(&set);
    sigaddset(&set, SIGRTMIN);
    sigprocmask(SIG_BLOCK, &set, NULL);
    for (int i = 0; i < 3; i++) {
        union sigval v = {.sival_int = 100 + i};
        CHECK(sigqueue(getpid(), SIGRTMIN, v) == 0);
    }
    for (int i = 0; i < 3; i++) {
        siginfo_t si;
        struct timespec zero_ts = {0, 0};
        CHECK(sigtimedwait(&set, &si, &zero_ts) == SIGRTMIN);
        CHECK(si.si_code == SI_QUEUE && si.si_value.sival_int == 100 + i && si.si_pid == getpid());
    }
    struct timespec short_ts = {0, 10000000};
    CHECK(sigtimedwait(&set, NULL, &short_ts) == -1 && errno == EAGAIN);

    /* nested handlers: USR1's handler raises USR2, which is not blocked */
    signal(SIGUSR1, nested);
    signal(SIGUSR2, nested);
    raise(SIGUSR1);
    CHECK(nested_max == 2 && nested_depth == 0);

    /* sigaltstack and SA_ONSTACK */
    stack_t ss = {.ss_sp = malloc(SIGSTKSZ), .ss_size = SIGSTKSZ, .ss_flags = 0};
    CHECK(sigaltstack(&ss, NULL) == 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alt;
    sa.sa_flags = SA_ONSTACK;
    sigaction(SIGUSR2, &sa, NULL);
    raise(SIGUSR2);
    CHECK(handler_sp > (uintptr_t)ss.ss_sp && handler_sp < (uintptr_t)ss.ss_sp + SIGSTKSZ);
    stack_t small = {.ss_sp = ss.ss_sp, .ss_size = 1024};
    CHECK(sigaltstack(&small, NULL) == -1 && errno == ENOMEM);

    /* alarm + pause; alarm + sigsuspend with the original mask restored */
    signal(SIGALRM, count);
    counted = 0;
    alarm(1);
    CHECK(alarm(1) == 1);
    struct itimerval it = {{0, 0}, {0, 20000}};
    CHECK(setitimer(ITIMER_REAL, &it, NULL) == 0);
    CHECK(pause() == -1 && errno == EINTR && counted == 1);
    sigemptyset(&set);
    sigaddset(&set, SIGALRM);
    sigprocmask(SIG_BLOCK, &set, &old);
    setitimer(ITIMER_REAL, &it, NULL);
    sigset_t none;
    sigemptyset(&none);
    CHECK(sigsuspend(&none) == -1 && errno == EINTR && counted == 2);
    sigset_t now_mask;
    sigprocmask(SIG_SETMASK, NULL, &now_mask);
    CHECK(sigismember(&now_mask, SIGALRM));  /* the mask from before sigsuspend */
    sigprocmask(SIG_SETMASK, &old, NULL);

    /* SA_RESTART: a blocking read restarts; without it, EINTR */
    int p[2];
    CHECK(pipe(p) == 0);
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = count;
    sa.sa_flags = 0;
    sigaction(SIGALRM, &sa, NULL);
    setitimer(ITIMER_REAL, &it, NULL);
    char c;
    CHECK(read(p[0], &c, 1) == -1 && errno == EINTR);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval twice = {{0, 20000}, {0, 20000}};
    counted = 0;
    setitimer(ITIMER_REAL, &twice, NULL);
    /* interrupted and restarted until the handler writes the data */
    pid_t me = getpid();
    (void)me;
    if (fork() == 0) {
        usleep(100000);
        write(p[1], "x", 1);
        _exit(0);
    }
    CHECK(read(p[0], &c, 1) == 1 && c == 'x' && counted >= 2);
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);

    /* signalfd */
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigprocmask(SIG_BLOCK, &set, NULL);
    int sfd = signalfd(-1, &set, SFD_NONBLOCK);
    CHECK(sfd >= 0);
    struct signalfd_siginfo ssi;
    CHECK(read(sfd, &ssi, sizeof ssi) == -1 && errno == EAGAIN);
    kill(getpid(), SIGUSR1);
    CHECK(read(sfd, &ssi, sizeof ssi) == sizeof ssi);
    CHECK(ssi.ssi_signo == SIGUSR1 && ssi.ssi_code == SI_USER && (pid_t)ssi.ssi_pid == getpid());

    /* a POSIX timer with SIGEV_SIGNAL and a value */
    timer_t tid;
    struct sigevent sev = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGRTMIN + 1};
    sev.sigev_value.sival_int = 0x2468;
    CHECK(timer_create(CLOCK_MONOTONIC, &sev, &tid) == 0);
    sigemptyset(&set);
    sigaddset(&set, SIGRTMIN + 1);
    sigprocmask(SIG_BLOCK, &set, NULL);
    struct itimerspec its = {{0, 0}, {0, 10000000}};
    CHECK(timer_settime(tid, 0, &its, NULL) == 0);
    siginfo_t si;
    CHECK(sigwaitinfo(&set, &si) == SIGRTMIN + 1);
    CHECK(si.si_code == SI_TIMER && si.si_value.sival_int == 0x2468);
    CHECK(timer_delete(tid) == 0);

    /* SIGKILL cannot be caught */
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = count;
    CHECK(sigaction(SIGKILL, &sa, NULL) == -1 && errno == EINVAL);

    if (failures == 0) printf("ok\n");
    return failures;
}
