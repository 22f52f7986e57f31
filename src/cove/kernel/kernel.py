"""The Linux personality's top: the process table, the run loop and the one
place where a syscall's result (or ``Errno``) becomes rax.

One ``Kernel`` is one sandbox. It runs every guest thread on the calling host
thread's cpu: run a task until it exits to us, handle the exit, pick the next.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable

from cove.abi import flags as F
from cove.abi.errno import E, Errno
from cove.fs.vfs import VFS, PathContext
from cove.kernel import signals
from cove.kernel.fdtable import FdTable
from cove.kernel.mm import MemoryMap
from cove.kernel.sched import TIMESLICE, Scheduler
from cove.kernel.syscall import TABLE, Syscall, load_all
from cove.kernel.task import Creds, Process, State, Task
from cove.kernel.wait import Blocked
from cove.lazylog import getLogger
from cove.platform.base import PF, ExitKind

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from typing import IO, Any

    from cove.platform.base import Exit, Platform

log = getLogger("cove.kernel")  # logging is imported only if something is logged

MASK64 = (1 << 64) - 1
BOOT_UPTIME = 1.0  # seconds the sandbox's clocks show at boot
NORETURN = object()  # a handler that replaced the registers itself (execve, sigreturn)


DEFAULT_CPUS = 2


def _cpus(value: str) -> int:
    """COVE_CPUS as a count; anything else means the default."""
    return max(1, int(value)) if value.isdigit() else DEFAULT_CPUS


# How many guest processes may have a thread in the guest at once where the
# platform can run several (userland; docs/userland-pipes.md). With two or
# more, pipes between processes can run in native mode (cove.kernel.nativemode);
# a sandbox with one task left runs on the one-task loop either way.
CPUS = _cpus(os.environ.get("COVE_CPUS", ""))
_ONE_TASK_LEFT = object()  # _run_concurrent hands back to the one-task loop

# x86 exception vector → (signal, si_code) for faults other than #PF.
FAULT_SIGNALS = {
    0: (F.SIGFPE, 1),  # #DE: FPE_INTDIV
    1: (F.SIGTRAP, 2),  # #DB: TRAP_TRACE
    3: (F.SIGTRAP, 0x80),  # #BP: SI_KERNEL
    4: (F.SIGSEGV, 0x80),  # #OF
    5: (F.SIGSEGV, 0x80),  # #BR
    6: (F.SIGILL, 2),  # #UD: ILL_ILLOPN
    7: (F.SIGFPE, 0x80),  # #NM should never reach us (FPU always on)
    13: (F.SIGSEGV, 0x80),  # #GP: SI_KERNEL, as Linux reports
    12: (F.SIGBUS, 0x80),  # #SS
    16: (F.SIGFPE, 0),  # #MF
    17: (F.SIGBUS, 1),  # #AC: BUS_ADRALN
    19: (F.SIGFPE, 0),  # #XM: decoded from MXCSR by signals
}


class Kernel:
    """One sandbox's Linux personality."""

    def __init__(self, platform: Platform, vfs: VFS, *, trace: IO[str] | None = None,
                 hostname: str = "cove") -> None:
        load_all()
        self.platform = platform
        self.phys = platform.physmem
        self.vfs = vfs
        self.sched = Scheduler()
        self.tasks: dict[int, Task] = {}
        self.processes: dict[int, Process] = {}
        self._ids = itertools.count(1)
        self.init: Process | None = None
        self.trace = trace
        self.hostname = hostname
        self.boot_time = time.time() - BOOT_UPTIME
        # The sandbox's monotonic clocks start at BOOT_UPTIME rather than 0: many
        # programs treat a zero timestamp as "unset", and no real Linux runs
        # user code at uptime 0.
        self.boot_monotonic = time.monotonic() - BOOT_UPTIME
        self._enosys_logged: set[int] = set()
        self.exit_status: int | None = None  # init's wait status when it is gone
        self.futexes: dict[Any, Any] = {}  # owned by syscalls.futex
        self.current: Task | None = None  # the task whose syscall is being handled
        self.native_io: Any = None  # cove.kernel.hostpipe.NativePipes, once a host pipe exists
        self.deadline: float | None = None  # monotonic wall-clock limit (SandboxConfig.timeout)
        self.timed_out = False
        self.cpu = platform.cpu()
        self.cpu.set_timeslice(TIMESLICE)

        self.shutdown_hooks: list[Any] = []  # run once when the sandbox ends (restore tty)
        # Pausing between scheduler steps, where every guest thread is stopped
        # with whole state (cove.sandbox: snapshots): run() returns None when
        # pause_requested is set (sched.wakeup() ends a sleep) or pause_when()
        # says so; calling run() again continues.
        self.pause_requested = False
        # The tasks in the guest while the concurrent loop runs (ctx -> task).
        self.live_tasks: dict[Any, Task] | None = None
        self.pause_when: Callable[[], bool] | None = None

    def run_shutdown_hooks(self) -> None:
        """Run (once, newest first) what must happen before the guest goes."""
        hooks, self.shutdown_hooks = self.shutdown_hooks, []
        for hook in reversed(hooks):
            try:
                hook()
            except Exception:  # one failing hook must not skip the others
                log.exception("shutdown hook failed")

    def shutdown(self) -> None:
        """Release host resources: terminal modes, the VM, guest memory."""
        self.run_shutdown_hooks()
        for proc in list(self.processes.values()):
            if proc.alive:
                self.exit_group(proc, 9)
        self.sched.close()
        self.platform.close()

    # --- creation -----------------------------------------------------------
    def alloc_id(self) -> int:
        tid = next(self._ids)
        while tid in self.tasks or tid in self.processes:
            tid = next(self._ids)
        return tid

    def new_process(self, parent: Process | None, mm: MemoryMap, creds: Creds) -> Process:
        pid = self.alloc_id()
        proc = Process(self, pid, parent, mm, creds)
        proc.start_time = time.monotonic()
        self.processes[pid] = proc
        if parent is not None:
            parent.children.append(proc)
        return proc

    def new_task(self, proc: Process, ctx: Any, files: FdTable, fs: PathContext,
                 tid: int | None = None) -> Task:
        tid = proc.pid if tid is None else tid
        t = Task(self, tid, proc, ctx, files, fs)
        proc.threads.append(t)
        self.tasks[tid] = t
        self.sched.add(t)
        return t

    # --- the run loop -----------------------------------------------------
    def set_timeout(self, seconds: float | None) -> None:
        """Kill every guest process if the sandbox runs longer than ``seconds``."""
        self.deadline = None if seconds is None else time.monotonic() + seconds
        self.sched.horizon = self.deadline

    def run(self) -> int | None:
        """Run until init exits; returns its wait status (see ``status_to_exit``),
        or None when paused (see ``pause_requested``)."""
        concurrent = CPUS > 1 and hasattr(self.cpu, "launch")
        while self.init is not None and self.init.alive:
            if concurrent and len(self.tasks) > 1:
                # Several tasks: the concurrent loop, until one is left (one
                # task runs fastest on this loop: no launch bookkeeping).
                status = self._run_concurrent()
                if status is not _ONE_TASK_LEFT:
                    return status
                continue
            if self.pause_requested or (self.pause_when is not None and self.pause_when()):
                return None
            t = self.sched.next()
            if self.pause_requested:  # sched.wakeup() ended the wait
                if t is not None:
                    self.sched.runq.appendleft(t)
                return None
            if self.deadline is not None and time.monotonic() >= self.deadline:
                self.timed_out = True
                self.kill_all(F.SIGKILL)
                break
            if t is None:
                log.warning("every guest thread is blocked forever: ending the sandbox")
                self.kill_all(F.SIGKILL)
                break
            if t.blocked_call is not None:
                self._resume_blocked(t)
                if t.state is not State.RUNNABLE:
                    continue
            self._run_task(t)
        assert self.init is not None
        return self.init.exit_code if self.init.exit_code is not None else 0

    def _run_task(self, t: Task) -> None:
        """Run ``t`` for as long as it is the only thing to do: the hot path.

        Leaves when ``t`` blocks, exits or stops, when its timeslice ends, or
        when a handler made another task runnable.
        """
        cpu, sched, perf = self.cpu, self.sched, time.perf_counter
        ctx, proc = t.ctx, t.proc
        syscall, runnable = self.syscall, State.RUNNABLE
        SYSCALL, FAULT, INTERRUPTED = ExitKind.SYSCALL, ExitKind.FAULT, ExitKind.INTERRUPTED
        self.current = t  # also while it runs: the platform may ask about it (NativeIo)
        while True:
            if t.pending.mask or proc.shared_pending.mask or t.restart_nr is not None:
                signals.deliver(t)
                if t.state is not runnable:
                    return
            t0 = perf()
            ex = cpu.run(ctx, t.mm.space)
            t1 = perf()
            kind = ex.kind
            if kind == SYSCALL:
                syscall(t)
            elif kind == FAULT:
                self.fault(t, ex)
            elif kind != INTERRUPTED:
                log.error("guest thread %d halted: %s", t.tid, ex.detail)
                self.exit_group(proc, F.SIGSEGV)
            # CPU time: in guest code is user time, handling its exit is system time.
            t2 = perf()
            t.utime += t1 - t0
            t.stime += t2 - t1
            proc.user_time += t1 - t0
            proc.sys_time += t2 - t1
            if t.state is not runnable:
                return
            if kind == INTERRUPTED or sched.runq:
                sched.requeue(t)
                return

    # --- several guest threads at once (COVE_CPUS=N, userland) ----------------------
    def _run_concurrent(self) -> int | object | None:
        """``run`` for a platform whose cpu runs several contexts at once
        (``launch`` / ``wait_any``): every runnable task is in the guest, the
        loop handles whichever exits first. See docs/userland-pipes.md."""
        cpu, sched, runnable = self.cpu, self.sched, State.RUNNABLE
        live = self.live_tasks = {}
        started: dict[Task, float] = {}
        kicked: set[Task] = set()
        self._started, self._kicked = started, kicked
        self._halted: list[tuple[Task, Exit]] = []  # stop_live's, handled by _stop_dirty

        def ready() -> bool:  # a native call woke a task: launch it
            return bool(sched.runq)

        try:
            while self.init is not None and self.init.alive:
                if not live and not self._halted and len(self.tasks) <= 1:
                    return _ONE_TASK_LEFT
                if self.pause_requested or (self.pause_when is not None and self.pause_when()):
                    self._halt_live(live)
                    return None
                if self.deadline is not None and time.monotonic() >= self.deadline:
                    self.timed_out = True
                    self.kill_all(F.SIGKILL)
                    break
                sched.poll()
                held: list[Task] = []
                while sched.runq and len(live) < CPUS:
                    t = sched.runq.popleft()
                    if t.state is not runnable or t in started:
                        continue
                    if any(o.mm is t.mm for o in live.values()):
                        # Threads of one address space take turns: the stub's
                        # batch reply page and fault altstack are used only
                        # while none of its threads runs (the guest can write
                        # them), and tasks that share the stub with their own
                        # fd tables (CLONE_VM, vfork) have their files
                        # installed at the same host fd numbers.
                        held.append(t)
                        continue
                    if t.blocked_call is not None:
                        self._resume_blocked(t)
                        if self._halted:  # its call ended a pipe's native mode
                            self._drain_halted()
                        if t.state is not runnable:
                            continue
                    if t.pending.mask or t.proc.shared_pending.mask or t.restart_nr is not None:
                        signals.deliver(t)
                        if t.state is not runnable:
                            continue
                    self.current = t
                    ex = cpu.launch(t.ctx, t.mm.space)
                    if ex is None:
                        live[t.ctx] = t
                        started[t] = time.perf_counter()
                        continue
                    self._handle(t, ex)
                    self._stop_dirty()
                    if t.state is runnable:
                        sched.runq.append(t)
                sched.runq.extendleft(reversed(held))
                if self._halted:
                    self._drain_halted()
                    continue
                if not live:
                    t = sched.next()
                    if self.pause_requested:
                        if t is not None:
                            sched.runq.appendleft(t)
                        return None
                    if t is None:
                        if self.deadline is not None and time.monotonic() >= self.deadline:
                            continue
                        log.warning("every guest thread is blocked forever: ending the sandbox")
                        self.kill_all(F.SIGKILL)
                        break
                    sched.runq.appendleft(t)
                    continue
                timeout = sched.timeout()
                oldest = None
                if sched.runq:  # every cpu busy and more to run: timeslices
                    oldest = min(live.values(), key=started.__getitem__)
                    left = started[oldest] + TIMESLICE - time.perf_counter()
                    timeout = left if timeout is None else min(timeout, left)
                ctx, ex = cpu.wait_any(timeout, sched.host_fd(), ready)
                if ctx is None or ex is None:
                    sched.poll_host()  # what woke us, a wakeup() included (drained)
                    if oldest is not None and oldest not in kicked and \
                            time.perf_counter() >= started[oldest] + TIMESLICE:
                        kicked.add(oldest)
                        cpu.interrupt_live(oldest.ctx)
                    continue
                t = live.pop(ctx, None)
                if t is None:
                    continue
                t0 = started.pop(t, None)
                kicked.discard(t)
                t1 = time.perf_counter()
                if t0 is not None:
                    t.utime += t1 - t0
                    t.proc.user_time += t1 - t0
                self.current = t
                kind = ex.kind  # the cpu reuses its Exit
                self._handle(t, ex)
                self._stop_dirty()
                for octx, other in list(live.items()):
                    if other.state is State.DEAD:
                        self._unlaunch(other)  # exit_group, exec: its stub is gone or going
                        cpu.forget(octx)
                    elif other.state is not runnable or other.proc.state is State.STOPPED or \
                            other.pending.mask or other.proc.shared_pending.mask:
                        if other not in kicked:  # as Linux's signal_wake_up
                            kicked.add(other)
                            cpu.interrupt_live(other.ctx)
                if t.state is runnable:
                    if kind == ExitKind.INTERRUPTED or sched.runq:
                        sched.requeue(t)  # its turn is over, or another waits
                    else:
                        sched.runq.appendleft(t)
        finally:
            for t in list(live.values()):
                self._leave_native(t)
            self._drain_halted()  # their calls are made now, not lost
            for ctx in list(live):
                cpu.forget(ctx)
            live.clear()
            self.live_tasks = None
        assert self.init is not None
        return self.init.exit_code if self.init.exit_code is not None else 0

    def _unlaunch(self, t: Task) -> bool:
        """Take ``t`` out of the concurrent loop's books; whether it was in."""
        live = self.live_tasks
        if not live or live.get(t.ctx) is not t:
            return False
        del live[t.ctx]
        self._started.pop(t, None)
        self._kicked.discard(t)
        return True

    def _leave_native(self, t: Task) -> None:
        """``t``'s pipe (if in native mode) leaves it (cove.kernel.nativemode)."""
        if t.native_mode is not None:
            from cove.kernel.nativemode import leave

            leave(self.native_io, t.native_mode)  # type: ignore[arg-type]

    def _stop_dirty(self) -> None:
        """Map changes for a running process (another's call made them: a
        truncated shared file, say): it stops now, before a frame the North
        freed can go elsewhere, and its next launch applies them while none
        of its threads runs. Then the events of tasks ``stop_live`` stopped."""
        live = self.live_tasks or {}
        for ctx in self.cpu.dirty_live():
            t = live.get(ctx)
            if t is None or not self._unlaunch(t):
                continue  # stopped meanwhile (by leaving native mode): in _halted
            self._leave_native(t)  # its pages may be a rule's buffer
            ex = self.cpu.halt_one(ctx)
            if ex is not None:
                self._handle(t, ex)
            if t.state is State.RUNNABLE:
                self.sched.requeue(t)
        self._drain_halted()

    def _drain_halted(self) -> None:
        """Handle the events of tasks ``stop_live`` stopped."""
        halted = self._halted
        while halted:
            t, ex = halted.pop(0)
            if t.state is not State.DEAD:
                self._handle(t, ex)
            if t.state is State.RUNNABLE:
                self.sched.requeue(t)

    def stop_live(self, t: Task) -> None:
        """Stop ``t`` now if it is in the guest (the concurrent loop); its
        event is handled right after the current one (``_stop_dirty``)."""
        if not self._unlaunch(t):
            return
        ex = self.cpu.halt_one(t.ctx)  # type: ignore[attr-defined]
        if ex is not None:
            self._halted.append((t, ex.copy()))
        elif t.state is State.RUNNABLE:
            self.sched.requeue(t)

    def _halt_live(self, live: dict[Any, Task]) -> None:
        """Stop every task in the guest (a pause): each is consistent and runnable again."""
        # All out of ``live`` first: handling one may end a pipe's native mode,
        # which stops the other end (stop_live) and must not take its exit.
        stopped = [(t, ex) for ctx, ex in self.cpu.halt_live()
                   if (t := live.get(ctx)) is not None and self._unlaunch(t)]
        for t, ex in stopped:
            self._handle(t, ex)
            if t.state is State.RUNNABLE:
                self.sched.runq.append(t)
        self._drain_halted()

    def _handle(self, t: Task, ex: Exit) -> None:
        cut = getattr(t.ctx, "cut_short", -1) if ex.kind == ExitKind.INTERRUPTED else -1
        if cut >= 0:
            # A native call a kick stopped before it moved a byte: -EINTR now,
            # and the call restarts unless a handler without SA_RESTART runs
            # (Linux's ERESTARTSYS; signals.deliver decides as for the North's).
            t.ctx.cut_short = -1  # type: ignore[attr-defined]
            t.restart_nr = cut
            if self.native_io is not None:
                self.native_io.cut_short += 1
        if t.native_mode is not None and ex.kind == ExitKind.SYSCALL:
            from cove.kernel.nativemode import keeps

            if not keeps(t.ctx.regs.rax):  # a call that could change what the rule relies on
                ex = ex.copy()  # leaving stops the other end: the cpu reuses its Exit
                self._leave_native(t)
        kind = ex.kind
        if kind == ExitKind.SYSCALL:
            self.syscall(t)
        elif kind == ExitKind.FAULT:
            self.fault(t, ex)
        elif kind != ExitKind.INTERRUPTED:
            log.error("guest thread %d halted: %s", t.tid, ex.detail)
            self.exit_group(t.proc, F.SIGSEGV)

    # --- syscalls -----------------------------------------------------------
    def syscall(self, t: Task) -> None:
        regs = t.ctx.regs
        nr = regs.rax
        raw = (regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9)
        sc = TABLE.get(nr)
        if sc is None or sc.handler is None:
            if nr not in self._enosys_logged:
                self._enosys_logged.add(nr)
                name = sc.name if sc else f"#{nr}"
                log.info("unimplemented syscall %s: ENOSYS", name)
            regs.rax = -E.ENOSYS & MASK64
            if self.trace:
                self._trace(t, sc.name if sc else f"#{nr}", raw, -E.ENOSYS, 0.0)
            return
        nio = self.native_io
        if nio is not None:
            carry = getattr(t.ctx, "syscall_carry", 0)
            if carry:
                # The rest of a native write a kick cut short (UserlandCpu._cut_short).
                t.ctx.syscall_carry = 0  # type: ignore[attr-defined]
                if t.proc.state is State.STOPPED or (
                        (t.pending.mask or t.proc.shared_pending.mask)
                        and signals.has_deliverable(t)):
                    regs.rax = carry  # a signal or a stop ends it there, as on Linux
                    return
                t.write_carry = carry
            if t.write_carry and nr == 1:  # write: from where the native part stopped
                c = t.write_carry
                raw = (raw[0], raw[1] + c, raw[2] - c, raw[3], raw[4], raw[5])
        if nio is not None and nio.deferred is not None:
            queue = nio.claim(t, sc.nr, raw)
            if queue is not False and (queue is not True or self.sched.runq):
                # The platform's native path found this call would sleep on
                # ``queue`` (as its handler would), or preempted it at its entry
                # so that the task its last call woke runs first
                # (cove.kernel.hostpipe: NativePipes.native_rw); either way it
                # is made again, as a woken call is, when t next runs.
                t.blocked_call = (sc, raw)
                if queue is not True:
                    self._sleep(t, Blocked(queue))
                else:
                    t.blocked_on = None
                    t.interrupted = t.timed_out = False
                return
        self._invoke(t, sc, raw)

    def _invoke(self, t: Task, sc: Syscall, raw: tuple[int, ...]) -> None:
        start = time.perf_counter() if self.trace else 0.0
        self.current = t
        args: list[Any] = []
        try:
            if sc.decoders:
                args = [dec(t, r) for dec, r in zip(sc.decoders, raw, strict=False)]
                result = sc.handler(t, *args)  # type: ignore[misc]
            else:
                result = sc.handler(t)  # type: ignore[misc]
        except Errno as e:
            result = -e.errno
            if getattr(e, "signo", 0):  # EPIPE's SIGPIPE (cove.kernel.sigerrno)
                signals.send_task(t, e.signo)  # type: ignore[attr-defined]
        except Blocked as b:
            t.blocked_call = (sc, raw)
            self._sleep(t, b)
            return
        except Exception:  # a bug in cove must never take the supervisor down
            import traceback

            log.error("internal error in %s:\n%s", sc.name, traceback.format_exc())
            result = -E.ENOSYS
        t.blocked_call = None
        if result is NORETURN or t.state is State.DEAD:
            # execve, rt_sigreturn, exit: the registers are already the new ones.
            if self.trace:
                self._trace(t, sc.name, args, 0, time.perf_counter() - start)
            return
        if t.write_carry:  # bytes a native write moved before the North made the rest
            result = result + t.write_carry if result >= 0 else t.write_carry
            t.write_carry = 0
        t.ctx.regs.rax = result & MASK64
        if self.trace:
            self._trace(t, sc.name, args, result, time.perf_counter() - start)

    def _sleep(self, t: Task, b: Blocked) -> None:
        """Block ``t``; a signal already pending interrupts the sleep at once,
        as Linux's interruptible waits check before they sleep (a call the
        concurrent loop received just as the signal came, or a native call a
        kick cut short, starts with one)."""
        if (t.pending.mask or t.proc.shared_pending.mask) and b.interruptible and \
                signals.has_deliverable(t):
            # Woken by the signal at once: EINTR or a restart, as for a sleeper
            # the signal wakes (t stays runnable; the caller's loop runs it on).
            t.blocked_on = None
            t.woken = t.interrupted = True
            t.timed_out = False
            self._resume_blocked(t)
            return
        self.sched.block(t, b)

    def _resume_blocked(self, t: Task) -> None:
        assert t.blocked_call is not None
        sc, raw = t.blocked_call
        if t.timed_out:
            result = t.blocked_on.on_timeout if t.blocked_on else 0
            t.blocked_call = None
            t.ctx.regs.rax = result & MASK64
            if t.saved_sigmask is not None:
                # ppoll/pselect6/epoll_pwait's temporary mask ends with the call
                # (only an EINTR that runs a handler keeps it for the frame).
                t.sigmask, t.saved_sigmask = t.saved_sigmask, None
            return
        if t.interrupted and signals.has_deliverable(t):
            # ERESTARTSYS: signals.deliver turns this into -EINTR or a restart
            # (sigframe checks sc.restartable against the handler's SA_RESTART).
            t.blocked_call = None
            if t.write_carry:  # a write that moved bytes ends with their count
                t.ctx.regs.rax, t.write_carry = t.write_carry, 0
                return
            t.ctx.regs.rax = -E.EINTR & MASK64
            t.restart_nr = sc.nr
            if sc.on_interrupt is not None:
                self._on_interrupt(t, sc, raw)
            return
        nio = self.native_io
        if nio is not None and nio.resume(t, sc.nr, raw):
            # The platform offers the unanswered call to its native path again,
            # as if just made (cove.kernel.hostpipe: NativePipes.resume).
            t.blocked_call = None
            return
        self._invoke(t, sc, raw)

    def _on_interrupt(self, t: Task, sc: Syscall, raw: tuple[int, ...]) -> None:
        """Let an interrupted call record partial results (nanosleep's rem);
        an ``Errno`` it raises replaces EINTR, as Linux's EFAULT on rem does."""
        assert sc.on_interrupt is not None
        try:
            args = [dec(t, r) for dec, r in zip(sc.decoders, raw, strict=False)]
            sc.on_interrupt(t, *args)
        except Errno as e:
            t.ctx.regs.rax = -e.errno & MASK64
            t.restart_nr = None
        except Exception:
            import traceback

            log.error("internal error in %s (interrupted):\n%s", sc.name, traceback.format_exc())

    def _trace(self, t: Task, name: str, args: Any, result: Any, dt: float) -> None:
        assert self.trace is not None
        import json  # only --trace needs it

        rec = {"pid": t.pid, "tid": t.tid, "syscall": name,
               "args": [a if isinstance(a, (int, str)) else repr(a) for a in args],
               "result": result, "us": round(dt * 1e6, 1)}
        self.trace.write(json.dumps(rec) + "\n")

    # --- faults -------------------------------------------------------------
    def fault(self, t: Task, ex: Exit) -> None:
        if ex.vector == PF:
            write = bool(ex.error_code & 2)
            execute = bool(ex.error_code & 16)
            bad = t.mm.handle_fault(ex.cr2, write, execute)
            if bad is None:
                return
            signals.force_fault(t, bad.signo, bad.code, bad.addr, err=ex.error_code)
            return
        signo, code = FAULT_SIGNALS.get(ex.vector, (F.SIGSEGV, 0x80))
        addr = t.ctx.regs.rip if signo != F.SIGSEGV else 0
        signals.force_fault(t, signo, code, addr, trapno=ex.vector, err=ex.error_code)

    # --- exit -----------------------------------------------------------------
    def exit_task(self, t: Task, code: int) -> None:
        """One thread ends (exit); the last one ends the process."""
        from cove.kernel import threads

        threads.on_thread_exit(t)
        t.state = State.DEAD
        self.sched.remove(t)
        proc = t.proc
        if t in proc.threads:
            proc.threads.remove(t)
        self.tasks.pop(t.tid, None)
        if not proc.threads and proc.alive:
            self._process_exit(proc, (code & 0xFF) << 8)

    def exit_group(self, proc: Process, status: int) -> None:
        """End every thread of ``proc`` with wait status ``status``
        (``code << 8`` for exit, the signal number (| 0x80 for a core) when killed)."""
        if not proc.alive:
            return
        from cove.kernel import threads

        for th in list(proc.threads):
            threads.on_thread_exit(th)
            th.state = State.DEAD
            self.sched.remove(th)
            self.tasks.pop(th.tid, None)
        proc.threads.clear()
        self._process_exit(proc, status)

    def _process_exit(self, proc: Process, status: int) -> None:
        from cove.kernel import process

        status = process.core_status(proc, status)  # 0x80 only when a core "was dumped"
        proc.exit_code = status
        proc.state = State.ZOMBIE
        proc.maxrss = max(proc.maxrss, proc.mm.resident_pages() * 4)  # KiB, before release
        # Memory goes now (files went with each thread); the zombie keeps pid and status.
        # (process.release_mm: a map shared by vfork stays with its other user.)
        process.release_mm(proc)
        reaper = self._reaper(proc)
        for child in proc.children:
            child.parent = reaper
            if child.pdeathsig and child.alive:
                signals.send_process(child, child.pdeathsig)
            if child.parent is not None:
                child.parent.children.append(child)
                process.adopted(child)  # SIGCHLD and a wake-up for a zombie orphan
        proc.children = []
        if proc is self.init:
            self.exit_status = status
            self.kill_all(F.SIGKILL)
            return
        parent = proc.parent
        if parent is not None and parent.alive:
            signals.notify_parent(proc)
            parent.child_wait.notify()
            process.child_exited(proc)  # auto-reaped if the parent ignores SIGCHLD
        elif parent is None:
            self.processes.pop(proc.pid, None)

    def _reaper(self, proc: Process) -> Process | None:
        """Who adopts ``proc``'s children: the nearest live ancestor marked
        PR_SET_CHILD_SUBREAPER, else init."""
        p = proc.parent
        while p is not None and p is not self.init:
            if p.child_subreaper and p.alive:
                return p
            p = p.parent
        return self.init if self.init is not proc else None

    def reap(self, proc: Process) -> None:
        """wait4 collected a zombie: forget it."""
        self.processes.pop(proc.pid, None)
        parent = proc.parent
        if parent is not None:
            # Its times (and its waited-for children's) become the parent's
            # RUSAGE_CHILDREN, as Linux does in wait_task_zombie.
            parent.child_user_time += proc.user_time + proc.child_user_time
            parent.child_sys_time += proc.sys_time + proc.child_sys_time
            parent.child_maxrss = max(parent.child_maxrss, proc.maxrss, proc.child_maxrss)
        if proc.parent is not None and proc in proc.parent.children:
            proc.parent.children.remove(proc)

    def kill_all(self, signo: int) -> None:
        for proc in list(self.processes.values()):
            if proc.alive and proc is not self.init:
                self.exit_group(proc, signo)
        if self.init is not None and self.init.alive:
            self.exit_group(self.init, signo)


def status_to_exit(status: int) -> int:
    """A wait status as a shell reports it: the exit code, or 128 + signal."""
    if status & 0x7F:
        return 128 + (status & 0x7F)
    return (status >> 8) & 0xFF
