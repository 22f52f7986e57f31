"""The options of ``cove run`` and ``cove restore``, declared once: argparse is
built from these tables, and ``fast_parse`` reads the common command lines
with them without importing argparse.

Why: importing argparse, its gettext lookups and building every subcommand's
parser cost ~5 ms of each ``cove run`` (and shutil for the help width).
``fast_parse`` accepts only exact, unambiguous spellings (``--name VALUE``,
``--name=VALUE``, ``-v``, one ``--`` before PROGRAM) and returns None for
anything else (help, abbreviations, bad values, other commands), so argparse
decides every unusual case and prints every error. tests/test_cli_args.py
checks both parsers agree.
"""

from __future__ import annotations

from types import SimpleNamespace

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from typing import Any


class Opt:
    """One option (a plain class: a NamedTuple costs ~1 ms to define at every start)."""

    __slots__ = ("flags", "dest", "kind", "default", "type", "choices", "metavar", "help",
                 "required")

    def __init__(self, flags: tuple[str, ...], dest: str, kind: str = "value",
                 default: Any = None, type: Any = None,
                 choices: tuple[str, ...] | None = None, metavar: str | None = None,
                 help: str | None = None, required: bool = False) -> None:
        self.flags = flags
        self.dest = dest
        self.kind = kind  # "value", "append" or "flag"
        self.default = default
        self.type = type  # a converter, as argparse's type=
        self.choices = choices
        self.metavar = metavar
        self.help = help
        self.required = required


RUN_OPTIONS = (
    Opt(("--platform",), "platform", default="auto", choices=("auto", "kvm", "userland"),
        help="how guest instructions run (default: auto)"),
    Opt(("--rootfs",), "rootfs", default="host",
        help="host (read-only host /, the default), a directory, a tar archive or an OCI image"),
    Opt(("--mount",), "mount", kind="append", metavar="SRC:DST[:ro|rw]",
        help="mount a host directory (rw: writes stay in the sandbox)"),
    Opt(("--env",), "env", kind="append", metavar="K=V",
        help="set an environment variable (the host's are not passed)"),
    Opt(("--cwd",), "cwd", default="/", help="working directory in the sandbox"),
    Opt(("--user",), "user", default="0:0", metavar="UID:GID",
        help="the sandbox user (default 0:0, root over the sandbox only)"),
    Opt(("--memory",), "memory", default="1G", help="guest memory (default 1G)"),
    Opt(("--timeout",), "timeout", type=float, metavar="SECONDS",
        help="kill the guest after this long (exit status 124)"),
    Opt(("--trace",), "trace", metavar="FILE.jsonl", help="write one JSON line per syscall"),
    Opt(("--verbose", "-v"), "verbose", kind="flag", default=False,
        help="say which platform runs the guest"),
)

RESTORE_OPTIONS = (
    Opt(("--platform",), "platform", default="auto", choices=("auto", "kvm"),
        help="how guest instructions run (default: auto)"),
    Opt(("--timeout",), "timeout", type=float, metavar="SECONDS",
        help="kill the guest after this long (exit status 124)"),
    Opt(("--trace",), "trace", metavar="FILE.jsonl", help="write one JSON line per syscall"),
)


def add_options(parser: Any, options: tuple[Opt, ...]) -> None:
    """Declare ``options`` on an argparse parser."""
    for o in options:
        kw: dict[str, Any] = {"dest": o.dest, "help": o.help}
        if o.kind == "flag":
            kw["action"] = "store_true"
        else:
            kw["default"] = [] if o.kind == "append" else o.default
            if o.kind == "append":
                kw["action"] = "append"
            for key in ("type", "choices", "metavar"):
                if getattr(o, key) is not None:
                    kw[key] = list(o.choices) if key == "choices" else getattr(o, key)
            if o.required:
                kw["required"] = True
        parser.add_argument(*o.flags, **kw)


def _defaults(options: tuple[Opt, ...]) -> dict[str, Any]:
    return {o.dest: [] if o.kind == "append" else o.default for o in options}


def _option(values: dict[str, Any], options: tuple[Opt, ...], argv: list[str], i: int) -> int:
    """Read the option at argv[i] into ``values``; the next index, or -1 to decline."""
    name, eq, value = argv[i].partition("=")
    o = next((o for o in options if name in o.flags), None)
    if o is None:
        return -1
    if o.kind == "flag":
        if eq:
            return -1
        values[o.dest] = True
        return i + 1
    if eq:
        i += 1
    elif i + 1 < len(argv) and not argv[i + 1].startswith("-"):
        value, i = argv[i + 1], i + 2
    else:
        return -1  # a missing value, or one argparse might read as an option
    if o.choices is not None and value not in o.choices:
        return -1
    if o.type is not None:
        try:
            value = o.type(value)
        except ValueError:
            return -1
    if o.kind == "append":
        values[o.dest] = [*values[o.dest], value]
    else:
        values[o.dest] = value
    return i


def _run(values: dict[str, Any], argv: list[str], i: int) -> bool:
    # Options, then PROGRAM (after an optional "--"), then everything else is ARGS.
    while i < len(argv) and argv[i].startswith("-") and argv[i] != "--":
        i = _option(values, RUN_OPTIONS, argv, i)
        if i < 0:
            return False
    if i < len(argv) and argv[i] == "--":
        i += 1
    if i >= len(argv) or argv[i] == "--" or "--" in argv[i + 1:]:
        return False  # argparse drops a later "--" and reports a missing PROGRAM: its call
    values["program"], values["args"] = argv[i], argv[i + 1:]
    return True


def _restore(values: dict[str, Any], argv: list[str], i: int) -> bool:
    # FILE and the options in any order (no "--", one FILE).
    files = []
    while i < len(argv):
        if argv[i].startswith("-"):
            i = _option(values, RESTORE_OPTIONS, argv, i)
            if i < 0:
                return False
        else:
            files.append(argv[i])
            i += 1
    if len(files) != 1:
        return False
    values["file"] = files[0]
    return True


def fast_parse(argv: list[str]) -> SimpleNamespace | None:
    """The namespace argparse would give for a plain ``run``/``restore`` command
    line, or None when argparse should parse it."""
    i, debug = 0, False
    while i < len(argv) and argv[i] == "--debug":
        debug, i = True, i + 1
    if i >= len(argv) or argv[i] not in ("run", "restore"):
        return None
    command = argv[i]
    values: dict[str, Any] = {"debug": debug, "command": command}
    if command == "run":
        values.update(_defaults(RUN_OPTIONS))
        ok = _run(values, argv, i + 1)
    else:
        values.update(_defaults(RESTORE_OPTIONS))
        ok = _restore(values, argv, i + 1)
    return SimpleNamespace(**values) if ok else None
