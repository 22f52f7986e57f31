/* The memory calls as a real program uses them: anonymous and file mappings,
 * protection faults, mremap, madvise, brk, /dev/zero. Exits with the number
 * of failures. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int failures;
#define CHECK(c) do { if (!(c)) { fprintf(stderr, "FAIL %s:%d: %s (errno %d)\n", \
    __FILE__, __LINE__, #c, errno); failures++; } } while (0)

static sigjmp_buf jb;
static volatile void *fault_addr;
static void on_segv(int sig, siginfo_t *si, void *uc) {
    (void)sig; (void)uc;
    fault_addr = si->si_addr;
    siglongjmp(jb, 1);
}

static int faults_on_write(volatile char *p) {
    if (sigsetjmp(jb, 1)) return 1;
    *p = 1;
    return 0;
}

int main(void) {
    const size_t pg = 4096;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, NULL);

    /* anonymous memory, protection, faults */
    char *a = mmap(NULL, 4 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(a != MAP_FAILED);
    if (a == MAP_FAILED) return 100;
    memset(a, 'a', 4 * pg);
    CHECK(mprotect(a + pg, pg, PROT_READ) == 0);
    CHECK(faults_on_write(a + pg) && fault_addr == a + pg);
    CHECK(!faults_on_write(a + 2 * pg));
    CHECK(a[pg] == 'a');
    CHECK(mprotect(a + pg, pg, PROT_READ | PROT_WRITE) == 0);
    CHECK(!faults_on_write(a + pg));

    /* mremap keeps the contents when it moves */
    char *b = mremap(a, 4 * pg, 64 * pg, MREMAP_MAYMOVE);
    CHECK(b != MAP_FAILED);
    if (b == MAP_FAILED) return 100;
    CHECK(b[3 * pg] == 'a');
    b[63 * pg] = 'z';
    CHECK(madvise(b, pg, MADV_DONTNEED) == 0 && b[0] == 0 && b[pg + 1] == 'a');
    unsigned char vec[64];
    CHECK(mincore(b, 64 * pg, vec) == 0 && (vec[63] & 1));
    CHECK(munmap(b, 64 * pg) == 0);
    CHECK(mincore(b, pg, vec) == -1 && errno == ENOMEM);
    CHECK(faults_on_write(b) && fault_addr == b);

    /* MAP_32BIT, fixed mappings, bad arguments */
    char *low = mmap(NULL, pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT,
                     -1, 0);
    CHECK(low != MAP_FAILED && (uintptr_t)low < 0x80000000UL);
    CHECK(mmap(NULL, 0, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) == MAP_FAILED
          && errno == EINVAL);
    CHECK(mmap(NULL, pg, PROT_READ, MAP_PRIVATE, 99, 0) == MAP_FAILED && errno == EBADF);
    CHECK(mmap((void *)0x1000, pg, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0)
          == MAP_FAILED && errno == EPERM);

    /* brk */
    char *brk0 = sbrk(0);
    CHECK(sbrk(3 * pg) == brk0);
    memset(brk0, 'h', 3 * pg);
    CHECK(sbrk(0) == brk0 + 3 * pg);

    /* file mappings: private copies, shared write-back */
    int fd = open("/tmp/mapped", O_CREAT | O_RDWR | O_TRUNC, 0644);
    CHECK(fd >= 0);
    char page[4096];
    memset(page, 'f', sizeof page);
    CHECK(write(fd, page, sizeof page) == (ssize_t)sizeof page);
    char *priv = mmap(NULL, pg, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    CHECK(priv != MAP_FAILED && priv[100] == 'f');
    priv[0] = 'P';
    char *shr = mmap(NULL, pg, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(shr != MAP_FAILED && shr[0] == 'f');
    memcpy(shr, "shared!", 7);
    CHECK(msync(shr, pg, MS_SYNC) == 0);
    char back[8] = {0};
    CHECK(pread(fd, back, 7, 0) == 7 && memcmp(back, "shared!", 7) == 0);
    CHECK(munmap(shr, pg) == 0 && munmap(priv, pg) == 0);
    int ro = open("/tmp/mapped", O_RDONLY);
    CHECK(mmap(NULL, pg, PROT_READ | PROT_WRITE, MAP_SHARED, ro, 0) == MAP_FAILED
          && errno == EACCES);
    char *rmap = mmap(NULL, pg, PROT_READ, MAP_SHARED, ro, 0);
    CHECK(rmap != MAP_FAILED && memcmp(rmap, "shared!", 7) == 0);
    CHECK(mprotect(rmap, pg, PROT_READ | PROT_WRITE) == -1 && errno == EACCES);

    /* /dev/zero is anonymous memory; a pipe cannot be mapped */
    int z = open("/dev/zero", O_RDWR);
    char *zm = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE, z, 0);
    CHECK(zm != MAP_FAILED && zm[pg] == 0);
    zm[0] = 1;
    int pfd[2];
    CHECK(pipe(pfd) == 0);
    CHECK(mmap(NULL, pg, PROT_READ, MAP_PRIVATE, pfd[0], 0) == MAP_FAILED && errno == ENODEV);

    /* locking is accepted; everything is resident */
    CHECK(mlock(zm, pg) == 0 && munlock(zm, pg) == 0);
    CHECK(mlockall(MCL_CURRENT) == 0 && munlockall() == 0);

    if (failures) fprintf(stderr, "%d failures\n", failures);
    return failures;
}
