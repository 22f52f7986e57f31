"""Signal delivery to guest handlers and the signal syscalls, through the
real dispatcher (no CPU: frames are parsed back from guest memory)."""

from __future__ import annotations

import struct
import time

import pytest

from cove.abi import flags as F
from cove.abi.errno import E
from cove.abi.structs.sigframe import (
    FPSTATE,
    RT_SIGFRAME_INFO,
    RT_SIGFRAME_UC,
    UCONTEXT,
    USER_CS,
    USER_DS,
    rt_sigframe,
)
from cove.abi.structs.siginfo import K_SIGACTION, SIGINFO_FAULT, SIGINFO_KILL, SIGINFO_RT, STACK_T
from cove.abi.sysnums import NR
from cove.kernel import signals
from cove.kernel.task import State

from .harness import SCRATCH, call, make_kernel, put
from .sighelp import (
    BAD,
    HANDLER,
    RESTORER,
    STACK,
    bit,
    deliver,
    pending,
    resume,
    sigaction,
    signed,
    sigreturn,
    spawn,
    u64,
    ucontext,
    user,
    with_stack,
)

pytestmark = pytest.mark.timeout(20)
MASK64 = (1 << 64) - 1
GREGS = ("r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rdi", "rsi", "rbp", "rbx",
         "rdx", "rax", "rcx")


def killed_by(proc):
    """The signal a dead process's wait status names (core bit or not)."""
    assert proc.exit_code is not None and proc.exit_code & 0x7F
    return proc.exit_code & 0x7F


def _fill_regs(t, rip=0x400123):
    regs = t.ctx.regs
    for i, name in enumerate(GREGS):
        setattr(regs, name, 0x1111 * (i + 1))
    regs.rip = rip
    regs.rflags = 0x202 | 0x400 | 0x100  # IF, DF, TF: DF and TF are cleared for the handler


# --- the frame ------------------------------------------------------------------
def test_frame_layout_registers_mask_and_siginfo():
    _k, t = make_kernel()
    sp = with_stack(t) - 3  # an odd interrupted rsp: the frame still aligns
    t.ctx.regs.rsp = sp
    assert sigaction(t, F.SIGUSR1, mask=bit(F.SIGUSR2) | bit(F.SIGKILL)) == 0
    t.sigmask = bit(F.SIGWINCH)
    assert call(t, "tgkill", t.pid, t.tid, F.SIGUSR1) == 0
    _fill_regs(t)  # as the guest left them after the call
    before = {n: getattr(t.ctx.regs, n) for n in GREGS}
    deliver(t)

    regs = t.ctx.regs
    plan = rt_sigframe(sp, 512)
    assert regs.rsp == plan.rsp and (regs.rsp + 8) % 16 == 0
    assert (regs.rip, regs.rdi, regs.rsi, regs.rdx, regs.rax) == (
        HANDLER, F.SIGUSR1, plan.siginfo, plan.ucontext, 0)
    assert regs.rflags & (0x400 | 0x100) == 0 and regs.rflags & 0x200
    assert u64(t, regs.rsp) == RESTORER  # pretcode

    uc = ucontext(t)
    assert uc.uc_flags == F.UC_SIGCONTEXT_SS | F.UC_STRICT_RESTORE_SS  # no xsave here
    assert uc.uc_link == 0
    for name, value in before.items():
        assert getattr(uc, name) == value, name
    assert (uc.rsp, uc.rip, uc.eflags) == (sp, 0x400123, 0x202 | 0x400 | 0x100)
    assert (uc.cs, uc.gs, uc.fs, uc.ss) == (USER_CS, 0, 0, USER_DS)
    assert (uc.err, uc.trapno, uc.cr2) == (0, 0, 0)
    assert uc.uc_sigmask == uc.oldmask == bit(F.SIGWINCH)
    assert uc.fpstate == plan.fpstate and plan.fpstate % 64 == 0
    info = SIGINFO_KILL.read(t.mm.read(regs.rsp + RT_SIGFRAME_INFO, 128))
    assert (info.si_signo, info.si_code, info.si_pid, info.si_uid) == (
        F.SIGUSR1, F.SI_TKILL, t.pid, 0)
    # The handler runs with sa_mask and the signal itself blocked (never SIGKILL).
    assert t.sigmask == bit(F.SIGWINCH) | bit(F.SIGUSR2) | bit(F.SIGUSR1)
    assert not pending(t, F.SIGUSR1)


def test_frame_without_sa_siginfo_leaves_the_info_area_alone():
    _k, t = make_kernel()
    sp = with_stack(t)
    plan = rt_sigframe(sp, 512)
    t.mm.write(plan.siginfo, b"\xaa" * 128)
    sigaction(t, F.SIGUSR1, flags=F.SA_RESTORER)
    signals.send_task(t, F.SIGUSR1)
    deliver(t)
    assert t.ctx.regs.rsi == plan.siginfo
    assert t.mm.read(plan.siginfo, 128) == b"\xaa" * 128


def test_xsave_frame_is_stamped_and_fpu_reset_for_the_handler():
    k, t = make_kernel()

    class Caps:
        xcr0 = 0b111

    k.platform.capabilities = Caps()  # type: ignore[attr-defined]
    image = bytearray(832)  # legacy + header + AVX upper halves
    struct.pack_into("<HH", image, 0, 0x027F, 0x1234)  # fcw, fsw
    struct.pack_into("<II", image, 24, 0x1F80 | 0x6000, 0xFFFF)  # mxcsr (RZ), mask
    image[160:176] = b"X" * 16  # xmm0
    struct.pack_into("<Q", image, 512, 0b111)  # XSTATE_BV
    image[576:592] = b"Y" * 16  # ymm0 upper
    t.ctx.set_fpu(image)
    sp = with_stack(t)
    sigaction(t, F.SIGUSR2)
    t.ctx.regs.rax = 0x5EED  # the interrupted rax, which rt_sigreturn returns
    signals.send_task(t, F.SIGUSR2)
    deliver(t)

    uc = ucontext(t)
    assert uc.uc_flags == F.UC_FP_XSTATE | F.UC_SIGCONTEXT_SS | F.UC_STRICT_RESTORE_SS
    assert uc.fpstate == rt_sigframe(sp, 836).fpstate
    raw = t.mm.read(uc.fpstate, 836)
    fp = FPSTATE.read(raw)
    assert (fp.magic1, fp.extended_size, fp.xfeatures, fp.xstate_size) == (
        F.FP_XSTATE_MAGIC1, 836, 0b111, 832)
    assert struct.unpack_from("<I", raw, 832)[0] == F.FP_XSTATE_MAGIC2
    assert (fp.cwd, fp.swd, fp.mxcsr) == (0x027F, 0x1234, 0x1F80 | 0x6000)
    assert raw[160:176] == b"X" * 16 and raw[576:592] == b"Y" * 16
    # The handler starts from a clean FPU: fninit's control word, default MXCSR.
    now = t.ctx.get_fpu()
    assert struct.unpack_from("<HHI", now, 0)[0] == 0x037F
    assert struct.unpack_from("<I", now, 24)[0] == 0x1F80
    assert now[160:176] == bytes(16) and struct.unpack_from("<Q", now, 512)[0] == 0

    # rt_sigreturn takes the whole xstate back, with the handler's edits.
    t.mm.write(uc.fpstate + 160, b"Z" * 16)
    assert sigreturn(t) == 0x5EED and not pending(t, F.SIGSEGV)
    back = t.ctx.get_fpu()
    assert back[160:176] == b"Z" * 16 and back[576:592] == b"Y" * 16
    assert struct.unpack_from("<Q", back, 512)[0] == 0b111
    assert struct.unpack_from("<I", back, 24)[0] == 0x1F80 | 0x6000


def test_fault_signal_carries_trapno_err_and_cr2():
    _k, t = make_kernel()
    with_stack(t)
    sigaction(t, F.SIGSEGV)
    signals.force_fault(t, F.SIGSEGV, F.SEGV_MAPERR, 0x10, trapno=14, err=6)
    deliver(t)
    uc = ucontext(t)
    assert (uc.trapno, uc.err, uc.cr2) == (14, 6, 0x10)
    info = SIGINFO_FAULT.read(t.mm.read(t.ctx.regs.rsi, 128))
    assert (info.si_signo, info.si_code, info.si_addr) == (F.SIGSEGV, F.SEGV_MAPERR, 0x10)
    assert t.fault_info == (0, 0, 0)  # consumed: a later kill() frame shows zeros


def test_sigreturn_restores_a_modified_context():
    _k, t = make_kernel()
    with_stack(t)
    sigaction(t, F.SIGUSR1)
    t.sigmask = bit(F.SIGHUP)
    _fill_regs(t)
    signals.send_task(t, F.SIGUSR1)
    deliver(t)
    frame_uc = t.ctx.regs.rsp + RT_SIGFRAME_UC
    uc = ucontext(t)._asdict()
    uc.update(rip=0x400999, rax=0xDEAD, rbx=0xBEEF,
              eflags=0x1 | 0x40 | 0x3000 | 0x200000,  # CF ZF; IOPL and ID are not the guest's
              uc_sigmask=bit(F.SIGINT) | bit(F.SIGKILL) | bit(F.SIGSTOP))
    t.mm.write(frame_uc, UCONTEXT.pack(*uc.values()))
    t.ctx.regs.rflags = 0x202
    assert sigreturn(t) == 0xDEAD  # rax comes from the frame
    regs = t.ctx.regs
    assert (regs.rip, regs.rax, regs.rbx, regs.r15) == (0x400999, 0xDEAD, 0xBEEF, 0x1111 * 8)
    assert regs.rflags == 0x202 | 0x1 | 0x40
    assert t.sigmask == bit(F.SIGINT)  # SIGKILL/SIGSTOP can never be blocked


def test_sigreturn_with_a_bad_frame_is_sigsegv():
    k, t = make_kernel()
    t.ctx.regs.rsp = BAD
    assert call(t, "rt_sigreturn") == 0
    assert pending(t, F.SIGSEGV)
    deliver(t)
    assert killed_by(k.init) == F.SIGSEGV


def test_sigreturn_rejects_reserved_mxcsr_bits():
    _k, t = make_kernel()
    with_stack(t)
    sigaction(t, F.SIGUSR1)
    signals.send_task(t, F.SIGUSR1)
    deliver(t)
    uc = ucontext(t)
    t.mm.write(uc.fpstate + 24, struct.pack("<I", 0xFFFF0000))
    sigreturn(t)
    assert pending(t, F.SIGSEGV)


def test_unwritable_stack_forces_sigsegv():
    k, t = make_kernel()
    t.ctx.regs.rsp = BAD
    sigaction(t, F.SIGUSR1)
    signals.send_task(t, F.SIGUSR1)
    deliver(t)  # frame fails: SIGSEGV queued (no handler) and taken at once
    assert killed_by(k.init) == F.SIGSEGV


def test_sigsegv_handler_on_a_bad_stack_is_fatal():
    k, t = make_kernel()
    t.ctx.regs.rsp = BAD
    sigaction(t, F.SIGSEGV)
    signals.force_fault(t, F.SIGSEGV, F.SEGV_MAPERR, 0)
    deliver(t)
    assert killed_by(k.init) == F.SIGSEGV


def test_no_sa_restorer_is_sigsegv():
    # As on a real x86-64 kernel (checked on the host): no trampoline, SIGSEGV.
    k, t = make_kernel()
    with_stack(t)
    sigaction(t, F.SIGUSR1, flags=F.SA_SIGINFO)
    signals.send_task(t, F.SIGUSR1)
    deliver(t)
    assert killed_by(k.init) == F.SIGSEGV


def test_resethand_and_nodefer():
    _k, t = make_kernel()
    with_stack(t)
    sigaction(t, F.SIGUSR1, flags=F.SA_RESTORER | F.SA_RESETHAND)
    signals.send_task(t, F.SIGUSR1)
    deliver(t)
    act = t.proc.sighand.actions[F.SIGUSR1]
    assert act.handler == 0 and act.flags == F.SA_RESTORER | F.SA_RESETHAND
    assert t.sigmask & bit(F.SIGUSR1)  # RESETHAND does not imply NODEFER (host-checked)

    _k, t = make_kernel()
    with_stack(t)
    sigaction(t, F.SIGUSR1, flags=F.SA_RESTORER | F.SA_NODEFER, mask=bit(F.SIGUSR2))
    signals.send_task(t, F.SIGUSR1)
    deliver(t)
    assert t.sigmask == bit(F.SIGUSR2)
    assert t.proc.sighand.actions[F.SIGUSR1].handler == HANDLER


# --- interrupted calls ------------------------------------------------------------
def _block_in_futex(t):
    """A restartable blocking call (FUTEX_WAIT with no timeout)."""
    word = put(t, struct.pack("<I", 0), 0x600)
    call(t, "futex", word, F.FUTEX_WAIT, 0, 0, 0, 0)
    assert t.state is State.BLOCKED
    return word


def test_sa_restart_restarts_and_otherwise_eintr():
    for flags, restarted in ((F.SA_RESTORER | F.SA_RESTART, True), (F.SA_RESTORER, False)):
        _k, t = make_kernel()
        with_stack(t)
        sigaction(t, F.SIGUSR1, flags=flags)
        t.ctx.regs.rip = 0x400502  # just after the syscall instruction
        _block_in_futex(t)
        signals.send_task(t, F.SIGUSR1)
        assert t.state is State.RUNNABLE and t.interrupted
        assert resume(t) == -E.EINTR
        deliver(t)
        uc = ucontext(t)
        if restarted:
            assert (uc.rip, uc.rax) == (0x400500, NR["futex"])
        else:
            assert (uc.rip, signed(uc.rax)) == (0x400502, -E.EINTR)


def test_non_restartable_call_is_eintr_even_with_sa_restart():
    _k, t = make_kernel()
    with_stack(t)
    sigaction(t, F.SIGUSR1, flags=F.SA_RESTORER | F.SA_RESTART)
    t.ctx.regs.rip = 0x400502
    call(t, "pause")
    assert t.state is State.BLOCKED
    signals.send_task(t, F.SIGUSR1)
    assert resume(t) == -E.EINTR
    deliver(t)
    uc = ucontext(t)
    assert (uc.rip, signed(uc.rax)) == (0x400502, -E.EINTR)


def test_stop_and_continue_restarts_the_call_without_a_handler():
    _k, t = make_kernel()
    t.ctx.regs.rip = 0x400502
    _block_in_futex(t)
    signals.send_process(t.proc, F.SIGSTOP)
    assert resume(t) == -E.EINTR
    deliver(t)
    assert t.state is State.STOPPED and t.proc.state is State.STOPPED
    signals.send_process(t.proc, F.SIGCONT)
    assert t.state is State.RUNNABLE
    deliver(t)
    assert (t.ctx.regs.rip, t.ctx.regs.rax) == (0x400500, NR["futex"])
    assert t.restart_nr is None


def test_sigcont_discards_pending_stop_and_vice_versa():
    _k, t = make_kernel()
    t.sigmask = bit(F.SIGTSTP) | bit(F.SIGCONT)
    signals.send_process(t.proc, F.SIGTSTP)
    assert pending(t, F.SIGTSTP)
    signals.send_process(t.proc, F.SIGCONT)
    assert not pending(t, F.SIGTSTP) and pending(t, F.SIGCONT)
    signals.send_process(t.proc, F.SIGTSTP)
    assert not pending(t, F.SIGCONT)


# --- rt_sigsuspend, pause ---------------------------------------------------------------
def test_sigsuspend_saves_the_original_mask_in_the_frame():
    _k, t = make_kernel()
    with_stack(t)
    sigaction(t, F.SIGUSR1, mask=bit(F.SIGHUP))
    t.sigmask = bit(F.SIGUSR1) | bit(F.SIGUSR2)
    temp = put(t, struct.pack("<Q", bit(F.SIGUSR2) | bit(F.SIGKILL)), 0x100)
    t.ctx.regs.rip = 0x400502
    call(t, "rt_sigsuspend", temp, 8)
    assert t.state is State.BLOCKED and t.sigmask == bit(F.SIGUSR2)
    signals.send_task(t, F.SIGUSR2)  # blocked in the temporary mask: no wake
    assert t.state is State.BLOCKED
    signals.send_task(t, F.SIGUSR1)
    assert resume(t) == -E.EINTR
    deliver(t)
    uc = ucontext(t)
    assert uc.uc_sigmask == bit(F.SIGUSR1) | bit(F.SIGUSR2)
    assert signed(uc.rax) == -E.EINTR and uc.rip == 0x400502
    # During the handler: the temporary mask + sa_mask + the signal.
    assert t.sigmask == bit(F.SIGUSR2) | bit(F.SIGHUP) | bit(F.SIGUSR1)
    assert t.saved_sigmask is None
    sigreturn(t)
    assert t.sigmask == bit(F.SIGUSR1) | bit(F.SIGUSR2)


def test_sigsuspend_with_a_signal_already_pending_returns_at_once():
    _k, t = make_kernel()
    with_stack(t)
    sigaction(t, F.SIGUSR1)
    t.sigmask = bit(F.SIGUSR1)
    signals.send_task(t, F.SIGUSR1)
    empty = put(t, bytes(8), 0x100)
    assert call(t, "rt_sigsuspend", empty, 8) == -E.EINTR
    deliver(t)
    assert t.ctx.regs.rip == HANDLER
    assert ucontext(t).uc_sigmask == bit(F.SIGUSR1)


def test_sigsuspend_errors():
    _k, t = make_kernel()
    assert call(t, "rt_sigsuspend", put(t, bytes(8)), 4) == -E.EINVAL
    assert call(t, "rt_sigsuspend", BAD, 8) == -E.EFAULT


# --- rt_sigaction, rt_sigprocmask, rt_sigpending ------------------------------------------
def test_sigaction_errors_and_old_action():
    _k, t = make_kernel()
    assert sigaction(t, F.SIGUSR1, flags=F.SA_RESTORER | 0x400 | 0x20000000) == 0
    old = SCRATCH + 0x900
    assert call(t, "rt_sigaction", F.SIGUSR1, 0, old, 8) == 0
    got = K_SIGACTION.read(t.mm.read(old, K_SIGACTION.size))
    assert (got.sa_handler, got.sa_flags, got.sa_restorer) == (HANDLER, F.SA_RESTORER, RESTORER)
    assert sigaction(t, F.SIGKILL) == -E.EINVAL
    assert sigaction(t, F.SIGSTOP) == -E.EINVAL
    assert call(t, "rt_sigaction", F.SIGKILL, 0, old, 8) == 0  # reading it is fine
    for bad in (0, 65, -1):
        assert call(t, "rt_sigaction", bad, 0, old, 8) == -E.EINVAL
    assert call(t, "rt_sigaction", F.SIGUSR1, 0, old, 16) == -E.EINVAL
    assert call(t, "rt_sigaction", F.SIGUSR1, BAD, 0, 8) == -E.EFAULT
    assert call(t, "rt_sigaction", F.SIGUSR1, 0, BAD, 8) == -E.EFAULT
    # sa_mask never holds SIGKILL/SIGSTOP.
    sigaction(t, F.SIGUSR2, mask=bit(F.SIGKILL) | bit(F.SIGSTOP) | bit(F.SIGINT))
    assert t.proc.sighand.actions[F.SIGUSR2].mask == bit(F.SIGINT)


def test_sig_ign_discards_pending_signal():
    _k, t = make_kernel()
    t.sigmask = bit(F.SIGUSR1)
    signals.send_process(t.proc, F.SIGUSR1)
    signals.send_task(t, F.SIGUSR1)
    assert pending(t, F.SIGUSR1)
    assert sigaction(t, F.SIGUSR1, handler=signals.SIG_IGN) == 0
    assert not pending(t, F.SIGUSR1)
    # An ignored but blocked signal still queues (it may be unignored first).
    signals.send_task(t, F.SIGUSR1)
    assert pending(t, F.SIGUSR1)


def test_sigprocmask():
    _k, t = make_kernel()
    new, old = SCRATCH, SCRATCH + 8
    t.mm.write(new, struct.pack("<Q", bit(F.SIGUSR1) | bit(F.SIGKILL) | bit(F.SIGSTOP)))
    assert call(t, "rt_sigprocmask", F.SIG_BLOCK, new, old, 8) == 0
    assert t.sigmask == bit(F.SIGUSR1) and u64(t, old) == 0
    t.mm.write(new, struct.pack("<Q", bit(F.SIGUSR2)))
    assert call(t, "rt_sigprocmask", F.SIG_BLOCK, new, old, 8) == 0
    assert u64(t, old) == bit(F.SIGUSR1)
    t.mm.write(new, struct.pack("<Q", bit(F.SIGUSR1)))
    assert call(t, "rt_sigprocmask", F.SIG_UNBLOCK, new, 0, 8) == 0
    assert t.sigmask == bit(F.SIGUSR2)
    assert call(t, "rt_sigprocmask", F.SIG_SETMASK, new, 0, 8) == 0
    assert t.sigmask == bit(F.SIGUSR1)
    assert call(t, "rt_sigprocmask", 7, new, 0, 8) == -E.EINVAL
    assert call(t, "rt_sigprocmask", 7, 0, old, 8) == 0  # how is unused without a set
    assert call(t, "rt_sigprocmask", F.SIG_BLOCK, new, 0, 4) == -E.EINVAL
    assert call(t, "rt_sigprocmask", F.SIG_BLOCK, BAD, 0, 8) == -E.EFAULT
    assert call(t, "rt_sigprocmask", F.SIG_BLOCK, 0, BAD, 8) == -E.EFAULT


def test_blocking_hands_a_shared_signal_to_another_thread():
    from .sighelp import thread

    k, t = make_kernel()
    t2 = thread(k, t)
    _block_in_futex(t2)
    signals.send_process(t.proc, F.SIGUSR1)  # t takes it (it does not block it)...
    assert t2.state is State.BLOCKED
    t.mm.write(SCRATCH, struct.pack("<Q", bit(F.SIGUSR1)))
    call(t, "rt_sigprocmask", F.SIG_BLOCK, SCRATCH, 0, 8)  # ...until it blocks it
    assert t2.state is State.RUNNABLE and t2.interrupted


def test_sigpending():
    _k, t = make_kernel()
    t.sigmask = bit(F.SIGUSR1) | bit(F.SIGUSR2)
    signals.send_task(t, F.SIGUSR1)
    signals.send_process(t.proc, F.SIGUSR2)
    assert call(t, "rt_sigpending", SCRATCH, 8) == 0
    assert u64(t, SCRATCH) == bit(F.SIGUSR1) | bit(F.SIGUSR2)
    assert call(t, "rt_sigpending", SCRATCH, 9) == -E.EINVAL
    t.mm.write(SCRATCH, b"\xff" * 8)
    assert call(t, "rt_sigpending", SCRATCH, 1) == 0  # a short set is copied short
    assert t.mm.read(SCRATCH, 8) == bytes([bit(F.SIGUSR1) & 0xFF]) + b"\xff" * 7


# --- rt_sigtimedwait ------------------------------------------------------------------
def test_sigtimedwait_takes_a_pending_signal_with_its_info():
    _k, t = make_kernel()
    t.sigmask = bit(F.SIGUSR1)
    signals.send_task(t, F.SIGUSR1)
    want = put(t, struct.pack("<Q", bit(F.SIGUSR1)), 0x100)
    assert call(t, "rt_sigtimedwait", want, SCRATCH + 0x200, 0, 8) == F.SIGUSR1
    assert SIGINFO_KILL.read(t.mm.read(SCRATCH + 0x200, 128)).si_signo == F.SIGUSR1
    assert not pending(t, F.SIGUSR1)
    zero = put(t, bytes(16), 0x300)
    assert call(t, "rt_sigtimedwait", want, 0, zero, 8) == -E.EAGAIN
    bad_ts = put(t, struct.pack("<qq", 0, 2_000_000_000), 0x340)
    assert call(t, "rt_sigtimedwait", want, 0, bad_ts, 8) == -E.EINVAL
    assert call(t, "rt_sigtimedwait", want, 0, 0, 4) == -E.EINVAL


def test_sigtimedwait_sleeps_until_the_signal_arrives():
    k, t = make_kernel()
    t.sigmask = bit(F.SIGUSR2)
    want = put(t, struct.pack("<Q", bit(F.SIGUSR2)), 0x100)
    call(t, "rt_sigtimedwait", want, 0, 0, 8)
    assert t.state is State.BLOCKED
    other = spawn(k)
    assert call(other, "kill", t.pid, F.SIGUSR2) == 0
    assert resume(t) == F.SIGUSR2


def test_sigtimedwait_times_out():
    k, t = make_kernel()
    t.sigmask = bit(F.SIGUSR2)
    want = put(t, struct.pack("<Q", bit(F.SIGUSR2)), 0x100)
    ts = put(t, struct.pack("<qq", 0, 20_000_000), 0x140)
    start = time.monotonic()
    call(t, "rt_sigtimedwait", want, 0, ts, 8)
    assert t.state is State.BLOCKED
    from .sighelp import finish

    assert finish(k, t) == -E.EAGAIN
    assert time.monotonic() - start >= 0.019


# --- sigaltstack ---------------------------------------------------------------
def _altstack(t, sp, size, flags=0):
    flags = flags - (1 << 32) if flags & 0x80000000 else flags
    return call(t, "sigaltstack", put(t, STACK_T.pack(sp, flags, size), 0x700), 0)


def test_sigaltstack_rules():
    _k, t = make_kernel()
    sp = with_stack(t)
    old = SCRATCH + 0x780
    assert call(t, "sigaltstack", 0, old) == 0
    assert STACK_T.read(t.mm.read(old, 24)) == (0, F.SS_DISABLE, 0)
    assert _altstack(t, STACK, 2047) == -E.ENOMEM
    assert _altstack(t, STACK, 4096, 4) == -E.EINVAL
    assert _altstack(t, STACK, 8192) == 0
    assert call(t, "sigaltstack", 0, old) == 0
    assert STACK_T.read(t.mm.read(old, 24)) == (STACK, 0, 8192)
    t.ctx.regs.rsp = STACK + 100  # running on it now
    assert call(t, "sigaltstack", 0, old) == 0
    assert STACK_T.read(t.mm.read(old, 24)).ss_flags == F.SS_ONSTACK
    assert _altstack(t, STACK, 0, F.SS_DISABLE) == -E.EPERM
    t.ctx.regs.rsp = sp
    assert _altstack(t, 0, 0, F.SS_DISABLE) == 0
    assert t.altstack == (0, F.SS_DISABLE, 0)
    assert call(t, "sigaltstack", BAD, 0) == -E.EFAULT
    assert call(t, "sigaltstack", 0, BAD) == -E.EFAULT


def test_sa_onstack_delivers_on_the_alternate_stack():
    _k, t = make_kernel()
    sp = with_stack(t)
    alt, size = STACK, 0x4000
    assert _altstack(t, alt, size) == 0
    sigaction(t, F.SIGUSR1, flags=F.SA_RESTORER | F.SA_ONSTACK | F.SA_SIGINFO)
    signals.send_task(t, F.SIGUSR1)
    deliver(t)
    plan = rt_sigframe(sp, 512, alt + size)
    assert t.ctx.regs.rsp == plan.rsp and alt <= plan.rsp < alt + size
    uc = ucontext(t)
    assert (uc.ss_sp, uc.ss_flags, uc.ss_size, uc.rsp) == (alt, 0, size, sp)
    # A nested signal on the alternate stack stays on it, below the first frame.
    sigaction(t, F.SIGUSR2, flags=F.SA_RESTORER | F.SA_ONSTACK)
    first = t.ctx.regs.rsp
    signals.send_task(t, F.SIGUSR2)
    deliver(t)
    assert alt <= t.ctx.regs.rsp < first - 440


def test_altstack_overflow_is_sigsegv():
    k, t = make_kernel()
    with_stack(t)
    assert _altstack(t, STACK, 2048) == 0  # too small for a frame: 512 fp + 440
    t.ctx.regs.rsp = STACK + 800  # already on it, near the bottom
    sigaction(t, F.SIGUSR1, flags=F.SA_RESTORER | F.SA_ONSTACK)
    signals.send_task(t, F.SIGUSR1)
    deliver(t)
    assert killed_by(k.init) == F.SIGSEGV


def test_ss_autodisarm_clears_the_registration_until_sigreturn():
    _k, t = make_kernel()
    with_stack(t)
    assert _altstack(t, STACK, 0x4000, F.SS_AUTODISARM) == 0
    sigaction(t, F.SIGUSR1, flags=F.SA_RESTORER | F.SA_ONSTACK)
    signals.send_task(t, F.SIGUSR1)
    deliver(t)
    uc = ucontext(t)
    assert (uc.ss_sp, uc.ss_flags & 0xFFFFFFFF, uc.ss_size) == (STACK, F.SS_AUTODISARM, 0x4000)
    assert t.altstack == (0, F.SS_DISABLE, 0)
    sigreturn(t)
    assert t.altstack == (STACK, F.SS_AUTODISARM, 0x4000)


# --- kill, tgkill, tkill, sigqueue -------------------------------------------------------
def test_kill_targets_errors_and_permissions():
    k, t = make_kernel()
    nobody = spawn(k, t, user(1000))
    other = spawn(k, t, user(2000))
    assert call(t, "kill", 99999, 0) == -E.ESRCH
    assert call(t, "kill", 99999, 100) == -E.ESRCH  # lookup first (host-checked)
    assert call(t, "kill", t.pid, 100) == -E.EINVAL
    assert call(t, "kill", t.pid, -1) == -E.EINVAL
    assert call(t, "kill", nobody.pid, 0) == 0  # root may signal anyone
    assert call(nobody, "kill", other.pid, 0) == -E.EPERM
    assert call(nobody, "kill", other.pid, F.SIGUSR1) == -E.EPERM
    assert not pending(other, F.SIGUSR1)
    assert call(nobody, "kill", t.pid, 0) == -E.EPERM
    assert call(nobody, "kill", nobody.pid, F.SIGUSR1) == 0
    assert pending(nobody, F.SIGUSR1)
    info = nobody.proc.shared_pending.infos[0][1]
    assert SIGINFO_KILL.read(info)[:5] == (F.SIGUSR1, 0, F.SI_USER, nobody.pid, 1000)
    # The same real uid may signal.
    twin = spawn(k, t, user(1000))
    assert call(nobody, "kill", twin.pid, F.SIGUSR2) == 0 and pending(twin, F.SIGUSR2)


def test_kill_groups_and_everyone():
    k, t = make_kernel()
    a, b = spawn(k, t), spawn(k, t, user(1000))
    b.proc.pgid = a.proc.pgid = 77
    assert call(t, "kill", -77, F.SIGUSR1) == 0
    assert pending(a, F.SIGUSR1) and pending(b, F.SIGUSR1)
    assert call(t, "kill", -78, F.SIGUSR1) == -E.ESRCH
    assert call(b, "kill", -77, F.SIGUSR2) == 0  # one of the group may be signalled
    assert pending(b, F.SIGUSR2) and not pending(a, F.SIGUSR2)
    assert call(b, "kill", -1, F.SIGHUP) == 0  # EPERM on some is not an error for -1
    assert not pending(t, F.SIGHUP) and not pending(a, F.SIGHUP)
    assert not pending(b, F.SIGHUP)  # never the caller itself
    assert call(t, "kill", -1, F.SIGTERM) == 0
    assert pending(a, F.SIGTERM) and pending(b, F.SIGTERM) and not pending(t, F.SIGTERM)
    assert call(t, "kill", -(1 << 31), 0) == -E.ESRCH
    assert call(a, "kill", 0, F.SIGWINCH) == 0  # SIGWINCH is ignored by default: dropped


def test_kill_zero_is_own_group_and_init_is_spared_by_minus_one():
    k, t = make_kernel()
    sole = spawn(k)
    sole.proc.pgid = 555
    assert call(sole, "kill", -1, F.SIGUSR1) == -E.ESRCH  # init (pid 1) is never hit
    assert not pending(t, F.SIGUSR1)
    assert call(sole, "kill", 0, F.SIGUSR2) == 0
    assert pending(sole, F.SIGUSR2)


def test_tgkill_and_tkill():
    from .sighelp import thread

    k, t = make_kernel()
    t2 = thread(k, t)
    assert call(t, "tgkill", t.pid, t2.tid, F.SIGUSR1) == 0
    assert t2.pending.mask & bit(F.SIGUSR1) and not t.pending.mask & bit(F.SIGUSR1)
    assert call(t, "tgkill", t.pid + 1000, t2.tid, F.SIGUSR1) == -E.ESRCH
    assert call(t, "tgkill", t.pid, 0, 0) == -E.EINVAL
    assert call(t, "tgkill", 0, t2.tid, 0) == -E.EINVAL
    assert call(t, "tgkill", t.pid, 99999, 0) == -E.ESRCH
    assert call(t, "tgkill", t.pid, t2.tid, 100) == -E.EINVAL
    assert call(t, "tkill", t2.tid, F.SIGUSR2) == 0 and t2.pending.mask & bit(F.SIGUSR2)
    assert call(t, "tkill", 0, 0) == -E.EINVAL
    nobody = spawn(k, t, user(1000))
    assert call(nobody, "tkill", t2.tid, F.SIGUSR1) == -E.EPERM
    # kill() with a thread id reaches its whole group.
    assert call(t, "kill", t2.tid, F.SIGHUP) == 0
    assert t.proc.shared_pending.mask & bit(F.SIGHUP)


def test_kill_sigkill_ends_the_target():
    k, t = make_kernel()
    victim = spawn(k, t)
    assert call(t, "kill", victim.pid, F.SIGKILL) == 0
    assert victim.proc.exit_code == F.SIGKILL and victim.state is State.DEAD
    assert call(t, "kill", victim.pid, 0) == 0  # a zombie still answers


def test_sigqueueinfo_rules():
    k, t = make_kernel()
    other = spawn(k, t)
    buf = bytearray(128)
    struct.pack_into("<iii4xiIQ", buf, 0, 0, 0, F.SI_QUEUE, 4242, 7, 0xFEEDF00D)
    info = put(t, bytes(buf), 0x400)
    assert call(t, "rt_sigqueueinfo", other.pid, F.SIGUSR1, info) == 0
    got = SIGINFO_RT.read(other.proc.shared_pending.infos[0][1])
    assert (got.si_signo, got.si_code, got.si_pid, got.si_value) == (
        F.SIGUSR1, F.SI_QUEUE, 4242, 0xFEEDF00D)
    for code in (F.SI_USER, F.SI_KERNEL, F.SI_TKILL):
        struct.pack_into("<i", buf, 8, code)
        put(t, bytes(buf), 0x400)
        assert call(t, "rt_sigqueueinfo", other.pid, F.SIGUSR1, info) == -E.EPERM
        assert call(t, "rt_tgsigqueueinfo", other.pid, other.tid, F.SIGUSR1, info) == -E.EPERM
    assert call(t, "rt_sigqueueinfo", t.pid, F.SIGUSR2, info) == 0  # to itself: anything
    assert call(t, "rt_sigqueueinfo", 99999, F.SIGUSR2, info) == -E.EPERM  # checked first
    struct.pack_into("<i", buf, 8, F.SI_QUEUE)
    put(t, bytes(buf), 0x400)
    assert call(t, "rt_sigqueueinfo", 99999, F.SIGUSR2, info) == -E.ESRCH
    assert call(t, "rt_sigqueueinfo", other.pid, F.SIGUSR2, BAD) == -E.EFAULT
    assert call(t, "rt_tgsigqueueinfo", 0, other.tid, F.SIGUSR1, info) == -E.EINVAL
    # Real-time signals queue every instance; standard ones do not.
    other.sigmask = signals.ALL
    for _ in range(3):
        call(t, "rt_sigqueueinfo", other.pid, 40, info)
        call(t, "rt_sigqueueinfo", other.pid, F.SIGHUP, info)
    q = other.proc.shared_pending.infos
    assert sum(s == 40 for s, _ in q) == 3 and sum(s == F.SIGHUP for s, _ in q) == 1


def test_process_signal_picks_a_thread_that_does_not_block_it():
    from .sighelp import thread

    k, t = make_kernel()
    t2 = thread(k, t)
    t.sigmask = bit(F.SIGUSR1)
    _block_in_futex(t)
    _block_in_futex(t2)
    signals.send_process(t.proc, F.SIGUSR1)
    assert t.state is State.BLOCKED
    assert t2.state is State.RUNNABLE and t2.interrupted


def test_default_actions_terminate_ignore_and_core():
    k, t = make_kernel()
    a, b = spawn(k, t), spawn(k, t)
    signals.send_process(a.proc, F.SIGCHLD)  # ignored by default: never even queued
    assert not pending(a, F.SIGCHLD)
    signals.send_process(a.proc, F.SIGTERM)
    deliver(a)
    assert a.proc.exit_code == F.SIGTERM
    signals.send_process(b.proc, F.SIGQUIT)
    deliver(b)
    assert killed_by(b.proc) == F.SIGQUIT  # (the core bit depends on RLIMIT_CORE)


@pytest.mark.parametrize("field,value", [("cs", 0x23), ("cs", 0), ("ss", 0), ("rip", 1 << 47)])
def test_sigreturn_to_what_user_mode_cannot_run_is_sigsegv(field, value):
    _, t = make_kernel()
    with_stack(t)
    sigaction(t, F.SIGUSR1)
    signals.send_task(t, F.SIGUSR1)
    deliver(t)
    frame_uc = t.ctx.regs.rsp + RT_SIGFRAME_UC
    uc = ucontext(t)._asdict()
    uc[field] = value
    t.mm.write(frame_uc, UCONTEXT.pack(*uc.values()))
    sigreturn(t)
    assert pending(t, F.SIGSEGV)


def test_a_timed_out_ppoll_puts_the_mask_back():
    k, t = make_kernel()
    t.sigmask = bit(F.SIGHUP)
    temp = put(t, struct.pack("<Q", bit(F.SIGUSR2)), 0x100)
    ts = put(t, struct.pack("<qq", 0, 10_000_000), 0x200)
    call(t, "ppoll", 0, 0, ts, temp, 8)
    assert t.state is State.BLOCKED and t.sigmask == bit(F.SIGUSR2)
    from .sighelp import finish

    assert finish(k, t) == 0
    assert t.sigmask == bit(F.SIGHUP) and t.saved_sigmask is None


def test_a_thread_woken_in_a_stopped_group_waits_for_sigcont():
    from .sighelp import thread

    k, t = make_kernel()
    t2 = thread(k, t)
    word = _block_in_futex(t2)
    signals.send_process(t.proc, F.SIGSTOP)
    deliver(t)  # t takes the stop
    assert t.proc.state is State.STOPPED and t.state is State.STOPPED
    from cove.kernel import futex

    # t2's wait ends while the group is stopped (a wake from another process)
    assert futex.wake_key(k, futex.key_of(t2, word, False), 1) == 1
    assert t2.state is State.STOPPED
    signals.send_process(t.proc, F.SIGCONT)
    assert t2.state is State.RUNNABLE
    assert resume(t2) == 0


def test_sigtimedwait_takes_an_unblocked_waited_signal_and_is_eintr_for_others():
    _k, t = make_kernel()
    with_stack(t)
    sigaction(t, F.SIGUSR1)
    sigaction(t, F.SIGUSR2)
    want = put(t, struct.pack("<Q", bit(F.SIGUSR1)), 0x100)
    t.sigmask = bit(F.SIGHUP)
    call(t, "rt_sigtimedwait", want, 0, 0, 8)
    assert t.state is State.BLOCKED
    signals.send_task(t, F.SIGUSR1)  # waited for, though not blocked: returned
    assert resume(t) == F.SIGUSR1
    assert t.sigmask == bit(F.SIGHUP) and t.saved_sigmask is None
    call(t, "rt_sigtimedwait", want, 0, 0, 8)
    signals.send_task(t, F.SIGUSR2)  # anything else unblocked interrupts it
    assert resume(t) == -E.EINTR
    assert t.sigmask == bit(F.SIGHUP)
    deliver(t)
    assert t.ctx.regs.rip == HANDLER and ucontext(t).uc_sigmask == bit(F.SIGHUP)
    assert signed(ucontext(t).rax) == -E.EINTR  # not restarted
