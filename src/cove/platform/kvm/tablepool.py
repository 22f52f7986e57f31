"""Page-table frames, recycled without a KVM flush per dead address space.

Why a pool. A shadow-paging KVM keeps a shadow page per guest page-table
frame and trusts it until the *guest* writes that frame; the host writing it
is invisible (see ``pagetable``). So a frame that was a page table must not
become a page table again, with new contents, while KVM may still hold a
shadow page for it. Zapping all shadow state (``KvmPlatform.zap_all``)
clears that, but it costs ~0.3 ms of ioctl plus every live process
rebuilding its shadow pages afterwards, and exit and exec each destroy an
address space.

So a destroyed space's table frames are *retired*: held, unused, until
enough have piled up (``limit``); then one zap makes all of them safe and
they are reused as page tables (zeroed first) or handed back to PhysMem.
Retired frames are never mapped and never referenced by a live table, so
the stale shadow pages KVM keeps for them are unreachable: the only way to
reach one is a CR3 or table entry naming the frame, and only this pool
hands frames out as tables. Frames this pool has never seen (fresh from
PhysMem) are safe too: every frame that was a table since the last zap is
in this pool, not in PhysMem's free list.
"""

from __future__ import annotations

from cove.abi.errno import Errno

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from cove.kernel.physmem import PhysMem

_ZERO = bytes(4096)


class TablePool:
    """Allocator of page-table frames for one VM (one KVM MMU)."""

    def __init__(self, pm: PhysMem, zap_all: Callable[[], None], limit: int | None = None) -> None:
        self._pm = pm
        self._zap_all = zap_all
        self._clean: list[int] = []  # safe to reuse as tables (need zeroing)
        self._dirty: list[int] = []  # KVM may hold shadow pages for these
        # Retired frames are guest memory the North cannot use meanwhile:
        # keep that to ~0.2% of it (2 MiB of 1 GiB), at least a few spaces' worth.
        self.limit = limit if limit is not None else max(32, min(512, pm.nframes >> 9))
        self.zaps = 0  # flushes done (for tests and benchmarks)

    def alloc(self) -> int:
        """A zero-filled frame that is safe to become a page table (refcount 1)."""
        if self._clean:
            f = self._clean.pop()
            off = f << 12
            self._pm.mem[off : off + 4096] = _ZERO
            return f
        try:
            return self._pm.alloc()
        except Errno:
            if not self._dirty:
                raise
            self.flush()  # guest memory is short: the retired frames are worth a zap
            return self.alloc()

    def retire(self, frames: Iterable[int]) -> None:
        """Tables of a destroyed address space: nothing references them any more."""
        self._dirty.extend(frames)
        if len(self._dirty) >= self.limit:
            self.flush()

    def flush(self) -> None:
        """Zap KVM's shadow state once; every retired frame becomes reusable."""
        if self._dirty:
            self._zap_all()
            self.zaps += 1
            self._clean.extend(self._dirty)
            self._dirty.clear()
        while len(self._clean) > self.limit:
            self._pm.unref(self._clean.pop())

    def frames(self) -> list[int]:
        """Every frame the pool holds (for a snapshot's platform image)."""
        return self._clean + self._dirty

    def adopt(self, frames: Iterable[int]) -> None:
        """Hold ``frames`` (a restored image's pool) instead, all reusable: the
        caller zaps KVM, or the VM never ran over this memory."""
        self._clean = [int(f) for f in frames]
        self._dirty = []

    @property
    def held(self) -> int:
        """Frames the pool holds that no address space uses."""
        return len(self._clean) + len(self._dirty)

    def close(self) -> None:
        """Give every held frame back (the VM is gone, so no flush is needed)."""
        for f in self._clean + self._dirty:
            self._pm.unref(f)
        self._clean.clear()
        self._dirty.clear()
