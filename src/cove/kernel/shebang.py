"""``#!`` lines, parsed with Linux's rules (fs/binfmt_script.c).

Only the parse lives here; execve splices the result into argv (interpreter,
optional argument, script path in place of argv[0]) and restarts exec with the
interpreter.
"""

from __future__ import annotations

import os

from cove.abi.errno import E
from cove.kernel.elf import ExecError

BINPRM_BUF_SIZE = 256  # exec looks at no more than this of a file's head


def _spacetab(c: int) -> bool:
    return c in (0x20, 0x09)


def _next_non_spacetab(buf: bytes, first: int, last: int) -> int | None:
    while first <= last:
        if not _spacetab(buf[first]):
            return first
        first += 1
    return None


def _next_terminator(buf: bytes, first: int, last: int) -> int | None:
    while first <= last:
        if _spacetab(buf[first]) or buf[first] == 0:
            return first
        first += 1
    return None


def _cstr(buf: bytes, start: int, end: int) -> str:
    s = buf[start:end]
    nul = s.find(b"\0")
    return os.fsdecode(s if nul < 0 else s[:nul])


def parse_shebang(head: bytes) -> tuple[str, str | None] | None:
    """``(interpreter, optional_argument)`` for a file starting with ``#!``.

    ``head`` is the file's first bytes (at most ``BINPRM_BUF_SIZE`` are looked
    at; a shorter file is NUL-padded as in the kernel's buffer). ``None`` when
    the file is not a script. Raises ``ExecError(ENOEXEC)`` when the line names
    no interpreter, or when the interpreter path does not end within the
    buffer (Linux never runs a truncated interpreter path; a truncated
    argument is fine). Everything after the interpreter up to the end of the
    line, trailing blanks trimmed, is the single optional argument.
    """
    if head[:2] != b"#!":
        return None
    buf = head[:BINPRM_BUF_SIZE].ljust(BINPRM_BUF_SIZE, b"\0")
    buf_end = BINPRM_BUF_SIZE - 1
    i_end = buf.find(b"\n")
    if i_end < 0:
        start = _next_non_spacetab(buf, 2, buf_end)
        if start is None:
            raise ExecError(E.ENOEXEC, "#! line holds only blanks")
        if _next_terminator(buf, start, buf_end) is None:
            raise ExecError(E.ENOEXEC, "#! interpreter path too long")
        i_end = buf_end
    while _spacetab(buf[i_end - 1]):
        i_end -= 1
    i_name = _next_non_spacetab(buf, 2, i_end)
    if i_name is None or i_name == i_end:
        raise ExecError(E.ENOEXEC, "#! line names no interpreter")
    i_arg = None
    i_sep = _next_terminator(buf, i_name, i_end)
    if i_sep is not None and buf[i_sep] != 0:
        i_arg = _next_non_spacetab(buf, i_sep, i_end)
    name = _cstr(buf, i_name, i_sep if i_arg is not None else i_end)
    arg = _cstr(buf, i_arg, i_end) if i_arg is not None else None
    return name, arg
