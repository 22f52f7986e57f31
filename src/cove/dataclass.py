"""``@dataclass`` for cove's record classes, without the standard library's
import-time cost.

Why: ``dataclasses.dataclass`` compiles four to six methods per class with
``exec`` when the class is defined (about 0.4 ms each class; cove defines ~45,
some 20 ms of every ``cove run``) and imports ``inspect`` (another ~5 ms). Here
``__eq__``, ``__hash__``, ``__repr__`` and the frozen ``__setattr__`` are
closures over the field names (nothing compiled), and ``__init__``, whose speed
matters because VMAs, Stats and Creds are made at run time, is compiled like the
standard one but only when the class is first instantiated.

The behaviour is the standard library's for what cove uses: ``@dataclass`` and
``@dataclass(frozen=, slots=, eq=, repr=, init=)``, ``field(default=,
default_factory=, repr=, compare=, init=)``, ``ClassVar`` annotations,
``__post_init__`` without InitVars, ``replace`` and ``fields``; pickles are the
same as the standard library's (frozen slotted classes get its
``__getstate__``/``__setstate__``). Anything else (``order``, ``unsafe_hash``,
``kw_only``, ``InitVar``, a dataclass base) raises ``TypeError`` when the class
is defined: use the standard library for those.
"""

from __future__ import annotations

import _thread
from collections.abc import Callable
from operator import attrgetter

__all__ = ["MISSING", "Field", "FrozenInstanceError", "dataclass", "field", "fields", "replace"]

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2.5 ms a start)
if TYPE_CHECKING:
    from typing import Any, TypeVar

    T = TypeVar("T")

_FIELDS = "__cove_fields__"


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class _HasFactory:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<factory>"


_HAS_FACTORY: Any = _HasFactory()


class FrozenInstanceError(AttributeError):
    """Assignment to a field of a frozen instance (as ``dataclasses``')."""


class Field:
    """One field: its name and what ``field()`` said about it."""

    __slots__ = ("name", "default", "default_factory", "repr", "compare", "init")

    def __init__(self, default: Any, default_factory: Any, init: bool, repr: bool,
                 compare: bool) -> None:
        self.name = ""
        self.default = default
        self.default_factory = default_factory
        self.init = init
        self.repr = repr
        self.compare = compare

    def __repr__(self) -> str:
        return (f"Field(name={self.name!r}, default={self.default!r}, "
                f"default_factory={self.default_factory!r}, init={self.init}, "
                f"repr={self.repr}, compare={self.compare})")


def field(*, default: Any = MISSING, default_factory: Any = MISSING, init: bool = True,
          repr: bool = True, compare: bool = True) -> Any:
    """As ``dataclasses.field`` (the options cove uses)."""
    if default is not MISSING and default_factory is not MISSING:
        raise ValueError("cannot specify both default and default_factory")
    return Field(default, default_factory, init, repr, compare)


def dataclass(cls: type[T] | None = None, /, *, init: bool = True, repr: bool = True,
              eq: bool = True, frozen: bool = False, slots: bool = False) -> Any:
    """As ``dataclasses.dataclass`` for the options above."""

    def wrap(c: type[T]) -> type[T]:
        return _process(c, init, repr, eq, frozen, slots)

    return wrap if cls is None else wrap(cls)


def fields(obj: Any) -> tuple[Field, ...]:
    """The fields of a class made by ``dataclass`` (or of its instance), in order."""
    try:
        return tuple(getattr(obj, _FIELDS).values())
    except AttributeError:
        raise TypeError("must be called with a cove dataclass type or instance") from None


def replace(obj: T, /, **changes: Any) -> T:
    """A copy of ``obj`` with ``changes`` (as ``dataclasses.replace``)."""
    flds = getattr(type(obj), _FIELDS, None)
    if flds is None:  # a standard-library dataclass
        import dataclasses

        return dataclasses.replace(obj, **changes)  # type: ignore[type-var]
    for f in flds.values():
        if not f.init:
            if f.name in changes:
                raise ValueError(f"field {f.name} is declared with init=False, it cannot "
                                 "be specified with replace()")
            continue
        if f.name not in changes:
            changes[f.name] = getattr(obj, f.name)
    return obj.__class__(**changes)  # type: ignore[no-any-return]


# --- building a class --------------------------------------------------------------------
def _kind(ann: Any) -> str:
    """The bare name an annotation starts with: "ClassVar[int]" -> "ClassVar"."""
    if isinstance(ann, str):
        return ann.split("[", 1)[0].strip().rpartition(".")[2]
    import typing

    if ann is typing.ClassVar or getattr(ann, "__origin__", None) is typing.ClassVar:
        return "ClassVar"
    return type(ann).__name__ if type(ann).__module__ == "dataclasses" else ""


def _collect(cls: type) -> dict[str, Field]:
    for b in cls.__mro__[1:]:
        if hasattr(b, _FIELDS) or hasattr(b, "__dataclass_fields__"):
            raise TypeError(f"{cls.__name__}: a dataclass base is not supported by "
                            "cove.dataclass; use dataclasses")
    # The class's own annotations, as dataclasses reads them (inspect is what we avoid).
    annotations = cls.__dict__.get("__annotations__", {})  # noqa: RUF063
    flds: dict[str, Field] = {}
    for name, ann in annotations.items():
        kind = _kind(ann)
        if kind == "ClassVar":
            continue
        if kind in ("InitVar", "KW_ONLY", "_KW_ONLY_TYPE"):
            raise TypeError(f"{cls.__name__}.{name}: InitVar/KW_ONLY are not supported by "
                            "cove.dataclass; use dataclasses")
        value = cls.__dict__.get(name, MISSING)
        f = value if isinstance(value, Field) else Field(value, MISSING, True, True, True)
        f.name = name
        d = f.default
        if d is not MISSING and d.__class__.__hash__ is None:
            raise ValueError(f"mutable default {type(d)} for field {name} is not allowed: "
                             "use default_factory")
        if isinstance(value, Field):
            # The class attribute becomes the plain default (or goes), as in dataclasses.
            if d is MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, d)
        flds[name] = f
    for name, value in cls.__dict__.items():
        if isinstance(value, Field) and name not in annotations:
            raise TypeError(f"{name!r} is a field but has no type annotation")
    seen_default = False
    for f in flds.values():
        if not f.init:
            continue
        if f.default is MISSING and f.default_factory is MISSING:
            if seen_default:
                raise TypeError(f"non-default argument {f.name!r} follows default argument")
        else:
            seen_default = True
    return flds


def _slotted(cls: type, flds: dict[str, Field]) -> type:
    """The class again, with ``__slots__`` for the fields (as dataclasses' slots=True)."""
    if "__slots__" in cls.__dict__:
        raise TypeError(f"{cls.__name__} already specifies __slots__")
    ns = dict(cls.__dict__)
    inherited: set[str] = set()
    for b in cls.__mro__[1:-1]:
        s = b.__dict__.get("__slots__", ())
        inherited.update((s,) if isinstance(s, str) else s)
    ns["__slots__"] = tuple(n for n in flds if n not in inherited)
    for n in flds:
        ns.pop(n, None)
    ns.pop("__dict__", None)
    ns.pop("__weakref__", None)
    qualname = getattr(cls, "__qualname__", None)
    new = type(cls)(cls.__name__, cls.__bases__, ns)
    if qualname is not None:
        new.__qualname__ = qualname
    return new


def _process(cls: type[T], init: bool, repr: bool, eq: bool, frozen: bool,
             slots: bool) -> type[T]:
    flds = _collect(cls)
    own = dict(cls.__dict__)  # what the class body defined (not overwritten, as dataclasses)
    class_hash = own.get("__hash__", MISSING)
    explicit_hash = not (class_hash is MISSING or (class_hash is None and "__eq__" in own))
    if slots:
        cls = _slotted(cls, flds)  # type: ignore[assignment]
    setattr(cls, _FIELDS, flds)
    names = tuple(flds)

    def put(name: str, value: Any) -> None:
        if name not in own:
            setattr(cls, name, value)

    if init:
        put("__init__", _lazy_init(cls, frozen))
    if repr:
        put("__repr__", _repr_fn(tuple(f.name for f in flds.values() if f.repr)))
    if eq:
        put("__eq__", _eq_fn(tuple(f.name for f in flds.values() if f.compare)))
    if frozen:
        for name in ("__setattr__", "__delattr__"):
            if name in own:
                raise TypeError(f"Cannot overwrite attribute {name} in class {cls.__name__}")
        cls.__setattr__, cls.__delattr__ = _frozen_fns(cls, frozenset(names))  # type: ignore[method-assign,assignment]
    if eq and not explicit_hash:
        # dataclasses' table for unsafe_hash=False: eq+frozen hashes the compared
        # fields, eq alone makes instances unhashable.
        if frozen:
            cls.__hash__ = _hash_fn(tuple(f.name for f in flds.values() if f.compare))  # type: ignore[method-assign,assignment]
        else:
            cls.__hash__ = None  # type: ignore[assignment]
    put("__match_args__", tuple(f.name for f in flds.values() if f.init))
    if slots and frozen:
        put("__getstate__", _getstate)
        put("__setstate__", _setstate)
    return cls


# --- the methods -----------------------------------------------------------------------
def _lazy_init(cls: type, frozen: bool) -> Callable[..., None]:
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        real = _init_fn(cls, frozen)
        cls.__init__ = real  # type: ignore[misc]
        real(self, *args, **kwargs)

    __init__.__qualname__ = f"{cls.__qualname__}.__init__"
    return __init__


def _init_fn(cls: type, frozen: bool) -> Callable[..., None]:
    """The generated ``__init__``: the same code dataclasses writes."""
    flds: dict[str, Field] = getattr(cls, _FIELDS)
    self_name = "__dataclass_self__" if "self" in flds else "self"
    env: dict[str, Any] = {"_HAS_FACTORY": _HAS_FACTORY, "_osetattr": object.__setattr__}
    params = [self_name]
    body = []
    for f in flds.values():
        n = f.name
        if f.default_factory is not MISSING:
            env[f"_factory_{n}"] = f.default_factory
            if f.init:
                params.append(f"{n}=_HAS_FACTORY")
                value = f"_factory_{n}() if {n} is _HAS_FACTORY else {n}"
            else:
                value = f"_factory_{n}()"
        elif f.init:
            if f.default is not MISSING:
                env[f"_dflt_{n}"] = f.default
                params.append(f"{n}=_dflt_{n}")
            else:
                params.append(n)
            value = n
        elif f.default is not MISSING:
            env[f"_dflt_{n}"] = f.default
            value = f"_dflt_{n}"
        else:
            continue
        if frozen:
            body.append(f"    _osetattr({self_name}, {n!r}, {value})")
        else:
            body.append(f"    {self_name}.{n} = {value}")
    if hasattr(cls, "__post_init__"):
        body.append(f"    {self_name}.__post_init__()")
    src = f"def __init__({', '.join(params)}):\n" + ("\n".join(body) or "    pass") + "\n"
    ns: dict[str, Any] = {}
    # The source is made of field names only, as dataclasses does. exec of the
    # text, not of compile(): the compile() builtin builds all of the ast
    # module's types the first time it is called in a process (~1.2 ms of a start).
    exec(src, env, ns)
    fn = ns["__init__"]
    fn.__qualname__ = f"{cls.__qualname__}.__init__"
    return fn  # type: ignore[no-any-return]


def _getter(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    """obj -> the tuple of its ``names`` (what dataclasses' generated code builds)."""
    if not names:
        return lambda obj: ()
    if len(names) == 1:
        one = attrgetter(names[0])
        return lambda obj: (one(obj),)
    return attrgetter(*names)


def _eq_fn(names: tuple[str, ...]) -> Callable[[Any, Any], Any]:
    get = _getter(names)

    def __eq__(self: Any, other: Any) -> Any:
        if other.__class__ is self.__class__:
            return get(self) == get(other)
        return NotImplemented

    return __eq__


def _hash_fn(names: tuple[str, ...]) -> Callable[[Any], int]:
    get = _getter(names)

    def __hash__(self: Any) -> int:
        return hash(get(self))

    return __hash__


def _repr_fn(names: tuple[str, ...]) -> Callable[[Any], str]:
    running: set[tuple[int, int]] = set()  # as reprlib.recursive_repr: a cycle prints "..."

    def __repr__(self: Any) -> str:
        key = (id(self), _thread.get_ident())
        if key in running:
            return "..."
        running.add(key)
        try:
            inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in names)
        finally:
            running.discard(key)
        return f"{self.__class__.__qualname__}({inner})"

    return __repr__


def _frozen_fns(cls: type, names: frozenset[str]) -> tuple[Callable[..., None], ...]:
    def __setattr__(self: Any, name: str, value: Any) -> None:
        if type(self) is cls or name in names:
            raise FrozenInstanceError(f"cannot assign to field {name!r}")
        super(cls, self).__setattr__(name, value)

    def __delattr__(self: Any, name: str) -> None:
        if type(self) is cls or name in names:
            raise FrozenInstanceError(f"cannot delete field {name!r}")
        super(cls, self).__delattr__(name)

    return __setattr__, __delattr__


def _getstate(self: Any) -> list[Any]:
    return [getattr(self, n) for n in getattr(self, _FIELDS)]


def _setstate(self: Any, state: list[Any]) -> None:
    for n, value in zip(getattr(self, _FIELDS), state, strict=False):
        object.__setattr__(self, n, value)
