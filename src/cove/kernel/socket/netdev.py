"""Socket ioctls: queue sizes, and the one network device the sandbox has.

FIONREAD/SIOCINQ and SIOCOUTQ ask the socket; SIOCGIF* describe ``lo``
(index 1, 127.0.0.1/8, MTU 65536, up, loopback, running), which is what
if_nametoindex, getifaddrs-less interface probing and ``ip``-free programs
look for. Any other interface is ENODEV; other requests are ENOTTY.
"""

from __future__ import annotations

import struct

from cove.abi import flags as F
from cove.abi.errno import E, Errno
from cove.abi.structs.net import SOCKADDR_IN

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from cove.kernel.socket.base import Socket
    from cove.kernel.task import Task

IFREQ_SIZE = 40  # struct ifreq: ifr_name[16] + a 24-byte union
IFCONF = struct.Struct("<i4xQ")  # struct ifconf: ifc_len, ifc_buf
LO_NAME = b"lo"
LO_INDEX = 1
LO_MTU = 65536
LO_FLAGS = F.IFF_UP | F.IFF_LOOPBACK | F.IFF_RUNNING
ARPHRD_LOOPBACK = 772
_INT = struct.Struct("<i")


def _inet(addr: bytes) -> bytes:
    return SOCKADDR_IN.pack(F.AF_INET, b"\0\0", addr)


def _ifreq(value: bytes) -> bytes:
    return LO_NAME.ljust(F.IFNAMSIZ, b"\0") + value.ljust(IFREQ_SIZE - F.IFNAMSIZ, b"\0")


def _lo_value(cmd: int) -> bytes | None:
    """What SIOCGIF* ``cmd`` reports for lo, or None if it is not one of them."""
    return {
        F.SIOCGIFINDEX: _INT.pack(LO_INDEX),
        F.SIOCGIFFLAGS: struct.pack("<h", LO_FLAGS),
        F.SIOCGIFADDR: _inet(b"\x7f\0\0\1"),
        F.SIOCGIFNETMASK: _inet(b"\xff\0\0\0"),
        F.SIOCGIFMTU: _INT.pack(LO_MTU),
        F.SIOCGIFHWADDR: struct.pack("<H", ARPHRD_LOOPBACK),
        F.SIOCGIFMETRIC: _INT.pack(0),
        F.SIOCGIFTXQLEN: _INT.pack(1000),
    }.get(cmd)


def socket_ioctl(sock: Socket, t: Task, cmd: int, arg: int) -> int:
    if cmd == F.SIOCINQ:
        value = sock.inq()
    elif cmd == F.SIOCOUTQ:
        value = sock.outq()
    elif cmd == F.SIOCOUTQNSD and sock.protocol == F.IPPROTO_TCP:
        value = sock.outq()
    elif cmd == F.SIOCATMARK:
        value = 0  # no urgent data is ever queued
    elif cmd in (F.SIOCGSTAMP_OLD, F.SIOCGSTAMPNS_OLD):
        raise Errno(E.ENOENT)  # no timestamp recorded
    elif cmd == F.SIOCGIFCONF:
        return _ifconf(t, arg)
    elif cmd == F.SIOCGIFNAME:
        index = _INT.unpack(t.mm.read(arg + F.IFNAMSIZ, 4))[0]
        if index != LO_INDEX:
            raise Errno(E.ENODEV)
        t.mm.write(arg, LO_NAME.ljust(F.IFNAMSIZ, b"\0"))
        return 0
    else:
        value_of = _lo_value(cmd)
        if value_of is None:
            raise Errno(E.ENOTTY)
        name = t.mm.read(arg, F.IFNAMSIZ).split(b"\0", 1)[0]
        if name != LO_NAME:
            raise Errno(E.ENODEV)
        t.mm.write(arg, _ifreq(value_of))
        return 0
    t.mm.write(arg, _INT.pack(min(value, 0x7FFFFFFF)))
    return 0


def _ifconf(t: Task, arg: int) -> int:
    """SIOCGIFCONF: lo's IPv4 address, or the room it needs when ifc_buf is NULL."""
    length, buf = IFCONF.unpack(t.mm.read(arg, IFCONF.size))
    if buf == 0:
        t.mm.write(arg, _INT.pack(IFREQ_SIZE))
        return 0
    used = 0
    if length >= IFREQ_SIZE:
        t.mm.write(buf, _ifreq(_inet(b"\x7f\0\0\1")))
        used = IFREQ_SIZE
    t.mm.write(arg, _INT.pack(used))
    return 0
