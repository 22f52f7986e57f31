"""The North's state as bytes and back: pickling a whole kernel object graph.

A snapshot pickles the kernel (processes, threads, fd tables, pipes, futexes,
timers, signal state) together with the sandbox's VFS in one pickle, so an
object shared by both (an open file's Location, a FIFO's pipe) stays one
object. What holds host resources is never pickled as such:

- the platform, its cpu, address spaces and guest memory become *persistent
  ids*; the restorer supplies the new ones (address spaces start empty and
  are refilled from each ``MemoryMap``; contexts are rebuilt from the saved
  registers, FS/GS bases and XSAVE image);
- host stdio files (``HostFile``/``TtyFile``) and ``HostStdio`` become the
  stdio *slot* (0, 1, 2) they were given as; the restorer binds each slot to
  its own host fds;
- ``HostFS`` reopens its host directory by path and refuses one that is not
  the same directory (device and inode) any more;
- locks and epoll sets are made fresh; the scheduler forgets which host fds it
  watched (those waiters are woken on restore and re-block on the new fds);
- closures (timer callbacks, procfs renderers) are pickled as a reference to
  their code inside cove plus their cell contents: no code is stored.

Per-task state some syscall families keep in module-level weak tables
(``SIDE_TABLES``) travels along, and keys made of ``id()`` (futexes, shared
memory maps) are translated to the objects and back.

Loading only resolves classes and functions from cove and a short list of
stdlib names (``_ALLOWED``); a snapshot is still code-bearing data in the
sense that its objects' methods will run: load snapshots you made.
"""

from __future__ import annotations

import copyreg
import importlib
import io
import itertools
import sys
import threading
import types
import weakref
from collections.abc import Callable

from cove import snappack
from cove.dataclass import dataclass, field
from cove.kernel.basemap import BaseDict, BaseSet
from cove.snappack import pickle  # the C pickler (pickle.py itself is not needed)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from typing import Any

    from cove.fs.vfs import VFS
    from cove.kernel.kernel import Kernel
    from cove.kernel.mm import MemoryMap

PROTOCOL = 5


class StateError(Exception):
    """The state cannot be captured or restored (the message says what and why)."""


# --- module-level tables that hold per-sandbox state -------------------------------
# (module, attribute, how): "task"/"process"/"kernel"/"phys" tables are
# WeakKeyDictionaries keyed by that kind of object (phys: the guest memory);
# "file_watchers" File -> [weakref to an epoll set]; "set" a WeakSet of processes; "mm_ids" the
# id(MemoryMap)-keyed share counts. DERIVED tables are rebuilt on demand and skipped.
SIDE_TABLES: tuple[tuple[str, str, str], ...] = (
    ("cove.kernel.syscalls.time", "_sleeps", "task"),
    ("cove.kernel.syscalls.signal", "_waits", "task"),
    ("cove.kernel.syscalls.futex", "_deadlines", "task"),
    ("cove.kernel.syscalls.io_poll", "_waits", "task"),
    ("cove.kernel.syscalls.io_epoll", "_waits", "task"),
    ("cove.kernel.epoll", "_watchers", "file_watchers"),
    ("cove.kernel.syscalls.timer", "_posix", "process"),
    ("cove.kernel.process", "_vfork_done", "process"),
    ("cove.kernel.process", "_vfork_waiting", "task"),
    ("cove.kernel.process", "_execed", "set"),
    ("cove.kernel.process", "_mm_users", "mm_ids"),
    ("cove.kernel.signals", "_arrivals", "process"),
    ("cove.kernel.procfs_pid", "_vm_peak", "process"),
    ("cove.kernel.procfs_pid", "oom_adj", "process"),
    ("cove.kernel.syscalls.fs_memfd", "_mounts", "kernel"),
    ("cove.kernel.syscalls.fs_locks", "_registries", "kernel"),
    ("cove.kernel.syscalls.hostcall", "_held", "task"),
    ("cove.kernel.pagecache", "_caches", "phys"),
)
DERIVED_TABLES: tuple[tuple[str, str], ...] = (
    ("cove.kernel.sigframe", "_facts"),  # FPU facts of the platform: recomputed
    ("cove.kernel.procfs_sys", "_load"),  # load average: restarts from the restore
)
# Host-side registries that are not guest state (never captured).
HOST_TABLES: tuple[tuple[str, str], ...] = (
    ("cove.sandbox", "_with_guests"),  # sandboxes to end at interpreter exit
)
# Module-level id counters: a restore moves them past the restored objects'.
COUNTERS: tuple[tuple[str, str], ...] = (
    ("cove.kernel.pipe", "_inos"),
    ("cove.fs.mount", "_mount_ids"),
    ("cove.fs.node", "_dev_numbers"),
)
# Side tables whose values are a host-monotonic deadline, or have one in
# ``.deadline`` (rebased on restore; 0.0 means "never sleeps" and stays).
_MONOTONIC_TABLES = {("cove.kernel.syscalls.time", "_sleeps"),
                     ("cove.kernel.syscalls.signal", "_waits"),
                     ("cove.kernel.syscalls.futex", "_deadlines")}
_DEADLINE_TABLES = {("cove.kernel.syscalls.io_poll", "_waits"),
                    ("cove.kernel.syscalls.io_epoll", "_waits")}


def _table(mod: str, attr: str) -> Any:
    m = sys.modules.get(mod)  # imported already, nearly always: skip the import machinery
    return getattr(m if m is not None else importlib.import_module(mod), attr)


def _counter_next(c: itertools.count) -> int:
    # repr is "count(N)": the next value, read without consuming it.
    return int(repr(c)[6:-1].split(",")[0])


# --- what the capture knows about the live sandbox -----------------------------------
@dataclass
class CaptureInfo:
    kernel: Kernel | None
    vfs: VFS
    slots: dict[int, int] = field(default_factory=dict)  # HostFile.fd -> stdio slot


def memory_maps(kernel: Kernel) -> list[MemoryMap]:
    """Every distinct memory map of the kernel's processes."""
    seen: dict[int, MemoryMap] = {}
    for proc in kernel.processes.values():
        seen.setdefault(id(proc.mm), proc.mm)
    for t in kernel.tasks.values():
        seen.setdefault(id(t.proc.mm), t.proc.mm)
    return list(seen.values())


def frame_refs(kernel: Kernel) -> dict[int, int]:
    """Reference counts of the guest frames the North holds: one per page of
    every memory map, one per page held by a shared mapping's object, one
    per page the page cache keeps."""
    refs: dict[int, int] = {}
    shared: dict[int, Any] = {}
    for mm in memory_maps(kernel):
        for f in mm.frames.values():
            refs[f] = refs.get(f, 0) + 1
        for v in mm.vmas:
            if v.shared is not None:
                shared.setdefault(id(v.shared), v.shared)
    for so in shared.values():
        for f in so.frames.values():
            refs[f] = refs.get(f, 0) + 1
    from cove.kernel.pagecache import cache_for

    for f in cache_for(kernel.phys).held():  # the page cache keeps its own reference
        refs[f] = refs.get(f, 0) + 1
    return refs


# --- closures ------------------------------------------------------------------------
class EmptyCell:
    """Stands for a closure cell with no value yet (pickled by reference)."""


_EMPTY = EmptyCell
_code_paths: dict[types.CodeType, tuple[str, str, tuple[int, ...]]] = {}


def _top_code(module: str, top: str) -> types.CodeType:
    obj: Any = importlib.import_module(module)
    for part in top.split("."):
        obj = getattr(obj, part)
    obj = getattr(obj, "__func__", obj)
    code = getattr(obj, "__code__", None)
    if not isinstance(code, types.CodeType):
        raise StateError(f"{module}.{top} is not a function")
    return code


def _find_path(code: types.CodeType, target: types.CodeType) -> tuple[int, ...] | None:
    for i, c in enumerate(code.co_consts):
        if c is target:
            return (i,)
        if isinstance(c, types.CodeType):
            sub = _find_path(c, target)
            if sub is not None:
                return (i, *sub)
    return None


def _code_ref(fn: types.FunctionType) -> tuple[str, str, tuple[int, ...]]:
    ref = _code_paths.get(fn.__code__)
    if ref is None:
        module, qualname = fn.__module__, fn.__qualname__
        top = qualname.split(".<locals>.")[0]
        if not module.startswith("cove") or "<" in top:
            raise StateError(f"cannot snapshot the function {module}.{qualname}")
        path = _find_path(_top_code(module, top), fn.__code__)
        if path is None:
            raise StateError(f"cannot find the code of {module}.{qualname}")
        ref = _code_paths[fn.__code__] = (module, top, path)
    return ref


_codes: dict[tuple[str, str, tuple[int, ...], str, int], tuple[types.CodeType, dict]] = {}


def make_function(module: str, top: str, path: tuple[int, ...], name: str,
                  ncells: int) -> types.FunctionType:
    """A closure of cove's own code, cells still empty (``set_function_state``)."""
    key = (module, top, path, name, ncells)
    found = _codes.get(key)
    if found is None:
        if not module.startswith("cove"):
            raise StateError(f"snapshot names code outside cove: {module}")
        code = _top_code(module, top)
        for i in path:
            code = code.co_consts[i]
            if not isinstance(code, types.CodeType):
                raise StateError(f"code of {module}.{top} changed since the snapshot")
        if len(code.co_freevars) != ncells or code.co_name != name.split(".")[-1]:
            raise StateError(f"code of {module}.{top} changed since the snapshot")
        found = _codes[key] = (code, importlib.import_module(module).__dict__)
    # A list comprehension: a generator expression costs ~0.3 µs more per function.
    cells = tuple([types.CellType() for _ in range(ncells)]) if ncells else None
    return types.FunctionType(found[0], found[1], name, None, cells)


def set_function_state(fn: types.FunctionType, state: tuple[Any, ...]) -> None:
    values, defaults, kwdefaults, attrs = state
    for cell, v in zip(fn.__closure__ or (), values, strict=True):
        if v is not _EMPTY:
            cell.cell_contents = v
    # make_function left both None: set only what differs (restores make ~50 of these).
    if defaults is not None:
        fn.__defaults__ = defaults
    if kwdefaults is not None:
        fn.__kwdefaults__ = kwdefaults
    if attrs:
        fn.__dict__.update(attrs)


def _reduce_function(fn: types.FunctionType) -> Any:
    if "<locals>" not in fn.__qualname__ and "<lambda>" not in fn.__qualname__:
        return NotImplemented  # importable by name: pickled as a reference
    module, top, path = _code_ref(fn)
    cells = fn.__closure__ or ()
    values = []
    for c in cells:
        try:
            values.append(c.cell_contents)
        except ValueError:
            values.append(_EMPTY)
    state = (tuple(values), fn.__defaults__, fn.__kwdefaults__, fn.__dict__ or None)
    return (make_function, (module, top, path, fn.__code__.co_name, len(cells)), state,
            None, None, set_function_state)


# --- reductions for objects that hold host resources -------------------------------------
def new_lock() -> Any:
    return threading.Lock()


def new_rlock() -> Any:
    return threading.RLock()


def set_scheduler_state(s: Any, state: dict[str, Any]) -> None:
    from cove.kernel.hostpoll import HostPoll

    s.__dict__.update(state)
    s._selector = HostPoll()


def set_kernel_state(k: Any, state: dict[str, Any]) -> None:
    k.__dict__.update(state)
    k.futexes = _futexes_in(k.futexes)


def set_epoll_state(ep: Any, state: dict[str, Any]) -> None:
    items = state.pop("items")
    ep.__dict__.update(state)
    ep.items = {(id(item.file), item.fd): item for item in items}


def _reduce_hostfs(fs: Any) -> Any:
    import os

    if fs._root_fd < 0:
        raise StateError("a closed host filesystem cannot be snapshotted")
    st = os.fstat(fs._root_fd)
    path = os.readlink(f"/proc/self/fd/{fs._root_fd}")
    state = {k: v for k, v in fs.__dict__.items()
             if k not in ("lock", "_dir_fds", "_file_fds", "_root_fd", "_finalizer")}
    state["_dir_cap"], state["_file_cap"] = fs._dir_fds.size, fs._file_fds.size
    return (reopen_hostfs, (type(fs), path, (st.st_dev, st.st_ino), state))


def reopen_hostfs(cls: type, path: str, ident: tuple[int, int], state: dict[str, Any]) -> Any:
    """A HostFS over ``path`` again, if it is still the very same directory."""
    import os
    import weakref

    from cove.fs import hostfs

    try:
        fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise StateError(f"host directory {path}: {e.strerror}") from None
    st = os.fstat(fd)
    if (st.st_dev, st.st_ino) != tuple(ident):
        os.close(fd)
        raise StateError(f"host directory {path} is not the one the snapshot saw "
                         "(different device or inode)")
    fs = cls.__new__(cls)
    fs.__dict__.update(state)
    fs.lock = threading.RLock()
    fs._dir_fds = hostfs._FdCache(state.pop("_dir_cap"))
    fs._file_fds = hostfs._FdCache(state.pop("_file_cap"))
    fs.__dict__.pop("_dir_cap", None)
    fs.__dict__.pop("_file_cap", None)
    fs._root_fd = fd
    fs._finalizer = weakref.finalize(fs, hostfs._close_all, fd, fs._dir_fds, fs._file_fds)
    return fs


def _reduce_file_source(src: Any) -> Any:
    """A tar rootfs's archive: reopened by path, if it is still the same file."""
    import os

    fd = src._fd
    path = os.readlink(f"/proc/self/fd/{fd}") if fd is not None else ""
    if not path.startswith("/") or path.endswith(" (deleted)"):
        raise StateError("the rootfs archive has no name to reopen it by (a compressed "
                         "archive is read from an anonymous decompressed copy): use an "
                         "uncompressed tar, a directory or the host rootfs to snapshot")
    st = os.fstat(fd)
    return (reopen_file_source, (type(src), path, (st.st_dev, st.st_ino, st.st_size,
                                                   st.st_mtime_ns)))


def reopen_file_source(cls: type, path: str, ident: tuple[int, int, int, int]) -> Any:
    import os

    try:
        f = open(path, "rb")
    except OSError as e:
        raise StateError(f"rootfs archive {path}: {e.strerror}") from None
    st = os.fstat(f.fileno())
    if (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) != tuple(ident):
        f.close()
        raise StateError(f"rootfs archive {path} changed since the snapshot")
    return cls(f, owned=True)


def _reduce_scheduler(s: Any) -> Any:
    state = dict(s.__dict__)
    state["_selector"] = None
    state["_fd_waiters"] = {}  # tasks on host fds are woken at restore and re-block
    state["_wakeup_r"] = state["_wakeup_w"] = -1
    state["_wakeup_pending"] = False
    state["horizon"] = None
    # Built with its state (not from arguments), so references back to it
    # while the state loads (tasks, timers) find the object itself.
    return (copyreg.__newobj__, (type(s),), state, None, None, set_scheduler_state)


def _reduce_kernel(k: Any) -> Any:
    state = dict(k.__dict__)
    state["futexes"] = _futexes_out(k.futexes)
    for name in ("platform", "phys", "cpu", "trace", "hostfuncs"):
        state.pop(name, None)
    state["shutdown_hooks"] = list(k.shutdown_hooks)
    state["current"] = None
    state["pause_requested"] = False
    state["pause_when"] = None
    state["deadline"] = None
    state["_enosys_logged"] = set()
    return (copyreg.__newobj__, (type(k),), state, None, None, set_kernel_state)


def _futexes_out(table: dict[Any, Any]) -> list[tuple[Any, ...]]:
    from cove.kernel.futex import PHYS_SHARED

    out = []
    for key, q in table.items():
        kind, a, addr = key
        out.append((kind, a if kind == PHYS_SHARED else _MM_BY_ID[a], addr, q))
    return out


def _futexes_in(items: list[tuple[Any, ...]]) -> dict[Any, Any]:
    from cove.kernel.futex import PHYS_SHARED

    return {(kind, a if kind == PHYS_SHARED else id(a), addr): q for kind, a, addr, q in items}


def _reduce_epoll(ep: Any) -> Any:
    # Its interest list is keyed by id(file): the keys are remade on load.
    state = dict(ep.__dict__)
    state["items"] = list(ep.items.values())
    return (copyreg.__newobj__, (type(ep),), state, None, None, set_epoll_state)


_MM_BY_ID: dict[int, Any] = {}  # during one capture: id(MemoryMap) -> map


def weak_values(items: list[tuple[Any, Any]]) -> weakref.WeakValueDictionary[Any, Any]:
    d: weakref.WeakValueDictionary[Any, Any] = weakref.WeakValueDictionary()
    if items:  # most are empty: skip update()'s Python-level work
        d.update(items)
    return d


def weak_keys(items: list[tuple[Any, Any]]) -> weakref.WeakKeyDictionary[Any, Any]:
    d: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
    if items:
        d.update(items)
    return d


def weak_set(items: list[Any]) -> weakref.WeakSet[Any]:
    return weakref.WeakSet(items)


def _dispatch() -> dict[type, Callable[[Any], Any]]:
    from cove.fs.hostfs import HostFS
    from cove.fs.tarsource import FileSource
    from cove.kernel.epoll import EpollFile
    from cove.kernel.kernel import Kernel
    from cove.kernel.sched import Scheduler

    table: dict[type, Callable[[Any], Any]] = dict(copyreg.dispatch_table)
    table[type(threading.Lock())] = lambda _: (new_lock, ())
    table[type(threading.RLock())] = lambda _: (new_rlock, ())
    # Weak containers (caches such as an overlay directory's children): what is
    # alive now travels; the restored objects nobody else holds go with the GC.
    table[weakref.WeakValueDictionary] = lambda d: (weak_values, (list(d.items()),))
    table[weakref.WeakKeyDictionary] = lambda d: (weak_keys, (list(d.items()),))
    table[weakref.WeakSet] = lambda d: (weak_set, (list(d),))
    table[HostFS] = _reduce_hostfs
    table[FileSource] = _reduce_file_source
    table[Scheduler] = _reduce_scheduler
    table[Kernel] = _reduce_kernel
    table[EpollFile] = _reduce_epoll
    return table


# --- the pickler -------------------------------------------------------------------------
class _Pickler(pickle.Pickler):
    def __init__(self, file: io.BytesIO, info: CaptureInfo) -> None:
        super().__init__(file, protocol=PROTOCOL)
        self.dispatch_table = _dispatch()
        self.info = info
        k = info.kernel
        from cove.kernel.hostfile import HostFile
        from cove.kernel.hostio import HostStdio
        from cove.kernel.kernel import Kernel
        from cove.kernel.physmem import PhysMem

        self._HostFile, self._HostStdio, self._Kernel, self._PhysMem = (
            HostFile, HostStdio, Kernel, PhysMem)
        self._tokens: dict[int, Any] = {}
        self._packed: dict[int, int] = {}  # id of a packed dict/set -> its number
        self._keep: list[Any] = []
        # Page maps a restore shares between its clones (``cove.kernel.basemap``).
        self._shareable: set[int] = set()
        if k is not None:
            from cove.kernel.pagecache import cache_for

            for mm in memory_maps(k):
                self._shareable.update((id(mm.frames), id(mm.cow)))
            pc = cache_for(k.phys)
            self._shareable.add(id(pc._by_frame))
            self._shareable.update(id(p) for p in pc._pages.values())
            self._tokens[id(k.platform)] = ("platform",)
            self._tokens[id(k.cpu)] = ("cpu",)
            for i, mm in enumerate(memory_maps(k)):
                self._tokens[id(mm.space)] = ("aspace", i)
            self._ctx_type = type(next(iter(k.tasks.values())).ctx) if k.tasks else None
        else:
            self._ctx_type = None

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is types.FunctionType:
            return _reduce_function(obj)
        return NotImplemented

    def _pack(self, obj: dict[Any, Any] | set[Any]) -> Any:
        """Big int-keyed containers travel packed (``cove.snappack``); one seen
        again is named by number, so it stays one object."""
        n = self._packed.get(id(obj))
        if n is not None:
            return ("same", n)
        flat = obj if type(obj) is dict or type(obj) is set else (
            dict(obj.items()) if type(obj) is BaseDict else set(obj))
        packed = snappack.pack(flat)
        if packed is None:
            return None
        n = self._packed[id(obj)] = len(self._packed)
        self._keep.append(obj)  # its id must not be reused during the dump
        # "share": each restore reads through to the decoded container (a
        # BaseDict/BaseSet), instead of copying it.
        return ("share" if id(obj) in self._shareable else "pack", n, *packed)

    def persistent_id(self, obj: Any) -> Any:
        t = type(obj)
        if (t is dict or t is set or t is BaseDict or t is BaseSet) and len(obj) >= snappack.MIN:
            return self._pack(obj)
        token = self._tokens.get(id(obj))
        if token is not None:
            return token
        if t is self._ctx_type:
            obj.sync()
            return ("ctx", bytes(memoryview(obj.regs).cast("B")), obj.fs_base, obj.gs_base,
                    obj.get_fpu())
        if isinstance(obj, self._PhysMem):
            return ("phys",)
        if isinstance(obj, self._Kernel) and obj is not self.info.kernel:
            return ("dead-kernel",)  # a finished run's kernel (procfs remembers it)
        if isinstance(obj, self._HostStdio):
            return ("hoststdio",)
        if isinstance(obj, self._HostFile):
            slot = self.info.slots.get(obj.fd)
            if slot is None:
                raise StateError("the guest holds a host file cove cannot re-create "
                                 f"(host fd {obj.fd})")
            return ("hostfile", slot, obj.flags, id(obj))
        return None


def dump(info: CaptureInfo) -> bytes:
    """Pickle the kernel (if any) and VFS, with the side tables and counters."""
    k = info.kernel
    side: dict[tuple[str, str], Any] = {}
    if k is not None:
        _MM_BY_ID.clear()
        for mm in memory_maps(k):
            _MM_BY_ID[id(mm)] = mm
        side = _side_tables_out(k)
    counters = {(m, a): _counter_next(_table(m, a)) for m, a in COUNTERS}
    root = {"kernel": k, "vfs": info.vfs, "side": side, "counters": counters}
    buf = io.BytesIO()
    try:
        try:
            _Pickler(buf, info).dump(root)
        except (pickle.PicklingError, TypeError, AttributeError, StateError) as e:
            where = _explain(root, info)
            raise StateError(f"cannot capture the sandbox's state: {e}"
                             + (f" (at {where})" if where else "")) from None
    finally:
        _MM_BY_ID.clear()
    return buf.getvalue()


def _explain(root: Any, info: CaptureInfo) -> str:
    """Where in the object graph the capture failed: the same pickling again
    with the pure-Python pickler, which lets us follow the path (slow; only
    after a failure)."""
    path: list[str] = []
    fast = _Pickler(io.BytesIO(), info)

    import pickle as pypickle

    class Tracer(pypickle._Pickler):  # type: ignore[name-defined]
        def save(self, obj: Any, save_persistent_id: bool = True) -> None:
            path.append(type(obj).__qualname__)
            super().save(obj, save_persistent_id)
            path.pop()

        def persistent_id(self, obj: Any) -> Any:
            return fast.persistent_id(obj)

        def reducer_override(self, obj: Any) -> Any:
            return fast.reducer_override(obj)

    tracer = Tracer(io.BytesIO(), protocol=PROTOCOL)
    tracer.dispatch_table = fast.dispatch_table
    try:
        tracer.dump(root)
    except Exception:
        return " > ".join(p for p in path if p not in ("dict", "tuple", "list"))[-400:]
    return ""


def _belongs(obj: Any, k: Kernel) -> bool:
    return getattr(obj, "kernel", None) is k


def _side_tables_out(k: Kernel) -> dict[tuple[str, str], Any]:
    out: dict[tuple[str, str], Any] = {}
    for mod, attr, how in SIDE_TABLES:
        if mod not in sys.modules:
            continue  # a syscall family never imported (they load lazily) has no entries
        table = _table(mod, attr)
        if how in ("task", "process"):
            out[(mod, attr)] = [(key, v) for key, v in list(table.items()) if _belongs(key, k)]
        elif how == "kernel":
            out[(mod, attr)] = table.get(k)
        elif how == "phys":
            out[(mod, attr)] = table.get(k.phys)
        elif how == "set":
            out[(mod, attr)] = [p for p in list(table) if _belongs(p, k)]
        elif how == "mm_ids":
            out[(mod, attr)] = [(_MM_BY_ID[key], n) for key, n in table.items()
                                if key in _MM_BY_ID]
        elif how == "file_watchers":
            out[(mod, attr)] = [(f, [ep for r in table[f] if (ep := r()) is not None])
                                for f in _open_files(k) if f in table]
    return out


def _open_files(k: Kernel) -> list[Any]:
    """Every open file description the guest can reach: its fd tables, and
    what its epoll sets watch."""
    seen: dict[int, Any] = {}
    todo = []
    for t in k.tasks.values():
        todo.extend(t.files.files.values())
    while todo:
        f = todo.pop()
        if id(f) in seen:
            continue
        seen[id(f)] = f
        items = getattr(f, "items", None)
        if isinstance(items, dict):  # an epoll set: the files it watches
            todo.extend(i.file for i in items.values() if getattr(i, "file", None) is not None)
    return list(seen.values())


# --- the unpickler -----------------------------------------------------------------------
# Globals a snapshot may name besides cove's own.
_ALLOWED: dict[str, frozenset[str]] = {
    "builtins": frozenset({"getattr", "set", "frozenset", "bytearray", "slice", "range",
                           "complex", "object", "bytes", "dict", "list", "tuple", "int",
                           "str", "float", "bool"}),
    "collections": frozenset({"deque", "OrderedDict", "defaultdict", "Counter"}),
    "copyreg": frozenset({"_reconstructor", "__newobj__", "__newobj_ex__"}),
    "array": frozenset({"array", "_array_reconstructor"}),
    "itertools": frozenset({"count"}),
    "time": frozenset({"time_ns", "monotonic_ns", "time", "monotonic"}),
    "functools": frozenset({"partial"}),
    "_functools": frozenset({"partial"}),
    "enum": frozenset(),
    "weakref": frozenset({"WeakKeyDictionary", "WeakValueDictionary", "WeakSet"}),
    "_weakrefset": frozenset({"WeakSet"}),
}


_FOUND: dict[tuple[str, str], Any] = {}  # find_class results (every restore names the same)


@dataclass
class RestoreEnv:
    """What the restoring side supplies for the persistent ids."""

    platform: Any
    phys: Any
    make_hostfile: Callable[[int, int], Any]  # (slot, flags) -> File
    hoststdio: Any
    aspaces: dict[int, Any] = field(default_factory=dict)
    # Decoded packed containers by number, kept by the snapshot across its restores.
    ints: dict[int, Any] = field(default_factory=dict)
    _files: dict[int, Any] = field(default_factory=dict)


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, env: RestoreEnv | None,
                 ints: dict[int, Any] | None = None) -> None:
        super().__init__(io.BytesIO(data))
        self.env = env
        self.ints = env.ints if env is not None else ints if ints is not None else {}
        self._packed: dict[int, Any] = {}

    def find_class(self, module: str, name: str) -> Any:
        found = _FOUND.get((module, name))
        if found is not None:  # allowed and looked up before
            return found
        if not (module == "cove" or module.startswith("cove.")):
            allowed = _ALLOWED.get(module)
            if allowed is None or name not in allowed:
                raise pickle.UnpicklingError(f"snapshot names {module}.{name}, which is not "
                                             "allowed")
        found = _FOUND[(module, name)] = super().find_class(module, name)
        return found

    def persistent_load(self, pid: Any) -> Any:
        kind = pid[0]
        if kind == "pack" or kind == "share":
            _, n, what, keys, values = pid
            tpl = self.ints.get(n)
            if tpl is None:  # decoded once per snapshot; its items are shared
                tpl = self.ints[n] = snappack.template(what, keys, values)
            if kind == "pack":
                obj = tpl.copy()
            elif type(tpl) is set:
                obj = BaseSet(tpl)
            else:
                obj = BaseDict(tpl)
            self._packed[n] = obj
            return obj
        if kind == "same":
            try:
                return self._packed[pid[1]]
            except (KeyError, TypeError):
                raise pickle.UnpicklingError("damaged packed container reference") from None
        env = self.env
        if kind in ("dead-kernel", "dead-platform"):
            return None
        if kind == "hoststdio":
            if env is not None:
                return env.hoststdio
            # A finished run's stdio that the VFS still names (/dev/tty's opener):
            # inert until the next run attaches its own.
            from cove.kernel.hostio import HostStdio

            return HostStdio(None)  # type: ignore[arg-type]
        if env is None:
            raise pickle.UnpicklingError("snapshot has guest state but nothing to restore it into")
        if kind == "platform":
            return env.platform
        if kind == "cpu":
            return env.platform.cpu()
        if kind == "phys":
            return env.phys
        if kind == "aspace":
            sp = env.aspaces.get(pid[1])
            if sp is None:  # the platform image lists every space the kernel uses
                raise pickle.UnpicklingError(f"address space {pid[1]} is not in the snapshot")
            return sp
        if kind == "ctx":
            _, regs, fs_base, gs_base, fpu = pid
            ctx = env.platform.create_context()
            memoryview(ctx.regs).cast("B")[:] = regs
            ctx.fs_base, ctx.gs_base = fs_base, gs_base
            ctx.set_fpu(fpu)
            return ctx
        if kind == "hostfile":
            _, slot, flags, ident = pid
            f = env._files.get(ident)
            if f is None:
                f = env._files[ident] = env.make_hostfile(slot, flags)
            return f
        raise pickle.UnpicklingError(f"unknown persistent id {kind!r}")


def load(data: bytes, env: RestoreEnv | None,
         ints: dict[int, Any] | None = None) -> dict[str, Any]:
    """Unpickle ``dump``'s root; side tables and counters are applied."""
    import gc

    enabled = gc.isenabled()
    gc.disable()  # a load makes many objects and no garbage: no collections midway
    try:
        root = _Unpickler(data, env, ints).load()
    except StateError:
        raise
    except Exception as e:
        raise StateError(f"cannot restore the sandbox's state: {e}") from None
    finally:
        if enabled:
            gc.enable()
    for (mod, attr), nxt in root["counters"].items():
        m = sys.modules.get(mod) or importlib.import_module(mod)
        m.__dict__[attr] = itertools.count(max(nxt, _counter_next(getattr(m, attr))))
    k = root["kernel"]
    if k is not None:
        _side_tables_in(root["side"])
    return root


def _side_tables_in(side: dict[tuple[str, str], Any]) -> None:
    kinds = {(m, a): how for m, a, how in SIDE_TABLES}
    for key, value in side.items():
        how = kinds.get(key)
        if how is None or not value or how in ("kernel", "phys"):
            continue  # empty, or set by kernel_tables once the kernel is whole
        table = _table(*key)
        if how in ("task", "process"):
            for obj, v in value:
                table[obj] = v
        elif how == "set":
            for p in value:
                table.add(p)
        elif how == "mm_ids":
            for mm, n in value:
                table[id(mm)] = n
        elif how == "file_watchers":
            for f, eps in value:
                table[f] = [weakref.ref(ep) for ep in eps]


def kernel_tables(side: dict[tuple[str, str], Any], k: Kernel) -> None:
    """Put back the kernel-keyed side tables (after ``k`` is complete)."""
    for mod, attr, how in SIDE_TABLES:
        if how in ("kernel", "phys"):
            v = side.get((mod, attr))
            if v is not None:
                _table(mod, attr)[k if how == "kernel" else k.phys] = v


def rebase_monotonic(k: Kernel, side: dict[tuple[str, str], Any], delta: float) -> None:
    """Move every host-monotonic instant the restored state holds by ``delta``
    (restore time minus capture time), so guest clocks continue where they
    were and pending sleeps keep their remaining length."""
    k.boot_monotonic += delta
    for proc in k.processes.values():
        proc.start_time += delta
    for t in k.tasks.values():
        t.start_time += delta
        b = t.blocked_on
        if b is not None and b.deadline is not None:
            b.deadline += delta
    s = k.sched
    # Sorted is a valid heap (and rounding may tie keys the shift kept apart).
    s._deadlines = sorted((d + delta, n, t) for d, n, t in s._deadlines)
    for _, _, timer in s._timers:
        timer.deadline += delta
    s._timers = sorted((d + delta, n, timer) for d, n, timer in s._timers)
    for key in _MONOTONIC_TABLES:
        if not side.get(key):
            continue
        table = _table(*key)
        for task, _ in side[key]:
            v = table.get(task)
            if v is not None:
                table[task] = v + delta
    for key in _DEADLINE_TABLES:
        if not side.get(key):
            continue
        table = _table(*key)
        for task, _ in side[key]:
            w = table.get(task)
            if w is not None and w.deadline is not None and w.deadline > 0:
                w.deadline += delta
