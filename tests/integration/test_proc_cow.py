"""End-to-end: copy-on-write after fork from both sides, and many short-lived
processes (exit and exec retire address spaces into the kvm table pool)."""

from __future__ import annotations

import pytest

from tests.conftest import needs_kvm

pytestmark = [needs_kvm, pytest.mark.timeout(300)]


@pytest.mark.parametrize("pie", [False, True], ids=["static", "static-pie"])
def test_parent_writes_after_fork_are_not_seen_by_the_child(build_guest, cove_run, pie):
    exe = build_guest("proc_cow", pie=pie)
    r = cove_run([f"/guests/{exe.name}", "20"])
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"ok\n"


def test_cow_guest_on_the_host_too(build_guest):
    # The same program passes natively: its checks are Linux's behaviour.
    import subprocess

    exe = build_guest("proc_cow")
    r = subprocess.run([str(exe), "5"], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"ok\n"
