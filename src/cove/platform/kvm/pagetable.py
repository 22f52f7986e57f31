"""4-level x86-64 page tables kept in guest physical frames, written by the host.

Keeping shadow paging honest. On kvm_pvm (and any KVM without EPT/NPT) KVM
shadows the guest page tables and trusts a shadow entry until the *guest*
writes the page table; the host writing it through the memslot is invisible,
and neither a guest CR3 reload nor KVM_SET_SREGS resynchronises (measured:
after the host re-pointed or cleared a PTE the guest kept reading the old
frame). What does work, on every kind of KVM:
- adding a mapping (not-present -> present) or widening one: the guest's next
  access faults into KVM, which re-walks the tables from memory;
- narrowing one (unmap, re-point, drop W or X): ``madvise(MADV_DONTNEED)`` on
  the *old data frame* in the host mapping fires KVM's MMU notifier, which
  zaps every shadow/EPT entry mapping that frame (and flushes TLBs); the
  memfd keeps the data. Done eagerly, so a frame may be freed right after;
- freeing page-table frames (``destroy``): KVM may still hold shadow pages for
  those frames and would reuse them, stale, if a frame became a page table
  again, so they go to the platform's ``TablePool``, which reuses them only
  after it zapped all shadow state (a dummy memslot add+delete), once for
  many dead address spaces.
Upper-level entries are only ever added, never changed, until ``destroy``.
"""

from __future__ import annotations

from cove.platform.base import (
    PROT_EXEC,
    PROT_NONE,
    PROT_READ,
    PROT_WRITE,
    USER_ADDRESS_LIMIT,
    check_user_range,
    read_virtual,
    write_virtual,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from collections.abc import Iterator

    from cove.kernel.physmem import PhysMem
    from cove.platform.kvm.tablepool import TablePool

P = 1 << 0
W = 1 << 1
U = 1 << 2
A = 1 << 5
D = 1 << 6
HELD = 1 << 9  # software bit: a PROT_NONE page still bound to its frame
NX = 1 << 63
ADDR = 0x000F_FFFF_FFFF_F000
# Upper levels allow everything; the leaf decides. A (and D on writable leaves) are
# set from the start: the CPU never writes them into the tables then, so a restored
# image's tables stay shared with the image instead of being copied by that write.
TABLE = P | W | U | A

PAGE = 4096


def pte_for(frame: int, prot: int) -> int:
    if prot == PROT_NONE:
        return (frame << 12) | HELD
    e = (frame << 12) | P | U | A
    if prot & PROT_WRITE:
        e |= W | D
    if not prot & PROT_EXEC:
        e |= NX
    return e


def same_entry(old: int, new: int) -> bool:
    """``old`` differs from ``new`` at most in the accessed/dirty bits (which
    the CPU sets, and cove never reads)."""
    return (old | A | D) == (new | A | D)


def prot_of(e: int) -> int:
    if not e & P:
        return PROT_NONE
    return PROT_READ | (PROT_WRITE if e & W else 0) | (0 if e & NX else PROT_EXEC)


def _narrows(old: int, new: int) -> bool:
    """Would a stale translation of ``old`` allow more than ``new`` does?"""
    if not old & P:
        return False
    if not new & P or (old ^ new) & ADDR:
        return True
    return bool((old & W and not new & W) or (new & NX and not old & NX))


class PageTables:
    """A PML4 tree in physmem. ``q`` is the whole of guest memory as u64s."""

    def __init__(self, pool: TablePool, q: memoryview) -> None:
        self._pool = pool
        self._q = q
        self.tables: list[int] = []
        self.root = self._new_table()

    def _new_table(self) -> int:
        f = self._pool.alloc()  # zero-filled
        self.tables.append(f)
        return f

    def leaf(self, vaddr: int, create: bool) -> int:
        """Index into ``q`` of the PTE for ``vaddr``, or -1 if a level is missing."""
        q = self._q
        t = self.root
        for shift in (39, 30, 21):
            i = (t << 9) | ((vaddr >> shift) & 511)
            e = q[i]
            if not e & P:
                if not create:
                    return -1
                n = self._new_table()
                q[i] = (n << 12) | TABLE
                t = n
            else:
                t = (e & ADDR) >> 12
        return (t << 9) | ((vaddr >> 12) & 511)

    def set_entry(self, index: int, value: int) -> None:
        self._q[index] = value


class KvmAddressSpace:
    """A user address space (see ``cove.platform.base.AddressSpace``)."""

    def __init__(
        self,
        pm: PhysMem,
        q: memoryview,
        kernel_pml4e: int,
        pool: TablePool,
    ) -> None:
        self._pm = pm
        self._q = q
        self._pool = pool
        self._pt = PageTables(pool, q)
        q[(self._pt.root << 9) | 511] = kernel_pml4e  # the shared kernel half
        self.cr3 = self._pt.root << 12
        self.flush_gen = 0  # bumped by flush(); cpus reload CR3 when it moved
        self._last_pt = (-1, -1)  # (vaddr >> 21, q index of that page table): walk cache
        self.destroyed = False

    @classmethod
    def adopt(cls, pm: PhysMem, q: memoryview, kernel_pml4e: int, pool: TablePool, root: int,
              tables: list[int]) -> KvmAddressSpace:
        """The address space whose tables (``root`` first) a restored guest
        memory image already holds: nothing is allocated or written but the
        kernel half's entry."""
        if not tables or tables[0] != root or not all(0 <= f < pm.nframes for f in tables):
            raise ValueError("snapshot page tables are malformed")
        self = cls.__new__(cls)
        self._pm, self._q, self._pool = pm, q, pool
        pt = self._pt = PageTables.__new__(PageTables)
        pt._pool, pt._q, pt.tables, pt.root = pool, q, [int(f) for f in tables], int(root)
        i = (pt.root << 9) | 511
        if not same_entry(q[i], kernel_pml4e):  # a write would unshare the image's page
            q[i] = kernel_pml4e
        self.cr3 = pt.root << 12
        self.flush_gen = 0
        self._last_pt = (-1, -1)
        self.destroyed = False
        return self

    @property
    def tables(self) -> list[int]:
        """The frames of this space's page tables, root first."""
        return self._pt.tables

    # --- helpers --------------------------------------------------------------

    _check = staticmethod(check_user_range)

    def _leaf(self, vaddr: int, create: bool) -> int:
        key = vaddr >> 21
        last_key, base = self._last_pt
        if key == last_key:
            return base + ((vaddr >> 12) & 511)
        i = self._pt.leaf(vaddr, create)
        if i >= 0:
            self._last_pt = (key, i - ((vaddr >> 12) & 511))
        return i

    def _shoot(self, frames: list[int]) -> None:
        """Make KVM forget every translation to these frames (see module doc)."""
        if not frames:
            return
        frames.sort()
        zap = self._pm.zap  # MADV_DONTNEED, or what keeps a snapshot image's data
        start = prev = frames[0]
        for f in frames[1:]:
            if f == prev + 1:
                prev = f
                continue
            if f != prev:
                zap(start << 12, (prev - start + 1) << 12)
                start = f
            prev = f
        zap(start << 12, (prev - start + 1) << 12)
        # No guest TLB flush needed on top: the notifier-driven zap flushes
        # KVM's TLB tags (shadow roots, or INVEPT/NPT ASID on hardware) itself.

    # --- the AddressSpace contract -------------------------------------------

    def map(self, vaddr: int, frame: int, prot: int) -> None:
        self.map_range(vaddr, [frame], prot)

    def map_range(self, vaddr: int, frames: list[int], prot: int) -> None:
        self._check(vaddr, len(frames) * PAGE)
        nframes = self._pm.nframes
        q = self._q
        bits = pte_for(0, prot)
        stale: list[int] = []
        i = -1
        va = vaddr
        for frame in frames:
            if not 0 <= frame < nframes:
                raise ValueError(f"frame {frame:#x} outside guest memory")
            # Consecutive pages share a page table up to each 2 MiB boundary.
            i = self._leaf(va, True) if i < 0 or not va & 0x1FFFFF else i + 1
            old = q[i]
            new = (frame << 12) | bits
            q[i] = new
            if old & P and _narrows(old, new):
                stale.append((old & ADDR) >> 12)
            va += PAGE
        self._shoot(stale)

    def _spans(self, vaddr: int, length: int) -> Iterator[tuple[int, int]]:
        """(first index into ``q``, page count) for each 2 MiB-aligned piece of
        the range that has a page table; pieces without one hold no mapping."""
        q, root = self._q, self._pt.root
        end = vaddr + length
        va = vaddr
        while va < end:
            t = root
            for shift in (39, 30, 21):
                e = q[(t << 9) | ((va >> shift) & 511)]
                if not e & P:  # nothing below: skip all this entry covers
                    va = ((va >> shift) + 1) << shift
                    break
                t = (e & ADDR) >> 12
            else:
                stop = min(end, (va | 0x1FFFFF) + 1)
                yield (t << 9) | ((va >> 12) & 511), (stop - va) >> 12
                va = stop

    def unmap(self, vaddr: int, length: int) -> list[int]:
        self._check(vaddr, length)
        q = self._q
        out: list[int] = []
        stale: list[int] = []
        for first, count in self._spans(vaddr, length):
            for i in range(first, first + count):
                old = q[i]
                if old & (P | HELD):
                    q[i] = 0
                    f = (old & ADDR) >> 12
                    out.append(f)
                    if old & P:
                        stale.append(f)
        self._shoot(stale)
        return out

    def protect(self, vaddr: int, length: int, prot: int) -> None:
        self._check(vaddr, length)
        q = self._q
        bits = pte_for(0, prot)
        stale: list[int] = []
        for first, count in self._spans(vaddr, length):
            for i in range(first, first + count):
                old = q[i]
                if old & (P | HELD):
                    new = (old & ADDR) | bits
                    q[i] = new
                    if _narrows(old, new):
                        stale.append((old & ADDR) >> 12)
        self._shoot(stale)

    def lookup(self, vaddr: int) -> tuple[int, int] | None:
        if not 0 <= vaddr < USER_ADDRESS_LIMIT:
            return None
        i = self._leaf(vaddr & ~0xFFF, False)
        if i < 0:
            return None
        e = self._q[i]
        if not e & (P | HELD):
            return None
        return (e & ADDR) >> 12, prot_of(e)

    def translate(self, vaddr: int, write: bool = False) -> int | None:
        if not 0 <= vaddr < USER_ADDRESS_LIMIT:
            return None
        i = self._leaf(vaddr & ~0xFFF, False)
        if i < 0:
            return None
        e = self._q[i]
        if not e & P or (write and not e & W):
            return None
        return (e & ADDR) | (vaddr & 0xFFF)

    def read(self, vaddr: int, length: int) -> bytes:
        """Copy guest virtual memory out (user-mode permissions); Errno(EFAULT).
        For tests and tools; the North has its own copy_in."""
        return read_virtual(self.translate, self._pm.mem, vaddr, length)

    def write(self, vaddr: int, data: bytes | bytearray | memoryview) -> None:
        """Copy into guest virtual memory (needs user write permission)."""
        write_virtual(self.translate, self._pm.mem, vaddr, data)

    def flush(self) -> None:
        self.flush_gen += 1

    def destroy(self) -> None:
        if self.destroyed:
            return
        self.destroyed = True
        # No shoot-down here: the stale translations left in KVM live in the
        # shadow pages of these tables, unreachable once nothing loads this
        # root, and the pool reuses the frames only after a zap.
        self._pool.retire(self._pt.tables)
        self._pt.tables = []
