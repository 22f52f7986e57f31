"""One pass over a tar archive: its members as small records with data offsets.

``iter_members`` reads only headers (the stdlib ``tarfile`` seeks over data),
so indexing a 100 MB archive touches a few KiB. GNU and PAX long names and
link names, PAX nanosecond mtimes, and GNU/PAX sparse maps are all decoded by
``tarfile``; this module turns each header into a ``Member`` with a normalized
path, or reports why it skipped it.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable, Iterator

from cove.dataclass import dataclass
from cove.fs.node import S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFREG, makedev
from cove.fs.tarsource import ArchiveError, ByteSource, SourceReader

# Member.kind of a hard link (not a file type: it names another member).
HARDLINK = 0

_KINDS = {
    tarfile.REGTYPE: S_IFREG,
    tarfile.AREGTYPE: S_IFREG,
    tarfile.CONTTYPE: S_IFREG,
    tarfile.GNUTYPE_SPARSE: S_IFREG,
    tarfile.DIRTYPE: S_IFDIR,
    b"D": S_IFDIR,  # GNU incremental "dumpdir": a directory plus a listing we ignore
    tarfile.SYMTYPE: S_IFLNK,
    tarfile.LNKTYPE: HARDLINK,
    tarfile.CHRTYPE: S_IFCHR,
    tarfile.BLKTYPE: S_IFBLK,
    tarfile.FIFOTYPE: S_IFIFO,
}

Path = tuple[str, ...]
SkipFn = Callable[[str, str], None]


@dataclass(slots=True)
class Member:
    """One archive member. ``offset`` is where its data starts in the source;
    ``sparse`` is the GNU/PAX sparse map ``((file_offset, length), ...)`` whose
    data chunks are stored back to back from ``offset``."""

    name: str  # as in the archive, for messages
    path: Path  # normalized components; () is the root
    kind: int  # S_IFREG, S_IFDIR, ... or HARDLINK
    perm: int
    uid: int
    gid: int
    mtime_ns: int
    size: int = 0
    offset: int = 0
    linkname: str = ""
    rdev: int = 0
    sparse: tuple[tuple[int, int], ...] | None = None

    @property
    def stored(self) -> int:
        """Bytes of data the archive holds for this member."""
        if self.sparse is None:
            return self.size if self.kind == S_IFREG else 0
        return sum(n for _, n in self.sparse)


def normalize(name: str) -> Path | None:
    """Components of a member or link name with ``.``, empty parts and leading
    ``/`` dropped; ``None`` if it has a ``..`` component (which could climb out
    of the tree, so such names are refused rather than resolved)."""
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        return None
    return parts


def parse_pax_time(value: str) -> int | None:
    """A PAX ``mtime`` (``"1700000000.123456789"``, may be negative) in ns, exactly."""
    neg = value.startswith("-")
    whole, _, frac = value.lstrip("-").partition(".")
    if not whole.isdigit() or (frac and not frac.isdigit()):
        return None
    ns = int(whole) * 1_000_000_000 + int((frac + "000000000")[:9])
    return -ns if neg else ns


def iter_members(src: ByteSource, skip: SkipFn) -> Iterator[Member]:
    """The members of the uncompressed tar in ``src``, in archive order.

    Members that cannot be represented are passed to ``skip(name, reason)``
    instead. Raises ``ArchiveError`` if ``src`` is not a tar or is truncated.
    """
    if src.size == 0:
        return
    reader = io.BufferedReader(SourceReader(src))
    try:
        tf = tarfile.open(fileobj=reader, mode="r:", encoding="utf-8",
                          errors="surrogateescape")
    except tarfile.TarError as e:
        raise ArchiveError(f"not a tar archive: {e}") from e
    while True:
        try:
            ti = tf.next()
        except (tarfile.TarError, ValueError, UnicodeError) as e:
            raise ArchiveError(f"corrupt tar archive: {e}") from e
        if ti is None:
            break
        # tarfile remembers every member; we only want a pass over them.
        tf.members.clear()
        m = _member(ti, skip)
        if m is None:
            continue
        if m.offset + m.stored > src.size:
            raise ArchiveError(f"tar archive truncated inside {ti.name!r}")
        yield m


def _member(ti: tarfile.TarInfo, skip: SkipFn) -> Member | None:
    kind = _KINDS.get(ti.type)
    if kind is None:
        skip(ti.name, f"unsupported member type {ti.type!r}")
        return None
    path = normalize(ti.name)
    if path is None:
        skip(ti.name, "'..' in member name")
        return None
    mtime_ns = None
    if "mtime" in ti.pax_headers:
        mtime_ns = parse_pax_time(ti.pax_headers["mtime"])
    if mtime_ns is None:
        mtime_ns = int(ti.mtime) * 1_000_000_000
    m = Member(name=ti.name, path=path, kind=kind, perm=ti.mode & 0o7777, uid=ti.uid,
               gid=ti.gid, mtime_ns=mtime_ns)
    if kind == S_IFREG:
        m.size = ti.size
        m.offset = ti.offset_data
        if ti.sparse is not None:
            sparse = tuple((int(o), int(n)) for o, n in ti.sparse if n > 0)
            end = 0
            for o, n in sparse:
                if o < end or o + n > ti.size:
                    skip(ti.name, "malformed sparse map")
                    return None
                end = o + n
            m.sparse = sparse
    elif kind in (S_IFLNK, HARDLINK):
        m.linkname = ti.linkname
    elif kind in (S_IFCHR, S_IFBLK):
        m.rdev = makedev(ti.devmajor, ti.devminor)
    return m
