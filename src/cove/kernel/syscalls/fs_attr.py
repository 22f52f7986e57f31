"""Attribute changes: chmod family, chown family, truncate, ftruncate,
fallocate, umask, utimensat/utimes/utime/futimesat.

The f*() forms take the fd as ``fdget`` does (an O_PATH fd is EBADF); the
*at() forms with AT_EMPTY_PATH accept O_PATH fds, as Linux.
"""

from __future__ import annotations

from cove.abi import flags as F
from cove.abi.errno import E, Errno
from cove.abi.structs.clock import TIMESPEC, TIMEVAL
from cove.fs.file import O_PATH, File, InodeFile
from cove.fs.mount import Location
from cove.fs.node import S_IFDIR, S_IFIFO, S_IFMT, S_IFREG, SetAttr, now_ns
from cove.kernel.syscall import FD, INT, LONG, PATH, PTR, UINT, syscall
from cove.kernel.syscalls.fs_at import (
    AT_FDCWD,
    fd_location,
    read_path,
    resolve_at,
    start_dir,
)
from cove.kernel.syscalls.fs_iov import check_new_size, fsize_limit
from cove.kernel.syscalls.fs_memfd import check_seals_chmod, check_seals_resize, check_seals_write

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from cove.kernel.task import Task

S_IALLUGO = 0o7777
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2
FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
FALLOC_FL_NO_HIDE_STALE = 0x04
FALLOC_FL_COLLAPSE_RANGE = 0x08
FALLOC_FL_ZERO_RANGE = 0x10
FALLOC_FL_INSERT_RANGE = 0x20
FALLOC_FL_UNSHARE_RANGE = 0x40
FALLOC_FL_SUPPORTED_MASK = 0x7F
MAX_FILE_SIZE = (1 << 63) - 1
ZERO_CHUNK = 1 << 20


def _fd_plain(t: Task, fd: int) -> File:
    """``fdget``: O_PATH descriptors do not count."""
    f = t.files.get(fd)
    if f.flags & O_PATH:
        raise Errno(E.EBADF)
    return f


def _fd_loc(t: Task, fd: int) -> tuple[File, Location]:
    f = _fd_plain(t, fd)
    if f.location is None:
        raise Errno(E.EBADF)  # pipes and sockets: see fs_at.fd_location
    return f, f.location


# --- chmod -----------------------------------------------------------------------------
@syscall("chmod", PATH, UINT)
def chmod(t: Task, path: str, mode: int) -> int:
    t.kernel.vfs.chmod(t.fs, None, path, mode & S_IALLUGO)
    return 0


@syscall("fchmod", FD, UINT, support="partial",
         note="pipes and sockets: EBADF (cove keeps no attributes for them)")
def fchmod(t: Task, fd: int, mode: int) -> int:
    f, loc = _fd_loc(t, fd)
    check_seals_chmod(f, mode)
    t.kernel.vfs.chmod_location(t.fs, loc, mode & S_IALLUGO)
    return 0


def do_fchmodat(t: Task, dirfd: int, upath: int, mode: int, flags: int) -> int:
    if flags & ~(F.AT_SYMLINK_NOFOLLOW | F.AT_EMPTY_PATH):
        raise Errno(E.EINVAL)
    path = read_path(t, upath)
    loc = resolve_at(t, dirfd, path, flags, follow=not flags & F.AT_SYMLINK_NOFOLLOW)
    if not path and flags & F.AT_EMPTY_PATH and dirfd != AT_FDCWD:
        check_seals_chmod(t.files.get(dirfd), mode)
    t.kernel.vfs.chmod_location(t.fs, loc, mode & S_IALLUGO)
    return 0


@syscall("fchmodat", FD, PTR, UINT)
def fchmodat(t: Task, dirfd: int, path: int, mode: int) -> int:
    return do_fchmodat(t, dirfd, path, mode, 0)


@syscall("fchmodat2", FD, PTR, UINT, UINT)
def fchmodat2(t: Task, dirfd: int, path: int, mode: int, flags: int) -> int:
    return do_fchmodat(t, dirfd, path, mode, flags)


# --- chown -----------------------------------------------------------------------------
@syscall("chown", PATH, UINT, UINT)
def chown(t: Task, path: str, uid: int, gid: int) -> int:
    t.kernel.vfs.chown(t.fs, None, path, uid, gid)
    return 0


@syscall("lchown", PATH, UINT, UINT)
def lchown(t: Task, path: str, uid: int, gid: int) -> int:
    t.kernel.vfs.chown(t.fs, None, path, uid, gid, follow=False)
    return 0


@syscall("fchown", FD, UINT, UINT, support="partial",
         note="pipes and sockets: EBADF (cove keeps no attributes for them)")
def fchown(t: Task, fd: int, uid: int, gid: int) -> int:
    _, loc = _fd_loc(t, fd)
    t.kernel.vfs.chown_location(t.fs, loc, uid, gid)
    return 0


@syscall("fchownat", FD, PTR, UINT, UINT, INT)
def fchownat(t: Task, dirfd: int, upath: int, uid: int, gid: int, flags: int) -> int:
    if flags & ~(F.AT_SYMLINK_NOFOLLOW | F.AT_EMPTY_PATH):
        raise Errno(E.EINVAL)
    path = read_path(t, upath)
    loc = resolve_at(t, dirfd, path, flags, follow=not flags & F.AT_SYMLINK_NOFOLLOW)
    t.kernel.vfs.chown_location(t.fs, loc, uid, gid)
    return 0


# --- size ------------------------------------------------------------------------------
@syscall("truncate", PATH, LONG)
def truncate(t: Task, path: str, length: int) -> int:
    if length > fsize_limit(t):
        # RLIMIT_FSIZE only stops growth: look at the size before truncating.
        st = t.kernel.vfs.stat(t.fs, None, path)
        if st.mode & S_IFMT == S_IFREG and st.size < length:
            check_new_size(t, length)
    t.kernel.vfs.truncate(t.fs, None, path, length)
    return 0


@syscall("ftruncate", FD, LONG)
def ftruncate(t: Task, fd: int, length: int) -> int:
    if length < 0:
        raise Errno(E.EINVAL)
    f = _fd_plain(t, fd)
    if isinstance(f, InodeFile) and f.writable and f.inode.mode & S_IFMT == S_IFREG:
        check_seals_resize(f, length)
        if length > f.inode.stat().size:
            check_new_size(t, length)
    f.truncate(length)
    return 0


@syscall("fallocate", FD, INT, LONG, LONG, support="partial",
         note="tmpfs modes only: allocate, KEEP_SIZE, PUNCH_HOLE")
def fallocate(t: Task, fd: int, mode: int, offset: int, length: int) -> int:
    f = _fd_plain(t, fd)
    if offset < 0 or length <= 0:
        raise Errno(E.EINVAL)
    if mode & ~FALLOC_FL_SUPPORTED_MASK:
        raise Errno(E.EOPNOTSUPP)
    if mode & FALLOC_FL_PUNCH_HOLE and not mode & FALLOC_FL_KEEP_SIZE:
        raise Errno(E.EOPNOTSUPP)
    if not f.writable:
        raise Errno(E.EBADF)
    ftype = f.stat().mode & S_IFMT
    if ftype == S_IFIFO:
        raise Errno(E.ESPIPE)
    if ftype == S_IFDIR:
        raise Errno(E.EISDIR)
    if ftype != S_IFREG:
        raise Errno(E.ENODEV)
    end = offset + length
    if end > MAX_FILE_SIZE:
        raise Errno(E.EFBIG)
    if not isinstance(f, InodeFile) or mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE):
        raise Errno(E.EOPNOTSUPP)  # what tmpfs supports: allocate, keep size, punch
    inode = f.inode
    size = inode.stat().size
    if mode & FALLOC_FL_PUNCH_HOLE:
        check_seals_write(f, offset, min(end, size) - offset)
        # No holes in memfs: a punched range reads back as zeros, as it must.
        pos = offset
        while pos < min(end, size):
            n = min(ZERO_CHUNK, min(end, size) - pos)
            inode.write(pos, bytes(n))
            pos += n
        return 0
    if mode & FALLOC_FL_KEEP_SIZE or end <= size:
        return 0  # nothing to reserve in memory-backed filesystems
    check_seals_resize(f, end)
    check_new_size(t, end)
    now = now_ns()
    inode.setattr(SetAttr(size=end, mtime_ns=now, ctime_ns=now))
    return 0


@syscall("umask", UINT)
def umask(t: Task, mask: int) -> int:
    old = t.fs.umask
    t.fs.umask = mask & 0o777
    return old


# --- times -----------------------------------------------------------------------------
Times = tuple[tuple[int, int], tuple[int, int]] | None


def _read_timespecs(t: Task, addr: int) -> Times:
    if addr == 0:
        return None
    raw = t.mm.read(addr, 2 * TIMESPEC.size)
    a = TIMESPEC.unpack_from(raw, 0)
    m = TIMESPEC.unpack_from(raw, TIMESPEC.size)
    return (a[0], a[1]), (m[0], m[1])


def _read_timevals(t: Task, addr: int) -> Times:
    if addr == 0:
        return None
    raw = t.mm.read(addr, 2 * TIMEVAL.size)
    out = []
    for i in range(2):
        sec, usec = TIMEVAL.unpack_from(raw, i * TIMEVAL.size)
        if not 0 <= usec < 1_000_000:
            raise Errno(E.EINVAL)
        out.append((sec, usec * 1000))
    return out[0], out[1]


def do_utimes(t: Task, dirfd: int, upath: int, times: Times, flags: int) -> int:
    """``do_utimes``: a NULL path with a real dirfd changes the fd's file."""
    if times is not None and times[0][1] == UTIME_OMIT and times[1][1] == UTIME_OMIT:
        return 0  # Linux does not even look at the path
    if upath == 0 and dirfd != AT_FDCWD:
        if flags:
            raise Errno(E.EINVAL)
        _, loc = _fd_loc(t, dirfd)
    else:
        if flags & ~(F.AT_SYMLINK_NOFOLLOW | F.AT_EMPTY_PATH):
            raise Errno(E.EINVAL)
        path = read_path(t, upath)
        if not path and flags & F.AT_EMPTY_PATH:
            loc = fd_location(t, dirfd)
        else:
            loc = t.kernel.vfs.resolve(t.fs, start_dir(t, dirfd, path), path,
                                       follow=not flags & F.AT_SYMLINK_NOFOLLOW)
    atime, mtime = times if times is not None else (None, None)
    t.kernel.vfs.utimens(t.fs, loc, atime, mtime)
    return 0


@syscall("utimensat", FD, PTR, PTR, INT)
def utimensat(t: Task, dirfd: int, upath: int, utimes_: int, flags: int) -> int:
    return do_utimes(t, dirfd, upath, _read_timespecs(t, utimes_), flags)


@syscall("futimesat", FD, PTR, PTR)
def futimesat(t: Task, dirfd: int, upath: int, tvp: int) -> int:
    return do_utimes(t, dirfd, upath, _read_timevals(t, tvp), 0)


@syscall("utimes", PTR, PTR)
def utimes(t: Task, upath: int, tvp: int) -> int:
    return do_utimes(t, AT_FDCWD, upath, _read_timevals(t, tvp), 0)


@syscall("utime", PTR, PTR)
def utime(t: Task, upath: int, buf: int) -> int:
    times: Times = None
    if buf:
        raw = t.mm.read(buf, 16)
        actime = int.from_bytes(raw[0:8], "little", signed=True)
        modtime = int.from_bytes(raw[8:16], "little", signed=True)
        times = (actime, 0), (modtime, 0)
    return do_utimes(t, AT_FDCWD, upath, times, 0)
