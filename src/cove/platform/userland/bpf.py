"""The seccomp filter every guest thread installs on itself before its first
guest instruction.

Policy: nothing runs natively. Each syscall stops in the supervisor, one of
two ways:
- SECCOMP_RET_TRACE (a ptrace stop with every register) for the calls whose
  handling needs or changes more than the arguments and rax: signal return,
  process and thread creation, exec, arch_prctl, sigaltstack, sigsuspend and
  pause (a handler frame follows at once), and every syscall made through a
  foreign ABI (int 0x80, the 32-bit entry), which the platform reports as #GP;
- SECCOMP_RET_USER_NOTIF for the rest: the arguments arrive in the
  notification and the result goes back in the reply, with no ptrace at all.

``ALLOW`` is the list of syscalls that run natively in the host kernel: empty.
Anything added there must be unable to reach a host resource the guest was
not given (see the README's userland section). The only calls that run in
the host kernel are read, write, readv and writev that the supervisor,
having seen their notification, lets continue on a host pipe, /dev/null or
/dev/zero it installed (fastpath.py): a decision per call, never a filter rule.
"""

from __future__ import annotations

import struct

from cove.abi.sysnums import NR
from cove.platform.userland._sys import (
    AUDIT_ARCH_X86_64,
    SECCOMP_RET_ALLOW,
    SECCOMP_RET_TRACE,
    SECCOMP_RET_USER_NOTIF,
)

TRACE_FOREIGN = 1  # SECCOMP_RET_DATA of the trace stop for a foreign-ABI syscall

TRACED = (
    "rt_sigreturn", "clone", "clone3", "fork", "vfork", "execve", "execveat",
    "arch_prctl", "sigaltstack", "rt_sigsuspend", "pause",
)  # fmt: skip
ALLOW: tuple[str, ...] = ()

_LD_W_ABS, _JEQ_K, _RET_K = 0x20, 0x15, 0x06
_OFF_NR, _OFF_ARCH = 0, 4


def _insn(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("<HBBI", code, jt, jf, k)


def guest_filter(traced: tuple[str, ...] = TRACED, allow: tuple[str, ...] = ALLOW) -> bytes:
    """The BPF program (struct sock_filter array) as bytes."""
    prog = [
        _insn(_LD_W_ABS, _OFF_ARCH),
        _insn(_JEQ_K, AUDIT_ARCH_X86_64, 1, 0),
        _insn(_RET_K, SECCOMP_RET_TRACE | TRACE_FOREIGN),
        _insn(_LD_W_ABS, _OFF_NR),
    ]
    for names, action in ((traced, SECCOMP_RET_TRACE), (allow, SECCOMP_RET_ALLOW)):
        for name in names:
            prog.append(_insn(_JEQ_K, int(NR[name]), 0, 1))
            prog.append(_insn(_RET_K, action))
    prog.append(_insn(_RET_K, SECCOMP_RET_USER_NOTIF))
    return b"".join(prog)
