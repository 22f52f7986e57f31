"""The host fds the scheduler waits on: one epoll set.

Why not ``selectors``: its module and classes cost ~0.9 ms of every start
(``cove restore`` included), for a wrapper whose keys and data the scheduler
never used. The event values are ``selectors``' (``Blocked.host_events``).
"""

from __future__ import annotations

import select

EVENT_READ = 1
EVENT_WRITE = 2

_READ_MASK = select.EPOLLIN
_WRITE_MASK = select.EPOLLOUT


class HostPoll:
    """Which registered fds are ready: ``register``/``unregister`` as
    ``selectors`` (KeyError for a twice-registered or unknown fd; unregistering
    an fd already closed is fine), ``ready`` returns fds."""

    __slots__ = ("_epoll", "_events")

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._events: dict[int, int] = {}

    def register(self, fd: int, events: int) -> None:
        if fd in self._events:
            raise KeyError(f"fd {fd} is already registered")
        mask = (_READ_MASK if events & EVENT_READ else 0) | \
            (_WRITE_MASK if events & EVENT_WRITE else 0)
        self._epoll.register(fd, mask)
        self._events[fd] = events

    def unregister(self, fd: int) -> None:
        del self._events[fd]
        try:
            self._epoll.unregister(fd)
        except OSError:  # closed already: the kernel dropped it from the set
            pass

    def ready(self, timeout: float | None) -> list[int]:
        """The registered fds ready (or in error or hung up) within ``timeout``
        seconds (None: no limit)."""
        if timeout is None:
            wait = -1.0
        elif timeout <= 0:
            wait = 0.0
        else:
            # epoll counts milliseconds: round up, or a wait for a deadline
            # less than 1 ms away returns at once and the caller spins.
            wait = -(-timeout * 1000 // 1) / 1000
        return [fd for fd, _ in self._epoll.poll(wait, max(len(self._events), 1))]

    def fileno(self) -> int:
        return self._epoll.fileno()

    def close(self) -> None:
        self._epoll.close()
