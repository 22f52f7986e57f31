"""The kvm platform's restore path, driven directly: a platform image
(``export_image``) adopted over a copy of guest memory by a VM from the pool
(``vmpool``), with nothing rebuilt; closed platforms giving their VM back;
vCPU state reset between guests."""

from __future__ import annotations

import os
import struct

import pytest

from cove.kernel.physmem import PhysMem
from cove.platform.base import ExitKind
from tests.platform import guest as kp
from tests.platform.guest import DATA, RO, RW, Guest

pytestmark = kp.only_on("kvm")
assemble = kp.assemble


@pytest.fixture
def pool():
    from cove.platform.kvm import vmpool

    vmpool.clear()
    old = vmpool.set_limit(2)
    yield vmpool
    vmpool.set_limit(old)
    vmpool.clear()


def _image_of(pm: PhysMem) -> int:
    """A sealed-free copy of all of ``pm`` in a memfd (what a snapshot image holds)."""
    fd = os.memfd_create("test-image", os.MFD_CLOEXEC)
    os.ftruncate(fd, pm.size)
    os.pwrite(fd, pm.mem, 0)
    return fd


def test_adopted_image_runs_without_rebuilding_page_tables(pool, assemble) -> None:
    from cove.platform.kvm.platform import KvmPlatform

    pm = PhysMem(64 << 20)
    p = KvmPlatform(pm)
    # Reads DATA, writes DATA+8, then syscalls with what it read.
    code = assemble(f"mov ({DATA}), %rdi\n movq $7, ({DATA + 8})\n mov $1, %eax\n syscall")
    g = Guest(p, code)
    g.map_data(DATA, struct.pack("<Q", 1234), RW)
    e = g.run_until_syscall()
    assert g.ctx.regs.rdi == 1234
    regs = bytes(memoryview(g.ctx.regs).cast("B"))
    img = p.export_image([g.aspace])
    frames = KvmPlatform.image_frames(img)
    assert set(g.aspace.tables) <= set(frames) and len(frames) == len(set(frames))
    refs = {f: pm.refcount(f) for f in range(pm.nframes) if pm.refcount(f)}
    fd = _image_of(pm)
    p.close()
    pm.close()
    assert pool.idle() == 1  # the closed platform gave its VM back

    pm2 = PhysMem.from_image(fd, 64 << 20, 0, 64 << 20)
    os.close(fd)
    p2 = pool.take(pm2)
    assert pool.idle() == 0 and p2 is p  # the same VM, detached and re-attached
    pm2.adopt_accounting(PhysMem.accounting(refs))
    (space,) = p2.adopt_image(img, zap=False)
    assert space.cr3 == g.aspace.cr3
    ctx = p2.create_context()
    memoryview(ctx.regs).cast("B")[:] = regs
    ctx.regs.rip = 0x400000  # run the program again from the start, in the image
    ctx.regs.rdi = 0
    e = p2.run(ctx, space)
    while e.kind == ExitKind.INTERRUPTED:
        e = p2.run(ctx, space)
    assert e.kind == ExitKind.SYSCALL and ctx.regs.rdi == 1234
    # The write went to this memory's own copy of the page.
    f, _ = space.lookup(DATA)
    assert struct.unpack_from("<Q", pm2.mem, (f << 12) + 8)[0] == 7
    # A page the North maps now comes from the adopted allocator and tables.
    extra = pm2.alloc()
    assert extra not in frames
    space.map(DATA + 0x1000, extra, RO)
    assert space.lookup(DATA + 0x1000) == (extra, RO)
    p2.close()
    pm2.close()


def test_a_pooled_vcpu_forgets_the_last_guests_segments(pool) -> None:
    from cove.platform.kvm import layout, uapi
    from cove.platform.kvm._sys import ioctl
    from cove.platform.kvm.platform import KvmPlatform

    pm = PhysMem(32 << 20)
    p = KvmPlatform(pm)
    cpu = p.cpu()
    s = uapi.kvm_sregs()
    ioctl(cpu.fd, uapi.KVM_GET_SREGS, s)
    s.ds.selector = s.fs.selector = 0  # what a guest's `mov %ax, %ds` could leave
    ioctl(cpu.fd, uapi.KVM_SET_SREGS, s)
    p.close()
    pm.close()
    assert pool.idle() == 1
    s = uapi.kvm_sregs()
    ioctl(cpu.fd, uapi.KVM_GET_SREGS, s)
    assert (s.ds.selector, s.es.selector, s.fs.selector, s.gs.selector) == (layout.USER_DS,) * 4
    assert cpu._ctx is None and cpu._aspace is None and cpu._mem is None


def test_pool_limit(pool) -> None:
    from cove.platform.kvm.platform import KvmPlatform

    pool.prepare(2)
    assert pool.idle() == 2
    pm = PhysMem(32 << 20)
    p = KvmPlatform(pm)
    p.close()  # the pool is full: this VM is destroyed
    pm.close()
    assert pool.idle() == 2 and p.vm_fd == -1
    pool.set_limit(0)
    assert pool.idle() == 0
    pool.prepare(1)
    assert pool.idle() == 0


def test_closing_twice_keeps_the_pooled_vm(pool) -> None:
    from cove.platform.kvm.platform import KvmPlatform

    pm = PhysMem(32 << 20)
    p = KvmPlatform(pm)
    p.close()
    p.close()  # e.g. an error path closing again: the pool's VM must survive
    pm.close()
    assert pool.idle() == 1 and p.vm_fd >= 0
    pm2 = PhysMem(32 << 20)
    assert pool.take(pm2) is p and not p.closed
    p.destroy()
    pm2.close()


def test_a_pooled_vm_takes_memory_of_any_size(pool) -> None:
    from cove.platform.kvm.platform import KvmPlatform

    pm = PhysMem(32 << 20)
    p = KvmPlatform(pm)
    p.zap_all()  # the dummy memslot now sits just above 32 MiB of memory
    p.close()
    pm.close()
    big = PhysMem(3 << 30)  # sparse: nothing is touched
    assert pool.take(big) is p
    p.zap_all()
    p.close()
    big.close()
    assert pool.idle() == 1
