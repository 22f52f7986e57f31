"""``Socket``: what every cove socket is as an open file.

A socket is a ``File`` (fstat says S_IFSOCK, /proc names it ``socket:[ino]``,
read/write are recv/send without flags) and a ``Pollable`` whose readiness
changes are announced on one wait queue, ``wq`` (Linux's sk_wq): anything
that may change what poll reports for a socket notifies its ``wq``.

The kinds (stream.py, dgram.py, with their AF_UNIX and AF_INET forms in
unix.py and inet.py) implement the socket calls as single steps: ``sendmsg``
queues what fits now, ``recvmsg`` takes what is there now, and either raises
``Blocked`` before changing anything when it must wait. Calls that wait in
several steps (a blocking stream send of more than fits, MSG_WAITALL) are
driven by cove.kernel.socket.io.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

from cove.abi import flags as F
from cove.abi.errno import E, Errno
from cove.dataclass import dataclass
from cove.fs.file import O_NONBLOCK, O_RDWR, File
from cove.fs.node import S_IFSOCK, Stat, StatFs, makedev
from cove.kernel.pipe import next_ino
from cove.kernel.pollable import Pollable
from cove.kernel.sigerrno import epipe
from cove.kernel.socket.packet import Creds
from cove.kernel.wait import WaitQueue

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from typing import Any

    from cove.kernel.socket.ns import NetNamespace
    from cove.kernel.task import Task

SOCKFS_DEV = makedev(0, 8)
SOCKFS_MAGIC = 0x534F434B
RCV_SHUTDOWN = 1
SEND_SHUTDOWN = 2
SHUTDOWN_MASK = 3

# net.core sysctls of a stock kernel (what the sandbox reports).
WMEM_DEFAULT = RMEM_DEFAULT = 212992
WMEM_MAX = RMEM_MAX = 212992
SOCK_MIN_SNDBUF = 4608
SOCK_MIN_RCVBUF = 2304
NO_PEERCRED: Creds = (0, 0xFFFFFFFF, 0xFFFFFFFF)  # SO_PEERCRED with no peer

_cookies = itertools.count(1)


@dataclass(slots=True)
class Received:
    """One step of a receive: the bytes, the length to report (MSG_TRUNC),
    the sender's address, and ancillary data, with msg_flags."""

    data: bytes
    length: int
    src: bytes | None = None  # raw sockaddr for msg_name, None: none
    files: list[File] | None = None  # SCM_RIGHTS (references held)
    creds: Creds | None = None  # SCM_CREDENTIALS to deliver (SO_PASSCRED)
    flags: int = 0  # MSG_TRUNC, MSG_EOR ...
    stop: bool = False  # a stream read must not continue past this step


def task_creds(t: Task) -> Creds:
    """(tgid, euid, egid): what SO_PEERCRED reports of ``t``."""
    c = t.proc.creds
    return (t.proc.pid, c.euid, c.egid)


def msg_creds(t: Task) -> Creds:
    """(tgid, uid, gid): the credentials Linux stamps on a message."""
    c = t.proc.creds
    return (t.proc.pid, c.ruid, c.rgid)


class Socket(Pollable, File):
    """An open socket; subclasses implement the calls (defaults: EOPNOTSUPP)."""

    fasync = True  # FIOASYNC is accepted (cove sends no SIGIO)
    stream = False  # a byte stream: sends block until everything is queued

    def __init__(self, ns: NetNamespace, family: int, stype: int, protocol: int,
                 nonblock: bool, uid: int, gid: int) -> None:
        super().__init__(O_RDWR | (O_NONBLOCK if nonblock else 0))
        self.ns = ns
        self.family = family
        self.stype = stype
        self.protocol = protocol
        self.wq = WaitQueue()
        self.err = 0  # sk_err: reported once by the next call or SO_ERROR
        self.shut = 0  # RCV_SHUTDOWN | SEND_SHUTDOWN
        self.sndbuf = WMEM_DEFAULT
        self.rcvbuf = RMEM_DEFAULT
        self.rcvtimeo: float | None = None  # None: wait forever; 0.0: never wait
        self.sndtimeo: float | None = None
        self.passcred = False
        self.reuseaddr = False
        self.reuseport = False
        self.linger = (0, 0)
        self.peercred: Creds = NO_PEERCRED
        self.opts: dict[tuple[int, int], Any] = {}  # other options, stored as set
        self.closed = False
        self.ino = next_ino()
        self.cookie = next(_cookies)
        self.uid, self.gid = uid, gid
        self.ctime_ns = time.time_ns()

    # --- helpers for the kinds ------------------------------------------------------
    def nonblocking(self, flags: int = 0, *, send: bool = False) -> bool:
        timeo = self.sndtimeo if send else self.rcvtimeo
        return bool(self.flags & O_NONBLOCK or flags & F.MSG_DONTWAIT) or timeo == 0.0

    def take_error(self) -> int:
        err, self.err = self.err, 0
        return err

    def raise_error(self) -> None:
        """Report a pending error (sock_error), if any."""
        if self.err:
            raise Errno(self.take_error())

    @staticmethod
    def pipe_error(flags: int) -> Errno:
        """EPIPE, with SIGPIPE unless MSG_NOSIGNAL."""
        return Errno(E.EPIPE) if flags & F.MSG_NOSIGNAL else epipe()

    def notify(self) -> None:
        self.wq.notify()

    # --- the socket calls -----------------------------------------------------------
    def bind(self, t: Task, raw: bytes) -> None:
        raise Errno(E.EOPNOTSUPP)

    def listen(self, t: Task, backlog: int) -> None:
        raise Errno(E.EOPNOTSUPP)

    def accept(self, t: Task, flags: int) -> Socket:
        raise Errno(E.EOPNOTSUPP)

    def connect(self, t: Task, raw: bytes) -> int:
        raise Errno(E.EOPNOTSUPP)

    def sockname(self) -> bytes:
        raise Errno(E.EOPNOTSUPP)

    def peername(self) -> bytes:
        raise Errno(E.ENOTCONN)

    def sendmsg(self, t: Task, data: memoryview, dest: bytes | None, files: list[File] | None,
                creds: Creds | None, flags: int) -> int:
        raise Errno(E.EOPNOTSUPP)

    def recvmsg(self, t: Task, size: int, flags: int, copied: int = 0) -> Received:
        raise Errno(E.EOPNOTSUPP)

    def shutdown(self, how: int) -> None:
        raise Errno(E.EOPNOTSUPP)

    def inq(self) -> int:
        """SIOCINQ / FIONREAD."""
        return 0

    def outq(self) -> int:
        """SIOCOUTQ."""
        return 0

    def close(self) -> None:
        """The last reference is gone: leave every table, wake the peers."""

    @property
    def listening(self) -> bool:
        return False

    # --- the File side --------------------------------------------------------------
    def read(self, size: int) -> bytes:
        from cove.kernel.socket.io import read_step

        return read_step(self, size)

    def write(self, data: bytes) -> int:
        from cove.kernel.socket.io import write_step

        return write_step(self, data)

    def stat(self) -> Stat:
        return Stat(ino=self.ino, mode=S_IFSOCK | 0o777, nlink=1, uid=self.uid, gid=self.gid,
                    dev=SOCKFS_DEV, blksize=4096, atime_ns=self.ctime_ns,
                    mtime_ns=self.ctime_ns, ctime_ns=self.ctime_ns)

    @property
    def statfs(self) -> Callable[[], StatFs]:
        return _sockfs_statfs

    def proc_name(self) -> str:
        return f"socket:[{self.ino}]"

    def release(self) -> None:
        if not self.closed:
            self.closed = True
            self.close()

    def ioctl(self, t: Task, cmd: int, arg: int) -> int:
        from cove.kernel.socket.netdev import socket_ioctl

        return socket_ioctl(self, t, cmd, arg)


def _sockfs_statfs() -> StatFs:
    return StatFs(fstype=SOCKFS_MAGIC)
