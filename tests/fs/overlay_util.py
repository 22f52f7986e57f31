"""Helpers for the overlay tests: build layer trees, dump and copy them (raw Inode API)."""

from __future__ import annotations

from cove.abi.errno import Errno
from cove.fs.memfs import MemFS
from cove.fs.node import (
    S_IFBLK,
    S_IFCHR,
    S_IFDIR,
    S_IFIFO,
    S_IFLNK,
    S_IFMT,
    S_IFREG,
    Inode,
    SetAttr,
    dtype_of,
)
from cove.fs.overlay import make_whiteout, set_opaque


def resolve(root: Inode, path: str) -> Inode:
    """Walk ``a/b/c`` from ``root`` with lookup only (no symlinks, no ``..``)."""
    node = root
    for part in path.split("/"):
        if part:
            node = node.lookup(part)
    return node


def split(path: str) -> tuple[str, str]:
    head, _, tail = path.rpartition("/")
    return head, tail


def _args(given: list, *defaults: object) -> list:
    return list(given) + list(defaults[len(given):])


def build(fs: MemFS, spec: list[tuple]) -> MemFS:
    """Populate ``fs``; each step is (kind, path, *args), applied in order:
    ("d", p, mode, uid) dir, ("f", p, data, mode, uid) file, ("l", p, target) symlink,
    ("n", p, mode, rdev) node, ("h", p, existing) hard link, ("w", p) whiteout,
    ("o", p) make dir p opaque, ("t", p, atime, mtime) set times."""
    for kind, path, *args in spec:
        head, name = split(path)
        parent = resolve(fs.root, head)
        if kind == "d":
            mode, uid = _args(args, 0o755, 0)
            parent.mkdir(name, mode, uid, uid)
        elif kind == "f":
            data, mode, uid = _args(args, b"", 0o644, 0)
            node = parent.create(name, mode, uid, uid)
            node.write(0, data)
        elif kind == "l":
            parent.symlink(name, args[0], 0, 0)
        elif kind == "n":
            parent.mknod(name, args[0], args[1], 0, 0)
        elif kind == "h":
            parent.link(name, resolve(fs.root, args[0]))
        elif kind == "w":
            make_whiteout(parent, name)
        elif kind == "o":
            set_opaque(resolve(fs.root, path))
        elif kind == "t":
            resolve(fs.root, path).setattr(SetAttr(atime_ns=args[0], mtime_ns=args[1]))
        else:
            raise ValueError(kind)
    return fs


def lower(spec: list[tuple]) -> MemFS:
    fs = build(MemFS(), spec)
    fs.readonly = True
    return fs


def payload(node: Inode) -> object:
    st = node.stat()
    kind = st.mode & S_IFMT
    if kind == S_IFREG:
        return node.read(0, st.size + 1)
    if kind == S_IFLNK:
        return node.readlink()
    if kind in (S_IFCHR, S_IFBLK):
        return st.rdev
    return None


def dump(root: Inode, *, raw: bool = False) -> dict[str, tuple]:
    """Every entry below ``root``: path -> (type, perm, uid, gid, size, payload, nlink).

    ``raw`` adds ino and times (for proving a layer was not touched). Also checks
    that each readdir entry's ino and d_type agree with the inode's stat.
    Iterative, so deep trees do not hit the recursion limit.
    """
    out: dict[str, tuple] = {}
    stack = [("", root)]
    while stack:
        path, node = stack.pop()
        for e in node.readdir():
            child = node.lookup(e.name)
            st = child.stat()
            assert e.ino == st.ino, (path, e)
            assert e.dtype == dtype_of(st.mode), (path, e)
            p = f"{path}/{e.name}"
            is_dir = st.mode & S_IFMT == S_IFDIR
            rec = (st.mode & S_IFMT, st.perm, st.uid, st.gid, None if is_dir else st.size,
                   payload(child), st.nlink)
            if raw:
                rec += (st.ino, st.atime_ns, st.mtime_ns, st.ctime_ns)
            out[p] = rec
            if is_dir:
                stack.append((p, child))
    return out


def project(d: dict[str, tuple]) -> dict[str, tuple]:
    """A dump reduced to (type, perm, uid, payload, nlink), as EXPECTED lists."""
    return {p: (r[0], r[1], r[2], r[5], r[6]) for p, r in d.items()}


def inos(root: Inode) -> dict[str, int]:
    out: dict[str, int] = {}
    stack = [("", root)]
    while stack:
        path, node = stack.pop()
        for e in node.readdir():
            p = f"{path}/{e.name}"
            out[p] = e.ino
            if e.dtype == dtype_of(S_IFDIR):
                stack.append((p, node.lookup(e.name)))
    return out


def copy_tree(src: Inode, dst: Inode) -> None:
    """Copy the visible tree under ``src`` into directory ``dst`` (no hard links)."""
    stack = [(src, dst)]
    while stack:
        s, d = stack.pop()
        for e in s.readdir():
            node = s.lookup(e.name)
            st = node.stat()
            kind = st.mode & S_IFMT
            if kind == S_IFDIR:
                new = d.mkdir(e.name, st.perm, st.uid, st.gid)
                stack.append((node, new))
            elif kind == S_IFREG:
                new = d.create(e.name, st.perm, st.uid, st.gid)
                new.write(0, node.read(0, st.size))
            elif kind == S_IFLNK:
                new = d.symlink(e.name, node.readlink(), st.uid, st.gid)
            else:
                new = d.mknod(e.name, st.mode, st.rdev, st.uid, st.gid)
            new.setattr(SetAttr(mode=st.perm))


def errno_of(fn) -> int | None:
    """0/None-style outcome: the errno ``fn`` raised, or None."""
    try:
        fn()
    except Errno as e:
        return e.errno
    return None


# The three lower layers used by the unit and model tests (names from a..e so
# the model's random paths collide with them).
L1_SPEC: list[tuple] = [
    ("d", "a", 0o711, 5), ("f", "a/a", b"L1-aa"), ("w", "a/b"), ("d", "a/c"),
    ("f", "b", b"L1-b"), ("d", "c", 0o700, 7), ("o", "c"), ("f", "c/a", b"L1-ca"),
    ("l", "d", "a/a"), ("d", "a/e"), ("f", "a/e/one", b"1"), ("t", "a", 111, 222),
]
L2_SPEC: list[tuple] = [
    ("d", "a", 0o750, 1000), ("f", "a/b", b"L2-ab"), ("d", "a/c"), ("f", "a/c/a", b"L2-aca"),
    ("w", "a/c/d"), ("n", "a/d", 0o010640, 0), ("d", "b"), ("f", "b/a", b"L2-ba"), ("d", "c"),
    ("f", "c/b", b"L2-cb"), ("f", "d", b"L2-d"), ("f", "a/e", b"L2-ae"),
]
L3_SPEC: list[tuple] = [
    ("d", "a"), ("f", "a/a", b"L3-aa"), ("f", "a/b", b"L3-ab"), ("d", "a/c"),
    ("f", "a/c/b", b"L3-acb", 0o600, 3), ("d", "a/c/c"), ("f", "a/c/c/a", b"L3-acca"),
    ("f", "a/c/d", b"L3-acd"), ("d", "c"), ("f", "c/c", b"L3-cc"),
    ("n", "e", 0o020600, 0x103), ("d", "b"), ("f", "b/d", b"L3-bd"), ("d", "a/e"),
    ("f", "a/e/three", b"3"),
]


# The merged view of the three lowers.
EXPECTED = {  # path: (type, perm, uid, payload, nlink)
    "/a": (S_IFDIR, 0o711, 5, None, 4),
    "/a/a": (S_IFREG, 0o644, 0, b"L1-aa", 1),
    "/a/c": (S_IFDIR, 0o755, 0, None, 3),
    "/a/c/a": (S_IFREG, 0o644, 0, b"L2-aca", 1),
    "/a/c/b": (S_IFREG, 0o600, 3, b"L3-acb", 1),
    "/a/c/c": (S_IFDIR, 0o755, 0, None, 2),
    "/a/c/c/a": (S_IFREG, 0o644, 0, b"L3-acca", 1),
    "/a/d": (S_IFIFO, 0o640, 0, None, 1),
    "/a/e": (S_IFDIR, 0o755, 0, None, 2),  # L2's file a/e ends the merge: no L3 "three"
    "/a/e/one": (S_IFREG, 0o644, 0, b"1", 1),
    "/b": (S_IFREG, 0o644, 0, b"L1-b", 1),
    "/c": (S_IFDIR, 0o700, 7, None, 2),
    "/c/a": (S_IFREG, 0o644, 0, b"L1-ca", 1),
    "/d": (S_IFLNK, 0o777, 0, "a/a", 1),
    "/e": (S_IFCHR, 0o600, 0, 0x103, 1),
}


def three_lowers() -> list[MemFS]:
    return [lower(L1_SPEC), lower(L2_SPEC), lower(L3_SPEC)]
