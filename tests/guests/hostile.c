/* Raw `syscall` instructions with garbage arguments for every number in
 * [first, last): wild pointers, huge sizes, negative fds, random flags.
 * Prints each number before trying it, so the host can resume after the
 * guest dies of its own signal. A guest may die; the supervisor may not. */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint64_t state;
static uint64_t rnd(void) {
    state ^= state << 13; state ^= state >> 7; state ^= state << 17;
    return state;
}

static unsigned char buf[1 << 16];

static uint64_t arg(void) {
    switch (rnd() % 9) {
    case 0: return 0;
    case 1: return (uint64_t)-1;
    case 2: return rnd() % 64;                          /* small ints, fds */
    case 3: return (uint64_t)(buf + rnd() % sizeof buf); /* valid but random memory */
    case 4: return rnd();                                /* anything */
    case 5: return 0xffff800000000000ull + (rnd() & 0xffffff); /* kernel half */
    case 6: return 0x1000 + (rnd() & 0xfff);             /* low, unmapped */
    case 7: return (uint64_t)1 << (rnd() % 64);
    default: return (uint64_t)(int64_t)(int32_t)rnd();   /* negative ints */
    }
}

static int skip(long nr) {
    switch (nr) {
    case 60: case 231:            /* exit, exit_group: the loop would end */
    case 56: case 57: case 58: case 435: /* clone, fork, vfork, clone3 */
    case 59: case 322:            /* execve, execveat */
    case 15:                      /* rt_sigreturn: loads garbage registers */
    case 34: case 130:            /* pause, rt_sigsuspend: sleep forever */
        return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    long first = argc > 1 ? atol(argv[1]) : 0, last = argc > 2 ? atol(argv[2]) : 451;
    state = 0x9E3779B97F4A7C15ull ^ (uint64_t)first;
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = (unsigned char)rnd();
    setvbuf(stdout, NULL, _IONBF, 0);
    for (long nr = first; nr < last; nr++) {
        if (skip(nr)) continue;
        printf("%ld\n", nr);
        for (int round = 0; round < 4; round++) {
            alarm(2); /* a call that sleeps on garbage ends the guest, not the test */
            register uint64_t r10 __asm__("r10") = arg();
            register uint64_t r8 __asm__("r8") = arg();
            register uint64_t r9 __asm__("r9") = arg();
            uint64_t rax = (uint64_t)nr;
            __asm__ volatile("syscall"
                             : "+a"(rax)
                             : "D"(arg()), "S"(arg()), "d"(arg()), "r"(r10), "r"(r8), "r"(r9)
                             : "rcx", "r11", "memory");
            (void)rax;
        }
    }
    printf("done\n");
    return 0;
}
