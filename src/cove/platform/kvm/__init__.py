"""The kvm platform: guest user code in ring 3 of a KVM micro-VM.

Only ``cove.platform.base.select_platform`` should import this package; the
North receives the platform object and never imports a platform.
"""

from __future__ import annotations

from cove.platform.kvm.cpu import KvmCpu
from cove.platform.kvm.pagetable import KvmAddressSpace
from cove.platform.kvm.platform import KvmContext, KvmPlatform, kvm_unavailable_reason

__all__ = ["KvmAddressSpace", "KvmContext", "KvmCpu", "KvmPlatform", "kvm_unavailable_reason"]
