"""The contract every cove filesystem implements: inodes, their metadata, and
the raw operations on them.

A filesystem only stores things. It never resolves paths, never follows
symlinks and never checks permissions: `cove.fs.vfs` does all of that once, for
every filesystem, so the rules (and the escape-proofing) live in one place.

What a filesystem *must* check itself, because only it knows:
- ``lookup``/``unlink``/``rmdir`` of a missing name: ``ENOENT``;
- ``create``/``mkdir``/``mknod``/``symlink``/``link`` of an existing name: ``EEXIST``;
- ``rmdir`` of a non-empty directory: ``ENOTEMPTY``;
- any change on a read-only filesystem: ``EROFS``;
- ``link``/``rename`` across filesystems: ``EXDEV``.
Type checks (``ENOTDIR``, ``EISDIR``), permission and sticky-bit checks, name
length limits and rename's "into its own subdirectory" rule are the VFS's.

Names are ``str`` decoded from the guest's bytes with ``surrogateescape``
(``os.fsdecode``), so every byte string round-trips; they never contain ``/``
or NUL and are never ``.`` or ``..``.
"""

from __future__ import annotations

import itertools
import stat as _stat
import time
from collections.abc import Iterator

from cove.abi.errno import E, Errno

# The Linux constants the filesystems use, re-exported from the one ABI table.
from cove.abi.flags import (
    DT_BLK,
    DT_CHR,
    DT_DIR,
    DT_FIFO,
    DT_LNK,
    DT_REG,
    DT_SOCK,
    DT_UNKNOWN,
    RENAME_EXCHANGE,
    RENAME_NOREPLACE,
    RENAME_WHITEOUT,
    S_IFBLK,
    S_IFCHR,
    S_IFDIR,
    S_IFIFO,
    S_IFLNK,
    S_IFMT,
    S_IFREG,
    S_IFSOCK,
    S_ISGID,
    S_ISUID,
    S_ISVTX,
)
from cove.dataclass import dataclass, replace

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from typing import ClassVar


def dtype_of(mode: int) -> int:
    """The getdents64 d_type for a st_mode."""
    return (mode & S_IFMT) >> 12


def now_ns() -> int:
    return time.time_ns()


def makedev(major: int, minor: int) -> int:
    """Linux's encoding of a device number (as glibc's makedev)."""
    return (
        (minor & 0xFF)
        | ((major & 0xFFF) << 8)
        | ((minor & ~0xFF) << 12)
        | ((major & ~0xFFF) << 32)
    )


def major(dev: int) -> int:
    return ((dev >> 8) & 0xFFF) | ((dev >> 32) & ~0xFFF)


def minor(dev: int) -> int:
    return (dev & 0xFF) | ((dev >> 12) & ~0xFF)


@dataclass(slots=True)
class Stat:
    """What stat(2)/statx(2) report about an inode. Times are nanoseconds."""

    ino: int
    mode: int  # type and permission bits
    nlink: int = 1
    uid: int = 0
    gid: int = 0
    size: int = 0
    rdev: int = 0
    dev: int = 0
    blksize: int = 4096
    blocks: int = 0  # 512-byte units
    atime_ns: int = 0
    mtime_ns: int = 0
    ctime_ns: int = 0
    btime_ns: int = 0

    @property
    def type(self) -> int:
        return self.mode & S_IFMT

    @property
    def perm(self) -> int:
        return self.mode & 0o7777

    def is_dir(self) -> bool:
        return self.mode & S_IFMT == S_IFDIR

    def is_reg(self) -> bool:
        return self.mode & S_IFMT == S_IFREG

    def is_lnk(self) -> bool:
        return self.mode & S_IFMT == S_IFLNK

    def copy(self, **changes: int) -> Stat:
        return replace(self, **changes)


@dataclass(frozen=True, slots=True)
class DirEntry:
    """One readdir entry (``.`` and ``..`` are added by the VFS, not the fs)."""

    name: str
    ino: int
    dtype: int


@dataclass(slots=True)
class SetAttr:
    """The changes of one setattr call; ``None`` means unchanged.

    ``size`` truncates or extends (sparse). Times are nanoseconds. The VFS fills
    in ``ctime_ns`` itself, so filesystems just store what they are given.
    """

    mode: int | None = None  # permission bits only (07777)
    uid: int | None = None
    gid: int | None = None
    size: int | None = None
    atime_ns: int | None = None
    mtime_ns: int | None = None
    ctime_ns: int | None = None


@dataclass(frozen=True, slots=True)
class StatFs:
    """What statfs(2) reports."""

    fstype: int  # f_type magic
    bsize: int = 4096
    blocks: int = 0
    bfree: int = 0
    bavail: int = 0
    files: int = 0
    ffree: int = 0
    namelen: int = 255
    frsize: int = 4096
    flags: int = 0


# statfs magic numbers
TMPFS_MAGIC = 0x01021994
OVERLAYFS_MAGIC = 0x794C7630
PROC_SUPER_MAGIC = 0x9FA0
DEVPTS_SUPER_MAGIC = 0x1CD1
EXT4_SUPER_MAGIC = 0xEF53
SQUASHFS_MAGIC = 0x73717368

_dev_numbers = itertools.count(1)


class FileSystem:
    """One filesystem instance: a tree of inodes under ``root``.

    ``dev`` is its st_dev, unique in the process; ``readonly`` filesystems
    refuse every change with ``EROFS``; ``name`` is what /proc/mounts shows.
    """

    name: ClassVar[str] = "none"
    magic: ClassVar[int] = TMPFS_MAGIC

    def __init__(self, *, readonly: bool = False) -> None:
        self.dev = next(_dev_numbers)
        self.readonly = readonly

    @property
    def root(self) -> Inode:
        raise NotImplementedError

    def statfs(self) -> StatFs:
        return StatFs(fstype=self.magic, flags=1 if self.readonly else 0)

    def check_writable(self) -> None:
        if self.readonly:
            raise Errno(E.EROFS)


class Inode:
    """A file, directory, symlink, FIFO, device node or socket of one filesystem.

    Identity: two inode objects denote the same file exactly when their ``key``
    is equal (the VFS uses it for mount points and loops), so filesystems that
    make inode objects on demand must give them a stable ``ino``.

    Every method raises ``Errno``; the defaults here are what Linux answers when
    an operation does not apply to this kind of inode.
    """

    __slots__ = ()

    fs: FileSystem
    ino: int

    @property
    def key(self) -> tuple[int, int]:
        return (self.fs.dev, self.ino)

    # --- metadata -------------------------------------------------------
    def stat(self) -> Stat:
        """The inode's metadata now, as a new object the caller may change."""
        raise NotImplementedError

    @property
    def mode(self) -> int:
        return self.stat().mode

    @property
    def ftype(self) -> int:
        """The file type bits of ``mode`` (``S_IFMT``). An inode never changes
        type, so filesystems whose ``mode`` costs a stat answer from memory."""
        return self.mode & S_IFMT

    def setattr(self, attr: SetAttr) -> None:
        """Change metadata; ``size`` only on regular files (the VFS checks)."""
        self.fs.check_writable()
        raise Errno(E.EPERM)

    # --- directories ----------------------------------------------------
    def lookup(self, name: str) -> Inode:
        raise Errno(E.ENOTDIR)

    def parent(self) -> Inode:
        """The directory containing this one (``..``); the fs root is its own parent."""
        raise Errno(E.ENOTDIR)

    def readdir(self) -> Iterator[DirEntry]:
        """Entries in a stable order, without ``.`` and ``..``."""
        raise Errno(E.ENOTDIR)

    def create(self, name: str, mode: int, uid: int, gid: int) -> Inode:
        """A new empty regular file; ``mode`` holds permission bits only."""
        raise Errno(E.ENOTDIR)

    def mkdir(self, name: str, mode: int, uid: int, gid: int) -> Inode:
        raise Errno(E.ENOTDIR)

    def mknod(self, name: str, mode: int, rdev: int, uid: int, gid: int) -> Inode:
        """A FIFO, socket, character or block device node; ``mode`` includes the type."""
        raise Errno(E.ENOTDIR)

    def symlink(self, name: str, target: str, uid: int, gid: int) -> Inode:
        raise Errno(E.ENOTDIR)

    def link(self, name: str, target: Inode) -> None:
        """A new name for ``target`` (never a directory) in this directory."""
        raise Errno(E.ENOTDIR)

    def unlink(self, name: str) -> None:
        """Remove a non-directory entry (the VFS has checked it is not one)."""
        raise Errno(E.ENOTDIR)

    def rmdir(self, name: str) -> None:
        """Remove an empty directory entry (``ENOTEMPTY`` otherwise)."""
        raise Errno(E.ENOTDIR)

    def rename(self, name: str, newdir: Inode, newname: str, flags: int = 0) -> None:
        """Move entry ``name`` to ``newdir/newname``.

        The VFS has already checked the Linux rules (types of source and target,
        non-empty target directory, moving a directory into itself,
        RENAME_NOREPLACE against an existing target, RENAME_EXCHANGE against a
        missing one). The fs replaces an existing target atomically, or swaps
        the two entries for RENAME_EXCHANGE.
        """
        raise Errno(E.ENOTDIR)

    # --- symlinks -------------------------------------------------------
    def readlink(self) -> str:
        raise Errno(E.EINVAL)

    # --- regular files --------------------------------------------------
    def read(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes at ``offset`` (short or empty at end of file)."""
        raise Errno(E.EISDIR if _stat.S_ISDIR(self.mode) else E.EINVAL)

    def write(self, offset: int, data: bytes) -> int:
        """Write at ``offset``, growing the file (holes read as zeros)."""
        raise Errno(E.EISDIR if _stat.S_ISDIR(self.mode) else E.EINVAL)

    def sync(self) -> None:
        """Flush to backing store; nothing to do for in-memory filesystems."""

    def render(self) -> bytes | None:
        """Synthetic files (``/proc``) return their content as of now; others ``None``.

        The VFS calls this once per open, so each open file sees one consistent
        rendering, as with Linux's seq_file.
        """
        return None
