"""openat2's RESOLVE_* restrictions.

The VFS resolves paths one way (with ``..`` and absolute symlinks stopping at
the context's root). openat2 adds rules about *how* a path may be resolved,
so this module first walks the path itself, component by component through
``VFS.resolve`` (which keeps permission checks, mounts and ENOTDIR/ENOENT
where they belong), failing where Linux fails:

- RESOLVE_BENEATH: an absolute path or symlink, or ``..`` at the starting
  directory, is EXDEV;
- RESOLVE_IN_ROOT: the starting directory acts as the root (the open then
  runs in a context whose root it is, so nothing can escape it);
- RESOLVE_NO_XDEV: crossing a mount (down, up, or by an absolute symlink)
  is EXDEV;
- RESOLVE_NO_SYMLINKS: any symlink followed is ELOOP;
- RESOLVE_NO_MAGICLINKS: /proc's fd, exe, cwd and root links are ELOOP
  (cove resolves them by their text, but a guest asking for this expects
  them refused).

The open itself then runs with the scoped root, so even a tree changed
between the check and the open (a host directory under hostfs) cannot lead
outside the starting directory under BENEATH or IN_ROOT.
"""

from __future__ import annotations

from collections import deque

from cove.abi import flags as F
from cove.abi.errno import E, Errno
from cove.fs.mount import Location
from cove.fs.node import PROC_SUPER_MAGIC, S_IFLNK, S_IFMT
from cove.fs.vfs import MAXSYMLINKS, VFS, PathContext

VALID_RESOLVE = (F.RESOLVE_NO_XDEV | F.RESOLVE_NO_MAGICLINKS | F.RESOLVE_NO_SYMLINKS
                 | F.RESOLVE_BENEATH | F.RESOLVE_IN_ROOT | F.RESOLVE_CACHED)
SCOPED = F.RESOLVE_BENEATH | F.RESOLVE_IN_ROOT
_MAGIC_NAMES = ("exe", "cwd", "root")
_MAGIC_DIRS = ("fd", "map_files", "ns")


def _split(path: str) -> list[str]:
    return [c for c in path.split("/") if c]


def _is_magic(loc: Location, name: str, parent_name: str) -> bool:
    return loc.mount.fs.magic == PROC_SUPER_MAGIC and (
        name in _MAGIC_NAMES or parent_name in _MAGIC_DIRS)


def scoped_context(ctx: PathContext, start: Location, resolve: int) -> PathContext:
    """The context the open runs in: under BENEATH/IN_ROOT, rooted at ``start``."""
    if not resolve & SCOPED:
        return ctx
    return PathContext(start, ctx.cwd, ctx.cred, ctx.umask)


def check(vfs: VFS, ctx: PathContext, start: Location, path: str, resolve: int, *,
          follow_last: bool, create: bool) -> None:
    """Walk ``path`` from ``start`` and raise what Linux raises for ``resolve``.

    Errors that do not depend on ``resolve`` (ENOENT, EACCES, ENOTDIR) are left
    to the open that follows, except where the walk cannot go on without them.
    """
    if not path:
        return
    no_xdev = resolve & F.RESOLVE_NO_XDEV
    no_symlinks = resolve & F.RESOLVE_NO_SYMLINKS
    no_magic = resolve & (F.RESOLVE_NO_MAGICLINKS | F.RESOLVE_NO_SYMLINKS)
    beneath = resolve & F.RESOLVE_BENEATH
    root = start if resolve & SCOPED else ctx.root
    walk_ctx = scoped_context(ctx, start, resolve)
    if path.startswith("/") and not resolve & F.RESOLVE_IN_ROOT:
        if beneath:
            raise Errno(E.EXDEV)
        cur = root  # an absolute path argument is no crossing, even under NO_XDEV
    else:
        cur = start
    comps = deque(_split(path))
    trailing = path.endswith("/")
    links = 0
    parent_name = ""
    while comps:
        name = comps.popleft()
        is_last = not comps
        if name == ".":
            continue
        if name == "..":
            if cur.same(root):
                if beneath:
                    raise Errno(E.EXDEV)
                continue
            nxt = vfs.resolve(walk_ctx, cur, "..")
            if no_xdev and nxt.mount is not cur.mount:
                raise Errno(E.EXDEV)
            cur, parent_name = nxt, ""
            continue
        try:
            nxt = vfs.resolve(walk_ctx, cur, name, follow=False)
        except Errno as e:
            if e.errno == E.ENOENT and is_last and create:
                return
            raise
        if no_xdev and nxt.mount is not cur.mount:
            raise Errno(E.EXDEV)
        if nxt.inode.mode & S_IFMT == S_IFLNK and (not is_last or follow_last or trailing):
            if no_symlinks:
                raise Errno(E.ELOOP)
            if no_magic and _is_magic(nxt, name, parent_name):
                raise Errno(E.ELOOP)
            links += 1
            if links > MAXSYMLINKS:
                raise Errno(E.ELOOP)
            target = nxt.inode.readlink()
            if target.startswith("/"):
                if beneath:
                    raise Errno(E.EXDEV)
                if no_xdev and root.mount is not cur.mount:
                    raise Errno(E.EXDEV)
                cur = root
            if is_last and target.endswith("/"):
                trailing = True
            comps.extendleft(reversed(_split(target)))
            continue
        cur, parent_name = nxt, name
