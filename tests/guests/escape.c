/* A guest that tries to get out, with raw syscalls (no libc wrapper can
 * soften them): denied calls, host paths by every route, fds it was never
 * given, ptrace of the supervisor and of its own child, cove's stub pages on
 * the userland platform (mprotect, munmap, mremap onto them, writes, jumps
 * into them), foreign syscall ABIs, the syscalls that skip seccomp.
 *
 * argv: 1 = host path of a secret file (outside the sandbox's root),
 *       2 = host directory that must stay empty, 3 = the supervisor's host pid.
 * Prints one "BREACH <what> <result>" line per attempt that worked, "done"
 * at the end, and exits with the number of breaches (0: nothing got out). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

#define STUB_CODE 0x1000L
#define STUB_MAILBOX 0x2000L
#define STUB_ALTSTACK 0x4000L

static int breaches;
static const char *secret, *hostdir;
static long hostpid;
static char buf[8192];

static long raw(long nr, long a, long b, long c, long d, long e, long f) {
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}

static void breach(const char *what, long r) {
    printf("BREACH %s %ld\n", what, r);
    breaches++;
}

/* A call that must fail (a negative errno). */
static void must_fail(const char *what, long r) {
    if (r >= 0 || r < -4095) breach(what, r);
}

/* Runs fn in a forked child; its wait status. */
static int in_child(void (*fn)(void)) {
    pid_t p = fork();
    if (p == 0) {
        fn();
        _exit(0);
    }
    int st = 0;
    waitpid(p, &st, 0);
    return st;
}

/* --- 1. calls that must never work ------------------------------------------ */
static void denied(void) {
    struct iovec local = {buf, 64}, remote = {(void *)0x400000, 64};
    must_fail("ptrace-attach-supervisor", raw(SYS_ptrace, 16 /* ATTACH */, hostpid, 0, 0, 0, 0));
    must_fail("ptrace-seize-supervisor", raw(SYS_ptrace, 0x4206, hostpid, 0, 0, 0, 0));
    must_fail("ptrace-attach-parent", raw(SYS_ptrace, 16, getppid(), 0, 0, 0, 0));
    must_fail("process_vm_readv", raw(SYS_process_vm_readv, hostpid, (long)&local, 1,
                                      (long)&remote, 1, 0));
    must_fail("process_vm_writev", raw(SYS_process_vm_writev, hostpid, (long)&local, 1,
                                       (long)&remote, 1, 0));
    must_fail("pidfd_open-supervisor", raw(SYS_pidfd_open, hostpid, 0, 0, 0, 0, 0));
    must_fail("kill-supervisor", raw(SYS_kill, hostpid, SIGKILL, 0, 0, 0, 0));
    must_fail("tgkill-supervisor", raw(SYS_tgkill, hostpid, hostpid, SIGKILL, 0, 0, 0));
    must_fail("kcmp", raw(SYS_kcmp, hostpid, getpid(), 0, 0, 0, 0));
    must_fail("mount", raw(SYS_mount, (long)"none", (long)"/", (long)"tmpfs", 0, 0, 0));
    must_fail("umount", raw(SYS_umount2, (long)"/", 2, 0, 0, 0, 0));
    must_fail("pivot_root", raw(SYS_pivot_root, (long)"/", (long)"/", 0, 0, 0, 0));
    must_fail("unshare-user", raw(SYS_unshare, 0x10000000, 0, 0, 0, 0, 0));
    must_fail("unshare-mount", raw(SYS_unshare, 0x00020000, 0, 0, 0, 0, 0));
    must_fail("setns", raw(SYS_setns, 0, 0, 0, 0, 0, 0));
    must_fail("bpf", raw(SYS_bpf, 0 /* MAP_CREATE */, (long)buf, 64, 0, 0, 0));
    must_fail("perf_event_open", raw(SYS_perf_event_open, (long)buf, 0, -1, -1, 0, 0));
    must_fail("userfaultfd", raw(SYS_userfaultfd, 0, 0, 0, 0, 0, 0));
    must_fail("io_uring_setup", raw(SYS_io_uring_setup, 8, (long)buf, 0, 0, 0, 0));
    must_fail("kexec_load", raw(SYS_kexec_load, 0, 0, 0, 0, 0, 0));
    must_fail("init_module", raw(SYS_init_module, (long)buf, 64, (long)"", 0, 0, 0));
    must_fail("finit_module", raw(SYS_finit_module, 0, (long)"", 0, 0, 0, 0));
    must_fail("open_by_handle_at", raw(SYS_open_by_handle_at, -100, (long)buf, 0, 0, 0, 0));
    must_fail("iopl", raw(SYS_iopl, 3, 0, 0, 0, 0, 0));
    must_fail("ioperm", raw(SYS_ioperm, 0, 1024, 1, 0, 0, 0));
    must_fail("reboot", raw(SYS_reboot, 0xfee1dead, 0x28121969, 0x4321fedc, 0, 0, 0));
    must_fail("swapon", raw(SYS_swapon, (long)"/dev/null", 0, 0, 0, 0, 0));
    must_fail("fanotify_init", raw(SYS_fanotify_init, 0, 0, 0, 0, 0, 0));
    /* A filter of our own with a listener: the guest must not get seccomp. */
    must_fail("seccomp-listener", raw(SYS_seccomp, 1, 8, (long)buf, 0, 0, 0));
    /* x32 ABI numbers are not a way around the table. */
    must_fail("x32-open", raw(0x40000000 | 2, (long)secret, O_RDONLY, 0, 0, 0, 0));
    must_fail("x32-getpid", raw(0x40000000 | 39, 0, 0, 0, 0, 0, 0));
    /* Answered by the host instead of cove, these would show host ids. */
    long id = raw(SYS_getpid, 0, 0, 0, 0, 0, 0);
    if (id != 1) breach("native-getpid", id);  /* the guest is the sandbox's init */
    id = raw(SYS_gettid, 0, 0, 0, 0, 0, 0);
    if (id != 1) breach("native-gettid", id);
    /* The two calls that pass seccomp by the host kernel's design: harmless. */
    must_fail("uretprobe", raw(335, 0, 0, 0, 0, 0, 0));
    must_fail("uprobe", raw(336, 0, 0, 0, 0, 0, 0));
}

/* --- 2. the host's files by every route -------------------------------------- */
static void try_open(const char *what, const char *path) {
    long fd = raw(SYS_openat, AT_FDCWD, (long)path, O_RDONLY, 0, 0, 0);
    if (fd >= 0) {
        long n = raw(SYS_read, fd, (long)buf, sizeof buf - 1, 0, 0, 0);
        if (n > 0 && strstr(buf, "cove-secret")) breach(what, n);
        raw(SYS_close, fd, 0, 0, 0, 0, 0);
    }
}

static void host_paths(void) {
    char p[512];
    try_open("abs", secret);
    snprintf(p, sizeof p, "/proc/self/root%s", secret);
    try_open("proc-self-root", p);
    snprintf(p, sizeof p, "/proc/1/root%s", secret);
    try_open("proc-1-root", p);
    snprintf(p, sizeof p, "/proc/%ld/root%s", hostpid, secret);
    try_open("proc-hostpid-root", p);
    snprintf(p, sizeof p, "/proc/%ld/cwd/%s", hostpid, secret);
    try_open("proc-hostpid-cwd", p);
    snprintf(p, sizeof p, "../../../../../../../../..%s", secret);
    try_open("dotdot", p);
    raw(SYS_symlinkat, (long)secret, AT_FDCWD, (long)"/tmp/escape-link", 0, 0, 0);
    try_open("symlink", "/tmp/escape-link");
    raw(SYS_symlinkat, (long)"/", AT_FDCWD, (long)"/tmp/escape-root", 0, 0, 0);
    snprintf(p, sizeof p, "/tmp/escape-root%s", secret);
    try_open("symlink-root", p);
    /* Create files in the host directory by every route. */
    snprintf(p, sizeof p, "%s/abs", hostdir);
    raw(SYS_openat, AT_FDCWD, (long)p, O_CREAT | O_WRONLY, 0644, 0, 0);
    snprintf(p, sizeof p, "/proc/self/root%s/proc-root", hostdir);
    raw(SYS_openat, AT_FDCWD, (long)p, O_CREAT | O_WRONLY, 0644, 0, 0);
    snprintf(p, sizeof p, "%s/dir", hostdir);
    raw(SYS_mkdirat, AT_FDCWD, (long)p, 0755, 0, 0, 0);
}

/* --- 3. fds it was never given -------------------------------------------------- */
static void fds(void) {
    char what[64];
    for (long fd = 3; fd < 1024; fd++) {
        long r = raw(SYS_fstat, fd, (long)buf, 0, 0, 0, 0);
        if (r != -9 /* EBADF */) {
            snprintf(what, sizeof what, "fstat-fd-%ld", fd);
            breach(what, r);
        }
    }
    /* The userland stub keeps the guest-memory memfd at fd 1024 (3 before): nothing
     * reaches it by either number. */
    const int memfd_numbers[] = {3, 1024};
    for (unsigned i = 0; i < 2; i++) {
        int fd = memfd_numbers[i];
        char path[32];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        must_fail(fd == 3 ? "read-fd3" : "read-fd1024", raw(SYS_read, fd, (long)buf, 64, 0, 0, 0));
        must_fail(fd == 3 ? "pread-fd3" : "pread-fd1024",
                  raw(SYS_pread64, fd, (long)buf, 64, 0, 0, 0));
        must_fail(fd == 3 ? "mmap-fd3" : "mmap-fd1024",
                  raw(SYS_mmap, 0, 4096, PROT_READ, MAP_SHARED, fd, 0));
        must_fail(fd == 3 ? "dup-fd3" : "dup-fd1024", raw(SYS_dup, fd, 0, 0, 0, 0, 0));
        must_fail(fd == 3 ? "open-proc-self-fd3" : "open-proc-self-fd1024",
                  raw(SYS_openat, AT_FDCWD, (long)path, O_RDONLY, 0, 0, 0));
    }
}

/* --- 4. ptrace of its own child -------------------------------------------------- */
static void ptrace_child(void) {
    pid_t c = fork();
    if (c == 0) {
        for (;;) raw(SYS_sched_yield, 0, 0, 0, 0, 0, 0);
    }
    long r = raw(SYS_ptrace, 16 /* ATTACH */, c, 0, 0, 0, 0);
    if (r == 0) {
        /* Allowed by the personality? Then it must only see the guest. */
        long word = raw(SYS_ptrace, 1 /* PEEKTEXT */, c, STUB_MAILBOX, (long)buf, 0, 0);
        if (word == 0) breach("ptrace-peek-stub", word);
    }
    kill(c, SIGKILL);
    waitpid(c, NULL, 0);
}

/* --- 5. cove's stub pages (userland platform) ---------------------------------- */
static void write_stub(void) { *(volatile char *)STUB_CODE = 0x90; }
static void write_mailbox(void) { *(volatile char *)STUB_MAILBOX = 0; }
static void exec_mailbox(void) { ((void (*)(void))STUB_MAILBOX)(); }

/* The fd jump_stub_with_mmap asks for, and what its SIGTRAP handler saw. */
static long jump_fd;
#define JUMP_ERRNO 11 /* the stub's syscall came back with an errno */
#define JUMP_MAPPED 12 /* ... with anything else: it ran natively */

static void jump_trapped(int sig, siginfo_t *si, void *uc) {
    /* The stub's "syscall; int3": the int3 lands here with the call's rax. */
    long rax = ((ucontext_t *)uc)->uc_mcontext.gregs[REG_RAX];
    (void)sig, (void)si;
    _exit(rax < 0 && rax >= -4095 ? JUMP_ERRNO : JUMP_MAPPED);
}

static void jump_stub_with_mmap(void) {
    /* Jump to the stub's syscall instruction with registers asking for the
     * guest-memory memfd: the call is the guest's own, under its filter. The
     * int3 after it would kill the child whatever the call did, so a handler
     * reports the call's result instead. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = jump_trapped;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGTRAP, &sa, NULL);
    register long r10 __asm__("r10") = MAP_SHARED;
    register long r8 __asm__("r8") = jump_fd;
    register long r9 __asm__("r9") = 0;
    __asm__ volatile("jmp *%0" : : "r"(STUB_CODE), "a"((long)SYS_mmap), "D"(0L), "S"(1L << 20),
                     "d"((long)PROT_READ), "r"(r10), "r"(r8), "r"(r9));
}

static void scribble_altstack_then_fault(void) {
    /* The altstack the platform reads fault frames from: garbage in it must
     * not confuse the supervisor. */
    for (long a = STUB_ALTSTACK; a < STUB_ALTSTACK + 0x2000; a += 8) *(volatile long *)a = -1;
    *(volatile long *)0x50 = 1;
}

static void int80(void) {
    long r;
    __asm__ volatile("int $0x80" : "=a"(r) : "a"(5L), "b"(secret), "c"(0L) : "memory");
    (void)r;
}

static void vsyscall(void) {
    long (*gtod)(void *, void *) = (long (*)(void *, void *))0xffffffffff600000L;
    gtod(buf, NULL);
}

static void stub_pages(void) {
    must_fail("mprotect-stub", raw(SYS_mprotect, STUB_CODE, 4096, 7, 0, 0, 0));
    must_fail("mprotect-mailbox", raw(SYS_mprotect, STUB_MAILBOX, 4096, 3, 0, 0, 0));
    raw(SYS_munmap, STUB_CODE, 0x10000 - STUB_CODE, 0, 0, 0, 0);
    raw(SYS_madvise, STUB_CODE, 4096, MADV_DONTNEED, 0, 0, 0);
    long m = raw(SYS_mmap, STUB_CODE, 4096, 7, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    if (m == STUB_CODE) breach("mmap-fixed-over-stub", m);
    long a = raw(SYS_mmap, 0, 4096, 3, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    long mr = raw(SYS_mremap, a, 4096, 4096, MREMAP_MAYMOVE | MREMAP_FIXED, STUB_MAILBOX, 0);
    if (mr == STUB_MAILBOX) breach("mremap-onto-mailbox", mr);
    /* Whatever those did, the stub's pages are still there and still cove's:
     * a write to them faults, and memory calls (which need the stub) work. */
    int st = in_child(write_stub);
    if (!WIFSIGNALED(st)) breach("write-stub-survived", st);
    st = in_child(write_mailbox);
    if (!WIFSIGNALED(st)) breach("write-mailbox-survived", st);
    st = in_child(exec_mailbox);
    if (!WIFSIGNALED(st)) breach("exec-mailbox-survived", st);
    /* The memfd's numbers, as in fds(). Any end but the handler seeing an
     * errno hides the call's result, so it counts as a breach too. */
    for (jump_fd = 3; jump_fd <= 1024; jump_fd += 1021) {
        st = in_child(jump_stub_with_mmap);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != JUMP_ERRNO)
            breach(jump_fd == 3 ? "jump-stub-mmap-fd3" : "jump-stub-mmap-fd1024", st);
    }
    st = in_child(scribble_altstack_then_fault);
    if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGSEGV) breach("altstack-fault-not-segv", st);
    st = in_child(int80);
    if (!WIFSIGNALED(st)) breach("int80-survived", st);
    in_child(vsyscall);  /* may work (time) or die: either way nothing gets out */
    for (int i = 0; i < 64; i++) {
        char *p = mmap(NULL, 1 << 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) { breach("mmap-after-stub-attacks", -1); break; }
        p[0] = 1;
        p[(1 << 16) - 1] = 2;
        munmap(p, 1 << 16);
    }
}

int main(int argc, char **argv) {
    if (argc < 4) return 100;
    secret = argv[1];
    hostdir = argv[2];
    hostpid = atol(argv[3]);
    setvbuf(stdout, NULL, _IONBF, 0);
    denied();
    host_paths();
    fds();
    ptrace_child();
    stub_pages();
    printf("done\n");
    return breaches;
}
