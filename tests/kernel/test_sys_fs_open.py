"""open/openat/openat2/creat/close/close_range/dup* through the dispatcher.

Expected errnos were checked against Linux 6.18 (openat2 cases with a small
ctypes probe on the host)."""

from __future__ import annotations

import struct

import pytest

from cove.abi import flags as F
from cove.abi.errno import E

from .sysfs_helpers import AT_FDCWD, BAD_ADDR, Guest


@pytest.fixture
def g() -> Guest:
    g = Guest()
    g.mkdir("/dir")
    g.mkdir("/dir/sub")
    g.write_file("/dir/f", b"hi\n")
    assert g.call("symlink", g.s("/dir/f"), g.s("/abs_link")) == 0
    assert g.call("symlink", g.s("dir/f"), g.s("/rel_link")) == 0
    assert g.call("symlink", g.s("loop"), g.s("/loop")) == 0
    return g


def test_create_write_read_back(g: Guest) -> None:
    fd = g.open("/new", F.O_CREAT | F.O_RDWR, 0o600)
    assert fd == 0
    assert g.call("write", fd, g.data(b"abc"), 3) == 3
    assert g.call("lseek", fd, 0, F.SEEK_SET) == 0
    assert g.read_fd(fd) == b"abc"
    assert g.stat("/new").st_mode == F.S_IFREG | 0o600


def test_umask_applies_to_created_files(g: Guest) -> None:
    assert g.call("umask", 0o077) == 0o022
    g.ok_open("/masked", F.O_CREAT | F.O_WRONLY, 0o666)
    assert g.stat("/masked").st_mode & 0o777 == 0o600


@pytest.mark.parametrize(("path", "flags", "err"), [
    ("/missing", F.O_RDONLY, E.ENOENT),
    ("/dir/missing/x", F.O_CREAT | F.O_WRONLY, E.ENOENT),
    ("/dir/f/x", F.O_RDONLY, E.ENOTDIR),
    ("/dir/f", F.O_RDONLY | F.O_DIRECTORY, E.ENOTDIR),
    ("/dir/f", F.O_CREAT | F.O_EXCL | F.O_WRONLY, E.EEXIST),
    ("/abs_link", F.O_CREAT | F.O_EXCL | F.O_WRONLY, E.EEXIST),
    ("/dir", F.O_WRONLY, E.EISDIR),
    ("/dir", F.O_RDWR, E.EISDIR),
    ("/loop", F.O_RDONLY, E.ELOOP),
    ("/abs_link", F.O_RDONLY | F.O_NOFOLLOW, E.ELOOP),
    ("/x", F.O_CREAT | F.O_DIRECTORY | F.O_RDWR, E.EINVAL),
    ("/dir", F.O_TMPFILE | F.O_RDONLY, E.EINVAL),
    ("", F.O_RDONLY, E.ENOENT),
    ("/" + "a" * 256, F.O_RDONLY, E.ENAMETOOLONG),
])
def test_open_errors(g: Guest, path: str, flags: int, err: int) -> None:
    assert g.open(path, flags) == -err


def test_open_bad_path_pointer(g: Guest) -> None:
    assert g.call("openat", AT_FDCWD, BAD_ADDR, F.O_RDONLY, 0) == -E.EFAULT
    assert g.call("open", 0, F.O_RDONLY, 0) == -E.EFAULT


def test_path_too_long(g: Guest) -> None:
    assert g.open("/" + "a/" * 2100) == -E.ENAMETOOLONG


def test_follows_symlinks(g: Guest) -> None:
    for p in ("/abs_link", "/rel_link"):
        assert g.read_fd(g.ok_open(p)) == b"hi\n"


def test_flags_kept_as_linux_reports_them(g: Guest) -> None:
    fd = g.ok_open("/dir/f", F.O_RDWR | F.O_TRUNC | F.O_CLOEXEC | F.O_APPEND | F.O_NOCTTY)
    assert g.call("fcntl", fd, F.F_GETFL, 0) == F.O_RDWR | F.O_APPEND | F.O_LARGEFILE
    assert g.call("fcntl", fd, F.F_GETFD, 0) == F.FD_CLOEXEC
    fd2 = g.ok_open("/dir/f", F.O_RDONLY | F.O_SYNC_BIT)
    assert g.call("fcntl", fd2, F.F_GETFL, 0) == F.O_SYNC | F.O_LARGEFILE
    assert g.call("fcntl", fd2, F.F_GETFD, 0) == 0


def test_unknown_flag_bits_are_ignored_by_open(g: Guest) -> None:
    fd = g.ok_open("/dir/f", F.O_RDONLY | 0x40000000)
    assert g.call("fcntl", fd, F.F_GETFL, 0) == F.O_LARGEFILE


def test_o_trunc(g: Guest) -> None:
    g.ok_open("/dir/f", F.O_WRONLY | F.O_TRUNC)
    assert g.stat("/dir/f").st_size == 0


def test_creat_truncates_and_is_write_only(g: Guest) -> None:
    fd = g.call("creat", g.s("/dir/f"), 0o644)
    assert fd >= 0
    assert g.stat("/dir/f").st_size == 0
    assert g.call("read", fd, g.alloc(4), 4) == -E.EBADF


def test_o_path(g: Guest) -> None:
    fd = g.ok_open("/dir/f", F.O_PATH | F.O_RDWR | F.O_TRUNC)
    assert g.stat("/dir/f").st_size == 3  # O_PATH drops O_TRUNC
    assert g.call("fcntl", fd, F.F_GETFL, 0) == F.O_PATH
    assert g.call("read", fd, g.alloc(4), 4) == -E.EBADF
    assert g.call("write", fd, g.data(b"x"), 1) == -E.EBADF
    assert g.fstat(fd).st_size == 3
    link = g.ok_open("/abs_link", F.O_PATH | F.O_NOFOLLOW)
    assert g.fstat(link).st_mode & F.S_IFMT == F.S_IFLNK


def test_dirfd_rules(g: Guest) -> None:
    d = g.ok_open("/dir", F.O_DIRECTORY)
    assert g.read_fd(g.open("f", dirfd=d)) == b"hi\n"
    f = g.ok_open("/dir/f")
    assert g.open("x", dirfd=f) == -E.ENOTDIR
    assert g.open("x", dirfd=999) == -E.EBADF
    assert g.open("/dir/f", dirfd=999) >= 0  # an absolute path never looks at dirfd
    assert g.open("", dirfd=999) == -E.ENOENT  # the empty path is refused first
    p = g.ok_open("/dir", F.O_PATH)
    assert g.read_fd(g.open("f", dirfd=p)) == b"hi\n"  # O_PATH dirfds work


def test_emfile_before_lookup(g: Guest) -> None:
    g.t.files.limit = 3
    for _ in range(3):
        g.ok_open("/dir/f")
    assert g.open("/missing") == -E.EMFILE
    assert g.call("dup", 0) == -E.EMFILE


def test_permissions_as_non_root(g: Guest) -> None:
    g.write_file("/secret", b"s", mode=0o600)
    g.write_file("/pub", b"p", mode=0o644)
    assert g.call("mkdir", g.s("/closed"), 0o700) == 0
    g.become(1000)
    assert g.open("/secret") == -E.EACCES
    assert g.open("/pub", F.O_WRONLY) == -E.EACCES
    assert g.open("/pub") >= 0
    assert g.open("/closed/x", F.O_CREAT | F.O_WRONLY) == -E.EACCES
    assert g.open("/newfile", F.O_CREAT | F.O_WRONLY) == -E.EACCES  # / is 0755 root
    assert g.open("/pub", F.O_RDONLY | F.O_NOATIME) == -E.EPERM


def test_noatime_does_not_truncate_first(g: Guest) -> None:
    g.write_file("/shared", b"keep", mode=0o666)
    g.become(1000)
    assert g.open("/shared", F.O_WRONLY | F.O_TRUNC | F.O_NOATIME) == -E.EPERM
    g.become(0)
    assert g.stat("/shared").st_size == 4


def test_erofs(g: Guest) -> None:
    g.mount_ro("/ro")
    assert g.open("/ro/f", F.O_WRONLY) == -E.EROFS
    assert g.open("/ro/new", F.O_CREAT | F.O_WRONLY) == -E.EROFS
    assert g.read_fd(g.ok_open("/ro/f")) == b"ro data"


def test_o_tmpfile_and_linkat(g: Guest) -> None:
    fd = g.open("/dir", F.O_TMPFILE | F.O_RDWR, 0o600)
    assert fd >= 0
    assert g.call("write", fd, g.data(b"anon"), 4) == 4
    assert g.fstat(fd).st_nlink == 0
    assert g.call("getdents64", g.ok_open("/dir", F.O_DIRECTORY), g.alloc(4096), 4096) == \
        24 * 2 + 24 + 24  # ., .., f, sub: the tmpfile has no name
    assert g.call("linkat", fd, g.s(""), AT_FDCWD, g.s("/dir/named"), F.AT_EMPTY_PATH) == 0
    assert g.read_fd(g.ok_open("/dir/named")) == b"anon"
    excl = g.open("/dir", F.O_TMPFILE | F.O_RDWR | F.O_EXCL, 0o600)
    assert g.call("linkat", excl, g.s(""), AT_FDCWD, g.s("/dir/n2"), F.AT_EMPTY_PATH) == \
        -E.ENOENT


# --- openat2 ------------------------------------------------------------------------------
def how(flags: int = 0, mode: int = 0, resolve: int = 0) -> bytes:
    return struct.pack("<QQQ", flags, mode, resolve)


def openat2(g: Guest, dirfd: int, path: str, raw: bytes, size: int | None = None) -> int:
    return g.call("openat2", dirfd, g.s(path), g.data(raw), len(raw) if size is None else size)


@pytest.mark.parametrize(("raw", "size", "err"), [
    (how(), 23, E.EINVAL),
    (how() + b"\1" + bytes(7), None, E.E2BIG),
    (how() + bytes(5000 - 24), None, E.E2BIG),
    (how(mode=0o644), None, E.EINVAL),
    (how(F.O_CREAT, mode=0o10000), None, E.EINVAL),
    (how(F.O_PATH | F.O_RDWR), None, E.EINVAL),
    (how(1 << 40), None, E.EINVAL),
    (how(resolve=0x40), None, E.EINVAL),
    (how(resolve=F.RESOLVE_BENEATH | F.RESOLVE_IN_ROOT), None, E.EINVAL),
    (how(F.O_CREAT | F.O_WRONLY, 0o644, F.RESOLVE_CACHED), None, E.EAGAIN),
    (how(F.O_CREAT | F.O_DIRECTORY), None, E.EINVAL),
])
def test_openat2_argument_errors(g: Guest, raw: bytes, size: int | None, err: int) -> None:
    assert openat2(g, AT_FDCWD, "/dir/f", raw, size) == -err


def test_openat2_larger_zeroed_struct_and_efault(g: Guest) -> None:
    assert openat2(g, AT_FDCWD, "/dir/f", how() + bytes(8)) >= 0
    assert g.call("openat2", AT_FDCWD, g.s("/dir/f"), BAD_ADDR, 24) == -E.EFAULT
    assert g.call("openat2", AT_FDCWD, BAD_ADDR, g.data(how()), 24) == -E.EFAULT


def test_openat2_beneath(g: Guest) -> None:
    d = g.ok_open("/dir", F.O_DIRECTORY)
    g.call("symlink", g.s("/dir/f"), g.s("/dir/abs"))
    g.call("symlink", g.s("sub/../f"), g.s("/dir/rel"))
    ben = how(resolve=F.RESOLVE_BENEATH)
    assert openat2(g, d, "../dir/f", ben) == -E.EXDEV
    assert openat2(g, d, "/dir/f", ben) == -E.EXDEV
    assert openat2(g, 999, "/dir/f", ben) == -E.EXDEV  # dirfd not looked at
    assert openat2(g, d, "abs", ben) == -E.EXDEV
    assert openat2(g, d, "rel", ben) >= 0
    assert openat2(g, d, "sub/../f", ben) >= 0
    assert openat2(g, d, "", ben) == -E.ENOENT
    assert openat2(g, d, "nope", ben) == -E.ENOENT
    assert openat2(g, d, "new", how(F.O_CREAT | F.O_WRONLY, 0o600, F.RESOLVE_BENEATH)) >= 0
    assert g.stat("/dir/new").st_mode & 0o777 == 0o600


def test_openat2_in_root(g: Guest) -> None:
    g.write_file("/dir/sub/inner", b"inner")
    d = g.ok_open("/dir", F.O_DIRECTORY)
    g.call("symlink", g.s("/sub/inner"), g.s("/dir/abs"))
    inr = how(resolve=F.RESOLVE_IN_ROOT)
    assert g.read_fd(openat2(g, d, "abs", inr)) == b"inner"
    assert g.read_fd(openat2(g, d, "/f", inr)) == b"hi\n"
    assert g.read_fd(openat2(g, d, "../../../f", inr)) == b"hi\n"
    assert openat2(g, d, "/dir/f", inr) == -E.ENOENT  # /dir is outside this root


def test_openat2_no_symlinks(g: Guest) -> None:
    nosym = F.RESOLVE_NO_SYMLINKS
    assert openat2(g, AT_FDCWD, "/rel_link", how(resolve=nosym)) == -E.ELOOP
    g.call("symlink", g.s("/dir"), g.s("/dlink"))
    assert openat2(g, AT_FDCWD, "/dlink/f", how(resolve=nosym)) == -E.ELOOP
    assert openat2(g, AT_FDCWD, "/rel_link",
                   how(F.O_PATH | F.O_NOFOLLOW, resolve=nosym)) >= 0
    assert openat2(g, AT_FDCWD, "/rel_link", how(F.O_NOFOLLOW, resolve=nosym)) == -E.ELOOP
    assert openat2(g, AT_FDCWD, "/dir/f", how(resolve=nosym)) >= 0


def test_openat2_no_xdev(g: Guest) -> None:
    g.mount_ro("/ro")
    nox = how(resolve=F.RESOLVE_NO_XDEV)
    assert openat2(g, AT_FDCWD, "/ro/f", nox) == -E.EXDEV
    assert openat2(g, AT_FDCWD, "/dir/f", nox) >= 0  # an absolute path is no crossing
    ro = g.ok_open("/ro", F.O_DIRECTORY)
    assert openat2(g, ro, "f", nox) >= 0
    assert openat2(g, ro, "../dir/f", nox) == -E.EXDEV
    assert openat2(g, AT_FDCWD, "/abs_link", nox) >= 0  # same mount all along


def test_openat2_plain_matches_openat(g: Guest) -> None:
    fd = openat2(g, AT_FDCWD, "/dir/f", how(F.O_RDWR | F.O_CLOEXEC))
    assert g.call("fcntl", fd, F.F_GETFL, 0) == F.O_RDWR | F.O_LARGEFILE
    assert g.call("fcntl", fd, F.F_GETFD, 0) == F.FD_CLOEXEC


# --- close, close_range, dup ------------------------------------------------------------
def test_close(g: Guest) -> None:
    fd = g.ok_open("/dir/f")
    assert g.call("close", fd) == 0
    assert g.call("close", fd) == -E.EBADF
    assert g.call("close", -1) == -E.EBADF


def test_close_range(g: Guest) -> None:
    fds = [g.ok_open("/dir/f") for _ in range(6)]
    assert g.call("close_range", 2, 3, 0) == 0
    assert sorted(g.t.files.files) == [0, 1, 4, 5]
    assert g.call("close_range", 4, 0xFFFFFFFF, 4) == 0  # CLOSE_RANGE_CLOEXEC
    assert g.t.files.cloexec == {4, 5}
    assert g.call("close_range", 5, 4, 0) == -E.EINVAL
    assert g.call("close_range", 0, 1, 8) == -E.EINVAL
    assert len(fds) == 6


def test_close_range_unshare(g: Guest) -> None:
    g.ok_open("/dir/f")
    shared = g.t.files
    shared.users = 2  # as if a CLONE_FILES sibling shared it
    assert g.call("close_range", 0, 10, 2) == 0  # CLOSE_RANGE_UNSHARE
    assert g.t.files is not shared and not g.t.files.files
    assert 0 in shared.files and shared.users == 1


def test_dup_family(g: Guest) -> None:
    fd = g.ok_open("/dir/f")
    assert g.call("dup", fd) == 1
    assert g.call("dup", 99) == -E.EBADF
    assert g.call("dup2", fd, fd) == fd
    assert g.call("dup2", 99, 99) == -E.EBADF
    assert g.call("dup2", fd, 7) == 7
    assert g.call("dup2", fd, 1 << 20) == -E.EBADF
    assert g.call("dup2", fd, -1) == -E.EBADF
    assert g.call("dup3", fd, fd, 0) == -E.EINVAL
    assert g.call("dup3", fd, 8, 1) == -E.EINVAL
    assert g.call("dup3", 99, 8, 0) == -E.EBADF
    assert g.call("dup3", fd, 8, F.O_CLOEXEC) == 8
    assert g.call("fcntl", 8, F.F_GETFD, 0) == F.FD_CLOEXEC
    # dup2 over an fd with cloexec clears it
    assert g.call("dup2", fd, 8) == 8
    assert g.call("fcntl", 8, F.F_GETFD, 0) == 0


def test_dup_shares_the_offset(g: Guest) -> None:
    fd = g.ok_open("/dir/f")
    fd2 = g.call("dup", fd)
    assert g.read_fd(fd, 1) == b"h"
    assert g.read_fd(fd2, 10) == b"i\n"
    assert g.call("lseek", fd, 0, F.SEEK_CUR) == 3


def test_dup2_over_open_fd_closes_it(g: Guest) -> None:
    a = g.ok_open("/dir/f")
    b = g.ok_open("/rel_link")
    old = g.t.files.get(b)
    assert g.call("dup2", a, b) == b
    assert g.t.files.get(b) is g.t.files.get(a)
    assert old.fd_refs == 0


@pytest.mark.timeout(30)
def test_fifo_open_blocks_and_resumes(g: Guest) -> None:
    from cove.kernel.pipe import install_fifos

    install_fifos(g.vfs)  # as the sandbox's rootfs does
    assert g.call("mknod", g.s("/fifo"), F.S_IFIFO | 0o666, 0) == 0
    before = dict(g.t.files.files)
    g.open("/fifo", F.O_RDONLY)
    assert g.blocked()
    assert g.t.files.files == before  # nothing installed while asleep
    other = g.fork_process()
    w = other.open("/fifo", F.O_WRONLY)
    assert w >= 0
    fd = g.resume()
    assert fd >= 0 and g.t.files.get(fd).flags & F.O_ACCMODE == F.O_RDONLY
    assert other.call("write", w, other.data(b"via fifo"), 8) == 8
    assert g.read_fd(fd) == b"via fifo"
    assert g.open("/fifo", F.O_WRONLY | F.O_NONBLOCK) >= 0  # a reader exists now
    assert other.open("/none_fifo", F.O_WRONLY) == -E.ENOENT
