"""Build the stub program (stub.c) with the host's gcc on first use.

The binary is cached by the hash of its source and compiler flags under
``$XDG_CACHE_HOME/cove/userland`` (``COVE_STUB_CACHE`` overrides), so a
sandbox pays for gcc once per machine. No binary is shipped: the stub is
always exactly the source next to this file.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

from cove.platform.base import PlatformUnavailable

SOURCE = Path(__file__).resolve().parent / "stub.c"
# -mgeneral-regs-only: the stub never touches FPU/SSE state, so a fresh
# thread's XSAVE image is the CPU's init state (the platform's template).
CFLAGS = ["-static", "-nostdlib", "-O2", "-fno-stack-protector", "-fno-builtin", "-fno-pie",
          "-no-pie", "-mgeneral-regs-only", "-fcf-protection=none", "-Wall", "-Werror"]

_lock = threading.Lock()


def cache_dir() -> Path:
    env = os.environ.get("COVE_STUB_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cove" / "userland"


def stub_path() -> Path:
    """The built stub (building it if needed). Raises PlatformUnavailable
    when there is no working gcc."""
    src = SOURCE.read_bytes()
    digest = hashlib.sha256(src + " ".join(CFLAGS).encode()).hexdigest()[:16]
    out = cache_dir() / f"cove-stub-{digest}"
    if out.exists():
        return out
    with _lock:
        if out.exists():
            return out
        gcc = shutil.which(os.environ.get("CC", "gcc"))
        if gcc is None:
            raise PlatformUnavailable("userland platform: gcc is needed to build its stub once")
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".stub-")
        os.close(fd)
        try:
            r = subprocess.run([gcc, *CFLAGS, "-o", tmp, str(SOURCE)],
                               capture_output=True, text=True)
            if r.returncode != 0:
                raise PlatformUnavailable(
                    f"userland platform: building the stub failed:\n{r.stderr.strip()}")
            os.chmod(tmp, 0o755)
            os.replace(tmp, out)  # atomic: concurrent builders agree
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return out
