"""The ``cove`` command.

Errors for people are one line (``cove: /nope: no such file``) with a non-zero
status; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import gc
import os
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from cove.sandbox import Sandbox

EXIT_USAGE = 2
EXIT_CANNOT_EXECUTE = 126
EXIT_NOT_FOUND = 127
EXIT_TIMEOUT = 124  # as timeout(1)


def _version() -> str:
    from cove import __version__

    return __version__


def _add_run_options(run: argparse.ArgumentParser) -> None:
    """The options that describe a sandbox and its program (run, snapshot)."""
    from cove.cli_args import RUN_OPTIONS, add_options

    add_options(run, RUN_OPTIONS)
    run.add_argument("program", metavar="PROGRAM")
    run.add_argument("args", nargs="...", metavar="ARGS")  # argparse.REMAINDER


class _Usage(Exception):
    """A malformed option value (exit status 2)."""


def _build_sandbox(ns: argparse.Namespace, **extra: Any) -> Sandbox:
    """The Sandbox the run options describe (raises _Usage for bad values)."""
    from cove.rootfs import MountSpec
    from cove.sandbox import Sandbox, SandboxConfig

    env: dict[str, str] = {}
    for item in ns.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise _Usage(f"--env {item}: expected K=V")
        env[key] = value
    try:
        uid, gid = (int(x) for x in ns.user.split(":"))
    except ValueError:
        raise _Usage(f"--user {ns.user}: expected UID:GID") from None
    mounts = tuple(MountSpec.parse(m) for m in ns.mount)
    cfg = SandboxConfig(memory=ns.memory, platform=ns.platform, trace=ns.trace,
                        debug=ns.debug, timeout=ns.timeout)
    return Sandbox(rootfs=ns.rootfs, config=cfg, mounts=mounts, env=env, cwd=ns.cwd,
                   user=(uid, gid), **extra)


def _parser() -> argparse.ArgumentParser:
    import argparse  # not at import: `cove --version` never builds a parser

    p = argparse.ArgumentParser(
        prog="cove",
        description="Run unmodified Linux x86-64 programs in a sandbox with its own "
                    "Linux personality.")
    p.add_argument("--version", action="version", version=f"cove {_version()}")
    p.add_argument("--debug", action="store_true", help="log and show tracebacks")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run a program in a fresh sandbox",
                         description="Run PROGRAM in a fresh sandbox and exit with its status.")
    _add_run_options(run)
    from cove.cli_snapshot import add_parsers

    add_parsers(sub, _add_run_options)

    sub.add_parser("syscalls", help="print the syscall support table")
    bench = sub.add_parser("bench", help="measure cove next to native and runsc")
    bench.add_argument("which", nargs="?", default="syscall",
                       choices=["syscall", "process", "snapshot", "all"])
    return p


def _cmd_run(ns: argparse.Namespace) -> int:
    from cove.platform.base import PlatformUnavailable
    from cove.rootfs import RootfsError
    from cove.sandbox import CoveError, ProgramNotFound, SandboxTimeout

    try:
        sb = _build_sandbox(ns)
        argv = [ns.program, *ns.args]
        if ns.verbose:
            from cove.lazylog import getLogger

            getLogger("cove").setLevel("INFO")
        guest_starts()
        result = sb.run(argv)
    except _Usage as e:
        return _fail(str(e), EXIT_USAGE)
    except ProgramNotFound as e:
        return _fail(str(e), EXIT_NOT_FOUND)
    except SandboxTimeout as e:
        return _fail(str(e), EXIT_TIMEOUT)
    except (CoveError, RootfsError) as e:
        return _fail(str(e), EXIT_CANNOT_EXECUTE)
    except PlatformUnavailable as e:
        return _fail(str(e), 1)
    except KeyboardInterrupt:
        return 130
    return result.returncode


def _cmd_syscalls() -> int:
    from cove.abi.sysnums import NAMES
    from cove.kernel.syscall import load_all

    table = load_all()
    counts = {"full": 0, "partial": 0, "enosys": 0, "missing": 0}
    lines = []
    for nr in sorted(NAMES):
        sc = table.get(nr)
        support = sc.support if sc else "missing"
        counts[support] += 1
        note = f"  {sc.note}" if sc and sc.note else ""
        lines.append(f"{nr:4d} {NAMES[nr]:<24} {support}{note}\n")
    lines.append(", ".join(f"{k}: {v}" for k, v in counts.items()) + "\n")
    try:
        sys.stdout.write("".join(lines))
        sys.stdout.flush()
    except BrokenPipeError:  # cove syscalls | head: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # as a writer killed by SIGPIPE
    return 0


def _fail(message: str, status: int = 1) -> int:
    print(f"cove: {message}", file=sys.stderr)
    return status


def guest_starts() -> None:
    """Start-up is over. What it made (modules, tables, the sandbox) lives as long
    as the command: the collector leaves it out from now on (freeze) and runs again
    for what the guest's work allocates."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


def main(argv: list[str] | None = None) -> int:
    if (sys.argv[1:] if argv is None else argv) == ["--version"]:
        # The common probe skips building the parser; same output and exit as argparse's.
        print(f"cove {_version()}")
        sys.stdout.flush()
        raise SystemExit(0)
    # Start-up makes only long-lived objects: cyclic collections during the imports
    # and the sandbox's construction find nothing and cost ~3 ms (guest_starts ends this).
    gc.disable()
    try:
        return _main(argv)
    finally:
        if not gc.isenabled():
            gc.enable()


def _main(argv: list[str] | None) -> int:
    from cove.cli_args import fast_parse

    args = sys.argv[1:] if argv is None else argv
    # argparse only for what the fast reader leaves to it (help, errors, other commands).
    ns: Any = fast_parse(args) or _parser().parse_args(args)
    # logging is imported only when something is logged (~3 ms of every start);
    # with --debug now, so that everything is.
    from cove.lazylog import configure, getLogger

    configure(stream=sys.stderr, level="DEBUG" if ns.debug else "WARNING",
              format="cove: %(message)s", now=ns.debug)
    try:
        if ns.command == "run":
            return _cmd_run(ns)
        if ns.command == "syscalls":
            return _cmd_syscalls()
        if ns.command in ("snapshot", "restore"):
            from cove import cli_snapshot

            return cli_snapshot.run(ns)
        if ns.command == "bench":
            from cove.bench import main as bench_main

            guest_starts()
            return bench_main(ns.which)
        _parser().print_help()
        return EXIT_USAGE
    except Exception as e:  # the last line of defence: one line, no traceback
        if ns.debug:
            raise
        getLogger("cove").debug("fatal", exc_info=True)
        msg = str(e) or type(e).__name__
        return _fail(msg if "platform" in msg or "kvm" in msg else f"internal error: {msg}")


def run_command() -> None:
    """The ``cove`` command (bin/cove, ``python -m cove``): ``main()``, then out
    without the interpreter's shutdown, which would tear down every module and
    object cove made (the kernel ends the process faster); what Python still
    buffers for stdout and stderr is written first."""
    try:
        status = main()
    except SystemExit as e:  # argparse: --help, usage errors (it printed the message)
        if e.code is None or isinstance(e.code, int):
            status = e.code or 0
        else:
            print(e.code, file=sys.stderr)
            status = 1
    for stream in (sys.stdout, sys.stderr):
        if stream is None:  # started with that fd closed (cove run ... >&-)
            continue
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (cove syscalls | head): nothing to keep
            status = status or 1
    os._exit(status)


if __name__ == "__main__":  # pragma: no cover
    # `python -m cove.cli` runs this file as __main__: cove.cli_snapshot's
    # `from cove.cli import ...` then finds it instead of running it again.
    sys.modules.setdefault("cove.cli", sys.modules[__name__])
    run_command()
