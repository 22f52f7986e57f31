"""A host terminal given to the sandbox: ``TtyFile`` and the job control cove keeps.

termios and window-size ioctls reach the host tty (the guest owns the
terminal it was given; ``Terminal.restore`` puts the host's mode back), while
the session it controls and its foreground process group are cove's own, in
guest pids: TIOCGPGRP/TIOCSPGRP/TIOCSCTTY/TIOCNOTTY/TIOCGSID, SIGTTIN and
SIGTTOU for background groups (tty_check_change), SIGWINCH on TIOCSWINSZ.
Requests that would outlive the sandbox on the host's terminal (TIOCSTI,
TIOCEXCL, TIOCSETD) are refused or kept in cove.
"""

from __future__ import annotations

import fcntl
import os
import struct

from cove.abi import flags as F
from cove.abi.errno import E, Errno
from cove.abi.structs.tty import TERMIOS, TERMIOS2, WINSIZE
from cove.fs.node import S_IFCHR, Stat, makedev
from cove.kernel import signals
from cove.kernel.hostfile import PTS_MAJOR, TTY_GID, HostFile, _host_error

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from cove.fs.mount import Location
    from cove.kernel.hostio import HostStdio
    from cove.kernel.kernel import Kernel
    from cove.kernel.task import Process, Task

DEVPTS_DEV = makedev(0, 24)
N_TTY = 0
_INT = struct.Struct("<i")


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
        self.own_nonblock = False  # ``fd`` is cove's own non-blocking description
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
                 term: Terminal, location: Location | None = None,
                 own_nonblock: bool = False) -> None:
        super().__init__(stdio, host_fd, flags, st, own_nonblock)
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
