"""Guest physical memory: frame allocation, refcounts, zeroing, views."""

from __future__ import annotations

import pytest

from cove.abi.errno import E, Errno
from cove.kernel.physmem import PAGE_SIZE, PhysMem


@pytest.fixture
def pm():
    p = PhysMem(16 * PAGE_SIZE)
    yield p
    p.close()


def test_alloc_is_zeroed_and_distinct(pm: PhysMem) -> None:
    a, b = pm.alloc(), pm.alloc()
    assert a != b
    pm.frame(a)[:4] = b"junk"
    assert pm.unref(a) == 0
    c = pm.alloc()
    assert c == a, "freed frames are reused first"
    assert bytes(pm.frame(c)) == bytes(PAGE_SIZE), "a reused frame must not leak old data"


def test_refcounts(pm: PhysMem) -> None:
    f = pm.alloc()
    assert pm.refcount(f) == 1
    assert pm.ref(f) == 2
    assert pm.unref(f) == 1
    assert pm.frames_in_use == 1
    assert pm.unref(f) == 0
    assert pm.refcount(f) == 0 and pm.frames_in_use == 0
    with pytest.raises(ValueError):
        pm.unref(f)
    with pytest.raises(ValueError):
        pm.ref(12345)


def test_exhaustion_is_enomem(pm: PhysMem) -> None:
    frames = [pm.alloc() for _ in range(16)]
    assert sorted(frames) == list(range(16))
    with pytest.raises(Errno) as ei:
        pm.alloc()
    assert ei.value.errno == E.ENOMEM


def test_views_share_memory(pm: PhysMem) -> None:
    f = pm.alloc()
    v = pm.view((f << 12) + 100, 5)
    v[:] = b"hello"
    assert pm.read((f << 12) + 100, 5) == b"hello"
    pm.write((f << 12) + 4094, b"xy")
    assert bytes(pm.frame(f)[-2:]) == b"xy"
    g = pm.alloc()
    pm.copy_frame(f, g)
    assert bytes(pm.frame(g)) == bytes(pm.frame(f))
    with pytest.raises(ValueError):
        pm.view(pm.size - 2, 4)
    # the memfd is the same memory (what other platforms map)
    import os

    assert os.pread(pm.fd, 5, (f << 12) + 100) == b"hello"
    v.release()


def test_size_must_be_page_multiple() -> None:
    with pytest.raises(ValueError):
        PhysMem(PAGE_SIZE + 1)
