"""Generate, build and run the C programs that tell us the ABI's real values.

Two header sets: the kernel's uapi headers (the truth for a kernel ABI) and
glibc's (for the few names only libc defines). They cannot share a
translation unit (both define struct stat, sigaction, termios...), so each is
its own program. The programs are generated from the Python modules, so every
constant and every layout member cove defines gets checked.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from pathlib import Path

KERNEL_INCLUDES = """
#include <stdio.h>
#include <stddef.h>
#include <linux/types.h>
#include <linux/fcntl.h>
#include <linux/fs.h>
#include <linux/stat.h>
#include <linux/openat2.h>
#include <linux/uio.h>
#include <asm/mman.h>
#include <linux/mman.h>
#include <asm/signal.h>
#include <linux/signal.h>
#include <asm/siginfo.h>
#include <asm/sigcontext.h>
#include <asm/ucontext.h>
#include <linux/sched.h>
#include <linux/wait.h>
#include <linux/futex.h>
#include <linux/eventpoll.h>
#include <linux/poll.h>
#include <asm/ioctls.h>
#include <asm/termios.h>
#include <linux/resource.h>
#include <linux/time.h>
#include <linux/times.h>
#include <asm/prctl.h>
#include <linux/prctl.h>
#include <linux/auxvec.h>
#include <linux/memfd.h>
#include <linux/signalfd.h>
#include <linux/timerfd.h>
#include <linux/rseq.h>
#include <linux/utsname.h>
#include <linux/sysinfo.h>
#include <linux/inotify.h>
#include <asm/stat.h>
#include <asm/statfs.h>
#include <linux/un.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <asm/socket.h>
#include <linux/sockios.h>

/* arch/x86/include/asm/sigframe.h (not uapi), rebuilt from uapi parts. */
struct cove_rt_sigframe { char *pretcode; struct ucontext uc; siginfo_t info; };
"""

GLIBC_INCLUDES = """
#define _GNU_SOURCE
#include <stdio.h>
#include <stddef.h>
#include <unistd.h>
#include <fcntl.h>
#include <dirent.h>
#include <sched.h>
#include <signal.h>
#include <sys/auxv.h>
#include <sys/ucontext.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/uio.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <netinet/udp.h>
#include <net/if.h>
"""


def _c_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def program(
    includes: str, consts: dict[str, str], layouts: dict[str, tuple[str, str, list]]
) -> str:
    """C source printing one tab-separated line per constant and layout member.

    ``consts``: key -> C name or expression. A bare identifier is wrapped in
    #ifdef and prints ``?`` when the headers lack it. ``layouts``: key ->
    (C type, C expression for its size, [(cpath, is_integer)]).
    """
    out = [includes, "int main(void) {"]
    for key, expr in consts.items():
        line = (
            f'  printf("C\\t%s\\t%lld\\t%llu\\n", {_c_string(key)}, '
            f"(long long)({expr}), (unsigned long long)({expr}));"
        )
        if re.fullmatch(r"\w+", expr):
            missing = f'  printf("C\\t%s\\t?\\n", {_c_string(key)});'
            out += [f"#ifdef {expr}", line, "#else", missing, "#endif"]
        else:
            out.append(line)
    for key, (ctype, size, members) in layouts.items():
        out.append(f'  printf("S\\t%s\\t%zu\\n", {_c_string(key)}, (size_t)({size}));')
        for cpath, is_int in members:
            m = f"(({ctype} *)0)->{cpath}"
            signed = f"((__typeof__({m}))-1 < (__typeof__({m}))0)" if is_int else "-1"
            out.append(
                f'  printf("M\\t%s\\t%s\\t%zu\\t%zu\\t%d\\n", {_c_string(key)}, '
                f"{_c_string(cpath)}, offsetof({ctype}, {cpath}), sizeof({m}), (int){signed});"
            )
    out += ["  return 0;", "}", ""]
    return "\n".join(out)


class Compiler:
    """Builds C programs once per test session, cached by source hash."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.gcc = shutil.which("gcc")

    def build(self, source: str, *flags: str) -> Path:
        if self.gcc is None:
            raise RuntimeError("gcc not found")
        digest = hashlib.sha256((source + "\0".join(flags)).encode()).hexdigest()[:16]
        exe = self.workdir / f"p-{digest}"
        if not exe.exists():
            src = self.workdir / f"p-{digest}.c"
            src.write_text(source)
            r = subprocess.run(
                [self.gcc, "-O0", "-w", "-o", str(exe), str(src), *flags],
                capture_output=True,
                text=True,
                timeout=120,
            )
            if r.returncode != 0:
                raise RuntimeError(f"gcc failed on {src}:\n{r.stderr[-4000:]}")
        return exe

    def run(self, source: str, *args: str) -> str:
        exe = self.build(source)
        r = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise RuntimeError(f"{exe} {args} exited {r.returncode}: {r.stderr}")
        return r.stdout


def parse(output: str) -> tuple[dict, dict, dict]:
    """(constants, sizes, members) from a probe program's output."""
    consts: dict[str, tuple[int, int] | None] = {}
    sizes: dict[str, int] = {}
    members: dict[tuple[str, str], tuple[int, int, int]] = {}
    for line in output.splitlines():
        kind, *f = line.split("\t")
        if kind == "C":
            consts[f[0]] = None if f[1] == "?" else (int(f[1]), int(f[2]))
        elif kind == "S":
            sizes[f[0]] = int(f[1])
        elif kind == "M":
            members[(f[0], f[1])] = (int(f[2]), int(f[3]), int(f[4]))
    return consts, sizes, members
