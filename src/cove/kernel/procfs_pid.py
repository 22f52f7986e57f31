"""The contents of ``/proc/<pid>/...`` files, rendered from the kernel's state.

Layouts follow Linux 6.1 (fs/proc/array.c, base.c): ``status`` line by line,
``stat`` with all 52 fields in order, ``statm`` in pages, ``limits`` in its
fixed-width table, ``cmdline``/``environ`` read from the guest's own memory
between the bounds exec recorded (so a program that rewrites its argv, as
``setproctitle`` does, shows the new text). Every number is the sandbox's.

Not tracked by cove, shown as 0: page-fault counts (minflt/majflt), locked and
pinned memory, swap. ``VmPeak``/``VmHWM`` are high-water marks sampled when
they are read (and by getrusage), not at every mapping change.
"""

from __future__ import annotations

import struct
from weakref import WeakKeyDictionary

from cove.abi import flags as F
from cove.abi.errno import Errno
from cove.abi.structs.clock import USER_HZ
from cove.kernel.physmem import PAGE_SHIFT, PAGE_SIZE
from cove.kernel.procfs_mem import VmStats, vm_stats
from cove.kernel.task import NSIG, State

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from cove.kernel.mm import MemoryMap
    from cove.kernel.task import Process, Task

CAP_LAST_CAP = 40  # CAP_CHECKPOINT_RESTORE, as cove.kernel.syscalls.creds
CAP_FULL = (1 << (CAP_LAST_CAP + 1)) - 1
PF_EXITING = 0x4
PF_FORKNOEXEC = 0x40
PTS0_DEV = 136 << 8  # new_encode_dev(MKDEV(136, 0)): /dev/pts/0, the sandbox's terminal
OOM_SCORE_ADJ_MIN, OOM_SCORE_ADJ_MAX = -1000, 1000

_STATES = {"R": "R (running)", "S": "S (sleeping)", "T": "T (stopped)",
           "Z": "Z (zombie)", "X": "X (dead)"}
_vm_peak: WeakKeyDictionary[Process, int] = WeakKeyDictionary()
# (oom_score_adj, oom_score_adj_min) per process; inherited at fork (procfs registers
# the hook), kept across exec, as Linux keeps them in signal_struct.
oom_adj: WeakKeyDictionary[Process, tuple[int, int]] = WeakKeyDictionary()


# --- states and small facts ----------------------------------------------------------
def leader(p: Process) -> Task | None:
    """The thread whose state /proc/<pid> reports: the group leader, else any."""
    for th in p.threads:
        if th.tid == p.pid:
            return th
    return p.threads[0] if p.threads else None


def state_letter(p: Process, th: Task | None) -> str:
    if not p.alive:
        return "Z"
    if p.state is State.STOPPED or (th is not None and th.state is State.STOPPED):
        return "T"
    if th is None:
        return "Z"  # the leader exited while other threads run
    return "X" if th.state is State.DEAD else th.state.value


def _mask(bits: int) -> str:
    return f"{bits & ((1 << NSIG) - 1):016x}"


def sig_sets(p: Process) -> tuple[int, int]:
    """(ignored, caught) signal bit sets of ``p``'s handlers."""
    ign = cgt = 0
    for signo in range(1, NSIG + 1):
        h = p.sighand.actions[signo].handler
        if h == F.SIG_IGN:
            ign |= 1 << (signo - 1)
        elif h != F.SIG_DFL:
            cgt |= 1 << (signo - 1)
    return ign, cgt


def fd_size(top: int) -> int:
    """Linux's fd table size for a highest fd of ``top`` (64, then 128 * 2^k)."""
    if top < 64:
        return 64
    n = top // 128 + 1
    return (1 << (n - 1).bit_length()) * 128


def _sigq(p: Process) -> str:
    from cove.kernel.syscalls.limits import rlimit

    uid = p.creds.ruid
    queued = 0
    for q in p.kernel.processes.values():
        if q.alive and q.creds.ruid == uid:
            queued += len(q.shared_pending.infos) + sum(len(th.pending.infos)
                                                         for th in q.threads)
    return f"{queued}/{rlimit(p, F.RLIMIT_SIGPENDING)[0]}"


def ctty(p: Process) -> tuple[int, int]:
    """(tty_nr, tpgid): the sandbox's terminal, if it is ``p``'s controlling one."""
    from cove.fs.devfs import DEV_TTY

    # The terminal belongs to the kernel's host stdio, whose /dev/tty opener is bound to it.
    opener = p.kernel.vfs.device_openers.get(DEV_TTY)
    term = getattr(getattr(opener, "__self__", None), "ctty", None)
    if term is None or not term.is_ctty_of(p):
        return 0, -1
    return PTS0_DEV, term.pgrp if term.pgrp is not None else -1


def _ticks(seconds: float) -> int:
    return int(seconds * USER_HZ)


def memory(p: Process) -> VmStats | None:
    return vm_stats(p.mm, p.image) if p.alive else None


def _peaks(p: Process, vm: VmStats) -> tuple[int, int]:
    """(VmPeak bytes, VmHWM KiB), raised to the current values."""
    from cove.kernel.syscalls.limits import maxrss_kib

    peak = max(_vm_peak.get(p, 0), vm.size)
    _vm_peak[p] = peak
    return peak, max(maxrss_kib(p), vm.rss * (PAGE_SIZE >> 10))


# --- status ---------------------------------------------------------------------------
def status(p: Process, th: Task | None, umask: int | None) -> str:
    c = p.creds
    letter = state_letter(p, th)
    tid = th.tid if th is not None else p.pid
    ppid = p.parent.pid if p.parent is not None else 0
    name = (th.comm if th is not None else p.comm).replace("\\", "\\\\").replace("\n", "\\n")
    files = th.files.files if th is not None else {}
    lines = [f"Name:\t{name}"]
    if umask is not None:
        lines.append(f"Umask:\t{umask:04o}")
    lines += [f"State:\t{_STATES.get(letter, letter)}", f"Tgid:\t{p.pid}", "Ngid:\t0",
              f"Pid:\t{tid}", f"PPid:\t{ppid}", "TracerPid:\t0",
              f"Uid:\t{c.ruid}\t{c.euid}\t{c.suid}\t{c.fsuid}",
              f"Gid:\t{c.rgid}\t{c.egid}\t{c.sgid}\t{c.fsgid}",
              f"FDSize:\t{fd_size(max(files, default=-1))}",
              "Groups:\t" + " ".join(str(g) for g in c.groups) + " ",
              f"NStgid:\t{p.pid}", f"NSpid:\t{tid}", f"NSpgid:\t{p.pgid}", f"NSsid:\t{p.sid}"]
    vm = memory(p)
    if vm is not None:
        peak, hwm = _peaks(p, vm)
        kb = PAGE_SIZE >> 10

        def line(label: str, kib: int) -> str:
            return f"{label}:\t{kib:>8} kB"

        lines += [line("VmPeak", peak >> 10), line("VmSize", vm.size >> 10),
                  line("VmLck", 0), line("VmPin", 0), line("VmHWM", hwm),
                  line("VmRSS", vm.rss * kb), line("RssAnon", vm.rss_anon * kb),
                  line("RssFile", vm.rss_file * kb), line("RssShmem", vm.rss_shmem * kb),
                  line("VmData", vm.data >> 10), line("VmStk", vm.stack >> 10),
                  line("VmExe", vm.exe >> 10), line("VmLib", vm.lib >> 10),
                  line("VmPTE", vm.pte_kb), line("VmSwap", 0),
                  f"HugetlbPages:\t{0:>8} kB"]
    ign, cgt = sig_sets(p)
    eff = CAP_FULL if c.euid == 0 else 0
    prm = CAP_FULL if 0 in (c.ruid, c.euid, c.suid) else 0
    lines += ["CoreDumping:\t0", "THP_enabled:\t1", f"Threads:\t{max(1, len(p.threads))}",
              f"SigQ:\t{_sigq(p)}",
              f"SigPnd:\t{_mask(th.pending.mask if th is not None else 0)}",
              f"ShdPnd:\t{_mask(p.shared_pending.mask)}",
              f"SigBlk:\t{_mask(th.sigmask if th is not None else 0)}",
              f"SigIgn:\t{_mask(ign)}", f"SigCgt:\t{_mask(cgt)}",
              f"CapInh:\t{0:016x}", f"CapPrm:\t{prm:016x}", f"CapEff:\t{eff:016x}",
              f"CapBnd:\t{CAP_FULL:016x}", f"CapAmb:\t{0:016x}",
              f"NoNewPrivs:\t{int(p.no_new_privs)}", "Seccomp:\t0", "Seccomp_filters:\t0",
              "Cpus_allowed:\t1", "Cpus_allowed_list:\t0",
              "Mems_allowed:\t1", "Mems_allowed_list:\t0",
              f"voluntary_ctxt_switches:\t{th.nvcsw if th is not None else 0}",
              f"nonvoluntary_ctxt_switches:\t{th.nivcsw if th is not None else 0}"]
    return "\n".join(lines) + "\n"


# --- stat -----------------------------------------------------------------------------
def stat(p: Process, th: Task | None, *, permitted: bool, whole: bool) -> str:
    """``/proc/<pid>/stat`` (``whole``: the thread group) or ``task/<tid>/stat``."""
    from cove.kernel.process import has_execed
    from cove.kernel.syscalls.limits import rlimit

    k = p.kernel
    letter = state_letter(p, th)
    tid = p.pid if whole or th is None else th.tid
    comm = p.comm if whole or th is None else th.comm
    ppid = p.parent.pid if p.parent is not None else 0
    tty_nr, tpgid = ctty(p)
    flags = PF_EXITING if not p.alive else 0
    if p.parent is not None and not has_execed(p):
        flags |= PF_FORKNOEXEC
    if whole or th is None:
        utime, stime, started = p.user_time, p.sys_time, p.start_time
    else:
        utime, stime, started = th.utime, th.stime, th.start_time
    vm = memory(p)
    img = p.image if p.alive else None
    ign, cgt = sig_sets(p)
    low = 0x7FFFFFFF  # Linux prints only the first 31 signals here
    pending = th.pending.mask if th is not None else 0
    blocked = th.sigmask if th is not None else 0
    sleeping = th is not None and th.state is State.BLOCKED
    if img is not None:
        code = (img.start_code, img.end_code, img.stack_pointer) if permitted else (1, 1, 0)
        layout = ((img.start_data, img.end_data, img.start_brk, img.arg_start, img.arg_end,
                   img.env_start, img.env_end) if permitted else (0,) * 7)
    else:
        code, layout = (0, 0, 0), (0,) * 7
    exit_signal = p.exit_signal if whole or th is None or th.tid == p.pid else -1
    fields: list[object] = [
        tid, f"({comm})", letter, ppid, p.pgid, p.sid, tty_nr, tpgid, flags,
        0, 0, 0, 0,  # minflt cminflt majflt cmajflt: not counted
        _ticks(utime), _ticks(stime), _ticks(p.child_user_time), _ticks(p.child_sys_time),
        20 + p.nice, p.nice, max(1, len(p.threads)), 0,
        _ticks(started - k.boot_monotonic),
        vm.size if vm else 0, vm.rss if vm else 0, rlimit(p, F.RLIMIT_RSS)[0],
        *code, 0, 0,  # kstkesp kstkeip
        pending & low, blocked & low, ign & low, cgt & low,
        int(sleeping and permitted), 0, 0, exit_signal, 0, 0, 0, 0, 0, 0,
        *layout, (p.exit_code or 0) if permitted else 0,
    ]
    assert len(fields) == 52
    return " ".join(str(f) for f in fields) + "\n"


def statm(p: Process) -> str:
    vm = memory(p)
    if vm is None:
        return "0 0 0 0 0 0 0\n"
    return (f"{vm.size >> PAGE_SHIFT} {vm.rss} {vm.rss_file + vm.rss_shmem} "
            f"{vm.exe >> PAGE_SHIFT} 0 {(vm.data + vm.stack) >> PAGE_SHIFT} 0\n")


# --- limits ---------------------------------------------------------------------------
_LIMITS = (("Max cpu time", "seconds"), ("Max file size", "bytes"),
           ("Max data size", "bytes"), ("Max stack size", "bytes"),
           ("Max core file size", "bytes"), ("Max resident set", "bytes"),
           ("Max processes", "processes"), ("Max open files", "files"),
           ("Max locked memory", "bytes"), ("Max address space", "bytes"),
           ("Max file locks", "locks"), ("Max pending signals", "signals"),
           ("Max msgqueue size", "bytes"), ("Max nice priority", ""),
           ("Max realtime priority", ""), ("Max realtime timeout", "us"))


def limits(p: Process) -> str:
    from cove.kernel.syscalls.limits import rlimit

    out = [f"{'Limit':<25} {'Soft Limit':<20} {'Hard Limit':<20} {'Units':<10}\n"]
    for res, (name, unit) in enumerate(_LIMITS):
        soft, hard = rlimit(p, res)
        vals = ["unlimited" if v == F.RLIM_INFINITY else str(v) for v in (soft, hard)]
        line = f"{name:<25} {vals[0]:<20} {vals[1]:<20} "
        out.append(line + (f"{unit:<10}" if unit else "") + "\n")
    return "".join(out)


# --- guest memory: cmdline, environ, auxv ------------------------------------------------
def read_vm(mm: MemoryMap, addr: int, n: int) -> bytes:
    """Up to ``n`` bytes at ``addr``, stopping at the first unreadable page."""
    out = bytearray()
    while n > 0:
        step = min(n, PAGE_SIZE - (addr & (PAGE_SIZE - 1)))
        try:
            out += mm.read(addr, step)
        except Errno:
            break
        addr += step
        n -= step
    return bytes(out)


def cmdline(p: Process) -> bytes:
    """Linux's get_mm_cmdline: [arg_start, arg_end), unless the last byte is no
    longer NUL (argv was rewritten): then the title up to its first NUL, at most
    a page, running on into the environment as setproctitle does."""
    img = p.image
    if not p.alive or img is None or img.arg_end <= img.arg_start:
        return b""
    if read_vm(p.mm, img.arg_end - 1, 1) not in (b"", b"\0"):
        title = read_vm(p.mm, img.arg_start, PAGE_SIZE)
        end = title.find(b"\0")
        return title if end < 0 else title[:end + 1]
    return read_vm(p.mm, img.arg_start, img.arg_end - img.arg_start)


def environ(p: Process) -> bytes:
    img = p.image
    if not p.alive or img is None or img.env_end <= img.env_start:
        return b""
    return read_vm(p.mm, img.env_start, img.env_end - img.env_start)


_AUXV = struct.Struct("<QQ")


def auxv(p: Process) -> bytes:
    img = p.image
    if not p.alive or img is None:
        return b""
    return b"".join(_AUXV.pack(key, val) for key, val in img.auxv)


# --- oom ------------------------------------------------------------------------------
def oom_score_adj(p: Process) -> int:
    return oom_adj.get(p, (0, 0))[0]


def oom_score(p: Process) -> int:
    """Linux's proc_oom_score: oom_badness (resident and page-table pages, plus
    adj thousandths of memory) scaled into 0..2000, then by 2/3; 0 for init
    (unkillable) and for OOM_SCORE_ADJ_MIN."""
    adj = oom_score_adj(p)
    if not p.alive or adj == OOM_SCORE_ADJ_MIN or p is p.kernel.init:
        return 0
    total = max(1, p.kernel.phys.nframes)
    vm = vm_stats(p.mm, p.image)
    badness = vm.rss + vm.pte_kb // (PAGE_SIZE >> 10) + adj * (total // 1000)
    return max(0, (1000 + int(badness * 1000 / total)) * 2 // 3)


def parse_int(data: bytes) -> int:
    """kstrtoint(strstrip(buf), 0): decimal, 0x hex or 0 octal, optional sign."""
    text = data.decode("ascii", "replace").strip()
    sign = 1
    if text[:1] in ("-", "+"):
        sign = -1 if text[0] == "-" else 1
        text = text[1:]
    if text[:2].lower() == "0x":
        base, digits = 16, text[2:]
    elif text[:1] == "0" and len(text) > 1:
        base, digits = 8, text[1:]
    else:
        base, digits = 10, text
    if not digits or not all(ch in "0123456789abcdef"[:base] for ch in digits.lower()):
        raise ValueError(text)
    return sign * int(digits, base)


def _inherit_oom(parent: Task, child: Task) -> None:
    adj = oom_adj.get(parent.proc)
    if adj is not None and child.proc is not parent.proc:
        oom_adj[child.proc] = adj


def _register_fork_hook() -> None:
    # Here, next to the table: whatever sets an adjustment (a /proc write, a
    # restored snapshot's side table) has imported this module.
    from cove.kernel.process import FORK_HOOKS

    if _inherit_oom not in FORK_HOOKS:
        FORK_HOOKS.append(_inherit_oom)


_register_fork_hook()
