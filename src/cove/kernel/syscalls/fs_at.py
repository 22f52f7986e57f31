"""Path arguments of the ``*at()`` calls, in one place: ``dirfd`` (AT_FDCWD or
a directory fd, O_PATH ones included), AT_EMPTY_PATH (the fd itself is the
target), paths that may be NULL, and the credentials access(2) checks with.

Linux order, kept here: an empty path without AT_EMPTY_PATH is ENOENT before
the dirfd is looked at; an absolute path never looks at the dirfd; a bad dirfd
is EBADF and a dirfd that is not a directory ENOTDIR.
"""

from __future__ import annotations

from cove.abi import flags as F
from cove.abi.errno import E, Errno
from cove.fs.file import File
from cove.fs.mount import Location
from cove.fs.node import S_IFDIR, S_IFMT, Stat
from cove.fs.perm import Cred
from cove.fs.vfs import PathContext
from cove.kernel.syscall import PATH

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from cove.kernel.task import Task

AT_FDCWD = F.AT_FDCWD


def start_dir(t: Task, dirfd: int, path: str) -> Location | None:
    """Where a relative ``path`` starts (None: the cwd, or ``path`` ignores it)."""
    if not path or path.startswith("/") or dirfd == AT_FDCWD:
        return None
    return dirfd_location(t, dirfd)


def dirfd_location(t: Task, dirfd: int) -> Location:
    """The directory ``dirfd`` names (AT_FDCWD: the cwd): EBADF, or ENOTDIR."""
    if dirfd == AT_FDCWD:
        return t.fs.cwd
    loc = t.files.get(dirfd).location
    if loc is None or loc.inode.mode & S_IFMT != S_IFDIR:
        raise Errno(E.ENOTDIR)
    return loc


def fd_file(t: Task, fd: int) -> File:
    """The open file ``fd`` names, O_PATH ones included (``fdget_raw``)."""
    return t.files.get(fd)


def fd_location(t: Task, fd: int) -> Location:
    """The location an fd (or AT_FDCWD: the cwd) names, for AT_EMPTY_PATH and f*()."""
    if fd == AT_FDCWD:
        return t.fs.cwd
    loc = t.files.get(fd).location
    if loc is None:
        # A pipe or socket: its inode lives outside the namespace and cove
        # keeps no attributes for it, so attribute changes cannot apply.
        raise Errno(E.EBADF)
    return loc


def read_path(t: Task, ptr: int) -> str:
    """A path argument decoded as the PATH decoder does (EFAULT for NULL)."""
    return PATH(t, ptr)  # type: ignore[no-any-return]


def resolve_at(t: Task, dirfd: int, path: str, flags: int = 0, *,
               follow: bool = True) -> Location:
    """The location ``dirfd`` + ``path`` names; an empty path with AT_EMPTY_PATH
    is the fd itself."""
    if not path and flags & F.AT_EMPTY_PATH:
        return fd_location(t, dirfd)
    return t.kernel.vfs.resolve(t.fs, start_dir(t, dirfd, path), path, follow=follow)


def stat_at(t: Task, dirfd: int, path: str, flags: int) -> tuple[Stat, Location | None]:
    """stat of ``dirfd`` + ``path`` (AT_EMPTY_PATH: any fd, pipes included) and
    its location when it has one."""
    follow = not flags & F.AT_SYMLINK_NOFOLLOW
    if not path and flags & F.AT_EMPTY_PATH:
        if dirfd == AT_FDCWD:
            return t.fs.cwd.inode.stat(), t.fs.cwd
        f = t.files.get(dirfd)
        return f.stat(), f.location
    loc = t.kernel.vfs.resolve(t.fs, start_dir(t, dirfd, path), path, follow=follow)
    return loc.inode.stat(), loc


def access_context(t: Task, effective: bool) -> PathContext:
    """The context access(2) checks with: real ids unless AT_EACCESS.

    ``t.fs.cred`` holds the fs ids; when the real ids differ, access checks
    (and the path search) run as a copy with the real uid and gid.
    """
    c = t.proc.creds
    if effective or (c.ruid == c.fsuid and c.rgid == c.fsgid):
        return t.fs
    ctx = t.fs
    return PathContext(ctx.root, ctx.cwd, Cred(c.ruid, c.rgid, ctx.cred.groups), ctx.umask)
