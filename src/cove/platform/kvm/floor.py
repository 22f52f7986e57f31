"""The floor of a guest syscall on this platform: a guest that does nothing but
``getppid`` in a loop, answered with no North work at all. ``cove bench``
prints cove's real per-syscall time next to it."""

from __future__ import annotations

import time

from cove.kernel.physmem import PhysMem
from cove.platform.base import PROT_EXEC, PROT_READ, PROT_WRITE, select_platform

CODE, STACK_TOP = 0x400000, 0x800000
# 1: mov $39, %eax ; syscall ; jmp 1b  (hand-assembled: b8 27 00 00 00 / 0f 05 / eb f7)
LOOP = bytes.fromhex("b827000000" "0f05" "ebf7")


def syscall_round_trip_us(iters: int = 20000) -> float:
    phys = PhysMem(64 << 20)
    platform = select_platform("kvm", physmem=phys)
    try:
        space = platform.create_address_space()
        code = phys.alloc()
        phys.write(code << 12, LOOP)
        space.map(CODE, code, PROT_READ | PROT_EXEC)
        space.map(STACK_TOP - 0x1000, phys.alloc(), PROT_READ | PROT_WRITE)
        ctx = platform.create_context()
        ctx.regs.rip, ctx.regs.rsp = CODE, STACK_TOP
        cpu = platform.cpu()
        cpu.run(ctx, space)  # warm up: page tables, first entry
        start = time.perf_counter()
        for _ in range(iters):
            cpu.run(ctx, space)
            ctx.regs.rax = 0
        return (time.perf_counter() - start) / iters * 1e6
    finally:
        platform.close()
