"""Connection-oriented sockets: AF_UNIX SOCK_STREAM / SOCK_SEQPACKET and TCP.

A connection is two ``StreamSocket``s pointing at each other; each one's
receive queue is the direction towards it. connect() makes the accepting end
at once (an "embryo" queued on the listener, already able to receive) and
links the two, so a connection completes without any handshake to wait for;
accept() takes the oldest embryo.

Where AF_UNIX and TCP differ (net/unix/af_unix.c vs net/ipv4/tcp*.c), the
``tcp`` flag chooses:
- buffer space: AF_UNIX charges the sender's SO_SNDBUF per packet (bytes plus
  an skb's overhead, so many tiny writes fill it early); TCP counts bytes
  against the peer's receive buffer plus our send buffer, and glues small
  writes together;
- closing: AF_UNIX shuts the peer down completely (ECONNRESET if data we
  never read was left); TCP sends FIN (the peer reads EOF; its next write is
  swallowed and answered by RST, the one after fails with EPIPE) or RST when
  unread data or SO_LINGER {1, 0} is left (ECONNRESET);
- errors of a call on an unconnected socket (EINVAL/ENOTCONN vs ENOTCONN/EPIPE);
- non-blocking connect: AF_UNIX completes or says EAGAIN (backlog full);
  TCP says EINPROGRESS as Linux always does, with the outcome already
  decided (SO_ERROR, a second connect).
A SOCK_SEQPACKET connection keeps record boundaries (one record per read,
MSG_TRUNC when it did not fit).
"""

from __future__ import annotations

from collections import deque
from enum import Enum

from cove.abi import flags as F
from cove.abi.errno import E, Errno
from cove.kernel.socket.base import (
    RCV_SHUTDOWN,
    SEND_SHUTDOWN,
    SHUTDOWN_MASK,
    WMEM_DEFAULT,
    Received,
    Socket,
    msg_creds,
)
from cove.kernel.socket.packet import NO_CREDS, Creds, Packet, RecvQueue, hold_files
from cove.kernel.wait import Blocked

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from cove.fs.file import File
    from cove.kernel.task import Task

UNIX_OVERHEAD = 768  # the truesize of a small skb, charged per AF_UNIX packet
SKB_SHINFO = 320  # skb_shared_info at the end of an skb's head
SKB_STRUCT = 256  # struct sk_buff and its slab rounding


def unix_truesize(n: int) -> int:
    """What Linux charges a sender for an AF_UNIX packet of ``n`` bytes: the
    head is kmalloc'ed in power-of-two sizes (768 for anything small, 2304 for
    1000 bytes); large packets go to page fragments."""
    head = n + SKB_SHINFO
    if head <= 4096:
        return (1 << (head - 1).bit_length()) + SKB_STRUCT
    return -(-n // 4096) * 4096 + UNIX_OVERHEAD
TCP_GLUE = 65536  # TCP appends a write to the last queued segment below this size


class State(Enum):
    UNCONNECTED = 0  # TCP_CLOSE, never connected (or disconnected)
    LISTENING = 1
    CONNECTED = 2
    CLOSED = 3  # TCP: was connected, reset since (RST, or our write after the peer left)


def backlog_limit(backlog: int) -> int:
    """listen's backlog as __sys_listen clamps it (as unsigned) to somaxconn."""
    return F.SOMAXCONN if backlog < 0 or backlog > F.SOMAXCONN else backlog


class StreamSocket(Socket):
    tcp = False

    def __init__(self, *args: object, **kw: object) -> None:
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self.state = State.UNCONNECTED
        self.peer: StreamSocket | None = None
        self.rx = RecvQueue()
        self.backlog: deque[StreamSocket] = deque()
        self.max_backlog = 0
        self.listener: StreamSocket | None = None  # while queued, not yet accepted
        self.seqpacket = self.stype == F.SOCK_SEQPACKET
        self.stream = not self.seqpacket
        self.inprogress = False  # TCP: connect said EINPROGRESS, not yet confirmed

    @property
    def listening(self) -> bool:
        return self.state is State.LISTENING

    # --- family hooks ---------------------------------------------------------------
    def address(self) -> bytes | None:
        """Our address as a raw sockaddr (the source of what we send)."""
        return None

    def leave_tables(self) -> None:
        """Give up our names (socket file entry, abstract name, port)."""

    # --- connecting -----------------------------------------------------------------
    def link(self, listener: StreamSocket, embryo: StreamSocket) -> None:
        """Connect to ``embryo``, queued on ``listener`` for accept()."""
        self.peer, embryo.peer = embryo, self
        self.state = embryo.state = State.CONNECTED
        embryo.listener = listener
        listener.backlog.append(embryo)
        listener.notify()
        self.notify()

    def backlog_full(self) -> bool:
        return len(self.backlog) > self.max_backlog

    def set_listening(self, backlog: int) -> None:
        if self.state is State.LISTENING and backlog_limit(backlog) > self.max_backlog:
            self.notify()  # connectors waiting for room may go on
        self.max_backlog = backlog_limit(backlog)
        self.state = State.LISTENING

    def accept(self, t: Task, flags: int) -> Socket:
        if self.state is not State.LISTENING:
            raise Errno(E.EINVAL)
        if not self.backlog:
            self.raise_error()
            if self.nonblocking():
                raise Errno(E.EAGAIN)
            raise Blocked(self.wq)
        new = self.backlog.popleft()
        new.listener = None
        self.notify()  # room in the backlog
        return new

    # --- sending --------------------------------------------------------------------
    def room(self, peer: StreamSocket) -> int:
        """Bytes (TCP) or charge (AF_UNIX) the direction to ``peer`` can take now."""
        if self.tcp:
            return peer.rcvbuf + max(self.sndbuf, WMEM_DEFAULT) - peer.rx.charge
        return self.sndbuf - peer.rx.charge

    def writable(self) -> bool:
        peer = self.peer if self.state is State.CONNECTED else None
        used = peer.rx.charge if peer is not None else 0
        if self.tcp:
            queued = max(0, used - (peer.rcvbuf if peer is not None else 0))
            return queued * 3 <= max(self.sndbuf, WMEM_DEFAULT) * 2  # sk_stream_is_writeable
        return used * 4 <= self.sndbuf  # unix_writable

    def _check_send(self, dest: bytes | None, flags: int) -> StreamSocket:
        if flags & F.MSG_OOB:
            raise Errno(E.EOPNOTSUPP)
        if self.tcp:
            if self.err:
                err = self.take_error()
                raise self.pipe_error(flags) if err == E.EPIPE else Errno(err)
            if self.state is not State.CONNECTED or self.shut & SEND_SHUTDOWN:
                raise self.pipe_error(flags)
        else:
            if self.seqpacket:
                self.raise_error()  # and an address is ignored (unix_seqpacket_sendmsg)
            elif dest:
                raise Errno(E.EISCONN if self.state is State.CONNECTED else E.EOPNOTSUPP)
            if self.state is not State.CONNECTED:
                raise Errno(E.ENOTCONN)
            if self.shut & SEND_SHUTDOWN:
                raise self.pipe_error(flags) if self.stream else Errno(E.EPIPE)
        peer = self.peer
        assert peer is not None
        if not self.tcp and (peer.closed or peer.shut & RCV_SHUTDOWN):
            raise self.pipe_error(flags) if self.stream else Errno(E.EPIPE)
        return peer

    def sendmsg(self, t: Task, data: memoryview, dest: bytes | None, files: list[File] | None,
                creds: Creds | None, flags: int) -> int:
        peer = self._check_send(dest, flags)
        n = len(data)
        if self.tcp and peer.closed:
            # The peer is gone: the data meets an RST, which (in CLOSE_WAIT)
            # makes the next call fail with EPIPE.
            self.err = E.EPIPE
            self.shut = SHUTDOWN_MASK
            self.state = State.CLOSED
            self.notify()
            return n
        if self.seqpacket and n > self.sndbuf - 32:
            raise Errno(E.EMSGSIZE)
        if n == 0 and self.stream:
            return 0
        room = self.room(peer)
        if room <= 0:
            if self.nonblocking(flags, send=True):
                raise Errno(E.EAGAIN)
            raise Blocked(self.wq)
        take = n if self.seqpacket else min(n, room)
        chunk = bytes(data[:take])
        if creds is None and not self.tcp and (self.passcred or peer.passcred):
            creds = msg_creds(t)
        q = peer.rx
        last = q.packets[-1] if q.packets else None
        if self.tcp and last is not None and last.left < TCP_GLUE:
            # TCP appends small writes to the tail segment (a bytearray).
            last.data += chunk
            last.charge += take
            q.nbytes += take
            q.charge += take
        else:
            if self.tcp:
                chunk = bytearray(chunk)
            if files:
                hold_files(files)
            q.push(Packet(chunk, files=files or None, creds=creds, src=self.address(),
                          sender=self, charge=take if self.tcp else unix_truesize(take)))
        peer.notify()
        return take

    # --- receiving ------------------------------------------------------------------
    def recvmsg(self, t: Task, size: int, flags: int, copied: int = 0) -> Received:
        if flags & F.MSG_OOB:
            raise Errno(E.EINVAL)  # no urgent data is ever queued
        if self.state in (State.UNCONNECTED, State.LISTENING):
            raise Errno(E.EINVAL if self.stream and not self.tcp else E.ENOTCONN)
        q = self.rx
        if not q:
            if self.err or self.shut & RCV_SHUTDOWN or size == 0 or self.nonblocking(flags):
                if copied:
                    return Received(b"", 0, stop=True)  # the error waits for the next call
                self.raise_error()
                if self.shut & RCV_SHUTDOWN or size == 0:
                    return Received(b"", 0)
                raise Errno(E.EAGAIN)
            raise Blocked(self.wq)
        if self.seqpacket:
            return self._recv_record(size, flags)
        return self._recv_bytes(size, flags)

    def _recv_record(self, size: int, flags: int) -> Received:
        p = self.rx.packets[0]
        data = p.data[:size]
        trunc = len(p.data) > size
        r = Received(data, len(p.data) if flags & F.MSG_TRUNC else len(data), src=p.src,
                     flags=F.MSG_TRUNC if trunc else 0)
        self._take_anc(r, p, flags)
        if not flags & F.MSG_PEEK:
            self.rx.pop()
            self._freed()
        return r

    def _recv_bytes(self, size: int, flags: int) -> Received:
        q, peek = self.rx, bool(flags & F.MSG_PEEK)
        out = bytearray()
        r = Received(b"", 0)
        first = True
        for p in list(q.packets):
            if len(out) >= size:
                break
            if self.passcred and not first and (p.creds or NO_CREDS) != r.creds:
                break  # never glue messages from different writers
            take = min(size - len(out), p.left)
            out += p.data[p.off:p.off + take]
            if first:
                r.src = p.src
                self._take_anc(r, p, flags, files=False)
                first = False
            if p.files:
                self._take_anc(r, p, flags, creds=False)
                r.stop = True
            if not peek:
                if take == p.left:
                    q.pop()
                else:
                    p.off += take
                    q.nbytes -= take
                    if self.tcp:
                        p.charge -= take
                        q.charge -= take
            if r.stop:
                break
        r.length = len(out)
        # TCP's MSG_TRUNC discards what it reads instead of copying it.
        r.data = b"" if self.tcp and flags & F.MSG_TRUNC else bytes(out)
        if not peek:
            self._freed()
        return r

    def _take_anc(self, r: Received, p: Packet, flags: int, *, files: bool = True,
                  creds: bool = True) -> None:
        if creds and self.passcred and not self.tcp:
            r.creds = p.creds or NO_CREDS
        if files and p.files:
            if flags & F.MSG_PEEK:
                hold_files(p.files)  # a peek gets its own copies, as scm_fp_dup
                r.files = list(p.files)
            else:
                r.files, p.files = p.files, None

    def _freed(self) -> None:
        """Room in our queue: the writer (our peer) may send more."""
        if self.peer is not None:
            self.peer.notify()
        self.notify()

    # --- shutdown and close ---------------------------------------------------------
    def shutdown(self, how: int) -> None:
        mode = how + 1  # SHUT_RD → RCV_SHUTDOWN, SHUT_WR → SEND_SHUTDOWN
        peer = self.peer if self.state is State.CONNECTED else None
        if self.tcp:
            if self.state is State.LISTENING:
                if mode & RCV_SHUTDOWN:
                    self._drop_backlog()
                    self.state = State.UNCONNECTED
                    self.notify()
                return
            self.shut |= mode
            self.notify()
            if peer is None:
                raise Errno(E.ENOTCONN)
            if mode & SEND_SHUTDOWN and not peer.closed:
                peer.shut |= RCV_SHUTDOWN  # FIN
                peer.notify()
            return
        self.shut |= mode
        if peer is not None:
            peer.shut |= (RCV_SHUTDOWN if mode & SEND_SHUTDOWN else 0) | (
                SEND_SHUTDOWN if mode & RCV_SHUTDOWN else 0)
            peer.notify()
        self.notify()

    def _drop_backlog(self) -> None:
        """Connections never accepted are reset (their connectors see ECONNRESET)."""
        while self.backlog:
            e = self.backlog.popleft()
            e.listener = None
            e.closed = True
            e.abort()

    def reset_peer(self) -> None:
        """The connection is reset: the peer sees ECONNRESET, then EOF/EPIPE."""
        peer = self.peer if self.state is State.CONNECTED else None
        if peer is not None and not peer.closed:
            peer.err = E.ECONNRESET
            peer.shut = SHUTDOWN_MASK
            if peer.tcp:
                peer.state = State.CLOSED
            peer.notify()

    def abort(self) -> None:
        """Tear down an embryo, or a TCP socket closed with data unread."""
        self.reset_peer()
        self.rx.purge()
        self.leave_tables()
        self.notify()

    def close(self) -> None:
        if self.state is State.LISTENING:
            self._drop_backlog()
        peer = self.peer if self.state is State.CONNECTED else None
        if peer is not None and not peer.closed:
            if self.tcp:
                if self.rx or self.linger == (1, 0):
                    self.abort()
                    return
                peer.shut |= RCV_SHUTDOWN  # FIN; peer.closed marks the half that is gone
            else:
                peer.shut = SHUTDOWN_MASK
                if self.rx:
                    peer.err = E.ECONNRESET
            peer.notify()
        self.rx.purge()
        self.leave_tables()
        self.notify()

    # --- readiness ------------------------------------------------------------------
    def poll_events(self) -> int:
        st = self.state
        if self.tcp:
            if st is State.LISTENING:
                return F.POLLIN | F.POLLRDNORM if self.backlog else 0
            m = 0
            if self.shut == SHUTDOWN_MASK or st is not State.CONNECTED:
                m |= F.POLLHUP
            if self.shut & RCV_SHUTDOWN:
                m |= F.POLLIN | F.POLLRDNORM | F.POLLRDHUP
            if self.rx:
                m |= F.POLLIN | F.POLLRDNORM
            if self.shut & SEND_SHUTDOWN or self.writable():
                m |= F.POLLOUT | F.POLLWRNORM
            if self.err:
                m |= F.POLLERR
            return m
        m = F.POLLERR if self.err else 0
        if self.shut == SHUTDOWN_MASK:
            m |= F.POLLHUP
        if self.shut & RCV_SHUTDOWN:
            m |= F.POLLRDHUP | F.POLLIN | F.POLLRDNORM
        if self.rx or self.backlog:
            m |= F.POLLIN | F.POLLRDNORM
        if st is State.UNCONNECTED:
            m |= F.POLLHUP
        if st is not State.LISTENING and self.writable():
            m |= F.POLLOUT | F.POLLWRNORM | F.POLLWRBAND
        return m

    def poll_queues(self) -> tuple:
        return (self.wq,)

    # --- ioctls ---------------------------------------------------------------------
    def inq(self) -> int:
        if self.state is State.LISTENING:
            raise Errno(E.EINVAL)
        return self.rx.nbytes

    def outq(self) -> int:
        if self.state is State.LISTENING:
            raise Errno(E.EINVAL)
        peer = self.peer if self.state is State.CONNECTED else None
        if peer is None:
            return 0
        if self.tcp:
            return max(0, peer.rx.charge - peer.rcvbuf)  # what the peer has not acked
        return peer.rx.charge
