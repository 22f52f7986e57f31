"""Attacks on the userland platform's native I/O path and its reused stubs
(tests/guests/native_race.c): iovec arrays rewritten by another thread or
another process sharing the page while a native readv is checked and run,
forged batch-server replies, native calls under preemption, fds next to the
stub's memfd, pipe ends left in a stub for its next guest, tasks that
share one stub with different fd tables, /proc/self of a stub, and signals
(whose handlers do native I/O) meeting reads and writes the native path
parked. The guest counts its own breaches;
the host checks that the calls really took the native path."""

from __future__ import annotations

import pytest

try:
    from cove.platform.userland import userland_unavailable_reason

    _REASON = userland_unavailable_reason()
except Exception as e:  # pragma: no cover
    _REASON = f"userland platform not importable: {e}"

pytestmark = [pytest.mark.timeout(180),
              pytest.mark.skipif(_REASON is not None, reason=f"userland: {_REASON}")]


def test_native_io_races_and_stub_reuse(build_guest, kernel_run):
    exe = build_guest("native_race")
    r = kernel_run([f"/guests/{exe.name}"], platform="userland", timeout=90)
    status, native = r.status, r.kernel.platform.fastpath.native_calls
    text = r.output.decode(errors="replace")
    assert status == 0 and text.endswith("ok\n"), (status, text[-2000:])
    assert "not hit" not in text, text  # each race saw both iovec values
    # The races raced the native path: each readv race alone makes 3000
    # native writes and (when the North saw no stub address) native readvs.
    assert native > 6000, native
