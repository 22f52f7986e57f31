"""hostfs: a read-only host directory view that must never show anything outside it.

Every test runs over a host tree built in tmp_path (files, symlinks pointing
out of it, loops, hard links, a FIFO, device nodes, a socket, 255-byte names,
a path deeper than PATH_MAX) next to an ``outside`` directory holding bait with
the same names, and checks afterwards that nothing on the host changed. Each
test runs twice: with openat2(2) and with the O_NOFOLLOW fallback.
"""

from __future__ import annotations

import os
import resource
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cove.abi.errno import E, Errno
from cove.fs import hostfs
from cove.fs.hostfs import HOSTFS_SUPER_MAGIC, HostFS, HostInode
from cove.fs.node import (
    DT_CHR,
    DT_DIR,
    DT_FIFO,
    DT_LNK,
    DT_REG,
    DT_SOCK,
    S_IFCHR,
    S_IFDIR,
    S_IFIFO,
    S_IFLNK,
    S_IFREG,
    S_IFSOCK,
    SetAttr,
    makedev,
)

from .hostdigest import tree_state

INSIDE = b"inside content\n"
OUTSIDE = b"OUTSIDE SECRET\n"
LONG = "n" * 255
DEEP_NAME = "p" * 200
DEEP_LEVELS = 30  # 30 * 201 bytes: well past PATH_MAX (4096)
MANY_DIRS = 120
IS_ROOT = os.geteuid() == 0

SYMLINKS = {
    "passwd": "/etc/passwd",
    "up": "../../..",
    "upfar": "../" * 40 + "etc",
    "abs": "/",
    "outside_abs": "",  # filled in with the absolute path of tmp_path/outside
    "dlink": "d",
    "loop1": "loop2",
    "loop2": "loop1",
    "self": "self",
    "dangling": "no/such/thing",
    "swap": "../outside",
}


# --- the host tree and the "host never changes" guard ---------------------------------
def _mkdirs_deep(root: Path) -> None:
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(DEEP_LEVELS):
            os.mkdir(DEEP_NAME, dir_fd=fd)
            nfd = os.open(DEEP_NAME, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        leaf = os.open("leaf.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(leaf, b"deep " + INSIDE)
        os.close(leaf)
    finally:
        os.close(fd)


def _build(tmp: Path) -> Path:
    root, out = tmp / "host", tmp / "outside"
    for base, content in ((root, INSIDE), (out, OUTSIDE)):
        (base / "d" / "e").mkdir(parents=True)
        (base / "d" / "f.txt").write_bytes(content)
        (base / "d" / "e" / "g.txt").write_bytes(content * 3)
        (base / "hello.txt").write_bytes(content)
    (root / "d").chmod(0o750)
    (root / "empty").write_bytes(b"")
    (root / "exec.sh").write_bytes(b"#!/bin/sh\necho hi\n")
    (root / "exec.sh").chmod(0o755)
    (root / "hard1").write_bytes(b"linked " + INSIDE)
    os.link(root / "hard1", root / "hard2")
    (root / LONG).write_bytes(b"long " + INSIDE)
    (root / os.fsdecode(b"bytes\xff\xfe")).write_bytes(b"undecodable name")
    for name, target in SYMLINKS.items():
        os.symlink(target or str(out), root / name)
    os.mkfifo(root / "fifo")
    if IS_ROOT:
        os.mknod(root / "zero", 0o666 | stat.S_IFCHR, makedev(1, 5))
        os.mknod(root / "blk", 0o600 | stat.S_IFBLK, makedev(7, 200))
    cwd = os.getcwd()  # AF_UNIX paths are short; bind relative to the tree
    os.chdir(root)
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.bind("sock")
    finally:
        os.chdir(cwd)
    (root / "mnt").mkdir()
    many = root / "many"
    for i in range(MANY_DIRS):
        (many / f"dir{i}").mkdir(parents=True)
        for j in range(3):
            (many / f"dir{i}" / f"file{j}").write_bytes(f"{i}.{j}".encode())
    _mkdirs_deep(root)
    return root


def _snapshot(path: Path) -> list[tuple[object, ...]]:
    return tree_state(path, owners_and_times=False)


@pytest.fixture(autouse=True, params=[True, False], ids=["openat2", "nofollow"])
def resolver(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    if request.param and not hostfs.USE_OPENAT2:
        pytest.skip("openat2 unavailable on this kernel")
    monkeypatch.setattr(hostfs, "USE_OPENAT2", request.param)
    return request.param


@pytest.fixture(autouse=True)
def host(tmp_path: Path) -> Iterator[Path]:
    root = _build(tmp_path)
    before = _snapshot(tmp_path)
    yield root
    assert _snapshot(tmp_path) == before, "hostfs changed the host directory"


@pytest.fixture
def fs(host: Path) -> Iterator[HostFS]:
    f = HostFS(str(host))
    yield f
    f.close()


def _errno_of(fn: object, *args: object) -> int:
    with pytest.raises(Errno) as ei:
        fn(*args)  # type: ignore[operator]
    return ei.value.errno


def _walk(d: HostInode, out: list[HostInode]) -> None:
    """Every inode reachable by lookup without following a symlink."""
    for ent in d.readdir():
        node = d.lookup(ent.name)
        out.append(node)
        if node.stat().is_dir():
            _walk(node, out)


def _fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


# --- what is visible ---------------------------------------------------------------
def test_types_and_metadata(fs: HostFS, host: Path) -> None:
    root = fs.root
    assert root.stat().is_dir() and root.stat().dev == fs.dev
    kinds = {"hello.txt": S_IFREG, "d": S_IFDIR, "passwd": S_IFLNK, "fifo": S_IFIFO,
             "sock": S_IFSOCK, LONG: S_IFREG}
    if IS_ROOT:
        kinds["zero"] = S_IFCHR
    for name, kind in kinds.items():
        st = root.lookup(name).stat()
        hst = os.lstat(host / name)
        assert st.type == kind
        assert (st.ino, st.mode, st.size, st.nlink) == (
            hst.st_ino, hst.st_mode, hst.st_size, hst.st_nlink)
        assert (st.uid, st.gid, st.dev) == (hst.st_uid, hst.st_gid, fs.dev)
        assert st.mtime_ns == hst.st_mtime_ns
    assert root.lookup("d").stat().perm == 0o750
    assert root.lookup("exec.sh").stat().perm == 0o755
    if IS_ROOT:
        assert root.lookup("zero").stat().rdev == makedev(1, 5)


def test_owner_override(host: Path) -> None:
    f = HostFS(str(host), owner=(1000, 1001))
    try:
        for name in ("hello.txt", "d", "passwd"):
            st = f.root.lookup(name).stat()
            assert (st.uid, st.gid) == (1000, 1001)
    finally:
        f.close()


def test_statfs_hides_host(fs: HostFS) -> None:
    sf = fs.statfs()
    assert sf.fstype == HOSTFS_SUPER_MAGIC and fs.name == "hostfs"
    assert sf.flags & 1 and sf.blocks == 0 and sf.files == 0


def test_read_regular_files(fs: HostFS) -> None:
    hello = fs.root.lookup("hello.txt")
    assert hello.read(0, 4096) == INSIDE
    assert hello.read(3, 4) == INSIDE[3:7]
    assert hello.read(len(INSIDE), 10) == b""
    assert hello.read(1 << 40, 10) == b""
    assert fs.root.lookup("empty").read(0, 10) == b""
    assert fs.root.lookup(LONG).read(0, 100) == b"long " + INSIDE
    assert fs.root.lookup(os.fsdecode(b"bytes\xff\xfe")).read(0, 100) == b"undecodable name"
    assert fs.root.lookup("d").lookup("e").lookup("g.txt").read(0, 100) == INSIDE * 3
    assert _errno_of(hello.read, -1, 1) == E.EINVAL


def test_hard_links_share_identity(fs: HostFS) -> None:
    a, b = fs.root.lookup("hard1"), fs.root.lookup("hard2")
    assert a.key == b.key and a.stat().nlink == 2
    assert a.read(0, 100) == b.read(0, 100) == b"linked " + INSIDE
    assert fs.root.lookup("hello.txt").key == fs.root.lookup("hello.txt").key
    assert fs.root.lookup("hello.txt").key != a.key


def test_symlinks_are_raw_data(fs: HostFS, host: Path) -> None:
    for name, target in SYMLINKS.items():
        link = fs.root.lookup(name)
        assert link.stat().is_lnk()
        assert link.readlink() == (target or str(host.parent / "outside"))
        assert _errno_of(link.read, 0, 100) == E.EINVAL
        assert _errno_of(link.lookup, "f.txt") == E.ENOTDIR
        assert _errno_of(link.readdir) == E.ENOTDIR
    assert _errno_of(fs.root.lookup("hello.txt").readlink) == E.EINVAL
    assert _errno_of(fs.root.readlink) == E.EINVAL


def test_non_regular_files_are_never_opened(fs: HostFS) -> None:
    assert _errno_of(fs.root.read, 0, 1) == E.EISDIR
    assert _errno_of(fs.root.lookup("d").read, 0, 1) == E.EISDIR
    assert _errno_of(fs.root.lookup("fifo").read, 0, 1) == E.EINVAL
    assert _errno_of(fs.root.lookup("sock").read, 0, 1) == E.ENXIO
    if IS_ROOT:  # a host read of /dev/zero's twin would give zeros
        assert _errno_of(fs.root.lookup("zero").read, 0, 16) == E.EACCES
        assert _errno_of(fs.root.lookup("blk").read, 0, 16) == E.EACCES
    assert fs.open_fds() == 1  # only the root: nothing else was opened


def test_readdir(fs: HostFS, host: Path) -> None:
    ents = list(fs.root.readdir())
    names = [e.name for e in ents]
    assert names == sorted(os.listdir(host))
    by = {e.name: e for e in ents}
    assert by["d"].dtype == DT_DIR and by["hello.txt"].dtype == DT_REG
    assert by["passwd"].dtype == DT_LNK and by["fifo"].dtype == DT_FIFO
    assert by["sock"].dtype == DT_SOCK
    if IS_ROOT:
        assert by["zero"].dtype == DT_CHR
    for e in ents:
        assert e.ino == fs.root.lookup(e.name).ino
    assert _errno_of(fs.root.lookup("hello.txt").readdir) == E.ENOTDIR


def test_parent_chain(fs: HostFS) -> None:
    root = fs.root
    d = root.lookup("d")
    e = d.lookup("e")
    assert root.parent() is root
    assert d.parent().key == root.key and e.parent().key == d.key
    assert _errno_of(d.lookup("f.txt").parent) == E.ENOTDIR


@pytest.mark.parametrize("bad", ["", ".", "..", "d/f.txt", "/etc", "a\0b", "\ud800", "../host"])
def test_lookup_refuses_non_components(fs: HostFS, bad: str) -> None:
    assert _errno_of(fs.root.lookup, bad) == E.ENOENT
    assert _errno_of(fs.root.lookup("d").lookup, bad) == E.ENOENT


def test_lookup_errors(fs: HostFS) -> None:
    assert _errno_of(fs.root.lookup, "missing") == E.ENOENT
    assert _errno_of(fs.root.lookup, "n" * 256) == E.ENAMETOOLONG
    assert _errno_of(fs.root.lookup("hello.txt").lookup, "x") == E.ENOTDIR


def test_every_mutation_is_erofs(fs: HostFS) -> None:
    assert fs.readonly
    nodes = [fs.root, fs.root.lookup("d"), fs.root.lookup("hello.txt"),
             fs.root.lookup("passwd"), fs.root.lookup("fifo")]
    for n in nodes:
        calls = [
            (n.setattr, SetAttr(mode=0o777)), (n.setattr, SetAttr(size=0)),
            (n.create, "new", 0o644, 0, 0), (n.mkdir, "new", 0o755, 0, 0),
            (n.mknod, "new", S_IFIFO | 0o644, 0, 0, 0), (n.symlink, "new", "/etc", 0, 0),
            (n.link, "new", fs.root.lookup("hello.txt")), (n.unlink, "hello.txt"),
            (n.rmdir, "d"), (n.rename, "hello.txt", fs.root, "x", 0),
            (n.write, 0, b"pwned"),
        ]
        for fn, *args in calls:
            assert _errno_of(fn, *args) == E.EROFS, fn
    fs.root.sync()


# --- never outside ------------------------------------------------------------------
def test_walk_sees_exactly_the_tree(fs: HostFS, host: Path) -> None:
    inside = {st[3] for st in _snapshot(host)} | {os.stat(host).st_ino}
    out: list[HostInode] = [fs.root]
    _walk(fs.root, out)
    seen = {n.stat().ino for n in out}
    assert seen == inside  # hard1 and hard2 are one inode on both sides
    forbidden = {os.stat("/etc/passwd").st_ino, os.stat(host.parent / "outside").st_ino,
                 os.stat(host.parent).st_ino, os.stat("/").st_ino}
    assert not seen & forbidden
    for n in out:
        if n.stat().is_reg():
            data = n.read(0, 1 << 16)
            assert OUTSIDE not in data and b"root:" not in data


def test_deep_and_long_paths(host: Path) -> None:
    f = HostFS(str(host), dir_fds=2, file_fds=1)  # forces re-derivation down the chain
    try:
        for _ in range(3):
            node = f.root
            for _ in range(DEEP_LEVELS):
                node = node.lookup(DEEP_NAME)
            assert node.lookup("leaf.txt").read(0, 100) == b"deep " + INSIDE
            assert node.parent().parent().key != node.key
            f.root.lookup("d").lookup("e")  # evict the deep chain's fds
            assert node.lookup("leaf.txt").read(0, 100) == b"deep " + INSIDE
        assert f.open_fds() <= 1 + 2 + 1
    finally:
        f.close()


def test_mount_point_inside_gets_distinct_inos(host: Path) -> None:
    mnt = host / "mnt"
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "cove-test", str(mnt)],
                       capture_output=True)
    if r.returncode:
        pytest.skip("cannot mount tmpfs here")
    fs = HostFS(str(host))
    try:
        (mnt / "in_mount").write_bytes(b"mounted")
        m = fs.root.lookup("mnt")
        assert m.stat().ino >= 1 << 63 and m.stat().dev == fs.dev
        f = m.lookup("in_mount")
        assert f.read(0, 10) == b"mounted" and f.stat().ino >= 1 << 63
        assert f.key != m.key and m.lookup("in_mount").key == f.key
        assert {e.name for e in m.readdir()} == {"in_mount"}
        # The same host ino on two devices is two cove inodes.
        hino = os.stat(mnt).st_ino
        assert fs._ino_for((fs._root_dev, hino)) != fs._ino_for((os.stat(mnt).st_dev, hino))
    finally:
        fs.close()  # its fds inside the mount would keep it busy
        subprocess.run(["umount", str(mnt)], check=True)


# --- host swaps ------------------------------------------------------------------------
def test_symlink_swapped_for_dir(fs: HostFS, host: Path) -> None:
    old = fs.root.lookup("swap")
    assert old.readlink() == "../outside"
    os.rename(host / "swap", host / "swap.bak")
    (host / "swap").mkdir()
    try:
        assert _errno_of(old.readlink) == E.ENOENT
        assert _errno_of(old.stat) == E.ENOENT
        assert fs.root.lookup("swap").stat().is_dir()
    finally:
        (host / "swap").rmdir()
        os.rename(host / "swap.bak", host / "swap")
    assert old.readlink() == "../outside"


def test_dir_swapped_for_symlink_outside(host: Path) -> None:
    f = HostFS(str(host), dir_fds=2, file_fds=1)
    outside = host.parent / "outside"
    try:
        d = f.root.lookup("d")
        ftxt = d.lookup("f.txt")
        assert ftxt.read(0, 100) == INSIDE
        os.rename(host / "d", host / "d.bak")
        os.symlink(outside / "d", host / "d")
        try:
            assert ftxt.read(0, 100) == INSIDE  # its read fd is still the original file
            f.root.lookup("many").lookup("dir0").lookup("file0").read(0, 10)  # evict all
            f.root.lookup("many").lookup("dir1")
            assert _errno_of(d.lookup, "f.txt") == E.ENOENT
            assert _errno_of(ftxt.read, 0, 100) == E.ENOENT
            assert _errno_of(d.readdir) == E.ENOENT
            assert _errno_of(d.stat) == E.ENOENT
            assert f.root.lookup("d").readlink() == str(outside / "d")
        finally:
            os.unlink(host / "d")
            os.rename(host / "d.bak", host / "d")
        assert d.lookup("f.txt").read(0, 100) == INSIDE
    finally:
        f.close()


def test_inode_never_changes_identity(host: Path) -> None:
    """A name re-pointed on the host at another object (moved in from outside) makes
    the old inode vanish; it never starts showing the newcomer."""
    f = HostFS(str(host), dir_fds=2, file_fds=1)
    outside = host.parent / "outside"
    try:
        d = f.root.lookup("d")
        ftxt = d.lookup("f.txt")
        hello = f.root.lookup("hello.txt")
        assert ftxt.read(0, 100) == hello.read(0, 100) == INSIDE
        os.rename(host / "d", host / "d.bak")
        os.rename(outside / "d", host / "d")
        os.rename(host / "hello.txt", host / "hello.bak")
        os.link(outside / "hello.txt", host / "hello.txt")
        try:
            f.root.lookup("many").lookup("dir0").lookup("file0").read(0, 10)  # evict all
            f.root.lookup("many").lookup("dir1")
            for op in (lambda: d.lookup("f.txt"), d.readdir, d.stat, lambda: ftxt.read(0, 100),
                       lambda: hello.read(0, 100), hello.stat):
                assert _errno_of(op) == E.ENOENT
            # A fresh lookup sees what the tree holds now.
            assert f.root.lookup("d").lookup("f.txt").read(0, 100) == OUTSIDE
        finally:
            os.unlink(host / "hello.txt")
            os.rename(host / "hello.bak", host / "hello.txt")
            os.rename(host / "d", outside / "d")
            os.rename(host / "d.bak", host / "d")
        assert d.lookup("f.txt").read(0, 100) == INSIDE
    finally:
        f.close()


@pytest.mark.timeout(60)
def test_race_dir_and_symlink_swap_never_reads_outside(host: Path) -> None:
    outside = host.parent / "outside"
    stop = threading.Event()
    swaps = 0

    def swapper() -> None:
        nonlocal swaps
        while not stop.is_set():
            os.rename(host / "d", host / "d.bak")
            os.symlink(outside / "d", host / "d")
            os.unlink(host / "d")
            os.rename(host / "d.bak", host / "d")
            swaps += 1
            time.sleep(0.0002)  # leave the tree whole part of the time so reads succeed too

    f = HostFS(str(host), dir_fds=2, file_fds=1)
    held = f.root.lookup("d")
    outcomes = {"read": 0, "link": 0, "gone": 0}
    t = threading.Thread(target=swapper)
    t.start()
    try:
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            for start in (lambda: f.root.lookup("d"), lambda: held):
                try:
                    d = start()
                    if d.stat().is_lnk():
                        assert d.readlink() == str(outside / "d")
                        outcomes["link"] += 1
                        continue
                    g = d.lookup("e").lookup("g.txt")
                    for node, want in ((d.lookup("f.txt"), INSIDE), (g, INSIDE * 3)):
                        data = node.read(0, 100)
                        assert data == want, data
                    assert {e.name for e in d.readdir()} == {"e", "f.txt"}
                    outcomes["read"] += 1
                except Errno as e:
                    assert e.errno == E.ENOENT, e
                    outcomes["gone"] += 1
                f.root.lookup("many").lookup("dir2")  # keep evicting cached fds
    finally:
        stop.set()
        t.join()
        f.close()
    assert swaps > 100 and outcomes["read"] > 100, (swaps, outcomes)
    assert outcomes["link"] + outcomes["gone"] > 0, outcomes  # the race really happened


# --- fd hygiene ------------------------------------------------------------------------
@pytest.mark.timeout(120)
def test_5000_lookups_do_not_leak_fds(host: Path) -> None:
    import gc

    gc.collect()  # other tests' garbage must not close fds during the count
    before = _fd_count()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    highest = max(int(n) for n in os.listdir("/proc/self/fd"))
    f = HostFS(str(host), dir_fds=16, file_fds=8)
    kept: list[HostInode] = []  # inodes stay alive: fds must still be bounded
    peak = 0
    # Room for the caches and scratch fds only: a leak would hit EMFILE.
    resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 1 + 16 + 8 + 8, hard))
    try:
        many = f.root.lookup("many")
        for n in range(5000):
            i = n % MANY_DIRS
            d = many.lookup(f"dir{i}")
            node = d.lookup(f"file{n % 3}")
            kept += (d, node)
            if n % 5 == 0:
                assert node.read(0, 10) == f"{i}.{n % 3}".encode()
            if n % 50 == 0:
                list(d.readdir())
                kept.append(f.root.lookup("passwd"))
                assert kept[-1].readlink() == "/etc/passwd"
                peak = max(peak, _fd_count())
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert f.open_fds() <= 1 + 16 + 8
    assert peak <= before + 1 + 16 + 8
    f.close()
    assert f.open_fds() == 0
    # Other objects of the test process may close fds meanwhile (collected
    # sandboxes): what matters is that none of ours stayed open.
    assert _fd_count() <= before
    assert _errno_of(kept[1].read, 0, 1) == E.EIO  # closed fs refuses, never reuses fd numbers


def test_fds_closed_when_fs_collected(host: Path) -> None:
    import gc

    gc.collect()  # settle other tests' garbage first: their fds are not ours to count
    before = _fd_count()
    f = HostFS(str(host))
    f.root.lookup("d").lookup("f.txt").read(0, 1)
    assert _fd_count() > before
    del f
    gc.collect()
    assert _fd_count() <= before
