"""Moving data between guest memory and files, in one place: iovec arrays,
MAX_RW_COUNT, the partial-I/O rule, RLIMIT_FSIZE and memfd seals.

Partial I/O (Linux's rule): once some bytes have moved, a fault in the guest
buffer ends the call with the count so far; only a call that moved nothing
fails with EFAULT. A read never takes data from a file that it cannot store:
the writable part of the destination is measured first and the read asks the
file for no more, so a pipe keeps the bytes a bad buffer could not take.

Handlers call ``File.read``/``write``/``pread``/``pwrite`` and let ``Blocked``
through: whether an fd blocks is the File's business.
"""

from __future__ import annotations

from itertools import pairwise

from cove.abi import flags as F
from cove.abi.errno import E, Errno
from cove.abi.structs.fs import IOVEC, UIO_MAXIOV
from cove.fs.file import O_APPEND, File, InodeFile
from cove.fs.node import S_IFMT, S_IFREG
from cove.kernel import signals
from cove.kernel.physmem import PAGE_MASK, PAGE_SIZE

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from cove.kernel.task import Task

MAX_RW_COUNT = 0x7FFFF000  # INT_MAX & PAGE_MASK: the most one read/write moves
SSIZE_MAX = (1 << 63) - 1
IOV_MAX = UIO_MAXIOV
USER_LIMIT = 1 << 63

Segs = list[tuple[int, int]]  # (guest address, length)


def user_range_ok(addr: int, n: int) -> bool:
    """``access_ok`` as x86-64 Linux 6.x has it: the end does not wrap and has no
    high bit (mapped or not is for the copy to find out)."""
    return 0 <= addr and addr + n < USER_LIMIT


def read_iovecs(t: Task, addr: int, count: int) -> Segs:
    """``import_iovec``: the segments of a struct iovec array, lengths capped
    so the total is at most MAX_RW_COUNT."""
    if count < 0 or count > IOV_MAX:
        raise Errno(E.EINVAL)
    if count == 0:
        return []
    raw = t.mm.read(addr, count * IOVEC.size)
    pairs = [IOVEC.unpack_from(raw, i * IOVEC.size) for i in range(count)]
    if any(length > SSIZE_MAX for _, length in pairs):
        raise Errno(E.EINVAL)  # a negative ssize_t length
    segs: Segs = []
    total = 0
    for base, length in pairs:
        if not user_range_ok(base, length):
            raise Errno(E.EFAULT)
        length = min(length, MAX_RW_COUNT - total)
        total += length
        segs.append((base, length))
    return segs


def writable_run(t: Task, addr: int, n: int) -> int:
    """How many bytes from ``addr`` (up to ``n``) lie in writable mappings."""
    done = 0
    while done < n:
        vma = t.mm.find(addr + done)
        if vma is None or not vma.prot & F.PROT_WRITE:
            break
        done = min(n, vma.end - addr)
    return done


def writable_prefix(t: Task, segs: Segs) -> int:
    """Bytes at the start of ``segs`` that a copy to the guest can store."""
    total = 0
    for addr, length in segs:
        run = writable_run(t, addr, length)
        total += run
        if run < length:
            break
    return total


def guest_views(t: Task, segs: Segs, limit: int, write: bool) -> list[memoryview] | None:
    """Views of guest physical memory for the first ``limit`` bytes of
    ``segs``, one per physically contiguous run, for a copy with no bytes
    object in between (``write``: the copy stores into the guest).

    None when any page of them is not ready for such a copy right now: not
    populated, copy-on-write (for a store), or outside a mapping that allows
    the access. ``MemoryMap.read``/``write`` then decide (populate, break
    the COW, EFAULT and partial counts), so callers fall back to them. Also
    None past ``IOV_MAX`` runs (a host readv/writev takes no more)."""
    mm = t.mm
    frames, cow = mm.frames, mm.cow
    need = F.PROT_WRITE if write else F.PROT_READ
    mem = mm.phys.mem
    views: list[memoryview] = []
    start = end = -1  # the physical run being built
    left = limit
    for addr, length in segs:
        if left <= 0:
            break
        stop = addr + min(length, left)
        left -= length
        while addr < stop:
            vma = mm.find(addr)
            if vma is None or not vma.prot & need:
                return None
            run_end = min(stop, vma.end)
            vpns = range(addr >> 12, ((run_end - 1) >> 12) + 1)
            got = list(map(frames.get, vpns))
            if None in got or (write and cow and not cow.isdisjoint(vpns)):
                return None
            first = got[0]
            if len(got) == 1 or got == list(range(first, first + len(got))):
                runs = [((first << 12) + (addr & PAGE_MASK), run_end - addr)]
            else:
                # Cut where the frames stop being consecutive.
                cuts = [i for i, (x, y) in enumerate(pairwise(got), 1) if y != x + 1]
                vpn0 = addr >> 12
                runs = []
                lo = 0
                for hi in (*cuts, len(got)):
                    va = addr if lo == 0 else (vpn0 + lo) << 12
                    ve = run_end if hi == len(got) else (vpn0 + hi) << 12
                    runs.append(((got[lo] << 12) + (va & PAGE_MASK), ve - va))
                    lo = hi
            for pa, n in runs:
                if pa == end:
                    end += n
                else:
                    if start >= 0:
                        views.append(mem[start:end])
                    start, end = pa, pa + n
            addr = run_end
    if start >= 0:
        views.append(mem[start:end])
    return views if len(views) <= IOV_MAX else None


def gather(t: Task, segs: Segs) -> bytes:
    """The guest bytes of ``segs`` up to the first unreadable one."""
    out = bytearray()
    for addr, length in segs:
        try:
            out += t.mm.read(addr, length)
            continue
        except Errno:
            pass
        # Fault somewhere inside: take page-sized pieces up to it.
        a, end = addr, addr + length
        while a < end:
            step = min(end - a, PAGE_SIZE - (a & PAGE_MASK))
            try:
                out += t.mm.read(a, step)
            except Errno:
                return bytes(out)
            a += step
        return bytes(out)  # unreachable in practice: the whole read had failed
    return bytes(out)


def scatter(t: Task, segs: Segs, data: bytes) -> int:
    """Copy ``data`` into ``segs``; returns the bytes stored (a fault stops it)."""
    view = memoryview(data)
    done = 0
    for addr, length in segs:
        if done >= len(data):
            break
        chunk = view[done:done + length]
        try:
            t.mm.write(addr, chunk)
            done += len(chunk)
            continue
        except Errno:
            pass
        a = addr
        pos = 0
        while pos < len(chunk):
            step = min(len(chunk) - pos, PAGE_SIZE - (a & PAGE_MASK))
            try:
                t.mm.write(a, chunk[pos:pos + step])
            except Errno:
                return done + pos
            a += step
            pos += step
        return done + pos
    return done


def read_into(t: Task, f: File, segs: Segs, offset: int | None = None) -> int:
    """read/readv/pread/preadv: fill ``segs`` from ``f`` (at ``offset`` if given)."""
    direct = getattr(f, "read_guest", None)  # host pipes: straight into guest frames
    if direct is not None and offset is None:
        n = direct(t, segs)
        if n is not None:
            return n
    total = sum(n for _, n in segs)
    usable = writable_prefix(t, segs)
    if usable == 0 and total > 0:
        if isinstance(f, InodeFile):
            # Linux copies nothing, and faults on nothing, at end of file.
            probe = f.pread(1, f.pos if offset is None else offset)
            if not probe:
                return 0
        else:
            f.check_readable()
        raise Errno(E.EFAULT)
    data = f.read(usable) if offset is None else f.pread(usable, offset)
    stored = scatter(t, segs, data)
    if stored == 0 and data:
        raise Errno(E.EFAULT)
    return stored


def _is_regular(f: File) -> bool:
    return isinstance(f, InodeFile) and f.inode.mode & S_IFMT == S_IFREG


def fsize_limit(t: Task) -> int:
    """The soft RLIMIT_FSIZE of the calling process."""
    return t.proc.rlimits.get(F.RLIMIT_FSIZE, (F.RLIM_INFINITY, F.RLIM_INFINITY))[0]


def check_fsize(t: Task, pos: int, length: int) -> int:
    """How many of ``length`` bytes at ``pos`` RLIMIT_FSIZE lets a regular file
    take; at or past the limit: SIGXFSZ and EFBIG, as Linux."""
    limit = fsize_limit(t)
    if limit >= F.RLIM_INFINITY or length == 0:
        return length
    if pos >= limit:
        signals.send_task(t, F.SIGXFSZ)
        raise Errno(E.EFBIG)
    return min(length, limit - pos)


def check_new_size(t: Task, size: int) -> None:
    """``inode_newsize_ok`` for truncate/fallocate growing a file."""
    limit = fsize_limit(t)
    if limit < F.RLIM_INFINITY and size > limit:
        signals.send_task(t, F.SIGXFSZ)
        raise Errno(E.EFBIG)


def write_from(t: Task, f: File, segs: Segs, offset: int | None = None) -> int:
    """write/writev/pwrite/pwritev: write the bytes of ``segs`` to ``f``."""
    f.check_writable()
    direct = getattr(f, "write_guest", None)  # host pipes: straight from guest frames
    if direct is not None and offset is None:
        n = direct(t, segs)
        if n is not None:
            return n
    total = sum(n for _, n in segs)
    data = gather(t, segs)
    if not data and total > 0:
        raise Errno(E.EFAULT)
    if _is_regular(f):
        assert isinstance(f, InodeFile)
        if f.flags & O_APPEND:
            pos = f.inode.stat().size
        else:
            pos = f.pos if offset is None else offset
        n = check_fsize(t, pos, len(data))
        data = data[:n]
        from cove.kernel.syscalls.fs_memfd import check_seals_write

        check_seals_write(f, pos, len(data))
    return f.write(data) if offset is None else f.pwrite(data, offset)
