"""execve and execveat: Linux's fs/exec.c around the ELF loader.

Two phases, as in Linux. ``prepare`` does everything that can fail: open the
file (``loader.open_exec``: ENOENT, EACCES, noexec mounts), copy argv and
envp out of guest memory (EFAULT, E2BIG), follow ``#!`` lines (at most
``MAX_SCRIPT_DEPTH`` scripts in a chain, then ELOOP, as the host kernel
measured here), and load the final ELF into a fresh MemoryMap on a new
address space. Any error there discards the new map and leaves the caller
exactly as it was. ``commit`` is the point of no return: the other threads
die, the exec'ing thread takes the process's pid, the old memory map goes
(or goes back to a vfork parent), O_CLOEXEC fds close, handled signals
revert to SIG_DFL, and the thread restarts at the new entry point.

Set-user-ID and set-group-ID bits are ignored: the sandbox has no set-id
execution (every exec runs with the caller's credentials, AT_SECURE is 0).
"""

from __future__ import annotations

import ctypes
import os
import struct

from cove.abi import flags as F
from cove.abi.errno import E, Errno
from cove.dataclass import dataclass
from cove.fs import perm
from cove.fs.file import O_RDONLY, InodeFile
from cove.fs.mount import MS_NOEXEC, Location
from cove.fs.node import S_IFLNK, S_IFMT, S_IFREG
from cove.fs.perm import MAY_EXEC
from cove.kernel import altstack, initstack, loader, process, threads
from cove.kernel.mm import MemoryMap
from cove.kernel.shebang import BINPRM_BUF_SIZE, parse_shebang
from cove.kernel.task import State

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from cove.kernel.loader import ExecFile, LoadedImage
    from cove.kernel.task import Task

# Linux runs a file through at most 6 binary handlers (exec_binprm's
# "depth > 5"): a chain of 5 #! scripts ending in an ELF runs, 6 is ELOOP.
MAX_SCRIPT_DEPTH = 5
SIG_DFL, SIG_IGN = 0, 1
_PAGE = 4096
_U32 = struct.Struct("<I")


@dataclass(slots=True)
class Prepared:
    """A loaded program waiting for ``commit``."""

    mm: MemoryMap
    image: LoadedImage


# --- phase 1: everything that may fail ---------------------------------------------------
def prepare(t: Task, dirfd: int, path: str, argv_addr: int, envp_addr: int,
            flags: int) -> Prepared:
    """Open, copy arguments, follow scripts and load; raises Errno (the caller
    is untouched) or returns the new map and image."""
    if flags & ~(F.AT_EMPTY_PATH | F.AT_SYMLINK_NOFOLLOW):
        raise Errno(E.EINVAL)
    exe, filename, inaccessible = _open_first(t, dirfd, path, flags)
    from cove.kernel.syscalls.limits import rlimit

    stack_limit = rlimit(t.proc, F.RLIMIT_STACK)[0]
    argv = read_strings(t, argv_addr, stack_limit)
    envp = read_strings(t, envp_addr, stack_limit)
    if not argv:
        argv = [b""]  # Linux (5.18+) gives a program started with argc 0 an empty argv[0]
    fn = os.fsencode(filename)
    initstack.check_args(argv, envp, fn, stack_limit)

    depth = 0
    interp_name = filename  # bprm->interp: what a #! line puts before the arguments
    while exe.head[:2] == b"#!":
        depth += 1
        if depth > MAX_SCRIPT_DEPTH:
            raise Errno(E.ELOOP)
        if inaccessible:
            # fexecve of a close-on-exec fd: the interpreter could not open the script.
            raise Errno(E.ENOENT)
        parsed = parse_shebang(exe.head)
        assert parsed is not None
        interp, arg = parsed
        argv = [os.fsencode(interp), *([os.fsencode(arg)] if arg is not None else []),
                os.fsencode(interp_name), *argv[1:]]
        initstack.check_args(argv, envp, fn, stack_limit)
        interp_name = interp
        exe = loader.open_exec(t.kernel.vfs, t.fs, interp)

    k = t.kernel
    space = k.platform.create_address_space()
    mm = MemoryMap(k.phys, space)
    try:
        image = loader.load_elf(mm, k.vfs, t.fs, exe, argv, envp, execfn=filename,
                                creds=t.proc.creds, stack_rlimit=stack_limit)
    except BaseException:
        process.free_mm(mm)
        raise
    return Prepared(mm, image)


def _open_first(t: Task, dirfd: int, path: str, flags: int) -> tuple[ExecFile, str, bool]:
    """The file execveat names: (opened file, bprm->filename, whether the
    name is unreachable for an interpreter: fexecve of a close-on-exec fd)."""
    from cove.kernel.syscalls.fs_at import start_dir

    vfs = t.kernel.vfs
    if not path:
        if not flags & F.AT_EMPTY_PATH:
            raise Errno(E.ENOENT)
        return _open_fd(t, dirfd)
    at = start_dir(t, dirfd, path)
    if flags & F.AT_SYMLINK_NOFOLLOW:
        loc = vfs.resolve(t.fs, at, path, follow=False)
        if loc.inode.ftype == S_IFLNK:
            raise Errno(E.ELOOP)
    exe = loader.open_exec(vfs, t.fs, path, at=at)
    if at is None:
        return exe, path, False
    return exe, f"/dev/fd/{dirfd}/{path}", dirfd in t.files.cloexec


def _open_fd(t: Task, fd: int) -> tuple[ExecFile, str, bool]:
    """fexecve: the file an fd refers to (O_PATH fds included)."""
    if fd == F.AT_FDCWD:
        raise Errno(E.EACCES)  # the cwd is a directory
    f = t.files.get(fd)
    loc: Location | None = f.location
    if loc is None:
        raise Errno(E.EACCES)  # a pipe or socket
    st = loc.inode.stat()
    if st.mode & S_IFMT != S_IFREG or loc.mount.flags & MS_NOEXEC:
        raise Errno(E.EACCES)
    perm.check(st, t.fs.cred, MAY_EXEC)
    ef = InodeFile(loc, O_RDONLY)
    name = f"/dev/fd/{fd}"
    real = getattr(f, "path", None) or name
    return (loader.ExecFile(ef, loc, name, real, ef.pread(BINPRM_BUF_SIZE, 0)), name,
            fd in t.files.cloexec)


def read_strings(t: Task, addr: int, stack_limit: int) -> list[bytes]:
    """A NULL-terminated array of C strings from guest memory (argv, envp).

    NULL is an empty array. EFAULT for a bad array or string pointer, E2BIG
    for a string longer than MAX_ARG_STRLEN, or as soon as the pointers or
    the bytes so far exceed what execve could ever accept (so a hostile
    guest cannot make cove copy more than a few MiB).
    """
    if addr == 0:
        return []
    limit = max(min(initstack.STK_LIM // 4 * 3, stack_limit // 4), initstack.ARG_MAX)
    ptrs: list[int] = []
    pos = addr
    while True:
        # Whole aligned chunks up to the page end (a misaligned array goes 8
        # bytes at a time), so nothing past the terminator is ever touched.
        n = 8 if pos & 7 else min(_PAGE - (pos & (_PAGE - 1)), 512)
        for (p,) in struct.iter_unpack("<Q", t.mm.read(pos, n)):
            if p == 0:
                break
            ptrs.append(p)
        else:
            pos += n
            if len(ptrs) * 8 >= limit:
                raise Errno(E.E2BIG)
            continue
        break
    out: list[bytes] = []
    total = 0
    for p in ptrs:
        try:
            s = t.mm.read_cstring(p, initstack.MAX_ARG_STRLEN - 1)
        except Errno as e:
            raise Errno(E.E2BIG if e.errno == E.ENAMETOOLONG else e.errno) from None
        total += len(s) + 1
        if total > limit:
            raise Errno(E.E2BIG)
        out.append(s)
    return out


# --- phase 2: the point of no return ------------------------------------------------------
def commit(t: Task, prepared: Prepared) -> None:
    """Replace the calling process's program with the prepared one."""
    k = t.kernel
    proc = t.proc
    image = prepared.image

    # de_thread: every other thread of the group dies; the survivor takes the pid.
    for th in list(proc.threads):
        if th is t:
            continue
        threads.on_thread_exit(th)
        th.state = State.DEAD
        k.sched.remove(th)
        k.tasks.pop(th.tid, None)
        proc.threads.remove(th)
    if t.tid != proc.pid:
        k.tasks.pop(t.tid, None)
        t.tid = proc.pid
        k.tasks[proc.pid] = t

    # An fd table still shared with another process becomes our own.
    if t.files.users > 1:
        old_files = t.files
        t.files = old_files.fork()
        old_files.users -= 1
    t.files.exec_close()

    # The memory map: exec_mm_release's clear_child_tid, then the switch.
    old_mm = proc.mm
    if t.clear_child_tid and process.mm_shared(old_mm):
        try:
            old_mm.write(t.clear_child_tid, _U32.pack(0))
        except Errno:
            pass
        else:
            from cove.kernel import futex

            futex.wake(t, t.clear_child_tid, 1)
    t.clear_child_tid = 0
    t.robust_list = (0, 0)
    proc.mm = prepared.mm
    process.drop_mm(proc, old_mm)

    # Signals: handlers are gone with the old program; ignored stays ignored.
    proc.sighand = proc.sighand.copy()  # a table shared with another process is unshared
    for act in proc.sighand.actions:
        if act.handler != SIG_IGN:
            act.handler = SIG_DFL
        act.flags = act.restorer = act.mask = 0
    t.altstack = altstack.DISABLED
    t.saved_sigmask = None
    t.restart_nr = None

    # Registers: all zero but rip, rsp and rflags; default FPU state; no TLS.
    # (The context object stays: the run loop holds on to it.)
    fresh = k.platform.create_context()
    ctypes.memmove(ctypes.addressof(t.ctx.regs), ctypes.addressof(fresh.regs),
                   ctypes.sizeof(t.ctx.regs))
    regs = t.ctx.regs
    regs.rip = image.entry
    regs.rsp = image.stack_pointer
    regs.rflags = 0x202
    t.ctx.fs_base = 0
    t.ctx.gs_base = 0
    t.ctx.set_fpu(fresh.get_fpu())

    proc.image = image
    proc.exe = image.exe_path
    proc.comm = t.comm = image.comm
    process.mark_execed(proc)
    for hook in process.EXEC_HOOKS:
        hook(t)


def execve(t: Task, dirfd: int, path: str, argv_addr: int, envp_addr: int, flags: int) -> None:
    """The whole of execveat; returns only on success (the caller then returns
    NORETURN) and raises Errno with the caller untouched otherwise."""
    commit(t, prepare(t, dirfd, path, argv_addr, envp_addr, flags))
