"""ioctl: generic requests for every fd, then the file's own."""

from __future__ import annotations

import struct

import pytest

from cove.abi import flags as F
from cove.abi.errno import E
from cove.fs.file import O_ASYNC

from .harness import SCRATCH, make_kernel
from .iohelp import AT_FDCWD, mkpipe, rd, sc, wr

pytestmark = pytest.mark.timeout(20)

ARG = SCRATCH + 0x100


def _int(t) -> int:
    return struct.unpack("<i", t.mm.read(ARG, 4))[0]


def _file(t, data: bytes = b"") -> int:
    t.mm.write(SCRATCH, b"/file\0")
    fd = sc(t, "openat", AT_FDCWD, SCRATCH, F.O_CREAT | F.O_RDWR, 0o644)
    assert fd is not None and fd >= 0
    if data:
        assert wr(t, fd, data) == len(data)
    return fd


def test_fioclex_and_fionclex():
    _, t = make_kernel()
    r, _ = mkpipe(t)
    assert sc(t, "ioctl", r, F.FIOCLEX, 0) == 0
    assert r in t.files.cloexec
    assert sc(t, "ioctl", r, F.FIONCLEX, 0) == 0
    assert r not in t.files.cloexec


def test_fionbio_makes_reads_nonblocking():
    _, t = make_kernel()
    r, _ = mkpipe(t)
    t.mm.write(ARG, struct.pack("<i", 1))
    assert sc(t, "ioctl", r, F.FIONBIO, ARG) == 0
    assert rd(t, r, 1) == -E.EAGAIN
    t.mm.write(ARG, struct.pack("<i", 0))
    assert sc(t, "ioctl", r, F.FIONBIO, ARG) == 0
    assert not t.files.get(r).flags & F.O_NONBLOCK
    assert sc(t, "ioctl", r, F.FIONBIO, 0x1000) == -E.EFAULT


def test_fioasync_needs_a_file_that_can_signal():
    _, t = make_kernel()
    r, _ = mkpipe(t)
    fd = _file(t)
    t.mm.write(ARG, struct.pack("<i", 1))
    assert sc(t, "ioctl", r, F.FIOASYNC, ARG) == 0
    assert t.files.get(r).flags & O_ASYNC
    assert sc(t, "ioctl", fd, F.FIOASYNC, ARG) == -E.ENOTTY


def test_fionread_of_a_regular_file_is_size_minus_position():
    _, t = make_kernel()
    fd = _file(t, b"0123456789")
    assert sc(t, "lseek", fd, 3, 0) == 3
    assert sc(t, "ioctl", fd, F.FIONREAD, ARG) == 0
    assert _int(t) == 7
    assert sc(t, "lseek", fd, 100, 0) == 100
    assert sc(t, "ioctl", fd, F.FIONREAD, ARG) == 0
    assert _int(t) == -90  # Linux stores i_size - f_pos as it is
    assert sc(t, "ioctl", fd, F.FIONREAD, 0x1000) == -E.EFAULT


def test_terminal_ioctls_on_files_and_pipes_are_enotty():
    _, t = make_kernel()
    fd = _file(t)
    r, w = mkpipe(t)
    for f in (fd, r, w):
        for cmd in (F.TCGETS, F.TIOCGWINSZ, F.TIOCGPGRP, F.TIOCSCTTY):
            assert sc(t, "ioctl", f, cmd, ARG) == -E.ENOTTY


def test_fioqsize_and_figetbsz():
    _, t = make_kernel()
    fd = _file(t, b"x" * 5000)
    assert sc(t, "ioctl", fd, F.FIOQSIZE, ARG) == 0
    assert struct.unpack("<q", t.mm.read(ARG, 8))[0] >= 0
    assert sc(t, "ioctl", fd, 2, ARG) == 0  # FIGETBSZ
    assert _int(t) > 0
    r, _ = mkpipe(t)
    assert sc(t, "ioctl", r, F.FIOQSIZE, ARG) == -E.ENOTTY


def test_bad_fd_and_o_path():
    _, t = make_kernel()
    assert sc(t, "ioctl", 99, F.FIOCLEX, 0) == -E.EBADF
    t.mm.write(SCRATCH, b"/\0")
    fd = sc(t, "openat", AT_FDCWD, SCRATCH, F.O_PATH, 0)
    assert fd is not None and fd >= 0
    assert sc(t, "ioctl", fd, F.FIOCLEX, 0) == -E.EBADF
