"""The userland platform: guest threads as ptrace'd, seccomp-filtered host
threads of stub processes. No KVM needed.

Only ``cove.platform.base.select_platform`` should import this package; the
North receives the platform object and never imports a platform.
"""

from __future__ import annotations

from cove.platform.userland.aspace import UserlandAddressSpace
from cove.platform.userland.context import UserlandContext
from cove.platform.userland.cpu import UserlandCpu
from cove.platform.userland.platform import UserlandPlatform, userland_unavailable_reason

__all__ = ["UserlandAddressSpace", "UserlandContext", "UserlandCpu", "UserlandPlatform",
           "userland_unavailable_reason"]
