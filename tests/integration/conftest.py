"""Every integration test runs once per platform this host has (kvm, userland),
unless COVE_TEST_PLATFORM pins one: the same guests, the same assertions."""

from __future__ import annotations

import os
from collections.abc import Iterator

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
