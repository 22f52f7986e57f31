"""A sandbox: one filesystem tree, one Linux personality, one platform.

What a ``Sandbox`` holds between calls:

- its filesystem tree (the VFS: an in-memory writable overlay over the
  read-only rootfs, plus /dev, /proc, /tmp and mounts). Files a guest wrote
  are still there for the next ``run``;
- at most one *live guest*: a process tree with its memory and VM, started
  with ``spawn`` (running on a background host thread), or restored from a
  snapshot (paused until ``resume``/``attach``);
- its state: ``Ready``; ``Poisoned`` after a guest was killed by a signal
  (a crash, ``kill()``) or by the timeout, because whatever it was doing to
  the sandbox's files stopped half-way (only ``restore`` and ``close`` are
  allowed then); ``Unrecoverable`` when a restore itself failed (only
  ``close``).

``run`` always starts a fresh process tree (pid 1 is the program) over the
sandbox's files, on the calling thread, and returns when it exits; a
snapshot brings back a whole process tree instead.
"""

from __future__ import annotations

import atexit
import enum
import os
import threading
import weakref

from cove.abi.errno import E, Errno
from cove.dataclass import dataclass
from cove.fs.perm import Cred
from cove.fs.vfs import VFS, PathContext
from cove.guestproc import DEVNULL, PIPE, GuestProcess, Live, Runner, Stdio, run_kernel
from cove.kernel.fdtable import FdTable
from cove.kernel.kernel import Kernel, status_to_exit
from cove.kernel.mm import MemoryMap
from cove.kernel.task import Creds
from cove.lazylog import getLogger
from cove.rootfs import MountSpec, build_vfs

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from typing import IO, Any, BinaryIO

    from cove.hostfuncs import HostFunctions
    from cove.snapshot import Snapshot

__all__ = ["DEVNULL", "PIPE", "CompletedRun", "CoveError", "GuestProcess", "ProgramNotFound",
           "Sandbox", "SandboxConfig", "SandboxState", "SandboxStateError", "SandboxTimeout"]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_MEMORY = "1G"
DEFAULT_HOSTNAME = "cove"


class CoveError(Exception):
    """Something the user asked for cannot be done; the message is one clear line."""


class ProgramNotFound(CoveError):
    """The program does not exist in the sandbox (or is not executable there)."""


class SandboxTimeout(CoveError):
    """The guest ran past ``SandboxConfig.timeout``; every guest process was killed."""


class SandboxStateError(CoveError):
    """The sandbox's state does not allow the call (the caller's mistake);
    the message names the state and what is allowed in it."""


class SandboxState(enum.Enum):
    READY = "Ready"
    POISONED = "Poisoned"
    UNRECOVERABLE = "Unrecoverable"
    CLOSED = "Closed"


_ALLOWED = {
    SandboxState.POISONED: "only restore() or close() are allowed",
    SandboxState.UNRECOVERABLE: "only close() is allowed",
    SandboxState.CLOSED: "nothing is allowed any more",
}


def parse_memory(size: str | int | None) -> int:
    """``"256M"``, ``"1G"``, ``1 << 30`` → bytes (whole pages); None is the default."""
    if size is None:
        size = DEFAULT_MEMORY
    if isinstance(size, int):
        n = size
    else:
        units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
        text = size.strip().upper().removesuffix("B").removesuffix("I")
        mult = units.get(text[-1:], 1)
        try:
            n = int(float(text[:-1] if text[-1:] in units else text) * mult)
        except ValueError:
            raise CoveError(f"memory {size!r}: expected a size like 256M or 1G") from None
    if n < 16 << 20:
        raise CoveError(f"memory {size}: at least 16M is needed")
    return n & ~0xFFF


@dataclass
class SandboxConfig:
    """How a sandbox runs. ``memory`` and ``hostname`` are layout: a snapshot
    fixes them, so ``from_snapshot`` refuses a config that sets them
    differently (None: the default, or the snapshot's)."""

    memory: str | int | None = None  # guest physical memory; None: 1G
    platform: str = "auto"
    timeout: float | None = None  # seconds per run/resume; the guest is killed past it
    trace: str | None = None  # JSONL file: one line per syscall
    debug: bool = False
    hostname: str | None = None  # None: "cove"


@dataclass
class CompletedRun:
    argv: list[str]
    returncode: int  # exit code, or 128 + signal like a shell
    status: int  # raw wait status
    stdout: bytes | None = None
    stderr: bytes | None = None


_with_guests: weakref.WeakSet[Sandbox] = weakref.WeakSet()  # every sandbox, for atexit


@atexit.register
def _close_at_exit() -> None:
    """End live guests before the interpreter goes (terminal modes back, VMs
    and their timers gone before Python resets its signal handlers)."""
    for sb in list(_with_guests):
        try:
            sb._drop_live(wait=True)
        except Exception:  # exiting anyway
            pass


def _prepare_signals(platform: str) -> None:
    """The kvm platform preempts guests with a signal whose handler Python can
    only install on the main thread: do it now if this is the main thread,
    so the sandbox can then run guests from any thread."""
    if platform not in ("auto", "kvm") or threading.current_thread() is not \
            threading.main_thread():
        return
    try:
        from cove.platform.kvm.platform import _install_kick_handler

        _install_kick_handler()
    except Exception:  # no kvm here: the platform says so when it is opened
        pass


class Sandbox:
    """See the module docstring. Create the first sandbox on the main thread
    (the kvm platform needs a signal handler only that thread can install);
    then use it from any thread, one call at a time, except that
    ``snapshot``/``kill`` may pause a spawned guest from another thread."""

    def __init__(self, rootfs: str = "host", config: SandboxConfig | None = None,
                 host_functions: HostFunctions | None = None, *,
                 mounts: tuple[MountSpec, ...] = (), env: dict[str, str] | None = None,
                 cwd: str = "/", user: tuple[int, int] = (0, 0), vfs: VFS | None = None) -> None:
        self.rootfs = rootfs
        self.config = config if config is not None else SandboxConfig()
        self.mounts = tuple(mounts)
        self.env = dict(env or {})
        self.cwd = cwd
        self.user = user
        self.host_functions = host_functions
        self.vfs: VFS = vfs if vfs is not None else build_vfs(rootfs, self.mounts)
        # Layout (a snapshot's, once restored from one).
        self.memory = parse_memory(self.config.memory)
        self.hostname = self.config.hostname or DEFAULT_HOSTNAME
        self._state = SandboxState.READY
        self._why = ""
        self._live: Live | None = None
        self._busy = False  # run()/resume() on some thread
        self._lock = threading.RLock()
        _with_guests.add(self)
        _prepare_signals(self.config.platform)

    # --- state ------------------------------------------------------------------
    @property
    def state(self) -> SandboxState:
        return self._state

    @property
    def state_reason(self) -> str:
        """Why the sandbox is not Ready ("" when it is)."""
        return self._why

    def _check(self, what: str, *, allow: tuple[SandboxState, ...] = (SandboxState.READY,)
               ) -> None:
        if self._state not in allow:
            why = f" ({self._why})" if self._why else ""
            raise SandboxStateError(f"{what}: the sandbox is {self._state.value}{why}; "
                                    f"{_ALLOWED[self._state]}")

    def _check_idle(self, what: str) -> None:
        if self._busy:
            raise SandboxStateError(f"{what}: a run() or resume() is in progress")
        live = self._live
        if live is not None and live.runner is not None and not live.runner.done:
            raise SandboxStateError(f"{what}: a spawned guest ({live.name}) is still running; "
                                    "wait() for it or kill() it first")

    def _poison(self, why: str) -> None:
        if self._state is SandboxState.READY:
            self._state = SandboxState.POISONED
            self._why = why

    def _ended(self, name: str, status: int, timed_out: bool) -> None:
        """A guest's init ended: Poisoned if it was killed (timeout, signal)."""
        if timed_out:
            self._poison(f"{name} ran past the {self.config.timeout} s timeout and was killed")
        elif status & 0x7F:
            import signal  # here: importing it costs ~0.7 ms of every start

            try:
                sig = signal.Signals(status & 0x7F).name
            except ValueError:
                sig = f"signal {status & 0x7F}"
            self._poison(f"{name} was killed by {sig}")

    # --- context manager ------------------------------------------------------------
    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """End the live guest (if any) and make the sandbox unusable."""
        with self._lock:
            self._drop_live()
            self._state = SandboxState.CLOSED
            self._why = ""

    def _drop_live(self, *, wait: bool = False) -> None:
        live, self._live = self._live, None
        if live is None:
            return
        runner = live.runner
        if runner is not None and not runner.done:
            runner.stop()
        live.close(discard=True, wait=wait)
        if runner is not None and runner.status is None:
            runner.status = 9  # thrown away: to its process, as SIGKILL

    def _take_vm(self, memory: int) -> tuple[Any, Any] | None:
        """For an in-place restore: discard the live guest as ``_drop_live``
        does but keep its guest memory and VM (kvm, ``memory`` bytes), which
        are returned; None (nothing changed) if there is no such guest."""
        live = self._live
        platform = live.kernel.platform if live is not None else None
        if live is None or live.phys.size != memory or getattr(platform, "name", "") != "kvm" \
                or getattr(platform, "physmem", None) is not live.phys:
            return None
        from cove.kernel import process
        from cove.snapstate import memory_maps

        self._live = None
        runner = live.runner
        if runner is not None and not runner.done:
            runner.stop()
        if runner is not None and runner.status is None:
            runner.status = 9  # thrown away: to its process, as SIGKILL
        live.close_io()
        k = live.kernel
        k.run_shutdown_hooks()
        for mm in memory_maps(k):  # id()-keyed: a later map could reuse the id
            process._mm_users.pop(id(mm), None)
        k.sched.close()
        return live.phys, k.platform

    # --- program lookup ------------------------------------------------------
    def find_program(self, name: str, env_path: str = DEFAULT_PATH) -> str:
        """PATH search inside the sandbox, as a shell does."""
        ctx = self.vfs.context(Cred(*self.user))
        if "/" in name:
            self._check_exec(ctx, name, name)
            return name
        for d in env_path.split(":"):
            cand = f"{d or '.'}/{name}"
            try:
                self._check_exec(ctx, cand, name)
                return cand
            except ProgramNotFound:
                continue
        raise ProgramNotFound(f"{name}: command not found in the sandbox")

    def _check_exec(self, ctx: PathContext, path: str, shown: str) -> None:
        try:
            st = self.vfs.stat(ctx, None, path)
        except Errno as e:
            raise ProgramNotFound(f"{shown}: {_why(e)}") from None
        if not st.is_reg():
            raise ProgramNotFound(f"{shown}: not a regular file")
        if not st.mode & 0o111:
            raise ProgramNotFound(f"{shown}: permission denied (not executable)")

    # --- booting -------------------------------------------------------------
    def boot(self, argv: list[str], *, env: dict[str, str] | None = None,
             stdio: tuple[int, int, int] = (0, 1, 2), trace: IO[str] | None = None) -> Kernel:
        """A kernel with ``argv`` loaded as init, ready to ``run()`` (the caller
        owns it: ``kernel.shutdown()`` when done). Low level; ``run``/``spawn``
        are the API."""
        return self._boot(argv, env=env, stdio=stdio, trace=trace).kernel

    def _boot(self, argv: list[str], *, env: dict[str, str] | None,
              stdio: tuple[int, int, int], trace: IO[str] | None) -> Live:
        from cove.kernel import hostio, loader
        from cove.kernel.elf import ExecError
        from cove.kernel.physmem import PhysMem
        from cove.platform.base import select_platform

        environ = {"PATH": DEFAULT_PATH, "HOME": "/root" if self.user[0] == 0 else "/",
                   "HOSTNAME": self.hostname}
        if os.environ.get("TERM") and os.isatty(stdio[1]):
            environ["TERM"] = os.environ["TERM"]
        environ.update(self.env)
        environ.update(env or {})
        path = self.find_program(argv[0], environ.get("PATH", DEFAULT_PATH))
        phys = PhysMem(self.memory)
        try:
            platform = select_platform(self.config.platform, physmem=phys)
        except BaseException:
            phys.close()
            raise
        caps = getattr(platform, "capabilities", None)
        getLogger("cove").info("platform %s (%s)", platform.name,
                               getattr(caps, "syscall_path", "?"))
        kernel = Kernel(platform, self.vfs, trace=trace, hostname=self.hostname)
        live = Live(kernel, phys, os.path.basename(argv[0]))
        try:
            self._install_hostcalls(kernel)
            procfs = getattr(self.vfs, "procfs", None)
            if procfs is not None:
                procfs.kernel = kernel
            uid, gid = self.user
            creds = Creds(uid, uid, uid, uid, gid, gid, gid, gid)
            mm = MemoryMap(phys, platform.create_address_space())
            proc = kernel.new_process(None, mm, creds)
            kernel.init = proc
            fs = self.vfs.context(Cred(uid, gid))
            try:
                self.vfs.chdir(fs, None, self.cwd)
            except Errno as e:
                raise CoveError(f"--cwd {self.cwd}: {_why(e)}") from None
            files = FdTable()
            hostio.attach_stdio(kernel, files, stdio)
            live.slots = _stdio_slots(files)
            try:
                image = loader.load_program(mm, self.vfs, fs, path, argv,
                                            [f"{k}={v}" for k, v in environ.items()],
                                            creds=creds)
            except ExecError as e:
                raise CoveError(f"{argv[0]}: {e.reason}") from None
            except Errno as e:
                raise CoveError(f"{argv[0]}: {_why(e)}") from None
            proc.image = image
            proc.exe = path
            proc.comm = os.path.basename(path)[:15]
            ctx = platform.create_context()
            ctx.regs.rip = image.entry
            ctx.regs.rsp = image.stack_pointer
            kernel.new_task(proc, ctx, files, fs)
        except BaseException:
            live.close()
            raise
        return live

    def _install_hostcalls(self, kernel: Kernel) -> None:
        """Let the guest call this sandbox's host functions (if any)."""
        if self.host_functions is not None:
            self.host_functions.attach(kernel)

    def _open_trace(self) -> IO[str] | None:
        return open(self.config.trace, "w") if self.config.trace else None

    # --- running to completion on this thread -------------------------------------
    def run(self, argv: list[str], *, env: dict[str, str] | None = None,
            capture_output: bool = False, stdin: int | None = None,
            input: bytes | None = None) -> CompletedRun:
        """Run ``argv`` to completion in a fresh process tree over this sandbox's
        files, on the calling thread. ``stdin``: a host fd (default: ours);
        ``input``: bytes fed through a pipe instead. Raises SandboxTimeout past
        ``config.timeout`` (the sandbox is then Poisoned)."""
        with self._lock:
            self._check("run")
            self._check_idle("run")
            if input is not None and stdin is not None:
                raise ValueError("give stdin or input, not both")
            out = PIPE if capture_output else None
            io = Stdio(PIPE if input is not None else stdin, out, out)
            live = self._boot_attached(argv, env, io)
            self._busy = True
        try:
            return self._finish_here(live, argv, io, input, capture_output)
        finally:
            self._busy = False

    def _boot_attached(self, argv: list[str], env: dict[str, str] | None, io: Stdio) -> Live:
        """Boot ``argv`` on ``io``'s fds with this sandbox's trace file; on failure
        nothing stays open."""
        trace = None
        try:
            trace = self._open_trace()
            live = self._boot(argv, env=env, stdio=tuple(io.fds), trace=trace)  # type: ignore[arg-type]
        except BaseException:
            io.close()
            if trace is not None:
                trace.close()
            raise
        live.trace = trace
        io.attached()
        return live

    def _finish_here(self, live: Live, argv: list[str], io: Stdio, input: bytes | None,
                     capture_output: bool) -> CompletedRun:
        """Drive ``live`` on this thread until its init ends, feeding ``input``
        and collecting captured output; the live guest is closed after."""
        streams = io.streams()
        pumps: list[threading.Thread] = []
        got: dict[int, bytes] = {}
        if streams[0] is not None:
            pumps.append(_start(_feed, streams[0], input or b""))
        for slot in (1, 2):
            s = streams[slot]
            if s is not None:
                pumps.append(_start(_collect, s, got, slot, capture_output))
        kernel = live.kernel
        try:
            kernel.set_timeout(self.config.timeout)
            status = run_kernel(kernel)
            while status is None:  # paused by a snapshot() from another thread
                status = run_kernel(kernel)
            timed_out = kernel.timed_out
        except BaseException:
            with self._lock:
                self._state = SandboxState.UNRECOVERABLE
                self._why = "cove failed while running the guest"
                if self._live is live:
                    self._live = None
            live.close()
            raise
        finally:
            kernel.set_timeout(None)
        with self._lock:
            if self._live is live:
                self._live = None
            live.close()  # closes the guest's ends: our readers see EOF
            self._ended(live.name, status, timed_out)
        for th in pumps:
            th.join()
        if timed_out:
            raise SandboxTimeout(f"{argv[0]}: killed after the {self.config.timeout} s timeout")
        return CompletedRun(list(argv), status_to_exit(status), status,
                            got.get(1) if capture_output else None,
                            got.get(2) if capture_output else None)

    def warm_up(self, argv: list[str], *, env: dict[str, str] | None = None,
                stdout: int | None = None, stderr: int | None = None) -> CompletedRun | None:
        """Run ``argv`` on this thread until it first blocks reading its stdin
        (a read on fd 0 that would wait): its warm, ready point. It then stays
        paused as the sandbox's live guest, for ``snapshot()`` and ``resume()``;
        returns None. Its stdin is a pipe that gets no data before then. If
        the program exits first, returns how it ended."""
        with self._lock:
            self._check("warm_up")
            self._check_idle("warm_up")
            self._drop_live()
            io = Stdio(PIPE, stdout, stderr)
            live = self._boot_attached(argv, env, io)
            self._busy = True
        kernel = live.kernel
        try:
            kernel.pause_when = lambda: _reading_stdin(kernel)
            kernel.set_timeout(self.config.timeout)
            status = run_kernel(kernel)
        except BaseException:
            self._busy = False
            io.close()
            live.close()
            raise
        finally:
            kernel.pause_when = None
            kernel.set_timeout(None)
        if status is None:
            with self._lock:
                live.stdio = io
                self._live = live
                self._busy = False
            return None
        try:
            with self._lock:
                live.close()
                self._ended(live.name, status, kernel.timed_out)
            if kernel.timed_out:
                raise SandboxTimeout(f"{argv[0]}: killed after the {self.config.timeout} s "
                                     "timeout")
            return CompletedRun(list(argv), status_to_exit(status), status)
        finally:
            io.close()
            self._busy = False

    # --- running in the background -------------------------------------------------
    def spawn(self, argv: list[str], *, env: dict[str, str] | None = None,
              stdin: int | None = PIPE, stdout: int | None = PIPE,
              stderr: int | None = PIPE) -> GuestProcess:
        """Start ``argv`` as a fresh process tree running on a background host
        thread; returns at once. Each stream is ``PIPE`` (a stream on the
        returned process), ``DEVNULL``, None (this process's) or a host fd.
        The guest stays the sandbox's live guest (``snapshot`` captures it)
        until it exits."""
        with self._lock:
            self._check("spawn")
            self._check_idle("spawn")
            self._drop_live()  # a restored, never resumed guest gives way
            io = Stdio(stdin, stdout, stderr)
            live = self._boot_attached(argv, env, io)
            return self._start_background(live, io)

    def _start_background(self, live: Live, io: Stdio) -> GuestProcess:
        live.kernel.sched.enable_wakeup()
        live.kernel.set_timeout(self.config.timeout)
        runner = Runner(live, self._runner_finished)
        live.runner = runner
        self._live = live
        proc = GuestProcess(runner, io.streams(), lambda: self._kill_live(live))
        runner.start()
        return proc

    def _runner_finished(self, runner: Runner) -> None:
        """On the guest's thread, when its kernel stopped for good."""
        live = runner.live
        with self._lock:
            if self._live is live:
                self._live = None
            if runner.error is not None:
                self._state = SandboxState.UNRECOVERABLE
                self._why = f"cove failed while running {live.name}: {runner.error}"
            elif runner.status is not None:
                self._ended(live.name, runner.status, live.kernel.timed_out)
        live.close()

    def _kill_live(self, live: Live) -> None:
        from cove.abi import flags as F

        with self._lock:
            runner = live.runner
            if runner is None or runner.done:
                return
            if runner.pause():
                live.kernel.kill_all(F.SIGKILL)
                self._poison(f"{live.name} was killed (kill())")
                runner.resume()

    def kill(self) -> None:
        """SIGKILL every process of the live guest; the sandbox becomes Poisoned."""
        live = self._live
        if live is not None:
            self._kill_live(live)

    # --- snapshots (cove.snapshot) -----------------------------------------------------
    def snapshot(self) -> Snapshot:
        """Capture the sandbox at a quiescent point: its files, and the live
        guest (if any) with every thread stopped between scheduler steps. A
        spawned guest is paused for the capture and then continues."""
        with self._lock:
            self._check("snapshot")
            from cove.snapshot import capture

            if self._busy:
                raise SandboxStateError("snapshot: a run() or resume() is in progress on "
                                        "another thread; spawn() a guest to snapshot it running")
            live = self._live
            runner = live.runner if live is not None else None
            if runner is not None and not runner.pause():
                live = None  # it ended meanwhile: files only
            try:
                return capture(self, live)
            finally:
                if runner is not None:
                    runner.resume()

    def restore(self, snap: Snapshot, *, stdin: int | None = PIPE, stdout: int | None = PIPE,
                stderr: int | None = PIPE) -> None:
        """Put the sandbox back to ``snap``: its files, and its guest (paused:
        ``resume`` or ``attach`` continue it, with stdio bound as given here).
        Allowed when Ready or Poisoned; a failure leaves it Unrecoverable."""
        with self._lock:
            self._check("restore", allow=(SandboxState.READY, SandboxState.POISONED))
            from cove.snapshot import restore_into

            self._check_idle_for_restore()
            restore_into(self, snap, Stdio(stdin, stdout, stderr))

    def _check_idle_for_restore(self) -> None:
        if self._busy:
            raise SandboxStateError("restore: a run() or resume() is in progress")

    @classmethod
    def from_snapshot(cls, snap: Snapshot, host_functions: HostFunctions | None = None,
                      config: SandboxConfig | None = None, *, stdin: int | None = PIPE,
                      stdout: int | None = PIPE, stderr: int | None = PIPE,
                      prefault: bool = False) -> Sandbox:
        """A ready sandbox from ``snap`` without loading any program: the
        snapshot decides layout (memory, hostname, the filesystem tree); the
        config only non-layout fields (timeout, trace, platform, debug).

        Guest memory is the snapshot's, copy-on-write: sandboxes restored
        from one snapshot share the pages none of them wrote. ``prefault``
        copies every page the guest can write up front instead (on a helper
        thread while the rest is built): the guest's first run is faster (no
        copy-on-write fault through the VM per page it writes), but those
        pages are not shared; meant for a single restore (``cove restore``)."""
        from cove.snapshot import sandbox_from

        return sandbox_from(cls, snap, host_functions, config, Stdio(stdin, stdout, stderr),
                            prefault=prefault)

    # --- continuing a restored guest ------------------------------------------------
    @property
    def has_guest(self) -> bool:
        """A live guest exists (spawned and running, or restored and paused)."""
        return self._live is not None

    def _paused_live(self, what: str) -> Live:
        self._check(what)
        self._check_idle(what)
        live = self._live
        if live is None:
            raise SandboxStateError(f"{what}: the sandbox has no guest to continue "
                                    "(restore a snapshot that has one)")
        return live

    def resume(self, *, input: bytes | None = None, capture_output: bool = False
               ) -> CompletedRun:
        """Continue the paused guest on this thread until its init exits. With
        stdio bound to pipes at restore (the default), ``input`` is fed to its
        stdin and its output is captured (``capture_output``) or copied to ours."""
        with self._lock:
            live = self._paused_live("resume")
            io = live.stdio or Stdio(None, None, None)
            live.stdio = None
            if input is not None and io.ours[0] is None:
                raise ValueError("resume(input=...): stdin was not bound to a pipe at restore")
            self._busy = True
        try:
            return self._finish_here(live, [live.name], io, input, capture_output)
        finally:
            self._busy = False

    def attach(self) -> GuestProcess:
        """Continue the paused guest on a background host thread; its PIPE
        streams (as bound at restore) are the returned process's."""
        with self._lock:
            live = self._paused_live("attach")
            io = live.stdio or Stdio(None, None, None)
            live.stdio = None
            live.kernel.pause_requested = False
            return self._start_background(live, io)


_STDIN_READS = frozenset({"read", "readv", "pread64", "preadv", "preadv2"})
_POLLS = frozenset({"poll", "ppoll"})
_SELECTS = frozenset({"select", "pselect6"})
_POLLIN = 0x1


def _reading_stdin(kernel: Kernel) -> bool:
    """Some guest thread sleeps waiting for its fd 0 to have data: in a read
    of it, or in poll/select with fd 0 in the read set (shells poll first)."""
    import struct

    from cove.kernel.task import State

    for t in kernel.tasks.values():
        call = t.blocked_call
        if t.state is not State.BLOCKED or call is None:
            continue
        name, raw = call[0].name, call[1]
        try:
            if name in _STDIN_READS and raw[0] & 0xFFFFFFFF == 0:
                return True
            if name in _POLLS and 0 < raw[1] <= 1024:
                fds = t.mm.read(raw[0], 8 * raw[1])
                if any(fd == 0 and ev & _POLLIN for fd, ev, _ in struct.iter_unpack("<ihh", fds)):
                    return True
            if name in _SELECTS and raw[0] > 0 and raw[1]:
                if t.mm.read(raw[1], 1)[0] & 1:
                    return True
        except Errno:
            continue
    return False


def _stdio_slots(files: FdTable) -> dict[int, int]:
    """cove's host fd of each HostFile at guest fds 0-2 -> its slot."""
    from cove.kernel.hostfile import HostFile

    slots: dict[int, int] = {}
    for slot in range(3):
        try:
            f = files.get(slot)
        except Errno:
            continue
        if isinstance(f, HostFile):
            slots.setdefault(f.fd, slot)
    return slots


def _start(fn: Any, *args: Any) -> threading.Thread:
    th = threading.Thread(target=fn, args=args, daemon=True)
    th.start()
    return th


def _feed(stream: BinaryIO, data: bytes) -> None:
    try:
        if data:
            stream.write(data)
    except BrokenPipeError:
        pass
    finally:
        try:
            stream.close()
        except BrokenPipeError:
            pass


def _collect(stream: BinaryIO, got: dict[int, bytes], slot: int, keep: bool) -> None:
    """Read a guest's output to EOF: kept (captured) or copied to our fd."""
    buf = bytearray()
    try:
        while chunk := stream.read(1 << 16):
            if keep:
                buf += chunk
            else:
                _write_all(slot, chunk)
    finally:
        stream.close()
    got[slot] = bytes(buf)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except OSError:
            return
        view = view[n:]


def _why(e: Errno) -> str:
    return {
        E.ENOENT: "no such file or directory", E.EACCES: "permission denied",
        E.ENOTDIR: "not a directory", E.ELOOP: "too many levels of symbolic links",
        E.ENOEXEC: "not an executable (exec format error)", E.EISDIR: "is a directory",
        E.ENAMETOOLONG: "file name too long", E.E2BIG: "argument list too long",
        E.ENOMEM: "out of guest memory",
    }.get(e.errno, e.name.lower())
