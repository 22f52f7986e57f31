"""fcntl and flock.

F_GETPIPE_SZ/F_SETPIPE_SZ go to ``cove.kernel.pipe.pipe_fcntl`` (EBADF for
non-pipes); any other command unknown here goes to the File's optional
``fcntl(t, cmd, arg) -> int`` method, else EINVAL.

F_SETOWN/F_SETSIG and friends are recorded on the open file description
(``f.owner``: (F_OWNER_* type, id), ``f.signum``) for whoever delivers SIGIO;
cove itself does not deliver SIGIO yet.
"""

from __future__ import annotations

import struct

from cove.abi import flags as F
from cove.abi.errno import E, Errno
from cove.abi.structs.fs import FLOCK
from cove.fs.file import O_PATH, SETFL_MASK, File, InodeFile
from cove.fs.perm import is_owner
from cove.kernel.syscall import FD, UINT, ULONG, syscall
from cove.kernel.syscalls import fs_locks, fs_memfd

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from cove.kernel.task import Task

OFFSET_MAX = fs_locks.OFFSET_MAX
PATH_OK = (F.F_DUPFD, F.F_DUPFD_CLOEXEC, F.F_GETFD, F.F_SETFD, F.F_GETFL)
LOCK_CMDS = (F.F_GETLK, F.F_SETLK, F.F_SETLKW, F.F_OFD_GETLK, F.F_OFD_SETLK,
             F.F_OFD_SETLKW)
RWH_WRITE_LIFE_EXTREME = 5
_U64 = struct.Struct("<Q")
_OWNER_EX = struct.Struct("<iI")  # struct f_owner_ex: int type; pid_t pid


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


# --- record locks -------------------------------------------------------------------------
def _to_range(f: File, whence: int, l_start: int, l_len: int) -> tuple[int, int]:
    """``flock_to_posix_lock``: an inclusive [start, end] byte range."""
    if whence == F.SEEK_SET:
        base = 0
    elif whence == F.SEEK_CUR:
        base = getattr(f, "pos", 0)
    elif whence == F.SEEK_END:
        base = f.stat().size
    else:
        raise Errno(E.EINVAL)
    if l_start > OFFSET_MAX - base:
        raise Errno(E.EOVERFLOW)
    start = base + l_start
    if start < 0:
        raise Errno(E.EINVAL)
    if l_len > 0:
        if l_len - 1 > OFFSET_MAX - start:
            raise Errno(E.EOVERFLOW)
        return start, start + l_len - 1
    if l_len < 0:
        if start + l_len < 0:
            raise Errno(E.EINVAL)
        return start + l_len, start - 1
    return start, OFFSET_MAX


def _lock(t: Task, f: File, cmd: int, arg: int) -> int:
    raw = bytearray(t.mm.read(arg, FLOCK.size))
    l_type, whence, l_start, l_len, l_pid = FLOCK.unpack_from(raw)
    ofd = cmd in (F.F_OFD_GETLK, F.F_OFD_SETLK, F.F_OFD_SETLKW)
    owner: object = f if ofd else t.files
    if cmd in (F.F_GETLK, F.F_OFD_GETLK):
        if l_type not in (F.F_RDLCK, F.F_WRLCK):
            raise Errno(E.EINVAL)
        start, end = _to_range(f, whence, l_start, l_len)
        if ofd and l_pid != 0:
            raise Errno(E.EINVAL)
        hit = fs_locks.get_record(t, f, owner, l_type, start, end)
        if hit is None:
            FLOCK.pack_into(raw, 0, F.F_UNLCK, whence, l_start, l_len, l_pid)
        else:
            length = 0 if hit.end == OFFSET_MAX else hit.end - hit.start + 1
            FLOCK.pack_into(raw, 0, hit.type, F.SEEK_SET, hit.start, length, hit.pid)
        t.mm.write(arg, raw)
        return 0
    start, end = _to_range(f, whence, l_start, l_len)
    if l_type not in (F.F_RDLCK, F.F_WRLCK, F.F_UNLCK):
        raise Errno(E.EINVAL)
    if (l_type == F.F_RDLCK and not f.readable) or (l_type == F.F_WRLCK and not f.writable):
        raise Errno(E.EBADF)
    if ofd and l_pid != 0:
        raise Errno(E.EINVAL)
    fs_locks.set_record(t, f, owner, ofd=ofd, type_=l_type, start=start, end=end,
                        wait=cmd in (F.F_SETLKW, F.F_OFD_SETLKW))
    return 0


# --- the rest ---------------------------------------------------------------------------
def _setown(t: Task, f: File, kind: int, who: int) -> int:
    if who and kind == F.F_OWNER_PGRP:
        if not any(p.pgid == who for p in t.kernel.processes.values()):
            raise Errno(E.ESRCH)
    elif who and kind == F.F_OWNER_TID:
        if who not in t.kernel.tasks:
            raise Errno(E.ESRCH)
    elif who and who not in t.kernel.processes:
        raise Errno(E.ESRCH)
    f.owner = (kind, who)  # type: ignore[attr-defined]
    return 0


def _getown(f: File) -> tuple[int, int]:
    return getattr(f, "owner", (F.F_OWNER_PID, 0))  # type: ignore[no-any-return]


@syscall("fcntl", FD, UINT, ULONG, support="partial",
         note="F_SETOWN/F_SETSIG are recorded but SIGIO is not sent; no leases or F_NOTIFY")
def fcntl(t: Task, fd: int, cmd: int, arg: int) -> int:
    f = t.files.get(fd)
    if f.flags & O_PATH and cmd not in PATH_OK:
        raise Errno(E.EBADF)
    if cmd in (F.F_DUPFD, F.F_DUPFD_CLOEXEC):
        if arg >= t.files.limit:
            raise Errno(E.EINVAL)
        return t.files.install(f, cloexec=cmd == F.F_DUPFD_CLOEXEC, start=arg)
    if cmd == F.F_GETFD:
        return F.FD_CLOEXEC if fd in t.files.cloexec else 0
    if cmd == F.F_SETFD:
        if arg & F.FD_CLOEXEC:
            t.files.cloexec.add(fd)
        else:
            t.files.cloexec.discard(fd)
        return 0
    if cmd == F.F_GETFL:
        return f.flags
    if cmd == F.F_SETFL:
        if arg & F.O_NOATIME and not f.flags & F.O_NOATIME and isinstance(f, InodeFile) \
                and not is_owner(f.inode.stat(), t.fs.cred):
            raise Errno(E.EPERM)
        f.flags = (f.flags & ~SETFL_MASK) | (arg & SETFL_MASK)
        return 0
    if cmd in LOCK_CMDS:
        return _lock(t, f, cmd, arg)
    if cmd == F.F_ADD_SEALS:
        return fs_memfd.add_seals(f, arg & 0xFFFFFFFF)
    if cmd == F.F_GET_SEALS:
        return fs_memfd.get_seals(f)
    if cmd == F.F_GETOWN:
        kind, who = _getown(f)
        return -who if kind == F.F_OWNER_PGRP else who
    if cmd == F.F_SETOWN:
        who = _s32(arg)
        if who == -(1 << 31):
            raise Errno(E.EINVAL)
        return _setown(t, f, F.F_OWNER_PGRP if who < 0 else F.F_OWNER_PID, abs(who))
    if cmd == F.F_GETOWN_EX:
        kind, who = _getown(f)
        t.mm.write(arg, _OWNER_EX.pack(kind, who))
        return 0
    if cmd == F.F_SETOWN_EX:
        kind, who = _OWNER_EX.unpack(t.mm.read(arg, _OWNER_EX.size))
        if kind not in (F.F_OWNER_TID, F.F_OWNER_PID, F.F_OWNER_PGRP):
            raise Errno(E.EINVAL)
        return _setown(t, f, kind, who)
    if cmd == F.F_GETSIG:
        return getattr(f, "signum", 0)  # type: ignore[no-any-return]
    if cmd == F.F_SETSIG:
        if arg > 64:
            raise Errno(E.EINVAL)
        f.signum = arg  # type: ignore[attr-defined]
        return 0
    if cmd == F.F_GETLEASE:
        return F.F_UNLCK  # cove grants no leases, so none is ever held
    if cmd == F.F_GET_RW_HINT:
        t.mm.write(arg, _U64.pack(getattr(f, "rw_hint", 0)))
        return 0
    if cmd == F.F_SET_RW_HINT:
        (hint,) = _U64.unpack(t.mm.read(arg, 8))
        if hint > RWH_WRITE_LIFE_EXTREME:
            raise Errno(E.EINVAL)
        f.rw_hint = hint  # type: ignore[attr-defined]
        return 0
    if cmd in (F.F_GETPIPE_SZ, F.F_SETPIPE_SZ):
        from cove.kernel.pipe import pipe_fcntl

        return pipe_fcntl(f, cmd, arg)  # EBADF for anything but a pipe
    own = getattr(f, "fcntl", None)
    if callable(own):
        return int(own(t, cmd, arg))
    raise Errno(E.EINVAL)


@syscall("flock", FD, UINT)
def flock(t: Task, fd: int, cmd: int) -> int:
    if cmd & 32:  # LOCK_MAND: ignored by Linux since 5.15
        return 0
    op = cmd & ~F.LOCK_NB
    if op not in (F.LOCK_SH, F.LOCK_EX, F.LOCK_UN):
        raise Errno(E.EINVAL)
    f = t.files.get(fd)
    if f.flags & O_PATH:
        raise Errno(E.EBADF)
    if op != F.LOCK_UN and not (f.readable or f.writable):
        raise Errno(E.EBADF)
    fs_locks.flock(t, f, op, bool(cmd & F.LOCK_NB))
    return 0

