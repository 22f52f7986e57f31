"""The kvm platform's own mechanisms, driven directly: the stub's kernel half
out of user code's reach and page tables the guest cannot see. What both
platforms promise is in test_contract_*.py."""

from __future__ import annotations

import pytest

from cove.platform.base import PF, PF_INSTR, PF_PRESENT, PF_USER, ExitKind
from tests.platform.guest import KBASE, Guest, only_on, platform_fixture

pytestmark = only_on("kvm")
platform = platform_fixture("kvm")


@pytest.mark.parametrize("offset", [0x1000, 0x2000, 0x3000, 0x4000])
def test_user_cannot_read_kernel_half(platform, assemble, offset: int) -> None:
    # stub kernel page, IDT, GDT/TSS, kernel stack (the LSTAR page at +0 is readable)
    addr = KBASE + offset
    g = Guest(platform, assemble(f"mov ${addr}, %rcx\n mov (%rcx), %rax\n mov $1, %eax\n syscall"))
    e = g.run()
    assert e.kind == ExitKind.FAULT and e.vector == PF and e.cr2 == addr
    assert e.error_code & (PF_PRESENT | PF_USER) == PF_PRESENT | PF_USER


def test_user_cannot_jump_into_exception_entries(platform, assemble) -> None:
    g = Guest(platform, assemble(f"mov ${KBASE + 0x1000}, %rcx\n jmp *%rcx"))
    e = g.run()
    assert e.kind == ExitKind.FAULT and e.vector == PF and e.cr2 == KBASE + 0x1000
    assert e.error_code & PF_INSTR


def test_page_tables_are_not_reachable_from_the_guest(platform, assemble) -> None:
    # Page-table frames are mapped nowhere in guest virtual memory: every
    # kernel-half page but the read-only stub page faults (checked above and
    # in test_contract_faults.py); and user space contains only what the host mapped.
    g = Guest(platform, assemble("mov $1, %eax\n syscall"))
    pt_frame = g.aspace.cr3 >> 12  # type: ignore[attr-defined]
    for va in range(0, 0x1000000, 0x1000):
        pa = g.aspace.translate(va)
        assert pa is None or pa >> 12 != pt_frame
