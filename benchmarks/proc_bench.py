"""Process creation and syscall speed: cove (kvm) next to native and gVisor.

    python benchmarks/proc_bench.py [--repeat N] [--cycles N] [--src DIR] [--only NAME ...]

Figures (wall time, best of ``--repeat`` runs: the machine is shared, and the
minimum is the least disturbed):
- ``fork+exec+wait``: busybox sh running ``/bin/true`` (dynamically linked)
  ``--cycles`` times, and the same with ``busybox true`` (static);
- ``getppid``: µs per call of a static getppid loop, next to the platform's
  floor (a guest that only does syscalls, answered with no North work);
- ``busybox true`` and ``python3 -c pass``: one whole ``cove run`` (process
  start, imports, VM, load, run, exit).
Each is run natively, in ``cove run`` and under ``runsc --platform=ptrace
--network=none --rootless do`` when runsc is installed.

``--src DIR`` runs cove from another source tree (e.g. an older checkout made
with ``git archive``), for before/after figures. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable

from cove import bench

BUSYBOX = shutil.which("busybox") or "/bin/busybox"
PYTHON3 = "/usr/bin/python3"


def loop(cycles: int, prog: str) -> str:
    return f"i=0; while [ $i -lt {cycles} ]; do {prog}; i=$((i+1)); done"


class Runner:
    def __init__(self, src: str | None, repeat: int) -> None:
        self.env = dict(os.environ)
        # Measure cove as it is used: with its bytecode cached, not recompiled per run.
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        if src:
            self.env["PYTHONPATH"] = os.path.abspath(src)
        self.repeat = repeat
        self.runsc = shutil.which("runsc")
        subprocess.run(self.cove([BUSYBOX, "true"]), capture_output=True, env=self.env,
                       check=False)  # warm-up: writes the bytecode caches

    def best(self, argv: list[str]) -> float:
        """Best wall time of ``argv`` in ms; raises if it fails."""
        times = []
        for _ in range(self.repeat):
            t0 = time.perf_counter()
            r = subprocess.run(argv, capture_output=True, env=self.env, timeout=600, check=False)
            times.append((time.perf_counter() - t0) * 1e3)
            if r.returncode != 0:
                raise RuntimeError(f"exit {r.returncode}: {r.stderr.decode()[-200:]}")
        return min(times)

    def cove(self, argv: list[str]) -> list[str]:
        return [sys.executable, "-m", "cove.cli", "run", "--", *argv]

    def gvisor(self, argv: list[str]) -> list[str] | None:
        if not self.runsc:
            return None
        return [self.runsc, "--platform=ptrace", "--network=none", "--rootless", "do", *argv]

    def three_way(self, argv: list[str]) -> dict[str, float | str]:
        out: dict[str, float | str] = {}
        out["native"] = _try(lambda: self.best(argv))
        out["cove"] = _try(lambda: self.best(self.cove(argv)))
        g = self.gvisor(argv)
        out["runsc"] = _try(lambda: self.best(g)) if g else "n/a"
        return out

    def getppid(self, iters: int) -> dict[str, float | str]:
        binary = bench.build("getppid_loop", bench.GETPPID_LOOP)
        argv = [sys.executable, "-m", "cove.cli", "run", "--mount",
                f"{binary.parent}:{bench.GUEST_DIR}", "--",
                f"{bench.GUEST_DIR}/{binary.name}", str(iters)]

        def cove() -> float:
            return min(float(subprocess.run(argv, capture_output=True, text=True, env=self.env,
                                            check=True).stdout) for _ in range(self.repeat))

        def floor() -> float:
            code = ("from cove.platform.kvm.floor import syscall_round_trip_us as f;"
                    f"print(min(f({iters}) for _ in range({self.repeat})))")
            return float(subprocess.run([sys.executable, "-c", code], capture_output=True,
                                        text=True, env=self.env, check=True).stdout)

        out: dict[str, float | str] = {
            "native": float(subprocess.run([str(binary), "1000000"], capture_output=True,
                                           text=True, check=True).stdout),
            "cove": _try(cove), "floor": _try(floor)}
        g = self.gvisor([str(binary), str(iters * 5)])
        out["runsc"] = _try(lambda: float(subprocess.run(g, capture_output=True, text=True,
                                                         check=True).stdout)) if g else "n/a"
        return out


def _try(fn: Callable[[], float]) -> float | str:
    try:
        return fn()
    except Exception as e:  # a missing peer is reported, not fatal
        return f"n/a ({str(e).splitlines()[0][:50]})"


def _fmt(v: float | str) -> str:
    return f"{v:9.2f}" if isinstance(v, float) else f"{v:>9}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cycles", type=int, default=200)
    ap.add_argument("--iters", type=int, default=20000, help="getppid calls per run")
    ap.add_argument("--src", help="run cove from this source tree (its src/ directory)")
    ap.add_argument("--only", nargs="*", default=None,
                    help="forkexec forkexec-static getppid busybox python")
    a = ap.parse_args()
    r = Runner(a.src, a.repeat)
    want = set(a.only) if a.only else {"forkexec", "forkexec-static", "getppid", "busybox",
                                       "python"}
    print(f"{'measure':44s} {'native':>9} {'cove':>9} {'runsc':>9}  unit")
    if "forkexec" in want:
        m = r.three_way([BUSYBOX, "sh", "-c", loop(a.cycles, "/bin/true")])
        print(f"{f'{a.cycles} x fork+exec+wait /bin/true':44s} "
              f"{_fmt(m['native'])} {_fmt(m['cove'])} {_fmt(m['runsc'])}  ms")
    if "forkexec-static" in want:
        m = r.three_way([BUSYBOX, "sh", "-c", loop(a.cycles, "busybox true")])
        print(f"{f'{a.cycles} x fork+exec+wait busybox true':44s} "
              f"{_fmt(m['native'])} {_fmt(m['cove'])} {_fmt(m['runsc'])}  ms")
    if "getppid" in want:
        m = r.getppid(a.iters)
        print(f"{'getppid':44s} {_fmt(m['native'])} {_fmt(m['cove'])} {_fmt(m['runsc'])}  µs/call")
        print(f"{'  guest syscall floor (kvm, no North work)':44s} {'':9} {_fmt(m['floor'])}"
              f" {'':9}  µs/call")
        if isinstance(m["cove"], float) and isinstance(m["floor"], float):
            print(f"{'  cove / floor':44s} {'':9} {m['cove'] / m['floor']:9.2f} {'':9}  x")
    if "busybox" in want:
        m = r.three_way([BUSYBOX, "true"])
        print(f"{'busybox true (one whole run)':44s} "
              f"{_fmt(m['native'])} {_fmt(m['cove'])} {_fmt(m['runsc'])}  ms")
    if "python" in want:
        m = r.three_way([PYTHON3, "-c", "pass"])
        print(f"{'python3 -c pass (one whole run)':44s} "
              f"{_fmt(m['native'])} {_fmt(m['cove'])} {_fmt(m['runsc'])}  ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
