"""What ``/proc`` shows of open files: fd link names, fdinfo, link modes.

Paths come from the VFS (``VFS.file_path``: the directory and name a file was
opened by, `` (deleted)`` once it has no links). Objects without a path name
themselves through ``proc_name()`` (pipes ``pipe:[N]``, sockets
``socket:[N]``, ``anon_inode:[eventfd]``, memfds ``/memfd:name (deleted)``).
"""

from __future__ import annotations

from cove.abi.errno import Errno
from cove.abi.flags import O_CLOEXEC
from cove.fs.file import File

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from cove.fs.vfs import VFS, PathContext

DELETED = " (deleted)"


def file_name(vfs: VFS, ctx: PathContext, f: File) -> str:
    """readlink of ``/proc/<pid>/fd/<n>`` for ``f``, with paths seen from ``ctx.root``."""
    describe = getattr(f, "proc_name", None)
    # A name of its own (pipe, memfd, socket), unless it was opened by a path
    # (a FIFO shows its path, as on Linux).
    if callable(describe) and getattr(f, "name_hint", None) is None:
        return str(describe())
    loc = f.location
    if loc is None:
        return f"anon_inode:[{type(f).__name__.lower()}]"
    try:
        return vfs.file_path(ctx, f)
    except Errno:
        pass
    # Opened without a name (O_TMPFILE): Linux shows "/dir/#ino (deleted)".
    try:
        ino = loc.inode.stat().ino
    except Errno:
        ino = 0
    return f"/#{ino}{DELETED}"


def link_mode(f: File) -> int:
    """The permission bits of an fd link (Linux: r-x for reading, -wx for writing)."""
    mode = 0
    if f.readable:
        mode |= 0o500
    if f.writable:
        mode |= 0o300
    return mode


def fdinfo(f: File, cloexec: bool) -> str:
    """``/proc/<pid>/fdinfo/<n>``: position, flags in octal, mount id, inode."""
    flags = f.flags | (O_CLOEXEC if cloexec else 0)
    loc = f.location
    mnt_id = loc.mount.id if loc is not None else 0
    try:
        ino = f.stat().ino
    except Errno:
        ino = 0
    pos = getattr(f, "pos", 0)
    out = f"pos:\t{pos if isinstance(pos, int) else 0}\nflags:\t0{flags:o}\n"
    out += f"mnt_id:\t{mnt_id}\nino:\t{ino}\n"
    from cove.kernel.eventfd import EventFd

    if isinstance(f, EventFd):
        out += f"eventfd-count: {f.count:16x}\n"
    return out
