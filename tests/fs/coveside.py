"""The cove half of the differential VFS test: the same operations as
``hostside.HostOps``, on cove's overlay (memfs upper over a read-only lower)."""

from __future__ import annotations

from typing import Any

from cove.abi.errno import E, Errno, errno_name
from cove.fs.file import File
from cove.fs.memfs import MemFS
from cove.fs.node import S_IFMT
from cove.fs.vfs import VFS

from .hostside import stat_summary


def build_lower(tree: list[tuple[str, str, str]]) -> MemFS:
    """A read-only lower layer holding ``tree`` (the same tree the host builds)."""
    fs = MemFS()
    vfs = VFS(fs)
    ctx = vfs.context()
    for path, kind, arg in tree:
        if kind == "dir":
            vfs.mkdir(ctx, None, path, 0o755)
        elif kind == "file":
            f = vfs.open(ctx, None, path, 0o101, 0o644)  # O_CREAT|O_WRONLY
            f.write(arg.encode())
        elif kind == "link":
            vfs.symlink(ctx, arg, None, path)
    fs.readonly = True
    return fs


def make_root(tree: list[tuple[str, str, str]]) -> Any:
    try:
        from cove.fs.overlay import OverlayFS
    except ImportError:  # pragma: no cover - before the overlay existed
        fs = MemFS()
        ops = CoveOps(VFS(fs))
        ops.reset_plain(tree)
        return ops
    return CoveOps(VFS(OverlayFS(MemFS(), [build_lower(tree)])))


class _Summary:
    def __init__(self, mode: int, nlink: int, size: int) -> None:
        self.st_mode, self.st_nlink, self.st_size = mode, nlink, size


def _summary(s: Any) -> tuple:
    return stat_summary(_Summary(s.mode, s.nlink, s.size))


class CoveOps:
    def __init__(self, vfs: VFS) -> None:
        self.vfs = vfs
        self.ctx = vfs.context()
        self.fds: list[File | None] = []

    def reset_plain(self, tree: list[tuple[str, str, str]]) -> None:
        for path, kind, arg in tree:
            if kind == "dir":
                self.vfs.mkdir(self.ctx, None, path, 0o755)
            elif kind == "file":
                self.vfs.open(self.ctx, None, path, 0o101, 0o644).write(arg.encode())
            elif kind == "link":
                self.vfs.symlink(self.ctx, arg, None, path)

    def run(self, op: str, args: tuple[Any, ...]) -> tuple[str, Any]:
        try:
            return ("ok", getattr(self, "op_" + op)(*args))
        except Errno as e:
            return ("err", errno_name(e.errno))

    def _fd(self, slot: int) -> File:
        if slot >= len(self.fds) or self.fds[slot] is None:
            raise Errno(E.EBADF)
        return self.fds[slot]  # type: ignore[return-value]

    def op_open(self, path: str, flags: int, mode: int) -> int:
        self.fds.append(self.vfs.open(self.ctx, None, path, flags, mode))
        return len(self.fds) - 1

    def op_close(self, slot: int) -> None:
        self._fd(slot).release()
        self.fds[slot] = None

    def op_pwrite(self, slot: int, offset: int, data: bytes) -> int:
        return self._fd(slot).pwrite(data, offset)

    def op_write(self, slot: int, data: bytes) -> int:
        return self._fd(slot).write(data)

    def op_pread(self, slot: int, offset: int, n: int) -> bytes:
        return self._fd(slot).pread(n, offset)

    def op_read(self, slot: int, n: int) -> bytes:
        return self._fd(slot).read(n)

    def op_seek(self, slot: int, offset: int, whence: int) -> int:
        return self._fd(slot).seek(offset, whence)

    def op_fstat(self, slot: int) -> tuple:
        return _summary(self._fd(slot).stat())

    def op_ftruncate(self, slot: int, length: int) -> None:
        self._fd(slot).truncate(length)

    def op_truncate(self, path: str, length: int) -> None:
        self.vfs.truncate(self.ctx, None, path, length)

    def op_rename(self, old: str, new: str, flags: int) -> None:
        self.vfs.rename(self.ctx, None, old, None, new, flags)

    def op_unlink(self, path: str) -> None:
        self.vfs.unlink(self.ctx, None, path)

    def op_mkdir(self, path: str, mode: int) -> None:
        self.vfs.mkdir(self.ctx, None, path, mode)

    def op_rmdir(self, path: str) -> None:
        self.vfs.rmdir(self.ctx, None, path)

    def op_symlink(self, target: str, path: str) -> None:
        self.vfs.symlink(self.ctx, target, None, path)

    def op_link(self, old: str, new: str) -> None:
        self.vfs.link(self.ctx, None, old, None, new)

    def op_readlink(self, path: str) -> str:
        return self.vfs.readlink(self.ctx, None, path)

    def op_chmod(self, path: str, mode: int) -> None:
        self.vfs.chmod(self.ctx, None, path, mode)

    def op_stat(self, path: str, follow: bool) -> tuple:
        return _summary(self.vfs.stat(self.ctx, None, path, follow=follow))

    def op_listdir(self, path: str) -> list[str]:
        loc = self.vfs.resolve(self.ctx, None, path)
        if loc.inode.mode & S_IFMT != 0o040000:
            raise Errno(E.ENOTDIR)
        self.vfs.access(self.ctx, None, path, 4)
        return sorted(e.name for e in loc.inode.readdir())

    def op_chdir(self, path: str) -> None:
        self.vfs.chdir(self.ctx, None, path)

    def op_getcwd(self) -> str:
        return self.vfs.getcwd(self.ctx)
