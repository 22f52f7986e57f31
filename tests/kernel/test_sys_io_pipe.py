"""pipe/pipe2 and cove's pipe semantics, through the real dispatcher."""

from __future__ import annotations

import struct

import pytest

from cove.abi import flags as F
from cove.abi.errno import E, Errno
from cove.fs.file import O_ACCMODE, O_RDONLY, O_WRONLY, File
from cove.kernel.pipe import PIPE_DEF_SIZE, PipeFile, pipe_fcntl

from .harness import SCRATCH, call, make_kernel
from .iohelp import fstat, is_blocked, mkpipe, pending, rd, resume, sc, thread, wr

pytestmark = pytest.mark.timeout(20)


def test_pipe2_gives_a_read_end_and_a_write_end():
    _, t = make_kernel()
    r, w = mkpipe(t)
    assert (r, w) == (0, 1)
    fr, fw = t.files.get(r), t.files.get(w)
    assert isinstance(fr, PipeFile) and fr.pipe is fw.pipe
    assert fr.flags & O_ACCMODE == O_RDONLY and fw.flags & O_ACCMODE == O_WRONLY
    assert wr(t, w, b"hello") == 5
    assert rd(t, r, 3) == b"hel"
    assert rd(t, r, 100) == b"lo"
    # Wrong directions are EBADF.
    assert wr(t, r, b"x") == -E.EBADF
    assert rd(t, w, 1) == -E.EBADF


def test_pipe_is_pipe2_without_flags_and_flags_are_checked():
    _, t = make_kernel()
    assert call(t, "pipe", SCRATCH) == 0
    assert struct.unpack("<ii", t.mm.read(SCRATCH, 8)) == (0, 1)
    assert call(t, "pipe2", SCRATCH, F.O_APPEND) == -E.EINVAL
    assert call(t, "pipe2", SCRATCH, 0x80000000) == -E.EINVAL
    assert call(t, "pipe2", SCRATCH, F.O_EXCL) == -E.ENOPKG  # O_NOTIFICATION_PIPE
    r, w = mkpipe(t, F.O_CLOEXEC | F.O_NONBLOCK | F.O_DIRECT)
    assert {r, w} <= t.files.cloexec
    assert t.files.get(r).flags & F.O_NONBLOCK and t.files.get(w).flags & F.O_DIRECT


def test_pipe2_bad_pointer_is_efault_and_leaks_no_fd():
    _, t = make_kernel()
    before = dict(t.files.files)
    assert call(t, "pipe2", 0x1000, 0) == -E.EFAULT
    assert t.files.files == before


def test_pipe2_emfile_releases_the_first_end():
    _, t = make_kernel()
    t.files.limit = 1
    assert call(t, "pipe2", SCRATCH, 0) == -E.EMFILE
    assert t.files.files == {}


def test_empty_pipe_nonblocking_is_eagain_and_blocking_sleeps_until_data():
    k, t = make_kernel()
    r, _w = mkpipe(t, F.O_NONBLOCK)
    assert rd(t, r, 10) == -E.EAGAIN
    r2, w2 = mkpipe(t)
    assert rd(t, r2, 10) is None and is_blocked(t)
    writer = thread(k, t)
    assert wr(writer, w2, b"data") == 4
    assert not is_blocked(t)  # the write woke the reader
    assert resume(t) == 4
    assert t.mm.read(SCRATCH + 0x40000, 4) == b"data"


def test_eof_when_no_writers_and_a_sleeping_reader_wakes_to_it():
    k, t = make_kernel()
    r, w = mkpipe(t)
    assert wr(t, w, b"x") == 1
    other = thread(k, t)
    assert rd(t, r, 10) == b"x"
    assert rd(t, r, 10) is None
    assert sc(other, "close", w) == 0
    assert resume(t) == 0  # EOF
    assert rd(t, r, 10) == b""


def test_dup_keeps_the_write_end_open():
    _, t = make_kernel()
    r, w = mkpipe(t, F.O_NONBLOCK)
    w2 = sc(t, "dup", w)
    assert sc(t, "close", w) == 0
    assert rd(t, r, 10) == -E.EAGAIN  # a writer remains: not EOF
    assert sc(t, "close", w2) == 0
    assert rd(t, r, 10) == b""


def test_epipe_and_sigpipe_without_readers():
    _, t = make_kernel()
    r, w = mkpipe(t)
    assert sc(t, "close", r) == 0
    assert wr(t, w, b"") == 0  # a null write succeeds before the reader check
    assert not pending(t, F.SIGPIPE)
    assert wr(t, w, b"x") == -E.EPIPE
    assert pending(t, F.SIGPIPE)


def test_sigpipe_ignored_still_gives_epipe():
    _, t = make_kernel()
    t.proc.sighand.actions[F.SIGPIPE].handler = 1  # SIG_IGN
    r, w = mkpipe(t)
    sc(t, "close", r)
    assert wr(t, w, b"x") == -E.EPIPE
    assert not pending(t, F.SIGPIPE)


def test_full_pipe_nonblocking_and_pipe_buf_atomicity():
    _, t = make_kernel()
    r, w = mkpipe(t, F.O_NONBLOCK)
    big = b"a" * PIPE_DEF_SIZE
    t.mm.write(SCRATCH + 0x2000, big)
    assert sc(t, "write", w, SCRATCH + 0x2000, PIPE_DEF_SIZE) == PIPE_DEF_SIZE
    assert wr(t, w, b"x") == -E.EAGAIN
    assert rd(t, r, 100) == b"a" * 100
    # 100 bytes free: a 200-byte write (≤ PIPE_BUF) is all or nothing ...
    assert wr(t, w, b"b" * 200) == -E.EAGAIN
    # ... a write that fits goes in whole.
    assert wr(t, w, b"c" * 50) == 50
    # Large writes need a page of room, then may be partial.
    assert wr(t, w, b"d" * 5000) == -E.EAGAIN


def test_large_write_is_partial():
    _, t = make_kernel()
    r, w = mkpipe(t, F.O_NONBLOCK)
    assert wr(t, w, b"x" * 100) == 100
    n = 100_000
    t.mm.write(SCRATCH + 0x2000, b"y" * n)
    got = sc(t, "write", w, SCRATCH + 0x2000, n)
    assert got == PIPE_DEF_SIZE - 100
    ioctl_n = SCRATCH + 0x100
    assert sc(t, "ioctl", r, F.FIONREAD, ioctl_n) == 0
    assert struct.unpack("<i", t.mm.read(ioctl_n, 4))[0] == PIPE_DEF_SIZE


def test_blocking_writer_sleeps_on_a_full_pipe_until_a_read():
    k, t = make_kernel()
    r, w = mkpipe(t)
    t.mm.write(SCRATCH + 0x2000, b"z" * PIPE_DEF_SIZE)
    assert sc(t, "write", w, SCRATCH + 0x2000, PIPE_DEF_SIZE) == PIPE_DEF_SIZE
    assert wr(t, w, b"more") is None and is_blocked(t)
    reader = thread(k, t)
    assert rd(reader, r, 10) == b"z" * 10
    assert resume(t) == 4


def test_blocked_writer_gets_epipe_when_the_last_reader_closes():
    k, t = make_kernel()
    r, w = mkpipe(t)
    t.mm.write(SCRATCH + 0x2000, b"z" * PIPE_DEF_SIZE)
    sc(t, "write", w, SCRATCH + 0x2000, PIPE_DEF_SIZE)
    assert wr(t, w, b"more") is None
    other = thread(k, t)
    assert sc(other, "close", r) == 0
    assert resume(t) == -E.EPIPE
    assert pending(t, F.SIGPIPE)


def test_pipe_size_fcntl():
    _, t = make_kernel()
    r, w = mkpipe(t, F.O_NONBLOCK)
    assert sc(t, "fcntl", r, F.F_GETPIPE_SZ, 0) == PIPE_DEF_SIZE
    assert sc(t, "fcntl", w, F.F_SETPIPE_SZ, 5000) == 8192
    assert sc(t, "fcntl", r, F.F_GETPIPE_SZ, 0) == 8192
    assert sc(t, "fcntl", w, F.F_SETPIPE_SZ, 0) == 4096  # rounded up to a page
    assert sc(t, "fcntl", w, F.F_SETPIPE_SZ, 1 << 20) == 1 << 20
    assert sc(t, "fcntl", w, F.F_SETPIPE_SZ, (1 << 20) + 1) == -E.EPERM
    assert sc(t, "fcntl", w, F.F_SETPIPE_SZ, 1 << 31) == -E.EPERM
    assert sc(t, "fcntl", w, F.F_SETPIPE_SZ, (1 << 31) + 1) == -E.EINVAL
    t.mm.write(SCRATCH + 0x2000, b"q" * 10000)
    assert sc(t, "write", w, SCRATCH + 0x2000, 10000) == 10000
    assert sc(t, "fcntl", w, F.F_SETPIPE_SZ, 8192) == -E.EBUSY  # 3 pages of data
    assert sc(t, "fcntl", w, F.F_SETPIPE_SZ, 16384) == 16384
    # The new size is the capacity: 16384 - 10000 bytes of room.
    t.mm.write(SCRATCH + 0x2000, b"q" * 10000)
    assert sc(t, "write", w, SCRATCH + 0x2000, 10000) == 6384
    with pytest.raises(Errno) as ei:
        pipe_fcntl(File(0), F.F_GETPIPE_SZ, 0)
    assert ei.value.errno == E.EBADF


def test_pipe_size_on_a_non_pipe_is_ebadf():
    _, t = make_kernel()
    path = SCRATCH + 0x10
    t.mm.write(path, b"/f\0")
    fd = sc(t, "openat", -100, path, F.O_CREAT | F.O_RDWR, 0o644)
    assert fd is not None and fd >= 0
    assert sc(t, "fcntl", fd, F.F_GETPIPE_SZ, 0) == -E.EBADF


def test_packet_mode_reads_one_write_at_a_time():
    _, t = make_kernel()
    r, w = mkpipe(t, F.O_DIRECT | F.O_NONBLOCK)
    assert wr(t, w, b"a" * 10) == 10
    assert wr(t, w, b"b" * 20) == 20
    assert rd(t, r, 100) == b"a" * 10
    assert rd(t, r, 5) == b"b" * 5  # the rest of that packet is gone
    assert rd(t, r, 5) == -E.EAGAIN
    n = 0
    while wr(t, w, b"x") == 1:
        n += 1
    assert n == 16  # one page per packet


def test_stream_writes_merge():
    _, t = make_kernel()
    r, w = mkpipe(t, F.O_NONBLOCK)
    for chunk in (b"ab", b"cd", b"ef"):
        wr(t, w, chunk)
    assert rd(t, r, 100) == b"abcdef"


def test_fstat_and_fionread_of_a_pipe():
    _, t = make_kernel()
    r, w = mkpipe(t)
    dev_r, ino_r, mode_r, _ = fstat(t, r)
    dev_w, ino_w, mode_w, _ = fstat(t, w)
    assert mode_r == F.S_IFIFO | 0o600 == mode_w
    assert (dev_r, ino_r) == (dev_w, ino_w)
    r2, _ = mkpipe(t)
    assert fstat(t, r2)[1] != ino_r  # each pipe its own inode
    wr(t, w, b"12345")
    for fd in (r, w):
        assert sc(t, "ioctl", fd, F.FIONREAD, SCRATCH + 0x100) == 0
        assert struct.unpack("<i", t.mm.read(SCRATCH + 0x100, 4))[0] == 5
    assert sc(t, "ioctl", r, F.TCGETS, SCRATCH + 0x100) == -E.ENOTTY
    assert sc(t, "lseek", r, 0, 0) == -E.ESPIPE


def test_read_into_a_bad_buffer_keeps_the_data():
    _, t = make_kernel()
    r, w = mkpipe(t, F.O_NONBLOCK)
    wr(t, w, b"keep")
    assert sc(t, "read", r, 0x1000, 4) == -E.EFAULT
    assert rd(t, r, 10) == b"keep"
