"""Packed containers in snapshot state (cove.snappack, and how cove.snapstate
uses them): exact round trips, one object stays one object, damaged data is
an UnpicklingError, and what does not pack travels as ordinary pickle."""

from __future__ import annotations

import pickle

import pytest

from cove import snappack, snapstate

FILE = (8, 1234, 4096, 17, 18)  # a page cache version key: a tuple of ints


def _round(obj):
    packed = snappack.pack(obj)
    assert packed is not None
    return snappack.template(*packed)


def test_round_trips():
    frames = {(1 << 35) + i: 1000 + i for i in range(100)}
    assert _round(frames) == frames and list(_round(frames)) == list(frames)  # order kept
    cow = set(range(5000, 5100))
    assert _round(cow) == cow
    hot = dict.fromkeys(range(40))
    assert _round(hot) == hot
    rows = {f: (FILE if f % 2 else (9, 1, 2, 3, 4), f * 3) for f in range(64)}
    assert _round(rows) == rows
    strs = {i: ("a" * (i % 3), None, b"x") for i in range(50)}
    assert _round(strs) == strs


def test_what_does_not_pack():
    assert snappack.pack({-1: 2, **{i: i for i in range(40)}}) is None  # negative key
    assert snappack.pack({i: 1 << 64 for i in range(40)}) is None  # value too big
    assert snappack.pack({str(i): i for i in range(40)}) is None
    assert snappack.pack({i: [i] for i in range(40)}) is None  # mutable values
    assert snappack.pack({i: (object(),) for i in range(40)}) is None
    assert snappack.pack({i: (1,) if i else (1, 2) for i in range(40)}) is None
    assert snappack.pack({True: 1, **{i: i for i in range(2, 40)}}) is None  # bool is not int


def test_damaged_data_is_an_unpickling_error():
    kind, keys, values = snappack.pack({i: i for i in range(40)})
    for bad in ((kind, keys[:-3], values), (kind, keys, values[:-8]), ("what", keys, values),
                ("rows", keys, (("o", (1,), b"\x05\x00" * 40),)),
                ("rows", keys, (("z", b""),)), (kind, "text", values)):
        with pytest.raises(pickle.UnpicklingError):
            snappack.template(*bad)


def test_state_keeps_one_object_and_shares_items_between_restores():
    big = {i: i * 2 for i in range(1000, 1100)}
    cow = set(range(300))
    small = {1: 2}
    state = {"a": big, "b": big, "c": [big, cow], "small": small}
    data = snapstate.dump(snapstate.CaptureInfo(None, state))
    assert pickle.dumps(big) not in data  # it really travelled packed
    ints: dict = {}
    first = snapstate.load(data, None, ints)["vfs"]
    second = snapstate.load(data, None, ints)["vfs"]
    for got in (first, second):
        assert got == state
        assert got["a"] is got["b"] is got["c"][0]
    assert first["a"] is not second["a"]  # each restore has its own container...
    first["a"][1000] = -1
    assert second["a"][1000] == 2000  # ... which it may change alone
    k = next(iter(second["c"][1] - {0, 1, 2}))
    assert any(k is x for x in first["c"][1])  # ... but the int objects are shared
