"""socket, socketpair, bind, listen, accept, accept4, connect, getsockname,
getpeername, shutdown, setsockopt, getsockopt: over cove's own sockets
(cove.kernel.socket), never the host's.

Addresses come in as move_addr_to_kernel takes them (addrlen 0..128, else
EINVAL) and go out as move_addr_to_user gives them (truncated to the
caller's length, the full length written back). The data calls are in
net_msg.py.
"""

from __future__ import annotations

import struct

from cove.abi import flags as F
from cove.abi.errno import E, Errno
from cove.kernel.fdtable import install_pair
from cove.kernel.socket import Socket, new_pair, new_socket, split_type
from cove.kernel.socket.addr import SOCKADDR_STORAGE
from cove.kernel.socket.io import interrupted, step
from cove.kernel.socket.options import getsockopt as get_option
from cove.kernel.socket.options import setsockopt as set_option
from cove.kernel.socket.stream import StreamSocket
from cove.kernel.syscall import FD, INT, PTR, syscall
from cove.kernel.task import Task

_INT = struct.Struct("<i")
ACCEPT_FLAGS = F.SOCK_NONBLOCK | F.SOCK_CLOEXEC


def sock_of(t: Task, fd: int) -> Socket:
    """The socket behind ``fd``: EBADF for no file, ENOTSOCK for another kind."""
    f = t.files.get(fd)
    if not isinstance(f, Socket):
        raise Errno(E.ENOTSOCK)
    return f


def addr_in(t: Task, addr: int, addrlen: int) -> bytes:
    """move_addr_to_kernel."""
    if addrlen < 0 or addrlen > SOCKADDR_STORAGE:
        raise Errno(E.EINVAL)
    return t.mm.read(addr, addrlen) if addrlen else b""


def addr_out(t: Task, raw: bytes, addr: int, lenp: int) -> None:
    """move_addr_to_user: as much of ``raw`` as the caller's length allows,
    and the real length into ``*lenp``."""
    ulen = _INT.unpack(t.mm.read(lenp, 4))[0]
    if ulen < 0:
        raise Errno(E.EINVAL)
    n = min(ulen, len(raw))
    if n:
        t.mm.write(addr, raw[:n])
    t.mm.write(lenp, _INT.pack(len(raw)))


def install(t: Task, s: Socket, cloexec: bool) -> int:
    return t.files.install(s, cloexec=cloexec)


@syscall("socket", INT, INT, INT, support="partial",
         note="AF_UNIX; AF_INET/AF_INET6 TCP and UDP on a loopback-only network of the "
              "sandbox; other families EAFNOSUPPORT, raw sockets EPERM")
def socket(t: Task, domain: int, type_: int, protocol: int) -> int:
    stype, flags = split_type(type_)
    s = new_socket(t, domain, stype, protocol, bool(flags & F.SOCK_NONBLOCK))
    try:
        return install(t, s, bool(flags & F.SOCK_CLOEXEC))
    except Errno:
        s.release()
        raise


@syscall("socketpair", INT, INT, INT, PTR)
def socketpair(t: Task, domain: int, type_: int, protocol: int, sv: int) -> int:
    stype, flags = split_type(type_)
    a, b = new_pair(t, domain, stype, protocol, bool(flags & F.SOCK_NONBLOCK))
    install_pair(t, a, b, cloexec=bool(flags & F.SOCK_CLOEXEC), addr=sv)
    return 0


@syscall("bind", FD, PTR, INT)
def bind(t: Task, fd: int, addr: int, addrlen: int) -> int:
    s = sock_of(t, fd)
    s.bind(t, addr_in(t, addr, addrlen))
    return 0


@syscall("listen", FD, INT)
def listen(t: Task, fd: int, backlog: int) -> int:
    sock_of(t, fd).listen(t, backlog)
    return 0


@syscall("connect", FD, PTR, INT, on_interrupt=interrupted)
def connect(t: Task, fd: int, addr: int, addrlen: int) -> int:
    s = sock_of(t, fd)
    raw = addr_in(t, addr, addrlen)
    return step(t, s, lambda: s.connect(t, raw), send=True)


@syscall("accept4", FD, PTR, PTR, INT, on_interrupt=interrupted)
def accept4(t: Task, fd: int, addr: int, addrlen: int, flags: int) -> int:
    if flags & ~ACCEPT_FLAGS:
        raise Errno(E.EINVAL)
    s = sock_of(t, fd)
    new = step(t, s, lambda: s.accept(t, flags), send=False)
    if flags & F.SOCK_NONBLOCK:
        new.flags |= F.O_NONBLOCK
    try:
        nfd = install(t, new, bool(flags & F.SOCK_CLOEXEC))
    except Errno:
        if isinstance(s, StreamSocket) and isinstance(new, StreamSocket):
            s.backlog.appendleft(new)  # no fd for it: the connection stays queued
            new.listener = s
        raise
    if addr:
        try:
            addr_out(t, new.peername(), addr, addrlen)
        except Errno:
            t.files.close(nfd)  # Linux drops the connection it could not report
            raise
    return nfd


@syscall("accept", FD, PTR, PTR, on_interrupt=interrupted)
def accept(t: Task, fd: int, addr: int, addrlen: int) -> int:
    return accept4(t, fd, addr, addrlen, 0)


@syscall("getsockname", FD, PTR, PTR)
def getsockname(t: Task, fd: int, addr: int, addrlen: int) -> int:
    addr_out(t, sock_of(t, fd).sockname(), addr, addrlen)
    return 0


@syscall("getpeername", FD, PTR, PTR)
def getpeername(t: Task, fd: int, addr: int, addrlen: int) -> int:
    addr_out(t, sock_of(t, fd).peername(), addr, addrlen)
    return 0


@syscall("shutdown", FD, INT)
def shutdown(t: Task, fd: int, how: int) -> int:
    s = sock_of(t, fd)
    if how not in (F.SHUT_RD, F.SHUT_WR, F.SHUT_RDWR):
        raise Errno(E.EINVAL)
    s.shutdown(how)
    return 0


@syscall("setsockopt", FD, INT, INT, PTR, INT)
def setsockopt(t: Task, fd: int, level: int, name: int, optval: int, optlen: int) -> int:
    s = sock_of(t, fd)
    if optlen < 0:
        raise Errno(E.EINVAL)

    def read(n: int) -> bytes:
        if optlen < n:
            raise Errno(E.EINVAL)
        return t.mm.read(optval, n) if n else b""

    set_option(t, s, level, name, read, optlen)
    return 0


@syscall("getsockopt", FD, INT, INT, PTR, PTR)
def getsockopt(t: Task, fd: int, level: int, name: int, optval: int, optlen: int) -> int:
    s = sock_of(t, fd)
    ulen = _INT.unpack(t.mm.read(optlen, 4))[0]
    if ulen < 0:
        raise Errno(E.EINVAL)
    value = get_option(t, s, level, name, ulen)
    n = min(ulen, len(value))
    if n:
        t.mm.write(optval, value[:n])
    t.mm.write(optlen, _INT.pack(n))
    return 0
