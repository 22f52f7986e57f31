"""The syscall table equals the host header, and the numbers past the header
exist on the running kernel."""

from __future__ import annotations

import ctypes
import importlib.util
import os
import platform
import sys
from pathlib import Path

import pytest

from cove.abi.sysnums import LINUX_MAX, NAMES, NR

HEADER = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")
TOOL = Path(__file__).resolve().parents[2] / "tools" / "gen_sysnums.py"


def _tool():
    spec = importlib.util.spec_from_file_location("gen_sysnums", TOOL)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gen_sysnums", mod)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def header_table() -> dict[int, str]:
    if not HEADER.exists():
        pytest.skip("no uapi headers")
    return _tool().parse_header(HEADER.read_text())


def test_matches_header(header_table: dict[int, str]) -> None:
    assert len(header_table) > 350
    for nr, name in header_table.items():
        assert NAMES.get(nr) == name, nr
    beyond = {nr for nr in NAMES if nr not in header_table}
    assert all(nr > max(header_table) for nr in beyond)


def test_well_known_numbers() -> None:
    assert (NR.read, NR.write, NR.mmap, NR.rt_sigreturn) == (0, 1, 9, 15)
    assert (NR.clone, NR.execve) == (56, 59)
    assert (NR.exit_group, NR.openat, NR.clone3, NR.openat2) == (231, 257, 435, 437)
    assert LINUX_MAX == max(NAMES) and NAMES[NR.futex_waitv] == "futex_waitv"


def test_generated_file_is_current(header_table: dict[int, str], tmp_path: Path) -> None:
    # Regenerating from the same header must give the committed module byte for byte.
    tool = _tool()
    text = tool.render(tool.merge(header_table), str(HEADER), max(header_table))
    committed = Path(sys.modules[NR.__module__].__file__ or "").read_text()
    assert text == committed


# Calls probed with arguments that can only fail (fd -1, NULL pointers).
_CONFIG_DEPENDENT = {"map_shadow_stack"}  # ENOSYS without CONFIG_X86_USER_SHADOW_STACK


def _kernel_version() -> tuple[int, int]:
    major, minor = platform.release().split(".")[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()))


@pytest.mark.timeout(30)
@pytest.mark.parametrize("nr", sorted(_tool().NEWER))
def test_newer_numbers_exist_on_running_kernel(nr: int) -> None:
    name, release = _tool().NEWER[nr]
    assert NAMES[nr] == name
    if name in _CONFIG_DEPENDENT:
        pytest.skip(f"{name} depends on kernel configuration")
    if _kernel_version() < tuple(int(x) for x in release.split(".")):
        pytest.skip(f"running kernel predates Linux {release}")
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    args = [ctypes.c_long(nr), ctypes.c_long(-1)] + [ctypes.c_long(0)] * 5
    ret = libc.syscall(*args)
    err = ctypes.get_errno()
    assert not (ret == -1 and err == 38), f"{name} ({nr}): {os.strerror(err)}"  # 38 = ENOSYS
