"""Host functions: the registry, the cove_hostcall ABI from C (cove.h) and from a
guest's python3 (cove_guest.py), and every error the guest can get."""

from __future__ import annotations

import logging
import subprocess

import pytest

from tests.conftest import GUESTS, needs_kvm

pytestmark = pytest.mark.timeout(120)


def test_default_has_host_print():
    from cove import HostFunctions

    hf = HostFunctions.default()
    assert hf.signatures() == {"host_print": (("str",), "i32")}
    assert len(HostFunctions()) == 0


def test_register_types_and_refusals():
    from cove import HostFunctions
    from cove.hostfuncs import f32, u64

    hf = HostFunctions()

    @hf.register("f", params=(int, float, bool, str, bytes, u64, f32), returns=None)
    def f(*a):  # pragma: no cover - never called
        return None

    assert hf.signatures()["f"] == (("i64", "f64", "bool", "str", "bytes", "u64", "f32"), "none")
    with pytest.raises(ValueError, match="already registered"):
        hf.register("f")(f)
    with pytest.raises(ValueError, match="unsupported host function type"):
        hf.register("g", params=(list,))
    with pytest.raises(ValueError, match="unsupported host function type"):
        hf.register("g", params=(None,))
    with pytest.raises(ValueError, match="1 to 255 bytes"):
        hf.register("", params=())


def _functions():
    from cove import HostFunctions
    from cove.hostfuncs import f32, f64, i32, i64, u32, u64

    hf = HostFunctions()
    calls = {"count": 0, "big": 0}
    hf.register("double_i32", params=(i32,), returns=i32)(lambda x: 2 * x)
    hf.register("inc_u32", params=(u32,), returns=u32)(lambda x: x + 1)
    hf.register("neg_i64", params=(i64,), returns=i64)(lambda x: -x)
    hf.register("max_u64", params=(u64,), returns=u64)(lambda x: (1 << 64) - 1)
    hf.register("half_f32", params=(f32,), returns=f32)(lambda x: x / 2)
    hf.register("half_f64", params=(f64,), returns=f64)(lambda x: x / 2)
    hf.register("not", params=(bool,), returns=bool)(lambda x: not x)
    hf.register("upper", params=(str,), returns=str)(lambda s: s.upper())
    hf.register("reverse", params=(bytes,), returns=bytes)(lambda b: b[::-1])
    hf.register("repeat", params=(str, i64), returns=str)(lambda s, n: s * n)

    @hf.register("count")
    def count() -> None:
        calls["count"] += 1

    @hf.register("fail", params=(i32,), returns=i32)
    def fail(x: int) -> int:
        raise ValueError(f"bad input {x}")

    hf.register("wrong_result", params=(i32,), returns=i32)(lambda x: "not an int")

    @hf.register("big", params=(u32,), returns=bytes)
    def big(n: int) -> bytes:
        calls["big"] += 1
        return b"b" * n

    hf.register("calls", returns=i64)(lambda: calls["big"])
    return hf, calls


@pytest.fixture(scope="module")
def hostcall_guest(tmp_path_factory):
    from cove.guest import DIR

    out = tmp_path_factory.mktemp("hc") / "hostcall"
    subprocess.run(["gcc", "-O1", "-Wall", "-static", f"-I{DIR}", "-o", str(out),
                    str(GUESTS / "hostcall.c")], check=True)
    return out


def _sandbox(guest, hf):
    from cove import Sandbox, SandboxConfig
    from cove.rootfs import MountSpec

    return Sandbox(config=SandboxConfig(memory="256M", timeout=60), host_functions=hf,
                   mounts=(MountSpec(str(guest.parent), "/g"),))


@needs_kvm
def test_c_guest_every_type_and_error(hostcall_guest, caplog):
    hf, calls = _functions()
    with _sandbox(hostcall_guest, hf) as sb, caplog.at_level(logging.WARNING, "cove.hostfuncs"):
        r = sb.run(["/g/hostcall"], capture_output=True)
    assert r.stdout == b"ok\n", r.stdout + r.stderr
    assert calls == {"count": 2, "big": 1}
    # The host function's exception was logged on the host, with its traceback.
    assert any("fail" in rec.getMessage() and rec.exc_info for rec in caplog.records)


@needs_kvm
def test_no_host_functions_is_enosys(hostcall_guest):
    with _sandbox(hostcall_guest, None) as sb:
        r = sb.run(["/g/hostcall", "nohf"], capture_output=True)
    assert r.stdout == b"ok\n", r.stdout + r.stderr


@needs_kvm
def test_python_guest_module(capfd):
    from cove import HostFunctions, Sandbox, SandboxConfig
    from cove.guest import DIR

    hf = HostFunctions.default()
    hf.register("lookup", params=(str,), returns=bytes)(
        lambda key: {"a": b"alpha"}.get(key, b"") * 30000)
    hf.register("scale", params=("i32", "f32", bool), returns="f64")(
        lambda a, b, c: a * b if c else 0.0)

    @hf.register("boom")
    def boom() -> None:
        raise KeyError("no such thing")

    # The helper module reaches the guest through a mount: the host path may be
    # under /tmp, which the sandbox replaces with its own.
    code = """
import sys; sys.path.insert(0, "/cove-guest")
import cove_guest as c
v = c.call("lookup", "a")
print(len(v), v[:10])
print(c.call("scale", -3, 0.5, True))
print(c.call("host_print", "printed by the host\\n"))
for name, args in (("boom", ()), ("missing", ()), ("scale", (1,))):
    try:
        c.call(name, *args)
    except c.HostCallError as e:
        print("error", e.errno, e.strerror)
print(c.describe("scale"))
"""
    from cove.rootfs import MountSpec

    with Sandbox(config=SandboxConfig(memory="256M", timeout=60), host_functions=hf,
                 mounts=(MountSpec(str(DIR), "/cove-guest"),)) as sb:
        r = sb.run(["python3", "-c", code], capture_output=True)
    lines = r.stdout.decode().splitlines()
    assert r.returncode == 0, r.stderr
    assert lines[0] == "150000 b'alphaalpha'"  # larger than the 64 KiB buffer: ERANGE + FETCH
    assert lines[1] == "-1.5"
    assert lines[2] == str(len("printed by the host\n"))
    assert lines[3] == "error 121 KeyError: 'no such thing'"
    assert lines[4].startswith("error 2 ")
    assert lines[5].startswith("error 22 ")
    assert lines[6] == "('f64', ['i32', 'f32', 'bool'])"
    assert "printed by the host" in capfd.readouterr().out
