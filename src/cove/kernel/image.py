"""What exec leaves of a loaded program (``LoadedImage``), in a module of its
own: a snapshot's processes hold one, and restoring it should not import the
ELF loader (``cove.kernel.loader``, which re-exports it)."""

from __future__ import annotations

import os

from cove.dataclass import dataclass, field

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from cove.fs.file import InodeFile


@dataclass(slots=True)
class LoadedImage:
    """A program loaded by exec: where to start it and what /proc shows of it."""

    entry: int  # first instruction: the interpreter's entry, else the program's
    stack_pointer: int  # initial rsp: points at argc, 16-byte aligned
    exe_path: str  # canonical sandbox path (/proc/<pid>/exe)
    execfn: str  # the name exec was called with (AT_EXECFN)
    argv: list[str]
    envp: list[str]
    program_entry: int  # AT_ENTRY
    load_bias: int  # added to the program's p_vaddr
    phdr: int  # AT_PHDR
    phnum: int
    interp_path: str | None  # PT_INTERP as written in the program
    interp_base: int  # AT_BASE (0 without an interpreter)
    start_code: int
    end_code: int
    start_data: int
    end_data: int
    start_brk: int
    stack_start: int  # the [stack] VMA
    stack_end: int
    arg_start: int  # argv strings (/proc/<pid>/cmdline reads [arg_start, arg_end))
    arg_end: int
    env_start: int  # envp strings (/proc/<pid>/environ)
    env_end: int
    random: int  # AT_RANDOM
    auxv: tuple[tuple[int, int], ...]  # as written, AT_NULL last (/proc/<pid>/auxv)
    exec_stack: bool  # PT_GNU_STACK asked for an executable stack
    file: InodeFile = field(repr=False)  # the executable (holds it open, as Linux's exe_file)

    @property
    def comm(self) -> str:
        """The task name exec sets: the basename of the exec'd name, 15 bytes at most."""
        return os.fsencode(self.execfn.rsplit("/", 1)[-1])[:15].decode(
            "utf-8", "surrogateescape")
