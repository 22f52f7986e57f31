"""The Python API: Sandbox.run/spawn, what a sandbox keeps between runs, and its states."""

from __future__ import annotations

import time

import pytest

from tests.conftest import needs_kvm

pytestmark = [needs_kvm, pytest.mark.timeout(120)]

BUSYBOX = "/bin/busybox"


@pytest.fixture
def sb():
    from cove import Sandbox, SandboxConfig

    with Sandbox(config=SandboxConfig(memory="256M", timeout=60)) as s:
        yield s


def test_run_captures_output_and_exit_code(sb):
    r = sb.run([BUSYBOX, "sh", "-c", "echo out; echo err >&2; exit 3"], capture_output=True)
    assert (r.returncode, r.stdout, r.stderr) == (3, b"out\n", b"err\n")


def test_run_feeds_input(sb):
    r = sb.run([BUSYBOX, "tr", "a-z", "A-Z"], capture_output=True, input=b"hello\n")
    assert r.stdout == b"HELLO\n" and r.returncode == 0


def test_files_persist_across_runs_but_processes_do_not(sb):
    sb.run([BUSYBOX, "sh", "-c", "echo kept > /tmp/f; sleep 100 &"], capture_output=True)
    r = sb.run([BUSYBOX, "sh", "-c", "cat /tmp/f; ps -o pid,args"], capture_output=True)
    assert r.stdout.startswith(b"kept\n")
    assert b"sleep" not in r.stdout  # each run is a fresh process tree
    assert sb.has_guest is False


def test_spawn_streams_and_wait(sb):
    p = sb.spawn(["python3", "-i", "-q"])
    p.stdin.write(b"print(6*7)\n")
    assert p.stdout.read(3) == b"42\n"
    assert p.returncode is None
    p.stdin.write(b"import sys; sys.exit(5)\n")
    assert p.wait(30) == 5
    assert p.returncode == 5
    assert sb.has_guest is False  # its process tree ended with it


def test_spawn_communicate(sb):
    p = sb.spawn([BUSYBOX, "sh", "-c", "cat; echo done >&2"])
    out, err = p.communicate(b"abc", timeout=30)
    assert (out, err, p.returncode) == (b"abc", b"done\n", 0)


def test_one_guest_at_a_time(sb):
    from cove import SandboxStateError

    p = sb.spawn([BUSYBOX, "sleep", "30"], stdin=None, stdout=None, stderr=None)
    with pytest.raises(SandboxStateError, match="still running"):
        sb.run([BUSYBOX, "true"])
    with pytest.raises(SandboxStateError, match="still running"):
        sb.spawn([BUSYBOX, "true"])
    p.kill()
    assert p.wait(30) == 128 + 9


def _assert_poisoned(sb, why):
    from cove import SandboxState, SandboxStateError

    assert sb.state is SandboxState.POISONED
    assert why in sb.state_reason
    for call in (lambda: sb.run([BUSYBOX, "true"]), lambda: sb.spawn([BUSYBOX, "true"]),
                 sb.snapshot, sb.resume):
        with pytest.raises(SandboxStateError) as e:
            call()
        assert "Poisoned" in str(e.value) and "only restore() or close()" in str(e.value)


def test_poisoned_after_a_guest_crash(sb):
    r = sb.run([BUSYBOX, "sh", "-c", "kill -SEGV $$"], capture_output=True)
    assert r.returncode == 128 + 11
    _assert_poisoned(sb, "SIGSEGV")


def test_poisoned_after_a_real_segfault(sb):
    r = sb.run(["python3", "-c", "import ctypes; ctypes.string_at(0)"], capture_output=True)
    assert r.returncode == 128 + 11
    _assert_poisoned(sb, "SIGSEGV")


def test_a_failing_exit_code_is_not_a_crash(sb):
    from cove import SandboxState

    assert sb.run([BUSYBOX, "false"]).returncode == 1
    assert sb.state is SandboxState.READY


def test_poisoned_after_a_timeout():
    from cove import Sandbox, SandboxConfig, SandboxTimeout

    with Sandbox(config=SandboxConfig(memory="128M", timeout=1.0)) as sb:
        start = time.monotonic()
        with pytest.raises(SandboxTimeout):
            sb.run([BUSYBOX, "sleep", "30"])
        assert time.monotonic() - start < 15
        _assert_poisoned(sb, "timeout")


def test_poisoned_after_kill(sb):
    p = sb.spawn([BUSYBOX, "sleep", "30"])
    p.kill()
    assert p.wait(30) == 128 + 9
    _assert_poisoned(sb, "kill")


def test_closed_sandbox_refuses_everything(sb):
    from cove import SandboxState, SandboxStateError

    sb.close()
    assert sb.state is SandboxState.CLOSED
    with pytest.raises(SandboxStateError, match="Closed"):
        sb.run([BUSYBOX, "true"])


def test_resume_without_a_guest_is_a_clear_error(sb):
    from cove import SandboxStateError

    with pytest.raises(SandboxStateError, match="no guest"):
        sb.resume()


def test_public_names_are_exported():
    import cove

    assert sorted(cove.__all__) == sorted([*cove._EXPORTS, "__version__"])
    for name in cove._EXPORTS:
        assert getattr(cove, name) is not None


def test_run_from_a_worker_thread():
    """Made on the main thread, a sandbox runs guests from any thread (in a
    fresh process: no earlier sandbox installed the kvm signal handler)."""
    import subprocess
    import sys

    code = ("import threading\n"
            "from cove import Sandbox, SandboxConfig\n"
            "sb = Sandbox(config=SandboxConfig(memory='64M', timeout=60))\n"
            "out = {}\n"
            "th = threading.Thread(target=lambda: out.update(r=sb.run(\n"
            "    ['/bin/busybox', 'echo', 'from a thread'], capture_output=True)))\n"
            "th.start(); th.join(60); sb.close()\n"
            "print(out['r'].stdout.decode(), end='')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert (r.returncode, r.stdout) == (0, b"from a thread\n"), r.stderr
