"""poll, ppoll, select, pselect6 (fs/select.c).

Readiness comes from each file's ``poll_events()`` (see cove.kernel.pollable);
when nothing is ready the call sleeps on every file's ``poll_queues()`` (and
host fds, for host stdio) until its deadline.

A blocked call is re-run from the start when woken, so what Linux keeps on
its stack across the sleep is kept here per task (``_Wait``): the absolute
deadline, select's input sets (read once, as Linux does) and whether ppoll /
pselect6 installed a temporary signal mask. When the deadline passes the
scheduler returns 0 without re-running the handler, so before sleeping the
handler leaves guest memory as a timeout leaves it: revents 0, select's sets
empty, the remaining time 0 (an interrupted call puts the sets back and
writes the time not slept, from ``on_interrupt``). A temporary signal mask
is put back by signal delivery on the way out, as Linux's
TIF_RESTORE_SIGMASK does.
"""

from __future__ import annotations

import time
import weakref

from cove.abi import flags as F
from cove.abi.errno import E, Errno
from cove.abi.structs.clock import TIMESPEC, TIMEVAL
from cove.abi.structs.events import POLLFD
from cove.dataclass import dataclass
from cove.fs.file import O_PATH
from cove.kernel import signals
from cove.kernel.pollable import POLLEX_SET, POLLIN_SET, POLLOUT_SET, events_of, host_of, queues_of
from cove.kernel.syscall import INT, PTR, UINT, ULONG, syscall
from cove.kernel.task import Task
from cove.kernel.wait import Blocked, WaitQueue

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from typing import Any

NSEC = 1_000_000_000
HOST_RECHECK = 0.02  # seconds between looks at a second host fd (see _sleep)
SIGSET_SIZE = 8


@dataclass(slots=True)
class _Wait:
    key: tuple[Any, ...]  # the call and its arguments
    deadline: float | None  # time.monotonic(); None waits forever
    sets: tuple[int, int, int] = (0, 0, 0)  # select's input fd sets
    swapped_mask: bool = False


_waits: weakref.WeakKeyDictionary[Task, _Wait] = weakref.WeakKeyDictionary()


def _resumed(t: Task, key: tuple[Any, ...]) -> _Wait | None:
    """This call's saved state if it is the re-run of a blocked call."""
    w = _waits.get(t)
    if w is not None and t.blocked_call is not None and w.key == key:
        return w
    return None


def _nofile(t: Task) -> int:
    lim = t.proc.rlimits.get(F.RLIMIT_NOFILE)
    return t.files.limit if lim is None else lim[0]


def _deadline(sec: int, nsec: int) -> float:
    return time.monotonic() + sec + nsec / NSEC


def _read_timespec(t: Task, addr: int) -> float:
    """A relative timeout as a deadline; 0.0 (already past) for a zero timeout."""
    sec, nsec = TIMESPEC.unpack_from(t.mm.read(addr, TIMESPEC.size))
    if sec < 0 or not 0 <= nsec < NSEC:
        raise Errno(E.EINVAL)
    return 0.0 if sec == 0 and nsec == 0 else _deadline(sec, nsec)


def _read_sigmask(t: Task, addr: int, size: int) -> int:
    if size != SIGSET_SIZE:
        raise Errno(E.EINVAL)
    return int.from_bytes(t.mm.read(addr, SIGSET_SIZE), "little")


def _write_remaining(t: Task, addr: int, deadline: float | None, layout: Any,
                     unit: int) -> None:
    """Linux's update of the caller's timeout to the time not slept; a write
    fault is ignored (the call already succeeded)."""
    if not addr or deadline is None:
        return
    left = max(0.0, deadline - time.monotonic())
    sec = int(left)
    try:
        t.mm.write(addr, layout.pack(sec, int((left - sec) * unit)))
    except Errno:
        pass


def _swap_mask(t: Task, w: _Wait, mask: int | None) -> None:
    """Install ppoll/pselect6's mask for the sleep; EINTR if that unblocks a
    pending signal (which is then delivered with the old mask saved)."""
    if mask is None:
        return
    t.saved_sigmask = t.sigmask
    t.sigmask = mask & ~signals.UNBLOCKABLE
    w.swapped_mask = True
    if signals.has_deliverable(t):
        raise Errno(E.EINTR)


def _finish(t: Task, w: _Wait | None) -> None:
    if w is not None:
        _waits.pop(t, None)
        if w.swapped_mask and t.saved_sigmask is not None:
            t.sigmask = t.saved_sigmask
            t.saved_sigmask = None


def _sleep(t: Task, w: _Wait, queues: list[WaitQueue], hosts: list[tuple[int, int]]) -> Blocked:
    _waits[t] = w
    if not hosts:
        return Blocked(*queues, deadline=w.deadline, on_timeout=0)
    if len(hosts) > 1:
        # The scheduler watches one host fd per sleeper: look at the others
        # again every HOST_RECHECK seconds.
        tick = WaitQueue()
        t.kernel.sched.call_at(time.monotonic() + HOST_RECHECK, tick.notify)
        queues = [*queues, tick]
    fd, events = hosts[0]
    return Blocked(*queues, deadline=w.deadline, on_timeout=0, host_fd=fd, host_events=events)


# --- poll ----------------------------------------------------------------------
def _do_poll(t: Task, key: tuple[Any, ...], ufds: int, nfds: int, deadline: float | None,
             mask: int | None, tsp: int = 0) -> int:
    w = _resumed(t, key)
    if w is None:
        if nfds > _nofile(t):
            raise Errno(E.EINVAL)
        w = _Wait(key, deadline)
    raw = bytearray(t.mm.read(ufds, nfds * POLLFD.size))
    count = 0
    queues: list[WaitQueue] = []
    hosts: list[tuple[int, int]] = []
    files = t.files.files
    for i in range(nfds):
        off = i * POLLFD.size
        fd, events, _ = POLLFD.unpack_from(raw, off)
        events &= 0xFFFF
        revents = 0
        if fd >= 0:
            f = files.get(fd)
            if f is None or f.flags & O_PATH:
                revents = F.POLLNVAL
            else:
                revents = events_of(f) & (events | F.POLLERR | F.POLLHUP)
                if not revents:
                    queues.extend(queues_of(f))
                    host = host_of(f, events)
                    if host is not None:
                        hosts.append(host)
        POLLFD.pack_into(raw, off, fd, events - 0x10000 if events & 0x8000 else events, revents)
        if revents:
            count += 1
    now_over = w.deadline is not None and time.monotonic() >= w.deadline
    if count or now_over:
        _finish(t, w)
        t.mm.write(ufds, raw)
        if tsp and deadline != 0:
            _write_remaining(t, tsp, w.deadline, TIMESPEC, NSEC)
        return count
    # What a timeout (or EINTR) leaves behind: the scheduler will not re-run us then.
    t.mm.write(ufds, raw)
    if not _resumed(t, key):
        _swap_mask(t, w, mask)
    if tsp:
        _write_remaining(t, tsp, time.monotonic(), TIMESPEC, NSEC)
    raise _sleep(t, w, queues, hosts)


@syscall("poll", PTR, UINT, INT, restartable=False)
def poll(t: Task, ufds: int, nfds: int, timeout_ms: int) -> int:
    key = ("poll", ufds, nfds, timeout_ms)
    deadline = None if timeout_ms < 0 else time.monotonic() + timeout_ms / 1000
    if timeout_ms == 0:
        deadline = 0.0  # already over: one pass, no sleep
    return _do_poll(t, key, ufds, nfds, deadline, None)


def _ppoll_interrupted(t: Task, ufds: int, nfds: int, tsp: int, sigmask: int,
                      sigsetsize: int) -> None:
    """EINTR: the caller's timespec gets the time not slept."""
    w = _waits.pop(t, None)
    if w is not None and w.key == ("ppoll", ufds, nfds, tsp, sigmask, sigsetsize):
        _write_remaining(t, tsp, w.deadline, TIMESPEC, NSEC)


@syscall("ppoll", PTR, UINT, PTR, PTR, ULONG, restartable=False,
         on_interrupt=_ppoll_interrupted)
def ppoll(t: Task, ufds: int, nfds: int, tsp: int, sigmask: int, sigsetsize: int) -> int:
    key = ("ppoll", ufds, nfds, tsp, sigmask, sigsetsize)
    if _resumed(t, key):
        return _do_poll(t, key, ufds, nfds, None, None, tsp)
    deadline = None
    if tsp:
        deadline = _read_timespec(t, tsp)
    mask = _read_sigmask(t, sigmask, sigsetsize) if sigmask else None
    return _do_poll(t, key, ufds, nfds, deadline, mask, tsp)


# --- select --------------------------------------------------------------------
def _fds_bytes(n: int) -> int:
    return (n + 63) // 64 * 8


def _get_set(t: Task, addr: int, nbytes: int) -> int:
    return int.from_bytes(t.mm.read(addr, nbytes), "little") if addr else 0


def _do_select(t: Task, key: tuple[Any, ...], n: int, ptrs: tuple[int, int, int],
               deadline: float | None, mask: int | None, tp: int, layout: Any,
               unit: int) -> int:
    w = _resumed(t, key)
    resumed = w is not None
    if w is None:
        if n < 0:
            raise Errno(E.EINVAL)
        n = min(n, t.files.limit)
        nbytes = _fds_bytes(n)
        sets = tuple(_get_set(t, p, nbytes) for p in ptrs)
        limit_bits = (1 << n) - 1
        sets = (sets[0] & limit_bits, sets[1] & limit_bits, sets[2] & limit_bits)
        w = _Wait(key, deadline, sets)  # type: ignore[arg-type]
    else:
        n = min(n, t.files.limit)
        nbytes = _fds_bytes(n)
    rin, rout, rex = w.sets
    files = t.files.files
    res = [0, 0, 0]
    count = 0
    queues: list[WaitQueue] = []
    hosts: list[tuple[int, int]] = []
    wanted = rin | rout | rex
    while wanted:
        low = wanted & -wanted
        fd = low.bit_length() - 1
        wanted ^= low
        f = files.get(fd)
        if f is None:
            if resumed:
                continue  # closed while we slept: POLLNVAL, never ready (as Linux)
            raise Errno(E.EBADF)
        if f.flags & O_PATH:
            continue  # POLLNVAL: never ready
        ev = events_of(f)
        hit = False
        if rin & low and ev & POLLIN_SET:
            res[0] |= low
            count += 1
            hit = True
        if rout & low and ev & POLLOUT_SET:
            res[1] |= low
            count += 1
            hit = True
        if rex & low and ev & POLLEX_SET:
            res[2] |= low
            count += 1
            hit = True
        if not hit:
            queues.extend(queues_of(f))
            asked = (F.POLLIN if rin & low else 0) | (F.POLLOUT if rout & low else 0)
            host = host_of(f, asked)
            if host is not None:
                hosts.append(host)
    now_over = w.deadline is not None and time.monotonic() >= w.deadline
    if count or now_over:
        _finish(t, w)
        for p, bits in zip(ptrs, res, strict=True):
            if p:
                t.mm.write(p, bits.to_bytes(nbytes, "little"))
        if deadline != 0:
            _write_remaining(t, tp, w.deadline, layout, unit)
        return count
    if not resumed:
        _swap_mask(t, w, mask)
    for p in ptrs:
        if p:
            t.mm.write(p, bytes(nbytes))
    _write_remaining(t, tp, time.monotonic(), layout, unit)
    raise _sleep(t, w, queues, hosts)


def _select_interrupted(t: Task, key: tuple[Any, ...], n: int, ptrs: tuple[int, int, int],
                        tp: int, layout: Any, unit: int) -> None:
    """EINTR: Linux leaves the sets as they were given (we emptied them for a
    timeout; put them back) and updates the timeout to the time not slept."""
    w = _waits.pop(t, None)
    if w is None or w.key != key:
        return
    nbytes = _fds_bytes(min(n, t.files.limit))
    for p, bits in zip(ptrs, w.sets, strict=True):
        if p:
            try:
                t.mm.write(p, bits.to_bytes(nbytes, "little"))
            except Errno:
                pass
    _write_remaining(t, tp, w.deadline, layout, unit)


def _select_eintr(t: Task, n: int, inp: int, outp: int, exp: int, tvp: int) -> None:
    _select_interrupted(t, ("select", n, inp, outp, exp, tvp), n, (inp, outp, exp), tvp,
                        TIMEVAL, 1_000_000)


def _pselect_eintr(t: Task, n: int, inp: int, outp: int, exp: int, tsp: int, sig: int) -> None:
    _select_interrupted(t, ("pselect6", n, inp, outp, exp, tsp, sig), n, (inp, outp, exp), tsp,
                        TIMESPEC, NSEC)


@syscall("select", INT, PTR, PTR, PTR, PTR, restartable=False, on_interrupt=_select_eintr)
def select(t: Task, n: int, inp: int, outp: int, exp: int, tvp: int) -> int:
    key = ("select", n, inp, outp, exp, tvp)
    deadline = None
    if tvp and not _resumed(t, key):
        sec, usec = TIMEVAL.unpack_from(t.mm.read(tvp, TIMEVAL.size))
        # Linux normalises tv_usec ≥ 1e6 into seconds; negatives are EINVAL.
        sec += int(usec / 1_000_000)
        nsec = int(_c_rem(usec, 1_000_000) * 1000)
        if sec < 0 or nsec < 0:
            raise Errno(E.EINVAL)
        deadline = 0.0 if sec == 0 and nsec == 0 else _deadline(sec, nsec)
    return _do_select(t, key, n, (inp, outp, exp), deadline, None, tvp, TIMEVAL, 1_000_000)


def _c_rem(a: int, b: int) -> int:
    """C's % (the sign follows the dividend)."""
    r = abs(a) % b
    return -r if a < 0 else r


@syscall("pselect6", INT, PTR, PTR, PTR, PTR, PTR, restartable=False,
         on_interrupt=_pselect_eintr)
def pselect6(t: Task, n: int, inp: int, outp: int, exp: int, tsp: int, sig: int) -> int:
    key = ("pselect6", n, inp, outp, exp, tsp, sig)
    if _resumed(t, key):
        return _do_select(t, key, n, (inp, outp, exp), None, None, tsp, TIMESPEC, NSEC)
    deadline = _read_timespec(t, tsp) if tsp else None
    mask = None
    if sig:
        # struct { const sigset_t *ss; size_t ss_len; }
        raw = t.mm.read(sig, 16)
        ss, ss_len = int.from_bytes(raw[:8], "little"), int.from_bytes(raw[8:], "little")
        if ss:
            mask = _read_sigmask(t, ss, ss_len)
    return _do_select(t, key, n, (inp, outp, exp), deadline, mask, tsp, TIMESPEC, NSEC)
