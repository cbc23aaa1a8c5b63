"""Option types checked in one place, before anything trains.

A plugin factory takes ``**options`` and builds a frozen dataclass (the plugin itself, or an
options dataclass it holds). :func:`option_fields` finds that dataclass from the factory
(the factory *is* it, closes over it, or names it as its return type or its constructor's
parameter) and :func:`check_types` compares each given option with the field's annotation,
so ``epochs = "4"`` fails as one line naming the plugin and the option instead of as a bare
``TypeError`` deep in training.
"""
from __future__ import annotations

import collections.abc as cabc
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Callable, Literal, Union

from .errors import XaibenchError


def _hints(obj: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(obj)
    except Exception:  # noqa: BLE001 - unresolvable annotations: nothing to check
        return {}


def _dataclass_in(tp: Any) -> type | None:
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return tp
    if isinstance(tp, type):  # e.g. NiftiDataset(options: NiftiOptions)
        for t in _hints(tp.__init__).values():
            if isinstance(t, type) and dataclasses.is_dataclass(t):
                return t
    return None


def option_fields(factory: Callable[..., Any]) -> dict[str, Any]:
    """Field name → annotation of the dataclass ``factory`` builds (empty when unknown)."""
    candidates: list[Any] = [factory]
    candidates += [c.cell_contents for c in getattr(factory, "__closure__", None) or () if _filled(c)]
    candidates.append(_hints(factory).get("return"))
    for c in candidates:
        cls = _dataclass_in(c)
        if cls is not None:
            hints = _hints(cls)
            return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls)}
    return {}


def _filled(cell: Any) -> bool:
    try:
        cell.cell_contents
    except ValueError:
        return False
    return True


def _expect(v: Any, tp: Any) -> str | None:
    """``None`` when ``v`` (a TOML value) fits annotation ``tp``, else what was expected."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any or tp is object or isinstance(tp, typing.TypeVar):
        return None
    if origin in (Union, types.UnionType):
        wants = [_expect(v, a) for a in args]
        return None if any(w is None for w in wants) else " or ".join(w for w in wants if w and w != "none")
    if origin is Literal:
        return None if v in args else "one of " + ", ".join(repr(a) for a in args)
    if tp is type(None):
        return None if v is None else "none"
    if tp is bool:
        return None if isinstance(v, bool) else "true or false"
    if tp is int:
        return None if isinstance(v, int) and not isinstance(v, bool) else "an integer"
    if tp is float:
        return None if isinstance(v, (int, float)) and not isinstance(v, bool) else "a number"
    if tp is str or tp is Path:
        return None if isinstance(v, str) else "a string"
    if origin in (tuple, list, cabc.Sequence) or tp in (tuple, list):
        if not isinstance(v, (list, tuple)):
            return "a list"
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(v):
                return f"a list of {len(args)} values"
            bad = [w for x, a in zip(v, args) if (w := _expect(x, a))]
        else:
            bad = [w for x in v if args and (w := _expect(x, args[0]))]
        return f"a list of values that are {bad[0]}" if bad else None
    if origin in (dict, cabc.Mapping) or tp in (dict,):
        return None if isinstance(v, dict) else "a table"
    return None  # other annotations: the plugin checks its own


def check_types(kind: str, name: str, factory: Callable[..., Any], options: dict[str, Any]) -> None:
    """One-line :class:`XaibenchError` for the first option of the wrong type."""
    fields = option_fields(factory)
    for k, v in options.items():
        if k in fields:
            want = _expect(v, fields[k])
            if want is not None:
                raise XaibenchError(f"{kind} {name}: option {k} must be {want}, got {v!r}")
