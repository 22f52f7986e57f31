"""The kvm platform's cheap paths stay correct: recycled page-table frames and
batched write-protection never leave a guest a stale translation.

These are the hazards of shadow paging (see cove.platform.kvm.pagetable): each
test here fails if the matching mechanism is removed (checked by hand: a pool
that reuses retired frames without a zap, a protect that skips the shoot-down).
"""

from __future__ import annotations

import struct

import pytest

from cove.kernel.physmem import PhysMem
from cove.platform.base import PF, PF_WRITE, ExitKind, select_platform
from tests.platform import guest as kp
from tests.platform.guest import DATA, RO, RW, Guest

pytestmark = kp.only_on("kvm")
assemble = kp.assemble  # the session fixture that builds guest programs


@pytest.fixture
def small_pool_platform():
    pm = PhysMem(64 << 20)
    p = select_platform("kvm", physmem=pm)
    p.tables.limit = 8  # a flush every couple of dead address spaces
    yield p
    p.close()
    pm.close()


def test_dead_address_spaces_table_frames_are_reused_only_after_a_zap(
        small_pool_platform, assemble) -> None:
    p = small_pool_platform
    code = assemble(f"mov ({DATA}), %rdi\n mov $1, %eax\n syscall")
    zaps = p.tables.zaps
    roots = set()
    for i in range(40):
        g = Guest(p, code)
        roots.add(g.aspace.cr3)
        g.map_data(DATA, struct.pack("<Q", 1000 + i), RO)
        e = g.run()
        assert e.kind == ExitKind.SYSCALL and g.ctx.regs.rdi == 1000 + i, f"space {i}"
        g.aspace.destroy()
    assert p.tables.zaps > zaps  # the pool flushed, and frames came back
    assert len(roots) < 40  # root frames were recycled
    assert p.tables.held <= 2 * p.tables.limit


def test_pool_gives_frames_back_when_guest_memory_runs_out() -> None:
    pm = PhysMem(16 << 20)
    p = select_platform("kvm", physmem=pm)
    try:
        p.tables.limit = 1 << 30  # never flushes on its own
        spaces = []
        for _ in range(64):
            a = p.create_address_space()
            a.map(DATA, pm.alloc(), RO)  # needs a PDPT, a PD and a PT too
            spaces.append(a)
        for a in spaces:
            a.destroy()
        assert p.tables.held >= 64 * 4
        hoard = []
        try:
            while True:
                hoard.append(pm.alloc())
        except Exception:
            pass
        a = p.create_address_space()  # no frame left in PhysMem: the pool flushes
        assert p.tables.zaps >= 1
        a.destroy()
    finally:
        p.close()
        pm.close()


def test_write_protecting_a_run_of_written_pages_faults_on_each(platform, assemble) -> None:
    # fork narrows runs of pages with one protect() each: every page of the run
    # must lose its writable translation, not only the first (frames scattered).
    n = 12
    body = "".join(f"incq ({DATA + 0x1000 * k})\n" for k in range(n))
    g = Guest(platform, assemble(f"1: {body} mov $1, %eax\n syscall\n jmp 1b"))
    frames = []
    for k in range(n):
        frames.append(g.map_data(DATA + 0x1000 * k, b"", RW))
        platform.physmem.alloc()  # keep the data frames apart
    for _ in range(2):
        assert g.run().kind == ExitKind.SYSCALL
    g.aspace.protect(DATA, n * 0x1000, RO)
    for k in range(n):
        e = g.run()
        assert e.kind == ExitKind.FAULT and e.vector == PF and e.error_code & PF_WRITE
        assert e.cr2 == DATA + 0x1000 * k, f"page {k} kept a writable translation"
        g.aspace.map(DATA + 0x1000 * k, frames[k], RW)  # the North's COW break
    assert g.run().kind == ExitKind.SYSCALL
    for k in range(n):
        assert g.aspace.read(DATA + 0x1000 * k, 8) == struct.pack("<Q", 3)


@pytest.fixture(scope="module")
def platform():
    pm = PhysMem(256 << 20)
    p = select_platform("kvm", physmem=pm)
    yield p
    p.close()
    pm.close()


def test_runs_across_page_table_boundaries_and_holes(platform) -> None:
    # map_range/unmap/protect walk page tables 2 MiB at a time: runs that cross
    # a table boundary, and ranges over tables that do not exist.
    pm = platform.physmem
    a = platform.create_address_space()
    base = 0x7F00_001F_E000  # 2 pages below a 2 MiB boundary
    frames = [pm.alloc() for _ in range(6)]
    a.map_range(base, frames, RW)
    far = 0x7F40_0000_0000
    a.map(far, pm.alloc(), RO)
    for k, f in enumerate(frames):
        assert a.lookup(base + 0x1000 * k) == (f, RW)
    a.protect(base - 0x40_0000, 0x80_0000, RO)  # from a table-less region onwards
    assert [a.lookup(base + 0x1000 * k)[1] for k in range(6)] == [RO] * 6
    got = a.unmap(base + 0x1000, far + 0x1000 - (base + 0x1000))
    assert got[:5] == frames[1:] and len(got) == 6
    assert a.lookup(base) == (frames[0], RO) and a.lookup(far) is None
    a.destroy()
