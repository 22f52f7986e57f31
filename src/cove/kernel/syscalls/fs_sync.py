"""sync, syncfs, fsync, fdatasync; and the handle calls cove leaves out.

cove's writable filesystems live in memory and its host views are
read-only, so there is nothing buffered to push anywhere: sync succeeds at
once, and fsync asks the File (whose ``sync`` flushes what a backing store
may hold). Files with no notion of syncing (pipes, sockets, character
devices: they keep the base ``File.sync``) are EINVAL, as on Linux.
"""

from __future__ import annotations

from cove.abi.errno import E, Errno
from cove.fs.file import O_PATH, File
from cove.kernel.syscall import FD, enosys, syscall

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from cove.kernel.task import Task


def _fsync(t: Task, fd: int) -> int:
    f = t.files.get(fd)
    if f.flags & O_PATH:
        raise Errno(E.EBADF)
    if type(f).sync is File.sync:
        raise Errno(E.EINVAL)
    f.sync()
    return 0


@syscall("sync")
def sync(t: Task) -> int:
    return 0


@syscall("syncfs", FD)
def syncfs(t: Task, fd: int) -> int:
    f = t.files.get(fd)
    if f.flags & O_PATH:
        raise Errno(E.EBADF)
    return 0


@syscall("fsync", FD)
def fsync(t: Task, fd: int) -> int:
    return _fsync(t, fd)


@syscall("fdatasync", FD)
def fdatasync(t: Task, fd: int) -> int:
    return _fsync(t, fd)


enosys("name_to_handle_at", "open_by_handle_at",
       note="file handles would name host inodes; cove has none to give")
