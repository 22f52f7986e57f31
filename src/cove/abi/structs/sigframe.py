"""The x86-64 signal frame: ucontext (kernel `struct ucontext`), the FPU/xsave
area, and where the kernel puts them on the stack.

How the North delivers a signal (Linux's arch/x86/kernel/signal*.c; the
placement and contents are checked against this host's kernel by
tests/abi/test_abi_sigframe.py):

1. ``sp = interrupted rsp - 128`` (the red zone is the interrupted code's).
   With SA_ONSTACK, an enabled alternate stack and ``sp`` not already on it:
   ``sp = ss_sp + ss_size`` (no red zone on a fresh alternate stack).
2. The FPU area goes first (highest), 64-byte aligned as XRSTOR requires:
   ``fpstate = round_down(sp - fpstate_size, 64)`` where ``fpstate_size`` is
   the user xsave size (CPUID 0xD for the enabled XCR0) plus 4 for
   FP_XSTATE_MAGIC2, or 512 on a CPU without XSAVE. Write the xsave image in
   standard (non-compacted) format, then stamp it with `stamp_fpstate`:
   ``sw_reserved.magic1 = FP_XSTATE_MAGIC1``, ``extended_size =
   fpstate_size``, ``xfeatures``, ``xstate_size`` (without the 4), and the u32
   FP_XSTATE_MAGIC2 at ``fpstate + xstate_size``.
3. The frame goes below it: ``frame = round_down(fpstate - 440, 16) - 8``.
   ``struct rt_sigframe`` is ``pretcode (8) | struct ucontext (304) |
   siginfo (128)``. At handler entry rsp = frame, so ``(rsp + 8) % 16 == 0``
   exactly as right after a ``call``.
4. Contents: ``pretcode = sa_restorer`` (required on x86-64, it issues
   rt_sigreturn); ``uc_flags = UC_FP_XSTATE | UC_SIGCONTEXT_SS |
   UC_STRICT_RESTORE_SS`` (drop UC_FP_XSTATE without XSAVE); ``uc_link = 0``;
   ``uc_stack`` = the thread's sigaltstack registration as stored (ss_sp,
   ss_size, ss_flags only SS_AUTODISARM or 0; all zero when none), after which
   SS_AUTODISARM clears the registration until sigreturn; ``uc_mcontext`` =
   the interrupted registers, cs 0x33, ss 0x2b, fs = gs = 0, err/trapno/cr2
   of the fault (0 otherwise), oldmask = low word of the old mask, fpstate =
   the area's address; ``uc_sigmask`` = the mask before delivery (for a
   sigsuspend/ppoll-style call, the mask it replaced); siginfo. An interrupted
   syscall is already settled in the saved registers: rax = -EINTR, or for a
   restart rip rewound by 2 (the ``syscall`` instruction) and rax = its number.
5. Handler entry: rip = handler, rsp = frame, rdi = signo, rsi = &siginfo,
   rdx = &ucontext, rax = 0; DF, TF and RF cleared in rflags; FPU state reset
   to its initial values. Then block ``sa_mask`` and the signal itself unless
   SA_NODEFER; SA_RESETHAND resets the action to SIG_DFL.
6. rt_sigreturn: the restorer's ``ret`` has popped pretcode, so the frame is
   at ``rsp - 8``. Restore the registers (only the user-changeable rflags bits
   AC OF DF TF SF ZF AF PF CF RF), the mask (never blocking SIGKILL/SIGSTOP),
   the alternate stack, and the FPU per `restorable_xstate_size`; fpstate == 0
   means "reset the FPU". A frame that cannot be read is SIGSEGV.
"""

from __future__ import annotations

import struct

from cove.abi.flags import FP_XSTATE_MAGIC1, FP_XSTATE_MAGIC2, FP_XSTATE_MAGIC2_SIZE
from cove.abi.layout import Layout
from cove.abi.structs.siginfo import SIGINFO_SIZE
from cove.dataclass import dataclass

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from typing import Any

# asm-generic/ucontext.h with x86-64's struct sigcontext as uc_mcontext.
UCONTEXT = Layout("""
    struct ucontext
    Q uc_flags
    Q uc_link
    Q uc_stack.ss_sp ss_sp
    i uc_stack.ss_flags ss_flags
    4x
    Q uc_stack.ss_size ss_size
    Q uc_mcontext.r8 r8
    Q uc_mcontext.r9 r9
    Q uc_mcontext.r10 r10
    Q uc_mcontext.r11 r11
    Q uc_mcontext.r12 r12
    Q uc_mcontext.r13 r13
    Q uc_mcontext.r14 r14
    Q uc_mcontext.r15 r15
    Q uc_mcontext.rdi rdi
    Q uc_mcontext.rsi rsi
    Q uc_mcontext.rbp rbp
    Q uc_mcontext.rbx rbx
    Q uc_mcontext.rdx rdx
    Q uc_mcontext.rax rax
    Q uc_mcontext.rcx rcx
    Q uc_mcontext.rsp rsp
    Q uc_mcontext.rip rip
    Q uc_mcontext.eflags eflags
    H uc_mcontext.cs cs
    H uc_mcontext.gs gs
    H uc_mcontext.fs fs
    H uc_mcontext.ss ss
    Q uc_mcontext.err err
    Q uc_mcontext.trapno trapno
    Q uc_mcontext.oldmask oldmask
    Q uc_mcontext.cr2 cr2
    Q uc_mcontext.fpstate fpstate
    64x uc_mcontext.reserved1
    Q uc_sigmask
""")

# The 18 general registers at the start of uc_mcontext, in memory order
# (= glibc's REG_R8..REG_EFL gregs[] indexes).
MCONTEXT_GREGS = (
    "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
    "rdi", "rsi", "rbp", "rbx", "rdx", "rax", "rcx", "rsp", "rip", "eflags",
)  # fmt: skip
USER_CS = 0x33
USER_DS = 0x2B  # also the user ss

# asm/sigcontext.h `struct _fpstate_64`: the FXSAVE legacy area, with the
# software-defined sw_reserved bytes that mark an xsave frame.
FPSTATE = Layout("""
    struct _fpstate_64
    H cwd
    H swd
    H twd
    H fop
    Q rip
    Q rdp
    I mxcsr
    I mxcsr_mask
    128s st_space
    256s xmm_space
    48x reserved2
    I sw_reserved.magic1 magic1
    I sw_reserved.extended_size extended_size
    Q sw_reserved.xfeatures xfeatures
    I sw_reserved.xstate_size xstate_size
    28x sw_reserved.padding
""")
FXSAVE_SIZE = 512

# asm/sigcontext.h `struct _header`: the XSAVE header right after the legacy area.
XSTATE_HEADER = Layout("""
    struct _header
    Q xfeatures
    16x reserved1
    40x reserved2
""")
XSTATE_MIN_SIZE = FXSAVE_SIZE + XSTATE_HEADER.size  # smallest valid xsave image

RED_ZONE = 128
FPSTATE_ALIGN = 64
RT_SIGFRAME_UC = 8  # offsetof(struct rt_sigframe, uc); pretcode is at 0
RT_SIGFRAME_INFO = RT_SIGFRAME_UC + UCONTEXT.size  # 312
RT_SIGFRAME_SIZE = RT_SIGFRAME_INFO + SIGINFO_SIZE  # 440


@dataclass(frozen=True, slots=True)
class SigFrame:
    """Guest addresses of one rt signal frame (see the module docstring)."""

    rsp: int  # rsp at handler entry; [rsp] holds pretcode
    ucontext: int  # rdx
    siginfo: int  # rsi
    fpstate: int  # uc_mcontext.fpstate, 64-byte aligned
    fpstate_size: int


def rt_sigframe(sp: int, fpstate_size: int, stack_top: int | None = None) -> SigFrame:
    """Place a frame for a thread interrupted at ``sp``.

    ``stack_top`` is ``ss_sp + ss_size`` when delivery switches to the
    alternate stack (the caller decides: SA_ONSTACK, stack enabled, sp not
    already on it). ``fpstate_size`` is xstate size + 4, or 512 without XSAVE.
    The caller checks the whole range is writable (else SIGSEGV) and, on an
    alternate stack, that it did not overflow the stack.
    """
    top = stack_top if stack_top is not None else sp - RED_ZONE
    fpstate = (top - fpstate_size) & ~(FPSTATE_ALIGN - 1)
    rsp = ((fpstate - RT_SIGFRAME_SIZE) & ~15) - 8
    return SigFrame(rsp, rsp + RT_SIGFRAME_UC, rsp + RT_SIGFRAME_INFO, fpstate, fpstate_size)


_MAGIC2 = struct.Struct("<I")
_SW_OFFSET = FPSTATE.offsets["magic1"]
_SW_BYTES = struct.Struct("<IIQI")


def stamp_fpstate(buf: Any, off: int, xstate_size: int, xfeatures: int) -> None:
    """Mark the xsave image at ``off`` as an xstate signal frame (step 2)."""
    _SW_BYTES.pack_into(
        buf, off + _SW_OFFSET,
        FP_XSTATE_MAGIC1, xstate_size + FP_XSTATE_MAGIC2_SIZE, xfeatures, xstate_size,
    )  # fmt: skip
    _MAGIC2.pack_into(buf, off + xstate_size, FP_XSTATE_MAGIC2)


def restorable_xstate_size(buf: Any, off: int, user_size: int) -> int:
    """How much of the guest's fpstate at ``off`` rt_sigreturn restores.

    The kernel's check_xstate_in_sigframe: a full xsave image (returns its
    xstate_size) only if magic1 is right, ``XSTATE_MIN_SIZE <= xstate_size <=
    min(user_size, extended_size)`` and magic2 sits right after it; anything
    else restores just the 512-byte FXSAVE part (x87/SSE), with every other
    xfeature reset. ``buf`` must hold at least ``off + 512`` bytes, and
    ``off + xstate_size + 4`` when the header says so (callers copy that from
    the guest; a fault there is SIGSEGV).
    """
    magic1, extended, _xfeatures, xsize = _SW_BYTES.unpack_from(buf, off + _SW_OFFSET)
    if (
        magic1 != FP_XSTATE_MAGIC1
        or xsize < XSTATE_MIN_SIZE
        or xsize > user_size
        or xsize > extended
    ):
        return FXSAVE_SIZE
    if _MAGIC2.unpack_from(buf, off + xsize)[0] != FP_XSTATE_MAGIC2:
        return FXSAVE_SIZE
    return xsize
