/* A guest that points pipe reads and writes at memory it does not have,
 * including the userland stub's reserved pages below 64 KiB (runtime code
 * 0x1000, mailbox 0x2000, fault altstack 0x4000: mapped in the stub, never
 * the guest's), and at the stub's own fd number. Linux (and cove's North)
 * says EFAULT and moves nothing; the native pipe path must say the same and
 * never write a byte into the stub. Prints "ok". */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "FAIL %s:%d: %s (errno %d)\n", \
    __FILE__, __LINE__, #c, errno); exit(1); } } while (0)

static const char SECRET[] = "cove-pipe-escape-marker-0123456789";
#define N (sizeof SECRET - 1)

static long raw(long nr, long a, long b, long c) { return syscall(nr, a, b, c); }

static int nread(int fd) {
    int n = -1;
    CHECK(ioctl(fd, FIONREAD, &n) == 0);
    return n;
}

static sigjmp_buf jb;
static void on_segv(int s) { (void)s; siglongjmp(jb, 1); }

/* Whether [a, a+n) holds the marker, without dying if it is not mapped. */
static int holds_marker(uintptr_t a) {
    struct sigaction sa = {0}, old;
    sa.sa_handler = on_segv;
    sigaction(SIGSEGV, &sa, &old);
    int found = 0;
    if (sigsetjmp(jb, 1) == 0) found = memmem((void *)a, 4096 - (a & 4095), SECRET, N) != NULL;
    sigaction(SIGSEGV, &old, NULL);
    return found;
}

static void bad_buffers(void) {
    int p[2];
    CHECK(pipe(p) == 0);
    CHECK(write(p[1], SECRET, N) == (long)N);
    char *hole = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(hole != MAP_FAILED);
    CHECK(munmap(hole + 4096, 4096) == 0);
    char *ro = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(ro != MAP_FAILED);
    /* The stub's pages, the end of its range (0xFFF0 straddles into guest
     * space), page 0, a hole, a read-only page, the top page, kernel space. */
    const uintptr_t targets[] = {0x1000, 0x2000, 0x4000, 0x5000, 0x8000, 0xFFF0, 0x40,
                                 (uintptr_t)(hole + 4096), (uintptr_t)ro,
                                 0x7FFFFFFFF000, 0xFFFF800000000000};
    for (unsigned i = 0; i < sizeof targets / sizeof targets[0]; i++) {
        uintptr_t t = targets[i];
        errno = 0;
        CHECK(raw(SYS_read, p[0], t, N) == -1 && errno == EFAULT);
        CHECK(nread(p[0]) == (int)N); /* nothing was taken */
        struct iovec v = {(void *)t, N};
        errno = 0;
        CHECK(readv(p[0], &v, 1) == -1 && errno == EFAULT);
        CHECK(nread(p[0]) == (int)N);
        if (t < 0x10000) CHECK(!holds_marker(t));
    }
    /* The iovec array itself in the stub's pages. */
    errno = 0;
    CHECK(readv(p[0], (struct iovec *)0x4000, 1) == -1 && errno == EFAULT);
    CHECK(readv(p[0], (struct iovec *)0x2000, 1) == -1 && errno == EFAULT);
    CHECK(writev(p[1], (struct iovec *)0x2000, 1) == -1 && errno == EFAULT);
    /* Writes from the stub's pages: nothing of them may reach the pipe. */
    CHECK(write(p[1], (void *)0x2000, 64) == -1 && errno == EFAULT);
    CHECK(write(p[1], (void *)0x1000, 64) == -1 && errno == EFAULT);
    CHECK(write(p[1], (void *)0x4000, 64) == -1 && errno == EFAULT);
    CHECK(nread(p[0]) == (int)N);
    /* A read half into memory, half into a hole: what fits, as Linux. */
    static char big[8192];
    int q[2];
    CHECK(pipe(q) == 0);
    CHECK(write(q[1], big, sizeof big) == (long)sizeof big);
    CHECK(read(q[0], hole, sizeof big) == 4096);
    CHECK(nread(q[0]) == 4096);
    close(q[0]);
    close(q[1]);
    /* The data is all still there, intact. */
    char back[64];
    CHECK(read(p[0], back, sizeof back) == (long)N && memcmp(back, SECRET, N) == 0);
    /* Nothing of it reached the stub's pages. */
    for (uintptr_t a = 0x1000; a < 0x10000; a += 0x1000) CHECK(!holds_marker(a));
    close(p[0]);
    close(p[1]);
    munmap(hole, 4096);
    munmap(ro, 4096);
}

static void stub_fd_numbers(void) {
    char buf[64];
    /* The guest has no fd at the stub's memfd number (1024) or near it. */
    for (int fd = 1000; fd < 1100; fd++) {
        errno = 0;
        CHECK(read(fd, buf, sizeof buf) == -1 && errno == EBADF);
        CHECK(write(fd, buf, 1) == -1 && errno == EBADF);
    }
    /* With a pipe there, the calls reach the pipe, and guest memory (the
     * memfd) keeps working. */
    struct rlimit rl = {2048, 2048};
    CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
    int p[2];
    CHECK(pipe(p) == 0);
    CHECK(dup2(p[0], 1024) == 1024 && dup2(p[1], 1023) == 1023);
    for (int i = 0; i < 100; i++) {
        CHECK(write(1023, SECRET, N) == (long)N);
        CHECK(read(1024, buf, sizeof buf) == (long)N && memcmp(buf, SECRET, N) == 0);
    }
    close(1023);
    close(1024);
    close(p[0]);
    close(p[1]);
    pid_t c = fork();
    if (c == 0) {
        char *m = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) _exit(2);
        memset(m, 7, 1 << 20);
        _exit(m[12345] == 7 ? 0 : 3);
    }
    int st;
    CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

int main(void) {
    bad_buffers();
    stub_fd_numbers();
    printf("ok\n");
    return 0;
}
