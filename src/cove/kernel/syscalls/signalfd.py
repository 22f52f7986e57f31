"""signalfd, signalfd4."""

from __future__ import annotations

import struct

from cove.abi import flags as F
from cove.abi.errno import E, Errno
from cove.kernel.signalfd import SignalFile
from cove.kernel.signals import UNBLOCKABLE
from cove.kernel.syscall import FD, INT, PTR, ULONG, syscall

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from cove.kernel.task import Task

SFD_FLAGS = F.SFD_CLOEXEC | F.SFD_NONBLOCK
_U64 = struct.Struct("<Q")


@syscall("signalfd4", FD, PTR, ULONG, INT)
def signalfd4(t: Task, fd: int, umask: int, sizemask: int, flags: int) -> int:
    if sizemask != F.KERNEL_SIGSET_SIZE:
        raise Errno(E.EINVAL)
    mask = _U64.unpack(t.mm.read(umask, 8))[0] & ~UNBLOCKABLE
    if flags & ~SFD_FLAGS:
        raise Errno(E.EINVAL)
    if fd == -1:
        f = SignalFile(t.kernel, t, mask, flags)
        return t.files.install(f, cloexec=bool(flags & F.SFD_CLOEXEC))
    existing = t.files.get(fd)
    if not isinstance(existing, SignalFile):
        raise Errno(E.EINVAL)
    existing.mask = mask
    from cove.kernel import signals

    signals.arrivals(t.proc).notify()  # readers re-check against the new mask
    return fd


@syscall("signalfd", FD, PTR, ULONG)
def signalfd(t: Task, fd: int, umask: int, sizemask: int) -> int:
    return signalfd4(t, fd, umask, sizemask, 0)
