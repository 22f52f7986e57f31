"""eventfd, eventfd2."""

from __future__ import annotations

from cove.abi import flags as F
from cove.abi.errno import E, Errno
from cove.kernel.eventfd import EventFd
from cove.kernel.syscall import INT, UINT, syscall
from cove.kernel.task import Task

EFD_FLAGS = F.EFD_SEMAPHORE | F.EFD_CLOEXEC | F.EFD_NONBLOCK


@syscall("eventfd2", UINT, INT)
def eventfd2(t: Task, initval: int, flags: int) -> int:
    if flags & ~EFD_FLAGS:
        raise Errno(E.EINVAL)
    f = EventFd(initval, flags)
    return t.files.install(f, cloexec=bool(flags & F.EFD_CLOEXEC))


@syscall("eventfd", UINT)
def eventfd(t: Task, initval: int) -> int:
    return eventfd2(t, initval, 0)
