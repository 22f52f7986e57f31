"""Signal structs: siginfo_t (by variant), signalfd_siginfo, the kernel's
sigaction, stack_t.

siginfo_t is 128 bytes: signo, errno, code, 4 bytes of padding, then a union
at offset 16 whose member depends on the signal and si_code. Each variant
below is a full 128-byte layout, so packing one zeroes the rest of the union.
"""

from __future__ import annotations

from cove.abi.flags import SI_TIMER, SIGCHLD, SIGSYS, SYS_SECCOMP
from cove.abi.layout import Layout

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from typing import Any

SIGINFO_SIZE = 128

# kill (SI_USER), tkill/tgkill (SI_TKILL), and kernel-sent signals (SI_KERNEL).
SIGINFO_KILL = Layout("""
    siginfo_t
    i si_signo
    i si_errno
    i si_code
    4x
    i si_pid
    I si_uid
    104x
""")

# rt_sigqueueinfo / sigqueue and message queues (SI_QUEUE, SI_MESGQ): kill + value.
SIGINFO_RT = Layout("""
    siginfo_t
    i si_signo
    i si_errno
    i si_code
    4x
    i si_pid
    I si_uid
    Q si_value
    96x
""")

# POSIX timers (SI_TIMER). si_value is the sigevent's sigev_value.
SIGINFO_TIMER = Layout("""
    siginfo_t
    i si_signo
    i si_errno
    i si_code
    4x
    i si_tid si_timerid
    i si_overrun
    Q _sifields._timer._sigval si_value
    96x
""")

# SIGCHLD (CLD_*): si_status is the exit code or the signal; times in clock ticks.
SIGINFO_CHLD = Layout("""
    siginfo_t
    i si_signo
    i si_errno
    i si_code
    4x
    i si_pid
    I si_uid
    i si_status
    4x
    q si_utime
    q si_stime
    80x
""")

# SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP: the faulting address.
SIGINFO_FAULT = Layout("""
    siginfo_t
    i si_signo
    i si_errno
    i si_code
    4x
    Q si_addr
    h si_addr_lsb
    102x
""")

# SIGIO/SIGPOLL (POLL_*).
SIGINFO_POLL = Layout("""
    siginfo_t
    i si_signo
    i si_errno
    i si_code
    4x
    q si_band
    i si_fd
    100x
""")

# SIGSYS from seccomp (SYS_SECCOMP).
SIGINFO_SYS = Layout("""
    siginfo_t
    i si_signo
    i si_errno
    i si_code
    4x
    Q si_call_addr
    i si_syscall
    I si_arch
    96x
""")

_KILL = SIGINFO_KILL.struct.pack_into
_RT = SIGINFO_RT.struct.pack_into
_TIMER = SIGINFO_TIMER.struct.pack_into
_CHLD = SIGINFO_CHLD.struct.pack_into
_FAULT = SIGINFO_FAULT.struct.pack_into
_SYS = SIGINFO_SYS.struct.pack_into


def siginfo_kill(buf: Any, off: int, signo: int, code: int, pid: int, uid: int) -> None:
    """kill (SI_USER), tkill/tgkill (SI_TKILL), or SI_KERNEL with pid = uid = 0."""
    _KILL(buf, off, signo, 0, code, pid, uid)


def siginfo_rt(buf: Any, off: int, signo: int, code: int, pid: int, uid: int, value: int) -> None:
    """sigqueue (SI_QUEUE) and friends."""
    _RT(buf, off, signo, 0, code, pid, uid, value)


def siginfo_timer(buf: Any, off: int, signo: int, timerid: int, overrun: int, value: int) -> None:
    """A POSIX timer expiry (SI_TIMER)."""
    _TIMER(buf, off, signo, 0, SI_TIMER, timerid, overrun, value)


def siginfo_chld(
    buf: Any, off: int, code: int, pid: int, uid: int, status: int, utime: int, stime: int
) -> None:
    """SIGCHLD for a child that exited/was killed/stopped/continued (CLD_*)."""
    _CHLD(buf, off, SIGCHLD, 0, code, pid, uid, status, utime, stime)


def siginfo_fault(buf: Any, off: int, signo: int, code: int, addr: int) -> None:
    """A synchronous fault: SIGSEGV (SEGV_MAPERR/ACCERR), SIGBUS, SIGILL, SIGFPE, SIGTRAP."""
    _FAULT(buf, off, signo, 0, code, addr, 0)


def siginfo_sys(buf: Any, off: int, call_addr: int, syscall: int, arch: int) -> None:
    """SIGSYS from a seccomp filter (SYS_SECCOMP)."""
    _SYS(buf, off, SIGSYS, 0, SYS_SECCOMP, call_addr, syscall, arch)


# linux/signalfd.h: what read(2) on a signalfd returns, one per signal.
SIGNALFD_SIGINFO = Layout("""
    struct signalfd_siginfo
    I ssi_signo
    i ssi_errno
    i ssi_code
    I ssi_pid
    I ssi_uid
    i ssi_fd
    I ssi_tid
    I ssi_band
    I ssi_overrun
    I ssi_trapno
    i ssi_status
    i ssi_int
    Q ssi_ptr
    Q ssi_utime
    Q ssi_stime
    Q ssi_addr
    H ssi_addr_lsb
    2x __pad2
    i ssi_syscall
    Q ssi_call_addr
    I ssi_arch
    28x __pad
""")

# asm/signal.h: rt_sigaction's struct as the kernel sees it (glibc's differs:
# mask before flags and 128 bytes of it). sa_restorer is mandatory on x86-64:
# without SA_RESTORER the kernel kills the task instead of delivering.
K_SIGACTION = Layout("""
    struct sigaction
    Q sa_handler
    Q sa_flags
    Q sa_restorer
    Q sa_mask
""")

# sigaltstack(2) and uc_stack.
STACK_T = Layout("""
    stack_t
    Q ss_sp
    i ss_flags
    4x
    Q ss_size
""")
