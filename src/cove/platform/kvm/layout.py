"""Where the kvm platform's own guest structures live, and their binary formats.

Kernel half (virtual, top 2 GiB, never user-writable; only the LSTAR page is
user-executable, and only on hypervisors whose `syscall` stays at CPL 3):

    KBASE + 0x0000  stub page 0: syscall entry (LSTAR)          R X  (U on cpl3 path)
    KBASE + 0x1000  stub page 1: exception entries, resume      R X
    KBASE + 0x2000  IDT (256 gates)                             R
    KBASE + 0x3000 + 0x2000*n   cpu n: GDT at +0, TSS at +0x80  R
    KBASE + 0x4000 + 0x2000*n   cpu n: kernel stack (RSP0 at the page end)  RW

The exception/resume frame sits at fixed offsets under RSP0 (all from user
mode, so the CPU always switches to RSP0 and the layout never varies):

    RSP0 - 0x08  ss        RSP0 - 0x30  error code (or 0); user rax when resuming
    RSP0 - 0x10  rsp       RSP0 - 0x38  user rax (#PF entry only)
    RSP0 - 0x18  rflags
    RSP0 - 0x20  cs
    RSP0 - 0x28  rip
"""

from __future__ import annotations

import functools
import struct

from cove.platform.kvm import _stub_bin

KBASE = 0xFFFF_FFFF_8000_0000
STUB_VA = KBASE
IDT_VA = KBASE + 0x2000
CPU_AREA_VA = KBASE + 0x3000
CPU_AREA_STRIDE = 0x2000
MAX_CPUS = 64  # all of the kernel half must fit in one page table (2 MiB)

SYM = _stub_bin.SYMBOLS
PORT_SYSCALL = SYM["PORT_SYSCALL"]
PORT_EXC_BASE = SYM["PORT_EXC_BASE"]
LSTAR = STUB_VA + SYM["syscall_entry"]
LSTAR_OUT_END = STUB_VA + SYM["syscall_entry_end"]
PROBE = STUB_VA + SYM["probe"]
RESUME = STUB_VA + SYM["resume"]
RESUME_POP = STUB_VA + SYM["resume_pop"]
RESUME_FLUSH = STUB_VA + SYM["resume_flush"]
STUB_CODE_START = STUB_VA + SYM["kernel_page"]
STUB_CODE_END = STUB_VA + SYM["stub_end"]

# Selectors laid out as Linux does, so STAR is the familiar value.
KERNEL_CS, KERNEL_DS = 0x10, 0x18
USER32_CS, USER_DS, USER_CS = 0x23, 0x2B, 0x33
TSS_SEL = 0x40
STAR = (USER32_CS << 48) | (KERNEL_CS << 32)
# syscall clears TF DF IF IOPL AC NT, as Linux does.
SFMASK = 0x47700

GDT = [
    0,
    0,
    0x00AF9B000000FFFF,  # 0x10 kernel code, 64-bit (accessed bit preset: GDT is read-only)
    0x00CF93000000FFFF,  # 0x18 kernel data
    0x00CFFB000000FFFF,  # 0x23 user code, 32-bit (never used; STAR needs the slot)
    0x00CFF3000000FFFF,  # 0x2b user data
    0x00AFFB000000FFFF,  # 0x33 user code, 64-bit
    0,
]
TSS_OFFSET = 0x80  # in the cpu's GDT page
TSS_IOMAP = 0x68  # I/O bitmap right after the 104-byte TSS
IOMAP_BYTES = 33  # ports 0..255 plus the terminating 0xff byte the CPU may read
TSS_LIMIT = TSS_IOMAP + IOMAP_BYTES - 1

# Frame offsets below RSP0 (see the module docstring).
F_SS, F_RSP, F_RFLAGS, F_CS, F_RIP, F_ERR, F_PF_RAX = 8, 16, 24, 32, 40, 48, 56
FRAME = struct.Struct("<5Q")  # rip cs rflags rsp ss, at RSP0 - F_RIP
RESUME_FRAME = struct.Struct("<6Q")  # rax rip cs rflags rsp ss, at RSP0 - F_ERR

ERROR_CODE_VECTORS = frozenset({8, 10, 11, 12, 13, 14, 17, 21, 29, 30})

# rflags bits user code may hold: CF PF AF ZF SF TF DF OF RF AC ID. IF and bit 1 are
# forced on; IOPL, NT, VM, VIF, VIP are forced off (IOPL 3 would give user code the
# I/O ports and cli).
RFLAGS_USER_MASK = 0x250DD5
RFLAGS_FIXED = 0x202


def cpu_gdt_va(n: int) -> int:
    return CPU_AREA_VA + CPU_AREA_STRIDE * n


def cpu_stack_top_va(n: int) -> int:
    return cpu_gdt_va(n) + 0x2000


def tss_descriptor(base: int, limit: int) -> tuple[int, int]:
    """A 64-bit TSS descriptor (two GDT slots), type 0xB (busy, as LTR would leave it)."""
    lo = (
        (limit & 0xFFFF)
        | ((base & 0xFFFFFF) << 16)
        | (0x8B << 40)
        | (((limit >> 16) & 0xF) << 48)
        | (((base >> 24) & 0xFF) << 56)
    )
    return lo, base >> 32


@functools.cache  # pure; every restore checks the pages against it
def build_cpu_page(n: int, allow_user_syscall_port: bool) -> bytes:
    """GDT + TSS (+ I/O bitmap) page for cpu ``n``."""
    page = bytearray(4096)
    gdt = [*GDT, *tss_descriptor(cpu_gdt_va(n) + TSS_OFFSET, TSS_LIMIT)]
    struct.pack_into(f"<{len(gdt)}Q", page, 0, *gdt)
    tss = TSS_OFFSET
    struct.pack_into("<Q", page, tss + 4, cpu_stack_top_va(n))  # RSP0
    struct.pack_into("<H", page, tss + 102, TSS_IOMAP)
    iomap = bytearray(b"\xff" * IOMAP_BYTES)  # 1 = denied
    if allow_user_syscall_port:
        iomap[PORT_SYSCALL // 8] &= ~(1 << (PORT_SYSCALL % 8))
    page[tss + TSS_IOMAP : tss + TSS_IOMAP + IOMAP_BYTES] = iomap
    return bytes(page)


GDT_LIMIT = (len(GDT) + 2) * 8 - 1


@functools.cache
def build_idt() -> bytes:
    """Interrupt gates for vectors 0-31 into the stub; #BP and #OF callable from
    user mode (int3, into); vectors 32-255 absent (user `int n` gets #GP/#NP)."""
    page = bytearray(4096)
    for v in range(32):
        off = STUB_VA + SYM[f"vec_{v}"]
        dpl = 3 if v in (3, 4) else 0
        attr = 0x8E | (dpl << 5)  # present, 64-bit interrupt gate
        lo = (off & 0xFFFF) | (KERNEL_CS << 16) | (attr << 40) | (((off >> 16) & 0xFFFF) << 48)
        struct.pack_into("<QQ", page, 16 * v, lo, off >> 32)
    return bytes(page)


IDT_LIMIT = 256 * 16 - 1
