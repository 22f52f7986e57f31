"""Anonymous pipes whose buffer is a host pipe, for platforms that can let a
guest's read/write on them run in the host kernel (``Capabilities.native_pipes``:
userland). The North keeps every rule that is about *who* is at the ends;
the host kernel, being Linux, does what is about the *bytes*.

What the host decides (it is Linux's own pipe code): capacity in page slots
(F_GETPIPE_SZ / F_SETPIPE_SZ, EBUSY when the data would not fit, the user's
pipe quota), PIPE_BUF atomicity and partial writes, packet mode (O_DIRECT),
FIONREAD, POLLIN and POLLOUT.

Where that differs from a cove pipe (pipe.py, which counts capacity in bytes
where Linux counts page slots) the host pipe has Linux's numbers: after a
64 KiB write and a 100-byte read, no slot is free, so even a 50-byte write
waits; a 100000-byte write after 100 bytes moves 1696 + 15 pages.

What the North keeps (``Pipe``, unchanged): reader and writer counts, so EOF
once no writer is left, EPIPE + SIGPIPE once no reader is left, POLLHUP and
POLLERR; O_NONBLOCK and sleeping; F_SETPIPE_SZ's pipe-max-size rule. The
supervisor holds both host ends for the pipe's whole life, so the host never
sees a pipe without readers or writers and never answers EOF or EPIPE itself.
Both supervisor ends are O_NONBLOCK: a North read or write never blocks the
sandbox; when the host says EAGAIN a blocking guest call sleeps on the
pipe's wait queues, exactly like a cove pipe.

No host fd is watched for readiness. Every byte enters or leaves the host
pipe either here (a North read/write: it notifies the other side's queue) or
in a native call the platform made only after ``NativeEnd.commit`` notified
the same queue. So a sleeper is always woken by a queue, and the queues'
generations keep edge-triggered epoll exact.

The native path (``NativePipes.native_rw``, asked by the platform while the
guest thread waits in its syscall; see ``cove.platform.base.NativeIo``):

- read/readv: the guest file is readable and the host pipe holds data
  (FIONREAD > 0). The host call returns at once with at most
  ``min(count, FIONREAD)`` bytes (less for a packet), the grant's limit.
- write/writev: the guest file is writable and not in packet mode, a reader
  exists (else EPIPE, the North's), and the write completes at once and
  whole: the host pipe is empty and ``count`` fits its capacity (every slot
  is free), or ``count`` <= PAGE_SIZE and a slot is free (host POLLOUT; such a
  write fills at most one slot).
- read/write on cove's ``/dev/null`` and ``/dev/zero`` (``NativeDevice``): the
  host's own devices, opened once by the supervisor and checked by device
  number, stand in at the guest's fd; Linux's drivers do what cove's do
  (``read_null`` 0, ``write_null``/``write_zero`` the count without touching
  the buffer, ``read_zero`` zeros over the whole buffer, which the platform
  checks first; at most ``NATIVE_ZERO_MAX`` bytes). Access modes are the
  North's (EBADF); /dev/full and /dev/urandom always go through the North.
- never while ``--trace`` records every syscall, and never for a context that
  is not the kernel's current task;
- not for the next call of a task whose native call woke a sleeper: that
  call is preempted at its entry (unanswered, ``Task.blocked_call`` set, still
  runnable) so the woken task runs first, as after a North write, and the
  sleeper waits no longer than before.

Calls the North need not run (``claim``, used by ``Kernel.syscall`` on the
call the platform just handed back): a read of an empty pipe or a write to
a full one, on a blocking file with the other end present, sleeps on the
queue its handler would have raised ``Blocked`` on, without running the
handler (nothing it checks earlier can fail for the well-formed buffers the
platform passes on); a preempted call waits in the run queue. When such a
task runs again, or a task blocked in a host pipe read/write wakes, the
kernel does not re-run the handler but hands the unanswered call back to the
platform (``resume``, ``Cpu.retry_native``), which offers it to the native
path as if just made; declined, it comes back to the North as a new call.
Not when a signal is pending for the task (its frame would be built around
an unanswered call): the North then answers the call first, as always. In a
stream where every write fills the pipe and every read empties it, each
read and write then runs in the host kernel and the North moves no byte.

Why no decision can be stale when the host runs the call: it depends only
on the syscall's registers (fd and count; only cove's ptrace could change
them) and on North state (the fd table, the reader count, the bytes in the
host pipe), and none of that can change between the answer and the call's
end: the platform asks from inside ``Cpu.run``, where no North code runs and
no other guest thread runs (one cpu, one guest thread at a time), and the
host pipe is touched only by North code and by guest threads. When several
guest threads run at once (the concurrent loop), the call may still be
running while the North goes on: the platform holds the grant until the
thread's next event (``NativeEnd.hold``/``release``), and meanwhile no other
call on that end is granted and the North copies nothing through it (a
reader or writer that would have sleeps until the release wakes it).

North-side copies (a call the native path declined: a buffer not populated
yet, a count that would leave a partial write) go straight between guest
frames and the host pipe (``fs_iov.guest_views``, one host readv/writev).

Fallbacks: a host pipe is made only while the sandbox holds fewer than
``HOST_PIPES_MAX`` of them (each costs the supervisor two fds) and only if the
host gives it Linux's default capacity (a user over the pipe quota gets
less); otherwise ``new_pipe`` makes a cove pipe, same semantics, no native
path. FIFOs are always cove pipes. Host pipes are not picklable: snapshots of
a live userland guest are refused before any pickling (cove.snapshot).
"""

from __future__ import annotations

import array
import fcntl
import os
import select
import stat
import weakref

from cove.abi import flags as F
from cove.abi.errno import E, Errno
from cove.fs.file import O_DIRECT, O_NONBLOCK
from cove.kernel import nativemode
from cove.kernel.pipe import PAGE_SIZE, PIPE_DEF_SIZE, Pipe, PipeFile, requested_size
from cove.kernel.sigerrno import epipe
from cove.kernel.syscalls.fs_iov import guest_views
from cove.kernel.wait import Blocked, WaitQueue

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from cove.kernel.kernel import Kernel
    from cove.kernel.nativemode import NativeMode
    from cove.kernel.task import Task

HOST_PIPES_MAX = 128  # per sandbox; beyond that pipes are cove pipes
# Linux's read_zero stops at a page boundary when a signal is pending, and the
# platform's preemption (PTRACE_INTERRUPT) makes one pending in the host, so a
# longer native read could come back short with no guest signal at all (dd
# then counts a partial record). One page is cleared whole; larger /dev/zero
# reads go through the North.
NATIVE_ZERO_MAX = 4096
F_SETPIPE_SZ, F_GETPIPE_SZ = 1031, 1032
_POLLOUT = select.POLLOUT

Segs = list[tuple[int, int]]
_RESUMABLE = frozenset((0, 1, 19, 20))  # read, write, readv, writev
_WRITES = (1, 20)


class NativeEnd:
    """One host end of a host pipe, as the platform sees it (a
    ``cove.platform.base.NativeGrant``; the object is its own key)."""

    __slots__ = ("_blocking", "host_fd", "inflight", "limit", "pipe", "write")

    def __init__(self, pipe: HostPipe, host_fd: int, write: bool) -> None:
        self.pipe = pipe
        self.host_fd = host_fd
        self.write = write
        self.limit = 0  # set with each grant
        # Granted calls the host may still be running (several guest threads
        # at once: hold/release). The host end is non-blocking: a second call
        # granted on the same state, or a North copy made meanwhile, could
        # leave one of them without its bytes or room, and its guest would see
        # EAGAIN on a blocking fd. So while one flies, both wait.
        self.inflight = 0
        self._blocking = -1

    def blocking_fd(self) -> int:
        """A blocking description of this end, for the platform to install in
        the guest (ours is O_NONBLOCK, and that flag belongs to the description):
        a granted call never blocks anyway, and a call in native mode
        (cove.kernel.nativemode) must block in the host as Linux's would.
        Opening /proc/self/fd/N of a pipe makes a new description of it."""
        if not self.pipe._fin.alive:
            raise OSError(9, "the pipe is closed")  # its fd numbers may be reused
        if self._blocking < 0:
            fd = os.open(f"/proc/self/fd/{self.host_fd}",
                         (os.O_WRONLY if self.write else os.O_RDONLY) | os.O_CLOEXEC)
            self._blocking = fd
            self.pipe._fds.append(fd)
        return self._blocking

    @property
    def key(self) -> object:
        return self

    def commit(self) -> None:
        """The platform lets a granted call run: its bytes move now."""
        q = self.pipe.rd_q if self.write else self.pipe.wr_q
        if q.waiters:
            self.pipe.owner.woke()
        q.notify()

    def hold(self) -> None:
        self.inflight += 1

    def release(self) -> None:
        self.inflight -= 1
        self.commit()
        (self.pipe.wr_q if self.write else self.pipe.rd_q).notify()  # those that waited on it


def _close(fds: list[int] | tuple[int, ...]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


class HostPipe(Pipe):
    """A ``Pipe`` whose bytes live in a host pipe (see module doc)."""

    def __init__(self, rd: int, wr: int, owner: NativePipes) -> None:
        self.rd, self.wr = rd, wr
        self._fds = [rd, wr]  # closed with the pipe (and the ends' blocking copies)
        # Native mode (cove.kernel.nativemode): the mode, and per end (read,
        # write) the last call the fast path let run and how often in a row.
        self.native: NativeMode | None = None
        self.streak: list[list | None] = [None, None]
        super().__init__(PIPE_DEF_SIZE)
        self.owner = owner
        owner.live += 1
        self.rd_end = NativeEnd(self, rd, False)
        self.wr_end = NativeEnd(self, wr, True)
        self._poller = select.poll()
        self._poller.register(wr, _POLLOUT)
        self._count = array.array("i", [0])
        self._fin = weakref.finalize(self, _close, self._fds)

    def __reduce__(self) -> object:
        raise TypeError("a host-backed pipe cannot be pickled (snapshots of live "
                        "userland guests are not supported)")

    def _north(self, copy: bool = False) -> None:
        """The North is about to read, write (``copy``) or change the pipe:
        native mode (if on) ends first (cove.kernel.nativemode)."""
        self.owner.north_copies += copy
        if self.native is not None:
            nativemode.leave(self.owner, self.native)

    def open_end(self, readable: bool, writable: bool) -> None:
        self._north()
        super().open_end(readable, writable)

    def close_end(self, readable: bool, writable: bool) -> None:
        self._north()
        super().close_end(readable, writable)

    # --- Pipe's buffer hooks ----------------------------------------------------
    def _init_buffer(self, capacity: int) -> None:
        self.capacity = capacity  # the host's, cached: only set_size changes it

    def _drop_buffer(self) -> None:
        if self._fin.alive:
            self._fin()
            self.owner.live -= 1

    @property
    def nbytes(self) -> int:  # type: ignore[override]
        """Unread bytes: the host's FIONREAD."""
        if not self._fin.alive:
            return 0
        fcntl.ioctl(self.rd, F.FIONREAD, self._count, True)
        return self._count[0]

    def has_data(self) -> bool:
        return self.nbytes > 0

    def has_room(self) -> bool:
        """A free slot, as Linux's pipe_poll reports POLLOUT."""
        return self._fin.alive and bool(self._poller.poll(0))

    def fits_now(self, count: int) -> bool:
        """Would a write of ``count`` bytes complete at once, whole?"""
        if count <= 0:
            return False
        if count <= PAGE_SIZE:
            return self.has_room()  # at most one slot (or a merge into the last)
        return count <= self.capacity and self.nbytes == 0  # empty: every slot free

    # --- data through the supervisor's ends ----------------------------------------
    def _held(self, end: NativeEnd) -> bool:
        """A native call on ``end`` may still be running (NativeEnd.inflight):
        the North must not copy through it; its thread is hurried to release it."""
        if not end.inflight:
            return False
        self.owner.hurry(end)
        return True

    def _north_io(self, end: NativeEnd, nonblock: bool, queue: WaitQueue) -> None:
        """The North is about to copy through ``end``: native mode ends first,
        and while a native call on it is held (``_held``) the caller waits for
        its release, which wakes ``queue`` (EAGAIN when non-blocking). Never
        EOF or a short count meanwhile: the held call may leave bytes or room,
        and the retry decides."""
        self._north(True)
        if self._held(end):
            if nonblock:
                raise Errno(E.EAGAIN)
            raise Blocked(queue)

    def read(self, size: int, nonblock: bool) -> bytes:
        if size <= 0:
            return b""
        self._north_io(self.rd_end, nonblock, self.rd_q)
        try:
            data = os.read(self.rd, min(size, self.capacity))
        except BlockingIOError:
            data = b""
        except OSError as e:
            raise Errno(e.errno or E.EIO) from None
        if data:
            self.wr_q.notify()
            return data
        return self._empty(nonblock)

    def _empty(self, nonblock: bool) -> bytes:
        if not self.has_writers():
            return b""  # EOF
        if nonblock:
            raise Errno(E.EAGAIN)
        raise Blocked(self.rd_q)

    def write(self, data: bytes | bytearray | memoryview, nonblock: bool, packet: bool) -> int:
        if len(data) == 0:
            return 0
        if not self.has_readers():
            raise epipe()
        return self._writev([data], nonblock, packet)

    def _writev(self, views: list, nonblock: bool, packet: bool) -> int:
        self._north_io(self.wr_end, nonblock, self.wr_q)  # a held write may need its room
        if packet:
            # Packet mode is the writing file's O_DIRECT: ours, for this write only
            # (no guest thread runs meanwhile, so nobody else writes through it).
            fcntl.fcntl(self.wr, fcntl.F_SETFL, os.O_NONBLOCK | os.O_DIRECT)
        try:
            n = os.writev(self.wr, views)
        except BlockingIOError:
            if nonblock:
                raise Errno(E.EAGAIN) from None
            raise Blocked(self.wr_q) from None  # woken by reads and the last reader leaving
        except OSError as e:
            raise Errno(e.errno or E.EIO) from None
        finally:
            if packet:
                fcntl.fcntl(self.wr, fcntl.F_SETFL, os.O_NONBLOCK)
        self.rd_q.notify()
        return n

    def set_size(self, arg: int) -> int:
        self._north()
        size = requested_size(arg, self.capacity)
        try:
            new = fcntl.fcntl(self.wr, F_SETPIPE_SZ, size)
        except OSError as e:
            raise Errno(e.errno or E.EINVAL) from None  # EBUSY: the data would not fit
        self.capacity = new
        self.wr_q.notify()
        return new

    # --- straight between the host pipe and guest frames ---------------------------
    def read_guest(self, t: Task, segs: Segs, nonblock: bool) -> int | None:
        """readv from the host pipe into guest memory with no copy in Python;
        None when the generic path must decide (nothing buffered, or a page of
        the destination that is not writable right now)."""
        if not any(n for _, n in segs):
            return 0  # Linux's pipe_read returns at once for an empty request
        self._north_io(self.rd_end, nonblock, self.rd_q)  # a held read's bytes: never EOF
        avail = self.nbytes
        if not avail:
            self._empty(nonblock)
            return 0  # EOF
        views = guest_views(t, segs, avail, True)
        if views is None:
            return None
        try:
            n = os.readv(self.rd, views)
        except BlockingIOError:
            return None
        except OSError as e:
            raise Errno(e.errno or E.EIO) from None
        self.wr_q.notify()
        return n

    def write_guest(self, t: Task, segs: Segs, nonblock: bool, packet: bool) -> int | None:
        """writev from guest memory into the host pipe with no copy in Python;
        None when the generic path must decide."""
        self._north()
        if packet or not self.has_readers():
            return None
        if not self.has_room():
            # Full: pipe_write sleeps (or says EAGAIN) before it reads the buffer.
            if not any(n for _, n in segs):
                return 0
            if nonblock:
                raise Errno(E.EAGAIN)
            raise Blocked(self.wr_q)
        # No more than the host can take, but the same length modulo a page:
        # Linux merges that remainder into the last page first.
        total = sum(n for _, n in segs)
        views = guest_views(t, segs, min(total, self.capacity + (total & (PAGE_SIZE - 1))),
                            False)
        if views is None:
            return None
        return self._writev(views, nonblock, False)


class HostPipeFile(PipeFile):
    """An end of a ``HostPipe``; ``fs_iov`` moves its data straight between
    guest memory and the host pipe (``read_guest``/``write_guest``)."""

    pipe: HostPipe


class NativePipes:
    """One kernel's ``cove.platform.base.NativeIo``: which guest pipe calls the
    platform may run natively (see module doc)."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.live = 0  # host pipes open in this sandbox
        self.north_copies = 0  # reads/writes of host pipes the North made itself (tests)
        self.native_modes = 0  # times a pipe went into native mode (tests)
        self.cut_short = 0  # native calls a kick stopped before a byte moved (tests)
        self._yielding: Task | None = None
        # The call (task, fd, write) just turned away that the North need not
        # run: it sleeps on ``sleep_on``, or is preempted at its entry if that
        # is None (``claim``, Kernel.syscall).
        self.deferred: tuple[Task, int, bool] | None = None
        self.sleep_on: WaitQueue | None = None
        self._devices: dict[type, NativeDevice] | None = None  # opened on first use

    def hurry(self, end: NativeEnd) -> None:
        """Someone waits for the native call held on ``end``: the platform
        stops its thread now (cove.platform.userland's cpu; others hold none)."""
        hurry = getattr(self.kernel.cpu, "hurry", None)
        if hurry is not None:
            hurry(end)

    def woke(self) -> None:
        """A native call woke a sleeper: the caller's next call goes through
        the North, which lets the sleeper run then, as after its own write.
        (The concurrent loop runs the sleeper at once, next to the caller.)"""
        if self.kernel.live_tasks is None:
            self._yielding = self.kernel.current

    def resume(self, t: Task, nr: int, raw: tuple[int, ...]) -> bool:
        """``t`` was woken in a read/write/readv/writev on a host pipe, or was
        preempted at the start of one on a host pipe or device: instead
        of running the handler again, let the platform offer the unanswered
        call to the native path, as if just made (if that declines, the call
        comes back to the North as a new one). True when the platform took it.

        Only when nothing else happens to ``t`` before it runs: no signal to
        deliver (the kernel delivers right before running; a frame built
        around an unanswered call would be wrong), no ``--trace``."""
        if nr not in _RESUMABLE or self.kernel.trace is not None:
            return False
        if t.pending.mask or t.proc.shared_pending.mask or t.restart_nr is not None:
            return False
        if t.write_carry:
            return False  # the rest of a write cut short: its registers still name the whole
        kind = type(t.files.files.get(raw[0] & 0xFFFFFFFF))
        if kind is not HostPipeFile and (not self._devices or kind not in self._devices):
            return False
        retry = getattr(self.kernel.cpu, "retry_native", None)
        return retry is not None and retry(t.ctx)

    def native_rw(self, ctx: object, fd: int, write: bool,
                  count: int) -> NativeEnd | NativeDevice | None:
        k = self.kernel
        t = k.current
        if t is None or t.ctx is not ctx:
            # The concurrent loop: the call is of whichever task the cpu heard from.
            t = k.live_tasks.get(ctx) if k.live_tasks else None
            if t is None:
                return None
        if k.trace is not None:
            return None
        f = t.files.files.get(fd)
        p = getattr(f, "pipe", None)
        if p is not None and getattr(p, "native", None) is not None:
            # A pipe in native mode: not a rule's call (those make no stop), so
            # the North makes it and ends native mode first (HostPipe._north).
            return None
        if self._yielding is not None:
            yielding, self._yielding = self._yielding, None
            if yielding is t:
                # Preempted at the call's entry (Kernel.syscall) so the task it
                # woke runs first; offered here again when t next runs, by when
                # it may no longer block (the woken task filled or drained).
                if type(f) is HostPipeFile or (self._devices and type(f) in self._devices):
                    self.deferred = (t, fd, write)
                return None
        if type(f) is not HostPipeFile:
            return self._device_rw(f, write, count)
        p = f.pipe
        if (p.wr_end if write else p.rd_end).inflight:
            return None  # another native call on this end may still run (NativeEnd.inflight)
        if write:
            if not f.writable or f.flags & O_DIRECT or not p.has_readers():
                return None
            if not p.fits_now(count):
                if not f.flags & O_NONBLOCK and not p.has_room():
                    self._sleep(t, fd, True, p.wr_q)  # full: HostPipe.write_guest's Blocked
                return None
            end = p.wr_end
            end.limit = count
            return end
        if not f.readable or count <= 0:
            return None
        avail = p.nbytes
        if not avail:
            if not f.flags & O_NONBLOCK and p.has_writers():
                self._sleep(t, fd, False, p.rd_q)  # empty: HostPipe.read_guest's Blocked
            return None
        end = p.rd_end
        end.limit = min(count, avail)
        return end

    def offer(self, ctx: object, fd: int, write: bool, buf: int, count: int) -> None:
        """The platform let this read/write run natively and could let it run
        with no stop at all next time (cove.kernel.nativemode)."""
        k = self.kernel
        if k.live_tasks is None:
            return
        t = k.live_tasks.get(ctx)
        if t is None and k.current is not None and k.current.ctx is ctx:
            t = k.current  # a woken call handed back, run as the task is launched
        if t is not None:
            nativemode.offer(self, t, fd, write, buf, count)

    def _sleep(self, t: Task, fd: int, write: bool, queue: WaitQueue) -> None:
        """The call would sleep on ``queue`` in the North, exactly as its
        handler would (the platform passed only well-formed buffers and
        counts, so nothing the handler checks earlier can fail): the kernel
        parks ``t`` there without running it (Kernel.syscall), and the call
        is offered to the native path again once ``t`` is woken."""
        self.deferred = (t, fd, write)
        self.sleep_on = queue

    def claim(self, t: Task, nr: int, raw: tuple[int, ...]) -> WaitQueue | bool:
        """For Kernel.syscall, about the call the platform just returned: the
        queue it sleeps on, True if it is preempted at its entry, False if
        it is the North's to answer (see ``native_rw``). Always forgets the
        verdict, which is only about that one call."""
        deferred, self.deferred = self.deferred, None
        queue, self.sleep_on = self.sleep_on, None
        if (deferred is None or deferred[0] is not t or nr not in _RESUMABLE
                or deferred[1] != raw[0] & 0xFFFFFFFF or deferred[2] != (nr in _WRITES)):
            return False
        return True if queue is None else queue

    def _device_rw(self, f: object, write: bool, count: int) -> NativeDevice | None:
        """The grant for a read/write of cove's /dev/null or /dev/zero: the
        host's own device at the guest's fd (see ``NativeDevice``)."""
        devices = self._devices
        if devices is None:
            devices = self._devices = _open_devices()
            if devices:
                self._fin = weakref.finalize(self, _close, tuple(d.host_fd for d in
                                                                 devices.values()))
        dev = devices.get(type(f))
        if dev is None:
            return None
        if write:
            if not f.writable:  # type: ignore[attr-defined]
                return None
            dev.limit = 0  # write_null and write_zero look at no byte of the buffer
        elif not f.readable:  # type: ignore[attr-defined]
            return None
        elif dev.zero:
            if count > NATIVE_ZERO_MAX:
                return None  # the platform checks every page of the buffer first
            dev.limit = count  # every byte is stored (zeros)
        else:
            dev.limit = 0  # read_null returns 0 at once
        return dev


class NativeDevice:
    """A host character device that stands in for cove's ``/dev/null`` or
    ``/dev/zero`` on the native path (a ``NativeGrant``; its own key). The
    host's drivers are Linux's: ``read_null`` returns 0 and ``write_null`` /
    ``write_zero`` return the count without touching the buffer (so do
    cove's, ``cove.fs.devfs``); ``read_zero`` stores zeros over the buffer
    (which the platform checks page by page first, ``limit`` bytes). The
    supervisor opens each once, read-write, and checks it is the device it
    names; nothing but read/write/readv/writev ever reaches it, and only
    for a guest fd that is that cove device."""

    __slots__ = ("host_fd", "limit", "zero")

    def __init__(self, host_fd: int, zero: bool) -> None:
        self.host_fd = host_fd
        self.zero = zero
        self.limit = 0

    @property
    def key(self) -> object:
        return self

    def commit(self) -> None:
        """Nothing the North keeps changes."""

    def hold(self) -> None:
        """The host's device never runs out of bytes or room: nothing to keep."""

    def release(self) -> None:
        """As ``hold``."""


def _open_devices() -> dict[type, NativeDevice]:
    """The host's /dev/null and /dev/zero, each verified by its device number
    (a container's /dev may hold anything), keyed by the cove driver class
    they stand in for; those that do not open are left to the North."""
    from cove.fs.devfs import NullDevice, ZeroDevice

    out: dict[type, NativeDevice] = {}
    for cls, path, minor in ((NullDevice, "/dev/null", 3), (ZeroDevice, "/dev/zero", 5)):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOCTTY)
        except OSError:
            continue
        st = os.fstat(fd)
        if not stat.S_ISCHR(st.st_mode) or st.st_rdev != os.makedev(1, minor):
            os.close(fd)
            continue
        out[cls] = NativeDevice(fd, cls is ZeroDevice)
    return out


def native_io(kernel: Kernel) -> NativePipes | None:
    """``kernel``'s ``NativePipes``, made and registered with the platform on
    first use; None when the platform runs no guest I/O natively."""
    np = kernel.native_io
    if np is None:
        caps = getattr(kernel.platform, "capabilities", None)
        if not getattr(caps, "native_pipes", False):
            return None
        np = kernel.native_io = NativePipes(kernel)
        kernel.platform.set_native_io(np)  # type: ignore[attr-defined]
    return np


def host_pipe(kernel: Kernel) -> HostPipe | None:
    """A new host-backed pipe for ``kernel`` (registering its ``NativePipes``
    with the platform on first use), or None when a cove pipe must do."""
    np = native_io(kernel)
    if np is None or np.live >= HOST_PIPES_MAX:
        return None
    try:
        rd, wr = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None  # the supervisor is out of fds: a cove pipe works the same
    try:
        size = fcntl.fcntl(wr, F_GETPIPE_SZ)
        if size != PIPE_DEF_SIZE:
            size = fcntl.fcntl(wr, F_SETPIPE_SZ, PIPE_DEF_SIZE)
    except OSError:
        size = 0
    if size != PIPE_DEF_SIZE:
        _close((rd, wr))  # over the user's pipe quota: not Linux's default size
        return None
    return HostPipe(rd, wr, np)
