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


@pytest.mark.parametrize("mode", range(8))
def test_corrupted_context_dies_as_on_linux(build_guest, cove_run, mode):
    import subprocess

    exe = build_guest("sig_badctx")
    native = subprocess.run([str(exe), str(mode)], capture_output=True, timeout=30)
    r = cove_run([f"/guests/{exe.name}", str(mode)])
    # The host reports a signal death as -signo; cove as 128 + signo.
    expect = 128 - native.returncode if native.returncode < 0 else native.returncode
    assert r.returncode == expect, (mode, r.returncode, native.returncode, r.stderr)
    assert r.stdout == native.stdout
