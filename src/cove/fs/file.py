"""Open file descriptions: what an fd refers to.

``File`` is the base for everything a guest fd can name (regular files,
directories, devices, and later pipes, sockets, eventfds). Its defaults are
Linux's answers for objects that do not support an operation, so a subclass
only implements what it is.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from cove.abi.errno import E, Errno

# The open(2) flags and seek modes, re-exported from the one ABI table.
from cove.abi.flags import FASYNC as O_ASYNC
from cove.abi.flags import (
    O_ACCMODE,
    O_APPEND,
    O_CLOEXEC,
    O_CREAT,
    O_DIRECT,
    O_DIRECTORY,
    O_DSYNC,
    O_EXCL,
    O_LARGEFILE,
    O_NOATIME,
    O_NOCTTY,
    O_NOFOLLOW,
    O_NONBLOCK,
    O_PATH,
    O_RDONLY,
    O_RDWR,
    O_SYNC,
    O_TMPFILE,
    O_TRUNC,
    O_WRONLY,
    SEEK_CUR,
    SEEK_DATA,
    SEEK_END,
    SEEK_HOLE,
    SEEK_SET,
)
from cove.fs.node import DirEntry, Inode, SetAttr, Stat, dtype_of, now_ns

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from cove.fs.mount import Location


SETFL_MASK = O_APPEND | O_NONBLOCK | O_ASYNC | O_DIRECT | O_NOATIME

MAX_LFS_FILESIZE = (1 << 63) - 1


class File:
    """An open file description (shared by dup'ed fds and across fork)."""

    location: Location | None = None
    fd_refs = 0  # fds (in any process) referring to this description

    def __init__(self, flags: int) -> None:
        self.flags = flags  # access mode and status flags (O_APPEND, O_NONBLOCK, ...)

    @property
    def readable(self) -> bool:
        return self.flags & O_ACCMODE in (O_RDONLY, O_RDWR) and not self.flags & O_PATH

    @property
    def writable(self) -> bool:
        return self.flags & O_ACCMODE in (O_WRONLY, O_RDWR) and not self.flags & O_PATH

    def check_readable(self) -> None:
        if not self.readable:
            raise Errno(E.EBADF)

    def check_writable(self) -> None:
        if not self.writable:
            raise Errno(E.EBADF)

    def read(self, size: int) -> bytes:
        raise Errno(E.EINVAL)

    def write(self, data: bytes) -> int:
        raise Errno(E.EINVAL)

    def pread(self, size: int, offset: int) -> bytes:
        raise Errno(E.ESPIPE)

    def pwrite(self, data: bytes, offset: int) -> int:
        raise Errno(E.ESPIPE)

    def seek(self, offset: int, whence: int) -> int:
        raise Errno(E.ESPIPE)

    def stat(self) -> Stat:
        raise Errno(E.EBADF)

    def truncate(self, length: int) -> None:
        raise Errno(E.EINVAL)

    def readdir(self) -> Iterator[DirEntry]:
        raise Errno(E.ENOTDIR)

    def sync(self) -> None:
        pass

    def release(self) -> None:
        """The last fd referring to this description was closed."""


class InodeFile(File):
    """A file opened through the VFS: regular file, directory, symlink (O_PATH)."""

    def __init__(self, location: Location, flags: int) -> None:
        super().__init__(flags)
        self.location = location
        self.inode: Inode = location.inode
        self.pos = 0
        # One position per description; readers on several threads share it.
        self._lock = threading.Lock()
        self._dir_snapshot: list[DirEntry] | None = None
        self.name_hint: tuple[Location, str] | None = None  # (directory, name) it was opened by

    def stat(self) -> Stat:
        return self.inode.stat()

    def _check_io(self) -> None:
        if self.flags & O_PATH:
            raise Errno(E.EBADF)
        if self.inode.ftype == 0o040000:
            raise Errno(E.EISDIR)

    def pread(self, size: int, offset: int) -> bytes:
        self.check_readable()
        self._check_io()
        if offset < 0:
            raise Errno(E.EINVAL)
        return self.inode.read(offset, size)

    def pwrite(self, data: bytes, offset: int) -> int:
        self.check_writable()
        self._check_io()
        if offset < 0:
            raise Errno(E.EINVAL)
        if self.flags & O_APPEND:
            # Linux: pwrite on an O_APPEND file appends regardless of offset.
            offset = self.inode.stat().size
        if offset + len(data) > MAX_LFS_FILESIZE:
            raise Errno(E.EFBIG)
        return self.inode.write(offset, data)

    def read(self, size: int) -> bytes:
        self.check_readable()
        self._check_io()
        with self._lock:
            data = self.inode.read(self.pos, size)
            self.pos += len(data)
            return data

    def write(self, data: bytes) -> int:
        self.check_writable()
        self._check_io()
        with self._lock:
            if self.flags & O_APPEND:
                self.pos = self.inode.stat().size
            n = self.inode.write(self.pos, data)
            self.pos += n
            return n

    def seek(self, offset: int, whence: int) -> int:
        if self.flags & O_PATH:
            raise Errno(E.EBADF)
        if self.inode.ftype == 0o040000 and whence not in (SEEK_SET, SEEK_CUR):
            raise Errno(E.EINVAL)  # directory offsets are cookies: no END, DATA or HOLE
        with self._lock:
            if whence == SEEK_SET:
                new = offset
            elif whence == SEEK_CUR:
                new = self.pos + offset
            elif whence == SEEK_END:
                new = self.inode.stat().size + offset
            elif whence in (SEEK_DATA, SEEK_HOLE):
                size = self.inode.stat().size
                if offset < 0 or offset >= size:
                    raise Errno(E.ENXIO)
                # Without hole tracking the whole file is data, as tmpfs reports.
                new = offset if whence == SEEK_DATA else size
            else:
                raise Errno(E.EINVAL)
            if new < 0:
                raise Errno(E.EINVAL)
            if new == 0 and self._dir_snapshot is not None:
                self._dir_snapshot = None  # rewinddir sees a fresh listing
            self.pos = new
            return new

    def truncate(self, length: int) -> None:
        if self.flags & O_PATH or not self.writable:
            raise Errno(E.EBADF if self.flags & O_PATH else E.EINVAL)
        self._check_io()
        if length < 0:
            raise Errno(E.EINVAL)
        self.inode.setattr(SetAttr(size=length, mtime_ns=now_ns()))

    def readdir(self) -> Iterator[DirEntry]:
        """Entries from the current position on, including ``.`` and ``..``.

        The caller advances ``pos`` by the number of entries it consumed; the
        listing is taken once per pass, so concurrent changes do not make
        getdents repeat or skip entries.
        """
        if self.flags & O_PATH:
            raise Errno(E.EBADF)
        if self.inode.ftype != 0o040000:
            raise Errno(E.ENOTDIR)
        if self._dir_snapshot is None:
            loc = self.location
            assert loc is not None
            parent = loc.parent_location()
            head = [DirEntry(".", self.inode.ino, dtype_of(self.inode.ftype)),
                    DirEntry("..", parent.inode.ino, dtype_of(parent.inode.ftype))]
            self._dir_snapshot = head + list(self.inode.readdir())
        return iter(self._dir_snapshot[self.pos:])

    def sync(self) -> None:
        self.inode.sync()
