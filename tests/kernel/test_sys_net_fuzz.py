"""No guest input makes a socket call fail with anything but an errno: random
arguments (pointers into random bytes, lengths, flags, levels) for every
socket syscall over sockets of every kind, with calls that sleep woken by a
signal. An internal error would show as ENOSYS plus a logged traceback."""

from __future__ import annotations

import logging
import random
import struct

import pytest

from cove.abi import flags as F
from cove.abi.errno import E
from cove.kernel import signals
from cove.kernel.task import State

from .harness import SCRATCH, call, make_kernel
from .nethelp import bind, connect, listen, pair, sin, sock, sun

pytestmark = pytest.mark.timeout(120)

CALLS = ["socket", "socketpair", "bind", "listen", "accept", "accept4", "connect",
         "getsockname", "getpeername", "sendto", "recvfrom", "sendmsg", "recvmsg",
         "sendmmsg", "recvmmsg", "shutdown", "setsockopt", "getsockopt", "ioctl",
         "read", "write", "close", "poll"]
LEVELS = [F.SOL_SOCKET, F.IPPROTO_TCP, F.IPPROTO_IP, F.IPPROTO_IPV6, F.IPPROTO_UDP, 0x7FFF]
FLAGS = [0, F.MSG_DONTWAIT, F.MSG_PEEK | F.MSG_DONTWAIT, F.MSG_TRUNC | F.MSG_DONTWAIT,
         F.MSG_WAITALL | F.MSG_DONTWAIT, F.MSG_OOB, F.MSG_NOSIGNAL | F.MSG_DONTWAIT,
         F.MSG_ERRQUEUE, F.MSG_CMSG_CLOEXEC | F.MSG_DONTWAIT, 0xFFFFFFFF]


def _junk(rng: random.Random, t, fds: list[int]) -> None:
    """Fill the scratch area with structures that point at each other."""
    raw = bytearray(rng.randbytes(0x4000))
    for off in range(0, 0x4000, 8):
        pick = rng.random()
        if pick < 0.25:
            struct.pack_into("<Q", raw, off, SCRATCH + rng.randrange(0, 0x4000))
        elif pick < 0.45:
            struct.pack_into("<Q", raw, off, rng.choice([0, 1, 2, 16, 28, 110, 128, 4096,
                                                         2**31, 2**63, 2**64 - 1]))
        elif pick < 0.55 and fds:
            struct.pack_into("<ii", raw, off, rng.choice(fds), rng.choice(fds))
        elif pick < 0.6:
            raw[off:off + 16] = rng.choice([sun(b"/s1"), sun(b"\0ab"), sin("127.0.0.1", 5555),
                                            sin("8.8.8.8", 53)])[:16].ljust(16, b"\0")
    t.mm.write(SCRATCH, bytes(raw))


def _arg(rng: random.Random, fds: list[int]) -> int:
    pick = rng.random()
    if pick < 0.3:
        return SCRATCH + rng.randrange(0, 0x4000)
    if pick < 0.5 and fds:
        return rng.choice(fds)
    if pick < 0.7:
        return rng.choice([0, 1, 2, 3, 5, 10, 16, 24, 110, 128, 129, 1024, 1025, 2**31 - 1])
    if pick < 0.85:
        return rng.choice(FLAGS + LEVELS)
    return rng.getrandbits(64)


@pytest.mark.parametrize("seed", range(6))
def test_random_socket_calls_only_ever_give_errnos(seed, caplog):
    rng = random.Random(seed)
    _, t = make_kernel()
    fds = [sock(t, F.AF_UNIX, F.SOCK_STREAM), sock(t, F.AF_UNIX, F.SOCK_DGRAM),
           sock(t, F.AF_UNIX, F.SOCK_SEQPACKET), sock(t, F.AF_INET, F.SOCK_STREAM),
           sock(t, F.AF_INET, F.SOCK_DGRAM), sock(t, F.AF_INET6, F.SOCK_STREAM),
           sock(t, F.AF_INET6, F.SOCK_DGRAM), *pair(t), *pair(t, F.SOCK_DGRAM)]
    bind(t, fds[0], sun(b"/s1"))
    listen(t, fds[0])
    bind(t, fds[3], sin("127.0.0.1", 5555))
    listen(t, fds[3])
    connect(t, fds[5], sin("127.0.0.1", 5555))
    caplog.set_level(logging.ERROR, logger="cove.kernel")
    for i in range(1500):
        if i % 50 == 0:
            _junk(rng, t, list(t.files.files))
        name = rng.choice(CALLS)
        live = list(t.files.files) or [0]
        if name == "close" and len(live) < 6:
            continue
        args = [_arg(rng, live) for _ in range(6)]
        if name in ("socket", "socketpair"):
            args[0] = rng.choice([F.AF_UNIX, F.AF_INET, F.AF_INET6, F.AF_NETLINK, 99])
            args[1] = rng.choice([1, 2, 3, 5, 0x801, 0x80002, 99])
        else:
            args[0] = rng.choice(live)
        if name == "poll":
            args[1], args[2] = 1, 0
        r = call(t, name, *args)
        if t.state is State.BLOCKED:
            signals.send_task(t, F.SIGUSR1)  # end the sleep: EINTR or a count
            t.kernel._resume_blocked(t)
            r = t.ctx.regs.rax
            r = r - (1 << 64) if r & (1 << 63) else r
        t.pending.mask = 0
        t.proc.shared_pending.mask = 0
        t.restart_nr = None
        assert r != -E.ENOSYS, (name, args)
        assert not caplog.records, caplog.records[0].getMessage()
        if len(t.files.files) > 200:
            for fd in list(t.files.files)[12:]:
                call(t, "close", fd)
