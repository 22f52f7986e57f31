"""read/write and their vectored and positioned forms, and lseek.

Every form funnels into ``fs_iov.read_into``/``write_from`` (one place for
EFAULT, MAX_RW_COUNT and RLIMIT_FSIZE). Order of checks as Linux: a negative
offset of pread/pwrite is EINVAL before the fd is looked at; then EBADF (fd
or access mode); then the iovec array; a zero total moves nothing; then the
RWF flags of preadv2/pwritev2 (HIPRI, DSYNC, SYNC, NOWAIT, APPEND,
NOAPPEND; ATOMIC and DONTCACHE are EOPNOTSUPP, as on a filesystem without
them).
"""

from __future__ import annotations

from collections.abc import Callable

from cove.abi.errno import E, Errno
from cove.fs.file import O_APPEND, O_NONBLOCK, File
from cove.kernel.syscall import FD, INT, LONG, PTR, UINT, ULONG, syscall
from cove.kernel.syscalls.fs_iov import (
    MAX_RW_COUNT,
    Segs,
    read_into,
    read_iovecs,
    user_range_ok,
    write_from,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from cove.kernel.task import Task

RWF_HIPRI = 0x01
RWF_DSYNC = 0x02
RWF_SYNC = 0x04
RWF_NOWAIT = 0x08
RWF_APPEND = 0x10
RWF_NOAPPEND = 0x20
RWF_ATOMIC = 0x40  # needs O_DIRECT atomic-write support: none in cove's filesystems
RWF_DONTCACHE = 0x80  # needs a page cache to bypass: none in cove's filesystems
RWF_SUPPORTED = RWF_HIPRI | RWF_DSYNC | RWF_SYNC | RWF_NOWAIT | RWF_APPEND | RWF_NOAPPEND
RWF_ALL = RWF_SUPPORTED | RWF_ATOMIC | RWF_DONTCACHE
SEEK_MAX = 4


def _buffer(addr: int, count: int) -> Segs:
    count = min(count, MAX_RW_COUNT)
    if not user_range_ok(addr, count):
        raise Errno(E.EFAULT)
    return [(addr, count)]


def _readable(t: Task, fd: int) -> File:
    f = t.files.get(fd)
    f.check_readable()
    return f


def _writable(t: Task, fd: int) -> File:
    f = t.files.get(fd)
    f.check_writable()
    return f


def _rwf(flags: int) -> None:
    """``kiocb_set_rw_flags``'s refusals."""
    if flags & ~RWF_ALL or flags & (RWF_ATOMIC | RWF_DONTCACHE):
        raise Errno(E.EOPNOTSUPP)
    if flags & RWF_APPEND and flags & RWF_NOAPPEND:
        raise Errno(E.EINVAL)


def _with_rwf(f: File, flags: int, write: bool, op: Callable[[], int]) -> int:
    """Run ``op`` with the per-call RWF_* flags applied to the description's
    flags (NOWAIT as O_NONBLOCK, APPEND/NOAPPEND as O_APPEND) for its duration."""
    if not flags:
        return op()
    saved = f.flags
    new = saved
    if flags & RWF_NOWAIT:
        new |= O_NONBLOCK
    if write and flags & RWF_APPEND:
        new |= O_APPEND
    if write and flags & RWF_NOAPPEND:
        new &= ~O_APPEND
    f.flags = new
    try:
        n = op()
    finally:
        f.flags = saved
    if write and flags & (RWF_DSYNC | RWF_SYNC):
        f.sync()
    return n


@syscall("read", FD, PTR, ULONG)
def read(t: Task, fd: int, buf: int, count: int) -> int:
    f = _readable(t, fd)
    return read_into(t, f, _buffer(buf, count))


@syscall("write", FD, PTR, ULONG)
def write(t: Task, fd: int, buf: int, count: int) -> int:
    f = _writable(t, fd)
    return write_from(t, f, _buffer(buf, count))


@syscall("pread64", FD, PTR, ULONG, LONG)
def pread64(t: Task, fd: int, buf: int, count: int, offset: int) -> int:
    if offset < 0:
        raise Errno(E.EINVAL)
    _seekable(t, fd)
    f = _readable(t, fd)
    return read_into(t, f, _buffer(buf, count), offset)


@syscall("pwrite64", FD, PTR, ULONG, LONG)
def pwrite64(t: Task, fd: int, buf: int, count: int, offset: int) -> int:
    if offset < 0:
        raise Errno(E.EINVAL)
    _seekable(t, fd)
    f = _writable(t, fd)
    return write_from(t, f, _buffer(buf, count), offset)


def _readv(t: Task, fd: int, iov: int, cnt: int, offset: int | None, flags: int = 0) -> int:
    f = _readable(t, fd)
    segs = read_iovecs(t, iov, cnt)
    if not any(n for _, n in segs):
        return 0
    _rwf(flags)
    return _with_rwf(f, flags, False, lambda: read_into(t, f, segs, offset))


def _writev(t: Task, fd: int, iov: int, cnt: int, offset: int | None, flags: int = 0) -> int:
    f = _writable(t, fd)
    segs = read_iovecs(t, iov, cnt)
    if not any(n for _, n in segs):
        return 0
    _rwf(flags)
    return _with_rwf(f, flags, True, lambda: write_from(t, f, segs, offset))


@syscall("readv", FD, PTR, ULONG)
def readv(t: Task, fd: int, iov: int, cnt: int) -> int:
    return _readv(t, fd, iov, _count(cnt), None)


@syscall("writev", FD, PTR, ULONG)
def writev(t: Task, fd: int, iov: int, cnt: int) -> int:
    return _writev(t, fd, iov, _count(cnt), None)


def _count(cnt: int) -> int:
    """``unsigned long vlen``: anything past UIO_MAXIOV is EINVAL anyway."""
    return cnt if cnt <= (1 << 31) else -1


@syscall("preadv", FD, PTR, ULONG, LONG, LONG)
def preadv(t: Task, fd: int, iov: int, cnt: int, pos: int, pos_h: int) -> int:
    if pos < 0:
        raise Errno(E.EINVAL)
    _seekable(t, fd)
    return _readv(t, fd, iov, _count(cnt), pos)


@syscall("pwritev", FD, PTR, ULONG, LONG, LONG)
def pwritev(t: Task, fd: int, iov: int, cnt: int, pos: int, pos_h: int) -> int:
    if pos < 0:
        raise Errno(E.EINVAL)
    _seekable(t, fd)
    return _writev(t, fd, iov, _count(cnt), pos)


@syscall("preadv2", FD, PTR, ULONG, LONG, LONG, INT)
def preadv2(t: Task, fd: int, iov: int, cnt: int, pos: int, pos_h: int, flags: int) -> int:
    if pos == -1:
        return _readv(t, fd, iov, _count(cnt), None, flags & 0xFFFFFFFF)
    if pos < 0:
        raise Errno(E.EINVAL)
    _seekable(t, fd)
    return _readv(t, fd, iov, _count(cnt), pos, flags & 0xFFFFFFFF)


@syscall("pwritev2", FD, PTR, ULONG, LONG, LONG, INT)
def pwritev2(t: Task, fd: int, iov: int, cnt: int, pos: int, pos_h: int, flags: int) -> int:
    if pos == -1:
        return _writev(t, fd, iov, _count(cnt), None, flags & 0xFFFFFFFF)
    if pos < 0:
        raise Errno(E.EINVAL)
    _seekable(t, fd)
    return _writev(t, fd, iov, _count(cnt), pos, flags & 0xFFFFFFFF)


def _seekable(t: Task, fd: int) -> None:
    """preadv/pwritev on a pipe or socket is ESPIPE (no FMODE_PREAD), before any
    other check: a File that keeps the base pread/pwrite has no positions."""
    f = t.files.get(fd)
    if type(f).pread is File.pread and type(f).pwrite is File.pwrite:
        raise Errno(E.ESPIPE)


@syscall("lseek", FD, LONG, UINT)
def lseek(t: Task, fd: int, offset: int, whence: int) -> int:
    f = t.files.get(fd)
    if whence > SEEK_MAX:
        raise Errno(E.EINVAL)
    return f.seek(offset, whence)
