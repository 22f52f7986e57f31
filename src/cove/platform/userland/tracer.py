"""The platform's two helper threads: the tracer, which owns every stub, and
the waiter, which turns ptrace stops into something ``poll`` can see.

Tracer thread. ptrace binds a tracee to the host *thread* that attached it
(only that thread may issue requests), and PTRACE_O_EXITKILL and the stubs'
death signal fire when that thread exits. The North may drive the platform
from any host thread, and from different ones over time (a sandbox run on
the caller's thread, spawned on a background thread, resumed elsewhere), so
a dedicated, platform-long thread spawns and attaches every stub and makes
every ptrace request: ``Tracer.call(fn, *args)`` runs ``fn`` there and
returns its result (or raises its exception), one request at a time. The
seccomp-notification fast path needs no ptrace and never goes through it.
A kernel's whole run loop goes there too (``run_owned``, used by
``cove.guestproc.run_kernel``): every ptrace request it makes is then a
direct call, with no hand-off between threads on the hot path; its caller
waits, and a KeyboardInterrupt there pauses the loop and is re-raised.

Waiter thread. A running guest thread comes back either as a seccomp
notification (its listener turns readable) or as a ptrace stop, which only
``waitpid`` reports. The waiter sleeps in ``waitid(P_PGID, WNOWAIT)`` on the
process group every stub joins and posts an eventfd when any tracee has
something to report; it never consumes the event. Whoever waits reaps with
``waitpid(tid)`` (any thread of the tracer's process may) and re-arms it.
Only this platform's stubs are in the group, so the host program's other
children are never touched.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable

from cove.platform.base import PlatformError
from cove.platform.userland._sys import WALL

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from typing import Any, TypeVar

    T = TypeVar("T")


class Tracer:
    """Ptrace ownership and event plumbing for one platform's stubs."""

    def __init__(self) -> None:
        self.pgid = 0  # set by the first stub spawned (the anchor)
        self.wakeup = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)  # waiter -> cpu
        self._rearm = os.eventfd(1, os.EFD_CLOEXEC)  # cpu -> waiter; starts armed
        self.armed = True
        self._stash: dict[int, int] = {}  # statuses reaped while looking for another tid
        self._closed = False
        self._waiter: threading.Thread | None = None
        # the tracer thread's request channel
        self._req_fd = os.eventfd(0, os.EFD_CLOEXEC)
        self._rep_fd = os.eventfd(0, os.EFD_CLOEXEC)
        self._call_lock = threading.Lock()
        self._req: tuple[int, Callable[..., Any] | None, tuple[Any, ...]] = (0, None, ())
        self._rep: tuple[int, Any, BaseException | None] = (0, None, None)
        self._seq = 0
        self._stop_after = False
        self._server = threading.Thread(target=self._serve, name="cove-userland-tracer",
                                        daemon=True)
        self.server_tid = 0
        self._server.start()
        self.server_ident = self._server.ident
        self.waiter_tid = 0

    # --- the tracer thread --------------------------------------------------------
    def _serve(self) -> None:
        self.server_tid = threading.get_native_id()
        while True:
            try:
                os.eventfd_read(self._req_fd)
            except InterruptedError:  # pragma: no cover (PEP 475 retries)
                continue
            seq, fn, args = self._req
            if fn is None:
                self._rep = (seq, None, None)
                os.eventfd_write(self._rep_fd, 1)
                return
            try:
                self._rep = (seq, fn(*args), None)
            except BaseException as e:  # handed to the caller, who re-raises it
                self._rep = (seq, None, e)
            os.eventfd_write(self._rep_fd, 1)
            if self._stop_after:
                return

    def _post(self, fn: Callable[..., Any] | None, args: tuple[Any, ...]) -> int:
        """Hand a request to the tracer thread (call_lock held); its number."""
        self._seq += 1
        self._req = (self._seq, fn, args)
        os.eventfd_write(self._req_fd, 1)
        return self._seq

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the tracer thread (directly if already there)."""
        if threading.get_ident() == self.server_ident:
            return fn(*args)
        with self._call_lock:
            seq = self._post(fn, args)
            while True:
                os.eventfd_read(self._rep_fd)
                rseq, result, exc = self._rep
                if rseq == seq:  # an older reply belongs to a caller interrupted mid-wait
                    break
        if exc is not None:
            raise exc
        return result

    def run_owned(self, fn: Callable[..., T], *args: Any, interrupt: Callable[[], None]) -> T:
        """Run ``fn(*args)`` on the tracer thread and wait for it, like ``call``,
        for long-running work (a kernel's run loop). An exception raised in
        the caller's wait (a KeyboardInterrupt from a signal handler) calls
        ``interrupt()``, which must make ``fn`` return soon; once it has,
        that exception is re-raised here (``fn``'s own result is dropped)."""
        if threading.get_ident() == self.server_ident:
            return fn(*args)
        pending: BaseException | None = None
        with self._call_lock:
            seq = self._post(fn, args)
            while True:
                try:
                    os.eventfd_read(self._rep_fd)
                except BaseException as e:  # raised by a signal handler during the wait
                    if pending is None:
                        pending = e
                        interrupt()
                    continue  # fn still runs on the tracer thread: wait for it
                rseq, result, exc = self._rep
                if rseq == seq:
                    break
        if pending is not None:
            raise pending
        if exc is not None:
            raise exc
        return result

    @property
    def owner(self) -> bool:
        """Whether the calling thread is the tracer thread."""
        return threading.get_ident() == self.server_ident

    # --- the waiter thread --------------------------------------------------------
    def start_waiter(self, pgid: int) -> None:
        self.pgid = pgid
        self._waiter = threading.Thread(target=self._watch, name="cove-userland-waiter",
                                        daemon=True)
        self._waiter.start()

    def _watch(self) -> None:
        self.waiter_tid = threading.get_native_id()
        opts = os.WEXITED | os.WSTOPPED | os.WNOWAIT | WALL
        while True:
            os.eventfd_read(self._rearm)
            if self._closed:
                return
            try:
                os.waitid(os.P_PGID, self.pgid, opts)
            except ChildProcessError:
                if self._closed:
                    return
                continue  # cannot happen while the anchor lives
            os.eventfd_write(self.wakeup, 1)

    def rearm(self) -> None:
        """Let the waiter watch again (it posts one wakeup per arming)."""
        if not self.armed:
            self.armed = True
            os.eventfd_write(self._rearm, 1)

    def drain_wakeup(self) -> None:
        """Consume the waiter's wakeup, if posted; it is then disarmed. The
        cpu re-arms it only right before it polls for a guest event again, so
        the stops the tracer waits for itself in between (fault frames,
        interrupts, the injector) wake no one for nothing."""
        try:
            os.eventfd_read(self.wakeup)
        except BlockingIOError:
            return
        self.armed = False

    # --- reaping (any thread) ----------------------------------------------------------
    def wait(self, tid: int) -> int:
        """Block until ``tid`` has a stop or exit to report; its wait status."""
        st = self._stash.pop(tid, None)
        if st is not None:
            return st
        while True:
            try:
                _, st = os.waitpid(tid, WALL)
                return st
            except InterruptedError:  # pragma: no cover (PEP 475 retries)
                continue
            except ChildProcessError:
                raise PlatformError(f"stub thread {tid} vanished") from None

    def poll(self, tid: int) -> int | None:
        """``tid``'s status if it has one now, else None. Events of other
        tracees found on the way are kept for their own ``wait``."""
        st = self._stash.pop(tid, None)
        if st is not None:
            return st
        try:
            pid, st = os.waitpid(tid, os.WNOHANG | WALL)
        except ChildProcessError:
            raise PlatformError(f"stub thread {tid} vanished") from None
        if pid:
            return st
        self._sweep()
        return self._stash.pop(tid, None)

    def stashed(self, tid: int) -> int | None:
        """``tid``'s status if one was reaped while looking for another tid."""
        return self._stash.pop(tid, None) if self._stash else None

    def sweep(self) -> list[int]:
        """Reap every pending event of every tracee; the tids that have one."""
        self._sweep()
        return list(self._stash)

    def _sweep(self) -> None:
        """Reap stray events of other tracees so the waiter does not spin on them."""
        while self.pgid:
            try:
                pid, st = os.waitpid(-self.pgid, os.WNOHANG | WALL)
            except ChildProcessError:
                return
            except OSError as e:  # pragma: no cover
                if e.errno == errno.EINTR:
                    continue
                return
            if not pid:
                return
            self._stash[pid] = st

    def close(self) -> None:
        """After every stub is dead: stop both threads, free the eventfds."""
        self._closed = True
        os.eventfd_write(self._rearm, 1)
        if self.owner:
            # Closed from a request (inside run_owned): the thread ends after
            # it; its eventfds stay open (the caller still waits on one).
            self._stop_after = True
            return
        if self._server.is_alive():
            with self._call_lock:
                self._post(None, ())  # no function: the thread ends
                os.eventfd_read(self._rep_fd)
        for th in (self._waiter, self._server):
            if th is not None:
                th.join(timeout=2)
        if all(th is None or not th.is_alive() for th in (self._waiter, self._server)):
            for fd in (self.wakeup, self._rearm, self._req_fd, self._rep_fd):
                os.close(fd)
