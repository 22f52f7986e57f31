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
    name = f"cove-stub-{digest}"
    dirs = (cache_dir(), Path(tempfile.gettempdir()) / f"cove-{os.getuid()}")
    for d in dirs:
        if (d / name).exists() and _ours(d) and _ours(d / name):
            return d / name
    try:
        return _build(src, dirs[0] / name)
    except OSError:  # an unwritable cache (read-only home): a private temp dir
        return _build(src, dirs[1] / name)


def _ours(p: Path) -> bool:
    """The stub is exec'd with our privileges: never run a file (or from a
    directory) someone else could have planted or could change."""
    try:
        st = p.lstat()
    except OSError:
        return False
    return st.st_uid == os.getuid() and not st.st_mode & 0o022 and not p.is_symlink()


def _build(src: bytes, out: Path) -> Path:
    with _lock:
        if out.exists():
            return out
        gcc = shutil.which(os.environ.get("CC", "gcc"))
        if gcc is None:
            raise PlatformUnavailable("userland platform: gcc is needed to build its stub once")
        out.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not _ours(out.parent):
            raise PlatformUnavailable(f"userland platform: {out.parent} is not a private "
                                      "directory of this user; set COVE_STUB_CACHE")
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
