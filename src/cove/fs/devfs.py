"""cove's ``/dev``: a small tmpfs of device nodes and the drivers behind them.

Device nodes anywhere in the sandbox (a rootfs tar may carry its own
``/dev/null``) open cove's drivers by device number; nothing is ever opened on
the host. ``tty`` and the stdio links are bound by the kernel, which owns the
sandbox's terminal.
"""

from __future__ import annotations

import os

from cove.abi.errno import E, Errno
from cove.fs.file import File
from cove.fs.memfs import MemFS
from cove.fs.mount import Location
from cove.fs.node import S_IFCHR, S_ISVTX, Stat, makedev

DEV_NULL = makedev(1, 3)
DEV_ZERO = makedev(1, 5)
DEV_FULL = makedev(1, 7)
DEV_RANDOM = makedev(1, 8)
DEV_URANDOM = makedev(1, 9)
DEV_TTY = makedev(5, 0)

_NODES = {
    "null": DEV_NULL, "zero": DEV_ZERO, "full": DEV_FULL,
    "random": DEV_RANDOM, "urandom": DEV_URANDOM, "tty": DEV_TTY,
}


class DeviceFile(File):
    """An open character device; reads and writes ignore the offset."""

    def __init__(self, location: Location, flags: int) -> None:
        super().__init__(flags)
        self.location = location

    def stat(self) -> Stat:
        assert self.location is not None
        return self.location.inode.stat()

    def pread(self, size: int, offset: int) -> bytes:
        return self.read(size)

    def pwrite(self, data: bytes, offset: int) -> int:
        return self.write(data)

    def seek(self, offset: int, whence: int) -> int:
        return 0


class NullDevice(DeviceFile):
    def read(self, size: int) -> bytes:
        self.check_readable()
        return b""

    def write(self, data: bytes) -> int:
        self.check_writable()
        return len(data)


class ZeroDevice(NullDevice):
    def read(self, size: int) -> bytes:
        self.check_readable()
        return bytes(size)


class FullDevice(ZeroDevice):
    def write(self, data: bytes) -> int:
        self.check_writable()
        raise Errno(E.ENOSPC)


class RandomDevice(NullDevice):
    """``/dev/random`` and ``/dev/urandom``: host entropy, never blocking (as Linux ≥ 5.6)."""

    def read(self, size: int) -> bytes:
        self.check_readable()
        return os.urandom(min(size, 1 << 25))


DRIVERS: dict[int, type[DeviceFile]] = {
    DEV_NULL: NullDevice, DEV_ZERO: ZeroDevice, DEV_FULL: FullDevice,
    DEV_RANDOM: RandomDevice, DEV_URANDOM: RandomDevice,
}


def make_devfs() -> MemFS:
    """A fresh ``/dev`` tree: the standard nodes, stdio links, ``shm`` and ``pts``."""
    fs = MemFS(root_mode=0o755)
    root = fs.root
    for name, rdev in _NODES.items():
        root.mknod(name, S_IFCHR | 0o666, rdev, 0, 0)
    for i, name in enumerate(("stdin", "stdout", "stderr")):
        root.symlink(name, f"/proc/self/fd/{i}", 0, 0)
    root.symlink("fd", "/proc/self/fd", 0, 0)
    root.mkdir("shm", 0o777 | S_ISVTX, 0, 0)
    root.mkdir("pts", 0o755, 0, 0)
    return fs


def register_drivers(device_openers: dict[int, object]) -> None:
    """Bind cove's drivers to their device numbers in a VFS's opener table."""
    for rdev, cls in DRIVERS.items():
        device_openers[rdev] = cls
