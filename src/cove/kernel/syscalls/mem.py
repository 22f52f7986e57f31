"""The memory calls: brk, mmap, munmap, mprotect, mremap, madvise, msync,
mlock family, mincore, membarrier.

``MemoryMap`` (kernel/mm.py) does the mapping; this module checks arguments
in Linux's order and adds what needs the file behind an fd: which files may
be mapped (regular files; /dev/zero is anonymous memory; pipes, directories
and other devices are ENODEV), access modes (EACCES), noexec mounts (EPERM),
and the mapping's name in /proc/<pid>/maps.

Not modelled: RLIMIT_AS/RLIMIT_DATA/RLIMIT_MEMLOCK accounting across calls
(mlock checks one request against the limit), hugetlb (no huge pages
reserved: ENOMEM, as on a host with none), MADV_WIPEONFORK (EINVAL, as on a
kernel without it, so libraries fall back to their own fork detection), and
mremap duplicating a shared mapping (old_len 0: EINVAL).
"""

from __future__ import annotations

from cove.abi import flags as F
from cove.abi.errno import E, Errno
from cove.fs.file import MAX_LFS_FILESIZE, O_PATH, File
from cove.fs.mount import MS_NOEXEC
from cove.fs.node import S_IFCHR, S_IFMT, S_IFREG, Stat, makedev
from cove.kernel.mm import MMAP_MIN, USER_TOP, MemoryMap, page_align
from cove.kernel.physmem import PAGE_MASK, PAGE_SHIFT, PAGE_SIZE
from cove.kernel.syscall import FD, INT, PTR, UINT, ULONG, syscall
from cove.kernel.syscalls.limits import rlimit
from cove.kernel.syscalls.proc_lookup import capable

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from cove.kernel.mm import VMA
    from cove.kernel.task import Task

DEV_ZERO = makedev(1, 5)
TASK_SIZE = USER_TOP
RWX = F.PROT_READ | F.PROT_WRITE | F.PROT_EXEC

# Flags a MAP_SHARED_VALIDATE mapping may carry (Linux's LEGACY_MAP_MASK, plus
# MAP_FIXED_NOREPLACE, which post-dates it); MAP_SYNC needs DAX: EOPNOTSUPP.
VALIDATE_MASK = (F.MAP_SHARED | F.MAP_PRIVATE | F.MAP_FIXED | F.MAP_ANONYMOUS | F.MAP_DENYWRITE
                 | F.MAP_EXECUTABLE | F.MAP_UNINITIALIZED | F.MAP_GROWSDOWN | F.MAP_LOCKED
                 | F.MAP_NORESERVE | F.MAP_POPULATE | F.MAP_NONBLOCK | F.MAP_STACK
                 | F.MAP_HUGETLB | F.MAP_32BIT | F.MAP_FIXED_NOREPLACE
                 | (F.MAP_HUGE_MASK << F.MAP_HUGE_SHIFT))
LOW_2G = (0x40000000, 0x80000000)  # where MAP_32BIT mappings go, as on Linux


class MappedFile:
    """A file as a mapping sees it (``mm.PageSource``): the inode's pages.

    Reads and write-back go to the inode directly, as Linux's page cache does,
    so O_APPEND on the fd does not bend write-back offsets. A mapping of a
    file not opened for writing never writes back.
    """

    __slots__ = ("file", "noexec", "writable")

    def __init__(self, file: File, *, writable: bool, noexec: bool) -> None:
        self.file = file
        self.writable = writable
        self.noexec = noexec

    def pread(self, size: int, offset: int) -> bytes:
        inode = getattr(self.file, "inode", None)
        if inode is not None:
            return bytes(inode.read(offset, size))
        return self.file.pread(size, offset)

    def pwrite(self, data: bytes, offset: int) -> int:
        if not self.writable:
            return len(data)
        inode = getattr(self.file, "inode", None)
        if inode is not None:
            return int(inode.write(offset, data))
        return self.file.pwrite(data, offset)

    def stat(self) -> Stat:
        return self.file.stat()


def _source_of(v: VMA) -> MappedFile | None:
    src = v.shared.source if v.shared is not None else v.file
    return src if isinstance(src, MappedFile) else None


def _overlaps(mm: MemoryMap, start: int, end: int) -> list[VMA]:
    return [v for v in mm.vmas if v.start < end and v.end > start]


def _has_hole(mm: MemoryMap, start: int, end: int) -> bool:
    cursor = start
    for v in sorted(_overlaps(mm, start, end), key=lambda v: v.start):
        if v.start > cursor:
            return True
        cursor = v.end
    return cursor < end


def _mergeable(a: VMA, b: VMA) -> bool:
    if a.end != b.start or a.prot != b.prot or a.name != b.name:
        return False
    if a.shared is not None or b.shared is not None:
        return a.shared is b.shared and b.offset == a.offset + (a.end - a.start)
    if a.file is not None or b.file is not None:
        return a.file is b.file and b.offset == a.offset + (a.end - a.start)
    return True


def coalesce(mm: MemoryMap, start: int, end: int) -> None:
    """Merge the VMAs touching [start, end] with compatible neighbours, as
    Linux's vma_merge does after mprotect: a range split and re-protected is
    one mapping again (for mremap, and for /proc/<pid>/maps)."""
    vmas = mm.vmas
    i = 0
    while i < len(vmas) - 1:
        a, b = vmas[i], vmas[i + 1]
        if a.start > end:
            break
        if a.end >= start and _mergeable(a, b):
            # Both halves of one mapping: the low part's offset and file size
            # describe the whole (the frames are per page, not per VMA).
            a.end = b.end
            if b.shared is not None:
                b.shared.users -= 1
            del vmas[i + 1]
            mm.vmas_changed()
            continue
        i += 1


# --- brk and mmap -------------------------------------------------------------------
@syscall("brk", PTR)
def brk(t: Task, addr: int) -> int:
    """The new break, or the current one if it cannot move (never an errno)."""
    return t.mm.brk(addr)


def _file_mapping(t: Task, file: File, kind: int, flags: int, prot: int, offset: int,
                  length: int) -> tuple[MappedFile | None, str, int]:
    """Linux's checks for mapping ``file``: (page source or None for /dev/zero,
    mapping name, flags to pass on)."""
    try:
        st = file.stat()
    except Errno:
        st = None
    is_reg = st is not None and st.mode & S_IFMT == S_IFREG
    is_zero = st is not None and st.mode & S_IFMT == S_IFCHR and st.rdev == DEV_ZERO
    if is_reg and (length > MAX_LFS_FILESIZE or offset > MAX_LFS_FILESIZE - length):
        raise Errno(E.EOVERFLOW)
    if kind in (F.MAP_SHARED, F.MAP_SHARED_VALIDATE):
        if kind == F.MAP_SHARED:
            flags &= VALIDATE_MASK  # legacy MAP_SHARED drops flags it does not know
        elif flags & ~VALIDATE_MASK:
            raise Errno(E.EOPNOTSUPP)
        if prot & F.PROT_WRITE and not file.writable:
            raise Errno(E.EACCES)
    elif kind != F.MAP_PRIVATE:
        raise Errno(E.EINVAL)
    if not file.readable:
        raise Errno(E.EACCES)
    loc = file.location
    noexec = loc is not None and bool(loc.mount.flags & MS_NOEXEC)
    if noexec and prot & F.PROT_EXEC:
        raise Errno(E.EPERM)
    if not (is_reg or is_zero):
        raise Errno(E.ENODEV)
    if flags & F.MAP_GROWSDOWN:
        raise Errno(E.EINVAL)
    shared = kind != F.MAP_PRIVATE
    if is_zero:
        # /dev/zero is anonymous memory; a shared one shows as Linux names it.
        return None, "/dev/zero (deleted)" if shared else "", flags | F.MAP_ANONYMOUS
    writable = shared and file.writable
    # A sealed memfd (F_SEAL_WRITE / F_SEAL_FUTURE_WRITE) takes no writable
    # shared mapping, and a read-only one may not become writable later.
    if getattr(getattr(file, "inode", None), "seals", 0) & (F.F_SEAL_WRITE
                                                           | F.F_SEAL_FUTURE_WRITE):
        if shared and prot & F.PROT_WRITE:
            raise Errno(E.EPERM)
        writable = False
    src = MappedFile(file, writable=writable, noexec=noexec)
    return src, mapping_name(t, file), flags


def mapping_name(t: Task, file: File) -> str:
    """What /proc/<pid>/maps shows for a mapping of ``file``: the file's own
    name (memfd), the path it was opened by when the opener recorded one, or
    the path of its location (only directories can be walked back upwards)."""
    describe = getattr(file, "proc_name", None)
    if callable(describe):
        return str(describe())
    path = getattr(file, "path", None)
    if isinstance(path, str):
        return path
    if file.location is not None:
        try:
            return t.kernel.vfs.path_of(t.fs, file.location)
        except Errno:
            pass
    return ""


def _low_gap(mm: MemoryMap, length: int) -> int:
    """The lowest free range in the 32-bit window for MAP_32BIT (bottom-up)."""
    start = LOW_2G[0]
    for v in sorted(mm.vmas, key=lambda v: v.start):
        if v.end <= start:
            continue
        if v.start >= start + length:
            break
        start = page_align(v.end)
    if start + length > LOW_2G[1]:
        raise Errno(E.ENOMEM)
    return start


@syscall("mmap", PTR, ULONG, ULONG, ULONG, FD, ULONG)
def mmap(t: Task, addr: int, length: int, prot: int, flags: int, fd: int, offset: int) -> int:
    mm = t.mm
    if offset & PAGE_MASK:
        raise Errno(E.EINVAL)
    file: File | None = None
    if not flags & F.MAP_ANONYMOUS:
        file = t.files.get(fd)
        if file.flags & O_PATH:
            raise Errno(E.EBADF)
        if flags & F.MAP_HUGETLB:
            raise Errno(E.EINVAL)
    elif flags & F.MAP_HUGETLB:
        raise Errno(E.ENOMEM)  # the sandbox reserves no huge pages
    if length == 0:
        raise Errno(E.EINVAL)
    if length > TASK_SIZE:
        raise Errno(E.ENOMEM)
    plen = page_align(length)
    prot &= RWX  # mmap ignores other prot bits (mprotect does not)
    fixed = flags & (F.MAP_FIXED | F.MAP_FIXED_NOREPLACE)
    if fixed:
        if addr & PAGE_MASK:
            raise Errno(E.EINVAL)
        if addr > TASK_SIZE - plen:
            raise Errno(E.ENOMEM)
        if addr < MMAP_MIN:
            raise Errno(E.EPERM)  # vm.mmap_min_addr; sandbox root has no CAP_SYS_RAWIO
        if flags & F.MAP_FIXED_NOREPLACE and _overlaps(mm, addr, addr + plen):
            raise Errno(E.EEXIST)
    elif flags & F.MAP_32BIT:
        addr = _low_gap(mm, plen)
    kind = flags & F.MAP_TYPE
    source: MappedFile | None = None
    name = ""
    if file is not None:
        source, name, flags = _file_mapping(t, file, kind, flags, prot, offset, plen)
    elif kind not in (F.MAP_SHARED, F.MAP_PRIVATE):
        raise Errno(E.EINVAL)  # anonymous MAP_SHARED_VALIDATE is EINVAL in 6.1 too
    elif kind == F.MAP_SHARED and flags & F.MAP_GROWSDOWN:
        raise Errno(E.EINVAL)
    if kind == F.MAP_SHARED_VALIDATE:
        flags = (flags & ~F.MAP_TYPE) | F.MAP_SHARED
    if source is None:
        offset = 0
    return mm.mmap(addr, plen, prot, flags, file=source, offset=offset, name=name)


@syscall("munmap", PTR, ULONG)
def munmap(t: Task, addr: int, length: int) -> int:
    if addr & PAGE_MASK or addr > TASK_SIZE or length > TASK_SIZE - addr or length == 0:
        raise Errno(E.EINVAL)
    t.mm.munmap(addr, length)
    return 0


@syscall("mprotect", PTR, ULONG, ULONG)
def mprotect(t: Task, addr: int, length: int, prot: int) -> int:
    if addr & PAGE_MASK:
        raise Errno(E.EINVAL)
    if length == 0:
        return 0
    end = addr + page_align(length)
    if end >= 1 << 64:
        raise Errno(E.ENOMEM)  # wraps around
    grows = prot & (F.PROT_GROWSDOWN | F.PROT_GROWSUP)
    if prot & ~(RWX | F.PROT_SEM | grows) or grows == F.PROT_GROWSDOWN | F.PROT_GROWSUP:
        raise Errno(E.EINVAL)
    # VM_MAYWRITE / VM_MAYEXEC: what the file behind a mapping allows.
    for v in sorted(_overlaps(t.mm, addr, end), key=lambda v: v.start):
        src = _source_of(v)
        if src is None:
            continue
        if prot & F.PROT_WRITE and v.shared is not None and not src.writable:
            raise Errno(E.EACCES)
        if prot & F.PROT_EXEC and src.noexec:
            raise Errno(E.EACCES)
    t.mm.mprotect(addr, length, prot)
    coalesce(t.mm, addr, end)
    return 0


@syscall("mremap", PTR, ULONG, ULONG, ULONG, PTR)
def mremap(t: Task, old: int, old_len: int, new_len: int, flags: int, new_addr: int) -> int:
    mm = t.mm
    maymove, fixed = flags & F.MREMAP_MAYMOVE, flags & F.MREMAP_FIXED
    dontunmap = flags & F.MREMAP_DONTUNMAP
    if flags & ~(F.MREMAP_MAYMOVE | F.MREMAP_FIXED | F.MREMAP_DONTUNMAP):
        raise Errno(E.EINVAL)
    if fixed and not maymove:
        raise Errno(E.EINVAL)
    if dontunmap and (not maymove or old_len != new_len):
        raise Errno(E.EINVAL)
    if old & PAGE_MASK:
        raise Errno(E.EINVAL)
    old_len, new_len = page_align(old_len), page_align(new_len)
    if new_len == 0:
        raise Errno(E.EINVAL)
    coalesce(mm, old, old + old_len)
    vma = mm.find(old)
    if vma is None:
        raise Errno(E.EFAULT)
    if old_len == 0:
        raise Errno(E.EINVAL)  # duplicating a (shared) mapping is not offered
    if old_len > vma.end - old:
        raise Errno(E.EFAULT)
    if fixed or dontunmap:
        if fixed:
            if new_addr & PAGE_MASK or new_len > TASK_SIZE or new_addr > TASK_SIZE - new_len:
                raise Errno(E.EINVAL)
            if old + old_len > new_addr and new_addr + new_len > old:
                raise Errno(E.EINVAL)  # the ranges may not overlap
        if dontunmap and vma.shared is not None:
            raise Errno(E.EINVAL)  # the old range would have to keep the shared pages
        if not fixed:
            # A move without a destination: reserve one, then move onto it.
            new_addr = mm.mmap(new_addr & ~PAGE_MASK, new_len, F.PROT_NONE,
                               F.MAP_PRIVATE | F.MAP_ANONYMOUS)
        prot, file, offset = vma.prot, vma.file, vma.offset + (old - vma.start)
        name, file_size = vma.name, vma.file_size - (old - vma.start)
        dest = mm.mremap(old, old_len, new_len, F.MREMAP_MAYMOVE | F.MREMAP_FIXED, new_addr)
        if dontunmap:
            # The old range stays mapped but empty: zero pages, or the file again.
            fl = F.MAP_PRIVATE | F.MAP_FIXED | (0 if file is not None else F.MAP_ANONYMOUS)
            mm.mmap(old, old_len, prot, fl, file=file, offset=offset if file else 0,
                    name=name, file_size=max(0, file_size) if file is not None else None)
        return dest
    return mm.mremap(old, old_len, new_len, flags & F.MREMAP_MAYMOVE)


# --- advice, sync, locking, residency ------------------------------------------------
_HINTS = {F.MADV_NORMAL, F.MADV_RANDOM, F.MADV_SEQUENTIAL, F.MADV_WILLNEED, F.MADV_DONTFORK,
          F.MADV_DOFORK, F.MADV_MERGEABLE, F.MADV_UNMERGEABLE, F.MADV_HUGEPAGE,
          F.MADV_NOHUGEPAGE, F.MADV_DONTDUMP, F.MADV_DODUMP, F.MADV_COLD, F.MADV_PAGEOUT,
          F.MADV_KEEPONFORK}
_KNOWN = _HINTS | {F.MADV_DONTNEED, F.MADV_FREE, F.MADV_REMOVE, F.MADV_WIPEONFORK,
                   F.MADV_POPULATE_READ, F.MADV_POPULATE_WRITE, F.MADV_DONTNEED_LOCKED,
                   F.MADV_COLLAPSE, F.MADV_HWPOISON, F.MADV_SOFT_OFFLINE}


@syscall("madvise", PTR, ULONG, INT)
def madvise(t: Task, addr: int, length: int, advice: int) -> int:
    mm = t.mm
    if advice not in _KNOWN or addr & PAGE_MASK:
        raise Errno(E.EINVAL)
    plen = page_align(length)
    if addr + plen >= 1 << 64:
        raise Errno(E.EINVAL)  # the length wraps around
    if plen == 0:
        return 0
    if advice in (F.MADV_HWPOISON, F.MADV_SOFT_OFFLINE):
        raise Errno(E.EPERM)  # host memory is not the sandbox's to poison
    end = addr + plen
    vmas = _overlaps(mm, addr, end)
    hole = _has_hole(mm, addr, end)
    if not vmas:
        raise Errno(E.ENOMEM)
    if advice in (F.MADV_WIPEONFORK, F.MADV_COLLAPSE):
        raise Errno(E.EINVAL)  # not offered: see the module docstring
    if advice == F.MADV_FREE and any(v.file is not None or v.shared is not None for v in vmas):
        raise Errno(E.EINVAL)  # only private anonymous memory can be freed lazily
    if advice == F.MADV_REMOVE:
        if any(v.shared is None for v in vmas):
            raise Errno(E.EINVAL)
        mm.madvise(addr, plen, advice)
    elif advice in (F.MADV_DONTNEED, F.MADV_DONTNEED_LOCKED, F.MADV_FREE):
        mm.madvise(addr, plen, F.MADV_DONTNEED if advice != F.MADV_FREE else advice)
    elif advice in (F.MADV_POPULATE_READ, F.MADV_POPULATE_WRITE):
        _populate(t, vmas, addr, end, advice == F.MADV_POPULATE_WRITE)
    if hole:
        raise Errno(E.ENOMEM)  # the mapped parts got the advice; the hole is reported
    return 0


def _populate(t: Task, vmas: list[VMA], start: int, end: int, write: bool) -> None:
    mm = t.mm
    for v in sorted(vmas, key=lambda v: v.start):
        for page in range(max(v.start, start), min(v.end, end), PAGE_SIZE):
            vpn = page >> PAGE_SHIFT
            if vpn in mm.frames and not (write and vpn in mm.cow):
                continue
            fault = mm.handle_fault(page, write, False)
            if fault is not None:
                # Permission problems are EINVAL, SIGBUS past EOF is EFAULT (6.1).
                raise Errno(E.EFAULT if fault.signo == 7 else E.EINVAL)


@syscall("msync", PTR, ULONG, INT)
def msync(t: Task, addr: int, length: int, flags: int) -> int:
    if flags & ~(F.MS_ASYNC | F.MS_INVALIDATE | F.MS_SYNC) or addr & PAGE_MASK or (
            flags & F.MS_ASYNC and flags & F.MS_SYNC):
        raise Errno(E.EINVAL)
    if addr + page_align(length) >= 1 << 64:
        raise Errno(E.ENOMEM)  # wraps around
    t.mm.msync(addr, length, flags)
    return 0


def _lock_check(t: Task, start: int, length: int) -> None:
    """can_do_mlock and the RLIMIT_MEMLOCK test for one request; holes are ENOMEM."""
    limit = rlimit(t.proc, F.RLIMIT_MEMLOCK)[0]
    if limit == 0 and not capable(t):
        raise Errno(E.EPERM)
    plen = page_align(length + (start & PAGE_MASK))
    start &= ~PAGE_MASK
    if plen > limit and not capable(t):
        raise Errno(E.ENOMEM)
    if plen and _has_hole(t.mm, start, start + plen):
        raise Errno(E.ENOMEM)


@syscall("mlock", PTR, ULONG)
def mlock(t: Task, start: int, length: int) -> int:
    """Accepted: guest memory is never paged out, so it is always locked."""
    _lock_check(t, start, length)
    return 0


@syscall("mlock2", PTR, ULONG, UINT)
def mlock2(t: Task, start: int, length: int, flags: int) -> int:
    if flags & ~F.MLOCK_ONFAULT:
        raise Errno(E.EINVAL)
    _lock_check(t, start, length)
    return 0


@syscall("munlock", PTR, ULONG)
def munlock(t: Task, start: int, length: int) -> int:
    plen = page_align(length + (start & PAGE_MASK))
    start &= ~PAGE_MASK
    if plen and _has_hole(t.mm, start, start + plen):
        raise Errno(E.ENOMEM)
    return 0


@syscall("mlockall", INT)
def mlockall(t: Task, flags: int) -> int:
    known = F.MCL_CURRENT | F.MCL_FUTURE | F.MCL_ONFAULT
    if not flags or flags & ~known or flags == F.MCL_ONFAULT:
        raise Errno(E.EINVAL)
    limit = rlimit(t.proc, F.RLIMIT_MEMLOCK)[0]
    if limit == 0 and not capable(t):
        raise Errno(E.EPERM)
    total = sum(v.end - v.start for v in t.mm.vmas)
    if flags & F.MCL_CURRENT and total > limit and not capable(t):
        raise Errno(E.ENOMEM)
    return 0


@syscall("munlockall")
def munlockall(t: Task) -> int:
    return 0


@syscall("mincore", PTR, ULONG, PTR)
def mincore(t: Task, start: int, length: int, vec: int) -> int:
    mm = t.mm
    if start & PAGE_MASK:
        raise Errno(E.EINVAL)
    if start + length > TASK_SIZE:
        raise Errno(E.ENOMEM)
    pages = (length + PAGE_MASK) >> PAGE_SHIFT
    addr, out = start, vec
    end = start + (pages << PAGE_SHIFT)
    while addr < end:
        v = mm.find(addr)
        if v is None:
            raise Errno(E.ENOMEM)
        stop = min(v.end, end)
        batch = bytearray()
        for page in range(addr, stop, PAGE_SIZE):
            vpn = page >> PAGE_SHIFT
            resident = vpn in mm.frames or (
                v.shared is not None and v.pgoff(page) in v.shared.frames)
            batch.append(1 if resident else 0)
        t.mm.write(out, batch)
        out += len(batch)
        addr = stop
    return 0


# --- membarrier ---------------------------------------------------------------------------
MEMBARRIER_CMD_QUERY = 0
MEMBARRIER_CMD_GLOBAL = 1
MEMBARRIER_CMD_GLOBAL_EXPEDITED = 2
MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED = 4
MEMBARRIER_CMD_PRIVATE_EXPEDITED = 8
MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED = 16
MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE = 32
MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE = 64
# The rseq variants (128, 256) need rseq, which cove does not offer.
MEMBARRIER_SUPPORTED = 0x7F


@syscall("membarrier", INT, UINT, INT)
def membarrier(t: Task, cmd: int, flags: int, cpu_id: int) -> int:
    """One cpu runs every guest thread, and each switch between them passes
    through the kernel: every barrier is complete by the time it is asked for.
    Registration is still tracked, because the expedited commands must fail
    with EPERM without it."""
    if flags:
        raise Errno(E.EINVAL)
    p = t.proc
    if cmd == MEMBARRIER_CMD_QUERY:
        return MEMBARRIER_SUPPORTED
    if cmd in (MEMBARRIER_CMD_GLOBAL, MEMBARRIER_CMD_GLOBAL_EXPEDITED):
        return 0
    if cmd in (MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED,
               MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED,
               MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE):
        p.membarrier |= cmd
        return 0
    if cmd in (MEMBARRIER_CMD_PRIVATE_EXPEDITED, MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE):
        if not p.membarrier & (cmd << 1):
            raise Errno(E.EPERM)
        return 0
    raise Errno(E.EINVAL)
