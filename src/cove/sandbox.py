"""A sandbox: one filesystem tree, one Linux personality, one platform.

``Sandbox(...).run(argv)`` boots a fresh kernel, starts the program as the
sandbox's init (pid 1) and runs until it exits. The guest's stdin, stdout
and stderr are host file descriptors given to it (the caller's by default).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import IO

from cove.abi.errno import E, Errno
from cove.fs.perm import Cred
from cove.fs.vfs import VFS, PathContext
from cove.kernel.fdtable import FdTable
from cove.kernel.kernel import Kernel, status_to_exit
from cove.kernel.mm import MemoryMap
from cove.kernel.task import Creds
from cove.rootfs import MountSpec, build_vfs

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class CoveError(Exception):
    """Something the user asked for cannot be done; the message is one clear line."""


class ProgramNotFound(CoveError):
    """The program does not exist in the sandbox (or is not executable there)."""


class SandboxTimeout(CoveError):
    """The guest ran past ``SandboxConfig.timeout``; every guest process was killed."""


def parse_memory(size: str | int) -> int:
    """``"256M"``, ``"1G"``, ``1 << 30`` → bytes (whole pages)."""
    if isinstance(size, int):
        n = size
    else:
        units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
        text = size.strip().upper().removesuffix("B").removesuffix("I")
        mult = units.get(text[-1:], 1)
        n = int(float(text[:-1] if text[-1:] in units else text) * mult)
    if n < 16 << 20:
        raise CoveError(f"memory {size}: at least 16M is needed")
    return n & ~0xFFF


@dataclass
class SandboxConfig:
    memory: str | int = "1G"
    platform: str = "auto"
    timeout: float | None = None
    trace: str | None = None  # JSONL file: one line per syscall
    debug: bool = False
    hostname: str = "cove"


@dataclass
class CompletedRun:
    argv: list[str]
    returncode: int  # exit code, or 128 + signal like a shell
    status: int  # raw wait status
    stdout: bytes | None = None
    stderr: bytes | None = None


@dataclass
class Sandbox:
    rootfs: str = "host"
    config: SandboxConfig = field(default_factory=SandboxConfig)
    mounts: tuple[MountSpec, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    cwd: str = "/"
    user: tuple[int, int] = (0, 0)
    vfs: VFS | None = None

    def __post_init__(self) -> None:
        if self.vfs is None:
            self.vfs = build_vfs(self.rootfs, self.mounts)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        pass

    # --- program lookup ------------------------------------------------------
    def find_program(self, name: str, env_path: str = DEFAULT_PATH) -> str:
        """PATH search inside the sandbox, as a shell does."""
        assert self.vfs is not None
        ctx = self.vfs.context(Cred(*self.user))
        if "/" in name:
            self._check_exec(ctx, name, name)
            return name
        for d in env_path.split(":"):
            cand = f"{d or '.'}/{name}"
            try:
                self._check_exec(ctx, cand, name)
                return cand
            except ProgramNotFound:
                continue
        raise ProgramNotFound(f"{name}: command not found in the sandbox")

    def _check_exec(self, ctx: PathContext, path: str, shown: str) -> None:
        assert self.vfs is not None
        try:
            st = self.vfs.stat(ctx, None, path)
        except Errno as e:
            raise ProgramNotFound(f"{shown}: {_why(e)}") from None
        if not st.is_reg():
            raise ProgramNotFound(f"{shown}: not a regular file")
        if not st.mode & 0o111:
            raise ProgramNotFound(f"{shown}: permission denied (not executable)")

    # --- running -------------------------------------------------------------
    def boot(self, argv: list[str], *, env: dict[str, str] | None = None,
             stdio: tuple[int, int, int] = (0, 1, 2), trace: IO[str] | None = None) -> Kernel:
        """A kernel with ``argv`` loaded as init, ready to ``run()``."""
        from cove.kernel import hostio, loader
        from cove.kernel.elf import ExecError
        from cove.kernel.physmem import PhysMem
        from cove.platform.base import select_platform

        assert self.vfs is not None
        environ = {"PATH": DEFAULT_PATH, "HOME": "/root" if self.user[0] == 0 else "/",
                   "HOSTNAME": self.config.hostname}
        if os.environ.get("TERM") and os.isatty(stdio[1]):
            environ["TERM"] = os.environ["TERM"]
        environ.update(self.env)
        environ.update(env or {})
        path = self.find_program(argv[0], environ.get("PATH", DEFAULT_PATH))
        phys = PhysMem(parse_memory(self.config.memory))
        platform = select_platform(self.config.platform, physmem=phys)
        kernel = Kernel(platform, self.vfs, trace=trace, hostname=self.config.hostname)
        procfs = getattr(self.vfs, "procfs", None)
        if procfs is not None:
            procfs.kernel = kernel
        uid, gid = self.user
        creds = Creds(uid, uid, uid, uid, gid, gid, gid, gid)
        mm = MemoryMap(phys, platform.create_address_space())
        proc = kernel.new_process(None, mm, creds)
        kernel.init = proc
        fs = self.vfs.context(Cred(uid, gid))
        try:
            self.vfs.chdir(fs, None, self.cwd)
        except Errno as e:
            raise CoveError(f"--cwd {self.cwd}: {_why(e)}") from None
        files = FdTable()
        hostio.attach_stdio(kernel, files, stdio)
        try:
            image = loader.load_program(mm, self.vfs, fs, path, argv,
                                        [f"{k}={v}" for k, v in environ.items()],
                                        creds=creds)
        except ExecError as e:
            raise CoveError(f"{argv[0]}: {e.reason}") from None
        except Errno as e:
            raise CoveError(f"{argv[0]}: {_why(e)}") from None
        proc.image = image
        proc.exe = path
        proc.comm = os.path.basename(path)[:15]
        ctx = platform.create_context()
        ctx.regs.rip = image.entry
        ctx.regs.rsp = image.stack_pointer
        kernel.new_task(proc, ctx, files, fs)
        return kernel

    def run(self, argv: list[str], *, env: dict[str, str] | None = None,
            capture_output: bool = False, stdin: int | None = None) -> CompletedRun:
        """Run ``argv`` to completion in a fresh kernel over this sandbox's files."""
        trace = open(self.config.trace, "w") if self.config.trace else None
        out_r = err_r = None
        stdio = (0 if stdin is None else stdin, 1, 2)
        collected: dict[int, bytearray] = {}
        readers = []
        if capture_output:
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            stdio = (stdio[0], out_w, err_w)
            for fd in (out_r, err_r):
                buf = collected.setdefault(fd, bytearray())
                th = threading.Thread(target=_drain, args=(fd, buf), daemon=True)
                th.start()
                readers.append(th)
        try:
            kernel = self.boot(argv, env=env, stdio=stdio, trace=trace)
            kernel.set_timeout(self.config.timeout)
            try:
                status = kernel.run()
            finally:
                kernel.shutdown()
            if kernel.timed_out:
                raise SandboxTimeout(f"{argv[0]}: killed after the {self.config.timeout} s "
                                     "timeout")
        finally:
            if capture_output:
                os.close(stdio[1])
                os.close(stdio[2])
                for th in readers:
                    th.join()
            if trace:
                trace.close()
        return CompletedRun(argv, status_to_exit(status), status,
                            bytes(collected[out_r]) if out_r is not None else None,
                            bytes(collected[err_r]) if err_r is not None else None)


def _drain(fd: int, buf: bytearray) -> None:
    try:
        while chunk := os.read(fd, 1 << 16):
            buf += chunk
    finally:
        os.close(fd)


def _why(e: Errno) -> str:
    return {
        E.ENOENT: "no such file or directory", E.EACCES: "permission denied",
        E.ENOTDIR: "not a directory", E.ELOOP: "too many levels of symbolic links",
        E.ENOEXEC: "not an executable (exec format error)", E.EISDIR: "is a directory",
        E.ENAMETOOLONG: "file name too long", E.E2BIG: "argument list too long",
        E.ENOMEM: "out of guest memory",
    }.get(E(e.errno) if e.errno in E._value2member_map_ else e.errno, e.name.lower())
