"""Clean pages of files, kept for every private mapping of the same file version.

Programs map the same files over and over: each exec of a binary maps its
text again, each process maps the same libraries. As Linux's page cache, this
cache keeps those pages after the last mapping goes (a shell running a
dynamic program in a loop reads ld.so and libc once, not at every exec), up to
``limit`` frames, least recently used files first out, and gives frames back when
guest memory runs out (``reclaim``, called by ``PhysMem.alloc``).

Rules that keep it safe:
- A frame here is only ever mapped read-only and copy-on-write (``mm`` puts
  every page it got from the cache in ``cow``), so nobody writes it: a write
  fault copies it (the cache's own reference makes it shared).
- The cache holds one reference of its own on each frame it keeps. Guest
  frame accounting (snapshots) counts those (``held``).
- Pages are keyed by the file's (dev, ino, size, mtime, ctime) *at fault
  time*, so a write to the file (which moves mtime and ctime) starts a new
  version, and a fault sees the file as it is when it happens. Inserting a
  page of a new version drops every page of the file's older versions.
- Only whole pages of file data (or the page holding the end of the file,
  zero-filled after it) are kept; a page a mapping cuts short (an ELF
  segment's last page, where its bss begins) is never shared.
"""

from __future__ import annotations

import weakref
from collections.abc import Container

from cove.abi.errno import Errno

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from cove.kernel.physmem import PhysMem

FileKey = tuple[int, int, int, int, int]
S_IFMT, S_IFREG = 0o170000, 0o100000
LIMIT_FRACTION = 8  # the cache keeps at most this fraction of guest memory


def file_key(source: object) -> tuple[FileKey, int] | None:
    """(version key, size) of a mapped file, or None if it cannot be shared
    (no full stat, or not a regular file)."""
    try:
        st = source.stat()  # type: ignore[attr-defined]
    except (AttributeError, Errno):
        return None
    return stat_key(st)


def stat_key(st: object) -> tuple[FileKey, int] | None:
    """``file_key`` from a stat result already at hand."""
    try:
        key = (st.dev, st.ino, st.size, st.mtime_ns, st.ctime_ns)  # type: ignore[attr-defined]
        if st.mode & S_IFMT != S_IFREG:  # type: ignore[attr-defined]
            return None
    except AttributeError:
        return None
    return key, key[2]


class PageCache:
    """File pages by (file version, page offset), each holding a frame reference.

    Recency is kept per file version, not per page (one dict move per lookup
    instead of one per page): eviction takes the pages of the least recently
    used version first.
    """

    __slots__ = ("_by_frame", "_pages", "_versions", "hits", "limit", "misses")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        # version -> page offset -> frame; least recently used version first.
        self._pages: dict[FileKey, dict[int, int]] = {}
        self._by_frame: dict[int, tuple[FileKey, int]] = {}  # frame -> (version, page offset)
        self._versions: dict[tuple[int, int], FileKey] = {}  # (dev, ino) -> cached version
        self.hits = self.misses = 0

    def pages(self, key: FileKey) -> dict[int, int] | None:
        """Page offset -> frame for one file version (do not modify); marks the
        version as just used."""
        pages = self._pages.pop(key, None)
        if pages is not None:
            self._pages[key] = pages
        return pages

    def lookup(self, key: FileKey, pgoff: int) -> int | None:
        pages = self._pages.get(key)
        return None if pages is None else pages.get(pgoff)

    def insert(self, phys: PhysMem, key: FileKey, pgoff: int, frame: int) -> None:
        """Keep ``frame`` (mapped read-only by its owner) as that page of that
        version; the cache takes a reference of its own."""
        ident = (key[0], key[1])
        old = self._versions.get(ident)
        if old != key:
            if old is not None:
                self._drop_version(phys, old)
            self._versions[ident] = key
        pages = self._pages.get(key)
        if pages is None:
            pages = self._pages[key] = {}
        elif pgoff in pages:  # cached meanwhile: keep the first
            return
        phys.ref(frame)
        pages[pgoff] = frame
        self._by_frame[frame] = (key, pgoff)
        if len(self._by_frame) > self.limit:
            self.evict(phys, len(self._by_frame) - self.limit)

    def owns(self, frame: int) -> bool:
        return frame in self._by_frame

    @property
    def frames(self) -> Container[int]:
        """The frames the cache keeps (``in`` tests; do not modify): the index
        itself where a restore shares it (``BaseDict``), else its keys."""
        by_frame = self._by_frame
        return by_frame.keys() if type(by_frame) is dict else by_frame

    def held(self) -> list[int]:
        """Every frame the cache holds a reference on."""
        return list(self._by_frame)

    def evict(self, phys: PhysMem, count: int) -> int:
        """Let go of up to ``count`` pages, those of the least recently used
        versions first; returns how many frames that freed (a page still
        mapped somewhere stays with its mapping)."""
        freed = 0
        while count > 0 and self._pages:
            pages = next(iter(self._pages.values()))
            frame = next(iter(pages.values()))
            self._remove(frame)
            if phys.unref(frame) == 0:
                freed += 1
            count -= 1
        return freed

    def clear(self, phys: PhysMem) -> None:
        self.evict(phys, len(self._by_frame))

    def _drop_version(self, phys: PhysMem, key: FileKey) -> None:
        for frame in list(self._pages.get(key, {}).values()):
            self._remove(frame)
            phys.unref(frame)

    def _remove(self, frame: int) -> None:
        key, pgoff = self._by_frame.pop(frame)
        pages = self._pages[key]
        del pages[pgoff]
        if not pages:
            del self._pages[key]
            ident = (key[0], key[1])
            if self._versions.get(ident) == key:
                del self._versions[ident]

    def __len__(self) -> int:
        return len(self._by_frame)


_caches: weakref.WeakKeyDictionary[PhysMem, PageCache] = weakref.WeakKeyDictionary()


def cache_for(phys: PhysMem) -> PageCache:
    """The page cache of one guest memory (one sandbox)."""
    c = _caches.get(phys)
    if c is None:
        c = _caches[phys] = PageCache(max(16, phys.nframes // LIMIT_FRACTION))
    return c


def reclaim(phys: PhysMem, want: int) -> int:
    """Guest memory ran out: free up to ``want`` frames the cache alone holds
    (least recently used first). Returns how many were freed."""
    c = _caches.get(phys)
    if c is None:
        return 0
    freed = 0
    while freed < want and len(c):
        freed += c.evict(phys, want - freed)
    return freed


def drop_cache(phys: PhysMem) -> None:
    """Forget the cache of a guest memory whose contents were replaced
    wholesale (its frames, and the cache's references, no longer exist)."""
    _caches.pop(phys, None)
