"""Every integration test runs once per platform this host has (kvm, userland),
unless COVE_TEST_PLATFORM pins one: the same guests, the same assertions."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


def _reason(name: str) -> str | None:
    try:
        if name == "kvm":
            from cove.platform.kvm import kvm_unavailable_reason

            return kvm_unavailable_reason()
        from cove.platform.userland import userland_unavailable_reason

        return userland_unavailable_reason()
    except Exception as e:  # a broken platform package is a reason too
        return f"{name} platform not importable: {e}"


PINNED = os.environ.get("COVE_TEST_PLATFORM", "")
PLATFORMS = [PINNED] if PINNED else ["kvm", "userland"]


@pytest.fixture(autouse=True, params=PLATFORMS)
def cove_platform(request: pytest.FixtureRequest,
                  monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Make "auto" mean this test's platform for every sandbox the test builds."""
    name = request.param
    why = _reason(name)
    if why is not None:
        pytest.skip(f"{name} platform unavailable: {why}")
    import cove.platform.base as base

    select = base.select_platform

    def pinned(platform: str = "auto", **kw: object) -> object:
        return select(name if platform == "auto" else platform, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(base, "select_platform", pinned)
    yield name


class KernelRun:
    """What ``kernel_run`` returns: the init's wait status, the (shut down)
    kernel to inspect, and what the guest wrote to stdout and stderr."""

    def __init__(self, status: int | None, kernel: object, output: bytes) -> None:
        self.status, self.kernel, self.output = status, kernel, output


@pytest.fixture
def kernel_run(guest_dir: Path, tmp_path: Path) -> Callable[..., KernelRun]:
    """Boot a sandbox (guests at /guests) and run its kernel loop on the
    calling thread (not Sandbox.run's: the platform's tracer thread), with
    stdin from /dev/null and stdout+stderr into one file."""

    def run(argv: list[str], *, platform: str = "auto", trace: object = None,
            timeout: float = 120.0) -> KernelRun:
        from cove.rootfs import MountSpec
        from cove.sandbox import Sandbox, SandboxConfig

        sb = Sandbox(config=SandboxConfig(memory="256M", platform=platform, timeout=timeout),
                     mounts=(MountSpec(str(guest_dir), "/guests"),))
        out = tmp_path / f"out-{len(list(tmp_path.iterdir()))}"
        fd = os.open(out, os.O_RDWR | os.O_CREAT, 0o600)
        null = os.open(os.devnull, os.O_RDWR)
        try:
            kernel = sb.boot(argv, stdio=(null, fd, fd), trace=trace)
            try:
                status = kernel.run()
            finally:
                kernel.shutdown()
        finally:
            os.close(null)
            os.close(fd)
            sb.close()
        return KernelRun(status, kernel, out.read_bytes())

    return run
