/* Prints what the kernel built for this process at exec, for the loader's
 * differential tests: a line "sp top argc" (hex, hex, decimal), a line with
 * every byte of [sp, top) in hex, then /proc/self/maps as it is at main().
 * argc sits just below argv (the x86-64 ABI's initial rsp); the stack's top is
 * the end of the [stack] mapping. */
#include <stdio.h>
#include <string.h>

static char maps[1 << 16];

int main(int argc, char **argv) {
    unsigned long sp = (unsigned long)argv - 8, top = 0;
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return 2;
    size_t n = fread(maps, 1, sizeof maps - 1, f);
    fclose(f);
    maps[n] = 0;
    for (char *line = maps; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : 0) {
        unsigned long lo, hi;
        char *end = strchr(line, '\n');
        if (end) *end = 0;
        if (strstr(line, "[stack]") && sscanf(line, "%lx-%lx", &lo, &hi) == 2) top = hi;
        if (end) *end = '\n';
    }
    if (!top || sp >= top) return 3;
    printf("%lx %lx %d\n", sp, top, argc);
    for (unsigned char *p = (unsigned char *)sp; p < (unsigned char *)top; p++)
        printf("%02x", *p);
    printf("\n%s", maps);
    return 0;
}
