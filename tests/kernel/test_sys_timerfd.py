"""timerfd_create/settime/gettime and reading a timerfd, through the dispatcher;
expirations come from the real scheduler's timers (``sched.poll()``)."""

from __future__ import annotations

import struct
import time

import pytest

from cove.abi import flags as F
from cove.abi.errno import E
from cove.kernel import signals
from cove.kernel.timerfd import TFD_IOC_SET_TICKS

from .harness import SCRATCH, make_kernel
from .iohelp import fstat, is_blocked, resume, sc, thread

pytestmark = pytest.mark.timeout(20)

NEW = SCRATCH + 0x8000
OLD = SCRATCH + 0x8100
BUF = SCRATCH + 0x9000
MS = 1_000_000
NSEC = 1_000_000_000
U64 = (1 << 64) - 1


def settime(t, fd: int, value_ns: int, interval_ns: int = 0, flags: int = 0,
            old: int = 0) -> int | None:
    t.mm.write(NEW, struct.pack("<qqqq", interval_ns // NSEC, interval_ns % NSEC,
                                value_ns // NSEC, value_ns % NSEC))
    return sc(t, "timerfd_settime", fd, flags, NEW, old)


def gettime(t, fd: int) -> tuple[int, int]:
    """(interval, value) in ns."""
    assert sc(t, "timerfd_gettime", fd, BUF) == 0
    isec, insec, vsec, vnsec = struct.unpack("<qqqq", t.mm.read(BUF, 32))
    return isec * NSEC + insec, vsec * NSEC + vnsec


def read_ticks(t, fd: int) -> int | None:
    r = sc(t, "read", fd, BUF, 8)
    if r is None or r < 0:
        return r
    assert r == 8
    return struct.unpack("<Q", t.mm.read(BUF, 8))[0]


def run_timers(k, seconds: float) -> None:
    """Let ``seconds`` pass and fire what is due, as the scheduler loop would."""
    time.sleep(seconds)
    k.sched.poll()


# --- create ----------------------------------------------------------------------
def test_create_clocks_and_flags():
    _, t = make_kernel()
    for clock in (F.CLOCK_REALTIME, F.CLOCK_MONOTONIC, F.CLOCK_BOOTTIME):
        fd = sc(t, "timerfd_create", clock, 0)
        assert fd >= 0 and fd not in t.files.cloexec
    for clock in (F.CLOCK_PROCESS_CPUTIME_ID, F.CLOCK_MONOTONIC_RAW, F.CLOCK_TAI,
                  F.CLOCK_REALTIME_COARSE, -1, 100):
        assert sc(t, "timerfd_create", clock, 0) == -E.EINVAL
    assert sc(t, "timerfd_create", F.CLOCK_MONOTONIC, 1) == -E.EINVAL
    fd = sc(t, "timerfd_create", F.CLOCK_MONOTONIC, F.TFD_NONBLOCK | F.TFD_CLOEXEC)
    assert fd in t.files.cloexec
    assert sc(t, "fcntl", fd, F.F_GETFL) == F.O_RDWR | F.O_NONBLOCK
    assert t.files.get(fd).proc_name() == "anon_inode:[timerfd]"
    assert fstat(t, fd)[2] == 0o600
    assert sc(t, "write", fd, BUF, 8) == -E.EINVAL
    assert sc(t, "lseek", fd, 10, 0) == 0


def test_alarm_clocks_need_root():
    _, t = make_kernel()
    fd = sc(t, "timerfd_create", F.CLOCK_BOOTTIME_ALARM, F.TFD_NONBLOCK)
    assert fd >= 0  # sandbox root: a plain clock
    t.proc.creds.euid = 1000
    assert sc(t, "timerfd_create", F.CLOCK_REALTIME_ALARM, 0) == -E.EPERM
    assert sc(t, "timerfd_create", F.CLOCK_BOOTTIME_ALARM, 0) == -E.EPERM
    assert settime(t, fd, MS) == -E.EPERM  # created as root, set after dropping it


# --- settime / gettime errors --------------------------------------------------------
def test_settime_and_gettime_errors():
    _, t = make_kernel()
    fd = sc(t, "timerfd_create", F.CLOCK_MONOTONIC, 0)
    efd = sc(t, "eventfd2", 0, 0)
    assert sc(t, "timerfd_settime", fd, 0, 0, 0) == -E.EFAULT
    assert sc(t, "timerfd_settime", 99, 0, 0x1000, 0) == -E.EFAULT  # read first
    assert settime(t, fd, MS, flags=4) == -E.EINVAL
    assert settime(t, 99, MS, flags=4) == -E.EINVAL  # flags before the fd
    t.mm.write(NEW, struct.pack("<qqqq", 0, NSEC, 0, 1))
    assert sc(t, "timerfd_settime", fd, 0, NEW, 0) == -E.EINVAL
    t.mm.write(NEW, struct.pack("<qqqq", 0, 0, -1, 0))
    assert sc(t, "timerfd_settime", fd, 0, NEW, 0) == -E.EINVAL
    assert settime(t, 99, MS) == -E.EBADF
    assert settime(t, efd, MS) == -E.EINVAL  # not a timerfd
    assert sc(t, "timerfd_gettime", 99, BUF) == -E.EBADF
    assert sc(t, "timerfd_gettime", efd, BUF) == -E.EINVAL
    assert sc(t, "timerfd_gettime", fd, 0x1000) == -E.EFAULT
    # A bad old-value pointer is EFAULT after the timer was set.
    assert settime(t, fd, 10 * NSEC, old=0x1000) == -E.EFAULT
    assert 9 * NSEC < gettime(t, fd)[1] <= 10 * NSEC
    t.mm.write(SCRATCH, b"/\0")
    p = sc(t, "openat", -100, SCRATCH, F.O_PATH, 0)
    assert settime(t, p, MS) == -E.EBADF
    # Both flags are accepted (CANCEL_ON_SET never fires: the clock cannot be set).
    rt = sc(t, "timerfd_create", F.CLOCK_REALTIME, 0)
    now = time.time_ns()
    assert settime(t, rt, now + 5 * NSEC, flags=F.TFD_TIMER_ABSTIME
                   | F.TFD_TIMER_CANCEL_ON_SET) == 0
    assert 4 * NSEC < gettime(t, rt)[1] <= 5 * NSEC


def test_gettime_and_old_value():
    _, t = make_kernel()
    fd = sc(t, "timerfd_create", F.CLOCK_MONOTONIC, 0)
    assert gettime(t, fd) == (0, 0)  # disarmed
    assert settime(t, fd, 3 * NSEC, 2 * NSEC) == 0
    interval, value = gettime(t, fd)
    assert interval == 2 * NSEC and 2.9 * NSEC < value <= 3 * NSEC
    assert settime(t, fd, 0, old=OLD) == 0  # disarm, and the old setting back
    isec, insec, vsec, vnsec = struct.unpack("<qqqq", t.mm.read(OLD, 32))
    assert (isec, insec) == (2, 0) and 2.9 * NSEC < vsec * NSEC + vnsec <= 3 * NSEC
    assert gettime(t, fd) == (0, 0)


# --- expiry and reads ------------------------------------------------------------------
def test_one_shot_expiry_read_and_poll():
    k, t = make_kernel()
    fd = sc(t, "timerfd_create", F.CLOCK_MONOTONIC, F.TFD_NONBLOCK)
    assert sc(t, "read", fd, BUF, 4) == -E.EINVAL  # size before EAGAIN
    assert read_ticks(t, fd) == -E.EAGAIN
    assert settime(t, fd, 20 * MS) == 0
    pfd = SCRATCH + 0x200
    t.mm.write(pfd, struct.pack("<ihh", fd, F.POLLIN | F.POLLOUT, 0))
    assert sc(t, "poll", pfd, 1, 0) == 0
    k.sched.poll()
    assert read_ticks(t, fd) == -E.EAGAIN  # not yet
    run_timers(k, 0.04)
    assert sc(t, "poll", pfd, 1, 0) == 1
    assert struct.unpack("<ihh", t.mm.read(pfd, 8))[2] == F.POLLIN  # never POLLOUT
    assert sc(t, "read", fd, BUF, 4) == -E.EINVAL
    assert read_ticks(t, fd) == 1
    assert read_ticks(t, fd) == -E.EAGAIN
    assert gettime(t, fd) == (0, 0)  # expired one-shot
    run_timers(k, 0.03)
    assert read_ticks(t, fd) == -E.EAGAIN  # fires once


def test_periodic_counts_every_interval_lazily():
    k, t = make_kernel()
    fd = sc(t, "timerfd_create", F.CLOCK_MONOTONIC, F.TFD_NONBLOCK)
    start = time.monotonic()
    assert settime(t, fd, 10 * MS, 10 * MS) == 0
    tf = t.files.get(fd)

    def intervals_since_start() -> int:
        return int((time.monotonic() - start) / 0.01)

    run_timers(k, 0.055)
    run_timers(k, 0)
    # Fired once and then waits for its reader (no re-arm in the timer itself).
    assert tf.ticks == 1 and tf.expired
    low = intervals_since_start()
    n = read_ticks(t, fd)
    high = intervals_since_start()
    assert 5 <= low <= n <= high, (low, n, high)
    assert not tf.expired
    run_timers(k, 0.025)
    low = intervals_since_start() - n
    n2 = read_ticks(t, fd)
    high = intervals_since_start() - n
    assert 2 <= low <= n2 <= high, (low, n2, high)
    # gettime moves it forward too, keeping the count for the next read.
    run_timers(k, 0.035)
    interval, value = gettime(t, fd)
    assert interval == 10 * MS and 0 < value <= 10 * MS
    assert tf.ticks >= 3 and not tf.expired
    ticks = tf.ticks
    assert read_ticks(t, fd) == ticks


def test_settime_discards_unread_ticks():
    k, t = make_kernel()
    fd = sc(t, "timerfd_create", F.CLOCK_MONOTONIC, F.TFD_NONBLOCK)
    settime(t, fd, MS, MS)
    run_timers(k, 0.01)
    assert t.files.get(fd).ticks >= 1
    assert settime(t, fd, 10 * NSEC, old=OLD) == 0
    isec, insec, vsec, vnsec = struct.unpack("<qqqq", t.mm.read(OLD, 32))
    assert (isec, insec) == (0, MS) and 0 < vsec * NSEC + vnsec <= MS
    assert read_ticks(t, fd) == -E.EAGAIN


def test_absolute_times():
    k, t = make_kernel()
    mono = sc(t, "timerfd_create", F.CLOCK_MONOTONIC, F.TFD_NONBLOCK)
    rt = sc(t, "timerfd_create", F.CLOCK_REALTIME, F.TFD_NONBLOCK)
    # An absolute time in the past expires at once.
    assert settime(t, mono, 1, flags=F.TFD_TIMER_ABSTIME) == 0
    assert settime(t, rt, 1, flags=F.TFD_TIMER_ABSTIME) == 0
    k.sched.poll()
    assert read_ticks(t, mono) == 1 and read_ticks(t, rt) == 1
    # The sandbox's monotonic clock (clock_gettime's), not the host's.
    assert sc(t, "clock_gettime", F.CLOCK_MONOTONIC, BUF) == 0
    sec, nsec = struct.unpack("<qq", t.mm.read(BUF, 16))
    now = sec * NSEC + nsec
    assert settime(t, mono, now + 30 * MS, flags=F.TFD_TIMER_ABSTIME) == 0
    assert 20 * MS < gettime(t, mono)[1] <= 30 * MS
    assert settime(t, rt, time.time_ns() + 30 * MS, flags=F.TFD_TIMER_ABSTIME) == 0
    run_timers(k, 0.05)
    assert read_ticks(t, mono) == 1 and read_ticks(t, rt) == 1
    # Absolute periodic from the past: the intervals since count as ticks.
    start = time.time_ns() - 100 * MS
    assert settime(t, rt, start, 10 * MS, flags=F.TFD_TIMER_ABSTIME) == 0
    k.sched.poll()
    assert 10 <= read_ticks(t, rt) <= 12


def test_blocking_read_sleeps_until_expiry():
    k, t = make_kernel()
    fd = sc(t, "timerfd_create", F.CLOCK_MONOTONIC, 0)
    assert read_ticks(t, fd) is None and is_blocked(t)  # disarmed: forever
    settime(thread(k, t), fd, 10 * MS)
    assert resume(t) is None
    run_timers(k, 0.03)
    assert resume(t) == 8
    assert struct.unpack("<Q", t.mm.read(BUF, 8))[0] == 1


def test_blocking_read_interrupted_by_a_signal():
    _, t = make_kernel()
    fd = sc(t, "timerfd_create", F.CLOCK_MONOTONIC, 0)
    assert read_ticks(t, fd) is None
    signals.send_task(t, F.SIGUSR1)
    t.kernel._resume_blocked(t)
    assert t.ctx.regs.rax == -E.EINTR & U64


def test_set_ticks_ioctl():
    _, t = make_kernel()
    fd = sc(t, "timerfd_create", F.CLOCK_MONOTONIC, F.TFD_NONBLOCK)
    t.mm.write(SCRATCH + 0x300, struct.pack("<Q", 0))
    assert sc(t, "ioctl", fd, TFD_IOC_SET_TICKS, SCRATCH + 0x300) == -E.EINVAL
    assert sc(t, "ioctl", fd, TFD_IOC_SET_TICKS, 0x1000) == -E.EFAULT
    t.mm.write(SCRATCH + 0x300, struct.pack("<Q", 7))
    assert sc(t, "ioctl", fd, TFD_IOC_SET_TICKS, SCRATCH + 0x300) == 0
    assert read_ticks(t, fd) == 7
    assert sc(t, "ioctl", fd, F.FIONREAD, SCRATCH + 0x300) == -E.ENOTTY


def test_closing_the_last_fd_stops_the_timer():
    k, t = make_kernel()
    fd = sc(t, "timerfd_create", F.CLOCK_MONOTONIC, 0)
    settime(t, fd, 5 * MS, 5 * MS)
    tf = t.files.get(fd)
    dup = sc(t, "dup", fd)
    sc(t, "close", fd)
    assert tf.timer.armed
    sc(t, "close", dup)
    assert not tf.timer.armed
    run_timers(k, 0.01)
    assert tf.ticks == 0
