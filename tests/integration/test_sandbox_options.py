"""What the README promises of the run options: mounts (ro and rw), the
environment, cwd, user and a tar rootfs, each tried from inside a guest."""

from __future__ import annotations

import os
import tarfile

import pytest

from tests.conftest import needs_kvm
from tests.fs.hostdigest import tree_state

BUSYBOX = "/bin/busybox"
pytestmark = [
    needs_kvm,
    pytest.mark.timeout(300),
    pytest.mark.skipif(not os.path.exists(BUSYBOX), reason="needs busybox-static"),
]


def sh(script: str, **kw):
    from cove.sandbox import Sandbox, SandboxConfig

    devnull = os.open(os.devnull, os.O_RDONLY)
    try:
        sb = Sandbox(config=SandboxConfig(memory="256M", timeout=60), **kw)
        return sb.run([BUSYBOX, "sh", "-c", script], capture_output=True, stdin=devnull)
    finally:
        os.close(devnull)


def test_rw_mount_writes_stay_in_the_sandbox(tmp_path):
    from cove.rootfs import MountSpec

    (tmp_path / "data.txt").write_text("original\n")
    before = tree_state(tmp_path)
    r = sh("echo changed > /m/data.txt && echo new > /m/new.txt && cat /m/data.txt /m/new.txt",
           mounts=(MountSpec.parse(f"{tmp_path}:/m:rw"),))
    assert (r.returncode, r.stdout) == (0, b"changed\nnew\n"), r.stderr
    assert tree_state(tmp_path) == before


def test_ro_mount_refuses_writes(tmp_path):
    from cove.rootfs import MountSpec

    (tmp_path / "data.txt").write_text("original\n")
    r = sh("cat /m/data.txt; echo x > /m/data.txt", mounts=(MountSpec.parse(f"{tmp_path}:/m"),))
    assert r.stdout == b"original\n"
    assert r.returncode != 0 and b"Read-only file system" in r.stderr


def test_environment_is_only_what_was_declared(monkeypatch):
    monkeypatch.setenv("COVE_HOST_SECRET", "do-not-leak")
    r = sh("env", env={"FOO": "bar"})
    assert r.returncode == 0
    assert b"FOO=bar\n" in r.stdout and b"PATH=" in r.stdout
    assert b"do-not-leak" not in r.stdout and b"COVE_HOST_SECRET" not in r.stdout


def test_cwd_and_user():
    r = sh("pwd; id -u; id -g; touch /tmp/f && stat -c %u:%g /tmp/f", cwd="/usr", user=(1000, 100))
    assert (r.returncode, r.stdout) == (0, b"/usr\n1000\n100\n1000:100\n"), r.stderr


def test_tar_rootfs(tmp_path):
    archive = tmp_path / "root.tar"
    with tarfile.open(archive, "w") as tf:
        tf.add(BUSYBOX, arcname="bin/busybox")
        info = tarfile.TarInfo("etc/motd")
        data = b"from the tar\n"
        info.size = len(data)
        import io

        tf.addfile(info, io.BytesIO(data))
    r = sh("cat /etc/motd; ls /", rootfs=str(archive))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(b"from the tar\n")
    assert b"usr" not in r.stdout.split()  # nothing of the host's / is there
