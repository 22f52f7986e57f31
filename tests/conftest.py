"""Shared fixtures: C guest programs built once per session, and running them in cove."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

GUESTS = Path(__file__).parent / "guests"


# COVE_TEST_PLATFORM=userland (or kvm) runs every sandbox the tests make on
# that platform: "auto" in select_platform resolves to it.
TEST_PLATFORM = os.environ.get("COVE_TEST_PLATFORM", "")
if TEST_PLATFORM:
    import cove.platform.base as _platform_base

    _select = _platform_base.select_platform

    def _select_test_platform(name: str = "auto", **kw: object) -> object:
        return _select(TEST_PLATFORM if name == "auto" else name, **kw)  # type: ignore[arg-type]

    _platform_base.select_platform = _select_test_platform  # type: ignore[assignment]


def kvm_skip_reason() -> str | None:
    if TEST_PLATFORM == "userland":  # "needs kvm" means "needs a platform"
        try:
            from cove.platform.userland import userland_unavailable_reason
        except Exception as e:  # pragma: no cover
            return f"userland platform not importable: {e}"
        return userland_unavailable_reason()
    try:
        from cove.platform.kvm import kvm_unavailable_reason
    except Exception as e:  # pragma: no cover
        return f"kvm platform not importable: {e}"
    return kvm_unavailable_reason()


def _any_platform_reason() -> str | None:
    """None when some platform can run guests here (integration tests then run
    on each available one: tests/integration/conftest.py)."""
    why = kvm_skip_reason()
    if why is None or TEST_PLATFORM:
        return why
    try:
        from cove.platform.userland import userland_unavailable_reason

        other = userland_unavailable_reason()
    except Exception as e:  # pragma: no cover
        other = str(e)
    return None if other is None else f"{why}; userland: {other}"


# Integration tests run on every available platform; outside tests/integration
# this still means "needs /dev/kvm".
needs_kvm = pytest.mark.skipif(_any_platform_reason() is not None,
                               reason=f"needs a platform (kvm or userland): "
                                      f"{_any_platform_reason()}")


@pytest.fixture(scope="session")
def guest_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where built guests live; mounted read-only into sandboxes at /guests."""
    return tmp_path_factory.mktemp("guests")


@pytest.fixture(scope="session")
def build_guest(guest_dir: Path) -> Callable[..., Path]:
    """``build_guest("name", pie=False, extra=[...])`` compiles tests/guests/name.c
    statically (or static-pie) once per session and returns the binary's host path."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed to build guest programs")
    cache: dict[tuple[str, bool, tuple[str, ...]], Path] = {}

    def build(name: str, pie: bool = False, extra: tuple[str, ...] = ()) -> Path:
        key = (name, pie, tuple(extra))
        if key not in cache:
            out = guest_dir / (name + ("-pie" if pie else "") + ("-" + "-".join(
                e.strip("-") for e in extra) if extra else ""))
            flags = ["-static-pie", "-fPIE"] if pie else ["-static", "-no-pie"]
            subprocess.run(["gcc", "-O1", "-g0", "-Wall", *flags, "-o", str(out),
                            str(GUESTS / f"{name}.c"), *extra, "-lpthread"], check=True)
            cache[key] = out
        return cache[key]

    return build


@pytest.fixture
def cove_run(guest_dir: Path) -> Callable[..., object]:
    """Run argv in a fresh sandbox (default rootfs, guests mounted at /guests)
    and capture its output: returns cove.sandbox.CompletedRun."""
    from cove.rootfs import MountSpec
    from cove.sandbox import Sandbox, SandboxConfig

    def run(argv: list[str], *, memory: str = "512M", mounts: tuple[str, ...] = (),
            env: dict[str, str] | None = None, cwd: str = "/", stdin: int | None = None,
            user: tuple[int, int] = (0, 0), timeout: float | None = 100.0) -> object:
        specs = (MountSpec(str(guest_dir), "/guests"),
                 *(MountSpec.parse(m) for m in mounts))
        # A hung guest fails its test with SandboxTimeout instead of stalling the run.
        sb = Sandbox(config=SandboxConfig(memory=memory, timeout=timeout), mounts=specs,
                     env=env or {},
                     cwd=cwd, user=user)
        if stdin is None:
            stdin = os.open(os.devnull, os.O_RDONLY)
            try:
                return sb.run(argv, capture_output=True, stdin=stdin)
            finally:
                os.close(stdin)
        return sb.run(argv, capture_output=True, stdin=stdin)

    return run
