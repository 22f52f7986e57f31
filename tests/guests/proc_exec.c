/* execve, execveat/fexecve, vfork, posix_spawn and #! scripts as a Linux
 * program sees them, including the errors and what exec keeps and resets.
 * Run as "proc_exec" (absolute path in argv[0]); re-executes itself in child
 * modes. Every check is an assertion inside the guest; prints "ok", exits 0. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "FAIL %s:%d: %s (errno %d)\n", \
    __FILE__, __LINE__, #c, errno); exit(1); } } while (0)

extern char **environ;
static const char *self;

/* ---- child modes: exit codes say what was wrong (0 = all fine) ---- */
static int child_mode(int argc, char **argv) {
    const char *mode = argv[1];
    if (!strcmp(mode, "exit")) return atoi(argv[2]);
    if (!strcmp(mode, "fds")) {  /* fds KEEP GONE */
        int keep = atoi(argv[2]), gone = atoi(argv[3]);
        if (fcntl(keep, F_GETFD) != 0) return 2;
        if (fcntl(gone, F_GETFD) != -1 || errno != EBADF) return 3;
        return 0;
    }
    if (!strcmp(mode, "signals")) {
        struct sigaction sa;
        sigaction(SIGUSR1, NULL, &sa);
        if (sa.sa_handler != SIG_DFL) return 2;
        sigaction(SIGUSR2, NULL, &sa);
        if (sa.sa_handler != SIG_IGN) return 3;
        sigset_t m;
        sigprocmask(SIG_BLOCK, NULL, &m);
        if (!sigismember(&m, SIGINT) || sigismember(&m, SIGUSR1)) return 4;
        sigset_t p;
        sigpending(&p);
        if (!sigismember(&p, SIGINT)) return 5;  /* pending signals survive exec */
        stack_t ss;
        if (sigaltstack(NULL, &ss) != 0 || !(ss.ss_flags & SS_DISABLE)) return 6;
        return 0;
    }
    if (!strcmp(mode, "identity")) {  /* identity EXPECTED_EXE EXPECTED_COMM PID */
        char buf[256] = {0}, name[17] = {0};
        ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
        if (n < 0 || strcmp(buf, argv[2])) { fprintf(stderr, "exe=%s\n", buf); return 2; }
        prctl(PR_GET_NAME, name);
        if (strcmp(name, argv[3])) { fprintf(stderr, "comm=%s\n", name); return 3; }
        if (getpid() != atoi(argv[4])) return 4;  /* exec keeps the pid */
        return 0;
    }
    if (!strcmp(mode, "script")) {  /* #!SELF script: SELF script SCRIPTPATH x y */
        if (argc != 5 || strcmp(argv[2], "/tmp/script") || strcmp(argv[3], "x")
            || strcmp(argv[4], "y")) return 2;
        return 0;
    }
    if (!strcmp(mode, "env")) return getenv("COVE_TEST") && !strcmp(getenv("COVE_TEST"), "yes")
                                      && !getenv("HOME") ? 0 : 2;
    return 99;
}

static int run_wait(pid_t p) {
    int st;
    CHECK(waitpid(p, &st, 0) == p);
    CHECK(WIFEXITED(st));
    return WEXITSTATUS(st);
}

static void write_file(const char *path, const char *data, mode_t mode) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    CHECK(fd >= 0);
    CHECK(write(fd, data, strlen(data)) == (ssize_t)strlen(data));
    CHECK(fchmod(fd, mode) == 0);
    close(fd);
}

static void test_fork_exec(void) {
    for (int code = 0; code < 3; code++) {
        pid_t p = fork();
        if (p == 0) {
            char c[4];
            snprintf(c, sizeof c, "%d", code * 50);
            execl(self, self, "exit", c, (char *)NULL);
            _exit(127);
        }
        CHECK(run_wait(p) == code * 50);
    }
}

static void test_exec_keeps_and_resets(void) {
    int keep = open("/", O_RDONLY | O_DIRECTORY);
    int gone = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    CHECK(keep >= 0 && gone >= 0);
    pid_t p = fork();
    if (p == 0) {
        char a[12], b[12];
        snprintf(a, sizeof a, "%d", keep);
        snprintf(b, sizeof b, "%d", gone);
        execl(self, self, "fds", a, b, (char *)NULL);
        _exit(127);
    }
    CHECK(run_wait(p) == 0);
    close(keep);
    close(gone);

    p = fork();
    if (p == 0) {
        signal(SIGUSR1, (void (*)(int))1234);  /* "handled": any address */
        signal(SIGUSR2, SIG_IGN);
        static char altstack[65536];
        stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack};
        sigaltstack(&ss, NULL);
        sigset_t m;
        sigemptyset(&m);
        sigaddset(&m, SIGINT);
        sigprocmask(SIG_BLOCK, &m, NULL);
        raise(SIGINT);
        execl(self, self, "signals", (char *)NULL);
        _exit(127);
    }
    CHECK(run_wait(p) == 0);

    p = fork();
    if (p == 0) {
        char pid[12];
        snprintf(pid, sizeof pid, "%d", getpid());
        char comm[17];
        snprintf(comm, sizeof comm, "%.15s", strrchr(self, '/') + 1);
        execl(self, self, "identity", self, comm, pid, (char *)NULL);
        _exit(127);
    }
    CHECK(run_wait(p) == 0);

    p = fork();
    if (p == 0) {
        char *env[] = {"COVE_TEST=yes", NULL};
        char *args[] = {(char *)self, "env", NULL};
        execve(self, args, env);
        _exit(127);
    }
    CHECK(run_wait(p) == 0);
}

static void test_vfork_and_spawn(void) {
    static volatile int shared;
    shared = 0;
    pid_t p = vfork();
    if (p == 0) {
        shared = 42;  /* the parent's memory: it is suspended until we exec */
        execl(self, self, "exit", "7", (char *)NULL);
        _exit(127);
    }
    CHECK(p > 0 && shared == 42);
    CHECK(run_wait(p) == 7);

    p = vfork();
    if (p == 0) _exit(9);
    CHECK(run_wait(p) == 9);

    char *args[] = {(char *)self, "exit", "11", NULL};
    CHECK(posix_spawn(&p, self, NULL, NULL, args, environ) == 0);
    CHECK(run_wait(p) == 11);
    char *none[] = {"/no/such/program", NULL};
    int r = posix_spawn(&p, "/no/such/program", NULL, NULL, none, environ);
    CHECK(r == ENOENT || (r == 0 && run_wait(p) == 127));
}

static void test_scripts_and_fexecve(void) {
    char line[300];
    snprintf(line, sizeof line, "#!%s script\n", self);
    write_file("/tmp/script", line, 0755);
    pid_t p = fork();
    if (p == 0) {
        execl("/tmp/script", "script", "x", "y", (char *)NULL);
        _exit(127);
    }
    CHECK(run_wait(p) == 0);

    int fd = open(self, O_RDONLY | O_CLOEXEC);
    CHECK(fd >= 0);
    p = fork();
    if (p == 0) {
        char *args[] = {"fexec", "exit", "13", NULL};
        fexecve(fd, args, environ);
        _exit(127);
    }
    CHECK(run_wait(p) == 13);
    close(fd);
    /* fexecve of a script through a close-on-exec fd: the interpreter could not open it. */
    fd = open("/tmp/script", O_RDONLY | O_CLOEXEC);
    char *sargs[] = {"script", "x", "y", NULL};
    CHECK(fexecve(fd, sargs, environ) == -1 && errno == ENOENT);
    close(fd);
}

static void test_exec_errors(void) {
    char *args[] = {"x", NULL};
    CHECK(execv("/no/such/file", args) == -1 && errno == ENOENT);
    CHECK(execv("/tmp", args) == -1 && errno == EACCES);
    write_file("/tmp/data", "just some text\n", 0644);
    CHECK(execv("/tmp/data", args) == -1 && errno == EACCES);
    write_file("/tmp/junk", "\x7f" "ELF but not really, no header at all here", 0755);
    CHECK(execv("/tmp/junk", args) == -1 && errno == ENOEXEC);
    write_file("/tmp/nointerp", "#!/no/such/interpreter\n", 0755);
    CHECK(execv("/tmp/nointerp", args) == -1 && errno == ENOENT);
    write_file("/tmp/loop", "#!/tmp/loop\n", 0755);
    CHECK(execv("/tmp/loop", args) == -1 && errno == ELOOP);
    CHECK(execv("/tmp/data/x", args) == -1 && errno == ENOTDIR);
    CHECK(syscall(SYS_execve, self, (char **)8, NULL) == -1 && errno == EFAULT);
    CHECK(syscall(SYS_execve, (char *)8, args, NULL) == -1 && errno == EFAULT);
    char *big = malloc(200000);
    memset(big, 'a', 199999);
    big[199999] = 0;
    char *bargs[] = {"x", big, NULL};
    CHECK(execv(self, bargs) == -1 && errno == E2BIG);
    free(big);
    CHECK(syscall(SYS_execveat, AT_FDCWD, self, args, NULL, 0x4) == -1 && errno == EINVAL);
    CHECK(symlink(self, "/tmp/link") == 0);
    CHECK(syscall(SYS_execveat, AT_FDCWD, "/tmp/link", args, NULL, AT_SYMLINK_NOFOLLOW) == -1
          && errno == ELOOP);
    /* Still ourselves after all that. */
    CHECK(getpid() == 1);
}

int main(int argc, char **argv) {
    self = argv[0];
    if (argc > 1) return child_mode(argc, argv);
    CHECK(self[0] == '/');
    test_fork_exec();
    test_exec_keeps_and_resets();
    test_vfork_and_spawn();
    test_scripts_and_fexecve();
    test_exec_errors();
    printf("ok\n");
    return 0;
}
