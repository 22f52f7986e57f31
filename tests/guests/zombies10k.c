/* Forks N children that exit at once (10,000 zombies by default), then reaps them all. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/wait.h>
int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 10000, made = 0;
    for (int i = 0; i < n; i++) {
        pid_t p = fork();
        if (p == 0) _exit(i & 0xff);
        if (p < 0) break;
        made++;
    }
    int reaped = 0, st;
    while (wait(&st) > 0) reaped++;
    printf("made %d reaped %d\n", made, reaped);
    return made == reaped ? 0 : 1;
}
