"""Socket semantics as a Python program sees them: errnos, poll masks, names,
options, TCP FIN/RST, UDP, fd passing. tests/integration/test_net_guests.py
runs it natively and in cove and compares the output line by line."""

import array
import errno
import fcntl
import os
import select
import signal
import socket
import struct
import time

U, I4, I6 = socket.AF_UNIX, socket.AF_INET, socket.AF_INET6
ST, DG, SP = socket.SOCK_STREAM, socket.SOCK_DGRAM, socket.SOCK_SEQPACKET
POLL_NAMES = ["POLLIN", "POLLPRI", "POLLOUT", "POLLERR", "POLLHUP", "POLLNVAL", "POLLRDNORM",
              "POLLRDBAND", "POLLWRNORM", "POLLWRBAND", "POLLRDHUP"]
D = f"/tmp/net-semantics-{os.getpid()}"


def e(f):
    """The call's result (or its type's name), or the errno's name."""
    try:
        r = f()
    except OSError as x:
        return errno.errorcode.get(x.errno, x.errno)
    return r if isinstance(r, (int, bytes, str, tuple, type(None), list)) else type(r).__name__


def pm(s):
    p = select.poll()
    p.register(s, 0xFFFF)
    r = p.poll(0)
    m = r[0][1] if r else 0
    return "|".join(n for n in POLL_NAMES if m & getattr(select, n))


def out(*a):
    print(*a, flush=True)


def settle():
    time.sleep(0.05)  # let the host's loopback deliver a FIN/RST/ICMP


def creation():
    for args in [(U, ST, 0), (U, DG, 0), (U, SP, 0), (U, 3, 0), (U, 4, 0), (U, 0, 0),
                 (U, ST, 1), (U, ST, 2), (I4, ST, 0), (I4, ST, 6), (I4, ST, 17), (I4, DG, 0),
                 (I4, DG, 17), (I4, DG, 6), (I4, SP, 0), (I6, ST, 0), (I6, DG, 0), (45, 1, 0)]:
        out("socket", args, e(lambda a=args: socket.socket(*a).getsockopt(1, 3)))
    for args in [(U, ST), (U, DG), (U, SP), (I4, ST), (I6, DG)]:
        out("socketpair", args, e(lambda a=args: len(socket.socketpair(*a))))
    for args in [(U, ST), (U, DG), (U, SP), (I4, ST), (I4, DG), (I6, ST)]:
        fresh(socket.socket(*args), args)


def fresh(s, args):
    out("fresh", args, pm(s), [e(lambda o=o: s.getsockopt(1, o)) for o in (7, 8, 38, 30)],
        e(s.getsockname), e(s.getpeername))
    out("  unconnected", e(lambda: s.send(b"x")), e(lambda: s.recv(1, socket.MSG_DONTWAIT)),
        e(lambda: s.shutdown(0)), e(lambda: s.listen(1)))


def unix_names():
    s = socket.socket(U)
    out("bind", e(lambda: s.bind(D + "/a")), oct(os.stat(D + "/a").st_mode),
        s.getsockname() == D + "/a")
    out("bind again", e(lambda: socket.socket(U).bind(D + "/a")), e(lambda: s.bind(D + "/b")),
        os.path.exists(D + "/b"))
    out("connect nolisten", e(lambda: socket.socket(U).connect(D + "/a")))
    s.listen(2)
    for t in (DG, SP):
        out("connect type", t, e(lambda t=t: socket.socket(U, t).connect(D + "/a")))
    open(D + "/f", "w").close()
    out("connect file", e(lambda: socket.socket(U).connect(D + "/f")),
        e(lambda: socket.socket(U).connect(D + "/none")))
    clients = []
    for i in range(5):
        c = socket.socket(U)
        c.setblocking(False)
        clients.append(c)
        out("backlog", i, e(lambda c=c: c.connect(D + "/a")))
    a, peer = s.accept()
    out("accepted", repr(peer), a.getsockname() == D + "/a",
        clients[0].getpeername() == D + "/a", pm(s))
    x = socket.socket(U)
    out("autobind", e(lambda: x.bind("")), len(x.getsockname()))
    y = socket.socket(U, DG)
    out("abstract", e(lambda: y.bind("\0sem-abs")), y.getsockname(),
        e(lambda: socket.socket(U, DG).bind("\0sem-abs")),
        e(lambda: socket.socket(U, ST).bind("\0sem-abs")))


def unix_streams():
    a, b = socket.socketpair()
    out("pair", pm(a), a.send(b"hello"), b.recv(2), b.recv(10, socket.MSG_PEEK), b.recv(10),
        e(lambda: b.recv(1, socket.MSG_DONTWAIT)))
    b.shutdown(socket.SHUT_WR)
    out("peer shut wr", pm(a), pm(b), e(lambda: a.recv(1)), e(lambda: b.send(b"x")))
    a, b = socket.socketpair()
    b.shutdown(socket.SHUT_RD)
    out("peer shut rd", pm(a), pm(b), e(lambda: a.send(b"x")), e(lambda: b.recv(1)))
    a, b = socket.socketpair()
    b.send(b"x")
    a.send(b"y")
    a.close()
    out("closed unread", pm(b), e(lambda: b.recv(5)), e(lambda: b.recv(5)), e(lambda: b.recv(5)),
        e(lambda: b.send(b"z")))
    a, b = socket.socketpair()
    a.setblocking(False)
    n = 0
    while e(lambda: a.send(b"x" * 100)) == 100:
        n += 1
    out("fill 100", n, pm(a), e(lambda: a.send(b"x")))


def unix_datagrams():
    a, b = socket.socketpair(U, SP)
    a.send(b"hello")
    a.send(b"")
    out("seqp", b.recvmsg(2), b.recvmsg(9), e(lambda: a.send(b"x" * 300000)))
    a, b = socket.socketpair(U, DG)
    a.send(b"one")
    a.send(b"two2")
    out("dgram", b.recvmsg(2), b.recv(10, socket.MSG_TRUNC),
        e(lambda: b.recv(1, socket.MSG_DONTWAIT)))
    b.close()
    out("dgram peer closed", e(lambda: a.send(b"x")), e(lambda: a.send(b"x")), pm(a))
    srv = socket.socket(U, DG)
    srv.bind(D + "/d")
    c = socket.socket(U, DG)
    c.setblocking(False)
    n = 0
    while e(lambda: c.sendto(b"m", D + "/d")) == 1:
        n += 1
    out("qlen", n, e(lambda: c.sendto(b"m", D + "/d")), pm(c), srv.recvfrom(5))
    c2 = socket.socket(U, DG)
    c2.bind(D + "/c2")
    srv.connect(D + "/c2")
    out("only peer", e(lambda: socket.socket(U, DG).sendto(b"x", D + "/d")),
        e(lambda: socket.socket(U, DG).connect(D + "/d")))


def fd_passing():
    a, b = socket.socketpair()
    r, w = os.pipe()
    a.sendmsg([b"f"], [(1, 1, array.array("i", [r, w, r]))])
    m = b.recvmsg(5, socket.CMSG_SPACE(4))
    out("ctrunc", m[0], len(m[1][0][2]) if m[1] else 0, m[2])
    a.sendmsg([b"f"], [(1, 1, array.array("i", [r]))])
    m = b.recvmsg(5, 10)
    out("tiny ctl", m[1], m[2])
    out("bad fd", e(lambda: a.sendmsg([b"x"], [(1, 1, array.array("i", [999]))])),
        e(lambda: a.sendmsg([b"x"], [(1, 99, b"1234")])),
        e(lambda: a.sendmsg([b"x"], [(0, 1, b"1234")])))


def options():
    s = socket.socket(U)
    for opt, val in [(7, 1), (7, 100000), (8, 1), (2, 5), (9, 7), (16, 1), (15, 1), (3, 1),
                     (4, 1), (19, 3), (18, 0), (99, 1)]:
        out("setopt", opt, val, e(lambda o=opt, v=val: s.setsockopt(1, o, v)),
            e(lambda o=opt: s.getsockopt(1, o)))
    out("linger", e(lambda: s.setsockopt(1, 13, struct.pack("ii", 5, 9))),
        e(lambda: s.getsockopt(1, 13, 8)), e(lambda: s.setsockopt(1, 13, b"\1\0\0\0")))
    out("timeo", e(lambda: s.setsockopt(1, 20, struct.pack("qq", 1, 5000000))),
        e(lambda: s.setsockopt(1, 20, struct.pack("qq", 1, 500000))),
        e(lambda: s.getsockopt(1, 20, 16)))
    t = socket.socket()
    for lvl, opt, val in [(6, 1, 1), (6, 4, 0), (6, 4, 60), (6, 6, 200), (6, 2, 10), (6, 7, 3),
                          (0, 2, 0), (0, 2, 300), (0, 2, 9), (0, 2, -1), (0, 1, 16), (0, 10, 9),
                          (6, 99, 1), (17, 1, 1), (41, 26, 1)]:
        out("tcpopt", lvl, opt, val, e(lambda lv=lvl, o=opt, v=val: t.setsockopt(lv, o, v)),
            e(lambda lv=lvl, o=opt: t.getsockopt(lv, o)))
    out("tcp defaults", [e(lambda o=o: t.getsockopt(6, o)) for o in (1, 2, 3, 4, 5, 6, 7, 9, 12)],
        e(lambda: t.getsockopt(0, 14)))


def tcp():
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(5)
    port = lst.getsockname()[1]
    out("listener", pm(lst))
    c = socket.socket()
    c.connect(("127.0.0.1", port))
    out("pending", pm(lst))
    s, addr = lst.accept()
    out("tcp conn", addr == c.getsockname(), s.getsockname() == ("127.0.0.1", port), pm(c), pm(s))
    s.close()
    settle()
    out("fin", pm(c), e(lambda: c.recv(5)))
    out("write after fin", e(lambda: c.send(b"x")))
    settle()
    out("  then", pm(c), e(lambda: c.send(b"x")), e(lambda: c.send(b"x")), e(c.getpeername))
    c = socket.socket()
    c.connect(("127.0.0.1", port))
    s, _ = lst.accept()
    c.send(b"unread")
    settle()
    s.close()
    settle()
    out("rst", pm(c), e(lambda: c.recv(5)), e(lambda: c.recv(5)), e(lambda: c.send(b"x")))
    c = socket.socket()
    c.connect(("127.0.0.1", port))
    s, _ = lst.accept()
    c.shutdown(socket.SHUT_WR)
    settle()
    out("tcp shut wr", pm(c), pm(s), e(lambda: s.recv(5)), e(lambda: s.send(b"ok")),
        e(lambda: c.recv(5)))
    s.shutdown(socket.SHUT_WR)
    settle()
    out("tcp both", pm(c), pm(s))
    nb = socket.socket()
    nb.setblocking(False)
    to = ("127.0.0.1", port)
    out("nb connect", e(lambda: nb.connect(to)), e(lambda: nb.getsockopt(1, 4)),
        e(lambda: nb.connect(to)), e(lambda: nb.connect(to)))
    nr = socket.socket()
    nr.setblocking(False)
    out("nb refused", e(lambda: nr.connect(("127.0.0.1", 1))))
    settle()
    out("  then", pm(nr), e(lambda: nr.getsockopt(1, 4)), e(lambda: nr.connect(("127.0.0.1", 1))))
    out("refused", e(lambda: socket.create_connection(("127.0.0.1", 1))),
        e(lambda: socket.create_connection(("127.0.0.1", 0))))
    out("127.0.0.2", e(lambda: socket.socket().connect(("127.0.0.2", port))))
    out("bind", e(lambda: socket.socket().bind(("127.0.0.1", port))),
        e(lambda: socket.socket().bind(("0.0.0.0", port))),
        e(lambda: socket.socket().bind(("127.0.0.9", 0))),
        e(lambda: socket.socket(I6).bind(("::", port))))
    v6 = socket.socket(I6)
    v6.setsockopt(41, 26, 1)
    out("v6only bind", e(lambda: v6.bind(("::", port))), e(lambda: v6.setsockopt(41, 26, 0)))


def udp():
    u = socket.socket(I4, DG)
    u.bind(("127.0.0.1", 0))
    up = u.getsockname()[1]
    v = socket.socket(I4, DG)
    out("udp", v.sendto(b"hey", ("127.0.0.1", up)), u.recvfrom(10)[0], e(lambda: v.send(b"x")),
        e(lambda: v.sendto(b"x", ("127.0.0.1", 0))),
        e(lambda: v.sendto(b"x" * 65508, ("127.0.0.1", up))),
        e(lambda: v.sendto(b"x" * 65507, ("127.0.0.1", up))))
    v.connect(("127.0.0.1", 9))
    out("udp conn", pm(v), e(lambda: v.send(b"x")))
    settle()
    out("  then", pm(v), e(lambda: v.send(b"x")), e(lambda: v.send(b"x")))
    out("udp shutdown", e(lambda: socket.socket(I4, DG).shutdown(0)), e(lambda: v.shutdown(1)),
        e(lambda: v.send(b"x")))


def interfaces():
    f = socket.socket(U)
    out("ioctl", e(lambda: fcntl.ioctl(f, 0x8933, b"lo".ljust(40, b"\0"))[16:20]),
        e(lambda: fcntl.ioctl(f, 0x8933, b"zz0".ljust(40, b"\0"))))
    out("if_nametoindex", e(lambda: socket.if_nametoindex("lo")),
        e(lambda: socket.if_indextoname(1)))


def main():
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    os.mkdir(D)
    for part in (creation, unix_names, unix_streams, unix_datagrams, fd_passing, options, tcp,
                 udp, interfaces):
        part()
    out("done")


main()
