/* Directories, names and locks as a Linux program sees them: readdir with
 * seekdir/telldir, getcwd/chdir/fchdir, rename/link/unlink, and record locks,
 * OFD locks and flock between a parent and a forked child.
 * Every check is an assertion inside the guest; prints "ok" and exits 0. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "FAIL %s:%d: %s (errno %d)\n", \
    __FILE__, __LINE__, #c, errno); exit(1); } } while (0)
#define FAILS(c, e) do { errno = 0; CHECK((c) == -1 && errno == (e)); } while (0)

static void touch(const char *path) {
    int fd = open(path, O_CREAT | O_WRONLY, 0644);
    CHECK(fd >= 0);
    close(fd);
}

static void test_readdir(void) {
    CHECK(mkdir("/tmp/d", 0755) == 0);
    char name[64];
    for (int i = 0; i < 300; i++) {  /* more than one getdents64 buffer of glibc */
        snprintf(name, sizeof name, "/tmp/d/entry-with-a-longish-name-%03d", i);
        touch(name);
    }
    DIR *dir = opendir("/tmp/d");
    CHECK(dir != NULL);
    int seen = 0, dots = 0;
    long mark = -1;
    char marked[256] = "";
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
            dots++;
            CHECK(e->d_type == DT_DIR);
            continue;
        }
        CHECK(e->d_type == DT_REG);
        if (++seen == 150) {
            mark = telldir(dir);
            e = readdir(dir);
            CHECK(e != NULL);
            strcpy(marked, e->d_name);
            seen++;
        }
    }
    CHECK(seen == 300 && dots == 2);
    seekdir(dir, mark);
    e = readdir(dir);
    CHECK(e != NULL && strcmp(e->d_name, marked) == 0);
    rewinddir(dir);
    CHECK(readdir(dir) != NULL);
    closedir(dir);
}

static void test_cwd(void) {
    char buf[256];
    CHECK(chdir("/tmp/d") == 0);
    CHECK(getcwd(buf, sizeof buf) != NULL && strcmp(buf, "/tmp/d") == 0);
    errno = 0;
    CHECK(getcwd(buf, 3) == NULL && errno == ERANGE);
    int root = open("/", O_RDONLY | O_DIRECTORY);
    CHECK(fchdir(root) == 0 && getcwd(buf, sizeof buf) && strcmp(buf, "/") == 0);
    CHECK(mkdir("/tmp/gone", 0700) == 0 && chdir("/tmp/gone") == 0 && rmdir("/tmp/gone") == 0);
    errno = 0;
    CHECK(getcwd(buf, sizeof buf) == NULL && errno == ENOENT);
    CHECK(fchdir(root) == 0);
    close(root);
}

static void test_names(void) {
    touch("/tmp/a");
    CHECK(link("/tmp/a", "/tmp/b") == 0);
    struct stat sa, sb;
    CHECK(stat("/tmp/a", &sa) == 0 && stat("/tmp/b", &sb) == 0);
    CHECK(sa.st_ino == sb.st_ino && sb.st_nlink == 2);
    CHECK(rename("/tmp/b", "/tmp/c") == 0);
    FAILS(access("/tmp/b", F_OK), ENOENT);
    FAILS(renameat2(AT_FDCWD, "/tmp/a", AT_FDCWD, "/tmp/c", RENAME_NOREPLACE), EEXIST);
    CHECK(mkdir("/tmp/e", 0755) == 0);
    FAILS(rmdir("/tmp/d"), ENOTEMPTY);
    FAILS(unlink("/tmp/e"), EISDIR);
    FAILS(rename("/tmp/e", "/tmp/e/inside"), EINVAL);
    CHECK(unlinkat(AT_FDCWD, "/tmp/e", AT_REMOVEDIR) == 0);
    CHECK(unlink("/tmp/c") == 0 && stat("/tmp/a", &sa) == 0 && sa.st_nlink == 1);
    CHECK(mkfifo("/tmp/fifo", 0600) == 0 && stat("/tmp/fifo", &sa) == 0 && S_ISFIFO(sa.st_mode));
}

static void set_lock(int fd, int cmd, short type, off_t start, off_t len) {
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
    CHECK(fcntl(fd, cmd, &fl) == 0);
}

static void test_locks(void) {
    int fd = open("/tmp/lockfile", O_CREAT | O_RDWR, 0600);
    CHECK(fd >= 0 && ftruncate(fd, 100) == 0);
    set_lock(fd, F_SETLK, F_WRLCK, 0, 10);
    int other = open("/tmp/lockfile", O_RDONLY);
    CHECK(flock(other, LOCK_SH) == 0);
    int ready[2];
    CHECK(pipe(ready) == 0);
    pid_t child = fork();
    CHECK(child >= 0);
    if (child == 0) {
        close(other);  /* the parent's description must be the parent's alone */
        int cfd = open("/tmp/lockfile", O_RDWR);
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 5, .l_len = 1};
        if (fcntl(cfd, F_SETLK, &fl) != -1 || errno != EAGAIN) _exit(10);
        struct flock q = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
        if (fcntl(cfd, F_GETLK, &q) != 0 || q.l_type != F_WRLCK || q.l_pid != getppid()
            || q.l_start != 0 || q.l_len != 10) _exit(11);
        if (flock(cfd, LOCK_EX | LOCK_NB) != -1 || errno != EWOULDBLOCK) _exit(12);
        if (write(ready[1], "r", 1) != 1) _exit(13);
        if (fcntl(cfd, F_SETLKW, &fl) != 0) _exit(14);  /* waits for the parent */
        if (flock(cfd, LOCK_EX) != 0) _exit(15);          /* likewise */
        _exit(0);
    }
    close(ready[1]);  /* a child that dies early gives EOF, not a hang */
    char c;
    int status;
    if (read(ready[0], &c, 1) != 1) {
        waitpid(child, &status, 0);
        fprintf(stderr, "child failed early: status %#x\n", status);
        exit(1);
    }
    usleep(20000);
    close(other);  /* releases the flock, and (any close!) the parent's record lock */
    CHECK(waitpid(child, &status, 0) == child);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* The child exited: its locks are gone. */
    set_lock(fd, F_SETLK, F_WRLCK, 0, 0);
    /* OFD locks: two descriptions in one process conflict. */
    int x = open("/tmp/lockfile", O_RDWR), y = open("/tmp/lockfile", O_RDWR);
    struct flock ofd = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
    CHECK(fcntl(x, F_OFD_SETLK, &ofd) == -1 && errno == EAGAIN);  /* our POSIX lock */
    set_lock(fd, F_SETLK, F_UNLCK, 0, 0);
    CHECK(fcntl(x, F_OFD_SETLK, &ofd) == 0);
    FAILS(fcntl(y, F_OFD_SETLK, &ofd), EAGAIN);
    close(x);
    CHECK(fcntl(y, F_OFD_SETLK, &ofd) == 0);
    close(y);
    close(fd);
}

int main(void) {
    test_readdir();
    test_cwd();
    test_names();
    test_locks();
    puts("ok");
    return 0;
}
