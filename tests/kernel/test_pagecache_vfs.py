"""The page cache against real files: whatever is written to a file (write,
truncate, a shared mapping's write-back, a copy-up through an overlay, a host
file under hostfs) is what the next private mapping shows, although the cache
keeps pages after the last mapping of them goes."""

from __future__ import annotations

import os

import pytest

from cove.abi import flags as F
from cove.fs.file import O_RDONLY, O_RDWR
from cove.fs.hostfs import HostFS
from cove.fs.memfs import MemFS
from cove.fs.overlay import OverlayFS
from cove.kernel.pagecache import cache_for

from .harness import call, make_kernel

PG = 4096
R, RW = F.PROT_READ, F.PROT_READ | F.PROT_WRITE
PRIV, SHARED = F.MAP_PRIVATE, F.MAP_SHARED


def _open(k, t, path, flags=O_RDONLY):
    return t.files.install(k.vfs.open(t.fs, None, path, flags))


def _map_read(k, t, path, n, prot=R, off=0):
    """Map ``path`` privately, read ``n`` bytes at ``off`` and unmap again."""
    fd = _open(k, t, path)
    a = call(t, "mmap", 0, 4 * PG, prot, PRIV, fd, 0)
    assert a > 0
    data = t.mm.read(a + off, n)
    assert call(t, "munmap", a, 4 * PG) == 0
    assert call(t, "close", fd) == 0
    return data


def _write(k, t, path, data, off=0):
    k.vfs.open(t.fs, None, path, O_RDWR).pwrite(data, off)


def _make(k, t, path, data):
    from cove.fs.file import O_CREAT

    k.vfs.open(t.fs, None, path, O_RDWR | O_CREAT, 0o755).pwrite(data, 0)


def test_a_write_after_the_last_mapping_went_is_seen():
    k, t = make_kernel()
    _make(k, t, "/f", b"A" * (3 * PG))
    assert _map_read(k, t, "/f", 2) == b"AA"
    assert len(cache_for(k.phys)) == 3  # kept after the munmap
    _write(k, t, "/f", b"BB", PG)  # same size: only the times move
    assert _map_read(k, t, "/f", 2, off=PG) == b"BB"
    assert _map_read(k, t, "/f", 1, off=2 * PG) == b"A"
    assert len(cache_for(k.phys)) == 3  # the old version's pages went


def test_truncate_and_regrow_to_the_same_size_is_seen():
    k, t = make_kernel()
    _make(k, t, "/f", b"A" * (2 * PG))
    assert _map_read(k, t, "/f", 1, off=PG) == b"A"
    f = k.vfs.open(t.fs, None, "/f", O_RDWR)
    f.truncate(PG)
    f.truncate(2 * PG)  # the second page reads as zeros now
    assert _map_read(k, t, "/f", 2, off=PG) == b"\0\0"


def test_a_shared_mappings_write_back_is_seen_by_a_later_private_mapping():
    k, t = make_kernel()
    _make(k, t, "/f", b"A" * PG)
    assert _map_read(k, t, "/f", 1) == b"A"
    fd = _open(k, t, "/f", O_RDWR)
    s = call(t, "mmap", 0, PG, RW, SHARED, fd, 0)
    t.mm.write(s, b"shared")
    assert call(t, "munmap", s, PG) == 0  # written back to the file
    assert _map_read(k, t, "/f", 6) == b"shared"


def test_a_private_writer_keeps_its_copy_and_the_file_keeps_its_pages():
    k, t = make_kernel()
    _make(k, t, "/f", b"A" * (2 * PG))
    fd = _open(k, t, "/f")
    a = call(t, "mmap", 0, 2 * PG, R, PRIV, fd, 0)
    cached = t.mm.frames[a >> 12]
    assert call(t, "mprotect", a, PG, RW) == 0
    t.mm.write(a, b"mine")
    assert t.mm.frames[a >> 12] != cached
    assert k.phys.read(cached << 12, 4) == b"AAAA"
    assert _map_read(k, t, "/f", 4) == b"AAAA"
    assert t.mm.read(a, 4) == b"mine"


def test_fork_exec_children_never_see_each_others_writes():
    from .proc_helpers import exit_group, fork

    k, t = make_kernel()
    _make(k, t, "/f", b"A" * (4 * PG))
    fd = _open(k, t, "/f")
    a = call(t, "mmap", 0, 4 * PG, R, PRIV, fd, 0)
    assert t.mm.read(a, 1) == b"A"
    for n in range(3):
        c = fork(t)
        # The child's first fault is remembered; later forks map near it at once.
        assert c.proc.mm.handle_fault(a + PG, write=False, execute=False) is None
        assert call(c, "mprotect", a, 4 * PG, RW) == 0
        assert c.proc.mm.read(a + PG, 1) == b"A"  # never an earlier child's byte
        c.proc.mm.write(a + PG, bytes([48 + n]))
        exit_group(c, 0)
        assert call(t, "wait4", -1, 0, 0, 0) == c.pid
    assert t.mm.read(a + PG, 1) == b"A"
    assert _map_read(k, t, "/f", 1, off=PG) == b"A"


def _overlay_kernel(lower):
    k, t = make_kernel(OverlayFS(MemFS(), [lower]))
    return k, t


def test_a_copy_up_through_the_overlay_is_seen():
    lower = MemFS()
    kl, tl = make_kernel(lower)
    _make(kl, tl, "/f", b"L" * (2 * PG))
    k, t = _overlay_kernel(lower)
    ino = k.vfs.resolve(t.fs, None, "/f").inode.stat().ino
    assert _map_read(k, t, "/f", 1, off=PG) == b"L"
    _write(k, t, "/f", b"U", PG)  # copy-up: same st_ino, the upper's times
    assert k.vfs.resolve(t.fs, None, "/f").inode.stat().ino == ino
    assert _map_read(k, t, "/f", 1, off=PG) == b"U"
    assert kl.vfs.open(tl.fs, None, "/f", O_RDONLY).pread(1, PG) == b"L"  # lower untouched


def test_a_host_file_changed_on_the_host_is_seen(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"H" * (2 * PG))
    k, t = _overlay_kernel(HostFS(str(tmp_path)))
    assert _map_read(k, t, "/f", 1, off=PG) == b"H"
    st = os.stat(p)
    with open(p, "r+b") as f:  # same size, same mtime: only ctime can tell
        f.seek(PG)
        f.write(b"X")
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    if os.stat(p).st_ctime_ns == st.st_ctime_ns:
        pytest.skip("the host filesystem's ctime did not move")
    assert _map_read(k, t, "/f", 1, off=PG) == b"X"
