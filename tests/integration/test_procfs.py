"""/proc end to end: busybox applets and a C guest reading their own /proc in
kvm sandboxes. Every pid they see is the sandbox's; the host's never shows."""

from __future__ import annotations

import os
import re

import pytest

from tests.conftest import needs_kvm

BUSYBOX = "/bin/busybox"
pytestmark = [
    needs_kvm,
    pytest.mark.timeout(180),
    pytest.mark.skipif(not os.path.exists(BUSYBOX), reason="needs busybox-static"),
]


def sh(cove_run, script: str) -> str:
    r = cove_run([BUSYBOX, "sh", "-c", script])
    assert r.returncode == 0, (script, r.returncode, r.stderr)
    return r.stdout.decode()


def test_cat_proc_self_status(cove_run):
    out = sh(cove_run, "echo $$; exec /bin/busybox cat /proc/self/status")
    shell_pid, status = out.split("\n", 1)
    fields = dict(line.split(":\t", 1) for line in status.splitlines())
    assert fields["Name"] == "busybox"  # the name exec'd, as Linux
    # exec keeps the pid: the shell's pid is cat's, and init's parent is 0
    assert fields["Pid"] == fields["Tgid"] == shell_pid == "1"
    assert fields["PPid"] == "0"
    assert fields["State"] == "R (running)"
    assert fields["Uid"] == "0\t0\t0\t0"
    assert int(fields["VmRSS"].split()[0]) > 0
    for key in ("Umask", "SigBlk", "SigCgt", "CapEff", "NoNewPrivs", "Seccomp",
                "voluntary_ctxt_switches", "FDSize", "Threads", "VmPeak", "VmSize"):
        assert key in fields, key


def test_ls_l_proc_self_fd(cove_run):
    out = sh(cove_run, "exec 5</etc/passwd 6>/tmp/out 7<>/tmp/out; "
                       "/bin/busybox ls -l /proc/self/fd/")
    links = {}
    for line in out.splitlines():
        m = re.match(r"^(l[-rwx]{9}) .* (\d+) -> (.*)$", line)
        if m:
            links[m.group(2)] = (m.group(1), m.group(3))
    assert links["5"] == ("lr-x------", "/etc/passwd")
    assert links["6"] == ("l-wx------", "/tmp/out")
    assert links["7"] == ("lrwx------", "/tmp/out")
    assert links["0"][1] == "/dev/null"


def test_pipe_and_deleted_file_names(cove_run):
    out = sh(cove_run, "exec 4>/tmp/gone; /bin/busybox rm /tmp/gone; "
                       "/bin/busybox readlink /proc/self/fd/4; "
                       "/bin/busybox readlink /proc/self/fd/0 | /bin/busybox cat; "
                       "echo x | /bin/busybox readlink /proc/self/fd/0")
    lines = out.splitlines()
    assert lines[0] == "/tmp/gone (deleted)"
    assert lines[1] == "/dev/null"
    assert re.fullmatch(r"pipe:\[\d+\]", lines[2])


def test_readlink_proc_self_exe_after_exec(cove_run):
    out = sh(cove_run, "/bin/busybox readlink /proc/$$/exe; "
                       "exec /bin/busybox readlink /proc/self/exe")
    shell_exe, after = out.splitlines()
    real = os.path.realpath(BUSYBOX)
    assert shell_exe == real and after == real
    # A program started through a symlink shows the file itself; cwd follows chdir.
    out = sh(cove_run, "/bin/busybox ln -s /bin/busybox /tmp/readlink; cd /tmp; "
                       "/tmp/readlink /proc/self/exe; ./readlink /proc/self/cwd")
    assert out.split() == [real, "/tmp"]


def test_ps_lists_sandbox_pids_only(cove_run):
    out = sh(cove_run, "/bin/busybox sleep 5 & /bin/busybox sleep 5 & "
                       "/bin/busybox ps -o pid,ppid,comm; kill %1 %2")
    rows = [line.split() for line in out.splitlines()[1:]]
    pids = {int(r[0]) for r in rows}
    assert 1 in pids and len(pids) == 4  # sh, two sleeps, ps
    assert max(pids) < 100
    assert all(int(r[1]) in pids | {0} for r in rows)
    assert os.getpid() not in pids and os.getppid() not in pids
    assert next(r for r in rows if r[0] == "1")[1] == "0"


def test_top_level_files(cove_run):
    out = sh(cove_run, "/bin/busybox cat /proc/meminfo /proc/uptime /proc/loadavg /proc/stat "
                       "/proc/version /proc/sys/kernel/osrelease /proc/sys/kernel/hostname; "
                       "/bin/busybox grep -c ^processor /proc/cpuinfo; /bin/busybox uname -r")
    assert re.search(r"^MemTotal: +524288 kB$", out, re.M)  # the sandbox's 512M
    assert re.search(r"^cpu0 ", out, re.M) and not re.search(r"^cpu1 ", out, re.M)
    assert re.search(r"^btime \d+$", out, re.M)
    lines = out.splitlines()
    assert lines[-1] == lines[-4]  # uname -r == /proc/sys/kernel/osrelease
    assert lines[-2] == "1"  # one processor
    assert lines[-3] == "cove"  # the sandbox's hostname
    up = float(next(ln for ln in lines if re.fullmatch(r"[\d.]+ [\d.]+", ln)).split()[0])
    assert up < 120  # since the sandbox booted, not the host


def test_comm_write_from_the_shell(cove_run):
    out = sh(cove_run, "printf renamed > /proc/self/comm; /bin/busybox cat /proc/$$/comm; "
                       "/bin/busybox ps -o pid,comm | /bin/busybox grep '^ *1 '")
    assert out.splitlines()[0] == "renamed"
    assert "renamed" in out.splitlines()[-1]


@pytest.mark.parametrize("pie", [False, True], ids=["static", "static-pie"])
def test_c_guest_reads_its_own_proc(build_guest, cove_run, pie):
    exe = build_guest("proc_self", pie=pie)
    r = cove_run([f"/guests/{exe.name}", str(os.getpid()), str(os.getppid())])
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == b"ok\n"


def test_c_guest_check_can_fail(build_guest, cove_run):
    """The guest's host-pid scan is real: told that pid 1 is the host's, it fails."""
    exe = build_guest("proc_self")
    r = cove_run([f"/guests/{exe.name}", "1", "1"])
    assert r.returncode == 1
    assert b"host pid as an entry name: /proc/1" in r.stderr
