"""poll, ppoll, select, pselect6: readiness, sleeping, timeouts and masks."""

from __future__ import annotations

import struct
import time

import pytest

from cove.abi import flags as F
from cove.abi.errno import E
from cove.kernel import signals

from .harness import SCRATCH, make_kernel
from .iohelp import expire, is_blocked, mkpipe, resume, sc, thread, wr

pytestmark = pytest.mark.timeout(20)

FDS = SCRATCH + 0x8000
TS = SCRATCH + 0x9000
MASK = SCRATCH + 0x9100
SETS = SCRATCH + 0xA000  # in, out, ex at +0, +0x80, +0x100
U64 = (1 << 64) - 1


def put_pollfds(t, entries, revents: int = 0) -> None:
    raw = b"".join(struct.pack("<ihh", fd, ev, revents) for fd, ev in entries)
    t.mm.write(FDS, raw)


def revents(t, n: int) -> list[int]:
    raw = t.mm.read(FDS, 8 * n)
    return [struct.unpack_from("<ihH", raw, 8 * i)[2] for i in range(n)]


# --- poll ----------------------------------------------------------------------
def test_poll_pipe_readiness_bits():
    _, t = make_kernel()
    r, w = mkpipe(t)
    put_pollfds(t, [(r, F.POLLIN), (w, F.POLLOUT)], revents=0x7777)
    assert sc(t, "poll", FDS, 2, 0) == 1
    assert revents(t, 2) == [0, F.POLLOUT]
    wr(t, w, b"x")
    assert sc(t, "poll", FDS, 2, 0) == 2
    assert revents(t, 2)[0] == F.POLLIN
    # POLLHUP / POLLERR are reported whether asked for or not.
    sc(t, "close", w)
    put_pollfds(t, [(r, 0)])
    assert sc(t, "poll", FDS, 1, 0) == 1
    assert revents(t, 1) == [F.POLLHUP]
    r2, w2 = mkpipe(t)
    sc(t, "close", r2)
    put_pollfds(t, [(w2, F.POLLOUT)])
    assert sc(t, "poll", FDS, 1, 0) == 1
    assert revents(t, 1) == [F.POLLOUT | F.POLLERR]


def test_poll_bad_fds_negative_fds_and_limits():
    _, t = make_kernel()
    r, _ = mkpipe(t)
    put_pollfds(t, [(-1, F.POLLIN), (77, F.POLLIN), (r, F.POLLIN)], revents=5)
    assert sc(t, "poll", FDS, 3, 0) == 1
    assert revents(t, 3) == [0, F.POLLNVAL, 0]
    assert sc(t, "poll", FDS, 1025, 0) == -E.EINVAL  # > RLIMIT_NOFILE
    t.proc.rlimits[F.RLIMIT_NOFILE] = (2, 2)
    assert sc(t, "poll", FDS, 3, 0) == -E.EINVAL
    assert sc(t, "poll", 0x1000, 1, 0) == -E.EFAULT
    assert sc(t, "poll", 0, 0, 0) == 0  # nothing to poll, no wait


def test_poll_regular_file_is_always_ready():
    _, t = make_kernel()
    t.mm.write(SCRATCH, b"/f\0")
    fd = sc(t, "openat", -100, SCRATCH, F.O_CREAT | F.O_RDWR, 0o600)
    put_pollfds(t, [(fd, F.POLLIN | F.POLLOUT)])
    assert sc(t, "poll", FDS, 1, -1) == 1
    assert revents(t, 1) == [F.POLLIN | F.POLLOUT]


def test_poll_sleeps_until_data_and_keeps_its_deadline():
    k, t = make_kernel()
    r, w = mkpipe(t)
    r2, w2 = mkpipe(t)
    put_pollfds(t, [(r, F.POLLIN), (r2, F.POLLIN)])
    before = time.monotonic()
    assert sc(t, "poll", FDS, 2, 5000) is None
    deadline = t.blocked_on.deadline
    assert before + 4.9 < deadline < time.monotonic() + 5.1
    other = thread(k, t)
    # Data that someone else takes first: a spurious wake-up, same deadline.
    wr(other, w2, b"x")
    sc(other, "read", r2, SCRATCH + 0x50000, 1)
    assert resume(t) is None
    assert t.blocked_on.deadline == deadline
    wr(other, w, b"y")
    assert resume(t) == 1
    assert revents(t, 2) == [F.POLLIN, 0]


def test_poll_timeout_leaves_zero_revents():
    _, t = make_kernel()
    r, _ = mkpipe(t)
    put_pollfds(t, [(r, F.POLLIN)], revents=0x55)
    assert sc(t, "poll", FDS, 1, 500) is None
    assert expire(t) == 0
    assert revents(t, 1) == [0]


def test_poll_infinite_has_no_deadline_and_is_interrupted():
    _, t = make_kernel()
    r, _ = mkpipe(t)
    put_pollfds(t, [(r, F.POLLIN)])
    assert sc(t, "poll", FDS, 1, -1) is None
    assert t.blocked_on.deadline is None
    signals.send_task(t, F.SIGUSR1)
    t.kernel._resume_blocked(t)
    assert t.ctx.regs.rax == -E.EINTR & U64
    assert t.blocked_call is None


def test_poll_eventfd():
    _, t = make_kernel()
    efd = sc(t, "eventfd2", 0, 0)
    put_pollfds(t, [(efd, F.POLLIN | F.POLLOUT)])
    assert sc(t, "poll", FDS, 1, 0) == 1
    assert revents(t, 1) == [F.POLLOUT]
    t.mm.write(SCRATCH + 0x10, struct.pack("<Q", 2))
    assert sc(t, "write", efd, SCRATCH + 0x10, 8) == 8
    assert sc(t, "poll", FDS, 1, 0) == 1
    assert revents(t, 1) == [F.POLLIN | F.POLLOUT]


def test_poll_wakes_on_eventfd_write():
    k, t = make_kernel()
    efd = sc(t, "eventfd2", 0, 0)
    put_pollfds(t, [(efd, F.POLLIN)])
    assert sc(t, "poll", FDS, 1, 1000) is None
    other = thread(k, t)
    other.mm.write(SCRATCH + 0x10, struct.pack("<Q", 1))
    assert sc(other, "write", efd, SCRATCH + 0x10, 8) == 8
    assert resume(t) == 1


# --- ppoll -----------------------------------------------------------------------
def test_ppoll_swaps_the_signal_mask_while_asleep():
    k, t = make_kernel()
    r, w = mkpipe(t)
    t.sigmask = 0b1010
    put_pollfds(t, [(r, F.POLLIN)])
    t.mm.write(MASK, struct.pack("<Q", 0xFF00))
    t.mm.write(TS, struct.pack("<qq", 3, 0))
    assert sc(t, "ppoll", FDS, 1, TS, MASK, 8) is None
    kill_bit = 1 << (F.SIGKILL - 1)  # never blockable
    assert t.sigmask == 0xFF00 & ~kill_bit and t.saved_sigmask == 0b1010
    wr(thread(k, t), w, b"x")
    assert resume(t) == 1
    assert t.sigmask == 0b1010 and t.saved_sigmask is None
    sec, nsec = struct.unpack("<qq", t.mm.read(TS, 16))
    assert 2 <= sec <= 3 and 0 <= nsec < 1_000_000_000  # the time not slept


def test_ppoll_timeout_mask_is_restored_by_delivery():
    _, t = make_kernel()
    r, _ = mkpipe(t)
    t.sigmask = 0b1
    put_pollfds(t, [(r, F.POLLIN)])
    t.mm.write(MASK, struct.pack("<Q", 0b110))
    t.mm.write(TS, struct.pack("<qq", 0, 500_000_000))
    assert sc(t, "ppoll", FDS, 1, TS, MASK, 8) is None
    assert expire(t) == 0
    assert struct.unpack("<qq", t.mm.read(TS, 16)) == (0, 0)
    signals.deliver(t)  # the way back to user mode
    assert t.sigmask == 0b1 and t.saved_sigmask is None


def test_ppoll_pending_signal_unblocked_by_the_mask_is_eintr():
    _, t = make_kernel()
    r, _ = mkpipe(t)
    usr1 = 1 << (F.SIGUSR1 - 1)
    t.sigmask = usr1
    signals.send_task(t, F.SIGUSR1)  # blocked: stays pending
    put_pollfds(t, [(r, F.POLLIN)])
    t.mm.write(MASK, struct.pack("<Q", 0))
    assert sc(t, "ppoll", FDS, 1, 0, MASK, 8) == -E.EINTR
    assert t.saved_sigmask == usr1  # the handler's frame will save this one


def test_ppoll_argument_errors():
    _, t = make_kernel()
    r, _ = mkpipe(t)
    put_pollfds(t, [(r, F.POLLIN)])
    t.mm.write(MASK, struct.pack("<Q", 0))
    assert sc(t, "ppoll", FDS, 1, 0, MASK, 4) == -E.EINVAL
    assert sc(t, "ppoll", FDS, 1, 0, 0x1000, 8) == -E.EFAULT
    t.mm.write(TS, struct.pack("<qq", 0, 1_000_000_000))
    assert sc(t, "ppoll", FDS, 1, TS, 0, 0) == -E.EINVAL
    t.mm.write(TS, struct.pack("<qq", -1, 0))
    assert sc(t, "ppoll", FDS, 1, TS, 0, 0) == -E.EINVAL
    assert sc(t, "ppoll", FDS, 1, 0x1000, 0, 0) == -E.EFAULT
    t.mm.write(TS, struct.pack("<qq", 0, 0))
    assert sc(t, "ppoll", FDS, 1, TS, 0, 123) == 0  # sigsetsize unused without a mask
    assert t.sigmask == 0 and t.saved_sigmask is None


# --- select / pselect6 -------------------------------------------------------------
def put_sets(t, rin: int = 0, rout: int = 0, rex: int = 0) -> None:
    for i, bits in enumerate((rin, rout, rex)):
        t.mm.write(SETS + 0x80 * i, bits.to_bytes(128, "little"))


def get_sets(t) -> tuple[int, int, int]:
    return tuple(int.from_bytes(t.mm.read(SETS + 0x80 * i, 128), "little")  # type: ignore[return-value]
                 for i in range(3))


def test_select_rewrites_the_sets():
    _, t = make_kernel()
    r, w = mkpipe(t)  # 0, 1
    r2, w2 = mkpipe(t)  # 2, 3
    wr(t, w2, b"x")
    put_sets(t, rin=(1 << r) | (1 << r2), rout=(1 << w) | (1 << w2), rex=1 << r)
    t.mm.write(TS, struct.pack("<qq", 0, 0))
    n = sc(t, "select", 4, SETS, SETS + 0x80, SETS + 0x100, TS)
    assert n == 3
    assert get_sets(t) == (1 << r2, (1 << w) | (1 << w2), 0)


def test_select_ignores_bits_at_or_above_n_and_checks_fds():
    _, t = make_kernel()
    r, w = mkpipe(t)
    put_sets(t, rout=(1 << w) | (1 << 50))
    assert sc(t, "select", 2, 0, SETS + 0x80, 0, 0) == 1
    put_sets(t, rout=(1 << w) | (1 << 50))
    assert sc(t, "select", 51, 0, SETS + 0x80, 0, 0) == -E.EBADF
    assert get_sets(t)[1] == (1 << w) | (1 << 50)  # untouched on error
    assert sc(t, "select", -1, 0, 0, 0, 0) == -E.EINVAL
    assert sc(t, "select", 2, 0x1000, 0, 0, 0) == -E.EFAULT
    t.mm.write(TS, struct.pack("<qq", 0, -1))
    assert sc(t, "select", 2, 0, 0, 0, TS) == -E.EINVAL
    # tv_usec ≥ 1e6 is carried into seconds, as Linux does.
    t.mm.write(TS, struct.pack("<qq", 0, 2_500_000))
    put_sets(t, rin=1 << r)
    assert sc(t, "select", 2, SETS, 0, 0, TS) is None
    assert 2.4 < t.blocked_on.deadline - time.monotonic() < 2.6


def test_select_sleeps_and_updates_the_timeout():
    k, t = make_kernel()
    r, w = mkpipe(t)
    put_sets(t, rin=1 << r)
    t.mm.write(TS, struct.pack("<qq", 10, 0))
    assert sc(t, "select", r + 1, SETS, 0, 0, TS) is None and is_blocked(t)
    wr(thread(k, t), w, b"x")
    assert resume(t) == 1
    assert get_sets(t)[0] == 1 << r
    sec, usec = struct.unpack("<qq", t.mm.read(TS, 16))
    assert 9 <= sec <= 10 and 0 <= usec < 1_000_000


def test_select_timeout_empties_the_sets():
    _, t = make_kernel()
    r, _ = mkpipe(t)
    put_sets(t, rin=1 << r)
    t.mm.write(TS, struct.pack("<qq", 0, 500_000))
    assert sc(t, "select", r + 1, SETS, 0, 0, TS) is None
    assert expire(t) == 0
    assert get_sets(t) == (0, 0, 0)
    assert struct.unpack("<qq", t.mm.read(TS, 16)) == (0, 0)


def test_select_eintr_leaves_the_sets_as_given():
    _, t = make_kernel()
    r, _ = mkpipe(t)
    put_sets(t, rin=1 << r)
    t.mm.write(TS, struct.pack("<qq", 100, 0))
    assert sc(t, "select", r + 1, SETS, 0, 0, TS) is None
    signals.send_task(t, F.SIGUSR1)
    t.kernel._resume_blocked(t)
    assert t.ctx.regs.rax == -E.EINTR & U64
    assert get_sets(t)[0] == 1 << r
    sec, _ = struct.unpack("<qq", t.mm.read(TS, 16))
    assert 98 <= sec <= 100


def test_pselect6_mask_and_errors():
    k, t = make_kernel()
    r, w = mkpipe(t)
    t.sigmask = 0b11
    sig = SCRATCH + 0x9200
    t.mm.write(MASK, struct.pack("<Q", 0b100))
    t.mm.write(sig, struct.pack("<QQ", MASK, 8))
    put_sets(t, rin=1 << r)
    assert sc(t, "pselect6", r + 1, SETS, 0, 0, 0, sig) is None
    assert t.sigmask == 0b100
    wr(thread(k, t), w, b"x")
    assert resume(t) == 1
    assert t.sigmask == 0b11 and t.saved_sigmask is None
    t.mm.write(sig, struct.pack("<QQ", MASK, 16))
    assert sc(t, "pselect6", r + 1, SETS, 0, 0, 0, sig) == -E.EINVAL
    assert sc(t, "pselect6", r + 1, SETS, 0, 0, 0, 0x1000) == -E.EFAULT
    t.mm.write(sig, struct.pack("<QQ", 0, 999))  # no mask: ss_len unused
    t.mm.write(TS, struct.pack("<qq", 0, 0))
    assert sc(t, "pselect6", r + 1, SETS, 0, 0, TS, sig) == 1
