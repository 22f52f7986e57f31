"""AF_INET / AF_INET6 on the sandbox's own loopback: TCP and UDP.

There is no network behind these sockets: 127.0.0.0/8 and ::1 reach other
sockets of the same sandbox through the namespace's port tables, and any
other destination is ENETUNREACH (connect, sendto) or EADDRNOTAVAIL (bind).
Binding to a wildcard (0.0.0.0, ::) means "every loopback address"; an
AF_INET6 socket without IPV6_V6ONLY also answers IPv4 (v4-mapped), as on
Linux. Ports follow Linux's rules: ephemeral ports 32768-60999 for autobind,
ports below 1024 need root (EACCES), and two sockets may share a port only
with SO_REUSEADDR (not while either listens, for TCP) or SO_REUSEPORT.
"""

from __future__ import annotations

from cove.abi import flags as F
from cove.abi.errno import E, Errno
from cove.kernel.socket.addr import (
    ANY4,
    ANY6,
    Endpoint,
    family_of,
    inet_pack,
    inet_parse,
    is_any,
    is_loopback,
    is_v4,
    route,
    source_for,
)
from cove.kernel.socket.base import SEND_SHUTDOWN, SHUTDOWN_MASK, Socket
from cove.kernel.socket.dgram import DgramSocket
from cove.kernel.socket.ns import PROT_SOCK, accepts, covers, overlap
from cove.kernel.socket.packet import Creds, Packet
from cove.kernel.socket.stream import State, StreamSocket, unix_truesize

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from typing import Any

    from cove.fs.file import File
    from cove.kernel.task import Task

UDP_MAX4 = 65507  # 65535 - IPv4 header - UDP header
UDP_MAX6 = 65527  # 65535 - UDP header (the IPv6 header is not in the payload length)
TCP_DEFAULT_SNDBUF = 16384  # net.ipv4.tcp_wmem[1]
TCP_DEFAULT_RCVBUF = 131072  # net.ipv4.tcp_rmem[1]


class InetNaming:
    """Addresses and ports of an AF_INET/AF_INET6 socket (mixed into TCP and UDP)."""

    local: Endpoint | None = None  # what it is bound to (the address may be a wildcard)
    src_ip: bytes | None = None  # the source address once connected
    remote: Endpoint | None = None
    autobound = False

    @property
    def v6only(self: Any) -> bool:
        return bool(self.opts.get((F.IPPROTO_IPV6, F.IPV6_V6ONLY), 0))

    def cover(self: Any) -> tuple[Any, Any]:
        assert self.local is not None
        return covers(self.family, self.local[0], self.v6only)

    def sockname(self: Any) -> bytes:
        if self.local is None:
            return inet_pack(self.family, (ANY4 if self.family == F.AF_INET else ANY6, 0))
        return inet_pack(self.family, (self.src_ip or self.local[0], self.local[1]))

    def address(self: Any) -> bytes | None:
        return None

    def conflicts(self: Any, ip: bytes, port: int) -> bool:
        mine = covers(self.family, ip, self.v6only)
        for o in self.ns.holders(self.protocol, port):
            if o is self or o.local is None or not overlap(mine, o.cover()):
                continue
            if (self.reuseaddr and o.reuseaddr
                    and (self.protocol == F.IPPROTO_UDP or not (o.listening or self.listening))):
                continue
            if self.reuseport and o.reuseport and o.uid == self.uid:
                continue
            return True
        return False

    def bind(self: Any, t: Task, raw: bytes) -> None:
        fam = family_of(raw)
        ip, port = inet_parse(raw, self.family, unspec_ok=True)
        if fam == F.AF_UNSPEC and ip != ANY4:
            raise Errno(E.EAFNOSUPPORT)  # AF_UNSPEC only stands for INADDR_ANY
        if is_v4(ip) and self.family == F.AF_INET6 and self.v6only:
            raise Errno(E.EINVAL)
        if not (is_any(ip) or is_loopback(ip)):
            raise Errno(E.EADDRNOTAVAIL)
        if 0 < port < PROT_SOCK and t.proc.creds.euid != 0:
            raise Errno(E.EACCES)
        if self.local is not None or self.remote is not None:
            raise Errno(E.EINVAL)
        if port == 0:
            port = self.ns.ephemeral_port(self.protocol, lambda p: not self.conflicts(ip, p))
        elif self.conflicts(ip, port):
            raise Errno(E.EADDRINUSE)
        self.local = (ip, port)
        self.ns.take_port(self.protocol, port, self)

    def autobind(self: Any) -> None:
        """Take an ephemeral port on the wildcard address (connect, send, listen)."""
        if self.local is not None:
            return
        ip = ANY4 if self.family == F.AF_INET else ANY6
        port = self.ns.ephemeral_port(self.protocol, lambda p: not self.conflicts(ip, p))
        self.local = (ip, port)
        self.autobound = True
        self.ns.take_port(self.protocol, port, self)

    def unbind_auto(self: Any) -> None:
        """Give an autobound port back (a failed connect, a UDP disconnect)."""
        if self.autobound and self.local is not None:
            self.ns.drop_port(self.protocol, self.local[1], self)
            self.local = None
            self.autobound = False

    def route_to(self: Any, ip: bytes) -> bytes:
        if self.family == F.AF_INET6 and is_v4(ip) and self.v6only:
            raise Errno(E.ENETUNREACH)
        return route(ip)

    def source_to(self: Any, dest: bytes) -> bytes:
        assert self.local is not None
        return source_for(dest) if is_any(self.local[0]) else self.local[0]

    def leave_tables(self: Any) -> None:
        if self.local is not None:
            self.ns.drop_port(self.protocol, self.local[1], self)


class Tcp(InetNaming, StreamSocket):
    tcp = True

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.sndbuf = TCP_DEFAULT_SNDBUF
        self.rcvbuf = TCP_DEFAULT_RCVBUF

    def listen(self, t: Task, backlog: int) -> None:
        if self.state not in (State.UNCONNECTED, State.LISTENING):
            raise Errno(E.EINVAL)
        if self.local is None:
            self.autobind()
        elif self.state is State.UNCONNECTED and self._listener_clash():
            raise Errno(E.EADDRINUSE)
        self.set_listening(backlog)

    def _listener_clash(self) -> bool:
        assert self.local is not None
        mine = self.cover()
        return any(o is not self and o.listening and o.local is not None
                   and overlap(mine, o.cover()) and not (self.reuseport and o.reuseport)
                   for o in self.ns.holders(self.protocol, self.local[1]))

    def connect(self, t: Task, raw: bytes) -> int:
        if len(raw) < 2:
            raise Errno(E.EINVAL)
        if family_of(raw) == F.AF_UNSPEC:
            self._disconnect()
            return 0
        if self.inprogress:
            # The outcome of an EINPROGRESS connect, asked for again.
            self.inprogress = False
            if self.state is State.CONNECTED:
                return 0
            err = self.take_error() or E.ECONNABORTED
            self.shut = 0
            self.notify()
            raise Errno(err)
        if self.state is not State.UNCONNECTED:
            raise Errno(E.EISCONN)
        ip, port = inet_parse(raw, self.family)
        dest = self.route_to(ip)
        self.autobind()
        assert self.local is not None
        listener = self._find_listener(dest, port)
        nonblock = self.nonblocking(send=True)
        if listener is None:
            self.unbind_auto()
            if nonblock:
                # The RST ends it at once: closed both ways until the outcome is
                # asked for (a second connect resets the socket, tcp_disconnect).
                self.err = E.ECONNREFUSED
                self.shut = SHUTDOWN_MASK
                self.inprogress = True
                self.notify()
                raise Errno(E.EINPROGRESS)
            raise Errno(E.ECONNREFUSED)
        self.src_ip = self.source_to(dest)
        self.remote = (dest, port)
        new = Tcp(self.ns, listener.family, F.SOCK_STREAM, F.IPPROTO_TCP, False,
                  listener.uid, listener.gid)
        _inherit(new, listener)
        new.local = (listener.local[0], port)
        new.src_ip = dest
        new.remote = (self.src_ip, self.local[1])
        self.ns.take_port(self.protocol, port, new)
        self.link(listener, new)
        if nonblock:
            self.inprogress = True  # Linux always says so for a non-blocking TCP connect
            raise Errno(E.EINPROGRESS)
        return 0

    def _find_listener(self, dest: bytes, port: int) -> Tcp | None:
        best, score = None, 0
        for o in self.ns.holders(self.protocol, port):
            if o.listening and not o.closed:
                s = accepts(o.cover(), dest)
                if s > score:
                    best, score = o, s
        return best

    def _disconnect(self) -> None:
        """connect(AF_UNSPEC): drop whatever connection there is (tcp_disconnect)."""
        if self.state is State.LISTENING:
            self._drop_backlog()
        elif self.state in (State.CONNECTED, State.CLOSED):
            self.reset_peer()
            self.rx.purge()
        self.state = State.UNCONNECTED
        self.peer = None
        self.remote = None
        self.src_ip = None
        self.shut = 0
        self.inprogress = False
        self.unbind_auto()
        self.notify()

    def peername(self) -> bytes:
        if self.state is not State.CONNECTED or self.remote is None:
            raise Errno(E.ENOTCONN)
        return inet_pack(self.family, self.remote)


def _inherit(new: Socket, listener: Socket) -> None:
    """An accepted socket starts with its listener's options (sk_clone_lock)."""
    new.opts = dict(listener.opts)
    for name in ("sndbuf", "rcvbuf", "rcvtimeo", "sndtimeo", "reuseaddr", "reuseport",
                 "linger", "passcred"):
        setattr(new, name, getattr(listener, name))


class Udp(InetNaming, DgramSocket):
    def listen(self, t: Task, backlog: int) -> None:
        raise Errno(E.EOPNOTSUPP)

    def connect(self, t: Task, raw: bytes) -> int:
        if len(raw) < 2:
            raise Errno(E.EINVAL)
        if family_of(raw) == F.AF_UNSPEC:
            self.remote = None
            self.src_ip = None
            self.unbind_auto()
            self.notify()
            return 0
        ip, port = inet_parse(raw, self.family)
        dest = self.route_to(ip)
        self.autobind()
        self.src_ip = self.source_to(dest)
        self.remote = (dest, port)
        self.notify()
        return 0

    def peername(self) -> bytes:
        if self.remote is None:
            raise Errno(E.ENOTCONN)
        return inet_pack(self.family, self.remote)

    def source(self, p: Packet) -> bytes | None:
        return inet_pack(self.family, p.src)

    def shutdown(self, how: int) -> None:
        super().shutdown(how)  # takes effect even when unconnected (inet_shutdown)
        if self.remote is None:
            raise Errno(E.ENOTCONN)

    def sendmsg(self, t: Task, data: memoryview, dest: bytes | None, files: list[File] | None,
                creds: Creds | None, flags: int) -> int:
        if flags & F.MSG_OOB:
            raise Errno(E.EOPNOTSUPP)
        if dest is not None:
            ip, port = inet_parse(dest, self.family, unspec_ok=self.family == F.AF_INET)
            if port == 0:
                raise Errno(E.EINVAL)
            target = (self.route_to(ip), port)
        elif self.remote is None:
            raise Errno(E.EDESTADDRREQ)
        else:
            target = self.remote
        n = len(data)
        if n > (UDP_MAX4 if is_v4(target[0]) else UDP_MAX6):
            raise Errno(E.EMSGSIZE)
        self.raise_error()
        if self.shut & SEND_SHUTDOWN:
            raise Errno(E.EPIPE)
        self.autobind()
        assert self.local is not None
        src = (self.src_ip if dest is None and self.src_ip else self.source_to(target[0]),
               self.local[1])
        rcv = self._find_receiver(target, src)
        if rcv is None:
            if dest is None:
                self.err = E.ECONNREFUSED  # ICMP port unreachable, for the next call
                self.notify()
            return n
        charge = unix_truesize(n)  # the skb's truesize counts against SO_RCVBUF
        if rcv.rx.charge + charge > rcv.rcvbuf:
            return n  # the receiver's buffer is full: the datagram is dropped
        rcv.rx.push(Packet(bytes(data), src=src, charge=charge))
        rcv.notify()
        return n

    def _find_receiver(self, target: Endpoint, src: Endpoint) -> Udp | None:
        best, score = None, 0
        for o in self.ns.holders(self.protocol, target[1]):
            if o.closed:
                continue
            s = accepts(o.cover(), target[0])
            if s and o.remote is not None:
                s = s + 4 if o.remote == src else 0  # a connected socket hears its peer only
            if s >= score and s:
                best, score = o, s
        return best

    def close(self) -> None:
        self.rx.purge()
        self.leave_tables()
        self.notify()


def inet_socket(ns: Any, family: int, stype: int, protocol: int, nonblock: bool,
                uid: int, gid: int) -> Socket:
    if stype == F.SOCK_STREAM:
        return Tcp(ns, family, stype, F.IPPROTO_TCP, nonblock, uid, gid)
    return Udp(ns, family, stype, F.IPPROTO_UDP, nonblock, uid, gid)
