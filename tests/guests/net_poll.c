/* poll, select and epoll over sockets: an edge-triggered epoll echo server
 * for several forked TCP and AF_UNIX clients at once, poll on a socketpair
 * (POLLIN, POLLOUT, POLLHUP/POLLRDHUP on close), select on a listener, and
 * a blocked epoll_wait woken by a datagram. Prints "ok" and exits 0. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "FAIL line %d: %s (errno %d %s)\n", \
    __LINE__, #c, errno, strerror(errno)); exit(1); } } while (0)

#define CLIENTS 6
#define ROUNDS 20

static int tcp_port;
static struct sockaddr_un unix_addr;
static socklen_t unix_len;

static void client(int i) {
    int c;
    if (i % 2) {
        c = socket(AF_UNIX, SOCK_STREAM, 0);
        CHECK(connect(c, (struct sockaddr *)&unix_addr, unix_len) == 0);
    } else {
        c = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((unsigned short)tcp_port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        CHECK(connect(c, (struct sockaddr *)&to, sizeof to) == 0);
    }
    for (int r = 0; r < ROUNDS; r++) {
        char msg[64], back[64];
        int n = snprintf(msg, sizeof msg, "client %d round %d", i, r);
        CHECK(send(c, msg, (size_t)n, 0) == n);
        CHECK(recv(c, back, (size_t)n, MSG_WAITALL) == n);
        CHECK(memcmp(msg, back, (size_t)n) == 0);
    }
    close(c);
    _exit(0);
}

static void echo_server(void) {
    int tl = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(bind(tl, (struct sockaddr *)&a, sizeof a) == 0 && listen(tl, 16) == 0);
    socklen_t al = sizeof a;
    CHECK(getsockname(tl, (struct sockaddr *)&a, &al) == 0);
    tcp_port = ntohs(a.sin_port);
    int ul = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    memset(&unix_addr, 0, sizeof unix_addr);
    unix_addr.sun_family = AF_UNIX;
    snprintf(unix_addr.sun_path + 1, sizeof unix_addr.sun_path - 1, "cove-poll-%d", (int)getpid());
    unix_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 +
                           strlen(unix_addr.sun_path + 1));
    CHECK(bind(ul, (struct sockaddr *)&unix_addr, unix_len) == 0 && listen(ul, 16) == 0);

    int ep = epoll_create1(EPOLL_CLOEXEC);
    CHECK(ep >= 0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = tl};
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, tl, &ev) == 0);
    ev.data.fd = ul;
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, ul, &ev) == 0);
    pid_t kids[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        kids[i] = fork();
        CHECK(kids[i] >= 0);
        if (kids[i] == 0) client(i);
    }
    int closed = 0, accepted = 0;
    while (closed < CLIENTS) {
        struct epoll_event evs[16];
        int n = epoll_wait(ep, evs, 16, 10000);
        CHECK(n > 0);
        for (int k = 0; k < n; k++) {
            int fd = evs[k].data.fd;
            if (fd == tl || fd == ul) {
                for (;;) {  /* edge or level: drain the backlog */
                    int s = accept4(fd, NULL, NULL, SOCK_NONBLOCK);
                    if (s < 0) { CHECK(errno == EAGAIN); break; }
                    struct epoll_event cev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET,
                                              .data.fd = s};
                    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, s, &cev) == 0);
                    accepted++;
                }
                continue;
            }
            int done = 0;
            for (;;) {  /* edge-triggered: read until EAGAIN */
                char buf[256];
                ssize_t r = recv(fd, buf, sizeof buf, 0);
                if (r > 0) { CHECK(send(fd, buf, (size_t)r, 0) == r); continue; }
                if (r == 0) { done = 1; break; }
                CHECK(errno == EAGAIN);
                break;
            }
            if (done || (evs[k].events & (EPOLLRDHUP | EPOLLHUP))) {
                if (!done) {
                    char buf[256];
                    while (recv(fd, buf, sizeof buf, 0) > 0) {}
                }
                CHECK(epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL) == 0);
                close(fd);
                closed++;
            }
        }
    }
    CHECK(accepted == CLIENTS);
    for (int i = 0; i < CLIENTS; i++) {
        int status;
        CHECK(waitpid(kids[i], &status, 0) == kids[i]);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    close(ep);
    close(tl);
    close(ul);
}

static void poll_pair(void) {
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    struct pollfd p[2] = {{sv[0], POLLIN | POLLOUT | POLLRDHUP, 0}, {sv[1], POLLIN, 0}};
    CHECK(poll(p, 2, 0) == 1 && p[0].revents == POLLOUT && p[1].revents == 0);
    CHECK(send(sv[0], "x", 1, 0) == 1);
    CHECK(poll(p, 2, 0) == 2 && p[1].revents == POLLIN);
    /* Fill it: POLLOUT goes away until the reader drains. */
    char chunk[4096] = {0};
    while (send(sv[0], chunk, sizeof chunk, 0) > 0) {}
    CHECK(errno == EAGAIN);
    CHECK(poll(p, 1, 0) == 0);
    char sink[65536];
    while (recv(sv[1], sink, sizeof sink, 0) > 0) {}
    CHECK(poll(p, 1, 0) == 1 && (p[0].revents & POLLOUT));
    close(sv[1]);
    CHECK(poll(p, 1, 0) == 1);
    CHECK((p[0].revents & (POLLIN | POLLHUP | POLLRDHUP)) == (POLLIN | POLLHUP | POLLRDHUP));
    close(sv[0]);
}

static void select_listener(void) {
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(bind(l, (struct sockaddr *)&a, sizeof a) == 0 && listen(l, 1) == 0);
    socklen_t al = sizeof a;
    CHECK(getsockname(l, (struct sockaddr *)&a, &al) == 0);
    fd_set rd;
    FD_ZERO(&rd);
    FD_SET(l, &rd);
    struct timeval tv = {0, 0};
    CHECK(select(l + 1, &rd, NULL, NULL, &tv) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        int c = socket(AF_INET, SOCK_STREAM, 0);
        CHECK(connect(c, (struct sockaddr *)&a, sizeof a) == 0);
        _exit(0);
    }
    FD_SET(l, &rd);
    tv.tv_sec = 10;
    CHECK(select(l + 1, &rd, NULL, NULL, &tv) == 1 && FD_ISSET(l, &rd));
    int s = accept(l, NULL, NULL);
    CHECK(s >= 0);
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    close(s);
    close(l);
}

static void epoll_dgram_wakeup(void) {
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) == 0);
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = 7};
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, sv[1], &ev) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        usleep(50000);
        CHECK(send(sv[0], "wake", 4, 0) == 4);
        _exit(0);
    }
    struct epoll_event out;
    CHECK(epoll_wait(ep, &out, 1, 10000) == 1 && out.data.u32 == 7 && out.events == EPOLLIN);
    char buf[8];
    CHECK(recv(sv[1], buf, sizeof buf, 0) == 4);
    int status;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

int main(void) {
    echo_server();
    poll_pair();
    select_listener();
    epoll_dgram_wakeup();
    puts("ok");
    return 0;
}
