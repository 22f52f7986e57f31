"""tarfs: a read-only filesystem whose tree and data come from a tar archive.

``TarFS(path_or_fileobj)`` indexes the archive in one pass over its headers
and serves file data lazily from the archive, so opening a large archive costs
memory for its metadata only.

- Uncompressed tars are read in place: each file node points at its member's
  data offset in the archive and reads with ``os.pread`` (or under a lock for
  file objects that have no descriptor), so reads are thread-safe.
- gzip, bzip2 and xz tars (detected by magic bytes; zstd too when the
  ``zstandard`` module is installed) are decompressed once, streaming, into an
  anonymous temporary file (``O_TMPFILE`` in ``tmpdir``; it never has a name
  and disappears when the filesystem is closed or collected), and served from
  there. That costs disk equal to the uncompressed size, never memory.

What the tree holds, and the rules for odd archives (as extraction would do):
- names are normalized: leading ``/`` and ``./`` and empty components are
  dropped; a member with a ``..`` component is skipped;
- a later member with the same name replaces the earlier one (a directory
  over a directory only updates its metadata and keeps the children);
- missing parent directories are implied (mode 0755, root-owned); a member
  under a name that is not a directory is skipped;
- a hard link shares its target's inode (``nlink`` counts the names); one
  whose target is not an earlier non-directory member of the archive is
  skipped: no host path is ever looked at;
- symlink targets are kept verbatim (the VFS resolves them in the sandbox);
- atime and ctime are the mtime (with PAX nanoseconds when present).
Skipped members are logged and listed in ``fs.skipped``.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable

from cove.dataclass import dataclass
from cove.fs.node import S_IFDIR, S_IFLNK, S_IFREG, SQUASHFS_MAGIC, FileSystem, StatFs
from cove.fs.tarindex import HARDLINK, Member, Path, iter_members, normalize
from cove.fs.tarnodes import TarDir, TarFile, TarNode, TarSpecial, TarSymlink
from cove.fs.tarsource import (
    DEFAULT_MAX_DECOMPRESSED,
    ArchiveError,
    ByteSource,
    open_archive,
    source_from,
)
from cove.lazylog import getLogger

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from typing import BinaryIO

__all__ = ["ArchiveError", "ArchiveFS", "Skipped", "TarFS"]

log = getLogger(__name__)  # logging is imported only if something is logged

ST_RDONLY = 1
IMPLIED_DIR_PERM = 0o755


@dataclass(frozen=True, slots=True)
class Skipped:
    """A member left out of the tree, and why."""

    name: str
    reason: str


class ArchiveFS(FileSystem):
    """A read-only tree of archive inodes, built once, then only read.

    Base of ``TarFS`` and of the flattened OCI image filesystem. ``close()``
    releases the archive files (reads afterwards fail with ``EIO``).
    """

    name = "tarfs"
    magic = SQUASHFS_MAGIC

    def __init__(self) -> None:
        super().__init__(readonly=True)
        self._next_ino = itertools.count(2)
        self._root = TarDir(self, 1, IMPLIED_DIR_PERM, 0, 0, 0)
        self._sources: list[ByteSource] = []
        self.skipped: list[Skipped] = []
        self._files = 0
        self._blocks = 0

    @property
    def root(self) -> TarDir:
        return self._root

    def statfs(self) -> StatFs:
        return StatFs(fstype=self.magic, bsize=4096, blocks=self._blocks // 8, files=self._files,
                      frsize=4096, flags=ST_RDONLY)

    def close(self) -> None:
        for src in self._sources:
            src.close()
        self._sources.clear()

    def __enter__(self) -> ArchiveFS:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _skip(self, name: str, reason: str) -> None:
        log.warning("%s: skipping archive member %r: %s", self.name, name, reason)
        self.skipped.append(Skipped(name, reason))


class TarFS(ArchiveFS):
    """A read-only filesystem over one tar archive (see the module docstring).

    ``path_or_fileobj`` is a path or a binary file object positioned at the
    archive's start (left open for the caller; it must stay open while the
    filesystem is used). Raises ``ArchiveError`` for a malformed archive.
    """

    def __init__(self, path_or_fileobj: str | os.PathLike[str] | BinaryIO, *,
                 tmpdir: str | None = None,
                 max_decompressed: int = DEFAULT_MAX_DECOMPRESSED) -> None:
        super().__init__()
        raw = source_from(path_or_fileobj, tmpdir=tmpdir)
        try:
            src = open_archive(raw, tmpdir=tmpdir, max_decompressed=max_decompressed)
        except BaseException:
            raw.close()
            raise
        if src is not raw:
            raw.close()  # everything is in the temporary file now
        self._sources.append(src)
        try:
            tree = TreeBuilder(self)
            tree.add_all(src, iter_members(src, self._skip))
            tree.finish()
        except BaseException:
            self.close()
            raise


class TreeBuilder:
    """Builds (and, for image layers, edits) an ``ArchiveFS`` tree from members."""

    def __init__(self, fs: ArchiveFS) -> None:
        self.fs = fs

    def add_all(self, src: ByteSource, members: Iterable[Member]) -> None:
        for m in members:
            self.add(src, m)

    def add(self, src: ByteSource, m: Member) -> None:
        """Put ``m`` (whose data is in ``src``) into the tree, replacing what is there."""
        if not m.path:
            if m.kind == S_IFDIR:
                self._set_meta(self.fs.root, m)
            else:
                self.fs._skip(m.name, "a non-directory member names the root")
            return
        parent = self.dir_at(m.path[:-1], create=True, mtime_ns=m.mtime_ns)
        if parent is None:
            self.fs._skip(m.name, "a parent is not a directory")
            return
        name = m.path[-1]
        old = parent.entries.get(name)
        if m.kind == S_IFDIR and isinstance(old, TarDir):
            self._set_meta(old, m)
            return
        if m.kind == HARDLINK:
            self._add_hardlink(parent, name, old, m)
            return
        node = self._new_node(parent, src, m)
        if old is not None:
            self._drop(old)
        parent.entries[name] = node

    def remove(self, path: Path) -> None:
        """Delete ``path`` (a whole subtree for a directory), if it exists."""
        if not path:
            return
        parent = self.dir_at(path[:-1], create=False)
        if parent is None:
            return
        node = parent.entries.pop(path[-1], None)
        if node is not None:
            self._drop(node)

    def clear_dir(self, path: Path) -> None:
        """Empty the directory at ``path``, if there is one."""
        d = self.dir_at(path, create=False)
        if d is not None:
            for node in d.entries.values():
                self._drop(node)
            d.entries.clear()

    def dir_at(self, path: Path, *, create: bool, mtime_ns: int = 0) -> TarDir | None:
        """The directory at ``path``, implying missing ones if ``create``;
        ``None`` if a component is not a directory (or missing and not created)."""
        d = self.fs.root
        for name in path:
            node = d.entries.get(name)
            if node is None:
                if not create:
                    return None
                node = TarDir(self.fs, self._ino(), IMPLIED_DIR_PERM, 0, 0, mtime_ns, d)
                d.entries[name] = node
            if not isinstance(node, TarDir):
                return None
            d = node
        return d

    def finish(self) -> None:
        """Count directory links, inodes and blocks once the tree is complete."""
        seen: set[int] = set()
        blocks = 0
        stack = [self.fs.root]
        while stack:
            d = stack.pop()
            seen.add(d.ino)
            d.nlink = 2
            for node in d.entries.values():
                if isinstance(node, TarDir):
                    d.nlink += 1
                    stack.append(node)
                elif node.ino not in seen:
                    seen.add(node.ino)
                    blocks += node.stat().blocks
        self.fs._files = len(seen)
        self.fs._blocks = blocks

    # --- helpers ----------------------------------------------------------
    def _ino(self) -> int:
        return next(self.fs._next_ino)

    @staticmethod
    def _set_meta(node: TarNode, m: Member) -> None:
        node.mode = (node.mode & ~0o7777) | m.perm  # type: ignore[misc]
        node.uid, node.gid, node.mtime_ns = m.uid, m.gid, m.mtime_ns

    def _new_node(self, parent: TarDir, src: ByteSource, m: Member) -> TarNode:
        fs, ino = self.fs, self._ino()
        if m.kind == S_IFDIR:
            return TarDir(fs, ino, m.perm, m.uid, m.gid, m.mtime_ns, parent)
        if m.kind == S_IFREG:
            return TarFile(fs, ino, m.perm, m.uid, m.gid, m.mtime_ns, src, m.offset, m.size,
                           m.sparse)
        if m.kind == S_IFLNK:
            # Linux reports 0777 for every symlink, whatever the archive says.
            return TarSymlink(fs, ino, 0o777, m.uid, m.gid, m.mtime_ns, m.linkname)
        return TarSpecial(fs, ino, m.kind | m.perm, m.uid, m.gid, m.mtime_ns, m.rdev)

    def _add_hardlink(self, parent: TarDir, name: str, old: TarNode | None, m: Member) -> None:
        target_path = normalize(m.linkname)
        target = None if target_path is None else self._node_at(target_path)
        if target is None:
            self.fs._skip(m.name, f"hard link to {m.linkname!r}, which is not in the archive")
            return
        if isinstance(target, TarDir):
            self.fs._skip(m.name, f"hard link to directory {m.linkname!r}")
            return
        if target is old:
            return
        if old is not None:
            self._drop(old)
        target.nlink += 1
        parent.entries[name] = target

    def _node_at(self, path: Path) -> TarNode | None:
        d = self.dir_at(path[:-1], create=False) if path else None
        return None if d is None else d.entries.get(path[-1])

    @staticmethod
    def _drop(node: TarNode) -> None:
        """Account for ``node``'s name going away (a directory takes its subtree)."""
        stack = [node]
        while stack:
            n = stack.pop()
            if isinstance(n, TarDir):
                stack.extend(n.entries.values())
            else:
                n.nlink -= 1
