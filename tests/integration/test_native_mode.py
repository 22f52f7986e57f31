"""Native mode of a host pipe (cove.kernel.nativemode, userland with
COVE_CPUS >= 2): a stream whose reader's and writer's calls run in the host
with no stop, and every way out of it, each checked against Linux's answer
(tests/guests/pipe_native_mode.c; the same guest passes natively). On kvm,
and on userland with one cpu, the same guest checks cove's ordinary pipes."""

from __future__ import annotations

import pytest

from cove.kernel.kernel import CPUS
from tests.conftest import needs_kvm

pytestmark = [needs_kvm, pytest.mark.timeout(180)]

# Modes whose way out finds a thread asleep in a native call (the reader waiting
# for more when the writer exits or a signal comes, the writer on a full pipe).
CUT_SHORT = {"eof", "epipe", "eintr", "restart", "stop"}
MODES = ["eof", "epipe", "eintr", "restart", "carry", "switch", "nonblock", "fork", "munmap",
         "reuse", "clonevm", "remap", "stop"]


@pytest.mark.parametrize("mode", MODES)
def test_native_mode_and_its_ways_out(build_guest, kernel_run, cove_platform, mode):
    exe = build_guest("pipe_native_mode")
    r = kernel_run([f"/guests/{exe.name}", mode], timeout=90)
    text = r.output.decode(errors="replace")
    assert r.status == 0 and text == "ok\n", (r.status, text[-2000:])
    if cove_platform == "userland" and CPUS > 1:
        modes = r.kernel.native_io.native_modes
        if mode == "clonevm":
            # Another process shares the reader's stub: its fd numbers are not
            # the reader's alone, so no rule may name one.
            assert modes == 0
        else:
            # The stream really went native before the guest took it out again.
            assert modes >= 1
        if mode in CUT_SHORT:
            # ...and the way out came while a thread slept in a native call.
            assert r.kernel.native_io.cut_short >= 1
    elif cove_platform == "userland":
        assert r.kernel.native_io.native_modes == 0  # COVE_CPUS=1: one thread at a time


def test_pauses_while_a_pipe_is_native(build_guest, guest_dir, cove_platform):
    """A spawned sandbox paused again and again (each ``snapshot()`` pauses
    it; userland refuses the snapshot itself) in the middle of a 512 MiB
    stream: every call a pause stops in the host is made after it, not lost
    (a read that "returned" 0, a write whose count leaks into another call),
    and the loop goes on after each pause instead of spinning on its wake-up."""
    import time

    from cove import Sandbox, SandboxConfig, SnapshotError
    from cove.rootfs import MountSpec

    exe = build_guest("pipe_native_mode")
    sb = Sandbox(config=SandboxConfig(memory="256M", timeout=120),
                 mounts=(MountSpec(str(guest_dir), "/guests"),))
    with sb:
        p = sb.spawn([f"/guests/{exe.name}", "long"], stdin=None)
        pauses = 0
        while p.poll() is None and pauses < 200:
            time.sleep(0.02)
            try:
                sb.snapshot()
            except SnapshotError:
                pass  # userland: refused, after the pause
            pauses += 1
        assert p.wait(timeout=60) == 0
        assert p.stdout.read() == b"ok\n", p.stderr.read()[-2000:]
        assert pauses >= 5


def test_cove_native_pipes_0_keeps_pipes_out_of_native_mode(build_guest, kernel_run,
                                                             cove_platform, monkeypatch):
    """README: ``COVE_NATIVE_PIPES=0`` turns native mode off (read at import)."""
    from cove.kernel import nativemode

    monkeypatch.setattr(nativemode, "ENABLED", False)
    exe = build_guest("pipe_native_mode")
    r = kernel_run([f"/guests/{exe.name}", "eof"], timeout=90)
    assert (r.status, r.output) == (0, b"ok\n")
    if cove_platform == "userland":
        assert r.kernel.native_io.native_modes == 0


def test_one_task_runs_on_the_one_task_loop(build_guest, kernel_run, cove_platform,
                                            monkeypatch):
    """README: a sandbox with one task runs on the one-task loop (no launch
    bookkeeping), and one that forks goes to the concurrent loop."""
    from cove.kernel import kernel as kernel_mod

    entered: list[int] = []
    real = kernel_mod.Kernel._run_concurrent

    def counting(self):  # type: ignore[no-untyped-def]
        entered.append(len(self.tasks))
        return real(self)

    monkeypatch.setattr(kernel_mod.Kernel, "_run_concurrent", counting)
    r = kernel_run(["/bin/busybox", "true"])
    assert r.status == 0 and entered == []
    r = kernel_run(["/bin/busybox", "sh", "-c", "busybox true; busybox true"])
    assert r.status == 0
    if cove_platform == "userland" and CPUS > 1:
        assert entered and all(n > 1 for n in entered)
    else:
        assert entered == []  # kvm runs one guest thread at a time
