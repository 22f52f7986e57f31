"""Herds on one pipe (tests/guests/pipe_herd.c): three processes reading one
pipe byte by byte, then two or three writing blocks into it, with several
guest threads at once. On userland their calls run natively while the North
goes on; a second call granted on the same bytes or room, or a North copy
made meanwhile, used to leave a blocking read or write with EAGAIN
(NativeEnd.inflight); a reader computing for seconds after its native read
must not keep the next reader waiting that long (NativePipes.hurry), nor a
killed one forever; a held read end never says EOF while bytes are left."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.timeout(180)


def test_blocking_calls_of_a_herd_never_fail(build_guest, kernel_run, cove_platform,
                                             monkeypatch):
    import cove.kernel.kernel as kernel

    monkeypatch.setattr(kernel, "CPUS", 2)  # the concurrent loop, whatever the run's default
    exe = build_guest("pipe_herd")
    r = kernel_run([f"/guests/{exe.name}"], timeout=150)
    text = r.output.decode(errors="replace")
    assert r.status == 0, text
    assert text.splitlines()[-6:] == ["spinner: fast", "killed holder: 0 failed",
                                      "early EOF: 0 rounds", "readers: 0 failed",
                                      "writers4k: 0 failed", "writers64k: 0 failed"], text
    if cove_platform == "userland":
        assert r.kernel.platform.fastpath.native_calls > 1000  # the herd took the native path
