"""cove.jsonread.loads answers as json.loads does: the same values for JSON,
a ValueError (json's own) for anything else."""

from __future__ import annotations

import json
import math

import pytest

from cove.jsonread import loads

GOOD = [
    b'{"a": 1}',
    b' \t{"cove": "0.1.0", "env": {"K": "v=1"}, "kvm": {"cpus": [[6, 7]]}}\r\n',
    b'[1, -0, 2.5e3, -1.25E-2, true, false, null, "\\u00e9\\n\\"\\\\", {}]',
    '{"\u00e9": "\u2603"}'.encode(),
    b'"text"', b"3", b"[]", b"Infinity", b"-Infinity",
    b'{"a": 1, "a": 2}',
]
BAD = [b"", b"  ", b'{"a": }', b'{"a": 1,}', b'{"a": 1} x', b"{}{}", b"[1, 2", b'{"a": "\x01"}',
       b"\xff", b"{'a': 1}", b"nul", b'{"a": 01}', b"\x00"]


@pytest.mark.parametrize("raw", GOOD)
def test_values_are_json_loads_values(raw: bytes) -> None:
    assert loads(raw) == json.loads(raw)
    assert loads(raw.decode()) == json.loads(raw)
    assert loads(bytearray(raw)) == json.loads(raw)


def test_nan_as_json_loads() -> None:
    assert math.isnan(loads(b'{"x": NaN}')["x"])


def test_other_encodings_as_json_loads() -> None:
    # json.loads takes a UTF-8 BOM and UTF-16/32 bytes; so does this (through it).
    for raw in (b"\xef\xbb\xbf{}", '{"a": [1]}'.encode("utf-16"), '[2]'.encode("utf-32-le")):
        assert loads(raw) == json.loads(raw)


@pytest.mark.parametrize("raw", BAD)
def test_malformed_is_a_value_error_as_json_loads(raw: bytes) -> None:
    with pytest.raises(ValueError) as ours:
        loads(raw)
    try:
        json.loads(raw)
    except ValueError as e:
        assert type(ours.value) is type(e)
    else:  # pragma: no cover - BAD must be bad for json too
        pytest.fail(f"json.loads accepts {raw!r}")
