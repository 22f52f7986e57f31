"""The platform contract, syscall exits: what the North sees in the registers
at a SYSCALL exit and how what it writes back reaches the guest. Every test
runs on each platform (tests/platform/conftest.py)."""

from __future__ import annotations

import struct

import pytest

from cove.platform.base import AddressSpace, Context, Cpu, ExitKind, Platform
from tests.platform.guest import CODE, RO, STACK_TOP, Guest

pytestmark = pytest.mark.timeout(60)


def test_platform_satisfies_the_protocols(platform, request) -> None:
    assert isinstance(platform, Platform)
    assert isinstance(platform.create_context(), Context)
    assert isinstance(platform.create_address_space(), AddressSpace)
    assert isinstance(platform.cpu(), Cpu)
    name = request.node.callspec.params["platform"]
    assert platform.name == name and platform.capabilities.name == name
    assert platform.capabilities.xsave_size >= 576
    assert platform.capabilities.xcr0 & 0x7 == 0x7, "x87, SSE and AVX state enabled"
    assert len(platform.create_context().get_fpu()) == platform.capabilities.xsave_size


@pytest.mark.parametrize("every_exit", [True, False], ids=["all-regs", "carried-regs"])
def test_syscall_loop_returns_host_values(platform, assemble, every_exit: bool) -> None:
    # carried-regs reads only what a syscall exit carries (the userland
    # platform's notification path); the rest is fetched when read at the end.
    code = assemble("""
        xor %ebx, %ebx
        mov $1, %r12d
    1:  mov %r12, %rax
        mov $0x1111, %rdi
        mov $0x2222, %rsi
        mov $0x3333, %rdx
        mov $0x4444, %r10
        mov $0x5555, %r8
        mov $0x6666, %r9
        syscall
        add %rax, %rbx
        inc %r12
        cmp $100, %r12
        jbe 1b
        mov %rbx, %rdi
        mov $1000, %eax
        syscall
        ud2
    """)
    g = Guest(platform, code)
    seen = []
    while True:
        e = g.run()
        assert e.kind == ExitKind.SYSCALL, e
        r = g.ctx.regs
        if r.rax == 1000:
            break
        assert (r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9) == (
            0x1111, 0x2222, 0x3333, 0x4444, 0x5555, 0x6666,
        )  # fmt: skip
        assert r.rip == r.rcx, "Linux's rcx convention"
        if every_exit:
            assert r.rflags == r.r11, "Linux's r11 convention"
        assert CODE < r.rip < CODE + len(code)
        seen.append(r.rax)
        r.rax = r.rax * 3  # the "result"
    assert seen == list(range(1, 101))
    assert g.ctx.regs.rdi == 3 * sum(range(1, 101))
    assert g.ctx.regs.r12 == 101 and g.ctx.regs.rbx == 3 * sum(range(1, 101))
    assert g.ctx.regs.r11 == g.ctx.regs.rflags


def test_every_register_survives_a_syscall_and_reads_are_exact(platform, assemble) -> None:
    regs = ("rbx", "rbp", "r12", "r13", "r14", "r15")
    g = Guest(platform, assemble("mov $1, %eax\n syscall\n mov $2, %eax\n syscall"))
    for i, n in enumerate(regs):
        setattr(g.ctx.regs, n, 0x1000 + i)
    assert g.run().kind == ExitKind.SYSCALL
    g.ctx.regs.rax = 0
    assert g.run().kind == ExitKind.SYSCALL and g.ctx.regs.rax == 2
    assert [getattr(g.ctx.regs, n) for n in regs] == [0x1000 + i for i in range(len(regs))]
    assert g.ctx.regs.rsp == STACK_TOP


def test_changing_any_register_reaches_the_guest(platform, assemble) -> None:
    # After a syscall exit, a write to a register the exit did not carry
    # (rbx) and to one it did (rdi) must both be seen by the guest.
    g = Guest(platform, assemble("mov $1, %eax\n syscall\n mov %rbx, %rsi\n mov $2, %eax\n"
                                 " syscall"))  # fmt: skip
    assert g.run().kind == ExitKind.SYSCALL
    g.ctx.regs.rbx = 0xB0B
    g.ctx.regs.rdi = 0xD1
    assert g.run().kind == ExitKind.SYSCALL
    assert (g.ctx.regs.rsi, g.ctx.regs.rdi) == (0xB0B, 0xD1)


def test_syscall_restart_by_moving_rip_back(platform, assemble) -> None:
    g = Guest(
        platform, assemble("mov $7, %eax\n syscall\n mov %rax, %rdi\n mov $8, %eax\n syscall")
    )
    assert g.run().kind == ExitKind.SYSCALL and g.ctx.regs.rax == 7
    g.ctx.regs.rip -= 2  # restart: the same syscall again
    assert g.run().kind == ExitKind.SYSCALL and g.ctx.regs.rax == 7
    g.ctx.regs.rax = 42
    assert g.run().kind == ExitKind.SYSCALL
    assert (g.ctx.regs.rax, g.ctx.regs.rdi) == (8, 42)


def test_traced_syscalls_carry_every_register(platform, assemble) -> None:
    # rt_sigreturn (15) is one of the calls the userland platform stops with ptrace.
    g = Guest(platform, assemble("mov $0x77, %r13\n mov $15, %eax\n syscall\n"
                                 "mov %rax, %rdi\n mov $1, %eax\n syscall"))  # fmt: skip
    e = g.run()
    assert e.kind == ExitKind.SYSCALL and g.ctx.regs.rax == 15 and g.ctx.regs.r13 == 0x77
    g.ctx.regs.rax = 99
    assert g.run().kind == ExitKind.SYSCALL and g.ctx.regs.rdi == 99


def test_preempted_in_a_syscall_wait_is_restarted(platform, assemble) -> None:
    # The tests never answer the first syscall quickly: on userland a kick
    # while the guest waits in its notification abandons it; the context then
    # says "re-issue" (rax = the number, rip at the syscall) and the guest does.
    g = Guest(platform, assemble("mov $0x1234, %r12\n mov $5, %eax\n syscall\n"
                                 "mov $6, %eax\n syscall"))  # fmt: skip
    cpu = platform.cpu()
    assert g.run().kind == ExitKind.SYSCALL and g.ctx.regs.rax == 5
    assert g.ctx.regs.r12 == 0x1234  # a fetch: the thread leaves its notification wait
    g.ctx.regs.rax = 0
    assert cpu.run(g.ctx, g.aspace).kind == ExitKind.SYSCALL and g.ctx.regs.rax == 6


def test_every_syscall_number_stops_in_the_supervisor(platform, assemble) -> None:
    # Nothing runs natively: each number 0..511 (and an x32 one, and a huge
    # one) arrives as a SYSCALL exit with its arguments. On userland the one
    # exception is uprobe (336), which the host kernel runs before seccomp by
    # design and which fails outside a uprobe trampoline (documented in cpu.py).
    g = Guest(platform, assemble("""
        mov $0x2000000, %r12
        xor %r13d, %r13d
    1:  mov (%r12,%r13,8), %rax
        mov $0x1000, %rdi
        mov $0x7ff000, %rsi
        mov $0xffffffff, %rdx
        mov $3, %r10
        mov $3, %r8
        xor %r9d, %r9d
        syscall
        inc %r13
        jmp 1b
    """))  # fmt: skip
    native = {336} if platform.name == "userland" else set()
    numbers = [n for n in range(512) if n not in native] + [0x40000002, 0x7FFFFFFF]
    table = struct.pack(f"<{len(numbers) + 1}Q", *numbers, 0xFFFF)
    for off in range(0, len(table), 4096):
        g.map_data(0x2000000 + off, table[off:off + 4096], RO)
    seen = []
    for _ in range(len(numbers)):
        e = g.run()
        assert e.kind == ExitKind.SYSCALL, (seen[-1:], e)
        assert (g.ctx.regs.rdi, g.ctx.regs.rsi, g.ctx.regs.r10) == (0x1000, 0x7FF000, 3)
        seen.append(g.ctx.regs.rax)
        g.ctx.regs.rax = -38 & (2**64 - 1)
    assert seen == numbers
