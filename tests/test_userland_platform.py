"""The userland platform, driven directly: the kvm platform's small guest
programs (tests/test_kvm_platform.py) on ptrace'd, seccomp-filtered stubs.

Each program is assembled with GNU `as` (cached per session), copied into
frames of the platform's physmem and mapped at 0x400000 with a stack below
0x800000. The tests play the North: they answer syscalls, map pages on
faults and switch contexts.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest

from cove.kernel.physmem import PhysMem
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
    PROT_NONE,
    PROT_READ,
    PROT_WRITE,
    UD,
    AddressSpace,
    Context,
    Cpu,
    ExitKind,
    Platform,
    select_platform,
)

try:
    from cove.platform.userland import userland_unavailable_reason

    _REASON = userland_unavailable_reason()
except Exception as e:  # the import itself failing is a skip reason too
    _REASON = f"userland platform import failed: {e}"

HAVE_TOOLS = all(shutil.which(t) for t in ("as", "objcopy", "gcc"))
pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(_REASON is not None, reason=f"userland platform unusable: {_REASON}"),
    pytest.mark.skipif(not HAVE_TOOLS, reason="GNU as/objcopy and gcc are needed"),
]

CODE = 0x400000
STACK_TOP = 0x800000
DATA = 0x600000
RX, RW, RO = PROT_READ | PROT_EXEC, PROT_READ | PROT_WRITE, PROT_READ
STUB_CODE, MAILBOX, REPLY, ALTSTACK = 0x1000, 0x2000, 0x3000, 0x4000


@pytest.fixture(scope="session")
def assemble(tmp_path_factory: pytest.TempPathFactory):
    cache = tmp_path_factory.mktemp("guest-asm")

    def build(src: str) -> bytes:
        h = hashlib.sha256(src.encode()).hexdigest()[:16]
        out = Path(cache, f"{h}.bin")
        if not out.exists():
            s, o = Path(cache, f"{h}.S"), Path(cache, f"{h}.o")
            s.write_text(".text\n.code64\n" + src + "\n")
            subprocess.run(["as", "--64", "-o", str(o), str(s)], check=True)
            subprocess.run(["objcopy", "-O", "binary", "-j", ".text", str(o), str(out)], check=True)
        return out.read_bytes()

    return build


@pytest.fixture(scope="module")
def platform():
    pm = PhysMem(256 << 20)
    p = select_platform("userland", physmem=pm)
    yield p
    p.close()
    pm.close()


class Guest:
    """One program in its own address space with one context."""

    def __init__(self, platform: Platform, code: bytes, stack_pages: int = 4) -> None:
        self.p = platform
        self.pm = platform.physmem
        self.aspace: AddressSpace = platform.create_address_space()
        frames = []
        for off in range(0, len(code), 4096):
            f = self.pm.alloc()
            self.pm.write(f << 12, code[off : off + 4096])
            frames.append(f)
        self.aspace.map_range(CODE, frames, RX)
        stack = [self.pm.alloc() for _ in range(stack_pages)]
        self.aspace.map_range(STACK_TOP - 4096 * stack_pages, stack, RW)
        self.ctx: Context = platform.create_context()
        self.ctx.regs.rip = CODE
        self.ctx.regs.rsp = STACK_TOP

    def map_data(self, vaddr: int, data: bytes = b"", prot: int = RW) -> int:
        f = self.pm.alloc()
        self.pm.write(f << 12, data)
        self.aspace.map(vaddr, f, prot)
        return f

    def run(self):
        return self.p.run(self.ctx, self.aspace)

    def stub_pid(self) -> int:
        return self.aspace.proc.pid  # type: ignore[attr-defined]


def test_platform_satisfies_the_protocols(platform) -> None:
    assert isinstance(platform, Platform)
    assert isinstance(platform.create_context(), Context)
    assert isinstance(platform.create_address_space(), AddressSpace)
    assert isinstance(platform.cpu(), Cpu)
    assert platform.name == "userland" and platform.capabilities.name == "userland"
    assert platform.capabilities.xsave_size >= 576
    assert platform.capabilities.xcr0 & 0x3 == 0x3, "x87 and SSE state"
    assert len(platform.create_context().get_fpu()) == platform.capabilities.xsave_size


def test_syscall_loop_returns_host_values(platform, assemble) -> None:
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
        assert CODE < r.rip < CODE + len(code)
        seen.append(r.rax)
        r.rax = r.rax * 3  # the "result"
    assert seen == list(range(1, 101))
    assert g.ctx.regs.rdi == 3 * sum(range(1, 101))
    # the registers a notification does not carry are fetched when read
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
    # After a notification exit, a write to a register the notification did
    # not carry (rbx) and to one it did (rdi) must both be seen by the guest.
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
    # rt_sigreturn (15) is one of the calls that stop with ptrace.
    g = Guest(platform, assemble("mov $0x77, %r13\n mov $15, %eax\n syscall\n"
                                 "mov %rax, %rdi\n mov $1, %eax\n syscall"))  # fmt: skip
    e = g.run()
    assert e.kind == ExitKind.SYSCALL and g.ctx.regs.rax == 15 and g.ctx.regs.r13 == 0x77
    g.ctx.regs.rax = 99
    assert g.run().kind == ExitKind.SYSCALL and g.ctx.regs.rdi == 99


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
    g.ctx.regs.rax = 0xDEAD
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
    # The error code of a fault on an unmapped page comes from the CPU (via
    # the stub's altstack frame), not from a guess; FPU state survives it.
    src = f"mov $0x20000000, %rcx\n mov %rcx, %rsp\n add $8, %rsp\n {insn}"
    g = Guest(platform, assemble("movq $0x5a5a, %rax\n movq %rax, %xmm3\n" + src))
    e = g.run()
    assert e.kind == ExitKind.FAULT and e.vector == PF, e
    assert e.cr2 == 0x20000000 and e.error_code == bits
    assert g.ctx.regs.rcx == 0x20000000 and g.ctx.regs.rax == 0x5A5A
    fpu = g.ctx.get_fpu()
    assert fpu[160 + 3 * 16:160 + 3 * 16 + 8] == struct.pack("<Q", 0x5A5A), "xmm3 kept"
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
    fpu_a = bytearray(g.ctx.get_fpu())
    fpu_b = bytearray(ctx_b.get_fpu())
    fpu_a[160 + 15 * 16] = 0xA  # xmm15 in the FXSAVE area (offset 160 + 16*n)
    fpu_b[160 + 15 * 16] = 0xB
    g.ctx.set_fpu(fpu_a)
    ctx_b.set_fpu(fpu_b)
    cpu = platform.cpu()
    for i in range(1, 21):
        for ctx, tag in ((g.ctx, 0xA), (ctx_b, 0xB)):
            e = cpu.run(ctx, g.aspace)
            assert e.kind == ExitKind.SYSCALL
            assert (ctx.regs.rbx, ctx.regs.rdi, ctx.regs.rsi) == (i, tag, tag)
    assert g.ctx.get_fpu()[160 + 15 * 16] == 0xA
    c = g.ctx.copy()
    assert c.get_fpu() == g.ctx.get_fpu() and c.regs.rbx == g.ctx.regs.rbx
    # the copy runs as a third thread, from the copied state
    assert cpu.run(c, g.aspace).kind == ExitKind.SYSCALL and c.regs.rbx == 21


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


def test_preempted_in_a_syscall_wait_is_restarted(platform, assemble) -> None:
    # The tests never answer the first syscall quickly: a kick while the
    # guest waits in its notification abandons it; the context then says
    # "re-issue" (rax = the number, rip at the syscall) and the guest does.
    g = Guest(platform, assemble("mov $0x1234, %r12\n mov $5, %eax\n syscall\n"
                                 "mov $6, %eax\n syscall"))  # fmt: skip
    cpu = platform.cpu()
    assert g.run().kind == ExitKind.SYSCALL and g.ctx.regs.rax == 5
    assert g.ctx.regs.r12 == 0x1234  # a fetch: the thread leaves its notification wait
    g.ctx.regs.rax = 0
    assert cpu.run(g.ctx, g.aspace).kind == ExitKind.SYSCALL and g.ctx.regs.rax == 6


def test_kick_from_another_thread_and_gil_is_released(platform, assemble) -> None:
    g = Guest(platform, assemble("1: pause\n jmp 1b"))
    cpu = platform.cpu()
    ticks = [0]

    def other() -> None:
        end = time.monotonic() + 0.3
        while time.monotonic() < end:
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


def test_write_to_mapped_readonly_pages_and_reserved_range(platform, assemble) -> None:
    a = platform.create_address_space()
    f = platform.physmem.alloc()
    with pytest.raises(ValueError):
        a.map(STUB_CODE, f, RW)  # the stub's pages: never for a guest
    with pytest.raises(ValueError):
        a.map(0xF000, f, RW)
    a.destroy()


@pytest.mark.parametrize("addr", [STUB_CODE, MAILBOX])
def test_user_cannot_write_stub_pages(platform, assemble, addr: int) -> None:
    g = Guest(platform, assemble(f"mov ${addr}, %rcx\n movb $0x90, (%rcx)\n mov $1, %eax\n"
                                 " syscall"))  # fmt: skip
    e = g.run()
    assert e.kind == ExitKind.FAULT and e.vector == PF and e.cr2 == addr
    assert e.error_code & (PF_WRITE | PF_USER) == PF_WRITE | PF_USER


@pytest.mark.parametrize("offset", [0x0, 0x2, 0x10, 0x80, 0x81, 0x100, 0x10E, 0xFFF])
def test_jumping_into_the_stub_page_is_a_fault_or_syscall(platform, assemble, offset: int) -> None:
    # Whatever the guest executes in the stub's page, it is under its own
    # filter: a syscall there is a guest syscall, an int3 a #BP.
    g = Guest(platform, assemble(f"mov ${STUB_CODE + offset}, %rax\n mov $0x1000, %rdi\n"
                                 " jmp *%rax"))  # fmt: skip
    e = g.run()
    assert e.kind in (ExitKind.FAULT, ExitKind.SYSCALL), e
    follow = Guest(platform, assemble("mov $5, %eax\n syscall"))
    e = follow.run()
    assert e.kind == ExitKind.SYSCALL and follow.ctx.regs.rax == 5


def test_stub_maps_nothing_but_its_pages_and_the_guests(platform, assemble) -> None:
    g = Guest(platform, assemble("mov $1, %eax\n syscall"))
    g.map_data(DATA, b"x")
    assert g.run().kind == ExitKind.SYSCALL
    maps = Path(f"/proc/{g.stub_pid()}/maps").read_text().splitlines()
    starts = sorted(int(line.split("-")[0], 16) for line in maps)
    allowed = {STUB_CODE, MAILBOX, REPLY, ALTSTACK, CODE, DATA, STACK_TOP - 4 * 4096,
               0xFFFFFFFFFF600000}  # fmt: skip
    assert set(starts) <= allowed, maps
    assert not any("stub" in line or "[stack]" in line or "vdso" in line for line in maps), maps
    fds = os.listdir(f"/proc/{g.stub_pid()}/fd")
    # The memfd sits at the top of the stub's fd range (layout.py), above every
    # fd number a guest's host pipe may be installed at.
    assert fds == [str(g.aspace.proc.memfd)], "the stub holds the guest-memory memfd only"
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    assert g.aspace.proc.memfd == (1024 if hard < 0 or hard >= 1025 else hard - 1)


def test_user_out_to_a_port_is_gp(platform, assemble) -> None:
    g = Guest(platform, assemble("nop\n mov $39, %eax\n out %al, $0xc0"))
    e = g.run()
    assert e.kind == ExitKind.FAULT and e.vector == GP and g.ctx.regs.rip == CODE + 6


def test_noncanonical_rip_faults_without_running(platform, assemble) -> None:
    g = Guest(platform, assemble("mov $1, %eax\n syscall"))
    g.ctx.regs.rip = 0x0000_9000_0000_0000
    e = g.run()
    assert e.kind == ExitKind.FAULT and e.vector == GP


def test_rflags_privileged_bits_are_scrubbed(platform, assemble) -> None:
    g = Guest(platform, assemble("pushf\n pop %rdi\n mov $1, %eax\n syscall"))
    g.ctx.regs.rflags = 0x3000 | 0x4000 | 0x1  # IOPL=3, NT, CF
    e = g.run()
    assert e.kind == ExitKind.SYSCALL
    assert g.ctx.regs.rdi & 0x7000 == 0 and g.ctx.regs.rdi & 0x201 == 0x201


def test_remap_and_unmap_are_seen_by_a_running_guest(platform, assemble) -> None:
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
    # More changes than one mailbox holds, frames out of order: every page
    # must land where the record says.
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
    pid = g1.stub_pid()
    g1.aspace.destroy()
    # The stub is either gone and reaped or kept as a scrubbed spare.
    assert not Path(f"/proc/{pid}").exists() or _guest_maps(pid) == []
    g3 = Guest(platform, code)
    g3.map_data(DATA, struct.pack("<Q", 3), RO)
    assert g3.run().kind == ExitKind.SYSCALL and g3.ctx.regs.rdi == 3
    with pytest.raises(ValueError):
        platform.run(g1.ctx, g1.aspace)


def test_batch_server_ignores_what_a_guest_writes_to_its_reply_page(platform, assemble) -> None:
    # The reply page is writable by guest code (it shares the stub's address
    # space): a guest faking "request n+1 done, 1 entry, result 0" (it can
    # read n in the mailbox) before each call must not make a mapping change
    # look applied before it is. Each round maps a new page the guest reads.
    g = Guest(platform, assemble(f"""
        mov $0x1000, %r12
    1:  mov ${REPLY}, %rcx
        mov {MAILBOX + 0x60}, %eax
        inc %eax
        movq $1, 8(%rcx)
        movq $0, 16(%rcx)
        movl %eax, 0(%rcx)
        mov $1, %eax
        syscall
        mov %r12, %rcx
        shl $12, %rcx
        add $0x10000000, %rcx
        mov (%rcx), %rdi
        mov $2, %eax
        syscall
        inc %r12
        jmp 1b
    """))
    for i in range(40):
        assert g.run().kind == ExitKind.SYSCALL and g.ctx.regs.rax == 1
        va = 0x10000000 + ((0x1000 + i) << 12)
        g.map_data(va, struct.pack("<Q", 0xA000 + i), RO)
        e = g.run()
        assert e.kind == ExitKind.SYSCALL and g.ctx.regs.rdi == 0xA000 + i, e
    assert g.aspace.proc.serving, "the batches ran on the server"  # type: ignore[attr-defined]


def test_stray_signal_to_a_serving_injector_is_dropped(platform, assemble) -> None:
    # A signal from outside stops the injector (it is traced) while it waits
    # for work; the next batch finds it stopped, lets it go on (the signal
    # suppressed) and is applied; nothing hangs and the stub lives.
    import ctypes
    import signal

    g = Guest(platform, assemble("""
        mov $0x30000000, %rbx
    1:  mov $1, %eax
        syscall
        mov (%rbx), %rdi
        add $4096, %rbx
        jmp 1b
    """))
    assert g.run().kind == ExitKind.SYSCALL
    proc = g.aspace.proc  # type: ignore[attr-defined]
    assert proc.serving
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.syscall(234, proc.pid, proc.pid, signal.SIGUSR1) == 0  # tgkill the injector
    time.sleep(0.05)
    for i in range(3):
        g.map_data(0x30000000 + i * 4096, struct.pack("<Q", 0x70 + i), RO)
        t = time.monotonic()
        assert g.run().kind == ExitKind.SYSCALL
        assert time.monotonic() - t < 5
        assert g.ctx.regs.rdi == 0x70 + i
    assert proc.alive and Path(f"/proc/{proc.pid}").exists()


def _guest_maps(pid: int) -> list[str]:
    """The stub's mappings in the guest's range (above the stub's own pages)."""
    lines = Path(f"/proc/{pid}/maps").read_text().splitlines()
    return [ln for ln in lines if 0x10000 <= int(ln.split("-")[0], 16) < 1 << 47]


_SECCOMP_IOCTL_NOTIF_ADDFD = 0x40182103


def test_reused_stub_carries_nothing_of_its_guest(platform, assemble) -> None:
    """A destroyed address space's stub may serve the next one (a fork's or an
    exec's): the next guest must find none of the last one's memory, fds,
    fault frames, batch entries or registers."""
    import ctypes
    import fcntl

    # Guest A: secrets in registers (general, xmm, ymm) and memory, a fault
    # frame on the altstack (a not-present read), and a host fd installed in
    # its stub as the native-I/O fast path does (SECCOMP_IOCTL_NOTIF_ADDFD).
    a = Guest(platform, assemble("""
        mov $0x5ec2e7, %rbx
        mov %rbx, %r12
        mov %rbx, %r15
        movq %rbx, %xmm0
        vpbroadcastq %xmm0, %ymm7
        mov $0x20000000, %rcx
        mov (%rcx), %rax
        mov $1, %eax
        syscall
        ud2
    """))
    a.map_data(DATA, b"secret" * 100, RW)
    e = a.run()
    assert e.kind == ExitKind.FAULT and e.vector == PF and e.cr2 == 0x20000000
    a.map_data(0x20000000, b"more secret", RO)
    assert a.run().kind == ExitKind.SYSCALL
    th = a.ctx._thread  # type: ignore[attr-defined]
    r, w = os.pipe()
    try:
        addfd = struct.pack("<QIIII", th.notif_id, 1, r, 7, 0)  # SETFD: at fd 7
        buf = ctypes.create_string_buffer(addfd, len(addfd))
        assert fcntl.ioctl(th.lfd, _SECCOMP_IOCTL_NOTIF_ADDFD, buf) == 7
    finally:
        os.close(r)
        os.close(w)
    pid = a.stub_pid()
    proc = a.aspace.proc  # type: ignore[attr-defined]
    assert sorted(os.listdir(f"/proc/{pid}/fd")) == sorted(["7", str(proc.memfd)])
    altstack = list(proc.altstack)
    assert any(platform.physmem.read(f << 12, 4096).strip(b"\0") for f in altstack)
    a.aspace.destroy()
    if not Path(f"/proc/{pid}").exists():
        pytest.skip("the stub was not kept for reuse")
    assert _guest_maps(pid) == [], "every guest mapping is gone"
    assert os.listdir(f"/proc/{pid}/fd") == [str(proc.memfd)], "only the memfd is left"
    assert all(platform.physmem.read(f << 12, 4096) == bytes(4096) for f in altstack)
    mailbox = platform.physmem.read(proc.mailbox << 12, 4096)
    assert mailbox[1024:] == bytes(3072), "no batch entries of the last guest"

    # Guest B gets the same stub: it reads its registers and A's addresses.
    b = Guest(platform, assemble(f"""
        mov $1, %eax
        syscall
        movq %xmm0, %rdi
        vextracti128 $1, %ymm7, %xmm1
        movq %xmm1, %rsi
        mov $2, %eax
        syscall
        mov ${DATA}, %rcx
        mov (%rcx), %rax
        ud2
    """))
    e = b.run()
    assert e.kind == ExitKind.SYSCALL and b.stub_pid() == pid
    assert (b.ctx.regs.rbx, b.ctx.regs.r12, b.ctx.regs.r15) == (0, 0, 0)
    b.ctx.regs.rax = 0
    e = b.run()
    assert e.kind == ExitKind.SYSCALL and (b.ctx.regs.rdi, b.ctx.regs.rsi) == (0, 0)
    e = b.run()
    assert e.kind == ExitKind.FAULT and e.vector == PF and e.cr2 == DATA, "A's data is gone"
    assert e.error_code & PF_PRESENT == 0
    assert b"secret" not in b.ctx.get_fpu()
    b.aspace.destroy()


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


def test_translate_and_bad_arguments(platform) -> None:
    a = platform.create_address_space()
    f = platform.physmem.alloc()
    a.map(0x5000 * 16, f, RO)
    assert a.translate(0x50123) == (f << 12) | 0x123
    assert a.translate(0x50123, write=True) is None
    assert a.translate(0x60000) is None
    assert a.lookup(0x50FFF) == (f, RO)
    with pytest.raises(ValueError):
        a.map(0x50001, f, RO)
    with pytest.raises(ValueError):
        a.map(1 << 47, f, RO)
    with pytest.raises(ValueError):
        a.map(0x70000, platform.physmem.nframes, RO)
    a.destroy()


def test_guest_wrfsbase_is_seen_at_sync_and_switch(platform, assemble) -> None:
    g = Guest(platform, assemble(
        "mov $0x1234000, %rax\n wrfsbase %rax\n mov $1, %eax\n syscall\n"
        "rdfsbase %rdi\n mov $2, %eax\n syscall"
    ))  # fmt: skip
    g.ctx.fs_base = 0x5000
    e = g.run()
    if e.kind == ExitKind.FAULT and e.vector == UD:
        pytest.skip("wrfsbase is not available to user code here")
    assert e.kind == ExitKind.SYSCALL
    g.ctx.sync()
    assert g.ctx.fs_base == 0x1234000
    g.ctx.fs_base = 0x5000  # now the North's value wins again
    assert g.run().kind == ExitKind.SYSCALL and g.ctx.regs.rdi == 0x5000


def test_legacy_int80_is_a_fault_not_a_syscall(platform, assemble) -> None:
    g = Guest(platform, assemble("mov $20, %eax\n int $0x80"))
    e = g.run()
    assert e.kind == ExitKind.FAULT and e.vector == GP, e
    assert g.ctx.regs.rip == CODE + 5 and g.ctx.regs.rax == 20


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


def test_dropped_contexts_free_their_threads(platform, assemble) -> None:
    import gc

    g = Guest(platform, assemble("mov $1, %eax\n syscall\n ud2"))
    for _ in range(5):
        c = platform.create_context()
        c.regs.rip, c.regs.rsp = CODE, STACK_TOP
        assert platform.run(c, g.aspace).kind == ExitKind.SYSCALL
        del c
        gc.collect()
    assert len(g.aspace.proc.threads) <= 2  # type: ignore[attr-defined]


def test_killed_stub_is_a_halt_not_a_hang(platform, assemble) -> None:
    g = Guest(platform, assemble("1: pause\n jmp 1b"))
    cpu = platform.cpu()
    timer = threading.Timer(0.2, lambda: os.kill(g.stub_pid(), 9))
    timer.start()
    e = cpu.run(g.ctx, g.aspace)
    timer.join()
    assert e.kind == ExitKind.HALT, e
    g.aspace.destroy()
    follow = Guest(platform, assemble("mov $5, %eax\n syscall"))
    assert follow.run().kind == ExitKind.SYSCALL


def test_every_syscall_number_stops_in_the_supervisor(platform, assemble) -> None:
    # Nothing runs natively: each number 0..511 (and an x32 one, and a huge
    # one) arrives as a SYSCALL exit with its arguments. The one exception is
    # uprobe (336), which the host kernel runs before seccomp by design and
    # which fails outside a uprobe trampoline (documented in cpu.py).
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
    numbers = [n for n in range(512) if n != 336] + [0x40000002, 0x7FFFFFFF]
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


def test_stub_cache_refuses_files_others_could_plant(tmp_path) -> None:
    from cove.platform.userland import build

    good = build._build(build.SOURCE.read_bytes(), tmp_path / "cache" / "stub")
    assert build._ours(good) and build._ours(good.parent)
    good.chmod(0o777)  # writable by anyone: never exec'd
    assert not build._ours(good)
    (tmp_path / "cache").chmod(0o777)
    with pytest.raises(Exception, match="private"):
        build._build(b"", tmp_path / "cache" / "other")
