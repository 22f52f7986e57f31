"""sendto, recvfrom, sendmsg, recvmsg, sendmmsg, recvmmsg.

msghdr handling follows ____sys_sendmsg / ____sys_recvmsg: msg_namelen
negative is EINVAL and above 128 is cut to 128, msg_iovlen above UIO_MAXIOV
is EMSGSIZE, msg_controllen above INT_MAX is ENOBUFS (and above the option
memory limit too); recvmsg writes back msg_namelen (when msg_name is set),
msg_controllen and msg_flags. The data itself moves through
cove.kernel.socket.io, which handles blocking sends, MSG_WAITALL and
socket timeouts.
"""

from __future__ import annotations

import time

from cove.abi import flags as F
from cove.abi.errno import E, Errno
from cove.abi.structs.clock import TIMESPEC
from cove.abi.structs.fs import UIO_MAXIOV
from cove.abi.structs.net import MMSGHDR, MSGHDR
from cove.kernel.socket import io
from cove.kernel.socket.addr import SOCKADDR_STORAGE
from cove.kernel.socket.base import Received
from cove.kernel.socket.cmsg import build_control, parse_control
from cove.kernel.socket.packet import drop_files
from cove.kernel.syscall import FD, INT, PTR, UINT, ULONG, syscall
from cove.kernel.syscalls.fs_iov import (
    MAX_RW_COUNT,
    gather,
    read_iovecs,
    scatter,
    user_range_ok,
    writable_prefix,
    writable_run,
)
from cove.kernel.syscalls.net import addr_in, addr_out, sock_of
from cove.kernel.wait import Blocked

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from cove.kernel.socket import Socket
    from cove.kernel.task import Task

INT_MAX = 0x7FFFFFFF
OPTMEM_MAX = 131072  # net.core.optmem_max: the largest control buffer sendmsg copies
MSG_CMSG_COMPAT = 0x80000000


def _signed(v: int) -> int:
    return v - (1 << 32) if v & 0x80000000 else v


def _buffer(t: Task, buf: int, length: int) -> list[tuple[int, int]]:
    length = min(length, MAX_RW_COUNT)
    if not user_range_ok(buf, length):
        raise Errno(E.EFAULT)
    return [(buf, length)] if length else []


def _send_data(t: Task, segs: list[tuple[int, int]]) -> bytes:
    data = gather(t, segs)
    if len(data) < sum(n for _, n in segs):
        raise Errno(E.EFAULT)
    return data


# --- sendto / recvfrom ----------------------------------------------------------------
@syscall("sendto", FD, PTR, ULONG, UINT, PTR, INT, on_interrupt=io.interrupted)
def sendto(t: Task, fd: int, buf: int, length: int, flags: int, addr: int, addrlen: int) -> int:
    s = sock_of(t, fd)
    data = _send_data(t, _buffer(t, buf, length))
    dest = addr_in(t, addr, addrlen) if addr else None
    return io.send(t, s, data, dest, None, None, flags)


@syscall("recvfrom", FD, PTR, ULONG, UINT, PTR, PTR, on_interrupt=io.interrupted)
def recvfrom(t: Task, fd: int, buf: int, length: int, flags: int, addr: int,
             addrlen: int) -> int:
    s = sock_of(t, fd)
    n, r = io.recv(t, s, _buffer(t, buf, length), flags)
    drop_files(r.files)  # no control buffer: passed files are closed
    if addr:
        addr_out(t, r.src or b"", addr, addrlen)
    return n


# --- sendmsg / recvmsg ----------------------------------------------------------------
class Msg:
    """A struct msghdr read from the guest, checked as copy_msghdr_from_user."""

    def __init__(self, t: Task, at: int) -> None:
        (self.name, namelen, self.iov, self.iovlen, self.control, self.controllen,
         self.flags) = MSGHDR.unpack_from(t.mm.read(at, MSGHDR.size))
        self.namelen = _signed(namelen)
        if self.namelen < 0:
            raise Errno(E.EINVAL)
        self.namelen = min(self.namelen, SOCKADDR_STORAGE)
        if self.iovlen > UIO_MAXIOV:
            raise Errno(E.EMSGSIZE)
        self.segs = read_iovecs(t, self.iov, self.iovlen)


def _send_one(t: Task, s: Socket, m: Msg, flags: int, *, whole: bool = True) -> int:
    if m.controllen > INT_MAX:
        raise Errno(E.ENOBUFS)
    files = creds = None
    if m.controllen >= 16 and m.control:
        if m.controllen > OPTMEM_MAX:
            raise Errno(E.ENOBUFS)
        files, creds = parse_control(t, s, t.mm.read(m.control, m.controllen))
    data = _send_data(t, m.segs)
    dest = t.mm.read(m.name, m.namelen) if m.name and m.namelen else None
    if whole:
        return io.send(t, s, data, dest, files, creds, flags)
    return s.sendmsg(t, memoryview(data), dest, files, creds, flags)


@syscall("sendmsg", FD, PTR, UINT, on_interrupt=io.interrupted, support="partial",
         note="no MSG_OOB (EOPNOTSUPP); SCM_RIGHTS and SCM_CREDENTIALS on AF_UNIX")
def sendmsg(t: Task, fd: int, msg: int, flags: int) -> int:
    s = sock_of(t, fd)
    return _send_one(t, s, Msg(t, msg), flags & ~MSG_CMSG_COMPAT)


def _finish_recv(t: Task, m: Msg, at: int, r: Received, flags: int) -> None:
    """Write msg_name, the control messages, msg_controllen and msg_flags."""
    if m.name:
        ulen = m.namelen
        raw = r.src or b""
        if ulen and raw:
            t.mm.write(m.name, raw[:ulen])
        t.mm.write(at + MSGHDR.offsets["msg_namelen"], len(raw).to_bytes(4, "little"))
    room = m.controllen if m.control else 0
    room = writable_run(t, m.control, min(room, INT_MAX)) if room else 0
    ctl, cflags = build_control(t, r, room, bool(flags & F.MSG_CMSG_CLOEXEC))
    if ctl:
        t.mm.write(m.control, ctl)
    t.mm.write(at + MSGHDR.offsets["msg_controllen"], len(ctl).to_bytes(8, "little"))
    t.mm.write(at + MSGHDR.offsets["msg_flags"],
               ((r.flags | cflags) & 0xFFFFFFFF).to_bytes(4, "little"))


@syscall("recvmsg", FD, PTR, UINT, on_interrupt=io.interrupted)
def recvmsg(t: Task, fd: int, msg: int, flags: int) -> int:
    s = sock_of(t, fd)
    m = Msg(t, msg)
    n, r = io.recv(t, s, m.segs, flags)
    _finish_recv(t, m, msg, r, flags)
    return n


# --- sendmmsg / recvmmsg --------------------------------------------------------------
@syscall("sendmmsg", FD, PTR, UINT, UINT, on_interrupt=io.interrupted)
def sendmmsg(t: Task, fd: int, vec: int, vlen: int, flags: int) -> int:
    s = sock_of(t, fd)
    vlen = min(vlen, UIO_MAXIOV)
    p = s.ns.begin(t, s.sndtimeo)

    def each() -> None:
        while p.done < vlen:
            at = vec + p.done * MMSGHDR.size
            n = _send_one(t, s, Msg(t, at), flags, whole=False)
            t.mm.write(at + MMSGHDR.offsets["msg_len"], n.to_bytes(4, "little"))
            p.done += 1

    return _batched(t, s, p, each)


@syscall("recvmmsg", FD, PTR, UINT, UINT, PTR, on_interrupt=io.interrupted)
def recvmmsg(t: Task, fd: int, vec: int, vlen: int, flags: int, timeout: int) -> int:
    s = sock_of(t, fd)
    vlen = min(vlen, UIO_MAXIOV)
    limit = None
    if timeout:
        sec, nsec = TIMESPEC.unpack_from(t.mm.read(timeout, TIMESPEC.size))
        if sec < 0 or not 0 <= nsec < 1_000_000_000:
            raise Errno(E.EINVAL)
        limit = sec + nsec / 1e9
    p = s.ns.begin(t, s.rcvtimeo)
    if not p.parked:  # a new call: its own timeout runs from now
        p.meta = None if limit is None else time.monotonic() + limit

    def each() -> None:
        while p.done < vlen:
            at = vec + p.done * MMSGHDR.size
            m = Msg(t, at)
            fl = flags & ~F.MSG_WAITFORONE
            if p.done and flags & F.MSG_WAITFORONE:
                fl |= F.MSG_DONTWAIT
            try:
                n, r = _recv_one(t, s, m, fl)
            except Errno as e:
                if p.done and e.errno == E.EAGAIN:
                    break
                raise
            _finish_recv(t, m, at, r, fl)
            t.mm.write(at + MMSGHDR.offsets["msg_len"], n.to_bytes(4, "little"))
            p.done += 1
            if p.meta is not None and time.monotonic() >= p.meta:
                break  # the timeout is only looked at after a datagram, as on Linux

    return _batched(t, s, p, each)


def _batched(t: Task, s: Socket, p: Any, each: Callable[[], None]) -> int:
    """Run a sendmmsg/recvmmsg loop under the namespace's batch protocol: a
    block parks the call with what it has done (or EAGAIN); an error after some
    messages returns their count, as Linux does."""
    try:
        each()
    except Blocked as b:
        s.ns.park(t, p, b, p.done or -E.EAGAIN)
        raise
    except Errno:
        s.ns.end(t, p)
        if p.done:
            return p.done
        raise
    s.ns.end(t, p)
    return p.done


def _recv_one(t: Task, s: Socket, m: Msg, flags: int) -> tuple[int, Received]:
    total = sum(n for _, n in m.segs)
    usable = writable_prefix(t, m.segs)
    if usable == 0 and total > 0:
        raise Errno(E.EFAULT)
    r = s.recvmsg(t, usable, flags)
    if r.data:
        scatter(t, m.segs, r.data)
    return r.length, r
