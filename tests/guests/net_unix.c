/* AF_UNIX sockets: a stream echo server and client across fork, SCM_RIGHTS
 * passing a pipe's write end, datagram and seqpacket boundaries, names and
 * their lengths, credentials, shutdown/close semantics and the errnos.
 * Prints "ok" and exits 0; any failed check prints its line and exits 1.
 * Runs in cove and natively (the tests run it both ways). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "FAIL line %d: %s (errno %d %s)\n", \
    __LINE__, #c, errno, strerror(errno)); exit(1); } } while (0)
#define ERR(call, e) do { errno = 0; CHECK((call) == -1 && errno == (e)); } while (0)

static char dir[64];

static socklen_t path_addr(struct sockaddr_un *a, const char *name) {
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    snprintf(a->sun_path, sizeof a->sun_path, "%s/%s", dir, name);
    return offsetof(struct sockaddr_un, sun_path) + strlen(a->sun_path) + 1;
}

static socklen_t abstract_addr(struct sockaddr_un *a, const char *name) {
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    size_t n = strlen(name);
    memcpy(a->sun_path + 1, name, n);
    return offsetof(struct sockaddr_un, sun_path) + 1 + n;
}

static void write_all(int fd, const void *buf, size_t n) {
    const char *p = buf;
    while (n) {
        ssize_t w = write(fd, p, n);
        CHECK(w > 0);
        p += w;
        n -= (size_t)w;
    }
}

static void stream_echo(void) {
    struct sockaddr_un a, got;
    socklen_t len = path_addr(&a, "echo.sock");
    int srv = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(srv >= 0);
    CHECK(bind(srv, (struct sockaddr *)&a, len) == 0);
    struct stat st;
    CHECK(stat(a.sun_path, &st) == 0 && S_ISSOCK(st.st_mode));
    ERR(bind(socket(AF_UNIX, SOCK_STREAM, 0), (struct sockaddr *)&a, len), EADDRINUSE);
    socklen_t glen = sizeof got;
    CHECK(getsockname(srv, (struct sockaddr *)&got, &glen) == 0);
    CHECK(glen == len && strcmp(got.sun_path, a.sun_path) == 0);
    int early = socket(AF_UNIX, SOCK_STREAM, 0);
    ERR(connect(early, (struct sockaddr *)&a, len), ECONNREFUSED);  /* not listening yet */
    CHECK(listen(srv, 4) == 0);

    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int c = socket(AF_UNIX, SOCK_STREAM, 0);
        CHECK(c >= 0);
        CHECK(connect(c, (struct sockaddr *)&a, len) == 0);
        socklen_t plen = sizeof got;
        CHECK(getpeername(c, (struct sockaddr *)&got, &plen) == 0 && plen == len);
        char buf[256];
        for (int i = 0; i < 50; i++) {
            int n = snprintf(buf, sizeof buf, "line %d\n", i);
            write_all(c, buf, (size_t)n);
            char back[256];
            int got_n = 0;
            while (got_n < n) {
                ssize_t r = read(c, back + got_n, (size_t)(n - got_n));
                CHECK(r > 0);
                got_n += (int)r;
            }
            CHECK(memcmp(buf, back, (size_t)n) == 0);
        }
        CHECK(shutdown(c, SHUT_WR) == 0);
        CHECK(read(c, buf, sizeof buf) == 0);  /* the server closes after our EOF */
        /* A second connection: more than a socket buffer holds, both ways. */
        int c2 = socket(AF_UNIX, SOCK_STREAM, 0);
        CHECK(connect(c2, (struct sockaddr *)&a, len) == 0);
        size_t big = 600000;
        char *out = malloc(big), *in = malloc(big);
        for (size_t i = 0; i < big; i++) out[i] = (char)(i * 7);
        CHECK(send(c2, out, big, 0) == (ssize_t)big);  /* blocking: all of it */
        CHECK(shutdown(c2, SHUT_WR) == 0);
        CHECK(recv(c2, in, big, MSG_WAITALL) == (ssize_t)big);
        CHECK(memcmp(in, out, big) == 0);
        _exit(0);
    }
    struct sockaddr_un peer;
    socklen_t plen = sizeof peer;
    int s = accept4(srv, (struct sockaddr *)&peer, &plen, SOCK_CLOEXEC);
    CHECK(s >= 0);
    CHECK(plen == offsetof(struct sockaddr_un, sun_path));  /* the client is unnamed */
    CHECK(fcntl(s, F_GETFD) & FD_CLOEXEC);
    struct ucred cred;
    socklen_t clen = sizeof cred;
    CHECK(getsockopt(s, SOL_SOCKET, SO_PEERCRED, &cred, &clen) == 0);
    CHECK(clen == sizeof cred && cred.pid == pid && cred.uid == geteuid());
    char buf[65536];
    size_t total = 0;
    for (;;) {
        ssize_t r = read(s, buf, sizeof buf);
        CHECK(r >= 0);
        if (r == 0) break;
        write_all(s, buf, (size_t)r);
        total += (size_t)r;
    }
    CHECK(total == 10 * 7 + 40 * 8);  /* "line N\n" for N < 50 */
    close(s);
    s = accept(srv, NULL, NULL);
    CHECK(s >= 0);
    size_t cap = 1 << 20;
    char *all = malloc(cap);
    total = 0;
    for (;;) {
        ssize_t r = recv(s, all + total, cap - total, 0);
        CHECK(r >= 0);
        if (r == 0) break;
        total += (size_t)r;
    }
    CHECK(total == 600000);
    CHECK(send(s, all, total, 0) == (ssize_t)total);
    close(s);
    int status;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(srv);
    /* The node stays; nobody listens there any more. */
    int late = socket(AF_UNIX, SOCK_STREAM, 0);
    ERR(connect(late, (struct sockaddr *)&a, len), ECONNREFUSED);
    CHECK(unlink(a.sun_path) == 0);
    ERR(connect(late, (struct sockaddr *)&a, len), ENOENT);
}

static void pass_pipe(void) {
    int sv[2], p[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    CHECK(pipe(p) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(sv[0]);
        close(p[0]);
        close(p[1]);
        char data[8];
        char ctl[CMSG_SPACE(sizeof(int))];
        struct iovec iov = {data, sizeof data};
        struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
                           .msg_controllen = sizeof ctl};
        CHECK(recvmsg(sv[1], &m, MSG_CMSG_CLOEXEC) == 4 && memcmp(data, "pipe", 4) == 0);
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        CHECK(c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS);
        CHECK(c->cmsg_len == CMSG_LEN(sizeof(int)) && !(m.msg_flags & MSG_CTRUNC));
        int fd;
        memcpy(&fd, CMSG_DATA(c), sizeof fd);
        CHECK(fcntl(fd, F_GETFD) & FD_CLOEXEC);
        write_all(fd, "from the child", 14);
        _exit(0);
    }
    close(sv[1]);
    char ctl[CMSG_SPACE(sizeof(int))] = {0};
    struct iovec iov = {"pipe", 4};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
                       .msg_controllen = sizeof ctl};
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &p[1], sizeof(int));
    CHECK(sendmsg(sv[0], &m, 0) == 4);
    close(p[1]);  /* only the child's copy writes now */
    char buf[32];
    ssize_t n = 0, r;
    while ((r = read(p[0], buf + n, sizeof buf - (size_t)n)) > 0) n += r;
    CHECK(n == 14 && memcmp(buf, "from the child", 14) == 0);
    int status;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);

    /* Too little control room: MSG_CTRUNC, and the extra fds are closed. */
    int q[2];
    CHECK(pipe(q) == 0);
    char ctl3[CMSG_SPACE(3 * sizeof(int))] = {0};
    struct iovec iov3 = {"x", 1};
    struct msghdr m3 = {.msg_iov = &iov3, .msg_iovlen = 1, .msg_control = ctl3,
                        .msg_controllen = sizeof ctl3};
    c = CMSG_FIRSTHDR(&m3);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(3 * sizeof(int));
    int three[3] = {q[0], q[1], q[0]};
    memcpy(CMSG_DATA(c), three, sizeof three);
    CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) == 0);
    CHECK(sendmsg(sv[0], &m3, 0) == 1);
    char small[CMSG_SPACE(sizeof(int))];
    char d;
    struct iovec riov = {&d, 1};
    struct msghdr rm = {.msg_iov = &riov, .msg_iovlen = 1, .msg_control = small,
                        .msg_controllen = sizeof small};
    CHECK(recvmsg(sv[1], &rm, 0) == 1 && (rm.msg_flags & MSG_CTRUNC));
    c = CMSG_FIRSTHDR(&rm);
    CHECK(c && c->cmsg_len == CMSG_LEN(2 * sizeof(int)));  /* (24 - 16) / 4 fds fit */
    c = CMSG_FIRSTHDR(&m3);
    c->cmsg_len = sizeof ctl3 + 8;  /* longer than the control buffer */
    ERR(sendmsg(sv[0], &m3, 0), EINVAL);
    c->cmsg_len = CMSG_LEN(sizeof(int));
    int bad = 999;
    memcpy(CMSG_DATA(c), &bad, sizeof bad);
    ERR(sendmsg(sv[0], &m3, 0), EBADF);
}

static void datagrams(void) {
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) == 0);
    CHECK(send(sv[0], "first", 5, 0) == 5);
    CHECK(send(sv[0], "", 0, 0) == 0);
    CHECK(send(sv[0], "third message", 13, 0) == 13);
    char buf[64];
    CHECK(recv(sv[1], buf, sizeof buf, 0) == 5 && memcmp(buf, "first", 5) == 0);
    CHECK(recv(sv[1], buf, sizeof buf, 0) == 0);
    struct iovec iov = {buf, 5};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
    CHECK(recvmsg(sv[1], &m, 0) == 5 && (m.msg_flags & MSG_TRUNC));
    ERR(recv(sv[1], buf, sizeof buf, MSG_DONTWAIT), EAGAIN);
    /* Bound datagram sockets: sender addresses, EPROTOTYPE, ECONNREFUSED. */
    struct sockaddr_un a, b, from;
    socklen_t alen = abstract_addr(&a, "cove-dgram-a"), blen = abstract_addr(&b, "cove-dgram-b");
    int sa = socket(AF_UNIX, SOCK_DGRAM, 0), sb = socket(AF_UNIX, SOCK_DGRAM, 0);
    CHECK(bind(sa, (struct sockaddr *)&a, alen) == 0 && bind(sb, (struct sockaddr *)&b, blen) == 0);
    CHECK(sendto(sb, "hi", 2, 0, (struct sockaddr *)&a, alen) == 2);
    socklen_t flen = sizeof from;
    CHECK(recvfrom(sa, buf, sizeof buf, 0, (struct sockaddr *)&from, &flen) == 2);
    CHECK(flen == blen && memcmp(&from, &b, blen) == 0);
    struct sockaddr_un st;
    socklen_t stlen = abstract_addr(&st, "cove-stream");
    int ss = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(bind(ss, (struct sockaddr *)&st, stlen) == 0 && listen(ss, 1) == 0);
    /* Abstract names are per socket type; paths are one namespace. */
    ERR(sendto(sb, "x", 1, 0, (struct sockaddr *)&st, stlen), ECONNREFUSED);
    int sd = socket(AF_UNIX, SOCK_DGRAM, 0);
    CHECK(bind(sd, (struct sockaddr *)&st, stlen) == 0);
    struct sockaddr_un sp;
    socklen_t splen = path_addr(&sp, "stream.sock");
    int ssp = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(bind(ssp, (struct sockaddr *)&sp, splen) == 0 && listen(ssp, 1) == 0);
    ERR(sendto(sb, "x", 1, 0, (struct sockaddr *)&sp, splen), EPROTOTYPE);
    ERR(connect(sb, (struct sockaddr *)&sp, splen), EPROTOTYPE);
    unlink(sp.sun_path);
    struct sockaddr_un none;
    socklen_t nlen = abstract_addr(&none, "cove-nobody-here");
    ERR(sendto(sb, "x", 1, 0, (struct sockaddr *)&none, nlen), ECONNREFUSED);
    ERR(bind(socket(AF_UNIX, SOCK_DGRAM, 0), (struct sockaddr *)&a, alen), EADDRINUSE);
    /* Autobind: a NUL and five hex digits. */
    int au = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un an;
    an.sun_family = AF_UNIX;
    CHECK(bind(au, (struct sockaddr *)&an, sizeof(sa_family_t)) == 0);
    socklen_t anl = sizeof an;
    CHECK(getsockname(au, (struct sockaddr *)&an, &anl) == 0 && anl == 8 && an.sun_path[0] == 0);
    /* seqpacket keeps records over a connection. */
    CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == 0);
    CHECK(send(sv[0], "abc", 3, 0) == 3 && send(sv[0], "defg", 4, 0) == 4);
    CHECK(recv(sv[1], buf, 2, 0) == 2 && recv(sv[1], buf, sizeof buf, 0) == 4);
    CHECK(memcmp(buf, "defg", 4) == 0);
}

static void hangups(void) {
    signal(SIGPIPE, SIG_IGN);
    int sv[2];
    char buf[16];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    CHECK(send(sv[1], "left", 4, 0) == 4);
    close(sv[0]);  /* with data unread: the peer sees ECONNRESET after its own data */
    ERR(recv(sv[1], buf, sizeof buf, 0), ECONNRESET);
    CHECK(recv(sv[1], buf, sizeof buf, 0) == 0);
    ERR(send(sv[1], "x", 1, 0), EPIPE);
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    CHECK(shutdown(sv[0], SHUT_WR) == 0);
    CHECK(recv(sv[1], buf, sizeof buf, 0) == 0);
    ERR(send(sv[0], "x", 1, MSG_NOSIGNAL), EPIPE);
    CHECK(send(sv[1], "ok", 2, 0) == 2 && recv(sv[0], buf, sizeof buf, 0) == 2);
    ERR(socket(AF_UNIX, SOCK_STREAM, 7), EPROTONOSUPPORT);
    int nope[2];  /* Linux may write fd numbers here even as it fails */
    ERR(socketpair(AF_INET, SOCK_STREAM, 0, nope), EOPNOTSUPP);
    ERR(listen(socket(AF_UNIX, SOCK_DGRAM, 0), 1), EOPNOTSUPP);
    ERR(accept(socket(AF_UNIX, SOCK_STREAM, 0), NULL, NULL), EINVAL);
    ERR(getsockopt(sv[0], IPPROTO_TCP, 1, buf, &(socklen_t){4}), EOPNOTSUPP);
    int type = 0;
    socklen_t tl = sizeof type;
    CHECK(getsockopt(sv[0], SOL_SOCKET, SO_TYPE, &type, &tl) == 0 && type == SOCK_STREAM);
    int sndbuf = 0;
    CHECK(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &(int){10000}, sizeof(int)) == 0);
    CHECK(getsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, &tl) == 0 && sndbuf == 20000);
    struct stat st;
    CHECK(fstat(sv[0], &st) == 0 && S_ISSOCK(st.st_mode));
    char link[64], want[64];
    snprintf(want, sizeof want, "socket:[%lu]", (unsigned long)st.st_ino);
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", sv[0]);
    ssize_t ln = readlink(path, link, sizeof link - 1);
    CHECK(ln > 0);
    link[ln] = 0;
    CHECK(strcmp(link, want) == 0);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/cove-net-unix-%d", (int)getpid());
    CHECK(mkdir(dir, 0700) == 0);
    stream_echo();
    pass_pipe();
    datagrams();
    hangups();
    rmdir(dir);
    puts("ok");
    return 0;
}
