"""Every struct layout's size, member offsets, member sizes and signedness
equal what gcc computes from the C headers; plus the Layout helpers."""

from __future__ import annotations

import struct

import pytest

from cove.abi import structs
from cove.abi.layout import Layout
from cove.abi.structs import fs, net, siginfo
from tests.abi import catalog

pytestmark = pytest.mark.timeout(300)

LAYOUTS = catalog.layouts()


def _probe_for(name: str, kernel_probe, glibc_probe):
    return kernel_probe if catalog.layout_program(name) == "kernel" else glibc_probe


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_layout_matches_headers(name: str, kernel_probe, glibc_probe) -> None:
    layout = LAYOUTS[name]
    _consts, sizes, members = _probe_for(name, kernel_probe, glibc_probe)
    assert sizes[name] == layout.size, f"sizeof({layout.ctype})"
    checked = 0
    for m in layout.members:
        if m.cpath is None:
            continue
        offset, size, signed = members[(name, m.cpath)]
        assert (offset, size) == (m.offset, m.size), f"{layout.ctype}.{m.cpath} (offset, size)"
        if signed >= 0 and (name, m.cpath) not in catalog.SIGN_EXCEPTIONS:
            assert bool(signed) == m.code.islower(), f"{layout.ctype}.{m.cpath} signedness"
        checked += 1
    # Every named field is checked; only anonymous padding may lack a C member.
    assert checked >= len(layout.fields)


def test_every_layout_is_exported() -> None:
    exported = {n for n in structs.__all__ if isinstance(getattr(structs, n), Layout)}
    assert exported == set(LAYOUTS)


def test_sizes_named_in_the_brief() -> None:
    expect = {
        "STAT": 144, "STATX": 256, "EPOLL_EVENT": 12, "UTSNAME": 390, "SIGINFO_KILL": 128,
        "TERMIOS": 36, "FLOCK": 32, "STATFS": 120, "SIGNALFD_SIGINFO": 128, "K_SIGACTION": 32,
        "UCONTEXT": 304, "CLONE_ARGS": 88, "OPEN_HOW": 24,
    }  # fmt: skip
    assert {n: LAYOUTS[n].size for n in expect} == expect
    assert structs.RT_SIGFRAME_INFO == 312 and structs.RT_SIGFRAME_SIZE == 440


def test_pack_writes_every_byte() -> None:
    # Padding must overwrite stale guest bytes, not skip them.
    for name, layout in LAYOUTS.items():
        buf = bytearray(b"\xaa" * (layout.size + 8))
        layout.write(buf, 4)
        assert buf[4 : 4 + layout.size] == bytes(layout.size), name
        assert buf[:4] == b"\xaa" * 4 and buf[-4:] == b"\xaa" * 4, name


def test_read_write_round_trip() -> None:
    buf = bytearray(200)
    structs.STAT.write(buf, 8, st_ino=42, st_mode=0o100644, st_size=-1 & 0x7FFF, st_mtime=-5)
    st = structs.STAT.read(buf, 8)
    assert (st.st_ino, st.st_mode, st.st_size, st.st_mtime) == (42, 0o100644, 0x7FFF, -5)
    assert struct.unpack_from("<Q", buf, 8 + 8)[0] == 42
    with pytest.raises(TypeError):
        structs.STAT.build(st_bogus=1)
    assert structs.EPOLL_EVENT.pack(1, 2) == b"\x01\0\0\0\x02" + bytes(7)


def test_dirent64_records() -> None:
    buf = memoryview(bytearray(b"\xff" * 64))  # guest memory arrives as a memoryview
    n1 = fs.pack_dirent64(buf, 0, 7, 1, 4, b".")
    n2 = fs.pack_dirent64(buf, n1, 8, 2, 8, b"hello-world")
    assert (n1, n2) == (24, 32)
    assert fs.dirent64_reclen(5) == 32 and fs.dirent64_reclen(4) == 24
    d = fs.DIRENT64.read(buf, n1)
    assert (d.d_ino, d.d_off, d.d_reclen, d.d_type) == (8, 2, 32, 8)
    assert buf[n1 + 19 : n1 + 32] == b"hello-world\0\0"
    assert buf[19:24] == b".\0\0\0\0"


def test_siginfo_helpers() -> None:
    buf = bytearray(b"\xee" * 128)
    siginfo.siginfo_chld(buf, 0, 1, 1234, 1000, 7, 3, 4)
    info = siginfo.SIGINFO_CHLD.read(buf)
    assert (info.si_signo, info.si_code, info.si_pid, info.si_status, info.si_stime) == (
        17, 1, 1234, 7, 4
    )  # fmt: skip
    siginfo.siginfo_fault(buf, 0, 11, 1, 0xDEAD000)
    assert siginfo.SIGINFO_FAULT.read(buf).si_addr == 0xDEAD000
    assert buf[26:] == bytes(102)  # no leftovers from the previous variant


def test_cmsg_macros() -> None:
    assert net.cmsg_len(4) == 20 and net.cmsg_space(4) == 24 and net.cmsg_space(8) == 24


def test_bad_spec_rejected() -> None:
    # Specs are parsed on first use (test_pack_writes_every_byte uses every layout).
    with pytest.raises(ValueError):
        Layout("struct x\n 3Q a\n").size  # noqa: B018
    with pytest.raises(ValueError):
        Layout("struct x\n Q a\n Q a\n").pack  # noqa: B018


def test_parsed_on_first_use_only() -> None:
    lay = Layout("struct t\n I a\n 4x\n q b\n")
    assert set(vars(lay)) == {"_spec"}
    assert lay.offsets == {"a": 0, "b": 8} and lay.size == 16
    pack_into = lay.pack_into
    assert lay.pack_into is pack_into  # a plain attribute from then on


def test_the_package_re_exports_its_parts_on_first_use() -> None:
    """Importing one part (what the kernel's core does) loads no other; each
    name in the package's __all__ is its part's own object."""
    import subprocess
    import sys

    code = ("import sys\nimport cove.abi.structs.siginfo\n"
            "print(sorted(m for m in sys.modules if m.startswith('cove.abi.structs.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "['cove.abi.structs.siginfo']"
    import importlib

    parts = [importlib.import_module(f"cove.abi.structs.{p}") for p in structs._PARTS]
    for name in structs.__all__:
        owners = [vars(p)[name] for p in parts if name in vars(p)]
        assert owners and getattr(structs, name) is owners[0], name
