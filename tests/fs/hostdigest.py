"""The state of a host tree, read without following any symlink: what the
"the host is never modified" checks compare before and after."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path


def tree_state(path: str | Path, *, owners_and_times: bool = True) -> list[tuple[object, ...]]:
    """Every entry under ``path``: mode, size, inode and sha256 or link target;
    with ``owners_and_times`` also uid, gid and mtime (tests that rename inside
    the tree on purpose leave those out)."""
    out: list[tuple[object, ...]] = []
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        _walk(fd, "", out, owners_and_times)
    finally:
        os.close(fd)
    return out


def _walk(dfd: int, prefix: str, out: list[tuple[object, ...]], full: bool) -> None:
    for name in sorted(os.listdir(dfd)):
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        rel = f"{prefix}/{name}"
        extra: object = None
        if stat.S_ISREG(st.st_mode):
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dfd)
            with os.fdopen(fd, "rb") as f:
                extra = hashlib.sha256(f.read()).hexdigest()
        elif stat.S_ISLNK(st.st_mode):
            extra = os.readlink(name, dir_fd=dfd)
        if full:
            out.append((rel, st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_ino,
                        st.st_mtime_ns, extra))
        else:
            out.append((rel, st.st_mode, st.st_size, st.st_ino, extra))
        if stat.S_ISDIR(st.st_mode):
            sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dfd)
            try:
                _walk(sub, rel, out, full)
            finally:
                os.close(sub)
