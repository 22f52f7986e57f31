"""Signal generation and delivery.

Generation (``send_*``, ``force_fault``) marks a signal pending on a thread or
its process. Delivery (``deliver``) runs on the way back to user mode: it
picks the lowest-numbered unblocked pending signal (synchronous ones first)
and applies its action: ignore, the default (terminate, core, stop, continue),
or a guest handler on an ``rt_sigframe`` (``cove.kernel.sigframe``).

Interrupted system calls: the kernel leaves rax = -EINTR and ``t.restart_nr``
set. A handler decides between EINTR and a restart (``sigframe.setup``); when
no handler runs (the signal was ignored, or stopped and continued the
process) the call restarts, as Linux's ERESTART* codes all do without one.

``t.saved_sigmask`` (rt_sigsuspend, and ppoll/pselect style calls) is the
mask a call replaced: a handler's frame saves it in uc_sigmask; if no handler
runs it is restored here. A call that returns normally restores it itself.
"""

from __future__ import annotations

import struct
import weakref

from cove.abi import flags as F
from cove.abi.structs.siginfo import SIGINFO_SIZE, siginfo_chld, siginfo_fault, siginfo_kill
from cove.kernel.syscall import TABLE
from cove.kernel.task import State
from cove.kernel.wait import WaitQueue

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from cove.kernel.task import Process, SigPending, Task

SIG_DFL, SIG_IGN = 0, 1
UNBLOCKABLE = (1 << (F.SIGKILL - 1)) | (1 << (F.SIGSTOP - 1))
NSIG = 64
ALL = (1 << NSIG) - 1

_CORE = {F.SIGQUIT, F.SIGILL, F.SIGTRAP, F.SIGABRT, F.SIGBUS, F.SIGFPE, F.SIGSEGV,
         F.SIGXCPU, F.SIGXFSZ, F.SIGSYS}
_IGNORE = {F.SIGCHLD, F.SIGCONT, F.SIGURG, F.SIGWINCH}
_STOP = {F.SIGSTOP, F.SIGTSTP, F.SIGTTIN, F.SIGTTOU}
STOP_MASK = sum(1 << (s - 1) for s in _STOP)
SYNC_MASK = sum(1 << (s - 1) for s in
                (F.SIGSEGV, F.SIGBUS, F.SIGILL, F.SIGTRAP, F.SIGFPE, F.SIGSYS))
FAULT_SIGNALS = {F.SIGSEGV, F.SIGBUS, F.SIGILL, F.SIGTRAP, F.SIGFPE}

CLD_EXITED, CLD_KILLED, CLD_DUMPED, CLD_TRAPPED, CLD_STOPPED, CLD_CONTINUED = 1, 2, 3, 4, 5, 6

_HEAD = struct.Struct("<iii")  # si_signo, si_errno, si_code


def bit(signo: int) -> int:
    return 1 << (signo - 1)


def valid(signo: int) -> bool:
    """``valid_signal``: 0 (existence checks) to 64."""
    return 0 <= signo <= NSIG


def default_ignored(signo: int) -> bool:
    return signo in _IGNORE


def is_ignored(proc: Process, signo: int) -> bool:
    act = proc.sighand.actions[signo]
    return act.handler == SIG_IGN or (act.handler == SIG_DFL and default_ignored(signo))


def info_code(info: bytes) -> int:
    return int(_HEAD.unpack_from(info, 0)[2])


def make_info(signo: int, code: int = F.SI_KERNEL, pid: int = 0, uid: int = 0) -> bytes:
    """A kill-style siginfo (SI_USER/SI_TKILL from a process, SI_KERNEL)."""
    buf = bytearray(SIGINFO_SIZE)
    siginfo_kill(buf, 0, signo, code, pid, uid)
    return bytes(buf)


# --- arrival: rt_sigtimedwait and signalfd sleep here -------------------------
_arrivals: weakref.WeakKeyDictionary[Process, WaitQueue] = weakref.WeakKeyDictionary()


def arrivals(proc: Process) -> WaitQueue:
    """Notified whenever a signal is queued to ``proc`` or any of its threads
    (blocked ones too: waiting for blocked signals is the point)."""
    q = _arrivals.get(proc)
    if q is None:
        q = _arrivals[proc] = WaitQueue()
    return q


def _arrived(proc: Process) -> None:
    q = _arrivals.get(proc)
    if q is not None:
        q.notify()


# --- generation ---------------------------------------------------------------
def _prepare(proc: Process, signo: int) -> None:
    """Linux's prepare_signal: SIGCONT resumes a stopped group and discards
    pending stop signals; a stop signal discards a pending SIGCONT."""
    if signo == F.SIGCONT:
        flush(proc, STOP_MASK)
        _continue(proc)
    elif signo in _STOP:
        flush(proc, bit(F.SIGCONT))


def send_task(t: Task, signo: int, info: bytes | None = None) -> None:
    """Queue ``signo`` for one thread (tgkill, faults, timers aimed at a thread)."""
    if signo == 0 or not t.proc.alive or t.state is State.DEAD:
        return
    if signo == F.SIGKILL:
        t.kernel.exit_group(t.proc, F.SIGKILL)
        return
    _prepare(t.proc, signo)
    if is_ignored(t.proc, signo) and not t.sigmask & bit(signo):
        return
    t.pending.add(signo, info or make_info(signo))
    _kick(t, signo)  # first: an interrupting signal must wake it as interrupted
    _arrived(t.proc)


def send_process(proc: Process, signo: int, info: bytes | None = None) -> None:
    """Queue ``signo`` for a process: any thread that does not block it takes it."""
    if signo == 0 or not proc.alive:
        return
    if signo == F.SIGKILL:
        proc.kernel.exit_group(proc, F.SIGKILL)
        return
    _prepare(proc, signo)
    # Like Linux, a blocked signal is queued even while ignored: it may be
    # unignored before it is unblocked (judged on the first thread's mask).
    lead = proc.threads[0] if proc.threads else None
    if is_ignored(proc, signo) and (lead is None or not lead.sigmask & bit(signo)):
        return
    proc.shared_pending.add(signo, info or make_info(signo))
    _wake_taker(proc, signo)
    _arrived(proc)


def _wake_taker(proc: Process, signo: int) -> None:
    """Pick a thread to take a process-directed signal: the first one that
    does not block it (the main thread preferred, as Linux's complete_signal)."""
    for t in proc.threads:
        if not t.sigmask & bit(signo):
            _kick(t, signo)
            return


def _kick(t: Task, signo: int) -> None:
    """Make the target notice: wake it from an interruptible sleep."""
    if t.state is State.BLOCKED and not t.sigmask & bit(signo):
        t.kernel.sched.wake(t, interrupted=True)


def retarget(t: Task, newly_blocked: int) -> None:
    """``t`` just blocked some signals: process-directed ones pending for them
    need another thread (Linux's retarget_shared_pending)."""
    pending = t.proc.shared_pending.mask & newly_blocked
    while pending:
        low = pending & -pending
        _wake_taker(t.proc, low.bit_length())
        pending &= ~low


def _continue(proc: Process) -> None:
    if proc.state is State.STOPPED:
        proc.state = State.RUNNABLE
        proc.stop_report = 0xFFFF  # WCONTINUED
        for t in proc.threads:
            if t.state is State.STOPPED:
                t.kernel.sched.add(t)
        notify_parent(proc, CLD_CONTINUED, F.SIGCONT)


def flush(proc: Process, mask: int) -> None:
    """Discard pending signals in ``mask`` from the process and all its threads."""
    _flush_queue(proc.shared_pending, mask)
    for t in proc.threads:
        _flush_queue(t.pending, mask)


def _flush_queue(q: SigPending, mask: int) -> None:
    if q.mask & mask:
        q.infos = [(s, i) for s, i in q.infos if not bit(s) & mask]
        q.mask &= ~mask


def force_fault(t: Task, signo: int, code: int, addr: int, *, trapno: int = 14,
                err: int = 0) -> None:
    """A synchronous fault: if the guest blocks or ignores it, it dies of it (as
    Linux's force_sig_info resets such a signal to its default action)."""
    buf = bytearray(SIGINFO_SIZE)
    siginfo_fault(buf, 0, signo, code, addr)
    t.fault_info = (trapno, err, addr)
    force(t, signo, bytes(buf))


def force(t: Task, signo: int, info: bytes) -> None:
    """force_sig_info: queue ``signo`` on ``t`` so that it cannot be blocked or ignored."""
    act = t.proc.sighand.actions[signo]
    if t.sigmask & bit(signo) or act.handler == SIG_IGN:
        act.handler = SIG_DFL
        t.sigmask &= ~bit(signo)
    t.pending.add(signo, info)
    _arrived(t.proc)


def force_sigsegv(t: Task, signo: int) -> None:
    """A signal frame could not be built for ``signo`` (bad stack, no
    SA_RESTORER): SIGSEGV, fatal if SIGSEGV itself was being delivered."""
    if signo == F.SIGSEGV:
        t.proc.sighand.actions[F.SIGSEGV].handler = SIG_DFL
        t.kernel.exit_group(t.proc, F.SIGSEGV | 0x80)
        return
    force(t, F.SIGSEGV, make_info(F.SIGSEGV))


# --- delivery -----------------------------------------------------------------
def _pick(ready: int) -> int:
    # Synchronous signals first, as Linux does, then lowest number.
    pick = (ready & SYNC_MASK) or ready
    return (pick & -pick).bit_length()


def _next_signal(t: Task) -> tuple[int, bool] | None:
    """(signo, from the shared queue) of the lowest deliverable pending signal."""
    ready = (t.pending.mask | t.proc.shared_pending.mask) & ~(t.sigmask & ~UNBLOCKABLE)
    if not ready:
        return None
    signo = _pick(ready)
    return signo, not t.pending.mask & bit(signo)


def has_deliverable(t: Task) -> bool:
    return _next_signal(t) is not None


def dequeue(t: Task, mask: int) -> tuple[int, bytes] | None:
    """Take the next pending signal in ``mask`` (thread queue first, then the
    process's): rt_sigtimedwait and signalfd, which collect blocked signals."""
    for q in (t.pending, t.proc.shared_pending):
        ready = q.mask & mask
        if ready:
            signo = _pick(ready)
            return signo, q.take(signo) or make_info(signo)
    return None


def deliver(t: Task) -> None:
    """Apply pending signals before ``t`` returns to user mode."""
    if t.proc.state is State.STOPPED and t.state is State.RUNNABLE:
        # A thread waking up inside a stopped group stops on its way out.
        t.state = State.STOPPED
        t.kernel.sched.remove(t)
        return
    while True:
        nxt = _next_signal(t)
        if nxt is None:
            break
        signo, shared = nxt
        info = (t.proc.shared_pending if shared else t.pending).take(signo)
        act = t.proc.sighand.actions[signo]
        if act.handler == SIG_IGN or (act.handler == SIG_DFL and default_ignored(signo)):
            continue
        if act.handler == SIG_DFL:
            if signo in _STOP:
                stop(t.proc, signo)
                return  # the interrupted call restarts once continued
            status = signo | (0x80 if signo in _CORE else 0)
            t.kernel.exit_group(t.proc, status)
            return
        from cove.kernel import sigframe

        if sigframe.setup(t, signo, act, info or make_info(signo)):
            return
        # No frame: the forced SIGSEGV is taken before the thread runs again.
    if t.restart_nr is not None:
        # No handler ran: every ERESTART* flavour restarts the call, except
        # those that already settled partial results (nanosleep's rem: Linux
        # would continue it through restart_block; cove keeps the EINTR).
        sc = TABLE.get(t.restart_nr)
        if sc is None or sc.on_interrupt is None:
            regs = t.ctx.regs
            regs.rip = (regs.rip - 2) & ((1 << 64) - 1)
            regs.rax = t.restart_nr
        t.restart_nr = None
    if t.saved_sigmask is not None:
        t.sigmask = t.saved_sigmask
        t.saved_sigmask = None


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
    parent.child_wait.notify()  # wait4/waitid sleepers re-check (stops and continues too)
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


# --- permission ---------------------------------------------------------------
def may_signal(sender: Process, target: Process, signo: int) -> bool:
    """check_kill_permission for a user-sent signal (kill, tgkill, sigqueue)."""
    if sender is target:
        return True
    c, tc = sender.creds, target.creds
    if c.euid == 0:  # CAP_KILL: the sandbox's root holds every capability it has
        return True
    if c.euid in (tc.suid, tc.ruid) or c.ruid in (tc.suid, tc.ruid):
        return True
    return signo == F.SIGCONT and sender.sid == target.sid
