"""Tasks (guest threads) and processes (thread groups).

A ``Task`` is what the scheduler runs: a platform register context plus the
per-thread kernel state. A ``Process`` is a thread group: pid, memory map,
signal handlers, parent/children, exit status. File tables and filesystem
context are separate objects so ``clone`` can share or copy each, as Linux does.
"""

from __future__ import annotations

import enum
import time

from cove.dataclass import dataclass, field
from cove.fs.vfs import PathContext
from cove.kernel.fdtable import FdTable
from cove.kernel.mm import MemoryMap
from cove.kernel.wait import Blocked, WaitQueue

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from typing import Any

    from cove.kernel.kernel import Kernel
    from cove.kernel.nativemode import NativeMode
    from cove.kernel.syscall import Syscall
    from cove.platform.base import Context

NSIG = 64


class State(enum.Enum):
    RUNNABLE = "R"
    BLOCKED = "S"
    STOPPED = "T"
    ZOMBIE = "Z"
    DEAD = "X"


@dataclass(slots=True)
class Creds:
    """The full credential set of a process (real, effective, saved, fs ids)."""

    ruid: int = 0
    euid: int = 0
    suid: int = 0
    fsuid: int = 0
    rgid: int = 0
    egid: int = 0
    sgid: int = 0
    fsgid: int = 0
    groups: tuple[int, ...] = ()

    def copy(self) -> Creds:
        return Creds(self.ruid, self.euid, self.suid, self.fsuid, self.rgid, self.egid,
                     self.sgid, self.fsgid, self.groups)


@dataclass(slots=True)
class SigAction:
    handler: int = 0  # SIG_DFL = 0, SIG_IGN = 1, else a guest address
    flags: int = 0
    restorer: int = 0
    mask: int = 0


@dataclass(slots=True)
class SigPending:
    """Pending signals: a bit set plus queued siginfo records (RT signals queue)."""

    mask: int = 0
    infos: list[tuple[int, bytes]] = field(default_factory=list)  # (signo, 128-byte siginfo)

    def add(self, signo: int, info: bytes) -> None:
        bit = 1 << (signo - 1)
        if signo < 32 and self.mask & bit:
            return  # standard signals do not queue
        self.mask |= bit
        self.infos.append((signo, info))

    def take(self, signo: int) -> bytes | None:
        for i, (s, info) in enumerate(self.infos):
            if s == signo:
                del self.infos[i]
                if not any(s2 == signo for s2, _ in self.infos):
                    self.mask &= ~(1 << (signo - 1))
                return info
        self.mask &= ~(1 << (signo - 1))
        return None


class SigHand:
    """Signal dispositions, shared by the threads of a process (CLONE_SIGHAND)."""

    __slots__ = ("actions",)

    def __init__(self) -> None:
        self.actions = [SigAction() for _ in range(NSIG + 1)]

    def copy(self) -> SigHand:
        new = SigHand()
        new.actions = [SigAction(a.handler, a.flags, a.restorer, a.mask) for a in self.actions]
        return new


class Process:
    """A thread group."""

    def __init__(self, kernel: Kernel, pid: int, parent: Process | None, mm: MemoryMap,
                 creds: Creds) -> None:
        self.kernel = kernel
        self.pid = pid
        self.parent = parent
        self.children: list[Process] = []
        self.threads: list[Task] = []
        self.mm = mm
        self.creds = creds
        self.pgid = parent.pgid if parent else pid
        self.sid = parent.sid if parent else pid
        self.sighand = SigHand()
        self.shared_pending = SigPending()
        self.exit_code: int | None = None  # wait status once a zombie
        self.exit_signal = 17  # SIGCHLD to the parent on exit
        self.state = State.RUNNABLE
        self.child_wait = WaitQueue()  # wait4 sleeps here
        self.comm = ""
        self.exe = ""  # sandbox path of the executable (/proc/<pid>/exe)
        self.image: Any = None  # what the loader reported (argv/env ranges, auxv)
        self.rlimits: dict[int, tuple[int, int]] = {}
        self.itimers: dict[int, Any] = {}
        self.start_time = 0.0
        self.user_time = 0.0
        self.sys_time = 0.0
        self.stop_report: int | None = None  # pending WSTOPPED/WCONTINUED status
        # Set through prctl/setpriority/personality/membarrier/getrusage (the
        # syscalls.proc_info family; its fork_inherit/exec_reset say which
        # survive fork and execve).
        self.nice = 0
        self.personality = 0
        self.dumpable = 1
        self.no_new_privs = False
        self.child_subreaper = False  # orphans below us are reparented here
        self.pdeathsig = 0  # sent to this process when its parent exits
        self.membarrier = 0  # MEMBARRIER_CMD_REGISTER_* done on this mm
        self.maxrss = 0  # KiB, highest resident size seen (ru_maxrss)
        self.child_user_time = 0.0  # waited-for descendants (RUSAGE_CHILDREN, times)
        self.child_sys_time = 0.0
        self.child_maxrss = 0  # KiB

    @property
    def alive(self) -> bool:
        return self.exit_code is None

    def __repr__(self) -> str:
        return f"<Process {self.pid} {self.comm!r}>"


class Task:
    """One guest thread."""

    # A host pipe in native mode whose reader or writer this is (cove.kernel.nativemode).
    native_mode: NativeMode | None = None
    # Bytes a native write had moved when it was cut short: added to the
    # result of the rest, which the North makes (UserlandCpu, Kernel.syscall).
    write_carry = 0

    def __init__(self, kernel: Kernel, tid: int, proc: Process, ctx: Context,
                 files: FdTable, fs: PathContext) -> None:
        self.kernel = kernel
        self.tid = tid
        self.proc = proc
        self.ctx = ctx
        self.files = files
        self.fs = fs
        self.state = State.RUNNABLE
        self.sigmask = 0
        self.pending = SigPending()
        self.saved_sigmask: int | None = None  # restored after rt_sigsuspend/ppoll handler
        # ss_sp, ss_flags, ss_size as registered (cove.kernel.altstack); none is
        # size 0, with flags 0 as Linux's first process has (threads get SS_DISABLE).
        self.altstack = (0, 0, 0)
        self.clear_child_tid = 0
        self.robust_list = (0, 0)
        # The syscall this task is blocked in, re-run when it wakes.
        self.blocked_call: tuple[Syscall, tuple[int, ...]] | None = None
        self.blocked_on: Blocked | None = None
        self.woken = False
        self.interrupted = False  # a signal arrived while blocked
        self.timed_out = False
        self.restart_nr: int | None = None  # the interrupted call, if it may restart
        self.fault_info = (0, 0, 0)  # trapno, error code, cr2 of the last fault signal
        self.futex_woken = False
        self.exit_code = 0
        self.comm = proc.comm
        self.utime = 0.0  # seconds in guest code (CLOCK_THREAD_CPUTIME_ID)
        self.stime = 0.0  # seconds in cove on its behalf
        self.start_time = time.monotonic()  # /proc/<pid>/task/<tid>/stat starttime
        self.nvcsw = 0  # times it blocked: voluntary context switches (/proc status)
        self.nivcsw = 0  # times it was preempted while runnable: involuntary ones

    @property
    def mm(self) -> MemoryMap:
        return self.proc.mm

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wake(self) -> None:
        """Make a blocked task runnable (it re-runs its syscall)."""
        if self.state is State.BLOCKED:
            self.kernel.sched.wake(self)

    def __repr__(self) -> str:
        return f"<Task {self.tid} of {self.proc.pid}>"
