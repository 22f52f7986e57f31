"""brk and the mmap family through the dispatcher: argument checks in Linux's
order, file mappings (regular files, /dev/zero, unmappable files), mprotect
against the file's access mode, mremap, madvise, msync, mlock, mincore,
membarrier."""

from __future__ import annotations

import pytest

from cove.abi import flags as F
from cove.abi.errno import E
from cove.fs.devfs import make_devfs, register_drivers
from cove.fs.file import O_CREAT, O_PATH, O_RDONLY, O_RDWR, O_WRONLY, File
from cove.fs.memfs import MemFS
from cove.fs.mount import MS_NOEXEC
from cove.fs.node import S_IFIFO, Stat
from cove.kernel.mm import MMAP_MIN, USER_TOP
from cove.kernel.syscalls.mem import MappedFile

from .harness import SCRATCH, call, make_kernel, put
from .sysutil import BAD, spawn, user

PG = 4096
RW = F.PROT_READ | F.PROT_WRITE
ANON = F.MAP_PRIVATE | F.MAP_ANONYMOUS
FIXED = F.MAP_FIXED
LOW = 0x2000_0000


def mmap(t, addr, length, prot, flags, fd=-1, off=0):
    return call(t, "mmap", addr, length, prot, flags, fd, off)


def open_file(k, t, path, flags, data=None):
    f = k.vfs.open(t.fs, None, path, flags | (O_CREAT if data is not None else 0), 0o644)
    if data is not None:
        w = k.vfs.open(t.fs, None, path, O_RDWR)
        w.pwrite(data, 0)
    return t.files.install(f)


class Pipe(File):
    def stat(self) -> Stat:
        return Stat(ino=1, mode=S_IFIFO | 0o600)


def with_dev(k):
    k.vfs.mkdir(k.vfs.context(), None, "/dev", 0o755)
    k.vfs.mount("/dev", make_devfs())
    register_drivers(k.vfs.device_openers)


# --- brk --------------------------------------------------------------------------------
def test_brk_never_returns_an_errno():
    _, t = make_kernel()
    t.mm.set_brk_base(0x40_0000)
    assert call(t, "brk", 0) == 0x40_0000
    assert call(t, "brk", 0x40_3000) == 0x40_3000
    t.mm.write(0x40_2FF0, b"heap")
    assert call(t, "brk", 0x1000) == 0x40_3000  # below the start: unchanged
    # into an existing mapping: refused, the old break comes back
    t.mm.mmap(0x50_0000, PG, RW, ANON | FIXED)
    assert call(t, "brk", 0x50_1000) == 0x40_3000
    assert call(t, "brk", 0x40_1000) == 0x40_1000
    assert call(t, "brk", BAD << 4) == 0x40_1000


# --- anonymous mmap -------------------------------------------------------------------------
def test_anonymous_mmap():
    _, t = make_kernel()
    a = mmap(t, 0, 3 * PG, RW, ANON)
    assert a > 0 and a % PG == 0
    t.mm.write(a, b"x" * (3 * PG))
    b = mmap(t, LOW, 5000, RW, ANON | FIXED)
    assert b == LOW and t.mm.find(LOW).end == LOW + 2 * PG
    s = mmap(t, 0, PG, RW, F.MAP_SHARED | F.MAP_ANONYMOUS)
    assert t.mm.find(s).shared is not None
    # unknown prot bits are ignored by mmap (not by mprotect)
    assert mmap(t, 0, PG, RW | 0x100, ANON) > 0


@pytest.mark.parametrize("args, err", [
    ((0, 0, RW, ANON), E.EINVAL),  # length 0
    ((0, PG, RW, F.MAP_ANONYMOUS), E.EINVAL),  # no MAP_TYPE
    ((0, PG, RW, F.MAP_SHARED_VALIDATE | F.MAP_ANONYMOUS), E.EINVAL),
    ((0, PG, RW, F.MAP_SHARED | F.MAP_ANONYMOUS | F.MAP_GROWSDOWN), E.EINVAL),
    ((LOW + 1, PG, RW, ANON | FIXED), E.EINVAL),  # unaligned fixed address
    ((0, PG, RW, ANON, -1, 5), E.EINVAL),  # unaligned offset, before anything else
    ((0, 1 << 47, RW, ANON), E.ENOMEM),
    ((0, (1 << 64) - 100, RW, ANON), E.ENOMEM),
    ((USER_TOP - PG, 2 * PG, RW, ANON | FIXED), E.ENOMEM),
    ((0x1000, PG, RW, ANON | FIXED), E.EPERM),  # below vm.mmap_min_addr
    ((0, 2 << 20, RW, ANON | F.MAP_HUGETLB), E.ENOMEM),  # no huge pages reserved
    ((0, PG, RW, F.MAP_PRIVATE), E.EBADF),  # no fd
    ((0, 0, RW, F.MAP_PRIVATE, 77), E.EBADF),  # EBADF comes before the length check
    ((0, PG, RW, F.MAP_PRIVATE, -1, 5), E.EINVAL),
])
def test_mmap_errors(args, err):
    _, t = make_kernel()
    assert mmap(t, *args) == -err


def test_fixed_noreplace_and_fixed():
    _, t = make_kernel()
    assert mmap(t, LOW, 2 * PG, RW, ANON | FIXED) == LOW
    t.mm.write(LOW, b"old")
    assert mmap(t, LOW + PG, PG, RW, ANON | F.MAP_FIXED_NOREPLACE) == -E.EEXIST
    assert mmap(t, LOW + PG, PG, RW, ANON | F.MAP_FIXED_NOREPLACE | FIXED) == -E.EEXIST
    assert mmap(t, LOW + 2 * PG, PG, RW, ANON | F.MAP_FIXED_NOREPLACE) == LOW + 2 * PG
    assert mmap(t, LOW, PG, RW, ANON | FIXED) == LOW  # MAP_FIXED replaces
    assert t.mm.read(LOW, 3) == bytes(3)
    assert mmap(t, MMAP_MIN, PG, RW, ANON | FIXED) == MMAP_MIN


def test_map_32bit_lands_low():
    _, t = make_kernel()
    a = mmap(t, 0, 3 * PG, RW, ANON | F.MAP_32BIT)
    b = mmap(t, 0, PG, RW, ANON | F.MAP_32BIT)
    assert 0x40000000 <= a < b < 0x80000000
    assert b >= a + 3 * PG


def test_hint_is_used_when_free():
    _, t = make_kernel()
    assert mmap(t, LOW + 0x123, PG, RW, ANON) == LOW  # rounded down, then taken
    assert mmap(t, LOW, PG, RW, ANON) not in (LOW, -E.EEXIST)


# --- file mappings ------------------------------------------------------------------------
def test_private_file_mapping_reads_the_file_and_copies_on_write():
    k, t = make_kernel()
    fd = open_file(k, t, "/data", O_RDONLY, b"A" * PG + b"B" * 100)
    a = mmap(t, 0, 2 * PG, RW, F.MAP_PRIVATE, fd, 0)
    assert a > 0
    assert t.mm.read(a, 4) == b"AAAA"
    assert t.mm.read(a + PG, 101) == b"B" * 100 + b"\0"
    assert t.mm.find(a).name == ""  # a regular File does not record its path (yet)
    t.mm.write(a, b"zz")  # private: the file does not change
    assert k.vfs.open(t.fs, None, "/data", O_RDONLY).pread(2, 0) == b"AA"
    b = mmap(t, 0, PG, F.PROT_READ, F.MAP_PRIVATE, fd, PG)
    assert t.mm.read(b, 2) == b"BB"


def test_shared_file_mapping_writes_back():
    k, t = make_kernel()
    fd = open_file(k, t, "/shared", O_RDWR, b"x" * 10)
    a = mmap(t, 0, PG, RW, F.MAP_SHARED, fd, 0)
    t.mm.write(a, b"hello")
    assert call(t, "msync", a, PG, F.MS_SYNC) == 0
    assert k.vfs.open(t.fs, None, "/shared", O_RDONLY).pread(10, 0) == b"hellox" + b"x" * 4
    t.mm.write(a + 5, b"!")
    assert call(t, "munmap", a, PG) == 0
    assert k.vfs.open(t.fs, None, "/shared", O_RDONLY).pread(10, 0) == b"hello!xxxx"


def test_write_back_ignores_o_append():
    k, t = make_kernel()
    open_file(k, t, "/log", O_RDONLY, b"0123456789")
    fd = t.files.install(k.vfs.open(t.fs, None, "/log", O_RDWR | F.O_APPEND))
    a = mmap(t, 0, PG, RW, F.MAP_SHARED, fd, 0)
    t.mm.write(a + 2, b"ab")
    call(t, "munmap", a, PG)
    assert k.vfs.open(t.fs, None, "/log", O_RDONLY).pread(20, 0) == b"01ab456789"


def test_file_access_modes():
    k, t = make_kernel()
    ro = open_file(k, t, "/f", O_RDONLY, b"data")
    wo = t.files.install(k.vfs.open(t.fs, None, "/f", O_WRONLY))
    rw = t.files.install(k.vfs.open(t.fs, None, "/f", O_RDWR))
    path = t.files.install(k.vfs.open(t.fs, None, "/f", O_PATH))
    assert mmap(t, 0, PG, RW, F.MAP_SHARED, ro) == -E.EACCES
    assert mmap(t, 0, PG, F.PROT_READ, F.MAP_SHARED, ro) > 0
    assert mmap(t, 0, PG, RW, F.MAP_PRIVATE, ro) > 0  # copy-on-write is fine
    assert mmap(t, 0, PG, F.PROT_READ, F.MAP_PRIVATE, wo) == -E.EACCES
    assert mmap(t, 0, PG, RW, F.MAP_SHARED, rw) > 0
    assert mmap(t, 0, PG, F.PROT_READ, F.MAP_PRIVATE, path) == -E.EBADF
    assert mmap(t, 0, PG, F.PROT_READ, F.MAP_PRIVATE | F.MAP_HUGETLB, ro) == -E.EINVAL
    assert mmap(t, 0, PG, F.PROT_READ, F.MAP_PRIVATE | F.MAP_GROWSDOWN, ro) == -E.EINVAL
    assert mmap(t, 0, PG, F.PROT_READ, 0, ro) == -E.EINVAL
    assert mmap(t, 0, PG, F.PROT_READ, F.MAP_PRIVATE, ro, 1 << 63) == -E.EOVERFLOW


def test_shared_validate_flags():
    k, t = make_kernel()
    fd = open_file(k, t, "/v", O_RDWR, b"v")
    assert mmap(t, 0, PG, RW, F.MAP_SHARED_VALIDATE | F.MAP_SYNC, fd) == -E.EOPNOTSUPP
    assert mmap(t, 0, PG, RW, F.MAP_SHARED | F.MAP_SYNC, fd) > 0  # legacy: dropped
    a = mmap(t, 0, PG, RW, F.MAP_SHARED_VALIDATE | F.MAP_POPULATE, fd)
    assert a > 0 and t.mm.find(a).shared is not None


def test_unmappable_files():
    k, t = make_kernel()
    pipe = t.files.install(Pipe(O_RDONLY))
    assert mmap(t, 0, PG, F.PROT_READ, F.MAP_PRIVATE, pipe) == -E.ENODEV
    wpipe = t.files.install(Pipe(O_WRONLY))
    assert mmap(t, 0, PG, F.PROT_READ, F.MAP_PRIVATE, wpipe) == -E.EACCES  # not readable first
    k.vfs.mkdir(t.fs, None, "/d", 0o755)
    d = t.files.install(k.vfs.open(t.fs, None, "/d", O_RDONLY))
    assert mmap(t, 0, PG, F.PROT_READ, F.MAP_PRIVATE, d) == -E.ENODEV
    with_dev(k)
    null = t.files.install(k.vfs.open(t.fs, None, "/dev/null", O_RDWR))
    assert mmap(t, 0, PG, F.PROT_READ, F.MAP_PRIVATE, null) == -E.ENODEV


def test_dev_zero_is_anonymous_memory():
    k, t = make_kernel()
    with_dev(k)
    z = t.files.install(k.vfs.open(t.fs, None, "/dev/zero", O_RDWR))
    a = mmap(t, 0, 2 * PG, RW, F.MAP_PRIVATE, z, PG)
    v = t.mm.find(a)
    assert v.file is None and v.shared is None and v.name == ""
    t.mm.write(a, b"ok")
    s = mmap(t, 0, PG, RW, F.MAP_SHARED, z)
    v = t.mm.find(s)
    assert v.shared is not None and v.shared.source is None
    assert v.name == "/dev/zero (deleted)"
    zro = t.files.install(k.vfs.open(t.fs, None, "/dev/zero", O_RDONLY))
    assert mmap(t, 0, PG, RW, F.MAP_SHARED, zro) == -E.EACCES


def test_noexec_mount():
    k, t = make_kernel()
    k.vfs.mkdir(t.fs, None, "/mnt", 0o755)
    k.vfs.mount("/mnt", MemFS(), flags=MS_NOEXEC)
    fd = open_file(k, t, "/mnt/lib.so", O_RDONLY, b"\x7fELF")
    assert mmap(t, 0, PG, F.PROT_READ | F.PROT_EXEC, F.MAP_PRIVATE, fd) == -E.EPERM
    a = mmap(t, 0, PG, F.PROT_READ, F.MAP_PRIVATE, fd)
    assert a > 0
    assert call(t, "mprotect", a, PG, F.PROT_READ | F.PROT_EXEC) == -E.EACCES
    assert call(t, "mprotect", a, PG, RW) == 0


def test_mapping_names():
    k, t = make_kernel()
    fd = open_file(k, t, "/lib.so", O_RDONLY, b"x")
    t.files.get(fd).path = "/lib.so"  # as an opener that records the path would
    a = mmap(t, 0, PG, F.PROT_READ, F.MAP_PRIVATE, fd)
    assert t.mm.find(a).name == "/lib.so"
    mfd = call(t, "memfd_create", put(t, b"jit\0", 0x900), 0)
    call(t, "ftruncate", mfd, PG)
    b = mmap(t, 0, PG, RW, F.MAP_SHARED, mfd)
    assert t.mm.find(b).name == "/memfd:jit (deleted)"


def test_mprotect_respects_the_files_access_mode():
    k, t = make_kernel()
    ro = open_file(k, t, "/r", O_RDONLY, b"r")
    a = mmap(t, 0, PG, F.PROT_READ, F.MAP_SHARED, ro)
    assert call(t, "mprotect", a, PG, RW) == -E.EACCES
    p = mmap(t, 0, PG, F.PROT_READ, F.MAP_PRIVATE, ro)
    assert call(t, "mprotect", p, PG, RW) == 0  # private copies may be written
    assert isinstance(t.mm.find(p).file, MappedFile)


def test_sealed_memfd():
    _k, t = make_kernel()
    name = put(t, b"m\0", 0x900)
    fd = call(t, "memfd_create", name, F.MFD_ALLOW_SEALING)
    assert fd >= 0
    t.files.get(fd).pwrite(b"sealed", 0)
    assert call(t, "fcntl", fd, F.F_ADD_SEALS, F.F_SEAL_WRITE) == 0
    assert mmap(t, 0, PG, RW, F.MAP_SHARED, fd) == -E.EPERM
    a = mmap(t, 0, PG, F.PROT_READ, F.MAP_SHARED, fd)
    assert t.mm.read(a, 6) == b"sealed"
    assert call(t, "mprotect", a, PG, RW) == -E.EACCES
    assert mmap(t, 0, PG, RW, F.MAP_PRIVATE, fd) > 0


# --- munmap, mprotect ----------------------------------------------------------------------
def test_munmap():
    _, t = make_kernel()
    a = mmap(t, LOW, 4 * PG, RW, ANON | FIXED)
    assert call(t, "munmap", a + PG, PG) == 0
    assert t.mm.find(a + PG) is None and t.mm.find(a + 2 * PG) is not None
    assert call(t, "munmap", a + 1, PG) == -E.EINVAL
    assert call(t, "munmap", a, 0) == -E.EINVAL
    assert call(t, "munmap", USER_TOP, 2 * PG) == -E.EINVAL
    assert call(t, "munmap", 1 << 63, PG) == -E.EINVAL
    assert call(t, "munmap", 0x7000_0000_0000, PG) == 0  # nothing there is fine


def test_mprotect():
    _, t = make_kernel()
    a = mmap(t, LOW, 2 * PG, RW, ANON | FIXED)
    assert call(t, "mprotect", a, PG, F.PROT_READ) == 0
    assert t.mm.find(a).prot == F.PROT_READ and t.mm.find(a + PG).prot == RW
    assert call(t, "mprotect", a + 1, PG, F.PROT_READ) == -E.EINVAL
    assert call(t, "mprotect", a, PG, 0x100) == -E.EINVAL
    assert call(t, "mprotect", a, PG, F.PROT_READ | F.PROT_GROWSDOWN | F.PROT_GROWSUP) == (
        -E.EINVAL)
    assert call(t, "mprotect", a, 3 * PG, F.PROT_READ) == -E.ENOMEM  # runs into a hole
    assert call(t, "mprotect", a, 0, F.PROT_READ) == 0
    assert call(t, "mprotect", a, (1 << 64) - PG, F.PROT_READ) == -E.ENOMEM


def test_mprotect_split_and_restore_is_one_mapping_again():
    k, t = make_kernel()
    a = mmap(t, LOW, 4 * PG, RW, ANON | FIXED)
    assert call(t, "mprotect", a + PG, PG, F.PROT_READ) == 0
    assert len([v for v in t.mm.vmas if LOW <= v.start < LOW + 4 * PG]) == 3
    assert call(t, "mprotect", a + PG, PG, RW) == 0
    (v,) = [v for v in t.mm.vmas if LOW <= v.start < LOW + 4 * PG]
    assert (v.start, v.end) == (a, a + 4 * PG)
    t.mm.write(a + 3 * PG, b"tail")
    b = call(t, "mremap", a, 4 * PG, 64 * PG, F.MREMAP_MAYMOVE)  # one VMA: may grow
    assert b > 0 and t.mm.read(b + 3 * PG, 4) == b"tail"
    # shared and file mappings merge only with their own other half
    fd = open_file(k, t, "/mf", O_RDWR, b"m" * 3 * PG)
    s = mmap(t, LOW + 0x100_0000, 3 * PG, RW, F.MAP_SHARED, fd)
    shared = t.mm.find(s).shared
    call(t, "mprotect", s + PG, PG, F.PROT_READ)
    assert shared.users == 3
    call(t, "mprotect", s + PG, PG, RW)
    assert shared.users == 1 and t.mm.find(s).end == s + 3 * PG
    n = mmap(t, s + 3 * PG, PG, RW, F.MAP_SHARED, fd)  # adjacent, another mapping
    call(t, "mprotect", n, PG, RW)
    assert t.mm.find(n).start == n and t.mm.find(s).end == s + 3 * PG


# --- mremap ----------------------------------------------------------------------------------
def test_mremap_grow_shrink_move():
    _, t = make_kernel()
    a = mmap(t, LOW, 2 * PG, RW, ANON | FIXED)
    t.mm.write(a, b"keep")
    assert call(t, "mremap", a, 2 * PG, 3 * PG, 0) == a  # grows in place
    assert call(t, "mremap", a, 3 * PG, PG, 0) == a  # shrinks
    assert t.mm.find(a + PG) is None
    mmap(t, a + PG, PG, RW, ANON | FIXED)  # block growth in place
    assert call(t, "mremap", a, PG, 2 * PG, 0) == -E.ENOMEM
    b = call(t, "mremap", a, PG, 2 * PG, F.MREMAP_MAYMOVE)
    assert b > 0 and b != a and t.mm.read(b, 4) == b"keep"
    c = call(t, "mremap", b, 2 * PG, 2 * PG, F.MREMAP_MAYMOVE | F.MREMAP_FIXED, LOW + 0x10_0000)
    assert c == LOW + 0x10_0000 and t.mm.read(c, 4) == b"keep"


@pytest.mark.parametrize("args, err", [
    ((LOW, PG, PG, 8), E.EINVAL),  # unknown flag
    ((LOW, PG, PG, F.MREMAP_FIXED, LOW + 0x10_0000), E.EINVAL),  # FIXED needs MAYMOVE
    ((LOW, PG, 2 * PG, F.MREMAP_MAYMOVE | F.MREMAP_DONTUNMAP), E.EINVAL),  # resize
    ((LOW, PG, PG, F.MREMAP_DONTUNMAP), E.EINVAL),
    ((LOW + 1, PG, PG, 0), E.EINVAL),
    ((LOW, PG, 0, 0), E.EINVAL),
    ((0x7000_0000_0000, PG, PG, 0), E.EFAULT),  # nothing mapped
    ((LOW, 8 * PG, 8 * PG, 0), E.EFAULT),  # beyond the mapping
    ((LOW, 0, PG, F.MREMAP_MAYMOVE), E.EINVAL),  # private duplicate
    ((LOW, 2 * PG, 2 * PG, F.MREMAP_MAYMOVE | F.MREMAP_FIXED, LOW + PG), E.EINVAL),  # overlap
    ((LOW, PG, PG, F.MREMAP_MAYMOVE | F.MREMAP_FIXED, LOW + 0x10_0001), E.EINVAL),
    ((LOW, PG, PG, F.MREMAP_MAYMOVE | F.MREMAP_FIXED, USER_TOP), E.EINVAL),
])
def test_mremap_errors(args, err):
    _, t = make_kernel()
    mmap(t, LOW, 2 * PG, RW, ANON | FIXED)
    assert call(t, "mremap", *args) == -err


def test_mremap_dontunmap_leaves_empty_pages_behind():
    _, t = make_kernel()
    a = mmap(t, LOW, 2 * PG, RW, ANON | FIXED)
    t.mm.write(a, b"moved")
    b = call(t, "mremap", a, 2 * PG, 2 * PG, F.MREMAP_MAYMOVE | F.MREMAP_DONTUNMAP)
    assert b > 0 and b != a
    assert t.mm.read(b, 5) == b"moved"
    assert t.mm.find(a) is not None and t.mm.read(a, 5) == bytes(5)
    s = mmap(t, 0, PG, RW, F.MAP_SHARED | F.MAP_ANONYMOUS)
    assert call(t, "mremap", s, PG, PG, F.MREMAP_MAYMOVE | F.MREMAP_DONTUNMAP) == -E.EINVAL


# --- madvise, msync ---------------------------------------------------------------------
def test_madvise():
    _, t = make_kernel()
    a = mmap(t, LOW, 4 * PG, RW, ANON | FIXED)
    t.mm.write(a, b"gone")
    assert call(t, "madvise", a, PG, F.MADV_DONTNEED) == 0
    assert t.mm.read(a, 4) == bytes(4)
    t.mm.write(a, b"free")
    assert call(t, "madvise", a, PG, F.MADV_FREE) == 0
    for advice in (F.MADV_NORMAL, F.MADV_WILLNEED, F.MADV_SEQUENTIAL, F.MADV_HUGEPAGE,
                   F.MADV_DONTDUMP, F.MADV_COLD, F.MADV_DONTFORK):
        assert call(t, "madvise", a, 4 * PG, advice) == 0
    assert call(t, "madvise", a, PG, 999) == -E.EINVAL
    assert call(t, "madvise", a + 1, PG, F.MADV_NORMAL) == -E.EINVAL
    assert call(t, "madvise", a + 1, 0, F.MADV_NORMAL) == -E.EINVAL
    assert call(t, "madvise", a, 0, F.MADV_NORMAL) == 0
    assert call(t, "madvise", a, (1 << 64) - PG, F.MADV_NORMAL) == -E.EINVAL
    assert call(t, "madvise", 0x7000_0000_0000, PG, F.MADV_NORMAL) == -E.ENOMEM
    assert call(t, "madvise", a, PG, F.MADV_WIPEONFORK) == -E.EINVAL
    assert call(t, "madvise", a, PG, F.MADV_HWPOISON) == -E.EPERM
    assert call(t, "madvise", a, PG, F.MADV_REMOVE) == -E.EINVAL  # private memory


def test_madvise_hole_is_enomem_after_advising_the_rest():
    _, t = make_kernel()
    a = mmap(t, LOW, 3 * PG, RW, ANON | FIXED)
    call(t, "munmap", a + PG, PG)
    t.mm.write(a, b"x")
    t.mm.write(a + 2 * PG, b"y")
    assert call(t, "madvise", a, 3 * PG, F.MADV_DONTNEED) == -E.ENOMEM
    assert t.mm.read(a, 1) == b"\0" and t.mm.read(a + 2 * PG, 1) == b"\0"


def test_madvise_free_needs_private_anonymous():
    k, t = make_kernel()
    fd = open_file(k, t, "/m", O_RDONLY, b"m")
    a = mmap(t, 0, PG, F.PROT_READ, F.MAP_PRIVATE, fd)
    assert call(t, "madvise", a, PG, F.MADV_FREE) == -E.EINVAL


def test_madvise_populate():
    k, t = make_kernel()
    a = mmap(t, LOW, 200 * PG, RW, ANON | FIXED)  # large: populated lazily
    assert (LOW + 150 * PG) >> 12 not in t.mm.frames
    assert call(t, "madvise", a, 200 * PG, F.MADV_POPULATE_WRITE) == 0
    assert all((LOW >> 12) + i in t.mm.frames for i in range(200))
    ro = mmap(t, LOW + 0x100_0000, 100 * PG, F.PROT_READ, ANON | FIXED)
    assert call(t, "madvise", ro, 100 * PG, F.MADV_POPULATE_WRITE) == -E.EINVAL
    assert call(t, "madvise", ro, 100 * PG, F.MADV_POPULATE_READ) == 0
    none = mmap(t, LOW + 0x200_0000, 100 * PG, 0, ANON | FIXED)
    assert call(t, "madvise", none, PG, F.MADV_POPULATE_READ) == -E.EINVAL
    fd = open_file(k, t, "/small", O_RDONLY, b"s" * 10)
    f = mmap(t, 0, 100 * PG, F.PROT_READ, F.MAP_PRIVATE, fd)
    assert call(t, "madvise", f, 100 * PG, F.MADV_POPULATE_READ) == -E.EFAULT  # past EOF


def test_msync_errors():
    _, t = make_kernel()
    a = mmap(t, LOW, PG, RW, ANON | FIXED)
    assert call(t, "msync", a, PG, F.MS_ASYNC) == 0
    assert call(t, "msync", a, PG, F.MS_ASYNC | F.MS_SYNC) == -E.EINVAL
    assert call(t, "msync", a, PG, 8) == -E.EINVAL
    assert call(t, "msync", a + 1, PG, 0) == -E.EINVAL
    assert call(t, "msync", a, 2 * PG, 0) == -E.ENOMEM
    assert call(t, "msync", a, (1 << 64) - PG, 0) == -E.ENOMEM


# --- mlock, mincore ----------------------------------------------------------------------
def test_mlock_family():
    k, t = make_kernel()
    a = mmap(t, LOW, 2 * PG, RW, ANON | FIXED)
    assert call(t, "mlock", a + 10, PG) == 0
    assert call(t, "mlock", a, 3 * PG) == -E.ENOMEM  # hole
    assert call(t, "mlock2", a, PG, 0) == 0
    assert call(t, "mlock2", a, PG, F.MLOCK_ONFAULT) == 0
    assert call(t, "mlock2", a, PG, 2) == -E.EINVAL
    assert call(t, "munlock", a, PG) == 0
    assert call(t, "munlock", a, 3 * PG) == -E.ENOMEM
    assert call(t, "mlockall", F.MCL_CURRENT | F.MCL_FUTURE) == 0
    assert call(t, "mlockall", 0) == -E.EINVAL
    assert call(t, "mlockall", F.MCL_ONFAULT) == -E.EINVAL
    assert call(t, "mlockall", 8) == -E.EINVAL
    assert call(t, "munlockall") == 0
    u = spawn(k, t, user(1000))
    b = mmap(u, LOW, 4 * PG, RW, ANON | FIXED)
    u.proc.rlimits[F.RLIMIT_MEMLOCK] = (2 * PG, 2 * PG)
    assert call(u, "mlock", b, 2 * PG) == 0
    assert call(u, "mlock", b, 3 * PG) == -E.ENOMEM  # over RLIMIT_MEMLOCK
    assert call(u, "mlockall", F.MCL_CURRENT) == -E.ENOMEM
    assert call(u, "mlockall", F.MCL_FUTURE) == 0
    u.proc.rlimits[F.RLIMIT_MEMLOCK] = (0, 0)
    assert call(u, "mlock", b, PG) == -E.EPERM
    assert call(u, "mlockall", F.MCL_CURRENT) == -E.EPERM


def test_mincore():
    k, t = make_kernel()
    a = mmap(t, LOW, 200 * PG, RW, ANON | FIXED)  # lazily populated
    t.mm.write(a + 100 * PG, b"x")
    vec = SCRATCH + 0x1000
    assert call(t, "mincore", a + 90 * PG, 20 * PG, vec) == 0
    got = t.mm.read(vec, 20)
    assert got[10] == 1 and got[0] == 0 and got[19] == 0
    assert call(t, "mincore", a + 1, PG, vec) == -E.EINVAL
    assert call(t, "mincore", a + 199 * PG, 2 * PG, vec) == -E.ENOMEM
    assert call(t, "mincore", USER_TOP - PG, 2 * PG, vec) == -E.ENOMEM
    assert call(t, "mincore", a, PG, BAD) == -E.EFAULT
    assert call(t, "mincore", a, 100, vec) == 0  # a partial page counts as one
    # a shared file page cached by another mapping counts as resident
    fd = open_file(k, t, "/c", O_RDWR, b"c" * PG)
    s = mmap(t, 0, 100 * PG, RW, F.MAP_SHARED, fd)
    t.mm.read(s, 1)
    assert call(t, "mincore", s, PG, vec) == 0 and t.mm.read(vec, 1) == b"\x01"


def test_membarrier():
    _, t = make_kernel()
    assert call(t, "membarrier", 0, 0, 0) == 0x7F
    assert call(t, "membarrier", 1, 0, 0) == 0
    assert call(t, "membarrier", 2, 0, 0) == 0
    assert call(t, "membarrier", 8, 0, 0) == -E.EPERM  # not registered
    assert call(t, "membarrier", 16, 0, 0) == 0
    assert call(t, "membarrier", 8, 0, 0) == 0
    assert call(t, "membarrier", 32, 0, 0) == -E.EPERM
    assert call(t, "membarrier", 64, 0, 0) == 0
    assert call(t, "membarrier", 32, 0, 0) == 0
    assert call(t, "membarrier", 0, 1, 0) == -E.EINVAL
    assert call(t, "membarrier", 128, 0, 0) == -E.EINVAL  # rseq variants: no rseq
    assert call(t, "membarrier", 1024, 0, 0) == -E.EINVAL
