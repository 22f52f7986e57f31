"""End-to-end: C guests using pipes, FIFOs, poll/select and eventfd, run in cove."""

from __future__ import annotations

import fcntl
import os
import struct
import termios
import threading

import pytest

from tests.conftest import needs_kvm

pytestmark = [needs_kvm, pytest.mark.timeout(120)]


@pytest.mark.parametrize("pie", [False, True], ids=["static", "static-pie"])
def test_io_pipes_guest(build_guest, cove_run, pie):
    exe = build_guest("io_pipes", pie=pie)
    r = cove_run([f"/guests/{exe.name}"])
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"ok\n"


def test_io_fork_guest(build_guest, cove_run):
    exe = build_guest("io_fork")
    r = cove_run([f"/guests/{exe.name}"])
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"ok\n"


def test_shell_pipeline(cove_run):
    r = cove_run(["/bin/busybox", "sh", "-c",
                  "echo one two three | /bin/busybox tr a-z A-Z | /bin/busybox wc -w"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == b"3"


def test_terminal_guest_over_a_pty(build_guest, guest_dir):
    """A real pty as stdin/stdout/stderr: isatty, ttyname, tcgetpgrp, window
    size, raw mode, a blocking read that does not block the sandbox; and the
    host terminal's mode comes back when the sandbox ends."""
    from cove.rootfs import MountSpec
    from cove.sandbox import Sandbox, SandboxConfig

    exe = build_guest("io_tty")
    master, slave = os.openpty()
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 99, 0, 0))
    original = termios.tcgetattr(slave)
    seen = bytearray()

    def terminal_user() -> None:
        while b"ready" not in seen:
            seen.extend(os.read(master, 100))
        os.write(master, b"typed\r")
        while b"got:" not in seen or not seen.endswith(b"\n"):
            try:
                chunk = os.read(master, 100)
            except OSError:
                return
            if not chunk:
                return
            seen.extend(chunk)

    user = threading.Thread(target=terminal_user, daemon=True)
    user.start()
    try:
        sb = Sandbox(config=SandboxConfig(memory="256M"),
                     mounts=(MountSpec(str(guest_dir), "/guests"),))
        kernel = sb.boot([f"/guests/{exe.name}"], stdio=(slave, slave, slave))
        try:
            status = kernel.run()
        finally:
            kernel.shutdown()
        user.join(10)
        assert status == 0, bytes(seen)
        assert b"got:typed" in seen
        assert termios.tcgetattr(slave) == original
    finally:
        os.close(master)
        os.close(slave)
