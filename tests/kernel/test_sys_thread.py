"""clone / clone3 for threads: flag validation and the new task's state."""

from __future__ import annotations

import pytest

from cove.abi import flags as F
from cove.abi.errno import E
from cove.abi.structs.process import CLONE_ARGS
from cove.kernel import signals
from cove.kernel.mm import USER_TOP
from cove.kernel.syscalls import thread as thread_mod
from cove.kernel.task import State

from .harness import SCRATCH, call, make_kernel, put
from .sighelp import BAD, bit, u32

pytestmark = pytest.mark.timeout(20)

# glibc's pthread_create
PTHREAD = (F.CLONE_VM | F.CLONE_FS | F.CLONE_FILES | F.CLONE_SIGHAND | F.CLONE_THREAD
           | F.CLONE_SYSVSEM | F.CLONE_SETTLS | F.CLONE_PARENT_SETTID
           | F.CLONE_CHILD_CLEARTID)
PTID, CTID = SCRATCH + 0x100, SCRATCH + 0x108
NEWSP = SCRATCH + 0x80000
TLS = 0x7F0000001000


def _clone(t, flags=PTHREAD, sp=NEWSP, tls=TLS):
    return call(t, "clone", flags, sp, PTID, CTID, tls)


def test_pthread_create_makes_a_thread_sharing_the_process():
    k, t = make_kernel()
    regs = t.ctx.regs
    regs.rip, regs.rbx, regs.r12 = 0x401234, 77, 99
    t.sigmask = bit(F.SIGUSR1)
    t.ctx.fs_base = 0x1000
    tid = _clone(t)
    assert tid > 0 and tid != t.tid
    child = k.tasks[tid]
    assert child.proc is t.proc and child.pid == t.pid
    assert child.mm is t.mm and child.files is t.files and child.fs is t.fs
    assert t.files.users == 2
    assert child.proc.sighand is t.proc.sighand
    c = child.ctx.regs
    assert (c.rax, c.rsp, c.rip, c.rbx, c.r12) == (0, NEWSP, 0x401234, 77, 99)
    assert child.ctx.fs_base == TLS and t.ctx.fs_base == 0x1000
    assert u32(t, PTID) == tid
    assert child.clear_child_tid == CTID and u32(t, CTID) != tid  # no CHILD_SETTID
    assert child.sigmask == bit(F.SIGUSR1) and not child.pending.mask
    assert child.altstack == (0, F.SS_DISABLE, 0)
    assert child.state is State.RUNNABLE and child in k.sched.runq
    assert t.ctx.regs.rax == tid  # the parent's result


def test_thread_without_shared_files_or_fs_gets_copies():
    k, t = make_kernel()
    flags = F.CLONE_VM | F.CLONE_SIGHAND | F.CLONE_THREAD | F.CLONE_CHILD_SETTID
    tid = call(t, "clone", flags, 0, 0, CTID, 0)
    child = k.tasks[tid]
    assert child.files is not t.files and child.fs is not t.fs
    assert child.ctx.regs.rsp == t.ctx.regs.rsp  # no new stack: the parent's
    assert u32(t, CTID) == tid


def test_clone_flag_validation():
    _k, t = make_kernel()
    assert _clone(t, F.CLONE_THREAD | F.CLONE_VM) == -E.EINVAL
    assert _clone(t, F.CLONE_SIGHAND) == -E.EINVAL
    assert _clone(t, F.CLONE_NEWNS | F.CLONE_FS) == -E.EINVAL
    assert _clone(t, F.CLONE_NEWUSER | F.CLONE_FS) == -E.EINVAL
    assert _clone(t, PTHREAD | F.CLONE_NEWPID) == -E.EINVAL
    assert _clone(t, PTHREAD | F.CLONE_PIDFD) == -E.EINVAL
    assert _clone(t, PTHREAD & ~F.CLONE_FS | F.CLONE_NEWNET) == -E.EPERM
    assert _clone(t, PTHREAD, tls=USER_TOP) == -E.EPERM
    assert _clone(t, PTHREAD | F.CLONE_PARENT) == -E.EINVAL  # init has no parent to share
    assert len(t.proc.threads) == 1  # nothing was created


def test_process_clone_goes_to_the_process_hook():
    _, t = make_kernel()
    saved = thread_mod.PROCESS_CLONE
    seen = []
    try:
        thread_mod.PROCESS_CLONE = None
        assert call(t, "clone", F.SIGCHLD, 0, 0, 0, 0) == -E.ENOSYS
        thread_mod.PROCESS_CLONE = lambda t_, a: seen.append(a) or 4242
        assert call(t, "clone", F.CLONE_VFORK | F.CLONE_VM | F.SIGCHLD, 0, 0, 0, 0) == 4242
    finally:
        thread_mod.PROCESS_CLONE = saved
    assert seen[0].flags == F.CLONE_VFORK | F.CLONE_VM and seen[0].exit_signal == F.SIGCHLD


def _clone3(t, size=CLONE_ARGS.size, **fields):
    addr = put(t, CLONE_ARGS.build(**fields).ljust(size, b"\0")[:size], 0x2000)
    return call(t, "clone3", addr, size)


def test_clone3_thread():
    k, t = make_kernel()
    stack = SCRATCH + 0x40000
    tid = _clone3(t, flags=PTHREAD, stack=stack, stack_size=0x10000, tls=TLS,
                  parent_tid=PTID, child_tid=CTID)
    assert tid > 0
    child = k.tasks[tid]
    assert child.ctx.regs.rsp == stack + 0x10000  # clone3 takes the lowest address
    assert child.ctx.fs_base == TLS and u32(t, PTID) == tid
    # The first version of the struct (64 bytes) is enough.
    assert _clone3(t, size=64, flags=PTHREAD & ~F.CLONE_SETTLS) > 0


def test_clone3_argument_rules():
    _k, t = make_kernel()
    assert _clone3(t, size=56, flags=PTHREAD) == -E.EINVAL
    assert call(t, "clone3", SCRATCH, 4097) == -E.E2BIG
    big = put(t, CLONE_ARGS.build(flags=PTHREAD) + b"\0" * 8 + b"\1", 0x3000)
    assert call(t, "clone3", big, CLONE_ARGS.size + 9) == -E.E2BIG
    zero_tail = put(t, CLONE_ARGS.build(flags=PTHREAD) + b"\0" * 16, 0x3000)
    assert call(t, "clone3", zero_tail, CLONE_ARGS.size + 16) > 0
    assert call(t, "clone3", BAD, 64) == -E.EFAULT
    assert _clone3(t, flags=PTHREAD, exit_signal=F.SIGCHLD) == -E.EINVAL
    assert _clone3(t, flags=PTHREAD, exit_signal=1 << 32) == -E.EINVAL
    assert _clone3(t, flags=PTHREAD | F.SIGCHLD) == -E.EINVAL  # CSIGNAL bits in flags
    assert _clone3(t, flags=PTHREAD | F.CLONE_DETACHED) == -E.EINVAL
    assert _clone3(t, flags=PTHREAD | (1 << 40)) == -E.EINVAL
    assert _clone3(t, flags=PTHREAD | F.CLONE_CLEAR_SIGHAND) == -E.EINVAL
    assert _clone3(t, flags=PTHREAD, stack=SCRATCH) == -E.EINVAL  # no size
    assert _clone3(t, flags=PTHREAD, stack_size=4096) == -E.EINVAL  # no stack
    assert _clone3(t, flags=PTHREAD, stack=USER_TOP - 4096, stack_size=8192) == -E.EINVAL
    assert _clone3(t, flags=PTHREAD, set_tid_size=1) == -E.EINVAL
    assert _clone3(t, flags=PTHREAD, set_tid=SCRATCH, set_tid_size=0) == -E.EINVAL
    assert _clone3(t, flags=PTHREAD, set_tid=SCRATCH, set_tid_size=33) == -E.EINVAL
    assert _clone3(t, flags=F.CLONE_THREAD | F.CLONE_VM) == -E.EINVAL


def test_thread_exit_and_the_last_thread_ends_the_process():
    k, t = make_kernel()
    tid = _clone(t)
    child = k.tasks[tid]
    t.mm.write(CTID, tid.to_bytes(4, "little"))
    call(child, "exit", 3)
    assert child.state is State.DEAD and u32(t, CTID) == 0
    assert t.proc.alive and t.files.users == 1
    call(t, "exit", 5)
    assert t.proc.exit_code == 5 << 8


def test_exit_group_ends_every_thread():
    k, t = make_kernel()
    child = k.tasks[_clone(t)]
    call(child, "exit_group", 9)
    assert t.state is State.DEAD and child.state is State.DEAD
    assert t.proc.exit_code == 9 << 8


def test_signal_to_the_group_reaches_a_thread_that_can_take_it():
    k, t = make_kernel()
    child = k.tasks[_clone(t)]
    t.sigmask = bit(F.SIGUSR1)
    child.sigmask = 0
    word = SCRATCH + 0x300
    call(child, "futex", word, F.FUTEX_WAIT | F.FUTEX_PRIVATE_FLAG, 0, 0, 0, 0)
    assert child.state is State.BLOCKED
    call(t, "kill", t.pid, F.SIGUSR1)
    assert child.state is State.RUNNABLE and child.interrupted
    assert signals.has_deliverable(child) and not signals.has_deliverable(t)
