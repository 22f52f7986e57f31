"""The cove command: one clear line and a non-zero status for bad input."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import needs_kvm

pytestmark = pytest.mark.timeout(60)


def cove(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cove.cli", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)


def one_line(r: subprocess.CompletedProcess) -> str:
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("cove: ")
    assert "Traceback" not in r.stderr
    return lines[0]


def test_version():
    r = cove("--version")
    assert r.returncode == 0 and r.stdout.startswith("cove ")


@needs_kvm
def test_missing_program(tmp_path):
    r = cove("run", "--", "/nope/nothing")
    assert r.returncode == 127
    assert "no such file" in one_line(r)


@needs_kvm
def test_not_an_elf_and_wrong_architecture(tmp_path):
    script = tmp_path / "text"
    script.write_text("hello\n")
    arm = tmp_path / "arm"
    arm.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(9) + b"\x02\x00\xb7\x00" + bytes(44))
    for f in (script, arm):
        f.chmod(0o755)
    r = cove("run", "--mount", f"{tmp_path}:/t", "--", "/t/text")
    assert r.returncode == 126 and "not an ELF" in one_line(r)
    r = cove("run", "--mount", f"{tmp_path}:/t", "--", "/t/arm")
    assert r.returncode == 126 and "wrong architecture: ARM aarch64" in one_line(r)


def test_malformed_mount():
    r = cove("run", "--mount", "nocolon", "--", "/bin/true")
    assert r.returncode != 0 and "SRC:DST" in one_line(r)
    r = cove("run", "--mount", "/a:/b:xx", "--", "/bin/true")
    assert r.returncode != 0 and "ro or rw" in one_line(r)


def test_no_kvm_says_what_to_do():
    r = cove("run", "--platform", "kvm", "--", "/bin/true",
             env={"COVE_KVM_DEVICE": "/nonexistent/kvm"})
    assert r.returncode != 0
    line = one_line(r)
    assert "kvm" in line and "/dev/kvm" in line


@needs_kvm
def test_exit_status_is_the_guests():
    r = cove("run", "--", "/bin/busybox", "sh", "-c", "exit 7")
    assert r.returncode == 7, r.stderr


@needs_kvm
def test_killed_guest_exits_128_plus_signal():
    r = cove("run", "--", "/bin/busybox", "sh", "-c", "kill -SEGV $$")
    assert r.returncode == 128 + 11, r.stderr


@needs_kvm
def test_trace_writes_jsonl(tmp_path):
    import json

    trace = tmp_path / "t.jsonl"
    r = cove("run", "--trace", str(trace), "--", "/bin/busybox", "echo", "hi")
    assert r.returncode == 0 and r.stdout == "hi\n"
    recs = [json.loads(line) for line in trace.read_text().splitlines()]
    assert any(rec["syscall"] == "write" and rec["result"] == 3 for rec in recs)
    assert all({"pid", "tid", "syscall", "args", "result", "us"} <= rec.keys() for rec in recs)


@needs_kvm
def test_timeout_kills_a_spinning_guest():
    r = cove("run", "--timeout", "1", "--", "/bin/busybox", "sh", "-c", "while :; do :; done")
    assert r.returncode == 124
    assert "timeout" in one_line(r)


@needs_kvm
@pytest.mark.timeout(120)
def test_sigint_stops_a_fork_bomb_cleanly():
    """The sandbox stays responsive: Ctrl-C ends a fork bomb, the CLI exits 130."""
    import signal
    import time

    p = subprocess.Popen([sys.executable, "-m", "cove.cli", "run", "--memory", "512M", "--",
                          "/bin/busybox", "sh", "-c", "f() { f | f & }; f; sleep 100"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    time.sleep(3)
    p.send_signal(signal.SIGINT)
    try:
        _, err = p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        raise AssertionError("cove did not exit within 30 s of SIGINT") from None
    assert p.returncode == 130, err
    assert "Traceback" not in err


@needs_kvm
def test_verbose_names_the_platform():
    r = cove("run", "--verbose", "--", "/bin/busybox", "true")
    assert r.returncode == 0
    assert "cove: platform kvm" in r.stderr


def test_syscalls_table_is_honest():
    r = cove("syscalls")
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert any(line.split()[1:3] == ["openat", "full"] for line in lines if line.strip())
    assert any(line.split()[1:3] == ["kexec_load", "missing"] for line in lines if line.strip())
    counts = dict(part.split(": ") for part in lines[-1].split(", "))
    assert int(counts["full"]) > 150 and int(counts["missing"]) > 0


@pytest.mark.parametrize("how", ["launcher", "-m cove", "-m cove.cli"])
def test_every_way_to_start_cove_writes_all_its_output(how):
    """The command leaves without the interpreter's shutdown (os._exit): what
    Python buffers must be written first, with block-buffered stdout too."""
    launcher = os.path.join(os.path.dirname(sys.executable), "cove")
    if how == "launcher" and not os.path.exists(launcher):
        pytest.skip(f"no {launcher}: cove is not installed into this interpreter's environment")
    argv = {"launcher": [launcher], "-m cove": [sys.executable, "-m", "cove"],
            "-m cove.cli": [sys.executable, "-m", "cove.cli"]}[how]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    r = subprocess.run([*argv, "syscalls"], capture_output=True, text=True, env=env,
                       stdin=subprocess.DEVNULL, timeout=60)
    assert r.returncode == 0 and r.stdout.splitlines()[-1].startswith("full: "), r.stderr
    r = subprocess.run([*argv, "--nope"], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 2 and "unrecognized arguments: --nope" in r.stderr


@needs_kvm
@pytest.mark.parametrize("closed", [">&-", "2>&-"])
def test_a_closed_stdout_or_stderr_keeps_the_guests_status(closed):
    """Python starts with sys.stdout (or stderr) None when that fd is closed: the
    command's exit must not trip over it."""
    r = subprocess.run(["sh", "-c", f"{sys.executable} -m cove run -- /bin/sh -c 'exit 3' "
                                    f"{closed}"], capture_output=True, text=True, timeout=60,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 3 and "Traceback" not in r.stderr, r.stderr
