"""The escape suite on the userland platform (issue 5): a guest with raw
syscalls tries every denied call, the host's files by every route, fds it was
never given, ptrace, and cove's own stub pages; nothing gets out and the
supervisor survives. The guest counts its own breaches (tests/guests/escape.c);
the host checks what the guest cannot see."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

try:
    from cove.platform.userland import userland_unavailable_reason

    _REASON = userland_unavailable_reason()
except Exception as e:  # pragma: no cover
    _REASON = f"userland platform not importable: {e}"

pytestmark = [pytest.mark.timeout(300),
              pytest.mark.skipif(_REASON is not None, reason=f"userland: {_REASON}")]


def _tracer_pid() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("TracerPid:"):
            return int(line.split()[1])
    return -1


def test_nothing_gets_out(build_guest, tmp_path):
    from cove.sandbox import Sandbox, SandboxConfig

    exe = build_guest("escape")
    root = tmp_path / "root"
    for d in ("guests", "tmp", "proc", "dev"):
        (root / d).mkdir(parents=True)
    shutil.copy(exe, root / "guests" / "escape")
    host = tmp_path / "host"
    host.mkdir()
    secret = host / "secret"
    secret.write_text("cove-secret: the sandbox must never read this\n")
    empty = host / "empty"
    empty.mkdir()
    before = secret.stat()

    sb = Sandbox(rootfs=str(root), config=SandboxConfig(memory="256M", platform="userland",
                                                        timeout=200))
    r = sb.run(["/guests/escape", str(secret), str(empty), str(os.getpid())],
               capture_output=True)
    out = r.stdout.decode(errors="replace")
    assert "done" in out, (r.returncode, out[-2000:], r.stderr[-2000:])
    assert r.returncode == 0, out
    # What the guest cannot check itself.
    assert list(empty.iterdir()) == [], "nothing was created in the host directory"
    after = secret.stat()
    assert (after.st_mtime_ns, after.st_size) == (before.st_mtime_ns, before.st_size)
    assert _tracer_pid() == 0, "nobody ptrace-attached the supervisor"
    # ... and the supervisor and the platform carry on.
    r = sb.run(["/guests/escape"], capture_output=True)
    assert r.returncode == 100
