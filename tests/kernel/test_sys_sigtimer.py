"""Timers that signal (alarm, setitimer, POSIX timers) and signalfd."""

from __future__ import annotations

import struct
import time

import pytest

from cove.abi import flags as F
from cove.abi.errno import E
from cove.abi.structs import ITIMERSPEC, ITIMERVAL
from cove.abi.structs.siginfo import SIGINFO_TIMER, SIGNALFD_SIGINFO
from cove.kernel import signals
from cove.kernel.task import State

from .harness import SCRATCH, call, make_kernel, put
from .sighelp import BAD, bit, finish, pending, resume, thread

pytestmark = pytest.mark.timeout(20)
MS = 1_000_000


def _run_timers(k, seconds):
    """Let wall time pass and the scheduler's timers fire, as the run loop would."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.002)
        k.sched._fire(time.monotonic())


def _itimerval(t, value_us, interval_us=0, off=0x100):
    return put(t, ITIMERVAL.pack(interval_us // 10**6, interval_us % 10**6,
                                 value_us // 10**6, value_us % 10**6), off)


# --- alarm / setitimer ---------------------------------------------------------------
def test_alarm_sends_sigalrm_and_reports_what_was_left():
    k, t = make_kernel()
    assert call(t, "alarm", 100) == 0
    assert call(t, "alarm", 5) == 100  # 99.99...s left rounds to 100
    assert call(t, "alarm", 0) == 5
    assert call(t, "alarm", 0) == 0
    assert call(t, "setitimer", F.ITIMER_REAL, _itimerval(t, 20_000), 0) == 0
    assert call(t, "alarm", 0) == 1  # never 0 while an alarm was pending
    call(t, "setitimer", F.ITIMER_REAL, _itimerval(t, 10_000), 0)
    _run_timers(k, 0.05)
    assert pending(t, F.SIGALRM)


def test_setitimer_interval_and_getitimer():
    k, t = make_kernel()
    t.sigmask = bit(F.SIGALRM)
    old = SCRATCH + 0x200
    assert call(t, "setitimer", F.ITIMER_REAL, _itimerval(t, 10_000, 10_000), old) == 0
    assert ITIMERVAL.unpack_from(t.mm.read(old, 32)) == (0, 0, 0, 0)
    assert call(t, "getitimer", F.ITIMER_REAL, old) == 0
    isec, iusec, vsec, vusec = ITIMERVAL.unpack_from(t.mm.read(old, 32))
    assert (isec, iusec, vsec) == (0, 10_000, 0) and 0 < vusec <= 10_000
    _run_timers(k, 0.06)
    assert pending(t, F.SIGALRM)
    signals.dequeue(t, bit(F.SIGALRM))
    _run_timers(k, 0.03)
    assert pending(t, F.SIGALRM)  # it re-arms itself
    assert call(t, "setitimer", F.ITIMER_REAL, 0, old) == 0  # NULL disarms
    assert ITIMERVAL.unpack_from(t.mm.read(old, 32))[:2] == (0, 10_000)
    signals.dequeue(t, bit(F.SIGALRM))
    _run_timers(k, 0.03)
    assert not pending(t, F.SIGALRM)


def test_setitimer_errors():
    _, t = make_kernel()
    assert call(t, "setitimer", 3, _itimerval(t, 1000), 0) == -E.EINVAL
    assert call(t, "getitimer", 7, SCRATCH) == -E.EINVAL
    bad = put(t, ITIMERVAL.pack(0, 0, 0, 1_000_000), 0x300)
    assert call(t, "setitimer", F.ITIMER_REAL, bad, 0) == -E.EINVAL
    assert call(t, "setitimer", F.ITIMER_REAL, BAD, 0) == -E.EFAULT
    assert call(t, "getitimer", F.ITIMER_REAL, BAD) == -E.EFAULT


def test_itimer_prof_counts_cpu_time_not_wall_time():
    k, t = make_kernel()
    call(t, "setitimer", F.ITIMER_PROF, _itimerval(t, 20_000), 0)
    _run_timers(k, 0.05)
    assert not pending(t, F.SIGPROF)  # the process has not run at all
    t.proc.user_time += 0.03  # as the run loop accounts guest time
    _run_timers(k, 0.05)
    assert pending(t, F.SIGPROF)


def test_sigalrm_wakes_pause_and_the_scheduler_waits_for_the_timer():
    k, t = make_kernel()
    t.proc.sighand.actions[F.SIGALRM].handler = 0x401000
    call(t, "alarm", 0)
    call(t, "setitimer", F.ITIMER_REAL, _itimerval(t, 20_000), 0)
    call(t, "pause")
    assert t.state is State.BLOCKED
    # No deadline and no fd: only the timer keeps this from being a deadlock.
    assert finish(k, t) == -E.EINTR


# --- POSIX timers ---------------------------------------------------------------------
def _sigevent(t, notify, signo=F.SIGUSR1, value=0, tid=0, off=0x400):
    return put(t, struct.pack("<Qiii44x", value, signo, notify, tid), off)


def _settime(t, tid, value_ns, interval_ns=0, flags=0, old=0):
    spec = put(t, ITIMERSPEC.pack(interval_ns // 10**9, interval_ns % 10**9,
                                  value_ns // 10**9, value_ns % 10**9), 0x500)
    return call(t, "timer_settime", tid, flags, spec, old)


def test_timer_create_signal_with_value_and_overrun():
    k, t = make_kernel()
    t.sigmask = bit(F.SIGUSR1)
    idp = SCRATCH + 0x600
    ev = _sigevent(t, F.SIGEV_SIGNAL, F.SIGUSR1, 0x1234ABCD)
    assert call(t, "timer_create", F.CLOCK_MONOTONIC, ev, idp) == 0
    tid = struct.unpack("<i", t.mm.read(idp, 4))[0]
    assert _settime(t, tid, 5 * MS, 5 * MS) == 0
    _run_timers(k, 0.04)  # several periods while the first signal stays pending
    got = signals.dequeue(t, bit(F.SIGUSR1))
    assert got is not None
    info = SIGINFO_TIMER.read(got[1])
    assert (info.si_signo, info.si_code, info.si_timerid, info.si_value) == (
        F.SIGUSR1, F.SI_TIMER, tid, 0x1234ABCD)
    assert info.si_overrun >= 2
    assert call(t, "timer_getoverrun", tid) == info.si_overrun
    cur = SCRATCH + 0x700
    assert call(t, "timer_gettime", tid, cur) == 0
    isec, insec, vsec, vnsec = ITIMERSPEC.unpack_from(t.mm.read(cur, 32))
    assert (isec, insec) == (0, 5 * MS) and 0 < vsec * 10**9 + vnsec <= 5 * MS
    assert call(t, "timer_delete", tid) == 0
    assert call(t, "timer_delete", tid) == -E.EINVAL
    assert call(t, "timer_gettime", tid, cur) == -E.EINVAL


def test_timer_defaults_abstime_thread_id_and_none():
    k, t = make_kernel()
    t2 = thread(k, t)
    t.sigmask = t2.sigmask = signals.ALL
    idp = SCRATCH + 0x600
    assert call(t, "timer_create", F.CLOCK_REALTIME, 0, idp) == 0  # SIGALRM, value = id
    first = struct.unpack("<i", t.mm.read(idp, 4))[0]
    assert _settime(t, first, time.time_ns() - 10**9, 0, F.TIMER_ABSTIME) == 0  # past: now
    ev = _sigevent(t, F.SIGEV_THREAD_ID, F.SIGUSR2, 7, tid=t2.tid)
    assert call(t, "timer_create", F.CLOCK_MONOTONIC, ev, idp) == 0
    second = struct.unpack("<i", t.mm.read(idp, 4))[0]
    assert second != first
    _settime(t, second, 1 * MS)
    ev = _sigevent(t, F.SIGEV_NONE, 0)
    assert call(t, "timer_create", F.CLOCK_BOOTTIME, ev, idp) == 0
    quiet = struct.unpack("<i", t.mm.read(idp, 4))[0]
    _settime(t, quiet, 1 * MS)
    _run_timers(k, 0.02)
    alrm = SIGINFO_TIMER.read(t.proc.shared_pending.infos[0][1])
    assert (alrm.si_signo, alrm.si_value, alrm.si_timerid) == (F.SIGALRM, first, first)
    assert t2.pending.mask == bit(F.SIGUSR2) and not t.pending.mask
    assert len(t.proc.shared_pending.infos) == 1  # SIGEV_NONE sent nothing


def test_timer_create_errors():
    _, t = make_kernel()
    idp = SCRATCH + 0x600
    assert call(t, "timer_create", 99, 0, idp) == -E.EINVAL
    assert call(t, "timer_create", F.CLOCK_MONOTONIC_RAW, 0, idp) == -E.EOPNOTSUPP
    assert call(t, "timer_create", F.CLOCK_MONOTONIC, _sigevent(t, 9), idp) == -E.EINVAL
    assert call(t, "timer_create", F.CLOCK_MONOTONIC,
                _sigevent(t, F.SIGEV_SIGNAL, 65), idp) == -E.EINVAL
    assert call(t, "timer_create", F.CLOCK_MONOTONIC,
                _sigevent(t, F.SIGEV_THREAD_ID, tid=99999), idp) == -E.EINVAL
    assert call(t, "timer_create", F.CLOCK_MONOTONIC, BAD, idp) == -E.EFAULT
    assert call(t, "timer_create", F.CLOCK_MONOTONIC, 0, idp) == 0
    assert call(t, "timer_settime", 0, 0, 0, 0) == -E.EINVAL
    bad = put(t, ITIMERSPEC.pack(0, 0, 0, 10**9), 0x500)
    assert call(t, "timer_settime", 0, 0, bad, 0) == -E.EINVAL
    assert _settime(t, 5, MS) == -E.EINVAL


# --- signalfd -------------------------------------------------------------------------
def _mask(t, *signos, off=0x800):
    return put(t, struct.pack("<Q", sum(bit(s) for s in signos)), off)


def test_signalfd_reads_blocked_signals():
    _k, t = make_kernel()
    t.sigmask = bit(F.SIGUSR1) | bit(F.SIGCHLD)
    fd = call(t, "signalfd4", -1, _mask(t, F.SIGUSR1, F.SIGCHLD), 8, F.SFD_NONBLOCK)
    assert fd >= 0
    f = t.files.get(fd)
    buf = SCRATCH + 0x1000
    assert call(t, "read", fd, buf, 128) == -E.EAGAIN
    assert not f.poll_events() & F.POLLIN
    other = call(t, "getpid")
    assert call(t, "kill", other, F.SIGUSR1) == 0
    signals.send_task(t, F.SIGCHLD)
    assert f.poll_events() & F.POLLIN
    assert call(t, "read", fd, buf, 127) == -E.EINVAL
    assert call(t, "read", fd, buf, 300) == 256  # two records
    a = SIGNALFD_SIGINFO.read(t.mm.read(buf, 128))
    b = SIGNALFD_SIGINFO.read(t.mm.read(buf + 128, 128))
    assert (a.ssi_signo, a.ssi_code) == (F.SIGCHLD, F.SI_KERNEL)  # thread queue first
    assert (b.ssi_signo, b.ssi_code, b.ssi_pid) == (F.SIGUSR1, F.SI_USER, t.pid)
    assert not pending(t, F.SIGUSR1)


def test_signalfd_blocking_read_and_mask_update():
    _k, t = make_kernel()
    t.sigmask = signals.ALL
    fd = call(t, "signalfd", -1, _mask(t, F.SIGUSR2), 8)
    buf = SCRATCH + 0x1000
    call(t, "read", fd, buf, 128)
    assert t.state is State.BLOCKED
    signals.send_task(t, F.SIGHUP)  # not in the fd's mask: asleep again after a look
    assert t.state is State.RUNNABLE
    resume(t)
    assert t.state is State.BLOCKED
    signals.send_process(t.proc, F.SIGUSR2)
    assert resume(t) == 128
    assert SIGNALFD_SIGINFO.read(t.mm.read(buf, 128)).ssi_signo == F.SIGUSR2
    # Updating the mask of an existing signalfd; a non-signalfd fd is EINVAL.
    assert call(t, "signalfd4", fd, _mask(t, F.SIGHUP), 8, 0) == fd
    assert call(t, "read", fd, buf, 128) == 128
    efd = call(t, "eventfd2", 0, 0)
    assert efd >= 0 and call(t, "signalfd4", efd, _mask(t, F.SIGHUP), 8, 0) == -E.EINVAL
    assert call(t, "signalfd4", -1, _mask(t, F.SIGHUP), 4, 0) == -E.EINVAL
    assert call(t, "signalfd4", -1, _mask(t, F.SIGHUP), 8, 1) == -E.EINVAL
    assert call(t, "signalfd4", -1, BAD, 8, 0) == -E.EFAULT
    assert call(t, "signalfd4", 99, _mask(t, F.SIGHUP), 8, 0) == -E.EBADF
