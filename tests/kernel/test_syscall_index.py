"""The lazy syscall table: the committed index is what the family modules
define, placeholders behave as the real entries, and a run imports only the
families its guest calls."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cove.abi.errno import E

from .harness import call, make_kernel, put

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "gen_syscall_index.py"
INDEX = ROOT / "src" / "cove" / "kernel" / "syscalls" / "__init__.py"


def _py(code: str) -> str:
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       cwd=ROOT)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


@pytest.mark.timeout(120)
def test_index_is_current() -> None:
    # Fails when a family defines a syscall the index does not know (or changes its
    # decoders, support, note, restartability) or starts hooking into another module.
    r = subprocess.run([sys.executable, str(TOOL), "--print"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout == INDEX.read_text(), "stale: run python tools/gen_syscall_index.py"


@pytest.mark.timeout(120)
def test_placeholders_match_real_entries() -> None:
    # Every placeholder says what the imported family's entry says.
    out = _py(
        "from cove.kernel import syscall as S\n"
        "S.load_all()\n"
        "def key(sc):\n"
        "    return (sc.nr, sc.name, sc.decoders, sc.support, sc.note, sc.restartable,\n"
        "            sc.handler is None, sc.on_interrupt is None,\n"
        "            getattr(sc.handler, '__module__', None))\n"
        "before = {nr: key(sc) for nr, sc in S.TABLE.items()}\n"
        "S.import_all()\n"
        "after = {nr: key(sc) for nr, sc in S.TABLE.items()}\n"
        "print(len(before), before == after, [n for n in after if after[n] != before.get(n)])\n"
        "print(sum(sc is S._PLACEHOLDERS.get(nr) for nr, sc in S.TABLE.items()))\n")
    count, same, diff = out.splitlines()[0].split(" ", 2)
    assert int(count) > 200 and same == "True" and diff == "[]"
    assert out.splitlines()[1] == "0"  # all real after import_all


@pytest.mark.timeout(120)
def test_first_call_imports_the_family() -> None:
    out = _py(
        "import sys\n"
        "sys.path.insert(0, '.')\n"
        "from tests.kernel.harness import call, make_kernel\n"
        "from cove.kernel import syscall as S\n"
        "from cove.abi.sysnums import NR\n"
        "k, t = make_kernel()\n"
        "fam = 'cove.kernel.syscalls.io_eventfd'\n"
        "print(fam in sys.modules, S.TABLE[NR.eventfd2] is S._PLACEHOLDERS.get(NR.eventfd2))\n"
        "fd = call(t, 'eventfd2', 5, 0)\n"
        "print(fd >= 0, fam in sys.modules, S.TABLE[NR.eventfd2].handler.__module__ == fam,\n"
        "      S.TABLE[NR.eventfd2] is not S._PLACEHOLDERS.get(NR.eventfd2))\n")
    assert out.splitlines() == ["False True", "True True True True"]


def test_placeholder_decodes_like_the_handler() -> None:
    # Through the dispatcher: a bad path pointer is EFAULT from the placeholder's decoder.
    _, t = make_kernel()
    assert call(t, "mkdirat", -100, 0, 0o755) == -E.EFAULT
    assert call(t, "mkdirat", -100, put(t, b"/lazy\0"), 0o755) == 0


def test_stale_index_is_an_internal_error_not_a_crash() -> None:
    from cove.kernel import syscall as S

    nr, fake = 99999, None
    try:
        fake = S._placeholder(nr, "nonesuch", "cove.kernel.syscalls.fs_rw", "", "full", "",
                              True, False)
        S.TABLE[nr] = S._PLACEHOLDERS[nr] = fake
        S._FAMILY[nr] = "cove.kernel.syscalls.fs_rw"
        with pytest.raises(RuntimeError, match="gen_syscall_index"):
            S.entry(nr)
    finally:
        for d in (S.TABLE, S._PLACEHOLDERS, S._FAMILY):
            d.pop(nr, None)


def test_pickled_entry_is_the_loaded_entry() -> None:
    import pickle

    from cove.abi.sysnums import NR
    from cove.kernel import syscall as S

    sc = S.TABLE[NR.getppid]
    back = pickle.loads(pickle.dumps(sc))
    assert back is S.TABLE[NR.getppid] and back.handler is not None
    assert back is not S._PLACEHOLDERS.get(NR.getppid)


_SLEEP_SETUP = (
    "import sys, time\n"
    "from tests.kernel.harness import call, make_kernel, put\n"
    "from tests.kernel.test_sys_time import finish, put_ts, ts\n"
    "from cove.abi import flags as F\n"
    "from cove.abi.errno import E\n"
    "from cove.abi.sysnums import NR\n"
    "from cove.kernel import signals, syscall as S\n"
    "assert 'cove.kernel.syscalls.time' not in sys.modules\n"
    "k, t = make_kernel()\n"
    "ph = S.TABLE[NR.nanosleep]\n")


@pytest.mark.timeout(60)
def test_first_call_blocking_is_resumed_through_its_placeholder() -> None:
    # The first nanosleep blocks inside its placeholder (kept in t.blocked_call);
    # the re-run after the wake-up goes to the real entry.
    out = _py(_SLEEP_SETUP +
              "call(t, 'nanosleep', put_ts(t, 20_000_000), 0)\n"
              "print(t.blocked_call[0] is ph is not S.TABLE[NR.nanosleep], finish(k, t))\n")
    assert out == "True 0"


@pytest.mark.timeout(60)
def test_first_call_interrupted_runs_the_real_eintr_hook() -> None:
    # EINTR of a placeholder's blocked call: the family's hook writes rem.
    out = _py(_SLEEP_SETUP +
              "t.proc.sighand.actions[F.SIGUSR1].handler = 0x401000\n"
              "put(t, b'\\xff' * 16, 0x300)\n"
              "call(t, 'nanosleep', put_ts(t, 10**10), 0x10000300)\n"
              "held = t.blocked_call[0] is ph\n"
              "time.sleep(0.02)\n"
              "signals.send_task(t, F.SIGUSR1)\n"
              "print(held, finish(k, t) == -E.EINTR, 9 * 10**9 < ts(t, 0x10000300) < 10**10)\n")
    assert out == "True True True"


def test_stale_index_is_noticed(tmp_path: Path) -> None:
    from cove.kernel import syscall as S

    (tmp_path / "__init__.py").write_text("INDEX = {}\n")
    (tmp_path / "fs_new.py").write_text("x = 1\n")
    (tmp_path / "_private.py").write_text("")
    sizes = {"fs_new": 6}
    assert S._stale_family(str(tmp_path), sizes) == ""
    (tmp_path / "fs_new.py").write_text("x = 12\n")  # edited since the index
    assert S._stale_family(str(tmp_path), sizes) == "fs_new.py"
    (tmp_path / "fs_new.py").write_text("x = 1\n")
    (tmp_path / "fs_other.py").write_text("")  # a new family
    assert S._stale_family(str(tmp_path), sizes) == "fs_other.py"
    (tmp_path / "fs_other.py").unlink()
    assert S._stale_family(str(tmp_path), {**sizes, "fs_gone": 1}) != ""  # one removed


@pytest.mark.timeout(60)
def test_stale_index_imports_every_family() -> None:
    out = _py("import sys\n"
              "from cove.kernel import syscall as S\n"
              "S._stale_family = lambda: 'fs_new.py'\n"
              "S.load_all()\n"
              "mods = [f'cove.kernel.syscalls.{f}' for f in S.family_modules()]\n"
              "print(all(m in sys.modules for m in mods))\n")
    assert out == "True"


@pytest.mark.timeout(60)
def test_clone_first_brings_the_process_family() -> None:
    # fork through clone(2) as libc does it: thread's clone needs the process
    # family's PROCESS_CLONE (NEEDS), or it would answer ENOSYS.
    out = _py("import sys\n"
              "from tests.kernel.harness import call, make_kernel\n"
              "from cove.abi import flags as F\n"
              "k, t = make_kernel()\n"
              "print('cove.kernel.syscalls.process' in sys.modules)\n"
              "print(call(t, 'clone', F.SIGCHLD, 0, 0, 0, 0) > 0)\n")
    assert out.splitlines() == ["False", "True"]
