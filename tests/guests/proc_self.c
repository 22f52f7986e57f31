/* /proc as a program sees itself: maps (its code, [heap], [stack]), exe,
 * stat/status numbers against getpid/getppid, cmdline from its own memory
 * (also after rewriting argv), comm, a child's entries, and no host pid.
 *
 * Usage: proc_self HOST_PID HOST_PPID
 * Prints "ok" and exits 0; on failure prints what failed and exits 1. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int failures;
#define CHECK(cond, ...)                                              \
    do {                                                              \
        if (!(cond)) {                                                \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);      \
            fprintf(stderr, __VA_ARGS__);                             \
            fprintf(stderr, "\n");                                    \
            failures++;                                               \
        }                                                             \
    } while (0)

static char buf[1 << 20];

static ssize_t slurp(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -1;
    ssize_t total = 0, n;
    while ((n = read(fd, buf + total, sizeof buf - 1 - total)) > 0) total += n;
    close(fd);
    buf[total] = 0;
    return n < 0 ? -1 : total;
}

/* The maps line whose range holds addr: its perms and path. */
static int find_map(uintptr_t addr, char *perms, char *path) {
    if (slurp("/proc/self/maps") < 0) return 0;
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
        unsigned long lo, hi, off, ino;
        unsigned maj, min;
        int name_at = 0;
        if (sscanf(line, "%lx-%lx %4s %lx %x:%x %lu %n", &lo, &hi, perms, &off, &maj, &min,
                   &ino, &name_at) < 7)
            return -1;
        if (addr >= lo && addr < hi) {
            strcpy(path, name_at ? line + name_at : "");
            return 1;
        }
    }
    return 0;
}

static long field(const char *text, const char *key) {
    const char *p = strstr(text, key);
    return p ? strtol(p + strlen(key), NULL, 10) : -1;
}

/* Whole decimal tokens of text equal to one of the host's pids? */
static int has_token(const char *text, const char *a, const char *b) {
    const char *p = text;
    while (*p) {
        while (*p && (*p < '0' || *p > '9')) p++;
        const char *s = p;
        while (*p >= '0' && *p <= '9') p++;
        size_t n = (size_t)(p - s);
        if (n && ((strlen(a) == n && !strncmp(s, a, n)) || (strlen(b) == n && !strncmp(s, b, n))))
            return 1;
    }
    return 0;
}

static int scanned;

/* Walk /proc: names of entries, link targets and the files that carry pids
 * must never show a host pid (cmdline and environ are skipped: ours hold
 * the host pids we were given). */
static void scan(const char *dir, int depth, const char *hp, const char *hpp) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char path[512], target[512];
    while ((e = readdir(d))) {
        const char *n = e->d_name;
        if (!strcmp(n, ".") || !strcmp(n, "..") || !strcmp(n, "self") || !strcmp(n, "thread-self"))
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, n);
        CHECK(!has_token(n, hp, hpp), "host pid as an entry name: %s", path);
        if (e->d_type == DT_LNK) {
            ssize_t k = readlink(path, target, sizeof target - 1);
            if (k >= 0) {
                target[k] = 0;
                CHECK(!has_token(target, hp, hpp), "host pid in link %s -> %s", path, target);
            }
        } else if (e->d_type == DT_DIR) {
            if (depth < 3 && strcmp(n, "sys")) scan(path, depth + 1, hp, hpp);
        } else if (!strcmp(n, "stat") || !strcmp(n, "status") || !strcmp(n, "loadavg") ||
                   !strcmp(n, "mountinfo")) {
            if (slurp(path) >= 0) {
                scanned++;
                CHECK(!has_token(buf, hp, hpp), "host pid in %s", path);
            }
        }
    }
    closedir(d);
}

int main(int argc, char **argv) {
    CHECK(argc == 3, "usage: proc_self HOST_PID HOST_PPID");
    if (argc != 3) return 1;
    char perms[8], path[512], exe[512];
    int local = 0;

    /* exe, and the code mapping of main with that path */
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    CHECK(n > 0, "readlink /proc/self/exe: %s", strerror(errno));
    exe[n > 0 ? n : 0] = 0;
    CHECK(!strcmp(exe, "/guests/proc_self") || !strcmp(exe, "/guests/proc_self-pie"),
          "exe is %s", exe);
    CHECK(find_map((uintptr_t)&main, perms, path) == 1, "main not in maps");
    CHECK(perms[0] == 'r' && perms[2] == 'x' && perms[3] == 'p', "code perms %s", perms);
    CHECK(!strcmp(path, exe), "code mapped from '%s', exe '%s'", path, exe);
    CHECK(find_map((uintptr_t)&local, perms, path) == 1 && !strcmp(path, "[stack]"),
          "a local variable is in '%s', not [stack]", path);
    CHECK(!strcmp(perms, "rw-p"), "stack perms %s", perms);
    void *old_brk = sbrk(0);
    CHECK(sbrk(4096) != (void *)-1, "sbrk");
    CHECK(find_map((uintptr_t)old_brk, perms, path) == 1 && !strcmp(path, "[heap]"),
          "the brk area is '%s', not [heap]", path);

    /* stat and status name this process as getpid/getppid do */
    CHECK(slurp("/proc/self/stat") > 0, "read stat");
    char *close_paren = strrchr(buf, ')');
    int spid = atoi(buf), sppid = 0;
    char state = 0;
    sscanf(close_paren + 2, "%c %d", &state, &sppid);
    CHECK(spid == getpid() && sppid == getppid(), "stat says %d/%d, getpid %d/%d", spid, sppid,
          getpid(), getppid());
    CHECK(state == 'R', "own state %c", state);
    int fields = 2; /* pid and (comm), then one per space */
    for (char *p = close_paren + 1; *p; p++) fields += *p == ' ';
    CHECK(fields == 52, "stat has %d fields", fields);
    CHECK(slurp("/proc/self/status") > 0, "read status");
    CHECK(field(buf, "\nPid:\t") == getpid() && field(buf, "\nPPid:\t") == getppid(),
          "status pids");
    CHECK(field(buf, "\nVmRSS:\t") > 0, "VmRSS");

    /* cmdline from memory, and after rewriting argv in place */
    n = slurp("/proc/self/cmdline");
    CHECK(n > 0 && !strcmp(buf, argv[0]) && !strcmp(buf + strlen(argv[0]) + 1, argv[1]),
          "cmdline");
    char saved = argv[1][0];
    argv[1][0] = 'X';
    slurp("/proc/self/cmdline");
    CHECK(buf[strlen(argv[0]) + 1] == 'X', "cmdline after argv rewrite");
    argv[1][0] = saved;

    /* comm: prctl and /proc agree both ways */
    prctl(PR_SET_NAME, "from-prctl");
    slurp("/proc/self/comm");
    CHECK(!strcmp(buf, "from-prctl\n"), "comm %s", buf);
    int fd = open("/proc/self/comm", O_WRONLY | O_TRUNC);
    CHECK(fd >= 0 && write(fd, "from-proc", 9) == 9, "write comm");
    close(fd);
    char name[16] = {0};
    prctl(PR_GET_NAME, name);
    CHECK(!strcmp(name, "from-proc"), "prctl name %s", name);

    /* a child's entries */
    int pipefd[2];
    CHECK(pipe(pipefd) == 0, "pipe");
    pid_t child = fork();
    if (child == 0) {
        char c;
        close(pipefd[1]);
        read(pipefd[0], &c, 1);
        _exit(0);
    }
    char cpath[64];
    snprintf(cpath, sizeof cpath, "/proc/%d/stat", child);
    CHECK(slurp(cpath) > 0, "read %s", cpath);
    sscanf(strrchr(buf, ')') + 2, "%c %d", &state, &sppid);
    CHECK(sppid == getpid(), "child's ppid %d", sppid);
    snprintf(cpath, sizeof cpath, "/proc/%d/fd/%d", child, pipefd[0]);
    n = readlink(cpath, path, sizeof path - 1);
    path[n > 0 ? n : 0] = 0;
    CHECK(!strncmp(path, "pipe:[", 6), "child's pipe fd is %s", path);

    /* nothing under /proc names a host pid */
    scan("/proc", 0, argv[1], argv[2]);
    CHECK(scanned >= 6, "scanned only %d files", scanned);
    write(pipefd[1], "x", 1);
    int status;
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status), "wait");
    if (failures) return 1;
    printf("ok\n");
    return 0;
}
