"""pipe, pipe2."""

from __future__ import annotations

from cove.abi import flags as F
from cove.abi.errno import E, Errno
from cove.kernel.fdtable import install_pair
from cove.kernel.pipe import new_pipe
from cove.kernel.syscall import INT, PTR, syscall
from cove.kernel.task import Task

O_NOTIFICATION_PIPE = F.O_EXCL  # watch_queue pipes; cove has no watch queues
PIPE2_FLAGS = F.O_CLOEXEC | F.O_NONBLOCK | F.O_DIRECT


@syscall("pipe2", PTR, INT)
def pipe2(t: Task, fds: int, flags: int) -> int:
    if flags & ~(PIPE2_FLAGS | O_NOTIFICATION_PIPE):
        raise Errno(E.EINVAL)
    if flags & O_NOTIFICATION_PIPE:
        raise Errno(E.ENOPKG)  # what Linux built without CONFIG_WATCH_QUEUE says
    creds = t.proc.creds
    rd, wr = new_pipe(flags, creds.fsuid, creds.fsgid, t.kernel)
    install_pair(t, rd, wr, cloexec=bool(flags & F.O_CLOEXEC), addr=fds)
    return 0


@syscall("pipe", PTR)
def pipe(t: Task, fds: int) -> int:
    return pipe2(t, fds, 0)
