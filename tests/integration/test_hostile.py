"""A hostile guest: every syscall number with garbage arguments. The guest may
die of its own signals; the supervisor must survive, keep answering, never log
an internal error (a handler raising anything but Errno), and never show the
guest anything but errnos and signals."""

from __future__ import annotations

import logging
import os

import pytest

from tests.conftest import needs_kvm

pytestmark = [needs_kvm, pytest.mark.timeout(1200)]


def test_garbage_syscalls_never_hurt_the_supervisor(build_guest, guest_dir, caplog):
    from cove.rootfs import MountSpec
    from cove.sandbox import Sandbox, SandboxConfig

    exe = build_guest("hostile")
    sb = Sandbox(config=SandboxConfig(memory="128M"),
                 mounts=(MountSpec(str(guest_dir), "/guests"),))
    caplog.set_level(logging.ERROR, logger="cove")
    deaths = 0
    # One sandbox run per syscall number: a guest that closes its own stdout or
    # dies of a signal cannot hide what happened to the next number.
    for nr in range(451):
        devnull = os.open(os.devnull, os.O_RDONLY)
        try:
            r = sb.run([f"/guests/{exe.name}", str(nr), str(nr + 1)], capture_output=True,
                       stdin=devnull)
        finally:
            os.close(devnull)
        text = (r.stdout + r.stderr).decode(errors="replace")
        assert "Traceback" not in text, (nr, text[-800:])
        assert r.returncode == 0 or r.returncode > 128, (nr, r.returncode, text[-500:])
        deaths += r.returncode != 0
        errors = [rec.getMessage() for rec in caplog.records if rec.levelno >= logging.ERROR]
        assert not errors, (nr, errors[0][-1500:])
    # The sandbox still works after all that.
    r = sb.run(["/bin/busybox", "echo", "alive"], capture_output=True)
    assert r.stdout == b"alive\n"
