"""Helpers for the socket tests: addresses, and the socket calls made through
the real dispatcher with their arguments staged in guest memory."""

from __future__ import annotations

import struct

from cove.abi import flags as F
from cove.abi.structs import CMSGHDR, IOVEC, MMSGHDR, MSGHDR, cmsg_align, cmsg_len
from cove.kernel.task import Task

from .harness import SCRATCH
from .iohelp import sc

AREA = 0x20000  # the bump area for staged arguments: SCRATCH+AREA .. SCRATCH+1 MiB
_next: dict[int, int] = {}


def stage(t: Task, data: bytes = b"", size: int = 0) -> int:
    """Guest memory holding ``data`` (or ``size`` zero bytes)."""
    n = max(len(data), size, 1)
    off = _next.get(id(t), AREA)
    if off + n > (1 << 20) - 0x1000:
        off = AREA
    _next[id(t)] = (off + n + 15) & ~15
    addr = SCRATCH + off
    t.mm.write(addr, data.ljust(n, b"\0"))
    return addr


def i32(t: Task, addr: int) -> int:
    return struct.unpack("<i", t.mm.read(addr, 4))[0]


# --- addresses -------------------------------------------------------------------------
def sun(path: bytes) -> bytes:
    """sockaddr_un for a path (with its NUL) or an abstract name (leading NUL)."""
    if path.startswith(b"\0"):
        return struct.pack("<H", F.AF_UNIX) + path
    return struct.pack("<H", F.AF_UNIX) + path + b"\0"


def sin(ip: str, port: int) -> bytes:
    return struct.pack("<H", F.AF_INET) + port.to_bytes(2, "big") + bytes(
        int(x) for x in ip.split(".")) + bytes(8)


def sin6(ip: bytes, port: int) -> bytes:
    return struct.pack("<H", F.AF_INET6) + port.to_bytes(2, "big") + bytes(4) + ip + bytes(4)


LOOP6 = b"\0" * 15 + b"\1"


def port_of(raw: bytes) -> int:
    return int.from_bytes(raw[2:4], "big")


# --- calls -----------------------------------------------------------------------------
def sock(t: Task, family: int = F.AF_UNIX, stype: int = F.SOCK_STREAM, proto: int = 0) -> int:
    fd = sc(t, "socket", family, stype, proto)
    assert fd is not None and fd >= 0, fd
    return fd


def pair(t: Task, stype: int = F.SOCK_STREAM) -> tuple[int, int]:
    sv = stage(t, size=8)
    assert sc(t, "socketpair", F.AF_UNIX, stype, 0, sv) == 0
    return struct.unpack("<ii", t.mm.read(sv, 8))


def bind(t: Task, fd: int, addr: bytes) -> int | None:
    return sc(t, "bind", fd, stage(t, addr), len(addr))


def connect(t: Task, fd: int, addr: bytes) -> int | None:
    return sc(t, "connect", fd, stage(t, addr), len(addr))


def listen(t: Task, fd: int, backlog: int = 8) -> int | None:
    return sc(t, "listen", fd, backlog)


def accept(t: Task, fd: int, flags: int = 0) -> tuple[int, bytes] | int | None:
    """(new fd, peer address) or -errno, or None if it went to sleep."""
    addr, lenp = stage(t, size=128), stage(t, struct.pack("<i", 128))
    r = sc(t, "accept4", fd, addr, lenp, flags)
    if r is None or r < 0:
        return r
    return r, t.mm.read(addr, i32(t, lenp))


def name(t: Task, fd: int, call: str = "getsockname") -> bytes | int:
    addr, lenp = stage(t, size=128), stage(t, struct.pack("<i", 128))
    r = sc(t, call, fd, addr, lenp)
    assert r is not None
    return r if r < 0 else t.mm.read(addr, i32(t, lenp))


def peer(t: Task, fd: int) -> bytes | int:
    return name(t, fd, "getpeername")


def send(t: Task, fd: int, data: bytes, flags: int = 0, dest: bytes | None = None) -> int | None:
    buf = stage(t, data)
    if dest is None:
        return sc(t, "sendto", fd, buf, len(data), flags, 0, 0)
    return sc(t, "sendto", fd, buf, len(data), flags, stage(t, dest), len(dest))


def recv(t: Task, fd: int, n: int = 4096, flags: int = 0) -> bytes | int | None:
    """The bytes received, -errno, or None if the call went to sleep."""
    buf = stage(t, size=n)
    r = sc(t, "recvfrom", fd, buf, n, flags, 0, 0)
    return r if r is None or r < 0 else t.mm.read(buf, min(r, n))


def recvfrom(t: Task, fd: int, n: int = 4096, flags: int = 0) -> tuple[bytes, bytes] | int | None:
    buf, addr, lenp = stage(t, size=n), stage(t, size=128), stage(t, struct.pack("<i", 128))
    r = sc(t, "recvfrom", fd, buf, n, flags, addr, lenp)
    if r is None or r < 0:
        return r
    return t.mm.read(buf, min(r, n)), t.mm.read(addr, i32(t, lenp))


def cmsg(level: int, ctype: int, data: bytes) -> bytes:
    raw = CMSGHDR.pack(cmsg_len(len(data)), level, ctype) + data
    return raw.ljust(cmsg_align(len(raw)), b"\0")


def rights(*fds: int) -> bytes:
    return cmsg(F.SOL_SOCKET, F.SCM_RIGHTS, struct.pack(f"<{len(fds)}i", *fds))


def msghdr(t: Task, iovs: list[bytes] | list[int], control: bytes | int = b"",
           name: bytes | int | None = None) -> bytes:
    """A msghdr: data iovecs (bytes) or receive iovecs (sizes), a control
    buffer (bytes to send, or a size to receive into), a name (bytes, or a size)."""
    vec = b""
    for item in iovs:
        if isinstance(item, int):
            vec += IOVEC.pack(stage(t, size=item), item)
        else:
            vec += IOVEC.pack(stage(t, item), len(item))
    iov = stage(t, vec) if vec else 0
    if isinstance(control, int):
        ctl, clen = (stage(t, size=control), control) if control else (0, 0)
    else:
        ctl, clen = (stage(t, control), len(control)) if control else (0, 0)
    if name is None:
        nm, nlen = 0, 0
    elif isinstance(name, int):
        nm, nlen = stage(t, size=name), name
    else:
        nm, nlen = stage(t, name), len(name)
    return MSGHDR.pack(nm, nlen, iov, len(iovs), ctl, clen, 0)


def sendmsg(t: Task, fd: int, iovs: list[bytes], control: bytes = b"",
            dest: bytes | None = None, flags: int = 0) -> int | None:
    return sc(t, "sendmsg", fd, stage(t, msghdr(t, iovs, control, dest)), flags)


class Got:
    """What recvmsg gave: result, data, name, control bytes, msg_flags."""

    def __init__(self, t: Task, r: int, hdr: int) -> None:
        self.result = r
        m = MSGHDR.read(t.mm.read(hdr, MSGHDR.size))
        self.flags = m.msg_flags
        self.name = t.mm.read(m.msg_name, m.msg_namelen) if m.msg_name else b""
        self.namelen = m.msg_namelen
        self.control = t.mm.read(m.msg_control, m.msg_controllen) if m.msg_controllen else b""
        data = b""
        left = max(r, 0)
        for i in range(m.msg_iovlen):
            base, length = IOVEC.unpack_from(t.mm.read(m.msg_iov + i * IOVEC.size, IOVEC.size))
            take = min(left, length)
            data += t.mm.read(base, take) if take else b""
            left -= take
        self.data = data

    def cmsgs(self) -> list[tuple[int, int, bytes]]:
        out, off, raw = [], 0, self.control
        while off + CMSGHDR.size <= len(raw):
            clen, level, ctype = CMSGHDR.unpack_from(raw, off)
            out.append((level, ctype, raw[off + CMSGHDR.size:off + clen]))
            off += cmsg_align(clen)
        return out

    def fds(self) -> list[int]:
        out: list[int] = []
        for level, ctype, data in self.cmsgs():
            if (level, ctype) == (F.SOL_SOCKET, F.SCM_RIGHTS):
                out += struct.unpack(f"<{len(data) // 4}i", data)
        return out


def recvmsg(t: Task, fd: int, sizes: list[int] | None = None, control: int = 0,
            name: int = 0, flags: int = 0) -> Got | int | None:
    hdr = stage(t, msghdr(t, sizes or [4096], control, name or None))
    r = sc(t, "recvmsg", fd, hdr, flags)
    if r is None or r < 0:
        return r
    return Got(t, r, hdr)


def getopt(t: Task, fd: int, level: int, opt: int, size: int = 4) -> int | bytes:
    """An int option's value (size 4), the raw bytes otherwise, or -errno."""
    val, lenp = stage(t, size=max(size, 1)), stage(t, struct.pack("<i", size))
    r = sc(t, "getsockopt", fd, level, opt, val, lenp)
    assert r is not None
    if r < 0:
        return r
    raw = t.mm.read(val, i32(t, lenp))
    return struct.unpack("<i", raw)[0] if size == 4 and len(raw) == 4 else raw


def setopt(t: Task, fd: int, level: int, opt: int, value: int | bytes) -> int | None:
    raw = struct.pack("<i", value) if isinstance(value, int) else value
    return sc(t, "setsockopt", fd, level, opt, stage(t, raw), len(raw))


def events(t: Task, fd: int) -> int:
    """poll(2) revents for ``fd`` (all events asked for, no waiting)."""
    pfd = stage(t, struct.pack("<ihh", fd, 0x7FFF, 0))
    assert sc(t, "poll", pfd, 1, 0) in (0, 1)
    return struct.unpack("<ihh", t.mm.read(pfd, 8))[2] & 0xFFFF


def mmsghdrs(t: Task, msgs: list[bytes]) -> int:
    """An mmsghdr array from msghdr bytes (msg_len zero)."""
    return stage(t, b"".join(m + bytes(MMSGHDR.size - MSGHDR.size) for m in msgs))


def msg_len(t: Task, vec: int, i: int) -> int:
    return struct.unpack("<I", t.mm.read(vec + i * MMSGHDR.size + MMSGHDR.offsets["msg_len"],
                                         4))[0]
