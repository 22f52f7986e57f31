"""The userland platform: guest threads are host threads of ptrace'd stub
processes under a seccomp filter; no KVM needed.

Design (see also stub.py, aspace.py, context.py, cpu.py, threadops.py,
tracer.py):
- one stub process per guest address space. The first, the "anchor", is
  exec'd from the small static program stub.c (built with gcc on first use),
  sets up its defences and leads the process group; every guest address
  space gets a fork of it (it never runs a guest itself), or a spare: the
  stub of a destroyed address space, scrubbed of everything its guest left
  (``retire``), which saves a fork, a thread and a filter per exec and exit;
- a guest thread is a context bound to a host thread of its address space's
  stub (one host thread per guest thread, created on demand, reused after
  its context is dropped), so switching guest threads costs nothing;
- guest memory is the PhysMem memfd mapped into the stub at guest addresses,
  by the stub's injector thread serving batches of mmap/munmap (stub.c);
- a guest syscall arrives either as a seccomp user notification (answered
  with the result, no ptrace) or as a ptrace seccomp stop (calls that need
  every register); faults are the stub's fault signals, read with ptrace;
- every ptrace request is made by the platform's tracer thread
  (``Tracer.call``), so the North may use the platform from any host thread.
  The North's run loop itself runs there (``run_owned``, used by
  ``cove.guestproc.run_kernel``), so on the hot path each request is a
  direct call; from other threads each costs a trip to the tracer thread
  (``_x`` runs there). Cpus on several host threads work but run one at a
  time (``run_lock``).
"""

from __future__ import annotations

import ctypes
import os
import struct
import threading
import weakref
from collections.abc import Callable

from cove.platform.base import Capabilities, PlatformError, PlatformUnavailable, UserRegs
from cove.platform.userland import _sys as S
from cove.platform.userland import bpf, build
from cove.platform.userland import layout as L
from cove.platform.userland.aspace import UserlandAddressSpace
from cove.platform.userland.context import (
    UserlandContext,
)
from cove.platform.userland.fastpath import FastPath
from cove.platform.userland.stub import State, StubProcess, StubThread
from cove.platform.userland.threadops import ThreadOps
from cove.platform.userland.tracer import Tracer

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from typing import Any, TypeVar

    from cove.kernel.physmem import PhysMem
    from cove.platform.base import Exit, NativeIo
    from cove.platform.userland.bpf import Rule
    from cove.platform.userland.cpu import UserlandCpu

    T = TypeVar("T")

# Spare stubs kept for reuse (retire), and the most threads one may have: a
# shell's fork+exec loop needs one; each holds a few host resources.
SPARES, SPARE_THREADS = 2, 16
# Threads made per stub for native rules (a pipe in native mode, bpf.py): beyond
# that a context with rules runs on an ordinary thread (its calls notify).
RULE_THREADS = 4


def userland_unavailable_reason() -> str | None:
    """None if this host can run the userland platform, else why not (cheap
    checks; the first stub spawned makes the final decision)."""
    host = os.uname()  # not the platform module: ~1.5 ms to import at every start
    if host.sysname != "Linux" or host.machine not in ("x86_64", "AMD64"):
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


class UserlandPlatform(ThreadOps):
    """See ``cove.platform.base.Platform`` and the module doc."""

    name = "userland"

    def __init__(self, physmem: PhysMem) -> None:
        reason = userland_unavailable_reason()
        if reason:
            raise PlatformUnavailable(reason)
        self.physmem = physmem
        self.stub_path = str(build.stub_path())
        self.filter = bpf.guest_filter()
        self.fastpath = FastPath(physmem.mem)  # native pipe I/O (fastpath.py)
        self._procs: set[StubProcess] = set()
        self._spares: list[StubProcess] = []  # scrubbed stubs of destroyed address spaces
        self._cpus: list[UserlandCpu] = []
        self._tls = threading.local()
        # One cpu runs at a time (the North uses one): the waiter's wakeups and
        # the tracer's synchronous waits then never race between cpus.
        self.run_lock = threading.Lock()
        self._init_buffers()
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
            native_pipes=True,
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
        self._init_xsave(size)

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
        for proc in [*self._procs, *self._spares, *([self.anchor] if self.anchor else [])]:
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
        proc = self.tracer.call(self._new_process, anchor)
        self._procs.add(proc)
        return proc

    def _new_process(self, anchor: StubProcess) -> StubProcess:
        """A scrubbed spare if there is one (see ``retire``), else a fork of the anchor."""
        while self._spares:
            proc = self._spares.pop()
            try:
                self._detach_all(proc, strict=True)  # contexts it kept after retire
                return proc
            except PlatformError:
                proc.kill()
        return anchor.fork()

    def batch(self, proc: StubProcess, ops: list[tuple[int, ...]]) -> None:
        """Apply an address space's changes (``UserlandAddressSpace.prepare``)."""
        self.tracer.call(self._batch, proc, ops)

    def _batch(self, proc: StubProcess, ops: list[tuple[int, ...]]) -> None:
        try:
            proc.batch(ops)
        except PlatformError as e:
            # e.g. vm.max_map_count reached: the guest cannot go on.
            raise PlatformError(f"userland address space: {e}") from None

    def retire(self, proc: StubProcess) -> None:
        """An address space is destroyed. Its stub is scrubbed and kept as a
        spare for the next address space (a fork's or an exec's, moments
        later: no new process, thread or filter), or killed when it cannot
        be kept. Contexts still bound to its threads keep their state
        (registers, FPU): a spare's threads hold it until the context is
        bound elsewhere or the spare is reused."""
        self.tracer.call(self._retire, proc)
        self._procs.discard(proc)

    def _retire(self, proc: StubProcess) -> None:
        if self._keepable(proc):
            try:
                proc.scrub()
                self._spares.append(proc)
                return
            except PlatformError:
                pass  # killed below
        self._detach_all(proc, strict=False)
        proc.kill()

    def _keepable(self, proc: StubProcess) -> bool:
        return (len(self._spares) < SPARES and proc.alive and proc is not self.anchor
                and bool(proc.defences & L.OK_CLOSE_RANGE) and len(proc.threads) <= SPARE_THREADS
                and all(th.state is State.STOPPED or th.state is State.NOTIF
                        for th in proc.threads.values()))

    def _detach_all(self, proc: StubProcess, strict: bool) -> None:
        """Move the state of every context bound to ``proc``'s threads into the
        context. ``strict``: a failure raises (else the context keeps what it had)."""
        for th in list(proc.threads.values()):
            ctx = th.ctx() if th.ctx is not None else None
            if ctx is not None:
                try:
                    self._detach(ctx)
                except PlatformError:
                    if strict:
                        raise

    # --- binding contexts to threads ------------------------------------------------
    def bind(self, proc: StubProcess, ctx: UserlandContext,
             rules: tuple[Rule, ...] = ()) -> StubThread:
        """Give ``ctx`` a stopped thread of ``proc`` (reused or new) whose
        filter lets ``rules`` run natively (bpf.py)."""
        return self.tracer.call(self._bind, proc, ctx, rules)

    def _bind(self, proc: StubProcess, ctx: UserlandContext,
              rules: tuple[Rule, ...] = ()) -> StubThread:
        if ctx._thread is not None:
            self._detach(ctx)
        if rules and sum(1 for t in proc.threads.values() if t.rules) >= RULE_THREADS and \
                not any(t.rules == rules for t in (*proc.orphans, *proc.idle)):
            # Enough threads made for rules: this stub offers no more (fastpath).
            rules = ctx.native_rules = ()
            proc.rules_full = True
        th = None
        for cand in [t for t in proc.orphans if t.rules == rules]:
            proc.orphans.remove(cand)
            if cand.state is State.NOTIF:
                try:
                    self._stop(cand)
                except PlatformError:
                    continue
            if cand.state is State.STOPPED:
                th = cand
                break
        if th is None:
            idle = [t for t in proc.idle if t.rules == rules]
            if idle:
                th = idle[-1]
                proc.idle.remove(th)
            else:
                th = proc.new_thread(rules)
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

    # --- Platform contract ----------------------------------------------------------
    def set_native_io(self, io: NativeIo | None) -> None:
        """The North's answer to which guest pipe calls may run natively
        (Capabilities.native_pipes; see fastpath.py)."""
        self.fastpath.io = io

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

    def run_owned(self, fn: Callable[..., T], *args: Any, interrupt: Callable[[], None]) -> T:
        """Run the North's loop ``fn(*args)`` on the thread that owns every stub,
        so its ptrace requests need no hand-off; the caller waits (see
        ``Tracer.run_owned`` and ``cove.guestproc.run_kernel``)."""
        return self.tracer.run_owned(fn, *args, interrupt=interrupt)

    def on_owner_thread(self) -> bool:
        """Whether the calling thread is the one ``run_owned`` runs on."""
        return self.tracer.owner

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
        procs = [*self._procs, *self._spares, *([self.anchor] if self.anchor is not None else [])]
        self._procs.clear()
        self._spares.clear()
        self.anchor = None
        if procs:
            self.tracer.call(lambda: [p.kill() for p in procs])
        self.tracer.close()
