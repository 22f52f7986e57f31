"""C struct layouts of the Linux x86-64 ABI, as `cove.abi.layout.Layout`s.

One module per concern; everything is re-exported here, loaded on first use:
``from cove.abi.structs import STAT, TIMESPEC, rt_sigframe``. cove's own code
imports from the parts, so that the kernel's core (signal frames, siginfo)
does not load the layouts of every syscall family (~1.5 ms of every start).
Each layout's offsets and sizes are checked against the C headers by
tests/abi/test_abi_layouts.py.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from cove.abi.structs.clock import (
        ITIMERSPEC,
        ITIMERVAL,
        TIMESPEC,
        TIMEVAL,
        TIMEZONE,
        TMS,
        USER_HZ,
    )
    from cove.abi.structs.events import EPOLL_EVENT, INOTIFY_EVENT, POLLFD
    from cove.abi.structs.fs import (
        DIRENT64,
        FLOCK,
        IOVEC,
        OPEN_HOW,
        STAT,
        STATFS,
        STATX,
        UIO_MAXIOV,
        dirent64_reclen,
        pack_dirent64,
    )
    from cove.abi.structs.net import (
        CMSGHDR,
        MMSGHDR,
        MSGHDR,
        SOCKADDR_IN,
        SOCKADDR_IN6,
        SOCKADDR_UN,
        UCRED,
        UNIX_PATH_MAX,
        cmsg_align,
        cmsg_len,
        cmsg_space,
    )
    from cove.abi.structs.process import (
        CLONE_ARGS,
        RLIMIT,
        ROBUST_LIST_HEAD,
        RSEQ,
        RSEQ_CS,
        RSEQ_ORIG_SIZE,
        RUSAGE,
        SCHED_PARAM,
        SI_LOAD_SHIFT,
        SYSINFO,
        UTSNAME,
    )
    from cove.abi.structs.sigframe import (
        FPSTATE,
        FXSAVE_SIZE,
        MCONTEXT_GREGS,
        RED_ZONE,
        RT_SIGFRAME_INFO,
        RT_SIGFRAME_SIZE,
        RT_SIGFRAME_UC,
        UCONTEXT,
        USER_CS,
        USER_DS,
        XSTATE_HEADER,
        XSTATE_MIN_SIZE,
        SigFrame,
        restorable_xstate_size,
        rt_sigframe,
        stamp_fpstate,
    )
    from cove.abi.structs.siginfo import (
        K_SIGACTION,
        SIGINFO_CHLD,
        SIGINFO_FAULT,
        SIGINFO_KILL,
        SIGINFO_POLL,
        SIGINFO_RT,
        SIGINFO_SIZE,
        SIGINFO_SYS,
        SIGINFO_TIMER,
        SIGNALFD_SIGINFO,
        STACK_T,
        siginfo_chld,
        siginfo_fault,
        siginfo_kill,
        siginfo_rt,
        siginfo_sys,
        siginfo_timer,
    )
    from cove.abi.structs.tty import TERMIOS, TERMIOS2, WINSIZE

__all__ = [
    "CLONE_ARGS", "CMSGHDR", "DIRENT64", "EPOLL_EVENT", "FLOCK", "FPSTATE", "FXSAVE_SIZE",
    "INOTIFY_EVENT", "IOVEC", "ITIMERSPEC", "ITIMERVAL", "K_SIGACTION", "MCONTEXT_GREGS",
    "MMSGHDR", "MSGHDR", "OPEN_HOW", "POLLFD", "RED_ZONE", "RLIMIT", "ROBUST_LIST_HEAD", "RSEQ",
    "RSEQ_CS", "RSEQ_ORIG_SIZE", "RT_SIGFRAME_INFO", "RT_SIGFRAME_SIZE", "RT_SIGFRAME_UC",
    "RUSAGE", "SCHED_PARAM", "SIGINFO_CHLD", "SIGINFO_FAULT", "SIGINFO_KILL", "SIGINFO_POLL",
    "SIGINFO_RT", "SIGINFO_SIZE", "SIGINFO_SYS", "SIGINFO_TIMER", "SIGNALFD_SIGINFO",
    "SI_LOAD_SHIFT", "SOCKADDR_IN", "SOCKADDR_IN6", "SOCKADDR_UN", "STACK_T", "STAT", "STATFS",
    "STATX", "SYSINFO", "TERMIOS", "TERMIOS2", "TIMESPEC", "TIMEVAL", "TIMEZONE", "TMS", "UCONTEXT",
    "UCRED", "UIO_MAXIOV", "UNIX_PATH_MAX", "USER_CS", "USER_DS", "USER_HZ", "UTSNAME",
    "WINSIZE", "XSTATE_HEADER", "XSTATE_MIN_SIZE", "SigFrame", "cmsg_align", "cmsg_len",
    "cmsg_space", "dirent64_reclen", "pack_dirent64", "restorable_xstate_size", "rt_sigframe",
    "siginfo_chld", "siginfo_fault", "siginfo_kill", "siginfo_rt", "siginfo_sys",
    "siginfo_timer", "stamp_fpstate",
]  # fmt: skip

_PARTS = ("clock", "events", "fs", "net", "process", "sigframe", "siginfo", "tty")


def __getattr__(name: str) -> object:
    # A re-export's first use imports the parts until one defines it (then it is cached).
    if name in __all__:
        for part in _PARTS:
            module = __import__(f"{__name__}.{part}", fromlist=["_"])
            if name in vars(module):
                value = globals()[name] = vars(module)[name]
                return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
