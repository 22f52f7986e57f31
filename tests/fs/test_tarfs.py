"""tarfs: a read-only filesystem over a tar archive, built from tars made here."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from cove.abi.errno import E, Errno
from cove.fs.node import (
    S_IFBLK,
    S_IFCHR,
    S_IFDIR,
    S_IFIFO,
    S_IFLNK,
    S_IFMT,
    S_IFREG,
    SQUASHFS_MAGIC,
    Inode,
    SetAttr,
    major,
    minor,
)
from cove.fs.tarfs import ArchiveError, TarFS

MTIME = 1_700_000_000


# --- building archives ------------------------------------------------------------
def info(name: str, kind: bytes = tarfile.REGTYPE, *, mode: int = 0o644, uid: int = 0,
         gid: int = 0, mtime: int = MTIME, linkname: str = "", size: int = 0,
         pax: dict[str, str] | None = None) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode, ti.uid, ti.gid, ti.mtime, ti.linkname, ti.size = mode, uid, gid, mtime, linkname, size
    if pax:
        ti.pax_headers = dict(pax)
    return ti


def reg(name: str, data: bytes = b"", **kw: object) -> tuple[tarfile.TarInfo, bytes]:
    return info(name, size=len(data), **kw), data  # type: ignore[arg-type]


def dir_(name: str, **kw: object) -> tuple[tarfile.TarInfo, None]:
    kw.setdefault("mode", 0o755)
    return info(name, tarfile.DIRTYPE, **kw), None  # type: ignore[arg-type]


def sym(name: str, target: str) -> tuple[tarfile.TarInfo, None]:
    return info(name, tarfile.SYMTYPE, linkname=target, mode=0o777), None


def hard(name: str, target: str) -> tuple[tarfile.TarInfo, None]:
    return info(name, tarfile.LNKTYPE, linkname=target), None


def dev(name: str, kind: bytes, maj: int, mnr: int) -> tuple[tarfile.TarInfo, None]:
    ti = info(name, kind, mode=0o660)
    ti.devmajor, ti.devminor = maj, mnr
    return ti, None


Entry = tuple[tarfile.TarInfo, "bytes | None"]


def make_tar(path: Path, entries: list[Entry], fmt: int = tarfile.PAX_FORMAT,
             mode: str = "w") -> Path:
    with tarfile.open(path, mode, format=fmt) as tf:
        for ti, data in entries:
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return path


def tar_bytes(entries: list[Entry], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for ti, data in entries:
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def walk(node: Inode, path: str = "") -> dict[str, Inode]:
    """Every path in the tree (without following symlinks) to its inode."""
    out = {path or "/": node}
    if node.stat().is_dir():
        for e in node.readdir():
            child = node.lookup(e.name)
            assert child.ino == e.ino
            out.update(walk(child, f"{path}/{e.name}"))
    return out


def get(fs: TarFS, path: str) -> Inode:
    node: Inode = fs.root
    for part in path.strip("/").split("/"):
        if part:
            node = node.lookup(part)
    return node


def errno_of(fn: Callable[[], object]) -> int:
    with pytest.raises(Errno) as ei:
        fn()
    return ei.value.errno


# --- contents, metadata -------------------------------------------------------------
def test_regular_files_dirs_and_metadata(tmp_path: Path) -> None:
    tar = make_tar(tmp_path / "a.tar", [
        dir_("etc", mode=0o750, uid=5, gid=6, mtime=MTIME + 1),
        reg("etc/hostname", b"cove\n", mode=0o640, uid=1000, gid=100, mtime=MTIME + 2),
        reg("etc/empty", b""),
        reg("bin/sh", b"\x7fELF" + bytes(5000), mode=0o4755),
    ])
    fs = TarFS(tar)
    etc = get(fs, "etc")
    st = etc.stat()
    assert st.mode == S_IFDIR | 0o750 and (st.uid, st.gid) == (5, 6)
    assert st.mtime_ns == (MTIME + 1) * 10**9
    assert [e.name for e in etc.readdir()] == ["hostname", "empty"]
    f = get(fs, "etc/hostname")
    st = f.stat()
    assert st.mode == S_IFREG | 0o640 and (st.uid, st.gid, st.size) == (1000, 100, 5)
    assert st.mtime_ns == st.atime_ns == st.ctime_ns == (MTIME + 2) * 10**9
    assert st.nlink == 1 and st.blocks == 8 and st.dev == fs.dev
    assert f.read(0, 100) == b"cove\n"
    assert f.read(2, 2) == b"ve"
    assert f.read(5, 10) == b"" and f.read(1000, 1) == b""
    assert get(fs, "etc/empty").read(0, 10) == b""
    assert get(fs, "etc/empty").stat().blocks == 0
    sh = get(fs, "bin/sh")
    assert sh.stat().mode == S_IFREG | 0o4755
    assert sh.stat().blocks == 16  # 5004 bytes: two 4 KiB blocks
    assert sh.read(0, 4) == b"\x7fELF" and sh.read(4000, 5000) == bytes(1004)
    # Directory link counts: root has etc and bin.
    assert fs.root.stat().nlink == 4 and etc.stat().nlink == 2
    assert fs.root.parent() is fs.root and etc.parent() is fs.root


def test_errors_of_read_ops(tmp_path: Path) -> None:
    fs = TarFS(make_tar(tmp_path / "a.tar", [reg("f", b"x"), sym("l", "f"), dir_("d")]))
    assert errno_of(lambda: fs.root.lookup("nope")) == E.ENOENT
    assert errno_of(lambda: get(fs, "f").lookup("x")) == E.ENOTDIR
    assert errno_of(lambda: get(fs, "f").readdir()) == E.ENOTDIR
    assert errno_of(lambda: get(fs, "f").parent()) == E.ENOTDIR
    assert errno_of(lambda: get(fs, "f").readlink()) == E.EINVAL
    assert errno_of(lambda: get(fs, "d").read(0, 1)) == E.EISDIR
    assert errno_of(lambda: get(fs, "l").read(0, 1)) == E.EINVAL
    assert errno_of(lambda: get(fs, "f").read(-1, 1)) == E.EINVAL


def test_every_change_is_erofs(tmp_path: Path) -> None:
    fs = TarFS(make_tar(tmp_path / "a.tar", [
        dir_("d"), reg("d/f", b"data"), sym("l", "d"), dev("null", tarfile.CHRTYPE, 1, 3),
        (info("fifo", tarfile.FIFOTYPE), None),
    ]))
    assert fs.readonly
    nodes = [fs.root, get(fs, "d"), get(fs, "d/f"), get(fs, "l"), get(fs, "null"),
             get(fs, "fifo")]
    f = get(fs, "d/f")
    changes: list[Callable[[Inode], object]] = [
        lambda n: n.setattr(SetAttr(mode=0o777)),
        lambda n: n.setattr(SetAttr(size=0)),
        lambda n: n.create("new", 0o644, 0, 0),
        lambda n: n.mkdir("new", 0o755, 0, 0),
        lambda n: n.mknod("new", S_IFIFO | 0o644, 0, 0, 0),
        lambda n: n.symlink("new", "x", 0, 0),
        lambda n: n.link("new", f),
        lambda n: n.unlink("f"),
        lambda n: n.rmdir("d"),
        lambda n: n.rename("f", fs.root, "g"),
        lambda n: n.write(0, b"x"),
    ]
    for node in nodes:
        for change in changes:
            assert errno_of(lambda c=change, n=node: c(n)) == E.EROFS
    assert f.read(0, 10) == b"data"
    assert [e.name for e in get(fs, "d").readdir()] == ["f"]


def test_statfs(tmp_path: Path) -> None:
    fs = TarFS(make_tar(tmp_path / "a.tar", [reg("a", bytes(10000)), reg("b", b"x"),
                                              hard("c", "a")]))
    sf = fs.statfs()
    assert sf.fstype == SQUASHFS_MAGIC and sf.flags & 1  # ST_RDONLY
    assert sf.files == 3  # root, a (= c), b
    assert sf.blocks == 3 + 1
    assert fs.name == "tarfs"


# --- names ------------------------------------------------------------------------
def test_name_normalization_and_dotdot(tmp_path: Path, caplog: pytest.LogCaptureFixture
                                       ) -> None:
    fs = TarFS(make_tar(tmp_path / "a.tar", [
        reg("./dot/file", b"1"),
        reg("/abs/file", b"2"),
        reg("//many///slashes//f", b"3"),
        reg("../escape", b"evil"),
        reg("ok/../../escape2", b"evil"),
        reg("a/./b/../c", b"evil"),
        dir_("./", mode=0o700, uid=3),
    ]))
    assert fs.root.stat().perm == 0o700 and fs.root.stat().uid == 3
    assert get(fs, "dot/file").read(0, 9) == b"1"
    assert get(fs, "abs/file").read(0, 9) == b"2"
    assert get(fs, "many/slashes/f").read(0, 9) == b"3"
    skipped = {s.name for s in fs.skipped}
    assert skipped == {"../escape", "ok/../../escape2", "a/./b/../c"}
    assert "escape" not in [e.name for e in fs.root.readdir()]
    assert "ok" not in [e.name for e in fs.root.readdir()]  # no implied dirs for skipped
    assert "'..' in member name" in caplog.text
    names = set(walk(fs.root))
    assert not any(".." in n.split("/") for n in names)


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_long_names(tmp_path: Path, fmt: int) -> None:
    deep = "/".join(f"component-{i:03d}-" + "x" * 40 for i in range(8))  # ~440 chars
    assert len(deep) > 255
    long_file = "f" * 200
    long_target = "/".join(["t" * 50] * 4)
    fs = TarFS(make_tar(tmp_path / "a.tar", [
        reg(f"{deep}/{long_file}", b"deep data"),
        sym(f"{deep}/link", long_target),
        hard(f"{deep}/hl", f"{deep}/{long_file}"),
    ], fmt=fmt))
    f = get(fs, f"{deep}/{long_file}")
    assert f.read(0, 100) == b"deep data"
    assert get(fs, f"{deep}/link").readlink() == long_target
    assert get(fs, f"{deep}/link").stat().size == len(long_target)
    assert get(fs, f"{deep}/hl") is f and f.stat().nlink == 2
    assert not fs.skipped


def test_ustar_prefix_names(tmp_path: Path) -> None:
    name = "p" * 120 + "/" + "n" * 90  # needs the ustar prefix field, no extensions
    fs = TarFS(make_tar(tmp_path / "a.tar", [reg(name, b"u")], fmt=tarfile.USTAR_FORMAT))
    assert get(fs, name).read(0, 1) == b"u"


def test_non_ascii_and_undecodable_names(tmp_path: Path) -> None:
    raw = os.fsdecode(b"caf\xc3\xa9-\xff")  # valid UTF-8 then a stray byte
    fs = TarFS(make_tar(tmp_path / "a.tar", [reg(raw, b"x")], fmt=tarfile.GNU_FORMAT))
    [entry] = fs.root.readdir()
    assert os.fsencode(entry.name) == b"caf\xc3\xa9-\xff"
    assert fs.root.lookup(raw).read(0, 1) == b"x"


# --- links and special files ---------------------------------------------------------
def test_symlinks_stored_verbatim(tmp_path: Path) -> None:
    targets = {"rel": "../lib/x", "abs": "/etc/passwd", "up": "../../../../etc/shadow",
               "dot": ".", "trail": "dir/"}
    fs = TarFS(make_tar(tmp_path / "a.tar", [sym(k, v) for k, v in targets.items()]))
    for name, target in targets.items():
        node = fs.root.lookup(name)
        st = node.stat()
        assert st.mode == S_IFLNK | 0o777 and st.size == len(target) and st.blocks == 0
        assert node.readlink() == target


def test_hard_links_share_inode(tmp_path: Path) -> None:
    fs = TarFS(make_tar(tmp_path / "a.tar", [
        reg("a/orig", b"shared", mode=0o600),
        hard("b/link1", "a/orig"),
        hard("link2", "./a/orig"),
        hard("link3", "/a/orig"),  # absolute link names are archive-relative too
        sym("s", "a/orig"),
        hard("s2", "s"),  # a hard link to a symlink links the symlink itself
    ]))
    orig = get(fs, "a/orig")
    for p in ("b/link1", "link2", "link3"):
        assert get(fs, p) is orig
    assert orig.stat().nlink == 4 and orig.read(0, 10) == b"shared"
    assert get(fs, "s2") is get(fs, "s") and get(fs, "s").stat().nlink == 2
    assert not fs.skipped


def test_hard_links_never_reach_the_host(tmp_path: Path) -> None:
    host_secret = tmp_path / "secret"
    host_secret.write_bytes(b"HOST SECRET")
    fs = TarFS(make_tar(tmp_path / "a.tar", [
        dir_("d"),
        hard("missing", "not/in/archive"),
        hard("up", "../../etc/passwd"),
        hard("etc_passwd", "/etc/passwd"),
        hard("host", str(host_secret)),
        hard("host_rel", "../secret"),
        hard("to_dir", "d"),
        hard("later", "defined_after"),
        reg("defined_after", b"x"),
    ]))
    names = {e.name for e in fs.root.readdir()}
    assert names == {"d", "defined_after"}
    assert {s.name for s in fs.skipped} == {
        "missing", "up", "etc_passwd", "host", "host_rel", "to_dir", "later"}
    for node in walk(fs.root).values():
        if node.stat().is_reg():
            assert b"HOST SECRET" not in node.read(0, 1 << 20)
    assert get(fs, "defined_after").stat().nlink == 1


def test_devices_and_fifos(tmp_path: Path) -> None:
    fs = TarFS(make_tar(tmp_path / "a.tar", [
        dev("dev/null", tarfile.CHRTYPE, 1, 3),
        dev("dev/sda", tarfile.BLKTYPE, 8, 0),
        dev("dev/big", tarfile.CHRTYPE, 300, 70000),
        (info("run/fifo", tarfile.FIFOTYPE, mode=0o600), None),
    ]))
    null = get(fs, "dev/null").stat()
    assert null.mode == S_IFCHR | 0o660 and (major(null.rdev), minor(null.rdev)) == (1, 3)
    sda = get(fs, "dev/sda").stat()
    assert sda.type == S_IFBLK and (major(sda.rdev), minor(sda.rdev)) == (8, 0)
    big = get(fs, "dev/big").stat()
    assert (major(big.rdev), minor(big.rdev)) == (300, 70000)
    fifo = get(fs, "run/fifo").stat()
    assert fifo.mode == S_IFIFO | 0o600 and fifo.size == 0 and fifo.rdev == 0
    dtypes = {e.name: e.dtype for e in get(fs, "dev").readdir()}
    assert dtypes == {"null": 2, "sda": 6, "big": 2}


# --- duplicates, implied parents -------------------------------------------------------
def test_duplicate_members_last_wins(tmp_path: Path) -> None:
    fs = TarFS(make_tar(tmp_path / "a.tar", [
        reg("f", b"first"),
        reg("f", b"second", mode=0o600),
        reg("file_then_dir", b"x"),
        dir_("file_then_dir"),
        reg("file_then_dir/inner", b"in"),
        dir_("dir_then_file"),
        reg("dir_then_file/gone", b"g"),
        reg("keep_me", b"k"),
        hard("dir_then_file/hl", "keep_me"),
        reg("dir_then_file", b"now a file"),
        dir_("merge", mode=0o700),
        reg("merge/a", b"a"),
        dir_("merge", mode=0o711, uid=7),  # a directory over a directory keeps children
        sym("s", "one"),
        sym("s", "two"),
    ]))
    f = get(fs, "f")
    assert f.read(0, 100) == b"second" and f.stat().mode & 0o7777 == 0o600
    assert get(fs, "file_then_dir").stat().is_dir()
    assert get(fs, "file_then_dir/inner").read(0, 9) == b"in"
    d2f = get(fs, "dir_then_file")
    assert d2f.stat().is_reg() and d2f.read(0, 100) == b"now a file"
    assert get(fs, "keep_me").stat().nlink == 1  # its second name went with the directory
    merge = get(fs, "merge")
    assert merge.stat().perm == 0o711 and merge.stat().uid == 7
    assert get(fs, "merge/a").read(0, 1) == b"a"
    assert get(fs, "s").readlink() == "two"
    assert [e.name for e in fs.root.readdir()].count("f") == 1


def test_implied_parents_and_non_directory_parents(tmp_path: Path) -> None:
    fs = TarFS(make_tar(tmp_path / "a.tar", [
        reg("a/b/c/file", b"deep", mtime=MTIME + 5),
        reg("plain", b"p"),
        reg("plain/child", b"impossible"),
        sym("link", "a"),
        reg("link/through", b"not through a symlink"),
    ]))
    for p in ("a", "a/b", "a/b/c"):
        st = get(fs, p).stat()
        assert st.mode == S_IFDIR | 0o755 and (st.uid, st.gid) == (0, 0)
    assert get(fs, "a/b/c/file").read(0, 10) == b"deep"
    c = get(fs, "a/b/c")
    assert c.parent() is get(fs, "a/b") and get(fs, "a").parent() is fs.root
    assert get(fs, "plain").read(0, 10) == b"p"
    assert {s.name for s in fs.skipped} == {"plain/child", "link/through"}
    assert get(fs, "a").stat().nlink == 3


def test_pax_times_with_nanoseconds(tmp_path: Path) -> None:
    fs = TarFS(make_tar(tmp_path / "a.tar", [
        reg("ns", b"", pax={"mtime": "1700000000.123456789"}),
        reg("us", b"", pax={"mtime": "1700000000.5"}),
        reg("neg", b"", pax={"mtime": "-1.25"}),
        reg("old", b"", mtime=0),
        reg("big", b"", pax={"mtime": "99999999999"}),
    ]))
    assert get(fs, "ns").stat().mtime_ns == 1_700_000_000_123_456_789
    assert get(fs, "ns").stat().atime_ns == 1_700_000_000_123_456_789
    assert get(fs, "us").stat().mtime_ns == 1_700_000_000_500_000_000
    assert get(fs, "neg").stat().mtime_ns == -1_250_000_000
    assert get(fs, "old").stat().mtime_ns == 0
    assert get(fs, "big").stat().mtime_ns == 99_999_999_999 * 10**9


def test_stable_and_unique_inode_numbers(tmp_path: Path) -> None:
    tar = make_tar(tmp_path / "a.tar", [
        reg(f"d{i % 7}/f{i}", str(i).encode()) for i in range(100)
    ] + [hard("hl", "d3/f3")])
    a, b = walk(TarFS(tar).root), walk(TarFS(tar).root)
    assert {p: n.ino for p, n in a.items()} == {p: n.ino for p, n in b.items()}
    by_ino: dict[int, Inode] = {}
    for node in a.values():
        assert by_ino.setdefault(node.ino, node) is node
    assert a["/hl"].ino == a["/d3/f3"].ino
    assert len(by_ino) == len(a) - 1


# --- formats and inputs -------------------------------------------------------------
ENTRIES: list[Entry] = [dir_("d"), reg("d/f", b"hello " * 1000), sym("d/l", "f")]


@pytest.mark.parametrize("compress", [None, gzip.compress, bz2.compress, lzma.compress])
def test_compressed_archives_detected_by_magic(tmp_path: Path,
                                               compress: Callable[[bytes], bytes] | None) -> None:
    data = tar_bytes(ENTRIES)
    if compress is not None:
        data = compress(data)
    path = tmp_path / "misleading.tar.gz"  # the name says nothing reliable
    path.write_bytes(data)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    with TarFS(path, tmpdir=str(tmpdir)) as fs:
        assert get(fs, "d/f").read(0, 12000) == b"hello " * 1000
        assert get(fs, "d/l").readlink() == "f"
        assert list(tmpdir.iterdir()) == []  # the decompressed copy has no name


def test_concatenated_gzip_members(tmp_path: Path) -> None:
    data = tar_bytes(ENTRIES)
    path = tmp_path / "cat.tgz"
    path.write_bytes(gzip.compress(data[:5000]) + gzip.compress(data[5000:]))
    assert get(TarFS(path), "d/f").read(0, 6) == b"hello "


def test_file_objects(tmp_path: Path) -> None:
    data = tar_bytes(ENTRIES)
    # In memory (reads go through a lock around seek+read).
    assert get(TarFS(io.BytesIO(data)), "d/f").read(6, 5) == b"hello"
    # An open file positioned after some prefix: the archive starts there.
    p = tmp_path / "prefixed"
    p.write_bytes(b"JUNK" * 1000 + data)
    with open(p, "rb") as f:
        f.seek(4000)
        fs = TarFS(f)
        f.seek(0)  # our reads do not depend on the caller's position
        assert get(fs, "d/f").read(0, 5) == b"hello"
    # A pipe (not seekable) is spooled into an anonymous temporary file.
    r, w = os.pipe()
    threading.Thread(target=lambda: (os.write(w, gzip.compress(data)), os.close(w))).start()
    with os.fdopen(r, "rb") as pipe:
        assert get(TarFS(pipe), "d/f").read(0, 5) == b"hello"


def test_bad_archives(tmp_path: Path) -> None:
    good = tar_bytes([reg("big", os.urandom(100_000)), reg("after", b"x")])
    cases = {
        "garbage": b"this is not a tar archive at all" * 100,
        "truncated": good[:50_000],
        "bad_gzip": gzip.compress(good)[:1000],
        "bad_xz": b"\xfd7zXZ\x00" + b"\x00" * 100,
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ArchiveError):
            TarFS(tmp_path / name)
    # An empty file and an empty archive are empty trees.
    (tmp_path / "empty").write_bytes(b"")
    assert list(TarFS(tmp_path / "empty").root.readdir()) == []
    assert list(TarFS(io.BytesIO(tar_bytes([]))).root.readdir()) == []


def test_decompression_limit(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.tgz"
    with gzip.open(bomb, "wb") as g:
        g.write(tar_bytes([reg("zeros", bytes(20 << 20))]))
    assert bomb.stat().st_size < 100_000
    with pytest.raises(ArchiveError, match="limit"):
        TarFS(bomb, max_decompressed=1 << 20)
    assert get(TarFS(bomb), "zeros").stat().size == 20 << 20


def test_reads_after_close_or_truncation_are_eio(tmp_path: Path) -> None:
    path = make_tar(tmp_path / "a.tar", [reg("big", bytes(100_000)), reg("last", b"z" * 10)])
    fs = TarFS(path)
    os.truncate(path, 20_000)  # someone shrinks the archive under us
    assert errno_of(lambda: get(fs, "last").read(0, 10)) == E.EIO
    big = get(fs, "big")
    fs.close()
    assert errno_of(lambda: big.read(0, 10)) == E.EIO
    # The closed descriptor's number is reused by the next open: the node must
    # not read that unrelated host file.
    other = tmp_path / "other"
    other.write_bytes(b"UNRELATED" * 20_000)
    with open(other, "rb"):
        assert errno_of(lambda: big.read(0, 10)) == E.EIO


@pytest.mark.skipif(shutil.which("tar") is None, reason="needs GNU tar")
@pytest.mark.parametrize("fmt", ["posix", "gnu"])
def test_matches_the_tree_gnu_tar_archived(tmp_path: Path, fmt: str) -> None:
    """A tree archived by GNU tar reads back with the host's own lstat answers."""
    src = tmp_path / "src"
    (src / "a" / "b").mkdir(parents=True)
    (src / "empty").mkdir()
    (src / "a" / "file").write_bytes(os.urandom(12345))
    (src / "a" / "b" / ("long" * 40)).write_bytes(b"long name")
    os.link(src / "a" / "file", src / "hard")
    os.symlink("a/file", src / "rel")
    os.symlink("/nowhere/at/all", src / "dangling")
    os.mkfifo(src / "fifo", 0o640)
    (src / "suid").write_bytes(b"")
    os.chmod(src / "suid", 0o4751)
    if os.geteuid() == 0:
        os.chown(src / "a" / "file", 1234, 5678)
    for i, p in enumerate(sorted(src.rglob("*"), reverse=True)):
        os.utime(p, ns=(MTIME * 10**9 + i * 1001, MTIME * 10**9 + i * 123_456_789),
                 follow_symlinks=False)
    tar = tmp_path / "t.tar"
    subprocess.run(["tar", f"--format={fmt}", "-cf", str(tar), "-C", str(src), "."],
                   check=True)
    fs = TarFS(tar)
    tree = walk(fs.root)
    host = {"/" + p.relative_to(src).as_posix(): p for p in src.rglob("*")}
    assert set(tree) == set(host) | {"/"}
    for path, p in host.items():
        st, hst = tree[path].stat(), p.lstat()
        assert (st.mode, st.uid, st.gid, st.nlink) == (
            hst.st_mode, hst.st_uid, hst.st_gid, hst.st_nlink), path
        # posix (PAX) keeps nanoseconds; the old GNU format whole seconds.
        want = hst.st_mtime_ns if fmt == "posix" else hst.st_mtime_ns // 10**9 * 10**9
        assert st.mtime_ns == want, path
        if p.is_symlink():
            assert tree[path].readlink() == os.readlink(p) and st.size == hst.st_size
        elif p.is_file():
            assert tree[path].read(0, 1 << 20) == p.read_bytes() and st.size == hst.st_size
    assert tree["/hard"] is tree["/a/file"]


# --- sparse and large files ------------------------------------------------------------
@pytest.mark.skipif(shutil.which("tar") is None, reason="needs GNU tar")
@pytest.mark.parametrize("fmt", ["gnu", "posix"])
def test_gnu_tar_sparse_files(tmp_path: Path, fmt: str) -> None:
    src = tmp_path / "src"
    src.mkdir()
    size = 64 << 20
    chunks = {0: b"head", 1 << 20: b"A" * 10000, (40 << 20) + 3: os.urandom(70000),
              size - 5: b"tail!"}
    with open(src / "sparse", "wb") as f:
        f.truncate(size)
        for off, data in chunks.items():
            f.seek(off)
            f.write(data)
    tar = tmp_path / "sparse.tar"
    subprocess.run(["tar", "--sparse", f"--format={fmt}", "-cf", str(tar), "-C", str(src),
                    "sparse"], check=True)
    assert tar.stat().st_size < 1 << 20  # GNU tar really stored it sparse
    node = get(TarFS(tar), "sparse")
    st = node.stat()
    assert st.size == size and st.blocks < 200
    for off, data in chunks.items():
        assert node.read(off, len(data)) == data
        if off:
            assert node.read(off - 3, 3) == bytes(3)  # a hole before every chunk
    expected = (src / "sparse").read_bytes()
    got = b"".join(node.read(o, 1 << 22) for o in range(0, size, 1 << 22))
    assert hashlib.sha256(got).digest() == hashlib.sha256(expected).digest()
    assert node.read((40 << 20) + 1, 10) == b"\0\0" + chunks[(40 << 20) + 3][:8]


class Pattern(io.RawIOBase):
    """``size`` bytes where byte ``i`` is ``i % 256``, made on demand (never all in memory)."""

    BLOCK = bytes(range(256)) * 4097

    def __init__(self, size: int) -> None:
        self.pos = 0
        self.size = size

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(b), self.size - self.pos, 1 << 20)
        start = self.pos % 256
        b[:n] = self.BLOCK[start:start + n]
        self.pos += n
        return n


def pattern(offset: int, n: int) -> bytes:
    start = offset % 256
    return Pattern.BLOCK[start:start + n]


def big_tar(path: Path, size: int) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        tf.addfile(info("small", size=5), io.BytesIO(b"first"))
        tf.addfile(info("big", size=size), io.BufferedReader(Pattern(size), 1 << 20))
        tf.addfile(info("last", size=4), io.BytesIO(b"last"))
    return path


@pytest.mark.timeout(120)
def test_100mb_archive_is_not_read_into_memory(tmp_path: Path) -> None:
    size = 100 << 20
    tar = big_tar(tmp_path / "big.tar", size)
    assert tar.stat().st_size > size
    tracemalloc.start()
    try:
        fs = TarFS(tar)
        big = get(fs, "big")
        mid = big.read(50 << 20, 1 << 20)
        last = get(fs, "last").read(0, 10)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert big.stat().size == size and last == b"last"
    assert mid == pattern(50 << 20, 1 << 20)
    # A 1 MiB read needs ~2 MiB (the bytes plus a copy); 100 MiB would show.
    assert peak < 6 << 20, f"peak {peak} bytes while opening a {size}-byte tar"


@pytest.mark.timeout(180)
def test_100mb_gzip_archive_streams_through_a_temp_file(tmp_path: Path) -> None:
    size = 100 << 20
    plain = big_tar(tmp_path / "big.tar", size)
    tgz = tmp_path / "big.tgz"
    with open(plain, "rb") as src, gzip.open(tgz, "wb", compresslevel=1) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    plain.unlink()
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    tracemalloc.start()
    try:
        fs = TarFS(tgz, tmpdir=str(tmpdir))
        tail = get(fs, "big").read(size - 10, 100)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert tail == pattern(size - 10, 10)
    assert peak < 12 << 20, f"peak {peak} bytes while opening a {size}-byte tar.gz"
    assert list(tmpdir.iterdir()) == []


# --- concurrency ---------------------------------------------------------------------
@pytest.mark.parametrize("as_fileobj", [False, True])
@pytest.mark.timeout(60)
def test_concurrent_reads(tmp_path: Path, as_fileobj: bool) -> None:
    files = {f"f{i}": os.urandom(50_000 + i * 1000) for i in range(16)}
    path = make_tar(tmp_path / "a.tar", [reg(n, d) for n, d in files.items()])
    fs = TarFS(io.BytesIO(path.read_bytes()) if as_fileobj else path)
    errors: list[str] = []

    def worker(seed: int) -> None:
        for k in range(300):
            name = f"f{(seed + k) % 16}"
            data = files[name]
            off = (seed * 7919 + k * 104729) % len(data)
            n = 1 + (k * 31) % 5000
            if fs.root.lookup(name).read(off, n) != data[off:off + n]:
                errors.append(f"{name}@{off}+{n}")

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


# --- nothing escapes to the host ---------------------------------------------------------
_opened: list[str] | None = None


def _audit(event: str, args: tuple[object, ...]) -> None:
    if event == "open" and _opened is not None and isinstance(args[0], str | bytes):
        _opened.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)


def snapshot(root: Path) -> dict[str, tuple[int, int, bytes]]:
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        out[str(p)] = (st.st_mode, st.st_mtime_ns, p.read_bytes() if p.is_file() else b"")
    return out


@pytest.mark.parametrize("compressed", [False, True])
def test_nothing_is_extracted_or_opened_on_the_host(tmp_path: Path, compressed: bool) -> None:
    global _opened
    canary = tmp_path / "canary"
    (canary / "sub").mkdir(parents=True)
    (canary / "file").write_bytes(b"CANARY")
    (canary / "sub" / "x").write_bytes(b"X")
    before = snapshot(canary)
    evil = [
        reg("../canary/evil", b"written?"),
        reg(f"{canary}/evil2", b"written?"),  # absolute name: lands inside the archive
        reg("../../../../../../" + str(canary).lstrip("/") + "/evil3", b"written?"),
        hard("hl_abs", str(canary / "file")),
        hard("hl_rel", "../canary/file"),
        sym("sym_abs", str(canary / "file")),
        sym("sym_rel", "../canary/file"),
        reg("plain", b"ok"),
    ]
    data = tar_bytes(evil)
    archive = tmp_path / ("evil.tgz" if compressed else "evil.tar")
    archive.write_bytes(gzip.compress(data) if compressed else data)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    _opened = []
    try:
        fs = TarFS(archive, tmpdir=str(tmpdir))
        tree = walk(fs.root)
        contents = {p: n.read(0, 1 << 20) for p, n in tree.items() if n.stat().is_reg()}
        links = {p: n.readlink() for p, n in tree.items() if n.stat().is_lnk()}
        opened = list(_opened)
    finally:
        _opened = None
    assert snapshot(canary) == before
    assert list(tmpdir.iterdir()) == []
    assert set(opened) <= {str(archive), str(tmpdir)}, opened
    assert all(b"CANARY" not in c for c in contents.values())
    assert f"{str(canary).lstrip('/')}/evil2" in {p.lstrip("/") for p in contents}
    assert links == {"/sym_abs": str(canary / "file"), "/sym_rel": "../canary/file"}
    assert {s.name for s in fs.skipped} >= {"../canary/evil", "hl_abs", "hl_rel"}


# --- through the VFS -------------------------------------------------------------------
def test_mounted_under_the_vfs(tmp_path: Path) -> None:
    from cove.fs.vfs import VFS

    fs = TarFS(make_tar(tmp_path / "a.tar", [
        reg("etc/passwd", b"root:x:0:0::/root:/bin/sh\n"),
        sym("bin/escape", "../../../../../etc/passwd"),
        sym("abs", "/etc/passwd"),
    ]))
    vfs = VFS(fs)
    ctx = vfs.context()
    for path in ("/bin/escape", "/abs", "/etc/passwd"):
        assert vfs.open(ctx, None, path, os.O_RDONLY).read(100).startswith(b"root:x:0:0")
    assert errno_of(lambda: vfs.mkdir(ctx, None, "/new", 0o755)) == E.EROFS
    assert errno_of(lambda: vfs.unlink(ctx, None, "/etc/passwd")) == E.EROFS
    assert vfs.stat(ctx, None, "/bin/escape", follow=False).mode & S_IFMT == S_IFLNK
