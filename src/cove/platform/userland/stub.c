/* The userland platform's stub process (built by build.py with gcc -static -nostdlib).

   The supervisor execs it once per sandbox (the "anchor") and forks every
   guest address space's stub from it. Its life:
     1. exec'd by the supervisor with fd 3 = the guest-memory memfd and fd 4 =
        the read end of a pipe; it waits on the pipe until the supervisor has
        PTRACE_SEIZEd it.
     2. closes every other fd, moves the memfd up to the highest fd its
        RLIMIT_NOFILE allows (at most STUB_FD_TOP - 1: above every fd number
        the supervisor may install a guest's host pipe at with
        SECCOMP_ADDFD_FLAG_SETFD; reported in r12), sets no_new_privs, death
        signal, rlimits, and unshares what namespaces it may (each
        best-effort; the result is reported to the supervisor in rbx).
     3. copies the runtime code below to RT_ADDR, a page the North never maps
        for a guest (below vm.mmap_min_addr's usual 64 KiB and cove's
        MMAP_MIN), and stops there on an int3.
   From then on its main thread (the "injector") runs only the runtime code,
   with registers the supervisor sets: one syscall, or a batch read from the
   read-only mailbox page; it never runs guest code and has no seccomp
   filter. The supervisor unmaps everything else (this binary, the stack,
   vdso, vvar) and maps the mailbox and the fault altstack. Guest threads
   are clones of a fork's injector that install the guest seccomp filter on
   themselves before any guest instruction runs.

   No libc: everything here is a raw syscall. */

#include <asm/unistd.h>
#include <linux/prctl.h>
#include <linux/resource.h>
#include <linux/sched.h>
#include <linux/mman.h>
#include <linux/mount.h>
#include <linux/signal.h>

#define RT_ADDR 0x1000UL
/* The batch server's words (layout.py): the mailbox's request number and
   entry count, its batch entries, and the reply page's done / entries done /
   last result. */
#define MB_GO 0x2060
#define MB_COUNT 0x2068
#define MB_BATCH 0x2400
#define RP_DONE 0x3000
#define RP_NDONE 0x3008
#define RP_RAX 0x3010
#define STR_(x) #x
#define STR(x) STR_(x)
/* One above the memfd's fd when the hard RLIMIT_NOFILE allows (layout.py). */
#define STUB_FD_TOP 1025UL

/* Reported in rbx at the first stop: which defences took effect. */
#define OK_NO_NEW_PRIVS (1 << 0)
#define OK_USERNS (1 << 1)
#define OK_MOUNTNS (1 << 2)
#define OK_NETNS (1 << 3)
#define OK_IPCNS (1 << 4)
#define OK_UTSNS (1 << 5)
#define OK_CHROOT (1 << 6)
#define OK_RLIMITS (1 << 7)
#define OK_CLOSE_RANGE (1 << 8)
#define OK_CGROUPNS (1 << 9)

static long sc6(long n, long a, long b, long c, long d, long e, long f) {
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}
#define sc(n, a, b, c) sc6((n), (long)(a), (long)(b), (long)(c), 0, 0, 0)

/* The runtime code, position independent, copied to RT_ADDR. Offsets are
   fixed (the supervisor jumps to them): keep them in step with layout.py.
     +0x00 inject: syscall; int3         one call with the registers as set
     +0x10 batch:  r12 = entries, r13 = count; each entry is 7 u64s
                   (nr, a0..a5); stops with rbx = entries done and rax = the
                   last result (an errno if rbx < count)
     +0x80 park:   int3; jmp park        where a fresh thread waits
     +0xc0 fault:  int3; ud2             SIGSEGV handler (on the altstack):
                   the supervisor reads the CPU's error code from the frame
     +0x100 serve: the injector's batch server, without ptrace: it sleeps in
                   FUTEX_WAIT on the mailbox's request number (r15 = the last
                   one seen); on a new one it runs the mailbox's batch as
                   above, writes entries done and the last result to the
                   reply page, then the request number (done), and wakes the
                   supervisor with FUTEX_WAKE on it. Nothing it reads can be
                   written by a guest (the mailbox is read-only), and the
                   supervisor only asks while no guest thread of this stub
                   runs, so none can fake the reply. */
/* Run the r13 syscalls described at r12 (56-byte entries: nr, six args) in
 * order; stops at the first error. rbx: how many ran; rax: the last result.
 * `again`/`done` name the local labels, so the loop can appear twice. */
#define BATCH_LOOP(again, done) \
    "  xor %ebx, %ebx\n" \
    again ":\n" \
    "  cmp %r13, %rbx\n" \
    "  jae " done "f\n" \
    "  imul $56, %rbx, %r14\n" \
    "  add %r12, %r14\n" \
    "  mov 0(%r14), %rax\n" \
    "  mov 8(%r14), %rdi\n" \
    "  mov 16(%r14), %rsi\n" \
    "  mov 24(%r14), %rdx\n" \
    "  mov 32(%r14), %r10\n" \
    "  mov 40(%r14), %r8\n" \
    "  mov 48(%r14), %r9\n" \
    "  syscall\n" \
    "  cmp $-4095, %rax\n" \
    "  jae " done "f\n" \
    "  inc %rbx\n" \
    "  jmp " again "b\n" \
    done ":\n"

__asm__(
    ".pushsection .text\n"
    ".globl rt_start\n"
    ".globl rt_end\n"
    ".balign 16\n"
    "rt_start:\n"
    "  syscall\n"
    "  int3\n"
    "  .balign 16, 0xcc\n"
    "rt_batch:\n"
    BATCH_LOOP("1", "2")
    "  int3\n"
    "  .balign 128, 0xcc\n"
    "rt_park:\n"
    "  int3\n"
    "  jmp rt_park\n"
    "  .balign 64, 0xcc\n"
    "rt_fault:\n"
    "  int3\n"
    "  ud2\n"
    "  .balign 64, 0xcc\n"
    "rt_serve:\n"
    "  mov $202, %eax\n"          /* futex(GO, FUTEX_WAIT, r15, NULL) */
    "  mov $" STR(MB_GO) ", %edi\n"
    "  xor %esi, %esi\n"
    "  mov %r15d, %edx\n"
    "  xor %r10d, %r10d\n"
    "  syscall\n"
    "  mov " STR(MB_GO) ", %eax\n"
    "  cmp %r15d, %eax\n"
    "  je rt_serve\n"             /* nothing new: EAGAIN, EINTR or spurious */
    "  mov %eax, %r15d\n"
    "  mov " STR(MB_COUNT) ", %r13\n"
    "  mov $" STR(MB_BATCH) ", %r12\n"
    BATCH_LOOP("3", "4")
    "  mov %rbx, " STR(RP_NDONE) "\n"
    "  mov %rax, " STR(RP_RAX) "\n"
    "  mov %r15d, " STR(RP_DONE) "\n"
    "  mov $202, %eax\n"          /* futex(DONE, FUTEX_WAKE, 1) */
    "  mov $" STR(RP_DONE) ", %edi\n"
    "  mov $1, %esi\n"
    "  mov $1, %edx\n"
    "  syscall\n"
    "  jmp rt_serve\n"
    "  .balign 16, 0xcc\n"
    "rt_end:\n"
    ".popsection\n");

extern const char rt_start[], rt_end[];

static void lim(int res, unsigned long v, long *ok) {
    struct rlimit r = {v, v};
    if (sc(__NR_setrlimit, res, &r, 0) != 0) *ok = 0;
}

__attribute__((noreturn, used)) void stub_main(void) {
    long ok = 0;
    char c;

    /* 1. Wait until the supervisor has attached. */
    while (sc(__NR_read, 4, &c, 1) == -4 /* EINTR */) {
    }
    sc(__NR_close, 4, 0, 0);

    /* 2. No fd but the memfd (3). */
    if (sc(__NR_close_range, 0, 2, 0) == 0 && sc(__NR_close_range, 5, ~0U, 0) == 0)
        ok |= OK_CLOSE_RANGE;
    else
        for (int fd = 0; fd < 1024; fd++)
            if (fd != 3) sc(__NR_close, fd, 0, 0);

    /* The memfd goes to the top of the fd range: fds below it are the ones
       the supervisor may fill with a guest's host pipes (SECCOMP_ADDFD). */
    struct rlimit cur = {0, 0};
    unsigned long top = 4;
    if (sc6(__NR_prlimit64, 0, RLIMIT_NOFILE, 0, (long)&cur, 0, 0) == 0)
        top = cur.rlim_max < STUB_FD_TOP ? cur.rlim_max : STUB_FD_TOP;
    struct rlimit nofile = {top, top};
    long memfd = 3;
    if (top > 4 && sc(__NR_setrlimit, RLIMIT_NOFILE, &nofile, 0) == 0 &&
        sc6(__NR_dup3, 3, top - 1, 0x80000 /* O_CLOEXEC */, 0, 0, 0) == (long)(top - 1)) {
        sc(__NR_close, 3, 0, 0);
        memfd = top - 1;
    }

    sc6(__NR_prctl, PR_SET_PDEATHSIG, 9 /* SIGKILL */, 0, 0, 0, 0);
    if (sc6(__NR_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0, 0) == 0) ok |= OK_NO_NEW_PRIVS;

    long rl = OK_RLIMITS;
    lim(RLIMIT_CORE, 0, &rl);
    lim(RLIMIT_FSIZE, 0, &rl);
    lim(RLIMIT_MEMLOCK, 0, &rl);
    lim(RLIMIT_MSGQUEUE, 0, &rl);
    lim(RLIMIT_LOCKS, 0, &rl);
    ok |= rl;

    /* Namespaces: defence in depth only (the seccomp filter is the wall). */
    if (sc(__NR_unshare, CLONE_NEWUSER, 0, 0) == 0) ok |= OK_USERNS;
    if (sc(__NR_unshare, CLONE_NEWNS, 0, 0) == 0) {
        ok |= OK_MOUNTNS;
        /* An empty, private root: no host path resolves from here. */
        if (sc6(__NR_mount, (long)"none", (long)"/", 0, MS_REC | MS_PRIVATE, 0, 0) == 0 &&
            sc6(__NR_mount, (long)"none", (long)"/tmp", (long)"tmpfs",
                MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, (long)"size=4k,mode=0111", 0) == 0 &&
            sc(__NR_chdir, "/tmp", 0, 0) == 0 && sc(__NR_chroot, ".", 0, 0) == 0 &&
            sc(__NR_chdir, "/", 0, 0) == 0)
            ok |= OK_CHROOT;
    }
    if (sc(__NR_unshare, CLONE_NEWNET, 0, 0) == 0) ok |= OK_NETNS;
    if (sc(__NR_unshare, CLONE_NEWIPC, 0, 0) == 0) ok |= OK_IPCNS;
    if (sc(__NR_unshare, CLONE_NEWUTS, 0, 0) == 0) ok |= OK_UTSNS;
    if (sc(__NR_unshare, CLONE_NEWCGROUP, 0, 0) == 0) ok |= OK_CGROUPNS;

    /* 3. The runtime page, then stop in it. */
    long p = sc6(__NR_mmap, RT_ADDR, 4096, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (p != (long)RT_ADDR) sc(__NR_exit_group, 120, 0, 0);
    for (long i = 0; i < rt_end - rt_start; i++) ((volatile char *)RT_ADDR)[i] = rt_start[i];
    if (sc(__NR_mprotect, RT_ADDR, 4096, PROT_READ | PROT_EXEC) != 0) sc(__NR_exit_group, 121, 0, 0);
    __asm__ volatile("mov %0, %%rbx\n mov %1, %%r12\n jmp *%2"
                     : : "r"(ok), "r"(memfd), "r"(RT_ADDR + 0x80) : "rbx", "r12");
    __builtin_unreachable();
}

__asm__(
    ".pushsection .text\n"
    ".globl _start\n"
    "_start:\n"
    "  and $-16, %rsp\n"
    "  call stub_main\n"
    "  hlt\n"
    ".popsection\n");
