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

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cove.abi.errno import E, Errno
from cove.abi.sysnums import NR

if TYPE_CHECKING:
    from cove.kernel.task import Task

PATH_MAX = 4096

Decoder = Callable[["Task", int], Any]


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


TABLE: dict[int, Syscall] = {}


def syscall(name: str, *decoders: Decoder, support: str = "full", note: str = "",
            restartable: bool = True, on_interrupt: Callable[..., None] | None = None,
            ) -> Callable[[Callable[..., int]], Callable[..., int]]:
    """Register the decorated function as the handler of syscall ``name``."""
    nr = int(NR[name])

    def register(fn: Callable[..., int]) -> Callable[..., int]:
        if nr in TABLE and TABLE[nr].handler is not None:
            raise RuntimeError(f"syscall {name} registered twice")
        TABLE[nr] = Syscall(nr, name, fn, decoders, support, note, restartable, on_interrupt)
        return fn

    return register


def enosys(*names: str, note: str = "") -> None:
    """Declare calls cove deliberately does not implement."""
    for name in names:
        nr = int(NR[name])
        TABLE.setdefault(nr, Syscall(nr, name, None, (), "enosys", note))


def load_all() -> dict[int, Syscall]:
    """Import every syscall family module so the table is complete."""
    import importlib
    import pkgutil

    import cove.kernel.syscalls as pkg

    for mod in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(f"{pkg.__name__}.{mod.name}")
    return TABLE
