"""Futex wait queues (kernel/futex/), keyed as Linux keys them:

- a private futex (FUTEX_PRIVATE_FLAG): the address space and the address;
- a shared futex in private memory (anonymous or a private file mapping):
  the same, marked shared (Linux's FUT_OFF_MMSHARED: it never meets a
  private waiter on the same word);
- a shared futex in a MAP_SHARED mapping: the physical frame and offset, so
  processes sharing the page meet on one queue whatever their addresses.

A waiter is queued in FIFO order with its bitset and sleeps with
``Blocked(queue)``. ``wake_key`` sets ``Task.futex_woken`` before waking it,
so the re-run of FUTEX_WAIT knows it was woken (returns 0) rather than
re-comparing. Entries of waiters that timed out or were interrupted are
dropped lazily: a waiter counts only while it still sleeps on that queue.
"""

from __future__ import annotations

from cove.abi.errno import E, Errno
from cove.kernel.mm import USER_TOP
from cove.kernel.physmem import PAGE_MASK
from cove.kernel.task import State
from cove.kernel.wait import WaitQueue

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from cove.kernel.kernel import Kernel
    from cove.kernel.task import Task

FUTEX_BITSET_MATCH_ANY = 0xFFFFFFFF
PRIVATE, MM_SHARED, PHYS_SHARED = 0, 1, 2

Key = tuple[int, int, int]


class FutexQueue(WaitQueue):
    """Waiters in FIFO order with their bitsets; wake picks the first matching ones."""

    __slots__ = ("order",)

    def __init__(self) -> None:
        super().__init__()
        self.order: list[tuple[Task, int]] = []


def key_of(t: Task, addr: int, private: bool) -> Key:
    """The futex key of the u32 at ``addr`` (EINVAL unaligned, EFAULT unmapped;
    a private key is not checked against the map, as Linux only range-checks it)."""
    if addr & 3:
        raise Errno(E.EINVAL)
    if addr >= USER_TOP:
        raise Errno(E.EFAULT)
    if private:
        return (PRIVATE, id(t.mm), addr)
    t.mm.read(addr, 4)  # populate, and EFAULT if unmapped or inaccessible
    vma = t.mm.find(addr)
    if vma is None:
        raise Errno(E.EFAULT)
    if vma.shared is not None:
        frame = vma.shared.frame(vma.pgoff(addr))
        return (PHYS_SHARED, frame, addr & PAGE_MASK)
    return (MM_SHARED, id(t.mm), addr)


def _live(w: Task, q: FutexQueue) -> bool:
    """Still asleep on ``q`` (not timed out, interrupted, or gone)."""
    b = w.blocked_on
    return w.state is State.BLOCKED and b is not None and any(x is q for x in b.queues)


def _cleanup(k: Kernel, key: Key, q: FutexQueue) -> None:
    if not q.order and not q.waiters and k.futexes.get(key) is q:
        del k.futexes[key]


def enqueue(t: Task, key: Key, bitset: int) -> FutexQueue:
    """Queue ``t`` (at the back) on ``key``; the caller then raises Blocked(q)."""
    q = t.kernel.futexes.get(key)
    if q is None:
        q = t.kernel.futexes[key] = FutexQueue()
    q.order = [(w, b) for w, b in q.order if w is not t]
    q.order.append((t, bitset))
    t.futex_woken = False
    return q


def wake_key(k: Kernel, key: Key, n: int, bitset: int = FUTEX_BITSET_MATCH_ANY) -> int:
    """Wake up to ``n`` live waiters whose bitset matches; how many were woken."""
    q = k.futexes.get(key)
    if q is None:
        return 0
    woken = 0
    keep = []
    for w, b in q.order:
        if not _live(w, q):
            continue  # a stale entry: timed out, interrupted, exited
        if woken < n and b & bitset:
            w.futex_woken = True
            k.sched.wake(w)
            woken += 1
        else:
            keep.append((w, b))
    q.order = keep
    _cleanup(k, key, q)
    return woken


def requeue(k: Kernel, key1: Key, key2: Key, nr_wake: int, nr_requeue: int) -> int:
    """Wake ``nr_wake`` waiters of key1 and move up to ``nr_requeue`` more onto
    key2 (they stay asleep there); returns woken + moved, as futex_requeue."""
    q1 = k.futexes.get(key1)
    if q1 is None or q1 is k.futexes.get(key2):
        if q1 is not None:  # same queue: waking is all that can happen
            return wake_key(k, key1, nr_wake)
        return 0
    woken = moved = 0
    keep, move = [], []
    for w, b in q1.order:
        if not _live(w, q1):
            continue
        if woken < nr_wake:
            w.futex_woken = True
            k.sched.wake(w)
            woken += 1
        elif moved < nr_requeue:
            move.append((w, b))
            moved += 1
        else:
            keep.append((w, b))
    q1.order = keep
    if move:
        q2 = k.futexes.get(key2)
        if q2 is None:
            q2 = k.futexes[key2] = FutexQueue()
        for w, b in move:
            blocked = w.blocked_on
            assert blocked is not None
            q1.waiters.discard(w)
            q2.waiters.add(w)
            blocked.queues = tuple(q2 if x is q1 else x for x in blocked.queues)
            q2.order.append((w, b))
    _cleanup(k, key1, q1)
    return woken + moved


def wake(t: Task, addr: int, n: int) -> int:
    """Wake up to ``n`` waiters at ``addr`` under either key kind
    (CLONE_CHILD_CLEARTID at thread exit; a spurious wake is harmless)."""
    woken = 0
    for private in (False, True):
        if woken >= n:
            break
        try:
            woken += wake_key(t.kernel, key_of(t, addr, private), n - woken)
        except Errno:
            pass
    return woken


ROBUST_LIST_LIMIT = 2048
FUTEX_WAITERS = 0x80000000
FUTEX_OWNER_DIED = 0x40000000
FUTEX_TID_MASK = 0x3FFFFFFF


def _death(t: Task, uaddr: int, pi: bool, pending: bool) -> bool:
    """handle_futex_death: a robust lock ``t`` still holds gets OWNER_DIED and
    one waiter is woken. False stops the walk (a fault)."""
    if uaddr & 3:
        return False
    try:
        uval = int.from_bytes(t.mm.read(uaddr, 4), "little")
        owner = uval & FUTEX_TID_MASK
        if pending and not pi and not owner:
            wake(t, uaddr, 1)  # an unlock raced with the exit: pass the wake on
            return True
        if owner != t.tid:
            return True
        t.mm.write(uaddr, ((uval & FUTEX_WAITERS) | FUTEX_OWNER_DIED).to_bytes(4, "little"))
    except Errno:
        return False
    if not pi and uval & FUTEX_WAITERS:
        wake(t, uaddr, 1)
    return True


def exit_robust_list(t: Task) -> None:
    """exit_robust_list: walk the thread's registered robust mutex list (glibc's
    robust and PTHREAD_MUTEX_ROBUST mutexes) when it exits or execs."""
    head = t.robust_list[0]
    if not head:
        return
    t.robust_list = (0, 0)

    def entry(addr: int) -> tuple[int, bool]:
        v = int.from_bytes(t.mm.read(addr, 8), "little")
        return v & ~1, bool(v & 1)

    try:
        cur, pi = entry(head)
        offset = int.from_bytes(t.mm.read(head + 8, 8), "little", signed=True)
        pending, ppi = entry(head + 16)
    except Errno:
        return
    limit = ROBUST_LIST_LIMIT
    while cur != head:
        try:
            nxt, npi = entry(cur)
        except Errno:
            nxt = None
        if cur != pending and not _death(t, (cur + offset) & ((1 << 64) - 1), pi, False):
            return
        if nxt is None:
            return
        cur, pi = nxt, npi
        limit -= 1
        if not limit:
            break
    if pending:
        _death(t, (pending + offset) & ((1 << 64) - 1), ppi, True)
