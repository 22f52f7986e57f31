"""Model test: an OverlayFS over three lowers behaves like one plain MemFS.

Both start from the same tree (the overlay's merged view copied into a MemFS)
and receive the same raw Inode operations; after every step their full trees,
hard-link structure and errors must agree. Operations the VFS would refuse
(rename type rules, moving a directory into itself, writing a directory) are
not sent, since filesystems do not check them. Held inode pairs check that an
overlay inode object keeps denoting the same file through copy-up, rename and
unlink. Remount and restack (the upper becomes a lower under a fresh upper)
check that the upper alone carries whiteouts and opaque directories.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

from cove.abi.errno import Errno
from cove.fs.memfs import MemFS
from cove.fs.node import (
    RENAME_EXCHANGE,
    RENAME_NOREPLACE,
    S_IFCHR,
    S_IFDIR,
    S_IFIFO,
    S_IFMT,
    S_IFREG,
    Inode,
    SetAttr,
)
from cove.fs.overlay import OverlayFS
from tests.fs.overlay_util import (
    EXPECTED,
    copy_tree,
    dump,
    inos,
    project,
    resolve,
    split,
    three_lowers,
)

NAMES = ["a", "b", "c", "d", "e"]
MISSING = ["zz", "a/zz", "b/zz", "zz/a"]  # absent, or below a non-directory
# Names some lower holds but the merged view hides: where whiteouts and opaque
# directories matter most, so new entries are often made there.
HIDDEN = ["a/b", "a/c/d", "c/b", "c/c", "a/e/three", "b/a"]
BIG = 1 << 16


def groups(root: Inode) -> set[frozenset[str]]:
    """Paths grouped by st_ino: the hard-link structure."""
    by_ino: dict[int, set[str]] = {}
    for path, ino in inos(root).items():
        by_ino.setdefault(ino, set()).add(path)
    return {frozenset(paths) for paths in by_ino.values()}


def facts(node: Inode) -> tuple:
    s = node.stat()
    kind = s.mode & S_IFMT
    content: object = None
    if kind == S_IFREG:
        content = node.read(0, BIG)
    elif kind == S_IFDIR:
        content = sorted(e.name for e in node.readdir())
    return (s.mode, s.uid, s.gid, None if kind == S_IFDIR else s.size, s.nlink, content)


class OverlayModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.lowers = three_lowers()
        self.frozen = [(fs, dump(fs.root, raw=True)) for fs in self.lowers]
        self.upper = MemFS()
        self.ov = OverlayFS(self.upper, self.lowers)
        self.ref = MemFS()
        assert project(dump(self.ov.root)) == EXPECTED
        copy_tree(self.ov.root, self.ref.root)
        self.vacated = list(HIDDEN)  # paths whose entry went away (lower content may remain)
        self.held: list[tuple[Inode, Inode]] = []  # (reference inode, overlay inode)
        self.restacks = 0

    # --- helpers ---------------------------------------------------------
    def tree(self) -> dict[str, tuple]:
        return {p[1:]: rec for p, rec in dump(self.ref.root).items()}

    def pick(self, data, kinds: set[int] | None = None, *, missing: bool = True,
             root: bool = False) -> str:
        cands = sorted(p for p, rec in self.tree().items() if kinds is None or rec[0] in kinds)
        if root:
            cands.append("")
        if missing or not cands:
            cands += MISSING
        return data.draw(st.sampled_from(cands))

    def pick_new(self, data, name: str) -> tuple[str, str]:
        """A (parent, name) to create or rename onto: often a vacated path."""
        if data.draw(st.booleans()):
            return split(data.draw(st.sampled_from(self.vacated)))
        return self.pick(data, {S_IFDIR}, root=True), name

    def vacate(self, path: str) -> None:
        if path not in self.vacated:
            self.vacated.append(path)

    def both(self, fn) -> int | None:
        """Apply ``fn(root)`` to the reference then the overlay; same errno or both succeed."""
        outcome = []
        for root in (self.ref.root, self.ov.root):
            try:
                fn(root)
                outcome.append(None)
            except Errno as e:
                outcome.append(e.errno)
        assert outcome[0] == outcome[1], f"reference {outcome[0]} overlay {outcome[1]}"
        return outcome[0]

    def ino(self, path: str) -> int | None:
        try:
            return resolve(self.ov.root, path).stat().ino
        except Errno:
            return None

    # --- creating ----------------------------------------------------------
    @rule(data=st.data(), name=st.sampled_from(NAMES),
          kind=st.sampled_from(["file", "dir", "fifo", "chr", "symlink"]),
          mode=st.sampled_from([0o644, 0o600, 0o755, 0o1777]))
    def create(self, data, name, kind, mode):
        parent, name = self.pick_new(data, name)

        def make(root: Inode) -> None:
            d = resolve(root, parent)
            if kind == "file":
                d.create(name, mode, 1, 2)
            elif kind == "dir":
                d.mkdir(name, mode, 1, 2)
            elif kind == "fifo":
                d.mknod(name, S_IFIFO | mode, 0, 1, 2)
            elif kind == "chr":
                d.mknod(name, S_IFCHR | mode, 0x105, 1, 2)
            else:
                d.symlink(name, f"../{name}", 1, 2)

        self.both(make)

    @rule(data=st.data(), name=st.sampled_from(NAMES))
    def link(self, data, name):
        src = self.pick(data, {k for k in (S_IFREG, S_IFIFO, S_IFCHR, 0o120000)})
        parent = self.pick(data, {S_IFDIR}, root=True)
        before = self.ino(src)
        self.both(lambda root: resolve(root, parent).link(name, resolve(root, src)))
        assert self.ino(src) == before

    # --- changing ----------------------------------------------------------
    @rule(data=st.data(), offset=st.integers(0, 12), payload=st.binary(min_size=1, max_size=9))
    def write(self, data, offset, payload):
        path = self.pick(data, {S_IFREG}, missing=False)
        before = self.ino(path)
        self.both(lambda root: resolve(root, path).write(offset, payload))
        assert self.ino(path) == before

    @rule(data=st.data(), size=st.integers(0, 20))
    def truncate(self, data, size):
        path = self.pick(data, {S_IFREG}, missing=False)
        before = self.ino(path)
        self.both(lambda root: resolve(root, path).setattr(SetAttr(size=size)))
        assert self.ino(path) == before

    @rule(data=st.data(), mode=st.sampled_from([0o700, 0o4755, 0o640, 0o1777]),
          owner=st.sampled_from([None, 0, 7]), times=st.sampled_from([None, (1, 2), (3, 4)]))
    def setattr(self, data, mode, owner, times):
        path = self.pick(data)
        attr = SetAttr(mode=mode, uid=owner, gid=owner)
        if times:
            attr.atime_ns, attr.mtime_ns = times
        before = self.ino(path)
        if self.both(lambda root: resolve(root, path).setattr(attr)) is None:
            assert self.ino(path) == before
            if times:
                s = resolve(self.ov.root, path).stat()
                assert (s.atime_ns, s.mtime_ns) == times

    # --- removing ----------------------------------------------------------
    @rule(data=st.data())
    def unlink(self, data):
        path = self.pick(data)
        head, name = split(path)
        if self.both(lambda root: resolve(root, head).unlink(name)) is None:
            self.vacate(path)

    @rule(data=st.data())
    def rmdir(self, data):
        path = self.pick(data)
        head, name = split(path)
        if self.both(lambda root: resolve(root, head).rmdir(name)) is None:
            self.vacate(path)

    def rm_rf(self, top: str) -> None:
        """rm -r: lower entries become whiteouts, then the directory's own."""
        kinds = self.tree()
        order = sorted((p for p in kinds if p == top or p.startswith(top + "/")),
                       key=lambda p: -p.count("/"))
        for path in order:
            head, name = split(path)
            if kinds[path][0] == S_IFDIR:
                assert self.both(lambda root, h=head, n=name: resolve(root, h).rmdir(n)) is None
            else:
                assert self.both(lambda root, h=head, n=name: resolve(root, h).unlink(n)) is None
            self.vacate(path)

    @rule(data=st.data())
    def remove_tree(self, data):
        self.rm_rf(self.pick(data, {S_IFDIR}, missing=False))

    @rule(data=st.data(), exchange=st.booleans())
    def replace_tree(self, data, exchange):
        """rm -rf D && mv X D (or exchange them): D's lower dirs must not show through."""
        dirs = sorted(p for p, rec in self.tree().items() if rec[0] == S_IFDIR)
        if len(dirs) < 2:
            return
        target = data.draw(st.sampled_from(dirs))
        src = data.draw(st.sampled_from(dirs))
        if src == target or src.startswith(target + "/") or target.startswith(src + "/"):
            return
        self.rm_rf(target)
        th, tn = split(target)
        sh, sn = split(src)
        if exchange:
            assert self.both(lambda root: resolve(root, th).mkdir(tn, 0o755, 0, 0)) is None
        flags = RENAME_EXCHANGE if exchange else 0
        assert self.both(
            lambda root: resolve(root, sh).rename(sn, resolve(root, th), tn, flags)) is None

    # --- rename ------------------------------------------------------------
    @rule(data=st.data(), name=st.sampled_from(NAMES),
          flags=st.sampled_from([0, 0, RENAME_NOREPLACE, RENAME_EXCHANGE]))
    def rename(self, data, name, flags):
        tree = self.tree()
        src = self.pick(data)
        parent, name = self.pick_new(data, name)
        dst = f"{parent}/{name}" if parent else name
        # What the VFS refuses before a filesystem is asked:
        if parent and tree.get(parent, (0,))[0] != S_IFDIR:
            return
        if src == dst or dst.startswith(src + "/") or src.startswith(dst + "/"):
            return
        if dst in tree and src in tree and not flags & RENAME_EXCHANGE and (
            (tree[src][0] == S_IFDIR) != (tree[dst][0] == S_IFDIR)
        ):
            return
        same = src in tree and dst in tree and self.ino(src) == self.ino(dst)
        before = inos(resolve(self.ov.root, src)) if tree.get(src, (0,))[0] == S_IFDIR else {}
        src_ino, dst_ino = self.ino(src), self.ino(dst)
        shead, sname = split(src)
        err = self.both(
            lambda root: resolve(root, shead).rename(sname, resolve(root, parent), name, flags))
        if err is None and not flags & RENAME_EXCHANGE:
            self.vacate(src)
        if err is None and not same:
            assert self.ino(dst) == src_ino
            if before:
                assert inos(resolve(self.ov.root, dst)) == before
            if flags & RENAME_EXCHANGE:
                assert self.ino(src) == dst_ino

    # --- held inodes ----------------------------------------------------------
    @rule(data=st.data())
    def hold(self, data):
        path = self.pick(data, missing=False)
        if path in self.tree():
            self.held.append((resolve(self.ref.root, path), resolve(self.ov.root, path)))

    @precondition(lambda self: any(r.mode & S_IFMT == S_IFREG for r, _ in self.held))
    @rule(data=st.data(), offset=st.integers(0, 5), payload=st.binary(min_size=1, max_size=4))
    def write_held(self, data, offset, payload):
        files = [pair for pair in self.held if pair[0].mode & S_IFMT == S_IFREG]
        ref, ov = data.draw(st.sampled_from(files))
        ino = ov.stat().ino
        ref.write(offset, payload)  # may be unlinked: the overlay copies up an orphan
        ov.write(offset, payload)
        assert ov.stat().ino == ino

    # --- layers ---------------------------------------------------------------
    @rule()
    def remount(self):
        self.ov = OverlayFS(self.upper, self.lowers)
        self.held = []

    @precondition(lambda self: self.restacks < 2)
    @rule()
    def restack(self):
        # Lower hard links break on copy-up (documented), so restack only without them.
        if any(len(g) > 1 for g in groups(self.ref.root)):
            return
        self.upper.readonly = True
        self.frozen.append((self.upper, dump(self.upper.root, raw=True)))
        self.lowers = [self.upper, *self.lowers]
        self.upper = MemFS()
        self.ov = OverlayFS(self.upper, self.lowers)
        self.held = []
        self.restacks += 1

    # --- checks ---------------------------------------------------------------
    @invariant()
    def same_tree(self):
        assert dump(self.ov.root) == dump(self.ref.root)
        assert groups(self.ov.root) == groups(self.ref.root)

    @invariant()
    def held_inodes_follow_their_file(self):
        ref_inos = inos(self.ref.root)
        ov_inos = inos(self.ov.root)
        for ref, ov in self.held:
            assert facts(ov) == facts(ref)
            for path, ino in ref_inos.items():
                if ino == ref.ino:
                    assert ov_inos[path] == ov.ino
                    if not ov.detached and (
                            ref.stat().nlink == 1 or ref.mode & S_IFMT == S_IFDIR):
                        # One object per path while held, wherever it moved (each
                        # hard link name has its own object, with the same key).
                        assert resolve(self.ov.root, path) is ov

    def teardown(self) -> None:
        for fs, before in self.frozen:
            assert dump(fs.root, raw=True) == before, "a lower layer changed"


OverlayModel.TestCase.settings = settings(
    max_examples=250,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_overlay_matches_memfs = pytest.mark.timeout(900)(OverlayModel.TestCase)
