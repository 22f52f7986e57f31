"""devfs: cove's /dev tree and its drivers, reached through vfs.open.

A character device node opens cove's driver for its device number wherever
the node lives (devfs, memfs, a rootfs tar); nothing is ever opened on the host.
"""

from __future__ import annotations

import io
import tarfile

import pytest

from cove.abi.errno import E, Errno, errno_name
from cove.fs.devfs import (
    DEV_FULL,
    DEV_NULL,
    DEV_RANDOM,
    DEV_TTY,
    DEV_URANDOM,
    DEV_ZERO,
    FullDevice,
    NullDevice,
    RandomDevice,
    ZeroDevice,
    make_devfs,
    register_drivers,
)
from cove.fs.file import O_CREAT, O_PATH, O_RDONLY, O_RDWR, O_WRONLY
from cove.fs.memfs import MemFS
from cove.fs.mount import MS_NODEV, MS_RDONLY
from cove.fs.node import S_IFBLK, S_IFCHR, S_IFLNK, S_IFMT, S_IFSOCK, S_ISVTX, makedev
from cove.fs.perm import Cred
from cove.fs.tarfs import TarFS
from cove.fs.vfs import VFS, PathContext

pytestmark = pytest.mark.timeout(60)


def err(code: int, fn, *args) -> None:
    with pytest.raises(Errno) as info:
        fn(*args)
    assert info.value.errno == code, f"expected {errno_name(code)}, got {info.value.name}"


@pytest.fixture
def vfs() -> VFS:
    v = VFS(MemFS())
    v.mkdir(v.context(), None, "/dev", 0o755)
    v.mount("/dev", make_devfs(), source="devtmpfs")
    register_drivers(v.device_openers)
    return v


@pytest.fixture
def ctx(vfs: VFS) -> PathContext:
    return vfs.context()


def test_tree(vfs, ctx):
    f = vfs.open(ctx, None, "/dev", O_RDONLY)
    names = {d.name for d in f.readdir()}
    assert names == {".", "..", "null", "zero", "full", "random", "urandom", "tty",
                     "stdin", "stdout", "stderr", "fd", "shm", "pts"}
    for name, rdev in (("null", DEV_NULL), ("zero", DEV_ZERO), ("full", DEV_FULL),
                       ("random", DEV_RANDOM), ("urandom", DEV_URANDOM), ("tty", DEV_TTY)):
        st = vfs.stat(ctx, None, f"/dev/{name}")
        assert st.mode == S_IFCHR | 0o666 and st.rdev == rdev, name
    assert DEV_NULL == makedev(1, 3) and DEV_URANDOM == makedev(1, 9)
    for i, name in enumerate(("stdin", "stdout", "stderr")):
        assert vfs.readlink(ctx, None, f"/dev/{name}") == f"/proc/self/fd/{i}"
    assert vfs.readlink(ctx, None, "/dev/fd") == "/proc/self/fd"
    shm = vfs.stat(ctx, None, "/dev/shm")
    assert shm.is_dir() and shm.perm == 0o777 | S_ISVTX


def test_null(vfs, ctx):
    f = vfs.open(ctx, None, "/dev/null", O_RDWR)
    assert isinstance(f, NullDevice)
    assert f.read(100) == b""
    assert f.write(b"x" * 5000) == 5000
    assert f.pread(10, 12345) == b""
    assert f.pwrite(b"abc", 99) == 3
    assert f.seek(1000, 0) == 0
    assert f.stat().rdev == DEV_NULL


def test_zero(vfs, ctx):
    f = vfs.open(ctx, None, "/dev/zero", O_RDWR)
    assert isinstance(f, ZeroDevice)
    assert f.read(4096) == bytes(4096)
    assert f.pread(3, 1 << 40) == b"\0\0\0"
    assert f.write(b"ignored") == 7
    assert f.read(1) == b"\0"


def test_full(vfs, ctx):
    f = vfs.open(ctx, None, "/dev/full", O_RDWR)
    assert isinstance(f, FullDevice)
    err(E.ENOSPC, f.write, b"x")
    err(E.ENOSPC, f.pwrite, b"x", 0)
    assert f.read(8) == bytes(8)


@pytest.mark.parametrize("name", ["random", "urandom"])
def test_random(vfs, ctx, name):
    f = vfs.open(ctx, None, f"/dev/{name}", O_RDWR)
    assert isinstance(f, RandomDevice)
    a, b = f.read(64), f.read(64)
    assert len(a) == len(b) == 64 and a != b
    assert len(f.read(1 << 20)) == 1 << 20
    assert f.write(b"entropy") == 7  # accepted, as Linux does


def test_access_modes_are_enforced(vfs, ctx):
    w = vfs.open(ctx, None, "/dev/zero", O_WRONLY)
    err(E.EBADF, w.read, 1)
    r = vfs.open(ctx, None, "/dev/null", O_RDONLY)
    err(E.EBADF, r.write, b"x")
    p = vfs.open(ctx, None, "/dev/null", O_PATH)
    err(E.EBADF, p.read, 1)
    assert p.stat().mode & S_IFMT == S_IFCHR


def test_permissions_and_creation(vfs, ctx):
    alice = vfs.context(Cred(1000, 1000))
    assert vfs.open(alice, None, "/dev/null", O_RDWR).write(b"x") == 1
    vfs.chmod(ctx, None, "/dev/zero", 0o600)
    err(E.EACCES, vfs.open, alice, None, "/dev/zero", O_RDONLY)
    err(E.EPERM, vfs.mknod, alice, None, "/dev/shm/mynull", S_IFCHR | 0o666, DEV_NULL)
    # O_CREAT of an existing device opens it
    assert isinstance(vfs.open(ctx, None, "/dev/null", O_CREAT | O_WRONLY, 0o644), NullDevice)


def test_device_nodes_anywhere_open_coves_drivers(vfs, ctx):
    vfs.mknod(ctx, None, "/mynull", S_IFCHR | 0o666, DEV_NULL)
    vfs.mknod(ctx, None, "/myzero", S_IFCHR | 0o666, DEV_ZERO)
    assert isinstance(vfs.open(ctx, None, "/mynull", O_RDWR), NullDevice)
    assert vfs.open(ctx, None, "/myzero", O_RDONLY).read(3) == b"\0\0\0"
    vfs.symlink(ctx, "/dev/zero", None, "/lz")
    assert isinstance(vfs.open(ctx, None, "/lz", O_RDONLY), ZeroDevice)


def test_unknown_devices_are_enxio(vfs, ctx):
    vfs.mknod(ctx, None, "/weird", S_IFCHR | 0o666, makedev(42, 42))
    err(E.ENXIO, vfs.open, ctx, None, "/weird", O_RDONLY)
    # block devices never reach the character drivers, even with the same number
    vfs.mknod(ctx, None, "/blk", S_IFBLK | 0o666, DEV_NULL)
    err(E.ENXIO, vfs.open, ctx, None, "/blk", O_RDONLY)
    vfs.mknod(ctx, None, "/sock", S_IFSOCK | 0o666)
    err(E.ENXIO, vfs.open, ctx, None, "/sock", O_RDONLY)
    # the terminal is bound by the kernel; a bare VFS has none
    err(E.ENXIO, vfs.open, ctx, None, "/dev/tty", O_RDWR)


def test_no_drivers_registered():
    v = VFS(MemFS())
    c = v.context()
    v.mknod(c, None, "/null", S_IFCHR | 0o666, DEV_NULL)
    err(E.ENXIO, v.open, c, None, "/null", O_RDONLY)


def _tar_with_devices() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for name, major, minor in (("dev/null", 1, 3), ("dev/zero", 1, 5),
                                   ("dev/odd", 99, 1)):
            ti = tarfile.TarInfo(name)
            ti.type = tarfile.CHRTYPE
            ti.mode = 0o666
            ti.devmajor, ti.devminor = major, minor
            tf.addfile(ti)
    return buf.getvalue()


def test_device_nodes_in_a_tar(tmp_path):
    archive = tmp_path / "rootfs.tar"
    archive.write_bytes(_tar_with_devices())
    v = VFS(TarFS(str(archive)))
    register_drivers(v.device_openers)
    c = v.context()
    assert v.stat(c, None, "/dev/null").rdev == DEV_NULL
    f = v.open(c, None, "/dev/null", O_RDWR)  # writable although the tar is read-only
    assert isinstance(f, NullDevice) and f.write(b"x") == 1
    assert v.open(c, None, "/dev/zero", O_RDONLY).read(2) == b"\0\0"
    err(E.ENXIO, v.open, c, None, "/dev/odd", O_RDONLY)
    # the same archive mounted nodev: device nodes do not open at all
    outer = VFS(MemFS())
    register_drivers(outer.device_openers)
    oc = outer.context()
    outer.mkdir(oc, None, "/img", 0o755)
    outer.mount("/img", TarFS(str(archive)), flags=MS_NODEV)
    err(E.EACCES, outer.open, oc, None, "/img/dev/null", O_RDONLY)
    outer.mkdir(oc, None, "/img2", 0o755)
    outer.mount("/img2", TarFS(str(archive)), flags=MS_RDONLY)
    assert isinstance(outer.open(oc, None, "/img2/dev/null", O_WRONLY), NullDevice)


def test_nodev_memfs_mount(vfs, ctx):
    vfs.mkdir(ctx, None, "/data", 0o755)
    inner = MemFS()
    inner.root.mknod("null", S_IFCHR | 0o666, DEV_NULL, 0, 0)
    inner.root.symlink("tonull", "/dev/null", 0, 0)
    vfs.mount("/data", inner, flags=MS_NODEV)
    err(E.EACCES, vfs.open, ctx, None, "/data/null", O_RDONLY)
    # a symlink on the nodev mount to a device elsewhere is fine: the node decides
    assert vfs.stat(ctx, None, "/data/tonull", follow=False).mode & S_IFMT == S_IFLNK
    assert isinstance(vfs.open(ctx, None, "/data/tonull", O_RDONLY), NullDevice)
