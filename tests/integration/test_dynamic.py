"""Dynamically linked programs from the host rootfs, unmodified, with cove
answering every syscall: shells, python3, sqlite3, perl, lua. Where it makes
sense the output is compared with the same command run on the host."""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap

import pytest

from tests.conftest import needs_kvm

pytestmark = [needs_kvm, pytest.mark.timeout(300)]


def need(*programs: str) -> None:
    for p in programs:
        if not os.path.exists(p):
            pytest.skip(f"{p} is not installed on this host")


@pytest.fixture
def sb():
    from cove.sandbox import Sandbox, SandboxConfig

    return Sandbox(config=SandboxConfig(memory="1G", timeout=200))


def run(sb, argv: list[str], stdin: bytes | None = None):
    r_fd = None
    if stdin is not None:
        r_fd, w_fd = os.pipe()
        os.write(w_fd, stdin)
        os.close(w_fd)
    else:
        r_fd = os.open(os.devnull, os.O_RDONLY)
    try:
        return sb.run(argv, capture_output=True, stdin=r_fd)
    finally:
        os.close(r_fd)


def host(argv: list[str], cwd: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, cwd=cwd, stdin=subprocess.DEVNULL,
                          env={"PATH": "/usr/bin:/bin", "HOME": "/root"})


def test_sh_pipeline(sb):
    need("/bin/sh")
    r = run(sb, ["/bin/sh", "-c", "for i in 1 2 3; do echo $i; done | sort -r | head -n 2"])
    assert (r.returncode, r.stdout) == (0, b"3\n2\n"), r.stderr


BASH_SCRIPT = textwrap.dedent(r"""
    set -u
    cleanup() { echo "trap: exit $?"; }
    trap cleanup EXIT
    greet() { local who=$1; echo "hello $who"; }
    greet world
    x=$(greet "from a substitution" | tr a-z A-Z)
    echo "$x"
    ( cd /tmp && echo "subshell in $(pwd)"; exit 3 ); echo "subshell status $?"
    cat <<EOF
    here-doc with $((6 * 7)) and ${HOME:-none}
    EOF
    f=/tmp/out.$$
    { echo to-stdout; echo to-stderr >&2; } 2>&1 >"$f" | sed 's/^/piped: /'
    echo "file: $(cat "$f")"
    sleep 0.2 & a=$!
    (echo background; exit 5) & b=$!
    wait $a; echo "wait a: $?"
    wait $b; echo "wait b: $?"
    for i in 1 2 3; do printf '%s-' "$i"; done; echo
    arr=(one two three); echo "${#arr[@]} ${arr[1]}"
    echo "$((2 ** 10))" | while read -r n; do echo "read $n"; done
    exit 4
""").lstrip()


def test_bash_script_matches_the_host(sb, tmp_path):
    need("/bin/bash")
    script = tmp_path / "s.sh"
    script.write_text(BASH_SCRIPT)
    want = host(["/bin/bash", str(script)])
    r = run(sb, ["/bin/bash", "-c", BASH_SCRIPT])
    normalize = lambda b: b.replace(str(os.getpid()).encode(), b"PID")  # noqa: E731
    assert r.returncode == want.returncode == 4, r.stderr
    assert r.stdout.splitlines() == want.stdout.splitlines()
    assert normalize(r.stderr) == normalize(want.stderr)


PY_PROGRAM = textwrap.dedent("""
    import subprocess, json, sqlite3, hashlib, threading
    out = subprocess.run(["echo", "round trip"], capture_output=True, text=True).stdout
    db = sqlite3.connect(":memory:")
    db.execute("create table t(k text, v int)")
    db.executemany("insert into t values (?, ?)", [("a", 1), ("b", 2), ("c", 3)])
    total = db.execute("select sum(v) from t").fetchone()[0]
    results = {}
    def work(i):
        results[i] = hashlib.sha256(str(i).encode()).hexdigest()[:12]
    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    print(json.dumps({"sub": out, "sum": total, "hashes": results}, sort_keys=True))
""")


def test_python3_program_matches_the_host(sb):
    need("/usr/bin/python3")
    want = host(["/usr/bin/python3", "-c", PY_PROGRAM])
    r = run(sb, ["/usr/bin/python3", "-c", PY_PROGRAM])
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    assert r.stdout == want.stdout


def test_python3_modules_as_tools(sb):
    need("/usr/bin/python3")
    r = run(sb, ["/usr/bin/python3", "-m", "json.tool"], stdin=b'{"b": [1, 2], "a": null}')
    assert r.returncode == 0, r.stderr
    assert r.stdout == host(["/usr/bin/python3", "-c",
                             "import json;print(json.dumps({'b':[1,2],'a':None},indent=4))"]
                            ).stdout
    # zipfile: create in the overlay, list it back (the sandbox keeps its files).
    r = run(sb, ["/usr/bin/python3", "-m", "zipfile", "-c", "/tmp/a.zip", "/etc/hostname"]
            if os.path.exists("/etc/hostname") else
            ["/usr/bin/python3", "-m", "zipfile", "-c", "/tmp/a.zip", "/etc/passwd"])
    assert r.returncode == 0, r.stderr
    r = run(sb, ["/usr/bin/python3", "-m", "zipfile", "-l", "/tmp/a.zip"])
    assert r.returncode == 0 and b"File Name" in r.stdout, r.stderr


def test_sqlite3_database_persists_in_the_overlay(sb):
    need("/usr/bin/sqlite3")
    r = run(sb, ["/usr/bin/sqlite3", "/root/db.sqlite",
                 "create table t(x); insert into t values (1), (2), (40);"])
    assert r.returncode == 0, r.stderr
    r = run(sb, ["/usr/bin/sqlite3", "/root/db.sqlite", "select sum(x) from t;"])
    assert (r.returncode, r.stdout) == (0, b"43\n"), r.stderr
    assert not _host_has("/root/db.sqlite")  # the host's /root was never written


def _host_has(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return b"SQLite format" in f.read(16)
    except OSError:
        return False


def test_perl_and_lua(sb):
    need("/usr/bin/perl")
    r = run(sb, ["/usr/bin/perl", "-e", 'my %h=(a=>1,b=>2); print join(",", sort keys %h), "\\n"'])
    assert (r.returncode, r.stdout) == (0, b"a,b\n"), r.stderr
    lua = shutil.which("lua5.4") or shutil.which("lua")
    if lua is None:
        pytest.skip("lua is not installed")
    r = run(sb, [lua, "-e", "local t={} for i=1,10 do t[#t+1]=i*i end print(#t, t[10])"])
    assert (r.returncode, r.stdout) == (0, b"10\t100\n"), r.stderr


def test_coreutils(sb):
    need("/bin/ls", "/usr/bin/sort")
    r = run(sb, ["/bin/ls", "-1", "/usr"])
    assert r.returncode == 0 and r.stdout == host(["/bin/ls", "-1", "/usr"]).stdout
    r = run(sb, ["/usr/bin/env"])
    assert b"PATH=" in r.stdout and b"HOME=" in r.stdout
