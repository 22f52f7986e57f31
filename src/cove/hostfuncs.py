"""Host functions: Python functions a guest may call by name, with typed
arguments and results, through one cove-specific syscall.

    hf = HostFunctions()                   # HostFunctions.default() adds "host_print"
    @hf.register("lookup", params=(str,), returns=bytes)
    def lookup(key: str) -> bytes: ...
    Sandbox(config=..., host_functions=hf)

Types: ``i32 u32 i64 u64 f32 f64 bool str bytes`` (the names, or the
constants below; Python's ``int``/``float``/``bool``/``str``/``bytes`` mean
i64/f64/bool/str/bytes) and ``None`` for no result.

The guest ABI (``src/cove/guest/cove.h`` and ``cove_guest.py`` wrap it)::

    syscall(COVE_HOSTCALL_NR, op, a1, a2, a3, a4)
    op CALL     a1 = name (C string), a2 = struct cove_val args[a3], a4 = struct cove_val *ret
    op FETCH    a1 = struct cove_val *ret: the result a CALL kept after ERANGE
    op DESCRIBE a1 = name, a2 = ret: bytes [result type, parameter types...]

    struct cove_val { u32 type; u32 reserved; u64 value; u64 len; }   (24 bytes)

``value`` holds an integer (two's complement), a float's bits (f32 in the
low 32 bits) or, for str/bytes, a pointer to ``len`` bytes. For a str/bytes
result the guest passes a buffer in ``ret.value``/``ret.len``; cove writes
the type and length; a result longer than the buffer gives ERANGE with
``ret.len`` set to the size needed, and FETCH with a big enough buffer gets it
(the function is not called again).

Errors the guest sees (the call returns -errno): ENOSYS no host functions in
this sandbox; ENOENT no function of that name; EINVAL wrong number of
arguments, a type tag that is not the declared one, a bool that is not 0/1,
an unknown op, a missing result buffer; EFAULT a bad pointer; EILSEQ a str
that is not UTF-8; E2BIG an argument over 16 MiB; ERANGE see above;
EREMOTEIO the host function raised (or returned something that does not fit
its declared type): ``ret`` then has type ERROR and the message as bytes, and
the exception is logged on the host.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from cove.dataclass import dataclass
from cove.lazylog import getLogger

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from typing import Any

    from cove.kernel.kernel import Kernel

log = getLogger("cove.hostfuncs")  # logging is imported only if something is logged

COVE_HOSTCALL_NR = 1000  # above Linux's last x86-64 syscall (469); never a Linux number soon
OP_CALL, OP_FETCH, OP_DESCRIBE = 0, 1, 2

# Type codes in struct cove_val.type.
TYPE_CODES = {"none": 0, "i32": 1, "u32": 2, "i64": 3, "u64": 4, "f32": 5, "f64": 6,
              "bool": 7, "str": 8, "bytes": 9}
TYPE_ERROR = 10  # only in a result: the host function failed, the message is its bytes
TYPE_NAMES = {v: k for k, v in TYPE_CODES.items()}
MAX_ARGS = 16
MAX_ARG_BYTES = 16 << 20

i32, u32, i64, u64, f32, f64 = "i32", "u32", "i64", "u64", "f32", "f64"
_PY_TYPES: dict[Any, str] = {int: "i64", float: "f64", bool: "bool", str: "str",
                             bytes: "bytes", None: "none", type(None): "none"}

Signature = tuple[tuple[str, ...], str]


def type_name(t: Any, *, result: bool = False) -> str:
    """A type given to ``register`` as its canonical name."""
    name = _PY_TYPES.get(t) if not isinstance(t, str) else t
    if name not in TYPE_CODES or (name == "none" and not result):
        raise ValueError(f"unsupported host function type {t!r} (use one of "
                         f"{', '.join(n for n in TYPE_CODES if n != 'none')}, or None for "
                         "no result)")
    return name


def format_signature(name: str, sig: Signature) -> str:
    params, ret = sig
    return f"{name}({', '.join(params)}) -> {ret}"


@dataclass(frozen=True)
class HostFunction:
    name: str
    fn: Callable[..., Any]
    params: tuple[str, ...]
    returns: str

    @property
    def signature(self) -> Signature:
        return (self.params, self.returns)


class HostFunctions:
    """A set of host functions for a sandbox; see the module docstring."""

    def __init__(self) -> None:
        self._funcs: dict[str, HostFunction] = {}

    @classmethod
    def default(cls) -> HostFunctions:
        """A set with ``host_print(str) -> i32``: writes the text to the host's
        stdout, returns the number of bytes written."""
        hf = cls()
        hf.register("host_print", params=(str,), returns=i32)(_host_print)
        return hf

    def register(self, name: str, params: tuple[Any, ...] = (), returns: Any = None
                 ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: make ``fn`` callable by the guest as ``name``."""
        if not name or len(name.encode()) > 255 or "\0" in name:
            raise ValueError(f"host function name {name!r}: 1 to 255 bytes, no NUL")
        ptypes = tuple(type_name(p) for p in params)
        if len(ptypes) > MAX_ARGS:
            raise ValueError(f"host function {name}: at most {MAX_ARGS} parameters")
        rtype = type_name(returns, result=True)

        def add(fn: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._funcs:
                raise ValueError(f"host function {name!r} is already registered")
            self._funcs[name] = HostFunction(name, fn, ptypes, rtype)
            return fn

        return add

    def get(self, name: str) -> HostFunction | None:
        return self._funcs.get(name)

    def signatures(self) -> dict[str, Signature]:
        """name -> (parameter types, result type)."""
        return {n: f.signature for n, f in self._funcs.items()}

    def __contains__(self, name: object) -> bool:
        return name in self._funcs

    def __len__(self) -> int:
        return len(self._funcs)

    def attach(self, kernel: Kernel) -> None:
        """Let ``kernel``'s guests call these functions (the syscall handler in
        cove.kernel.syscalls.hostcall looks them up here)."""
        kernel.hostfuncs = self  # type: ignore[attr-defined]


def _host_print(text: str) -> int:
    data = text.encode()
    out = sys.stdout
    out.write(text)
    out.flush()
    return len(data)
