"""The North's side of running more guest I/O natively (cove.kernel.hostpipe):
a woken read/write on a host pipe is handed back to the platform instead of
re-running its handler (NativePipes.resume), a call the yielding rule turns
away is preempted at its entry and one that would sleep is parked without
its handler (Kernel.syscall, NativePipes.claim), and
/dev/null and /dev/zero are granted on the host's own devices."""

from __future__ import annotations

import os

import pytest

from cove.abi import flags as F
from cove.abi.sysnums import NR
from cove.kernel.hostpipe import NATIVE_ZERO_MAX, NativeDevice
from cove.kernel.task import State

from . import harness, iohelp
from .harness import SCRATCH, call, make_kernel, put
from .iohelp import is_blocked, mkpipe, open_dev, thread
from .test_hostpipe import NativePlatform, TranslatingSpace

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def native(monkeypatch: pytest.MonkeyPatch) -> None:
    """make_kernel() builds kernels whose anonymous pipes are host pipes."""
    monkeypatch.setattr(harness, "FakePlatform", NativePlatform)
    monkeypatch.setattr(harness, "FakeSpace", TranslatingSpace)
    monkeypatch.setattr(iohelp, "FakeSpace", TranslatingSpace)


class RetryCpu:
    """A cpu that takes every call handed back (records the contexts)."""

    def __init__(self, accept: bool = True) -> None:
        self.accept = accept
        self.handed: list[object] = []

    def set_timeslice(self, seconds: float | None) -> None:
        pass

    def retry_native(self, ctx: object) -> bool:
        if self.accept:
            self.handed.append(ctx)
        return self.accept


def _blocked_reader(k, t):
    r, w = mkpipe(t)
    reader = thread(k, t)
    assert call(reader, "read", r, SCRATCH + 0x100, 8) is not None and is_blocked(reader)
    return r, w, reader


def test_a_woken_pipe_read_is_handed_back_unanswered(native) -> None:
    k, t = make_kernel()
    k.cpu = cpu = RetryCpu()
    r, w, reader = _blocked_reader(k, t)
    assert call(t, "write", w, put(t, b"abc"), 3) == 3
    assert reader.state is State.RUNNABLE
    k._resume_blocked(reader)
    assert cpu.handed == [reader.ctx]
    assert reader.blocked_call is None and reader.state is State.RUNNABLE
    assert reader.ctx.regs.rax == NR["read"]  # no result: the platform runs the call
    assert t.files.get(r).pipe.nbytes == 3


@pytest.mark.parametrize("why", ["signal", "trace", "no-retry", "not-a-pipe"])
def test_the_north_reruns_the_call_when_it_must(native, why) -> None:
    k, t = make_kernel()
    k.cpu = cpu = RetryCpu(accept=why != "no-retry")
    r, w, reader = _blocked_reader(k, t)
    if why == "not-a-pipe":
        # The blocked call's fd now names another file (dup2 by another thread).
        keep = call(t, "dup", r)
        f = call(t, "openat", -100, put(t, b"/f\0", 0xE00), F.O_RDWR | F.O_CREAT, 0o600)
        assert keep >= 0 and f >= 0 and call(t, "dup2", f, r) == r
        assert call(t, "write", w, put(t, b"abc"), 3) == 3
    else:
        assert call(t, "write", w, put(t, b"abc"), 3) == 3
    if why == "signal":
        reader.proc.shared_pending.mask |= 1 << (F.SIGUSR1 - 1)  # blocked by its mask
        reader.sigmask |= 1 << (F.SIGUSR1 - 1)
    if why == "trace":
        k.trace = open(os.devnull, "w")
    try:
        k._resume_blocked(reader)
    finally:
        if why == "trace":
            k.trace.close()
            k.trace = None
    assert cpu.handed == []
    assert reader.blocked_call is None
    if why == "not-a-pipe":
        assert reader.ctx.regs.rax == 0  # the North read the (empty) file
        assert t.files.get(keep).pipe.nbytes == 3
    else:
        assert reader.ctx.regs.rax == 3 and t.mm.read(SCRATCH + 0x100, 3) == b"abc"


def test_a_yielding_call_is_preempted_at_its_entry(native) -> None:
    """A native write woke a sleeper: the writer's next call, which could run
    natively, is not answered by the North but put back (blocked_call set,
    still runnable) so the woken reader runs first; when it runs again the
    call is handed to the platform."""
    k, t = make_kernel()
    k.cpu = cpu = RetryCpu()
    _, w, reader = _blocked_reader(k, t)
    io = k.native_io
    k.current = t
    g = io.native_rw(t.ctx, w, True, 3)
    os.write(g.host_fd, b"abc")  # what the host kernel does for the platform
    g.commit()
    assert reader.state is State.RUNNABLE and k.sched.runq
    # The writer's next call: a native one the yielding rule turns away.
    assert io.native_rw(t.ctx, w, True, 2) is None and io.deferred == (t, w, True)
    t.ctx.regs.rax = NR["write"]
    t.ctx.regs.rdi, t.ctx.regs.rsi, t.ctx.regs.rdx = w, put(t, b"de"), 2
    k.syscall(t)
    assert io.deferred is None
    assert t.blocked_call is not None and t.state is State.RUNNABLE
    assert t.ctx.regs.rax == NR["write"]  # unanswered
    assert t.files.get(w).pipe.nbytes == 3  # nothing written yet
    k._resume_blocked(t)
    assert cpu.handed == [t.ctx] and t.blocked_call is None


def test_no_preemption_without_another_task_to_run(native) -> None:
    k, t = make_kernel()
    k.cpu = RetryCpu()
    _, w = mkpipe(t)
    k.native_io.deferred = (t, w, True)
    k.sched.runq.clear()
    assert call(t, "write", w, put(t, b"de"), 2) == 2  # the North answers it
    assert t.blocked_call is None and k.native_io.deferred is None


def test_a_preempted_call_with_a_signal_meanwhile_completes_first(native) -> None:
    """A signal sent to the preempted task before it runs again: the North
    completes the call (no hand-back), the signal is delivered after it."""
    k, t = make_kernel()
    k.cpu = cpu = RetryCpu()
    _, w = mkpipe(t)
    other = thread(k, t)
    k.sched.runq.append(other)
    k.native_io.deferred = (t, w, True)
    t.ctx.regs.rax = NR["write"]
    t.ctx.regs.rdi, t.ctx.regs.rsi, t.ctx.regs.rdx = w, put(t, b"de"), 2
    k.syscall(t)
    assert t.blocked_call is not None
    t.pending.mask |= 1 << (F.SIGUSR1 - 1)
    k._resume_blocked(t)
    assert cpu.handed == [] and t.ctx.regs.rax == 2 and t.blocked_call is None


# --- devices -------------------------------------------------------------------------
@pytest.mark.skipif(not (os.path.exists("/dev/null") and os.path.exists("/dev/zero")),
                    reason="the host has no /dev/null or /dev/zero")
def test_devices_are_granted_on_the_hosts_own(native) -> None:
    k, t = make_kernel()
    mkpipe(t)  # makes the kernel's native-I/O table
    io = k.native_io
    k.current = t
    null, zero = open_dev(t, "/dev/null", F.O_RDWR), open_dev(t, "/dev/zero", F.O_RDWR)
    ro, wo = open_dev(t, "/dev/null", F.O_RDONLY), open_dev(t, "/dev/zero", F.O_WRONLY)
    full, rnd = open_dev(t, "/dev/full", F.O_RDWR), open_dev(t, "/dev/urandom", F.O_RDWR)
    g = io.native_rw(t.ctx, null, True, 100)
    assert isinstance(g, NativeDevice) and g.limit == 0  # write_null reads nothing
    st = os.fstat(g.host_fd)
    assert st.st_rdev == os.makedev(1, 3)
    assert io.native_rw(t.ctx, null, False, 100).limit == 0  # read_null stores nothing
    g = io.native_rw(t.ctx, zero, False, 4096)
    assert g.limit == 4096 and os.fstat(g.host_fd).st_rdev == os.makedev(1, 5)
    # Longer reads could be cut short by a host-side interrupt (read_zero checks
    # signal_pending after each page): never native.
    assert NATIVE_ZERO_MAX <= 4096
    assert io.native_rw(t.ctx, zero, False, NATIVE_ZERO_MAX + 1) is None
    assert io.native_rw(t.ctx, zero, True, 100).limit == 0
    assert io.native_rw(t.ctx, ro, True, 1) is None  # EBADF is the North's
    assert io.native_rw(t.ctx, wo, False, 1) is None
    assert io.native_rw(t.ctx, full, True, 1) is None  # ENOSPC is the North's
    assert io.native_rw(t.ctx, rnd, False, 1) is None
    assert g.key is g and io.native_rw(t.ctx, zero, False, 1).key is g  # one host file


def test_no_devices_without_native_io() -> None:
    """On a platform without native I/O the devices never make the table."""
    k, t = make_kernel()
    fd = open_dev(t, "/dev/null", F.O_RDWR)
    assert call(t, "write", fd, SCRATCH, 10) == 10
    assert k.native_io is None


@pytest.mark.parametrize("op", ["read", "write"])
def test_a_call_that_would_sleep_is_parked_without_its_handler(native, op) -> None:
    """The platform asked about a read of an empty pipe (a write to a full
    one): the kernel parks the task on the queue the handler would have
    used, without running it; woken, the call is handed back unanswered."""
    k, t = make_kernel()
    k.cpu = cpu = RetryCpu()
    r, w = mkpipe(t)
    io = k.native_io
    k.current = t
    pipe = t.files.get(r).pipe
    if op == "write":
        os.write(pipe.wr, bytes(65536))  # full
    fd, nr = (w, "write") if op == "write" else (r, "read")
    assert io.native_rw(t.ctx, fd, op == "write", 100) is None
    assert io.deferred == (t, fd, op == "write")
    t.ctx.regs.rax = NR[nr]
    t.ctx.regs.rdi, t.ctx.regs.rsi, t.ctx.regs.rdx = fd, SCRATCH + 0x100, 100
    k.syscall(t)
    assert is_blocked(t) and t.ctx.regs.rax == NR[nr]
    assert t.blocked_on.queues == ((pipe.wr_q,) if op == "write" else (pipe.rd_q,))
    other = thread(k, t)
    if op == "write":
        assert call(other, "read", r, SCRATCH + 0x40000, 65536) == 65536
    else:
        assert call(other, "write", w, put(other, b"x", 0x200), 1) == 1
    assert t.state is State.RUNNABLE
    k._resume_blocked(t)
    assert cpu.handed == [t.ctx] and t.blocked_call is None


def test_no_parking_for_nonblocking_files_or_a_missing_peer(native) -> None:
    """O_NONBLOCK (EAGAIN), no writer (EOF) and no reader (EPIPE) are the
    handler's answers: nothing is parked."""
    k, t = make_kernel()
    r, _ = mkpipe(t, F.O_NONBLOCK)
    io = k.native_io
    k.current = t
    assert io.native_rw(t.ctx, r, False, 10) is None and io.deferred is None
    r2, w2 = mkpipe(t, at=0xF10)
    assert call(t, "close", w2) == 0
    assert io.native_rw(t.ctx, r2, False, 10) is None and io.deferred is None
    r3, w3 = mkpipe(t, at=0xF20)
    assert call(t, "close", r3) == 0
    assert io.native_rw(t.ctx, w3, True, 10) is None and io.deferred is None


def test_a_verdict_is_only_about_its_own_call(native) -> None:
    """A stale verdict never swallows another call (other fd, other
    direction, other syscall, other task): the North answers those."""
    k, t = make_kernel()
    r, w = mkpipe(t)
    io = k.native_io
    k.current = t
    assert io.native_rw(t.ctx, r, False, 10) is None and io.deferred is not None
    assert call(t, "write", w, put(t, b"abc"), 3) == 3  # not the parked read
    assert io.deferred is None and not is_blocked(t)
    assert call(t, "read", r, SCRATCH + 0x100, 10) == 3
