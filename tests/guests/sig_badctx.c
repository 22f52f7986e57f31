/* A handler that corrupts the context it returns to (argv[1] picks how):
 * the process must die of the same signal as on Linux, and the supervisor
 * must not notice anything. Prints "survived" when the return worked. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>
#include <unistd.h>

static int mode;

static void corrupt(int sig, siginfo_t *si, void *ucv) {
    ucontext_t *uc = ucv;
    (void)sig; (void)si;
    greg_t *g = uc->uc_mcontext.gregs;
    switch (mode) {
    case 0: g[REG_RSP] = (greg_t)0x8000000000000000ULL; break;  /* non-canonical stack */
    case 1: g[REG_RIP] = (greg_t)0x800000000000ULL; break;  /* non-canonical rip */
    case 2: g[REG_RIP] = (greg_t)0xffffffff80000000ULL; break;  /* kernel rip */
    case 3: g[REG_EFL] |= 0x100; break;  /* TF: a trap after one instruction */
    case 4: g[REG_CSGSFS] = 0x23 | (0x2bULL << 48); break;  /* 32-bit code segment */
    case 5: uc->uc_mcontext.fpregs = (void *)0x10; break;  /* unreadable fpstate */
    case 6: g[REG_EFL] |= 0x3000 | 0x200000; break;  /* IOPL, ID: not the guest's */
    case 7: break;  /* nothing: must survive */
    }
}

int main(int argc, char **argv) {
    mode = argc > 1 ? atoi(argv[1]) : 7;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = corrupt;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGUSR1, &sa, NULL);
    raise(SIGUSR1);
    printf("survived\n");
    return 0;
}
