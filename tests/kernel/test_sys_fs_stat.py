"""stat family, statx, statfs/fstatfs, access family."""

from __future__ import annotations

import pytest

from cove.abi import flags as F
from cove.abi.errno import E
from cove.abi.structs import STAT, STATFS, STATX
from cove.fs.node import TMPFS_MAGIC, major, minor

from .sysfs_helpers import AT_FDCWD, BAD_ADDR, Guest


@pytest.fixture
def g() -> Guest:
    g = Guest()
    g.mkdir("/dir")
    g.write_file("/dir/f", b"12345", mode=0o640)
    assert g.call("symlink", g.s("dir/f"), g.s("/link")) == 0
    return g


def _stat(g: Guest, name: str, *args: int) -> tuple[int, object]:
    buf = g.alloc(STAT.size)
    r = g.call(name, *args, buf) if name != "newfstatat" else g.call(name, *args[:2], buf,
                                                                        args[2])
    return r, STAT.read(g.read(buf, STAT.size)) if r == 0 else None


def test_stat_lstat_fstat(g: Guest) -> None:
    r, st = _stat(g, "stat", g.s("/link"))
    assert r == 0 and st.st_size == 5 and st.st_mode == F.S_IFREG | 0o640  # type: ignore[attr-defined]
    r, lst = _stat(g, "lstat", g.s("/link"))
    assert r == 0 and lst.st_mode & F.S_IFMT == F.S_IFLNK  # type: ignore[attr-defined]
    assert lst.st_size == len("dir/f")  # type: ignore[attr-defined]
    fst = g.fstat(g.ok_open("/dir/f"))
    assert fst.st_ino == st.st_ino and fst.st_nlink == 1  # type: ignore[attr-defined]
    assert fst.st_blksize == 4096 and fst.st_blocks == 1
    d = g.stat("/dir")
    assert d.st_mode & F.S_IFMT == F.S_IFDIR and d.st_nlink == 2


def test_stat_times_round_trip_through_utimensat(g: Guest) -> None:
    ts = g.data((1234).to_bytes(8, "little", signed=True) + (5).to_bytes(8, "little")
                + (-3).to_bytes(8, "little", signed=True) + (999_999_999).to_bytes(8, "little"))
    assert g.call("utimensat", AT_FDCWD, g.s("/dir/f"), ts, 0) == 0
    st = g.stat("/dir/f")
    assert (st.st_atime, st.st_atime_nsec) == (1234, 5)
    assert (st.st_mtime, st.st_mtime_nsec) == (-3, 999_999_999)


@pytest.mark.parametrize(("path", "err"), [
    ("/missing", E.ENOENT), ("/dir/f/x", E.ENOTDIR), ("", E.ENOENT),
    ("/dir/" + "n" * 300, E.ENAMETOOLONG),
])
def test_stat_errors(g: Guest, path: str, err: int) -> None:
    assert _stat(g, "stat", g.s(path))[0] == -err
    assert _stat(g, "lstat", g.s(path))[0] == -err


def test_stat_efault(g: Guest) -> None:
    assert g.call("stat", g.s("/dir/f"), BAD_ADDR) == -E.EFAULT
    assert g.call("stat", BAD_ADDR, g.alloc(STAT.size)) == -E.EFAULT
    assert g.call("fstat", 99, g.alloc(STAT.size)) == -E.EBADF
    assert g.call("fstat", g.ok_open("/dir/f"), BAD_ADDR) == -E.EFAULT


def test_eloop(g: Guest) -> None:
    g.call("symlink", g.s("/a"), g.s("/b"))
    g.call("symlink", g.s("/b"), g.s("/a"))
    assert _stat(g, "stat", g.s("/a"))[0] == -E.ELOOP
    assert _stat(g, "lstat", g.s("/a"))[0] == 0


def test_eacces_on_search(g: Guest) -> None:
    g.call("chmod", g.s("/dir"), 0o700)
    g.become(1000)
    assert _stat(g, "stat", g.s("/dir/f"))[0] == -E.EACCES
    assert _stat(g, "stat", g.s("/dir"))[0] == 0


def test_newfstatat(g: Guest) -> None:
    d = g.ok_open("/dir", F.O_DIRECTORY)
    assert g.stat("f", dirfd=d).st_size == 5
    assert g.stat("/link", F.AT_SYMLINK_NOFOLLOW).st_mode & F.S_IFMT == F.S_IFLNK
    assert g.stat("", F.AT_EMPTY_PATH, dirfd=d).st_mode & F.S_IFMT == F.S_IFDIR
    assert g.stat("", F.AT_EMPTY_PATH).st_ino == g.stat("/").st_ino  # AT_FDCWD: the cwd
    buf = g.alloc(STAT.size)
    assert g.call("newfstatat", d, 0, buf, F.AT_EMPTY_PATH) == 0  # NULL path (Linux 6.11)
    assert g.call("newfstatat", d, 0, buf, 0) == -E.EFAULT
    assert g.call("newfstatat", d, g.s(""), buf, 0) == -E.ENOENT
    assert g.call("newfstatat", d, g.s("f"), buf, 2) == -E.EINVAL
    assert g.call("newfstatat", d, 0, buf, 2) == -E.EINVAL  # flags before the path
    assert g.call("newfstatat", 99, g.s("f"), buf, 0) == -E.EBADF
    f = g.ok_open("/dir/f")
    assert g.call("newfstatat", f, g.s("x"), buf, 0) == -E.ENOTDIR
    assert g.call("newfstatat", f, g.s(""), buf, F.AT_EMPTY_PATH) == 0
    p = g.ok_open("/link", F.O_PATH | F.O_NOFOLLOW)
    assert g.call("newfstatat", p, g.s(""), buf, F.AT_EMPTY_PATH) == 0
    assert STAT.read(g.read(buf, STAT.size)).st_mode & F.S_IFMT == F.S_IFLNK


def test_fstat_on_a_pipe(g: Guest) -> None:
    fds = g.alloc(8)
    assert g.call("pipe2", fds, 0) == 0
    rd = int.from_bytes(g.read(fds, 4), "little")
    assert g.fstat(rd).st_mode & F.S_IFMT == F.S_IFIFO
    assert g.stat("", F.AT_EMPTY_PATH, dirfd=rd).st_mode & F.S_IFMT == F.S_IFIFO


# --- statx ------------------------------------------------------------------------------
def test_statx_fields(g: Guest) -> None:
    stx = g.statx("/dir/f", mask=F.STATX_BASIC_STATS)
    st = g.stat("/dir/f")
    assert stx.stx_mask & F.STATX_BASIC_STATS == F.STATX_BASIC_STATS
    assert stx.stx_mask & F.STATX_MNT_ID
    assert (stx.stx_ino, stx.stx_size, stx.stx_mode, stx.stx_nlink) == (
        st.st_ino, 5, F.S_IFREG | 0o640, 1)
    assert (stx.stx_mtime_tv_sec, stx.stx_mtime_tv_nsec) == (st.st_mtime, st.st_mtime_nsec)
    assert (stx.stx_dev_major, stx.stx_dev_minor) == (major(st.st_dev), minor(st.st_dev))
    assert stx.stx_attributes == 0
    root = g.statx("/")
    assert root.stx_attributes & F.STATX_ATTR_MOUNT_ROOT
    assert root.stx_attributes_mask & F.STATX_ATTR_MOUNT_ROOT
    assert not stx.stx_mask & F.STATX_BTIME  # memfs keeps no birth time


def test_statx_btime_when_known(g: Guest) -> None:
    loc = g.vfs.resolve(g.t.fs, None, "/dir/f")
    real_stat = loc.inode.stat

    def with_btime() -> object:
        st = real_stat()
        st.btime_ns = 7_000_000_001
        return st

    birth = type("BirthFile", (type(loc.inode),),
                 {"__slots__": (), "stat": lambda self: with_btime()})
    loc.inode.__class__ = birth
    stx = g.statx("/dir/f", mask=F.STATX_BTIME)
    assert stx.stx_mask & F.STATX_BTIME
    assert (stx.stx_btime_tv_sec, stx.stx_btime_tv_nsec) == (7, 1)
    assert not g.statx("/dir/f", mask=F.STATX_BASIC_STATS).stx_mask & F.STATX_BTIME


def test_statx_errors(g: Guest) -> None:
    buf = g.alloc(STATX.size)
    p = g.s("/dir/f")
    assert g.call("statx", AT_FDCWD, p, 0x6000, 0x7FF, buf) == -E.EINVAL
    assert g.call("statx", AT_FDCWD, p, 0x1, 0x7FF, buf) == -E.EINVAL
    assert g.call("statx", AT_FDCWD, p, 0, 0x80000000, buf) == -E.EINVAL
    assert g.call("statx", AT_FDCWD, p, 0, 0x7FF, BAD_ADDR) == -E.EFAULT
    assert g.call("statx", AT_FDCWD, 0, 0, 0x7FF, buf) == -E.EFAULT
    assert g.call("statx", AT_FDCWD, g.s(""), 0, 0x7FF, buf) == -E.ENOENT
    assert g.call("statx", 99, g.s("x"), 0, 0x7FF, buf) == -E.EBADF
    fd = g.ok_open("/dir/f")
    assert g.call("statx", fd, 0, F.AT_EMPTY_PATH, 0x7FF, buf) == 0
    assert STATX.read(g.read(buf, STATX.size)).stx_size == 5
    assert g.call("statx", AT_FDCWD, g.s("/link"), F.AT_SYMLINK_NOFOLLOW | 0x4000, 1, buf) == 0
    assert STATX.read(g.read(buf, STATX.size)).stx_mode & F.S_IFMT == F.S_IFLNK


# --- statfs -----------------------------------------------------------------------------
def test_statfs(g: Guest) -> None:
    buf = g.alloc(STATFS.size)
    assert g.call("statfs", g.s("/dir"), buf) == 0
    sf = STATFS.read(g.read(buf, STATFS.size))
    assert sf.f_type == TMPFS_MAGIC and sf.f_bsize == 4096 and sf.f_namelen == 255
    assert sf.f_flags & 0x20 and not sf.f_flags & 1  # ST_VALID, not ST_RDONLY
    g.mount_ro("/ro")
    assert g.call("fstatfs", g.ok_open("/ro/f"), buf) == 0
    sf = STATFS.read(g.read(buf, STATFS.size))
    assert sf.f_flags & 1
    assert g.call("statfs", g.s("/missing"), buf) == -E.ENOENT
    assert g.call("statfs", g.s("/dir"), BAD_ADDR) == -E.EFAULT
    assert g.call("fstatfs", 99, buf) == -E.EBADF
    assert g.call("fstatfs", g.ok_open("/dir", F.O_PATH), buf) == 0


def test_fstatfs_of_a_pipe_uses_its_own_or_anon(g: Guest) -> None:
    fds = g.alloc(8)
    assert g.call("pipe2", fds, 0) == 0
    rd = int.from_bytes(g.read(fds, 4), "little")
    buf = g.alloc(STATFS.size)
    assert g.call("fstatfs", rd, buf) == 0
    assert STATFS.read(g.read(buf, STATFS.size)).f_type in (0x50495045, 0x09041934)


# --- access ------------------------------------------------------------------------------
def test_access_modes(g: Guest) -> None:
    p = g.s("/dir/f")
    assert g.call("access", p, F.F_OK) == 0
    assert g.call("access", p, F.R_OK | F.W_OK) == 0
    assert g.call("access", p, F.X_OK) == -E.EACCES  # even root needs an x bit
    assert g.call("access", g.s("/dir"), F.X_OK) == 0
    assert g.call("access", p, 8) == -E.EINVAL
    assert g.call("access", BAD_ADDR, 8) == -E.EINVAL  # mode checked before the path
    assert g.call("access", g.s("/missing"), F.F_OK) == -E.ENOENT
    assert g.call("access", BAD_ADDR, F.F_OK) == -E.EFAULT
    g.become(1000)
    assert g.call("access", p, F.R_OK) == -E.EACCES
    assert g.call("access", p, F.F_OK) == 0


def test_access_real_vs_effective_ids(g: Guest) -> None:
    p = g.s("/dir/f")
    g.become(0, ruid=1000, rgid=1000)  # a set-user-ID-root program
    assert g.call("access", p, F.R_OK) == -E.EACCES
    assert g.call("faccessat", AT_FDCWD, p, F.R_OK) == -E.EACCES
    assert g.call("faccessat2", AT_FDCWD, p, F.R_OK, F.AT_EACCESS) == 0
    g.become(1000, ruid=0, rgid=0)
    assert g.call("access", p, F.R_OK) == 0
    assert g.call("faccessat2", AT_FDCWD, p, F.R_OK, F.AT_EACCESS) == -E.EACCES


def test_faccessat2_flags(g: Guest) -> None:
    assert g.call("faccessat2", AT_FDCWD, g.s("/link"), 0, 1) == -E.EINVAL
    g.call("symlink", g.s("/missing"), g.s("/dangling"))
    assert g.call("faccessat2", AT_FDCWD, g.s("/dangling"), 0, 0) == -E.ENOENT
    assert g.call("faccessat2", AT_FDCWD, g.s("/dangling"), 0, F.AT_SYMLINK_NOFOLLOW) == 0
    fd = g.ok_open("/dir/f")
    assert g.call("faccessat2", fd, g.s(""), F.R_OK, F.AT_EMPTY_PATH) == 0
    assert g.call("faccessat2", fd, 0, F.R_OK, F.AT_EMPTY_PATH) == -E.EFAULT
    assert g.call("faccessat2", fd, g.s(""), F.R_OK, 0) == -E.ENOENT
    d = g.ok_open("/dir", F.O_DIRECTORY)
    assert g.call("faccessat", d, g.s("f"), F.W_OK) == 0


def test_access_erofs(g: Guest) -> None:
    g.mount_ro("/ro")
    assert g.call("access", g.s("/ro/f"), F.W_OK) == -E.EROFS
    assert g.call("access", g.s("/ro/f"), F.R_OK) == 0
    assert g.call("access", g.s("/ro/d"), F.W_OK) == -E.EROFS
