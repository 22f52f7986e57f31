"""The page cache: private file mappings share clean pages, the cache keeps
them after the last mapping goes (with a reference of its own, within a
limit, given back when memory runs out), and nobody ever sees another
mapping's writes or an old version of the file."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from cove.abi import flags as F
from cove.abi.errno import Errno
from cove.kernel.mm import (
    CACHED_FAULT_AROUND,
    EAGER_PAGES,
    HINT_BLOCK_SHIFT,
    HINT_FAULTS,
    MemoryMap,
)
from cove.kernel.pagecache import cache_for
from cove.kernel.physmem import PAGE_SIZE, PhysMem

from .fakes import FakeSpace

R, RW, RX = F.PROT_READ, F.PROT_READ | F.PROT_WRITE, F.PROT_READ | F.PROT_EXEC
PRIV = F.MAP_PRIVATE


@dataclass
class St:
    dev: int
    ino: int
    size: int
    mtime_ns: int
    ctime_ns: int
    mode: int = 0o100644


class VFile:
    """A file with a full stat; every write moves mtime/ctime, as the VFS does."""

    def __init__(self, data: bytes, ino: int = 7) -> None:
        self.data = bytearray(data)
        self.ino = ino
        self.t = 1
        self.reads = 0

    def write(self, off: int, data: bytes) -> None:
        self.data[off:off + len(data)] = data
        self.t += 1

    def pread(self, size: int, offset: int) -> bytes:
        self.reads += 1
        return bytes(self.data[offset:offset + size])

    def pwrite(self, data: bytes, offset: int) -> int:
        return len(data)

    def stat(self) -> St:
        return St(1, self.ino, len(self.data), self.t, self.t)


@pytest.fixture
def phys():
    p = PhysMem(64 << 20)
    yield p
    p.close()


def pages(n: int, tag: bytes = b"") -> bytes:
    return b"".join((tag + bytes([65 + i])) * (PAGE_SIZE // (len(tag) + 1)) + bytes(
        PAGE_SIZE % (len(tag) + 1)) for i in range(n))


def test_two_mappings_share_frames_read_only(phys):
    f = VFile(pages(8))
    a, b = MemoryMap(phys, FakeSpace()), MemoryMap(phys, FakeSpace())
    pa = a.mmap(0, 8 * PAGE_SIZE, RX, PRIV, f, 0)
    pb = b.mmap(0, 8 * PAGE_SIZE, RX, PRIV, f, 0)
    assert a.frames[pa >> 12] == b.frames[pb >> 12]
    assert f.reads == 1  # the second mapping read nothing
    assert all(p == RX for _, p in b.space.pages.values())
    assert phys.refcount(a.frames[pa >> 12]) == 3  # two maps and the cache
    assert b.read(pb + 3 * PAGE_SIZE, 1) == b"D"


def test_mprotect_and_write_copies_and_never_touches_the_shared_frame(phys):
    f = VFile(pages(4))
    a, b = MemoryMap(phys, FakeSpace()), MemoryMap(phys, FakeSpace())
    pa = a.mmap(0, 4 * PAGE_SIZE, R, PRIV, f, 0)
    pb = b.mmap(0, 4 * PAGE_SIZE, R, PRIV, f, 0)
    shared = a.frames[pa >> 12]
    a.mprotect(pa, 4 * PAGE_SIZE, RW)
    assert a.space.pages[pa][1] == R  # still copy-on-write after mprotect
    assert a.handle_fault(pa, write=True, execute=False) is None
    a.write(pa, b"mine")
    assert a.frames[pa >> 12] != shared
    assert b.read(pb, 4) == b"AAAA"
    c = MemoryMap(phys, FakeSpace())
    pc = c.mmap(0, 4 * PAGE_SIZE, R, PRIV, f, 0)
    assert c.read(pc, 4) == b"AAAA"


def test_the_last_user_writing_copies_the_cached_frame(phys):
    f = VFile(pages(2))
    a = MemoryMap(phys, FakeSpace())
    pa = a.mmap(0, 2 * PAGE_SIZE, R, PRIV, f, 0)
    cached = a.frames[pa >> 12]
    a.mprotect(pa, 2 * PAGE_SIZE, RW)
    a.write(pa, b"dirty")  # the cache holds the frame too: the writer gets a copy
    assert a.frames[pa >> 12] != cached
    assert cache_for(phys).owns(cached) and not cache_for(phys).owns(a.frames[pa >> 12])
    assert phys.read(cached << 12, 5) == b"AAAAA"
    b = MemoryMap(phys, FakeSpace())
    pb = b.mmap(0, 2 * PAGE_SIZE, R, PRIV, f, 0)
    assert b.read(pb, 5) == b"AAAAA" and f.reads == 1
    assert a.read(pa, 5) == b"dirty"


def test_a_changed_file_is_a_new_version(phys):
    f = VFile(pages(2))
    a = MemoryMap(phys, FakeSpace())
    pa = a.mmap(0, 2 * PAGE_SIZE, R, PRIV, f, 0)
    f.write(0, b"new")
    b = MemoryMap(phys, FakeSpace())
    pb = b.mmap(0, 2 * PAGE_SIZE, R, PRIV, f, 0)
    assert b.read(pb, 4) == b"newA"
    assert a.read(pa, 4) == b"AAAA"  # a mapping keeps the page it already had


def test_the_cache_keeps_pages_after_the_last_mapping_goes(phys):
    f = VFile(pages(3))
    a = MemoryMap(phys, FakeSpace())
    pa = a.mmap(0, 3 * PAGE_SIZE, R, PRIV, f, 0)
    kept = [a.frames[(pa >> 12) + i] for i in range(3)]
    cache = cache_for(phys)
    assert len(cache) == 3
    a.release()
    assert len(cache) == 3 and all(phys.refcount(fr) == 1 for fr in kept)
    b = MemoryMap(phys, FakeSpace())
    pb = b.mmap(0, 3 * PAGE_SIZE, R, PRIV, f, 0)
    assert [b.frames[(pb >> 12) + i] for i in range(3)] == kept and f.reads == 1
    assert b.read(pb + 2 * PAGE_SIZE, 1) == b"C"


def test_evicted_frames_are_freed_and_never_served_again(phys):
    f = VFile(pages(3))
    a = MemoryMap(phys, FakeSpace())
    a.mmap(0, 3 * PAGE_SIZE, R, PRIV, f, 0)
    a.release()
    cache = cache_for(phys)
    used = phys.frames_in_use
    cache.clear(phys)
    assert len(cache) == 0 and phys.frames_in_use == used - 3
    # The frames go back to PhysMem and are reused for other data...
    junk = [phys.alloc() for _ in range(3)]
    for j in junk:
        phys.write(j << 12, b"junk")
    b = MemoryMap(phys, FakeSpace())
    pb = b.mmap(0, 3 * PAGE_SIZE, R, PRIV, f, 0)
    assert b.read(pb + 2 * PAGE_SIZE, 1) == b"C"  # ...and never served from the cache
    assert f.reads == 2


def test_the_cache_keeps_at_most_its_limit_least_recently_used_first_out(phys):
    cache = cache_for(phys)
    cache.limit = 4
    f, g = VFile(pages(3), ino=7), VFile(pages(3, b"g"), ino=8)
    a = MemoryMap(phys, FakeSpace())
    pa = a.mmap(0, 3 * PAGE_SIZE, R, PRIV, f, 0)
    fa = [a.frames[(pa >> 12) + i] for i in range(3)]
    a.release()
    b = MemoryMap(phys, FakeSpace())
    pb = b.mmap(0, 3 * PAGE_SIZE, R, PRIV, g, 0)
    assert len(cache) == 4
    # f's two oldest pages went (and were freed: nothing mapped them); g's pages stay.
    assert not cache.owns(fa[0]) and not cache.owns(fa[1]) and cache.owns(fa[2])
    assert phys.refcount(fa[0]) == 0 and phys.refcount(fa[2]) == 1
    assert all(cache.owns(b.frames[(pb >> 12) + i]) for i in range(3))
    # A page still mapped when it is evicted stays with its mapping.
    cache.limit = 0
    cache.evict(phys, len(cache))
    assert b.read(pb + PAGE_SIZE, 2) == b"gB"
    assert all(phys.refcount(b.frames[(pb >> 12) + i]) == 1 for i in range(3))
    b.release()
    assert phys.frames_in_use == 0


def test_a_new_version_drops_the_old_versions_pages(phys):
    f = VFile(pages(2))
    a = MemoryMap(phys, FakeSpace())
    pa = a.mmap(0, 2 * PAGE_SIZE, R, PRIV, f, 0)
    old = a.frames[pa >> 12]
    a.release()
    f.write(0, b"v2")
    b = MemoryMap(phys, FakeSpace())
    pb = b.mmap(0, 2 * PAGE_SIZE, R, PRIV, f, 0)
    assert b.read(pb, 3) == b"v2A"
    cache = cache_for(phys)
    assert not cache.owns(old) and phys.refcount(old) == 0 and len(cache) == 2


def test_running_out_of_memory_takes_frames_back_from_the_cache():
    phys = PhysMem(16 * PAGE_SIZE)
    try:
        f = VFile(pages(8))
        a = MemoryMap(phys, FakeSpace())
        a.mmap(0, 8 * PAGE_SIZE, R, PRIV, f, 0)
        a.release()
        assert len(cache_for(phys)) == 8 and phys.frames_free == 8
        got = phys.alloc_many(16)  # only possible with the cache's 8 frames back
        assert len(set(got)) == 16 and len(cache_for(phys)) == 0
        assert all(phys.read(fr << 12, PAGE_SIZE) == bytes(PAGE_SIZE) for fr in got)
        with pytest.raises(Errno):
            phys.alloc()
    finally:
        phys.close()


def test_a_page_cut_short_by_the_mapping_is_not_shared(phys):
    # An ELF data segment's last page: file data, then zeros where bss begins.
    data = pages(3)
    f = VFile(data)
    a = MemoryMap(phys, FakeSpace())
    pa = a.mmap(0x10000, 2 * PAGE_SIZE, R, PRIV | F.MAP_FIXED, f, 0, file_size=PAGE_SIZE + 10)
    assert a.read(pa + PAGE_SIZE, 12) == b"B" * 10 + bytes(2)
    cache = cache_for(phys)
    assert cache.owns(a.frames[pa >> 12]) and not cache.owns(a.frames[(pa >> 12) + 1])
    b = MemoryMap(phys, FakeSpace())
    pb = b.mmap(0, 3 * PAGE_SIZE, R, PRIV, f, 0)
    assert b.read(pb + PAGE_SIZE + 8, 4) == b"BBBB"


def test_writable_mappings_and_files_without_full_stat_are_not_shared(phys):
    f = VFile(pages(2))
    a = MemoryMap(phys, FakeSpace())
    pa = a.mmap(0, 2 * PAGE_SIZE, RW, PRIV, f, 0)
    assert not cache_for(phys).owns(a.frames[pa >> 12])
    assert (pa >> 12) not in a.cow
    a.write(pa, b"x")  # no fault-time copy needed
    assert a.space.pages[pa][1] == RW


def test_fork_leaves_clean_file_pages_to_faults_in_the_child(phys):
    f = VFile(pages(4))
    a = MemoryMap(phys, FakeSpace())
    pa = a.mmap(0, 4 * PAGE_SIZE, RX, PRIV, f, 0)
    fr = a.frames[pa >> 12]
    child = a.fork(FakeSpace())
    assert (pa >> 12) not in child.frames and child.space.pages == {}
    assert child.handle_fault(pa, write=False, execute=True) is None
    assert child.frames[pa >> 12] == fr and phys.refcount(fr) == 3  # from the cache
    assert f.reads == 1
    a.release()
    assert cache_for(phys).owns(fr) and phys.refcount(fr) == 2
    child.release()
    assert cache_for(phys).owns(fr) and phys.refcount(fr) == 1  # the cache's own


def test_fork_copies_a_modified_page_of_a_read_only_file_mapping(phys):
    f = VFile(pages(2))
    a = MemoryMap(phys, FakeSpace())
    pa = a.mmap(0, 2 * PAGE_SIZE, R, PRIV, f, 0)
    a.mprotect(pa, PAGE_SIZE, RW)
    a.write(pa, b"patched")
    a.mprotect(pa, PAGE_SIZE, R)  # private data in a read-only file mapping now
    child = a.fork(FakeSpace())
    assert child.read(pa, 7) == b"patched"
    assert child.read(pa + PAGE_SIZE, 1) == b"B"


def test_replacing_guest_memory_forgets_the_cache(phys):
    f = VFile(pages(2))
    a = MemoryMap(phys, FakeSpace())
    a.mmap(0, 2 * PAGE_SIZE, R, PRIV, f, 0)
    assert len(cache_for(phys)) == 2
    phys.replace(None)
    assert len(cache_for(phys)) == 0 and phys.frames_in_use == 0


def numbered(n: int) -> bytes:
    """``n`` pages, page i filled with one byte that names it."""
    return b"".join(bytes([32 + i % 200]) * PAGE_SIZE for i in range(n))


def test_a_fault_maps_the_cached_pages_around_it_read_only(phys):
    f = VFile(numbered(300))
    a = MemoryMap(phys, FakeSpace())
    pa = a.mmap(0, 300 * PAGE_SIZE, RX, PRIV | F.MAP_POPULATE, f, 0)
    reads = f.reads
    b = MemoryMap(phys, FakeSpace())
    pb = b.mmap(0, 300 * PAGE_SIZE, RX, PRIV, f, 0)
    assert b.resident_pages() == EAGER_PAGES  # the first pages, from the cache
    assert b.handle_fault(pb + 150 * PAGE_SIZE, write=False, execute=True) is None
    assert b.resident_pages() == 300 and f.reads == reads  # all from the cache
    assert all((pb >> 12) + i in b.cow for i in range(300))
    assert {p for _, p in b.space.pages.values()} == {RX}
    b.mprotect(pb, 300 * PAGE_SIZE, RW)
    b.write(pb + 10 * PAGE_SIZE, b"mine")
    assert a.read(pa + 10 * PAGE_SIZE, 4) == bytes([42]) * 4
    # A mapping cut short in the file never gets the cached pages past its data.
    c = MemoryMap(phys, FakeSpace())
    pc = c.mmap(0, 300 * PAGE_SIZE, R, PRIV, f, 0, file_size=100 * PAGE_SIZE + 10)
    assert c.handle_fault(pc + 80 * PAGE_SIZE, write=False, execute=False) is None
    assert max(c.frames) == (pc >> 12) + 100
    assert c.read(pc + 100 * PAGE_SIZE + 8, 4) == bytes([132, 132, 0, 0])


def test_a_forked_childs_faults_are_premapped_for_the_next_child(phys):
    f = VFile(numbered(300))
    p = MemoryMap(phys, FakeSpace())
    base = p.mmap(0x40000000, 300 * PAGE_SIZE, RX, PRIV | F.MAP_POPULATE | F.MAP_FIXED, f, 0)
    data = p.mmap(0x50000000, PAGE_SIZE, RW, PRIV | F.MAP_ANONYMOUS | F.MAP_FIXED)
    p.write(data, b"parent")
    vpn = (base >> 12) + 100
    c1 = p.fork(FakeSpace())
    assert vpn not in c1.frames  # clean file pages are left to faults...
    assert c1.handle_fault(vpn << 12, write=False, execute=True) is None
    assert c1.handle_fault(data, write=True, execute=False) is None
    assert vpn in p.fork_hints and data >> 12 in p.fork_hints
    c2 = p.fork(FakeSpace())
    block = [v for v in range(base >> 12, (base >> 12) + 300)
             if v >> HINT_BLOCK_SHIFT == vpn >> HINT_BLOCK_SHIFT]
    assert all(v in c2.frames and v in c2.cow for v in block)  # ...but near a hint
    assert (base >> 12) not in c2.frames
    assert all(c2.space.pages[v << 12] == (c2.frames[v], RX) for v in block)
    # The written page is copied for the child: its own, writable, same bytes.
    assert c2.frames[data >> 12] != p.frames[data >> 12]
    assert c2.space.pages[data][1] == RW and c2.read(data, 6) == b"parent"
    c2.write(data, b"child!")
    assert p.read(data, 6) == b"parent"
    for m in (c1, c2, p):
        m.release()
    cache_for(phys).clear(phys)
    assert phys.frames_in_use == 0


def test_a_child_teaches_its_parent_only_its_first_faults(phys):
    p = MemoryMap(phys, FakeSpace())
    start = p.mmap(0x40000000, 64 * PAGE_SIZE, RW, PRIV | F.MAP_ANONYMOUS | F.MAP_FIXED)
    c = p.fork(FakeSpace())
    for i in range(40):
        c.handle_fault(start + i * PAGE_SIZE, write=True, execute=False)
    assert len(p.fork_hints) == HINT_FAULTS


def test_a_fixed_segment_mapping_gets_the_cached_pages_at_once(phys):
    # ld.so maps a library's text MAP_FIXED into the span it reserved.
    f = VFile(numbered(800))
    a = MemoryMap(phys, FakeSpace())
    a.mmap(0, 800 * PAGE_SIZE, R, PRIV | F.MAP_POPULATE, f, 0)
    a.release()
    b = MemoryMap(phys, FakeSpace())
    span = b.mmap(0, 800 * PAGE_SIZE, R, PRIV, f, 0)
    # Not fixed: only the first pages (headers are read first); the rest at faults.
    assert sorted(b.frames) == list(range(span >> 12, (span >> 12) + EAGER_PAGES))
    seg = b.mmap(span + 100 * PAGE_SIZE, 700 * PAGE_SIZE, RX, PRIV | F.MAP_FIXED, f,
                 100 * PAGE_SIZE)
    got = sorted(v for v in b.frames if v >= seg >> 12)
    assert got == list(range(seg >> 12, (seg >> 12) + CACHED_FAULT_AROUND))
    assert all(v in b.cow for v in got)
    assert {b.space.pages[v << 12][1] for v in got} == {RX}
    assert b.read(seg, 1) == bytes([132])
