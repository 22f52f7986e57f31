"""End-to-end: fork, vfork, exec, wait, zombies and fork bombs in C guests run in cove."""

from __future__ import annotations

import pytest

from tests.conftest import needs_kvm

pytestmark = [needs_kvm, pytest.mark.timeout(300)]


@pytest.mark.parametrize("pie", [False, True], ids=["static", "static-pie"])
def test_fork_wait_guest(build_guest, cove_run, pie):
    exe = build_guest("proc_fork", pie=pie)
    r = cove_run([f"/guests/{exe.name}", "200"])
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"ok\n"


def test_thousand_zombies_are_reaped(build_guest, cove_run):
    exe = build_guest("proc_fork")
    r = cove_run([f"/guests/{exe.name}", "1000"])
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"ok\n"


@pytest.mark.parametrize("pie", [False, True], ids=["static", "static-pie"])
def test_exec_guest(build_guest, cove_run, pie):
    exe = build_guest("proc_exec", pie=pie)
    r = cove_run([f"/guests/{exe.name}"])
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"ok\n"


def test_fork_bomb_tree(build_guest, cove_run):
    exe = build_guest("proc_bomb")
    r = cove_run([f"/guests/{exe.name}", "tree", "7"])
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"ok 255\n"


def test_fork_bomb_stops_at_rlimit_nproc(build_guest, cove_run):
    exe = build_guest("proc_bomb")
    r = cove_run([f"/guests/{exe.name}", "limit", "100"])  # drops to uid 1000 itself
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"ok 99\n"


def test_busybox_shell_pipeline_and_subshell(cove_run):
    r = cove_run(["/bin/busybox", "sh", "-c",
                  "x=$(echo sub); (exit 3); echo \"$x $?\"; /bin/busybox true && echo yes"])
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"sub 3\nyes\n"
