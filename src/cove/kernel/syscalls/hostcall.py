"""cove_hostcall: the guest calls a host function by name (``cove.hostfuncs``
describes the ABI, the types and every errno).

Not a Linux syscall: its number (``COVE_HOSTCALL_NR``, 1000) lies above
Linux's table, so ``cove syscalls`` does not list it. Nothing a guest passes
may raise anything but ``Errno`` here; a host function's own exception is
turned into EREMOTEIO with its message in the result.
"""

from __future__ import annotations

import struct
import weakref

from cove.abi.errno import E, Errno
from cove.hostfuncs import (
    COVE_HOSTCALL_NR,
    MAX_ARG_BYTES,
    MAX_ARGS,
    OP_CALL,
    OP_DESCRIBE,
    OP_FETCH,
    TYPE_CODES,
    TYPE_ERROR,
    HostFunction,
)
from cove.kernel.syscall import TABLE, ULONG, Syscall
from cove.lazylog import getLogger

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from typing import Any

    from cove.kernel.task import Task

log = getLogger("cove.hostfuncs")  # logging is imported only if something is logged

VAL = struct.Struct("<IIQQ")  # struct cove_val: type, reserved, value, len
NAME_MAX = 255
_RANGES = {"i32": (-(1 << 31), (1 << 31) - 1), "u32": (0, (1 << 32) - 1),
           "i64": (-(1 << 63), (1 << 63) - 1), "u64": (0, (1 << 64) - 1)}
_F32, _F64 = struct.Struct("<f"), struct.Struct("<d")
_Q = struct.Struct("<Q")

# A result that did not fit the guest's buffer, kept for OP_FETCH (per thread).
_held: weakref.WeakKeyDictionary[Task, tuple[int, bytes]] = weakref.WeakKeyDictionary()


def cove_hostcall(t: Task, op: int, a1: int, a2: int, a3: int, a4: int) -> int:
    funcs = getattr(t.kernel, "hostfuncs", None)
    if funcs is None:
        raise Errno(E.ENOSYS)
    if op == OP_CALL:
        return _call(t, funcs, a1, a2, a3, a4)
    if op == OP_FETCH:
        return _fetch(t, a1)
    if op == OP_DESCRIBE:
        fn = _lookup(t, funcs, a1)
        codes = bytes([TYPE_CODES[fn.returns], *(TYPE_CODES[p] for p in fn.params)])
        return _put(t, a2, TYPE_CODES["bytes"], codes)
    raise Errno(E.EINVAL)


def _lookup(t: Task, funcs: Any, name_ptr: int) -> HostFunction:
    if not name_ptr:
        raise Errno(E.EFAULT)
    try:
        name = t.mm.read_cstring(name_ptr, NAME_MAX + 1).decode()
    except UnicodeDecodeError:
        raise Errno(E.ENOENT) from None
    fn = funcs.get(name)
    if fn is None:
        raise Errno(E.ENOENT)
    return fn


def _decode(t: Task, want: str, tag: int, value: int, length: int) -> Any:
    if tag != TYPE_CODES[want]:
        raise Errno(E.EINVAL)
    if want in _RANGES:
        bits = 32 if want in ("i32", "u32") else 64
        v = value & ((1 << bits) - 1)
        if want[0] == "i" and v >> (bits - 1):
            v -= 1 << bits
        return v
    if want == "f32":
        return _F32.unpack(_Q.pack(value)[:4])[0]
    if want == "f64":
        return _F64.unpack(_Q.pack(value))[0]
    if want == "bool":
        if value not in (0, 1):
            raise Errno(E.EINVAL)
        return bool(value)
    if length > MAX_ARG_BYTES:
        raise Errno(E.E2BIG)
    data = t.mm.read(value, length) if length else b""
    if want == "str":
        try:
            return data.decode()
        except UnicodeDecodeError:
            raise Errno(E.EILSEQ) from None
    return data


def _encode(want: str, result: Any) -> tuple[int, bytes | None]:
    """(value, None) for scalars, (0, data) for str/bytes; TypeError/ValueError
    when ``result`` does not fit the declared type (the host function's bug)."""
    if want in _RANGES:
        if isinstance(result, bool) or not isinstance(result, int):
            raise TypeError(f"returned {type(result).__name__}, declared {want}")
        lo, hi = _RANGES[want]
        if not lo <= result <= hi:
            raise ValueError(f"returned {result}, outside {want}")
        return result & ((1 << 64) - 1), None
    if want in ("f32", "f64"):
        if isinstance(result, bool) or not isinstance(result, (int, float)):
            raise TypeError(f"returned {type(result).__name__}, declared {want}")
        if want == "f32":
            return _Q.unpack(_F32.pack(float(result)) + bytes(4))[0], None
        return _Q.unpack(_F64.pack(float(result)))[0], None
    if want == "bool":
        if not isinstance(result, bool):
            raise TypeError(f"returned {type(result).__name__}, declared bool")
        return int(result), None
    if want == "str":
        if not isinstance(result, str):
            raise TypeError(f"returned {type(result).__name__}, declared str")
        return 0, result.encode()
    if want == "bytes":
        if not isinstance(result, (bytes, bytearray, memoryview)):
            raise TypeError(f"returned {type(result).__name__}, declared bytes")
        return 0, bytes(result)
    if result is not None:
        raise TypeError(f"returned {type(result).__name__}, declared no result")
    return 0, None


def _put(t: Task, ret: int, tag: int, data: bytes, *, truncate: bool = False) -> int:
    """Write a str/bytes result into the guest's ``ret`` buffer (ERANGE and
    keep it if it does not fit, unless ``truncate``)."""
    if not ret:
        raise Errno(E.EINVAL)
    _tag, _res, buf, cap = VAL.unpack(t.mm.read(ret, VAL.size))
    if len(data) > cap and truncate:
        data = data[:cap]
    if len(data) > cap:
        t.mm.write(ret, VAL.pack(tag, 0, buf, len(data)))
        _held[t] = (tag, data)
        raise Errno(E.ERANGE)
    if data:
        t.mm.write(buf, data)
    t.mm.write(ret, VAL.pack(tag, 0, buf, len(data)))
    return 0


def _call(t: Task, funcs: Any, name_ptr: int, args_ptr: int, nargs: int, ret: int) -> int:
    fn = _lookup(t, funcs, name_ptr)
    if nargs != len(fn.params) or nargs > MAX_ARGS:
        raise Errno(E.EINVAL)
    if fn.returns != "none" and not ret:
        raise Errno(E.EINVAL)
    raw = t.mm.read(args_ptr, VAL.size * nargs) if nargs else b""
    args = []
    for i, want in enumerate(fn.params):
        tag, _res, value, length = VAL.unpack_from(raw, i * VAL.size)
        args.append(_decode(t, want, tag, value, length))
    if ret:
        t.mm.read(ret, VAL.size)  # a bad result pointer fails before the call, not after
    _held.pop(t, None)
    try:
        value, data = _encode(fn.returns, fn.fn(*args))
    except Exception as e:  # the host function's failure, reported to the guest
        log.warning("host function %s failed", fn.name, exc_info=True)
        if ret:
            _put(t, ret, TYPE_ERROR, f"{type(e).__name__}: {e}".encode(), truncate=True)
        raise Errno(E.EREMOTEIO) from None
    if not ret:
        return 0
    tag = TYPE_CODES[fn.returns]
    if data is not None:
        return _put(t, ret, tag, data)
    _tag, _res, _buf, _cap = VAL.unpack(t.mm.read(ret, VAL.size))
    t.mm.write(ret, VAL.pack(tag, 0, value, 0))
    return 0


def _fetch(t: Task, ret: int) -> int:
    held = _held.get(t)
    if held is None:
        raise Errno(E.ENOENT)
    tag, data = held
    _put(t, ret, tag, data)  # ERANGE again if still too small; kept
    _held.pop(t, None)
    return 0


TABLE[COVE_HOSTCALL_NR] = Syscall(
    COVE_HOSTCALL_NR, "cove_hostcall", cove_hostcall, (ULONG, ULONG, ULONG, ULONG, ULONG),
    "full", "cove-specific: call a host function (cove.hostfuncs)")
