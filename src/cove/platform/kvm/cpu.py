"""A vCPU and the run loop: load a context, KVM_RUN, turn the exit into an Exit.

How registers move (no KVM_GET_REGS/SET_REGS on the hot path): ``kvm_run``
is mmapped and KVM_CAP_SYNC_REGS makes KVM store the GPRs, rip and rflags
there at every exit and load them from there when ``kvm_dirty_regs`` says so.
Every stub path exits with the user's GPRs still live, so one 144-byte
copy (through byte memoryviews) each way moves a whole context.

Where the vCPU is stopped decides how the next context is loaded:
- at CPL 3 (a syscall exit on kvm_pvm, or preempted in user code): write the
  context straight into the sync regs, rip and rflags included;
- at CPL 0 (after an exception, or a syscall on hardware KVM): write the iret
  frame under RSP0 and point rip at the stub's ``resume`` (which may reload
  CR3 first): the only way back to CPL 3 is an ``iretq`` in the guest.

Contexts switch lazily: FPU/XSAVE state and FS/GS bases move only when a
different context (or a changed one) is run on this cpu.
"""

from __future__ import annotations

import _signal  # the C module: signal.py's enum wrappers cost ~0.7 ms of every start
import ctypes
import errno as _errno
import mmap
import os
import struct
import threading

from cove.platform.base import GP, PF, UD, Exit, ExitKind, PlatformError
from cove.platform.kvm import layout, uapi
from cove.platform.kvm._sys import ThreadTimer, errno, ioctl, raw_ioctl
from cove.platform.kvm.platform import KICK_SIGNAL

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from cove.kernel.physmem import PhysMem
    from cove.platform.kvm.pagetable import KvmAddressSpace
    from cove.platform.kvm.platform import KvmContext, KvmPlatform

_Q = struct.Struct("<Q")
_CANON_HI = 0xFFFF_8000_0000_0000
_SYSCALL, _FAULT, _INTERRUPTED, _HALT = (
    ExitKind.SYSCALL,
    ExitKind.FAULT,
    ExitKind.INTERRUPTED,
    ExitKind.HALT,
)
_EXC_LO = layout.PORT_EXC_BASE
_EXC_HI = layout.PORT_EXC_BASE + 32
_ERRVEC = layout.ERROR_CODE_VECTORS
_KBASE = layout.KBASE
_RFMASK, _RFFIXED = layout.RFLAGS_USER_MASK, layout.RFLAGS_FIXED
# Hot-path constants as module globals (one dict lookup instead of two).
_KVM_RUN, _EXIT_IO, _SYNC_REGS = uapi.KVM_RUN, uapi.KVM_EXIT_IO, uapi.KVM_SYNC_X86_REGS
_PORT_SYSCALL, _LSTAR_OUT_END = layout.PORT_SYSCALL, layout.LSTAR_OUT_END
_this_thread = threading.local()  # .tid: the host thread's native id, looked up once


class KvmCpu:
    """One vCPU (see ``cove.platform.base.Cpu``)."""

    def __init__(self, platform: KvmPlatform, index: int) -> None:
        self.platform = platform
        self.index = index
        self.fd = ioctl(platform.vm_fd, uapi.KVM_CREATE_VCPU, index)
        self._runmm = mmap.mmap(self.fd, platform.run_size, mmap.MAP_SHARED,
                                mmap.PROT_READ | mmap.PROT_WRITE)  # fmt: skip
        self._run = uapi.kvm_run.from_buffer(self._runmm)
        self._sr = self._run.s.regs.regs  # the sync-regs kvm_regs inside kvm_run
        self._sr_mv = memoryview(self._sr).cast("B")  # copied to/from ctx._regs_mv
        base = ctypes.addressof(self._run)
        # Direct views of the few kvm_run fields the loop reads (nested ctypes
        # attribute access costs ~0.1 µs per level).
        self._exit_reason = ctypes.c_uint32.from_address(base + uapi.kvm_run.exit_reason.offset)
        self._dirty_regs = ctypes.c_uint64.from_address(base + uapi.kvm_run.kvm_dirty_regs.offset)
        io_off = uapi.kvm_run.u.offset + uapi.kvm_run_io.port.offset
        self._io_port = ctypes.c_uint16.from_address(base + io_off)
        self._exit = Exit()
        self._ctx: KvmContext | None = None
        self._aspace: KvmAddressSpace | None = None
        self._flush_gen = 0
        self._fs = self._gs = 0
        self._timeslice: float | None = None
        self._timer: ThreadTimer | None = None
        self._thread_id = 0  # native id of the thread in run(), for the timer
        self._thread_ident = 0  # its pthread id, for kick()
        self._closed = False

        pm = platform.physmem
        self._mem = pm.mem
        _gdt_frame, stack_frame = platform.alloc_cpu_area(index, allow_user_syscall_port=True)
        self._rsp0 = layout.cpu_stack_top_va(index)
        self._set_stack(stack_frame)
        self._xsave = (ctypes.c_char * platform.xsave_buf_size)()
        self._xsave_get = uapi.KVM_GET_XSAVE2 if platform.xsave_buf_size > 4096 else \
            uapi.KVM_GET_XSAVE  # fmt: skip
        self._msrs = uapi.kvm_msrs()

        self._run.kvm_valid_regs = uapi.KVM_SYNC_X86_REGS
        self._setup(platform)
        self.syscall_cpl3 = self._probe()
        # The probe's address space is done with (CR3 is reloaded before the
        # next run); its tables go back to the pool, reused after a zap.
        self._probe_aspace.destroy()
        del self._probe_aspace
        if not self.syscall_cpl3:
            # Hardware KVM: syscall enters at CPL 0, so the LSTAR page goes
            # supervisor-only and CPL 3 gets no I/O port at all.
            platform.set_lstar_user(False)
            pm.write(_gdt_frame << 12, layout.build_cpu_page(index, False))
        if not platform.fpu_template.strip(b"\0"):
            ioctl(self.fd, self._xsave_get, self._xsave)
            platform.fpu_template = bytes(self._xsave)
        # After the probe the vCPU sits at the syscall exit: CPL 3 on kvm_pvm.
        self._cpl0 = not self.syscall_cpl3

    def _set_stack(self, stack_frame: int) -> None:
        self._stack_top_pa = (stack_frame + 1) << 12
        self._frame_pa = self._stack_top_pa - layout.F_RIP
        self._resume_pa = self._stack_top_pa - layout.F_ERR

    def reset(self, stack_frame: int | None) -> None:
        """Guest memory was replaced under this vCPU (a restore, or the VM
        pool): forget the context and address space it ran (the next run loads
        all of a context: registers, XSAVE, FS/GS bases, CR3) and use the
        kernel stack in ``stack_frame`` (None: no memory yet, as in the pool).
        Segment registers go back to their first values."""
        old = self._ctx
        if old is not None and old._live_on is self:
            old._live_on = None  # its state belongs to a discarded guest
        self._ctx = None
        self._aspace = None
        self._fs = self._gs = -1  # unknown: the next run writes both MSRs
        if stack_frame is not None:
            self._set_stack(stack_frame)
        s = uapi.kvm_sregs()
        ioctl(self.fd, uapi.KVM_GET_SREGS, s)
        if s.ds.selector != layout.USER_DS or s.es.selector != layout.USER_DS or \
                s.fs.selector != layout.USER_DS or s.gs.selector != layout.USER_DS:
            # user code may load data selectors; the next guest must not see them
            for seg in (s.ds, s.es, s.fs, s.gs):
                _segment(seg, layout.USER_DS, code=False, dpl=3)
            ioctl(self.fd, uapi.KVM_SET_SREGS, s)

    def detach(self) -> None:
        """Guest memory goes away (the VM pool): no view of it, no timer."""
        self._mem = None  # type: ignore[assignment]
        if self._timer is not None:
            self._timer.delete()
            self._timer = None
        self._thread_id = self._thread_ident = 0
        self._timeslice = None

    def attach(self, physmem: PhysMem) -> None:
        self._mem = physmem.mem

    # --- setup --------------------------------------------------------------

    def _setup(self, platform: KvmPlatform) -> None:
        ioctl(self.fd, uapi.KVM_SET_CPUID2, platform.cpuid)
        s = uapi.kvm_sregs()
        ioctl(self.fd, uapi.KVM_GET_SREGS, s)
        _segment(s.cs, layout.USER_CS, code=True, dpl=3)
        for seg in (s.ds, s.es, s.fs, s.gs, s.ss):
            _segment(seg, layout.USER_DS, code=False, dpl=3)
        s.tr.base = layout.cpu_gdt_va(self.index) + layout.TSS_OFFSET
        s.tr.limit = layout.TSS_LIMIT
        s.tr.selector = layout.TSS_SEL
        s.tr.type, s.tr.present, s.tr.s, s.tr.dpl, s.tr.g, s.tr.unusable = 0xB, 1, 0, 0, 0, 0
        s.ldt.unusable = 1
        s.gdt.base, s.gdt.limit = layout.cpu_gdt_va(self.index), layout.GDT_LIMIT
        s.idt.base, s.idt.limit = layout.IDT_VA, layout.IDT_LIMIT
        s.cr0 = 0x80050033  # PG AM WP NE ET MP PE
        s.cr4 = (1 << 5) | (1 << 9) | (1 << 10) | (1 << 18)  # PAE OSFXSR OSXMMEXCPT OSXSAVE
        s.efer = (1 << 0) | (1 << 8) | (1 << 10) | (1 << 11)  # SCE LME LMA NXE
        scratch = platform.create_address_space()  # only for the probe
        s.cr3 = scratch.cr3
        self._probe_aspace = scratch
        ioctl(self.fd, uapi.KVM_SET_SREGS, s)
        self._set_msrs(
            (uapi.MSR_STAR, layout.STAR),
            (uapi.MSR_LSTAR, layout.LSTAR),
            (uapi.MSR_CSTAR, 0),
            (uapi.MSR_SYSCALL_MASK, layout.SFMASK),
            (uapi.MSR_KERNEL_GS_BASE, 0),
            (uapi.MSR_FS_BASE, 0),
            (uapi.MSR_GS_BASE, 0),
        )
        xcrs = uapi.kvm_xcrs(nr_xcrs=1)
        xcrs.xcrs[0].xcr, xcrs.xcrs[0].value = 0, platform.xcr0
        ioctl(self.fd, uapi.KVM_SET_XCRS, xcrs)

    def _set_msrs(self, *pairs: tuple[int, int]) -> None:
        m = self._msrs
        m.nmsrs = len(pairs)
        for i, (idx, val) in enumerate(pairs):
            m.entries[i].index, m.entries[i].data = idx, val
        if ioctl(self.fd, uapi.KVM_SET_MSRS, m) != len(pairs):
            raise PlatformError(f"KVM_SET_MSRS refused one of {[hex(p[0]) for p in pairs]}")

    def _get_bases(self) -> tuple[int, int]:
        m = self._msrs
        m.nmsrs = 2
        m.entries[0].index, m.entries[1].index = uapi.MSR_FS_BASE, uapi.MSR_GS_BASE
        if ioctl(self.fd, uapi.KVM_GET_MSRS, m) != 2:
            raise PlatformError("KVM_GET_MSRS FS_BASE/GS_BASE failed")
        return m.entries[0].data, m.entries[1].data

    def _probe(self) -> bool:
        """Run one `syscall` from CPL 3 and see which CPL the stub got it at."""
        sr = self._sr
        sr.rip, sr.rsp, sr.rflags = layout.PROBE, 0, layout.RFLAGS_FIXED
        self._run.kvm_dirty_regs = uapi.KVM_SYNC_X86_REGS
        ioctl(self.fd, uapi.KVM_RUN)
        if self._exit_reason.value != uapi.KVM_EXIT_IO or self._io_port.value != \
                layout.PORT_SYSCALL:  # fmt: skip
            raise PlatformError(
                f"syscall probe: unexpected exit {self._describe_exit()}; the stub cannot work"
            )
        s = uapi.kvm_sregs()
        ioctl(self.fd, uapi.KVM_GET_SREGS, s)
        return s.cs.dpl == 3

    def _describe_exit(self) -> str:
        r = self._exit_reason.value
        name = uapi.EXIT_REASON_NAMES.get(r, str(r))
        if r == uapi.KVM_EXIT_IO:
            return f"IO port {self._io_port.value:#x} rip {self._sr.rip:#x}"
        if r == uapi.KVM_EXIT_INTERNAL_ERROR:
            i = self._run.u.internal
            data = ", ".join(hex(i.data[k]) for k in range(min(i.ndata, 16)))
            return f"INTERNAL_ERROR suberror {i.suberror} [{data}]"
        if r == uapi.KVM_EXIT_FAIL_ENTRY:
            return f"FAIL_ENTRY reason {self._run.u.fail_entry.hardware_entry_failure_reason:#x}"
        return name

    # --- context switching ------------------------------------------------------

    def save_fpu(self, ctx: KvmContext) -> None:
        """Copy the live XSAVE state of ``ctx`` (if live here) into ``ctx``."""
        if ctx._live_on is self and not ctx._fpu_dirty:
            ioctl(self.fd, self._xsave_get, self._xsave)
            ctx._fpu[:] = self._xsave.raw

    def sync_bases(self, ctx: KvmContext) -> None:
        """Pull the live FS/GS bases into ``ctx`` (the guest may have changed them
        itself), except where the North assigned a new value since the last run:
        that one is still to be loaded and wins."""
        fs, gs = self._get_bases()
        if ctx.fs_base == self._fs:
            ctx.fs_base = fs
        if ctx.gs_base == self._gs:
            ctx.gs_base = gs
        self._fs, self._gs = fs, gs

    def _switch(self, ctx: KvmContext, aspace: KvmAddressSpace) -> None:
        old = self._ctx
        if old is not ctx:
            if old is not None and old._live_on is self:
                self.save_fpu(old)
                self.sync_bases(old)
                old._live_on = None
            if ctx._live_on is not None and ctx._live_on is not self:
                other = ctx._live_on
                other.save_fpu(ctx)
                other._ctx = None
            ctx._live_on = self
            self._ctx = ctx
            ctx._fpu_dirty = True
        if ctx._fpu_dirty:
            self._xsave.raw = bytes(ctx._fpu)
            ioctl(self.fd, uapi.KVM_SET_XSAVE, self._xsave)
            ctx._fpu_dirty = False
        if ctx.fs_base != self._fs or ctx.gs_base != self._gs:
            self._set_msrs((uapi.MSR_FS_BASE, ctx.fs_base), (uapi.MSR_GS_BASE, ctx.gs_base))
            self._fs, self._gs = ctx.fs_base, ctx.gs_base
        if aspace is not self._aspace:
            if aspace.destroyed:
                raise ValueError("running a destroyed address space")
            s = uapi.kvm_sregs()
            ioctl(self.fd, uapi.KVM_GET_SREGS, s)
            s.cr3 = aspace.cr3
            ioctl(self.fd, uapi.KVM_SET_SREGS, s)
            self._aspace = aspace
            self._flush_gen = aspace.flush_gen  # a CR3 load flushes anyway

    # --- running ----------------------------------------------------------------

    def run(self, ctx: KvmContext, aspace: KvmAddressSpace) -> Exit:
        if (ctx is not self._ctx or aspace is not self._aspace or ctx._fpu_dirty
                or ctx.fs_base != self._fs or ctx.gs_base != self._gs):  # fmt: skip
            self._switch(ctx, aspace)
        try:
            tid = _this_thread.tid  # get_native_id() is a syscall each time
        except AttributeError:
            tid = _this_thread.tid = threading.get_native_id()
        if tid != self._thread_id:
            self._bind_thread(tid)
        regs = ctx.regs
        rip = regs.rip
        if (1 << 47) <= rip < _CANON_HI:
            return self._fault_now(GP)  # a non-canonical rip would fault inside the stub
        regs.rflags = (regs.rflags & _RFMASK) | _RFFIXED
        sr = self._sr
        self._sr_mv[:] = ctx._regs_mv
        if self._cpl0:
            layout.RESUME_FRAME.pack_into(
                self._mem, self._resume_pa, regs.rax, rip, layout.USER_CS,
                regs.rflags, regs.rsp, layout.USER_DS,
            )  # fmt: skip
            sr.rsp = self._rsp0 - layout.F_ERR
            sr.rflags = 2
            if aspace.flush_gen != self._flush_gen:
                self._flush_gen = aspace.flush_gen
                sr.rip = layout.RESUME_FLUSH
            else:
                sr.rip = layout.RESUME_POP
        self._dirty_regs.value = _SYNC_REGS
        return self._loop(ctx)

    def _loop(self, ctx: KvmContext) -> Exit:
        fd, run, sr, ex = self.fd, self._run, self._sr, self._exit
        while True:
            if raw_ioctl(fd, _KVM_RUN, None) < 0:
                e = errno()
                run.immediate_exit = 0
                if e != _errno.EINTR and e != _errno.EAGAIN:
                    raise PlatformError(f"KVM_RUN failed: errno {e}")
                if self._interrupted(ctx):
                    ex.kind = _INTERRUPTED
                    return ex
                continue  # stopped mid-stub: let it reach its exit
            reason = self._exit_reason.value
            if reason == _EXIT_IO:
                port = self._io_port.value
                if port == _PORT_SYSCALL:
                    regs = ctx.regs
                    ctx._regs_mv[:] = self._sr_mv
                    if sr.rip != _LSTAR_OUT_END:
                        # user code ran `out` to our port itself: not a syscall
                        self._cpl0 = False
                        regs.rip -= 2
                        return self._fault_now(GP)
                    regs.rip = regs.rcx
                    regs.rflags = regs.r11
                    self._cpl0 = not self.syscall_cpl3
                    ex.kind = _SYSCALL
                    return ex
                if _EXC_LO <= port < _EXC_HI:
                    return self._exception(ctx, port - _EXC_LO)
            return self._halt()

    def _exception(self, ctx: KvmContext, vector: int) -> Exit:
        ex, regs, mem = self._exit, ctx.regs, self._mem
        ctx._regs_mv[:] = self._sr_mv
        top = self._stack_top_pa
        if vector == PF:
            ex.cr2 = regs.rax  # the stub handed CR2 over in rax
            regs.rax = _Q.unpack_from(mem, top - layout.F_PF_RAX)[0]
        else:
            ex.cr2 = 0
        ex.error_code = _Q.unpack_from(mem, top - layout.F_ERR)[0] if vector in _ERRVEC else 0
        rip, cs, rflags, rsp, _ss = layout.FRAME.unpack_from(mem, self._frame_pa)
        self._cpl0 = True
        if cs & 3 != 3:
            return self._halt(f"exception {vector} inside the stub at {rip:#x}")
        regs.rip, regs.rflags, regs.rsp = rip, rflags, rsp
        if vector == UD and self._at_int80(rip):
            # Hardware raises #GP(0x402) for an absent IDT gate; kvm_pvm reports
            # #UD. The guest must see the same fault (SIGSEGV) on every platform.
            vector, ex.error_code = GP, (0x80 << 3) | 2
        ex.kind = _FAULT
        ex.vector = vector
        ex.detail = ""
        return ex

    def _at_int80(self, rip: int) -> bool:
        """Whether the user instruction at ``rip`` is ``int $0x80`` (cd 80)."""
        aspace = self._aspace
        if aspace is None:
            return False
        first, second = aspace.translate(rip), aspace.translate(rip + 1)
        return (first is not None and second is not None
                and self._mem[first] == 0xCD and self._mem[second] == 0x80)

    def _interrupted(self, ctx: KvmContext) -> bool:
        """After EINTR: True (and ctx updated) if the guest stopped somewhere a
        context is whole; False if it is inside a stub path that must finish."""
        sr = self._sr
        rip = sr.rip
        if rip < _KBASE:  # in user code
            ctx._regs_mv[:] = self._sr_mv
            self._cpl0 = False
            return True
        if layout.RESUME_FLUSH <= rip <= layout.RESUME:  # about to iretq to the user
            ctx._regs_mv[:] = self._sr_mv
            regs = ctx.regs
            if rip != layout.RESUME:
                regs.rax = _Q.unpack_from(self._mem, self._resume_pa)[0]
            regs.rip, _cs, regs.rflags, regs.rsp, _ss = layout.FRAME.unpack_from(
                self._mem, self._frame_pa
            )
            self._cpl0 = True
            return True
        return False

    def _fault_now(self, vector: int) -> Exit:
        ex = self._exit
        ex.kind, ex.vector, ex.error_code, ex.cr2, ex.detail = _FAULT, vector, 0, 0, ""
        return ex

    def _halt(self, detail: str | None = None) -> Exit:
        ex = self._exit
        ex.kind = _HALT
        ex.detail = detail or self._describe_exit()
        return ex

    # --- preemption -------------------------------------------------------------

    def _bind_thread(self, tid: int) -> None:
        self._thread_id = tid
        self._thread_ident = threading.get_ident()
        if self._timer is not None:
            self._timer.delete()
            self._timer = None
        if self._timeslice:
            self._timer = ThreadTimer(KICK_SIGNAL, tid)
            self._timer.arm(self._timeslice)

    def set_timeslice(self, seconds: float | None) -> None:
        self._timeslice = seconds or None
        if self._timer is not None:
            self._timer.arm(self._timeslice)
        elif self._timeslice and self._thread_id:
            self._bind_thread(self._thread_id)

    def kick(self) -> None:
        # immediate_exit covers a kick that lands before KVM_RUN is entered;
        # the signal covers one that lands while the guest runs.
        self._run.immediate_exit = 1
        if self._thread_ident:
            try:
                _signal.pthread_kill(self._thread_ident, KICK_SIGNAL)
            except ProcessLookupError:
                pass

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.delete()
        if self._ctx is not None:
            self.save_fpu(self._ctx)
            self._ctx._live_on = None
        self._sr_mv.release()
        del self._sr, self._sr_mv, self._run, self._exit_reason, self._io_port, self._dirty_regs
        try:
            self._runmm.close()
        except BufferError:
            pass  # someone still holds a view of kvm_run; the GC unmaps it later
        os.close(self.fd)


def _segment(s: uapi.kvm_segment, sel: int, *, code: bool, dpl: int) -> None:
    s.base, s.limit, s.selector = 0, 0xFFFFFFFF, sel
    s.type = 0xB if code else 0x3
    s.present, s.dpl, s.db, s.s, s.l, s.g, s.avl, s.unusable = 1, dpl, 0 if code else 1, \
        1, 1 if code else 0, 1, 0, 0  # fmt: skip
