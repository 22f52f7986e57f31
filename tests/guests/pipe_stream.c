/* Two processes streaming through one pipe in 64 KiB pieces, the shape of
 * `dd | cat` and of cove's pipe benchmark, with a checksum at the end:
 *   pipe_stream pingpong N   the child writes N pieces, the parent reads them
 *   pipe_stream devices N    the child reads /dev/zero and writes the pipe,
 *                            the parent reads the pipe and writes /dev/null
 * Every piece fills or empties the pipe, so both sides sleep and wake on
 * every piece. Prints "ok". */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, \
    #c); exit(1); } } while (0)
#define PIECE 65536

static unsigned char buf[PIECE];

static uint64_t mix(uint64_t h, const unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ULL;
    return h;
}

int main(int argc, char **argv) {
    CHECK(argc == 3);
    int devices = strcmp(argv[1], "devices") == 0;
    long pieces = atol(argv[2]);
    int p[2];
    CHECK(pipe(p) == 0);
    uint64_t want = 1469598103934665603ULL;
    for (long i = 0; i < pieces; i++) {
        if (!devices) memset(buf, (int)(i * 7 + 1), PIECE);
        else memset(buf, 0, PIECE);
        want = mix(want, buf, PIECE);
    }
    pid_t c = fork();
    if (c == 0) {
        close(p[0]);
        int z = devices ? open("/dev/zero", O_RDONLY) : -1;
        for (long i = 0; i < pieces; i++) {
            if (devices) {
                buf[i % PIECE] = 0xFF; /* must be zeroed again by the read */
                if (read(z, buf, PIECE) != PIECE) _exit(2);
            } else {
                memset(buf, (int)(i * 7 + 1), PIECE);
            }
            for (long done = 0; done < PIECE;) {
                ssize_t n = write(p[1], buf + done, PIECE - done);
                if (n <= 0) _exit(3);
                done += n;
            }
        }
        _exit(0);
    }
    close(p[1]);
    int null = devices ? open("/dev/null", O_WRONLY) : -1;
    uint64_t h = 1469598103934665603ULL;
    long got = 0;
    for (;;) {
        ssize_t n = read(p[0], buf, sizeof buf);
        CHECK(n >= 0);
        if (n == 0) break;
        h = mix(h, buf, (size_t)n);
        if (devices) CHECK(write(null, buf, (size_t)n) == n);
        got += n;
    }
    int st;
    CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK(got == pieces * PIECE);
    CHECK(h == want);
    printf("ok\n");
    return 0;
}
