from __future__ import annotations

from cove.abi.errno import E
from cove.kernel.syscall import TABLE, load_all

from .harness import call, make_kernel


def test_unknown_syscall_is_enosys():
    _, t = make_kernel()
    assert call(t, "kexec_load") == -E.ENOSYS
    t.ctx.regs.rax = 100000
    t.kernel.syscall(t)
    assert t.ctx.regs.rax == (-E.ENOSYS) & ((1 << 64) - 1)


def test_table_entries_are_consistent():
    for nr, sc in load_all().items():
        assert sc.nr == nr
        assert sc.support in ("full", "partial", "enosys")
    assert TABLE is load_all()
