"""Host system calls the userland platform makes through ctypes: ptrace,
waitpid on tracees, pidfd_getfd, seccomp user-notification ioctls.

ctypes calls through ``CDLL`` release the GIL, so a tracer blocked here never
stops other Python threads. Everything that can fail raises PlatformError
naming the call, except the ``raw_*`` hot-path functions, which return -1 and
leave errno.
"""

from __future__ import annotations

import ctypes
import os
import struct

from cove.platform.base import PlatformError

libc = ctypes.CDLL(None, use_errno=True)

_syscall = libc.syscall
_syscall.restype = ctypes.c_long
_ioctl = libc.ioctl
_ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
_ioctl.restype = ctypes.c_int
raw_ioctl = _ioctl

SYS_ptrace = 101
SYS_futex = 202
SYS_pidfd_open = 434
SYS_pidfd_getfd = 438
SYS_pidfd_send_signal = 424

# ptrace requests and options
PTRACE_CONT = 7
PTRACE_KILL = 8
PTRACE_GETREGS = 12
PTRACE_SETREGS = 13
PTRACE_GETFPREGS = 14
PTRACE_GETREGSET = 0x4204
PTRACE_SETREGSET = 0x4205
PTRACE_GETEVENTMSG = 0x4201
PTRACE_GETSIGINFO = 0x4202
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
PTRACE_O_TRACEFORK = 0x02
PTRACE_O_TRACECLONE = 0x08
PTRACE_O_TRACESECCOMP = 0x80
PTRACE_O_EXITKILL = 0x100000
PTRACE_EVENT_FORK = 1
PTRACE_EVENT_CLONE = 3
PTRACE_EVENT_SECCOMP = 7
PTRACE_EVENT_STOP = 128
NT_X86_XSTATE = 0x202
WALL = 0x40000000

# seccomp
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3
SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_TRAP = 0x00030000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_USER_NOTIF = 0x7FC00000
SECCOMP_RET_TRACE = 0x7FF00000
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_IOCTL_NOTIF_RECV = 0xC0502100
SECCOMP_IOCTL_NOTIF_SEND = 0xC0182101
SECCOMP_IOCTL_NOTIF_ID_VALID = 0x40082102
SECCOMP_IOCTL_NOTIF_SET_FLAGS = 0x40082104
SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP = 1
AUDIT_ARCH_X86_64 = 0xC000003E

# struct seccomp_notif: id, pid, flags, data{nr, arch, ip, args[6]}
NOTIF = struct.Struct("<QIIiIQ6Q")
NOTIF_SIZE = NOTIF.size  # 80
# struct seccomp_notif_resp: id, val, error, flags
NOTIF_RESP = struct.Struct("<QqiI")


class user_regs_struct(ctypes.Structure):
    """<sys/user.h>'s register block, as PTRACE_GETREGS/SETREGS move it."""

    _fields_ = [(n, ctypes.c_uint64) for n in (
        "r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx rdx rsi rdi orig_rax "
        "rip cs eflags rsp ss fs_base gs_base ds es fs gs").split()]


class iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


sched_getcpu = libc.sched_getcpu  # the CPU the calling thread runs on (vDSO, cheap)
sched_getcpu.restype = ctypes.c_int
sched_getcpu.argtypes = []


def errno() -> int:
    return ctypes.get_errno()


def _fail(what: str) -> PlatformError:
    e = ctypes.get_errno()
    return PlatformError(f"{what}: {os.strerror(e)} (errno {e})")


def raw_ptrace(req: int, pid: int, addr: int = 0, data: int = 0) -> int:
    return _syscall(ctypes.c_long(SYS_ptrace), ctypes.c_long(req), ctypes.c_long(pid),
                    ctypes.c_void_p(addr), ctypes.c_void_p(data))


def ptrace(req: int, pid: int, addr: int = 0, data: int = 0) -> int:
    r = raw_ptrace(req, pid, addr, data)
    if r < 0:
        raise _fail(f"ptrace({req:#x}, {pid})")
    return r


FUTEX_WAIT, FUTEX_WAKE = 0, 1  # shared (not FUTEX_PRIVATE_FLAG): the word is in the memfd


class timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def raw_futex(addr: int, op: int, val: int, timeout: int = 0) -> int:
    """futex(2) on the word at host address ``addr``; ``timeout``: the
    address of a timespec (relative, FUTEX_WAIT) or 0."""
    return _syscall(ctypes.c_long(SYS_futex), ctypes.c_void_p(addr), ctypes.c_int(op),
                    ctypes.c_uint(val), ctypes.c_void_p(timeout), ctypes.c_void_p(0),
                    ctypes.c_uint(0))


def pidfd_open(pid: int) -> int:
    try:
        return os.pidfd_open(pid)
    except OSError as e:
        raise PlatformError(f"pidfd_open({pid}): {e.strerror}") from None


def pidfd_getfd(pidfd: int, fd: int) -> int:
    r = _syscall(ctypes.c_long(SYS_pidfd_getfd), ctypes.c_long(pidfd), ctypes.c_long(fd),
                 ctypes.c_long(0))
    if r < 0:
        raise _fail("pidfd_getfd")
    os.set_inheritable(r, False)  # pidfd_getfd sets O_CLOEXEC; make sure
    return r


def ioctl(fd: int, req: int, arg: int) -> int:
    r = _ioctl(fd, req, arg)
    if r < 0:
        raise _fail(f"ioctl({fd}, {req:#x})")
    return r
