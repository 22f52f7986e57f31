"""Futex wait queues, keyed as Linux keys them: (address space, address) for
private futexes, the physical address for shared ones (so processes sharing a
MAP_SHARED page meet on the same queue)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cove.abi.errno import E, Errno
from cove.kernel.physmem import PAGE_MASK, PAGE_SHIFT
from cove.kernel.wait import WaitQueue

if TYPE_CHECKING:
    from cove.kernel.task import Task

FUTEX_BITSET_MATCH_ANY = 0xFFFFFFFF


class FutexQueue(WaitQueue):
    """Waiters in FIFO order with their bitsets; wake picks the first matching ones."""

    __slots__ = ("order",)

    def __init__(self) -> None:
        super().__init__()
        self.order: list[tuple[Task, int]] = []


def key_of(t: Task, addr: int, private: bool) -> tuple[int, int]:
    if addr & 3:
        raise Errno(E.EINVAL)
    if private:
        return (id(t.mm), addr)
    t.mm.read(addr, 4)  # populate, and EFAULT if unmapped
    frame = t.mm.frames.get(addr >> PAGE_SHIFT)
    if frame is None:
        raise Errno(E.EFAULT)
    return (-1, (frame << PAGE_SHIFT) | (addr & PAGE_MASK))


def queue(t: Task, key: tuple[int, int]) -> FutexQueue:
    q = t.kernel.futexes.get(key)
    if q is None:
        q = t.kernel.futexes[key] = FutexQueue()
    return q


def enqueue(t: Task, key: tuple[int, int], bitset: int) -> FutexQueue:
    q = queue(t, key)
    if not any(w is t for w, _ in q.order):
        q.order.append((t, bitset))
    return q


def dequeue(t: Task, key: tuple[int, int]) -> None:
    q = t.kernel.futexes.get(key)
    if q is not None:
        q.order = [(w, b) for w, b in q.order if w is not t]
        if not q.order and not q.waiters:
            t.kernel.futexes.pop(key, None)


def wake_key(t: Task, key: tuple[int, int], n: int, bitset: int = FUTEX_BITSET_MATCH_ANY) -> int:
    q = t.kernel.futexes.get(key)
    if q is None:
        return 0
    woken = 0
    keep = []
    for w, b in q.order:
        if woken < n and b & bitset:
            w.futex_woken = True
            w.wake()
            woken += 1
        else:
            keep.append((w, b))
    q.order = keep
    if not q.order:
        t.kernel.futexes.pop(key, None)
    return woken


def wake(t: Task, addr: int, n: int) -> int:
    """Wake up to ``n`` waiters at ``addr`` (private and shared keys alike)."""
    woken = wake_key(t, key_of(t, addr, True), n)
    if woken < n:
        try:
            woken += wake_key(t, key_of(t, addr, False), n - woken)
        except Errno:
            pass
    return woken
