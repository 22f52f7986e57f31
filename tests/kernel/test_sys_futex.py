"""futex(2) through the dispatcher, with the scheduler's Blocked driven by hand."""

from __future__ import annotations

import struct
import time

import pytest

from cove.abi import flags as F
from cove.abi.errno import E
from cove.kernel import signals
from cove.kernel.task import State

from .fakes import FakeSpace
from .harness import SCRATCH, FakeContext, call, make_kernel, put
from .sighelp import BAD, finish, resume, thread, u32

pytestmark = pytest.mark.timeout(20)
P = F.FUTEX_PRIVATE_FLAG
WORD = SCRATCH + 0x100
WORD2 = SCRATCH + 0x200


def _set(t, addr, value):
    t.mm.write(addr, struct.pack("<I", value))


def _ts(t, ns, off=0x500):
    return put(t, struct.pack("<qq", ns // 1_000_000_000, ns % 1_000_000_000), off)


def futex(t, addr, op, val=0, timeout=0, addr2=0, val3=0):
    return call(t, "futex", addr, op, val, timeout, addr2, val3)


def test_wait_errors():
    _, t = make_kernel()
    _set(t, WORD, 5)
    assert futex(t, WORD, F.FUTEX_WAIT | P, 4) == -E.EAGAIN
    assert futex(t, WORD + 1, F.FUTEX_WAIT | P, 5) == -E.EINVAL
    assert futex(t, BAD, F.FUTEX_WAIT | P, 5) == -E.EFAULT
    assert futex(t, BAD, F.FUTEX_WAIT, 5) == -E.EFAULT
    bad_ts = put(t, struct.pack("<qq", 0, 2_000_000_000), 0x540)
    assert futex(t, WORD, F.FUTEX_WAIT | P, 4, bad_ts) == -E.EINVAL  # before the compare
    assert futex(t, WORD, F.FUTEX_WAIT | P, 4, BAD) == -E.EFAULT
    assert futex(t, WORD, F.FUTEX_WAIT_BITSET | P, 5, 0, 0, 0) == -E.EINVAL
    # CLOCK_REALTIME only with the absolute waits (host-checked: ENOSYS for WAIT/WAKE).
    assert futex(t, WORD, F.FUTEX_WAIT | F.FUTEX_CLOCK_REALTIME, 4, _ts(t, 1000)) == -E.ENOSYS
    assert futex(t, WORD, F.FUTEX_WAKE | F.FUTEX_CLOCK_REALTIME, 1) == -E.ENOSYS
    assert futex(t, WORD, F.FUTEX_LOCK_PI | P) == -E.ENOSYS
    assert futex(t, WORD, 14) == -E.ENOSYS
    assert futex(t, WORD + 2, F.FUTEX_WAKE | P, 1) == -E.EINVAL
    assert futex(t, BAD, F.FUTEX_WAKE | P, 1) == 0  # a private wake does not look at the map
    assert futex(t, BAD, F.FUTEX_WAKE, 1) == -E.EFAULT
    assert futex(t, WORD, F.FUTEX_WAKE_BITSET | P, 1, 0, 0, 0) == -E.EINVAL
    assert call(t, "futex_waitv", 0, 0, 0, 0, 0) == -E.ENOSYS


def test_wait_then_wake():
    k, t = make_kernel()
    w = thread(k, t)
    _set(t, WORD, 7)
    futex(w, WORD, F.FUTEX_WAIT | P, 7)
    assert w.state is State.BLOCKED
    _set(t, WORD, 8)  # the waker changes the word, then wakes
    assert futex(t, WORD, F.FUTEX_WAKE | P, 1) == 1
    assert w.state is State.RUNNABLE
    assert resume(w) == 0  # woken: no second compare (the word differs now)
    assert not k.futexes
    assert futex(t, WORD, F.FUTEX_WAKE | P, 1) == 0


def test_wake_counts_fifo_and_at_least_one():
    k, t = make_kernel()
    ws = [thread(k, t) for _ in range(4)]
    for w in ws:
        futex(w, WORD, F.FUTEX_WAIT | P, 0)
    assert futex(t, WORD, F.FUTEX_WAKE | P, 2) == 2
    assert [w.state for w in ws] == [State.RUNNABLE] * 2 + [State.BLOCKED] * 2
    assert futex(t, WORD, F.FUTEX_WAKE | P, 0) == 1  # Linux wakes one even for 0
    assert ws[2].state is State.RUNNABLE
    assert futex(t, WORD, F.FUTEX_WAKE | P, 0x7FFFFFFF) == 1


def test_private_and_shared_do_not_meet_on_private_memory():
    k, t = make_kernel()
    w = thread(k, t)
    futex(w, WORD, F.FUTEX_WAIT | P, 0)
    assert futex(t, WORD, F.FUTEX_WAKE, 1) == 0  # shared key: FUT_OFF_MMSHARED differs
    assert futex(t, WORD, F.FUTEX_WAKE | P, 1) == 1


def test_shared_futex_across_processes_in_shared_memory():
    k, t = make_kernel()
    shm = t.mm.mmap(0x30000000, 4096, F.PROT_READ | F.PROT_WRITE,
                    F.MAP_SHARED | F.MAP_ANONYMOUS | F.MAP_FIXED)
    from cove.kernel.fdtable import FdTable

    mm2 = t.mm.fork(FakeSpace())
    proc2 = k.new_process(t.proc, mm2, t.proc.creds.copy())
    child = k.new_task(proc2, FakeContext(), FdTable(), k.vfs.context())
    futex(child, shm + 8, F.FUTEX_WAIT, 0)
    assert child.state is State.BLOCKED
    assert futex(t, shm + 8, F.FUTEX_WAKE | P, 1) == 0  # private keys are per mm
    assert futex(t, shm + 8, F.FUTEX_WAKE, 1) == 1
    assert resume(child) == 0
    # Private memory after fork is per process even at the same address.
    futex(child, WORD, F.FUTEX_WAIT, 0)
    assert futex(t, WORD, F.FUTEX_WAKE, 1) == 0


def test_bitsets():
    k, t = make_kernel()
    a, b = thread(k, t), thread(k, t)
    futex(a, WORD, F.FUTEX_WAIT_BITSET | P, 0, 0, 0, 0b01)
    futex(b, WORD, F.FUTEX_WAIT_BITSET | P, 0, 0, 0, 0b10)
    assert futex(t, WORD, F.FUTEX_WAKE_BITSET | P, 5, 0, 0, 0b100) == 0
    assert futex(t, WORD, F.FUTEX_WAKE_BITSET | P, 5, 0, 0, 0b10) == 1
    assert a.state is State.BLOCKED and b.state is State.RUNNABLE
    assert futex(t, WORD, F.FUTEX_WAKE | P, 5) == 1  # MATCH_ANY


def test_relative_timeout_and_stale_waiter_takes_no_wake():
    k, t = make_kernel()
    w, other = thread(k, t), thread(k, t)
    start = time.monotonic()
    futex(w, WORD, F.FUTEX_WAIT | P, 0, _ts(t, 20_000_000))
    futex(other, WORD, F.FUTEX_WAIT | P, 0)
    assert finish(k, w) == -E.ETIMEDOUT
    assert time.monotonic() - start >= 0.019
    # w's queue entry is stale now: the next wake goes to the real waiter.
    assert futex(t, WORD, F.FUTEX_WAKE | P, 1) == 1
    assert other.state is State.RUNNABLE and resume(other) == 0


def test_absolute_bitset_timeout_on_both_clocks():
    k, t = make_kernel()
    from cove.kernel.syscalls.time import monotonic_ns

    soon = monotonic_ns(k) + 20_000_000
    futex(t, WORD, F.FUTEX_WAIT_BITSET | P, 0, _ts(t, soon), 0, 0xFFFFFFFF)
    assert t.state is State.BLOCKED
    assert finish(k, t) == -E.ETIMEDOUT
    past = time.time_ns() - 1_000_000_000
    op = F.FUTEX_WAIT_BITSET | P | F.FUTEX_CLOCK_REALTIME
    assert futex(t, WORD, op, 0, _ts(t, past), 0, 1) == -E.ETIMEDOUT


def test_spurious_rerun_recompares_and_keeps_the_deadline():
    k, t = make_kernel()
    futex(t, WORD, F.FUTEX_WAIT | P, 0, _ts(t, 60_000_000))
    end = t.blocked_on.deadline
    # Woken by something else (here: by hand), the call re-runs: same deadline.
    k.sched.wake(t)
    resume(t)
    assert t.state is State.BLOCKED and t.blocked_on.deadline == end
    _set(t, WORD, 1)
    k.sched.wake(t)
    assert resume(t) == -E.EAGAIN  # the word changed: EAGAIN on the re-compare


def test_signal_interrupts_a_wait():
    _, t = make_kernel()
    t.proc.sighand.actions[F.SIGUSR1].handler = 0x401000
    futex(t, WORD, F.FUTEX_WAIT | P, 0)
    signals.send_task(t, F.SIGUSR1)
    assert resume(t) == -E.EINTR
    assert futex(t, WORD, F.FUTEX_WAKE | P, 1) == 0  # no longer a waiter


def test_cmp_requeue_and_requeue():
    k, t = make_kernel()
    ws = [thread(k, t) for _ in range(4)]
    for w in ws:
        futex(w, WORD, F.FUTEX_WAIT | P, 0)
    assert futex(t, WORD, F.FUTEX_CMP_REQUEUE | P, 1, 2, WORD2, 1) == -E.EAGAIN
    assert futex(t, WORD, F.FUTEX_CMP_REQUEUE | P, 0xFFFFFFFF, 1, WORD2, 0) == -E.EINVAL
    assert futex(t, WORD, F.FUTEX_CMP_REQUEUE | P, 1, 0xFFFFFFFF, WORD2, 0) == -E.EINVAL
    assert futex(t, WORD, F.FUTEX_CMP_REQUEUE | P, 1, 2, WORD2, 0) == 3  # 1 woken + 2 moved
    assert [w.state for w in ws] == [State.RUNNABLE] + [State.BLOCKED] * 3
    assert futex(t, WORD2, F.FUTEX_WAKE | P, 10) == 2
    assert ws[1].state is ws[2].state is State.RUNNABLE and ws[3].state is State.BLOCKED
    assert resume(ws[1]) == 0  # woken on the second word: still a clean 0
    assert futex(t, WORD, F.FUTEX_REQUEUE | P, 0, 5, WORD2) == 1
    assert futex(t, WORD, F.FUTEX_WAKE | P, 1) == 0
    assert futex(t, WORD2, F.FUTEX_WAKE | P, 1) == 1
    assert ws[3].state is State.RUNNABLE


def test_wake_op():
    k, t = make_kernel()
    a, b = thread(k, t), thread(k, t)
    futex(a, WORD, F.FUTEX_WAIT | P, 0)
    futex(b, WORD2, F.FUTEX_WAIT | P, 0)
    _set(t, WORD2, 0)
    # *WORD2 += 5; wake 1 on WORD; if old == 0 wake 1 on WORD2
    op = (F.FUTEX_OP_ADD << 28) | (F.FUTEX_OP_CMP_EQ << 24) | (5 << 12) | 0
    assert futex(t, WORD, F.FUTEX_WAKE_OP | P, 1, 1, WORD2, op) == 2
    assert u32(t, WORD2) == 5
    assert a.state is b.state is State.RUNNABLE
    # OPARG_SHIFT: oparg = 1 << 3; OR; cmp GT old(5) > 7 false: only WORD's waiter.
    op = ((F.FUTEX_OP_OR | F.FUTEX_OP_OPARG_SHIFT) << 28) | (F.FUTEX_OP_CMP_GT << 24) \
        | (3 << 12) | 7
    c = thread(k, t)
    futex(c, WORD2, F.FUTEX_WAIT | P, 5)
    assert c.state is State.BLOCKED
    assert futex(t, WORD, F.FUTEX_WAKE_OP | P, 1, 1, WORD2, op) == 0
    assert u32(t, WORD2) == 13 and c.state is State.BLOCKED
    # A bad op fails before the write, a bad cmp after it (host-checked).
    assert futex(t, WORD, F.FUTEX_WAKE_OP | P, 1, 1, WORD2, 7 << 28) == -E.ENOSYS
    assert u32(t, WORD2) == 13
    assert futex(t, WORD, F.FUTEX_WAKE_OP | P, 1, 1, WORD2, (9 << 24) | (1 << 12)) == -E.ENOSYS
    assert u32(t, WORD2) == 1
    assert futex(t, WORD, F.FUTEX_WAKE_OP | P, 1, 1, BAD, 0) == -E.EFAULT


def test_thread_exit_clears_tid_and_wakes_the_joiner():
    k, t = make_kernel()
    child = thread(k, t)
    _set(t, WORD, child.tid)
    child.clear_child_tid = WORD
    futex(t, WORD, F.FUTEX_WAIT, child.tid)  # glibc's join: a shared wait on the tid
    assert t.state is State.BLOCKED
    k.exit_task(child, 0)
    assert u32(t, WORD) == 0
    assert t.state is State.RUNNABLE and resume(t) == 0


def test_robust_list_marks_owner_died_and_wakes_a_waiter():
    k, t = make_kernel()
    owner = thread(k, t)
    head, entry = SCRATCH + 0x800, SCRATCH + 0x840
    lock = entry + 16  # futex_offset 16 from the list entry
    t.mm.write(head, struct.pack("<QqQ", entry, 16, 0))
    t.mm.write(entry, struct.pack("<Q", head))
    _set(t, lock, owner.tid | 0x80000000)  # held by owner, with waiters
    other_lock = SCRATCH + 0x900  # a lock owned by someone else stays untouched
    assert call(owner, "set_robust_list", head, 24) == 0
    futex(t, lock, F.FUTEX_WAIT, owner.tid | 0x80000000)  # glibc: robust waits are shared
    assert t.state is State.BLOCKED
    _set(t, other_lock, 12345)
    k.exit_task(owner, 0)
    assert u32(t, lock) == 0x80000000 | 0x40000000  # FUTEX_WAITERS | FUTEX_OWNER_DIED
    assert u32(t, other_lock) == 12345
    assert resume(t) == 0


# --- futex2 ------------------------------------------------------------------------
F2 = F.FUTEX_32 | F.FUTEX_PRIVATE_FLAG


def test_futex2_wait_wake_requeue():
    k, t = make_kernel()
    a, b = thread(k, t), thread(k, t)
    assert call(t, "futex_wake", WORD, 0, 1, F2) == -E.EINVAL  # mask 0
    assert call(t, "futex_wake", WORD, 1, 1, F.FUTEX_PRIVATE_FLAG) == -E.EINVAL  # u8
    assert call(t, "futex_wake", WORD, 1 << 33, 1, F2) == -E.EINVAL
    assert call(t, "futex_wake", WORD, 1, 1, F2 | 0x1000) == -E.EINVAL
    # without a timeout the clock is not looked at
    assert call(t, "futex_wait", WORD, 5, 0xFFFFFFFF, F2, 0, 99) == -E.EAGAIN
    assert call(t, "futex_wait", WORD, 0, 0xFFFFFFFF, F2, _ts(t, 0), 99) == -E.EINVAL
    assert call(t, "futex_wait", WORD, 0, 0xFFFFFFFF, F2, _ts(t, 0), F.CLOCK_MONOTONIC) \
        == -E.ETIMEDOUT  # absolute, long past
    assert call(t, "futex_wait", WORD, 0, 0, F2, 0, 0) == -E.EINVAL
    call(a, "futex_wait", WORD, 0, 0b01, F2, 0, 0)
    call(b, "futex_wait", WORD, 0, 0b10, F2, 0, 0)
    assert a.state is b.state is State.BLOCKED
    assert call(t, "futex_wake", WORD, 0xFFFFFFFF, 0, F2) == 0  # strict: nr 0 wakes none
    assert call(t, "futex_wake", WORD, 0b10, 5, F2) == 1
    assert b.state is State.RUNNABLE and resume(b) == 0
    wv = put(t, struct.pack("<QQII", 0, WORD, F2, 0) + struct.pack("<QQII", 0, WORD2, F2, 0),
             0xA00)
    assert call(t, "futex_requeue", wv, 1, 0, 1) == -E.EINVAL
    assert call(t, "futex_requeue", wv, 0, 0, 1) == 1
    assert call(t, "futex_wake", WORD2, 0xFFFFFFFF, 1, F2) == 1
    assert a.state is State.RUNNABLE
    bad = put(t, struct.pack("<QQII", 7, WORD, F2, 0) + struct.pack("<QQII", 0, WORD2, F2, 0),
              0xA40)
    assert call(t, "futex_requeue", bad, 0, 0, 1) == -E.EAGAIN
    bad = put(t, struct.pack("<QQII", 0, WORD, F2, 1) + struct.pack("<QQII", 0, WORD2, F2, 0),
              0xA40)
    assert call(t, "futex_requeue", bad, 0, 0, 1) == -E.EINVAL
