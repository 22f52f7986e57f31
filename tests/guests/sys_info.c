/* Identity, machine, limits and scheduling calls as a real program sees them.
 * argv[1] = the sandbox's memory size in bytes. Prints each failed check to
 * stderr and exits with the number of failures. */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <sys/time.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

static int failures;
#define CHECK(c) do { if (!(c)) { fprintf(stderr, "FAIL %s:%d: %s (errno %d)\n", \
    __FILE__, __LINE__, #c, errno); failures++; } } while (0)

static double cpu_seconds(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    unsigned long long mem = argc > 1 ? strtoull(argv[1], 0, 0) : 0;

    /* pids are the sandbox's */
    CHECK(getpid() == 1);
    CHECK(getppid() == 0);
    CHECK(syscall(SYS_gettid) == 1);
    CHECK(getpgrp() == 1 && getsid(0) == 1);
    CHECK(getpgid(12345) == -1 && errno == ESRCH);

    /* the machine */
    struct utsname u;
    CHECK(uname(&u) == 0);
    CHECK(strcmp(u.sysname, "Linux") == 0);
    CHECK(strcmp(u.machine, "x86_64") == 0);
    CHECK(strcmp(u.nodename, "cove") == 0);
    CHECK(sethostname("inside", 6) == 0);
    CHECK(uname(&u) == 0 && strcmp(u.nodename, "inside") == 0);
    struct sysinfo si;
    CHECK(sysinfo(&si) == 0);
    CHECK((unsigned long long)si.totalram * si.mem_unit == mem);
    CHECK(si.freeram > 0 && si.freeram < si.totalram);
    CHECK(si.procs == 1 && si.uptime < 600);

    /* randomness */
    unsigned char buf[64] = {0}, zero[64] = {0};
    CHECK(getrandom(buf, sizeof buf, 0) == 64);
    CHECK(memcmp(buf, zero, 64) != 0);
    CHECK(getrandom(buf, 8, 0x40) == -1 && errno == EINVAL);

    /* names and TLS */
    char name[16];
    CHECK(prctl(PR_SET_NAME, "sys-info-guest-long") == 0);
    CHECK(prctl(PR_GET_NAME, name) == 0 && strcmp(name, "sys-info-guest-") == 0);
    unsigned long fs = 0, self;
    CHECK(syscall(SYS_arch_prctl, ARCH_GET_FS, &fs) == 0);
    __asm__ volatile("mov %%fs:0, %0" : "=r"(self));
    CHECK(fs == self && fs != 0);  /* glibc's TCB points at itself */
    CHECK(syscall(SYS_arch_prctl, ARCH_SET_FS, 1UL << 47) == -1 && errno == EPERM);

    /* limits: RLIMIT_NOFILE is the fd table's size */
    struct rlimit rl;
    CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    CHECK(rl.rlim_cur == 1024 && rl.rlim_max == 1048576);
    CHECK(getrlimit(RLIMIT_STACK, &rl) == 0 && rl.rlim_cur == 8 << 20);
    rl.rlim_cur = rl.rlim_max = 8;
    CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
    int last = -1, fd;
    while ((fd = open("/dev/null", O_RDONLY)) >= 0) last = fd;
    CHECK(errno == EMFILE && last == 7);
    for (int i = 3; i <= last; i++) close(i);

    /* scheduling */
    cpu_set_t set;
    CHECK(sched_getaffinity(0, sizeof set, &set) == 0);
    CHECK(CPU_COUNT(&set) == 1 && CPU_ISSET(0, &set));
    CHECK(sched_getcpu() == 0);
    CHECK(sched_yield() == 0);
    CHECK(nice(5) == 5);
    CHECK(getpriority(PRIO_PROCESS, 0) == 5);

    /* CPU time moves while this program computes */
    double c0 = cpu_seconds(CLOCK_PROCESS_CPUTIME_ID);
    volatile unsigned long spin = 0;
    for (unsigned long i = 0; i < 50000000UL; i++) spin += i;
    double c1 = cpu_seconds(CLOCK_PROCESS_CPUTIME_ID);
    CHECK(c1 > c0);
    CHECK(cpu_seconds(CLOCK_THREAD_CPUTIME_ID) > 0);
    struct rusage ru;
    CHECK(getrusage(RUSAGE_SELF, &ru) == 0);
    CHECK(ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 > 0 && ru.ru_maxrss > 0);

    /* credentials reach the filesystem */
    CHECK(mkdir("/tmp/private", 0700) == 0);
    gid_t groups[2] = {10, 20};
    CHECK(setgroups(2, groups) == 0);
    CHECK(getgroups(0, NULL) == 2);
    CHECK(setresgid(1000, 1000, 1000) == 0);
    CHECK(setresuid(1000, 1000, 1000) == 0);
    CHECK(getuid() == 1000 && geteuid() == 1000 && getegid() == 1000);
    CHECK(open("/tmp/private/x", O_CREAT | O_WRONLY, 0600) == -1 && errno == EACCES);
    CHECK(setuid(0) == -1 && errno == EPERM);
    CHECK(sethostname("x", 1) == -1 && errno == EPERM);
    rl.rlim_cur = rl.rlim_max = 9;
    CHECK(setrlimit(RLIMIT_NOFILE, &rl) == -1 && errno == EPERM);
    fd = open("/tmp/mine", O_CREAT | O_WRONLY, 0600);
    CHECK(fd >= 0);
    struct stat st;
    CHECK(fstat(fd, &st) == 0 && st.st_uid == 1000 && st.st_gid == 1000);

    if (failures) fprintf(stderr, "%d failures\n", failures);
    return failures;
}
