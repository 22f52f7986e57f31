"""AF_UNIX: names (socket files, abstract names, autobind) and the two kinds.

bind() to a path makes a S_IFSOCK node through the VFS (``vfs.mknod`` with
the caller's umask; EADDRINUSE if the name exists) and files the socket
under that node's inode key; connect()/sendto() resolve the path (write
permission needed), and find the socket by the inode they reach. Abstract
names (a leading NUL) and autobind names (a NUL and five hex digits, given
for a bind of just the family, or before connect/send with SO_PASSCRED) live
in the namespace's table, one namespace per socket type (Linux hashes the
type in: a stream and a datagram socket may share an abstract name, and
connecting to a name of the other type is ECONNREFUSED). The node outlives the socket, as on Linux:
connecting to it afterwards is ECONNREFUSED.
"""

from __future__ import annotations

import os

from cove.abi import flags as F
from cove.abi.errno import E, Errno
from cove.fs import perm
from cove.fs.node import S_IFMT, S_IFSOCK
from cove.kernel.socket.addr import UNNAMED, unix_abstract_addr, unix_parse, unix_path_addr
from cove.kernel.socket.base import RCV_SHUTDOWN, SEND_SHUTDOWN, Socket, msg_creds, task_creds
from cove.kernel.socket.dgram import DgramSocket
from cove.kernel.socket.packet import Creds, Packet, hold_files
from cove.kernel.socket.stream import State, StreamSocket, unix_truesize
from cove.kernel.wait import Blocked

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from typing import Any

    from cove.fs.file import File
    from cove.kernel.task import Task


class UnixNaming:
    """The naming half of an AF_UNIX socket (mixed into both kinds)."""

    addr: bytes | None = None  # the raw sockaddr it is bound to
    path_key: tuple[int, int] | None = None
    abstract_name: tuple[int, bytes] | None = None  # (type, name): the table key

    def address(self: Any) -> bytes | None:
        return self.addr

    def sockname(self: Any) -> bytes:
        return self.addr or UNNAMED

    def bind(self: Any, t: Task, raw: bytes) -> None:
        kind, name = unix_parse(raw)
        if kind == "autobind":
            self.autobind()
            return
        if kind == "abstract":
            if self.addr is not None:
                raise Errno(E.EINVAL)
            key = (self.stype, name)
            if key in self.ns.abstract:
                raise Errno(E.EADDRINUSE)
            self.ns.abstract[key] = self
            self.abstract_name = key
            self.addr = unix_abstract_addr(name)
            return
        vfs, path = t.kernel.vfs, os.fsdecode(name)
        try:
            vfs.mknod(t.fs, None, path, S_IFSOCK | 0o777)
        except Errno as e:
            if e.errno == E.EEXIST:
                raise Errno(E.EADDRINUSE) from None
            raise
        loc = vfs.resolve(t.fs, None, path, follow=False)
        if self.addr is not None:
            # Linux makes the node first and takes it back for a bound socket.
            try:
                vfs.unlink(t.fs, None, path)
            except Errno:
                pass
            raise Errno(E.EINVAL)
        self.path_key = loc.inode.key
        self.ns.unix_paths[self.path_key] = self
        self.addr = unix_path_addr(name)

    def autobind(self: Any) -> None:
        if self.addr is not None:
            return
        name = self.ns.autobind_name(self.stype)
        self.abstract_name = (self.stype, name)
        self.ns.abstract[self.abstract_name] = self
        self.addr = unix_abstract_addr(name)

    def find(self: Any, t: Task, raw: bytes) -> Any:
        """The socket a connect/sendto address names (unix_find_other)."""
        kind, name = unix_parse(raw)
        if kind == "autobind":
            raise Errno(E.EINVAL)
        if kind == "abstract":
            other = self.ns.abstract.get((self.stype, name))  # one namespace per type
        else:
            loc = t.kernel.vfs.resolve(t.fs, None, os.fsdecode(name))
            st = loc.inode.stat()
            perm.check(st, t.fs.cred, perm.MAY_WRITE)
            if st.mode & S_IFMT != S_IFSOCK:
                raise Errno(E.ECONNREFUSED)
            other = self.ns.unix_paths.get(loc.inode.key)
        if other is None or other.closed:
            raise Errno(E.ECONNREFUSED)
        if other.stype != self.stype:
            raise Errno(E.EPROTOTYPE)
        return other

    def leave_tables(self: Any) -> None:
        ns = self.ns
        if self.path_key is not None and ns.unix_paths.get(self.path_key) is self:
            del ns.unix_paths[self.path_key]
        if self.abstract_name is not None and ns.abstract.get(self.abstract_name) is self:
            del ns.abstract[self.abstract_name]


class UnixStream(UnixNaming, StreamSocket):
    """AF_UNIX SOCK_STREAM and SOCK_SEQPACKET."""

    def listen(self, t: Task, backlog: int) -> None:
        if self.state not in (State.UNCONNECTED, State.LISTENING):
            raise Errno(E.EINVAL)
        if self.addr is None:
            raise Errno(E.EINVAL)  # no listens on an unbound socket
        self.set_listening(backlog)
        self.peercred = task_creds(t)

    def connect(self, t: Task, raw: bytes) -> int:
        if len(raw) < 2:
            raise Errno(E.EINVAL)
        if self.state is State.CONNECTED:
            raise Errno(E.EISCONN)
        if self.state is State.LISTENING:
            raise Errno(E.EINVAL)
        other = self.find(t, raw)
        if other.state is not State.LISTENING or other.shut & RCV_SHUTDOWN:
            raise Errno(E.ECONNREFUSED)
        if other.backlog_full():
            if self.nonblocking(send=True):
                raise Errno(E.EAGAIN)
            raise Blocked(other.wq)
        if self.passcred:
            self.autobind()
        new = UnixStream(self.ns, F.AF_UNIX, self.stype, 0, False, other.uid, other.gid)
        new.addr = other.addr
        new.passcred = other.passcred
        new.peercred = task_creds(t)
        self.peercred = other.peercred
        self.link(other, new)
        return 0

    def peername(self) -> bytes:
        if self.state is not State.CONNECTED or self.peer is None:
            raise Errno(E.ENOTCONN)
        return self.peer.addr or UNNAMED


class UnixDgram(UnixNaming, DgramSocket):
    """AF_UNIX SOCK_DGRAM (and SOCK_RAW, which Linux turns into it)."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.peer: UnixDgram | None = None

    def listen(self, t: Task, backlog: int) -> None:
        raise Errno(E.EOPNOTSUPP)

    def connect(self, t: Task, raw: bytes) -> int:
        if len(raw) < 2:
            raise Errno(E.EINVAL)
        if raw[0] | raw[1] << 8 == F.AF_UNSPEC:
            self.set_peer(None)  # 1003.1g: AF_UNSPEC dissolves the association
            return 0
        other = self.find(t, raw)
        if self.passcred:
            self.autobind()
        if other.peer is not None and other.peer is not self:
            raise Errno(E.EPERM)  # it only hears its own peer
        self.set_peer(other)
        return 0

    def set_peer(self, other: UnixDgram | None) -> None:
        if other is not None and self.peer is None:
            self.peercred = other.peercred
        self.peer = other
        self.notify()

    def peername(self) -> bytes:
        if self.peer is None:
            raise Errno(E.ENOTCONN)
        return self.peer.addr or UNNAMED

    def sendmsg(self, t: Task, data: memoryview, dest: bytes | None, files: list[File] | None,
                creds: Creds | None, flags: int) -> int:
        if flags & F.MSG_OOB:
            raise Errno(E.EOPNOTSUPP)
        self.raise_error()
        if dest:
            other = self.find(t, dest)
        else:
            other = self.peer
            if other is None:
                raise Errno(E.ENOTCONN)
        n = len(data)
        if n > self.sndbuf - 32:
            raise Errno(E.EMSGSIZE)
        if self.shut & SEND_SHUTDOWN:
            raise Errno(E.EPIPE)
        if other.peer is not None and other.peer is not self:
            raise Errno(E.EPERM)
        if other.closed:
            if other is self.peer:
                self.peer = None
            raise Errno(E.ECONNREFUSED)
        if other.shut & RCV_SHUTDOWN:
            raise Errno(E.EPIPE)
        if self.wmem >= self.sndbuf or (other.peer is not self and other.queue_full()):
            if self.nonblocking(flags, send=True):
                raise Errno(E.EAGAIN)
            raise Blocked(self.wq if self.wmem >= self.sndbuf else other.wq)
        if self.passcred or other.passcred:
            self.autobind()
            if creds is None:
                creds = msg_creds(t)
        charge = unix_truesize(n)
        if files:
            hold_files(files)
        other.rx.push(Packet(bytes(data), files=files or None, creds=creds, src=self.addr,
                             sender=self, charge=charge))
        self.wmem += charge
        other.notify()
        return n

    def queue_full(self) -> bool:
        return len(self.rx) > F.UNIX_MAX_DGRAM_QLEN

    def dgram_writable(self) -> bool:
        if self.wmem * 4 > self.sndbuf:
            return False
        other = self.peer
        return other is None or other.peer is self or not other.queue_full()

    def poll_queues(self) -> tuple:
        # Writability also depends on the queue of the socket we send to.
        return (self.wq,) if self.peer is None else (self.wq, self.peer.wq)

    def close(self) -> None:
        self.purge()
        self.leave_tables()
        self.peer = None
        self.notify()


def unix_socket(ns: Any, stype: int, nonblock: bool, uid: int, gid: int) -> Socket:
    if stype == F.SOCK_RAW:
        stype = F.SOCK_DGRAM
    if stype == F.SOCK_DGRAM:
        return UnixDgram(ns, F.AF_UNIX, stype, 0, nonblock, uid, gid)
    return UnixStream(ns, F.AF_UNIX, stype, 0, nonblock, uid, gid)


def unix_pair(ns: Any, t: Task, stype: int, nonblock: bool) -> tuple[Socket, Socket]:
    """socketpair: two connected, unnamed sockets owned by the caller."""
    c = t.proc.creds
    a = unix_socket(ns, stype, nonblock, c.fsuid, c.fsgid)
    b = unix_socket(ns, stype, nonblock, c.fsuid, c.fsgid)
    a.peercred = b.peercred = task_creds(t)
    if isinstance(a, UnixDgram):
        assert isinstance(b, UnixDgram)
        a.peer, b.peer = b, a
    else:
        assert isinstance(a, UnixStream) and isinstance(b, UnixStream)
        a.peer, b.peer = b, a
        a.state = b.state = State.CONNECTED
    return a, b
