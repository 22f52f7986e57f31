"""Native mode of a host pipe: its reader's and its writer's calls run in the
host kernel with no stop at all (docs/userland-pipes.md, "Steps 2 and 3").

The platform's fast path (cove.kernel.hostpipe) still sees every call of a
host pipe as a seccomp notification and lets the host run it. A stream of
identical calls on both ends (the same fd, buffer and count, as `dd`, `cat`
and most copy loops make) can skip even that: the platform gives each of
the two guest threads a filter that lets exactly that call through
(``Cpu.allow_native``; cove.platform.userland.bpf), and the host blocks and
wakes the two ends itself, as Linux would.

What the host then does without the North is only what hostpipe.py already
lets it do per call (move bytes), plus blocking. The North's rules keep
holding because a pipe is in native mode only while nothing else can look at
it, and leaves it (``leave``) before anything else does:

- exactly one reader and one writer description, each held by one fd of a
  single-threaded process whose fd table and address space no other
  process shares (so no other task can use its stub's fd numbers), both
  blocking (no O_NONBLOCK, no packet mode), no epoll instance watching them,
  nobody sleeping on the pipe's queues: so no one but the two threads can
  read, write, poll or wait on it, and the queues need no wake-ups;
- a syscall of either thread that could change what the rule relies on
  ends native mode first (``keeps``: anything but plain I/O on other fds,
  time, ids, futexes, signal masks and handlers' returns: so close, dup,
  fcntl, ioctl, poll, mmap, munmap, mprotect, madvise, brk, fork, exec,
  exit...), and so does a change of either end (close, a new opener through
  /proc), any North read or write of the pipe, and a change of either
  address space made by another process. Faults and kicks (signals, stops,
  timeslices) do not: a fault only ever maps a page or makes it writable,
  never takes away what a rule's buffer has. Leaving stops the other thread
  at once (a native call it is blocked in ends as Linux's ERESTARTSYS and
  restarts through the North, ``UserlandCpu._cut_short``), notifies both
  queues as if bytes had moved, and the North decides from then on: EOF
  once the writer has gone, EPIPE once the reader has, EINTR or a restart
  for a signal, as always.

A pipe enters native mode after two consecutive fast-path grants of the same
call on each end (``offer``), only with the concurrent loop (``COVE_CPUS`` >=
2: the classic loop waits for the one thread it runs, which must not block in
the host), and not with ``COVE_NATIVE_PIPES=0``.
"""

from __future__ import annotations

import os

from cove.abi.sysnums import NR
from cove.fs.file import O_DIRECT, O_NONBLOCK

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from cove.kernel.hostpipe import HostPipe, NativePipes
    from cove.kernel.task import Task

NR_READ, NR_WRITE = 0, 1
STREAK = 2  # identical grants on each end before the pipe goes native
ENABLED = os.environ.get("COVE_NATIVE_PIPES", "1") != "0"

# Syscalls of a thread in native mode that leave it on: they touch neither
# fd tables, nor memory maps, nor the pipe (its own fd is its only one, and
# the North's reads and writes of it end native mode in HostPipe itself).
_KEEPS = frozenset(int(NR[name]) for name in (
    "read", "write", "pread64", "pwrite64", "readv", "writev", "preadv", "pwritev", "lseek",
    "stat", "fstat", "lstat", "newfstatat", "gettimeofday", "time", "clock_gettime",
    "clock_getres", "clock_nanosleep", "nanosleep", "sched_yield", "futex", "getrandom",
    "getpid", "gettid", "getppid", "getuid", "getgid", "geteuid", "getegid", "rt_sigaction",
    "rt_sigprocmask", "rt_sigreturn",
))


def keeps(nr: int) -> bool:
    """Whether a North-handled syscall ``nr`` of a thread in native mode leaves it on."""
    return nr in _KEEPS


class NativeMode:
    """One pipe in native mode: its two threads and the call each runs natively."""

    __slots__ = ("pipe", "tasks")

    def __init__(self, pipe: HostPipe, tasks: tuple[Task, Task]) -> None:
        self.pipe = pipe
        self.tasks = tasks


def offer(np: NativePipes, t: Task, fd: int, write: bool, buf: int, count: int) -> None:
    """The platform let ``t``'s read/write of ``count`` bytes at ``buf`` on
    ``fd`` run natively and could run it without a stop (its pages are
    mapped as the call needs, the stub's fd is a blocking copy of the host
    end): count the streak, and put the pipe in native mode once both ends
    have one."""
    k = np.kernel
    if not ENABLED or k.live_tasks is None:
        return
    f = t.files.files.get(fd)
    p = getattr(f, "pipe", None)
    if p is None or getattr(p, "native", 0) is not None:
        return  # not a host pipe, or native already (a call made before its thread moved)
    key = (t, fd, buf, count)
    streak = p.streak
    mine = streak[write]
    if mine is not None and mine[0] == key:
        mine[1] += 1
    else:
        mine = streak[write] = [key, 1]
    other = streak[not write]
    n = mine[1]
    if n < STREAK or other is None or other[1] < STREAK or n & (n - 1):
        return  # checked at streaks of 2, 4, 8...: a pipe that does not qualify costs little
    rkey, wkey = (other[0], key) if write else (key, other[0])
    if not _qualifies(np, p, rkey, wkey):
        return
    allow = getattr(k.cpu, "allow_native", None)
    if allow is None:
        return  # a cpu that cannot run a rule
    rt, wt = rkey[0], wkey[0]
    mode = p.native = NativeMode(p, (rt, wt))
    np.native_modes += 1
    rt.native_mode = wt.native_mode = mode
    allow(rt.ctx, (NR_READ, rkey[1], rkey[2], rkey[3]), p.rd_end)
    allow(wt.ctx, (NR_WRITE, wkey[1], wkey[2], wkey[3]), p.wr_end)


def _qualifies(np: NativePipes, p: HostPipe, rkey: tuple, wkey: tuple) -> bool:
    from cove.kernel.task import State

    k = np.kernel
    if p.readers != 1 or p.writers != 1 or p.rd_q.waiters or p.wr_q.waiters or \
            p.open_rd_q.waiters or p.open_wr_q.waiters or p.read_grants or p.write_grants:
        return False
    rt, wt = rkey[0], wkey[0]
    if rt.proc is wt.proc:
        return False  # threads of one process take turns in the guest
    for t, fd, want in ((rt, rkey[1], "readable"), (wt, wkey[1], "writable")):
        f = t.files.files.get(fd)
        if getattr(f, "pipe", None) is not p or not getattr(f, want) or f.fd_refs != 1 or \
                f.flags & (O_NONBLOCK | O_DIRECT) or _watched(f):
            return False
        if t.state is State.DEAD or t.native_mode is not None or t.pending.mask or \
                t.proc.shared_pending.mask:
            return False
        if t.blocked_call is not None and not keeps(t.blocked_call[0].nr):
            return False  # a call that will finish later (a sendmsg passing the fd...)
        if sum(1 for o in t.proc.threads if o.state is not State.DEAD) != 1:
            return False
        if any((o.files is t.files or o.mm is t.mm) for o in k.tasks.values()
               if o.proc is not t.proc):
            # Another process shares the fd table (CLONE_FILES) or the address
            # space (CLONE_VM, vfork: the same stub, whose fd numbers it would
            # fill with its own files while this thread's rule names one).
            return False
    return True


def _watched(f: object) -> bool:
    """Some epoll instance watches ``f`` (it would miss the host's events)."""
    from cove.kernel import epoll

    return bool(epoll.sets_of(f))  # type: ignore[arg-type]


def leave(np: NativePipes, mode: NativeMode) -> None:
    """End native mode (see module doc): the North decides again from now on."""
    p = mode.pipe
    if p.native is not mode:
        return
    p.native = None
    p.streak = [None, None]
    k = np.kernel
    for t in mode.tasks:
        t.native_mode = None
        k.cpu.allow_native(t.ctx, None)  # type: ignore[attr-defined]  # offer checked it
        k.stop_live(t)
    p.rd_q.notify()
    p.wr_q.notify()
