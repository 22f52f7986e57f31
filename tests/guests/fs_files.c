/* Files as a Linux program sees them: open flags, read/write forms, stat,
 * statx, access, attributes, sizes, times, fd flags, memfd and seals.
 * Every check is an assertion inside the guest; prints "ok" and exits 0. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "FAIL %s:%d: %s (errno %d)\n", \
    __FILE__, __LINE__, #c, errno); exit(1); } } while (0)
#define KERNEL_O_LARGEFILE 0100000  /* glibc's O_LARGEFILE is 0 on x86-64 */
#define FAILS(c, e) do { errno = 0; CHECK((c) == -1 && errno == (e)); } while (0)

static void test_open_read_write(void) {
    char buf[64];
    int fd = open("/tmp/f", O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0640);
    CHECK(fd >= 0);
    CHECK(fcntl(fd, F_GETFD) == FD_CLOEXEC);
    CHECK((fcntl(fd, F_GETFL) & ~KERNEL_O_LARGEFILE) == O_RDWR);
    CHECK(write(fd, "hello world", 11) == 11);
    CHECK(lseek(fd, 0, SEEK_CUR) == 11);
    CHECK(pread(fd, buf, 5, 6) == 5 && memcmp(buf, "world", 5) == 0);
    CHECK(pwrite(fd, "W", 1, 6) == 1);
    CHECK(lseek(fd, 0, SEEK_SET) == 0);
    CHECK(read(fd, buf, sizeof buf) == 11 && memcmp(buf, "hello World", 11) == 0);
    CHECK(read(fd, buf, sizeof buf) == 0);
    FAILS(open("/tmp/f", O_CREAT | O_EXCL | O_WRONLY, 0600), EEXIST);
    FAILS(open("/tmp/nope", O_RDONLY), ENOENT);
    FAILS(open("/tmp/f/x", O_RDONLY), ENOTDIR);
    FAILS(open("/tmp", O_WRONLY), EISDIR);
    close(fd);
    FAILS(read(fd, buf, 1), EBADF);

    /* readv/writev */
    fd = open("/tmp/f", O_RDWR | O_APPEND);
    struct iovec iov[3] = {{"ab", 2}, {NULL, 0}, {"cd", 2}};
    CHECK(writev(fd, iov, 3) == 4);
    char a[5] = {0}, b[100] = {0};
    struct iovec riov[2] = {{a, 4}, {b, sizeof b}};
    CHECK(preadv(fd, riov, 2, 9) == 6);
    CHECK(memcmp(a, "ldab", 4) == 0 && memcmp(b, "cd", 2) == 0);
    FAILS(syscall(SYS_readv, fd, riov, 1025), EINVAL);
    FAILS(syscall(SYS_pread64, fd, (void *)8, 4, 0), EFAULT);
    CHECK(syscall(SYS_read, fd, (void *)8, 4) == 0);  /* at EOF nothing is copied */
    close(fd);
}

static void test_stat(void) {
    struct stat st, lst;
    CHECK(stat("/tmp/f", &st) == 0);
    CHECK(S_ISREG(st.st_mode) && (st.st_mode & 07777) == 0640 && st.st_size == 15);
    CHECK(symlink("f", "/tmp/l") == 0);
    CHECK(lstat("/tmp/l", &lst) == 0 && S_ISLNK(lst.st_mode) && lst.st_size == 1);
    CHECK(fstatat(AT_FDCWD, "/tmp/l", &lst, 0) == 0 && lst.st_ino == st.st_ino);
    int d = open("/tmp", O_PATH | O_DIRECTORY);
    CHECK(fstatat(d, "f", &lst, 0) == 0 && lst.st_ino == st.st_ino);
    FAILS(fstatat(d, "f", &lst, 0x2), EINVAL);
    struct statx sx;
    CHECK(statx(d, "l", AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, &sx) == 0);
    CHECK(S_ISLNK(sx.stx_mode) && (sx.stx_mask & STATX_BASIC_STATS) == STATX_BASIC_STATS);
    CHECK(statx(AT_FDCWD, "/tmp/f", 0, STATX_ALL, &sx) == 0 && sx.stx_ino == st.st_ino);
    FAILS(statx(AT_FDCWD, "/tmp/f", AT_STATX_FORCE_SYNC | AT_STATX_DONT_SYNC, 0, &sx), EINVAL);
    char target[8] = "xxxxxxx";
    CHECK(readlink("/tmp/l", target, sizeof target) == 1 && target[0] == 'f' && target[1] == 'x');
    FAILS(readlink("/tmp/f", target, sizeof target), EINVAL);
    CHECK(access("/tmp/f", R_OK | W_OK) == 0);
    FAILS(access("/tmp/f", X_OK), EACCES);
    FAILS(faccessat(AT_FDCWD, "/tmp/f", 8, 0), EINVAL);
    struct statfs sf;
    CHECK(statfs("/tmp", &sf) == 0 && sf.f_bsize > 0);
    close(d);
}

static void test_attributes(void) {
    CHECK(chmod("/tmp/f", 0600) == 0);
    struct stat st;
    CHECK(stat("/tmp/f", &st) == 0 && (st.st_mode & 07777) == 0600);
    FAILS(fchmodat(AT_FDCWD, "/tmp/l", 0600, AT_SYMLINK_NOFOLLOW), EOPNOTSUPP);
    CHECK(chown("/tmp/f", 12, 34) == 0 && stat("/tmp/f", &st) == 0);
    CHECK(st.st_uid == 12 && st.st_gid == 34);
    struct timespec ts[2] = {{100, 1}, {200, 2}};
    CHECK(utimensat(AT_FDCWD, "/tmp/f", ts, 0) == 0 && stat("/tmp/f", &st) == 0);
    CHECK(st.st_atim.tv_sec == 100 && st.st_mtim.tv_sec == 200 && st.st_mtim.tv_nsec == 2);
    CHECK(truncate("/tmp/f", 3) == 0 && stat("/tmp/f", &st) == 0 && st.st_size == 3);
    int fd = open("/tmp/f", O_RDWR);
    CHECK(ftruncate(fd, 10) == 0);
    CHECK(fallocate(fd, 0, 0, 4096) == 0 && fstat(fd, &st) == 0 && st.st_size == 4096);
    FAILS(fallocate(fd, FALLOC_FL_COLLAPSE_RANGE, 0, 4096), EOPNOTSUPP);
    CHECK(fsync(fd) == 0 && fdatasync(fd) == 0);
    int ro = open("/tmp/f", O_RDONLY);
    FAILS(ftruncate(ro, 0), EINVAL);
    CHECK(umask(077) == 022);
    close(fd);
    close(ro);
}

static void test_fds(void) {
    int fd = open("/tmp/f", O_RDONLY);
    int d = dup(fd);
    CHECK(d == fd + 1);
    CHECK(dup2(fd, 40) == 40 && fcntl(40, F_GETFD) == 0);
    CHECK(dup3(fd, 41, O_CLOEXEC) == 41 && fcntl(41, F_GETFD) == FD_CLOEXEC);
    FAILS(dup3(fd, fd, 0), EINVAL);
    CHECK(fcntl(fd, F_DUPFD_CLOEXEC, 50) == 50);
    CHECK(fcntl(fd, F_SETFL, O_NONBLOCK | O_APPEND) == 0);
    CHECK((fcntl(d, F_GETFL) & (O_NONBLOCK | O_APPEND | O_ACCMODE)) == (O_NONBLOCK | O_APPEND));
    CHECK(syscall(SYS_close_range, 40, 60, 0) == 0);
    FAILS(close(50), EBADF);
    close(d);
    close(fd);
}

static void test_openat2(void) {
    CHECK(mkdir("/tmp/jail", 0755) == 0 && mkdir("/tmp/jail/in", 0755) == 0);
    CHECK(symlink("/etc", "/tmp/jail/out") == 0);
    int root = open("/tmp/jail", O_PATH | O_DIRECTORY);
    struct open_how how = {.flags = O_RDONLY | O_DIRECTORY, .resolve = RESOLVE_BENEATH};
    int fd = syscall(SYS_openat2, root, "in", &how, sizeof how);
    CHECK(fd >= 0);
    close(fd);
    errno = 0;
    CHECK(syscall(SYS_openat2, root, "../jail/in", &how, sizeof how) == -1 && errno == EXDEV);
    CHECK(syscall(SYS_openat2, root, "out", &how, sizeof how) == -1 && errno == EXDEV);
    how.resolve = RESOLVE_IN_ROOT;
    errno = 0;
    CHECK(syscall(SYS_openat2, root, "out", &how, sizeof how) == -1 && errno == ENOENT);
    how.resolve = RESOLVE_NO_SYMLINKS;
    errno = 0;
    CHECK(syscall(SYS_openat2, root, "out", &how, sizeof how) == -1 && errno == ELOOP);
    CHECK(syscall(SYS_openat2, root, "in", &how, 8) == -1 && errno == EINVAL);
    close(root);
}

static void test_tmpfile_and_memfd(void) {
    int fd = open("/tmp", O_TMPFILE | O_RDWR, 0600);
    CHECK(fd >= 0 && write(fd, "tmp", 3) == 3);
    CHECK(linkat(fd, "", AT_FDCWD, "/tmp/was_tmp", AT_EMPTY_PATH) == 0);
    struct stat st;
    CHECK(stat("/tmp/was_tmp", &st) == 0 && st.st_size == 3);
    close(fd);

    int m = memfd_create("guest", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    CHECK(m >= 0 && ftruncate(m, 4096) == 0);
    char link[64], name[64] = {0};
    snprintf(link, sizeof link, "/proc/self/fd/%d", m);
    CHECK(readlink(link, name, sizeof name - 1) > 0);
    CHECK(strcmp(name, "/memfd:guest (deleted)") == 0);
    CHECK(fstat(m, &st) == 0 && st.st_nlink == 0 && S_ISREG(st.st_mode));
    CHECK(fcntl(m, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) == 0);
    FAILS(ftruncate(m, 1), EPERM);
    CHECK(fcntl(m, F_GET_SEALS) == (F_SEAL_SHRINK | F_SEAL_GROW));
    char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, m, 0);
    CHECK(p != MAP_FAILED);
    memcpy(p, "mapped", 6);
    CHECK(munmap(p, 4096) == 0);
    char buf[8];
    CHECK(pread(m, buf, 6, 0) == 6 && memcmp(buf, "mapped", 6) == 0);
    close(m);
}

int main(void) {
    test_open_read_write();
    test_stat();
    test_attributes();
    test_fds();
    test_openat2();
    test_tmpfile_and_memfd();
    puts("ok");
    return 0;
}
