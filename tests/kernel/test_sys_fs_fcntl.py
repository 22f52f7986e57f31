"""fcntl (fd flags, status flags, record locks, OFD locks, owners) and flock,
with two processes of one sandbox contending for locks."""

from __future__ import annotations

import pytest

from cove.abi import flags as F
from cove.abi.errno import E
from cove.abi.structs import FLOCK
from cove.kernel.fdtable import FdTable

from .sysfs_helpers import BAD_ADDR, Guest

pytestmark = pytest.mark.timeout(30)
OFFSET_MAX = (1 << 63) - 1


@pytest.fixture
def g() -> Guest:
    g = Guest()
    g.write_file("/f", b"x" * 100)
    return g


def fl(g: Guest, type_: int, start: int = 0, length: int = 0, whence: int = F.SEEK_SET,
       pid: int = 0) -> int:
    return g.data(FLOCK.pack(type_, whence, start, length, pid))


def lock(g: Guest, fd: int, cmd: int, type_: int, start: int = 0, length: int = 0,
         whence: int = F.SEEK_SET, pid: int = 0) -> int:
    return g.call("fcntl", fd, cmd, fl(g, type_, start, length, whence, pid))


def getlk(g: Guest, fd: int, type_: int, start: int = 0, length: int = 0,
          cmd: int = F.F_GETLK) -> tuple[int, int, int, int, int]:
    arg = fl(g, type_, start, length)
    assert g.call("fcntl", fd, cmd, arg) == 0
    return FLOCK.unpack_from(g.read(arg, FLOCK.size))  # type, whence, start, len, pid


def settle(g: Guest) -> None:
    """A woken task re-runs its call, as the run loop would (it may sleep again)."""
    if not g.blocked() and g.t.blocked_call is not None:
        g.resume()


# --- descriptor and status flags ----------------------------------------------------------
def test_dupfd(g: Guest) -> None:
    fd = g.ok_open("/f")
    assert g.call("fcntl", fd, F.F_DUPFD, 10) == 10
    assert g.call("fcntl", fd, F.F_DUPFD, 10) == 11
    assert g.call("fcntl", fd, F.F_DUPFD_CLOEXEC, 0) == 1
    assert g.call("fcntl", 1, F.F_GETFD, 0) == F.FD_CLOEXEC
    assert g.call("fcntl", 10, F.F_GETFD, 0) == 0
    assert g.call("fcntl", fd, F.F_DUPFD, 1 << 20) == -E.EINVAL
    assert g.call("fcntl", fd, F.F_DUPFD, -1) == -E.EINVAL
    g.t.files.limit = 12
    assert g.call("fcntl", fd, F.F_DUPFD, 11) == -E.EMFILE
    assert g.call("fcntl", 99, F.F_DUPFD, 0) == -E.EBADF


def test_getfd_setfd(g: Guest) -> None:
    fd = g.ok_open("/f")
    assert g.call("fcntl", fd, F.F_SETFD, F.FD_CLOEXEC) == 0
    assert g.call("fcntl", fd, F.F_GETFD, 0) == F.FD_CLOEXEC
    assert g.call("fcntl", fd, F.F_SETFD, 0xFE) == 0
    assert g.call("fcntl", fd, F.F_GETFD, 0) == 0


def test_getfl_setfl(g: Guest) -> None:
    fd = g.ok_open("/f", F.O_RDONLY)
    assert g.call("fcntl", fd, F.F_SETFL, F.O_RDWR | F.O_APPEND | F.O_NONBLOCK | F.O_TRUNC) == 0
    assert g.call("fcntl", fd, F.F_GETFL, 0) == (
        F.O_RDONLY | F.O_APPEND | F.O_NONBLOCK | F.O_LARGEFILE)
    assert g.call("write", fd, g.data(b"x"), 1) == -E.EBADF  # still read-only
    assert g.call("fcntl", fd, F.F_SETFL, 0) == 0
    assert g.call("fcntl", fd, F.F_GETFL, 0) == F.O_LARGEFILE
    g.become(1000)
    assert g.call("fcntl", fd, F.F_SETFL, F.O_NOATIME) == -E.EPERM


def test_o_path_fds(g: Guest) -> None:
    p = g.ok_open("/f", F.O_PATH)
    assert g.call("fcntl", p, F.F_GETFL, 0) == F.O_PATH
    assert g.call("fcntl", p, F.F_DUPFD, 0) >= 0
    assert g.call("fcntl", p, F.F_SETFD, 1) == 0
    assert g.call("fcntl", p, F.F_SETFL, 0) == -E.EBADF
    assert g.call("fcntl", p, F.F_GETLK, fl(g, F.F_RDLCK)) == -E.EBADF


def test_misc_commands(g: Guest) -> None:
    fd = g.ok_open("/f")
    assert g.call("fcntl", fd, F.F_GETPIPE_SZ, 0) == -E.EBADF
    assert g.call("fcntl", fd, F.F_GETLEASE, 0) == F.F_UNLCK
    assert g.call("fcntl", fd, F.F_SETLEASE, F.F_RDLCK) == -E.EINVAL
    assert g.call("fcntl", fd, 12345, 0) == -E.EINVAL
    assert g.call("fcntl", fd, F.F_GET_SEALS, 0) == -E.EINVAL
    assert g.call("fcntl", fd, F.F_SETSIG, 10) == 0
    assert g.call("fcntl", fd, F.F_GETSIG, 0) == 10
    assert g.call("fcntl", fd, F.F_SETSIG, 65) == -E.EINVAL
    hint = g.data((2).to_bytes(8, "little"))
    assert g.call("fcntl", fd, F.F_SET_RW_HINT, hint) == 0
    out = g.alloc(8)
    assert g.call("fcntl", fd, F.F_GET_RW_HINT, out) == 0
    assert int.from_bytes(g.read(out, 8), "little") == 2
    assert g.call("fcntl", fd, F.F_SET_RW_HINT, g.data((9).to_bytes(8, "little"))) == -E.EINVAL


def test_pipe_size_goes_to_the_pipe(g: Guest) -> None:
    fds = g.alloc(8)
    assert g.call("pipe2", fds, 0) == 0
    rd = int.from_bytes(g.read(fds, 4), "little")
    assert g.call("fcntl", rd, F.F_GETPIPE_SZ, 0) == 65536
    assert g.call("fcntl", rd, F.F_SETPIPE_SZ, 4096) >= 4096
    assert g.call("fcntl", rd, F.F_GETPIPE_SZ, 0) == 4096


def test_owner(g: Guest) -> None:
    fd = g.ok_open("/f")
    assert g.call("fcntl", fd, F.F_GETOWN, 0) == 0
    assert g.call("fcntl", fd, F.F_SETOWN, g.t.pid) == 0
    assert g.call("fcntl", fd, F.F_GETOWN, 0) == g.t.pid
    assert g.call("fcntl", fd, F.F_SETOWN, -g.t.proc.pgid) == 0
    assert g.call("fcntl", fd, F.F_GETOWN, 0) == -g.t.proc.pgid
    assert g.call("fcntl", fd, F.F_SETOWN, 4242) == -E.ESRCH
    ex = g.alloc(8)
    assert g.call("fcntl", fd, F.F_GETOWN_EX, ex) == 0
    assert int.from_bytes(g.read(ex, 4), "little") == F.F_OWNER_PGRP
    bad = g.data((7).to_bytes(4, "little") + (1).to_bytes(4, "little"))
    assert g.call("fcntl", fd, F.F_SETOWN_EX, bad) == -E.EINVAL
    assert g.call("fcntl", fd, F.F_GETOWN_EX, BAD_ADDR) == -E.EFAULT


# --- POSIX record locks -------------------------------------------------------------------
@pytest.fixture
def two(g: Guest) -> tuple[Guest, int, Guest, int]:
    h = g.fork_process()
    return g, g.ok_open("/f", F.O_RDWR), h, h.ok_open("/f", F.O_RDWR)


def test_conflicts_between_processes(two: tuple[Guest, int, Guest, int]) -> None:
    a, fa, b, fb = two
    assert lock(a, fa, F.F_SETLK, F.F_WRLCK, 0, 10) == 0
    assert lock(b, fb, F.F_SETLK, F.F_WRLCK, 5, 10) == -E.EAGAIN
    assert lock(b, fb, F.F_SETLK, F.F_RDLCK, 9, 1) == -E.EAGAIN
    assert lock(b, fb, F.F_SETLK, F.F_WRLCK, 10, 10) == 0  # adjacent, not overlapping
    assert getlk(b, fb, F.F_RDLCK, 0, 1) == (F.F_WRLCK, F.SEEK_SET, 0, 10, a.t.pid)
    assert getlk(b, fb, F.F_RDLCK, 50, 1)[0] == F.F_UNLCK
    assert getlk(a, fa, F.F_WRLCK, 0, 10)[0] == F.F_UNLCK  # own locks never conflict
    assert getlk(a, fa, F.F_WRLCK, 0, 0) == (F.F_WRLCK, F.SEEK_SET, 10, 10, b.t.pid)


def test_shared_read_locks(two: tuple[Guest, int, Guest, int]) -> None:
    a, fa, b, fb = two
    assert lock(a, fa, F.F_SETLK, F.F_RDLCK) == 0
    assert lock(b, fb, F.F_SETLK, F.F_RDLCK) == 0
    assert lock(b, fb, F.F_SETLK, F.F_WRLCK, 0, 1) == -E.EAGAIN
    assert lock(a, fa, F.F_SETLK, F.F_UNLCK) == 0
    assert lock(b, fb, F.F_SETLK, F.F_WRLCK, 0, 1) == 0  # upgrade once alone


def test_split_and_merge(two: tuple[Guest, int, Guest, int]) -> None:
    a, fa, b, fb = two
    assert lock(a, fa, F.F_SETLK, F.F_WRLCK, 0, 100) == 0
    assert lock(a, fa, F.F_SETLK, F.F_UNLCK, 10, 10) == 0
    assert lock(b, fb, F.F_SETLK, F.F_WRLCK, 10, 10) == 0
    assert getlk(b, fb, F.F_WRLCK, 20, 5)[2:4] == (20, 80)
    assert getlk(b, fb, F.F_WRLCK, 0, 5)[2:4] == (0, 10)
    assert lock(a, fa, F.F_SETLK, F.F_RDLCK, 50, 10) == 0  # downgrade the middle
    assert getlk(b, fb, F.F_RDLCK, 50, 10)[0] == F.F_UNLCK
    assert getlk(b, fb, F.F_RDLCK, 40, 20)[2:4] == (20, 30)
    assert lock(a, fa, F.F_SETLK, F.F_WRLCK, 50, 10) == 0  # and back: merged again
    assert getlk(b, fb, F.F_RDLCK, 20, 1)[2:4] == (20, 80)


def test_range_forms(two: tuple[Guest, int, Guest, int]) -> None:
    a, fa, b, fb = two
    a.call("lseek", fa, 30, F.SEEK_SET)
    assert lock(a, fa, F.F_SETLK, F.F_WRLCK, -10, 5, F.SEEK_CUR) == 0  # [20, 25)
    assert getlk(b, fb, F.F_RDLCK, 0, 0)[2:4] == (20, 5)
    assert lock(a, fa, F.F_SETLK, F.F_WRLCK, 50, -10) == 0  # [40, 50)
    assert getlk(b, fb, F.F_RDLCK, 26, 0)[2:4] == (40, 10)
    assert lock(a, fa, F.F_SETLK, F.F_WRLCK, -1, 0, F.SEEK_END) == 0  # [99, EOF)
    t, _, start, length, _ = getlk(b, fb, F.F_RDLCK, 60, 0)
    assert (t, start, length) == (F.F_WRLCK, 99, 0)


def test_lock_argument_errors(g: Guest) -> None:
    rw = g.ok_open("/f", F.O_RDWR)
    ro = g.ok_open("/f")
    wo = g.ok_open("/f", F.O_WRONLY)
    assert lock(g, ro, F.F_SETLK, F.F_WRLCK) == -E.EBADF
    assert lock(g, wo, F.F_SETLK, F.F_RDLCK) == -E.EBADF
    assert lock(g, ro, F.F_SETLK, F.F_UNLCK) == 0
    assert lock(g, rw, F.F_SETLK, 7) == -E.EINVAL
    assert lock(g, rw, F.F_GETLK, F.F_UNLCK) == -E.EINVAL
    assert lock(g, rw, F.F_SETLK, F.F_WRLCK, 0, 1, whence=9) == -E.EINVAL
    assert lock(g, rw, F.F_SETLK, F.F_WRLCK, -1, 1) == -E.EINVAL
    assert lock(g, rw, F.F_SETLK, F.F_WRLCK, 5, -6) == -E.EINVAL
    assert lock(g, rw, F.F_SETLK, F.F_WRLCK, OFFSET_MAX, 2) == -E.EOVERFLOW
    assert lock(g, rw, F.F_SETLK, F.F_WRLCK, OFFSET_MAX, 1, F.SEEK_END) == -E.EOVERFLOW
    assert g.call("fcntl", rw, F.F_SETLK, BAD_ADDR) == -E.EFAULT
    assert g.call("fcntl", rw, F.F_GETLK, BAD_ADDR) == -E.EFAULT


def test_any_close_releases_the_process_locks(two: tuple[Guest, int, Guest, int]) -> None:
    a, fa, b, fb = two
    assert lock(a, fa, F.F_SETLK, F.F_WRLCK) == 0
    other = a.ok_open("/f")  # another description of the same file
    assert lock(b, fb, F.F_SETLK, F.F_WRLCK) == -E.EAGAIN
    assert a.call("close", other) == 0
    assert lock(b, fb, F.F_SETLK, F.F_WRLCK) == 0


def test_dup2_over_and_exit_release(two: tuple[Guest, int, Guest, int]) -> None:
    a, fa, b, fb = two
    assert lock(a, fa, F.F_SETLK, F.F_WRLCK) == 0
    spare = a.ok_open("/")
    assert a.call("dup2", spare, fa) == fa  # closes the locked fd
    assert lock(b, fb, F.F_SETLK, F.F_WRLCK) == 0
    b.t.files.close_all()  # what exit does
    fa2 = a.ok_open("/f", F.O_RDWR)
    assert lock(a, fa2, F.F_SETLK, F.F_WRLCK) == 0


def test_locks_are_not_inherited_by_a_new_fd_table(two: tuple[Guest, int, Guest, int]) -> None:
    a, fa, _b, _fb = two
    assert lock(a, fa, F.F_SETLK, F.F_WRLCK) == 0
    child = a.t.files.fork()  # fork: the child's table owns nothing
    a.t.files, saved = child, a.t.files
    assert lock(a, fa, F.F_SETLK, F.F_WRLCK) == -E.EAGAIN
    a.t.files = saved
    assert isinstance(child, FdTable)


def test_setlkw_blocks_and_wakes(two: tuple[Guest, int, Guest, int]) -> None:
    a, fa, b, fb = two
    assert lock(a, fa, F.F_SETLK, F.F_WRLCK, 0, 10) == 0
    lock(b, fb, F.F_SETLKW, F.F_WRLCK, 5, 1)
    assert b.blocked()
    assert lock(a, fa, F.F_SETLK, F.F_UNLCK, 0, 5) == 0  # not the contended part
    settle(b)
    assert b.blocked()  # woken, re-checked, asleep again
    assert lock(a, fa, F.F_SETLK, F.F_UNLCK, 5, 5) == 0
    assert not b.blocked()
    assert b.resume() == 0
    assert getlk(a, fa, F.F_WRLCK, 0, 0)[2:5] == (5, 1, b.t.pid)


def test_edeadlk(two: tuple[Guest, int, Guest, int]) -> None:
    a, fa, b, fb = two
    assert lock(a, fa, F.F_SETLK, F.F_WRLCK, 0, 1) == 0
    assert lock(b, fb, F.F_SETLK, F.F_WRLCK, 1, 1) == 0
    lock(a, fa, F.F_SETLKW, F.F_WRLCK, 1, 1)
    assert a.blocked()
    assert lock(b, fb, F.F_SETLKW, F.F_WRLCK, 0, 1) == -E.EDEADLK
    assert not b.blocked()
    assert lock(b, fb, F.F_SETLK, F.F_UNLCK, 1, 1) == 0
    assert a.resume() == 0


# --- OFD locks ------------------------------------------------------------------------------
def test_ofd_locks(g: Guest) -> None:
    x = g.ok_open("/f", F.O_RDWR)
    y = g.ok_open("/f", F.O_RDWR)
    xd = g.call("dup", x)
    assert lock(g, x, F.F_OFD_SETLK, F.F_WRLCK, 0, 10, pid=1) == -E.EINVAL
    assert lock(g, x, F.F_OFD_SETLK, F.F_WRLCK, 0, 10) == 0
    assert lock(g, y, F.F_OFD_SETLK, F.F_WRLCK, 0, 1) == -E.EAGAIN  # same process, other OFD
    assert lock(g, xd, F.F_OFD_SETLK, F.F_WRLCK, 0, 1) == 0  # same OFD through a dup
    assert getlk(g, y, F.F_RDLCK, 0, 0, F.F_OFD_GETLK)[4] == -1
    assert lock(g, y, F.F_SETLK, F.F_WRLCK, 0, 1) == -E.EAGAIN  # POSIX vs OFD conflict
    assert g.call("close", xd) == 0  # another fd of the description remains
    assert lock(g, y, F.F_OFD_SETLK, F.F_WRLCK, 0, 1) == -E.EAGAIN
    assert g.call("close", x) == 0
    assert lock(g, y, F.F_OFD_SETLK, F.F_WRLCK, 0, 1) == 0


def test_ofd_setlkw_blocks(g: Guest) -> None:
    x = g.ok_open("/f", F.O_RDWR)
    y = g.ok_open("/f", F.O_RDWR)
    assert lock(g, x, F.F_OFD_SETLK, F.F_WRLCK) == 0
    h = g.fork_process()
    h.t.files.install_at(0, g.t.files.get(y))
    lock(h, 0, F.F_OFD_SETLKW, F.F_WRLCK)
    assert h.blocked()
    assert g.call("close", x) == 0
    assert h.resume() == 0


# --- flock ------------------------------------------------------------------------------------
def test_flock(g: Guest) -> None:
    x = g.ok_open("/f")
    y = g.ok_open("/f")
    assert g.call("flock", x, F.LOCK_SH) == 0
    assert g.call("flock", y, F.LOCK_SH) == 0
    assert g.call("flock", y, F.LOCK_EX | F.LOCK_NB) == -E.EAGAIN
    assert g.call("flock", x, F.LOCK_UN) == 0
    assert g.call("flock", y, F.LOCK_EX | F.LOCK_NB) == 0  # converted
    assert g.call("flock", x, F.LOCK_SH | F.LOCK_NB) == -E.EAGAIN
    assert g.call("flock", g.call("dup", y), F.LOCK_EX | F.LOCK_NB) == 0  # same description
    assert lock(g, g.ok_open("/f", F.O_RDWR), F.F_SETLK, F.F_WRLCK) == 0  # independent
    assert g.call("flock", x, 0) == -E.EINVAL
    assert g.call("flock", x, F.LOCK_SH | F.LOCK_EX) == -E.EINVAL
    assert g.call("flock", x, F.LOCK_NB) == -E.EINVAL
    assert g.call("flock", 99, 0) == -E.EINVAL  # the command is checked first
    assert g.call("flock", 99, F.LOCK_SH) == -E.EBADF
    assert g.call("flock", g.ok_open("/f", F.O_PATH), F.LOCK_SH) == -E.EBADF
    assert g.call("flock", x, 32) == 0  # LOCK_MAND: ignored


def test_flock_blocks_until_the_last_fd_closes(g: Guest) -> None:
    x = g.ok_open("/f")
    xd = g.call("dup", x)
    assert g.call("flock", x, F.LOCK_EX) == 0
    h = g.fork_process()
    hy = h.ok_open("/f")
    h.call("flock", hy, F.LOCK_SH)
    assert h.blocked()
    assert g.call("close", x) == 0
    settle(h)
    assert h.blocked()
    assert g.call("close", xd) == 0
    assert not h.blocked()
    assert h.resume() == 0
