"""cove's signal frames against the host kernel's: the same static probe
(tests/abi/sigframe_probe.c) gets a signal delivered natively and in a kvm
sandbox, dumps the frame, and everything that does not depend on addresses or
pids must be identical; what does is checked against cove's placement rule."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from cove.abi import flags as F
from cove.abi.structs import sigframe
from cove.abi.structs.sigframe import FPSTATE
from tests.conftest import needs_kvm

pytestmark = [needs_kvm, pytest.mark.timeout(300)]

PROBE = Path(__file__).parent.parent / "abi" / "sigframe_probe.c"
MODES = ["raise", "altstack", "segv", "chld", "timer", "sigqueue"]
# gregs that hold neither addresses nor pids in this probe
STABLE_GREGS = (F.REG_RIP, F.REG_EFL, F.REG_CSGSFS, F.REG_ERR, F.REG_TRAPNO, F.REG_OLDMASK,
                F.REG_CR2)
ARITH_FLAGS = 0x8D5


def _parse(text: str) -> dict:
    out: dict = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key in ("frame", "fp", "kact"):
            out[key] = bytes.fromhex(value)
        elif key == "gregs":
            out[key] = [int(v) for v in value.split()]
        else:
            out[key] = int(value)
    return out


@pytest.fixture(scope="module")
def probe(guest_dir):
    exe = guest_dir / "sigframe_probe"
    if not exe.exists():
        subprocess.run(["gcc", "-O1", "-static", "-no-pie", "-o", str(exe), str(PROBE)],
                       check=True)
    return exe


@pytest.mark.parametrize("mode", MODES)
def test_frame_matches_the_host_kernel(probe, cove_run, mode):
    native = subprocess.run([str(probe), mode], capture_output=True, text=True, timeout=30)
    assert native.returncode == 0, native.stderr
    r = cove_run([f"/guests/{probe.name}", mode])
    assert r.returncode == 0, r.stderr.decode()
    host, cove = _parse(native.stdout), _parse(r.stdout.decode())

    for key in ("uc_flags", "uc_link", "sigmask", "ss_flags", "ss_size", "handler",
                "si_signo", "si_errno", "si_code", "si_status", "si_value", "si_overrun"):
        assert cove[key] == host[key], key
    assert cove["kact"] == host["kact"]  # the kernel sigaction glibc registered
    for i in STABLE_GREGS:
        want, got = host["gregs"][i], cove["gregs"][i]
        if i == F.REG_EFL:
            # The arithmetic flags (CF PF AF ZF SF OF) depend on the addresses the
            # code computed just before the signal; compare the rest.
            want, got = want & ~ARITH_FLAGS, got & ~ARITH_FLAGS
        assert got == want, i
    if mode == "segv":
        assert cove["si_addr"] == host["si_addr"] == 0x10
    if mode in ("raise", "altstack", "sigqueue"):
        assert cove["si_pid"] == cove["pid"]
    if mode == "chld":
        assert cove["si_pid"] == cove["child"]
    if mode == "altstack":
        assert cove["ss_sp"] == cove["alt_sp"]

    hfp, cfp = FPSTATE.read(host["fp"]), FPSTATE.read(cove["fp"])
    assert (cfp.magic1, cfp.cwd, cfp.mxcsr) == (hfp.magic1, hfp.cwd, hfp.mxcsr)
    if cfp.xfeatures == hfp.xfeatures:  # the same XSAVE features enabled as the host
        assert (cfp.extended_size, cfp.xstate_size) == (hfp.extended_size, hfp.xstate_size)

    # Addresses: where cove put the frame follows the kernel's rule exactly.
    top = cove["alt_sp"] + cove["alt_size"] if mode == "altstack" else None
    plan = sigframe.rt_sigframe(cove["gregs"][F.REG_RSP], cfp.extended_size, top)
    assert (plan.rsp, plan.ucontext, plan.siginfo, plan.fpstate) == (
        cove["entry"], cove["uc"], cove["info"], cove["fpstate"])
