"""The alternate signal stack (sigaltstack): Linux's do_sigaltstack and the
on-stack tests signal delivery and rt_sigreturn share.

``Task.altstack`` is ``(ss_sp, ss_flags, ss_size)`` exactly as registered
(flags as stored: SS_DISABLE, 0 or SS_ONSTACK, plus SS_AUTODISARM); a disabled
stack has size 0, which is what "enabled" is tested by.
"""

from __future__ import annotations

from cove.abi import flags as F
from cove.abi.errno import E, Errno

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from cove.kernel.task import Task

DISABLED = (0, F.SS_DISABLE, 0)  # sas_ss_reset: new threads, SS_AUTODISARM after use
_MODES = (0, F.SS_ONSTACK, F.SS_DISABLE)


def exec_reset(t: Task) -> None:
    """execve forgets the stack but keeps the stored flags (Linux's
    begin_new_exec clears only sas_ss_sp and sas_ss_size)."""
    t.altstack = (0, t.altstack[1], 0)


def within(t: Task, sp: int) -> bool:
    """``__on_sig_stack``: sp inside the registered stack (growing down)."""
    base, _, size = t.altstack
    return sp > base and sp - base <= size


def on_sig_stack(t: Task, sp: int) -> bool:
    """``on_sig_stack``: an SS_AUTODISARM stack never counts as in use."""
    return not t.altstack[1] & F.SS_AUTODISARM and within(t, sp)


def reported_flags(t: Task, sp: int) -> int:
    """ss_flags as sigaltstack(2) reports them for a thread at ``sp``."""
    _, flags, size = t.altstack
    state = F.SS_DISABLE if not size else (F.SS_ONSTACK if on_sig_stack(t, sp) else 0)
    return state | (flags & F.SS_AUTODISARM)


def change(t: Task, ss_sp: int, ss_flags: int, ss_size: int, sp: int) -> None:
    """Register a new alternate stack for a thread whose stack pointer is ``sp``
    (EPERM while running on the current one, EINVAL bad flags, ENOMEM too small)."""
    if on_sig_stack(t, sp):
        raise Errno(E.EPERM)
    ss_flags &= 0xFFFFFFFF
    if ss_flags & ~F.SS_AUTODISARM not in _MODES:
        raise Errno(E.EINVAL)
    if t.altstack == (ss_sp, ss_flags, ss_size):
        return
    if ss_flags & ~F.SS_AUTODISARM == F.SS_DISABLE:
        ss_sp = ss_size = 0
    elif ss_size < F.MINSIGSTKSZ:
        raise Errno(E.ENOMEM)
    t.altstack = (ss_sp, ss_flags, ss_size)
