"""Resource limits and usage: prlimit64, getrlimit, setrlimit, getrusage.

Limits live per process in ``Process.rlimits`` (a resource missing from the
dict has its default, so a fresh process costs nothing); fork copies the
dict (``proc_info.fork_inherit``). The defaults are Linux's for a process
started by a typical init, scaled to the sandbox: RLIMIT_NPROC and
RLIMIT_SIGPENDING follow Linux's max_threads / 2 for the sandbox's guest
memory size.

Which limits are enforced, and where: RLIMIT_NOFILE (the fd table's size,
set here on every change), RLIMIT_NPROC (fork/clone, kernel/process.py),
RLIMIT_FSIZE (writes, syscalls/fs_iov.py), RLIMIT_STACK (execve's argument
limit), RLIMIT_MEMLOCK (one mlock request at a time, syscalls/mem.py),
RLIMIT_NICE (setpriority). CPU, DATA, AS, RSS, CORE, LOCKS, SIGPENDING,
MSGQUEUE, RTPRIO and RTTIME are kept, reported and inherited exactly but not
enforced. Callers elsewhere read limits with ``rlimit()``.
"""

from __future__ import annotations

from cove.abi import flags as F
from cove.abi.errno import E, Errno
from cove.abi.structs.process import RLIMIT, RUSAGE
from cove.kernel.fdtable import NR_OPEN_DEFAULT, NR_OPEN_MAX
from cove.kernel.syscall import INT, PTR, UINT, syscall
from cove.kernel.syscalls.proc_lookup import capable, find_process

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from cove.kernel.kernel import Kernel
    from cove.kernel.task import Process, Task

INF = F.RLIM_INFINITY
THREAD_SIZE = 16 << 10  # Linux x86-64 kernel stack, the unit of max_threads
MLOCK_LIMIT = 8 << 20
MQ_BYTES_MAX = 819200
STACK_DEFAULT = 8 << 20


def max_threads(k: Kernel) -> int:
    """Linux's set_max_threads() for the sandbox's memory: pages / (8 * THREAD_SIZE)."""
    return max(20, min(k.phys.size // (THREAD_SIZE * 8), 0x3FFFFFFF))


def defaults(k: Kernel) -> dict[int, tuple[int, int]]:
    tasks = max_threads(k) // 2
    return {
        F.RLIMIT_CPU: (INF, INF),
        F.RLIMIT_FSIZE: (INF, INF),
        F.RLIMIT_DATA: (INF, INF),
        F.RLIMIT_STACK: (STACK_DEFAULT, INF),
        F.RLIMIT_CORE: (0, INF),
        F.RLIMIT_RSS: (INF, INF),
        F.RLIMIT_NPROC: (tasks, tasks),
        F.RLIMIT_NOFILE: (NR_OPEN_DEFAULT, NR_OPEN_MAX),
        F.RLIMIT_MEMLOCK: (MLOCK_LIMIT, MLOCK_LIMIT),
        F.RLIMIT_AS: (INF, INF),
        F.RLIMIT_LOCKS: (INF, INF),
        F.RLIMIT_SIGPENDING: (tasks, tasks),
        F.RLIMIT_MSGQUEUE: (MQ_BYTES_MAX, MQ_BYTES_MAX),
        F.RLIMIT_NICE: (0, 0),
        F.RLIMIT_RTPRIO: (0, 0),
        F.RLIMIT_RTTIME: (INF, INF),
    }


def rlimit(proc: Process, resource: int) -> tuple[int, int]:
    """(soft, hard) of ``resource`` for ``proc``; RLIM_INFINITY is all ones."""
    got = proc.rlimits.get(resource)
    return got if got is not None else defaults(proc.kernel)[resource]


def _may_change(t: Task, target: Process) -> bool:
    """check_prlimit_permission: the caller's real ids equal all of the
    target's, or it holds CAP_SYS_RESOURCE (sandbox root)."""
    if target is t.proc or capable(t):
        return True
    c, tc = t.proc.creds, target.creds
    return (c.ruid == tc.ruid == tc.euid == tc.suid) and (c.rgid == tc.rgid == tc.egid == tc.sgid)


def do_prlimit(t: Task, proc: Process, resource: int,
               new: tuple[int, int] | None) -> tuple[int, int]:
    """Linux's do_prlimit: validate, install ``new`` if given; the old limit."""
    if not 0 <= resource < F.RLIM_NLIMITS:
        raise Errno(E.EINVAL)
    old = rlimit(proc, resource)
    if new is not None:
        cur, hard = new
        if cur > hard:
            raise Errno(E.EINVAL)
        if resource == F.RLIMIT_NOFILE and hard > NR_OPEN_MAX:
            raise Errno(E.EPERM)
        if hard > old[1] and not capable(t):
            raise Errno(E.EPERM)
        proc.rlimits[resource] = (cur, hard)
        if resource == F.RLIMIT_NOFILE:
            for th in proc.threads:
                th.files.limit = cur
    return old


def _read(t: Task, addr: int) -> tuple[int, int]:
    cur, hard = RLIMIT.unpack_from(t.mm.read(addr, RLIMIT.size))
    return int(cur), int(hard)


@syscall("prlimit64", INT, UINT, PTR, PTR)
def prlimit64(t: Task, pid: int, resource: int, new: int, old: int) -> int:
    limit = _read(t, new) if new else None
    proc = find_process(t, pid)
    if not _may_change(t, proc):
        raise Errno(E.EPERM)
    prev = do_prlimit(t, proc, resource, limit)
    if old:
        t.mm.write(old, RLIMIT.pack(*prev))
    return 0


@syscall("getrlimit", UINT, PTR)
def getrlimit(t: Task, resource: int, addr: int) -> int:
    prev = do_prlimit(t, t.proc, resource, None)
    t.mm.write(addr, RLIMIT.pack(*prev))
    return 0


@syscall("setrlimit", UINT, PTR)
def setrlimit(t: Task, resource: int, addr: int) -> int:
    do_prlimit(t, t.proc, resource, _read(t, addr))
    return 0


# --- usage ------------------------------------------------------------------------------
def maxrss_kib(proc: Process) -> int:
    """The highest resident size seen, in KiB (updated from the current one)."""
    if proc.alive:
        proc.maxrss = max(proc.maxrss, proc.mm.resident_pages() * 4)
    return proc.maxrss


def _timeval(seconds: float) -> tuple[int, int]:
    usec = int(seconds * 1_000_000)
    return usec // 1_000_000, usec % 1_000_000


@syscall("getrusage", INT, PTR)
def getrusage(t: Task, who: int, usage: int) -> int:
    p = t.proc
    if who == F.RUSAGE_SELF:
        user, system, rss = p.user_time, p.sys_time, maxrss_kib(p)
    elif who == F.RUSAGE_THREAD:
        user, system, rss = t.utime, t.stime, maxrss_kib(p)
    elif who == F.RUSAGE_CHILDREN:
        user, system, rss = p.child_user_time, p.child_sys_time, p.child_maxrss
    else:
        raise Errno(E.EINVAL)
    (us, uu), (ss, su) = _timeval(user), _timeval(system)
    t.mm.write(usage, RUSAGE.build(ru_utime_tv_sec=us, ru_utime_tv_usec=uu, ru_stime_tv_sec=ss,
                                   ru_stime_tv_usec=su, ru_maxrss=rss))
    return 0
