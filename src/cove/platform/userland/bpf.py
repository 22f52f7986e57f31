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
not given (see the README's userland section). The calls that run in the
host kernel are read, write, readv and writev that the supervisor, having
seen their notification, lets continue on a host pipe, /dev/null or
/dev/zero it installed (fastpath.py), and, on a thread made for them, the
``rules`` of a pipe in native mode (cove.kernel.hostpipe): one read or write
with exactly one fd and one buffer and at most so many bytes, each rule put
there by the supervisor after checking that fd and those pages, and dropped
(the context moves to another thread) before either can change.
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

_LD_W_ABS, _JEQ_K, _JGT_K, _RET_K = 0x20, 0x15, 0x25, 0x06
_OFF_NR, _OFF_ARCH, _OFF_ARGS = 0, 4, 16
RULE_INSNS = 15  # instructions per rule (guest_filter)

# (syscall number, fd, buffer address, most bytes): one read or write that
# runs in the host kernel without a stop.
Rule = tuple[int, int, int, int]


def _insn(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("<HBBI", code, jt, jf, k)


def allows(rule: Rule, nr: int, fd: int, buf: int, count: int) -> bool:
    """Whether ``rule`` lets this call run natively (what ``_rule`` tests)."""
    return rule[0] == nr and rule[1] == fd and rule[2] == buf and count <= rule[3]


def _arg(i: int, high: bool = False) -> bytes:
    return _insn(_LD_W_ABS, _OFF_ARGS + 8 * i + (4 if high else 0))


def _rule(nr: int, fd: int, buf: int, most: int) -> list[bytes]:
    """ALLOW when nr, the fd (all 64 bits), the buffer (all 64) and a count
    of at most ``most`` (all 64) match; else on to the next rule. Expects
    the syscall number loaded and leaves it loaded when it does not match."""
    skip = RULE_INSNS - 1  # from the first test to the reload at the end
    body = [
        _insn(_JEQ_K, nr, 0, skip - 1),
        _arg(0), _insn(_JEQ_K, fd & 0xFFFFFFFF, 0, skip - 3),
        _arg(0, True), _insn(_JEQ_K, fd >> 32, 0, skip - 5),
        _arg(1), _insn(_JEQ_K, buf & 0xFFFFFFFF, 0, skip - 7),
        _arg(1, True), _insn(_JEQ_K, buf >> 32, 0, skip - 9),
        _arg(2, True), _insn(_JEQ_K, 0, 0, skip - 11),
        _arg(2), _insn(_JGT_K, most, skip - 13, 0),
        _insn(_RET_K, SECCOMP_RET_ALLOW),
        _insn(_LD_W_ABS, _OFF_NR),
    ]
    assert len(body) == RULE_INSNS
    return body


def guest_filter(traced: tuple[str, ...] = TRACED, allow: tuple[str, ...] = ALLOW,
                 rules: tuple[Rule, ...] = ()) -> bytes:
    """The BPF program (struct sock_filter array) as bytes."""
    prog = [
        _insn(_LD_W_ABS, _OFF_ARCH),
        _insn(_JEQ_K, AUDIT_ARCH_X86_64, 1, 0),
        _insn(_RET_K, SECCOMP_RET_TRACE | TRACE_FOREIGN),
        _insn(_LD_W_ABS, _OFF_NR),
    ]
    for nr, fd, buf, most in rules:
        if nr not in (NR["read"], NR["write"]) or not 0 <= most < 1 << 32:
            raise ValueError(f"not a native rule: {(nr, fd, buf, most)}")
        prog += _rule(nr, fd, buf, most)
    for names, action in ((traced, SECCOMP_RET_TRACE), (allow, SECCOMP_RET_ALLOW)):
        for name in names:
            prog.append(_insn(_JEQ_K, int(NR[name]), 0, 1))
            prog.append(_insn(_RET_K, action))
    prog.append(_insn(_RET_K, SECCOMP_RET_USER_NOTIF))
    return b"".join(prog)
