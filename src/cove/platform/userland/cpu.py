"""The userland run loop: resume a guest thread, wait for its next syscall,
fault or preemption, and describe it as an Exit.

Two ways back into the guest:
- fast: the thread is waiting in a seccomp notification and the North only
  set rax (registers otherwise byte-identical to the notification's, no FS/GS
  or FPU change): reply with SECCOMP_IOCTL_NOTIF_SEND. No ptrace at all.
- full: anything else (a ptrace stop, changed registers, a new thread):
  PTRACE_SETREGS (orig_rax = -1, so an interrupted or traced syscall is
  never run or restarted by the host), the XSAVE image if it changed, then
  PTRACE_CONT with no signal (a fault signal is always suppressed; the North
  decides what the guest sees).

A third, for a call the North handed back unanswered (``retry_native``: a
woken pipe read/write, or one preempted at its entry): the call is offered
to the native path (fastpath.py) as if just made; declined, ``run`` returns
it as a SYSCALL exit at once, registers untouched.

One ``poll`` waits for the thread's listener (a syscall), the tracer's
wakeup (a ptrace stop: fault, traced syscall, interrupt), the kick eventfd,
and the timeslice deadline; preemption is PTRACE_INTERRUPT.

Fault decoding (ptrace gives siginfo, not the CPU's error code):
SIGSEGV with SEGV_MAPERR/ACCERR is #PF with cr2 = si_addr. For a protection
fault (ACCERR: present) the access is inferred from the page's recorded
protection: not executable and cr2 within 16 bytes of rip is an instruction
fetch, else not writable means a write. For a not-present page (MAPERR) the
read/write/fetch bit cannot be inferred, so the platform lets the SIGSEGV
through to the stub's handler on its altstack and reads the CPU's exact error
code from the signal frame (one more stop; see UserlandPlatform._fault_frame).
SIGSEGV with SI_KERNEL is #GP; SIGILL #UD; SIGFPE #DE for integer
division, else #XM when MXCSR holds an unmasked exception, else #MF;
SIGTRAP #BP (int3) or #DB (single step, icebp); SIGBUS #AC for
misalignment, #SS when the kernel raised it (SI_KERNEL), else #PF. A
syscall through a foreign ABI (int 0x80) is #GP with error code 0x402, as
the kvm platform reports it.

Two syscalls skip seccomp by the host kernel's design (Linux 6.11+): uretprobe
(335) and uprobe (336). Both act only inside uprobe trampolines, which no stub
has: 336 returns -ENXIO to the guest from the host; 335 raises SIGILL, which
is reported as the syscall it was (the North answers ENOSYS).
"""

from __future__ import annotations

import ctypes
import errno as _errno
import os
import select
import struct
import time
from collections.abc import Callable

from cove.platform.base import (
    AC,
    BP,
    DB,
    DE,
    GP,
    MC,
    MF,
    PF,
    PF_INSTR,
    PF_PRESENT,
    PF_USER,
    PF_WRITE,
    PROT_EXEC,
    PROT_READ,
    PROT_WRITE,
    SS,
    UD,
    XM,
    Exit,
    ExitKind,
    PlatformError,
    UserRegs,
)
from cove.platform.userland import _sys as S
from cove.platform.userland.bpf import TRACE_FOREIGN, allows
from cove.platform.userland.context import (
    H_FS_BASE,
    H_GS_BASE,
    H_ORIG_RAX,
    HOST_TO_USER,
    USER,
    PartialRegs,
)
from cove.platform.userland.fastpath import DECLINED, NATIVE_NRS, NR_READ, NR_WRITE, mapped
from cove.platform.userland.stub import State

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from cove.platform.userland.aspace import UserlandAddressSpace
    from cove.platform.userland.context import UserlandContext
    from cove.platform.userland.platform import UserlandPlatform
    from cove.platform.userland.stub import StubThread
    from cove.platform.userland.threadops import Description

MASK64 = (1 << 64) - 1
_CANON_HI = 0xFFFF_8000_0000_0000
_SYSCALL, _FAULT, _INTERRUPTED, _HALT = (ExitKind.SYSCALL, ExitKind.FAULT,
                                          ExitKind.INTERRUPTED, ExitKind.HALT)
_RECV, _SEND = S.SECCOMP_IOCTL_NOTIF_RECV, S.SECCOMP_IOCTL_NOTIF_SEND
_NOTIF, _RESP = S.NOTIF, S.NOTIF_RESP
_raw_ioctl = S.raw_ioctl
_ST_NOTIF, _ST_RUNNING, _ST_DEAD = State.NOTIF, State.RUNNING, State.DEAD
_ZERO_NOTIF = bytes(S.NOTIF_SIZE)
# rax, (rbx), rcx, rdx, rsi, rdi, (rsp, rbp), r8, r9, r10, (r11..r15), rip
_KNOWN = struct.Struct("<Q8x4Q16x3Q40xQ")
_monotonic = time.monotonic
_sched_getcpu = S.sched_getcpu
_ERESTART = (-512, -513, -514, -516)  # ERESTARTSYS NOINTR NOHAND RESTART_RESTARTBLOCK
SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP = 11, 7, 4, 8, 5
SEGV_ACCERR, SI_KERNEL, TRAP_TRACE, TRAP_HWBKPT = 2, 0x80, 2, 4
BUS_ADRALN, BUS_MCEERR_AR, BUS_MCEERR_AO = 1, 4, 5
FPE_INTDIV, FPE_INTOVF = 1, 2
POLLIN = select.POLLIN
_POLL_MAX_MS = 86_400_000


def _signed(v: int) -> int:
    return v - (1 << 64) if v >> 63 else v


class UserlandCpu:
    """See ``cove.platform.base.Cpu`` and the module doc."""

    def __init__(self, platform: UserlandPlatform) -> None:
        self.platform = platform
        self.tracer = platform.tracer
        self._exit = Exit()
        self._kickfd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._kicked = False
        self._slice: float | None = None
        self._next_tick = 0.0
        self._notif = ctypes.create_string_buffer(S.NOTIF_SIZE)
        self._notif_addr = ctypes.addressof(self._notif)
        self._notif_mv = memoryview(self._notif).cast("B")
        self._resp = ctypes.create_string_buffer(S.NOTIF_RESP.size)
        self._resp_addr = ctypes.addressof(self._resp)
        self._resp_mv = memoryview(self._resp).cast("B")
        self._run_lock = platform.run_lock
        self._fast = platform.fastpath
        # Contexts whose unanswered call the North handed back to the native
        # path (retry_native), with that call's notification id.
        self._retry: dict[UserlandContext, int] = {}
        # Launched contexts by their thread's listener fd (launch, wait_any).
        self._live: dict[int, tuple[UserlandContext, StubThread, UserlandAddressSpace]] = {}
        self._live_tids: dict[int, int] = {}  # their host tids -> listener fds
        self._multi = select.poll()
        self._multi.register(self.tracer.wakeup, POLLIN)
        self._multi.register(self._kickfd, POLLIN)
        self._extra = -1
        self._concurrent = False  # launch was used: native grants are held until the next event
        self._hurried: set[int] = set()  # tids of holders already interrupted (hurry)
        self._closed = False

    # --- running ----------------------------------------------------------------
    def run(self, ctx: UserlandContext, aspace: UserlandAddressSpace) -> Exit:
        retry = self._retry.pop(ctx, None) if self._retry else None
        if self._kicked:
            if retry is not None:  # the North answers the call after all; the kick waits
                self._exit.kind = _SYSCALL
                return self._exit
            self._kicked = False
            self._drain_kick()
            self._exit.kind = _INTERRUPTED
            return self._exit
        lock = self._run_lock
        lock.acquire()
        try:
            th = self._start(ctx, aspace, retry)
            if type(th) is Exit:
                return th
            poller = th.poller
            if poller is None:
                poller = self._poller(th)
            if not self.tracer.armed:
                self.tracer.rearm()
            if self._slice:
                left = self._next_tick - _monotonic()
                events = poller.poll(left * 1000 + 1) if left > 0 else ()
            else:
                events = poller.poll()
            if len(events) == 1 and events[0][0] == th.lfd:
                ex = self._recv(ctx, th, aspace)
                if ex is not None:
                    return ex
                events = ()  # consumed (run natively, or withdrawn): poll again
            return self._wait(ctx, th, aspace, events)
        finally:
            lock.release()

    def _start(self, ctx: UserlandContext, aspace: UserlandAddressSpace,
               retry: int | None) -> StubThread | Exit:
        """Put ``ctx`` back into the guest: its thread, or an Exit at once
        (a fault before any instruction, a handed-back call the native path
        declined, a vanished thread)."""
        if _sched_getcpu() != self.platform.pinned_cpu:
            self.platform.follow_cpu(_sched_getcpu())
        proc = aspace.proc
        ops = None
        if proc is None or aspace._dirty or aspace.destroyed:
            proc, ops = aspace.prepare()
        th = ctx._thread
        if retry is not None and th is not None and th.rules != ctx.native_rules and \
                th.state is _ST_NOTIF and retry == th.notif_id and not ops and \
                self._rule_call(ctx, th, aspace):
            return ctx._thread  # type: ignore[return-value]  # moved, and making the call
        if th is None or th.proc is not proc or th.state is _ST_DEAD or \
                (th.rules and th.rules != ctx.native_rules):
            # A thread with rules only for a call of its rule (_to_rules_thread:
            # the stub needs the pipe's blocking copy first, through that call).
            th = self.platform.bind(proc, ctx, ())
        regs = ctx.regs
        rip = regs.rip
        if (1 << 47) <= rip < _CANON_HI:
            if ops:
                self.platform.batch(proc, ops)
            return self._fault_now(GP)  # the host would only SIGSEGV on the iret
        unchanged = (th.state is _ST_NOTIF and not ctx._fpu_dirty
                     and ctx.fs_base == ctx._live_fs and ctx.gs_base == ctx._live_gs
                     and bytes(ctx._rmv) == ctx._snap)
        if retry is not None:
            # A call handed back unanswered (retry_native).
            if ops:
                self.platform.batch(proc, ops)
            if not unchanged or retry != th.notif_id:  # unchanged: still in it
                # Its notification is gone (the thread was stopped, say for a
                # register fetch) or the context changed: never resume the
                # guest with a result the North did not give; it answers now.
                self._exit.kind = _SYSCALL
                return self._exit
            ex = self._retry_native(ctx, th, aspace)
            if ex is not None:
                return ex
        elif unchanged:
            # The fast path: only rax changed; the reply resumes the guest.
            if ops:
                self.platform.batch(proc, ops)
            rax = regs.rax
            _RESP.pack_into(self._resp_mv, 0, th.notif_id,
                            rax - (1 << 64) if rax >> 63 else rax, 0, 0)
            if _raw_ioctl(th.lfd, _SEND, self._resp_addr) < 0:
                if self._concurrent and self._interrupted_stop(th) is not None:
                    # Our own kick (PTRACE_INTERRUPT) took it out of its wait
                    # after its call was received: the answer goes in by ptrace.
                    th.state = State.STOPPED
                    self.platform.resume(ctx, th, None)
                    return th
                th.state = _ST_DEAD  # the notification is gone: the thread was killed
                return self._halt(f"stub thread {th.tid} vanished in a syscall")
            th.state = _ST_RUNNING
        else:
            self.platform.resume(ctx, th, ops)
        return th

    # --- several guest threads at once (the kernel's concurrent loop) ----------
    def launch(self, ctx: UserlandContext, aspace: UserlandAddressSpace) -> Exit | None:
        """Resume ``ctx`` without waiting for it: None once it runs (its next
        event comes from ``wait_any``), or an Exit at once, as ``run`` returns."""
        self._concurrent = self._fast.offers = True
        retry = self._retry.pop(ctx, None) if self._retry else None
        th = self._start(ctx, aspace, retry)
        if type(th) is Exit:
            return th
        if not self.tracer.armed:
            self.tracer.rearm()
        self._live[th.lfd] = (ctx, th, aspace)
        self._live_tids[th.tid] = th.lfd
        self._multi.register(th.lfd, POLLIN)
        return None

    def wait_any(self, timeout: float | None, extra: int = -1,
                 ready: Callable[[], bool] | None = None,
                 ) -> tuple[UserlandContext | None, Exit | None]:
        """The next event of any launched context: (ctx, its Exit); (None,
        None) after ``timeout`` seconds, a kick, ``extra`` (an fd) ready, or
        a call run natively after which ``ready()`` says the caller has work."""
        multi = self._multi
        if extra != self._extra:
            if self._extra >= 0:
                multi.unregister(self._extra)
            if extra >= 0:
                multi.register(extra, POLLIN)
            self._extra = extra
        end = None if timeout is None else _monotonic() + timeout
        tracer = self.tracer
        while True:
            if tracer._stash:  # stops reaped while the tracer waited for another thread
                found = self._stashed_stop()
                if found is not None:
                    return found
            if not tracer.armed:
                tracer.rearm()
            # poll takes at most ~24 days; a guest may sleep for longer.
            events = multi.poll(None if end is None else
                                min(max(0.0, (end - _monotonic()) * 1000), _POLL_MAX_MS))
            if not events:
                return None, None
            for fd, _ in events:
                live = self._live.get(fd)
                if live is not None:
                    ctx, th, aspace = live
                    if th.lfd != fd or th.state is _ST_DEAD:
                        # Killed with its stub (the fd may be another's now).
                        self._drop(fd)
                        self._recommit(th)
                        return ctx, self._halt(f"stub thread {th.tid} is gone")
                    ex = self._recv(ctx, th, aspace)
                    if ex is not None:
                        self._drop(fd)
                        return ctx, ex
                    moved = ctx._thread
                    if moved is not th and moved is not None:  # to its rules' thread
                        self._drop(fd)
                        self._live[moved.lfd] = (ctx, moved, aspace)
                        self._live_tids[moved.tid] = moved.lfd
                        multi.register(moved.lfd, POLLIN)
                    if ready is not None and ready():
                        return None, None
                elif fd == tracer.wakeup:
                    tracer.drain_wakeup()
                    tracer.sweep()  # one pass for all: a per-thread waitpid is O(threads)
                    found = self._stashed_stop()
                    if found is not None:
                        return found
                    tracer.rearm()
                elif fd == self._kickfd:
                    self._kicked = False
                    self._drain_kick()
                    return None, None
                else:
                    return None, None  # extra
            if end is not None and _monotonic() >= end:
                return None, None  # native calls kept coming: the caller's deadline first

    def _stashed_stop(self) -> tuple[UserlandContext, Exit] | None:
        """A launched thread's stop from the tracer's stash, as its exit."""
        by_tid = self._live_tids
        for tid in list(self.tracer._stash):
            lfd = by_tid.get(tid)
            if lfd is None:
                continue
            ctx, th, aspace = self._live[lfd]
            st = self.tracer.stashed(tid)
            assert st is not None
            self._drop(lfd)
            return ctx, self._stopped(ctx, th, self.platform.describe(th, st), aspace)
        return None

    def interrupt_live(self, ctx: UserlandContext) -> None:
        """Ask a launched context to stop (PTRACE_INTERRUPT); its stop comes
        from ``wait_any`` as an INTERRUPTED exit (or whatever came first)."""
        th = ctx._thread
        if th is not None and th.lfd in self._live:
            # By the tracer thread: ptrace requests from any other are refused.
            self.tracer.call(S.raw_ptrace, S.PTRACE_INTERRUPT, th.tid)

    def halt_live(self) -> list[tuple[UserlandContext, Exit]]:
        """Stop every launched context now; each one's exit, for the kernel."""
        return [(ctx, self._stop_live(lfd).copy()) for lfd, (ctx, _th, _a)
                in list(self._live.items())]

    def halt_one(self, ctx: UserlandContext) -> Exit | None:
        """Stop one launched context now; its exit (None if it was not launched)."""
        lfd = self._lfd_of(ctx)
        return None if lfd is None else self._stop_live(lfd)

    def forget(self, ctx: UserlandContext) -> None:
        """A launched context's task is gone: its thread's events are dropped
        (and a grant it held released: no next event will)."""
        lfd = self._lfd_of(ctx)
        if lfd is not None:
            th = self._live[lfd][1]
            self._drop(lfd)
            self._recommit(th)

    def _lfd_of(self, ctx: UserlandContext) -> int | None:
        return next((lfd for lfd, live in self._live.items() if live[0] is ctx), None)

    def _stop_live(self, lfd: int) -> Exit:
        ctx, th, aspace = self._live[lfd]
        self._drop(lfd)
        return self._preempt(ctx, th, aspace)

    def dirty_live(self) -> set[UserlandContext]:
        """Launched contexts whose address space has map changes pending (made
        by another process's call): they must stop before anything else runs,
        so that the changes are applied (at their next launch) while none of
        that stub's threads runs and before a frame the North freed can be
        reused elsewhere."""
        return {ctx for ctx, _th, aspace in self._live.values() if aspace._dirty}

    def _drop(self, lfd: int) -> None:
        _ctx, th, _aspace = self._live.pop(lfd)
        if self._live_tids.get(th.tid) == lfd:
            del self._live_tids[th.tid]
        self._multi.unregister(lfd)

    def retry_native(self, ctx: UserlandContext) -> bool:
        """The North hands ``ctx``'s unanswered read/write back: its next
        ``run`` offers the call to the native path as if just made, and
        returns it as a SYSCALL exit again if that declines. False when the
        call did not arrive as a notification (the North must answer it)."""
        th = ctx._thread
        if th is None or th.state is not _ST_NOTIF or self._fast.io is None:
            return False
        self._retry[ctx] = th.notif_id
        return True

    def _retry_native(self, ctx: UserlandContext, th: StubThread,
                      aspace: UserlandAddressSpace) -> Exit | None:
        """``run`` for a call handed back by ``retry_native``: None once it
        runs natively (the cpu then waits for the thread's next event)."""
        regs = ctx.regs
        done = self._fast.try_native(ctx, th, aspace, th.notif_id, regs.rax, regs.rdi,
                                     regs.rsi, regs.rdx)
        if done == DECLINED:
            self._exit.kind = _SYSCALL  # the registers are still the call's
            return self._exit
        if done < 0:
            return self._gone(ctx, th, aspace)
        th.state = _ST_RUNNING
        if self._concurrent:
            self._hold(th)
        return None

    def _interrupted_stop(self, th: StubThread) -> int | None:
        """After a reply or CONTINUE found the thread's notification gone: its
        stop status if an interrupt (the concurrent loop's kick) took it out of
        its wait, its call unanswered and never run by the host; None if it
        was killed."""
        try:
            st = self.tracer.wait(th.tid)
        except PlatformError:
            return None
        return st if os.WIFSTOPPED(st) else None

    def _gone(self, ctx: UserlandContext, th: StubThread, aspace: UserlandAddressSpace) -> Exit:
        """A notification that vanished before the native path could let it
        run: an interrupt's stop (the call is made again when the context
        runs) or a killed thread."""
        st = self._interrupted_stop(th) if self._concurrent else None
        if st is not None:
            return self._stopped(ctx, th, self.platform.describe(th, st), aspace)
        th.state = _ST_DEAD
        return self._halt(f"stub thread {th.tid} vanished in a syscall")

    def hurry(self, grant: object) -> None:
        """A native call held on ``grant`` keeps a task waiting (the North would
        copy through that pipe end): stop the thread that made it now, so that
        its event releases the grant, rather than whenever it next calls or
        its timeslice ends (a thread computing for seconds would hold it)."""
        for ctx, th, _aspace in list(self._live.values()):
            if th.commit is grant and th.tid not in self._hurried:
                self._hurried.add(th.tid)  # once: its stop releases the grant
                self.interrupt_live(ctx)

    def _hold(self, th: StubThread) -> None:
        """The native call just let run may run on while other threads do:
        its grant is held until the thread's next event (``_recommit``)."""
        grant = th.commit = self._fast.last_grant
        grant.hold()  # type: ignore[union-attr]

    def _recommit(self, th: StubThread) -> None:
        """The thread's last native call (if one is held) has surely moved its
        bytes by its next event, or the thread is gone: its grant is released,
        waking whoever slept meanwhile (a sibling that found the pipe empty,
        or busy, while the copy was in flight)."""
        grant, th.commit = th.commit, None
        if grant is not None:
            self._hurried.discard(th.tid)
            grant.release()  # type: ignore[attr-defined]

    def _poller(self, th: StubThread) -> select.poll:
        poller = th.poller = select.poll()
        poller.register(th.lfd, POLLIN)
        poller.register(self.tracer.wakeup, POLLIN)
        poller.register(self._kickfd, POLLIN)
        return poller

    def _wait(self, ctx: UserlandContext, th: StubThread, aspace: UserlandAddressSpace,
              events: list[tuple[int, int]] | tuple[()]) -> Exit:
        """Wait for the thread's next event, starting with ``events`` from a poll."""
        poller = th.poller
        assert poller is not None
        lfd = th.lfd
        while True:
            for fd, _ in events:
                if fd == lfd:
                    ex = self._recv(ctx, th, aspace)
                    if ex is not None:
                        return ex
                elif fd == self._kickfd:
                    self._kicked = False
                    self._drain_kick()
                    return self._preempt(ctx, th, aspace)
                else:
                    self.tracer.drain_wakeup()
                    st = self.tracer.poll(th.tid)
                    if st is not None:  # the waiter stays disarmed until the next poll
                        return self._stopped(ctx, th, self.platform.describe(th, st), aspace)
                    self.tracer.rearm()
            if self._slice:
                left = self._next_tick - _monotonic()
                if left <= 0:
                    self._next_tick = max(self._next_tick + self._slice,
                                          _monotonic() + self._slice / 2)
                    return self._preempt(ctx, th, aspace)
                events = poller.poll(left * 1000 + 1)
            else:
                events = poller.poll()

    def _recv(self, ctx: UserlandContext, th: StubThread,
              aspace: UserlandAddressSpace) -> Exit | None:
        """The thread's notification as a SYSCALL exit; None when there is
        none after all, or the call ran natively (fastpath.py)."""
        self._notif_mv[:] = _ZERO_NOTIF  # RECV wants a zeroed buffer
        if _raw_ioctl(th.lfd, _RECV, self._notif_addr) < 0:
            e = S.errno()
            if e in (_errno.ENOENT, _errno.EINTR, _errno.EAGAIN):
                return None  # withdrawn (the waiter was interrupted)
            raise PlatformError(f"seccomp NOTIF_RECV: {os.strerror(e)}")
        nid, pid, _fl, nr, _arch, ip, a0, a1, a2, a3, a4, a5 = _NOTIF.unpack_from(self._notif_mv)
        if pid != th.tid:
            # Not ours (cannot happen: each guest thread has its own filter). Refuse it.
            _RESP.pack_into(self._resp_mv, 0, nid, 0, -_errno.ENOSYS, 0)
            _raw_ioctl(th.lfd, _SEND, self._resp_addr)
            return None
        self._recommit(th)
        rules = ctx.native_rules
        if rules and th.rules != rules and self._concurrent and \
                allows(rules[0], nr, a0, a1, a2) and \
                self._to_rules_thread(ctx, th, aspace, nid, nr, ip, a0, a1, a2, a3, a4, a5):
            return None
        if nr in NATIVE_NRS and self._fast.io is not None:
            done = self._fast.try_native(ctx, th, aspace, nid, nr, a0, a1, a2)
            if done:
                if done > 0:
                    th.state = _ST_RUNNING
                    if self._concurrent:
                        self._hold(th)
                    return None
                return self._gone(ctx, th, aspace)
        regs = ctx.regs
        if type(regs) is not PartialRegs:
            regs.__class__ = PartialRegs
        # rax rcx rdx rsi rdi r8 r9 r10 rip; the registers the notification
        # does not carry read as 0 until fetched (PartialRegs).
        _KNOWN.pack_into(ctx._mv, 0, nr & MASK64, ip, a2, a1, a0, a4, a5, a3, ip)
        ctx._snap = bytes(ctx._rmv)
        th.state = _ST_NOTIF
        th.notif_id = nid
        ex = self._exit
        ex.kind = _SYSCALL
        return ex

    def _rule_call(self, ctx: UserlandContext, th: StubThread,
                   aspace: UserlandAddressSpace) -> bool:
        """A woken call handed back (retry_native) is its rule's: it moves to
        the rule's thread and is made there (``_to_rules_thread``)."""
        regs = ctx.regs
        if not ctx.native_rules or \
                not allows(ctx.native_rules[0], regs.rax, regs.rdi, regs.rsi, regs.rdx):
            return False
        return self._to_rules_thread(
            ctx, th, aspace, th.notif_id, regs.rax, regs.rip, regs.rdi, regs.rsi, regs.rdx,
            regs.r10, regs.r8, regs.r9)

    def _to_rules_thread(self, ctx: UserlandContext, th: StubThread,
                         aspace: UserlandAddressSpace, nid: int, nr: int, ip: int,
                         *args: int) -> bool:
        """The call a rule of ``ctx`` allows, notified by a thread without that
        rule: the stub gets the blocking copy of the pipe end at the fd, and
        the context moves to a thread whose filter has the rule, at the
        syscall instruction, so that thread makes the call natively. False
        when that cannot be (the call then takes the usual path, and the
        North ends native mode)."""
        fast = self._fast
        rule = ctx.native_rules[0]
        # The pages were checked when the call was offered, maybe long before
        # the other end's offer turned the rule on: checked again now (from
        # here on only an event of this process, or a foreign map change that
        # stops it, can change them, and either ends native mode first).
        if aspace._dirty or aspace.proc is not th.proc or not mapped(
                aspace.pages, [(rule[2], rule[3])], rule[3],
                PROT_READ if rule[0] == NR_WRITE else PROT_WRITE) or \
                fast.install_blocking(th, nid, args[0], ctx.native_end) != 1:  # CONTINUED
            ctx.native_rules = ()
            return False
        regs = ctx.regs
        if type(regs) is not PartialRegs:
            regs.__class__ = PartialRegs
        a0, a1, a2, a3, a4, a5 = args
        _KNOWN.pack_into(ctx._mv, 0, nr & MASK64, ip, a2, a1, a0, a4, a5, a3, ip)
        regs.rip = (ip - 2) & MASK64  # at the syscall instruction: made again there
        ctx._snap = bytes(ctx._rmv)
        th.state = _ST_NOTIF
        th.notif_id = nid
        new = self.platform.bind(aspace.proc, ctx, ctx.native_rules)  # fetches the rest
        self.platform.resume(ctx, new, None)
        return True

    def allow_native(self, ctx: UserlandContext, rule: tuple[int, int, int, int] | None,
                     end: object = None) -> None:
        """The North's native mode (cove.kernel.nativemode): ``ctx``'s thread
        lets ``rule``'s call run with no stop (``end``: the host pipe end it
        names), or no call (None). A launched context keeps its thread until
        its next event; the North stops it first when a rule must go."""
        ctx.native_rules = (rule,) if rule is not None else ()
        ctx.native_end = end

    def _preempt(self, ctx: UserlandContext, th: StubThread,
                 aspace: UserlandAddressSpace) -> Exit:
        return self._stopped(ctx, th, self.platform.interrupt(th), aspace)

    # --- ptrace stops -----------------------------------------------------------
    def _stopped(self, ctx: UserlandContext, th: StubThread, d: Description,
                 aspace: UserlandAddressSpace) -> Exit:
        self._recommit(th)
        st = d.status
        if not os.WIFSTOPPED(st):
            th.state = State.DEAD
            how = (f"exited {os.WEXITSTATUS(st)}" if os.WIFEXITED(st)
                   else f"killed by signal {os.WTERMSIG(st)}")
            return self._halt(f"stub thread {th.tid} {how}")
        th.state = State.STOPPED
        h = d.regs
        regs = ctx.regs
        if type(regs) is not UserRegs:
            regs.__class__ = UserRegs
        USER.pack_into(memoryview(regs).cast("B"), 0, *HOST_TO_USER(h))
        if ctx.fs_base == ctx._live_fs:
            ctx.fs_base = h[H_FS_BASE]  # the guest may have used wrfsbase
        if ctx.gs_base == ctx._live_gs:
            ctx.gs_base = h[H_GS_BASE]
        ctx._live_fs, ctx._live_gs = h[H_FS_BASE], h[H_GS_BASE]
        event, sig = st >> 16, os.WSTOPSIG(st)
        ex = self._exit
        if event == S.PTRACE_EVENT_SECCOMP:
            regs.rax = h[H_ORIG_RAX]
            if d.msg == TRACE_FOREIGN:
                regs.rip = (regs.rip - 2) & MASK64  # at the int 0x80, as a fault leaves it
                return self._fault_now(GP, (0x80 << 3) | 2)
            ex.kind = _SYSCALL
            return ex
        if event == S.PTRACE_EVENT_STOP:
            if th.rules and h[H_ORIG_RAX] in (NR_READ, NR_WRITE):
                native = self._cut_short(ctx, th, h)
                if native is not None:
                    return native
            if _signed(h[H_ORIG_RAX]) >= 0 and _signed(h[10]) in _ERESTART:
                # Stopped inside a syscall's notification wait: the call never
                # ran; make the context re-issue it when resumed.
                regs.rax = h[H_ORIG_RAX]
                regs.rip = (regs.rip - 2) & MASK64
            ex.kind = _INTERRUPTED
            return ex
        if event == 0:
            if d.fpu is not None:  # the fault-frame probe displaced the FPU state
                ctx._fpu[:] = d.fpu
                ctx._fpu_dirty, ctx._fpu_live = True, False
            if d.err >= 0:
                ex.kind, ex.vector, ex.error_code, ex.cr2, ex.detail = _FAULT, PF, d.err, \
                    d.addr, ""  # fmt: skip
                return ex
            if sig == SIGILL and d.code == SI_KERNEL and _signed(h[H_ORIG_RAX]) >= 0:
                # uretprobe (335) passes seccomp by the host kernel's design and,
                # outside a uprobe trampoline, only raises SIGILL: it was a syscall.
                regs.rax = h[H_ORIG_RAX]
                ex.kind = _SYSCALL
                return ex
            return self._signal(ctx, sig, d.code, d.addr, d.mxcsr, aspace)
        ex.kind = _INTERRUPTED
        return ex

    def _cut_short(self, ctx: UserlandContext, th: StubThread,
                   h: tuple[int, ...]) -> Exit | None:
        """A kick stopped a thread at the end of the call its rule runs
        natively (bpf.py). Cut short before any byte moved (-ERESTARTSYS):
        an INTERRUPTED exit with rax = -EINTR and ``ctx.cut_short`` = the call,
        which the North restarts, or lets end in EINTR for a handler without
        SA_RESTART, exactly as Linux does. A write cut short after some bytes
        moved leaves the rest to the North, which adds those bytes to its
        result (Linux would have gone on writing: only a signal ends a
        blocking pipe write early). Else (done, or not the rule's call) None:
        an ordinary stop."""
        rv = _signed(h[10])
        regs = ctx.regs
        nr = h[H_ORIG_RAX]
        if not allows(th.rules[0], nr, regs.rdi, regs.rsi, regs.rdx):
            return None  # a call the North answered, stopped at its end
        ex = self._exit
        if rv in _ERESTART:
            regs.rax = -_errno.EINTR & MASK64
            ctx.cut_short = nr
            ex.kind = _INTERRUPTED
            return ex
        if nr == NR_WRITE and 0 < rv < regs.rdx:
            # The registers stay the call's (the guest's rsi and rdx must be
            # as it left them); the North writes from buf + rv (Kernel.syscall).
            regs.rax = NR_WRITE
            ctx.syscall_carry = rv
            ex.kind = _SYSCALL
            return ex
        return None

    def _signal(self, ctx: UserlandContext, sig: int, code: int, addr: int, mxcsr: int,
                aspace: UserlandAddressSpace) -> Exit:
        """A signal-delivery stop: a CPU fault becomes FAULT; anything else
        (a stray signal from outside) is dropped."""
        ex = self._exit
        if code <= 0 or sig not in (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP):
            ex.kind = _INTERRUPTED  # sent by someone, not raised by the CPU: ignore it
            return ex
        rip = ctx.regs.rip
        if sig == SIGSEGV:
            if code == SI_KERNEL:
                return self._fault_now(GP)
            return self._page_fault(addr, rip, code == SEGV_ACCERR, aspace)
        if sig == SIGILL:
            return self._fault_now(UD)
        if sig == SIGTRAP:
            return self._fault_now(DB if code in (TRAP_TRACE, TRAP_HWBKPT, 1) else BP)
        if sig == SIGFPE:
            if code in (FPE_INTDIV, FPE_INTOVF):
                return self._fault_now(DE)
            unmasked = mxcsr & 0x3F & ~(mxcsr >> 7)
            return self._fault_now(XM if unmasked else MF)
        if code == BUS_ADRALN:
            return self._fault_now(AC)
        if code == SI_KERNEL:
            return self._fault_now(SS)  # #SS: a non-canonical stack access
        if code in (BUS_MCEERR_AR, BUS_MCEERR_AO):
            return self._fault_now(MC)
        return self._page_fault(addr, rip, True, aspace)

    def _page_fault(self, addr: int, rip: int, present: bool,
                    aspace: UserlandAddressSpace) -> Exit:
        err = PF_USER
        if present:
            err |= PF_PRESENT
            page = aspace.lookup(addr & ~0xFFF) if addr < (1 << 47) else None
            prot = page[1] if page is not None else 0
            if not prot & PROT_EXEC and rip <= addr < rip + 16:
                err |= PF_INSTR
            elif not prot & PROT_WRITE:
                err |= PF_WRITE
        ex = self._exit
        ex.kind, ex.vector, ex.error_code, ex.cr2, ex.detail = _FAULT, PF, err, addr, ""
        return ex

    def _fault_now(self, vector: int, error_code: int = 0) -> Exit:
        ex = self._exit
        ex.kind, ex.vector, ex.error_code, ex.cr2, ex.detail = _FAULT, vector, error_code, 0, ""
        return ex

    def _halt(self, detail: str) -> Exit:
        ex = self._exit
        ex.kind = _HALT
        ex.detail = detail
        return ex

    # --- preemption -------------------------------------------------------------
    def _drain_kick(self) -> None:
        try:
            os.eventfd_read(self._kickfd)
        except BlockingIOError:
            pass

    def set_timeslice(self, seconds: float | None) -> None:
        self._slice = seconds or None
        if self._slice:
            self._next_tick = time.monotonic() + self._slice

    def kick(self) -> None:
        self._kicked = True
        try:
            os.eventfd_write(self._kickfd, 1)
        except OSError:
            pass  # closed

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        os.close(self._kickfd)
