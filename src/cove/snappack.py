"""Big int-keyed containers of a snapshot's state, packed into arrays.

Most of a guest kernel's state by count is page bookkeeping: vpn -> frame
maps, sets of copy-on-write pages, the page cache's frame -> (file, offset)
index. Pickled item by item, those are most of a restore's unpickling time
and of each restored sandbox's Python memory. Packed, a restore rebuilds each
with one C-level ``dict(zip(...))`` from lists that are decoded once per
snapshot and shared by all its restores (ints and tuples of plain values are
immutable, so sharing them is invisible).

What packs: a dict or set with at least ``MIN`` items whose keys are ints in
[0, 2**63) and whose values are all None, all such ints, or all tuples of one
length whose columns are each such ints or a few distinct plain values
(``_plain``: ints, strings, bytes, None, and tuples of them).
"""

from __future__ import annotations

import array
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from typing import Any

try:  # the C module is what pickle.py re-exports; importing pickle.py costs ~1 ms
    import _pickle as pickle
except ImportError:  # pragma: no cover - a Python without the C accelerator
    import pickle  # type: ignore[no-redef]

MIN = 32  # smaller containers cost less as they are
_INT_MAX = 1 << 63
_MAX_DISTINCT = 1 << 16  # object columns index their distinct values with u16


def _ints(items: Any) -> bytes | None:
    for x in items:
        if type(x) is not int or not 0 <= x < _INT_MAX:
            return None
    a = array.array("q", items)
    if sys.byteorder != "little":  # pragma: no cover
        a.byteswap()
    return a.tobytes()


def _plain(x: Any) -> bool:
    t = type(x)
    if t is int or t is str or t is bytes or x is None:
        return True
    return t is tuple and all(_plain(y) for y in x)


def _column(col: list[Any]) -> tuple[Any, ...] | None:
    packed = _ints(col)
    if packed is not None:
        return ("i", packed)
    index: dict[Any, int] = {}
    for x in col:
        if x not in index:
            if len(index) >= _MAX_DISTINCT or not _plain(x):
                return None
            index[x] = len(index)
    idx = array.array("H", [index[x] for x in col])
    if sys.byteorder != "little":  # pragma: no cover
        idx.byteswap()
    return ("o", tuple(index), idx.tobytes())


def pack(obj: dict[Any, Any] | set[Any]) -> tuple[str, bytes, Any] | None:
    """(kind, keys, values) for ``unpack``, or None if ``obj`` does not pack."""
    keys = _ints(obj)
    if keys is None:
        return None
    if type(obj) is set:
        return ("set", keys, None)
    values = list(obj.values())  # type: ignore[union-attr]
    if all(v is None for v in values):
        return ("keys", keys, None)
    ints = _ints(values)
    if ints is not None:
        return ("dict", keys, ints)
    width = len(values[0]) if type(values[0]) is tuple else 0
    if not 0 < width <= 8 or any(type(v) is not tuple or len(v) != width for v in values):
        return None
    cols = []
    for c in range(width):
        col = _column([v[c] for v in values])
        if col is None:
            return None
        cols.append(col)
    return ("rows", keys, tuple(cols))


def _decode(data: Any, code: str) -> list[Any]:
    size = array.array(code).itemsize
    if type(data) is not bytes or len(data) % size:
        raise pickle.UnpicklingError("damaged packed container")
    a = array.array(code)
    a.frombytes(data)
    if sys.byteorder != "little":  # pragma: no cover
        a.byteswap()
    return a.tolist()


def decode(kind: str, keys: bytes, values: Any) -> tuple[list[int], list[Any] | None]:
    """The keys and values ``pack`` packed, as lists (decode once, ``build`` often)."""
    ks = _decode(keys, "q")
    if kind in ("set", "keys"):
        return ks, None
    if kind == "dict":
        vs = _decode(values, "q")
    elif kind == "rows" and type(values) is tuple and values:
        cols = []
        for col in values:
            if col[0] == "i" and len(col) == 2:
                cols.append(_decode(col[1], "q"))
            elif col[0] == "o" and len(col) == 3 and type(col[1]) is tuple:
                distinct = col[1]
                try:
                    cols.append([distinct[i] for i in _decode(col[2], "H")])
                except IndexError:
                    raise pickle.UnpicklingError("damaged packed container") from None
            else:
                raise pickle.UnpicklingError("damaged packed container")
        if any(len(c) != len(ks) for c in cols):
            raise pickle.UnpicklingError("damaged packed container")
        vs = list(zip(*cols, strict=True))
    else:
        raise pickle.UnpicklingError(f"unknown packed container {kind!r}")
    if len(vs) != len(ks):
        raise pickle.UnpicklingError("damaged packed container")
    return ks, vs


def template(kind: str, keys: bytes, values: Any) -> dict[Any, Any] | set[int]:
    """The container ``pack`` packed, decoded once per snapshot: each restore
    takes a ``copy()`` (a dict copy clones its table, ~10x faster than
    rebuilding it; the items are the template's, shared), or, for the page
    maps, reads through to it (``cove.kernel.basemap``: nothing copied)."""
    ks, vs = decode(kind, keys, values)
    if kind == "set":
        return set(ks)
    if kind == "keys":
        return dict.fromkeys(ks)
    return dict(zip(ks, vs, strict=True))  # type: ignore[arg-type]
