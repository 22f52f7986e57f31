"""epoll_create/create1/ctl/wait/pwait/pwait2 through the dispatcher: every
error path, level/edge/oneshot readiness, nesting, closing, and sleeping."""

from __future__ import annotations

import struct
import time

import pytest

from cove.abi import flags as F
from cove.abi.errno import E
from cove.kernel import epoll as epoll_mod
from cove.kernel import signals

from .harness import SCRATCH, make_kernel
from .iohelp import expire, is_blocked, mkpipe, process, rd, resume, sc, thread, wr

pytestmark = pytest.mark.timeout(20)

EV = SCRATCH + 0x8000  # one struct epoll_event for ctl
OUT = SCRATCH + 0x9000  # the events array of a wait
TS = SCRATCH + 0xA000
MASK = SCRATCH + 0xA100
U64 = (1 << 64) - 1
ET, ONESHOT, EXCL = F.EPOLLET, F.EPOLLONESHOT, F.EPOLLEXCLUSIVE
IN, OUTB, HUP, ERR = F.EPOLLIN, F.EPOLLOUT, F.EPOLLHUP, F.EPOLLERR


def ctl(t, ep: int, op: int, fd: int, events: int = IN, data: int | None = None) -> int | None:
    t.mm.write(EV, struct.pack("<IQ", events & 0xFFFFFFFF, fd if data is None else data))
    return sc(t, "epoll_ctl", ep, op, fd, EV)


def add(t, ep, fd, events=IN, data=None):
    return ctl(t, ep, F.EPOLL_CTL_ADD, fd, events, data)


def wait(t, ep: int, maxevents: int = 16, timeout: int = 0) -> int | None:
    return sc(t, "epoll_wait", ep, OUT, maxevents, timeout)


def got(t, n: int) -> list[tuple[int, int]]:
    """(events, data) of the first n reported events (packed, 12 bytes each)."""
    raw = t.mm.read(OUT, 12 * n)
    return [struct.unpack_from("<IQ", raw, 12 * i) for i in range(n)]


def events(t, ep: int, maxevents: int = 16) -> list[tuple[int, int]]:
    n = wait(t, ep, maxevents)
    assert n is not None and n >= 0, n
    return got(t, n)


def efd_write(t, fd: int, value: int = 1) -> None:
    t.mm.write(SCRATCH + 0x10, struct.pack("<Q", value))
    assert sc(t, "write", fd, SCRATCH + 0x10, 8) == 8


# --- create ----------------------------------------------------------------------
def test_create_and_flags():
    _, t = make_kernel()
    assert sc(t, "epoll_create", 0) == -E.EINVAL
    assert sc(t, "epoll_create", -5) == -E.EINVAL
    ep = sc(t, "epoll_create", 1)
    assert ep >= 0 and ep not in t.files.cloexec
    assert sc(t, "epoll_create1", 1) == -E.EINVAL
    assert sc(t, "epoll_create1", F.O_NONBLOCK) == -E.EINVAL
    ep2 = sc(t, "epoll_create1", F.EPOLL_CLOEXEC)
    assert ep2 in t.files.cloexec
    f = t.files.get(ep2)
    assert f.proc_name() == "anon_inode:[eventpoll]"
    assert sc(t, "fcntl", ep2, F.F_GETFL) == F.O_RDWR
    assert sc(t, "read", ep2, SCRATCH, 8) == -E.EINVAL
    assert sc(t, "write", ep2, SCRATCH, 8) == -E.EINVAL
    assert sc(t, "lseek", ep2, 5, 0) == 0
    t.proc.rlimits[F.RLIMIT_NOFILE] = (2, 2)
    t.files.limit = 2
    assert sc(t, "epoll_create1", 0) == -E.EMFILE


# --- ctl errors ------------------------------------------------------------------
def test_ctl_errors():
    _, t = make_kernel()
    ep = sc(t, "epoll_create1", 0)
    r, w = mkpipe(t)
    # EFAULT before anything else, except for DEL which never reads the event.
    assert sc(t, "epoll_ctl", ep, F.EPOLL_CTL_ADD, r, 0x1000) == -E.EFAULT
    assert sc(t, "epoll_ctl", 99, 7, r, 0x1000) == -E.EFAULT
    assert sc(t, "epoll_ctl", ep, F.EPOLL_CTL_DEL, r, 0x1000) == -E.ENOENT
    assert add(t, 99, r) == -E.EBADF
    assert add(t, ep, 99) == -E.EBADF
    assert add(t, r, w) == -E.EINVAL  # not an epoll fd
    assert add(t, ep, ep) == -E.EINVAL  # itself
    assert ctl(t, ep, 0, r) == -E.EINVAL  # unknown op
    assert ctl(t, ep, 4, r) == -E.EINVAL
    assert ctl(t, ep, F.EPOLL_CTL_MOD, r) == -E.ENOENT
    assert ctl(t, ep, F.EPOLL_CTL_DEL, r) == -E.ENOENT
    assert add(t, ep, r) == 0
    assert add(t, ep, r) == -E.EEXIST
    assert ctl(t, ep, F.EPOLL_CTL_MOD, r, OUTB) == 0
    assert ctl(t, ep, F.EPOLL_CTL_DEL, r) == 0
    assert ctl(t, ep, F.EPOLL_CTL_DEL, r) == -E.ENOENT


def test_ctl_eperm_for_files_without_poll():
    _, t = make_kernel()
    ep = sc(t, "epoll_create1", 0)
    t.mm.write(SCRATCH, b"/f\0")
    fd = sc(t, "openat", -100, SCRATCH, F.O_CREAT | F.O_RDWR, 0o600)
    assert add(t, ep, fd) == -E.EPERM
    t.mm.write(SCRATCH, b"/\0")
    d = sc(t, "openat", -100, SCRATCH, F.O_RDONLY | F.O_DIRECTORY, 0)
    assert add(t, ep, d) == -E.EPERM
    p = sc(t, "openat", -100, SCRATCH, F.O_PATH, 0)
    assert add(t, ep, p) == -E.EBADF  # O_PATH fds are no files to epoll
    assert add(t, p, fd) == -E.EBADF


def test_ctl_exclusive_rules():
    _, t = make_kernel()
    ep = sc(t, "epoll_create1", 0)
    ep2 = sc(t, "epoll_create1", 0)
    r, _ = mkpipe(t)
    r2, _ = mkpipe(t)
    for bad in (ONESHOT, F.EPOLLRDHUP, F.EPOLLPRI):
        assert add(t, ep, r, IN | EXCL | bad) == -E.EINVAL
    assert add(t, ep, ep2, IN | EXCL) == -E.EINVAL  # no nested exclusive wake-ups
    assert ctl(t, ep, F.EPOLL_CTL_MOD, r, IN | EXCL) == -E.EINVAL
    assert add(t, ep, r, IN | EXCL | ET | F.EPOLLWAKEUP) == 0
    # An exclusive registration cannot be modified at all.
    assert ctl(t, ep, F.EPOLL_CTL_MOD, r, IN) == -E.EINVAL
    assert ctl(t, ep, F.EPOLL_CTL_DEL, r) == 0
    assert add(t, ep, r2, IN | ONESHOT | ET | F.EPOLLRDHUP | F.EPOLLWAKEUP) == 0


def test_ctl_loops_and_nesting_depth():
    _, t = make_kernel()
    a, b = sc(t, "epoll_create1", 0), sc(t, "epoll_create1", 0)
    assert add(t, a, b) == 0
    assert add(t, b, a) == -E.ELOOP
    # A chain of 5 sets (4 edges) is allowed, a 6th is ELOOP (Linux 6.x), built
    # either way round.
    chain = [sc(t, "epoll_create1", 0) for _ in range(6)]
    for i in range(4):
        assert add(t, chain[i], chain[i + 1]) == 0
    assert add(t, chain[4], chain[5]) == -E.ELOOP
    chain2 = [sc(t, "epoll_create1", 0) for _ in range(6)]
    for i in (3, 2, 1, 0):
        assert add(t, chain2[i], chain2[i + 1]) == 0
    top = sc(t, "epoll_create1", 0)
    assert add(t, top, chain2[0]) == -E.ELOOP
    # A diamond is no loop.
    c, d, e = (sc(t, "epoll_create1", 0) for _ in range(3))
    assert add(t, c, d) == 0 and add(t, c, e) == 0 and add(t, d, e) == 0


# --- level-triggered ---------------------------------------------------------------
def test_level_triggered_pipe():
    _, t = make_kernel()
    ep = sc(t, "epoll_create1", 0)
    r, w = mkpipe(t)
    assert add(t, ep, r, IN, data=0x1122334455667788) == 0
    assert add(t, ep, w, OUTB, data=7) == 0
    assert events(t, ep) == [(OUTB, 7)]
    wr(t, w, b"abc")
    assert sorted(events(t, ep)) == [(IN, 0x1122334455667788), (OUTB, 7)]
    assert sorted(events(t, ep)) == [(IN, 0x1122334455667788), (OUTB, 7)]  # still
    rd(t, r, 3)
    assert events(t, ep) == [(OUTB, 7)]
    # HUP and ERR are always reported, asked for or not.
    assert ctl(t, ep, F.EPOLL_CTL_MOD, w, 0, data=7) == 0
    assert sc(t, "close", r) == 0  # the reader's last fd: it leaves the set
    assert events(t, ep) == [(ERR, 7)]
    assert ctl(t, ep, F.EPOLL_CTL_DEL, w) == 0
    r2, w2 = mkpipe(t)
    assert add(t, ep, r2, IN, data=9) == 0
    sc(t, "close", w2)
    assert events(t, ep) == [(HUP, 9)]


def test_maxevents_round_robin_and_packed_layout():
    _, t = make_kernel()
    ep = sc(t, "epoll_create1", 0)
    fds = [sc(t, "eventfd2", 1, 0) for _ in range(3)]
    for fd in fds:
        assert add(t, ep, fd, IN) == 0
    t.mm.write(OUT, b"\xee" * 64)
    assert wait(t, ep, 2) == 2
    raw = t.mm.read(OUT, 36)
    assert struct.unpack_from("<IQ", raw, 0) == (IN, fds[0])
    assert struct.unpack_from("<IQ", raw, 12) == (IN, fds[1])  # packed: 12 bytes apart
    assert raw[24:36] == b"\xee" * 12  # nothing past maxevents
    # The ones just reported go to the back: the third comes first now.
    assert [d for _, d in events(t, ep, 2)] == [fds[2], fds[0]]


def test_wait_errors():
    _, t = make_kernel()
    ep = sc(t, "epoll_create1", 0)
    r, w = mkpipe(t)
    assert sc(t, "epoll_wait", ep, OUT, 0, 0) == -E.EINVAL
    assert sc(t, "epoll_wait", ep, OUT, -1, 0) == -E.EINVAL
    assert sc(t, "epoll_wait", ep, OUT, 0x7FFFFFFF // 12 + 1, 0) == -E.EINVAL
    # Only the range is checked up front (access_ok), as on Linux.
    assert sc(t, "epoll_wait", ep, OUT, 0x7FFFFFFF // 12, 0) == 0
    assert sc(t, "epoll_wait", ep, 0, 1, 0) == 0
    assert sc(t, "epoll_wait", ep, 0xFFFF800000000000, 1, 0) == -E.EFAULT
    assert sc(t, "epoll_wait", 99, OUT, 1, 0) == -E.EBADF
    assert sc(t, "epoll_wait", r, OUT, 1, 0) == -E.EINVAL
    assert add(t, ep, w, OUTB | ONESHOT) == 0
    # A fault writing the first event is EFAULT, and the event is not used up.
    assert sc(t, "epoll_wait", ep, 0x1000, 1, 0) == -E.EFAULT
    assert events(t, ep) == [(OUTB, w)]


def test_partial_copy_returns_what_was_written():
    _, t = make_kernel()
    ep = sc(t, "epoll_create1", 0)
    a, b = sc(t, "eventfd2", 1, 0), sc(t, "eventfd2", 1, 0)
    add(t, ep, a, IN | ONESHOT)
    add(t, ep, b, IN | ONESHOT)
    end = SCRATCH + (1 << 20)  # the scratch mapping ends here
    assert sc(t, "epoll_wait", ep, end - 12, 2, 0) == 1
    assert struct.unpack("<IQ", t.mm.read(end - 12, 12)) == (IN, a)
    assert events(t, ep) == [(IN, b)]  # b was not consumed


# --- edge-triggered and oneshot ----------------------------------------------------
def test_edge_triggered_eventfd():
    _, t = make_kernel()
    ep = sc(t, "epoll_create1", 0)
    efd = sc(t, "eventfd2", 0, F.EFD_NONBLOCK)
    assert add(t, ep, efd, IN | ET) == 0
    assert events(t, ep) == []
    efd_write(t, efd)
    assert events(t, ep) == [(IN, efd)]
    assert events(t, ep) == []  # no new edge, still readable
    efd_write(t, efd)
    assert events(t, ep) == [(IN, efd)]  # a new write is a new edge
    assert sc(t, "read", efd, SCRATCH + 0x20, 8) == 8
    assert events(t, ep) == []
    efd_write(t, efd)
    assert events(t, ep) == [(IN, efd)]


def test_edge_triggered_ready_at_add_and_mod_rearms():
    _, t = make_kernel()
    ep = sc(t, "epoll_create1", 0)
    r, w = mkpipe(t)
    wr(t, w, b"x")
    assert add(t, ep, r, IN | ET) == 0
    assert events(t, ep) == [(IN, r)]  # ready when added: one report
    assert events(t, ep) == []
    assert ctl(t, ep, F.EPOLL_CTL_MOD, r, IN | ET, data=5) == 0
    assert events(t, ep) == [(IN, 5)]
    assert events(t, ep) == []


def test_edge_triggered_drained_between_waits_sees_the_next_edge():
    """The reader drains without calling epoll_wait in between: the next
    write must still be an edge (the case a last-mask approach loses)."""
    _, t = make_kernel()
    ep = sc(t, "epoll_create1", 0)
    r, w = mkpipe(t, F.O_NONBLOCK)
    add(t, ep, r, IN | ET)
    wr(t, w, b"a")
    assert events(t, ep) == [(IN, r)]
    rd(t, r, 10)
    wr(t, w, b"b")
    assert events(t, ep) == [(IN, r)]


def test_oneshot_disables_until_mod():
    _, t = make_kernel()
    ep = sc(t, "epoll_create1", 0)
    r, w = mkpipe(t)
    add(t, ep, r, IN | ONESHOT, data=1)
    wr(t, w, b"x")
    assert events(t, ep) == [(IN, 1)]
    assert events(t, ep) == []
    wr(t, w, b"y")
    sc(t, "close", w)
    assert events(t, ep) == []  # disabled: not even HUP
    assert add(t, ep, r) == -E.EEXIST  # still registered
    assert ctl(t, ep, F.EPOLL_CTL_MOD, r, IN | ONESHOT, data=2) == 0
    assert events(t, ep) == [(IN | HUP, 2)]
    assert events(t, ep) == []


# --- the interest list and file lifetimes --------------------------------------------
def test_registration_is_per_description_and_fd():
    _, t = make_kernel()
    ep = sc(t, "epoll_create1", 0)
    r, w = mkpipe(t)
    r2 = sc(t, "dup", r)
    assert add(t, ep, r, IN, data=1) == 0
    assert add(t, ep, r2, IN, data=2) == 0  # same description, other fd: another item
    wr(t, w, b"x")
    assert sorted(events(t, ep)) == [(IN, 1), (IN, 2)]
    # Closing one fd of a description still open elsewhere keeps its item,
    # which then can no longer be named (Linux's well-known quirk).
    assert sc(t, "close", r) == 0
    assert sorted(events(t, ep)) == [(IN, 1), (IN, 2)]
    assert ctl(t, ep, F.EPOLL_CTL_DEL, r) == -E.EBADF
    # The last fd closing removes every registration of the description.
    assert sc(t, "close", r2) == 0
    assert events(t, ep) == []
    # The fd number reused for another file is a new key.
    r3, _ = mkpipe(t)
    assert add(t, ep, r3, IN) == 0
    assert epoll_mod.sets_of(t.files.get(r3)) == [t.files.get(ep)]


def test_close_epoll_forgets_and_fork_shares():
    k, t = make_kernel()
    ep = sc(t, "epoll_create1", 0)
    efd = sc(t, "eventfd2", 1, 0)
    add(t, ep, efd)
    child = process(k, t)  # inherits both fds: the same descriptions
    assert events(child, ep) == [(IN, efd)]
    assert ctl(child, ep, F.EPOLL_CTL_DEL, efd) == 0
    assert events(t, ep) == []  # one interest list shared by both
    add(t, ep, efd)
    f = t.files.get(efd)
    sc(t, "close", ep)
    sc(child, "close", ep)  # the last fd of the epoll set
    assert epoll_mod.sets_of(f) == []


def test_files_of_every_kind():
    k, t = make_kernel()
    ep = sc(t, "epoll_create1", 0)
    tfd = sc(t, "timerfd_create", F.CLOCK_MONOTONIC, F.TFD_NONBLOCK)
    mask = SCRATCH + 0x100
    t.mm.write(mask, struct.pack("<Q", 1 << (F.SIGUSR2 - 1)))
    sfd = sc(t, "signalfd4", -1, mask, 8, 0)
    assert sfd >= 0
    add(t, ep, tfd, IN | ET, data=1)
    add(t, ep, sfd, IN, data=2)
    assert events(t, ep) == []
    t.sigmask = 1 << (F.SIGUSR2 - 1)
    signals.send_task(t, F.SIGUSR2)
    assert events(t, ep) == [(IN, 2)]
    t.mm.write(TS, struct.pack("<qqqq", 0, 0, 0, 1_000_000))  # 1 ms one-shot
    assert sc(t, "timerfd_settime", tfd, 0, TS, 0) == 0
    time.sleep(0.005)
    k.sched.poll()
    assert sorted(events(t, ep)) == [(IN, 1), (IN, 2)]
    assert events(t, ep) == [(IN, 2)]  # the timerfd was edge-triggered


# --- nesting --------------------------------------------------------------------------
def test_nested_epoll_is_readable_when_inner_has_events():
    _, t = make_kernel()
    outer, inner = sc(t, "epoll_create1", 0), sc(t, "epoll_create1", 0)
    efd = sc(t, "eventfd2", 0, F.EFD_NONBLOCK)
    add(t, inner, efd, IN)
    add(t, outer, inner, IN, data=42)
    assert events(t, outer) == []
    efd_write(t, efd)
    assert events(t, outer) == [(IN, 42)]
    assert events(t, inner) == [(IN, efd)]  # polling the inner set consumed nothing
    # poll(2) on an epoll fd too.
    t.mm.write(SCRATCH + 0x200, struct.pack("<ihh", outer, F.POLLIN | F.POLLOUT, 0))
    assert sc(t, "poll", SCRATCH + 0x200, 1, 0) == 1
    assert struct.unpack("<ihh", t.mm.read(SCRATCH + 0x200, 8))[2] == F.POLLIN
    # Closing the inner set's last fd removes it from the outer one.
    sc(t, "close", inner)
    assert events(t, outer) == []


def test_nested_wait_wakes_on_inner_file():
    k, t = make_kernel()
    outer, inner = sc(t, "epoll_create1", 0), sc(t, "epoll_create1", 0)
    r, w = mkpipe(t)
    add(t, inner, r, IN)
    add(t, outer, inner, IN)
    assert wait(t, outer, 4, -1) is None
    wr(thread(k, t), w, b"x")
    assert resume(t) == 1


# --- sleeping ------------------------------------------------------------------------
def test_wait_sleeps_until_ready_keeping_the_deadline():
    k, t = make_kernel()
    ep = sc(t, "epoll_create1", 0)
    r, w = mkpipe(t)
    _, w2 = mkpipe(t)
    add(t, ep, r)
    before = time.monotonic()
    assert wait(t, ep, 4, 5000) is None and is_blocked(t)
    deadline = t.blocked_on.deadline
    assert before + 4.9 < deadline < time.monotonic() + 5.1
    other = thread(k, t)
    wr(other, w2, b"z")  # not watched: no wake-up
    assert resume(t) is None
    wr(other, w, b"y")
    assert resume(t) == 1
    assert got(t, 1) == [(IN, r)]


def test_wait_timeout_and_infinite_interrupt():
    _, t = make_kernel()
    ep = sc(t, "epoll_create1", 0)
    r, _ = mkpipe(t)
    add(t, ep, r)
    assert wait(t, ep, 1, 300) is None
    assert expire(t) == 0
    assert wait(t, ep, 1, -1) is None
    assert t.blocked_on.deadline is None
    signals.send_task(t, F.SIGUSR1)
    t.kernel._resume_blocked(t)
    assert t.ctx.regs.rax == -E.EINTR & U64
    from cove.abi.sysnums import NR
    from cove.kernel.syscall import TABLE
    for name in ("epoll_wait", "epoll_pwait", "epoll_pwait2"):
        assert not TABLE[int(NR[name])].restartable  # EINTR even after SA_RESTART


def test_ctl_from_another_thread_wakes_the_sleeper():
    k, t = make_kernel()
    ep = sc(t, "epoll_create1", 0)
    assert wait(t, ep, 4, -1) is None  # an empty set: sleeps on the set itself
    other = thread(k, t)
    efd = sc(other, "eventfd2", 3, 0)
    assert add(other, ep, efd) == 0
    assert resume(t) == 1
    assert got(t, 1) == [(IN, efd)]


def test_epoll_fd_closed_while_waiting_keeps_waiting():
    k, t = make_kernel()
    ep = sc(t, "epoll_create1", 0)
    efd = sc(t, "eventfd2", 0, 0)
    add(t, ep, efd)
    assert wait(t, ep, 4, -1) is None
    other = thread(k, t)
    sc(other, "close", ep)
    assert resume(t) is None  # the set's queue was notified; nothing ready yet
    efd_write(other, efd)
    # The epoll set's last fd is gone, so its items were dropped with it
    # (cove releases at the last fd; Linux at the last reference): the
    # sleeper keeps sleeping rather than failing.
    assert resume(t) is None


# --- epoll_pwait / epoll_pwait2 -------------------------------------------------------
def test_pwait_swaps_the_mask_while_asleep():
    k, t = make_kernel()
    ep = sc(t, "epoll_create1", 0)
    r, w = mkpipe(t)
    add(t, ep, r)
    t.sigmask = 0b1010
    t.mm.write(MASK, struct.pack("<Q", 0xFF00))
    assert sc(t, "epoll_pwait", ep, OUT, 4, 3000, MASK, 8) is None
    kill_bit = 1 << (F.SIGKILL - 1)
    assert t.sigmask == 0xFF00 & ~kill_bit and t.saved_sigmask == 0b1010
    wr(thread(k, t), w, b"x")
    assert resume(t) == 1
    assert t.sigmask == 0b1010 and t.saved_sigmask is None


def test_pwait_timeout_mask_restored_and_pending_signal_eintr():
    _, t = make_kernel()
    ep = sc(t, "epoll_create1", 0)
    r, _ = mkpipe(t)
    add(t, ep, r)
    t.sigmask = 0b1
    t.mm.write(MASK, struct.pack("<Q", 0b110))
    assert sc(t, "epoll_pwait", ep, OUT, 4, 100, MASK, 8) is None
    assert expire(t) == 0
    assert t.sigmask == 0b1 and t.saved_sigmask is None
    usr1 = 1 << (F.SIGUSR1 - 1)
    t.sigmask = usr1
    signals.send_task(t, F.SIGUSR1)  # blocked: pending
    t.mm.write(MASK, struct.pack("<Q", 0))
    assert sc(t, "epoll_pwait", ep, OUT, 4, -1, MASK, 8) == -E.EINTR
    assert t.saved_sigmask == usr1  # put back by delivery
    signals.deliver(t)


def test_pwait_ready_events_win_over_a_pending_signal():
    _, t = make_kernel()
    ep = sc(t, "epoll_create1", 0)
    efd = sc(t, "eventfd2", 1, 0)
    add(t, ep, efd)
    usr1 = 1 << (F.SIGUSR1 - 1)
    t.sigmask = usr1
    signals.send_task(t, F.SIGUSR1)
    t.mm.write(MASK, struct.pack("<Q", 0))
    assert sc(t, "epoll_pwait", ep, OUT, 4, -1, MASK, 8) == 1
    assert t.sigmask == usr1 and t.saved_sigmask is None


def test_pwait_argument_errors():
    _, t = make_kernel()
    ep = sc(t, "epoll_create1", 0)
    t.mm.write(MASK, struct.pack("<Q", 0))
    # The mask is checked before anything else.
    assert sc(t, "epoll_pwait", 99, OUT, 0, 0, MASK, 4) == -E.EINVAL
    assert sc(t, "epoll_pwait", 99, OUT, 1, 0, 0x1000, 8) == -E.EFAULT
    assert sc(t, "epoll_pwait", 99, OUT, 1, 0, MASK, 8) == -E.EBADF
    assert sc(t, "epoll_pwait", ep, OUT, 1, 0, 0, 123) == 0  # no mask: size unused
    assert t.sigmask == 0 and t.saved_sigmask is None


def test_pwait2_timespec():
    _, t = make_kernel()
    ep = sc(t, "epoll_create1", 0)
    r, _ = mkpipe(t)
    add(t, ep, r)
    t.mm.write(TS, struct.pack("<qq", 0, 0))
    assert sc(t, "epoll_pwait2", ep, OUT, 4, TS, 0, 0) == 0  # immediate
    t.mm.write(TS, struct.pack("<qq", 2, 500_000_000))
    assert sc(t, "epoll_pwait2", ep, OUT, 4, TS, 0, 0) is None
    assert 2.4 < t.blocked_on.deadline - time.monotonic() < 2.6
    assert expire(t) == 0
    assert sc(t, "epoll_pwait2", ep, OUT, 4, 0, 0, 0) is None  # NULL: forever
    assert t.blocked_on.deadline is None
    t.kernel.sched.wake(t, interrupted=True)
    t.blocked_call = None
    t.mm.write(TS, struct.pack("<qq", 0, 1_000_000_000))
    assert sc(t, "epoll_pwait2", ep, OUT, 4, TS, 0, 0) == -E.EINVAL
    t.mm.write(TS, struct.pack("<qq", -1, 0))
    assert sc(t, "epoll_pwait2", ep, OUT, 4, TS, 0, 0) == -E.EINVAL
    # The timespec is read before the mask and the fd are looked at.
    assert sc(t, "epoll_pwait2", 99, OUT, 4, 0x1000, MASK, 3) == -E.EFAULT
    t.mm.write(TS, struct.pack("<qq", 0, 0))
    assert sc(t, "epoll_pwait2", 99, OUT, 4, TS, MASK, 3) == -E.EINVAL
    assert sc(t, "epoll_pwait2", 99, OUT, 4, TS, MASK, 8) == -E.EBADF


def test_garbage_arguments_never_break_a_handler():
    import random

    _, t = make_kernel()
    ep = sc(t, "epoll_create1", 0)
    r, w = mkpipe(t)
    add(t, ep, r)
    rng = random.Random(4)
    values = [0, 1, -1, 2, 3, ep, r, w, 99, 0x1000, SCRATCH, OUT, 1 << 63, U64,
              0x7FFFFFFF, -0x80000000]
    for name in ("epoll_create", "epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait",
                 "epoll_pwait2"):
        for _ in range(200):
            args = [rng.choice(values) for _ in range(6)]
            r_ = sc(t, name, *args)
            if r_ is None:  # went to sleep: wake it as a timeout would
                t.kernel.sched.wake(t, timed_out=True)
                resume(t)
                t.blocked_call = None
                continue
            assert r_ != -E.ENOSYS, (name, args)


# --- host stdio ------------------------------------------------------------------------
def test_host_pipe_sleeps_on_the_host_fd_and_et_acts_level_triggered():
    import os

    from cove.kernel.hostio import HostStdio

    a_r, a_w = os.pipe()
    b_r, b_w = os.pipe()
    try:
        k, t = make_kernel()
        stdio = HostStdio.attach(k, t.files, (a_r, b_w, b_w))
        ep = sc(t, "epoll_create1", 0)
        # A regular host file would be EPERM; a host pipe can be watched.
        assert add(t, ep, 0, IN | ET, data=1) == 0
        assert wait(t, ep, 4, 5000) is None
        assert t.blocked_on.host_fd is not None
        os.write(a_w, b"!")
        assert k.sched.next() is t
        assert resume(t) == 1
        assert got(t, 1) == [(IN, 1)]
        # No wake counts for host fds: reported while ready (documented limit).
        assert events(t, ep) == [(IN, 1)]
        rd(t, 0, 10)
        assert events(t, ep) == []
        assert add(t, ep, 1, OUTB, data=2) == 0
        assert events(t, ep) == [(OUTB, 2)]
        stdio.close()
    finally:
        for fd in (a_r, a_w, b_r, b_w):
            try:
                os.close(fd)
            except OSError:
                pass


def test_host_regular_file_is_eperm(tmp_path):
    import os

    from cove.kernel.hostio import HostStdio

    path = tmp_path / "f"
    path.write_bytes(b"data")
    fd = os.open(path, os.O_RDONLY)
    try:
        k, t = make_kernel()
        stdio = HostStdio.attach(k, t.files, (fd,))
        ep = sc(t, "epoll_create1", 0)
        assert add(t, ep, 0) == -E.EPERM
        stdio.close()
    finally:
        os.close(fd)


def test_a_dropped_sandbox_leaves_no_registrations_behind():
    import gc
    import weakref

    def build() -> weakref.ref:
        _, t = make_kernel()
        ep = sc(t, "epoll_create1", 0)
        r, _ = mkpipe(t)
        add(t, ep, r)
        return weakref.ref(t.files.get(r))

    gc.collect()
    before = len(epoll_mod._watchers)
    pipe_end = build()
    gc.collect()
    assert pipe_end() is None
    assert len(epoll_mod._watchers) == before
