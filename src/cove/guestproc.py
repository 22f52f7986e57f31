"""A guest kept by a sandbox between calls, and the handle ``Sandbox.spawn`` returns.

``Live`` is one kernel (its process tree, guest memory, VM) plus the host fds
its stdin/stdout/stderr were bound to. It runs either on the caller's thread
(``Sandbox.run``/``resume``) or on a background host thread (``Runner``, for
``spawn``/``attach``), and can be paused between scheduler steps, where every
guest thread is stopped with whole state, for a snapshot.

Platform constraints this design follows (kvm): a vCPU runs on whichever host
thread calls it, one at a time, so the background thread simply becomes the
kernel's cpu thread; the platform (and its kick-signal handler) is created on
the thread that calls ``spawn`` (the first one must be the main thread).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from cove.dataclass import dataclass, field
from cove.lazylog import getLogger

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from typing import IO, BinaryIO

    from cove.kernel.kernel import Kernel
    from cove.kernel.physmem import PhysMem

log = getLogger("cove.sandbox")  # logging is imported only if something is logged

PIPE = -1  # the same values as subprocess's
DEVNULL = -3


class Stdio:
    """Host fds for a guest's stdin/stdout/stderr, from the caller's choice per
    stream: ``PIPE`` (a pipe whose other end is ours), ``DEVNULL``, ``None``
    (this process's fd 0/1/2) or a host fd."""

    def __init__(self, stdin: int | None, stdout: int | None, stderr: int | None) -> None:
        self.fds: list[int] = []  # given to the guest (cove makes its own copies)
        self.ours: list[int | None] = [None, None, None]  # our ends of PIPEs
        self._close_after: list[int] = []
        for slot, choice in enumerate((stdin, stdout, stderr)):
            if choice is None:
                self.fds.append(slot)
            elif choice == PIPE:
                r, w = os.pipe2(os.O_CLOEXEC)
                guest, mine = (r, w) if slot == 0 else (w, r)
                self.fds.append(guest)
                self.ours[slot] = mine
                self._close_after.append(guest)
            elif choice == DEVNULL:
                fd = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
                self.fds.append(fd)
                self._close_after.append(fd)
            elif choice >= 0:
                self.fds.append(choice)
            else:
                raise ValueError(f"stdio choice {choice!r}: PIPE, DEVNULL, None or an fd")

    def attached(self) -> None:
        """The guest has its own copies now: drop the fds we made for it (so a
        guest closing its stdout is EOF for our reader)."""
        for fd in self._close_after:
            os.close(fd)
        self._close_after = []

    def streams(self) -> tuple[BinaryIO | None, BinaryIO | None, BinaryIO | None]:
        """Our PIPE ends as unbuffered file objects (stdin writable, the others readable)."""
        out: list[BinaryIO | None] = []
        for slot, fd in enumerate(self.ours):
            out.append(None if fd is None else open(fd, "wb" if slot == 0 else "rb",
                                                    buffering=0))
        self.ours = [None, None, None]
        return out[0], out[1], out[2]

    def close(self) -> None:
        self.attached()
        for fd in self.ours:
            if fd is not None:
                os.close(fd)
        self.ours = [None, None, None]


@dataclass
class Live:
    """A kernel the sandbox holds: paused, running on the caller's thread, or
    on a ``Runner``."""

    kernel: Kernel
    phys: PhysMem
    name: str  # argv[0] (or the snapshot's), for messages
    trace: IO[str] | None = None
    runner: Runner | None = None
    # cove's host fd of each HostFile the guest got as stdio -> slot 0/1/2
    # (a snapshot rebinds them to the restoring side's fds).
    slots: dict[int, int] = field(default_factory=dict)
    # A restored guest's stdio as bound at restore, until resume/attach takes it.
    stdio: Stdio | None = None

    def close_io(self) -> None:
        """Close the host side of the guest's stdio and its trace file."""
        if self.stdio is not None:
            self.stdio.close()
            self.stdio = None
        if self.trace is not None:
            self.trace.close()
            self.trace = None

    def close(self, *, discard: bool = False, wait: bool = False) -> None:
        """Kill every guest process and free the VM and guest memory.

        ``discard``: the guest is being thrown away whole (a restore replaces
        it), so skip ending its processes one by one and freeing each frame:
        only what holds host resources is released (shutdown hooks such as
        the stdio dups now; the VM and guest memory on a helper thread, since
        the host kernel takes a while to tear a VM down, unless ``wait``)."""
        self.close_io()
        if discard:
            self.kernel.run_shutdown_hooks()
            if wait:
                _release(self.kernel, self.phys)
            else:
                threading.Thread(target=_release, args=(self.kernel, self.phys), daemon=True,
                                 name="cove-release").start()
            return
        try:
            self.kernel.shutdown()
        finally:
            _close_phys(self.phys)


def _release(k: Kernel, phys: PhysMem) -> None:
    """A discarded guest's VM and memory (its processes are never ended)."""
    from cove.kernel import process
    from cove.snapstate import memory_maps

    try:
        for mm in memory_maps(k):  # id()-keyed: a later map could reuse the id
            process._mm_users.pop(id(mm), None)
        k.sched.close()
        k.platform.close()
    except Exception:
        log.exception("releasing a discarded guest failed")
    finally:
        _close_phys(phys)


def _close_phys(phys: PhysMem) -> None:
    try:
        phys.close()
    except BufferError:  # a view is still around: the GC unmaps it later
        log.debug("guest memory still referenced at close")


def run_kernel(k: Kernel) -> int | None:
    """``k.run()`` with the preemption timer armed only while it runs: a
    paused guest costs no timer signals (and none can outlive it).

    A platform whose guest threads are tied to one host thread of its own
    (userland: ptrace) offers ``run_owned``: the loop then runs on that thread
    and this one waits. A KeyboardInterrupt in the wait pauses the kernel
    (as ``Runner.pause`` does) and is re-raised once it has stopped."""
    run_owned = getattr(k.platform, "run_owned", None)
    if run_owned is None:
        return _run_kernel(k)
    k.sched.enable_wakeup()  # the interrupt must also end a sleeping scheduler's wait
    interrupted = False

    def interrupt() -> None:
        nonlocal interrupted
        interrupted = True
        k.pause_requested = True
        k.sched.wakeup()
        k.cpu.kick()

    try:
        return run_owned(_run_kernel, k, interrupt=interrupt)
    finally:
        if interrupted:
            k.pause_requested = False


def _run_kernel(k: Kernel) -> int | None:
    from cove.kernel.sched import TIMESLICE

    k.cpu.set_timeslice(TIMESLICE)
    try:
        return k.run()
    finally:
        k.cpu.set_timeslice(None)


class Runner:
    """Runs a ``Live`` kernel on a background host thread; ``pause``/``resume``
    stop and continue it between scheduler steps."""

    def __init__(self, live: Live, finished: Callable[[Runner], None]) -> None:
        self.live = live
        self.status: int | None = None  # init's wait status once it ended
        self.error: BaseException | None = None  # a cove failure (not the guest's)
        self._finished = finished
        self._go = threading.Event()
        self._paused = threading.Event()
        self._done = threading.Event()
        self._stop = False
        self.thread = threading.Thread(target=self._main, name=f"cove-guest-{live.name}",
                                       daemon=True)

    def start(self) -> None:
        self.thread.start()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def _main(self) -> None:
        k = self.live.kernel
        try:
            while True:
                status = run_kernel(k)
                if status is not None:
                    self.status = status
                    break
                self._paused.set()
                self._go.wait()
                self._go.clear()
                if self._stop:
                    break
        except BaseException as e:  # reported by wait(); the sandbox is unusable
            self.error = e
            log.debug("guest thread failed", exc_info=True)
        finally:
            self._done.set()
            self._paused.set()
            if not self._stop:  # stop()'s caller (the sandbox) cleans up itself
                self._finished(self)

    def pause(self) -> bool:
        """Stop the guest between scheduler steps; False if it had ended."""
        k = self.live.kernel
        on_owner = getattr(k.platform, "on_owner_thread", None)
        if threading.current_thread() is self.thread or (on_owner is not None and on_owner()):
            raise RuntimeError("a guest cannot pause its own sandbox (from a host function)")
        k.pause_requested = True
        k.sched.wakeup()
        k.cpu.kick()
        self._paused.wait()
        return not self._done.is_set()

    def resume(self) -> None:
        if self._done.is_set():
            return
        k = self.live.kernel
        k.pause_requested = False
        k.sched.cancel_wakeup()  # the kernel may have paused before seeing it
        self._paused.clear()
        self._go.set()

    def stop(self) -> None:
        """Pause for good and let the thread end (the caller then closes the kernel)."""
        if self.pause():
            self._stop = True
            self._go.set()
        self.thread.join()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)


class GuestProcess:
    """A guest started with ``Sandbox.spawn`` (or resumed with ``attach``),
    running on a background host thread; like ``subprocess.Popen``.

    ``stdin``/``stdout``/``stderr`` are unbuffered binary streams for the
    streams given as ``PIPE``, else None. ``returncode`` is None while it runs,
    then the exit code or 128 + the killing signal, as a shell reports it.
    """

    def __init__(self, runner: Runner, streams: tuple[BinaryIO | None, ...],
                 on_kill: Callable[[], None]) -> None:
        self._runner = runner
        self.stdin, self.stdout, self.stderr = streams
        self.pid = 1  # the guest's own pid for its init
        self.timed_out = False
        self._on_kill = on_kill

    @property
    def returncode(self) -> int | None:
        from cove.kernel.kernel import status_to_exit

        if not self._runner.done or self._runner.status is None:
            return None
        return status_to_exit(self._runner.status)

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the guest's init to end; its returncode. Raises
        ``TimeoutError`` if ``timeout`` passes first, or the cove error that
        stopped the guest (never the guest's own failure)."""
        if not self._runner.wait(timeout):
            raise TimeoutError(f"guest still running after {timeout} s")
        if self._runner.error is not None:
            raise self._runner.error
        rc = self.returncode
        assert rc is not None
        return rc

    def communicate(self, input: bytes | None = None,
                    timeout: float | None = None) -> tuple[bytes | None, bytes | None]:
        """Write ``input`` to stdin and close it, read stdout and stderr to the
        end, wait; ``(stdout, stderr)`` (None for streams that are not pipes)."""
        got: dict[int, bytes] = {}
        readers = []
        for slot, stream in ((1, self.stdout), (2, self.stderr)):
            if stream is not None:
                th = threading.Thread(target=_read_all, args=(stream, got, slot), daemon=True)
                th.start()
                readers.append(th)
        if self.stdin is not None:
            try:
                if input:
                    self.stdin.write(input)
            except BrokenPipeError:
                pass
            finally:
                self.stdin.close()
        self.wait(timeout)
        for th in readers:
            th.join()
        return got.get(1) if self.stdout else None, got.get(2) if self.stderr else None

    def kill(self) -> None:
        """SIGKILL every guest process (the sandbox becomes Poisoned)."""
        self._on_kill()


def _read_all(stream: BinaryIO, out: dict[int, bytes], slot: int) -> None:
    buf = bytearray()
    while chunk := stream.read(1 << 16):
        buf += chunk
    stream.close()
    out[slot] = bytes(buf)
