"""cove's pipes and FIFOs.

A ``Pipe`` is the shared buffer with its reader and writer counts; a
``PipeFile`` is one open end of it (an fd's open file description). Anonymous
pipes come from pipe2(2); FIFOs are opened through the VFS, which calls the
opener ``install_fifos`` registers, so every open of one FIFO inode shares one
``Pipe`` while anyone holds it open.

On a platform that runs guest pipe I/O natively (``Capabilities.native_pipes``:
userland) an anonymous pipe's buffer is a host pipe instead
(``cove.kernel.hostpipe.HostPipe``, a subclass with the same reader/writer
accounting); ``new_pipe`` decides. FIFOs are always cove's own buffer.

Semantics follow fs/pipe.c: 64 KiB default capacity (F_GETPIPE_SZ /
F_SETPIPE_SZ through ``pipe_fcntl``), writes of at most PIPE_BUF bytes are
atomic (all or wait), larger ones may be partial (cove returns what fits
instead of sleeping in the middle of a write, which POSIX allows when a
signal interrupts and guests loop on anyway), EOF once no writer is left,
EPIPE + SIGPIPE once no reader is left, EAGAIN under O_NONBLOCK, and packet
mode (O_DIRECT) where each write is one message.

Blocking follows ``cove.kernel.wait``: every check happens before any state
changes, then ``Blocked`` sleeps on the queue that will announce the change.

Guest data moves with one copy each way (``read_guest``/``write_guest``,
fs_iov's hooks): a write joins the guest's frames into one chunk, a read
copies chunks straight into the guest's frames (``fs_iov.guest_views``);
both wait, or say EAGAIN or EOF, before they look at the buffer, as
pipe_read/pipe_write do. Buffers not ready for that (not populated yet,
copy-on-write) and packet writes take the generic path.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable

from cove.abi import flags as F
from cove.abi.errno import E, Errno
from cove.fs.file import O_ACCMODE, O_DIRECT, O_NONBLOCK, O_RDONLY, O_RDWR, O_WRONLY, File
from cove.fs.node import S_IFIFO, S_IFMT, Stat, StatFs, makedev
from cove.kernel.pollable import Pollable
from cove.kernel.sigerrno import epipe
from cove.kernel.syscalls.fs_iov import Segs, guest_views
from cove.kernel.task import State
from cove.kernel.wait import Blocked, WaitQueue

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from cove.fs.mount import Location
    from cove.fs.vfs import VFS
    from cove.kernel.kernel import Kernel
    from cove.kernel.task import Task

PAGE_SIZE = 4096
PIPE_BUF = 4096  # writes up to this size are atomic
PIPE_DEF_SIZE = 16 * PAGE_SIZE
PIPE_MAX_SIZE = 1 << 20  # /proc/sys/fs/pipe-max-size: the unprivileged ceiling
PIPEFS_DEV = makedev(0, 12)  # st_dev of anonymous pipes (pipefs)
PIPEFS_MAGIC = 0x50495045

_inos = itertools.count(0x1000)


def next_ino() -> int:
    """A fresh inode number for a synthetic (pipefs-like) object."""
    return next(_inos)


def _live(grants: dict[Task, object]) -> int:
    """How many granted FIFO openers are still inside the open that was granted.

    A grant is recorded against the task's pending call (``t.blocked_call``);
    once that call finishes, is interrupted or re-blocks, the grant lapses.
    """
    for t in [t for t, call in grants.items()
              if t.blocked_call is not call or t.state is State.DEAD]:
        del grants[t]
    return len(grants)



def requested_size(arg: int, capacity: int) -> int:
    """F_SETPIPE_SZ's argument rounded up to a power of two pages, as Linux
    checks it (EINVAL past 2 GiB, EPERM past pipe-max-size for a growth)."""
    arg &= 0xFFFFFFFF
    if arg > 1 << 31:
        raise Errno(E.EINVAL)
    size = PAGE_SIZE if arg <= PAGE_SIZE else 1 << (arg - 1).bit_length()
    if size > capacity and size > PIPE_MAX_SIZE:
        raise Errno(E.EPERM)  # beyond pipe-max-size needs CAP_SYS_RESOURCE
    return size

class Pipe:
    """The buffer shared by a pipe's ends, with their counts and wait queues."""

    def __init__(self, capacity: int = PIPE_DEF_SIZE) -> None:
        self._init_buffer(capacity)
        self.readers = 0
        self.writers = 0
        self.r_counter = 1  # opens for reading/writing so far (fifo partner detection)
        self.w_counter = 1
        self.rd_q = WaitQueue()  # data arrived, or the last writer left
        self.wr_q = WaitQueue()  # room was freed, or the last reader left
        # FIFO opens waiting for a partner, and partners granted to them (see
        # FifoOpener): like Linux, which counts a sleeping opener, a waiting or
        # granted opener counts as a reader/writer until its open returns.
        self.open_rd_q = WaitQueue()
        self.open_wr_q = WaitQueue()
        self.read_grants: dict[Task, object] = {}
        self.write_grants: dict[Task, object] = {}
        self.on_idle: Callable[[Pipe], None] | None = None
        self.ino = next_ino()
        self.ctime_ns = time.time_ns()

    def _init_buffer(self, capacity: int) -> None:
        self.capacity = capacity
        # Unread data as [bytes, consumed, is_packet] chunks, oldest first.
        self.chunks: deque[list] = deque()
        self.nbytes = 0  # unread bytes
        self.used = 0  # capacity in use: stream bytes, or a whole page per packet

    def _drop_buffer(self) -> None:
        """The last opener left: Linux frees the buffer, data is lost."""
        self.chunks.clear()
        self.nbytes = self.used = 0

    # --- state -----------------------------------------------------------------
    @property
    def free(self) -> int:
        return self.capacity - self.used

    def has_data(self) -> bool:
        """POLLIN: something to read."""
        return self.nbytes > 0

    def has_room(self) -> bool:
        """POLLOUT: a PIPE_BUF write would not wait."""
        return self.free >= PIPE_BUF

    def has_readers(self) -> bool:
        return self.readers > 0 or bool(self.open_rd_q.waiters) or _live(self.read_grants) > 0

    def has_writers(self) -> bool:
        return self.writers > 0 or bool(self.open_wr_q.waiters) or _live(self.write_grants) > 0

    def idle(self) -> bool:
        return (not self.readers and not self.writers and not self.open_rd_q
                and not self.open_wr_q and not _live(self.read_grants)
                and not _live(self.write_grants))

    # --- data ------------------------------------------------------------------
    def read(self, size: int, nonblock: bool) -> bytes:
        if size <= 0:
            return b""
        if not self.nbytes:
            if not self.has_writers():
                return b""  # EOF
            if nonblock:
                raise Errno(E.EAGAIN)
            raise Blocked(self.rd_q)
        out = bytearray()
        chunks = self.chunks
        while chunks and len(out) < size:
            data, off, _ = chunks[0]
            take = min(size - len(out), len(data) - off)
            out += data[off:off + take]
            if self._consume(take):
                break
        self.wr_q.notify()
        return bytes(out)

    def _consume(self, take: int) -> bool:
        """Drop ``take`` read bytes from the head chunk. True when that ends the
        read: a packet is one message per read, and what did not fit is discarded."""
        chunk = self.chunks[0]
        data, off, packet = chunk
        if packet:
            self.chunks.popleft()
            self.nbytes -= len(data) - off
            self.used -= PAGE_SIZE
            return True
        off += take
        self.nbytes -= take
        self.used -= take
        if off == len(data):
            self.chunks.popleft()
        else:
            chunk[1] = off
        return False

    def write(self, data: bytes | bytearray | memoryview, nonblock: bool, packet: bool) -> int:
        n = len(data)
        if n == 0:
            return 0
        if not self.has_readers():
            raise epipe()
        free = self.free
        if packet:
            # Each page-sized piece is one message taking one page of capacity.
            need = PAGE_SIZE if n > PIPE_BUF else -(-n // PAGE_SIZE) * PAGE_SIZE
            room = (free // PAGE_SIZE) * PAGE_SIZE
            if room < need:
                if nonblock:
                    raise Errno(E.EAGAIN)
                raise Blocked(self.wr_q)
            take = min(n, room)
            view = memoryview(data)
            for off in range(0, take, PAGE_SIZE):
                piece = bytes(view[off:min(off + PAGE_SIZE, take)])
                self.chunks.append([piece, 0, True])
                self.nbytes += len(piece)
                self.used += PAGE_SIZE
        else:
            # Atomic below PIPE_BUF; larger writes need a page of room, as a
            # Linux pipe needs a free slot, and may stop short.
            need = n if n <= PIPE_BUF else PIPE_BUF
            if free < need:
                if nonblock:
                    raise Errno(E.EAGAIN)
                raise Blocked(self.wr_q)  # woken by reads and by the last reader leaving
            take = min(n, free)
            self.chunks.append([bytes(data[:take]), 0, False])
            self.nbytes += take
            self.used += take
        self.rd_q.notify()
        return take

    # --- straight between the buffer and guest frames (fs_iov's hooks) --------------
    def read_guest(self, t: Task, segs: Segs, nonblock: bool) -> int | None:
        """``read`` into guest memory with the chunks copied straight into the
        guest's frames; None when the generic path must decide (a page of the
        destination not ready for a direct copy: fs_iov.guest_views)."""
        if not any(n for _, n in segs):
            return 0  # pipe_read: a null read succeeds before anything else
        if not self.nbytes:
            self.read(1, nonblock)  # EOF (b""), EAGAIN or Blocked: the buffer is not looked at
            return 0
        views = guest_views(t, segs, self.nbytes, True)
        if views is None:
            return None
        chunks = self.chunks
        done = 0
        for view in views:
            vlen, pos = len(view), 0
            while pos < vlen and chunks:
                data, off, _ = chunks[0]
                take = min(vlen - pos, len(data) - off)
                view[pos:pos + take] = memoryview(data)[off:off + take]
                pos += take
                if self._consume(take):
                    self.wr_q.notify()
                    return done + pos
            done += pos
            if not chunks:
                break
        self.wr_q.notify()
        return done

    def write_guest(self, t: Task, segs: Segs, nonblock: bool, packet: bool) -> int | None:
        """``write`` from guest memory with one copy into the new chunk; None
        when the generic path must decide (packet mode, no reader: EPIPE, a
        source page not ready for a direct copy)."""
        n = sum(n for _, n in segs)
        if packet or n == 0 or not self.has_readers():
            return None
        free = self.free
        # Atomic below PIPE_BUF; larger writes need a page of room (see write).
        if free < (n if n <= PIPE_BUF else PIPE_BUF):
            if nonblock:
                raise Errno(E.EAGAIN)
            raise Blocked(self.wr_q)  # pipe_write waits before it reads the buffer
        take = min(n, free)
        views = guest_views(t, segs, take, False)
        if views is None:
            return None
        self.chunks.append([b"".join(views), 0, False])
        self.nbytes += take
        self.used += take
        self.rd_q.notify()
        return take

    def set_size(self, arg: int) -> int:
        """F_SETPIPE_SZ: round up to a power of two pages; returns the new size."""
        size = requested_size(arg, self.capacity)
        if -(-self.used // PAGE_SIZE) > size // PAGE_SIZE:
            raise Errno(E.EBUSY)  # the data would not fit
        self.capacity = size
        self.wr_q.notify()
        return size

    # --- ends ------------------------------------------------------------------
    def open_end(self, readable: bool, writable: bool) -> None:
        if readable:
            self.readers += 1
            self.r_counter += 1
            self.wr_q.notify()
        if writable:
            self.writers += 1
            self.w_counter += 1
            self.rd_q.notify()

    def close_end(self, readable: bool, writable: bool) -> None:
        if readable:
            self.readers -= 1
            if not self.readers:
                self.wr_q.notify()  # writers now get EPIPE / POLLERR
        if writable:
            self.writers -= 1
            if not self.writers:
                self.rd_q.notify()  # readers now get EOF / POLLHUP
        if not self.readers and not self.writers and self.idle():
            self._drop_buffer()
            if self.on_idle is not None:
                self.on_idle(self)


class PipeFile(Pollable, File):
    """One open end of a pipe or FIFO."""

    fasync = True  # FIOASYNC is accepted (cove sends no SIGIO yet)

    def __init__(self, pipe: Pipe, flags: int, location: Location | None = None,
                 uid: int = 0, gid: int = 0) -> None:
        super().__init__(flags)
        self.pipe = pipe
        self.location = location
        self.uid, self.gid = uid, gid
        # A FIFO reader opened O_NONBLOCK before any writer must not see
        # POLLHUP until a writer has come (fs/pipe.c's f_version trick).
        self.w_seen = -1
        self._ends = (self.readable, self.writable)
        pipe.open_end(*self._ends)

    def read(self, size: int) -> bytes:
        self.check_readable()
        return self.pipe.read(size, bool(self.flags & O_NONBLOCK))

    def write(self, data: bytes) -> int:
        self.check_writable()
        return self.pipe.write(data, bool(self.flags & O_NONBLOCK), bool(self.flags & O_DIRECT))

    def read_guest(self, t: Task, segs: Segs) -> int | None:
        """fs_iov's zero-copy hook (see ``Pipe.read_guest``)."""
        return self.pipe.read_guest(t, segs, bool(self.flags & O_NONBLOCK))

    def write_guest(self, t: Task, segs: Segs) -> int | None:
        """fs_iov's zero-copy hook (see ``Pipe.write_guest``)."""
        return self.pipe.write_guest(t, segs, bool(self.flags & O_NONBLOCK),
                                     bool(self.flags & O_DIRECT))

    def stat(self) -> Stat:
        if self.location is not None:
            return self.location.inode.stat()
        p = self.pipe
        return Stat(ino=p.ino, mode=S_IFIFO | 0o600, nlink=1, uid=self.uid, gid=self.gid,
                    dev=PIPEFS_DEV, blksize=PAGE_SIZE, atime_ns=p.ctime_ns,
                    mtime_ns=p.ctime_ns, ctime_ns=p.ctime_ns)

    @property
    def statfs(self) -> Callable[[], StatFs] | None:
        """fstatfs: pipefs for an anonymous pipe; a FIFO reports the
        filesystem it lives on (None sends fstatfs to its location)."""
        return None if self.location is not None else _pipefs_statfs

    def proc_name(self) -> str:
        return f"pipe:[{self.pipe.ino}]"

    def release(self) -> None:
        self.pipe.close_end(*self._ends)

    # --- readiness and ioctls --------------------------------------------------
    def poll_events(self) -> int:
        p = self.pipe
        mask = 0
        if self.readable:
            if p.has_data():
                mask |= F.POLLIN | F.POLLRDNORM
            if not p.has_writers() and self.w_seen != p.w_counter:
                mask |= F.POLLHUP
        if self.writable:
            if p.has_room():
                mask |= F.POLLOUT | F.POLLWRNORM
            if not p.has_readers():
                mask |= F.POLLERR
        return mask

    def poll_queues(self) -> tuple[WaitQueue, ...]:
        return (self.pipe.rd_q, self.pipe.wr_q)

    def ioctl(self, t: Task, cmd: int, arg: int) -> int:
        if cmd == F.FIONREAD:
            t.mm.write(arg, min(self.pipe.nbytes, 0x7FFFFFFF).to_bytes(4, "little"))
            return 0
        raise Errno(E.ENOTTY)


def _pipefs_statfs() -> StatFs:
    return StatFs(fstype=PIPEFS_MAGIC)


def new_pipe(flags: int, uid: int = 0, gid: int = 0,
             kernel: Kernel | None = None) -> tuple[PipeFile, PipeFile]:
    """An anonymous pipe's read and write ends; ``flags`` may hold O_NONBLOCK
    and O_DIRECT (both ends get them). Given the ``kernel``, the buffer is a
    host pipe where its platform runs pipe I/O natively (see module doc)."""
    extra = flags & (O_NONBLOCK | O_DIRECT)
    caps = getattr(kernel.platform, "capabilities", None) if kernel is not None else None
    if kernel is not None and getattr(caps, "native_pipes", False):
        from cove.kernel.hostpipe import HostPipeFile, host_pipe

        hp = host_pipe(kernel)
        if hp is not None:
            return (HostPipeFile(hp, O_RDONLY | extra, uid=uid, gid=gid),
                    HostPipeFile(hp, O_WRONLY | extra, uid=uid, gid=gid))
    pipe = Pipe()
    return (PipeFile(pipe, O_RDONLY | extra, uid=uid, gid=gid),
            PipeFile(pipe, O_WRONLY | extra, uid=uid, gid=gid))


def pipe_fcntl(file: File, cmd: int, arg: int) -> int:
    """F_GETPIPE_SZ / F_SETPIPE_SZ for the fcntl handler; EBADF for non-pipes
    (as Linux's pipe_fcntl), EINVAL for other commands."""
    if not isinstance(file, PipeFile):
        raise Errno(E.EBADF)
    if cmd == F.F_GETPIPE_SZ:
        return file.pipe.capacity
    if cmd == F.F_SETPIPE_SZ:
        return file.pipe.set_size(arg)
    raise Errno(E.EINVAL)


# --- FIFOs ---------------------------------------------------------------------
def _grant(queue: WaitQueue, grants: dict[Task, object]) -> None:
    """Partners for the openers sleeping on ``queue``: each may now complete
    its open even if this end closes again before it runs (Linux counts a
    sleeping opener as present, and cove re-runs its open from the start)."""
    for t in queue.waiters:
        grants[t] = t.blocked_call
    queue.notify()


class FifoOpener:
    """``vfs.special_openers[S_IFIFO]``: one ``Pipe`` per FIFO inode while open.

    fifo_open's rules: O_RDONLY waits for a writer (unless O_NONBLOCK),
    O_WRONLY waits for a reader (O_NONBLOCK: ENXIO without one), O_RDWR never
    waits. A waiting open raises ``Blocked``; the VFS passes it up to openat.
    """

    def __init__(self) -> None:
        self.pipes: dict[tuple[int, int], Pipe] = {}

    def _pipe(self, loc: Location) -> Pipe:
        key = loc.inode.key
        pipe = self.pipes.get(key)
        if pipe is None:
            pipe = self.pipes[key] = Pipe()
            pipe.r_counter = pipe.w_counter = 0
            pipe.on_idle = lambda p, key=key: self._forget(key, p)
        return pipe

    def _forget(self, key: tuple[int, int], pipe: Pipe) -> None:
        if self.pipes.get(key) is pipe:
            del self.pipes[key]

    def __call__(self, loc: Location, flags: int) -> File:
        if loc.inode.mode & S_IFMT != S_IFIFO:
            raise Errno(E.ENXIO)
        pipe = self._pipe(loc)
        acc = flags & O_ACCMODE
        nonblock = bool(flags & O_NONBLOCK)
        file_flags = flags & ~F.O_CLOEXEC & ~F.O_CREAT & ~F.O_EXCL & ~F.O_TRUNC & ~F.O_NOCTTY
        if acc == O_RDONLY:
            if not nonblock and not pipe.has_writers() and not _live(pipe.read_grants):
                raise Blocked(pipe.open_rd_q)
            no_writer = not pipe.has_writers()
            f = PipeFile(pipe, file_flags, loc)
            if nonblock and no_writer:
                f.w_seen = pipe.w_counter
            _grant(pipe.open_wr_q, pipe.write_grants)
            return f
        if acc == O_WRONLY:
            if not pipe.has_readers() and not _live(pipe.write_grants):
                if nonblock:
                    raise Errno(E.ENXIO)
                raise Blocked(pipe.open_wr_q)
            f = PipeFile(pipe, file_flags, loc)
            _grant(pipe.open_rd_q, pipe.read_grants)
            return f
        if acc == O_RDWR:
            f = PipeFile(pipe, file_flags, loc)
            _grant(pipe.open_rd_q, pipe.read_grants)
            _grant(pipe.open_wr_q, pipe.write_grants)
            return f
        raise Errno(E.EINVAL)


def install_fifos(vfs: VFS) -> FifoOpener:
    """Make FIFOs in ``vfs`` open as cove pipes."""
    opener = FifoOpener()
    vfs.special_openers[S_IFIFO] = opener
    return opener
