"""Pipes on every platform, and the userland platform's native pipe path
(cove.kernel.hostpipe, cove.platform.userland.fastpath): the same guests and
assertions on kvm (cove's own pipes) and userland (host-backed pipes whose
read/write run in the host kernel when they can)."""

from __future__ import annotations

import hashlib
import io
import os

import pytest

from tests.conftest import needs_kvm

pytestmark = [needs_kvm, pytest.mark.timeout(180)]


@pytest.mark.parametrize("pie", [False, True], ids=["static", "static-pie"])
def test_pipe_semantics_guest(build_guest, cove_run, pie):
    exe = build_guest("pipe_native", pie=pie)
    r = cove_run([f"/guests/{exe.name}"])
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"ok\n"


def test_pipe_escape_guest(build_guest, cove_run):
    """EFAULT for buffers in the stub's pages or nowhere, nothing moved, no
    byte of the pipe in the stub; the stub's fd number is the guest's."""
    exe = build_guest("pipe_escape")
    r = cove_run([f"/guests/{exe.name}"])
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"ok\n"


def test_64_mb_through_a_shell_pipeline(cove_run):
    r = cove_run(["/bin/busybox", "sh", "-c",
                  "busybox dd if=/dev/zero bs=65536 count=1024 2>/dev/null | busybox md5sum"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[0].decode() == hashlib.md5(bytes(64 << 20)).hexdigest()


def test_dev_zero_reads_are_never_cut_short_by_preemption(cove_run):
    # Linux's read_zero stops at a page when a signal is pending; the userland
    # platform's preemption (PTRACE_INTERRUPT) must never show through as a short
    # read: dd would count a partial record and copy less. (Caught 1 run in 5
    # with 64 KiB native reads; the loop makes a miss unlikely.) Any platform
    # must copy every byte.
    script = ("i=0; while [ $i -lt 4 ]; do "
              "busybox dd if=/dev/zero bs=65536 count=1024 2>/dev/null | busybox md5sum; "
              "i=$((i+1)); done")
    r = cove_run(["/bin/busybox", "sh", "-c", script])
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[::2] == [hashlib.md5(bytes(64 << 20)).hexdigest().encode()] * 4


def _boot_and_run(guest_dir, argv, trace=None):
    from cove.rootfs import MountSpec
    from cove.sandbox import Sandbox, SandboxConfig

    sb = Sandbox(config=SandboxConfig(memory="256M"),
                 mounts=(MountSpec(str(guest_dir), "/guests"),))
    null = os.open(os.devnull, os.O_RDWR)
    try:
        kernel = sb.boot(argv, stdio=(null, null, null), trace=trace)
        try:
            status = kernel.run()
            return status, kernel
        finally:
            kernel.shutdown()
    finally:
        os.close(null)


def test_the_native_path_is_taken_on_userland(build_guest, guest_dir, cove_platform):
    """The semantics guest really ran its pipe I/O natively on userland (so
    its assertions tested that path), and never on kvm."""
    exe = build_guest("pipe_native")
    status, kernel = _boot_and_run(guest_dir, [f"/guests/{exe.name}"])
    assert status == 0
    caps = kernel.platform.capabilities
    if cove_platform == "userland":
        assert caps.native_pipes
        # big_transfer alone moves 8 MB in pieces of at most 70 KB.
        assert kernel.platform.fastpath.native_calls > 200
    else:
        assert not caps.native_pipes


def test_trace_sees_every_pipe_call(build_guest, guest_dir, cove_platform):
    """--trace records every syscall: nothing runs natively then."""
    exe = build_guest("pipe_native")
    out = io.StringIO()
    status, kernel = _boot_and_run(guest_dir, [f"/guests/{exe.name}"], trace=out)
    assert status == 0
    if cove_platform == "userland":
        assert kernel.platform.fastpath.native_calls == 0
    assert out.getvalue().count('"syscall": "read"') > 500


def test_a_live_guest_with_pipes_snapshots_on_kvm_and_is_refused_on_userland(cove_platform):
    """Snapshots of a live userland guest are refused by name, before any host
    pipe is looked at, and the sandbox carries on; on kvm the pipe travels."""
    from cove import Sandbox, SandboxConfig, SnapshotNotSupported

    with Sandbox(config=SandboxConfig(memory="256M")) as sb:
        # Two cats joined by a pipe, both waiting for stdin.
        assert sb.warm_up(["/bin/busybox", "sh", "-c", "busybox cat | busybox cat"]) is None
        if cove_platform == "userland":
            with pytest.raises(SnapshotNotSupported, match="userland"):
                sb.snapshot()
        else:  # kvm: the pipeline's cove pipe travels in the snapshot and works after
            snap = sb.snapshot()
            with Sandbox.from_snapshot(snap) as clone:
                p = clone.attach()
                p.stdin.write(b"through the pipe\n")
                p.stdin.flush()
                assert p.stdout.readline() == b"through the pipe\n"
                p.stdin.close()
                assert p.wait() == 0
    with Sandbox(config=SandboxConfig(memory="256M")) as sb:
        r = sb.run(["/bin/busybox", "sh", "-c", "echo fine | busybox cat"], capture_output=True)
        assert r.stdout == b"fine\n"
