"""System-wide ``/proc`` files: the sandbox's cpu, memory, times, mounts.

The sandbox has one cpu (``sched_getaffinity`` says so too); its memory is the
guest physical memory (``PhysMem``); its clocks start at the sandbox's boot;
its cpu times are what the run loop accounted to guest threads. From the host
only the cpu model and feature flags are shown (``cpuinfo``), with the
topology of a one-cpu machine and no microcode revision.

``loadavg`` is an exponential average of the number of runnable threads,
sampled whenever ``/proc/loadavg`` is read (cove runs no periodic tick).
"""

from __future__ import annotations

import math
import os
import time
from functools import cache
from weakref import WeakKeyDictionary

from cove.abi.structs.clock import USER_HZ
from cove.fs.mount import MS_NODEV, MS_NOEXEC, MS_NOSUID, Location, Mount
from cove.kernel.physmem import PAGE_SIZE
from cove.kernel.task import State

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from cove.fs.vfs import VFS, PathContext
    from cove.kernel.kernel import Kernel

RELEASE = "6.1.0-cove"  # as uname (cove.kernel.syscalls.proc_info)
UTS_VERSION = "#1 SMP cove"
VMALLOC_TOTAL_KB = 34359738367  # x86-64 with 4-level paging
FILESYSTEMS = ("tmpfs", "proc", "overlay", "hostfs", "tarfs")


def version() -> bytes:
    return f"Linux version {RELEASE} (cove@cove) (cove) {UTS_VERSION}\n".encode()


# --- ids and times --------------------------------------------------------------------
def ids_allocated(k: Kernel) -> int:
    """How many pids/tids the sandbox has handed out (``processes`` in /proc/stat,
    the last pid in loadavg): the kernel's id counter is an itertools.count."""
    text = repr(k._ids)  # "count(N)"; no re for this (importing it costs ~2 ms a start)
    if text.startswith("count(") and text.endswith(")") and text[6:-1].isdecimal():
        return int(text[6:-1]) - 1
    return max([*k.tasks, *k.processes], default=0)


def uptime_s(k: Kernel) -> float:
    return max(0.0, time.monotonic() - k.boot_monotonic)


def cpu_times(k: Kernel) -> tuple[float, float]:
    """(user, system) seconds of every guest thread since boot: live and zombie
    processes, plus what reaped ones left in their reapers' child times."""
    user = system = 0.0
    for p in k.processes.values():
        user += p.user_time + p.child_user_time
        system += p.sys_time + p.child_sys_time
    return user, system


def running(k: Kernel) -> int:
    return sum(1 for t in k.tasks.values() if t.state is State.RUNNABLE)


def uptime(k: Kernel) -> bytes:
    up = uptime_s(k)
    user, system = cpu_times(k)
    return f"{up:.2f} {max(0.0, up - user - system):.2f}\n".encode()


def stat(k: Kernel) -> bytes:
    up = uptime_s(k)
    user, system = cpu_times(k)
    ticks = [int(user * USER_HZ), 0, int(system * USER_HZ),
             int(max(0.0, up - user - system) * USER_HZ), 0, 0, 0, 0, 0, 0]
    cpu = " ".join(str(n) for n in ticks)
    ctxt = sum(t.nvcsw + t.nivcsw for t in k.tasks.values())
    return (f"cpu  {cpu}\ncpu0 {cpu}\nintr 0\nctxt {ctxt}\nbtime {int(k.boot_time)}\n"
            f"processes {ids_allocated(k)}\nprocs_running {running(k)}\nprocs_blocked 0\n"
            f"softirq 0 0 0 0 0 0 0 0 0 0 0\n").encode()


_load: WeakKeyDictionary[Kernel, tuple[float, list[float]]] = WeakKeyDictionary()


def loadavg(k: Kernel) -> bytes:
    now = time.monotonic()
    last, avgs = _load.get(k, (k.boot_monotonic, [0.0, 0.0, 0.0]))
    n = running(k)
    dt = max(0.0, now - last)
    avgs = [a * math.exp(-dt / w) + n * (1 - math.exp(-dt / w))
            for a, w in zip(avgs, (60.0, 300.0, 900.0), strict=True)]
    _load[k] = (now, avgs)
    return (f"{avgs[0]:.2f} {avgs[1]:.2f} {avgs[2]:.2f} {n}/{len(k.tasks)} "
            f"{ids_allocated(k)}\n").encode()


# --- memory ---------------------------------------------------------------------------
def meminfo(k: Kernel) -> bytes:
    from cove.kernel.procfs_mem import Resident, kind, page_table_kb

    phys = k.phys
    kb = PAGE_SIZE >> 10
    total = phys.nframes * kb
    free = phys.frames_free * kb
    shared: dict[int, tuple[int, bool]] = {}  # id(SharedObject) -> (pages, is shmem)
    committed = pte = 0
    seen: set[int] = set()
    for p in k.processes.values():
        if not p.alive or id(p.mm) in seen:
            continue
        seen.add(id(p.mm))
        res = Resident(p.mm)
        pte += page_table_kb(res.vpns)
        for v in p.mm.vmas:
            if v.shared is not None:
                shared[id(v.shared)] = (len(v.shared.frames), kind(v) == "shmem")
            elif v.prot & 2:  # PROT_WRITE: private writable memory is committed
                committed += v.end - v.start
    shmem = sum(n for n, is_shmem in shared.values() if is_shmem) * kb
    cached = sum(n for n, _ in shared.values()) * kb
    anon = max(0, total - free - cached)
    rows = [("MemTotal", total), ("MemFree", free), ("MemAvailable", free),
            ("Buffers", 0), ("Cached", cached), ("SwapCached", 0),
            ("Active", anon + cached), ("Inactive", 0), ("Active(anon)", anon),
            ("Inactive(anon)", 0), ("Active(file)", cached - shmem), ("Inactive(file)", 0),
            ("Unevictable", 0), ("Mlocked", 0), ("SwapTotal", 0), ("SwapFree", 0),
            ("Dirty", 0), ("Writeback", 0), ("AnonPages", anon), ("Mapped", cached),
            ("Shmem", shmem), ("KReclaimable", 0), ("Slab", 0), ("SReclaimable", 0),
            ("SUnreclaim", 0), ("KernelStack", 0), ("PageTables", pte),
            ("NFS_Unstable", 0), ("Bounce", 0), ("WritebackTmp", 0),
            ("CommitLimit", total // 2), ("Committed_AS", committed >> 10),
            ("VmallocTotal", VMALLOC_TOTAL_KB), ("VmallocUsed", 0), ("VmallocChunk", 0),
            ("Percpu", 0), ("AnonHugePages", 0), ("ShmemHugePages", 0),
            ("ShmemPmdMapped", 0), ("FileHugePages", 0), ("FilePmdMapped", 0)]
    out = "".join(f"{name + ':':<16}{val:>8} kB\n" for name, val in rows)
    out += ("HugePages_Total:       0\nHugePages_Free:        0\nHugePages_Rsvd:        0\n"
            "HugePages_Surp:        0\nHugepagesize:       2048 kB\nHugetlb:               0 kB\n")
    return out.encode()


# --- cpu ------------------------------------------------------------------------------
_KEEP = ("vendor_id", "cpu family", "model", "model name", "stepping", "cpu MHz",
         "cache size", "fpu", "fpu_exception", "cpuid level", "wp", "flags", "bugs",
         "bogomips", "TLB size", "clflush size", "cache_alignment", "address sizes",
         "power management")
_TOPOLOGY = (("physical id", "0"), ("siblings", "1"), ("core id", "0"), ("cpu cores", "1"),
             ("apicid", "0"), ("initial apicid", "0"))


def _field(key: str, value: str) -> str:
    # Linux pads keys with tabs to the second tab stop ("model\t\t: ", "flags\t\t: ").
    tabs = "\t" if len(key) >= 8 else "\t\t"
    return f"{key}{tabs}: {value}".rstrip() + "\n"


@cache
def cpuinfo() -> bytes:
    """One cpu: the host's model and flags, one-cpu topology, nothing host-unique."""
    host: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            block = f.read().split("\n\n", 1)[0]
    except OSError:
        block = ""
    for line in block.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            host.setdefault(key.strip(), value.strip())
    if "model name" not in host:
        host.update({"vendor_id": "unknown", "model name": "cove virtual cpu",
                     "fpu": "yes", "flags": "fpu tsc cx8 cmov mmx fxsr sse sse2 syscall nx lm"})
    out = [_field("processor", "0")]
    for key in _KEEP:
        if key in host:
            out.append(_field(key, host[key]))
            if key == "cache size":
                out += [_field(k, v) for k, v in _TOPOLOGY]
    if not any(line.startswith("physical id") for line in out):
        out += [_field(k, v) for k, v in _TOPOLOGY]
    return ("".join(out) + "\n").encode()


def filesystems() -> bytes:
    return "".join(f"nodev\t{name}\n" for name in FILESYSTEMS).encode()


# --- mounts ---------------------------------------------------------------------------
def _escape(path: str) -> str:
    """As Linux's mangle(): space, tab, newline and backslash as octal escapes."""
    for ch, esc in (("\\", "\\134"), (" ", "\\040"), ("\t", "\\011"), ("\n", "\\012")):
        path = path.replace(ch, esc)
    return path


def _where(vfs: VFS, ctx: PathContext, m: Mount) -> str | None:
    """The mount point as ``ctx`` sees it; None when outside its root (chroot)."""
    loc = Location(m, m.root)
    path = vfs.path_of(ctx, loc)
    if path.startswith("(unreachable)"):
        return None
    return path


def _opts(m: Mount) -> str:
    opts = ["ro" if m.readonly else "rw"]
    for flag, name in ((MS_NOSUID, "nosuid"), (MS_NODEV, "nodev"), (MS_NOEXEC, "noexec")):
        if m.flags & flag:
            opts.append(name)
    return ",".join(opts)


def _visible(vfs: VFS, ctx: PathContext) -> list[tuple[Mount, str]]:
    out = []
    for m in vfs.mounts():
        where = _where(vfs, ctx, m)
        if where is not None:
            out.append((m, where))
    return out


def mounts(vfs: VFS, ctx: PathContext) -> bytes:
    """``/proc/<pid>/mounts``. The source column is the filesystem type: a
    sandbox's mount sources may be host paths, which stay the host's."""
    return "".join(f"{m.fs.name} {_escape(where)} {m.fs.name} {_opts(m)} 0 0\n"
                   for m, where in _visible(vfs, ctx)).encode()


def mountinfo(vfs: VFS, ctx: PathContext) -> bytes:
    lines = []
    for m, where in _visible(vfs, ctx):
        parent = m.parent.id if m.parent is not None else m.id
        dev = m.fs.dev
        sb = "ro" if m.fs.readonly else "rw"
        lines.append(f"{m.id} {parent} {os.major(dev)}:{os.minor(dev)} / {_escape(where)} "
                     f"{_opts(m)} - {m.fs.name} {m.fs.name} {sb}\n")
    return "".join(lines).encode()
