"""prctl(2) and arch_prctl(2).

prctl offers the options programs commonly rely on (names, parent-death
signal, dumpable, no_new_privs, child subreaper, capability bounding set
reads); every other option is EINVAL, as on a kernel built without it.
arch_prctl sets and reads the FS/GS bases (TLS); CPUID faulting is not
offered.
"""

from __future__ import annotations

from cove.abi import flags as F
from cove.abi.errno import E, Errno
from cove.kernel.syscall import INT, ULONG, syscall
from cove.kernel.syscalls.creds import CAP_LAST_CAP
from cove.kernel.syscalls.proc_lookup import put_s32, put_u64

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from cove.kernel.task import Task

NSIG = 64
TASK_SIZE_MAX = (1 << 47) - 4096  # the highest canonical user address, exclusive
COMM_LEN = F.TASK_COMM_LEN


def _read_name(t: Task, addr: int) -> bytes:
    """Up to 15 bytes of a C string (strncpy_from_user of TASK_COMM_LEN - 1)."""
    try:
        return t.mm.read_cstring(addr, COMM_LEN - 1)
    except Errno as e:
        if e.errno != E.ENAMETOOLONG:
            raise
        # No NUL within 15 bytes: those 15 were readable, and are the name.
        return t.mm.read(addr, COMM_LEN - 1)


def set_comm(t: Task, name: str) -> None:
    """A thread's name; the leader's is the process's (/proc/<pid>/comm)."""
    t.comm = name
    if t.tid == t.proc.pid:
        t.proc.comm = name


@syscall("prctl", INT, ULONG, ULONG, ULONG, ULONG, support="partial",
         note="names, pdeathsig, dumpable, no_new_privs, subreaper, capbset read")
def prctl(t: Task, option: int, arg2: int, arg3: int, arg4: int, arg5: int) -> int:
    p = t.proc
    if option == F.PR_SET_NAME:
        set_comm(t, _read_name(t, arg2).decode("utf-8", "surrogateescape"))
        return 0
    if option == F.PR_GET_NAME:
        raw = t.comm.encode("utf-8", "surrogateescape")[:COMM_LEN - 1]
        t.mm.write(arg2, raw.ljust(COMM_LEN, b"\0"))
        return 0
    if option == F.PR_SET_PDEATHSIG:
        if arg2 > NSIG:
            raise Errno(E.EINVAL)
        p.pdeathsig = arg2
        return 0
    if option == F.PR_GET_PDEATHSIG:
        put_s32(t, arg2, p.pdeathsig)
        return 0
    if option == F.PR_GET_DUMPABLE:
        return p.dumpable
    if option == F.PR_SET_DUMPABLE:
        if arg2 not in (0, 1):
            raise Errno(E.EINVAL)
        p.dumpable = arg2
        return 0
    if option == F.PR_SET_NO_NEW_PRIVS:
        if arg2 != 1 or arg3 or arg4 or arg5:
            raise Errno(E.EINVAL)
        p.no_new_privs = True  # one way: it can never be cleared
        return 0
    if option == F.PR_GET_NO_NEW_PRIVS:
        if arg2 or arg3 or arg4 or arg5:
            raise Errno(E.EINVAL)
        return int(p.no_new_privs)
    if option == F.PR_SET_CHILD_SUBREAPER:
        p.child_subreaper = bool(arg2)
        return 0
    if option == F.PR_GET_CHILD_SUBREAPER:
        put_s32(t, arg2, int(p.child_subreaper))
        return 0
    if option == F.PR_CAPBSET_READ:
        if arg2 > CAP_LAST_CAP:
            raise Errno(E.EINVAL)
        return 1  # the bounding set is never reduced in cove
    raise Errno(E.EINVAL)


@syscall("arch_prctl", INT, ULONG)
def arch_prctl(t: Task, code: int, addr: int) -> int:
    ctx = t.ctx
    if code in (F.ARCH_SET_FS, F.ARCH_SET_GS):
        if addr >= TASK_SIZE_MAX:
            raise Errno(E.EPERM)
        if code == F.ARCH_SET_FS:
            ctx.fs_base = addr
        else:
            ctx.gs_base = addr
        return 0
    if code in (F.ARCH_GET_FS, F.ARCH_GET_GS):
        sync = getattr(ctx, "sync", None)
        if sync is not None:
            sync()  # the guest may have changed its base with wrfsbase
        put_u64(t, addr, ctx.fs_base if code == F.ARCH_GET_FS else ctx.gs_base)
        return 0
    if code == F.ARCH_GET_CPUID:
        return 1  # cpuid does not fault
    if code == F.ARCH_SET_CPUID:
        raise Errno(E.ENODEV)  # CPUID faulting is not offered
    raise Errno(E.EINVAL)
