"""Reading a saved snapshot file and checking it, with nothing of cove imported.

Layout of the file (written by ``Snapshot.save``), all little-endian::

    header   "COVESNAP", format u32, flags u32, meta_len u64, refs_len u64,
             state_len u64, image_offset u64, image_len u64, crc32 u32, 28 zeros
    meta     JSON         refs   u32 (frame, count) pairs        state  pickle
    image    at image_offset (page aligned): image_len bytes of guest memory,
             only frames in use written (the rest are holes)

The CRC-32 covers the header fields before it, meta, refs, state and every
frame in use, so a truncated, corrupted or edited file is refused before
anything is built from it. Why CRC-32 (format 2 had SHA-256): the check is
against damage, not against someone who means it: any checksum the file
carries itself, a SHA-256 as much as a CRC, is recomputed by whoever edits
the file on purpose (snapshot files are trusted input, like the programs in
them). zlib's CRC-32 runs at ~4 GB/s here and lets go of the GIL; loading
OpenSSL for SHA-256 alone held the GIL ~2.7 ms of every ``cove restore``.

Why a module of its own: ``Reading`` reads the header and body at once and
checks the image on a helper thread, so the caller can import and ready the
rest of cove meanwhile. ``cove
restore`` starts one before it imports anything else; ``Snapshot.load``
uses the same. Each byte of the file is read once: the image's pages are
hashed through a mapping of the page cache, the pages a restore later maps
copy-on-write.
"""

from __future__ import annotations

import mmap
import os
import struct
import sys
import threading
from array import array

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from typing import Any

# 2: the VM's frames and page tables are in the image (meta "kvm"); 3: CRC-32
FORMAT = 3
MAGIC = b"COVESNAP"
HEADER = struct.Struct("<8sIIQQQQQ32s")
PAGE = 4096


class FileProblem(Exception):
    """The file cannot be used; ``kind`` is "open" (it cannot be opened) or
    "format" (not an intact snapshot of this format). The message names the file."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class Checksum:
    """CRC-32 of everything fed to ``update``; ``digest`` is the header's field."""

    __slots__ = ("crc",)

    def __init__(self, data: bytes = b"") -> None:
        self.crc = _crc32(data)

    def update(self, data: Any) -> None:
        self.crc = _crc32(data, self.crc)

    def digest(self) -> bytes:
        return self.crc.to_bytes(4, "little") + bytes(28)


try:  # zlib's lets go of the GIL for big buffers
    from zlib import crc32 as _crc32
except ImportError:  # pragma: no cover - a Python without zlib
    from binascii import crc32 as _crc32


def page_up(n: int) -> int:
    return (n + PAGE - 1) & ~(PAGE - 1)


def runs(refs: dict[int, int]) -> list[tuple[int, int]]:
    """Consecutive frames in use as [start, end) runs."""
    if refs:
        lo, hi = min(refs), max(refs)
        if hi - lo + 1 == len(refs):  # no holes (the usual image): one run, without sorting
            return [(lo, hi + 1)]
    out: list[tuple[int, int]] = []
    for f in sorted(refs):
        if out and out[-1][1] == f:
            out[-1] = (out[-1][0], f + 1)
        else:
            out.append((f, f + 1))
    return out


def hash_image(digest: Any, fd: int, offset: int, length: int, refs: dict[int, int]) -> None:
    """Feed the frames in use of the image at ``offset`` of ``fd`` to ``digest``."""
    img = mmap.mmap(fd, length, mmap.MAP_SHARED, mmap.PROT_READ, offset=offset)
    try:
        view = memoryview(img)
        try:
            for a, b in runs(refs):
                chunk = view[a * PAGE:b * PAGE]
                digest.update(chunk)
                chunk.release()
        finally:
            view.release()
    finally:
        img.close()


def parse_refs(raw: bytes, length: int, name: str) -> dict[int, int]:
    if len(raw) % 8:
        raise FileProblem("format", f"{name}: damaged frame table")
    flat = array("I")
    flat.frombytes(raw)
    if sys.byteorder != "little":  # pragma: no cover
        flat.byteswap()
    refs = dict(zip(flat[0::2], flat[1::2], strict=True))
    if (refs and (max(refs) + 1) * PAGE > length) or 0 in refs.values():
        raise FileProblem("format", f"{name}: damaged frame table")
    return refs


class Reading:
    """A snapshot file being read: the header, meta, frame table and state are
    read and checked for shape at once, the checksum computed on a helper
    thread. Never raises; ``finish`` says whether the file is intact.

    Until ``finish`` has returned, nothing read here is trusted: ``meta_raw``
    and ``state`` may be looked at (to ready a restore meanwhile) but not used.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.name = os.fspath(path)
        self.fd = -1
        self.problem: FileProblem | None = None
        self.meta_raw = b""
        self.state = b""
        self.refs: dict[int, int] = {}
        self.image_offset = 0
        self.image_length = 0
        self._want = b""
        self._meta: dict[str, Any] | None = None
        self._digest: bytes | None = None
        self._hash_error: BaseException | None = None
        self._hasher: threading.Thread | None = None
        try:
            self._start()
        except FileProblem as e:
            self.problem = e
            self._close()
        except OSError as e:
            self.problem = FileProblem("format", f"{self.name}: {e.strerror or e}")
            self._close()

    def _start(self) -> None:
        name = self.name
        try:
            self.fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise FileProblem("open", f"{name}: {e.strerror}") from None
        size = os.fstat(self.fd).st_size
        raw = os.pread(self.fd, HEADER.size, 0)
        if len(raw) < HEADER.size or raw[:8] != MAGIC:
            raise FileProblem("format", f"{name}: not a cove snapshot")
        _magic, fmt, _flags, meta_len, refs_len, state_len, image_offset, length, want = \
            HEADER.unpack(raw)
        if fmt != FORMAT:
            raise FileProblem("format", f"{name}: snapshot format {fmt}; this cove reads "
                                        f"format {FORMAT}")
        body_end = HEADER.size + meta_len + refs_len + state_len
        if body_end > image_offset or image_offset % PAGE or length % PAGE or \
                size < image_offset + length:
            raise FileProblem("format", f"{name}: truncated or damaged snapshot "
                                        f"({size} bytes, expected {image_offset + length})")
        # The state (most of the body) is read on its own: slicing it out of
        # one read would copy it.
        front = os.pread(self.fd, meta_len + refs_len, HEADER.size)
        state = os.pread(self.fd, state_len, HEADER.size + meta_len + refs_len)
        if len(front) != meta_len + refs_len or len(state) != state_len:
            raise FileProblem("format", f"{name}: truncated snapshot")
        self.meta_raw = front[:meta_len]
        self.state = state
        self.refs = parse_refs(front[meta_len:], length, name)
        self.image_offset, self.image_length, self._want = image_offset, length, want
        self._hasher = threading.Thread(target=self._hash, args=(raw[:-32], front, state),
                                        name="cove-snapshot-hash")
        self._hasher.start()

    def _hash(self, head: bytes, front: bytes, state: bytes) -> None:
        try:
            digest = Checksum(head)
            digest.update(front)
            digest.update(state)
            if self.image_length:
                hash_image(digest, self.fd, self.image_offset, self.image_length, self.refs)
            self._digest = digest.digest()
        except BaseException as e:  # an unreadable file: finish says so
            self._hash_error = e

    def meta_hint(self) -> dict[str, Any] | None:
        """The metadata as the file says, not checked yet (None if unreadable).
        Parsed once: after ``finish`` it is the checked metadata (the same bytes);
        callers only read it."""
        if self.problem is not None:
            return None
        if self._meta is None:
            try:
                from cove.jsonread import loads  # not json: it imports re (~2.5 ms)

                meta = loads(self.meta_raw)
            except ValueError:
                return None
            self._meta = meta if isinstance(meta, dict) else None
        return self._meta

    def finish(self) -> tuple[bytes, dict[int, int], bytes, int, int]:
        """(meta_raw, refs, state, fd, image_offset) of an intact file, the fd
        now the caller's; else FileProblem (and the fd is closed)."""
        if self._hasher is not None:
            self._hasher.join()
            self._hasher = None
        if self.problem is None:
            if self._hash_error is not None:
                e = self._hash_error
                why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
                self.problem = FileProblem("format", f"{self.name}: unreadable image ({why})")
            elif self._digest != self._want:
                self.problem = FileProblem("format", f"{self.name}: checksum mismatch (the file "
                                                     "is corrupted or was modified)")
        if self.problem is not None:
            self._close()
            raise self.problem
        fd, self.fd = self.fd, -1
        return self.meta_raw, self.refs, self.state, fd, self.image_offset

    def _close(self) -> None:
        if self.fd >= 0:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = -1
