"""``/proc``: the sandbox's own processes, numbers and mounts — never the host's.

Files render at open time from the kernel's state. ``self`` and ``thread-self``
resolve against the task making the call (``kernel.current``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cove.fs.synthetic import SynthDir, SyntheticFS, SynthInode

if TYPE_CHECKING:
    from cove.fs.vfs import VFS
    from cove.kernel.kernel import Kernel
    from cove.kernel.task import Process

OSRELEASE = "6.1.0-cove"
VERSION = f"Linux version {OSRELEASE} (cove) #1 SMP PREEMPT_DYNAMIC cove\n"


class ProcFS(SyntheticFS):
    """The synthetic tree; ``kernel`` is attached when the sandbox boots."""

    def __init__(self, vfs: VFS) -> None:
        super().__init__("proc")
        self.vfs = vfs
        self.kernel: Kernel | None = None


def _current_pid(fs: ProcFS) -> str:
    k = fs.kernel
    cur = getattr(k, "current", None) if k else None
    return str(cur.pid) if cur is not None else "1"


def _process_dir(fs: ProcFS, pid: int) -> Callable[[SynthDir], SynthInode]:
    def make(parent: SynthDir) -> SynthInode:
        d = SynthDir(fs, parent, 0o555)

        def proc() -> Process | None:
            return fs.kernel.processes.get(pid) if fs.kernel else None

        def text(render: Callable[[Process], str]) -> Callable[[], bytes]:
            def out() -> bytes:
                p = proc()
                return render(p).encode("utf-8", "surrogateescape") if p else b""
            return out

        d.add_file("cmdline", text(lambda p: "".join(a + "\0" for a in _argv(p))))
        d.add_file("comm", text(lambda p: p.comm + "\n"))
        d.add_file("status", text(_status))
        d.add_file("stat", text(_stat))
        d.add_file("maps", text(_maps))
        d.add_link("exe", lambda: proc().exe if proc() else "")  # type: ignore[union-attr]
        d.add_link("cwd", lambda: _cwd(fs, proc()))
        d.add_link("root", lambda: "/")
        d.add_dir("fd", listing=lambda: _fd_listing(fs, proc()))
        return d
    return make


def _argv(p: Process) -> list[str]:
    img: Any = p.image
    return list(getattr(img, "argv", []) or [p.comm])


def _status(p: Process) -> str:
    st = {"R": "R (running)", "S": "S (sleeping)", "T": "T (stopped)", "Z": "Z (zombie)"}
    ppid = p.parent.pid if p.parent else 0
    c = p.creds
    return (f"Name:\t{p.comm}\nState:\t{st.get(p.state.value, 'R (running)')}\n"
            f"Tgid:\t{p.pid}\nPid:\t{p.pid}\nPPid:\t{ppid}\n"
            f"Uid:\t{c.ruid}\t{c.euid}\t{c.suid}\t{c.fsuid}\n"
            f"Gid:\t{c.rgid}\t{c.egid}\t{c.sgid}\t{c.fsgid}\n"
            f"Threads:\t{len(p.threads)}\nVmRSS:\t{p.mm.resident_pages() * 4} kB\n")


def _stat(p: Process) -> str:
    ppid = p.parent.pid if p.parent else 0
    fields = [str(p.pid), f"({p.comm})", p.state.value, str(ppid), str(p.pgid), str(p.sid)]
    fields += ["0"] * 13 + [str(len(p.threads))] + ["0"] * 31
    return " ".join(fields) + "\n"


def _maps(p: Process) -> str:
    lines = []
    for v in p.mm.vmas:
        prot = ("r" if v.prot & 1 else "-") + ("w" if v.prot & 2 else "-") + (
            "x" if v.prot & 4 else "-") + ("s" if v.shared is not None else "p")
        lines.append(f"{v.start:08x}-{v.end:08x} {prot} {v.offset:08x} 00:00 0"
                     + (f"                          {v.name}" if v.name else ""))
    return "\n".join(lines) + ("\n" if lines else "")


def _cwd(fs: ProcFS, p: Process | None) -> str:
    if p is None or not p.threads:
        return "/"
    t = p.threads[0]
    return fs.vfs.path_of(t.fs, t.fs.cwd)


def _fd_listing(fs: ProcFS, p: Process | None) -> dict[str, Callable[[SynthDir], SynthInode]]:
    if p is None or not p.threads:
        return {}
    t = p.threads[0]
    out: dict[str, Callable[[SynthDir], SynthInode]] = {}
    for fd, f in sorted(t.files.files.items()):
        def make(parent: SynthDir, f: Any = f) -> SynthInode:
            from cove.fs.synthetic import SynthLink

            return SynthLink(fs, parent, lambda: _describe(fs, t, f))
        out[str(fd)] = make
    return out


def _describe(fs: ProcFS, t: Any, f: Any) -> str:
    # A File's own name comes first: a memfd has a location no path leads to.
    describe = getattr(f, "proc_name", None)
    if callable(describe):
        return describe()  # type: ignore[no-any-return]
    loc = getattr(f, "location", None)
    if loc is not None:
        return fs.vfs.path_of(t.fs, loc)
    return f"anon_inode:[{type(f).__name__.lower()}]"


def make_procfs(vfs: VFS) -> ProcFS:
    fs = ProcFS(vfs)
    root = fs.root

    def pids() -> dict[str, Callable[[SynthDir], SynthInode]]:
        k = fs.kernel
        if k is None:
            return {}
        return {str(pid): _process_dir(fs, pid) for pid in sorted(k.processes)}

    root.listing = pids
    root.add_link("self", lambda: _current_pid(fs))
    root.add_file("version", lambda: VERSION.encode())
    root.add_file("uptime", lambda: _uptime(fs))
    root.add_file("mounts", lambda: _mounts(fs))
    root.add_file("filesystems", lambda: b"nodev\ttmpfs\nnodev\tproc\nnodev\toverlay\n")
    sys_ = root.add_dir("sys")
    kern = sys_.add_dir("kernel")
    kern.add_file("osrelease", lambda: (OSRELEASE + "\n").encode())
    kern.add_file("hostname", lambda: ((fs.kernel.hostname if fs.kernel else "cove") + "\n"
                                       ).encode())
    kern.add_file("pid_max", lambda: b"4194304\n")
    return fs


def _uptime(fs: ProcFS) -> bytes:
    import time

    up = time.monotonic() - (fs.kernel.boot_monotonic if fs.kernel else time.monotonic())
    return f"{up:.2f} {up:.2f}\n".encode()


def _mounts(fs: ProcFS) -> bytes:
    lines = []
    for m in fs.vfs.mounts():
        where = "/" if m.mountpoint is None else fs.vfs.path_of(fs.vfs.context(), m.mountpoint)
        opts = "ro" if m.readonly else "rw"
        lines.append(f"{m.source} {where} {m.fs.name} {opts} 0 0")
    return ("\n".join(lines) + "\n").encode()
