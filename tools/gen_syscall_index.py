#!/usr/bin/env python3
"""Generate src/cove/kernel/syscalls/__init__.py, the syscall index: which
family module defines each syscall, with what the table entry says (decoders,
support, note, restartability), so ``cove.kernel.syscall`` can stand in for a
family until the first call of one of its syscalls imports it.

    python tools/gen_syscall_index.py            # rewrite the index
    python tools/gen_syscall_index.py --print    # print it (the test compares)

Rerun after adding, removing or changing a ``@syscall``/``enosys`` in a family;
tests/kernel/test_syscall_index.py fails while the index is stale.

A family is EAGER (imported with every kernel) when importing it changes
anything outside itself and the syscall table: a hook appended to another
module's list (exec/fork/close), a function installed into another module.
That is found here, not declared: each family is imported alone in a forked
child and every other cove module's globals are compared with their state
without it. A change into another family module makes a NEEDS entry instead
(that family imports this one with it); changes reviewed as safe to make late
are listed in LATE_OK with the reason.
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import textwrap
import types
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
OUTPUT = ROOT / "src/cove/kernel/syscalls/__init__.py"
# What a run has imported before its first guest syscall: the modules compared by identity.
BASELINE = ("cove.sandbox", "cove.kernel.kernel", "cove.kernel.syscall", "cove.kernel.loader")
# The table and its bookkeeping, which every family changes by design (under any name).
_OWN = ("TABLE", "ORIGIN", "_PLACEHOLDERS")


def _value_sig(v: Any, ids: bool) -> Any:
    if isinstance(v, (list, dict, set, frozenset, tuple)) or type(v).__name__ in (
            "WeakKeyDictionary", "WeakValueDictionary", "WeakSet", "deque"):
        return ("container", type(v).__name__, len(v), id(v) if ids else None)
    if isinstance(v, (types.FunctionType, types.BuiltinFunctionType, type)):
        return ("code", getattr(v, "__module__", None), getattr(v, "__qualname__", None),
                id(v) if ids else None)
    if v is None or isinstance(v, (int, float, str, bytes, bool)):
        return ("value", repr(v)[:200])
    return ("object", type(v).__qualname__, id(v) if ids else None)


def _module_sig(name: str, ids: bool) -> dict[str, Any]:
    mod = sys.modules[name]
    table = sys.modules["cove.kernel.syscall"]
    own = {id(getattr(table, a)) for a in _OWN}
    out: dict[str, Any] = {}
    for k, v in vars(mod).items():
        if k.startswith("__") or isinstance(v, types.ModuleType) or id(v) in own:
            continue
        out[k] = _value_sig(v, ids)
        if isinstance(v, type) and v.__module__ == name:  # a class of this module: its methods
            out[k] = (out[k], tuple(sorted((a, _value_sig(x, ids)) for a, x in vars(v).items()
                                           if not a.startswith("__"))))
    return out


def _cove_modules() -> list[str]:
    return sorted(m for m in sys.modules if m == "cove" or m.startswith("cove."))


def _in_child(fn: Any) -> Any:
    """fn() run in a forked child (its imports vanish with it); its pickled result."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            data = pickle.dumps(("ok", fn()))
        except BaseException as e:  # report, never return into the parent's code
            data = pickle.dumps(("error", repr(e)))
        with os.fdopen(w, "wb") as f:
            f.write(data)
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    status, value = pickle.loads(data)
    if status != "ok":
        raise SystemExit(f"child failed: {value}")
    return value


def _entries() -> tuple[dict[int, tuple[Any, ...]], list[str]]:
    """Every family imported: nr -> (name, family, decoders, support, note, flags)."""
    from cove.kernel import syscall as S

    S.import_all()
    by_fn = {fn: name for name, fn in S.DECODERS.items()}
    out: dict[int, tuple[Any, ...]] = {}
    for nr, sc in sorted(S.TABLE.items()):
        if sc is S._PLACEHOLDERS.get(nr):
            continue  # the index names it but no family defines it: drop it
        module = S.ORIGIN.get(nr) or getattr(sc.handler, "__module__", "")
        family = module.rpartition(".")[2]
        if module != f"{S.PACKAGE}.{family}":
            raise SystemExit(f"{sc.name} is defined outside the family modules ({module})")
        unknown = [d for d in sc.decoders if d not in by_fn]
        if unknown:
            raise SystemExit(f"{sc.name}: decoder {unknown[0]!r} is not one of "
                             "cove.kernel.syscall.DECODERS")
        flags = (1 if sc.restartable else 0) | (2 if sc.on_interrupt is not None else 0)
        out[nr] = (sc.name, family, " ".join(by_fn[d] for d in sc.decoders), sc.support,
                   sc.note, flags)
    return out, _cove_modules()


# Outside changes reviewed as safe to make late, when the family is first used:
# hooks that act only on state which that family's own calls create.
LATE_OK = {
    ("fs_fcntl", "cove.kernel.fdtable.CLOSE_HOOKS"): "releases POSIX locks, which only "
        "fcntl(F_SETLK*)/flock take (fs_fcntl imports fs_locks)",
    ("fs_locks", "cove.kernel.fdtable.CLOSE_HOOKS"): "releases POSIX locks, which only its "
        "own calls take",
    ("io_epoll", "cove.kernel.fdtable.CLOSE_HOOKS"): "drops closed files from epoll sets, "
        "which only epoll_create makes",
    ("timer", "cove.kernel.process.EXEC_HOOKS"): "deletes POSIX timers at exec, which only "
        "timer_create makes",
}
FAMILY = "cove.kernel.syscalls."


def _classify(families: list[str], reachable: list[str]
              ) -> tuple[dict[str, str], dict[str, list[str]]]:
    """(eager, needs): a family whose import changes another module is eager (with
    the first change named) unless the change is into a family module G, which
    then needs it (importing G imports it), or is reviewed in LATE_OK."""
    import importlib

    for m in BASELINE:
        importlib.import_module(m)
    base = set(_cove_modules())
    base_sig = {m: _module_sig(m, ids=True) for m in base}

    def alone(m: str) -> Any:
        importlib.import_module(m)
        return _module_sig(m, ids=False)

    alone_sig = {m: _in_child(lambda m=m: alone(m)) for m in reachable if m not in base}

    def changes(family: str) -> list[tuple[str, str]]:
        name = FAMILY + family
        importlib.import_module(name)
        out = []
        for m in _cove_modules():
            if m == name:
                continue
            now = _module_sig(m, ids=m in base)
            before = base_sig[m] if m in base else alone_sig.get(m)
            if before is None or now == before:
                continue
            out += [(m, k) for k in sorted(now.keys() | before.keys())
                    if now.get(k) != before.get(k)]
        return out

    eager: dict[str, str] = {}
    needs: dict[str, list[str]] = {}
    for family in families:
        for m, attr in _in_child(lambda f=family: changes(f)):
            if (family, f"{m}.{attr}") in LATE_OK:
                continue
            if m.startswith(FAMILY) and m not in base:
                needs.setdefault(m[len(FAMILY):], []).append(family)
            else:
                eager.setdefault(family, f"{m}.{attr}")
    return eager, {g: sorted(set(fs)) for g, fs in sorted(needs.items())}


HEADER = '''"""The syscall families, one module each, and the index of what each defines.

Generated by tools/gen_syscall_index.py from the family modules; do not edit
by hand (tests/kernel/test_syscall_index.py fails while it is stale).
``cove.kernel.syscall`` gives every syscall below a placeholder entry that
imports its family on the first call, so a run imports only the families its
guest uses. EAGER families are imported with every kernel: importing them
changes something outside themselves (the first such change is named).
NEEDS: importing a family imports these too (they install into it).
"""

from __future__ import annotations

# nr: (name, family module, decoders, support, flags: 1 restartable | 2 on_interrupt)
'''


def render(entries: dict[int, tuple[Any, ...]], eager: dict[str, str],
           needs: dict[str, list[str]], sizes: dict[str, int]) -> str:
    lines = [HEADER + "INDEX: dict[int, tuple[str, str, str, str, int]] = {"]
    for nr, (name, family, decoders, support, _note, flags) in entries.items():
        lines.append(f"    {nr}: ({name!r}, {family!r}, {decoders!r}, {support!r}, {flags}),"
                     .replace("'", '"'))
    lines += ["}", "", "NOTES: dict[int, str] = {"]
    for nr, (*_rest, note, _flags) in entries.items():
        if not note:
            continue
        chunks = textwrap.wrap(note, 80, drop_whitespace=False) or [note]
        if len(chunks) == 1 and len(f"    {nr}: {note!r},") <= 100:
            lines.append(f"    {nr}: {_quote(note)},")
            continue
        lines.append(f"    {nr}: (")
        lines += [f"        {_quote(c)}" for c in chunks]
        lines.append("    ),")
    lines += ["}", "", "EAGER: tuple[str, ...] = ("]
    lines += [f'    "{f}",  # {why}' for f, why in sorted(eager.items())]
    lines += [")", "", "# family: the families to import with it (they change it when imported)",
              "NEEDS: dict[str, tuple[str, ...]] = {"]
    lines += [f'    "{g}": ({", ".join(repr(f) for f in fs)},),'.replace("'", '"')
              for g, fs in needs.items()]
    lines += ["}", "", "# The size of each family file the index was made from:",
              "# cove.kernel.syscall imports every family when one differs (edited since).",
              "SIZES: dict[str, int] = {"]
    lines += [f'    "{f}": {n},' for f, n in sizes.items()]
    lines += ["}", ""]
    return "\n".join(lines)


def _quote(s: str) -> str:
    r = repr(s)
    if r.startswith("'") and '"' not in s:
        r = '"' + r[1:-1].replace("\\'", "'") + '"'
    return r


def generate() -> str:
    entries, reachable = _in_child(_entries)
    from cove.kernel.syscall import family_modules

    families = family_modules()
    eager, needs = _classify(families, reachable)
    here = OUTPUT.parent
    sizes = {f: (here / f"{f}.py").stat().st_size for f in families}
    return render(entries, eager, needs, sizes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--print", action="store_true", help="print instead of writing")
    args = ap.parse_args()
    text = generate()
    if args.print:
        sys.stdout.write(text)
    else:
        OUTPUT.write_text(text)
        print(f"wrote {OUTPUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
