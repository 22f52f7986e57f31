"""The platform contract, contexts and cpus: FPU/AVX state and FS base kept
per context, contexts switched and copied, preemption by the timeslice and
by kick, one cpu per host thread. Every test runs on each platform
(tests/platform/conftest.py)."""

from __future__ import annotations

import struct
import threading
import time

import pytest

from cove.platform.base import UD, ExitKind
from tests.platform.guest import CODE, DATA, FXSAVE_XMM, STACK_TOP, Guest

pytestmark = pytest.mark.timeout(60)


def test_avx_ymm_in_guest_user_code(platform, assemble) -> None:
    g = Guest(
        platform,
        assemble(f"""
        mov ${DATA}, %r12
        vmovdqu (%r12), %ymm0
        vpaddd 32(%r12), %ymm0, %ymm1
        mov $1, %eax
        syscall                     # host round trip must keep ymm1
        vmovdqu %ymm1, 64(%r12)
        mov $2, %eax
        syscall
    """),
    )
    a = list(range(8))
    b = [100 * i for i in range(8)]
    g.map_data(DATA, struct.pack("<8I", *a) + struct.pack("<8I", *b))
    assert g.run().kind == ExitKind.SYSCALL
    assert g.run().kind == ExitKind.SYSCALL and g.ctx.regs.rax == 2
    assert struct.unpack("<8I", g.aspace.read(DATA + 64, 32)) == tuple(
        x + y for x, y in zip(a, b, strict=True)
    )


def test_fs_base_relative_load(platform, assemble) -> None:
    g = Guest(platform, assemble("mov %fs:8, %rdi\n mov $1, %eax\n syscall\n"
                                 "mov %fs:16, %rdi\n mov $2, %eax\n syscall"))  # fmt: skip
    g.map_data(DATA, struct.pack("<QQQ", 0, 0x7E57, 0))
    g.map_data(DATA + 0x1000, struct.pack("<QQQ", 0, 0, 0xAB))
    g.ctx.fs_base = DATA
    assert g.run().kind == ExitKind.SYSCALL and g.ctx.regs.rdi == 0x7E57
    g.ctx.fs_base = DATA + 0x1000  # arch_prctl(ARCH_SET_FS) between runs
    assert g.run().kind == ExitKind.SYSCALL and g.ctx.regs.rdi == 0xAB


def test_guest_wrfsbase_is_seen_at_sync_and_switch(platform, assemble) -> None:
    g = Guest(platform, assemble(
        "mov $0x1234000, %rax\n wrfsbase %rax\n mov $1, %eax\n syscall\n"
        "rdfsbase %rdi\n mov $2, %eax\n syscall"
    ))  # fmt: skip
    g.ctx.fs_base = 0x5000
    e = g.run()
    if e.kind == ExitKind.FAULT and e.vector == UD:
        pytest.skip("wrfsbase is not available to guest user code here")
    assert e.kind == ExitKind.SYSCALL
    assert g.ctx.fs_base == 0x5000  # not pulled yet (else the sync below proves nothing)
    g.ctx.sync()
    assert g.ctx.fs_base == 0x1234000
    g.ctx.fs_base = 0x5000  # now the North's value wins again
    other = platform.create_context()
    other.regs.rip = CODE + 0x100
    platform.run(other, g.aspace)  # switch out and back
    assert g.run().kind == ExitKind.SYSCALL and g.ctx.regs.rdi == 0x5000


def test_two_contexts_interleaved_on_one_cpu(platform, assemble) -> None:
    # Each thread keeps a counter in rbx, its id in ymm2 and reads its TLS slot.
    code = assemble("""
        vpbroadcastd %xmm15, %ymm2
    1:  inc %rbx
        mov %fs:0, %rdi
        vmovd %xmm2, %esi
        mov $1, %eax
        syscall
        jmp 1b
    """)
    g = Guest(platform, code)
    ctx_b = platform.create_context()
    ctx_b.regs.rip, ctx_b.regs.rsp = CODE, STACK_TOP - 0x800
    g.map_data(DATA, struct.pack("<Q", 0xA) + bytes(2040) + struct.pack("<Q", 0xB))
    g.ctx.fs_base, ctx_b.fs_base = DATA, DATA + 2048
    xmm15 = FXSAVE_XMM + 15 * 16
    fpu_a = bytearray(g.ctx.get_fpu())
    fpu_b = bytearray(ctx_b.get_fpu())
    fpu_a[xmm15] = 0xA
    fpu_b[xmm15] = 0xB
    g.ctx.set_fpu(fpu_a)
    ctx_b.set_fpu(fpu_b)
    cpu = platform.cpu()
    for i in range(1, 21):
        for ctx, tag in ((g.ctx, 0xA), (ctx_b, 0xB)):
            e = cpu.run(ctx, g.aspace)
            assert e.kind == ExitKind.SYSCALL
            assert (ctx.regs.rbx, ctx.regs.rdi, ctx.regs.rsi) == (i, tag, tag)
    assert g.ctx.get_fpu()[xmm15] == 0xA
    c = g.ctx.copy()
    assert c.get_fpu() == g.ctx.get_fpu() and c.regs.rbx == g.ctx.regs.rbx
    # the copy runs as a third thread, from the copied state
    assert cpu.run(c, g.aspace).kind == ExitKind.SYSCALL and c.regs.rbx == 21


def test_context_moves_to_a_new_address_space(platform, assemble) -> None:
    # execve: the same context continues in a fresh address space, with the
    # registers and FPU state the North gives it.
    code = assemble("mov $0x42, %r14\n mov $1, %eax\n syscall\n mov %r14, %rdi\n"
                    " mov $2, %eax\n syscall")  # fmt: skip
    g1 = Guest(platform, code)
    assert g1.run().kind == ExitKind.SYSCALL
    g2 = Guest(platform, code)
    ctx = g1.ctx
    ctx.regs.rax = 0
    assert platform.run(ctx, g2.aspace).kind == ExitKind.SYSCALL
    assert ctx.regs.rax == 2 and ctx.regs.rdi == 0x42
    g1.aspace.destroy()


def test_spinning_guest_is_preempted_by_the_timer(platform, assemble) -> None:
    g = Guest(platform, assemble("1: inc %rax\n jmp 1b"))
    cpu = platform.cpu()
    cpu.set_timeslice(0.02)
    try:
        t = time.monotonic()
        e = g.run()
        assert e.kind == ExitKind.INTERRUPTED
        assert time.monotonic() - t < 2
        first = g.ctx.regs.rax
        assert first > 1000 and CODE <= g.ctx.regs.rip < CODE + 16
        e = g.run()  # resumes where it was
        assert e.kind == ExitKind.INTERRUPTED and g.ctx.regs.rax > first
    finally:
        cpu.set_timeslice(None)


def test_kick_from_another_thread_and_gil_is_released(platform, assemble) -> None:
    g = Guest(platform, assemble("1: pause\n jmp 1b"))
    cpu = platform.cpu()
    ticks = [0]

    def other() -> None:
        end = time.monotonic() + 0.3
        while time.monotonic() < end:  # runs only if the run let go of the GIL
            ticks[0] += 1
        cpu.kick()

    th = threading.Thread(target=other)
    th.start()
    e = g.run()
    th.join()
    assert e.kind == ExitKind.INTERRUPTED
    assert ticks[0] > 1000
    cpu.kick()  # a kick between runs is not lost: the next run returns at once
    assert g.run().kind == ExitKind.INTERRUPTED


def test_two_host_threads_each_with_a_cpu(platform, assemble) -> None:
    code = assemble("xor %ebx, %ebx\n1: inc %rbx\n mov $1, %eax\n syscall\n jmp 1b")
    guests = [Guest(platform, code) for _ in range(2)]
    errors: list[BaseException] = []

    def work(g: Guest) -> None:
        try:
            cpu = platform.cpu()
            for _ in range(200):
                assert cpu.run(g.ctx, g.aspace).kind == ExitKind.SYSCALL
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(g,)) for g in guests]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert [g.ctx.regs.rbx for g in guests] == [200, 200]
