"""cove.dataclass behaves as dataclasses for every shape cove uses.

Each shape is declared twice from the same body, once with each decorator, and
the two are compared: constructor arguments and errors, defaults and factories,
eq/hash/repr, frozen errors, slots, pickles (byte for byte), replace.
"""

from __future__ import annotations

import copy
import dataclasses
import subprocess
import sys
from typing import Any, ClassVar

import pytest

import cove.dataclass as cd


def _pair(build: Any) -> tuple[type, type]:
    """build(dataclass, field) -> class; one class per implementation."""
    return build(cd.dataclass, cd.field), build(dataclasses.dataclass, dataclasses.field)


def _plain(dc: Any, field: Any) -> type:
    @dc
    class Rec:
        a: int
        b: str = "x"
        items: list[int] = field(default_factory=list)
        cache: int | None = field(default=None, repr=False, compare=False)
        kind: ClassVar[str] = "rec"

        def total(self) -> int:
            return self.a + len(self.items)

    return Rec


def _slotted(dc: Any, field: Any) -> type:
    @dc(slots=True)
    class Rec:
        a: int
        b: int = 2
        tags: tuple[int, ...] = field(default_factory=tuple)

    return Rec


def _frozen(dc: Any, field: Any) -> type:
    @dc(frozen=True, slots=True)
    class Rec:
        name: str
        n: int = 0

    return Rec


def _frozen_dict(dc: Any, field: Any) -> type:
    @dc(frozen=True)
    class Rec:
        name: str
        n: int = 0

    return Rec


def _no_eq(dc: Any, field: Any) -> type:
    @dc(slots=True, eq=False)
    class Rec:
        a: int
        b: list[int] = field(default_factory=list)

    return Rec


def _one_field(dc: Any, field: Any) -> type:
    @dc(frozen=True, slots=True)
    class Rec:
        only: int

    return Rec


def _own_methods(dc: Any, field: Any) -> type:
    @dc(frozen=True)
    class Rec:
        a: int

        def __repr__(self) -> str:
            return "mine"

        def __hash__(self) -> int:
            return 7

    return Rec


SHAPES = [_plain, _slotted, _frozen, _frozen_dict, _no_eq, _one_field, _own_methods]
ARGS: dict[Any, list[tuple[tuple[Any, ...], dict[str, Any]]]] = {
    _plain: [((1,), {}), ((1, "y", [3]), {}), ((), {"a": 2, "cache": 5})],
    _slotted: [((1,), {}), ((1, 5, (1, 2)), {}), ((), {"b": 3, "a": 4})],
    _frozen: [(("n",), {}), (("n", 3), {})],
    _frozen_dict: [(("n",), {}), ((), {"name": "m", "n": 1})],
    _no_eq: [((1,), {}), ((1, [2]), {})],
    _one_field: [((1,), {})],
    _own_methods: [((1,), {})],
}
BAD_ARGS = [((), {}), ((1, 2, 3, 4, 5), {}), ((1,), {"nope": 1}), ((1,), {"a": 1})]


def _state(obj: Any) -> Any:
    names = [f.name for f in dataclasses.fields(obj)] if dataclasses.is_dataclass(obj) \
        else [f.name for f in cd.fields(obj)]
    return [getattr(obj, n) for n in names]


def _outcome(fn: Any) -> Any:
    try:
        return ("ok", fn())
    except Exception as e:  # the comparison is of the exception's type and text
        return (type(e).__name__ if not isinstance(e, AttributeError) else "AttributeError",
                str(e))


def _compare(ours: type, std: type, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    a, b = ours(*args, **kwargs), std(*args, **kwargs)
    assert _state(a) == _state(b)
    assert repr(a) == repr(b)
    a2, b2 = ours(*args, **kwargs), std(*args, **kwargs)
    assert (a == a2) == (b == b2) and (a != a2) == (b != b2)
    assert (a == object()) == (b == object())
    ha, hb = _outcome(lambda: hash(a)), _outcome(lambda: hash(b))
    assert ha[0] == hb[0]
    if ha[0] == "ok":
        assert (hash(a) == hash(a2)) == (hash(b) == hash(b2))
    assert hasattr(a, "__dict__") == hasattr(b, "__dict__")
    first = next(iter(cd.fields(a))).name
    assert _outcome(lambda: setattr(a, first, 9)) == _outcome(lambda: setattr(b, first, 9))
    assert _outcome(lambda: delattr(a2, first)) == _outcome(lambda: delattr(b2, first))
    # A non-field name: both refuse when slotted or frozen (dataclasses' frozen+slots
    # says TypeError through a stale super(); ours FrozenInstanceError), both allow otherwise.
    assert (_outcome(lambda: setattr(a, "zz", 1))[0] == "ok") == \
        (_outcome(lambda: setattr(b, "zz", 1))[0] == "ok")


def _same_error(ours: type, std: type, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    assert _outcome(lambda: ours(*args, **kwargs))[0] == _outcome(lambda: std(*args, **kwargs))[0]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: s.__name__)
def test_same_as_dataclasses(shape: Any) -> None:
    ours, std = _pair(shape)
    for args, kwargs in ARGS[shape]:
        _compare(ours, std, args, kwargs)
    for args, kwargs in BAD_ARGS:
        _same_error(ours, std, args, kwargs)
    assert ours.__match_args__ == std.__match_args__  # type: ignore[attr-defined]
    assert [f.name for f in cd.fields(ours)] == [f.name for f in dataclasses.fields(std)]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: s.__name__)
def test_pickles_like_dataclasses(shape: Any) -> None:
    ours, std = _pair(shape)
    args, kwargs = ARGS[shape][-1]
    a, b = ours(*args, **kwargs), std(*args, **kwargs)
    # Same reduce (class aside): a snapshot written before the switch loads after it.
    ra, rb = a.__reduce_ex__(4), b.__reduce_ex__(4)
    assert ra[0] is rb[0] and ra[2:] == rb[2:]
    back = copy.deepcopy(a)  # the same reduce protocol as pickle (local classes do not pickle)
    assert _state(back) == _state(a) and type(back) is ours


def test_replace_and_class_attributes() -> None:
    ours, std = _pair(_plain)
    a = ours(1, items=[1])
    r = cd.replace(a, b="z")
    assert (r.a, r.b, r.items) == (1, "z", [1]) and r.items is a.items
    assert ours.b == std.b == "x" and ours.cache is std.cache is None  # type: ignore[attr-defined]
    assert "items" not in vars(ours) and "items" not in vars(std)
    assert ours.kind == "rec" and "kind" not in [f.name for f in cd.fields(ours)]
    assert ours(1).total() == 1
    s = _pair(_slotted)[0](1)
    assert cd.replace(s, b=7).b == 7
    with pytest.raises(TypeError):
        cd.replace(s, nope=1)
    # replace also takes a standard dataclass (tests and tools mix them).
    assert cd.replace(std(1), a=3).a == 3


def test_own_methods_kept() -> None:
    ours, _std = _pair(_own_methods)
    assert repr(ours(1)) == "mine" and hash(ours(1)) == 7


def test_definition_errors_as_dataclasses() -> None:
    def bad_order(dc: Any, field: Any) -> type:
        @dc
        class R:
            a: int = 1
            b: int

        return R

    def mutable(dc: Any, field: Any) -> type:
        @dc
        class R:
            a: list[int] = []

        return R

    def no_annotation(dc: Any, field: Any) -> type:
        @dc
        class R:
            a = field(default=1)

        return R

    for build in (bad_order, mutable, no_annotation):
        with pytest.raises(Exception) as ours:
            build(cd.dataclass, cd.field)
        with pytest.raises(Exception) as std:
            build(dataclasses.dataclass, dataclasses.field)
        assert type(ours.value) is type(std.value)


def test_unsupported_options_refused() -> None:
    with pytest.raises(TypeError):
        @cd.dataclass
        class Child(_pair(_plain)[1]):  # type: ignore[misc]
            c: int = 0
    with pytest.raises(TypeError):
        @cd.dataclass
        class R:
            a: dataclasses.InitVar[int]


def test_post_init_runs() -> None:
    @cd.dataclass(slots=True)
    class R:
        a: int
        b: int = 0

        def __post_init__(self) -> None:
            self.b = self.a * 2

    assert R(3).b == 6


@pytest.mark.timeout(60)
def test_cove_run_path_never_imports_dataclasses() -> None:
    # The point of cove.dataclass: a run pays neither for dataclasses nor inspect.
    code = ("import sys\n"
            "from cove.sandbox import Sandbox, SandboxConfig\n"
            "import cove.kernel.syscall as s\n"
            "s.load_all()\n"
            "print(sorted(m for m in ('dataclasses', 'inspect') if m in sys.modules))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


