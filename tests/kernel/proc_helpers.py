"""Helpers for the fork/exec/wait tests: a harness kernel with room for many
processes, and running a blocked call again the way the run loop does."""

from __future__ import annotations

from cove.abi import flags as F
from cove.fs.memfs import MemFS
from cove.fs.vfs import VFS
from cove.kernel.fdtable import FdTable
from cove.kernel.kernel import MASK64, Kernel
from cove.kernel.mm import MemoryMap
from cove.kernel.task import Creds, State, Task

from .fakes import FakeSpace
from .harness import SCRATCH, FakeContext, FakePlatform, call


def big_kernel(size: int = 512 << 20, creds: Creds | None = None) -> tuple[Kernel, Task]:
    """``make_kernel`` with more guest memory (more tasks allowed, big mappings)."""
    platform = FakePlatform(size)
    vfs = VFS(MemFS())
    k = Kernel(platform, vfs)  # type: ignore[arg-type]
    mm = MemoryMap(platform.physmem, FakeSpace())
    proc = k.new_process(None, mm, creds or Creds())
    k.init = proc
    t = k.new_task(proc, FakeContext(), FdTable(), vfs.context())
    mm.mmap(SCRATCH, 1 << 20, F.PROT_READ | F.PROT_WRITE,
            F.MAP_PRIVATE | F.MAP_ANONYMOUS | F.MAP_FIXED)
    return k, t


def signed(r: int) -> int:
    return r - (1 << 64) if r & (1 << 63) else r


def resume(t: Task) -> int | None:
    """Run a blocked task's call again if it was woken, as the run loop does;
    its result, or None while it is still blocked."""
    if t.state is State.BLOCKED:
        return None
    assert t.blocked_call is not None or t.state is State.RUNNABLE
    if t.blocked_call is not None:
        t.kernel._resume_blocked(t)
    if t.state is State.BLOCKED:
        return None
    return signed(t.ctx.regs.rax)


def fork(t: Task) -> Task:
    """fork through the dispatcher; the child's thread."""
    pid = call(t, "fork")
    assert pid > 0, pid
    return t.kernel.tasks[pid]


def exit_group(t: Task, code: int) -> None:
    regs = t.ctx.regs
    before = regs.rax
    call(t, "exit_group", code)
    regs.rax = before & MASK64
