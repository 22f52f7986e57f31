"""The /dev/kvm user ABI for x86-64: ioctl numbers, constants and ctypes structs.

Transcribed from linux/kvm.h and asm/kvm.h (the layouts are part of the kernel's
stable user ABI); sizes are asserted at import so a typo cannot go unnoticed.
"""

from __future__ import annotations

import ctypes as C

_IOC_NONE, _IOC_WRITE, _IOC_READ = 0, 1, 2
KVMIO = 0xAE


def _ioc(direction: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (KVMIO << 8) | nr


def _io(nr: int) -> int:
    return _ioc(_IOC_NONE, nr, 0)


def _ior(nr: int, size: int) -> int:
    return _ioc(_IOC_READ, nr, size)


def _iow(nr: int, size: int) -> int:
    return _ioc(_IOC_WRITE, nr, size)


def _iowr(nr: int, size: int) -> int:
    return _ioc(_IOC_READ | _IOC_WRITE, nr, size)


# --- structs -----------------------------------------------------------------


class kvm_regs(C.Structure):
    # Field order is the kernel's; cove.platform.base.UserRegs has the same layout.
    _fields_ = [
        (n, C.c_uint64)
        for n in (
            "rax rbx rcx rdx rsi rdi rsp rbp r8 r9 r10 r11 r12 r13 r14 r15 rip rflags".split()
        )
    ]


class kvm_segment(C.Structure):
    _fields_ = [
        ("base", C.c_uint64),
        ("limit", C.c_uint32),
        ("selector", C.c_uint16),
        ("type", C.c_uint8),
        ("present", C.c_uint8),
        ("dpl", C.c_uint8),
        ("db", C.c_uint8),
        ("s", C.c_uint8),
        ("l", C.c_uint8),
        ("g", C.c_uint8),
        ("avl", C.c_uint8),
        ("unusable", C.c_uint8),
        ("padding", C.c_uint8),
    ]


class kvm_dtable(C.Structure):
    _fields_ = [("base", C.c_uint64), ("limit", C.c_uint16), ("padding", C.c_uint16 * 3)]


class kvm_sregs(C.Structure):
    _fields_ = [
        ("cs", kvm_segment),
        ("ds", kvm_segment),
        ("es", kvm_segment),
        ("fs", kvm_segment),
        ("gs", kvm_segment),
        ("ss", kvm_segment),
        ("tr", kvm_segment),
        ("ldt", kvm_segment),
        ("gdt", kvm_dtable),
        ("idt", kvm_dtable),
        ("cr0", C.c_uint64),
        ("cr2", C.c_uint64),
        ("cr3", C.c_uint64),
        ("cr4", C.c_uint64),
        ("cr8", C.c_uint64),
        ("efer", C.c_uint64),
        ("apic_base", C.c_uint64),
        ("interrupt_bitmap", C.c_uint64 * 4),
    ]


class kvm_userspace_memory_region(C.Structure):
    _fields_ = [
        ("slot", C.c_uint32),
        ("flags", C.c_uint32),
        ("guest_phys_addr", C.c_uint64),
        ("memory_size", C.c_uint64),
        ("userspace_addr", C.c_uint64),
    ]


class kvm_cpuid_entry2(C.Structure):
    _fields_ = [
        ("function", C.c_uint32),
        ("index", C.c_uint32),
        ("flags", C.c_uint32),
        ("eax", C.c_uint32),
        ("ebx", C.c_uint32),
        ("ecx", C.c_uint32),
        ("edx", C.c_uint32),
        ("padding", C.c_uint32 * 3),
    ]


KVM_CPUID_MAX_ENTRIES = 256


class kvm_cpuid2(C.Structure):
    _fields_ = [
        ("nent", C.c_uint32),
        ("padding", C.c_uint32),
        ("entries", kvm_cpuid_entry2 * KVM_CPUID_MAX_ENTRIES),
    ]


class kvm_msr_entry(C.Structure):
    _fields_ = [("index", C.c_uint32), ("reserved", C.c_uint32), ("data", C.c_uint64)]


KVM_MSRS_MAX = 16


class kvm_msrs(C.Structure):
    _fields_ = [
        ("nmsrs", C.c_uint32),
        ("pad", C.c_uint32),
        ("entries", kvm_msr_entry * KVM_MSRS_MAX),
    ]


class kvm_xcr(C.Structure):
    _fields_ = [("xcr", C.c_uint32), ("reserved", C.c_uint32), ("value", C.c_uint64)]


class kvm_xcrs(C.Structure):
    _fields_ = [
        ("nr_xcrs", C.c_uint32),
        ("flags", C.c_uint32),
        ("xcrs", kvm_xcr * 16),
        ("padding", C.c_uint64 * 16),
    ]


KVM_XSAVE_SIZE = 4096  # struct kvm_xsave { __u32 region[1024]; __u32 extra[]; }


class kvm_run_io(C.Structure):
    _fields_ = [
        ("direction", C.c_uint8),
        ("size", C.c_uint8),
        ("port", C.c_uint16),
        ("count", C.c_uint32),
        ("data_offset", C.c_uint64),
    ]


class kvm_run_internal(C.Structure):
    _fields_ = [("suberror", C.c_uint32), ("ndata", C.c_uint32), ("data", C.c_uint64 * 16)]


class kvm_run_fail_entry(C.Structure):
    _fields_ = [("hardware_entry_failure_reason", C.c_uint64), ("cpu", C.c_uint32)]


class kvm_run_exit_union(C.Union):
    _fields_ = [
        ("io", kvm_run_io),
        ("internal", kvm_run_internal),
        ("fail_entry", kvm_run_fail_entry),
        ("padding", C.c_char * 256),
    ]


class kvm_sync_regs(C.Structure):
    _fields_ = [("regs", kvm_regs), ("sregs", kvm_sregs)]  # then kvm_vcpu_events, unused


class kvm_run_s(C.Union):
    _fields_ = [("regs", kvm_sync_regs), ("padding", C.c_char * 2048)]


class kvm_run(C.Structure):
    _fields_ = [
        ("request_interrupt_window", C.c_uint8),
        ("immediate_exit", C.c_uint8),
        ("padding1", C.c_uint8 * 6),
        ("exit_reason", C.c_uint32),
        ("ready_for_interrupt_injection", C.c_uint8),
        ("if_flag", C.c_uint8),
        ("flags", C.c_uint16),
        ("cr8", C.c_uint64),
        ("apic_base", C.c_uint64),
        ("u", kvm_run_exit_union),
        ("kvm_valid_regs", C.c_uint64),
        ("kvm_dirty_regs", C.c_uint64),
        ("s", kvm_run_s),
    ]


assert C.sizeof(kvm_regs) == 144
assert C.sizeof(kvm_segment) == 24
assert C.sizeof(kvm_sregs) == 312
assert C.sizeof(kvm_userspace_memory_region) == 32
assert C.sizeof(kvm_cpuid_entry2) == 40
assert C.sizeof(kvm_xcrs) == 392
assert kvm_run.u.offset == 32
assert kvm_run.kvm_valid_regs.offset == 288
assert kvm_run.s.offset == 304

# --- ioctls ------------------------------------------------------------------

KVM_GET_API_VERSION = _io(0x00)
KVM_CREATE_VM = _io(0x01)
KVM_CHECK_EXTENSION = _io(0x03)
KVM_GET_VCPU_MMAP_SIZE = _io(0x04)
KVM_GET_SUPPORTED_CPUID = _iowr(0x05, 8)  # sizeof(struct kvm_cpuid2) without entries
KVM_CREATE_VCPU = _io(0x41)
KVM_SET_USER_MEMORY_REGION = _iow(0x46, C.sizeof(kvm_userspace_memory_region))
KVM_SET_TSS_ADDR = _io(0x47)
KVM_RUN = _io(0x80)
KVM_GET_REGS = _ior(0x81, C.sizeof(kvm_regs))
KVM_SET_REGS = _iow(0x82, C.sizeof(kvm_regs))
KVM_GET_SREGS = _ior(0x83, C.sizeof(kvm_sregs))
KVM_SET_SREGS = _iow(0x84, C.sizeof(kvm_sregs))
KVM_GET_MSRS = _iowr(0x88, 8)
KVM_SET_MSRS = _iow(0x89, 8)
KVM_SET_CPUID2 = _iow(0x90, 8)
KVM_GET_XSAVE = _ior(0xA4, KVM_XSAVE_SIZE)
KVM_SET_XSAVE = _iow(0xA5, KVM_XSAVE_SIZE)
KVM_GET_XCRS = _ior(0xA6, C.sizeof(kvm_xcrs))
KVM_SET_XCRS = _iow(0xA7, C.sizeof(kvm_xcrs))
KVM_GET_XSAVE2 = _ior(0xCF, KVM_XSAVE_SIZE)

KVM_API_VERSION = 12

# KVM_CHECK_EXTENSION capabilities used here.
KVM_CAP_USER_MEMORY = 3
KVM_CAP_SET_TSS_ADDR = 4
KVM_CAP_EXT_CPUID = 7
KVM_CAP_XSAVE = 55
KVM_CAP_XCRS = 56
KVM_CAP_SYNC_REGS = 74
KVM_CAP_IMMEDIATE_EXIT = 136
KVM_CAP_XSAVE2 = 208

KVM_SYNC_X86_REGS = 1 << 0
KVM_SYNC_X86_SREGS = 1 << 1
KVM_SYNC_X86_EVENTS = 1 << 2

# kvm_run.exit_reason values.
KVM_EXIT_UNKNOWN = 0
KVM_EXIT_EXCEPTION = 1
KVM_EXIT_IO = 2
KVM_EXIT_HYPERCALL = 3
KVM_EXIT_DEBUG = 4
KVM_EXIT_HLT = 5
KVM_EXIT_MMIO = 6
KVM_EXIT_SHUTDOWN = 8
KVM_EXIT_FAIL_ENTRY = 9
KVM_EXIT_INTR = 10
KVM_EXIT_INTERNAL_ERROR = 17
KVM_EXIT_SYSTEM_EVENT = 24

EXIT_REASON_NAMES = {
    v: k[len("KVM_EXIT_") :] for k, v in dict(globals()).items() if k.startswith("KVM_EXIT_")
}

KVM_EXIT_IO_IN = 0
KVM_EXIT_IO_OUT = 1

# MSRs.
MSR_EFER = 0xC0000080
MSR_STAR = 0xC0000081
MSR_LSTAR = 0xC0000082
MSR_CSTAR = 0xC0000083
MSR_SYSCALL_MASK = 0xC0000084
MSR_FS_BASE = 0xC0000100
MSR_GS_BASE = 0xC0000101
MSR_KERNEL_GS_BASE = 0xC0000102
MSR_IA32_PAT = 0x277
