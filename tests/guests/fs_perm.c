/* File permissions as an unprivileged user (run as uid 1000, gid 1000) sees
 * them: EACCES, EPERM, sticky /tmp, access() vs the owner's bits.
 * Every check is an assertion inside the guest; prints "ok" and exits 0. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "FAIL %s:%d: %s (errno %d)\n", \
    __FILE__, __LINE__, #c, errno); exit(1); } } while (0)
#define FAILS(c, e) do { errno = 0; CHECK((c) == -1 && errno == (e)); } while (0)

int main(void) {
    CHECK(getuid() == 1000 && geteuid() == 1000 && getgid() == 1000);
    FAILS(mkdir("/not-mine", 0755), EACCES);
    FAILS(open("/new-file", O_CREAT | O_WRONLY, 0644), EACCES);
    FAILS(chroot("/tmp"), EPERM);
    FAILS(chown("/", 1000, 1000), EPERM);
    FAILS(mknod("/tmp/dev", S_IFCHR | 0600, makedev(1, 3)), EPERM);
    FAILS(access("/", W_OK), EACCES);
    CHECK(access("/", R_OK | X_OK) == 0);

    int fd = open("/tmp/mine", O_CREAT | O_EXCL | O_RDWR, 0600);
    CHECK(fd >= 0);
    struct stat st;
    CHECK(fstat(fd, &st) == 0 && st.st_uid == 1000 && st.st_gid == 1000);
    CHECK(fchmod(fd, 0400) == 0);
    FAILS(open("/tmp/mine", O_WRONLY), EACCES);
    FAILS(access("/tmp/mine", W_OK), EACCES);
    CHECK(write(fd, "still writable through the open fd", 10) == 10);
    FAILS(fchown(fd, 0, -1), EPERM);
    /* Our own open file may be linked by fd (Linux 6.10+): same credentials. */
    CHECK(linkat(fd, "", AT_FDCWD, "/tmp/again", AT_EMPTY_PATH) == 0);
    int rootfd = open("/", O_PATH);
    FAILS(linkat(rootfd, "", AT_FDCWD, "/tmp/root", AT_EMPTY_PATH), EXDEV);
    struct timespec ts[2] = {{1, 0}, {2, 0}};
    CHECK(futimens(fd, ts) == 0);  /* the owner may set explicit times */
    close(fd);

    CHECK(mkdir("/tmp/private", 0700) == 0);
    CHECK(open("/tmp/private/f", O_CREAT | O_WRONLY, 0644) >= 0);
    CHECK(chmod("/tmp/private", 0600) == 0);  /* no search permission left */
    FAILS(stat("/tmp/private/f", &st), EACCES);
    FAILS(chdir("/tmp/private"), EACCES);
    CHECK(chmod("/tmp/private", 0700) == 0);
    int dirfd = open("/tmp/private", O_PATH | O_DIRECTORY);
    FAILS(linkat(dirfd, "", AT_FDCWD, "/tmp/dirlink", AT_EMPTY_PATH), EPERM);
    puts("ok");
    return 0;
}
