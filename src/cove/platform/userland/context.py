"""A guest thread's registers on the userland platform, and how they move
between a context and its stub thread.

A context is bound to one stub thread of the address space it last ran in;
while bound, the thread holds the live state. After a seccomp notification
the supervisor knows only what the notification carried (the syscall number,
the six arguments, rip; rcx == rip by the syscall convention), so the
context's ``regs`` become a ``PartialRegs``: reading or writing any other
register (rbx, rsp, rbp, r11-r15, rflags) fetches the rest first, by
interrupting the thread's notification wait with PTRACE_INTERRUPT (it stops
with -ERESTARTSYS, the syscall not run) and reading its registers. Handlers
that only use their arguments and return a value never pay for that, which
is what makes the notification path fast.

Raw-memory access to ``regs`` (``ctypes.memmove``, ``bytes(regs)``) bypasses
the fetch: do it only on full registers (``ensure_full()``). The platform's
own callers do; in the North only execve does, and execve always arrives
with full registers (it is a traced syscall).
"""

from __future__ import annotations

import ctypes
import operator
import struct
import weakref

from cove.platform.base import UserRegs

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from cove.platform.userland.platform import UserlandPlatform
    from cove.platform.userland.stub import StubThread

REGS_SIZE = ctypes.sizeof(UserRegs)
USER = struct.Struct("<18Q")  # UserRegs
HOST = struct.Struct("<27Q")  # user_regs_struct
# UserRegs fields (rax rbx rcx rdx rsi rdi rsp rbp r8..r15 rip rflags) in
# user_regs_struct (r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx rdx rsi rdi
# orig_rax rip cs eflags rsp ss fs_base gs_base ds es fs gs) order.
HOST_TO_USER = operator.itemgetter(10, 5, 11, 12, 13, 14, 19, 4, 9, 8, 7, 6, 3, 2, 1, 0, 16, 18)
H_RAX, H_ORIG_RAX, H_RIP, H_FS_BASE, H_GS_BASE = 10, 15, 16, 21, 22
UNKNOWN_AFTER_NOTIF = ("rbx", "rsp", "rbp", "r11", "r12", "r13", "r14", "r15", "rflags")


class PartialRegs(UserRegs):
    """UserRegs whose fields in UNKNOWN_AFTER_NOTIF are not loaded yet.

    Same layout as UserRegs (``__class__`` is swapped in place, costing
    nothing); the unknown fields are properties that load them on first use
    and turn the object back into a plain UserRegs."""

    __slots__ = ()


def _make_property(name: str) -> property:
    base = getattr(UserRegs, name)

    def get(self: UserRegs) -> int:
        self._ctx().ensure_full()  # type: ignore[attr-defined]
        return base.__get__(self)

    def set_(self: UserRegs, value: int) -> None:
        self._ctx().ensure_full()  # type: ignore[attr-defined]
        base.__set__(self, value)

    return property(get, set_)


for _name in UNKNOWN_AFTER_NOTIF:
    setattr(PartialRegs, _name, _make_property(_name))


class UserlandContext:
    """See ``cove.platform.base.Context`` and the module doc."""

    __slots__ = ("__weakref__", "_fin", "_fpu", "_fpu_dirty", "_fpu_live", "_live_fs",
                 "_live_gs", "_mv", "_platform", "_regs_addr", "_rmv", "_snap", "_thread",
                 "cut_short", "fs_base", "gs_base", "native_end", "native_rules", "regs",
                 "syscall_carry")  # fmt: skip

    def __init__(self, platform: UserlandPlatform) -> None:
        self._platform = platform
        self.regs = UserRegs()
        self.regs.rflags = 0x202
        self.regs._ctx = weakref.ref(self)  # type: ignore[attr-defined]
        self._regs_addr = ctypes.addressof(self.regs)
        self._mv = memoryview(self.regs).cast("B")
        self._rmv = self._mv[8:]  # every register but rax (the fast path compares these)
        self.fs_base = 0
        self.gs_base = 0
        self._fpu = bytearray(platform.fpu_template)
        self._fpu_dirty = True  # the image must be loaded into the thread
        self._fpu_live = False  # the thread may hold a newer image than _fpu
        self._thread: StubThread | None = None
        self._fin: weakref.finalize | None = None
        self._live_fs = self._live_gs = 0  # what the bound thread holds
        self._snap = b""  # regs after the last notification exit (see Cpu.run)
        # The calls its thread's filter must let run natively (bpf.Rule; a pipe
        # in native mode, cove.kernel.hostpipe): the cpu moves the context to
        # a thread whose filter has exactly these before it runs again.
        self.native_rules: tuple[tuple[int, int, int, int], ...] = ()
        self.native_end: object = None  # the host pipe end of the rule (its blocking copy)
        # Bytes a native write had moved when a kick cut it short; the rest is
        # reported as a syscall and the North adds these to its result.
        self.syscall_carry = 0
        # The rule's call a kick stopped before it moved a byte (-1: none): the
        # North restarts it or ends it with EINTR (Kernel._handle).
        self.cut_short = -1

    # --- the Context contract -----------------------------------------------
    def get_fpu(self) -> bytes:
        if self._fpu_live:
            self._platform.save_fpu(self)
        return bytes(self._fpu)

    def set_fpu(self, image: bytes | bytearray | memoryview) -> None:
        size = self._platform.capabilities.xsave_size
        if len(image) != size:
            raise ValueError(f"XSAVE image must be {size} bytes, got {len(image)}")
        self._fpu[:] = image
        self._fpu_dirty = True
        self._fpu_live = False

    def sync(self) -> None:
        """Make everything in the context current: registers a notification
        did not carry, FS/GS bases, the FPU image (snapshots rely on this)."""
        self.ensure_full()
        if self._thread is not None:
            self._platform.sync_context(self)

    def copy(self) -> UserlandContext:
        self.ensure_full()
        self.sync()
        c = UserlandContext(self._platform)
        ctypes.memmove(c._regs_addr, self._regs_addr, REGS_SIZE)
        c.fs_base, c.gs_base = self.fs_base, self.gs_base
        c.set_fpu(self.get_fpu())
        return c

    # --- platform side --------------------------------------------------------
    def ensure_full(self) -> None:
        """Load the registers a notification did not carry (see module doc)."""
        if type(self.regs) is PartialRegs:
            self._platform.fetch_regs(self)

    @property
    def partial(self) -> bool:
        return type(self.regs) is PartialRegs
