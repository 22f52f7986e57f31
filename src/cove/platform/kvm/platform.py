"""The kvm platform: one KVM VM per sandbox, guest user code in ring 3.

Construction: open /dev/kvm, create the VM, register the whole PhysMem memfd
mapping as memslot 0 (guest physical == memfd offset), and build the kernel
half (stub, IDT, per-cpu GDT/TSS/stack) in frames taken from PhysMem. Cpus
(vCPUs) are created on demand, one per host thread that runs guest code.

Snapshots: ``export_image`` says where the kernel half, cpu areas, table pool
and page tables sit in guest memory; ``adopt_image`` takes them over from a
restored memory image instead of building anything. A closed platform offers
its VM to ``vmpool`` (``detach``: no memory, no KVM translations), and a
restore ``attach``es one to its memory.
"""

from __future__ import annotations

import _signal  # the C module: signal.py's enum wrappers cost ~0.7 ms of every start
import ctypes
import mmap
import os
import threading

from cove.platform.base import Capabilities, PlatformError, PlatformUnavailable, UserRegs
from cove.platform.kvm import _stub_bin, layout, uapi
from cove.platform.kvm._sys import ioctl
from cove.platform.kvm.pagetable import (
    NX,
    TABLE,
    A,
    D,
    KvmAddressSpace,
    P,
    U,
    W,
    same_entry,
)
from cove.platform.kvm.tablepool import TablePool

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from typing import Any

    from cove.kernel.physmem import PhysMem
    from cove.platform.base import Exit
    from cove.platform.kvm.cpu import KvmCpu

# The signal that interrupts KVM_RUN (timeslice timer and kick()). A real-time
# signal so it cannot collide with anything a host program uses by accident.
KICK_SIGNAL = _signal.SIGRTMIN + 3

_signal_lock = threading.Lock()


def _noop_handler(signo: int, frame: object) -> None:
    """The handler only has to exist: its delivery makes KVM_RUN return EINTR."""


def _install_kick_handler() -> None:
    with _signal_lock:
        if _signal.getsignal(KICK_SIGNAL) is _noop_handler:
            return
        if threading.current_thread() is not threading.main_thread():
            raise PlatformError(
                "create the first kvm platform from the main thread "
                "(Python installs signal handlers only there)"
            )
        _signal.signal(KICK_SIGNAL, _noop_handler)


def kvm_device() -> str:
    """The KVM device node (``COVE_KVM_DEVICE`` overrides, for tests and odd hosts)."""
    return os.environ.get("COVE_KVM_DEVICE", "/dev/kvm")


def kvm_unavailable_reason(path: str | None = None) -> str | None:
    """None if a KVM VM can be made here, else why not (for skip messages)."""
    path = path or kvm_device()
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        return f"cannot open {path}: {e.strerror}"
    try:
        if ioctl(fd, uapi.KVM_GET_API_VERSION) != uapi.KVM_API_VERSION:
            return "unexpected KVM API version"
        for cap in (uapi.KVM_CAP_SYNC_REGS, uapi.KVM_CAP_IMMEDIATE_EXIT, uapi.KVM_CAP_XCRS):
            if ioctl(fd, uapi.KVM_CHECK_EXTENSION, cap) <= 0:
                return f"KVM lacks capability {cap}"
    except PlatformError as e:
        return str(e)
    finally:
        os.close(fd)
    return None


class KvmContext:
    """A guest thread's registers (see ``cove.platform.base.Context``)."""

    __slots__ = ("_fpu", "_fpu_dirty", "_live_on", "_platform", "_regs_addr", "_regs_mv",
                 "fs_base", "gs_base", "regs")  # fmt: skip

    def __init__(self, platform: KvmPlatform) -> None:
        self._platform = platform
        self.regs = UserRegs()
        self.regs.rflags = layout.RFLAGS_FIXED
        self._regs_addr = ctypes.addressof(self.regs)
        # A byte view: copying through it is ~5x cheaper than ctypes.memmove.
        self._regs_mv = memoryview(self.regs).cast("B")
        self.fs_base = 0
        self.gs_base = 0
        self._fpu = bytearray(platform.fpu_template)
        self._fpu_dirty = True  # must be loaded by the next run
        self._live_on: KvmCpu | None = None  # the cpu whose FPU holds our state

    def get_fpu(self) -> bytes:
        if self._live_on is not None:
            self._live_on.save_fpu(self)
        return bytes(self._fpu[: self._platform.capabilities.xsave_size])

    def set_fpu(self, image: bytes | bytearray | memoryview) -> None:
        size = self._platform.capabilities.xsave_size
        if len(image) != size:
            raise ValueError(f"XSAVE image must be {size} bytes, got {len(image)}")
        self._fpu[:size] = image
        self._fpu_dirty = True

    def sync(self) -> None:
        cpu = self._live_on
        if cpu is not None:
            cpu.sync_bases(self)
            cpu.save_fpu(self)

    def copy(self) -> KvmContext:
        self.sync()
        c = KvmContext(self._platform)
        ctypes.memmove(c._regs_addr, self._regs_addr, ctypes.sizeof(UserRegs))
        c.fs_base, c.gs_base = self.fs_base, self.gs_base
        c.set_fpu(self.get_fpu())
        return c


class KvmPlatform:
    """The kvm platform (see ``cove.platform.base.Platform``)."""

    name = "kvm"

    def __init__(self, physmem: PhysMem, kvm_path: str | None = None) -> None:
        kvm_path = kvm_path or kvm_device()
        reason = kvm_unavailable_reason(kvm_path)
        if reason:
            raise PlatformUnavailable(reason)
        _install_kick_handler()
        self.closed = False
        self.physmem = physmem
        self._q = physmem.mem.cast("Q")  # guest memory as u64s, for page tables
        self._lock = threading.Lock()
        self._cpus: list[KvmCpu] = []
        self._tls = threading.local()
        self.kvm_fd = os.open(kvm_path, os.O_RDWR | os.O_CLOEXEC)
        self.vm_fd = ioctl(self.kvm_fd, uapi.KVM_CREATE_VM, 0)
        self.run_size = ioctl(self.kvm_fd, uapi.KVM_GET_VCPU_MMAP_SIZE)
        self._set_memslot(physmem.size, physmem.address)
        self._dummy = mmap.mmap(-1, 4096)
        self._dummy_anchor = ctypes.c_char.from_buffer(self._dummy)
        self._dummy_gpa = 0  # where the dummy memslot is (0: none yet), see zap_all
        self.tables = TablePool(physmem, self.zap_all)

        self.cpuid = uapi.kvm_cpuid2(nent=uapi.KVM_CPUID_MAX_ENTRIES)
        ioctl(self.kvm_fd, uapi.KVM_GET_SUPPORTED_CPUID, self.cpuid)
        self.xcr0 = self._supported_xcr0()
        xsave2 = ioctl(self.kvm_fd, uapi.KVM_CHECK_EXTENSION, uapi.KVM_CAP_XSAVE2)
        self.xsave_buf_size = max(uapi.KVM_XSAVE_SIZE, xsave2)
        self.xsave_size = self._xsave_size()

        self._build_kernel_half()
        self.fpu_template = bytes(self.xsave_buf_size)  # replaced by the first cpu
        first = self._new_cpu()  # probes the syscall path, captures the FPU template
        self.syscall_cpl3 = first.syscall_cpl3
        self.capabilities = Capabilities(
            name="kvm",
            syscall_path="lstar-out-cpl3" if self.syscall_cpl3 else "lstar-out-cpl0",
            xsave_size=self.xsave_size,
            xcr0=self.xcr0,
            notes=(
                "syscall reaches LSTAR at CPL 3 (kvm_pvm without the PVM ABI): stub page is "
                "user-executable, read-only; supervisor code is emulated"
                if self.syscall_cpl3
                else "syscall enters the stub at CPL 0"
            ),
        )
        self._spare = [first]

    # --- setup ------------------------------------------------------------------

    def _supported_xcr0(self) -> int:
        for i in range(self.cpuid.nent):
            e = self.cpuid.entries[i]
            if e.function == 0xD and e.index == 0:
                # x87|SSE|AVX|AVX-512 as supported; matching the host's XCR0
                # also spares KVM an XSETBV on every entry and exit (~5 µs here).
                return (e.eax | (e.edx << 32)) & 0xFF
        return 0x3

    def _xsave_size(self) -> int:
        for i in range(self.cpuid.nent):
            e = self.cpuid.entries[i]
            if e.function == 0xD and e.index == 0:
                return max(e.ebx, 576)
        return 576

    def _build_kernel_half(self) -> None:
        pm = self.physmem
        # pdpt, pd, pt (the kernel half's tables), the two stub pages, the IDT.
        self._khalf = [pm.alloc() for _ in range(6)]
        self._kernel_frames: list[int] = list(self._khalf)
        self._cpu_areas: dict[int, tuple[int, int]] = {}  # cpu index -> (GDT/TSS, stack)
        # The LSTAR page starts user-executable so the probe can run from it;
        # cpus turn the U bit off again if syscall turns out to enter at CPL 0.
        self._write_kernel_half(lstar_user=True)

    def _write_kernel_half(self, lstar_user: bool) -> None:
        """Table entries and contents of the kernel half, from this cove's stub:
        where a snapshot's image already holds the same bytes nothing is
        written (its pages stay shared with the image)."""
        pdpt, pd, pt, stub0, stub1, idt = self._khalf
        kva = layout.KBASE
        self._setq((pdpt << 9) | ((kva >> 30) & 511), (pd << 12) | TABLE)
        self._setq((pd << 9) | ((kva >> 21) & 511), (pt << 12) | TABLE)
        self.kernel_pml4e = (pdpt << 12) | TABLE
        self._kpt = pt
        self.stub_frames = [stub0, stub1]
        code = _stub_bin.code()
        for n, f in enumerate(self.stub_frames):
            self._put(f, code[n * 4096 : (n + 1) * 4096])
        self._put(idt, layout.build_idt())
        self._kmap(layout.STUB_VA, stub0, P | (U if lstar_user else 0))
        self._kmap(layout.STUB_VA + 0x1000, stub1, P)
        self._kmap(layout.IDT_VA, idt, P | NX)

    def _put(self, frame: int, data: bytes) -> None:
        start = frame << 12
        mm = self.physmem.mm
        # Compared first (a read keeps an image page shared), as bytes: a
        # memoryview comparison goes item by item (~7 µs a page, ~0.2 µs so).
        if mm[start : start + len(data)] != data:
            mm[start : start + len(data)] = data

    def _setq(self, index: int, value: int) -> None:
        """Set a kernel-half table entry (accessed/dirty bits the CPU set are not
        a difference: rewriting them would unshare a restored image's page)."""
        if not same_entry(self._q[index], value):
            self._q[index] = value

    def _kmap(self, va: int, frame: int, bits: int) -> None:
        bits |= A | (D if bits & W else 0)
        self._setq((self._kpt << 9) | ((va >> 12) & 511), (frame << 12) | bits)

    def set_lstar_user(self, user: bool) -> None:
        self._kmap(layout.STUB_VA, self.stub_frames[0], P | (U if user else 0))
        # Narrowing a kernel-half entry: make KVM drop its old translation.
        self.physmem.zap(self.stub_frames[0] << 12, 4096)

    def alloc_cpu_area(self, n: int, allow_user_syscall_port: bool) -> tuple[int, int]:
        """(GDT/TSS frame, stack frame) for cpu ``n``, mapped into the kernel half
        (a restored image's own, if it has one for ``n``)."""
        if n >= layout.MAX_CPUS:
            raise PlatformError(f"at most {layout.MAX_CPUS} cpus per kvm platform")
        area = self._cpu_areas.get(n)
        if area is None:
            area = self._cpu_areas[n] = (self.physmem.alloc(), self.physmem.alloc())
            self._kernel_frames += area
        self._write_cpu_area(n, area, allow_user_syscall_port)
        return area

    def _write_cpu_area(self, n: int, area: tuple[int, int], allow_user_syscall_port: bool
                        ) -> None:
        g, s = area
        self._put(g, layout.build_cpu_page(n, allow_user_syscall_port))
        self._kmap(layout.cpu_gdt_va(n), g, P | NX)
        self._kmap(layout.cpu_gdt_va(n) + 0x1000, s, P | 2 | NX)  # RW, supervisor

    # --- snapshots ----------------------------------------------------------------

    def export_image(self, spaces: list[KvmAddressSpace]) -> dict[str, Any]:
        """Where this VM's own structures sit in guest memory, for a snapshot:
        the kernel half, each cpu's area, the table pool and the page tables of
        ``spaces``. With the guest memory image, ``adopt_image`` rebuilds the
        platform from it without writing a page table."""
        return {"kernel": list(self._khalf),
                "cpus": [list(self._cpu_areas[n]) for n in sorted(self._cpu_areas)],
                "pool": self.tables.frames(),
                "spaces": [[sp.cr3 >> 12, list(sp.tables)] for sp in spaces]}

    @staticmethod
    def image_frames(img: dict[str, Any]) -> list[int]:
        """Every frame an ``export_image`` result holds."""
        out = list(img["kernel"])
        for area in img["cpus"]:
            out += area
        out += img["pool"]
        for _root, tables in img["spaces"]:
            out += tables
        return out

    def adopt_image(self, img: dict[str, Any], *, zap: bool) -> list[KvmAddressSpace]:
        """Guest memory was just replaced by a snapshot's (``PhysMem.replace``
        and ``adopt``): take over the kernel half, cpu areas, table pool and
        page tables it holds (``export_image``); returns the address spaces in
        order. The kernel half is rewritten from this cove's stub and this
        host's syscall path. ``zap``: KVM may hold shadow pages from earlier
        contents (false only for a VM that has not run since its last zap)."""
        if len(img["cpus"]) > layout.MAX_CPUS or len(img["kernel"]) != 6:
            raise PlatformError("snapshot platform image is malformed")
        self._khalf = [int(f) for f in img["kernel"]]
        self._cpu_areas = {n: (int(g), int(s)) for n, (g, s) in enumerate(img["cpus"])}
        self._kernel_frames = [*self._khalf, *(f for a in self._cpu_areas.values() for f in a)]
        self._write_kernel_half(lstar_user=self.syscall_cpl3)
        for cpu in self._cpus:
            _g, s = self.alloc_cpu_area(cpu.index, self.syscall_cpl3)
            cpu.reset(s)
        self.tables.adopt(img["pool"])
        spaces = [KvmAddressSpace.adopt(self.physmem, self._q, self.kernel_pml4e, self.tables,
                                        root, tables) for root, tables in img["spaces"]]
        self._tls = threading.local()  # any thread may take any cpu now
        self._spare = list(self._cpus)
        if zap:
            self.zap_all()
        return spaces

    # --- reuse (the VM pool, cove.platform.kvm.vmpool) ---------------------------

    def _set_memslot(self, size: int, address: int) -> None:
        slot = uapi.kvm_userspace_memory_region(
            slot=0, guest_phys_addr=0, memory_size=size, userspace_addr=address)
        ioctl(self.vm_fd, uapi.KVM_SET_USER_MEMORY_REGION, slot)

    def detach(self) -> None:
        """Leave this VM without guest memory, for the pool: the memslot goes
        (deleting it makes KVM drop every shadow page and translation), cpus
        forget their contexts. ``attach`` gives it memory again. The frames
        the platform held must have been given back (``close`` does)."""
        self._set_memslot(0, 0)
        for cpu in self._cpus:
            cpu.reset(None)
            cpu.detach()
        self._q.release()
        self.physmem = None  # type: ignore[assignment]
        self.tables = None  # type: ignore[assignment]
        self._kernel_frames = []
        self._cpu_areas = {}
        self._tls = threading.local()
        self._spare = list(self._cpus)

    def attach(self, physmem: PhysMem) -> None:
        """A detached VM gets ``physmem`` as its guest memory, whose contents a
        snapshot's image holds: ``adopt_image`` follows."""
        if self._dummy_gpa and self._dummy_gpa < physmem.size + (1 << 21):
            self._set_dummy(self._dummy_gpa, 0)  # it would overlap the new memory
        self._set_memslot(physmem.size, physmem.address)
        self.closed = False
        self.physmem = physmem
        self._q = physmem.mem.cast("Q")
        self.tables = TablePool(physmem, self.zap_all)
        for cpu in self._cpus:
            cpu.attach(physmem)

    def zap_all(self) -> None:
        """Make KVM drop every shadow page and translation: move a dummy
        memslot (KVM's move and delete paths zap everything). One memslot
        change (each waits for an SRCU grace period), not an add and a delete."""
        floor = (self.physmem.size + (1 << 30)) & ~((1 << 30) - 1)  # above guest memory
        if self._dummy_gpa < floor:
            if self._dummy_gpa:
                self._set_dummy(self._dummy_gpa, 0)  # below new memory: delete (zaps too)
            self._set_dummy(floor, 4096)
        self._set_dummy(floor + (1 << 21) if self._dummy_gpa == floor else floor, 4096)

    def _set_dummy(self, gpa: int, size: int) -> None:
        r = uapi.kvm_userspace_memory_region(
            slot=1, guest_phys_addr=gpa, memory_size=size,
            userspace_addr=ctypes.addressof(self._dummy_anchor))
        ioctl(self.vm_fd, uapi.KVM_SET_USER_MEMORY_REGION, r)
        self._dummy_gpa = gpa if size else 0

    # --- Platform contract ----------------------------------------------------------

    def create_address_space(self) -> KvmAddressSpace:
        return KvmAddressSpace(self.physmem, self._q, self.kernel_pml4e, self.tables)

    def create_context(self) -> KvmContext:
        return KvmContext(self)

    def _new_cpu(self) -> KvmCpu:
        from cove.platform.kvm.cpu import KvmCpu

        with self._lock:
            cpu = KvmCpu(self, len(self._cpus))
            self._cpus.append(cpu)
            return cpu

    def create_cpu(self) -> KvmCpu:
        with self._lock:
            if self._spare:
                return self._spare.pop()
        return self._new_cpu()

    def cpu(self) -> KvmCpu:
        c = getattr(self._tls, "cpu", None)
        if c is None:
            c = self._tls.cpu = self.create_cpu()
        return c

    def run(self, ctx: KvmContext, aspace: KvmAddressSpace) -> Exit:
        return self.cpu().run(ctx, aspace)

    def close(self) -> None:
        """Give the platform's frames back to guest memory and end the VM; a
        VM the pool takes (``vmpool.give``) lives on, detached, for a restore.
        Closing twice is harmless (the second call must not end a VM the pool
        holds by then)."""
        if self.closed:
            return
        self.closed = True
        if self.physmem is not None:
            for f in self._kernel_frames:
                self.physmem.unref(f)
            self._kernel_frames = []
            self._cpu_areas = {}
            self.tables.close()
            if self.vm_fd >= 0:
                from cove.platform.kvm import vmpool

                if vmpool.give(self):
                    return
        self.destroy()

    def destroy(self) -> None:
        """End the VM itself (a detached one too)."""
        self.closed = True
        if self.physmem is not None:
            self._q.release()
            self.physmem = None  # type: ignore[assignment]
        for c in self._cpus:
            c.close()
        self._cpus.clear()
        self._spare.clear()
        if self.vm_fd >= 0:
            os.close(self.vm_fd)
            os.close(self.kvm_fd)
            self.vm_fd = self.kvm_fd = -1
            del self._dummy_anchor
            self._dummy.close()
