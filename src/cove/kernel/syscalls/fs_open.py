"""open, openat, openat2, creat, close, close_range, dup, dup2, dup3.

Flag handling follows Linux's ``build_open_how``/``build_open_flags``: the old
calls drop unknown bits, openat2 refuses them; O_PATH keeps only
O_DIRECTORY|O_NOFOLLOW|O_CLOEXEC; O_LARGEFILE is forced on (64-bit); the
open-time flags (O_CREAT, O_EXCL, O_NOCTTY, O_TRUNC) and O_CLOEXEC are not
kept in the description, so F_GETFL shows what Linux shows. A free fd is
found before the path is looked at (EMFILE first, as Linux).
"""

from __future__ import annotations

from cove.abi import flags as F
from cove.abi.errno import E, Errno
from cove.abi.structs.fs import OPEN_HOW
from cove.fs.mount import Location
from cove.fs.perm import is_owner
from cove.kernel.physmem import PAGE_SIZE
from cove.kernel.syscall import FD, INT, PATH, PTR, UINT, ULONG, syscall
from cove.kernel.syscalls import fs_resolve
from cove.kernel.syscalls.fs_at import AT_FDCWD, dirfd_location, read_path, start_dir

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from cove.kernel.task import Task

VALID_OPEN_FLAGS = (
    F.O_ACCMODE | F.O_CREAT | F.O_EXCL | F.O_NOCTTY | F.O_TRUNC | F.O_APPEND | F.O_NONBLOCK
    | F.O_DSYNC | F.FASYNC | F.O_DIRECT | F.O_LARGEFILE | F.O_DIRECTORY | F.O_NOFOLLOW
    | F.O_NOATIME | F.O_CLOEXEC | F.O_SYNC | F.O_PATH | F.O_TMPFILE)
O_PATH_FLAGS = F.O_DIRECTORY | F.O_NOFOLLOW | F.O_PATH | F.O_CLOEXEC
S_IALLUGO = 0o7777
OPEN_TIME_FLAGS = F.O_CREAT | F.O_EXCL | F.O_NOCTTY | F.O_TRUNC | F.O_CLOEXEC
CLOSE_RANGE_UNSHARE = 1 << 1
CLOSE_RANGE_CLOEXEC = 1 << 2


def _will_create(flags: int) -> bool:
    return bool(flags & (F.O_CREAT | F.O_TMPFILE_BIT))


def _check_free_fd(t: Task) -> None:
    files = t.files
    fd = 0
    while fd in files.files:
        fd += 1
    if fd >= files.limit:
        raise Errno(E.EMFILE)


def _validate(flags: int, mode: int, resolve: int) -> None:
    """``build_open_flags``: the checks every open makes (openat2's stricter ones
    are its own)."""
    if flags & (F.O_DIRECTORY | F.O_CREAT) == F.O_DIRECTORY | F.O_CREAT:
        raise Errno(E.EINVAL)
    if flags & F.O_TMPFILE_BIT:
        if not flags & F.O_DIRECTORY:
            raise Errno(E.EINVAL)
        if flags & F.O_ACCMODE not in (F.O_WRONLY, F.O_RDWR):
            raise Errno(E.EINVAL)
    if resolve & F.RESOLVE_CACHED and flags & (F.O_TRUNC | F.O_CREAT | F.O_TMPFILE_BIT):
        raise Errno(E.EAGAIN)


def do_open(t: Task, dirfd: int, path: str, flags: int, mode: int, resolve: int = 0) -> int:
    """Open ``path`` relative to ``dirfd`` with validated flags; returns the new fd."""
    _validate(flags, mode, resolve)
    _check_free_fd(t)
    vfs = t.kernel.vfs
    ctx = t.fs
    if resolve & ~F.RESOLVE_CACHED:
        if path.startswith("/") and not resolve & F.RESOLVE_IN_ROOT:
            if resolve & F.RESOLVE_BENEATH:
                raise Errno(E.EXDEV)
            start = ctx.root  # the dirfd is not looked at
        elif not path:
            raise Errno(E.ENOENT)
        else:
            start = dirfd_location(t, dirfd)
        fs_resolve.check(vfs, ctx, start, path, resolve,
                         follow_last=not flags & F.O_NOFOLLOW,
                         create=bool(flags & F.O_CREAT))
        ctx = fs_resolve.scoped_context(ctx, start, resolve)
        at: Location | None = start
    else:
        at = start_dir(t, dirfd, path)
    if flags & F.O_NOATIME and not ctx.cred.is_root:
        # Checked before O_TRUNC can act: only the owner may ask for it.
        try:
            loc = vfs.resolve(ctx, at, path, follow=not flags & F.O_NOFOLLOW)
        except Errno:
            pass
        else:
            if not is_owner(loc.inode.stat(), ctx.cred):
                raise Errno(E.EPERM)
    f = vfs.open(ctx, at, path, flags, mode)
    kept = flags & ~OPEN_TIME_FLAGS
    if flags & F.O_PATH:
        kept &= O_PATH_FLAGS
    elif flags & F.O_SYNC_BIT:
        kept |= F.O_DSYNC
    f.flags = kept
    f.opened_by = ctx.cred  # type: ignore[attr-defined]  # f_cred, for linkat
    if flags & F.O_TMPFILE_BIT and not flags & F.O_PATH:
        # linkat(AT_EMPTY_PATH) may give it a name, unless opened with O_EXCL.
        f.tmpfile_linkable = not flags & F.O_EXCL  # type: ignore[attr-defined]
    return t.files.install(f, cloexec=bool(flags & F.O_CLOEXEC))


def _old_how(flags: int, mode: int) -> tuple[int, int]:
    """``build_open_how`` for open/openat/creat: unknown bits dropped."""
    flags &= VALID_OPEN_FLAGS
    if flags & F.O_PATH:
        flags &= O_PATH_FLAGS
    else:
        flags |= F.O_LARGEFILE
    mode = mode & S_IALLUGO if _will_create(flags) else 0
    return flags, mode


@syscall("open", PATH, INT, UINT)
def open_(t: Task, path: str, flags: int, mode: int) -> int:
    flags, mode = _old_how(flags, mode)
    return do_open(t, AT_FDCWD, path, flags, mode)


@syscall("openat", FD, PATH, INT, UINT)
def openat(t: Task, dirfd: int, path: str, flags: int, mode: int) -> int:
    flags, mode = _old_how(flags, mode)
    return do_open(t, dirfd, path, flags, mode)


@syscall("creat", PATH, UINT)
def creat(t: Task, path: str, mode: int) -> int:
    flags, mode = _old_how(F.O_CREAT | F.O_WRONLY | F.O_TRUNC, mode)
    return do_open(t, AT_FDCWD, path, flags, mode)


@syscall("openat2", FD, PTR, PTR, ULONG)
def openat2(t: Task, dirfd: int, upath: int, uhow: int, size: int) -> int:
    if size < OPEN_HOW.size:
        raise Errno(E.EINVAL)
    if size > PAGE_SIZE:
        raise Errno(E.E2BIG)
    raw = t.mm.read(uhow, size)
    if any(raw[OPEN_HOW.size:]):
        raise Errno(E.E2BIG)  # a newer struct whose extensions cove does not know
    flags, mode, resolve = OPEN_HOW.unpack_from(raw)
    if flags & ~VALID_OPEN_FLAGS or resolve & ~fs_resolve.VALID_RESOLVE:
        raise Errno(E.EINVAL)
    if resolve & F.RESOLVE_BENEATH and resolve & F.RESOLVE_IN_ROOT:
        raise Errno(E.EINVAL)
    if _will_create(flags):
        if mode & ~S_IALLUGO:
            raise Errno(E.EINVAL)
    elif mode:
        raise Errno(E.EINVAL)
    if flags & F.O_PATH and flags & ~O_PATH_FLAGS:
        raise Errno(E.EINVAL)
    _validate(flags, mode, resolve)
    if not flags & F.O_PATH:
        flags |= F.O_LARGEFILE
    path = read_path(t, upath)
    return do_open(t, dirfd, path, flags, mode, resolve)


@syscall("close", FD)
def close(t: Task, fd: int) -> int:
    t.files.close(fd)
    return 0


@syscall("close_range", UINT, UINT, UINT)
def close_range(t: Task, first: int, last: int, flags: int) -> int:
    if flags & ~(CLOSE_RANGE_UNSHARE | CLOSE_RANGE_CLOEXEC):
        raise Errno(E.EINVAL)
    if first > last:
        raise Errno(E.EINVAL)
    if flags & CLOSE_RANGE_UNSHARE and t.files.users > 1:
        # This task gets its own copy of the table before closing anything.
        old = t.files
        t.files = old.fork()
        old.users -= 1
    t.files.close_range(first, last, only_cloexec=bool(flags & CLOSE_RANGE_CLOEXEC))
    return 0


@syscall("dup", FD)
def dup(t: Task, oldfd: int) -> int:
    f = t.files.get(oldfd)
    return t.files.install(f)


@syscall("dup2", FD, UINT)
def dup2(t: Task, oldfd: int, newfd: int) -> int:
    f = t.files.get(oldfd)
    if newfd == oldfd:
        return newfd
    if newfd >= t.files.limit:
        raise Errno(E.EBADF)
    t.files.install_at(newfd, f)
    return newfd


@syscall("dup3", FD, UINT, INT)
def dup3(t: Task, oldfd: int, newfd: int, flags: int) -> int:
    if flags & ~F.O_CLOEXEC:
        raise Errno(E.EINVAL)
    if newfd == oldfd:
        raise Errno(E.EINVAL)
    if newfd >= t.files.limit:
        raise Errno(E.EBADF)
    f = t.files.get(oldfd)
    t.files.install_at(newfd, f, cloexec=bool(flags & F.O_CLOEXEC))
    return newfd
