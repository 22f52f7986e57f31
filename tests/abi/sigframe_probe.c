/* Let the host kernel deliver a signal and report, as "key value" lines, the
 * frame it built: raw bytes of the rt_sigframe and the fpstate area, plus the
 * same facts read through glibc's accessors. tests/abi/test_abi_sigframe.py
 * decodes the raw bytes with cove's layouts and compares.
 *
 * usage: sigframe_probe raise|altstack|segv|chld|timer|sigqueue
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/ucontext.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct kernel_sigaction { void *handler; unsigned long flags; void *restorer; uint64_t mask; };

static volatile int done;
static unsigned long entry_rsp;
static unsigned char frame[440];
static unsigned char fpbuf[16384];
static unsigned long fp_len;
static unsigned long uc_addr, info_addr, fp_addr, uc_flags, uc_link, sigmask;
static unsigned long ss_sp, ss_size;
static int ss_flags;
static unsigned long long gregs[NGREG];
static struct {  /* siginfo as glibc's accessors read it (si_* are macros) */
    int signo, errno_, code, pid, status, timerid, overrun;
    unsigned int uid;
    unsigned long addr, value;
} g;
static struct kernel_sigaction kact;
static int the_sig;
static stack_t alt;

/* The handler entry: record rsp exactly as the kernel left it, then tail-jump
 * (no push) to the C part, which returns straight to pretcode. */
void handler_c(int sig, siginfo_t *info, void *ucv, unsigned long rsp);
__asm__(".text\n.globl handler_entry\nhandler_entry:\n\tmov %rsp, %rcx\n\tjmp handler_c\n");
void handler_entry(int, siginfo_t *, void *);

static void report(void);

void handler_c(int sig, siginfo_t *info, void *ucv, unsigned long rsp) {
    ucontext_t *uc = ucv;
    entry_rsp = rsp;
    memcpy(frame, (void *)rsp, sizeof frame);
    uc_addr = (unsigned long)uc;
    info_addr = (unsigned long)info;
    fp_addr = (unsigned long)uc->uc_mcontext.fpregs;
    uc_flags = uc->uc_flags;
    uc_link = (unsigned long)uc->uc_link;
    ss_sp = (unsigned long)uc->uc_stack.ss_sp;
    ss_flags = uc->uc_stack.ss_flags;
    ss_size = uc->uc_stack.ss_size;
    memcpy(&sigmask, &uc->uc_sigmask, 8);
    for (int i = 0; i < NGREG; i++) gregs[i] = uc->uc_mcontext.gregs[i];
    if (fp_addr) {
        /* extended_size lives in sw_reserved (offset 468 of the FXSAVE area). */
        uint32_t ext;
        memcpy(&ext, (char *)fp_addr + 468, 4);
        fp_len = ext >= 512 && ext <= sizeof fpbuf ? ext : 512;
        memcpy(fpbuf, (void *)fp_addr, fp_len);
    }
    g.signo = info->si_signo;
    g.errno_ = info->si_errno;
    g.code = info->si_code;
    g.pid = info->si_pid;
    g.uid = info->si_uid;
    g.status = info->si_status;
    g.addr = (unsigned long)info->si_addr;
    g.value = (unsigned long)info->si_value.sival_ptr;
    g.timerid = info->si_timerid;
    g.overrun = info->si_overrun;
    done = 1;
    if (sig == SIGSEGV) {  /* returning would fault again */
        report();
        _exit(0);
    }
}

static void hex(const char *key, const unsigned char *p, unsigned long n) {
    printf("%s ", key);
    for (unsigned long i = 0; i < n; i++) printf("%02x", p[i]);
    printf("\n");
}

static void report(void) {
    printf("entry %lu\nuc %lu\ninfo %lu\nfpstate %lu\nuc_flags %lu\nuc_link %lu\n",
           entry_rsp, uc_addr, info_addr, fp_addr, uc_flags, uc_link);
    printf("ss_sp %lu\nss_flags %d\nss_size %lu\nsigmask %lu\n", ss_sp, ss_flags, ss_size, sigmask);
    printf("alt_sp %lu\nalt_size %lu\n", (unsigned long)alt.ss_sp, (unsigned long)alt.ss_size);
    printf("gregs");
    for (int i = 0; i < NGREG; i++) printf(" %llu", gregs[i]);
    printf("\nsi_signo %d\nsi_errno %d\nsi_code %d\nsi_pid %d\nsi_uid %u\n", g.signo, g.errno_,
           g.code, g.pid, g.uid);
    printf("si_status %d\nsi_addr %lu\nsi_value %lu\nsi_timerid %d\nsi_overrun %d\n", g.status,
           g.addr, g.value, g.timerid, g.overrun);
    printf("handler %lu\npid %d\nuid %u\n", (unsigned long)handler_entry, getpid(), getuid());
    hex("kact", (unsigned char *)&kact, sizeof kact);
    hex("frame", frame, sizeof frame);
    hex("fp", fpbuf, fp_len);
    fflush(stdout);
}

static void install(int sig, int flags) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = handler_entry;
    sa.sa_flags = SA_SIGINFO | flags;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGWINCH);
    if (sigaction(sig, &sa, NULL)) { perror("sigaction"); exit(2); }
    /* Read back what glibc handed the kernel: the kernel's struct sigaction. */
    if (syscall(SYS_rt_sigaction, sig, NULL, &kact, 8)) { perror("rt_sigaction"); exit(2); }
    the_sig = sig;
}

/* For asynchronous signals: block first, then wait with it unblocked, so
 * the signal cannot slip in between the check and the wait. */
static void block_it(void) {
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, the_sig);
    sigprocmask(SIG_BLOCK, &s, NULL);
}

static void wait_done(void) {
    sigset_t m;
    sigprocmask(SIG_BLOCK, NULL, &m);
    sigdelset(&m, the_sig);
    while (!done) sigsuspend(&m);
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "raise";
    sigset_t usr2;
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);  /* a non-empty mask before delivery, to find in uc_sigmask */
    sigprocmask(SIG_BLOCK, &usr2, NULL);
    if (!strcmp(mode, "raise")) {
        install(SIGUSR1, 0);
        raise(SIGUSR1);
    } else if (!strcmp(mode, "altstack")) {
        alt.ss_size = 1 << 16;
        alt.ss_sp = malloc(alt.ss_size);
        alt.ss_flags = 0;
        if (sigaltstack(&alt, NULL)) { perror("sigaltstack"); return 2; }
        install(SIGUSR1, SA_ONSTACK);
        raise(SIGUSR1);
    } else if (!strcmp(mode, "segv")) {
        install(SIGSEGV, 0);
        *(volatile int *)0x10 = 1;
    } else if (!strcmp(mode, "chld")) {
        install(SIGCHLD, 0);
        block_it();
        pid_t child = fork();
        if (child == 0) _exit(7);
        wait_done();
        printf("child %d\n", child);
        waitpid(child, NULL, 0);
    } else if (!strcmp(mode, "timer")) {
        install(SIGRTMIN, 0);
        block_it();
        struct sigevent sev;
        memset(&sev, 0, sizeof sev);
        sev.sigev_notify = SIGEV_SIGNAL;
        sev.sigev_signo = SIGRTMIN;
        sev.sigev_value.sival_ptr = (void *)0x1234abcdUL;
        timer_t t;
        if (timer_create(CLOCK_MONOTONIC, &sev, &t)) { perror("timer_create"); return 2; }
        struct itimerspec its = {{0, 0}, {0, 1000000}};
        timer_settime(t, 0, &its, NULL);
        wait_done();
        printf("timer %ld\n", (long)(intptr_t)t);
    } else if (!strcmp(mode, "sigqueue")) {
        install(SIGUSR1, 0);
        block_it();
        union sigval v = {.sival_ptr = (void *)0xfeedf00dUL};
        sigqueue(getpid(), SIGUSR1, v);
        wait_done();
    } else {
        return 2;
    }
    if (!done) { fprintf(stderr, "no signal\n"); return 3; }
    report();
    return 0;
}
