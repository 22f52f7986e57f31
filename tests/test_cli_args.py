"""cove.cli_args.fast_parse gives argparse's namespace or declines; never a
different reading of a command line."""

from __future__ import annotations

import itertools
import subprocess
import sys
from typing import Any

import pytest

from cove.cli import _parser
from cove.cli_args import fast_parse

COMMON = [
    ["run", "--", "/bin/busybox", "true"],
    ["run", "/bin/true"],
    ["run", "--platform", "userland", "--", "/bin/busybox", "sh", "-c", "exit 3"],
    ["run", "--platform=kvm", "--memory", "256M", "--timeout", "2.5", "--", "python3", "-c",
     "pass"],
    ["--debug", "run", "-v", "--env", "A=1", "--env=B=2", "--mount", "/tmp:/t:ro",
     "--mount", "/srv:/s", "--cwd", "/t", "--user", "1000:1000", "--rootfs", "/r", "--trace",
     "t.jsonl", "prog", "-x", "--platform", "kvm"],
    ["run", "--verbose", "--", "-dash-program", "a"],
    ["run", "--cwd=", "p"],
    ["restore", "py.snap"],
    ["restore", "--timeout", "5", "py.snap", "--trace", "x.jsonl"],
    ["--debug", "--debug", "restore", "--platform=kvm", "s.snap"],
]
# Lines argparse must decide (help, abbreviations, errors, a later "--", other commands).
DECLINED = [
    [], ["--help"], ["run", "--help"], ["run", "-h", "p"], ["run"], ["run", "--"],
    ["run", "--plat", "kvm", "p"], ["run", "--platform", "nope", "p"],
    ["run", "--timeout", "soon", "p"], ["run", "--timeout", "-1", "p"],
    ["run", "--verbose=1", "p"], ["run", "-vv", "p"], ["run", "--cwd"],
    ["run", "--cwd", "--", "p"], ["run", "p", "--", "a"], ["run", "--", "--", "p"],
    ["run", "-x"], ["run", "--debug", "p"], ["restore"], ["restore", "a", "b"],
    ["restore", "--platform", "userland", "s"], ["restore", "--", "s"],
    ["snapshot", "--out", "f", "--", "p"], ["syscalls"], ["bench"], ["--version"],
]


def _argparse(argv: list[str]) -> Any:
    try:
        return vars(_parser().parse_args(argv))
    except SystemExit as e:
        return ("exit", e.code)


@pytest.mark.parametrize("argv", COMMON, ids=" ".join)
def test_common_lines_read_as_argparse_reads_them(argv: list[str],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    fast = fast_parse(argv)
    assert fast is not None, "the fast reader should take this line"
    assert vars(fast) == _argparse(argv)


@pytest.mark.parametrize("argv", DECLINED, ids=lambda a: " ".join(a) or "(empty)")
def test_unusual_lines_are_left_to_argparse(argv: list[str]) -> None:
    assert fast_parse(argv) is None


def test_never_a_different_reading(capsys: pytest.CaptureFixture[str]) -> None:
    # Every short line over a vocabulary of tricky tokens: when the fast reader
    # answers, argparse answers the same.
    words = ["run", "restore", "--", "-v", "--platform", "kvm", "--timeout", "1", "--env",
             "A=1", "p", "-x", "--trace=t"]
    answered = 0
    for n in range(1, 5):
        for argv in itertools.product(words, repeat=n):
            fast = fast_parse(list(argv))
            if fast is not None:
                answered += 1
                assert vars(fast) == _argparse(list(argv)), argv
    assert answered > 300


@pytest.mark.timeout(60)
def test_cove_run_skips_argparse() -> None:
    code = ("import sys\n"
            "from cove.cli import main\n"
            "rc = main(['run', '--', '/bin/busybox', 'true'])\n"
            "print(rc, 'argparse' in sys.modules)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[-2:] == ["0", "False"]


@pytest.mark.timeout(60)
def test_collector_is_on_while_the_guest_runs_and_after() -> None:
    # main() keeps the cyclic collector off only for start-up.
    code = ("import gc, sys\n"
            "import cove.sandbox\n"
            "seen = []\n"
            "real = cove.sandbox.Sandbox.run\n"
            "def run(self, *a, **k):\n"
            "    seen.append(gc.isenabled())\n"
            "    return real(self, *a, **k)\n"
            "cove.sandbox.Sandbox.run = run\n"
            "from cove.cli import main\n"
            "print(gc.isenabled(), main(['run', '--', '/bin/busybox', 'true']), seen,\n"
            "      gc.isenabled())\n"
            "print(main(['run', '--mount', 'nocolon', '--', '/bin/true']), gc.isenabled())\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["True 0 [True] True", "126 True"]
