"""The overlay keeps recently looked-up objects (a dentry cache) and checks a
host lower is still the object it found each time it hands one out again."""

from __future__ import annotations

import gc
import os

import pytest

from cove.abi.errno import E, Errno
from cove.fs.file import O_RDONLY
from cove.fs.hostfs import HostFS
from cove.fs.memfs import MemFS
from cove.fs.overlay import RECENT, OverlayFS
from cove.fs.vfs import VFS

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def host(tmp_path):
    (tmp_path / "usr/bin").mkdir(parents=True)
    (tmp_path / "usr/bin/tool").write_bytes(b"old")
    os.symlink("usr/bin", tmp_path / "bin")
    return tmp_path


def _read(vfs, path):
    return vfs.open(vfs.context(), None, path, O_RDONLY).pread(100, 0)


def test_looked_up_objects_outlive_their_users(host):
    ovl = OverlayFS(MemFS(), [HostFS(str(host))])
    vfs = VFS(ovl)
    first = id(vfs.resolve(vfs.context(), None, "/usr/bin/tool").inode)
    gc.collect()
    assert id(vfs.resolve(vfs.context(), None, "/usr/bin/tool").inode) == first
    assert len(ovl._recent) <= RECENT


def test_a_file_replaced_on_the_host_is_found_again(host):
    vfs = VFS(OverlayFS(MemFS(), [HostFS(str(host))]))
    assert _read(vfs, "/bin/tool") == b"old"
    (host / "usr/bin/tool.new").write_bytes(b"new")
    os.rename(host / "usr/bin/tool.new", host / "usr/bin/tool")  # as package managers do
    assert _read(vfs, "/bin/tool") == b"new"


def test_a_symlink_replaced_on_the_host_is_read_again(host):
    (host / "usr/lib").mkdir()
    (host / "usr/lib/tool").write_bytes(b"lib")
    vfs = VFS(OverlayFS(MemFS(), [HostFS(str(host))]))
    assert _read(vfs, "/bin/tool") == b"old"
    os.unlink(host / "bin")
    os.symlink("usr/lib", host / "bin")
    assert _read(vfs, "/bin/tool") == b"lib"
    os.unlink(host / "bin")
    with pytest.raises(Errno) as e:
        _read(vfs, "/bin/tool")
    assert e.value.errno == E.ENOENT


def test_a_copied_up_symlink_reads_the_upper(host):
    vfs = VFS(OverlayFS(MemFS(), [HostFS(str(host))]))
    ctx = vfs.context()
    assert vfs.readlink(ctx, None, "/bin") == "usr/bin"
    vfs.unlink(ctx, None, "/bin")
    vfs.symlink(ctx, "usr", None, "/bin")
    assert vfs.readlink(ctx, None, "/bin") == "usr"
    assert _read(vfs, "/bin/bin/tool") == b"old"
