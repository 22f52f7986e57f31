"""futex(2): WAIT, WAKE, WAIT_BITSET, WAKE_BITSET, REQUEUE, CMP_REQUEUE,
WAKE_OP, with FUTEX_PRIVATE_FLAG and FUTEX_CLOCK_REALTIME (kernel/futex/).

Also the futex2 calls futex_wake, futex_wait and futex_requeue on 32-bit
words. Priority-inheritance futexes (LOCK_PI, UNLOCK_PI, TRYLOCK_PI,
LOCK_PI2, WAIT_REQUEUE_PI, CMP_REQUEUE_PI) and futex_waitv are not offered:
ENOSYS (glibc uses PI futexes only for PTHREAD_PRIO_INHERIT mutexes).
"""

from __future__ import annotations

import struct
import time
from weakref import WeakKeyDictionary

from cove.abi import flags as F
from cove.abi.errno import E, Errno
from cove.kernel import futex
from cove.kernel.syscall import INT, PTR, UINT, ULONG, enosys, syscall
from cove.kernel.syscalls.time import NSEC, deadline, read_timespec
from cove.kernel.wait import Blocked

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from cove.kernel.task import Task

_U32 = struct.Struct("<I")
_PI_OPS = {F.FUTEX_LOCK_PI, F.FUTEX_UNLOCK_PI, F.FUTEX_TRYLOCK_PI, F.FUTEX_LOCK_PI2,
           F.FUTEX_WAIT_REQUEUE_PI, F.FUTEX_CMP_REQUEUE_PI}
_HAS_TIMEOUT = {F.FUTEX_WAIT, F.FUTEX_WAIT_BITSET, F.FUTEX_LOCK_PI, F.FUTEX_LOCK_PI2,
                F.FUTEX_WAIT_REQUEUE_PI}
_CLOCKRT_OK = {F.FUTEX_WAIT_BITSET, F.FUTEX_WAIT_REQUEUE_PI, F.FUTEX_LOCK_PI2}
INT_MAX = 0x7FFFFFFF

# FUTEX_WAIT's relative timeout, fixed at the first run (a re-run keeps it).
_deadlines: WeakKeyDictionary[Task, float] = WeakKeyDictionary()


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def _get_u32(t: Task, addr: int) -> int:
    return int(_U32.unpack(t.mm.read(addr, 4))[0])


def _wait(t: Task, uaddr: int, val: int, end: float | None, bitset: int, private: bool) -> int:
    if t.blocked_call is not None and t.futex_woken:
        t.futex_woken = False  # the re-run after FUTEX_WAKE: done
        _deadlines.pop(t, None)
        return 0
    if not bitset:
        raise Errno(E.EINVAL)
    key = futex.key_of(t, uaddr, private)
    if _get_u32(t, uaddr) != val:
        _deadlines.pop(t, None)
        raise Errno(E.EAGAIN)
    if end is not None and time.monotonic() >= end:
        _deadlines.pop(t, None)
        raise Errno(E.ETIMEDOUT)
    q = futex.enqueue(t, key, bitset)
    raise Blocked(q, deadline=end, on_timeout=-E.ETIMEDOUT)


_OPS = {
    F.FUTEX_OP_SET: lambda old, arg: arg,
    F.FUTEX_OP_ADD: lambda old, arg: old + arg,
    F.FUTEX_OP_OR: lambda old, arg: old | arg,
    F.FUTEX_OP_ANDN: lambda old, arg: old & ~arg,
    F.FUTEX_OP_XOR: lambda old, arg: old ^ arg,
}
_CMPS = {
    F.FUTEX_OP_CMP_EQ: lambda a, b: a == b,
    F.FUTEX_OP_CMP_NE: lambda a, b: a != b,
    F.FUTEX_OP_CMP_LT: lambda a, b: a < b,
    F.FUTEX_OP_CMP_LE: lambda a, b: a <= b,
    F.FUTEX_OP_CMP_GT: lambda a, b: a > b,
    F.FUTEX_OP_CMP_GE: lambda a, b: a >= b,
}


def _sext12(v: int) -> int:
    return v - 0x1000 if v & 0x800 else v


def _atomic_op(t: Task, uaddr2: int, encoded: int) -> bool:
    """futex_atomic_op_inuser: *uaddr2 = op(old, oparg); then cmp(old, cmparg).
    An unknown op is ENOSYS before the write, an unknown cmp after it."""
    op = (encoded >> 28) & 7
    cmp = (encoded >> 24) & 15
    oparg = _sext12((encoded >> 12) & 0xFFF)
    cmparg = _sext12(encoded & 0xFFF)
    if encoded & (F.FUTEX_OP_OPARG_SHIFT << 28):
        oparg = _s32(1 << (oparg & 31))
    fn = _OPS.get(op)
    if fn is None:
        raise Errno(E.ENOSYS)
    old = _s32(_get_u32(t, uaddr2))
    t.mm.write(uaddr2, _U32.pack(fn(old, oparg) & 0xFFFFFFFF))
    test = _CMPS.get(cmp)
    if test is None:
        raise Errno(E.ENOSYS)
    return bool(test(old, cmparg))


@syscall("futex", PTR, INT, UINT, PTR, PTR, UINT, support="partial",
         note="no priority-inheritance (PI) operations: ENOSYS")
def futex_(t: Task, uaddr: int, op: int, val: int, utime: int, uaddr2: int, val3: int) -> int:
    cmd = op & F.FUTEX_CMD_MASK
    private = bool(op & F.FUTEX_PRIVATE_FLAG)
    end: float | None = None
    if cmd in _HAS_TIMEOUT and utime:
        if cmd == F.FUTEX_WAIT:
            # Relative: the deadline is fixed at the first run, kept by re-runs.
            end = _deadlines.get(t) if t.blocked_call is not None else None
            if end is None:
                end = _deadlines[t] = time.monotonic() + read_timespec(t, utime) / NSEC
        else:
            clock = F.CLOCK_REALTIME if op & F.FUTEX_CLOCK_REALTIME else F.CLOCK_MONOTONIC
            end = deadline(t, clock, read_timespec(t, utime), True)
    if op & F.FUTEX_CLOCK_REALTIME and cmd not in _CLOCKRT_OK:
        raise Errno(E.ENOSYS)
    nr2 = _s32(utime)  # val2 for the calls without a timeout
    if cmd == F.FUTEX_WAIT:
        return _wait(t, uaddr, val, end, futex.FUTEX_BITSET_MATCH_ANY, private)
    if cmd == F.FUTEX_WAIT_BITSET:
        return _wait(t, uaddr, val, end, val3, private)
    if cmd in (F.FUTEX_WAKE, F.FUTEX_WAKE_BITSET):
        bitset = futex.FUTEX_BITSET_MATCH_ANY if cmd == F.FUTEX_WAKE else val3
        if not bitset:
            raise Errno(E.EINVAL)
        key = futex.key_of(t, uaddr, private)
        # Linux wakes at least one waiter even for val <= 0.
        return futex.wake_key(t.kernel, key, max(_s32(val), 1), bitset)
    if cmd in (F.FUTEX_REQUEUE, F.FUTEX_CMP_REQUEUE):
        nr_wake = _s32(val)
        if nr_wake < 0 or nr2 < 0:
            raise Errno(E.EINVAL)
        key1 = futex.key_of(t, uaddr, private)
        key2 = futex.key_of(t, uaddr2, private)
        if cmd == F.FUTEX_CMP_REQUEUE and _get_u32(t, uaddr) != val3:
            raise Errno(E.EAGAIN)
        return futex.requeue(t.kernel, key1, key2, nr_wake, nr2)
    if cmd == F.FUTEX_WAKE_OP:
        key1 = futex.key_of(t, uaddr, private)
        key2 = futex.key_of(t, uaddr2, private)
        hit = _atomic_op(t, uaddr2, val3)
        woken = futex.wake_key(t.kernel, key1, max(_s32(val), 1))
        if hit:
            woken += futex.wake_key(t.kernel, key2, max(nr2, 1))
        return woken
    # FUTEX_FD (gone since 2.6.26), the PI family, and unknown commands.
    raise Errno(E.ENOSYS)


# --- futex2: futex_wake, futex_wait, futex_requeue (Linux 6.7) ---------------------
FUTEX2_SIZE_MASK = 3
FUTEX2_NUMA = 4
FUTEX2_MPOL = 8
FUTEX2_PRIVATE = F.FUTEX_PRIVATE_FLAG
FUTEX2_VALID = FUTEX2_SIZE_MASK | FUTEX2_NUMA | FUTEX2_MPOL | FUTEX2_PRIVATE
_WAITV = struct.Struct("<QQII")  # struct futex_waitv: val, uaddr, flags, __reserved


def _futex2_private(flags: int) -> bool:
    """The futex2 flags cove takes: 32-bit words, optionally private (EINVAL else)."""
    if flags & ~FUTEX2_VALID or flags & FUTEX2_SIZE_MASK != F.FUTEX_32:
        raise Errno(E.EINVAL)
    if flags & (FUTEX2_NUMA | FUTEX2_MPOL):
        raise Errno(E.EINVAL)  # NUMA-node futexes are not offered
    return bool(flags & FUTEX2_PRIVATE)


@syscall("futex_wake", PTR, ULONG, INT, UINT, support="partial",
         note="32-bit futexes only; FUTEX2_NUMA/MPOL: EINVAL")
def futex_wake(t: Task, uaddr: int, mask: int, nr: int, flags: int) -> int:
    private = _futex2_private(flags)
    if mask >> 32 or not mask:
        raise Errno(E.EINVAL)
    if nr <= 0:
        return 0  # futex2 is strict: no "wake at least one"
    return futex.wake_key(t.kernel, futex.key_of(t, uaddr, private), nr, mask)


@syscall("futex_wait", PTR, ULONG, ULONG, UINT, PTR, INT, support="partial",
         note="32-bit futexes only; FUTEX2_NUMA/MPOL: EINVAL")
def futex_wait(t: Task, uaddr: int, val: int, mask: int, flags: int, timeout: int,
               clockid: int) -> int:
    private = _futex2_private(flags)
    if val >> 32 or mask >> 32:
        raise Errno(E.EINVAL)
    end = None
    if timeout:
        if clockid not in (F.CLOCK_REALTIME, F.CLOCK_MONOTONIC):
            raise Errno(E.EINVAL)
        end = deadline(t, clockid, read_timespec(t, timeout), True)
    return _wait(t, uaddr, val, end, mask, private)


@syscall("futex_requeue", PTR, UINT, INT, INT, support="partial",
         note="32-bit futexes only; FUTEX2_NUMA/MPOL: EINVAL")
def futex_requeue(t: Task, waiters: int, flags: int, nr_wake: int, nr_requeue: int) -> int:
    if flags:
        raise Errno(E.EINVAL)
    raw = t.mm.read(waiters, 2 * _WAITV.size)
    (val, addr1, f1, r1), (val2, addr2, f2, r2) = (_WAITV.unpack_from(raw, i * _WAITV.size)
                                                   for i in (0, 1))
    if r1 or r2:
        raise Errno(E.EINVAL)
    private1, private2 = _futex2_private(f1), _futex2_private(f2)
    if val >> 32 or val2 >> 32 or nr_wake < 0 or nr_requeue < 0:
        raise Errno(E.EINVAL)
    key1 = futex.key_of(t, addr1, private1)
    key2 = futex.key_of(t, addr2, private2)
    if _get_u32(t, addr1) != val:
        raise Errno(E.EAGAIN)
    return futex.requeue(t.kernel, key1, key2, nr_wake, nr_requeue)


enosys("futex_waitv", note="vectored futex waits are not offered")
