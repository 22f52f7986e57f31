"""The platform contract module itself: no platform is imported by it, and
select_platform fails clearly."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cove.kernel.physmem import PhysMem
from cove.platform.base import Exit, ExitKind, PlatformUnavailable, UserRegs, select_platform


def test_base_imports_no_platform() -> None:
    code = (
        "import sys, cove.platform.base, cove.kernel.physmem; "
        "print(any(m.startswith('cove.platform.kvm') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_unknown_platform_is_unavailable() -> None:
    with PhysMem(1 << 20) as pm, pytest.raises(PlatformUnavailable, match="unknown platform"):
        select_platform("quantum", physmem=pm)


def test_user_regs_layout_and_exit_repr() -> None:
    assert UserRegs.rip.offset == 16 * 8 and UserRegs.rflags.offset == 17 * 8
    e = Exit()
    e.kind, e.vector, e.error_code, e.cr2 = ExitKind.FAULT, 14, 6, 0x1000
    assert repr(e) == "Exit(FAULT #PF err=0x6 cr2=0x1000)"
