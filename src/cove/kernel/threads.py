"""Thread lifecycle hooks shared by exit, exit_group and execve."""

from __future__ import annotations

import struct

from cove.abi.errno import Errno

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from cove.kernel.task import Task

_U32 = struct.Struct("<I")


def on_thread_exit(t: Task) -> None:
    """Robust futexes, CLONE_CHILD_CLEARTID (write 0, wake one futex waiter)
    and the fd table."""
    if t.robust_list[0] and t.proc.mm.vmas:
        from cove.kernel import futex

        futex.exit_robust_list(t)
    if t.clear_child_tid and t.proc.mm.vmas:
        addr = t.clear_child_tid
        t.clear_child_tid = 0
        try:
            t.mm.write(addr, _U32.pack(0))
        except Errno:
            pass
        else:
            from cove.kernel import futex

            futex.wake(t, addr, 1)
    files = t.files
    files.users -= 1
    if files.users <= 0:
        files.close_all()
