"""Who am I and what am I running on: exit, pids, process groups and sessions
(queries), uname, sethostname, sysinfo, getrandom, personality, and the
thread bookkeeping calls glibc makes at start-up (set_tid_address, robust
lists, rseq).

Every number a guest sees here is the sandbox's: pids from the sandbox's
process table (init's parent is 0), memory from the sandbox's guest memory,
uptime since the sandbox booted. Nothing about the host leaks through.
"""

from __future__ import annotations

import os
import time

from cove.abi.errno import E, Errno
from cove.abi.structs.process import SI_LOAD_SHIFT, SYSINFO, UTSNAME
from cove.kernel import process
from cove.kernel.kernel import NORETURN
from cove.kernel.physmem import PAGE_SIZE
from cove.kernel.syscall import INT, PTR, UINT, ULONG, enosys, syscall
from cove.kernel.syscalls.proc_lookup import capable, find_process, find_task, put_u64

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from cove.kernel.task import Process, Task

SYSNAME = "Linux"
RELEASE = "6.1.0-cove"
VERSION = "#1 SMP cove"
MACHINE = "x86_64"
DOMAINNAME = "(none)"
HOST_NAME_MAX = 64  # __NEW_UTS_LEN

PER_MASK = 0xFF
PER_LINUX32 = 0x0008

GRND_NONBLOCK, GRND_RANDOM, GRND_INSECURE = 0x1, 0x2, 0x4
# Linux caps one read at MAX_RW_COUNT (2 GiB - 4 KiB); cove caps it lower so
# one call cannot hold the sandbox for long. Callers loop on short reads.
GETRANDOM_MAX = 32 << 20
_RANDOM_CHUNK = 64 << 10

ROBUST_LIST_HEAD_SIZE = 24


# --- exit --------------------------------------------------------------------------
@syscall("exit", INT)
def exit(t: Task, status: int) -> object:
    """Only this thread ends; the last thread out ends the process."""
    t.kernel.exit_task(t, status)
    return NORETURN


@syscall("exit_group", INT)
def exit_group(t: Task, status: int) -> object:
    t.kernel.exit_group(t.proc, (status & 0xFF) << 8)
    return NORETURN


# --- ids ---------------------------------------------------------------------------
@syscall("getpid")
def getpid(t: Task) -> int:
    return t.proc.pid


@syscall("gettid")
def gettid(t: Task) -> int:
    return t.tid


@syscall("getppid")
def getppid(t: Task) -> int:
    parent = t.proc.parent
    return parent.pid if parent is not None else 0


@syscall("getpgrp")
def getpgrp(t: Task) -> int:
    return t.proc.pgid


@syscall("getpgid", INT)
def getpgid(t: Task, pid: int) -> int:
    return find_process(t, pid).pgid


@syscall("getsid", INT)
def getsid(t: Task, pid: int) -> int:
    return find_process(t, pid).sid


# --- the machine -------------------------------------------------------------------
def _field(s: str) -> bytes:
    return os.fsencode(s)[:64]


@syscall("uname", PTR)
def uname(t: Task, buf: int) -> int:
    machine = "i686" if t.proc.personality & PER_MASK == PER_LINUX32 else MACHINE
    t.mm.write(buf, UTSNAME.pack(_field(SYSNAME), _field(t.kernel.hostname), _field(RELEASE),
                                 _field(VERSION), _field(machine), _field(DOMAINNAME)))
    return 0


@syscall("sethostname", PTR, INT)
def sethostname(t: Task, name: int, length: int) -> int:
    if not capable(t):
        raise Errno(E.EPERM)
    if not 0 <= length <= HOST_NAME_MAX:
        raise Errno(E.EINVAL)
    raw = t.mm.read(name, length)
    # uname reports the name up to its first NUL, as the kernel's C string does.
    t.kernel.hostname = os.fsdecode(raw.split(b"\0", 1)[0])
    return 0


def uptime(t: Task) -> float:
    """Seconds since the sandbox booted (also what CLOCK_MONOTONIC counts)."""
    return time.monotonic() - t.kernel.boot_monotonic


@syscall("sysinfo", PTR)
def sysinfo(t: Task, info: int) -> int:
    """The sandbox's own numbers. Load averages are 0: cove keeps none."""
    k = t.kernel
    phys = k.phys
    loads = 0 << SI_LOAD_SHIFT
    t.mm.write(info, SYSINFO.build(
        uptime=int(uptime(t)), loads0=loads, loads1=loads, loads2=loads,
        totalram=phys.size, freeram=phys.frames_free * PAGE_SIZE,
        procs=min(len(k.tasks), 0xFFFF), mem_unit=1))
    return 0


@syscall("getrandom", PTR, ULONG, UINT)
def getrandom(t: Task, buf: int, count: int, flags: int) -> int:
    """Bytes from the host's CSPRNG (always seeded by the time cove runs, so
    GRND_NONBLOCK never has to fail with EAGAIN)."""
    if flags & ~(GRND_NONBLOCK | GRND_RANDOM | GRND_INSECURE):
        raise Errno(E.EINVAL)
    if flags & GRND_INSECURE and flags & GRND_RANDOM:
        raise Errno(E.EINVAL)
    count = min(count, GETRANDOM_MAX)
    done = 0
    while done < count:
        # Chunks end on page boundaries so a fault leaves an exact count.
        addr = buf + done
        n = min(count - done, _RANDOM_CHUNK - (addr % PAGE_SIZE))
        try:
            t.mm.write(addr, os.urandom(n))
        except Errno:
            done += _written_before_fault(t, addr, n)
            if done == 0:
                raise
            return done
        done += n
    return done


def _written_before_fault(t: Task, addr: int, n: int) -> int:
    """How much of a failed write reached guest memory (whole pages before the bad one)."""
    good = 0
    while good < n:
        step = min(n - good, PAGE_SIZE - ((addr + good) % PAGE_SIZE))
        try:
            t.mm.write(addr + good, os.urandom(step))
        except Errno:
            return good
        good += step
    return good


@syscall("personality", UINT)
def personality(t: Task, persona: int) -> int:
    """Recorded and reported; uname honours PER_LINUX32. Execution domains and
    the layout flags (ADDR_NO_RANDOMIZE ...) change nothing else in cove."""
    old = t.proc.personality
    if persona != 0xFFFFFFFF:
        t.proc.personality = persona
    return old


# --- start-up bookkeeping ---------------------------------------------------------------
@syscall("set_tid_address", PTR)
def set_tid_address(t: Task, tidptr: int) -> int:
    t.clear_child_tid = tidptr
    return t.tid


@syscall("set_robust_list", PTR, ULONG)
def set_robust_list(t: Task, head: int, length: int) -> int:
    if length != ROBUST_LIST_HEAD_SIZE:
        raise Errno(E.EINVAL)
    t.robust_list = (head, length)
    return 0


def may_inspect(t: Task, target: Task) -> bool:
    """Linux's ptrace_may_access(PTRACE_MODE_READ_REALCREDS): same thread group,
    or the same real, effective and saved ids and a dumpable target, or root."""
    if target.proc is t.proc or capable(t):
        return True
    c, tc = t.proc.creds, target.proc.creds
    same = (c.ruid == tc.ruid == tc.euid == tc.suid and c.rgid == tc.rgid == tc.egid == tc.sgid)
    return same and bool(target.proc.dumpable)


@syscall("get_robust_list", INT, PTR, PTR)
def get_robust_list(t: Task, pid: int, head_ptr: int, len_ptr: int) -> int:
    target = find_task(t, pid)
    if not may_inspect(t, target):
        raise Errno(E.EPERM)
    put_u64(t, len_ptr, ROBUST_LIST_HEAD_SIZE)
    put_u64(t, head_ptr, target.robust_list[0])
    return 0


# glibc registers an rseq area when the kernel offers one and copes with ENOSYS;
# cove has no per-cpu fast paths to abort, so it offers none.
enosys("rseq", note="restartable sequences are not offered; glibc falls back")


# --- fork and exec ------------------------------------------------------------------
def fork_inherit(parent: Process, child: Process) -> None:
    """What a forked child takes over of the state these calls keep (call
    from clone/fork). pdeathsig and subreaper status are not inherited."""
    child.nice = parent.nice
    child.personality = parent.personality
    child.no_new_privs = parent.no_new_privs
    child.dumpable = parent.dumpable
    child.rlimits = dict(parent.rlimits)


def exec_reset(proc: Process, *, setid: bool = False) -> None:
    """What execve resets: a fresh mm forgets membarrier registrations and is
    dumpable again; a set-id exec also clears pdeathsig (as Linux does)."""
    proc.membarrier = 0
    proc.dumpable = 0 if setid else 1
    if setid:
        proc.pdeathsig = 0


process.EXEC_HOOKS.append(lambda t: exec_reset(t.proc))  # cove's exec never changes ids
