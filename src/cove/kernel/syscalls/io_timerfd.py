"""timerfd_create, timerfd_settime, timerfd_gettime (fs/timerfd.c); the timer
itself is cove.kernel.timerfd.TimerFd.

Clocks: CLOCK_REALTIME is the host's wall clock, CLOCK_MONOTONIC and
CLOCK_BOOTTIME the sandbox's monotonic clock (see syscalls/time.py). The
*_ALARM clocks need CAP_WAKE_ALARM (EPERM otherwise); with it (sandbox root)
they are their plain clocks, as there is no suspend to wake from.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from cove.abi import flags as F
from cove.abi.errno import E, Errno
from cove.abi.structs.clock import ITIMERSPEC
from cove.fs.file import O_PATH
from cove.kernel.syscall import INT, PTR, syscall
from cove.kernel.syscalls.proc_lookup import capable
from cove.kernel.syscalls.time import monotonic_ns
from cove.kernel.task import Task
from cove.kernel.timerfd import ALARM_CLOCKS, TimerFd

NSEC = 1_000_000_000
TFD_CREATE_FLAGS = F.TFD_CLOEXEC | F.TFD_NONBLOCK
TFD_SETTIME_FLAGS = F.TFD_TIMER_ABSTIME | F.TFD_TIMER_CANCEL_ON_SET
_WALL = (F.CLOCK_REALTIME, F.CLOCK_REALTIME_ALARM)
_CLOCKS = (F.CLOCK_REALTIME, F.CLOCK_MONOTONIC, F.CLOCK_BOOTTIME, *ALARM_CLOCKS)


def _clock(t: Task, clockid: int) -> Callable[[], int]:
    if clockid in _WALL:
        return time.time_ns
    k = t.kernel
    return lambda: monotonic_ns(k)


def _timerfd(t: Task, fd: int) -> TimerFd:
    f = t.files.get(fd)
    if f.flags & O_PATH:
        raise Errno(E.EBADF)
    if not isinstance(f, TimerFd):
        raise Errno(E.EINVAL)
    return f


def _pack(interval: int, value: int) -> bytes:
    return ITIMERSPEC.pack(interval // NSEC, interval % NSEC, value // NSEC, value % NSEC)


@syscall("timerfd_create", INT, INT)
def timerfd_create(t: Task, clockid: int, flags: int) -> int:
    if flags & ~TFD_CREATE_FLAGS or clockid not in _CLOCKS:
        raise Errno(E.EINVAL)
    if clockid in ALARM_CLOCKS and not capable(t):
        raise Errno(E.EPERM)
    f = TimerFd(t.kernel.sched, clockid, _clock(t, clockid), flags)
    return t.files.install(f, cloexec=bool(flags & F.TFD_CLOEXEC))


@syscall("timerfd_settime", INT, INT, PTR, PTR, support="partial",
         note="TFD_TIMER_CANCEL_ON_SET never cancels: the sandbox's clock cannot be set")
def timerfd_settime(t: Task, fd: int, flags: int, new: int, old: int) -> int:
    isec, insec, vsec, vnsec = ITIMERSPEC.unpack_from(t.mm.read(new, ITIMERSPEC.size))
    if flags & ~TFD_SETTIME_FLAGS:
        raise Errno(E.EINVAL)
    for sec, nsec in ((isec, insec), (vsec, vnsec)):
        if sec < 0 or not 0 <= nsec < NSEC:
            raise Errno(E.EINVAL)
    tfd = _timerfd(t, fd)
    if tfd.is_alarm and not capable(t):
        raise Errno(E.EPERM)
    before = tfd.set(vsec * NSEC + vnsec, isec * NSEC + insec, flags)
    if old:
        t.mm.write(old, _pack(*before))  # EFAULT here leaves the new setting in place
    return 0


@syscall("timerfd_gettime", INT, PTR)
def timerfd_gettime(t: Task, fd: int, cur: int) -> int:
    tfd = _timerfd(t, fd)
    t.mm.write(cur, _pack(*tfd.get()))
    return 0
