"""End-to-end: C guests exercising the file-system syscalls, run in cove.

The same programs pass natively on Linux (test_native_linux_agrees runs
them in a private tmpfs when the host allows it), so every assertion inside
them is a fact about Linux, not about cove."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.conftest import needs_kvm

GUESTS = ["fs_files", "fs_dirs"]
USER = (1000, 1000)  # fs_perm runs unprivileged


@needs_kvm
@pytest.mark.timeout(180)
@pytest.mark.parametrize("pie", [False, True], ids=["static", "static-pie"])
@pytest.mark.parametrize("name", GUESTS)
def test_fs_guest_in_cove(build_guest, cove_run, name, pie):
    exe = build_guest(name, pie=pie)
    r = cove_run([f"/guests/{exe.name}"])
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"ok\n"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", GUESTS)
def test_native_linux_agrees(build_guest, name):
    """The guests' expectations hold on the host kernel itself."""
    if shutil.which("unshare") is None or not os.path.isdir("/mnt"):
        pytest.skip("needs unshare(1)")
    exe = build_guest(name)
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("cannot make a private mount namespace here")
    # In a private mount namespace: the binary is copied to a fresh tmpfs on
    # /mnt, then /tmp becomes an empty tmpfs, as in the sandbox.
    script = (f"mount -t tmpfs none /mnt && cp {exe} /mnt/guest && "
              "mount -t tmpfs none /tmp && exec /mnt/guest")
    r = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, timeout=50)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"ok\n"


@needs_kvm
@pytest.mark.timeout(180)
def test_fs_perm_guest_in_cove(build_guest, cove_run, tmp_path):
    exe = build_guest("fs_perm")
    # pytest's directories are 0700 and cove shows host modes as they are: give
    # the unprivileged guest a directory it may search.
    pub = tmp_path / "pub"
    pub.mkdir()
    pub.chmod(0o755)
    shutil.copy(exe, pub / "fs_perm")
    r = cove_run(["/pub/fs_perm"], user=USER, mounts=(f"{pub}:/pub",))
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"ok\n"


@pytest.mark.timeout(60)
def test_fs_perm_native_linux_agrees(build_guest):
    if shutil.which("unshare") is None or shutil.which("setpriv") is None \
            or not os.path.isdir("/mnt") or os.geteuid() != 0:
        pytest.skip("needs root, unshare(1) and setpriv(1)")
    exe = build_guest("fs_perm")
    script = (f"mount -t tmpfs -o mode=1777 none /mnt && cp {exe} /mnt/guest && "
              "mount -t tmpfs -o mode=1777 none /tmp && "
              f"exec setpriv --reuid={USER[0]} --regid={USER[1]} --clear-groups /mnt/guest")
    r = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, timeout=50)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"ok\n"
