"""setsockopt / getsockopt: SOL_SOCKET, IPPROTO_TCP, IPPROTO_IP, IPPROTO_IPV6, IPPROTO_UDP.

Options that change behaviour live on the socket (buffer sizes, timeouts,
SO_PASSCRED, SO_REUSEADDR/PORT, SO_LINGER, IPV6_V6ONLY); the others are
stored and read back, range-checked as Linux checks them. A level the socket
does not speak is EOPNOTSUPP (an AF_UNIX socket has nothing but SOL_SOCKET;
TCP has no UDP options ...), except that setting one on an inet socket is
ENOPROTOOPT (the IP layer's answer); an unknown option of a level it speaks
is ENOPROTOOPT. Reads return the whole value; the syscall copies what fits.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from cove.abi import flags as F
from cove.abi.errno import E, Errno
from cove.kernel.socket.base import (
    NO_PEERCRED,
    RMEM_MAX,
    SOCK_MIN_RCVBUF,
    SOCK_MIN_SNDBUF,
    WMEM_MAX,
    Socket,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from cove.kernel.task import Task

_INT = struct.Struct("<i")
_U64 = struct.Struct("<Q")
_LINGER = struct.Struct("<ii")
_TIMEVAL = struct.Struct("<qq")
_UCRED = struct.Struct("<iII")
INT_MAX = 0x7FFFFFFF
TCP_INFO_SIZE = 280
TCP_CA_NAME_MAX = 16
LO_MTU = 65536
TCP_ESTABLISHED, TCP_CLOSE, TCP_LISTEN = 1, 7, 10

Reader = Callable[[int], bytes]  # read n bytes of optval (EINVAL if optlen < n)

# Flags: stored as 0/1.
_SOL_BOOLS = {
    F.SO_DONTROUTE, F.SO_BROADCAST, F.SO_KEEPALIVE, F.SO_OOBINLINE, F.SO_NO_CHECK,
    F.SO_BSDCOMPAT, F.SO_PASSSEC, F.SO_TIMESTAMP_OLD, F.SO_TIMESTAMP_NEW,
    F.SO_TIMESTAMPNS_OLD, F.SO_TIMESTAMPNS_NEW, F.SO_RXQ_OVFL, F.SO_WIFI_STATUS, F.SO_NOFCS,
    F.SO_SELECT_ERR_QUEUE, F.SO_ZEROCOPY, F.SO_PASSPIDFD,
}
# Plain ints: (default, lo, hi) with EINVAL outside; None bounds: anything.
IntSpec = tuple[int, int | None, int | None]
_SOL_INTS: dict[int, IntSpec] = {
    F.SO_BUSY_POLL: (0, 0, None), F.SO_INCOMING_CPU: (-1, None, None),
    F.SO_MAX_PACING_RATE: (-1, None, None), F.SO_TIMESTAMPING_OLD: (0, None, None),
    F.SO_TIMESTAMPING_NEW: (0, None, None),
}
_TCP_INTS: dict[int, IntSpec] = {
    F.TCP_NODELAY: (0, None, None), F.TCP_CORK: (0, None, None),
    F.TCP_KEEPIDLE: (7200, 1, 32767), F.TCP_KEEPINTVL: (75, 1, 32767),
    F.TCP_KEEPCNT: (9, 1, 127), F.TCP_SYNCNT: (6, 1, 127), F.TCP_LINGER2: (60, None, None),
    F.TCP_DEFER_ACCEPT: (0, None, None), F.TCP_WINDOW_CLAMP: (0, 0, None),
    F.TCP_QUICKACK: (1, None, None), F.TCP_USER_TIMEOUT: (0, 0, None),
    F.TCP_FASTOPEN: (0, 0, None), F.TCP_NOTSENT_LOWAT: (-1, None, None),
    F.TCP_FASTOPEN_CONNECT: (0, 0, 1),
}
_TCP_BOOLS = {F.TCP_NODELAY, F.TCP_CORK, F.TCP_QUICKACK}
_IP_INTS: dict[int, IntSpec] = {
    F.IP_TOS: (0, None, None), F.IP_TTL: (64, 1, 255), F.IP_RECVOPTS: (0, None, None),
    F.IP_RETOPTS: (0, None, None), F.IP_PKTINFO: (0, None, None),
    F.IP_MTU_DISCOVER: (1, 0, 5), F.IP_RECVERR: (0, None, None),
    F.IP_RECVTTL: (0, None, None), F.IP_RECVTOS: (0, None, None),
    F.IP_FREEBIND: (0, None, None), F.IP_PASSSEC: (0, None, None),
    F.IP_BIND_ADDRESS_NO_PORT: (0, None, None), F.IP_RECVFRAGSIZE: (0, None, None),
    F.IP_MULTICAST_TTL: (1, 0, 255), F.IP_MULTICAST_LOOP: (1, None, None),
}
_IPV6_INTS: dict[int, IntSpec] = {
    F.IPV6_V6ONLY: (0, None, None), F.IPV6_UNICAST_HOPS: (64, -1, 255),
    F.IPV6_MULTICAST_HOPS: (1, -1, 255), F.IPV6_MULTICAST_LOOP: (1, 0, 1),
    F.IPV6_MTU_DISCOVER: (1, 0, 5), F.IPV6_RECVERR: (0, None, None),
    F.IPV6_RECVPKTINFO: (0, None, None), F.IPV6_DONTFRAG: (0, None, None),
    F.IPV6_RECVTCLASS: (0, None, None), F.IPV6_TCLASS: (0, -1, 255),
}
_UDP_INTS: dict[int, IntSpec] = {
    F.UDP_CORK: (0, None, None), F.UDP_SEGMENT: (0, 0, 65535), F.UDP_GRO: (0, None, None),
}
# -1 asks for the default.
_MINUS_ONE_DEFAULT = {(F.IPPROTO_IP, F.IP_TTL), (F.IPPROTO_IP, F.IP_MULTICAST_TTL),
                      (F.IPPROTO_IPV6, F.IPV6_UNICAST_HOPS),
                      (F.IPPROTO_IPV6, F.IPV6_MULTICAST_HOPS), (F.IPPROTO_IPV6, F.IPV6_TCLASS)}


def _ints_of(sock: Socket, level: int) -> dict[int, IntSpec]:
    """The int options of ``level`` for this socket; EOPNOTSUPP for a level it
    does not speak."""
    inet = sock.family in (F.AF_INET, F.AF_INET6)
    if level == F.IPPROTO_TCP and inet and sock.protocol == F.IPPROTO_TCP:
        return _TCP_INTS
    if level == F.IPPROTO_UDP and inet and sock.protocol == F.IPPROTO_UDP:
        return _UDP_INTS
    if level == F.IPPROTO_IP and inet:
        return _IP_INTS
    if level == F.IPPROTO_IPV6 and sock.family == F.AF_INET6:
        return _IPV6_INTS
    raise Errno(E.EOPNOTSUPP)


def _get_int(read: Reader) -> int:
    return _INT.unpack(read(4))[0]


def _timeval(read: Reader) -> float | None:
    sec, usec = _TIMEVAL.unpack(read(16))
    if usec < 0 or usec >= 1_000_000:
        raise Errno(E.EDOM)
    if sec < 0:
        return 0.0  # Linux warns and stops waiting at all
    if sec == 0 and usec == 0:
        return None
    return sec + usec / 1e6


def _is_root(t: Task) -> bool:
    return t.proc.creds.euid == 0


# --- set ---------------------------------------------------------------------------------
def setsockopt(t: Task, sock: Socket, level: int, name: int, read: Reader, optlen: int) -> None:
    """Set an option; ``read(n)`` gives the first n bytes of optval (EINVAL
    when ``optlen`` is shorter)."""
    if level == F.SOL_SOCKET:
        _set_socket(t, sock, name, read, optlen)
        return
    try:
        ints = _ints_of(sock, level)
    except Errno:
        if sock.family == F.AF_UNIX:
            raise
        raise Errno(E.ENOPROTOOPT) from None  # ip_setsockopt: not SOL_IP
    if level == F.IPPROTO_TCP and name == F.TCP_CONGESTION:
        if optlen < 1:
            raise Errno(E.EINVAL)
        name_ = read(min(optlen, TCP_CA_NAME_MAX - 1)).split(b"\0", 1)[0]
        if name_ not in (b"cubic", b"reno"):
            raise Errno(E.ENOENT)
        sock.opts[(level, name)] = name_
        return
    if level == F.IPPROTO_TCP and name == F.TCP_MAXSEG:
        v = _get_int(read)
        if v and not 88 <= v <= 32767:
            raise Errno(E.EINVAL)
        sock.opts[(level, name)] = v
        return
    if level == F.IPPROTO_IP and name == F.IP_TRANSPARENT:
        if not _is_root(t):
            raise Errno(E.EPERM)
        sock.opts[(level, name)] = int(bool(_get_int(read)))
        return
    if level == F.IPPROTO_IP and name in (F.IP_ADD_MEMBERSHIP, F.IP_DROP_MEMBERSHIP):
        raise Errno(E.ENODEV)  # loopback has no multicast
    spec = ints.get(name)
    if spec is None:
        raise Errno(E.ENOPROTOOPT)
    v = _get_int(read)
    if (level, name) in _MINUS_ONE_DEFAULT and v == -1:
        sock.opts.pop((level, name), None)
        return
    _default, lo, hi = spec
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise Errno(E.EINVAL)
    if level == F.IPPROTO_IPV6 and name == F.IPV6_V6ONLY and getattr(sock, "local", None):
        raise Errno(E.EINVAL)  # not once bound
    if (level == F.IPPROTO_TCP and name in _TCP_BOOLS) or (
            level == F.IPPROTO_IPV6 and name == F.IPV6_V6ONLY):
        v = int(bool(v))
    sock.opts[(level, name)] = v


def _set_socket(t: Task, sock: Socket, name: int, read: Reader, optlen: int) -> None:
    if name in (F.SO_RCVTIMEO_OLD, F.SO_RCVTIMEO_NEW):
        sock.rcvtimeo = _timeval(read)
        return
    if name in (F.SO_SNDTIMEO_OLD, F.SO_SNDTIMEO_NEW):
        sock.sndtimeo = _timeval(read)
        return
    if name == F.SO_LINGER:
        onoff, secs = _LINGER.unpack(read(8))
        sock.linger = (int(bool(onoff)), secs)
        return
    if name == F.SO_BINDTODEVICE:
        dev = read(min(optlen, F.IFNAMSIZ - 1)).split(b"\0", 1)[0]
        if dev not in (b"", b"lo"):
            raise Errno(E.ENODEV)
        sock.opts[(F.SOL_SOCKET, name)] = dev
        return
    v = _get_int(read)
    if name == F.SO_SNDBUF:
        sock.sndbuf = max(min(v & 0xFFFFFFFF, WMEM_MAX) * 2, SOCK_MIN_SNDBUF)
    elif name == F.SO_RCVBUF:
        sock.rcvbuf = max(min(v & 0xFFFFFFFF, RMEM_MAX) * 2, SOCK_MIN_RCVBUF)
    elif name in (F.SO_SNDBUFFORCE, F.SO_RCVBUFFORCE):
        if not _is_root(t):
            raise Errno(E.EPERM)
        size = min(max(v, 0), INT_MAX // 2) * 2
        if name == F.SO_SNDBUFFORCE:
            sock.sndbuf = max(size, SOCK_MIN_SNDBUF)
        else:
            sock.rcvbuf = max(size, SOCK_MIN_RCVBUF)
    elif name == F.SO_REUSEADDR:
        sock.reuseaddr = bool(v)
    elif name == F.SO_REUSEPORT:
        if v and sock.family == F.AF_UNIX:
            raise Errno(E.EOPNOTSUPP)
        sock.reuseport = bool(v)
    elif name == F.SO_PASSCRED:
        sock.passcred = bool(v)
    elif name == F.SO_DEBUG:
        if v and not _is_root(t):
            raise Errno(E.EACCES)
        sock.opts[(F.SOL_SOCKET, name)] = int(bool(v))
    elif name == F.SO_PRIORITY:
        if not 0 <= v <= 6 and not _is_root(t):
            raise Errno(E.EPERM)
        sock.opts[(F.SOL_SOCKET, name)] = v
    elif name == F.SO_MARK:
        if not _is_root(t):
            raise Errno(E.EPERM)
        sock.opts[(F.SOL_SOCKET, name)] = v & 0xFFFFFFFF
    elif name == F.SO_RCVLOWAT:
        sock.opts[(F.SOL_SOCKET, name)] = (INT_MAX if v < 0 else v) or 1
    elif name == F.SO_PEEK_OFF:
        if sock.family != F.AF_UNIX:
            raise Errno(E.EOPNOTSUPP)
        sock.opts[(F.SOL_SOCKET, name)] = v
    elif name == F.SO_BINDTOIFINDEX:
        if v not in (0, 1):
            raise Errno(E.ENODEV)
        sock.opts[(F.SOL_SOCKET, F.SO_BINDTODEVICE)] = b"lo" if v else b""
    elif name in _SOL_BOOLS:
        sock.opts[(F.SOL_SOCKET, name)] = int(bool(v))
    elif name in _SOL_INTS:
        sock.opts[(F.SOL_SOCKET, name)] = v
    else:
        raise Errno(E.ENOPROTOOPT)  # unknown, or read-only (SO_TYPE, SO_ERROR ...)


# --- get ---------------------------------------------------------------------------------
def getsockopt(t: Task, sock: Socket, level: int, name: int, optlen: int) -> bytes:
    if level == F.SOL_SOCKET:
        return _get_socket(sock, name, optlen)
    ints = _ints_of(sock, level)
    connected = _connected(sock)
    if level == F.IPPROTO_TCP:
        if name == F.TCP_INFO:
            state = (TCP_LISTEN if sock.listening else TCP_ESTABLISHED if connected
                     else TCP_CLOSE)
            return bytes([state]) + bytes(TCP_INFO_SIZE - 1)
        if name == F.TCP_CONGESTION:
            return sock.opts.get((level, name), b"cubic").ljust(TCP_CA_NAME_MAX, b"\0")
        if name == F.TCP_MAXSEG:
            v = sock.opts.get((level, name)) or (LO_MTU - 53 if connected else 536)
            return _INT.pack(v)
    if (level, name) in ((F.IPPROTO_IP, F.IP_MTU), (F.IPPROTO_IPV6, F.IPV6_MTU)):
        if not connected:
            raise Errno(E.ENOTCONN)
        return _INT.pack(LO_MTU)
    if level == F.IPPROTO_IP and name == F.IP_TRANSPARENT:
        return _INT.pack(sock.opts.get((level, name), 0))
    spec = ints.get(name)
    if spec is None:
        raise Errno(E.ENOPROTOOPT)
    return _INT.pack(sock.opts.get((level, name), spec[0]))


def _connected(sock: Socket) -> bool:
    try:
        sock.peername()
    except Errno:
        return False
    return True


def _get_socket(sock: Socket, name: int, optlen: int) -> bytes:
    opts = sock.opts
    if name == F.SO_TYPE:
        v = sock.stype
    elif name == F.SO_PROTOCOL:
        v = sock.protocol
    elif name == F.SO_DOMAIN:
        v = sock.family
    elif name == F.SO_ERROR:
        v = sock.take_error()
    elif name == F.SO_ACCEPTCONN:
        v = int(sock.listening)
    elif name == F.SO_SNDBUF:
        v = sock.sndbuf
    elif name == F.SO_RCVBUF:
        v = sock.rcvbuf
    elif name == F.SO_REUSEADDR:
        v = int(sock.reuseaddr)
    elif name == F.SO_REUSEPORT:
        v = int(sock.reuseport)
    elif name == F.SO_PASSCRED:
        v = int(sock.passcred)
    elif name == F.SO_SNDLOWAT:
        v = 1
    elif name == F.SO_RCVLOWAT:
        v = opts.get((F.SOL_SOCKET, name), 1)
    elif name == F.SO_PEEK_OFF:
        if sock.family != F.AF_UNIX:
            raise Errno(E.EOPNOTSUPP)
        v = opts.get((F.SOL_SOCKET, name), -1)
    elif name == F.SO_LINGER:
        return _LINGER.pack(*sock.linger)
    elif name in (F.SO_RCVTIMEO_OLD, F.SO_RCVTIMEO_NEW, F.SO_SNDTIMEO_OLD, F.SO_SNDTIMEO_NEW):
        timeo = sock.rcvtimeo if name in (F.SO_RCVTIMEO_OLD, F.SO_RCVTIMEO_NEW) else sock.sndtimeo
        if not timeo:
            return _TIMEVAL.pack(0, 0)
        usec = round(timeo * 1e6)
        return _TIMEVAL.pack(usec // 1_000_000, usec % 1_000_000)
    elif name == F.SO_PEERCRED:
        return _UCRED.pack(*(sock.peercred if sock.family == F.AF_UNIX else NO_PEERCRED))
    elif name == F.SO_PEERNAME:
        addr = sock.peername()
        if len(addr) < optlen:
            raise Errno(E.EINVAL)
        return addr
    elif name == F.SO_COOKIE:
        return _U64.pack(sock.cookie)
    elif name == F.SO_BINDTODEVICE:
        dev = opts.get((F.SOL_SOCKET, name), b"")
        return dev + b"\0" if dev else b""
    elif name == F.SO_BINDTOIFINDEX:
        v = 1 if opts.get((F.SOL_SOCKET, F.SO_BINDTODEVICE)) else 0
    elif name in (F.SO_DEBUG, F.SO_PRIORITY, F.SO_MARK) or name in _SOL_BOOLS:
        v = opts.get((F.SOL_SOCKET, name), 0)
    elif name in _SOL_INTS:
        v = opts.get((F.SOL_SOCKET, name), _SOL_INTS[name][0])
    else:
        raise Errno(E.ENOPROTOOPT)
    return _INT.pack(v) if name != F.SO_MARK else struct.pack("<I", v)
