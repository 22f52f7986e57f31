"""exit, pids, uname, sysinfo, getrandom, personality, robust lists, prctl,
arch_prctl, scheduling information and nice values, through the dispatcher."""

from __future__ import annotations

import struct

from cove.abi import flags as F
from cove.abi.errno import E
from cove.abi.structs import SCHED_PARAM, SYSINFO, UTSNAME
from cove.kernel.syscalls.proc_info import GETRANDOM_MAX, fork_inherit
from cove.kernel.task import State

from .harness import SCRATCH, call, make_kernel, put
from .sysutil import BAD, s32, spawn, thread, u32s, u64, user


# --- exit -----------------------------------------------------------------------------
def test_exit_ends_one_thread_then_the_process():
    k, t = make_kernel()
    t2 = thread(k, t)
    call(t2, "exit", 5)
    assert t2.state is State.DEAD and t.proc.alive
    assert t2.tid not in k.tasks
    call(t, "exit", 7)
    assert t.proc.exit_code == 7 << 8


def test_exit_group_status_and_noreturn():
    k, t = make_kernel()
    c = spawn(k, t)
    thread(k, c)
    nr = c.ctx.regs.rax = 0
    call(c, "exit_group", 0x1FF)  # only the low 8 bits count
    assert c.proc.exit_code == 0xFF << 8
    assert not c.proc.threads
    assert c.ctx.regs.rax != -1 and nr == 0  # NORETURN: rax left as the handler set it


# --- ids ------------------------------------------------------------------------------
def test_pids_are_the_sandboxs():
    k, t = make_kernel()
    assert call(t, "getpid") == t.pid == 1
    assert call(t, "getppid") == 0  # init's parent
    assert call(t, "gettid") == t.tid
    c = spawn(k, t)
    c2 = thread(k, c)
    assert call(c, "getppid") == 1
    assert call(c2, "getpid") == c.pid and call(c2, "gettid") == c2.tid != c.pid


def test_pgid_and_sid():
    k, t = make_kernel()
    c = spawn(k, t)
    c.proc.pgid, c.proc.sid = 40, 41
    c2 = thread(k, c)
    assert call(t, "getpgrp") == 1
    assert call(t, "getpgid", 0) == 1
    assert call(t, "getpgid", c.pid) == 40
    assert call(t, "getpgid", c2.tid) == 40  # a thread id names its process
    assert call(t, "getsid", c.pid) == 41
    assert call(t, "getsid", 0) == 1
    assert call(t, "getpgid", 999) == -E.ESRCH
    assert call(t, "getsid", -5) == -E.ESRCH
    call(c, "exit_group", 0)
    assert call(t, "getpgid", c.pid) == 40  # a zombie still has its group


# --- uname, hostname, sysinfo ------------------------------------------------------
def _uts(t):
    fields = UTSNAME.unpack_from(t.mm.read(SCRATCH, UTSNAME.size))
    return [f.rstrip(b"\0").decode() for f in fields]


def test_uname():
    k, t = make_kernel()
    assert call(t, "uname", SCRATCH) == 0
    sysname, node, release, version, machine, domain = _uts(t)
    assert (sysname, node, machine, domain) == ("Linux", k.hostname, "x86_64", "(none)")
    assert release.startswith("6.") and "cove" in version
    assert call(t, "uname", BAD) == -E.EFAULT
    call(t, "personality", 0x0008)  # PER_LINUX32
    call(t, "uname", SCRATCH)
    assert _uts(t)[4] == "i686"


def test_sethostname():
    k, t = make_kernel()
    name = put(t, b"box.example", 0x400)
    assert call(t, "sethostname", name, 3) == 0
    assert k.hostname == "box"
    call(t, "uname", SCRATCH)
    assert _uts(t)[1] == "box"
    assert call(t, "sethostname", name, 65) == -E.EINVAL
    assert call(t, "sethostname", name, -1) == -E.EINVAL
    assert call(t, "sethostname", BAD, 4) == -E.EFAULT
    u = spawn(k, t, user(1000))
    assert call(u, "sethostname", SCRATCH, 3) == -E.EPERM
    assert k.hostname == "box"


def test_sysinfo_reports_the_sandbox():
    k, t = make_kernel()
    spawn(k, t)
    assert call(t, "sysinfo", SCRATCH) == 0
    si = SYSINFO.read(t.mm.read(SCRATCH, SYSINFO.size))
    assert si.totalram == k.phys.size == 64 << 20
    assert si.mem_unit == 1 and si.procs == 2
    assert 0 < si.freeram <= si.totalram
    assert 0 <= si.uptime < 60
    call(t, "sysinfo", SCRATCH)  # the first write above faulted in a scratch page
    before = SYSINFO.read(t.mm.read(SCRATCH, SYSINFO.size)).freeram
    t.mm.mmap(0x20000000, 32 * 4096, 3, F.MAP_PRIVATE | F.MAP_ANONYMOUS | F.MAP_FIXED
              | F.MAP_POPULATE)
    call(t, "sysinfo", SCRATCH)
    assert SYSINFO.read(t.mm.read(SCRATCH, SYSINFO.size)).freeram == before - 32 * 4096
    assert call(t, "sysinfo", BAD) == -E.EFAULT


# --- getrandom --------------------------------------------------------------------
def test_getrandom():
    _, t = make_kernel()
    assert call(t, "getrandom", SCRATCH, 64, 0) == 64
    a = t.mm.read(SCRATCH, 64)
    assert call(t, "getrandom", SCRATCH, 64, 1 | 2) == 64
    assert t.mm.read(SCRATCH, 64) != a and a != bytes(64)
    assert call(t, "getrandom", SCRATCH, 16, 4) == 16  # GRND_INSECURE
    assert call(t, "getrandom", SCRATCH, 16, 8) == -E.EINVAL
    assert call(t, "getrandom", SCRATCH, 16, 2 | 4) == -E.EINVAL
    assert call(t, "getrandom", BAD, 16, 0) == -E.EFAULT
    assert call(t, "getrandom", SCRATCH, 0, 0) == 0


def test_getrandom_partial_before_a_hole():
    _, t = make_kernel()
    end = SCRATCH + (1 << 20)  # the scratch area ends here; nothing after it
    assert call(t, "getrandom", end - 100, 300, 0) == 100


def test_getrandom_caps_one_call():
    _, t = make_kernel()
    t.mm.mmap(0x30000000, GETRANDOM_MAX + 8192, 3, F.MAP_PRIVATE | F.MAP_ANONYMOUS | F.MAP_FIXED)
    assert call(t, "getrandom", 0x30000000, GETRANDOM_MAX + 8192, 0) == GETRANDOM_MAX


# --- personality, tid address, robust lists, rseq -----------------------------------
def test_personality():
    _, t = make_kernel()
    assert call(t, "personality", 0xFFFFFFFF) == 0
    assert call(t, "personality", 0x0040000) == 0  # ADDR_NO_RANDOMIZE
    assert call(t, "personality", 0xFFFFFFFF) == 0x0040000


def test_set_tid_address():
    _, t = make_kernel()
    assert call(t, "set_tid_address", SCRATCH + 8) == t.tid
    assert t.clear_child_tid == SCRATCH + 8


def test_robust_list():
    k, t = make_kernel()
    assert call(t, "set_robust_list", SCRATCH + 64, 16) == -E.EINVAL
    assert call(t, "set_robust_list", SCRATCH + 64, 24) == 0
    assert call(t, "get_robust_list", 0, SCRATCH, SCRATCH + 8) == 0
    assert (u64(t, SCRATCH), u64(t, SCRATCH + 8)) == (SCRATCH + 64, 24)
    assert call(t, "get_robust_list", 999, SCRATCH, SCRATCH + 8) == -E.ESRCH
    assert call(t, "get_robust_list", 0, BAD, SCRATCH + 8) == -E.EFAULT
    u = spawn(k, t, user(1000))
    v = spawn(k, t, user(1001))
    assert call(u, "get_robust_list", v.tid, SCRATCH, SCRATCH + 8) == -E.EPERM
    assert call(t, "get_robust_list", u.tid, SCRATCH, SCRATCH + 8) == 0  # root may look
    w = spawn(k, t, user(1000))
    assert call(u, "get_robust_list", w.tid, SCRATCH, SCRATCH + 8) == 0
    w.proc.dumpable = 0
    assert call(u, "get_robust_list", w.tid, SCRATCH, SCRATCH + 8) == -E.EPERM


def test_rseq_is_enosys():
    _, t = make_kernel()
    assert call(t, "rseq", SCRATCH, 32, 0, 0) == -E.ENOSYS


# --- prctl -----------------------------------------------------------------------------
def test_prctl_name():
    k, t = make_kernel()
    name = put(t, b"worker-thread-number-7\0", 0x100)
    assert call(t, "prctl", F.PR_SET_NAME, name) == 0
    assert t.comm == t.proc.comm == "worker-thread-n"  # 15 bytes
    assert call(t, "prctl", F.PR_GET_NAME, SCRATCH) == 0
    assert t.mm.read(SCRATCH, 16) == b"worker-thread-n\0"
    t2 = thread(k, t)
    call(t2, "prctl", F.PR_SET_NAME, put(t, b"io\0", 0x200))
    assert t2.comm == "io" and t.proc.comm == "worker-thread-n"  # not the leader
    assert call(t, "prctl", F.PR_SET_NAME, BAD) == -E.EFAULT
    assert call(t, "prctl", F.PR_GET_NAME, BAD) == -E.EFAULT
    # a 15-byte name right before unmapped memory, without a NUL, is still fine
    end = SCRATCH + (1 << 20)
    put(t, b"A" * 15, end - 15 - SCRATCH)
    assert call(t, "prctl", F.PR_SET_NAME, end - 15) == 0
    assert t.comm == "A" * 15


def test_prctl_flags():
    _, t = make_kernel()
    p = t.proc
    assert call(t, "prctl", F.PR_SET_PDEATHSIG, 9) == 0 and p.pdeathsig == 9
    assert call(t, "prctl", F.PR_GET_PDEATHSIG, SCRATCH) == 0 and s32(t, SCRATCH) == 9
    assert call(t, "prctl", F.PR_SET_PDEATHSIG, 65) == -E.EINVAL
    assert call(t, "prctl", F.PR_GET_PDEATHSIG, BAD) == -E.EFAULT
    assert call(t, "prctl", F.PR_GET_DUMPABLE) == 1
    assert call(t, "prctl", F.PR_SET_DUMPABLE, 2) == -E.EINVAL
    assert call(t, "prctl", F.PR_SET_DUMPABLE, 0) == 0
    assert call(t, "prctl", F.PR_GET_DUMPABLE) == 0
    assert call(t, "prctl", F.PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 0
    assert call(t, "prctl", F.PR_SET_NO_NEW_PRIVS, 1, 1, 0, 0) == -E.EINVAL
    assert call(t, "prctl", F.PR_SET_NO_NEW_PRIVS, 0, 0, 0, 0) == -E.EINVAL
    assert call(t, "prctl", F.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
    assert call(t, "prctl", F.PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1
    assert call(t, "prctl", F.PR_GET_NO_NEW_PRIVS, 1, 0, 0, 0) == -E.EINVAL
    assert call(t, "prctl", F.PR_SET_CHILD_SUBREAPER, 1) == 0
    assert call(t, "prctl", F.PR_GET_CHILD_SUBREAPER, SCRATCH) == 0 and s32(t, SCRATCH) == 1
    assert call(t, "prctl", F.PR_CAPBSET_READ, 0) == 1
    assert call(t, "prctl", F.PR_CAPBSET_READ, 40) == 1
    assert call(t, "prctl", F.PR_CAPBSET_READ, 41) == -E.EINVAL
    assert call(t, "prctl", 12345) == -E.EINVAL
    assert call(t, "prctl", F.PR_SET_SECCOMP, 2, SCRATCH) == -E.EINVAL


def test_subreaper_adopts_orphans_and_pdeathsig_fires():
    k, init = make_kernel()
    mid = spawn(k, init)
    call(mid, "prctl", F.PR_SET_CHILD_SUBREAPER, 1)
    parent = spawn(k, mid)
    orphan = spawn(k, parent)
    call(orphan, "prctl", F.PR_SET_PDEATHSIG, F.SIGUSR1)
    call(parent, "exit_group", 0)
    assert orphan.proc.parent is mid.proc
    assert orphan.proc in mid.proc.children
    assert orphan.proc.shared_pending.mask & (1 << (F.SIGUSR1 - 1))
    # without a subreaper, orphans go to init
    p2 = spawn(k, init)
    o2 = spawn(k, p2)
    call(p2, "exit_group", 0)
    assert o2.proc.parent is init.proc


def test_fork_inherit():
    k, t = make_kernel()
    c = spawn(k, t)
    t.proc.nice, t.proc.personality, t.proc.no_new_privs = 5, 8, True
    t.proc.pdeathsig, t.proc.child_subreaper = 9, True
    t.proc.rlimits[F.RLIMIT_CORE] = (1, 2)
    fork_inherit(t.proc, c.proc)
    assert (c.proc.nice, c.proc.personality, c.proc.no_new_privs) == (5, 8, True)
    assert c.proc.pdeathsig == 0 and not c.proc.child_subreaper
    assert c.proc.rlimits == {F.RLIMIT_CORE: (1, 2)}
    assert c.proc.rlimits is not t.proc.rlimits


def test_exec_hook_resets_mm_state():
    from cove.kernel import process

    _, t = make_kernel()
    call(t, "membarrier", 16, 0, 0)
    call(t, "prctl", F.PR_SET_DUMPABLE, 0)
    call(t, "prctl", F.PR_SET_PDEATHSIG, 9)
    for hook in process.EXEC_HOOKS:
        hook(t)
    assert t.proc.membarrier == 0 and t.proc.dumpable == 1
    assert t.proc.pdeathsig == 9  # kept: cove's execve never changes ids
    assert call(t, "membarrier", 8, 0, 0) == -E.EPERM


# --- arch_prctl ----------------------------------------------------------------------
def test_arch_prctl():
    _, t = make_kernel()
    assert call(t, "arch_prctl", F.ARCH_SET_FS, 0x7FFF_F000_0000) == 0
    assert t.ctx.fs_base == 0x7FFF_F000_0000
    assert call(t, "arch_prctl", F.ARCH_SET_GS, 0x1234) == 0
    assert t.ctx.gs_base == 0x1234
    assert call(t, "arch_prctl", F.ARCH_GET_FS, SCRATCH) == 0
    assert u64(t, SCRATCH) == 0x7FFF_F000_0000
    assert call(t, "arch_prctl", F.ARCH_GET_GS, SCRATCH) == 0
    assert u64(t, SCRATCH) == 0x1234
    assert call(t, "arch_prctl", F.ARCH_GET_FS, BAD) == -E.EFAULT
    # non-canonical or kernel addresses
    assert call(t, "arch_prctl", F.ARCH_SET_FS, 1 << 47) == -E.EPERM
    assert call(t, "arch_prctl", F.ARCH_SET_FS, 0xFFFF_FFFF_8000_0000) == -E.EPERM
    assert t.ctx.fs_base == 0x7FFF_F000_0000
    assert call(t, "arch_prctl", F.ARCH_GET_CPUID, 0) == 1
    assert call(t, "arch_prctl", F.ARCH_SET_CPUID, 0) == -E.ENODEV
    assert call(t, "arch_prctl", 0x9999, 0) == -E.EINVAL


# --- scheduling ----------------------------------------------------------------------
def test_sched_yield_goes_to_the_back():
    k, t = make_kernel()
    other = spawn(k, t)
    k.sched.runq.clear()
    k.sched.add(t)
    k.sched.add(other)
    assert k.sched.next() is t
    assert call(t, "sched_yield") == 0
    k.sched.requeue(t)  # what the run loop does when others are runnable
    assert k.sched.next() is other


def test_sched_yield_wakes_a_sleeper_that_is_due():
    import time

    from cove.abi.structs import TIMESPEC

    k, t = make_kernel()
    sleeper = spawn(k, t)
    call(sleeper, "nanosleep", put(sleeper, TIMESPEC.pack(0, 1_000_000)), 0)
    assert sleeper.state is State.BLOCKED
    k.sched.runq.clear()
    time.sleep(0.005)
    assert call(t, "sched_yield") == 0
    assert sleeper.state is State.RUNNABLE and sleeper in k.sched.runq


def test_affinity():
    k, t = make_kernel()
    assert call(t, "sched_getaffinity", 0, 8, SCRATCH) == 8
    assert u64(t, SCRATCH) == 1
    put(t, b"\xff" * 128)
    assert call(t, "sched_getaffinity", 0, 128, SCRATCH) == 8
    assert t.mm.read(SCRATCH, 9) == b"\x01" + bytes(7) + b"\xff"
    assert call(t, "sched_getaffinity", 0, 4, SCRATCH) == -E.EINVAL
    assert call(t, "sched_getaffinity", 0, 0, SCRATCH) == -E.EINVAL
    assert call(t, "sched_getaffinity", 0, 12, SCRATCH) == -E.EINVAL
    assert call(t, "sched_getaffinity", 999, 8, SCRATCH) == -E.ESRCH
    assert call(t, "sched_getaffinity", 0, 8, BAD) == -E.EFAULT
    put(t, struct.pack("<Q", 0b101))
    assert call(t, "sched_setaffinity", 0, 8, SCRATCH) == 0
    put(t, struct.pack("<Q", 0b110))
    assert call(t, "sched_setaffinity", 0, 8, SCRATCH) == -E.EINVAL
    assert call(t, "sched_setaffinity", 0, 0, SCRATCH) == -E.EINVAL
    assert call(t, "sched_setaffinity", 0, 8, BAD) == -E.EFAULT
    assert call(t, "sched_setaffinity", 999, 8, SCRATCH) == -E.ESRCH
    u = spawn(k, t, user(1000))
    v = spawn(k, t, user(1001))
    put(u, struct.pack("<Q", 1))
    assert call(u, "sched_setaffinity", v.pid, 8, SCRATCH) == -E.EPERM
    assert call(u, "sched_setaffinity", u.pid, 8, SCRATCH) == 0


def test_getcpu():
    _, t = make_kernel()
    put(t, b"\xff" * 8)
    assert call(t, "getcpu", SCRATCH, SCRATCH + 4, 0) == 0
    assert u32s(t, SCRATCH, 2) == (0, 0)
    assert call(t, "getcpu", 0, 0, 0) == 0
    assert call(t, "getcpu", BAD, 0, 0) == -E.EFAULT


def test_scheduler_queries():
    _, t = make_kernel()
    assert call(t, "sched_getscheduler", 0) == F.SCHED_NORMAL
    assert call(t, "sched_getscheduler", -1) == -E.EINVAL
    assert call(t, "sched_getscheduler", 999) == -E.ESRCH
    put(t, b"\xff" * 4)
    assert call(t, "sched_getparam", 0, SCRATCH) == 0
    assert SCHED_PARAM.unpack_from(t.mm.read(SCRATCH, 4)) == (0,)
    assert call(t, "sched_getparam", 0, 0) == -E.EINVAL
    assert call(t, "sched_getparam", -1, SCRATCH) == -E.EINVAL
    assert call(t, "sched_getparam", 999, SCRATCH) == -E.ESRCH
    assert call(t, "sched_getparam", 0, BAD) == -E.EFAULT
    assert call(t, "sched_get_priority_max", F.SCHED_FIFO) == 99
    assert call(t, "sched_get_priority_min", F.SCHED_RR) == 1
    assert call(t, "sched_get_priority_max", F.SCHED_NORMAL) == 0
    assert call(t, "sched_get_priority_min", F.SCHED_IDLE) == 0
    assert call(t, "sched_get_priority_max", 4) == -E.EINVAL
    assert call(t, "sched_get_priority_min", -1) == -E.EINVAL


def test_nice():
    k, t = make_kernel()
    assert call(t, "getpriority", F.PRIO_PROCESS, 0) == 20  # 20 - nice
    assert call(t, "setpriority", F.PRIO_PROCESS, 0, -5) == 0  # root may lower
    assert call(t, "getpriority", F.PRIO_PROCESS, 0) == 25
    assert call(t, "setpriority", F.PRIO_PROCESS, 0, 100) == 0  # clamped to 19
    assert t.proc.nice == 19
    assert call(t, "getpriority", 3, 0) == -E.EINVAL
    assert call(t, "getpriority", F.PRIO_PROCESS, 999) == -E.ESRCH
    assert call(t, "setpriority", F.PRIO_PROCESS, 999, 0) == -E.ESRCH
    u = spawn(k, t, user(1000))
    assert call(u, "setpriority", F.PRIO_PROCESS, 0, 5) == 0
    assert call(u, "setpriority", F.PRIO_PROCESS, 0, 4) == -E.EACCES  # RLIMIT_NICE is 0
    u.proc.rlimits[F.RLIMIT_NICE] = (20 - 2, 20 - 2)  # may go down to nice 2
    assert call(u, "setpriority", F.PRIO_PROCESS, 0, 2) == 0
    assert call(u, "setpriority", F.PRIO_PROCESS, t.pid, 10) == -E.EPERM
    # groups and users
    v = spawn(k, t, user(1000))
    v.proc.pgid = u.proc.pgid = 77
    assert call(t, "setpriority", F.PRIO_PGRP, 77, 7) == 0
    assert u.proc.nice == v.proc.nice == 7 and t.proc.nice == 19
    assert call(u, "getpriority", F.PRIO_PGRP, 0) == 13
    assert call(t, "setpriority", F.PRIO_USER, 1000, 3) == 0
    assert u.proc.nice == v.proc.nice == 3
    assert call(u, "getpriority", F.PRIO_USER, 0) == 17
    assert call(t, "getpriority", F.PRIO_USER, 4242) == -E.ESRCH


# --- garbage in, an errno out --------------------------------------------------------------
MINE = ["getpid", "getppid", "gettid", "getuid", "geteuid", "getgid", "getegid", "getresuid",
        "getresgid", "getgroups", "setgroups", "setuid", "setgid", "setreuid", "setregid",
        "setresuid", "setresgid", "setfsuid", "setfsgid", "getpgrp", "getpgid", "getsid",
        "uname", "sethostname", "sysinfo", "getrandom", "clock_gettime", "clock_getres",
        "clock_settime", "gettimeofday", "settimeofday", "time", "nanosleep",
        "clock_nanosleep", "times", "getrusage", "prlimit64", "getrlimit", "setrlimit",
        "sched_yield", "sched_getaffinity", "sched_setaffinity", "getcpu",
        "sched_getscheduler", "sched_getparam", "sched_get_priority_max",
        "sched_get_priority_min", "getpriority", "setpriority", "arch_prctl",
        "set_tid_address", "set_robust_list", "get_robust_list", "prctl", "capget", "capset",
        "personality", "brk", "mmap", "munmap", "mprotect", "mremap", "madvise", "msync",
        "mlock", "mlock2", "munlock", "mlockall", "munlockall", "mincore", "membarrier"]


def test_garbage_arguments_never_raise(caplog):
    import random

    rng = random.Random(1234)
    values = [0, 1, 2, 3, 7, 16, 24, 4096, -1, -4096, 1 << 31, (1 << 32) - 1, 1 << 47,
              (1 << 63), (1 << 64) - 1, SCRATCH, SCRATCH + 1, SCRATCH + 4096 * 255, BAD,
              0x2000_0000, 0x7FFF_FFFF_F000]
    for name in MINE:
        _, t = make_kernel()
        for _ in range(150):
            if t.state is not State.RUNNABLE or not t.proc.alive:
                _, t = make_kernel()
            args = [rng.choice(values) for _ in range(6)]
            r = call(t, name, *args)
            assert r >= -4095 or name in ("mmap", "brk", "mremap"), (name, args, r)
    assert "internal error" not in caplog.text
