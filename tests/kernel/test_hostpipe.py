"""Host-backed pipes (cove.kernel.hostpipe) in the North alone: every test of
tests/kernel/test_sys_io_pipe.py again, over a fake platform that asks for
host pipes, plus the native-path decisions (NativePipes.native_rw) a
platform would get, state by state."""

from __future__ import annotations

import os
import struct

import pytest

from cove.abi import flags as F
from cove.abi.errno import E
from cove.kernel.hostpipe import HOST_PIPES_MAX, HostPipe, HostPipeFile, NativePipes
from cove.kernel.pipe import PipeFile
from cove.platform.base import PROT_WRITE, Capabilities, NativeIo

from . import harness, iohelp
from . import test_sys_io_pipe as cove_pipe_tests
from .fakes import FakeSpace
from .harness import SCRATCH, call, make_kernel, put
from .iohelp import is_blocked, mkpipe, rd, resume, sc, thread, wr


class TranslatingSpace(FakeSpace):
    """FakeSpace plus the contract's EFAULT test (the North's zero-copy path uses it)."""

    def translate(self, vaddr: int, write: bool = False) -> int | None:
        e = self.pages.get(vaddr & ~0xFFF)
        if e is None or not e[1] or (write and not e[1] & PROT_WRITE):
            return None
        return (e[0] << 12) | (vaddr & 0xFFF)


class NativePlatform(harness.FakePlatform):
    capabilities = Capabilities("fake", "none", 512, 3, native_pipes=True)
    native: NativeIo | None = None

    def set_native_io(self, io: NativeIo | None) -> None:
        self.native = io


@pytest.fixture
def host_pipes(monkeypatch: pytest.MonkeyPatch) -> None:
    """make_kernel() now builds kernels whose anonymous pipes are host pipes."""
    monkeypatch.setattr(harness, "FakePlatform", NativePlatform)
    monkeypatch.setattr(harness, "FakeSpace", TranslatingSpace)
    monkeypatch.setattr(iohelp, "FakeSpace", TranslatingSpace)


# Where cove's own pipe counts capacity in bytes and Linux (so a host pipe)
# in page slots, the numbers differ; the host pipe's are checked against
# Linux's below (test_linux_slot_accounting).
BYTE_COUNTING = {
    "test_full_pipe_nonblocking_and_pipe_buf_atomicity",
    "test_large_write_is_partial",
    "test_blocking_writer_sleeps_on_a_full_pipe_until_a_read",
    "test_pipe_size_fcntl",
}
COVE_PIPE_TESTS = [getattr(cove_pipe_tests, n) for n in dir(cove_pipe_tests)
                   if n.startswith("test_") and n not in BYTE_COUNTING]


@pytest.mark.parametrize("test", COVE_PIPE_TESTS, ids=lambda f: f.__name__)
def test_the_pipe_tests_pass_over_host_pipes(host_pipes, test) -> None:
    test()


def test_linux_slot_accounting(host_pipes) -> None:
    """The values the host kernel gives (checked against Linux 6.x by hand:
    os.pipe2 in the same steps)."""
    k, t = make_kernel()
    r, w = mkpipe(t, F.O_NONBLOCK)
    big = put(t, b"a" * 65536, 0x60000)
    assert sc(t, "write", w, big, 65536) == 65536
    assert rd(t, r, 100) == b"a" * 100
    # The 100 bytes freed are in the first page: no slot is free yet.
    assert wr(t, w, b"b" * 200) == -E.EAGAIN
    assert wr(t, w, b"c" * 50) == -E.EAGAIN
    assert wr(t, w, b"d" * 5000) == -E.EAGAIN
    r, w = mkpipe(t, F.O_NONBLOCK, at=0xF10)
    assert wr(t, w, b"x" * 100) == 100
    t.mm.write(SCRATCH + 0x20000, b"y" * 100_000)
    # 100000 % 4096 bytes merge into the first page, then 15 whole pages.
    assert sc(t, "write", w, SCRATCH + 0x20000, 100_000) == 1696 + 15 * 4096
    r, w = mkpipe(t, F.O_NONBLOCK, at=0xF20)
    assert sc(t, "fcntl", w, F.F_SETPIPE_SZ, 16384) == 16384
    assert sc(t, "write", w, big, 10000) == 10000
    assert sc(t, "write", w, big, 10000) == 1808 + 4096
    # A blocked writer stays asleep until a whole slot is free.
    r, w = mkpipe(t, at=0xF30)
    assert sc(t, "write", w, big, 65536) == 65536
    assert wr(t, w, b"more") is None and is_blocked(t)
    reader = thread(k, t)
    assert rd(reader, r, 10) == b"a" * 10
    assert resume(t) is None
    assert rd(reader, r, 4086) == b"a" * 4086
    assert resume(t) == 4


def test_the_pipes_are_host_pipes(host_pipes) -> None:
    k, t = make_kernel()
    r, _ = mkpipe(t)
    f = t.files.get(r)
    assert type(f) is HostPipeFile and isinstance(f.pipe, HostPipe)
    assert isinstance(k.platform.native, NativePipes) and isinstance(k.platform.native, NativeIo)


def test_without_the_capability_pipes_are_cove_pipes() -> None:
    _, t = make_kernel()
    r, _ = mkpipe(t)
    assert type(t.files.get(r)) is PipeFile


def _host_fds(t, fd: int) -> HostPipe:
    return t.files.get(fd).pipe


def test_native_reads_are_granted_only_with_data(host_pipes) -> None:
    k, t = make_kernel()
    r, w = mkpipe(t)
    io = k.platform.native
    k.current = t
    assert io.native_rw(t.ctx, r, False, 10) is None  # empty: the North sleeps or says EOF
    assert call(t, "write", w, put(t, b"abcdef"), 6) == 6
    g = io.native_rw(t.ctx, r, False, 10)
    assert g is not None and g.limit == 6 and g.host_fd == _host_fds(t, r).rd
    assert io.native_rw(t.ctx, r, False, 4).limit == 4
    assert io.native_rw(t.ctx, w, False, 4) is None  # not readable
    assert io.native_rw(t.ctx, r, False, 0) is None
    assert io.native_rw(t.ctx, 99, False, 4) is None  # no such fd
    assert io.native_rw(object(), r, False, 4) is None  # not the current task's context
    k.trace = open(os.devnull, "w")
    try:
        assert io.native_rw(t.ctx, r, False, 4) is None  # --trace sees every call
    finally:
        k.trace.close()
        k.trace = None


def test_native_writes_are_granted_only_when_they_complete_at_once(host_pipes) -> None:
    k, t = make_kernel()
    r, w = mkpipe(t)
    io = k.platform.native
    k.current = t
    g = io.native_rw(t.ctx, w, True, 65536)
    assert g is not None and g.limit == 65536 and g.host_fd == _host_fds(t, w).wr
    assert io.native_rw(t.ctx, w, True, 65537) is None  # more than the pipe holds
    assert io.native_rw(t.ctx, r, True, 1) is None  # not writable
    assert call(t, "write", w, put(t, b"x"), 1) == 1
    assert io.native_rw(t.ctx, w, True, 4096) is not None  # a free slot takes a page
    assert io.native_rw(t.ctx, w, True, 4097) is None  # not empty: slots unknown
    buf = put(t, bytes(65536), 0x1000)
    assert sc(t, "write", w, buf, 65536) > 0
    while sc(t, "write", w, buf, 4096) is not None:
        pass  # until it sleeps: full
    assert io.native_rw(t.ctx, w, True, 1) is None
    assert call(t, "close", r) == 0
    # No reader: EPIPE and SIGPIPE are the North's.
    r2, w2 = mkpipe(t, at=0xF10)
    assert call(t, "close", r2) == 0
    assert io.native_rw(t.ctx, w2, True, 1) is None
    # Packet mode is the writing file's O_DIRECT, which the host file lacks.
    r3, w3 = mkpipe(t, F.O_DIRECT, at=0xF20)
    assert io.native_rw(t.ctx, w3, True, 1) is None
    assert io.native_rw(t.ctx, r3, False, 1) is None


def test_a_native_call_wakes_sleepers_and_counts_as_an_edge(host_pipes) -> None:
    k, t = make_kernel()
    r, w = mkpipe(t)
    reader = thread(k, t)
    assert call(reader, "read", r, SCRATCH + 0x100, 8) is not None
    assert is_blocked(reader)
    io = k.platform.native
    k.current = t
    q = _host_fds(t, r).rd_q
    gen = q.gen
    g = io.native_rw(t.ctx, w, True, 3)
    os.write(g.host_fd, b"abc")  # what the host kernel does for the platform
    g.commit()
    assert q.gen == gen + 1 and not is_blocked(reader)
    # The writer's next call goes through the North, which then switches to
    # the woken reader; the call after that may run natively again.
    assert io.native_rw(t.ctx, w, True, 1) is None
    assert io.native_rw(t.ctx, w, True, 1) is not None


def test_host_pipes_are_closed_with_the_last_end(host_pipes) -> None:
    _, t = make_kernel()
    r, w = mkpipe(t)
    p = _host_fds(t, r)
    fds = (p.rd, p.wr)
    os.fstat(fds[0])
    assert call(t, "close", r) == 0
    os.fstat(fds[1])  # the write end is still open: so is the host pipe
    assert call(t, "close", w) == 0
    for fd in fds:
        with pytest.raises(OSError):
            os.fstat(fd)


def test_past_the_limit_pipes_are_cove_pipes(host_pipes) -> None:
    k, t = make_kernel()
    t.proc.rlimits[F.RLIMIT_NOFILE] = (4096, 4096)
    t.files.limit = 4096
    ends = [mkpipe(t, at=0xF00) for _ in range(HOST_PIPES_MAX)]
    assert all(type(t.files.get(r)) is HostPipeFile for r, _ in ends)
    r, _ = mkpipe(t, at=0xF00)
    assert type(t.files.get(r)) is PipeFile
    assert call(t, "close", ends[0][0]) == 0 and call(t, "close", ends[0][1]) == 0
    r, _ = mkpipe(t, at=0xF00)
    assert type(t.files.get(r)) is HostPipeFile
    assert k.native_io.live == HOST_PIPES_MAX


def test_zero_copy_reads_and_writes_keep_the_partial_io_rules(host_pipes) -> None:
    _, t = make_kernel()
    r, w = mkpipe(t)
    data = bytes(range(256)) * 40  # 10240 bytes across page boundaries
    src = put(t, data, 0x3F00)
    assert call(t, "write", w, src, len(data)) == len(data)
    iov = struct.pack("<QQQQ", SCRATCH + 0x8F00, 300, SCRATCH + 0x20000, 20000)
    assert call(t, "readv", r, put(t, iov, 0x100), 2) == len(data)
    got = t.mm.read(SCRATCH + 0x8F00, 300) + t.mm.read(SCRATCH + 0x20000, len(data) - 300)
    assert got == data
