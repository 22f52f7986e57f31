/* Copy-on-write seen from both sides, many times over: after each fork the
 * PARENT writes every page again while the child still has to see the old
 * values (a parent keeping a writable translation through fork would write
 * into the shared frame), then the child writes and the parent must not see
 * it. Pages: a contiguous block, every other page of another block (runs of
 * one page), globals, the stack and the heap. Then many fork+exit and
 * fork+exec cycles, each child checking memory it inherited or loaded.
 * Prints "ok" on success; any mismatch exits non-zero with a message.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #c); \
                                  exit(1); } } while (0)
#define PAGES 48

static long global_pages[8 * 512];  /* 8 pages of .bss */
static long data_word = 7;           /* .data */
static char *block, *sparse, *heap;

static void fill(long v) {
    for (int i = 0; i < PAGES; i++) ((long *)(block + 4096L * i))[0] = v + i;
    for (int i = 0; i < PAGES; i++) ((long *)(sparse + 8192L * i))[0] = v + i;
    for (int i = 0; i < 8; i++) global_pages[512 * i] = v + i;
    for (int i = 0; i < 16; i++) ((long *)(heap + 4096L * i))[0] = v + i;
    data_word = v;
}

static int check(long v) {
    for (int i = 0; i < PAGES; i++) if (((long *)(block + 4096L * i))[0] != v + i) return 1;
    for (int i = 0; i < PAGES; i++) if (((long *)(sparse + 8192L * i))[0] != v + i) return 2;
    for (int i = 0; i < 8; i++) if (global_pages[512 * i] != v + i) return 3;
    for (int i = 0; i < 16; i++) if (((long *)(heap + 4096L * i))[0] != v + i) return 4;
    if (data_word != v) return 5;
    return 0;
}

static void round_trip(long r) {
    volatile long stack_word = r;  /* the stack is private too */
    fill(r);
    int go[2], done[2];
    CHECK(pipe(go) == 0 && pipe(done) == 0);
    pid_t p = fork();
    CHECK(p >= 0);
    if (p == 0) {
        char c;
        CHECK(read(go[0], &c, 1) == 1);   /* the parent has written meanwhile */
        int bad = check(r);
        if (bad || stack_word != r) _exit(10 + bad);
        fill(r + 5000);                   /* the child's writes stay its own */
        CHECK(write(done[1], "d", 1) == 1);
        _exit(check(r + 5000) ? 30 : 0);
    }
    fill(r + 1000);
    stack_word = r + 1000;
    CHECK(write(go[1], "g", 1) == 1);
    char c;
    CHECK(read(done[0], &c, 1) == 1);
    int st;
    CHECK(waitpid(p, &st, 0) == p);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "FAIL round %ld: child status %#x\n", r, st);
        exit(1);
    }
    CHECK(check(r + 1000) == 0 && stack_word == r + 1000);
    close(go[0]); close(go[1]); close(done[0]); close(done[1]);
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "child") == 0) {
        /* exec'd image: fresh .data/.bss, nothing left of the parent */
        return data_word == 7 && global_pages[0] == 0 ? 0 : 40;
    }
    int rounds = argc > 1 ? atoi(argv[1]) : 20;
    block = mmap(NULL, 4096L * PAGES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    sparse = mmap(NULL, 8192L * PAGES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    heap = malloc(16 * 4096);
    CHECK(block != MAP_FAILED && sparse != MAP_FAILED && heap);
    for (long r = 1; r <= rounds; r++) round_trip(r * 10);
    /* many short-lived processes: exit and exec retire address spaces */
    for (int i = 0; i < rounds * 5; i++) {
        pid_t p = fork();
        CHECK(p >= 0);
        if (p == 0) {
            if (i % 2) _exit(check(rounds * 10 + 1000) ? 50 : 0);
            execl("/proc/self/exe", argv[0], "child", (char *)NULL);
            _exit(60);
        }
        int st;
        CHECK(waitpid(p, &st, 0) == p);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "FAIL cycle %d: child status %#x\n", i, st);
            return 1;
        }
        fill(i);  /* the parent keeps writing between forks */
        CHECK(check(i) == 0);
        fill(rounds * 10 + 1000);
    }
    puts("ok");
    return 0;
}
