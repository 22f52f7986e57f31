"""The userland platform's stubs hold nothing but their own pages and their
guest's: no mapping, fd or state left over from the guest before (a reused
stub), no guest mapping over the stub's range, no stub binary others could
plant. What both platforms promise is in test_contract_*.py."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from cove.platform.base import PF, PF_PRESENT, ExitKind
from tests.platform.guest import (
    ALTSTACK,
    CODE,
    DATA,
    MAILBOX,
    REPLY,
    RO,
    RW,
    STACK_TOP,
    STUB_CODE,
    Guest,
    only_on,
    platform_fixture,
)

pytestmark = only_on("userland")
platform = platform_fixture("userland")


def stub_pid(g: Guest) -> int:
    """The host pid of the stub process that holds ``g``'s address space."""
    return g.aspace.proc.pid  # type: ignore[attr-defined]


def test_write_to_mapped_readonly_pages_and_reserved_range(platform, assemble) -> None:
    a = platform.create_address_space()
    f = platform.physmem.alloc()
    with pytest.raises(ValueError):
        a.map(STUB_CODE, f, RW)  # the stub's pages: never for a guest
    with pytest.raises(ValueError):
        a.map(0xF000, f, RW)
    a.destroy()


def test_stub_maps_nothing_but_its_pages_and_the_guests(platform, assemble) -> None:
    g = Guest(platform, assemble("mov $1, %eax\n syscall"))
    g.map_data(DATA, b"x")
    assert g.run().kind == ExitKind.SYSCALL
    maps = Path(f"/proc/{stub_pid(g)}/maps").read_text().splitlines()
    starts = sorted(int(line.split("-")[0], 16) for line in maps)
    allowed = {STUB_CODE, MAILBOX, REPLY, ALTSTACK, CODE, DATA, STACK_TOP - 4 * 4096,
               0xFFFFFFFFFF600000}  # fmt: skip
    assert set(starts) <= allowed, maps
    assert not any("stub" in line or "[stack]" in line or "vdso" in line for line in maps), maps
    fds = os.listdir(f"/proc/{stub_pid(g)}/fd")
    # The memfd sits at the top of the stub's fd range (layout.py), above every
    # fd number a guest's host pipe may be installed at.
    assert fds == [str(g.aspace.proc.memfd)], "the stub holds the guest-memory memfd only"
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    assert g.aspace.proc.memfd == (1024 if hard < 0 or hard >= 1025 else hard - 1)


def test_destroyed_stub_is_gone_or_scrubbed(platform, assemble) -> None:
    g = Guest(platform, assemble("mov $1, %eax\n syscall"))
    g.map_data(DATA, b"guest data", RO)
    assert g.run().kind == ExitKind.SYSCALL
    pid = stub_pid(g)
    g.aspace.destroy()
    # The stub is either gone and reaped or kept as a scrubbed spare.
    assert not Path(f"/proc/{pid}").exists() or _guest_maps(pid) == []


def _guest_maps(pid: int) -> list[str]:
    """The stub's mappings in the guest's range (above the stub's own pages)."""
    lines = Path(f"/proc/{pid}/maps").read_text().splitlines()
    return [ln for ln in lines if 0x10000 <= int(ln.split("-")[0], 16) < 1 << 47]


_SECCOMP_IOCTL_NOTIF_ADDFD = 0x40182103


def test_reused_stub_carries_nothing_of_its_guest(platform, assemble) -> None:
    """A destroyed address space's stub may serve the next one (a fork's or an
    exec's): the next guest must find none of the last one's memory, fds,
    fault frames, batch entries or registers."""
    import ctypes
    import fcntl

    # Guest A: secrets in registers (general, xmm, ymm) and memory, a fault
    # frame on the altstack (a not-present read), and a host fd installed in
    # its stub as the native-I/O fast path does (SECCOMP_IOCTL_NOTIF_ADDFD).
    a = Guest(platform, assemble("""
        mov $0x5ec2e7, %rbx
        mov %rbx, %r12
        mov %rbx, %r15
        movq %rbx, %xmm0
        vpbroadcastq %xmm0, %ymm7
        mov $0x20000000, %rcx
        mov (%rcx), %rax
        mov $1, %eax
        syscall
        ud2
    """))
    a.map_data(DATA, b"secret" * 100, RW)
    e = a.run()
    assert e.kind == ExitKind.FAULT and e.vector == PF and e.cr2 == 0x20000000
    a.map_data(0x20000000, b"more secret", RO)
    assert a.run().kind == ExitKind.SYSCALL
    th = a.ctx._thread  # type: ignore[attr-defined]
    r, w = os.pipe()
    try:
        addfd = struct.pack("<QIIII", th.notif_id, 1, r, 7, 0)  # SETFD: at fd 7
        buf = ctypes.create_string_buffer(addfd, len(addfd))
        assert fcntl.ioctl(th.lfd, _SECCOMP_IOCTL_NOTIF_ADDFD, buf) == 7
    finally:
        os.close(r)
        os.close(w)
    pid = stub_pid(a)
    proc = a.aspace.proc  # type: ignore[attr-defined]
    assert sorted(os.listdir(f"/proc/{pid}/fd")) == sorted(["7", str(proc.memfd)])
    altstack = list(proc.altstack)
    assert any(platform.physmem.read(f << 12, 4096).strip(b"\0") for f in altstack)
    a.aspace.destroy()
    if not Path(f"/proc/{pid}").exists():
        pytest.skip("the stub was not kept for reuse")
    assert _guest_maps(pid) == [], "every guest mapping is gone"
    assert os.listdir(f"/proc/{pid}/fd") == [str(proc.memfd)], "only the memfd is left"
    assert all(platform.physmem.read(f << 12, 4096) == bytes(4096) for f in altstack)
    mailbox = platform.physmem.read(proc.mailbox << 12, 4096)
    assert mailbox[1024:] == bytes(3072), "no batch entries of the last guest"

    # Guest B gets the same stub: it reads its registers and A's addresses.
    b = Guest(platform, assemble(f"""
        mov $1, %eax
        syscall
        movq %xmm0, %rdi
        vextracti128 $1, %ymm7, %xmm1
        movq %xmm1, %rsi
        mov $2, %eax
        syscall
        mov ${DATA}, %rcx
        mov (%rcx), %rax
        ud2
    """))
    e = b.run()
    assert e.kind == ExitKind.SYSCALL and stub_pid(b) == pid
    assert (b.ctx.regs.rbx, b.ctx.regs.r12, b.ctx.regs.r15) == (0, 0, 0)
    b.ctx.regs.rax = 0
    e = b.run()
    assert e.kind == ExitKind.SYSCALL and (b.ctx.regs.rdi, b.ctx.regs.rsi) == (0, 0)
    e = b.run()
    assert e.kind == ExitKind.FAULT and e.vector == PF and e.cr2 == DATA, "A's data is gone"
    assert e.error_code & PF_PRESENT == 0
    assert b"secret" not in b.ctx.get_fpu()
    b.aspace.destroy()


def test_stub_cache_refuses_files_others_could_plant(tmp_path) -> None:
    from cove.platform.userland import build

    good = build._build(build.SOURCE.read_bytes(), tmp_path / "cache" / "stub")
    assert build._ours(good) and build._ours(good.parent)
    good.chmod(0o777)  # writable by anyone: never exec'd
    assert not build._ours(good)
    (tmp_path / "cache").chmod(0o777)
    with pytest.raises(Exception, match="private"):
        build._build(b"", tmp_path / "cache" / "other")
