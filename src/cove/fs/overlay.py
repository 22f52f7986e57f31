"""overlay: a writable upper filesystem over read-only lowers (Linux overlayfs).

``OverlayFS(upper, lowers)`` merges any cove filesystems; ``lowers[0]`` is the
topmost lower. The lowers are never written. Everything the overlay must
remember lives *in the upper fs itself*, so a snapshot of the upper alone is a
complete layer (and any layer may later serve as a lower):

- A **whiteout** is a character device 0/0 in a directory: it hides that name
  in every layer below (as Linux overlayfs stores them).
- An **opaque** directory (hides all lower content below it) holds an entry
  named ``.wh..wh..opq`` (the OCI image-layer name; stored as a whiteout
  node). Linux uses the ``trusted.overlay.opaque`` xattr, which the cove
  contract does not have. The name is therefore reserved: lookup and readdir
  never show it and creating it gives ``EINVAL``. ``mknod`` of a 0/0 character
  device gives ``EPERM`` (it would vanish as a whiteout).
Whiteouts and opaque markers are honoured in every layer, lowers included.

Differences from Linux worth knowing:
- Renaming a merged or lower directory never gives ``EXDEV``: the whole
  subtree is copied up (hard links inside it stay linked), the copy is made
  opaque, then moved, and the old name is whited out.
- ``st_ino`` is stable across copy-up, also for lower files with several hard
  links (Linux keeps it only for nlink == 1). Without an index (Linux's
  ``index=off``) copying up one name of a lower hard link breaks the link: the
  other names keep showing the lower content and the same ``st_ino``.
- One overlay inode object exists per visible path while referenced (each
  hard-link name has its own, with the same ``key``); it follows renames and
  forwards to the upper after a copy-up: a file opened while it was lower
  reads the new content after another writer copied it up (Linux keeps
  reading the stale lower file).
- Inode numbers: an object's layer number (0 = upper) goes above bit 48 of the
  real ino (Linux's xino); a copied-up object keeps its origin's number
  through an in-memory map, so after rebuilding an overlay over a restored
  upper, copied-up objects show their upper ino.
- Directories report nlink = 2 + subdirectories of the merged view.
"""

from __future__ import annotations

import functools
import itertools
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress

from cove.abi.errno import E, Errno
from cove.dataclass import replace
from cove.fs.node import (
    DT_CHR,
    DT_DIR,
    DT_UNKNOWN,
    OVERLAYFS_MAGIC,
    RENAME_EXCHANGE,
    RENAME_NOREPLACE,
    S_IFCHR,
    S_IFDIR,
    S_IFLNK,
    S_IFMT,
    S_IFREG,
    DirEntry,
    FileSystem,
    Inode,
    SetAttr,
    Stat,
    StatFs,
    dtype_of,
)

OPAQUE_MARKER = ".wh..wh..opq"
WHITEOUT_RDEV = 0
MAX_LOWERS = 500  # Linux's OVL_MAX_STACK
# Looked-up objects kept alive after their last user lets go (Linux's dentry
# cache): a program started in a loop walks /usr/bin, /lib64, ld.so and libc
# every time, and a fresh lookup of each name costs host calls.
RECENT = 512
XINO_SHIFT = 48  # real inos below 2**48 get the layer number above them
_CHUNK = 1 << 20  # copy-up granularity

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from typing import Any, TypeVar

    F = TypeVar("F", bound=Callable[..., Any])
Layer = tuple[int, Inode]  # (layer number: 0 upper, 1.. lowers, real directory)


# --- layer marks: usable by anything that builds or reads layers (tarfs, snapshots) ---


def child_or_none(directory: Inode, name: str) -> Inode | None:
    try:
        return directory.lookup(name)
    except Errno as e:
        if e.errno == E.ENOENT:
            return None
        raise


def is_whiteout(node: Inode) -> bool:
    if node.ftype != S_IFCHR:
        return False
    return node.stat().rdev == WHITEOUT_RDEV


def make_whiteout(directory: Inode, name: str) -> None:
    directory.mknod(name, S_IFCHR, WHITEOUT_RDEV, 0, 0)


def is_opaque(directory: Inode) -> bool:
    return child_or_none(directory, OPAQUE_MARKER) is not None


def set_opaque(directory: Inode) -> None:
    if not is_opaque(directory):
        make_whiteout(directory, OPAQUE_MARKER)


def _purge_marks(directory: Inode) -> None:
    """Remove whiteouts and the opaque marker, so an upper dir can be removed."""
    for e in list(directory.readdir()):
        if e.name == OPAQUE_MARKER or (
            e.dtype in (DT_CHR, DT_UNKNOWN) and is_whiteout(directory.lookup(e.name))
        ):
            directory.unlink(e.name)


class OverlayFS(FileSystem):
    """``upper`` receives every change (``None``: a read-only union of lowers)."""

    name = "overlay"
    magic = OVERLAYFS_MAGIC

    def __init__(self, upper: FileSystem | None, lowers: Sequence[FileSystem]) -> None:
        if upper is None and not lowers:
            raise ValueError("an overlay needs at least one layer")
        if len(lowers) > MAX_LOWERS:
            raise ValueError(f"at most {MAX_LOWERS} lower layers")
        super().__init__(readonly=upper is None or upper.readonly)
        self.upper = upper
        self.lowers = list(lowers)
        # Copy-up, rename and whiteout changes take several steps on the layers.
        self.lock = threading.RLock()
        self._origin: dict[int, int] = {}  # upper ino of a copy -> overlay ino of its origin
        self._wide: dict[tuple[int, int], int] = {}  # (layer, real ino >= 2**48) -> ino
        self._wide_next = itertools.count(1 << 63)
        self._orphans = itertools.count()
        # Bumped by every change to any directory's entries: merged-directory
        # link counts are cached against it (listing /usr/bin on every stat of
        # it would make each path lookup cost a directory read).
        self.generation = 0
        self._recent: deque[OvlInode] = deque(maxlen=RECENT)
        root_upper = upper.root if upper is not None else None
        root_lowers: list[Layer] = []
        if root_upper is None or not is_opaque(root_upper):
            for number, fs in enumerate(self.lowers, 1):
                root_lowers.append((number, fs.root))
                if is_opaque(fs.root):
                    break
        self._root = OvlInode(self, None, "", root_upper, root_lowers)

    @property
    def root(self) -> OvlInode:
        return self._root

    def check_writable(self) -> None:
        if self.readonly or self.upper is None or self.upper.readonly:
            raise Errno(E.EROFS)

    def statfs(self) -> StatFs:
        base = (self.upper or self.lowers[0]).statfs()
        ro = self.readonly or self.upper is None or self.upper.readonly
        return replace(base, fstype=OVERLAYFS_MAGIC, flags=(base.flags & ~1) | int(ro))

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_recent"] = None  # a cache: not part of a snapshot
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._recent = deque(maxlen=RECENT)

    def ino_of(self, layer: int, real_ino: int) -> int:
        """The overlay st_ino of real inode ``real_ino`` of layer ``layer``."""
        if layer == 0:
            origin = self._origin.get(real_ino)
            if origin is not None:
                return origin
        if real_ino < 1 << XINO_SHIFT:
            return real_ino | layer << XINO_SHIFT
        ino = self._wide.get((layer, real_ino))
        if ino is None:
            ino = self._wide[(layer, real_ino)] = next(self._wide_next)
        return ino

    def _forget(self, upper_node: Inode, nlink_before: int) -> None:
        """An upper inode lost its last name: drop its origin entry."""
        if nlink_before <= 1 or upper_node.ftype == S_IFDIR:
            self._origin.pop(upper_node.ino, None)


def _changes_entries(method: F) -> F:
    """Bump the generation after a change to directory entries (even a failed one:
    a stale cached link count must not outlive it). After, not before: a stat
    racing the change then recomputes instead of caching the old count."""

    @functools.wraps(method)
    def wrapper(self: OvlInode, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        finally:
            self.fs.generation += 1

    return wrapper  # type: ignore[return-value]


class OvlInode(Inode):
    """One merged object: its upper inode (if any) over its lower ones.

    Non-directories keep at most one lower (the topmost); directories keep the
    lower directories merged below them, top first. After a copy-up ``upper``
    is set and reads and writes go there.
    """

    __slots__ = (
        "__weakref__",
        "_children",
        "_name",
        "_parent",
        "_target",
        "_target_ctime",
        "_type",
        "_nlink",
        "_nlink_gen",
        "detached",
        "fs",
        "ino",
        "lowers",
        "upper",
    )

    fs: OverlayFS

    def __init__(
        self,
        fs: OverlayFS,
        parent: OvlInode | None,
        name: str,
        upper: Inode | None,
        lowers: list[Layer],
    ) -> None:
        self.fs = fs
        self._parent = parent if parent is not None else self
        self._name = name
        self.upper = upper
        self.lowers = lowers
        top = upper if upper is not None else lowers[0][1]
        self._type = top.ftype
        self.ino = fs.ino_of(0, top.ino) if upper is not None else fs.ino_of(lowers[0][0], top.ino)
        # Same object for the same path while anyone holds it (key, cwd, open files).
        self._children: weakref.WeakValueDictionary[str, OvlInode] = (
            weakref.WeakValueDictionary()
        )
        self.detached = False  # unlinked, rmdir'ed or renamed over, maybe still open
        self._target: str | None = None  # a lower symlink's target, once read...
        self._target_ctime: int | None = None  # ...and its host ctime then (hostfs)
        self._nlink_gen = -1
        self._nlink = 0

    @property
    def _top(self) -> Inode:
        return self.upper if self.upper is not None else self.lowers[0][1]

    def _is_dir(self) -> bool:
        return self._type == S_IFDIR

    # --- metadata -------------------------------------------------------
    @property
    def mode(self) -> int:
        return self._top.mode

    @property
    def ftype(self) -> int:
        return self._type

    def stat(self) -> Stat:
        with self.fs.lock:
            st = self._top.stat()  # a fresh object (the Inode contract): ours to change
            st.ino, st.dev = self.ino, self.fs.dev
            if self._is_dir():
                if self.detached:
                    st.nlink = 0
                elif self.lowers:
                    if self._nlink_gen != self.fs.generation:
                        self._nlink = 2 + sum(1 for e in self._merged() if e.dtype == DT_DIR)
                        self._nlink_gen = self.fs.generation
                    st.nlink = self._nlink
            elif self.detached and self.upper is None:
                st.nlink = max(0, st.nlink - 1)
        return st

    def setattr(self, attr: SetAttr) -> None:
        self.fs.check_writable()
        with self.fs.lock:
            # A truncating copy-up copies only what survives the truncation.
            self._copy_up(size=attr.size).setattr(attr)

    # --- reading --------------------------------------------------------
    def read(self, offset: int, size: int) -> bytes:
        return self._top.read(offset, size)

    def readlink(self) -> str:
        if self.upper is not None:
            return self.upper.readlink()
        # A symlink's target never changes (another target is another inode,
        # and ``lookup`` checks the lower object is still the one it found,
        # with the same ctime).
        if self._target is None:
            lower = self.lowers[0][1]
            check = getattr(lower, "revalidate", None)
            ctime = check() if check is not None else None
            if check is not None and ctime is None:
                raise Errno(E.ENOENT, "replaced on the host")
            self._target, self._target_ctime = lower.readlink(), ctime
        return self._target

    def render(self) -> bytes | None:
        return self._top.render()

    def write(self, offset: int, data: bytes) -> int:
        self.fs.check_writable()
        with self.fs.lock:
            upper = self._copy_up()
        return upper.write(offset, data)

    def sync(self) -> None:
        if self.upper is not None:
            self.upper.sync()

    # --- merged directory view -----------------------------------------
    def parent(self) -> OvlInode:
        if not self._is_dir():
            raise Errno(E.ENOTDIR)
        return self._parent

    def lookup(self, name: str) -> OvlInode:
        if not self._is_dir():
            raise Errno(E.ENOTDIR)
        if name == OPAQUE_MARKER or self.detached:
            raise Errno(E.ENOENT)
        with self.fs.lock:
            child = self._children.get(name)
            if child is not None and child.upper is None and not child._still_there():
                del self._children[name]  # replaced on the host: look again
                child = None
            if child is None:
                upper, lowers = self._resolve(name)
                child = OvlInode(self.fs, self, name, upper, lowers)
                self._children[name] = child
            self.fs._recent.append(child)
            return child

    def _still_there(self) -> bool:
        """Whether the lower object this one shows is still where it was found
        (a layer that can change underneath, hostfs, checks; others cannot)."""
        check = getattr(self.lowers[0][1], "revalidate", None)
        if check is None:
            return True
        ctime = check()
        if ctime != self._target_ctime:
            self._target = None  # a symlink made anew where the old one was
        return ctime is not None

    def _resolve(self, name: str) -> tuple[Inode | None, list[Layer]]:
        """The layers' objects for ``name``: the topmost decides the type; a
        directory merges the directories below it until a whiteout, a
        non-directory or an opaque directory."""
        upper = None
        if self.upper is not None:
            upper = child_or_none(self.upper, name)
            if upper is not None:
                if is_whiteout(upper):
                    raise Errno(E.ENOENT)
                if upper.ftype != S_IFDIR or is_opaque(upper):
                    return upper, []
        lowers: list[Layer] = []
        for number, directory in self.lowers:
            node = child_or_none(directory, name)
            if node is None:
                continue
            if is_whiteout(node):
                break
            node_is_dir = node.ftype == S_IFDIR
            if upper is None and not lowers:
                lowers.append((number, node))
                if not node_is_dir:
                    break
            elif not node_is_dir:
                break
            else:
                lowers.append((number, node))
            if is_opaque(node):
                break
        if upper is None and not lowers:
            raise Errno(E.ENOENT)
        return upper, lowers

    def readdir(self) -> Iterator[DirEntry]:
        if not self._is_dir():
            raise Errno(E.ENOTDIR)
        with self.fs.lock:
            return iter(self._merged())

    def _merged(self) -> list[DirEntry]:
        """Union of the layers, upper first, sorted by name (stable across copy-ups)."""
        if self.detached:
            return []
        found: dict[str, DirEntry] = {}
        hidden: set[str] = set()
        layers = [(0, self.upper)] if self.upper is not None else []
        for number, directory in layers + self.lowers:
            for e in directory.readdir():
                name = e.name
                if name == OPAQUE_MARKER or name in found or name in hidden:
                    continue
                dtype = e.dtype
                if dtype in (DT_CHR, DT_UNKNOWN):
                    node = directory.lookup(name)
                    if is_whiteout(node):
                        hidden.add(name)
                        continue
                    dtype = dtype_of(node.ftype)
                found[name] = DirEntry(name, self.fs.ino_of(number, e.ino), dtype)
        return [found[name] for name in sorted(found)]

    def _lower_has(self, name: str) -> bool:
        """Whether a lower layer shows ``name`` here (so removing it needs a whiteout)."""
        for _, directory in self.lowers:
            node = child_or_none(directory, name)
            if node is not None:
                return not is_whiteout(node)
        return False

    # --- copy-up --------------------------------------------------------
    def _copy_up(self, size: int | None = None, links: dict | None = None) -> Inode:
        """Give this object (and its ancestors) an upper copy; returns it."""
        if self.upper is not None:
            return self.upper
        self.fs.check_writable()
        if self.detached:
            if self._is_dir():
                raise Errno(E.ENOENT)
            return self._copy_up_orphan(size)
        pending = []
        ancestor = self._parent
        while ancestor.upper is None:  # the root always has one in a writable overlay
            pending.append(ancestor)
            ancestor = ancestor._parent
        for directory in reversed(pending):
            directory._copy_up_here(None, None)
        return self._copy_up_here(size, links)

    def _copy_up_here(self, size: int | None, links: dict | None) -> Inode:
        parent_upper = self._parent.upper
        assert parent_upper is not None
        before = parent_upper.stat()
        new = self._copy_into(parent_upper, self._name, size, links)
        # As Linux: a copy-up is not a change of the parent directory.
        with suppress(Errno):
            parent_upper.setattr(SetAttr(atime_ns=before.atime_ns, mtime_ns=before.mtime_ns))
        return new

    def _copy_up_orphan(self, size: int | None) -> Inode:
        """Copy-up of an unlinked lower file still open: an upper inode with no name."""
        assert self.fs.upper is not None
        scratch = self.fs.upper.root
        name = f".cove-overlay-orphan-{next(self.fs._orphans)}"
        while child_or_none(scratch, name) is not None:
            name = f".cove-overlay-orphan-{next(self.fs._orphans)}"
        before = scratch.stat()
        new = self._copy_into(scratch, name, size, None)
        scratch.unlink(name)
        with suppress(Errno):
            scratch.setattr(SetAttr(atime_ns=before.atime_ns, mtime_ns=before.mtime_ns))
        return new

    def _copy_into(self, directory: Inode, name: str, size: int | None,
                   links: dict | None) -> Inode:
        number, src = self.lowers[0]
        st = src.stat()
        kind = st.mode & S_IFMT
        shared = links is not None and kind != S_IFDIR and st.nlink > 1
        if shared and (number, src.ino) in links:
            new = links[(number, src.ino)]
            directory.link(name, new)
        else:
            new = _copy_node(directory, name, src, st, size)
            if shared:
                links[(number, src.ino)] = new
            self.fs._origin[new.ino] = self.ino
        self.upper = new
        if kind != S_IFDIR:
            self.lowers = []
        return new

    def _copy_up_tree(self) -> None:
        """Copy up this directory and everything visible below it."""
        links: dict = {}
        stack = [self]
        while stack:
            directory = stack.pop()
            directory._copy_up(links=links)
            for e in directory._merged():
                child = directory.lookup(e.name)
                if child._is_dir():
                    stack.append(child)
                elif child.upper is None:
                    child._copy_up(links=links)

    def _drop_lowers(self) -> None:
        """This directory moved onto an opaque (or lower-free) spot: forget merges below."""
        stack = [self]
        while stack:
            directory = stack.pop()
            directory.lowers = []
            stack.extend(c for c in list(directory._children.values()) if c._is_dir())

    # --- changes --------------------------------------------------------
    def _writable_dir(self) -> None:
        if not self._is_dir():
            raise Errno(E.ENOTDIR)
        self.fs.check_writable()
        if self.detached:
            raise Errno(E.ENOENT)

    def _visible(self, name: str) -> bool:
        try:
            self.lookup(name)
        except Errno as e:
            if e.errno == E.ENOENT:
                return False
            raise
        return True

    def _new_entry(self, name: str, make: Callable[[Inode], Inode]) -> OvlInode:
        self._writable_dir()
        _check_name(name)
        with self.fs.lock:
            if self._visible(name):
                raise Errno(E.EEXIST)
            upper_dir = self._copy_up()
            # Not visible yet present in the upper: a whiteout, replaced by the new entry.
            over_whiteout = child_or_none(upper_dir, name) is not None
            if over_whiteout:
                upper_dir.unlink(name)
            try:
                node = make(upper_dir)
                if over_whiteout and node.ftype == S_IFDIR:
                    set_opaque(node)  # rmdir + mkdir shows an empty directory
            except BaseException:
                if over_whiteout:
                    with suppress(Errno):
                        if child_or_none(upper_dir, name) is None:
                            make_whiteout(upper_dir, name)
                raise
            child = OvlInode(self.fs, self, name, node, [])
            self._children[name] = child
            return child

    @_changes_entries
    def create(self, name: str, mode: int, uid: int, gid: int) -> OvlInode:
        return self._new_entry(name, lambda d: d.create(name, mode, uid, gid))

    @_changes_entries
    def mkdir(self, name: str, mode: int, uid: int, gid: int) -> OvlInode:
        return self._new_entry(name, lambda d: d.mkdir(name, mode, uid, gid))

    @_changes_entries
    def mknod(self, name: str, mode: int, rdev: int, uid: int, gid: int) -> OvlInode:
        if mode & S_IFMT == S_IFCHR and rdev == WHITEOUT_RDEV:
            raise Errno(E.EPERM)
        return self._new_entry(name, lambda d: d.mknod(name, mode, rdev, uid, gid))

    @_changes_entries
    def symlink(self, name: str, target: str, uid: int, gid: int) -> OvlInode:
        return self._new_entry(name, lambda d: d.symlink(name, target, uid, gid))

    @_changes_entries
    def link(self, name: str, target: Inode) -> None:
        if not isinstance(target, OvlInode) or target.fs is not self.fs:
            raise Errno(E.EXDEV)
        self._writable_dir()
        _check_name(name)
        with self.fs.lock:
            if self._visible(name):
                raise Errno(E.EEXIST)
            if target.detached:
                raise Errno(E.ENOENT)
            real = target._copy_up()

            def make(d: Inode) -> Inode:
                d.link(name, real)
                return real

            self._new_entry(name, make)

    @_changes_entries
    def unlink(self, name: str) -> None:
        self._writable_dir()
        with self.fs.lock:
            child = self.lookup(name)
            if child._is_dir():
                raise Errno(E.EISDIR)
            self._remove(name, child)

    @_changes_entries
    def rmdir(self, name: str) -> None:
        self._writable_dir()
        with self.fs.lock:
            child = self.lookup(name)
            if not child._is_dir():
                raise Errno(E.ENOTDIR)
            if child._merged():
                raise Errno(E.ENOTEMPTY)
            self._remove(name, child)

    def _remove(self, name: str, child: OvlInode) -> None:
        upper_dir = self._copy_up()
        if child.upper is not None:
            nlink = child.upper.stat().nlink
            if child._is_dir():
                _purge_marks(child.upper)
                upper_dir.rmdir(name)
            else:
                upper_dir.unlink(name)
            self.fs._forget(child.upper, nlink)
        if self._lower_has(name):
            make_whiteout(upper_dir, name)
        self._children.pop(name, None)
        child.detached = True

    @_changes_entries
    def rename(self, name: str, newdir: Inode, newname: str, flags: int = 0) -> None:
        if flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE) or (
            flags & RENAME_NOREPLACE and flags & RENAME_EXCHANGE
        ):
            raise Errno(E.EINVAL)
        if not isinstance(newdir, OvlInode) or newdir.fs is not self.fs:
            raise Errno(E.EXDEV)
        self._writable_dir()
        newdir._writable_dir()
        _check_name(newname)
        with self.fs.lock:
            src = self.lookup(name)
            dst = newdir.lookup(newname) if newdir._visible(newname) else None
            if flags & RENAME_EXCHANGE and dst is None:
                raise Errno(E.ENOENT)
            if dst is not None and (dst is src or dst._top is src._top):
                return  # one inode under both names: Linux does nothing
            if flags & RENAME_NOREPLACE and dst is not None:
                raise Errno(E.EEXIST)
            if flags & RENAME_EXCHANGE:
                assert dst is not None
                self._exchange(name, src, newdir, newname, dst)
            else:
                self._move(name, src, newdir, newname, dst)

    def _full_copy_up(self) -> bool:
        """Copy up for a move; returns whether the moved copy must be opaque
        (it was merged with lowers it cannot take along)."""
        if self._is_dir() and self.lowers:
            self._copy_up_tree()
            return True
        self._copy_up()
        return False

    def _move(self, name: str, src: OvlInode, newdir: OvlInode, newname: str,
              dst: OvlInode | None) -> None:
        if dst is not None and dst._is_dir() and dst._merged():
            raise Errno(E.ENOTEMPTY)
        opaque = src._full_copy_up()
        old_upper = self._copy_up()
        new_upper = newdir._copy_up()
        assert src.upper is not None
        if src._is_dir() and (opaque or newdir._lower_has(newname)):
            set_opaque(src.upper)
        # Clear the upper at the target: a whiteout goes (restored on failure);
        # an empty merged target dir may still hold whiteouts.
        existing = child_or_none(new_upper, newname)
        removed_whiteout = existing is not None and is_whiteout(existing)
        if removed_whiteout:
            new_upper.unlink(newname)
        elif existing is not None and existing.ftype == S_IFDIR:
            _purge_marks(existing)
        nlink = existing.stat().nlink if existing is not None and not removed_whiteout else 0
        try:
            old_upper.rename(name, new_upper, newname)
        except BaseException:
            if removed_whiteout:
                with suppress(Errno):
                    make_whiteout(new_upper, newname)
            raise
        if existing is not None and not removed_whiteout:
            self.fs._forget(existing, nlink)
        if self._lower_has(name):
            make_whiteout(old_upper, name)
        self._children.pop(name, None)
        if dst is not None:
            newdir._children.pop(newname, None)
            dst.detached = True
        src._parent, src._name = newdir, newname
        newdir._children[newname] = src
        src._drop_lowers()

    def _exchange(self, name: str, src: OvlInode, newdir: OvlInode, newname: str,
                  dst: OvlInode) -> None:
        src_opaque = src._full_copy_up()
        dst_opaque = dst._full_copy_up()
        old_upper = self._copy_up()
        new_upper = newdir._copy_up()
        assert src.upper is not None and dst.upper is not None
        if src._is_dir() and (src_opaque or newdir._lower_has(newname)):
            set_opaque(src.upper)
        if dst._is_dir() and (dst_opaque or self._lower_has(name)):
            set_opaque(dst.upper)
        old_upper.rename(name, new_upper, newname, RENAME_EXCHANGE)
        self._children.pop(name, None)
        newdir._children.pop(newname, None)
        src._parent, src._name = newdir, newname
        dst._parent, dst._name = self, name
        newdir._children[newname] = src
        self._children[name] = dst
        src._drop_lowers()
        dst._drop_lowers()


def _check_name(name: str) -> None:
    if name == OPAQUE_MARKER:
        raise Errno(E.EINVAL)  # reserved: it marks opaque directories


def _copy_node(directory: Inode, name: str, src: Inode, st: Stat, size: int | None) -> Inode:
    """Create ``name`` in ``directory`` as a copy of ``src`` (data, mode, owner, times)."""
    kind = st.mode & S_IFMT
    perm = st.mode & 0o7777
    if kind == S_IFREG:
        new = directory.create(name, perm, st.uid, st.gid)
        try:
            length = st.size if size is None else min(size, st.size)
            offset = 0
            while offset < length:
                chunk = src.read(offset, min(_CHUNK, length - offset))
                if not chunk:
                    break
                if chunk.count(0) != len(chunk):  # leave holes as holes
                    new.write(offset, chunk)
                offset += len(chunk)
            new.setattr(SetAttr(size=length))
        except BaseException:
            with suppress(Errno):
                directory.unlink(name)
            raise
    elif kind == S_IFDIR:
        new = directory.mkdir(name, perm, st.uid, st.gid)
    elif kind == S_IFLNK:
        new = directory.symlink(name, src.readlink(), st.uid, st.gid)
    else:
        new = directory.mknod(name, st.mode, st.rdev, st.uid, st.gid)
    new.setattr(SetAttr(mode=perm, uid=st.uid, gid=st.gid, atime_ns=st.atime_ns,
                        mtime_ns=st.mtime_ns, ctime_ns=st.ctime_ns))
    return new
