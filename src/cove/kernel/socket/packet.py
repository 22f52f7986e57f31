"""What sits in a socket's receive queue: packets with their ancillary data.

A ``Packet`` is one sendmsg's worth of bytes (one datagram, one seqpacket
record, or one piece of a stream) with the files it carries (SCM_RIGHTS),
the sender's credentials (SCM_CREDENTIALS) and the sender's address. Files
in flight hold a reference of their own (``OpenFiles.get``), as Linux's
``scm_fp_list`` does, so closing the sender's fds does not release them;
``drop_files`` gives those references back when a packet is discarded.
"""

from __future__ import annotations

from collections import deque

from cove.dataclass import dataclass
from cove.kernel.fdtable import OpenFiles

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from typing import Any

    from cove.fs.file import File

Creds = tuple[int, int, int]  # (pid, uid, gid) as struct ucred has them
NO_CREDS: Creds = (0, 65534, 65534)  # what Linux reports for a message without any


@dataclass(slots=True, eq=False)
class Packet:
    data: bytes | bytearray
    off: int = 0  # bytes already read from a stream piece
    files: list[File] | None = None
    creds: Creds | None = None
    src: Any = None  # the sender's address: raw sockaddr (AF_UNIX) or endpoint (inet)
    sender: Any = None  # the sending socket, charged ``charge`` until this is read
    charge: int = 0

    @property
    def left(self) -> int:
        return len(self.data) - self.off


def hold_files(files: list[File]) -> None:
    for f in files:
        OpenFiles.get(f)


def drop_files(files: list[File] | None) -> None:
    for f in files or ():
        OpenFiles.put(f)


class RecvQueue:
    """A receive queue: packets oldest first, with byte and charge totals."""

    __slots__ = ("charge", "nbytes", "packets")

    def __init__(self) -> None:
        self.packets: deque[Packet] = deque()
        self.nbytes = 0  # unread data bytes
        self.charge = 0  # buffer space in use (bytes plus per-packet overhead)

    def __len__(self) -> int:
        return len(self.packets)

    def __bool__(self) -> bool:
        return bool(self.packets)

    def push(self, p: Packet) -> None:
        self.packets.append(p)
        self.nbytes += p.left
        self.charge += p.charge

    def pop(self) -> Packet:
        p = self.packets.popleft()
        self.nbytes -= p.left
        self.charge -= p.charge
        return p

    def purge(self) -> list[Packet]:
        """Empty the queue, giving back the references of files in flight."""
        out = list(self.packets)
        self.packets.clear()
        self.nbytes = self.charge = 0
        for p in out:
            drop_files(p.files)
            p.files = None
        return out
