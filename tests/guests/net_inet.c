/* TCP and UDP on loopback: a server on 127.0.0.1 (port from getsockname)
 * with a forked client, names on both ends, a non-blocking connect,
 * refused connections, UDP round trips, IPv6 ::1 and a dual-stack listener.
 * With --sandbox it also checks what only cove's loopback-only network
 * guarantees: 8.8.8.8 and every other outside address are unreachable.
 * Prints "ok" and exits 0; a failed check prints its line and exits 1. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "FAIL line %d: %s (errno %d %s)\n", \
    __LINE__, #c, errno, strerror(errno)); exit(1); } } while (0)
#define ERR(call, e) do { errno = 0; CHECK((call) == -1 && errno == (e)); } while (0)

static struct sockaddr_in v4(const char *ip, int port) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    CHECK(inet_pton(AF_INET, ip, &a.sin_addr) == 1);
    return a;
}

static int port_of(int fd) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    CHECK(getsockname(fd, (struct sockaddr *)&ss, &len) == 0);
    return ss.ss_family == AF_INET ? ntohs(((struct sockaddr_in *)&ss)->sin_port)
                                   : ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

static void tcp_echo(void) {
    int srv = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(srv >= 0);
    CHECK(setsockopt(srv, SOL_SOCKET, SO_REUSEADDR, &(int){1}, sizeof(int)) == 0);
    struct sockaddr_in a = v4("127.0.0.1", 0);
    CHECK(bind(srv, (struct sockaddr *)&a, sizeof a) == 0);
    int port = port_of(srv);
    CHECK(port >= 1024);
    CHECK(listen(srv, 16) == 0);
    int ac = 0;
    socklen_t al = sizeof ac;
    CHECK(getsockopt(srv, SOL_SOCKET, SO_ACCEPTCONN, &ac, &al) == 0 && ac == 1);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int c = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in to = v4("127.0.0.1", port);
        CHECK(connect(c, (struct sockaddr *)&to, sizeof to) == 0);
        CHECK(setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &(int){1}, sizeof(int)) == 0);
        struct sockaddr_in me, peer;
        socklen_t ml = sizeof me, pl = sizeof peer;
        CHECK(getsockname(c, (struct sockaddr *)&me, &ml) == 0 && ml == sizeof me);
        CHECK(me.sin_addr.s_addr == htonl(INADDR_LOOPBACK) && ntohs(me.sin_port) >= 1024);
        CHECK(getpeername(c, (struct sockaddr *)&peer, &pl) == 0 && ntohs(peer.sin_port) == port);
        const char *msg = "hello over loopback";
        CHECK(send(c, msg, strlen(msg), 0) == (ssize_t)strlen(msg));
        char buf[128];
        ssize_t n = recv(c, buf, sizeof buf, MSG_WAITALL);
        CHECK(n == (ssize_t)strlen(msg) + 5 && memcmp(buf, "echo:", 5) == 0);
        CHECK(recv(c, buf, sizeof buf, 0) == 0);  /* the server closed */
        _exit(0);
    }
    struct sockaddr_in peer;
    socklen_t pl = sizeof peer;
    int s = accept(srv, (struct sockaddr *)&peer, &pl);
    CHECK(s >= 0 && pl == sizeof peer && peer.sin_addr.s_addr == htonl(INADDR_LOOPBACK));
    CHECK(port_of(s) == port);
    char buf[128] = "echo:";
    ssize_t n = recv(s, buf + 5, sizeof buf - 5, 0);
    CHECK(n > 0);
    while (n < 19) {
        ssize_t more = recv(s, buf + 5 + n, sizeof buf - 5 - (size_t)n, 0);
        CHECK(more > 0);
        n += more;
    }
    CHECK(send(s, buf, (size_t)n + 5, 0) == n + 5);
    close(s);
    int status;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);

    /* Non-blocking connect: EINPROGRESS, then writable with SO_ERROR 0. */
    int nb = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in to = v4("127.0.0.1", port);
    int r = connect(nb, (struct sockaddr *)&to, sizeof to);
    CHECK(r == 0 || errno == EINPROGRESS);
    struct pollfd p = {nb, POLLOUT, 0};
    CHECK(poll(&p, 1, 5000) == 1 && (p.revents & POLLOUT));
    int err = -1;
    socklen_t el = sizeof err;
    CHECK(getsockopt(nb, SOL_SOCKET, SO_ERROR, &err, &el) == 0 && err == 0);
    int s2 = accept(srv, NULL, NULL);
    CHECK(s2 >= 0);
    CHECK(send(nb, "x", 1, 0) == 1 && recv(s2, buf, 1, 0) == 1 && buf[0] == 'x');
    close(s2);
    close(nb);
    close(srv);
    /* Nobody there any more. */
    int late = socket(AF_INET, SOCK_STREAM, 0);
    ERR(connect(late, (struct sockaddr *)&to, sizeof to), ECONNREFUSED);
    struct sockaddr_in zero = v4("127.0.0.1", 0);
    ERR(connect(socket(AF_INET, SOCK_STREAM, 0), (struct sockaddr *)&zero, sizeof zero),
        ECONNREFUSED);
}

static void tcp_hangup(void) {
    signal(SIGPIPE, SIG_IGN);
    int srv = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = v4("127.0.0.1", 0);
    CHECK(bind(srv, (struct sockaddr *)&a, sizeof a) == 0 && listen(srv, 1) == 0);
    struct sockaddr_in to = v4("127.0.0.1", port_of(srv));
    int c = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(connect(c, (struct sockaddr *)&to, sizeof to) == 0);
    int s = accept(srv, NULL, NULL);
    close(s);  /* FIN */
    char buf[8];
    CHECK(recv(c, buf, sizeof buf, 0) == 0);
    CHECK(send(c, "x", 1, 0) == 1);  /* the peer answers with RST */
    usleep(20000);
    ERR(send(c, "x", 1, 0), EPIPE);
    close(c);
    /* Data left unread at close: RST, ECONNRESET. */
    c = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(connect(c, (struct sockaddr *)&to, sizeof to) == 0);
    s = accept(srv, NULL, NULL);
    CHECK(send(c, "unread", 6, 0) == 6);
    usleep(20000);
    close(s);
    usleep(20000);
    ERR(recv(c, buf, sizeof buf, 0), ECONNRESET);
    close(c);
    close(srv);
}

static void udp(void) {
    int a = socket(AF_INET, SOCK_DGRAM, 0), b = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in any = v4("127.0.0.1", 0);
    CHECK(bind(a, (struct sockaddr *)&any, sizeof any) == 0);
    struct sockaddr_in to = v4("127.0.0.1", port_of(a));
    CHECK(sendto(b, "one", 3, 0, (struct sockaddr *)&to, sizeof to) == 3);
    CHECK(sendto(b, "two!", 4, 0, (struct sockaddr *)&to, sizeof to) == 4);
    char buf[16];
    struct sockaddr_in from;
    socklen_t fl = sizeof from;
    CHECK(recvfrom(a, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl) == 3);
    CHECK(fl == sizeof from && ntohs(from.sin_port) == port_of(b));
    CHECK(recv(a, buf, 2, MSG_TRUNC) == 4);  /* a datagram is read whole or cut */
    ERR(send(b, "x", 1, 0), EDESTADDRREQ);
    CHECK(connect(b, (struct sockaddr *)&to, sizeof to) == 0);
    CHECK(send(b, "conn", 4, 0) == 4 && recv(a, buf, sizeof buf, 0) == 4);
    /* A connected socket hears its peer only. */
    CHECK(connect(a, (struct sockaddr *)&from, sizeof from) == 0);
    int c = socket(AF_INET, SOCK_DGRAM, 0);
    CHECK(sendto(c, "stranger", 8, 0, (struct sockaddr *)&to, sizeof to) == 8);
    CHECK(send(b, "peer", 4, 0) == 4);
    CHECK(recv(a, buf, sizeof buf, 0) == 4 && memcmp(buf, "peer", 4) == 0);
    close(a);
    close(b);
    close(c);
}

static void ipv6(void) {
    int srv = socket(AF_INET6, SOCK_STREAM, 0);
    CHECK(srv >= 0);
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_ANY_INIT};
    CHECK(bind(srv, (struct sockaddr *)&a, sizeof a) == 0 && listen(srv, 4) == 0);
    int port = port_of(srv);
    int c6 = socket(AF_INET6, SOCK_STREAM, 0);
    struct sockaddr_in6 to6 = {.sin6_family = AF_INET6, .sin6_port = htons((unsigned short)port),
                               .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    CHECK(connect(c6, (struct sockaddr *)&to6, sizeof to6) == 0);
    struct sockaddr_in6 peer;
    socklen_t pl = sizeof peer;
    int s = accept(srv, (struct sockaddr *)&peer, &pl);
    CHECK(s >= 0 && IN6_IS_ADDR_LOOPBACK(&peer.sin6_addr));
    /* An IPv4 client reaches the dual-stack listener, seen v4-mapped. */
    int c4 = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in to4 = v4("127.0.0.1", port);
    CHECK(connect(c4, (struct sockaddr *)&to4, sizeof to4) == 0);
    pl = sizeof peer;
    int s4 = accept(srv, (struct sockaddr *)&peer, &pl);
    CHECK(s4 >= 0 && IN6_IS_ADDR_V4MAPPED(&peer.sin6_addr));
    CHECK(send(c4, "46", 2, 0) == 2);
    char buf[4];
    CHECK(recv(s4, buf, sizeof buf, 0) == 2);
    close(s);
    close(s4);
    close(c4);
    close(c6);
    close(srv);
}

static void outside_is_unreachable(void) {
    const char *outside[] = {"8.8.8.8", "1.1.1.1", "10.0.0.1", "192.168.1.1", "172.17.0.1"};
    for (unsigned i = 0; i < sizeof outside / sizeof *outside; i++) {
        struct sockaddr_in to = v4(outside[i], 53);
        ERR(connect(socket(AF_INET, SOCK_STREAM, 0), (struct sockaddr *)&to, sizeof to),
            ENETUNREACH);
        ERR(connect(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), (struct sockaddr *)&to,
                    sizeof to), ENETUNREACH);
        int u = socket(AF_INET, SOCK_DGRAM, 0);
        ERR(sendto(u, "q", 1, 0, (struct sockaddr *)&to, sizeof to), ENETUNREACH);
        ERR(connect(u, (struct sockaddr *)&to, sizeof to), ENETUNREACH);
        ERR(bind(socket(AF_INET, SOCK_STREAM, 0), (struct sockaddr *)&to, sizeof to),
            EADDRNOTAVAIL);
        close(u);
    }
    struct sockaddr_in6 g = {.sin6_family = AF_INET6, .sin6_port = htons(53)};
    CHECK(inet_pton(AF_INET6, "2001:4860:4860::8888", &g.sin6_addr) == 1);
    ERR(connect(socket(AF_INET6, SOCK_STREAM, 0), (struct sockaddr *)&g, sizeof g), ENETUNREACH);
    ERR(socket(AF_NETLINK, SOCK_RAW, 0), EAFNOSUPPORT);
    ERR(socket(AF_PACKET, SOCK_RAW, 0), EAFNOSUPPORT);
}

int main(int argc, char **argv) {
    tcp_echo();
    tcp_hangup();
    udp();
    ipv6();
    if (argc > 1 && strcmp(argv[1], "--sandbox") == 0)
        outside_is_unreachable();
    puts("ok");
    return 0;
}
