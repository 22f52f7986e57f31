"""The committed stub bytes are exactly what stub.S assembles to (no opaque blobs)."""

from __future__ import annotations

import shutil

import pytest

from cove.platform.kvm import _stub_bin, layout
from cove.platform.kvm.build_stub import assemble


@pytest.mark.skipif(
    not all(shutil.which(t) for t in ("as", "objcopy", "nm")), reason="binutils not installed"
)
def test_committed_stub_matches_source() -> None:
    code, symbols = assemble()
    assert code == _stub_bin.code(), "run: python -m cove.platform.kvm.build_stub"
    assert symbols == _stub_bin.SYMBOLS


def test_stub_layout_invariants() -> None:
    sym = _stub_bin.SYMBOLS
    assert sym["syscall_entry"] == 0 and sym["kernel_page"] == 0x1000
    assert _stub_bin.SIZE <= 0x2000, "stub must fit its two pages"
    assert all(f"vec_{v}" in sym for v in range(32))
    # The resume labels are one straight-line sequence the run loop relies on.
    assert layout.RESUME_FLUSH < layout.RESUME_POP < layout.RESUME
    assert layout.LSTAR_OUT_END - layout.LSTAR == 2  # `out %al, $imm8`
