"""The kvm platform's floor: what a guest syscall round trip costs, and how fast
guest user code runs compared with the same code run natively.

    python benchmarks/kvm_floor.py [--iters N]

Needs /dev/kvm and GNU as/objcopy. Prints one line per figure.
"""

from __future__ import annotations

import argparse
import ctypes
import mmap
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cove.kernel.physmem import PhysMem
from cove.platform.base import PROT_EXEC, PROT_READ, PROT_WRITE, ExitKind, select_platform
from cove.platform.kvm import uapi
from cove.platform.kvm._sys import raw_ioctl

CODE, DATA, STACK_TOP = 0x400000, 0x10000000, 0x800000
ALU_ITERS = 200_000_000
MEM_BYTES = 64 << 20
MEM_PASSES = 8

# Shared by guest and native: rdi = iterations, rsi = buffer, rdx = size.
ALU_BODY = """
    mov %rdi, %rcx
    mov $0x9E3779B97F4A7C15, %rax
1:  imul %rax, %rax
    xor %rcx, %rax
    add $7, %rax
    dec %rcx
    jnz 1b
"""
MEM_BODY = """
    xor %eax, %eax
    mov %rdi, %r8
2:  mov %rsi, %r9
    mov %rdx, %rcx
    shr $6, %rcx
1:  add (%r9), %rax
    add $64, %r9
    dec %rcx
    jnz 1b
    dec %r8
    jnz 2b
"""


def assemble(src: str) -> bytes:
    with tempfile.TemporaryDirectory() as d:
        s, o, b = Path(d, "a.S"), Path(d, "a.o"), Path(d, "a.bin")
        s.write_text(".text\n.code64\n" + src + "\n")
        subprocess.run(["as", "--64", "-o", str(o), str(s)], check=True)
        subprocess.run(["objcopy", "-O", "binary", "-j", ".text", str(o), str(b)], check=True)
        return b.read_bytes()


class Native:
    """Run a code snippet as a C function in this process (the native baseline)."""

    def __init__(self, body: str) -> None:
        code = assemble(body + "\n ret\n")
        self.mm = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        self.mm.write(code)
        addr = ctypes.addressof(ctypes.c_char.from_buffer(self.mm))
        proto = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_uint64, ctypes.c_void_p, ctypes.c_uint64)
        self.fn = proto(addr)

    def time(self, n: int, buf: int = 0, size: int = 0) -> float:
        t = time.perf_counter()
        self.fn(n, buf, size)
        return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--iters", type=int, default=20000, help="syscall round trips to time")
    args = ap.parse_args()
    n = args.iters

    pm = PhysMem(512 << 20)
    p = select_platform("kvm", physmem=pm)
    print(f"platform: {p.capabilities.syscall_path}; {p.capabilities.notes}")
    a = p.create_address_space()

    def load(src: str, at: int = CODE) -> None:
        code = assemble(src)
        frames = []
        for off in range(0, len(code), 4096):
            f = pm.alloc()
            pm.write(f << 12, code[off : off + 4096])
            frames.append(f)
        a.map_range(at, frames, PROT_READ | PROT_EXEC)

    a.map_range(STACK_TOP - 0x4000, [pm.alloc() for _ in range(4)], PROT_READ | PROT_WRITE)
    ctx = p.create_context()
    cpu = p.cpu()

    # 1. bare syscall round trip through the platform API
    load("1: mov $39, %eax\n syscall\n jmp 1b")
    ctx.regs.rip, ctx.regs.rsp = CODE, STACK_TOP
    cpu.run(ctx, a)
    t = time.perf_counter()
    for _ in range(n):
        cpu.run(ctx, a)
        ctx.regs.rax = 0
    syscall_us = (time.perf_counter() - t) / n * 1e6
    print(f"guest syscall round trip (Platform.run, no work): {syscall_us:.1f} us")

    # 2. the same, bare KVM_RUN on the sync regs (what Python can't avoid). The
    # vCPU sits at the syscall exit: each round sets rip/rflags as Linux's
    # sysret would and runs. (Bypasses the Cpu's bookkeeping, so it ends at the
    # same kind of stop the Cpu expects: a syscall exit.)
    fd = cpu.fd
    run = cpu._run
    sr = run.s.regs.regs
    t = time.perf_counter()
    for _ in range(n):
        sr.rip = sr.rcx
        sr.rflags = sr.r11
        run.kvm_dirty_regs = uapi.KVM_SYNC_X86_REGS
        raw_ioctl(fd, uapi.KVM_RUN, None)
    raw_us = (time.perf_counter() - t) / n * 1e6
    print(f"  of which KVM_RUN + minimal Python (raw loop): {raw_us:.1f} us")
    run.immediate_exit = 1
    t = time.perf_counter()
    for _ in range(n):
        raw_ioctl(fd, uapi.KVM_RUN, None)
    empty_us = (time.perf_counter() - t) / n * 1e6
    run.immediate_exit = 0
    print(f"  of which the KVM_RUN ioctl entry/exit alone (immediate_exit): {empty_us:.1f} us")

    # 3. an exception round trip (int3 -> #BP exit -> resume)
    a.unmap(CODE, 0x1000)
    load("1: int3\n jmp 1b")
    ctx.regs.rip = CODE
    m = n // 4
    cpu.run(ctx, a)
    t = time.perf_counter()
    for _ in range(m):
        e = cpu.run(ctx, a)
    assert e.kind == ExitKind.FAULT, e
    print(f"guest exception round trip (#BP): {(time.perf_counter() - t) / m * 1e6:.1f} us")

    # 4. two contexts alternating on one cpu (XSAVE + FS base switch each time)
    a.unmap(CODE, 0x1000)
    load("1: mov $39, %eax\n syscall\n jmp 1b")
    c2 = p.create_context()
    for c in (ctx, c2):
        c.regs.rip, c.regs.rsp = CODE, STACK_TOP
    c2.fs_base = 0x1000
    t = time.perf_counter()
    for _ in range(m):
        cpu.run(ctx, a)
        cpu.run(c2, a)
    print(
        f"syscall with a thread switch each time: {(time.perf_counter() - t) / m / 2 * 1e6:.1f} us"
    )

    # 5. CPU-bound code: guest vs native
    for name, body, iters, size in (
        ("ALU loop", ALU_BODY, ALU_ITERS, 0),
        (f"memory walk ({MEM_BYTES >> 20} MiB x {MEM_PASSES})", MEM_BODY, MEM_PASSES, MEM_BYTES),
    ):
        a.unmap(CODE, 0x1000)
        load(body + "\n mov $60, %eax\n syscall\n")
        if size:
            a.map_range(DATA, [pm.alloc() for _ in range(size >> 12)], PROT_READ | PROT_WRITE)
        times = []
        for _ in range(2):  # the first run also pays KVM building its shadow page tables
            ctx.regs.rip, ctx.regs.rdi, ctx.regs.rsi, ctx.regs.rdx = CODE, iters, DATA, size
            t = time.perf_counter()
            while cpu.run(ctx, a).kind != ExitKind.SYSCALL:
                pass
            times.append(time.perf_counter() - t)
        nat = Native(body)
        buf = ctypes.create_string_buffer(size) if size else None
        native = nat.time(iters, ctypes.addressof(buf) if buf else 0, size)
        print(
            f"{name}: guest {times[0] * 1e3:.0f} ms cold, {times[1] * 1e3:.0f} ms warm; "
            f"native {native * 1e3:.0f} ms; guest/native {times[1] / native:.2f}x warm"
        )
    del run, sr
    p.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
