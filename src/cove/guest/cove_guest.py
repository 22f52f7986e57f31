"""cove_guest: call the sandbox's host functions from a guest's python3.

Standalone (only ctypes and the standard library), so it can be copied into
any image or imported from cove's own directory:

    import cove_guest
    data = cove_guest.call("lookup", "key")     # arguments converted to the declared types
    cove_guest.call("host_print", "hello\\n")

Raises ``HostCallError`` (an OSError with the errno; for a failed host
function, EREMOTEIO and the host's message).
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from typing import Any

COVE_HOSTCALL_NR = 1000
OP_CALL, OP_FETCH, OP_DESCRIBE = 0, 1, 2
TYPES = {0: "none", 1: "i32", 2: "u32", 3: "i64", 4: "u64", 5: "f32", 6: "f64", 7: "bool",
         8: "str", 9: "bytes", 10: "error"}
CODES = {v: k for k, v in TYPES.items()}
_INT_BITS = {"i32": 32, "u32": 32, "i64": 64, "u64": 64}


class CoveVal(ctypes.Structure):
    _fields_ = [("type", ctypes.c_uint32), ("reserved", ctypes.c_uint32),
                ("value", ctypes.c_uint64), ("len", ctypes.c_uint64)]


class HostCallError(OSError):
    """A host call failed: ``errno`` says how; ``strerror`` carries the host's
    message when the host function itself raised (EREMOTEIO)."""


_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_syscall.argtypes = [ctypes.c_long] * 6
_signatures: dict[str, tuple[str, list[str]]] = {}


def _raw(op: int, a1: int, a2: int = 0, a3: int = 0, a4: int = 0) -> int:
    r = _syscall(COVE_HOSTCALL_NR, op, a1, a2, a3, a4)
    return -ctypes.get_errno() if r == -1 else r


def _fail(err: int, message: str | None = None) -> HostCallError:
    return HostCallError(err, message or os.strerror(err))


def describe(name: str) -> tuple[str, list[str]]:
    """(result type, parameter types) of a host function."""
    sig = _signatures.get(name)
    if sig is None:
        buf = ctypes.create_string_buffer(64)
        ret = CoveVal(0, 0, ctypes.addressof(buf), len(buf))
        err = _raw(OP_DESCRIBE, ctypes.addressof(ctypes.create_string_buffer(name.encode())),
                   ctypes.addressof(ret))
        if err < 0:
            raise _fail(-err, f"{name}: {os.strerror(-err)}")
        codes = buf.raw[:ret.len]
        sig = _signatures[name] = (TYPES[codes[0]], [TYPES[c] for c in codes[1:]])
    return sig


def _pack(kind: str, v: Any, keep: list[Any]) -> CoveVal:
    code = CODES[kind]
    if kind in _INT_BITS:
        return CoveVal(code, 0, int(v) & ((1 << 64) - 1), 0)
    if kind == "f32":
        return CoveVal(code, 0, struct.unpack("<I", struct.pack("<f", float(v)))[0], 0)
    if kind == "f64":
        return CoveVal(code, 0, struct.unpack("<Q", struct.pack("<d", float(v)))[0], 0)
    if kind == "bool":
        return CoveVal(code, 0, 1 if v else 0, 0)
    data = v.encode() if isinstance(v, str) else bytes(v)
    buf = ctypes.create_string_buffer(data, len(data) or 1)
    keep.append(buf)
    return CoveVal(code, 0, ctypes.addressof(buf), len(data))


def _unpack(ret: CoveVal, buf: Any) -> Any:
    kind = TYPES.get(ret.type, "none")
    if kind in _INT_BITS:
        bits = _INT_BITS[kind]
        v = ret.value & ((1 << bits) - 1)
        return v - (1 << bits) if kind[0] == "i" and v >> (bits - 1) else v
    if kind == "f32":
        return struct.unpack("<f", struct.pack("<I", ret.value & 0xFFFFFFFF))[0]
    if kind == "f64":
        return struct.unpack("<d", struct.pack("<Q", ret.value))[0]
    if kind == "bool":
        return bool(ret.value)
    if kind in ("str", "bytes"):
        data = ctypes.string_at(buf, ret.len) if ret.len else b""
        return data.decode() if kind == "str" else data
    return None


def call(name: str, *args: Any, buffer_size: int = 1 << 16) -> Any:
    """Call host function ``name``; arguments are converted to its declared
    parameter types, the result to a Python value (None for no result)."""
    _result, params = describe(name)
    if len(args) != len(params):
        raise _fail(errno.EINVAL, f"{name} takes {len(params)} arguments, got {len(args)}")
    keep: list[Any] = []
    packed = [_pack(k, a, keep) for k, a in zip(params, args, strict=True)]
    vals = (CoveVal * max(1, len(args)))(*packed)
    buf = ctypes.create_string_buffer(buffer_size)
    ret = CoveVal(0, 0, ctypes.addressof(buf), buffer_size)
    name_buf = ctypes.create_string_buffer(name.encode())
    err = _raw(OP_CALL, ctypes.addressof(name_buf), ctypes.addressof(vals), len(args),
               ctypes.addressof(ret))
    if err == -errno.ERANGE:
        buf = ctypes.create_string_buffer(ret.len)
        ret = CoveVal(0, 0, ctypes.addressof(buf), len(buf))
        err = _raw(OP_FETCH, ctypes.addressof(ret))
    if err == -errno.EREMOTEIO:
        raise _fail(errno.EREMOTEIO, ctypes.string_at(buf, ret.len).decode(errors="replace"))
    if err < 0:
        raise _fail(-err, f"{name}: {os.strerror(-err)}")
    return _unpack(ret, buf)
