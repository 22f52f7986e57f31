"""Filesystem benchmark (not a test): cove's VFS next to the host's tmpfs.

Measures, with ``time.perf_counter``:
- path lookups/s: ``stat`` of a 5-component path;
- small files/s: create + write 100 bytes + read them back + close, one new file each;
for cove's memfs (through the VFS), an overlay of memfs over a read-only memfs,
and an overlay of memfs over a HostFS view of /usr, next to the same operations
done with ``os`` calls on /dev/shm. Prints a table with the ratio cove/host.

Run: ``python benchmarks/fs_bench.py [--lookups N] [--files N]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from cove.fs.file import O_CREAT, O_RDWR, O_TRUNC
from cove.fs.hostfs import HostFS
from cove.fs.memfs import MemFS
from cove.fs.overlay import OverlayFS
from cove.fs.vfs import VFS

DEEP = ("a", "b", "c", "d")  # directories; the file "e" below them makes 5 components
PAYLOAD = b"x" * 100
# Lookups are cheap, so the best of a few rounds; file creation runs once because
# every round adds files to the same directory (a cost that may grow with its size).
LOOKUP_ROUNDS = 3


def rate(n: int, fn: Callable[[int], None], repeat: int = 1) -> float:
    """Operations per second of ``fn(i)`` for i in range(n), after a short warm-up;
    the best of ``repeat`` rounds (each round gets its own values of i)."""
    for i in range(min(100, n)):
        fn(-1 - i)
    best = 0.0
    for r in range(repeat):
        start = time.perf_counter()
        for i in range(r * n, (r + 1) * n):
            fn(i)
        best = max(best, n / (time.perf_counter() - start))
    return best


@dataclass
class Subject:
    name: str
    lookup: Callable[[int], None]
    small_file: Callable[[int], None]
    close: Callable[[], None] = lambda: None


def cove_subject(name: str, vfs: VFS, deep_path: str, file_dir: str,
                 close: Callable[[], None] = lambda: None) -> Subject:
    ctx = vfs.context()

    def lookup(_: int) -> None:
        vfs.stat(ctx, None, deep_path)

    def small_file(i: int) -> None:
        f = vfs.open(ctx, None, f"{file_dir}/f{i}", O_CREAT | O_RDWR | O_TRUNC, 0o644)
        f.write(PAYLOAD)
        f.pread(len(PAYLOAD), 0)
        f.release()

    return Subject(name, lookup, small_file, close)


def _populate(vfs: VFS) -> None:
    ctx = vfs.context()
    path = ""
    for d in DEEP:
        path += "/" + d
        vfs.mkdir(ctx, None, path, 0o755)
    vfs.open(ctx, None, path + "/e", O_CREAT | O_RDWR, 0o644).write(PAYLOAD)


def memfs_subject() -> Subject:
    vfs = VFS(MemFS())
    _populate(vfs)
    return cove_subject("memfs", vfs, "/a/b/c/d/e", "/a/b/c/d")


def overlay_memfs_subject() -> Subject:
    lower = MemFS()
    _populate(VFS(lower))
    lower.readonly = True
    return cove_subject("overlay: memfs over ro memfs", VFS(OverlayFS(MemFS(), [lower])),
                        "/a/b/c/d/e", "/a/b/c/d")


def _usr_path(depth: int = 5) -> str:
    """A regular file ``depth`` components below /usr (e.g. /usr/share/doc/x/y)."""
    for top, dirs, files in os.walk("/usr"):
        dirs.sort()
        rel = os.path.relpath(top, "/")
        level = rel.count("/") + 1  # "usr/share" -> 2
        if level == depth - 1:
            regular = sorted(f for f in files if os.path.isfile(os.path.join(top, f))
                             and not os.path.islink(os.path.join(top, f)))
            if regular:
                return "/" + rel + "/" + regular[0]
            dirs.clear()
        elif level >= depth - 1:
            dirs.clear()
    raise RuntimeError("no file 5 levels deep in /usr")


def overlay_usr_subject() -> Subject:
    # The overlay is mounted at /usr of a memfs root, so the looked-up path is the
    # host's own 5-component path and crosses one mount point.
    host_path = _usr_path()
    lower = HostFS("/usr")
    vfs = VFS(MemFS())
    ctx = vfs.context()
    vfs.mkdir(ctx, None, "/usr", 0o755)
    vfs.mount("/usr", OverlayFS(MemFS(), [lower]))
    return cove_subject(f"overlay: memfs over hostfs(/usr), {host_path}", vfs,
                        host_path, os.path.dirname(host_path), close=lower.close)


def host_subject() -> Subject:
    base = tempfile.mkdtemp(prefix="cove-fs-bench-", dir="/dev/shm")
    deep_dir = os.path.join(base, *DEEP)
    os.makedirs(deep_dir)
    deep = os.path.join(deep_dir, "e")
    with open(deep, "wb") as f:
        f.write(PAYLOAD)
    # The same 5 components as cove's /a/b/c/d/e, relative to a directory fd, so
    # the host walks as many names as cove does.
    base_fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
    rel = os.path.join(*DEEP, "e")

    def lookup(_: int) -> None:
        os.stat(rel, dir_fd=base_fd)

    def small_file(i: int) -> None:
        fd = os.open(f"f{i}", os.O_CREAT | os.O_RDWR | os.O_TRUNC, 0o644, dir_fd=deep_fd)
        os.write(fd, PAYLOAD)
        os.pread(fd, len(PAYLOAD), 0)
        os.close(fd)

    deep_fd = os.open(deep_dir, os.O_RDONLY | os.O_DIRECTORY)

    def close() -> None:
        os.close(base_fd)
        os.close(deep_fd)
        shutil.rmtree(base)

    return Subject("host tmpfs (/dev/shm, os calls)", lookup, small_file, close)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lookups", type=int, default=5000)
    ap.add_argument("--files", type=int, default=2000)
    args = ap.parse_args(argv)

    host = host_subject()
    try:
        host_lookup = rate(args.lookups, host.lookup, LOOKUP_ROUNDS)
        host_files = rate(args.files, host.small_file)
    finally:
        host.close()

    table = Table(title=f"cove VFS vs host tmpfs ({args.lookups} lookups, "
                        f"{args.files} files per run)")
    table.add_column("subject")
    table.add_column("stat 5-deep /s", justify="right")
    table.add_column("ratio", justify="right")
    table.add_column("create+write+read+close /s", justify="right")
    table.add_column("ratio", justify="right")
    table.add_row(host.name, f"{host_lookup:,.0f}", "1", f"{host_files:,.0f}", "1")
    for make in (memfs_subject, overlay_memfs_subject, overlay_usr_subject):
        s = make()
        try:
            lk = rate(args.lookups, s.lookup, LOOKUP_ROUNDS)
            fl = rate(args.files, s.small_file)
        finally:
            s.close()
        table.add_row(s.name, f"{lk:,.0f}", f"{lk / host_lookup:.3f}",
                      f"{fl:,.0f}", f"{fl / host_files:.3f}")
    Console(width=130).print(table)


if __name__ == "__main__":
    main()
