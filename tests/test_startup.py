"""Start-up cost guards: modules only some paths need stay out of a plain run.

Each check runs in a fresh interpreter (sys.modules is what is measured).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

# Each of these costs ms at every start and is needed only by a rarer path:
# tar/OCI rootfs, --trace, /proc/sys/kernel/random reads, ASLR layouts.
LAZY = ("tarfile", "json", "uuid", "secrets")


def _py(code: str) -> str:
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


@pytest.mark.timeout(60)
def test_version_needs_no_parser_or_logging() -> None:
    out = _py(
        "import sys\n"
        "from cove.cli import main\n"
        "try:\n"
        "    main(['--version'])\n"
        "except SystemExit as e:\n"
        "    print('exit', e.code)\n"
        "print(sorted(m for m in ('argparse', 'logging', 'cove.sandbox') if m in sys.modules))\n")
    from cove import __version__

    assert out.splitlines() == [f"cove {__version__}", "exit 0", "[]"]


@pytest.mark.timeout(60)
def test_version_output_matches_argparse() -> None:
    # The fast path must say exactly what the parser's --version action says.
    from cove.cli import _parser

    with pytest.raises(SystemExit) as ei:
        _parser().parse_args(["--version", "--debug"])
    assert ei.value.code == 0
    fast = subprocess.run([sys.executable, "-m", "cove.cli", "--version"],
                          capture_output=True, text=True, timeout=60)
    slow = subprocess.run([sys.executable, "-m", "cove.cli", "--debug", "--version"],
                          capture_output=True, text=True, timeout=60)
    assert (fast.returncode, fast.stdout, fast.stderr) == \
        (slow.returncode, slow.stdout, slow.stderr)


@pytest.mark.timeout(120)
def test_plain_run_skips_lazy_modules() -> None:
    out = _py(
        "import sys\n"
        "from cove.sandbox import Sandbox, SandboxConfig\n"
        "sb = Sandbox(config=SandboxConfig())\n"
        "r = sb.run(['/bin/sh', '-c', 'exit 3'])\n"
        "sb.close()\n"
        f"print(r.returncode, sorted(m for m in {LAZY!r} if m in sys.modules))\n")
    assert out == "3 []"


@pytest.mark.timeout(60)
def test_layout_tuple_built_on_first_read() -> None:
    from cove.abi.layout import Layout

    lay = Layout("struct t\nI a\nI b\n")
    assert "Tuple" not in vars(lay)
    assert lay.read(lay.build(a=1, b=2)) == (1, 2)
    assert lay.read(lay.build(b=7)).b == 7
    assert lay.Tuple is lay.Tuple
