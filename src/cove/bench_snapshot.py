"""``cove bench snapshot``: warm starts from snapshots next to cold runs.

Prints, in one run:
- a python3 that imported json, sqlite3 and decimal and waits for code on
  stdin: ``Sandbox.from_snapshot`` alone (with a VM from the pool of ready
  VMs, which is refilled outside the timed call; and with the pool off, so
  each call makes its VM), and + its first result (memory shared with the
  snapshot; and ``prefault=True``), next to a cold ``Sandbox.run`` of the
  same program. Closing the sandboxes is never timed;
- the same from the command line, as a user starts it (the installed ``cove``):
  ``cove restore`` wall time next to ``cove run``, interleaved (both include
  starting the Python interpreter that runs cove);
- ``snapshot()`` and ``restore()`` of 64 MB and 512 MB guests, idle and with
  most of their memory written (``restore`` of a sandbox's own snapshot
  replaces its guest in place: same VM, the image mapped over its memory);
- the memory 10 live sandboxes restored from one snapshot use, next to one,
  two ways (``_clone_memory``): the clones' own memory once the snapshot is
  resident (and how much of each further clone is pages its guest wrote),
  and the footprint the issue's target is about: everything the clones
  need, the snapshot's image included (counted once).

Targets from the issue are printed beside the figures; nothing is asserted.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cove import Sandbox

PY_WARM = ["python3", "-c", "import json, sqlite3, decimal; import sys; exec(sys.stdin.read())"]
FIRST = b'print(json.dumps({"ok": 1}))\n'

# A guest that writes N MiB of its memory, then waits for stdin.
FILLER = r"""
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
    size_t n = (size_t)atol(argv[1]) << 20;
    char *p = malloc(n);
    for (size_t i = 0; i < n; i += 4096) p[i] = (char)i;
    char c;
    return read(0, &c, 1) < 0;
}
"""

Row = tuple[str, "float | str", str]


def _times_ms(fn: Callable[[], object], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return times


def _median_ms(fn: Callable[[], object], repeat: int) -> float:
    return statistics.median(_times_ms(fn, repeat))


def _pss() -> int:
    with open("/proc/self/smaps_rollup") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("Pss:"))


def _python_rows() -> list[Row]:
    from cove import Sandbox, SandboxConfig
    from cove.platform.kvm import vmpool

    def cold() -> None:
        with Sandbox(config=SandboxConfig(memory="256M")) as sb:
            r = sb.run(PY_WARM, input=FIRST, capture_output=True)
            assert r.stdout == b'{"ok": 1}\n', r

    cold_ms = _median_ms(cold, 3)
    with Sandbox(config=SandboxConfig(memory="256M")) as sb:
        if sb.warm_up(PY_WARM) is None:
            snap = sb.snapshot()
        else:
            raise RuntimeError("python3 exited before reading stdin")

    def timed(make: Callable[[], Sandbox], then: Callable[[Sandbox], object] | None = None,
              repeat: int = 11, pool: bool = True) -> float:
        """Median ms of ``make`` (+ ``then``); closing is not timed. With
        ``pool``, a ready VM is waited for before each call (closed sandboxes
        give theirs back on a helper thread); without, the pool is off."""
        old = vmpool.set_limit(4 if pool else 0)
        times = []
        try:
            for _ in range(repeat):
                _settle()
                if pool:
                    vmpool.prepare(1)
                t = time.perf_counter()
                sb = make()
                try:
                    if then is not None:
                        then(sb)
                    times.append((time.perf_counter() - t) * 1e3)
                finally:
                    sb.close()
        finally:
            vmpool.set_limit(old)
        return statistics.median(times)

    def first(sb: Sandbox) -> None:
        r = sb.resume(input=FIRST, capture_output=True)
        assert r.stdout == b'{"ok": 1}\n', r

    Sandbox.from_snapshot(snap).close()  # first use imports the restore path
    from_ms = timed(lambda: Sandbox.from_snapshot(snap))
    cold_vm_ms = timed(lambda: Sandbox.from_snapshot(snap), pool=False)
    first_ms = timed(lambda: Sandbox.from_snapshot(snap), first, repeat=7)
    pre_ms = timed(lambda: Sandbox.from_snapshot(snap, prefault=True), first, repeat=7)
    return [
        ("python3 warm: from_snapshot (a pooled VM, made before the timed call)", from_ms,
         "ms (target <= 2)"),
        ("python3 warm: from_snapshot, no VM pool (a new VM)", cold_vm_ms, "ms"),
        ("python3 warm: from_snapshot + first result (shared memory)", first_ms, "ms"),
        ("python3 warm: from_snapshot(prefault=True) + first result", pre_ms, "ms"),
        ("python3 cold: Sandbox.run", cold_ms, "ms"),
        ("  warm / cold (shared memory)", first_ms / cold_ms, "x"),
        ("python3 snapshot: frames in use", len(snap.refs) * 4096 / 2**20, "MiB"),
    ]


# A python3 that answers one line at a time and stays alive between them.
PY_LINES = ["python3", "-u", "-c", "import json, sqlite3, decimal, sys\n"
            "while line := sys.stdin.readline(): exec(line)"]


def _settle() -> None:
    """Replaced and closed guests are released on helper threads: let them finish."""
    import gc
    import threading

    for th in threading.enumerate():
        if th.name == "cove-release":
            th.join()
    gc.collect()


def _guest_written(sandboxes: list[Any]) -> int:
    """Bytes of the sandboxes' guest memory that are their own: pages written
    since the restore (copies of image pages, and fresh pages), i.e. resident
    anonymous pages in their guest memory, from /proc/self/pagemap. (Not
    smaps: the anonymous tail of guest memory can merge with a neighbouring
    mapping of Python's, and an image page that one sandbox alone maps counts
    as Private_Dirty even if nobody wrote it.)"""
    total = 0
    fd = os.open("/proc/self/pagemap", os.O_RDONLY | os.O_CLOEXEC)
    try:
        for sb in sandboxes:
            phys = sb._live.phys
            raw = os.pread(fd, 8 * phys.nframes, phys.address // 4096 * 8)
            # bit 63: present; bit 61: a file page or shared memory (not written here)
            total += sum(1 for e in memoryview(raw).cast("Q") if e >> 61 == 0b100) * 4096
    finally:
        os.close(fd)
    return total


def _serve_first(snap: Any, n: int) -> tuple[list[Any], list[Any]]:
    """``n`` sandboxes restored from ``snap`` (memory shared), each alive after
    answering its first request."""
    from cove import Sandbox

    boxes, procs = [], []
    for _ in range(n):
        c = Sandbox.from_snapshot(snap)
        boxes.append(c)
        p = c.attach()
        procs.append(p)
        p.stdin.write(FIRST)
        assert p.stdout.readline() == b'{"ok": 1}\n'
    return boxes, procs


def _clone_memory() -> list[Row]:
    """Host memory (PSS, so pages shared by several sandboxes count once) of 1
    and of 10 sandboxes restored from one snapshot of a python3 (15 MiB of
    frames in use), each alive after answering its first request, two ways:

    - the clones' own memory: PSS growth once the snapshot is resident (its
      image in memory, its state decoded by an earlier restore). Image pages
      the clones map count (once) as they touch them; untouched ones do not;
    - the footprint the issue means ("ten clones of a 200 MB interpreter do
      not take 2 GB"): PSS growth from before ``Snapshot.load`` of the saved
      file, every frame of the image counted once, so 1 clone is the image
      plus what it added. Measured in a fresh interpreter per count (after a
      restore of a copy of the file there, kept alive, so code and first-use
      tables are loaded; the copy's pages are other pages).

    KVM's own memory (shadow page tables, vCPU state) is not in PSS."""
    import gc

    from cove import Sandbox, SandboxConfig

    with Sandbox(config=SandboxConfig(memory="256M")) as sb:
        if sb.warm_up(PY_LINES) is not None:
            raise RuntimeError("python3 exited before reading stdin")
        snap = sb.snapshot()
    Sandbox.from_snapshot(snap).close()  # the restore path imported, the state decoded

    def grow(n: int) -> tuple[int, int]:
        _settle()
        base = _pss()
        boxes, _procs = _serve_first(snap, n)
        gc.collect()
        used, own = _pss() - base, _guest_written(boxes)
        for c in boxes:
            c.close()
        _settle()
        return used, own

    (one, _), (ten, own10) = grow(1), grow(10)
    rows: list[Row] = [
        ("clones' own memory (PSS growth, the snapshot already resident): 1 python3 "
         "after a request", one / 2**20, "MiB"),
        ("  10 python3 after a request", ten / 2**20, "MiB"),
        ("  10 / 1", ten / max(1, one), "x"),
        ("  each clone beyond the first", (ten - one) / 9 / 2**20, "MiB"),
        ("    of which pages its guest wrote (its own copies)", own10 / 10 / 2**20, "MiB"),
    ]
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "py.snap")
        snap.save(path)
        snap.close()
        fp = {n: _footprint(path, n) for n in (1, 10)}
    rows += [
        ("footprint incl. the snapshot image (PSS growth from before Snapshot.load): "
         "1 python3 after a request", fp[1] / 2**20, "MiB"),
        ("  10 python3 after a request", fp[10] / 2**20, "MiB"),
        ("  10 / 1", fp[10] / max(1, fp[1]), "x (target <= 1.5)"),
    ]
    return rows


def _footprint(path: str, n: int) -> int:
    """PSS growth of ``n`` clones of the snapshot at ``path`` with its image
    (``_footprint_child``, in a fresh interpreter)."""
    r = subprocess.run([sys.executable, "-c", "import sys; from cove.bench_snapshot import "
                        f"_footprint_child; _footprint_child(sys.argv[1], {n})", path],
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0 or not r.stdout.strip():
        lines = r.stderr.strip().splitlines()
        raise RuntimeError(lines[-1] if lines else f"status {r.returncode}")
    return int(r.stdout.split()[-1])


def _footprint_child(path: str, n: int) -> None:
    import gc
    import mmap
    import shutil

    from cove import Snapshot

    # Code, syscall families and first-use tables loaded by a restore of a copy
    # of the file (other page cache pages), kept alive so that the clones below
    # reuse none of its memory.
    warm = f"{path}.warm"
    shutil.copyfile(path, warm)
    keep = _serve_first(Snapshot.load(warm), 1)
    _settle()
    base = _pss()
    snap = Snapshot.load(path)
    # Every frame of the image in memory and counted once: the clones' mappings
    # of the same pages add nothing more to PSS.
    img = mmap.mmap(snap.image_fd, snap.image_length, mmap.MAP_SHARED, mmap.PROT_READ,
                    offset=snap.image_offset)
    sum(img[f * 4096] for f in snap.refs)
    boxes, procs = _serve_first(snap, n)
    gc.collect()
    print(_pss() - base, flush=True)
    del keep, boxes, procs, img
    os._exit(0)  # the guests go with the process


def _cove_command() -> list[str]:
    """``cove`` as a user starts it: the installed command next to this
    interpreter (bin/cove), else ``python -m cove``."""
    launcher = os.path.join(os.path.dirname(sys.executable), "cove")
    return [launcher] if os.access(launcher, os.X_OK) else [sys.executable, "-m", "cove"]


def _cli_rows() -> list[Row]:
    cove = _cove_command()
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "py.snap")
        subprocess.run([*cove, "snapshot", "--out", path, "--", *PY_WARM], check=True,
                       stdin=subprocess.DEVNULL, capture_output=True)

        def timed(argv: list[str]) -> float:
            t = time.perf_counter()
            r = subprocess.run(argv, input=FIRST, capture_output=True)
            ms = (time.perf_counter() - t) * 1e3
            assert r.stdout == b'{"ok": 1}\n', r.stderr
            return ms

        # Interleaved, so that a slower minute of a shared machine weighs on both.
        warm, cold = [], []
        for i in range(11):
            warm.append(timed([*cove, "restore", path]))
            if i % 2 == 0:
                cold.append(timed([*cove, "run", "--", *PY_WARM]))
        warm_ms, cold_ms = statistics.median(warm), statistics.median(cold)

        def interpreter() -> None:
            subprocess.run([sys.executable, "-c", "pass"], check=True)

        python_ms = _median_ms(interpreter, 5)
    return [
        ("cove restore py.snap (wall)", warm_ms, f"ms median of {len(warm)}"),
        ("cove run python3 ... (wall)", cold_ms, f"ms median of {len(cold)}"),
        ("  warm / cold", warm_ms / cold_ms, "x (target <= 0.3)"),
        ("  of which starting Python itself", python_ms, "ms (each)"),
    ]


RESTORE_REPEAT = 101


def _guest_rows(filler: Path | None) -> list[Row]:
    from cove import Sandbox, SandboxConfig
    from cove.rootfs import MountSpec

    rows: list[Row] = []
    for mem in (64, 512):
        for fill in (0, mem * 3 // 4):
            if fill and filler is None:
                continue
            mounts = (MountSpec(str(filler.parent), "/bench"),) if filler else ()
            with Sandbox(config=SandboxConfig(memory=f"{mem}M"), mounts=mounts) as sb:
                argv = [f"/bench/{filler.name}", str(fill)] if fill and filler else \
                    ["/bin/busybox", "cat"]
                if sb.warm_up(argv) is not None:
                    raise RuntimeError(f"{argv[0]} exited before reading stdin")
                snap = sb.snapshot()
                snap_ms = _median_ms(sb.snapshot, 3)
                for _ in range(10):  # steady state: the first few after a fork-heavy part run cold
                    sb.restore(snap)
                # ~1 ms each on a shared machine: many, so the median and p90 hold still.
                times = sorted(_times_ms(lambda s=sb, p=snap: s.restore(p), RESTORE_REPEAT))
            what = f"{fill} MB written" if fill else "idle (busybox cat)"
            target = " (target <= 1)" if mem == 64 else ""
            p90 = times[len(times) * 9 // 10]
            rows.append((f"{mem} MB guest, {what}: snapshot()", snap_ms, "ms"))
            rows.append((f"{mem} MB guest, {what}: restore()", statistics.median(times),
                         f"ms median of {len(times)}, p90 {p90:.2f}{target}"))
    return rows


def bench_snapshot() -> list[Row]:
    from cove.bench import build

    try:
        filler: Path | None = build("snap_filler", FILLER)
    except Exception:  # no gcc: only the idle guests
        filler = None
    rows: list[Row] = []
    for part in (_python_rows, _clone_memory, _cli_rows, lambda: _guest_rows(filler)):
        try:
            rows += part()
        except Exception as e:  # one failing part must not hide the others
            rows.append((getattr(part, "__name__", "part"), f"n/a ({str(e)[:60]})", ""))
    return rows
