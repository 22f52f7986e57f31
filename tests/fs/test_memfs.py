"""memfs at the raw Inode level: data, links, rename, and the times tmpfs keeps.

Times are checked by first setting every time to an old, known value and then
seeing which ones an operation moved, so the tests do not depend on the clock's
resolution.
"""

from __future__ import annotations

import os
import threading

import pytest

from cove.abi.errno import E, Errno, errno_name
from cove.fs.memfs import MemDir, MemFile, MemFS, MemInode
from cove.fs.node import (
    DT_DIR,
    DT_FIFO,
    DT_LNK,
    DT_REG,
    RENAME_EXCHANGE,
    RENAME_NOREPLACE,
    S_IFCHR,
    S_IFDIR,
    S_IFIFO,
    S_IFLNK,
    S_IFMT,
    S_IFREG,
    TMPFS_MAGIC,
    SetAttr,
    makedev,
)

pytestmark = pytest.mark.timeout(60)

OLD = 1_000_000_000  # 1970-01-01T00:00:01


def err(code: int, fn, *args) -> None:
    with pytest.raises(Errno) as info:
        fn(*args)
    assert info.value.errno == code, f"expected {errno_name(code)}, got {info.value.name}"


def age(*nodes: MemInode) -> None:
    """Set all three times of ``nodes`` to OLD."""
    for n in nodes:
        n.atime_ns = n.mtime_ns = n.ctime_ns = OLD


def moved(n: MemInode) -> str:
    """Which of a, m, c changed since ``age``: e.g. "mc"."""
    return "".join(k for k, t in (("a", n.atime_ns), ("m", n.mtime_ns), ("c", n.ctime_ns))
                   if t != OLD)


@pytest.fixture
def fs() -> MemFS:
    return MemFS()


@pytest.fixture
def root(fs: MemFS) -> MemDir:
    return fs.root


class TestFiles:
    def test_sparse_growth_by_write(self, root):
        f = root.create("f", 0o644, 0, 0)
        assert f.write(10_000, b"tail") == 4
        st = f.stat()
        assert st.size == 10_004
        assert f.read(0, 20_000) == bytes(10_000) + b"tail"
        assert f.read(9_998, 4) == b"\0\0ta"
        assert f.read(10_004, 10) == b""  # at EOF
        assert f.read(50_000, 10) == b""  # past EOF
        assert st.blocks == (10_004 + 511) // 512

    def test_sparse_growth_by_truncate(self, root):
        f = root.create("f", 0o644, 0, 0)
        f.write(0, b"abcdef")
        f.setattr(SetAttr(size=3))
        assert f.read(0, 100) == b"abc"
        f.setattr(SetAttr(size=8))
        assert f.read(0, 100) == b"abc" + bytes(5)
        f.write(4, b"Z")  # overwrite inside the hole
        assert f.read(0, 100) == b"abc\0Z\0\0\0"
        f.setattr(SetAttr(size=0))
        assert f.stat().size == 0 and f.read(0, 10) == b""

    def test_zero_length_write_changes_nothing(self, root):
        f = root.create("f", 0o644, 0, 0)
        age(f)
        assert f.write(1_000, b"") == 0
        assert f.stat().size == 0
        assert moved(f) == ""

    def test_symlink_and_nodes(self, root):
        name = os.fsdecode(b"t\xff\xc3\xa9")  # surrogateescaped byte and a 2-byte char
        s = root.symlink("s", name, 5, 6)
        st = s.stat()
        assert st.mode == S_IFLNK | 0o777 and st.size == 4 and (st.uid, st.gid) == (5, 6)
        assert s.readlink() == name
        err(E.EINVAL, s.read, 0, 1)
        p = root.mknod("p", S_IFIFO | 0o600, 0, 0, 0)
        c = root.mknod("c", S_IFCHR | 0o666, makedev(1, 3), 0, 0)
        assert p.stat().mode == S_IFIFO | 0o600
        assert c.stat().rdev == makedev(1, 3) and c.stat().mode & S_IFMT == S_IFCHR
        kinds = {d.name: d.dtype for d in root.readdir()}
        assert kinds == {"s": DT_LNK, "p": DT_FIFO, "c": 2}

    def test_metadata(self, fs, root):
        f = root.create("f", 0o4755, 7, 8)
        st = f.stat()
        assert st.mode == S_IFREG | 0o4755 and (st.uid, st.gid) == (7, 8)
        assert st.dev == fs.dev and st.nlink == 1
        f.setattr(SetAttr(mode=0o100600 | 0o1000))  # type bits in the request are ignored
        assert f.stat().mode == S_IFREG | 0o1600
        f.setattr(SetAttr(uid=1, gid=2))
        assert (f.stat().uid, f.stat().gid) == (1, 2)
        assert MemFS().dev != fs.dev
        inos = {root.ino, f.ino, root.mkdir("d", 0o755, 0, 0).ino, root.symlink("l", "x", 0, 0).ino}
        assert len(inos) == 4
        assert fs.statfs().fstype == TMPFS_MAGIC


class TestLinks:
    def test_directory_nlink(self, root):
        assert root.stat().nlink == 2
        a = root.mkdir("a", 0o755, 0, 0)
        root.mkdir("b", 0o755, 0, 0)
        assert root.stat().nlink == 4 and a.stat().nlink == 2
        a.mkdir("x", 0o755, 0, 0)
        a.create("f", 0o644, 0, 0)  # files do not count
        assert a.stat().nlink == 3
        a.rmdir("x")
        assert a.stat().nlink == 2
        root.rmdir("b")
        assert root.stat().nlink == 3
        assert root.parent() is root  # the root is its own parent
        assert a.parent() is root

    def test_removed_directory(self, root):
        d = root.mkdir("d", 0o755, 0, 0)
        root.rmdir("d")
        assert d.stat().nlink == 0
        err(E.ENOENT, root.lookup, "d")

    def test_hard_links(self, fs, root):
        f = root.create("f", 0o644, 0, 0)
        d = root.mkdir("d", 0o755, 0, 0)
        d.link("g", f)
        assert f.stat().nlink == 2 and d.lookup("g") is f
        f.write(0, b"shared")
        assert d.lookup("g").read(0, 10) == b"shared"
        root.unlink("f")
        assert f.stat().nlink == 1 and d.lookup("g").read(0, 10) == b"shared"
        d.unlink("g")
        assert f.stat().nlink == 0
        assert f.read(0, 10) == b"shared"  # an open file keeps its data
        err(E.EPERM, root.link, "dl", d)
        err(E.EXDEV, root.link, "x", MemFS().root.create("o", 0o644, 0, 0))
        err(E.EEXIST, root.link, "d", root.create("h", 0o644, 0, 0))

    def test_errors(self, fs, root):
        root.create("f", 0o644, 0, 0)
        d = root.mkdir("d", 0o755, 0, 0)
        d.create("x", 0o644, 0, 0)
        err(E.ENOENT, root.lookup, "nope")
        err(E.ENOENT, root.unlink, "nope")
        err(E.ENOENT, root.rmdir, "nope")
        for make in (lambda: root.create("f", 0o644, 0, 0), lambda: root.mkdir("f", 0o755, 0, 0),
                     lambda: root.symlink("d", "t", 0, 0),
                     lambda: root.mknod("f", S_IFIFO | 0o644, 0, 0, 0)):
            err(E.EEXIST, make)
        err(E.ENOTEMPTY, root.rmdir, "d")
        err(E.ENOTDIR, root.rmdir, "f")
        err(E.EISDIR, root.unlink, "d")
        err(E.ENOTDIR, root.lookup("f").lookup, "x")
        err(E.ENOTDIR, root.lookup("f").create, "x", 0o644, 0, 0)

    def test_readonly(self, root, fs):
        f = root.create("f", 0o644, 0, 0)
        d = root.mkdir("d", 0o755, 0, 0)
        fs.readonly = True
        for op in (lambda: root.create("g", 0o644, 0, 0), lambda: root.mkdir("e", 0o755, 0, 0),
                   lambda: root.symlink("s", "t", 0, 0), lambda: root.link("h", f),
                   lambda: root.unlink("f"), lambda: root.rmdir("d"),
                   lambda: root.rename("f", d, "f"), lambda: f.write(0, b"x"),
                   lambda: f.setattr(SetAttr(mode=0o600)),
                   lambda: root.mknod("n", S_IFIFO | 0o644, 0, 0, 0)):
            err(E.EROFS, op)
        assert f.stat().mode == S_IFREG | 0o644


class TestRename:
    def test_plain_and_over_a_file(self, root):
        a = root.create("a", 0o644, 0, 0)
        b = root.create("b", 0o644, 0, 0)
        d = root.mkdir("d", 0o755, 0, 0)
        root.rename("a", d, "a2")
        assert d.lookup("a2") is a
        err(E.ENOENT, root.lookup, "a")
        d.rename("a2", root, "b")  # replaces b
        assert root.lookup("b") is a and b.stat().nlink == 0
        err(E.ENOENT, root.rename, "nope", d, "x")

    def test_directories_and_nlink(self, root):
        src = root.mkdir("src", 0o755, 0, 0)
        dst = root.mkdir("dst", 0o755, 0, 0)
        sub = src.mkdir("sub", 0o755, 0, 0)
        assert (src.stat().nlink, dst.stat().nlink) == (3, 2)
        src.rename("sub", dst, "sub")
        assert (src.stat().nlink, dst.stat().nlink) == (2, 3)
        assert sub.parent() is dst
        empty = src.mkdir("empty", 0o755, 0, 0)
        dst.rename("sub", src, "empty")  # over an empty directory
        assert empty.stat().nlink == 0 and src.lookup("empty") is sub
        assert (src.stat().nlink, dst.stat().nlink) == (3, 2)
        full = root.mkdir("full", 0o755, 0, 0)
        full.create("x", 0o644, 0, 0)
        err(E.ENOTEMPTY, root.rename, "src", root, "full")

    def test_noreplace(self, root):
        a = root.create("a", 0o644, 0, 0)
        b = root.create("b", 0o644, 0, 0)
        err(E.EEXIST, root.rename, "a", root, "b", RENAME_NOREPLACE)
        assert root.lookup("a") is a and root.lookup("b") is b
        root.rename("a", root, "c", RENAME_NOREPLACE)
        assert root.lookup("c") is a

    def test_exchange(self, root):
        a = root.create("a", 0o644, 0, 0)
        b = root.create("b", 0o644, 0, 0)
        root.rename("a", root, "b", RENAME_EXCHANGE)
        assert root.lookup("a") is b and root.lookup("b") is a
        assert a.stat().nlink == b.stat().nlink == 1
        err(E.ENOENT, root.rename, "a", root, "missing", RENAME_EXCHANGE)

    def test_exchange_file_and_directory_across_directories(self, root):
        left = root.mkdir("left", 0o755, 0, 0)
        right = root.mkdir("right", 0o755, 0, 0)
        d = left.mkdir("d", 0o755, 0, 0)
        d.create("inside", 0o644, 0, 0)
        f = right.create("f", 0o644, 0, 0)
        assert (left.stat().nlink, right.stat().nlink) == (3, 2)
        left.rename("d", right, "f", RENAME_EXCHANGE)
        assert left.lookup("d") is f and right.lookup("f") is d
        assert d.parent() is right
        assert (left.stat().nlink, right.stat().nlink) == (2, 3)
        # and two directories: parents swap, counts stay
        e = left.mkdir("e", 0o755, 0, 0)
        right.rename("f", left, "e", RENAME_EXCHANGE)
        assert d.parent() is left and e.parent() is right
        assert (left.stat().nlink, right.stat().nlink) == (3, 3)

    def test_same_inode_is_a_no_op(self, root):
        f = root.create("f", 0o644, 0, 0)
        root.link("g", f)
        root.rename("f", root, "g")
        assert root.lookup("f") is f and root.lookup("g") is f and f.stat().nlink == 2

    def test_other_filesystem(self, root):
        root.create("f", 0o644, 0, 0)
        err(E.EXDEV, root.rename, "f", MemFS().root, "f")


class TestTimes:
    """Which of atime, mtime, ctime each operation moves (as tmpfs)."""

    def test_new_inodes_have_equal_current_times(self, root):
        f = root.create("f", 0o644, 0, 0)
        st = f.stat()
        assert st.atime_ns == st.mtime_ns == st.ctime_ns > OLD

    def test_file_operations(self, root):
        f = root.create("f", 0o644, 0, 0)
        age(f)
        f.read(0, 10)
        assert moved(f) == ""  # atime is the VFS's business (relatime), not the fs's
        f.write(0, b"data")
        assert moved(f) == "mc"
        age(f)
        f.setattr(SetAttr(mode=0o600))
        assert moved(f) == "c"
        age(f)
        f.setattr(SetAttr(size=100, mtime_ns=5))
        assert f.mtime_ns == 5 and f.ctime_ns != OLD and f.atime_ns == OLD
        f.setattr(SetAttr(atime_ns=11, mtime_ns=12, ctime_ns=13))
        assert (f.atime_ns, f.mtime_ns, f.ctime_ns) == (11, 12, 13)

    def test_directory_operations(self, root):
        d = root.mkdir("d", 0o755, 0, 0)
        f = d.create("f", 0o644, 0, 0)
        for op in (lambda: d.create("g", 0o644, 0, 0), lambda: d.mkdir("s", 0o755, 0, 0),
                   lambda: d.symlink("l", "t", 0, 0),
                   lambda: d.mknod("p", S_IFIFO | 0o644, 0, 0, 0),
                   lambda: d.unlink("g"), lambda: d.rmdir("s")):
            age(d, root)
            op()
            assert moved(d) == "mc" and moved(root) == ""
        age(d, f)
        d.link("h", f)
        assert moved(d) == "mc" and moved(f) == "c"
        age(d, f)
        d.unlink("h")
        assert moved(d) == "mc" and moved(f) == "c"
        age(d)
        d.lookup("f")
        list(d.readdir())
        assert moved(d) == ""

    def test_rename(self, root):
        a = root.mkdir("a", 0o755, 0, 0)
        b = root.mkdir("b", 0o755, 0, 0)
        f = a.create("f", 0o644, 0, 0)
        victim = b.create("f", 0o644, 0, 0)
        age(a, b, f, victim, root)
        a.rename("f", b, "f")
        assert (moved(a), moved(b), moved(f), moved(victim), moved(root)) == (
            "mc", "mc", "c", "c", "")


class TestConcurrency:
    def test_parallel_creates_and_renames_keep_counts(self, root):
        d = root.mkdir("d", 0o755, 0, 0)

        def work(k: int) -> None:
            for i in range(200):
                name = f"{k}-{i}"
                d.mkdir(name, 0o755, 0, 0)
                d.rename(name, root, name)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert d.stat().nlink == 2
        assert root.stat().nlink == 2 + 1 + 800
        assert sum(1 for e in root.readdir() if e.dtype == DT_DIR) == 801
        assert all(isinstance(root.lookup(f"{k}-{i}"), MemDir) for k in range(4) for i in (0, 199))
        assert {e.dtype for e in d.readdir()} <= {DT_REG}


def test_file_node_types() -> None:
    fs = MemFS(root_mode=0o700, uid=5, gid=6)
    st = fs.root.stat()
    assert st.mode == S_IFDIR | 0o700 and (st.uid, st.gid) == (5, 6)
    assert isinstance(fs.root.create("f", 0o644, 0, 0), MemFile)
