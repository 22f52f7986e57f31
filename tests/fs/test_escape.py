"""The escape suite: nothing outside the sandbox is ever visible, and nothing of the
host is ever changed, across the whole filesystem stack.

The sandbox is the one a real run would build: its root is an overlay (memfs
upper over a HostFS of a host tree), with a TarFS mounted at /tar and another
HostFS mounted at /mnt. Next to the host trees lie decoys holding a unique
marker; the trees and the tar are full of ways out (symlinks to /etc/passwd,
``../../..``, absolute host paths, loops, tar hard links and member names that
climb out). An autouse guard checks, around every test, that every host file's
sha256, every symlink target, every mode, owner and mtime under the test's
directory is unchanged, and (with inotify) that no decoy was opened or read.

``/proc/self/root``-style tricks do not apply yet: there is no /proc in the
sandbox; they belong here once procfs exists.
"""

from __future__ import annotations

import ctypes
import hashlib
import io
import os
import struct
import tarfile
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cove.abi.errno import E, Errno
from cove.fs.file import (
    O_APPEND,
    O_CREAT,
    O_DIRECTORY,
    O_NOFOLLOW,
    O_RDONLY,
    O_RDWR,
    O_TMPFILE,
    O_TRUNC,
    O_WRONLY,
    InodeFile,
)
from cove.fs.hostfs import HostFS
from cove.fs.memfs import MemFS
from cove.fs.mount import Location
from cove.fs.node import RENAME_EXCHANGE, S_IFIFO
from cove.fs.overlay import OverlayFS
from cove.fs.tarfs import TarFS
from cove.fs.vfs import PATH_MAX, VFS, PathContext

from .hostdigest import tree_state

pytestmark = pytest.mark.timeout(120)

MARKER = f"DECOY-{uuid.uuid4().hex}".encode()
SANDBOX_PASSWD = b"sandbox:x:1000:1000::/home/user:/bin/sh\n"
HOST_PASSWD = Path("/etc/passwd").read_bytes()
DECOYS = {"decoy", "secret_dir", "decoy.txt"}  # names of outside things, next to the trees
DEEP_NAME = "p" * 200
DEEP_LEVELS = 25  # 25 * 201 bytes: deeper than PATH_MAX


# --- the host side ----------------------------------------------------------------------
@dataclass
class World:
    root: Path  # holds everything below; the guard snapshots all of it
    tree: Path  # the overlay's lower layer
    mnt_tree: Path  # mounted at /mnt
    tar: Path  # mounted at /tar
    decoy: Path


def _tar_bytes(world: Path) -> bytes:
    decoy_abs = str(world / "decoy")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        def add(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"",
                link: str = "") -> None:
            ti = tarfile.TarInfo(name)
            ti.type = kind
            ti.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
            ti.linkname = link
            ti.size = len(data) if kind == tarfile.REGTYPE else 0
            tf.addfile(ti, io.BytesIO(data) if kind == tarfile.REGTYPE else None)

        add("etc", tarfile.DIRTYPE)
        add("etc/issue", data=b"tar issue\n")
        add("etc/passwd", tarfile.SYMTYPE, link="/etc/passwd")
        add("rel_escape", tarfile.SYMTYPE, link="../../../../decoy")
        add("abs_host", tarfile.SYMTYPE, link=decoy_abs)
        add("dotdots", tarfile.SYMTYPE, link="../" * 60)
        add("cross", tarfile.SYMTYPE, link="/cross_back")
        add("hl_out", tarfile.LNKTYPE, link="../../decoy")
        add("hl_abs", tarfile.LNKTYPE, link=decoy_abs)
        add("hl_dotdot", tarfile.LNKTYPE, link="etc/../../decoy")
        add("hl_ok", tarfile.LNKTYPE, link="etc/issue")
        add("../../escape_member", data=b"climbed out " + MARKER)
        add("sub/../../up_member", data=b"climbed out " + MARKER)
        add("/abs_member", data=b"absolute member\n")
    return buf.getvalue()


def _build_world(base: Path) -> World:
    root = base / "world"
    tree, mnt_tree, secret = root / "tree", root / "mnt_tree", root / "secret_dir"
    for d in (tree / "etc", tree / "home" / "user", mnt_tree / "sub", secret):
        d.mkdir(parents=True)
    decoy = root / "decoy"
    decoy.write_bytes(b"outside " + MARKER + b"\n")
    (secret / "decoy.txt").write_bytes(MARKER)
    (tree / "etc" / "passwd").write_bytes(SANDBOX_PASSWD)
    (tree / "etc" / "hostname").write_bytes(b"sandbox\n")
    (tree / "home" / "user" / "notes.txt").write_bytes(b"my notes\n")
    (tree / "home" / "user" / "notes.txt").chmod(0o600)
    (mnt_tree / "data.txt").write_bytes(b"mounted data\n")
    (mnt_tree / "sub" / "inner.txt").write_bytes(b"inner\n")
    links = {
        tree: {
            "passwd_link": "/etc/passwd", "up": "../../..", "updecoy": "../decoy",
            "far": "../" * 50 + "decoy", "abs_decoy": str(decoy), "abs_world": str(root),
            "abs_root": "/", "loop1": "loop2", "loop2": "loop1", "self": "self",
            "deep_escape": "home/user/../../../decoy", "secret": "../secret_dir/decoy.txt",
            "etc_link": "/etc", "home/user/back": "../../../../..",
        },
        mnt_tree: {"out": "../decoy", "abs": str(root), "up": "../../../..",
                   "sub/upup": "../../secret_dir", "selfname": "selfname"},
    }
    for base_dir, table in links.items():
        for name, target in table.items():
            os.symlink(target, base_dir / name)
    deep = tree / "deep"
    deep.mkdir()
    fd = os.open(deep, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(DEEP_LEVELS):
            os.mkdir(DEEP_NAME, dir_fd=fd)
            nfd = os.open(DEEP_NAME, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        os.symlink("../" * (DEEP_LEVELS + 10) + "decoy", "escape", dir_fd=fd)
        leaf = os.open("leaf.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(leaf, b"deep leaf\n")
        os.close(leaf)
    finally:
        os.close(fd)
    tar = root / "image.tar"
    tar.write_bytes(_tar_bytes(root))
    return World(root, tree, mnt_tree, tar, decoy)


def snapshot(path: Path) -> list[tuple[object, ...]]:
    return [("/etc/passwd", hashlib.sha256(HOST_PASSWD).hexdigest()), *tree_state(path)]


class OpenWatch:
    """inotify on a directory: which of its entries were opened or read (O_PATH and
    stat do not count: only a real open of content does)."""

    IN_ACCESS, IN_OPEN = 0x1, 0x20

    def __init__(self, directory: Path) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        if self._libc.inotify_add_watch(self.fd, os.fsencode(directory),
                                        self.IN_ACCESS | self.IN_OPEN) < 0:
            os.close(self.fd)
            raise OSError(ctypes.get_errno(), "inotify_add_watch")

    def names(self) -> set[str]:
        seen: set[str] = set()
        while True:
            try:
                buf = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                return seen
            i = 0
            while i < len(buf):
                _, _, _, size = struct.unpack_from("iIII", buf, i)
                seen.add(os.fsdecode(buf[i + 16:i + 16 + size].rstrip(b"\0")))
                i += 16 + size

    def close(self) -> set[str]:
        seen = self.names()
        os.close(self.fd)
        return seen


@pytest.fixture
def world(tmp_path: Path) -> World:
    return _build_world(tmp_path)


@pytest.fixture(autouse=True)
def host_unchanged(world: World) -> Iterator[None]:
    before = snapshot(world.root)
    watches = [OpenWatch(world.root), OpenWatch(world.root / "secret_dir")]
    yield
    opened = set().union(*(w.close() for w in watches))
    assert not opened & DECOYS, f"decoys were opened: {sorted(opened & DECOYS)}"
    assert snapshot(world.root) == before, "the host tree changed"


# --- the sandbox -------------------------------------------------------------------------
@dataclass
class Sandbox:
    vfs: VFS
    ctx: PathContext
    upper: MemFS
    lower: HostFS
    tar: TarFS
    mnt: HostFS

    def read(self, path: str, ctx: PathContext | None = None) -> bytes:
        f = self.vfs.open(ctx or self.ctx, None, path, O_RDONLY)
        return f.pread(1 << 20, 0)

    def errno(self, fn, *args, **kw) -> int:
        with pytest.raises(Errno) as info:
            fn(*args, **kw)
        return info.value.errno

    def key(self, path: str, ctx: PathContext | None = None) -> tuple[int, int]:
        st = self.vfs.stat(ctx or self.ctx, None, path)
        return st.dev, st.ino


@pytest.fixture
def sb(world: World, host_unchanged: None) -> Iterator[Sandbox]:
    upper, lower = MemFS(), HostFS(str(world.tree))
    vfs = VFS(OverlayFS(upper, [lower]))
    ctx = vfs.context()
    for d in ("/tar", "/mnt"):
        vfs.mkdir(ctx, None, d, 0o755)
    tar = TarFS(str(world.tar))
    mnt = HostFS(str(world.mnt_tree))
    vfs.mount("/tar", tar, source="image.tar")
    vfs.mount("/mnt", mnt, source="hostdir")
    vfs.symlink(ctx, "/tar/cross", None, "/cross_back")  # a loop through two mounts
    yield Sandbox(vfs, ctx, upper, lower, tar, mnt)
    tar.close()
    lower.close()
    mnt.close()


def check_clean(data: bytes, where: str) -> None:
    assert MARKER not in data, f"{where} shows a decoy"
    assert data != HOST_PASSWD or HOST_PASSWD == SANDBOX_PASSWD, f"{where} is the host passwd"


def reachable(sb: Sandbox, ctx: PathContext) -> Iterator[tuple[str, Location]]:
    """Everything reachable from ``ctx.root`` by readdir, and where each symlink leads."""
    queue: deque[tuple[str, Location]] = deque([("/", ctx.root)])
    while queue:
        path, d = queue.popleft()
        listing = sb.vfs.open(ctx, d, ".", O_RDONLY | O_DIRECTORY)
        for ent in listing.readdir():
            if ent.name in (".", ".."):
                continue
            p = path.rstrip("/") + "/" + ent.name
            here = sb.vfs.resolve(ctx, d, ent.name, follow=False)
            yield p, here
            st = here.inode.stat()
            if st.is_dir():
                queue.append((p, here))
            elif st.is_lnk():
                try:
                    yield p + " -> " + here.inode.readlink(), sb.vfs.resolve(ctx, d, ent.name)
                except Errno as e:
                    assert e.errno in (E.ENOENT, E.ELOOP, E.ENOTDIR), (p, e)


# --- nothing outside is visible ---------------------------------------------------------------
def test_every_reachable_thing_is_inside(sb: Sandbox) -> None:
    mounts = {id(m) for m in sb.vfs.mounts()}
    fss = {id(m.fs) for m in sb.vfs.mounts()}
    count = 0
    for path, loc in reachable(sb, sb.ctx):
        count += 1
        assert id(loc.mount) in mounts and id(loc.inode.fs) in fss, path
        if loc.inode.stat().is_reg():
            check_clean(read_location(loc), path)
    assert count > 40


def read_location(loc: Location) -> bytes:
    return InodeFile(loc, O_RDONLY).pread(1 << 20, 0)


def test_symlinks_resolve_inside_the_sandbox(sb: Sandbox) -> None:
    root = sb.key("/")
    assert sb.read("/passwd_link") == SANDBOX_PASSWD
    assert sb.read("/abs_root/etc/passwd") == SANDBOX_PASSWD
    assert sb.read("/etc_link/passwd") == SANDBOX_PASSWD
    assert sb.key("/up") == root
    assert sb.key("/home/user/back") == root
    assert sb.key("/mnt/up") == root
    assert sb.key("/tar/dotdots") == root
    assert sb.read("/tar/etc/passwd") == SANDBOX_PASSWD  # absolute: the sandbox's root
    for path in ("/updecoy", "/far", "/abs_decoy", "/abs_world", "/deep_escape", "/secret",
                 "/mnt/out", "/mnt/abs", "/mnt/sub/upup", "/tar/rel_escape", "/tar/abs_host",
                 "/decoy", "/secret_dir", "/up/decoy", "/up/up/up/secret_dir/decoy.txt",
                 "/mnt/up/decoy", "/tar/dotdots/decoy", "/abs_root/../decoy"):
        assert sb.errno(sb.vfs.stat, sb.ctx, None, path) == E.ENOENT, path
    for path in ("/loop1", "/loop2/x", "/self", "/tar/cross", "/cross_back/x"):
        assert sb.errno(sb.vfs.stat, sb.ctx, None, path) == E.ELOOP, path
    assert sb.errno(sb.vfs.stat, sb.ctx, None, "/mnt/selfname") == E.ELOOP


def test_tar_members_and_hard_links_that_point_outside(sb: Sandbox) -> None:
    for name in ("hl_out", "hl_abs", "hl_dotdot", "escape_member", "up_member"):
        assert sb.errno(sb.vfs.stat, sb.ctx, None, f"/tar/{name}") == E.ENOENT, name
        assert sb.errno(sb.vfs.stat, sb.ctx, None, f"/{name}") == E.ENOENT, name
    skipped = {s.name for s in sb.tar.skipped}
    assert {"hl_out", "hl_dotdot", "../../escape_member", "sub/../../up_member"} <= skipped
    assert any(s.endswith("hl_abs") for s in skipped)
    assert sb.read("/tar/hl_ok") == b"tar issue\n"
    assert sb.vfs.stat(sb.ctx, None, "/tar/hl_ok").nlink == 2
    assert sb.read("/tar/abs_member") == b"absolute member\n"  # "/" stripped: inside /tar
    assert sb.errno(sb.vfs.stat, sb.ctx, None, "/abs_member") == E.ENOENT


def test_dotdot_at_every_root(sb: Sandbox) -> None:
    root = sb.key("/")
    for path in ("/..", "/../..", "/tar/..", "/tar/../..", "/mnt/..", "/mnt/sub/../../..",
                 "/tar/etc/../../..", "/mnt/" + "../" * 200):
        assert sb.key(path) == root, path
    # ctx.root inside each mount: ".." and absolute links stop there
    for top in ("/tar", "/mnt", "/home/user"):
        jail = sb.vfs.context()
        jail.root = jail.cwd = sb.vfs.resolve(sb.ctx, None, top)
        inner = sb.key("/", jail)
        assert inner == sb.key(top)
        for path in ("/..", "../../..", "/" + "../" * 100):
            assert sb.key(path, jail) == inner, (top, path)
        for path in ("/decoy", "/../decoy", "../../../../secret_dir", "/../../world"):
            assert sb.errno(sb.vfs.stat, jail, None, path) == E.ENOENT, (top, path)
        # everything the jailed task can reach lies below its root
        for path, loc in reachable(sb, jail):
            st = loc.inode.stat()
            if st.is_dir():
                assert sb.vfs.path_of(sb.ctx, loc).startswith(top), (top, path)
            elif st.is_reg():
                check_clean(read_location(loc), path)
    tar_jail = sb.vfs.context()
    tar_jail.root = sb.vfs.resolve(sb.ctx, None, "/tar")
    # the tar's /etc/passwd -> /etc/passwd now names itself
    assert sb.errno(sb.vfs.stat, tar_jail, None, "/etc/passwd") == E.ELOOP
    mnt_jail = sb.vfs.context()
    mnt_jail.root = sb.vfs.resolve(sb.ctx, None, "/mnt")
    assert sb.key("/up", mnt_jail) == sb.key("/mnt")
    assert sb.read("/up/data.txt", mnt_jail) == b"mounted data\n"


def test_very_long_paths(sb: Sandbox) -> None:
    ups = "../" * ((PATH_MAX - 1 - len("etc/passwd")) // 3)
    assert sb.read(ups + "etc/passwd") == SANDBOX_PASSWD
    assert sb.errno(sb.vfs.stat, sb.ctx, None, "../" * 1366) == E.ENAMETOOLONG
    assert sb.errno(sb.vfs.stat, sb.ctx, None, "/mnt/" + "../" * 1400) == E.ENAMETOOLONG
    tour = "/tar/../mnt/../tar/../"
    assert sb.read(tour * ((PATH_MAX - 20) // len(tour)) + "etc/passwd") == SANDBOX_PASSWD
    sb.vfs.symlink(sb.ctx, "../" * 1300 + "decoy", None, "/longlink")
    assert sb.errno(sb.vfs.stat, sb.ctx, None, "/longlink") == E.ENOENT
    assert sb.errno(sb.vfs.symlink, sb.ctx, "../" * 1366, None, "/toolong") == E.ENAMETOOLONG
    # a host directory deeper than PATH_MAX, walked one step at a time
    ctx = sb.vfs.context()
    sb.vfs.chdir(ctx, None, "/deep")
    for _ in range(DEEP_LEVELS):
        sb.vfs.chdir(ctx, None, DEEP_NAME)
    assert sb.read("leaf.txt", ctx) == b"deep leaf\n"
    assert sb.errno(sb.vfs.stat, ctx, None, "escape") == E.ENOENT
    assert sb.key("../" * (DEEP_LEVELS + 10), ctx) == sb.key("/")
    assert len(sb.vfs.getcwd(ctx)) > PATH_MAX  # the syscall layer turns this into ERANGE


def test_symlink_loops_across_layers(sb: Sandbox) -> None:
    v, c = sb.vfs, sb.ctx
    v.symlink(c, "/mnt/sub/../../a2", None, "/a1")
    v.symlink(c, "tar/../a1", None, "/a2")
    for path in ("/a1", "/a2", "/a1/x"):
        assert sb.errno(v.stat, c, None, path) == E.ELOOP, path
    assert sb.errno(v.open, c, None, "/a1", O_CREAT | O_WRONLY, 0o644) == E.ELOOP
    assert sb.errno(v.open, c, None, "/loop1", O_CREAT | O_WRONLY, 0o644) == E.ELOOP


# --- the lower layers never change ------------------------------------------------------
def test_overlay_writes_stay_in_the_upper(sb: Sandbox, world: World) -> None:
    v, c = sb.vfs, sb.ctx
    f = v.open(c, None, "/passwd_link", O_WRONLY | O_APPEND)
    f.write(b"evil:x:0:0::/:/bin/sh\n")
    v.truncate(c, None, "/etc/hostname", 0)
    v.open(c, None, "/home/user/notes.txt", O_RDWR | O_TRUNC).write(b"rewritten")
    v.chmod(c, None, "/home/user/notes.txt", 0o777)
    v.chown(c, None, "/etc/passwd", 123, 456)
    v.utimens(c, v.resolve(c, None, "/etc"), (1, 0), (2, 0))
    v.unlink(c, None, "/etc/hostname")
    v.link(c, None, "/etc/passwd", None, "/etc/passwd2")
    v.rename(c, None, "/home", None, "/home2")
    v.rename(c, None, "/etc/passwd2", None, "/home2/user/notes.txt")
    v.rename(c, None, "/etc_link", None, "/up", RENAME_EXCHANGE)
    v.unlink(c, None, "/updecoy")
    v.symlink(c, "../decoy", None, "/updecoy")
    v.mkdir(c, None, "/etc/new", 0o700)
    v.mknod(c, None, "/etc/fifo", S_IFIFO | 0o600)
    v.rmdir(c, None, "/etc/new")
    v.rename(c, None, "/deep", None, "/etc/deep")
    # writing through links that point "outside" writes inside the sandbox
    v.open(c, None, "/far", O_CREAT | O_WRONLY, 0o644).write(b"created " + MARKER)
    assert v.readlink(c, None, "/far").endswith("decoy")
    assert sb.read("/decoy").startswith(b"created")  # the sandbox's /decoy, in the upper
    assert sb.errno(v.open, c, None, "/abs_decoy", O_CREAT | O_WRONLY, 0o644) == E.ENOENT
    # the sandbox sees its changes ...
    assert sb.read("/etc/passwd").endswith(b"evil:x:0:0::/:/bin/sh\n")
    assert sb.read("/home2/user/notes.txt") == sb.read("/etc/passwd")
    assert sb.errno(v.stat, c, None, "/home") == E.ENOENT
    # ... and a fresh view of the lower sees none of them
    fresh = VFS(HostFS(str(world.tree)))
    fc = fresh.context()
    assert fresh.open(fc, None, "/etc/passwd", O_RDONLY).read(1000) == SANDBOX_PASSWD
    assert fresh.open(fc, None, "/home/user/notes.txt", O_RDONLY).read(100) == b"my notes\n"
    assert fresh.stat(fc, None, "/etc/hostname").size == len(b"sandbox\n")
    assert fresh.readlink(fc, None, "/updecoy") == "../decoy"


def _changes(v: VFS, c: PathContext, base: str, target: str) -> list:
    """Every kind of change, aimed at a read-only mount ``base``."""
    return [
        lambda: v.open(c, None, target, O_WRONLY),
        lambda: v.open(c, None, target, O_RDONLY | O_TRUNC),
        lambda: v.open(c, None, f"{base}/new", O_CREAT | O_WRONLY, 0o644),
        lambda: v.open(c, None, base, O_TMPFILE | O_RDWR, 0o600),
        lambda: v.truncate(c, None, target, 0),
        lambda: v.chmod(c, None, target, 0o777),
        lambda: v.chown(c, None, target, 1, 1),
        lambda: v.unlink(c, None, target),
        lambda: v.mkdir(c, None, f"{base}/d", 0o755),
        lambda: v.symlink(c, "/etc/passwd", None, f"{base}/l"),
        lambda: v.rename(c, None, target, None, f"{base}/moved"),
        lambda: v.mknod(c, None, f"{base}/fifo", S_IFIFO | 0o644),
        lambda: v.utimens(c, v.resolve(c, None, target), None, None),
    ]


def test_read_only_mounts_refuse_every_change(sb: Sandbox) -> None:
    v, c = sb.vfs, sb.ctx
    put = v.open(c, None, "/mine", O_CREAT | O_WRONLY, 0o644)
    put.write(b"mine")
    for base, target in (("/mnt", "/mnt/data.txt"), ("/tar", "/tar/etc/issue")):
        for op in _changes(v, c, base, target):
            assert sb.errno(op) == E.EROFS, (base, op)
    # links and renames between the layers cannot cross mounts (link checks the
    # target mount is writable first, as Linux's filename_create does)
    for old, new in (("/mnt/data.txt", "/stolen"), ("/tar/etc/issue", "/stolen"),
                     ("/mine", "/mnt/mine"), ("/mine", "/tar/mine"),
                     ("/mnt/data.txt", "/tar/x")):
        assert sb.errno(v.rename, c, None, old, None, new) == E.EXDEV, (old, new)
        expected = E.EXDEV if new == "/stolen" else E.EROFS
        assert sb.errno(v.link, c, None, old, None, new) == expected, (old, new)
    assert sb.errno(v.rename, c, None, "/mnt", None, "/mnt2") == E.EBUSY
    assert sb.errno(v.rmdir, c, None, "/tar") == E.EBUSY
    assert sb.read("/mnt/data.txt") == b"mounted data\n"


def test_no_host_path_leaks_through_metadata(sb: Sandbox) -> None:
    v, c = sb.vfs, sb.ctx
    assert v.path_of(c, v.resolve(c, None, "/mnt/sub")) == "/mnt/sub"
    assert v.path_of(c, v.resolve(c, None, "/up")) == "/"
    for path in ("/", "/mnt", "/tar"):
        listing = v.open(c, None, path, O_RDONLY | O_DIRECTORY)
        names = {d.name for d in listing.readdir()}
        assert not names & DECOYS and "world" not in names
    # the whole tree, as names: nothing from beside the host trees
    seen = [p.split(" -> ")[0] for p, _ in reachable(sb, c)]
    assert not any(set(p.split("/")) & DECOYS for p in seen)
    assert not any("mnt_tree" in p or "image.tar" in p for p in seen)


# --- the guard itself must be able to fail ----------------------------------------------------
def test_guard_notices_changes(tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "f").write_bytes(b"1")
    os.symlink("f", other / "l")
    base = snapshot(other)
    os.chmod(other / "f", 0o600)
    assert snapshot(other) != base
    base = snapshot(other)
    os.unlink(other / "l")
    os.symlink("g", other / "l")
    assert snapshot(other) != base
    base = snapshot(other)
    (other / "f").write_bytes(b"2")
    assert snapshot(other) != base


def test_watch_notices_reads(tmp_path: Path) -> None:
    (tmp_path / "decoy").write_bytes(b"x")
    w = OpenWatch(tmp_path)
    fd = os.open(tmp_path / "decoy", os.O_PATH)  # O_PATH and stat are not reads
    os.close(fd)
    os.stat(tmp_path / "decoy")
    assert w.names() == set()
    (tmp_path / "decoy").read_bytes()
    assert "decoy" in w.close()


def test_nofollow_never_opens_outside(sb: Sandbox) -> None:
    v, c = sb.vfs, sb.ctx
    for path in ("/passwd_link", "/updecoy", "/abs_decoy", "/mnt/out", "/tar/abs_host"):
        assert sb.errno(v.open, c, None, path, O_RDONLY | O_NOFOLLOW) == E.ELOOP, path
