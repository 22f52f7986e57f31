"""A North without a CPU: a Kernel over a fake platform, for calling syscall
handlers directly in unit tests (guest code itself runs in integration tests)."""

from __future__ import annotations

from typing import Any

from cove.abi import flags as F
from cove.abi.sysnums import NR
from cove.fs.memfs import MemFS
from cove.fs.vfs import VFS
from cove.kernel.fdtable import FdTable
from cove.kernel.kernel import MASK64, Kernel
from cove.kernel.mm import MemoryMap
from cove.kernel.physmem import PhysMem
from cove.kernel.task import Creds, Task
from cove.platform.base import UserRegs

from .fakes import FakeSpace


class FakeContext:
    def __init__(self) -> None:
        self.regs = UserRegs()
        self.regs.rflags = 0x202
        self.fs_base = 0
        self.gs_base = 0
        self._fpu = bytes(512)

    def get_fpu(self) -> bytes:
        return self._fpu

    def set_fpu(self, image: Any) -> None:
        self._fpu = bytes(image)

    def copy(self) -> FakeContext:
        c = FakeContext()
        for name, _ in UserRegs._fields_:
            setattr(c.regs, name, getattr(self.regs, name))
        c.fs_base, c.gs_base, c._fpu = self.fs_base, self.gs_base, self._fpu
        return c


class FakeCpu:
    def set_timeslice(self, seconds: float | None) -> None:
        pass

    def run(self, ctx: Any, aspace: Any) -> Any:
        raise AssertionError("the fake platform cannot run guest code")


class FakePlatform:
    name = "fake"

    def __init__(self, size: int = 64 << 20) -> None:
        self.physmem = PhysMem(size)
        self._cpu = FakeCpu()

    def create_address_space(self) -> FakeSpace:
        return FakeSpace()

    def create_context(self) -> FakeContext:
        return FakeContext()

    def cpu(self) -> FakeCpu:
        return self._cpu


def make_kernel(root: Any = None) -> tuple[Kernel, Task]:
    """A kernel with one process (pid 1) and one thread, a scratch page at
    ``SCRATCH`` for arguments, and a memfs root unless ``root`` is given."""
    platform = FakePlatform()
    vfs = VFS(root or MemFS())
    k = Kernel(platform, vfs)  # type: ignore[arg-type]
    mm = MemoryMap(platform.physmem, FakeSpace())
    proc = k.new_process(None, mm, Creds())
    k.init = proc
    t = k.new_task(proc, FakeContext(), FdTable(), vfs.context())
    mm.mmap(SCRATCH, 1 << 20, F.PROT_READ | F.PROT_WRITE,
            F.MAP_PRIVATE | F.MAP_ANONYMOUS | F.MAP_FIXED)
    return k, t


SCRATCH = 0x10000000


def call(t: Task, name: str, *args: int) -> int:
    """Run syscall ``name`` through the dispatcher, as the guest would; returns
    the signed result (``-errno`` on failure)."""
    regs = t.ctx.regs
    regs.rax = int(NR[name])
    for reg, value in zip(("rdi", "rsi", "rdx", "r10", "r8", "r9"), args, strict=False):
        setattr(regs, reg, value & MASK64)
    t.kernel.syscall(t)
    r = regs.rax
    return r - (1 << 64) if r & (1 << 63) else r


def put(t: Task, data: bytes, offset: int = 0) -> int:
    """Write bytes into the scratch area; returns their guest address."""
    t.mm.write(SCRATCH + offset, data)
    return SCRATCH + offset
