"""Everything cove.abi defines that has a C counterpart, and how to find it in C."""

from __future__ import annotations

from types import ModuleType

from cove.abi import flags
from cove.abi.layout import Layout
from cove.abi.structs import clock, events, fs, net, process, sigframe, siginfo, tty

STRUCT_MODULES: list[ModuleType] = [clock, events, fs, net, process, sigframe, siginfo, tty]

# Python name -> C name (looked up in both header sets), or (program, C expression).
CNAMES: dict[str, str | tuple[str, str]] = {
    "O_SYNC_BIT": "__O_SYNC",
    "O_TMPFILE_BIT": "__O_TMPFILE",
    "WNOTHREAD": "__WNOTHREAD",
    "WALL": "__WALL",
    "WCLONE": "__WCLONE",
    "KERNEL_SIGSET_SIZE": ("kernel", "sizeof(sigset_t)"),
    # glibc's own view of the real-time range (run-time values in glibc).
    "SIGRTMIN_GLIBC": ("glibc", "SIGRTMIN"),
    "SIGRTMAX": ("glibc", "SIGRTMAX"),
    "USER_HZ": ("glibc", "sysconf(_SC_CLK_TCK)"),
    "SIGINFO_SIZE": ("kernel", "sizeof(siginfo_t)"),
    "FXSAVE_SIZE": ("kernel", "sizeof(struct _fpstate_64)"),
    "XSTATE_MIN_SIZE": ("kernel", "sizeof(struct _fpstate_64) + sizeof(struct _header)"),
    "RT_SIGFRAME_UC": ("kernel", "offsetof(struct cove_rt_sigframe, uc)"),
    "RT_SIGFRAME_INFO": ("kernel", "offsetof(struct cove_rt_sigframe, info)"),
    "RT_SIGFRAME_SIZE": ("kernel", "sizeof(struct cove_rt_sigframe)"),
    "RSEQ_ORIG_SIZE": ("kernel", "sizeof(struct rseq)"),
}

# Not in this host's headers; each is checked on the running kernel instead,
# by the test named here.
RUNTIME_CHECKED: dict[str, str] = {
    "RED_ZONE": "test_abi_sigframe",
    "FPSTATE_ALIGN": "test_abi_sigframe",
    "USER_CS": "test_abi_sigframe",
    "USER_DS": "test_abi_sigframe",
    "MFD_NOEXEC_SEAL": "test_abi_constants::test_memfd_exec_flags",
    "MFD_EXEC": "test_abi_constants::test_memfd_exec_flags",
    "F_SEAL_EXEC": "test_abi_constants::test_memfd_exec_flags",
    "TASK_COMM_LEN": "test_abi_constants::test_task_comm_len",
    # Kernel-internal limits and newer socket options (not in this host's uapi).
    "SCM_MAX_FD": "test_abi_constants::test_socket_limits",
    "SOCK_TYPE_MASK": "test_abi_constants::test_socket_limits",
    "UNIX_MAX_DGRAM_QLEN": "test_abi_constants::test_socket_limits",
    "SO_PASSPIDFD": "test_abi_constants::test_socket_limits",
    "SO_PEERPIDFD": "test_abi_constants::test_socket_limits",
}

# Layouts whose C type only glibc's headers declare.
GLIBC_LAYOUTS = {"DIRENT64", "SCHED_PARAM", "MSGHDR", "MMSGHDR", "CMSGHDR", "UCRED"}

# Layouts of a fixed header before a variable-length name: their size is
# where the name starts.
HEADER_SIZES = {"DIRENT64": "offsetof(struct dirent64, d_name)"}

# Members that are unions in C (no signedness to compare).
NON_SCALAR = {("SIGINFO_RT", "si_value"), ("SIGINFO_TIMER", "_sifields._timer._sigval")}

# Deliberate signedness differences: the bytes are the same, and the Python
# side must accept what the North has (negative times before 1970).
SIGN_EXCEPTIONS = {("STAT", "st_atime"), ("STAT", "st_mtime"), ("STAT", "st_ctime")}


def python_constants() -> dict[str, int]:
    """Every public upper-case int in flags and the struct modules, plus AUXV."""
    out: dict[str, int] = {}
    for mod in [flags, *STRUCT_MODULES]:
        for name, value in vars(mod).items():
            if name.isupper() and not name.startswith("_") and type(value) is int:
                if name in out and out[name] != value:
                    raise AssertionError(f"{name} differs between modules")
                out[name] = value
    for tag in flags.AUXV:
        out[f"AUXV.{tag.name}"] = tag.value
    return out


def c_expr(key: str, program: str) -> str | None:
    """The C expression for ``key`` in ``program`` ("kernel" or "glibc"), if any."""
    mapped = CNAMES.get(key)
    if isinstance(mapped, tuple):
        return mapped[1] if mapped[0] == program else None
    if mapped is not None:
        return mapped
    return key.removeprefix("AUXV.")


def layouts() -> dict[str, Layout]:
    out: dict[str, Layout] = {}
    for mod in STRUCT_MODULES:
        for name, value in vars(mod).items():
            if isinstance(value, Layout):
                out[name] = value
    return out


def layout_program(name: str) -> str:
    return "glibc" if name in GLIBC_LAYOUTS else "kernel"


def size_for_c(name: str, layout: Layout) -> str:
    return HEADER_SIZES.get(name, f"sizeof({layout.ctype})")


def members_for_c(name: str, layout: Layout) -> list[tuple[str, bool]]:
    return [
        (m.cpath, m.code[-1] not in "sx" and (name, m.cpath) not in NON_SCALAR)
        for m in layout.members
        if m.cpath is not None
    ]
