"""Plugin options: one factory that refuses unknown names and one check for bad values.

Why one: every plugin kind used to spell these errors its own way; the suite author sees the
same one-line message whatever the plugin (``KIND NAME: unknown option 'x'; allowed: …`` and
``KIND NAME: option 'x' must be …, got …``).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Callable

from xaibench.errors import XaibenchError

MISSING: Any = object()


def option_factory(who: str, cls: type, hidden: Sequence[str] = ("scope",)) -> Callable[..., Any]:
    """``factory(**options) -> cls(**options)`` for the dataclass ``cls``, turning an unknown
    option name into a one-line :class:`XaibenchError`. ``who`` is ``"KIND NAME"`` (e.g.
    ``"metric iou"``); fields named in ``hidden`` (a metric's ``scope``) are not options."""
    allowed = [f.name for f in dataclasses.fields(cls) if f.name not in hidden]

    def make(**options: Any) -> Any:
        bad = sorted(set(options) - set(allowed))
        if bad:
            raise XaibenchError(f"{who}: unknown option {bad[0]!r}; allowed: {', '.join(allowed) or '(none)'}")
        return cls(**options)

    make.__doc__ = cls.__doc__
    return make


def require(ok: bool, who: str, option: str, allowed: str, value: Any = MISSING) -> None:
    """Raise the one-line error ``WHO: option 'OPTION' must be ALLOWED, got VALUE`` unless ``ok``."""
    if not ok:
        got = "" if value is MISSING else f", got {value!r}"
        raise XaibenchError(f"{who}: option {option!r} must be {allowed}{got}")


def one_of(value: Any, choices: Sequence[Any], who: str, option: str) -> None:
    """The option must be one of ``choices`` (listed with `` | `` in the error)."""
    require(value in choices, who, option, "one of " + " | ".join(map(str, choices)), value)


def fractions(value: Any, who: str, option: str = "q") -> tuple[float, ...]:
    """A fraction or a list of fractions in (0, 1] (percent values > 1 are rejected)."""
    vals = list(value) if isinstance(value, (list, tuple)) else [value]
    ok = len(vals) > 0 and all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 1 for v in vals)
    require(ok, who, option, "a fraction in (0, 1] or a non-empty list of them (0.05 = 5%)", value)
    return tuple(float(v) for v in vals)


def pct(q: float) -> str:
    """0.05 -> '5%', 0.005 -> '0.5%' (the display form of a fraction)."""
    return f"{q * 100:.4g}%"


def pct_param(q: float) -> tuple[str, float]:
    """``Score.param`` of a score named with :func:`pct`: ``("q", 5.0)`` for ``@5%`` (the
    percent the name shows), so the report draws the family over q without parsing names."""
    return "q", float(pct(q)[:-1])
