"""The host half of the differential VFS test: a child process chrooted into a
scratch directory, running the same operations with real syscalls.

The chroot makes absolute symlink targets and ``..`` at the top mean exactly
what they mean inside a sandbox, and guarantees the test cannot touch the rest
of the host whatever the generated operations are.
"""

from __future__ import annotations

import ctypes
import errno
import multiprocessing
import os
import shutil
import stat as st
from typing import Any

from cove.abi.errno import errno_name

_libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD = -100
SYS_RENAMEAT2 = 316
CLONE_NEWUSER = 0x10000000
CLONE_NEWNS = 0x00020000


def _renameat2(old: str, new: str, flags: int) -> None:
    r = _libc.syscall(SYS_RENAMEAT2, AT_FDCWD, os.fsencode(old), AT_FDCWD,
                      os.fsencode(new), flags)
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def _enter_jail(root: str) -> None:
    if os.geteuid() != 0:
        # Unprivileged: a user namespace makes us root over our own files only.
        uid, gid = os.geteuid(), os.getegid()
        if _libc.unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0:
            raise OSError(ctypes.get_errno(), "unshare")
        with open("/proc/self/setgroups", "w") as f:
            f.write("deny")
        with open("/proc/self/uid_map", "w") as f:
            f.write(f"0 {uid} 1")
        with open("/proc/self/gid_map", "w") as f:
            f.write(f"0 {gid} 1")
    os.chroot(root)
    os.chdir("/")
    os.umask(0o022)


def _clear() -> None:
    os.chdir("/")
    for name in os.listdir("/"):
        p = "/" + name
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p)
        else:
            os.unlink(p)


def stat_summary(s: os.stat_result | Any) -> tuple[int, int, int | None, int]:
    """What the test compares: type, permission bits, size (not for dirs), nlink."""
    mode = s.st_mode
    size = None if st.S_ISDIR(mode) else s.st_size
    return (st.S_IFMT(mode), st.S_IMODE(mode), size, s.st_nlink)


class HostOps:
    """Runs operations inside the jail; results are ("ok", value) / ("err", name)."""

    def __init__(self) -> None:
        self.fds: list[int | None] = []

    def reset(self, tree: list[tuple[str, str, str]]) -> None:
        for fd in self.fds:
            if fd is not None:
                os.close(fd)
        self.fds = []
        _clear()
        os.chmod("/", 0o755)
        for path, kind, arg in tree:
            if kind == "dir":
                os.mkdir(path, 0o755)
            elif kind == "file":
                with open(path, "wb") as f:
                    f.write(arg.encode())
                os.chmod(path, 0o644)
            elif kind == "link":
                os.symlink(arg, path)

    def run(self, op: str, args: tuple[Any, ...]) -> tuple[str, Any]:
        try:
            return ("ok", getattr(self, "op_" + op)(*args))
        except OSError as e:
            return ("err", errno_name(e.errno))

    def _fd(self, slot: int) -> int:
        if slot >= len(self.fds) or self.fds[slot] is None:
            raise OSError(errno.EBADF, "bad slot")
        return self.fds[slot]  # type: ignore[return-value]

    def op_open(self, path: str, flags: int, mode: int) -> int:
        self.fds.append(os.open(path, flags, mode))
        return len(self.fds) - 1

    def op_close(self, slot: int) -> None:
        os.close(self._fd(slot))
        self.fds[slot] = None

    def op_pwrite(self, slot: int, offset: int, data: bytes) -> int:
        return os.pwrite(self._fd(slot), data, offset)

    def op_write(self, slot: int, data: bytes) -> int:
        return os.write(self._fd(slot), data)

    def op_pread(self, slot: int, offset: int, n: int) -> bytes:
        return os.pread(self._fd(slot), n, offset)

    def op_read(self, slot: int, n: int) -> bytes:
        return os.read(self._fd(slot), n)

    def op_seek(self, slot: int, offset: int, whence: int) -> int:
        return os.lseek(self._fd(slot), offset, whence)

    def op_fstat(self, slot: int) -> tuple:
        return stat_summary(os.fstat(self._fd(slot)))

    def op_ftruncate(self, slot: int, length: int) -> None:
        os.ftruncate(self._fd(slot), length)

    def op_truncate(self, path: str, length: int) -> None:
        os.truncate(path, length)

    def op_rename(self, old: str, new: str, flags: int) -> None:
        _renameat2(old, new, flags)

    def op_unlink(self, path: str) -> None:
        os.unlink(path)

    def op_mkdir(self, path: str, mode: int) -> None:
        os.mkdir(path, mode)

    def op_rmdir(self, path: str) -> None:
        os.rmdir(path)

    def op_symlink(self, target: str, path: str) -> None:
        os.symlink(target, path)

    def op_link(self, old: str, new: str) -> None:
        os.link(old, new, follow_symlinks=False)

    def op_readlink(self, path: str) -> str:
        return os.readlink(path)

    def op_chmod(self, path: str, mode: int) -> None:
        os.chmod(path, mode)

    def op_stat(self, path: str, follow: bool) -> tuple:
        return stat_summary(os.stat(path, follow_symlinks=follow))

    def op_listdir(self, path: str) -> list[str]:
        return sorted(os.listdir(path))

    def op_chdir(self, path: str) -> None:
        os.chdir(path)

    def op_getcwd(self) -> str:
        return os.getcwd()


def _serve(root: str, conn: Any) -> None:
    _enter_jail(root)
    ops = HostOps()
    while True:
        msg = conn.recv()
        if msg is None:
            return
        if msg[0] == "reset":
            ops.reset(msg[1])
            conn.send(("ok", None))
        else:
            conn.send(ops.run(msg[0], msg[1]))


class HostJail:
    """A handle on the jailed child process."""

    def __init__(self, root: str) -> None:
        ctx = multiprocessing.get_context("fork")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(root, child), daemon=True)
        self._proc.start()

    def reset(self, tree: list[tuple[str, str, str]]) -> None:
        self._conn.send(("reset", tree))
        self._conn.recv()

    def run(self, op: str, args: tuple[Any, ...]) -> tuple[str, Any]:
        self._conn.send((op, args))
        if not self._conn.poll(10):
            raise TimeoutError(f"host side hung on {op}{args}")
        return self._conn.recv()

    def close(self) -> None:
        self._conn.send(None)
        self._proc.join(5)
        if self._proc.is_alive():
            self._proc.kill()
