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


# Never imported by a restore, nor by the syscall families a guest's first calls
# import: typing (~2.5 ms a start: annotations are strings and TYPE_CHECKING is a
# module constant, `TYPE_CHECKING = False`), re and json (~2.5 ms: a snapshot's
# metadata is read by cove.jsonread).
RESTORE_NEVER = ("typing", "re", "json")


@pytest.mark.timeout(60)
def test_restore_modules_import_no_typing_re_or_json() -> None:
    out = _py(
        "import sys\n"
        # Some site files (.pth) import them before any cove code runs.
        f"for m in {RESTORE_NEVER!r}: sys.modules.pop(m, None)\n"
        "import cove.cli, cove.cli_args, cove.cli_snapshot, cove.hostfuncs, cove.jsonread\n"
        "import cove.sandbox, cove.snapfile, cove.snapshot, cove.snapstage, cove.snapstate\n"
        "import cove.kernel.loader, cove.kernel.procfs, cove.platform.kvm.vmpool\n"
        # and what `cove run --platform userland` adds
        "import cove.platform.userland.platform, cove.platform.userland.cpu\n"
        "from cove.kernel.syscall import import_all\n"
        "import_all()\n"
        "from cove.jsonread import loads\n"
        "assert loads(b'{\"a\": [1, true]}') == {'a': [1, True]}\n"
        f"print(sorted(m for m in {RESTORE_NEVER!r} if m in sys.modules))\n")
    assert out == "[]"


@pytest.mark.timeout(60)
def test_platform_protocols_still_importable_from_base() -> None:
    # They live in cove.platform.protocols (typing.Protocol needs typing at run time).
    from cove.platform import base, protocols

    for name in ("AddressSpace", "Context", "Cpu", "NativeGrant", "NativeIo", "Platform"):
        assert getattr(base, name) is getattr(protocols, name)
    with pytest.raises(AttributeError):
        base.NoSuchThing  # noqa: B018


def test_a_family_imported_by_name_first_still_gets_what_installs_into_it():
    """Importing a syscall family module directly (a test, a tool) before any
    kernel exists skips the placeholder that would import the families it
    needs (thread's clone needs process's fork code): the next Kernel's
    load_all imports them, or fork says ENOSYS."""
    out = _py("import sys\n"
              "from cove.kernel.syscalls import thread\n"
              "from cove.kernel.syscall import load_all\n"
              "load_all()\n"
              "print('cove.kernel.syscalls.process' in sys.modules)\n")
    assert out == "True"
