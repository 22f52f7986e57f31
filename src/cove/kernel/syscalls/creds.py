"""User and group identity: get*id, set*id, groups, capget/capset.

The rules are POSIX's as Linux applies them: a process with capabilities may
set any id; any other may only move among its real, effective and saved ids.
"Capabilities" here means the sandbox's root (effective uid 0, see
``proc_lookup.capable``); every id lives in the sandbox's own credential space
and maps to nothing on the host.

Credentials are per process in cove (``Process.creds``); glibc's set*id
broadcast to every thread therefore finds each one already changed, which
Linux allows. The VFS checks permissions with ``PathContext.cred`` (fsuid,
fsgid, groups); ``sync_fs_cred`` keeps it in step after every change.
"""

from __future__ import annotations

import struct

from cove.abi.errno import E, Errno
from cove.fs.perm import Cred
from cove.kernel.syscall import INT, PTR, UINT, syscall
from cove.kernel.syscalls.proc_lookup import capable, find_process, put_u32

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from cove.kernel.task import Creds, Process, Task

NOCHANGE = 0xFFFFFFFF  # (uid_t) -1
NGROUPS_MAX = 65536

# capget/capset: header versions and the capabilities Linux 6.1 knows.
CAP_V1, CAP_V2, CAP_V3 = 0x19980330, 0x20071026, 0x20080522
CAP_LAST_CAP = 40  # CAP_CHECKPOINT_RESTORE
CAP_FULL = (1 << (CAP_LAST_CAP + 1)) - 1
_CAP_HEADER = struct.Struct("<Ii")
_CAP_DATA = struct.Struct("<III")  # effective, permitted, inheritable (32 bits each)


def sync_fs_cred(proc: Process) -> None:
    """Give every thread of ``proc`` the VFS credentials its ids now imply."""
    c = proc.creds
    for th in proc.threads:
        th.fs.cred = Cred(c.fsuid, c.fsgid, c.groups)


def _commit(t: Task, new: Creds) -> int:
    t.proc.creds = new
    sync_fs_cred(t.proc)
    return 0


# --- queries ------------------------------------------------------------------
@syscall("getuid")
def getuid(t: Task) -> int:
    return t.proc.creds.ruid


@syscall("geteuid")
def geteuid(t: Task) -> int:
    return t.proc.creds.euid


@syscall("getgid")
def getgid(t: Task) -> int:
    return t.proc.creds.rgid


@syscall("getegid")
def getegid(t: Task) -> int:
    return t.proc.creds.egid


@syscall("getresuid", PTR, PTR, PTR)
def getresuid(t: Task, ruid: int, euid: int, suid: int) -> int:
    c = t.proc.creds
    put_u32(t, ruid, c.ruid)
    put_u32(t, euid, c.euid)
    put_u32(t, suid, c.suid)
    return 0


@syscall("getresgid", PTR, PTR, PTR)
def getresgid(t: Task, rgid: int, egid: int, sgid: int) -> int:
    c = t.proc.creds
    put_u32(t, rgid, c.rgid)
    put_u32(t, egid, c.egid)
    put_u32(t, sgid, c.sgid)
    return 0


@syscall("getgroups", INT, PTR)
def getgroups(t: Task, size: int, addr: int) -> int:
    groups = t.proc.creds.groups
    if size < 0:
        raise Errno(E.EINVAL)
    if size:
        if len(groups) > size:
            raise Errno(E.EINVAL)
        t.mm.write(addr, struct.pack(f"<{len(groups)}I", *groups))
    return len(groups)


@syscall("setgroups", INT, PTR)
def setgroups(t: Task, size: int, addr: int) -> int:
    if not capable(t):
        raise Errno(E.EPERM)
    if not 0 <= size <= NGROUPS_MAX:
        raise Errno(E.EINVAL)
    groups = struct.unpack(f"<{size}I", t.mm.read(addr, 4 * size)) if size else ()
    new = t.proc.creds.copy()
    new.groups = tuple(sorted(groups))
    return _commit(t, new)


# --- user ids -------------------------------------------------------------------
@syscall("setuid", UINT)
def setuid(t: Task, uid: int) -> int:
    if uid == NOCHANGE:
        raise Errno(E.EINVAL)
    old, new = t.proc.creds, t.proc.creds.copy()
    if capable(t):
        new.ruid = new.suid = uid
    elif uid not in (old.ruid, old.suid):
        raise Errno(E.EPERM)
    new.euid = new.fsuid = uid
    return _commit(t, new)


@syscall("setreuid", UINT, UINT)
def setreuid(t: Task, ruid: int, euid: int) -> int:
    old, new = t.proc.creds, t.proc.creds.copy()
    priv = capable(t)
    if ruid != NOCHANGE:
        if not priv and ruid not in (old.ruid, old.euid):
            raise Errno(E.EPERM)
        new.ruid = ruid
    if euid != NOCHANGE:
        if not priv and euid not in (old.ruid, old.euid, old.suid):
            raise Errno(E.EPERM)
        new.euid = euid
    # The saved id follows the effective one whenever the real id is set or
    # the effective id becomes something other than the old real id.
    if ruid != NOCHANGE or (euid != NOCHANGE and euid != old.ruid):
        new.suid = new.euid
    new.fsuid = new.euid
    return _commit(t, new)


@syscall("setresuid", UINT, UINT, UINT)
def setresuid(t: Task, ruid: int, euid: int, suid: int) -> int:
    old = t.proc.creds
    allowed = (old.ruid, old.euid, old.suid)
    if not capable(t) and any(v != NOCHANGE and v not in allowed for v in (ruid, euid, suid)):
        raise Errno(E.EPERM)
    new = old.copy()
    if ruid != NOCHANGE:
        new.ruid = ruid
    if euid != NOCHANGE:
        new.euid = euid
    if suid != NOCHANGE:
        new.suid = suid
    new.fsuid = new.euid
    return _commit(t, new)


@syscall("setfsuid", UINT)
def setfsuid(t: Task, uid: int) -> int:
    """Returns the previous fsuid, whether or not it changed (Linux's ABI)."""
    old = t.proc.creds
    before = old.fsuid
    if uid != NOCHANGE and (capable(t) or uid in (old.ruid, old.euid, old.suid, old.fsuid)):
        new = old.copy()
        new.fsuid = uid
        _commit(t, new)
    return before


# --- group ids ------------------------------------------------------------------
@syscall("setgid", UINT)
def setgid(t: Task, gid: int) -> int:
    if gid == NOCHANGE:
        raise Errno(E.EINVAL)
    old, new = t.proc.creds, t.proc.creds.copy()
    if capable(t):
        new.rgid = new.sgid = gid
    elif gid not in (old.rgid, old.sgid):
        raise Errno(E.EPERM)
    new.egid = new.fsgid = gid
    return _commit(t, new)


@syscall("setregid", UINT, UINT)
def setregid(t: Task, rgid: int, egid: int) -> int:
    old, new = t.proc.creds, t.proc.creds.copy()
    priv = capable(t)
    if rgid != NOCHANGE:
        if not priv and rgid not in (old.rgid, old.egid):
            raise Errno(E.EPERM)
        new.rgid = rgid
    if egid != NOCHANGE:
        if not priv and egid not in (old.rgid, old.egid, old.sgid):
            raise Errno(E.EPERM)
        new.egid = egid
    if rgid != NOCHANGE or (egid != NOCHANGE and egid != old.rgid):
        new.sgid = new.egid
    new.fsgid = new.egid
    return _commit(t, new)


@syscall("setresgid", UINT, UINT, UINT)
def setresgid(t: Task, rgid: int, egid: int, sgid: int) -> int:
    old = t.proc.creds
    allowed = (old.rgid, old.egid, old.sgid)
    if not capable(t) and any(v != NOCHANGE and v not in allowed for v in (rgid, egid, sgid)):
        raise Errno(E.EPERM)
    new = old.copy()
    if rgid != NOCHANGE:
        new.rgid = rgid
    if egid != NOCHANGE:
        new.egid = egid
    if sgid != NOCHANGE:
        new.sgid = sgid
    new.fsgid = new.egid
    return _commit(t, new)


@syscall("setfsgid", UINT)
def setfsgid(t: Task, gid: int) -> int:
    old = t.proc.creds
    before = old.fsgid
    if gid != NOCHANGE and (capable(t) or gid in (old.rgid, old.egid, old.sgid, old.fsgid)):
        new = old.copy()
        new.fsgid = gid
        _commit(t, new)
    return before


# --- capabilities -----------------------------------------------------------------
def _cap_words(t: Task, hdr: int) -> int:
    """How many 32-bit words of each set the header's version carries; an
    unknown version is answered with the preferred one and EINVAL."""
    version = int(struct.unpack("<I", t.mm.read(hdr, 4))[0])
    if version == CAP_V1:
        return 1
    if version in (CAP_V2, CAP_V3):
        return 2
    t.mm.write(hdr, struct.pack("<I", CAP_V3))
    raise Errno(E.EINVAL)


def caps_of(proc: Process) -> int:
    """The effective (= permitted) capability set: all of them for sandbox root."""
    return CAP_FULL if proc.creds.euid == 0 else 0


@syscall("capget", PTR, PTR)
def capget(t: Task, hdr: int, data: int) -> int:
    try:
        words = _cap_words(t, hdr)
    except Errno as e:
        # A version probe (NULL data) is answered by the header alone.
        if data == 0 and e.errno == E.EINVAL:
            return 0
        raise
    if data == 0:
        return 0
    _, pid = _CAP_HEADER.unpack(t.mm.read(hdr, _CAP_HEADER.size))
    if pid < 0:
        raise Errno(E.EINVAL)
    caps = caps_of(find_process(t, pid))
    out = b"".join(_CAP_DATA.pack((caps >> (32 * i)) & 0xFFFFFFFF,
                                  (caps >> (32 * i)) & 0xFFFFFFFF, 0) for i in range(words))
    t.mm.write(data, out)
    return 0


@syscall("capset", PTR, PTR, support="partial",
         note="capability sets follow the effective uid; requests that would change them fail")
def capset(t: Task, hdr: int, data: int) -> int:
    words = _cap_words(t, hdr)
    _, pid = _CAP_HEADER.unpack(t.mm.read(hdr, _CAP_HEADER.size))
    if pid != 0 and pid != t.pid:
        raise Errno(E.EPERM)
    raw = t.mm.read(data, _CAP_DATA.size * words)
    eff = perm = inh = 0
    for i in range(words):
        e, p, h = _CAP_DATA.unpack_from(raw, _CAP_DATA.size * i)
        eff |= e << (32 * i)
        perm |= p << (32 * i)
        inh |= h << (32 * i)
    have = caps_of(t.proc)
    if words == 1:  # a v1 caller leaves the upper word as it is
        eff |= have & ~0xFFFFFFFF
        perm |= have & ~0xFFFFFFFF
    # Linux's rules first: nothing beyond the permitted set.
    if perm & ~have or eff & ~perm or inh & ~(have):
        raise Errno(E.EPERM)
    # cove derives capabilities from the uid and cannot hold a reduced set;
    # refusing is honest where accepting would leave the caps in force.
    if perm != have or eff != have or inh:
        raise Errno(E.EPERM)
    return 0
