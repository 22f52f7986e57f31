"""cove's ``/dev``: a small tmpfs of device nodes and the drivers behind them.

Device nodes anywhere in the sandbox (a rootfs tar may carry its own
``/dev/null``) open cove's drivers by device number; nothing a guest opens is
ever opened on the host. ``tty`` and the stdio links are bound by the kernel,
which owns the sandbox's terminal.

``read_guest``/``write_guest`` are fs_iov's zero-copy hooks, with Linux's
rules: /dev/null never touches the buffer (a write returns the count even
for memory the guest does not have; only access_ok applies), /dev/zero
stores zeros straight into the guest's frames up to the first fault. On a
platform that runs guest I/O natively (userland) reads and writes of
/dev/null and /dev/zero run on the host's own devices, which the supervisor
opens for that alone (cove.kernel.hostpipe: NativeDevice).
"""

from __future__ import annotations

import os

from cove.abi.errno import E, Errno
from cove.fs.file import File
from cove.fs.memfs import MemFS
from cove.fs.mount import Location
from cove.fs.node import S_IFCHR, S_ISVTX, Stat, makedev

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from cove.kernel.task import Task

Segs = list[tuple[int, int]]  # (guest address, length), as fs_iov passes them
_ZEROS_LEN = 1 << 16
_ZEROS = memoryview(bytes(_ZEROS_LEN))

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

    # fs_iov's zero-copy hooks: read_null and write_null never touch the
    # buffer (only access_ok, which the syscall layer has done).
    def read_guest(self, t: Task, segs: Segs) -> int | None:
        self.check_readable()
        _offer_native(t)
        return 0

    def write_guest(self, t: Task, segs: Segs) -> int | None:
        self.check_writable()
        _offer_native(t)
        return sum(n for _, n in segs)


class ZeroDevice(NullDevice):
    def read(self, size: int) -> bytes:
        self.check_readable()
        return bytes(size)

    def read_guest(self, t: Task, segs: Segs) -> int | None:
        """Zeros straight into the guest's frames; None (the generic path:
        populate, partial counts, EFAULT) unless every page is ready."""
        from cove.kernel.syscalls.fs_iov import guest_views

        self.check_readable()
        _offer_native(t)
        total = sum(n for _, n in segs)
        views = guest_views(t, segs, total, True)
        if views is None:
            return None
        for view in views:
            for pos in range(0, len(view), _ZEROS_LEN):
                n = min(_ZEROS_LEN, len(view) - pos)
                view[pos:pos + n] = _ZEROS[:n]
        return total


class FullDevice(ZeroDevice):
    def write(self, data: bytes) -> int:
        self.check_writable()
        raise Errno(E.ENOSPC)

    def write_guest(self, t: Task, segs: Segs) -> int | None:
        self.check_writable()
        raise Errno(E.ENOSPC)  # write_full: before anything else


class RandomDevice(NullDevice):
    """``/dev/random`` and ``/dev/urandom``: host entropy, never blocking (as Linux ≥ 5.6)."""

    def read(self, size: int) -> bytes:
        self.check_readable()
        return os.urandom(min(size, 1 << 25))

    # Both directions copy (a write mixes the bytes into the pool): the generic path.
    def read_guest(self, t: Task, segs: Segs) -> int | None:
        return None

    def write_guest(self, t: Task, segs: Segs) -> int | None:
        return None


def _offer_native(t: Task) -> None:
    """On a platform that runs guest I/O natively (userland), make sure the
    kernel's native-I/O table exists, so the device's next read or write can
    run in the host (cove.kernel.hostpipe: NativeDevice)."""
    k = t.kernel
    if getattr(k, "native_io", None) is None and getattr(getattr(k.platform, "capabilities", None),
                                       "native_pipes", False):
        from cove.kernel.hostpipe import native_io

        native_io(k)


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
