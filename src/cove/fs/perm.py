"""Credentials and the Linux permission rules the VFS applies to every filesystem."""

from __future__ import annotations

from cove.abi.errno import E, Errno
from cove.dataclass import dataclass, field
from cove.fs.node import S_IFDIR, S_IFMT, S_ISVTX, Stat

MAY_EXEC = 1
MAY_WRITE = 2
MAY_READ = 4


@dataclass(slots=True)
class Cred:
    """Who a task is, as the filesystem sees it (fsuid/fsgid and groups).

    ``uid == 0`` stands for the capabilities root has in a user namespace that
    owns the sandbox (CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_CHOWN): the sandbox's
    root is root over the sandbox's own files and nothing else.
    """

    uid: int = 0
    gid: int = 0
    groups: tuple[int, ...] = field(default_factory=tuple)

    @property
    def is_root(self) -> bool:
        return self.uid == 0

    def in_group(self, gid: int) -> bool:
        return gid == self.gid or gid in self.groups


def permitted(st: Stat, cred: Cred, mask: int) -> bool:
    """``generic_permission``: may ``cred`` read/write/exec (``mask`` of MAY_*) this inode?"""
    mode = st.mode
    if cred.is_root:
        # DAC override: everything but exec of a file with no x bit at all.
        if mask & MAY_EXEC and mode & S_IFMT != S_IFDIR and not mode & 0o111:
            return False
        return True
    if st.uid == cred.uid:
        bits = (mode >> 6) & 7
    elif cred.in_group(st.gid):
        bits = (mode >> 3) & 7
    else:
        bits = mode & 7
    return mask & bits == mask


def check(st: Stat, cred: Cred, mask: int) -> None:
    if not permitted(st, cred, mask):
        raise Errno(E.EACCES)


def check_sticky(dir_st: Stat, victim_st: Stat, cred: Cred) -> None:
    """Only the owner of a file, of the directory, or root may remove or rename
    an entry of a sticky directory (``/tmp``)."""
    if not dir_st.mode & S_ISVTX or cred.is_root:
        return
    if cred.uid not in (victim_st.uid, dir_st.uid):
        raise Errno(E.EPERM)


def is_owner(st: Stat, cred: Cred) -> bool:
    """``inode_owner_or_capable``: may change mode and times."""
    return cred.is_root or st.uid == cred.uid
