"""``loads``: ``json.loads`` without importing ``json``, for reading a snapshot
file's metadata on ``cove restore``.

Why: ``import json`` imports ``re`` and compiles six patterns at import time
(~2.5 ms of every restore, most of it in ``re``'s pure-Python compiler),
though decoding itself runs in ``_json``'s C scanner. This calls that same
scanner, with the options ``json.loads`` uses by default, so the values are
the same. Anything else (text the scanner does not take whole, bytes that
are not UTF-8) goes to ``json.loads``, which decides and raises its error:
the scanner reports errors through ``json.decoder``, so it cannot while that
is not imported. Where the accelerator is missing it is ``json.loads`` too.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from typing import Any

_WHITESPACE = " \t\n\r"  # JSON's, as json.loads skips around the value


class _Defaults:
    """The JSONDecoder attributes the C scanner reads: json.loads' defaults."""

    strict = True  # no control characters inside strings
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = float  # NaN, Infinity, -Infinity


_scan: Any = None


def loads(data: bytes | bytearray | str) -> Any:
    """``json.loads(data)``: the JSON value ``data`` holds, else json's ValueError."""
    global _scan
    if _scan is None:
        try:
            from _json import make_scanner

            _scan = make_scanner(_Defaults())
        except ImportError:  # pragma: no cover - a Python without the C accelerator
            _scan = False
    if _scan:
        try:
            text = (data if isinstance(data, str) else bytes(data).decode()).strip(_WHITESPACE)
            value, end = _scan(text, 0)
            if end == len(text):
                return value
        except Exception:  # not one JSON value in UTF-8: json.loads decides, says why
            pass
    import json

    return json.loads(data)
