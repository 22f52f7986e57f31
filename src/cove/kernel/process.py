"""Process mechanics: creating processes (fork, vfork, process-creating clone),
memory maps shared between processes (CLONE_VM without CLONE_THREAD), the
vfork hand-back, and what happens to a dead child (auto-reap, adoption).

``fork_process`` is the one implementation behind fork, vfork, clone and
clone3 for every flag set that makes a new *process* (no CLONE_THREAD);
threads are ``cove.kernel.syscalls.thread``'s.

A MemoryMap normally belongs to one process. CLONE_VM (vfork, posix_spawn)
lets a new process use its parent's; ``_mm_users`` counts such extra users,
so the map is released only by the last process to exec or exit, and the
platform address space (page-table frames) is destroyed with it.
"""

from __future__ import annotations

import struct
import weakref
from collections.abc import Callable

from cove.abi import flags as F
from cove.abi.errno import E, Errno
from cove.kernel import altstack
from cove.kernel.task import State
from cove.kernel.wait import Blocked, WaitQueue

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from cove.kernel.mm import MemoryMap
    from cove.kernel.task import Process, Task

SIG_DFL, SIG_IGN = 0, 1
_U32 = struct.Struct("<I")

# Namespaces and cgroups: cove offers none. An unprivileged process on Linux
# gets EPERM for these, which programs are written to cope with.
NAMESPACE_FLAGS = (F.CLONE_NEWNS | F.CLONE_NEWCGROUP | F.CLONE_NEWUTS | F.CLONE_NEWIPC
                   | F.CLONE_NEWUSER | F.CLONE_NEWPID | F.CLONE_NEWNET | F.CLONE_NEWTIME)
# Accepted and without effect in cove: no ptrace, no SysV semaphore undo
# lists, no I/O contexts; CLONE_DETACHED is ignored by Linux too.
IGNORED_FLAGS = (F.CLONE_PTRACE | F.CLONE_UNTRACED | F.CLONE_SYSVSEM | F.CLONE_IO
                 | F.CLONE_DETACHED)
KNOWN_FLAGS = (F.CLONE_VM | F.CLONE_FS | F.CLONE_FILES | F.CLONE_SIGHAND
               | F.CLONE_PIDFD | F.CLONE_VFORK | F.CLONE_PARENT | F.CLONE_THREAD
               | F.CLONE_SETTLS | F.CLONE_PARENT_SETTID | F.CLONE_CHILD_CLEARTID
               | F.CLONE_CHILD_SETTID | F.CLONE_CLEAR_SIGHAND | F.CLONE_INTO_CGROUP
               | NAMESPACE_FLAGS | IGNORED_FLAGS)

# Called as hook(parent_task, child_task) at the end of every fork_process,
# and as hook(task) at every successful execve after the new image is in
# place: for state owned elsewhere (POSIX timers are deleted at exec, ...).
FORK_HOOKS: list[Callable[[Task, Task], None]] = []
EXEC_HOOKS: list[Callable[[Task], None]] = []

# id(MemoryMap) -> number of processes using it, present only while > 1.
# (MemoryMap is an unhashable dataclass; an entry keeps no map alive, but
# every map in here is held by at least two live processes.)
_mm_users: dict[int, int] = {}
# A vfork child -> the queue its parent sleeps on until the child lets go of
# the shared memory map (execve or exit).
_vfork_done: weakref.WeakKeyDictionary[Process, WaitQueue] = weakref.WeakKeyDictionary()
# A vfork parent thread -> the child it waits for (its re-run finds it here).
_vfork_waiting: weakref.WeakKeyDictionary[Task, Process] = weakref.WeakKeyDictionary()
# Processes that have called execve since they were forked (setpgid's EACCES).
_execed: weakref.WeakSet[Process] = weakref.WeakSet()


# --- fork ---------------------------------------------------------------------------
def fork_process(t: Task, flags: int, child_stack: int = 0, ptid: int = 0, ctid: int = 0,
                 tls: int = 0, exit_signal: int = F.SIGCHLD) -> int:
    """Create a new process from the calling thread ``t``; returns the child's pid.

    ``flags`` are clone flags without CLONE_THREAD and without the legacy
    CSIGNAL byte (bit 7 there is clone3's CLONE_NEWTIME): ``exit_signal``
    says which signal the parent gets at the child's exit; an invalid one
    means none, as for Linux's clone. The
    child's memory is a copy-on-write duplicate, or with CLONE_VM the
    caller's own map; CLONE_FILES/CLONE_FS/CLONE_SIGHAND share the fd
    table, cwd/root/umask and signal handlers instead of copying them.

    With CLONE_VFORK the caller sleeps (uninterruptibly, as Linux's
    killable wait) until the child execs or exits; the handler is then run
    again with the same arguments and this function returns the pid it
    recorded, so a handler simply ``return fork_process(...)``.

    Errors: EINVAL (flag combinations, CLONE_PIDFD and CLONE_INTO_CGROUP,
    which cove does not offer), EPERM (namespace flags), EAGAIN (the
    sandbox's task limit or RLIMIT_NPROC for non-root), ENOMEM.
    """
    waiting = _vfork_waiting.get(t)
    if waiting is not None:
        return _vfork_wait(t, waiting)
    _check_flags(t, flags)
    _check_limits(t)
    k = t.kernel
    me = t.proc
    parent = me.parent if flags & F.CLONE_PARENT else me
    if parent is None:
        raise Errno(E.EINVAL)

    if flags & F.CLONE_VM:
        mm = me.mm
        share_mm(mm)
    else:
        space = k.platform.create_address_space()
        try:
            mm = me.mm.fork(space)
        except Errno:
            _destroy_space(space)
            raise
    child = k.new_process(parent, mm, me.creds.copy())
    child.pgid, child.sid = me.pgid, me.sid  # from the caller even with CLONE_PARENT
    child.exit_signal = exit_signal if 1 <= exit_signal <= 64 else 0
    if flags & F.CLONE_SIGHAND:
        child.sighand = me.sighand
    else:
        child.sighand = me.sighand.copy()
        if flags & F.CLONE_CLEAR_SIGHAND:
            for act in child.sighand.actions:
                if act.handler != SIG_IGN:
                    act.handler, act.flags, act.restorer, act.mask = SIG_DFL, 0, 0, 0
    child.comm = t.comm or me.comm
    child.exe = me.exe
    child.image = me.image
    from cove.kernel.syscalls.proc_info import fork_inherit

    fork_inherit(me, child)

    ctx = t.ctx.copy()
    ctx.regs.rax = 0
    if child_stack:
        ctx.regs.rsp = child_stack
    if flags & F.CLONE_SETTLS:
        ctx.fs_base = tls
    if flags & F.CLONE_FILES:
        files = t.files
        files.users += 1
    else:
        files = t.files.fork()
    fs = t.fs if flags & F.CLONE_FS else t.fs.fork()
    ct = k.new_task(child, ctx, files, fs)
    ct.comm = child.comm
    ct.sigmask = t.sigmask
    # A process sharing memory without vfork runs on another stack: the
    # parent's alternate signal stack is not its (Linux's sas_ss_reset).
    if flags & (F.CLONE_VM | F.CLONE_VFORK) == F.CLONE_VM:
        ct.altstack = altstack.DISABLED
    else:
        ct.altstack = t.altstack
    pid = child.pid
    if flags & F.CLONE_CHILD_SETTID:
        _put_tid(child.mm, ctid, pid)
    if flags & F.CLONE_CHILD_CLEARTID:
        ct.clear_child_tid = ctid
    if flags & F.CLONE_PARENT_SETTID:
        _put_tid(me.mm, ptid, pid)
    for hook in FORK_HOOKS:
        hook(t, ct)
    if flags & F.CLONE_VFORK:
        _vfork_done[child] = WaitQueue()
        _vfork_waiting[t] = child
        return _vfork_wait(t, child)
    return pid


def _check_flags(t: Task, flags: int) -> None:
    """copy_process's flag checks, for a new process."""
    if flags & ~KNOWN_FLAGS or flags & F.CLONE_THREAD:
        raise Errno(E.EINVAL)
    if flags & F.CLONE_SIGHAND and not flags & F.CLONE_VM:
        raise Errno(E.EINVAL)
    if flags & F.CLONE_CLEAR_SIGHAND and flags & F.CLONE_SIGHAND:
        raise Errno(E.EINVAL)
    if flags & (F.CLONE_NEWNS | F.CLONE_NEWUSER) and flags & F.CLONE_FS:
        raise Errno(E.EINVAL)
    if flags & F.CLONE_PARENT and t.proc is t.kernel.init:
        raise Errno(E.EINVAL)  # init's children must stay init's (SIGNAL_UNKILLABLE)
    if flags & (F.CLONE_PIDFD | F.CLONE_INTO_CGROUP):
        raise Errno(E.EINVAL)  # no pidfds or cgroups in cove yet
    if flags & NAMESPACE_FLAGS:
        raise Errno(E.EPERM)


def _check_limits(t: Task) -> None:
    """EAGAIN past the sandbox's thread limit (Linux's max_threads) or, for a
    non-root real user, past RLIMIT_NPROC tasks of that user."""
    from cove.kernel.syscalls.limits import max_threads, rlimit

    k = t.kernel
    if len(k.tasks) >= max_threads(k):
        raise Errno(E.EAGAIN)
    creds = t.proc.creds
    if creds.ruid != 0 and creds.euid != 0:
        soft = rlimit(t.proc, F.RLIMIT_NPROC)[0]
        if soft != F.RLIM_INFINITY:
            uid = creds.ruid
            if sum(1 for th in k.tasks.values() if th.proc.creds.ruid == uid) >= soft:
                raise Errno(E.EAGAIN)


def _put_tid(mm: MemoryMap, addr: int, tid: int) -> None:
    """CLONE_*_SETTID stores: a bad address is ignored, as Linux's put_user there is."""
    try:
        mm.write(addr, _U32.pack(tid))
    except Errno:
        pass


# --- vfork ----------------------------------------------------------------------------
def _vfork_wait(t: Task, child: Process) -> int:
    q = _vfork_done.get(child)
    if q is not None:
        # Not interruptible: a vfork parent only wakes for the child or dies.
        raise Blocked(q, interruptible=False)
    _vfork_waiting.pop(t, None)
    return child.pid


def _vfork_release(proc: Process) -> None:
    q = _vfork_done.pop(proc, None)
    if q is not None:
        q.notify()


# --- shared memory maps ---------------------------------------------------------------
def share_mm(mm: MemoryMap) -> None:
    """One more process uses ``mm`` (CLONE_VM without CLONE_THREAD)."""
    _mm_users[id(mm)] = _mm_users.get(id(mm), 1) + 1


def mm_shared(mm: MemoryMap) -> bool:
    return id(mm) in _mm_users


def drop_mm(proc: Process, mm: MemoryMap) -> None:
    """``proc`` stops using ``mm`` (exit, or execve's new map): free it if no
    other process uses it, and hand a vfork parent its memory back."""
    key = id(mm)
    n = _mm_users.get(key)
    if n is not None:
        if n > 2:
            _mm_users[key] = n - 1
        else:
            del _mm_users[key]
    else:
        free_mm(mm)
    _vfork_release(proc)


class _NoSpace:
    """Stands in for an address space about to be destroyed as a whole."""

    def map(self, vaddr: int, frame: int, prot: int) -> None:
        raise AssertionError("mapping into a released memory map")

    def unmap(self, vaddr: int, length: int) -> list[int]:
        return []

    def flush(self) -> None:
        pass


def free_mm(mm: MemoryMap) -> None:
    """Release every page of ``mm`` and destroy its address space.

    The page tables go wholesale with ``destroy()``, so the pages are not
    unmapped one by one first (each unmap is a TLB shoot-down on kvm: a
    host call per page, milliseconds per process). Nothing runs on the
    space in between.
    """
    space = mm.space
    if getattr(space, "destroy", None) is None:
        mm.release()  # a test double: keep its bookkeeping exact
        return
    mm.space = _NoSpace()
    try:
        mm.release(unmap=False)
    finally:
        mm.space = space
        _destroy_space(space)


def release_mm(proc: Process) -> None:
    """Process exit: let go of the process's memory map (``Kernel._process_exit``)."""
    drop_mm(proc, proc.mm)


def _destroy_space(space: object) -> None:
    destroy = getattr(space, "destroy", None)  # test doubles may have none
    if destroy is not None:
        destroy()


# --- exec bookkeeping -------------------------------------------------------------------
def mark_execed(proc: Process) -> None:
    _execed.add(proc)


def has_execed(proc: Process) -> bool:
    return proc in _execed


# --- dead children ----------------------------------------------------------------------
def core_status(proc: Process, status: int) -> int:
    """The wait status Linux reports for a death by ``status``: the core-dump
    bit (0x80) stays only when a core would have been written, i.e. when
    RLIMIT_CORE allows one and the process is dumpable. cove writes no core
    file; it reports what a Linux with core_pattern "core" does. With the
    default RLIMIT_CORE of 0 a SIGSEGV death is a plain 11, as on such a host."""
    if not status & 0x80 or not status & 0x7F:
        return status
    from cove.kernel.syscalls.limits import rlimit

    if rlimit(proc, F.RLIMIT_CORE)[0] == 0 or not proc.dumpable:
        return status & ~0x80
    return status



def autoreap(proc: Process) -> bool:
    """Whether the dead ``proc`` is released at once instead of becoming a
    zombie: its parent ignores SIGCHLD or set SA_NOCLDWAIT (only for a child
    whose exit signal is SIGCHLD, as Linux's do_notify_parent)."""
    parent = proc.parent
    if parent is None or proc.exit_signal != F.SIGCHLD:
        return False
    act = parent.sighand.actions[F.SIGCHLD]
    return act.handler == SIG_IGN or bool(act.flags & F.SA_NOCLDWAIT)


def release_zombie(proc: Process) -> None:
    """Forget an auto-reaped child: no wait will see it, and its times are
    not added to the parent's (Linux adds only waited-for children's)."""
    k = proc.kernel
    k.processes.pop(proc.pid, None)
    parent = proc.parent
    if parent is not None:
        try:
            parent.children.remove(proc)
        except ValueError:
            pass
        parent.child_wait.notify()  # a wait that now has no children returns ECHILD


def child_exited(proc: Process) -> None:
    """After the exit notification: release the zombie if nobody will wait for it."""
    if autoreap(proc):
        release_zombie(proc)


def adopted(child: Process) -> None:
    """``child`` was just re-parented to a reaper (Linux's reparent_leader): its
    exit signal becomes SIGCHLD, and a zombie is announced to the new parent."""
    from cove.kernel import signals

    child.exit_signal = F.SIGCHLD
    parent = child.parent
    if parent is None or child.alive or child.state is not State.ZOMBIE:
        return
    signals.notify_parent(child)
    parent.child_wait.notify()
    child_exited(child)
