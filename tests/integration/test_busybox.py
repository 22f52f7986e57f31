"""busybox (static, Debian's busybox-static) applets over files in the sandbox's
overlay. One Sandbox object keeps its filesystem across runs, so each step sees
what the previous one wrote; the host never does."""

from __future__ import annotations

import hashlib
import os
import shutil

import pytest

from tests.conftest import needs_kvm

BUSYBOX = "/bin/busybox"
pytestmark = [
    needs_kvm,
    pytest.mark.timeout(300),
    pytest.mark.skipif(not os.path.exists(BUSYBOX), reason="needs busybox-static"),
]


@pytest.fixture
def sb():
    from cove.sandbox import Sandbox, SandboxConfig

    return Sandbox(config=SandboxConfig(memory="256M"), cwd="/")


def bb(sb, *args: str, ok: bool = True) -> str:
    devnull = os.open(os.devnull, os.O_RDONLY)
    try:
        r = sb.run([BUSYBOX, *args], capture_output=True, stdin=devnull)
    finally:
        os.close(devnull)
    if ok:
        assert r.returncode == 0, (args, r.returncode, r.stderr)
    return r.stdout.decode()


def test_applets_over_the_overlay(sb):
    assert bb(sb, "mkdir", "-p", "/work/a/b/c") == ""
    bb(sb, "sh", "-c", "true")  # a shell starts (no fork needed for `true`)
    assert bb(sb, "echo", "hello") == "hello\n"
    # write files: tee writes its stdin... use cp of a host file instead
    bb(sb, "cp", "/etc/hostname" if os.path.exists("/etc/hostname") else "/etc/passwd",
       "/work/a/h")
    bb(sb, "cp", "/etc/passwd", "/work/a/passwd")
    assert bb(sb, "cat", "/work/a/passwd") == open("/etc/passwd").read()
    lines = open("/etc/passwd").read().splitlines()
    assert bb(sb, "wc", "-l", "/work/a/passwd").split()[0] == str(len(lines))
    assert bb(sb, "sort", "/work/a/passwd").splitlines() == sorted(lines)
    assert bb(sb, "head", "-n", "2", "/work/a/passwd").splitlines() == lines[:2]
    assert bb(sb, "tail", "-n", "1", "/work/a/passwd").splitlines() == lines[-1:]
    want = hashlib.sha256(open("/etc/passwd", "rb").read()).hexdigest()
    assert bb(sb, "sha256sum", "/work/a/passwd").split()[0] == want
    assert bb(sb, "grep", "-c", "root", "/work/a/passwd").strip() == str(
        sum("root" in ln for ln in lines))
    assert bb(sb, "sed", "-n", "1p", "/work/a/passwd").strip() == lines[0]
    assert bb(sb, "awk", "-F:", "NR==1{print $1}", "/work/a/passwd").strip() == \
        lines[0].split(":")[0]
    uniq_in = "/work/a/dups"
    bb(sb, "sh", "-c", f"echo x > {uniq_in}; echo x >> {uniq_in}; echo y >> {uniq_in}")
    assert bb(sb, "uniq", uniq_in) == "x\ny\n"
    bb(sb, "touch", "/work/a/b/c/empty")
    assert "empty" in bb(sb, "ls", "-la", "/work/a/b/c")
    assert bb(sb, "stat", "-c", "%s %F", "/work/a/b/c/empty").strip() == "0 regular empty file"
    assert "/work/a/b/c/empty" in bb(sb, "find", "/work", "-name", "empty")
    bb(sb, "tar", "cf", "/work/t.tar", "-C", "/work", "a")
    bb(sb, "mkdir", "/work/x")
    bb(sb, "tar", "xf", "/work/t.tar", "-C", "/work/x")
    assert bb(sb, "cat", "/work/x/a/passwd") == open("/etc/passwd").read()
    bb(sb, "cp", "-a", "/work/x/a", "/work/copy")
    bb(sb, "mv", "/work/copy", "/work/moved")
    assert bb(sb, "cat", "/work/moved/passwd") == open("/etc/passwd").read()
    bb(sb, "rm", "-r", "/work/moved")
    assert "moved" not in bb(sb, "ls", "/work")
    assert bb(sb, "date", "+%Y").strip().isdigit()
    bb(sb, "sleep", "0.1")
    # None of it reached the host.
    assert not os.path.exists("/work/a") and not os.path.exists("/work/t.tar")


def test_missing_file_errors_like_busybox(sb):
    devnull = os.open(os.devnull, os.O_RDONLY)
    try:
        r = sb.run([BUSYBOX, "cat", "/nope"], capture_output=True, stdin=devnull)
    finally:
        os.close(devnull)
    assert (r.returncode, r.stdout) == (1, b"")
    assert r.stderr == b"cat: can't open '/nope': No such file or directory\n"


def test_host_busybox_matches(sb):
    """The same pipeline-free command gives the same bytes inside and outside."""
    host = shutil.which("busybox") or BUSYBOX
    import subprocess

    want = subprocess.run([host, "ls", "-1", "/usr"], capture_output=True).stdout.decode()
    assert bb(sb, "ls", "-1", "/usr") == want
