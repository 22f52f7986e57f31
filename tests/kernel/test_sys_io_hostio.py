"""Host stdio: host pipes and a real pty (os.openpty) as the guest's fds 0-2."""

from __future__ import annotations

import fcntl
import os
import struct
import termios
import threading
import time

import pytest

from cove.abi import flags as F
from cove.abi.errno import E
from cove.fs.memfs import MemFS
from cove.fs.node import major
from cove.kernel.hostio import HostStdio

from .harness import SCRATCH, make_kernel
from .iohelp import AT_FDCWD, fstat, is_blocked, pending, process, rd, resume, sc, wr

pytestmark = pytest.mark.timeout(20)

ARG = SCRATCH + 0x100


@pytest.fixture
def host_pipes():
    """(stdin read end, its writer, stdout write end, its reader), closed after."""
    a_r, a_w = os.pipe()
    b_r, b_w = os.pipe()
    yield a_r, a_w, b_w, b_r
    for fd in (a_r, a_w, b_r, b_w):
        try:
            os.close(fd)
        except OSError:
            pass


@pytest.fixture
def pty():
    master, slave = os.openpty()
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    yield master, slave
    os.close(master)
    os.close(slave)


def _attach(fds, root=None):
    k, t = make_kernel(root)
    stdio = HostStdio.attach(k, t.files, fds)
    return k, t, stdio


# --- pipes and files -------------------------------------------------------------
def test_read_waits_on_the_host_fd_not_the_sandbox(host_pipes):
    a_r, a_w, b_w, _ = host_pipes
    k, t, stdio = _attach((a_r, b_w, b_w))
    assert rd(t, 0, 10) is None and is_blocked(t)
    assert t.blocked_on.host_fd is not None and t.blocked_on.host_fd != a_r  # cove's dup
    os.write(a_w, b"abc")
    assert k.sched.next() is t  # the scheduler's selector saw the host fd
    assert resume(t) == 3
    assert t.mm.read(SCRATCH + 0x40000, 3) == b"abc"
    os.close(a_w)
    assert rd(t, 0, 10) == b""  # host EOF
    stdio.close()


def test_nonblocking_read_is_eagain(host_pipes):
    a_r, _, b_w, _ = host_pipes
    _, t, stdio = _attach((a_r, b_w, b_w))
    t.mm.write(ARG, struct.pack("<i", 1))
    assert sc(t, "ioctl", 0, F.FIONBIO, ARG) == 0
    assert rd(t, 0, 10) == -E.EAGAIN
    assert os.get_blocking(a_r)  # the host's own fd was not touched
    stdio.close()


def test_write_goes_to_the_host_fully(host_pipes):
    a_r, _, b_w, b_r = host_pipes
    _, t, stdio = _attach((a_r, b_w, b_w))
    got = bytearray()

    def drain() -> None:
        while chunk := os.read(b_r, 1 << 16):
            got.extend(chunk)

    th = threading.Thread(target=drain, daemon=True)
    th.start()
    big = bytes(range(256)) * 2048  # 512 KiB: more than a host pipe holds
    t.mm.write(SCRATCH + 0x10000, big)
    assert sc(t, "write", 1, SCRATCH + 0x10000, len(big)) == len(big)
    # The host pipe may still be full: a write then sleeps (correctly) until the
    # reader drains it, so wait for the drain before the small write.
    deadline = time.monotonic() + 5
    while len(got) < len(big) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert wr(t, 2, b"err") == 3
    stdio.close()
    os.close(b_w)
    th.join(5)
    assert bytes(got) == big + b"err"


def test_a_full_host_pipe_sleeps_the_writer_not_the_sandbox(host_pipes):
    a_r, _, b_w, b_r = host_pipes
    k, t, stdio = _attach((a_r, b_w, b_w))
    os.set_blocking(b_w, False)
    try:
        while True:
            os.write(b_w, b"f" * 4096)
    except BlockingIOError:
        pass
    os.set_blocking(b_w, True)
    assert wr(t, 1, b"queued") is None and is_blocked(t)
    assert t.blocked_on.host_fd is not None
    drained = b""
    while len(drained) < 65536:
        drained += os.read(b_r, 65536)
    assert k.sched.next() is t
    assert resume(t) == 6
    assert os.get_blocking(b_w)  # cove's own description was non-blocking, not the host's
    stdio.close()


def test_host_epipe_is_epipe_and_sigpipe(host_pipes):
    a_r, _, b_w, b_r = host_pipes
    _, t, stdio = _attach((a_r, b_w, b_w))
    os.close(b_r)
    assert wr(t, 1, b"x") == -E.EPIPE
    assert pending(t, F.SIGPIPE)
    stdio.close()


def test_pipes_stay_pipes_with_synthetic_identity(host_pipes):
    a_r, a_w, b_w, _ = host_pipes
    _, t, stdio = _attach((a_r, b_w, b_w))
    host = os.fstat(a_r)
    dev, ino, mode, rdev = fstat(t, 0)
    assert mode & F.S_IFMT == F.S_IFIFO
    assert ino != host.st_ino and dev != host.st_dev and rdev == 0
    # stdout and stderr are one host pipe: the guest can tell, by synthetic numbers.
    assert fstat(t, 1)[:2] == fstat(t, 2)[:2] != (dev, ino)
    assert ino not in (os.fstat(b_w).st_ino,)
    for cmd in (F.TCGETS, F.TIOCGWINSZ, F.TIOCGPGRP):
        assert sc(t, "ioctl", 0, cmd, ARG) == -E.ENOTTY
    os.write(a_w, b"12345")
    assert sc(t, "ioctl", 0, F.FIONREAD, ARG) == 0
    assert struct.unpack("<i", t.mm.read(ARG, 4))[0] == 5
    assert sc(t, "lseek", 0, 0, 0) == -E.ESPIPE
    stdio.close()


def test_regular_file_stdin_reads_and_seeks(tmp_path):
    p = tmp_path / "in.txt"
    p.write_bytes(b"line one\nline two\n")
    fd = os.open(p, os.O_RDONLY)
    try:
        _, t, stdio = _attach((fd,))
        assert rd(t, 0, 5) == b"line "
        assert sc(t, "lseek", 0, 0, 0) == 0
        assert rd(t, 0, 100) == b"line one\nline two\n"
        _, ino, mode, _ = fstat(t, 0)
        assert mode & F.S_IFMT == F.S_IFREG and ino != os.fstat(fd).st_ino
        assert sc(t, "ioctl", 0, F.TCGETS, ARG) == -E.ENOTTY
        stdio.close()
    finally:
        os.close(fd)


def test_guest_close_never_closes_the_host_fd(host_pipes):
    a_r, _, b_w, _ = host_pipes
    _, t, stdio = _attach((a_r, b_w, b_w))
    assert sc(t, "close", 0) == 0
    os.fstat(a_r)  # still open
    stdio.close()
    os.fstat(a_r)
    assert stdio.dups == []


def test_poll_on_a_host_pipe_sleeps_on_the_host_fd(host_pipes):
    a_r, a_w, b_w, _ = host_pipes
    k, t, stdio = _attach((a_r, b_w, b_w))
    fds = SCRATCH + 0x8000
    t.mm.write(fds, struct.pack("<ihh", 0, F.POLLIN, 0) + struct.pack("<ihh", 1, F.POLLOUT, 0))
    assert sc(t, "poll", fds, 1, 5000) is None
    assert t.blocked_on.host_fd is not None
    os.write(a_w, b"!")
    assert k.sched.next() is t
    assert resume(t) == 1
    assert struct.unpack("<ihH", t.mm.read(fds, 8))[2] == F.POLLIN
    assert sc(t, "poll", fds + 8, 1, 0) == 1  # stdout writable
    stdio.close()


def test_poll_on_two_host_fds_sees_the_second(host_pipes):
    a_r, _, b_w, _ = host_pipes
    c_r, c_w = os.pipe()
    try:
        k, t, stdio = _attach((a_r, b_w, b_w, c_r))
        fds = SCRATCH + 0x8000
        t.mm.write(fds, struct.pack("<ihh", 0, F.POLLIN, 0) + struct.pack("<ihh", 3, F.POLLIN, 0))
        assert sc(t, "poll", fds, 2, 5000) is None
        os.write(c_w, b"!")  # on the fd the scheduler does not watch
        while resume(t) is None:  # woken by the periodic re-check
            assert k.sched.next() is t
        assert t.ctx.regs.rax == 1
        assert struct.unpack("<ihH", t.mm.read(fds + 8, 8))[2] == F.POLLIN
        stdio.close()
    finally:
        os.close(c_r)
        os.close(c_w)


def test_closed_host_fd_leaves_the_guest_fd_closed():
    r, w = os.pipe()
    os.close(w)
    with pytest.raises(OSError):
        os.fstat(987)
    _, t, stdio = _attach((r, 987))
    assert 0 in t.files.files and 1 not in t.files.files
    stdio.close()
    os.close(r)


# --- a terminal ------------------------------------------------------------------
def test_tcgets_on_a_pty_matches_the_host(pty):
    _, slave = pty
    _, t, stdio = _attach((slave, slave, slave))
    assert sc(t, "ioctl", 0, F.TCGETS, ARG) == 0
    iflag, oflag, cflag, lflag, _line, cc = struct.unpack("<IIIIB19s", t.mm.read(ARG, 36))
    host = termios.tcgetattr(slave)
    assert [iflag, oflag, cflag, lflag] == host[:4]
    assert cc[F.VINTR] == host[6][termios.VINTR][0]
    stdio.close()


def test_tcsets_changes_the_host_mode_and_restore_puts_it_back(pty):
    _, slave = pty
    original = termios.tcgetattr(slave)
    _, t, stdio = _attach((slave, slave, slave))
    assert sc(t, "ioctl", 0, F.TCGETS, ARG) == 0
    raw = bytearray(t.mm.read(ARG, 36))
    lflag = struct.unpack_from("<I", raw, 12)[0] & ~(F.ICANON | F.ECHO)
    struct.pack_into("<I", raw, 12, lflag)
    t.mm.write(ARG, bytes(raw))
    assert sc(t, "ioctl", 1, F.TCSETSW, ARG) == 0
    assert not termios.tcgetattr(slave)[3] & termios.ICANON
    assert stdio.close in t.kernel.shutdown_hooks
    stdio.close()
    assert termios.tcgetattr(slave) == original
    assert sc(t, "ioctl", 0, F.TCSETS, 0x1000) == -E.EFAULT


def test_window_size(pty):
    master, slave = pty
    _, t, stdio = _attach((slave, slave, slave))
    assert sc(t, "ioctl", 1, F.TIOCGWINSZ, ARG) == 0
    assert struct.unpack("<HHHH", t.mm.read(ARG, 8)) == (24, 80, 0, 0)
    t.proc.sighand.actions[F.SIGWINCH].handler = 0x401000  # caught: not discarded
    t.mm.write(ARG, struct.pack("<HHHH", 50, 132, 0, 0))
    assert sc(t, "ioctl", 1, F.TIOCSWINSZ, ARG) == 0
    assert struct.unpack("HHHH", fcntl.ioctl(master, termios.TIOCGWINSZ, bytes(8)))[:2] == (50, 132)
    assert pending(t, F.SIGWINCH)  # to the foreground process group, in cove
    stdio.close()
    assert struct.unpack("HHHH", fcntl.ioctl(master, termios.TIOCGWINSZ, bytes(8)))[:2] == (24, 80)


def test_a_terminal_stays_a_terminal_without_host_numbers(pty):
    _, slave = pty
    _, t, stdio = _attach((slave, slave, slave))
    host = os.fstat(slave)
    dev, ino, mode, rdev = fstat(t, 0)
    assert mode & F.S_IFMT == F.S_IFCHR
    assert major(rdev) == 136
    assert dev != host.st_dev and ino != host.st_ino
    stdio.close()


def test_reading_the_terminal(pty):
    master, slave = pty
    k, t, stdio = _attach((slave, slave, slave))
    os.write(master, b"hello\n")
    got = rd(t, 0, 100)
    if got is None:  # the line discipline had not passed it on yet
        assert k.sched.next() is t
        assert resume(t) == 6
        got = t.mm.read(SCRATCH + 0x40000, 6)
    assert got == b"hello\n"
    assert wr(t, 1, b"out\n") == 4
    seen = b""
    while not seen.endswith(b"out\r\n"):  # after the echo of "hello"; ONLCR is the host tty's
        seen += os.read(master, 100)
    stdio.close()


def test_job_control_is_cove_s(pty):
    _, slave = pty
    k, t, stdio = _attach((slave, slave, slave))
    assert sc(t, "ioctl", 0, F.TIOCGPGRP, ARG) == 0
    assert struct.unpack("<i", t.mm.read(ARG, 4))[0] == t.proc.pgid == 1
    assert sc(t, "ioctl", 0, F.TIOCGSID, ARG) == 0
    assert struct.unpack("<i", t.mm.read(ARG, 4))[0] == 1
    t.mm.write(ARG, struct.pack("<i", 999))
    assert sc(t, "ioctl", 0, F.TIOCSPGRP, ARG) == -E.ESRCH
    t.mm.write(ARG, struct.pack("<i", -1))
    assert sc(t, "ioctl", 0, F.TIOCSPGRP, ARG) == -E.EINVAL
    job = process(k, t)
    job.proc.pgid = job.pid  # setpgid(0, 0): a job of its own
    t.mm.write(ARG, struct.pack("<i", job.pid))
    assert sc(t, "ioctl", 0, F.TIOCSPGRP, ARG) == 0
    assert sc(job, "ioctl", 0, F.TIOCGPGRP, ARG) == 0
    assert struct.unpack("<i", job.mm.read(ARG, 4))[0] == job.pid
    # Another session does not have this terminal.
    daemon = process(k, t)
    daemon.proc.sid = daemon.proc.pgid = daemon.pid
    assert sc(daemon, "ioctl", 0, F.TIOCGPGRP, ARG) == -E.ENOTTY
    daemon.mm.write(ARG, struct.pack("<i", job.pid))
    assert sc(daemon, "ioctl", 0, F.TIOCSPGRP, ARG) == -E.ENOTTY
    stdio.close()


def test_background_read_gets_sigttin_or_eio(pty):
    _, slave = pty
    k, t, stdio = _attach((slave, slave, slave))
    bg = process(k, t)
    bg.proc.pgid = bg.pid  # a background job: its parent (init) is in another group
    assert rd(bg, 0, 10) == -E.EINTR
    assert pending(bg, F.SIGTTIN)
    bg.proc.shared_pending.mask = 0
    bg.proc.shared_pending.infos.clear()
    bg.proc.sighand.actions[F.SIGTTIN].handler = 1  # SIG_IGN
    assert rd(bg, 0, 10) == -E.EIO
    stdio.close()


def test_tiocsti_is_refused(pty):
    master, slave = pty
    _, t, stdio = _attach((slave, slave, slave))
    t.mm.write(ARG, b"x")
    assert sc(t, "ioctl", 0, F.TIOCSTI, ARG) == -E.EIO
    fcntl.fcntl(master, fcntl.F_SETFL, os.O_NONBLOCK)
    with pytest.raises(BlockingIOError):
        os.read(master, 10)  # nothing echoed: nothing was typed
    stdio.close()


def _tree_with_dev() -> MemFS:
    fs = MemFS()
    dev = fs.root.mkdir("dev", 0o755, 0, 0)
    dev.mkdir("pts", 0o755, 0, 0)
    dev.mknod("tty", F.S_IFCHR | 0o666, (5 << 8) | 0, 0, 0)
    return fs


def test_dev_pts_node_and_dev_tty(pty):
    _, slave = pty
    k, t, stdio = _attach((slave, slave, slave), _tree_with_dev())
    st = k.vfs.stat(t.fs, None, "/dev/pts/0")
    assert fstat(t, 0)[:2] == (st.dev, st.ino)  # what ttyname(3) compares
    assert fstat(t, 0)[3] == st.rdev
    t.mm.write(SCRATCH, b"/dev/tty\0")
    fd = sc(t, "openat", AT_FDCWD, SCRATCH, F.O_RDWR, 0)
    assert fd is not None and fd >= 3
    assert sc(t, "ioctl", fd, F.TCGETS, ARG) == 0
    daemon = process(k, t)
    daemon.proc.sid = daemon.proc.pgid = daemon.pid
    daemon.mm.write(SCRATCH, b"/dev/tty\0")
    assert sc(daemon, "openat", AT_FDCWD, SCRATCH, F.O_RDWR, 0) == -E.ENXIO
    stdio.close()


def test_dev_tty_without_a_terminal_is_enxio(host_pipes):
    a_r, _, b_w, _ = host_pipes
    _, t, stdio = _attach((a_r, b_w, b_w), _tree_with_dev())
    t.mm.write(SCRATCH, b"/dev/tty\0")
    assert sc(t, "openat", AT_FDCWD, SCRATCH, F.O_RDWR, 0) == -E.ENXIO
    stdio.close()
