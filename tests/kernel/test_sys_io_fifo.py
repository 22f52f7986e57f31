"""FIFOs in the VFS open as cove pipes (fifo_open's rules), through openat."""

from __future__ import annotations

import pytest

from cove.abi import flags as F
from cove.abi.errno import E
from cove.kernel.pipe import install_fifos

from .harness import SCRATCH, make_kernel
from .iohelp import AT_FDCWD, fstat, is_blocked, process, rd, resume, sc, thread, wr

pytestmark = pytest.mark.timeout(20)


def _fifo_kernel():
    k, t = make_kernel()
    opener = install_fifos(k.vfs)
    k.vfs.mknod(t.fs, None, "/fifo", F.S_IFIFO | 0o666)
    t.mm.write(SCRATCH, b"/fifo\0")
    return k, t, opener


def _open(t, flags: int) -> int | None:
    return sc(t, "openat", AT_FDCWD, SCRATCH, flags, 0)


def test_nonblocking_reader_opens_alone_and_reads_eof():
    _, t, _ = _fifo_kernel()
    fd = _open(t, F.O_RDONLY | F.O_NONBLOCK)
    assert fd is not None and fd >= 0
    assert rd(t, fd, 10) == b""
    # No POLLHUP until a writer has been seen (fs/pipe.c's f_version rule).
    t.mm.write(SCRATCH + 0x100, fd.to_bytes(4, "little") + F.POLLIN.to_bytes(2, "little")
               + b"\0\0")
    assert sc(t, "poll", SCRATCH + 0x100, 1, 0) == 0


def test_nonblocking_writer_without_reader_is_enxio():
    _, t, _ = _fifo_kernel()
    assert _open(t, F.O_WRONLY | F.O_NONBLOCK) == -E.ENXIO
    r = _open(t, F.O_RDONLY | F.O_NONBLOCK)
    w = _open(t, F.O_WRONLY | F.O_NONBLOCK)
    assert w is not None and w >= 0
    assert wr(t, w, b"ping") == 4
    assert rd(t, r, 10) == b"ping"


def test_rdwr_never_blocks_and_both_ends_share_one_pipe():
    _, t, opener = _fifo_kernel()
    a = _open(t, F.O_RDWR)
    b = _open(t, F.O_RDONLY)  # a writer exists (a): no wait
    assert a is not None and b is not None and a >= 0 and b >= 0
    assert t.files.get(a).pipe is t.files.get(b).pipe
    assert len(opener.pipes) == 1
    wr(t, a, b"via a")
    assert rd(t, b, 10) == b"via a"


def test_blocking_reader_waits_for_a_writer_that_comes_and_goes():
    # `cat fifo` waiting, then `echo hi > fifo`: the writer opens, writes and
    # closes before the reader runs again; the reader must still open, read
    # "hi" and then see EOF.
    k, t, _ = _fifo_kernel()
    assert _open(t, F.O_RDONLY) is None and is_blocked(t)
    writer = thread(k, t)
    w = _open(writer, F.O_WRONLY)  # a reader is waiting: no wait, no ENXIO
    assert w is not None and w >= 0
    assert wr(writer, w, b"hi") == 2
    assert sc(writer, "close", w) == 0
    r = resume(t)
    assert r is not None and r >= 0
    assert rd(t, r, 10) == b"hi"
    assert rd(t, r, 10) == b""


def test_waiting_reader_counts_for_a_nonblocking_writer():
    k, t, _ = _fifo_kernel()
    assert _open(t, F.O_RDONLY) is None
    writer = thread(k, t)
    w = _open(writer, F.O_WRONLY | F.O_NONBLOCK)
    assert w is not None and w >= 0
    assert resume(t) is not None


def test_blocking_writer_waits_for_a_reader():
    k, t, _ = _fifo_kernel()
    assert _open(t, F.O_WRONLY) is None and is_blocked(t)
    reader = thread(k, t)
    r = _open(reader, F.O_RDONLY | F.O_NONBLOCK)
    assert r is not None and r >= 0
    w = resume(t)
    assert w is not None and w >= 0
    assert wr(t, w, b"x") == 1
    assert rd(reader, r, 1) == b"x"


def test_blocking_reader_finds_a_waiting_writer():
    k, t, _ = _fifo_kernel()
    assert _open(t, F.O_WRONLY) is None
    reader = thread(k, t)
    r = _open(reader, F.O_RDONLY)  # the waiting writer counts: no wait, no deadlock
    assert r is not None and r >= 0
    assert rd(reader, r, 1, off=0x60000) is None  # a writer is on its way: not EOF
    w = resume(t)
    assert w is not None and w >= 0
    assert wr(t, w, b"z") == 1
    assert resume(reader) == 1


def test_interrupted_open_leaves_no_phantom_reader():
    _, t, _ = _fifo_kernel()
    assert _open(t, F.O_RDONLY) is None
    from cove.kernel import signals

    signals.send_task(t, F.SIGUSR1)  # wakes the sleeping open: EINTR
    t.kernel._resume_blocked(t)
    assert t.blocked_call is None and t.ctx.regs.rax == (-E.EINTR) & ((1 << 64) - 1)
    assert _open(t, F.O_WRONLY | F.O_NONBLOCK) == -E.ENXIO


def test_granted_reader_that_dies_before_running_is_no_reader():
    k, t, _ = _fifo_kernel()
    reader = process(k, t)
    reader.mm.write(SCRATCH, b"/fifo\0")
    assert _open(reader, F.O_RDONLY) is None
    w = _open(t, F.O_WRONLY)
    assert w is not None and w >= 0
    assert wr(t, w, b"x") == 1  # the granted reader counts while it is on its way
    k.exit_group(reader.proc, 9)
    assert wr(t, w, b"x") == -E.EPIPE


def test_data_is_dropped_when_the_last_end_closes():
    _, t, opener = _fifo_kernel()
    a = _open(t, F.O_RDWR)
    wr(t, a, b"lost")
    sc(t, "close", a)
    assert opener.pipes == {}
    b = _open(t, F.O_RDWR | F.O_NONBLOCK)
    assert rd(t, b, 10) == -E.EAGAIN


def test_fstat_of_a_fifo_is_the_fifo_inode():
    k, t, _ = _fifo_kernel()
    st = k.vfs.stat(t.fs, None, "/fifo")
    fd = _open(t, F.O_RDWR)
    _, ino, mode, _ = fstat(t, fd)
    assert (ino, mode) == (st.ino, st.mode)
    assert mode & F.S_IFMT == F.S_IFIFO


def test_fifo_without_the_opener_is_enxio():
    k, t = make_kernel()
    k.vfs.mknod(t.fs, None, "/fifo", F.S_IFIFO | 0o666)
    t.mm.write(SCRATCH, b"/fifo\0")
    assert sc(t, "openat", AT_FDCWD, SCRATCH, F.O_RDWR, 0) == -E.ENXIO
