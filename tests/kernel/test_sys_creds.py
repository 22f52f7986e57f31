"""get*id/set*id, groups and capabilities through the dispatcher."""

from __future__ import annotations

import struct

import pytest

from cove.abi.errno import E
from cove.kernel.syscalls.creds import CAP_FULL, CAP_V1, CAP_V3

from .harness import SCRATCH, call, make_kernel, put
from .sysutil import BAD, spawn, thread, u32s, user

NO = 0xFFFFFFFF


def unpriv(uid: int = 1000, gid: int = 1000):
    k, root = make_kernel()
    return k, spawn(k, root, user(uid, gid))


def ids(t):
    c = t.proc.creds
    return (c.ruid, c.euid, c.suid, c.fsuid)


def gids(t):
    c = t.proc.creds
    return (c.rgid, c.egid, c.sgid, c.fsgid)


def test_queries():
    _k, t = unpriv()
    c = t.proc.creds
    c.ruid, c.euid, c.suid, c.rgid, c.egid, c.sgid = 1, 2, 3, 4, 5, 6
    assert (call(t, "getuid"), call(t, "geteuid"), call(t, "getgid"), call(t, "getegid")) == (
        1, 2, 4, 5)
    assert call(t, "getresuid", SCRATCH, SCRATCH + 4, SCRATCH + 8) == 0
    assert u32s(t, SCRATCH, 3) == (1, 2, 3)
    assert call(t, "getresgid", SCRATCH, SCRATCH + 4, SCRATCH + 8) == 0
    assert u32s(t, SCRATCH, 3) == (4, 5, 6)
    assert call(t, "getresuid", SCRATCH, BAD, SCRATCH) == -E.EFAULT


def test_root_setuid_sets_all_and_drops_privilege():
    _, t = make_kernel()
    assert call(t, "setuid", 1000) == 0
    assert ids(t) == (1000, 1000, 1000, 1000)
    assert t.fs.cred.uid == 1000  # the VFS sees the new fsuid
    assert call(t, "setuid", 0) == -E.EPERM  # no way back
    assert call(t, "setuid", NO) == -E.EINVAL


def test_unprivileged_setuid_only_to_real_or_saved():
    _, t = unpriv()
    c = t.proc.creds
    c.ruid, c.euid, c.suid = 1000, 1001, 1002
    assert call(t, "setuid", 1002) == 0
    assert ids(t) == (1000, 1002, 1002, 1002)
    assert call(t, "setuid", 1001) == -E.EPERM
    assert call(t, "setuid", 1000) == 0
    assert ids(t) == (1000, 1000, 1002, 1000)


def test_seteuid_dance_keeps_saved_root():
    _, t = make_kernel()
    # seteuid(1000) as glibc does it: setresuid(-1, 1000, -1)
    assert call(t, "setresuid", NO, 1000, NO) == 0
    assert ids(t) == (0, 1000, 0, 1000)
    assert call(t, "setuid", 5) == -E.EPERM  # not capable now, 5 is none of r/s
    assert call(t, "setresuid", NO, 0, NO) == 0  # back: 0 is the real and saved uid
    assert ids(t) == (0, 0, 0, 0)


def test_setreuid_rules():
    _, t = unpriv()
    c = t.proc.creds
    c.ruid, c.euid, c.suid = 1000, 1001, 1002
    assert call(t, "setreuid", 1002, NO) == -E.EPERM  # ruid only from r/e
    assert call(t, "setreuid", NO, 7) == -E.EPERM
    # swap real and effective: saved follows the new effective
    assert call(t, "setreuid", 1001, 1000) == 0
    assert ids(t) == (1001, 1000, 1000, 1000)
    # effective set to the old real uid only: saved unchanged
    c = t.proc.creds
    c.ruid, c.euid, c.suid = 1000, 1001, 1002
    assert call(t, "setreuid", NO, 1000) == 0
    assert ids(t) == (1000, 1000, 1002, 1000)
    assert call(t, "setreuid", NO, 1002) == 0  # not the old real uid: saved follows
    assert ids(t) == (1000, 1002, 1002, 1002)


def test_setresuid_and_setfsuid():
    _, t = unpriv()
    c = t.proc.creds
    c.ruid, c.euid, c.suid, c.fsuid = 10, 11, 12, 11
    assert call(t, "setresuid", 12, 10, 11) == 0
    assert ids(t) == (12, 10, 11, 10)
    assert call(t, "setresuid", 13, NO, NO) == -E.EPERM
    assert ids(t) == (12, 10, 11, 10)
    # setfsuid returns the old value whether or not it changes anything
    assert call(t, "setfsuid", 11) == 10
    assert t.proc.creds.fsuid == 11 and t.fs.cred.uid == 11
    assert call(t, "setfsuid", 99) == 11
    assert t.proc.creds.fsuid == 11
    assert call(t, "setfsuid", NO) == 11


def test_gid_calls():
    _, t = unpriv(1000, 100)
    c = t.proc.creds
    c.rgid, c.egid, c.sgid = 100, 101, 102
    assert call(t, "setgid", 5) == -E.EPERM
    assert call(t, "setgid", 102) == 0
    assert gids(t) == (100, 102, 102, 102)
    assert t.fs.cred.gid == 102
    assert call(t, "setregid", 102, 100) == 0
    assert gids(t) == (102, 100, 100, 100)
    assert call(t, "setresgid", 7, NO, NO) == -E.EPERM
    assert call(t, "setresgid", NO, 102, NO) == 0
    assert call(t, "setfsgid", 100) == 102
    assert t.proc.creds.fsgid == 100 and t.fs.cred.gid == 100
    assert call(t, "setgid", NO) == -E.EINVAL
    _, r = make_kernel()
    assert call(r, "setgid", 50) == 0
    assert gids(r) == (50, 50, 50, 50)
    assert ids(r) == (0, 0, 0, 0)  # root keeps its uid, so it may still change gids
    assert call(r, "setregid", 1, 2) == 0
    assert gids(r) == (1, 2, 2, 2)


def test_groups():
    k, t = make_kernel()
    addr = put(t, struct.pack("<3I", 30, 10, 20))
    assert call(t, "setgroups", 3, addr) == 0
    assert t.proc.creds.groups == (10, 20, 30)
    assert t.fs.cred.groups == (10, 20, 30)
    assert call(t, "getgroups", 0, 0) == 3  # size 0: just the count
    assert call(t, "getgroups", 2, SCRATCH + 64) == -E.EINVAL
    assert call(t, "getgroups", -1, SCRATCH + 64) == -E.EINVAL
    assert call(t, "getgroups", 8, SCRATCH + 64) == 3
    assert u32s(t, SCRATCH + 64, 3) == (10, 20, 30)
    assert call(t, "getgroups", 3, BAD) == -E.EFAULT
    assert call(t, "setgroups", 1, BAD) == -E.EFAULT
    assert call(t, "setgroups", 65537, addr) == -E.EINVAL
    assert call(t, "setgroups", 0, 0) == 0
    assert t.proc.creds.groups == ()
    u = spawn(k, t, user(5))
    assert call(u, "setgroups", 0, 0) == -E.EPERM


def test_every_thread_sees_new_fs_cred():
    k, t = make_kernel()
    t.fs = t.fs.fork()  # a thread with its own fs context (no CLONE_FS)
    t2 = thread(k, t)
    t2.fs = t.fs.fork()
    assert call(t2, "setresuid", 7, 7, 7) == 0
    assert t.fs.cred.uid == 7 and t2.fs.cred.uid == 7
    assert call(t, "getuid") == 7


def _cap_hdr(t, version, pid=0):
    return put(t, struct.pack("<Ii", version, pid), 0x800)


def test_capget():
    k, t = make_kernel()
    hdr = _cap_hdr(t, CAP_V3)
    assert call(t, "capget", hdr, SCRATCH) == 0
    e0, p0, i0, e1, p1, i1 = u32s(t, SCRATCH, 6)
    assert (e1 << 32 | e0) == CAP_FULL and (p1 << 32 | p0) == CAP_FULL and i0 == i1 == 0
    hdr = _cap_hdr(t, CAP_V1)
    assert call(t, "capget", hdr, SCRATCH) == 0
    # unknown version: EINVAL and the preferred version written back
    hdr = _cap_hdr(t, 0x1234)
    assert call(t, "capget", hdr, SCRATCH) == -E.EINVAL
    assert u32s(t, hdr, 1) == (CAP_V3,)
    hdr = _cap_hdr(t, 0x1234)
    assert call(t, "capget", hdr, 0) == 0  # probing with NULL data
    u = spawn(k, t, user(1000))
    hdr = _cap_hdr(t, CAP_V3, u.pid)
    assert call(t, "capget", hdr, SCRATCH) == 0
    assert u32s(t, SCRATCH, 6) == (0,) * 6
    assert call(t, "capget", _cap_hdr(t, CAP_V3, 4242), SCRATCH) == -E.ESRCH
    assert call(t, "capget", _cap_hdr(t, CAP_V3, -3), SCRATCH) == -E.EINVAL
    assert call(t, "capget", BAD, SCRATCH) == -E.EFAULT


def test_capset():
    _, t = make_kernel()
    lo, hi = CAP_FULL & 0xFFFFFFFF, CAP_FULL >> 32
    same = put(t, struct.pack("<6I", lo, lo, 0, hi, hi, 0), 0x100)
    assert call(t, "capset", _cap_hdr(t, CAP_V3), same) == 0
    drop = put(t, struct.pack("<6I", 0, lo, 0, 0, hi, 0), 0x200)
    assert call(t, "capset", _cap_hdr(t, CAP_V3), drop) == -E.EPERM  # cannot be honoured
    assert call(t, "capset", _cap_hdr(t, CAP_V3, 999), same) == -E.EPERM
    assert call(t, "capset", _cap_hdr(t, 1), same) == -E.EINVAL
    _, u = unpriv()
    raise_ = put(u, struct.pack("<6I", 1, 1, 0, 0, 0, 0), 0x100)
    assert call(u, "capset", _cap_hdr(u, CAP_V3), raise_) == -E.EPERM
    none = put(u, bytes(24), 0x200)
    assert call(u, "capset", _cap_hdr(u, CAP_V3), none) == 0


@pytest.mark.parametrize("name", ["setuid", "setgid", "setfsuid", "setfsgid"])
def test_unchanged_creds_on_failure(name):
    _, t = unpriv()
    before = t.proc.creds.copy()
    call(t, name, 4242)
    assert t.proc.creds == before
