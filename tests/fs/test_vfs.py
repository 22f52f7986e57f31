"""Unit tests of the VFS engine itself (cove.fs.vfs) over memfs.

Every expected errno here was checked against Linux 6.x on tmpfs (as root, and
as uid 1000 for the permission tests); where the order of two errors matters
the test says which one Linux reports first.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from cove.abi.errno import E, Errno, errno_name
from cove.fs.file import (
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
)
from cove.fs.memfs import MemFS
from cove.fs.mount import MS_RDONLY, Location
from cove.fs.node import (
    RENAME_EXCHANGE,
    RENAME_NOREPLACE,
    S_IFDIR,
    S_IFIFO,
    S_IFLNK,
    S_IFMT,
    S_IFREG,
    S_ISGID,
    S_ISUID,
    S_ISVTX,
)
from cove.fs.perm import Cred
from cove.fs.vfs import (
    MAXSYMLINKS,
    NAME_MAX,
    PATH_MAX,
    R_OK,
    UTIME_NOW,
    UTIME_OMIT,
    VFS,
    W_OK,
    X_OK,
    PathContext,
)

pytestmark = pytest.mark.timeout(60)

ALICE = Cred(1000, 1000, (60,))
BOB = Cred(1001, 1001)


def err(code: int, fn: Callable[..., object], *args: object, **kw: object) -> None:
    """``fn(*args)`` must fail with exactly ``code``."""
    with pytest.raises(Errno) as info:
        fn(*args, **kw)
    assert info.value.errno == code, f"expected {errno_name(code)}, got {info.value.name}"


@pytest.fixture
def vfs() -> VFS:
    return VFS(MemFS())


@pytest.fixture
def ctx(vfs: VFS) -> PathContext:
    return vfs.context()


def put(vfs: VFS, ctx: PathContext, path: str, data: bytes = b"", mode: int = 0o644) -> None:
    """Create (or overwrite) a file with exactly ``mode`` (umask does not apply)."""
    f = vfs.open(ctx, None, path, O_CREAT | O_WRONLY | O_TRUNC, mode)
    f.write(data)
    assert f.location is not None
    vfs.chmod_location(vfs.context(), f.location, mode)
    f.release()


def mkdir(vfs: VFS, ctx: PathContext, path: str, mode: int) -> None:
    """A directory with exactly ``mode``."""
    vfs.mkdir(ctx, None, path, mode)
    vfs.chmod(vfs.context(), None, path, mode)


def get(vfs: VFS, ctx: PathContext, path: str, flags: int = O_RDONLY) -> bytes:
    f = vfs.open(ctx, None, path, flags)
    return f.pread(1 << 20, 0)


def ino(vfs: VFS, ctx: PathContext, path: str) -> tuple[int, int]:
    st = vfs.stat(ctx, None, path)
    return st.dev, st.ino


def names(vfs: VFS, ctx: PathContext, path: str) -> list[str]:
    f = vfs.open(ctx, None, path, O_RDONLY | O_DIRECTORY)
    return sorted(d.name for d in f.readdir())


# --- mounts and ".." ---------------------------------------------------------------------
class TestMounts:
    def test_mount_hides_covered_content_and_dotdot_climbs_out(self, vfs, ctx):
        vfs.mkdir(ctx, None, "/mnt", 0o755)
        put(vfs, ctx, "/mnt/covered", b"under")
        inner = MemFS()
        vfs.mount("/mnt", inner)
        assert names(vfs, ctx, "/mnt") == [".", ".."]
        err(E.ENOENT, vfs.stat, ctx, None, "/mnt/covered")
        put(vfs, ctx, "/mnt/x", b"in mount")
        assert vfs.stat(ctx, None, "/mnt/x").dev == inner.dev
        assert vfs.stat(ctx, None, "/mnt").dev == inner.dev
        root = ino(vfs, ctx, "/")
        assert ino(vfs, ctx, "/mnt/..") == root
        assert ino(vfs, ctx, "/mnt/../mnt/../..") == root
        vfs.mkdir(ctx, None, "/mnt/sub", 0o755)
        assert ino(vfs, ctx, "/mnt/sub/../..") == root
        # the ".." entry of a mount root's listing names the directory above the mount
        f = vfs.open(ctx, None, "/mnt", O_RDONLY)
        dotdot = next(d for d in f.readdir() if d.name == "..")
        assert dotdot.ino == vfs.stat(ctx, None, "/").ino

    def test_nested_and_stacked_mounts(self, vfs, ctx):
        vfs.mkdir(ctx, None, "/a", 0o755)
        a = MemFS()
        vfs.mount("/a", a)
        vfs.mkdir(ctx, None, "/a/b", 0o755)
        b = MemFS()
        vfs.mount("/a/b", b)
        put(vfs, ctx, "/a/b/f", b"b")
        assert vfs.stat(ctx, None, "/a/b/f").dev == b.dev
        assert vfs.stat(ctx, None, "/a/b/..").dev == a.dev
        assert ino(vfs, ctx, "/a/b/../..") == ino(vfs, ctx, "/")
        # a second mount on the same place hides the first; ".." still leaves both
        c = MemFS()
        vfs.mount("/a/b", c)
        assert vfs.stat(ctx, None, "/a/b").dev == c.dev
        err(E.ENOENT, vfs.stat, ctx, None, "/a/b/f")
        assert vfs.stat(ctx, None, "/a/b/..").dev == a.dev
        assert [m.fs for m in vfs.mounts()] == [vfs.root_mount.fs, a, b, c]

    def test_symlink_into_and_out_of_a_mount(self, vfs, ctx):
        vfs.mkdir(ctx, None, "/mnt", 0o755)
        vfs.mount("/mnt", MemFS())
        put(vfs, ctx, "/top", b"top")
        vfs.symlink(ctx, "../top", None, "/mnt/up")
        vfs.symlink(ctx, "/top", None, "/mnt/abs")
        vfs.symlink(ctx, "mnt/up", None, "/via")
        assert get(vfs, ctx, "/mnt/up") == b"top"
        assert get(vfs, ctx, "/mnt/abs") == b"top"
        assert get(vfs, ctx, "/via") == b"top"

    def test_mount_needs_a_directory(self, vfs, ctx):
        put(vfs, ctx, "/f")
        err(E.ENOTDIR, vfs.mount, "/f", MemFS())
        err(E.ENOENT, vfs.mount, "/nope", MemFS())


class TestChroot:
    """``ctx.root`` is the task's root: nothing resolves above it."""

    @pytest.fixture
    def jail(self, vfs, ctx) -> PathContext:
        put(vfs, ctx, "/secret", b"outside")
        vfs.mkdir(ctx, None, "/jail", 0o755)
        vfs.mkdir(ctx, None, "/jail/etc", 0o755)
        put(vfs, ctx, "/jail/etc/passwd", b"jail passwd")
        put(vfs, ctx, "/jail/secret", b"jail secret")
        vfs.symlink(ctx, "/secret", None, "/jail/abs")
        vfs.symlink(ctx, "../../../../secret", None, "/jail/etc/rel")
        vfs.symlink(ctx, "/", None, "/jail/etc/root")
        vfs.symlink(ctx, "..", None, "/jail/up")
        inner = vfs.context()
        inner.root = inner.cwd = vfs.resolve(ctx, None, "/jail")
        return inner

    def test_dotdot_stops_at_root(self, vfs, ctx, jail):
        root = ino(vfs, ctx, "/jail")
        for p in ("/..", "..", "../../..", "/etc/../..", "/" + "../" * 100, "etc/../../.."):
            assert ino(vfs, jail, p) == root, p
        assert get(vfs, jail, "/../secret") == b"jail secret"
        assert get(vfs, jail, "../../etc/passwd") == b"jail passwd"

    def test_symlinks_resolve_inside(self, vfs, ctx, jail):
        assert get(vfs, jail, "/abs") == b"jail secret"
        assert get(vfs, jail, "/etc/rel") == b"jail secret"
        assert get(vfs, jail, "/etc/root/secret") == b"jail secret"
        assert get(vfs, jail, "/up/up/up/secret") == b"jail secret"
        assert vfs.path_of(jail, vfs.resolve(jail, None, "/etc/root/etc")) == "/etc"

    def test_root_may_be_a_mount_root(self, vfs, ctx):
        vfs.mkdir(ctx, None, "/m", 0o755)
        vfs.mount("/m", MemFS())
        put(vfs, ctx, "/m/f", b"m")
        put(vfs, ctx, "/f", b"outer")
        inner = vfs.context()
        inner.root = inner.cwd = vfs.resolve(ctx, None, "/m")
        assert get(vfs, inner, "/../f") == b"m"
        assert get(vfs, inner, "../../f") == b"m"
        assert vfs.path_of(inner, inner.root) == "/"

    def test_removing_or_renaming_the_root(self, vfs, ctx, jail):
        err(E.EBUSY, vfs.rmdir, jail, None, "/")
        err(E.EBUSY, vfs.rename, jail, None, "/", None, "/x")
        err(E.EBUSY, vfs.rename, jail, None, "/etc", None, "/")


# --- symlinks ------------------------------------------------------------------------
class TestSymlinks:
    def test_chain_of_40_resolves_41_is_eloop(self, vfs, ctx):
        put(vfs, ctx, "/f", b"end")
        prev = "f"
        for i in range(1, MAXSYMLINKS + 2):
            vfs.symlink(ctx, prev, None, f"/c{i}")
            prev = f"c{i}"
        assert MAXSYMLINKS == 40
        assert get(vfs, ctx, "/c40") == b"end"
        err(E.ELOOP, vfs.stat, ctx, None, "/c41")
        assert vfs.stat(ctx, None, "/c41", follow=False).mode & S_IFMT == S_IFLNK
        err(E.ENOTDIR, vfs.stat, ctx, None, "/c40/")  # followed to a file
        err(E.ELOOP, vfs.stat, ctx, None, "/c41/")

    def test_links_in_directories_count_towards_the_same_limit(self, vfs, ctx):
        put(vfs, ctx, "/f", b"x")
        vfs.symlink(ctx, ".", None, "/s")
        assert get(vfs, ctx, "s/" * 40 + "f") == b"x"
        err(E.ELOOP, vfs.stat, ctx, None, "s/" * 41 + "f")

    def test_loops(self, vfs, ctx):
        vfs.symlink(ctx, "self", None, "/self")
        vfs.symlink(ctx, "b", None, "/a")
        vfs.symlink(ctx, "a", None, "/b")
        for p in ("/self", "/a", "/b/x", "/a/"):
            err(E.ELOOP, vfs.stat, ctx, None, p)
        err(E.ELOOP, vfs.open, ctx, None, "/a", O_RDONLY)
        err(E.ELOOP, vfs.open, ctx, None, "/a", O_CREAT | O_WRONLY, 0o644)
        assert vfs.readlink(ctx, None, "/a") == "b"

    def test_final_symlink_and_nofollow(self, vfs, ctx):
        put(vfs, ctx, "/f", b"data")
        vfs.mkdir(ctx, None, "/d", 0o755)
        vfs.symlink(ctx, "f", None, "/lf")
        vfs.symlink(ctx, "d", None, "/ld")
        assert vfs.stat(ctx, None, "/lf").mode & S_IFMT == S_IFREG
        assert vfs.stat(ctx, None, "/lf", follow=False).mode & S_IFMT == S_IFLNK
        # AT_SYMLINK_NOFOLLOW only concerns the last component
        assert vfs.stat(ctx, None, "/ld/.", follow=False).mode & S_IFMT == S_IFDIR
        err(E.ELOOP, vfs.open, ctx, None, "/lf", O_RDONLY | O_NOFOLLOW)
        err(E.ELOOP, vfs.open, ctx, None, "/lf", O_CREAT | O_WRONLY | O_NOFOLLOW, 0o644)
        err(E.ENOTDIR, vfs.open, ctx, None, "/ld", O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
        put(vfs, ctx, "/d/in", b"in")
        assert get(vfs, ctx, "/ld/in", O_RDONLY | O_NOFOLLOW) == b"in"

    def test_empty_and_too_long_targets(self, vfs, ctx):
        err(E.ENOENT, vfs.symlink, ctx, "", None, "/e")
        vfs.symlink(ctx, "a" * (PATH_MAX - 1), None, "/long")
        err(E.ENAMETOOLONG, vfs.symlink, ctx, "a" * PATH_MAX, None, "/long2")
        assert vfs.stat(ctx, None, "/long", follow=False).size == PATH_MAX - 1
        err(E.ENAMETOOLONG, vfs.stat, ctx, None, "/long")  # component > NAME_MAX

    def test_dangling(self, vfs, ctx):
        vfs.symlink(ctx, "nowhere/x", None, "/dang")
        err(E.ENOENT, vfs.stat, ctx, None, "/dang")
        err(E.EEXIST, vfs.mkdir, ctx, None, "/dang", 0o755)
        err(E.EEXIST, vfs.mkdir, ctx, None, "/dang/", 0o755)
        assert vfs.stat(ctx, None, "/dang", follow=False).is_lnk()


# --- name and path length -----------------------------------------------------------
class TestLengths:
    def test_path_max_counts_the_nul(self, vfs, ctx):
        assert vfs.stat(ctx, None, "/" * (PATH_MAX - 1)).is_dir()
        err(E.ENAMETOOLONG, vfs.stat, ctx, None, "/" * PATH_MAX)
        err(E.ENOENT, vfs.stat, ctx, None, "./" * 2047 + "x")  # 4095 bytes
        err(E.ENAMETOOLONG, vfs.stat, ctx, None, "./" * 2048 + "x")

    def test_path_max_counts_bytes_not_characters(self, vfs, ctx):
        err(E.ENOENT, vfs.stat, ctx, None, "é/" * 1365)  # 2730 characters, 4095 bytes
        err(E.ENAMETOOLONG, vfs.stat, ctx, None, "é/" * 1366)  # 2732 characters, 4098 bytes
        err(E.ENOENT, vfs.stat, ctx, None, os.fsdecode(b"\xff/" * 2047 + b"x"))
        err(E.ENAMETOOLONG, vfs.stat, ctx, None, os.fsdecode(b"\xff/" * 2048))

    @pytest.mark.parametrize(
        ("ok", "too_long"),
        [
            ("n" * 255, "n" * 256),
            ("é" * 127, "é" * 128),  # 2-byte UTF-8: 254 / 256 bytes
            ("€" * 85, "€" * 86),  # 3-byte UTF-8: 255 / 258 bytes
            (os.fsdecode(b"\xff" * 255), os.fsdecode(b"\xff" * 256)),  # surrogateescape
        ],
    )
    def test_name_max_in_bytes(self, vfs, ctx, ok, too_long):
        assert len(ok.encode("utf-8", "surrogateescape")) <= NAME_MAX
        vfs.mkdir(ctx, None, ok, 0o755)
        put(vfs, ctx, ok + "/f", b"1")
        assert names(vfs, ctx, "/") == sorted([".", "..", ok])
        for op in (
            lambda: vfs.mkdir(ctx, None, too_long, 0o755),
            lambda: vfs.open(ctx, None, too_long, O_CREAT | O_WRONLY, 0o644),
            lambda: vfs.stat(ctx, None, too_long),
            lambda: vfs.stat(ctx, None, too_long + "/x"),  # before ENOENT
            lambda: vfs.symlink(ctx, "t", None, too_long),
            lambda: vfs.unlink(ctx, None, too_long),
            lambda: vfs.rename(ctx, None, ok, None, too_long),
        ):
            err(E.ENAMETOOLONG, op)

    def test_nul_in_path(self, vfs, ctx):
        err(E.EINVAL, vfs.stat, ctx, None, "a\0b")
        err(E.ENOENT, vfs.stat, ctx, None, "")


# --- trailing slashes ------------------------------------------------------------------
class TestTrailingSlash:
    @pytest.fixture(autouse=True)
    def tree(self, vfs, ctx):
        put(vfs, ctx, "/f", b"f")
        vfs.mkdir(ctx, None, "/d", 0o755)
        vfs.symlink(ctx, "f", None, "/lf")
        vfs.symlink(ctx, "d", None, "/ld")

    def test_lookup(self, vfs, ctx):
        err(E.ENOTDIR, vfs.stat, ctx, None, "/f/")
        err(E.ENOTDIR, vfs.stat, ctx, None, "/f/.")
        assert vfs.stat(ctx, None, "/d/").is_dir()
        assert vfs.stat(ctx, None, "/d//").is_dir()
        # a trailing slash makes even lstat follow the link
        assert vfs.stat(ctx, None, "/ld/", follow=False).is_dir()
        err(E.ENOTDIR, vfs.stat, ctx, None, "/lf/", follow=False)
        err(E.EINVAL, vfs.readlink, ctx, None, "/ld/")
        err(E.ENOTDIR, vfs.readlink, ctx, None, "/lf/")

    def test_create(self, vfs, ctx):
        err(E.EISDIR, vfs.open, ctx, None, "/new/", O_CREAT | O_WRONLY, 0o644)
        err(E.EISDIR, vfs.open, ctx, None, "/f/", O_CREAT | O_WRONLY, 0o644)
        vfs.mkdir(ctx, None, "/nd/", 0o755)
        assert vfs.stat(ctx, None, "/nd").is_dir()
        err(E.ENOENT, vfs.symlink, ctx, "t", None, "/s/")
        err(E.ENOENT, vfs.mknod, ctx, None, "/n/", S_IFIFO | 0o644)
        err(E.ENOENT, vfs.link, ctx, None, "/f", None, "/h/")
        err(E.ENOTDIR, vfs.link, ctx, None, "/f/", None, "/h")
        err(E.EEXIST, vfs.symlink, ctx, "t", None, "/d/")

    def test_remove(self, vfs, ctx):
        err(E.ENOTDIR, vfs.unlink, ctx, None, "/f/")
        err(E.EISDIR, vfs.unlink, ctx, None, "/d/")
        err(E.ENOTDIR, vfs.unlink, ctx, None, "/lf/")
        err(E.ENOTDIR, vfs.unlink, ctx, None, "/ld/")  # the link itself is no directory
        err(E.ENOTDIR, vfs.rmdir, ctx, None, "/f/")
        err(E.ENOTDIR, vfs.rmdir, ctx, None, "/ld/")
        vfs.rmdir(ctx, None, "/d/")

    def test_rename(self, vfs, ctx):
        err(E.ENOTDIR, vfs.rename, ctx, None, "/f", None, "/g/")
        err(E.ENOTDIR, vfs.rename, ctx, None, "/f/", None, "/g")
        vfs.rename(ctx, None, "/d/", None, "/e/")
        assert vfs.stat(ctx, None, "/e").is_dir()


# --- open flags ----------------------------------------------------------------------
class TestOpenFlags:
    def test_creat_excl(self, vfs, ctx):
        put(vfs, ctx, "/f", b"old")
        vfs.symlink(ctx, "target", None, "/dang")
        err(E.EEXIST, vfs.open, ctx, None, "/f", O_CREAT | O_EXCL | O_WRONLY, 0o644)
        # O_EXCL never follows a final symlink, even a dangling one
        err(E.EEXIST, vfs.open, ctx, None, "/dang", O_CREAT | O_EXCL | O_WRONLY, 0o644)
        err(E.ENOENT, vfs.stat, ctx, None, "/target")
        # without O_EXCL a dangling link's target is created
        vfs.open(ctx, None, "/dang", O_CREAT | O_WRONLY, 0o600).write(b"via link")
        assert get(vfs, ctx, "/target") == b"via link"
        assert vfs.stat(ctx, None, "/target").perm == 0o600
        vfs.open(ctx, None, "/new", O_CREAT | O_EXCL | O_WRONLY, 0o777)
        assert vfs.stat(ctx, None, "/new").perm == 0o755  # umask 022
        err(E.EEXIST, vfs.open, ctx, None, "/", O_CREAT | O_EXCL | O_RDONLY, 0o644)
        err(E.EISDIR, vfs.open, ctx, None, ".", O_CREAT | O_RDONLY, 0o644)
        vfs.mkdir(ctx, None, "/d", 0o755)
        err(E.EISDIR, vfs.open, ctx, None, "/d", O_CREAT | O_RDONLY, 0o644)
        err(E.EINVAL, vfs.open, ctx, None, "/d", O_CREAT | O_DIRECTORY | O_RDONLY, 0o644)
        err(E.EINVAL, vfs.open, ctx, None, "/nd", O_CREAT | O_DIRECTORY | O_RDONLY, 0o644)

    def test_creat_follows_dangling_links_within_the_limit(self, vfs, ctx):
        # Linux counts every link of the walk, those in directories and the final ones.
        vfs.symlink(ctx, ".", None, "/s")
        vfs.symlink(ctx, "new", None, "/c1")
        vfs.symlink(ctx, "c1", None, "/c2")
        err(E.ELOOP, vfs.open, ctx, None, "s/" * 39 + "c2", O_CREAT | O_WRONLY, 0o644)
        err(E.ENOENT, vfs.stat, ctx, None, "/new")
        vfs.open(ctx, None, "s/" * 38 + "c2", O_CREAT | O_WRONLY, 0o644)
        assert vfs.stat(ctx, None, "/new").is_reg()
        prev = "tgt"
        for i in range(1, 42):
            vfs.symlink(ctx, prev, None, f"/d{i}")
            prev = f"d{i}"
        err(E.ELOOP, vfs.open, ctx, None, "/d41", O_CREAT | O_WRONLY, 0o644)
        vfs.open(ctx, None, "/d40", O_CREAT | O_WRONLY, 0o644)
        assert vfs.stat(ctx, None, "/tgt").is_reg()

    def test_trunc(self, vfs, ctx):
        put(vfs, ctx, "/f", b"0123456789")
        before = vfs.stat(ctx, None, "/f").mtime_ns
        vfs.open(ctx, None, "/f", O_WRONLY | O_TRUNC)
        st = vfs.stat(ctx, None, "/f")
        assert st.size == 0 and st.mtime_ns >= before
        put(vfs, ctx, "/f", b"again")
        vfs.open(ctx, None, "/f", O_RDONLY | O_TRUNC)  # Linux truncates here too
        assert vfs.stat(ctx, None, "/f").size == 0
        vfs.mkdir(ctx, None, "/d", 0o755)
        err(E.EISDIR, vfs.open, ctx, None, "/d", O_RDONLY | O_TRUNC)
        put(vfs, ctx, "/ro", b"keep", 0o444)
        alice = vfs.context(ALICE)
        err(E.EACCES, vfs.open, alice, None, "/ro", O_RDONLY | O_TRUNC)
        assert get(vfs, ctx, "/ro") == b"keep"

    def test_directory(self, vfs, ctx):
        put(vfs, ctx, "/f")
        vfs.mkdir(ctx, None, "/d", 0o755)
        vfs.symlink(ctx, "d", None, "/ld")
        err(E.ENOTDIR, vfs.open, ctx, None, "/f", O_RDONLY | O_DIRECTORY)
        assert vfs.open(ctx, None, "/ld", O_RDONLY | O_DIRECTORY).stat().is_dir()
        err(E.EISDIR, vfs.open, ctx, None, "/d", O_WRONLY)
        err(E.EISDIR, vfs.open, ctx, None, "/d", O_RDWR)
        f = vfs.open(ctx, None, "/d", O_RDONLY)
        err(E.EISDIR, f.read, 1)

    def test_path(self, vfs, ctx):
        put(vfs, ctx, "/f", b"secret", 0o000)
        vfs.symlink(ctx, "f", None, "/lf")
        alice = vfs.context(ALICE)
        # O_PATH needs no permission on the file itself, ignores O_TRUNC/O_CREAT
        f = vfs.open(alice, None, "/f", O_PATH | O_RDWR | O_TRUNC)
        assert f.stat().size == 6
        err(E.EBADF, f.read, 1)
        err(E.EBADF, f.pread, 1, 0)
        err(E.EBADF, f.write, b"x")
        err(E.EBADF, f.seek, 0, 0)
        err(E.EBADF, lambda: list(f.readdir()))
        assert vfs.stat(ctx, None, "/f").size == 6
        # with O_NOFOLLOW it opens the link itself
        link = vfs.open(ctx, None, "/lf", O_PATH | O_NOFOLLOW)
        assert link.stat().mode & S_IFMT == S_IFLNK
        assert vfs.open(ctx, None, "/lf", O_PATH).stat().mode & S_IFMT == S_IFREG
        err(E.ENOTDIR, vfs.open, ctx, None, "/f", O_PATH | O_DIRECTORY)
        # a directory opened O_PATH anchors relative lookups (openat with an O_PATH fd)
        vfs.mkdir(ctx, None, "/d", 0o755)
        put(vfs, ctx, "/d/in", b"in")
        d = vfs.open(ctx, None, "/d", O_PATH | O_DIRECTORY)
        assert d.location is not None
        assert vfs.open(ctx, d.location, "in", O_RDONLY).read(9) == b"in"
        # ... but search permission on the way is still needed
        vfs.chmod(ctx, None, "/d", 0o700)
        err(E.EACCES, vfs.open, alice, None, "/d/in", O_PATH)

    def test_tmpfile(self, vfs, ctx):
        vfs.mkdir(ctx, None, "/d", 0o755)
        put(vfs, ctx, "/f")
        f = vfs.open(ctx, None, "/d", O_TMPFILE | O_RDWR, 0o640)
        assert names(vfs, ctx, "/d") == [".", ".."]
        st = f.stat()
        assert st.is_reg() and st.nlink == 0 and st.perm == 0o640
        f.write(b"anonymous")
        assert f.pread(100, 0) == b"anonymous"
        assert names(vfs, ctx, "/d") == [".", ".."]
        err(E.EINVAL, vfs.open, ctx, None, "/d", O_TMPFILE | O_RDONLY)
        err(E.ENOTDIR, vfs.open, ctx, None, "/f", O_TMPFILE | O_RDWR, 0o600)
        err(E.ENOENT, vfs.open, ctx, None, "/missing", O_TMPFILE | O_RDWR, 0o600)
        alice = vfs.context(ALICE)
        err(E.EACCES, vfs.open, alice, None, "/d", O_TMPFILE | O_RDWR, 0o600)

    def test_open_through_a_relative_start(self, vfs, ctx):
        vfs.mkdir(ctx, None, "/a", 0o755)
        vfs.mkdir(ctx, None, "/a/b", 0o755)
        put(vfs, ctx, "/a/b/f", b"rel")
        at = vfs.resolve(ctx, None, "/a")
        assert vfs.open(ctx, at, "b/f", O_RDONLY).read(9) == b"rel"
        assert vfs.open(ctx, at, "/a/b/f", O_RDONLY).read(9) == b"rel"  # absolute ignores at
        vfs.chdir(ctx, None, "/a/b")
        assert get(vfs, ctx, "f") == b"rel"
        assert get(vfs, ctx, "../b/./f") == b"rel"


# --- permissions ------------------------------------------------------------------------
class TestPermissions:
    @pytest.fixture
    def alice(self, vfs) -> PathContext:
        return vfs.context(ALICE)

    @pytest.fixture
    def bob(self, vfs) -> PathContext:
        return vfs.context(BOB)

    def test_rwx_classes(self, vfs, ctx, alice):
        put(vfs, ctx, "/root600", b"r", 0o600)
        put(vfs, ctx, "/other4", b"o", 0o604)
        put(vfs, ctx, "/grp60", b"g", 0o640)
        vfs.chown(ctx, None, "/grp60", 0, 60)  # alice is in group 60 through groups
        put(vfs, ctx, "/mine", b"m", 0o077)
        vfs.chown(ctx, None, "/mine", 1000, 1000)
        err(E.EACCES, vfs.open, alice, None, "/root600", O_RDONLY)
        assert vfs.open(alice, None, "/other4", O_RDONLY).read(5) == b"o"
        err(E.EACCES, vfs.open, alice, None, "/other4", O_WRONLY)
        assert vfs.open(alice, None, "/grp60", O_RDONLY).read(5) == b"g"
        err(E.EACCES, vfs.open, alice, None, "/grp60", O_WRONLY)
        # the owner class decides alone, even when it grants less than "other"
        err(E.EACCES, vfs.open, alice, None, "/mine", O_RDONLY)
        vfs.access(alice, None, "/other4", R_OK)
        err(E.EACCES, vfs.access, alice, None, "/other4", W_OK)
        err(E.EINVAL, vfs.access, alice, None, "/other4", 8)

    def test_root_overrides_except_exec(self, vfs, ctx):
        put(vfs, ctx, "/none", b"n", 0o000)
        put(vfs, ctx, "/x", b"x", 0o001)
        vfs.mkdir(ctx, None, "/d", 0o000)
        assert vfs.open(ctx, None, "/none", O_RDWR).read(5) == b"n"
        err(E.EACCES, vfs.access, ctx, None, "/none", X_OK)
        vfs.access(ctx, None, "/x", X_OK)
        vfs.access(ctx, None, "/d", X_OK | R_OK | W_OK)
        put(vfs, ctx, "/d/f", b"in")

    def test_search_permission_on_every_directory(self, vfs, ctx, alice):
        vfs.mkdir(ctx, None, "/a", 0o755)
        vfs.mkdir(ctx, None, "/a/b", 0o755)
        vfs.mkdir(ctx, None, "/a/b/c", 0o755)
        put(vfs, ctx, "/a/b/c/f", b"deep")
        assert get(vfs, alice, "/a/b/c/f") == b"deep"
        vfs.chmod(ctx, None, "/a/b", 0o744)  # readable, not searchable
        err(E.EACCES, vfs.stat, alice, None, "/a/b/c/f")
        err(E.EACCES, vfs.stat, alice, None, "/a/b/c")
        assert vfs.stat(alice, None, "/a/b").is_dir()  # the dir itself is reachable
        assert names(vfs, alice, "/a/b") == [".", "..", "c"]
        vfs.chmod(ctx, None, "/a/b", 0o711)  # searchable, not readable
        assert get(vfs, alice, "/a/b/c/f") == b"deep"
        err(E.EACCES, vfs.open, alice, None, "/a/b", O_RDONLY | O_DIRECTORY)
        # symlink targets are walked with the same checks
        vfs.chmod(ctx, None, "/a", 0o700)
        vfs.symlink(ctx, "/a/b/c/f", None, "/l")
        err(E.EACCES, vfs.stat, alice, None, "/l")
        # and so is the cwd-relative start
        vfs.chmod(ctx, None, "/a", 0o755)
        vfs.chdir(alice, None, "/a/b/c")
        vfs.chmod(ctx, None, "/a/b/c", 0o600)
        err(E.EACCES, vfs.stat, alice, None, "f")
        err(E.EACCES, vfs.chdir, alice, None, "/a/b/c")

    def test_write_permission_on_the_directory(self, vfs, ctx, alice):
        vfs.mkdir(ctx, None, "/d", 0o755)
        put(vfs, ctx, "/d/f", b"x", 0o666)
        err(E.EACCES, vfs.open, alice, None, "/d/new", O_CREAT | O_WRONLY, 0o644)
        err(E.EACCES, vfs.mkdir, alice, None, "/d/new", 0o755)
        err(E.EACCES, vfs.unlink, alice, None, "/d/f")
        err(E.EACCES, vfs.rename, alice, None, "/d/f", None, "/d/g")
        err(E.EACCES, vfs.symlink, alice, "t", None, "/d/l")
        assert vfs.open(alice, None, "/d/f", O_WRONLY).write(b"ok") == 2  # the file is 666
        vfs.chown(ctx, None, "/d", 0, 60)
        vfs.chmod(ctx, None, "/d", 0o775)
        vfs.mkdir(alice, None, "/d/new", 0o777)
        st = vfs.stat(ctx, None, "/d/new")
        assert (st.uid, st.gid, st.perm) == (1000, 1000, 0o755)

    def test_sticky_directory(self, vfs, ctx, alice, bob):
        mkdir(vfs, ctx, "/tmp", 0o777)
        vfs.chmod(ctx, None, "/tmp", 0o1777)
        assert vfs.stat(ctx, None, "/tmp").perm == 0o1777
        put(vfs, alice, "/tmp/a", b"alice", 0o666)
        put(vfs, bob, "/tmp/b", b"bob", 0o666)
        err(E.EPERM, vfs.unlink, bob, None, "/tmp/a")
        err(E.EPERM, vfs.rename, bob, None, "/tmp/a", None, "/tmp/c")
        err(E.EPERM, vfs.rename, bob, None, "/tmp/b", None, "/tmp/a")  # replacing hers
        err(E.EPERM, vfs.rename, bob, None, "/tmp/b", None, "/tmp/a", RENAME_EXCHANGE)
        assert vfs.open(bob, None, "/tmp/a", O_WRONLY).write(b"B") == 1  # writing is fine
        vfs.rename(bob, None, "/tmp/b", None, "/tmp/b2")
        vfs.unlink(bob, None, "/tmp/b2")
        vfs.unlink(ctx, None, "/tmp/a")  # root may
        # the directory's owner may remove anything in it
        vfs.mkdir(alice, None, "/tmp/hers", 0o777)
        vfs.chmod(alice, None, "/tmp/hers", 0o1777)  # her own directory
        put(vfs, bob, "/tmp/hers/b", b"", 0o644)
        vfs.unlink(alice, None, "/tmp/hers/b")
        vfs.mkdir(bob, None, "/tmp/hers/bd", 0o755)
        err(E.EPERM, vfs.rmdir, vfs.context(Cred(1002, 1002)), None, "/tmp/hers/bd")
        vfs.rmdir(alice, None, "/tmp/hers/bd")

    def test_chmod_rules(self, vfs, ctx, alice):
        put(vfs, ctx, "/rootfile", b"", 0o644)
        err(E.EPERM, vfs.chmod, alice, None, "/rootfile", 0o777)
        mkdir(vfs, ctx, "/pub", 0o777)
        put(vfs, alice, "/pub/mine", b"", 0o644)
        vfs.chmod(alice, None, "/pub/mine", 0o2755)
        assert vfs.stat(ctx, None, "/pub/mine").perm == 0o2755  # own group: kept
        vfs.chown(ctx, None, "/pub/mine", -1, 77)
        vfs.chmod(alice, None, "/pub/mine", 0o2755)
        assert vfs.stat(ctx, None, "/pub/mine").perm == 0o755  # not in group 77: dropped
        vfs.chown(ctx, None, "/pub/mine", -1, 60)
        vfs.chmod(alice, None, "/pub/mine", 0o6755)
        assert vfs.stat(ctx, None, "/pub/mine").perm == 0o6755  # supplementary group 60
        vfs.chmod(ctx, None, "/rootfile", 0o7777)
        assert vfs.stat(ctx, None, "/rootfile").perm == 0o7777
        vfs.symlink(ctx, "rootfile", None, "/l")
        err(E.EOPNOTSUPP, vfs.chmod, ctx, None, "/l", 0o600, follow=False)
        vfs.chmod(ctx, None, "/l", 0o600)
        assert vfs.stat(ctx, None, "/rootfile").perm == 0o600

    def test_chown_rules(self, vfs, ctx, alice):
        mkdir(vfs, ctx, "/pub", 0o777)
        put(vfs, alice, "/pub/mine", b"", 0o644)
        put(vfs, ctx, "/pub/roots", b"", 0o644)
        err(E.EPERM, vfs.chown, alice, None, "/pub/mine", 1001, -1)
        vfs.chown(alice, None, "/pub/mine", 1000, -1)  # no change is allowed
        vfs.chown(alice, None, "/pub/mine", -1, 60)  # a group she is in
        assert vfs.stat(ctx, None, "/pub/mine").gid == 60
        err(E.EPERM, vfs.chown, alice, None, "/pub/mine", -1, 70)
        err(E.EPERM, vfs.chown, alice, None, "/pub/roots", 0, -1)
        err(E.EPERM, vfs.chown, alice, None, "/pub/roots", -1, 60)
        vfs.chown(alice, None, "/pub/roots", -1, -1)  # nothing asked, nothing checked
        vfs.chown(ctx, None, "/pub/roots", 1234, 5678)
        st = vfs.stat(ctx, None, "/pub/roots")
        assert (st.uid, st.gid) == (1234, 5678)

    def test_chown_drops_set_id_bits(self, vfs, ctx, alice):
        put(vfs, ctx, "/f", b"", 0o644)
        for mode, owner, expected in [
            (0o4755, (0, 0), 0o755),
            (0o4755, (-1, -1), 0o755),  # even with nothing to change
            (0o2755, (-1, -1), 0o755),  # setgid with group exec
            (0o2745, (-1, 5), 0o2745),  # setgid without group exec is mandatory locking
            (0o6711, (7, -1), 0o711),
        ]:
            vfs.chmod(ctx, None, "/f", mode)
            vfs.chown(ctx, None, "/f", *owner)
            assert vfs.stat(ctx, None, "/f").perm == expected, (oct(mode), owner)
        vfs.mkdir(ctx, None, "/d", 0o755)
        vfs.chmod(ctx, None, "/d", 0o2755)
        vfs.chown(ctx, None, "/d", 5, 5)
        assert vfs.stat(ctx, None, "/d").perm == 0o2755  # directories keep them
        # dropping the bit is a mode change: only the owner (or root) may cause it
        vfs.chmod(ctx, None, "/f", 0o4755)
        vfs.chown(ctx, None, "/f", 0, 0)
        vfs.chmod(ctx, None, "/f", 0o4755)
        err(E.EPERM, vfs.chown, alice, None, "/f", -1, -1)
        assert vfs.stat(ctx, None, "/f").perm == 0o4755

    def test_utimens_rules(self, vfs, ctx, alice):
        put(vfs, ctx, "/rw", b"", 0o666)
        put(vfs, ctx, "/ro", b"", 0o644)
        rw = vfs.resolve(ctx, None, "/rw")
        ro = vfs.resolve(ctx, None, "/ro")
        vfs.utimens(alice, rw, None, None)  # "now" needs only write permission
        vfs.utimens(alice, rw, (0, UTIME_NOW), (0, UTIME_NOW))
        err(E.EPERM, vfs.utimens, alice, rw, (5, 0), (6, 0))  # explicit: owner only
        err(E.EPERM, vfs.utimens, alice, rw, (0, UTIME_NOW), (0, UTIME_OMIT))
        err(E.EACCES, vfs.utimens, alice, ro, None, None)
        err(E.EPERM, vfs.utimens, alice, ro, (0, UTIME_OMIT), (0, UTIME_NOW))
        vfs.utimens(alice, ro, (0, UTIME_OMIT), (0, UTIME_OMIT))  # nothing to do: no check
        err(E.EINVAL, vfs.utimens, ctx, rw, (0, 1_000_000_000), None)
        vfs.utimens(ctx, ro, (5, 7), (0, UTIME_OMIT))
        st = vfs.stat(ctx, None, "/ro")
        assert st.atime_ns == 5_000_000_007 and st.mtime_ns != 5_000_000_007
        vfs.chown(ctx, None, "/ro", 1000, -1)
        vfs.utimens(alice, ro, (1, 0), (2, 0))
        st = vfs.stat(ctx, None, "/ro")
        assert (st.atime_ns, st.mtime_ns) == (10**9, 2 * 10**9)

    def test_setgid_directory_inheritance(self, vfs, ctx, alice):
        mkdir(vfs, ctx, "/sg", 0o2777)
        vfs.chown(ctx, None, "/sg", 0, 50)
        vfs.open(alice, None, "/sg/f", O_CREAT | O_WRONLY, 0o644)
        vfs.mkdir(alice, None, "/sg/d", 0o755)
        vfs.mknod(alice, None, "/sg/p", S_IFIFO | 0o644)
        vfs.symlink(alice, "f", None, "/sg/l")
        for p in ("/sg/f", "/sg/d", "/sg/p", "/sg/l"):
            st = vfs.stat(ctx, None, p, follow=False)
            assert (st.uid, st.gid) == (1000, 50), p
        assert vfs.stat(ctx, None, "/sg/d").perm == 0o2755  # directories inherit the bit
        assert vfs.stat(ctx, None, "/sg/f").perm == 0o644  # files do not
        # A file asking for setgid+group-exec in a group its creator is not in loses
        # the bit (Linux's mode_strip_sgid); without group exec it keeps it.
        vfs.open(alice, None, "/sg/x", O_CREAT | O_WRONLY, 0o2755)
        assert vfs.stat(ctx, None, "/sg/x").perm == 0o755
        vfs.mknod(alice, None, "/sg/q", S_IFIFO | 0o2644)
        assert vfs.stat(ctx, None, "/sg/q").perm == 0o2644
        vfs.open(ctx, None, "/sg/y", O_CREAT | O_WRONLY, 0o2755)  # root may
        assert vfs.stat(ctx, None, "/sg/y").perm == 0o2755
        # outside a setgid directory the creator's own group is used, and mkdir
        # never sets the bit by itself
        mkdir(vfs, ctx, "/plain", 0o777)
        vfs.mkdir(alice, None, "/plain/d", 0o2755)
        st = vfs.stat(ctx, None, "/plain/d")
        assert (st.gid, st.perm) == (1000, 0o755)

    def test_hard_link_protection(self, vfs, ctx, alice):
        mkdir(vfs, ctx, "/pub", 0o777)
        put(vfs, ctx, "/pub/secret", b"", 0o600)
        put(vfs, ctx, "/pub/rw", b"", 0o666)
        put(vfs, ctx, "/pub/suid", b"", 0o4777)
        err(E.EPERM, vfs.link, alice, None, "/pub/secret", None, "/pub/l1")
        err(E.EPERM, vfs.link, alice, None, "/pub/suid", None, "/pub/l2")
        vfs.link(alice, None, "/pub/rw", None, "/pub/l3")
        assert vfs.stat(ctx, None, "/pub/rw").nlink == 2
        vfs.mkdir(ctx, None, "/pub/d", 0o755)
        err(E.EPERM, vfs.link, ctx, None, "/pub/d", None, "/pub/dl")

    def test_mknod_devices_need_root(self, vfs, ctx, alice):
        from cove.fs.node import S_IFCHR, makedev
        mkdir(vfs, ctx, "/pub", 0o777)
        err(E.EPERM, vfs.mknod, alice, None, "/pub/null", S_IFCHR | 0o666, makedev(1, 3))
        vfs.mknod(ctx, None, "/pub/null", S_IFCHR | 0o666, makedev(1, 3))
        assert vfs.stat(ctx, None, "/pub/null").rdev == makedev(1, 3)
        err(E.EPERM, vfs.mknod, ctx, None, "/pub/dir", S_IFDIR | 0o755)


# --- read-only mounts ----------------------------------------------------------------
class TestReadOnly:
    @pytest.fixture
    def ro(self, vfs, ctx) -> MemFS:
        vfs.mkdir(ctx, None, "/ro", 0o755)
        fs = MemFS()
        fs.root.mkdir("d", 0o755, 0, 0)
        fs.root.create("f", 0o666, 0, 0).write(0, b"lower")
        fs.root.symlink("l", "f", 0, 0)
        vfs.mount("/ro", fs, flags=MS_RDONLY)
        return fs

    def test_changes_are_erofs(self, vfs, ctx, ro):
        r = vfs.resolve(ctx, None, "/ro/f")
        for op in (
            lambda: vfs.mkdir(ctx, None, "/ro/new", 0o755),
            lambda: vfs.open(ctx, None, "/ro/new", O_CREAT | O_WRONLY, 0o644),
            lambda: vfs.open(ctx, None, "/ro/f", O_WRONLY),
            lambda: vfs.open(ctx, None, "/ro/f", O_RDONLY | O_TRUNC),
            lambda: vfs.open(ctx, None, "/ro", O_TMPFILE | O_RDWR, 0o600),
            lambda: vfs.unlink(ctx, None, "/ro/f"),
            lambda: vfs.unlink(ctx, None, "/ro/missing"),  # before the lookup
            lambda: vfs.rmdir(ctx, None, "/ro/d"),
            lambda: vfs.rmdir(ctx, None, "/ro/missing"),
            lambda: vfs.rename(ctx, None, "/ro/f", None, "/ro/g"),
            lambda: vfs.symlink(ctx, "x", None, "/ro/s"),
            lambda: vfs.link(ctx, None, "/ro/f", None, "/ro/h"),
            lambda: vfs.chmod(ctx, None, "/ro/f", 0o600),
            lambda: vfs.chown(ctx, None, "/ro/f", 1, 1),
            lambda: vfs.truncate(ctx, None, "/ro/f", 0),
            lambda: vfs.utimens(ctx, r, None, None),
            lambda: vfs.access(ctx, None, "/ro/f", W_OK),
        ):
            err(E.EROFS, op)
        assert get(vfs, ctx, "/ro/l") == b"lower"
        vfs.open(ctx, None, "/ro/f", O_CREAT | O_RDONLY, 0o644)  # exists: nothing to write
        vfs.access(ctx, None, "/ro/f", R_OK)
        vfs.utimens(ctx, r, (0, UTIME_OMIT), (0, UTIME_OMIT))
        err(E.EINVAL, vfs.utimens, ctx, r, (0, -1), None)  # before EROFS
        assert ro.root.lookup("f").read(0, 99) == b"lower"

    def test_eexist_and_enoent_win_over_erofs(self, vfs, ctx, ro):
        err(E.EEXIST, vfs.mkdir, ctx, None, "/ro/d", 0o755)
        err(E.EEXIST, vfs.mkdir, ctx, None, "/ro/f", 0o755)
        err(E.EEXIST, vfs.mkdir, ctx, None, "/ro", 0o755)
        err(E.EEXIST, vfs.mkdir, ctx, None, "/ro/.", 0o755)
        err(E.EEXIST, vfs.symlink, ctx, "t", None, "/ro/l")
        err(E.EEXIST, vfs.open, ctx, None, "/ro/f", O_CREAT | O_EXCL | O_WRONLY, 0o644)
        err(E.ENOENT, vfs.symlink, ctx, "t", None, "/ro/new/")
        err(E.ENOENT, vfs.mkdir, ctx, None, "/ro/no/new", 0o755)

    def test_readonly_filesystem_without_the_mount_flag(self, vfs, ctx):
        vfs.mkdir(ctx, None, "/m", 0o755)
        vfs.mount("/m", MemFS(readonly=True))
        assert vfs.mounts()[-1].readonly
        err(E.EROFS, vfs.mkdir, ctx, None, "/m/x", 0o755)

    def test_whole_vfs_readonly(self):
        fs = MemFS()
        fs.root.create("f", 0o644, 0, 0)
        v = VFS(fs, readonly=True)
        c = v.context()
        err(E.EROFS, v.open, c, None, "/f", O_WRONLY)
        err(E.EROFS, v.mkdir, c, None, "/x", 0o755)


# --- rename -----------------------------------------------------------------------
class TestRename:
    @pytest.fixture(autouse=True)
    def tree(self, vfs, ctx):
        for d in ("/a", "/a/b", "/a/b/c", "/empty", "/full"):
            vfs.mkdir(ctx, None, d, 0o755)
        put(vfs, ctx, "/full/x", b"x")
        put(vfs, ctx, "/f", b"f")
        put(vfs, ctx, "/g", b"g")

    def test_into_own_subdirectory(self, vfs, ctx):
        err(E.EINVAL, vfs.rename, ctx, None, "/a", None, "/a/b/new")
        err(E.EINVAL, vfs.rename, ctx, None, "/a", None, "/a/b/c/new")
        err(E.EINVAL, vfs.rename, ctx, None, "/a", None, "/a/new")
        # over one's own ancestor
        err(E.ENOTEMPTY, vfs.rename, ctx, None, "/a/b/c", None, "/a")
        err(E.EINVAL, vfs.rename, ctx, None, "/a/b/c", None, "/a", RENAME_EXCHANGE)
        err(E.EINVAL, vfs.rename, ctx, None, "/a", None, "/a/b", RENAME_EXCHANGE)

    def test_type_rules(self, vfs, ctx):
        err(E.ENOTEMPTY, vfs.rename, ctx, None, "/a", None, "/full")
        err(E.EISDIR, vfs.rename, ctx, None, "/f", None, "/empty")
        err(E.ENOTDIR, vfs.rename, ctx, None, "/empty", None, "/f")
        err(E.ENOENT, vfs.rename, ctx, None, "/missing", None, "/x")
        err(E.ENOENT, vfs.rename, ctx, None, "/f", None, "/missing/x")
        err(E.EBUSY, vfs.rename, ctx, None, "/a/.", None, "/x")
        err(E.EBUSY, vfs.rename, ctx, None, "/f", None, "/a/..")
        err(E.EEXIST, vfs.rename, ctx, None, "/f", None, "/a/..", RENAME_NOREPLACE)
        vfs.rename(ctx, None, "/a", None, "/empty")  # over an empty directory
        assert vfs.stat(ctx, None, "/empty/b/c").is_dir()
        err(E.ENOENT, vfs.stat, ctx, None, "/a")
        vfs.rename(ctx, None, "/f", None, "/g")
        assert get(vfs, ctx, "/g") == b"f"

    def test_noreplace_and_exchange(self, vfs, ctx):
        err(E.EEXIST, vfs.rename, ctx, None, "/f", None, "/g", RENAME_NOREPLACE)
        vfs.rename(ctx, None, "/f", None, "/h", RENAME_NOREPLACE)
        err(E.ENOENT, vfs.rename, ctx, None, "/h", None, "/nothing", RENAME_EXCHANGE)
        err(E.EINVAL, vfs.rename, ctx, None, "/h", None, "/g",
            RENAME_EXCHANGE | RENAME_NOREPLACE)
        err(E.EINVAL, vfs.rename, ctx, None, "/h", None, "/g", 8)
        vfs.rename(ctx, None, "/h", None, "/g", RENAME_EXCHANGE)
        assert (get(vfs, ctx, "/g"), get(vfs, ctx, "/h")) == (b"f", b"g")
        # a file and a non-empty directory, across directories
        vfs.rename(ctx, None, "/g", None, "/full", RENAME_EXCHANGE)
        assert get(vfs, ctx, "/full") == b"f"
        assert get(vfs, ctx, "/g/x") == b"x"
        assert ino(vfs, ctx, "/g/..") == ino(vfs, ctx, "/")
        vfs.rename(ctx, None, "/g", None, "/a/b/c/cf", RENAME_NOREPLACE)
        vfs.rename(ctx, None, "/a/b/c/cf", None, "/h", RENAME_EXCHANGE)
        assert get(vfs, ctx, "/h/x") == b"x" and get(vfs, ctx, "/a/b/c/cf") == b"g"
        assert vfs.path_of(ctx, vfs.resolve(ctx, None, "/h")) == "/h"

    def test_hard_links_of_one_inode(self, vfs, ctx):
        vfs.link(ctx, None, "/f", None, "/f2")
        vfs.rename(ctx, None, "/f", None, "/f2")  # Linux: a successful no-op
        assert vfs.stat(ctx, None, "/f").nlink == 2
        assert vfs.stat(ctx, None, "/f2").ino == vfs.stat(ctx, None, "/f").ino

    def test_across_mounts_and_mountpoints(self, vfs, ctx):
        vfs.mkdir(ctx, None, "/m", 0o755)
        vfs.mount("/m", MemFS())
        put(vfs, ctx, "/m/in", b"in")
        err(E.EXDEV, vfs.rename, ctx, None, "/f", None, "/m/f")
        err(E.EXDEV, vfs.rename, ctx, None, "/m/in", None, "/in")
        err(E.EXDEV, vfs.link, ctx, None, "/f", None, "/m/f")
        err(E.EBUSY, vfs.rename, ctx, None, "/m", None, "/m2")
        err(E.EBUSY, vfs.rename, ctx, None, "/empty", None, "/m")
        err(E.EBUSY, vfs.rmdir, ctx, None, "/m")
        err(E.EBUSY, vfs.rename, ctx, None, "/m/.", None, "/m/x")
        vfs.rename(ctx, None, "/m/in", None, "/m/out")  # inside one mount: fine

    def test_moving_a_directory_needs_write_on_it(self, vfs, ctx):
        alice = vfs.context(ALICE)
        mkdir(vfs, ctx, "/pub", 0o777)
        mkdir(vfs, ctx, "/pub2", 0o777)
        vfs.mkdir(alice, None, "/pub/d", 0o555)
        err(E.EACCES, vfs.rename, alice, None, "/pub/d", None, "/pub2/d")
        vfs.rename(alice, None, "/pub/d", None, "/pub/e")  # same parent: ".." unchanged


# --- getcwd and path_of -------------------------------------------------------------------
class TestCwd:
    def test_getcwd_follows_renames(self, vfs, ctx):
        vfs.mkdir(ctx, None, "/a", 0o755)
        vfs.mkdir(ctx, None, "/a/b", 0o755)
        vfs.mkdir(ctx, None, "/a/b/c", 0o755)
        vfs.chdir(ctx, None, "/a/b/c")
        assert vfs.getcwd(ctx) == "/a/b/c"
        vfs.rename(ctx, None, "/a", None, "/z")
        assert vfs.getcwd(ctx) == "/z/b/c"
        vfs.mkdir(ctx, None, "/y", 0o755)
        vfs.rename(ctx, None, "/z/b", None, "/y/moved")
        assert vfs.getcwd(ctx) == "/y/moved/c"
        put(vfs, ctx, "here", b"h")
        assert get(vfs, ctx, "/y/moved/c/here") == b"h"

    def test_getcwd_after_rmdir(self, vfs, ctx):
        vfs.mkdir(ctx, None, "/gone", 0o755)
        vfs.chdir(ctx, None, "/gone")
        vfs.rmdir(ctx, None, "/gone")
        err(E.ENOENT, vfs.getcwd, ctx)
        err(E.ENOENT, vfs.open, ctx, None, "new", O_CREAT | O_WRONLY, 0o644)
        assert vfs.stat(ctx, None, ".").nlink == 0

    def test_path_of_across_mounts(self, vfs, ctx):
        vfs.mkdir(ctx, None, "/m", 0o755)
        vfs.mount("/m", MemFS())
        vfs.mkdir(ctx, None, "/m/sub", 0o755)
        vfs.mount("/m/sub", MemFS())
        vfs.mkdir(ctx, None, "/m/sub/x", 0o755)
        vfs.mkdir(ctx, None, "/m/sub/x/y", 0o755)
        loc = vfs.resolve(ctx, None, "/m/sub/x/y")
        assert vfs.path_of(ctx, loc) == "/m/sub/x/y"
        assert vfs.path_of(ctx, vfs.resolve(ctx, None, "/m/sub")) == "/m/sub"
        assert vfs.path_of(ctx, vfs.resolve(ctx, None, "/m")) == "/m"
        assert vfs.path_of(ctx, vfs.root) == "/"
        jail = vfs.context()
        jail.root = vfs.resolve(ctx, None, "/m")
        assert vfs.path_of(jail, loc) == "/sub/x/y"
        # a location the task's root does not contain is not given a path under it
        outside = vfs.resolve(ctx, None, "/")
        assert vfs.path_of(jail, outside).startswith("(unreachable)")

    def test_chdir_errors(self, vfs, ctx):
        put(vfs, ctx, "/f")
        err(E.ENOTDIR, vfs.chdir, ctx, None, "/f")
        err(E.ENOENT, vfs.chdir, ctx, None, "/nope")
        vfs.chdir(ctx, None, "/")
        assert vfs.getcwd(ctx) == "/"


# --- misc namespace operations -------------------------------------------------------
class TestMisc:
    def test_unlink_and_rmdir(self, vfs, ctx):
        put(vfs, ctx, "/f")
        vfs.mkdir(ctx, None, "/d", 0o755)
        put(vfs, ctx, "/d/x")
        err(E.EISDIR, vfs.unlink, ctx, None, "/d")
        err(E.ENOTDIR, vfs.rmdir, ctx, None, "/f")
        err(E.ENOTEMPTY, vfs.rmdir, ctx, None, "/d")
        err(E.EINVAL, vfs.rmdir, ctx, None, "/d/.")
        err(E.ENOTEMPTY, vfs.rmdir, ctx, None, "/d/..")
        err(E.EBUSY, vfs.rmdir, ctx, None, "/")
        err(E.EISDIR, vfs.unlink, ctx, None, "/d/..")
        err(E.ENOENT, vfs.unlink, ctx, None, "/nope")
        vfs.unlink(ctx, None, "/d/x")
        vfs.rmdir(ctx, None, "/d")
        assert names(vfs, ctx, "/") == [".", "..", "f"]

    def test_open_file_survives_unlink(self, vfs, ctx):
        put(vfs, ctx, "/f", b"still here")
        f = vfs.open(ctx, None, "/f", O_RDWR)
        vfs.unlink(ctx, None, "/f")
        assert f.stat().nlink == 0
        assert f.read(100) == b"still here"

    def test_truncate(self, vfs, ctx):
        put(vfs, ctx, "/f", b"abcdef")
        vfs.truncate(ctx, None, "/f", 3)
        assert get(vfs, ctx, "/f") == b"abc"
        vfs.truncate(ctx, None, "/f", 6)
        assert get(vfs, ctx, "/f") == b"abc\0\0\0"
        err(E.EINVAL, vfs.truncate, ctx, None, "/f", -1)
        err(E.EISDIR, vfs.truncate, ctx, None, "/", 0)
        err(E.EACCES, vfs.truncate, vfs.context(ALICE), None, "/f", 0)

    def test_special_files_without_a_driver(self, vfs, ctx):
        vfs.mknod(ctx, None, "/fifo", S_IFIFO | 0o644)
        err(E.ENXIO, vfs.open, ctx, None, "/fifo", O_RDONLY)
        seen: list[tuple[Location, int]] = []

        def opener(loc: Location, flags: int) -> File:
            seen.append((loc, flags))
            return File(flags)

        vfs.special_openers[S_IFIFO] = opener
        vfs.open(ctx, None, "/fifo", O_WRONLY)
        assert seen and seen[0][1] == O_WRONLY

    def test_mode_bits_of_new_objects(self, vfs, ctx):
        ctx.umask = 0o027
        vfs.mkdir(ctx, None, "/d", 0o1777)
        vfs.mknod(ctx, None, "/p", S_IFIFO | 0o666)
        vfs.open(ctx, None, "/f", O_CREAT | O_WRONLY, 0o4777)
        assert vfs.stat(ctx, None, "/d").perm == 0o1750
        assert vfs.stat(ctx, None, "/p").perm == 0o640
        assert vfs.stat(ctx, None, "/f").perm == 0o4750
        assert vfs.stat(ctx, None, "/d").mode & S_ISVTX
        assert vfs.stat(ctx, None, "/f").mode & S_ISUID
        assert not vfs.stat(ctx, None, "/f").mode & S_ISGID


class TestResolveReal:
    """``resolve_real``: the location and realpath(3)'s answer from one walk."""

    @pytest.fixture
    def tree(self, tmp_path):
        """The same tree on the host (for os.path.realpath) and as a VFS over it."""
        from cove.fs.hostfs import HostFS

        (tmp_path / "usr/lib/x86").mkdir(parents=True)
        (tmp_path / "usr/lib/x86/libc.so.6").write_bytes(b"libc")
        (tmp_path / "usr/bin").mkdir()
        (tmp_path / "usr/bin/true").write_bytes(b"true")
        (tmp_path / "etc").mkdir()
        os.symlink("usr/bin", tmp_path / "bin")
        os.symlink("usr/lib", tmp_path / "lib")
        os.symlink("lib", tmp_path / "lib64")
        os.symlink("../lib/x86/libc.so.6", tmp_path / "usr/bin/libc")
        os.symlink("./x86/../x86/libc.so.6", tmp_path / "usr/lib/dotted")
        os.symlink("../../etc", tmp_path / "usr/lib/up")
        return tmp_path, VFS(HostFS(str(tmp_path)))

    @pytest.mark.parametrize("path", [
        "/bin/true", "/lib64/x86/libc.so.6", "/bin/libc", "/usr/lib/dotted", "/lib/up",
        "/bin/../lib/x86/libc.so.6", "/usr/./bin//true", "/lib/up/..",
        "/", "/bin/", "/lib64/up/../bin/libc",
    ])
    def test_matches_the_host_realpath(self, tree, path):
        host, vfs = tree
        ctx = vfs.context()
        loc, real = vfs.resolve_real(ctx, None, path)
        want = os.path.relpath(os.path.realpath(str(host) + path), host)
        assert real == ("/" if want == "." else "/" + want)
        assert loc.inode.key == vfs.resolve(ctx, None, real).inode.key

    def test_relative_to_a_directory_and_absolute_links_restart_at_the_root(self, tree):
        _host, vfs = tree
        ctx = vfs.context()
        at = vfs.resolve(ctx, None, "/usr/lib")
        assert vfs.resolve_real(ctx, at, "x86/libc.so.6")[1] == "/usr/lib/x86/libc.so.6"
        assert vfs.resolve_real(ctx, at, "../../bin/libc")[1] == "/usr/lib/x86/libc.so.6"
        assert vfs.resolve_real(ctx, None, "/../../usr/bin/true")[1] == "/usr/bin/true"
        mem = VFS(MemFS())
        c = mem.context()
        mkdir(mem, c, "/d", 0o755)
        put(mem, c, "/d/f", b"x")
        mem.symlink(c, "/d/f", None, "/d/abs")
        mem.symlink(c, "/", None, "/root")
        assert mem.resolve_real(c, mem.resolve(c, None, "/d"), "abs")[1] == "/d/f"
        assert mem.resolve_real(c, None, "/root")[1] == "/"

    def test_errors_are_resolves(self, tree):
        _host, vfs = tree
        ctx = vfs.context()
        err(E.ENOENT, vfs.resolve_real, ctx, None, "/bin/nothing")
        err(E.ENOTDIR, vfs.resolve_real, ctx, None, "/bin/true/x")
