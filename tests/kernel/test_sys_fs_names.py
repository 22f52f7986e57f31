"""mkdir/mknod/symlink/link/unlink/rmdir/rename/readlink (and their *at forms)."""

from __future__ import annotations

import pytest

from cove.abi import flags as F
from cove.abi.errno import E

from .sysfs_helpers import AT_FDCWD, BAD_ADDR, Guest


@pytest.fixture
def g() -> Guest:
    g = Guest()
    g.mkdir("/dir")
    g.write_file("/dir/f", b"data")
    return g


def exists(g: Guest, path: str) -> bool:
    return g.call("access", g.s(path), F.F_OK) == 0


def test_mkdir(g: Guest) -> None:
    assert g.call("mkdir", g.s("/dir/sub"), 0o1777) == 0
    assert g.stat("/dir/sub").st_mode == F.S_IFDIR | 0o1755  # umask 022
    assert g.call("mkdir", g.s("/dir/sub"), 0o755) == -E.EEXIST
    assert g.call("mkdir", g.s("/dir/f/"), 0o755) == -E.EEXIST
    assert g.call("mkdir", g.s("/no/sub"), 0o755) == -E.ENOENT
    assert g.call("mkdir", g.s("/dir/f/x"), 0o755) == -E.ENOTDIR
    assert g.call("mkdir", BAD_ADDR, 0o755) == -E.EFAULT
    d = g.ok_open("/dir", F.O_DIRECTORY)
    assert g.call("mkdirat", d, g.s("rel"), 0o700) == 0
    assert g.stat("/dir/rel").st_mode == F.S_IFDIR | 0o700
    assert g.call("mkdirat", 99, g.s("rel"), 0o700) == -E.EBADF
    assert g.call("mkdirat", g.ok_open("/dir/f"), g.s("x"), 0o700) == -E.ENOTDIR


def test_mkdir_permissions_and_erofs(g: Guest) -> None:
    g.mount_ro("/ro")
    assert g.call("mkdir", g.s("/ro/x"), 0o755) == -E.EROFS
    g.become(1000)
    assert g.call("mkdir", g.s("/dir/x"), 0o755) == -E.EACCES


def test_mknod(g: Guest) -> None:
    assert g.call("mknod", g.s("/fifo"), F.S_IFIFO | 0o644, 0) == 0
    assert g.stat("/fifo").st_mode == F.S_IFIFO | 0o644
    assert g.call("mknod", g.s("/plain"), 0, 0) == 0
    assert g.stat("/plain").st_mode == F.S_IFREG
    assert g.call("mknod", g.s("/chr"), F.S_IFCHR | 0o600, (5 << 8) | 1) == 0
    assert g.stat("/chr").st_rdev == 0x501
    assert g.call("mknodat", AT_FDCWD, g.s("/blk"), F.S_IFBLK | 0o600, (8 << 8) | 1) == 0
    assert g.call("mknod", g.s("/d"), F.S_IFDIR | 0o755, 0) == -E.EPERM
    assert g.call("mknod", g.s("/bad"), 0o170755, 0) == -E.EINVAL
    assert g.call("mknod", g.s("/fifo"), F.S_IFIFO | 0o644, 0) == -E.EEXIST
    g.call("chmod", g.s("/dir"), 0o777)
    g.become(1000)
    assert g.call("mknod", g.s("/dir/c"), F.S_IFCHR | 0o600, 0x501) == -E.EPERM
    assert g.call("mknod", g.s("/dir/p"), F.S_IFIFO | 0o600, 0) == 0


def test_symlink_and_readlink(g: Guest) -> None:
    assert g.call("symlink", g.s("dir/f"), g.s("/l")) == 0
    buf = g.alloc(64)
    assert g.call("readlink", g.s("/l"), buf, 64) == 5
    assert g.read(buf, 6) == b"dir/f\0"  # no NUL written: the buffer was zeroed
    g.t.mm.write(buf, b"XXXXXXXX")
    assert g.call("readlink", g.s("/l"), buf, 3) == 3  # truncated, no NUL
    assert g.read(buf, 8) == b"dirXXXXX"
    assert g.call("readlink", g.s("/l"), buf, 0) == -E.EINVAL
    assert g.call("readlink", g.s("/l"), buf, -1) == -E.EINVAL
    assert g.call("readlink", BAD_ADDR, buf, 0) == -E.EINVAL  # bufsiz before the path
    assert g.call("readlink", g.s("/dir/f"), buf, 64) == -E.EINVAL
    assert g.call("readlink", g.s("/nope"), buf, 64) == -E.ENOENT
    assert g.call("readlink", g.s("/l"), BAD_ADDR, 64) == -E.EFAULT
    assert g.call("symlink", g.s("x"), g.s("/l")) == -E.EEXIST
    assert g.call("symlink", g.s(""), g.s("/empty")) == -E.ENOENT
    assert g.call("symlink", g.s("t"), g.s("/nodir/l")) == -E.ENOENT
    d = g.ok_open("/dir", F.O_DIRECTORY)
    assert g.call("symlinkat", g.s("f"), d, g.s("l2")) == 0
    assert g.call("readlinkat", d, g.s("l2"), buf, 64) == 1


def test_readlinkat_empty_path(g: Guest) -> None:
    g.call("symlink", g.s("target"), g.s("/l"))
    buf = g.alloc(64)
    p = g.ok_open("/l", F.O_PATH | F.O_NOFOLLOW)
    assert g.call("readlinkat", p, g.s(""), buf, 64) == 6
    assert g.read(buf, 6) == b"target"
    # Anything that is not a symlink: "not found", as Linux 6.18 answers.
    assert g.call("readlinkat", g.ok_open("/dir/f"), g.s(""), buf, 64) == -E.ENOENT
    assert g.call("readlinkat", AT_FDCWD, g.s(""), buf, 64) == -E.ENOENT
    assert g.call("readlinkat", 99, g.s(""), buf, 64) == -E.EBADF


def test_link(g: Guest) -> None:
    assert g.call("link", g.s("/dir/f"), g.s("/hard")) == 0
    assert g.stat("/hard").st_ino == g.stat("/dir/f").st_ino
    assert g.stat("/hard").st_nlink == 2
    assert g.call("link", g.s("/dir/f"), g.s("/hard")) == -E.EEXIST
    assert g.call("link", g.s("/dir"), g.s("/dirlink")) == -E.EPERM
    assert g.call("link", g.s("/none"), g.s("/x")) == -E.ENOENT
    g.mount_ro("/ro")
    assert g.call("link", g.s("/ro/f"), g.s("/x")) == -E.EXDEV


def test_linkat_flags(g: Guest) -> None:
    g.call("symlink", g.s("/dir/f"), g.s("/sl"))
    assert g.call("linkat", AT_FDCWD, g.s("/sl"), AT_FDCWD, g.s("/l1"), 0) == 0
    assert g.stat("/l1", F.AT_SYMLINK_NOFOLLOW).st_mode & F.S_IFMT == F.S_IFLNK
    assert g.call("linkat", AT_FDCWD, g.s("/sl"), AT_FDCWD, g.s("/l2"), F.AT_SYMLINK_FOLLOW) == 0
    assert g.stat("/l2", F.AT_SYMLINK_NOFOLLOW).st_mode & F.S_IFMT == F.S_IFREG
    assert g.call("linkat", AT_FDCWD, g.s("/sl"), AT_FDCWD, g.s("/l3"), 1) == -E.EINVAL
    assert g.call("linkat", AT_FDCWD, BAD_ADDR, AT_FDCWD, BAD_ADDR, 1) == -E.EINVAL
    fd = g.ok_open("/dir/f")
    assert g.call("linkat", fd, g.s(""), AT_FDCWD, g.s("/l4"), F.AT_EMPTY_PATH) == 0
    assert g.stat("/l4").st_ino == g.stat("/dir/f").st_ino
    assert g.call("linkat", fd, g.s(""), AT_FDCWD, g.s("/l5"), 0) == -E.ENOENT
    g.call("unlink", g.s("/dir/f"))
    g.call("unlink", g.s("/l2"))
    g.call("unlink", g.s("/l4"))
    # A deleted (non-O_TMPFILE) file stays deleted.
    assert g.call("linkat", fd, g.s(""), AT_FDCWD, g.s("/back"), F.AT_EMPTY_PATH) == -E.ENOENT
    fd2 = g.ok_open("/l1", F.O_PATH | F.O_NOFOLLOW)
    g.call("chmod", g.s("/dir"), 0o777)
    g.become(1000)
    # Without CAP_DAC_READ_SEARCH: only files opened with the caller's own
    # credentials (Linux 6.10+).
    assert g.call("linkat", fd2, g.s(""), AT_FDCWD, g.s("/dir/x"), F.AT_EMPTY_PATH) == \
        -E.ENOENT
    g.write_file("/dir/mine", b"")
    mine = g.ok_open("/dir/mine")
    assert g.call("linkat", mine, g.s(""), AT_FDCWD, g.s("/dir/y"), F.AT_EMPTY_PATH) == 0


def test_unlink_rmdir(g: Guest) -> None:
    g.mkdir("/dir/sub")
    assert g.call("unlink", g.s("/dir/sub")) == -E.EISDIR
    assert g.call("rmdir", g.s("/dir/f")) == -E.ENOTDIR
    assert g.call("rmdir", g.s("/dir")) == -E.ENOTEMPTY
    assert g.call("rmdir", g.s("/dir/sub/.")) == -E.EINVAL
    assert g.call("rmdir", g.s("/dir/sub/..")) == -E.ENOTEMPTY
    assert g.call("rmdir", g.s("/")) == -E.EBUSY
    assert g.call("unlink", g.s("/dir/f/")) == -E.ENOTDIR
    assert g.call("unlink", g.s("/dir/nope")) == -E.ENOENT
    assert g.call("unlink", g.s("/dir/f")) == 0
    assert not exists(g, "/dir/f")
    assert g.call("rmdir", g.s("/dir/sub")) == 0
    assert g.call("rmdir", g.s("/dir/sub")) == -E.ENOENT


def test_unlinkat(g: Guest) -> None:
    g.mkdir("/dir/sub")
    d = g.ok_open("/dir", F.O_DIRECTORY)
    assert g.call("unlinkat", d, g.s("sub"), 0) == -E.EISDIR
    assert g.call("unlinkat", d, g.s("sub"), 1) == -E.EINVAL
    assert g.call("unlinkat", d, BAD_ADDR, 1) == -E.EINVAL  # flags before the path
    assert g.call("unlinkat", d, g.s("sub"), F.AT_REMOVEDIR) == 0
    assert g.call("unlinkat", d, g.s("f"), F.AT_REMOVEDIR) == -E.ENOTDIR
    assert g.call("unlinkat", d, g.s("f"), 0) == 0
    assert g.call("unlinkat", 99, g.s("f"), 0) == -E.EBADF


def test_unlink_sticky_and_permissions(g: Guest) -> None:
    g.call("chmod", g.s("/dir"), 0o1777)
    g.become(1000)
    g.write_file("/dir/mine", b"m")
    g.become(1001)
    assert g.call("unlink", g.s("/dir/mine")) == -E.EPERM  # sticky
    assert g.call("unlink", g.s("/dir/f")) == -E.EPERM
    g.become(1000)
    assert g.call("unlink", g.s("/dir/mine")) == 0


def test_unlink_erofs(g: Guest) -> None:
    g.mount_ro("/ro")
    assert g.call("unlink", g.s("/ro/f")) == -E.EROFS
    assert g.call("rmdir", g.s("/ro/d")) == -E.EROFS


def test_rename(g: Guest) -> None:
    g.mkdir("/dir/sub")
    assert g.call("rename", g.s("/dir/f"), g.s("/dir/sub/g")) == 0
    assert exists(g, "/dir/sub/g") and not exists(g, "/dir/f")
    assert g.call("rename", g.s("/dir"), g.s("/dir/sub/in")) == -E.EINVAL
    assert g.call("rename", g.s("/dir/nope"), g.s("/x")) == -E.ENOENT
    g.mkdir("/other")
    g.write_file("/other/x", b"")
    assert g.call("rename", g.s("/dir/sub"), g.s("/other")) == -E.ENOTEMPTY
    assert g.call("rename", g.s("/dir/sub/g"), g.s("/other")) == -E.EISDIR
    assert g.call("rename", g.s("/dir/sub"), g.s("/other/x")) == -E.ENOTDIR
    g.mount_ro("/ro")
    assert g.call("rename", g.s("/other/x"), g.s("/ro/x")) == -E.EXDEV
    d = g.ok_open("/other", F.O_DIRECTORY)
    assert g.call("renameat", d, g.s("x"), AT_FDCWD, g.s("/y")) == 0
    assert exists(g, "/y")


def test_renameat2(g: Guest) -> None:
    g.write_file("/a", b"A")
    g.write_file("/b", b"B")
    assert g.call("renameat2", AT_FDCWD, g.s("/a"), AT_FDCWD, g.s("/b"),
                  F.RENAME_NOREPLACE) == -E.EEXIST
    assert g.call("renameat2", AT_FDCWD, g.s("/a"), AT_FDCWD, g.s("/b"),
                  F.RENAME_EXCHANGE) == 0
    assert g.read_fd(g.ok_open("/a")) == b"B"
    assert g.call("renameat2", AT_FDCWD, g.s("/a"), AT_FDCWD, g.s("/c"),
                  F.RENAME_EXCHANGE) == -E.ENOENT
    assert g.call("renameat2", AT_FDCWD, BAD_ADDR, AT_FDCWD, BAD_ADDR, 8) == -E.EINVAL
    assert g.call("renameat2", AT_FDCWD, g.s("/a"), AT_FDCWD, g.s("/c"),
                  F.RENAME_EXCHANGE | F.RENAME_NOREPLACE) == -E.EINVAL
    assert g.call("renameat2", AT_FDCWD, g.s("/a"), AT_FDCWD, g.s("/c"), 0) == 0
