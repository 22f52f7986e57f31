from __future__ import annotations

import pytest

from cove.abi import flags as F
from cove.abi.errno import E, Errno
from cove.kernel.mm import SEGV_ACCERR, SEGV_MAPERR, MemoryMap
from cove.kernel.physmem import PAGE_SIZE, PhysMem

from .fakes import FakeSpace

RW = F.PROT_READ | F.PROT_WRITE
ANON = F.MAP_PRIVATE | F.MAP_ANONYMOUS


@pytest.fixture
def mm():
    phys = PhysMem(64 << 20)
    yield MemoryMap(phys, FakeSpace())
    phys.close()


class FakeFile:
    def __init__(self, data: bytes) -> None:
        self.data = bytearray(data)

    def pread(self, size, offset):
        return bytes(self.data[offset:offset + size])

    def pwrite(self, data, offset):
        self.data[offset:offset + len(data)] = data
        return len(data)

    def stat(self):
        class S:
            size = len(self.data)
        return S()


def test_anon_mmap_read_write_and_efault(mm):
    a = mm.mmap(0, 3 * PAGE_SIZE, RW, ANON)
    mm.write(a + PAGE_SIZE - 2, b"hello")
    assert mm.read(a + PAGE_SIZE - 2, 5) == b"hello"
    assert mm.read(a, 4) == bytes(4)
    with pytest.raises(Errno) as e:
        mm.read(a + 3 * PAGE_SIZE, 1)
    assert e.value.errno == E.EFAULT
    mm.munmap(a + PAGE_SIZE, PAGE_SIZE)
    with pytest.raises(Errno):
        mm.write(a + PAGE_SIZE, b"x")
    assert mm.read(a, 1) == b"\0"


def test_write_to_readonly_is_efault_and_fault_is_accerr(mm):
    a = mm.mmap(0, PAGE_SIZE, F.PROT_READ, ANON)
    with pytest.raises(Errno):
        mm.write(a, b"x")
    assert mm.handle_fault(a, write=True, execute=False).code == SEGV_ACCERR
    assert mm.handle_fault(0x1000, write=False, execute=False).code == SEGV_MAPERR


def test_large_mapping_is_lazy_with_fault_around(mm):
    a = mm.mmap(0, 1 << 24, RW, ANON)
    assert mm.resident_pages() == 0
    assert mm.handle_fault(a + 100 * PAGE_SIZE, write=True, execute=False) is None
    assert 1 < mm.resident_pages() <= 16


def test_fork_is_copy_on_write(mm):
    a = mm.mmap(0, 200 * PAGE_SIZE, RW, ANON | F.MAP_POPULATE)
    mm.write(a, b"parent")
    used = mm.phys.frames_in_use
    child = mm.fork(FakeSpace())
    assert mm.phys.frames_in_use == used  # nothing copied
    assert child.space.pages[a][1] & F.PROT_WRITE == 0
    child.write(a, b"child!")
    assert mm.read(a, 6) == b"parent"
    assert child.read(a, 6) == b"child!"
    assert mm.phys.frames_in_use == used + 1
    child.release()
    mm.write(a, b"again!")  # sole owner again: no copy needed
    assert mm.phys.frames_in_use == used


def test_shared_anon_survives_fork(mm):
    a = mm.mmap(0, PAGE_SIZE, RW, F.MAP_SHARED | F.MAP_ANONYMOUS)
    child = mm.fork(FakeSpace())
    child.write(a, b"seen")
    assert mm.read(a, 4) == b"seen"


def test_private_file_mapping_and_sigbus_past_eof(mm):
    f = FakeFile(b"A" * 5000)
    a = mm.mmap(0, 4 * PAGE_SIZE, F.PROT_READ, F.MAP_PRIVATE, f, 0)
    assert mm.read(a + 4990, 20) == b"A" * 10 + bytes(10)
    assert mm.handle_fault(a + 3 * PAGE_SIZE, False, False).signo == 7


def test_shared_file_mapping_writes_back(mm):
    f = FakeFile(b"0123456789")
    a = mm.mmap(0, PAGE_SIZE, RW, F.MAP_SHARED, f, 0)
    mm.write(a + 2, b"ab")
    mm.msync(a, PAGE_SIZE, F.MS_SYNC)
    assert bytes(f.data) == b"01ab456789"


def test_mprotect_needs_whole_range_mapped(mm):
    a = mm.mmap(0, 2 * PAGE_SIZE, RW, ANON)
    mm.munmap(a + PAGE_SIZE, PAGE_SIZE)
    with pytest.raises(Errno) as e:
        mm.mprotect(a, 2 * PAGE_SIZE, F.PROT_READ)
    assert e.value.errno == E.ENOMEM
    mm.mprotect(a, PAGE_SIZE, F.PROT_READ)
    with pytest.raises(Errno):
        mm.write(a, b"x")


def test_mremap_grow_move_and_keep_contents(mm):
    a = mm.mmap(0, PAGE_SIZE, RW, ANON)
    mm.mmap(a + PAGE_SIZE, PAGE_SIZE, RW, ANON | F.MAP_FIXED)  # block in-place growth
    mm.write(a, b"keep")
    with pytest.raises(Errno):
        mm.mremap(a, PAGE_SIZE, 4 * PAGE_SIZE, 0)
    b = mm.mremap(a, PAGE_SIZE, 4 * PAGE_SIZE, F.MREMAP_MAYMOVE)
    assert b != a and mm.read(b, 4) == b"keep"
    with pytest.raises(Errno):
        mm.read(a, 1)


def test_brk_grows_and_shrinks(mm):
    mm.set_brk_base(0x600000)
    assert mm.brk(0) == 0x600000
    assert mm.brk(0x600000 + 10000) == 0x600000 + 10000
    mm.write(0x600000 + 9000, b"x")
    assert mm.brk(0x600000 + 10) == 0x600000 + 10
    with pytest.raises(Errno):
        mm.read(0x600000 + 9000, 1)


def test_read_cstring(mm):
    a = mm.mmap(0, 2 * PAGE_SIZE, RW, ANON)
    mm.write(a + PAGE_SIZE - 3, b"abcdef\0")
    assert mm.read_cstring(a + PAGE_SIZE - 3, 4096) == b"abcdef"
    with pytest.raises(Errno) as e:
        mm.read_cstring(a + PAGE_SIZE - 3, 3)
    assert e.value.errno == E.ENAMETOOLONG


def test_madvise_dontneed_zeroes_private_anon(mm):
    a = mm.mmap(0, PAGE_SIZE, RW, ANON)
    mm.write(a, b"data")
    mm.madvise(a, PAGE_SIZE, F.MADV_DONTNEED)
    assert mm.read(a, 4) == bytes(4)
