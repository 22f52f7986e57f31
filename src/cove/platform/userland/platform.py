"""The userland platform: guest threads are host threads of ptrace'd stub
processes under a seccomp filter; no KVM needed.

Design (see also stub.py, aspace.py, context.py, cpu.py, tracer.py):
- one stub process per guest address space, spawned from the small static
  program stub.c (built with gcc on first use); an "anchor" stub, spawned
  first, leads the process group every stub joins and is never used for a
  guest;
- a guest thread is a context bound to a host thread of its address space's
  stub (one host thread per guest thread, created on demand, reused after
  its context is dropped), so switching guest threads costs nothing;
- guest memory is the PhysMem memfd mapped into the stub at guest addresses;
- a guest syscall arrives either as a seccomp user notification (answered
  with the result, no ptrace) or as a ptrace seccomp stop (calls that need
  every register); faults are the stub's fault signals, read with ptrace;
- every ptrace request is made by the platform's tracer thread
  (``Tracer.call``), so the North may run the platform from any host thread;
  cpus on several host threads work but run one at a time (``run_lock``).

The methods below that touch a stub are entry points from the cpu thread:
each makes one trip to the tracer thread (``_x`` runs there).
"""

from __future__ import annotations

import ctypes
import os
import platform as _host_platform
import struct
import threading
import weakref
from typing import TYPE_CHECKING

from cove.platform.base import Capabilities, PlatformError, PlatformUnavailable, UserRegs
from cove.platform.userland import _sys as S
from cove.platform.userland import bpf, build
from cove.platform.userland import layout as L
from cove.platform.userland.aspace import UserlandAddressSpace
from cove.platform.userland.context import (
    H_FS_BASE,
    H_GS_BASE,
    HOST,
    HOST_TO_USER,
    USER,
    PartialRegs,
    UserlandContext,
)
from cove.platform.userland.stub import State, StubProcess, StubThread
from cove.platform.userland.tracer import Tracer

if TYPE_CHECKING:
    from cove.kernel.physmem import PhysMem
    from cove.platform.base import Exit
    from cove.platform.userland.cpu import UserlandCpu

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


def userland_unavailable_reason() -> str | None:
    """None if this host can run the userland platform, else why not (cheap
    checks; the first stub spawned makes the final decision)."""
    if os.uname().sysname != "Linux" or _host_platform.machine() not in ("x86_64", "AMD64"):
        return "the userland platform needs Linux on x86-64"
    try:
        with open("/proc/sys/vm/mmap_min_addr") as f:
            # CAP_SYS_RAWIO (root outside a user namespace) lifts the limit.
            if int(f.read()) > L.RT_ADDR and os.geteuid() != 0:
                return (f"vm.mmap_min_addr is above {L.RT_ADDR:#x}, so the stub's page cannot "
                        "be mapped (sysctl vm.mmap_min_addr=4096)")
    except OSError:
        pass
    try:
        with open("/proc/self/status") as f:
            if "Seccomp:" not in f.read():
                return "the kernel has no seccomp support"
    except OSError:
        pass
    return None


def _orphaned(thread_ref: weakref.ref[StubThread]) -> None:
    """A context was garbage-collected: its thread may host another one."""
    th = thread_ref()
    if th is not None and th.proc.alive and th.state is not State.DEAD:
        th.ctx = None
        th.proc.orphans.append(th)


class UserlandPlatform:
    """See ``cove.platform.base.Platform`` and the module doc."""

    name = "userland"

    def __init__(self, physmem: PhysMem) -> None:
        reason = userland_unavailable_reason()
        if reason:
            raise PlatformUnavailable(reason)
        self.physmem = physmem
        self.stub_path = str(build.stub_path())
        self.filter = bpf.guest_filter()
        self._procs: set[StubProcess] = set()
        self._cpus: list[UserlandCpu] = []
        self._tls = threading.local()
        # One cpu runs at a time (the North uses one): the waiter's wakeups and
        # the tracer's synchronous waits then never race between cpus.
        self.run_lock = threading.Lock()
        self._host = S.user_regs_struct()
        self._host_addr = ctypes.addressof(self._host)
        self._host_mv = memoryview(self._host).cast("B")
        self._buf = ctypes.create_string_buffer(512)  # siginfo, FXSAVE area
        self._buf_addr = ctypes.addressof(self._buf)
        self._msg = ctypes.c_ulong()
        self.tracer = Tracer()
        self.anchor: StubProcess | None = None
        self._pin = os.environ.get("COVE_USERLAND_PIN", "1") != "0"
        self.pinned_cpu = -1
        self._pinned_threads: dict[int, set[int]] = {}  # host tid -> its affinity before
        try:
            self.anchor = self.tracer.call(StubProcess.spawn, self.stub_path, physmem,
                                           self.tracer, self.filter)
            self.tracer.start_waiter(self.anchor.pid)
            self.tracer.call(self._probe_fpu)
        except BaseException:
            self.close()
            raise
        self.template = self.anchor.template
        names = [n for bit, n in L.DEFENCES.items() if self.anchor.defences & bit]
        self.capabilities = Capabilities(
            name="userland",
            syscall_path="seccomp-notify+ptrace",
            xsave_size=self.xsave_size,
            xcr0=self.xcr0,
            notes="stub defences: " + (", ".join(names) or "none"),
        )

    def _probe_fpu(self) -> None:
        assert self.anchor is not None
        buf = ctypes.create_string_buffer(1 << 16)
        iov = S.iovec(ctypes.addressof(buf), len(buf))
        S.ptrace(S.PTRACE_GETREGSET, self.anchor.pid, S.NT_X86_XSTATE, ctypes.addressof(iov))
        size = iov.len
        image = bytearray(buf.raw[:size])
        # Mark x87 and SSE as present in XSTATE_BV (the kernel may report them
        # in their init state, bit clear): the same state, but an image built
        # from this template with new legacy-area contents is then loaded as
        # written instead of being reset to init by XRSTOR.
        struct.pack_into("<Q", image, 512, struct.unpack_from("<Q", image, 512)[0] | 0x3)
        # ptrace puts XCR0 in the first word of the FXSAVE sw_reserved area.
        self.xcr0 = struct.unpack_from("<Q", image, 464)[0] or 0x3
        self.xsave_size = size
        self.fpu_template = bytes(image)
        self._xbuf = ctypes.create_string_buffer(size)
        self._xiov = S.iovec(ctypes.addressof(self._xbuf), size)
        self._xiov_addr = ctypes.addressof(self._xiov)

    # --- CPU placement ----------------------------------------------------------------
    def follow_cpu(self, cpu: int) -> None:
        """Keep every host thread of this sandbox (the calling cpu thread,
        stubs, tracer, waiter) on ``cpu``, the one the cpu thread runs on.

        The sandbox is logically one CPU: the guest and the supervisor take
        turns. Wake-ups that cross host CPUs cost 20-100 µs each on VMs
        (an IPI to a halted vCPU), more than a whole notification round
        trip, and the host scheduler spreads a waker and its wakee over idle
        CPUs, so only pinning every party keeps hand-offs on one CPU. New
        stubs inherit the tracer thread's affinity. A pinned cpu thread gets
        its own affinity back at ``close``. ``COVE_USERLAND_PIN=0`` opts out.
        """
        self.pinned_cpu = cpu
        if not self._pin:
            return
        mask = {cpu}
        me = threading.get_native_id()
        if me not in self._pinned_threads:
            try:
                self._pinned_threads[me] = os.sched_getaffinity(0)
            except OSError:
                pass
        tids = [me, self.tracer.server_tid, self.tracer.waiter_tid]
        for proc in [*self._procs, *([self.anchor] if self.anchor else [])]:
            tids.append(proc.pid)
            tids.extend(proc.threads)
        for tid in tids:
            if tid > 0:
                try:
                    os.sched_setaffinity(tid, mask)
                except OSError:
                    pass  # gone, or a cpuset forbids it: placement is only a hint

    # --- processes ------------------------------------------------------------------
    def new_process(self) -> StubProcess:
        anchor = self.anchor
        if anchor is None or not anchor.alive:
            raise PlatformError("the userland platform is closed (or its template stub died)")
        proc = self.tracer.call(anchor.fork)
        self._procs.add(proc)
        return proc

    def batch(self, proc: StubProcess, ops: list[tuple[int, ...]]) -> None:
        self.tracer.call(proc.batch, ops)

    def retire(self, proc: StubProcess) -> None:
        """An address space is destroyed: contexts still bound to its threads
        keep their state (registers, FPU), then the stub dies."""
        self.tracer.call(self._retire, proc)
        self._procs.discard(proc)

    def _retire(self, proc: StubProcess) -> None:
        for th in list(proc.threads.values()):
            ctx = th.ctx() if th.ctx is not None else None
            if ctx is not None:
                try:
                    self._detach(ctx)
                except PlatformError:
                    pass  # a dead thread: the context keeps what it had
        proc.kill()

    # --- binding contexts to threads ------------------------------------------------
    def bind(self, proc: StubProcess, ctx: UserlandContext) -> StubThread:
        """Give ``ctx`` a stopped thread of ``proc`` (reused or new)."""
        return self.tracer.call(self._bind, proc, ctx)

    def _bind(self, proc: StubProcess, ctx: UserlandContext) -> StubThread:
        if ctx._thread is not None:
            self._detach(ctx)
        th = None
        while proc.orphans:
            cand = proc.orphans.pop()
            if cand.state is State.NOTIF:
                try:
                    self._stop(cand)
                except PlatformError:
                    continue
            if cand.state is State.STOPPED:
                th = cand
                break
        if th is None:
            th = proc.idle.pop() if proc.idle else proc.new_thread()
        th.ctx = weakref.ref(ctx)
        ctx._thread = th
        ctx._fin = weakref.finalize(ctx, _orphaned, weakref.ref(th))
        ctx._fpu_dirty = True
        return th

    def _detach(self, ctx: UserlandContext) -> None:
        th = ctx._thread
        if th is None:
            return
        try:
            if th.state is not State.DEAD:
                if ctx.partial:
                    self._fetch(ctx)
                if ctx._fpu_live:
                    self._save_fpu(ctx)
        finally:
            ctx._thread = None
            if ctx._fin is not None:
                ctx._fin.detach()
                ctx._fin = None
            th.ctx = None
            if th.proc.alive and th.state is not State.DEAD:
                th.proc.orphans.append(th)
            if ctx.partial:
                ctx.regs.__class__ = UserRegs  # what could not be fetched stays as it was
            ctx._fpu_live = False

    # --- thread state (tracer thread) --------------------------------------------------
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

    def resume(self, ctx: UserlandContext, th: StubThread) -> None:
        """Load all of ``ctx`` into ``th`` and continue it (the full path)."""
        self.tracer.call(self._resume, ctx, th)

    def _resume(self, ctx: UserlandContext, th: StubThread) -> None:
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
        if S.raw_ptrace(S.PTRACE_CONT, tid, 0, SIGSEGV) < 0:
            return
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
        # (anything else: the delivery failed and the kernel raised a plain
        # SIGSEGV, now pending at this stop; the next resume drops it.)

    # --- Platform contract ----------------------------------------------------------
    def create_address_space(self) -> UserlandAddressSpace:
        return UserlandAddressSpace(self)

    def create_context(self) -> UserlandContext:
        return UserlandContext(self)

    def create_cpu(self) -> UserlandCpu:
        from cove.platform.userland.cpu import UserlandCpu

        cpu = UserlandCpu(self)
        self._cpus.append(cpu)
        return cpu

    def cpu(self) -> UserlandCpu:
        c = getattr(self._tls, "cpu", None)
        if c is None:
            c = self._tls.cpu = self.create_cpu()
        return c

    def run(self, ctx: UserlandContext, aspace: UserlandAddressSpace) -> Exit:
        return self.cpu().run(ctx, aspace)

    def close(self) -> None:
        for tid, mask in self._pinned_threads.items():
            try:
                os.sched_setaffinity(tid, mask)
            except OSError:
                pass  # that thread is gone
        self._pinned_threads.clear()
        for c in self._cpus:
            c.close()
        self._cpus.clear()
        procs = [*self._procs, *([self.anchor] if self.anchor is not None else [])]
        self._procs.clear()
        self.anchor = None
        if procs:
            self.tracer.call(lambda: [p.kill() for p in procs])
        self.tracer.close()
