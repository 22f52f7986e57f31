"""One sandbox's network namespace: every name a socket can be found by.

- AF_UNIX path names: the socket node's inode key (bind made the node with
  ``vfs.mknod``; connect resolves the path and looks the inode up here);
- AF_UNIX abstract names (a leading NUL) and autobind names;
- AF_INET/AF_INET6 ports: per protocol, the sockets holding each port
  (bound, autobound, or accepted from a listener on it), with Linux's
  SO_REUSEADDR / SO_REUSEPORT / IPV6_V6ONLY overlap rules.

It also keeps the progress of blocking calls that move data in several
steps (see ``Progress``). Nothing here touches the host's network.
"""

from __future__ import annotations

import itertools
import time
import weakref

from cove.abi.errno import E, Errno
from cove.dataclass import dataclass
from cove.kernel.socket.addr import ANY4, ANY6, is_v4

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from typing import Any

    from cove.kernel.kernel import Kernel
    from cove.kernel.task import Task

EPHEMERAL = (32768, 60999)  # net.ipv4.ip_local_port_range
PROT_SOCK = 1024  # ports below need CAP_NET_BIND_SERVICE
AUTOBIND_NAMES = 0x100000  # autobind names are 5 hex digits


@dataclass(slots=True)
class Progress:
    """A blocking call that has done part of its work (bytes sent or received,
    messages moved) and sleeps for the rest. It is registered for the task
    when the call first sleeps and found again by the re-runs of the same call
    (``Task.blocked_call`` set: the call is being resumed); its deadline is
    fixed then, from the socket's timeout. A call that never sleeps registers
    nothing (the common, fast case)."""

    done: int = 0
    timeout: float | None = None  # SO_RCVTIMEO/SO_SNDTIMEO when the call began
    deadline: float | None = None
    parked: bool = False
    meta: Any = None  # what the first step learnt (a receive's address and flags)

    @property
    def timed(self) -> bool:
        """A socket timeout is set: the call is never restarted after a signal."""
        return self.timeout is not None


class NetNamespace:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.unix_paths: dict[tuple[int, int], Any] = {}
        self.abstract: dict[tuple[int, bytes], Any] = {}  # (socket type, name)
        self._autobind = itertools.count(0)
        self.ports: dict[tuple[int, int], list[Any]] = {}  # (protocol, port) -> sockets
        self._next_port: dict[int, int] = {}
        self.progress: weakref.WeakKeyDictionary[Task, Progress] = weakref.WeakKeyDictionary()

    # --- blocking calls in steps ----------------------------------------------------
    def begin(self, t: Task, timeout: float | None) -> Progress:
        """The progress of ``t``'s current call: the one parked by its last
        sleep if the call is being resumed, else a fresh one."""
        if t.blocked_call is not None:
            p = self.progress.get(t)
            if p is not None:
                return p
        return Progress(0, timeout)

    def park(self, t: Task, p: Progress, b: Any, on_timeout: int) -> None:
        """Before ``Blocked`` ``b`` puts the call to sleep: keep ``p`` for the
        re-run and give the sleep its deadline and the result at expiry."""
        if not p.parked:
            p.parked = True
            if p.timeout is not None:
                p.deadline = time.monotonic() + p.timeout
            self.progress[t] = p
        b.deadline, b.on_timeout = p.deadline, on_timeout

    def end(self, t: Task, p: Progress | None = None) -> Progress | None:
        """The call is over: forget its progress (``p``: only if it was parked)."""
        if p is not None and not p.parked:
            return p
        return self.progress.pop(t, None)

    # --- AF_UNIX --------------------------------------------------------------------
    def autobind_name(self, stype: int) -> bytes:
        """A free abstract name of five hex digits, as unix_autobind makes."""
        for _ in range(AUTOBIND_NAMES):
            name = b"%05x" % (next(self._autobind) % AUTOBIND_NAMES)
            if (stype, name) not in self.abstract:
                return name
        raise Errno(E.ENOSPC)

    # --- ports ----------------------------------------------------------------------
    def holders(self, proto: int, port: int) -> list[Any]:
        return self.ports.get((proto, port), [])

    def take_port(self, proto: int, port: int, sock: Any) -> None:
        self.ports.setdefault((proto, port), []).append(sock)

    def drop_port(self, proto: int, port: int, sock: Any) -> None:
        lst = self.ports.get((proto, port))
        if lst and sock in lst:
            lst.remove(sock)
            if not lst:
                del self.ports[(proto, port)]

    def ephemeral_port(self, proto: int, usable: Any) -> int:
        """A port from the ephemeral range that ``usable(port)`` accepts."""
        lo, hi = EPHEMERAL
        span = hi - lo + 1
        start = self._next_port.get(proto, 0)
        for i in range(span):
            port = lo + (start + i) % span
            if usable(port):
                self._next_port[proto] = (start + i + 1) % span
                return port
        raise Errno(E.EADDRINUSE)


def netns(kernel: Kernel) -> NetNamespace:
    """The namespace of ``kernel``'s sandbox, made on first use."""
    ns = getattr(kernel, "netns", None)
    if ns is None:
        ns = NetNamespace(kernel)
        kernel.netns = ns  # type: ignore[attr-defined]
    return ns


# --- address overlap for bind --------------------------------------------------------
def covers(family: int, ip: bytes, v6only: bool) -> tuple[Any, Any]:
    """The (IPv4, IPv6) addresses a socket bound to ``ip`` answers for: None,
    "*" (every one) or one address."""
    if family != 10:  # AF_INET
        return ("*" if ip == ANY4 else ip), None
    if ip == ANY6:
        return (None if v6only else "*"), "*"
    if is_v4(ip):
        return ("*" if ip == ANY4 else ip), None
    return None, ip


def _meet(a: Any, b: Any) -> bool:
    return a is not None and b is not None and (a == "*" or b == "*" or a == b)


def overlap(a: tuple[Any, Any], b: tuple[Any, Any]) -> bool:
    return _meet(a[0], b[0]) or _meet(a[1], b[1])


def accepts(cover: tuple[Any, Any], dest: bytes) -> int:
    """How well a socket answering for ``cover`` matches ``dest``: 2 for its
    exact address, 1 through a wildcard, 0 not at all."""
    mine = cover[0] if is_v4(dest) else cover[1]
    if mine is None:
        return 0
    return 1 if mine == "*" else 2 if mine == dest else 0
