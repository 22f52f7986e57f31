"""Signal generation and delivery.

Generation (``send_*``, ``force_fault``) marks a signal pending on a thread or
its process. Delivery (``deliver``) runs on the way back to user mode: it
picks the lowest-numbered unblocked pending signal and applies its action:
ignore, the default (terminate, core, stop, continue), or a guest handler on
an ``rt_sigframe`` (see ``cove.abi.structs.sigframe`` for the layout).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cove.abi import flags as F
from cove.abi.structs.siginfo import SIGINFO_SIZE, siginfo_chld, siginfo_fault, siginfo_kill
from cove.kernel.task import State

if TYPE_CHECKING:
    from cove.kernel.task import Process, Task

SIG_DFL, SIG_IGN = 0, 1
UNBLOCKABLE = (1 << (F.SIGKILL - 1)) | (1 << (F.SIGSTOP - 1))

_CORE = {F.SIGQUIT, F.SIGILL, F.SIGTRAP, F.SIGABRT, F.SIGBUS, F.SIGFPE, F.SIGSEGV,
         F.SIGXCPU, F.SIGXFSZ, F.SIGSYS}
_IGNORE = {F.SIGCHLD, F.SIGCONT, F.SIGURG, F.SIGWINCH}
_STOP = {F.SIGSTOP, F.SIGTSTP, F.SIGTTIN, F.SIGTTOU}

CLD_EXITED, CLD_KILLED, CLD_DUMPED, CLD_TRAPPED, CLD_STOPPED, CLD_CONTINUED = 1, 2, 3, 4, 5, 6


def bit(signo: int) -> int:
    return 1 << (signo - 1)


def default_ignored(signo: int) -> bool:
    return signo in _IGNORE


def is_ignored(proc: Process, signo: int) -> bool:
    act = proc.sighand.actions[signo]
    return act.handler == SIG_IGN or (act.handler == SIG_DFL and default_ignored(signo))


def _info(signo: int, code: int, pid: int, uid: int) -> bytes:
    buf = bytearray(SIGINFO_SIZE)
    siginfo_kill(buf, 0, signo, code, pid, uid)
    return bytes(buf)


def send_task(t: Task, signo: int, info: bytes | None = None) -> None:
    """Queue ``signo`` for one thread (tgkill, faults, timers aimed at a thread)."""
    if signo == 0 or not t.proc.alive:
        return
    if signo != F.SIGKILL and is_ignored(t.proc, signo) and not t.sigmask & bit(signo):
        return
    t.pending.add(signo, info or _info(signo, 0, 0, 0))
    _kick(t, signo)


def send_process(proc: Process, signo: int, info: bytes | None = None) -> None:
    """Queue ``signo`` for a process: any thread that does not block it takes it."""
    if signo == 0 or not proc.alive:
        return
    if signo == F.SIGKILL:
        proc.kernel.exit_group(proc, F.SIGKILL)
        return
    if signo == F.SIGCONT:
        _continue(proc)
    if is_ignored(proc, signo):
        return
    proc.shared_pending.add(signo, info or _info(signo, 0, 0, 0))
    for t in proc.threads:
        if not t.sigmask & bit(signo):
            _kick(t, signo)
            break


def _kick(t: Task, signo: int) -> None:
    """Make the target notice: wake it from an interruptible sleep."""
    if t.state is State.BLOCKED and not t.sigmask & bit(signo):
        t.kernel.sched.wake(t, interrupted=True)


def _continue(proc: Process) -> None:
    if proc.state is State.STOPPED:
        proc.state = State.RUNNABLE
        proc.stop_report = 0xFFFF  # WCONTINUED
        for t in proc.threads:
            if t.state is State.STOPPED:
                t.kernel.sched.add(t)
        notify_parent(proc, CLD_CONTINUED, F.SIGCONT)


def force_fault(t: Task, signo: int, code: int, addr: int, *, trapno: int = 14,
                err: int = 0) -> None:
    """A synchronous fault: if the guest blocks or ignores it, it dies of it (as
    Linux's force_sig_info resets such a signal to its default action)."""
    act = t.proc.sighand.actions[signo]
    if t.sigmask & bit(signo) or act.handler == SIG_IGN:
        act.handler = SIG_DFL
        t.sigmask &= ~bit(signo)
    buf = bytearray(SIGINFO_SIZE)
    siginfo_fault(buf, 0, signo, code, addr)
    t.fault_info = (trapno, err, addr)
    t.pending.add(signo, bytes(buf))


def _next_signal(t: Task) -> tuple[int, bool] | None:
    """(signo, from the shared queue) of the lowest deliverable pending signal."""
    ready = (t.pending.mask | t.proc.shared_pending.mask) & ~(t.sigmask & ~UNBLOCKABLE)
    if not ready:
        return None
    # Synchronous signals first, as Linux does, then lowest number.
    sync = ready & (bit(F.SIGSEGV) | bit(F.SIGBUS) | bit(F.SIGILL) | bit(F.SIGTRAP) |
                    bit(F.SIGFPE) | bit(F.SIGSYS))
    pick = sync or ready
    signo = (pick & -pick).bit_length()
    return signo, not t.pending.mask & bit(signo)


def has_deliverable(t: Task) -> bool:
    return _next_signal(t) is not None


def deliver(t: Task) -> None:
    """Apply pending signals before ``t`` returns to user mode."""
    while True:
        nxt = _next_signal(t)
        if nxt is None:
            t.restart_nr = None
            return
        signo, shared = nxt
        info = (t.proc.shared_pending if shared else t.pending).take(signo)
        act = t.proc.sighand.actions[signo]
        if act.handler == SIG_IGN or (act.handler == SIG_DFL and default_ignored(signo)):
            continue
        if act.handler == SIG_DFL:
            if signo in _STOP:
                stop(t.proc, signo)
                return
            status = signo | (0x80 if signo in _CORE else 0)
            t.kernel.exit_group(t.proc, status)
            return
        from cove.kernel import sigframe

        sigframe.setup(t, signo, act, info or _info(signo, 0, 0, 0))
        return


def stop(proc: Process, signo: int) -> None:
    proc.state = State.STOPPED
    proc.stop_report = (signo << 8) | 0x7F
    for th in proc.threads:
        if th.state is State.RUNNABLE:
            th.state = State.STOPPED
            proc.kernel.sched.remove(th)
    notify_parent(proc, CLD_STOPPED, signo)


def notify_parent(proc: Process, code: int | None = None, status: int | None = None) -> None:
    """SIGCHLD (or the process's exit signal) to the parent, with a CLD_* siginfo."""
    parent = proc.parent
    if parent is None or not parent.alive:
        return
    if code is None:
        st = proc.exit_code or 0
        if st & 0x7F:
            code, status = (CLD_DUMPED if st & 0x80 else CLD_KILLED), st & 0x7F
        else:
            code, status = CLD_EXITED, (st >> 8) & 0xFF
    signo = proc.exit_signal if code in (CLD_EXITED, CLD_KILLED, CLD_DUMPED) else F.SIGCHLD
    if not signo:
        return
    act = parent.sighand.actions[F.SIGCHLD]
    if code == CLD_STOPPED and act.flags & F.SA_NOCLDSTOP and signo == F.SIGCHLD:
        return
    buf = bytearray(SIGINFO_SIZE)
    siginfo_chld(buf, 0, code, proc.pid, proc.creds.ruid, status or 0, 0, 0)
    send_process(parent, signo, bytes(buf))
