"""Ready VMs for restores: a KVM VM with a probed vCPU, made before a restore
needs one.

Making a VM costs ~2.5 ms here (KVM_CREATE_VM, CPUID, the vCPU, its register
setup and the syscall-path probe), more than everything else a restore does.
A restore needs none of what is particular to a new VM: it gives a pooled VM
its guest memory (one memslot, ~0.1 ms for 256 MiB) and takes the kernel half
and page tables from the snapshot's image (``KvmPlatform.adopt_image``).

Where pooled VMs come from:
- ``give``: every closed kvm platform offers its VM (``KvmPlatform.close``);
  the VM is detached from its memory first: deleting the memslot makes KVM
  drop every translation and shadow page of the old guest;
- ``prepare``: made on purpose (``Snapshot.load`` does it while it checks the
  file; ``cove bench snapshot`` says when it warms the pool).

What a pooled VM carries over, and why that is safe: no guest memory (the
next one is attached fresh), no KVM translation (the memslot was deleted),
no register state the next guest can see (its first run loads a whole
context: GPRs, XSAVE, FS/GS bases, CR3; data segment selectors are reset).
The pool keeps at most ``limit`` idle VMs (``set_limit``; 0 turns it off).
"""

from __future__ import annotations

import atexit
import threading

from cove.lazylog import getLogger

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from cove.kernel.physmem import PhysMem
    from cove.platform.kvm.platform import KvmPlatform

_lock = threading.Lock()
_idle: list[KvmPlatform] = []
_limit = 4
SCRATCH = 16 << 20  # guest memory a new VM is probed with before it is detached


def set_limit(n: int) -> int:
    """Keep at most ``n`` idle VMs (0: no pool, every restore makes its own VM
    and every closed one is destroyed). Returns the old limit."""
    global _limit
    with _lock:
        old, _limit = _limit, max(0, n)
        drop = _idle[_limit:]
        del _idle[_limit:]
    for p in drop:
        p.destroy()
    return old


def idle() -> int:
    """Idle VMs ready now."""
    return len(_idle)


def _make() -> KvmPlatform:
    from cove.kernel.physmem import PhysMem
    from cove.platform.kvm.platform import KvmPlatform

    scratch = PhysMem(SCRATCH)
    try:
        p = KvmPlatform(scratch)
        try:
            p.detach()
        except BaseException:
            p.destroy()
            raise
    finally:
        scratch.close()
    return p


def take(physmem: PhysMem) -> KvmPlatform:
    """A VM over ``physmem``, whose contents a snapshot's image holds (the
    caller then calls ``adopt_image(img, zap=False)``): an idle one, or a new one."""
    with _lock:
        p = _idle.pop() if _idle else None
    if p is None:
        p = _make()
    try:
        p.attach(physmem)
    except BaseException:
        p.destroy()
        raise
    return p


def prepare(count: int = 1) -> None:
    """Make idle VMs until ``count`` are ready (within the limit)."""
    while len(_idle) < min(count, _limit):
        p = _make()
        with _lock:
            if len(_idle) < _limit:
                _idle.append(p)
                continue
        p.destroy()
        return


def give(platform: KvmPlatform) -> bool:
    """Offer the VM of a closing platform (its frames given back, nothing
    running on it). True: the pool detached and kept it; False: the caller
    destroys it."""
    with _lock:
        if len(_idle) >= _limit:
            return False
    try:
        platform.detach()
    except Exception:
        getLogger("cove.kvm").exception("detaching a VM for the pool failed")
        return False
    with _lock:
        if len(_idle) < _limit:
            _idle.append(platform)
            return True
    return False


def clear() -> None:
    """Destroy every idle VM."""
    with _lock:
        drop = list(_idle)
        _idle.clear()
    for p in drop:
        p.destroy()


@atexit.register
def _at_exit() -> None:
    set_limit(0)  # platforms closed by later exit handlers are destroyed, not kept
