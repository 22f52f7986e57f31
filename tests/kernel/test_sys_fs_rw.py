"""read/write, the vectored and positioned forms, lseek: data paths and the
partial-I/O, EFAULT, MAX_RW_COUNT and RLIMIT_FSIZE rules.

Expected results were checked on Linux 6.18 with small ctypes probes (reads
into a buffer whose second page is unmapped, iovecs with bad bases, RWF_*)."""

from __future__ import annotations

import pytest

from cove.abi import flags as F
from cove.abi.errno import E
from cove.kernel.physmem import PAGE_SIZE
from cove.kernel.syscalls.fs_iov import MAX_RW_COUNT

from .harness import SCRATCH
from .sysfs_helpers import BAD_ADDR, Guest

KERNEL_ADDR = 0xFFFF_8000_0000_0000
EDGE = SCRATCH + (1 << 20)  # first unmapped byte after the scratch area


@pytest.fixture
def g() -> Guest:
    g = Guest()
    g.write_file("/f", b"0123456789")
    return g


def test_read_write_positions(g: Guest) -> None:
    fd = g.ok_open("/f", F.O_RDWR)
    assert g.read_fd(fd, 4) == b"0123"
    assert g.call("write", fd, g.data(b"ab"), 2) == 2
    assert g.call("lseek", fd, 0, F.SEEK_CUR) == 6
    assert g.call("lseek", fd, 0, F.SEEK_SET) == 0
    assert g.read_fd(fd, 100) == b"0123ab6789"
    assert g.read_fd(fd, 100) == b""  # EOF


def test_read_write_bad_fds(g: Guest) -> None:
    ro = g.ok_open("/f")
    wo = g.ok_open("/f", F.O_WRONLY)
    buf = g.alloc(8)
    assert g.call("read", 99, buf, 8) == -E.EBADF
    assert g.call("read", wo, buf, 8) == -E.EBADF
    assert g.call("write", ro, buf, 8) == -E.EBADF
    assert g.call("write", ro, 0, 8) == -E.EBADF  # EBADF before EFAULT
    assert g.call("read", -1, buf, 8) == -E.EBADF
    d = g.ok_open("/", F.O_DIRECTORY)
    assert g.call("read", d, buf, 8) == -E.EISDIR
    assert g.call("read", d, 0, 8) == -E.EISDIR


def test_read_efault_rules(g: Guest) -> None:
    fd = g.ok_open("/f")
    assert g.call("read", fd, BAD_ADDR, 4) == -E.EFAULT
    assert g.call("lseek", fd, 0, F.SEEK_CUR) == 0  # nothing consumed
    assert g.call("read", fd, KERNEL_ADDR, 0) == -E.EFAULT  # access_ok
    assert g.call("read", fd, 0, 0) == 0
    g.call("lseek", fd, 0, F.SEEK_END)
    assert g.call("read", fd, 0, 10) == 0  # at EOF nothing is copied, so no fault


def test_partial_read_and_write_at_an_unmapped_page(g: Guest) -> None:
    fd = g.ok_open("/f", F.O_RDWR)
    assert g.call("read", fd, EDGE - 3, 10) == 3
    assert g.read(EDGE - 3, 3) == b"012"
    assert g.call("lseek", fd, 0, F.SEEK_CUR) == 3  # only what was stored was consumed
    g.t.mm.write(EDGE - 3, b"XYZ")
    assert g.call("write", fd, EDGE - 3, 10) == 3
    assert g.call("pread64", fd, g.alloc(16), 16, 0) == 10
    fd2 = g.ok_open("/f")
    assert g.read_fd(fd2) == b"012XYZ6789"
    assert g.call("write", fd, BAD_ADDR, 5) == -E.EFAULT


def test_read_count_is_capped(g: Guest) -> None:
    fd = g.ok_open("/f")
    buf = g.alloc(16)
    assert g.call("read", fd, buf, 1 << 62) == 10  # capped, not EINVAL or EFAULT
    assert MAX_RW_COUNT == 0x7FFFF000


def test_write_to_read_only_mount_file_opened_before_is_impossible(g: Guest) -> None:
    g.mount_ro("/ro")
    fd = g.ok_open("/ro/f")
    assert g.call("write", fd, g.data(b"x"), 1) == -E.EBADF


def test_append(g: Guest) -> None:
    fd = g.ok_open("/f", F.O_WRONLY | F.O_APPEND)
    assert g.call("write", fd, g.data(b"!"), 1) == 1
    assert g.call("pwrite64", fd, g.data(b"?"), 1, 0) == 1  # pwrite appends under O_APPEND
    assert g.read_fd(g.ok_open("/f")) == b"0123456789!?"


def test_pread_pwrite(g: Guest) -> None:
    fd = g.ok_open("/f", F.O_RDWR)
    buf = g.alloc(4)
    assert g.call("pread64", fd, buf, 4, 6) == 4
    assert g.read(buf, 4) == b"6789"
    assert g.call("pwrite64", fd, g.data(b"zz"), 2, 12) == 2
    assert g.call("lseek", fd, 0, F.SEEK_CUR) == 0
    assert g.read_fd(fd, 100) == b"0123456789\0\0zz"  # the gap reads as zeros
    assert g.call("pread64", fd, buf, 4, -1) == -E.EINVAL
    assert g.call("pread64", 99, buf, 4, -1) == -E.EINVAL  # EINVAL before EBADF
    assert g.call("pwrite64", fd, buf, 4, -1) == -E.EINVAL
    assert g.call("pread64", 99, buf, 4, 0) == -E.EBADF


def test_pread_on_a_pipe_is_espipe(g: Guest) -> None:
    fds = g.alloc(8)
    assert g.call("pipe2", fds, 0) == 0
    rd = int.from_bytes(g.read(fds, 4), "little")
    wr = int.from_bytes(g.read(fds + 4, 4), "little")
    buf = g.alloc(4)
    assert g.call("pread64", rd, buf, 1, 0) == -E.ESPIPE
    assert g.call("pread64", wr, buf, 1, 0) == -E.ESPIPE
    assert g.call("pwrite64", wr, buf, 1, 0) == -E.ESPIPE
    assert g.call("preadv", rd, g.iov((buf, 0)), 1, 0, 0) == -E.ESPIPE
    assert g.call("lseek", rd, 0, F.SEEK_SET) == -E.ESPIPE
    assert g.call("write", wr, g.data(b"pipe"), 4) == 4
    assert g.call("read", rd, buf, 4) == 4


def test_lseek(g: Guest) -> None:
    fd = g.ok_open("/f")
    assert g.call("lseek", fd, -2, F.SEEK_END) == 8
    assert g.call("lseek", fd, -100, F.SEEK_CUR) == -E.EINVAL
    assert g.call("lseek", fd, 0, 5) == -E.EINVAL
    assert g.call("lseek", 99, 0, 5) == -E.EBADF
    assert g.call("lseek", fd, 100, F.SEEK_SET) == 100
    assert g.call("lseek", fd, 3, F.SEEK_DATA) == 3
    assert g.call("lseek", fd, 3, F.SEEK_HOLE) == 10
    assert g.call("lseek", fd, 10, F.SEEK_DATA) == -E.ENXIO
    p = g.ok_open("/f", F.O_PATH)
    assert g.call("lseek", p, 0, F.SEEK_SET) == -E.EBADF


# --- vectored -----------------------------------------------------------------------------
def test_readv_writev(g: Guest) -> None:
    fd = g.ok_open("/f", F.O_RDWR)
    a, b = g.alloc(3), g.alloc(4)
    assert g.call("readv", fd, g.iov((a, 3), (b, 4)), 2) == 7
    assert g.read(a, 3) == b"012" and g.read(b, 4) == b"3456"
    assert g.call("writev", fd, g.iov((g.data(b"AB"), 2), (0, 0), (g.data(b"C"), 1)), 3) == 3
    assert g.read_fd(g.ok_open("/f")) == b"0123456ABC"


def test_iovec_errors(g: Guest) -> None:
    fd = g.ok_open("/f", F.O_RDWR)
    buf = g.alloc(8)
    assert g.call("readv", fd, g.iov((buf, 2)), 1025) == -E.EINVAL
    assert g.call("readv", fd, g.iov((buf, 2)), -1) == -E.EINVAL
    assert g.call("readv", fd, BAD_ADDR, 1) == -E.EFAULT
    assert g.call("readv", fd, 0, 0) == 0
    assert g.call("readv", fd, g.iov((buf, 2), (buf, -1)), 2) == -E.EINVAL
    assert g.call("readv", fd, g.iov((KERNEL_ADDR, 2), (buf, -1)), 2) == -E.EINVAL
    assert g.call("readv", fd, g.iov((KERNEL_ADDR, 4)), 1) == -E.EFAULT
    assert g.call("readv", fd, g.iov((buf, 2), (KERNEL_ADDR, 4)), 2) == -E.EFAULT
    assert g.call("lseek", fd, 0, F.SEEK_CUR) == 0
    # A NULL base passes access_ok; the copy then stops there.
    assert g.call("readv", fd, g.iov((buf, 2), (0, 4)), 2) == 2
    assert g.call("readv", fd, g.iov((0, 4)), 1) == -E.EFAULT
    assert g.call("writev", fd, g.iov((buf, 2), (0, 4)), 2) == 2
    assert g.call("readv", 99, BAD_ADDR, 1) == -E.EBADF  # EBADF before the array
    ro = g.ok_open("/f")
    assert g.call("writev", ro, BAD_ADDR, 1) == -E.EBADF


def test_iovec_total_is_capped(g: Guest) -> None:
    fd = g.ok_open("/f")
    buf = g.alloc(16)
    assert g.call("readv", fd, g.iov((buf, 1 << 62), (buf, 1 << 62)), 2) == 10


def test_preadv_pwritev(g: Guest) -> None:
    fd = g.ok_open("/f", F.O_RDWR)
    a, b = g.alloc(2), g.alloc(2)
    assert g.call("preadv", fd, g.iov((a, 2), (b, 2)), 2, 4, 0) == 4
    assert g.read(a, 2) + g.read(b, 2) == b"4567"
    assert g.call("pwritev", fd, g.iov((g.data(b"xy"), 2)), 1, 0, 0) == 2
    assert g.call("lseek", fd, 0, F.SEEK_CUR) == 0
    assert g.call("preadv", fd, g.iov((a, 2)), 1, -1, 0) == -E.EINVAL
    assert g.read_fd(fd) == b"xy23456789"


def test_preadv2_pwritev2_flags(g: Guest) -> None:
    fd = g.ok_open("/f", F.O_RDWR)
    a = g.alloc(4)
    v = g.iov((a, 4))
    assert g.call("preadv2", fd, g.iov((a, 0)), 1, 0, 0, 0x1000) == 0  # zero length first
    assert g.call("preadv2", fd, v, 1, 0, 0, 0x1000) == -E.EOPNOTSUPP
    assert g.call("preadv2", fd, v, 1, 0, 0, 0x40) == -E.EOPNOTSUPP  # RWF_ATOMIC
    assert g.call("pwritev2", fd, v, 1, 0, 0, 0x30) == -E.EINVAL  # APPEND|NOAPPEND
    assert g.call("preadv2", fd, v, 1, 2, 0, 0x08) == 4  # RWF_NOWAIT
    assert g.read(a, 4) == b"2345"
    assert g.call("preadv2", fd, v, 1, -1, 0, 0) == 4  # -1: the file position
    assert g.call("lseek", fd, 0, F.SEEK_CUR) == 4
    assert g.call("preadv2", fd, v, 1, -2, 0, 0) == -E.EINVAL
    assert g.call("pwritev2", fd, g.iov((g.data(b"E"), 1)), 1, 0, 0, 0x10) == 1  # APPEND
    assert g.call("pwritev2", fd, g.iov((g.data(b"S"), 1)), 1, 0, 0, 0x06) == 1  # (D)SYNC
    assert g.read_fd(g.ok_open("/f")) == b"S123456789E"
    ap = g.ok_open("/f", F.O_WRONLY | F.O_APPEND)
    assert g.call("pwritev2", ap, g.iov((g.data(b"N"), 1)), 1, 1, 0, 0x20) == 1  # NOAPPEND
    assert g.read_fd(g.ok_open("/f")) == b"SN23456789E"
    assert g.call("fcntl", ap, F.F_GETFL, 0) & F.O_APPEND  # the description is unchanged


def test_rwf_nowait_on_an_empty_pipe(g: Guest) -> None:
    fds = g.alloc(8)
    assert g.call("pipe2", fds, 0) == 0
    rd = int.from_bytes(g.read(fds, 4), "little")
    assert g.call("preadv2", rd, g.iov((g.alloc(4), 4)), 1, -1, 0, 0x08) == -E.EAGAIN
    assert not g.blocked()
    assert g.call("fcntl", rd, F.F_GETFL, 0) & F.O_NONBLOCK == 0


def test_blocking_read_propagates_blocked(g: Guest) -> None:
    fds = g.alloc(8)
    assert g.call("pipe2", fds, 0) == 0
    rd = int.from_bytes(g.read(fds, 4), "little")
    wr = int.from_bytes(g.read(fds + 4, 4), "little")
    buf = g.alloc(4)
    g.call("read", rd, buf, 4)
    assert g.blocked()
    other = g.fork_process()
    other.t.files.install_at(0, g.t.files.get(wr))
    assert other.call("write", 0, other.data(b"data"), 4) == 4
    assert g.resume() == 4
    assert g.read(buf, 4) == b"data"


# --- RLIMIT_FSIZE --------------------------------------------------------------------------
def test_rlimit_fsize(g: Guest) -> None:
    g.t.proc.rlimits[F.RLIMIT_FSIZE] = (12, 12)
    fd = g.ok_open("/f", F.O_WRONLY | F.O_APPEND)
    assert g.call("write", fd, g.data(b"abcdef"), 6) == 2  # cut at the limit
    assert not g.t.pending.mask
    assert g.call("write", fd, g.data(b"x"), 1) == -E.EFBIG
    assert g.t.pending.mask & (1 << (F.SIGXFSZ - 1))
    assert g.call("ftruncate", fd, 100) == -E.EFBIG  # a write-only fd may truncate
    rw = g.ok_open("/f", F.O_RDWR)
    assert g.call("ftruncate", rw, 13) == -E.EFBIG
    assert g.call("ftruncate", rw, 5) == 0  # shrinking is always fine
    assert g.call("truncate", g.s("/f"), 13) == -E.EFBIG
    assert g.call("fallocate", rw, 0, 0, 13) == -E.EFBIG


def test_big_page_crossing_write(g: Guest) -> None:
    data = bytes(range(256)) * (3 * PAGE_SIZE // 256)
    addr = g.data(data)
    fd = g.ok_open("/big", F.O_CREAT | F.O_RDWR)
    assert g.call("write", fd, addr, len(data)) == len(data)
    buf = g.alloc(len(data))
    assert g.call("pread64", fd, buf, len(data), 0) == len(data)
    assert g.read(buf, len(data)) == data
