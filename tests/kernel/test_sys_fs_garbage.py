"""Garbage arguments to every file-system syscall give an errno or a result,
never an internal error (which the dispatcher would turn into ENOSYS and log)."""

from __future__ import annotations

import logging
import random

import pytest

from cove.abi import flags as F
from cove.kernel.syscall import TABLE, load_all
from cove.kernel.task import State

from .sysfs_helpers import AT_FDCWD, BAD_ADDR, Guest

FS_MODULES = ("fs_at", "fs_attr", "fs_dir", "fs_fcntl", "fs_iov", "fs_locks", "fs_memfd",
              "fs_names", "fs_open", "fs_resolve", "fs_rw", "fs_stat", "fs_sync")


def fs_syscalls() -> list[str]:
    load_all()
    out = []
    for sc in TABLE.values():
        mod = getattr(sc.handler, "__module__", "") or ""
        if sc.handler is not None and mod.rsplit(".", 1)[-1] in FS_MODULES:
            out.append(sc.name)
    return sorted(out)


def test_the_family_is_all_there() -> None:
    names = set(fs_syscalls())
    for must in ("openat2", "preadv2", "statx", "getdents64", "fcntl", "flock",
                 "memfd_create", "close_range", "faccessat2", "fchmodat2", "renameat2",
                 "utimensat", "fallocate", "readlinkat", "linkat", "mknodat", "chroot"):
        assert must in names


@pytest.mark.timeout(120)
def test_garbage_never_breaks_a_handler(caplog: pytest.LogCaptureFixture) -> None:
    rng = random.Random(1234)
    g = Guest()
    g.mkdir("/d")
    g.write_file("/d/f", b"content")
    g.call("symlink", g.s("f"), g.s("/d/l"))
    g.call("mknod", g.s("/d/fifo"), F.S_IFIFO | 0o644, 0)
    fds = g.alloc(8)
    g.call("pipe2", fds, F.O_NONBLOCK)
    paths = [g.s(p) for p in ("/d/f", "/d", "/d/l", "", "/d/new", "/d/fifo", "/proc", "..")]
    buf = g.alloc(8192)
    words = [0, 1, 2, 3, 4, 7, 8, 0x100, 0x1000, 0x7FFFFFFF, -1, -100, 1 << 31, 1 << 63,
             (1 << 64) - 1, BAD_ADDR, buf, buf + 8190, AT_FDCWD, 0o777, 0o170000, 4096]
    caplog.set_level(logging.ERROR, logger="cove.kernel")
    for name in fs_syscalls():
        for _ in range(150):
            args = [rng.choice(words + paths) for _ in range(6)]
            g.call(name, *args)
            t = g.t
            if t.state is State.BLOCKED:  # a lock or FIFO wait: abandon it
                t.kernel.sched.remove(t)
                t.state = State.RUNNABLE
                t.blocked_call = None
            t.fs.root = t.fs.cwd = g.vfs.root  # undo chroot/chdir
            t.fs.umask = 0o022
            if len(t.files.files) > 200:
                t.files.close_range(3, 1 << 20)
    errors = [r for r in caplog.records if "internal error" in r.getMessage()]
    assert not errors, errors[0].getMessage()
