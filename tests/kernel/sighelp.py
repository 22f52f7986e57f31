"""Helpers for the signal, thread and futex tests: a stack, handlers, more
tasks, driving blocked calls the way the run loop does."""

from __future__ import annotations

import struct
import time

from cove.abi import flags as F
from cove.abi.structs.sigframe import RT_SIGFRAME_UC, UCONTEXT
from cove.abi.structs.siginfo import K_SIGACTION
from cove.kernel import signals
from cove.kernel.fdtable import FdTable
from cove.kernel.kernel import Kernel
from cove.kernel.mm import MemoryMap
from cove.kernel.task import Creds, State, Task

from .fakes import FakeSpace
from .harness import SCRATCH, FakeContext, call, put

STACK = 0x20000000  # [STACK, STACK + STACK_SIZE) mapped read-write by with_stack
STACK_SIZE = 0x10000
HANDLER = 0x401000
RESTORER = 0x402000
BAD = 0x7000_0000_0000  # never mapped


def with_stack(t: Task, sp: int = STACK + STACK_SIZE - 0x1000) -> int:
    t.mm.mmap(STACK, STACK_SIZE, F.PROT_READ | F.PROT_WRITE,
              F.MAP_PRIVATE | F.MAP_ANONYMOUS | F.MAP_FIXED)
    t.ctx.regs.rsp = sp
    return sp


def sigaction(t: Task, signo: int, handler: int = HANDLER,
              flags: int = F.SA_SIGINFO | F.SA_RESTORER, mask: int = 0,
              restorer: int = RESTORER) -> int:
    act = put(t, K_SIGACTION.pack(handler, flags, restorer, mask), 0x800)
    return call(t, "rt_sigaction", signo, act, 0, 8)


def bit(signo: int) -> int:
    return 1 << (signo - 1)


def ucontext(t: Task) -> tuple:
    """The ucontext of the frame the thread's handler is running on."""
    return UCONTEXT.read(t.mm.read(t.ctx.regs.rsp + RT_SIGFRAME_UC, UCONTEXT.size))


def sigreturn(t: Task) -> int:
    """What the restorer does: `ret` pops pretcode, then rt_sigreturn."""
    t.ctx.regs.rsp += 8
    return call(t, "rt_sigreturn")


def spawn(k: Kernel, parent: Task | None = None, creds: Creds | None = None) -> Task:
    """A new process with one thread and the scratch area."""
    mm = MemoryMap(k.phys, FakeSpace())
    proc = k.new_process(parent.proc if parent else None, mm, creds or Creds())
    t = k.new_task(proc, FakeContext(), FdTable(), k.vfs.context())
    mm.mmap(SCRATCH, 1 << 20, F.PROT_READ | F.PROT_WRITE,
            F.MAP_PRIVATE | F.MAP_ANONYMOUS | F.MAP_FIXED)
    return t


def thread(k: Kernel, t: Task) -> Task:
    t.files.users += 1
    return k.new_task(t.proc, FakeContext(), t.files, t.fs, tid=k.alloc_id())


def user(uid: int) -> Creds:
    return Creds(uid, uid, uid, uid, uid, uid, uid, uid)


def signed(v: int) -> int:
    return v - (1 << 64) if v & (1 << 63) else v


def resume(t: Task) -> int:
    """The run loop's step for a woken task: finish (or re-run) its call."""
    assert t.state is State.RUNNABLE, t.state
    t.kernel._resume_blocked(t)
    return signed(t.ctx.regs.rax)


def finish(k: Kernel, t: Task, limit: float = 5.0) -> int:
    """Drive the scheduler (deadlines and timers included) until ``t``'s call ends."""
    end = time.monotonic() + limit
    while t.state is State.BLOCKED or t.blocked_call is not None:
        assert time.monotonic() < end, "blocked call never finished"
        nxt = k.sched.next()
        if nxt is t and t.blocked_call is not None:
            k._resume_blocked(t)
    return signed(t.ctx.regs.rax)


def u32(t: Task, addr: int) -> int:
    return int(struct.unpack("<I", t.mm.read(addr, 4))[0])


def u64(t: Task, addr: int) -> int:
    return int(struct.unpack("<Q", t.mm.read(addr, 8))[0])


def pending(t: Task, signo: int) -> bool:
    return bool((t.pending.mask | t.proc.shared_pending.mask) & bit(signo))


def deliver(t: Task) -> None:
    signals.deliver(t)
