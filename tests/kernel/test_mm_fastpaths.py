"""MemoryMap's batched paths: runs of pages, hot pages copied at fork, release."""

from __future__ import annotations

import pytest

from cove.abi import flags as F
from cove.abi.errno import E, Errno
from cove.kernel import mm as mm_mod
from cove.kernel.mm import MemoryMap
from cove.kernel.physmem import PAGE_SIZE, PhysMem

from .fakes import FakeSpace

RW = F.PROT_READ | F.PROT_WRITE
ANON = F.MAP_PRIVATE | F.MAP_ANONYMOUS


class RangeSpace(FakeSpace):
    """A FakeSpace with the batch calls, counting them."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, int, int]] = []

    def map_range(self, vaddr: int, frames: list[int], prot: int) -> None:
        self.calls.append(("map_range", vaddr, len(frames)))
        for n, f in enumerate(frames):
            self.map(vaddr + n * PAGE_SIZE, f, prot)

    def protect(self, vaddr: int, length: int, prot: int) -> None:
        self.calls.append(("protect", vaddr, length // PAGE_SIZE))
        for a in range(vaddr, vaddr + length, PAGE_SIZE):
            if a in self.pages:
                self.pages[a] = (self.pages[a][0], prot)


class File:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.reads = 0

    def pread(self, size: int, offset: int) -> bytes:
        self.reads += 1
        return self.data[offset:offset + size]

    def pwrite(self, data: bytes, offset: int) -> int:
        return len(data)

    def stat(self) -> object:
        class S:
            size = len(self.data)
        return S()


@pytest.fixture
def phys():
    p = PhysMem(64 << 20)
    yield p
    p.close()


def test_file_fault_around_reads_once_and_maps_one_run(phys):
    m = MemoryMap(phys, RangeSpace())
    data = bytes(range(256)) * 16 * 40 + b"tail"  # 40 pages and 4 bytes
    f = File(data)
    a = m.mmap(0, 100 * PAGE_SIZE, F.PROT_READ, F.MAP_PRIVATE, f, 0)
    assert m.resident_pages() == 0  # larger than EAGER_PAGES: lazy
    assert m.handle_fault(a + 20 * PAGE_SIZE, False, False) is None
    assert f.reads == 1
    assert m.resident_pages() == 41  # stops at the last page with file data
    assert [c for c in m.space.calls if c[0] == "map_range"] == [("map_range", a, 41)]
    assert m.read(a + 40 * PAGE_SIZE, 8) == b"tail" + bytes(4)
    assert m.read(a + 7 * PAGE_SIZE + 5, 3) == data[7 * PAGE_SIZE + 5:7 * PAGE_SIZE + 8]
    assert m.handle_fault(a + 41 * PAGE_SIZE, False, False).signo == mm_mod.SIGBUS


def test_fork_narrows_the_parent_in_runs(phys):
    m = MemoryMap(phys, RangeSpace())
    a = m.mmap(0, 10 * PAGE_SIZE, RW, ANON | F.MAP_POPULATE)
    m.munmap(a + 4 * PAGE_SIZE, PAGE_SIZE)  # two runs: 4 pages and 5 pages
    child = m.fork(RangeSpace())
    prot = [c for c in m.space.calls if c[0] == "protect"]
    assert prot == [("protect", a, 4), ("protect", a + 5 * PAGE_SIZE, 5)]
    assert all(p == F.PROT_READ for _, p in m.space.pages.values())
    assert all(p == F.PROT_READ for _, p in child.space.pages.values())


def test_hot_pages_are_copied_at_the_next_fork(phys):
    m = MemoryMap(phys, FakeSpace())
    a = m.mmap(0, 4 * PAGE_SIZE, RW, ANON | F.MAP_POPULATE)
    m.write(a, b"one")
    c1 = m.fork(FakeSpace())
    m.write(a, b"two")  # COW break: page 0 is hot now
    assert list(m.hot) == [a >> 12]
    c1.release()
    c2 = m.fork(FakeSpace())
    # Page 0 was copied for the child: both writable, different frames.
    pf, pprot = m.space.pages[a]
    cf, cprot = c2.space.pages[a]
    assert pf != cf and pprot == RW and cprot == RW
    assert (a >> 12) not in m.cow and (a >> 12) not in c2.cow
    # The cold pages are shared copy-on-write as usual.
    assert c2.space.pages[a + PAGE_SIZE][0] == m.space.pages[a + PAGE_SIZE][0]
    assert (a >> 12) + 1 in c2.cow
    m.write(a, b"par")
    c2.write(a, b"chi")
    assert m.read(a, 3) == b"par" and c2.read(a, 3) == b"chi"
    c2.release()
    assert list(m.hot) == [a >> 12]  # still hot for the fork after that


def test_hot_set_is_bounded_and_forgets_unmapped_pages(phys, monkeypatch):
    monkeypatch.setattr(mm_mod, "HOT_PAGES", 3)
    m = MemoryMap(phys, FakeSpace())
    a = m.mmap(0, 8 * PAGE_SIZE, RW, ANON | F.MAP_POPULATE)
    c = m.fork(FakeSpace())
    for i in range(5):
        m.write(a + i * PAGE_SIZE, b"x")
    assert list(m.hot) == [(a >> 12) + i for i in (2, 3, 4)]
    m.munmap(a + 3 * PAGE_SIZE, PAGE_SIZE)
    assert list(m.hot) == [(a >> 12) + i for i in (2, 4)]
    c.release()


def test_fork_out_of_memory_copying_hot_pages_leaves_no_references(phys):
    m = MemoryMap(phys, FakeSpace())
    a = m.mmap(0, 2 * PAGE_SIZE, RW, ANON | F.MAP_POPULATE)
    c = m.fork(FakeSpace())
    m.write(a + PAGE_SIZE, b"x")  # page 1 hot: page 0 is shared before the copy fails
    c.release()
    hoard = []
    with pytest.raises(Errno) as e:
        while True:
            hoard.append(phys.alloc())
    assert e.value.errno == E.ENOMEM
    with pytest.raises(Errno):
        m.fork(FakeSpace())
    assert phys.refcount(m.frames[a >> 12]) == 1
    assert phys.refcount(m.frames[(a >> 12) + 1]) == 1


def test_release_without_unmap_frees_every_frame(phys):
    s = FakeSpace()
    m = MemoryMap(phys, s)
    m.mmap(0, 8 * PAGE_SIZE, RW, ANON | F.MAP_POPULATE)
    used = phys.frames_in_use
    m.release(unmap=False)
    assert phys.frames_in_use == used - 8
    assert len(s.pages) == 8  # left for the space's own destruction
    m2 = MemoryMap(phys, s2 := FakeSpace())
    m2.mmap(0, 8 * PAGE_SIZE, RW, ANON | F.MAP_POPULATE)
    m2.release()
    assert s2.pages == {}


def test_munmap_of_a_huge_sparse_mapping_unmaps_runs_only(phys):
    s = RangeSpace()
    s.unmaps: list[tuple[int, int]] = []
    orig = s.unmap

    def unmap(vaddr: int, length: int) -> list[int]:
        s.unmaps.append((vaddr, length // PAGE_SIZE))
        return orig(vaddr, length)

    s.unmap = unmap  # type: ignore[method-assign]
    m = MemoryMap(phys, s)
    a = m.mmap(0, 1 << 40, RW, ANON | F.MAP_NORESERVE)  # 2**28 pages: never walked
    for off in (0, PAGE_SIZE, 5 << 30):
        m.write(a + off, b"x")
    used = phys.frames_in_use
    n = m.resident_pages()
    m.madvise(a, 2 * PAGE_SIZE, F.MADV_DONTNEED)
    assert m.read(a, 1) == b"\0"
    m.munmap(a, 1 << 40)
    assert m.resident_pages() == 0 and phys.frames_in_use == used - n
    assert all(length <= 16 for _, length in s.unmaps)  # runs of present pages only
    assert s.pages == {}


def test_mprotect_in_runs_keeps_cow_pages_read_only(phys):
    m = MemoryMap(phys, RangeSpace())
    a = m.mmap(0, 6 * PAGE_SIZE, RW, ANON | F.MAP_POPULATE)
    c = m.fork(FakeSpace())
    m.write(a + 2 * PAGE_SIZE, b"x")  # page 2 private again, the rest copy-on-write
    m.madvise(a + 4 * PAGE_SIZE, PAGE_SIZE, F.MADV_DONTNEED)  # a hole: absent until touched
    m.space.calls.clear()
    rwx = RW | F.PROT_EXEC
    m.mprotect(a, 6 * PAGE_SIZE, rwx)
    prots = [m.space.pages[a + k * PAGE_SIZE][1] for k in (0, 1, 2, 3, 5)]
    assert prots == [F.PROT_READ | F.PROT_EXEC] * 2 + [rwx] + [F.PROT_READ | F.PROT_EXEC] * 2
    assert a + 4 * PAGE_SIZE not in m.space.pages
    assert len(m.space.calls) == 4  # runs: pages 0-1, 2, 3, 5
    m.mprotect(a, 6 * PAGE_SIZE, F.PROT_NONE)
    assert m.space.pages == {}
    m.mprotect(a, 6 * PAGE_SIZE, RW)
    assert m.space.pages[a + 2 * PAGE_SIZE] == (m.frames[(a >> 12) + 2], RW)
    assert m.space.pages[a][1] == F.PROT_READ
    assert m.read(a + 2 * PAGE_SIZE, 1) == b"x"
    c.release()


def test_a_failed_fork_leaves_every_cow_page_read_only(phys):
    m = MemoryMap(phys, FakeSpace())
    a = m.mmap(0, 3 * PAGE_SIZE, RW, ANON | F.MAP_POPULATE)
    c = m.fork(FakeSpace())
    m.write(a + 2 * PAGE_SIZE, b"h")  # page 2 hot: copying it will fail below
    c.release()
    m.madvise(a, PAGE_SIZE, F.MADV_DONTNEED)
    m.write(a, b"w")  # page 0: fresh, writable, not copy-on-write
    assert m.space.pages[a][1] == RW
    hoard = []
    with pytest.raises(Errno):
        while True:
            hoard.append(phys.alloc())
    with pytest.raises(Errno):
        m.fork(FakeSpace())
    for vpn in m.cow:
        assert m.space.pages[vpn << 12][1] == F.PROT_READ, hex(vpn)
