"""Several guest threads in the guest at once (``COVE_CPUS``, userland only;
experimental, see docs/userland-pipes.md): the same programs give the same
answers as with one, including the races the concurrent loop opens: a
sibling still running while another thread forks or unmaps, a pipe's reader
and writer in the host at once, signals for a thread that is running."""

from __future__ import annotations

import pytest

import cove.kernel.kernel as kernel_mod

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(autouse=True)
def two_cpus(cove_platform: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if cove_platform != "userland":
        pytest.skip("only the userland platform runs several guest threads at once")
    monkeypatch.setattr(kernel_mod, "CPUS", 2)


@pytest.mark.parametrize("mode", ["pingpong", "devices"])
def test_pipe_between_processes_moves_every_byte(build_guest, cove_run, mode):
    exe = build_guest("pipe_stream")  # checksums what went through
    r = cove_run([f"/guests/{exe.name}", mode, "512"])
    assert (r.returncode, r.stdout) == (0, b"ok\n"), r.stderr


def test_siblings_keep_running_through_fork_and_munmap(build_guest, cove_run):
    exe = build_guest("cow_race")
    r = cove_run([f"/guests/{exe.name}"])
    assert (r.returncode, r.stdout) == (0, b"ok\n"), r.stdout + r.stderr


def test_many_short_lived_processes(build_guest, cove_run):
    exe = build_guest("zombies10k")
    r = cove_run([f"/guests/{exe.name}", "1000"])
    assert (r.returncode, r.stdout) == (0, b"made 1000 reaped 1000\n"), r.stderr


def test_fork_bomb_stops_at_rlimit_nproc(build_guest, cove_run):
    exe = build_guest("proc_bomb")
    r = cove_run([f"/guests/{exe.name}", "limit", "100"])
    assert (r.returncode, r.stdout) == (0, b"ok 99\n"), r.stderr


def test_a_spinning_thread_takes_a_signal(cove_run):
    # The loop makes no syscall: only the kick (PTRACE_INTERRUPT) gets it out.
    r = cove_run(["/bin/busybox", "sh", "-c",
                  "(trap 'echo got; exit 3' USR1; while :; do :; done) & "
                  "p=$!; sleep 0.2; kill -USR1 $p; wait $p; echo $?"])
    assert (r.returncode, r.stdout) == (0, b"got\n3\n"), r.stderr


def test_shell_pipeline_and_job_control(cove_run):
    r = cove_run(["/bin/busybox", "sh", "-c",
                  "seq 1 20000 | busybox sort -rn | busybox head -3; "
                  "busybox dd if=/dev/zero bs=65536 count=64 2>/dev/null | busybox wc -c"])
    assert (r.returncode, r.stdout) == (0, b"20000\n19999\n19998\n4194304\n"), r.stderr


def test_kicks_work_from_a_thread_that_does_not_own_ptrace(kernel_run):
    """kernel.run() on the caller's own thread (not the platform's tracer
    thread, as Sandbox.run uses): the kick that takes a spinning thread out
    of the guest must still reach it (ptrace requests only work from the
    tracer thread)."""
    r = kernel_run(["/bin/busybox", "sh", "-c",
                    "(trap 'echo got; exit 3' USR1; while :; do :; done) & "
                    "p=$!; sleep 0.2; kill -USR1 $p; wait $p; echo $?"],
                   platform="userland", timeout=60)
    assert (r.status, r.output) == (0, b"got\n3\n")


def test_cove_cpus_is_read_leniently():
    # A mistyped value runs the default rather than failing every start.
    from cove.kernel.kernel import DEFAULT_CPUS, _cpus

    d = DEFAULT_CPUS
    assert [_cpus(v) for v in ("2", "8", "1", "0", "", "-3", "two", " 2")] == \
        [2, 8, 1, 1, d, d, d, d]
