"""Process life cycle: fork, vfork, execve, execveat, wait4, waitid, and the
process-group and session calls that change state (setpgid, setsid; the
queries are in ``proc_info``).

The mechanics live in ``cove.kernel.process`` (fork_process, shared memory
maps, auto-reaping) and ``cove.kernel.exec`` (execve's two phases); clone and
clone3 (``syscalls.thread``) make new processes through the same
``fork_process``, installed here as ``thread.PROCESS_CLONE``.

Wait statuses are Linux's: ``code << 8`` for an exit, the signal number
(``| 0x80`` with a core dump) for a kill, ``sig << 8 | 0x7f`` for a stop and
``0xffff`` for a continue.
"""

from __future__ import annotations

import struct

from cove.abi import flags as F
from cove.abi.errno import E, Errno
from cove.abi.structs.process import RUSAGE
from cove.dataclass import dataclass
from cove.kernel import exec as exec_
from cove.kernel import process
from cove.kernel.kernel import NORETURN
from cove.kernel.signals import CLD_CONTINUED, CLD_DUMPED, CLD_EXITED, CLD_KILLED, CLD_STOPPED
from cove.kernel.syscall import FD, INT, PATH, PTR, UINT, syscall
from cove.kernel.syscalls import thread
from cove.kernel.syscalls.proc_lookup import find_process, put_s32
from cove.kernel.task import State
from cove.kernel.wait import Blocked

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from cove.kernel.task import Process, Task

INT_MIN = -(1 << 31)
CONTINUED = 0xFFFF  # the wait status of a continued child
WAIT4_OPTIONS = F.WNOHANG | F.WUNTRACED | F.WCONTINUED | F.WNOTHREAD | F.WCLONE | F.WALL
WAITID_OPTIONS = (F.WNOHANG | F.WNOWAIT | F.WEXITED | F.WSTOPPED | F.WCONTINUED
                  | F.WNOTHREAD | F.WCLONE | F.WALL)
_CHLD_HEAD = struct.Struct("<iii")  # si_signo, si_errno, si_code
_CHLD_IDS = struct.Struct("<iIi")  # si_pid, si_uid, si_status (at offset 16)


# --- fork -------------------------------------------------------------------------------
@syscall("fork")
def fork(t: Task) -> int:
    return process.fork_process(t, 0)


@syscall("vfork")
def vfork(t: Task) -> int:
    return process.fork_process(t, F.CLONE_VM | F.CLONE_VFORK)


def _clone_process(t: Task, a: thread.CloneArgs) -> int:
    """clone/clone3 without CLONE_THREAD (validated by ``thread.kernel_clone``)."""
    return process.fork_process(t, a.flags, a.stack, a.parent_tid, a.child_tid, a.tls,
                                a.exit_signal)


thread.PROCESS_CLONE = _clone_process


# --- exec -------------------------------------------------------------------------------
@syscall("execve", PATH, PTR, PTR)
def execve(t: Task, path: str, argv: int, envp: int) -> object:
    exec_.execve(t, F.AT_FDCWD, path, argv, envp, 0)
    return NORETURN


@syscall("execveat", FD, PATH, PTR, PTR, INT)
def execveat(t: Task, dirfd: int, path: str, argv: int, envp: int, flags: int) -> object:
    exec_.execve(t, dirfd, path, argv, envp, flags)
    return NORETURN


# --- wait -------------------------------------------------------------------------------
@dataclass(slots=True)
class _Report:
    """What a wait found: the child, its wait status, and the CLD_* view of it."""

    child: Process
    status: int
    code: int
    si_status: int
    utime: float
    stime: float
    maxrss: int


def _eligible(child: Process, idtype: int, ident: int, options: int) -> bool:
    """Linux's eligible_pid + eligible_child (no ptrace)."""
    if idtype == F.P_PID and child.pid != ident:
        return False
    if idtype == F.P_PGID and child.pgid != ident:
        return False
    if options & F.WALL:
        return True
    # A "clone" child (exit signal other than SIGCHLD) only with __WCLONE, and
    # only clone children then.
    return (child.exit_signal != F.SIGCHLD) == bool(options & F.WCLONE)


def _exit_report(child: Process) -> _Report:
    st = child.exit_code or 0
    if st & 0x7F:
        code, si = (CLD_DUMPED if st & 0x80 else CLD_KILLED), st & 0x7F
    else:
        code, si = CLD_EXITED, (st >> 8) & 0xFF
    # RUSAGE_BOTH: the child's own times and those of its waited-for children.
    return _Report(child, st, code, si, child.user_time + child.child_user_time,
                   child.sys_time + child.child_sys_time, max(child.maxrss, child.child_maxrss))


def _find(t: Task, idtype: int, ident: int, options: int) -> tuple[_Report | None, bool]:
    """The first child (oldest first, as Linux's list) with something to
    report, consuming it unless WNOWAIT; and whether any child was eligible."""
    any_child = False
    for child in list(t.proc.children):
        if not _eligible(child, idtype, ident, options):
            continue
        if not child.alive:
            if not options & F.WEXITED:
                continue  # a zombie is only a candidate for WEXITED
            any_child = True
            report = _exit_report(child)
            if not options & F.WNOWAIT:
                t.kernel.reap(child)
            return report, True
        any_child = True
        sr = child.stop_report
        if sr is None:
            continue
        if sr == CONTINUED:
            if not options & F.WCONTINUED:
                continue
            code, si = CLD_CONTINUED, F.SIGCONT
        else:
            if not options & F.WSTOPPED or child.state is not State.STOPPED:
                continue
            code, si = CLD_STOPPED, (sr >> 8) & 0xFF
        if not options & F.WNOWAIT:
            child.stop_report = None
        return _Report(child, sr, code, si, child.user_time, child.sys_time,
                       child.maxrss), True
    return None, any_child


def _do_wait(t: Task, idtype: int, ident: int, options: int) -> _Report | None:
    """Find a report or sleep for one; None with WNOHANG; ECHILD if no child
    could ever match."""
    report, any_child = _find(t, idtype, ident, options)
    if report is not None:
        return report
    if not any_child:
        raise Errno(E.ECHILD)
    if options & F.WNOHANG:
        return None
    raise Blocked(t.proc.child_wait)


def _put_rusage(t: Task, addr: int, r: _Report) -> None:
    def tv(seconds: float) -> tuple[int, int]:
        usec = int(seconds * 1_000_000)
        return usec // 1_000_000, usec % 1_000_000

    (us, uu), (ss, su) = tv(r.utime), tv(r.stime)
    t.mm.write(addr, RUSAGE.build(ru_utime_tv_sec=us, ru_utime_tv_usec=uu, ru_stime_tv_sec=ss,
                                  ru_stime_tv_usec=su, ru_maxrss=r.maxrss))


@syscall("wait4", INT, PTR, UINT, PTR)
def wait4(t: Task, pid: int, wstatus: int, options: int, rusage: int) -> int:
    if options & ~WAIT4_OPTIONS:
        raise Errno(E.EINVAL)
    if pid == INT_MIN:
        raise Errno(E.ESRCH)  # -INT_MIN names no group
    if pid == -1:
        idtype, ident = F.P_ALL, 0
    elif pid < 0:
        idtype, ident = F.P_PGID, -pid
    elif pid == 0:
        idtype, ident = F.P_PGID, t.proc.pgid
    else:
        idtype, ident = F.P_PID, pid
    report = _do_wait(t, idtype, ident, options | F.WEXITED)
    if report is None:
        return 0
    # As Linux: the child is already reaped when a bad pointer is found.
    if wstatus:
        put_s32(t, wstatus, report.status)
    if rusage:
        _put_rusage(t, rusage, report)
    return report.child.pid


@syscall("waitid", INT, INT, PTR, UINT, PTR)
def waitid(t: Task, idtype: int, ident: int, infop: int, options: int, rusage: int) -> int:
    if options & ~WAITID_OPTIONS or not options & (F.WEXITED | F.WSTOPPED | F.WCONTINUED):
        raise Errno(E.EINVAL)
    if idtype == F.P_ALL:
        ident = 0
    elif idtype == F.P_PID:
        if ident <= 0:
            raise Errno(E.EINVAL)
    elif idtype == F.P_PGID:
        if ident < 0:
            raise Errno(E.EINVAL)
        if ident == 0:
            ident = t.proc.pgid
    elif idtype == F.P_PIDFD:
        if ident < 0:
            raise Errno(E.EINVAL)
        t.files.get(ident)  # EBADF for no fd at all
        raise Errno(E.EBADF)  # cove has no pidfds, so no fd is one
    else:
        raise Errno(E.EINVAL)
    report = _do_wait(t, idtype, ident, options)
    if report is not None and rusage:
        _put_rusage(t, rusage, report)
    if infop:
        # Only these fields, as Linux's waitid writes them (zeros under WNOHANG
        # when nothing was ready); the rest of the caller's siginfo is untouched.
        if report is None:
            head, ids = (0, 0, 0), (0, 0, 0)
        else:
            head = (F.SIGCHLD, 0, report.code)
            ids = (report.child.pid, report.child.creds.ruid, report.si_status)
        t.mm.write(infop, _CHLD_HEAD.pack(*head))
        t.mm.write(infop + 16, _CHLD_IDS.pack(*ids))
    return 0


# --- process groups and sessions ------------------------------------------------------------
@syscall("setpgid", INT, INT)
def setpgid(t: Task, pid: int, pgid: int) -> int:
    """Linux's rules: EINVAL for a negative group or a non-leader thread,
    ESRCH unless the target is the caller or its child, EACCES for a child
    that has exec'd, EPERM for a child in another session, a session leader,
    or a group that does not exist in the caller's session."""
    me = t.proc
    if pid == 0:
        pid = me.pid
    if pgid == 0:
        pgid = pid
    if pgid < 0:
        raise Errno(E.EINVAL)
    target = find_process(t, pid)
    if target.pid != pid:
        raise Errno(E.EINVAL)  # pid names a thread that does not lead its group
    if target.parent is me:
        if target.sid != me.sid:
            raise Errno(E.EPERM)
        if process.has_execed(target):
            raise Errno(E.EACCES)
    elif target is not me:
        raise Errno(E.ESRCH)
    if target.sid == target.pid:
        raise Errno(E.EPERM)  # a session leader stays in its own group
    if pgid != pid and not any(p.pgid == pgid and p.sid == me.sid
                               for p in t.kernel.processes.values()):
        raise Errno(E.EPERM)
    target.pgid = pgid
    return 0


@syscall("setsid")
def setsid(t: Task) -> int:
    """A new session and group led by the caller; EPERM if a process group
    with the caller's pid already exists (it leads one)."""
    me = t.proc
    if any(p.pgid == me.pid for p in t.kernel.processes.values()):
        raise Errno(E.EPERM)
    me.sid = me.pgid = me.pid
    return me.sid

