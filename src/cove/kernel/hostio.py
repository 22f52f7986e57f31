"""The guest's stdin, stdout and stderr: host file descriptors given to the sandbox.

``HostStdio.attach`` wraps each given host fd (dup'ed, so the guest closing
its fd never closes the host's) in a ``HostFile`` installed at guest fds
0, 1, 2. What the guest learns about them is what a Linux program would learn,
minus host identities:

- a terminal stays a terminal (``TtyFile``): fstat says S_IFCHR with a pty's
  rdev, termios and window-size ioctls reach the host tty (the guest owns the
  terminal it was given; ``restore()`` puts the original mode back when the
  sandbox ends), while job control (session, foreground process group) is
  cove's own, never the host's;
- a pipe, socket or file stays one (S_IFIFO / S_IFSOCK / S_IFREG, ENOTTY for
  terminal ioctls), with synthetic inode and device numbers.

Reads never block the sandbox: with no data the call raises
``Blocked(host_fd=..., host_events=EVENT_READ)`` and the scheduler watches
the host fd. Writes are written fully (partial host writes are retried);
a host EPIPE is the guest's EPIPE + SIGPIPE.
"""

from __future__ import annotations

import errno as host_errno
import fcntl
import os
import select
import selectors
import stat as host_stat
import struct
from typing import TYPE_CHECKING

from cove.abi import flags as F
from cove.abi.errno import E, Errno
from cove.abi.structs.tty import TERMIOS, TERMIOS2, WINSIZE
from cove.fs.devfs import DEV_TTY
from cove.fs.file import (
    O_ACCMODE,
    O_APPEND,
    O_LARGEFILE,
    O_NONBLOCK,
    SEEK_CUR,
    SEEK_END,
    SEEK_SET,
    File,
)
from cove.fs.node import S_IFCHR, S_IFIFO, S_IFREG, S_IFSOCK, Stat, major, makedev
from cove.kernel import signals
from cove.kernel.pipe import PIPEFS_DEV, next_ino
from cove.kernel.pollable import DEFAULT_POLLMASK, Pollable
from cove.kernel.sigerrno import epipe
from cove.kernel.wait import Blocked

if TYPE_CHECKING:
    from cove.fs.mount import Location
    from cove.kernel.fdtable import FdTable
    from cove.kernel.kernel import Kernel
    from cove.kernel.task import Process, Task

PTS_MAJOR = 136
TTY_GID = 5
DEVPTS_DEV = makedev(0, 24)
SOCKFS_DEV = makedev(0, 8)
HOSTFILE_DEV = makedev(0, 40)  # regular files given as stdio: a device of their own
N_TTY = 0
CHUNK = 1 << 20  # most bytes moved by one host read/write
_INT = struct.Struct("<i")

_POLL_ALL = select.POLLIN | select.POLLPRI | select.POLLOUT


def _host_error(e: OSError) -> Errno:
    return Errno(e.errno or E.EIO)


class HostFile(Pollable, File):
    """A host fd as the guest sees it: a pipe, socket, file or non-tty device."""

    def __init__(self, stdio: HostStdio, host_fd: int, flags: int, st: os.stat_result) -> None:
        super().__init__(flags)
        self.stdio = stdio
        self.fd = host_fd
        self.kind = st.st_mode & 0o170000
        self.ino = stdio.ino_for(st)
        self.fasync = self.kind != S_IFREG  # FIOASYNC: accepted, though cove sends no SIGIO
        self._poller = select.poll()
        self._poller.register(host_fd, _POLL_ALL)

    @property
    def regular(self) -> bool:
        return self.kind == S_IFREG

    # --- data ------------------------------------------------------------------
    def _host_events(self) -> int:
        try:
            got = self._poller.poll(0)
        except OSError:
            return select.POLLERR
        return got[0][1] if got else 0

    def _wait_readable(self) -> None:
        """Raise EAGAIN or Blocked unless a read would return at once."""
        if self.regular or self._host_events() & (select.POLLIN | select.POLLHUP | select.POLLERR):
            return
        if self.flags & O_NONBLOCK:
            raise Errno(E.EAGAIN)
        raise Blocked(host_fd=self.fd, host_events=selectors.EVENT_READ)

    def read(self, size: int) -> bytes:
        self.check_readable()
        if size <= 0:
            return b""
        self._wait_readable()
        try:
            return os.read(self.fd, min(size, CHUNK))
        except BlockingIOError:
            # Someone else (the host side) drained it first: wait again.
            if self.flags & O_NONBLOCK:
                raise Errno(E.EAGAIN) from None
            raise Blocked(host_fd=self.fd, host_events=selectors.EVENT_READ) from None
        except OSError as e:
            raise _host_error(e) from None

    def write(self, data: bytes) -> int:
        self.check_writable()
        view = memoryview(data)
        done = 0
        while done < len(view):
            try:
                done += os.write(self.fd, view[done:done + CHUNK])
            except BlockingIOError:
                # The host fd is non-blocking and full.
                if done:
                    return done
                if self.flags & O_NONBLOCK:
                    raise Errno(E.EAGAIN) from None
                raise Blocked(host_fd=self.fd, host_events=selectors.EVENT_WRITE) from None
            except BrokenPipeError:
                if done:
                    return done
                raise epipe() from None
            except OSError as e:
                if done:
                    return done
                raise _host_error(e) from None
        return done

    def pread(self, size: int, offset: int) -> bytes:
        if not self.regular:
            raise Errno(E.ESPIPE)
        self.check_readable()
        if offset < 0:
            raise Errno(E.EINVAL)
        try:
            return os.pread(self.fd, min(size, CHUNK), offset)
        except OSError as e:
            raise _host_error(e) from None

    def pwrite(self, data: bytes, offset: int) -> int:
        if not self.regular:
            raise Errno(E.ESPIPE)
        self.check_writable()
        if offset < 0:
            raise Errno(E.EINVAL)
        try:
            return os.pwrite(self.fd, data, offset)
        except OSError as e:
            raise _host_error(e) from None

    def seek(self, offset: int, whence: int) -> int:
        if not self.regular:
            raise Errno(E.ESPIPE)
        if whence not in (SEEK_SET, SEEK_CUR, SEEK_END, 3, 4):
            raise Errno(E.EINVAL)
        try:
            return os.lseek(self.fd, offset, whence)
        except OSError as e:
            raise _host_error(e) from None

    def stat(self) -> Stat:
        try:
            st = os.fstat(self.fd)
        except OSError as e:
            raise _host_error(e) from None
        owner = self.stdio.owner()
        times = {"atime_ns": st.st_atime_ns, "mtime_ns": st.st_mtime_ns,
                 "ctime_ns": st.st_ctime_ns}
        if self.kind == S_IFREG:
            return Stat(ino=self.ino, mode=S_IFREG | (st.st_mode & 0o777), nlink=1,
                        uid=owner[0], gid=owner[1], size=st.st_size, dev=HOSTFILE_DEV,
                        blksize=4096, blocks=st.st_blocks, **times)
        if self.kind == S_IFSOCK:
            return Stat(ino=self.ino, mode=S_IFSOCK | 0o777, uid=owner[0], gid=owner[1],
                        dev=SOCKFS_DEV, blksize=4096, **times)
        if self.kind == S_IFCHR:
            # A non-terminal device (/dev/null given as stdin): only the
            # well-known memory devices keep their numbers.
            rdev = st.st_rdev if major(st.st_rdev) == 1 else 0
            return Stat(ino=self.ino, mode=S_IFCHR | 0o666, rdev=rdev, dev=makedev(0, 5),
                        blksize=4096, **times)
        return Stat(ino=self.ino, mode=S_IFIFO | 0o600, uid=owner[0], gid=owner[1],
                    dev=PIPEFS_DEV, blksize=4096, **times)

    def proc_name(self) -> str:
        """What /proc/<pid>/fd/N shows (never a host path)."""
        if self.kind == S_IFSOCK:
            return f"socket:[{self.ino}]"
        if self.kind == S_IFCHR:
            return "/dev/null"
        if self.kind == S_IFREG:
            return f"/dev/fd/host:[{self.ino}]"
        return f"pipe:[{self.ino}]"

    # --- readiness and ioctls --------------------------------------------------
    def poll_events(self) -> int:
        if self.regular:
            return DEFAULT_POLLMASK
        ev = self._host_events()
        if ev & select.POLLNVAL:
            return F.POLLERR
        return ev & (F.POLLIN | F.POLLPRI | F.POLLOUT | F.POLLERR | F.POLLHUP | F.POLLRDNORM
                     | F.POLLWRNORM | F.POLLRDHUP)

    def poll_host(self, events: int) -> tuple[int, int] | None:
        if self.regular:
            return None
        ev = 0
        if events & (F.POLLIN | F.POLLRDNORM | F.POLLPRI):
            ev |= selectors.EVENT_READ
        if events & (F.POLLOUT | F.POLLWRNORM):
            ev |= selectors.EVENT_WRITE
        return (self.fd, ev) if ev else None

    def ioctl(self, t: Task, cmd: int, arg: int) -> int:
        if cmd == F.FIONREAD and self.kind in (S_IFIFO, S_IFSOCK, S_IFREG):
            t.mm.write(arg, _INT.pack(self._host_fionread()))
            return 0
        raise Errno(E.ENOTTY)

    def _host_fionread(self) -> int:
        buf = bytearray(4)
        try:
            fcntl.ioctl(self.fd, F.FIONREAD, buf)
        except OSError as e:
            raise _host_error(e) from None
        return int(_INT.unpack(buf)[0])


class Terminal:
    """A host terminal given to the sandbox, and the job control cove keeps for it:
    the session it controls and its foreground process group (guest pids)."""

    def __init__(self, kernel: Kernel, host_fd: int) -> None:
        self.kernel = kernel
        self.fd = host_fd
        self.sid: int | None = None  # None: not yet bound (binds to init's session)
        self.pgrp: int | None = None
        self.released = False  # TIOCNOTTY / leader exit: bind to nobody
        self.exclusive = False
        self.original_termios = self._get(F.TCGETS, TERMIOS.size)
        self.original_winsize = self._get(F.TIOCGWINSZ, WINSIZE.size)
        self.winsize_changed = False
        self.flow_stopped = False

    def _get(self, cmd: int, size: int) -> bytes | None:
        buf = bytearray(size)
        try:
            fcntl.ioctl(self.fd, cmd, buf)
        except OSError:
            return None
        return bytes(buf)

    # --- the session it controls ---------------------------------------------
    def session(self) -> int | None:
        if self.sid is None and not self.released:
            init = self.kernel.init
            if init is not None:
                self.sid, self.pgrp = init.sid, init.pgid
        if self.sid is not None:
            leader = self.kernel.processes.get(self.sid)
            if leader is None or not leader.alive or leader.sid != self.sid:
                # The session leader is gone: the terminal is nobody's now.
                self.sid = self.pgrp = None
                self.released = True
        return self.sid

    def is_ctty_of(self, proc: Process) -> bool:
        return self.session() == proc.sid

    def check_change(self, t: Task, signo: int) -> None:
        """tty_check_change: a background process group touching its
        controlling terminal gets SIGTTIN/SIGTTOU (and the call restarts)."""
        proc = t.proc
        if not self.is_ctty_of(proc) or self.pgrp is None or proc.pgid == self.pgrp:
            return
        act = proc.sighand.actions[signo]
        if t.sigmask & signals.bit(signo) or act.handler == signals.SIG_IGN:
            if signo == F.SIGTTIN:
                raise Errno(E.EIO)
            return
        if pgrp_orphaned(self.kernel, proc.pgid):
            raise Errno(E.EIO)
        kill_pgrp(self.kernel, proc.pgid, signo)
        t.restart_nr = int(t.ctx.regs.rax)  # ERESTARTSYS: rax still holds the call number
        raise Errno(E.EINTR)

    # --- the host terminal ---------------------------------------------------
    def ioctl_rw(self, cmd: int, buf: bytearray) -> None:
        try:
            fcntl.ioctl(self.fd, cmd, buf)
        except OSError as e:
            raise _host_error(e) from None

    def restore(self) -> None:
        """Put back the mode, window size and output flow the host had."""
        try:
            if self.flow_stopped:
                fcntl.ioctl(self.fd, F.TCXONC, 1)  # TCOON
            if self.original_termios is not None:
                now = self._get(F.TCGETS, TERMIOS.size)
                if now != self.original_termios:
                    fcntl.ioctl(self.fd, F.TCSETSW, bytearray(self.original_termios))
            if self.winsize_changed and self.original_winsize is not None:
                fcntl.ioctl(self.fd, F.TIOCSWINSZ, bytearray(self.original_winsize))
        except OSError:
            pass


def kill_pgrp(kernel: Kernel, pgid: int, signo: int) -> None:
    for proc in list(kernel.processes.values()):
        if proc.alive and proc.pgid == pgid:
            signals.send_process(proc, signo, signals.make_info(signo))


def pgrp_orphaned(kernel: Kernel, pgid: int) -> bool:
    """POSIX: no member has a parent in another group of the same session."""
    for proc in kernel.processes.values():
        if not proc.alive or proc.pgid != pgid:
            continue
        parent = proc.parent
        if parent is not None and parent.alive and parent.pgid != pgid \
                and parent.sid == proc.sid:
            return False
    return True


_TCSETS = {F.TCSETS: TERMIOS.size, F.TCSETSW: TERMIOS.size, F.TCSETSF: TERMIOS.size,
           F.TCSETS2: TERMIOS2.size, F.TCSETSW2: TERMIOS2.size, F.TCSETSF2: TERMIOS2.size}
_TCGETS = {F.TCGETS: TERMIOS.size, F.TCGETS2: TERMIOS2.size}


class TtyFile(HostFile):
    """A host terminal: termios and window size on the host tty, job control in cove."""

    def __init__(self, stdio: HostStdio, host_fd: int, flags: int, st: os.stat_result,
                 term: Terminal, location: Location | None = None) -> None:
        super().__init__(stdio, host_fd, flags, st)
        self.term = term
        self.location = location

    def _current(self) -> Task | None:
        return self.stdio.kernel.current

    def read(self, size: int) -> bytes:
        t = self._current()
        if t is not None:
            self.term.check_change(t, F.SIGTTIN)
        return super().read(size)

    def write(self, data: bytes) -> int:
        t = self._current()
        term = self.term
        if (t is not None and term.is_ctty_of(t.proc) and t.proc.pgid != term.pgrp
                and self._tostop()):
            term.check_change(t, F.SIGTTOU)
        return super().write(data)

    def _tostop(self) -> bool:
        raw = self.term._get(F.TCGETS, TERMIOS.size)
        return raw is not None and bool(TERMIOS.unpack_from(raw)[3] & F.TOSTOP)

    def stat(self) -> Stat:
        if self.location is not None:
            return self.location.inode.stat()
        owner = self.stdio.owner()
        st = super().stat()
        return Stat(ino=self.ino, mode=S_IFCHR | 0o620, rdev=makedev(PTS_MAJOR, 0), uid=owner[0],
                    gid=TTY_GID, dev=DEVPTS_DEV, blksize=1024, atime_ns=st.atime_ns,
                    mtime_ns=st.mtime_ns, ctime_ns=st.ctime_ns)

    def proc_name(self) -> str:
        return "/dev/pts/0"

    def ioctl(self, t: Task, cmd: int, arg: int) -> int:
        term = self.term
        if cmd in _TCGETS:
            buf = bytearray(_TCGETS[cmd])
            term.ioctl_rw(cmd, buf)
            t.mm.write(arg, buf)
            return 0
        if cmd in _TCSETS:
            term.check_change(t, F.SIGTTOU)
            buf = bytearray(t.mm.read(arg, _TCSETS[cmd]))
            term.ioctl_rw(cmd, buf)
            return 0
        if cmd == F.TIOCGWINSZ:
            buf = bytearray(WINSIZE.size)
            term.ioctl_rw(cmd, buf)
            t.mm.write(arg, buf)
            return 0
        if cmd == F.TIOCSWINSZ:
            new = bytearray(t.mm.read(arg, WINSIZE.size))
            old = bytearray(WINSIZE.size)
            term.ioctl_rw(F.TIOCGWINSZ, old)
            if new != old:
                term.ioctl_rw(cmd, new)
                term.winsize_changed = True
                if term.session() is not None and term.pgrp is not None:
                    kill_pgrp(term.kernel, term.pgrp, F.SIGWINCH)
            return 0
        if cmd == F.FIONREAD or cmd == F.TIOCOUTQ:
            buf = bytearray(4)
            term.ioctl_rw(cmd, buf)
            t.mm.write(arg, buf)
            return 0
        if cmd == F.TCFLSH:
            if arg not in (0, 1, 2):
                raise Errno(E.EINVAL)
            term.check_change(t, F.SIGTTOU)
            _ioctl_int(term, cmd, arg)
            return 0
        if cmd == F.TCXONC:
            if arg not in (0, 1, 2, 3):
                raise Errno(E.EINVAL)
            term.check_change(t, F.SIGTTOU)
            _ioctl_int(term, cmd, arg)
            if arg in (0, 1):  # TCOOFF / TCOON
                term.flow_stopped = arg == 0
            return 0
        if cmd in (F.TCSBRK, F.TCSBRKP):
            term.check_change(t, F.SIGTTOU)
            _ioctl_int(term, cmd, arg)
            return 0
        if cmd == F.TIOCGPGRP:
            self._need_ctty(t)
            t.mm.write(arg, _INT.pack(term.pgrp or 0))
            return 0
        if cmd == F.TIOCSPGRP:
            return self._set_pgrp(t, arg)
        if cmd == F.TIOCGSID:
            self._need_ctty(t)
            t.mm.write(arg, _INT.pack(term.sid or 0))
            return 0
        if cmd == F.TIOCSCTTY:
            return self._set_ctty(t, arg)
        if cmd == F.TIOCNOTTY:
            self._need_ctty(t)
            if t.proc.pid == t.proc.sid:
                if term.pgrp is not None:
                    kill_pgrp(term.kernel, term.pgrp, F.SIGHUP)
                    kill_pgrp(term.kernel, term.pgrp, F.SIGCONT)
                term.sid = term.pgrp = None
                term.released = True
            return 0
        if cmd == F.TIOCEXCL or cmd == F.TIOCNXCL:
            term.exclusive = cmd == F.TIOCEXCL  # kept in cove: the host tty stays reopenable
            return 0
        if cmd == F.TIOCGEXCL:
            t.mm.write(arg, _INT.pack(int(term.exclusive)))
            return 0
        if cmd == F.TIOCGETD:
            t.mm.write(arg, _INT.pack(N_TTY))
            return 0
        if cmd == F.TIOCSETD:
            if _INT.unpack(t.mm.read(arg, 4))[0] != N_TTY:
                raise Errno(E.EPERM)  # no other line discipline on the host's terminal
            return 0
        if cmd == F.TIOCSTI:
            # Typing into the host's terminal would outlive the sandbox: refused,
            # as Linux does with dev.tty.legacy_tiocsti = 0.
            raise Errno(E.EIO)
        raise Errno(E.ENOTTY)

    def _need_ctty(self, t: Task) -> None:
        if not self.term.is_ctty_of(t.proc):
            raise Errno(E.ENOTTY)

    def _set_pgrp(self, t: Task, arg: int) -> int:
        term = self.term
        try:
            term.check_change(t, F.SIGTTOU)
        except Errno as e:
            if e.errno == E.EIO:
                raise Errno(E.ENOTTY) from None
            raise
        self._need_ctty(t)
        pgrp = _INT.unpack(t.mm.read(arg, 4))[0]
        if pgrp < 0:
            raise Errno(E.EINVAL)
        members = [p for p in term.kernel.processes.values() if p.pgid == pgrp]
        if not members:
            raise Errno(E.ESRCH)
        if members[0].sid != t.proc.sid:
            raise Errno(E.EPERM)
        term.pgrp = pgrp
        return 0

    def _set_ctty(self, t: Task, arg: int) -> int:
        term = self.term
        proc = t.proc
        sid = term.session()
        if proc.pid == proc.sid and sid == proc.sid:
            return 0  # already ours
        if proc.pid != proc.sid or sid == proc.sid:
            raise Errno(E.EPERM)  # only a session leader without a terminal
        if sid is not None and not (arg == 1 and proc.creds.euid == 0):
            raise Errno(E.EPERM)  # another session's terminal; root may steal it
        if not self.readable and proc.creds.euid != 0:
            raise Errno(E.EPERM)
        term.sid, term.pgrp = proc.sid, proc.pgid
        term.released = False
        return 0


def _ioctl_int(term: Terminal, cmd: int, arg: int) -> None:
    try:
        fcntl.ioctl(term.fd, cmd, arg)
    except OSError as e:
        raise _host_error(e) from None


class HostStdio:
    """The host fds a sandbox was given, wrapped for the guest; see the module docstring."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.dups: list[int] = []
        self.terminals: dict[tuple[int, int], Terminal] = {}
        self.ctty: Terminal | None = None
        self._inos: dict[tuple[int, int], int] = {}
        self._pts: Location | None = None

    @classmethod
    def attach(cls, kernel: Kernel, fdtable: FdTable,
               fds: tuple[int | None, ...] = (0, 1, 2)) -> HostStdio:
        """Install ``fds`` (host fds; None or a closed fd leaves the guest fd
        closed) at guest fds 0, 1, 2, ..., bind ``/dev/tty`` and register
        ``restore`` to run when the kernel shuts down."""
        self = cls(kernel)
        for guest_fd, host_fd in enumerate(fds):
            if host_fd is None or host_fd < 0:
                continue
            f = self.wrap(host_fd)
            if f is not None:
                fdtable.install_at(guest_fd, f)
        kernel.vfs.device_openers[DEV_TTY] = self.open_tty
        kernel.vfs.device_openers[makedev(PTS_MAJOR, 0)] = self.open_pts
        hooks = getattr(kernel, "shutdown_hooks", None)
        if hooks is not None:
            hooks.append(self.close)
        return self

    # --- wrapping ----------------------------------------------------------------
    def wrap(self, host_fd: int) -> HostFile | None:
        """A guest File over a dup of ``host_fd`` (None if it is not open)."""
        try:
            st = os.fstat(host_fd)
            fl = fcntl.fcntl(host_fd, fcntl.F_GETFL)
        except OSError:
            return None
        dup = fcntl.fcntl(host_fd, fcntl.F_DUPFD_CLOEXEC, 3)
        self.dups.append(dup)
        flags = fl & (O_ACCMODE | O_APPEND | O_NONBLOCK) | O_LARGEFILE
        if host_stat.S_ISCHR(st.st_mode) and os.isatty(dup):
            term = self._terminal(dup, st)
            return TtyFile(self, dup, flags, st, term, self._pts_node())
        return HostFile(self, dup, flags, st)

    def _terminal(self, fd: int, st: os.stat_result) -> Terminal:
        key = (st.st_dev, st.st_ino)
        term = self.terminals.get(key)
        if term is None:
            term = self.terminals[key] = Terminal(self.kernel, fd)
            if self.ctty is None:
                self.ctty = term
        return term

    def _pts_node(self) -> Location | None:
        """``/dev/pts/0`` in the sandbox's tree, made once, so ttyname(3) finds
        the terminal (it compares the node's ino/dev/rdev with fstat's)."""
        if self._pts is not None:
            return self._pts
        vfs = self.kernel.vfs
        ctx = vfs.context()
        try:
            pts = vfs.resolve(ctx, None, "/dev/pts")
            try:
                pts.inode.lookup("0")
            except Errno:
                uid = self.owner()[0]
                pts.inode.mknod("0", S_IFCHR | 0o620, makedev(PTS_MAJOR, 0), uid, TTY_GID)
            self._pts = vfs.resolve(ctx, None, "/dev/pts/0")
        except Errno:
            return None  # no writable /dev/pts: fstat reports a synthetic node
        return self._pts

    def ino_for(self, st: os.stat_result) -> int:
        """A synthetic inode number, the same for every fd on one host object
        (so the guest can tell stdout and stderr are one file) but unrelated
        to the host's."""
        key = (st.st_dev, st.st_ino)
        ino = self._inos.get(key)
        if ino is None:
            ino = self._inos[key] = next_ino()
        return ino

    def owner(self) -> tuple[int, int]:
        init = self.kernel.init
        if init is None:
            return (0, 0)
        return (init.creds.ruid, init.creds.rgid)

    # --- /dev/tty and /dev/pts/0 -----------------------------------------------
    def open_tty(self, loc: Location, flags: int) -> File:
        """``/dev/tty``: the caller's controlling terminal, else ENXIO."""
        term = self.ctty
        t = self.kernel.current
        if term is None or (t is not None and not term.is_ctty_of(t.proc)):
            raise Errno(E.ENXIO)
        if t is None and term.session() is None:
            raise Errno(E.ENXIO)
        return self._open_term(term, loc, flags)

    def open_pts(self, loc: Location, flags: int) -> File:
        """``/dev/pts/0``: the sandbox's terminal itself."""
        if self.ctty is None:
            raise Errno(E.EIO)
        return self._open_term(self.ctty, loc, flags)

    def _open_term(self, term: Terminal, loc: Location, flags: int) -> File:
        if term.exclusive:
            t = self.kernel.current
            if t is None or t.proc.creds.euid != 0:
                raise Errno(E.EBUSY)
        st = os.fstat(term.fd)
        keep = flags & (O_ACCMODE | O_APPEND | O_NONBLOCK) | O_LARGEFILE
        return TtyFile(self, term.fd, keep, st, term, loc)

    # --- the end -------------------------------------------------------------------
    def restore(self) -> None:
        """Give every terminal back in the mode the host had it in."""
        for term in self.terminals.values():
            term.restore()

    def close(self) -> None:
        """restore(), then close cove's dups of the host fds."""
        self.restore()
        dups, self.dups = self.dups, []
        for fd in dups:
            try:
                os.close(fd)
            except OSError as e:
                if e.errno != host_errno.EBADF:
                    raise


def attach_stdio(kernel: Kernel, files: FdTable,
                 fds: tuple[int | None, ...] = (0, 1, 2)) -> HostStdio:
    """``HostStdio.attach``: what Sandbox.boot calls."""
    return HostStdio.attach(kernel, files, fds)
