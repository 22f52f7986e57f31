"""``cove snapshot`` and ``cove restore``: warm starts from the command line.

    cove snapshot --out py.snap -- python3 -c "import json; import sys; exec(sys.stdin.read())"
    echo 'print(json.dumps({"ok": 1}))' | cove restore py.snap

``snapshot`` runs the program until it first blocks reading its stdin (its
warm, ready point: imports done, waiting for work), saves the whole sandbox
and exits. ``restore`` builds a sandbox from the file without running any
program from the start and continues the saved one with this process's
stdin, stdout and stderr. Both sandboxes offer ``HostFunctions.default()``
(host_print), so a snapshot made here restores here.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    import argparse
    from typing import Any

EXIT_USAGE = 2
EXIT_CANNOT_EXECUTE = 126
EXIT_NOT_FOUND = 127
EXIT_TIMEOUT = 124


def add_parsers(sub: Any, add_run_options: Callable[[argparse.ArgumentParser], None]) -> None:
    snap = sub.add_parser(
        "snapshot", help="run a program until it waits for stdin, then save it",
        description="Run PROGRAM until it first blocks reading stdin (its warm, ready "
                    "point), save the whole sandbox to FILE and exit.")
    snap.add_argument("--out", required=True, metavar="FILE", help="where to save the snapshot")
    add_run_options(snap)
    rest = sub.add_parser(
        "restore", help="continue a saved snapshot with this terminal's stdio",
        description="Continue the program saved in FILE with this process's stdin, stdout "
                    "and stderr; exit with its status.")
    rest.add_argument("file", metavar="FILE")
    from cove.cli_args import RESTORE_OPTIONS, add_options

    add_options(rest, RESTORE_OPTIONS)


def run(ns: argparse.Namespace) -> int:
    # A restore starts reading and checking its file (and readying its memory)
    # on helper threads before this thread imports the rest of cove.
    early = _begin_restore(ns) if ns.command == "restore" else None
    from cove.platform.base import PlatformUnavailable
    from cove.rootfs import RootfsError
    from cove.sandbox import CoveError, ProgramNotFound, SandboxTimeout

    try:
        return _snapshot(ns) if ns.command == "snapshot" else _restore(ns, early)
    except ProgramNotFound as e:
        return _fail(str(e), EXIT_NOT_FOUND)
    except SandboxTimeout as e:
        return _fail(str(e), EXIT_TIMEOUT)
    except (CoveError, RootfsError) as e:
        return _fail(str(e), EXIT_CANNOT_EXECUTE if ns.command == "snapshot" else 1)
    except PlatformUnavailable as e:
        return _fail(str(e), 1)
    except OSError as e:
        return _fail(f"{e.filename or ''}{': ' if e.filename else ''}{e.strerror}", 1)
    except KeyboardInterrupt:
        return 130


def _snapshot(ns: argparse.Namespace) -> int:
    from cove.cli import _build_sandbox, _Usage, guest_starts
    from cove.hostfuncs import HostFunctions

    try:
        sb = _build_sandbox(ns, host_functions=HostFunctions.default())
    except _Usage as e:
        return _fail(str(e), EXIT_USAGE)
    argv = [ns.program, *ns.args]
    guest_starts()
    with sb:
        ended = sb.warm_up(argv)
        if ended is not None:
            return _fail(f"{argv[0]} exited (status {ended.returncode}) before it read its "
                         "stdin; there is nothing to snapshot", 1)
        snap = sb.snapshot()
        snap.save(ns.out)
    if ns.verbose:
        print(f"cove: saved {ns.out}: {snap!r}", file=sys.stderr)
    return 0


def _begin_restore(ns: argparse.Namespace) -> tuple[Any, Any]:
    """The snapshot file being read and hashed, and (kvm) the guest memory of
    its restore being readied, each on a helper thread (cove.snapfile, cove.snapstage)."""
    from cove.snapfile import Reading

    reading = Reading(ns.file)
    staged = None
    if ns.platform in ("auto", "kvm"):
        from cove.snapstage import Staged

        # One restore: the guest's memory is copied up front rather than shared.
        staged = Staged(reading, prefault=True)
    return reading, staged


def _restore(ns: argparse.Namespace, early: tuple[Any, Any] | None = None) -> int:
    from cove.cli import guest_starts
    from cove.hostfuncs import HostFunctions
    from cove.sandbox import Sandbox, SandboxConfig
    from cove.snapshot import Snapshot

    reading, staged = early if early is not None else _begin_restore(ns)
    snap = Snapshot.from_reading(reading, staged)
    cfg = SandboxConfig(platform=ns.platform, timeout=ns.timeout, trace=ns.trace,
                        debug=ns.debug)
    with Sandbox.from_snapshot(snap, host_functions=HostFunctions.default(), config=cfg,
                               stdin=None, stdout=None, stderr=None, prefault=True) as sb:
        guest_starts()
        return sb.resume().returncode


def _fail(message: str, status: int) -> int:
    print(f"cove: {message}", file=sys.stderr)
    return status
