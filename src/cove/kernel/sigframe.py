"""Guest signal handlers: building the x86-64 rt_sigframe (``setup``) and
taking it back (``sigreturn``), as arch/x86/kernel/signal*.c do.

The layout, placement and every field's meaning are documented in
``cove.abi.structs.sigframe`` (and checked there against real deliveries).
"""

from __future__ import annotations

import struct
import weakref

from cove.abi import flags as F
from cove.abi.errno import Errno
from cove.abi.structs.sigframe import (
    FXSAVE_SIZE,
    RED_ZONE,
    RT_SIGFRAME_INFO,
    RT_SIGFRAME_UC,
    UCONTEXT,
    USER_CS,
    USER_DS,
    XSTATE_HEADER,
    XSTATE_MIN_SIZE,
    restorable_xstate_size,
    rt_sigframe,
    stamp_fpstate,
)
from cove.kernel import altstack, signals
from cove.kernel.mm import USER_TOP
from cove.kernel.syscall import TABLE
from cove.kernel.task import SigAction

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from cove.kernel.kernel import Kernel
    from cove.kernel.task import Task

MASK64 = (1 << 64) - 1
# rflags bits a signal handler may change through uc_mcontext (FIX_EFLAGS).
FIX_EFLAGS = 0x40000 | 0x800 | 0x400 | 0x100 | 0x80 | 0x40 | 0x10 | 0x4 | 0x1 | 0x10000
# Cleared at handler entry: DF (the ABI's function entry state), TF, RF.
ENTRY_CLEAR = 0x400 | 0x100 | 0x10000
FCW_INIT = 0x037F
MXCSR_INIT = 0x1F80
MXCSR_DEFAULT_MASK = 0xFFBF  # what the CPU allows when FXSAVE reports a zero mask
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_SW = struct.Struct("<IIQI")  # fpstate sw_reserved: magic1, extended_size, xfeatures, xstate_size
_SW_OFF = 464
_GREGS = ("r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
          "rdi", "rsi", "rbp", "rbx", "rdx", "rax", "rcx", "rsp", "rip")


class BadFrame(Exception):
    """The frame cannot be written or read back: the thread gets SIGSEGV."""


class _FpuFacts:
    """What every FPU image of one platform shares: its size, the CPU's MXCSR
    mask, the enabled xfeatures (XCR0) and the initial image."""

    __slots__ = ("init", "mxcsr_mask", "size", "xcr0")

    def __init__(self, t: Task, image: bytes) -> None:
        self.size = len(image)
        self.mxcsr_mask = _U32.unpack_from(image, 28)[0] or MXCSR_DEFAULT_MASK
        caps = getattr(t.kernel.platform, "capabilities", None)
        if caps is not None:
            self.xcr0 = int(caps.xcr0)
        else:
            self.xcr0 = 0b11 | (_U64.unpack_from(image, FXSAVE_SIZE)[0] if self.size > 512 else 0)
        init = bytearray(self.size)  # fninit's control word, default MXCSR, no xfeatures
        _U16.pack_into(init, 0, FCW_INIT)
        _U32.pack_into(init, 24, MXCSR_INIT)
        init[28:32] = image[28:32]  # MXCSR_MASK is the CPU's, not state
        self.init = bytes(init)


_facts: weakref.WeakKeyDictionary[Kernel, _FpuFacts] = weakref.WeakKeyDictionary()


def _fpu_facts(t: Task, image: bytes | None = None) -> _FpuFacts:
    facts = _facts.get(t.kernel)
    if facts is None:
        facts = _facts[t.kernel] = _FpuFacts(t, t.ctx.get_fpu() if image is None else image)
    return facts


# --- delivery -----------------------------------------------------------------
def _settle_syscall(t: Task, ka: SigAction) -> None:
    """An interrupted call: rax is -EINTR already; SA_RESTART restarts the
    restartable ones (ERESTARTSYS), the others stay EINTR (ERESTARTNOHAND)."""
    nr = t.restart_nr
    if nr is None:
        return
    t.restart_nr = None
    sc = TABLE.get(nr)
    if ka.flags & F.SA_RESTART and sc is not None and sc.restartable:
        regs = t.ctx.regs
        regs.rip = (regs.rip - 2) & MASK64
        regs.rax = nr


def setup(t: Task, signo: int, act: SigAction, info: bytes) -> bool:
    """Run the guest's handler for ``signo``: write the frame on the thread's
    stack (or alternate stack), point the registers at the handler, block
    sa_mask. A frame that cannot be written becomes SIGSEGV (False)."""
    ka = SigAction(act.handler, act.flags, act.restorer, act.mask)
    if ka.flags & F.SA_RESETHAND:
        act.handler = signals.SIG_DFL
    _settle_syscall(t, ka)
    saved = t.saved_sigmask if t.saved_sigmask is not None else t.sigmask
    fault = (0, 0, 0)
    if signo in signals.FAULT_SIGNALS and signals.info_code(info) > 0:
        fault = t.fault_info
    t.fault_info = (0, 0, 0)
    try:
        if not ka.flags & F.SA_RESTORER:
            raise BadFrame  # x86-64 has no kernel trampoline
        _write_frame(t, signo, ka, info, saved, fault)
    except (Errno, BadFrame):
        signals.force_sigsegv(t, signo)
        return False
    t.saved_sigmask = None
    blocked = t.sigmask | ka.mask
    if not ka.flags & F.SA_NODEFER:
        blocked |= signals.bit(signo)
    t.sigmask = blocked & ~signals.UNBLOCKABLE & signals.ALL
    return True


def _write_frame(t: Task, signo: int, ka: SigAction, info: bytes, saved: int,
                 fault: tuple[int, int, int]) -> None:
    regs = t.ctx.regs
    fpu = t.ctx.get_fpu()
    xsave = len(fpu) > FXSAVE_SIZE
    fp_size = len(fpu) + F.FP_XSTATE_MAGIC2_SIZE if xsave else FXSAVE_SIZE
    sp = regs.rsp
    nested = altstack.on_sig_stack(t, sp)
    top = None
    if ka.flags & F.SA_ONSTACK and altstack.reported_flags(t, sp - RED_ZONE) & 3 == 0:
        base, _, size = t.altstack
        top = base + size
    plan = rt_sigframe(sp, fp_size, top)
    if (nested or top is not None) and not altstack.within(t, plan.rsp):
        raise BadFrame  # it would overflow the alternate stack

    fp = bytearray(fp_size)
    fp[:len(fpu)] = fpu
    if xsave:
        stamp_fpstate(fp, 0, len(fpu), _fpu_facts(t, fpu).xcr0)
    else:
        fp[_SW_OFF:FXSAVE_SIZE] = bytes(FXSAVE_SIZE - _SW_OFF)

    ss_sp, ss_flags, ss_size = t.altstack
    uc_flags = F.UC_SIGCONTEXT_SS | F.UC_STRICT_RESTORE_SS | (F.UC_FP_XSTATE if xsave else 0)
    trapno, err, cr2 = fault
    frame = bytearray(RT_SIGFRAME_INFO)
    _U64.pack_into(frame, 0, ka.restorer)
    UCONTEXT.pack_into(
        frame, RT_SIGFRAME_UC, uc_flags, 0,
        ss_sp, ss_flags - (1 << 32) if ss_flags & 0x80000000 else ss_flags, ss_size,
        *(getattr(regs, r) for r in _GREGS), regs.rflags,
        USER_CS, 0, 0, USER_DS, err, trapno, saved, cr2, plan.fpstate, saved,
    )  # fmt: skip
    t.mm.write(plan.fpstate, fp)
    t.mm.write(plan.rsp, frame)
    if ka.flags & F.SA_SIGINFO:
        t.mm.write(plan.siginfo, info)

    if ss_flags & F.SS_AUTODISARM:
        t.altstack = altstack.DISABLED
    regs.rdi = signo
    regs.rsi = plan.siginfo
    regs.rdx = plan.ucontext
    regs.rax = 0
    regs.rip = ka.handler
    regs.rsp = plan.rsp
    regs.rflags &= ~ENTRY_CLEAR
    t.ctx.set_fpu(_fpu_facts(t, fpu).init)


# --- rt_sigreturn -------------------------------------------------------------
def sigreturn(t: Task) -> bool:
    """Restore the context saved by ``setup`` from the frame at rsp - 8 (the
    restorer's ``ret`` popped pretcode). False: bad frame, SIGSEGV is queued."""
    regs = t.ctx.regs
    frame = (regs.rsp - 8) & MASK64
    try:
        raw = t.mm.read(frame, RT_SIGFRAME_INFO)
    except Errno:
        signals.force(t, F.SIGSEGV, signals.make_info(F.SIGSEGV))
        return False
    uc = UCONTEXT.read(raw, RT_SIGFRAME_UC)
    t.sigmask = uc.uc_sigmask & ~signals.UNBLOCKABLE & signals.ALL
    t.saved_sigmask = None
    t.restart_nr = None
    for r in _GREGS:
        setattr(regs, r, getattr(uc, r))
    regs.rflags = (regs.rflags & ~FIX_EFLAGS) | (uc.eflags & FIX_EFLAGS)
    # What the return to user mode would fault on is SIGSEGV here: a
    # non-canonical or kernel rip, or segments other than the 64-bit user
    # ones (cove runs no 32-bit code; a null or kernel selector #GPs).
    ok = regs.rip < USER_TOP and uc.cs | 3 == USER_CS
    if uc.uc_flags & F.UC_STRICT_RESTORE_SS and uc.ss | 3 != USER_DS:
        ok = False
    if ok:
        try:
            restore_fpu(t, uc.fpstate)
        except (Errno, BadFrame):
            ok = False
    if not ok:
        signals.force(t, F.SIGSEGV, signals.make_info(F.SIGSEGV))
        return False
    try:
        altstack.change(t, uc.ss_sp, uc.ss_flags, uc.ss_size, regs.rsp)
    except Errno:
        pass  # Linux squashes everything but EFAULT here
    return True


def restore_fpu(t: Task, addr: int) -> None:
    """fpu__restore_sig: take the guest's fpstate at ``addr`` (0: reset the FPU)."""
    facts = _fpu_facts(t)
    if addr == 0:
        t.ctx.set_fpu(facts.init)
        return
    user_size = facts.size
    legacy = t.mm.read(addr, FXSAVE_SIZE)
    image = bytearray(user_size)
    full = False
    if user_size > FXSAVE_SIZE:
        magic1, extended, _, xsize = _SW.unpack_from(legacy, _SW_OFF)
        if (magic1 == F.FP_XSTATE_MAGIC1
                and XSTATE_MIN_SIZE <= xsize <= min(user_size, extended)):
            buf = t.mm.read(addr, xsize + F.FP_XSTATE_MAGIC2_SIZE)
            if restorable_xstate_size(buf, 0, user_size) == xsize:
                image[:xsize] = buf[:xsize]
                full = True
    if not full:
        image[:FXSAVE_SIZE] = legacy
    if _U32.unpack_from(image, 24)[0] & ~facts.mxcsr_mask:
        raise BadFrame  # XRSTOR would #GP on reserved MXCSR bits
    image[_SW_OFF:FXSAVE_SIZE] = bytes(FXSAVE_SIZE - _SW_OFF)
    if user_size > FXSAVE_SIZE:
        xcr0 = facts.xcr0
        hdr = XSTATE_HEADER.read(image, FXSAVE_SIZE)
        if full:
            reserved = bytes(image[FXSAVE_SIZE + 8:FXSAVE_SIZE + XSTATE_HEADER.size])
            if hdr.xfeatures & ~xcr0 or reserved.strip(b"\0"):
                raise BadFrame  # unknown features or a compacted/reserved header
            user = _SW.unpack_from(legacy, _SW_OFF)[2]
            xstate_bv = hdr.xfeatures & user & xcr0
        else:
            xstate_bv = 0b11  # x87 and SSE from the legacy area, the rest reset
        XSTATE_HEADER.pack_into(image, FXSAVE_SIZE, xstate_bv)
    t.ctx.set_fpu(bytes(image))
