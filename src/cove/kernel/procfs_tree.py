"""The entries of ``/proc`` (cove.kernel.procfs): the fixed tree under it,
``/proc/<pid>`` directories and what their files render and take.

Imported when a guest first looks inside /proc (``ProcRoot._build``), so a
sandbox that never does pays for none of it, at start or at restore.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from cove.abi.errno import E, Errno
from cove.fs.node import S_IFLNK, Stat
from cove.fs.synthetic import (
    Render,
    SynthDir,
    SynthFile,
    SynthInode,
    SynthLink,
    Writer,
)
from cove.kernel import procfs_pid as pidf
from cove.kernel import procfs_sys as sysf
from cove.kernel.procfs import _uuid4
from cove.kernel.procfs_fd import fdinfo, file_name, link_mode
from cove.kernel.procfs_mem import maps, smaps

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from typing import Any

    from cove.fs.vfs import PathContext
    from cove.kernel.fdtable import FdTable
    from cove.kernel.kernel import Kernel
    from cove.kernel.procfs import ProcFS
    from cove.kernel.task import Process, Task


Owner = Callable[[], tuple[int, int]]
Factory = Callable[[SynthDir], SynthInode]
HOST_NAME_MAX = 64
PID_MAX = 4194304  # PID_MAX_LIMIT: cove's ids never wrap below it


# --- nodes whose owner is a process ------------------------------------------------------
class _Owned:
    """A /proc node owned by its process's effective ids (``owner()``), as Linux."""

    __slots__ = ()
    owner: Owner

    def stat(self) -> Stat:
        st = super().stat()  # type: ignore[misc]
        st.uid, st.gid = self.owner()
        return st


class PidDir(_Owned, SynthDir):
    __slots__ = ("owner",)

    def __init__(self, fs: ProcFS, parent: SynthDir, owner: Owner, mode: int = 0o555,
                 listing: Callable[[], dict[str, Factory]] | None = None) -> None:
        super().__init__(fs, parent, mode, listing)
        self.owner = owner


class PidFile(_Owned, SynthFile):
    __slots__ = ("owner",)

    def __init__(self, fs: ProcFS, parent: SynthDir, render: Render, owner: Owner,
                 mode: int = 0o444, write: Writer | None = None) -> None:
        super().__init__(fs, parent, render, mode, write)
        self.owner = owner


class PidLink(_Owned, SynthLink):
    __slots__ = ("owner",)

    def __init__(self, fs: ProcFS, parent: SynthDir, target: Callable[[], str],
                 owner: Owner) -> None:
        super().__init__(fs, parent, target)
        self.owner = owner


class FdLink(PidLink):
    """``fd/<n>``: mode bits from the open file's access mode, size 64, as Linux."""

    __slots__ = ("file",)

    def __init__(self, fs: ProcFS, parent: SynthDir, target: Callable[[], str],
                 owner: Owner, file: Callable[[], object]) -> None:
        super().__init__(fs, parent, target, owner)
        self.file = file

    def stat(self) -> Stat:
        st = super().stat()
        try:
            f = self.file()
        except Errno:
            return st
        st.mode = S_IFLNK | link_mode(f)  # type: ignore[arg-type]
        st.size = 64
        return st


# --- /proc/<pid> -----------------------------------------------------------------------
class Target:
    """The process (and thread) a ``/proc/<pid>`` directory describes, found
    afresh at every use: the directory outlives neither."""

    def __init__(self, fs: ProcFS, pid: int, tid: int | None = None) -> None:
        self.fs = fs
        self.pid = pid
        self.tid = tid

    def proc(self) -> Process:
        k = self.fs.kernel
        p = k.processes.get(self.pid) if k is not None else None
        if p is None:
            raise Errno(E.ESRCH)
        return p

    def thread(self) -> Task | None:
        """The thread this directory is about (None: a zombie, or the thread left)."""
        p = self.proc()
        if self.tid is None:
            return pidf.leader(p)
        for th in p.threads:
            if th.tid == self.tid:
                return th
        return None

    def owner(self) -> tuple[int, int]:
        k = self.fs.kernel
        p = k.processes.get(self.pid) if k is not None else None
        if p is None or not p.dumpable:
            return 0, 0
        return p.creds.euid, p.creds.egid

    def inspected(self) -> Process:
        p = self.proc()
        self.fs.check_inspect(p)
        return p

    def files(self) -> FdTable | None:
        th = self.thread()
        return th.files if th is not None else None


def process_dir(fs: ProcFS, pid: int, tid: int | None = None) -> Factory:
    """``/proc/<pid>`` (``tid``: ``/proc/<tid>`` of a non-leader thread)."""
    return _Bound(_make_process_dir, fs, pid, tid)


def _make_process_dir(fs: ProcFS, pid: int, tid: int | None, parent: SynthDir) -> SynthInode:
    tg = Target(fs, pid, tid)
    d = PidDir(fs, parent, tg.owner)
    _fill_common(fs, d, tg)
    add = _adder(fs, d, tg)
    on = _Bound
    add("cmdline", on(_cmdline, tg))
    add("environ", on(_environ, tg), mode=0o400)
    add("auxv", on(_auxv, tg), mode=0o400)
    add("maps", on(_maps, fs, tg, maps))
    add("smaps", on(_maps, fs, tg, smaps))
    add("statm", on(_statm, tg))
    add("limits", on(_limits, tg))
    add("mounts", on(_mounts, fs, tg, sysf.mounts))
    add("mountinfo", on(_mounts, fs, tg, sysf.mountinfo))
    add("oom_score", on(_oom_score, tg))
    add("oom_score_adj", on(_oom_score_adj, tg), mode=0o644,
        write=on(_write_oom_adj, fs, tg))
    d.children["exe"] = PidLink(fs, d, on(_exe, tg), tg.owner)
    d.children["cwd"] = PidLink(fs, d, on(_dir_link, fs, tg, "cwd"), tg.owner)
    d.children["root"] = PidLink(fs, d, on(_dir_link, fs, tg, "root"), tg.owner)
    d.children["fd"] = PidDir(fs, d, tg.owner, 0o500, on(_fd_entries, fs, tg))
    d.children["fdinfo"] = PidDir(fs, d, tg.owner, 0o500, on(_fdinfo_entries, fs, tg))
    d.children["task"] = PidDir(fs, d, tg.owner, 0o555, on(_task_entries, fs, pid))
    return d


def _cmdline(tg: Target) -> bytes:
    return pidf.cmdline(tg.proc())


def _environ(tg: Target) -> bytes:
    return pidf.environ(tg.inspected())


def _auxv(tg: Target) -> bytes:
    return pidf.auxv(tg.inspected())


def _maps(fs: ProcFS, tg: Target, render: Callable[..., str]) -> bytes:
    return _text(render(tg.inspected().mm, fs.vfs, fs.reader_ctx()) if tg.proc().alive else "")


def _statm(tg: Target) -> bytes:
    return _text(pidf.statm(tg.proc()))


def _limits(tg: Target) -> bytes:
    return _text(pidf.limits(tg.proc()))


def _mounts(fs: ProcFS, tg: Target, render: Callable[..., bytes]) -> bytes:
    return render(fs.vfs, _ctx_of(tg))


def _oom_score(tg: Target) -> bytes:
    return _text(f"{pidf.oom_score(tg.proc())}\n")


def _oom_score_adj(tg: Target) -> bytes:
    return _text(f"{pidf.oom_score_adj(tg.proc())}\n")


def _fill_common(fs: ProcFS, d: PidDir, tg: Target) -> None:
    """What ``/proc/<pid>`` and ``/proc/<pid>/task/<tid>`` both have."""
    add = _adder(fs, d, tg)
    add("status", _Bound(_status, tg))
    add("stat", _Bound(_stat, fs, tg, tg.tid is None))
    add("comm", _Bound(_comm, tg), mode=0o644, write=_Bound(_write_comm, fs, tg))
    add("wchan", _Bound.const(b"0"))


def _status(tg: Target) -> bytes:
    p = tg.proc()
    th = tg.thread()
    return _text(pidf.status(p, th, th.fs.umask if th is not None else None))


def _stat(fs: ProcFS, tg: Target, whole: bool) -> bytes:
    p = tg.proc()
    return _text(pidf.stat(p, tg.thread(), permitted=fs.may_inspect(p), whole=whole))


def _comm(tg: Target) -> bytes:
    th = tg.thread()
    return _text((th.comm if th is not None else tg.proc().comm) + "\n")


def _adder(fs: ProcFS, d: PidDir, tg: Target) -> Callable[..., PidFile]:
    def add(name: str, render: Render, mode: int = 0o444,
            write: Writer | None = None) -> PidFile:
        node = PidFile(fs, d, render, tg.owner, mode, write)
        d.children[name] = node
        return node
    return add


def _text(s: str) -> bytes:
    return s.encode("utf-8", "surrogateescape")


def _ctx_of(tg: Target) -> PathContext:
    th = tg.thread()
    if th is None:
        raise Errno(E.ENOENT)
    return th.fs


def _exe(tg: Target) -> str:
    p = tg.inspected()
    # The loader's canonical path wins over Process.exe, which the first
    # program's starter may have set to the name it was given.
    exe = getattr(p.image, "exe_path", None) or p.exe
    if not p.alive or not exe:
        raise Errno(E.ENOENT)
    f = getattr(p.image, "file", None)
    try:
        gone = f is not None and f.stat().nlink == 0
    except Errno:
        gone = False
    return str(exe) + (" (deleted)" if gone else "")


def _dir_link(fs: ProcFS, tg: Target, which: str) -> str:
    tg.inspected()
    th = tg.thread()
    if th is None:
        raise Errno(E.ENOENT)
    loc = th.fs.cwd if which == "cwd" else th.fs.root
    return fs.vfs.path_of(fs.reader_ctx(), loc)


def _per_fd(tg: Target, make: Callable[[SynthDir, int], SynthInode]) -> dict[str, Factory]:
    """One entry per open fd of the target (``fd/``, ``fdinfo/``)."""
    files = tg.files()
    if files is None:
        return {}
    return {str(fd): (lambda parent, fd=fd: make(parent, fd)) for fd in sorted(files.files)}


def _open_at(tg: Target, fd: int) -> tuple[FdTable, object]:
    """The target's fd table and the file at ``fd`` now (ENOENT once closed)."""
    table = tg.files()
    f = table.files.get(fd) if table is not None else None
    if f is None or table is None:
        raise Errno(E.ENOENT)
    return table, f


def _fd_entries(fs: ProcFS, tg: Target) -> dict[str, Factory]:
    def make(parent: SynthDir, fd: int) -> SynthInode:
        def file() -> object:
            return _open_at(tg, fd)[1]

        def target() -> str:
            tg.inspected()
            return file_name(fs.vfs, fs.reader_ctx(), file())  # type: ignore[arg-type]
        return FdLink(fs, parent, target, tg.owner, file)
    return _per_fd(tg, make)


def _fdinfo_entries(fs: ProcFS, tg: Target) -> dict[str, Factory]:
    def make(parent: SynthDir, fd: int) -> SynthInode:
        def render() -> bytes:
            tg.inspected()
            table, f = _open_at(tg, fd)
            return _text(fdinfo(f, fd in table.cloexec))  # type: ignore[arg-type]
        return PidFile(fs, parent, render, tg.owner)  # type: ignore[arg-type]
    return _per_fd(tg, make)


def _task_entries(fs: ProcFS, pid: int) -> dict[str, Factory]:
    k = fs.kernel
    p = k.processes.get(pid) if k is not None else None
    if p is None:
        return {}
    return {str(th.tid): _thread_dir(fs, pid, th.tid) for th in p.threads}


def _thread_dir(fs: ProcFS, pid: int, tid: int) -> Factory:
    def make(parent: SynthDir) -> SynthInode:
        tg = Target(fs, pid, tid)
        d = PidDir(fs, parent, tg.owner)
        _fill_common(fs, d, tg)
        return d
    return make


# --- writes ---------------------------------------------------------------------------
def _write_comm(fs: ProcFS, tg: Target, data: bytes) -> int:
    """Linux's comm_write: the first 15 bytes (a newline included) name the
    thread; only a thread of the same process may rename it."""
    from cove.kernel.syscalls.prctl import COMM_LEN, set_comm

    p = tg.proc()
    r = fs.reader()
    if r is not None and r.proc is not p:
        raise Errno(E.EINVAL)
    name = data[:COMM_LEN - 1].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
    th = tg.thread()
    if th is not None:
        set_comm(th, name)
    else:
        p.comm = name
    return len(data)


def _write_oom_adj(fs: ProcFS, tg: Target, data: bytes) -> int:
    p = tg.proc()
    try:
        value = pidf.parse_int(data[:12])
    except ValueError:
        raise Errno(E.EINVAL) from None
    if not pidf.OOM_SCORE_ADJ_MIN <= value <= pidf.OOM_SCORE_ADJ_MAX:
        raise Errno(E.EINVAL)
    r = fs.reader()
    privileged = r is None or r.proc.creds.euid == 0  # CAP_SYS_RESOURCE
    _, low = pidf.oom_adj.get(p, (0, 0))
    if value < low and not privileged:
        raise Errno(E.EACCES)
    pidf.oom_adj[p] = (value, value if privileged else low)
    return len(data)


def _write_hostname(fs: ProcFS, data: bytes) -> int:
    """proc_dostring: up to the first newline or NUL, at most 64 bytes."""
    k = fs.kernel
    name = data.split(b"\n", 1)[0].split(b"\0", 1)[0][:HOST_NAME_MAX]
    if k is not None:
        k.hostname = os.fsdecode(name)
    return len(data)


# --- the tree -------------------------------------------------------------------------
def _current_pid(fs: ProcFS) -> str:
    cur = fs.reader()
    if cur is not None:
        return str(cur.pid)
    k = fs.kernel
    return str(k.init.pid) if k is not None and k.init is not None else ""


def _thread_self(fs: ProcFS) -> str:
    cur = fs.reader()
    return f"{cur.pid}/task/{cur.tid}" if cur is not None else ""


def fill_root(fs: ProcFS) -> None:
    """The fixed entries of /proc and its pid listing."""
    root = fs.root
    on_kernel = _Bound.on_kernel

    root.listing = _Bound(_pids, fs)
    root.add_link("self", _Bound(_current_pid, fs))
    root.add_link("thread-self", _Bound(_thread_self, fs))
    root.add_link("mounts", _Bound.const("self/mounts"))
    root.add_file("version", sysf.version)
    root.add_file("uptime", on_kernel(fs, sysf.uptime))
    root.add_file("loadavg", on_kernel(fs, sysf.loadavg))
    root.add_file("stat", on_kernel(fs, sysf.stat))
    root.add_file("meminfo", on_kernel(fs, sysf.meminfo))
    root.add_file("cpuinfo", sysf.cpuinfo)
    root.add_file("filesystems", sysf.filesystems)

    const = _Bound.const_text
    sys_ = root.add_dir("sys")
    kern = sys_.add_dir("kernel")
    kern.add_file("osrelease", const(sysf.RELEASE + "\n"))
    kern.add_file("ostype", const("Linux\n"))
    kern.add_file("version", const(sysf.UTS_VERSION + "\n"))
    kern.add_file("hostname", on_kernel(fs, _hostname), mode=0o644,
                  write=_Bound(_write_hostname, fs))
    kern.add_file("domainname", const("(none)\n"))
    kern.add_file("pid_max", const(f"{PID_MAX}\n"))
    kern.add_file("threads-max", on_kernel(fs, _threads_max))
    kern.add_file("cap_last_cap", const(f"{pidf.CAP_LAST_CAP}\n"))
    kern.add_file("ngroups_max", const("65536\n"))
    kern.add_file("overflowuid", const("65534\n"))
    kern.add_file("overflowgid", const("65534\n"))
    rnd = kern.add_dir("random")
    rnd.add_file("boot_id", _Bound(_boot_id, fs))
    rnd.add_file("uuid", _uuid_file)
    rnd.add_file("poolsize", const("256\n"))
    rnd.add_file("entropy_avail", const("256\n"))
    vm = sys_.add_dir("vm")
    vm.add_file("overcommit_memory", const("0\n"))
    vm.add_file("max_map_count", const("65530\n"))
    vm.add_file("mmap_min_addr", _mmap_min_file)
    fs_dir = sys_.add_dir("fs")
    fs_dir.add_file("nr_open", _nr_open_file)


class _Bound:
    """``fn(*front, *args)``: a /proc entry's renderer, writer or listing bound
    to its procfs. A small object rather than a closure, so that a snapshot
    restores it by reference to ``fn`` (no code object to look up and no
    cells to fill: /proc has dozens of these in every restore)."""

    __slots__ = ("fn", "front")

    def __init__(self, fn: Callable[..., Any], *front: Any) -> None:
        self.fn = fn
        self.front = front

    def __call__(self, *args: Any) -> Any:
        return self.fn(*self.front, *args)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_Bound, (self.fn, *self.front))

    @staticmethod
    def const(value: Any) -> _Bound:
        return _Bound(_same, value)

    @staticmethod
    def const_text(text: str) -> _Bound:
        return _Bound(_same, text.encode())

    @staticmethod
    def on_kernel(fs: ProcFS, render: Callable[[Kernel], Any]) -> _Bound:
        return _Bound(_render_kernel, fs, render)


def _same(value: Any) -> Any:
    return value


def _kernel(fs: ProcFS) -> Kernel:
    if fs.kernel is None:
        raise Errno(E.ENOENT)
    return fs.kernel


def _render_kernel(fs: ProcFS, render: Callable[[Kernel], Any]) -> Any:
    return render(_kernel(fs))


def _pids(fs: ProcFS) -> dict[str, Factory]:
    k = fs.kernel
    if k is None:
        return {}
    return {str(pid): process_dir(fs, pid) for pid in sorted(k.processes)}


def _hostname(k: Kernel) -> bytes:
    return (k.hostname + "\n").encode()


def _boot_id(fs: ProcFS) -> bytes:
    return (fs.boot_id() + "\n").encode()


def _uuid_file() -> bytes:
    return (_uuid4() + "\n").encode()


def _mmap_min_file() -> bytes:
    return f"{_mmap_min()}\n".encode()


def _nr_open_file() -> bytes:
    return f"{_nr_open()}\n".encode()


def _threads_max(k: Kernel) -> bytes:
    from cove.kernel.syscalls.limits import max_threads

    return f"{max_threads(k)}\n".encode()


def _mmap_min() -> int:
    from cove.kernel.mm import MMAP_MIN

    return MMAP_MIN


def _nr_open() -> int:
    from cove.kernel.fdtable import NR_OPEN_MAX

    return NR_OPEN_MAX
