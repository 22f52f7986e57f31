"""fork, vfork, clone-style process creation, wait4/waitid, zombies and
reaping, setpgid/setsid: through the dispatcher on a harness kernel."""

from __future__ import annotations

import struct
import time

import pytest

from cove.abi import flags as F
from cove.abi.errno import E
from cove.abi.structs import K_SIGACTION, RUSAGE
from cove.abi.sysnums import NR
from cove.fs.file import File
from cove.kernel import process, signals
from cove.kernel.process import fork_process
from cove.kernel.task import State
from cove.kernel.wait import Blocked

from .harness import SCRATCH, call, make_kernel, put
from .proc_helpers import big_kernel, exit_group, fork, resume
from .sysutil import BAD, s32, user

pytestmark = pytest.mark.timeout(60)
STATUS = SCRATCH + 0x800
INFO = SCRATCH + 0x1000
RU = SCRATCH + 0x2000


def sigaction(t, signo, handler, flags=0):
    act = put(t, K_SIGACTION.pack(handler, flags | F.SA_RESTORER, 0x1000, 0), 0x3000)
    assert call(t, "rt_sigaction", signo, act, 0, 8) == 0


def wait4(t, pid=-1, options=0, status=STATUS, ru=0):
    return call(t, "wait4", pid, status, options, ru)


# --- fork ---------------------------------------------------------------------------------
def test_fork_returns_pid_in_parent_and_zero_in_child():
    k, t = make_kernel()
    t.ctx.regs.rip, t.ctx.regs.rbx = 0x401000, 77
    c = fork(t)
    assert c.pid == c.tid != t.pid
    assert signed_rax(t) == c.pid
    assert c.ctx.regs.rax == 0
    assert (c.ctx.regs.rip, c.ctx.regs.rbx) == (0x401000, 77)
    assert c.proc.parent is t.proc and c.proc in t.proc.children
    assert c.mm is not t.mm
    assert c.state is State.RUNNABLE and c in k.sched.runq
    assert call(c, "getppid") == t.pid
    assert (c.proc.pgid, c.proc.sid) == (t.proc.pgid, t.proc.sid)


def signed_rax(t):
    r = t.ctx.regs.rax
    return r - (1 << 64) if r & (1 << 63) else r


def test_fork_memory_is_copy_on_write_both_ways():
    _, t = make_kernel()
    put(t, b"parent-data")
    c = fork(t)
    assert c.mm.read(SCRATCH, 11) == b"parent-data"
    t.mm.write(SCRATCH, b"PARENT")
    assert c.mm.read(SCRATCH, 11) == b"parent-data"
    c.mm.write(SCRATCH + 0x100, b"child")
    assert t.mm.read(SCRATCH + 0x100, 5) == bytes(5)
    assert t.mm.read(SCRATCH, 6) == b"PARENT"


def test_fork_of_200_mib_copies_no_pages():
    k, t = big_kernel(1 << 30)
    size = 200 << 20
    addr = t.mm.mmap(0, size, F.PROT_READ | F.PROT_WRITE,
                     F.MAP_PRIVATE | F.MAP_ANONYMOUS | F.MAP_POPULATE)
    t.mm.write(addr + size - 4096, b"tail")
    phys = k.phys
    before = phys.frames_in_use
    assert before >= size // 4096
    c = fork(t)
    assert phys.frames_in_use - before == 0  # not one data page copied
    c.mm.write(addr, b"x")  # one write: one page copied
    assert phys.frames_in_use - before == 1
    assert c.mm.read(addr + size - 4096, 4) == b"tail"
    exit_group(c, 0)
    assert phys.frames_in_use - before == 0  # the child's copy is gone with it


def test_fork_copies_fd_table_sharing_descriptions():
    _, t = make_kernel()
    f = File(0)
    fd = t.files.install(f)
    fd2 = t.files.install(f, cloexec=True)
    c = fork(t)
    assert c.files is not t.files
    assert c.files.get(fd) is f and fd2 in c.files.cloexec
    assert f.fd_refs == 4
    assert call(c, "close", fd) == 0
    assert t.files.get(fd) is f


def test_fork_copies_signal_handlers_mask_and_altstack():
    _, t = make_kernel()
    sigaction(t, F.SIGUSR1, 0x5000)
    t.sigmask = signals.bit(F.SIGUSR2)
    t.altstack = (0x20000000, 0, 1 << 16)
    t.pending.add(F.SIGUSR2, signals.make_info(F.SIGUSR2))
    c = fork(t)
    assert c.proc.sighand is not t.proc.sighand
    assert c.proc.sighand.actions[F.SIGUSR1].handler == 0x5000
    sigaction(c, F.SIGUSR1, 0)
    assert t.proc.sighand.actions[F.SIGUSR1].handler == 0x5000
    assert c.sigmask == t.sigmask and c.altstack == t.altstack
    assert c.pending.mask == 0  # pending signals are not inherited


def test_fork_inherits_identity_limits_and_cwd_copy():
    _, t = make_kernel()
    t.proc.creds = user(1000)
    t.proc.comm = t.comm = "prog"
    t.proc.exe = "/bin/prog"
    t.proc.rlimits[F.RLIMIT_NOFILE] = (64, 128)
    t.fs.umask = 0o077
    c = fork(t)
    assert c.proc.creds == t.proc.creds and c.proc.creds is not t.proc.creds
    assert (c.proc.comm, c.comm, c.proc.exe) == ("prog", "prog", "/bin/prog")
    assert c.proc.rlimits[F.RLIMIT_NOFILE] == (64, 128)
    assert c.fs is not t.fs and c.fs.umask == 0o077
    call(c, "umask", 0o022)
    assert t.fs.umask == 0o077


def test_clone_style_flags_settid_tls_stack_and_sharing():
    k, t = make_kernel()
    ptid, ctid = SCRATCH + 0x10, SCRATCH + 0x20
    flags = (F.CLONE_CHILD_SETTID | F.CLONE_PARENT_SETTID | F.CLONE_CHILD_CLEARTID
             | F.CLONE_SETTLS | F.CLONE_FILES | F.CLONE_FS)
    pid = fork_process(t, flags, 0x7000_0000, ptid, ctid, 0x1234_5000, 0)
    c = k.tasks[pid]
    assert struct.unpack("<I", t.mm.read(ptid, 4))[0] == pid
    assert struct.unpack("<I", t.mm.read(ctid, 4))[0] == 0  # the child's copy only
    assert struct.unpack("<I", c.mm.read(ctid, 4))[0] == pid
    assert c.clear_child_tid == ctid
    assert c.ctx.fs_base == 0x1234_5000 and c.ctx.regs.rsp == 0x7000_0000
    assert c.files is t.files and t.files.users == 2
    assert c.fs is t.fs
    assert c.proc.exit_signal == 0


@pytest.mark.parametrize("flags, err", [
    (F.CLONE_SIGHAND, E.EINVAL),  # handlers shared only with memory
    (F.CLONE_THREAD | F.CLONE_SIGHAND | F.CLONE_VM, E.EINVAL),  # threads are not processes
    (F.CLONE_NEWNS | F.CLONE_FS, E.EINVAL),
    (F.CLONE_NEWPID, E.EPERM),
    (F.CLONE_NEWUSER, E.EPERM),
    (F.CLONE_PARENT, E.EINVAL),  # from init
    (F.CLONE_PIDFD, E.EINVAL),
    (1 << 40, E.EINVAL),
])
def test_bad_clone_flags(flags, err):
    k, t = make_kernel()
    with pytest.raises(Exception) as ei:
        fork_process(t, flags)
    assert ei.value.errno == err  # type: ignore[attr-defined]
    assert len(k.processes) == 1


def test_clone_parent_makes_a_sibling():
    k, t = make_kernel()
    c = fork(t)
    pid = fork_process(c, F.CLONE_PARENT)
    assert k.processes[pid].parent is t.proc
    assert k.processes[pid] in t.proc.children


def test_rlimit_nproc_is_eagain_for_non_root():
    _k, t = make_kernel()
    t.proc.creds = user(1000)
    t.proc.rlimits[F.RLIMIT_NPROC] = (3, 3)
    fork(t)
    fork(t)
    assert call(t, "fork") == -E.EAGAIN
    t.proc.creds = user(0)
    assert call(t, "fork") > 0  # root is exempt


def test_task_limit_is_eagain():
    k, t = make_kernel()  # 64 MiB: 512 tasks at most
    n = 0
    while call(t, "fork") > 0:
        n += 1
        assert n < 1000
    assert call(t, "fork") == -E.EAGAIN
    assert len(k.tasks) == 512


# --- vfork -------------------------------------------------------------------------------
def test_vfork_shares_memory_and_blocks_parent_until_child_exits():
    k, t = make_kernel()
    before = k.phys.frames_in_use
    r = call(t, "vfork")
    assert t.state is State.BLOCKED and r == NR.vfork  # rax untouched while asleep
    (child,) = t.proc.children
    c = child.threads[0]
    assert c.mm is t.mm and c.ctx.regs.rax == 0
    assert k.phys.frames_in_use == before
    c.mm.write(SCRATCH, b"from child")
    assert t.mm.read(SCRATCH, 10) == b"from child"
    call(c, "set_tid_address", 0)  # the child runs while the parent sleeps
    assert t.state is State.BLOCKED
    exit_group(c, 5)
    assert t.state is State.RUNNABLE
    assert resume(t) == child.pid
    assert t.mm.vmas and t.mm.read(SCRATCH, 10) == b"from child"  # not released
    assert not process.mm_shared(t.mm)
    assert wait4(t) == child.pid and s32(t, STATUS) == 5 << 8


def test_vfork_parent_is_not_woken_by_signals():
    _k, t = make_kernel()
    call(t, "vfork")
    sigaction(t, F.SIGUSR1, 0x5000)
    signals.send_process(t.proc, F.SIGUSR1)
    assert t.state is State.BLOCKED


def test_vfork_parent_killed_leaves_memory_to_the_child():
    _k, t = make_kernel()
    c = fork(t)  # a middle process that vforks
    put(c, b"keep")
    call(c, "vfork")
    (gc,) = c.proc.children
    exit_group(c, 0)  # the vfork parent dies (killed) while the child runs
    assert gc.threads[0].mm.read(SCRATCH, 4) == b"keep"
    exit_group(gc.threads[0], 0)
    assert not process.mm_shared(gc.mm)


# --- wait4 --------------------------------------------------------------------------------
def test_wait4_without_children_is_echild():
    _, t = make_kernel()
    assert wait4(t) == -E.ECHILD
    assert wait4(t, options=F.WNOHANG) == -E.ECHILD


def test_wait4_exit_status_and_reap():
    k, t = make_kernel()
    c = fork(t)
    assert wait4(t, options=F.WNOHANG) == 0
    exit_group(c, 42)
    assert c.proc.state is State.ZOMBIE and c.pid in k.processes
    assert wait4(t) == c.pid
    assert s32(t, STATUS) == 42 << 8
    assert c.pid not in k.processes and not t.proc.children
    assert wait4(t) == -E.ECHILD


@pytest.mark.parametrize("status", [F.SIGKILL, F.SIGTERM, 3 << 8])
def test_wait4_killed_status(status):
    k, t = make_kernel()
    c = fork(t)
    k.exit_group(c.proc, status)
    assert wait4(t) == c.pid and s32(t, STATUS) == status


@pytest.mark.parametrize("core_limit, dumpable, expect", [
    (0, 1, F.SIGQUIT),  # the default RLIMIT_CORE of 0: no core, no 0x80 (as Linux)
    (1 << 20, 1, F.SIGQUIT | 0x80),
    (1 << 20, 0, F.SIGQUIT),  # PR_SET_DUMPABLE 0: never a core
])
def test_core_dump_bit_follows_rlimit_core(core_limit, dumpable, expect):
    _, t = make_kernel()
    sigaction(t, F.SIGCHLD, 0x5000)  # so SIGCHLD (and its si_code) is queued
    c = fork(t)
    c.proc.rlimits[F.RLIMIT_CORE] = (core_limit, F.RLIM_INFINITY)
    c.proc.dumpable = dumpable
    signals.send_process(c.proc, F.SIGQUIT)
    signals.deliver(c)
    code = signals.info_code(t.proc.shared_pending.take(F.SIGCHLD))
    assert code == (signals.CLD_DUMPED if expect & 0x80 else signals.CLD_KILLED)
    assert wait4(t) == c.pid and s32(t, STATUS) == expect


def test_wait4_blocks_until_a_child_exits():
    _, t = make_kernel()
    c = fork(t)
    wait4(t)
    assert t.state is State.BLOCKED
    assert resume(t) is None
    exit_group(c, 1)
    assert resume(t) == c.pid and s32(t, STATUS) == 1 << 8


def test_wait4_blocked_is_interrupted_by_a_handled_signal():
    _, t = make_kernel()
    fork(t)
    sigaction(t, F.SIGUSR1, 0x5000)
    wait4(t)
    signals.send_process(t.proc, F.SIGUSR1)
    assert t.state is State.RUNNABLE
    assert resume(t) == -E.EINTR
    assert t.restart_nr == 61  # restartable with SA_RESTART


def test_wait4_pid_selection():
    _k, t = make_kernel()
    a, b = fork(t), fork(t)
    assert call(b, "setpgid", 0, 0) == 0
    exit_group(a, 1)
    exit_group(b, 2)
    assert wait4(t, 9999) == -E.ECHILD
    assert wait4(t, -9999) == -E.ECHILD
    assert wait4(t, -(1 << 31)) == -E.ESRCH
    assert wait4(t, -b.pid) == b.pid  # < -1: that process group
    assert wait4(t, b.pid) == -E.ECHILD
    assert wait4(t, 0) == a.pid  # 0: the caller's own group


def test_wait4_reports_oldest_child_first():
    _, t = make_kernel()
    kids = [fork(t) for _ in range(3)]
    for c in reversed(kids):
        exit_group(c, c.pid)
    assert [wait4(t) for _ in kids] == [c.pid for c in kids]


def test_wait4_bad_options_and_pointers():
    _, t = make_kernel()
    c = fork(t)
    assert wait4(t, options=F.WNOWAIT) == -E.EINVAL
    assert wait4(t, options=0x100) == -E.EINVAL
    exit_group(c, 0)
    assert wait4(t, status=BAD) == -E.EFAULT
    assert wait4(t) == -E.ECHILD  # as Linux: reaped before the status was stored


def test_wait4_status_null_and_rusage():
    _, t = make_kernel()
    c = fork(t)
    c.proc.user_time, c.proc.sys_time, c.proc.child_user_time = 1.5, 0.25, 0.5
    exit_group(c, 0)
    assert wait4(t, status=0, ru=RU) == c.pid
    ru = RUSAGE.read(t.mm.read(RU, RUSAGE.size))
    assert (ru.ru_utime_tv_sec, ru.ru_utime_tv_usec) == (2, 0)
    assert (ru.ru_stime_tv_sec, ru.ru_stime_tv_usec) == (0, 250000)
    assert t.proc.child_user_time == 2.0  # RUSAGE_CHILDREN grows at reap


def test_wclone_and_wall_select_by_exit_signal():
    k, t = make_kernel()
    pid = fork_process(t, 0, exit_signal=0)
    k.exit_group(k.processes[pid], 0)
    assert wait4(t, options=F.WNOHANG) == -E.ECHILD
    assert wait4(t, options=F.WCLONE | F.WNOHANG) == pid
    normal = fork(t)
    exit_group(normal, 0)
    assert wait4(t, options=F.WCLONE | F.WNOHANG) == -E.ECHILD
    assert wait4(t, options=F.WALL) == normal.pid


def test_stopped_and_continued_children():
    k, t = make_kernel()
    c = fork(t)
    signals.send_process(c.proc, F.SIGSTOP)
    signals.deliver(c)
    assert c.proc.state is State.STOPPED
    assert wait4(t, options=F.WNOHANG) == 0  # stops need WUNTRACED
    assert wait4(t, options=F.WUNTRACED) == c.pid
    assert s32(t, STATUS) == (F.SIGSTOP << 8) | 0x7F
    assert wait4(t, options=F.WUNTRACED | F.WNOHANG) == 0  # reported once
    signals.send_process(c.proc, F.SIGCONT)
    assert wait4(t, options=F.WNOHANG) == 0
    assert wait4(t, options=F.WCONTINUED) == c.pid and s32(t, STATUS) == 0xFFFF
    assert c.pid in k.processes


def test_wait_for_stop_wakes_when_child_stops():
    _, t = make_kernel()
    c = fork(t)
    wait4(t, options=F.WUNTRACED)
    assert t.state is State.BLOCKED
    signals.send_process(c.proc, F.SIGTSTP)
    signals.deliver(c)
    assert resume(t) == c.pid and s32(t, STATUS) == (F.SIGTSTP << 8) | 0x7F


# --- waitid -------------------------------------------------------------------------------
def siginfo(t):
    signo, errno, code = struct.unpack("<iii", t.mm.read(INFO, 12))
    pid, uid, status = struct.unpack("<iIi", t.mm.read(INFO + 16, 12))
    return signo, errno, code, pid, uid, status


def test_waitid_exited_killed_dumped():
    k, t = make_kernel()
    a, b, c = fork(t), fork(t), fork(t)
    a.proc.creds = user(1000)
    exit_group(a, 7)
    k.exit_group(b.proc, F.SIGTERM)
    c.proc.rlimits[F.RLIMIT_CORE] = (F.RLIM_INFINITY, F.RLIM_INFINITY)
    k.exit_group(c.proc, F.SIGABRT | 0x80)
    opts = F.WEXITED
    assert call(t, "waitid", F.P_PID, a.pid, INFO, opts, 0) == 0
    assert siginfo(t) == (F.SIGCHLD, 0, signals.CLD_EXITED, a.pid, 1000, 7)
    assert call(t, "waitid", F.P_ALL, 0, INFO, opts, 0) == 0
    assert siginfo(t) == (F.SIGCHLD, 0, signals.CLD_KILLED, b.pid, 0, F.SIGTERM)
    assert call(t, "waitid", F.P_ALL, 0, INFO, opts, 0) == 0
    assert siginfo(t) == (F.SIGCHLD, 0, signals.CLD_DUMPED, c.pid, 0, F.SIGABRT)


def test_waitid_wnowait_leaves_the_zombie():
    k, t = make_kernel()
    c = fork(t)
    exit_group(c, 3)
    assert call(t, "waitid", F.P_ALL, 0, INFO, F.WEXITED | F.WNOWAIT, 0) == 0
    assert siginfo(t)[3] == c.pid and c.pid in k.processes
    assert call(t, "waitid", F.P_ALL, 0, INFO, F.WEXITED, 0) == 0
    assert c.pid not in k.processes


def test_waitid_wnohang_zeroes_the_fields_it_writes():
    _, t = make_kernel()
    fork(t)
    put(t, b"\xff" * 128, 0x1000)
    assert call(t, "waitid", F.P_ALL, 0, INFO, F.WEXITED | F.WNOHANG, 0) == 0
    assert siginfo(t) == (0, 0, 0, 0, 0, 0)
    assert t.mm.read(INFO + 12, 4) == b"\xff" * 4  # padding untouched


@pytest.mark.parametrize("idtype, ident, options, err", [
    (F.P_ALL, 0, F.WNOHANG, E.EINVAL),  # no WEXITED/WSTOPPED/WCONTINUED
    (F.P_ALL, 0, F.WEXITED | 0x100, E.EINVAL),
    (F.P_PID, 0, F.WEXITED, E.EINVAL),
    (F.P_PGID, -1, F.WEXITED, E.EINVAL),
    (7, 0, F.WEXITED, E.EINVAL),
    (F.P_PIDFD, 55, F.WEXITED, E.EBADF),
    (F.P_PID, 9999, F.WEXITED, E.ECHILD),
])
def test_waitid_errors(idtype, ident, options, err):
    _, t = make_kernel()
    fork(t)
    assert call(t, "waitid", idtype, ident, INFO, options, 0) == -err


def test_waitid_zombie_is_not_a_candidate_without_wexited():
    _, t = make_kernel()
    c = fork(t)
    exit_group(c, 0)
    assert call(t, "waitid", F.P_ALL, 0, INFO, F.WSTOPPED | F.WNOHANG, 0) == -E.ECHILD


# --- zombies, auto-reaping, orphans ---------------------------------------------------------
@pytest.mark.parametrize("how", ["ignore", "nocldwait"])
def test_ignored_sigchld_reaps_children_automatically(how):
    k, t = make_kernel()
    if how == "ignore":
        sigaction(t, F.SIGCHLD, 1)
    else:
        sigaction(t, F.SIGCHLD, 0, F.SA_NOCLDWAIT)
    a, b = fork(t), fork(t)
    wait4(t)
    assert t.state is State.BLOCKED
    exit_group(a, 0)
    assert a.pid not in k.processes  # never a zombie
    assert resume(t) is None  # woken, still waiting for b
    exit_group(b, 0)
    assert resume(t) == -E.ECHILD  # POSIX: wait returns ECHILD once all are gone
    assert k.processes.keys() == {t.pid}


def test_nocldwait_with_a_handler_still_gets_sigchld():
    _, t = make_kernel()
    sigaction(t, F.SIGCHLD, 0x5000, F.SA_NOCLDWAIT)
    c = fork(t)
    exit_group(c, 0)
    assert t.proc.shared_pending.mask & signals.bit(F.SIGCHLD)


def test_orphans_are_adopted_by_init_and_reaped_there():
    _k, t = make_kernel()
    mid = fork(t)
    gc = fork(mid)
    live = fork(mid)
    exit_group(gc, 9)  # a zombie of mid's
    exit_group(mid, 0)
    assert gc.proc.parent is t.proc and live.proc.parent is t.proc
    assert {p.pid for p in t.proc.children} == {mid.pid, gc.pid, live.pid}
    got = {wait4(t, options=F.WNOHANG) for _ in range(2)}
    assert got == {mid.pid, gc.pid}
    assert live.proc.exit_signal == F.SIGCHLD
    assert wait4(t, options=F.WNOHANG) == 0


def test_orphans_go_to_a_subreaper():
    _k, t = make_kernel()
    sub = fork(t)
    sub.proc.child_subreaper = True
    mid = fork(sub)
    gc = fork(mid)
    exit_group(mid, 0)
    assert gc.proc.parent is sub.proc


def test_thousand_zombies_are_reaped_quickly():
    k, t = big_kernel()
    kids = [fork(t) for _ in range(1000)]
    for c in kids:
        exit_group(c, c.pid & 0xFF)
    assert len(k.processes) == 1001
    start = time.perf_counter()
    for c in kids:
        assert wait4(t) == c.pid
        assert s32(t, STATUS) == (c.pid & 0xFF) << 8
    assert time.perf_counter() - start < 5
    assert wait4(t) == -E.ECHILD
    assert k.processes.keys() == {t.pid}


# --- process groups and sessions -----------------------------------------------------------
def test_setsid_rules():
    _k, t = make_kernel()
    assert call(t, "setsid") == -E.EPERM  # init leads its group
    c = fork(t)
    assert call(c, "setsid") == c.pid
    assert (c.proc.sid, c.proc.pgid) == (c.pid, c.pid)
    assert call(c, "getsid", 0) == c.pid
    assert call(c, "setsid") == -E.EPERM
    assert call(c, "setpgid", 0, 0) == -E.EPERM  # a session leader cannot move


def test_setpgid_rules():
    _k, t = make_kernel()
    c = fork(t)
    assert call(t, "setpgid", c.pid, 0) == 0
    assert c.proc.pgid == c.pid
    assert call(t, "setpgid", c.pid, t.pid) == 0  # back into the parent's group
    assert c.proc.pgid == t.proc.pgid
    assert call(t, "setpgid", c.pid, -1) == -E.EINVAL
    assert call(t, "setpgid", c.pid, 4242) == -E.EPERM  # no such group
    assert call(t, "setpgid", 4242, 0) == -E.ESRCH
    gc = fork(c)
    assert call(t, "setpgid", gc.pid, 0) == -E.ESRCH  # not our child
    assert call(gc, "setpgid", 0, 0) == 0  # itself: fine
    assert call(c, "setsid") == c.pid
    assert call(t, "setpgid", c.pid, 0) == -E.EPERM  # child in another session


def test_setpgid_after_the_child_execed_is_eacces():
    _, t = make_kernel()
    c = fork(t)
    process.mark_execed(c.proc)
    assert call(t, "setpgid", c.pid, 0) == -E.EACCES
    assert call(c, "setpgid", 0, 0) == 0  # the child itself still may


def test_setpgid_on_a_non_leader_thread_is_einval():
    from .sysutil import thread

    k, t = make_kernel()
    c = fork(t)
    th = thread(k, c)
    assert call(t, "setpgid", th.tid, 0) == -E.EINVAL


def test_blocked_exception_is_raised_before_state_changes():
    # wait4 parks with Blocked; nothing about the children changes meanwhile.
    _, t = make_kernel()
    c = fork(t)
    from cove.kernel.syscalls import process as sp

    with pytest.raises(Blocked):
        sp._do_wait(t, F.P_ALL, 0, F.WEXITED)
    assert c.proc in t.proc.children
