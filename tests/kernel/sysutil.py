"""Helpers for the identity/time/memory syscall tests: more processes and
threads in a harness kernel, and small guest-memory readers."""

from __future__ import annotations

import struct

from cove.abi import flags as F
from cove.kernel.fdtable import FdTable
from cove.kernel.kernel import Kernel
from cove.kernel.mm import MemoryMap
from cove.kernel.task import Creds, Task

from .fakes import FakeSpace
from .harness import SCRATCH, FakeContext


def spawn(k: Kernel, parent: Task | None, creds: Creds | None = None) -> Task:
    """A new process (child of ``parent``'s) with one thread and a scratch area."""
    mm = MemoryMap(k.phys, FakeSpace())
    proc = k.new_process(parent.proc if parent else None, mm, creds or Creds())
    t = k.new_task(proc, FakeContext(), FdTable(), k.vfs.context())
    mm.mmap(SCRATCH, 1 << 20, F.PROT_READ | F.PROT_WRITE,
            F.MAP_PRIVATE | F.MAP_ANONYMOUS | F.MAP_FIXED)
    return t


def thread(k: Kernel, t: Task) -> Task:
    """A second thread in ``t``'s process (sharing files and fs, as CLONE_THREAD)."""
    tid = k.alloc_id()
    t.files.users += 1
    return k.new_task(t.proc, FakeContext(), t.files, t.fs, tid=tid)


def user(uid: int, gid: int | None = None) -> Creds:
    g = uid if gid is None else gid
    return Creds(uid, uid, uid, uid, g, g, g, g)


def u32s(t: Task, addr: int, n: int) -> tuple[int, ...]:
    return struct.unpack(f"<{n}I", t.mm.read(addr, 4 * n))


def u64(t: Task, addr: int) -> int:
    return int(struct.unpack("<Q", t.mm.read(addr, 8))[0])


def s32(t: Task, addr: int) -> int:
    return int(struct.unpack("<i", t.mm.read(addr, 4))[0])


BAD = 0x7000_0000_0000  # never mapped in a harness kernel
