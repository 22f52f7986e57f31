"""hostfs: a read-only view of one host directory that can never be escaped.

The host kernel never resolves a path for us. The root is opened once; every
other host object is reached one validated name at a time, relative to its
parent directory's fd, and no symlink is ever followed (``openat2`` with
RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|RESOLVE_NO_MAGICLINKS where the kernel has
it, ``O_NOFOLLOW`` otherwise; stat with ``AT_SYMLINK_NOFOLLOW``). Symlinks are
data handed to the VFS, which resolves them inside the sandbox.

An inode is (parent inode, name, host identity (st_dev, st_ino), file type).
Host fds are a bounded cache, not owned by inodes: directory ``O_PATH`` fds and
regular-file read fds live in two LRUs. A miss re-opens the name from the
parent chain and checks it still is the same host object; if not, ``ENOENT``:
a swap on the host can make an inode vanish, never make it show another file.

Every use of a cached fd happens under ``fs.lock``, so eviction can never close
an fd another thread is using (a reused fd number could denote anything on the
host). The price: operations on one HostFS are serialized.

Known limits: an fd still cached keeps denoting its host object even if the
host renames it elsewhere (like a process's cwd); only a host with
``CAP_MKNOD`` racing a device node into the tree could make us open it (the
identity check then rejects it before any read).
"""

from __future__ import annotations

import ctypes
import errno as _host_errno
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterator

from cove.abi.errno import E, Errno, known
from cove.fs.node import (
    DT_DIR,
    DT_LNK,
    DT_REG,
    DT_UNKNOWN,
    S_IFBLK,
    S_IFCHR,
    S_IFDIR,
    S_IFLNK,
    S_IFMT,
    S_IFREG,
    S_IFSOCK,
    DirEntry,
    FileSystem,
    Inode,
    Stat,
    StatFs,
    dtype_of,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from typing import NoReturn

HOSTFS_SUPER_MAGIC = 0x00C0FFEE  # UML's hostfs; the host's own f_type would leak what backs us
ST_RDONLY, ST_NODEV = 1, 4

# Inodes on the root's host device keep their host number; anything else (a
# mount point inside the tree, a huge host ino) gets a number from here up.
_MAPPED_INO_BASE = 1 << 63

# What reading a non-regular inode answers, without touching the host. Device
# nodes behave as on a ``nodev`` mount; FIFOs and sockets are cove's business.
_NOT_READABLE = {S_IFDIR: E.EISDIR, S_IFCHR: E.EACCES, S_IFBLK: E.EACCES, S_IFSOCK: E.ENXIO}

# --- openat2(2) through ctypes ------------------------------------------------
_SYS_OPENAT2 = 437
_RESOLVE = 0x08 | 0x04 | 0x02  # RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS


class _OpenHow(ctypes.Structure):
    _fields_ = (("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64))


_syscall = ctypes.CDLL(None, use_errno=True).syscall
_syscall.restype = ctypes.c_long
_syscall.argtypes = (ctypes.c_long, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p,
                     ctypes.c_size_t)


def _openat2(dirfd: int, name: bytes, flags: int) -> int:
    how = _OpenHow(flags, 0, _RESOLVE)
    fd = _syscall(_SYS_OPENAT2, dirfd, name, ctypes.byref(how), ctypes.sizeof(how))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), name)
    return fd


def _probe_openat2() -> bool:
    try:
        os.close(_openat2(-100, b".", os.O_PATH | os.O_CLOEXEC))  # AT_FDCWD
    except OSError:  # ENOSYS before Linux 5.6, EPERM/ENOSYS under some seccomp filters
        return False
    return True


USE_OPENAT2 = _probe_openat2()  # tests flip it to exercise the O_NOFOLLOW fallback


def _open_at(dirfd: int, name: bytes, flags: int) -> int:
    """Open the single component ``name`` under ``dirfd`` without following a symlink."""
    flags |= os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return _openat2(dirfd, name, flags) if USE_OPENAT2 else os.open(name, flags, dir_fd=dirfd)
    except PermissionError:
        # O_NOATIME needs ownership or CAP_FOWNER; it only spares the host's atime.
        if not flags & os.O_NOATIME:
            raise
        return _open_at(dirfd, name, flags & ~os.O_NOATIME)


# --- helpers -------------------------------------------------------------------
def _errno(e: OSError) -> Errno:
    """The Linux errno for a host error (the host is Linux, so numbers agree)."""
    if e.errno is not None and known(e.errno):
        return Errno(e.errno, "host")
    return Errno(E.EIO, f"host errno {e.errno}")


def _gone(e: OSError) -> Errno:
    # We never ask to follow, so ELOOP/ENOTDIR mean another kind of file sits there now.
    if e.errno in (_host_errno.ELOOP, _host_errno.ENOTDIR):
        return Errno(E.ENOENT, "replaced on the host")
    return _errno(e)


def _component(name: str) -> bytes:
    """``name`` as one host path component; anything else is refused as absent."""
    try:
        b = os.fsencode(name)
    except (UnicodeEncodeError, TypeError):
        raise Errno(E.ENOENT, "bad name") from None
    if b in (b"", b".", b"..") or b"/" in b or b"\0" in b:
        raise Errno(E.ENOENT, "bad name")
    return b


def _dtype(entry: os.DirEntry[str]) -> int:
    try:
        if entry.is_symlink():
            return DT_LNK
        if entry.is_dir(follow_symlinks=False):
            return DT_DIR
        if entry.is_file(follow_symlinks=False):
            return DT_REG
        return dtype_of(entry.stat(follow_symlinks=False).st_mode)
    except OSError:  # removed on the host meanwhile
        return DT_UNKNOWN


class _FdCache:
    """At most ``size`` host fds keyed by cove ino; the least recently used is closed."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.fds: OrderedDict[int, int] = OrderedDict()

    def get(self, key: int) -> int | None:
        fd = self.fds.get(key)
        if fd is not None:
            self.fds.move_to_end(key)
        return fd

    def put(self, key: int, fd: int) -> None:
        old = self.fds.pop(key, None)
        if old is not None:  # only if a host bind mount makes a directory its own ancestor
            os.close(old)
        self.fds[key] = fd
        while len(self.fds) > self.size:
            os.close(self.fds.popitem(last=False)[1])

    def close(self) -> None:
        while self.fds:
            os.close(self.fds.popitem()[1])


def _close_all(root_fd: int, *caches: _FdCache) -> None:
    for cache in caches:
        cache.close()
    os.close(root_fd)


# --- the filesystem -------------------------------------------------------------
class HostFS(FileSystem):
    """A read-only view of ``host_dir``.

    ``owner=(uid, gid)`` makes every file appear owned by that sandbox user
    (default: the host's numbers). ``dir_fds``/``file_fds`` bound how many host
    fds are held at once (plus one for the root).
    """

    name = "hostfs"
    magic = HOSTFS_SUPER_MAGIC

    def __init__(self, host_dir: str, *, owner: tuple[int, int] | None = None,
                 dir_fds: int = 128, file_fds: int = 64) -> None:
        super().__init__(readonly=True)
        if dir_fds < 2 or file_fds < 1:  # _dirfd needs the previous fd of a chain to survive
            raise ValueError("hostfs needs dir_fds >= 2 and file_fds >= 1")
        self.owner = owner
        self.lock = threading.RLock()
        self._dir_fds = _FdCache(dir_fds)
        self._file_fds = _FdCache(file_fds)
        self._inos: dict[tuple[int, int], int] = {}
        self._root_fd = os.open(host_dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        st = os.fstat(self._root_fd)
        self._root_dev = st.st_dev
        self._root = HostInode(self, None, b"", (st.st_dev, st.st_ino), S_IFDIR)
        self._finalizer = weakref.finalize(self, _close_all, self._root_fd,
                                           self._dir_fds, self._file_fds)

    @property
    def root(self) -> HostInode:
        return self._root

    def statfs(self) -> StatFs:
        # Sizes and the host's f_type would describe the host; report nothing of it.
        return StatFs(fstype=self.magic, namelen=255, flags=ST_RDONLY | ST_NODEV)

    def close(self) -> None:
        """Close every host fd; later operations fail with EIO."""
        with self.lock:
            self._root_fd = -1
            self._finalizer()

    def open_fds(self) -> int:
        """How many host fds this filesystem holds now."""
        with self.lock:
            held = len(self._dir_fds.fds) + len(self._file_fds.fds)
            return held + (self._root_fd >= 0)

    # --- internals; callers hold self.lock --------------------------------
    def _ino_for(self, ident: tuple[int, int]) -> int:
        if ident[0] == self._root_dev and ident[1] < _MAPPED_INO_BASE:
            return ident[1]
        ino = self._inos.get(ident)
        if ino is None:
            ino = self._inos[ident] = _MAPPED_INO_BASE + len(self._inos)
        return ino

    def _dirfd(self, node: HostInode) -> int:
        """An O_PATH fd of directory ``node``, valid until the next cache insertion."""
        if self._root_fd < 0:
            raise Errno(E.EIO, "hostfs closed")
        missing: list[HostInode] = []
        while node._parent is not None:
            fd = self._dir_fds.get(node.ino)
            if fd is not None:
                break
            missing.append(node)
            node = node._parent
        else:
            fd = self._root_fd
        # Re-derive downwards; each step's fd is the newest entry, so it survives
        # the eviction the next put may do (dir_fds >= 2).
        for child in reversed(missing):
            fd = self._open_verified(fd, child, os.O_PATH | os.O_DIRECTORY)
            self._dir_fds.put(child.ino, fd)
        return fd

    def _open_verified(self, dirfd: int, node: HostInode, flags: int) -> int:
        """Open ``node`` by name under ``dirfd``, refusing anything but the very same object."""
        try:
            fd = _open_at(dirfd, node._name, flags)
        except OSError as e:
            raise _gone(e) from None
        try:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != node._ident or S_IFMT & st.st_mode != node._type:
                raise Errno(E.ENOENT, "replaced on the host")
        except BaseException:
            os.close(fd)
            raise
        return fd


class HostInode(Inode):
    """One host object, found as ``_name`` in ``_parent`` (``None`` for the root)."""

    __slots__ = ("__weakref__", "_ident", "_name", "_parent", "_type", "fs", "ino")

    def __init__(self, fs: HostFS, parent: HostInode | None, name: bytes,
                 ident: tuple[int, int], ftype: int) -> None:
        self.fs = fs
        self._parent = parent
        self._name = name
        self._ident = ident
        self._type = ftype
        self.ino = fs._ino_for(ident)

    def __repr__(self) -> str:
        return f"HostInode(ino={self.ino}, name={self._name!r}, type={self._type:o})"

    @property
    def ftype(self) -> int:
        # Part of the identity: a host object of another type is never this inode.
        return self._type

    def _host_stat(self) -> os.stat_result:
        """One stat of the name as the host has it now (OSError or Errno)."""
        fs = self.fs
        with fs.lock:
            if self._parent is None:
                return os.stat(fs._dirfd(self))
            return os.stat(self._name, dir_fd=fs._dirfd(self._parent), follow_symlinks=False)

    def _same_object(self, st: os.stat_result) -> bool:
        return (st.st_dev, st.st_ino) == self._ident and S_IFMT & st.st_mode == self._type

    def revalidate(self) -> int | None:
        """Whether the name still denotes this very host object (one stat): its
        st_ctime_ns if so (a reused inode number shows as a new ctime), else None."""
        try:
            st = self._host_stat()
        except (OSError, Errno):
            return None
        return st.st_ctime_ns if self._same_object(st) else None

    def stat(self) -> Stat:
        fs = self.fs
        try:
            st = self._host_stat()
        except OSError as e:
            raise _errno(e) from None
        if not self._same_object(st):
            raise Errno(E.ENOENT, "replaced on the host")
        uid, gid = fs.owner if fs.owner is not None else (st.st_uid, st.st_gid)
        return Stat(ino=self.ino, mode=st.st_mode, nlink=st.st_nlink, uid=uid, gid=gid,
                    size=st.st_size, rdev=st.st_rdev, dev=fs.dev, blksize=st.st_blksize,
                    blocks=st.st_blocks, atime_ns=st.st_atime_ns, mtime_ns=st.st_mtime_ns,
                    ctime_ns=st.st_ctime_ns)

    # --- directories ----------------------------------------------------
    def lookup(self, name: str) -> HostInode:
        if self._type != S_IFDIR:
            raise Errno(E.ENOTDIR)
        component = _component(name)
        fs = self.fs
        with fs.lock:
            try:
                st = os.stat(component, dir_fd=fs._dirfd(self), follow_symlinks=False)
            except OSError as e:
                raise _errno(e) from None
            return HostInode(fs, self, component, (st.st_dev, st.st_ino), S_IFMT & st.st_mode)

    def parent(self) -> HostInode:
        if self._type != S_IFDIR:
            raise Errno(E.ENOTDIR)
        return self if self._parent is None else self._parent

    def readdir(self) -> Iterator[DirEntry]:
        if self._type != S_IFDIR:
            raise Errno(E.ENOTDIR)
        fs = self.fs
        dev = self._ident[0]
        with fs.lock:
            try:
                # getdents needs a real open fd; "." under our O_PATH fd is this very directory.
                fd = _open_at(fs._dirfd(self), b".", os.O_RDONLY | os.O_DIRECTORY | os.O_NOATIME)
            except OSError as e:
                raise _errno(e) from None
            try:
                with os.scandir(fd) as it:
                    entries = [DirEntry(e.name, fs._ino_for((dev, e.inode())), _dtype(e))
                               for e in it]
            except OSError as e:
                raise _errno(e) from None
            finally:
                os.close(fd)
        entries.sort(key=lambda d: d.name)  # host order is hash order; be deterministic
        return iter(entries)

    # --- symlinks -------------------------------------------------------
    def readlink(self) -> str:
        if self._type != S_IFLNK:
            raise Errno(E.EINVAL)
        fs = self.fs
        assert self._parent is not None  # the root is a directory
        with fs.lock:
            fd = fs._open_verified(fs._dirfd(self._parent), self, os.O_PATH)
        try:
            # readlinkat(fd, "") reads the link the O_PATH fd denotes: no name, no race.
            return os.fsdecode(os.readlink(b"", dir_fd=fd))
        except OSError as e:
            raise _errno(e) from None
        finally:
            os.close(fd)

    # --- regular files --------------------------------------------------
    def read(self, offset: int, size: int) -> bytes:
        if self._type != S_IFREG:
            raise Errno(_NOT_READABLE.get(self._type, E.EINVAL))
        if offset < 0 or size < 0:
            raise Errno(E.EINVAL)
        fs = self.fs
        assert self._parent is not None
        with fs.lock:
            fd = fs._file_fds.get(self.ino)
            if fd is None:
                # Never via /proc/self/fd (a magic link): reopen the name and verify.
                # O_NONBLOCK|O_NOCTTY make a FIFO or tty raced in harmless until rejected.
                flags = os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK | os.O_NOATIME
                fd = fs._open_verified(fs._dirfd(self._parent), self, flags)
                fs._file_fds.put(self.ino, fd)
            try:
                return os.pread(fd, size, offset)
            except OSError as e:
                raise _errno(e) from None

    # --- every change: read-only ------------------------------------------
    def _refuse(self, *args: object, **kwargs: object) -> NoReturn:
        raise Errno(E.EROFS)

    setattr = create = mkdir = mknod = symlink = link = unlink = rmdir = rename = write = _refuse
