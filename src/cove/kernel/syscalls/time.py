"""Clocks and sleeping: clock_gettime/getres/settime, gettimeofday, time,
settimeofday, nanosleep, clock_nanosleep, times.

The sandbox's clocks:
- REALTIME (and TAI, with a TAI offset of 0, and the coarse variant) is the
  host's wall clock: the time of day is not a secret worth hiding, and
  nothing in the sandbox may set it (EPERM, as for a container).
- MONOTONIC, MONOTONIC_RAW, BOOTTIME (and MONOTONIC_COARSE) count from the
  sandbox's boot (``Kernel.boot_monotonic``): they start near 0 when the
  sandbox starts, equal its uptime (sysinfo, /proc/uptime), and reveal
  nothing of the host's uptime. A snapshot restore keeps them continuous by
  moving ``boot_monotonic``.
- PROCESS_CPUTIME_ID / THREAD_CPUTIME_ID and the dynamic per-pid CPU clocks
  count time spent running guest code (user) plus cove's time handling its
  exits (system), as the run loop accounts them.

Sleeps block through the scheduler (``Blocked(deadline=...)``); the deadline
is remembered per task between the first call and any re-run, so a spurious
wake-up never restarts the sleep. A signal ends the sleep with EINTR and the
time left in ``rem`` (Linux restarts nanosleep only when no handler ran,
through restart_block; cove reports EINTR in that case too).
"""

from __future__ import annotations

import time
from weakref import WeakKeyDictionary

from cove.abi import flags as F
from cove.abi.errno import E, Errno
from cove.abi.structs.clock import TIMESPEC, TIMEVAL, TIMEZONE, TMS, USER_HZ
from cove.kernel.syscall import INT, PTR, syscall
from cove.kernel.wait import Blocked

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from cove.kernel.kernel import Kernel
    from cove.kernel.task import Task

NSEC = 1_000_000_000
TICK_NS = 4_000_000  # CONFIG_HZ=250: the coarse clocks' resolution

# Dynamic CPU clocks (clock_getcpuclockid, pthread_getcpuclockid): ~pid << 3 | which.
CPUCLOCK_PROF, CPUCLOCK_VIRT, CPUCLOCK_SCHED, CPUCLOCK_MAX = 0, 1, 2, 3
CPUCLOCK_PERTHREAD = 4

_WALL = {F.CLOCK_REALTIME, F.CLOCK_TAI}
_MONO = {F.CLOCK_MONOTONIC, F.CLOCK_MONOTONIC_RAW, F.CLOCK_BOOTTIME}
_COARSE = {F.CLOCK_REALTIME_COARSE, F.CLOCK_MONOTONIC_COARSE}
_CPU = {F.CLOCK_PROCESS_CPUTIME_ID, F.CLOCK_THREAD_CPUTIME_ID}


# --- reading clocks (also for timers, futex and poll timeouts elsewhere) ---------------
def monotonic_ns(k: Kernel) -> int:
    """CLOCK_MONOTONIC of the sandbox: nanoseconds since it booted."""
    return time.monotonic_ns() - int(k.boot_monotonic * NSEC)


def realtime_ns() -> int:
    return time.time_ns()


def _cpu_ns(t: Task, clockid: int) -> int:
    """A CPU-time clock, static (PROCESS/THREAD_CPUTIME_ID) or dynamic (< 0)."""
    if clockid == F.CLOCK_PROCESS_CPUTIME_ID:
        pid, which, thread = 0, CPUCLOCK_SCHED, False
    elif clockid == F.CLOCK_THREAD_CPUTIME_ID:
        pid, which, thread = 0, CPUCLOCK_SCHED, True
    else:
        pid, which, thread = ~(clockid >> 3), clockid & 3, bool(clockid & CPUCLOCK_PERTHREAD)
        if which >= CPUCLOCK_MAX:
            raise Errno(E.EINVAL)
    k = t.kernel
    if thread:
        th = t if pid == 0 else k.tasks.get(pid)
        if th is None or th.proc is not t.proc:
            raise Errno(E.EINVAL)
        user, system = th.utime, th.stime
    else:
        if pid == 0:
            proc = t.proc
        else:
            found = k.tasks.get(pid)
            proc = found.proc if found is not None else k.processes.get(pid)  # type: ignore[assignment]
            if proc is None:
                raise Errno(E.EINVAL)
        user, system = proc.user_time, proc.sys_time
    seconds = user if which == CPUCLOCK_VIRT else user + system
    return int(seconds * NSEC)


def clock_ns(t: Task, clockid: int) -> int:
    """The value of ``clockid`` in nanoseconds; EINVAL for a clock Linux
    would not read here (the alarm clocks need an RTC alarm cove has not)."""
    if clockid in _WALL:
        return realtime_ns()
    if clockid in _MONO:
        return monotonic_ns(t.kernel)
    if clockid == F.CLOCK_REALTIME_COARSE:
        ns = realtime_ns()
        return ns - ns % TICK_NS
    if clockid == F.CLOCK_MONOTONIC_COARSE:
        ns = monotonic_ns(t.kernel)
        return ns - ns % TICK_NS
    if clockid in _CPU or clockid < 0:
        return _cpu_ns(t, clockid)
    raise Errno(E.EINVAL)


def deadline(t: Task, clockid: int, ns: int, absolute: bool) -> float:
    """The host ``time.monotonic()`` instant a sleep on ``clockid`` ends."""
    now = time.monotonic()
    if not absolute:
        return now + ns / NSEC
    if clockid in _MONO:
        return t.kernel.boot_monotonic + ns / NSEC
    return now + (ns - realtime_ns()) / NSEC  # the wall clock never jumps in the sandbox


def read_timespec(t: Task, addr: int) -> int:
    """A guest ``struct timespec`` as nanoseconds; EINVAL unless valid (timespec64_valid)."""
    sec, nsec = TIMESPEC.unpack_from(t.mm.read(addr, TIMESPEC.size))
    if sec < 0 or not 0 <= nsec < NSEC:
        raise Errno(E.EINVAL)
    return int(sec) * NSEC + int(nsec)


def write_timespec(t: Task, addr: int, ns: int) -> None:
    t.mm.write(addr, TIMESPEC.pack(ns // NSEC, ns % NSEC))


# --- the calls ----------------------------------------------------------------------
@syscall("clock_gettime", INT, PTR)
def clock_gettime(t: Task, clockid: int, tp: int) -> int:
    write_timespec(t, tp, clock_ns(t, clockid))
    return 0


@syscall("clock_getres", INT, PTR)
def clock_getres(t: Task, clockid: int, res: int) -> int:
    clock_ns(t, clockid)  # validates, including dynamic CPU clocks' pids
    if res:
        write_timespec(t, res, TICK_NS if clockid in _COARSE else 1)
    return 0


@syscall("clock_settime", INT, PTR)
def clock_settime(t: Task, clockid: int, tp: int) -> int:
    """Nothing in the sandbox may set a clock (no CAP_SYS_TIME): EPERM after
    Linux's checks; clocks that cannot be set at all are EINVAL."""
    if clockid == F.CLOCK_REALTIME:
        read_timespec(t, tp)
        raise Errno(E.EPERM)
    if clockid in _CPU or clockid < 0:
        t.mm.read(tp, TIMESPEC.size)
        clock_ns(t, clockid)
        raise Errno(E.EPERM)
    raise Errno(E.EINVAL)


@syscall("gettimeofday", PTR, PTR)
def gettimeofday(t: Task, tv: int, tz: int) -> int:
    if tv:
        ns = realtime_ns()
        t.mm.write(tv, TIMEVAL.pack(ns // NSEC, ns % NSEC // 1000))
    if tz:
        t.mm.write(tz, TIMEZONE.pack(0, 0))  # the sandbox's clock is UTC
    return 0


@syscall("settimeofday", PTR, PTR)
def settimeofday(t: Task, tv: int, tz: int) -> int:
    if tv:
        sec, usec = TIMEVAL.unpack_from(t.mm.read(tv, TIMEVAL.size))
        if not 0 <= usec < 1_000_000 or sec < 0:
            raise Errno(E.EINVAL)
    if tz:
        minutes, _ = TIMEZONE.unpack_from(t.mm.read(tz, TIMEZONE.size))
        if not -15 * 60 <= minutes <= 15 * 60:
            raise Errno(E.EINVAL)
    raise Errno(E.EPERM)


@syscall("time", PTR)
def time_(t: Task, tloc: int) -> int:
    now = realtime_ns() // NSEC
    if tloc:
        t.mm.write(tloc, now.to_bytes(8, "little", signed=True))
    return now


def _ticks(seconds: float) -> int:
    return int(seconds * USER_HZ)


@syscall("times", PTR)
def times(t: Task, buf: int) -> int:
    p = t.proc
    if buf:
        t.mm.write(buf, TMS.pack(_ticks(p.user_time), _ticks(p.sys_time),
                                 _ticks(p.child_user_time), _ticks(p.child_sys_time)))
    # Clock ticks since the sandbox booted (Linux: since its boot, plus an offset).
    return monotonic_ns(t.kernel) * USER_HZ // NSEC


# --- sleeping -------------------------------------------------------------------------
_sleeps: WeakKeyDictionary[Task, float] = WeakKeyDictionary()


def _sleep_until(t: Task, first: bool, end: float | None) -> int:
    """Block until ``end`` (host monotonic); on a re-run the remembered deadline wins."""
    if first:
        assert end is not None
        _sleeps[t] = end
    else:
        end = _sleeps.get(t, end)
        if end is None:
            return 0
    if time.monotonic() >= end:
        _sleeps.pop(t, None)
        return 0
    raise Blocked(deadline=end, on_timeout=0)


def _write_rem(t: Task, rem: int) -> None:
    end = _sleeps.pop(t, None)
    if rem and end is not None:
        left = max(0.0, end - time.monotonic())
        write_timespec(t, rem, int(left * NSEC))


def _nanosleep_interrupted(t: Task, req: int, rem: int) -> None:
    _write_rem(t, rem)


@syscall("nanosleep", PTR, PTR, restartable=False, on_interrupt=_nanosleep_interrupted)
def nanosleep(t: Task, req: int, rem: int) -> int:
    first = t.blocked_call is None  # a re-run after a wake-up keeps the deadline
    end = deadline(t, F.CLOCK_MONOTONIC, read_timespec(t, req), False) if first else None
    return _sleep_until(t, first, end)


def _clock_nanosleep_interrupted(t: Task, clockid: int, flags: int, req: int, rem: int) -> None:
    if flags & F.TIMER_ABSTIME:
        _sleeps.pop(t, None)
        return
    _write_rem(t, rem)


@syscall("clock_nanosleep", INT, INT, PTR, PTR, restartable=False,
         on_interrupt=_clock_nanosleep_interrupted)
def clock_nanosleep(t: Task, clockid: int, flags: int, req: int, rem: int) -> int:
    first = t.blocked_call is None
    end = None
    if first:
        if clockid == F.CLOCK_PROCESS_CPUTIME_ID or clockid < 0:
            # Sleeping until a CPU clock reaches a value is not offered.
            clock_ns(t, clockid)
            raise Errno(E.EOPNOTSUPP)
        if clockid in _COARSE or clockid in (F.CLOCK_MONOTONIC_RAW, F.CLOCK_THREAD_CPUTIME_ID):
            raise Errno(E.EOPNOTSUPP)  # clocks Linux cannot sleep on
        if clockid not in _WALL and clockid not in _MONO:
            raise Errno(E.EINVAL)
        ns = read_timespec(t, req)
        end = deadline(t, clockid, ns, bool(flags & F.TIMER_ABSTIME))
    return _sleep_until(t, first, end)

