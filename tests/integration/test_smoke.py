"""First end-to-end runs: real static programs in a kvm sandbox."""

from __future__ import annotations

import pytest

from tests.conftest import needs_kvm

pytestmark = [needs_kvm, pytest.mark.timeout(120)]


@pytest.mark.parametrize("pie", [False, True], ids=["static", "static-pie"])
def test_exit_status_and_args(build_guest, cove_run, pie):
    exe = build_guest("exit_code", pie=pie)
    r = cove_run([f"/guests/{exe.name}", "42"])
    assert r.returncode == 42, r.stderr


def test_busybox_echo(cove_run):
    r = cove_run(["/bin/busybox", "echo", "hello", "sandbox"])
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"hello sandbox\n"
