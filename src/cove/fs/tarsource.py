"""Random-access, thread-safe byte sources behind archive filesystems (tarfs, OCI).

A ``ByteSource`` is a read-only byte range with a ``pread`` that any number of
threads may call at once. File nodes of a tar keep ``(source, offset)`` and read
lazily, so an archive is never held in memory.

Compressed archives cannot be read at random offsets cheaply (a gzip stream has
no index), so ``open_archive`` decompresses them once, streaming, into an
anonymous temporary file (``O_TMPFILE``: it never has a name on disk and
vanishes when closed) and serves reads from that. The compression is detected
by magic bytes, never by file name.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import stat
import tempfile
import threading
import zlib

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from typing import BinaryIO

_CHUNK = 1 << 20
# Decompressing more than this is refused: a few KiB of gzip can expand to
# terabytes, and the temporary file would fill the host's disk.
DEFAULT_MAX_DECOMPRESSED = 64 << 30

_GZIP = b"\x1f\x8b"
_BZIP2 = b"BZh"
_XZ = b"\xfd7zXZ\x00"
_ZSTD = b"\x28\xb5\x2f\xfd"


class ArchiveError(ValueError):
    """The archive or image is malformed, truncated, unsupported or too large.

    Raised while opening (indexing) an archive; the caller's input is at fault.
    Reads of an already opened archive report problems as ``Errno(EIO)``.
    """


class ByteSource:
    """A read-only random-access byte range; ``pread`` is thread-safe."""

    size: int = 0

    def pread(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes at ``offset``; short only at the end of the range."""
        raise NotImplementedError

    def view(self, base: int, length: int) -> ByteSource:
        """The sub-range ``[base, base + length)``, clamped to this source."""
        base = max(0, min(base, self.size))
        return _View(self, base, max(0, min(length, self.size - base)))

    def close(self) -> None:
        """Release what this source owns (views own nothing)."""


class FileSource(ByteSource):
    """A source over a seekable binary file object.

    Real files are read with ``os.pread`` on their descriptor (no shared file
    position, so reads run in parallel); any other file object is read under a
    lock around seek+read. ``owned`` sources close the file object on
    ``close()``, which waits for reads in flight and makes later reads raise
    ``ValueError``: a descriptor number must never be read after it is closed,
    because the host may already have reused it for an unrelated file.
    """

    def __init__(self, f: BinaryIO, *, owned: bool) -> None:
        self._f = f
        self._owned = owned
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._readers = 0
        self._closed = False
        self._fd = _real_fd(f)
        if self._fd is not None:
            self.size = os.fstat(self._fd).st_size
        else:
            with self._lock:
                pos = f.tell()
                self.size = f.seek(0, io.SEEK_END)
                f.seek(pos)

    def pread(self, offset: int, size: int) -> bytes:
        if offset < 0 or size < 0:
            raise ValueError("negative offset or size")
        size = min(size, self.size - offset)
        if size <= 0:
            return b""
        if self._fd is None:
            with self._lock:
                if self._closed:
                    raise ValueError("archive closed")
                self._f.seek(offset)
                return self._f.read(size)
        with self._lock:
            if self._closed:
                raise ValueError("archive closed")
            self._readers += 1
        try:
            parts = []
            while size > 0:
                chunk = os.pread(self._fd, size, offset)
                if not chunk:
                    break
                parts.append(chunk)
                offset += len(chunk)
                size -= len(chunk)
            return parts[0] if len(parts) == 1 else b"".join(parts)
        finally:
            with self._lock:
                self._readers -= 1
                if not self._readers:
                    self._idle.notify_all()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            while self._readers:
                self._idle.wait()
            if self._owned:
                self._f.close()


class _View(ByteSource):
    def __init__(self, parent: ByteSource, base: int, length: int) -> None:
        self._parent = parent
        self._base = base
        self.size = length

    def pread(self, offset: int, size: int) -> bytes:
        if offset < 0 or size < 0:
            raise ValueError("negative offset or size")
        size = min(size, self.size - offset)
        if size <= 0:
            return b""
        return self._parent.pread(self._base + offset, size)

    def view(self, base: int, length: int) -> ByteSource:
        # Flatten so a chain of views costs one addition, not a call per level.
        base = max(0, min(base, self.size))
        length = max(0, min(length, self.size - base))
        return _View(self._parent, self._base + base, length)


class SourceReader(io.RawIOBase):
    """A private seekable file object over a source, for tarfile and decompressors."""

    def __init__(self, src: ByteSource) -> None:
        super().__init__()
        self._src = src
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._src.size}[whence]
        pos = base + offset
        if pos < 0:
            raise OSError("negative seek position")
        self._pos = pos
        return pos

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._src.pread(self._pos, len(b))
        n = len(data)
        b[:n] = data
        self._pos += n
        return n


def _real_fd(f: BinaryIO) -> int | None:
    """The descriptor of ``f`` if reading it at an offset reads ``f``'s own bytes.

    Wrappers such as GzipFile also answer ``fileno()``, with the descriptor of
    the compressed file underneath, so only plain file objects qualify.
    """
    raw = getattr(f, "raw", f)
    if not isinstance(raw, io.FileIO) or raw.closed:
        return None
    if isinstance(f, io.BufferedWriter | io.BufferedRandom):
        f.flush()
    fd = raw.fileno()
    return fd if stat.S_ISREG(os.fstat(fd).st_mode) else None


def source_from(path_or_fileobj: str | os.PathLike[str] | BinaryIO, *, tmpdir: str | None = None
                ) -> ByteSource:
    """A source over a path (opened here, owned) or a caller's file object.

    A file object's archive starts at its current position. A non-seekable
    stream (a pipe) is first copied into an anonymous temporary file.
    """
    if isinstance(path_or_fileobj, str | os.PathLike):
        return FileSource(open(path_or_fileobj, "rb"), owned=True)
    f = path_or_fileobj
    if not f.seekable():
        tmp = tempfile.TemporaryFile(dir=tmpdir)
        while chunk := f.read(_CHUNK):
            tmp.write(chunk)
        tmp.flush()
        return FileSource(tmp, owned=True)
    src = FileSource(f, owned=False)
    start = f.tell()
    return src.view(start, src.size - start) if start else src


def compression_of(src: ByteSource) -> str | None:
    """``"gzip"``, ``"bzip2"``, ``"xz"``, ``"zstd"`` or ``None``, by magic bytes."""
    head = src.pread(0, 6)
    if head.startswith(_GZIP):
        return "gzip"
    if head.startswith(_BZIP2):
        return "bzip2"
    if head.startswith(_XZ):
        return "xz"
    if head.startswith(_ZSTD):
        return "zstd"
    return None


def open_archive(src: ByteSource, *, tmpdir: str | None = None,
                 max_decompressed: int = DEFAULT_MAX_DECOMPRESSED) -> ByteSource:
    """``src`` itself if it is uncompressed, else its decompressed bytes.

    Decompression streams ``src`` once into an anonymous temporary file in
    ``tmpdir`` (the system default if ``None``) that the returned source owns.
    """
    kind = compression_of(src)
    if kind is None:
        return src
    reader = io.BufferedReader(SourceReader(src), _CHUNK)
    stream: BinaryIO
    if kind == "gzip":
        stream = gzip.GzipFile(fileobj=reader, mode="rb")
    elif kind == "bzip2":
        stream = bz2.BZ2File(reader, "rb")
    elif kind == "xz":
        stream = lzma.LZMAFile(reader, "rb")
    else:
        stream = _zstd_reader(reader)
    tmp = tempfile.TemporaryFile(dir=tmpdir)
    total = 0
    try:
        with stream:
            while chunk := stream.read(_CHUNK):
                total += len(chunk)
                if total > max_decompressed:
                    raise ArchiveError(
                        f"{kind} archive expands beyond the {max_decompressed}-byte limit")
                tmp.write(chunk)
        tmp.flush()
    except (OSError, EOFError, zlib.error, lzma.LZMAError) as e:
        tmp.close()
        raise ArchiveError(f"corrupt {kind} data: {e}") from e
    except BaseException:
        tmp.close()
        raise
    return FileSource(tmp, owned=True)


def _zstd_reader(reader: BinaryIO) -> BinaryIO:
    try:
        import zstandard  # type: ignore[import-not-found]
    except ImportError as e:
        raise ArchiveError("zstd-compressed archive, and the zstandard module is not "
                           "installed") from e
    return zstandard.ZstdDecompressor().stream_reader(reader)  # type: ignore[no-any-return]
