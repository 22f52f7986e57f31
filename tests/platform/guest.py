"""Driving a platform directly: small ring-3 guest programs in assembly.

Each program is assembled with GNU `as` inside the session (cached), copied
into frames of the platform's physmem and mapped at CODE with a stack below
STACK_TOP. The tests play the North: they answer syscalls, map pages on
faults and switch contexts.

Which platforms a run covers: both ("kvm", "userland"), or the one
COVE_TEST_PLATFORM pins; a platform this host cannot run is skipped with
the reason, as in tests/integration/conftest.py.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from cove.kernel.physmem import PhysMem
from cove.platform.base import (
    PROT_EXEC,
    PROT_READ,
    PROT_WRITE,
    AddressSpace,
    Context,
    Exit,
    ExitKind,
    Platform,
    select_platform,
)

CODE = 0x400000
STACK_TOP = 0x800000
DATA = 0x600000
RX, RW, RO = PROT_READ | PROT_EXEC, PROT_READ | PROT_WRITE, PROT_READ
FXSAVE_XMM = 160  # xmm<n> sits at FXSAVE_XMM + 16 * n in the FPU image

# The platforms' own pages in the guest's view: the kvm stub's kernel half
# (LSTAR stub page, then its kernel page, IDT, GDT/TSS, kernel stack) and the
# userland stub's code page, mailbox, reply page and signal altstack.
KBASE = 0xFFFF_FFFF_8000_0000
STUB_CODE, MAILBOX, REPLY, ALTSTACK = 0x1000, 0x2000, 0x3000, 0x4000

NAMES = ("kvm", "userland")
PINNED = os.environ.get("COVE_TEST_PLATFORM", "")
PLATFORMS = (PINNED,) if PINNED else NAMES
_TOOLS = {"kvm": (), "userland": ("gcc",)}  # the userland stub is built on first use


def unavailable_reason(name: str) -> str | None:
    """Why this run cannot test platform ``name`` here, or None."""
    if PINNED and name != PINNED:
        return f"COVE_TEST_PLATFORM={PINNED} leaves {name} out"
    if name not in NAMES:
        return f"unknown platform {name!r} (COVE_TEST_PLATFORM: kvm or userland)"
    missing = [t for t in _TOOLS[name] if shutil.which(t) is None]
    if missing:
        return f"{' and '.join(missing)} needed by the {name} platform"
    try:
        if name == "kvm":
            from cove.platform.kvm import kvm_unavailable_reason

            why = kvm_unavailable_reason()
        else:
            from cove.platform.userland import userland_unavailable_reason

            why = userland_unavailable_reason()
    except Exception as e:  # a broken platform package is a reason too
        return f"{name} platform not importable: {e}"
    return None if why is None else f"{name} platform unavailable: {why}"


def only_on(name: str) -> list[pytest.MarkDecorator]:
    """``pytestmark`` of a file of tests of one platform's own mechanisms."""
    why = unavailable_reason(name)
    marks = [pytest.mark.timeout(60), pytest.mark.skipif(why is not None, reason=str(why))]
    return [pytest.mark.kvm, *marks] if name == "kvm" else marks


def platform_param(name: str, *values: object, id: str | None = None) -> Any:
    """One case of the parametrized ``platform`` fixture (kvm cases marked kvm)."""
    marks = [pytest.mark.kvm] if name == "kvm" else []
    return pytest.param(name, *values, marks=marks, id=id or name)


def per_platform(cases: Mapping[str, Sequence[tuple[str, object]]]) -> list[Any]:
    """Parameters ``(platform, value)`` for a check whose values differ by
    platform (its own pages' addresses): ``{name: [(id, value), ...]}``. Use
    with ``indirect=["platform"]``."""
    return [platform_param(name, value, id=f"{name}-{case_id}")
            for name in PLATFORMS for case_id, value in cases.get(name, ())]


def open_platform(name: str, memory_mb: int = 256) -> Iterator[Platform]:
    """The body of a ``platform`` fixture: skips (with the reason) where the
    platform cannot run, closes it and its memory afterwards."""
    why = unavailable_reason(name)
    if why is not None:
        pytest.skip(why)
    pm = PhysMem(memory_mb << 20)
    p = select_platform(name, physmem=pm)
    try:
        yield p
    finally:
        p.close()
        pm.close()


def platform_fixture(name: str) -> Any:
    """A module-scoped ``platform`` fixture of one platform, for a file of
    that platform's own tests: ``platform = platform_fixture("kvm")``."""

    @pytest.fixture(scope="module", name="platform")
    def fixture() -> Iterator[Platform]:
        yield from open_platform(name)

    return fixture


@pytest.fixture(scope="session")
def assemble(tmp_path_factory: pytest.TempPathFactory):
    """``assemble(src) -> bytes``: the flat machine code of GNU as source."""
    if not all(shutil.which(t) for t in ("as", "objcopy")):
        pytest.skip("GNU as/objcopy needed to build guest programs")
    cache = tmp_path_factory.mktemp("guest-asm")

    def build(src: str) -> bytes:
        h = hashlib.sha256(src.encode()).hexdigest()[:16]
        out = Path(cache, f"{h}.bin")
        if not out.exists():
            s, o = Path(cache, f"{h}.S"), Path(cache, f"{h}.o")
            s.write_text(".text\n.code64\n" + src + "\n")
            subprocess.run(["as", "--64", "-o", str(o), str(s)], check=True)
            subprocess.run(["objcopy", "-O", "binary", "-j", ".text", str(o), str(out)], check=True)
        return out.read_bytes()

    return build


class Guest:
    """One program in its own address space with one context."""

    def __init__(self, platform: Platform, code: bytes, stack_pages: int = 4) -> None:
        self.p = platform
        self.pm = platform.physmem
        self.aspace: AddressSpace = platform.create_address_space()
        frames = []
        for off in range(0, len(code), 4096):
            f = self.pm.alloc()
            self.pm.write(f << 12, code[off : off + 4096])
            frames.append(f)
        self.aspace.map_range(CODE, frames, RX)
        stack = [self.pm.alloc() for _ in range(stack_pages)]
        self.aspace.map_range(STACK_TOP - 4096 * stack_pages, stack, RW)
        self.ctx: Context = platform.create_context()
        self.ctx.regs.rip = CODE
        self.ctx.regs.rsp = STACK_TOP

    def map_data(self, vaddr: int, data: bytes = b"", prot: int = RW) -> int:
        f = self.pm.alloc()
        self.pm.write(f << 12, data)
        self.aspace.map(vaddr, f, prot)
        return f

    def run(self) -> Exit:
        return self.p.run(self.ctx, self.aspace)

    def run_until_syscall(self, limit: int = 100) -> Exit:
        for _ in range(limit):
            e = self.run()
            if e.kind == ExitKind.SYSCALL:
                return e
            assert e.kind == ExitKind.INTERRUPTED, e
        raise AssertionError("no syscall")
