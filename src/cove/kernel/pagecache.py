"""Clean pages of files, shared by every private mapping of the same file version.

Programs map the same files over and over: each exec of a binary maps its
text again, each process maps the same libraries. Linux serves those from
its page cache; cove reads the file into fresh frames at every fault unless
some live mapping already holds the page, which is what this cache finds.

Rules that keep it safe:
- A frame here is only ever mapped read-only and copy-on-write (``mm`` puts
  every page it got from the cache in ``cow``), so nobody writes it; the one
  mapping left holding it may take it over, and then it leaves the cache.
- The cache holds no reference of its own: a frame belongs to the memory maps
  that map it, and ``forget`` drops it when the last one lets go. Guest frame
  accounting (snapshots) sees nothing but memory maps.
- Pages are keyed by the file's (dev, ino, size, mtime, ctime) *at fault
  time*, so a write to the file (which moves mtime and ctime) starts a new
  version, and a fault sees the file as it is when it happens, as before.
- Only whole pages of file data (or the page holding the end of the file,
  zero-filled after it) are shared; a page a mapping cuts short (an ELF
  segment's last page, where its bss begins) is never shared.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

from cove.abi.errno import Errno

if TYPE_CHECKING:
    from cove.kernel.physmem import PhysMem

FileKey = tuple[int, int, int, int, int]
S_IFMT, S_IFREG = 0o170000, 0o100000


def file_key(source: object) -> tuple[FileKey, int] | None:
    """(version key, size) of a mapped file, or None if it cannot be shared
    (no full stat, or not a regular file)."""
    try:
        st = source.stat()  # type: ignore[attr-defined]
        key = (st.dev, st.ino, st.size, st.mtime_ns, st.ctime_ns)
        if st.mode & S_IFMT != S_IFREG:
            return None
    except (AttributeError, Errno):
        return None
    return key, st.size


class PageCache:
    """File pages currently mapped somewhere, by (file version, page offset)."""

    __slots__ = ("_by_frame", "_pages", "hits", "misses")

    def __init__(self) -> None:
        self._pages: dict[FileKey, dict[int, int]] = {}
        self._by_frame: dict[int, tuple[FileKey, int]] = {}
        self.hits = self.misses = 0

    def lookup(self, key: FileKey, pgoff: int) -> int | None:
        pages = self._pages.get(key)
        return None if pages is None else pages.get(pgoff)

    def insert(self, key: FileKey, pgoff: int, frame: int) -> None:
        """``frame`` (mapped read-only by its owner) holds that page of that version."""
        self._pages.setdefault(key, {})[pgoff] = frame
        self._by_frame[frame] = (key, pgoff)

    def owns(self, frame: int) -> bool:
        return frame in self._by_frame

    def forget(self, frame: int) -> None:
        """The frame was freed or taken over by its last user."""
        entry = self._by_frame.pop(frame, None)
        if entry is None:
            return
        key, pgoff = entry
        pages = self._pages[key]
        del pages[pgoff]
        if not pages:
            del self._pages[key]

    def __len__(self) -> int:
        return len(self._by_frame)


_caches: weakref.WeakKeyDictionary[PhysMem, PageCache] = weakref.WeakKeyDictionary()


def cache_for(phys: PhysMem) -> PageCache:
    """The page cache of one guest memory (one sandbox)."""
    c = _caches.get(phys)
    if c is None:
        c = _caches[phys] = PageCache()
    return c
