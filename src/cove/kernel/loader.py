"""The ELF loader: exec of an x86-64 program from the sandbox's VFS into a MemoryMap.

What Linux's fs/exec.c + fs/binfmt_elf.c do for a 64-bit ELF, with the same
addresses as Linux with ASLR off (``setarch -R``), so layouts can be compared
with the host kernel's:

- ``open_exec``: resolve in the sandbox, EACCES unless a regular file with an
  x bit the caller may use on a mount without ``noexec``; reads the first
  ``BINPRM_BUF_SIZE`` bytes (for the ELF header or a ``#!`` line).
- ``load_elf``: check argv/envp sizes (E2BIG), the header (ENOEXEC with a
  reason), the PT_INTERP interpreter (opened through the VFS too; ELIBBAD when
  it is not an x86-64 ELF), then map every PT_LOAD as a private file mapping
  with a zero-filled tail and anonymous pages for the rest of the bss, and
  build the initial stack (``initstack``). Everything that can fail because of
  the files happens before the first mapping, so an error leaves ``mm``
  untouched; after that only ENOMEM can occur, and the caller must then
  discard ``mm`` (Linux kills the process at that point).
- ``load_program`` = both, for a path that must be an ELF file (``#!`` scripts
  are the execve syscall's: see ``parse_shebang``).

Placement (``Layout``): ET_EXEC at its own addresses; a PIE with an
interpreter (or with segments aligned above a page) at ELF_ET_DYN_BASE
(0x555555554000); the interpreter, and ET_DYN programs without one (static-pie,
ld.so run directly), top-down below ``loader_top`` (0x7ffff7fff000, Linux's
mmap_base with a 128 MiB stack gap); the stack's top at USER_TOP. Each image
reserves its whole span first and then maps segments MAP_FIXED into it.

The thread starts at ``LoadedImage.entry`` with ``rsp = stack_pointer``, all
other general registers 0 (``rdx`` = 0 is the no-atexit-function convention
of the x86-64 ABI) and rflags 0x202.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Sequence
from functools import cache

from cove.abi import flags as F
from cove.abi.errno import E, Errno
from cove.abi.flags import AUXV
from cove.dataclass import dataclass
from cove.fs import perm
from cove.fs.file import O_RDONLY, InodeFile
from cove.fs.mount import MS_NOEXEC, Location
from cove.fs.node import S_IFMT, S_IFREG
from cove.fs.perm import MAY_EXEC
from cove.fs.vfs import VFS, PathContext
from cove.kernel import initstack
from cove.kernel.elf import (
    ET_DYN,
    ET_EXEC,
    PF_X,
    PHDR,
    PT_GNU_STACK,
    PT_INTERP,
    PT_LOAD,
    PT_PHDR,
    ElfHeader,
    ExecError,
    ProgramHeader,
    check_header,
    parse_phdrs,
)
from cove.kernel.image import LoadedImage
from cove.kernel.mm import MMAP_MIN, USER_TOP, MemoryMap, page_align
from cove.kernel.shebang import BINPRM_BUF_SIZE, parse_shebang

__all__ = [
    "BINPRM_BUF_SIZE", "ELF_ET_DYN_BASE", "LOADER_TOP", "ExecError", "ExecFile", "Layout",
    "LoadedImage", "PlatformInfo", "load_elf", "load_program", "open_exec", "parse_shebang",
]

PAGE = 4096
PAGE_MASK = PAGE - 1
ELF_ET_DYN_BASE = USER_TOP // 3 * 2  # 0x555555554aaa, as Linux's x86-64 ELF_ET_DYN_BASE
MIN_GAP = 128 << 20  # mmap_base's minimum distance below the stack top
LOADER_TOP = USER_TOP - MIN_GAP  # 0x7ffff7fff000: Linux's mmap_base without ASLR
STACK_SIZE = 8 << 20  # the stack VMA: RLIMIT_STACK's default, populated lazily...
STACK_EAGER = 16 * PAGE  # ...but for this much below the initial strings
PLATFORM = "x86_64"


def _pagestart(n: int) -> int:
    return n & ~PAGE_MASK


# --------------------------------------------------------------------- parameters
@dataclass(frozen=True, slots=True)
class PlatformInfo:
    """What the CPU and the North tell a program through auxv.

    ``hwcap`` is CPUID.1:EDX as Linux reports it on x86-64, ``hwcap2`` its
    HWCAP2 bits (bit 1: FSGSBASE usable in user mode), ``minsigstksz`` the
    smallest signal stack the North's frames fit in (depends on the enabled
    XSAVE features). ``vdso`` is the address of the vDSO's ELF header
    (AT_SYSINFO_EHDR, omitted when 0); ``rseq`` the (feature size, alignment)
    pair for AT_RSEQ_* when rseq is implemented (omitted when None). The
    defaults are the values of the project machines (AMD EPYC, AVX-512) with
    no vDSO and no rseq; platforms should pass what they really provide.
    """

    hwcap: int = 0x178BFBFF
    hwcap2: int = 0
    minsigstksz: int = 3376
    platform: str = PLATFORM
    clktck: int = 100
    vdso: int = 0
    rseq: tuple[int, int] | None = None

    @classmethod
    def from_host(cls) -> PlatformInfo:
        """The host kernel's own answers (from /proc/self/auxv), minus vDSO and rseq,
        which are the North's to provide. Falls back to the defaults off Linux."""
        return _host_platform()


@cache
def _host_platform() -> PlatformInfo:
    try:
        with open("/proc/self/auxv", "rb") as f:
            raw = f.read()
    except OSError:
        return PlatformInfo()
    aux = dict(struct.iter_unpack("<QQ", raw))
    base = PlatformInfo()
    return PlatformInfo(hwcap=aux.get(AUXV.AT_HWCAP, base.hwcap),
                        hwcap2=aux.get(AUXV.AT_HWCAP2, base.hwcap2),
                        minsigstksz=aux.get(AUXV.AT_MINSIGSTKSZ, base.minsigstksz),
                        clktck=aux.get(AUXV.AT_CLKTCK, base.clktck))


@dataclass(frozen=True, slots=True)
class Layout:
    """Where exec places things. The defaults are Linux's with ASLR off;
    ``randomized()`` draws offsets in Linux's ranges (the ASLR hook)."""

    dyn_base: int = ELF_ET_DYN_BASE  # PIE programs with an interpreter
    loader_top: int = LOADER_TOP  # interpreters and self-loading ET_DYN: top-down below
    stack_top: int = USER_TOP
    stack_size: int = STACK_SIZE
    stack_pad: int = 0  # arch_align_stack's random bytes below the strings
    brk_pad: int = 0  # arch_randomize_brk's offset of the heap start

    @classmethod
    def randomized(cls, randbits: Callable[[int], int] | None = None) -> Layout:
        """x86-64 Linux's entropy: 28 bits of pages for mmap and PIE bases, 22
        for the stack top, up to 8 KiB of stack pad, 32 MiB of brk offset
        (``randbits`` defaults to ``secrets.randbits``)."""
        if randbits is None:
            import secrets  # pulls in hashlib/hmac, ms on every start; only ASLR needs it

            randbits = secrets.randbits
        stack_rnd = randbits(22) << 12
        stack_top = USER_TOP - stack_rnd
        # mmap_base leaves room for the largest stack randomization plus the stack.
        gap = max(MIN_GAP, STACK_SIZE + (1 << 20) + ((1 << 22) << 12))
        return cls(dyn_base=ELF_ET_DYN_BASE + (randbits(28) << 12),
                   loader_top=USER_TOP - gap - (randbits(28) << 12),
                   stack_top=stack_top, stack_pad=randbits(13),
                   brk_pad=randbits(13) << 12)


TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from typing import Any, Protocol

    class ExecCreds(Protocol):
        """The ids auxv reports (``cove.kernel.task.Creds`` fits)."""

        ruid: int
        euid: int
        rgid: int
        egid: int


# --------------------------------------------------------------------- open
@dataclass(slots=True)
class ExecFile:
    """An executable opened for exec: the file, where it is, its first bytes."""

    file: InodeFile
    location: Location
    path: str  # as asked for
    realpath: str  # symlinks resolved, as /proc/<pid>/maps and exe show it
    head: bytes  # the first BINPRM_BUF_SIZE bytes (fewer for a short file)

    @property
    def size(self) -> int:
        return self.file.stat().size


def open_exec(vfs: VFS, ctx: PathContext, path: str, *, at: Location | None = None) -> ExecFile:
    """Open ``path`` for exec as Linux's ``open_exec`` does.

    Resolution errors as for open (ENOENT, ENOTDIR, ELOOP, EACCES on a
    directory without search permission); EACCES for anything but a regular
    file, on a noexec mount, or without execute permission for ``ctx.cred``.
    Read permission is not needed: exec reads with the kernel's rights.
    """
    loc, real = vfs.resolve_real(ctx, at, path)  # one walk gives both
    st = loc.inode.stat()
    if st.mode & S_IFMT != S_IFREG or loc.mount.flags & MS_NOEXEC:
        raise Errno(E.EACCES)
    perm.check(st, ctx.cred, MAY_EXEC)
    f = InodeFile(loc, O_RDONLY)
    head = f.pread(BINPRM_BUF_SIZE, 0)
    return ExecFile(f, loc, path, real, head)


# --------------------------------------------------------------------- parse
@dataclass(slots=True)
class _Elf:
    exe: ExecFile
    hdr: ElfHeader
    phdrs: list[ProgramHeader]
    loads: list[ProgramHeader]  # PT_LOADs with memory, in file order

    @property
    def lo(self) -> int:
        """The lowest page of the image (unbiased)."""
        return min(_pagestart(p.vaddr) for p in self.loads)

    @property
    def hi(self) -> int:
        """The end of the highest segment's memory (unbiased)."""
        return max(p.vaddr + p.memsz for p in self.loads)

    @property
    def span(self) -> int:
        return page_align(self.hi) - self.lo


def _read_elf(exe: ExecFile, errno: int) -> _Elf:
    hdr = check_header(exe.head, errno=errno)
    size = hdr.phnum * PHDR.size
    if hdr.phoff + size <= len(exe.head):
        raw = exe.head[hdr.phoff:hdr.phoff + size]
    else:
        raw = exe.file.pread(size, hdr.phoff)
    if len(raw) != size:
        raise Errno(E.EIO)  # Linux's elf_read on a short read
    phdrs = parse_phdrs(raw, hdr.phnum)
    loads = [p for p in phdrs if p.type == PT_LOAD and p.memsz]
    if not loads:
        raise ExecError(errno, "no loadable segments")
    for p in loads:
        if p.filesz > p.memsz or (p.offset - p.vaddr) & PAGE_MASK:
            raise ExecError(errno, f"bad PT_LOAD at {p.vaddr:#x}")
        if p.vaddr + p.memsz > USER_TOP or (hdr.type == ET_EXEC and p.vaddr < MMAP_MIN):
            raise ExecError(errno, f"PT_LOAD at {p.vaddr:#x} outside the user address space")
    return _Elf(exe, hdr, phdrs, loads)


def _interp_path(elf: _Elf) -> str | None:
    for p in elf.phdrs:
        if p.type == PT_INTERP:
            if p.filesz > 4096 or p.filesz < 2:
                raise ExecError(E.ENOEXEC, "bad PT_INTERP size")
            raw = elf.exe.file.pread(p.filesz, p.offset)
            if len(raw) != p.filesz:
                raise Errno(E.EIO)
            if raw[-1] != 0:
                raise ExecError(E.ENOEXEC, "PT_INTERP not NUL-terminated")
            return os.fsdecode(raw[:raw.index(b"\0")])
    return None


# --------------------------------------------------------------------- mapping
@dataclass(slots=True)
class _Mapped:
    bias: int
    lo: int  # first mapped byte (page-aligned, biased)
    hi: int  # end of the highest segment's memory (biased, not page-aligned)
    start_code: int
    end_code: int
    start_data: int
    end_data: int


def _map_elf(mm: MemoryMap, elf: _Elf, *, at: int | None, hint: int) -> _Mapped:
    """Map ``elf`` at bias so that its lowest page lands at ``at`` (fixed) or
    near ``hint`` (ET_DYN placed top-down); ET_EXEC at its own addresses."""
    lo, hi, span = elf.lo, elf.hi, elf.span
    anon = F.MAP_PRIVATE | F.MAP_ANONYMOUS
    if elf.hdr.type == ET_EXEC:
        at = lo
    if at is not None:
        start = mm.mmap(at, span, F.PROT_NONE, anon | F.MAP_FIXED_NOREPLACE)
    else:
        start = mm.mmap(hint, span, F.PROT_NONE, anon)
    bias = start - lo
    name = elf.exe.realpath
    covered: list[tuple[int, int]] = []
    for p in elf.loads:
        seg = _pagestart(bias + p.vaddr)
        file_end = bias + p.vaddr + p.filesz
        mem_end = page_align(bias + p.vaddr + p.memsz)
        anon_start = seg
        if p.filesz:
            pageoff = p.vaddr & PAGE_MASK
            anon_start = page_align(file_end)
            # file_size stops file data at p_filesz: the rest of that page is zero (the
            # start of the bss), and later faults refill it the same way.
            mm.mmap(seg, anon_start - seg, p.prot, F.MAP_PRIVATE | F.MAP_FIXED,
                    file=elf.exe.file, offset=p.offset - pageoff, name=name,
                    file_size=pageoff + p.filesz)
        if mem_end > anon_start:
            mm.mmap(anon_start, mem_end - anon_start, p.prot, anon | F.MAP_FIXED)
        covered.append((seg, mem_end))
    # Holes between segments are not mapped (Linux unmaps the rest of the span).
    cursor = start
    for s, e in sorted(covered):
        if s > cursor:
            mm.munmap(cursor, s - cursor)
        cursor = max(cursor, e)
    if cursor < start + span:
        mm.munmap(cursor, start + span - cursor)

    start_code, end_code, start_data, end_data = USER_TOP, 0, 0, 0
    for p in elf.loads:
        if p.flags & PF_X:
            start_code = min(start_code, p.vaddr)
            end_code = max(end_code, p.vaddr + p.filesz)
        start_data = max(start_data, p.vaddr)
        end_data = max(end_data, p.vaddr + p.filesz)
    if start_code == USER_TOP:
        start_code = 0
    return _Mapped(bias, start, bias + hi, start_code + bias, end_code + bias,
                   start_data + bias, end_data + bias)


def _phdr_addr(elf: _Elf, bias: int) -> int:
    """AT_PHDR: where e_phoff lands in memory (Linux: inside a PT_LOAD's file part)."""
    phoff = elf.hdr.phoff
    addr = None
    for p in elf.loads:
        if p.offset <= phoff < p.offset + p.filesz:
            addr = phoff - p.offset + p.vaddr
    if addr is None:
        addr = next((p.vaddr for p in elf.phdrs if p.type == PT_PHDR), 0)
    return addr + bias


def _encode_all(strings: Sequence[str | bytes]) -> list[bytes]:
    out = []
    for s in strings:
        b = os.fsencode(s)
        if b"\0" in b:
            raise Errno(E.EINVAL)
        out.append(b)
    return out


def load_elf(mm: MemoryMap, vfs: VFS, ctx: PathContext, exe: ExecFile,
             argv: Sequence[str | bytes], envp: Sequence[str | bytes], *,
             execfn: str | None = None, platform_info: PlatformInfo | None = None,
             layout: Layout | None = None, creds: ExecCreds | None = None,
             random_bytes: Callable[[int], bytes] = os.urandom,
             stack_rlimit: int = initstack.STK_LIM) -> LoadedImage:
    """Load the opened ELF ``exe`` into ``mm`` (a fresh, empty map) and build its stack.

    ``execfn`` is the name execve was given (default ``exe.path``; for a
    script, the script's path). ``creds`` supplies AT_UID/EUID/GID/EGID
    (default: ``ctx.cred``). ``random_bytes`` feeds AT_RANDOM (make it
    deterministic for replayable sandboxes). Errors, in Linux's order: E2BIG,
    ENOEXEC (``ExecError``), the interpreter's open errors, ELIBBAD for a bad
    interpreter, EIO for a truncated header; ENOMEM from the mapping.
    """
    info = platform_info or PlatformInfo()
    lay = layout or Layout()
    fn = exe.path if execfn is None else execfn
    argv_b, envp_b, fn_b = _encode_all(argv), _encode_all(envp), os.fsencode(fn)
    initstack.check_args(argv_b, envp_b, fn_b, stack_rlimit)

    elf = _read_elf(exe, E.ENOEXEC)
    interp_path = _interp_path(elf)
    interp = None
    if interp_path is not None:
        interp = _read_elf(open_exec(vfs, ctx, interp_path), E.ELIBBAD)
    exec_stack = any(p.type == PT_GNU_STACK and p.flags & PF_X for p in elf.phdrs)

    # Point of no return: from here on only the memory map can fail.
    # Linux's maximum_alignment: the largest power-of-two p_align, at least a page.
    max_align = max(PAGE, page_align(max(
        (p.align for p in elf.loads if p.align and p.align & (p.align - 1) == 0), default=0)))
    with mm.same_files():  # nothing writes a file meanwhile: one stat per file
        if elf.hdr.type == ET_DYN and (interp is not None or max_align > PAGE):
            # Linux: load_bias = ELF_PAGESTART(aligned base - vaddr of the first PT_LOAD).
            bias = _pagestart((lay.dyn_base & ~(max_align - 1)) - elf.loads[0].vaddr)
            main = _map_elf(mm, elf, at=bias + elf.lo, hint=0)
        else:
            main = _map_elf(mm, elf, at=None, hint=lay.loader_top - elf.span)
        entry = program_entry = elf.hdr.entry + main.bias
        interp_base = 0
        if interp is not None:
            im = _map_elf(mm, interp, at=None, hint=lay.loader_top - interp.span)
            interp_base = im.bias
            entry = interp.hdr.entry + im.bias

    if elf.hdr.type == ET_DYN and interp is None:
        brk = page_align(lay.dyn_base)  # Linux moves a loader's brk out of the mmap area
    else:
        brk = page_align(main.hi)
    mm.set_brk_base(brk + lay.brk_pad)

    phdr = _phdr_addr(elf, main.bias)
    c = creds
    ids = (c.ruid, c.euid, c.rgid, c.egid) if c is not None else (
        ctx.cred.uid, ctx.cred.uid, ctx.cred.gid, ctx.cred.gid)
    aux: list[tuple[int, int]] = []
    if info.vdso:
        aux.append((AUXV.AT_SYSINFO_EHDR, info.vdso))
    aux += [(AUXV.AT_MINSIGSTKSZ, info.minsigstksz), (AUXV.AT_HWCAP, info.hwcap),
            (AUXV.AT_PAGESZ, PAGE), (AUXV.AT_CLKTCK, info.clktck), (AUXV.AT_PHDR, phdr),
            (AUXV.AT_PHENT, PHDR.size), (AUXV.AT_PHNUM, elf.hdr.phnum),
            (AUXV.AT_BASE, interp_base), (AUXV.AT_FLAGS, 0), (AUXV.AT_ENTRY, program_entry),
            (AUXV.AT_UID, ids[0]), (AUXV.AT_EUID, ids[1]), (AUXV.AT_GID, ids[2]),
            (AUXV.AT_EGID, ids[3]), (AUXV.AT_SECURE, 0), (AUXV.AT_RANDOM, 0),
            (AUXV.AT_HWCAP2, info.hwcap2), (AUXV.AT_EXECFN, 0)]
    if info.platform:
        aux.append((AUXV.AT_PLATFORM, 0))
    if info.rseq is not None:
        aux += [(AUXV.AT_RSEQ_FEATURE_SIZE, info.rseq[0]), (AUXV.AT_RSEQ_ALIGN, info.rseq[1])]
    rnd = random_bytes(16)
    if len(rnd) != 16:
        raise ValueError("random_bytes(16) must return 16 bytes")
    base, image, st = initstack.build_stack(
        lay.stack_top, argv_b, envp_b, fn_b, aux, platform=info.platform.encode(),
        random=rnd, pad=lay.stack_pad)
    size = max(lay.stack_size, page_align(lay.stack_top - base) + PAGE)
    stack_prot = F.PROT_READ | F.PROT_WRITE | (F.PROT_EXEC if exec_stack else 0)
    stack_start = mm.mmap(lay.stack_top - size, size, stack_prot,
                          F.MAP_PRIVATE | F.MAP_ANONYMOUS | F.MAP_FIXED_NOREPLACE,
                          name="[stack]")
    # The stack pages the program is about to use, with the ones written here:
    # one run instead of a fault (a VM exit) on its first push below them.
    mm.populate(max(stack_start, _pagestart(base) - STACK_EAGER), lay.stack_top)
    mm.write(base, image)

    return LoadedImage(
        entry=entry, stack_pointer=st.sp, exe_path=exe.realpath, execfn=fn,
        argv=[os.fsdecode(a) for a in argv_b] or [""], envp=[os.fsdecode(e) for e in envp_b],
        program_entry=program_entry, load_bias=main.bias, phdr=phdr, phnum=elf.hdr.phnum,
        interp_path=interp_path, interp_base=interp_base, start_code=main.start_code,
        end_code=main.end_code, start_data=main.start_data, end_data=main.end_data,
        start_brk=mm.brk_start, stack_start=stack_start, stack_end=lay.stack_top,
        arg_start=st.arg_start, arg_end=st.arg_end, env_start=st.env_start,
        env_end=st.env_end, random=st.random, auxv=st.auxv, exec_stack=exec_stack,
        file=exe.file)


def load_program(mm: MemoryMap, vfs: VFS, ctx: PathContext, path: str,
                 argv: Sequence[str | bytes], envp: Sequence[str | bytes],
                 **kwargs: Any) -> LoadedImage:
    """``open_exec`` + ``load_elf`` for a path that must name an ELF program.

    A ``#!`` script gives ``ExecError(ENOEXEC)`` here: the execve syscall
    handles scripts (``parse_shebang``) and calls ``load_elf`` itself.
    Keyword arguments are ``load_elf``'s.
    """
    exe = open_exec(vfs, ctx, path)
    if exe.head[:2] == b"#!":
        raise ExecError(E.ENOEXEC, "a #! script (run by execve, not the ELF loader)")
    return load_elf(mm, vfs, ctx, exe, argv, envp, **kwargs)
