"""Signal syscalls: rt_sigaction, rt_sigprocmask, rt_sigpending,
rt_sigsuspend, rt_sigtimedwait, rt_sigqueueinfo, rt_tgsigqueueinfo,
rt_sigreturn, sigaltstack, kill, tgkill, tkill, pause (kernel/signal.c).

Timers that send signals (alarm, setitimer, timer_*) are in ``timer``,
signalfd in ``signalfd``.
"""

from __future__ import annotations

import struct
import time
from weakref import WeakKeyDictionary

from cove.abi import flags as F
from cove.abi.errno import E, Errno
from cove.abi.structs.siginfo import K_SIGACTION, SIGINFO_SIZE, STACK_T
from cove.abi.sysnums import NR
from cove.kernel import altstack, signals
from cove.kernel.kernel import NORETURN
from cove.kernel.signals import UNBLOCKABLE
from cove.kernel.syscall import INT, PTR, ULONG, syscall
from cove.kernel.syscalls.time import NSEC, read_timespec
from cove.kernel.task import SigAction, State
from cove.kernel.wait import Blocked

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from cove.kernel.task import Process, Task

_U64 = struct.Struct("<Q")
_HEAD = struct.Struct("<iii")
UAPI_SA_FLAGS = (F.SA_NOCLDSTOP | F.SA_NOCLDWAIT | F.SA_SIGINFO | F.SA_ONSTACK | F.SA_RESTART
                 | F.SA_NODEFER | F.SA_RESETHAND | F.SA_EXPOSE_TAGBITS | F.SA_RESTORER)


def _sigset(t: Task, addr: int) -> int:
    return int(_U64.unpack(t.mm.read(addr, 8))[0])


def _check_size(sigsetsize: int) -> None:
    if sigsetsize != F.KERNEL_SIGSET_SIZE:
        raise Errno(E.EINVAL)


def set_blocked(t: Task, mask: int) -> None:
    """Replace the thread's mask (SIGKILL and SIGSTOP never blocked)."""
    mask &= ~UNBLOCKABLE & signals.ALL
    newly = mask & ~t.sigmask
    t.sigmask = mask
    if newly:
        signals.retarget(t, newly)


# --- dispositions and masks ---------------------------------------------------
@syscall("rt_sigaction", INT, PTR, PTR, ULONG)
def rt_sigaction(t: Task, sig: int, act: int, oact: int, sigsetsize: int) -> int:
    _check_size(sigsetsize)
    new = K_SIGACTION.read(t.mm.read(act, K_SIGACTION.size)) if act else None
    if not 1 <= sig <= signals.NSIG or (new is not None and sig in (F.SIGKILL, F.SIGSTOP)):
        raise Errno(E.EINVAL)
    slot = t.proc.sighand.actions[sig]
    old = SigAction(slot.handler, slot.flags & UAPI_SA_FLAGS, slot.restorer, slot.mask)
    if new is not None:
        slot.handler = new.sa_handler
        slot.flags = new.sa_flags & UAPI_SA_FLAGS
        slot.restorer = new.sa_restorer
        slot.mask = new.sa_mask & ~UNBLOCKABLE
        if signals.is_ignored(t.proc, sig):
            # POSIX: setting SIG_IGN (or an ignoring SIG_DFL) discards what is pending.
            signals.flush(t.proc, signals.bit(sig))
    if oact:
        t.mm.write(oact, K_SIGACTION.pack(old.handler, old.flags, old.restorer, old.mask))
    return 0


@syscall("rt_sigprocmask", INT, PTR, PTR, ULONG)
def rt_sigprocmask(t: Task, how: int, nset: int, oset: int, sigsetsize: int) -> int:
    _check_size(sigsetsize)
    old = t.sigmask
    if nset:
        new = _sigset(t, nset)
        if how == F.SIG_BLOCK:
            mask = old | new
        elif how == F.SIG_UNBLOCK:
            mask = old & ~new
        elif how == F.SIG_SETMASK:
            mask = new
        else:
            raise Errno(E.EINVAL)
        set_blocked(t, mask)
    if oset:
        t.mm.write(oset, _U64.pack(old))
    return 0


@syscall("rt_sigpending", PTR, ULONG)
def rt_sigpending(t: Task, uset: int, sigsetsize: int) -> int:
    if sigsetsize > F.KERNEL_SIGSET_SIZE:
        raise Errno(E.EINVAL)
    pending = (t.pending.mask | t.proc.shared_pending.mask) & t.sigmask
    t.mm.write(uset, _U64.pack(pending)[:sigsetsize])
    return 0


# --- waiting for signals ------------------------------------------------------
def _interrupted_now(t: Task, name: str) -> int:
    """A signal is already deliverable: behave as if it interrupted the sleep."""
    t.restart_nr = int(NR[name])
    return -E.EINTR


@syscall("rt_sigsuspend", PTR, ULONG, restartable=False)
def rt_sigsuspend(t: Task, umask: int, sigsetsize: int) -> int:
    _check_size(sigsetsize)
    mask = _sigset(t, umask) & ~UNBLOCKABLE
    if t.saved_sigmask is None:  # a re-run keeps the mask the first run replaced
        t.saved_sigmask = t.sigmask
    t.sigmask = mask
    if signals.has_deliverable(t):
        return _interrupted_now(t, "rt_sigsuspend")
    raise Blocked()  # only a signal ends it; the frame saves the original mask


@syscall("pause", restartable=False)
def pause(t: Task) -> int:
    if signals.has_deliverable(t):
        return _interrupted_now(t, "pause")
    raise Blocked()


_waits: WeakKeyDictionary[Task, float | None] = WeakKeyDictionary()  # its deadline


def _end_wait(t: Task) -> None:
    _waits.pop(t, None)
    if t.saved_sigmask is not None:
        t.sigmask, t.saved_sigmask = t.saved_sigmask, None


def _sigtimedwait_interrupted(t: Task, *args: int) -> None:
    """Another signal ended the wait: EINTR (never restarted, as on Linux),
    with the caller's own mask back before any handler runs."""
    _end_wait(t)


@syscall("rt_sigtimedwait", PTR, PTR, PTR, ULONG, restartable=False,
         on_interrupt=_sigtimedwait_interrupted)
def rt_sigtimedwait(t: Task, uthese: int, uinfo: int, uts: int, sigsetsize: int) -> int:
    _check_size(sigsetsize)
    want = _sigset(t, uthese) & ~UNBLOCKABLE
    first = t.blocked_call is None
    timeout_ns = read_timespec(t, uts) if uts and first else None
    got = signals.dequeue(t, want)
    if got is not None:
        _end_wait(t)
        signo, info = got
        if uinfo:
            t.mm.write(uinfo, info)  # a fault here still consumes the signal
        return signo
    if first:
        if timeout_ns == 0:
            raise Errno(E.EAGAIN)
        _waits[t] = None if timeout_ns is None else time.monotonic() + timeout_ns / NSEC
        # While asleep the waited-for signals are blocked, so that one arriving
        # ends the sleep through the arrival queue (and is returned) instead
        # of interrupting it; the kernel puts the mask back on a timeout.
        t.saved_sigmask = t.sigmask
        t.sigmask |= want
    end = _waits.get(t)
    if end is not None and time.monotonic() >= end:
        _end_wait(t)
        raise Errno(E.EAGAIN)
    raise Blocked(signals.arrivals(t.proc), deadline=end, on_timeout=-E.EAGAIN)


# --- sending ------------------------------------------------------------------
def _user_info(t: Task, signo: int, code: int) -> bytes:
    return signals.make_info(signo, code, t.proc.pid, t.proc.creds.ruid)


def _group_send(t: Task, proc: Process, signo: int, info: bytes, from_user: bool) -> None:
    """group_send_sig_info: permission, then the signal (0 only checks)."""
    if not signals.valid(signo):
        raise Errno(E.EINVAL)
    if from_user and not signals.may_signal(t.proc, proc, signo):
        raise Errno(E.EPERM)
    if signo and proc.alive:
        signals.send_process(proc, signo, info)


def _find_process(t: Task, pid: int) -> Process:
    """The thread group of ``pid`` (a thread id names its group, as in Linux);
    zombies still answer until reaped."""
    k = t.kernel
    proc = k.processes.get(pid)
    if proc is None:
        th = k.tasks.get(pid)
        if th is None:
            raise Errno(E.ESRCH)
        proc = th.proc
    return proc


def kill_info(t: Task, pid: int, signo: int, info: bytes) -> int:
    """kill_something_info: pid > 0 one process, 0 the caller's group, -1
    everyone it may signal but init and itself, < -1 the group -pid."""
    k = t.kernel
    if pid > 0:
        _group_send(t, _find_process(t, pid), signo, info, True)
        return 0
    if pid == -1:
        count, result = 0, 0
        for proc in list(k.processes.values()):
            if proc.pid > 1 and proc is not t.proc:
                count += 1
                try:
                    _group_send(t, proc, signo, info, True)
                except Errno as e:
                    if e.errno != E.EPERM:
                        result = -e.errno
        if not count:
            raise Errno(E.ESRCH)
        return result
    if pid == -(1 << 31):
        raise Errno(E.ESRCH)  # -INT_MIN has no positive group id
    pgid = t.proc.pgid if pid == 0 else -pid
    success, result = False, -E.ESRCH
    for proc in list(k.processes.values()):
        if proc.pgid == pgid:
            try:
                _group_send(t, proc, signo, info, True)
                result = 0
                success = True
            except Errno as e:
                result = -e.errno
    return 0 if success else result


@syscall("kill", INT, INT)
def kill(t: Task, pid: int, sig: int) -> int:
    return kill_info(t, pid, sig, _user_info(t, sig, F.SI_USER))


def _send_specific(t: Task, tgid: int, tid: int, sig: int, info: bytes) -> int:
    """do_send_specific: one thread (of group ``tgid`` if > 0)."""
    target = t.kernel.tasks.get(tid)
    if target is None or target.state is State.DEAD or (tgid > 0 and target.proc.pid != tgid):
        raise Errno(E.ESRCH)
    if not signals.valid(sig):
        raise Errno(E.EINVAL)
    if not signals.may_signal(t.proc, target.proc, sig):
        raise Errno(E.EPERM)
    if sig:
        signals.send_task(target, sig, info)
    return 0


@syscall("tgkill", INT, INT, INT)
def tgkill(t: Task, tgid: int, tid: int, sig: int) -> int:
    if tid <= 0 or tgid <= 0:
        raise Errno(E.EINVAL)
    return _send_specific(t, tgid, tid, sig, _user_info(t, sig, F.SI_TKILL))


@syscall("tkill", INT, INT)
def tkill(t: Task, tid: int, sig: int) -> int:
    if tid <= 0:
        raise Errno(E.EINVAL)
    return _send_specific(t, 0, tid, sig, _user_info(t, sig, F.SI_TKILL))


def _queued_info(t: Task, sig: int, raw: bytes, target_pid: int) -> bytes:
    """A user-built siginfo: si_signo forced to ``sig``; only the process itself
    may claim a kernel/kill origin (si_code >= 0 or SI_TKILL)."""
    buf = bytearray(raw)
    code = _HEAD.unpack_from(buf, 0)[2]
    if (code >= 0 or code == F.SI_TKILL) and target_pid != t.proc.pid:
        raise Errno(E.EPERM)
    struct.pack_into("<i", buf, 0, sig)
    return bytes(buf)


@syscall("rt_sigqueueinfo", INT, INT, PTR)
def rt_sigqueueinfo(t: Task, pid: int, sig: int, uinfo: int) -> int:
    info = _queued_info(t, sig, t.mm.read(uinfo, SIGINFO_SIZE), pid)
    _group_send(t, _find_process(t, pid), sig, info, True)
    return 0


@syscall("rt_tgsigqueueinfo", INT, INT, INT, PTR)
def rt_tgsigqueueinfo(t: Task, tgid: int, tid: int, sig: int, uinfo: int) -> int:
    buf = t.mm.read(uinfo, SIGINFO_SIZE)  # copied before anything is checked
    if tid <= 0 or tgid <= 0:
        raise Errno(E.EINVAL)
    info = _queued_info(t, sig, buf, tgid)
    return _send_specific(t, tgid, tid, sig, info)


# --- handlers' stack and return -----------------------------------------------
@syscall("sigaltstack", PTR, PTR)
def sigaltstack(t: Task, uss: int, uoss: int) -> int:
    sp = t.ctx.regs.rsp
    new = STACK_T.read(t.mm.read(uss, STACK_T.size)) if uss else None
    old = (t.altstack[0], altstack.reported_flags(t, sp), t.altstack[2])
    if new is not None:
        altstack.change(t, new.ss_sp, new.ss_flags, new.ss_size, sp)
    if uoss:
        flags = old[1] - (1 << 32) if old[1] & 0x80000000 else old[1]
        t.mm.write(uoss, STACK_T.pack(old[0], flags, old[2]))
    return 0


@syscall("rt_sigreturn")
def rt_sigreturn(t: Task) -> object:
    # Here, as signals.py does for delivery: a program that only sets handlers
    # (every python3 at exit) does not load the frame layouts (~0.5 ms).
    from cove.kernel import sigframe

    return NORETURN if sigframe.sigreturn(t) else 0
