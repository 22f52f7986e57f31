"""The North's copies with no bytes object in between (fs_iov.guest_views and
the read_guest/write_guest hooks of pipes and devices): same bytes and same
errors as the generic path, Linux's order of checks (a pipe sleeps or says
EAGAIN/EOF before it looks at the buffer; /dev/null never looks at it)."""

from __future__ import annotations

import random
import struct

import pytest

from cove.abi import flags as F
from cove.abi.errno import E
from cove.kernel.syscalls import fs_iov
from cove.kernel.syscalls.fs_iov import guest_views

from .harness import SCRATCH, call, make_kernel, put
from .iohelp import is_blocked, mkpipe, open_dev, rd, resume, sc, thread
from .test_hostpipe import host_pipes  # noqa: F401 (fixture)

pytestmark = pytest.mark.timeout(60)

BASE = 0x40000000
RW = F.PROT_READ | F.PROT_WRITE
PRIV_ANON_FIXED = F.MAP_PRIVATE | F.MAP_ANONYMOUS | F.MAP_FIXED


def _map(t, addr: int, pages: int, prot: int = RW) -> None:
    assert t.mm.mmap(addr, pages * 4096, prot, PRIV_ANON_FIXED) == addr


# --- guest_views ---------------------------------------------------------------
def test_guest_views_match_the_mm_copy() -> None:
    """Random segments over pages populated out of order (frames partly
    contiguous): the views hold exactly what MemoryMap.read gives."""
    _, t = make_kernel()
    _map(t, BASE, 64)
    rng = random.Random(5)
    order = list(range(64))
    rng.shuffle(order)
    for i in order[:40]:
        t.mm.write(BASE + i * 4096, b"\1")
    for i in range(64):
        t.mm.write(BASE + i * 4096, bytes([i]) * 4096)
    for _ in range(2000):
        segs = [(BASE + rng.randrange(60 * 4096), rng.randrange(3 * 4096))
                for _ in range(rng.randint(1, 4))]
        limit = rng.randrange(20000)
        views = guest_views(t, segs, limit, rng.random() < 0.5)
        assert views is not None
        want = bytearray()
        left = limit
        for a, n in segs:
            n = min(n, max(left, 0))
            left -= n
            want += t.mm.read(a, n)
        assert b"".join(views) == bytes(want)


def test_guest_views_merge_contiguous_frames() -> None:
    _, t = make_kernel()
    _map(t, BASE, 16)
    t.mm.write(BASE, bytes(16 * 4096))  # one pass, in order: consecutive frames
    frames = [t.mm.frames[(BASE >> 12) + i] for i in range(16)]
    assert frames == list(range(frames[0], frames[0] + 16))
    views = guest_views(t, [(BASE + 100, 5000), (BASE + 5100, 60000)], 1 << 20, True)
    assert views is not None and [len(v) for v in views] == [65000]


def test_guest_views_refuse_what_the_mm_must_decide() -> None:
    """None (the generic path then populates, breaks the COW or says EFAULT)
    for a page not populated, outside any mapping, without the access, or
    copy-on-write when storing."""
    k, t = make_kernel()
    _map(t, BASE + 0x100000, 1024)  # big enough that mmap populates nothing
    assert (BASE + 0x100000) >> 12 not in t.mm.frames
    assert guest_views(t, [(BASE + 0x100000, 10)], 10, False) is None  # not populated
    _map(t, BASE, 4)
    t.mm.write(BASE, bytes(4 * 4096))
    assert guest_views(t, [(BASE, 4 * 4096)], 1 << 20, True) is not None
    assert guest_views(t, [(BASE + 3 * 4096, 8192)], 1 << 20, False) is None  # runs off the end
    assert guest_views(t, [(BASE + 3 * 4096, 8192)], 4096, False) is not None  # limit stops it
    t.mm.mprotect(BASE + 4096, 4096, F.PROT_READ)
    assert guest_views(t, [(BASE, 8192)], 8192, True) is None
    assert guest_views(t, [(BASE, 8192)], 8192, False) is not None
    t.mm.mprotect(BASE + 4096, 4096, F.PROT_NONE)
    assert guest_views(t, [(BASE, 8192)], 8192, False) is None
    # Copy-on-write after a fork: readable in place, never stored into.
    t.mm.fork(k.platform.create_address_space())
    assert (BASE >> 12) + 2 in t.mm.cow
    assert guest_views(t, [(BASE + 2 * 4096, 10)], 10, True) is None
    assert guest_views(t, [(BASE + 2 * 4096, 10)], 10, False) is not None
    # More pieces than a host readv takes.
    segs = [(BASE + 2 * 4096 + 2 * i, 1) for i in range(fs_iov.IOV_MAX + 1)]
    assert guest_views(t, segs, 1 << 20, False) is None


# --- pipes: cove's and host-backed -----------------------------------------------
@pytest.fixture(params=["cove", "host"])
def kind(request: pytest.FixtureRequest) -> str:
    if request.param == "host":
        request.getfixturevalue("host_pipes")
    return request.param


def test_pipe_bytes_cross_chunks_and_pages_in_order(kind) -> None:
    """Many small writes, big reads and readv into pieces across pages: the
    stream comes out whole and in order (the chunk bookkeeping of the
    zero-copy read)."""
    _, t = make_kernel()
    r, w = mkpipe(t, F.O_NONBLOCK)
    rng = random.Random(9)
    sent = bytearray()
    got = bytearray()
    for _ in range(300):
        n = rng.randrange(1, 3000)
        data = bytes(rng.randrange(256) for _ in range(n))
        res = sc(t, "write", w, put(t, data, 0x1000), n)
        if res is not None and res > 0:
            sent += data[:res]
        if rng.random() < 0.4:
            a, b = rng.randrange(1, 9000), rng.randrange(0, 9000)
            iov = struct.pack("<QQQQ", SCRATCH + 0x20FF0, a, SCRATCH + 0x40001, b)
            n = sc(t, "readv", r, put(t, iov, 0x800), 2)
            if n is not None and n > 0:
                got += t.mm.read(SCRATCH + 0x20FF0, min(n, a))
                if n > a:
                    got += t.mm.read(SCRATCH + 0x40001, n - a)
    while (chunk := rd(t, r, 50000)) not in (-E.EAGAIN, None):
        got += chunk
    assert bytes(got) == bytes(sent)


def test_an_empty_pipe_waits_before_it_looks_at_the_buffer(kind) -> None:
    """pipe_read: EAGAIN, sleep or EOF on an empty pipe whatever the buffer;
    EFAULT only once there is data to store."""
    k, t = make_kernel()
    r, w = mkpipe(t, F.O_NONBLOCK)
    bad = 0x7000  # mapped nowhere
    assert call(t, "read", r, bad, 10) == -E.EAGAIN
    assert call(t, "read", r, bad, 0) == 0
    assert call(t, "write", w, put(t, b"data"), 4) == 4
    assert call(t, "read", r, bad, 10) == -E.EFAULT
    assert rd(t, r, 10) == b"data"  # nothing was taken
    r2, w2 = mkpipe(t, 0, at=0xF10)
    assert sc(t, "read", r2, bad, 10) is None and is_blocked(t)  # sleeps
    other = thread(k, t)
    assert call(other, "write", w2, put(other, b"xy", 0x100), 2) == 2
    assert resume(t) == -E.EFAULT
    assert call(other, "close", w2) == 0
    assert rd(other, r2, 10) == b"xy"
    assert call(t, "read", r2, bad, 10) == 0  # EOF: no writer


def test_a_full_pipe_waits_before_it_looks_at_the_buffer(kind) -> None:
    _, t = make_kernel()
    r, w = mkpipe(t, F.O_NONBLOCK)
    big = put(t, bytes(65536), 0x10000)
    while call(t, "write", w, big, 65536) > 0:
        pass
    assert call(t, "write", w, 0x7000, 10) == -E.EAGAIN  # full: the buffer is not read
    assert call(t, "write", w, 0x7000, 0) == 0
    assert len(rd(t, r, 65536)) > 0
    assert call(t, "write", w, 0x7000, 10) == -E.EFAULT  # room: now it is


def test_cove_pipe_packets_keep_their_boundaries() -> None:
    """O_DIRECT writes take the generic path; reads of them the zero-copy one."""
    _, t = make_kernel()
    r, w = mkpipe(t, F.O_DIRECT | F.O_NONBLOCK)
    assert call(t, "write", w, put(t, b"abc"), 3) == 3
    assert call(t, "write", w, put(t, b"defg", 8), 4) == 4
    assert rd(t, r, 100) == b"abc"
    assert rd(t, r, 2) == b"de"  # the rest of the message is dropped
    assert rd(t, r, 100) == -E.EAGAIN


def test_cove_pipe_copies_use_the_views(monkeypatch) -> None:
    """The cove pipe's read and write go through guest_views (one copy each),
    not MemoryMap.read/write, once the pages are there."""
    _, t = make_kernel()
    r, w = mkpipe(t)
    src, dst = put(t, b"s" * 65536, 0x10000), put(t, bytes(65536), 0x30000)

    def no_copy(*a: object) -> None:
        raise AssertionError("a copy through MemoryMap")

    monkeypatch.setattr(t.mm, "read", no_copy)
    monkeypatch.setattr(t.mm, "write", no_copy)
    assert call(t, "write", w, src, 65536) == 65536
    assert call(t, "read", r, dst, 65536) == 65536
    monkeypatch.undo()
    assert t.mm.read(dst, 65536) == b"s" * 65536


# --- devices ----------------------------------------------------------------------
def test_dev_null_never_reads_the_buffer() -> None:
    """write_null returns the count for any buffer access_ok accepts; a
    buffer no check would accept is still EFAULT."""
    _, t = make_kernel()
    fd = open_dev(t, "/dev/null", F.O_RDWR)
    assert fd >= 0
    assert call(t, "write", fd, 0x7000, 100) == 100  # mapped nowhere
    assert call(t, "read", fd, 0x7000, 100) == 0
    iov = put(t, struct.pack("<QQQQ", 0x7000, 10, 0x9000, 20), 0x100)
    assert call(t, "writev", fd, iov, 2) == 30
    assert call(t, "write", fd, 0xFFFF800000000000, 100) == -E.EFAULT
    assert call(t, "writev", fd, 0x7000, 1) == -E.EFAULT  # the iovec array is read
    ro = open_dev(t, "/dev/null", F.O_RDONLY)
    assert call(t, "write", ro, SCRATCH, 1) == -E.EBADF


def test_dev_zero_reads_store_zeros_up_to_a_fault() -> None:
    _, t = make_kernel()
    fd = open_dev(t, "/dev/zero", F.O_RDONLY)
    _map(t, BASE, 3)
    t.mm.write(BASE, b"\xaa" * 3 * 4096)
    assert call(t, "read", fd, BASE + 1, 8000) == 8000
    assert t.mm.read(BASE, 8002) == b"\xaa" + bytes(8000) + b"\xaa"
    t.mm.mprotect(BASE + 4096, 4096, F.PROT_READ)
    t.mm.write(BASE, b"\xaa" * 4096)
    assert call(t, "read", fd, BASE + 2048, 8192) == 2048  # what fits, as read_zero
    assert t.mm.read(BASE, 4096) == b"\xaa" * 2048 + bytes(2048)
    assert call(t, "read", fd, BASE + 4096, 10) == -E.EFAULT
    # Pages not yet populated: the generic path does it, with the same result.
    _map(t, BASE + 0x100000, 1024)
    assert (BASE + 0x100000) >> 12 not in t.mm.frames
    assert call(t, "read", fd, BASE + 0x100000, 4 * 4096) == 4 * 4096
    assert t.mm.read(BASE + 0x100000, 4 * 4096) == bytes(4 * 4096)


def test_dev_full_and_random_keep_their_rules() -> None:
    _, t = make_kernel()
    full = open_dev(t, "/dev/full", F.O_RDWR)
    assert call(t, "write", full, SCRATCH, 10) == -E.ENOSPC
    assert call(t, "write", full, 0x7000, 10) == -E.ENOSPC
    t.mm.write(SCRATCH, b"\xaa" * 10)
    assert call(t, "read", full, SCRATCH, 10) == 10 and t.mm.read(SCRATCH, 10) == bytes(10)
    urandom = open_dev(t, "/dev/urandom", F.O_RDWR)
    assert call(t, "write", urandom, 0x7000, 10) == -E.EFAULT  # mixed into the pool: read
    assert call(t, "read", urandom, SCRATCH, 64) == 64
