"""cove: a security-focused library OS that runs unmodified Linux x86-64 programs
in a sandbox with its own Linux personality.

    from cove import Sandbox, SandboxConfig
    with Sandbox(rootfs="host") as sb:
        print(sb.run(["python3", "-c", "print(6*7)"], capture_output=True).stdout)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["CompletedRun", "CoveError", "ProgramNotFound", "Sandbox", "SandboxConfig",
           "__version__"]

if TYPE_CHECKING:
    from cove.sandbox import CompletedRun, CoveError, ProgramNotFound, Sandbox, SandboxConfig


def __getattr__(name: str) -> Any:
    # Lazy: `import cove` stays cheap for the CLI and for tools that only read the version.
    if name in __all__:
        from cove import sandbox

        return getattr(sandbox, name)
    raise AttributeError(f"module 'cove' has no attribute {name!r}")
