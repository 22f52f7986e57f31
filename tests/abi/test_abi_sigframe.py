"""The signal frame, checked against real deliveries by this host's kernel.

sigframe_probe.c installs an SA_SIGINFO handler, gets a signal delivered in
several ways and dumps the raw frame and fpstate bytes together with what
glibc's accessors read from them. Here cove's layouts decode the raw bytes and
cove's `rt_sigframe` predicts the addresses; both must agree with the kernel.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from cove.abi import flags
from cove.abi.structs import sigframe, siginfo
from cove.abi.structs.sigframe import FPSTATE, UCONTEXT, XSTATE_HEADER

pytestmark = pytest.mark.timeout(120)

SOURCE = (Path(__file__).parent / "sigframe_probe.c").read_text()


@pytest.fixture(scope="module")
def probe(compiler):
    exe = compiler.build(SOURCE)

    def run(mode: str) -> dict:
        # Exit status 0 after "raise" etc. also means rt_sigreturn took the frame back.
        r = subprocess.run([str(exe), mode], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        out: dict = {}
        for line in r.stdout.splitlines():
            key, _, value = line.partition(" ")
            if key in ("frame", "fp", "kact"):
                out[key] = bytes.fromhex(value)
            elif key == "gregs":
                out[key] = [int(v) for v in value.split()]
            else:
                out[key] = int(value)
        return out

    return run


MODES = ["raise", "altstack", "segv", "chld", "timer", "sigqueue"]


@pytest.mark.parametrize("mode", MODES)
def test_frame_placement(probe, mode: str) -> None:
    d = probe(mode)
    fp = FPSTATE.read(d["fp"])
    stack_top = d["alt_sp"] + d["alt_size"] if mode == "altstack" else None
    sp = d["gregs"][flags.REG_RSP]
    plan = sigframe.rt_sigframe(sp, fp.extended_size, stack_top)
    assert plan.rsp == d["entry"]
    assert (plan.rsp + 8) % 16 == 0
    assert plan.ucontext == d["uc"]
    assert plan.siginfo == d["info"]
    assert plan.fpstate == d["fpstate"]
    assert plan.fpstate % sigframe.FPSTATE_ALIGN == 0
    if stack_top is not None:
        assert d["alt_sp"] <= plan.rsp < stack_top


@pytest.mark.parametrize("mode", MODES)
def test_ucontext_decodes(probe, mode: str) -> None:
    d = probe(mode)
    frame = d["frame"]
    kact = siginfo.K_SIGACTION.read(d["kact"])
    assert int.from_bytes(frame[:8], "little") == kact.sa_restorer  # pretcode
    assert kact.sa_handler == d["handler"]
    assert kact.sa_flags & (flags.SA_SIGINFO | flags.SA_RESTORER) == (
        flags.SA_SIGINFO | flags.SA_RESTORER
    )
    assert kact.sa_mask & (1 << (flags.SIGWINCH - 1))

    uc = UCONTEXT.read(frame, sigframe.RT_SIGFRAME_UC)
    assert (
        uc.uc_flags
        == d["uc_flags"]
        == (flags.UC_FP_XSTATE | flags.UC_SIGCONTEXT_SS | flags.UC_STRICT_RESTORE_SS)
    )
    assert uc.uc_link == d["uc_link"] == 0
    assert (uc.ss_sp, uc.ss_flags, uc.ss_size) == (d["ss_sp"], d["ss_flags"], d["ss_size"])
    assert uc.uc_sigmask == d["sigmask"]
    assert uc.uc_sigmask & (1 << (flags.SIGUSR2 - 1))
    gregs = d["gregs"]
    for i, name in enumerate(sigframe.MCONTEXT_GREGS):
        assert getattr(uc, name) == gregs[i], name
    csgsfs = gregs[flags.REG_CSGSFS]
    assert (uc.cs, uc.gs, uc.fs, uc.ss) == tuple((csgsfs >> s) & 0xFFFF for s in (0, 16, 32, 48))
    assert (uc.cs, uc.ss) == (sigframe.USER_CS, sigframe.USER_DS)
    assert (uc.err, uc.trapno, uc.oldmask, uc.cr2) == tuple(
        gregs[r] for r in (flags.REG_ERR, flags.REG_TRAPNO, flags.REG_OLDMASK, flags.REG_CR2)
    )
    assert uc.fpstate == d["fpstate"]


def _info(d: dict) -> bytes:
    return d["frame"][sigframe.RT_SIGFRAME_INFO :]


def test_siginfo_kill(probe) -> None:
    d = probe("raise")
    info = siginfo.SIGINFO_KILL.read(_info(d))
    assert (info.si_signo, info.si_code, info.si_pid, info.si_uid) == (
        flags.SIGUSR1, flags.SI_TKILL, d["pid"], d["uid"]
    )  # fmt: skip
    expect = bytearray(128)
    siginfo.siginfo_kill(expect, 0, flags.SIGUSR1, flags.SI_TKILL, d["pid"], d["uid"])
    assert _info(d) == bytes(expect)


def test_siginfo_rt(probe) -> None:
    d = probe("sigqueue")
    info = siginfo.SIGINFO_RT.read(_info(d))
    assert (info.si_code, info.si_pid, info.si_value) == (flags.SI_QUEUE, d["pid"], 0xFEEDF00D)
    assert info.si_value == d["si_value"]
    expect = bytearray(128)
    siginfo.siginfo_rt(expect, 0, flags.SIGUSR1, flags.SI_QUEUE, d["pid"], d["uid"], 0xFEEDF00D)
    assert _info(d) == bytes(expect)


def test_siginfo_fault(probe) -> None:
    d = probe("segv")
    info = siginfo.SIGINFO_FAULT.read(_info(d))
    assert (info.si_signo, info.si_code, info.si_addr) == (flags.SIGSEGV, flags.SEGV_MAPERR, 0x10)
    uc = UCONTEXT.read(d["frame"], sigframe.RT_SIGFRAME_UC)
    assert (uc.trapno, uc.cr2) == (14, 0x10)  # #PF, at the address
    assert uc.err & 4  # from user mode
    expect = bytearray(128)
    siginfo.siginfo_fault(expect, 0, flags.SIGSEGV, flags.SEGV_MAPERR, 0x10)
    assert _info(d) == bytes(expect)


def test_siginfo_chld(probe) -> None:
    d = probe("chld")
    info = siginfo.SIGINFO_CHLD.read(_info(d))
    assert (info.si_signo, info.si_code, info.si_pid, info.si_status) == (
        flags.SIGCHLD, flags.CLD_EXITED, d["child"], 7
    )  # fmt: skip
    assert info.si_status == d["si_status"]
    expect = bytearray(128)
    siginfo.siginfo_chld(
        expect, 0, flags.CLD_EXITED, d["child"], d["uid"], 7, info.si_utime, info.si_stime
    )
    assert _info(d) == bytes(expect)


def test_siginfo_timer(probe) -> None:
    d = probe("timer")
    info = siginfo.SIGINFO_TIMER.read(_info(d))
    assert (info.si_signo, info.si_code) == (flags.SIGRTMIN_GLIBC, flags.SI_TIMER)
    assert (info.si_timerid, info.si_overrun) == (d["si_timerid"], d["si_overrun"])
    assert info.si_value == d["si_value"] == 0x1234ABCD
    expect = bytearray(128)
    siginfo.siginfo_timer(
        expect, 0, flags.SIGRTMIN_GLIBC, info.si_timerid, info.si_overrun, 0x1234ABCD
    )
    assert _info(d) == bytes(expect)


def test_fpstate_magic(probe) -> None:
    d = probe("raise")
    raw = d["fp"]
    fp = FPSTATE.read(raw)
    assert fp.magic1 == flags.FP_XSTATE_MAGIC1
    assert fp.extended_size == fp.xstate_size + flags.FP_XSTATE_MAGIC2_SIZE == len(raw)
    magic2 = int.from_bytes(raw[fp.xstate_size : fp.xstate_size + 4], "little")
    assert magic2 == flags.FP_XSTATE_MAGIC2
    assert fp.mxcsr == 0x1F80  # the interrupted code's default MXCSR
    hdr = XSTATE_HEADER.read(raw, sigframe.FXSAVE_SIZE)
    assert hdr.xfeatures & ~fp.xfeatures == 0
    assert fp.xfeatures & 0b11 == 0b11  # x87 and SSE always present

    # cove's stamp reproduces the kernel's bytes exactly...
    blank = bytearray(raw)
    blank[464:512] = bytes(48)
    blank[fp.xstate_size :] = bytes(4)
    sigframe.stamp_fpstate(blank, 0, fp.xstate_size, fp.xfeatures)
    assert bytes(blank) == raw
    # ...and sigreturn's acceptance rules take it whole, or fall back to FXSAVE.
    assert sigframe.restorable_xstate_size(raw, 0, fp.xstate_size) == fp.xstate_size
    assert sigframe.restorable_xstate_size(raw, 0, fp.xstate_size - 64) == sigframe.FXSAVE_SIZE
    broken = bytearray(raw)
    broken[fp.xstate_size] ^= 1
    assert sigframe.restorable_xstate_size(broken, 0, fp.xstate_size) == sigframe.FXSAVE_SIZE
    legacy = bytearray(raw)
    legacy[464:468] = bytes(4)
    assert sigframe.restorable_xstate_size(legacy, 0, fp.xstate_size) == sigframe.FXSAVE_SIZE
