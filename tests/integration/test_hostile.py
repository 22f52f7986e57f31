"""A hostile guest: every syscall number with garbage arguments. The guest may
die of its own signals; the supervisor must survive, keep answering, and never
show the guest anything but errnos and signals."""

from __future__ import annotations

import pytest

from tests.conftest import needs_kvm

pytestmark = [needs_kvm, pytest.mark.timeout(900)]


def test_garbage_syscalls_never_hurt_the_supervisor(build_guest, cove_run):
    exe = build_guest("hostile")
    nr, deaths = 0, 0
    while nr < 451:
        r = cove_run([f"/guests/{exe.name}", str(nr), "451"], memory="256M")
        out = r.stdout.decode(errors="replace")
        assert "Traceback" not in out + r.stderr.decode(errors="replace")
        lines = [ln for ln in out.split() if ln]
        if lines and lines[-1] == "done":
            break
        assert r.returncode > 128 or r.returncode == 0, (nr, r.returncode, r.stderr[-500:])
        tried = int(lines[-1]) if lines else nr
        deaths += 1
        nr = tried + 1
    # The sandbox still works after all that.
    r = cove_run(["/bin/busybox", "echo", "alive"])
    assert r.stdout == b"alive\n"
