"""clone and clone3 (kernel/fork.c): flag and argument validation as Linux
does it, and new threads (CLONE_THREAD) in the caller's process.

New processes (fork, vfork, clone without CLONE_THREAD) are made by the
hook ``PROCESS_CLONE`` once the process family installs it; until then
such calls answer ENOSYS.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from cove.abi import flags as F
from cove.abi.errno import E, Errno
from cove.abi.structs.process import CLONE_ARGS
from cove.dataclass import dataclass
from cove.kernel import altstack
from cove.kernel.mm import USER_TOP
from cove.kernel.syscall import PTR, ULONG, syscall

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from cove.kernel.task import Task

CLONE_LEGACY_FLAGS = 0xFFFFFFFF
CLONE3_FLAGS = CLONE_LEGACY_FLAGS | F.CLONE_CLEAR_SIGHAND | F.CLONE_INTO_CGROUP
NAMESPACES = (F.CLONE_NEWNS | F.CLONE_NEWCGROUP | F.CLONE_NEWUTS | F.CLONE_NEWIPC
              | F.CLONE_NEWUSER | F.CLONE_NEWPID | F.CLONE_NEWNET | F.CLONE_NEWTIME)
PAGE_SIZE = 4096
MAX_PID_NS_LEVEL = 32
_S32 = struct.Struct("<i")


@dataclass(slots=True)
class CloneArgs:
    """struct kernel_clone_args: what clone and clone3 both reduce to."""

    flags: int
    exit_signal: int
    stack: int = 0  # the child's rsp (0: the parent's); clone3's stack + stack_size
    parent_tid: int = 0
    child_tid: int = 0
    tls: int = 0
    pidfd: int = 0
    set_tid: tuple[int, ...] = ()
    cgroup: int = 0


# Set by the process family: makes a new process (fork/vfork/clone without
# CLONE_THREAD) and returns the child's pid to the parent.
PROCESS_CLONE: Callable[[Task, CloneArgs], int] | None = None


def validate(t: Task, a: CloneArgs) -> None:
    """copy_process's flag rules (EINVAL) and what a sandbox cannot grant."""
    f = a.flags
    if f & (F.CLONE_NEWNS | F.CLONE_FS) == F.CLONE_NEWNS | F.CLONE_FS:
        raise Errno(E.EINVAL)
    if f & (F.CLONE_NEWUSER | F.CLONE_FS) == F.CLONE_NEWUSER | F.CLONE_FS:
        raise Errno(E.EINVAL)
    if f & F.CLONE_THREAD and not f & F.CLONE_SIGHAND:
        raise Errno(E.EINVAL)  # a thread group shares its signal handlers...
    if f & F.CLONE_SIGHAND and not f & F.CLONE_VM:
        raise Errno(E.EINVAL)  # ...and shared handlers need shared memory
    if f & F.CLONE_PARENT and t.proc is t.kernel.init:
        raise Errno(E.EINVAL)  # init's siblings would never be reaped
    if f & F.CLONE_THREAD and f & (F.CLONE_NEWUSER | F.CLONE_NEWPID):
        raise Errno(E.EINVAL)
    if f & F.CLONE_PIDFD and f & (F.CLONE_DETACHED | F.CLONE_THREAD):
        raise Errno(E.EINVAL)
    if f & F.CLONE_PIDFD and f & F.CLONE_PARENT_SETTID and a.pidfd == a.parent_tid:
        raise Errno(E.EINVAL)
    if f & NAMESPACES:
        raise Errno(E.EPERM)  # no namespaces inside the sandbox, as without CAP_SYS_ADMIN
    if f & F.CLONE_SETTLS and a.tls >= USER_TOP:
        raise Errno(E.EPERM)  # ARCH_SET_FS's rule


def kernel_clone(t: Task, a: CloneArgs) -> int:
    validate(t, a)
    if a.flags & F.CLONE_THREAD:
        return new_thread(t, a)
    if PROCESS_CLONE is None:
        raise Errno(E.ENOSYS)
    return PROCESS_CLONE(t, a)


def new_thread(t: Task, a: CloneArgs) -> int:
    """A new task in ``t``'s process: same memory and handlers, the caller's
    registers with rax = 0 on the new stack, its own signal state."""
    k = t.kernel
    f = a.flags
    files = t.files
    if f & F.CLONE_FILES:
        files.users += 1
    else:
        files = files.fork()
    fs = t.fs if f & F.CLONE_FS else t.fs.fork()
    ctx = t.ctx.copy()
    ctx.regs.rax = 0
    if a.stack:
        ctx.regs.rsp = a.stack
    if f & F.CLONE_SETTLS:
        ctx.fs_base = a.tls
    tid = k.alloc_id()
    child = k.new_task(t.proc, ctx, files, fs, tid=tid)
    child.sigmask = t.sigmask
    child.altstack = altstack.DISABLED  # CLONE_VM without CLONE_VFORK: sas_ss_reset
    child.comm = t.comm
    if f & F.CLONE_CHILD_CLEARTID:
        child.clear_child_tid = a.child_tid
    # The tid stores: Linux ignores faults on both (the child's is written
    # from the child, in the same memory, before it first runs).
    for flag, addr in ((F.CLONE_PARENT_SETTID, a.parent_tid),
                       (F.CLONE_CHILD_SETTID, a.child_tid)):
        if f & flag:
            try:
                t.mm.write(addr, _S32.pack(tid))
            except Errno:
                pass
    return tid


@syscall("clone", ULONG, PTR, PTR, PTR, ULONG)
def clone(t: Task, flags: int, newsp: int, parent_tid: int, child_tid: int, tls: int) -> int:
    """x86-64 order: flags, stack, parent_tid, child_tid, tls."""
    a = CloneArgs(flags & CLONE_LEGACY_FLAGS & ~F.CSIGNAL, flags & F.CSIGNAL, newsp,
                  parent_tid, child_tid, tls, pidfd=parent_tid)
    return kernel_clone(t, a)


def _read_clone_args(t: Task, uargs: int, size: int) -> tuple[CloneArgs, int]:
    """copy_clone_args_from_user: E2BIG/EINVAL on size, zeros past what we know;
    returns the arguments and stack_size."""
    if size > PAGE_SIZE:
        raise Errno(E.E2BIG)
    if size < F.CLONE_ARGS_SIZE_VER0:
        raise Errno(E.EINVAL)
    raw = t.mm.read(uargs, size)
    if size > CLONE_ARGS.size and raw[CLONE_ARGS.size:].strip(b"\0"):
        raise Errno(E.E2BIG)
    raw = raw[:CLONE_ARGS.size].ljust(CLONE_ARGS.size, b"\0")
    c = CLONE_ARGS.read(raw)
    if c.set_tid_size > MAX_PID_NS_LEVEL:
        raise Errno(E.EINVAL)
    if bool(c.set_tid) != bool(c.set_tid_size):
        raise Errno(E.EINVAL)
    if c.exit_signal & ~F.CSIGNAL or c.exit_signal > 64:
        raise Errno(E.EINVAL)
    if c.flags & F.CLONE_INTO_CGROUP and (c.cgroup > 0x7FFFFFFF
                                          or size < F.CLONE_ARGS_SIZE_VER2):
        raise Errno(E.EINVAL)
    set_tid: tuple[int, ...] = ()
    if c.set_tid:
        n = c.set_tid_size
        set_tid = struct.unpack(f"<{n}i", t.mm.read(c.set_tid, 4 * n))
    args = CloneArgs(c.flags, c.exit_signal, c.stack, c.parent_tid, c.child_tid, c.tls,
                     c.pidfd, set_tid, c.cgroup)
    return args, int(c.stack_size)


@syscall("clone3", PTR, ULONG)
def clone3(t: Task, uargs: int, size: int) -> int:
    a, stack_size = _read_clone_args(t, uargs, size)
    f = a.flags
    if f & ~CLONE3_FLAGS or f & (F.CLONE_DETACHED | (F.CSIGNAL & ~F.CLONE_NEWTIME)):
        raise Errno(E.EINVAL)
    if f & F.CLONE_SIGHAND and f & F.CLONE_CLEAR_SIGHAND:
        raise Errno(E.EINVAL)
    if f & (F.CLONE_THREAD | F.CLONE_PARENT) and a.exit_signal:
        raise Errno(E.EINVAL)
    # clone3_stack_valid: both or neither, inside user space; rsp starts at the top.
    if a.stack == 0:
        if stack_size:
            raise Errno(E.EINVAL)
    else:
        if not stack_size or a.stack + stack_size > USER_TOP:
            raise Errno(E.EINVAL)
        a.stack += stack_size
    if a.set_tid:
        raise Errno(E.EPERM)  # choosing pids needs CAP_CHECKPOINT_RESTORE
    if f & F.CLONE_INTO_CGROUP:
        raise Errno(E.EINVAL)  # no cgroups in the sandbox
    return kernel_clone(t, a)
