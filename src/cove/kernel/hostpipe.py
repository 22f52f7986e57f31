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
- never while ``--trace`` records every syscall, and never for a context that
  is not the kernel's current task;
- not for the next call of a task whose native call woke a sleeper: that
  call goes through the North, which switches to the woken task as it does
  after a North write, so the sleeper waits no longer than before.

Why no decision can be stale when the host runs the call: it depends only
on the syscall's registers (fd and count; only cove's ptrace could change
them) and on North state (the fd table, the reader count, the bytes in the
host pipe), and none of that can change between the answer and the call's
end: the platform asks from inside ``Cpu.run``, where no North code runs and
no other guest thread runs (one cpu, one guest thread at a time), and the
host pipe is touched only by North code and by guest threads.

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
import weakref
from typing import TYPE_CHECKING

from cove.abi import flags as F
from cove.abi.errno import E, Errno
from cove.fs.file import O_DIRECT, O_NONBLOCK
from cove.kernel.pipe import PAGE_SIZE, PIPE_DEF_SIZE, PIPE_MAX_SIZE, Pipe, PipeFile
from cove.kernel.sigerrno import epipe
from cove.kernel.wait import Blocked

if TYPE_CHECKING:
    from cove.kernel.kernel import Kernel
    from cove.kernel.task import Task

HOST_PIPES_MAX = 128  # per sandbox; beyond that pipes are cove pipes
IOV_MAX = 1024  # host readv/writev take at most this many pieces
F_SETPIPE_SZ, F_GETPIPE_SZ = 1031, 1032
_POLLOUT = select.POLLOUT

Segs = list[tuple[int, int]]
_RESUMABLE = frozenset((0, 1, 19, 20))  # read, write, readv, writev


class NativeEnd:
    """One host end of a host pipe, as the platform sees it (a
    ``cove.platform.base.NativeGrant``; the object is its own key)."""

    __slots__ = ("host_fd", "limit", "pipe", "write")

    def __init__(self, pipe: HostPipe, host_fd: int, write: bool) -> None:
        self.pipe = pipe
        self.host_fd = host_fd
        self.write = write
        self.limit = 0  # set with each grant

    @property
    def key(self) -> object:
        return self

    def commit(self) -> None:
        """The platform lets a granted call run: its bytes move now."""
        q = self.pipe.rd_q if self.write else self.pipe.wr_q
        if q.waiters:
            self.pipe.owner.woke()
        q.notify()


def _close(fds: tuple[int, int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


class HostPipe(Pipe):
    """A ``Pipe`` whose bytes live in a host pipe (see module doc)."""

    def __init__(self, rd: int, wr: int, owner: NativePipes) -> None:
        self.rd, self.wr = rd, wr
        super().__init__(PIPE_DEF_SIZE)
        self.owner = owner
        owner.live += 1
        self.rd_end = NativeEnd(self, rd, False)
        self.wr_end = NativeEnd(self, wr, True)
        self._poller = select.poll()
        self._poller.register(wr, _POLLOUT)
        self._count = array.array("i", [0])
        self._fin = weakref.finalize(self, _close, (rd, wr))

    def __reduce__(self) -> object:
        raise TypeError("a host-backed pipe cannot be pickled (snapshots of live "
                        "userland guests are not supported)")

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
    def read(self, size: int, nonblock: bool) -> bytes:
        if size <= 0:
            return b""
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
        arg &= 0xFFFFFFFF
        if arg > 1 << 31:
            raise Errno(E.EINVAL)
        size = PAGE_SIZE if arg <= PAGE_SIZE else 1 << (arg - 1).bit_length()
        if size > self.capacity and size > PIPE_MAX_SIZE:
            raise Errno(E.EPERM)  # beyond pipe-max-size needs CAP_SYS_RESOURCE
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
        avail = self.nbytes
        if not avail:
            # Linux's pipe_read looks at the buffer only once there is data.
            if not any(n for _, n in segs):
                return 0
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


def guest_views(t: Task, segs: Segs, limit: int, write: bool) -> list[memoryview] | None:
    """Views of guest physical memory for the first ``limit`` bytes of
    ``segs`` (physically adjacent pages merged), or None when a page is not
    accessible as asked right now (not yet populated, copy-on-write, absent:
    ``MemoryMap.read``/``write`` then decide) or there would be too many."""
    space = t.mm.space
    mem = t.kernel.phys.mem
    views: list[memoryview] = []
    start = end = -1
    left = limit
    for addr, length in segs:
        length = min(length, left)
        while length > 0:
            pa = space.translate(addr, write)
            if pa is None:
                return None
            step = min(length, PAGE_SIZE - (addr & (PAGE_SIZE - 1)))
            if pa == end:
                end += step
            else:
                if start >= 0:
                    views.append(mem[start:end])
                start, end = pa, pa + step
            addr += step
            length -= step
            left -= step
        if left <= 0:
            break
    if start >= 0:
        views.append(mem[start:end])
    return views if len(views) <= IOV_MAX else None


class HostPipeFile(PipeFile):
    """An end of a ``HostPipe``; ``fs_iov`` moves its data straight between
    guest memory and the host pipe (``read_guest``/``write_guest``)."""

    pipe: HostPipe

    def read_guest(self, t: Task, segs: Segs) -> int | None:
        return self.pipe.read_guest(t, segs, bool(self.flags & O_NONBLOCK))

    def write_guest(self, t: Task, segs: Segs) -> int | None:
        return self.pipe.write_guest(t, segs, bool(self.flags & O_NONBLOCK),
                                     bool(self.flags & O_DIRECT))


class NativePipes:
    """One kernel's ``cove.platform.base.NativeIo``: which guest pipe calls the
    platform may run natively (see module doc)."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.live = 0  # host pipes open in this sandbox
        self._yielding: Task | None = None

    def woke(self) -> None:
        """A native call woke a sleeper: the caller's next call goes through
        the North, which lets the sleeper run then, as after its own write."""
        self._yielding = self.kernel.current

    def resume(self, t: Task, nr: int, raw: tuple[int, ...]) -> bool:
        """``t`` was woken in a read/write/readv/writev on a host pipe: instead
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
        if type(t.files.files.get(raw[0] & 0xFFFFFFFF)) is not HostPipeFile:
            return False
        retry = getattr(self.kernel.cpu, "retry_native", None)
        return retry is not None and retry(t.ctx)

    def native_rw(self, ctx: object, fd: int, write: bool, count: int) -> NativeEnd | None:
        k = self.kernel
        t = k.current
        if t is None or t.ctx is not ctx or k.trace is not None:
            return None
        if self._yielding is not None:
            yielding, self._yielding = self._yielding, None
            if yielding is t:
                return None
        f = t.files.files.get(fd)
        if type(f) is not HostPipeFile:
            return None
        p = f.pipe
        if write:
            if (not f.writable or f.flags & O_DIRECT or not p.has_readers()
                    or not p.fits_now(count)):
                return None
            end = p.wr_end
            end.limit = count
            return end
        if not f.readable or count <= 0:
            return None
        avail = p.nbytes
        if not avail:
            return None
        end = p.rd_end
        end.limit = min(count, avail)
        return end


def host_pipe(kernel: Kernel) -> HostPipe | None:
    """A new host-backed pipe for ``kernel`` (registering its ``NativePipes``
    with the platform on first use), or None when a cove pipe must do."""
    np = getattr(kernel, "native_io", None)  # a kernel restored from a snapshot may lack it
    if np is None:
        np = kernel.native_io = NativePipes(kernel)
        kernel.platform.set_native_io(np)  # type: ignore[attr-defined]
    if np.live >= HOST_PIPES_MAX:
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
