"""Namespace changes: mkdir(at), mknod(at), rmdir, unlink(at), rename(at/at2),
link(at), symlink(at), readlink(at).

The rules and errnos are the VFS's; this module turns arguments into VFS
calls, checking flag words before any path is read, as Linux does.
"""

from __future__ import annotations

from cove.abi import flags as F
from cove.abi.errno import E, Errno
from cove.fs.mount import Location
from cove.fs.node import S_IFLNK, S_IFMT, makedev
from cove.kernel.syscall import FD, INT, PATH, PTR, UINT, syscall
from cove.kernel.syscalls.fs_at import AT_FDCWD, fd_location, read_path, start_dir

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from cove.kernel.task import Task


def _at(t: Task, dirfd: int, path: str) -> Location | None:
    return start_dir(t, dirfd, path)


# --- creation ----------------------------------------------------------------------------
@syscall("mkdir", PATH, UINT)
def mkdir(t: Task, path: str, mode: int) -> int:
    t.kernel.vfs.mkdir(t.fs, None, path, mode)
    return 0


@syscall("mkdirat", FD, PATH, UINT)
def mkdirat(t: Task, dirfd: int, path: str, mode: int) -> int:
    t.kernel.vfs.mkdir(t.fs, _at(t, dirfd, path), path, mode)
    return 0


def _decode_dev(dev: int) -> int:
    """``new_decode_dev`` of the 32-bit dev argument, re-encoded as cove's dev_t."""
    major = (dev & 0xFFF00) >> 8
    minor = (dev & 0xFF) | ((dev >> 12) & 0xFFF00)
    return makedev(major, minor)


@syscall("mknod", PATH, UINT, UINT)
def mknod(t: Task, path: str, mode: int, dev: int) -> int:
    t.kernel.vfs.mknod(t.fs, None, path, mode & 0o177777, _decode_dev(dev))
    return 0


@syscall("mknodat", FD, PATH, UINT, UINT)
def mknodat(t: Task, dirfd: int, path: str, mode: int, dev: int) -> int:
    t.kernel.vfs.mknod(t.fs, _at(t, dirfd, path), path, mode & 0o177777, _decode_dev(dev))
    return 0


@syscall("symlink", PATH, PATH)
def symlink(t: Task, target: str, path: str) -> int:
    t.kernel.vfs.symlink(t.fs, target, None, path)
    return 0


@syscall("symlinkat", PATH, FD, PATH)
def symlinkat(t: Task, target: str, dirfd: int, path: str) -> int:
    t.kernel.vfs.symlink(t.fs, target, _at(t, dirfd, path), path)
    return 0


@syscall("link", PATH, PATH)
def link(t: Task, old: str, new: str) -> int:
    t.kernel.vfs.link(t.fs, None, old, None, new)
    return 0


@syscall("linkat", FD, PTR, FD, PTR, INT)
def linkat(t: Task, olddirfd: int, uold: int, newdirfd: int, unew: int, flags: int) -> int:
    if flags & ~(F.AT_SYMLINK_FOLLOW | F.AT_EMPTY_PATH):
        raise Errno(E.EINVAL)
    old = read_path(t, uold)
    new = read_path(t, unew)
    vfs = t.kernel.vfs
    if not old and flags & F.AT_EMPTY_PATH:
        # Linking an fd by itself needs CAP_DAC_READ_SEARCH, or (Linux 6.10)
        # a file opened with the caller's own credentials; otherwise the empty
        # path is simply not found.
        f = t.files.get(olddirfd) if olddirfd != AT_FDCWD else None
        if not t.fs.cred.is_root and (
                f is None or getattr(f, "opened_by", None) != t.fs.cred):
            raise Errno(E.ENOENT)
        loc = fd_location(t, olddirfd)
        if loc.inode.stat().nlink == 0:
            if not getattr(f, "tmpfile_linkable", False):
                raise Errno(E.ENOENT)  # a deleted file is not brought back
        vfs.link_location(t.fs, loc, _at(t, newdirfd, new), new)
        return 0
    vfs.link(t.fs, _at(t, olddirfd, old), old, _at(t, newdirfd, new), new,
             follow=bool(flags & F.AT_SYMLINK_FOLLOW))
    return 0


# --- removal and renaming -----------------------------------------------------------------
@syscall("rmdir", PATH)
def rmdir(t: Task, path: str) -> int:
    t.kernel.vfs.rmdir(t.fs, None, path)
    return 0


@syscall("unlink", PATH)
def unlink(t: Task, path: str) -> int:
    t.kernel.vfs.unlink(t.fs, None, path)
    return 0


@syscall("unlinkat", FD, PTR, INT)
def unlinkat(t: Task, dirfd: int, upath: int, flags: int) -> int:
    if flags & ~F.AT_REMOVEDIR:
        raise Errno(E.EINVAL)
    path = read_path(t, upath)
    if flags & F.AT_REMOVEDIR:
        t.kernel.vfs.rmdir(t.fs, _at(t, dirfd, path), path)
    else:
        t.kernel.vfs.unlink(t.fs, _at(t, dirfd, path), path)
    return 0


@syscall("rename", PATH, PATH)
def rename(t: Task, old: str, new: str) -> int:
    t.kernel.vfs.rename(t.fs, None, old, None, new)
    return 0


@syscall("renameat", FD, PATH, FD, PATH)
def renameat(t: Task, olddirfd: int, old: str, newdirfd: int, new: str) -> int:
    t.kernel.vfs.rename(t.fs, _at(t, olddirfd, old), old, _at(t, newdirfd, new), new)
    return 0


@syscall("renameat2", FD, PTR, FD, PTR, UINT)
def renameat2(t: Task, olddirfd: int, uold: int, newdirfd: int, unew: int, flags: int) -> int:
    if flags & ~(F.RENAME_NOREPLACE | F.RENAME_EXCHANGE | F.RENAME_WHITEOUT) or (
            flags & F.RENAME_EXCHANGE and flags & (F.RENAME_NOREPLACE | F.RENAME_WHITEOUT)):
        raise Errno(E.EINVAL)
    old = read_path(t, uold)
    new = read_path(t, unew)
    t.kernel.vfs.rename(t.fs, _at(t, olddirfd, old), old, _at(t, newdirfd, new), new, flags)
    return 0


# --- readlink ------------------------------------------------------------------------------
def do_readlink(t: Task, dirfd: int, upath: int, buf: int, bufsiz: int) -> int:
    if bufsiz <= 0:
        raise Errno(E.EINVAL)
    path = read_path(t, upath)
    if not path:
        # readlinkat(fd, "") reads the symlink an O_PATH fd refers to; any
        # other empty-path target is "not found", as Linux answers.
        loc = None if dirfd == AT_FDCWD else t.files.get(dirfd).location
        if loc is None or loc.inode.mode & S_IFMT != S_IFLNK:
            raise Errno(E.ENOENT)
        target = loc.inode.readlink()
    else:
        target = t.kernel.vfs.readlink(t.fs, _at(t, dirfd, path), path)
    data = target.encode("utf-8", "surrogateescape")[:bufsiz]  # no NUL added
    t.mm.write(buf, data)
    return len(data)


@syscall("readlink", PTR, PTR, INT)
def readlink(t: Task, path: int, buf: int, bufsiz: int) -> int:
    return do_readlink(t, AT_FDCWD, path, buf, bufsiz)


@syscall("readlinkat", FD, PTR, PTR, INT)
def readlinkat(t: Task, dirfd: int, path: int, buf: int, bufsiz: int) -> int:
    return do_readlink(t, dirfd, path, buf, bufsiz)
