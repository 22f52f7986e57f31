/* /dev/null, /dev/zero and /dev/full as Linux's drivers behave, in the
 * situations the userland platform's native device path (cove.kernel.hostpipe
 * NativeDevice, fastpath.py) and the North's zero-copy hooks (cove.fs.devfs)
 * must get right: read_null/write_null never look at the buffer (only
 * access_ok), read_zero stores zeros up to the first fault, copy-on-write
 * after fork, private file mappings, the userland stub's reserved pages
 * (0x1000 runtime code, 0x2000 mailbox, 0x4000 altstack: never the guest's),
 * fd numbers that change meaning, access modes, and enough calls in a loop
 * for the native path to carry most of them. Prints "ok". */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "FAIL %s:%d: %s (errno %d)\n", \
    __FILE__, __LINE__, #c, errno); exit(1); } } while (0)

static long raw(long nr, long a, long b, long c) { return syscall(nr, a, b, c); }

static int all(const unsigned char *p, size_t n, unsigned char v) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != v) return 0;
    return 1;
}

static void null_ignores_the_buffer(void) {
    int fd = open("/dev/null", O_RDWR);
    CHECK(fd >= 0);
    char *hole = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(hole != MAP_FAILED && munmap(hole, 8192) == 0);
    /* Unmapped memory, page 0, the stub's pages: write_null returns the count. */
    const uintptr_t targets[] = {(uintptr_t)hole, 0x40, 0x1000, 0x2000, 0x4000};
    for (unsigned i = 0; i < sizeof targets / sizeof targets[0]; i++) {
        CHECK(raw(SYS_write, fd, targets[i], 100) == 100);
        CHECK(raw(SYS_read, fd, targets[i], 100) == 0);
        struct iovec v[2] = {{(void *)targets[i], 10}, {(void *)targets[i], 20}};
        CHECK(writev(fd, v, 2) == 30);
        CHECK(readv(fd, v, 2) == 0);
    }
    /* access_ok still applies: kernel addresses and wrap-around are EFAULT. */
    errno = 0;
    CHECK(raw(SYS_write, fd, (long)0xFFFF800000000000UL, 100) == -1 && errno == EFAULT);
    errno = 0;
    CHECK(raw(SYS_read, fd, (long)0xFFFF800000000000UL, 100) == -1 && errno == EFAULT);
    /* ... and so does reading the iovec array itself. */
    errno = 0;
    CHECK(writev(fd, (struct iovec *)hole, 1) == -1 && errno == EFAULT);
    errno = 0;
    CHECK(writev(fd, (struct iovec *)0x2000, 1) == -1 && errno == EFAULT);
    CHECK(write(fd, "x", 0) == 0);
    close(fd);
}

static void zero_fills(void) {
    int fd = open("/dev/zero", O_RDONLY);
    CHECK(fd >= 0);
    static unsigned char buf[200000];
    const size_t sizes[] = {1, 100, 4095, 4096, 4097, 65536, 65537, 199999};
    for (unsigned i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        memset(buf, 0xAA, sizeof buf);
        CHECK(read(fd, buf + 1, sizes[i]) == (long)sizes[i]);
        CHECK(buf[0] == 0xAA && all(buf + 1, sizes[i], 0));
        CHECK(all(buf + 1 + sizes[i], sizeof buf - 1 - sizes[i], 0xAA));
    }
    /* Vectored, with an empty piece. */
    memset(buf, 0xAA, sizeof buf);
    struct iovec v[3] = {{buf, 10}, {buf + 100, 0}, {buf + 5000, 70000}};
    CHECK(readv(fd, v, 3) == 70010);
    CHECK(all(buf, 10, 0) && all(buf + 10, 4990, 0xAA) && all(buf + 5000, 70000, 0));
    /* Fresh memory nobody touched yet, and more than the native path takes. */
    size_t big = 5 << 20;
    unsigned char *m = mmap(NULL, big, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                            -1, 0);
    CHECK(m != MAP_FAILED);
    memset(m, 0x55, big);
    CHECK(read(fd, m, big) == (long)big && all(m, big, 0));
    unsigned char *fresh = mmap(NULL, 1 << 16, PROT_READ | PROT_WRITE,
                                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(read(fd, fresh, 1 << 16) == 1 << 16 && all(fresh, 1 << 16, 0));
    munmap(m, big);
    munmap(fresh, 1 << 16);
    close(fd);
}

static void zero_stops_at_a_fault(void) {
    int fd = open("/dev/zero", O_RDONLY);
    char *m = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(m != MAP_FAILED);
    memset(m, 0xAA, 3 * 4096);
    CHECK(mprotect(m + 4096, 4096, PROT_READ) == 0);
    /* Half a page of room before the read-only page: that much, as read_zero. */
    CHECK(read(fd, m + 2048, 8192) == 2048);
    CHECK(all((unsigned char *)m + 2048, 2048, 0) && all((unsigned char *)m + 4096, 4096, 0xAA));
    errno = 0;
    CHECK(read(fd, m + 4096, 100) == -1 && errno == EFAULT);
    CHECK(all((unsigned char *)m + 4096, 4096, 0xAA));
    CHECK(munmap(m + 8192, 4096) == 0);
    memset(m, 0xAA, 4096);
    CHECK(mprotect(m + 4096, 4096, PROT_READ | PROT_WRITE) == 0);
    CHECK(read(fd, m + 100, 3 * 4096) == 2 * 4096 - 100);
    CHECK(m[99] == (char)0xAA && all((unsigned char *)m + 100, 2 * 4096 - 100, 0));
    /* The stub's pages and page 0 are not the guest's: EFAULT, and the
     * platform keeps running (its code at 0x1000 was not zeroed). */
    const uintptr_t stub[] = {0x1000, 0x2000, 0x4000, 0x40, 0xFFF0};
    for (unsigned i = 0; i < sizeof stub / sizeof stub[0]; i++) {
        errno = 0;
        CHECK(raw(SYS_read, fd, stub[i], 64) == -1 && errno == EFAULT);
        struct iovec v = {(void *)stub[i], 64};
        errno = 0;
        CHECK(readv(fd, &v, 1) == -1 && errno == EFAULT);
    }
    errno = 0;
    CHECK(readv(fd, (struct iovec *)0x4000, 1) == -1 && errno == EFAULT);
    munmap(m, 8192);
    close(fd);
}

static void zero_after_fork_and_in_file_mappings(void) {
    int fd = open("/dev/zero", O_RDONLY);
    static unsigned char shared_before_fork[3 * 4096];
    memset(shared_before_fork, 0x77, sizeof shared_before_fork);
    int p[2];
    CHECK(pipe(p) == 0);
    pid_t c = fork();
    if (c == 0) {
        char go;
        if (read(p[0], &go, 1) != 1) _exit(2);
        /* The parent zeroed its copy: the child's is untouched. */
        _exit(all(shared_before_fork, sizeof shared_before_fork, 0x77) ? 0 : 3);
    }
    CHECK(read(fd, shared_before_fork, sizeof shared_before_fork) ==
          (long)sizeof shared_before_fork);
    CHECK(all(shared_before_fork, sizeof shared_before_fork, 0));
    CHECK(write(p[1], "g", 1) == 1);
    int st;
    CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    close(p[0]);
    close(p[1]);
    /* A private file mapping: the copy is the process's, the file keeps its bytes. */
    int f = open("/tmp/cove-dev-native", O_RDWR | O_CREAT | O_TRUNC, 0600);
    CHECK(f >= 0);
    static unsigned char ones[8192];
    memset(ones, 1, sizeof ones);
    CHECK(write(f, ones, sizeof ones) == (long)sizeof ones);
    unsigned char *pm = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE, f, 0);
    CHECK(pm != MAP_FAILED && pm[0] == 1);
    CHECK(read(fd, pm, 8192) == 8192 && all(pm, 8192, 0));
    unsigned char back[8192];
    CHECK(pread(f, back, sizeof back, 0) == (long)sizeof back && all(back, sizeof back, 1));
    /* A shared one: the zeros reach the file (cove writes a shared mapping
     * back at msync, which Linux's page cache makes unnecessary). */
    unsigned char *sm = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, f, 0);
    CHECK(sm != MAP_FAILED && sm[100] == 1);
    CHECK(read(fd, sm + 4096, 4096) == 4096);
    CHECK(msync(sm, 8192, MS_SYNC) == 0);
    CHECK(pread(f, back, sizeof back, 0) == (long)sizeof back);
    CHECK(all(back, 4096, 1) && all(back + 4096, 4096, 0));
    munmap(pm, 8192);
    munmap(sm, 8192);
    close(f);
    unlink("/tmp/cove-dev-native");
    close(fd);
}

static void full_and_modes(void) {
    char buf[64];
    int full = open("/dev/full", O_RDWR);
    CHECK(full >= 0);
    memset(buf, 0xAA, sizeof buf);
    CHECK(read(full, buf, sizeof buf) == (long)sizeof buf && all((unsigned char *)buf, 64, 0));
    errno = 0;
    CHECK(write(full, buf, 10) == -1 && errno == ENOSPC);
    close(full);
    int ro = open("/dev/null", O_RDONLY), wo = open("/dev/zero", O_WRONLY);
    CHECK(ro >= 0 && wo >= 0);
    errno = 0;
    CHECK(write(ro, buf, 10) == -1 && errno == EBADF);
    errno = 0;
    CHECK(read(wo, buf, 10) == -1 && errno == EBADF);
    CHECK(write(wo, buf, 10) == 10); /* write_zero: as write_null */
    CHECK(read(ro, buf, 10) == 0);
    close(ro);
    close(wo);
}

static void numbers_change_meaning(void) {
    char buf[16];
    int z = open("/dev/zero", O_RDONLY);
    CHECK(z >= 0 && read(z, buf, 8) == 8);
    int num = z;
    close(z);
    int p[2];
    CHECK(pipe(p) == 0 && p[0] == num);
    CHECK(write(p[1], "pipe", 4) == 4);
    CHECK(read(p[0], buf, sizeof buf) == 4 && memcmp(buf, "pipe", 4) == 0);
    /* dup2 puts /dev/null over the pipe's write end, then the pipe back. */
    int n = open("/dev/null", O_WRONLY);
    int saved = dup(p[1]);
    CHECK(dup2(n, p[1]) == p[1]);
    CHECK(write(p[1], "gone", 4) == 4);
    CHECK(dup2(saved, p[1]) == p[1]);
    CHECK(write(p[1], "back", 4) == 4);
    CHECK(read(p[0], buf, sizeof buf) == 4 && memcmp(buf, "back", 4) == 0);
    /* /dev/zero over the read end: zeros; the pipe's data stays in the pipe. */
    CHECK(write(p[1], "kept", 4) == 4);
    int rd = dup(p[0]);
    int z2 = open("/dev/zero", O_RDONLY);
    CHECK(dup2(z2, p[0]) == p[0]);
    memset(buf, 1, sizeof buf);
    CHECK(read(p[0], buf, 8) == 8 && all((unsigned char *)buf, 8, 0));
    CHECK(read(rd, buf, sizeof buf) == 4 && memcmp(buf, "kept", 4) == 0);
    /* A regular file at a number that was /dev/null. */
    close(p[1]);
    int f = open("/tmp/cove-dev-native2", O_RDWR | O_CREAT | O_TRUNC, 0600);
    CHECK(dup2(f, n) == n);
    CHECK(write(n, "file", 4) == 4);
    CHECK(pread(f, buf, sizeof buf, 0) == 4 && memcmp(buf, "file", 4) == 0);
    unlink("/tmp/cove-dev-native2");
    close(f);
    close(n);
    close(z2);
    close(rd);
    close(p[0]);
    close(saved);
    /* A child writes to the /dev/null it inherited. */
    int null = open("/dev/null", O_WRONLY);
    pid_t c = fork();
    if (c == 0) {
        for (int i = 0; i < 100; i++)
            if (write(null, buf, sizeof buf) != (long)sizeof buf) _exit(2);
        _exit(0);
    }
    int st;
    CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    close(null);
}

static void many_calls(void) {
    int z = open("/dev/zero", O_RDONLY), n = open("/dev/null", O_WRONLY);
    static unsigned char buf[4096]; /* one page: the longest native /dev/zero read */
    for (int i = 0; i < 1000; i++) {
        buf[i] = 1;
        CHECK(read(z, buf, sizeof buf) == (long)sizeof buf && buf[i] == 0);
        CHECK(write(n, buf, sizeof buf) == (long)sizeof buf);
    }
    close(z);
    close(n);
}

int main(void) {
    null_ignores_the_buffer();
    zero_fills();
    zero_stops_at_a_fault();
    zero_after_fork_and_in_file_mappings();
    full_and_modes();
    numbers_change_meaning();
    many_calls();
    printf("ok\n");
    return 0;
}
