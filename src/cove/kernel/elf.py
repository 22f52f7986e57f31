"""ELF64 headers as exec needs them: the file header and the program headers.

A small ``struct`` parse rather than pyelftools on the exec path: exec reads
64 bytes plus ``e_phnum * 56`` and nothing else (no sections, no symbols), and
this is several times faster than building an ``ELFFile``. The checks are
Linux's (``load_elf_binary``/``load_elf_phdrs``); what they reject is
``ENOEXEC`` with a reason a person can read (``ExecError``).
"""

from __future__ import annotations

import struct

from cove.abi.errno import E, Errno
from cove.dataclass import dataclass

ELFMAG = b"\x7fELF"
ELFCLASS32, ELFCLASS64 = 1, 2
ELFDATA2LSB, ELFDATA2MSB = 1, 2
ET_REL, ET_EXEC, ET_DYN, ET_CORE = 1, 2, 3, 4
EM_X86_64 = 62

PT_NULL, PT_LOAD, PT_DYNAMIC, PT_INTERP, PT_NOTE, PT_SHLIB, PT_PHDR, PT_TLS = range(8)
PT_GNU_EH_FRAME = 0x6474E550
PT_GNU_STACK = 0x6474E551
PT_GNU_RELRO = 0x6474E552
PT_GNU_PROPERTY = 0x6474E553
PF_X, PF_W, PF_R = 1, 2, 4

EHDR = struct.Struct("<16sHHIQQQIHHHHHH")  # Elf64_Ehdr, 64 bytes
PHDR = struct.Struct("<IIQQQQQQ")  # Elf64_Phdr, 56 bytes
PHDRS_MAX = 65536  # Linux: e_phnum * sizeof(phdr) at most 64 KiB ...
PHDRS_PAGE = 4096  # ... and at most ELF_MIN_ALIGN, one page
INTERP_MAX = 4096  # PATH_MAX: a PT_INTERP longer than this is refused

# What file(1) calls the machines one is most likely to meet (for the reason string).
MACHINES = {
    2: "SPARC", 3: "Intel 80386", 8: "MIPS", 20: "PowerPC", 21: "64-bit PowerPC",
    22: "IBM S/390", 40: "ARM", 43: "SPARC V9", 50: "IA-64", 62: "x86-64",
    183: "ARM aarch64", 243: "UCB RISC-V", 258: "LoongArch",
}
_ET_NAMES = {ET_REL: "a relocatable object (ET_REL)", ET_CORE: "a core dump (ET_CORE)"}


class ExecError(Errno):
    """The file cannot be executed as an x86-64 Linux program.

    Raised by exec (not a guest fault): ``errno`` is what execve returns
    (``ENOEXEC`` for a foreign or malformed binary, ``ELIBBAD`` for a bad
    interpreter) and ``str()`` carries the reason, e.g.
    ``"ENOEXEC: wrong architecture: ARM aarch64"``.
    """

    @property
    def reason(self) -> str:
        return str(self.args[1])


@dataclass(frozen=True, slots=True)
class ProgramHeader:
    type: int
    flags: int
    offset: int
    vaddr: int
    filesz: int
    memsz: int
    align: int

    @property
    def prot(self) -> int:
        """PF_R/W/X as PROT_READ/WRITE/EXEC (PF_X is 1 and PROT_EXEC 4: they differ)."""
        return ((1 if self.flags & PF_R else 0) | (2 if self.flags & PF_W else 0)
                | (4 if self.flags & PF_X else 0))


@dataclass(frozen=True, slots=True)
class ElfHeader:
    type: int  # ET_EXEC or ET_DYN
    entry: int
    phoff: int
    phentsize: int
    phnum: int


def machine_name(machine: int) -> str:
    return MACHINES.get(machine, f"machine {machine}")


def check_header(head: bytes, *, errno: int = E.ENOEXEC) -> ElfHeader:
    """Validate the first bytes of a file as an x86-64 executable ELF header.

    Raises ``ExecError(errno)``: plain ``ENOEXEC`` semantics (so exec can try
    other formats) when the magic is missing, with the reason otherwise.
    """
    if len(head) < 4 or head[:4] != ELFMAG:
        raise ExecError(errno, "not an ELF file")
    if len(head) < EHDR.size:
        raise ExecError(errno, "truncated ELF header")
    cls, data = head[4], head[5]
    order = "<" if data == ELFDATA2LSB else ">"
    machine = struct.unpack_from(order + "H", head, 18)[0]
    if cls != ELFCLASS64 or data != ELFDATA2LSB or machine != EM_X86_64:
        what = machine_name(machine)
        if machine == EM_X86_64 and cls == ELFCLASS32:
            what = "x32 (32-bit x86-64 ABI)"
        elif cls == ELFCLASS32:
            what = f"32-bit {what}"
        if data == ELFDATA2MSB:
            what = f"big-endian {what}"
        elif data != ELFDATA2LSB:
            what = f"{what} (bad byte order {data})"
        raise ExecError(errno, f"wrong architecture: {what}")
    (_ident, etype, _machine, _version, entry, phoff, _shoff, _flags, _ehsize,
     phentsize, phnum, _shentsize, _shnum, _shstrndx) = EHDR.unpack_from(head)
    if etype not in (ET_EXEC, ET_DYN):
        raise ExecError(errno, f"not an executable: {_ET_NAMES.get(etype, f'e_type {etype}')}")
    if phentsize != PHDR.size:
        raise ExecError(errno, f"bad program header size {phentsize}")
    size = phnum * PHDR.size
    if size == 0 or size > PHDRS_MAX or size > PHDRS_PAGE:
        raise ExecError(errno, f"bad program header count {phnum}")
    return ElfHeader(etype, entry, phoff, phentsize, phnum)


def parse_phdrs(data: bytes, phnum: int) -> list[ProgramHeader]:
    """The program headers from ``phnum * 56`` bytes read at ``e_phoff``."""
    out = []
    for i in range(phnum):
        ptype, flags, offset, vaddr, _paddr, filesz, memsz, align = PHDR.unpack_from(
            data, i * PHDR.size)
        out.append(ProgramHeader(ptype, flags, offset, vaddr, filesz, memsz, align))
    return out
