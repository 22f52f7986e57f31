"""prlimit64/getrlimit/setrlimit and getrusage through the dispatcher."""

from __future__ import annotations

import struct

import pytest

from cove.abi import flags as F
from cove.abi.errno import E, Errno
from cove.abi.structs import RUSAGE
from cove.fs.file import File
from cove.kernel.syscalls.limits import rlimit

from .harness import SCRATCH, call, make_kernel, put
from .sysutil import BAD, spawn, user

INF = F.RLIM_INFINITY


def lim(t, addr=SCRATCH):
    return struct.unpack("<QQ", t.mm.read(addr, 16))


def put_lim(t, cur, hard, off=0x400):
    return put(t, struct.pack("<QQ", cur, hard), off)


@pytest.mark.parametrize("res, expect", [
    (F.RLIMIT_NOFILE, (1024, 1 << 20)),
    (F.RLIMIT_STACK, (8 << 20, INF)),
    (F.RLIMIT_CORE, (0, INF)),
    (F.RLIMIT_AS, (INF, INF)),
    (F.RLIMIT_NPROC, (256, 256)),  # max_threads / 2 for 64 MiB of guest memory
    (F.RLIMIT_MEMLOCK, (8 << 20, 8 << 20)),
    (F.RLIMIT_NICE, (0, 0)),
])
def test_defaults(res, expect):
    _, t = make_kernel()
    assert call(t, "getrlimit", res, SCRATCH) == 0
    assert lim(t) == expect
    assert call(t, "prlimit64", 0, res, 0, SCRATCH + 32) == 0
    assert lim(t, SCRATCH + 32) == expect


def test_errors():
    _k, t = make_kernel()
    assert call(t, "getrlimit", 16, SCRATCH) == -E.EINVAL
    assert call(t, "getrlimit", -1, SCRATCH) == -E.EINVAL
    assert call(t, "getrlimit", F.RLIMIT_CORE, BAD) == -E.EFAULT
    assert call(t, "setrlimit", F.RLIMIT_CORE, BAD) == -E.EFAULT
    assert call(t, "setrlimit", F.RLIMIT_CORE, put_lim(t, 5, 4)) == -E.EINVAL
    assert call(t, "setrlimit", 16, put_lim(t, 1, 1)) == -E.EINVAL
    assert call(t, "setrlimit", F.RLIMIT_NOFILE, put_lim(t, 10, (1 << 20) + 1)) == -E.EPERM
    assert call(t, "prlimit64", 999, F.RLIMIT_CORE, 0, SCRATCH) == -E.ESRCH
    assert call(t, "prlimit64", 0, F.RLIMIT_CORE, BAD, SCRATCH) == -E.EFAULT
    assert call(t, "prlimit64", 0, 16, 0, SCRATCH) == -E.EINVAL
    # EFAULT on the old value comes after the new one is installed, as on Linux
    assert call(t, "prlimit64", 0, F.RLIMIT_CORE, put_lim(t, 3, 3), BAD) == -E.EFAULT
    assert rlimit(t.proc, F.RLIMIT_CORE) == (3, 3)


def test_unprivileged_may_lower_but_not_raise_hard():
    k, t = make_kernel()
    u = spawn(k, t, user(1000))
    assert call(u, "setrlimit", F.RLIMIT_CORE, put_lim(u, 0, 100)) == 0
    assert call(u, "setrlimit", F.RLIMIT_CORE, put_lim(u, 100, 100)) == 0  # soft up to hard
    assert call(u, "setrlimit", F.RLIMIT_CORE, put_lim(u, 100, 101)) == -E.EPERM
    assert rlimit(u.proc, F.RLIMIT_CORE) == (100, 100)
    assert call(t, "prlimit64", u.pid, F.RLIMIT_CORE, put_lim(t, 5, 500), SCRATCH) == 0
    assert lim(t) == (100, 100)  # old value reported
    assert rlimit(u.proc, F.RLIMIT_CORE) == (5, 500)  # root raised it


def test_prlimit_other_process_permission():
    k, t = make_kernel()
    a = spawn(k, t, user(1000))
    b = spawn(k, t, user(1000))
    c = spawn(k, t, user(1001))
    assert call(a, "prlimit64", b.pid, F.RLIMIT_CORE, 0, SCRATCH) == 0
    assert call(a, "prlimit64", c.pid, F.RLIMIT_CORE, 0, SCRATCH) == -E.EPERM
    cr = b.proc.creds
    cr.suid = 0  # a set-uid program: no longer "the same user"
    assert call(a, "prlimit64", b.pid, F.RLIMIT_CORE, 0, SCRATCH) == -E.EPERM


def test_nofile_limits_the_fd_table():
    _, t = make_kernel()
    assert call(t, "setrlimit", F.RLIMIT_NOFILE, put_lim(t, 3, 10)) == 0
    assert t.files.limit == 3
    f = File(0)
    for _ in range(3):
        t.files.install(f)
    with pytest.raises(Errno) as ei:
        t.files.install(f)
    assert ei.value.errno == E.EMFILE
    assert call(t, "getrlimit", F.RLIMIT_NOFILE, SCRATCH) == 0
    assert lim(t) == (3, 10)


def test_getrusage():
    _k, t = make_kernel()
    p = t.proc
    p.user_time, p.sys_time = 1.25, 0.5
    t.utime, t.stime = 0.75, 0.125
    p.child_user_time, p.child_sys_time, p.child_maxrss = 3.0, 2.0, 4096
    t.mm.mmap(0x20000000, 40 * 4096, 3, F.MAP_PRIVATE | F.MAP_ANONYMOUS | F.MAP_FIXED
              | F.MAP_POPULATE)
    assert call(t, "getrusage", F.RUSAGE_SELF, SCRATCH) == 0
    ru = RUSAGE.read(t.mm.read(SCRATCH, RUSAGE.size))
    assert (ru.ru_utime_tv_sec, ru.ru_utime_tv_usec) == (1, 250000)
    assert (ru.ru_stime_tv_sec, ru.ru_stime_tv_usec) == (0, 500000)
    assert ru.ru_maxrss >= 40 * 4
    assert call(t, "getrusage", F.RUSAGE_THREAD, SCRATCH) == 0
    ru = RUSAGE.read(t.mm.read(SCRATCH, RUSAGE.size))
    assert (ru.ru_utime_tv_usec, ru.ru_stime_tv_usec) == (750000, 125000)
    assert call(t, "getrusage", F.RUSAGE_CHILDREN, SCRATCH) == 0
    ru = RUSAGE.read(t.mm.read(SCRATCH, RUSAGE.size))
    assert (ru.ru_utime_tv_sec, ru.ru_stime_tv_sec, ru.ru_maxrss) == (3, 2, 4096)
    assert call(t, "getrusage", 2, SCRATCH) == -E.EINVAL
    assert call(t, "getrusage", F.RUSAGE_SELF, BAD) == -E.EFAULT


def test_children_usage_comes_from_reaped_children():
    k, t = make_kernel()
    c = spawn(k, t)
    c.proc.user_time, c.proc.sys_time = 2.0, 1.0
    c.mm.mmap(0x20000000, 10 * 4096, 3, F.MAP_PRIVATE | F.MAP_ANONYMOUS | F.MAP_FIXED
              | F.MAP_POPULATE)
    call(c, "exit_group", 0)
    assert c.proc.maxrss >= 10 * 4  # recorded before its memory went away
    k.reap(c.proc)
    assert call(t, "getrusage", F.RUSAGE_CHILDREN, SCRATCH) == 0
    ru = RUSAGE.read(t.mm.read(SCRATCH, RUSAGE.size))
    assert (ru.ru_utime_tv_sec, ru.ru_stime_tv_sec) == (2, 1)
    assert ru.ru_maxrss >= 40
