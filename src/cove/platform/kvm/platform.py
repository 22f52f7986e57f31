"""The kvm platform: one KVM VM per sandbox, guest user code in ring 3.

Construction: open /dev/kvm, create the VM, register the whole PhysMem memfd
mapping as memslot 0 (guest physical == memfd offset), and build the kernel
half (stub, IDT, per-cpu GDT/TSS/stack) in frames taken from PhysMem. Cpus
(vCPUs) are created on demand, one per host thread that runs guest code.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import signal
import threading
from typing import TYPE_CHECKING

from cove.platform.base import Capabilities, PlatformError, PlatformUnavailable, UserRegs
from cove.platform.kvm import _stub_bin, layout, uapi
from cove.platform.kvm._sys import ioctl
from cove.platform.kvm.pagetable import NX, TABLE, KvmAddressSpace, P, U
from cove.platform.kvm.tablepool import TablePool

if TYPE_CHECKING:
    from cove.kernel.physmem import PhysMem
    from cove.platform.base import Exit
    from cove.platform.kvm.cpu import KvmCpu

# The signal that interrupts KVM_RUN (timeslice timer and kick()). A real-time
# signal so it cannot collide with anything a host program uses by accident.
KICK_SIGNAL = signal.SIGRTMIN + 3

_signal_lock = threading.Lock()


def _noop_handler(signo: int, frame: object) -> None:
    """The handler only has to exist: its delivery makes KVM_RUN return EINTR."""


def _install_kick_handler() -> None:
    with _signal_lock:
        if signal.getsignal(KICK_SIGNAL) is _noop_handler:
            return
        if threading.current_thread() is not threading.main_thread():
            raise PlatformError(
                "create the first kvm platform from the main thread "
                "(Python installs signal handlers only there)"
            )
        signal.signal(KICK_SIGNAL, _noop_handler)


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
        self.physmem = physmem
        self._q = physmem.mem.cast("Q")  # guest memory as u64s, for page tables
        self._lock = threading.Lock()
        self._cpus: list[KvmCpu] = []
        self._tls = threading.local()
        self.kvm_fd = os.open(kvm_path, os.O_RDWR | os.O_CLOEXEC)
        self.vm_fd = ioctl(self.kvm_fd, uapi.KVM_CREATE_VM, 0)
        self.run_size = ioctl(self.kvm_fd, uapi.KVM_GET_VCPU_MMAP_SIZE)
        slot = uapi.kvm_userspace_memory_region(
            slot=0, guest_phys_addr=0, memory_size=physmem.size, userspace_addr=physmem.address
        )
        ioctl(self.vm_fd, uapi.KVM_SET_USER_MEMORY_REGION, slot)
        self._dummy = mmap.mmap(-1, 4096)
        self._dummy_anchor = ctypes.c_char.from_buffer(self._dummy)
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
        pm, q = self.physmem, self._q
        self._kernel_frames: list[int] = []

        def frame() -> int:
            f = pm.alloc()
            self._kernel_frames.append(f)
            return f

        pdpt, pd, pt = frame(), frame(), frame()
        kva = layout.KBASE
        q[(pdpt << 9) | ((kva >> 30) & 511)] = (pd << 12) | TABLE
        q[(pd << 9) | ((kva >> 21) & 511)] = (pt << 12) | TABLE
        self.kernel_pml4e = (pdpt << 12) | TABLE
        self._kpt = pt

        code = _stub_bin.code()
        self.stub_frames = [frame(), frame()]
        for n, f in enumerate(self.stub_frames):
            pm.write(f << 12, code[n * 4096 : (n + 1) * 4096])
        idt = frame()
        pm.write(idt << 12, layout.build_idt())
        # The LSTAR page starts user-executable so the probe can run from it;
        # cpus turn the U bit off again if syscall turns out to enter at CPL 0.
        self._kmap(layout.STUB_VA, self.stub_frames[0], P | U)
        self._kmap(layout.STUB_VA + 0x1000, self.stub_frames[1], P)
        self._kmap(layout.IDT_VA, idt, P | NX)

    def _kmap(self, va: int, frame: int, bits: int) -> None:
        self._q[(self._kpt << 9) | ((va >> 12) & 511)] = (frame << 12) | bits

    def set_lstar_user(self, user: bool) -> None:
        self._kmap(layout.STUB_VA, self.stub_frames[0], P | (U if user else 0))
        # Narrowing a kernel-half entry: make KVM drop its old translation.
        self.physmem.zap(self.stub_frames[0] << 12, 4096)

    def alloc_cpu_area(self, n: int, allow_user_syscall_port: bool) -> tuple[int, int]:
        """(GDT/TSS frame, stack frame) for cpu ``n``, mapped into the kernel half."""
        if n >= layout.MAX_CPUS:
            raise PlatformError(f"at most {layout.MAX_CPUS} cpus per kvm platform")
        g, s = self.physmem.alloc(), self.physmem.alloc()
        self._kernel_frames += [g, s]
        self.physmem.write(g << 12, layout.build_cpu_page(n, allow_user_syscall_port))
        self._kmap(layout.cpu_gdt_va(n), g, P | NX)
        self._kmap(layout.cpu_gdt_va(n) + 0x1000, s, P | 2 | NX)  # RW, supervisor
        return g, s

    def zap_all(self) -> None:
        """Make KVM drop every shadow page and translation (add+delete a dummy
        memslot: KVM's memslot-deletion path zaps everything)."""
        gpa = (self.physmem.size + (1 << 30)) & ~((1 << 30) - 1)
        addr = ctypes.addressof(self._dummy_anchor)
        for size in (4096, 0):
            r = uapi.kvm_userspace_memory_region(
                slot=1, guest_phys_addr=gpa, memory_size=size, userspace_addr=addr
            )
            ioctl(self.vm_fd, uapi.KVM_SET_USER_MEMORY_REGION, r)

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
        for c in self._cpus:
            c.close()
        self._cpus.clear()
        self._spare.clear()
        if self.vm_fd >= 0:
            os.close(self.vm_fd)
            os.close(self.kvm_fd)
            self.vm_fd = self.kvm_fd = -1
        for f in self._kernel_frames:
            self.physmem.unref(f)
        self._kernel_frames.clear()
        self.tables.close()
        self._q.release()
        del self._dummy_anchor
        self._dummy.close()
