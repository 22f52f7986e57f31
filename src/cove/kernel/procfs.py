"""``/proc``: the sandbox's own processes, numbers and mounts — never the host's.

The tree is a writable ``SyntheticFS``: files render at open time from the
kernel's state (``procfs_pid``, ``procfs_mem``, ``procfs_fd``, ``procfs_sys``)
and a few take writes (``comm``, ``oom_score_adj``, ``sys/kernel/hostname``).
``self`` and ``thread-self`` resolve against the task making the call
(``kernel.current``), which is also whose rights decide access:

- ``/proc/<pid>`` and its entries belong to the process's effective ids (root
  for a non-dumpable one), so mode bits do most of the work: ``environ`` and
  ``auxv`` are 0400, ``fd/`` and ``fdinfo/`` 0500.
- ``maps``, ``smaps``, ``environ``, ``auxv``, ``fdinfo`` and the ``exe``,
  ``cwd``, ``root`` and fd links also need Linux's ptrace read access (same
  ids and dumpable, or root): EACCES otherwise.

``readdir`` of ``/proc`` lists processes; any thread id can still be looked up,
as on Linux. Links are plain symlinks whose text is a path: following
``/proc/<pid>/fd/<n>`` reaches the file by that path (Linux's "magic" links,
which reach even deleted files and pipes, are not implemented).
"""

from __future__ import annotations

from weakref import WeakKeyDictionary

from cove.abi.errno import E, Errno
from cove.fs.synthetic import SynthDir, SyntheticFS, SynthInode

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from typing import Any

    from cove.fs.vfs import VFS, PathContext
    from cove.kernel.kernel import Kernel
    from cove.kernel.task import Process, Task

__all__ = ["ProcFS", "make_procfs"]


def _uuid4() -> str:
    # uuid drags in the platform module (a few ms per start); only a read needs it.
    import uuid

    return str(uuid.uuid4())


class ProcFS(SyntheticFS):
    """The synthetic tree; ``kernel`` is attached when the sandbox boots."""

    def __init__(self, vfs: VFS) -> None:
        super().__init__("proc", readonly=False)
        self.vfs = vfs
        self.kernel: Kernel | None = None
        self._root = ProcRoot(self)
        self._boot_ids: WeakKeyDictionary[Kernel, str] = WeakKeyDictionary()

    @property
    def root(self) -> ProcRoot:
        return self._root

    # --- who is asking ----------------------------------------------------------------
    def reader(self) -> Task | None:
        """The task whose syscall is reading (None: the host, e.g. a test)."""
        k = self.kernel
        return k.current if k is not None else None

    def reader_ctx(self) -> PathContext:
        r = self.reader()
        return r.fs if r is not None else self.vfs.context()

    def may_inspect(self, p: Process) -> bool:
        """Linux's ptrace_may_access(PTRACE_MODE_READ_FSCREDS): the same process,
        or root, or a dumpable process whose ids all equal the reader's fs ids."""
        r = self.reader()
        if r is None or r.proc is p:
            return True
        c, tc = r.proc.creds, p.creds
        if c.euid == 0:
            return True
        same = (c.fsuid == tc.ruid == tc.euid == tc.suid
                and c.fsgid == tc.rgid == tc.egid == tc.sgid)
        return same and bool(p.dumpable)

    def check_inspect(self, p: Process) -> None:
        if not self.may_inspect(p):
            raise Errno(E.EACCES)

    def boot_id(self) -> str:
        k = self.kernel
        if k is None:
            return _uuid4()
        return self._boot_ids.setdefault(k, _uuid4())


class ProcRoot(SynthDir):
    """``/proc``: lists processes; any live thread id can also be looked up.

    Lookups go straight to the process table (a ``ps`` over thousands of
    processes must not rebuild the whole listing for each one); readdir
    builds the listing and forgets directories of reaped processes.
    """

    __slots__ = ("built", "hidden")

    def __init__(self, fs: ProcFS) -> None:
        super().__init__(fs, None, 0o555)
        self.hidden: dict[str, SynthInode] = {}
        self.built = False

    def _build(self) -> Any:
        """The tree's module, the fixed entries added on first use: a sandbox
        whose guest never looks at /proc neither imports nor snapshots them."""
        from cove.kernel import procfs_tree

        if not self.built:
            procfs_tree.fill_root(self.fs)  # type: ignore[arg-type]
            self.built = True
        return procfs_tree

    def _entries(self) -> dict[str, SynthInode]:
        self._build()
        return super()._entries()

    def lookup(self, name: str) -> SynthInode:
        tree = self._build()
        node = self.children.get(name)
        if node is not None:
            return node
        k = self.fs.kernel  # type: ignore[attr-defined]
        if k is None or not name.isdigit() or name != str(int(name)):
            raise Errno(E.ENOENT)
        pid = int(name)
        if pid in k.processes:
            node = self._dynamic.get(name)
            if node is None:
                if len(self._dynamic) > 2 * len(k.processes) + 64:
                    self._entries()  # drop the directories of reaped processes
                node = self._dynamic[name] = tree.process_dir(self.fs, pid)(self)
            return node
        th = k.tasks.get(pid)
        if th is None:
            raise Errno(E.ENOENT)
        # Linux: /proc/<tid> of a non-leader thread resolves, though readdir omits it.
        for stale in [n for n in self.hidden if int(n) not in k.tasks]:
            del self.hidden[stale]
        node = self.hidden.get(name)
        if node is None:
            node = self.hidden[name] = tree.process_dir(self.fs, th.proc.pid, th.tid)(self)
        return node


def make_procfs(vfs: VFS) -> ProcFS:
    """/proc for ``vfs``; its entries (cove.kernel.procfs_tree) are made on first use."""
    return ProcFS(vfs)
