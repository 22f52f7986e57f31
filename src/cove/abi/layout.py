"""`Layout`: a C struct of the x86-64 Linux ABI as a precompiled `struct.Struct`.

A layout is declared as text: the C type it mirrors on the first line, then
one member per line, in memory order:

    <format> [<c member path> [<python name>]]

``format`` is one `struct` code (``b B h H i I q Q``), ``Ns`` for a byte array or
``Nx`` for padding. The C member path is what `offsetof` would take
(``st_atim.tv_sec``, ``uc_mcontext.rip``); it documents the member and lets the
tests check every offset and size against the C headers. Padding may name a C
member too (``24x __unused``): it is then checked but not packed as a field.
The python name defaults to the C path with ``.``/``[``/``]`` turned into
``_``.

Every layout covers its whole C size with explicit padding, so
``pack_into`` writes every byte of the struct: nothing stale (or secret) left
in a guest buffer survives in the padding.

The hot path uses the bound `struct.Struct` methods directly:
``STAT.pack_into(buf, off, *values)`` and ``STAT.unpack_from(buf, off)``
allocate nothing beyond their result. ``read``/``write``/``build`` trade a
little speed for field names.
"""

from __future__ import annotations

import struct
from collections import namedtuple
from collections.abc import Callable
from functools import cached_property

from cove.dataclass import dataclass

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from typing import Any

_CODES = frozenset("xbBhHiIqQs")  # struct codes a layout line may use (no re: ~2 ms a start)


@dataclass(frozen=True, slots=True)
class Member:
    """One line of a layout: where it is and what C member it mirrors."""

    name: str | None  # python field name; None for padding
    cpath: str | None  # the C member path for offsetof, if any
    offset: int
    size: int
    code: str


class Layout:
    """A little-endian C struct with named fields; see the module docstring.

    The spec is parsed on first use of the layout (cove declares ~50 and a run
    uses a few; parsing them all cost ~2.5 ms of every start). After that every
    attribute is a plain instance attribute: the hot path never comes back here.
    """

    # Set by _parse (the annotations say what each is).
    ctype: str
    name: str
    members: tuple[Member, ...]
    struct: struct.Struct
    size: int
    fields: tuple[str, ...]
    offsets: dict[str, int]
    _defaults: dict[str, Any]
    pack_into: Callable[..., None]
    unpack_from: Callable[..., tuple[Any, ...]]
    pack: Callable[..., bytes]

    def __init__(self, spec: str) -> None:
        self._spec = spec

    def __getattr__(self, attr: str) -> Any:
        # Only for attributes not set yet: parse (idempotent, so two threads may
        # both do it), then the instance has them all.
        spec = self.__dict__.get("_spec")
        if spec is None or attr.startswith("__") or attr in self.__dict__:
            raise AttributeError(attr)
        self._parse(spec)
        return object.__getattribute__(self, attr)

    def _parse(self, spec: str) -> None:
        lines = [ln.split("#", 1)[0].strip() for ln in spec.splitlines()]
        lines = [ln for ln in lines if ln]
        self.ctype = lines[0]  # the C type this mirrors, e.g. "struct stat"
        self.name = name = self.ctype.removeprefix("struct ").strip()
        members: list[Member] = []
        codes: list[str] = []
        offset = 0
        for line in lines[1:]:
            code, *rest = line.split()
            count, kind = code[:-1], code[-1]
            if kind not in _CODES or (count and (not count.isdecimal() or kind not in "xs")) \
                    or len(rest) > 2:
                raise ValueError(f"{name}: bad layout line {line!r}")
            size = struct.calcsize("<" + code)
            cpath = rest[0] if rest else None
            if kind == "x":
                pyname = None
            elif len(rest) == 2:
                pyname = rest[1]
            elif cpath is not None:
                pyname = cpath.replace(".", "_").replace("[", "_").replace("]", "")
            else:
                raise ValueError(f"{name}: field without a name: {line!r}")
            members.append(Member(pyname, cpath, offset, size, code))
            codes.append(code)
            offset += size
        fields = tuple(m.name for m in members if m.name is not None)
        if len(set(fields)) != len(fields):
            raise ValueError(f"{name}: duplicate field names")
        self.members = tuple(members)
        st = self.struct = struct.Struct("<" + "".join(codes))
        self.size = st.size
        self.fields = fields
        self.offsets = {m.name: m.offset for m in members if m.name}
        self._defaults = {
            m.name: (b"" if m.code.endswith("s") else 0) for m in members if m.name is not None
        }
        # Bound methods of the precompiled Struct: calling them costs no lookup.
        self.pack_into = st.pack_into
        self.unpack_from = st.unpack_from
        self.pack = st.pack

    @cached_property
    def Tuple(self) -> Any:
        """The named tuple `read` returns, built on first use (a namedtuple costs
        ~0.1 ms and few of the ~50 layouts are read by name in a run)."""
        return namedtuple(self.name, self.fields)  # type: ignore[misc]

    def read(self, buf: Any, offset: int = 0) -> Any:
        """Unpack into a named tuple (``.st_size`` etc.)."""
        return self.Tuple._make(self.struct.unpack_from(buf, offset))

    def values(self, **fields: Any) -> list[Any]:
        """Positional values for `pack`/`pack_into`; unnamed fields are zero."""
        unknown = fields.keys() - self._defaults.keys()
        if unknown:
            raise TypeError(f"{self.name} has no field(s) {sorted(unknown)}")
        return [fields.get(f, d) for f, d in self._defaults.items()]

    def write(self, buf: Any, offset: int = 0, **fields: Any) -> None:
        """Pack by field name into ``buf`` at ``offset``; omitted fields are zero."""
        self.struct.pack_into(buf, offset, *self.values(**fields))

    def build(self, **fields: Any) -> bytes:
        """Pack by field name into new bytes; omitted fields are zero."""
        return self.struct.pack(*self.values(**fields))

    def __repr__(self) -> str:
        return f"<Layout {self.name} ({self.ctype}) {self.size} bytes>"
