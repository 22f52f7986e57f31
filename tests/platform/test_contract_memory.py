"""The platform contract, address spaces: map/unmap/protect seen at once by a
running guest, lookup and translate, bad arguments, switching and destroying
address spaces. Every test runs on each platform (tests/platform/conftest.py)."""

from __future__ import annotations

import struct

import pytest

from cove.platform.base import PF, PF_PRESENT, PF_WRITE, PROT_NONE, ExitKind
from tests.platform.guest import DATA, KBASE, RO, RW, Guest, per_platform

pytestmark = pytest.mark.timeout(60)


def test_remap_and_unmap_are_seen_by_a_running_guest(platform, assemble) -> None:
    # The host rewrites a PTE the guest already used: the guest must see the new
    # frame (on shadow-paging KVMs a stale translation would survive otherwise).
    g = Guest(platform, assemble(f"1: mov ({DATA}), %rdi\n mov $1, %eax\n syscall\n jmp 1b"))
    fa = g.map_data(DATA, struct.pack("<Q", 0xAAAA), RO)
    fb = platform.physmem.alloc()
    platform.physmem.write(fb << 12, struct.pack("<Q", 0xBBBB))
    assert g.run().kind == ExitKind.SYSCALL and g.ctx.regs.rdi == 0xAAAA
    g.aspace.map(DATA, fb, RO)
    assert g.run().kind == ExitKind.SYSCALL and g.ctx.regs.rdi == 0xBBBB
    assert g.aspace.unmap(DATA, 4096) == [fb]
    e = g.run()
    assert e.kind == ExitKind.FAULT and e.vector == PF and e.cr2 == DATA
    g.aspace.map(DATA, fa, PROT_NONE)
    assert g.aspace.lookup(DATA) == (fa, PROT_NONE) and g.aspace.translate(DATA) is None
    e = g.run()
    assert e.kind == ExitKind.FAULT and e.vector == PF and e.error_code & PF_PRESENT == 0
    g.aspace.protect(DATA, 4096, RO)
    assert g.run().kind == ExitKind.SYSCALL and g.ctx.regs.rdi == 0xAAAA


def test_write_protect_after_writes_is_enforced(platform, assemble) -> None:
    g = Guest(platform, assemble(f"1: incq ({DATA})\n mov $1, %eax\n syscall\n jmp 1b"))
    g.map_data(DATA, struct.pack("<Q", 0), RW)
    for _ in range(3):
        assert g.run().kind == ExitKind.SYSCALL
    g.aspace.protect(DATA, 4096, RO)  # e.g. fork making pages copy-on-write
    e = g.run()
    assert e.kind == ExitKind.FAULT and e.vector == PF and e.error_code & PF_WRITE
    assert g.aspace.read(DATA, 8) == struct.pack("<Q", 3)


def test_many_scattered_pages_in_one_batch(platform, assemble) -> None:
    # More changes than one userland mailbox holds, frames out of order: every
    # page must land where the record says.
    g = Guest(platform, assemble(f"""
        xor %rdi, %rdi
        mov ${DATA}, %rcx
    1:  add (%rcx), %rdi
        add $4096, %rcx
        cmp ${DATA + 300 * 4096}, %rcx
        jb 1b
        mov $1, %eax
        syscall
    """))  # fmt: skip
    frames = [platform.physmem.alloc() for _ in range(300)]
    for i, f in enumerate(reversed(frames)):
        platform.physmem.write(f << 12, struct.pack("<Q", i + 1))
        g.aspace.map(DATA + 4096 * i, f, RO if i % 3 else RW)
    assert g.run().kind == ExitKind.SYSCALL
    assert g.ctx.regs.rdi == sum(range(1, 301))


def test_address_spaces_switch_and_destroy(platform, assemble) -> None:
    code = assemble(f"mov ({DATA}), %rdi\n mov $1, %eax\n syscall")
    g1, g2 = Guest(platform, code), Guest(platform, code)
    g1.map_data(DATA, struct.pack("<Q", 1), RO)
    g2.map_data(DATA, struct.pack("<Q", 2), RO)
    assert g1.run().kind == ExitKind.SYSCALL and g1.ctx.regs.rdi == 1
    assert g2.run().kind == ExitKind.SYSCALL and g2.ctx.regs.rdi == 2
    g1.aspace.destroy()
    g3 = Guest(platform, code)  # likely reuses g1's page-table frames (kvm) or stub (userland)
    g3.map_data(DATA, struct.pack("<Q", 3), RO)
    assert g3.run().kind == ExitKind.SYSCALL and g3.ctx.regs.rdi == 3
    with pytest.raises(ValueError):
        platform.run(g1.ctx, g1.aspace)


@pytest.mark.parametrize(("platform", "base"), per_platform({
    # kvm keeps nothing of its own in low user memory; the userland stub's
    # pages are there and it refuses mappings below 64 KiB (test_userland_stub.py)
    "kvm": [("low", 0x5000), ("64k", 0x50000)],
    "userland": [("64k", 0x50000)],
}), indirect=["platform"])
def test_translate_and_bad_arguments(platform, base: int) -> None:
    a = platform.create_address_space()
    f = platform.physmem.alloc()
    a.map(base, f, RO)
    assert a.translate(base + 0x123) == (f << 12) | 0x123
    assert a.translate(base + 0x123, write=True) is None
    assert a.translate(base + 0x1000) is None and a.translate(KBASE) is None
    assert a.lookup(base + 0xFFF) == (f, RO)
    with pytest.raises(ValueError):
        a.map(base + 1, f, RO)
    with pytest.raises(ValueError):
        a.map(1 << 47, f, RO)
    with pytest.raises(ValueError):
        a.map(base + 0x2000, platform.physmem.nframes, RO)
    a.destroy()
