"""Clocks, sleeps (with EINTR and rem), times, and CPU-time accounting."""

from __future__ import annotations

import struct
import time

import pytest

from cove.abi import flags as F
from cove.abi.errno import E
from cove.abi.structs import TIMESPEC, TIMEVAL, TMS
from cove.abi.sysnums import NR
from cove.kernel import signals
from cove.kernel.kernel import MASK64
from cove.kernel.syscall import TABLE
from cove.kernel.task import State
from cove.platform.base import Exit, ExitKind

from .harness import SCRATCH, call, make_kernel, put
from .sysutil import BAD, spawn, thread

NSEC = 1_000_000_000
TS = SCRATCH + 0x100


def ts(t, addr=TS):
    sec, nsec = TIMESPEC.unpack_from(t.mm.read(addr, 16))
    return sec * NSEC + nsec


def put_ts(t, ns, off=0x200):
    return put(t, TIMESPEC.pack(ns // NSEC, ns % NSEC), off)


def signed(v):
    return v - (1 << 64) if v & (1 << 63) else v


def finish(k, t, limit=5.0):
    """Drive the scheduler as the run loop would until ``t``'s blocked call ends."""
    end = time.monotonic() + limit
    while t.state is State.BLOCKED or t.blocked_call is not None:
        assert time.monotonic() < end, "blocked call never finished"
        nxt = k.sched.next()
        if nxt is t and t.blocked_call is not None:
            k._resume_blocked(t)
    return signed(t.ctx.regs.rax)


# --- reading clocks ---------------------------------------------------------------------
def test_realtime_is_the_wall_clock():
    _, t = make_kernel()
    for clock in (F.CLOCK_REALTIME, F.CLOCK_TAI, F.CLOCK_REALTIME_COARSE):
        before = time.time_ns()
        assert call(t, "clock_gettime", clock, TS) == 0
        assert before - 5_000_000 <= ts(t) <= time.time_ns()


def test_monotonic_counts_from_the_sandbox_boot():
    k, t = make_kernel()
    k.boot_monotonic = time.monotonic() - 100.0  # booted 100 s ago
    for clock in (F.CLOCK_MONOTONIC, F.CLOCK_MONOTONIC_RAW, F.CLOCK_BOOTTIME,
                  F.CLOCK_MONOTONIC_COARSE):
        assert call(t, "clock_gettime", clock, TS) == 0
        assert 99.9 * NSEC < ts(t) < 101 * NSEC
    call(t, "clock_gettime", F.CLOCK_MONOTONIC, TS)
    a = ts(t)
    call(t, "clock_gettime", F.CLOCK_MONOTONIC, TS)
    assert ts(t) >= a


def test_coarse_clocks_are_tick_aligned():
    _, t = make_kernel()
    call(t, "clock_gettime", F.CLOCK_MONOTONIC_COARSE, TS)
    assert ts(t) % 4_000_000 == 0


def test_cpu_clocks():
    k, t = make_kernel()
    t2 = thread(k, t)
    t.proc.user_time, t.proc.sys_time = 1.5, 0.25
    t.utime, t.stime = 0.5, 0.125
    t2.utime = 0.75
    assert call(t, "clock_gettime", F.CLOCK_PROCESS_CPUTIME_ID, TS) == 0
    assert ts(t) == 1_750_000_000
    assert call(t, "clock_gettime", F.CLOCK_THREAD_CPUTIME_ID, TS) == 0
    assert ts(t) == 625_000_000
    assert call(t2, "clock_gettime", F.CLOCK_THREAD_CPUTIME_ID, TS) == 0
    assert ts(t) == 750_000_000
    # dynamic clocks: ~pid << 3 | which (| 4 for a thread)
    other = spawn(k, t)
    other.proc.user_time, other.proc.sys_time = 2.0, 1.0
    prof, virt, sched = ((~other.pid << 3) | w for w in (0, 1, 2))
    for clock, ns in ((prof, 3 * NSEC), (virt, 2 * NSEC), (sched, 3 * NSEC)):
        assert call(t, "clock_gettime", clock, TS) == 0
        assert ts(t) == ns
    thread_clock = (~t2.tid << 3) | 4 | 2
    assert call(t, "clock_gettime", thread_clock, TS) == 0 and ts(t) == 750_000_000
    # another process's thread clock, an unknown pid, and the fd-clock encoding
    assert call(t, "clock_gettime", (~other.pid << 3) | 4 | 2, TS) == -E.EINVAL
    assert call(t, "clock_gettime", (~999 << 3) | 2, TS) == -E.EINVAL
    assert call(t, "clock_gettime", (~other.pid << 3) | 3, TS) == -E.EINVAL


@pytest.mark.parametrize("clock", [F.CLOCK_REALTIME_ALARM, F.CLOCK_BOOTTIME_ALARM, 10, 12, 16,
                                   1000])
def test_unknown_clocks(clock):
    _, t = make_kernel()
    assert call(t, "clock_gettime", clock, TS) == -E.EINVAL
    assert call(t, "clock_getres", clock, TS) == -E.EINVAL


def test_clock_gettime_efault():
    _, t = make_kernel()
    assert call(t, "clock_gettime", F.CLOCK_MONOTONIC, 0) == -E.EFAULT
    assert call(t, "clock_gettime", F.CLOCK_MONOTONIC, BAD) == -E.EFAULT


def test_clock_getres():
    _, t = make_kernel()
    assert call(t, "clock_getres", F.CLOCK_MONOTONIC, TS) == 0 and ts(t) == 1
    assert call(t, "clock_getres", F.CLOCK_PROCESS_CPUTIME_ID, TS) == 0 and ts(t) == 1
    assert call(t, "clock_getres", F.CLOCK_REALTIME_COARSE, TS) == 0 and ts(t) == 4_000_000
    assert call(t, "clock_getres", F.CLOCK_MONOTONIC, 0) == 0  # NULL: just validates
    assert call(t, "clock_getres", F.CLOCK_MONOTONIC, BAD) == -E.EFAULT


def test_clock_settime_is_refused():
    _, t = make_kernel()
    good = put_ts(t, 5 * NSEC)
    bad = put(t, TIMESPEC.pack(1, NSEC), 0x300)
    assert call(t, "clock_settime", F.CLOCK_REALTIME, good) == -E.EPERM
    assert call(t, "clock_settime", F.CLOCK_REALTIME, bad) == -E.EINVAL
    assert call(t, "clock_settime", F.CLOCK_REALTIME, BAD) == -E.EFAULT
    assert call(t, "clock_settime", F.CLOCK_MONOTONIC, good) == -E.EINVAL
    assert call(t, "clock_settime", F.CLOCK_PROCESS_CPUTIME_ID, good) == -E.EPERM
    assert call(t, "clock_settime", 77, good) == -E.EINVAL
    assert call(t, "settimeofday", put(t, TIMEVAL.pack(5, 0), 0x400), 0) == -E.EPERM
    assert call(t, "settimeofday", put(t, TIMEVAL.pack(5, 10**6), 0x400), 0) == -E.EINVAL
    assert call(t, "settimeofday", BAD, 0) == -E.EFAULT


def test_gettimeofday_and_time():
    _, t = make_kernel()
    put(t, b"\xff" * 8, 0x180)
    before = time.time()
    assert call(t, "gettimeofday", TS, SCRATCH + 0x180) == 0
    sec, usec = TIMEVAL.unpack_from(t.mm.read(TS, 16))
    assert before - 1 <= sec + usec / 1e6 <= time.time() and 0 <= usec < 10**6
    assert t.mm.read(SCRATCH + 0x180, 8) == bytes(8)  # UTC, no DST
    assert call(t, "gettimeofday", 0, 0) == 0
    assert call(t, "gettimeofday", BAD, 0) == -E.EFAULT
    assert call(t, "gettimeofday", TS, BAD) == -E.EFAULT
    now = call(t, "time", TS)
    assert abs(now - time.time()) < 2
    assert struct.unpack("<q", t.mm.read(TS, 8))[0] == now
    assert abs(call(t, "time", 0) - time.time()) < 2
    assert call(t, "time", BAD) == -E.EFAULT


def test_times():
    k, t = make_kernel()
    k.boot_monotonic = time.monotonic() - 3.0
    p = t.proc
    p.user_time, p.sys_time, p.child_user_time, p.child_sys_time = 1.0, 0.5, 2.0, 0.25
    ticks = call(t, "times", TS)
    assert 300 <= ticks < 310  # 100 Hz since the sandbox booted
    assert TMS.unpack_from(t.mm.read(TS, TMS.size)) == (100, 50, 200, 25)
    assert 300 <= call(t, "times", 0) < 310
    assert call(t, "times", BAD) == -E.EFAULT


# --- sleeping -----------------------------------------------------------------------------
@pytest.mark.timeout(10)
def test_nanosleep_sleeps():
    k, t = make_kernel()
    req = put_ts(t, 50_000_000)
    start = time.monotonic()
    call(t, "nanosleep", req, 0)
    assert t.state is State.BLOCKED
    assert finish(k, t) == 0
    assert time.monotonic() - start >= 0.05


def test_nanosleep_errors():
    _, t = make_kernel()
    assert call(t, "nanosleep", put(t, TIMESPEC.pack(0, NSEC), 0x200), 0) == -E.EINVAL
    assert call(t, "nanosleep", put(t, TIMESPEC.pack(-1, 0), 0x200), 0) == -E.EINVAL
    assert call(t, "nanosleep", BAD, 0) == -E.EFAULT
    assert call(t, "nanosleep", put_ts(t, 0), 0) == 0  # nothing to wait for
    assert t.state is State.RUNNABLE


@pytest.mark.timeout(10)
def test_nanosleep_eintr_writes_rem():
    k, t = make_kernel()
    t.proc.sighand.actions[F.SIGUSR1].handler = 0x401000  # a guest handler
    req = put_ts(t, 10 * NSEC)
    put(t, b"\xff" * 16, 0x300)
    call(t, "nanosleep", req, SCRATCH + 0x300)
    time.sleep(0.05)
    signals.send_task(t, F.SIGUSR1)
    assert finish(k, t) == -E.EINTR
    rem = ts(t, SCRATCH + 0x300)
    assert 9 * NSEC < rem < 10 * NSEC - 40_000_000
    # EINTR even after an SA_RESTART handler: never restarted with the full time
    assert not TABLE[int(NR["nanosleep"])].restartable


@pytest.mark.timeout(10)
def test_nanosleep_eintr_bad_rem_is_efault():
    k, t = make_kernel()
    t.proc.sighand.actions[F.SIGUSR1].handler = 0x401000
    call(t, "nanosleep", put_ts(t, 10 * NSEC), BAD)
    signals.send_task(t, F.SIGUSR1)
    assert finish(k, t) == -E.EFAULT


@pytest.mark.timeout(10)
def test_spurious_wakeup_keeps_the_deadline():
    k, t = make_kernel()
    call(t, "nanosleep", put_ts(t, 200_000_000), 0)
    first = t.blocked_on.deadline
    time.sleep(0.02)
    k.sched.wake(t)  # woken without a reason: the call re-runs
    nxt = k.sched.next()
    assert nxt is t
    k._resume_blocked(t)
    assert t.state is State.BLOCKED
    assert t.blocked_on.deadline == first  # not 200 ms from now
    assert finish(k, t) == 0


@pytest.mark.timeout(10)
def test_clock_nanosleep_relative_and_absolute():
    k, t = make_kernel()
    start = time.monotonic()
    call(t, "clock_nanosleep", F.CLOCK_MONOTONIC, 0, put_ts(t, 30_000_000), 0)
    assert finish(k, t) == 0
    assert time.monotonic() - start >= 0.03
    # absolute on the sandbox's monotonic clock
    call(t, "clock_gettime", F.CLOCK_MONOTONIC, TS)
    target = ts(t) + 40_000_000
    start = time.monotonic()
    call(t, "clock_nanosleep", F.CLOCK_MONOTONIC, F.TIMER_ABSTIME, put_ts(t, target), 0)
    assert finish(k, t) == 0
    assert time.monotonic() - start >= 0.035
    call(t, "clock_gettime", F.CLOCK_MONOTONIC, TS)
    assert ts(t) >= target
    # absolute on the wall clock, already past: returns at once
    past = time.time_ns() - NSEC
    assert call(t, "clock_nanosleep", F.CLOCK_REALTIME, F.TIMER_ABSTIME, put_ts(t, past), 0) == 0
    wall = time.time_ns() + 30_000_000
    call(t, "clock_nanosleep", F.CLOCK_REALTIME, F.TIMER_ABSTIME, put_ts(t, wall), 0)
    assert finish(k, t) == 0
    assert time.time_ns() >= wall - 1_000_000


@pytest.mark.timeout(10)
def test_clock_nanosleep_abstime_eintr_leaves_rem():
    k, t = make_kernel()
    t.proc.sighand.actions[F.SIGUSR1].handler = 0x401000
    put(t, b"\xee" * 16, 0x300)
    call(t, "clock_gettime", F.CLOCK_MONOTONIC, TS)
    call(t, "clock_nanosleep", F.CLOCK_MONOTONIC, F.TIMER_ABSTIME,
         put_ts(t, ts(t) + 10 * NSEC), SCRATCH + 0x300)
    signals.send_task(t, F.SIGUSR1)
    assert finish(k, t) == -E.EINTR
    assert t.mm.read(SCRATCH + 0x300, 16) == b"\xee" * 16


def test_clock_nanosleep_errors():
    _, t = make_kernel()
    req = put_ts(t, 1000)
    assert call(t, "clock_nanosleep", 77, 0, req, 0) == -E.EINVAL
    assert call(t, "clock_nanosleep", F.CLOCK_THREAD_CPUTIME_ID, 0, req, 0) == -E.EOPNOTSUPP
    assert call(t, "clock_nanosleep", F.CLOCK_MONOTONIC_RAW, 0, req, 0) == -E.EOPNOTSUPP
    assert call(t, "clock_nanosleep", F.CLOCK_REALTIME_COARSE, 0, req, 0) == -E.EOPNOTSUPP
    assert call(t, "clock_nanosleep", F.CLOCK_MONOTONIC, 0, BAD, 0) == -E.EFAULT
    bad = put(t, TIMESPEC.pack(0, -1), 0x300)
    assert call(t, "clock_nanosleep", F.CLOCK_MONOTONIC, 0, bad, 0) == -E.EINVAL


# --- CPU time accounting in the run loop -----------------------------------------------------
class BusyCpu:
    """Runs 'guest code' for a while, then makes the syscalls it was given."""

    def __init__(self, calls: list[str], busy: float) -> None:
        self.calls = calls
        self.busy = busy
        self.exit = Exit()

    def run(self, ctx, aspace):
        end = time.perf_counter() + self.busy
        while time.perf_counter() < end:
            pass
        ctx.regs.rax = int(NR[self.calls.pop(0)])
        ctx.regs.rdi = 0
        self.exit.kind = ExitKind.SYSCALL
        return self.exit


@pytest.mark.timeout(10)
def test_run_loop_accounts_user_and_system_time():
    k, t = make_kernel()
    k.cpu = BusyCpu(["getpid", "getpid", "exit_group"], 0.02)
    assert k.run() == 0
    assert t.utime >= 0.06 and t.proc.user_time >= 0.06
    assert 0 < t.stime < t.utime and t.proc.sys_time == pytest.approx(t.stime)
    assert t.ctx.regs.rax & MASK64 != 0
