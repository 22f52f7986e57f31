"""Datagram sockets: AF_UNIX SOCK_DGRAM and UDP share the receiving side.

Each socket has a queue of whole messages; a read takes one (the rest of a
message that did not fit is lost, with MSG_TRUNC). The sending sides differ
and live with their families (unix.py, inet.py): AF_UNIX charges a message
to its sender until it is read (the sender waits for SO_SNDBUF, and for a
full queue of a receiver not connected back to it); UDP never waits and
drops what does not fit the receiver's buffer, as a network would.
"""

from __future__ import annotations

from cove.abi import flags as F
from cove.abi.errno import E, Errno
from cove.kernel.socket.base import RCV_SHUTDOWN, SHUTDOWN_MASK, Received, Socket
from cove.kernel.socket.packet import NO_CREDS, Packet, RecvQueue, hold_files
from cove.kernel.wait import Blocked

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from typing import Any

    from cove.kernel.task import Task


class DgramSocket(Socket):
    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.rx = RecvQueue()
        self.wmem = 0  # charge of our messages still queued at receivers (AF_UNIX)

    def source(self, p: Packet) -> bytes | None:
        """msg_name for a message: the sender's address as this socket shows it."""
        return p.src

    def recvmsg(self, t: Task, size: int, flags: int, copied: int = 0) -> Received:
        if flags & F.MSG_OOB:
            raise Errno(E.EOPNOTSUPP)
        if flags & F.MSG_ERRQUEUE and self.family != F.AF_UNIX:
            raise Errno(E.EAGAIN)  # nothing is ever queued on the error queue
        q = self.rx
        if not q:
            if copied:
                return Received(b"", 0, stop=True)
            self.raise_error()
            if self.shut & RCV_SHUTDOWN:
                return Received(b"", 0)
            if self.nonblocking(flags):
                raise Errno(E.EAGAIN)
            raise Blocked(self.wq)
        p = q.packets[0]
        data = bytes(p.data[:size])
        trunc = len(p.data) > size
        r = Received(data, len(p.data) if flags & F.MSG_TRUNC else len(data),
                     src=self.source(p), flags=F.MSG_TRUNC if trunc else 0, stop=True)
        if self.passcred and self.family == F.AF_UNIX:
            r.creds = p.creds or NO_CREDS
        if p.files:
            if flags & F.MSG_PEEK:
                hold_files(p.files)
                r.files = list(p.files)
            else:
                r.files, p.files = p.files, None
        if not flags & F.MSG_PEEK:
            q.pop()
            self.consumed(p)
        return r

    def consumed(self, p: Packet) -> None:
        """A message left our queue: its sender has that much room again."""
        sender = p.sender
        if sender is not None and p.charge:
            sender.wmem -= p.charge
            sender.notify()
        self.notify()  # senders waiting for our queue to shorten

    def purge(self) -> None:
        for p in self.rx.purge():
            sender = p.sender
            if sender is not None and p.charge:
                sender.wmem -= p.charge
                sender.notify()

    def shutdown(self, how: int) -> None:
        self.shut |= how + 1
        self.notify()

    def inq(self) -> int:
        return len(self.rx.packets[0].data) if self.rx else 0

    def outq(self) -> int:
        return self.wmem

    def dgram_writable(self) -> bool:
        return True

    def poll_events(self) -> int:
        m = F.POLLERR if self.err else 0
        if self.shut & RCV_SHUTDOWN:
            m |= F.POLLRDHUP | F.POLLIN | F.POLLRDNORM
        if self.shut == SHUTDOWN_MASK:
            m |= F.POLLHUP
        if self.rx:
            m |= F.POLLIN | F.POLLRDNORM
        if self.dgram_writable():
            m |= F.POLLOUT | F.POLLWRNORM | F.POLLWRBAND
        return m
