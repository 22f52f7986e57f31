"""The platform contract: what the North may ask of a South.

A platform runs guest x86-64 user code natively and stops on every syscall,
fault and preemption, handing a register context back to Python. It knows
nothing of Linux: the North decides what is mapped where, what a syscall
means and which signal a fault becomes; the platform only does it.

North code imports this module (for the types and ``select_platform``) and
never a platform package: it receives the ``Platform`` object and passes it
around.

Vocabulary
- *frame*: a 4 KiB page of guest physical memory, numbered, owned by
  ``cove.kernel.physmem.PhysMem``. Reference counts are the North's business:
  mapping a frame does not take a reference and unmapping does not drop one.
- *address space*: one set of guest page tables (one process).
- *context*: the user-mode register state of one guest thread.
- *cpu*: a host-side execution engine (a vCPU, a stub thread) bound to the
  host thread that calls ``run``; any context may run on any cpu, one at a time.
"""

from __future__ import annotations

import ctypes
import enum
import os
from collections.abc import Callable

from cove.dataclass import dataclass

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from typing import Any

    from cove.kernel.physmem import PhysMem
    from cove.platform.protocols import AddressSpace as AddressSpace
    from cove.platform.protocols import Context as Context
    from cove.platform.protocols import Cpu as Cpu
    from cove.platform.protocols import NativeGrant as NativeGrant
    from cove.platform.protocols import NativeIo as NativeIo
    from cove.platform.protocols import Platform as Platform

# The interfaces (typing.Protocol classes) live in cove.platform.protocols,
# imported when first asked for here: defining them needs typing at run time.
_PROTOCOLS = frozenset(("AddressSpace", "Context", "Cpu", "NativeGrant", "NativeIo", "Platform"))


def __getattr__(name: str) -> Any:
    if name in _PROTOCOLS:
        from cove.platform import protocols

        return getattr(protocols, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


PROT_NONE = 0
PROT_READ = 1
PROT_WRITE = 2
PROT_EXEC = 4

# x86 exception vectors, as reported in Exit.vector.
DE, DB, NMI, BP, OF, BR, UD, NM, DF = 0, 1, 2, 3, 4, 5, 6, 7, 8
TS, NP, SS, GP, PF = 10, 11, 12, 13, 14
MF, AC, MC, XM = 16, 17, 18, 19
VECTOR_NAMES = {
    DE: "#DE", DB: "#DB", NMI: "NMI", BP: "#BP", OF: "#OF", BR: "#BR", UD: "#UD",
    NM: "#NM", DF: "#DF", TS: "#TS", NP: "#NP", SS: "#SS", GP: "#GP", PF: "#PF",
    MF: "#MF", AC: "#AC", MC: "#MC", XM: "#XM",
}  # fmt: skip

# #PF error code bits (Exit.error_code when vector == PF).
PF_PRESENT = 1 << 0  # the page was present: a protection violation, not a missing page
PF_WRITE = 1 << 1
PF_USER = 1 << 2
PF_RSVD = 1 << 3
PF_INSTR = 1 << 4  # instruction fetch

USER_ADDRESS_LIMIT = 1 << 47  # user mappings live in [0, 2**47), like Linux x86-64


def check_user_range(vaddr: int, length: int = 4096) -> None:
    """The AddressSpace argument rule: page-aligned, inside user space, else ValueError."""
    if vaddr & 0xFFF or length & 0xFFF or length < 0:
        raise ValueError(f"unaligned range {vaddr:#x}+{length:#x}")
    if vaddr < 0 or vaddr + length > USER_ADDRESS_LIMIT:
        raise ValueError(f"range {vaddr:#x}+{length:#x} outside user space")


def read_virtual(translate: Callable[..., int | None], mem: Any, vaddr: int,
                 length: int) -> bytes:
    """Copy guest virtual memory out page by page through an address space's
    ``translate`` (user-mode permissions); Errno(EFAULT) at the first unreadable
    byte. Both platforms' ``AddressSpace.read``, for tests and tools."""
    from cove.abi.errno import E, Errno

    out = bytearray()
    while length > 0:
        pa = translate(vaddr)
        if pa is None:
            raise Errno(E.EFAULT, f"read at {vaddr:#x}")
        n = min(length, 4096 - (vaddr & 0xFFF))
        out += mem[pa:pa + n]
        vaddr, length = vaddr + n, length - n
    return bytes(out)


def write_virtual(translate: Callable[..., int | None], mem: Any, vaddr: int,
                  data: bytes | bytearray | memoryview) -> None:
    """Copy into guest virtual memory (user write permission), as ``read_virtual``."""
    from cove.abi.errno import E, Errno

    view = memoryview(data).cast("B")
    pos = 0
    while pos < len(view):
        pa = translate(vaddr, write=True)
        if pa is None:
            raise Errno(E.EFAULT, f"write at {vaddr:#x}")
        n = min(len(view) - pos, 4096 - (vaddr & 0xFFF))
        mem[pa:pa + n] = view[pos:pos + n]
        vaddr, pos = vaddr + n, pos + n


class PlatformError(Exception):
    """The platform itself failed (a host ioctl failed, the VM died). Not the guest's
    fault and not recoverable for this platform instance."""


class PlatformUnavailable(PlatformError):
    """The requested platform cannot run on this host (no /dev/kvm, no permission,
    a missing kernel capability). Raised by ``select_platform`` and constructors."""


class UserRegs(ctypes.Structure):
    """General-purpose user registers, rip and rflags.

    The field order is KVM's ``struct kvm_regs`` so the kvm platform copies it
    with one memmove; other platforms convert. Values are unsigned 64-bit.
    """

    _fields_ = [
        (n, ctypes.c_uint64)
        for n in "rax rbx rcx rdx rsi rdi rsp rbp r8 r9 r10 r11 r12 r13 r14 r15 rip rflags".split()
    ]


ARG_REGS = ("rdi", "rsi", "rdx", "r10", "r8", "r9")  # Linux syscall argument registers, in order


class ExitKind(enum.IntEnum):
    """Why ``Cpu.run`` returned."""

    SYSCALL = 1
    """The guest executed ``syscall``. ``regs.rax`` is the number, args are in
    rdi rsi rdx r10 r8 r9; ``regs.rip`` already points after the instruction
    (rcx == rip, r11 == rflags, as Linux leaves them). Set ``regs.rax`` to the
    result and run again; to restart the call, set rip back by 2."""
    FAULT = 2
    """A CPU exception in user mode: ``Exit.vector``, ``Exit.error_code``
    (0 when the vector has none), ``Exit.cr2`` for #PF. ``regs.rip`` is the
    faulting instruction for faults and the next one for traps (#BP, #OF).
    Running again retries the instruction (after e.g. mapping the page)."""
    INTERRUPTED = 3
    """Preempted by the cpu's timeslice or by ``Cpu.kick()``; the context is
    consistent and may be run again or swapped for another."""
    HALT = 4
    """The guest stopped for good (triple fault, a hypervisor internal error).
    ``Exit.detail`` says what; the cpu cannot run this context again."""


class Exit:
    """The reason a ``run`` returned. Cpus reuse one instance per cpu (no
    allocation per exit): read it before the next ``run`` on that cpu."""

    __slots__ = ("cr2", "detail", "error_code", "kind", "vector")

    def __init__(self) -> None:
        self.kind: ExitKind = ExitKind.HALT
        self.vector = -1
        self.error_code = 0
        self.cr2 = 0
        self.detail = ""

    def copy(self) -> Exit:
        """A copy to keep past the cpu's next run (the cpu reuses this one)."""
        c = Exit()
        c.kind, c.vector, c.error_code, c.cr2, c.detail = self.kind, self.vector, \
            self.error_code, self.cr2, self.detail  # fmt: skip
        return c

    def __repr__(self) -> str:
        if self.kind == ExitKind.FAULT:
            name = VECTOR_NAMES.get(self.vector, str(self.vector))
            return f"Exit(FAULT {name} err={self.error_code:#x} cr2={self.cr2:#x})"
        extra = f" {self.detail}" if self.detail else ""
        return f"Exit({self.kind.name}{extra})"


@dataclass(frozen=True)
class Capabilities:
    """What a platform instance turned out to be able to do, for logs and tuning."""

    name: str
    syscall_path: str  # how a guest syscall reaches Python, e.g. "lstar-out-cpl3"
    xsave_size: int  # bytes in a Context FPU image
    xcr0: int  # enabled XSAVE features (x87|SSE|AVX|...)
    user_address_limit: int = USER_ADDRESS_LIMIT
    notes: str = ""
    # The platform can let a guest read/write on a host pipe the North owns run
    # in the host kernel (see NativeIo); the North then backs anonymous pipes
    # with host pipes and registers itself with ``platform.set_native_io``.
    native_pipes: bool = False


def select_platform(name: str = "auto", *, physmem: PhysMem | None = None) -> Platform:
    """Open a platform by name: "kvm", "userland", or "auto" for the best one
    this host has (kvm where /dev/kvm opens, else userland).

    ``physmem`` is the sandbox's guest memory; when omitted the platform makes
    one (``COVE_PHYSMEM_MB``, default 1024 MiB, sparse). Raises
    PlatformUnavailable (with the reason) when nothing usable exists.
    """
    if physmem is None:
        from cove.kernel.physmem import PhysMem

        physmem = PhysMem(int(os.environ.get("COVE_PHYSMEM_MB", "1024")) << 20)
    if name == "userland":
        from cove.platform.userland import UserlandPlatform

        return UserlandPlatform(physmem)
    if name in ("auto", "kvm"):
        # Imported here so importing this module never drags a platform in.
        from cove.platform.kvm import KvmPlatform, kvm_unavailable_reason

        reason = kvm_unavailable_reason()
        if reason is None:
            return KvmPlatform(physmem)
        if name == "auto":
            from cove.platform.userland import UserlandPlatform, userland_unavailable_reason

            if userland_unavailable_reason() is None:
                return UserlandPlatform(physmem)
        raise PlatformUnavailable(
            f"kvm platform unavailable: {reason}; load the kvm module and give this user "
            "read/write access to /dev/kvm (e.g. add it to the kvm group)"
            + (f"; userland: {userland_unavailable_reason()}" if name == "auto" else "")
        )
    raise PlatformUnavailable(f"unknown platform {name!r} (known: auto, kvm, userland)")
