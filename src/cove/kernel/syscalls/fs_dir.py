"""Directories and the process's place in the tree: getdents64 (and the old
getdents), getcwd, chdir, fchdir, chroot.

getdents64 packs ``struct linux_dirent64`` records; each record's ``d_off``
is the position just after it (the cookie lseek and the next call resume
from), and the file position advances by the entries actually stored.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from cove.abi.errno import E, Errno
from cove.abi.structs.fs import dirent64_reclen, pack_dirent64
from cove.fs import perm
from cove.fs.file import O_PATH
from cove.fs.node import S_IFDIR, S_IFMT
from cove.fs.perm import MAY_EXEC
from cove.kernel.syscall import FD, PATH, PTR, UINT, ULONG, syscall
from cove.kernel.syscalls.fs_iov import writable_run

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from cove.kernel.task import Task

INT_MAX = 0x7FFFFFFF
_OLD_HEADER = struct.Struct("<QQH")  # d_ino, d_off, d_reclen; then d_name, pad, d_type


def _dirent64(ino: int, off: int, dtype: int, name: bytes) -> bytes:
    buf = bytearray(dirent64_reclen(len(name)))
    pack_dirent64(buf, 0, ino, off, dtype, name)
    return bytes(buf)


def _dirent(ino: int, off: int, dtype: int, name: bytes) -> bytes:
    """The old ``struct linux_dirent``: the type hides in the record's last byte."""
    reclen = (_OLD_HEADER.size + len(name) + 2 + 7) & ~7
    rec = bytearray(reclen)
    _OLD_HEADER.pack_into(rec, 0, ino, off, reclen)
    rec[_OLD_HEADER.size:_OLD_HEADER.size + len(name)] = name
    rec[-1] = dtype
    return bytes(rec)


def _getdents(t: Task, fd: int, dirp: int, count: int,
              record: Callable[[int, int, int, bytes], bytes]) -> int:
    f = t.files.get(fd)
    if f.flags & O_PATH:
        raise Errno(E.EBADF)
    entries = f.readdir()  # ENOTDIR for anything that is not a directory
    if f.location is not None and f.location.inode.stat().nlink == 0:
        raise Errno(E.ENOENT)  # a removed directory lists nothing (IS_DEADDIR)
    room = count if count <= INT_MAX else -1  # the kernel keeps it in an int
    writable = writable_run(t, dirp, max(room, 0))
    buf = bytearray()
    pos = getattr(f, "pos", 0)
    taken = 0
    for ent in entries:
        rec = record(ent.ino, pos + taken + 1, ent.dtype,
                     ent.name.encode("utf-8", "surrogateescape"))
        if len(rec) > room - len(buf):
            if not taken:
                raise Errno(E.EINVAL)  # the buffer cannot hold even one entry
            break
        if len(buf) + len(rec) > writable:
            if not taken:
                raise Errno(E.EFAULT)
            break
        buf += rec
        taken += 1
    if buf:
        t.mm.write(dirp, buf)
    if taken:
        f.pos = pos + taken  # type: ignore[attr-defined]
    return len(buf)


@syscall("getdents64", FD, PTR, UINT)
def getdents64(t: Task, fd: int, dirp: int, count: int) -> int:
    return _getdents(t, fd, dirp, count, _dirent64)


@syscall("getdents", FD, PTR, UINT)
def getdents(t: Task, fd: int, dirp: int, count: int) -> int:
    return _getdents(t, fd, dirp, count, _dirent)


@syscall("getcwd", PTR, ULONG)
def getcwd(t: Task, buf: int, size: int) -> int:
    path = t.kernel.vfs.getcwd(t.fs).encode("utf-8", "surrogateescape") + b"\0"
    if len(path) > size:
        raise Errno(E.ERANGE)
    t.mm.write(buf, path)
    return len(path)


@syscall("chdir", PATH)
def chdir(t: Task, path: str) -> int:
    t.kernel.vfs.chdir(t.fs, None, path)
    return 0


@syscall("fchdir", FD)
def fchdir(t: Task, fd: int) -> int:
    loc = t.files.get(fd).location
    if loc is None:
        raise Errno(E.ENOTDIR)
    t.kernel.vfs.chdir_location(t.fs, loc)
    return 0


@syscall("chroot", PATH)
def chroot(t: Task, path: str) -> int:
    loc = t.kernel.vfs.resolve(t.fs, None, path)
    st = loc.inode.stat()
    if st.mode & S_IFMT != S_IFDIR:
        raise Errno(E.ENOTDIR)
    perm.check(st, t.fs.cred, MAY_EXEC)
    if not t.fs.cred.is_root:
        raise Errno(E.EPERM)  # CAP_SYS_CHROOT
    t.fs.root = loc
    return 0
