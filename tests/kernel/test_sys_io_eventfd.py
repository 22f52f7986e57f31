"""eventfd / eventfd2."""

from __future__ import annotations

import struct

import pytest

from cove.abi import flags as F
from cove.abi.errno import E

from .harness import SCRATCH, make_kernel
from .iohelp import fstat, is_blocked, resume, sc, thread

pytestmark = pytest.mark.timeout(20)

BUF = SCRATCH + 0x100
MAX = (1 << 64) - 1


def put(t, v: int) -> int | None:
    t.mm.write(BUF, struct.pack("<Q", v))
    return sc(t, "write", fd_of(t), BUF, 8)


def take(t, buf: int = BUF + 0x100) -> int | None:
    r = sc(t, "read", fd_of(t), buf, 8)
    return r if r is None or r < 0 else struct.unpack("<Q", t.mm.read(buf, 8))[0]


_fds: dict[int, int] = {}


def fd_of(t) -> int:
    return _fds[id(t.files)]


def make(t, initval: int = 0, flags: int = 0) -> int:
    fd = sc(t, "eventfd2", initval, flags)
    assert fd is not None and fd >= 0
    _fds[id(t.files)] = fd
    return fd


def test_counter_read_takes_everything():
    _, t = make_kernel()
    make(t, 5, F.EFD_NONBLOCK)
    assert put(t, 3) == 8
    assert take(t) == 8
    assert take(t) == -E.EAGAIN


def test_semaphore_mode_takes_one():
    _, t = make_kernel()
    make(t, 3, F.EFD_SEMAPHORE | F.EFD_NONBLOCK)
    assert [take(t) for _ in range(4)] == [1, 1, 1, -E.EAGAIN]


def test_short_buffers_and_max_value_are_einval():
    _, t = make_kernel()
    fd = make(t, 1)
    assert sc(t, "read", fd, BUF, 7) == -E.EINVAL
    assert sc(t, "write", fd, BUF, 4) == -E.EINVAL
    assert put(t, MAX) == -E.EINVAL
    # A longer buffer moves exactly 8 bytes.
    assert sc(t, "read", fd, BUF, 100) == 8


def test_flags_are_checked_and_eventfd_has_none():
    _, t = make_kernel()
    assert sc(t, "eventfd2", 0, F.O_APPEND) == -E.EINVAL
    assert sc(t, "eventfd2", 0, 4) == -E.EINVAL
    fd = sc(t, "eventfd", 7)
    assert fd is not None and fd >= 0 and fd not in t.files.cloexec
    fd2 = sc(t, "eventfd2", 0, F.EFD_CLOEXEC)
    assert fd2 in t.files.cloexec


def test_blocking_read_at_zero_wakes_on_write():
    k, t = make_kernel()
    make(t)
    assert take(t) is None and is_blocked(t)
    other = thread(k, t)
    assert put(other, 41) == 8
    assert resume(t) == 8
    assert struct.unpack("<Q", t.mm.read(BUF + 0x100, 8))[0] == 41


def test_write_blocks_at_overflow_until_a_read():
    k, t = make_kernel()
    make(t, 0)
    assert put(t, MAX - 1) == 8  # the largest count there can be
    t.files.get(fd_of(t)).flags |= F.O_NONBLOCK
    assert put(t, 1) == -E.EAGAIN
    t.files.get(fd_of(t)).flags &= ~F.O_NONBLOCK
    assert put(t, 1) is None and is_blocked(t)
    other = thread(k, t)
    assert take(other) == MAX - 1
    assert resume(t) == 8
    assert take(other) == 1


def test_fstat_and_no_ioctls():
    _, t = make_kernel()
    fd = make(t)
    dev, ino, mode, _ = fstat(t, fd)
    assert mode == 0o600  # anon inode: no type bits
    assert fstat(t, make(t))[:2] == (dev, ino)  # one shared inode
    assert sc(t, "ioctl", fd, F.FIONREAD, BUF) == -E.ENOTTY
