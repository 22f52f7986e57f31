"""The userland platform runs a sandbox's kernel loop on its tracer thread
(``run_owned``): every ptrace request is then a direct call. What that must
not change: Ctrl-C still stops a run at once (KeyboardInterrupt, CLI status
130), spawn/kill and timeouts still work, and a run from any thread works."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from tests.platform.guest import unavailable_reason

_REASON = unavailable_reason("userland")
pytestmark = [pytest.mark.timeout(120),
              pytest.mark.skipif(_REASON is not None, reason=str(_REASON))]

BUSYBOX = "/bin/busybox"


@pytest.fixture
def sb():
    from cove import Sandbox, SandboxConfig

    with Sandbox(config=SandboxConfig(memory="256M", timeout=60, platform="userland")) as s:
        yield s


def test_kernel_loop_runs_on_the_tracer_thread(sb, monkeypatch):
    from cove.kernel.kernel import Kernel

    seen: list[str] = []
    run = Kernel.run

    def spy(self: Kernel) -> int | None:
        seen.append(threading.current_thread().name)
        return run(self)

    monkeypatch.setattr(Kernel, "run", spy)
    r = sb.run([BUSYBOX, "sh", "-c", "echo hi; /bin/true"], capture_output=True)
    assert (r.returncode, r.stdout) == (0, b"hi\n")
    assert seen == ["cove-userland-tracer"]


def test_run_from_a_worker_thread(sb):
    out: list[object] = []
    th = threading.Thread(target=lambda: out.append(sb.run([BUSYBOX, "echo", "w"],
                                                           capture_output=True)))
    th.start()
    th.join(60)
    assert out and out[0].stdout == b"w\n"  # type: ignore[attr-defined]


def test_sigint_during_a_run_raises_keyboardinterrupt_at_once():
    # In a child interpreter: SIGINT to ourselves while the guest sleeps.
    script = textwrap.dedent(f"""
        import os, signal, threading, time
        from cove import Sandbox, SandboxConfig
        sb = Sandbox(config=SandboxConfig(memory="256M", platform="userland"))
        threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT)).start()
        t = time.monotonic()
        try:
            sb.run(["{BUSYBOX}", "sh", "-c", "sleep 100 & while :; do :; done"])
        except KeyboardInterrupt:
            print("interrupted after", round(time.monotonic() - t, 1), sb.state.name)
        sb.close()
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    words = r.stdout.split()
    assert words[:2] == ["interrupted", "after"], r.stdout + r.stderr
    assert float(words[2]) < 10


def test_cli_sigint_stops_a_fork_bomb_with_status_130():
    p = subprocess.Popen([sys.executable, "-m", "cove.cli", "run", "--platform", "userland",
                          "--memory", "512M", "--", BUSYBOX, "sh", "-c",
                          "f() { f | f & }; f; sleep 100"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    time.sleep(3)
    p.send_signal(2)
    try:
        _, err = p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        raise AssertionError("cove did not exit within 30 s of SIGINT") from None
    assert p.returncode == 130, err
    assert "Traceback" not in err


def test_spawned_guest_is_killed_and_timeouts_fire(sb):
    from cove import Sandbox, SandboxConfig, SandboxTimeout

    p = sb.spawn([BUSYBOX, "sleep", "100"])
    time.sleep(0.3)
    p.kill()
    assert p.wait(30) == 128 + 9
    with Sandbox(config=SandboxConfig(memory="256M", timeout=1, platform="userland")) as s2:
        t = time.monotonic()
        with pytest.raises(SandboxTimeout):
            s2.run([BUSYBOX, "sh", "-c", "while :; do :; done"])
        assert time.monotonic() - t < 30


def test_no_stub_outlives_its_guest(sb):
    # Stubs (the anchor, the guests' and the scrubbed spares) all go with the kernel.
    p = sb.spawn([BUSYBOX, "sh", "-c", "/bin/true; /bin/true; sleep 100"])
    deadline = time.monotonic() + 20
    while len(stubs := _stub_pids()) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(stubs) >= 2, "the anchor and the shell's stub at least"
    p.kill()
    p.wait(30)
    deadline = time.monotonic() + 10
    while _stub_pids() & stubs and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _stub_pids() & stubs


def _stub_pids() -> set[int]:
    """This process's stubs: the anchors it spawned and their process groups."""
    procs = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    comm, rest = f.read().split(" (", 1)[1].rsplit(")", 1)
            except OSError:
                continue
            fields = rest.split()
            procs[int(d)] = (comm, int(fields[1]), int(fields[2]))  # comm, ppid, pgrp
    anchors = {pid for pid, (comm, ppid, _) in procs.items()
               if comm.startswith("cove-stub") and ppid == os.getpid()}
    return {pid for pid, (comm, _, pgrp) in procs.items()
            if comm.startswith("cove-stub") and pgrp in anchors}
