"""The platform contract, FAULT exits: vectors, #PF error codes and cr2, the
registers at a fault, retrying after the North fixed the cause, and the
platform's own pages out of the guest's reach. Every test runs on each
platform (tests/platform/conftest.py)."""

from __future__ import annotations

import struct

import pytest

from cove.platform.base import (
    BP,
    DE,
    GP,
    PF,
    PF_INSTR,
    PF_PRESENT,
    PF_USER,
    PF_WRITE,
    PROT_EXEC,
    PROT_READ,
    PROT_WRITE,
    UD,
    ExitKind,
)
from tests.platform.guest import (
    CODE,
    DATA,
    FXSAVE_XMM,
    KBASE,
    MAILBOX,
    RO,
    RW,
    STACK_TOP,
    STUB_CODE,
    Guest,
    per_platform,
)

pytestmark = pytest.mark.timeout(60)


def test_page_fault_resolved_on_demand_then_resumed(platform, assemble) -> None:
    g = Guest(
        platform,
        assemble("""
        mov $0x10000008, %rcx
        mov (%rcx), %rax        # not mapped: #PF, host maps, instruction retried
        mov %rax, %rdi
        movq $5, 8(%rcx)        # read-only: #PF (protection), host grants W
        mov $1, %eax
        syscall
    """),
    )
    g.ctx.regs.rax = 0xDEAD  # must survive the #PF exit (the kvm stub parks rax)
    e = g.run()
    assert e.kind == ExitKind.FAULT and e.vector == PF
    assert e.cr2 == 0x10000008
    assert e.error_code & (PF_PRESENT | PF_WRITE | PF_USER) == PF_USER
    assert g.ctx.regs.rip == CODE + 7 and g.ctx.regs.rcx == 0x10000008
    assert g.ctx.regs.rax == 0xDEAD
    assert g.aspace.translate(0x10000008) is None
    g.map_data(0x10000000, struct.pack("<QQ", 0, 0xC0FFEE), RO)
    e = g.run()
    assert e.kind == ExitKind.FAULT and e.vector == PF and e.cr2 == 0x10000010
    assert e.error_code & (PF_PRESENT | PF_WRITE | PF_USER) == PF_PRESENT | PF_WRITE | PF_USER
    assert g.aspace.translate(0x10000010, write=True) is None
    g.aspace.protect(0x10000000, 4096, RW)
    e = g.run()
    assert e.kind == ExitKind.SYSCALL and g.ctx.regs.rdi == 0xC0FFEE
    assert g.aspace.read(0x10000010, 8) == struct.pack("<Q", 5)


@pytest.mark.parametrize(("insn", "bits"), [
    ("mov (%rcx), %rax", PF_USER),
    ("movq $1, (%rcx)", PF_USER | PF_WRITE),
    ("jmp *%rcx", PF_USER | PF_INSTR),
    ("push %rax", PF_USER | PF_WRITE),
], ids=["read", "write", "fetch", "push"])
def test_not_present_fault_has_the_cpus_error_code(platform, assemble, insn, bits) -> None:
    # The error code of a fault on an unmapped page comes from the CPU (on
    # userland via the stub's altstack frame), not from a guess; FPU state
    # survives it.
    src = f"mov $0x20000000, %rcx\n mov %rcx, %rsp\n add $8, %rsp\n {insn}"
    g = Guest(platform, assemble("movq $0x5a5a, %rax\n movq %rax, %xmm3\n" + src))
    e = g.run()
    assert e.kind == ExitKind.FAULT and e.vector == PF, e
    assert e.cr2 == 0x20000000 and e.error_code == bits
    assert g.ctx.regs.rcx == 0x20000000 and g.ctx.regs.rax == 0x5A5A
    fpu = g.ctx.get_fpu()
    xmm3 = FXSAVE_XMM + 3 * 16
    assert fpu[xmm3:xmm3 + 8] == struct.pack("<Q", 0x5A5A), "xmm3 kept"
    g.map_data(0x20000000, b"\xc3" * 16, PROT_READ | PROT_WRITE | PROT_EXEC)
    e = g.run()  # the instruction is retried and passes this page
    assert not (e.kind == ExitKind.FAULT and e.vector == PF and e.cr2 == 0x20000000), e


def test_instruction_fetch_from_data_is_pf_instr(platform, assemble) -> None:
    g = Guest(platform, assemble(f"mov ${DATA}, %rax\n jmp *%rax"))
    g.map_data(DATA, b"\x90" * 16, RW)
    e = g.run()
    assert e.kind == ExitKind.FAULT and e.vector == PF and e.cr2 == DATA
    assert e.error_code & (PF_PRESENT | PF_INSTR) == PF_PRESENT | PF_INSTR
    assert not e.error_code & PF_WRITE


@pytest.mark.parametrize(
    ("src", "vector", "at"),
    [
        ("nop\n ud2", UD, 1),
        ("nop\n xor %ecx, %ecx\n mov $1, %eax\n xor %edx, %edx\n div %ecx", DE, 10),
        ("nop\n mov %cr3, %rax", GP, 1),  # privileged instruction in ring 3
        ("nop\n hlt", GP, 1),
        ("nop\n mov $0x800000000000, %rax\n mov (%rax), %rax", GP, 11),  # non-canonical
        ("nop\n cli", GP, 1),  # IOPL 0
        ("nop\n int3", BP, 2),  # a trap: rip after the instruction
    ],
    ids=["UD", "DE", "GP-cr3", "GP-hlt", "GP-noncanonical", "GP-cli", "BP"],
)
def test_exceptions_exit_with_vector(platform, assemble, src: str, vector: int, at: int) -> None:
    g = Guest(platform, assemble(src))
    g.ctx.regs.rbx = 0x1234
    e = g.run()
    assert e.kind == ExitKind.FAULT, e
    assert e.vector == vector, e
    assert g.ctx.regs.rip == CODE + at
    assert g.ctx.regs.rsp == STACK_TOP and g.ctx.regs.rbx == 0x1234


def test_fault_then_skip_and_continue(platform, assemble) -> None:
    g = Guest(platform, assemble("ud2\n mov $77, %eax\n syscall"))
    e = g.run()
    assert e.kind == ExitKind.FAULT and e.vector == UD
    g.ctx.regs.rip += 2  # what a SIGILL handler that skips would do
    assert g.run().kind == ExitKind.SYSCALL and g.ctx.regs.rax == 77


def test_user_out_to_a_port_is_gp(platform, assemble) -> None:
    # Not a syscall either (the port is the one the kvm stub's syscall path uses).
    g = Guest(platform, assemble("nop\n mov $39, %eax\n out %al, $0xc0"))
    e = g.run()
    assert e.kind == ExitKind.FAULT and e.vector == GP and g.ctx.regs.rip == CODE + 6


def test_noncanonical_rip_faults_without_running(platform, assemble) -> None:
    g = Guest(platform, assemble("mov $1, %eax\n syscall"))
    g.ctx.regs.rip = 0x0000_9000_0000_0000
    e = g.run()
    assert e.kind == ExitKind.FAULT and e.vector == GP


def test_legacy_int80_is_a_fault_not_a_syscall(platform, assemble) -> None:
    g = Guest(platform, assemble("mov $20, %eax\n int $0x80"))
    e = g.run()
    # #GP(0x402), as hardware raises for the absent gate (kvm_pvm's #UD is mapped).
    assert e.kind == ExitKind.FAULT and e.vector == GP and e.error_code == 0x402, e
    assert g.ctx.regs.rip == CODE + 5 and g.ctx.regs.rax == 20


def test_rflags_privileged_bits_are_scrubbed(platform, assemble) -> None:
    g = Guest(platform, assemble("pushf\n pop %rdi\n mov $1, %eax\n syscall"))
    g.ctx.regs.rflags = 0x3000 | 0x4000 | 0x1  # IOPL=3, NT, CF
    e = g.run()
    assert e.kind == ExitKind.SYSCALL
    assert g.ctx.regs.rdi & 0x7000 == 0 and g.ctx.regs.rdi & 0x201 == 0x201


@pytest.mark.parametrize(("platform", "addr"), per_platform({
    "kvm": [(f"{off:#x}", KBASE + off) for off in (0x0, 0x1000, 0x2000, 0x3000, 0x4000)],
    "userland": [("stub", STUB_CODE), ("mailbox", MAILBOX)],
}), indirect=["platform"])
def test_user_cannot_write_the_platforms_pages(platform, assemble, addr: int) -> None:
    g = Guest(platform, assemble(f"mov ${addr}, %rcx\n movb $0x90, (%rcx)\n mov $1, %eax\n"
                                 " syscall"))  # fmt: skip
    e = g.run()
    assert e.kind == ExitKind.FAULT and e.vector == PF and e.cr2 == addr
    assert e.error_code & (PF_WRITE | PF_USER) == PF_WRITE | PF_USER


@pytest.mark.parametrize(("platform", "addr"), per_platform({
    "kvm": [(f"{off:#x}", KBASE + off) for off in (0x1, 0x2, 0x10, 0x40, 0x41, 0xFFF)],
    "userland": [(f"{off:#x}", STUB_CODE + off)
                 for off in (0x0, 0x2, 0x10, 0x80, 0x81, 0x100, 0x10E, 0xFFF)],
}), indirect=["platform"])
def test_jumping_into_the_stub_page_is_a_fault_or_syscall(platform, assemble, addr: int) -> None:
    # The kvm LSTAR page is user-executable on kvm_pvm; the userland stub's
    # page runs under the guest's own filter. Wherever user code lands in it,
    # the result must be an ordinary exit (a syscall there is a guest syscall,
    # an int3 a #BP), never a wedged cpu.
    g = Guest(platform, assemble(f"mov ${addr}, %rax\n mov $0x1000, %rdi\n jmp *%rax"))
    e = g.run()
    assert e.kind in (ExitKind.FAULT, ExitKind.SYSCALL), e
    follow = Guest(platform, assemble("mov $5, %eax\n syscall"))
    e = follow.run()  # the same cpu still runs other contexts
    assert e.kind == ExitKind.SYSCALL and follow.ctx.regs.rax == 5
