"""Thread-heavy guests: 8 pthreads with a mutex and condition variables."""

from __future__ import annotations

import pytest

from tests.conftest import needs_kvm

pytestmark = [needs_kvm, pytest.mark.timeout(300)]


@pytest.mark.parametrize("pie", [False, True], ids=["static", "static-pie"])
def test_eight_threads_mutex_and_condvars(build_guest, cove_run, pie):
    exe = build_guest("threads8", pie=pie)
    r = cove_run([f"/guests/{exe.name}"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(b"ok 40000 ")
