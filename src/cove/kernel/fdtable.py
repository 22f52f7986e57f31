"""A process's file descriptor table (shared by threads unless cloned apart)."""

from __future__ import annotations

import struct
from collections.abc import Callable

from cove.abi.errno import E, Errno
from cove.fs.file import File

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from cove.kernel.task import Task

NR_OPEN_DEFAULT = 1024  # RLIMIT_NOFILE soft default
NR_OPEN_MAX = 1 << 20

# Called as hook(table, file) just before an fd of ``file`` in ``table`` is
# closed by any route (close, dup2 over it, close_range, exec, exit), while
# the fd still holds its reference: POSIX record locks are released here.
CLOSE_HOOKS: list[Callable[[FdTable, File], None]] = []


class OpenFiles:
    """Reference counts of open file descriptions (kept on the description), so
    ``release`` runs once, when the last fd anywhere referring to it closes."""

    @staticmethod
    def get(f: File) -> None:
        f.fd_refs += 1

    @staticmethod
    def put(f: File) -> None:
        f.fd_refs -= 1
        if f.fd_refs <= 0:
            f.release()


class FdTable:
    __slots__ = ("cloexec", "files", "limit", "users")

    def __init__(self, limit: int = NR_OPEN_DEFAULT) -> None:
        self.users = 1  # tasks sharing this table (CLONE_FILES)
        self.files: dict[int, File] = {}
        self.cloexec: set[int] = set()
        self.limit = limit

    def get(self, fd: int) -> File:
        f = self.files.get(fd)
        if f is None:
            raise Errno(E.EBADF)
        return f

    def _lowest_free(self, start: int) -> int:
        fd = start
        while fd in self.files:
            fd += 1
        if fd >= self.limit:
            raise Errno(E.EMFILE)
        return fd

    def install(self, f: File, *, cloexec: bool = False, start: int = 0) -> int:
        """Put ``f`` at the lowest free fd ≥ ``start``; takes a reference."""
        fd = self._lowest_free(start)
        self.install_at(fd, f, cloexec=cloexec)
        return fd

    def install_at(self, fd: int, f: File, *, cloexec: bool = False) -> None:
        if fd < 0 or fd >= self.limit:
            raise Errno(E.EBADF)
        OpenFiles.get(f)
        old = self.files.get(fd)
        self.files[fd] = f
        if cloexec:
            self.cloexec.add(fd)
        else:
            self.cloexec.discard(fd)
        if old is not None:
            for hook in CLOSE_HOOKS:
                hook(self, old)
            OpenFiles.put(old)

    def close(self, fd: int) -> None:
        f = self.files.pop(fd, None)
        if f is None:
            raise Errno(E.EBADF)
        self.cloexec.discard(fd)
        for hook in CLOSE_HOOKS:
            hook(self, f)
        OpenFiles.put(f)

    def close_range(self, first: int, last: int, *, only_cloexec: bool = False) -> None:
        for fd in sorted(self.files):
            if first <= fd <= last:
                if only_cloexec:
                    self.cloexec.add(fd)
                else:
                    self.close(fd)

    def exec_close(self) -> None:
        """Close every O_CLOEXEC fd (at execve)."""
        for fd in sorted(self.cloexec):
            if fd in self.files:
                self.close(fd)
        self.cloexec.clear()

    def fork(self) -> FdTable:
        child = FdTable(self.limit)
        for fd, f in self.files.items():
            OpenFiles.get(f)
            child.files[fd] = f
        child.cloexec = set(self.cloexec)
        return child

    def close_all(self) -> None:
        for fd in list(self.files):
            self.close(fd)


_FD_PAIR = struct.Struct("<ii")


def install_pair(t: Task, first: File, second: File, *, cloexec: bool, addr: int) -> None:
    """pipe2/socketpair: install both files and write ``int[2]`` to ``addr``, or
    neither: a failed second install or copy-out undoes the first."""
    files = t.files
    try:
        fa = files.install(first, cloexec=cloexec)
    except Errno:
        first.release()
        second.release()
        raise
    try:
        fb = files.install(second, cloexec=cloexec)
    except Errno:
        files.close(fa)
        second.release()
        raise
    try:
        t.mm.write(addr, _FD_PAIR.pack(fa, fb))
    except Errno:
        files.close(fa)
        files.close(fb)
        raise

