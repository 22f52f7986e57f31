"""Readiness of sockets for poll/select/epoll: the masks Linux reports in each
state, sleeping pollers woken by connects, data, room and hang-ups, and
edge-triggered epoll on sockets."""

from __future__ import annotations

import struct

import pytest

from cove.abi import flags as F

from .harness import make_kernel
from .iohelp import is_blocked, process, resume, sc
from .nethelp import (
    accept,
    bind,
    connect,
    events,
    listen,
    pair,
    recv,
    send,
    sin,
    sock,
    stage,
    sun,
)

pytestmark = pytest.mark.timeout(20)
IN, OUT, HUP, ERR, RDHUP = F.POLLIN, F.POLLOUT, F.POLLHUP, F.POLLERR, F.POLLRDHUP
RDN, WRN, WRB = F.POLLRDNORM, F.POLLWRNORM, F.POLLWRBAND


def test_masks_of_fresh_sockets_match_linux():
    _, t = make_kernel()
    assert events(t, sock(t)) == OUT | HUP | WRN | WRB
    assert events(t, sock(t, F.AF_UNIX, F.SOCK_DGRAM)) == OUT | WRN | WRB
    assert events(t, sock(t, F.AF_UNIX, F.SOCK_SEQPACKET)) == OUT | HUP | WRN | WRB
    assert events(t, sock(t, F.AF_INET)) == OUT | HUP | WRN
    assert events(t, sock(t, F.AF_INET, F.SOCK_DGRAM)) == OUT | WRN | WRB
    a, b = pair(t)
    assert events(t, a) == OUT | WRN | WRB
    assert send(t, b, b"x") == 1
    assert events(t, a) == IN | RDN | OUT | WRN | WRB


def test_listener_masks():
    _, t = make_kernel()
    srv = sock(t, F.AF_INET)
    assert bind(t, srv, sin("127.0.0.1", 0)) == 0 and listen(t, srv) == 0
    assert events(t, srv) == 0
    usrv = sock(t)
    assert bind(t, usrv, sun(b"\0l")) == 0 and listen(t, usrv) == 0
    assert events(t, usrv) == 0
    assert connect(t, sock(t), sun(b"\0l")) == 0
    assert events(t, usrv) == IN | RDN


def test_tcp_masks_through_a_connection():
    _, t = make_kernel()
    srv = sock(t, F.AF_INET)
    assert bind(t, srv, sin("127.0.0.1", 7400)) == 0 and listen(t, srv) == 0
    c = sock(t, F.AF_INET)
    assert connect(t, c, sin("127.0.0.1", 7400)) == 0
    assert events(t, srv) == IN | RDN
    got = accept(t, srv)
    assert isinstance(got, tuple)
    s = got[0]
    assert events(t, c) == OUT | WRN
    assert sc(t, "close", s) == 0
    assert events(t, c) == IN | RDN | OUT | WRN | RDHUP
    assert send(t, c, b"x") == 1
    assert events(t, c) == IN | RDN | OUT | WRN | RDHUP | ERR | HUP


def test_unix_masks_after_shutdowns_and_close():
    _, t = make_kernel()
    a, b = pair(t)
    assert sc(t, "shutdown", b, F.SHUT_WR) == 0
    assert events(t, a) == IN | RDN | OUT | WRN | WRB | RDHUP
    assert events(t, b) == OUT | WRN | WRB
    c, d = pair(t)
    assert send(t, d, b"x") == 1
    assert sc(t, "close", c) == 0
    assert events(t, d) == IN | RDN | OUT | WRN | WRB | RDHUP | HUP | ERR


def test_poll_sleeps_until_a_connection_arrives():
    k, t = make_kernel()
    srv = sock(t)
    assert bind(t, srv, sun(b"/p")) == 0 and listen(t, srv) == 0
    pfd = stage(t, struct.pack("<ihh", srv, IN, 0))
    assert sc(t, "poll", pfd, 1, -1) is None and is_blocked(t)
    child = process(k, t)
    assert connect(child, sock(child), sun(b"/p")) == 0
    assert resume(t) == 1
    assert struct.unpack("<ihh", t.mm.read(pfd, 8))[2] == IN  # what was asked for


def test_poll_wakes_for_room_to_write():
    k, t = make_kernel()
    a, b = pair(t)
    t.files.get(a).flags |= F.O_NONBLOCK
    while send(t, a, b"z" * 8192) != -11:
        pass
    pfd = stage(t, struct.pack("<ihh", a, OUT, 0))
    assert sc(t, "poll", pfd, 1, -1) is None
    other = process(k, t)
    assert isinstance(recv(other, b, 1 << 18), bytes)
    assert resume(t) == 1


def _epoll(t, fd: int, ev: int) -> int:
    ep = sc(t, "epoll_create1", 0)
    assert ep is not None and ep >= 0
    assert sc(t, "epoll_ctl", ep, F.EPOLL_CTL_ADD, fd, stage(t, struct.pack("<IQ", ev, fd))) == 0
    return ep


def _wait(t, ep: int, timeout: int = 0) -> list[tuple[int, int]] | None:
    out = stage(t, size=12 * 4)
    n = sc(t, "epoll_wait", ep, out, 4, timeout)
    if n is None:
        return None
    raw = t.mm.read(out, 12 * n)
    return [struct.unpack_from("<IQ", raw, 12 * i) for i in range(n)]


def test_epoll_edge_triggered_on_a_socket():
    _, t = make_kernel()
    a, b = pair(t)
    ep = _epoll(t, b, F.EPOLLIN | F.EPOLLET)
    assert _wait(t, ep) == []
    assert send(t, a, b"one") == 3
    assert _wait(t, ep) == [(F.EPOLLIN, b)]
    assert _wait(t, ep) == []  # no new edge
    assert send(t, a, b"two") == 3
    assert _wait(t, ep) == [(F.EPOLLIN, b)]
    assert recv(t, b) == b"onetwo"
    lt = _epoll(t, b, F.EPOLLIN)
    assert _wait(t, lt) == []
    assert sc(t, "close", a) == 0
    assert _wait(t, lt) == [(F.EPOLLIN | F.EPOLLHUP, b)]


def test_epoll_wait_sleeps_until_data():
    k, t = make_kernel()
    a, b = pair(t, F.SOCK_DGRAM)
    ep = _epoll(t, b, F.EPOLLIN)
    assert _wait(t, ep, -1) is None and is_blocked(t)
    other = process(k, t)
    assert send(other, a, b"wake") == 4
    assert resume(t) == 1


def test_dgram_writability_follows_the_receivers_queue():
    _, t = make_kernel()
    srv = sock(t, F.AF_UNIX, F.SOCK_DGRAM)
    assert bind(t, srv, sun(b"/q")) == 0
    c = sock(t, F.AF_UNIX, F.SOCK_DGRAM)
    assert connect(t, c, sun(b"/q")) == 0
    for _ in range(11):
        assert send(t, c, b"m") == 1
    assert not events(t, c) & OUT  # the receiver's queue is full
    ep = _epoll(t, c, F.EPOLLOUT | F.EPOLLET)
    assert _wait(t, ep) == []
    assert recv(t, srv) == b"m"
    assert _wait(t, ep) == [(F.EPOLLOUT, c)]
