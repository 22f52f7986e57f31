"""memfd_create and seals. Expected results checked on Linux 6.18."""

from __future__ import annotations

from cove.abi import flags as F
from cove.abi.errno import E
from cove.abi.structs import STATFS
from cove.fs.node import TMPFS_MAGIC

from .sysfs_helpers import AT_FDCWD, BAD_ADDR, Guest


def memfd(g: Guest, name: str = "m", flags: int = 0) -> int:
    return g.call("memfd_create", g.s(name), flags)


def test_memfd_is_an_anonymous_file() -> None:
    g = Guest()
    fd = memfd(g, "hello")
    assert fd >= 0
    st = g.fstat(fd)
    assert st.st_mode == F.S_IFREG | 0o777 and st.st_nlink == 0 and st.st_size == 0
    assert g.call("fcntl", fd, F.F_GETFL, 0) == F.O_RDWR | F.O_LARGEFILE
    assert g.call("fcntl", fd, F.F_GETFD, 0) == 0
    assert g.call("write", fd, g.data(b"abc"), 3) == 3
    assert g.call("pread64", fd, g.alloc(3), 3, 0) == 3
    assert g.call("ftruncate", fd, 4096) == 0
    assert g.fstat(fd).st_size == 4096
    assert g.t.files.get(fd).proc_name() == "/memfd:hello (deleted)"  # type: ignore[attr-defined]
    buf = g.alloc(STATFS.size)
    assert g.call("fstatfs", fd, buf) == 0
    assert STATFS.read(g.read(buf, STATFS.size)).f_type == TMPFS_MAGIC
    assert g.call("getdents64", fd, g.alloc(64), 64) == -E.ENOTDIR
    # It is in no directory, and cannot be linked into one.
    assert g.call("linkat", fd, g.s(""), AT_FDCWD, g.s("/named"), F.AT_EMPTY_PATH) < 0
    c = memfd(g, "c", F.MFD_CLOEXEC)
    assert g.call("fcntl", c, F.F_GETFD, 0) == F.FD_CLOEXEC


def test_memfd_create_errors() -> None:
    g = Guest()
    assert g.call("memfd_create", g.s("a" * 249), 0) >= 0
    assert g.call("memfd_create", g.s("a" * 250), 0) == -E.EINVAL
    assert g.call("memfd_create", g.s("a" * 5000), 0) == -E.EINVAL
    assert g.call("memfd_create", g.s("a"), 0x100) == -E.EINVAL
    assert g.call("memfd_create", g.s("a"), F.MFD_HUGETLB) == -E.EINVAL
    assert g.call("memfd_create", g.s("a"), F.MFD_EXEC | F.MFD_NOEXEC_SEAL) == -E.EINVAL
    assert g.call("memfd_create", 0, 0) == -E.EFAULT
    assert g.call("memfd_create", BAD_ADDR, 0) == -E.EFAULT
    g.t.files.limit = len(g.t.files.files)
    assert g.call("memfd_create", g.s("a"), 0) == -E.EMFILE


def test_seals() -> None:
    g = Guest()
    plain = memfd(g)
    assert g.call("fcntl", plain, F.F_GET_SEALS, 0) == F.F_SEAL_SEAL
    assert g.call("fcntl", plain, F.F_ADD_SEALS, F.F_SEAL_WRITE) == -E.EPERM
    fd = memfd(g, "s", F.MFD_ALLOW_SEALING)
    assert g.call("fcntl", fd, F.F_GET_SEALS, 0) == 0
    assert g.call("fcntl", fd, F.F_ADD_SEALS, 0x100) == -E.EINVAL
    assert g.call("write", fd, g.data(b"abcdef"), 6) == 6
    assert g.call("fcntl", fd, F.F_ADD_SEALS, F.F_SEAL_SHRINK) == 0
    assert g.call("ftruncate", fd, 3) == -E.EPERM
    assert g.call("ftruncate", fd, 10) == 0
    assert g.call("fcntl", fd, F.F_ADD_SEALS, F.F_SEAL_GROW) == 0
    assert g.call("ftruncate", fd, 11) == -E.EPERM
    assert g.call("fallocate", fd, 0, 0, 20) == -E.EPERM
    assert g.call("pwrite64", fd, g.data(b"xy"), 2, 9) == -E.EPERM  # would grow
    assert g.call("pwrite64", fd, g.data(b"xy"), 2, 8) == 2  # inside: fine
    assert g.call("fcntl", fd, F.F_ADD_SEALS, F.F_SEAL_WRITE) == 0
    assert g.call("pwrite64", fd, g.data(b"xy"), 2, 0) == -E.EPERM
    assert g.call("write", fd, g.data(b"xy"), 0) == 0
    assert g.call("writev", fd, g.iov((g.data(b"q"), 1)), 1) == -E.EPERM
    assert g.call("fallocate", fd, 3, 0, 2) == -E.EPERM  # punching is writing
    assert g.call("fcntl", fd, F.F_GET_SEALS, 0) == (
        F.F_SEAL_SHRINK | F.F_SEAL_GROW | F.F_SEAL_WRITE)
    assert g.call("fcntl", fd, F.F_ADD_SEALS, F.F_SEAL_SEAL) == 0
    assert g.call("fcntl", fd, F.F_ADD_SEALS, F.F_SEAL_FUTURE_WRITE) == -E.EPERM
    buf = g.alloc(10)
    assert g.call("pread64", fd, buf, 10, 0) == 10  # reading is never sealed


def test_seals_need_a_writable_fd_and_a_memfd() -> None:
    g = Guest()
    fd = memfd(g, "s", F.MFD_ALLOW_SEALING)
    # A read-only description of it (Linux: reopening /proc/self/fd/N O_RDONLY).
    g.t.files.get(fd).flags = F.O_RDONLY
    assert g.call("fcntl", fd, F.F_ADD_SEALS, F.F_SEAL_WRITE) == -E.EPERM
    g.write_file("/plain", b"")
    assert g.call("fcntl", g.ok_open("/plain", F.O_RDWR), F.F_ADD_SEALS, 1) == -E.EINVAL


def test_noexec_seal() -> None:
    g = Guest()
    fd = memfd(g, "n", F.MFD_NOEXEC_SEAL)
    assert g.fstat(fd).st_mode == F.S_IFREG | 0o666
    assert g.call("fcntl", fd, F.F_GET_SEALS, 0) == F.F_SEAL_EXEC
    assert g.call("fchmod", fd, 0o755) == -E.EPERM
    assert g.call("fchmod", fd, 0o644) == 0
    assert g.call("fcntl", fd, F.F_ADD_SEALS, F.F_SEAL_WRITE) == 0  # sealing stays allowed
