"""Guest physical memory: one memfd, mmapped into this process, cut into 4 KiB frames.

Platform-independent. Every platform maps these same frames for the guest (KVM
registers the mapping as a memslot; userland maps ranges of the memfd into its
stub processes), so the North reads and writes guest memory here with plain
memoryview slicing: no copying syscalls, no platform calls.

Frames carry a reference count so copy-on-write (fork, MAP_PRIVATE) can share a
frame between page tables and copy it only when a writer appears. A frame is
handed out zero-filled; its old contents never leak to its next owner.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import threading
from array import array
from collections.abc import Iterable

from cove.abi.errno import E, Errno

_libc = ctypes.CDLL(None, use_errno=True)
_libc_mmap = _libc.mmap
_libc_mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_libc_mmap.restype = ctypes.c_void_p
_libc_mprotect = _libc.mprotect
_libc_mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc_mprotect.restype = ctypes.c_int
_MAP_FIXED = 0x10

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PAGE_MASK = PAGE_SIZE - 1
_ZERO_PAGE = bytes(PAGE_SIZE)


class PhysMem:
    """A fixed-size pool of guest physical frames backed by one memfd.

    Physical address ``p`` is byte ``p`` of the memfd; frame ``n`` covers
    ``[n * PAGE_SIZE, (n + 1) * PAGE_SIZE)``. The memfd is sparse: a frame uses
    host memory only once something touched it.
    """

    def __init__(self, size: int, name: str = "cove-physmem") -> None:
        if size <= 0 or size & PAGE_MASK:
            raise ValueError(f"physical memory size must be a positive multiple of {PAGE_SIZE}")
        self.size = size
        self.nframes = size >> PAGE_SHIFT
        # MFD_CLOEXEC: a host child (if any) must never inherit guest memory.
        self.fd = os.memfd_create(name, os.MFD_CLOEXEC)
        os.ftruncate(self.fd, size)
        self.mm = mmap.mmap(self.fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.mem = memoryview(self.mm)
        # The host virtual address of byte 0: KVM needs it for its memslot.
        self._anchor = ctypes.c_char.from_buffer(self.mm)
        self.address = ctypes.addressof(self._anchor)
        self._lock = threading.Lock()
        self._free: list[int] = []  # LIFO: recently freed frames are likely still cached
        self._next = 0  # frames >= _next were never handed out
        self._refs = array("I")  # refcount per frame below _next
        self.private = False  # True: a copy-on-write view of a snapshot image (from_image)

    @classmethod
    def from_image(cls, fd: int, size: int, offset: int, length: int, *,
                   private: bool = True, name: str = "cove-physmem") -> PhysMem:
        """Guest memory whose first ``length`` bytes are a saved image: bytes
        ``[offset, offset + length)`` of ``fd`` (a snapshot). The rest reads as zeros.

        ``private``: map the image MAP_PRIVATE, so every sandbox restored from
        one image shares its unchanged pages with the others (copy-on-write by
        the host kernel); ``fd`` then stays the image's and ``zap`` keeps data.
        Otherwise the image is copied into a new memfd of our own (platforms
        that map ``fd`` elsewhere need that). Frame reference counts start at
        zero: the restorer sets them with ``adopt``.
        """
        if size <= 0 or size & PAGE_MASK or length & PAGE_MASK or not 0 <= length <= size:
            raise ValueError("image and memory sizes must be page multiples, image <= memory")
        if not private:
            self = cls(size, name)
            done = 0
            while done < length:
                n = os.copy_file_range(fd, self.fd, length - done, offset + done, done)
                if n <= 0:
                    raise OSError(f"image ends {length - done} bytes early")
                done += n
            return self
        self = cls.__new__(cls)
        self.size = size
        self.nframes = size >> PAGE_SHIFT
        self.fd = os.dup(fd)
        self.mm = mmap.mmap(-1, size, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
                            mmap.PROT_READ | mmap.PROT_WRITE)
        self.mem = memoryview(self.mm)
        self._anchor = ctypes.c_char.from_buffer(self.mm)
        self.address = ctypes.addressof(self._anchor)
        if length:
            got = _libc_mmap(self.address, length, mmap.PROT_READ | mmap.PROT_WRITE,
                             mmap.MAP_PRIVATE | _MAP_FIXED, fd, offset)
            if got != self.address:
                err = ctypes.get_errno()
                self.close()
                raise OSError(err, f"mapping the memory image failed: {os.strerror(err)}")
        self._lock = threading.Lock()
        self._free = []
        self._next = 0
        self._refs = array("I")
        self.private = True
        return self

    def replace(self, fd: int | None, offset: int = 0, length: int = 0) -> None:
        """Drop all of guest memory and start again *at the same host address*
        (a VM's memslot over it stays valid; its MMU notifier sees the change):
        with ``fd``, the first ``length`` bytes become a copy-on-write view of
        bytes ``[offset, offset + length)`` of ``fd`` (as ``from_image``), the
        rest zeros; with None, a fresh memfd of zeros (as a new PhysMem). Every
        frame is free afterwards (a restorer then calls ``adopt``). Views of
        the memory stay valid and show the new contents."""
        if length & PAGE_MASK or not 0 <= length <= self.size or (fd is None and length):
            raise ValueError("the image must be a page multiple no larger than memory")
        rw = mmap.PROT_READ | mmap.PROT_WRITE
        if fd is None:
            new = os.memfd_create("cove-physmem", os.MFD_CLOEXEC)
            os.ftruncate(new, self.size)
            maps = [(0, self.size, mmap.MAP_SHARED, new, 0)]
        else:
            new = os.dup(fd)
            maps = [(0, length, mmap.MAP_PRIVATE, fd, offset),
                    (length, self.size - length, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)]
        try:
            for start, n, flags, src, off in maps:
                if n and _libc_mmap(self.address + start, n, rw, flags | _MAP_FIXED, src,
                                    off) != self.address + start:
                    err = ctypes.get_errno()
                    raise OSError(err, f"replacing guest memory failed: {os.strerror(err)}")
        except BaseException:
            os.close(new)
            raise
        old, self.fd = self.fd, new
        os.close(old)
        with self._lock:
            self._free = []
            self._next = 0
            self._refs = array("I")
            self.private = fd is not None
        from cove.kernel.pagecache import drop_cache  # the cache sits above this allocator

        drop_cache(self)  # its frames and references are gone with the old contents

    def adopt(self, refs: dict[int, int]) -> None:
        """Set the allocator from restored state: ``refs`` maps every frame in
        use to its reference count; every other frame below the highest one
        is free (and zero-filled when handed out, as always)."""
        with self._lock:
            top = max(refs, default=-1) + 1
            if top > self.nframes:
                raise ValueError(f"frame {top - 1:#x} outside guest memory")
            self._refs = array("I", bytes(4 * top))
            for f, c in refs.items():
                self._refs[f] = c
            self._next = top
            self._free = [f for f in range(top - 1, -1, -1) if not self._refs[f]]

    @staticmethod
    def accounting(refs: dict[int, int]) -> tuple[array, list[int]]:
        """``adopt``'s allocator state for ``refs`` (reference count per frame
        below the highest in use, free frames), computed once for many
        memories restored from one snapshot (``adopt_accounting``)."""
        top = max(refs, default=-1) + 1
        counts = array("I", bytes(4 * top))
        for f, c in refs.items():
            counts[f] = c
        return counts, [f for f in range(top - 1, -1, -1) if not counts[f]]

    def adopt_accounting(self, acc: tuple[array, list[int]]) -> None:
        """``adopt`` from an ``accounting`` result (copied, not shared)."""
        counts, free = acc
        if len(counts) > self.nframes:
            raise ValueError(f"frame {len(counts) - 1:#x} outside guest memory")
        with self._lock:
            self._refs = array("I", counts)
            self._next = len(counts)
            self._free = list(free)

    def zap(self, paddr: int, length: int) -> None:
        """Make every hypervisor mapping of these bytes drop its translation
        (KVM's MMU notifier) while keeping the data. A shared memfd does it
        with MADV_DONTNEED (the memfd keeps the pages); a private image would
        lose the guest's changes that way, so it toggles the protection instead
        (mprotect also notifies)."""
        if not self.private:
            self.mm.madvise(mmap.MADV_DONTNEED, paddr, length)
            return
        addr = self.address + paddr
        for prot in (mmap.PROT_READ, mmap.PROT_READ | mmap.PROT_WRITE):
            if _libc_mprotect(addr, length, prot) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"mprotect of guest memory failed: {os.strerror(err)}")

    # --- allocation ---------------------------------------------------------

    def alloc(self, zero: bool = True) -> int:
        """A frame with refcount 1, zero-filled. Raises Errno(ENOMEM) when none is
        left (after the page cache gave back what it alone held).

        ``zero=False`` skips the zero fill: only for a caller that overwrites the
        whole frame before anyone can see it (a copy, a full page of file data).
        """
        while True:
            with self._lock:
                if self._free:
                    n = self._free.pop()
                    if zero:
                        off = n << PAGE_SHIFT
                        self.mem[off : off + PAGE_SIZE] = _ZERO_PAGE
                    self._refs[n] = 1
                    return n
                if self._next < self.nframes:
                    n = self._next  # never used: the memfd still reads as zeros
                    self._next += 1
                    self._refs.append(1)
                    return n
            if not self._reclaim():
                raise Errno(E.ENOMEM, "guest physical memory exhausted")

    def alloc_many(self, count: int, zero: bool = True) -> list[int]:
        """``count`` frames as ``alloc`` gives them, or none (ENOMEM gives back
        what was taken)."""
        out: list[int] = []
        with self._lock:
            free, refs, mem = self._free, self._refs, self.mem
            while len(out) < count and free:
                n = free.pop()
                if zero:
                    off = n << PAGE_SHIFT
                    mem[off : off + PAGE_SIZE] = _ZERO_PAGE
                refs[n] = 1
                out.append(n)
            fresh = min(count - len(out), self.nframes - self._next)
            if fresh > 0:
                first = self._next
                self._next += fresh
                refs.extend([1] * fresh)
                out.extend(range(first, first + fresh))
        try:
            while len(out) < count:
                out.append(self.alloc(zero))
        except Errno:
            self.unref_many(out)
            raise
        return out

    def _reclaim(self) -> bool:
        """Ask the page cache for frames; whether any came free."""
        from cove.kernel.pagecache import reclaim  # the cache sits above this allocator

        return reclaim(self, 64) > 0

    def ref(self, frame: int) -> int:
        """Add a reference (a second mapping, a COW share); returns the new count."""
        with self._lock:
            c = self._check(frame) + 1
            self._refs[frame] = c
            return c

    def ref_many(self, frames: list[int]) -> None:
        """``ref`` for each frame (all checked before any is counted)."""
        with self._lock:
            refs, top = self._refs, self._next
            for i, f in enumerate(frames):
                c = refs[f] if 0 <= f < top else 0
                if c == 0:
                    for g in frames[:i]:  # undo: a bad frame is a bug, not a half-done ref
                        refs[g] -= 1
                    raise ValueError(f"frame {f:#x} is not allocated")
                refs[f] = c + 1

    def unref(self, frame: int) -> int:
        """Drop a reference; at zero the frame returns to the pool. Returns the new count."""
        with self._lock:
            c = self._check(frame) - 1
            self._refs[frame] = c
            if c == 0:
                self._free.append(frame)
            return c

    def unref_many(self, frames: Iterable[int]) -> None:
        """``unref`` for each frame (a whole address space at exit or exec)."""
        with self._lock:
            refs, free, top = self._refs, self._free, self._next
            for f in frames:
                c = refs[f] - 1 if 0 <= f < top else -1
                if c < 0:
                    raise ValueError(f"frame {f:#x} is not allocated")
                refs[f] = c
                if c == 0:
                    free.append(f)

    free = unref

    def refcount(self, frame: int) -> int:
        """Current reference count (0 for a free frame)."""
        if not 0 <= frame < self._next:
            return 0
        return self._refs[frame]

    def _check(self, frame: int) -> int:
        if not 0 <= frame < self._next or self._refs[frame] == 0:
            raise ValueError(f"frame {frame:#x} is not allocated")
        return self._refs[frame]

    @property
    def frames_in_use(self) -> int:
        return self._next - len(self._free)

    @property
    def frames_free(self) -> int:
        return self.nframes - self.frames_in_use

    # --- access -------------------------------------------------------------

    def frame(self, frame: int) -> memoryview:
        """A writable view of one whole frame (no copy)."""
        off = frame << PAGE_SHIFT
        return self.mem[off : off + PAGE_SIZE]

    def view(self, paddr: int, length: int) -> memoryview:
        """A writable view of ``length`` bytes at physical address ``paddr`` (no copy)."""
        if paddr < 0 or paddr + length > self.size:
            raise ValueError(f"physical range {paddr:#x}+{length:#x} outside guest memory")
        return self.mem[paddr : paddr + length]

    def read(self, paddr: int, length: int) -> bytes:
        return bytes(self.view(paddr, length))

    def write(self, paddr: int, data: bytes | bytearray | memoryview) -> None:
        self.view(paddr, len(data))[:] = data

    def copy_frame(self, src: int, dst: int) -> None:
        """Copy a whole frame (the copy half of copy-on-write)."""
        s, d = src << PAGE_SHIFT, dst << PAGE_SHIFT
        self.mem[d : d + PAGE_SIZE] = self.mem[s : s + PAGE_SIZE]

    def close(self) -> None:
        """Unmap and close. Views handed out earlier must have been released."""
        del self._anchor
        self.mem.release()
        self.mm.close()
        os.close(self.fd)

    def __enter__(self) -> PhysMem:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
