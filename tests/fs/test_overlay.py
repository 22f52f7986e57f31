"""OverlayFS unit tests: merged view, copy-up, whiteouts, opaque dirs, rename, inos.

Every test that builds lowers registers them with ``guard``, which compares a
raw dump (names, types, modes, owners, data, targets, inos, times) of each
lower before and after the test: lowers must never change.
"""

from __future__ import annotations

import sys
import threading

import pytest

from cove.abi.errno import E, Errno
from cove.fs.memfs import MemFS
from cove.fs.node import (
    OVERLAYFS_MAGIC,
    RENAME_EXCHANGE,
    RENAME_NOREPLACE,
    S_IFCHR,
    S_IFIFO,
    S_IFLNK,
    S_IFMT,
    S_IFREG,
    SetAttr,
)
from cove.fs.overlay import OPAQUE_MARKER, OverlayFS, is_opaque, is_whiteout
from tests.fs.overlay_util import (
    EXPECTED,
    build,
    dump,
    errno_of,
    inos,
    lower,
    project,
    resolve,
    three_lowers,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def guard():
    watched = []

    def watch(*layers: MemFS) -> None:
        for fs in layers:
            watched.append((fs, dump(fs.root, raw=True)))

    yield watch
    for fs, before in watched:
        assert dump(fs.root, raw=True) == before, "a lower layer changed"


@pytest.fixture
def ov(guard):
    lowers = three_lowers()
    guard(*lowers)
    return OverlayFS(MemFS(), lowers)


def names(node) -> list[str]:
    return [e.name for e in node.readdir()]


def upper_node(ov: OverlayFS, path: str):
    return resolve(ov.upper.root, path)


def raises(errno: int, fn, *args) -> None:
    with pytest.raises(Errno) as info:
        fn(*args)
    assert info.value.errno == errno, info.value


# --- merged view ------------------------------------------------------------



def test_merged_view_of_three_layers(ov):
    assert project(dump(ov.root)) == EXPECTED
    assert ov.root.stat().nlink == 2 + 2  # subdirectories a and c


def test_root_nlink_and_sorted_readdir(ov):
    assert names(ov.root) == ["a", "b", "c", "d", "e"]
    assert names(resolve(ov.root, "a")) == ["a", "c", "d", "e"]
    assert ov.root.stat().nlink == 2 + 2


@pytest.mark.parametrize(
    "path,errno",
    [
        ("a/b", E.ENOENT),  # whiteout in L1 hides L2 and L3
        ("a/c/d", E.ENOENT),  # whiteout in L2 hides L3
        ("a/e/three", E.ENOENT),  # a file in L2 ends the merge of L1's and L3's a/e
        ("c/b", E.ENOENT),  # L1's c is opaque
        ("c/c", E.ENOENT),
        ("b/a", E.ENOTDIR),  # L1's file b hides L2's directory b
        ("zz", E.ENOENT),
        (OPAQUE_MARKER, E.ENOENT),
        (f"c/{OPAQUE_MARKER}", E.ENOENT),
    ],
)
def test_hidden_entries(ov, path, errno):
    raises(errno, resolve, ov.root, path)


def test_same_object_per_path_and_stable_key(ov):
    node = resolve(ov.root, "a/c/b")
    assert resolve(ov.root, "a/c/b") is node
    key = node.key
    node.write(0, b"new")
    assert resolve(ov.root, "a/c/b") is node
    assert node.key == key == (ov.dev, node.stat().ino)
    assert node.stat().dev == ov.dev


# --- copy-up ----------------------------------------------------------------


def _write(ov, n):
    n.write(1, b"XY")


def _truncate(ov, n):
    n.setattr(SetAttr(size=2))


def _chmod(ov, n):
    n.setattr(SetAttr(mode=0o4640))


def _chown(ov, n):
    n.setattr(SetAttr(uid=42, gid=43))


def _utimes(ov, n):
    n.setattr(SetAttr(atime_ns=5, mtime_ns=6))


def _link(ov, n):
    ov.root.link("hard", n)


def _rename(ov, n):
    resolve(ov.root, "a/c").rename("b", ov.root, "moved")


COPY_UP = {
    "write": (_write, "a/c/b", {"data": b"LXYacb"}),
    "truncate": (_truncate, "a/c/b", {"data": b"L3"}),
    "chmod": (_chmod, "a/c/b", {"perm": 0o4640}),
    "chown": (_chown, "a/c/b", {"uid": 42, "gid": 43}),
    "utimes": (_utimes, "a/c/b", {"atime": 5, "mtime": 6}),
    "link": (_link, "a/c/b", {"nlink": 2, "also": "hard"}),
    "rename": (_rename, "moved", {"gone": "a/c/b"}),
}


@pytest.mark.parametrize("op", sorted(COPY_UP))
def test_copy_up_trigger(ov, op):
    fn, path_after, want = COPY_UP[op]
    node = resolve(ov.root, "a/c/b")
    before = node.stat()
    assert names(ov.upper.root) == []
    fn(ov, node)
    after = resolve(ov.root, path_after)
    assert after is node
    st = after.stat()
    assert st.ino == before.ino  # st_ino survives the copy-up
    up = upper_node(ov, path_after)
    ust = up.stat()
    assert up.read(0, 100) == after.read(0, 100) == want.get("data", b"L3-acb")
    assert (ust.perm, ust.uid, ust.gid) == (
        want.get("perm", 0o600), want.get("uid", 3), want.get("gid", 3))
    assert st.perm == ust.perm and st.uid == ust.uid
    assert ust.nlink == st.nlink == want.get("nlink", 1)
    if "atime" in want:
        assert (st.atime_ns, st.mtime_ns) == (5, 6)
    elif op not in ("write", "truncate"):
        assert st.mtime_ns == before.mtime_ns  # times are copied
    if "also" in want:
        other = resolve(ov.root, want["also"])
        assert other.stat().ino == st.ino
        assert upper_node(ov, want["also"]) is up
    if "gone" in want:
        raises(E.ENOENT, resolve, ov.root, want["gone"])
        assert is_whiteout(upper_node(ov, want["gone"]))
    # The parents were copied up with their (topmost lower's) metadata.
    ua = upper_node(ov, "a").stat()
    assert (ua.perm, ua.uid, ua.atime_ns, ua.mtime_ns) == (0o711, 5, 111, 222)
    assert not is_opaque(upper_node(ov, "a")) and not is_opaque(upper_node(ov, "a/c"))
    # ...and the directories still merge: nothing else moved or vanished.
    assert names(resolve(ov.root, "a/c")) == (
        ["a", "c"] if op == "rename" else ["a", "b", "c"])


def test_copy_up_special_files_as_themselves(ov):
    resolve(ov.root, "d").setattr(SetAttr(uid=9, gid=9))
    resolve(ov.root, "a/d").setattr(SetAttr(mode=0o600))
    resolve(ov.root, "e").setattr(SetAttr(atime_ns=1, mtime_ns=2))
    d, fifo, dev = (upper_node(ov, p).stat() for p in ("d", "a/d", "e"))
    assert d.mode & S_IFMT == S_IFLNK and upper_node(ov, "d").readlink() == "a/a"
    assert d.uid == 9
    assert fifo.mode == S_IFIFO | 0o600
    assert dev.mode & S_IFMT == S_IFCHR and dev.rdev == 0x103 and dev.mtime_ns == 2
    assert not is_whiteout(upper_node(ov, "e"))
    assert project(dump(ov.root))["/e"] == (S_IFCHR, 0o600, 0, 0x103, 1)


def test_copy_up_of_large_sparse_file(guard):
    big = bytearray(3 << 20)
    big[:5] = b"start"
    big[-3:] = b"end"
    big[(1 << 20) + 7:(1 << 20) + 10] = b"mid"
    lo = lower([("f", "big", bytes(big))])
    guard(lo)
    ov = OverlayFS(MemFS(), [lo])
    node = ov.root.lookup("big")
    node.setattr(SetAttr(size=(2 << 20) + 1))
    assert node.read(0, 4 << 20) == bytes(big[:(2 << 20) + 1])
    ov2 = OverlayFS(MemFS(), [lo])
    n2 = ov2.root.lookup("big")
    n2.write(len(big), b"!")
    assert n2.read(0, 4 << 20) == bytes(big) + b"!"
    assert n2.stat().size == len(big) + 1


def test_copy_up_restores_parent_times(ov):
    a = resolve(ov.root, "a")
    a.setattr(SetAttr(atime_ns=10, mtime_ns=20))
    resolve(ov.root, "a/a").write(0, b"x")
    st = a.stat()
    assert (st.atime_ns, st.mtime_ns) == (10, 20)


# --- whiteouts and opaque directories ----------------------------------------


def test_unlink_lower_file_leaves_whiteout(ov):
    a = resolve(ov.root, "a")
    a.unlink("a")
    assert names(a) == ["c", "d", "e"]
    raises(E.ENOENT, a.lookup, "a")
    wh = upper_node(ov, "a/a")
    assert wh.mode == S_IFCHR and wh.stat().rdev == 0
    raises(E.ENOENT, a.unlink, "a")
    # Re-creating shows a new empty file; the L3 a/a stays hidden.
    n = a.create("a", 0o600, 1, 1)
    assert n.read(0, 10) == b"" and names(a) == ["a", "c", "d", "e"]
    assert upper_node(ov, "a/a").mode & S_IFMT == S_IFREG
    a.unlink("a")
    assert is_whiteout(upper_node(ov, "a/a"))  # the lowers still hold a/a


def test_unlink_upper_only_file_leaves_nothing(ov):
    ov.root.create("new", 0o644, 0, 0)
    ov.root.unlink("new")
    assert "new" not in names(ov.upper.root)
    assert "new" not in names(ov.root)


def test_unlink_symlink_and_dev_of_lower(ov):
    ov.root.unlink("d")
    ov.root.unlink("e")
    assert names(ov.root) == ["a", "b", "c"]
    # d also exists as a file in L2: hidden as well
    raises(E.ENOENT, ov.root.lookup, "d")


def test_rmdir_of_merged_dir_checks_merged_emptiness(ov):
    a = resolve(ov.root, "a")
    c = resolve(ov.root, "a/c")
    raises(E.ENOTEMPTY, a.rmdir, "c")
    c.unlink("a")
    c.unlink("b")
    raises(E.ENOTEMPTY, a.rmdir, "c")  # still c/c with a lower file
    cc = c.lookup("c")
    cc.unlink("a")
    raises(E.ENOTEMPTY, a.rmdir, "c")
    c.rmdir("c")
    assert names(c) == []
    assert c.stat().nlink == 2
    a.rmdir("c")
    raises(E.ENOENT, a.lookup, "c")
    assert is_whiteout(upper_node(ov, "a/c"))
    assert c.detached and c.stat().nlink == 0 and names(c) == []
    raises(E.ENOENT, c.create, "x", 0o644, 0, 0)
    # mkdir over the whiteout: an opaque, empty directory
    new = a.mkdir("c", 0o700, 0, 0)
    assert names(new) == [] and new.stat().nlink == 2
    assert is_opaque(upper_node(ov, "a/c"))
    assert OPAQUE_MARKER not in names(new)
    new.create("f", 0o644, 0, 0)
    assert names(new) == ["f"]
    raises(E.ENOTEMPTY, a.rmdir, "c")
    new.unlink("f")
    a.rmdir("c")
    assert is_whiteout(upper_node(ov, "a/c"))


def test_rmdir_lower_only_dir_that_merged_empty(guard):
    lo = lower([("d", "x"), ("f", "x/f", b"1")])
    guard(lo)
    ov = OverlayFS(MemFS(), [lo])
    x = ov.root.lookup("x")
    x.unlink("f")
    ov.root.rmdir("x")
    assert names(ov.root) == []


def test_reserved_names(ov):
    raises(E.EINVAL, ov.root.create, OPAQUE_MARKER, 0o644, 0, 0)
    raises(E.EINVAL, ov.root.mkdir, OPAQUE_MARKER, 0o755, 0, 0)
    raises(E.EPERM, ov.root.mknod, "wh", S_IFCHR | 0o600, 0, 0, 0)
    raises(E.EINVAL, ov.root.link, OPAQUE_MARKER, resolve(ov.root, "a/a"))
    raises(E.EINVAL, ov.root.rename, "b", ov.root, OPAQUE_MARKER)
    assert names(ov.upper.root) == []  # refused before any copy-up
    assert ov.root.mknod("null", S_IFCHR | 0o666, 0x103, 0, 0).stat().rdev == 0x103


def test_lower_opaque_and_whiteout_in_lower_layers(guard):
    # L1 made opaque "d" and whited out "f": what a previous upper looks like.
    l1 = lower([("d", "d"), ("o", "d"), ("f", "d/new", b"n"), ("w", "f")])
    l2 = lower([("d", "d"), ("f", "d/old", b"o"), ("f", "f", b"f"), ("f", "g", b"g")])
    guard(l1, l2)
    ov = OverlayFS(MemFS(), [l1, l2])
    assert names(ov.root) == ["d", "g"]
    assert names(ov.root.lookup("d")) == ["new"]


# --- rename -----------------------------------------------------------------


def test_rename_lower_file(ov):
    node = resolve(ov.root, "a/c/c/a")
    ino = node.stat().ino
    resolve(ov.root, "a/c/c").rename("a", ov.root, "x")
    assert ov.root.lookup("x") is node and node.stat().ino == ino
    assert node.read(0, 20) == b"L3-acca"
    assert names(resolve(ov.root, "a/c/c")) == []
    assert is_whiteout(upper_node(ov, "a/c/c/a"))


def test_rename_over_lower_entry_hides_it(ov):
    resolve(ov.root, "c").rename("a", ov.root, "d")  # d: L1 symlink over L2 file
    d = ov.root.lookup("d")
    assert d.mode & S_IFMT == S_IFREG and d.read(0, 9) == b"L1-ca"
    ov.root.unlink("d")
    raises(E.ENOENT, ov.root.lookup, "d")  # neither L1's symlink nor L2's file returns


def test_rename_upper_only_leaves_no_whiteout(ov):
    ov.root.create("x", 0o644, 0, 0)
    ov.root.rename("x", ov.root, "y")
    assert "x" not in names(ov.upper.root)
    assert names(ov.root) == ["a", "b", "c", "d", "e", "y"]


def test_rename_between_hard_links_is_a_no_op(ov):
    f = resolve(ov.root, "a/a")
    ov.root.link("h", f)
    ov.root.rename("h", resolve(ov.root, "a"), "a")
    assert "h" in names(ov.root) and "a" in names(resolve(ov.root, "a"))


def test_rename_noreplace(ov):
    a = resolve(ov.root, "a")
    raises(E.EEXIST, a.rename, "a", ov.root, "b", RENAME_NOREPLACE)
    raises(E.EEXIST, a.rename, "c", ov.root, "c", RENAME_NOREPLACE)
    assert names(ov.upper.root) == []  # a refused rename copies nothing up
    a.rename("a", ov.root, "fresh", RENAME_NOREPLACE)
    assert ov.root.lookup("fresh").read(0, 9) == b"L1-aa"
    raises(E.EINVAL, a.rename, "c", ov.root, "q", RENAME_NOREPLACE | RENAME_EXCHANGE)


def test_rename_exchange_file_and_merged_dir(ov):
    before = dump(ov.root)
    held_a, held_b = ov.root.lookup("a"), ov.root.lookup("b")
    ino_a, ino_b = held_a.stat().ino, held_b.stat().ino
    ov.root.rename("a", ov.root, "b", RENAME_EXCHANGE)
    assert ov.root.lookup("b") is held_a and ov.root.lookup("a") is held_b
    after = dump(ov.root)
    assert after["/a"] == before["/b"]
    for path, rec in before.items():
        if path.startswith("/a/"):
            assert after["/b" + path[2:]] == rec
    assert ov.root.lookup("b").stat().ino == ino_a
    assert ov.root.lookup("a").stat().ino == ino_b
    # b was a lower *directory* in L2 (with b/a) and L3: the moved dir must not merge them.
    assert names(ov.root.lookup("b")) == ["a", "c", "d", "e"]
    assert ov.root.lookup("b").lookup("a").read(0, 9) == b"L1-aa"
    raises(E.ENOENT, ov.root.lookup("b").lookup, "b")
    ov.root.rename("a", ov.root, "b", RENAME_EXCHANGE)
    assert dump(ov.root) == before


def test_rename_exchange_two_merged_dirs(ov):
    before = dump(ov.root)
    resolve(ov.root, "a").rename("c", ov.root, "c", RENAME_EXCHANGE)
    after = dump(ov.root)
    assert after["/c/a"] == before["/a/c/a"] and after["/a/c/a"] == before["/c/a"]
    assert names(resolve(ov.root, "a/c")) == ["a"]
    assert names(ov.root.lookup("c")) == ["a", "b", "c"]
    assert resolve(ov.root, "c/b").read(0, 9) == b"L3-acb"  # not L2's hidden c/b
    raises(E.ENOENT, ov.root.lookup, "exchange-missing")
    raises(E.ENOENT, ov.root.rename, "b", ov.root, "nope", RENAME_EXCHANGE)


DEPTH = 1200  # deeper than Python's recursion limit


def deep_spec() -> tuple[list[tuple], list[tuple]]:
    top = [("d", "t", 0o750, 4), ("f", "t/x", b"top-x"), ("d", "t/s"), ("w", "t/s/gone"),
           ("f", "t/h1", b"linked"), ("h", "t/h2", "t/h1"), ("d", "dst"), ("f", "dst/q", b"q")]
    bottom = [("d", "t"), ("d", "t/s"), ("f", "t/s/gone", b"hidden"), ("f", "t/s/y", b"y")]
    path = "t/s"
    for i in range(DEPTH):
        path += f"/{i % 3}"
        top.append(("d", path))
        bottom.append(("d", path))  # merged at every level
        (bottom if i % 2 else top).append(("f", f"{path}/f{i}", f"{i}".encode()))
        if i % 100 == 0:  # lower-only subtrees along the way
            bottom += [("d", f"{path}/b{i}", 0o700, i), ("f", f"{path}/b{i}/in", b"in")]
    return top, bottom


def test_rename_deep_lower_directory(guard):
    top, bottom = deep_spec()
    l1, l2 = lower(top), lower(bottom)
    guard(l1, l2)
    ov = OverlayFS(MemFS(), [l1, l2])
    t = ov.root.lookup("t")
    held = resolve(ov.root, "t/s/0/1/2")
    old = dump(t)
    old_inos = inos(t)
    # The destination is a lower dir whose only entry we remove first.
    ov.root.lookup("dst").unlink("q")
    ov.root.rename("t", ov.root, "dst")
    assert ov.root.lookup("dst") is t
    assert dump(t) == old
    assert inos(t) == old_inos
    assert names(ov.root) == ["dst"]
    raises(E.ENOENT, ov.root.lookup, "t")
    assert is_opaque(upper_node(ov, "dst")) and is_whiteout(upper_node(ov, "t"))
    # the held descendant moved with it, and forgot its old lowers
    assert resolve(ov.root, "dst/s/0/1/2") is held and held.lowers == []
    assert held.upper is upper_node(ov, "dst/s/0/1/2")
    # lower hard links inside the subtree stay linked in the copy
    h1, h2 = resolve(ov.root, "dst/h1"), resolve(ov.root, "dst/h2")
    assert h1.upper is h2.upper and h1.stat().nlink == 2
    h1.write(0, b"LINKED")
    assert h2.read(0, 10) == b"LINKED"


def test_rename_dir_onto_lower_dir_spot_is_opaque(ov):
    # a fresh upper-only dir moved where L2/L3 have "b": must not merge with them
    new = ov.root.mkdir("n", 0o755, 0, 0)
    ov.root.unlink("b")
    ov.root.rename("n", ov.root, "b")
    assert names(ov.root.lookup("b")) == []
    assert new.lowers == []


# --- identity, inode numbers, hard links --------------------------------------


def test_inos_are_unique_and_stable(ov):
    before = inos(ov.root)
    assert len(set(before.values())) == len(before)
    for path in ("a/a", "a/c/b", "a/c/c/a", "a/d", "b", "c/a", "d", "e"):
        resolve(ov.root, path).setattr(SetAttr(atime_ns=1))
    resolve(ov.root, "a/c/c").setattr(SetAttr(mode=0o700))
    assert inos(ov.root) == before


def test_open_reader_follows_copy_up_by_a_moved_writer(ov):
    reader = resolve(ov.root, "a/c/b")
    assert reader.read(0, 3) == b"L3-"
    ov.root.rename("a", ov.root, "z")  # deep copy-up of a merged dir
    resolve(ov.root, "z/c/b").write(0, b"NEW")
    assert reader.read(0, 6) == b"NEWacb"
    assert resolve(ov.root, "z/c/b") is reader


def test_unlinked_open_lower_file_can_still_be_written(ov):
    node = resolve(ov.root, "a/a")
    ino = node.stat().ino
    resolve(ov.root, "a").unlink("a")
    assert node.stat().nlink == 0
    node.write(0, b"orphan")
    assert node.read(0, 10) == b"orphan" and node.stat().ino == ino
    assert names(ov.upper.root) == ["a"]  # no scratch names left behind
    raises(E.ENOENT, resolve(ov.root, "a").link, "back", node)


def test_lower_hard_links_break_on_copy_up(guard):
    lo = lower([("f", "x", b"shared"), ("h", "y", "x")])
    guard(lo)
    ov = OverlayFS(MemFS(), [lo])
    x, y = ov.root.lookup("x"), ov.root.lookup("y")
    assert x.stat().ino == y.stat().ino and x.stat().nlink == 2
    x.write(0, b"SHARED")
    # documented (Linux without index=on): y still shows the lower file
    assert y.read(0, 6) == b"shared" and x.read(0, 6) == b"SHARED"
    assert x.stat().ino == y.stat().ino


def test_upper_hard_links(ov):
    a = resolve(ov.root, "a/a")
    ov.root.link("h", a)
    h = ov.root.lookup("h")
    assert h.stat().ino == a.stat().ino and h.stat().nlink == a.stat().nlink == 2
    h.write(0, b"via-h")
    assert a.read(0, 5) == b"via-h"
    resolve(ov.root, "a").unlink("a")
    assert h.stat().nlink == 1 and h.read(0, 5) == b"via-h"
    raises(E.EEXIST, ov.root.link, "b", h)


def test_dir_nlink_counts_merged_subdirs(ov):
    a = resolve(ov.root, "a")
    assert a.stat().nlink == 4
    a.mkdir("n", 0o755, 0, 0)
    assert a.stat().nlink == 5
    resolve(ov.root, "a/c").rename("c", a, "m")
    assert a.stat().nlink == 6 and resolve(ov.root, "a/c").stat().nlink == 2


def test_concurrent_copy_ups_of_one_lower_file(guard):
    lo = lower([("d", "d"), ("f", "d/f", bytes(64))])
    guard(lo)
    ov = OverlayFS(MemFS(), [lo])
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        try:
            node = resolve(ov.root, "d/f")
            start.wait()
            for _ in range(50):
                node.write(i * 8, bytes([i + 1]) * 8)
                node.setattr(SetAttr(atime_ns=i))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, inside copy-up too
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
    finally:
        sys.setswitchinterval(interval)
    assert not errors
    assert resolve(ov.root, "d/f").read(0, 64) == b"".join(bytes([i + 1]) * 8 for i in range(8))
    assert names(ov.upper.root) == ["d"] and names(upper_node(ov, "d")) == ["f"]


# --- filesystem level -----------------------------------------------------------


def test_statfs_and_name(ov):
    assert ov.statfs().fstype == OVERLAYFS_MAGIC and OverlayFS.name == "overlay"
    assert ov.statfs().flags & 1 == 0


def test_readonly_overlays(guard):
    lowers = three_lowers()
    guard(*lowers)
    ro = OverlayFS(None, lowers)
    assert ro.statfs().flags & 1 and project(dump(ro.root)) == EXPECTED
    raises(E.EROFS, ro.root.create, "x", 0o644, 0, 0)
    raises(E.EROFS, resolve(ro.root, "a/a").write, 0, b"x")
    raises(E.EROFS, resolve(ro.root, "a/a").setattr, SetAttr(mode=0))
    raises(E.EROFS, ro.root.unlink, "b")
    upper = MemFS(readonly=True)
    ro2 = OverlayFS(upper, lowers)
    raises(E.EROFS, ro2.root.rename, "b", ro2.root, "c")


def test_layers_of_other_kinds_are_refused(ov):
    other = MemFS()
    raises(E.EXDEV, ov.root.rename, "b", other.root, "b")
    raises(E.EXDEV, ov.root.link, "x", other.root.create("f", 0o644, 0, 0))


def test_upper_alone_carries_the_state(ov):
    """Remounting over the same upper, or stacking it as a lower under a fresh
    upper, shows the same tree: whiteouts and opaque dirs live in the upper."""
    a = resolve(ov.root, "a")
    a.unlink("a")
    c = resolve(ov.root, "a/c")
    for n in ("a", "b"):
        c.unlink(n)
    resolve(ov.root, "a/c/c").unlink("a")
    c.rmdir("c")
    a.rmdir("c")
    a.mkdir("c", 0o700, 0, 0).create("fresh", 0o600, 0, 0).write(0, b"f")
    ov.root.rename("b", a, "moved")
    ov.root.rename("c", ov.root, "cc")
    resolve(ov.root, "cc/a").write(0, b"changed")
    want = dump(ov.root)
    assert dump(OverlayFS(ov.upper, ov.lowers).root) == want
    ov.upper.readonly = True
    stacked = OverlayFS(MemFS(), [ov.upper, *ov.lowers])
    assert dump(stacked.root) == want
    # and the upper's raw content really does hold the marks
    assert is_opaque(resolve(ov.upper.root, "a/c"))
    assert is_whiteout(resolve(ov.upper.root, "a/a"))


def test_prepopulated_upper(guard):
    lowers = three_lowers()
    guard(*lowers)
    upper = build(MemFS(), [("d", "a"), ("f", "a/up", b"u"), ("w", "b"), ("d", "c"),
                            ("o", "c")])
    ov = OverlayFS(upper, lowers)
    assert names(ov.root) == ["a", "c", "d", "e"]
    assert names(ov.root.lookup("a")) == ["a", "c", "d", "e", "up"]
    assert names(ov.root.lookup("c")) == []
    assert errno_of(lambda: ov.root.rmdir("c")) is None
