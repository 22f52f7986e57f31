"""BaseDict / BaseSet (shared read-only base + own changes) against dict / set."""

from __future__ import annotations

import pickle
import random

import pytest

from cove.kernel.basemap import BaseDict, BaseSet, get_many


def _check_dict(d: BaseDict, ref: dict[int, int]) -> None:
    assert len(d) == len(ref)
    assert dict(d.items()) == ref
    assert sorted(d) == sorted(ref)
    assert d == ref and ref == d
    for k in range(-2, 70):
        assert (k in d) == (k in ref)
        assert d.get(k, "x") == ref.get(k, "x")


def test_dict_matches_dict_under_random_changes() -> None:
    rng = random.Random(6)
    base = {k: k * 10 for k in range(0, 60, 2)}
    frozen = dict(base)
    d, ref = BaseDict(base), dict(base)
    for _ in range(3000):
        k = rng.randrange(-2, 70)
        op = rng.randrange(6)
        if op == 0:
            d[k] = ref[k] = rng.randrange(1000)
        elif op == 1:
            assert d.pop(k, None) == ref.pop(k, None)
        elif op == 2:
            if k in ref:
                del d[k]
                del ref[k]
            else:
                with pytest.raises(KeyError):
                    del d[k]
        elif op == 3:
            if k in ref:
                assert d[k] == ref[k]
            else:
                with pytest.raises(KeyError):
                    d[k]
        elif op == 4:
            c = d.copy()  # a fork: changes to the copy stay there
            c[k] = -1
            c.pop(k + 1, None)
        else:
            more = {rng.randrange(-2, 70): rng.randrange(1000) for _ in range(3)}
            d.update(more.items())
            ref.update(more)
        _check_dict(d, ref)
        assert get_many(d, range(-2, 70)) == get_many(ref, range(-2, 70))
        assert d.flat() == ref and list(d.values()) == [ref[k] for k in d]
    assert base == frozen  # the shared base is never written


def test_dict_clear_and_pickle_flat() -> None:
    base = {k: k for k in range(40)}
    d = BaseDict(base)
    d[100] = 1
    del d[3]
    out = pickle.loads(pickle.dumps(d))
    assert type(out) is dict and out == {**{k: k for k in range(40) if k != 3}, 100: 1}
    d.clear()
    assert len(d) == 0 and list(d) == [] and 5 not in d and base[5] == 5
    d[5] = 7
    assert d == {5: 7}


def test_set_matches_set_under_random_changes() -> None:
    rng = random.Random(7)
    base = set(range(0, 60, 3))
    frozen = set(base)
    s, ref = BaseSet(base), set(base)
    for _ in range(3000):
        k = rng.randrange(-2, 70)
        op = rng.randrange(4)
        if op == 0:
            s.add(k)
            ref.add(k)
        elif op == 1:
            s.discard(k)
            ref.discard(k)
        elif op == 2:
            ks = [rng.randrange(70) for _ in range(3)]
            s.update(ks)
            ref.update(ks)
        else:
            c = s.copy()
            c.add(k)
            c.discard(k + 1)
        assert len(s) == len(ref) and set(s) == ref and s == ref
        assert all((k in s) == (k in ref) for k in range(-2, 70))
        assert s.isdisjoint({k}) == ref.isdisjoint({k})
        assert s.flat() == ref
    assert base == frozen
    out = pickle.loads(pickle.dumps(s))
    assert type(out) is set and out == ref
    s.clear()
    assert len(s) == 0 and not s and 0 in base
