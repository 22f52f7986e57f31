"""Signals, threads and futexes from real static programs in a kvm sandbox;
each guest checks its own results and exits with its number of failures."""

from __future__ import annotations

import pytest

from tests.conftest import needs_kvm

pytestmark = [needs_kvm, pytest.mark.timeout(180)]

PIE = pytest.mark.parametrize("pie", [False, True], ids=["static", "static-pie"])


@PIE
def test_signal_handlers(build_guest, cove_run, pie):
    exe = build_guest("sig_handlers", pie=pie)
    r = cove_run([f"/guests/{exe.name}"])
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == b"ok\n"


@PIE
def test_pthreads(build_guest, cove_run, pie):
    exe = build_guest("sig_threads", pie=pie)
    r = cove_run([f"/guests/{exe.name}"])
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == b"ok\n"
