"""Stub processes and their threads: spawning, attaching, injecting syscalls.

One ``StubProcess`` per guest address space: the anchor is exec'd from the
stub program, the others are forks of it. Its main thread, the injector,
never runs guest code: the supervisor sets its registers to a syscall (or a
batch of them, read from the mailbox) at the runtime page, continues it, and
reaps the int3 stop that follows. Guest threads (``StubThread``) are clones of
the injector; each installs the guest seccomp filter on itself (its own
listener) before the supervisor ever loads guest registers into it.

Every call here makes ptrace requests, so it must run on the tracer thread
(``Tracer.call``): ptrace binds tracees to the thread that attached them.
"""

from __future__ import annotations

import ctypes
import enum
import errno as _errno
import fcntl
import os
import signal
import struct

from cove.platform.base import PlatformError, PlatformUnavailable
from cove.platform.userland import _sys as S
from cove.platform.userland import layout as L

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    import select

    from cove.kernel.physmem import PhysMem
    from cove.platform.userland.bpf import Rule
    from cove.platform.userland.tracer import Tracer

MASK64 = (1 << 64) - 1
SIGTRAP = signal.SIGTRAP
# CLONE_VM FS FILES SIGHAND THREAD SYSVSEM: a thread sharing everything with the injector
CLONE_THREAD_FLAGS = 0x100 | 0x200 | 0x400 | 0x800 | 0x10000 | 0x40000
NR_close, NR_mmap, NR_munmap, NR_rt_sigaction, NR_sigaltstack = 3, 9, 11, 13, 131
NR_clone, NR_seccomp, NR_close_range = 56, 317, 436
_REGS_SIZE = ctypes.sizeof(S.user_regs_struct)
_SIGNALS = sorted(set(signal.valid_signals()) - {signal.SIGKILL, signal.SIGSTOP})
_ZERO_PAGE = bytes(4096)
_U32, _U64, _REPLY = struct.Struct("<I"), struct.Struct("<Q"), struct.Struct("<QQ")
_FUTEX_TIMEOUT = S.timespec(0, 100_000_000)  # then check on the injector, and wait again
_FUTEX_TIMEOUT_ADDR = ctypes.addressof(_FUTEX_TIMEOUT)


class State(enum.Enum):
    STOPPED = 1  # in a ptrace stop: registers readable, resumed with PTRACE_CONT
    NOTIF = 2  # blocked in a seccomp notification we received (reply resumes it)
    RUNNING = 3
    DEAD = 4


class StubThread:
    """A host thread of a stub process that runs guest code."""

    __slots__ = ("__weakref__", "commit", "ctx", "lfd", "notif_id", "poller", "proc", "rules",
                 "state", "tid")

    def __init__(self, proc: StubProcess, tid: int, lfd: int) -> None:
        self.proc = proc
        self.tid = tid
        self.lfd = lfd  # our copy of its seccomp listener
        self.state = State.STOPPED
        self.notif_id = 0
        # A native call's grant to commit again at the thread's next event,
        # when its bytes have surely moved (the cpu's concurrent mode).
        self.commit: object = None
        self.ctx: object | None = None  # the context loaded into it, if any
        self.poller: select.poll | None = None  # built by the cpu that runs it
        self.rules: tuple[Rule, ...] = ()  # what its filter lets run natively (bpf.py)


def _status(st: int) -> str:
    if os.WIFEXITED(st):
        return f"exited {os.WEXITSTATUS(st)}"
    if os.WIFSIGNALED(st):
        return f"killed by signal {os.WTERMSIG(st)}"
    if os.WIFSTOPPED(st):
        return f"stopped by signal {os.WSTOPSIG(st)} event {st >> 16}"
    return f"status {st:#x}"


def _high_dup(fd: int) -> int:
    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 100)


class StubProcess:
    """One stub process (see module doc). The first is spawned from the stub
    program (``spawn``) and serves as the template: every guest address
    space is a fork of it (``fork``), which shares its namespaces and
    settings and costs a few stops instead of an exec and namespace setup."""

    def __init__(self, phys: PhysMem, tracer: Tracer) -> None:
        self.phys = phys
        self.tracer = tracer
        self.threads: dict[int, StubThread] = {}
        self.idle: list[StubThread] = []  # stopped threads with no context
        self.orphans: list[StubThread] = []  # threads whose context was dropped
        self.alive = False
        self.pid = -1
        self.pidfd = -1
        self.mailbox = -1
        self.own_mailbox = False
        self.altstack: list[int] = []
        self.defences = 0
        self.memfd = -1  # the guest-memory memfd's fd number in the stub (layout.py)
        self.generation = 0  # how many guests have used it before (scrub)
        self.reply = -1  # the reply page's frame (layout.py)
        self.can_serve = False  # its injector may run the batch server (forks of the anchor)
        self.serving = False  # the injector runs the batch server (else it is ptrace-stopped)
        self._seq = 0  # the server's last request number
        self._new_tid = 0
        self._regs = S.user_regs_struct()
        self._regs_addr = ctypes.addressof(self._regs)
        self.template = S.user_regs_struct()
        self.filter_prog = b""  # the guest filter every thread installs (bpf.guest_filter)
        self.rules_full = False  # RULE_THREADS threads with rules made: no native mode

    @classmethod
    def spawn(cls, path: str, phys: PhysMem, tracer: Tracer, filter_prog: bytes) -> StubProcess:
        """Start the stub program (it leads a new process group) and set it up."""
        self = cls(phys, tracer)
        self.pid = self._spawn(path)
        self.pidfd = S.pidfd_open(self.pid)
        self.alive = True
        try:
            self._first_stop()
            self._setup(filter_prog)
        except BaseException:
            self.kill()
            raise
        return self

    def fork(self) -> StubProcess:
        """A new stub process: a fork of this one with its own mailbox and
        altstack frames (nothing of one guest process is visible to another)."""
        child = StubProcess(self.phys, self.tracer)
        self._new_tid = 0
        pid = self.inject(NR_clone, signal.SIGCHLD, 0, 0, 0, 0)  # fork(): no shared memory
        if pid <= 0 or pid != self._new_tid:
            raise PlatformError(f"stub fork failed: {pid}")
        child.pid = pid
        child.alive = True
        try:
            child.pidfd = S.pidfd_open(pid)
            st = self.tracer.wait(pid)
            if not (os.WIFSTOPPED(st) and st >> 16 == S.PTRACE_EVENT_STOP):
                raise PlatformError(f"forked stub {pid}: {_status(st)}")
            ctypes.memmove(ctypes.addressof(child.template), ctypes.addressof(self.template),
                           _REGS_SIZE)
            child.defences = self.defences
            child.memfd = self.memfd
            child.filter_prog = self.filter_prog
            child._own_pages(self.mailbox)
            # The batch server needs the supervisor's view of guest memory to
            # be the stub's (a private snapshot view is not).
            child.can_serve = not self.phys.private
        except BaseException:
            child.kill()
            raise
        return child

    # --- birth ------------------------------------------------------------------
    def _spawn(self, path: str) -> int:
        r, w = os.pipe()
        mem, rd = _high_dup(self.phys.fd), _high_dup(r)
        os.close(r)
        try:
            pid = os.posix_spawn(
                path, ["cove-stub"], {},
                file_actions=[(os.POSIX_SPAWN_DUP2, mem, 3), (os.POSIX_SPAWN_DUP2, rd, 4)],
                setpgroup=0, setsigdef=_SIGNALS, setsigmask=(),
            )  # fmt: skip
        except OSError as e:
            os.close(w)
            raise PlatformUnavailable(f"cannot start the userland stub {path}: {e}") from None
        finally:
            os.close(mem)
            os.close(rd)
        opts = (S.PTRACE_O_TRACECLONE | S.PTRACE_O_TRACEFORK | S.PTRACE_O_TRACESECCOMP
                | S.PTRACE_O_EXITKILL)
        if S.raw_ptrace(S.PTRACE_SEIZE, pid, 0, opts) < 0:
            e = S.errno()
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(w)
            raise PlatformUnavailable(f"ptrace(PTRACE_SEIZE) of the stub failed: {os.strerror(e)}"
                                      " (is ptrace forbidden here, e.g. by a seccomp policy or "
                                      "kernel.yama.ptrace_scope=3?)")
        os.write(w, b"g")  # the stub waits for this before it does anything else
        os.close(w)
        return pid

    def _first_stop(self) -> None:
        st = self.tracer.wait(self.pid)
        if not (os.WIFSTOPPED(st) and os.WSTOPSIG(st) == SIGTRAP and st >> 16 == 0):
            why = _status(st)
            if os.WIFEXITED(st) and os.WEXITSTATUS(st) in (120, 121):
                why += (f": it cannot map its page at {L.RT_ADDR:#x} "
                        "(vm.mmap_min_addr must be <= 4096)")
            self.alive = os.WIFSTOPPED(st)
            raise PlatformUnavailable(f"userland stub failed to start: {why}")
        S.ptrace(S.PTRACE_GETREGS, self.pid, 0, ctypes.addressof(self.template))
        if self.template.rip != L.PARK + 1:
            raise PlatformError(f"userland stub stopped at {self.template.rip:#x}, not its park")
        self.defences = self.template.rbx
        self.memfd = self.template.r12

    def _setup(self, filter_prog: bytes) -> None:
        self.mailbox = self.phys.alloc()
        self.own_mailbox = True
        self.filter_prog = filter_prog
        self._put_filter(filter_prog)
        base = self.mailbox << 12
        mem = self.phys.mem
        # struct kernel_sigaction { handler, flags, restorer, mask }
        struct.pack_into("<QQQQ", mem, base + L.SIGACT_OFF, L.FAULT_HANDLER,
                         L.SA_SIGINFO | L.SA_ONSTACK | L.SA_RESTORER | L.SA_NODEFER,
                         L.FAULT_HANDLER, 0)
        # stack_t { ss_sp, ss_flags, ss_size }
        struct.pack_into("<QiiQ", mem, base + L.STACK_T_OFF, L.ALTSTACK, 0, 0, L.ALTSTACK_SIZE)
        mfd = self.memfd
        # R, SHARED|FIXED
        self.inject(NR_mmap, L.MAILBOX, 4096, 1, 0x11, mfd, base, expect=L.MAILBOX)
        self.altstack = [self.phys.alloc() for _ in range(L.ALTSTACK_SIZE >> 12)]
        for i, f in enumerate(self.altstack):
            va = L.ALTSTACK + (i << 12)
            self.inject(NR_mmap, va, 4096, 3, 0x11, mfd, f << 12, expect=va)  # RW, SHARED|FIXED
        self.reply = self.phys.alloc()
        self.inject(NR_mmap, L.REPLY, 4096, 3, 0x11, mfd, self.reply << 12, expect=L.REPLY)
        self.inject(NR_rt_sigaction, signal.SIGSEGV, L.MAILBOX + L.SIGACT_OFF, 0, 8, expect=0)
        # Forks of this template are reaped by the host as soon as we have
        # seen them exit: SIGCHLD ignored (SIG_IGN; written in the batch area,
        # which is scratch space).
        struct.pack_into("<QQQQ", mem, base + L.BATCH_OFF, 1, 0, 0, 0)
        self.inject(NR_rt_sigaction, signal.SIGCHLD, L.MAILBOX + L.BATCH_OFF, 0, 8, expect=0)
        # Everything but the stub's own pages goes: this binary, stack, vdso, vvar.
        self.inject(NR_munmap, L.RESERVED_END, L.TASK_SIZE - L.RESERVED_END, expect=0)

    def _put_filter(self, prog: bytes) -> None:
        """The filter the next new thread installs, in the mailbox (read-only
        to the guest: only the supervisor writes it)."""
        if len(prog) // 8 > L.FILTER_MAX:
            raise PlatformError("guest seccomp filter too long for the mailbox")
        base = self.mailbox << 12
        mem = self.phys.mem
        mem[base + L.FILTER_OFF:base + L.FILTER_OFF + len(prog)] = prog
        # struct sock_fprog { unsigned short len; struct sock_filter *filter; }
        struct.pack_into("<QQ", mem, base + L.FPROG_OFF, len(prog) // 8,
                         L.MAILBOX + L.FILTER_OFF)

    def _own_pages(self, template_mailbox: int) -> None:
        """Right after a fork: give this process its own mailbox (a copy of the
        template's head: filter, sigaction, stack_t), reply page and altstack
        frames. The batch is read from the template's mailbox, still mapped
        here, and replaces it last."""
        self.mailbox = template_mailbox
        new = self.phys.alloc()
        head = template_mailbox << 12
        self.phys.mem[new << 12:(new << 12) + L.BATCH_OFF] = self.phys.mem[head:head + L.BATCH_OFF]
        self.altstack = [self.phys.alloc() for _ in range(L.ALTSTACK_SIZE >> 12)]
        self.reply = self.phys.alloc()
        ops = [(NR_mmap, L.ALTSTACK + (i << 12), 4096, 3, 0x11, self.memfd, f << 12)
               for i, f in enumerate(self.altstack)]
        ops.append((NR_mmap, L.REPLY, 4096, 3, 0x11, self.memfd, self.reply << 12))
        ops.append((NR_mmap, L.MAILBOX, 4096, 1, 0x11, self.memfd, new << 12))
        try:
            self.batch(ops)
        finally:
            self.mailbox, self.own_mailbox = new, True

    # --- the injector -----------------------------------------------------------
    def _run_injector(self) -> S.user_regs_struct:
        if self.serving:
            self._park()
        r, pid = self._regs, self.pid
        r.orig_rax = MASK64
        S.ptrace(S.PTRACE_SETREGS, pid, 0, self._regs_addr)
        S.ptrace(S.PTRACE_CONT, pid, 0, 0)
        while True:
            st = self.tracer.wait(pid)
            if os.WIFSTOPPED(st) and st >> 16 in (S.PTRACE_EVENT_CLONE, S.PTRACE_EVENT_FORK):
                msg = ctypes.c_ulong()
                S.ptrace(S.PTRACE_GETEVENTMSG, pid, 0, ctypes.addressof(msg))
                self._new_tid = msg.value
                S.ptrace(S.PTRACE_CONT, pid, 0, 0)
                continue
            if os.WIFSTOPPED(st) and os.WSTOPSIG(st) == SIGTRAP and st >> 16 == 0:
                break
            if os.WIFSTOPPED(st):  # anything else (a stray signal): suppress and go on
                S.ptrace(S.PTRACE_CONT, pid, 0, 0)
                continue
            self.alive = False
            raise PlatformError(f"userland stub {pid} died: {_status(st)}")
        S.ptrace(S.PTRACE_GETREGS, pid, 0, self._regs_addr)
        return r

    def _load_template(self) -> S.user_regs_struct:
        ctypes.memmove(self._regs_addr, ctypes.addressof(self.template), _REGS_SIZE)
        return self._regs

    def inject(self, nr: int, *args: int, expect: int | None = None) -> int:
        """Run one syscall in the injector; its (signed) result."""
        r = self._load_template()
        r.rip, r.rax = L.INJECT, nr
        for name, v in zip(("rdi", "rsi", "rdx", "r10", "r8", "r9"), args, strict=False):
            setattr(r, name, v & MASK64)
        res = ctypes.c_int64(self._run_injector().rax).value
        if expect is not None and res != expect:
            raise PlatformError(f"stub syscall {nr}{args} returned {res}")
        return res

    def batch(self, entries: list[tuple[int, ...]]) -> None:
        """Run syscalls (nr, a0..a5) in order, BATCH_MAX at a time: by the
        batch server if this stub has one, else in a ptrace stop. Raises
        PlatformError naming the first one that failed. The server is used
        only while no guest thread of this stub runs (see ``_served``)."""
        base = (self.mailbox << 12) + L.BATCH_OFF
        mem = self.phys.mem
        for start in range(0, len(entries), L.BATCH_MAX):
            chunk = entries[start:start + L.BATCH_MAX]
            for i, e in enumerate(chunk):
                L.BATCH_ENTRY.pack_into(mem, base + i * L.BATCH_ENTRY.size, *e)
            if (self.serving or (self.can_serve and self._serve())) and not any(
                    th.state is State.RUNNING for th in self.threads.values()):
                done, rax = self._served(len(chunk))
            else:
                r = self._load_template()
                r.rip, r.r12, r.r13 = L.BATCH, L.MAILBOX + L.BATCH_OFF, len(chunk)
                r = self._run_injector()
                done, rax = r.rbx, r.rax
            if done != len(chunk):
                bad = chunk[done] if done < len(chunk) else chunk[-1]
                err = -ctypes.c_int64(rax).value
                raise PlatformError(f"stub syscall {bad[0]}({', '.join(hex(a) for a in bad[1:])})"
                                    f" failed: {os.strerror(err)}")

    # --- the batch server -------------------------------------------------------
    # A batch by ptrace costs SETREGS, CONT, a stop and GETREGS, and wakes the
    # waiter thread; the server (stub.c) takes a futex wake and a futex wait.
    def _serve(self) -> bool:
        """Start the injector's batch server (from a ptrace stop)."""
        mem = self.phys.mem
        go = (self.mailbox << 12) + L.GO_OFF
        self._seq = _U32.unpack_from(mem, go)[0]
        r = self._load_template()
        r.rip, r.r15, r.orig_rax = L.SERVE, self._seq, MASK64
        if (S.raw_ptrace(S.PTRACE_SETREGS, self.pid, 0, self._regs_addr) < 0
                or S.raw_ptrace(S.PTRACE_CONT, self.pid, 0, 0) < 0):
            self.can_serve = False
            return False
        self.serving = True
        self._go_addr = self.phys.address + go
        self._done_addr = self.phys.address + (self.reply << 12) + L.REPLY_DONE
        return True

    def _park(self) -> None:
        """Stop the batch server: the injector waits in a ptrace stop again."""
        self.serving = False
        if S.raw_ptrace(S.PTRACE_INTERRUPT, self.pid) < 0:
            self.alive = False
            raise PlatformError(f"userland stub {self.pid}: PTRACE_INTERRUPT failed")
        while True:
            st = self.tracer.wait(self.pid)
            if not os.WIFSTOPPED(st):
                self.alive = False
                raise PlatformError(f"userland stub {self.pid} died: {_status(st)}")
            if st >> 16 == S.PTRACE_EVENT_STOP:
                return
            S.ptrace(S.PTRACE_CONT, self.pid, 0, 0)  # a stray signal first: suppressed

    def _served(self, count: int) -> tuple[int, int]:
        """Have the server run the ``count`` entries in the mailbox; (entries
        done, last result). The reply page is guest-writable, so its done
        word is reset here first; no guest thread of this stub runs until the
        reply is read (one cpu, and the caller is it), so only the injector
        can write it meanwhile."""
        mem = self.phys.mem
        mb, rp = self.mailbox << 12, self.reply << 12
        seq = self._seq = self._seq % 0xFFFFFFFF + 1  # never 0, the reset value
        _U64.pack_into(mem, mb + L.COUNT_OFF, count)
        _U32.pack_into(mem, rp + L.REPLY_DONE, 0)
        _U32.pack_into(mem, mb + L.GO_OFF, seq)
        S.raw_futex(self._go_addr, S.FUTEX_WAKE, 1)
        while True:
            done = _U32.unpack_from(mem, rp + L.REPLY_DONE)[0]
            if done == seq:
                break
            if S.raw_futex(self._done_addr, S.FUTEX_WAIT, done, _FUTEX_TIMEOUT_ADDR) < 0:
                if S.errno() == _errno.ETIMEDOUT:
                    self._check_server()
        return _REPLY.unpack_from(mem, rp + L.REPLY_NDONE)

    def _check_server(self) -> None:
        """A batch takes long: the injector may be stopped (a stray signal:
        let it go on) or dead."""
        st = self.tracer.poll(self.pid)
        if st is None:
            return
        if not os.WIFSTOPPED(st):
            self.alive = self.serving = False
            raise PlatformError(f"userland stub {self.pid} died: {_status(st)}")
        S.raw_ptrace(S.PTRACE_CONT, self.pid, 0, 0)

    # --- guest threads ----------------------------------------------------------
    def new_thread(self, rules: tuple[Rule, ...] = ()) -> StubThread:
        """A fresh stopped thread with the guest filter installed, with
        ``rules`` ahead of it (bpf.guest_filter). No thread of this stub runs
        meanwhile (the cpu launches one thread per address space), so none
        can see the mailbox hold another program than the usual one."""
        if not rules:
            return self._new_thread()
        from cove.platform.userland.bpf import guest_filter

        self._put_filter(guest_filter(rules=rules))
        try:
            th = self._new_thread()
        finally:
            self._put_filter(self.filter_prog)
        th.rules = rules
        return th

    def _new_thread(self) -> StubThread:
        self._new_tid = 0
        tid = self.inject(NR_clone, CLONE_THREAD_FLAGS, 0, 0, 0, 0)
        if tid <= 0 or tid != self._new_tid:
            raise PlatformError(f"stub clone failed: {tid}")
        st = self.tracer.wait(tid)
        if not (os.WIFSTOPPED(st) and st >> 16 == S.PTRACE_EVENT_STOP):
            raise PlatformError(f"new stub thread {tid}: {_status(st)}")
        th = StubThread(self, tid, -1)
        self.threads[tid] = th
        # The thread sets up its own altstack, then installs the filter on itself.
        self._thread_call(tid, NR_sigaltstack, L.MAILBOX + L.STACK_T_OFF, 0, expect=0)
        fd = self._thread_call(tid, NR_seccomp, S.SECCOMP_SET_MODE_FILTER,
                               S.SECCOMP_FILTER_FLAG_NEW_LISTENER, L.MAILBOX + L.FPROG_OFF)
        if fd < 0:
            raise PlatformError(f"seccomp filter install failed: {os.strerror(-fd)}")
        th.lfd = S.pidfd_getfd(self.pidfd, fd)
        self.inject(NR_close, fd, expect=0)  # the stub keeps no copy
        try:  # 6.6+: wake the guest thread on this cpu when we reply (faster)
            S.ioctl(th.lfd, S.SECCOMP_IOCTL_NOTIF_SET_FLAGS, S.SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP)
        except PlatformError:
            pass
        return th

    def _thread_call(self, tid: int, nr: int, *args: int, expect: int | None = None) -> int:
        """One syscall made by a (filterless, fresh) guest thread itself."""
        r = self._load_template()
        r.rip, r.rax, r.orig_rax = L.INJECT, nr, MASK64
        for name, v in zip(("rdi", "rsi", "rdx", "r10", "r8", "r9"), args, strict=False):
            setattr(r, name, v & MASK64)
        S.ptrace(S.PTRACE_SETREGS, tid, 0, self._regs_addr)
        S.ptrace(S.PTRACE_CONT, tid, 0, 0)
        st = self.tracer.wait(tid)
        if not (os.WIFSTOPPED(st) and os.WSTOPSIG(st) == SIGTRAP and st >> 16 == 0):
            raise PlatformError(f"stub thread {tid} syscall {nr}: {_status(st)}")
        S.ptrace(S.PTRACE_GETREGS, tid, 0, self._regs_addr)
        res = ctypes.c_int64(self._regs.rax).value
        if expect is not None and res != expect:
            raise PlatformError(f"stub thread {tid} syscall {nr}{args} returned {res}")
        return res

    def read_altstack(self, vaddr: int, n: int = 8) -> int:
        """A little-endian number the host kernel wrote on the altstack (0 outside it)."""
        off = vaddr - L.ALTSTACK
        if not 0 <= off <= L.ALTSTACK_SIZE - n or (off & 0xFFF) + n > 4096:
            return 0
        pa = (self.altstack[off >> 12] << 12) + (off & 0xFFF)
        return int.from_bytes(self.phys.mem[pa:pa + n], "little")

    # --- reuse -------------------------------------------------------------------
    def scrub(self) -> None:
        """Wipe every trace of the guest that used this stub so that another
        guest may (``UserlandPlatform.retire``): all its mappings, every fd but
        the memfd (host pipes the fast path installed), the fault frames on
        the altstack and the batch entries in the mailbox; the SIGSEGV
        handler is set again. Its threads stay,
        stopped or waiting in a notification that is never answered; each
        gets all of its registers and FPU state from the next context bound
        to it. Raises PlatformError if a step failed (then kill it)."""
        self.batch([(NR_munmap, L.RESERVED_END, L.TASK_SIZE - L.RESERVED_END, 0, 0, 0, 0),
                    (NR_close_range, 0, self.memfd - 1, 0, 0, 0, 0),
                    self._SEGV_HANDLER])
        mem = self.phys.mem
        for f in self.altstack:
            mem[f << 12:(f + 1) << 12] = _ZERO_PAGE
        base = self.mailbox << 12
        mem[base + L.BATCH_OFF:base + 4096] = _ZERO_PAGE[L.BATCH_OFF:]
        mem[self.reply << 12:(self.reply + 1) << 12] = _ZERO_PAGE
        self.generation += 1
        self.rules_full = False  # counted again by the next guest's first rule

    # The stub's SIGSEGV handler (the fault-frame probe's), as _setup sets it.
    _SEGV_HANDLER = (NR_rt_sigaction, signal.SIGSEGV, L.MAILBOX + L.SIGACT_OFF, 0, 8, 0, 0)

    def rearm_fault_handler(self) -> None:
        """Set the SIGSEGV handler again: a failed signal delivery (the host's
        force_sigsegv) resets it to SIG_DFL, after which the next fault-frame
        probe would kill the whole stub."""
        self.batch([self._SEGV_HANDLER])

    # --- death ------------------------------------------------------------------
    def kill(self) -> None:
        """SIGKILL the whole stub and reap every thread of it."""
        if self.pid <= 0:
            return
        if self.alive:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for tid in [*self.threads, self.pid]:
            self._reap(tid)
        for th in self.threads.values():
            th.state = State.DEAD
            if th.lfd >= 0:
                os.close(th.lfd)
                th.lfd = -1
        self.threads.clear()
        self.idle.clear()
        self.orphans.clear()
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1
        self.pid = -1
        self.alive = self.serving = False
        if self.reply >= 0:
            self.phys.unref(self.reply)
            self.reply = -1
        if self.mailbox >= 0 and self.own_mailbox:
            self.phys.unref(self.mailbox)
        self.mailbox = -1
        for f in self.altstack:
            self.phys.unref(f)
        self.altstack = []

    def _reap(self, tid: int) -> None:
        while True:
            try:
                st = self.tracer.wait(tid)
            except PlatformError:
                return
            if os.WIFEXITED(st) or os.WIFSIGNALED(st):
                return
