"""Moving a guest thread's state between a context and its stub thread:
stopping a thread that waits in a notification, reading and writing
registers and the XSAVE image, and describing a ptrace stop. Everything here
with a leading underscore runs on the tracer thread; the public methods are
the cpu thread's entry points, one trip to the tracer thread each.

Mixed into ``UserlandPlatform``, whose constructor provides the buffers.
"""

from __future__ import annotations

import ctypes
import os
import struct

from cove.platform.base import PlatformError, UserRegs
from cove.platform.userland import _sys as S
from cove.platform.userland import layout as L
from cove.platform.userland.context import (
    H_FS_BASE,
    H_GS_BASE,
    HOST,
    HOST_TO_USER,
    USER,
    PartialRegs,
)
from cove.platform.userland.stub import State

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from cove.platform.userland.context import UserlandContext
    from cove.platform.userland.stub import StubThread
    from cove.platform.userland.tracer import Tracer

MASK64 = (1 << 64) - 1
RFLAGS_USER_MASK, RFLAGS_FIXED = 0x250DD5, 0x202  # as the kvm platform scrubs rflags
_UNKNOWN_IDX = (1, 6, 7, 11, 12, 13, 14, 15, 17)  # context.UNKNOWN_AFTER_NOTIF in USER order
_SIGINFO = struct.Struct("<iii4xQ")  # si_signo, si_errno, si_code, si_addr
SIGFPE, SIGSEGV, SIGTRAP, SEGV_MAPERR = 8, 11, 5, 1
H_RSP, H_RIP = 19, 16


class Description:
    """A ptrace stop, as the cpu needs it: the wait status, the registers
    (user_regs_struct order; empty if the thread is gone), the event message
    of a seccomp stop, si_code/si_addr of a signal stop, MXCSR for SIGFPE,
    and for a not-present page fault the CPU's error code (-1 if unknown)
    and the FPU image the fault handler's delivery displaced."""

    __slots__ = ("addr", "code", "err", "fpu", "msg", "mxcsr", "regs", "status")

    def __init__(self, status: int, regs: tuple[int, ...] = ()) -> None:
        self.status = status
        self.regs = regs
        self.msg = self.code = self.addr = self.mxcsr = 0
        self.err = -1
        self.fpu: bytes | None = None



class ThreadOps:
    """See the module doc."""

    tracer: Tracer
    template: S.user_regs_struct
    xsave_size: int
    fpu_template: bytes

    def _init_buffers(self) -> None:
        self._host = S.user_regs_struct()
        self._host_addr = ctypes.addressof(self._host)
        self._host_mv = memoryview(self._host).cast("B")
        self._buf = ctypes.create_string_buffer(512)  # siginfo, FXSAVE area
        self._buf_addr = ctypes.addressof(self._buf)
        self._msg = ctypes.c_ulong()

    def _init_xsave(self, size: int) -> None:
        self._xbuf = ctypes.create_string_buffer(size)
        self._xiov = S.iovec(ctypes.addressof(self._xbuf), size)
        self._xiov_addr = ctypes.addressof(self._xiov)

    def _stop(self, th: StubThread) -> None:
        """Bring a thread waiting in a notification into a ptrace stop (its
        syscall is abandoned: -ERESTARTSYS, never run)."""
        if th.state is not State.NOTIF:
            return
        if S.raw_ptrace(S.PTRACE_INTERRUPT, th.tid) < 0:
            th.state = State.DEAD
            raise PlatformError(f"PTRACE_INTERRUPT {th.tid}: {os.strerror(S.errno())}")
        st = th.proc.tracer.wait(th.tid)
        if os.WIFSTOPPED(st):
            th.state = State.STOPPED
        else:
            th.state = State.DEAD
            raise PlatformError(f"stub thread {th.tid} died while stopped")

    def _get_regs(self, th: StubThread) -> tuple[int, ...]:
        S.ptrace(S.PTRACE_GETREGS, th.tid, 0, self._host_addr)
        return HOST.unpack_from(self._host_mv)

    def fetch_regs(self, ctx: UserlandContext) -> None:
        """Fill the registers a notification did not carry (``ensure_full``)."""
        self.tracer.call(self._fetch, ctx)

    def _fetch(self, ctx: UserlandContext) -> None:
        th = ctx._thread
        regs = ctx.regs
        if type(regs) is not PartialRegs:
            return
        if th is None or th.state is State.DEAD:
            regs.__class__ = UserRegs
            return
        self._stop(th)
        h = self._get_regs(th)
        regs.__class__ = UserRegs  # plain registers from here on
        mv = memoryview(regs).cast("B")
        u = list(USER.unpack_from(mv))
        full = HOST_TO_USER(h)
        for i in _UNKNOWN_IDX:
            u[i] = full[i]
        USER.pack_into(mv, 0, *u)

    def save_fpu(self, ctx: UserlandContext) -> None:
        self.tracer.call(self._save_fpu, ctx)

    def _save_fpu(self, ctx: UserlandContext) -> None:
        th = ctx._thread
        if th is None or th.state is State.DEAD:
            ctx._fpu_live = False
            return
        self._stop(th)
        self._xiov.len = self.xsave_size
        S.ptrace(S.PTRACE_GETREGSET, th.tid, S.NT_X86_XSTATE, self._xiov_addr)
        ctx._fpu[:] = self._xbuf.raw
        ctx._fpu_live = False

    def sync_context(self, ctx: UserlandContext) -> None:
        self.tracer.call(self._sync, ctx)

    def _sync(self, ctx: UserlandContext) -> None:
        th = ctx._thread
        if th is None or th.state is State.DEAD:
            return
        self._stop(th)
        h = self._get_regs(th)
        if ctx.fs_base == ctx._live_fs:
            ctx.fs_base = h[H_FS_BASE]
        if ctx.gs_base == ctx._live_gs:
            ctx.gs_base = h[H_GS_BASE]
        ctx._live_fs, ctx._live_gs = h[H_FS_BASE], h[H_GS_BASE]
        if ctx._fpu_live:
            self._save_fpu(ctx)

    def resume(self, ctx: UserlandContext, th: StubThread,
               ops: list[tuple[int, ...]] | None = None) -> None:
        """Apply the address space's pending ``ops`` (if any), load all of
        ``ctx`` into ``th`` and continue it (the full path), in one trip."""
        self.tracer.call(self._resume, ctx, th, ops)

    def _resume(self, ctx: UserlandContext, th: StubThread,
                ops: list[tuple[int, ...]] | None = None) -> None:
        if ops:
            self._batch(th.proc, ops)  # type: ignore[attr-defined]
        if type(ctx.regs) is PartialRegs:
            self._fetch(ctx)
        else:
            self._stop(th)
        u = USER.unpack_from(memoryview(ctx.regs).cast("B"))
        t = self.template
        fs = ctx.fs_base if 0 <= ctx.fs_base < L.TASK_SIZE else 0
        gs = ctx.gs_base if 0 <= ctx.gs_base < L.TASK_SIZE else 0
        rflags = (u[17] & RFLAGS_USER_MASK) | RFLAGS_FIXED
        HOST.pack_into(self._host_mv, 0, u[15], u[14], u[13], u[12], u[7], u[1], u[11], u[10],
                       u[9], u[8], u[0], u[2], u[3], u[4], u[5], MASK64, u[16], t.cs, rflags,
                       u[6], t.ss, fs, gs, t.ds, t.es, 0, 0)
        tid = th.tid
        if S.raw_ptrace(S.PTRACE_SETREGS, tid, 0, self._host_addr) < 0:
            raise PlatformError(f"PTRACE_SETREGS {tid}: {os.strerror(S.errno())}")
        ctx.regs.rflags = rflags
        ctx._live_fs, ctx._live_gs = fs, gs
        if ctx._fpu_dirty:
            self._xbuf.raw = bytes(ctx._fpu)
            self._xiov.len = self.xsave_size
            if S.raw_ptrace(S.PTRACE_SETREGSET, tid, S.NT_X86_XSTATE, self._xiov_addr) < 0:
                # A malformed image (e.g. from a guest's signal frame): start clean.
                self._xbuf.raw = self.fpu_template
                S.ptrace(S.PTRACE_SETREGSET, tid, S.NT_X86_XSTATE, self._xiov_addr)
                ctx._fpu[:] = self.fpu_template
            ctx._fpu_dirty = False
        if S.raw_ptrace(S.PTRACE_CONT, tid, 0, 0) < 0:
            raise PlatformError(f"PTRACE_CONT {tid}: {os.strerror(S.errno())}")
        th.state = State.RUNNING
        ctx._fpu_live = True

    def describe(self, th: StubThread, st: int) -> Description:
        """What the cpu needs to know about a stop (see Description)."""
        return self.tracer.call(self._describe, th, st)

    def interrupt(self, th: StubThread) -> Description:
        """Stop a running thread (PTRACE_INTERRUPT) and describe the stop."""
        return self.tracer.call(self._interrupt, th)

    def _interrupt(self, th: StubThread) -> Description:
        if S.raw_ptrace(S.PTRACE_INTERRUPT, th.tid) < 0:
            return Description(0)  # gone: reads as an exit
        return self._describe(th, th.proc.tracer.wait(th.tid))

    def _describe(self, th: StubThread, st: int) -> Description:
        if not os.WIFSTOPPED(st):
            return Description(st)
        d = Description(st, self._get_regs(th))
        event = st >> 16
        if event == S.PTRACE_EVENT_SECCOMP:
            S.ptrace(S.PTRACE_GETEVENTMSG, th.tid, 0, ctypes.addressof(self._msg))
            d.msg = self._msg.value
        elif event == 0:
            S.ptrace(S.PTRACE_GETSIGINFO, th.tid, 0, self._buf_addr)
            _signo, _err, d.code, d.addr = _SIGINFO.unpack_from(self._buf.raw)
            sig = os.WSTOPSIG(st)
            if sig == SIGFPE:
                S.ptrace(S.PTRACE_GETFPREGS, th.tid, 0, self._buf_addr)
                d.mxcsr = struct.unpack_from("<I", self._buf.raw, 24)[0]
            elif sig == SIGSEGV and d.code == SEGV_MAPERR:
                self._fault_frame(th, d)
        return d

    def _fault_frame(self, th: StubThread, d: Description) -> None:
        """siginfo has no page-fault error code, and for a not-present page the
        supervisor cannot infer read from write. Let the SIGSEGV through to
        the stub's handler on its altstack and read the CPU's error code
        from the frame the host kernel wrote; the guest's FPU state (which
        delivery resets) is kept first, and its registers are those of the stop."""
        tid = th.tid
        self._xiov.len = self.xsave_size
        if S.raw_ptrace(S.PTRACE_GETREGSET, tid, S.NT_X86_XSTATE, self._xiov_addr) < 0:
            return
        fpu = self._xbuf.raw
        if L.ALTSTACK < d.regs[H_RSP] <= L.ALTSTACK + L.ALTSTACK_SIZE:
            # The guest's rsp is on the stub's altstack: the host kernel would
            # push the frame below it, find it overflowing, and force a
            # SIGSEGV that also resets the stub's handler to SIG_DFL for every
            # later fault (and every later guest of a reused stub). Delivered
            # from rsp 0 the frame goes to the altstack's top; the context
            # keeps the stop's registers (d.regs).
            self._host.rsp = 0  # _host still holds this stop's registers (_describe)
            if S.raw_ptrace(S.PTRACE_SETREGS, tid, 0, self._host_addr) < 0:
                return
        if S.raw_ptrace(S.PTRACE_CONT, tid, 0, SIGSEGV) < 0:
            return
        st = th.proc.tracer.wait(tid)
        while os.WIFSTOPPED(st) and st >> 16 == S.PTRACE_EVENT_STOP:
            # A PTRACE_INTERRUPT (a preemption that met the fault) stops it at
            # the handler's entry first: go on to the handler's int3.
            if S.raw_ptrace(S.PTRACE_CONT, tid, 0, 0) < 0:
                break
            st = th.proc.tracer.wait(tid)
        d.fpu = fpu  # from here on the thread's own FPU state is the handler's
        if not os.WIFSTOPPED(st):
            d.status = st  # it died on the way
            return
        regs = self._get_regs(th)
        if os.WSTOPSIG(st) == SIGTRAP and st >> 16 == 0 and regs[H_RIP] == L.FAULT_HANDLER + 1:
            frame = regs[H_RSP]
            d.err = th.proc.read_altstack(frame + L.FRAME_ERR) & 0xFFFF
            d.addr = th.proc.read_altstack(frame + L.FRAME_CR2) or d.addr
        else:
            # The delivery failed and the kernel raised a plain SIGSEGV, now
            # pending at this stop (the next resume drops it); doing so it
            # reset the stub's handler to SIG_DFL: set it again.
            th.proc.rearm_fault_handler()
