"""getdents64, getcwd, chdir, fchdir, chroot."""

from __future__ import annotations

import struct

import pytest

from cove.abi import flags as F
from cove.abi.errno import E
from cove.abi.structs import DIRENT64

from .harness import SCRATCH
from .sysfs_helpers import BAD_ADDR, Guest

EDGE = SCRATCH + (1 << 20)


@pytest.fixture
def g() -> Guest:
    g = Guest()
    g.mkdir("/dir")
    for name in ("a", "bb", "ccc"):
        g.write_file(f"/dir/{name}", b"x")
    g.mkdir("/dir/sub")
    g.call("symlink", g.s("a"), g.s("/dir/lnk"))
    return g


def parse(raw: bytes) -> list[tuple[int, int, int, str]]:
    out = []
    pos = 0
    while pos < len(raw):
        ino, off, reclen, dtype = DIRENT64.unpack_from(raw, pos)
        name = raw[pos + DIRENT64.size:pos + reclen].split(b"\0", 1)[0].decode()
        assert reclen % 8 == 0
        out.append((ino, off, dtype, name))
        pos += reclen
    return out


def getdents(g: Guest, fd: int, count: int = 4096) -> list[tuple[int, int, int, str]]:
    buf = g.alloc(max(count, 1))
    n = g.call("getdents64", fd, buf, count)
    assert n >= 0, n
    return parse(g.read(buf, n))


def test_lists_everything_with_types_and_offsets(g: Guest) -> None:
    fd = g.ok_open("/dir", F.O_DIRECTORY)
    ents = getdents(g, fd)
    names = [e[3] for e in ents]
    assert names[:2] == [".", ".."]
    assert sorted(names[2:]) == ["a", "bb", "ccc", "lnk", "sub"]
    types = {e[3]: e[2] for e in ents}
    assert types["sub"] == F.DT_DIR and types["a"] == F.DT_REG and types["lnk"] == F.DT_LNK
    assert types["."] == F.DT_DIR
    assert [e[1] for e in ents] == list(range(1, len(ents) + 1))
    inos = {e[3]: e[0] for e in ents}
    assert inos["a"] == g.stat("/dir/a").st_ino and inos["."] == g.stat("/dir").st_ino
    assert inos[".."] == g.stat("/").st_ino
    assert getdents(g, fd) == []  # end of directory


def test_small_buffer_resumes_and_d_off_seeks(g: Guest) -> None:
    fd = g.ok_open("/dir", F.O_DIRECTORY)
    first = getdents(g, fd, 48)  # room for exactly two 24-byte records
    assert [e[3] for e in first] == [".", ".."]
    assert g.call("lseek", fd, 0, F.SEEK_CUR) == 2
    rest = getdents(g, fd)
    assert len(rest) == 5
    assert g.call("lseek", fd, first[0][1], F.SEEK_SET) == 1  # d_off of "."
    again = getdents(g, fd)
    assert [e[3] for e in again] == [".."] + [e[3] for e in rest]
    assert g.call("lseek", fd, 0, F.SEEK_SET) == 0
    assert len(getdents(g, fd)) == 7


def test_einval_when_no_entry_fits(g: Guest) -> None:
    fd = g.ok_open("/dir", F.O_DIRECTORY)
    buf = g.alloc(64)
    assert g.call("getdents64", fd, buf, 10) == -E.EINVAL
    assert g.call("getdents64", fd, buf, 0) == -E.EINVAL
    assert g.call("getdents64", fd, buf, 0xFFFFFFFF) == -E.EINVAL  # an int in the kernel
    assert g.call("lseek", fd, 0, F.SEEK_CUR) == 0


def test_efault_and_partial(g: Guest) -> None:
    fd = g.ok_open("/dir", F.O_DIRECTORY)
    assert g.call("getdents64", fd, BAD_ADDR, 4096) == -E.EFAULT
    assert g.call("getdents64", fd, 0, 4096) == -E.EFAULT
    assert g.call("lseek", fd, 0, F.SEEK_CUR) == 0
    # Room in mapped memory for two records only: those two come back.
    assert g.call("getdents64", fd, EDGE - 50, 4096) == 48
    assert g.call("lseek", fd, 0, F.SEEK_CUR) == 2


def test_getdents_errors(g: Guest) -> None:
    buf = g.alloc(256)
    assert g.call("getdents64", 99, buf, 256) == -E.EBADF
    assert g.call("getdents64", g.ok_open("/dir/a"), buf, 256) == -E.ENOTDIR
    assert g.call("getdents64", g.ok_open("/dir", F.O_PATH), buf, 256) == -E.EBADF
    g.mkdir("/gone")
    fd = g.ok_open("/gone", F.O_DIRECTORY)
    assert g.call("rmdir", g.s("/gone")) == 0
    assert g.call("getdents64", fd, buf, 256) == -E.ENOENT


def test_names_that_are_not_utf8_round_trip(g: Guest) -> None:
    assert g.call("mkdir", g.s(b"/dir/\xff\xfe"), 0o755) == 0
    fd = g.ok_open("/dir", F.O_DIRECTORY)
    buf = g.alloc(4096)
    n = g.call("getdents64", fd, buf, 4096)
    assert b"\xff\xfe\0" in g.read(buf, n)


# --- cwd -----------------------------------------------------------------------------
def getcwd(g: Guest, size: int = 256) -> bytes | int:
    buf = g.alloc(max(size, 1))
    n = g.call("getcwd", buf, size)
    return n if n < 0 else g.read(buf, n)


def test_chdir_getcwd(g: Guest) -> None:
    assert getcwd(g) == b"/\0"
    assert g.call("chdir", g.s("/dir/sub")) == 0
    assert getcwd(g) == b"/dir/sub\0"
    assert g.read_fd(g.ok_open("../a")) == b"x"
    assert getcwd(g, 9) == b"/dir/sub\0"
    assert getcwd(g, 8) == -E.ERANGE
    assert getcwd(g, 0) == -E.ERANGE
    assert g.call("getcwd", BAD_ADDR, 100) == -E.EFAULT
    assert g.call("chdir", g.s("/dir/a")) == -E.ENOTDIR
    assert g.call("chdir", g.s("/none")) == -E.ENOENT
    assert g.call("chdir", BAD_ADDR) == -E.EFAULT


def test_getcwd_of_a_removed_directory(g: Guest) -> None:
    g.mkdir("/tmpd")
    assert g.call("chdir", g.s("/tmpd")) == 0
    assert g.call("rmdir", g.s("/tmpd")) == 0
    assert getcwd(g) == -E.ENOENT


def test_fchdir(g: Guest) -> None:
    assert g.call("fchdir", g.ok_open("/dir", F.O_PATH)) == 0
    assert getcwd(g) == b"/dir\0"
    assert g.call("fchdir", g.ok_open("/dir/a")) == -E.ENOTDIR
    assert g.call("fchdir", 99) == -E.EBADF
    g.call("chmod", g.s("/dir/sub"), 0o700)
    fd = g.ok_open("/dir/sub", F.O_DIRECTORY)
    g.become(1000)
    assert g.call("fchdir", fd) == -E.EACCES
    assert g.call("chdir", g.s("/dir/sub")) == -E.EACCES


def test_chroot(g: Guest) -> None:
    g.write_file("/dir/sub/inner", b"in")
    assert g.call("chroot", g.s("/dir/a")) == -E.ENOTDIR
    assert g.call("chroot", g.s("/missing")) == -E.ENOENT
    assert g.call("chroot", g.s("/dir")) == 0
    assert g.read_fd(g.ok_open("/sub/inner")) == b"in"
    assert g.open("/dir/a") == -E.ENOENT
    assert g.read_fd(g.ok_open("/../../a")) == b"x"
    assert getcwd(g) == b"(unreachable)/\0"  # the cwd was left outside the new root
    assert g.call("chdir", g.s("/")) == 0
    assert getcwd(g) == b"/\0"


def test_chroot_needs_root(g: Guest) -> None:
    g.call("chmod", g.s("/dir/sub"), 0o700)
    g.become(1000)
    assert g.call("chroot", g.s("/dir")) == -E.EPERM
    assert g.call("chroot", g.s("/dir/sub")) == -E.EACCES  # search permission first


def test_dirent_layout() -> None:
    assert DIRENT64.size == 19
    assert struct.calcsize("<QqHB") == 19


def test_old_getdents_layout(g: Guest) -> None:
    fd = g.ok_open("/dir", F.O_DIRECTORY)
    buf = g.alloc(4096)
    n = g.call("getdents", fd, buf, 4096)
    raw = g.read(buf, n)
    names = {}
    pos = 0
    while pos < n:
        ino, off, reclen = struct.unpack_from("<QQH", raw, pos)
        name = raw[pos + 18:pos + reclen].split(b"\0", 1)[0].decode()
        names[name] = (ino, raw[pos + reclen - 1])
        assert reclen % 8 == 0 and off >= 1
        pos += reclen
    assert names["sub"][1] == F.DT_DIR and names["a"][1] == F.DT_REG
    assert names["a"][0] == g.stat("/dir/a").st_ino
    assert len(names) == 7
    assert g.call("getdents", fd, buf, 10) == 0  # at the end: nothing, not EINVAL
    g.call("lseek", fd, 0, F.SEEK_SET)
    assert g.call("getdents", fd, buf, 10) == -E.EINVAL
