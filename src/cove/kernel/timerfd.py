"""timerfd: a timer whose expirations are read from an fd (fs/timerfd.c).

The expiry is a one-shot ``ClockTimer`` on the scheduler. As in Linux, a
periodic timer is not re-armed when it fires: the expiry marks it
``expired`` and counts one tick, and the next read (or timerfd_gettime)
moves it forward past now, adding the intervals that went by as ticks
(hrtimer_forward_now). A tiny interval therefore costs one scheduler event
per read, never a storm of them. timerfd_settime discards unread ticks.

TFD_TIMER_CANCEL_ON_SET is accepted but never fires: nothing in the sandbox
can set CLOCK_REALTIME (clock_settime is EPERM), so a read never returns
ECANCELED.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable

from cove.abi import flags as F
from cove.abi.errno import E, Errno
from cove.fs.file import O_NONBLOCK, O_RDWR, File
from cove.fs.node import Stat
from cove.kernel.eventfd import ANON_INODE_DEV, ANON_INODE_INO
from cove.kernel.itimer import ClockTimer
from cove.kernel.pollable import Pollable
from cove.kernel.wait import Blocked, WaitQueue

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from cove.kernel.sched import Scheduler
    from cove.kernel.task import Task

TFD_IOC_SET_TICKS = 0x40085400  # _IOW('T', 0, __u64)
ALARM_CLOCKS = (F.CLOCK_REALTIME_ALARM, F.CLOCK_BOOTTIME_ALARM)
_U64 = struct.Struct("<Q")


class TimerFd(Pollable, File):
    def __init__(self, sched: Scheduler, clockid: int, clock: Callable[[], int],
                 flags: int) -> None:
        super().__init__(O_RDWR | (flags & O_NONBLOCK))
        self.clockid = clockid
        self.clock = clock  # the timer's clock, in ns
        self.timer = ClockTimer(sched, clock, self._fire)
        self.expires: int | None = None  # the programmed expiry (clock ns)
        self.interval = 0
        self.expired = False  # fired and not yet moved forward (periodic)
        self.ticks = 0  # expirations not yet read
        self.cancel_on_set = False
        self.queue = WaitQueue()
        self.ctime_ns = time.time_ns()

    @property
    def is_alarm(self) -> bool:
        return self.clockid in ALARM_CLOCKS

    # --- the timer ---------------------------------------------------------------
    def _fire(self, overruns: int) -> None:
        self.expired = True
        self.ticks += 1
        self.queue.notify()

    def _forward(self) -> int:
        """Move an expired periodic timer past now and re-arm it; the number
        of intervals that moved it (≥ 1; the first was already a tick)."""
        assert self.expires is not None and self.interval > 0
        now = self.clock()
        n = max(1, (now - self.expires) // self.interval + 1)
        self.expires += n * self.interval
        self.expired = False
        self.timer.arm(self.expires, 0, absolute=True)
        return n

    def remaining(self) -> int:
        """ns until the next expiry; 0 when disarmed or due."""
        if self.expires is None:
            return 0
        return max(0, self.expires - self.clock())

    def get(self) -> tuple[int, int]:
        """timerfd_gettime: (interval, remaining) ns, catching up a periodic timer."""
        if self.expired and self.interval:
            self.ticks += self._forward() - 1
        return self.interval, self.remaining()

    def set(self, value: int, interval: int, flags: int) -> tuple[int, int]:
        """timerfd_settime: arm (value > 0, relative unless TFD_TIMER_ABSTIME)
        or disarm; returns the previous (interval, remaining)."""
        if self.expired and self.interval:
            self._forward()  # for the old value only: ticks are reset below
        old = (self.interval, self.remaining())
        self.timer.disarm()
        self.expired = False
        self.ticks = 0
        self.interval = interval
        self.cancel_on_set = (self.clockid in (F.CLOCK_REALTIME, F.CLOCK_REALTIME_ALARM)
                              and flags & F.TFD_TIMER_ABSTIME != 0
                              and flags & F.TFD_TIMER_CANCEL_ON_SET != 0)
        if value:
            self.expires = value if flags & F.TFD_TIMER_ABSTIME else self.clock() + value
            # An absolute time already past fires at the scheduler's next look.
            self.timer.arm(max(self.expires, 1), 0, absolute=True)
        else:
            self.expires = None
        return old

    # --- as a file -----------------------------------------------------------------
    def read(self, size: int) -> bytes:
        if size < 8:
            raise Errno(E.EINVAL)
        if not self.ticks:
            if self.flags & O_NONBLOCK:
                raise Errno(E.EAGAIN)
            raise Blocked(self.queue)
        ticks = self.ticks
        if self.expired and self.interval:
            ticks += self._forward() - 1
        self.expired = False
        self.ticks = 0
        return _U64.pack(min(ticks, (1 << 64) - 1))

    def seek(self, offset: int, whence: int) -> int:
        return 0  # noop_llseek

    def poll_events(self) -> int:
        return F.POLLIN if self.ticks else 0

    def poll_queues(self) -> tuple[WaitQueue, ...]:
        return (self.queue,)

    def ioctl(self, t: Task, cmd: int, arg: int) -> int:
        if cmd != TFD_IOC_SET_TICKS:
            raise Errno(E.ENOTTY)
        (ticks,) = _U64.unpack(t.mm.read(arg, 8))
        if not ticks:
            raise Errno(E.EINVAL)
        self.ticks = ticks
        self.queue.notify()
        return 0

    def stat(self) -> Stat:
        return Stat(ino=ANON_INODE_INO, mode=0o600, nlink=1, uid=0, gid=0,
                    dev=ANON_INODE_DEV, blksize=4096, atime_ns=self.ctime_ns,
                    mtime_ns=self.ctime_ns, ctime_ns=self.ctime_ns)

    def proc_name(self) -> str:
        return "anon_inode:[timerfd]"

    def release(self) -> None:
        self.timer.disarm()
