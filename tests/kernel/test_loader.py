"""The ELF loader, judged against the host kernel.

Test programs are built with gcc here (static, static-pie, dynamic). The
strongest checks are differential: the host kernel runs the same binary with
ASLR off (``setarch -R``) and ``env -i``, the program dumps its initial stack
and /proc/self/maps, and cove's loader must produce the same bytes (except the
16 AT_RANDOM bytes) and the same mappings of the binary and its interpreter.
"""

from __future__ import annotations

import errno as host_errno
import os
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from cove.abi import flags as F
from cove.abi.errno import E, Errno
from cove.abi.flags import AUXV
from cove.fs.file import O_CREAT, O_WRONLY
from cove.fs.hostfs import HostFS
from cove.fs.memfs import MemFS
from cove.fs.mount import MS_NOEXEC
from cove.fs.perm import Cred
from cove.fs.vfs import VFS
from cove.kernel import initstack
from cove.kernel.elf import ExecError, parse_phdrs
from cove.kernel.loader import (
    LOADER_TOP,
    STACK_EAGER,
    ExecFile,
    Layout,
    LoadedImage,
    PlatformInfo,
    load_elf,
    load_program,
    open_exec,
    parse_shebang,
)
from cove.kernel.mm import USER_TOP, MemoryMap, page_align
from cove.kernel.physmem import PAGE_SIZE, PhysMem

from .fakes import FakeSpace

GUESTS = Path(__file__).parent / "guests"
LDSO = "/lib64/ld-linux-x86-64.so.2"
pytestmark = pytest.mark.timeout(120)


# ----------------------------------------------------------------- fixtures
@dataclass
class Bins:
    dir: Path
    dump: dict[str, str]  # kind -> stackdump binary
    bss: str
    pargs: str
    execstack: str
    obj: str  # a relocatable .o


@pytest.fixture(scope="session")
def bins(tmp_path_factory: pytest.TempPathFactory) -> Bins:
    if shutil.which("gcc") is None:
        pytest.skip("needs gcc")
    d = tmp_path_factory.mktemp("loader-bins")

    def cc(src: str, out: str, *flags: str) -> str:
        path = d / out
        subprocess.run(["gcc", "-O1", "-o", str(path), str(GUESTS / src), *flags], check=True)
        return str(path)

    dump = {"static": cc("stackdump.c", "dump-static", "-static"),
            "static-pie": cc("stackdump.c", "dump-spie", "-static-pie"),
            "dynamic": cc("stackdump.c", "dump-dyn")}
    obj = d / "pargs.o"
    subprocess.run(["gcc", "-c", "-o", str(obj), str(GUESTS / "pargs.c")], check=True)
    return Bins(d, dump, cc("bss.c", "bss", "-static"), cc("pargs.c", "pargs"),
                cc("pargs.c", "pargs-execstack", "-z", "execstack"), str(obj))


@pytest.fixture
def phys():
    p = PhysMem(256 << 20)
    yield p
    p.close()


@pytest.fixture
def mm(phys):
    m = MemoryMap(phys, FakeSpace())
    yield m
    m.release()


@pytest.fixture(scope="module")
def vfs() -> VFS:
    return VFS(HostFS("/"))


def ctx_of(vfs: VFS, cred: Cred | None = None):
    return vfs.context(cred or Cred(0, 0))


def native_run(argv: list[str], env: list[str]) -> subprocess.CompletedProcess[bytes]:
    """Run on the host kernel with ASLR off and exactly ``env``."""
    if shutil.which("setarch") is None:
        pytest.skip("needs setarch (util-linux)")
    r = subprocess.run(["setarch", "x86_64", "-R", "env", "-i", *env, *argv],
                       capture_output=True)
    if r.returncode and b"personality" in r.stderr:
        pytest.skip("the host does not allow personality(ADDR_NO_RANDOMIZE)")
    return r


@dataclass
class Dump:
    sp: int
    top: int
    stack: bytes
    maps: list[str]


def native_dump(binary: str, argv: list[str], env: list[str]) -> Dump:
    r = native_run([binary, *argv[1:]], env)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().split("\n")
    sp, top, argc = lines[0].split()
    assert int(argc) == len(argv)
    return Dump(int(sp, 16), int(top, 16), bytes.fromhex(lines[1]), [x for x in lines[2:] if x])


@dataclass
class Stack:
    argc: int
    argv: list[int]
    envp: list[int]
    auxv: list[tuple[int, int]]


def parse_stack(mm: MemoryMap, sp: int) -> Stack:
    """Read argc, argv[], envp[], auxv back from guest memory, as libc's _start does."""
    def word(a: int) -> int:
        return struct.unpack("<Q", mm.read(a, 8))[0]

    argc = word(sp)
    argv = [word(sp + 8 + 8 * i) for i in range(argc)]
    assert word(sp + 8 + 8 * argc) == 0
    p = sp + 16 + 8 * argc
    envp = []
    while (v := word(p)) != 0:
        envp.append(v)
        p += 8
    p += 8
    auxv = []
    while True:
        t, v = word(p), word(p + 8)
        auxv.append((t, v))
        p += 16
        if t == AUXV.AT_NULL:
            return Stack(argc, argv, envp, auxv)


def auxv_from_bytes(buf: bytes) -> list[tuple[int, int]]:
    words = struct.unpack(f"<{len(buf) // 8}Q", buf[:len(buf) // 8 * 8])
    i = words[0] + 2
    while words[i]:
        i += 1
    i += 1
    out = []
    while True:
        out.append((words[i], words[i + 1]))
        i += 2
        if out[-1][0] == AUXV.AT_NULL:
            return out


def host_creds():
    class C:
        ruid, euid, rgid, egid = os.getuid(), os.geteuid(), os.getgid(), os.getegid()
    return C()


def elf_segments(path: str) -> list:
    with open(path, "rb") as f:
        return [s.header for s in ELFFile(f).iter_segments()]


# ----------------------------------------------------------------- differential
ARGV_TAIL = ["arg1", "arg two", ""]
ENV = ["A=1", "B=hello world", "EMPTY="]


@pytest.mark.parametrize("kind", ["static", "static-pie", "dynamic"])
def test_stack_is_byte_identical_to_the_host_kernels(bins, vfs, mm, kind):
    binary = bins.dump[kind]
    argv = [binary, *ARGV_TAIL]
    native = native_dump(binary, argv, ENV)
    aux = dict(auxv_from_bytes(native.stack))
    info = PlatformInfo(hwcap=aux[AUXV.AT_HWCAP], hwcap2=aux[AUXV.AT_HWCAP2],
                        minsigstksz=aux[AUXV.AT_MINSIGSTKSZ],
                        vdso=aux.get(AUXV.AT_SYSINFO_EHDR, 0),
                        rseq=(aux[AUXV.AT_RSEQ_FEATURE_SIZE], aux[AUXV.AT_RSEQ_ALIGN])
                        if AUXV.AT_RSEQ_FEATURE_SIZE in aux else None)
    img = load_program(mm, vfs, ctx_of(vfs), binary, argv, ENV, platform_info=info,
                       creds=host_creds())
    assert native.top == USER_TOP == img.stack_end
    assert img.stack_pointer == native.sp
    mine = mm.read(img.stack_pointer, native.top - native.sp)
    rnd = aux[AUXV.AT_RANDOM] - native.sp
    same = lambda b: b[:rnd] + b[rnd + 16:]  # noqa: E731
    assert auxv_from_bytes(mine) == auxv_from_bytes(native.stack)
    assert same(mine) == same(native.stack)
    host = PlatformInfo.from_host()
    assert (host.hwcap, host.hwcap2, host.minsigstksz) == (info.hwcap, info.hwcap2,
                                                           info.minsigstksz)


def _maps_of(lines: list[str], names: set[str]) -> list[tuple[int, int, str, int, str]]:
    out = []
    for line in lines:
        parts = line.split()
        if len(parts) >= 6 and parts[5] in names:
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            out.append((lo, hi, parts[1][:3], int(parts[2], 16), parts[5]))
    return out


def _relro(mm: MemoryMap, path: str, bias: int) -> None:
    """What libc/ld.so do first: mprotect PT_GNU_RELRO read-only (ends rounded down)."""
    for s in elf_segments(path):
        if s.p_type == "PT_GNU_RELRO":
            lo = (bias + s.p_vaddr) & ~0xFFF
            hi = (bias + s.p_vaddr + s.p_memsz) & ~0xFFF
            if hi > lo:
                mm.mprotect(lo, hi - lo, F.PROT_READ)


def _cove_maps(mm: MemoryMap, names: set[str]) -> list[tuple[int, int, str, int, str]]:
    out = []
    for v in mm.vmas:
        if v.name in names:
            perms = "".join(c if v.prot & b else "-" for c, b in (("r", 1), ("w", 2), ("x", 4)))
            out.append((v.start, v.end, perms, v.offset, v.name))
    return out


@pytest.mark.parametrize("kind", ["static", "static-pie", "dynamic"])
def test_mappings_match_the_host_kernels(bins, vfs, mm, kind):
    binary = bins.dump[kind]
    native = native_dump(binary, [binary], [])
    img = load_program(mm, vfs, ctx_of(vfs), binary, [binary], [])
    _relro(mm, binary, img.load_bias)
    names = {binary}
    ldso = os.path.realpath(LDSO)
    if kind == "dynamic":
        _relro(mm, ldso, img.interp_base)
        names.add(ldso)
    assert _cove_maps(mm, names) == _maps_of(native.maps, names)
    # The heap starts where the host kernel put it (brk is untouched by this program's
    # startup only in the static case; otherwise check it is the page after the image).
    heap = [ln for ln in native.maps if ln.endswith("[heap]")]
    if heap:
        assert img.start_brk == int(heap[0].split("-")[0], 16)


def test_e2big_boundary_matches_the_host_kernel(bins, vfs, mm):
    """The strings budget: exactly full works, one byte more is E2BIG, on both kernels."""
    binary = bins.pargs
    k = 30  # strings of under MAX_ARG_STRLEN each
    budget = initstack.strings_budget(1 + k, 0)
    filler = budget - 2 * (len(binary) + 1) - k  # minus execfn, argv[0] and the NULs
    sizes = [filler // k] * k
    sizes[-1] += filler - sum(sizes)
    assert max(sizes) < initstack.MAX_ARG_STRLEN
    fits = [binary, *("a" * n for n in sizes)]
    too_big = [*fits[:-1], fits[-1] + "b"]
    assert sum(len(s) + 1 for s in fits) + len(binary) + 1 == budget
    subprocess.run(fits, env={}, check=True, stdout=subprocess.DEVNULL)
    with pytest.raises(OSError) as e:
        subprocess.run(too_big, env={}, stdout=subprocess.DEVNULL)
    assert e.value.errno == host_errno.E2BIG
    load_program(mm, vfs, ctx_of(vfs), binary, fits, [])
    with pytest.raises(Errno) as ce:
        load_program(MemoryMap(mm.phys, FakeSpace()), vfs, ctx_of(vfs), binary, too_big, [])
    assert ce.value.errno == E.E2BIG


def test_one_string_longer_than_max_arg_strlen_is_e2big(bins, vfs, mm):
    ok = "x" * (initstack.MAX_ARG_STRLEN - 1)
    load_program(mm, vfs, ctx_of(vfs), bins.pargs, [bins.pargs, ok], [])
    with pytest.raises(Errno) as e:
        load_program(MemoryMap(mm.phys, FakeSpace()), vfs, ctx_of(vfs), bins.pargs,
                     [bins.pargs], ["X=" + ok])
    assert e.value.errno == E.E2BIG


SHEBANG_LINES = [
    "#!{p}\n", "#!{p} \n", "#!  {p}\t \n", "#!{p} one\n", "#!{p}\targ with  spaces \t\n",
    "#!{p} a\tb\n", "#!{p}", "#!{p} x", "#!{p} " + "y" * 300, "#!{p}\n#!/bin/false\n",
    "#!/" + "a" * 300, "#!   \n", "#!\n", "#!" + " " * 300,
]


@pytest.mark.parametrize("line", SHEBANG_LINES)
def test_shebang_parse_matches_the_host_kernel(bins, tmp_path, line):
    script = tmp_path / "script"
    script.write_text(line.format(p=bins.pargs))
    script.chmod(0o755)
    head = script.read_bytes()
    try:
        r = subprocess.run([str(script), "extra"], capture_output=True, env={})
    except OSError as e:
        assert e.errno in (host_errno.ENOEXEC, host_errno.ENOENT, host_errno.ENAMETOOLONG)
        if e.errno == host_errno.ENOEXEC:
            with pytest.raises(ExecError) as ce:
                parse_shebang(head)
            assert ce.value.errno == E.ENOEXEC
        else:  # an interpreter path that parses but does not exist
            interp, _ = parse_shebang(head)  # type: ignore[misc]
            assert not os.path.exists(interp)
        return
    assert r.returncode == 0
    native = r.stdout.decode().split("\n")[:-1]
    interp, arg = parse_shebang(head)  # type: ignore[misc]
    assert native == [interp, *([arg] if arg is not None else []), str(script), "extra"]


def test_shebang_not_a_script():
    assert parse_shebang(b"\x7fELF\x02\x01") is None
    assert parse_shebang(b"# !/bin/sh\n") is None
    assert parse_shebang(b"#!/bin/sh -e\n") == ("/bin/sh", "-e")


# ----------------------------------------------------------------- layout details
def test_static_segments_permissions_and_brk(bins, vfs, mm):
    path = bins.dump["static"]
    img = load_program(mm, vfs, ctx_of(vfs), path, [path], [])
    assert img.interp_base == 0 and img.interp_path is None and img.load_bias == 0
    loads = [s for s in elf_segments(path) if s.p_type == "PT_LOAD"]
    for s in loads:
        v = mm.find(s.p_vaddr)
        assert v is not None and v.name == path
        want = (F.PROT_READ if s.p_flags & 4 else 0) | (F.PROT_WRITE if s.p_flags & 2 else 0) | (
            F.PROT_EXEC if s.p_flags & 1 else 0)
        assert v.prot == want
        assert v.offset == s.p_offset & ~0xFFF
        end = s.p_vaddr + s.p_memsz - 1
        assert mm.find(end) is not None and mm.find(end).prot == want
    top = max(s.p_vaddr + s.p_memsz for s in loads)
    assert img.start_brk == mm.brk_start == page_align(top)
    assert img.entry == img.program_entry == ELFFile(open(path, "rb")).header.e_entry
    stack = mm.find(USER_TOP - 1)
    assert stack.name == "[stack]" and stack.prot == F.PROT_READ | F.PROT_WRITE
    assert stack.end - stack.start == 8 << 20
    assert mm.resident_pages() < 200  # the stack and big segments are lazy


def test_bss_is_zero_after_file_data_in_the_shared_page(bins, vfs, mm):
    path = bins.bss
    with open(path, "rb") as f:
        elf = ELFFile(f)
        sym = {s.name: s for s in elf.get_section_by_name(".symtab").iter_symbols()}
        data = next(s.header for s in elf.iter_segments()
                    if s.header.p_type == "PT_LOAD" and s.header.p_flags & 2)
        raw = Path(path).read_bytes()
    marker, big = sym["marker"]["st_value"], sym["big"]["st_value"]
    file_end = data.p_vaddr + data.p_filesz
    # Preconditions that make this test able to fail: the data/bss page is shared,
    # and the file has non-zero bytes where the bss starts.
    assert file_end & 0xFFF and data.p_memsz > data.p_filesz
    page_tail = raw[data.p_offset + data.p_filesz:
                    (data.p_offset + data.p_filesz + 0x1000) & ~0xFFF]
    assert any(page_tail), "nothing after .data in the file: the test would prove nothing"
    assert big // PAGE_SIZE <= file_end // PAGE_SIZE + 1
    load_program(mm, vfs, ctx_of(vfs), path, [path], [])
    assert struct.unpack("<i", mm.read(marker, 4))[0] == 0x12345678
    assert mm.read(file_end, page_align(file_end) - file_end) == bytes(
        page_align(file_end) - file_end)
    assert mm.read(big, 1 << 20) == bytes(1 << 20)
    bss_end = data.p_vaddr + data.p_memsz
    assert mm.find(bss_end - 1).prot == F.PROT_READ | F.PROT_WRITE
    assert mm.find(page_align(bss_end)) is None  # nothing between the bss and brk


def test_bss_tail_stays_zero_after_relro_split_and_refault(bins, vfs, mm):
    """ld.so mprotects RELRO inside the data segment (splitting its VMA); a page
    refaulted later must still read zeros past p_filesz (mm.VMA.split regression)."""
    path = bins.dump["dynamic"]
    img = load_program(mm, vfs, ctx_of(vfs), path, [path], [])
    data = next(s for s in elf_segments(path) if s.p_type == "PT_LOAD" and s.p_flags & 2)
    _relro(mm, path, img.load_bias)
    file_end = img.load_bias + data.p_vaddr + data.p_filesz
    page = file_end & ~0xFFF
    mm.madvise(page, PAGE_SIZE, F.MADV_DONTNEED)
    assert mm.read(file_end, page_align(file_end) - file_end) == bytes(
        page_align(file_end) - file_end)


def test_auxv_argv_envp_parsed_back(bins, vfs, mm):
    path = bins.dump["dynamic"]
    argv, envp = [path, "a", "bb"], ["X=1", "Y=22"]
    img = load_program(mm, vfs, ctx_of(vfs), path, argv, envp)
    sp = img.stack_pointer
    assert sp % 16 == 0
    st = parse_stack(mm, sp)
    assert st.argc == 3
    assert [mm.read_cstring(a, 4096).decode() for a in st.argv] == argv
    assert [mm.read_cstring(a, 4096).decode() for a in st.envp] == envp
    assert mm.read(img.arg_start, img.arg_end - img.arg_start) == b"".join(
        a.encode() + b"\0" for a in argv)
    assert mm.read(img.env_start, img.env_end - img.env_start) == b"X=1\0Y=22\0"
    assert img.arg_end == img.env_start and st.argv[0] == img.arg_start
    aux = dict(st.auxv)
    assert st.auxv == list(img.auxv)
    native_tags = [t for t, _ in auxv_from_bytes(native_dump(path, [path], []).stack)]
    optional = {AUXV.AT_SYSINFO_EHDR, AUXV.AT_RSEQ_FEATURE_SIZE, AUXV.AT_RSEQ_ALIGN}
    assert [t for t, _ in st.auxv] == [t for t in native_tags if t not in optional]
    assert aux[AUXV.AT_PAGESZ] == 4096 and aux[AUXV.AT_CLKTCK] == 100
    assert aux[AUXV.AT_PHENT] == 56 and aux[AUXV.AT_FLAGS] == 0 and aux[AUXV.AT_SECURE] == 0
    assert aux[AUXV.AT_HWCAP] == PlatformInfo().hwcap
    with open(path, "rb") as f:
        elf = ELFFile(f)
        hdr = elf.header
        phdrs = Path(path).read_bytes()[hdr.e_phoff:hdr.e_phoff + hdr.e_phnum * 56]
    assert aux[AUXV.AT_PHNUM] == hdr.e_phnum
    assert mm.read(aux[AUXV.AT_PHDR], len(phdrs)) == phdrs
    assert aux[AUXV.AT_ENTRY] == hdr.e_entry + img.load_bias == img.program_entry
    assert img.load_bias == 0x555555554000
    assert aux[AUXV.AT_BASE] == img.interp_base and mm.read(img.interp_base, 4) == b"\x7fELF"
    with open(LDSO, "rb") as f:
        assert img.entry == img.interp_base + ELFFile(f).header.e_entry
    assert img.interp_base + os.path.getsize(LDSO) <= LOADER_TOP + PAGE_SIZE
    assert mm.read_cstring(aux[AUXV.AT_EXECFN], 4096).decode() == path
    assert mm.read_cstring(aux[AUXV.AT_PLATFORM], 64) == b"x86_64"
    rnd = mm.read(aux[AUXV.AT_RANDOM], 16)
    assert aux[AUXV.AT_RANDOM] == img.random and rnd != bytes(16)
    other = MemoryMap(mm.phys, FakeSpace())
    img2 = load_program(other, vfs, ctx_of(vfs), path, argv, envp)
    assert other.read(img2.random, 16) != rnd
    other.release()


def test_interpreter_mappings_are_named_by_canonical_path(bins, vfs, mm):
    path = bins.dump["dynamic"]
    img = load_program(mm, vfs, ctx_of(vfs), path, [path], [])
    real = os.path.realpath(LDSO)
    names = {v.name for v in mm.vmas}
    assert real in names and LDSO not in names if real != LDSO else real in names
    assert img.interp_path == LDSO and img.exe_path == path
    assert mm.find(img.entry).name == real and mm.find(img.entry).prot & F.PROT_EXEC


def test_auxv_options_and_ids(bins, vfs, mm):
    class Creds:
        ruid, euid, rgid, egid = 1000, 1001, 2000, 2001

    info = PlatformInfo(hwcap=0xABC, hwcap2=2, minsigstksz=4096, vdso=0x7FFFF7FC8000,
                        rseq=(28, 32))
    img = load_program(mm, vfs, ctx_of(vfs), bins.pargs, ["p"], [], platform_info=info,
                       creds=Creds(), execfn="/some/name")
    aux = parse_stack(mm, img.stack_pointer).auxv
    assert aux[0] == (AUXV.AT_SYSINFO_EHDR, 0x7FFFF7FC8000)
    assert aux[1] == (AUXV.AT_MINSIGSTKSZ, 4096)
    d = dict(aux)
    assert (d[AUXV.AT_UID], d[AUXV.AT_EUID], d[AUXV.AT_GID], d[AUXV.AT_EGID]) == (
        1000, 1001, 2000, 2001)
    assert d[AUXV.AT_HWCAP] == 0xABC and d[AUXV.AT_HWCAP2] == 2
    assert aux[-3:] == [(AUXV.AT_RSEQ_FEATURE_SIZE, 28), (AUXV.AT_RSEQ_ALIGN, 32), (0, 0)]
    assert mm.read_cstring(d[AUXV.AT_EXECFN], 100) == b"/some/name"
    assert img.comm == "name"


def test_argc_zero_gets_an_empty_argv0(bins, vfs, mm):
    img = load_program(mm, vfs, ctx_of(vfs), bins.pargs, [], ["E=1"])
    st = parse_stack(mm, img.stack_pointer)
    assert st.argc == 1 and mm.read(st.argv[0], 1) == b"\0"
    assert img.argv == [""]


def test_exec_stack_flag(bins, vfs, mm):
    img = load_program(mm, vfs, ctx_of(vfs), bins.execstack, ["x"], [])
    assert img.exec_stack and mm.find(img.stack_pointer).prot & F.PROT_EXEC
    other = MemoryMap(mm.phys, FakeSpace())
    img2 = load_program(other, vfs, ctx_of(vfs), bins.pargs, ["x"], [])
    assert not img2.exec_stack and not other.find(img2.stack_pointer).prot & F.PROT_EXEC
    other.release()


def test_randomized_layout_moves_everything(bins, vfs, mm):
    lay = Layout.randomized()
    path = bins.dump["dynamic"]
    img = load_program(mm, vfs, ctx_of(vfs), path, [path], [], layout=lay)
    assert img.load_bias != 0x555555554000 and img.load_bias % PAGE_SIZE == 0
    assert img.stack_pointer % 16 == 0 and img.stack_end == lay.stack_top
    assert mm.find(img.entry).prot & F.PROT_EXEC
    assert parse_stack(mm, img.stack_pointer).argc == 1
    real = os.path.realpath(LDSO)
    assert max(v.end for v in mm.vmas if v.name == real) == lay.loader_top
    assert img.start_brk >= page_align(max(v.end for v in mm.vmas if v.name == path))


def test_parser_agrees_with_pyelftools(bins):
    for path in [*bins.dump.values(), bins.bss, os.path.realpath(LDSO)]:
        raw = Path(path).read_bytes()
        with open(path, "rb") as f:
            elf = ELFFile(f)
            h = elf.header
            theirs = [s.header for s in elf.iter_segments()]
        ours = parse_phdrs(raw[h.e_phoff:h.e_phoff + 56 * h.e_phnum], h.e_phnum)
        assert [(p.offset, p.vaddr, p.filesz, p.memsz, p.flags, p.align) for p in ours] == [
            (s.p_offset, s.p_vaddr, s.p_filesz, s.p_memsz, s.p_flags, s.p_align)
            for s in theirs]


# ----------------------------------------------------------------- errors
def _errno_of(fn, *args, **kw) -> Errno:
    with pytest.raises(Errno) as e:
        fn(*args, **kw)
    return e.value


def _patched(src: str, dst: Path, patch) -> str:
    data = bytearray(Path(src).read_bytes())
    patch(data)
    dst.write_bytes(bytes(data))
    dst.chmod(0o755)
    return str(dst)


def test_text_file_is_enoexec(vfs, mm, tmp_path):
    p = tmp_path / "text"
    p.write_text("just some text\n")
    p.chmod(0o755)
    e = _errno_of(load_program, mm, vfs, ctx_of(vfs), str(p), ["t"], [])
    assert e.errno == E.ENOEXEC and isinstance(e, ExecError)
    assert mm.vmas == []  # nothing mapped before the header was accepted


def test_script_is_enoexec_for_the_elf_loader(vfs, mm, tmp_path):
    p = tmp_path / "s.sh"
    p.write_text("#!/bin/sh\necho hi\n")
    p.chmod(0o755)
    e = _errno_of(load_program, mm, vfs, ctx_of(vfs), str(p), ["s"], [])
    assert e.errno == E.ENOEXEC


@pytest.mark.parametrize(("machine", "cls", "data", "reason"), [
    (183, 2, 1, "wrong architecture: ARM aarch64"),
    (3, 1, 1, "wrong architecture: 32-bit Intel 80386"),
    (62, 1, 1, "wrong architecture: x32 (32-bit x86-64 ABI)"),
    (62, 2, 2, "wrong architecture: big-endian x86-64"),
    (243, 2, 1, "wrong architecture: UCB RISC-V"),
])
def test_foreign_architecture_is_enoexec_with_reason(bins, vfs, mm, tmp_path, machine, cls,
                                                     data, reason):
    def patch(b: bytearray) -> None:
        b[4], b[5] = cls, data
        struct.pack_into("<H" if data == 1 else ">H", b, 18, machine)

    path = _patched(bins.pargs, tmp_path / "foreign", patch)
    e = _errno_of(load_program, mm, vfs, ctx_of(vfs), path, ["f"], [])
    assert e.errno == E.ENOEXEC and e.reason == reason  # type: ignore[attr-defined]
    assert str(e) == f"ENOEXEC: {reason}"
    if (machine, cls) == (62, 1):
        return  # a host kernel built with x32 support would try to run this one
    # The host kernel agrees that this is not executable.
    with pytest.raises(OSError) as he:
        subprocess.run([path], capture_output=True)
    assert he.value.errno == host_errno.ENOEXEC


def test_relocatable_object_and_truncated_header_are_enoexec(bins, vfs, mm, tmp_path):
    obj = tmp_path / "o"
    shutil.copy(bins.obj, obj)
    obj.chmod(0o755)
    e = _errno_of(load_program, mm, vfs, ctx_of(vfs), str(obj), ["o"], [])
    assert e.errno == E.ENOEXEC and "ET_REL" in str(e)
    short = tmp_path / "short"
    short.write_bytes(Path(bins.pargs).read_bytes()[:40])
    short.chmod(0o755)
    assert _errno_of(load_program, mm, vfs, ctx_of(vfs), str(short), ["s"], []
                     ).errno == E.ENOEXEC


def test_permission_errors(bins, vfs, mm, tmp_path):
    ctx = ctx_of(vfs)
    tmp_path.chmod(0o755)  # the sandbox root below: another uid may search it
    nox = tmp_path / "nox"
    shutil.copy(bins.pargs, nox)
    nox.chmod(0o644)
    assert _errno_of(load_program, mm, vfs, ctx, str(nox), ["n"], []).errno == E.EACCES
    assert _errno_of(load_program, mm, vfs, ctx, str(tmp_path), ["d"], []).errno == E.EACCES
    assert _errno_of(load_program, mm, vfs, ctx, str(tmp_path / "missing"), ["m"], []
                     ).errno == E.ENOENT
    # Owner-only execute: someone else may not run it; read permission is not needed.
    own = tmp_path / "own"
    shutil.copy(bins.dump["static"], own)  # static: this sandbox has no ld.so
    own.chmod(0o711)
    hv = VFS(HostFS(str(tmp_path), owner=(0, 0)))
    other = ctx_of(hv, Cred(1000, 1000))
    load_program(mm, hv, other, "/own", ["o"], [])  # --x for others: fine
    own.chmod(0o700)
    e = _errno_of(load_program, MemoryMap(mm.phys, FakeSpace()), hv, other, "/own", ["o"], [])
    assert e.errno == E.EACCES


def _memfs_file(v: VFS, mount_at: str, name: str, data: bytes, *, flags: int = 0,
                mode: int = 0o755) -> str:
    v.mount(mount_at, MemFS(), flags=flags)
    path = f"{mount_at}/{name}"
    f = v.open(v.context(), None, path, O_CREAT | O_WRONLY, mode)
    f.pwrite(data, 0)
    return path


def test_noexec_mount_is_eacces_and_memfs_files_load(bins, mm, tmp_path):
    data = Path(bins.dump["static"]).read_bytes()
    v = VFS(HostFS("/"))
    path = _memfs_file(v, str(tmp_path), "prog", data, flags=MS_NOEXEC)
    assert _errno_of(load_program, mm, v, v.context(), path, ["p"], []).errno == E.EACCES
    v2 = VFS(HostFS("/"))
    path = _memfs_file(v2, str(tmp_path), "prog", data)
    img = load_program(mm, v2, v2.context(), path, ["p"], [])
    assert mm.read(img.entry, 4) == data[img.entry - 0x400000:img.entry - 0x400000 + 4]


def test_interpreter_is_resolved_in_the_sandbox_not_the_host(bins, mm):
    prog = bins.dump["dynamic"]
    ldso = Path(os.path.realpath(LDSO)).read_bytes()
    # A sandbox whose /lib64 is empty: the host has the interpreter, the sandbox not.
    v = VFS(HostFS("/"))
    v.mount("/lib64", MemFS())
    assert _errno_of(load_program, mm, v, v.context(), prog, ["p"], []).errno == E.ENOENT
    assert mm.vmas == []
    # Its own copy of ld.so in a memfs /lib64 loads, named by the sandbox path.
    v = VFS(HostFS("/"))
    path = _memfs_file(v, "/lib64", "ld-linux-x86-64.so.2", ldso)
    img = load_program(mm, v, v.context(), prog, ["p"], [])
    assert mm.find(img.interp_base).name == os.path.realpath("/lib64") + path[len("/lib64"):]
    assert mm.read(img.interp_base, 64) == ldso[:64]


@pytest.mark.parametrize(("content", "mode", "err"), [
    (b"not an elf\n", 0o755, E.ELIBBAD),
    (None, 0o755, E.ELIBBAD),  # an aarch64 header
    (b"", 0o644, E.EACCES),  # the interpreter needs its x bit too
])
def test_bad_interpreter(bins, mm, content, mode, err):
    if content is None:
        raw = bytearray(Path(os.path.realpath(LDSO)).read_bytes()[:4096])
        struct.pack_into("<H", raw, 18, 183)
        content = bytes(raw)
    elif not content:
        content = Path(os.path.realpath(LDSO)).read_bytes()
    v = VFS(HostFS("/"))
    _memfs_file(v, "/lib64", "ld-linux-x86-64.so.2", content, mode=mode)
    e = _errno_of(load_program, mm, v, v.context(), bins.dump["dynamic"], ["p"], [])
    assert e.errno == err
    assert mm.vmas == []


def test_open_exec_reads_the_head(bins, vfs):
    exe = open_exec(vfs, ctx_of(vfs), bins.pargs)
    assert isinstance(exe, ExecFile) and exe.head[:4] == b"\x7fELF" and len(exe.head) == 256
    assert exe.realpath == bins.pargs


def test_load_elf_with_script_execfn(bins, vfs, mm):
    """execve's script path: the interpreter is loaded, AT_EXECFN names the script."""
    exe = open_exec(vfs, ctx_of(vfs), bins.pargs)
    img = load_elf(mm, vfs, ctx_of(vfs), exe, [bins.pargs, "/tmp/script"], [],
                   execfn="/tmp/script")
    assert isinstance(img, LoadedImage)
    d = dict(parse_stack(mm, img.stack_pointer).auxv)
    assert mm.read_cstring(d[AUXV.AT_EXECFN], 100) == b"/tmp/script"
    assert img.exe_path == bins.pargs and img.comm == "script"


def test_the_stack_below_the_strings_is_populated_at_exec(bins, vfs, mm):
    img = load_program(mm, vfs, ctx_of(vfs), bins.pargs, ["x"], [])
    top, sp = img.stack_end >> 12, img.stack_pointer >> 12
    eager = STACK_EAGER // PAGE_SIZE
    assert all(v in mm.frames for v in range(sp - eager, top))
    resident = sum(1 for v in mm.frames if img.stack_start >> 12 <= v < top)
    assert resident <= top - sp + eager  # the rest of the stack stays lazy
