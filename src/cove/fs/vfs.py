"""The VFS: one path-resolution engine over a mount table, and the namespace
operations (open, mkdir, rename, ...) with Linux's rules and errnos.

Every path a guest passes is resolved here, component by component, through
``Inode.lookup``; symlinks are read with ``readlink`` and resolved here too,
with absolute targets starting at the *sandbox's* root and ``..`` stopping at
it. No filesystem ever sees a path, so no filesystem can be tricked into
walking out of the tree.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from enum import Enum

from cove.abi.errno import E, Errno
from cove.dataclass import dataclass, field
from cove.fs import perm
from cove.fs.file import (
    O_ACCMODE,
    O_CLOEXEC,
    O_CREAT,
    O_DIRECTORY,
    O_EXCL,
    O_NOFOLLOW,
    O_PATH,
    O_RDONLY,
    O_RDWR,
    O_TMPFILE,
    O_TRUNC,
    O_WRONLY,
    File,
    InodeFile,
)
from cove.fs.mount import MS_RDONLY, Location, Mount
from cove.fs.node import (
    DT_DIR,
    RENAME_EXCHANGE,
    RENAME_NOREPLACE,
    RENAME_WHITEOUT,
    S_IFBLK,
    S_IFCHR,
    S_IFDIR,
    S_IFIFO,
    S_IFLNK,
    S_IFMT,
    S_IFREG,
    S_IFSOCK,
    S_ISGID,
    S_ISUID,
    FileSystem,
    Inode,
    SetAttr,
    Stat,
    StatFs,
    now_ns,
)
from cove.fs.perm import MAY_EXEC, MAY_READ, MAY_WRITE, Cred

PATH_MAX = 4096
NAME_MAX = 255
MAXSYMLINKS = 40

UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2

F_OK, X_OK, W_OK, R_OK = 0, 1, 2, 4


class Last(Enum):
    """What the final component of a path is (Linux's LAST_NORM and friends)."""

    NORM = 0
    ROOT = 1
    DOT = 2
    DOTDOT = 3


@dataclass(slots=True)
class PathContext:
    """A task's view of the namespace: root (chroot), cwd, credentials, umask."""

    root: Location
    cwd: Location
    cred: Cred = field(default_factory=Cred)
    umask: int = 0o022

    def fork(self) -> PathContext:
        return PathContext(self.root, self.cwd, Cred(self.cred.uid, self.cred.gid,
                                                     self.cred.groups), self.umask)


@dataclass(slots=True)
class Parent:
    """The directory holding a path's final component, and that component."""

    dir: Location
    name: str
    last: Last
    trailing_slash: bool
    links: int = 0  # symlinks followed on the way (O_CREAT keeps counting from here)


def _encoded_len(s: str) -> int:
    return len(s.encode("utf-8", "surrogateescape"))


def _check_path(path: str) -> None:
    if not path:
        raise Errno(E.ENOENT)
    if "\0" in path:
        raise Errno(E.EINVAL)
    if _encoded_len(path) >= PATH_MAX:
        raise Errno(E.ENAMETOOLONG)


def _split(path: str) -> list[str]:
    return [c for c in path.split("/") if c]


def _is_entry(directory: Inode, name: str, inode: Inode) -> bool:
    try:
        return directory.lookup(name).key == inode.key
    except Errno:
        return False


# Opens special files (FIFOs, devices, sockets) by type: the kernel registers
# its pipe and device drivers here; without one the open fails with ENXIO.
SpecialOpener = Callable[[Location, int], File]


class VFS:
    """The sandbox's mount table and namespace operations."""

    def __init__(self, root_fs: FileSystem, *, readonly: bool = False,
                 source: str = "rootfs") -> None:
        self.root_mount = Mount(root_fs, None, None, MS_RDONLY if readonly else 0, source)
        self._mounts: dict[tuple[int, tuple[int, int]], Mount] = {}
        self.special_openers: dict[int, SpecialOpener] = {}
        self.device_openers: dict[int, SpecialOpener] = {}  # by rdev, for S_IFCHR

    # --- mounts ------------------------------------------------------------
    @property
    def root(self) -> Location:
        return Location(self.root_mount, self.root_mount.root)

    def context(self, cred: Cred | None = None, umask: int = 0o022) -> PathContext:
        return PathContext(self.root, self.root, cred or Cred(), umask)

    def mount(self, path: str, fs: FileSystem, *, flags: int = 0,
              source: str = "none", ctx: PathContext | None = None) -> Mount:
        """Mount ``fs`` on the directory ``path`` (resolved as root)."""
        ctx = ctx or self.context()
        where = self.resolve(ctx, None, path)
        # By mode, not stat: an overlay dir's stat lists the host dir to count links.
        if where.inode.ftype != S_IFDIR:
            raise Errno(E.ENOTDIR)
        mnt = Mount(fs, where.mount, where, flags, source)
        self._mounts[(where.mount.id, where.inode.key)] = mnt
        return mnt

    def mounts(self) -> list[Mount]:
        """Every mount, parents before children (the order of /proc/mounts)."""
        out = [self.root_mount]
        todo = [self.root_mount]
        while todo:
            parent = todo.pop(0)
            for m in self._mounts.values():
                if m.parent is parent:
                    out.append(m)
                    todo.append(m)
        return out

    def _mounted_on(self, loc: Location) -> Location:
        while True:
            m = self._mounts.get((loc.mount.id, loc.inode.key))
            if m is None:
                return loc
            loc = Location(m, m.root)

    def is_mountpoint(self, loc: Location) -> bool:
        return (loc.mount.id, loc.inode.key) in self._mounts or (
            loc.is_mount_root and loc.mount.parent is not None)

    # --- resolution ------------------------------------------------------
    def _dotdot(self, ctx: PathContext, cur: Location) -> Location:
        if cur.same(ctx.root):
            return cur
        while cur.is_mount_root and cur.mount.mountpoint is not None:
            cur = cur.mount.mountpoint
            if cur.same(ctx.root):
                return cur
        return self._mounted_on(Location(cur.mount, cur.inode.parent()))

    def _walk(self, ctx: PathContext, start: Location | None, path: str, *,
              follow_last: bool, stop_before_last: bool = False,
              links: int = 0, trail: list[str] | None = None) -> tuple[Location, Parent]:
        """Resolve ``path``; returns the final location (or, with
        ``stop_before_last``, the parent directory) and the final component.
        ``trail`` (an empty list) receives the names of the canonical path of
        where the walk ends, symlinks resolved (realpath's answer)."""
        _check_path(path)
        trailing = path.endswith("/")
        cur = ctx.root if path.startswith("/") else (start or ctx.cwd)
        if trail is not None and cur is not ctx.root:
            trail += _split(self.path_of(ctx, cur))
        comps = deque(_split(path))
        if not comps:
            return cur, Parent(cur, "/", Last.ROOT, trailing)
        while True:
            name = comps.popleft()
            is_last = not comps
            if ctx.cred.is_root:
                # Root may search any directory: the type is all that matters, and
                # ``mode`` is far cheaper than a stat (an overlay stat counts links).
                if cur.inode.ftype != S_IFDIR:
                    raise Errno(E.ENOTDIR)
            else:
                st = cur.inode.stat()
                if not st.is_dir():
                    raise Errno(E.ENOTDIR)
                perm.check(st, ctx.cred, MAY_EXEC)
            if _encoded_len(name) > NAME_MAX:
                raise Errno(E.ENAMETOOLONG)
            last = Last.DOT if name == "." else Last.DOTDOT if name == ".." else Last.NORM
            if is_last and stop_before_last:
                return cur, Parent(cur, name, last, trailing, links)
            if last is Last.DOT:
                nxt = cur
            elif last is Last.DOTDOT:
                nxt = self._dotdot(ctx, cur)
                if trail:
                    trail.pop()
            else:
                nxt = self._mounted_on(Location(cur.mount, cur.inode.lookup(name)))
                if (nxt.inode.ftype == S_IFLNK
                        and (not is_last or follow_last or trailing)):
                    links += 1
                    if links > MAXSYMLINKS:
                        raise Errno(E.ELOOP)
                    target = nxt.inode.readlink()
                    if not target:
                        raise Errno(E.ENOENT)
                    if _encoded_len(target) >= PATH_MAX:
                        raise Errno(E.ENAMETOOLONG)
                    if is_last and target.endswith("/"):
                        trailing = True
                    comps.extendleft(reversed(_split(target)))
                    if target.startswith("/"):
                        cur = ctx.root
                        if trail:
                            trail.clear()
                    if not comps:  # a link to "/"
                        return cur, Parent(cur, "/", Last.ROOT, trailing)
                    continue
            if trail is not None and last is Last.NORM:
                trail.append(name)
            if is_last:
                if trailing and nxt.inode.ftype != S_IFDIR:
                    raise Errno(E.ENOTDIR)
                return nxt, Parent(cur, name, last, trailing)
            cur = nxt

    def resolve(self, ctx: PathContext, at: Location | None, path: str, *,
                follow: bool = True) -> Location:
        """The location ``path`` names, relative to ``at`` (default: cwd)."""
        return self._walk(ctx, at, path, follow_last=follow)[0]

    def resolve_real(self, ctx: PathContext, at: Location | None,
                     path: str) -> tuple[Location, str]:
        """``resolve`` (following a final symlink) and the canonical path of the
        result, as realpath(3) gives it, from the same walk."""
        trail: list[str] = []
        loc = self._walk(ctx, at, path, follow_last=True, trail=trail)[0]
        return loc, "/" + "/".join(trail)

    def resolve_parent(self, ctx: PathContext, at: Location | None, path: str, *,
                       links: int = 0) -> Parent:
        return self._walk(ctx, at, path, follow_last=False, stop_before_last=True,
                          links=links)[1]

    def _lookup_child(self, parent: Parent) -> Location | None:
        try:
            inode = parent.dir.inode.lookup(parent.name)
        except Errno as e:
            if e.errno == E.ENOENT:
                return None
            raise
        return self._mounted_on(Location(parent.dir.mount, inode))

    def path_of(self, ctx: PathContext, loc: Location) -> str:
        """The path of ``loc`` as seen from ``ctx.root`` (getcwd, /proc/<pid>/fd)."""
        parts: list[str] = []
        cur = loc
        while not cur.same(ctx.root):
            if cur.is_mount_root:
                if cur.mount.mountpoint is None:
                    return "(unreachable)/" + "/".join(reversed(parts))
                cur = cur.mount.mountpoint
                continue
            up = Location(cur.mount, cur.inode.parent())
            if up.inode.key == cur.inode.key:
                break  # a removed directory: it has no name any more
            ino = cur.inode.ino
            name = next((d.name for d in up.inode.readdir() if d.ino == ino), None)
            if name is None:
                # A host directory that is a mount point on the host has another
                # ino in readdir than in stat (/dev, /proc): compare by lookup.
                name = next((d.name for d in up.inode.readdir()
                             if d.dtype == DT_DIR and _is_entry(up.inode, d.name, cur.inode)),
                            None)
            if name is None:
                break
            parts.append(name)
            cur = up
        return "/" + "/".join(reversed(parts))

    # --- helpers ---------------------------------------------------------
    @staticmethod
    def _check_writable(loc: Location) -> None:
        if loc.mount.readonly or loc.mount.fs.readonly:
            raise Errno(E.EROFS)

    def _create_parent(self, ctx: PathContext, at: Location | None, path: str,
                       *, is_dir: bool = False) -> Parent:
        """``filename_create``: the parent of a name that must not exist yet."""
        parent = self.resolve_parent(ctx, at, path)
        if parent.last is not Last.NORM:
            raise Errno(E.EEXIST)
        if self._lookup_child(parent) is not None:
            raise Errno(E.EEXIST)
        if parent.trailing_slash and not is_dir:
            raise Errno(E.ENOENT)
        self._check_writable(parent.dir)
        dir_st = parent.dir.inode.stat()
        if dir_st.nlink == 0:
            raise Errno(E.ENOENT)
        perm.check(dir_st, ctx.cred, MAY_WRITE | MAY_EXEC)
        return parent

    @staticmethod
    def _new_owner(ctx: PathContext, dir_st: Stat) -> tuple[int, int, bool]:
        """uid, gid and whether the setgid bit is inherited, for a new inode."""
        if dir_st.mode & S_ISGID:
            return ctx.cred.uid, dir_st.gid, True
        return ctx.cred.uid, ctx.cred.gid, False

    @staticmethod
    def _strip_sgid(ctx: PathContext, mode: int, gid: int, inherit: bool) -> int:
        """``mode_strip_sgid``: a setgid, group-executable file made in a setgid
        directory whose group the creator is not in loses the setgid bit."""
        if (inherit and mode & (S_ISGID | 0o010) == S_ISGID | 0o010
                and not ctx.cred.is_root and not ctx.cred.in_group(gid)):
            return mode & ~S_ISGID
        return mode

    def _may_delete(self, ctx: PathContext, dir_loc: Location, victim: Location,
                    *, is_dir: bool) -> None:
        dir_st = dir_loc.inode.stat()
        perm.check(dir_st, ctx.cred, MAY_WRITE | MAY_EXEC)
        vst = victim.inode.stat()
        perm.check_sticky(dir_st, vst, ctx.cred)
        if is_dir != vst.is_dir():
            raise Errno(E.ENOTDIR if is_dir else E.EISDIR)
        if self.is_mountpoint(victim) or (is_dir and victim.same(ctx.root)):
            raise Errno(E.EBUSY)

    # --- operations --------------------------------------------------------
    def open(self, ctx: PathContext, at: Location | None, path: str, flags: int,
             mode: int = 0) -> File:
        if flags & O_PATH:
            flags &= O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC
        if flags & O_TMPFILE == O_TMPFILE:
            return self._open_tmpfile(ctx, at, path, flags, mode)
        created = False
        if flags & O_CREAT:
            if flags & O_DIRECTORY:
                raise Errno(E.EINVAL)
            loc, created, where = self._open_create(ctx, at, path, flags, mode)
        else:
            loc, where = self._walk(ctx, at, path, follow_last=not flags & O_NOFOLLOW)
        f = self._open_location(ctx, loc, flags, created=created)
        if where.last is Last.NORM and f.location is not None:
            # Files do not know their directory: remember it for /proc (fd, maps).
            # (Device and FIFO files too: /dev/null opened by a shell.)
            f.name_hint = (where.dir, where.name)  # type: ignore[attr-defined]
        return f

    def file_path(self, ctx: PathContext, f: File) -> str:
        """The path an open file was opened by (for /proc/<pid>/fd and maps)."""
        loc = f.location
        if loc is None:
            return ""
        hint = getattr(f, "name_hint", None)
        if hint is None or loc.inode.ftype == S_IFDIR:
            return self.path_of(ctx, loc)
        d, name = hint
        base = self.path_of(ctx, d)
        deleted = "" if loc.inode.stat().nlink else " (deleted)"
        return (base.rstrip("/") + "/" + name) + deleted

    def _open_create(self, ctx: PathContext, at: Location | None, path: str, flags: int,
                     mode: int) -> tuple[Location, bool, Parent]:
        links = 0
        while True:
            parent = self.resolve_parent(ctx, at, path, links=links)
            links = parent.links  # Linux counts every link of the whole walk
            if parent.last is not Last.NORM:  # ".", "..", "/": they exist, and are dirs
                raise Errno(E.EEXIST if flags & O_EXCL else E.EISDIR)
            if parent.trailing_slash:
                raise Errno(E.EISDIR)
            existing = self._lookup_child(parent)
            if existing is not None:
                if flags & O_EXCL:
                    raise Errno(E.EEXIST)
                if existing.inode.ftype == S_IFLNK and not flags & O_NOFOLLOW:
                    # O_CREAT follows a final symlink, creating a dangling target.
                    links += 1
                    if links > MAXSYMLINKS:
                        raise Errno(E.ELOOP)
                    target = existing.inode.readlink()
                    if not target:
                        raise Errno(E.ENOENT)
                    at, path = parent.dir, target  # absolute targets restart at ctx.root
                    continue
                if existing.inode.stat().is_dir():
                    raise Errno(E.EISDIR)
                return existing, False, parent
            self._check_writable(parent.dir)
            dir_st = parent.dir.inode.stat()
            if dir_st.nlink == 0:
                raise Errno(E.ENOENT)
            perm.check(dir_st, ctx.cred, MAY_WRITE | MAY_EXEC)
            uid, gid, inherit = self._new_owner(ctx, dir_st)
            mode = self._strip_sgid(ctx, mode, gid, inherit)
            inode = parent.dir.inode.create(parent.name, mode & ~ctx.umask & 0o7777, uid, gid)
            return Location(parent.dir.mount, inode), True, parent

    def _open_tmpfile(self, ctx: PathContext, at: Location | None, path: str, flags: int,
                      mode: int) -> File:
        if flags & O_ACCMODE not in (O_WRONLY, O_RDWR):
            raise Errno(E.EINVAL)
        d = self.resolve(ctx, at, path)
        if not d.inode.stat().is_dir():
            raise Errno(E.ENOTDIR)
        self._check_writable(d)
        dir_st = d.inode.stat()
        perm.check(dir_st, ctx.cred, MAY_WRITE | MAY_EXEC)
        uid, gid, inherit = self._new_owner(ctx, dir_st)
        mode = self._strip_sgid(ctx, mode, gid, inherit)
        # An unnamed file: created under a name nobody can guess, unlinked at once.
        name = f".cove-tmpfile-{id(flags) ^ now_ns():x}"
        inode = d.inode.create(name, mode & ~ctx.umask & 0o7777, uid, gid)
        d.inode.unlink(name)
        flags &= ~(O_CREAT | O_TRUNC)
        return InodeFile(Location(d.mount, inode), flags & ~O_DIRECTORY)

    def _open_location(self, ctx: PathContext, loc: Location, flags: int, *,
                       created: bool) -> File:
        st = loc.inode.stat()
        ftype = st.mode & S_IFMT
        acc = flags & O_ACCMODE
        if flags & O_PATH:
            if flags & O_DIRECTORY and ftype != S_IFDIR:
                raise Errno(E.ENOTDIR)
            return InodeFile(loc, flags)
        if flags & O_DIRECTORY and ftype != S_IFDIR:
            raise Errno(E.ENOTDIR)
        if ftype == S_IFLNK:
            raise Errno(E.ELOOP)  # only reachable with O_NOFOLLOW
        mask = {O_RDONLY: MAY_READ, O_WRONLY: MAY_WRITE}.get(acc, MAY_READ | MAY_WRITE)
        if flags & O_TRUNC:
            mask |= MAY_WRITE
        if ftype == S_IFDIR and mask & MAY_WRITE:
            raise Errno(E.EISDIR)
        if not created:
            if mask & MAY_WRITE and ftype in (S_IFREG, S_IFDIR):
                self._check_writable(loc)
            perm.check(st, ctx.cred, mask)
        if ftype in (S_IFCHR, S_IFBLK, S_IFIFO, S_IFSOCK):
            return self._open_special(loc, st, flags)
        if ftype == S_IFREG and flags & O_TRUNC and not created:
            loc.inode.setattr(SetAttr(size=0, mtime_ns=now_ns()))
        content = loc.inode.render()
        if content is not None:
            from cove.fs.synthetic import RenderedFile
            return RenderedFile(loc, flags, content)
        return InodeFile(loc, flags)

    def _open_special(self, loc: Location, st: Stat, flags: int) -> File:
        if st.mode & S_IFMT == S_IFSOCK:
            raise Errno(E.ENXIO)
        if loc.mount.flags & 4 and st.mode & S_IFMT in (S_IFCHR, S_IFBLK):  # MS_NODEV
            raise Errno(E.EACCES)
        if st.mode & S_IFMT == S_IFCHR and st.rdev in self.device_openers:
            return self.device_openers[st.rdev](loc, flags)
        opener = self.special_openers.get(st.mode & S_IFMT)
        if opener is None:
            raise Errno(E.ENXIO)
        return opener(loc, flags)

    def stat(self, ctx: PathContext, at: Location | None, path: str, *,
             follow: bool = True) -> Stat:
        return self.resolve(ctx, at, path, follow=follow).inode.stat()

    def statfs(self, ctx: PathContext, at: Location | None, path: str) -> StatFs:
        return self.resolve(ctx, at, path).mount.fs.statfs()

    def readlink(self, ctx: PathContext, at: Location | None, path: str) -> str:
        loc = self.resolve(ctx, at, path, follow=False)
        if loc.inode.ftype != S_IFLNK:
            raise Errno(E.EINVAL)
        return loc.inode.readlink()

    def access(self, ctx: PathContext, at: Location | None, path: str, mode: int, *,
               follow: bool = True) -> None:
        if mode & ~7:
            raise Errno(E.EINVAL)
        loc = self.resolve(ctx, at, path, follow=follow)
        if mode == F_OK:
            return
        st = loc.inode.stat()
        if mode & W_OK and st.mode & S_IFMT in (S_IFREG, S_IFDIR, S_IFLNK):
            self._check_writable(loc)
        perm.check(st, ctx.cred, mode)

    def mkdir(self, ctx: PathContext, at: Location | None, path: str, mode: int) -> None:
        parent = self._create_parent(ctx, at, path, is_dir=True)
        dir_st = parent.dir.inode.stat()
        uid, gid, inherit = self._new_owner(ctx, dir_st)
        bits = (mode & ~ctx.umask & 0o1777) | (S_ISGID if inherit else 0)
        parent.dir.inode.mkdir(parent.name, bits, uid, gid)

    def mknod(self, ctx: PathContext, at: Location | None, path: str, mode: int,
              rdev: int = 0) -> None:
        ftype = mode & S_IFMT or S_IFREG
        if ftype not in (S_IFREG, S_IFCHR, S_IFBLK, S_IFIFO, S_IFSOCK):
            raise Errno(E.EINVAL if ftype != S_IFDIR else E.EPERM)
        parent = self._create_parent(ctx, at, path)
        if ftype in (S_IFCHR, S_IFBLK) and not ctx.cred.is_root:
            raise Errno(E.EPERM)
        uid, gid, inherit = self._new_owner(ctx, parent.dir.inode.stat())
        bits = self._strip_sgid(ctx, mode, gid, inherit) & ~ctx.umask & 0o7777
        if ftype == S_IFREG:
            parent.dir.inode.create(parent.name, bits, uid, gid)
        else:
            parent.dir.inode.mknod(parent.name, ftype | bits,
                                   rdev if ftype in (S_IFCHR, S_IFBLK) else 0, uid, gid)

    def symlink(self, ctx: PathContext, target: str, at: Location | None, path: str) -> None:
        if not target:
            raise Errno(E.ENOENT)
        if _encoded_len(target) >= PATH_MAX:
            raise Errno(E.ENAMETOOLONG)
        parent = self._create_parent(ctx, at, path)
        uid, gid, _ = self._new_owner(ctx, parent.dir.inode.stat())
        parent.dir.inode.symlink(parent.name, target, uid, gid)

    def link(self, ctx: PathContext, old_at: Location | None, old_path: str,
             new_at: Location | None, new_path: str, *, follow: bool = False) -> None:
        old = self.resolve(ctx, old_at, old_path, follow=follow)
        self.link_location(ctx, old, new_at, new_path)

    def link_location(self, ctx: PathContext, old: Location, new_at: Location | None,
                      new_path: str) -> None:
        """link(2) of an already resolved location (linkat with AT_EMPTY_PATH)."""
        parent = self._create_parent(ctx, new_at, new_path)
        if old.mount is not parent.dir.mount:
            raise Errno(E.EXDEV)
        st = old.inode.stat()
        if not ctx.cred.is_root and st.uid != ctx.cred.uid and not (
                st.is_reg() and not st.mode & S_ISUID
                and perm.permitted(st, ctx.cred, MAY_READ | MAY_WRITE)):
            raise Errno(E.EPERM)  # fs.protected_hardlinks
        if st.is_dir():
            raise Errno(E.EPERM)
        if old.inode.fs is not parent.dir.inode.fs:
            raise Errno(E.EXDEV)
        parent.dir.inode.link(parent.name, old.inode)

    def unlink(self, ctx: PathContext, at: Location | None, path: str) -> None:
        parent = self.resolve_parent(ctx, at, path)
        if parent.last is not Last.NORM:
            raise Errno(E.EISDIR)
        self._check_writable(parent.dir)
        victim = self._lookup_child(parent)
        if victim is None:
            raise Errno(E.ENOENT)
        if parent.trailing_slash:
            raise Errno(E.EISDIR if victim.inode.stat().is_dir() else E.ENOTDIR)
        self._may_delete(ctx, parent.dir, victim, is_dir=False)
        parent.dir.inode.unlink(parent.name)

    def rmdir(self, ctx: PathContext, at: Location | None, path: str) -> None:
        parent = self.resolve_parent(ctx, at, path)
        if parent.last is Last.DOTDOT:
            raise Errno(E.ENOTEMPTY)
        if parent.last is Last.DOT:
            raise Errno(E.EINVAL)
        if parent.last is Last.ROOT:
            raise Errno(E.EBUSY)
        self._check_writable(parent.dir)
        victim = self._lookup_child(parent)
        if victim is None:
            raise Errno(E.ENOENT)
        self._may_delete(ctx, parent.dir, victim, is_dir=True)
        parent.dir.inode.rmdir(parent.name)

    def rename(self, ctx: PathContext, old_at: Location | None, old_path: str,
               new_at: Location | None, new_path: str, flags: int = 0) -> None:
        if flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT) or (
                flags & RENAME_EXCHANGE and flags & (RENAME_NOREPLACE | RENAME_WHITEOUT)):
            raise Errno(E.EINVAL)
        if flags & RENAME_WHITEOUT:
            raise Errno(E.EINVAL)  # needs CAP_MKNOD in the init namespace
        old_p = self.resolve_parent(ctx, old_at, old_path)
        new_p = self.resolve_parent(ctx, new_at, new_path)
        if old_p.dir.mount is not new_p.dir.mount:
            raise Errno(E.EXDEV)
        if old_p.last is not Last.NORM:
            raise Errno(E.EBUSY)
        if new_p.last is not Last.NORM:
            raise Errno(E.EEXIST if flags & RENAME_NOREPLACE else E.EBUSY)
        self._check_writable(old_p.dir)
        old = self._lookup_child(old_p)
        if old is None:
            raise Errno(E.ENOENT)
        new = self._lookup_child(new_p)
        if new is None and flags & RENAME_EXCHANGE:
            raise Errno(E.ENOENT)
        if new is not None and flags & RENAME_NOREPLACE:
            raise Errno(E.EEXIST)
        old_st = old.inode.stat()
        new_st = new.inode.stat() if new is not None else None
        old_is_dir = old_st.is_dir()
        if not old_is_dir:
            if old_p.trailing_slash or (new_p.trailing_slash and not (
                    flags & RENAME_EXCHANGE and new_st is not None and new_st.is_dir())):
                raise Errno(E.ENOTDIR)
        if flags & RENAME_EXCHANGE and new_st is not None and not new_st.is_dir() and (
                new_p.trailing_slash):
            raise Errno(E.ENOTDIR)
        # A directory may not move below itself, nor replace one of its ancestors.
        if self._is_ancestor(old, new_p.dir):
            raise Errno(E.EINVAL)
        if new is not None and self._is_ancestor(new, old_p.dir):
            raise Errno(E.EINVAL if flags & RENAME_EXCHANGE else E.ENOTEMPTY)
        if new is not None and old.inode.key == new.inode.key:
            return
        self._may_delete(ctx, old_p.dir, old, is_dir=old_is_dir)
        if new is not None:
            assert new_st is not None
            self._may_delete(ctx, new_p.dir, new,
                             is_dir=old_is_dir if not flags & RENAME_EXCHANGE
                             else new_st.is_dir())
        else:
            new_dir_st = new_p.dir.inode.stat()
            if new_dir_st.nlink == 0:
                raise Errno(E.ENOENT)
            perm.check(new_dir_st, ctx.cred, MAY_WRITE | MAY_EXEC)
        if not old_p.dir.same(new_p.dir) and not ctx.cred.is_root:
            # Moving a directory rewrites its "..": needs write on the directory itself.
            if old_is_dir:
                perm.check(old_st, ctx.cred, MAY_WRITE)
            if flags & RENAME_EXCHANGE and new_st is not None and new_st.is_dir():
                perm.check(new_st, ctx.cred, MAY_WRITE)
        if (new_st is not None and new_st.is_dir() and not flags & RENAME_EXCHANGE
                and any(True for _ in new.inode.readdir())):  # type: ignore[union-attr]
            raise Errno(E.ENOTEMPTY)
        old_p.dir.inode.rename(old_p.name, new_p.dir.inode, new_p.name, flags)

    def _is_ancestor(self, anc: Location, loc: Location) -> bool:
        """Is ``anc`` (a directory) ``loc`` or above it, within one mount?"""
        if not anc.inode.stat().is_dir() or anc.mount is not loc.mount:
            return False
        cur = loc.inode
        while True:
            if cur.key == anc.inode.key:
                return True
            up = cur.parent()
            if up.key == cur.key:
                return False
            cur = up

    def chmod(self, ctx: PathContext, at: Location | None, path: str, mode: int, *,
              follow: bool = True) -> None:
        loc = self.resolve(ctx, at, path, follow=follow)
        self.chmod_location(ctx, loc, mode)

    def chmod_location(self, ctx: PathContext, loc: Location, mode: int) -> None:
        st = loc.inode.stat()
        if st.is_lnk():
            raise Errno(E.EOPNOTSUPP)
        self._check_writable(loc)
        if not perm.is_owner(st, ctx.cred):
            raise Errno(E.EPERM)
        mode &= 0o7777
        if not ctx.cred.is_root and not ctx.cred.in_group(st.gid):
            mode &= ~S_ISGID
        loc.inode.setattr(SetAttr(mode=mode, ctime_ns=now_ns()))

    def chown(self, ctx: PathContext, at: Location | None, path: str, uid: int, gid: int, *,
              follow: bool = True) -> None:
        loc = self.resolve(ctx, at, path, follow=follow)
        self.chown_location(ctx, loc, uid, gid)

    def chown_location(self, ctx: PathContext, loc: Location, uid: int, gid: int) -> None:
        st = loc.inode.stat()
        self._check_writable(loc)
        new_uid = None if uid in (-1, 0xFFFFFFFF) else uid
        new_gid = None if gid in (-1, 0xFFFFFFFF) else gid
        if not ctx.cred.is_root:
            if new_uid is not None and new_uid != st.uid:
                raise Errno(E.EPERM)
            if new_gid is not None and new_gid != st.gid and (
                    st.uid != ctx.cred.uid or not ctx.cred.in_group(new_gid)):
                raise Errno(E.EPERM)
            if (new_uid is not None or new_gid is not None) and st.uid != ctx.cred.uid:
                raise Errno(E.EPERM)
        mode = None
        if st.mode & S_IFMT != S_IFDIR:
            # Any chown, even (-1, -1), drops set-id bits (setgid only where it means
            # "exec as group"); that is a mode change, so only the owner may cause it.
            bits = st.mode & 0o7777
            cleared = bits & ~S_ISUID
            if bits & S_ISGID and bits & 0o010:
                cleared &= ~S_ISGID
            if cleared != bits:
                if not perm.is_owner(st, ctx.cred):
                    raise Errno(E.EPERM)
                mode = cleared
        loc.inode.setattr(SetAttr(uid=new_uid, gid=new_gid, mode=mode, ctime_ns=now_ns()))

    def utimens(self, ctx: PathContext, loc: Location, atime: tuple[int, int] | None,
                mtime: tuple[int, int] | None) -> None:
        """utimensat on a resolved location; a time is (sec, nsec) with UTIME_NOW/OMIT,
        ``None`` meaning now."""
        times = [(0, UTIME_NOW) if t is None else t for t in (atime, mtime)]
        if any(ns not in (UTIME_NOW, UTIME_OMIT) and not 0 <= ns < 1_000_000_000
               for _, ns in times):
            raise Errno(E.EINVAL)
        if all(ns == UTIME_OMIT for _, ns in times):
            return  # Linux succeeds before any other check
        st = loc.inode.stat()
        self._check_writable(loc)
        now = now_ns()

        def pick(t: tuple[int, int]) -> int | None:
            if t[1] == UTIME_NOW:
                return now
            if t[1] == UTIME_OMIT:
                return None
            return t[0] * 1_000_000_000 + t[1]

        # Only "both now" may be done by a non-owner with write permission;
        # anything else (explicit times, or one time omitted) is the owner's.
        touch = all(ns == UTIME_NOW for _, ns in times)
        if not perm.is_owner(st, ctx.cred):
            if not touch:
                raise Errno(E.EPERM)
            if not perm.permitted(st, ctx.cred, MAY_WRITE):
                raise Errno(E.EACCES)
        loc.inode.setattr(SetAttr(atime_ns=pick(times[0]), mtime_ns=pick(times[1]),
                                  ctime_ns=now))

    def truncate(self, ctx: PathContext, at: Location | None, path: str, length: int) -> None:
        if length < 0:
            raise Errno(E.EINVAL)
        loc = self.resolve(ctx, at, path)
        st = loc.inode.stat()
        if st.is_dir():
            raise Errno(E.EISDIR)
        if not st.is_reg():
            raise Errno(E.EINVAL)
        self._check_writable(loc)
        perm.check(st, ctx.cred, MAY_WRITE)
        loc.inode.setattr(SetAttr(size=length, mtime_ns=now_ns()))

    def chdir(self, ctx: PathContext, at: Location | None, path: str) -> None:
        loc = self.resolve(ctx, at, path)
        self.chdir_location(ctx, loc)

    @staticmethod
    def chdir_location(ctx: PathContext, loc: Location) -> None:
        st = loc.inode.stat()
        if not st.is_dir():
            raise Errno(E.ENOTDIR)
        perm.check(st, ctx.cred, MAY_EXEC)
        ctx.cwd = loc

    def getcwd(self, ctx: PathContext) -> str:
        st = ctx.cwd.inode.stat()
        if st.nlink == 0:
            raise Errno(E.ENOENT)
        return self.path_of(ctx, ctx.cwd)
