from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.abi import catalog, cprobe

HEADERS = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")


@pytest.fixture(scope="session")
def compiler(tmp_path_factory: pytest.TempPathFactory) -> cprobe.Compiler:
    if shutil.which("gcc") is None or not HEADERS.exists():
        pytest.skip("needs gcc and the Linux uapi headers (linux-libc-dev)")
    return cprobe.Compiler(tmp_path_factory.mktemp("abi-c"))


def _probe(compiler: cprobe.Compiler, program: str) -> tuple[dict, dict, dict]:
    consts = {}
    for key in catalog.python_constants():
        expr = catalog.c_expr(key, program)
        if expr is not None:
            consts[key] = expr
    layouts = {
        name: (
            layout.ctype,
            catalog.size_for_c(name, layout),
            catalog.members_for_c(name, layout),
        )
        for name, layout in catalog.layouts().items()
        if catalog.layout_program(name) == program
    }
    includes = cprobe.KERNEL_INCLUDES if program == "kernel" else cprobe.GLIBC_INCLUDES
    return cprobe.parse(compiler.run(cprobe.program(includes, consts, layouts)))


@pytest.fixture(scope="session")
def kernel_probe(compiler: cprobe.Compiler) -> tuple[dict, dict, dict]:
    """(constants, struct sizes, members) as the kernel's uapi headers say."""
    return _probe(compiler, "kernel")


@pytest.fixture(scope="session")
def glibc_probe(compiler: cprobe.Compiler) -> tuple[dict, dict, dict]:
    """The same, from glibc's headers (only for what the kernel's lack)."""
    return _probe(compiler, "glibc")
