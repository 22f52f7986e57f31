"""/dev/null and /dev/zero as Linux's drivers have them on every platform, and
the userland platform's native I/O beyond single calls: devices on the
host's own /dev/null and /dev/zero (cove.kernel.hostpipe NativeDevice),
woken pipe calls handed back to the native path, calls preempted at their
entry (NativePipes.resume / deferred). The same guests on kvm (the North's
zero-copy hooks) and userland."""

from __future__ import annotations

import io

import pytest

from cove.kernel.kernel import CPUS
from tests.conftest import needs_kvm

pytestmark = [needs_kvm, pytest.mark.timeout(180)]

PIECES = 300


@pytest.mark.parametrize("pie", [False, True], ids=["static", "static-pie"])
def test_device_semantics_guest(build_guest, cove_run, pie):
    exe = build_guest("dev_native", pie=pie)
    r = cove_run([f"/guests/{exe.name}"])
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"ok\n"


@pytest.mark.parametrize("mode", ["pingpong", "devices"])
def test_streams_run_natively_on_userland(build_guest, kernel_run, cove_platform, mode):
    """Every piece fills or empties the pipe (both sides sleep and wake each
    time); on userland nearly every read and write still runs in the host:
    the woken call and the one preempted after a wake-up are handed back to
    the native path instead of being answered by the North, or (COVE_CPUS >=
    2, pingpong) the pipe goes into native mode and the calls make no stop."""
    exe = build_guest("pipe_stream")
    r = kernel_run([f"/guests/{exe.name}", mode, str(PIECES)])
    status, kernel = r.status, r.kernel
    assert status == 0
    if cove_platform != "userland":
        return
    # devices: the pipe write, pipe read and /dev/null write; the 64 KiB /dev/zero
    # read is longer than a native one may be (hostpipe.NATIVE_ZERO_MAX).
    calls = PIECES * (3 if mode == "devices" else 2)
    nio = kernel.native_io
    assert nio.north_copies <= 20
    native = kernel.platform.fastpath.native_calls
    if CPUS == 1:
        assert native >= calls - 20
    else:  # the pipe's calls make no stop at all; the /dev/null writes still notify
        assert native < calls - PIECES * 3 // 2


def test_device_semantics_run_natively_on_userland(build_guest, kernel_run, cove_platform):
    """The semantics guest's loop of /dev/zero reads and /dev/null writes ran
    on the host's devices (so its assertions tested that path)."""
    exe = build_guest("dev_native")
    r = kernel_run([f"/guests/{exe.name}"])
    status, kernel = r.status, r.kernel
    assert status == 0
    if cove_platform == "userland":
        assert kernel.platform.fastpath.native_calls > 1900


def test_trace_sees_every_device_call(build_guest, kernel_run, cove_platform):
    exe = build_guest("pipe_stream")
    out = io.StringIO()
    r = kernel_run([f"/guests/{exe.name}", "devices", "20"], trace=out)
    status, kernel = r.status, r.kernel
    assert status == 0
    if cove_platform == "userland":
        assert kernel.platform.fastpath.native_calls == 0
    assert out.getvalue().count('"syscall": "write"') >= 40
