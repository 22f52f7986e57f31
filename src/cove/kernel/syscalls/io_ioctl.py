"""ioctl: the generic requests every fd answers, then the file's own ``ioctl``.

As fs/ioctl.c's do_vfs_ioctl: FIOCLEX, FIONCLEX, FIONBIO, FIOASYNC for any
fd, FIOQSIZE / FIGETBSZ / FIONREAD for files of a filesystem, and everything
else to ``File.ioctl(t, cmd, arg)`` (ENOTTY for files without one).
"""

from __future__ import annotations

import struct

from cove.abi import flags as F
from cove.abi.errno import E, Errno
from cove.fs.file import O_ASYNC, O_NONBLOCK, O_PATH, InodeFile
from cove.fs.node import S_IFDIR, S_IFLNK, S_IFMT, S_IFREG
from cove.kernel.syscall import FD, UINT, ULONG, syscall
from cove.kernel.task import Task

FIGETBSZ = 2  # _IO(0x00, 2)
_INT = struct.Struct("<i")
_LOFF = struct.Struct("<q")


def _get_int(t: Task, arg: int) -> int:
    return _INT.unpack(t.mm.read(arg, 4))[0]


@syscall("ioctl", FD, UINT, ULONG)
def ioctl(t: Task, fd: int, cmd: int, arg: int) -> int:
    f = t.files.get(fd)
    if f.flags & O_PATH:
        raise Errno(E.EBADF)
    if cmd == F.FIOCLEX:
        t.files.cloexec.add(fd)
        return 0
    if cmd == F.FIONCLEX:
        t.files.cloexec.discard(fd)
        return 0
    if cmd == F.FIONBIO:
        on = _get_int(t, arg)
        f.flags = f.flags | O_NONBLOCK if on else f.flags & ~O_NONBLOCK
        return 0
    if cmd == F.FIOASYNC:
        # Recorded like F_SETFL O_ASYNC; cove does not deliver SIGIO.
        on = _get_int(t, arg)
        if bool(on) != bool(f.flags & O_ASYNC) and not getattr(f, "fasync", False):
            raise Errno(E.ENOTTY)  # only pipes, terminals and sockets have fasync
        f.flags = f.flags | O_ASYNC if on else f.flags & ~O_ASYNC
        return 0
    if isinstance(f, InodeFile):
        st = f.inode.stat()
        kind = st.mode & S_IFMT
        if cmd == F.FIOQSIZE:
            if kind not in (S_IFDIR, S_IFREG, S_IFLNK):
                raise Errno(E.ENOTTY)
            t.mm.write(arg, _LOFF.pack(st.blocks * 512))
            return 0
        if cmd == FIGETBSZ:
            t.mm.write(arg, _INT.pack(st.blksize))
            return 0
        if cmd == F.FIONREAD and kind == S_IFREG:
            # i_size - f_pos stored into an int, negative past the end as on Linux.
            t.mm.write(arg, ((st.size - f.pos) & 0xFFFFFFFF).to_bytes(4, "little"))
            return 0
    handler = getattr(f, "ioctl", None)
    if handler is None:
        raise Errno(E.ENOTTY)
    return int(handler(t, cmd, arg))
