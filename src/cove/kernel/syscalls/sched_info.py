"""Scheduling information: sched_yield, CPU affinity, getcpu, scheduling
policy queries, and nice values (getpriority/setpriority).

A sandbox has one CPU (cpu 0, node 0): every guest thread runs on the host
thread that runs the kernel. Affinity masks therefore have one bit, every
thread is SCHED_OTHER with priority 0, and nice values are kept per process,
checked with Linux's permission rules and reported, but the round-robin
scheduler does not weigh them.

sched_yield wakes whatever is due (timers, expired sleeps, ready host fds);
the run loop then puts the caller at the back of the run queue whenever
another thread is runnable, so those run before it continues.
"""

from __future__ import annotations

from cove.abi import flags as F
from cove.abi.errno import E, Errno
from cove.abi.structs.process import SCHED_PARAM
from cove.kernel.syscall import INT, PTR, UINT, syscall
from cove.kernel.syscalls.limits import rlimit
from cove.kernel.syscalls.proc_lookup import capable, find_process, put_u32

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from cove.kernel.task import Process, Task

NR_CPUS = 1
CPUMASK_SIZE = 8  # bytes the kernel copies: BITS_TO_LONGS(nr_cpu_ids) longs
NICE_MIN, NICE_MAX = -20, 19


@syscall("sched_yield")
def sched_yield(t: Task) -> int:
    t.kernel.sched.poll()
    return 0


def _same_owner(t: Task, target: Process) -> bool:
    """check_same_owner: the caller's euid is the target's euid or real uid."""
    c, tc = t.proc.creds, target.creds
    return c.euid in (tc.euid, tc.ruid) or capable(t)


@syscall("sched_getaffinity", INT, UINT, PTR)
def sched_getaffinity(t: Task, pid: int, length: int, mask: int) -> int:
    if length * 8 < NR_CPUS or length % 8:
        raise Errno(E.EINVAL)
    find_process(t, pid)
    n = min(length, CPUMASK_SIZE)
    t.mm.write(mask, (1).to_bytes(n, "little"))
    return n


@syscall("sched_setaffinity", INT, UINT, PTR)
def sched_setaffinity(t: Task, pid: int, length: int, mask: int) -> int:
    n = min(length, CPUMASK_SIZE)
    bits = int.from_bytes(t.mm.read(mask, n), "little") if n else 0
    target = find_process(t, pid)
    if not _same_owner(t, target):
        raise Errno(E.EPERM)
    if not bits & ((1 << NR_CPUS) - 1):
        raise Errno(E.EINVAL)  # no cpu this sandbox has
    return 0


@syscall("getcpu", PTR, PTR, PTR)
def getcpu(t: Task, cpu: int, node: int, cache: int) -> int:
    if cpu:
        put_u32(t, cpu, 0)
    if node:
        put_u32(t, node, 0)
    return 0


@syscall("sched_getscheduler", INT)
def sched_getscheduler(t: Task, pid: int) -> int:
    if pid < 0:
        raise Errno(E.EINVAL)
    find_process(t, pid)
    return F.SCHED_NORMAL


@syscall("sched_getparam", INT, PTR)
def sched_getparam(t: Task, pid: int, param: int) -> int:
    if param == 0 or pid < 0:
        raise Errno(E.EINVAL)
    find_process(t, pid)
    t.mm.write(param, SCHED_PARAM.pack(0))
    return 0


_RT = (F.SCHED_FIFO, F.SCHED_RR)
_OTHER = (F.SCHED_NORMAL, F.SCHED_BATCH, F.SCHED_IDLE, F.SCHED_DEADLINE)


@syscall("sched_get_priority_max", INT)
def sched_get_priority_max(t: Task, policy: int) -> int:
    if policy in _RT:
        return 99
    if policy in _OTHER:
        return 0
    raise Errno(E.EINVAL)


@syscall("sched_get_priority_min", INT)
def sched_get_priority_min(t: Task, policy: int) -> int:
    if policy in _RT:
        return 1
    if policy in _OTHER:
        return 0
    raise Errno(E.EINVAL)


# --- nice ---------------------------------------------------------------------------
def _targets(t: Task, which: int, who: int) -> list[Process]:
    """The processes a (which, who) pair names, Linux's way; may be empty."""
    k = t.kernel
    if which == F.PRIO_PROCESS:
        try:
            proc = find_process(t, who)
        except Errno:
            return []
        return [proc] if proc.alive else []
    if which == F.PRIO_PGRP:
        pgid = who or t.proc.pgid
        return [p for p in k.processes.values() if p.alive and p.pgid == pgid]
    if which == F.PRIO_USER:
        uid = who or t.proc.creds.ruid
        return [p for p in k.processes.values() if p.alive and p.creds.ruid == uid]
    raise Errno(E.EINVAL)


@syscall("getpriority", INT, INT)
def getpriority(t: Task, which: int, who: int) -> int:
    """Returns 20 - nice (1..40) of the highest-priority match: the raw ABI,
    which glibc turns back into a nice value."""
    procs = _targets(t, which, who)
    if not procs:
        raise Errno(E.ESRCH)
    return max(20 - p.nice for p in procs)


@syscall("setpriority", INT, INT, INT)
def setpriority(t: Task, which: int, who: int, niceval: int) -> int:
    procs = _targets(t, which, who)
    niceval = max(NICE_MIN, min(NICE_MAX, niceval))
    error = E.ESRCH
    for p in procs:
        c, tc = t.proc.creds, p.creds
        if not (tc.ruid == c.euid or tc.euid == c.euid or capable(t)):
            error = E.EPERM
            continue
        # Lowering nice needs CAP_SYS_NICE or an RLIMIT_NICE that allows it.
        if niceval < p.nice and not (20 - niceval <= rlimit(p, F.RLIMIT_NICE)[0] or capable(t)):
            error = E.EACCES
            continue
        if error == E.ESRCH:
            error = 0
        p.nice = niceval
    if error:
        raise Errno(error)
    return 0
