"""pipe, pipe2."""

from __future__ import annotations

import struct

from cove.abi import flags as F
from cove.abi.errno import E, Errno
from cove.kernel.pipe import new_pipe
from cove.kernel.syscall import INT, PTR, syscall
from cove.kernel.task import Task

O_NOTIFICATION_PIPE = F.O_EXCL  # watch_queue pipes; cove has no watch queues
PIPE2_FLAGS = F.O_CLOEXEC | F.O_NONBLOCK | F.O_DIRECT
_FDS = struct.Struct("<ii")


@syscall("pipe2", PTR, INT)
def pipe2(t: Task, fds: int, flags: int) -> int:
    if flags & ~(PIPE2_FLAGS | O_NOTIFICATION_PIPE):
        raise Errno(E.EINVAL)
    if flags & O_NOTIFICATION_PIPE:
        raise Errno(E.ENOPKG)  # what Linux built without CONFIG_WATCH_QUEUE says
    creds = t.proc.creds
    rd, wr = new_pipe(flags, creds.fsuid, creds.fsgid)
    cloexec = bool(flags & F.O_CLOEXEC)
    files = t.files
    # Both fds or neither: install, then undo if the second fd or the copy-out fails.
    rfd = files.install(rd, cloexec=cloexec)
    try:
        wfd = files.install(wr, cloexec=cloexec)
    except Errno:
        files.close(rfd)
        wr.release()
        raise
    try:
        t.mm.write(fds, _FDS.pack(rfd, wfd))
    except Errno:
        files.close(rfd)
        files.close(wfd)
        raise
    return 0


@syscall("pipe", PTR)
def pipe(t: Task, fds: int) -> int:
    return pipe2(t, fds, 0)
