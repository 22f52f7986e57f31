/* The guest's stdio is a terminal (a host pty): it must look and act like one.
 * Prints "ready", reads one line in raw mode, answers "got:<line>"; exit 0. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <termios.h>
#include <unistd.h>

#define CHECK(c) do { if (!(c)) { dprintf(2, "FAIL %s:%d: %s (errno %d)\n", \
    __FILE__, __LINE__, #c, errno); exit(1); } } while (0)

int main(void) {
    struct stat st;
    struct termios tio, raw;
    struct winsize ws;
    char line[64];

    CHECK(isatty(0) && isatty(1));
    CHECK(fstat(0, &st) == 0 && S_ISCHR(st.st_mode) && major(st.st_rdev) == 136);
    char *name = ttyname(0);
    CHECK(name != NULL && strcmp(name, "/dev/pts/0") == 0);
    CHECK(tcgetpgrp(0) == getpgrp());
    CHECK(tcgetsid(0) == getsid(0));
    CHECK(ioctl(1, TIOCGWINSZ, &ws) == 0 && ws.ws_row == 33 && ws.ws_col == 99);
    int tty = open("/dev/tty", O_RDWR);
    CHECK(tty >= 0 && isatty(tty));
    close(tty);

    CHECK(tcgetattr(0, &tio) == 0 && (tio.c_lflag & ICANON));
    raw = tio;
    cfmakeraw(&raw);
    CHECK(tcsetattr(0, TCSANOW, &raw) == 0);
    CHECK(tcgetattr(0, &tio) == 0 && !(tio.c_lflag & ICANON));
    /* Left raw on purpose: cove must give the host its mode back. */

    CHECK(write(1, "ready\n", 6) == 6);
    size_t n = 0;
    while (n < sizeof line - 1) {
        ssize_t r = read(0, line + n, 1);
        CHECK(r == 1);
        if (line[n] == '\r' || line[n] == '\n')
            break;
        n++;
    }
    line[n] = 0;
    dprintf(1, "got:%s\n", line);
    return 0;
}
