"""epoll instances (fs/eventpoll.c): interest lists, readiness and nesting.

An ``EpollFile`` is the open description behind an epoll fd. Its interest
list maps (file description, fd number) to an ``Item``, as Linux keys its
epitems: a dup'ed fd is a second key for the same description, and a
registration outlives the closing of its own fd while another fd still
refers to the description. Registrations do not keep a description alive:
when the last fd referring to it closes (an fdtable close hook), it leaves
every epoll set, as eventpoll_release does at __fput.

Readiness is read from each file's ``poll_events()`` (cove.kernel.pollable)
at wait time; nothing is cached between waits.

- Level-triggered items are reported whenever their file is ready.
- Edge-triggered items need "something happened since the last report".
  Linux learns it from a callback on the file's wait queue. cove counts
  instead: every ``WaitQueue.notify()`` bumps the queue's ``gen``, and an
  item remembers the sum of its file's queue generations when it was last
  reported or found not ready; it is reported again only once that sum has
  moved and the file is ready (a new item, or one changed by
  EPOLL_CTL_MOD, starts armed, as ep_insert/ep_modify queue a ready file).
  Limits: a notification carries no event mask here, so one that Linux
  filters by key (a reader draining part of a pipe wakes the writers'
  queue; an EPOLLIN|EPOLLET watcher of the read end then sees a new edge)
  gives an extra report, never a lost one; files whose readiness comes
  from a host fd (host stdio) have no queues to count, so EPOLLET on them
  acts as level-triggered.
- EPOLLONESHOT disables an item after one report until EPOLL_CTL_MOD.
- Report order is the interest list's, with each reported item moved to the
  back (round robin when maxevents is smaller than the ready set); Linux
  orders by the time the file became ready.
- EPOLLEXCLUSIVE is checked as Linux does; cove then wakes every waiter,
  each re-checking (a superset of Linux's wake-one).
"""

from __future__ import annotations

import time
import weakref

from cove.abi import flags as F
from cove.abi.errno import E, Errno
from cove.dataclass import dataclass
from cove.fs.file import O_PATH, O_RDWR, File
from cove.fs.node import Stat
from cove.kernel.eventfd import ANON_INODE_DEV, ANON_INODE_INO
from cove.kernel.fdtable import CLOSE_HOOKS, FdTable
from cove.kernel.pollable import Pollable, events_of, host_of, queues_of
from cove.kernel.wait import WaitQueue

EP_MAX_NESTS = 4  # longest chain of epoll sets inside one another (edges)
EP_PRIVATE_BITS = F.EPOLLWAKEUP | F.EPOLLONESHOT | F.EPOLLET | F.EPOLLEXCLUSIVE
EPOLLEXCLUSIVE_OK_BITS = (F.EPOLLIN | F.EPOLLOUT | F.EPOLLERR | F.EPOLLHUP | F.EPOLLWAKEUP
                          | F.EPOLLET | F.EPOLLEXCLUSIVE)


@dataclass(slots=True, eq=False)
class Item:
    """One registration (Linux's epitem)."""

    file: File
    fd: int
    events: int  # asked-for bits plus EPOLLERR|EPOLLHUP and the private bits
    data: int
    seen: int | None = None  # queue generations at the last report; None: armed


def can_poll(f: File) -> bool:
    """Linux's file_can_poll: regular files, directories and devices without
    a poll method cannot be watched (EPERM)."""
    return getattr(f, "poll_events", None) is not None and not getattr(f, "regular", False)


def _generation(f: File, events: int) -> int | None:
    """The sum of ``f``'s wait-queue generations; None when readiness comes
    from the host and cannot be counted (EPOLLET then acts level-triggered)."""
    if host_of(f, events) is not None:
        return None
    return sum(q.gen for q in queues_of(f))


# The epoll sets each description is registered in, once per registration
# (for close and the nesting checks). Weak both ways, so a sandbox dropped
# without closing its fds leaves nothing behind here.
_watchers: weakref.WeakKeyDictionary[File, list[weakref.ref[EpollFile]]] = (
    weakref.WeakKeyDictionary())


def sets_of(f: File) -> list[EpollFile]:
    """The live epoll sets ``f`` is registered in (with repeats)."""
    return [ep for ref in _watchers.get(f, ()) if (ep := ref()) is not None]


class EpollFile(Pollable, File):
    """The open description behind an epoll fd."""

    def __init__(self) -> None:
        super().__init__(O_RDWR)
        self.items: dict[tuple[int, int], Item] = {}  # (id(file), fd)
        # Notified when the interest list changes, so a sleeping epoll_wait
        # re-scans (it only sleeps on the queues of the files it knew of).
        self.queue = WaitQueue()
        self.ctime_ns = time.time_ns()
        self._scanning = False

    # --- the interest list -------------------------------------------------------
    def add(self, f: File, fd: int, events: int, data: int) -> None:
        key = (id(f), fd)
        if key in self.items:
            raise Errno(E.EEXIST)
        self.items[key] = Item(f, fd, events | F.EPOLLERR | F.EPOLLHUP, data)
        _watchers.setdefault(f, []).append(weakref.ref(self))
        self.queue.notify()

    def modify(self, f: File, fd: int, events: int, data: int) -> None:
        item = self.items.get((id(f), fd))
        if item is None:
            raise Errno(E.ENOENT)
        if item.events & F.EPOLLEXCLUSIVE:
            raise Errno(E.EINVAL)
        item.events = events | F.EPOLLERR | F.EPOLLHUP
        item.data = data
        item.seen = None  # ep_modify re-polls: a ready file is reported again
        self.queue.notify()

    def delete(self, f: File, fd: int) -> None:
        if self.items.pop((id(f), fd), None) is None:
            raise Errno(E.ENOENT)
        self._unwatch(f)
        self.queue.notify()

    def forget(self, f: File) -> None:
        """``f``'s last fd closed: drop every registration of it."""
        for key in [k for k in self.items if k[0] == id(f)]:
            del self.items[key]
        self.queue.notify()

    def _unwatch(self, f: File) -> None:
        refs = _watchers.get(f)
        me = weakref.ref(self)
        if refs is not None and me in refs:
            refs.remove(me)
            if not refs:
                del _watchers[f]

    # --- readiness ---------------------------------------------------------------
    def ready(self, limit: int) -> list[tuple[Item, int, int | None]]:
        """Up to ``limit`` items a wait would report now, as (item, revents,
        generation); nothing is consumed (see ``commit``) except that an
        edge-triggered item found not ready is disarmed, as Linux drops it
        from its ready list."""
        out: list[tuple[Item, int, int | None]] = []
        if self._scanning:  # defensive: ctl refuses loops
            return out
        self._scanning = True
        try:
            for item in list(self.items.values()):
                if len(out) >= limit:
                    break
                wanted = item.events & ~EP_PRIVATE_BITS
                if not wanted:
                    continue  # a EPOLLONESHOT item already reported
                gen = None
                if item.events & F.EPOLLET:
                    gen = _generation(item.file, wanted)
                    if gen is not None and gen == item.seen:
                        continue
                revents = events_of(item.file) & wanted
                if not revents:
                    if gen is not None:
                        item.seen = gen
                    continue
                out.append((item, revents, gen))
        finally:
            self._scanning = False
        return out

    def commit(self, reported: list[tuple[Item, int, int | None]]) -> None:
        """Items whose events reached the caller: EPOLLONESHOT ones are
        disabled, edge-triggered ones wait for a new edge, and all move to
        the back of the list."""
        for item, _, gen in reported:
            if item.events & F.EPOLLONESHOT:
                item.events &= EP_PRIVATE_BITS
            elif item.events & F.EPOLLET:
                item.seen = gen
            key = (id(item.file), item.fd)
            if self.items.get(key) is item:
                del self.items[key]
                self.items[key] = item

    def watched(self) -> tuple[list[WaitQueue], list[tuple[int, int]]]:
        """What a sleeper must watch: the queues of every enabled item (and
        this set's own), and host fds with the events asked of them."""
        queues: list[WaitQueue] = [self.queue]
        hosts: list[tuple[int, int]] = []
        if self._scanning:
            return queues, hosts
        self._scanning = True
        try:
            for item in self.items.values():
                wanted = item.events & ~EP_PRIVATE_BITS
                if not wanted:
                    continue
                queues.extend(queues_of(item.file))
                host = host_of(item.file, wanted)
                if host is not None:
                    hosts.append(host)
        finally:
            self._scanning = False
        return queues, hosts

    # --- as a file (an epoll fd can be polled, and nested) -------------------------
    def poll_events(self) -> int:
        return F.POLLIN | F.POLLRDNORM if self.ready(1) else 0

    def poll_queues(self) -> tuple[WaitQueue, ...]:
        return tuple(self.watched()[0])

    def poll_host(self, events: int) -> tuple[int, int] | None:
        # The scheduler watches one host fd per sleeper: the first one here.
        hosts = self.watched()[1]
        return hosts[0] if hosts else None

    def seek(self, offset: int, whence: int) -> int:
        return 0  # noop_llseek

    def stat(self) -> Stat:
        return Stat(ino=ANON_INODE_INO, mode=0o600, nlink=1, uid=0, gid=0,
                    dev=ANON_INODE_DEV, blksize=4096, atime_ns=self.ctime_ns,
                    mtime_ns=self.ctime_ns, ctime_ns=self.ctime_ns)

    def proc_name(self) -> str:
        return "anon_inode:[eventpoll]"

    def release(self) -> None:
        for item in self.items.values():
            self._unwatch(item.file)
        self.items.clear()


# --- nesting ------------------------------------------------------------------------
def _depth_below(ep: EpollFile, limit: int = EP_MAX_NESTS + 1) -> int:
    """The longest chain of epoll sets nested under ``ep`` (in edges)."""
    if limit <= 0:
        return 0
    return max((1 + _depth_below(i.file, limit - 1) for i in ep.items.values()
                if isinstance(i.file, EpollFile)), default=0)


def _depth_above(ep: EpollFile, limit: int = EP_MAX_NESTS + 1) -> int:
    """The longest chain of epoll sets ``ep`` is nested in (in edges)."""
    if limit <= 0:
        return 0
    return max((1 + _depth_above(up, limit - 1) for up in sets_of(ep)), default=0)


def _reaches(src: EpollFile, target: EpollFile, limit: int = EP_MAX_NESTS + 2) -> bool:
    if src is target:
        return True
    if limit <= 0:
        return False
    return any(_reaches(i.file, target, limit - 1) for i in src.items.values()
               if isinstance(i.file, EpollFile))


def check_nesting(ep: EpollFile, target: EpollFile) -> None:
    """ELOOP when adding ``target`` to ``ep`` would make a cycle or a chain of
    more than EP_MAX_NESTS nested sets (ep_loop_check)."""
    if _reaches(target, ep):
        raise Errno(E.ELOOP)
    if _depth_below(target) + 1 + _depth_above(ep) > EP_MAX_NESTS:
        raise Errno(E.ELOOP)


# --- close --------------------------------------------------------------------------
def _on_close(table: FdTable, f: File) -> None:
    """An fd of ``f`` is closing; if it is the last one, ``f`` leaves every set."""
    if f.fd_refs > 1 or f not in _watchers:
        return
    for ep in set(sets_of(f)):
        ep.forget(f)
    _watchers.pop(f, None)


CLOSE_HOOKS.append(_on_close)


def target_file(t_files: FdTable, fd: int) -> File:
    """The file ``fd`` names for epoll_ctl: EBADF for none or an O_PATH fd."""
    f = t_files.get(fd)
    if f.flags & O_PATH:
        raise Errno(E.EBADF)
    return f
