"""Blocking: how a syscall handler sleeps without blocking the sandbox.

A handler that must wait raises ``Blocked`` *before* changing any state. The
scheduler parks the calling task on the given wait queues (and/or a deadline,
and/or a host fd) and runs other tasks; when a queue is notified, the deadline
passes or the host fd is ready, the same handler runs again with the same
arguments, like Linux's restart of an interrupted call. ``on_timeout`` is the
result the syscall returns if the deadline passes first.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from cove.kernel.task import Task


class WaitQueue:
    """Tasks sleeping until something changes (a pipe gets data, a child exits)."""

    __slots__ = ("gen", "waiters")

    def __init__(self) -> None:
        self.waiters: set[Task] = set()
        # Notifications so far: edge-triggered epoll compares it to see
        # whether anything happened since it last reported a file.
        self.gen = 0

    def notify(self) -> None:
        """Wake every waiter; each re-checks its condition when it runs."""
        self.gen += 1
        if self.waiters:
            for t in list(self.waiters):
                t.wake()

    def __bool__(self) -> bool:
        return bool(self.waiters)


class Blocked(Exception):
    """Raised by a handler to sleep; see the module docstring."""

    def __init__(self, *queues: WaitQueue, deadline: float | None = None,
                 on_timeout: int = 0, host_fd: int | None = None,
                 host_events: int = 1, interruptible: bool = True) -> None:
        super().__init__()
        self.queues = queues
        self.deadline = deadline  # time.monotonic() seconds
        self.on_timeout = on_timeout
        self.host_fd = host_fd
        self.host_events = host_events  # hostpoll.EVENT_READ / EVENT_WRITE
        self.interruptible = interruptible


class Restart(Exception):
    """ERESTARTSYS: a signal interrupted a blocked call; the kernel decides
    between -EINTR and restarting once it knows the handler's SA_RESTART."""
