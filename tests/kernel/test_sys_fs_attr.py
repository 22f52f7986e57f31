"""chmod/chown families, truncate/ftruncate/fallocate, umask, utimensat & co,
sync family. Expected errnos checked against Linux 6.18 on tmpfs."""

from __future__ import annotations

import struct

import pytest

from cove.abi import flags as F
from cove.abi.errno import E

from .sysfs_helpers import AT_FDCWD, BAD_ADDR, Guest

UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2


@pytest.fixture
def g() -> Guest:
    g = Guest()
    g.mkdir("/dir")
    g.write_file("/dir/f", b"0123456789")
    g.call("symlink", g.s("f"), g.s("/dir/l"))
    return g


def mode(g: Guest, path: str) -> int:
    return g.stat(path, F.AT_SYMLINK_NOFOLLOW).st_mode & 0o7777


# --- chmod ---------------------------------------------------------------------------
def test_chmod_family(g: Guest) -> None:
    assert g.call("chmod", g.s("/dir/l"), 0o600) == 0  # follows the link
    assert mode(g, "/dir/f") == 0o600
    fd = g.ok_open("/dir/f")
    assert g.call("fchmod", fd, 0o640) == 0 and mode(g, "/dir/f") == 0o640
    assert g.call("fchmodat", AT_FDCWD, g.s("/dir/f"), 0o604) == 0
    assert mode(g, "/dir/f") == 0o604
    d = g.ok_open("/dir", F.O_DIRECTORY)
    assert g.call("fchmodat2", d, g.s("f"), 0o400, F.AT_SYMLINK_NOFOLLOW) == 0
    assert mode(g, "/dir/f") == 0o400
    assert g.call("fchmodat2", d, g.s("l"), 0o400, F.AT_SYMLINK_NOFOLLOW) == -E.EOPNOTSUPP
    assert g.call("fchmodat2", d, g.s("f"), 0o400, 1) == -E.EINVAL
    assert g.call("fchmodat2", d, BAD_ADDR, 0o400, 1) == -E.EINVAL
    p = g.ok_open("/dir/f", F.O_PATH)
    assert g.call("fchmod", p, 0o600) == -E.EBADF
    assert g.call("fchmodat2", p, g.s(""), 0o644, F.AT_EMPTY_PATH) == 0
    assert mode(g, "/dir/f") == 0o644
    assert g.call("chmod", g.s("/none"), 0o644) == -E.ENOENT
    assert g.call("chmod", BAD_ADDR, 0o644) == -E.EFAULT
    assert g.call("fchmod", 99, 0o644) == -E.EBADF
    assert g.call("chmod", g.s("/dir/f"), 0o177777) == 0
    assert mode(g, "/dir/f") == 0o7777  # only permission bits change


def test_chmod_eperm_and_erofs(g: Guest) -> None:
    g.mount_ro("/ro")
    assert g.call("chmod", g.s("/ro/f"), 0o600) == -E.EROFS
    g.become(1000)
    assert g.call("chmod", g.s("/dir/f"), 0o600) == -E.EPERM


# --- chown ---------------------------------------------------------------------------
def test_chown_family(g: Guest) -> None:
    assert g.call("chown", g.s("/dir/l"), 5, 6) == 0
    st = g.stat("/dir/f")
    assert (st.st_uid, st.st_gid) == (5, 6)
    assert g.call("lchown", g.s("/dir/l"), 7, 8) == 0
    lst = g.stat("/dir/l", F.AT_SYMLINK_NOFOLLOW)
    assert (lst.st_uid, lst.st_gid) == (7, 8)
    assert g.stat("/dir/f").st_uid == 5
    assert g.call("fchown", g.ok_open("/dir/f"), 9, -1) == 0
    assert (g.stat("/dir/f").st_uid, g.stat("/dir/f").st_gid) == (9, 6)
    d = g.ok_open("/dir", F.O_DIRECTORY)
    assert g.call("fchownat", d, g.s("l"), 1, 1, F.AT_SYMLINK_NOFOLLOW) == 0
    assert g.stat("/dir/l", F.AT_SYMLINK_NOFOLLOW).st_uid == 1
    assert g.call("fchownat", d, g.s("l"), 1, 1, 1) == -E.EINVAL
    p = g.ok_open("/dir/f", F.O_PATH)
    assert g.call("fchown", p, 0, 0) == -E.EBADF
    assert g.call("fchownat", p, g.s(""), 0, 0, F.AT_EMPTY_PATH) == 0
    assert g.stat("/dir/f").st_uid == 0


def test_chown_as_non_root(g: Guest) -> None:
    g.call("chown", g.s("/dir/f"), 1000, 1000)
    g.become(1000)
    assert g.call("chown", g.s("/dir/f"), 1001, -1) == -E.EPERM
    assert g.call("chown", g.s("/dir/f"), -1, 0) == -E.EPERM  # not in group 0
    assert g.call("chown", g.s("/dir/f"), 1000, 1000) == 0


# --- sizes ---------------------------------------------------------------------------
def test_truncate(g: Guest) -> None:
    assert g.call("truncate", g.s("/dir/f"), 4) == 0
    assert g.read_fd(g.ok_open("/dir/f")) == b"0123"
    assert g.call("truncate", g.s("/dir/f"), 6) == 0
    assert g.read_fd(g.ok_open("/dir/f")) == b"0123\0\0"
    assert g.call("truncate", g.s("/dir"), 0) == -E.EISDIR
    assert g.call("truncate", g.s("/dir/f"), -1) == -E.EINVAL
    assert g.call("truncate", g.s("/none"), 0) == -E.ENOENT
    g.call("mknod", g.s("/fifo"), F.S_IFIFO | 0o644, 0)
    assert g.call("truncate", g.s("/fifo"), 0) == -E.EINVAL
    g.mount_ro("/ro")
    assert g.call("truncate", g.s("/ro/f"), 0) == -E.EROFS
    g.become(1000)
    assert g.call("truncate", g.s("/dir/f"), 0) == -E.EACCES


def test_ftruncate(g: Guest) -> None:
    rw = g.ok_open("/dir/f", F.O_RDWR)
    assert g.call("ftruncate", rw, 3) == 0
    assert g.fstat(rw).st_size == 3
    assert g.call("ftruncate", rw, -1) == -E.EINVAL
    assert g.call("ftruncate", 99, -1) == -E.EINVAL  # length checked before the fd
    assert g.call("ftruncate", 99, 0) == -E.EBADF
    assert g.call("ftruncate", g.ok_open("/dir/f"), 0) == -E.EINVAL  # read-only fd
    assert g.call("ftruncate", g.ok_open("/dir", F.O_DIRECTORY), 0) == -E.EINVAL
    assert g.call("ftruncate", g.ok_open("/dir/f", F.O_PATH), 0) == -E.EBADF
    assert g.call("ftruncate", g.ok_open("/dir/f", F.O_WRONLY), 1) == 0


def test_fallocate(g: Guest) -> None:
    fd = g.ok_open("/dir/f", F.O_RDWR)
    assert g.call("fallocate", fd, 0, 5, 20) == 0
    assert g.fstat(fd).st_size == 25
    assert g.call("fallocate", fd, 1, 0, 100) == 0  # KEEP_SIZE
    assert g.fstat(fd).st_size == 25
    assert g.call("fallocate", fd, 3, 2, 4) == 0  # PUNCH_HOLE | KEEP_SIZE
    buf = g.alloc(10)
    assert g.call("pread64", fd, buf, 10, 0) == 10
    assert g.read(buf, 10) == b"01" + bytes(4) + b"6789"
    assert g.fstat(fd).st_size == 25
    assert g.call("fallocate", fd, 0, 0, 0) == -E.EINVAL
    assert g.call("fallocate", fd, 0, -1, 5) == -E.EINVAL
    for bad in (2, 8, 0x10, 0x20, 0x100):
        assert g.call("fallocate", fd, bad, 0, 5) == -E.EOPNOTSUPP
    ro = g.ok_open("/dir/f")
    assert g.call("fallocate", ro, 0, 0, 5) == -E.EBADF
    assert g.call("fallocate", ro, 0x100, 0, 5) == -E.EOPNOTSUPP  # mode before access
    assert g.call("fallocate", g.ok_open("/dir", F.O_DIRECTORY), 0, 0, 5) == -E.EBADF
    assert g.call("fallocate", g.ok_open("/dir/f", F.O_PATH), 0, 0, 5) == -E.EBADF
    assert g.call("fallocate", fd, 0, 1 << 62, 1 << 62) == -E.EFBIG
    fds = g.alloc(8)
    assert g.call("pipe2", fds, 0) == 0
    wr = int.from_bytes(g.read(fds + 4, 4), "little")
    assert g.call("fallocate", wr, 0, 0, 5) == -E.ESPIPE


def test_umask(g: Guest) -> None:
    assert g.call("umask", 0o7777) == 0o022
    assert g.call("umask", 0o002) == 0o777
    g.mkdir("/dir/m", 0o777)
    assert mode(g, "/dir/m") == 0o775


# --- times ----------------------------------------------------------------------------
def timespecs(g: Guest, a: tuple[int, int], m: tuple[int, int]) -> int:
    return g.data(struct.pack("<qqqq", *a, *m))


def test_utimensat(g: Guest) -> None:
    p = g.s("/dir/f")
    assert g.call("utimensat", AT_FDCWD, p, timespecs(g, (10, 1), (20, 2)), 0) == 0
    st = g.stat("/dir/f")
    assert (st.st_atime, st.st_atime_nsec, st.st_mtime, st.st_mtime_nsec) == (10, 1, 20, 2)
    assert g.call("utimensat", AT_FDCWD, p, timespecs(g, (0, UTIME_OMIT), (30, 0)), 0) == 0
    st = g.stat("/dir/f")
    assert (st.st_atime, st.st_mtime) == (10, 30)
    assert g.call("utimensat", AT_FDCWD, p, 0, 0) == 0
    assert g.stat("/dir/f").st_mtime > 1_600_000_000
    assert g.call("utimensat", AT_FDCWD, g.s("/dir/l"), timespecs(g, (1, 0), (2, 0)),
                  F.AT_SYMLINK_NOFOLLOW) == 0
    assert g.stat("/dir/l", F.AT_SYMLINK_NOFOLLOW).st_mtime == 2
    assert g.stat("/dir/f").st_mtime != 2


def test_utimensat_errors(g: Guest) -> None:
    both_omit = timespecs(g, (0, UTIME_OMIT), (0, UTIME_OMIT))
    assert g.call("utimensat", AT_FDCWD, g.s("/none"), both_omit, 0) == 0  # path not looked at
    bad_ns = timespecs(g, (0, 1_000_000_000), (0, 0))
    assert g.call("utimensat", AT_FDCWD, g.s("/none"), bad_ns, 0) == -E.ENOENT
    assert g.call("utimensat", AT_FDCWD, g.s("/dir/f"), bad_ns, 0) == -E.EINVAL
    assert g.call("utimensat", AT_FDCWD, g.s("/dir/f"), 0, 1) == -E.EINVAL
    assert g.call("utimensat", AT_FDCWD, g.s("/dir/f"), BAD_ADDR, 0) == -E.EFAULT
    assert g.call("utimensat", AT_FDCWD, 0, 0, 0) == -E.EFAULT
    fd = g.ok_open("/dir/f")
    assert g.call("utimensat", fd, 0, timespecs(g, (5, 0), (6, 0)), 0) == 0
    assert g.stat("/dir/f").st_mtime == 6
    assert g.call("utimensat", fd, 0, 0, F.AT_SYMLINK_NOFOLLOW) == -E.EINVAL
    assert g.call("utimensat", g.ok_open("/dir/f", F.O_PATH), 0, 0, 0) == -E.EBADF
    assert g.call("utimensat", 99, 0, 0, 0) == -E.EBADF
    assert g.call("utimensat", fd, g.s(""), 0, F.AT_EMPTY_PATH) == 0
    g.mount_ro("/ro")
    assert g.call("utimensat", AT_FDCWD, g.s("/ro/f"), 0, 0) == -E.EROFS


def test_utimensat_permissions(g: Guest) -> None:
    g.call("chmod", g.s("/dir/f"), 0o666)
    g.write_file("/dir/priv", b"", mode=0o644)
    g.become(1000)
    p = g.s("/dir/f")
    assert g.call("utimensat", AT_FDCWD, p, 0, 0) == 0  # "now" needs write access only
    assert g.call("utimensat", AT_FDCWD, p,
                  timespecs(g, (0, UTIME_NOW), (0, UTIME_NOW)), 0) == 0
    assert g.call("utimensat", AT_FDCWD, p, timespecs(g, (1, 0), (1, 0)), 0) == -E.EPERM
    assert g.call("utimensat", AT_FDCWD, p,
                  timespecs(g, (0, UTIME_NOW), (0, UTIME_OMIT)), 0) == -E.EPERM
    assert g.call("utimensat", AT_FDCWD, g.s("/dir/priv"), 0, 0) == -E.EACCES


def test_utimes_utime_futimesat(g: Guest) -> None:
    tv = g.data(struct.pack("<qqqq", 100, 5, 200, 7))
    assert g.call("utimes", g.s("/dir/f"), tv) == 0
    st = g.stat("/dir/f")
    assert (st.st_atime, st.st_atime_nsec, st.st_mtime, st.st_mtime_nsec) == (100, 5000, 200, 7000)
    bad = g.data(struct.pack("<qqqq", 0, 1_000_000, 0, 0))
    assert g.call("utimes", g.s("/dir/f"), bad) == -E.EINVAL
    assert g.call("utimes", g.s("/dir/f"), 0) == 0
    ub = g.data(struct.pack("<qq", 300, 400))
    assert g.call("utime", g.s("/dir/f"), ub) == 0
    st = g.stat("/dir/f")
    assert (st.st_atime, st.st_mtime, st.st_mtime_nsec) == (300, 400, 0)
    d = g.ok_open("/dir", F.O_DIRECTORY)
    assert g.call("futimesat", d, g.s("f"), tv) == 0
    assert g.stat("/dir/f").st_mtime == 200
    tv2 = g.data(struct.pack("<qqqq", 1, 0, 2, 0))
    assert g.call("futimesat", g.ok_open("/dir/f"), 0, tv2) == 0
    assert g.stat("/dir/f").st_mtime == 2
    assert g.call("utime", g.s("/dir/f"), BAD_ADDR) == -E.EFAULT


# --- sync ------------------------------------------------------------------------------
def test_sync_family(g: Guest) -> None:
    fd = g.ok_open("/dir/f")
    assert g.call("sync") == 0
    assert g.call("fsync", fd) == 0
    assert g.call("fdatasync", fd) == 0
    assert g.call("fsync", g.ok_open("/dir", F.O_DIRECTORY)) == 0
    assert g.call("syncfs", fd) == 0
    assert g.call("fsync", 99) == -E.EBADF
    assert g.call("syncfs", 99) == -E.EBADF
    assert g.call("fsync", g.ok_open("/dir/f", F.O_PATH)) == -E.EBADF
    fds = g.alloc(8)
    assert g.call("pipe2", fds, 0) == 0
    wr = int.from_bytes(g.read(fds + 4, 4), "little")
    assert g.call("fsync", wr) == -E.EINVAL
    assert g.call("syncfs", wr) == 0


def test_name_to_handle_at_is_enosys(g: Guest) -> None:
    assert g.call("name_to_handle_at", AT_FDCWD, g.s("/dir/f"), 0, 0, 0) == -E.ENOSYS
    assert g.call("open_by_handle_at", AT_FDCWD, 0, 0) == -E.ENOSYS
