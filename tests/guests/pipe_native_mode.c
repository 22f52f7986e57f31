/* A pipe stream that goes into native mode on userland (cove.kernel.nativemode:
 * the reader's and the writer's calls run in the host with no stop), and
 * then everything that must take it out again, each checked against Linux's
 * answer. The reader is the parent, the writer a child; both make the same
 * 64 KiB call over and over, the shape that turns native mode on.
 *   eof       the writer pauses (the reader sleeps in a native read), then
 *             exits: every byte, then EOF
 *   epipe     the reader exits while the writer sleeps in a native write of
 *             a full pipe: EPIPE (SIGPIPE ignored), never a hang
 *   eintr     a third process (forked before the pipe) signals the reader
 *             asleep in a native read: EINTR (handler without SA_RESTART)
 *   restart   the same with SA_RESTART: the read goes on and sees EOF
 *   carry     the reader then takes 8 KiB at a time, so a native 64 KiB write
 *             often blocks halfway, while a third process signals both
 *             again and again (SA_RESTART): short writes at most, every
 *             byte arrives once, in order
 *   switch    the reader changes its buffer halfway: no byte lost
 *   nonblock  the reader sets O_NONBLOCK while the writer pauses: EAGAIN
 *   fork      the writer forks halfway and its child writes the rest
 *   munmap    the reader unmaps its buffer and reads into it: EFAULT
 *   reuse     the reader puts a file at the pipe's fd number (dup2) and
 *             makes the very call its rule allows: it reads the file
 *   clonevm   a process sharing the reader's memory (CLONE_VM, its own fd
 *             table) keeps a pipe of its own at the same fd number: the
 *             reader's stream stays the reader's (no native mode for it)
 *   remap     the reader maps fresh memory over its buffer between its own
 *             streak and the writer's, which turns native mode on: the
 *             reads still succeed (the pages are checked again)
 *   stop      a third process stops the reader (SIGSTOP) while it sleeps in a
 *             native read, the writer writes, then SIGCONT: every byte, once
 *   long      512 MiB, for a host that pauses the sandbox meanwhile
 * Prints "ok". */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "FAIL %s:%d: %s (errno %d)\n", __FILE__, \
    __LINE__, #c, errno); exit(1); } } while (0)
#define PIECE 65536
#define PIECES 64

static unsigned char wbuf[PIECE], rbuf[PIECE], rbuf2[PIECE];
static volatile sig_atomic_t hits;

static void on_signal(int sig) { (void)sig; hits++; }

static void pause_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

static unsigned char byte_at(long i) { return (unsigned char)(i * 131 + (i >> 16)); }

/* write(2) as the instruction itself: Linux keeps every register but rax, rcx
 * and r11, and code that makes the call inline relies on it (a native write
 * that cove finishes must leave rsi and rdx as they were). */
static ssize_t raw_write(int fd, const void *buf, size_t n) {
    register long rax __asm__("rax") = 1;
    register long rdi __asm__("rdi") = fd;
    register const void *rsi __asm__("rsi") = buf;
    register size_t rdx __asm__("rdx") = n;
    __asm__ volatile("syscall" : "+a"(rax), "+D"(rdi), "+S"(rsi), "+d"(rdx)
                     : : "rcx", "r11", "memory");
    if (rdi != fd || rsi != buf || rdx != n) _exit(40);
    if (rax < 0) {
        errno = (int)-rax;
        return -1;
    }
    return rax;
}

/* Writes bytes [from, to) of the stream in `chunk` calls, finishing short writes. */
static void write_stream(int fd, long from, long to, long chunk) {
    for (long pos = from; pos < to;) {
        long n = to - pos < chunk ? to - pos : chunk;
        for (long i = 0; i < n; i++) wbuf[i] = byte_at(pos + i);
        for (long done = 0; done < n;) {
            ssize_t w = raw_write(fd, wbuf + done, (size_t)(n - done));
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) _exit(3);
            done += w;
        }
        pos += n;
    }
}

/* Reads until `want` bytes or EOF in `size` calls, checking every byte; the count. */
static long read_sized(int fd, long got, long want, unsigned char *buf, size_t size) {
    while (got < want) {
        ssize_t n = read(fd, buf, size);
        CHECK(n >= 0);
        if (n == 0) break;
        for (ssize_t i = 0; i < n; i++) CHECK(buf[i] == byte_at(got + i));
        got += n;
    }
    return got;
}

static long read_stream(int fd, long got, long want, unsigned char *buf) {
    return read_sized(fd, got, want, buf, PIECE);
}

static pid_t writer(int p[2], long total, long chunk, long pause_at, long pause_ms_) {
    pid_t c = fork();
    CHECK(c >= 0);
    if (c == 0) {
        close(p[0]);
        write_stream(p[1], 0, pause_at, chunk);
        if (pause_ms_) pause_ms(pause_ms_);
        write_stream(p[1], pause_at, total, chunk);
        _exit(0);
    }
    close(p[1]);
    return c;
}

/* Forked before the pipe is made, so it holds no end of it (an end held by a
 * third process keeps a pipe out of native mode); it signals the pids in
 * `targets` (shared memory: a writer forked later puts its own there). */
static volatile pid_t *targets;

static pid_t signaller(int sig, int count, long every_ms, long first_ms) {
    pid_t s = fork();
    CHECK(s >= 0);
    if (s == 0) {
        pause_ms(first_ms);
        for (int i = 0; i < count; i++) {
            for (int j = 0; j < 2; j++)
                if (targets[j] > 0) kill(targets[j], sig);
            pause_ms(every_ms);
        }
        _exit(0);
    }
    return s;
}

static int clonevm_child(void *arg) {
    /* Our fd table is a copy: put a pipe of our own, full of other bytes, at
     * the parent's pipe's number, and use it (through the same stub). */
    int fd = *(int *)arg, q[2];
    static unsigned char junk[4096];
    if (pipe(q)) return 7;
    if (dup2(q[0], fd) != fd) return 8;
    memset(junk, 0xEE, sizeof junk);
    for (int i = 0; i < 50; i++) {  /* each read puts our end at fd in the stub */
        if (write(q[1], junk, sizeof junk) != (ssize_t)sizeof junk) return 9;
        if (write(q[1], junk, sizeof junk) != (ssize_t)sizeof junk) return 9;
        if (read(fd, junk, sizeof junk) != (ssize_t)sizeof junk) return 10;
        if (read(fd, junk, sizeof junk) != (ssize_t)sizeof junk) return 10;
        if (write(q[1], junk, sizeof junk) != (ssize_t)sizeof junk) return 9;
        pause_ms(5);  /* with bytes waiting in our pipe */
        if (read(fd, junk, sizeof junk) != (ssize_t)sizeof junk) return 10;
    }
    return 0;
}

static void reap(pid_t pid, int want_status) {
    int st;
    CHECK(waitpid(pid, &st, 0) == pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == want_status);
}

int main(int argc, char **argv) {
    CHECK(argc == 2);
    const char *m = argv[1];
    long total = (long)PIECES * PIECE, half = total / 2;
    int restart = !strcmp(m, "restart") || !strcmp(m, "carry");
    pid_t s = 0;
    if (!strcmp(m, "stop")) {
        targets = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        CHECK(targets != MAP_FAILED);
        targets[0] = getpid();
        s = fork();
        CHECK(s >= 0);
        if (s == 0) {  /* holds no pipe end: forked before the pipe */
            pause_ms(150);
            kill(targets[0], SIGSTOP);
            pause_ms(300);  /* the writer writes meanwhile */
            kill(targets[0], SIGCONT);
            _exit(0);
        }
    }
    if (restart || !strcmp(m, "eintr")) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sa.sa_flags = restart ? SA_RESTART : 0;
        CHECK(sigaction(SIGUSR1, &sa, 0) == 0);  /* inherited by every child */
        targets = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        CHECK(targets != MAP_FAILED);
        targets[0] = getpid();
        if (!strcmp(m, "carry")) s = signaller(SIGUSR1, 40, 2, 40);
        else s = signaller(SIGUSR1, 1, 0, 200);
    }
    int p[2];
    CHECK(pipe(p) == 0);
    if (!strcmp(m, "eof")) {
        pid_t w = writer(p, total, PIECE, half, 200);
        CHECK(read_stream(p[0], 0, total + 1, rbuf) == total);
        reap(w, 0);
    } else if (!strcmp(m, "epipe")) {
        signal(SIGPIPE, SIG_IGN);
        pid_t c = fork();
        CHECK(c >= 0);
        if (c == 0) {  /* the writer reports how it ended */
            close(p[0]);
            long pos = 0;
            for (;;) {
                for (long i = 0; i < PIECE; i++) wbuf[i] = byte_at(pos + i);
                ssize_t n = write(p[1], wbuf, PIECE);
                if (n < 0) _exit(errno == EPIPE ? 0 : 4);
                pos += n;
            }
        }
        close(p[1]);
        read_stream(p[0], 0, half, rbuf);
        pause_ms(100);  /* the writer fills the pipe and sleeps in the host */
        close(p[0]);
        reap(c, 0);
    } else if (!strcmp(m, "eintr") || !strcmp(m, "restart")) {
        /* The writer stops at `half` but keeps the pipe open for 600 ms; the
         * signal comes at 200 ms, in the read that waits for more. */
        pid_t w = writer(p, half, PIECE, half, 600);
        CHECK(read_stream(p[0], 0, half, rbuf) == half);
        ssize_t n = read(p[0], rbuf, PIECE);
        if (restart) {
            CHECK(n == 0 && hits == 1);  /* EOF, once the writer's copy closes */
        } else {
            CHECK(n == -1 && errno == EINTR && hits == 1);
        }
        reap(s, 0);
        reap(w, 0);
    } else if (!strcmp(m, "carry")) {
        /* Signals to the writer and the reader (SA_RESTART). */
        long big = 8L * total;
        pid_t w = writer(p, big, PIECE, big, 0);
        targets[1] = w;
        long got = read_sized(p[0], 0, 32L * PIECE, rbuf, PIECE);  /* native mode on */
        CHECK(read_sized(p[0], got, big + 1, rbuf, 8192) == big);  /* within its rule */
        reap(w, 0);
        reap(s, 0);
    } else if (!strcmp(m, "switch")) {
        pid_t w = writer(p, total, PIECE, total, 0);
        long got = read_stream(p[0], 0, half, rbuf);
        CHECK(read_stream(p[0], got, total + 1, rbuf2) == total);
        reap(w, 0);
    } else if (!strcmp(m, "nonblock")) {
        pid_t w = writer(p, total, PIECE, half, 300);
        CHECK(read_stream(p[0], 0, half, rbuf) == half);
        CHECK(fcntl(p[0], F_SETFL, O_NONBLOCK) == 0);
        ssize_t n = read(p[0], rbuf, PIECE);
        CHECK(n == -1 && errno == EAGAIN);
        CHECK(fcntl(p[0], F_SETFL, 0) == 0);
        CHECK(read_stream(p[0], half, total + 1, rbuf) == total);
        reap(w, 0);
    } else if (!strcmp(m, "fork")) {
        pid_t c = fork();
        CHECK(c >= 0);
        if (c == 0) {
            close(p[0]);
            write_stream(p[1], 0, half, PIECE);
            pid_t g = fork();
            if (g < 0) _exit(5);
            if (g == 0) {
                write_stream(p[1], half, total, PIECE);
                _exit(0);
            }
            close(p[1]);
            int st;
            if (waitpid(g, &st, 0) != g || !WIFEXITED(st) || WEXITSTATUS(st)) _exit(6);
            _exit(0);
        }
        close(p[1]);
        CHECK(read_stream(p[0], 0, total + 1, rbuf) == total);
        reap(c, 0);
    } else if (!strcmp(m, "munmap")) {
        unsigned char *buf = mmap(0, PIECE, PROT_READ | PROT_WRITE,
                                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        CHECK(buf != MAP_FAILED);
        pid_t w = writer(p, total, PIECE, half, 0);
        long got = read_stream(p[0], 0, half, buf);
        CHECK(munmap(buf, PIECE) == 0);
        ssize_t n = read(p[0], buf, PIECE);
        CHECK(n == -1 && errno == EFAULT);
        CHECK(read_stream(p[0], got, total + 1, rbuf) == total);
        reap(w, 0);
    } else if (!strcmp(m, "reuse")) {
        signal(SIGPIPE, SIG_IGN);
        static const char text[] = "not from the pipe\n";
        int f = open("/tmp/pnm-reuse", O_RDWR | O_CREAT | O_TRUNC, 0600);
        CHECK(f >= 0 && write(f, text, sizeof text - 1) == (ssize_t)(sizeof text - 1));
        CHECK(lseek(f, 0, SEEK_SET) == 0);
        pid_t w = writer(p, total, PIECE, total, 0);
        CHECK(read_stream(p[0], 0, half, rbuf) == half);
        CHECK(dup2(f, p[0]) == p[0]);
        ssize_t n = read(p[0], rbuf, PIECE);
        CHECK(n == (ssize_t)(sizeof text - 1) && memcmp(rbuf, text, (size_t)n) == 0);
        close(p[0]);
        close(f);
        int st;
        CHECK(waitpid(w, &st, 0) == w && WIFEXITED(st) && WEXITSTATUS(st) == 3);  /* EPIPE */
    } else if (!strcmp(m, "clonevm")) {
        static char stack[1 << 16] __attribute__((aligned(16)));
        pid_t w = writer(p, 4L * total, PIECE, 4L * total, 0);
        int fd = p[0];
        pid_t c = clone(clonevm_child, stack + sizeof stack, CLONE_VM | SIGCHLD, &fd);
        CHECK(c > 0);
        CHECK(read_stream(p[0], 0, 4L * total + 1, rbuf) == 4L * total);
        reap(c, 0);
        reap(w, 0);
    } else if (!strcmp(m, "remap")) {
        pid_t c = fork();
        CHECK(c >= 0);
        if (c == 0) {
            close(p[0]);
            write_stream(p[1], 0, 8192, 8192);  /* the writer's first call differs */
            pause_ms(200);  /* the reader reads twice, then remaps */
            write_stream(p[1], 8192, 8192 + 6 * 4096, 4096);  /* streak 2: native mode */
            pause_ms(300);
            _exit(0);
        }
        close(p[1]);
        unsigned char *buf = mmap(0, 1 << 20, PROT_READ | PROT_WRITE,
                                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        CHECK(buf != MAP_FAILED);
        memset(buf, 0, 1 << 20);  /* populated, and ours alone (after the fork) */
        pause_ms(100);
        CHECK(read_sized(p[0], 0, 8192, buf, 4096) == 8192);  /* the reader's streak */
        CHECK(mmap(buf, 1 << 20, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == buf);  /* unpopulated */
        pause_ms(400);
        CHECK(read_sized(p[0], 8192, 8192 + 6 * 4096 + 1, buf, 4096) == 8192 + 6 * 4096);
        reap(c, 0);
    } else if (!strcmp(m, "stop")) {
        pid_t w = writer(p, total, PIECE, half, 300);  /* pauses across the stop */
        CHECK(read_stream(p[0], 0, total + 1, rbuf) == total);
        reap(w, 0);
        reap(s, 0);
    } else if (!strcmp(m, "long")) {
        long big = 512L << 20;
        pid_t w = writer(p, big, PIECE, big, 0);
        CHECK(read_stream(p[0], 0, big + 1, rbuf) == big);
        reap(w, 0);
    } else {
        CHECK(!"unknown mode");
    }
    printf("ok\n");
    return 0;
}
