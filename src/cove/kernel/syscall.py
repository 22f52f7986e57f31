"""The syscall table: number → handler, with arguments decoded once, here.

A handler is a plain function ``def openat(t: Task, dirfd: int, path: str,
flags: int, mode: int) -> int`` registered with ``@syscall("openat", FD, PATH,
INT, UINT)``. The decoders turn the raw 64-bit registers into Python values
(sign-extending ints, reading path strings from guest memory), so a handler
never repeats that work; ``Errno`` raised by a decoder (EFAULT, ENAMETOOLONG)
is the syscall's result, as on Linux.

Unimplemented calls are explicit entries (``enosys``), so ``cove syscalls``
prints an honest support table.
"""

from __future__ import annotations

import importlib
import os
import sys

from cove.abi.errno import E, Errno
from cove.abi.sysnums import NR
from cove.dataclass import dataclass

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from cove.kernel.task import Task

    Decoder = Callable[[Task, int], Any]

PATH_MAX = 4096


def _s32(t: Task, v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def _u32(t: Task, v: int) -> int:
    return v & 0xFFFFFFFF


def _s64(t: Task, v: int) -> int:
    return v - (1 << 64) if v & (1 << 63) else v


def _u64(t: Task, v: int) -> int:
    return v


def _path(t: Task, v: int) -> str:
    if v == 0:
        raise Errno(E.EFAULT)
    return os.fsdecode(t.mm.read_cstring(v, PATH_MAX - 1))


INT: Decoder = _s32  # int, pid_t, clockid_t ...
FD: Decoder = _s32
UINT: Decoder = _u32  # unsigned int, mode_t, flags declared unsigned
LONG: Decoder = _s64  # long, off_t, ssize_t
ULONG: Decoder = _u64  # unsigned long, size_t
PTR: Decoder = _u64  # a guest address, checked when used
PATH: Decoder = _path  # const char __user *pathname, read and decoded


@dataclass(frozen=True, slots=True)
class Syscall:
    nr: int
    name: str
    handler: Callable[..., int] | None
    decoders: tuple[Decoder, ...]
    support: str  # "full", "partial" or "enosys"
    note: str = ""
    restartable: bool = True  # restarted after a SA_RESTART handler (vs EINTR)
    # Called with the handler's arguments when a signal ends the blocked call
    # with EINTR (nanosleep writes rem); may raise Errno to replace EINTR.
    on_interrupt: Callable[..., None] | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled (a blocked call in a snapshot) as its number: the entry of the
        # restoring process, its family imported, placeholder or not.
        return (entry, (self.nr,))


TABLE: dict[int, Syscall] = {}
PACKAGE = "cove.kernel.syscalls"

# Entries that stand for a family module not imported yet (see _install_index),
# and that module.
_PLACEHOLDERS: dict[int, Syscall] = {}
_FAMILY: dict[int, str] = {}
# nr -> the module that registered it (tools/gen_syscall_index.py reads it).
ORIGIN: dict[int, str] = {}


def syscall(name: str, *decoders: Decoder, support: str = "full", note: str = "",
            restartable: bool = True, on_interrupt: Callable[..., None] | None = None,
            ) -> Callable[[Callable[..., int]], Callable[..., int]]:
    """Register the decorated function as the handler of syscall ``name``."""
    nr = int(NR[name])

    def register(fn: Callable[..., int]) -> Callable[..., int]:
        old = TABLE.get(nr)
        if old is not None and old.handler is not None and old is not _PLACEHOLDERS.get(nr):
            raise RuntimeError(f"syscall {name} registered twice")
        TABLE[nr] = Syscall(nr, name, fn, decoders, support, note, restartable, on_interrupt)
        _PLACEHOLDERS.pop(nr, None)
        ORIGIN[nr] = fn.__module__
        return fn

    return register


def enosys(*names: str, note: str = "") -> None:
    """Declare calls cove deliberately does not implement."""
    module = sys._getframe(1).f_globals.get("__name__", "")
    for name in names:
        nr = int(NR[name])
        old = TABLE.get(nr)
        if old is None or old is _PLACEHOLDERS.get(nr):
            TABLE[nr] = Syscall(nr, name, None, (), "enosys", note)
            _PLACEHOLDERS.pop(nr, None)
            ORIGIN[nr] = module


def entry(nr: int) -> Syscall | None:
    """The table entry of ``nr`` with its family imported (None: not a syscall cove knows)."""
    sc = TABLE.get(nr)
    if sc is not None and sc.handler is not None and sc is _PLACEHOLDERS.get(nr):
        return _loaded(nr)
    return sc


def load_all() -> dict[int, Syscall]:
    """The complete table, ready for a kernel.

    Every syscall cove knows has its entry from the start: a family module not
    imported yet is represented by placeholder entries (name, decoders, support,
    restartability exactly as the module declares them, from the index in
    ``cove.kernel.syscalls``) whose handler imports the module on the first call
    of one of its syscalls and then runs the real handler (with the families
    that install into it, ``NEEDS``). The families whose import does more than
    register their own calls (a hook another module runs, ``EAGER`` in the
    index) are imported here.

    A family module edited after the index was generated may define calls the
    index does not know: then every family is imported, as before the index
    (slower, never wrong) until tools/gen_syscall_index.py is rerun.
    """
    global _checked
    if not _checked:
        _checked = True
        stale = _stale_family()
        if stale:
            import logging

            logging.getLogger("cove.kernel").debug(
                "syscall index made before %s changed: importing every family "
                "(run tools/gen_syscall_index.py)", stale)
            return import_all()
    for family in _EAGER:
        importlib.import_module(f"{PACKAGE}.{family}")
    # A family imported before this (by its own name, not through a placeholder:
    # a test, a tool) still needs the families that install into it.
    for family, needs in _NEEDS.items():
        if f"{PACKAGE}.{family}" in sys.modules:
            for other in needs:
                importlib.import_module(f"{PACKAGE}.{other}")
    return TABLE


def import_all() -> dict[int, Syscall]:
    """Import every family module (the index generator and its test)."""
    for family in family_modules():
        importlib.import_module(f"{PACKAGE}.{family}")
    return TABLE


def family_modules() -> list[str]:
    """The family modules in ``cove/kernel/syscalls`` (one per file)."""
    here = os.path.join(os.path.dirname(__file__), "syscalls")
    return sorted(f[:-3] for f in os.listdir(here) if f.endswith(".py") and not f.startswith("_"))


_checked = False
_SIZES: dict[str, int] = {}


def _stale_family(here: str = "", sizes: dict[str, int] | None = None) -> str:
    """A family file that is not the one the index was made from (its name), or "".

    The index records each family file's size: an edit almost always changes it,
    and unlike a modification time it survives checkouts, copies and installs.
    """
    here = here or os.path.join(os.path.dirname(__file__), "syscalls")
    sizes = _SIZES if sizes is None else sizes
    seen = 0
    try:
        with os.scandir(here) as it:
            for e in it:
                if e.name.endswith(".py") and not e.name.startswith("_"):
                    seen += 1
                    if e.stat().st_size != sizes.get(e.name[:-3]):
                        return e.name
    except OSError:  # no sources to compare (a zipped install): trust the index
        return ""
    return "" if seen == len(sizes) else "(a family file is gone)"
    return ""


# --- the index: placeholders for families not imported yet ---------------------------------
DECODERS: dict[str, Decoder] = {"s32": _s32, "u32": _u32, "s64": _s64, "u64": _u64,
                                "path": _path}
_EAGER: tuple[str, ...] = ()
_NEEDS: dict[str, tuple[str, ...]] = {}


def _loaded(nr: int) -> Syscall:
    """The real entry of ``nr``, importing its family if a placeholder still stands
    in (a placeholder kept by a blocked call outlives its place in the table)."""
    sc = TABLE[nr]
    if sc is _PLACEHOLDERS.get(nr):
        module = _FAMILY[nr]
        importlib.import_module(module)
        for other in _NEEDS.get(module.rpartition(".")[2], ()):
            importlib.import_module(f"{PACKAGE}.{other}")
        sc = TABLE[nr]
        if sc is _PLACEHOLDERS.get(nr):
            raise RuntimeError(f"{_FAMILY[nr]} does not define {sc.name} as the syscall "
                               "index says: run tools/gen_syscall_index.py")
    return sc


def _placeholder(nr: int, name: str, module: str, decoders: str, support: str, note: str,
                 restartable: bool, interrupt: bool) -> Syscall:
    def handler(t: Task, *args: Any) -> int:
        return _loaded(nr).handler(t, *args)  # type: ignore[misc]

    def on_interrupt(t: Task, *args: Any) -> None:
        real = _loaded(nr).on_interrupt
        if real is not None:
            real(t, *args)

    # Named after what it stands for (tests and tools group handlers by module).
    handler.__module__ = on_interrupt.__module__ = module
    decs = _decoder_tuples.get(decoders)
    if decs is None:  # a few dozen distinct signatures: built once each
        decs = _decoder_tuples[decoders] = tuple(DECODERS[d] for d in decoders.split())
    return Syscall(nr, name, handler if support != "enosys" else None, decs, support, note,
                   restartable, on_interrupt if interrupt else None)


_decoder_tuples: dict[str, tuple[Decoder, ...]] = {}


def _install_index() -> None:
    global _EAGER, _NEEDS, _SIZES
    from cove.kernel.syscalls import EAGER, INDEX, NEEDS, NOTES, SIZES

    _EAGER, _NEEDS, _SIZES = EAGER, NEEDS, SIZES
    for nr, (name, family, decoders, support, flags) in INDEX.items():
        if nr not in TABLE:
            module = _FAMILY[nr] = f"{PACKAGE}.{family}"
            sc = _placeholder(nr, name, module, decoders, support, NOTES.get(nr, ""),
                              bool(flags & 1), bool(flags & 2))
            TABLE[nr] = _PLACEHOLDERS[nr] = sc


_install_index()
