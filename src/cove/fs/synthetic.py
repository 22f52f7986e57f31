"""Synthetic files: content produced when the file is opened (``/proc``, ``/sys``).

A ``SyntheticFS`` is a read-only tree whose regular files call a function at
open time; directories may also be generated (``/proc/<pid>``). The rendering
is frozen into the open file, so one open sees one consistent snapshot.

A tree made with ``readonly=False`` (``/proc`` itself) may have files with a
``write`` callback (``/proc/<pid>/comm``); everything else in it refuses
changes with the errnos Linux's procfs gives (ENOENT for new names, EPERM for
removal, renames and mode changes, EIO for writing a file without a writer).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

from cove.abi.errno import E, Errno
from cove.fs.file import InodeFile
from cove.fs.mount import Location
from cove.fs.node import (
    PROC_SUPER_MAGIC,
    S_IFDIR,
    S_IFLNK,
    S_IFREG,
    DirEntry,
    FileSystem,
    Inode,
    SetAttr,
    Stat,
    dtype_of,
    now_ns,
)

Render = Callable[[], bytes]
# Takes the bytes of one write(2) and returns how many it consumed (or raises Errno).
Writer = Callable[[bytes], int]
# A dynamic directory lists (name, factory) pairs each time it is read.
Listing = Callable[[], dict[str, "Callable[[SynthDir], SynthInode]"]]


class SyntheticFS(FileSystem):
    name = "proc"
    magic = PROC_SUPER_MAGIC

    def __init__(self, name: str = "proc", magic: int = PROC_SUPER_MAGIC, *,
                 readonly: bool = True) -> None:
        super().__init__(readonly=readonly)
        self.name = name  # type: ignore[misc]
        self.magic = magic  # type: ignore[misc]
        self._inos = itertools.count(1)
        self._root = SynthDir(self, None, mode=0o555)

    @property
    def root(self) -> SynthDir:
        return self._root

    def next_ino(self) -> int:
        return next(self._inos)


class SynthInode(Inode):
    __slots__ = ("_mode", "_parent", "fs", "ino", "uid", "gid", "born")

    def __init__(self, fs: SyntheticFS, parent: SynthDir | None, mode: int) -> None:
        self.fs = fs
        self.ino = fs.next_ino()
        self._parent = parent
        self._mode = mode
        self.uid = self.gid = 0
        self.born = now_ns()

    @property
    def mode(self) -> int:
        return self._mode

    def size(self) -> int:
        return 0

    def stat(self) -> Stat:
        return Stat(ino=self.ino, mode=self._mode, nlink=1, uid=self.uid, gid=self.gid,
                    size=self.size(), dev=self.fs.dev, atime_ns=self.born,
                    mtime_ns=self.born, ctime_ns=self.born)

    def parent(self) -> Inode:
        raise Errno(E.ENOTDIR)

    def setattr(self, attr: SetAttr) -> None:
        self.fs.check_writable()
        if attr.mode is not None or attr.uid is not None or attr.gid is not None:
            raise Errno(E.EPERM)
        # Sizes and times are accepted and ignored, as Linux's proc_setattr does
        # (the O_TRUNC of a shell's `echo name > /proc/self/comm` must succeed).


class SynthFile(SynthInode):
    """A regular file whose bytes come from ``render`` at open time."""

    __slots__ = ("_render", "writer")

    def __init__(self, fs: SyntheticFS, parent: SynthDir | None, render: Render,
                 mode: int = 0o444, write: Writer | None = None) -> None:
        super().__init__(fs, parent, S_IFREG | mode)
        self._render = render
        self.writer = write

    def render(self) -> bytes:
        return self._render()

    def store(self, data: bytes) -> int:
        """One write(2) to an open file of this node (the offset is ignored)."""
        if self.writer is None:
            raise Errno(E.EIO)  # Linux's answer for a proc file without a write op
        return self.writer(data)

    def read(self, offset: int, size: int) -> bytes:
        return self._render()[offset:offset + size]


class SynthLink(SynthInode):
    """A symlink whose target is computed on every readlink (``/proc/self``)."""

    __slots__ = ("_target",)

    def __init__(self, fs: SyntheticFS, parent: SynthDir | None,
                 target: Callable[[], str]) -> None:
        super().__init__(fs, parent, S_IFLNK | 0o777)
        self._target = target

    def readlink(self) -> str:
        return self._target()


class SynthDir(SynthInode):
    __slots__ = ("children", "listing", "_dynamic")

    def __init__(self, fs: SyntheticFS, parent: SynthDir | None, mode: int = 0o555,
                 listing: Listing | None = None) -> None:
        super().__init__(fs, parent, S_IFDIR | mode)
        self.children: dict[str, SynthInode] = {}
        self.listing = listing
        # Generated children are kept so their inode numbers stay stable.
        self._dynamic: dict[str, SynthInode] = {}

    def stat(self) -> Stat:
        st = super().stat()
        st.nlink = 2
        return st

    def parent(self) -> SynthDir:
        return self._parent or self

    def _entries(self) -> dict[str, SynthInode]:
        entries = dict(self.children)
        if self.listing is not None:
            live = self.listing()
            for name in list(self._dynamic):
                if name not in live:
                    del self._dynamic[name]
            for name, make in live.items():
                if name not in self._dynamic:
                    self._dynamic[name] = make(self)
            entries.update(self._dynamic)
        return entries

    def lookup(self, name: str) -> SynthInode:
        node = self._entries().get(name)
        if node is None:
            raise Errno(E.ENOENT)
        return node

    def readdir(self) -> Iterator[DirEntry]:
        for name, node in self._entries().items():
            yield DirEntry(name, node.ino, dtype_of(node.mode))

    # --- changes (reached only when the tree is not read-only) -----------------
    # Linux's procfs has no such operations: lookups of new names fail first
    # (ENOENT), and the VFS refuses the rest with EPERM.
    def create(self, name: str, mode: int, uid: int, gid: int) -> Inode:
        raise Errno(E.ENOENT)

    def mkdir(self, name: str, mode: int, uid: int, gid: int) -> Inode:
        raise Errno(E.ENOENT)

    def mknod(self, name: str, mode: int, rdev: int, uid: int, gid: int) -> Inode:
        raise Errno(E.ENOENT)

    def symlink(self, name: str, target: str, uid: int, gid: int) -> Inode:
        raise Errno(E.ENOENT)

    def link(self, name: str, target: Inode) -> None:
        raise Errno(E.ENOENT)

    def unlink(self, name: str) -> None:
        raise Errno(E.EPERM)

    def rmdir(self, name: str) -> None:
        raise Errno(E.EPERM)

    def rename(self, name: str, newdir: Inode, newname: str, flags: int = 0) -> None:
        try:
            newdir.lookup(newname)
        except Errno:
            raise Errno(E.ENOENT) from None
        raise Errno(E.EPERM)

    # --- building -----------------------------------------------------------
    def add_file(self, name: str, render: Render, mode: int = 0o444,
                 write: Writer | None = None) -> SynthFile:
        node = SynthFile(self.fs, self, render, mode, write)  # type: ignore[arg-type]
        self.children[name] = node
        return node

    def add_dir(self, name: str, listing: Listing | None = None,
                mode: int = 0o555) -> SynthDir:
        node = SynthDir(self.fs, self, mode, listing)  # type: ignore[arg-type]
        self.children[name] = node
        return node

    def add_link(self, name: str, target: Callable[[], str]) -> SynthLink:
        node = SynthLink(self.fs, self, target)  # type: ignore[arg-type]
        self.children[name] = node
        return node


class RenderedFile(InodeFile):
    """An open synthetic file: reads come from the content rendered at open."""

    def __init__(self, location: Location, flags: int, content: bytes) -> None:
        super().__init__(location, flags)
        self.content = content

    def pread(self, size: int, offset: int) -> bytes:
        self.check_readable()
        if offset < 0:
            raise Errno(E.EINVAL)
        return self.content[offset:offset + size]

    def read(self, size: int) -> bytes:
        self.check_readable()
        with self._lock:
            data = self.content[self.pos:self.pos + size]
            self.pos += len(data)
            return data

    def write(self, data: bytes) -> int:
        self.check_writable()  # a read-only fd is EBADF, as for any file
        if isinstance(self.inode, SynthFile):
            return self.inode.store(bytes(data))
        raise Errno(E.EACCES)

    def pwrite(self, data: bytes, offset: int) -> int:
        self.check_writable()
        if offset < 0:
            raise Errno(E.EINVAL)
        return self.write(data)
