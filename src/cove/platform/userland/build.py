"""Build the stub program (stub.c) with the host's gcc on first use.

The binary is cached by the hash of its source and compiler flags under
``$XDG_CACHE_HOME/cove/userland`` (``COVE_STUB_CACHE`` overrides), so a
sandbox pays for gcc once per machine. No binary is shipped: the stub is
always exactly the source next to this file.
"""

from __future__ import annotations

import os
import stat
import threading

from cove.platform.base import PlatformUnavailable

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any, TypeVar

    _P = TypeVar("_P", str, Path)

# os.path, not pathlib, and the build's imports (subprocess, tempfile, shutil) only
# when building: every sandbox start asks for the stub, gcc runs once per machine.
SOURCE_PATH = os.path.join(os.path.dirname(os.path.realpath(__file__)), "stub.c")
# -mgeneral-regs-only: the stub never touches FPU/SSE state, so a fresh
# thread's XSAVE image is the CPU's init state (the platform's template).
CFLAGS = ["-static", "-nostdlib", "-O2", "-fno-stack-protector", "-fno-builtin", "-fno-pie",
          "-no-pie", "-mgeneral-regs-only", "-fcf-protection=none", "-Wall", "-Werror"]

_lock = threading.Lock()


def __getattr__(name: str) -> Any:
    if name == "SOURCE":  # the source as a Path, for callers that want one
        from pathlib import Path

        return Path(SOURCE_PATH)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _sha256(data: bytes) -> str:
    # The interpreter's own SHA-256 when it has one (hashlib loads OpenSSL, ~2 ms).
    try:
        from _sha2 import sha256  # type: ignore[import-not-found]  # 3.12+
    except ImportError:
        try:
            from _sha256 import sha256  # type: ignore[import-not-found,no-redef]  # 3.11
        except ImportError:
            from hashlib import sha256  # type: ignore[assignment]
    return sha256(data).hexdigest()  # type: ignore[no-any-return]


def cache_dir() -> str:
    env = os.environ.get("COVE_STUB_CACHE")
    if env:
        return env
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "cove", "userland")


def _temp_dir() -> str:
    import tempfile

    return os.path.join(tempfile.gettempdir(), f"cove-{os.getuid()}")


def stub_path() -> str:
    """The built stub (building it if needed). Raises PlatformUnavailable
    when there is no working gcc."""
    with open(SOURCE_PATH, "rb") as f:
        src = f.read()
    digest = _sha256(src + " ".join(CFLAGS).encode())[:16]
    name = f"cove-stub-{digest}"
    # The temp-dir fallback (an unwritable cache) is looked at only when the cache misses.
    for d in (cache_dir, _temp_dir):
        path = os.path.join(d(), name)
        if _ours(os.path.dirname(path)) and _ours(path):
            return path
    try:
        return _build(src, os.path.join(cache_dir(), name))
    except OSError:  # an unwritable cache (read-only home): a private temp dir
        return _build(src, os.path.join(_temp_dir(), name))


def _ours(p: str | Path) -> bool:
    """The stub is exec'd with our privileges: never run a file (or from a
    directory) someone else could have planted or could change."""
    try:
        st = os.lstat(p)
    except OSError:
        return False
    return st.st_uid == os.getuid() and not st.st_mode & 0o022 and not stat.S_ISLNK(st.st_mode)


def _build(src: bytes, out: _P) -> _P:
    """Compile the stub to ``out`` (a str or Path, returned as given)."""
    import shutil
    import subprocess
    import tempfile

    with _lock:
        if os.path.exists(out):
            return out
        gcc = shutil.which(os.environ.get("CC", "gcc"))
        if gcc is None:
            raise PlatformUnavailable("userland platform: gcc is needed to build its stub once")
        parent = os.path.dirname(os.fspath(out))
        os.makedirs(parent, mode=0o700, exist_ok=True)
        if not _ours(parent):
            raise PlatformUnavailable(f"userland platform: {parent} is not a private "
                                      "directory of this user; set COVE_STUB_CACHE")
        fd, tmp = tempfile.mkstemp(dir=parent, prefix=".stub-")
        os.close(fd)
        try:
            r = subprocess.run([gcc, *CFLAGS, "-o", tmp, SOURCE_PATH],
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
