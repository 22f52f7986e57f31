"""Every test here that asks for ``platform`` runs once per platform (kvm,
userland; or the one COVE_TEST_PLATFORM pins), skipped with the reason where
the host cannot run it. A per-platform file defines its own ``platform``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cove.platform.base import Platform
from tests.platform.guest import PLATFORMS, assemble, open_platform, platform_param

__all__ = ["assemble", "platform"]  # assemble: the session fixture, shared


@pytest.fixture(scope="module", params=[platform_param(n) for n in PLATFORMS])
def platform(request: pytest.FixtureRequest) -> Iterator[Platform]:
    yield from open_platform(request.param)
