"""Identity, time and memory calls from real static programs in a kvm sandbox;
each guest checks its own results and exits with its number of failures."""

from __future__ import annotations

import time

import pytest

from tests.conftest import needs_kvm

pytestmark = [needs_kvm, pytest.mark.timeout(180)]

PIE = pytest.mark.parametrize("pie", [False, True], ids=["static", "static-pie"])


@PIE
def test_sys_info(build_guest, cove_run, pie):
    exe = build_guest("sys_info", pie=pie)
    r = cove_run([f"/guests/{exe.name}", str(256 << 20)], memory="256M")
    assert r.returncode == 0, r.stderr.decode()


@PIE
def test_sys_time(build_guest, cove_run, pie):
    exe = build_guest("sys_time", pie=pie)
    r = cove_run([f"/guests/{exe.name}", str(int(time.time()))])
    assert r.returncode == 0, r.stderr.decode()


@PIE
def test_sys_mem(build_guest, cove_run, pie):
    exe = build_guest("sys_mem", pie=pie)
    r = cove_run([f"/guests/{exe.name}"])
    assert r.returncode == 0, r.stderr.decode()
