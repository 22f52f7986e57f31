"""End-to-end: a C guest using epoll and timerfd (with pipes, eventfd and
signalfd in one event loop, and threads blocking on their own), run in cove
as static and static-pie binaries, and natively to keep its assertions
honest about Linux."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import needs_kvm


@needs_kvm
@pytest.mark.timeout(120)
@pytest.mark.parametrize("pie", [False, True], ids=["static", "static-pie"])
def test_io_epoll_guest(build_guest, cove_run, pie):
    exe = build_guest("io_epoll", pie=pie)
    r = cove_run([f"/guests/{exe.name}"])
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == b"ok\n"


@pytest.mark.timeout(60)
def test_native_linux_agrees(build_guest):
    """The guest's expectations hold on the host kernel itself."""
    exe = build_guest("io_epoll")
    r = subprocess.run([str(exe)], capture_output=True, timeout=50)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == b"ok\n"
