"""Readying the first restore of a snapshot while its file is still being
checked (``cove restore``): the guest memory mapped from the image, the pages
the guest can write copied up front (``prefault``), a VM made and given that
memory (its memslot set: nothing runs in it until the restore).

All of it runs on one helper thread and is host work that lets go of the
GIL (madvise, KVM ioctls), so it overlaps the imports and the unpickling
the restore does on the calling thread. Nothing staged is used before the
file's checksum matched: ``Snapshot`` hands the memory to its first restore
only after ``Reading.finish``, and only if it was made from the same verified
numbers (image offset and length, memory size).
"""

from __future__ import annotations

import threading

from cove.snapfile import PAGE, Reading

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from typing import Any

    from cove.kernel.physmem import PhysMem

_MADV_POPULATE_WRITE = 23


def prefault(phys: Any, runs: list[list[int]]) -> None:
    """Write-fault the pages the guest may write without the North's help
    (``runs`` of frames) into ``phys`` now: the host copies them in one pass
    instead of a copy-on-write fault (two VM exits and a shadow-page zap)
    for each one the guest writes later. Best effort (Linux 5.14+)."""
    import ctypes  # ctypes lets go of the GIL (mmap.madvise does not)

    madvise = ctypes.CDLL(None, use_errno=True).madvise
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    for a, b in runs:
        if 0 <= a < b <= phys.nframes:  # an old kernel's EINVAL: no matter
            madvise(phys.address + a * PAGE, (b - a) * PAGE, _MADV_POPULATE_WRITE)


class Staged:
    """Guest memory for one restore, made from a ``Reading`` before it is
    verified. ``take`` gives it out once; ``close`` releases what was not taken."""

    def __init__(self, reading: Reading, *, prefault: bool) -> None:
        self.phys: PhysMem | None = None
        self.vm: Any = None  # a KvmPlatform attached to ``phys`` (vmpool.take)
        self.prefaulted = False
        self._key: tuple[int, int, int] = (0, 0, 0)
        self._thread: threading.Thread | None = None
        meta = reading.meta_hint()
        if meta is None or not meta.get("has_guest") or meta.get("platform") != "kvm" or \
                not reading.image_length:
            return
        try:
            memory = int(meta["memory"])
            runs = [(int(a), int(b)) for a, b in meta.get("writable", ())] if prefault else []
            from cove.kernel.physmem import PhysMem
            from cove.platform.kvm import kvm_unavailable_reason

            if kvm_unavailable_reason() is not None:
                return
            from cove.platform.kvm import vmpool
            from cove.platform.kvm.platform import _install_kick_handler

            # A VM is made on the helper thread only if its signal handler is
            # in place (Python installs handlers on the main thread only).
            make_vm = threading.current_thread() is threading.main_thread()
            if make_vm:
                _install_kick_handler()

            self.phys = PhysMem.from_image(reading.fd, memory, reading.image_offset,
                                           reading.image_length)
        except Exception:  # a damaged file: finish() says what is wrong
            return
        self._key = (memory, reading.image_offset, reading.image_length)
        self.prefaulted = bool(runs)
        self._thread = threading.Thread(target=self._work,
                                        args=(self.phys, runs, vmpool if make_vm else None),
                                        name="cove-snapshot-stage")
        self._thread.start()

    def _work(self, phys: Any, runs: list[list[int]], vmpool: Any) -> None:
        try:
            if runs:
                prefault(phys, runs)
            if vmpool is not None:
                # The memslot change waits for an SRCU grace period: here, not
                # on the restoring thread.
                self.vm = vmpool.take(phys)
        except Exception:  # best effort: the restore makes what is missing
            pass

    def take(self, memory: int, image_offset: int,
             image_length: int) -> tuple[PhysMem, Any] | None:
        """(the staged memory, its VM or None) if made for exactly this image (once)."""
        self._join()
        phys, self.phys = self.phys, None
        vm, self.vm = self.vm, None
        if phys is not None and self._key != (memory, image_offset, image_length):
            _drop(phys, vm)
            return None
        return None if phys is None else (phys, vm)

    def close(self) -> None:
        self._join()
        phys, self.phys = self.phys, None
        vm, self.vm = self.vm, None
        if phys is not None:
            _drop(phys, vm)

    def _join(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None


def _drop(phys: Any, vm: Any) -> None:
    if vm is not None:
        vm.destroy()  # attached to memory no restore will use
    phys.close()
