"""``cove bench``: cove next to native and gVisor (``runsc``), measured in one run.

Figures are printed, never asserted: speed is measured here, behaviour in tests.
Guest programs are small C files compiled with the host's gcc on first use and
cached under ``~/.cache/cove/bench``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

GETPPID_LOOP = r"""
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 100000;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++) syscall(SYS_getppid);
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%.4f\n", ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / n / 1000.0);
    return 0;
}
"""

CPU_LOOP = r"""
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 200000000;
    volatile unsigned long x = 0x9E3779B97F4A7C15ul;
    unsigned long acc = x;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++) { acc = acc * acc + (unsigned long)i; acc ^= acc >> 7; }
    clock_gettime(CLOCK_MONOTONIC, &b);
    x = acc;
    printf("%.3f\n", ((b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6));
    return 0;
}
"""

PIPE_THROUGHPUT = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>
/* Throughput of one pipe: a child writes TOTAL bytes in CHUNK writes, the
 * parent reads them; MB/s from the first write to the child's exit. */
int main(int argc, char **argv) {
    long total = (argc > 1 ? atol(argv[1]) : 64) << 20, chunk = 65536;
    int fds[2];
    static char buf[65536];
    if (pipe(fds)) return 1;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        memset(buf, 'x', sizeof buf);
        for (long done = 0; done < total;) {
            ssize_t n = write(fds[1], buf, chunk);
            if (n <= 0) _exit(2);
            done += n;
        }
        _exit(0);
    }
    close(fds[1]);
    long got = 0;
    for (;;) {
        ssize_t n = read(fds[0], buf, sizeof buf);
        if (n < 0) return 3;
        if (n == 0) break;
        got += n;
    }
    int st;
    waitpid(pid, &st, 0);
    clock_gettime(CLOCK_MONOTONIC, &b);
    if (got != total || st != 0) return 4;
    double s = (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
    printf("%.1f\n", total / 1048576.0 / s);
    return 0;
}
"""

# The directory the sandbox sees the benchmark binaries in (a --mount).
GUEST_DIR = "/bench"


def _cache_dir() -> Path:
    d = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cove" / "bench"
    d.mkdir(parents=True, exist_ok=True)
    return d


def build(name: str, source: str) -> Path:
    """Compile ``source`` statically (cached by content)."""
    digest = hashlib.sha256(source.encode()).hexdigest()[:12]
    out = _cache_dir() / f"{name}-{digest}"
    if not out.exists():
        src = out.with_suffix(".c")
        src.write_text(source)
        subprocess.run(["gcc", "-static", "-O2", "-o", str(out), str(src)], check=True)
    return out


def _cove_cmd() -> list[str]:
    return [sys.executable, "-m", "cove.cli"]


def _run_out(cmd: list[str], timeout: float = 300) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr.strip()[-300:]}")
    return r.stdout.strip()


PLATFORMS = ("kvm", "userland")


def in_cove(binary: Path, *args: str, platform: str = "kvm") -> list[str]:
    return [*_cove_cmd(), "run", "--platform", platform, "--mount",
            f"{binary.parent}:{GUEST_DIR}", "--", f"{GUEST_DIR}/{binary.name}", *args]


def in_runsc(binary: Path, *args: str) -> list[str] | None:
    runsc = shutil.which("runsc")
    if runsc is None:
        return None
    return [runsc, "--platform=ptrace", "--network=none", "--rootless", "do",
            str(binary), *args]


def wall(cmd: list[str], repeat: int = 5) -> float:
    """Median wall time of a command, in milliseconds."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=False, timeout=300)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def _try(fn: Callable[[], float]) -> float | str:
    try:
        return fn()
    except Exception as e:  # a missing peer or platform is reported, not fatal
        return f"n/a ({str(e).splitlines()[0][:60]})"


def syscall_floor_us(iters: int = 20000) -> float:
    """The bare guest-syscall round trip on kvm (no North work)."""
    from cove.platform.kvm.floor import syscall_round_trip_us

    return syscall_round_trip_us(iters)


def bench_syscall(iters: int = 20000) -> list[tuple[str, float | str, str]]:
    loop = build("getppid_loop", GETPPID_LOOP)
    cpu = build("cpu_loop", CPU_LOOP)
    native = float(_run_out([str(loop), "2000000"]))
    rows: list[tuple[str, float | str, str]] = [("getppid, native", native, "µs/call")]
    floor = _try(lambda: syscall_floor_us(iters))
    cmd = in_runsc(loop, str(iters * 5))
    runsc = _try(lambda: float(_run_out(cmd))) if cmd else "n/a (runsc not installed)"
    rows.append(("guest syscall floor (kvm, no North work)", floor, "µs/call"))
    rows.append(("getppid, runsc (ptrace)", runsc, "µs/call"))
    for plat in PLATFORMS:
        cove = _try(lambda p=plat: float(_run_out(in_cove(loop, str(iters), platform=p))))
        rows.append((f"getppid, cove-{plat}", cove, "µs/call"))
        if plat == "kvm" and isinstance(cove, float) and isinstance(floor, float):
            rows.append(("cove-kvm / floor", cove / floor, "x (target ≤ 1.3)"))
        if isinstance(cove, float) and isinstance(runsc, float):
            target = " (target ≤ 0.8)" if plat == "userland" else ""
            rows.append((f"cove-{plat} / runsc", cove / runsc, "x" + target))
    cpu_native = float(_run_out([str(cpu)]))
    cpu_cove = _try(lambda: float(_run_out(in_cove(cpu, platform="kvm"))))
    rows.append(("CPU loop, native", cpu_native, "ms"))
    rows.append(("CPU loop, cove-kvm", cpu_cove, "ms"))
    if isinstance(cpu_cove, float):
        rows.append(("cove speed vs native", cpu_native / cpu_cove, "x (target ≥ 0.95)"))
    busybox = shutil.which("busybox") or "/bin/busybox"
    for plat in PLATFORMS:
        rows.append((f"cove run --platform {plat} /bin/busybox true",
                     _try(lambda p=plat: wall([*_cove_cmd(), "run", "--platform", p, "--",
                                               busybox, "true"])),
                     "ms wall (target ≤ 150)"))
    rows.append(("native /bin/busybox true", _try(lambda: wall([busybox, "true"])), "ms wall"))
    rcmd = in_runsc(Path(busybox), "true")
    if rcmd:
        rows.append(("runsc do /bin/busybox true", _try(lambda: wall(rcmd)), "ms wall"))
    return rows


FORK_EXEC_LOOP = "i=0; while [ $i -lt 200 ]; do /bin/true; i=$((i+1)); done"
PIPE_64M = "busybox dd if=/dev/zero bs=65536 count=1024 2>/dev/null | busybox cat > /dev/null"


def _three_way(name: str, argv: list[str], unit: str = "ms wall",
               repeat: int = 3) -> list[tuple[str, float | str, str]]:
    """The same command natively, in cove (each platform) and under runsc."""
    native = _try(lambda: wall(argv, repeat))
    runsc = shutil.which("runsc")
    gvisor: float | str = "n/a (runsc not installed)"
    if runsc:
        gvisor = _try(lambda: wall([runsc, "--platform=ptrace", "--network=none",
                                    "--rootless", "do", *argv], repeat))
    rows: list[tuple[str, float | str, str]] = [
        (f"{name}, native", native, unit), (f"{name}, runsc (ptrace)", gvisor, unit)]
    for plat in PLATFORMS:
        cove = _try(lambda p=plat: wall([*_cove_cmd(), "run", "--platform", p, "--", *argv],
                                        repeat))
        rows.append((f"{name}, cove-{plat}", cove, unit))
        if isinstance(cove, float) and isinstance(native, float):
            rows.append((f"{name}: cove-{plat} / native", cove / native, "x"))
        if isinstance(cove, float) and isinstance(gvisor, float):
            rows.append((f"{name}: cove-{plat} / runsc", cove / gvisor, "x"))
    return rows


def bench_pipe_throughput(megabytes: int = 64,
                          repeat: int = 3) -> list[tuple[str, float | str, str]]:
    """MB/s of one pipe as the guest measures it (no sandbox start-up in it)."""
    prog = build("pipe_throughput", PIPE_THROUGHPUT)
    name = f"{megabytes} MB through a pipe, in-guest throughput"

    def best(cmd: list[str]) -> float:
        return max(float(_run_out(cmd)) for _ in range(repeat))

    native = _try(lambda: best([str(prog), str(megabytes)]))
    cmd = in_runsc(prog, str(megabytes))
    runsc = _try(lambda: best(cmd)) if cmd else "n/a (runsc not installed)"
    rows: list[tuple[str, float | str, str]] = [
        (f"{name}, native", native, "MB/s"), (f"{name}, runsc (ptrace)", runsc, "MB/s")]
    for plat in PLATFORMS:
        cove = _try(lambda p=plat: best(in_cove(prog, str(megabytes), platform=p)))
        rows.append((f"{name}, cove-{plat}", cove, "MB/s"))
        if isinstance(cove, float) and isinstance(runsc, float):
            target = " (target ≥ 2)" if plat == "userland" else ""
            rows.append((f"{name}: cove-{plat} / runsc", cove / runsc, "x" + target))
    # One guest thread at a time (COVE_CPUS=1: no native mode; docs/userland-pipes.md).
    cmd = ["env", "COVE_CPUS=1", *in_cove(prog, str(megabytes), platform="userland")]
    cove = _try(lambda: best(cmd))
    rows.append((f"{name}, cove-userland COVE_CPUS=1", cove, "MB/s"))
    if isinstance(cove, float) and isinstance(runsc, float):
        rows.append((f"{name}: cove-userland COVE_CPUS=1 / runsc", cove / runsc, "x"))
    return rows


def bench_process() -> list[tuple[str, float | str, str]]:
    busybox = shutil.which("busybox") or "/bin/busybox"
    python3 = shutil.which("python3") or "/usr/bin/python3"
    # The host's python3 for the guest, not this venv's (the sandbox sees the host's /).
    python3 = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else python3
    return [
        *_three_way("python3 -c pass", [python3, "-c", "pass"]),
        *_three_way("200 x fork+exec+wait of /bin/true", [busybox, "sh", "-c", FORK_EXEC_LOOP],
                    repeat=1),
        *_three_way("64 MB through a pipe", [busybox, "sh", "-c", PIPE_64M], repeat=1),
        *bench_pipe_throughput(),
    ]


def print_rows(title: str, rows: list[tuple[str, float | str, str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("unit")
    for name, value, unit in rows:
        table.add_row(name, f"{value:.2f}" if isinstance(value, float) else value, unit)
    Console().print(table)


def bench_snapshot() -> list[tuple[str, float | str, str]]:
    """Warm starts from snapshots next to cold runs (cove.bench_snapshot)."""
    from cove.bench_snapshot import bench_snapshot as run

    return run()


def main(which: str = "syscall") -> int:
    if which in ("syscall", "all"):
        print_rows("cove bench syscall", bench_syscall())
    if which in ("process", "all"):
        print_rows("cove bench process", bench_process())
    if which in ("snapshot", "all"):
        print_rows("cove bench snapshot", bench_snapshot())
    return 0
