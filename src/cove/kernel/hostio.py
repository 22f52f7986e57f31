"""The guest's stdin, stdout and stderr: host file descriptors given to the sandbox.

``HostStdio.attach`` wraps each given host fd (cove's own copy of it, so the
guest closing its fd never closes the host's) in a ``HostFile`` installed at
guest fds 0, 1, 2. What the guest learns about them is what a Linux program would learn,
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
the host fd. Writes go out whole; a write that finds a host pipe or terminal
full sleeps the same way, and only one that got partly out waits in place
for the rest (as a blocking write must). A host EPIPE is the guest's EPIPE +
SIGPIPE.
"""

from __future__ import annotations

import errno as host_errno
import fcntl
import os
import stat as host_stat

from cove.abi.errno import E, Errno
from cove.fs.devfs import DEV_TTY
from cove.fs.file import O_ACCMODE, O_APPEND, O_LARGEFILE, O_NONBLOCK, File
from cove.fs.node import S_IFCHR, makedev
from cove.kernel.hostfile import PTS_MAJOR, TTY_GID, HostFile
from cove.kernel.pipe import next_ino

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from cove.fs.mount import Location
    from cove.kernel.fdtable import FdTable
    from cove.kernel.hosttty import Terminal
    from cove.kernel.kernel import Kernel


def _cove_fd(host_fd: int, host_flags: int, *, reopen: bool) -> tuple[int, bool]:
    """cove's own fd for ``host_fd``, and whether it is non-blocking.

    A pipe or terminal is opened afresh through /proc/self/fd: a new open file
    description of the same object, in O_NONBLOCK mode, so cove's reads and
    writes can never stall the sandbox while the host's fd keeps its flags.
    Anything else (files share their offset with the host; sockets cannot be
    reopened), or a reopen that fails, is a dup of the host's description.
    """
    if reopen:
        acc = host_flags & O_ACCMODE
        try:
            fd = os.open(f"/proc/self/fd/{host_fd}",
                         acc | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
        except OSError:
            pass
        else:
            if fd < 3:  # never take the number of a host stdio fd someone closed
                new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
                os.close(fd)
                fd = new
            return fd, True
    return fcntl.fcntl(host_fd, fcntl.F_DUPFD_CLOEXEC, 3), False


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
        tty = host_stat.S_ISCHR(st.st_mode) and os.isatty(host_fd)
        fd, own = _cove_fd(host_fd, fl, reopen=tty or host_stat.S_ISFIFO(st.st_mode))
        self.dups.append(fd)
        flags = fl & (O_ACCMODE | O_APPEND | O_NONBLOCK) | O_LARGEFILE
        if tty:
            # Here, not at import: a sandbox whose stdio is pipes and files
            # never loads the terminal code (~0.3 ms of every start).
            from cove.kernel.hosttty import TtyFile

            term = self._terminal(fd, st, own)
            return TtyFile(self, fd, flags, st, term, self._pts_node(), own_nonblock=own)
        return HostFile(self, fd, flags, st, own_nonblock=own)

    def _terminal(self, fd: int, st: os.stat_result, own_nonblock: bool) -> Terminal:
        key = (st.st_dev, st.st_ino)
        term = self.terminals.get(key)
        if term is None:
            from cove.kernel.hosttty import Terminal

            term = self.terminals[key] = Terminal(self.kernel, fd)
            term.own_nonblock = own_nonblock
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
        from cove.kernel.hosttty import TtyFile

        return TtyFile(self, term.fd, keep, st, term, loc, own_nonblock=term.own_nonblock)

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
