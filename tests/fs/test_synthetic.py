"""Synthetic files (the future /proc): content rendered at open and frozen per open,
generated directory listings, symlinks computed per readlink, and no writes."""

from __future__ import annotations

import pytest

from cove.abi.errno import E, Errno, errno_name
from cove.fs.file import O_CREAT, O_DIRECTORY, O_PATH, O_RDONLY, O_RDWR, O_TRUNC, O_WRONLY
from cove.fs.memfs import MemFS
from cove.fs.node import PROC_SUPER_MAGIC, S_IFDIR, S_IFLNK, S_IFREG, SetAttr
from cove.fs.perm import Cred
from cove.fs.synthetic import SynthDir, SyntheticFS, SynthFile, SynthInode
from cove.fs.vfs import VFS, PathContext

pytestmark = pytest.mark.timeout(60)


def err(code: int, fn, *args) -> None:
    with pytest.raises(Errno) as info:
        fn(*args)
    assert info.value.errno == code, f"expected {errno_name(code)}, got {info.value.name}"


class World:
    """The state a /proc would describe: a tick counter, processes, the current pid."""

    def __init__(self) -> None:
        self.ticks = 0
        self.renders = 0
        self.pids: dict[int, str] = {1: "init", 7: "sh"}
        self.current = 7

    def uptime(self) -> bytes:
        self.renders += 1
        self.ticks += 1
        return f"{self.ticks} ticks\n".encode() + b"x" * 100


def _process_dir(world: World, pid: int):
    def make(parent: SynthDir) -> SynthInode:
        d = SynthDir(parent.fs, parent)  # type: ignore[arg-type]
        d.add_file("comm", lambda: world.pids.get(pid, "?").encode() + b"\n")
        d.add_file("secret", lambda: b"mine\n", mode=0o400)
        return d
    return make


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def proc(world: World) -> SyntheticFS:
    fs = SyntheticFS()
    root = fs.root
    root.add_file("uptime", world.uptime)
    root.add_link("self", lambda: str(world.current))
    root.add_dir("sys").add_file("version", lambda: b"cove\n")
    root.listing = lambda: {str(p): _process_dir(world, p) for p in world.pids}
    return fs


@pytest.fixture
def vfs(proc: SyntheticFS) -> VFS:
    v = VFS(MemFS())
    v.mkdir(v.context(), None, "/proc", 0o555)
    v.mount("/proc", proc, source="proc")
    return v


@pytest.fixture
def ctx(vfs: VFS) -> PathContext:
    return vfs.context()


def listing(vfs: VFS, ctx: PathContext, path: str) -> list[str]:
    return sorted(d.name for d in vfs.open(ctx, None, path, O_RDONLY | O_DIRECTORY).readdir())


def test_rendered_once_per_open_and_frozen(vfs, ctx, world):
    a = vfs.open(ctx, None, "/proc/uptime", O_RDONLY)
    assert world.renders == 1
    first = a.read(3)
    b = vfs.open(ctx, None, "/proc/uptime", O_RDONLY)
    assert world.renders == 2
    # a's content stays what it was when a was opened, however it is read
    rest = a.read(1000)
    assert (first + rest).startswith(b"1 ticks\n")
    assert a.pread(8, 0) == b"1 ticks\n"
    assert a.read(10) == b""  # at its end
    assert b.read(8) == b"2 ticks\n"
    assert world.renders == 2  # reading never re-renders
    assert a.seek(0, 0) == 0 and a.read(8) == b"1 ticks\n"


def test_open_without_content_does_not_render(vfs, ctx, world):
    p = vfs.open(ctx, None, "/proc/uptime", O_PATH)
    vfs.stat(ctx, None, "/proc/uptime")
    assert world.renders == 0
    err(E.EBADF, p.read, 1)


def test_metadata(vfs, ctx, proc):
    st = vfs.stat(ctx, None, "/proc/uptime")
    assert st.mode == S_IFREG | 0o444 and st.size == 0 and st.dev == proc.dev
    assert vfs.stat(ctx, None, "/proc").mode == S_IFDIR | 0o555
    assert vfs.stat(ctx, None, "/proc/self", follow=False).mode == S_IFLNK | 0o777
    assert vfs.statfs(ctx, None, "/proc/uptime").fstype == PROC_SUPER_MAGIC
    assert proc.statfs().flags & 1  # ST_RDONLY
    assert vfs.stat(ctx, None, "/proc/sys/version").ino == vfs.stat(
        ctx, None, "/proc/sys/version").ino


def test_dynamic_directory(vfs, ctx, world):
    assert listing(vfs, ctx, "/proc") == [".", "..", "1", "7", "self", "sys", "uptime"]
    assert vfs.open(ctx, None, "/proc/1/comm", O_RDONLY).read(100) == b"init\n"
    ino7 = vfs.stat(ctx, None, "/proc/7").ino
    world.pids[42] = "worker"
    del world.pids[1]
    assert listing(vfs, ctx, "/proc") == [".", "..", "42", "7", "self", "sys", "uptime"]
    err(E.ENOENT, vfs.stat, ctx, None, "/proc/1")
    err(E.ENOENT, vfs.open, ctx, None, "/proc/1/comm", O_RDONLY)
    assert vfs.open(ctx, None, "/proc/42/comm", O_RDONLY).read(100) == b"worker\n"
    assert vfs.stat(ctx, None, "/proc/7").ino == ino7  # a live entry keeps its number
    assert vfs.stat(ctx, None, "/proc/42").ino != ino7
    assert listing(vfs, ctx, "/proc/42") == [".", "..", "comm", "secret"]
    # ".." from a generated directory is the parent
    assert vfs.stat(ctx, None, "/proc/42/..").ino == vfs.stat(ctx, None, "/proc").ino
    assert vfs.stat(ctx, None, "/proc/42/../..").ino == vfs.stat(ctx, None, "/").ino


def test_content_follows_the_world(vfs, ctx, world):
    f = vfs.open(ctx, None, "/proc/7/comm", O_RDONLY)
    world.pids[7] = "renamed"
    assert f.read(100) == b"sh\n"  # frozen at open
    assert vfs.open(ctx, None, "/proc/7/comm", O_RDONLY).read(100) == b"renamed\n"


def test_symlink_computed_per_readlink(vfs, ctx, world):
    assert vfs.readlink(ctx, None, "/proc/self") == "7"
    assert vfs.open(ctx, None, "/proc/self/comm", O_RDONLY).read(100) == b"sh\n"
    world.current = 1
    assert vfs.readlink(ctx, None, "/proc/self") == "1"
    assert vfs.open(ctx, None, "/proc/self/comm", O_RDONLY).read(100) == b"init\n"
    world.current = 999  # names nothing
    err(E.ENOENT, vfs.stat, ctx, None, "/proc/self")
    assert vfs.stat(ctx, None, "/proc/self", follow=False).mode & S_IFLNK


def test_writes_refused(vfs, ctx, proc):
    for flags in (O_WRONLY, O_RDWR, O_RDONLY | O_TRUNC):
        err(E.EROFS, vfs.open, ctx, None, "/proc/uptime", flags)
    for op in (
        lambda: vfs.open(ctx, None, "/proc/new", O_CREAT | O_WRONLY, 0o644),
        lambda: vfs.mkdir(ctx, None, "/proc/d", 0o755),
        lambda: vfs.symlink(ctx, "x", None, "/proc/l"),
        lambda: vfs.unlink(ctx, None, "/proc/uptime"),
        lambda: vfs.rmdir(ctx, None, "/proc/sys"),
        lambda: vfs.rename(ctx, None, "/proc/uptime", None, "/proc/up"),
        lambda: vfs.chmod(ctx, None, "/proc/uptime", 0o666),
        lambda: vfs.truncate(ctx, None, "/proc/uptime", 0),
    ):
        err(E.EROFS, op)
    # the inodes themselves refuse too, and a rendered file refuses writes
    node = proc.root.lookup("uptime")
    assert isinstance(node, SynthFile)
    err(E.EROFS, node.setattr, SetAttr(mode=0o600))
    f = vfs.open(ctx, None, "/proc/uptime", O_RDONLY)
    err(E.EBADF, f.write, b"x")


def test_permissions(vfs, ctx, world):
    alice = vfs.context(Cred(1000, 1000))
    assert vfs.open(alice, None, "/proc/uptime", O_RDONLY).read(1) == b"1"
    err(E.EACCES, vfs.open, alice, None, "/proc/7/secret", O_RDONLY)
    assert vfs.open(ctx, None, "/proc/7/secret", O_RDONLY).read(10) == b"mine\n"
