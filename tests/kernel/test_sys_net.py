"""socket/socketpair creation, fstat and /proc names, options and ioctls of
cove's own sockets, through the real dispatcher (Linux's answers, checked
against a 6.x host)."""

from __future__ import annotations

import struct

import pytest

from cove.abi import flags as F
from cove.abi.errno import E
from cove.kernel.socket import Socket, Tcp, Udp, UnixDgram, UnixStream
from cove.kernel.socket.base import SOCKFS_MAGIC

from .harness import SCRATCH, call, make_kernel
from .iohelp import fstat, pending, rd, wr
from .nethelp import (
    bind,
    connect,
    events,
    getopt,
    i32,
    listen,
    pair,
    recv,
    send,
    setopt,
    sin,
    sock,
    stage,
    sun,
)

pytestmark = pytest.mark.timeout(20)


# --- socket ---------------------------------------------------------------------------
@pytest.mark.parametrize(("family", "stype", "proto", "kind"), [
    (F.AF_UNIX, F.SOCK_STREAM, 0, UnixStream),
    (F.AF_UNIX, F.SOCK_SEQPACKET, 0, UnixStream),
    (F.AF_UNIX, F.SOCK_DGRAM, 0, UnixDgram),
    (F.AF_UNIX, F.SOCK_RAW, 0, UnixDgram),
    (F.AF_UNIX, F.SOCK_STREAM, F.PF_UNIX, UnixStream),
    (F.AF_INET, F.SOCK_STREAM, 0, Tcp),
    (F.AF_INET, F.SOCK_STREAM, F.IPPROTO_TCP, Tcp),
    (F.AF_INET, F.SOCK_DGRAM, F.IPPROTO_UDP, Udp),
    (F.AF_INET6, F.SOCK_STREAM, 0, Tcp),
    (F.AF_INET6, F.SOCK_DGRAM, 0, Udp),
])
def test_socket_makes_cove_sockets(family, stype, proto, kind):
    _, t = make_kernel()
    fd = sock(t, family, stype, proto)
    s = t.files.get(fd)
    assert isinstance(s, kind)
    assert getopt(t, fd, F.SOL_SOCKET, F.SO_DOMAIN) == family
    expect_type = F.SOCK_DGRAM if stype == F.SOCK_RAW else stype
    assert getopt(t, fd, F.SOL_SOCKET, F.SO_TYPE) == expect_type
    expect_proto = {Tcp: F.IPPROTO_TCP, Udp: F.IPPROTO_UDP}.get(kind, 0)
    assert getopt(t, fd, F.SOL_SOCKET, F.SO_PROTOCOL) == expect_proto


@pytest.mark.parametrize(("args", "err"), [
    ((F.AF_UNIX, 0, 0), E.ESOCKTNOSUPPORT),
    ((F.AF_UNIX, 4, 0), E.ESOCKTNOSUPPORT),  # SOCK_RDM
    ((F.AF_UNIX, F.SOCK_STREAM, 2), E.EPROTONOSUPPORT),
    ((F.AF_UNIX, 12, 0), E.EINVAL),  # past SOCK_MAX
    ((F.AF_UNIX, F.SOCK_STREAM | 0x100, 0), E.EINVAL),  # a flag that is neither
    ((F.AF_INET, F.SOCK_SEQPACKET, 0), E.ESOCKTNOSUPPORT),
    ((F.AF_INET, F.SOCK_STREAM, F.IPPROTO_UDP), E.EPROTONOSUPPORT),
    ((F.AF_INET, F.SOCK_DGRAM, F.IPPROTO_TCP), E.EPROTONOSUPPORT),
    ((F.AF_INET, F.SOCK_DGRAM, F.IPPROTO_ICMP), E.EACCES),
    ((F.AF_INET, F.SOCK_RAW, F.IPPROTO_ICMP), E.EPERM),
    ((F.AF_NETLINK, F.SOCK_RAW, 0), E.EAFNOSUPPORT),
    ((17, F.SOCK_RAW, 0), E.EAFNOSUPPORT),  # AF_PACKET
    ((F.AF_MAX, F.SOCK_STREAM, 0), E.EAFNOSUPPORT),
    ((-1, F.SOCK_STREAM, 0), E.EAFNOSUPPORT),
])
def test_socket_errors(args, err):
    _, t = make_kernel()
    assert call(t, "socket", *args) == -err
    assert t.files.files == {}


def test_socket_flags_and_fd_limit():
    _, t = make_kernel()
    fd = call(t, "socket", F.AF_UNIX, F.SOCK_STREAM | F.SOCK_NONBLOCK | F.SOCK_CLOEXEC, 0)
    assert fd == 0 and fd in t.files.cloexec and t.files.get(fd).flags & F.O_NONBLOCK
    t.files.limit = 1
    assert call(t, "socket", F.AF_INET, F.SOCK_STREAM, 0) == -E.EMFILE
    assert call(t, "socketpair", F.AF_UNIX, F.SOCK_STREAM, 0, SCRATCH) == -E.EMFILE


def test_socketpair_families_and_efault():
    _, t = make_kernel()
    assert call(t, "socketpair", F.AF_INET, F.SOCK_STREAM, 0, SCRATCH) == -E.EOPNOTSUPP
    assert call(t, "socketpair", F.AF_INET6, F.SOCK_DGRAM, 0, SCRATCH) == -E.EOPNOTSUPP
    assert call(t, "socketpair", F.AF_NETLINK, F.SOCK_RAW, 0, SCRATCH) == -E.EAFNOSUPPORT
    assert call(t, "socketpair", F.AF_UNIX, F.SOCK_STREAM, 0, 0x1000) == -E.EFAULT
    assert t.files.files == {}
    sv = stage(t, size=8)
    assert call(t, "socketpair", F.AF_UNIX, F.SOCK_STREAM | F.SOCK_CLOEXEC, 0, sv) == 0
    a, b = struct.unpack("<ii", t.mm.read(sv, 8))
    assert {a, b} <= t.files.cloexec


def test_calls_on_a_non_socket_are_enotsock():
    _, t = make_kernel()
    assert call(t, "pipe2", SCRATCH, 0) == 0
    r, w = struct.unpack("<ii", t.mm.read(SCRATCH, 8))
    addr = stage(t, sun(b"/x"))
    assert call(t, "bind", r, addr, 5) == -E.ENOTSOCK
    assert call(t, "listen", r, 1) == -E.ENOTSOCK
    assert call(t, "getsockname", w, addr, stage(t, size=4)) == -E.ENOTSOCK
    assert call(t, "shutdown", w, 0) == -E.ENOTSOCK
    assert call(t, "sendto", w, addr, 1, 0, 0, 0) == -E.ENOTSOCK
    assert call(t, "listen", 99, 1) == -E.EBADF


# --- the File side --------------------------------------------------------------------
def test_fstat_proc_name_and_fstatfs():
    _, t = make_kernel()
    a, b = pair(t)
    dev, ino, mode, _ = fstat(t, a)
    assert mode == F.S_IFSOCK | 0o777
    assert ino != fstat(t, b)[1] and dev == fstat(t, b)[0]
    assert t.files.get(a).proc_name() == f"socket:[{ino}]"
    assert call(t, "fstatfs", a, SCRATCH) == 0
    assert struct.unpack("<q", t.mm.read(SCRATCH, 8))[0] == SOCKFS_MAGIC
    assert call(t, "lseek", a, 0, 0) == -E.ESPIPE
    assert call(t, "pread64", a, SCRATCH, 1, 0) == -E.ESPIPE


def test_read_write_are_recv_send():
    _, t = make_kernel()
    a, b = pair(t)
    assert wr(t, a, b"abc") == 3
    assert rd(t, b, 10) == b"abc"
    t.files.get(b).flags |= F.O_NONBLOCK
    assert rd(t, b, 10) == -E.EAGAIN
    assert call(t, "close", a) == 0
    assert rd(t, b, 10) == b""  # EOF
    assert wr(t, b, b"x") == -E.EPIPE and pending(t, F.SIGPIPE)


def test_release_frees_the_pair():
    _, t = make_kernel()
    a, b = pair(t)
    sa = t.files.get(a)
    call(t, "close", a)
    assert sa.closed
    assert events(t, b) & F.POLLHUP


# --- options --------------------------------------------------------------------------
def test_buffer_sizes_are_doubled_and_clamped():
    _, t = make_kernel()
    fd = sock(t)
    assert getopt(t, fd, F.SOL_SOCKET, F.SO_SNDBUF) == 212992
    assert getopt(t, fd, F.SOL_SOCKET, F.SO_RCVBUF) == 212992
    assert setopt(t, fd, F.SOL_SOCKET, F.SO_SNDBUF, 1) == 0
    assert getopt(t, fd, F.SOL_SOCKET, F.SO_SNDBUF) == 4608
    assert setopt(t, fd, F.SOL_SOCKET, F.SO_RCVBUF, 1) == 0
    assert getopt(t, fd, F.SOL_SOCKET, F.SO_RCVBUF) == 2304
    assert setopt(t, fd, F.SOL_SOCKET, F.SO_SNDBUF, 100000) == 0
    assert getopt(t, fd, F.SOL_SOCKET, F.SO_SNDBUF) == 200000
    assert setopt(t, fd, F.SOL_SOCKET, F.SO_SNDBUF, -1) == 0  # huge as unsigned: the max
    assert getopt(t, fd, F.SOL_SOCKET, F.SO_SNDBUF) == 2 * 212992
    tcp = sock(t, F.AF_INET)
    assert getopt(t, tcp, F.SOL_SOCKET, F.SO_SNDBUF) == 16384
    assert getopt(t, tcp, F.SOL_SOCKET, F.SO_RCVBUF) == 131072


def test_option_errors():
    _, t = make_kernel()
    u = sock(t)
    assert setopt(t, u, F.SOL_SOCKET, F.SO_REUSEADDR, b"\1") == -E.EINVAL  # short optlen
    assert call(t, "setsockopt", u, F.SOL_SOCKET, F.SO_REUSEADDR, stage(t, size=4), -1) \
        == -E.EINVAL
    assert setopt(t, u, F.SOL_SOCKET, F.SO_TYPE, 1) == -E.ENOPROTOOPT  # read-only
    assert setopt(t, u, F.SOL_SOCKET, F.SO_ERROR, 1) == -E.ENOPROTOOPT
    assert setopt(t, u, F.SOL_SOCKET, 999, 1) == -E.ENOPROTOOPT
    assert getopt(t, u, F.SOL_SOCKET, 999) == -E.ENOPROTOOPT
    assert getopt(t, u, F.IPPROTO_TCP, F.TCP_NODELAY) == -E.EOPNOTSUPP
    assert setopt(t, u, F.IPPROTO_TCP, F.TCP_NODELAY, 1) == -E.EOPNOTSUPP
    assert getopt(t, u, F.IPPROTO_IP, F.IP_TTL) == -E.EOPNOTSUPP
    assert setopt(t, u, F.SOL_SOCKET, F.SO_REUSEPORT, 1) == -E.EOPNOTSUPP  # inet only
    lenp = stage(t, struct.pack("<i", -1))
    assert call(t, "getsockopt", u, F.SOL_SOCKET, F.SO_TYPE, stage(t, size=4), lenp) \
        == -E.EINVAL
    assert call(t, "getsockopt", u, F.SOL_SOCKET, F.SO_TYPE, stage(t, size=4), 0x1000) \
        == -E.EFAULT
    # A short optlen gets a truncated value and its length.
    val, lenp = stage(t, size=4), stage(t, struct.pack("<i", 2))
    assert call(t, "getsockopt", u, F.SOL_SOCKET, F.SO_TYPE, val, lenp) == 0
    assert i32(t, lenp) == 2 and t.mm.read(val, 2) == b"\1\0"
    udp, tcp = sock(t, F.AF_INET, F.SOCK_DGRAM), sock(t, F.AF_INET)
    assert getopt(t, udp, F.IPPROTO_TCP, F.TCP_NODELAY) == -E.EOPNOTSUPP
    assert getopt(t, tcp, F.IPPROTO_UDP, F.UDP_CORK) == -E.EOPNOTSUPP
    assert getopt(t, tcp, F.IPPROTO_IPV6, F.IPV6_V6ONLY) == -E.EOPNOTSUPP
    assert getopt(t, tcp, F.IPPROTO_TCP, 99) == -E.ENOPROTOOPT


def test_flags_and_stored_options():
    _, t = make_kernel()
    fd = sock(t, F.AF_INET)
    for opt in (F.SO_REUSEADDR, F.SO_KEEPALIVE, F.SO_BROADCAST, F.SO_REUSEPORT):
        assert getopt(t, fd, F.SOL_SOCKET, opt) == 0
        assert setopt(t, fd, F.SOL_SOCKET, opt, 7) == 0
        assert getopt(t, fd, F.SOL_SOCKET, opt) == 1
    assert getopt(t, fd, F.SOL_SOCKET, F.SO_ACCEPTCONN) == 0
    assert getopt(t, fd, F.SOL_SOCKET, F.SO_ERROR) == 0
    assert getopt(t, fd, F.SOL_SOCKET, F.SO_SNDLOWAT) == 1
    assert getopt(t, fd, F.SOL_SOCKET, F.SO_RCVLOWAT) == 1
    assert setopt(t, fd, F.SOL_SOCKET, F.SO_RCVLOWAT, 0) == 0
    assert getopt(t, fd, F.SOL_SOCKET, F.SO_RCVLOWAT) == 1
    assert setopt(t, fd, F.SOL_SOCKET, F.SO_SNDLOWAT, 5) == -E.ENOPROTOOPT
    # TCP options: stored, with Linux's ranges.
    assert getopt(t, fd, F.IPPROTO_TCP, F.TCP_NODELAY) == 0
    assert setopt(t, fd, F.IPPROTO_TCP, F.TCP_NODELAY, 5) == 0
    assert getopt(t, fd, F.IPPROTO_TCP, F.TCP_NODELAY) == 1
    assert getopt(t, fd, F.IPPROTO_TCP, F.TCP_KEEPIDLE) == 7200
    assert setopt(t, fd, F.IPPROTO_TCP, F.TCP_KEEPIDLE, 0) == -E.EINVAL
    assert setopt(t, fd, F.IPPROTO_TCP, F.TCP_KEEPIDLE, 60) == 0
    assert getopt(t, fd, F.IPPROTO_TCP, F.TCP_KEEPIDLE) == 60
    assert setopt(t, fd, F.IPPROTO_TCP, F.TCP_KEEPCNT, 128) == -E.EINVAL
    assert getopt(t, fd, F.IPPROTO_TCP, F.TCP_MAXSEG) == 536
    assert setopt(t, fd, F.IPPROTO_TCP, F.TCP_MAXSEG, 10) == -E.EINVAL
    assert getopt(t, fd, F.IPPROTO_TCP, F.TCP_CONGESTION, 16) == b"cubic".ljust(16, b"\0")
    assert setopt(t, fd, F.IPPROTO_TCP, F.TCP_CONGESTION, b"vegas") == -E.ENOENT
    assert setopt(t, fd, F.IPPROTO_TCP, F.TCP_CONGESTION, b"reno") == 0
    assert getopt(t, fd, F.IPPROTO_TCP, F.TCP_CONGESTION, 16)[:5] == b"reno\0"
    info = getopt(t, fd, F.IPPROTO_TCP, F.TCP_INFO, 300)
    assert len(info) == 280 and info[0] == 7  # TCP_CLOSE
    # IP options.
    assert getopt(t, fd, F.IPPROTO_IP, F.IP_TTL) == 64
    assert setopt(t, fd, F.IPPROTO_IP, F.IP_TTL, 0) == -E.EINVAL
    assert setopt(t, fd, F.IPPROTO_IP, F.IP_TTL, 9) == 0
    assert getopt(t, fd, F.IPPROTO_IP, F.IP_TTL) == 9
    assert setopt(t, fd, F.IPPROTO_IP, F.IP_TTL, -1) == 0
    assert getopt(t, fd, F.IPPROTO_IP, F.IP_TTL) == 64
    assert getopt(t, fd, F.IPPROTO_IP, F.IP_MTU) == -E.ENOTCONN


def test_linger_timeouts_peercred_cookie():
    _, t = make_kernel()
    fd = sock(t)
    assert getopt(t, fd, F.SOL_SOCKET, F.SO_LINGER, 8) == bytes(8)
    assert setopt(t, fd, F.SOL_SOCKET, F.SO_LINGER, struct.pack("<i", 1)) == -E.EINVAL
    assert setopt(t, fd, F.SOL_SOCKET, F.SO_LINGER, struct.pack("<ii", 5, 30)) == 0
    assert getopt(t, fd, F.SOL_SOCKET, F.SO_LINGER, 8) == struct.pack("<ii", 1, 30)
    tv = struct.pack("<qq", 2, 500000)
    assert setopt(t, fd, F.SOL_SOCKET, F.SO_RCVTIMEO_OLD, tv) == 0
    assert getopt(t, fd, F.SOL_SOCKET, F.SO_RCVTIMEO_OLD, 16) == tv
    assert setopt(t, fd, F.SOL_SOCKET, F.SO_SNDTIMEO_OLD, struct.pack("<qq", 0, 1000000)) \
        == -E.EDOM
    assert setopt(t, fd, F.SOL_SOCKET, F.SO_SNDTIMEO_OLD, tv[:8]) == -E.EINVAL
    assert t.files.get(fd).rcvtimeo == 2.5
    # Unconnected: SO_PEERCRED is {0, -1, -1}.
    assert getopt(t, fd, F.SOL_SOCKET, F.SO_PEERCRED, 12) == struct.pack("<iII", 0, 2**32 - 1,
                                                                         2**32 - 1)
    a, b = pair(t)
    assert getopt(t, a, F.SOL_SOCKET, F.SO_PEERCRED, 12) == struct.pack("<iII", t.pid, 0, 0)
    c1 = getopt(t, a, F.SOL_SOCKET, F.SO_COOKIE, 8)
    c2 = getopt(t, b, F.SOL_SOCKET, F.SO_COOKIE, 8)
    assert len(c1) == 8 and c1 != c2
    assert getopt(t, a, F.SOL_SOCKET, F.SO_PEERNAME, 2) == struct.pack("<H", F.AF_UNIX)
    assert getopt(t, a, F.SOL_SOCKET, F.SO_PEERNAME, 128) == -E.EINVAL
    assert getopt(t, fd, F.SOL_SOCKET, F.SO_PEERNAME, 2) == -E.ENOTCONN
    assert setopt(t, fd, F.SOL_SOCKET, F.SO_BINDTODEVICE, b"eth0") == -E.ENODEV
    assert setopt(t, fd, F.SOL_SOCKET, F.SO_BINDTODEVICE, b"lo\0") == 0
    assert getopt(t, fd, F.SOL_SOCKET, F.SO_BINDTODEVICE, 16) == b"lo\0"


def test_privileged_options_for_an_unprivileged_caller():
    _, t = make_kernel()
    t.proc.creds.euid = 1000
    fd = sock(t, F.AF_INET)
    assert setopt(t, fd, F.SOL_SOCKET, F.SO_DEBUG, 1) == -E.EACCES
    assert setopt(t, fd, F.SOL_SOCKET, F.SO_MARK, 1) == -E.EPERM
    assert setopt(t, fd, F.SOL_SOCKET, F.SO_PRIORITY, 7) == -E.EPERM
    assert setopt(t, fd, F.SOL_SOCKET, F.SO_PRIORITY, 6) == 0
    assert setopt(t, fd, F.SOL_SOCKET, F.SO_SNDBUFFORCE, 1 << 20) == -E.EPERM
    assert bind(t, fd, sin("127.0.0.1", 80)) == -E.EACCES


def test_so_error_is_reported_once():
    _, t = make_kernel()
    u = sock(t, F.AF_INET, F.SOCK_DGRAM)
    assert connect(t, u, sin("127.0.0.1", 9)) == 0
    assert send(t, u, b"x") == 1  # nobody on port 9: an ICMP error follows
    assert events(t, u) & F.POLLERR
    assert getopt(t, u, F.SOL_SOCKET, F.SO_ERROR) == E.ECONNREFUSED
    assert getopt(t, u, F.SOL_SOCKET, F.SO_ERROR) == 0
    assert not events(t, u) & F.POLLERR


# --- ioctls ---------------------------------------------------------------------------
def test_fionread_and_siocoutq():
    _, t = make_kernel()
    a, b = pair(t)
    n = stage(t, size=4)
    assert send(t, a, b"hello") == 5 and send(t, a, b"!!") == 2
    assert call(t, "ioctl", b, F.FIONREAD, n) == 0 and i32(t, n) == 7
    assert call(t, "ioctl", a, F.SIOCOUTQ, n) == 0 and i32(t, n) == 2 * 768  # truesizes
    assert recv(t, b) == b"hello!!"
    assert call(t, "ioctl", a, F.SIOCOUTQ, n) == 0 and i32(t, n) == 0
    d1, d2 = pair(t, F.SOCK_DGRAM)
    assert send(t, d1, b"abc") == 3 and send(t, d1, b"defgh") == 5
    assert call(t, "ioctl", d2, F.FIONREAD, n) == 0 and i32(t, n) == 3  # the next datagram
    srv = sock(t)
    assert bind(t, srv, sun(b"\0srv")) == 0 and listen(t, srv) == 0
    assert call(t, "ioctl", srv, F.FIONREAD, n) == -E.EINVAL
    assert call(t, "ioctl", a, 0x5401, n) == -E.ENOTTY  # TCGETS
    assert call(t, "ioctl", a, F.FIONBIO, stage(t, struct.pack("<i", 1))) == 0
    assert recv(t, a) == -E.EAGAIN


def test_interface_ioctls_describe_lo():
    _, t = make_kernel()
    fd = sock(t, F.AF_INET, F.SOCK_DGRAM)
    ifr = stage(t, b"lo".ljust(40, b"\0"))
    assert call(t, "ioctl", fd, F.SIOCGIFINDEX, ifr) == 0 and i32(t, ifr + 16) == 1
    assert call(t, "ioctl", fd, F.SIOCGIFFLAGS, ifr) == 0
    assert struct.unpack("<h", t.mm.read(ifr + 16, 2))[0] & F.IFF_LOOPBACK
    assert call(t, "ioctl", fd, F.SIOCGIFADDR, ifr) == 0
    assert t.mm.read(ifr + 16, 8) == sin("127.0.0.1", 0)[:8]
    assert call(t, "ioctl", fd, F.SIOCGIFMTU, ifr) == 0 and i32(t, ifr + 16) == 65536
    eth = stage(t, b"eth0".ljust(40, b"\0"))
    assert call(t, "ioctl", fd, F.SIOCGIFINDEX, eth) == -E.ENODEV
    byidx = stage(t, bytes(16) + struct.pack("<i", 1) + bytes(20))
    assert call(t, "ioctl", fd, F.SIOCGIFNAME, byidx) == 0
    assert t.mm.read(byidx, 3) == b"lo\0"
    t.mm.write(byidx + 16, struct.pack("<i", 2))
    assert call(t, "ioctl", fd, F.SIOCGIFNAME, byidx) == -E.ENODEV
    conf = stage(t, struct.pack("<i4xQ", 0, 0))
    assert call(t, "ioctl", fd, F.SIOCGIFCONF, conf) == 0 and i32(t, conf) == 40
    buf = stage(t, size=80)
    t.mm.write(conf, struct.pack("<i4xQ", 80, buf))
    assert call(t, "ioctl", fd, F.SIOCGIFCONF, conf) == 0 and i32(t, conf) == 40
    assert t.mm.read(buf, 3) == b"lo\0"


def test_every_socket_is_a_socket_instance():
    _, t = make_kernel()
    for fd in (sock(t), sock(t, F.AF_INET6, F.SOCK_DGRAM)):
        assert isinstance(t.files.get(fd), Socket)
