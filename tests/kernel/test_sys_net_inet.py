"""AF_INET/AF_INET6 on the sandbox's loopback-only network: binding rules,
TCP connections (blocking and EINPROGRESS), FIN/RST behaviour, UDP, and that
every other destination is unreachable — checked against Linux."""

from __future__ import annotations

import pytest

from cove.abi import flags as F
from cove.abi.errno import E

from .harness import call, make_kernel
from .iohelp import pending
from .nethelp import (
    LOOP6,
    accept,
    bind,
    connect,
    events,
    getopt,
    listen,
    name,
    peer,
    port_of,
    recv,
    recvfrom,
    send,
    setopt,
    sin,
    sin6,
    sock,
)

pytestmark = pytest.mark.timeout(20)
TCP, UDP = F.SOCK_STREAM, F.SOCK_DGRAM
MAPPED_LOOP = b"\0" * 10 + b"\xff\xff\x7f\0\0\1"


def tcp_server(t, ip="127.0.0.1", port=0, family=F.AF_INET):
    fd = sock(t, family, TCP)
    addr = sin(ip, port) if family == F.AF_INET else sin6(ip, port)  # type: ignore[arg-type]
    assert bind(t, fd, addr) == 0
    assert listen(t, fd) == 0
    got = name(t, fd)
    assert isinstance(got, bytes)
    return fd, port_of(got)


def tcp_pair(t):
    srv, port = tcp_server(t)
    c = sock(t, F.AF_INET, TCP)
    assert connect(t, c, sin("127.0.0.1", port)) == 0
    got = accept(t, srv)
    assert isinstance(got, tuple)
    return c, got[0]


# --- bind -----------------------------------------------------------------------------
def test_bind_addresses():
    _, t = make_kernel()
    assert bind(t, sock(t, F.AF_INET), sin("8.8.8.8", 0)) == -E.EADDRNOTAVAIL
    assert bind(t, sock(t, F.AF_INET), sin("10.0.0.1", 0)) == -E.EADDRNOTAVAIL
    assert bind(t, sock(t, F.AF_INET), sin("127.0.0.5", 0)) == 0
    fd = sock(t, F.AF_INET)
    assert bind(t, fd, sin("0.0.0.0", 0)) == 0
    port = port_of(name(t, fd))
    assert 32768 <= port <= 60999
    assert bind(t, fd, sin("0.0.0.0", 0)) == -E.EINVAL  # already bound
    assert bind(t, sock(t, F.AF_INET), sin("127.0.0.1", 0)[:15]) == -E.EINVAL
    assert bind(t, sock(t, F.AF_INET), sin6(LOOP6, 0)) == -E.EAFNOSUPPORT
    unspec = b"\0\0" + sin("0.0.0.0", 0)[2:]
    assert bind(t, sock(t, F.AF_INET), unspec) == 0  # AF_UNSPEC stands for INADDR_ANY
    assert bind(t, sock(t, F.AF_INET), b"\0\0" + sin("127.0.0.1", 0)[2:]) == -E.EAFNOSUPPORT
    assert bind(t, sock(t, F.AF_INET6), sin6(LOOP6, 0)[:23]) == -E.EINVAL
    assert bind(t, sock(t, F.AF_INET6), sin("127.0.0.1", 0) + bytes(12)) == -E.EAFNOSUPPORT
    assert bind(t, sock(t, F.AF_INET6), sin6(b"\x20\x01" + bytes(14), 0)) == -E.EADDRNOTAVAIL
    assert bind(t, sock(t, F.AF_INET6), sin6(MAPPED_LOOP, 0)) == 0
    v6only = sock(t, F.AF_INET6)
    assert setopt(t, v6only, F.IPPROTO_IPV6, F.IPV6_V6ONLY, 1) == 0
    assert bind(t, v6only, sin6(MAPPED_LOOP, 0)) == -E.EINVAL


def test_port_sharing_rules():
    _, t = make_kernel()
    a = sock(t, F.AF_INET)
    assert bind(t, a, sin("127.0.0.1", 5000)) == 0
    assert bind(t, sock(t, F.AF_INET), sin("127.0.0.1", 5000)) == -E.EADDRINUSE
    assert bind(t, sock(t, F.AF_INET), sin("0.0.0.0", 5000)) == -E.EADDRINUSE
    assert bind(t, sock(t, F.AF_INET), sin("127.0.0.2", 5000)) == 0  # another address
    assert bind(t, sock(t, F.AF_INET, UDP), sin("127.0.0.1", 5000)) == 0  # another protocol
    assert bind(t, sock(t, F.AF_INET6), sin6(bytes(16), 5000)) == -E.EADDRINUSE  # dual stack
    only6 = sock(t, F.AF_INET6)
    assert setopt(t, only6, F.IPPROTO_IPV6, F.IPV6_V6ONLY, 1) == 0
    assert bind(t, only6, sin6(bytes(16), 5000)) == 0
    assert setopt(t, only6, F.IPPROTO_IPV6, F.IPV6_V6ONLY, 0) == -E.EINVAL  # once bound
    # SO_REUSEADDR on both: allowed while neither listens.
    r1, r2, r3 = (sock(t, F.AF_INET) for _ in range(3))
    for fd in (r1, r2, r3):
        assert setopt(t, fd, F.SOL_SOCKET, F.SO_REUSEADDR, 1) == 0
    assert bind(t, r1, sin("127.0.0.1", 6000)) == 0
    assert bind(t, r2, sin("127.0.0.1", 6000)) == 0
    assert listen(t, r1) == 0
    assert listen(t, r2) == -E.EADDRINUSE
    assert bind(t, r3, sin("127.0.0.1", 6000)) == -E.EADDRINUSE
    # Ports below 1024 need root.
    assert bind(t, sock(t, F.AF_INET), sin("127.0.0.1", 80)) == 0
    t.proc.creds.euid = 1000
    assert bind(t, sock(t, F.AF_INET), sin("127.0.0.1", 81)) == -E.EACCES
    # A port comes free with its last holder.
    call(t, "close", a)
    assert bind(t, sock(t, F.AF_INET), sin("127.0.0.1", 5000)) == 0


# --- TCP --------------------------------------------------------------------------------
def test_tcp_connect_accept_and_names():
    _, t = make_kernel()
    srv, port = tcp_server(t)
    c = sock(t, F.AF_INET, TCP)
    assert connect(t, c, sin("127.0.0.1", port)) == 0
    got = accept(t, srv)
    assert isinstance(got, tuple)
    s, addr = got
    cname = name(t, c)
    assert isinstance(cname, bytes) and cname[4:8] == bytes([127, 0, 0, 1])
    assert addr == cname and peer(t, s) == cname
    assert name(t, s) == sin("127.0.0.1", port) and peer(t, c) == sin("127.0.0.1", port)
    assert send(t, c, b"ping") == 4 and recv(t, s) == b"ping"
    assert send(t, s, b"pong") == 4 and recv(t, c) == b"pong"
    assert connect(t, c, sin("127.0.0.1", port)) == -E.EISCONN
    assert listen(t, c) == -E.EINVAL
    assert getopt(t, c, F.SOL_SOCKET, F.SO_PEERCRED, 12)[:4] == b"\0\0\0\0"
    assert getopt(t, c, F.IPPROTO_IP, F.IP_MTU) == 65536
    assert getopt(t, srv, F.IPPROTO_TCP, F.TCP_INFO, 1) == bytes([10])  # TCP_LISTEN


def test_tcp_destinations():
    _, t = make_kernel()
    srv, port = tcp_server(t, "0.0.0.0")
    for dest in ("0.0.0.0", "127.0.0.1", "127.0.0.2"):
        c = sock(t, F.AF_INET, TCP)
        assert connect(t, c, sin(dest, port)) == 0, dest
        assert name(t, c)[4:8] == bytes([127, 0, 0, 1])  # loopback's source address
    only, oport = tcp_server(t, "127.0.0.1")
    assert connect(t, sock(t, F.AF_INET, TCP), sin("127.0.0.2", oport)) == -E.ECONNREFUSED
    for dest in ("8.8.8.8", "10.1.2.3", "192.168.0.1", "255.255.255.255"):
        assert connect(t, sock(t, F.AF_INET, TCP), sin(dest, 53)) == -E.ENETUNREACH, dest
    assert connect(t, sock(t, F.AF_INET6, TCP), sin6(b"\x20\x01" + bytes(14), 53)) \
        == -E.ENETUNREACH
    assert connect(t, sock(t, F.AF_INET, TCP), sin("127.0.0.1", 1)) == -E.ECONNREFUSED
    assert connect(t, sock(t, F.AF_INET, TCP), sin("127.0.0.1", 0)) == -E.ECONNREFUSED
    assert connect(t, sock(t, F.AF_INET, TCP), sin6(LOOP6, port)) == -E.EAFNOSUPPORT
    assert connect(t, sock(t, F.AF_INET, TCP), sin("127.0.0.1", port)[:8]) == -E.EINVAL
    assert srv >= 0 and only >= 0


def test_ipv6_and_dual_stack():
    _, t = make_kernel()
    srv6, port = tcp_server(t, bytes(16), family=F.AF_INET6)  # type: ignore[arg-type]
    c6 = sock(t, F.AF_INET6, TCP)
    assert connect(t, c6, sin6(LOOP6, port)) == 0
    got = accept(t, srv6)
    assert isinstance(got, tuple) and got[1][8:24] == LOOP6
    c4 = sock(t, F.AF_INET, TCP)
    assert connect(t, c4, sin("127.0.0.1", port)) == 0  # an IPv4 client on a dual listener
    got = accept(t, srv6)
    assert isinstance(got, tuple) and got[1][8:24] == MAPPED_LOOP
    only6, p6 = tcp_server(t, LOOP6, family=F.AF_INET6)  # type: ignore[arg-type]
    assert connect(t, sock(t, F.AF_INET, TCP), sin("127.0.0.1", p6)) == -E.ECONNREFUSED
    assert only6 >= 0


def test_nonblocking_connect_says_einprogress():
    _, t = make_kernel()
    srv, port = tcp_server(t)
    c = call(t, "socket", F.AF_INET, TCP | F.SOCK_NONBLOCK, 0)
    assert connect(t, c, sin("127.0.0.1", port)) == -E.EINPROGRESS
    assert events(t, c) & F.POLLOUT
    assert getopt(t, c, F.SOL_SOCKET, F.SO_ERROR) == 0
    assert connect(t, c, sin("127.0.0.1", port)) == 0
    assert connect(t, c, sin("127.0.0.1", port)) == -E.EISCONN
    r = call(t, "socket", F.AF_INET, TCP | F.SOCK_NONBLOCK, 0)
    assert connect(t, r, sin("127.0.0.1", 1)) == -E.EINPROGRESS
    mask = events(t, r)
    assert mask & (F.POLLERR | F.POLLHUP | F.POLLOUT) == F.POLLERR | F.POLLHUP | F.POLLOUT
    assert getopt(t, r, F.SOL_SOCKET, F.SO_ERROR) == E.ECONNREFUSED
    assert connect(t, r, sin("127.0.0.1", 1)) == -E.ECONNABORTED
    r2 = call(t, "socket", F.AF_INET, TCP | F.SOCK_NONBLOCK, 0)
    assert connect(t, r2, sin("127.0.0.1", 1)) == -E.EINPROGRESS
    assert connect(t, r2, sin("127.0.0.1", 1)) == -E.ECONNREFUSED
    u = call(t, "socket", F.AF_INET, TCP | F.SOCK_NONBLOCK, 0)
    assert connect(t, u, sin("8.8.8.8", 53)) == -E.ENETUNREACH  # decided at once
    assert srv >= 0


def test_tcp_close_fin_then_rst():
    _, t = make_kernel()
    c, s = tcp_pair(t)
    call(t, "close", s)
    mask = events(t, c)
    assert mask & F.POLLRDHUP and mask & F.POLLIN and not mask & F.POLLHUP
    assert recv(t, c) == b""
    assert send(t, c, b"into the void") == 13  # accepted, answered by RST
    assert events(t, c) & (F.POLLERR | F.POLLHUP) == F.POLLERR | F.POLLHUP
    assert send(t, c, b"x") == -E.EPIPE and pending(t, F.SIGPIPE)
    assert send(t, c, b"x", F.MSG_NOSIGNAL) == -E.EPIPE
    assert peer(t, c) == -E.ENOTCONN


def test_tcp_close_with_unread_data_or_linger_zero_resets():
    _, t = make_kernel()
    c, s = tcp_pair(t)
    assert send(t, c, b"never read") == 10
    call(t, "close", s)
    assert recv(t, c) == -E.ECONNRESET
    assert recv(t, c) == b""
    assert send(t, c, b"x", F.MSG_NOSIGNAL) == -E.EPIPE
    c2, s2 = tcp_pair(t)
    assert setopt(t, s2, F.SOL_SOCKET, F.SO_LINGER, (1).to_bytes(4, "little") + bytes(4)) == 0
    call(t, "close", s2)
    assert send(t, c2, b"x", F.MSG_NOSIGNAL) == -E.ECONNRESET
    assert send(t, c2, b"x", F.MSG_NOSIGNAL) == -E.EPIPE


def test_tcp_unconnected_and_shutdown():
    _, t = make_kernel()
    fresh = sock(t, F.AF_INET, TCP)
    assert events(t, fresh) & (F.POLLOUT | F.POLLHUP) == F.POLLOUT | F.POLLHUP
    assert recv(t, fresh) == -E.ENOTCONN
    assert send(t, fresh, b"x") == -E.EPIPE and pending(t, F.SIGPIPE)
    assert call(t, "shutdown", fresh, F.SHUT_RD) == -E.ENOTCONN
    c, s = tcp_pair(t)
    assert call(t, "shutdown", c, F.SHUT_WR) == 0
    assert events(t, c) & F.POLLOUT and not events(t, c) & F.POLLHUP
    assert recv(t, s) == b""
    assert send(t, s, b"still") == 5 and recv(t, c) == b"still"
    assert send(t, c, b"x", F.MSG_NOSIGNAL) == -E.EPIPE
    assert call(t, "shutdown", s, F.SHUT_WR) == 0
    assert events(t, c) & F.POLLHUP and events(t, s) & F.POLLHUP
    c2, s2 = tcp_pair(t)
    assert call(t, "shutdown", c2, F.SHUT_RD) == 0
    assert send(t, s2, b"hi") == 2  # TCP still takes data after SHUT_RD
    assert recv(t, c2) == b"hi"
    srv, port = tcp_server(t)
    assert call(t, "shutdown", srv, F.SHUT_RD) == 0  # stops listening
    assert accept(t, srv) == -E.EINVAL
    assert connect(t, sock(t, F.AF_INET, TCP), sin("127.0.0.1", port)) == -E.ECONNREFUSED


def test_listen_autobinds_and_accepted_sockets_inherit_options():
    _, t = make_kernel()
    srv = sock(t, F.AF_INET, TCP)
    assert setopt(t, srv, F.IPPROTO_TCP, F.TCP_NODELAY, 1) == 0
    assert listen(t, srv) == 0
    addr = name(t, srv)
    assert addr[4:8] == bytes(4) and port_of(addr) >= 32768
    c = sock(t, F.AF_INET, TCP)
    assert connect(t, c, sin("127.0.0.1", port_of(addr))) == 0
    got = accept(t, srv)
    assert isinstance(got, tuple)
    assert getopt(t, got[0], F.IPPROTO_TCP, F.TCP_NODELAY) == 1
    assert getopt(t, c, F.IPPROTO_TCP, F.TCP_NODELAY) == 0
    assert listen(t, sock(t, F.AF_INET, UDP)) == -E.EOPNOTSUPP
    # connect(AF_UNSPEC) drops a connection.
    assert connect(t, c, b"\0\0") == 0
    assert peer(t, c) == -E.ENOTCONN
    assert recv(t, got[0]) == -E.ECONNRESET


def test_tcp_glues_small_writes():
    _, t = make_kernel()
    c, s = tcp_pair(t)
    for ch in b"abcdefgh":
        assert send(t, c, bytes([ch])) == 1
    assert len(t.files.get(s).rx.packets) == 1
    assert recv(t, s, 3) == b"abc" and recv(t, s) == b"defgh"
    assert send(t, c, b"xyz") == 3
    assert recv(t, s, 10, F.MSG_TRUNC) == b"\0\0\0"  # TCP's MSG_TRUNC drops, not copies
    assert recv(t, s, 10, F.MSG_DONTWAIT) == -E.EAGAIN


# --- UDP --------------------------------------------------------------------------------
def test_udp_datagrams_and_addresses():
    _, t = make_kernel()
    a, b = sock(t, F.AF_INET, UDP), sock(t, F.AF_INET, UDP)
    assert bind(t, a, sin("127.0.0.1", 7000)) == 0
    assert send(t, b, b"one", 0, sin("127.0.0.1", 7000)) == 3
    assert send(t, b, b"", 0, sin("127.0.0.1", 7000)) == 0
    bport = port_of(name(t, b))
    assert bport >= 32768  # autobound by the send
    assert recvfrom(t, a) == (b"one", sin("127.0.0.1", bport))
    assert recvfrom(t, a) == (b"", sin("127.0.0.1", bport))
    assert send(t, b, b"x") == -E.EDESTADDRREQ
    assert send(t, b, b"x", 0, sin("127.0.0.1", 0)) == -E.EINVAL
    assert send(t, b, b"x", 0, sin("8.8.8.8", 53)) == -E.ENETUNREACH
    assert send(t, b, b"x" * 65508, 0, sin("127.0.0.1", 7000)) == -E.EMSGSIZE
    assert send(t, b, b"x" * 65507, 0, sin("127.0.0.1", 7000)) == 65507
    assert send(t, b, b"x", 0, sin("127.0.0.1", 7001)) == 1  # nobody: dropped silently
    assert send(t, b, b"x", 0, b"\0\0" + sin("127.0.0.1", 7000)[2:]) == 1  # AF_UNSPEC ok


def test_udp_connected_sockets():
    _, t = make_kernel()
    srv, c, stranger = (sock(t, F.AF_INET, UDP) for _ in range(3))
    assert bind(t, srv, sin("127.0.0.1", 7100)) == 0
    assert connect(t, c, sin("127.0.0.1", 7100)) == 0
    assert peer(t, c) == sin("127.0.0.1", 7100)
    assert name(t, c)[4:8] == bytes([127, 0, 0, 1])
    assert connect(t, srv, name(t, c)) == 0  # srv now hears c only
    assert send(t, stranger, b"no", 0, sin("127.0.0.1", 7100)) == 2
    assert send(t, c, b"yes") == 3
    assert recv(t, srv) == b"yes"
    t.files.get(srv).flags |= F.O_NONBLOCK
    assert recv(t, srv) == -E.EAGAIN
    assert connect(t, c, sin("8.8.8.8", 53)) == -E.ENETUNREACH
    assert connect(t, c, b"\0\0") == 0  # AF_UNSPEC: disconnected
    assert peer(t, c) == -E.ENOTCONN
    lone = sock(t, F.AF_INET, UDP)
    assert connect(t, lone, sin("127.0.0.1", 7999)) == 0
    assert send(t, lone, b"x") == 1
    assert send(t, lone, b"x") == -E.ECONNREFUSED  # the ICMP error, reported once
    assert send(t, lone, b"x") == 1
    assert recv(t, lone, 10, F.MSG_DONTWAIT) == -E.ECONNREFUSED


def test_udp_shutdown_and_errqueue():
    _, t = make_kernel()
    u = sock(t, F.AF_INET, UDP)
    assert call(t, "shutdown", u, F.SHUT_RD) == -E.ENOTCONN  # ... and still takes effect
    assert recv(t, u) == b""
    assert recv(t, u, 10, F.MSG_ERRQUEUE) == -E.EAGAIN
    c = sock(t, F.AF_INET, UDP)
    assert connect(t, c, sin("127.0.0.1", 9)) == 0
    assert call(t, "shutdown", c, F.SHUT_WR) == 0
    assert send(t, c, b"x") == -E.EPIPE and not pending(t, F.SIGPIPE)


def test_udp_v6_and_mapped_sources():
    _, t = make_kernel()
    srv = sock(t, F.AF_INET6, UDP)
    assert bind(t, srv, sin6(bytes(16), 7200)) == 0
    c4, c6 = sock(t, F.AF_INET, UDP), sock(t, F.AF_INET6, UDP)
    assert send(t, c4, b"v4", 0, sin("127.0.0.1", 7200)) == 2
    assert send(t, c6, b"v6", 0, sin6(LOOP6, 7200)) == 2
    got = recvfrom(t, srv)
    assert isinstance(got, tuple) and got[0] == b"v4" and got[1][8:24] == MAPPED_LOOP
    got = recvfrom(t, srv)
    assert isinstance(got, tuple) and got[0] == b"v6" and got[1][8:24] == LOOP6
