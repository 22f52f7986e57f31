"""stat, fstat, lstat, newfstatat, statx, statfs, fstatfs, access, faccessat,
faccessat2.

``Stat.dev``/``Stat.rdev`` are encoded dev_t values (``node.makedev``); statx
splits them with ``major``/``minor``. statx reports the basic stats and the
mount id whatever the request mask asks, and the birth time when asked for
and the filesystem keeps one, as Linux 6.x does.
"""

from __future__ import annotations

from cove.abi import flags as F
from cove.abi.errno import E, Errno
from cove.abi.structs.fs import STAT, STATFS, STATX
from cove.fs import perm
from cove.fs.file import File
from cove.fs.mount import MS_NOEXEC, Location
from cove.fs.node import S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, Stat, StatFs, major, minor
from cove.fs.vfs import PathContext
from cove.kernel.syscall import FD, INT, PATH, PTR, UINT, syscall
from cove.kernel.syscalls.fs_at import (
    AT_FDCWD,
    access_context,
    fd_location,
    read_path,
    start_dir,
    stat_at,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from cove.kernel.task import Task

NS = 1_000_000_000
ST_VALID = 0x20
ANON_INODE_FS_MAGIC = 0x09041934
STATX_ATTRS_KNOWN = F.STATX_ATTR_MOUNT_ROOT  # the one attribute cove reports
FSTATAT_FLAGS = F.AT_SYMLINK_NOFOLLOW | F.AT_NO_AUTOMOUNT | F.AT_EMPTY_PATH
STATX_FLAGS = FSTATAT_FLAGS | F.AT_STATX_SYNC_TYPE
ACCESS_FLAGS = F.AT_EACCESS | F.AT_SYMLINK_NOFOLLOW | F.AT_EMPTY_PATH


def pack_stat(st: Stat) -> bytes:
    a, an = divmod(st.atime_ns, NS)
    m, mn = divmod(st.mtime_ns, NS)
    c, cn = divmod(st.ctime_ns, NS)
    return STAT.pack(st.dev, st.ino, st.nlink, st.mode, st.uid & 0xFFFFFFFF,
                     st.gid & 0xFFFFFFFF, st.rdev, st.size, st.blksize, st.blocks,
                     a, an, m, mn, c, cn)


def pack_statx(st: Stat, loc: Location | None, request: int) -> bytes:
    mask = F.STATX_BASIC_STATS
    attrs = 0
    mnt_id = 0
    if loc is not None:
        mask |= F.STATX_MNT_ID
        mnt_id = loc.mount.id
        if loc.is_mount_root:
            attrs |= F.STATX_ATTR_MOUNT_ROOT
    if st.btime_ns and request & F.STATX_BTIME:
        mask |= F.STATX_BTIME
    a, an = divmod(st.atime_ns, NS)
    b, bn = divmod(st.btime_ns, NS)
    c, cn = divmod(st.ctime_ns, NS)
    m, mn = divmod(st.mtime_ns, NS)
    return STATX.build(
        stx_mask=mask, stx_blksize=st.blksize, stx_attributes=attrs, stx_nlink=st.nlink,
        stx_uid=st.uid & 0xFFFFFFFF, stx_gid=st.gid & 0xFFFFFFFF, stx_mode=st.mode & 0xFFFF,
        stx_ino=st.ino, stx_size=st.size, stx_blocks=st.blocks,
        stx_attributes_mask=STATX_ATTRS_KNOWN,
        stx_atime_tv_sec=a, stx_atime_tv_nsec=an, stx_btime_tv_sec=b, stx_btime_tv_nsec=bn,
        stx_ctime_tv_sec=c, stx_ctime_tv_nsec=cn, stx_mtime_tv_sec=m, stx_mtime_tv_nsec=mn,
        stx_rdev_major=major(st.rdev), stx_rdev_minor=minor(st.rdev),
        stx_dev_major=major(st.dev), stx_dev_minor=minor(st.dev), stx_mnt_id=mnt_id)


def _path_or_null(t: Task, ptr: int, flags: int) -> str:
    """stat-family paths: NULL with AT_EMPTY_PATH means the fd (Linux 6.11)."""
    if ptr == 0 and flags & F.AT_EMPTY_PATH:
        return ""
    return read_path(t, ptr)


@syscall("stat", PATH, PTR)
def stat(t: Task, path: str, buf: int) -> int:
    st, _ = stat_at(t, AT_FDCWD, path, 0)
    t.mm.write(buf, pack_stat(st))
    return 0


@syscall("lstat", PATH, PTR)
def lstat(t: Task, path: str, buf: int) -> int:
    st, _ = stat_at(t, AT_FDCWD, path, F.AT_SYMLINK_NOFOLLOW)
    t.mm.write(buf, pack_stat(st))
    return 0


@syscall("fstat", FD, PTR)
def fstat(t: Task, fd: int, buf: int) -> int:
    st = t.files.get(fd).stat()
    t.mm.write(buf, pack_stat(st))
    return 0


@syscall("newfstatat", FD, PTR, PTR, INT)
def newfstatat(t: Task, dirfd: int, upath: int, buf: int, flags: int) -> int:
    if flags & ~FSTATAT_FLAGS:
        raise Errno(E.EINVAL)
    path = _path_or_null(t, upath, flags)
    st, _ = stat_at(t, dirfd, path, flags)
    t.mm.write(buf, pack_stat(st))
    return 0


@syscall("statx", FD, PTR, INT, UINT, PTR)
def statx(t: Task, dirfd: int, upath: int, flags: int, mask: int, buf: int) -> int:
    if flags & ~STATX_FLAGS or flags & F.AT_STATX_SYNC_TYPE == F.AT_STATX_SYNC_TYPE:
        raise Errno(E.EINVAL)
    if mask & F.STATX__RESERVED:
        raise Errno(E.EINVAL)
    path = _path_or_null(t, upath, flags)
    st, loc = stat_at(t, dirfd, path, flags)
    t.mm.write(buf, pack_statx(st, loc, mask))
    return 0


# --- statfs ------------------------------------------------------------------------------
def pack_statfs(sf: StatFs, loc: Location | None) -> bytes:
    flags = ST_VALID | sf.flags
    dev = 0
    if loc is not None:
        flags |= loc.mount.flags & 0xF  # MS_RDONLY/NOSUID/NODEV/NOEXEC are ST_* too
        dev = loc.mount.fs.dev
    return STATFS.pack(sf.fstype, sf.bsize, sf.blocks, sf.bfree, sf.bavail, sf.files,
                       sf.ffree, dev & 0x7FFFFFFF, 0, sf.namelen, sf.frsize, flags)


def file_statfs(f: File) -> tuple[StatFs, Location | None]:
    """What fstatfs reports for ``f``: its filesystem, or a File's own ``statfs()``
    (pipes and sockets live on filesystems of their own), else anon_inodefs."""
    own = getattr(f, "statfs", None)
    if callable(own):
        return own(), None
    if f.location is not None:
        return f.location.mount.fs.statfs(), f.location
    return StatFs(fstype=ANON_INODE_FS_MAGIC), None


@syscall("statfs", PATH, PTR)
def statfs(t: Task, path: str, buf: int) -> int:
    loc = t.kernel.vfs.resolve(t.fs, None, path)
    t.mm.write(buf, pack_statfs(loc.mount.fs.statfs(), loc))
    return 0


@syscall("fstatfs", FD, PTR)
def fstatfs(t: Task, fd: int, buf: int) -> int:
    sf, loc = file_statfs(t.files.get(fd))
    t.mm.write(buf, pack_statfs(sf, loc))
    return 0


# --- access ------------------------------------------------------------------------------
def access_location(ctx: PathContext, loc: Location, mode: int) -> None:
    """``do_faccessat`` after lookup: permission bits, EROFS for writes, noexec mounts."""
    if mode == F.F_OK:
        return
    st = loc.inode.stat()
    ftype = st.mode & S_IFMT
    if mode & F.W_OK and ftype in (S_IFREG, S_IFDIR, S_IFLNK) and (
            loc.mount.readonly or loc.mount.fs.readonly):
        raise Errno(E.EROFS)
    if mode & F.X_OK and ftype == S_IFREG and loc.mount.flags & MS_NOEXEC:
        raise Errno(E.EACCES)
    perm.check(st, ctx.cred, mode)


def do_access(t: Task, dirfd: int, upath: int, mode: int, flags: int) -> int:
    if mode & ~0o7:
        raise Errno(E.EINVAL)
    if flags & ~ACCESS_FLAGS:
        raise Errno(E.EINVAL)
    path = read_path(t, upath)
    ctx = access_context(t, bool(flags & F.AT_EACCESS))
    if not path and flags & F.AT_EMPTY_PATH:
        loc = fd_location(t, dirfd)
    else:
        loc = t.kernel.vfs.resolve(ctx, start_dir(t, dirfd, path), path,
                                   follow=not flags & F.AT_SYMLINK_NOFOLLOW)
    access_location(ctx, loc, mode)
    return 0


@syscall("access", PTR, INT)
def access(t: Task, path: int, mode: int) -> int:
    return do_access(t, AT_FDCWD, path, mode, 0)


@syscall("faccessat", FD, PTR, INT)
def faccessat(t: Task, dirfd: int, path: int, mode: int) -> int:
    return do_access(t, dirfd, path, mode, 0)


@syscall("faccessat2", FD, PTR, INT, INT)
def faccessat2(t: Task, dirfd: int, path: int, mode: int, flags: int) -> int:
    return do_access(t, dirfd, path, mode, flags)
