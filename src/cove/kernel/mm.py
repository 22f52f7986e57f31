"""A process's memory map: VMAs, brk, the mmap family, page faults, copy-on-write,
and the one place where guest pointers are checked (EFAULT).

The North decides what is mapped where; the platform's address space only
mirrors the decisions (``map``/``unmap`` of single pages). Guest memory is read
and written through ``PhysMem`` views, never through the platform.

Population policy: small mappings are filled at mmap time, large ones on first
touch with fault-around (wider for file mappings), because every fault costs a
VM exit (~40 µs on kvm) while filling and mapping a page costs a few µs. Pages
the page cache already holds cost no read, only a reference and a page table
entry (under a µs): read-only file mappings get them in a wider window at a
fault, for their first pages at mmap, and for a whole MAP_FIXED segment (a
loader's). Pages are filled, mapped, protected and dropped in runs (one
platform call each).

Sharing: clean pages of read-only private file mappings come from the page
cache (``pagecache``) copy-on-write; fork leaves them to faults in the child
(except near pages earlier children faulted: ``fork_hints``), shares other
private pages copy-on-write, and copies the parent's ``hot`` pages (written
since a fork made them copy-on-write) for the child at once.

In a sandbox restored from a snapshot, ``frames`` and ``cow`` start as a
``BaseDict``/``BaseSet`` (``basemap``): every clone of the snapshot reads
through to the same decoded maps and keeps only its own changes. Code here
takes either (whole-map walks go through a flat copy).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator

from cove.abi import flags as F
from cove.abi.errno import E, Errno
from cove.dataclass import dataclass, field
from cove.kernel.basemap import BaseDict, get_many
from cove.kernel.pagecache import FileKey, cache_for, file_key, stat_key
from cove.kernel.physmem import PAGE_MASK, PAGE_SHIFT, PAGE_SIZE, PhysMem

USER_TOP = 0x7FFF_FFFF_F000  # exclusive end of the user half (47-bit, one guard page)
MMAP_BASE = 0x7F00_0000_0000  # top-down mmap search starts here
MMAP_MIN = 0x10000  # vm.mmap_min_addr
EAGER_PAGES = 64  # mappings up to this many pages are populated at mmap time
FAULT_AROUND = 16  # pages populated together on a fault in a large anonymous mapping
# ... and in a private file mapping (program text and data: scattered first
# touches, each a VM exit of ~40 µs against ~3 µs a page to fill and map).
FILE_FAULT_AROUND = 128
# ... and of pages the page cache already holds (no file read: a reference and a
# page table entry each), around a fault in a read-only private file mapping.
CACHED_FAULT_AROUND = 512
# Pages a process wrote after a fork made them copy-on-write are likely to be
# written again after the next fork too (its stack, heap, data): fork copies
# up to this many of them for the child at once instead of write-protecting
# them, which saves the parent a write fault and a shoot-down for each.
HOT_PAGES = 64
# A forked child mostly runs the same few pages of its program before it execs
# (the shell's fork-to-exec path). Its faults are remembered in the parent
# (at most FORK_HINTS pages, from the first HINT_FAULTS faults of each child),
# and the next fork maps the parent's clean file pages in the HINT_BLOCK-page
# blocks around them into the child at once, and copies hinted written pages:
# each fault saved is a VM exit.
FORK_HINTS = 32
HINT_FAULTS = 16
HINT_BLOCK_SHIFT = 3  # 8 pages

SIGSEGV, SIGBUS = 11, 7
SEGV_MAPERR, SEGV_ACCERR = 1, 2
BUS_ADRERR = 2
_ZEROS = memoryview(bytes(PAGE_SIZE))


TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from typing import Protocol

    class AddressSpace(Protocol):
        """What the North needs from a platform's address space (see platform/base.py).

        ``map_range`` and ``protect`` are used when the space has them (every
        platform does; test doubles may not): one call per run of pages. ``flush``
        is never called: the platform contract makes every change take effect by
        itself (a kvm flush would cost a CR3 reload on the next return from a fault).
        """

        def map(self, vaddr: int, frame: int, prot: int) -> None: ...
        def unmap(self, vaddr: int, length: int) -> list[int]: ...

    class PageSource(Protocol):
        """A file as a mapping sees it: page-sized reads at file offsets."""

        def pread(self, size: int, offset: int) -> bytes: ...
        def pwrite(self, data: bytes, offset: int) -> int: ...
        def stat(self) -> object: ...


def _alloc_frames(phys: PhysMem, count: int) -> list[int]:
    """``count`` fresh frames, or none (ENOMEM gives back what was taken)."""
    return phys.alloc_many(count)


def _map_run(space: AddressSpace, vaddr: int, frames: list[int], prot: int) -> None:
    """Map consecutive pages: one ``map_range`` call where the space has it."""
    map_range = getattr(space, "map_range", None)
    if map_range is not None:
        map_range(vaddr, frames, prot)
        return
    for n, f in enumerate(frames):
        space.map(vaddr + (n << PAGE_SHIFT), f, prot)


def _protect_run(space: AddressSpace, vaddr: int, frames: list[int], prot: int) -> None:
    """Narrow consecutive mapped pages to ``prot``: one ``protect`` call (one
    batched shoot-down on kvm) where the space has it."""
    protect = getattr(space, "protect", None)
    if protect is not None:
        protect(vaddr, len(frames) << PAGE_SHIFT, prot)
        return
    for n, f in enumerate(frames):
        space.map(vaddr + (n << PAGE_SHIFT), f, prot)


class SharedObject:
    """The pages of a MAP_SHARED mapping (anonymous, or a file's page cache)."""

    __slots__ = ("frames", "phys", "source", "users")

    def __init__(self, phys: PhysMem, source: PageSource | None) -> None:
        self.phys = phys
        self.source = source
        self.frames: dict[int, int] = {}  # page offset -> frame (held once by the object)
        self.users = 0

    def frame(self, pgoff: int) -> int:
        f = self.frames.get(pgoff)
        if f is None:
            f = self.phys.alloc()
            if self.source is not None:
                data = self.source.pread(PAGE_SIZE, pgoff << PAGE_SHIFT)
                self.phys.write(f << PAGE_SHIFT, data)
            self.frames[pgoff] = f
        return f

    def writeback(self, first: int, count: int) -> None:
        if self.source is None:
            return
        size = self.source.stat().size  # type: ignore[attr-defined]
        for pgoff in range(first, first + count):
            f = self.frames.get(pgoff)
            off = pgoff << PAGE_SHIFT
            if f is not None and off < size:
                n = min(PAGE_SIZE, size - off)
                self.source.pwrite(self.phys.read(f << PAGE_SHIFT, n), off)

    def drop(self) -> None:
        self.users -= 1
        if self.users <= 0:
            self.writeback(0, max(self.frames, default=-1) + 1)
            for f in self.frames.values():
                self.phys.unref(f)
            self.frames.clear()


@dataclass(slots=True)
class VMA:
    start: int
    end: int
    prot: int
    shared: SharedObject | None = None  # MAP_SHARED backing
    file: PageSource | None = None  # MAP_PRIVATE file backing
    offset: int = 0  # file offset of ``start``
    name: str = ""  # what /proc/<pid>/maps shows
    file_size: int = 0  # bytes of file data behind the mapping (rest of the page is zero)

    def pgoff(self, vaddr: int) -> int:
        return (self.offset + vaddr - self.start) >> PAGE_SHIFT

    def split(self, at: int) -> VMA:
        """Cut at ``at``; self keeps the low part, the returned VMA is the high part."""
        # file_size counts from ``start``: the high part has that much less file behind it.
        high = VMA(at, self.end, self.prot, self.shared, self.file,
                   self.offset + (at - self.start), self.name,
                   max(0, self.file_size - (at - self.start)))
        if self.shared is not None:
            self.shared.users += 1
        self.end = at
        return high


def page_align(n: int) -> int:
    return (n + PAGE_MASK) & ~PAGE_MASK


@dataclass(slots=True)
class Fault:
    """An unresolved fault: the signal the faulting thread gets."""

    signo: int
    code: int
    addr: int


class _SameFiles:
    """``MemoryMap.same_files``: remembers file versions while it is entered
    (the outermost one only)."""

    __slots__ = ("mm", "outer")

    def __init__(self, mm: MemoryMap) -> None:
        self.mm = mm
        self.outer = False

    def __enter__(self) -> None:
        if self.mm._versions is None:
            self.mm._versions = {}
            self.outer = True

    def __exit__(self, *exc: object) -> None:
        if self.outer:
            self.mm._versions = None


@dataclass
class MemoryMap:
    phys: PhysMem
    space: AddressSpace
    vmas: list[VMA] = field(default_factory=list)  # sorted by start, never overlapping
    frames: dict[int, int] = field(default_factory=dict)  # vpn -> frame
    cow: set[int] = field(default_factory=set)  # vpns mapped read-only until written
    hot: dict[int, None] = field(default_factory=dict)  # vpns written after a fork, oldest first
    brk_start: int = 0
    brk_end: int = 0
    _starts_cache: list[int] | None = field(default=None, repr=False, compare=False)
    # vpns this map's forked children faulted soon after the fork, oldest first.
    fork_hints: dict[int, None] = field(default_factory=dict)
    _hints_to: dict[int, None] | None = field(default=None, repr=False, compare=False)
    _hint_budget: int = field(default=0, repr=False, compare=False)
    # id(file) -> (file, version): set only inside ``same_files`` (one operation).
    _versions: dict[int, tuple[object, tuple[FileKey, int] | None]] | None = field(
        default=None, repr=False, compare=False)

    # --- lookup ---------------------------------------------------------------
    def find(self, addr: int) -> VMA | None:
        vmas = self.vmas
        i = bisect.bisect_right(self._starts(), addr) - 1
        if i >= 0 and vmas[i].start <= addr < vmas[i].end:
            return vmas[i]
        return None

    def _starts(self) -> list[int]:
        # Every guest-memory access looks its page up here: keep the sorted start
        # addresses until the VMA list changes (vmas_changed) instead of
        # rebuilding them per page.
        starts = self._starts_cache
        if starts is None or len(starts) != len(self.vmas):
            starts = self._starts_cache = [v.start for v in self.vmas]
        return starts

    def vmas_changed(self) -> None:
        """Call after adding, removing or moving VMAs outside the methods here."""
        self._starts_cache = None

    def _insert(self, vma: VMA) -> None:
        bisect.insort(self.vmas, vma, key=lambda v: v.start)
        self._starts_cache = None

    def _overlapping(self, start: int, end: int) -> Iterator[VMA]:
        for v in list(self.vmas):
            if v.start < end and v.end > start:
                yield v

    def _range_free(self, start: int, end: int) -> bool:
        return next(self._overlapping(start, end), None) is None

    def _free_range(self, length: int, hint: int = 0) -> int:
        if hint and MMAP_MIN <= hint and hint + length <= USER_TOP and self._range_free(
                hint, hint + length):
            return hint
        top = MMAP_BASE
        for v in sorted(self.vmas, key=lambda v: -v.start):
            if v.start >= top:
                top = min(top, v.start)
                continue
            if v.end <= top - length:
                break
            top = v.start
        if top - length < MMAP_MIN:
            raise Errno(E.ENOMEM)
        return top - length

    # --- file versions ----------------------------------------------------------
    def same_files(self) -> _SameFiles:
        """``with mm.same_files():`` no file changes within the block (one mmap,
        one exec's mappings: the North runs nothing else meanwhile), so each
        mapped file is looked at (stat) once, not once per run of pages."""
        return _SameFiles(self)

    def _version(self, file: PageSource) -> tuple[FileKey, int] | None:
        """The page-cache version of ``file`` now (``pagecache.file_key``)."""
        memo = self._versions
        if memo is None:
            return file_key(file)
        got = memo.get(id(file))
        if got is None:
            got = memo[id(file)] = (file, file_key(file))  # the file kept: its id stays its own
        return got[1]

    # --- pages ----------------------------------------------------------------
    @staticmethod
    def _hw_prot(prot: int, cow: bool) -> int:
        return prot & ~F.PROT_WRITE if cow else prot

    def _populate(self, vma: VMA, vpn: int) -> int:
        """Give ``vpn`` (inside ``vma``) a frame and map it; returns the frame."""
        self._populate_run(vma, vpn, 1)
        return self.frames[vpn]

    def _populate_run(self, vma: VMA, first: int, count: int) -> None:
        """Give the ``count`` absent pages from ``first`` (inside ``vma``) frames
        and map them: one file read and one platform call for the whole run."""
        phys = self.phys
        vaddr = first << PAGE_SHIFT
        if vma.shared is not None:
            base = vma.pgoff(vaddr)
            frames = []
            for n in range(count):
                f = vma.shared.frame(base + n)
                phys.ref(f)
                frames.append(f)
        elif vma.file is not None:
            frames = self._file_pages(vma, first, count)
        else:
            frames = _alloc_frames(phys, count)
        table = self.frames
        for n, f in enumerate(frames):
            table[first + n] = f
        if vma.prot & (F.PROT_READ | F.PROT_WRITE | F.PROT_EXEC):
            _map_run(self.space, vaddr, frames, vma.prot)

    def _file_pages(self, vma: VMA, first: int, count: int) -> list[int]:
        """Frames holding pages ``first..first+count`` of a private file mapping.

        Pages of a mapping that cannot be written come from the page cache
        (copy-on-write, so the cached frame is never written) and those not
        there yet go into it; the rest are read from the file in one go into
        fresh frames."""
        phys = self.phys
        off = (first << PAGE_SHIFT) - vma.start  # bytes into the mapping
        share = 0  # the first ``share`` pages of the run are shared
        info = None if vma.prot & F.PROT_WRITE else self._version(vma.file)
        if info is not None:
            key, fsize = info
            if vma.offset + vma.file_size >= fsize:
                share = count  # the mapping shows the file up to its end, zeros after
            else:
                share = max(0, min(count, (vma.file_size - off) >> PAGE_SHIFT))
        pgoff = (vma.offset + off) >> PAGE_SHIFT
        frames = [-1] * count
        if share:
            cache = cache_for(phys)
            cached = cache.pages(key) or {}
            hits: list[int] = []
            missing: list[int] = []
            for n in range(share):
                f = cached.get(pgoff + n)
                if f is None:
                    missing.append(n)
                else:
                    frames[n] = f
                    hits.append(f)
            missing.extend(range(share, count))
            if hits:
                phys.ref_many(hits)
                cache.hits += len(hits)
            cache.misses += len(missing)
        else:
            missing = list(range(count))
        try:
            if missing:
                lo, hi = missing[0], missing[-1] + 1
                size = min((hi - lo) << PAGE_SHIFT, vma.file_size - off - (lo << PAGE_SHIFT))
                data = memoryview(vma.file.pread(size, vma.offset + off + (lo << PAGE_SHIFT))
                                  if size > 0 else b"")
                mem = phys.mem
                # Not zero-filled by the allocator: every byte is written here.
                fresh = phys.alloc_many(len(missing), zero=False)
                for n, f in zip(missing, fresh, strict=True):
                    frames[n] = f
                    chunk = data[(n - lo) << PAGE_SHIFT:(n - lo + 1) << PAGE_SHIFT]
                    d = f << PAGE_SHIFT
                    k = len(chunk)
                    if k:
                        mem[d:d + k] = chunk
                    if k < PAGE_SIZE:  # past the file data (or a short read): zeros
                        mem[d + k:d + PAGE_SIZE] = _ZEROS[k:]
                if share:
                    insert = cache.insert
                    for n in missing:
                        if n < share:
                            insert(phys, key, pgoff + n, frames[n])
        except BaseException:
            phys.unref_many([f for f in frames if f >= 0])
            raise
        if share:
            self.cow.update(range(first, first + share))
        return frames

    def _unref(self, frame: int) -> None:
        """Drop one reference to a frame of this map (a page the page cache
        keeps has the cache's own reference, so it never comes free here)."""
        self.phys.unref(frame)

    def populate(self, start: int, end: int) -> None:
        """Give every absent page of ``[start, end)`` (page-aligned, inside one
        accessible VMA, within its file's pages) a frame now: what
        MAP_POPULATE does, for ranges the North knows will be touched."""
        vma = self.find(start)
        if vma is None or end > vma.end or not vma.prot:
            raise ValueError(f"populate {start:#x}-{end:#x}: not inside one accessible VMA")
        if vma.file is not None and vma.shared is None:
            end = min(end, vma.start + page_align(vma.file_size))
        self._populate_range(vma, start >> PAGE_SHIFT, end >> PAGE_SHIFT)

    def _populate_range(self, vma: VMA, first: int, end: int) -> None:
        """Populate the absent pages of ``[first, end)`` (vpns inside ``vma``)."""
        table = self.frames
        vpn = first
        while vpn < end:
            if vpn in table:
                vpn += 1
                continue
            run = vpn + 1
            while run < end and run not in table:
                run += 1
            self._populate_run(vma, vpn, run - vpn)
            vpn = run

    def _present(self, lo: int, hi: int) -> list[int]:
        """The vpns in ``[lo, hi)`` that have a frame, in order (a huge, sparse
        range is not walked page by page)."""
        frames = self.frames
        if hi - lo <= len(frames):
            return [vpn for vpn in range(lo, hi) if vpn in frames]
        return sorted(vpn for vpn in frames if lo <= vpn < hi)

    def _drop_range(self, lo: int, hi: int, shared: SharedObject | None = None,
                    vma: VMA | None = None) -> None:
        """Drop every page of ``[lo, hi)``: one ``unmap`` per run of present
        pages; a shared mapping's pages are written back first."""
        frames, cow, hot, space = self.frames, self.cow, self.hot, self.space
        run_start = run_end = -1
        gone: list[int] = []
        for vpn in self._present(lo, hi):
            if shared is not None and vma is not None:
                shared.writeback(vma.pgoff(vpn << PAGE_SHIFT), 1)
            if vpn != run_end:
                if run_end >= 0:
                    space.unmap(run_start << PAGE_SHIFT, (run_end - run_start) << PAGE_SHIFT)
                run_start = vpn
            run_end = vpn + 1
            gone.append(frames.pop(vpn))
            cow.discard(vpn)
            hot.pop(vpn, None)
        if run_end >= 0:
            space.unmap(run_start << PAGE_SHIFT, (run_end - run_start) << PAGE_SHIFT)
        self.phys.unref_many(gone)  # after every unmap: the frames may be reused at once

    def _drop_page(self, vpn: int) -> None:
        frame = self.frames.pop(vpn, None)
        if frame is None:
            return
        self.cow.discard(vpn)
        self.hot.pop(vpn, None)
        self.space.unmap(vpn << PAGE_SHIFT, PAGE_SIZE)
        self._unref(frame)

    def _break_cow(self, vma: VMA, vpn: int) -> int:
        frame = self.frames[vpn]
        # A page the cache keeps has its reference too: it is always copied.
        if self.phys.refcount(frame) > 1:
            new = self.phys.alloc(zero=False)  # overwritten whole by the copy
            self.phys.copy_frame(frame, new)
            self._unref(frame)
            frame = new
            self.frames[vpn] = frame
        self.cow.discard(vpn)
        if vma.shared is None:
            hot = self.hot
            hot.pop(vpn, None)
            hot[vpn] = None
            if len(hot) > HOT_PAGES:
                del hot[next(iter(hot))]
        self.space.map(vpn << PAGE_SHIFT, frame, vma.prot)
        return frame

    def handle_fault(self, addr: int, write: bool, execute: bool) -> Fault | None:
        """Resolve a guest page fault; ``None`` when the guest may retry, else its signal."""
        vma = self.find(addr)
        if vma is None:
            return Fault(SIGSEGV, SEGV_MAPERR, addr)
        need = F.PROT_WRITE if write else F.PROT_EXEC if execute else F.PROT_READ
        if not vma.prot & need or not vma.prot:
            return Fault(SIGSEGV, SEGV_ACCERR, addr)
        vpn = addr >> PAGE_SHIFT
        if self._hints_to is not None:
            self._hint(vpn)
        if vpn in self.frames:
            if write and vpn in self.cow:
                self._break_cow(vma, vpn)
            else:
                self.space.map(vpn << PAGE_SHIFT, self.frames[vpn],
                               self._hw_prot(vma.prot, vpn in self.cow))
            return None
        if vma.file is not None and vma.shared is None:
            off = (vpn << PAGE_SHIFT) - vma.start
            if off >= page_align(vma.file_size):
                return Fault(SIGBUS, BUS_ADRERR, addr)
        # Fault-around: neighbours in the same VMA, since every fault is a VM exit.
        lo = vma.start >> PAGE_SHIFT
        if vma.file is None or vma.shared is not None:
            first = max(lo, vpn - FAULT_AROUND // 2)
            self._populate_range(vma, first, min(vma.end >> PAGE_SHIFT, first + FAULT_AROUND))
            return None
        hi = min(vma.end, vma.start + page_align(vma.file_size)) >> PAGE_SHIFT
        first = max(lo, vpn - FILE_FAULT_AROUND // 2)
        with self.same_files():
            self._populate_range(vma, first, min(hi, first + FILE_FAULT_AROUND))
            # Pages the cache already holds cost no read: a wider window of them.
            first = max(lo, vpn - CACHED_FAULT_AROUND // 2)
            self._map_cached(vma, first, min(hi, first + CACHED_FAULT_AROUND))
        return None

    def _map_cached(self, vma: VMA, first: int, end: int, fresh: bool = False) -> None:
        """Map the absent pages of ``[first, end)`` (vpns inside the private
        file mapping ``vma``) that the page cache holds, copy-on-write.
        ``fresh``: none of them is present (a mapping just made)."""
        if vma.prot & F.PROT_WRITE:
            return
        info = self._version(vma.file)
        if info is None:
            return
        key, fsize = info
        pages = cache_for(self.phys).pages(key)
        if not pages:
            return
        if vma.offset + vma.file_size < fsize:  # cut short: only whole pages of file data
            end = min(end, (vma.start + vma.file_size) >> PAGE_SHIFT)
        delta = (vma.offset - vma.start) >> PAGE_SHIFT  # page offset - vpn
        got = get_many(pages, range(first + delta, end + delta))
        table = self.frames
        if not fresh:
            present = get_many(table, range(first, first + len(got)))
            got = [f if p is None else None for f, p in zip(got, present, strict=True)]
        n, total = 0, len(got)
        while n < total:
            if got[n] is None:
                n += 1
                continue
            m = n + 1
            while m < total and got[m] is not None:
                m += 1
            run = got[n:m]
            start = first + n
            self.phys.ref_many(run)  # type: ignore[arg-type]
            vpns = range(start, start + len(run))
            table.update(zip(vpns, run, strict=True))  # type: ignore[arg-type]
            self.cow.update(vpns)
            _map_run(self.space, start << PAGE_SHIFT, run, vma.prot)  # type: ignore[arg-type]
            n = m

    def _hint(self, vpn: int) -> None:
        """Tell the parent this child faulted at ``vpn`` (see FORK_HINTS)."""
        hints = self._hints_to
        assert hints is not None
        self._hint_budget -= 1
        if self._hint_budget <= 0:
            self._hints_to = None
        hints.pop(vpn, None)
        hints[vpn] = None
        if len(hints) > FORK_HINTS:
            del hints[next(iter(hints))]

    # --- guest memory access (EFAULT is decided here) --------------------------
    def _frame_for(self, vpn: int, write: bool) -> int:
        frame = self.frames.get(vpn)
        vma = None
        if frame is None or (write and vpn in self.cow):
            vma = self.find(vpn << PAGE_SHIFT)
            if vma is None:
                raise Errno(E.EFAULT)
        if frame is None:
            assert vma is not None
            if not vma.prot & (F.PROT_WRITE if write else F.PROT_READ):
                raise Errno(E.EFAULT)
            if vma.file is not None and vma.shared is None and (
                    (vpn << PAGE_SHIFT) - vma.start >= page_align(vma.file_size)):
                raise Errno(E.EFAULT)
            frame = self._populate(vma, vpn)
        elif write:
            if vma is None:
                vma = self.find(vpn << PAGE_SHIFT)
                if vma is None:
                    raise Errno(E.EFAULT)
            if not vma.prot & F.PROT_WRITE:
                raise Errno(E.EFAULT)
            if vpn in self.cow:
                frame = self._break_cow(vma, vpn)
        return frame

    def _check_range(self, addr: int, n: int) -> None:
        if addr < 0 or n < 0 or addr + n > USER_TOP:
            raise Errno(E.EFAULT)

    def read(self, addr: int, n: int) -> bytes:
        """Copy ``n`` bytes from guest memory (``copy_from_user``)."""
        self._check_range(addr, n)
        if n == 0:
            return b""
        out = bytearray()
        mem = self.phys.mem
        while n:
            vpn, off = addr >> PAGE_SHIFT, addr & PAGE_MASK
            chunk = min(n, PAGE_SIZE - off)
            base = (self._frame_for(vpn, False) << PAGE_SHIFT) + off
            out += mem[base:base + chunk]
            addr += chunk
            n -= chunk
        return bytes(out)

    def write(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        """Copy into guest memory (``copy_to_user``)."""
        n = len(data)
        self._check_range(addr, n)
        mem = self.phys.mem
        view = memoryview(data).cast("B")
        done = 0
        while done < n:
            vpn, off = addr >> PAGE_SHIFT, addr & PAGE_MASK
            chunk = min(n - done, PAGE_SIZE - off)
            base = (self._frame_for(vpn, True) << PAGE_SHIFT) + off
            mem[base:base + chunk] = view[done:done + chunk]
            addr += chunk
            done += chunk

    def read_cstring(self, addr: int, limit: int) -> bytes:
        """A NUL-terminated string of at most ``limit`` bytes (without the NUL).

        Raises ENAMETOOLONG when no NUL is found within ``limit`` bytes.
        """
        self._check_range(addr, 1)
        out = bytearray()
        mem = self.phys.mem
        while len(out) < limit:
            vpn, off = addr >> PAGE_SHIFT, addr & PAGE_MASK
            base = self._frame_for(vpn, False) << PAGE_SHIFT
            page = bytes(mem[base + off:base + PAGE_SIZE])
            end = page.find(b"\0")
            if end >= 0:
                out += page[:end]
                if len(out) > limit:
                    break
                return bytes(out)
            out += page
            addr += len(page)
        raise Errno(E.ENAMETOOLONG)

    # --- mmap family ---------------------------------------------------------
    def mmap(self, addr: int, length: int, prot: int, flags: int,
             file: PageSource | None = None, offset: int = 0, name: str = "",
             file_size: int | None = None) -> int:
        if file is None or self._versions is not None:
            return self._mmap(addr, length, prot, flags, file, offset, name, file_size)
        self._versions = {}  # as same_files(): one stat of the file for size and version
        try:
            return self._mmap(addr, length, prot, flags, file, offset, name, file_size)
        finally:
            self._versions = None

    def _mmap(self, addr: int, length: int, prot: int, flags: int, file: PageSource | None,
              offset: int, name: str, file_size: int | None) -> int:
        if length <= 0 or offset & PAGE_MASK or offset < 0:
            raise Errno(E.EINVAL)
        kind = flags & F.MAP_TYPE
        if kind not in (F.MAP_SHARED, F.MAP_PRIVATE, F.MAP_SHARED_VALIDATE):
            raise Errno(E.EINVAL)
        if prot & ~(F.PROT_READ | F.PROT_WRITE | F.PROT_EXEC | F.PROT_SEM):
            raise Errno(E.EINVAL)
        length = page_align(length)
        if length > USER_TOP:
            raise Errno(E.ENOMEM)
        fixed = flags & (F.MAP_FIXED | F.MAP_FIXED_NOREPLACE)
        if fixed:
            if addr & PAGE_MASK or addr + length > USER_TOP or addr < MMAP_MIN:
                raise Errno(E.EINVAL if addr & PAGE_MASK else E.ENOMEM)
            if flags & F.MAP_FIXED_NOREPLACE and not flags & F.MAP_FIXED and not \
                    self._range_free(addr, addr + length):
                raise Errno(E.EEXIST)
            self.munmap(addr, length)
            start = addr
        else:
            start = self._free_range(length, addr & ~PAGE_MASK)
        vma = VMA(start, start + length, prot & ~F.PROT_SEM, name=name)
        if kind != F.MAP_PRIVATE:
            vma.shared = SharedObject(self.phys, file)
            vma.shared.users = 1
            vma.offset = offset
        elif file is not None:
            vma.file = file
            vma.offset = offset
            if file_size is None:
                st = file.stat()
                if self._versions is not None and id(file) not in self._versions:
                    self._versions[id(file)] = (file, stat_key(st))  # one stat for both
                vma.file_size = max(0, st.size - offset)  # type: ignore[attr-defined]
            else:
                vma.file_size = file_size
        self._insert(vma)
        if length >> PAGE_SHIFT <= EAGER_PAGES or flags & F.MAP_POPULATE:
            end_fill = vma.end
            if vma.file is not None:
                end_fill = min(vma.end, vma.start + page_align(vma.file_size))
            if vma.prot and end_fill > start:
                self._populate_run(vma, start >> PAGE_SHIFT, (end_fill - start) >> PAGE_SHIFT)
        elif vma.file is not None and vma.prot:
            # Pages the cache holds are mapped now (no reads), not at a fault
            # each: the first EAGER_PAGES of a mapping (headers are read first),
            # more for a loader placing a segment (ld.so mapping a library's text).
            first = start >> PAGE_SHIFT
            count = CACHED_FAULT_AROUND if fixed else EAGER_PAGES
            self._map_cached(vma, first, min(first + count,
                                             (vma.start + page_align(vma.file_size)) >> PAGE_SHIFT,
                                             vma.end >> PAGE_SHIFT), fresh=True)
        return start

    def munmap(self, addr: int, length: int) -> None:
        if addr & PAGE_MASK or length <= 0:
            raise Errno(E.EINVAL)
        end = addr + page_align(length)
        if end > USER_TOP + PAGE_SIZE:
            raise Errno(E.EINVAL)
        for v in self._carve(addr, end):
            self.vmas.remove(v)
            self._starts_cache = None
            self._drop_range(v.start >> PAGE_SHIFT, v.end >> PAGE_SHIFT, v.shared, v)
            if v.shared is not None:
                v.shared.drop()

    def _carve(self, start: int, end: int) -> list[VMA]:
        """Split VMAs at ``start`` and ``end``; the VMAs now inside the range."""
        inside = []
        for v in list(self._overlapping(start, end)):
            if v.start < start:
                high = v.split(start)
                self._insert(high)
                v = high
            if v.end > end:
                self._insert(v.split(end))
            inside.append(v)
        return inside

    def mprotect(self, addr: int, length: int, prot: int) -> None:
        if addr & PAGE_MASK:
            raise Errno(E.EINVAL)
        if prot & ~(F.PROT_READ | F.PROT_WRITE | F.PROT_EXEC | F.PROT_SEM |
                    F.PROT_GROWSDOWN | F.PROT_GROWSUP):
            raise Errno(E.EINVAL)
        end = addr + page_align(length)
        if length == 0:
            return
        # The whole range must be mapped (ENOMEM otherwise), as Linux checks.
        cursor = addr
        for v in sorted(self._overlapping(addr, end), key=lambda v: v.start):
            if v.start > cursor:
                raise Errno(E.ENOMEM)
            cursor = v.end
        if cursor < end:
            raise Errno(E.ENOMEM)
        prot &= F.PROT_READ | F.PROT_WRITE | F.PROT_EXEC
        frames, cow, space = self.frames, self.cow, self.space
        for v in self._carve(addr, end):
            v.prot = prot
            run: list[int] = []  # frames from vpn ``start``, all to get ``rprot``
            start = rprot = -1
            for vpn in [*self._present(v.start >> PAGE_SHIFT, v.end >> PAGE_SHIFT), -1]:
                hw = (prot & ~F.PROT_WRITE if vpn in cow else prot) if vpn >= 0 else -1
                if run and (vpn != start + len(run) or hw != rprot):
                    if rprot:
                        _map_run(space, start << PAGE_SHIFT, run, rprot)
                    else:
                        space.unmap(start << PAGE_SHIFT, len(run) << PAGE_SHIFT)
                    run = []
                if vpn >= 0:
                    if not run:
                        start, rprot = vpn, hw
                    run.append(frames[vpn])

    def madvise(self, addr: int, length: int, advice: int) -> None:
        if addr & PAGE_MASK:
            raise Errno(E.EINVAL)
        end = addr + page_align(length)
        if advice in (F.MADV_DONTNEED, F.MADV_FREE):
            if not any(True for _ in self._overlapping(addr, end)):
                raise Errno(E.ENOMEM)
            for v in self._overlapping(addr, end):
                lo, hi = max(v.start, addr), min(v.end, end)
                # Private pages refault as zero/file content; shared ones keep theirs.
                self._drop_range(lo >> PAGE_SHIFT, hi >> PAGE_SHIFT)
        elif advice in (F.MADV_REMOVE,):
            raise Errno(E.EOPNOTSUPP)
        # Other advice is a hint: accepted and ignored, as Linux may.

    def msync(self, addr: int, length: int, flags: int) -> None:
        if addr & PAGE_MASK or flags & ~(F.MS_ASYNC | F.MS_INVALIDATE | F.MS_SYNC) or (
                flags & F.MS_ASYNC and flags & F.MS_SYNC):
            raise Errno(E.EINVAL)
        end = addr + page_align(length)
        cursor = addr
        for v in sorted(self._overlapping(addr, end), key=lambda v: v.start):
            if v.start > cursor:
                raise Errno(E.ENOMEM)
            cursor = v.end
            if v.shared is not None:
                lo, hi = max(v.start, addr), min(v.end, end)
                v.shared.writeback(v.pgoff(lo), (hi - lo) >> PAGE_SHIFT)
        if cursor < end:
            raise Errno(E.ENOMEM)

    def mremap(self, old: int, old_len: int, new_len: int, flags: int,
               new_addr: int = 0) -> int:
        if old & PAGE_MASK or flags & ~(F.MREMAP_MAYMOVE | F.MREMAP_FIXED |
                                        F.MREMAP_DONTUNMAP):
            raise Errno(E.EINVAL)
        if flags & F.MREMAP_FIXED and not flags & F.MREMAP_MAYMOVE:
            raise Errno(E.EINVAL)
        if new_len == 0:
            raise Errno(E.EINVAL)
        old_len, new_len = page_align(old_len), page_align(new_len)
        vma = self.find(old)
        if vma is None or old + old_len > vma.end or old_len == 0:
            raise Errno(E.EFAULT)
        if flags & F.MREMAP_FIXED:
            if new_addr & PAGE_MASK:
                raise Errno(E.EINVAL)
            return self._move(vma, old, old_len, new_len, new_addr, fixed=True)
        if new_len <= old_len:
            if new_len < old_len:
                self.munmap(old + new_len, old_len - new_len)
            return old
        grow_end = old + new_len
        if old + old_len == vma.end and grow_end <= USER_TOP and self._range_free(
                vma.end, grow_end):
            vma.end = grow_end
            if vma.file is None and vma.shared is None and (
                    new_len - old_len) >> PAGE_SHIFT <= EAGER_PAGES:
                self._populate_range(vma, (old + old_len) >> PAGE_SHIFT, grow_end >> PAGE_SHIFT)
            return old
        if not flags & F.MREMAP_MAYMOVE:
            raise Errno(E.ENOMEM)
        return self._move(vma, old, old_len, new_len, 0, fixed=False)

    def _move(self, vma: VMA, old: int, old_len: int, new_len: int, new_addr: int, *,
              fixed: bool) -> int:
        if fixed:
            self.munmap(new_addr, new_len)
            dest = new_addr
        else:
            dest = self._free_range(new_len)
        (part,) = self._carve(old, old + old_len)
        self.vmas.remove(part)
        self._starts_cache = None
        moved = VMA(dest, dest + new_len, part.prot, part.shared, part.file,
                    part.offset, part.name, part.file_size)
        for i in range(old_len >> PAGE_SHIFT):
            src = (old >> PAGE_SHIFT) + i
            frame = self.frames.pop(src, None)
            if frame is None:
                continue
            was_cow = src in self.cow
            self.cow.discard(src)
            self.hot.pop(src, None)
            self.space.unmap(src << PAGE_SHIFT, PAGE_SIZE)
            dst = (dest >> PAGE_SHIFT) + i
            self.frames[dst] = frame
            if was_cow:
                self.cow.add(dst)
            self.space.map(dst << PAGE_SHIFT, frame, self._hw_prot(moved.prot, was_cow))
        self._insert(moved)
        return dest

    # --- brk ------------------------------------------------------------------
    def set_brk_base(self, addr: int) -> None:
        self.brk_start = self.brk_end = page_align(addr)

    def brk(self, new: int) -> int:
        if new < self.brk_start:
            return self.brk_end
        old_top, new_top = page_align(self.brk_end), page_align(new)
        if new_top > old_top:
            if not self._range_free(old_top, new_top) or new_top > USER_TOP:
                return self.brk_end
            heap = self.find(old_top - 1) if old_top > self.brk_start else None
            if heap is not None and heap.name == "[heap]" and heap.end == old_top:
                heap.end = new_top
            else:
                self._insert(VMA(old_top, new_top, F.PROT_READ | F.PROT_WRITE, name="[heap]"))
        elif new_top < old_top:
            self.munmap(new_top, old_top - new_top)
        self.brk_end = new
        return new

    # --- fork and teardown -------------------------------------------------
    def fork(self, space: AddressSpace) -> MemoryMap:
        """A copy-on-write duplicate for a forked process.

        Private pages become read-only in both maps (``cow``); the parent's
        pages that were still writable are narrowed in runs of consecutive
        pages (one platform call, one batched shoot-down each) and the
        child's map is written in runs too. The parent's ``hot`` pages are
        copied for the child right away and stay writable in the parent.
        """
        child = MemoryMap(self.phys, space, brk_start=self.brk_start, brk_end=self.brk_end)
        try:
            self._fork_into(child)
        except Errno:
            child.release()  # ENOMEM copying a hot page: drop what the child holds
            raise
        child._hints_to, child._hint_budget = self.fork_hints, HINT_FAULTS
        return child

    def _fork_into(self, child: MemoryMap) -> None:
        space = child.space
        phys = self.phys
        frames, cow, hot = self.frames, self.cow, self.hot
        if type(frames) is not dict:  # a restored clone's BaseDict: read a flat copy
            frames = frames.flat()  # type: ignore[attr-defined]
        cframes, ccow = child.frames, child.cow
        # The parent's new cow pages, added at the end (each page is seen once,
        # so the ``not in cow`` tests below are unaffected): one update.
        cow_add: list[int] = []
        vpns = sorted(frames)
        i = 0
        cached = cache_for(phys).frames
        if type(cached) is BaseDict:  # a restored clone's: a flat copy for the per-page tests
            cached = cached.flat()
        hints = self.fork_hints
        hint_blocks = {h >> HINT_BLOCK_SHIFT for h in hints}
        for v in self.vmas:
            c = VMA(v.start, v.end, v.prot, v.shared, v.file, v.offset, v.name, v.file_size)
            if v.shared is not None:
                v.shared.users += 1
            child.vmas.append(c)
            lo, hi = v.start >> PAGE_SHIFT, v.end >> PAGE_SHIFT
            i = bisect.bisect_left(vpns, lo, i)
            j = bisect.bisect_left(vpns, hi, i)
            todo, i = vpns[i:j], j
            private = v.shared is None
            cow_prot = self._hw_prot(v.prot, private)
            writable = private and bool(v.prot & F.PROT_WRITE)
            # Clean file pages stay in the page cache while the parent maps them:
            # the child faults in the few it touches (a fork is mostly followed
            # by an exec), as Linux leaves file-backed ptes to faults at fork;
            # except near pages earlier children faulted (``fork_hints``).
            if private and not writable and v.file is not None:
                todo = [p for p in todo if frames[p] not in cached
                        or p >> HINT_BLOCK_SHIFT in hint_blocks]
            crun: list[int] = []  # the child's current run of frames, from cstart
            cstart, cprot = 0, 0
            prun: list[int] = []  # parent pages to write-protect, from pstart
            pstart = 0
            shared: list[int] = []  # frames the child now maps too (one ref_many)
            try:
                for vpn in todo:
                    f = frames[vpn]
                    prot = cow_prot
                    if writable and (vpn in hot or vpn in hints):
                        f = phys.alloc(zero=False)  # overwritten whole by the copy
                        phys.copy_frame(frames[vpn], f)
                        prot = v.prot
                    else:
                        shared.append(f)
                        if private:
                            if writable and vpn not in cow:
                                if not prun or vpn != pstart + len(prun):
                                    if prun:
                                        _protect_run(self.space, pstart << PAGE_SHIFT, prun,
                                                     cow_prot)
                                    prun, pstart = [], vpn
                                prun.append(f)
                            cow_add.append(vpn)
                            ccow.add(vpn)
                    cframes[vpn] = f
                    if v.prot:
                        if not crun or vpn != cstart + len(crun) or prot != cprot:
                            if crun:
                                _map_run(space, cstart << PAGE_SHIFT, crun, cprot)
                            crun, cstart, cprot = [], vpn, prot
                        crun.append(f)
            finally:
                # Even when a copy fails: the child's frames are referenced (its
                # release gives them back), and a page in the parent's ``cow``
                # must be read-only, or the next fork would share it writable.
                phys.ref_many(shared)
                cow.update(cow_add)
                cow_add.clear()
                if prun:
                    _protect_run(self.space, pstart << PAGE_SHIFT, prun, cow_prot)
            if crun:
                _map_run(space, cstart << PAGE_SHIFT, crun, cprot)

    def release(self, unmap: bool = True) -> None:
        """Free every page (exit or exec): unmapped in runs, then unreferenced.
        ``unmap=False`` when the address space is destroyed as a whole next."""
        space = self.space
        run_start = run_end = -1
        for vpn in sorted(self.frames) if unmap else ():
            if vpn != run_end:
                if run_end > 0:
                    space.unmap(run_start << PAGE_SHIFT, (run_end - run_start) << PAGE_SHIFT)
                run_start = vpn
            run_end = vpn + 1
        if run_end > 0:
            space.unmap(run_start << PAGE_SHIFT, (run_end - run_start) << PAGE_SHIFT)
        self.phys.unref_many(self.frames.values())
        self.frames.clear()
        self.cow.clear()
        self.hot.clear()
        for v in self.vmas:
            if v.shared is not None:
                v.shared.drop()
        self.vmas.clear()
        self._starts_cache = None

    def resident_pages(self) -> int:
        return len(self.frames)
