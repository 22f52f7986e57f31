"""execve/execveat on a harness kernel: a real static ELF (built with gcc)
loaded from a memfs, scripts, the point of no return and every error before it."""

from __future__ import annotations

import struct

import pytest

from cove.abi import flags as F
from cove.abi.errno import E
from cove.abi.structs import K_SIGACTION
from cove.fs.file import O_CREAT, O_WRONLY, File
from cove.fs.memfs import MemFS
from cove.fs.mount import MS_NOEXEC
from cove.kernel import process, signals
from cove.kernel.exec import MAX_SCRIPT_DEPTH
from cove.kernel.initstack import MAX_ARG_STRLEN
from cove.kernel.pagecache import cache_for
from cove.kernel.task import State

from .harness import SCRATCH, call, make_kernel, put
from .proc_helpers import exit_group, fork, resume
from .sysutil import BAD, s32, thread

pytestmark = pytest.mark.timeout(60)
ARGV = SCRATCH + 0x8000
ENVP = SCRATCH + 0x9000
STR = SCRATCH + 0xA000


@pytest.fixture(scope="module")
def elf(build_guest) -> bytes:
    return build_guest("exit_code").read_bytes()


def write_file(t, path, data, mode=0o755):
    v = t.kernel.vfs
    f = v.open(v.context(), None, path, O_CREAT | O_WRONLY, mode)
    f.pwrite(data, 0)


@pytest.fixture
def kt(elf):
    k, t = make_kernel()
    v = k.vfs
    v.mkdir(v.context(), None, "/bin", 0o755)
    write_file(t, "/bin/prog", elf)
    return k, t


def strings(t, base, items):
    """A NULL-terminated pointer array at ``base`` for ``items``; returns base."""
    ptrs = []
    off = STR - SCRATCH + (base - ARGV) * 2
    for s in items:
        b = s.encode() + b"\0"
        ptrs.append(put(t, b, off))
        off += len(b)
    t.mm.write(base, struct.pack(f"<{len(ptrs) + 1}Q", *ptrs, 0))
    return base


def execve(t, path, argv=("prog",), envp=("A=1",)):
    p = put(t, path.encode() + b"\0", 0x7000)
    return call(t, "execve", p, strings(t, ARGV, argv), strings(t, ENVP, envp))


def regs_of(t):
    r = t.ctx.regs
    return {n: getattr(r, n) for n in
            "rax rbx rcx rdx rsi rdi rbp r8 r9 r10 r11 r12 r13 r14 r15".split()}


# --- success ------------------------------------------------------------------------------
def test_execve_replaces_the_image(kt):
    _k, t = kt
    old_mm = t.mm
    t.ctx.regs.rbx, t.ctx.regs.r12, t.ctx.fs_base = 5, 6, 0x1234000
    t.ctx.set_fpu(b"\x01" * 512)
    execve(t, "/bin/prog", ("prog", "7"), ("X=y",))
    img = t.proc.image
    assert t.mm is not old_mm and not old_mm.vmas  # the old map was released
    assert t.ctx.regs.rip == img.entry and t.ctx.regs.rsp == img.stack_pointer
    assert set(regs_of(t).values()) == {0}
    assert t.ctx.regs.rflags == 0x202 and t.ctx.fs_base == 0
    assert t.ctx.get_fpu() != b"\x01" * 512
    assert img.argv == ["prog", "7"] and img.envp == ["X=y"]
    assert (t.proc.exe, t.proc.comm, t.comm) == ("/bin/prog", "prog", "prog")
    argc = struct.unpack("<Q", t.mm.read(img.stack_pointer, 8))[0]
    assert argc == 2
    assert process.has_execed(t.proc)


def test_exec_closes_cloexec_fds_only(kt):
    _, t = kt
    keep, gone = File(0), File(0)
    a = t.files.install(keep)
    b = t.files.install(gone, cloexec=True)
    execve(t, "/bin/prog")
    assert t.files.get(a) is keep
    assert b not in t.files.files and gone.fd_refs == 0


def test_exec_resets_handlers_keeps_ignored_and_mask(kt):
    _, t = kt
    for sig, handler, flags in ((F.SIGUSR1, 0x5000, F.SA_RESTART),
                                (F.SIGUSR2, 1, F.SA_RESTART), (F.SIGCHLD, 1, 0)):
        act = put(t, K_SIGACTION.pack(handler, flags | F.SA_RESTORER, 0x1000, 0xF0), 0x3000)
        assert call(t, "rt_sigaction", sig, act, 0, 8) == 0
    t.sigmask = signals.bit(F.SIGINT)
    t.altstack = (0x20000000, 0, 1 << 16)
    t.proc.shared_pending.add(F.SIGINT, signals.make_info(F.SIGINT))
    execve(t, "/bin/prog")
    acts = t.proc.sighand.actions
    assert (acts[F.SIGUSR1].handler, acts[F.SIGUSR1].flags, acts[F.SIGUSR1].mask) == (0, 0, 0)
    assert acts[F.SIGUSR2].handler == 1 and acts[F.SIGCHLD].handler == 1
    assert acts[F.SIGUSR2].flags == 0
    assert t.sigmask == signals.bit(F.SIGINT)  # the mask survives exec
    assert t.proc.shared_pending.mask & signals.bit(F.SIGINT)  # so do pending signals
    assert t.altstack == (0, F.SS_DISABLE, 0)


def test_exec_argv_null_gives_empty_argv0(kt):
    _, t = kt
    p = put(t, b"/bin/prog\0", 0x7000)
    call(t, "execve", p, 0, 0)
    assert t.proc.image.argv == [""] and t.proc.image.envp == []


def test_shebang_script_argv(kt):
    _, t = kt
    write_file(t, "/bin/script", b"#!/bin/prog  -x  y \necho\n")
    execve(t, "/bin/script", ("script", "a", "b"))
    img = t.proc.image
    assert img.argv == ["/bin/prog", "-x  y", "/bin/script", "a", "b"]
    assert t.proc.exe == "/bin/prog"  # /proc/self/exe: the interpreter
    assert t.proc.comm == "script"  # comm and AT_EXECFN: the name exec'd
    assert img.execfn == "/bin/script"


def test_nested_scripts_up_to_the_limit_then_eloop(kt):
    _, t = kt
    write_file(t, "/bin/s0", b"#!/bin/prog\n")
    for i in range(1, MAX_SCRIPT_DEPTH + 1):
        write_file(t, f"/bin/s{i}", f"#!/bin/s{i - 1} a{i}\n".encode())
    mm = t.mm
    assert execve(t, f"/bin/s{MAX_SCRIPT_DEPTH}") == -E.ELOOP
    assert t.mm is mm
    execve(t, f"/bin/s{MAX_SCRIPT_DEPTH - 1}", ("s", "x"))
    assert t.proc.image.argv == ["/bin/prog", "/bin/s0", "a1", "/bin/s1", "a2", "/bin/s2",
                                 "a3", "/bin/s3", "a4", "/bin/s4", "x"]


def test_execveat_empty_path_runs_the_fd(kt):
    k, t = kt
    f = k.vfs.open(t.fs, None, "/bin/prog", 0, 0)
    fd = t.files.install(f)
    empty = put(t, b"\0", 0x7000)
    argv, envp = strings(t, ARGV, ["p"]), strings(t, ENVP, [])
    assert call(t, "execveat", fd, empty, argv, envp, 0) == -E.ENOENT
    assert call(t, "execveat", 99, empty, argv, envp, F.AT_EMPTY_PATH) == -E.EBADF
    call(t, "execveat", fd, empty, argv, envp, F.AT_EMPTY_PATH)
    assert t.proc.image.execfn == f"/dev/fd/{fd}"


def test_execveat_relative_to_dirfd_and_nofollow(kt):
    k, t = kt
    d = k.vfs.open(t.fs, None, "/bin", 0, 0)
    dfd = t.files.install(d)
    k.vfs.symlink(t.fs, "/bin/prog", None, "/bin/link")
    argv, envp = strings(t, ARGV, ["p"]), strings(t, ENVP, [])
    link = put(t, b"link\0", 0x7000)
    assert call(t, "execveat", dfd, link, argv, envp, F.AT_SYMLINK_NOFOLLOW) == -E.ELOOP
    assert call(t, "execveat", dfd, link, argv, envp, 0x8) == -E.EINVAL
    call(t, "execveat", dfd, link, argv, envp, 0)
    assert t.proc.image.execfn == f"/dev/fd/{dfd}/link"
    assert t.proc.exe == "/bin/prog"


def test_exec_script_through_cloexec_fd_is_enoent(kt):
    k, t = kt
    write_file(t, "/bin/script", b"#!/bin/prog\n")
    f = k.vfs.open(t.fs, None, "/bin/script", 0, 0)
    fd = t.files.install(f, cloexec=True)
    empty = put(t, b"\0", 0x7000)
    r = call(t, "execveat", fd, empty, strings(t, ARGV, ["s"]), strings(t, ENVP, []),
             F.AT_EMPTY_PATH)
    assert r == -E.ENOENT


# --- errors leave the caller intact --------------------------------------------------------
def _intact(t, mm, rip):
    assert t.mm is mm and t.mm.vmas
    assert t.ctx.regs.rip == rip
    assert t.state is State.RUNNABLE


@pytest.mark.parametrize("setup, path, err", [
    (None, "/bin/nothing", E.ENOENT),
    (None, "/bin", E.EACCES),
    ("noexec-mode", "/bin/data", E.EACCES),
    ("garbage", "/bin/data", E.ENOEXEC),
    ("empty-shebang", "/bin/data", E.ENOEXEC),
    ("missing-interp", "/bin/data", E.ENOENT),
    ("noexec-mount", "/mnt/prog", E.EACCES),
    (None, "/bin/prog/x", E.ENOTDIR),
])
def test_exec_errors(kt, elf, setup, path, err):
    k, t = kt
    if setup == "noexec-mode":
        write_file(t, "/bin/data", elf, 0o644)
    elif setup == "garbage":
        write_file(t, "/bin/data", b"\x00garbage" * 100)
    elif setup == "empty-shebang":
        write_file(t, "/bin/data", b"#!   \n")
    elif setup == "missing-interp":
        write_file(t, "/bin/data", b"#!/no/such/interp\n")
    elif setup == "noexec-mount":
        k.vfs.mkdir(t.fs, None, "/mnt", 0o755)
        k.vfs.mount("/mnt", MemFS(), flags=MS_NOEXEC)
        write_file(t, "/mnt/prog", elf)
    pp = put(t, path.encode() + b"\0", 0x7000)
    argv, envp = strings(t, ARGV, ["prog"]), strings(t, ENVP, ["A=1"])
    mm, before = t.mm, k.phys.frames_in_use
    t.ctx.regs.rip = 0x401234
    assert call(t, "execve", pp, argv, envp) == -err
    _intact(t, mm, 0x401234)
    assert k.phys.frames_in_use == before  # nothing of a half-built image is left


def test_exec_permission_for_non_root(kt, elf):
    from .sysutil import user

    _k, t = kt
    write_file(t, "/bin/own", elf, 0o700)
    t.proc.creds = user(1000)
    t.fs.cred.uid = t.fs.cred.gid = 1000
    assert execve(t, "/bin/own") == -E.EACCES
    execve(t, "/bin/prog")
    assert t.proc.exe == "/bin/prog"


def test_exec_efault_paths(kt):
    _, t = kt
    mm = t.mm
    p = put(t, b"/bin/prog\0", 0x7000)
    envp = strings(t, ENVP, [])
    assert call(t, "execve", 0, 0, 0) == -E.EFAULT
    assert call(t, "execve", BAD, 0, 0) == -E.EFAULT
    assert call(t, "execve", p, BAD, envp) == -E.EFAULT
    t.mm.write(ARGV, struct.pack("<QQ", BAD, 0))
    assert call(t, "execve", p, ARGV, envp) == -E.EFAULT
    assert call(t, "execve", p, strings(t, ARGV, ["p"]), BAD) == -E.EFAULT
    # An array running off the end of mapped memory.
    end = SCRATCH + (1 << 20) - 16
    t.mm.write(end, struct.pack("<QQ", STR, STR))
    assert call(t, "execve", p, end, envp) == -E.EFAULT
    assert t.mm is mm


def test_exec_e2big(kt, elf):
    _, t = kt
    p = put(t, b"/bin/prog\0", 0x7000)
    big = SCRATCH + 0x20000
    t.mm.write(big, b"a" * MAX_ARG_STRLEN + b"\0")  # one byte too long with its NUL
    t.mm.write(ARGV, struct.pack("<QQQ", STR, big, 0))
    put(t, b"prog\0", STR - SCRATCH)
    assert call(t, "execve", p, ARGV, 0) == -E.E2BIG
    t.mm.write(big + MAX_ARG_STRLEN - 1, b"\0")  # exactly MAX_ARG_STRLEN: fine
    assert call(t, "execve", p, ARGV, 0) != -E.E2BIG
    # Too many strings in total: 60 x 128 KiB > the 2 MiB budget (8 MiB stack / 4).
    _, t2 = make_kernel()
    t2.kernel.vfs.mkdir(t2.fs, None, "/bin", 0o755)
    write_file(t2, "/bin/prog", elf)
    t2.mm.mmap(0x40000000, 1 << 20, F.PROT_READ | F.PROT_WRITE,
               F.MAP_PRIVATE | F.MAP_ANONYMOUS | F.MAP_FIXED)
    t2.mm.write(0x40000000, b"b" * (MAX_ARG_STRLEN - 1) + b"\0")
    t2.mm.write(ARGV, struct.pack("<61Q", *[0x40000000] * 60, 0))
    p2 = put(t2, b"/bin/prog\0", 0x7000)
    assert call(t2, "execve", p2, ARGV, 0) == -E.E2BIG
    # A huge pointer array alone.
    t2.mm.mmap(0x50000000, 8 << 20, F.PROT_READ | F.PROT_WRITE,
               F.MAP_PRIVATE | F.MAP_ANONYMOUS | F.MAP_FIXED)
    t2.mm.write(0x50000000, struct.pack("<Q", 0x40000000) * (1 << 20))
    assert call(t2, "execve", p2, 0x50000000, 0) == -E.E2BIG


# --- threads, vfork ---------------------------------------------------------------------------
def test_exec_from_a_thread_takes_the_pid_and_kills_the_others(kt):
    k, t = kt
    other = thread(k, t)
    third = thread(k, t)
    execve(third, "/bin/prog")
    assert third.tid == t.proc.pid and k.tasks[t.proc.pid] is third
    assert t.proc.threads == [third]
    assert t.state is State.DEAD and other.state is State.DEAD
    assert other.tid not in k.tasks
    assert t.files.users == 1


def test_exec_unshares_a_shared_fd_table(kt):
    k, t = kt
    pid = process.fork_process(t, F.CLONE_FILES)
    c = k.tasks[pid]
    assert c.files is t.files
    execve(c, "/bin/prog")
    assert c.files is not t.files and t.files.users == 1


def test_vfork_child_exec_wakes_parent_and_keeps_its_memory(kt):
    _k, t = kt
    put(t, b"parent")
    call(t, "vfork")
    (child,) = t.proc.children
    c = child.threads[0]
    assert t.state is State.BLOCKED
    execve(c, "/bin/prog")
    assert c.mm is not t.mm
    assert t.state is State.RUNNABLE and resume(t) == child.pid
    assert t.mm.read(SCRATCH, 6) == b"parent"
    exit_group(c, 3)
    assert call(t, "wait4", -1, SCRATCH + 0x800, 0, 0) == child.pid
    assert s32(t, SCRATCH + 0x800) == 3 << 8


def test_fork_exec_exit_returns_every_frame(kt):
    k, t = kt
    base = k.phys.frames_in_use
    cache = cache_for(k.phys)
    kept = []
    for _ in range(5):
        c = fork(t)
        execve(c, "/bin/prog")
        exit_group(c, 0)
        assert call(t, "wait4", -1, 0, 0, 0) == c.pid
        # Only the page cache keeps anything: the program's clean pages, the
        # same ones after every run.
        assert k.phys.frames_in_use == base + len(cache)
        kept.append(sorted(cache.held()))
    assert kept[0] and kept.count(kept[0]) == 5
    cache.clear(k.phys)
    assert k.phys.frames_in_use == base
