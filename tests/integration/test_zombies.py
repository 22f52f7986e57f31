"""10,000 zombies neither hang nor crash the supervisor (issue 4)."""

from __future__ import annotations

import pytest

from tests.conftest import needs_kvm

pytestmark = [needs_kvm, pytest.mark.timeout(600)]


def test_ten_thousand_zombies(build_guest, cove_run):
    exe = build_guest("zombies10k")
    r = cove_run([f"/guests/{exe.name}", "10000"], memory="2G", timeout=500)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"made 10000 reaped 10000\n"
