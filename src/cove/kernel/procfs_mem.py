"""Memory accounting for ``/proc``: maps, smaps, the Vm* lines of status, statm.

Everything is computed from the process's own ``MemoryMap`` (VMAs and the
frames it holds) and the frames' reference counts, never from the host. Pages
are classified by the VMA holding them: anonymous private, file-backed
(private or shared), or shared anonymous ("shmem"). cove does not track dirty
bits, so anonymous and shmem pages count as dirty and file pages as clean;
Pss divides a page by the number of maps holding its frame.
"""

from __future__ import annotations

import bisect
import os

from cove.abi import flags as F
from cove.abi.errno import Errno
from cove.dataclass import dataclass
from cove.kernel.physmem import PAGE_MASK, PAGE_SHIFT, PAGE_SIZE

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from typing import Any

    from cove.fs.vfs import VFS, PathContext
    from cove.kernel.mm import VMA, MemoryMap

DELETED = " (deleted)"
MAPS_NAME_COLUMN = 73  # Linux pads the header to 25 + 6 * sizeof(void *) - 1, then a space


def source_of(v: VMA) -> Any:
    """The object behind a file-backed VMA (None for anonymous memory)."""
    return v.shared.source if v.shared is not None else v.file


def opened_file(src: Any) -> Any:
    """The open file a mapping came from (mmap wraps it; exec maps it directly)."""
    return getattr(src, "file", src)


def kind(v: VMA) -> str:
    if source_of(v) is not None:
        return "file"
    return "shmem" if v.shared is not None else "anon"


@dataclass(slots=True)
class Usage:
    """Resident pages of one VMA (or a sum), split the way smaps splits them."""

    rss: int = 0  # pages
    pss: float = 0.0  # bytes
    pss_dirty: float = 0.0
    shared_clean: int = 0
    shared_dirty: int = 0
    private_clean: int = 0
    private_dirty: int = 0
    anon: int = 0


class Resident:
    """The resident pages of one memory map, looked up by VMA."""

    def __init__(self, mm: MemoryMap) -> None:
        self.mm = mm
        self.vpns = sorted(mm.frames)

    def pages(self, v: VMA) -> list[int]:
        lo = bisect.bisect_left(self.vpns, v.start >> PAGE_SHIFT)
        hi = bisect.bisect_left(self.vpns, v.end >> PAGE_SHIFT)
        return self.vpns[lo:hi]

    def count(self, v: VMA) -> int:
        return (bisect.bisect_left(self.vpns, v.end >> PAGE_SHIFT)
                - bisect.bisect_left(self.vpns, v.start >> PAGE_SHIFT))

    def usage(self, v: VMA) -> Usage:
        u = Usage()
        k = kind(v)
        dirty = k != "file"
        phys = self.mm.phys
        for vpn in self.pages(v):
            refs = phys.refcount(self.mm.frames[vpn])
            # A shared object holds one reference of its own on each frame.
            mappers = max(1, refs - 1 if v.shared is not None else refs)
            share = PAGE_SIZE / mappers
            u.rss += 1
            u.pss += share
            if dirty:
                u.pss_dirty += share
            if mappers > 1:
                if dirty:
                    u.shared_dirty += 1
                else:
                    u.shared_clean += 1
            elif dirty:
                u.private_dirty += 1
            else:
                u.private_clean += 1
            if k == "anon":
                u.anon += 1
        return u


@dataclass(slots=True)
class VmStats:
    """The Vm* and Rss* numbers of ``status`` (bytes, or pages where named)."""

    size: int = 0
    data: int = 0
    stack: int = 0
    exe: int = 0
    lib: int = 0
    rss_anon: int = 0  # pages
    rss_file: int = 0
    rss_shmem: int = 0
    pte_kb: int = 0

    @property
    def rss(self) -> int:
        return self.rss_anon + self.rss_file + self.rss_shmem


def is_stack(v: VMA) -> bool:
    return v.name == "[stack]"


def vm_stats(mm: MemoryMap, image: Any) -> VmStats:
    res = Resident(mm)
    s = VmStats()
    exec_vm = 0
    for v in mm.vmas:
        length = v.end - v.start
        s.size += length
        k = kind(v)
        n = res.count(v)
        if k == "file":
            s.rss_file += n
        elif k == "shmem":
            s.rss_shmem += n
        else:
            s.rss_anon += n
        if is_stack(v):
            s.stack += length
        elif v.prot & F.PROT_WRITE and v.shared is None:
            s.data += length  # Linux's data_vm: private, writable, not stack
        elif v.prot & F.PROT_EXEC and v.shared is None:
            exec_vm += length
    if image is not None:
        s.exe = (((image.end_code + PAGE_MASK) & ~PAGE_MASK)
                 - (image.start_code & ~PAGE_MASK))
    s.lib = max(0, exec_vm - s.exe)
    s.pte_kb = page_table_kb(res.vpns)
    return s


def page_table_kb(vpns: list[int]) -> int:
    """What 4-level page tables for these resident pages take (Linux's VmPTE:
    page-table, PMD and PUD pages)."""
    pt = len({v >> 9 for v in vpns})
    pmd = len({v >> 18 for v in vpns})
    pud = len({v >> 27 for v in vpns})
    return (pt + pmd + pud) * (PAGE_SIZE >> 10)


# --- maps and smaps -------------------------------------------------------------------
def _perms(v: VMA) -> str:
    return (("r" if v.prot & F.PROT_READ else "-") + ("w" if v.prot & F.PROT_WRITE else "-")
            + ("x" if v.prot & F.PROT_EXEC else "-") + ("s" if v.shared is not None else "p"))


def _name(v: VMA, vfs: VFS, ctx: PathContext) -> tuple[str, int, int]:
    """(name, st_dev, st_ino) of a VMA as maps shows it."""
    src = source_of(v)
    if src is None:
        return v.name, 0, 0
    try:
        st = src.stat()
    except Errno:
        return v.name, 0, 0
    name = v.name
    if not name:
        from cove.kernel.procfs_fd import file_name

        f = opened_file(src)
        if getattr(f, "location", None) is not None or callable(
                getattr(f, "proc_name", None)):
            name = file_name(vfs, ctx, f)
    elif st.nlink == 0 and not name.endswith(DELETED):
        name += DELETED
    return name, st.dev, st.ino


def map_line(v: VMA, vfs: VFS, ctx: PathContext) -> str:
    name, dev, ino = _name(v, vfs, ctx)
    offset = v.offset if source_of(v) is not None else 0
    head = (f"{v.start:08x}-{v.end:08x} {_perms(v)} {offset:08x} "
            f"{os.major(dev):02x}:{os.minor(dev):02x} {ino} ")
    if not name:
        return head + "\n"
    return head.ljust(MAPS_NAME_COLUMN) + name.replace("\n", "\\012") + "\n"


def maps(mm: MemoryMap, vfs: VFS, ctx: PathContext) -> str:
    return "".join(map_line(v, vfs, ctx) for v in mm.vmas)


def _kb(label: str, n_bytes: float) -> str:
    return f"{label:<16}{int(n_bytes) >> 10:>8} kB\n"


def _vmflags(v: VMA) -> str:
    flags = []
    if v.prot & F.PROT_READ:
        flags.append("rd")
    if v.prot & F.PROT_WRITE:
        flags.append("wr")
    if v.prot & F.PROT_EXEC:
        flags.append("ex")
    if v.shared is not None:
        flags.append("sh")
    flags += ["mr", "mw", "me"]
    if v.shared is not None:
        flags.append("ms")
    if is_stack(v):
        flags.append("gd")
    if v.shared is None and v.prot & F.PROT_WRITE:
        flags.append("ac")
    return "VmFlags: " + "".join(f + " " for f in flags) + "\n"


def smaps(mm: MemoryMap, vfs: VFS, ctx: PathContext) -> str:
    res = Resident(mm)
    out = []
    for v in mm.vmas:
        u = res.usage(v)
        page = PAGE_SIZE
        out.append(map_line(v, vfs, ctx))
        out.append(_kb("Size:", v.end - v.start) + _kb("KernelPageSize:", page)
                   + _kb("MMUPageSize:", page) + _kb("Rss:", u.rss * page)
                   + _kb("Pss:", u.pss) + _kb("Pss_Dirty:", u.pss_dirty)
                   + _kb("Shared_Clean:", u.shared_clean * page)
                   + _kb("Shared_Dirty:", u.shared_dirty * page)
                   + _kb("Private_Clean:", u.private_clean * page)
                   + _kb("Private_Dirty:", u.private_dirty * page)
                   + _kb("Referenced:", u.rss * page) + _kb("Anonymous:", u.anon * page))
        for label in ("KSM:", "LazyFree:", "AnonHugePages:", "ShmemPmdMapped:",
                      "FilePmdMapped:", "Shared_Hugetlb:", "Private_Hugetlb:", "Swap:",
                      "SwapPss:", "Locked:"):
            out.append(_kb(label, 0))
        out.append(f"{'THPeligible:':<16}{0:>8}\n")
        out.append(_vmflags(v))
    return "".join(out)
