"""memfs: cove's writable in-memory filesystem (tmpfs semantics).

Used for the sandbox's writable layer, ``/tmp``, ``/dev/shm`` and as the
building block of synthetic trees. Regular file data is a ``bytearray`` that
grows sparsely: a write past the end fills the gap with zeros, as a hole
reads on tmpfs.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator

from cove.abi.errno import E, Errno
from cove.fs.node import (
    RENAME_EXCHANGE,
    RENAME_NOREPLACE,
    S_IFDIR,
    S_IFLNK,
    S_IFMT,
    S_IFREG,
    TMPFS_MAGIC,
    DirEntry,
    FileSystem,
    Inode,
    SetAttr,
    Stat,
    StatFs,
    dtype_of,
    now_ns,
)


class MemFS(FileSystem):
    name = "tmpfs"
    magic = TMPFS_MAGIC

    def __init__(self, *, readonly: bool = False, root_mode: int = 0o755,
                 uid: int = 0, gid: int = 0) -> None:
        super().__init__(readonly=readonly)
        self._inos = itertools.count(1)
        # One lock per filesystem keeps multi-step changes (rename) atomic for
        # guest threads that the North may run concurrently.
        self.lock = threading.RLock()
        self._root = MemDir(self, S_IFDIR | root_mode, uid, gid, parent=None)

    @property
    def root(self) -> MemDir:
        return self._root

    def next_ino(self) -> int:
        return next(self._inos)

    def statfs(self) -> StatFs:
        return StatFs(fstype=self.magic, blocks=1 << 20, bfree=1 << 20, bavail=1 << 20,
                      files=1 << 20, ffree=1 << 20, flags=1 if self.readonly else 0)


class MemInode(Inode):
    __slots__ = ("_mode", "atime_ns", "ctime_ns", "fs", "gid", "ino", "mtime_ns", "nlink",
                 "rdev", "uid", "__weakref__")

    def __init__(self, fs: MemFS, mode: int, uid: int, gid: int, rdev: int = 0) -> None:
        self.fs = fs
        self.ino = fs.next_ino()
        self._mode = mode
        self.uid = uid
        self.gid = gid
        self.rdev = rdev
        self.nlink = 1
        t = now_ns()
        self.atime_ns = self.mtime_ns = self.ctime_ns = t

    @property
    def mode(self) -> int:
        return self._mode

    def size(self) -> int:
        return 0

    def stat(self) -> Stat:
        size = self.size()
        return Stat(ino=self.ino, mode=self._mode, nlink=self.nlink, uid=self.uid, gid=self.gid,
                    size=size, rdev=self.rdev, dev=self.fs.dev, blocks=(size + 511) // 512,
                    atime_ns=self.atime_ns, mtime_ns=self.mtime_ns, ctime_ns=self.ctime_ns)

    def setattr(self, attr: SetAttr) -> None:
        self.fs.check_writable()
        with self.fs.lock:
            if attr.size is not None:
                self.truncate(attr.size)
            if attr.mode is not None:
                self._mode = (self._mode & S_IFMT) | (attr.mode & 0o7777)
            if attr.uid is not None:
                self.uid = attr.uid
            if attr.gid is not None:
                self.gid = attr.gid
            if attr.atime_ns is not None:
                self.atime_ns = attr.atime_ns
            if attr.mtime_ns is not None:
                self.mtime_ns = attr.mtime_ns
            self.ctime_ns = attr.ctime_ns if attr.ctime_ns is not None else now_ns()

    def truncate(self, size: int) -> None:
        raise Errno(E.EINVAL)

    def touch_change(self) -> None:
        self.ctime_ns = now_ns()


class MemFile(MemInode):
    __slots__ = ("data",)

    def __init__(self, fs: MemFS, mode: int, uid: int, gid: int) -> None:
        super().__init__(fs, S_IFREG | (mode & 0o7777), uid, gid)
        self.data = bytearray()

    def size(self) -> int:
        return len(self.data)

    def read(self, offset: int, size: int) -> bytes:
        return bytes(self.data[offset:offset + size])

    def write(self, offset: int, data: bytes) -> int:
        self.fs.check_writable()
        if not data:
            return 0  # a zero-length write never extends the file
        with self.fs.lock:
            end = offset + len(data)
            if offset > len(self.data):
                self.data.extend(bytes(offset - len(self.data)))
            self.data[offset:end] = data
            self.mtime_ns = self.ctime_ns = now_ns()
        return len(data)

    def truncate(self, size: int) -> None:
        if size < len(self.data):
            del self.data[size:]
        else:
            self.data.extend(bytes(size - len(self.data)))
        self.mtime_ns = now_ns()


class MemSymlink(MemInode):
    __slots__ = ("target",)

    def __init__(self, fs: MemFS, target: str, uid: int, gid: int) -> None:
        super().__init__(fs, S_IFLNK | 0o777, uid, gid)
        self.target = target

    def size(self) -> int:
        return len(self.target.encode("utf-8", "surrogateescape"))

    def readlink(self) -> str:
        return self.target


class MemNode(MemInode):
    """A FIFO, socket or device node: metadata only; the VFS supplies behaviour."""

    __slots__ = ()


class MemDir(MemInode):
    __slots__ = ("_parent", "entries")

    def __init__(self, fs: MemFS, mode: int, uid: int, gid: int,
                 parent: MemDir | None) -> None:
        super().__init__(fs, S_IFDIR | (mode & 0o7777), uid, gid)
        self.entries: dict[str, MemInode] = {}
        self._parent = parent
        self.nlink = 2

    def size(self) -> int:
        return 40 + 20 * len(self.entries)  # as tmpfs (BOGO_DIRENT_SIZE)

    def parent(self) -> MemDir:
        return self._parent or self

    def lookup(self, name: str) -> MemInode:
        try:
            return self.entries[name]
        except KeyError:
            raise Errno(E.ENOENT) from None

    def readdir(self) -> Iterator[DirEntry]:
        for name, node in list(self.entries.items()):
            yield DirEntry(name, node.ino, dtype_of(node.mode))

    def _add(self, name: str, node: MemInode) -> None:
        if name in self.entries:
            raise Errno(E.EEXIST)
        self.entries[name] = node
        self.mtime_ns = self.ctime_ns = now_ns()

    def create(self, name: str, mode: int, uid: int, gid: int) -> MemFile:
        self.fs.check_writable()
        with self.fs.lock:
            node = MemFile(self.fs, mode, uid, gid)
            self._add(name, node)
            return node

    def mkdir(self, name: str, mode: int, uid: int, gid: int) -> MemDir:
        self.fs.check_writable()
        with self.fs.lock:
            node = MemDir(self.fs, mode, uid, gid, parent=self)
            self._add(name, node)
            self.nlink += 1
            return node

    def mknod(self, name: str, mode: int, rdev: int, uid: int, gid: int) -> MemNode:
        self.fs.check_writable()
        with self.fs.lock:
            node = MemNode(self.fs, mode, uid, gid, rdev)
            self._add(name, node)
            return node

    def symlink(self, name: str, target: str, uid: int, gid: int) -> MemSymlink:
        self.fs.check_writable()
        with self.fs.lock:
            node = MemSymlink(self.fs, target, uid, gid)
            self._add(name, node)
            return node

    def link(self, name: str, target: Inode) -> None:
        self.fs.check_writable()
        if target.fs is not self.fs or not isinstance(target, MemInode):
            raise Errno(E.EXDEV)
        if isinstance(target, MemDir):
            raise Errno(E.EPERM)
        with self.fs.lock:
            self._add(name, target)
            target.nlink += 1
            target.touch_change()

    def unlink(self, name: str) -> None:
        self.fs.check_writable()
        with self.fs.lock:
            node = self.lookup(name)
            if isinstance(node, MemDir):
                raise Errno(E.EISDIR)
            del self.entries[name]
            node.nlink -= 1
            node.touch_change()
            self.mtime_ns = self.ctime_ns = now_ns()

    def rmdir(self, name: str) -> None:
        self.fs.check_writable()
        with self.fs.lock:
            node = self.lookup(name)
            if not isinstance(node, MemDir):
                raise Errno(E.ENOTDIR)
            if node.entries:
                raise Errno(E.ENOTEMPTY)
            del self.entries[name]
            node.nlink = 0
            node._parent = None
            self.nlink -= 1
            self.mtime_ns = self.ctime_ns = now_ns()

    def rename(self, name: str, newdir: Inode, newname: str, flags: int = 0) -> None:
        self.fs.check_writable()
        if newdir.fs is not self.fs or not isinstance(newdir, MemDir):
            raise Errno(E.EXDEV)
        with self.fs.lock:
            node = self.lookup(name)
            target = newdir.entries.get(newname)
            if node is target:
                return  # same inode under both names: Linux does nothing
            if flags & RENAME_EXCHANGE:
                if target is None:
                    raise Errno(E.ENOENT)
                self.entries[name], newdir.entries[newname] = target, node
                for moved, home in ((node, newdir), (target, self)):
                    if isinstance(moved, MemDir):
                        moved._parent = home
                if isinstance(node, MemDir) != isinstance(target, MemDir) and self is not newdir:
                    delta = 1 if isinstance(node, MemDir) else -1
                    newdir.nlink += delta
                    self.nlink -= delta
            else:
                if target is not None:
                    if flags & RENAME_NOREPLACE:
                        raise Errno(E.EEXIST)
                    if isinstance(target, MemDir):
                        if target.entries:
                            raise Errno(E.ENOTEMPTY)
                        target.nlink = 0
                        newdir.nlink -= 1
                    else:
                        target.nlink -= 1
                    target.touch_change()
                del self.entries[name]
                newdir.entries[newname] = node
                if isinstance(node, MemDir):
                    node._parent = newdir
                    self.nlink -= 1
                    newdir.nlink += 1
            t = now_ns()
            node.ctime_ns = t
            self.mtime_ns = self.ctime_ns = newdir.mtime_ns = newdir.ctime_ns = t
