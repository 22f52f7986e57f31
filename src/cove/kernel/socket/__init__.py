"""cove's own sockets: every guest socket is an object of the sandbox, never
a host socket.

- AF_UNIX SOCK_STREAM / SOCK_SEQPACKET / SOCK_DGRAM, with path, abstract and
  autobind names, SCM_RIGHTS and SCM_CREDENTIALS (unix.py);
- AF_INET / AF_INET6 TCP and UDP over a loopback-only network inside the
  sandbox (inet.py): 127.0.0.0/8 and ::1 reach the sandbox's own sockets,
  anything else is unreachable;
- the connection and datagram machinery (stream.py, dgram.py), options
  (options.py), control messages (cmsg.py), ioctls (netdev.py), whole-call
  data movement with blocking in the middle (io.py), and the per-sandbox
  tables of names and ports (ns.py).

The syscalls are in cove.kernel.syscalls.net / net_msg; ``new_socket`` and
``new_pair`` are what they (or anything else in the kernel) create sockets with.
"""

from __future__ import annotations

from cove.abi import flags as F
from cove.abi.errno import E, Errno
from cove.kernel.socket.base import Received, Socket
from cove.kernel.socket.inet import Tcp, Udp, inet_socket
from cove.kernel.socket.ns import NetNamespace, netns
from cove.kernel.socket.unix import UnixDgram, UnixStream, unix_pair, unix_socket

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from cove.kernel.task import Task

__all__ = [
    "NetNamespace",
    "Received",
    "Socket",
    "Tcp",
    "Udp",
    "UnixDgram",
    "UnixStream",
    "netns",
    "new_pair",
    "new_socket",
    "split_type",
]

TYPE_FLAGS = F.SOCK_NONBLOCK | F.SOCK_CLOEXEC
SOCK_MAX = 11  # SOCK_PACKET + 1


def split_type(type_: int) -> tuple[int, int]:
    """(socket type, SOCK_NONBLOCK|SOCK_CLOEXEC flags); EINVAL for other bits."""
    flags = type_ & ~F.SOCK_TYPE_MASK
    if flags & ~TYPE_FLAGS:
        raise Errno(E.EINVAL)
    stype = type_ & F.SOCK_TYPE_MASK
    if stype >= SOCK_MAX:
        raise Errno(E.EINVAL)
    return stype, flags


def _check(domain: int, stype: int, protocol: int) -> None:
    """__sock_create's and the families' create checks."""
    if domain < 0 or domain >= F.AF_MAX:
        raise Errno(E.EAFNOSUPPORT)
    if domain == F.AF_UNIX:
        if stype not in (F.SOCK_STREAM, F.SOCK_DGRAM, F.SOCK_SEQPACKET, F.SOCK_RAW):
            raise Errno(E.ESOCKTNOSUPPORT)
        if protocol not in (0, F.PF_UNIX):
            raise Errno(E.EPROTONOSUPPORT)
        return
    if domain not in (F.AF_INET, F.AF_INET6):
        raise Errno(E.EAFNOSUPPORT)  # AF_NETLINK, AF_PACKET ...: not in the sandbox
    if stype == F.SOCK_STREAM:
        if protocol not in (0, F.IPPROTO_TCP):
            raise Errno(E.EPROTONOSUPPORT)
    elif stype == F.SOCK_DGRAM:
        if protocol in (F.IPPROTO_ICMP, F.IPPROTO_ICMPV6):
            raise Errno(E.EACCES)  # ping sockets: outside net.ipv4.ping_group_range
        if protocol not in (0, F.IPPROTO_UDP):
            raise Errno(E.EPROTONOSUPPORT)
    elif stype == F.SOCK_RAW:
        raise Errno(E.EPERM)  # raw sockets need CAP_NET_RAW, which nobody has here
    else:
        raise Errno(E.ESOCKTNOSUPPORT)


def new_socket(t: Task, domain: int, stype: int, protocol: int, nonblock: bool) -> Socket:
    """A fresh socket owned by ``t``'s fs credentials (what socket(2) makes)."""
    _check(domain, stype, protocol)
    ns = netns(t.kernel)
    c = t.proc.creds
    if domain == F.AF_UNIX:
        return unix_socket(ns, stype, nonblock, c.fsuid, c.fsgid)
    return inet_socket(ns, domain, stype, protocol, nonblock, c.fsuid, c.fsgid)


def new_pair(t: Task, domain: int, stype: int, protocol: int,
             nonblock: bool) -> tuple[Socket, Socket]:
    """socketpair(2): AF_UNIX only (inet families: EOPNOTSUPP)."""
    _check(domain, stype, protocol)
    if domain != F.AF_UNIX:
        raise Errno(E.EOPNOTSUPP)
    return unix_pair(netns(t.kernel), t, stype, nonblock)
