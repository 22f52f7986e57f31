"""epoll_create, epoll_create1, epoll_ctl, epoll_wait, epoll_pwait, epoll_pwait2
(fs/eventpoll.c); the interest lists and readiness rules are in cove.kernel.epoll.

Waiting works as poll does (cove.kernel.syscalls.io_poll): when nothing is
ready the call sleeps on the queues of every enabled item plus the set's own
queue (notified by epoll_ctl, so a registration made by another thread wakes
the sleeper), and is re-run from the start when woken. What Linux keeps on
its stack across the sleep is kept per task (``_Wait``): the deadline, the
epoll description itself (closing the fd during the wait does not end it, as
Linux holds a reference) and whether epoll_pwait's mask was installed. The
temporary mask is put back when the call ends, or by signal delivery after
EINTR (TIF_RESTORE_SIGMASK), as for ppoll.
"""

from __future__ import annotations

import time
import weakref

from cove.abi import flags as F
from cove.abi.errno import E, Errno
from cove.abi.structs.clock import TIMESPEC
from cove.abi.structs.events import EPOLL_EVENT
from cove.dataclass import dataclass
from cove.kernel import signals
from cove.kernel.epoll import (
    EPOLLEXCLUSIVE_OK_BITS,
    EpollFile,
    can_poll,
    check_nesting,
    target_file,
)
from cove.kernel.mm import USER_TOP
from cove.kernel.syscall import INT, PTR, ULONG, syscall
from cove.kernel.syscalls.io_poll import HOST_RECHECK
from cove.kernel.task import Task
from cove.kernel.wait import Blocked, WaitQueue

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from typing import Any

NSEC = 1_000_000_000
SIGSET_SIZE = 8
EVENT_SIZE = EPOLL_EVENT.size  # 12: packed on x86-64
EP_MAX_EVENTS = 0x7FFFFFFF // EVENT_SIZE


@syscall("epoll_create1", INT)
def epoll_create1(t: Task, flags: int) -> int:
    if flags & ~F.EPOLL_CLOEXEC:
        raise Errno(E.EINVAL)
    return t.files.install(EpollFile(), cloexec=bool(flags & F.EPOLL_CLOEXEC))


@syscall("epoll_create", INT)
def epoll_create(t: Task, size: int) -> int:
    if size <= 0:  # ignored since 2.6.8, but must be positive
        raise Errno(E.EINVAL)
    return epoll_create1(t, 0)


@syscall("epoll_ctl", INT, INT, INT, PTR, support="partial",
         note="EPOLLWAKEUP ignored; EPOLLEXCLUSIVE wakes every waiter; EPOLLET may report "
              "extra edges (see cove.kernel.epoll)")
def epoll_ctl(t: Task, epfd: int, op: int, fd: int, event: int) -> int:
    events = data = 0
    has_event = op != F.EPOLL_CTL_DEL
    if has_event:
        events, data = EPOLL_EVENT.unpack_from(t.mm.read(event, EVENT_SIZE))
    ep = target_file(t.files, epfd)
    tf = target_file(t.files, fd)
    if not can_poll(tf):
        raise Errno(E.EPERM)
    if has_event:
        events &= ~F.EPOLLWAKEUP  # no suspend to block in a sandbox
    if tf is ep or not isinstance(ep, EpollFile):
        raise Errno(E.EINVAL)
    if has_event and events & F.EPOLLEXCLUSIVE:
        if op == F.EPOLL_CTL_MOD:
            raise Errno(E.EINVAL)
        if op == F.EPOLL_CTL_ADD and (isinstance(tf, EpollFile)
                                      or events & ~EPOLLEXCLUSIVE_OK_BITS):
            raise Errno(E.EINVAL)
    if op == F.EPOLL_CTL_ADD:
        if isinstance(tf, EpollFile):
            check_nesting(ep, tf)
        ep.add(tf, fd, events, data)
    elif op == F.EPOLL_CTL_DEL:
        ep.delete(tf, fd)
    elif op == F.EPOLL_CTL_MOD:
        ep.modify(tf, fd, events, data)
    else:
        raise Errno(E.EINVAL)
    return 0


# --- waiting ---------------------------------------------------------------------
@dataclass(slots=True)
class _Wait:
    key: tuple[Any, ...]  # the call and its arguments
    ep: EpollFile
    deadline: float | None  # time.monotonic(); None waits forever; 0.0 never sleeps
    swapped_mask: bool = False


_waits: weakref.WeakKeyDictionary[Task, _Wait] = weakref.WeakKeyDictionary()


def _resumed(t: Task, key: tuple[Any, ...]) -> _Wait | None:
    w = _waits.get(t)
    if w is not None and t.blocked_call is not None and w.key == key:
        return w
    return None


def _read_sigmask(t: Task, addr: int, size: int) -> int | None:
    """set_user_sigmask's checks: EINVAL for a wrong size, EFAULT."""
    if not addr:
        return None
    if size != SIGSET_SIZE:
        raise Errno(E.EINVAL)
    return int.from_bytes(t.mm.read(addr, SIGSET_SIZE), "little")


def _restore_mask(t: Task, w: _Wait) -> None:
    _waits.pop(t, None)
    if w.swapped_mask and t.saved_sigmask is not None:
        t.sigmask, t.saved_sigmask = t.saved_sigmask, None


def _copy_out(t: Task, addr: int, found: list[tuple[Any, int, int | None]]) -> int:
    """Write the events; how many reached the caller. A fault on the first
    is EFAULT, a later one ends the list there (ep_send_events)."""
    raw = b"".join(EPOLL_EVENT.pack(revents, item.data) for item, revents, _ in found)
    try:
        t.mm.write(addr, raw)
        return len(found)
    except Errno:
        pass
    for i in range(len(found)):
        try:
            t.mm.write(addr + i * EVENT_SIZE, raw[i * EVENT_SIZE:(i + 1) * EVENT_SIZE])
        except Errno:
            if i == 0:
                raise
            return i
    return len(found)


def _do_wait(t: Task, key: tuple[Any, ...], epfd: int, events: int, maxevents: int,
             deadline: float | None, mask: int | None) -> int:
    w = _resumed(t, key)
    resumed = w is not None
    if w is None:
        if maxevents <= 0 or maxevents > EP_MAX_EVENTS:
            raise Errno(E.EINVAL)
        if events + maxevents * EVENT_SIZE > USER_TOP:  # access_ok
            raise Errno(E.EFAULT)
        ep = t.files.get(epfd)
        if not isinstance(ep, EpollFile):
            raise Errno(E.EINVAL)
        w = _Wait(key, ep, deadline)
    found = w.ep.ready(maxevents)
    if found:
        try:
            n = _copy_out(t, events, found)
        finally:
            _restore_mask(t, w)
        w.ep.commit(found[:n])
        return n
    if w.deadline is not None and time.monotonic() >= w.deadline:
        _restore_mask(t, w)
        return 0
    if not resumed and mask is not None:
        # epoll_pwait's mask for the sleep; a pending signal it unblocks ends
        # the call with EINTR at once (delivered with the old mask saved).
        t.saved_sigmask = t.sigmask
        t.sigmask = mask & ~signals.UNBLOCKABLE
        w.swapped_mask = True
        if signals.has_deliverable(t):
            _waits.pop(t, None)
            raise Errno(E.EINTR)
    queues, hosts = w.ep.watched()
    _waits[t] = w
    return _sleep(t, w, queues, hosts)


def _sleep(t: Task, w: _Wait, queues: list[WaitQueue], hosts: list[tuple[int, int]]) -> int:
    if not hosts:
        raise Blocked(*queues, deadline=w.deadline, on_timeout=0)
    if len(hosts) > 1:
        # The scheduler watches one host fd per sleeper: look at the others
        # again every HOST_RECHECK seconds.
        tick = WaitQueue()
        t.kernel.sched.call_at(time.monotonic() + HOST_RECHECK, tick.notify)
        queues = [*queues, tick]
    fd, ev = hosts[0]
    raise Blocked(*queues, deadline=w.deadline, on_timeout=0, host_fd=fd, host_events=ev)


def _ms_deadline(timeout_ms: int) -> float | None:
    if timeout_ms < 0:
        return None
    if timeout_ms == 0:
        return 0.0  # one look, no sleep
    return time.monotonic() + timeout_ms / 1000


@syscall("epoll_wait", INT, PTR, INT, INT, restartable=False)
def epoll_wait(t: Task, epfd: int, events: int, maxevents: int, timeout_ms: int) -> int:
    key = ("epoll_wait", epfd, events, maxevents, timeout_ms)
    return _do_wait(t, key, epfd, events, maxevents, _ms_deadline(timeout_ms), None)


@syscall("epoll_pwait", INT, PTR, INT, INT, PTR, ULONG, restartable=False)
def epoll_pwait(t: Task, epfd: int, events: int, maxevents: int, timeout_ms: int,
                sigmask: int, sigsetsize: int) -> int:
    key = ("epoll_pwait", epfd, events, maxevents, timeout_ms, sigmask, sigsetsize)
    if _resumed(t, key):
        return _do_wait(t, key, epfd, events, maxevents, None, None)
    mask = _read_sigmask(t, sigmask, sigsetsize)
    return _do_wait(t, key, epfd, events, maxevents, _ms_deadline(timeout_ms), mask)


@syscall("epoll_pwait2", INT, PTR, INT, PTR, PTR, ULONG, restartable=False)
def epoll_pwait2(t: Task, epfd: int, events: int, maxevents: int, timeout: int,
                 sigmask: int, sigsetsize: int) -> int:
    key = ("epoll_pwait2", epfd, events, maxevents, timeout, sigmask, sigsetsize)
    if _resumed(t, key):
        return _do_wait(t, key, epfd, events, maxevents, None, None)
    deadline = None
    if timeout:
        sec, nsec = TIMESPEC.unpack_from(t.mm.read(timeout, TIMESPEC.size))
        if sec < 0 or not 0 <= nsec < NSEC:
            raise Errno(E.EINVAL)
        deadline = 0.0 if sec == 0 and nsec == 0 else time.monotonic() + sec + nsec / NSEC
    mask = _read_sigmask(t, sigmask, sigsetsize)
    return _do_wait(t, key, epfd, events, maxevents, deadline, mask)
