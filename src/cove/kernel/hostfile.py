"""A host file descriptor given to the sandbox (stdio), as the guest sees it.

``HostFile`` wraps cove's own fd for a host pipe, socket, file or device:
reads never block the sandbox (no data: ``Blocked`` on the host fd for the
scheduler to watch), writes go out whole, a host EPIPE is the guest's EPIPE +
SIGPIPE, and fstat reports the kind of object the host has with synthetic
inode and device numbers (never the host's). Terminals are ``TtyFile``
(cove.kernel.hosttty); ``HostStdio`` (cove.kernel.hostio) makes both.
"""

from __future__ import annotations

import fcntl
import os
import select
import struct

from cove.abi import flags as F
from cove.abi.errno import E, Errno
from cove.fs.file import O_NONBLOCK, SEEK_CUR, SEEK_END, SEEK_SET, File
from cove.fs.node import S_IFCHR, S_IFIFO, S_IFREG, S_IFSOCK, Stat, major, makedev
from cove.kernel.hostpoll import EVENT_READ, EVENT_WRITE
from cove.kernel.pipe import PIPEFS_DEV
from cove.kernel.pollable import DEFAULT_POLLMASK, Pollable
from cove.kernel.sigerrno import epipe
from cove.kernel.wait import Blocked

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from cove.kernel.hostio import HostStdio
    from cove.kernel.task import Task

PTS_MAJOR = 136  # /dev/pts/N, the sandbox's terminal (cove.kernel.hosttty)
TTY_GID = 5

SOCKFS_DEV = makedev(0, 8)
HOSTFILE_DEV = makedev(0, 40)  # regular files given as stdio: a device of their own
CHUNK = 1 << 20  # most bytes moved by one host read/write
_INT = struct.Struct("<i")

_POLL_ALL = select.POLLIN | select.POLLPRI | select.POLLOUT


def _host_error(e: OSError) -> Errno:
    return Errno(e.errno or E.EIO)


class HostFile(Pollable, File):
    """A host fd as the guest sees it: a pipe, socket, file or non-tty device."""

    def __init__(self, stdio: HostStdio, host_fd: int, flags: int, st: os.stat_result,
                 own_nonblock: bool = False) -> None:
        super().__init__(flags)
        self.stdio = stdio
        self.fd = host_fd
        # True when ``host_fd`` is an open file description of cove's own in
        # O_NONBLOCK mode (see HostStdio.wrap): the host says when it would block.
        self.own_nonblock = own_nonblock
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
        raise Blocked(host_fd=self.fd, host_events=EVENT_READ)

    def read(self, size: int) -> bytes:
        self.check_readable()
        if size <= 0:
            return b""
        if not self.own_nonblock:
            self._wait_readable()  # a shared, blocking description: ask first
        try:
            return os.read(self.fd, min(size, CHUNK))
        except BlockingIOError:
            # Someone else (the host side) drained it first: wait again.
            if self.flags & O_NONBLOCK:
                raise Errno(E.EAGAIN) from None
            raise Blocked(host_fd=self.fd, host_events=EVENT_READ) from None
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
                # Full. Nothing written yet: sleep like any blocking write.
                if not done:
                    if self.flags & O_NONBLOCK:
                        raise Errno(E.EAGAIN) from None
                    raise Blocked(host_fd=self.fd, host_events=EVENT_WRITE) from None
                if self.flags & O_NONBLOCK:
                    return done
                # Part of it is out: a blocking write finishes, so here (only)
                # the sandbox waits for the host's reader.
                self._wait_writable()
            except BrokenPipeError:
                if done:
                    return done
                raise epipe() from None
            except OSError as e:
                if done:
                    return done
                raise _host_error(e) from None
        return done

    def _wait_writable(self) -> None:
        waiter = select.poll()
        waiter.register(self.fd, select.POLLOUT)
        waiter.poll()

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
            ev |= EVENT_READ
        if events & (F.POLLOUT | F.POLLWRNORM):
            ev |= EVENT_WRITE
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
