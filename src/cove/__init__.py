"""cove: a security-focused library OS that runs unmodified Linux x86-64 programs
in a sandbox with its own Linux personality.

    from cove import Sandbox, SandboxConfig
    with Sandbox(rootfs="host") as sb:
        print(sb.run(["python3", "-c", "print(6*7)"], capture_output=True).stdout)
"""

from __future__ import annotations

__version__ = "0.1.0"

# Public name -> the module defining it (imported on first use).
_EXPORTS = {
    "CompletedRun": "cove.sandbox",
    "CoveError": "cove.sandbox",
    "DEVNULL": "cove.sandbox",
    "GuestProcess": "cove.sandbox",
    "PIPE": "cove.sandbox",
    "ProgramNotFound": "cove.sandbox",
    "Sandbox": "cove.sandbox",
    "SandboxConfig": "cove.sandbox",
    "SandboxState": "cove.sandbox",
    "SandboxStateError": "cove.sandbox",
    "SandboxTimeout": "cove.sandbox",
    "Snapshot": "cove.snapshot",
    "SnapshotError": "cove.snapshot",
    "SnapshotFormatError": "cove.snapshot",
    "SnapshotHostFunctionMismatch": "cove.snapshot",
    "SnapshotLayoutConflict": "cove.snapshot",
    "SnapshotNotSupported": "cove.snapshot",
    "HostFunctions": "cove.hostfuncs",
}

__all__ = [
    "DEVNULL", "PIPE", "CompletedRun", "CoveError", "GuestProcess", "HostFunctions",
    "ProgramNotFound", "Sandbox", "SandboxConfig", "SandboxState", "SandboxStateError",
    "SandboxTimeout", "Snapshot", "SnapshotError", "SnapshotFormatError",
    "SnapshotHostFunctionMismatch", "SnapshotLayoutConflict", "SnapshotNotSupported",
    "__version__",
]

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from typing import Any

    from cove.hostfuncs import HostFunctions
    from cove.sandbox import (
        DEVNULL,
        PIPE,
        CompletedRun,
        CoveError,
        GuestProcess,
        ProgramNotFound,
        Sandbox,
        SandboxConfig,
        SandboxState,
        SandboxStateError,
        SandboxTimeout,
    )
    from cove.snapshot import (
        Snapshot,
        SnapshotError,
        SnapshotFormatError,
        SnapshotHostFunctionMismatch,
        SnapshotLayoutConflict,
        SnapshotNotSupported,
    )


def __getattr__(name: str) -> Any:
    # Lazy: `import cove` stays cheap for the CLI and for tools that only read the version.
    module = _EXPORTS.get(name)
    if module is not None:
        import importlib

        return getattr(importlib.import_module(module), name)
    raise AttributeError(f"module 'cove' has no attribute {name!r}")
