"""Timers that signal: alarm, setitimer, getitimer (kernel/time/itimer.c) and
POSIX timers timer_create/settime/gettime/getoverrun/delete
(kernel/time/posix-timers.c), over ``cove.kernel.itimer.ClockTimer``.

ITIMER_REAL sends SIGALRM at wall-clock expiry; ITIMER_VIRTUAL (SIGVTALRM)
and ITIMER_PROF (SIGPROF) count the process's guest CPU time and cove's time
on its behalf, as the run loop accounts them. POSIX timers run on
CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_BOOTTIME, CLOCK_TAI and the process
and thread CPU clocks; notification by SIGEV_SIGNAL (SIGEV_THREAD is the same
at the kernel level), SIGEV_THREAD_ID or SIGEV_NONE.

Timers are per process: a forked child starts with none; ``exec_reset``
deletes the POSIX timers at execve (ITIMER_* survive it, as on Linux).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from weakref import WeakKeyDictionary

from cove.abi import flags as F
from cove.abi.errno import E, Errno
from cove.abi.structs.clock import ITIMERSPEC, ITIMERVAL
from cove.abi.structs.siginfo import SIGINFO_SIZE, SIGINFO_TIMER, siginfo_timer
from cove.kernel import process, signals
from cove.kernel.itimer import NSEC, ClockTimer
from cove.kernel.syscall import INT, PTR, UINT, syscall
from cove.kernel.task import State

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from cove.kernel.task import Process, Task

USEC = 1000
DELAYTIMER_MAX = 0x7FFFFFFF
_ITIMER_SIGNALS = {F.ITIMER_REAL: F.SIGALRM, F.ITIMER_VIRTUAL: F.SIGVTALRM,
                   F.ITIMER_PROF: F.SIGPROF}
# struct sigevent: sigev_value, sigev_signo, sigev_notify, then a union whose
# first int is sigev_notify_thread_id; 64 bytes in all.
_SIGEVENT = struct.Struct("<Qii")
_SIGEVENT_TID = struct.Struct("<i")
SIGEVENT_SIZE = 64


# --- clocks ---------------------------------------------------------------------
def _clock(t: Task, clockid: int) -> Callable[[], int] | None:
    """A nanosecond clock function for ``clockid``, None if not a timer clock."""
    k = t.kernel
    proc = t.proc
    if clockid in (F.CLOCK_REALTIME, F.CLOCK_TAI):
        return time.time_ns
    if clockid in (F.CLOCK_MONOTONIC, F.CLOCK_BOOTTIME):
        # boot_monotonic is read at each call: restoring a snapshot moves it.
        return lambda: time.monotonic_ns() - int(k.boot_monotonic * NSEC)
    if clockid == F.CLOCK_PROCESS_CPUTIME_ID:
        return lambda: int((proc.user_time + proc.sys_time) * NSEC)
    if clockid == F.CLOCK_THREAD_CPUTIME_ID:
        return lambda: int((t.utime + t.stime) * NSEC)
    return None


# --- setitimer / getitimer / alarm ----------------------------------------------
def _itimer(t: Task, which: int) -> ClockTimer:
    proc = t.proc
    timer = proc.itimers.get(which)
    if timer is None:
        signo = _ITIMER_SIGNALS[which]
        if which == F.ITIMER_REAL:
            clock = _clock(t, F.CLOCK_MONOTONIC)
        elif which == F.ITIMER_VIRTUAL:
            def clock() -> int:
                return int(proc.user_time * NSEC)
        else:
            clock = _clock(t, F.CLOCK_PROCESS_CPUTIME_ID)
        assert clock is not None

        def expire(overruns: int) -> None:
            if not proc.alive:
                timer.disarm()
                return
            signals.send_process(proc, signo, signals.make_info(signo))

        timer = proc.itimers[which] = ClockTimer(t.kernel.sched, clock, expire)
    return timer


def _get(timer: ClockTimer) -> tuple[int, int]:
    """(interval, value) in ns."""
    return timer.interval, timer.remaining()


def _usec_up(ns: int) -> tuple[int, int]:
    us = (ns + USEC - 1) // USEC
    return us // 1_000_000, us % 1_000_000


def _pack_itimerval(interval: int, value: int) -> bytes:
    return ITIMERVAL.pack(*_usec_up(interval), *_usec_up(value))


def _check_which(which: int) -> None:
    if which not in _ITIMER_SIGNALS:
        raise Errno(E.EINVAL)


@syscall("getitimer", INT, PTR)
def getitimer(t: Task, which: int, value: int) -> int:
    _check_which(which)
    t.mm.write(value, _pack_itimerval(*_get(_itimer(t, which))))
    return 0


@syscall("setitimer", INT, PTR, PTR)
def setitimer(t: Task, which: int, new: int, old: int) -> int:
    interval = value = 0
    if new:  # Linux still takes NULL as "disarm"
        isec, iusec, vsec, vusec = ITIMERVAL.unpack_from(t.mm.read(new, ITIMERVAL.size))
        for sec, usec in ((isec, iusec), (vsec, vusec)):
            if sec < 0 or not 0 <= usec < 1_000_000:
                raise Errno(E.EINVAL)
        interval = isec * NSEC + iusec * USEC
        value = vsec * NSEC + vusec * USEC
    _check_which(which)
    timer = _itimer(t, which)
    before = _get(timer)
    timer.arm(value, interval)
    if old:
        t.mm.write(old, _pack_itimerval(*before))
    return 0


@syscall("alarm", UINT)
def alarm(t: Task, seconds: int) -> int:
    timer = _itimer(t, F.ITIMER_REAL)
    left = timer.remaining()
    timer.arm(seconds * NSEC, 0)
    sec, usec = _usec_up(left)
    # Never 0 while an alarm was pending, and round to the nearest second.
    if (not sec and usec) or usec >= 500_000:
        sec += 1
    return sec


# --- POSIX timers ---------------------------------------------------------------
class PosixTimer:
    __slots__ = ("clock", "id", "last_overrun", "notify", "overrun", "proc", "signo",
                 "target", "timer", "value")

    def __init__(self, proc: Process, timer_id: int, signo: int, value: int, notify: int,
                 target: Task | None) -> None:
        self.proc = proc
        self.id = timer_id
        self.signo = signo
        self.value = value  # sigev_value, as si_value
        self.notify = notify
        self.target = target  # SIGEV_THREAD_ID's thread
        self.overrun = 0  # expirations folded into the signal now queued/last delivered
        self.last_overrun = 0  # the previous signal's
        self.timer: ClockTimer | None = None

    def _queued(self) -> tuple[list[tuple[int, bytes]], int] | None:
        """Where this timer's signal sits while still pending."""
        queue = (self.target.pending if self.target is not None else self.proc.shared_pending)
        for i, (signo, info) in enumerate(queue.infos):
            if signo == self.signo:
                rec = SIGINFO_TIMER.read(info)
                if rec.si_code == F.SI_TIMER and rec.si_timerid == self.id:
                    return queue.infos, i
        return None

    def expire(self, overruns: int) -> None:
        proc = self.proc
        if not proc.alive:
            if self.timer is not None:
                self.timer.disarm()
            return
        if self.notify == F.SIGEV_NONE:
            return
        queued = self._queued()
        if queued is not None:
            # Still pending: count the expiry instead of queueing another.
            self.overrun = min(self.overrun + 1 + overruns, DELAYTIMER_MAX)
            infos, i = queued
            buf = bytearray(SIGINFO_SIZE)
            siginfo_timer(buf, 0, self.signo, self.id, self.overrun, self.value)
            infos[i] = (self.signo, bytes(buf))
            return
        self.last_overrun = self.overrun
        self.overrun = min(overruns, DELAYTIMER_MAX)
        buf = bytearray(SIGINFO_SIZE)
        siginfo_timer(buf, 0, self.signo, self.id, self.overrun, self.value)
        if self.target is not None and self.target.state is not State.DEAD:
            signals.send_task(self.target, self.signo, bytes(buf))
        else:
            signals.send_process(proc, self.signo, bytes(buf))

    def getoverrun(self) -> int:
        # The count carried by the last signal delivered (the queued one is not yet).
        return self.last_overrun if self._queued() is not None else self.overrun


_posix: WeakKeyDictionary[Process, dict[int, PosixTimer]] = WeakKeyDictionary()


def _timers(proc: Process) -> dict[int, PosixTimer]:
    d = _posix.get(proc)
    if d is None:
        d = _posix[proc] = {}
    return d


def _lookup(t: Task, timer_id: int) -> PosixTimer:
    pt = _timers(t.proc).get(timer_id)
    if pt is None:
        raise Errno(E.EINVAL)
    return pt


def exec_reset(proc: Process) -> None:
    """execve: POSIX timers are deleted (setitimer's survive)."""
    for pt in _posix.pop(proc, {}).values():
        if pt.timer is not None:
            pt.timer.disarm()


process.EXEC_HOOKS.append(lambda t: exec_reset(t.proc))


_UNSUPPORTED_CLOCKS = {F.CLOCK_MONOTONIC_RAW, F.CLOCK_REALTIME_COARSE, F.CLOCK_MONOTONIC_COARSE,
                       F.CLOCK_REALTIME_ALARM, F.CLOCK_BOOTTIME_ALARM}


@syscall("timer_create", INT, PTR, PTR, support="partial",
         note="no timers on another process's CPU clock (clock_getcpuclockid ids): EINVAL")
def timer_create(t: Task, clockid: int, sevp: int, created: int) -> int:
    if clockid in _UNSUPPORTED_CLOCKS:
        # No timer on these in Linux either (the alarm clocks need an RTC).
        raise Errno(E.EOPNOTSUPP)
    clock = _clock(t, clockid)
    if clock is None:
        raise Errno(E.EINVAL)
    timers = _timers(t.proc)
    timer_id = 0
    while timer_id in timers:
        timer_id += 1
    target = None
    if sevp:
        raw = t.mm.read(sevp, SIGEVENT_SIZE)
        value, signo, notify = _SIGEVENT.unpack_from(raw, 0)
        if notify == F.SIGEV_THREAD_ID:
            target = t.kernel.tasks.get(_SIGEVENT_TID.unpack_from(raw, 16)[0])
            if target is None or target.proc is not t.proc:
                raise Errno(E.EINVAL)
        elif notify not in (F.SIGEV_SIGNAL, F.SIGEV_THREAD, F.SIGEV_NONE):
            raise Errno(E.EINVAL)
        if notify != F.SIGEV_NONE and not 1 <= signo <= F.SIGRTMAX:
            raise Errno(E.EINVAL)
    else:
        value, signo, notify = timer_id, F.SIGALRM, F.SIGEV_SIGNAL
    pt = PosixTimer(t.proc, timer_id, signo, value, notify, target)
    pt.timer = ClockTimer(t.kernel.sched, clock, pt.expire)
    t.mm.write(created, struct.pack("<i", timer_id))
    timers[timer_id] = pt
    return 0


def _pack_itimerspec(interval: int, value: int) -> bytes:
    return ITIMERSPEC.pack(interval // NSEC, interval % NSEC, value // NSEC, value % NSEC)


@syscall("timer_settime", INT, INT, PTR, PTR)
def timer_settime(t: Task, timer_id: int, flags: int, new: int, old: int) -> int:
    if not new:
        raise Errno(E.EINVAL)
    isec, insec, vsec, vnsec = ITIMERSPEC.unpack_from(t.mm.read(new, ITIMERSPEC.size))
    for sec, nsec in ((isec, insec), (vsec, vnsec)):
        if sec < 0 or not 0 <= nsec < NSEC:
            raise Errno(E.EINVAL)
    pt = _lookup(t, timer_id)
    assert pt.timer is not None
    before = _get(pt.timer)
    pt.overrun = pt.last_overrun = 0
    # An absolute time already past expires at the scheduler's next look.
    pt.timer.arm(vsec * NSEC + vnsec, isec * NSEC + insec, bool(flags & F.TIMER_ABSTIME))
    if old:
        t.mm.write(old, _pack_itimerspec(*before))
    return 0


@syscall("timer_gettime", INT, PTR)
def timer_gettime(t: Task, timer_id: int, cur: int) -> int:
    pt = _lookup(t, timer_id)
    assert pt.timer is not None
    t.mm.write(cur, _pack_itimerspec(*_get(pt.timer)))
    return 0


@syscall("timer_getoverrun", INT)
def timer_getoverrun(t: Task, timer_id: int) -> int:
    return _lookup(t, timer_id).getoverrun()


@syscall("timer_delete", INT)
def timer_delete(t: Task, timer_id: int) -> int:
    pt = _lookup(t, timer_id)
    if pt.timer is not None:
        pt.timer.disarm()
    del _timers(t.proc)[timer_id]
    return 0
