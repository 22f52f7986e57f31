"""The scheduler: which guest thread runs next on the sandbox's cpu, and where
blocked threads wait (wait queues, deadlines, host file descriptors)."""

from __future__ import annotations

import itertools
import os
import time
from collections import deque
from collections.abc import Callable

try:  # the C functions heapq.py re-exports (heapq.py itself costs ~0.15 ms a start)
    from _heapq import heappop, heappush
except ImportError:  # pragma: no cover - a Python without the accelerator
    from heapq import heappop, heappush

from cove.kernel.hostpoll import EVENT_READ, HostPoll
from cove.kernel.task import State, Task
from cove.kernel.wait import Blocked

TIMESLICE = 0.02  # seconds a guest thread runs before another may take the cpu


class Timer:
    """A callback the scheduler runs at ``deadline`` (time.monotonic() seconds),
    from its own loop: interval timers, alarm(2), POSIX timers."""

    __slots__ = ("cancelled", "deadline", "fn")

    def __init__(self, deadline: float, fn: Callable[[], None]) -> None:
        self.deadline = deadline
        self.fn = fn
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Scheduler:
    def __init__(self) -> None:
        self.runq: deque[Task] = deque()
        self._deadlines: list[tuple[float, int, Task]] = []
        self._timers: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self._selector = HostPoll()
        self._fd_waiters: dict[int, set[Task]] = {}
        # The sandbox's wall-clock limit (monotonic): next() never sleeps past it.
        self.horizon: float | None = None
        # wakeup(): a self-pipe another host thread writes to end a sleep in next()
        # (cove.sandbox pauses a guest running in the background for a snapshot).
        self._wakeup_r = self._wakeup_w = -1
        self._wakeup_pending = False

    # --- state changes --------------------------------------------------------
    def add(self, t: Task) -> None:
        t.state = State.RUNNABLE
        self.runq.append(t)

    def block(self, t: Task, b: Blocked) -> None:
        t.state = State.BLOCKED
        t.nvcsw += 1
        t.blocked_on = b
        t.woken = t.timed_out = t.interrupted = False
        for q in b.queues:
            q.waiters.add(t)
        if b.deadline is not None:
            heappush(self._deadlines, (b.deadline, next(self._seq), t))
        if b.host_fd is not None:
            waiters = self._fd_waiters.setdefault(b.host_fd, set())
            if not waiters:
                self._selector.register(b.host_fd, b.host_events)
            waiters.add(t)

    def _unpark(self, t: Task) -> None:
        b = t.blocked_on
        if b is None:
            return
        for q in b.queues:
            q.waiters.discard(t)
        if b.host_fd is not None:
            waiters = self._fd_waiters.get(b.host_fd)
            if waiters is not None:
                waiters.discard(t)
                if not waiters:
                    del self._fd_waiters[b.host_fd]
                    self._selector.unregister(b.host_fd)
        t.blocked_on = None

    def wake(self, t: Task, *, timed_out: bool = False, interrupted: bool = False) -> None:
        if t.state is not State.BLOCKED:
            return
        if interrupted and t.blocked_on is not None and not t.blocked_on.interruptible:
            return
        b = t.blocked_on
        self._unpark(t)
        if timed_out:
            t.blocked_on = b  # Kernel._resume_blocked returns its on_timeout
        t.woken = True
        t.timed_out = timed_out
        t.interrupted = interrupted
        if t.proc.state is State.STOPPED:
            # A stopped group's thread waits for SIGCONT, which makes it
            # runnable; the call then finishes as this wake-up says.
            t.state = State.STOPPED
            return
        t.state = State.RUNNABLE
        self.runq.append(t)

    def remove(self, t: Task) -> None:
        """A task exits: forget it wherever it is."""
        self._unpark(t)
        try:
            self.runq.remove(t)
        except ValueError:
            pass

    def call_at(self, deadline: float, fn: Callable[[], None]) -> Timer:
        """Run ``fn()`` once at ``deadline`` (cancel with ``Timer.cancel``)."""
        timer = Timer(deadline, fn)
        heappush(self._timers, (deadline, next(self._seq), timer))
        return timer

    def _fire(self, now: float) -> None:
        while self._timers and self._timers[0][0] <= now:
            timer = heappop(self._timers)[2]
            if not timer.cancelled:
                timer.cancelled = True
                timer.fn()

    def _next_deadline(self) -> float | None:
        while self._timers and self._timers[0][2].cancelled:
            heappop(self._timers)
        times = [q[0][0] for q in (self._deadlines, self._timers) if q]
        return min(times) if times else None

    # --- choosing -------------------------------------------------------------
    def _expire(self, now: float) -> None:
        while self._deadlines and self._deadlines[0][0] <= now:
            deadline, _, t = heappop(self._deadlines)
            b = t.blocked_on
            if t.state is State.BLOCKED and b is not None and b.deadline == deadline:
                self.wake(t, timed_out=True)

    def _poll_host(self, timeout: float | None) -> None:
        if not self._fd_waiters and self._wakeup_r < 0:
            if timeout:
                time.sleep(timeout)
            return
        for fd in self._selector.ready(timeout):
            if fd == self._wakeup_r:
                self._drain_wakeup()
                continue
            for t in list(self._fd_waiters.get(fd, ())):
                self.wake(t)

    # --- waking the scheduler from another host thread -----------------------
    def enable_wakeup(self) -> None:
        """Make ``wakeup()`` usable (a self-pipe; ``close()`` releases it)."""
        if self._wakeup_r < 0:
            self._wakeup_r, self._wakeup_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            self._selector.register(self._wakeup_r, EVENT_READ)

    def wakeup(self) -> None:
        """From any host thread: ``next()`` returns None soon, even while it
        sleeps (the caller asked for it, so it knows None is not a deadlock)."""
        self._wakeup_pending = True
        if self._wakeup_w >= 0:
            try:
                os.write(self._wakeup_w, b"\0")
            except BlockingIOError:
                pass  # already full: a wake-up is pending anyway

    def cancel_wakeup(self) -> None:
        """Forget a ``wakeup()`` not yet seen (the caller paused the kernel anyway)."""
        self._wakeup_pending = False

    def _drain_wakeup(self) -> None:
        try:
            while os.read(self._wakeup_r, 512):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        """Release the wake-up pipe, if any."""
        if self._wakeup_r >= 0:
            self._selector.unregister(self._wakeup_r)
            os.close(self._wakeup_r)
            os.close(self._wakeup_w)
            self._wakeup_r = self._wakeup_w = -1

    def poll(self) -> None:
        """Wake whatever is due now (ready host fds, timers, deadlines) without
        waiting: sched_yield calls this so a yielding thread lets them run."""
        if self._fd_waiters:
            self._poll_host(0)
        if self._timers:
            self._fire(time.monotonic())
        if self._deadlines:
            self._expire(time.monotonic())

    def poll_host(self) -> None:
        """Wake the tasks whose host fds are ready and take a ``wakeup()``'s
        byte, without waiting (the concurrent loop, after its own wait)."""
        if self._fd_waiters or self._wakeup_r >= 0:
            self._poll_host(0)

    def next(self) -> Task | None:
        """The next runnable task, sleeping until one exists; None on deadlock
        (every task blocked with nothing that could ever wake it)."""
        while True:
            if self._wakeup_pending:
                self._wakeup_pending = False
                return None
            if self._fd_waiters:
                self._poll_host(0)
            if self._timers:
                self._fire(time.monotonic())
            if self._deadlines:
                self._expire(time.monotonic())
            while self.runq:
                t = self.runq.popleft()
                if t.state is State.RUNNABLE:
                    return t
            deadline = self._next_deadline()
            if deadline is None and not self._fd_waiters:
                return None
            if self.horizon is not None:
                if time.monotonic() >= self.horizon:
                    return None
                deadline = self.horizon if deadline is None else min(deadline, self.horizon)
            timeout = None
            if deadline is not None:
                timeout = max(0.0, deadline - time.monotonic())
            self._poll_host(timeout)

    def timeout(self) -> float | None:
        """Seconds until the next timer, sleep deadline or the horizon (None: none)."""
        deadline = self._next_deadline()
        if self.horizon is not None:
            deadline = self.horizon if deadline is None else min(deadline, self.horizon)
        return None if deadline is None else max(0.0, deadline - time.monotonic())

    def host_fd(self) -> int:
        """An fd readable when a host fd some task waits on (or ``wakeup``) is
        ready, for a caller that waits itself; -1 when there is none."""
        if not self._fd_waiters and self._wakeup_r < 0:
            return -1
        return self._selector.fileno()

    def requeue(self, t: Task) -> None:
        """Put a preempted (still runnable) task at the back of the queue."""
        if t.state is State.RUNNABLE:
            t.nivcsw += 1
            self.runq.append(t)
