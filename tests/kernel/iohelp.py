"""Helpers for the pipe / poll / eventfd / host stdio tests: blocked calls,
wake-ups and timeouts driven by hand through the real scheduler."""

from __future__ import annotations

import struct

from cove.abi import flags as F
from cove.kernel.kernel import Kernel
from cove.kernel.mm import MemoryMap
from cove.kernel.task import State, Task

from .fakes import FakeSpace
from .harness import SCRATCH, FakeContext, call, put

AT_FDCWD = -100
STAT_SIZE = 144


def sc(t: Task, name: str, *args: int) -> int | None:
    """A syscall through the dispatcher; None when it went to sleep (rax
    then still holds the call number, which must not pass for a result)."""
    r = call(t, name, *args)
    return None if is_blocked(t) else r


def mkpipe(t: Task, flags: int = 0, at: int = 0xF00) -> tuple[int, int]:
    assert call(t, "pipe2", SCRATCH + at, flags) == 0
    r, w = struct.unpack("<ii", t.mm.read(SCRATCH + at, 8))
    return r, w


def thread(k: Kernel, t: Task) -> Task:
    """Another thread of ``t``'s process (shares fds and memory)."""
    return k.new_task(t.proc, FakeContext(), t.files, t.fs, tid=k.alloc_id())


def process(k: Kernel, t: Task, *, pgid: int | None = None, sid: int | None = None) -> Task:
    """A child process of ``t``'s (fds inherited as by fork, its own memory
    with a scratch area), optionally in another process group / session."""
    mm = MemoryMap(k.phys, FakeSpace())
    mm.mmap(SCRATCH, 1 << 20, F.PROT_READ | F.PROT_WRITE,
            F.MAP_PRIVATE | F.MAP_ANONYMOUS | F.MAP_FIXED)
    proc = k.new_process(t.proc, mm, t.proc.creds.copy())
    if pgid is not None:
        proc.pgid = pgid
    if sid is not None:
        proc.sid = sid
    return k.new_task(proc, FakeContext(), t.files.fork(), t.fs.fork())


def is_blocked(t: Task) -> bool:
    return t.state is State.BLOCKED and t.blocked_call is not None


def resume(t: Task) -> int | None:
    """Run ``t``'s blocked call again if it was woken; its result, or None if
    it is (still or again) asleep."""
    if t.state is State.BLOCKED:
        return None
    assert t.blocked_call is not None, "not in a blocked call"
    t.kernel._resume_blocked(t)
    if t.state is State.BLOCKED:
        return None
    r = t.ctx.regs.rax
    return r - (1 << 64) if r & (1 << 63) else r


def expire(t: Task) -> int | None:
    """The deadline of ``t``'s sleep passes."""
    assert t.blocked_on is not None and t.blocked_on.deadline is not None
    t.kernel.sched.wake(t, timed_out=True)
    return resume(t)


def wr(t: Task, fd: int, data: bytes, off: int = 0x2000) -> int | None:
    t.mm.write(SCRATCH + off, data)
    return sc(t, "write", fd, SCRATCH + off, len(data))


def rd(t: Task, fd: int, n: int, off: int = 0x40000) -> bytes | int | None:
    """The bytes read, -errno, or None if the read went to sleep."""
    r = sc(t, "read", fd, SCRATCH + off, n)
    return r if r is None or r < 0 else t.mm.read(SCRATCH + off, r)


def fstat(t: Task, fd: int, off: int = 0x3000) -> tuple[int, int, int, int]:
    """(st_dev, st_ino, st_mode, st_rdev) of ``fd``."""
    assert call(t, "fstat", fd, SCRATCH + off) == 0
    raw = t.mm.read(SCRATCH + off, STAT_SIZE)
    dev, ino, _nlink, mode = struct.unpack_from("<QQQI", raw)
    (rdev,) = struct.unpack_from("<Q", raw, 40)
    return dev, ino, mode, rdev


def pending(t: Task, signo: int) -> bool:
    bit = 1 << (signo - 1)
    return bool((t.pending.mask | t.proc.shared_pending.mask) & bit)


SIGPIPE = F.SIGPIPE


def open_dev(t: Task, path: str, mode: int) -> int:
    """Open a /dev node of cove's devfs (mounted on first use) in ``t``."""
    k = t.kernel
    if not hasattr(k, "_test_dev"):
        from cove.fs.devfs import make_devfs, register_drivers

        k._test_dev = True  # type: ignore[attr-defined]
        k.vfs.mkdir(t.fs, None, "/dev", 0o755)
        k.vfs.mount("/dev", make_devfs())
        register_drivers(k.vfs.device_openers)
    return call(t, "openat", -100, put(t, path.encode() + b"\0", 0xE00), mode, 0)
