"""A guest address space realized as the mappings of one stub process.

The North's decisions (``map``/``unmap``/``protect``, page by page) are
recorded here at once, which is all ``lookup``/``translate`` and the North's
EFAULT checks need, and mirrored into the stub lazily: the first ``run`` of
any thread of this address space (``prepare``) coalesces the changed pages
into ranges and has the stub's injector ``mmap`` the PhysMem memfd over them
(MAP_SHARED|MAP_FIXED, frame ``f`` is file offset ``f * 4096``) or
``munmap`` them, in one batch. Until then no thread of the process runs, so
the deferral is invisible to the guest and an unmapped frame may be reused at
once, as the platform contract requires. (One cpu runs a given address space
at a time; see the platform module.)

PROT_NONE pages keep their frame in the record but are unmapped in the host,
as the kvm platform leaves them non-present.
"""

from __future__ import annotations

from cove.platform.base import (
    PROT_EXEC,
    PROT_READ,
    PROT_WRITE,
    USER_ADDRESS_LIMIT,
    check_user_range,
    read_virtual,
    write_virtual,
)
from cove.platform.userland import layout as L
from cove.platform.userland.stub import NR_mmap, NR_munmap

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from cove.platform.userland.platform import UserlandPlatform
    from cove.platform.userland.stub import StubProcess

PAGE = 4096
_PROT_MASK = PROT_READ | PROT_WRITE | PROT_EXEC
_MAP_SHARED_FIXED = 0x01 | 0x10


class UserlandAddressSpace:
    """See ``cove.platform.base.AddressSpace`` and the module doc."""

    def __init__(self, platform: UserlandPlatform) -> None:
        self._platform = platform
        self._nframes = platform.physmem.nframes
        self.pages: dict[int, tuple[int, int]] = {}  # vpn -> (frame, prot)
        self._dirty: set[int] = set()
        self.proc: StubProcess | None = None
        self.destroyed = False

    _check = staticmethod(check_user_range)

    def _check_map(self, vaddr: int, length: int) -> None:
        self._check(vaddr, length)
        if vaddr < L.RESERVED_END or vaddr + length > L.TASK_SIZE:
            raise ValueError(f"range {vaddr:#x}+{length:#x} is reserved on the userland platform")

    # --- the AddressSpace contract -------------------------------------------
    def map(self, vaddr: int, frame: int, prot: int) -> None:
        self.map_range(vaddr, [frame], prot)

    def map_range(self, vaddr: int, frames: list[int], prot: int) -> None:
        self._check_map(vaddr, len(frames) * PAGE)
        prot &= _PROT_MASK
        if prot & (PROT_WRITE | PROT_EXEC):
            prot |= PROT_READ  # x86: W and X imply R
        vpn = vaddr >> 12
        pages, dirty, n = self.pages, self._dirty, self._nframes
        for i, frame in enumerate(frames):
            if not 0 <= frame < n:
                raise ValueError(f"frame {frame:#x} outside guest memory")
            pages[vpn + i] = (frame, prot)
            dirty.add(vpn + i)

    def _vpns(self, vaddr: int, length: int) -> list[int]:
        first, last = vaddr >> 12, (vaddr + length) >> 12
        if last - first > len(self.pages):
            return sorted(v for v in self.pages if first <= v < last)
        return [v for v in range(first, last) if v in self.pages]

    def unmap(self, vaddr: int, length: int) -> list[int]:
        self._check(vaddr, length)
        out = []
        for vpn in self._vpns(vaddr, length):
            out.append(self.pages.pop(vpn)[0])
            self._dirty.add(vpn)
        return out

    def protect(self, vaddr: int, length: int, prot: int) -> None:
        self._check(vaddr, length)
        prot &= _PROT_MASK
        if prot & (PROT_WRITE | PROT_EXEC):
            prot |= PROT_READ
        for vpn in self._vpns(vaddr, length):
            frame, old = self.pages[vpn]
            if old != prot:
                self.pages[vpn] = (frame, prot)
                self._dirty.add(vpn)

    def lookup(self, vaddr: int) -> tuple[int, int] | None:
        if not 0 <= vaddr < USER_ADDRESS_LIMIT:
            return None
        return self.pages.get(vaddr >> 12)

    def translate(self, vaddr: int, write: bool = False) -> int | None:
        if not 0 <= vaddr < USER_ADDRESS_LIMIT:
            return None
        e = self.pages.get(vaddr >> 12)
        if e is None or not e[1] or (write and not e[1] & PROT_WRITE):
            return None
        return (e[0] << 12) | (vaddr & 0xFFF)

    def flush(self) -> None:
        """Nothing to do: every change reaches the stub before its next run."""

    def destroy(self) -> None:
        if self.destroyed:
            return
        self.destroyed = True
        if self.proc is not None:
            self._platform.retire(self.proc)
            self.proc = None
        self.pages.clear()
        self._dirty.clear()

    # --- realizing ------------------------------------------------------------
    def realize(self) -> StubProcess:
        """The stub process, with every recorded change applied."""
        proc, ops = self.prepare()
        if ops:
            self._platform.batch(proc, ops)
        return proc

    def prepare(self) -> tuple[StubProcess, list[tuple[int, ...]]]:
        """The stub process (started if need be) and the batch that brings it
        up to date, which the caller must run before any thread of it runs
        (``UserlandPlatform.batch``, or with a resume in one trip)."""
        if self.destroyed:
            raise ValueError("running a destroyed address space")
        proc = self.proc
        if proc is None:
            proc = self.proc = self._platform.new_process()
            # A fresh stub maps nothing in guest space: every page is a change.
            self._dirty = set(self.pages)
        if not self._dirty:
            return proc, []
        ops = self._ops(proc.memfd)
        self._dirty = set()
        return proc, ops

    def _ops(self, memfd: int) -> list[tuple[int, ...]]:
        """Coalesce the changed pages into mmap/munmap ranges (``memfd``: the
        guest-memory memfd's fd number in the stub)."""
        ops: list[tuple[int, ...]] = []
        pages = self.pages
        run_start = run_frame = run_prot = -1
        run_len = 0

        def close() -> None:
            if run_len:
                va, ln = run_start << 12, run_len << 12
                if run_prot <= 0:
                    ops.append((NR_munmap, va, ln, 0, 0, 0, 0))
                else:
                    ops.append((NR_mmap, va, ln, run_prot, _MAP_SHARED_FIXED, memfd,
                                run_frame << 12))

        for vpn in sorted(self._dirty):
            e = pages.get(vpn)
            frame, prot = e if e is not None and e[1] else (-1, 0)
            if run_len and vpn == run_start + run_len and prot == run_prot and (
                    prot == 0 or frame == run_frame + run_len):
                run_len += 1
                continue
            close()
            run_start, run_frame, run_prot, run_len = vpn, frame, prot, 1
        close()
        return ops

    # --- for tests and tools ------------------------------------------------------
    def read(self, vaddr: int, length: int) -> bytes:
        """Copy guest virtual memory out (user-mode permissions); Errno(EFAULT).
        For tests and tools; the North has its own copy_in."""
        return read_virtual(self.translate, self._platform.physmem.mem, vaddr, length)

    def write(self, vaddr: int, data: bytes | bytearray | memoryview) -> None:
        """Copy into guest virtual memory (needs user write permission)."""
        write_virtual(self.translate, self._platform.physmem.mem, vaddr, data)
