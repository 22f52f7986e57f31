"""sendmsg/recvmsg/sendmmsg/recvmmsg: iovecs, names, msg_flags, and the
control messages (SCM_RIGHTS fd passing with its truncation rules,
SCM_CREDENTIALS) — through the real dispatcher, Linux's answers."""

from __future__ import annotations

import struct

import pytest

from cove.abi import flags as F
from cove.abi.errno import E
from cove.abi.structs import MSGHDR, UCRED
from cove.kernel.pipe import PipeFile

from .harness import call, make_kernel
from .iohelp import is_blocked, mkpipe, process, rd, resume, wr
from .nethelp import (
    Got,
    bind,
    cmsg,
    connect,
    mmsghdrs,
    msg_len,
    msghdr,
    pair,
    recv,
    recvmsg,
    rights,
    send,
    sendmsg,
    setopt,
    sin,
    sock,
    stage,
    sun,
)

pytestmark = pytest.mark.timeout(20)


def test_iovecs_both_ways():
    _, t = make_kernel()
    a, b = pair(t)
    assert sendmsg(t, a, [b"ab", b"", b"cdef"]) == 6
    got = recvmsg(t, b, [1, 3, 10])
    assert isinstance(got, Got) and got.result == 6 and got.data == b"abcdef"
    assert got.flags == 0 and got.control == b""


def test_msghdr_checks():
    _, t = make_kernel()
    a, _ = pair(t)
    hdr = bytearray(msghdr(t, [b"x"]))
    struct.pack_into("<Q", hdr, MSGHDR.offsets["msg_iovlen"], 1025)
    assert call(t, "sendmsg", a, stage(t, bytes(hdr)), 0) == -E.EMSGSIZE
    hdr = bytearray(msghdr(t, [b"x"], name=sun(b"\0x")))
    struct.pack_into("<i", hdr, MSGHDR.offsets["msg_namelen"], -1)
    assert call(t, "sendmsg", a, stage(t, bytes(hdr)), 0) == -E.EINVAL
    hdr = bytearray(msghdr(t, [b"x"], control=rights(0)))
    struct.pack_into("<Q", hdr, MSGHDR.offsets["msg_controllen"], 1 << 31)
    assert call(t, "sendmsg", a, stage(t, bytes(hdr)), 0) == -E.ENOBUFS
    assert call(t, "sendmsg", a, 0x1000, 0) == -E.EFAULT
    assert call(t, "recvmsg", a, 0x1000, 0) == -E.EFAULT
    bad = msghdr(t, [b"x"])
    hdr = bytearray(bad)
    struct.pack_into("<Q", hdr, MSGHDR.offsets["msg_iov"], 0x1000)
    assert call(t, "sendmsg", a, stage(t, bytes(hdr)), 0) == -E.EFAULT


def test_dgram_names_and_truncation_flags():
    _, t = make_kernel()
    srv = sock(t, F.AF_UNIX, F.SOCK_DGRAM)
    assert bind(t, srv, sun(b"/d")) == 0
    c = sock(t, F.AF_UNIX, F.SOCK_DGRAM)
    assert bind(t, c, sun(b"\0sender")) == 0
    assert sendmsg(t, c, [b"0123456789"], dest=sun(b"/d")) == 10
    got = recvmsg(t, srv, [4], name=128)
    assert isinstance(got, Got)
    assert got.result == 4 and got.data == b"0123" and got.flags == F.MSG_TRUNC
    assert got.name == sun(b"\0sender") and got.namelen == len(sun(b"\0sender"))
    assert sendmsg(t, c, [b"0123456789"], dest=sun(b"/d")) == 10
    got = recvmsg(t, srv, [4], name=3, flags=F.MSG_TRUNC)
    assert isinstance(got, Got) and got.result == 10  # MSG_TRUNC: the real length
    assert got.namelen == len(sun(b"\0sender"))  # the whole length, the name cut to 3
    # No msg_name: msg_namelen is left alone.
    assert sendmsg(t, c, [b"x"], dest=sun(b"/d")) == 1
    hdr = stage(t, msghdr(t, [8]))
    assert call(t, "recvmsg", srv, hdr, 0) == 1


def test_scm_rights_passes_a_pipe_across_processes():
    k, t = make_kernel()
    a, b = pair(t)
    r, w = mkpipe(t, at=0x100)
    child = process(k, t)
    assert sendmsg(t, a, [b"fd"], rights(w)) == 2
    call(t, "close", w)  # the description stays alive while in flight
    got = recvmsg(child, b, [8], control=64)
    assert isinstance(got, Got) and got.data == b"fd" and got.flags == 0
    (nfd,) = got.fds()
    assert isinstance(child.files.get(nfd), PipeFile)
    assert wr(child, nfd, b"through") == 7
    assert rd(t, r, 100) == b"through"
    assert got.cmsgs()[0][:2] == (F.SOL_SOCKET, F.SCM_RIGHTS)
    assert nfd not in child.files.cloexec


def test_scm_rights_truncation_and_cloexec():
    _, t = make_kernel()
    a, b = pair(t)
    r, w = mkpipe(t, at=0x100)
    assert sendmsg(t, a, [b"3"], rights(r, w, r)) == 1
    before = set(t.files.files)
    got = recvmsg(t, b, [8], control=24, flags=F.MSG_CMSG_CLOEXEC)  # room for two
    assert isinstance(got, Got) and got.flags == F.MSG_CTRUNC
    fds = got.fds()
    assert len(fds) == 2 and set(fds) <= t.files.cloexec
    assert set(t.files.files) - before == set(fds)
    assert len(got.control) == 24
    assert sendmsg(t, a, [b"1"], rights(r)) == 1
    got = recvmsg(t, b, [8], control=10)  # no room for even a header
    assert isinstance(got, Got) and got.flags == F.MSG_CTRUNC and got.control == b""
    assert sendmsg(t, a, [b"1"], rights(w)) == 1
    assert recv(t, b) == b"1"  # no control buffer: the passed file is closed
    assert set(t.files.files) - before == set(fds)


def test_files_in_flight_keep_the_pipe_open_until_received_or_dropped():
    _, t = make_kernel()
    a, b = pair(t)
    r, w = mkpipe(t, at=0x100)
    assert sendmsg(t, a, [b"x"], rights(w)) == 1
    call(t, "close", w)
    t.files.get(r).flags |= F.O_NONBLOCK
    assert rd(t, r, 1) == -E.EAGAIN  # a writer still exists (in flight): not EOF
    call(t, "close", b)  # the queue holding it goes
    assert rd(t, r, 1) == b""  # now the last writer is gone


def test_peek_duplicates_passed_files():
    _, t = make_kernel()
    a, b = pair(t)
    r, _w = mkpipe(t, at=0x100)
    assert sendmsg(t, a, [b"p"], rights(r)) == 1
    peeked = recvmsg(t, b, [8], control=32, flags=F.MSG_PEEK)
    got = recvmsg(t, b, [8], control=32)
    assert isinstance(peeked, Got) and isinstance(got, Got)
    assert len(peeked.fds()) == 1 and len(got.fds()) == 1 and peeked.fds() != got.fds()
    assert t.files.get(peeked.fds()[0]) is t.files.get(got.fds()[0]) is t.files.get(r)


def test_a_stream_read_stops_after_passed_files():
    _, t = make_kernel()
    a, b = pair(t)
    r, _ = mkpipe(t, at=0x100)
    assert send(t, a, b"ab") == 2
    assert sendmsg(t, a, [b"cd"], rights(r)) == 2
    assert send(t, a, b"ef") == 2
    got = recvmsg(t, b, [100], control=32)
    assert isinstance(got, Got) and got.data == b"abcd" and len(got.fds()) == 1
    got = recvmsg(t, b, [100], control=32)
    assert isinstance(got, Got) and got.data == b"ef" and got.fds() == []


def test_scm_rights_errors():
    _, t = make_kernel()
    a, _ = pair(t)
    assert sendmsg(t, a, [b"x"], rights(99)) == -E.EBADF
    assert sendmsg(t, a, [b"x"], cmsg(F.SOL_SOCKET, 99, b"1234")) == -E.EINVAL
    bad_len = struct.pack("<Qii", 200, F.SOL_SOCKET, F.SCM_RIGHTS) + bytes(8)
    assert sendmsg(t, a, [b"x"], bad_len) == -E.EINVAL
    assert sendmsg(t, a, [b"x"], rights(*([0] * 254))) == -E.EINVAL  # over SCM_MAX_FD
    assert sendmsg(t, a, [b"x"], cmsg(0, 1, b"1234")) == 1  # other levels: ignored
    udp = sock(t, F.AF_INET, F.SOCK_DGRAM)
    # On an inet socket SCM_RIGHTS is ignored, an unknown SOL_SOCKET type is not.
    dest = sin("127.0.0.1", 9)
    assert sendmsg(t, udp, [b"x"], rights(0), dest=dest) == 1
    assert sendmsg(t, udp, [b"x"], cmsg(F.SOL_SOCKET, 99, b"1234"), dest=dest) == -E.EINVAL


def test_scm_credentials():
    _, t = make_kernel()
    a, b = pair(t, F.SOCK_DGRAM)
    assert setopt(t, b, F.SOL_SOCKET, F.SO_PASSCRED, 1) == 0
    assert send(t, a, b"auto") == 4
    got = recvmsg(t, b, [8], control=64)
    assert isinstance(got, Got)
    assert got.cmsgs() == [(F.SOL_SOCKET, F.SCM_CREDENTIALS, UCRED.pack(t.pid, 0, 0))]
    creds = cmsg(F.SOL_SOCKET, F.SCM_CREDENTIALS, UCRED.pack(t.pid, 0, 0))
    assert sendmsg(t, a, [b"explicit"], creds) == 8
    got = recvmsg(t, b, [8], control=20)  # too small for the whole ucred: cut short
    assert isinstance(got, Got) and got.flags & F.MSG_CTRUNC and len(got.control) == 20
    assert sendmsg(t, a, [b"x"], cmsg(F.SOL_SOCKET, F.SCM_CREDENTIALS, b"1234")) == -E.EINVAL
    t.proc.creds.euid = t.proc.creds.ruid = t.proc.creds.suid = 1000
    t.proc.creds.egid = t.proc.creds.rgid = t.proc.creds.sgid = 1000
    lie = cmsg(F.SOL_SOCKET, F.SCM_CREDENTIALS, UCRED.pack(t.pid + 1, 1000, 1000))
    assert sendmsg(t, a, [b"x"], lie) == -E.EPERM
    lie = cmsg(F.SOL_SOCKET, F.SCM_CREDENTIALS, UCRED.pack(t.pid, 0, 1000))
    assert sendmsg(t, a, [b"x"], lie) == -E.EPERM
    # A message sent before SO_PASSCRED was on carries no credentials.
    c, d = pair(t)
    assert send(t, c, b"early") == 5
    assert setopt(t, d, F.SOL_SOCKET, F.SO_PASSCRED, 1) == 0
    assert send(t, c, b"late") == 4
    got = recvmsg(t, d, [100], control=64)
    assert isinstance(got, Got) and got.data == b"early"  # not glued to a different writer
    assert got.cmsgs()[0][2] == UCRED.pack(0, 65534, 65534)
    got = recvmsg(t, d, [100], control=64)
    assert isinstance(got, Got) and got.data == b"late"
    assert got.cmsgs()[0][2] == UCRED.pack(t.pid, 1000, 1000)


def test_sendmmsg_and_recvmmsg():
    _, t = make_kernel()
    a, b = pair(t, F.SOCK_DGRAM)
    vec = mmsghdrs(t, [msghdr(t, [b"one"]), msghdr(t, [b"two", b"!"]), msghdr(t, [b""])])
    assert call(t, "sendmmsg", a, vec, 3, 0) == 3
    assert [msg_len(t, vec, i) for i in range(3)] == [3, 4, 0]
    rvec = mmsghdrs(t, [msghdr(t, [2]), msghdr(t, [16]), msghdr(t, [16]), msghdr(t, [16])])
    assert call(t, "recvmmsg", b, rvec, 4, F.MSG_WAITFORONE, 0) == 3
    assert [msg_len(t, rvec, i) for i in range(3)] == [2, 4, 0]
    first = Got(t, 2, rvec)
    assert first.data == b"on" and first.flags == F.MSG_TRUNC
    assert call(t, "recvmmsg", b, rvec, 4, F.MSG_DONTWAIT, 0) == -E.EAGAIN
    assert call(t, "recvmmsg", b, rvec, 1, 0, stage(t, struct.pack("<qq", 0, 10**9))) \
        == -E.EINVAL
    assert call(t, "sendmmsg", a, 0x1000, 1, 0) == -E.EFAULT
    # An error after some messages: the count so far.
    c = sock(t, F.AF_UNIX, F.SOCK_DGRAM)
    assert bind(t, c, sun(b"/c")) == 0
    vec = mmsghdrs(t, [msghdr(t, [b"ok"], name=sun(b"/c")),
                       msghdr(t, [b"no"], name=sun(b"/missing"))])
    assert call(t, "sendmmsg", c, vec, 2, 0) == 1


def test_blocking_recvmmsg_waits_for_all_unless_waitforone():
    k, t = make_kernel()
    a, b = pair(t, F.SOCK_DGRAM)
    other = process(k, t)
    assert send(other, a, b"1") == 1
    rvec = mmsghdrs(t, [msghdr(t, [8]), msghdr(t, [8])])
    assert call(t, "recvmmsg", b, rvec, 2, 0, 0) is not None
    assert is_blocked(t)  # one came, the call waits for the second
    assert send(other, a, b"2") == 1
    assert resume(t) == 2
    assert [Got(t, 1, rvec).data, msg_len(t, rvec, 1)] == [b"1", 1]


def test_connected_stream_with_a_name_in_sendmsg():
    _, t = make_kernel()
    a, _ = pair(t)
    assert sendmsg(t, a, [b"x"], dest=sun(b"/x")) == -E.EISCONN
    tcp = sock(t, F.AF_INET)
    srv = sock(t, F.AF_INET)
    assert bind(t, srv, sin("127.0.0.1", 7300)) == 0
    assert call(t, "listen", srv, 1) == 0
    assert connect(t, tcp, sin("127.0.0.1", 7300)) == 0
    assert sendmsg(t, tcp, [b"x"], dest=sun(b"/ignored")) == 1  # TCP ignores msg_name
