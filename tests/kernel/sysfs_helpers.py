"""Helpers for the file-system syscall tests (tests/kernel/test_sys_fs_*.py)."""

from __future__ import annotations

import struct
from typing import Any

from cove.abi import flags as F
from cove.abi.errno import E
from cove.abi.structs import IOVEC, STAT, STATX
from cove.fs.memfs import MemFS
from cove.fs.perm import Cred
from cove.kernel.fdtable import FdTable
from cove.kernel.kernel import Kernel
from cove.kernel.mm import MemoryMap
from cove.kernel.task import Creds, State, Task

from .fakes import FakeSpace
from .harness import SCRATCH, FakeContext, call, make_kernel

__all__ = ["AT_FDCWD", "BAD_ADDR", "E", "F", "Guest", "call"]

AT_FDCWD = -100
BAD_ADDR = 0x5000_0000  # never mapped
SCRATCH_END = SCRATCH + (1 << 20)
MASK64 = (1 << 64) - 1


class Guest:
    """One task plus a bump allocator over its scratch page, so a test can say
    ``g.call("openat", AT_FDCWD, g.s("/f"), ...)``."""

    def __init__(self, k: Kernel | None = None, t: Task | None = None) -> None:
        if k is None or t is None:
            k, t = make_kernel()
        self.k, self.t = k, t
        self.next = SCRATCH + 0x100
        self.vfs = k.vfs

    # --- memory ---------------------------------------------------------------
    def alloc(self, n: int, align: int = 16) -> int:
        addr = (self.next + align - 1) & ~(align - 1)
        self.next = addr + n
        assert self.next < SCRATCH_END - 0x1000, "scratch exhausted"
        self.t.mm.write(addr, bytes(n))
        return addr

    def s(self, text: str | bytes) -> int:
        """A NUL-terminated string in guest memory."""
        data = text.encode() if isinstance(text, str) else text
        addr = self.alloc(len(data) + 1)
        self.t.mm.write(addr, data + b"\0")
        return addr

    def data(self, data: bytes) -> int:
        addr = self.alloc(max(len(data), 1))
        self.t.mm.write(addr, data)
        return addr

    def read(self, addr: int, n: int) -> bytes:
        return self.t.mm.read(addr, n)

    def iov(self, *segs: tuple[int, int]) -> int:
        addr = self.alloc(IOVEC.size * max(len(segs), 1))
        for i, (base, length) in enumerate(segs):
            self.t.mm.write(addr + i * IOVEC.size,
                            IOVEC.pack(base & MASK64, length & MASK64))
        return addr

    # --- calls ------------------------------------------------------------------
    def call(self, name: str, *args: int) -> int:
        return call(self.t, name, *args)

    def open(self, path: str, flags: int = F.O_RDONLY, mode: int = 0o644,
             dirfd: int = AT_FDCWD) -> int:
        return self.call("openat", dirfd, self.s(path), flags, mode)

    def ok_open(self, path: str, flags: int = F.O_RDONLY, mode: int = 0o644) -> int:
        fd = self.open(path, flags, mode)
        assert fd >= 0, f"open {path}: {fd}"
        return fd

    def write_file(self, path: str, content: bytes, mode: int = 0o644) -> None:
        fd = self.ok_open(path, F.O_WRONLY | F.O_CREAT | F.O_TRUNC, mode)
        assert self.call("write", fd, self.data(content), len(content)) == len(content)
        assert self.call("close", fd) == 0

    def read_fd(self, fd: int, n: int = 4096) -> bytes:
        buf = self.alloc(n)
        r = self.call("read", fd, buf, n)
        assert r >= 0, r
        return self.read(buf, r)

    def mkdir(self, path: str, mode: int = 0o755) -> None:
        assert self.call("mkdir", self.s(path), mode) == 0

    def stat(self, path: str, flags: int = 0, dirfd: int = AT_FDCWD) -> Any:
        buf = self.alloc(STAT.size)
        r = self.call("newfstatat", dirfd, self.s(path), buf, flags)
        assert r == 0, r
        return STAT.read(self.read(buf, STAT.size))

    def fstat(self, fd: int) -> Any:
        buf = self.alloc(STAT.size)
        assert self.call("fstat", fd, buf) == 0
        return STAT.read(self.read(buf, STAT.size))

    def statx(self, path: str, flags: int = 0, mask: int = 0xFFF,
              dirfd: int = AT_FDCWD) -> Any:
        buf = self.alloc(STATX.size)
        r = self.call("statx", dirfd, self.s(path), flags, mask, buf)
        assert r == 0, r
        return STATX.read(self.read(buf, STATX.size))

    def become(self, uid: int, gid: int | None = None, *, ruid: int | None = None,
               rgid: int | None = None) -> None:
        """Switch the task's credentials (fs/effective ids, optionally other real ids)."""
        gid = uid if gid is None else gid
        ruid = uid if ruid is None else ruid
        rgid = gid if rgid is None else rgid
        self.t.proc.creds = Creds(ruid, uid, uid, uid, rgid, gid, gid, gid, ())
        self.t.fs.cred = Cred(uid, gid, ())

    def mount_ro(self, path: str) -> MemFS:
        """A read-only memfs mounted at ``path`` (created), holding a file "f" and dir "d"."""
        self.mkdir(path)
        fs = MemFS()
        fs.root.create("f", 0o644, 0, 0).write(0, b"ro data")
        fs.root.mkdir("d", 0o755, 0, 0)
        fs.readonly = True
        self.vfs.mount(path, fs, ctx=self.t.fs)
        return fs

    def fork_process(self) -> Guest:
        """A second process in the same sandbox (own fd table, own memory)."""
        k = self.k
        mm = MemoryMap(k.phys, FakeSpace())
        proc = k.new_process(self.t.proc, mm, Creds())
        t2 = k.new_task(proc, FakeContext(), FdTable(), self.t.fs.fork())
        mm.mmap(SCRATCH, 1 << 20, F.PROT_READ | F.PROT_WRITE,
                F.MAP_PRIVATE | F.MAP_ANONYMOUS | F.MAP_FIXED)
        return Guest(k, t2)

    def blocked(self) -> bool:
        return self.t.state is State.BLOCKED

    def resume(self) -> int:
        """Re-run a blocked call after a wake-up (what the run loop does)."""
        assert self.t.state is State.RUNNABLE, "still blocked"
        self.k._resume_blocked(self.t)
        r = self.t.ctx.regs.rax
        return r - (1 << 64) if r & (1 << 63) else r


def u32(b: bytes, off: int = 0) -> int:
    return struct.unpack_from("<I", b, off)[0]
