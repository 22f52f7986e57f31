"""Readiness of open files, for poll, select and epoll.

A file that can make a caller wait (pipes, eventfds, host stdio, sockets)
implements three methods:

- ``poll_events()``: the POLL* bits true *now* (POLLIN, POLLOUT, POLLHUP,
  POLLERR, ...), computed without side effects;
- ``poll_queues()``: the wait queues notified whenever those bits may change;
- ``poll_host(events)``: ``(host_fd, hostpoll events)`` when readiness for
  the POLL* ``events`` asked for depends on a host fd the scheduler must
  watch, else None.

Files without them (regular files, directories, devices) are always ready, as
Linux's DEFAULT_POLLMASK says. ``Pollable`` supplies those defaults plus an
``ioctl`` that answers ENOTTY, for cove's own File subclasses to mix in.
"""

from __future__ import annotations

from cove.abi import flags as F
from cove.abi.errno import E, Errno

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from cove.fs.file import File
    from cove.kernel.task import Task
    from cove.kernel.wait import WaitQueue

DEFAULT_POLLMASK = F.POLLIN | F.POLLOUT | F.POLLRDNORM | F.POLLWRNORM

# What select(2) counts as readable / writable / exceptional (fs/select.c).
POLLIN_SET = F.POLLRDNORM | F.POLLRDBAND | F.POLLIN | F.POLLHUP | F.POLLERR
POLLOUT_SET = F.POLLWRBAND | F.POLLWRNORM | F.POLLOUT | F.POLLERR
POLLEX_SET = F.POLLPRI


class Pollable:
    """Defaults for cove's own file kinds: always ready, no ioctls."""

    def poll_events(self) -> int:
        return DEFAULT_POLLMASK

    def poll_queues(self) -> tuple[WaitQueue, ...]:
        return ()

    def poll_host(self, events: int) -> tuple[int, int] | None:
        return None

    def ioctl(self, t: Task, cmd: int, arg: int) -> int:
        raise Errno(E.ENOTTY)


def events_of(f: File) -> int:
    fn = getattr(f, "poll_events", None)
    return DEFAULT_POLLMASK if fn is None else int(fn())


def queues_of(f: File) -> tuple[WaitQueue, ...]:
    fn = getattr(f, "poll_queues", None)
    return () if fn is None else tuple(fn())


def host_of(f: File, events: int) -> tuple[int, int] | None:
    fn = getattr(f, "poll_host", None)
    return None if fn is None else fn(events)
